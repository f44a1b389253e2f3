//! Signaling server capacity: idle authenticated WebSocket connections (RSS,
//! CPU) and relay throughput / latency, ours and matchbox_server's, both run
//! as separate release processes on 127.0.0.1 so `/proc` shows their cost.
//!
//! Our server's fixture (users, sessions, rooms, memberships) is written into
//! its SQLite file by the bench before it starts; access tokens are minted
//! with the server's own key (the server verifies them exactly as it verifies
//! login-issued ones). The relay workload: pairs of clients, each pair alone
//! in a room, A sends offers to B and B answers each one; every SDP carries a
//! sequence number and its send instant, so latency is one-way on the same
//! process clock.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::ids::UserId;
use watchparty_peer::signaling::{ClientMessage, Sdp, ServerMessage};
use watchparty_signal::AppState;
use watchparty_signal::config::{Argon2Cost, Config};

use crate::stats::{Figure, Stat, Target};
use crate::{Error, Options, procfs};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Members per room for idle connections (the server's roster cap).
const IDLE_ROOM: usize = 16;

/// Parallel connection attempts while opening idle connections.
const OPEN_CONCURRENCY: usize = 48;

/// Longest wait for one handshake or message.
const IO_LIMIT: Duration = Duration::from_secs(20);

/// Longest wait for a server process to listen.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Relay pairs.
const PAIRS: usize = 32;

/// In-flight offers per pair when measuring the maximum.
const WINDOW: usize = 8;

/// Padding of each SDP (a realistic offer is 0.5–3 KiB).
const SDP_PAD: usize = 900;

/// The server flavours compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Ours,
    Matchbox,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Self::Ours => "ours",
            Self::Matchbox => "matchbox",
        }
    }
}

/// One prepared member of our server: user id, room, access token.
#[derive(Debug, Clone)]
struct Cred {
    user: i64,
    room: String,
    token: String,
}

/// Environment variable: a command our server runs under, split at
/// whitespace (e.g. `valgrind --tool=callgrind --callgrind-out-file=cg.out`)
/// for profiling it under the relay workload. A wrapped server is stopped
/// with SIGTERM (so the profiler writes its output), not SIGKILL.
pub const SERVER_WRAPPER_ENV: &str = "WATCHPARTY_BENCH_SERVER_WRAPPER";

/// Longest wait for a wrapped server to exit after SIGTERM.
const WRAPPED_EXIT_LIMIT: Duration = Duration::from_secs(120);

