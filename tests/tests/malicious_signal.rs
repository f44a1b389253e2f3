//! A malicious signaling path, built on the real server: the follower's
//! signaling WebSocket goes through an in-process relaying proxy in front of
//! the real server (real SQLite, real HTTP/WebSocket on 127.0.0.1); the host
//! connects to the server directly. Everything else is real: two native
//! drivers (`peer/src/native/driver.rs`) and real WebRTC (str0m) over
//! loopback UDP.
//!
//! * `PassThrough`: the proxy relays verbatim — the host's signed DTLS
//!   binding verifies (control: the proxy itself breaks nothing).
//! * `Mitm`: the proxy terminates WebRTC on both sides with its own DTLS
//!   certificate (two str0m transports of its own), answers the follower's
//!   offer itself and offers to the host in the follower's name, so the
//!   `a=fingerprint` each side sees is the attacker's — and relays every
//!   data-channel message between them. The follower, which pinned the host
//!   key from the invite link, detects the mismatch through the host-signed
//!   binding and drops the connection (`BindingMismatch { pinned: true }`).
//! * `DropBind`: as `Mitm`, but the proxy removes the host's signed `Bind`
//!   from what it relays, so the mismatch is never shown. The pinned
//!   follower applies no host control over the unbound link, and closes
//!   and reports it at `BIND_DEADLINE` (`BindingMissing`).
//! * `ForgeHost`: the proxy swaps the server's certificate-signing key for
//!   its own, re-issues every certificate of `hello` / `member_joined` /
//!   `host_changed` with it, and gives the host certificate a key of its
//!   own. The follower that pinned the host key refuses the forged host
//!   certificate (`HostKeyMismatch`) and never takes commands from it.
//!
//! And a server that installs a host by itself (item 1 of issue 15): the
//! real server's REST handoff, made without the host's signed `Handoff`
//! (a hostile server needs no credentials for that), to a member `T` that
//! then registers a host key of its own and sends `T`-signed commands over
//! real WebRTC (webrtc-rs). The host refuses the change (it only ever gives
//! up control through a handoff it signed), shows the refusal in `status`,
//! and keeps hosting; the pinned follower refuses it too and keeps
//! following the host: the room does not split.
//!
//! And a server that adds a member by itself (item 3 of issue 15): a
//! member `T` with a valid server certificate but without the invite
//! link's admission secret chats, asks the host to pause and reports
//! buffering, over real WebRTC (webrtc-rs). In a room whose invite link
//! carried the secret, the host and the pinned follower drop every one of
//! its frames (`not_admitted`), show it as not approved by the host, never
//! show its chat or its ask, and the room stays in sync; the members that
//! knocked with the secret are heard as before.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "support/inproc.rs"]
mod inproc;
#[path = "support/usurper.rs"]
mod usurper;
#[path = "support/webrtc_peer.rs"]
mod webrtc_peer;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use inproc::{row, wait_for, wait_in_sync};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use usurper::Usurper;
use watchparty_peer::cert::SignedCertificate;
use watchparty_peer::channels::ChannelId;
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::ids::{Epoch, PositionMs, RoomMs};
use watchparty_peer::ids::{Role, UserId};
use watchparty_peer::message::{
    ChatText, Emoji, Kind, Message, Readiness, RequestedCommand, SignerClass, Status,
};
use watchparty_peer::native::candidates::HostAddrs;
use watchparty_peer::native::config_store::new_signing_key;
use watchparty_peer::native::driver::{DriverCommand, DriverEvent, DriverHandle, StatusSnapshot};
use watchparty_peer::native::rtc::{TransportConfig, TransportEvent};
use watchparty_peer::native::udp::UdpRtc;
use watchparty_peer::session::{SessionConfig, UserCommand};
use watchparty_peer::signaling::{BoundedVec, ClientMessage, RosterEntry, Sdp, ServerMessage};
use watchparty_peer::time::MediaPos;

/// How long a test waits for the event it expects.
const EVENT_WAIT: Duration = Duration::from_secs(30);

/// What the proxy does to the follower's signaling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    PassThrough,
    Mitm,
    DropBind,
    ForgeHost,
    /// Relays WebRTC negotiation with this user only (the follower reaches
    /// nobody else, the host included).
    OnlyWith(UserId),
}

