//! Frame payloads: what a signed frame says, after the body header.
//!
//! One [`Kind`] byte per message type. Kinds `0x01..=0x1f` are **control**,
//! signed by the current host; `0x20..=0x2f` are **member** messages, signed by
//! the sending member; `0x30`/`0x31` are the clock exchange (ping by any
//! member, pong by the host). [`Kind::signer`] says which.
//!
//! Every payload has an explicit, hand-written encoding (`docs/protocol.md`
//! §4): big-endian integers, `u16`-prefixed strings and lists with named
//! maxima, `0/1` booleans and option tags, no floats. Decoding checks every
//! bound and refuses trailing bytes. Commands carry state (positions and the
//! room time they apply at), so a lost or reordered frame is repaired by the
//! next one.

use core::fmt;
use core::str::FromStr;

use crate::cert::SignedCertificate;
use crate::channels::{self, ChannelSpec};
use crate::clock::{ClockPing, ClockPong};
use crate::codec::{DecodeError, Reader, TooLongToEncode, Writer};
use crate::crypto::{PUBLIC_KEY_LEN, PublicKey};
use crate::ids::{
    ContentHash, Epoch, InvalidValue, MAX_MEDIA_ID_LEN, MediaId, PositionMs, RateMilli, Role,
    RoomMs, Seq, UserId, is_bidi_control,
};
use crate::time::{LocalTime, RoomTime, TimeDelta};

/// Maximum number of items in a room queue.
pub const MAX_QUEUE_ITEMS: usize = 100;
/// Maximum number of role grants in a [`RoomState`] (the room member cap).
pub const MAX_ROLE_GRANTS: usize = 16;
/// Maximum chat text length in characters (Unicode scalar values).
pub const MAX_CHAT_CHARS: usize = 500;
/// Maximum chat text length in UTF-8 bytes (500 characters × 4).
pub const MAX_CHAT_BYTES: usize = MAX_CHAT_CHARS * 4;
/// Maximum reaction length in characters.
pub const MAX_EMOJI_CHARS: usize = 8;
/// Maximum reaction length in UTF-8 bytes.
pub const MAX_EMOJI_BYTES: usize = 32;
/// Longest "wait for everyone" timeout a policy may set, in milliseconds.
pub const MAX_WAIT_TIMEOUT_MS: u32 = 120_000;
/// Maximum number of members in a host's `Roster` (the room member cap).
pub const MAX_ADMITTED: usize = MAX_ROLE_GRANTS;
/// Maximum size of a certificate carried in an `Announce`.
pub const MAX_ANNOUNCED_CERT_LEN: usize = crate::cert::MAX_CERT_LEN;
/// Maximum size of the member-signed `Chat` frame a `ChatHistory` carries:
/// the largest `Chat` frame (envelope and signature, a `u16` length and
/// [`MAX_CHAT_BYTES`] of text), 2118 bytes.
pub const MAX_EARLIER_FRAME_LEN: usize = crate::frame::MIN_FRAME_LEN + 2 + MAX_CHAT_BYTES;

/// Largest latency a member may report in a `Latency` frame, µs (10 s); a
/// larger value is malformed. The host caps the lead time it derives from
/// the reports anyway (`SyncConfig::lead_time_max`).
pub const MAX_REPORTED_LATENCY_US: u32 = 10_000_000;

// ------------------------------------------------------------------ kinds --

/// Who must have signed a frame of a given kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignerClass {
    /// The current host (its key from the host certificate of the current
    /// epoch).
    Host,
    /// Any current member (its key from its member certificate).
    Member,
}

macro_rules! kinds {
    ($($(#[$doc:meta])* $name:ident = $byte:literal, $signer:ident, $chan:ident;)*) => {
        /// The message type byte of a frame.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($(#[$doc])* $name,)*
        }

        impl Kind {
            /// Every kind, in byte order.
            pub const ALL: &'static [Kind] = &[$(Kind::$name,)*];

            /// The wire byte.
            #[must_use]
            pub const fn to_byte(self) -> u8 {
                match self { $(Self::$name => $byte,)* }
            }

            /// Parses the wire byte; `None` for an unknown kind.
            #[must_use]
            pub const fn from_byte(b: u8) -> Option<Self> {
                match b { $($byte => Some(Self::$name),)* _ => None }
            }

            /// Who must sign frames of this kind.
            #[must_use]
            pub const fn signer(self) -> SignerClass {
                match self { $(Self::$name => SignerClass::$signer,)* }
            }

            /// The data channel frames of this kind travel on.
            #[must_use]
            pub const fn channel(self) -> ChannelSpec {
                match self { $(Self::$name => channels::$chan,)* }
            }
        }
    };
}

kinds! {
    /// Load a media item.
    Load = 0x01, Host, CONTROL;
    /// Replace the room queue.
    Queue = 0x02, Host, CONTROL;
    /// Advance to the next queue item.
    Next = 0x03, Host, CONTROL;
    /// Go back to the previous queue item.
    Previous = 0x04, Host, CONTROL;
    /// Jump to a queue index.
    Jump = 0x05, Host, CONTROL;
    /// Play from a position at a room time.
    Play = 0x06, Host, CONTROL;
    /// Pause at a position.
    Pause = 0x07, Host, CONTROL;
    /// Seek.
    Seek = 0x08, Host, CONTROL;
    /// Change the playback rate.
    Rate = 0x09, Host, CONTROL;
    /// Full room snapshot.
    State = 0x0a, Host, CONTROL;
    /// Room policy.
    Policy = 0x0b, Host, CONTROL;
    /// Grant a role.
    Role = 0x0c, Host, CONTROL;
    /// Remove a member.
    Kick = 0x0d, Host, CONTROL;
    /// Hand the host role to another key.
    Handoff = 0x0e, Host, CONTROL;
    /// DTLS fingerprint binding.
    Bind = 0x0f, Host, CONTROL;
    /// Refuse a member's request.
    Refuse = 0x10, Host, CONTROL;
    /// The members the host admitted to a pinned room.
    Roster = 0x11, Host, CONTROL;
    /// An earlier chat message, offered by the host to a member that joined
    /// late: a member-signed `Chat` frame, unchanged.
    ChatHistory = 0x12, Host, CONTROL;
    /// Emoji reaction.
    Reaction = 0x20, Member, CHAT;
    /// Ask the host for a command.
    Request = 0x21, Member, CONTROL;
    /// Player status report.
    Status = 0x22, Member, CONTROL;
    /// Chat text.
    Chat = 0x23, Member, CHAT;
    /// A member presents its certificate in band.
    Announce = 0x24, Member, CONTROL;
    /// A member proves to the host that it holds the invite link's
    /// admission secret.
    Knock = 0x25, Member, CONTROL;
    /// A member tells the host its round trip and player start-up latency
    /// (the host's adaptive lead time).
    Latency = 0x26, Member, CONTROL;
    /// Clock probe to the host.
    ClockPing = 0x30, Member, CLOCK;
    /// The host's clock answer.
    ClockPong = 0x31, Host, CLOCK;
}

// ------------------------------------------------------------- value types --

/// A playable item: which media, its content hash, and its duration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaItem {
    /// Catalog id.
    pub media: MediaId,
    /// SHA-256 of the file; peers check what they loaded against it.
    pub hash: ContentHash,
    /// Duration in milliseconds.
    pub duration: PositionMs,
}

/// The room queue.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Queue {
    items: Vec<MediaItem>,
    current: Option<u16>,
}

impl Queue {
    /// A queue of at most [`MAX_QUEUE_ITEMS`] items, `current` (if any)
    /// indexing into it.
    ///
    /// # Errors
    /// [`InvalidValue`] if too long or `current` is out of range.
    pub fn new(items: Vec<MediaItem>, current: Option<u16>) -> Result<Self, InvalidValue> {
        if items.len() > MAX_QUEUE_ITEMS {
            return Err(InvalidValue {
                what: "queue",
                why: "more than 100 items",
            });
        }
        if current.is_some_and(|c| usize::from(c) >= items.len()) {
            return Err(InvalidValue {
                what: "queue",
                why: "current index out of range",
            });
        }
        Ok(Self { items, current })
    }

