//! Shared harness of the signaling WebSocket tests: a real server over a real
//! SQLite file, a room with a host and guests, and tokio-tungstenite clients.
#![allow(dead_code)]

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::Method;
use serde_json::json;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::signaling::ServerMessage;
use watchparty_signal::AppState;
use watchparty_signal::state::Limiters;
use watchparty_signal::throttle::{RateLimiter, THROTTLE_CAPACITY};
use watchparty_signal::ws::SignalingConfig;

use crate::common::*;

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct World {
    pub s: Server,
    pub room: String,
    pub movie: i64,
    pub ids: Vec<(String, i64)>,
    pub _dir: tempfile::TempDir,
}

/// Host `host` plus `guests`, all joined to one room.
pub async fn world(guests: &[&str], tweak: impl FnOnce(&mut SignalingConfig)) -> World {
    world_with(guests, |c| tweak(&mut c.signaling)).await
}

/// [`world`] with a tweak of the whole server configuration.
pub async fn world_with(
    guests: &[&str],
    tweak: impl FnOnce(&mut watchparty_signal::Config),
) -> World {
    let dir = tempfile::tempdir().unwrap();
    let lib_dir = media_tree(&dir.path().join("lib"));
    let mut config = test_config(&dir.path().join("data"));
    config.public_url = Some("http://party.test".into());
    tweak(&mut config);
    let mut state = AppState::new(config).await.unwrap();
    let mut limits = Limiters::new();
    limits.room_create = RateLimiter::new(100_000, Duration::from_secs(1), THROTTLE_CAPACITY);
    limits.auth_ip = RateLimiter::new(100_000, Duration::from_secs(1), THROTTLE_CAPACITY);
    state.limits = std::sync::Arc::new(limits);
    let s = Server::start_with_state(state).await;
    let lib = s.add_library("films", &lib_dir).await;
    let movie = s.item_id("films/movie.mp4").await;
    let mut ids = Vec::new();
    for name in std::iter::once(&"host").chain(guests.iter()) {
        let id = s.add_user(name, false).await;
        s.grant(id, lib).await;
        ids.push((name.to_string(), id));
    }
    let host = s.login("host").await;
    let invites: Vec<_> = guests
        .iter()
        .map(|g| json!({"username": g, "role": "viewer"}))
        .collect();
    let r = s
        .call(
            Method::POST,
            "/api/v1/rooms",
            &host,
            Some(json!({"name": "Signal", "media_id": movie, "invites": invites})),
        )
        .await;
    assert_eq!(r.status(), 201);
    let room = json(r).await["id"].as_str().unwrap().to_owned();
    for g in guests {
        let t = s.login(g).await;
        let r = s
            .call(
                Method::POST,
                &format!("/api/v1/invites/{room}/accept"),
                &t,
                None,
            )
            .await;
        assert_eq!(r.status(), 200, "{g} accepts");
    }
    World {
        s,
        room,
        movie,
        ids,
        _dir: dir,
    }
}

impl World {
    pub fn id(&self, name: &str) -> i64 {
        self.ids.iter().find(|(n, _)| n == name).unwrap().1
    }

    pub fn url(&self, room: &str) -> String {
        format!("ws://{}/api/v1/rooms/{room}/signal", self.s.addr)
    }

    /// Opens a socket (no auth yet).
    pub async fn open(&self, room: &str, origin: Option<&str>) -> Result<Ws, tungstenite::Error> {
        let mut req = self.url(room).into_client_request().unwrap();
        if let Some(o) = origin {
            req.headers_mut().insert("origin", o.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
            .await
            .map(|(ws, _)| ws)
    }

    /// Opens, authenticates as `name` with session key seed `seed`, returns the socket and `hello`.
    pub async fn join(&self, name: &str, seed: u8) -> (Ws, ServerMessage, String) {
        let token = self.s.login(name).await;
        let mut ws = self.open(&self.room, None).await.unwrap();
        auth(&mut ws, &token, Some(seed)).await;
        let hello = recv(&mut ws).await;
        assert!(matches!(hello, ServerMessage::Hello { .. }), "{hello:?}");
        (ws, hello, token)
    }
}

pub fn key(seed: u8) -> SigningKey {
    SigningKey::from_seed(&[seed; 32]).unwrap()
}

pub async fn auth(ws: &mut Ws, token: &str, seed: Option<u8>) {
    let mut m = json!({"type": "auth", "token": token});
    if let Some(s) = seed {
        m["key"] = json!(key(s).public_key().to_base64url());
    }
    ws.send(Message::text(m.to_string())).await.unwrap();
}

pub async fn send(ws: &mut Ws, v: serde_json::Value) {
    ws.send(Message::text(v.to_string())).await.unwrap();
}

/// Next server message (pings skipped); panics on close or after 5 s.
pub async fn recv(ws: &mut Ws) -> ServerMessage {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("message within 5 s")
            .expect("open")
            .expect("no error");
        match m {
            Message::Text(t) => return ServerMessage::from_json(t.as_str()).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// Reads until the close frame; returns its code (skips other messages).
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("close within 5 s");
        match m {
            Some(Ok(Message::Close(f))) => return f.map(|f| u16::from(f.code)),
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Reads until the close frame; returns its code and reason (skips other
/// messages). `None` when the connection ends without a close frame.
pub async fn close_frame(ws: &mut Ws) -> Option<(u16, String)> {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("close within 5 s");
        match m {
            Some(Ok(Message::Close(f))) => {
                return f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned()));
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => return None,
        }
    }
}

/// Next message, or `None` if nothing arrives within `d`.
pub async fn maybe_recv(ws: &mut Ws, d: Duration) -> Option<ServerMessage> {
    loop {
        match tokio::time::timeout(d, ws.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(t)))) => {
                return Some(ServerMessage::from_json(t.as_str()).unwrap());
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
}

pub fn _code(c: CloseCode) -> u16 {
    u16::from(c)
}