/// A server process, killed on drop.
struct Proc {
    child: Child,
    port: u16,
    wrapped: bool,
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.wrapped {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(self.child.id().to_string())
                .status();
            let end = Instant::now() + WRAPPED_EXIT_LIMIT;
            while Instant::now() < end {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

async fn wait_listening(p: &mut Proc) -> Result<(), Error> {
    let end = Instant::now() + START_LIMIT;
    while Instant::now() < end {
        if let Ok(Some(status)) = p.child.try_wait() {
            return Err(Error::msg(format!("server exited at start ({status})")));
        }
        if TcpStream::connect(("127.0.0.1", p.port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(Error::msg("server did not listen in time"))
}

/// Writes the config and the fixture for `idle` idle members (rooms of
/// [`IDLE_ROOM`]) plus [`PAIRS`] relay pairs, production argon2 parameters.
async fn prepare(dir: &Path, idle: usize) -> Result<(Vec<Cred>, Vec<(Cred, Cred)>), Error> {
    let data = dir.join("data");
    let lib = dir.join("lib");
    std::fs::create_dir_all(&lib)?;
    let mut movie = vec![7u8; 10_000];
    movie[..12].copy_from_slice(b"\0\0\0\x18ftypisom");
    std::fs::write(lib.join("movie.mp4"), &movie)?;
    let mut config = Config::new(&data);
    config.argon2 = Argon2Cost::default();
    let state = AppState::new(config).await.map_err(Error::msg)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(Error::msg)?
        .as_secs() as i64;
    let hash = state
        .hasher
        .hash(b"bench-password-123")
        .await
        .map_err(Error::msg)?;
    watchparty_signal::media::library::add_scanned(&state.db, "films", &lib, 0)
        .await
        .map_err(Error::msg)?;
    let media: i64 = sqlx::query_scalar("SELECT id FROM media_items LIMIT 1")
        .fetch_one(&state.db)
        .await
        .map_err(Error::msg)?;
    let total = idle + 2 * PAIRS;
    let mut tx = state.db.begin().await.map_err(Error::msg)?;
    let mut creds = Vec::with_capacity(total);
    let mut room = String::new();
    let mut in_room = 0;
    for i in 0..total {
        let room_size = if i < idle { IDLE_ROOM } else { 2 };
        let host = in_room == 0 || in_room >= room_size || (i == idle);
        if host {
            room = format!("{:032x}", 0xbe00_0000_u128 + i as u128);
            in_room = 0;
        }
        let name = format!("cap{i:05}");
        let user: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, display_name, password_hash, created_at) VALUES (?1, ?1, ?2, ?3) RETURNING id",
        )
        .bind(&name)
        .bind(&hash)
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(Error::msg)?;
        if host {
            sqlx::query(
                "INSERT INTO rooms (id, name, host_user_id, media_id, invite_only, policy_json, max_members, status, created_at, last_activity_at)
                 VALUES (?1, 'bench', ?2, ?3, 1, '{}', 64, 'open', ?4, ?4)",
            )
            .bind(&room)
            .bind(user)
            .bind(media)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(Error::msg)?;
        }
        sqlx::query(
            "INSERT INTO room_members (room_id, user_id, role, status, updated_at) VALUES (?1, ?2, ?3, 'joined', ?4)",
        )
        .bind(&room)
        .bind(user)
        .bind(if host { "host" } else { "viewer" })
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(Error::msg)?;
        let sid: [u8; 16] = (0xcafe_0000_u128 + i as u128).to_be_bytes();
        sqlx::query(
            "INSERT INTO sessions (id, user_id, status, created_at, expires_at) VALUES (?1, ?2, 'active', ?3, ?4)",
        )
        .bind(sid.as_slice())
        .bind(user)
        .bind(now)
        .bind(now + 86_400)
        .execute(&mut *tx)
        .await
        .map_err(Error::msg)?;
        let token = state
            .access_tokens
            .issue(user, &sid, now, 3600)
            .map_err(Error::msg)?;
        creds.push(Cred {
            user,
            room: room.clone(),
            token,
        });
        in_room += 1;
    }
    tx.commit().await.map_err(Error::msg)?;
    state.db.close().await;
    let pairs_flat = creds.split_off(idle);
    let pairs = pairs_flat
        .chunks(2)
        .filter_map(|c| match c {
            [a, b] => Some((a.clone(), b.clone())),
            _ => None,
        })
        .collect();
    let cfg = format!(
        "bind = \"127.0.0.1:0\"\nmax_connections_per_ip = {}\n\n[signaling]\nmax_connections = {}\nmax_unauthenticated = 1024\nmax_unauthenticated_per_ip = 256\n\
         rate_burst = 1000000\nrate_per_sec = 1000000\nsend_queue = 1024\n\
         relay_bytes_burst = 1000000000\nrelay_bytes_per_sec = 1000000000\n\
         relay_pair_bytes_burst = 1000000000\nrelay_pair_bytes_per_sec = 1000000000\n",
        total + 2048,
        total + 1024
    );
    std::fs::write(dir.join("signal.toml"), cfg)?;
    Ok((creds, pairs))
}

fn spawn_ours(bin: &Path, dir: &Path) -> Result<Proc, Error> {
    let port = free_port()?;
    let wrapper = std::env::var(SERVER_WRAPPER_ENV).unwrap_or_default();
    let mut words = wrapper.split_whitespace();
    let (mut cmd, wrapped) = match words.next() {
        Some(w) => {
            let mut c = Command::new(w);
            c.args(words).arg(bin);
            (c, true)
        }
        None => (Command::new(bin), false),
    };
    let child = cmd
        .arg("--config")
        .arg(dir.join("signal.toml"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("serve")
        .arg("--bind")
        .arg(format!("127.0.0.1:{port}"))
        .arg("--web-dir")
        .arg(dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(dir.join("signal.log"))?))
        .spawn()?;
    Ok(Proc {
        child,
        port,
        wrapped,
    })
}

fn spawn_matchbox(bin: &Path, dir: &Path) -> Result<Proc, Error> {
    let port = free_port()?;
    let child = Command::new(bin)
        .arg(format!("127.0.0.1:{port}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(
            dir.join("matchbox.log"),
        )?))
        .spawn()?;
    Ok(Proc {
        child,
        port,
        wrapped: false,
    })
}

async fn next_text(ws: &mut Ws) -> Result<String, Error> {
    loop {
        match tokio::time::timeout(IO_LIMIT, ws.next()).await {
            Err(_) => return Err(Error::msg("no message in time")),
            Ok(None) => return Err(Error::msg("closed")),
            Ok(Some(Err(e))) => return Err(Error::msg(e)),
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.as_str().to_owned()),
            Ok(Some(Ok(Message::Close(f)))) => return Err(Error::msg(format!("closed: {f:?}"))),
            Ok(Some(Ok(_))) => {}
        }
    }
}

async fn connect(url: &str) -> Result<Ws, Error> {
    let (ws, _) = tokio::time::timeout(IO_LIMIT, tokio_tungstenite::connect_async(url))
        .await
        .map_err(|_| Error::msg("connect timed out"))?
        .map_err(Error::msg)?;
    Ok(ws)
}

/// Opens and authenticates one of our connections; returns it after `hello`.
async fn open_ours(port: u16, c: &Cred, seed: u64) -> Result<Ws, Error> {
    let mut ws = connect(&format!(
        "ws://127.0.0.1:{port}/api/v1/rooms/{}/signal",
        c.room
    ))
    .await?;
    let mut s = [0u8; 32];
    s[..8].copy_from_slice(&seed.to_be_bytes());
    s[31] = 1;
    let key = SigningKey::from_seed(&s).map_err(Error::msg)?;
    let auth = json!({"type": "auth", "token": c.token, "key": key.public_key().to_base64url()});
    ws.send(Message::text(auth.to_string()))
        .await
        .map_err(Error::msg)?;
    let first = next_text(&mut ws).await?;
    match ServerMessage::from_json(&first) {
        Ok(ServerMessage::Hello { .. }) => Ok(ws),
        _ => Err(Error::msg(format!(
            "expected hello, got {}",
            first.chars().take(120).collect::<String>()
        ))),
    }
}

/// Opens one matchbox connection in `room`; returns it and its peer id.
async fn open_matchbox(port: u16, room: &str) -> Result<(Ws, String), Error> {
    let mut ws = connect(&format!("ws://127.0.0.1:{port}/{room}")).await?;
    let first = next_text(&mut ws).await?;
    let v: serde_json::Value = serde_json::from_str(&first).map_err(Error::msg)?;
    let id = v["IdAssigned"]
        .as_str()
        .ok_or_else(|| Error::msg(format!("expected IdAssigned, got {first}")))?
        .to_owned();
    Ok((ws, id))
}

/// Keeps a connection open and answering pings until `stop` flips.
fn hold(mut ws: Ws, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(_)) => {}
                    _ => break,
                },
                _ = stop.changed() => break,
            }
        }
        let _ = ws.close(None).await;
    });
}

