//! JSON messages on the signaling WebSocket, one enum per direction.
//!
//! Both are internally tagged by `"type"` (snake_case), with unknown fields
//! refused. The first client message must be `auth`; exactly
//! `{"type":"auth","token":"…"}` is accepted (the optional `protocol` defaults
//! to [`PROTOCOL_VERSION`] and `key` is the member's session key for its
//! certificate). The server answers `hello` with its own protocol version.
//!
//! Every string and list has a named maximum, checked while parsing: the
//! types below can only hold valid values. Whole messages are limited to
//! [`MAX_SIGNAL_MESSAGE_LEN`] bytes before any parsing. Relayed messages
//! (`offer`, `answer`, `ice`) carry `to` from the client; the server replaces
//! it with `from` (the authenticated sender), so a client cannot forge a
//! sender. See `docs/protocol.md` §7.

use core::fmt;
use core::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::cert::SignedCertificate;
use crate::crypto::PublicKey;
use crate::ids::{Epoch, InvalidValue, Role, RoomId, UserId};

/// Signaling protocol version spoken by this crate.
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest auth token (a JWT or one-time ticket), in bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Longest SDP, in bytes.
pub const MAX_SDP_LEN: usize = 32 * 1024;
/// Longest ICE candidate line, in bytes.
pub const MAX_CANDIDATE_LEN: usize = 1024;
/// Longest `sdpMid`, in bytes.
pub const MAX_SDP_MID_LEN: usize = 64;
/// Most members in a roster (the room size cap).
pub const MAX_ROSTER: usize = 16;
/// Most ICE servers in `hello`.
pub const MAX_ICE_SERVERS: usize = 8;
/// Most URLs per ICE server.
pub const MAX_ICE_URLS: usize = 4;
/// Longest ICE server URL, username or credential, in bytes.
pub const MAX_ICE_FIELD_LEN: usize = 256;
/// Longest error message, in bytes.
pub const MAX_ERROR_MESSAGE_LEN: usize = 256;
/// Longest JSON text of one signaling message, in bytes: room for a maximal
/// SDP with every byte escaped to two characters, plus the envelope. The
/// server's WebSocket message limit should be at least this.
pub const MAX_SIGNAL_MESSAGE_LEN: usize = 2 * MAX_SDP_LEN + 4096;

// ---------------------------------------------------------- bounded types --

macro_rules! bounded_string {
    ($(#[$doc:meta])* $name:ident, $what:literal, min $min:expr, max $max:expr, check $check:expr, debug $debug:expr) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Parses the value.
            ///
            /// # Errors
            /// [`InvalidValue`] if its length or characters are refused.
            pub fn new(s: impl Into<String>) -> Result<Self, InvalidValue> {
                let s: String = s.into();
                if !($min..=$max).contains(&s.len()) {
                    return Err(InvalidValue { what: $what, why: concat!("length outside ", stringify!($min), "..=", stringify!($max), " bytes") });
                }
                let check: fn(&str) -> Result<(), &'static str> = $check;
                check(&s).map_err(|why| InvalidValue { what: $what, why })?;
                Ok(Self(s))
            }

            /// The value.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<Self, InvalidValue> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let debug: fn(&str, &mut fmt::Formatter<'_>) -> fmt::Result = $debug;
                write!(f, "{}(", stringify!($name))?;
                debug(&self.0, f)?;
                f.write_str(")")
            }
        }
    };
}

fn no_controls(s: &str) -> Result<(), &'static str> {
    if s.chars().any(char::is_control) {
        Err("control character")
    } else {
        Ok(())
    }
}

fn printable_ascii(s: &str) -> Result<(), &'static str> {
    if s.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
        Ok(())
    } else {
        Err("not printable ASCII")
    }
}

fn show(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "{s:?}")
}

fn redacted(s: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    write!(f, "<{} bytes redacted>", s.len())
}

bounded_string!(
    /// An auth token: 1 to [`MAX_TOKEN_LEN`] bytes of printable ASCII.
    /// `Debug` never shows it.
    Token, "token", min 1, max MAX_TOKEN_LEN, check printable_ascii, debug redacted
);

bounded_string!(
    /// An SDP offer or answer: 1 to [`MAX_SDP_LEN`] bytes; no control
    /// characters except CR, LF and tab. `Debug` shows only its length (SDP
    /// carries addresses).
    Sdp, "sdp", min 1, max MAX_SDP_LEN, check sdp_text, debug redacted
);

/// Refuses control characters (`char::is_control`: U+0000–U+001F and
/// U+007F–U+009F) other than CR, LF and tab. It runs on every offer and
/// answer the server relays, where the plain `chars()` scan cost about 14
/// instructions per byte (a tenth of the relay's work, callgrind), so a
/// branch-free byte pass that the compiler vectorises goes first: in UTF-8
/// every such control is a C0 byte, DEL, or a C1 character led by `0xC2`.
/// Only text with one of those bytes gets the exact `chars()` check.
fn sdp_text(s: &str) -> Result<(), &'static str> {
    let suspect = s.as_bytes().iter().fold(false, |acc, &c| {
        acc | ((c < 0x20) & (c != b'\r') & (c != b'\n') & (c != b'\t')) | (c == 0x7f) | (c == 0xc2)
    });
    if suspect
        && s.chars()
            .any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'))
    {
        Err("control character")
    } else {
        Ok(())
    }
}

