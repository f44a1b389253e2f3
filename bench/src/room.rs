//! A whole room in one process: the real signaling server (in-process, real
//! SQLite file, real HTTP/WebSocket on 127.0.0.1), and N native drivers with
//! [`ProbeBackend`] players, over real WebRTC (str0m) on loopback UDP.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use watchparty_peer::crypto::{PublicKey, SigningKey};
use watchparty_peer::ids::{ContentHash, MediaId, PositionMs, RoomId};
use watchparty_peer::message::MediaItem;
use watchparty_peer::native::api_client::{ApiClient, CreateRoom, Invite};
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::driver::{
    DriverCommand, DriverConfig, DriverEvent, DriverHandle, VirtualMedia,
};
use watchparty_peer::native::player::PlayerClock;
use watchparty_peer::session::UserCommand;
use watchparty_peer::time::{MediaPos, TimeDelta};
use watchparty_peer::virtual_player::VirtualPlayerConfig;
use watchparty_signal::AppState;
use watchparty_signal::config::{Argon2Cost, Config};
use watchparty_signal::state::Limiters;
use watchparty_signal::throttle::{RateLimiter, THROTTLE_CAPACITY};
use watchparty_signal::validate::{DisplayName, Username};

use crate::Error;
use crate::probe::{Probe, ProbeBackend};

/// Password of the bench users.
const PASSWORD: &str = "bench-password-123";

/// Most peers in one room (the server's default room size).
pub const MAX_PEERS: usize = 16;

/// Longest wait for a room to connect, media to load, a command to land.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Media length of the virtual players.
pub const MEDIA_MS: i64 = 3_600_000;

/// Cheap hashing for the room fixtures (accounts are benchmarked separately
/// with the production parameters).
const FIXTURE_ARGON2: Argon2Cost = Argon2Cost {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

/// Wait after every peer loaded the media before the room is measured:
/// more than `SyncConfig::lead_time` (150 ms), after which the load's state
/// is in effect everywhere.
pub const LOAD_SETTLE: Duration = Duration::from_millis(500);

/// How one peer's clocks are distorted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Distortion {
    /// Local clock offset, ms (the `PlayerClock` origin is moved by it).
    pub offset_ms: i64,
    /// Media clock drift of the player, ppm.
    pub drift_ppm: i32,
}

/// The distortion of peer `i` of `n`: offsets spread over ±5 s and drifts
/// over ±200 ppm, alternating sign, extremes included.
pub fn distortion(i: usize, n: usize) -> Distortion {
    if n < 2 {
        return Distortion::default();
    }
    let at = |k: usize| k as f64 / (n - 1) as f64; // 0..=1
    Distortion {
        offset_ms: (5000.0 - 10_000.0 * at(i)).round() as i64,
        drift_ppm: (-200.0 + 400.0 * at((i + n / 2) % n)).round() as i32,
    }
}

/// The server, its users and the media item.
pub struct World {
    apis: Vec<(String, ApiClient)>,
    item: MediaItem,
    media_id: i64,
    _dir: tempfile::TempDir,
}

/// One running peer.
pub struct Peer {
    /// The driver.
    pub handle: DriverHandle,
    /// Its player.
    pub probe: Probe,
    /// Number of neighbours with all channels open.
    pub connected: watch::Receiver<usize>,
    /// Media loads so far.
    pub loaded: watch::Receiver<usize>,
    /// When all `n − 1` neighbours were first connected.
    pub all_connected: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// A connected room.
pub struct Room {
    /// Peer 0 is the host.
    pub peers: Vec<Peer>,
    /// From the followers' join to every data channel open, ms.
    pub connect_ms: f64,
}

impl World {
    /// Starts the server with [`MAX_PEERS`] users sharing one media item.
    pub async fn start() -> Result<Self, Error> {
        let dir = tempfile::tempdir()?;
        let lib = dir.path().join("lib");
        std::fs::create_dir_all(&lib)?;
        let mut movie = vec![7u8; 10_000];
        movie[..12].copy_from_slice(b"\0\0\0\x18ftypisom");
        std::fs::write(lib.join("movie.mp4"), &movie)?;
        let mut config = Config::new(dir.path().join("data"));
        config.argon2 = FIXTURE_ARGON2;
        let mut state = AppState::new(config).await.map_err(Error::msg)?;
        let mut limits = Limiters::new();
        limits.room_create = RateLimiter::new(100_000, Duration::from_secs(1), THROTTLE_CAPACITY);
        limits.auth_ip = RateLimiter::new(100_000, Duration::from_secs(1), THROTTLE_CAPACITY);
        state.limits = Arc::new(limits);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let st = state.clone();
        tokio::spawn(async move {
            watchparty_signal::server::serve(st, listener, std::future::pending()).await
        });
        let lib_id = watchparty_signal::media::library::add_scanned(&state.db, "films", &lib, 0)
            .await
            .map_err(Error::msg)?;
        let mut apis = Vec::new();
        for i in 0..MAX_PEERS {
            let name = format!("bench{i:02}");
            let hash = state
                .hasher
                .hash(PASSWORD.as_bytes())
                .await
                .map_err(Error::msg)?;
            let id = watchparty_signal::accounts::create_user(
                &state.db,
                &Username::parse(&name).map_err(Error::msg)?,
                &DisplayName::parse(&name).map_err(Error::msg)?,
                &hash,
                false,
            )
            .await
            .map_err(Error::msg)?;
            watchparty_signal::media::library::grant(&state.db, id, lib_id, 0)
                .await
                .map_err(Error::msg)?;
            let api = ApiClient::new(&base, None).map_err(Error::msg)?;
            api.login(&name, PASSWORD).await.map_err(Error::msg)?;
            apis.push((name, api));
        }
        let media = apis[0].1.media().await.map_err(Error::msg)?;
        let info = media.first().ok_or_else(|| Error::msg("no media item"))?;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&info.content_hash, &mut hash).map_err(Error::msg)?;
        let item = MediaItem {
            media: MediaId::new(&info.id.to_string()).map_err(Error::msg)?,
            hash: ContentHash(hash),
            duration: PositionMs::new(MEDIA_MS as u64).map_err(Error::msg)?,
        };
        Ok(Self {
            apis,
            item,
            media_id: info.id,
            _dir: dir,
        })
    }

