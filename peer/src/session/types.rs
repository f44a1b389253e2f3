//! The session's configuration, inputs and outputs.

use super::asks::AskFor;
use super::limits::{
    DEFAULT_ASK_LIMIT, DEFAULT_CHAT_LIMIT, DEFAULT_REACTION_LIMIT, DEFAULT_REQUEST_LIMIT, RateLimit,
};
use crate::acceptance::{DEFAULT_MAX_SKEW_MS, DropReason};
use crate::cert::CertError;
use crate::channels::ChannelId;
use crate::frame::EncodeError;
use crate::ids::{DisplayName, Epoch, Role, RoomId, RoomMs, UserId};
use crate::message::{
    Buffering, ChatError, ChatText, Emoji, Fingerprint, MediaItem, Permissions, Policy,
    RefuseReason,
};
use crate::player::PlayerAction;
use crate::signaling::{ClientMessage, EndReason, ErrorCode};
use crate::sync::SyncEvent;
use crate::sync_config::{ConfigError, SyncConfig};
use crate::time::{MediaPos, Rate, TimeDelta};

/// Most outputs queued (bounded memory if a driver stops polling). When the
/// queue is full, the oldest *non-essential* output is dropped to make room
/// and counted in [`SessionStats::outputs_dropped`], in this order of
/// preference: events, clock frames, other frames, player actions. A lost
/// control frame is repaired by the next `State` (the host schedules one
/// at once when it loses one); a lost player action by the next correction.
/// Essential outputs (`Disconnect`, `Signal`) are only dropped when nothing
/// else is queued.
pub const MAX_QUEUED_OUTPUTS: usize = 1024;

/// A follower that is told of a host change the current host has not
/// (yet) signed keeps the certificate and waits this long for the signed
/// `Handoff` (which travels the mesh and may arrive after the server's
/// push) before it reports the change as refused
/// ([`Event::HostChangeRefused`]). The change is not applied meanwhile; a
/// matching `Handoff` that arrives later still applies it. The host itself
/// reports at once: it knows what it signed.
pub const HOST_CHANGE_GRACE: TimeDelta = TimeDelta::from_secs(5);

/// Wait-for-everyone: a hold that starts again within this time after the
/// room was released continues the previous hold's watchdog count, so a
/// member that stalls again and again (say, each correction seek makes it
/// buffer) is excused by the watchdog instead of stopping the room forever.
pub const REHOLD_GRACE: TimeDelta = TimeDelta::from_secs(3);

/// Wait-for-everyone: a member excused by the watchdog, or one that joined
/// (or reloaded its page) while the room played, is waited for again only
/// once it has reported `Ready` for this long without a break.
pub const EXCUSE_STEADY: TimeDelta = TimeDelta::from_secs(10);

/// Followers keep the room playing this long (in room time) after the
/// `issued-at` of the latest host `State` they hold when the host leaves,
/// so a host that reloads its page, restarts or loses its network for a
/// moment finds the room where it left it; then they pause there. A host
/// that comes back later resumes from that same point (docs/protocol.md
/// §7.2).
pub const HOST_RETURN_GRACE: TimeDelta = TimeDelta::from_secs(30);

/// A host that joins a room with other members online first asks them for
/// the room state they hold (its own signed `State` of an earlier term) and
/// waits at most this long, or until every one of them reported its
/// `Status`, before it starts the room afresh (docs/protocol.md §7.2).
pub const HOST_RETURN_WAIT: TimeDelta = TimeDelta::from_secs(10);

/// Default room policy of a new room: wait for everyone (10 s watchdog),
/// controllers may do everything.
pub const DEFAULT_POLICY: Policy = Policy {
    buffering: Buffering::WaitForEveryone,
    wait_timeout_ms: 10_000,
    controllers: Permissions::ALL,
};

