//! Load and soak: the real server binary as a separate process, many rooms of
//! legitimate members joining, signaling, leaving and rejoining over real
//! HTTP and WebSocket, while hostile clients flood it (WebSocket junk and
//! oversized frames, oversized HTTP bodies, slowloris over HTTP, silent
//! never-authenticating WebSocket holders from many addresses, invalid JSON,
//! password and token guessing, throttle filling — bogus refreshes each from
//! a new address, to fill the per-address tables — and slow bodies —
//! requests that declare a body and never send it, more per address than the
//! per-address connection cap).
//!
//! Measured: legitimate join latency (connect → `hello`) and relay latency
//! (one way, offer guest → host and answer host → guest; all clients share
//! one clock), legitimate error count (asserted 0), server RSS and open file
//! descriptors over time (read from `/proc`; descriptors must return to the
//! baseline once the clients are gone). A summary is printed and written as
//! JSON to `target/soak/` (or `WATCHPARTY_SOAK_OUT`).
//!
//! Scale comes from the environment (`cargo xtask soak` sets it; the default
//! test run uses the small defaults): `WATCHPARTY_SOAK_SECS`,
//! `WATCHPARTY_SOAK_ROOMS`, `WATCHPARTY_SOAK_MEMBERS`, `WATCHPARTY_SOAK_HOSTILE`,
//! `WATCHPARTY_SOAK_STAY_MS` (how long a guest stays per session),
//! `WATCHPARTY_SOAK_ROUNDS` (the load time is split into rounds; every client
//! leaves between rounds and the server's RSS and descriptors are read). The server
//! runs with default limits except `max_connections` (raised: 200 × 8 members
//! exceed the default 1024 sockets).
//!
//! Per-IP limits key on the client address, so every legitimate member
//! connects from its own loopback address (127.10.x.y) and the hostile
//! clients from 127.20.x.y. Password guessing targets separate `victim`
//! accounts: guessing against a member's own account would lock it (the
//! per-account back-off is the designed answer to guessing, see
//! docs/security.md).

mod proc_common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use proc_common::*;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::signaling::ServerMessage;

/// Longest a legitimate client waits for any expected answer before it
/// counts an error.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Access tokens are refreshed after this long (the server's default TTL is
/// 600 s).
const REFRESH_AFTER: Duration = Duration::from_secs(300);
/// Parallel logins/accepts during setup.
const SETUP_PARALLEL: usize = 16;
/// File descriptors above the baseline still accepted once every client is
/// gone (SQLite pool connections opened under load stay open until idle).
const FD_SLACK: usize = 16;
/// How long the server may take to close sockets after the clients left.
const FD_SETTLE: Duration = Duration::from_secs(20);
/// Longest wait for every host to be online before a round's guests start.
const HOSTS_ONLINE_WAIT: Duration = Duration::from_secs(30);
/// Pause after a round before RSS is read.
const ROUND_PAUSE: Duration = Duration::from_secs(2);
/// Slowloris sockets per hostile slowloris client.
const SLOWLORIS_SOCKETS: usize = 10;
/// Silent (never authenticating) WebSocket sockets per slowloris client; with
/// the 50 hostile clients of the full run, 13 × 16 = 208 exceed the server's
/// 128 unauthenticated slots.
const SILENT_WS_SOCKETS: usize = 16;
/// Sockets each slow-body client holds (declared body, nothing sent),
/// more than the server's default per-address cap (256), all from one address.
const SLOW_BODY_SOCKETS: usize = 300;
/// A legitimate client refused with 429/503 at the WebSocket upgrade (the
/// global or per-IP cap on unauthenticated sockets, which hostile sockets
/// fill) retries after this long, as the native driver does with backoff...
const THROTTLED_RETRY: Duration = Duration::from_millis(250);
/// ...for at most this long before it counts an error.
const THROTTLED_GIVE_UP: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug)]
struct Params {
    secs: u64,
    /// A guest stays connected `stay_ms .. 2 × stay_ms` per session.
    stay_ms: u64,
    /// The load runs in this many rounds of `secs / rounds` (clients leave
    /// between rounds).
    rounds: u64,
    rooms: usize,
    members: usize,
    hostile: usize,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Params {
    fn from_env() -> Params {
        Params {
            secs: env_or("WATCHPARTY_SOAK_SECS", 8),
            stay_ms: env_or("WATCHPARTY_SOAK_STAY_MS", 1000),
            rounds: env_or("WATCHPARTY_SOAK_ROUNDS", 1u64).max(1),
            rooms: env_or("WATCHPARTY_SOAK_ROOMS", 6),
            members: env_or("WATCHPARTY_SOAK_MEMBERS", 4),
            hostile: env_or("WATCHPARTY_SOAK_HOSTILE", 10),
        }
    }
}

/// Measurements shared by every task.
#[derive(Default)]
struct Stats {
    join_us: Mutex<Vec<u64>>,
    throttled_retries: AtomicU64,
    relay_us: Mutex<Vec<u64>>,
    rejoin_us: Mutex<Vec<u64>>,
    errors: Mutex<Vec<String>>,
    error_kinds: Mutex<std::collections::BTreeMap<String, u64>>,
    legit_ops: AtomicU64,
    hostile_ops: AtomicU64,
    hostile_refused: AtomicU64,
    hostile_5xx: AtomicU64,
    slowloris_cut: AtomicU64,
    silent_closed: AtomicU64,
    /// Slow bodies answered 408 (body deadline) and refused at once (429,
    /// per-address cap).
    slow_body_timed_out: AtomicU64,
    slow_body_refused: AtomicU64,
    /// Bogus refreshes sent by the throttle fillers, each from a new address.
    throttle_fill_requests: AtomicU64,
}

impl Stats {
    fn error(&self, e: String) {
        let kind: String = e.chars().take(60).collect();
        *self.error_kinds.lock().unwrap().entry(kind).or_default() += 1;
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 1000 {
            errors.push(e);
        }
    }
}

struct Ctx {
    addr: SocketAddr,
    epoch: Instant,
    stop: AtomicBool,
    /// Hosts connected in the current round (guests start once all are).
    hosts_online: AtomicUsize,
    stats: Stats,
}

impl Ctx {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
    fn now_us(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }
}

/// Member `i` (over all rooms) connects from its own loopback address.
fn legit_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 10, (i / 250) as u8, (i % 250 + 1) as u8)
}