    /// Creates a room of `n` peers (host first, then the followers all at
    /// once), waits for the full mesh and loads the media everywhere. Every
    /// driver binds an ephemeral UDP port on 127.0.0.1.
    pub async fn room(&self, n: usize, distort: bool) -> Result<Room, Error> {
        self.room_on(n, distort, &[]).await
    }

    /// [`World::room`] with the drivers' UDP ports chosen by the caller:
    /// `ports` is empty (ephemeral ports) or holds one port per peer, the
    /// host's first (network impairment must be installed on known ports
    /// before the peers exchange packets).
    pub async fn room_on(&self, n: usize, distort: bool, ports: &[u16]) -> Result<Room, Error> {
        if !(2..=MAX_PEERS).contains(&n) {
            return Err(Error::msg(format!("room size {n} outside 2..={MAX_PEERS}")));
        }
        if !ports.is_empty() && ports.len() != n {
            return Err(Error::msg(format!(
                "{} UDP ports given for a room of {n}",
                ports.len()
            )));
        }
        let port = |i: usize| ports.get(i).copied().unwrap_or(0);
        let host_key = new_signing_key().map_err(Error::msg)?;
        let host_api = &self.apis[0].1;
        let info = host_api
            .create_room(&CreateRoom {
                name: format!("bench-{n}"),
                media_id: self.media_id,
                invite_only: true,
                password: None,
                invites: self.apis[1..n]
                    .iter()
                    .map(|(u, _)| Invite {
                        username: u.clone(),
                        role: "viewer".into(),
                    })
                    .collect(),
                host_public_key: host_key.public_key().to_base64url(),
            })
            .await
            .map_err(Error::msg)?;
        let room: RoomId = info.id.parse().map_err(Error::msg)?;
        for (_, api) in &self.apis[1..n] {
            api.join_room(&info.id, None).await.map_err(Error::msg)?;
        }
        let pin = host_key.public_key();
        let d = |i| {
            if distort {
                distortion(i, n)
            } else {
                Distortion::default()
            }
        };
        let (host, mut joined) = spawn(host_api, room, host_key, None, n, d(0), port(0)).await?;
        wait_until(&mut joined, |j| *j, "host joined").await?;
        let keys = (1..n)
            .map(|_| new_signing_key().map_err(Error::msg))
            .collect::<Result<Vec<_>, _>>()?;
        // The followers join at once, as peers on their own machines would:
        // their start-ups (socket, certificate, signaling) run concurrently.
        let t0 = Instant::now();
        let joins = self.apis[1..n]
            .iter()
            .zip(keys)
            .enumerate()
            .map(|(i, ((_, api), key))| spawn(api, room, key, Some(pin), n, d(i + 1), port(i + 1)));
        let mut peers = vec![host];
        for r in futures_util::future::join_all(joins).await {
            peers.push(r?.0);
        }
        for p in &mut peers {
            wait_until(&mut p.connected, |c| *c + 1 >= n, "mesh connected").await?;
        }
        let connect_ms = peers
            .iter()
            .filter_map(|p| *crate::lock(&p.all_connected))
            .max()
            .map_or(f64::NAN, |t| ms(t.saturating_duration_since(t0)));
        let room = Room { peers, connect_ms };
        room.load(&self.item).await?;
        Ok(room)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn wait_until<T>(
    rx: &mut watch::Receiver<T>,
    f: impl FnMut(&T) -> bool,
    what: &str,
) -> Result<(), Error> {
    match tokio::time::timeout(WAIT_LIMIT, rx.wait_for(f)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(_)) => Err(Error::msg(format!("{what}: driver stopped"))),
        Err(_) => Err(Error::msg(format!(
            "{what}: not within {} s",
            WAIT_LIMIT.as_secs()
        ))),
    }
}

async fn spawn(
    api: &ApiClient,
    room: RoomId,
    identity: SigningKey,
    pin: Option<PublicKey>,
    n: usize,
    d: Distortion,
    port: u16,
) -> Result<(Peer, watch::Receiver<bool>), Error> {
    // Offsets of ±5 s: the origin is 10 s ± offset in the past.
    let back = Duration::from_millis((10_000 + d.offset_ms).max(0).unsigned_abs());
    let origin = tokio::time::Instant::now()
        .checked_sub(back)
        .ok_or_else(|| Error::msg("machine uptime below 15 s"))?;
    let clock = PlayerClock::new(origin);
    let url = api
        .signal_url(&room.to_string())
        .map_err(Error::msg)?
        .to_string();
    let mut cfg = DriverConfig::new(room, url, identity);
    cfg.bind = SocketAddr::from(([127, 0, 0, 1], port));
    cfg.pinned_host = pin;
    cfg.jitter_seed = 42;
    let (backend, probe) = ProbeBackend::new(
        VirtualPlayerConfig {
            duration: Some(MediaPos::from_millis(MEDIA_MS as u64)),
            drift_ppm: d.drift_ppm,
            position_jitter: TimeDelta::ZERO,
            ..VirtualPlayerConfig::default()
        },
        clock,
    );
    let mut handle = DriverHandle::spawn(cfg, clock, backend, api.clone(), VirtualMedia)
        .await
        .map_err(Error::msg)?;
    let (_, dummy) = mpsc::channel(1);
    let mut events = std::mem::replace(&mut handle.events, dummy);
    let (conn_tx, connected) = watch::channel(0usize);
    let (load_tx, loaded) = watch::channel(0usize);
    let (join_tx, joined) = watch::channel(false);
    let all_connected = Arc::new(std::sync::Mutex::new(None));
    let all = all_connected.clone();
    tokio::spawn(async move {
        let mut peers = BTreeSet::new();
        while let Some(e) = events.recv().await {
            match e {
                DriverEvent::Joined { .. } => {
                    join_tx.send_replace(true);
                }
                DriverEvent::PeerConnected { peer } => {
                    peers.insert(peer);
                    if peers.len() + 1 >= n {
                        crate::lock(&all).get_or_insert_with(Instant::now);
                    }
                    conn_tx.send_replace(peers.len());
                }
                DriverEvent::PeerClosed { peer, .. } => {
                    peers.remove(&peer);
                    conn_tx.send_replace(peers.len());
                }
                DriverEvent::MediaLoaded { .. } => {
                    load_tx.send_modify(|c| *c += 1);
                }
                DriverEvent::Stopped { .. } => break,
                _ => {}
            }
        }
    });
    Ok((
        Peer {
            handle,
            probe,
            connected,
            loaded,
            all_connected,
        },
        joined,
    ))
}

impl Room {
    /// The host.
    pub fn host(&self) -> &Peer {
        &self.peers[0]
    }

