//! The bodies of the peer fuzz targets, shared with the normal test suite.
//!
//! Each `fuzz_targets/<name>.rs` calls the function of the same name; the
//! regression test `peer/tests/fuzz_corpus.rs` includes this file too and
//! replays the committed seeds (`fuzz/corpus/<name>/seed-*`) and every crash
//! reproducer (`fuzz/regressions/<name>/*`) through the very same functions,
//! so a crash found once stays fixed without the nightly toolchain.
//!
//! Every function must return normally on any input; a panic (including a
//! failed `assert!`) is a finding.
#![allow(dead_code)]

use std::sync::OnceLock;

use watchparty_peer::cert::{CertVerifier, CertificateBody, SignedCertificate};
use watchparty_peer::channels::{self, ChannelId};
use watchparty_peer::crypto::{Domain, SigningKey};
use watchparty_peer::frame::{self, Envelope, MAX_FRAME_LEN};
use watchparty_peer::ids::{
    ContentHash, DisplayName, Epoch, MediaId, PositionMs, Role, RoomId, UnixSeconds, UserId,
};
use watchparty_peer::message::{Fingerprint, MediaItem};
use watchparty_peer::session::{
    ChannelOpen, MAX_QUEUED_OUTPUTS, Output, Session, SessionConfig, UserCommand,
};
use watchparty_peer::signaling::{
    BoundedVec, ClientMessage, OffererRule, RosterEntry, ServerMessage,
};
use watchparty_peer::time::{LocalTime, TimeDelta};

/// The fuzz target names, in the order `cargo xtask fuzz` runs them.
pub const TARGETS: [&str; 4] = [
    "frame_decode",
    "signaling_json",
    "certificate",
    "session_input",
];

/// Runs the check called `name` on `data`; `false` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> bool {
    match name {
        "frame_decode" => frame_decode(data),
        "signaling_json" => signaling_json(data),
        "certificate" => certificate(data),
        "session_input" => session_input(data),
        _ => return false,
    }
    true
}

fn fixed_key(seed: u8) -> SigningKey {
    // A fixed 32-byte seed is always a valid Ed25519 seed.
    SigningKey::from_seed(&[seed; 32]).expect("fixed seed")
}

// ------------------------------------------------------------ frame_decode --

fn frame_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| fixed_key(7))
}

/// `"WP"`, version 1, `kind`, `key`'s id, `body`, a valid signature by `key`:
/// every body decoder then sees arbitrary input behind a verifying signature.
pub fn resign(key: &SigningKey, kind: u8, body: &[u8]) -> Option<Vec<u8>> {
    if body.len() + 76 > MAX_FRAME_LEN {
        return None;
    }
    let mut f = Vec::with_capacity(body.len() + 76);
    f.extend_from_slice(b"WP\x01");
    f.push(kind);
    f.extend_from_slice(key.key_id().as_bytes());
    f.extend_from_slice(body);
    let sig = key.sign(Domain::Frame, &f);
    f.extend_from_slice(sig.as_bytes());
    Some(f)
}

/// Frame parse + verify + decode on arbitrary bytes: never panics, and an
/// arbitrary input is used twice — as received (envelope, size and
/// signature paths) and re-signed with the fixed key after fixing up the
/// envelope (every body and payload decoder).
pub fn frame_decode(data: &[u8]) {
    let k = frame_key();
    let public = k.public_key();
    if let Ok(env) = Envelope::parse(data) {
        let _ = env.kind();
        if let Ok(verified) = env.verify(&public) {
            let _ = verified.decode();
        }
    }
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    if let Some(f) = resign(k, kind, body) {
        let _ = frame::receive(&f, |_, _| Some(public));
    }
}

// ---------------------------------------------------------- signaling_json --

/// Signaling JSON decode in both directions never panics, and anything that
/// decodes re-encodes and decodes to the same value.
pub fn signaling_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = ClientMessage::from_json(text) {
        let json = m.to_json().expect("a decoded message serializes");
        assert_eq!(ClientMessage::from_json(&json).ok(), Some(m));
    }
    if let Ok(m) = ServerMessage::from_json(text) {
        let json = m.to_json().expect("a decoded message serializes");
        assert_eq!(ServerMessage::from_json(&json).ok(), Some(m));
    }
}

// ------------------------------------------------------------- certificate --