/// Session settings. Every limit and interval is here, with its default.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// The room this session joins (from the invite link).
    pub room: RoomId,
    /// Sync thresholds.
    pub sync: SyncConfig,
    /// Host: how often a full `State` goes to every neighbour. Default 5 s.
    pub state_interval: TimeDelta,
    /// Follower: how often a `Status` goes to the host. Default 5 s.
    pub status_interval: TimeDelta,
    /// Bound on `|issued-at − room now|` (§7 rule 9). Default 30 000 ms.
    pub max_skew_ms: u64,
    /// Forward signed frames to neighbours that may not have them (mesh).
    /// Default on.
    pub forward: bool,
    /// The policy a host starts its room with. Default [`DEFAULT_POLICY`].
    pub initial_policy: Policy,
    /// Reactions per member, checked by every peer. Default
    /// [`DEFAULT_REACTION_LIMIT`] (bursts of 8, then 4/s).
    pub reaction_limit: RateLimit,
    /// Chat messages per member, checked by every peer. Default
    /// [`DEFAULT_CHAT_LIMIT`] (bursts of 5, then 1/s).
    pub chat_limit: RateLimit,
    /// Requests per member, checked by the host (over the limit: `Refuse`
    /// with `RateLimited`). Default [`DEFAULT_REQUEST_LIMIT`] (bursts of 10,
    /// then 5/s).
    pub request_limit: RateLimit,
    /// Asks per member held for the host's decision, checked by the host on
    /// top of `request_limit` (over the limit: `Refuse` with
    /// `RateLimited`). Default [`DEFAULT_ASK_LIMIT`] (bursts of 3, then one
    /// per 10 s).
    pub ask_limit: RateLimit,
    /// The room's admission secret (docs/protocol.md §2.2): from the invite
    /// link (`a=`), or for the host derived from its room key
    /// ([`crate::admit::AdmitSecret::derive`]). With it the host admits
    /// members that knock with it and drops the others' member frames, and
    /// a follower that pinned the host key does the same by the host's
    /// `Roster`. Default none: nothing is enforced.
    pub admit_secret: Option<crate::admit::AdmitSecret>,
}

impl SessionConfig {
    /// Defaults for `room`.
    #[must_use]
    pub fn new(room: RoomId) -> Self {
        Self {
            room,
            sync: SyncConfig::default(),
            state_interval: TimeDelta::from_secs(5),
            status_interval: TimeDelta::from_secs(5),
            max_skew_ms: DEFAULT_MAX_SKEW_MS,
            forward: true,
            initial_policy: DEFAULT_POLICY,
            reaction_limit: DEFAULT_REACTION_LIMIT,
            chat_limit: DEFAULT_CHAT_LIMIT,
            request_limit: DEFAULT_REQUEST_LIMIT,
            ask_limit: DEFAULT_ASK_LIMIT,
            admit_secret: None,
        }
    }
}

/// Why a session could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The sync configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An interval must be positive.
    #[error("session interval `{0}` must be positive")]
    Interval(&'static str),
    /// A rate limit needs a burst of at least 1 and a positive interval.
    #[error("rate limit `{0}` needs burst >= 1 and a positive interval")]
    RateLimit(&'static str),
}

/// The driver's notice that the data channels to a neighbour are open, with
/// the DTLS fingerprints of that connection when the stack exposes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelOpen {
    /// The neighbour (server-stamped user id of the connection).
    pub peer: UserId,
    /// Our own DTLS certificate fingerprint on this connection.
    pub local_fingerprint: Option<Fingerprint>,
    /// The neighbour's fingerprint from the remote SDP we accepted.
    pub remote_fingerprint: Option<Fingerprint>,
}