    /// The items.
    #[must_use]
    pub fn items(&self) -> &[MediaItem] {
        &self.items
    }

    /// The index of the current item, if one is selected.
    #[must_use]
    pub fn current(&self) -> Option<u16> {
        self.current
    }
}

/// The playback timeline: `position` at room time `at`, advancing at `rate`
/// unless paused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// Whether playback is paused (then `position` holds still).
    pub paused: bool,
    /// Media position at `at`.
    pub position: PositionMs,
    /// Room time at which the media is at `position`.
    pub at: RoomMs,
    /// Playback rate.
    pub rate: RateMilli,
}

/// What the room does when a member buffers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffering {
    /// The host pauses the room until everyone is ready, at most for the
    /// policy's `wait_timeout_ms`; then a stuck member is left to catch up.
    WaitForEveryone,
    /// Playback goes on; buffering members catch up on their own.
    LaggardsCatchUp,
}

/// Which commands controllers may request (viewers may request none).
///
/// Bits: `0x01` play/pause, `0x02` seek, `0x04` rate, `0x08` load and queue
/// navigation. Other bits are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// Play and pause.
    pub const PLAY_PAUSE: Self = Self(0x01);
    /// Seek.
    pub const SEEK: Self = Self(0x02);
    /// Rate changes.
    pub const RATE: Self = Self(0x04);
    /// Load, next, previous, jump.
    pub const LOAD: Self = Self(0x08);
    /// Everything.
    pub const ALL: Self = Self(0x0f);
    /// Nothing.
    pub const NONE: Self = Self(0);

    /// Parses the bit set.
    ///
    /// # Errors
    /// [`InvalidValue`] if an unknown bit is set.
    pub const fn from_bits(bits: u8) -> Result<Self, InvalidValue> {
        if bits & !Self::ALL.0 != 0 {
            Err(InvalidValue {
                what: "permissions",
                why: "unknown bit",
            })
        } else {
            Ok(Self(bits))
        }
    }

    /// The bits.
    #[must_use]
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether all of `other`'s bits are set.
    #[must_use]
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The permission a requested command needs.
    #[must_use]
    pub const fn needed_for(command: &RequestedCommand) -> Self {
        match command {
            RequestedCommand::Play | RequestedCommand::Pause => Self::PLAY_PAUSE,
            RequestedCommand::Seek { .. } => Self::SEEK,
            RequestedCommand::Rate { .. } => Self::RATE,
            RequestedCommand::Load(_)
            | RequestedCommand::Next
            | RequestedCommand::Previous
            | RequestedCommand::Jump { .. } => Self::LOAD,
        }
    }
}

/// Room policy, set by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Buffering behaviour.
    pub buffering: Buffering,
    /// Watchdog for [`Buffering::WaitForEveryone`], in ms (at most
    /// [`MAX_WAIT_TIMEOUT_MS`]).
    pub wait_timeout_ms: u32,
    /// What controllers may request.
    pub controllers: Permissions,
}

/// A host-granted role (in [`RoomState`] and `Role` frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoleGrant {
    /// The member.
    pub member: UserId,
    /// The role (`Controller` or `Viewer`; `Host` moves only by `Handoff`).
    pub role: Role,
}

/// A full room snapshot (sent periodically and to late joiners).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomState {
    /// The loaded item, if any.
    pub loaded: Option<MediaItem>,
    /// The queue.
    pub queue: Queue,
    /// The timeline.
    pub timeline: Timeline,
    /// The policy.
    pub policy: Policy,
    /// Roles granted by the host (at most [`MAX_ROLE_GRANTS`]).
    pub roles: Vec<RoleGrant>,
}

/// Host handoff: the current host names its successor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handoff {
    /// The new host's user.
    pub new_host: UserId,
    /// The new host's room key.
    pub new_key: PublicKey,
    /// The epoch the new host opens (greater than the current one).
    pub new_epoch: Epoch,
}

/// A DTLS certificate fingerprint as in SDP `a=fingerprint` (RFC 8122).
///
/// Text form: `sha-256 AB:CD:…` (algorithm, space, uppercase hex pairs joined
/// by colons); parsing accepts either hex case.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fingerprint {
    /// SHA-256 (wire tag 1).
    Sha256([u8; 32]),
    /// SHA-384 (wire tag 2).
    Sha384([u8; 48]),
    /// SHA-512 (wire tag 3).
    Sha512([u8; 64]),
}

impl Fingerprint {
    /// The algorithm name used in SDP.
    #[must_use]
    pub const fn algorithm(&self) -> &'static str {
        match self {
            Self::Sha256(_) => "sha-256",
            Self::Sha384(_) => "sha-384",
            Self::Sha512(_) => "sha-512",
        }
    }

    /// The digest bytes.
    #[must_use]
    pub fn digest(&self) -> &[u8] {
        match self {
            Self::Sha256(d) => d,
            Self::Sha384(d) => d,
            Self::Sha512(d) => d,
        }
    }

    /// A fingerprint from an SDP hash name (`sha-256`, `sha-384`,
    /// `sha-512`; any case) and its digest (e.g. from a WebRTC stack).
    ///
    /// # Errors
    /// [`InvalidValue`] for another algorithm or a digest of the wrong length.
    pub fn new(algorithm: &str, digest: &[u8]) -> Result<Self, InvalidValue> {
        let tag = match algorithm.to_ascii_lowercase().as_str() {
            "sha-256" => 1,
            "sha-384" => 2,
            "sha-512" => 3,
            _ => 0,
        };
        Self::from_parts(tag, digest).ok_or(InvalidValue {
            what: "fingerprint",
            why: "unsupported algorithm or wrong digest length",
        })
    }

    const fn tag(&self) -> u8 {
        match self {
            Self::Sha256(_) => 1,
            Self::Sha384(_) => 2,
            Self::Sha512(_) => 3,
        }
    }

    fn from_parts(alg_tag: u8, digest: &[u8]) -> Option<Self> {
        match alg_tag {
            1 => digest.try_into().ok().map(Self::Sha256),
            2 => digest.try_into().ok().map(Self::Sha384),
            3 => digest.try_into().ok().map(Self::Sha512),
            _ => None,
        }
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.algorithm())?;
        for (i, b) in self.digest().iter().enumerate() {
            let sep = if i == 0 { ' ' } else { ':' };
            write!(f, "{sep}{b:02X}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<Self, InvalidValue> {
        let bad = InvalidValue {
            what: "fingerprint",
            why: "expected `sha-256 AB:CD:…`",
        };
        let (alg, hexes) = s.split_once(' ').ok_or(bad)?;
        let mut digest = Vec::with_capacity(64);
        for pair in hexes.split(':') {
            if pair.len() != 2 || digest.len() >= 64 {
                return Err(bad);
            }
            let mut b = [0u8; 1];
            hex::decode_to_slice(pair, &mut b).map_err(|_| bad)?;
            digest.push(b[0]);
        }
        Self::new(alg, &digest).map_err(|_| bad)
    }
}

/// The host's DTLS binding for one peer connection: the host signs its own
/// fingerprint and the peer's as the host saw them in SDP. The peer compares
/// them with the fingerprints of the connection it actually has and aborts on
/// a mismatch (a signaling server that swapped fingerprints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtlsBinding {
    /// The peer this binding is for.
    pub peer: UserId,
    /// The host's local DTLS fingerprint.
    pub host_fingerprint: Fingerprint,
    /// The peer's fingerprint as seen by the host.
    pub peer_fingerprint: Fingerprint,
}

/// A member the host admitted to a pinned room: its user id and the
/// session key it knocked with (docs/protocol.md §2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    /// The member.
    pub member: UserId,
    /// The session key its frames must be signed with.
    pub key: PublicKey,
}