fn cert_verifier() -> &'static CertVerifier {
    static V: OnceLock<CertVerifier> = OnceLock::new();
    V.get_or_init(|| CertVerifier::new(fixed_key(9).public_key(), RoomId::from_bytes([0; 16])))
}

/// Certificate parsing and verification never panic, parsing keeps the
/// exact bytes, and no arbitrary input verifies under the server key.
pub fn certificate(data: &[u8]) {
    if let Ok(cert) = SignedCertificate::parse(data) {
        assert_eq!(cert.as_bytes(), data);
        let _ = cert_verifier().verify(&cert, UnixSeconds(0));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = SignedCertificate::from_base64url(text);
    }
}

// ----------------------------------------------------------- session_input --

/// The fixed room of `session_input`.
pub const ROOM: RoomId = RoomId::from_bytes([0x42; 16]);
/// Wall clock at `LocalTime` zero (certificates expire a day later).
pub const WALL: UnixSeconds = UnixSeconds(1_700_000_000);
/// Host (user 1), a controller that is not simulated (user 2), the
/// follower session (user 3, a controller).
pub const HOST: u64 = 1;
/// See [`HOST`].
pub const OTHER: u64 = 2;
/// See [`HOST`].
pub const FOLLOWER: u64 = 3;

fn uid(n: u64) -> UserId {
    UserId::new(n).expect("valid user id")
}

/// The signing key of user `n` (the server's is seed 0x55).
pub fn user_key(n: u64) -> SigningKey {
    fixed_key(n as u8)
}

fn server_key() -> SigningKey {
    fixed_key(0x55)
}

fn cert(n: u64, role: Role) -> SignedCertificate {
    SignedCertificate::issue(
        &server_key(),
        CertificateBody {
            room: ROOM,
            epoch: Epoch(1),
            user: uid(n),
            name: DisplayName::new(&format!("user{n}")).expect("valid name"),
            role,
            key: user_key(n).public_key(),
            not_after: UnixSeconds(WALL.0 + 86_400),
        },
    )
    .expect("issues")
}

fn role(n: u64) -> Role {
    if n == HOST {
        Role::Host
    } else {
        Role::Controller
    }
}

/// The `hello` the server sends user `n`.
pub fn hello(n: u64) -> ServerMessage {
    let members = [HOST, OTHER, FOLLOWER]
        .into_iter()
        .map(|m| RosterEntry {
            certificate: cert(m, role(m)),
            online: true,
        })
        .collect();
    ServerMessage::Hello {
        protocol: 1,
        room: ROOM,
        you: uid(n),
        epoch: Epoch(1),
        server_key: server_key().public_key(),
        certificate: cert(n, role(n)),
        members: BoundedVec::new(members).expect("three members fit"),
        ice_servers: BoundedVec::empty(),
        offerer: OffererRule::Joiner,
    }
}

fn fingerprint(n: u64) -> Fingerprint {
    Fingerprint::Sha256([n as u8; 32])
}

/// A session (`HOST` or `FOLLOWER`) with its frames in flight.
pub struct Room {
    /// The host's session.
    pub host: Session,
    /// The follower's session (pinned to the host key).
    pub follower: Session,
    /// Current local time of both (one clock: offsets do not matter here).
    pub now: LocalTime,
    /// Frames host → follower not yet delivered.
    pub to_follower: Vec<(ChannelId, Vec<u8>)>,
    /// Frames follower → host not yet delivered.
    pub to_host: Vec<(ChannelId, Vec<u8>)>,
}

fn new_session(n: u64, now: LocalTime) -> Session {
    let pin = (n != HOST).then(|| user_key(HOST).public_key());
    let mut s = Session::new(
        SessionConfig::new(ROOM),
        user_key(n),
        server_key().public_key(),
        pin,
        now,
        WALL,
    )
    .expect("default config is valid");
    s.handle_signal(hello(n), now);
    for peer in [HOST, OTHER, FOLLOWER].into_iter().filter(|p| *p != n) {
        s.channel_open(
            ChannelOpen {
                peer: uid(peer),
                local_fingerprint: Some(fingerprint(n)),
                remote_fingerprint: Some(fingerprint(peer)),
            },
            now,
        );
    }
    s
}

/// The media item the fixed room plays.
pub fn movie() -> MediaItem {
    MediaItem {
        media: MediaId::new("movie-1").expect("valid media id"),
        hash: ContentHash([1; 32]),
        duration: PositionMs::new(600_000).expect("valid duration"),
    }
}