fn hostile_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 20, (i / 250) as u8, (i % 250 + 1) as u8)
}

/// Throttle fillers use addresses 127.22.x.y and up, a new one per request.
fn filler_ip(k: usize) -> Ipv4Addr {
    Ipv4Addr::new(
        127,
        (22 + k / 62_500 % 8) as u8,
        (k / 250 % 250) as u8,
        (k % 250 + 1) as u8,
    )
}

/// Silent WebSocket holders use addresses 127.21.x.y.
fn silent_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 21, (i / 250 % 256) as u8, (i % 250 + 1) as u8)
}

fn username(room: usize, member: usize) -> String {
    format!("r{room:04}m{member:02}")
}

type Ws = WebSocketStream<TcpStream>;

async fn tcp_from(addr: SocketAddr, from: Ipv4Addr) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    sock.bind(SocketAddr::from((from, 0)))?;
    sock.connect(addr).await
}

async fn ws_open(ctx: &Ctx, room: &str, from: Ipv4Addr) -> Result<Ws, String> {
    let tcp = tcp_from(ctx.addr, from)
        .await
        .map_err(|e| format!("tcp: {e}"))?;
    let url = format!("ws://{}/api/v1/rooms/{room}/signal", ctx.addr);
    let req = url.into_client_request().map_err(|e| e.to_string())?;
    tokio_tungstenite::client_async(req, tcp)
        .await
        .map(|(ws, _)| ws)
        .map_err(|e| format!("ws handshake: {e}"))
}

/// Next server message within [`ANSWER_TIMEOUT`] (pings answered by the
/// library, skipped here).
async fn next_msg(ws: &mut Ws) -> Result<ServerMessage, String> {
    loop {
        let m = tokio::time::timeout(ANSWER_TIMEOUT, ws.next())
            .await
            .map_err(|_| "no message within the timeout".to_owned())?;
        match m {
            Some(Ok(Message::Text(t))) => {
                return ServerMessage::from_json(t.as_str()).map_err(|e| format!("decode: {e}"));
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(Message::Close(f))) => return Err(format!("closed: {f:?}")),
            Some(Ok(other)) => return Err(format!("unexpected {other:?}")),
            Some(Err(e)) => return Err(format!("ws: {e}")),
            None => return Err("ws ended".to_owned()),
        }
    }
}

async fn ws_send(ws: &mut Ws, v: Value) -> Result<(), String> {
    ws.send(Message::text(v.to_string()))
        .await
        .map_err(|e| format!("send: {e}"))
}

/// Opens a socket, authenticates, waits for `hello`; returns the socket and
/// the member's user id.
async fn ws_join(
    ctx: &Ctx,
    room: &str,
    from: Ipv4Addr,
    token: &str,
    key: &SigningKey,
) -> Result<(Ws, u64), String> {
    let t0 = Instant::now();
    let mut ws = loop {
        match ws_open(ctx, room, from).await {
            Ok(ws) => break ws,
            Err(e)
                if (e.contains("429") || e.contains("503"))
                    && t0.elapsed() < THROTTLED_GIVE_UP
                    && !ctx.stopped() =>
            {
                ctx.stats.throttled_retries.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(THROTTLED_RETRY).await;
            }
            Err(e) => return Err(e),
        }
    };
    ws_send(
        &mut ws,
        json!({"type": "auth", "token": token, "key": key.public_key().to_base64url()}),
    )
    .await?;
    match next_msg(&mut ws).await? {
        ServerMessage::Hello { you, .. } => Ok((ws, you.get())),
        other => Err(format!("expected hello, got {other:?}")),
    }
}

/// `v=0` plus the sender's clock reading, so the receiver can compute the
/// one-way relay latency.
fn stamped_sdp(ctx: &Ctx) -> String {
    format!("v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=t{}\r\n", ctx.now_us())
}

