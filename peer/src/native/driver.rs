//! The native driver: one tokio task, a thin loop around the sans-I/O room
//! [`Session`].
//!
//! ```text
//! loop {
//!     select! {
//!         signaling event  → session.handle_signal / WebRTC negotiation
//!         transport event  → session.channel_open / handle_frame / peer_disconnected
//!         player event     → session.handle_player
//!         user command     → session.command (or a status snapshot)
//!         media resolved   → backend.load + session.media_loaded
//!         timer            → session.handle_timeout + peer retries
//!     }
//!     drain session.poll_output():
//!         SendFrame → UdpRtc::send      Signal → WebSocket
//!         Player    → backend.apply     Disconnect → close_peer
//!         Event     → DriverEvent stream (+ media loading)
//! }
//! ```
//!
//! Negotiation: the server's offerer rule is `joiner` — on `hello` we offer to
//! every online member we have no connection with; members who come online
//! later offer to us. Failures are retried with backoff and jitter
//! ([`Backoff::peer`]): an ICE restart after `Disconnected`, a fresh offer
//! after the connection closed. When both sides offer at once (retries after
//! a server restart), the peer with the **lower user id ignores** the
//! incoming offer and the higher one accepts it, so exactly one offer wins.
//!
//! Bounded everywhere: user commands and events are bounded channels (events
//! are dropped and counted when the consumer lags, never block the loop),
//! candidates that arrive before their offer are buffered up to
//! [`MAX_PENDING_CANDIDATES`] per peer, the transport bounds its send queues
//! and drops stalled peers. Nothing the network sends can panic the loop.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::api_client::{ApiClient, TokenSource};
use super::backoff::Backoff;
use super::candidates::HostAddrs;
use super::player::{BackendEvent, PlayerBackend, PlayerClock, PlayerError};
use super::relay::{GatherServer, RelayState, TurnAuth, parse_ice_url};
use super::rtc::{CloseReason, PeerState, SendError, TransportConfig, TransportEvent};
use super::signal_client::{SignalClient, SignalConfig, SignalEvent};
use super::udp::{BindError, UdpRtc};
use crate::acceptance::{DropCounts, DropReason};
use crate::channels::{self, ChannelId};
use crate::crypto::{PublicKey, SigningKey};
use crate::ice::{CandidateType, LinkFailure};
use crate::ids::{ContentHash, Role, RoomId, UserId};
use crate::message::{Fingerprint, MediaItem, Readiness};
use crate::player::PlayerObservation;
use crate::session::{
    ChannelOpen, CommandError, Event, HostChangeRefusal, Output, PeerInfo, RefusedHostChange,
    Session, SessionConfig, SessionError, UserCommand, ask_text, policy_text,
};
use crate::signaling::{ClientMessage, IceCandidate, IceServer, ServerMessage};
use crate::time::{LocalTime, TimeDelta, WallTime};

/// Capacity of the user-command queue.
pub const COMMAND_QUEUE: usize = 64;
/// Capacity of the event queue; events beyond it are dropped and counted.
pub const EVENT_QUEUE: usize = 1024;
/// Remote ICE candidates buffered per peer before its offer arrives.
pub const MAX_PENDING_CANDIDATES: usize = 32;
/// Media resolutions in flight (a new `LoadMedia` supersedes older ones).
pub const LOAD_QUEUE: usize = 4;

/// Why the driver stopped.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The UDP socket or transport could not be set up.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The session configuration is invalid.
    #[error(transparent)]
    Session(#[from] SessionError),
    /// The signaling client gave up.
    #[error("signaling: {0}")]
    Signaling(String),
    /// The player failed.
    #[error(transparent)]
    Player(#[from] PlayerError),
}

/// Settings of one driver.
#[derive(Debug)]
pub struct DriverConfig {
    /// Session settings (holds the room).
    pub session: SessionConfig,
    /// `ws(s)://…/api/v1/rooms/{id}/signal`.
    pub signal_url: String,
    /// Our signing key (followers: a fresh session key; host: the room key).
    pub identity: SigningKey,
    /// The server's certificate key, if known; `None` trusts the key of the
    /// first `hello` (reported as [`DriverEvent::ServerKeyLearned`]).
    pub server_key: Option<PublicKey>,
    /// Host key pinned by the invite link.
    pub pinned_host: Option<PublicKey>,
    /// UDP bind address (`0.0.0.0:0` announces every interface; a concrete
    /// address is the only candidate).
    pub bind: SocketAddr,
    /// Transport limits.
    pub transport: TransportConfig,
    /// TLS for `wss://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Jitter seed (signaling reconnects and peer retries).
    pub jitter_seed: u64,
}

impl DriverConfig {
    /// Defaults for `room` at `signal_url` with `identity`.
    #[must_use]
    pub fn new(room: RoomId, signal_url: String, identity: SigningKey) -> Self {
        Self {
            session: SessionConfig::new(room),
            signal_url,
            identity,
            server_key: None,
            pinned_host: None,
            bind: SocketAddr::from(([0, 0, 0, 0], 0)),
            transport: TransportConfig::default(),
            tls: None,
            jitter_seed: super::backoff::random_seed(),
        }
    }
}

/// Finds the bytes for a media item: a local file whose content hash matches,
/// else a stream URL. Returns the source for the player and the hash of what
/// it will play.
pub trait MediaResolver: Send + Sync + 'static {
    /// Resolves `item`.
    fn resolve(
        &self,
        item: MediaItem,
    ) -> impl std::future::Future<Output = Result<(String, ContentHash), String>> + Send;
}

/// For the virtual player: nothing to fetch, the "file" is the item itself.
#[derive(Debug, Clone, Copy, Default)]
pub struct VirtualMedia;

impl MediaResolver for VirtualMedia {
    async fn resolve(&self, item: MediaItem) -> Result<(String, ContentHash), String> {
        Ok((format!("virtual:{}", item.media.as_str()), item.hash))
    }
}

/// Real media: a file under `local_dir` whose SHA-256 matches the item's
/// hash, else the server's signed stream URL (whose bytes the server hashed).
#[derive(Debug, Clone)]
pub struct ServerMedia {
    /// The REST client.
    pub api: ApiClient,
    /// Directory searched for local copies (not recursive).
    pub local_dir: Option<std::path::PathBuf>,
}

/// Largest number of files hashed in the local media directory per lookup.
pub const MAX_LOCAL_FILES: usize = 256;

fn hash_file(path: &std::path::Path) -> std::io::Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(buf.get(..n).unwrap_or_default());
    }
    Ok(h.finalize().into())
}

impl MediaResolver for ServerMedia {
    async fn resolve(&self, item: MediaItem) -> Result<(String, ContentHash), String> {
        if let Some(dir) = self.local_dir.clone() {
            let want = item.hash;
            let found = tokio::task::spawn_blocking(move || {
                let entries = std::fs::read_dir(&dir).ok()?;
                for entry in entries.flatten().take(MAX_LOCAL_FILES) {
                    let path = entry.path();
                    if path.is_file() && hash_file(&path).ok() == Some(want.0) {
                        return Some(path);
                    }
                }
                None
            })
            .await
            .ok()
            .flatten();
            if let Some(path) = found {
                return Ok((path.to_string_lossy().into_owned(), item.hash));
            }
        }
        let id: i64 = item
            .media
            .as_str()
            .parse()
            .map_err(|_| "media id is not a server id".to_owned())?;
        let s = self.api.stream_url(id).await.map_err(|e| e.to_string())?;
        Ok((s.url, item.hash))
    }
}