bounded_string!(
    /// An ICE candidate line (`candidate:…`), 0 to [`MAX_CANDIDATE_LEN`]
    /// bytes, no control characters. Empty means end of candidates.
    Candidate, "ice candidate", min 0, max MAX_CANDIDATE_LEN, check no_controls, debug redacted
);

bounded_string!(
    /// A media section id (`sdpMid`), 0 to [`MAX_SDP_MID_LEN`] bytes, no
    /// control characters.
    SdpMid, "sdpMid", min 0, max MAX_SDP_MID_LEN, check no_controls, debug show
);

bounded_string!(
    /// A STUN/TURN URL: `stun:`, `stuns:`, `turn:` or `turns:`, at most
    /// [`MAX_ICE_FIELD_LEN`] bytes of printable ASCII.
    IceUrl, "ice server url", min 1, max MAX_ICE_FIELD_LEN,
    check |s| {
        printable_ascii(s)?;
        if ["stun:", "stuns:", "turn:", "turns:"].iter().any(|p| s.starts_with(p)) {
            Ok(())
        } else {
            Err("scheme must be stun:, stuns:, turn: or turns:")
        }
    },
    debug show
);

bounded_string!(
    /// A TURN username, at most [`MAX_ICE_FIELD_LEN`] bytes, no control
    /// characters.
    IceUsername, "ice username", min 0, max MAX_ICE_FIELD_LEN, check no_controls, debug show
);

bounded_string!(
    /// A TURN credential, at most [`MAX_ICE_FIELD_LEN`] bytes, no control
    /// characters. `Debug` never shows it.
    IceCredential, "ice credential", min 0, max MAX_ICE_FIELD_LEN, check no_controls, debug redacted
);

bounded_string!(
    /// A human-readable error message, at most [`MAX_ERROR_MESSAGE_LEN`]
    /// bytes, no control characters.
    ErrorMessage, "error message", min 0, max MAX_ERROR_MESSAGE_LEN, check no_controls, debug show
);

/// A list of at most `MAX` items, checked while parsing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<T>", into = "Vec<T>")]
#[serde(bound(
    serialize = "T: Serialize + Clone",
    deserialize = "T: Deserialize<'de>"
))]
pub struct BoundedVec<T, const MAX: usize>(Vec<T>);

impl<T, const MAX: usize> BoundedVec<T, MAX> {
    /// Wraps a list.
    ///
    /// # Errors
    /// [`InvalidValue`] with more than `MAX` items.
    pub fn new(items: Vec<T>) -> Result<Self, InvalidValue> {
        if items.len() > MAX {
            Err(InvalidValue {
                what: "list",
                why: "too many items",
            })
        } else {
            Ok(Self(items))
        }
    }

    /// An empty list.
    #[must_use]
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// The items.
    #[must_use]
    pub fn as_slice(&self) -> &[T] {
        &self.0
    }

    /// Takes the items.
    #[must_use]
    pub fn into_vec(self) -> Vec<T> {
        self.0
    }
}

impl<T, const MAX: usize> TryFrom<Vec<T>> for BoundedVec<T, MAX> {
    type Error = InvalidValue;
    fn try_from(v: Vec<T>) -> Result<Self, InvalidValue> {
        Self::new(v)
    }
}

impl<T, const MAX: usize> From<BoundedVec<T, MAX>> for Vec<T> {
    fn from(v: BoundedVec<T, MAX>) -> Vec<T> {
        v.0
    }
}

// ----------------------------------------------------------- value types --

/// An ICE candidate as in `RTCIceCandidateInit` (JSON field names
/// `candidate`, `sdpMid`, `sdpMLineIndex`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IceCandidate {
    /// The candidate line; empty for end-of-candidates.
    pub candidate: Candidate,
    /// The media section id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<SdpMid>,
    /// The media section index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sdp_m_line_index: Option<u16>,
}

/// A STUN/TURN server as in `RTCIceServer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// Its URLs (1 to [`MAX_ICE_URLS`]).
    pub urls: BoundedVec<IceUrl, MAX_ICE_URLS>,
    /// TURN username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<IceUsername>,
    /// TURN credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<IceCredential>,
}

/// A room member in a roster: the server-signed certificate (which holds the
/// user id, name, role and key) and whether the member is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RosterEntry {
    /// The member's certificate (base64url); verify before trusting.
    pub certificate: SignedCertificate,
    /// Whether the member has a live signaling connection.
    pub online: bool,
}

/// Who sends the WebRTC offer between two members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OffererRule {
    /// The member who connects later offers to each member already online
    /// (so two members never offer to each other at once).
    Joiner,
}

/// Machine-readable error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// Missing, invalid or expired token; or the first message was not `auth`.
    Unauthorized,
    /// Authenticated but not allowed (e.g. a viewer sending `kick`).
    Forbidden,
    /// Malformed or over-limit message.
    BadRequest,
    /// The client's protocol version is not spoken by the server.
    UnsupportedProtocol,
    /// Unknown room or target member.
    NotFound,
    /// The room is full.
    RoomFull,
    /// Too many messages.
    RateLimited,
    /// Server fault.
    Internal,
    /// A code this version does not know (forward compatibility).
    #[serde(other)]
    Other,
}

/// Why a room ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The host closed the room.
    Closed,
    /// The room expired.
    Expired,
    /// You were removed from the room.
    Kicked,
    /// Another reason (forward compatibility).
    #[serde(other)]
    Other,
}