/// Opens connections `from..to` (bounded concurrency) and holds them.
async fn open_idle(
    flavor: Flavor,
    port: u16,
    creds: &[Cred],
    from: usize,
    to: usize,
    stop: &watch::Receiver<bool>,
) -> Result<usize, Error> {
    let mut opened = 0;
    let mut failures = Vec::new();
    let mut i = from;
    while i < to {
        let end = (i + OPEN_CONCURRENCY).min(to);
        let batch = (i..end).map(|k| async move {
            match flavor {
                Flavor::Ours => open_ours(port, &creds[k], k as u64).await,
                Flavor::Matchbox => open_matchbox(port, &format!("idle{}", k / IDLE_ROOM))
                    .await
                    .map(|x| x.0),
            }
        });
        for r in futures_util::future::join_all(batch).await {
            match r {
                Ok(ws) => {
                    hold(ws, stop.clone());
                    opened += 1;
                }
                Err(e) => failures.push(e.to_string()),
            }
        }
        i = end;
    }
    if let Some(f) = failures.first() {
        eprintln!("bench: {} idle opens failed, first: {f}", failures.len());
    }
    Ok(opened)
}

/// Idle figures for `sizes` on one server.
async fn idle(
    flavor: Flavor,
    p: &Proc,
    creds: &[Cred],
    sizes: &[usize],
    cpu_window: Duration,
    out: &mut Vec<Figure>,
) -> Result<Vec<(usize, f64)>, Error> {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let base = procfs::rss_kib(p.pid()).unwrap_or(0) as f64;
    let (stop_tx, stop) = watch::channel(false);
    let mut have = 0;
    let mut per_conn = Vec::new();
    for &k in sizes {
        let t = Instant::now();
        let opened = open_idle(flavor, p.port, creds, have, k, &stop).await?;
        have += opened;
        let open_s = t.elapsed().as_secs_f64();
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss = procfs::rss_kib(p.pid()).unwrap_or(0) as f64;
        let c0 = procfs::cpu_seconds(p.pid()).unwrap_or(0.0);
        let w0 = Instant::now();
        tokio::time::sleep(cpu_window).await;
        let cpu =
            100.0 * (procfs::cpu_seconds(p.pid()).unwrap_or(0.0) - c0) / w0.elapsed().as_secs_f64();
        let params = json!({"server": flavor.name(), "connections": have, "requested": k, "open_seconds": open_s,
                            "baseline_rss_mib": base / 1024.0, "auth": flavor == Flavor::Ours});
        let target = (flavor == Flavor::Ours && k == 10_000)
            .then(|| Target::at_most(Stat::Median, 300.0, "< 300 MiB at 10k"));
        out.extend(Figure::single(
            "capacity",
            &format!("{}_idle_rss_{k}", flavor.name()),
            "MiB",
            rss / 1024.0,
            params.clone(),
            target,
        ));
        let pc = (rss - base) / have.max(1) as f64;
        out.extend(Figure::single(
            "capacity",
            &format!("{}_idle_rss_per_conn_{k}", flavor.name()),
            "KiB",
            pc,
            params.clone(),
            None,
        ));
        out.extend(Figure::single(
            "capacity",
            &format!("{}_idle_cpu_{k}", flavor.name()),
            "% of one core",
            cpu,
            json!({"server": flavor.name(), "connections": have, "window_s": cpu_window.as_secs()}),
            None,
        ));
        eprintln!(
            "bench: {} idle {have}: rss {:.1} MiB ({pc:.1} KiB/conn), cpu {cpu:.2} %",
            flavor.name(),
            rss / 1024.0
        );
        per_conn.push((k, pc));
    }
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_secs(1)).await;
    Ok(per_conn)
}