/// What the user (CLI, tests) asks the driver.
#[derive(Debug)]
pub enum DriverCommand {
    /// A room command; the result comes back on the sender when given.
    User(
        UserCommand,
        Option<oneshot::Sender<Result<(), CommandError>>>,
    ),
    /// A status snapshot.
    Status(oneshot::Sender<StatusSnapshot>),
    /// Stop the driver (connections are closed).
    Quit,
}

/// Playback as the room sees it.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct PlaybackView {
    /// Paused.
    pub paused: bool,
    /// Room position now, ms.
    pub position_ms: f64,
    /// Rate.
    pub rate: f64,
}

/// One neighbour in a status snapshot.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PeerView {
    /// User id.
    pub user: u64,
    /// `connecting`, `connected`, `disconnected` or `none`.
    pub state: &'static str,
    /// Data channels open.
    pub channels_open: usize,
    /// Announced online by the server.
    pub online: bool,
    /// Bytes waiting in the send queue.
    pub queued_bytes: usize,
    /// Retries so far.
    pub attempts: u32,
    /// The current host.
    pub is_host: bool,
    /// Its role now, while it is a current member.
    pub role: Option<Role>,
    /// Its display name, once known.
    pub name: Option<String>,
    /// Follower, host row: the host's signed `Bind` verified on this very
    /// connection (docs/protocol.md §7.1 *Binding*).
    pub bound: bool,
    /// The host admitted this member (its signed `Roster` names it with
    /// the key of its certificate; docs/protocol.md §2.2). Where
    /// [`StatusSnapshot::admission`] holds, a member that is not admitted
    /// is not heard.
    pub admitted: bool,
    /// Round trip of the last ICE check on the selected candidate pair, ms
    /// (refreshed every second).
    pub rtt_ms: Option<f64>,
    /// Follower, host row: the host's (room) clock minus ours, ms.
    pub clock_offset_ms: Option<f64>,
    /// Follower, host row: hard bound on that offset's error, ms.
    pub clock_uncertainty_ms: Option<f64>,
    /// Follower, host row: round trip of the last clock exchange, ms.
    pub clock_rtt_ms: Option<f64>,
    /// Host, member rows: the member's reported largest round trip to us,
    /// ms (its `Latency` report).
    pub reported_rtt_ms: Option<f64>,
    /// Host, member rows: the member's reported player start-up latency,
    /// ms.
    pub reported_startup_ms: Option<f64>,
    /// Host, member rows: the member's last reported position minus the
    /// room's at the same room time, ms (positive = ahead).
    pub position_error_ms: Option<f64>,
    /// Host, member rows: the member's last reported player readiness.
    pub readiness: Option<&'static str>,
    /// Host, member rows: whether the room waits for this member when it
    /// buffers (false: it kept stalling and now catches up by itself, or
    /// the policy is laggards-catch-up).
    pub waited_for: Option<bool>,
    /// Host, member rows: what is left of its hold allowance, ms
    /// (docs/protocol.md, buffering).
    pub hold_allowance_ms: Option<f64>,
    /// Frames accepted from this neighbour (direct or forwarded).
    pub accepted: u64,
    /// Exact copies of accepted frames from it, dropped silently.
    pub duplicates: u64,
    /// Frames from it rejected by the session, by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Messages from it above the transport's frame limit, dropped before
    /// the session saw them.
    pub oversized_dropped: u64,
    /// Messages or channels from it with an id that is not ours.
    pub unknown_channel_dropped: u64,
    /// The path the link uses: `relay` (through the TURN server) or
    /// `direct`, from the selected candidate pair (refreshed every second).
    pub path: Option<&'static str>,
    /// Type of our side of the selected pair: `host` or `relay` (a
    /// server-reflexive candidate sends from its host address).
    pub local_candidate: Option<&'static str>,
    /// Type of the member's side of the selected pair: `host`, `srflx`,
    /// `prflx` or `relay`.
    pub remote_candidate: Option<&'static str>,
    /// Why the link could not be established, in plain words (which
    /// member, what was tried, what to do), until it comes up.
    pub problem: Option<String>,
}

/// ICE as this peer sees it (`status`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IceView {
    /// Candidate types we offer: `host`, and `srflx` / `relay` once
    /// gathered from the server's STUN/TURN servers.
    pub local_candidates: Vec<&'static str>,
    /// The server offered a TURN relay.
    pub turn_offered: bool,
    /// State of each TURN allocation: `allocating`, `allocated`, or the
    /// failure in plain words.
    pub relays: Vec<String>,
}

/// A status snapshot (`status` command, `--json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StatusSnapshot {
    /// Our user id.
    pub you: Option<u64>,
    /// The host.
    pub host: Option<u64>,
    /// We are the host.
    pub is_host: bool,
    /// This peer enforces admission (a pinned room whose invite link
    /// carried the admission secret, or its host): member frames count
    /// only from members the host admitted (docs/protocol.md §2.2).
    pub admission: bool,
    /// The host admitted us (always true for the host).
    pub admitted: bool,
    /// Our role now (host-signed grants override the certificate's).
    pub role: Option<Role>,
    /// Epoch.
    pub epoch: u64,
    /// The signaling connection is up.
    pub signaling: bool,
    /// Local time of the snapshot, µs since the driver's origin.
    pub local_us: i64,
    /// The wall clock at the snapshot instant, Unix ms: lines the snapshot
    /// up with readings taken by other processes (the reply itself may
    /// arrive much later on a busy machine).
    pub wall_ms: f64,
    /// Room time at that instant, ms (once the clock is known).
    pub room_ms: Option<f64>,
    /// The room's playback.
    pub playback: Option<PlaybackView>,
    /// Our player's position extrapolated to the snapshot instant, ms.
    pub player_position_ms: Option<f64>,
    /// Clock offset room − local, ms.
    pub clock_offset_ms: Option<f64>,
    /// Bound on the offset error, ms.
    pub clock_uncertainty_ms: Option<f64>,
    /// Filtered position error (player − room), ms.
    pub position_error_ms: Option<f64>,
    /// A rate correction is running.
    pub correcting: bool,
    /// Current rate offset, ppm.
    pub rate_offset_ppm: i64,
    /// Host: how far ahead a start from pause is scheduled now, ms
    /// (docs/protocol.md §9.3, *Adaptive lead time*).
    pub lead_start_ms: Option<f64>,
    /// Host: the same for any other command (pause, seek, rate), ms.
    pub lead_delivery_ms: Option<f64>,
    /// Neighbours.
    pub peers: Vec<PeerView>,
    /// Rejected frames by reason.
    pub drops: BTreeMap<&'static str, u64>,
    /// Host commands applied (not counting periodic `State` refreshes).
    pub commands_applied: u64,
    /// Host `State` frames applied.
    pub states_applied: u64,
    /// Pinned room: links to the host closed because the host's `Bind`
    /// never verified on them (docs/protocol.md §7.1 *Binding*).
    pub bindings_missing: u64,
    /// Frames accepted.
    pub accepted: u64,
    /// Driver counters.
    pub counters: DriverCounters,
    /// The latest host change the server announced without the current
    /// host's signature, refused (docs/protocol.md §6); none since the
    /// current host term began.
    pub refused_host_change: Option<RefusedHostChangeView>,
    /// The room's rules in plain words (who may control what).
    pub policy: Option<String>,
    /// Host: the asks waiting for our decision, oldest first.
    pub asks: Vec<AskView>,
    /// STUN/TURN: what we offer and the relay's state.
    pub ice: IceView,
}