/// What the local user wants. The session decides: the host signs it; a
/// controller sends a `Request` when the room policy allows it; anything
/// else is refused with a reason ([`CommandError::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserCommand {
    /// Play from where the room is.
    Play,
    /// Pause.
    Pause,
    /// Seek to a position.
    Seek(MediaPos),
    /// Change the playback rate.
    Rate(Rate),
    /// Load a media item.
    Load(MediaItem),
    /// Replace the queue (host only).
    Queue(Vec<MediaItem>),
    /// Next queue item.
    Next,
    /// Previous queue item.
    Previous,
    /// Jump to a queue index.
    Jump(u16),
    /// Send a chat message (any member).
    Chat(String),
    /// Send a reaction (any member).
    Reaction(String),
    /// Grant controller or viewer (host only).
    SetRole {
        /// The member.
        member: UserId,
        /// Controller or viewer.
        role: Role,
    },
    /// Remove a member (host only).
    Kick(UserId),
    /// Hand the host role to a member (host only).
    Handoff(UserId),
    /// Change the room policy (host only).
    SetPolicy(Policy),
    /// Free-watch: stop following the room locally.
    FreeWatch,
    /// Follow the room again.
    Resync,
    /// Ask the host for something our role or the room policy does not let
    /// us do ourselves (docs/protocol.md §4.2 *Asking the host*). When we
    /// may do it, it is simply done.
    Ask(AskFor),
    /// Host: carry out this member's pending ask (signed by us, as any
    /// command).
    AcceptAsk(UserId),
    /// Host: say no to this member's pending ask.
    DismissAsk(UserId),
    /// Host: admit this member by hand (one that joined without the invite
    /// link's admission secret; docs/protocol.md §2.2).
    Approve(UserId),
}

/// Why a command was not carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No `hello` yet, or the session ended.
    #[error("not in a room")]
    NotJoined,
    /// Refused by role or policy.
    #[error("{0}")]
    Refused(RefuseReason),
    /// Only the host may do this.
    #[error("only the host may do this")]
    NotHost,
    /// The chat text breaks the chat rules.
    #[error("{0}")]
    Chat(#[from] ChatError),
    /// The reaction is not a short emoji.
    #[error("a reaction must be one short emoji")]
    Reaction,
    /// Not a member of the room.
    #[error("that person is no longer in the room")]
    UnknownMember(UserId),
    /// The queue is too long, an index is out of range, or the room has no
    /// media loaded.
    #[error("that is not possible right now")]
    InvalidState,
    /// The frame could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Sequence numbers of this epoch are exhausted.
    #[error("sequence numbers exhausted; a new epoch is needed")]
    SeqExhausted,
    /// Our own rate limit for this kind is spent (receivers would drop it).
    #[error("too many at once; wait a moment and try again")]
    RateLimited,
    /// Our own ask limit is spent ([`super::DEFAULT_ASK_LIMIT`]).
    #[error("you asked the host several times just now; wait a few seconds before asking again")]
    AskedTooOften,
    /// Host: that member has no ask waiting (answered, withdrawn, or the
    /// member left).
    #[error("that request is no longer waiting")]
    NoSuchAsk,
}

/// Why the session asks the driver to close a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The host's signed DTLS binding does not match this connection's
    /// fingerprints: the signaling server swapped them (MITM).
    FingerprintMismatch,
    /// Pinned room: no host `Bind` verified on the link to the host within
    /// [`super::BIND_DEADLINE`] (someone removed it).
    BindingMissing,
    /// The member was kicked by the host.
    Kicked,
    /// This session ended (kicked, room ended).
    SessionEnded,
}

/// Something the driver must do or show. Drain with
/// [`super::Session::poll_output`] after every input.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send these exact bytes to a neighbour on a data channel.
    SendFrame {
        /// The neighbour.
        to: UserId,
        /// The channel.
        channel: ChannelId,
        /// One complete signed frame.
        bytes: Vec<u8>,
    },
    /// Send this to the signaling server.
    Signal(ClientMessage),
    /// Apply this to the local player.
    Player(PlayerAction),
    /// Close the connection to a neighbour.
    Disconnect {
        /// The neighbour.
        peer: UserId,
        /// Why.
        reason: DisconnectReason,
    },
    /// Tell the user interface / logs.
    Event(Event),
}