/// A relay endpoint: how to address the other side.
struct End {
    ws: Ws,
    flavor: Flavor,
    peer: String,
}

fn sdp(seq: u64, t_us: u64) -> String {
    let mut s = format!("v=0\r\no=- {seq} {t_us} IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n");
    while s.len() < SDP_PAD {
        s.push_str("a=x-bench:0123456789abcdef0123456789abcdef\r\n");
    }
    s
}

impl End {
    fn encode(&self, offer: bool, seq: u64, t_us: u64) -> Result<String, Error> {
        let body = sdp(seq, t_us);
        match self.flavor {
            Flavor::Ours => {
                let to = UserId::new(self.peer.parse().map_err(Error::msg)?).map_err(Error::msg)?;
                let sdp = Sdp::new(body).map_err(Error::msg)?;
                let m = if offer {
                    ClientMessage::Offer { to, sdp }
                } else {
                    ClientMessage::Answer { to, sdp }
                };
                m.to_json().map_err(Error::msg)
            }
            Flavor::Matchbox => {
                let data = if offer {
                    json!({"Offer": body})
                } else {
                    json!({"Answer": body})
                };
                Ok(json!({"Signal": {"receiver": self.peer, "data": data}}).to_string())
            }
        }
    }

    async fn send(&mut self, offer: bool, seq: u64, t0: Instant) -> Result<(), Error> {
        let t_us = t0.elapsed().as_micros() as u64;
        let text = self.encode(offer, seq, t_us)?;
        self.ws.send(Message::text(text)).await.map_err(Error::msg)
    }
}