/// The exact bytes of an earlier member-signed `Chat` frame, as a
/// `ChatHistory` carries them (docs/protocol.md §4.1): at most
/// [`MAX_EARLIER_FRAME_LEN`] bytes. Nothing else is checked here; the
/// session verifies the frame it carries like a live one, without the
/// freshness rules (`session/history.rs`).
#[derive(Clone, PartialEq, Eq)]
pub struct EarlierChat(Vec<u8>);

impl fmt::Debug for EarlierChat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The frame holds chat text, which stays out of logs.
        write!(f, "EarlierChat({} bytes)", self.0.len())
    }
}

impl EarlierChat {
    /// Wraps a frame of at most [`MAX_EARLIER_FRAME_LEN`] bytes.
    ///
    /// # Errors
    /// [`InvalidValue`] if it is longer.
    pub fn new(frame: Vec<u8>) -> Result<Self, InvalidValue> {
        if frame.len() > MAX_EARLIER_FRAME_LEN {
            return Err(InvalidValue {
                what: "earlier chat",
                why: "longer than the largest chat frame",
            });
        }
        Ok(Self(frame))
    }

    /// The carried frame's bytes.
    #[must_use]
    pub fn frame(&self) -> &[u8] {
        &self.0
    }
}

/// Why the host refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// The requester is a viewer (tag 1).
    ViewerRole,
    /// The room policy does not allow this command for controllers (tag 2).
    PolicyDenied,
    /// The command does not apply now, e.g. `Next` at the end of the queue
    /// (tag 3).
    InvalidState,
    /// Too many requests (tag 4).
    RateLimited,
    /// The host saw this member's ask and said no (tag 5; §4.2 *Asking
    /// the host*).
    Dismissed,
    /// The host already holds [`crate::session::MAX_PENDING_ASKS`] asks
    /// for its decision (tag 6).
    TooManyPending,
}

/// Plain words for people (shown by the browser page and the CLI): what
/// happened and what they can do.
impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::ViewerRole => {
                "only the host and controllers can control playback; \
                 you can ask the host instead"
            }
            Self::PolicyDenied => {
                "the room's rules do not let controllers do this; you can ask the host instead"
            }
            Self::InvalidState => "that is not possible right now",
            Self::RateLimited => "too many requests at once; wait a moment and try again",
            Self::Dismissed => "the host said no to your request",
            Self::TooManyPending => {
                "the host has too many requests waiting; try again in a little while"
            }
        })
    }
}

/// A refusal of a member's request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refusal {
    /// The requester.
    pub member: UserId,
    /// The `seq` of the request frame being refused.
    pub request_seq: Seq,
    /// Why.
    pub reason: RefuseReason,
}

/// A reaction: 1 to [`MAX_EMOJI_CHARS`] characters (at most
/// [`MAX_EMOJI_BYTES`] bytes), none of them ASCII, whitespace, a Unicode
/// control (`Cc`) or a bidi control.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(String);

impl Emoji {
    /// Parses a reaction.
    ///
    /// # Errors
    /// [`InvalidValue`] naming the broken rule.
    pub fn new(s: &str) -> Result<Self, InvalidValue> {
        let count = s.chars().count();
        if count == 0 || count > MAX_EMOJI_CHARS || s.len() > MAX_EMOJI_BYTES {
            return Err(InvalidValue {
                what: "reaction",
                why: "length must be 1..=8 characters and at most 32 bytes",
            });
        }
        if s.chars()
            .any(|c| c.is_ascii() || c.is_whitespace() || c.is_control() || is_bidi_control(c))
        {
            return Err(InvalidValue {
                what: "reaction",
                why: "ASCII, whitespace or control character",
            });
        }
        Ok(Self(s.to_owned()))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Chat text.
///
/// Rules (refused, never silently stripped): 1 to [`MAX_CHAT_CHARS`]
/// characters; not only whitespace; no Unicode `Cc` control characters
/// except newline (U+000A) and tab (U+0009) — so CR, NUL, ESC, DEL and
/// U+0080–U+009F are refused; no bidi embedding/override/isolate controls
/// (U+202A–U+202E, U+2066–U+2069). Rendered as text, never as HTML.
#[derive(Clone, PartialEq, Eq)]
pub struct ChatText(String);

impl fmt::Debug for ChatText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Chat content stays out of logs.
        write!(f, "ChatText({} chars)", self.0.chars().count())
    }
}

/// Why chat text was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// Empty or only whitespace.
    #[error("chat text is empty")]
    Empty,
    /// More than [`MAX_CHAT_CHARS`] characters.
    #[error("chat text is longer than 500 characters")]
    TooLong,
    /// A forbidden control character.
    #[error("chat text contains a control character")]
    ControlCharacter,
}

impl ChatText {
    /// Parses chat text.
    ///
    /// # Errors
    /// [`ChatError`] naming the broken rule.
    pub fn new(s: &str) -> Result<Self, ChatError> {
        if s.trim().is_empty() {
            return Err(ChatError::Empty);
        }
        if s.len() > MAX_CHAT_BYTES || s.chars().count() > MAX_CHAT_CHARS {
            return Err(ChatError::TooLong);
        }
        if s.chars()
            .any(|c| (c.is_control() && c != '\n' && c != '\t') || is_bidi_control(c))
        {
            return Err(ChatError::ControlCharacter);
        }
        Ok(Self(s.to_owned()))
    }

    /// The text.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A command a member asks the host for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestedCommand {
    /// Resume playback (tag 1).
    Play,
    /// Pause (tag 2).
    Pause,
    /// Seek (tag 3).
    Seek {
        /// Target position.
        position: PositionMs,
    },
    /// Change the rate (tag 4).
    Rate {
        /// New rate.
        rate: RateMilli,
    },
    /// Load an item (tag 5).
    Load(MediaItem),
    /// Next queue item (tag 6).
    Next,
    /// Previous queue item (tag 7).
    Previous,
    /// Jump to a queue index (tag 8).
    Jump {
        /// Queue index.
        index: u16,
    },
}

/// A member's player state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Loading the item (tag 1).
    Loading,
    /// Loaded and able to play (tag 2).
    Ready,
    /// Stalled, waiting for data (tag 3).
    Buffering,
    /// Reached the end (tag 4).
    Ended,
    /// Could not load or play (tag 5).
    Failed,
}

/// A member's status report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Player state.
    pub readiness: Readiness,
    /// Content hash of what the member has loaded, if anything.
    pub item: Option<ContentHash>,
    /// Player position…
    pub position: PositionMs,
    /// …at this room time.
    pub at: RoomMs,
    /// Whether the member has detached from sync (free-watch).
    pub detached: bool,
}

/// A latency a member reports, µs, at most [`MAX_REPORTED_LATENCY_US`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct ReportedLatency(u32);

impl ReportedLatency {
    /// Parses a wire value.
    ///
    /// # Errors
    /// Above [`MAX_REPORTED_LATENCY_US`].
    pub const fn new(us: u32) -> Result<Self, InvalidValue> {
        if us > MAX_REPORTED_LATENCY_US {
            return Err(InvalidValue {
                what: "reported latency",
                why: "more than 10 s",
            });
        }
        Ok(Self(us))
    }

    /// A measured duration, clamped to `0..=`[`MAX_REPORTED_LATENCY_US`].
    #[must_use]
    pub fn saturating_from(d: TimeDelta) -> Self {
        let us = d.as_micros().clamp(0, i64::from(MAX_REPORTED_LATENCY_US));
        // Clamped into u32 range just above.
        Self(u32::try_from(us).unwrap_or(MAX_REPORTED_LATENCY_US))
    }

    /// The value in µs.
    #[must_use]
    pub const fn as_micros(self) -> u32 {
        self.0
    }

    /// The value as a duration.
    #[must_use]
    pub const fn as_delta(self) -> TimeDelta {
        TimeDelta::from_micros(self.0 as i64)
    }
}

/// A member's latency report to the host: what the host needs to schedule
/// commands just far enough ahead (docs/protocol.md §9.3, *Adaptive lead
/// time*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// The largest round trip to the host among the member's current clock
    /// samples (network time, without the host's hold time).
    pub round_trip: ReportedLatency,
    /// The member's learned player start-up latency (from `Play` to
    /// playing).
    pub startup: ReportedLatency,
}

