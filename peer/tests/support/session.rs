//! Single-`Session` fixtures: a room of fixed keys (user `n` signs with the
//! seed `[n; 32]`, the server with `[0x50; 32]`, user 1 is the host), real
//! server-signed certificates, and frame builders — including raw ones that
//! `frame::encode` refuses to build (invalid chat, malformed payloads).

#![allow(dead_code)]

use watchparty_peer::acceptance::DropReason;
use watchparty_peer::cert::{CertificateBody, SignedCertificate};
use watchparty_peer::channels::ChannelId;
use watchparty_peer::crypto::{Domain, SigningKey};
use watchparty_peer::frame::{self, Header};
use watchparty_peer::ids::{DisplayName, Epoch, Role, RoomId, RoomMs, Seq, UnixSeconds, UserId};
use watchparty_peer::message::{Kind, Message};
use watchparty_peer::session::{ChannelOpen, Event, Output, Session, SessionConfig};
use watchparty_peer::signaling::{BoundedVec, OffererRule, RosterEntry, ServerMessage};
use watchparty_peer::time::LocalTime;

pub const ROOM: RoomId = RoomId::from_bytes([9; 16]);
/// Unix time at [`START`].
pub const WALL: UnixSeconds = UnixSeconds(1_700_000_000);
/// Local time at which every fixture session is created.
pub const START: LocalTime = LocalTime::from_micros(1_000_000);
/// Default certificate lifetime.
pub const ONE_HOUR: u64 = 3600;

pub fn k(n: u8) -> SigningKey {
    SigningKey::from_seed(&[n; 32]).unwrap()
}

pub fn u(n: u64) -> UserId {
    UserId::new(n).unwrap()
}

pub fn server() -> SigningKey {
    k(0x50)
}

pub fn ms(v: i64) -> LocalTime {
    LocalTime::from_millis(v)
}

/// A certificate for user `user` (key `k(user)`) valid through `not_after`.
pub fn cert_until(user: u64, role: Role, not_after: UnixSeconds) -> SignedCertificate {
    SignedCertificate::issue(
        &server(),
        CertificateBody {
            room: ROOM,
            epoch: Epoch(1),
            user: u(user),
            name: DisplayName::new("x").unwrap(),
            role,
            key: k(user as u8).public_key(),
            not_after,
        },
    )
    .unwrap()
}

/// A certificate valid for an hour.
pub fn cert(user: u64, role: Role) -> SignedCertificate {
    cert_until(user, role, UnixSeconds(WALL.0 + ONE_HOUR))
}

/// A member of the fixture room.
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub user: u64,
    pub role: Role,
    pub not_after: UnixSeconds,
}

impl Entry {
    pub fn new(user: u64, role: Role) -> Self {
        Self {
            user,
            role,
            not_after: UnixSeconds(WALL.0 + ONE_HOUR),
        }
    }

    pub fn until(self, not_after: UnixSeconds) -> Self {
        Self { not_after, ..self }
    }
}

/// The usual room: host 1, viewer 2, controller 3.
pub fn room() -> Vec<Entry> {
    vec![
        Entry::new(1, Role::Host),
        Entry::new(2, Role::Viewer),
        Entry::new(3, Role::Controller),
    ]
}

/// User `me` joins the room `roster` (which lists `me` too) at [`START`]
/// without a pinned host key, and opens channels to `links` (without
/// fingerprints). Outputs are drained.
pub fn join_with(cfg: SessionConfig, me: u64, roster: &[Entry], links: &[u64]) -> Session {
    join_pinned(cfg, me, roster, links, None)
}

/// [`join_with`], pinning `pin` as the host key (the invite link's).
pub fn join_pinned(
    cfg: SessionConfig,
    me: u64,
    roster: &[Entry],
    links: &[u64],
    pin: Option<&SigningKey>,
) -> Session {
    let mut s = Session::new(
        cfg,
        k(me as u8),
        server().public_key(),
        pin.map(SigningKey::public_key),
        START,
        WALL,
    )
    .unwrap();
    let mine = roster.iter().find(|e| e.user == me).unwrap();
    let members: Vec<RosterEntry> = roster
        .iter()
        .filter(|e| e.user != me)
        .map(|e| RosterEntry {
            certificate: cert_until(e.user, e.role, e.not_after),
            online: true,
        })
        .collect();
    s.handle_signal(
        ServerMessage::Hello {
            protocol: 1,
            room: ROOM,
            you: u(me),
            epoch: Epoch(1),
            server_key: server().public_key(),
            certificate: cert_until(me, mine.role, mine.not_after),
            members: BoundedVec::new(members).unwrap(),
            ice_servers: BoundedVec::empty(),
            offerer: OffererRule::Joiner,
        },
        START,
    );
    for l in links {
        s.channel_open(
            ChannelOpen {
                peer: u(*l),
                local_fingerprint: None,
                remote_fingerprint: None,
            },
            START,
        );
    }
    drain(&mut s);
    s
}

