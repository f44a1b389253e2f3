//! Room harness for whole-system tests with native drivers: the real
//! signaling server in-process (real SQLite file, real HTTP/WebSocket on
//! 127.0.0.1), a host and followers as native drivers with virtual players,
//! real WebRTC (str0m) over loopback UDP. Each driver can be given its own
//! UDP port so network impairment can target it.
//!
//! Include with `#[path = "support/inproc.rs"] mod inproc;`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::time::timeout;
use watchparty_peer::admit::AdmitSecret;
use watchparty_peer::crypto::{PublicKey, SigningKey};
use watchparty_peer::ids::{ContentHash, MediaId, PositionMs, RoomId, UserId};
use watchparty_peer::message::MediaItem;
use watchparty_peer::native::api_client::{ApiClient, CreateRoom, Invite};
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::driver::{
    DriverConfig, DriverEvent, DriverHandle, PeerView, StatusSnapshot, VirtualMedia,
};
use watchparty_peer::native::player::PlayerClock;
use watchparty_peer::native::player::virtual_backend::VirtualBackend;
use watchparty_peer::time::MediaPos;
use watchparty_peer::virtual_player::VirtualPlayerConfig;
use watchparty_signal::AppState;
use watchparty_signal::config::{Argon2Cost, Config};
use watchparty_signal::validate::{DisplayName, Username};

pub const PASSWORD: &str = "correct-horse-battery";
/// Length of the virtual media.
pub const DURATION_MS: u64 = 600_000;

/// A room on a running server: API clients of the host (index 0) and the
/// followers, the host's room key, the item to load.
pub struct Room {
    pub apis: Vec<ApiClient>,
    pub room: RoomId,
    pub host_key: Option<SigningKey>,
    pub pin: PublicKey,
    /// The room's admission secret (derived from the host key, as the
    /// host's invite link carries it; docs/protocol.md §2.2).
    pub admit: AdmitSecret,
    /// Drivers spawned from now on hold `admit` (the host enforces
    /// admission, followers knock with it and enforce it). Default off.
    pub admission: bool,
    pub item: MediaItem,
    _dir: tempfile::TempDir,
}

/// Starts a server and creates a room with `followers` invited and joined.
pub async fn room(followers: usize) -> Room {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    let mut movie = vec![7u8; 10_000];
    movie[..12].copy_from_slice(b"\0\0\0\x18ftypisom");
    std::fs::write(lib.join("movie.mp4"), &movie).unwrap();
    let mut config = Config::new(dir.path().join("data"));
    config.argon2 = Argon2Cost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    let state = AppState::new(config).await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let st = state.clone();
    tokio::spawn(async move {
        watchparty_signal::server::serve(st, listener, std::future::pending()).await
    });
    let lib_id = watchparty_signal::media::library::add_scanned(&state.db, "films", &lib, 0)
        .await
        .unwrap();
    let names: Vec<String> = std::iter::once("host".to_owned())
        .chain((0..followers).map(|i| format!("follower{i}")))
        .collect();
    let mut apis = Vec::new();
    for n in &names {
        let hash = state.hasher.hash(PASSWORD.as_bytes()).await.unwrap();
        let id = watchparty_signal::accounts::create_user(
            &state.db,
            &Username::parse(n).unwrap(),
            &DisplayName::parse(n).unwrap(),
            &hash,
            false,
        )
        .await
        .unwrap();
        watchparty_signal::media::library::grant(&state.db, id, lib_id, 0)
            .await
            .unwrap();
        let api = ApiClient::new(&base, None).unwrap();
        api.login(n, PASSWORD).await.unwrap();
        apis.push(api);
    }
    let media = apis[0].media().await.unwrap();
    let info = media.first().expect("one media item").clone();
    let host_key = new_signing_key().unwrap();
    let created = apis[0]
        .create_room(&CreateRoom {
            name: "impaired".into(),
            media_id: info.id,
            invite_only: true,
            password: None,
            invites: names[1..]
                .iter()
                .map(|u| Invite {
                    username: u.clone(),
                    role: "viewer".into(),
                })
                .collect(),
            host_public_key: host_key.public_key().to_base64url(),
        })
        .await
        .unwrap();
    for api in &apis[1..] {
        api.join_room(&created.id, None).await.unwrap();
    }
    let mut hash = [0u8; 32];
    hex::decode_to_slice(&info.content_hash, &mut hash).unwrap();
    Room {
        apis,
        room: created.id.parse().unwrap(),
        pin: host_key.public_key(),
        admit: AdmitSecret::derive(&host_key),
        admission: false,
        host_key: Some(host_key),
        item: MediaItem {
            media: MediaId::new(&info.id.to_string()).unwrap(),
            hash: ContentHash(hash),
            duration: PositionMs::new(DURATION_MS).unwrap(),
        },
        _dir: dir,
    }
}