// --------------------------------------------------------------- messages --

/// A frame payload. The variant determines the frame's [`Kind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Load a media item (paused at 0 until a `Play`).
    Load(MediaItem),
    /// Replace the queue.
    Queue(Queue),
    /// Next queue item.
    Next,
    /// Previous queue item.
    Previous,
    /// Jump to a queue index.
    Jump {
        /// Queue index.
        index: u16,
    },
    /// Media is at `position` at room time `at`, playing.
    Play {
        /// Position at `at`.
        position: PositionMs,
        /// Room time (a little in the future, so all peers start together).
        at: RoomMs,
    },
    /// Paused at `position` from room time `at` (until `at` the previous
    /// state stays in effect, so every peer stops on the same frame).
    Pause {
        /// Exact pause position.
        position: PositionMs,
        /// Room time the pause takes effect.
        at: RoomMs,
    },
    /// Seek to `position`, effective at `at`, then paused or playing.
    Seek {
        /// Target position.
        position: PositionMs,
        /// Whether paused after the seek.
        paused: bool,
        /// Room time the position refers to.
        at: RoomMs,
    },
    /// Rate change, re-anchoring the timeline at (`position`, `at`).
    Rate {
        /// New rate.
        rate: RateMilli,
        /// Position at `at`.
        position: PositionMs,
        /// Room time.
        at: RoomMs,
    },
    /// Full snapshot.
    State(Box<RoomState>),
    /// Room policy.
    Policy(Policy),
    /// Role grant.
    Role(RoleGrant),
    /// Remove a member.
    Kick {
        /// The member.
        member: UserId,
    },
    /// Host handoff.
    Handoff(Handoff),
    /// DTLS fingerprint binding.
    Bind(DtlsBinding),
    /// Request refused.
    Refuse(Refusal),
    /// The members the host admitted (at most [`MAX_ADMITTED`]).
    Roster(Vec<Admitted>),
    /// An earlier chat message for a member that joined late.
    ChatHistory(EarlierChat),
    /// Reaction.
    Reaction(Emoji),
    /// Request to the host.
    Request(RequestedCommand),
    /// Status report.
    Status(Status),
    /// Chat.
    Chat(ChatText),
    /// The signer's own certificate.
    Announce(SignedCertificate),
    /// Proof of the invite link's admission secret: the knock MAC
    /// (`crate::admit::AdmitSecret::knock_mac`).
    Knock([u8; crate::admit::ADMIT_SECRET_LEN]),
    /// Latency report to the host.
    Latency(Latency),
    /// Clock probe (µs timestamps).
    ClockPing(ClockPing),
    /// Clock answer (µs timestamps).
    ClockPong(ClockPong),
}

impl Message {
    /// The frame kind of this message.
    #[must_use]
    pub const fn kind(&self) -> Kind {
        match self {
            Self::Load(_) => Kind::Load,
            Self::Queue(_) => Kind::Queue,
            Self::Next => Kind::Next,
            Self::Previous => Kind::Previous,
            Self::Jump { .. } => Kind::Jump,
            Self::Play { .. } => Kind::Play,
            Self::Pause { .. } => Kind::Pause,
            Self::Seek { .. } => Kind::Seek,
            Self::Rate { .. } => Kind::Rate,
            Self::State(_) => Kind::State,
            Self::Policy(_) => Kind::Policy,
            Self::Role(_) => Kind::Role,
            Self::Kick { .. } => Kind::Kick,
            Self::Handoff(_) => Kind::Handoff,
            Self::Bind(_) => Kind::Bind,
            Self::Refuse(_) => Kind::Refuse,
            Self::Roster(_) => Kind::Roster,
            Self::ChatHistory(_) => Kind::ChatHistory,
            Self::Reaction(_) => Kind::Reaction,
            Self::Request(_) => Kind::Request,
            Self::Status(_) => Kind::Status,
            Self::Chat(_) => Kind::Chat,
            Self::Announce(_) => Kind::Announce,
            Self::Knock(_) => Kind::Knock,
            Self::Latency(_) => Kind::Latency,
            Self::ClockPing(_) => Kind::ClockPing,
            Self::ClockPong(_) => Kind::ClockPong,
        }
    }

    /// Appends the payload encoding.
    pub(crate) fn encode(&self, w: &mut Writer) -> Result<(), TooLongToEncode> {
        match self {
            Self::Load(item) => put_item(w, item)?,
            Self::Queue(q) => put_queue(w, q)?,
            Self::Next | Self::Previous => {}
            Self::Jump { index } => w.u16(*index),
            Self::Play { position, at } => {
                w.u64(position.as_millis());
                w.i64(at.0);
            }
            Self::Pause { position, at } => {
                w.u64(position.as_millis());
                w.i64(at.0);
            }
            Self::Seek {
                position,
                paused,
                at,
            } => {
                w.u64(position.as_millis());
                w.bool(*paused);
                w.i64(at.0);
            }
            Self::Rate { rate, position, at } => {
                w.u16(rate.get());
                w.u64(position.as_millis());
                w.i64(at.0);
            }
            Self::State(s) => {
                put_option(w, s.loaded.as_ref(), put_item)?;
                put_queue(w, &s.queue)?;
                put_timeline(w, &s.timeline);
                put_policy(w, &s.policy);
                w.count("roles", s.roles.len(), MAX_ROLE_GRANTS)?;
                for g in &s.roles {
                    put_grant(w, g);
                }
            }
            Self::Policy(p) => put_policy(w, p),
            Self::Role(g) => put_grant(w, g),
            Self::Kick { member } => w.u64(member.get()),
            Self::Handoff(h) => {
                w.u64(h.new_host.get());
                w.put(h.new_key.as_bytes());
                w.u64(h.new_epoch.0);
            }
            Self::Bind(b) => {
                w.u64(b.peer.get());
                put_fingerprint(w, &b.host_fingerprint);
                put_fingerprint(w, &b.peer_fingerprint);
            }
            Self::Refuse(r) => {
                w.u64(r.member.get());
                w.u64(r.request_seq.get());
                w.u8(match r.reason {
                    RefuseReason::ViewerRole => 1,
                    RefuseReason::PolicyDenied => 2,
                    RefuseReason::InvalidState => 3,
                    RefuseReason::RateLimited => 4,
                    RefuseReason::Dismissed => 5,
                    RefuseReason::TooManyPending => 6,
                });
            }
            Self::Roster(list) => {
                w.count("roster", list.len(), MAX_ADMITTED)?;
                for a in list {
                    w.u64(a.member.get());
                    w.put(a.key.as_bytes());
                }
            }
            Self::ChatHistory(c) => w.bytes("earlier chat", &c.0, MAX_EARLIER_FRAME_LEN)?,
            Self::Knock(mac) => w.put(mac),
            Self::Reaction(e) => w.bytes("reaction", e.0.as_bytes(), MAX_EMOJI_BYTES)?,
            Self::Request(c) => put_request(w, c)?,
            Self::Status(s) => {
                w.u8(match s.readiness {
                    Readiness::Loading => 1,
                    Readiness::Ready => 2,
                    Readiness::Buffering => 3,
                    Readiness::Ended => 4,
                    Readiness::Failed => 5,
                });
                put_option(w, s.item.as_ref(), |w, h| {
                    w.put(&h.0);
                    Ok(())
                })?;
                w.u64(s.position.as_millis());
                w.i64(s.at.0);
                w.bool(s.detached);
            }
            Self::Chat(t) => w.bytes("chat", t.0.as_bytes(), MAX_CHAT_BYTES)?,
            Self::Announce(c) => w.bytes("certificate", c.as_bytes(), MAX_ANNOUNCED_CERT_LEN)?,
            Self::Latency(l) => {
                w.u32(l.round_trip.as_micros());
                w.u32(l.startup.as_micros());
            }
            Self::ClockPing(p) => {
                w.u32(p.id);
                w.i64(p.origin.as_micros());
            }
            Self::ClockPong(p) => {
                w.u32(p.id);
                w.i64(p.origin.as_micros());
                w.i64(p.receive.as_micros());
                w.i64(p.transmit.as_micros());
            }
        }
        Ok(())
    }