// --------------------------------------------------------------- messages --

/// Client → server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientMessage {
    /// Must be the first message.
    Auth {
        /// A WebSocket ticket or access token.
        token: Token,
        /// Protocol version; absent means 1.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        protocol: Option<u32>,
        /// The member's session public key, to be certified.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<PublicKey>,
    },
    /// An SDP offer for member `to`.
    Offer {
        /// Recipient.
        to: UserId,
        /// The offer.
        sdp: Sdp,
    },
    /// An SDP answer for member `to`.
    Answer {
        /// Recipient.
        to: UserId,
        /// The answer.
        sdp: Sdp,
    },
    /// A trickled ICE candidate for member `to`.
    Ice {
        /// Recipient.
        to: UserId,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// The host registers a (new) room key; the server opens a new epoch and
    /// answers with `host_changed`.
    RegisterHostKey {
        /// The room key.
        key: PublicKey,
    },
    /// The host persists a role change (peers obey the host-signed `Role`
    /// frame, not this).
    SetRole {
        /// The member.
        user: UserId,
        /// The new role (`controller` or `viewer`).
        role: Role,
    },
    /// The host removes a member from the room.
    Kick {
        /// The member.
        user: UserId,
    },
    /// The host hands the room to another member.
    Handoff {
        /// The new host.
        to: UserId,
    },
    /// Leaving the room.
    Leave,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ServerMessage {
    /// The answer to `auth`.
    Hello {
        /// The server's protocol version.
        protocol: u32,
        /// The room.
        room: RoomId,
        /// The authenticated user.
        you: UserId,
        /// The current host epoch.
        epoch: Epoch,
        /// The server's certificate-signing key; clients compare it with the
        /// key they know and refuse a mismatch.
        server_key: PublicKey,
        /// The client's own certificate.
        certificate: SignedCertificate,
        /// Every member, including the client itself.
        members: BoundedVec<RosterEntry, MAX_ROSTER>,
        /// STUN/TURN servers.
        ice_servers: BoundedVec<IceServer, MAX_ICE_SERVERS>,
        /// Who offers.
        offerer: OffererRule,
    },
    /// A member came online or joined.
    MemberJoined {
        /// The member.
        member: RosterEntry,
    },
    /// A member went offline or left.
    MemberLeft {
        /// The member.
        user: UserId,
    },
    /// An SDP offer from member `from` (stamped by the server).
    Offer {
        /// Sender.
        from: UserId,
        /// The offer.
        sdp: Sdp,
    },
    /// An SDP answer from member `from`.
    Answer {
        /// Sender.
        from: UserId,
        /// The answer.
        sdp: Sdp,
    },
    /// An ICE candidate from member `from`.
    Ice {
        /// Sender.
        from: UserId,
        /// The candidate.
        candidate: IceCandidate,
    },
    /// A new host certificate (room creation, key registration, handoff):
    /// a new epoch begins.
    HostChanged {
        /// The host's certificate for the new epoch.
        certificate: SignedCertificate,
    },
    /// A member's role changed; the re-issued certificate.
    RoleChanged {
        /// The new certificate.
        certificate: SignedCertificate,
    },
    /// A member was removed.
    Kicked {
        /// The member.
        user: UserId,
    },
    /// A request failed.
    Error {
        /// Machine-readable code.
        code: ErrorCode,
        /// Human-readable text (never contains secrets).
        message: ErrorMessage,
    },
    /// The room is over; the server closes the connection.
    RoomEnded {
        /// Why.
        reason: EndReason,
    },
}

// ----------------------------------------------------------------- codec --

/// Why a signaling message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignalError {
    /// Longer than [`MAX_SIGNAL_MESSAGE_LEN`].
    #[error("signaling message of {0} bytes exceeds {MAX_SIGNAL_MESSAGE_LEN}")]
    TooLarge(usize),
    /// Not valid JSON, not a known message, or a field out of bounds. The
    /// detail never quotes input values (they may be secrets).
    #[error("invalid signaling message at {line}:{column}: {detail}")]
    Invalid {
        /// Line of the error.
        line: usize,
        /// Column of the error.
        column: usize,
        /// What was wrong.
        detail: String,
    },
    /// Serialization failed (not expected for these types).
    #[error("could not serialize a signaling message")]
    Serialize,
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, SignalError> {
    if text.len() > MAX_SIGNAL_MESSAGE_LEN {
        return Err(SignalError::TooLarge(text.len()));
    }
    serde_json::from_str(text).map_err(|e| {
        let msg = e.to_string();
        let base = msg.find(" at line ").map_or(msg.as_str(), |i| &msg[..i]);
        SignalError::Invalid {
            line: e.line(),
            column: e.column(),
            detail: redact_values(base),
        }
    })
}

/// serde quotes offending input values in its messages (`invalid type:
/// string "…"`, ``invalid value: integer `5` ``). Such values may be secrets
/// (a token in the wrong field), so they are replaced with `…`. Field and
/// variant names in `unknown field` / `unknown variant` / `missing field`
/// messages are kept: they help debugging and are not values.
fn redact_values(msg: &str) -> String {
    const KEEP: [&str; 4] = [
        "unknown field",
        "unknown variant",
        "missing field",
        "duplicate field",
    ];
    if KEEP.iter().any(|k| msg.starts_with(k)) {
        return msg.to_owned();
    }
    let mut out = String::with_capacity(msg.len().min(256));
    let mut open: Option<char> = None;
    for c in msg.chars() {
        match open {
            Some(q) if c == q => {
                out.push('…');
                out.push(c);
                open = None;
            }
            Some(_) => {}
            None if c == '"' || c == '`' => {
                out.push(c);
                open = Some(c);
            }
            None => out.push(c),
        }
    }
    if open.is_some() {
        out.push('…');
    }
    out
}

impl ClientMessage {
    /// Parses one client message (the server side).
    ///
    /// # Errors
    /// [`SignalError`].
    pub fn from_json(text: &str) -> Result<Self, SignalError> {
        from_json(text)
    }

    /// Serializes.
    ///
    /// # Errors
    /// [`SignalError::Serialize`] (not expected).
    pub fn to_json(&self) -> Result<String, SignalError> {
        serde_json::to_string(self).map_err(|_| SignalError::Serialize)
    }

    /// The protocol version an `auth` asks for (absent means 1).
    #[must_use]
    pub fn protocol(&self) -> Option<u32> {
        match self {
            Self::Auth { protocol, .. } => Some(protocol.unwrap_or(1)),
            _ => None,
        }
    }
}

impl ServerMessage {
    /// Parses one server message (the client side).
    ///
    /// # Errors
    /// [`SignalError`].
    pub fn from_json(text: &str) -> Result<Self, SignalError> {
        from_json(text)
    }

    /// Serializes.
    ///
    /// # Errors
    /// [`SignalError::Serialize`] (not expected).
    pub fn to_json(&self) -> Result<String, SignalError> {
        serde_json::to_string(self).map_err(|_| SignalError::Serialize)
    }
}

// ------------------------------------------------------ relay fast path --

/// Which relayed message a [`ClientRelay`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RelayKind {
    /// `offer`.
    Offer,
    /// `answer`.
    Answer,
    /// `ice`.
    Ice,
}