/// Notifications.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// `hello` accepted.
    Joined {
        /// Our user id.
        you: UserId,
        /// Our role.
        role: Role,
        /// The current host.
        host: Option<UserId>,
        /// The current epoch.
        epoch: Epoch,
    },
    /// A frame was dropped by an acceptance rule (nothing changed).
    Dropped {
        /// The neighbour it came from.
        from: UserId,
        /// The first rule it failed.
        reason: DropReason,
    },
    /// A certificate from the server was refused.
    CertificateRefused {
        /// Whose, when known (claimed, unverified).
        user: Option<UserId>,
        /// Why.
        error: CertError,
    },
    /// The server presented a different server key than the one we know.
    ServerKeyMismatch,
    /// A repeated `hello` (re-registration after a signaling reconnect) was
    /// accepted: certificates and roster refreshed, playback untouched.
    Rejoined {
        /// Our user id.
        you: UserId,
        /// Our role.
        role: Role,
        /// The current host.
        host: Option<UserId>,
        /// The current epoch (a new one only through a valid host
        /// certificate, as with `host_changed`).
        epoch: Epoch,
    },
    /// A repeated `hello` was refused; the session keeps its state.
    RejoinRefused(RejoinError),
    /// A member joined.
    MemberJoined(UserId),
    /// A member left.
    MemberLeft(UserId),
    /// The host left: the room plays on for [`HOST_RETURN_GRACE`], then
    /// pauses locally until the host comes back or a new host acts.
    HostLeft(UserId),
    /// The old host announced a handoff (signed).
    HandoffAnnounced {
        /// The announced new host.
        new_host: UserId,
    },
    /// A new host term began.
    HostChanged {
        /// The new host.
        host: UserId,
        /// The new epoch.
        epoch: Epoch,
        /// Whether that is us.
        us: bool,
    },
    /// The server announced a new host that the current host (possibly
    /// us) never handed the room to: refused (docs/protocol.md §6). The
    /// current host stays; the refusal is also kept for status
    /// ([`super::Session::refused_host_change`]).
    HostChangeRefused(RefusedHostChange),
    /// The host came back (a new term of the same user with the same key,
    /// e.g. after reloading its page): not a new host. The room goes on.
    HostReturned {
        /// The host.
        host: UserId,
        /// The new epoch.
        epoch: Epoch,
    },
    /// We are the host and the room is running: `adopted` when it resumed
    /// from the state a member held for us (our own signed `State` of an
    /// earlier term), otherwise it starts afresh (nothing to resume).
    RoomResumed {
        /// Whether an earlier room state was adopted.
        adopted: bool,
    },
    /// A member's role changed (host-signed).
    RoleChanged {
        /// The member.
        member: UserId,
        /// The new role.
        role: Role,
    },
    /// A member was kicked (host-signed), possibly us.
    Kicked(UserId),
    /// A member's certificate passed its not-after: its frames are no
    /// longer accepted (possibly ours: the driver should re-join).
    CertificateExpired(UserId),
    /// The driver must load this item into the player, then call
    /// [`super::Session::media_loaded`].
    LoadMedia(MediaItem),
    /// The room queue changed.
    QueueChanged,
    /// The room policy changed.
    PolicyChanged(Policy),
    /// A chat message (rendered as text only), shown once however it
    /// arrived.
    Chat {
        /// The sender.
        from: UserId,
        /// The text.
        text: ChatText,
        /// `Some(when it was sent, on the room clock)` for an earlier
        /// message the host offered from its chat history when we joined
        /// (docs/protocol.md §4.1 *Chat history*); `None` for a live one.
        earlier: Option<RoomMs>,
    },
    /// A reaction.
    Reaction {
        /// The sender.
        from: UserId,
        /// The emoji.
        emoji: Emoji,
    },
    /// Host: the asks waiting for our decision changed (see
    /// [`super::Session::pending_asks`]).
    AsksChanged,
    /// The host refused our request.
    RequestRefused {
        /// Why.
        reason: RefuseReason,
    },
    /// The host's signed DTLS binding matches our connection.
    BindingVerified(UserId),
    /// The host's signed DTLS binding does **not** match: the connection is
    /// being closed. `pinned` tells whether the host key was pinned from the
    /// invite link (then this is certainly an attack by the signaling path).
    BindingMismatch {
        /// The host.
        host: UserId,
        /// Whether the host key was pinned.
        pinned: bool,
    },
    /// Pinned room: no host `Bind` verified on our link to the host within
    /// [`super::BIND_DEADLINE`]; the link is being closed (someone between
    /// us and the host removed the binding).
    BindingMissing {
        /// The host.
        host: UserId,
    },
    /// Host: the room waits for these members (wait-for-everyone).
    Waiting(Vec<UserId>),
    /// Host: the watchdog expired; these members are left to catch up.
    WatchdogExpired(Vec<UserId>),
    /// Host: this member's hold allowance ran out (its player kept
    /// stalling, [`super::HOLD_ALLOWANCE_WAITS`]): the room no longer waits
    /// for it (it catches up by itself) until the allowance is full again
    /// and it has been steady for [`EXCUSE_STEADY`].
    NoLongerWaitedFor(UserId),
    /// From the sync engine.
    Sync(SyncEvent),
    /// The server reported an error.
    ServerError(ErrorCode),
    /// The room ended.
    RoomEnded(EndReason),
}