fn stamp_of(sdp: &str) -> Option<u64> {
    sdp.split("s=t").nth(1)?.split('\r').next()?.parse().ok()
}

fn record_relay(ctx: &Ctx, sdp: &str) {
    if let Some(t) = stamp_of(sdp) {
        let now = ctx.now_us();
        ctx.stats
            .relay_us
            .lock()
            .unwrap()
            .push(now.saturating_sub(t));
    }
}

struct Member {
    ip: Ipv4Addr,
    client: reqwest::Client,
    access: String,
    refresh: String,
    fetched: Instant,
    key: SigningKey,
}

impl Member {
    async fn login(ctx: &Ctx, name: &str, index: usize) -> Result<Member, String> {
        let ip = legit_ip(index);
        let client = client_from(Some(IpAddr::V4(ip)));
        let r = client
            .post(format!("{}/api/v1/auth/login", ctx.base()))
            .json(&json!({"username": name, "password": PASSWORD}))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if r.status() != StatusCode::OK {
            return Err(format!("login {name}: {}", r.status()));
        }
        let v: Value = r.json().await.map_err(|e| e.to_string())?;
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(index as u64).to_le_bytes());
        Ok(Member {
            ip,
            client,
            access: v["access_token"].as_str().unwrap_or_default().to_owned(),
            refresh: v["refresh_token"].as_str().unwrap_or_default().to_owned(),
            fetched: Instant::now(),
            key: SigningKey::from_seed(&seed).map_err(|e| format!("{e:?}"))?,
        })
    }

    /// Refreshes the access token when it is getting old (long soaks).
    async fn fresh_token(&mut self, ctx: &Ctx) -> Result<String, String> {
        if self.fetched.elapsed() > REFRESH_AFTER {
            let r = self
                .client
                .post(format!("{}/api/v1/auth/refresh", ctx.base()))
                .json(&json!({"refresh_token": self.refresh}))
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if r.status() != StatusCode::OK {
                return Err(format!("refresh: {}", r.status()));
            }
            let v: Value = r.json().await.map_err(|e| e.to_string())?;
            self.access = v["access_token"].as_str().unwrap_or_default().to_owned();
            self.refresh = v["refresh_token"].as_str().unwrap_or_default().to_owned();
            self.fetched = Instant::now();
        }
        Ok(self.access.clone())
    }

    async fn post(&self, ctx: &Ctx, path: &str, body: Value) -> Result<Value, String> {
        let r = self
            .client
            .post(format!("{}{path}", ctx.base()))
            .bearer_auth(&self.access)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !r.status().is_success() {
            return Err(format!("{path}: {}", r.status()));
        }
        Ok(r.json().await.unwrap_or(Value::Null))
    }
}

/// The host stays connected and answers every offer; hands the member back
/// for the next round.
async fn host_task(ctx: Arc<Ctx>, room: String, mut m: Member) -> Member {
    if let Err(e) = host_run(&ctx, &room, &mut m).await {
        ctx.stats.error(e);
    }
    m
}