/// [`join_with`] with the default configuration.
pub fn join(me: u64, roster: &[Entry], links: &[u64]) -> Session {
    join_with(SessionConfig::new(ROOM), me, roster, links)
}

/// Viewer 2 of [`room`], linked to the host and to member 3.
pub fn follower() -> Session {
    join(2, &room(), &[1, 3])
}

/// The host of [`room`], linked to 2 and 3.
pub fn host() -> Session {
    join(1, &room(), &[2, 3])
}

/// Every queued output.
pub fn drain(s: &mut Session) -> Vec<Output> {
    std::iter::from_fn(|| s.poll_output()).collect()
}

/// The events among `outputs`.
pub fn events(outputs: &[Output]) -> Vec<Event> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Event(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// The drop reasons among `outputs`' events.
pub fn dropped(outputs: &[Output]) -> Vec<DropReason> {
    events(outputs)
        .into_iter()
        .filter_map(|e| match e {
            Event::Dropped { reason, .. } => Some(reason),
            _ => None,
        })
        .collect()
}

/// The frames among `outputs`: (to, channel, bytes).
pub fn frames(outputs: &[Output]) -> Vec<(UserId, ChannelId, Vec<u8>)> {
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::SendFrame { to, channel, bytes } => Some((*to, *channel, bytes.clone())),
            _ => None,
        })
        .collect()
}

/// A frame signed by `key` in `room`/`epoch` with `seq`, issued at room
/// time `issued_ms`.
pub fn sign_at(
    key: &SigningKey,
    room: RoomId,
    epoch: u64,
    seq: u64,
    issued_ms: i64,
    msg: &Message,
) -> Vec<u8> {
    let h = Header {
        room,
        epoch: Epoch(epoch),
        seq: Seq::new(seq).unwrap(),
        issued_at: RoomMs(issued_ms),
    };
    frame::encode(key, &h, msg).unwrap()
}

/// Room time (ms) at [`START`] of a fixture host: a host's room clock
/// starts at its wall clock ([`WALL`] at [`START`]).
pub const ROOM_MS_AT_START: i64 = WALL.0 as i64 * 1000;

/// The fixtures' wall clock (the room clock's origin) at local time `t`,
/// in ms: what an honest sender stamps as issued-at then.
pub fn room_ms_at(t: LocalTime) -> i64 {
    ROOM_MS_AT_START + (t.as_micros() - START.as_micros()).div_euclid(1000)
}

/// A frame of [`ROOM`], epoch 1, issued at room time [`ROOM_MS_AT_START`].
pub fn sign(key: &SigningKey, seq: u64, msg: &Message) -> Vec<u8> {
    sign_at(key, ROOM, 1, seq, ROOM_MS_AT_START, msg)
}

/// A correctly signed frame of [`ROOM`], epoch 1, with an arbitrary
/// payload (bypasses the payload encoder's checks).
pub fn sign_raw(key: &SigningKey, kind: Kind, seq: u64, issued_ms: i64, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&frame::MAGIC);
    b.push(frame::VERSION);
    b.push(kind.to_byte());
    b.extend_from_slice(key.key_id().as_bytes());
    b.extend_from_slice(ROOM.as_bytes());
    b.extend_from_slice(&1u64.to_be_bytes());
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&issued_ms.to_be_bytes());
    b.extend_from_slice(payload);
    let sig = key.sign(Domain::Frame, &b);
    b.extend_from_slice(sig.as_bytes());
    b
}

/// A signed chat frame carrying `text` as is (`str` encoding: u16 length
/// and UTF-8 bytes), valid or not.
pub fn raw_chat(key: &SigningKey, seq: u64, issued_ms: i64, text: &str) -> Vec<u8> {
    let mut p = u16::try_from(text.len()).unwrap().to_be_bytes().to_vec();
    p.extend_from_slice(text.as_bytes());
    sign_raw(key, Kind::Chat, seq, issued_ms, &p)
}