impl Room {
    /// Host and follower joined and linked; the host loaded [`movie`] and
    /// plays it; the follower has every frame the host sent so far.
    pub fn new() -> Self {
        let now = LocalTime::from_micros(1_000_000);
        let mut room = Room {
            host: new_session(HOST, now),
            follower: new_session(FOLLOWER, now),
            now,
            to_follower: Vec::new(),
            to_host: Vec::new(),
        };
        room.pump();
        let _ = room.host.command(UserCommand::Load(movie()), now);
        room.host.media_loaded(Some(movie().hash), now);
        room.follower.media_loaded(Some(movie().hash), now);
        let _ = room.host.command(UserCommand::Play, now);
        for _ in 0..3 {
            room.pump();
            room.deliver();
        }
        room.advance(TimeDelta::from_millis(500));
        room.pump();
        room.deliver();
        room
    }

    /// Collects both sessions' outputs (bounded: a session never queues more
    /// than [`MAX_QUEUED_OUTPUTS`]).
    pub fn pump(&mut self) {
        let mut n = 0;
        while let Some(o) = self.host.poll_output() {
            n += 1;
            if let Output::SendFrame { to, channel, bytes } = o
                && to == uid(FOLLOWER)
            {
                self.to_follower.push((channel, bytes));
            }
        }
        assert!(n <= MAX_QUEUED_OUTPUTS + 1, "host queued {n} outputs");
        let mut n = 0;
        while let Some(o) = self.follower.poll_output() {
            n += 1;
            if let Output::SendFrame { to, channel, bytes } = o
                && to == uid(HOST)
            {
                self.to_host.push((channel, bytes));
            }
        }
        assert!(n <= MAX_QUEUED_OUTPUTS + 1, "follower queued {n} outputs");
    }

    /// Delivers every frame in flight, once (answers wait for the next call).
    pub fn deliver(&mut self) {
        let now = self.now;
        for (c, b) in std::mem::take(&mut self.to_follower) {
            self.follower.handle_frame(uid(HOST), c, &b, now);
        }
        for (c, b) in std::mem::take(&mut self.to_host) {
            self.host.handle_frame(uid(FOLLOWER), c, &b, now);
        }
    }

    /// Time passes for both.
    pub fn advance(&mut self, by: TimeDelta) {
        self.now += by;
        self.host.handle_timeout(self.now);
        self.follower.handle_timeout(self.now);
    }
}

impl Default for Room {
    fn default() -> Self {
        Self::new()
    }
}

/// One step of a `session_input` program. Encoding: an op byte, then for
/// ops with a payload a big-endian `u16` length and that many bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Raw bytes to the follower as if from the host, on a channel.
    RawToFollower(u8, Vec<u8>),
    /// Raw bytes to the host as if from the follower, on a channel.
    RawToHost(u8, Vec<u8>),
    /// `(kind, body)` signed with the host key, to the follower.
    HostSigned(u8, u8, Vec<u8>),
    /// `(kind, body)` signed by user 2 (a controller), to the follower,
    /// arriving from user 2 (a neighbour).
    OtherToFollower(u8, u8, Vec<u8>),
    /// `(kind, body)` signed by user 2, to the host.
    OtherToHost(u8, u8, Vec<u8>),
    /// `(kind, body)` signed by the follower, to the host.
    FollowerToHost(u8, u8, Vec<u8>),
    /// Time passes (milliseconds), then frames in flight are delivered.
    Tick(u16),
    /// Signaling JSON to the follower (if it decodes).
    Signal(Vec<u8>),
}

const OPS: u8 = 8;