impl RelayKind {
    /// The message's `type`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Offer => "offer",
            Self::Answer => "answer",
            Self::Ice => "ice",
        }
    }
}

/// The fields of a relayed client message as the fast path reads them: the
/// SDP or candidate stays raw JSON until it is checked.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RelayEnvelope<'a> {
    #[serde(rename = "type")]
    kind: RelayKind,
    to: UserId,
    #[serde(borrow, default)]
    sdp: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    candidate: Option<IceCandidate>,
}

/// An SDP still in its JSON form: a JSON string literal (quotes included)
/// whose decoded text is a valid [`Sdp`]. Relaying it as is spares the
/// server decoding and re-escaping about a kilobyte per offer or answer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SdpJson<'a>(&'a str);

impl fmt::Debug for SdpJson<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SdpJson(<{} bytes redacted>)", self.0.len())
    }
}

impl<'a> SdpJson<'a> {
    /// Reads `raw`, which serde_json has already checked to be one valid
    /// JSON value. `None` unless it is a string whose decoded text is 1 to
    /// [`MAX_SDP_LEN`] bytes with no escape other than `\" \\ \/ \n \r \t`
    /// and no DEL or `0xC2` byte (the lead byte of every C1 control). Text
    /// outside that form may still be a valid [`Sdp`]; the full parser
    /// decides it. Inside it, no control other than CR, LF and tab can
    /// appear: JSON strings hold no raw C0 byte, and `\b`, `\f` and `\u`
    /// escapes are not taken.
    fn parse(raw: &'a str) -> Option<Self> {
        let body = raw.strip_prefix('"')?.strip_suffix('"')?;
        let bytes = body.as_bytes();
        let mut decoded = 0usize;
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'\\' => match bytes.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'n' | b'r' | b't' => i += 2,
                    _ => return None,
                },
                0x7f | 0xc2 => return None,
                _ => i += 1,
            }
            decoded += 1;
        }
        (1..=MAX_SDP_LEN).contains(&decoded).then_some(Self(raw))
    }

    /// The JSON string literal, quotes included.
    #[must_use]
    pub fn as_json(&self) -> &'a str {
        self.0
    }
}

/// What a [`ClientRelay`] carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayPayload<'a> {
    /// The SDP of an offer or answer, still JSON.
    Sdp(SdpJson<'a>),
    /// An ICE candidate.
    Candidate(IceCandidate),
}

/// A client `offer`, `answer` or `ice`, read by the server's relay fast
/// path without copying the SDP.
///
/// [`ClientRelay::parse`] accepts only text that [`ClientMessage::from_json`]
/// also accepts, as the same message (property-tested); anything else gets
/// `None`, and the caller parses it fully, which gives the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRelay<'a> {
    /// Which message.
    pub kind: RelayKind,
    /// The recipient.
    pub to: UserId,
    /// The SDP or candidate.
    pub payload: RelayPayload<'a>,
}

impl<'a> ClientRelay<'a> {
    /// Reads a relayed message, or `None` (see the type's docs).
    #[must_use]
    pub fn parse(text: &'a str) -> Option<Self> {
        if text.len() > MAX_SIGNAL_MESSAGE_LEN {
            return None;
        }
        let env: RelayEnvelope<'a> = serde_json::from_str(text).ok()?;
        let payload = match (env.kind, env.sdp, env.candidate) {
            (RelayKind::Offer | RelayKind::Answer, Some(sdp), None) => {
                RelayPayload::Sdp(SdpJson::parse(sdp.get())?)
            }
            (RelayKind::Ice, None, Some(c)) => RelayPayload::Candidate(c),
            _ => return None,
        };
        Some(Self {
            kind: env.kind,
            to: env.to,
            payload,
        })
    }