impl Mode {
    /// The proxy terminates WebRTC itself.
    fn terminates(self) -> bool {
        matches!(self, Self::Mitm | Self::DropBind)
    }
}

/// Whether the proxy in `mode` blocks negotiation with `peer`.
fn blocked(mode: Mode, peer: UserId) -> bool {
    matches!(mode, Mode::OnlyWith(u) if u != peer)
}

/// Offset of the kind byte in a frame (magic, version, kind).
const KIND_OFFSET: usize = 3;

// ------------------------------------------------------------------ proxy --

/// The attacker's transport keys: `A` faces the follower, `B` the host.
const TO_FOLLOWER: u64 = 1;
const TO_HOST: u64 = 2;

/// Keys the forging proxy signs with.
struct Forger {
    server: SigningKey,
    host: SigningKey,
}

impl Forger {
    fn reissue(&self, cert: &SignedCertificate) -> SignedCertificate {
        let mut body = cert.claimed().clone();
        if body.role == Role::Host {
            body.key = self.host.public_key();
        }
        SignedCertificate::issue(&self.server, body).unwrap()
    }

    fn entry(&self, e: &RosterEntry) -> RosterEntry {
        RosterEntry {
            certificate: self.reissue(&e.certificate),
            online: e.online,
        }
    }

    fn rewrite(&self, msg: ServerMessage) -> ServerMessage {
        match msg {
            ServerMessage::Hello {
                protocol,
                room,
                you,
                epoch,
                server_key: _,
                certificate,
                members,
                ice_servers,
                offerer,
            } => ServerMessage::Hello {
                protocol,
                room,
                you,
                epoch,
                server_key: self.server.public_key(),
                certificate: self.reissue(&certificate),
                members: BoundedVec::new(
                    members.as_slice().iter().map(|e| self.entry(e)).collect(),
                )
                .unwrap(),
                ice_servers,
                offerer,
            },
            ServerMessage::MemberJoined { member } => ServerMessage::MemberJoined {
                member: self.entry(&member),
            },
            ServerMessage::HostChanged { certificate } => ServerMessage::HostChanged {
                certificate: self.reissue(&certificate),
            },
            ServerMessage::RoleChanged { certificate } => ServerMessage::RoleChanged {
                certificate: self.reissue(&certificate),
            },
            other => other,
        }
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;
type Upstream =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Counters the test reads back (what the proxy really did).
#[derive(Debug, Default, Clone, Copy)]
struct ProxyStats {
    offers_terminated: u32,
    frames_relayed: u32,
    binds_dropped: u32,
    certificates_forged: u32,
}

/// Relays one follower connection to `upstream`, applying `mode`.
async fn proxy_connection(
    down: Ws,
    upstream: String,
    mode: Mode,
    stats: tokio::sync::watch::Sender<ProxyStats>,
) {
    let (mut up, _) = tokio_tungstenite::connect_async(upstream).await.unwrap();
    let mut down = down;
    let bind = || async {
        UdpRtc::<u64>::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            HostAddrs::loopback(),
            TransportConfig::default(),
        )
        .await
        .unwrap()
    };
    let mut a = bind().await;
    let mut b = bind().await;
    let forger = Forger {
        server: SigningKey::from_seed(&[0xbd; 32]).unwrap(),
        host: SigningKey::from_seed(&[0xbe; 32]).unwrap(),
    };
    let mut to_host: VecDeque<(ChannelId, Vec<u8>)> = VecDeque::new();
    let mut to_follower: VecDeque<(ChannelId, Vec<u8>)> = VecDeque::new();
    loop {
        tokio::select! {
            m = down.next() => {
                let Some(Ok(m)) = m else { break };
                if let (Mode::OnlyWith(_), WsMessage::Text(t)) = (mode, &m)
                    && let Ok(
                        ClientMessage::Offer { to, .. }
                        | ClientMessage::Answer { to, .. }
                        | ClientMessage::Ice { to, .. },
                    ) = ClientMessage::from_json(t.as_str())
                    && blocked(mode, to)
                {
                    continue;
                }
                if !mode.terminates() {
                    if up.send(m).await.is_err() { break }
                    continue;
                }
                if let WsMessage::Text(t) = &m
                    && let Ok(msg) = ClientMessage::from_json(t.as_str())
                {
                    match msg {
                        ClientMessage::Offer { to, sdp } => {
                            // Answer the follower ourselves, offer to the host
                            // (a renegotiation after the first one is ignored).
                            if let (Ok(answer), Ok(offer)) = (
                                a.accept_offer(TO_FOLLOWER, sdp.as_str()),
                                b.create_offer(TO_HOST),
                            ) {
                                send_down(&mut down, ServerMessage::Answer { from: to, sdp: Sdp::new(answer).unwrap() }).await;
                                send_up(&mut up, ClientMessage::Offer { to, sdp: Sdp::new(offer).unwrap() }).await;
                                stats.send_modify(|s| s.offers_terminated += 1);
                            }
                            continue;
                        }
                        ClientMessage::Answer { sdp, .. } => {
                            let _ = a.accept_answer(TO_FOLLOWER, sdp.as_str());
                            continue;
                        }
                        // Our own candidates are in our SDP; the follower's
                        // are in its offer.
                        ClientMessage::Ice { .. } => continue,
                        _ => {}
                    }
                }
                if up.send(m).await.is_err() { break }
            }
            m = up.next() => {
                let Some(Ok(m)) = m else { break };
                let WsMessage::Text(t) = &m else {
                    if down.send(m).await.is_err() { break }
                    continue;
                };
                let Ok(msg) = ServerMessage::from_json(t.as_str()) else {
                    if down.send(m).await.is_err() { break }
                    continue;
                };
                match (mode, msg) {
                    (
                        Mode::OnlyWith(_),
                        ServerMessage::Offer { from, .. }
                        | ServerMessage::Answer { from, .. }
                        | ServerMessage::Ice { from, .. },
                    ) if blocked(mode, from) => {}
                    (Mode::PassThrough | Mode::OnlyWith(_), _) => {
                        if down.send(m).await.is_err() { break }
                    }
                    (Mode::ForgeHost, msg) => {
                        let forged = forger.rewrite(msg.clone());
                        if forged != msg {
                            stats.send_modify(|s| s.certificates_forged += 1);
                        }
                        send_down(&mut down, forged).await;
                    }
                    (Mode::Mitm | Mode::DropBind, ServerMessage::Offer { from, sdp }) => {
                        if let (Ok(answer), Ok(offer)) = (
                            b.accept_offer(TO_HOST, sdp.as_str()),
                            a.create_offer(TO_FOLLOWER),
                        ) {
                            send_up(&mut up, ClientMessage::Answer { to: from, sdp: Sdp::new(answer).unwrap() }).await;
                            send_down(&mut down, ServerMessage::Offer { from, sdp: Sdp::new(offer).unwrap() }).await;
                            stats.send_modify(|s| s.offers_terminated += 1);
                        }
                    }
                    (Mode::Mitm | Mode::DropBind, ServerMessage::Answer { sdp, .. }) => {
                        let _ = b.accept_answer(TO_HOST, sdp.as_str());
                    }
                    (Mode::Mitm | Mode::DropBind, ServerMessage::Ice { .. }) => {}
                    (Mode::Mitm | Mode::DropBind, msg) => send_down(&mut down, msg).await,
                }
            }
            ev = a.next_event() => {
                if let TransportEvent::Data { channel, data, .. } = ev {
                    to_host.push_back((channel, data));
                }
            }
            ev = b.next_event() => {
                if let TransportEvent::Data { channel, data, .. } = ev {
                    if mode == Mode::DropBind
                        && data.get(KIND_OFFSET) == Some(&Kind::Bind.to_byte())
                    {
                        stats.send_modify(|s| s.binds_dropped += 1);
                    } else {
                        to_follower.push_back((channel, data));
                    }
                }
            }
        }
        // Relay what each side's channels can take now (a channel may open
        // on one side before the other).
        while let Some((c, d)) = to_host.front() {
            if b.send(TO_HOST, *c, d).is_err() {
                break;
            }
            to_host.pop_front();
            stats.send_modify(|s| s.frames_relayed += 1);
        }
        while let Some((c, d)) = to_follower.front() {
            if a.send(TO_FOLLOWER, *c, d).is_err() {
                break;
            }
            to_follower.pop_front();
            stats.send_modify(|s| s.frames_relayed += 1);
        }
    }
}

async fn send_down(down: &mut Ws, msg: ServerMessage) {
    let _ = down
        .send(WsMessage::Text(msg.to_json().unwrap().into()))
        .await;
}

async fn send_up(up: &mut Upstream, msg: ClientMessage) {
    let _ = up
        .send(WsMessage::Text(msg.to_json().unwrap().into()))
        .await;
}

/// Starts the proxy for the room signaling URL `upstream`; returns the URL
/// the follower uses instead and the proxy's counters.
async fn start_proxy(
    upstream: String,
    mode: Mode,
) -> (String, tokio::sync::watch::Receiver<ProxyStats>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::watch::channel(ProxyStats::default());
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let Ok(ws) = tokio_tungstenite::accept_async(tcp).await else {
                continue;
            };
            tokio::spawn(proxy_connection(ws, upstream.clone(), mode, tx.clone()));
        }
    });
    (format!("ws://{addr}/proxied"), rx)
}