/// `(is_offer, seq, send instant µs)` of a relayed message, if it is one.
fn decode(text: &str) -> Option<(bool, u64, u64)> {
    let offer = text.contains("\"offer\"") || text.contains("\"Offer\"");
    let answer = text.contains("\"answer\"") || text.contains("\"Answer\"");
    if !(offer || answer) {
        return None;
    }
    let at = text.find("o=- ")? + 4;
    let mut it = text[at..].split(' ');
    let seq = it.next()?.parse().ok()?;
    let t = it.next()?.parse().ok()?;
    Some((offer, seq, t))
}

#[derive(Debug, Default)]
struct Tally {
    relayed: u64,
    latency_ms: Vec<f64>,
}

/// How A sends.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// [`WINDOW`] offers in flight; a new one per answer.
    Closed,
    /// Offers every `interval`.
    Open(Duration),
}

async fn side_a(mut a: End, mode: Mode, t0: Instant, stop_at: Instant) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    let mut seq = 0;
    if let Mode::Closed = mode {
        for _ in 0..WINDOW {
            a.send(true, seq, t0).await?;
            seq += 1;
        }
    }
    let mut tick = tokio::time::interval(match mode {
        Mode::Open(i) => i,
        Mode::Closed => Duration::from_secs(3600),
    });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let grace = tokio::time::Instant::from_std(stop_at + Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tick.tick(), if matches!(mode, Mode::Open(_)) => {
                if Instant::now() < stop_at {
                    a.send(true, seq, t0).await?;
                    seq += 1;
                }
            }
            m = a.ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Some((false, _, sent)) = decode(t.as_str()) {
                        let now = Instant::now();
                        if now <= stop_at {
                            tally.relayed += 1;
                            tally.latency_ms.push((t0.elapsed().as_micros() as f64 - sent as f64) / 1000.0);
                            if let Mode::Closed = mode {
                                a.send(true, seq, t0).await?;
                                seq += 1;
                            }
                        }
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err(Error::msg("relay connection A closed")),
            },
            _ = tokio::time::sleep_until(grace) => break,
        }
    }
    let _ = a.ws.close(None).await;
    Ok(tally)
}

async fn side_b(mut b: End, t0: Instant, stop_at: Instant) -> Result<Tally, Error> {
    let mut tally = Tally::default();
    let grace = tokio::time::Instant::from_std(stop_at + Duration::from_secs(1));
    loop {
        tokio::select! {
            m = b.ws.next() => match m {
                Some(Ok(Message::Text(t))) => {
                    if let Some((true, seq, sent)) = decode(t.as_str()) {
                        if Instant::now() <= stop_at {
                            tally.relayed += 1;
                            tally.latency_ms.push((t0.elapsed().as_micros() as f64 - sent as f64) / 1000.0);
                        }
                        b.send(false, seq, t0).await?;
                    }
                }
                Some(Ok(_)) => {}
                _ => return Err(Error::msg("relay connection B closed")),
            },
            _ = tokio::time::sleep_until(grace) => break,
        }
    }
    let _ = b.ws.close(None).await;
    Ok(tally)
}