/// Why a host change announced by the server was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HostChangeRefusal {
    /// The current host is present and signed no `Handoff`.
    #[error("the current host did not hand the room over")]
    NotSignedByHost,
    /// The current host signed a `Handoff` to another user, key or epoch.
    #[error("the current host handed the room to someone else")]
    NotTheSignedHandoff,
    /// The new host's key is not the one pinned from the invite link (or
    /// re-pinned by a signed `Handoff`).
    #[error("the new host's key is not the pinned one")]
    PinMismatch,
}

/// A host change the server announced and the session refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedHostChange {
    /// The member the server named as host.
    pub claimed_host: UserId,
    /// Its display name, as its certificate states it.
    pub name: DisplayName,
    /// The epoch the server announced.
    pub epoch: Epoch,
    /// The host the session keeps, if any.
    pub host: Option<UserId>,
    /// Whether that host is us.
    pub we_are_host: bool,
    /// Why.
    pub reason: HostChangeRefusal,
}

impl RefusedHostChange {
    /// One sentence for people (the CLI's log line, the web page's
    /// warning): no code names.
    #[must_use]
    pub fn message(&self) -> String {
        let name = self.name.as_str();
        if self.we_are_host {
            format!(
                "The server tried to give control of this room to {name} without your \
                 approval; you are still the host."
            )
        } else if self.host.is_some() {
            format!(
                "The server tried to make {name} the host without the host's approval; \
                 you keep following the current host."
            )
        } else {
            format!(
                "The server tried to make {name} the host without the host's approval; \
                 refused."
            )
        }
    }
}

/// Why a repeated `hello` was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RejoinError {
    /// The server now calls us by another user id.
    #[error("the server names another user for this session")]
    OtherUser,
    /// The server's epoch is older than the one we follow (a server
    /// restored from an older state): its certificates are not trusted to
    /// roll the room back.
    #[error("the server's epoch is older than ours")]
    StaleEpoch,
    /// A newer epoch without a valid host certificate for it in the roster.
    #[error("new epoch without a host certificate")]
    NoHostCertificate,
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Frames accepted.
    pub accepted: u64,
    /// Exact copies of accepted frames (mesh), dropped silently.
    pub duplicates: u64,
    /// Frames forwarded to neighbours.
    pub forwarded: u64,
    /// Frames signed by us.
    pub signed: u64,
    /// Host commands applied (control frames, ours included), not counting
    /// the host's periodic `State` refreshes.
    pub commands_applied: u64,
    /// Host `State` frames applied (the periodic refresh and the snapshot a
    /// joiner receives).
    pub states_applied: u64,
    /// Outputs dropped because the queue was full.
    pub outputs_dropped: u64,
    /// Clock pongs refused by the sync engine.
    pub pongs_refused: u64,
    /// Pinned room: links to the host closed because no `Bind` verified on
    /// them within [`super::BIND_DEADLINE`].
    pub bindings_missing: u64,
}

impl SessionStats {
    /// Commands and `State` frames applied: changes whenever the room's
    /// timeline may have changed.
    #[must_use]
    pub fn applied_total(&self) -> u64 {
        self.commands_applied.saturating_add(self.states_applied)
    }
}