/// An ask waiting for the host's decision (status and event).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AskView {
    /// Who asks.
    pub member: u64,
    /// Its name.
    pub name: String,
    /// `play`, `pause` or `seek`.
    pub what: &'static str,
    /// Target of a `seek`, ms.
    pub position_ms: Option<u64>,
    /// A sentence for people: "bob asks to pause."
    pub text: String,
}

/// The host's pending asks as views.
fn ask_views(s: &Session) -> Vec<AskView> {
    s.pending_asks()
        .into_iter()
        .map(|a| {
            let name = s.member_label(a.member);
            AskView {
                member: a.member.get(),
                text: ask_text(&name, a.what),
                name,
                what: a.what.label(),
                position_ms: a.what.position_ms(),
            }
        })
        .collect()
}

/// A refused host change (status and event).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RefusedHostChangeView {
    /// The member the server named as host.
    pub user: u64,
    /// Its display name.
    pub name: String,
    /// The epoch the server announced.
    pub epoch: u64,
    /// The host we keep.
    pub host: Option<u64>,
    /// Whether we are that host.
    pub you_are_host: bool,
    /// Why, for scripts: `not_signed_by_host`, `not_the_signed_handoff` or
    /// `pin_mismatch`.
    pub reason: &'static str,
    /// The same for people.
    pub message: String,
}

impl From<&RefusedHostChange> for RefusedHostChangeView {
    fn from(r: &RefusedHostChange) -> Self {
        Self {
            user: r.claimed_host.get(),
            name: r.name.as_str().to_owned(),
            epoch: r.epoch.0,
            host: r.host.map(UserId::get),
            you_are_host: r.we_are_host,
            reason: match r.reason {
                HostChangeRefusal::NotSignedByHost => "not_signed_by_host",
                HostChangeRefusal::NotTheSignedHandoff => "not_the_signed_handoff",
                HostChangeRefusal::PinMismatch => "pin_mismatch",
            },
            message: r.message(),
        }
    }
}

/// Driver-level counters.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct DriverCounters {
    /// Frames the transport refused because the peer's queue was full.
    pub send_queue_full: u64,
    /// Frames for a peer without a connection.
    pub send_no_peer: u64,
    /// Other send failures (size, channel).
    pub send_other: u64,
    /// Signaling messages dropped (queue full or disconnected).
    pub signal_dropped: u64,
    /// Events dropped because the consumer lagged.
    pub events_dropped: u64,
    /// Player actions the backend refused.
    pub player_errors: u64,
    /// Negotiation failures (bad SDP, candidates).
    pub negotiation_errors: u64,
    /// Remote candidates dropped (buffer full).
    pub candidates_dropped: u64,
}

/// What the driver reports (one JSON object per line in `--json`).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum DriverEvent {
    /// The signaling connection is up (auth sent).
    SignalingConnected,
    /// The signaling connection is down; retrying.
    SignalingDisconnected {
        /// Why.
        reason: String,
        /// Retry delay, ms.
        retry_ms: u64,
    },
    /// First `hello` with an unknown server key: trusted from now on.
    ServerKeyLearned {
        /// base64url.
        key: String,
    },
    /// Re-registered after a signaling reconnect (playback untouched).
    Rejoined {
        /// Our user id.
        you: u64,
        /// The host.
        host: Option<u64>,
        /// Epoch.
        epoch: u64,
    },
    /// Joined the room.
    Joined {
        /// Our user id.
        you: u64,
        /// Our role.
        role: String,
        /// The host.
        host: Option<u64>,
        /// Epoch.
        epoch: u64,
    },
    /// All data channels to a peer are open.
    PeerConnected {
        /// The peer.
        peer: u64,
    },
    /// ICE lost a peer (may come back).
    PeerInterrupted {
        /// The peer.
        peer: u64,
    },
    /// A peer connection closed.
    PeerClosed {
        /// The peer.
        peer: u64,
        /// Why.
        reason: String,
    },
    /// A host command or `State` frame was applied (count since start).
    CommandApplied {
        /// Commands and `State` frames applied so far.
        total: u64,
        /// The room's playback afterwards.
        playback: Option<PlaybackView>,
    },
    /// A frame was rejected.
    Dropped {
        /// From whom.
        from: u64,
        /// The rule (`docs/protocol.md` §7 labels).
        reason: &'static str,
    },
    /// Media was loaded into the player.
    MediaLoaded {
        /// The item.
        media: String,
        /// Local file or stream.
        local: bool,
    },
    /// Media could not be loaded.
    MediaFailed {
        /// The item.
        media: String,
        /// Why.
        error: String,
    },
    /// The server announced a host the current host never handed the room
    /// to: refused, the current host stays (`message` says so in words).
    HostChangeRefused(RefusedHostChangeView),
    /// A chat message.
    Chat {
        /// The sender.
        from: u64,
        /// The text.
        text: String,
        /// An earlier message from the host's chat history (sent before we
        /// joined), not a live one.
        earlier: bool,
    },
    /// Something else the session reported.
    Session {
        /// Debug rendering of the session event.
        detail: String,
    },
    /// Host: a member's player kept stalling; the room no longer waits for
    /// it (it catches up by itself) until it has been steady for a while.
    NoLongerWaitedFor {
        /// The member.
        member: u64,
        /// Its name.
        name: String,
        /// A sentence for people.
        message: String,
    },
    /// Host: the asks waiting for our decision changed (the full list).
    Asks {
        /// Oldest first.
        asks: Vec<AskView>,
    },
    /// The host refused our request or ask (`message`: plain words).
    Refused {
        /// A sentence for people.
        message: String,
    },
    /// A link to a member could not be established within
    /// [`crate::ice::LINK_FAILURE_TIMEOUT`]: what was tried and what to do.
    LinkFailed {
        /// The member.
        peer: u64,
        /// Candidate types we offered.
        local: Vec<&'static str>,
        /// Candidate types the member announced.
        remote: Vec<&'static str>,
        /// A sentence for people.
        message: String,
    },
    /// A status snapshot.
    Status(Box<StatusSnapshot>),
    /// The driver stopped.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// The caller's side of a running driver.
#[derive(Debug)]
pub struct DriverHandle {
    /// Commands (bounded).
    pub commands: mpsc::Sender<DriverCommand>,
    /// Events (bounded; lagging consumers lose events, counted).
    pub events: mpsc::Receiver<DriverEvent>,
    /// The driver task.
    pub task: JoinHandle<Result<(), DriverError>>,
    /// The UDP address the transport bound.
    pub local_addr: SocketAddr,
}

impl DriverHandle {
    /// Sends a command and waits for its result.
    ///
    /// # Errors
    /// The session's refusal; [`CommandError::NotJoined`] when the driver
    /// has stopped.
    pub async fn command(&self, cmd: UserCommand) -> Result<(), CommandError> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(DriverCommand::User(cmd, Some(tx)))
            .await
            .map_err(|_| CommandError::NotJoined)?;
        rx.await.unwrap_or(Err(CommandError::NotJoined))
    }

    /// A status snapshot (`None` when the driver has stopped).
    pub async fn status(&self) -> Option<StatusSnapshot> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(DriverCommand::Status(tx)).await.ok()?;
        rx.await.ok()
    }
}

/// Negotiation state with one member.
#[derive(Debug)]
struct PeerLink {
    online: bool,
    /// We sent an offer that is not answered yet.
    offer_pending: bool,
    open: BTreeSet<ChannelId>,
    /// `channel_open` was reported to the session.
    notified: bool,
    backoff: Backoff,
    retry_at: Option<Instant>,
    /// The retry is an ICE restart (else a fresh offer).
    retry_restart: bool,
    pending_candidates: Vec<String>,
    /// Why the link could not be established (until it comes up).
    problem: Option<String>,
    /// Display name from the member's certificate (signaling), for words
    /// shown to people before the session knows the member.
    name: Option<String>,
}