async fn pairs_open(
    flavor: Flavor,
    port: u16,
    creds: &[(Cred, Cred)],
    round: usize,
) -> Result<Vec<(End, End)>, Error> {
    let mut v = Vec::new();
    for (i, (ca, cb)) in creds.iter().enumerate() {
        match flavor {
            Flavor::Ours => {
                let a = open_ours(port, ca, 1_000_000 + i as u64).await?;
                let b = open_ours(port, cb, 2_000_000 + i as u64).await?;
                v.push((
                    End {
                        ws: a,
                        flavor,
                        peer: cb.user.to_string(),
                    },
                    End {
                        ws: b,
                        flavor,
                        peer: ca.user.to_string(),
                    },
                ));
            }
            Flavor::Matchbox => {
                let room = format!("pair{round}x{i}");
                let (a, ida) = open_matchbox(port, &room).await?;
                let (b, idb) = open_matchbox(port, &room).await?;
                v.push((
                    End {
                        ws: a,
                        flavor,
                        peer: idb,
                    },
                    End {
                        ws: b,
                        flavor,
                        peer: ida,
                    },
                ));
            }
        }
    }
    // Let join notifications settle.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Ok(v)
}

/// One relay run; returns (messages/s, latency samples ms).
async fn relay_run(
    flavor: Flavor,
    port: u16,
    creds: &[(Cred, Cred)],
    mode: Mode,
    span: Duration,
    round: usize,
) -> Result<(f64, Vec<f64>), Error> {
    let ends = pairs_open(flavor, port, creds, round).await?;
    let t0 = Instant::now();
    let stop_at = t0 + span;
    let mut tasks = Vec::new();
    for (a, b) in ends {
        tasks.push(tokio::spawn(side_a(a, mode, t0, stop_at)));
        tasks.push(tokio::spawn(side_b(b, t0, stop_at)));
    }
    let mut relayed = 0;
    let mut lat = Vec::new();
    for t in tasks {
        let r = t.await.map_err(Error::msg)??;
        relayed += r.relayed;
        lat.extend(r.latency_ms);
    }
    Ok((relayed as f64 / span.as_secs_f64(), lat))
}

/// One relay round against one server: the closed-loop maximum, then open
/// loops at 50 % and 90 % of it.
struct RelayRound {
    /// Closed-loop messages per second.
    max: f64,
    /// Latency samples of the closed loop, ms.
    lat_max: Vec<f64>,
    /// At 50 % and 90 %: (offered msgs/s, achieved msgs/s, latency samples).
    at: Vec<(f64, f64, Vec<f64>)>,
}

/// Alternating relay rounds per server in a full run (a quick run does one).
const RELAY_ROUNDS: usize = 3;

/// Load levels of the open-loop runs, as fractions of the round's maximum.
const RELAY_LOADS: [f64; 2] = [0.5, 0.9];

async fn relay_round(
    flavor: Flavor,
    p: &Proc,
    creds: &[(Cred, Cred)],
    span: Duration,
    base: &mut usize,
) -> Result<RelayRound, Error> {
    let (max, lat_max) = relay_run(flavor, p.port, creds, Mode::Closed, span, *base).await?;
    *base += 1;
    eprintln!("bench: {} relay max {max:.0} msgs/s", flavor.name());
    let mut at = Vec::new();
    for frac in RELAY_LOADS {
        // Each offer yields two relayed messages (offer + answer).
        let per_pair = max * frac / 2.0 / creds.len() as f64;
        let interval = Duration::from_secs_f64(1.0 / per_pair.max(0.1));
        let (rate, lat) =
            relay_run(flavor, p.port, creds, Mode::Open(interval), span, *base).await?;
        *base += 1;
        eprintln!(
            "bench: {} relay at {:.0}%: {rate:.0} msgs/s, p99 {:.3} ms",
            flavor.name(),
            frac * 100.0,
            p99(&lat)
        );
        at.push((max * frac, rate, lat));
    }
    Ok(RelayRound { max, lat_max, at })
}