impl Op {
    /// Encodes `ops` as a fuzz input.
    pub fn encode(ops: &[Op]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut with = |op: u8, channel: u8, kind: Option<u8>, payload: &[u8]| {
            out.push(op + OPS * channel);
            let mut p = Vec::new();
            p.extend(kind);
            p.extend_from_slice(payload);
            let len = u16::try_from(p.len()).expect("short payload");
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&p);
        };
        for op in ops {
            match op {
                Op::RawToFollower(c, b) => with(0, *c, None, b),
                Op::RawToHost(c, b) => with(1, *c, None, b),
                Op::HostSigned(c, k, b) => with(2, *c, Some(*k), b),
                Op::OtherToFollower(c, k, b) => with(3, *c, Some(*k), b),
                Op::OtherToHost(c, k, b) => with(4, *c, Some(*k), b),
                Op::FollowerToHost(c, k, b) => with(5, *c, Some(*k), b),
                Op::Tick(ms) => with(6, 0, None, &ms.to_be_bytes()),
                Op::Signal(b) => with(7, 0, None, b),
            }
        }
        out
    }

    /// Decodes a fuzz input; a truncated tail is ignored.
    pub fn decode(mut data: &[u8]) -> Vec<Op> {
        let mut ops = Vec::new();
        while data.len() >= 3 {
            let op = data[0] % OPS;
            let channel = data[0] / OPS;
            let len = usize::from(u16::from_be_bytes([data[1], data[2]]));
            let end = (3 + len).min(data.len());
            let p = &data[3..end];
            data = &data[end..];
            let signed = |f: fn(u8, u8, Vec<u8>) -> Op| {
                p.split_first().map(|(k, b)| f(channel, *k, b.to_vec()))
            };
            let parsed = match op {
                0 => Some(Op::RawToFollower(channel, p.to_vec())),
                1 => Some(Op::RawToHost(channel, p.to_vec())),
                2 => signed(Op::HostSigned),
                3 => signed(Op::OtherToFollower),
                4 => signed(Op::OtherToHost),
                5 => signed(Op::FollowerToHost),
                6 => Some(Op::Tick(u16::from_be_bytes([
                    p.first().copied().unwrap_or(0),
                    p.get(1).copied().unwrap_or(0),
                ]))),
                _ => Some(Op::Signal(p.to_vec())),
            };
            ops.extend(parsed);
        }
        ops
    }
}

/// The data channels a fuzz input may name (the real three, and one that
/// does not exist).
fn channel(c: u8) -> ChannelId {
    match c % 4 {
        0 => channels::CONTROL.id,
        1 => channels::CHAT.id,
        2 => channels::CLOCK.id,
        _ => ChannelId::new(999),
    }
}

/// Host and follower sessions of a fixed room take a program of arbitrary
/// frames (raw, or correctly signed by the host, by another member or by the
/// follower), signaling messages and time steps. Never panics, output
/// queues stay bounded, and without a frame signed by the host key the
/// follower's host stays user 1 (a member's or forged frame never moves
/// host authority).
pub fn session_input(data: &[u8]) {
    let mut room = Room::new();
    let mut host_signed = false;
    let from_host = uid(HOST);
    let from_other = uid(OTHER);
    let from_follower = uid(FOLLOWER);
    for op in Op::decode(data) {
        let now = room.now;
        match op {
            Op::RawToFollower(c, b) => room.follower.handle_frame(from_host, channel(c), &b, now),
            Op::RawToHost(c, b) => room.host.handle_frame(from_follower, channel(c), &b, now),
            Op::HostSigned(c, k, b) => {
                host_signed = true;
                if let Some(f) = resign(&user_key(HOST), k, &b) {
                    room.follower.handle_frame(from_host, channel(c), &f, now);
                }
            }
            Op::OtherToFollower(c, k, b) => {
                if let Some(f) = resign(&user_key(OTHER), k, &b) {
                    room.follower.handle_frame(from_other, channel(c), &f, now);
                }
            }
            Op::OtherToHost(c, k, b) => {
                if let Some(f) = resign(&user_key(OTHER), k, &b) {
                    room.host.handle_frame(from_other, channel(c), &f, now);
                }
            }
            Op::FollowerToHost(c, k, b) => {
                if let Some(f) = resign(&user_key(FOLLOWER), k, &b) {
                    room.host.handle_frame(from_follower, channel(c), &f, now);
                }
            }
            Op::Tick(ms) => {
                room.advance(TimeDelta::from_millis(i64::from(ms)));
                room.deliver();
            }
            Op::Signal(b) => {
                if let Ok(m) = std::str::from_utf8(&b).map(ServerMessage::from_json)
                    && let Ok(m) = m
                {
                    room.follower.handle_signal(m, now);
                }
            }
        }
        room.pump();
        // Anything the host forwards is signed by the host key (or relayed
        // verbatim from a member, which the follower checks itself).
        if !host_signed {
            let host = room.follower.host();
            assert!(
                host.is_none() || host == Some(from_host),
                "host moved to {host:?} without a host-signed frame"
            );
        }
    }
    let _ = room.follower.playback();
    let _ = room.follower.sync_status(room.now);
}