impl PeerLink {
    fn new(seed: u64) -> Self {
        Self {
            online: false,
            offer_pending: false,
            open: BTreeSet::new(),
            notified: false,
            backoff: Backoff::peer(seed),
            retry_at: None,
            retry_restart: false,
            pending_candidates: Vec::new(),
            problem: None,
            name: None,
        }
    }
}

/// A finished media resolution: the item and its source + hash, or why not.
type Resolved = (MediaItem, Result<(String, ContentHash), String>);

/// Converts the transport's fingerprint to the protocol's.
fn to_wire(fp: &super::fingerprint::Fingerprint) -> Option<Fingerprint> {
    Fingerprint::new(fp.hash_func(), fp.bytes()).ok()
}

fn playback_view(session: &Session, now: LocalTime) -> Option<PlaybackView> {
    let s = session.playback()?;
    let room = session.sync().room_time(now)?;
    let pos = s.position_at(room);
    Some(PlaybackView {
        paused: s.paused,
        position_ms: pos.as_micros() as f64 / 1000.0,
        rate: s.rate.as_f64(),
    })
}

/// The wall clock (a host's room clock starts from it).
fn wall_now() -> WallTime {
    WallTime::from_unix_micros(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX)),
    )
}

/// Non-zero drop counters by label.
fn labelled(drops: &DropCounts) -> BTreeMap<&'static str, u64> {
    DropReason::ALL
        .iter()
        .map(|r| (r.label(), drops.get(*r)))
        .filter(|(_, n)| *n > 0)
        .collect()
}

fn readiness_label(r: Readiness) -> &'static str {
    match r {
        Readiness::Ready => "ready",
        Readiness::Loading => "loading",
        Readiness::Buffering => "buffering",
        Readiness::Failed => "failed",
        Readiness::Ended => "ended",
    }
}

fn ms(d: TimeDelta) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// The driver task's state.
struct Driver<B, R> {
    cfg_session: SessionConfig,
    identity: Option<SigningKey>,
    server_key: Option<PublicKey>,
    pinned_host: Option<PublicKey>,
    clock: PlayerClock,
    session: Option<Session>,
    rtc: UdpRtc<UserId>,
    backend: B,
    resolver: Arc<R>,
    signal: SignalClient,
    signal_up: bool,
    events: mpsc::Sender<DriverEvent>,
    links: BTreeMap<UserId, PeerLink>,
    seed: u64,
    counters: DriverCounters,
    applied_total: u64,
    last_obs: Option<PlayerObservation>,
    load_tx: mpsc::Sender<Resolved>,
    /// The item whose resolution is awaited (older results are stale).
    loading: Option<MediaItem>,
    stop: Option<String>,
    /// Resolved STUN/TURN servers of a `hello` (name resolution runs in a
    /// task; the loop never waits for DNS).
    ice_tx: mpsc::Sender<Vec<GatherServer>>,
    /// The last `hello` offered a TURN server.
    turn_offered: bool,
}

impl DriverHandle {
    /// Binds the socket, starts signaling and spawns the driver task.
    ///
    /// `clock` must be the clock `backend` stamps its readings with.
    ///
    /// # Errors
    /// [`DriverError::Bind`] when the UDP socket or transport cannot be set
    /// up.
    pub async fn spawn<B, T, R>(
        config: DriverConfig,
        clock: PlayerClock,
        backend: B,
        tokens: T,
        resolver: R,
    ) -> Result<Self, DriverError>
    where
        B: PlayerBackend + Send + 'static,
        T: TokenSource,
        R: MediaResolver,
    {
        let hosts = HostAddrs::gather().map_err(|e| DriverError::Bind(BindError::Io(e)))?;
        let rtc = UdpRtc::<UserId>::bind(config.bind, hosts, config.transport.clone()).await?;
        let local_addr = rtc.local_addr();
        let public_key = config.identity.public_key();
        let signal = SignalClient::spawn(
            SignalConfig {
                url: config.signal_url.clone(),
                session_key: public_key,
                tls: config.tls.clone(),
                jitter_seed: config.jitter_seed,
            },
            tokens,
        );
        let (cmd_tx, cmd_rx) = mpsc::channel(COMMAND_QUEUE);
        let (ev_tx, ev_rx) = mpsc::channel(EVENT_QUEUE);
        let (load_tx, load_rx) = mpsc::channel(LOAD_QUEUE);
        let mut cfg_session = config.session;
        // The player's own start-up guess (mpv starts in milliseconds).
        cfg_session.sync.startup_estimate_initial = backend.startup_hint();
        let (ice_tx, ice_rx) = mpsc::channel(1);
        let driver = Driver {
            cfg_session,
            identity: Some(config.identity),
            server_key: config.server_key,
            pinned_host: config.pinned_host,
            clock,
            session: None,
            rtc,
            backend,
            resolver: Arc::new(resolver),
            signal,
            signal_up: false,
            events: ev_tx,
            links: BTreeMap::new(),
            seed: config.jitter_seed,
            counters: DriverCounters::default(),
            applied_total: 0,
            last_obs: None,
            load_tx,
            loading: None,
            stop: None,
            ice_tx,
            turn_offered: false,
        };
        // The span names the driver in traces (many drivers share a process
        // in tests and benches).
        let span = tracing::debug_span!("driver", port = local_addr.port());
        let task = tokio::spawn(tracing::Instrument::instrument(
            driver.run(cmd_rx, load_rx, ice_rx),
            span,
        ));
        Ok(Self {
            commands: cmd_tx,
            events: ev_rx,
            task,
            local_addr,
        })
    }
}