    /// Decodes the payload of a frame of kind `kind`; all of `payload` must be
    /// consumed.
    ///
    /// # Errors
    /// [`MessageError`] for malformed payloads and invalid chat text.
    pub fn decode(kind: Kind, payload: &[u8]) -> Result<Self, MessageError> {
        let mut r = Reader::new(payload);
        let msg = match kind {
            Kind::Load => Self::Load(get_item(&mut r)?),
            Kind::Queue => Self::Queue(get_queue(&mut r)?),
            Kind::Next => Self::Next,
            Kind::Previous => Self::Previous,
            Kind::Jump => Self::Jump {
                index: r.u16("index")?,
            },
            Kind::Play => Self::Play {
                position: get_position(&mut r)?,
                at: RoomMs(r.i64("at")?),
            },
            Kind::Pause => Self::Pause {
                position: get_position(&mut r)?,
                at: RoomMs(r.i64("at")?),
            },
            Kind::Seek => Self::Seek {
                position: get_position(&mut r)?,
                paused: r.bool("paused")?,
                at: RoomMs(r.i64("at")?),
            },
            Kind::Rate => Self::Rate {
                rate: RateMilli::new(r.u16("rate")?).map_err(DecodeError::from)?,
                position: get_position(&mut r)?,
                at: RoomMs(r.i64("at")?),
            },
            Kind::State => {
                let loaded = get_option(&mut r, "loaded", get_item)?;
                let queue = get_queue(&mut r)?;
                let timeline = get_timeline(&mut r)?;
                let policy = get_policy(&mut r)?;
                let n = r.count("roles", MAX_ROLE_GRANTS)?;
                let mut roles = Vec::with_capacity(n);
                for _ in 0..n {
                    roles.push(get_grant(&mut r)?);
                }
                Self::State(Box::new(RoomState {
                    loaded,
                    queue,
                    timeline,
                    policy,
                    roles,
                }))
            }
            Kind::Policy => Self::Policy(get_policy(&mut r)?),
            Kind::Role => Self::Role(get_grant(&mut r)?),
            Kind::Kick => Self::Kick {
                member: get_user(&mut r)?,
            },
            Kind::Handoff => Self::Handoff(Handoff {
                new_host: get_user(&mut r)?,
                new_key: PublicKey::from_bytes(r.array::<PUBLIC_KEY_LEN>("new key")?),
                new_epoch: Epoch(r.u64("new epoch")?),
            }),
            Kind::Bind => Self::Bind(DtlsBinding {
                peer: get_user(&mut r)?,
                host_fingerprint: get_fingerprint(&mut r)?,
                peer_fingerprint: get_fingerprint(&mut r)?,
            }),
            Kind::Refuse => Self::Refuse(Refusal {
                member: get_user(&mut r)?,
                request_seq: Seq::new(r.u64("request seq")?).map_err(DecodeError::from)?,
                reason: match r.u8("reason")? {
                    1 => RefuseReason::ViewerRole,
                    2 => RefuseReason::PolicyDenied,
                    3 => RefuseReason::InvalidState,
                    4 => RefuseReason::RateLimited,
                    5 => RefuseReason::Dismissed,
                    6 => RefuseReason::TooManyPending,
                    tag => Err(DecodeError::UnknownTag {
                        field: "reason",
                        tag,
                    })?,
                },
            }),
            Kind::Roster => {
                let n = r.count("roster", MAX_ADMITTED)?;
                let mut list = Vec::with_capacity(n);
                for _ in 0..n {
                    list.push(Admitted {
                        member: get_user(&mut r)?,
                        key: PublicKey::from_bytes(r.array::<PUBLIC_KEY_LEN>("member key")?),
                    });
                }
                Self::Roster(list)
            }
            Kind::ChatHistory => Self::ChatHistory(EarlierChat(
                r.bytes("earlier chat", MAX_EARLIER_FRAME_LEN)?.to_vec(),
            )),
            Kind::Knock => Self::Knock(r.array("knock mac")?),
            Kind::Reaction => Self::Reaction(
                Emoji::new(r.str("reaction", MAX_EMOJI_BYTES)?).map_err(DecodeError::from)?,
            ),
            Kind::Request => Self::Request(get_request(&mut r)?),
            Kind::Status => Self::Status(Status {
                readiness: match r.u8("readiness")? {
                    1 => Readiness::Loading,
                    2 => Readiness::Ready,
                    3 => Readiness::Buffering,
                    4 => Readiness::Ended,
                    5 => Readiness::Failed,
                    tag => Err(DecodeError::UnknownTag {
                        field: "readiness",
                        tag,
                    })?,
                },
                item: get_option(&mut r, "item", |r| Ok(ContentHash(r.array("item")?)))?,
                position: get_position(&mut r)?,
                at: RoomMs(r.i64("at")?),
                detached: r.bool("detached")?,
            }),
            Kind::Chat => Self::Chat(ChatText::new(r.str("chat", MAX_CHAT_BYTES)?)?),
            Kind::Announce => {
                let bytes = r.bytes("certificate", MAX_ANNOUNCED_CERT_LEN)?;
                Self::Announce(SignedCertificate::parse(bytes).map_err(MessageError::Certificate)?)
            }
            Kind::Latency => Self::Latency(Latency {
                round_trip: ReportedLatency::new(r.u32("round trip")?)
                    .map_err(DecodeError::from)?,
                startup: ReportedLatency::new(r.u32("startup")?).map_err(DecodeError::from)?,
            }),
            Kind::ClockPing => Self::ClockPing(ClockPing {
                id: r.u32("ping id")?,
                origin: LocalTime::from_micros(r.i64("origin")?),
            }),
            Kind::ClockPong => Self::ClockPong(ClockPong {
                id: r.u32("ping id")?,
                origin: LocalTime::from_micros(r.i64("origin")?),
                receive: RoomTime::from_micros(r.i64("receive")?),
                transmit: RoomTime::from_micros(r.i64("transmit")?),
            }),
        };
        r.finish()?;
        Ok(msg)
    }
}