    /// Sends a host command.
    pub async fn command(&self, cmd: UserCommand) -> Result<(), Error> {
        self.host()
            .handle
            .command(cmd)
            .await
            .map_err(|e| Error::msg(format!("host command: {e}")))
    }

    /// Negotiation trouble summed over all drivers: signaling messages
    /// dropped, negotiation errors, buffered candidates dropped.
    pub async fn negotiation_counters(&self) -> serde_json::Value {
        let (mut dropped, mut errors, mut candidates) = (0, 0, 0);
        for p in &self.peers {
            if let Some(s) = p.handle.status().await {
                dropped += s.counters.signal_dropped;
                errors += s.counters.negotiation_errors;
                candidates += s.counters.candidates_dropped;
            }
        }
        serde_json::json!({"signal_dropped": dropped, "negotiation_errors": errors, "candidates_dropped": candidates})
    }

    /// Round trips of the last ICE check on every selected candidate pair,
    /// ms (one per peer and neighbour, once measured; refreshed every
    /// second): shows the delay a relay adds.
    pub async fn ice_rtts(&self) -> Vec<f64> {
        let mut out = Vec::new();
        for p in &self.peers {
            if let Some(s) = p.handle.status().await {
                out.extend(s.peers.iter().filter_map(|v| v.rtt_ms));
            }
        }
        out
    }

    async fn load(&self, item: &MediaItem) -> Result<(), Error> {
        self.command(UserCommand::Load(item.clone())).await?;
        for p in &self.peers {
            let mut rx = p.loaded.clone();
            wait_until(&mut rx, |c| *c >= 1, "media loaded").await?;
        }
        // The host schedules the load's paused state `lead_time` ahead on
        // the room clock; a command issued before that instant is ordered
        // after it and waits for it. Measure commands in a settled room.
        tokio::time::sleep(LOAD_SETTLE).await;
        Ok(())
    }

    /// Stops every driver and waits for them (bounded).
    pub async fn close(self) {
        for p in &self.peers {
            let _ = p.handle.commands.send(DriverCommand::Quit).await;
        }
        for p in self.peers {
            let _ = tokio::time::timeout(Duration::from_secs(5), p.handle.task).await;
        }
    }
}