/// The 99th percentile (nearest rank) of `v`; NaN when empty.
fn p99(v: &[f64]) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let rank = (0.99 * s.len() as f64).ceil() as usize;
    s[rank.clamp(1, s.len()) - 1]
}

/// Figures of one server's relay rounds: throughput (one sample per round)
/// and latency (every sample of every round).
fn relay_figures(
    flavor: Flavor,
    rounds: &[RelayRound],
    pairs: usize,
    span: Duration,
    out: &mut Vec<Figure>,
) {
    let name = flavor.name();
    let params = json!({"server": name, "pairs": pairs, "in_flight_per_pair": WINDOW, "span_s": span.as_secs(), "sdp_bytes": SDP_PAD, "auth": flavor == Flavor::Ours, "rounds": rounds.len()});
    let maxes: Vec<f64> = rounds.iter().map(|r| r.max).collect();
    out.extend(Figure::new(
        "relay",
        &format!("{name}_relay_max_throughput"),
        "msgs/s",
        &maxes,
        params.clone(),
        None,
    ));
    let lat: Vec<f64> = rounds.iter().flat_map(|r| r.lat_max.clone()).collect();
    out.extend(Figure::new(
        "relay",
        &format!("{name}_relay_latency_at_max"),
        "ms",
        &lat,
        params,
        None,
    ));
    for (k, frac) in RELAY_LOADS.iter().enumerate() {
        let pct = (frac * 100.0) as u32;
        let offered: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.at.get(k).map(|a| a.0))
            .collect();
        let achieved: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.at.get(k).map(|a| a.1))
            .collect();
        let lat: Vec<f64> = rounds
            .iter()
            .filter_map(|r| r.at.get(k))
            .flat_map(|a| a.2.clone())
            .collect();
        let params = json!({"server": name, "pairs": pairs, "offered_msgs_per_s": offered, "achieved_msgs_per_s": achieved, "span_s": span.as_secs(), "rounds": rounds.len()});
        out.extend(Figure::new(
            "relay",
            &format!("{name}_relay_latency_at_{pct}pct"),
            "ms",
            &lat,
            params,
            None,
        ));
    }
}