    /// The server's message to the recipient: the same payload, with `to`
    /// replaced by the authenticated sender `from`. The same JSON value as
    /// [`ServerMessage::to_json`] of the matching `offer`/`answer`/`ice`.
    ///
    /// # Errors
    /// [`SignalError::Serialize`] (not expected).
    pub fn relayed_json(&self, from: UserId) -> Result<String, SignalError> {
        match &self.payload {
            RelayPayload::Sdp(sdp) => {
                let sdp = sdp.as_json();
                let mut out = String::with_capacity(sdp.len() + 48);
                out.push_str(r#"{"type":""#);
                out.push_str(self.kind.as_str());
                out.push_str(r#"","from":"#);
                // Writing into a String cannot fail.
                let _ = write!(out, "{from}");
                out.push_str(r#","sdp":"#);
                out.push_str(sdp);
                out.push('}');
                Ok(out)
            }
            RelayPayload::Candidate(candidate) => ServerMessage::Ice {
                from,
                candidate: candidate.clone(),
            }
            .to_json(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cert::strategies::signed_cert;
    use crate::message::strategies::user;
    use proptest::prelude::*;

    fn key() -> PublicKey {
        crate::crypto::SigningKey::from_seed(&[4; 32])
            .unwrap()
            .public_key()
    }

    #[test]
    fn minimal_auth() {
        let m = ClientMessage::from_json(r#"{"type":"auth","token":"abc.def.ghi"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Auth {
                token: Token::new("abc.def.ghi").unwrap(),
                protocol: None,
                key: None
            }
        );
        assert_eq!(m.protocol(), Some(1));
        assert_eq!(
            m.to_json().unwrap(),
            r#"{"type":"auth","token":"abc.def.ghi"}"#
        );
        let with = format!(
            r#"{{"type":"auth","token":"t","protocol":2,"key":"{}"}}"#,
            key().to_base64url()
        );
        let m = ClientMessage::from_json(&with).unwrap();
        assert_eq!(m.protocol(), Some(2));
        // Token is never shown by Debug.
        assert!(!format!("{m:?}").contains("\"t\""));
        let m = ClientMessage::from_json(r#"{"type":"auth","token":"sekrit-token"}"#).unwrap();
        assert!(!format!("{m:?}").contains("sekrit"));
    }

    #[test]
    fn refusals() {
        for bad in [
            r#"{"type":"auth"}"#,
            r#"{"type":"auth","token":""}"#,
            r#"{"type":"auth","token":"a b"}"#,
            r#"{"type":"auth","token":"t","extra":1}"#,
            r#"{"type":"nope"}"#,
            r#"{"token":"t"}"#,
            r#"{"type":"offer","to":1}"#,
            r#"{"type":"offer","to":-1,"sdp":"v=0"}"#,
            r#"{"type":"offer","to":9007199254740992,"sdp":"v=0"}"#,
            r#"{"type":"offer","to":1,"sdp":""}"#,
            r#"{"type":"offer","to":1,"sdp":"v=0\u0000"}"#,
            r#"{"type":"ice","to":1,"candidate":{"candidate":"a\nb"}}"#,
            r#"{"type":"set_role","user":1,"role":"admin"}"#,
            r#"[]"#,
            r#"{"type":"auth","token":"t"} x"#,
            "",
        ] {
            assert!(ClientMessage::from_json(bad).is_err(), "{bad}");
        }
        // Exactly at and just over each size limit.
        let sdp_at = "a".repeat(MAX_SDP_LEN);
        let sdp_over = "a".repeat(MAX_SDP_LEN + 1);
        let offer = |s: &str| format!(r#"{{"type":"offer","to":1,"sdp":"{s}"}}"#);
        assert!(ClientMessage::from_json(&offer(&sdp_at)).is_ok());
        assert!(ClientMessage::from_json(&offer(&sdp_over)).is_err());
        let cand = |n: usize| {
            format!(
                r#"{{"type":"ice","to":1,"candidate":{{"candidate":"{}","sdpMid":"0","sdpMLineIndex":0}}}}"#,
                "c".repeat(n)
            )
        };
        assert!(ClientMessage::from_json(&cand(MAX_CANDIDATE_LEN)).is_ok());
        assert!(ClientMessage::from_json(&cand(MAX_CANDIDATE_LEN + 1)).is_err());
        let tok = |n: usize| format!(r#"{{"type":"auth","token":"{}"}}"#, "t".repeat(n));
        assert!(ClientMessage::from_json(&tok(MAX_TOKEN_LEN)).is_ok());
        assert!(ClientMessage::from_json(&tok(MAX_TOKEN_LEN + 1)).is_err());
        let huge = format!("{}{}", offer(""), " ".repeat(MAX_SIGNAL_MESSAGE_LEN));
        assert_eq!(
            ClientMessage::from_json(&huge),
            Err(SignalError::TooLarge(huge.len()))
        );
    }

    #[test]
    fn errors_do_not_quote_input() {
        let e = ClientMessage::from_json(r#"{"type":"auth","token":12345}"#).unwrap_err();
        assert!(!e.to_string().contains("12345"), "{e}");
        let e = ClientMessage::from_json(r#"{"type":"auth","token":"secret value"}"#).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = ClientMessage::from_json(r#"{"type":"offer","to":1,"sdp":""}"#).unwrap_err();
        assert!(e.to_string().contains("sdp"), "{e}");
    }

    #[test]
    fn roster_limit() {
        let cert = crate::cert::SignedCertificate::issue(
            &crate::crypto::SigningKey::from_seed(&[1; 32]).unwrap(),
            crate::cert::CertificateBody {
                room: RoomId::from_bytes([0; 16]),
                epoch: Epoch(1),
                user: UserId::new(1).unwrap(),
                name: crate::ids::DisplayName::new("A").unwrap(),
                role: Role::Viewer,
                key: key(),
                not_after: crate::ids::UnixSeconds(1),
            },
        )
        .unwrap();
        let entry = RosterEntry {
            certificate: cert.clone(),
            online: true,
        };
        let hello = |n: usize| {
            let members: Vec<String> = (0..n)
                .map(|_| serde_json::to_string(&entry).unwrap())
                .collect();
            format!(
                r#"{{"type":"hello","protocol":1,"room":"{}","you":1,"epoch":1,"server_key":"{}","certificate":"{}","members":[{}],"ice_servers":[],"offerer":"joiner"}}"#,
                RoomId::from_bytes([0; 16]),
                key().to_base64url(),
                cert.to_base64url(),
                members.join(",")
            )
        };
        let ok = ServerMessage::from_json(&hello(MAX_ROSTER)).unwrap();
        assert!(ok.to_json().unwrap().len() < MAX_SIGNAL_MESSAGE_LEN);
        assert!(ServerMessage::from_json(&hello(MAX_ROSTER + 1)).is_err());
        assert!(BoundedVec::<u8, 2>::new(vec![1, 2, 3]).is_err());
    }

    #[test]
    fn unknown_codes_are_other() {
        let m = ServerMessage::from_json(r#"{"type":"error","code":"brand_new","message":"x"}"#)
            .unwrap();
        assert_eq!(
            m,
            ServerMessage::Error {
                code: ErrorCode::Other,
                message: ErrorMessage::new("x").unwrap()
            }
        );
        assert!(ServerMessage::from_json(r#"{"type":"room_ended","reason":"expired"}"#).is_ok());
    }

    fn ice_candidate() -> impl Strategy<Value = IceCandidate> {
        (
            "[ -~]{0,100}",
            prop::option::of("[a-z0-9]{0,8}"),
            prop::option::of(any::<u16>()),
        )
            .prop_map(|(c, m, i)| IceCandidate {
                candidate: Candidate::new(c).unwrap(),
                sdp_mid: m.map(|m| SdpMid::new(m).unwrap()),
                sdp_m_line_index: i,
            })
    }

    fn sdp() -> impl Strategy<Value = Sdp> {
        "[ -~\r\n\t]{1,200}".prop_map(|s| Sdp::new(s).unwrap())
    }

    fn roster_entry() -> impl Strategy<Value = RosterEntry> {
        (signed_cert(), any::<bool>()).prop_map(|(certificate, online)| RosterEntry {
            certificate,
            online,
        })
    }

    fn ice_server() -> impl Strategy<Value = IceServer> {
        (
            prop::collection::vec("(stun|turns?):[a-z0-9.:]{1,30}", 1..=MAX_ICE_URLS),
            prop::option::of("[ -~]{0,20}"),
            prop::option::of("[ -~]{0,20}"),
        )
            .prop_map(|(urls, u, c)| IceServer {
                urls: BoundedVec::new(urls.into_iter().map(|u| IceUrl::new(u).unwrap()).collect())
                    .unwrap(),
                username: u.map(|u| IceUsername::new(u).unwrap()),
                credential: c.map(|c| IceCredential::new(c).unwrap()),
            })
    }

    fn pk() -> impl Strategy<Value = PublicKey> {
        any::<[u8; 32]>().prop_map(PublicKey::from_bytes)
    }

    fn role() -> impl Strategy<Value = Role> {
        prop_oneof![Just(Role::Host), Just(Role::Controller), Just(Role::Viewer)]
    }

    fn client_message() -> impl Strategy<Value = ClientMessage> {
        prop_oneof![
            (
                "[!-~]{1,64}",
                prop::option::of(any::<u32>()),
                prop::option::of(pk())
            )
                .prop_map(|(t, protocol, key)| ClientMessage::Auth {
                    token: Token::new(t).unwrap(),
                    protocol,
                    key
                }),
            (user(), sdp()).prop_map(|(to, sdp)| ClientMessage::Offer { to, sdp }),
            (user(), sdp()).prop_map(|(to, sdp)| ClientMessage::Answer { to, sdp }),
            (user(), ice_candidate())
                .prop_map(|(to, candidate)| ClientMessage::Ice { to, candidate }),
            pk().prop_map(|key| ClientMessage::RegisterHostKey { key }),
            (user(), role()).prop_map(|(user, role)| ClientMessage::SetRole { user, role }),
            user().prop_map(|user| ClientMessage::Kick { user }),
            user().prop_map(|to| ClientMessage::Handoff { to }),
            Just(ClientMessage::Leave),
        ]
    }

    fn server_message() -> impl Strategy<Value = ServerMessage> {
        prop_oneof![
            (
                (any::<u32>(), any::<[u8; 16]>(), user(), any::<u64>(), pk()),
                signed_cert(),
                prop::collection::vec(roster_entry(), 0..=3),
                prop::collection::vec(ice_server(), 0..=2),
            )
                .prop_map(
                    |((protocol, room, you, epoch, server_key), certificate, m, i)| {
                        ServerMessage::Hello {
                            protocol,
                            room: RoomId::from_bytes(room),
                            you,
                            epoch: Epoch(epoch),
                            server_key,
                            certificate,
                            members: BoundedVec::new(m).unwrap(),
                            ice_servers: BoundedVec::new(i).unwrap(),
                            offerer: OffererRule::Joiner,
                        }
                    }
                ),
            roster_entry().prop_map(|member| ServerMessage::MemberJoined { member }),
            user().prop_map(|user| ServerMessage::MemberLeft { user }),
            (user(), sdp()).prop_map(|(from, sdp)| ServerMessage::Offer { from, sdp }),
            (user(), sdp()).prop_map(|(from, sdp)| ServerMessage::Answer { from, sdp }),
            (user(), ice_candidate())
                .prop_map(|(from, candidate)| ServerMessage::Ice { from, candidate }),
            signed_cert().prop_map(|certificate| ServerMessage::HostChanged { certificate }),
            signed_cert().prop_map(|certificate| ServerMessage::RoleChanged { certificate }),
            user().prop_map(|user| ServerMessage::Kicked { user }),
            (
                prop_oneof![
                    Just(ErrorCode::Unauthorized),
                    Just(ErrorCode::Forbidden),
                    Just(ErrorCode::BadRequest),
                    Just(ErrorCode::UnsupportedProtocol),
                    Just(ErrorCode::NotFound),
                    Just(ErrorCode::RoomFull),
                    Just(ErrorCode::RateLimited),
                    Just(ErrorCode::Internal),
                    Just(ErrorCode::Other),
                ],
                "[ -~é]{0,60}"
            )
                .prop_map(|(code, m)| ServerMessage::Error {
                    code,
                    message: ErrorMessage::new(m).unwrap()
                }),
            prop_oneof![
                Just(EndReason::Closed),
                Just(EndReason::Expired),
                Just(EndReason::Kicked),
                Just(EndReason::Other)
            ]
            .prop_map(|reason| ServerMessage::RoomEnded { reason }),
        ]
    }

    #[test]
    fn sdp_refuses_c0_c1_and_del_but_not_cr_lf_tab_or_other_text() {
        assert!(Sdp::new("v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\n\ta=x").is_ok());
        assert!(Sdp::new("é ü \u{a0} \u{c0} \u{7e}~ 😀").is_ok());
        for bad in [
            "\u{0}",
            "a\u{1f}",
            "\u{7f}",
            "x\u{80}",
            "\u{85}y",
            "\u{9f}",
            "\u{1b}[0m",
        ] {
            assert!(Sdp::new(bad).is_err(), "{bad:?}");
        }
        // U+00A0..U+00BF also start with 0xC2 but are not controls.
        assert!(Sdp::new("\u{a0}\u{bf}").is_ok());
    }

    /// What the full parser makes of the server's relayed text.
    fn relayed(r: &ClientRelay<'_>, from: UserId) -> ServerMessage {
        ServerMessage::from_json(&r.relayed_json(from).unwrap()).unwrap()
    }

    /// The server message the slow path would relay for `m`.
    fn slow_relay(m: ClientMessage, from: UserId) -> Option<ServerMessage> {
        match m {
            ClientMessage::Offer { sdp, .. } => Some(ServerMessage::Offer { from, sdp }),
            ClientMessage::Answer { sdp, .. } => Some(ServerMessage::Answer { from, sdp }),
            ClientMessage::Ice { candidate, .. } => Some(ServerMessage::Ice { from, candidate }),
            _ => None,
        }
    }

    #[test]
    fn relay_fast_path_takes_plain_sdp_and_leaves_the_rest_to_the_full_parser() {
        let from = UserId::new(7).unwrap();
        let offer = r#"{"type":"offer","to":3,"sdp":"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\na=x:\"q\" \\ \/\t\r\n"}"#;
        let r = ClientRelay::parse(offer).unwrap();
        assert_eq!((r.kind, r.to), (RelayKind::Offer, UserId::new(3).unwrap()));
        assert_eq!(
            Some(relayed(&r, from)),
            slow_relay(ClientMessage::from_json(offer).unwrap(), from)
        );
        let ice = r#"{"to":4,"candidate":{"candidate":"candidate:1 1 udp 1 127.0.0.1 9 typ host","sdpMid":"0"},"type":"ice"}"#;
        let r = ClientRelay::parse(ice).unwrap();
        assert_eq!(
            Some(relayed(&r, from)),
            slow_relay(ClientMessage::from_json(ice).unwrap(), from)
        );
        // Valid, but outside the fast path's form: the full parser takes them.
        for slow in [
            r#"{"type":"offer","to":1,"sdp":"v=0 \u0041"}"#,
            r#"{"type":"answer","to":1,"sdp":"\u00a0 non-breaking"}"#,
            r#"{"type":"offer","to":1,"sdp":"é\u00e9 \ud83d\ude00"}"#,
            "{\"type\":\"offer\",\"to\":1,\"sdp\":\"\u{a0} raw\"}",
            r#"{"type":"auth","token":"t"}"#,
            r#"{"type":"leave"}"#,
        ] {
            assert_eq!(ClientRelay::parse(slow), None, "{slow}");
            assert!(ClientMessage::from_json(slow).is_ok(), "{slow}");
        }
        // Invalid: the fast path says None, the full parser gives the error.
        for bad in [
            r#"{"type":"offer","to":1,"sdp":""}"#,
            r#"{"type":"offer","to":1,"sdp":"a\bb"}"#,
            r#"{"type":"offer","to":1,"sdp":"a\fb"}"#,
            r#"{"type":"offer","to":1,"sdp":"a\u0000b"}"#,
            "{\"type\":\"offer\",\"to\":1,\"sdp\":\"a\u{7f}b\"}",
            "{\"type\":\"offer\",\"to\":1,\"sdp\":\"a\u{85}b\"}",
            r#"{"type":"offer","to":1,"sdp":5}"#,
            r#"{"type":"offer","to":1,"sdp":["v=0"]}"#,
            r#"{"type":"offer","to":1}"#,
            r#"{"type":"offer","to":-1,"sdp":"v=0"}"#,
            r#"{"type":"offer","to":9007199254740992,"sdp":"v=0"}"#,
            r#"{"type":"offer","to":1,"sdp":"v=0","extra":1}"#,
            r#"{"type":"offer","to":1,"sdp":"v=0","candidate":{"candidate":""}}"#,
            r#"{"type":"ice","to":1,"sdp":"v=0"}"#,
            r#"{"type":"ice","to":1,"candidate":{"candidate":"a\nb"}}"#,
            r#"{"type":"offer","to":1,"sdp":"v=0","sdp":"v=1"}"#,
            r#"{"type":"offer","to":1,"sdp":"v=0"} x"#,
            r#"{"type":"nope","to":1,"sdp":"v=0"}"#,
        ] {
            assert_eq!(ClientRelay::parse(bad), None, "{bad}");
            assert!(ClientMessage::from_json(bad).is_err(), "{bad}");
        }
        // Exactly at and just over the SDP limit, escapes counted decoded.
        let offer = |s: &str| format!(r#"{{"type":"offer","to":1,"sdp":"{s}"}}"#);
        let at = format!("{}\\r\\n", "a".repeat(MAX_SDP_LEN - 2));
        let over = format!("{}\\r\\n", "a".repeat(MAX_SDP_LEN - 1));
        assert!(ClientRelay::parse(&offer(&at)).is_some());
        assert!(ClientMessage::from_json(&offer(&at)).is_ok());
        assert_eq!(ClientRelay::parse(&offer(&over)), None);
        assert!(ClientMessage::from_json(&offer(&over)).is_err());
        let huge = format!("{}{}", offer("v=0"), " ".repeat(MAX_SIGNAL_MESSAGE_LEN));
        assert_eq!(ClientRelay::parse(&huge), None);
        // Debug never shows the SDP.
        let secret = offer("secret-address");
        let r = ClientRelay::parse(&secret).unwrap();
        assert!(!format!("{r:?}").contains("secret"));
    }

    proptest! {
        #[test]
        fn client_round_trip(m in client_message()) {
            let json = m.to_json().unwrap();
            prop_assert_eq!(ClientMessage::from_json(&json), Ok(m));
        }

        #[test]
        fn server_round_trip(m in server_message()) {
            let json = m.to_json().unwrap();
            prop_assert_eq!(ServerMessage::from_json(&json), Ok(m));
        }

        #[test]
        fn sdp_check_equals_the_char_definition(s in "(\\PC|[\u{0}-\u{1f}\u{7f}-\u{9f}]|\r|\n|\t){1,64}") {
            let by_chars = s.chars().any(|c| c.is_control() && !matches!(c, '\r' | '\n' | '\t'));
            prop_assert_eq!(Sdp::new(s.clone()).is_err(), by_chars, "{:?}", s);
        }

        #[test]
        fn relay_fast_path_reads_every_relayed_message(m in client_message(), from in user()) {
            let json = m.to_json().unwrap();
            let fast = ClientRelay::parse(&json);
            let slow = slow_relay(m, from);
            prop_assert_eq!(fast.is_some(), slow.is_some(), "{}", json);
            if let Some(r) = fast {
                prop_assert_eq!(Some(relayed(&r, from)), slow);
            }
        }

        #[test]
        fn relay_fast_path_accepts_nothing_the_full_parser_refuses(
            m in client_message(), from in user(), idx in any::<prop::sample::Index>(), b in any::<u8>()
        ) {
            let mut bytes = m.to_json().unwrap().into_bytes();
            let i = idx.index(bytes.len());
            bytes[i] = b;
            if let Ok(s) = String::from_utf8(bytes)
                && let Some(r) = ClientRelay::parse(&s)
            {
                let full = ClientMessage::from_json(&s);
                prop_assert!(full.is_ok(), "fast path took what the full parser refuses: {:?}", s);
                prop_assert_eq!(Some(relayed(&r, from)), slow_relay(full.unwrap(), from));
            }
        }

        #[test]
        fn arbitrary_text_never_panics(s in "\\PC{0,200}") {
            let _ = ClientMessage::from_json(&s);
            let _ = ServerMessage::from_json(&s);
        }

        #[test]
        fn mutated_json_never_panics(m in client_message(), idx in any::<prop::sample::Index>(), b in any::<u8>()) {
            let mut bytes = m.to_json().unwrap().into_bytes();
            let i = idx.index(bytes.len());
            bytes[i] = b;
            if let Ok(s) = String::from_utf8(bytes) {
                let _ = ClientMessage::from_json(&s);
            }
        }
    }
}