impl Room {
    /// The server's signaling URL for member `index`.
    pub fn signal_url(&self, index: usize) -> String {
        self.apis[index]
            .signal_url(&self.room.to_string())
            .unwrap()
            .to_string()
    }

    /// Spawns member `index`'s driver (0 = host) on UDP `port` (0 = any).
    pub async fn driver(&mut self, index: usize, port: u16) -> DriverHandle {
        self.driver_via(index, port, None).await
    }

    /// Like [`Room::driver`], with the signaling WebSocket at `signal_url`
    /// instead of the server's own (e.g. a proxy in front of it).
    pub async fn driver_via(
        &mut self,
        index: usize,
        port: u16,
        signal_url: Option<String>,
    ) -> DriverHandle {
        let api = &self.apis[index];
        let (identity, pin) = if index == 0 {
            (self.host_key.take().expect("host spawned once"), None)
        } else {
            (new_signing_key().unwrap(), Some(self.pin))
        };
        let clock = PlayerClock::new(tokio::time::Instant::now());
        let url = match signal_url {
            Some(u) => u,
            None => self.signal_url(index),
        };
        let mut cfg = DriverConfig::new(self.room, url, identity);
        cfg.bind = SocketAddr::from(([127, 0, 0, 1], port));
        cfg.pinned_host = pin;
        cfg.session.admit_secret = self.admission.then_some(self.admit);
        cfg.jitter_seed = 42 + index as u64;
        let backend = VirtualBackend::new(
            VirtualPlayerConfig {
                duration: Some(MediaPos::from_millis(DURATION_MS)),
                ..VirtualPlayerConfig::default()
            },
            clock,
        );
        DriverHandle::spawn(cfg, clock, backend, api.clone(), VirtualMedia)
            .await
            .unwrap()
    }
}

/// Waits up to `limit` for an event matching `f`; returns it and the events
/// skipped on the way.
pub async fn wait_for(
    h: &mut DriverHandle,
    what: &str,
    limit: Duration,
    f: impl Fn(&DriverEvent) -> bool,
) -> (DriverEvent, Vec<DriverEvent>) {
    let mut seen = Vec::new();
    let r = timeout(limit, async {
        loop {
            match h.events.recv().await {
                Some(e) if f(&e) => return e,
                Some(DriverEvent::Stopped { reason }) => panic!("driver stopped: {reason}"),
                Some(e) => seen.push(e),
                None => panic!("driver gone"),
            }
        }
    })
    .await;
    match r {
        Ok(e) => (e, seen),
        Err(_) => panic!("timed out waiting for {what}; events: {seen:#?}"),
    }
}

/// The status row of neighbour `user`.
pub fn row(s: &StatusSnapshot, user: UserId) -> PeerView {
    s.peers
        .iter()
        .find(|p| p.user == user.get())
        .cloned()
        .unwrap_or_else(|| panic!("no row for {user:?} in {s:?}"))
}

/// How far a follower is from the host, ms: its player against its view of
/// the room, plus its view of the room against the host's (both compared as
/// position minus room clock, so snapshot times do not matter).
pub fn sync_error(host: &StatusSnapshot, f: &StatusSnapshot) -> Option<f64> {
    let (hp, fp) = (host.playback?, f.playback?);
    let player = (f.player_position_ms? - fp.position_ms).abs();
    let room = if hp.paused && fp.paused {
        (hp.position_ms - fp.position_ms).abs()
    } else {
        ((fp.position_ms - f.room_ms?) - (hp.position_ms - host.room_ms?)).abs()
    };
    Some(player + room)
}

/// Waits until the follower has applied the host's state (`paused`,
/// position at least `min_pos_ms`) and is within `tolerance_ms` of it, not
/// correcting. Returns how long that took and the final error.
pub async fn wait_in_sync(
    host: &DriverHandle,
    f: &DriverHandle,
    paused: bool,
    min_pos_ms: f64,
    tolerance_ms: f64,
    limit: Duration,
) -> (Duration, f64) {
    let t0 = Instant::now();
    let mut last = None;
    while t0.elapsed() < limit {
        let hs = host.status().await.unwrap();
        let fs = f.status().await.unwrap();
        if let (Some(fp), Some(err)) = (fs.playback, sync_error(&hs, &fs))
            && fp.paused == paused
            && fp.position_ms >= min_pos_ms
            && !fs.correcting
            && err < tolerance_ms
        {
            return (t0.elapsed(), err);
        }
        last = Some(fs);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("follower not in sync after {limit:?} (paused {paused}, ≥ {min_pos_ms} ms): {last:?}");
}