/// Runs the capacity and relay figures.
pub async fn run(
    opts: &Options,
    out: &mut Vec<Figure>,
    notes: &mut Vec<String>,
) -> Result<(), Error> {
    let Some(bin) = &opts.signal_bin else {
        return Err(Error::msg("no --signal-bin given"));
    };
    // `--only relay`: the relay figures without the idle connections.
    let relay_only = !opts.only.is_empty() && !opts.only.iter().any(|s| s == "capacity");
    let sizes: &[usize] = if relay_only {
        &[]
    } else if opts.quick {
        &[1000]
    } else {
        &[1000, 5000, 10_000]
    };
    let cpu_window = Duration::from_secs(if opts.quick { 3 } else { 10 });
    let span = Duration::from_secs(if opts.quick { 3 } else { 8 });
    let max = sizes.iter().copied().max().unwrap_or(0);
    let dir = tempfile::tempdir()?;
    let t = Instant::now();
    let (idle_creds, pair_creds) = prepare(dir.path(), max).await?;
    eprintln!(
        "bench: capacity fixture {} members in {:.1} s",
        idle_creds.len(),
        t.elapsed().as_secs_f64()
    );
    let mut ours = spawn_ours(bin, dir.path())?;
    wait_listening(&mut ours).await?;
    let ours_idle = idle(Flavor::Ours, &ours, &idle_creds, sizes, cpu_window, out).await?;
    let mut mb = match opts.matchbox_bin.as_deref().filter(|p| p.is_file()) {
        Some(mbin) => {
            let mut mb = spawn_matchbox(mbin, dir.path())?;
            wait_listening(&mut mb).await?;
            Some(mb)
        }
        None => {
            notes.push("matchbox_server comparison: not measured (binary not available)".into());
            None
        }
    };
    // matchbox_server gets the same sizes (its 10k run costs about 1.4 GB
    // RSS and 20 s).
    let mb_idle = match &mb {
        Some(mb) => idle(Flavor::Matchbox, mb, &idle_creds, sizes, cpu_window, out).await?,
        None => Vec::new(),
    };
    // Relay: alternating rounds (ours first in even rounds, matchbox first
    // in odd ones), so that drifting background load hits both alike; each
    // ratio is taken within one round.
    let rounds = if opts.quick { 1 } else { RELAY_ROUNDS };
    let (mut ours_rounds, mut mb_rounds) = (Vec::new(), Vec::new());
    let mut base = 0;
    for r in 0..rounds {
        let order = if r % 2 == 0 {
            [Flavor::Ours, Flavor::Matchbox]
        } else {
            [Flavor::Matchbox, Flavor::Ours]
        };
        let mut this = (None, None);
        for flavor in order {
            let proc = match flavor {
                Flavor::Ours => Some(&ours),
                Flavor::Matchbox => mb.as_ref(),
            };
            let Some(proc) = proc else { continue };
            match relay_round(flavor, proc, &pair_creds, span, &mut base).await {
                Ok(x) if flavor == Flavor::Ours => this.0 = Some(x),
                Ok(x) => this.1 = Some(x),
                Err(e) => notes.push(format!("relay round {r} ({}): {e}", flavor.name())),
            }
        }
        ours_rounds.extend(this.0);
        mb_rounds.extend(this.1);
    }
    drop(ours);
    mb.take();
    relay_figures(Flavor::Ours, &ours_rounds, pair_creds.len(), span, out);
    relay_figures(Flavor::Matchbox, &mb_rounds, pair_creds.len(), span, out);
    let rp = json!({"meaning": "ours / matchbox_server, same workload, same run; ours authenticates and checks room membership, matchbox does not", "rounds": rounds, "statistic": "one ratio per alternating round (throughput: maxima; latency: p99 of the round)"});
    if ours_rounds.len() == mb_rounds.len() && !ours_rounds.is_empty() {
        let ratios = |f: &dyn Fn(&RelayRound) -> f64| -> Vec<f64> {
            ours_rounds
                .iter()
                .zip(&mb_rounds)
                .map(|(o, m)| f(o) / f(m))
                .collect()
        };
        out.extend(Figure::new(
            "relay",
            "ratio_relay_throughput",
            "×",
            &ratios(&|r| r.max),
            rp.clone(),
            Some(Target::at_least(Stat::Median, 1.0, "≥ 1 (ours ≥ matchbox)")),
        ));
        for (k, frac) in RELAY_LOADS.iter().enumerate() {
            let pct = (frac * 100.0) as u32;
            out.extend(Figure::new(
                "relay",
                &format!("ratio_relay_p99_at_{pct}pct"),
                "×",
                &ratios(&|r| r.at.get(k).map_or(f64::NAN, |a| p99(&a.2))),
                rp.clone(),
                Some(Target::at_most(
                    Stat::Median,
                    1.0,
                    "≤ 1 (equal or better p99)",
                )),
            ));
        }
    }
    for (k, m) in &mb_idle {
        if let Some((_, o)) = ours_idle.iter().find(|(ko, _)| ko == k) {
            out.extend(Figure::single(
                "relay",
                &format!("ratio_rss_per_conn_{k}"),
                "×",
                o / m,
                rp.clone(),
                None,
            ));
        }
    }
    Ok(())
}