async fn host_run(ctx: &Ctx, room: &str, m: &mut Member) -> Result<(), String> {
    let token = m
        .fresh_token(ctx)
        .await
        .map_err(|e| format!("host token: {e}"))?;
    let (mut ws, _) = ws_join(ctx, room, m.ip, &token, &m.key)
        .await
        .map_err(|e| format!("host join: {e}"))?;
    ctx.hosts_online.fetch_add(1, Ordering::Relaxed);
    while !ctx.stopped() {
        let msg = match tokio::time::timeout(Duration::from_millis(200), ws.next()).await {
            Err(_) => continue,
            Ok(Some(Ok(Message::Text(t)))) => {
                ServerMessage::from_json(t.as_str()).map_err(|e| format!("host decode: {e}"))?
            }
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => {
                if ctx.stopped() {
                    return Ok(());
                }
                return Err(format!("host socket: {other:?}"));
            }
        };
        match msg {
            ServerMessage::Offer { from, sdp } => {
                record_relay(ctx, sdp.as_str());
                let answer = json!({"type": "answer", "to": from.get(), "sdp": stamped_sdp(ctx)});
                ws_send(&mut ws, answer)
                    .await
                    .map_err(|e| format!("host answer: {e}"))?;
                ctx.stats.legit_ops.fetch_add(1, Ordering::Relaxed);
            }
            ServerMessage::Error { .. } => ctx.stats.error(format!("host got {msg:?}")),
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

/// One guest session: join, offer to the host and wait for the answer, trickle
/// two candidates, stay a while, disconnect.
async fn guest_session(
    ctx: &Ctx,
    room: &str,
    m: &mut Member,
    host: u64,
    stay: Duration,
) -> Result<(), String> {
    let token = m.fresh_token(ctx).await?;
    let t0 = Instant::now();
    let (mut ws, _) = ws_join(ctx, room, m.ip, &token, &m.key).await?;
    ctx.stats
        .join_us
        .lock()
        .unwrap()
        .push(t0.elapsed().as_micros() as u64);
    ws_send(
        &mut ws,
        json!({"type": "offer", "to": host, "sdp": stamped_sdp(ctx)}),
    )
    .await?;
    for port in [40000, 40001] {
        let c = format!("candidate:1 1 udp 2130706431 127.0.0.1 {port} typ host");
        ws_send(
            &mut ws,
            json!({"type": "ice", "to": host, "candidate": {"candidate": c, "sdpMid": "0"}}),
        )
        .await?;
    }
    loop {
        match next_msg(&mut ws).await? {
            ServerMessage::Answer { sdp, .. } => {
                record_relay(ctx, sdp.as_str());
                break;
            }
            e @ ServerMessage::Error { .. } => return Err(format!("{e:?}")),
            _ => {}
        }
    }
    ctx.stats.legit_ops.fetch_add(1, Ordering::Relaxed);
    let until = Instant::now() + stay;
    while Instant::now() < until && !ctx.stopped() {
        match tokio::time::timeout(Duration::from_millis(100), ws.next()).await {
            Err(_) => {}
            Ok(Some(Ok(Message::Text(t)))) => {
                if let Ok(e @ ServerMessage::Error { .. }) = ServerMessage::from_json(t.as_str()) {
                    return Err(format!("{e:?}"));
                }
            }
            Ok(Some(Ok(_))) => {}
            Ok(other) => return Err(format!("socket while staying: {other:?}")),
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

async fn guest_task(
    ctx: Arc<Ctx>,
    room: String,
    mut m: Member,
    host: u64,
    seed: u64,
    stay_ms: u64,
) -> Member {
    let mut rng = seed | 1;
    let mut rand = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    while !ctx.stopped() {
        let stay = Duration::from_millis(stay_ms + rand(stay_ms));
        if let Err(e) = guest_session(&ctx, &room, &mut m, host, stay).await
            && !ctx.stopped()
        {
            ctx.stats.error(format!("guest: {e}"));
        }
        if ctx.stopped() {
            break;
        }
        // Now and then leave the room for real and join it again (REST).
        if rand(6) == 0 {
            let t0 = Instant::now();
            let left = m
                .post(&ctx, &format!("/api/v1/rooms/{room}/leave"), Value::Null)
                .await;
            let joined = m
                .post(&ctx, &format!("/api/v1/rooms/{room}/join"), json!({}))
                .await;
            match (left, joined) {
                (Ok(_), Ok(_)) => {
                    ctx.stats
                        .rejoin_us
                        .lock()
                        .unwrap()
                        .push(t0.elapsed().as_micros() as u64);
                    ctx.stats.legit_ops.fetch_add(2, Ordering::Relaxed);
                }
                (l, j) => ctx.stats.error(format!("leave/rejoin: {l:?} {j:?}")),
            }
        }
        tokio::time::sleep(Duration::from_millis(100 + rand(400))).await;
    }
    m
}

// ------------------------------------------------------------ hostile side

fn hostile_status(ctx: &Ctx, s: StatusCode) {
    ctx.stats.hostile_ops.fetch_add(1, Ordering::Relaxed);
    if s.is_server_error() && s != StatusCode::SERVICE_UNAVAILABLE {
        ctx.stats.hostile_5xx.fetch_add(1, Ordering::Relaxed);
    }
    if s.is_client_error() || s == StatusCode::SERVICE_UNAVAILABLE {
        ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
    }
}

/// WebSocket flood: junk, oversized and binary frames, never authenticated,
/// reconnecting whenever closed.
async fn ws_flooder(ctx: Arc<Ctx>, room: String, from: Ipv4Addr) {
    let big = "z".repeat(200_000);
    while !ctx.stopped() {
        let Ok(mut ws) = ws_open(&ctx, &room, from).await else {
            ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        for k in 0..100u32 {
            let m = match k % 4 {
                0 => Message::text("{\"type\":\"offer\",\"to\":1,\"sdp\":\"v=0\"}"),
                1 => Message::text(big.clone()),
                2 => Message::text("{{{{ not json"),
                _ => Message::binary(vec![0u8; 1024]),
            };
            ctx.stats.hostile_ops.fetch_add(1, Ordering::Relaxed);
            if ws.send(m).await.is_err() || ctx.stopped() {
                ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Oversized HTTP bodies and invalid JSON on every JSON route.
async fn http_garbage(ctx: Arc<Ctx>, from: Ipv4Addr, room: String) {
    let client = client_from(Some(IpAddr::V4(from)));
    let huge = vec![b'{'; 1 << 20];
    let targets = [
        "/api/v1/auth/login".to_owned(),
        "/api/v1/auth/register".to_owned(),
        "/api/v1/rooms".to_owned(),
        format!("/api/v1/rooms/{room}/join"),
    ];
    let mut k = 0usize;
    while !ctx.stopped() {
        let path = &targets[k % targets.len()];
        let body: Vec<u8> = match k % 3 {
            0 => huge.clone(),
            1 => b"{\"username\": [1,2,3], \"password\": {}}".to_vec(),
            _ => b"\xff\xfe not even utf-8".to_vec(),
        };
        k += 1;
        let r = client
            .post(format!("{}{path}", ctx.base()))
            .bearer_auth("garbage.token.here")
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        match r {
            Ok(r) => hostile_status(&ctx, r.status()),
            Err(_) => {
                ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Slowloris over HTTP and over the WebSocket (silent holders) at once.
async fn slowloris(ctx: Arc<Ctx>, from: Ipv4Addr, room: String, index: usize) {
    tokio::join!(slowloris_http(&ctx, from), silent_ws(&ctx, &room, index));
}

/// Slowloris: sockets that send a request header one byte at a time.
async fn slowloris_http(ctx: &Ctx, from: Ipv4Addr) {
    let mut socks: Vec<(TcpStream, usize)> = Vec::new();
    let header = b"GET /healthz HTTP/1.1\r\nHost: soak\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    while !ctx.stopped() {
        while socks.len() < SLOWLORIS_SOCKETS {
            match tcp_from(ctx.addr, from).await {
                Ok(s) => socks.push((s, 0)),
                Err(_) => {
                    ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        let mut kept = Vec::new();
        for (mut s, pos) in socks.drain(..) {
            let byte = header[pos % header.len()];
            ctx.stats.hostile_ops.fetch_add(1, Ordering::Relaxed);
            if s.write_all(&[byte]).await.is_ok() {
                kept.push((s, pos + 1));
            } else {
                ctx.stats.slowloris_cut.fetch_add(1, Ordering::Relaxed);
            }
        }
        socks = kept;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
}

/// Password guessing against the `victim` accounts, forged bearer tokens, and
/// forged WebSocket auth.
async fn guesser(ctx: Arc<Ctx>, from: Ipv4Addr, room: String, victims: usize) {
    let client = client_from(Some(IpAddr::V4(from)));
    let mut k = 0usize;
    while !ctx.stopped() {
        k += 1;
        let r = match k % 3 {
            0 => {
                client
                    .post(format!("{}/api/v1/auth/login", ctx.base()))
                    .json(&json!({"username": format!("victim{}", k % victims), "password": format!("guess-{k:08}")}))
                    .send()
                    .await
            }
            1 => {
                client
                    .get(format!("{}/api/v1/rooms", ctx.base()))
                    .bearer_auth(format!("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.{k:032}"))
                    .send()
                    .await
            }
            _ => {
                if let Ok(mut ws) = ws_open(&ctx, &room, from).await {
                    let _ = ws_send(
                        &mut ws,
                        json!({"type": "auth", "token": format!("forged-{k}")}),
                    )
                    .await;
                    ctx.stats.hostile_ops.fetch_add(1, Ordering::Relaxed);
                    if !matches!(next_msg(&mut ws).await, Ok(ServerMessage::Hello { .. })) {
                        ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
                    }
                } else {
                    ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        match r {
            Ok(r) => hostile_status(&ctx, r.status()),
            Err(_) => {
                ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Silent WebSocket holders: upgraded sockets that never send `auth`, each
/// from its own address (per-IP caps do not stop an attacker with many
/// addresses), reopened as soon as the server closes them. Together they
/// outnumber the server's cap on unauthenticated sockets, so without fair
/// admission they would lock legitimate members out.
async fn silent_ws(ctx: &Ctx, room: &str, index: usize) {
    let mut held: Vec<Ws> = Vec::new();
    let mut k = 0usize;
    while !ctx.stopped() {
        held.retain_mut(|ws| match ws.next().now_or_never() {
            // Closed by the server (evicted or timed out).
            Some(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                ctx.stats.silent_closed.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => true,
        });
        while held.len() < SILENT_WS_SOCKETS && !ctx.stopped() {
            k += 1;
            let from = silent_ip(index * SILENT_WS_SOCKETS * 64 + k % (SILENT_WS_SOCKETS * 64));
            ctx.stats.hostile_ops.fetch_add(1, Ordering::Relaxed);
            match ws_open(ctx, room, from).await {
                Ok(ws) => held.push(ws),
                Err(_) => {
                    ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One raw HTTP/1.1 request from `from` (`connection: close`); the status
/// of the answer, or `None` when the connection fails or ends without one.
async fn raw_status(ctx: &Ctx, from: Ipv4Addr, request: &[u8]) -> Option<u16> {
    use tokio::io::AsyncReadExt;
    let mut s = tcp_from(ctx.addr, from).await.ok()?;
    s.write_all(request).await.ok()?;
    let mut got = Vec::new();
    let read = tokio::time::timeout(ANSWER_TIMEOUT * 3, s.read_to_end(&mut got)).await;
    if read.is_err() && got.is_empty() {
        return None;
    }
    std::str::from_utf8(got.get(9..12)?).ok()?.parse().ok()
}

/// Throttle filling: bogus refreshes (no password hashing, the cheapest way
/// in), each from a new address, so the per-address tables overflow and
/// forget; legitimate members must never be locked out by that.
async fn throttle_filler(ctx: Arc<Ctx>, index: usize) {
    let body = json!({"refresh_token": "x".repeat(43)}).to_string();
    let request = format!(
        "POST /api/v1/auth/refresh HTTP/1.1\r\nhost: soak\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut k = index * 1_000_000;
    while !ctx.stopped() {
        k += 1;
        ctx.stats
            .throttle_fill_requests
            .fetch_add(1, Ordering::Relaxed);
        match raw_status(&ctx, filler_ip(k), request.as_bytes()).await {
            Some(code) => hostile_status(&ctx, StatusCode::from_u16(code).unwrap_or_default()),
            None => {
                ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// Slow bodies: [`SLOW_BODY_SOCKETS`] requests from one address that
/// declare a body and never send it, each reopened as soon as the server
/// closes it. The server answers 408 after the body deadline and refuses
/// what is over the per-address cap at once (429).
async fn slow_bodies(ctx: Arc<Ctx>, from: Ipv4Addr) {
    let request = b"POST /api/v1/auth/login HTTP/1.1\r\nhost: soak\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n";
    let sockets = (0..SLOW_BODY_SOCKETS).map(|_| {
        let ctx = ctx.clone();
        async move {
            while !ctx.stopped() {
                ctx.stats.hostile_ops.fetch_add(1, Ordering::Relaxed);
                match raw_status(&ctx, from, request).await {
                    Some(408) => {
                        ctx.stats
                            .slow_body_timed_out
                            .fetch_add(1, Ordering::Relaxed);
                    }
                    Some(code) => {
                        ctx.stats.slow_body_refused.fetch_add(1, Ordering::Relaxed);
                        hostile_status(&ctx, StatusCode::from_u16(code).unwrap_or_default());
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    None => {
                        ctx.stats.hostile_refused.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        }
    });
    futures_util::future::join_all(sockets).await;
}

// ------------------------------------------------------------ setup

/// Users straight into the database before the server starts (one admin-CLI
/// call per user would take minutes at 1600 users): copies of a template
/// account created by the CLI, each with access to `films`.
async fn bulk_users(dir: &DataDir, names: &[String]) {
    dir.add_user("template");
    let opts = SqliteConnectOptions::new().filename(dir.db_path());
    let mut db = SqliteConnection::connect_with(&opts).await.unwrap();
    let mut tx = db.begin().await.unwrap();
    for n in names {
        sqlx::query(
            "INSERT INTO users (username, display_name, password_hash, created_at)
             SELECT ?1, ?1, password_hash, created_at FROM users WHERE username = 'template'",
        )
        .bind(n)
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT OR IGNORE INTO library_grants (user_id, library_id, created_at)
         SELECT u.id, l.id, 0 FROM users u, libraries l",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();
    db.close().await.unwrap();
}

/// `RssAnon`, `RssFile` and `RssShmem` of the server (`/proc/PID/status`):
/// heap growth shows in the first, SQLite's shared WAL index in the last.
fn rss_parts(server: &Proc) -> String {
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", server.child.id())).unwrap_or_default();
    status
        .lines()
        .filter(|l| {
            l.starts_with("RssAnon") || l.starts_with("RssFile") || l.starts_with("RssShmem")
        })
        .map(|l| l.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join(", ")
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn summary(name: &str, v: &Mutex<Vec<u64>>) -> Value {
    let mut v = v.lock().unwrap().clone();
    v.sort_unstable();
    json!({
        "name": name,
        "count": v.len(),
        "p50_ms": percentile(&v, 0.50),
        "p99_ms": percentile(&v, 0.99),
        "max_ms": percentile(&v, 1.0),
    })
}

fn out_dir() -> std::path::PathBuf {
    if let Ok(d) = std::env::var("WATCHPARTY_SOAK_OUT") {
        return d.into();
    }
    // target/debug/deps/soak-HASH → target/soak
    let exe = std::env::current_exe().unwrap();
    exe.ancestors()
        .nth(3)
        .map_or_else(std::env::temp_dir, |t| t.to_owned())
        .join("soak")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_and_hostile_clients() {
    let p = Params::from_env();
    assert!(p.members >= 2 && p.members <= 16 && p.rooms > 0);
    println!("soak: {p:?}");
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path(), "[signaling]\nmax_connections = 8192\n");
    let victims = 5;
    let mut names: Vec<String> = (0..p.rooms)
        .flat_map(|r| (0..p.members).map(move |m| username(r, m)))
        .collect();
    names.extend((0..victims).map(|i| format!("victim{i}")));
    let t_setup = Instant::now();
    bulk_users(&dir, &names).await;
    let server = Proc::start(&dir, free_port()).await;
    let ctx = Arc::new(Ctx {
        addr: server.addr,
        epoch: Instant::now(),
        stop: AtomicBool::new(false),
        hosts_online: AtomicUsize::new(0),
        stats: Stats::default(),
    });

    // Logins (each member from its own address), rooms with invitations,
    // accepted invitations.
    let mut members: Vec<Option<Member>> = Vec::new();
    let all: Vec<(usize, String)> = (0..p.rooms * p.members)
        .map(|i| (i, username(i / p.members, i % p.members)))
        .collect();
    for chunk in all.chunks(SETUP_PARALLEL) {
        let logins = chunk.iter().map(|(i, n)| Member::login(&ctx, n, *i));
        for m in futures_util::future::join_all(logins).await {
            members.push(Some(m.unwrap()));
        }
    }
    let mut rooms = Vec::new();
    let mut host_ids = Vec::new();
    for r in 0..p.rooms {
        let host = members[r * p.members].as_ref().unwrap();
        let invites: Vec<Value> = (1..p.members)
            .map(|m| json!({"username": username(r, m), "role": "viewer"}))
            .collect();
        let v = host
            .post(
                &ctx,
                "/api/v1/rooms",
                json!({"name": format!("soak {r}"), "media_id": 1, "invites": invites}),
            )
            .await
            .unwrap();
        rooms.push(v["id"].as_str().unwrap().to_owned());
        host_ids.push(v["host_user_id"].as_u64().unwrap());
    }
    let accepts: Vec<(usize, usize)> = (0..p.rooms)
        .flat_map(|r| (1..p.members).map(move |m| (r, m)))
        .collect();
    for chunk in accepts.chunks(SETUP_PARALLEL) {
        let calls = chunk.iter().map(|(r, m)| {
            let member = members[r * p.members + m].as_ref().unwrap();
            let path = format!("/api/v1/invites/{}/accept", rooms[*r]);
            let ctx = &ctx;
            async move { member.post(ctx, &path, Value::Null).await }
        });
        for res in futures_util::future::join_all(calls).await {
            res.unwrap();
        }
    }
    let setup_secs = t_setup.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base_rss = server.rss_kib();
    let base_fds = server.open_fds();
    println!("soak: setup {setup_secs:.1} s; baseline RSS {base_rss} KiB, {base_fds} fds");

    // Load, in rounds: every client stops and leaves between rounds, so the
    // server's RSS and descriptors after each round show whether memory
    // returns (a leak grows from round to round; allocator retention does
    // not).
    let mut samples: Vec<(f64, u64, usize)> = Vec::new();
    let mut round_ends: Vec<(u64, usize)> = Vec::new();
    let mut end_fds = base_fds;
    let t_load = Instant::now();
    let round_secs = (p.secs / p.rounds).max(1);
    for round in 0..p.rounds {
        ctx.stop.store(false, Ordering::Relaxed);
        ctx.hosts_online.store(0, Ordering::Relaxed);
        let mut hosts = Vec::new();
        for (r, room) in rooms.iter().enumerate() {
            let host = members[r * p.members].take().unwrap();
            hosts.push(tokio::spawn(host_task(ctx.clone(), room.clone(), host)));
        }
        // Guests offer to their host: start them once every host is online
        // (an offer to an offline member is refused by design).
        let t_hosts = Instant::now();
        while ctx.hosts_online.load(Ordering::Relaxed) < rooms.len()
            && t_hosts.elapsed() < HOSTS_ONLINE_WAIT
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut guests = Vec::new();
        for (r, room) in rooms.iter().enumerate() {
            for m in 1..p.members {
                let i = r * p.members + m;
                let member = members[i].take().unwrap();
                guests.push((
                    i,
                    tokio::spawn(guest_task(
                        ctx.clone(),
                        room.clone(),
                        member,
                        host_ids[r],
                        (i as u64 + 1) * 7919 * (round + 1),
                        p.stay_ms,
                    )),
                ));
            }
        }
        let mut hostile = Vec::new();
        for h in 0..p.hostile {
            let from = hostile_ip(h);
            let room = rooms[h % rooms.len()].clone();
            let c = ctx.clone();
            hostile.push(match h % 6 {
                0 => tokio::spawn(ws_flooder(c, room, from)),
                1 => tokio::spawn(http_garbage(c, from, room)),
                2 => tokio::spawn(slowloris(c, from, room, h)),
                3 => tokio::spawn(guesser(c, from, room, victims)),
                4 => tokio::spawn(throttle_filler(c, h)),
                _ => tokio::spawn(slow_bodies(c, from)),
            });
        }
        let t_round = Instant::now();
        while t_round.elapsed() < Duration::from_secs(round_secs) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            samples.push((
                t_load.elapsed().as_secs_f64(),
                server.rss_kib(),
                server.open_fds(),
            ));
        }
        ctx.stop.store(true, Ordering::Relaxed);
        for (r, h) in hosts.into_iter().enumerate() {
            members[r * p.members] = Some(h.await.unwrap());
        }
        for (i, g) in guests {
            members[i] = Some(g.await.unwrap());
        }
        for t in hostile {
            t.await.unwrap();
        }
        // Descriptors return to the baseline once every client is gone.
        let settle = Instant::now();
        end_fds = server.open_fds();
        while end_fds > base_fds + FD_SLACK && settle.elapsed() < FD_SETTLE {
            tokio::time::sleep(Duration::from_millis(250)).await;
            end_fds = server.open_fds();
        }
        tokio::time::sleep(ROUND_PAUSE).await;
        let rss = server.rss_kib();
        let wal = std::fs::metadata(dir.db_path().with_extension("db-wal")).map_or(0, |m| m.len());
        println!(
            "soak: round {}/{} done at {:.0} s: RSS {rss} KiB ({}), {end_fds} fds, WAL {} KiB",
            round + 1,
            p.rounds,
            t_load.elapsed().as_secs_f64(),
            rss_parts(&server),
            wal / 1024
        );
        round_ends.push((rss, end_fds));
    }
    let end_rss = server.rss_kib();
    let warm = samples.len() / 4;
    let warm_rss = samples.get(warm).map_or(base_rss, |s| s.1);
    let max_rss_after = samples[warm..].iter().map(|s| s.1).max().unwrap_or(end_rss);
    let peak_fds = samples.iter().map(|s| s.2).max().unwrap_or(base_fds);
    let errors = ctx.stats.errors.lock().unwrap().clone();
    let report = json!({
        "throttled_upgrade_retries": ctx.stats.throttled_retries.load(Ordering::Relaxed),
        "params": {"secs": p.secs, "rounds": p.rounds, "stay_ms": p.stay_ms, "rooms": p.rooms, "members": p.members, "hostile": p.hostile},
        "setup_secs": setup_secs,
        "legit_ops": ctx.stats.legit_ops.load(Ordering::Relaxed),
        "legit_errors": errors.len(),
        "first_errors": errors.iter().take(10).collect::<Vec<_>>(),
        "error_kinds": ctx.stats.error_kinds.lock().unwrap().clone(),
        "join": summary("join (connect → hello)", &ctx.stats.join_us),
        "relay": summary("relay (one way)", &ctx.stats.relay_us),
        "rejoin": summary("REST leave + join", &ctx.stats.rejoin_us),
        "hostile_ops": ctx.stats.hostile_ops.load(Ordering::Relaxed),
        "hostile_refused": ctx.stats.hostile_refused.load(Ordering::Relaxed),
        "hostile_unexpected_5xx": ctx.stats.hostile_5xx.load(Ordering::Relaxed),
        "slowloris_sockets_cut": ctx.stats.slowloris_cut.load(Ordering::Relaxed),
        "silent_ws_closed": ctx.stats.silent_closed.load(Ordering::Relaxed),
        "slow_bodies_timed_out": ctx.stats.slow_body_timed_out.load(Ordering::Relaxed),
        "slow_bodies_refused": ctx.stats.slow_body_refused.load(Ordering::Relaxed),
        "throttle_fill_requests": ctx.stats.throttle_fill_requests.load(Ordering::Relaxed),
        "round_ends_rss_kib_fds": round_ends.iter().map(|(r, f)| json!([r, f])).collect::<Vec<_>>(),
        "rss_kib": {"baseline": base_rss, "after_warmup": warm_rss, "max_after_warmup": max_rss_after, "end": end_rss},
        "fds": {"baseline": base_fds, "peak": peak_fds, "end": end_fds},
        "samples": samples.iter().map(|(t, r, f)| json!([t, r, f])).collect::<Vec<_>>(),
    });
    let out = out_dir();
    std::fs::create_dir_all(&out).unwrap();
    let text = serde_json::to_string_pretty(&report).unwrap();
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::fs::write(out.join(format!("soak-{stamp}.json")), &text).unwrap();
    std::fs::write(out.join("soak-latest.json"), &text).unwrap();
    println!(
        "soak summary: {} rooms × {} members, {} hostile clients, {} s\n  legit ops {}, errors {}, upgrade retries after 429/503 {}\n  join {}\n  relay {}\n  rejoin {}\n  hostile ops {}, refused/closed {}, unexpected 5xx {}, slowloris sockets cut {}, silent WebSockets closed {}\n  slow bodies answered 408 {}, refused at the per-address cap {}; throttle-filling requests {}\n  RSS KiB: baseline {base_rss}, after warm-up {warm_rss}, max after warm-up {max_rss_after}, end {end_rss}\n  after each round (RSS KiB, fds): {:?}\n  fds: baseline {base_fds}, peak {peak_fds}, end {end_fds}\n  written to {}",
        p.rooms,
        p.members,
        p.hostile,
        p.secs,
        report["legit_ops"],
        errors.len(),
        report["throttled_upgrade_retries"],
        report["join"],
        report["relay"],
        report["rejoin"],
        report["hostile_ops"],
        report["hostile_refused"],
        report["hostile_unexpected_5xx"],
        report["slowloris_sockets_cut"],
        report["silent_ws_closed"],
        report["slow_bodies_timed_out"],
        report["slow_bodies_refused"],
        report["throttle_fill_requests"],
        round_ends,
        out.display()
    );
    println!(
        "legitimate traffic kept working during the attacks: {} ({} operations, {} errors; join p99 {} ms, relay p99 {} ms)",
        if errors.is_empty() { "yes" } else { "NO" },
        report["legit_ops"],
        errors.len(),
        report["join"]["p99_ms"],
        report["relay"]["p99_ms"],
    );
    assert!(
        errors.is_empty(),
        "legitimate errors by kind: {}",
        report["error_kinds"]
    );
    assert!(
        ctx.stats.legit_ops.load(Ordering::Relaxed) > 0,
        "no legitimate traffic ran"
    );
    assert!(ctx.stats.hostile_ops.load(Ordering::Relaxed) > 0 || p.hostile == 0);
    assert_eq!(
        ctx.stats.hostile_5xx.load(Ordering::Relaxed),
        0,
        "hostile input caused a server error"
    );
    assert!(
        end_fds <= base_fds + FD_SLACK,
        "open fds {end_fds} did not return to the baseline {base_fds} (+{FD_SLACK})"
    );
    server.kill9();
}