/// Why a payload failed to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    /// Structurally malformed.
    #[error("malformed payload: {0}")]
    Malformed(#[from] DecodeError),
    /// Well-formed chat frame whose text breaks the chat rules.
    #[error("invalid chat text: {0}")]
    Chat(#[from] ChatError),
    /// An announced certificate is malformed.
    #[error("malformed certificate: {0}")]
    Certificate(crate::cert::CertError),
}

// ---------------------------------------------------------------- helpers --

fn put_item(w: &mut Writer, item: &MediaItem) -> Result<(), TooLongToEncode> {
    w.bytes("media id", item.media.as_str().as_bytes(), MAX_MEDIA_ID_LEN)?;
    w.put(&item.hash.0);
    w.u64(item.duration.as_millis());
    Ok(())
}

fn get_item(r: &mut Reader<'_>) -> Result<MediaItem, DecodeError> {
    Ok(MediaItem {
        media: MediaId::new(r.str("media id", MAX_MEDIA_ID_LEN)?)?,
        hash: ContentHash(r.array("content hash")?),
        duration: get_position(r)?,
    })
}

fn get_position(r: &mut Reader<'_>) -> Result<PositionMs, DecodeError> {
    Ok(PositionMs::new(r.u64("position")?)?)
}

fn get_user(r: &mut Reader<'_>) -> Result<UserId, DecodeError> {
    Ok(UserId::new(r.u64("user id")?)?)
}

fn put_option<T>(
    w: &mut Writer,
    v: Option<&T>,
    put: impl FnOnce(&mut Writer, &T) -> Result<(), TooLongToEncode>,
) -> Result<(), TooLongToEncode> {
    match v {
        None => {
            w.u8(0);
            Ok(())
        }
        Some(v) => {
            w.u8(1);
            put(w, v)
        }
    }
}

fn get_option<'a, T>(
    r: &mut Reader<'a>,
    field: &'static str,
    get: impl FnOnce(&mut Reader<'a>) -> Result<T, DecodeError>,
) -> Result<Option<T>, DecodeError> {
    if r.bool(field)? {
        get(r).map(Some)
    } else {
        Ok(None)
    }
}

fn put_queue(w: &mut Writer, q: &Queue) -> Result<(), TooLongToEncode> {
    w.count("queue", q.items.len(), MAX_QUEUE_ITEMS)?;
    for item in &q.items {
        put_item(w, item)?;
    }
    put_option(w, q.current.as_ref(), |w, c| {
        w.u16(*c);
        Ok(())
    })
}

fn get_queue(r: &mut Reader<'_>) -> Result<Queue, DecodeError> {
    let n = r.count("queue", MAX_QUEUE_ITEMS)?;
    let mut items = Vec::with_capacity(n);
    for _ in 0..n {
        items.push(get_item(r)?);
    }
    let current = get_option(r, "current", |r| r.u16("current"))?;
    Ok(Queue::new(items, current)?)
}

fn put_timeline(w: &mut Writer, t: &Timeline) {
    w.bool(t.paused);
    w.u64(t.position.as_millis());
    w.i64(t.at.0);
    w.u16(t.rate.get());
}

fn get_timeline(r: &mut Reader<'_>) -> Result<Timeline, DecodeError> {
    Ok(Timeline {
        paused: r.bool("paused")?,
        position: get_position(r)?,
        at: RoomMs(r.i64("at")?),
        rate: RateMilli::new(r.u16("rate")?)?,
    })
}

fn put_policy(w: &mut Writer, p: &Policy) {
    w.u8(match p.buffering {
        Buffering::WaitForEveryone => 1,
        Buffering::LaggardsCatchUp => 2,
    });
    w.u32(p.wait_timeout_ms);
    w.u8(p.controllers.bits());
}

fn get_policy(r: &mut Reader<'_>) -> Result<Policy, DecodeError> {
    let buffering = match r.u8("buffering")? {
        1 => Buffering::WaitForEveryone,
        2 => Buffering::LaggardsCatchUp,
        tag => {
            return Err(DecodeError::UnknownTag {
                field: "buffering",
                tag,
            });
        }
    };
    let wait_timeout_ms = r.u32("wait timeout")?;
    if wait_timeout_ms > MAX_WAIT_TIMEOUT_MS {
        return Err(InvalidValue {
            what: "policy",
            why: "wait timeout above 120 s",
        }
        .into());
    }
    Ok(Policy {
        buffering,
        wait_timeout_ms,
        controllers: Permissions::from_bits(r.u8("permissions")?)?,
    })
}

fn put_grant(w: &mut Writer, g: &RoleGrant) {
    w.u64(g.member.get());
    w.u8(g.role.to_byte());
}

fn get_grant(r: &mut Reader<'_>) -> Result<RoleGrant, DecodeError> {
    Ok(RoleGrant {
        member: get_user(r)?,
        role: Role::from_byte(r.u8("role")?)?,
    })
}

fn put_fingerprint(w: &mut Writer, f: &Fingerprint) {
    w.u8(f.tag());
    w.put(f.digest());
}

fn get_fingerprint(r: &mut Reader<'_>) -> Result<Fingerprint, DecodeError> {
    let tag = r.u8("fingerprint algorithm")?;
    let len = match tag {
        1 => 32,
        2 => 48,
        3 => 64,
        _ => {
            return Err(DecodeError::UnknownTag {
                field: "fingerprint algorithm",
                tag,
            });
        }
    };
    let digest = r.take(len, "fingerprint")?;
    Fingerprint::from_parts(tag, digest).ok_or(DecodeError::Truncated("fingerprint"))
}

fn put_request(w: &mut Writer, c: &RequestedCommand) -> Result<(), TooLongToEncode> {
    match c {
        RequestedCommand::Play => w.u8(1),
        RequestedCommand::Pause => w.u8(2),
        RequestedCommand::Seek { position } => {
            w.u8(3);
            w.u64(position.as_millis());
        }
        RequestedCommand::Rate { rate } => {
            w.u8(4);
            w.u16(rate.get());
        }
        RequestedCommand::Load(item) => {
            w.u8(5);
            put_item(w, item)?;
        }
        RequestedCommand::Next => w.u8(6),
        RequestedCommand::Previous => w.u8(7),
        RequestedCommand::Jump { index } => {
            w.u8(8);
            w.u16(*index);
        }
    }
    Ok(())
}

fn get_request(r: &mut Reader<'_>) -> Result<RequestedCommand, DecodeError> {
    Ok(match r.u8("command")? {
        1 => RequestedCommand::Play,
        2 => RequestedCommand::Pause,
        3 => RequestedCommand::Seek {
            position: get_position(r)?,
        },
        4 => RequestedCommand::Rate {
            rate: RateMilli::new(r.u16("rate")?)?,
        },
        5 => RequestedCommand::Load(get_item(r)?),
        6 => RequestedCommand::Next,
        7 => RequestedCommand::Previous,
        8 => RequestedCommand::Jump {
            index: r.u16("index")?,
        },
        tag => {
            return Err(DecodeError::UnknownTag {
                field: "command",
                tag,
            });
        }
    })
}

// ------------------------------------------------------------------ tests --

#[cfg(test)]
pub(crate) mod strategies {
    //! proptest generators for every payload.
    use super::*;
    use crate::ids::PositionMs;
    use proptest::prelude::*;

    pub(crate) fn user() -> impl Strategy<Value = UserId> {
        (0..=crate::ids::MAX_USER_ID).prop_map(|v| UserId::new(v).unwrap())
    }

    pub(crate) fn position() -> impl Strategy<Value = PositionMs> {
        prop_oneof![0..=10_000_000u64, 0..=PositionMs::MAX]
            .prop_map(|v| PositionMs::new(v).unwrap())
    }

    pub(crate) fn room_ms() -> impl Strategy<Value = RoomMs> {
        any::<i64>().prop_map(RoomMs)
    }

    pub(crate) fn rate() -> impl Strategy<Value = RateMilli> {
        (RateMilli::MIN..=RateMilli::MAX).prop_map(|v| RateMilli::new(v).unwrap())
    }

    pub(crate) fn item() -> impl Strategy<Value = MediaItem> {
        ("[A-Za-z0-9._:-]{1,64}", any::<[u8; 32]>(), position()).prop_map(|(m, h, d)| MediaItem {
            media: MediaId::new(&m).unwrap(),
            hash: ContentHash(h),
            duration: d,
        })
    }

    pub(crate) fn queue() -> impl Strategy<Value = Queue> {
        prop::collection::vec(item(), 0..=6).prop_flat_map(|items| {
            let n = items.len();
            let cur = if n == 0 {
                Just(None).boxed()
            } else {
                prop::option::of(0..u16::try_from(n).unwrap()).boxed()
            };
            cur.prop_map(move |c| Queue::new(items.clone(), c).unwrap())
        })
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Host), Just(Role::Controller), Just(Role::Viewer)]
    }

    fn policy() -> impl Strategy<Value = Policy> {
        (any::<bool>(), 0..=MAX_WAIT_TIMEOUT_MS, 0u8..=0x0f).prop_map(|(w, t, p)| Policy {
            buffering: if w {
                Buffering::WaitForEveryone
            } else {
                Buffering::LaggardsCatchUp
            },
            wait_timeout_ms: t,
            controllers: Permissions::from_bits(p).unwrap(),
        })
    }

    fn fingerprint() -> impl Strategy<Value = Fingerprint> {
        prop_oneof![
            any::<[u8; 32]>().prop_map(Fingerprint::Sha256),
            prop::collection::vec(any::<u8>(), 48)
                .prop_map(|v| Fingerprint::Sha384(v.try_into().unwrap())),
            prop::collection::vec(any::<u8>(), 64)
                .prop_map(|v| Fingerprint::Sha512(v.try_into().unwrap())),
        ]
    }

    fn request() -> impl Strategy<Value = RequestedCommand> {
        prop_oneof![
            Just(RequestedCommand::Play),
            Just(RequestedCommand::Pause),
            position().prop_map(|position| RequestedCommand::Seek { position }),
            rate().prop_map(|rate| RequestedCommand::Rate { rate }),
            item().prop_map(RequestedCommand::Load),
            Just(RequestedCommand::Next),
            Just(RequestedCommand::Previous),
            any::<u16>().prop_map(|index| RequestedCommand::Jump { index }),
        ]
    }

    pub(crate) fn chat() -> impl Strategy<Value = ChatText> {
        "[a-zA-Zé漢😀 \n\t!?<>&]{0,40}[a-z漢😀]".prop_map(|s| ChatText::new(&s).unwrap())
    }

    pub(crate) fn message() -> impl Strategy<Value = Message> {
        let control = prop_oneof![
            item().prop_map(Message::Load),
            queue().prop_map(Message::Queue),
            Just(Message::Next),
            Just(Message::Previous),
            any::<u16>().prop_map(|index| Message::Jump { index }),
            (position(), room_ms()).prop_map(|(position, at)| Message::Play { position, at }),
            (position(), room_ms()).prop_map(|(position, at)| Message::Pause { position, at }),
            (position(), any::<bool>(), room_ms()).prop_map(|(position, paused, at)| {
                Message::Seek {
                    position,
                    paused,
                    at,
                }
            }),
            (rate(), position(), room_ms()).prop_map(|(rate, position, at)| Message::Rate {
                rate,
                position,
                at
            }),
            (
                prop::option::of(item()),
                queue(),
                (any::<bool>(), position(), room_ms(), rate()),
                policy(),
                prop::collection::vec((user(), role()), 0..=MAX_ROLE_GRANTS),
            )
                .prop_map(
                    |(loaded, queue, (paused, position, at, rate), policy, roles)| {
                        Message::State(Box::new(RoomState {
                            loaded,
                            queue,
                            timeline: Timeline {
                                paused,
                                position,
                                at,
                                rate,
                            },
                            policy,
                            roles: roles
                                .into_iter()
                                .map(|(member, role)| RoleGrant { member, role })
                                .collect(),
                        }))
                    }
                ),
            policy().prop_map(Message::Policy),
            (user(), role()).prop_map(|(member, role)| Message::Role(RoleGrant { member, role })),
            user().prop_map(|member| Message::Kick { member }),
            (user(), any::<[u8; 32]>(), any::<u64>()).prop_map(|(u, k, e)| {
                Message::Handoff(Handoff {
                    new_host: u,
                    new_key: PublicKey::from_bytes(k),
                    new_epoch: Epoch(e),
                })
            }),
            (user(), fingerprint(), fingerprint()).prop_map(|(peer, h, p)| {
                Message::Bind(DtlsBinding {
                    peer,
                    host_fingerprint: h,
                    peer_fingerprint: p,
                })
            }),
            prop::collection::vec((user(), any::<[u8; 32]>()), 0..=MAX_ADMITTED).prop_map(|v| {
                Message::Roster(
                    v.into_iter()
                        .map(|(member, k)| Admitted {
                            member,
                            key: PublicKey::from_bytes(k),
                        })
                        .collect(),
                )
            }),
            prop::collection::vec(any::<u8>(), 0..=MAX_EARLIER_FRAME_LEN)
                .prop_map(|v| Message::ChatHistory(EarlierChat::new(v).unwrap())),
            (user(), 0..Seq::LIMIT, 1u8..=6).prop_map(|(member, s, reason)| {
                Message::Refuse(Refusal {
                    member,
                    request_seq: Seq::new(s).unwrap(),
                    reason: match reason {
                        1 => RefuseReason::ViewerRole,
                        2 => RefuseReason::PolicyDenied,
                        3 => RefuseReason::InvalidState,
                        4 => RefuseReason::RateLimited,
                        5 => RefuseReason::Dismissed,
                        _ => RefuseReason::TooManyPending,
                    },
                })
            }),
        ];
        let member = prop_oneof![
            any::<[u8; 32]>().prop_map(Message::Knock),
            (0..=MAX_REPORTED_LATENCY_US, 0..=MAX_REPORTED_LATENCY_US).prop_map(|(r, s)| {
                Message::Latency(Latency {
                    round_trip: ReportedLatency::new(r).unwrap(),
                    startup: ReportedLatency::new(s).unwrap(),
                })
            }),
            "[😀🎉👍❤️🔥]{1,4}".prop_map(|s| Message::Reaction(Emoji::new(&s).unwrap())),
            request().prop_map(Message::Request),
            (
                1u8..=5,
                prop::option::of(any::<[u8; 32]>()),
                position(),
                room_ms(),
                any::<bool>()
            )
                .prop_map(|(r, item, position, at, detached)| {
                    Message::Status(Status {
                        readiness: match r {
                            1 => Readiness::Loading,
                            2 => Readiness::Ready,
                            3 => Readiness::Buffering,
                            4 => Readiness::Ended,
                            _ => Readiness::Failed,
                        },
                        item: item.map(ContentHash),
                        position,
                        at,
                        detached,
                    })
                }),
            chat().prop_map(Message::Chat),
            crate::cert::strategies::signed_cert().prop_map(Message::Announce),
            (any::<u32>(), any::<i64>()).prop_map(|(id, o)| Message::ClockPing(ClockPing {
                id,
                origin: LocalTime::from_micros(o)
            })),
            (any::<u32>(), any::<i64>(), any::<i64>(), any::<i64>()).prop_map(|(id, o, rx, tx)| {
                Message::ClockPong(ClockPong {
                    id,
                    origin: LocalTime::from_micros(o),
                    receive: RoomTime::from_micros(rx),
                    transmit: RoomTime::from_micros(tx),
                })
            }),
        ];
        prop_oneof![control, member]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encode(m: &Message) -> Vec<u8> {
        let mut w = Writer::default();
        m.encode(&mut w).unwrap();
        w.buf
    }

    proptest! {
        #[test]
        fn payload_round_trip(m in strategies::message()) {
            let bytes = encode(&m);
            prop_assert_eq!(Message::decode(m.kind(), &bytes), Ok(m.clone()));
            // One more byte is always refused.
            let mut longer = bytes.clone();
            longer.push(0);
            prop_assert!(Message::decode(m.kind(), &longer).is_err());
            // Any strict prefix is refused.
            if !bytes.is_empty() {
                prop_assert!(Message::decode(m.kind(), &bytes[..bytes.len() - 1]).is_err());
            }
        }

        #[test]
        fn arbitrary_payloads_never_panic(kind in 0u8..=0x40, bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            if let Some(kind) = Kind::from_byte(kind) {
                let _ = Message::decode(kind, &bytes);
            }
        }
    }

    #[test]
    fn kind_bytes_are_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert!(seen.insert(k.to_byte()));
            assert_eq!(Kind::from_byte(k.to_byte()), Some(*k));
        }
        assert_eq!(Kind::from_byte(0), None);
        assert_eq!(Kind::from_byte(0x13), None);
        assert_eq!(Kind::from_byte(0x27), None);
        assert_eq!(Kind::ChatHistory.signer(), SignerClass::Host);
        assert_eq!(Kind::Latency.signer(), SignerClass::Member);
        assert_eq!(Kind::Latency.channel(), channels::CONTROL);
        assert_eq!(Kind::ChatHistory.channel(), channels::CONTROL);
        assert_eq!(Kind::Play.signer(), SignerClass::Host);
        assert_eq!(Kind::Chat.signer(), SignerClass::Member);
        assert_eq!(Kind::ClockPong.signer(), SignerClass::Host);
        assert_eq!(Kind::ClockPing.channel(), channels::CLOCK);
        assert_eq!(Kind::Chat.channel(), channels::CHAT);
    }

    #[test]
    fn a_latency_report_is_two_u32_of_at_most_ten_seconds() {
        let m = Message::Latency(Latency {
            round_trip: ReportedLatency::new(MAX_REPORTED_LATENCY_US).unwrap(),
            startup: ReportedLatency::new(1_500).unwrap(),
        });
        let bytes = encode(&m);
        assert_eq!(bytes, [0, 0x98, 0x96, 0x80, 0, 0, 0x05, 0xdc]);
        assert_eq!(Message::decode(Kind::Latency, &bytes), Ok(m));
        // One µs over the cap, in either field, is malformed.
        for over in [
            [0, 0x98, 0x96, 0x81, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0x98, 0x96, 0x81],
        ] {
            assert!(matches!(
                Message::decode(Kind::Latency, &over),
                Err(MessageError::Malformed(DecodeError::Invalid(_)))
            ));
        }
        // Short and long payloads too.
        assert!(Message::decode(Kind::Latency, &bytes[..7]).is_err());
        assert!(Message::decode(Kind::Latency, &[bytes.as_slice(), &[0]].concat()).is_err());
        assert_eq!(
            ReportedLatency::saturating_from(TimeDelta::from_secs(11)).as_micros(),
            MAX_REPORTED_LATENCY_US
        );
        assert_eq!(
            ReportedLatency::saturating_from(TimeDelta::from_micros(-5)).as_micros(),
            0
        );
    }

    #[test]
    fn a_chat_history_carries_the_largest_chat_frame_and_no_more() {
        let key = crate::crypto::SigningKey::from_seed(&[3; 32]).unwrap();
        let header = crate::frame::Header {
            room: crate::ids::RoomId::from_bytes([1; 16]),
            epoch: Epoch(1),
            seq: Seq::new(0).unwrap(),
            issued_at: RoomMs(0),
        };
        let longest = Message::Chat(ChatText::new(&"😀".repeat(MAX_CHAT_CHARS)).unwrap());
        let frame = crate::frame::encode(&key, &header, &longest).unwrap();
        assert_eq!(frame.len(), MAX_EARLIER_FRAME_LEN);
        let m = Message::ChatHistory(EarlierChat::new(frame.clone()).unwrap());
        assert_eq!(Message::decode(Kind::ChatHistory, &encode(&m)), Ok(m));
        let mut longer = frame;
        longer.push(0);
        assert!(EarlierChat::new(longer.clone()).is_err());
        let mut w = Writer::default();
        w.u16(u16::try_from(longer.len()).unwrap());
        w.put(&longer);
        assert!(Message::decode(Kind::ChatHistory, &w.buf).is_err());
        // Chat text stays out of logs.
        let shown = format!("{:?}", EarlierChat::new(b"secret".to_vec()).unwrap());
        assert!(!shown.contains("secret"), "{shown}");
    }

    #[test]
    fn chat_rules() {
        assert!(ChatText::new("hello\n\tworld").is_ok());
        assert!(ChatText::new(&"漢".repeat(500)).is_ok());
        assert_eq!(ChatText::new(&"a".repeat(501)), Err(ChatError::TooLong));
        assert_eq!(ChatText::new(""), Err(ChatError::Empty));
        assert_eq!(ChatText::new(" \n\t"), Err(ChatError::Empty));
        for bad in [
            "a\rb",
            "a\0",
            "a\u{1b}[31m",
            "a\u{7f}",
            "a\u{85}",
            "x\u{202E}y",
            "x\u{2066}",
        ] {
            assert_eq!(
                ChatText::new(bad),
                Err(ChatError::ControlCharacter),
                "{bad:?}"
            );
        }
        // Markup is just text.
        assert!(ChatText::new("<script>alert(1)</script>").is_ok());
        // Debug never shows the content.
        assert!(!format!("{:?}", ChatText::new("secret").unwrap()).contains("secret"));
        // A well-formed chat frame with bad text is a chat error, not malformed.
        let mut w = Writer::default();
        w.bytes("chat", b"bad\x07", MAX_CHAT_BYTES).unwrap();
        assert_eq!(
            Message::decode(Kind::Chat, &w.buf),
            Err(MessageError::Chat(ChatError::ControlCharacter))
        );
        let mut w = Writer::default();
        w.bytes("chat", "a".repeat(501).as_bytes(), MAX_CHAT_BYTES)
            .unwrap();
        assert_eq!(
            Message::decode(Kind::Chat, &w.buf),
            Err(MessageError::Chat(ChatError::TooLong))
        );
        let mut w = Writer::default();
        w.u16(u16::try_from(MAX_CHAT_BYTES + 1).unwrap());
        w.put(&vec![b'a'; MAX_CHAT_BYTES + 1]);
        assert!(matches!(
            Message::decode(Kind::Chat, &w.buf),
            Err(MessageError::Malformed(DecodeError::TooLong { .. }))
        ));
    }

    #[test]
    fn emoji_rules() {
        assert!(Emoji::new("🎉").is_ok());
        assert!(Emoji::new("❤️").is_ok());
        assert!(Emoji::new("").is_err());
        assert!(Emoji::new("lol").is_err());
        assert!(Emoji::new("🎉 ").is_err());
        assert!(Emoji::new(&"🎉".repeat(9)).is_err());
    }

    #[test]
    fn queue_limits() {
        let item = MediaItem {
            media: MediaId::new("m").unwrap(),
            hash: ContentHash([0; 32]),
            duration: PositionMs::ZERO,
        };
        assert!(Queue::new(vec![item.clone(); MAX_QUEUE_ITEMS], Some(99)).is_ok());
        assert!(Queue::new(vec![item.clone(); MAX_QUEUE_ITEMS + 1], None).is_err());
        assert!(Queue::new(vec![item.clone(); 2], Some(2)).is_err());
        assert!(Queue::new(vec![], Some(0)).is_err());
        // A decoded queue with 101 items is refused before reading them.
        let mut w = Writer::default();
        w.u16(101);
        assert!(matches!(
            Message::decode(Kind::Queue, &w.buf),
            Err(MessageError::Malformed(DecodeError::TooLong {
                len: 101,
                ..
            }))
        ));
    }

    #[test]
    fn fingerprint_text() {
        let fp: Fingerprint = "sha-256 AB:cd:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD"
            .parse()
            .unwrap();
        assert_eq!(fp.digest()[..2], [0xab, 0xcd]);
        assert!(fp.to_string().starts_with("sha-256 AB:CD:00"));
        assert_eq!(fp.to_string().parse::<Fingerprint>(), Ok(fp));
        assert!("sha-256 AB:CD".parse::<Fingerprint>().is_err());
        assert!("md5 AB:CD".parse::<Fingerprint>().is_err());
        assert!("sha-256".parse::<Fingerprint>().is_err());
        assert!("sha-256 ABC:D".parse::<Fingerprint>().is_err());
        assert_eq!(Fingerprint::new("SHA-256", fp.digest()), Ok(fp));
        assert!(Fingerprint::new("sha-1", &[0; 20]).is_err());
        assert!(Fingerprint::new("sha-384", &[0; 32]).is_err());
    }

    #[test]
    fn strict_tags() {
        // Policy with an unknown permission bit, a bad buffering tag, a too
        // long timeout.
        for payload in [
            [1u8, 0, 0, 0, 0, 0x10],
            [3, 0, 0, 0, 0, 0],
            [1, 0, 1, 0xd4, 0xc1, 0],
        ] {
            assert!(
                Message::decode(Kind::Policy, &payload).is_err(),
                "{payload:?}"
            );
        }
        assert!(Message::decode(Kind::Policy, &[1, 0, 1, 0xd4, 0xc0, 0x0f]).is_ok());
        // Seek with paused = 2.
        let mut w = Writer::default();
        w.u64(0);
        w.u8(2);
        w.i64(0);
        assert!(Message::decode(Kind::Seek, &w.buf).is_err());
        // Rate out of range.
        let mut w = Writer::default();
        w.u16(16_001);
        w.u64(0);
        w.i64(0);
        assert!(Message::decode(Kind::Rate, &w.buf).is_err());
    }
}