impl<B, R> Driver<B, R>
where
    B: PlayerBackend + Send + 'static,
    R: MediaResolver,
{
    fn now(&self) -> LocalTime {
        self.clock.now()
    }

    fn emit(&mut self, e: DriverEvent) {
        if self.events.try_send(e).is_err() {
            self.counters.events_dropped = self.counters.events_dropped.saturating_add(1);
        }
    }

    fn me(&self) -> Option<UserId> {
        self.session.as_ref().and_then(Session::user)
    }

    fn link(&mut self, peer: UserId) -> &mut PeerLink {
        let seed = self.seed ^ peer.get();
        self.links
            .entry(peer)
            .or_insert_with(|| PeerLink::new(seed))
    }

    async fn run(
        mut self,
        mut commands: mpsc::Receiver<DriverCommand>,
        mut loads: mpsc::Receiver<Resolved>,
        mut ice: mpsc::Receiver<Vec<GatherServer>>,
    ) -> Result<(), DriverError> {
        let result = loop {
            let wake = self.next_wake();
            tokio::select! {
                ev = self.signal.incoming.recv() => match ev {
                    Some(ev) => self.on_signal(ev),
                    None => break Err(DriverError::Signaling("client stopped".into())),
                },
                ev = self.rtc.next_event() => self.on_transport(ev),
                ev = self.backend.next_event() => match ev {
                    Ok(ev) => self.on_backend(ev),
                    Err(e) => break Err(DriverError::Player(e)),
                },
                c = commands.recv() => match c {
                    None | Some(DriverCommand::Quit) => break Ok(()),
                    Some(c) => self.on_command(c),
                },
                Some((item, r)) = loads.recv() => self.on_loaded(item, r),
                Some(servers) = ice.recv() => self.rtc.set_ice_servers(&servers),
                () = tokio::time::sleep_until(wake) => self.on_timer(),
            }
            self.drain();
            if let Some(reason) = self.stop.take() {
                break Err(DriverError::Signaling(reason));
            }
            if self.session.as_ref().is_some_and(Session::is_ended) {
                break Ok(());
            }
        };
        let _ = self.rtc.shutdown();
        let reason = match &result {
            Ok(()) => "stopped".to_owned(),
            Err(e) => e.to_string(),
        };
        self.emit(DriverEvent::Stopped { reason });
        result
    }

    fn next_wake(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        let session = self
            .session
            .as_ref()
            .and_then(Session::poll_timeout)
            .map(|t| self.clock.instant(t));
        let retries = self.links.values().filter_map(|l| l.retry_at).min();
        [session, retries]
            .into_iter()
            .flatten()
            .fold(far, Instant::min)
    }

    // ------------------------------------------------------------ signaling

    fn on_signal(&mut self, ev: SignalEvent) {
        match ev {
            SignalEvent::Connected => {
                self.signal_up = true;
                self.emit(DriverEvent::SignalingConnected);
            }
            SignalEvent::Disconnected { reason, retry_in } => {
                self.signal_up = false;
                self.emit(DriverEvent::SignalingDisconnected {
                    reason,
                    retry_ms: u64::try_from(retry_in.as_millis()).unwrap_or(u64::MAX),
                });
            }
            SignalEvent::Fatal(reason) => {
                self.signal_up = false;
                // Without a session yet there is nothing to keep running.
                if self.session.is_none() {
                    self.stop = Some(reason);
                } else {
                    self.emit(DriverEvent::SignalingDisconnected {
                        reason,
                        retry_ms: u64::MAX,
                    });
                }
            }
            SignalEvent::Message(msg) => self.on_server_message(*msg),
        }
    }

    fn ensure_session(&mut self, hello_key: PublicKey) -> bool {
        if self.session.is_some() {
            return true;
        }
        let Some(identity) = self.identity.take() else {
            return false;
        };
        let server_key = match self.server_key {
            Some(k) => k,
            None => {
                self.server_key = Some(hello_key);
                self.emit(DriverEvent::ServerKeyLearned {
                    key: hello_key.to_base64url(),
                });
                hello_key
            }
        };
        match Session::new(
            self.cfg_session.clone(),
            identity,
            server_key,
            self.pinned_host,
            self.now(),
            wall_now(),
        ) {
            Ok(s) => {
                self.session = Some(s);
                true
            }
            Err(e) => {
                self.stop = Some(e.to_string());
                false
            }
        }
    }

    fn on_server_message(&mut self, msg: ServerMessage) {
        let now = self.now();
        match msg {
            ServerMessage::Hello {
                server_key,
                you,
                ref members,
                ref ice_servers,
                ..
            } => {
                if !self.ensure_session(server_key) {
                    return;
                }
                self.resolve_ice_servers(ice_servers.as_slice());
                let online: Vec<UserId> = members
                    .as_slice()
                    .iter()
                    .filter(|m| m.online)
                    .map(|m| m.certificate.claimed().user)
                    .filter(|u| *u != you)
                    .collect();
                for m in members.as_slice() {
                    let c = m.certificate.claimed();
                    if c.user != you {
                        self.link(c.user).name = Some(c.name.as_str().to_owned());
                    }
                }
                let Some(session) = self.session.as_mut() else {
                    return;
                };
                // A repeated `hello` (reconnect, server restart) is the
                // session's business: it refreshes certificates and roster
                // without touching playback (docs/protocol.md §7.1).
                session.handle_signal(msg.clone(), now);
                for l in self.links.values_mut() {
                    l.online = false;
                }
                let connected: BTreeSet<UserId> = self.rtc.transport().peers().collect();
                tracing::debug!(me = you.get(), online = online.len(), "connect: hello");
                for peer in online {
                    self.link(peer).online = true;
                    if !connected.contains(&peer) {
                        self.offer(peer);
                    }
                }
            }
            ServerMessage::MemberJoined { ref member } => {
                let user = member.certificate.claimed().user;
                let online = member.online;
                if Some(user) != self.me() {
                    let name = member.certificate.claimed().name.as_str().to_owned();
                    let l = self.link(user);
                    l.online = online;
                    l.name = Some(name);
                }
                if let Some(s) = self.session.as_mut() {
                    s.handle_signal(msg, now);
                }
            }
            ServerMessage::MemberLeft { user } => {
                // Offline at the server; a live P2P connection stays.
                if let Some(l) = self.links.get_mut(&user) {
                    l.online = false;
                    l.retry_at = None;
                }
                if let Some(s) = self.session.as_mut() {
                    s.handle_signal(msg, now);
                }
            }
            ServerMessage::Offer { from, sdp } => self.on_offer(from, sdp.as_str()),
            ServerMessage::Answer { from, sdp } => {
                tracing::debug!(
                    me = self.me().map(UserId::get),
                    peer = from.get(),
                    "connect: answer received"
                );
                let r = self.rtc.accept_answer(from, sdp.as_str());
                match r {
                    Ok(()) => {
                        let l = self.link(from);
                        l.offer_pending = false;
                        self.flush_candidates(from);
                    }
                    Err(e) => {
                        self.counters.negotiation_errors += 1;
                        tracing::debug!(peer = from.get(), error = %e, "answer refused");
                    }
                }
            }
            ServerMessage::Ice { from, candidate } => {
                let line = candidate.candidate.as_str().to_owned();
                if line.is_empty() {
                    return;
                }
                if self.rtc.transport().peers().any(|p| p == from) {
                    if self.rtc.add_remote_candidate(from, &line).is_err() {
                        self.counters.negotiation_errors += 1;
                    }
                } else {
                    let l = self.link(from);
                    if l.pending_candidates.len() < MAX_PENDING_CANDIDATES {
                        l.pending_candidates.push(line);
                    } else {
                        self.counters.candidates_dropped += 1;
                    }
                }
            }
            other => {
                if let Some(s) = self.session.as_mut() {
                    s.handle_signal(other, now);
                }
            }
        }
    }

    /// Resolves the `hello`'s STUN/TURN servers in a task (names may need
    /// DNS) and hands them to the transport through `ice_tx`.
    fn resolve_ice_servers(&mut self, servers: &[IceServer]) {
        let mut targets = Vec::new();
        for s in servers {
            let auth = match (&s.username, &s.credential) {
                (Some(u), Some(c)) => Some(TurnAuth {
                    username: u.as_str().to_owned(),
                    credential: c.as_str().to_owned(),
                }),
                _ => None,
            };
            for url in s.urls.as_slice() {
                let Some(t) = parse_ice_url(url.as_str()) else {
                    continue;
                };
                // A TURN server needs credentials; without them it is
                // still a STUN server.
                let turn = if t.turn { auth.clone() } else { None };
                targets.push((t.host, t.port, turn));
            }
        }
        self.turn_offered = targets.iter().any(|(_, _, a)| a.is_some());
        if targets.is_empty() {
            return;
        }
        let tx = self.ice_tx.clone();
        tokio::spawn(async move {
            let mut out = Vec::new();
            for (host, port, turn) in targets {
                let addr = match host.parse::<std::net::IpAddr>() {
                    Ok(ip) => Some(SocketAddr::new(ip, port)),
                    Err(_) => tokio::net::lookup_host((host.as_str(), port))
                        .await
                        .ok()
                        .and_then(|mut it| it.find(SocketAddr::is_ipv4)),
                };
                match addr {
                    Some(addr) => out.push(GatherServer { addr, turn }),
                    None => tracing::warn!(%host, "ice: cannot resolve STUN/TURN server"),
                }
            }
            // A full channel means a newer `hello` is being resolved.
            let _ = tx.try_send(out);
        });
    }

    fn send_signal(&mut self, msg: ClientMessage) {
        // The server executes role changes, kicks and handoffs only through
        // its REST routes (the caller's business, e.g. the CLI); over the
        // socket they would only earn an error.
        if matches!(
            msg,
            ClientMessage::SetRole { .. }
                | ClientMessage::Kick { .. }
                | ClientMessage::Handoff { .. }
        ) {
            return;
        }
        if self.signal.outgoing.try_send(msg).is_err() {
            self.counters.signal_dropped += 1;
        }
    }

    fn offer(&mut self, peer: UserId) {
        if Some(peer) == self.me() {
            return;
        }
        match self.rtc.create_offer(peer) {
            Ok(sdp) => {
                tracing::debug!(
                    me = self.me().map(UserId::get),
                    peer = peer.get(),
                    "connect: offer sent"
                );
                self.send_sdp(peer, &sdp, true);
            }
            Err(e) => {
                self.counters.negotiation_errors += 1;
                tracing::debug!(peer = peer.get(), error = %e, "create_offer failed");
                self.schedule_retry(peer, false);
            }
        }
    }

    fn send_sdp(&mut self, peer: UserId, sdp: &str, offer: bool) {
        let Ok(sdp) = crate::signaling::Sdp::new(sdp) else {
            self.counters.negotiation_errors += 1;
            return;
        };
        let msg = if offer {
            self.link(peer).offer_pending = true;
            ClientMessage::Offer { to: peer, sdp }
        } else {
            ClientMessage::Answer { to: peer, sdp }
        };
        self.send_signal(msg);
    }

    fn on_offer(&mut self, from: UserId, sdp: &str) {
        let me = self.me();
        let glare =
            self.links.get(&from).is_some_and(|l| l.offer_pending) && me.is_some_and(|m| m < from);
        tracing::debug!(
            me = me.map(UserId::get),
            peer = from.get(),
            glare,
            "connect: offer received"
        );
        if glare {
            // Our offer wins (lower id); the other side accepts it.
            return;
        }
        match self.rtc.accept_offer(from, sdp) {
            Ok(answer) => {
                let l = self.link(from);
                l.offer_pending = false;
                l.retry_at = None;
                self.send_sdp(from, &answer, false);
                self.flush_candidates(from);
            }
            Err(e) => {
                self.counters.negotiation_errors += 1;
                tracing::debug!(peer = from.get(), error = %e, "offer refused");
            }
        }
    }

    fn flush_candidates(&mut self, peer: UserId) {
        let pending = std::mem::take(&mut self.link(peer).pending_candidates);
        for c in pending {
            if self.rtc.add_remote_candidate(peer, &c).is_err() {
                self.counters.negotiation_errors += 1;
            }
        }
    }

    fn schedule_retry(&mut self, peer: UserId, restart: bool) {
        let l = self.link(peer);
        if !l.online && !restart {
            return;
        }
        let delay = l.backoff.next_delay();
        l.retry_at = Some(Instant::now() + delay);
        l.retry_restart = restart;
        tracing::debug!(
            peer = peer.get(),
            restart,
            delay_ms = delay.as_millis() as u64,
            "connect: retry scheduled"
        );
    }

    // ------------------------------------------------------------ transport

    fn on_transport(&mut self, ev: TransportEvent<UserId>) {
        let now = self.now();
        match ev {
            TransportEvent::LocalCandidate(peer, line) => {
                let Ok(candidate) = crate::signaling::Candidate::new(line) else {
                    return;
                };
                self.send_signal(ClientMessage::Ice {
                    to: peer,
                    candidate: IceCandidate {
                        candidate,
                        sdp_mid: None,
                        sdp_m_line_index: Some(0),
                    },
                });
            }
            TransportEvent::Connected(peer) => {
                tracing::debug!(
                    me = self.me().map(UserId::get),
                    peer = peer.get(),
                    "connect: dtls up"
                );
            }
            TransportEvent::ChannelOpen(peer, ch) => {
                let l = self.link(peer);
                l.open.insert(ch);
                if l.open.len() >= channels::ALL.len() && !l.notified {
                    l.notified = true;
                    l.problem = None;
                    l.backoff.reset();
                    l.retry_at = None;
                    let open = ChannelOpen {
                        peer,
                        local_fingerprint: to_wire(self.rtc.local_fingerprint()),
                        remote_fingerprint: self
                            .rtc
                            .transport()
                            .remote_fingerprint(peer)
                            .and_then(to_wire),
                    };
                    if let Some(s) = self.session.as_mut() {
                        s.channel_open(open, now);
                    }
                    tracing::debug!(
                        me = self.me().map(UserId::get),
                        peer = peer.get(),
                        "connect: channels open"
                    );
                    self.emit(DriverEvent::PeerConnected { peer: peer.get() });
                }
            }
            TransportEvent::Data {
                peer,
                channel,
                data,
            } => {
                if let Some(s) = self.session.as_mut() {
                    s.handle_frame(peer, channel, &data, now);
                }
            }
            TransportEvent::ChannelClosed(peer, ch) => {
                self.link(peer).open.remove(&ch);
            }
            TransportEvent::Disconnected(peer) => {
                self.emit(DriverEvent::PeerInterrupted { peer: peer.get() });
                // The lower id restarts ICE (one side only: no glare).
                if self.me().is_some_and(|m| m < peer) {
                    self.schedule_retry(peer, true);
                }
            }
            TransportEvent::Reconnected(peer) => {
                let l = self.link(peer);
                l.retry_at = None;
                l.backoff.reset();
            }
            TransportEvent::PeerClosed { peer, reason } => {
                tracing::debug!(
                    me = self.me().map(UserId::get),
                    peer = peer.get(),
                    ?reason,
                    "connect: peer closed"
                );
                let l = self.link(peer);
                let was_open = l.notified;
                l.notified = false;
                l.open.clear();
                l.offer_pending = false;
                l.retry_at = None;
                if was_open && let Some(s) = self.session.as_mut() {
                    s.peer_disconnected(peer, now);
                }
                if !was_open
                    && matches!(reason, CloseReason::ConnectTimeout | CloseReason::IceFailed)
                {
                    self.link_failed(peer);
                }
                self.emit(DriverEvent::PeerClosed {
                    peer: peer.get(),
                    reason: format!("{reason:?}"),
                });
                // A replaced connection is already being renegotiated; a
                // local close was our decision (kick, binding mismatch).
                if !matches!(reason, CloseReason::Local | CloseReason::Replaced) {
                    self.schedule_retry(peer, false);
                }
            }
        }
    }

    fn on_timer(&mut self) {
        let now = self.now();
        if let Some(s) = self.session.as_mut() {
            s.handle_timeout(now);
        }
        let t = Instant::now();
        let due: Vec<(UserId, bool)> = self
            .links
            .iter()
            .filter(|(_, l)| l.retry_at.is_some_and(|r| r <= t))
            .map(|(p, l)| (*p, l.retry_restart))
            .collect();
        for (peer, restart) in due {
            self.link(peer).retry_at = None;
            let exists = self.rtc.transport().peers().any(|p| p == peer);
            if restart && exists {
                match self.rtc.restart_ice(peer) {
                    Ok(sdp) => self.send_sdp(peer, &sdp, true),
                    Err(_) => self.counters.negotiation_errors += 1,
                }
                // Try again later if it does not come back.
                self.schedule_retry(peer, true);
            } else if !exists && self.links.get(&peer).is_some_and(|l| l.online) {
                self.offer(peer);
            }
        }
    }

    // --------------------------------------------------------------- player

    fn on_backend(&mut self, ev: BackendEvent) {
        match ev {
            BackendEvent::Observation(o) => {
                self.last_obs = Some(o);
                let now = self.now();
                if let Some(s) = self.session.as_mut() {
                    s.handle_player(o, now);
                }
            }
            // The session takes the duration from the signed media item.
            BackendEvent::Duration(_) => {}
            BackendEvent::CommandFailed { command, reason } => {
                self.counters.player_errors += 1;
                self.emit(DriverEvent::Session {
                    detail: format!("player refused {command}: {reason}"),
                });
            }
        }
    }

    fn on_loaded(&mut self, item: MediaItem, r: Result<(String, ContentHash), String>) {
        if self.loading.as_ref() != Some(&item) {
            return; // superseded
        }
        self.loading = None;
        let now = self.now();
        match r {
            Ok((source, hash)) => {
                let local = !source.contains("://") && !source.starts_with("virtual:");
                match self.backend.load(&source) {
                    Ok(()) => {
                        if let Some(s) = self.session.as_mut() {
                            s.media_loaded(Some(hash), now);
                        }
                        self.emit(DriverEvent::MediaLoaded {
                            media: item.media.as_str().to_owned(),
                            local,
                        });
                    }
                    Err(e) => self.media_failed(&item, e.to_string()),
                }
            }
            Err(e) => self.media_failed(&item, e),
        }
    }

    fn media_failed(&mut self, item: &MediaItem, error: String) {
        let now = self.now();
        if let Some(s) = self.session.as_mut() {
            s.media_loaded(None, now);
        }
        self.emit(DriverEvent::MediaFailed {
            media: item.media.as_str().to_owned(),
            error,
        });
    }

    fn start_load(&mut self, item: MediaItem) {
        self.loading = Some(item.clone());
        let resolver = Arc::clone(&self.resolver);
        let tx = self.load_tx.clone();
        tokio::spawn(async move {
            let r = resolver.resolve(item.clone()).await;
            let _ = tx.send((item, r)).await;
        });
    }

    // ------------------------------------------------------------- commands

    fn on_command(&mut self, c: DriverCommand) {
        let now = self.now();
        match c {
            DriverCommand::User(cmd, reply) => {
                let r = match self.session.as_mut() {
                    Some(s) => s.command(cmd, now),
                    None => Err(CommandError::NotJoined),
                };
                if let Some(tx) = reply {
                    let _ = tx.send(r);
                }
            }
            DriverCommand::Status(tx) => {
                let _ = tx.send(self.snapshot());
            }
            DriverCommand::Quit => {}
        }
    }

    fn peer_view(&self, p: UserId, info: Option<&PeerInfo>) -> PeerView {
        let st = self.rtc.transport().peer_stats(p);
        let l = self.links.get(&p);
        let report = info.and_then(|i| i.report);
        let clock = info.and_then(|i| i.clock);
        PeerView {
            user: p.get(),
            state: match st.as_ref().map(|s| s.state) {
                Some(PeerState::Connecting) => "connecting",
                Some(PeerState::Connected) => "connected",
                Some(PeerState::Disconnected) => "disconnected",
                None => "none",
            },
            channels_open: l.map_or(0, |l| l.open.len()),
            online: l.is_some_and(|l| l.online),
            queued_bytes: st.as_ref().map_or(0, |s| s.queued_bytes),
            attempts: l.map_or(0, |l| l.backoff.attempts()),
            is_host: info.is_some_and(|i| i.is_host),
            role: info.and_then(|i| i.role),
            name: info
                .and_then(|i| i.name.as_ref())
                .map(|n| n.as_str().to_owned()),
            bound: info.is_some_and(|i| i.bound),
            admitted: info.is_some_and(|i| i.admitted),
            rtt_ms: st
                .as_ref()
                .and_then(|s| s.rtt)
                .map(|d| d.as_secs_f64() * 1000.0),
            clock_offset_ms: clock.map(|c| ms(c.offset)),
            clock_uncertainty_ms: clock.map(|c| ms(c.uncertainty)),
            clock_rtt_ms: info.and_then(|i| i.clock_round_trip).map(ms),
            reported_rtt_ms: info
                .and_then(|i| i.latency)
                .map(|l| ms(l.round_trip.as_delta())),
            reported_startup_ms: info
                .and_then(|i| i.latency)
                .map(|l| ms(l.startup.as_delta())),
            position_error_ms: report.and_then(|r| r.position_error).map(ms),
            readiness: report.map(|r| readiness_label(r.readiness)),
            waited_for: info.and_then(|i| i.hold).map(|h| h.waited_for),
            hold_allowance_ms: info.and_then(|i| i.hold).map(|h| ms(h.allowance)),
            accepted: info.map_or(0, |i| i.counters.accepted),
            duplicates: info.map_or(0, |i| i.counters.duplicates),
            drops: info.map_or_else(BTreeMap::new, |i| labelled(&i.counters.drops)),
            oversized_dropped: st.as_ref().map_or(0, |s| s.oversized_dropped),
            unknown_channel_dropped: st.as_ref().map_or(0, |s| s.unknown_channel_dropped),
            path: st.as_ref().and_then(|s| s.selected_pair).map(|(l, r)| {
                if l == CandidateType::Relayed || r == CandidateType::Relayed {
                    "relay"
                } else {
                    "direct"
                }
            }),
            local_candidate: st
                .as_ref()
                .and_then(|s| s.selected_pair)
                .map(|(l, _)| l.as_str()),
            remote_candidate: st
                .as_ref()
                .and_then(|s| s.selected_pair)
                .map(|(_, r)| r.as_str()),
            problem: l.and_then(|l| l.problem.clone()),
        }
    }

    fn ice_view(&self) -> IceView {
        IceView {
            local_candidates: self
                .rtc
                .transport()
                .local_types()
                .into_iter()
                .map(CandidateType::as_str)
                .collect(),
            turn_offered: self.turn_offered,
            relays: self
                .rtc
                .transport()
                .relays()
                .into_iter()
                .map(|(_, r)| match r {
                    RelayState::Allocating => "allocating".to_owned(),
                    RelayState::Allocated(_) => "allocated".to_owned(),
                    RelayState::Failed(why) => why,
                })
                .collect(),
        }
    }

    /// Explains a link that did not come up (logged, reported, shown in
    /// `status`).
    fn link_failed(&mut self, peer: UserId) {
        let transport = self.rtc.transport();
        let local = transport.local_types();
        let remote = transport
            .failed_remote_types(peer)
            .map(<[CandidateType]>::to_vec)
            .unwrap_or_default();
        let relay_problem = transport.relays().into_iter().find_map(|(_, r)| match r {
            RelayState::Failed(why) => Some(why),
            _ => None,
        });
        let name = self
            .session
            .as_ref()
            .and_then(|s| {
                s.peers(self.now())
                    .into_iter()
                    .find(|i| i.user == peer)
                    .and_then(|i| i.name.map(|n| n.as_str().to_owned()))
            })
            .or_else(|| self.links.get(&peer).and_then(|l| l.name.clone()));
        let failure = LinkFailure {
            member: name.unwrap_or_else(|| format!("member {}", peer.get())),
            local,
            remote,
            turn_offered: self.turn_offered,
            relay_problem,
        };
        let message = failure.explain();
        tracing::warn!(peer = peer.get(), "{message}");
        self.link(peer).problem = Some(message.clone());
        self.emit(DriverEvent::LinkFailed {
            peer: peer.get(),
            local: failure.local.iter().map(|t| t.as_str()).collect(),
            remote: failure.remote.iter().map(|t| t.as_str()).collect(),
            message,
        });
    }

    fn snapshot(&self) -> StatusSnapshot {
        let now = self.now();
        let s = self.session.as_ref();
        let sync = s.map(|s| s.sync_status(now));
        let infos: BTreeMap<UserId, PeerInfo> = s
            .map(|s| s.peers(now))
            .unwrap_or_default()
            .into_iter()
            .map(|i| (i.user, i))
            .collect();
        let users: BTreeSet<UserId> = self.links.keys().chain(infos.keys()).copied().collect();
        let peers: Vec<PeerView> = users
            .into_iter()
            .map(|p| self.peer_view(p, infos.get(&p)))
            .collect();
        let drops = s.map_or_else(BTreeMap::new, |s| labelled(s.drops()));
        let player_position_ms = self.last_obs.map(|o| {
            let pos = if o.paused || o.buffering || o.ended {
                o.position
            } else {
                o.position + o.rate.advance(now.since(o.at))
            };
            pos.as_micros() as f64 / 1000.0
        });
        StatusSnapshot {
            you: s.and_then(Session::user).map(UserId::get),
            host: s.and_then(Session::host).map(UserId::get),
            is_host: s.is_some_and(Session::is_host),
            admission: s.is_some_and(Session::admission_enforced),
            admitted: s.is_some_and(|s| s.user().is_some_and(|me| s.is_admitted(me))),
            role: s.and_then(Session::role),
            epoch: s.map_or(0, |s| s.epoch().0),
            signaling: self.signal_up,
            local_us: now.as_micros(),
            wall_ms: wall_now().as_unix_micros() as f64 / 1000.0,
            room_ms: s
                .and_then(|s| s.sync().room_time(now))
                .map(|r| r.as_micros() as f64 / 1000.0),
            playback: s.and_then(|s| playback_view(s, now)),
            player_position_ms,
            clock_offset_ms: sync.as_ref().and_then(|x| x.offset).map(ms),
            clock_uncertainty_ms: sync.as_ref().and_then(|x| x.uncertainty).map(ms),
            position_error_ms: sync.as_ref().and_then(|x| x.error).map(ms),
            correcting: sync.as_ref().is_some_and(|x| x.correcting),
            rate_offset_ppm: sync.as_ref().map_or(0, |x| x.rate_offset_ppm),
            lead_start_ms: s.and_then(Session::command_lead).map(|l| ms(l.start)),
            lead_delivery_ms: s.and_then(Session::command_lead).map(|l| ms(l.delivery)),
            peers,
            drops,
            commands_applied: s.map_or(0, |s| s.stats().commands_applied),
            states_applied: s.map_or(0, |s| s.stats().states_applied),
            bindings_missing: s.map_or(0, |s| s.stats().bindings_missing),
            accepted: s.map_or(0, |s| s.stats().accepted),
            counters: DriverCounters {
                signal_dropped: self
                    .counters
                    .signal_dropped
                    .saturating_add(self.signal.stats.outgoing_dropped.load(Ordering::Relaxed)),
                ..self.counters
            },
            refused_host_change: s
                .and_then(Session::refused_host_change)
                .map(RefusedHostChangeView::from),
            policy: s.map(|s| policy_text(&s.policy())),
            asks: s.map(ask_views).unwrap_or_default(),
            ice: self.ice_view(),
        }
    }

    // --------------------------------------------------------------- output

    fn drain(&mut self) {
        while let Some(out) = self.session.as_mut().and_then(Session::poll_output) {
            match out {
                Output::SendFrame { to, channel, bytes } => {
                    match self.rtc.send(to, channel, &bytes) {
                        Ok(_) => {}
                        Err(SendError::QueueFull) => self.counters.send_queue_full += 1,
                        Err(SendError::UnknownPeer) => self.counters.send_no_peer += 1,
                        Err(_) => self.counters.send_other += 1,
                    }
                }
                Output::Signal(msg) => self.send_signal(msg),
                Output::Player(action) => {
                    if self.backend.apply(action).is_err() {
                        self.counters.player_errors += 1;
                    }
                }
                Output::Disconnect { peer, reason } => {
                    self.rtc.close_peer(peer);
                    self.emit(DriverEvent::Session {
                        detail: format!("disconnect {}: {reason:?}", peer.get()),
                    });
                }
                Output::Event(e) => self.on_session_event(e),
            }
        }
        let applied = self
            .session
            .as_ref()
            .map_or(0, |s| s.stats().applied_total());
        if applied != self.applied_total {
            self.applied_total = applied;
            let playback = self
                .session
                .as_ref()
                .and_then(|s| playback_view(s, self.clock.now()));
            self.emit(DriverEvent::CommandApplied {
                total: applied,
                playback,
            });
        }
    }

    fn on_session_event(&mut self, e: Event) {
        match e {
            Event::Joined {
                you,
                role,
                host,
                epoch,
            } => self.emit(DriverEvent::Joined {
                you: you.get(),
                role: format!("{role:?}").to_ascii_lowercase(),
                host: host.map(UserId::get),
                epoch: epoch.0,
            }),
            Event::Rejoined {
                you, host, epoch, ..
            } => self.emit(DriverEvent::Rejoined {
                you: you.get(),
                host: host.map(UserId::get),
                epoch: epoch.0,
            }),
            Event::Dropped { from, reason } => self.emit(DriverEvent::Dropped {
                from: from.get(),
                reason: reason.label(),
            }),
            Event::LoadMedia(item) => self.start_load(item),
            // The old host signed a handoff to us (after the server's REST
            // handoff): register our key, the server then announces our
            // host certificate (`host_changed`) in the same epoch.
            Event::HandoffAnnounced { new_host } if Some(new_host) == self.me() => {
                if let Some(key) = self.session.as_ref().map(Session::public_key) {
                    self.send_signal(ClientMessage::RegisterHostKey { key });
                }
                self.emit(DriverEvent::Session {
                    detail: format!("{e:?}"),
                });
            }
            Event::HostChangeRefused(r) => {
                let view = RefusedHostChangeView::from(&r);
                tracing::warn!(
                    claimed_host = view.user,
                    epoch = view.epoch,
                    reason = view.reason,
                    "{}",
                    view.message
                );
                self.emit(DriverEvent::HostChangeRefused(view));
            }
            Event::AsksChanged => {
                let asks = self.session.as_ref().map(ask_views).unwrap_or_default();
                self.emit(DriverEvent::Asks { asks });
            }
            Event::RequestRefused { reason } => self.emit(DriverEvent::Refused {
                message: reason.to_string(),
            }),
            Event::NoLongerWaitedFor(member) => {
                let name = self.session.as_ref().map_or_else(
                    || format!("member {}", member.get()),
                    |s| s.member_label(member),
                );
                self.emit(DriverEvent::NoLongerWaitedFor {
                    member: member.get(),
                    message: crate::session::no_longer_waited_for_text(&name),
                    name,
                });
            }
            Event::BindingMissing { host } => {
                tracing::warn!(
                    host = host.get(),
                    "the connection to the host could not be verified in time; closed for safety"
                );
                self.emit(DriverEvent::Session {
                    detail: format!("{e:?}"),
                });
            }
            Event::Chat {
                from,
                text,
                earlier,
            } => self.emit(DriverEvent::Chat {
                from: from.get(),
                text: text.as_str().to_owned(),
                earlier: earlier.is_some(),
            }),
            other => self.emit(DriverEvent::Session {
                detail: format!("{other:?}"),
            }),
        }
    }
}