// ------------------------------------------------------------------- room --

fn session_detail(e: &DriverEvent, needle: &str) -> bool {
    matches!(e, DriverEvent::Session { detail } if detail.contains(needle))
}

/// The real server with a host and one invited follower: the host connects
/// directly, the follower (pinned to the host key) through the proxy.
async fn run_room(
    mode: Mode,
) -> (
    inproc::Room,
    DriverHandle,
    DriverHandle,
    tokio::sync::watch::Receiver<ProxyStats>,
) {
    let mut room = inproc::room(1).await;
    let (proxied, stats) = start_proxy(room.signal_url(1), mode).await;
    let mut host = room.driver(0, 0).await;
    wait_for(&mut host, "host joined", EVENT_WAIT, |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let follower = room.driver_via(1, 0, Some(proxied)).await;
    (room, host, follower, stats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaying_proxy_alone_breaks_nothing() {
    let (_room, _host, mut follower, _) = run_room(Mode::PassThrough).await;
    let (_, seen) = wait_for(&mut follower, "binding verified", EVENT_WAIT, |e| {
        session_detail(e, "BindingVerified")
    })
    .await;
    assert!(
        !seen.iter().any(|e| session_detail(e, "BindingMismatch")),
        "{seen:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dtls_mitm_by_the_signaling_path_is_detected_by_the_pinned_follower() {
    let (_room, _host, mut follower, stats) = run_room(Mode::Mitm).await;
    let (event, seen) = wait_for(&mut follower, "binding mismatch", EVENT_WAIT, |e| {
        session_detail(e, "BindingMismatch")
    })
    .await;
    let DriverEvent::Session { detail } = &event else {
        unreachable!()
    };
    assert!(detail.contains("pinned: true"), "{detail}");
    assert!(
        !seen.iter().any(|e| session_detail(e, "BindingVerified")),
        "a MITM connection must never verify: {seen:#?}"
    );
    // The attack really happened: WebRTC was terminated by the proxy and
    // the host's frames (including its signed binding) reached the
    // follower only through it.
    let s = *stats.borrow();
    assert!(s.offers_terminated >= 1, "{s:?}");
    assert!(s.frames_relayed >= 1, "{s:?}");
    // The follower drops the connection: no command of the host is applied
    // over it afterwards.
    let status = follower.status().await.unwrap();
    assert_eq!(status.commands_applied, 0, "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_bind_closes_the_pinned_followers_link_and_nothing_is_applied_over_it() {
    let (_room, _host, mut follower, stats) = run_room(Mode::DropBind).await;
    // Before the deadline the link is up but unbound, and the host's
    // control relayed over it is refused, not applied.
    let t0 = std::time::Instant::now();
    let before = loop {
        let s = follower.status().await.unwrap();
        if s.drops.get("unbound_link").copied().unwrap_or(0) >= 1 {
            break s;
        }
        assert!(t0.elapsed() < EVENT_WAIT, "no host control relayed: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("follower before the deadline: {before:?}");
    assert_eq!(
        before.commands_applied + before.states_applied,
        0,
        "{before:?}"
    );
    assert_eq!(before.playback, None, "{before:?}");
    assert_eq!(before.bindings_missing, 0, "{before:?}");
    let host_row = before.peers.iter().find(|p| p.is_host).expect("host row");
    assert!(!host_row.bound, "{before:?}");
    assert!(host_row.channels_open > 0, "still linked: {before:?}");
    // At the deadline the link is closed and reported.
    let (_, seen) = wait_for(&mut follower, "binding missing", EVENT_WAIT, |e| {
        session_detail(e, "BindingMissing")
    })
    .await;
    assert!(
        !seen
            .iter()
            .any(|e| session_detail(e, "BindingVerified") || session_detail(e, "BindingMismatch")),
        "{seen:#?}"
    );
    let after = follower.status().await.unwrap();
    println!("follower after the deadline: {after:?}");
    assert_eq!(after.bindings_missing, 1, "{after:?}");
    assert_eq!(
        after.commands_applied + after.states_applied,
        0,
        "{after:?}"
    );
    // The attack really happened: WebRTC terminated by the proxy, frames
    // relayed, the host's Bind removed.
    let s = *stats.borrow();
    assert!(s.offers_terminated >= 1, "{s:?}");
    assert!(s.frames_relayed >= 1, "{s:?}");
    assert!(s.binds_dropped >= 1, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_host_certificate_is_refused_by_the_pinned_follower() {
    let (_room, _host, mut follower, stats) = run_room(Mode::ForgeHost).await;
    let (_, seen) = wait_for(&mut follower, "host certificate refused", EVENT_WAIT, |e| {
        session_detail(e, "HostKeyMismatch")
    })
    .await;
    assert!(
        !seen
            .iter()
            .any(|e| matches!(e, DriverEvent::Joined { host: Some(_), .. })),
        "the forged host must not be accepted: {seen:#?}"
    );
    assert!(stats.borrow().certificates_forged >= 1);
    let status = follower.status().await.unwrap();
    assert_eq!(status.host, None, "{status:?}");
}

// ------------------------------------------------- replay to a rejoiner --

/// The host and a pinned follower connected directly, the room's item
/// loaded on both; the host's user id.
async fn host_and_follower_loaded(room: &mut inproc::Room) -> (DriverHandle, DriverHandle, u64) {
    let mut host = room.driver(0, 0).await;
    let (joined, _) = wait_for(&mut host, "host joined", EVENT_WAIT, |e| {
        matches!(e, DriverEvent::Joined { .. })
    })
    .await;
    let DriverEvent::Joined { you: host_id, .. } = joined else {
        unreachable!()
    };
    let mut follower = room.driver(1, 0).await;
    wait_for(&mut follower, "follower connected", EVENT_WAIT, |e| {
        matches!(e, DriverEvent::PeerConnected { .. })
    })
    .await;
    host.command(UserCommand::Load(room.item.clone()))
        .await
        .unwrap();
    wait_for(&mut follower, "media loaded", EVENT_WAIT, |e| {
        matches!(e, DriverEvent::MediaLoaded { .. })
    })
    .await;
    (host, follower, host_id)
}

/// Where the room was when the hostile member recorded the host's frames.
const OLD_POSITION_MS: u64 = 20_000;
/// Where the host moves the room afterwards.
const NEW_POSITION_MS: u64 = 120_000;
/// How much older than the skew window the replayed frames are, ms.
const AGE_MARGIN_MS: f64 = 2_000.0;

/// Issue #15 item 4: a hostile member records the host's signed frames,
/// waits until they are older than the skew window, and replays them to
/// the follower when it rejoins (a new session: empty replay memory, no
/// clock estimate yet; the proxy keeps it from reaching the host, so the
/// replay is all it hears). The rejoiner refuses every one (`skewed_time`,
/// checked against its wall clock) and applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_frames_replayed_to_a_rejoiner_are_refused() {
    let mut room = inproc::room(2).await;
    let (host, follower, host_id) = host_and_follower_loaded(&mut room).await;
    let host_id = UserId::new(host_id).unwrap();
    host.command(UserCommand::Seek(MediaPos::from_millis(OLD_POSITION_MS)))
        .await
        .unwrap();

    // The hostile member joins and records what the host signs for it
    // (its Bind and the State it gets on joining, at the old position).
    let mut t = Usurper::connect(&room.apis[2], room.room, room.signal_url(2)).await;
    let t0 = std::time::Instant::now();
    let kind = |f: &Vec<u8>| f.get(KIND_OFFSET).copied().and_then(Kind::from_byte);
    let mut recorded: Vec<Vec<u8>> = Vec::new();
    while !recorded.iter().any(|f| kind(f) == Some(Kind::State)) {
        // Only what the host signed (members' frames forwarded by the host
        // are signed by keys the rejoiner may not know).
        recorded.extend(
            t.recorded_control(host_id)
                .into_iter()
                .filter(|f| kind(f).is_some_and(|k| k.signer() == SignerClass::Host)),
        );
        assert!(t0.elapsed() < EVENT_WAIT, "no State recorded from the host");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let recorded_at = host.status().await.unwrap().room_ms.unwrap();
    // The host moves on.
    host.command(UserCommand::Seek(MediaPos::from_millis(NEW_POSITION_MS)))
        .await
        .unwrap();
    // The follower leaves; the frames age past the skew window.
    follower.commands.send(DriverCommand::Quit).await.unwrap();
    let _ = follower.task.await;
    let window = SessionConfig::new(room.room).max_skew_ms as f64;
    loop {
        let now = host.status().await.unwrap().room_ms.unwrap();
        if now - recorded_at > window + AGE_MARGIN_MS {
            break;
        }
        assert!(
            t0.elapsed() < EVENT_WAIT * 3,
            "the host's room clock does not advance"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // The follower rejoins (new process: new session key, new session),
    // reaching only the hostile member, which replays everything at once.
    let (proxied, _) = start_proxy(room.signal_url(1), Mode::OnlyWith(t.me)).await;
    let rejoiner = room.driver_via(1, 0, Some(proxied)).await;
    let rejoiner_id = t.answer_next_offer().await;
    t.replay(rejoiner_id, &recorded).await;
    let n = recorded.len() as u64;
    let t1 = std::time::Instant::now();
    let s = loop {
        let s = rejoiner.status().await.unwrap();
        if s.peers
            .iter()
            .any(|p| p.user == t.me.get() && p.accepted + p.drops.values().sum::<u64>() >= n)
        {
            break s;
        }
        assert!(t1.elapsed() < EVENT_WAIT, "replay never judged: {s:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("rejoiner after the replay: {s:?}");
    let from_t = row(&s, t.me);
    assert_eq!(from_t.accepted, 0, "{s:?}");
    assert_eq!(from_t.drops.get("skewed_time").copied(), Some(n), "{s:?}");
    assert_eq!(s.commands_applied + s.states_applied, 0, "{s:?}");
    assert_eq!(s.playback, None, "an old state was applied: {s:?}");
}

// ------------------------------------------------ server-installed host --

/// Where the usurper's commands put the media (far from the host's).
const USURPER_POSITION_MS: u64 = 5_000;
/// Where the host's media is before the attack.
const HOST_POSITION_MS: u64 = 30_000;
/// Where the host seeks after the attack (the follower must follow).
const HOST_LATER_POSITION_MS: u64 = 90_000;
/// Position tolerance between host and follower once settled, ms.
const SYNC_TOLERANCE_MS: f64 = 50.0;

/// [`host_and_follower_loaded`], then playing from `HOST_POSITION_MS`
/// with the follower in sync.
async fn playing_in_sync(room: &mut inproc::Room) -> (DriverHandle, DriverHandle, u64) {
    let (host, follower, host_id) = host_and_follower_loaded(room).await;
    host.command(UserCommand::Seek(MediaPos::from_millis(HOST_POSITION_MS)))
        .await
        .unwrap();
    host.command(UserCommand::Play).await.unwrap();
    wait_in_sync(
        &host,
        &follower,
        false,
        HOST_POSITION_MS as f64,
        SYNC_TOLERANCE_MS,
        EVENT_WAIT,
    )
    .await;
    (host, follower, host_id)
}

/// The host seeks to `HOST_LATER_POSITION_MS`; the follower follows it in
/// sync (the room did not split).
async fn seek_and_follow(host: &DriverHandle, follower: &DriverHandle) {
    host.command(UserCommand::Seek(MediaPos::from_millis(
        HOST_LATER_POSITION_MS,
    )))
    .await
    .unwrap();
    wait_in_sync(
        host,
        follower,
        false,
        HOST_LATER_POSITION_MS as f64,
        SYNC_TOLERANCE_MS,
        EVENT_WAIT,
    )
    .await;
}

/// Frames from `user` the peer has judged (accepted or dropped).
fn judged(s: &StatusSnapshot, user: UserId) -> u64 {
    let p = row(s, user);
    p.accepted + p.drops.values().sum::<u64>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_installed_host_is_refused_by_the_host_and_the_pinned_follower() {
    let mut room = inproc::room(2).await;
    let (host, follower, host_id) = playing_in_sync(&mut room).await;
    let before = host.status().await.unwrap();
    assert!(before.is_host, "{before:?}");

    // T joins with a valid member certificate and connects to both.
    let mut t = Usurper::connect(&room.apis[2], room.room, room.signal_url(2)).await;
    let usurper = t.me;
    let judged_before = [
        judged(&host.status().await.unwrap(), usurper),
        judged(&follower.status().await.unwrap(), usurper),
    ];

    // The server makes T the host: the REST handoff (the host's own
    // process never signed a Handoff), then T registers a key of its own.
    room.apis[0]
        .handoff(&room.room.to_string(), usurper.get())
        .await
        .unwrap();
    let t_key = new_signing_key().unwrap();
    let t_epoch = t.register(&t_key).await;
    assert!(t_epoch.0 > before.epoch, "{t_epoch:?} vs {before:?}");
    // T's signed commands: pause and seek the room to 5 s.
    t.pause_and_seek(&t_key, t_epoch, USURPER_POSITION_MS).await;
    // Both honest peers have judged T's two commands.
    for (i, d) in [&host, &follower].into_iter().enumerate() {
        let t0 = std::time::Instant::now();
        while judged(&d.status().await.unwrap(), usurper) < judged_before[i] + 2 {
            assert!(t0.elapsed() < EVENT_WAIT, "peer {i} never saw T's commands");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // The host is still the host, in its own epoch, playing its timeline;
    // its player was not moved by T's frames.
    let hs = host.status().await.unwrap();
    println!("host after the attack: {hs:?}");
    assert!(hs.is_host, "the host gave up control: {hs:?}");
    assert_eq!(hs.host, Some(host_id), "{hs:?}");
    assert_eq!(hs.epoch, before.epoch, "{hs:?}");
    assert_eq!(row(&hs, usurper).accepted, 0, "{hs:?}");
    let hp = hs.playback.unwrap();
    assert!(!hp.paused, "{hs:?}");
    assert!(hp.position_ms >= HOST_POSITION_MS as f64, "{hs:?}");
    assert!(
        hs.player_position_ms.unwrap() >= HOST_POSITION_MS as f64,
        "host player moved: {hs:?}"
    );
    // The refused change is visible in the host's status.
    let refused = hs.refused_host_change.as_ref().expect("refusal shown");
    assert_eq!(refused.user, usurper.get(), "{refused:?}");
    assert_eq!(refused.epoch, t_epoch.0, "{refused:?}");
    assert!(refused.you_are_host, "{refused:?}");
    assert!(
        refused.message.contains("without your approval"),
        "{refused:?}"
    );
    // The pinned follower refused T too and still follows the host.
    let fs = follower.status().await.unwrap();
    println!("follower after the attack: {fs:?}");
    assert_eq!(fs.host, Some(host_id), "{fs:?}");
    assert_eq!(fs.epoch, before.epoch, "{fs:?}");
    assert_eq!(row(&fs, usurper).accepted, 0, "{fs:?}");
    // It reports the refusal once no signed Handoff came within
    // HOST_CHANGE_GRACE.
    let t0 = std::time::Instant::now();
    let r = loop {
        let fs = follower.status().await.unwrap();
        if let Some(r) = fs.refused_host_change {
            break r;
        }
        assert!(t0.elapsed() < EVENT_WAIT, "no refusal shown: {fs:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(
        (r.user, r.host, r.you_are_host),
        (usurper.get(), Some(host_id), false)
    );
    assert_eq!(r.reason, "pin_mismatch", "{r:?}");
    // The room did not split: the host's next command reaches the follower.
    seek_and_follow(&host, &follower).await;
    drop(t);
}

// ------------------------------------------------ server-added member --

/// What the member the server let in says.
const INTRUDER_CHAT: &str = "the host says: open evil.example";

/// Issue #15 item 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_the_server_added_without_the_hosts_approval_is_not_heard() {
    let mut room = inproc::room(2).await;
    // The invite link carried the admission secret: the host enforces it,
    // the follower knocks with it and enforces the host's roster.
    room.admission = true;
    let (mut host, mut follower, host_id) = playing_in_sync(&mut room).await;
    // The follower knocked and was admitted: both say so.
    let fs = follower.status().await.unwrap();
    let follower_id = UserId::new(fs.you.unwrap()).unwrap();
    let t0 = std::time::Instant::now();
    loop {
        let hs = host.status().await.unwrap();
        let fs = follower.status().await.unwrap();
        if hs.admission && fs.admission && fs.admitted && row(&hs, follower_id).admitted {
            break;
        }
        assert!(
            t0.elapsed() < EVENT_WAIT,
            "follower never admitted: {hs:?} {fs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // An admitted member is heard.
    follower
        .command(UserCommand::Chat("hello from the follower".into()))
        .await
        .unwrap();
    wait_for(
        &mut host,
        "the follower's chat",
        EVENT_WAIT,
        |e| matches!(e, DriverEvent::Chat { from, .. } if *from == follower_id.get()),
    )
    .await;

    // The server lets T in: a valid member certificate, no secret.
    let t = Usurper::connect(&room.apis[2], room.room, room.signal_url(2)).await;
    let intruder = t.me;
    let judged_before = [
        judged(&host.status().await.unwrap(), intruder),
        judged(&follower.status().await.unwrap(), intruder),
    ];
    let hs = host.status().await.unwrap();
    let epoch = Epoch(hs.epoch);
    let at = hs.room_ms.unwrap() as i64;
    let msgs = [
        Message::Chat(ChatText::new(INTRUDER_CHAT).unwrap()),
        Message::Reaction(Emoji::new("🎉").unwrap()),
        Message::Request(RequestedCommand::Pause),
        Message::Status(Status {
            readiness: Readiness::Buffering,
            item: Some(room.item.hash),
            position: PositionMs::new(HOST_POSITION_MS).unwrap(),
            at: RoomMs(at),
            detached: false,
        }),
    ];
    t.member_frames(epoch, 0, at, &msgs).await;
    let n = msgs.len() as u64;
    // Both honest peers judged every frame of T, and dropped each.
    for (i, d) in [&host, &follower].into_iter().enumerate() {
        let t0 = std::time::Instant::now();
        let s = loop {
            let s = d.status().await.unwrap();
            if judged(&s, intruder) >= judged_before[i] + n {
                break s;
            }
            assert!(
                t0.elapsed() < EVENT_WAIT,
                "peer {i} never judged T's frames: {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        println!("peer {i} after T's frames: {s:?}");
        let r = row(&s, intruder);
        assert_eq!(r.accepted, 0, "peer {i}: {s:?}");
        assert!(
            r.drops.get("not_admitted").copied().unwrap_or(0) >= n,
            "peer {i}: {s:?}"
        );
        // Shown as not approved by the host; the follower as approved.
        assert!(s.admission, "peer {i}");
        assert!(!r.admitted, "peer {i}: {s:?}");
        if i == 0 {
            assert!(row(&s, follower_id).admitted, "{s:?}");
            // No ask of T waits for the host's user.
            assert!(s.asks.is_empty(), "{s:?}");
        } else {
            assert!(row(&s, host_id_of(host_id)).admitted, "{s:?}");
        }
    }
    // T's chat was never shown, on either peer.
    for (i, d) in [&mut host, &mut follower].into_iter().enumerate() {
        while let Ok(e) = d.events.try_recv() {
            assert!(
                !matches!(&e, DriverEvent::Chat { from, .. } if *from == intruder.get()),
                "peer {i} showed T's chat: {e:?}"
            );
        }
    }
    // The room did not wait for T's "buffering" and keeps sync: the host's
    // next command reaches the follower.
    let hs = host.status().await.unwrap();
    assert!(hs.playback.is_some_and(|p| !p.paused), "{hs:?}");
    seek_and_follow(&host, &follower).await;
    drop(t);
}

fn host_id_of(id: u64) -> UserId {
    UserId::new(id).unwrap()
}
