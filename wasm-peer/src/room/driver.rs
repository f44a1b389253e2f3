//! The driver's state and its handling of every [`Input`] (see the parent
//! module for the loop).

use std::collections::{BTreeMap, VecDeque};
use std::rc::{Rc, Weak};

use serde_json::{Value, json};
use wasm_bindgen_futures::spawn_local;
use watchparty_peer::admit::AdmitSecret;
use watchparty_peer::backoff::Backoff;
use watchparty_peer::channels::ChannelId;
use watchparty_peer::crypto::{PublicKey, SigningKey};
use watchparty_peer::ice::{CandidateType, LINK_FAILURE_TIMEOUT, LinkFailure};
use watchparty_peer::ids::{Role, RoomId, UserId};
use watchparty_peer::message::MediaItem;
use watchparty_peer::negotiation::{Links, OfferDecision, Retry};
use watchparty_peer::session::{
    ChannelOpen, CommandError, Event, Output, Session, SessionConfig, UserCommand,
};
use watchparty_peer::signaling::{
    self, ClientMessage, IceServer as WireIceServer, ServerMessage, Token,
};
use watchparty_peer::time::{LocalTime, WallTime};

use super::conn::Conn;
use super::view;
use super::{Bounded, Input, MAX_PENDING_EVENTS, Shared, deliver};
use crate::clock::{Clock, wall_ms};
use crate::http::Api;
use crate::player::{IDLE_SAMPLE_INTERVAL_MS, MediaPlayer, PlayerInput, SAMPLE_INTERVAL_MS};
use crate::rtc::{ConnectionState, IceCandidate, IceServer, SdpKind, SessionDescription};
use crate::signal::{
    CLOSE_FORBIDDEN, CLOSE_UNAUTHORIZED, MAX_AUTH_FAILURES, SignalInput, SignalSocket,
};

/// How the driver reaches the signaling server.
#[derive(Clone)]
pub enum SignalMode {
    /// A WebSocket to this `ws(s)://…/api/v1/rooms/{id}/signal` URL.
    WebSocket(String),
    /// In-page signaling: outgoing messages go to this function, server
    /// messages come in through [`super::inject_server_message`]. For tests
    /// that wire peers in one page without a server.
    InPage(Rc<dyn Fn(ClientMessage)>),
}

impl std::fmt::Debug for SignalMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::WebSocket(u) => f.debug_tuple("WebSocket").field(u).finish(),
            Self::InPage(_) => f.write_str("InPage"),
        }
    }
}

/// What the page passed to `RoomClient.join`, parsed.
#[derive(Debug)]
pub struct Options {
    /// The signaling path.
    pub signal: SignalMode,
    /// REST base and token.
    pub api: Api,
    /// The room.
    pub room: RoomId,
    /// Host key pinned by the invite link.
    pub pinned_host: Option<PublicKey>,
    /// The room's admission secret (invite link `a=`, or the host's,
    /// derived from its room key; docs/protocol.md §2.2).
    pub admit_secret: Option<AdmitSecret>,
    /// The server's certificate key, if the page knows it (else the first
    /// `hello`'s key is trusted).
    pub server_key: Option<PublicKey>,
    /// STUN/TURN servers from the page (added to the server's).
    pub ice_servers: Vec<IceServer>,
    /// Jitter seed.
    pub seed: u64,
}

/// Driver counters (in `status().counters`).
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    send_failed: u64,
    send_no_peer: u64,
    signal_dropped: u64,
    signal_invalid: u64,
    negotiation_errors: u64,
    player_errors: u64,
}

/// A member as the signaling roster shows it (display only; the session
/// verifies certificates).
#[derive(Debug, Clone)]
struct RosterEntry {
    name: String,
    role: Role,
    online: bool,
}

/// What one connection attempt tried, for explaining a link that does not
/// come up (`watchparty_peer::ice::LinkFailure`).
struct IceTried {
    /// When the connection was made.
    since: LocalTime,
    /// Candidate types we gathered.
    local: Vec<CandidateType>,
    /// Candidate types the member announced (SDP and trickled).
    remote: Vec<CandidateType>,
    /// Already explained (once per connection).
    reported: bool,
}

impl IceTried {
    fn note(list: &mut Vec<CandidateType>, line: &str) {
        if let Some(t) = CandidateType::of_line(line)
            && !list.contains(&t)
        {
            list.push(t);
        }
    }
}

/// The driver. See the parent module.
pub struct Driver {
    weak: Weak<Shared>,
    opts: Options,
    clock: Clock,
    identity: Option<SigningKey>,
    /// A copy of our key for [`Self::forge_control`] (test diagnostics).
    forge_key: Option<SigningKey>,
    public_key: PublicKey,
    server_key: Option<PublicKey>,
    session: Option<Session>,
    links: Links,
    conns: BTreeMap<UserId, Conn>,
    next_gen: u64,
    // signaling
    socket: Option<SignalSocket>,
    socket_gen: u64,
    signal_up: bool,
    signal_backoff: Backoff,
    reconnect_at: Option<LocalTime>,
    auth_failures: u32,
    stopped: Option<String>,
    server_ice: Vec<IceServer>,
    /// Per connection: what ICE tried (one entry per connection).
    ice_tried: BTreeMap<UserId, IceTried>,
    /// Why the link to a member could not be established, until it is.
    problems: BTreeMap<UserId, String>,
    // player and media
    player: MediaPlayer,
    next_sample: LocalTime,
    loading: Option<MediaItem>,
    // page view
    roster: BTreeMap<UserId, RosterEntry>,
    applied_total: u64,
    counters: Counters,
    events: Bounded<Value>,
}

impl std::fmt::Debug for Driver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Driver")
            .field("room", &self.opts.room)
            .field("signal_up", &self.signal_up)
            .field("conns", &self.conns.len())
            .finish_non_exhaustive()
    }
}

fn to_rtc_ice(servers: &[WireIceServer]) -> Vec<IceServer> {
    servers.iter().map(IceServer::from_wire).collect()
}

impl Driver {
    /// A driver for `opts` signing with `identity` (the host: the room key it
    /// created the room with) and playing into `player`; call [`Self::start`].
    pub fn new(
        weak: &Weak<Shared>,
        opts: Options,
        identity: SigningKey,
        player: MediaPlayer,
    ) -> Self {
        let public_key = identity.public_key();
        let clock = Clock::new();
        let now = clock.now();
        Self {
            weak: weak.clone(),
            server_key: opts.server_key,
            forge_key: SigningKey::from_seed(identity.expose_seed()).ok(),
            identity: Some(identity),
            public_key,
            session: None,
            links: Links::new(opts.seed),
            conns: BTreeMap::new(),
            next_gen: 1,
            socket: None,
            socket_gen: 0,
            signal_up: false,
            signal_backoff: Backoff::signaling(opts.seed.rotate_left(17)),
            reconnect_at: Some(now),
            auth_failures: 0,
            stopped: None,
            server_ice: Vec::new(),
            ice_tried: BTreeMap::new(),
            problems: BTreeMap::new(),
            player,
            next_sample: now,
            loading: None,
            roster: BTreeMap::new(),
            applied_total: 0,
            counters: Counters::default(),
            events: Bounded::new(MAX_PENDING_EVENTS),
            clock,
            opts,
        }
    }

    fn now(&self) -> LocalTime {
        self.clock.now()
    }

    /// Queues a page event (bounded).
    fn emit(&mut self, ev: Value) {
        // Over MAX_PENDING_EVENTS in one pump: dropped and counted.
        self.events.push(ev);
    }

    /// The page events collected so far.
    pub fn take_events(&mut self) -> VecDeque<Value> {
        self.events.take()
    }

    fn me(&self) -> Option<UserId> {
        self.session.as_ref().and_then(Session::user)
    }
}

/// [`LINK_FAILURE_TIMEOUT`] on the driver's clock.
fn link_failure_timeout() -> watchparty_peer::time::TimeDelta {
    watchparty_peer::time::TimeDelta::from_millis(
        i64::try_from(LINK_FAILURE_TIMEOUT.as_millis()).unwrap_or(i64::MAX),
    )
}

impl Driver {
    // ----------------------------------------------------------- timers --

    /// Milliseconds until the next timer input, if any.
    pub fn next_wake_ms(&self) -> Option<u32> {
        if self.stopped.is_some() {
            return None;
        }
        let candidates = [
            self.session.as_ref().and_then(Session::poll_timeout),
            self.links.next_retry(),
            self.reconnect_at,
            self.session.as_ref().map(|_| self.next_sample),
            self.ice_tried
                .values()
                .filter(|t| !t.reported)
                .map(|t| t.since + link_failure_timeout())
                .min(),
        ];
        candidates
            .into_iter()
            .flatten()
            .min()
            .map(|t| self.clock.delay_ms(t))
    }

    fn on_timer(&mut self) {
        let now = self.now();
        if self.reconnect_at.is_some_and(|t| t <= now) {
            self.reconnect_at = None;
            self.connect_signal();
        }
        if let Some(s) = self.session.as_mut()
            && s.poll_timeout().is_some_and(|t| t <= now)
        {
            s.handle_timeout(now);
        }
        let overdue: Vec<UserId> = self
            .ice_tried
            .iter()
            .filter(|(p, t)| {
                !t.reported
                    && t.since + link_failure_timeout() <= now
                    && !self.links.get(**p).is_some_and(|l| l.connected())
            })
            .map(|(p, _)| *p)
            .collect();
        for peer in overdue {
            // Not up within the documented time: explain, then start over.
            self.link_failed(peer);
            self.drop_conn(peer, true);
        }
        for (peer, retry) in self.links.due(now) {
            let up = self
                .conns
                .get(&peer)
                .is_some_and(|c| c.state == ConnectionState::Connected);
            match retry {
                // The browser restarts by replacing the connection: the peer
                // accepts a fresh offer in place of the old one.
                Retry::RestartIce if !up && self.conns.contains_key(&peer) => self.offer(peer),
                Retry::Offer if !up => self.offer(peer),
                _ => {}
            }
        }
        if self.next_sample <= now {
            let ms = if self.player.is_playing() {
                SAMPLE_INTERVAL_MS
            } else {
                IDLE_SAMPLE_INTERVAL_MS
            };
            self.next_sample = now + watchparty_peer::time::TimeDelta::from_millis(i64::from(ms));
            if let (Some(obs), Some(s)) = (self.player.observe(), self.session.as_mut()) {
                s.handle_player(obs, now);
            }
        }
    }

    // -------------------------------------------------------- signaling --

    /// Opens the first signaling connection.
    pub fn start(&mut self) {
        self.reconnect_at = None;
        self.connect_signal();
    }

    fn connect_signal(&mut self) {
        if self.stopped.is_some() {
            return;
        }
        self.socket = None;
        self.socket_gen += 1;
        let url = match &self.opts.signal {
            SignalMode::WebSocket(url) => url.clone(),
            SignalMode::InPage(_) => {
                self.signal_up = true;
                self.emit(json!({ "type": "connection", "state": "open" }));
                return;
            }
        };
        let token = match Token::new(self.opts.api.token.clone()) {
            Ok(t) => t,
            Err(_) => {
                self.fatal("auth", "the access token is malformed or too long");
                return;
            }
        };
        let weak = self.weak.clone();
        let deliver_fn: Rc<dyn Fn(SignalInput)> =
            Rc::new(move |i| deliver(&weak, Input::Signal(i)));
        match SignalSocket::connect(&url, token, self.public_key, self.socket_gen, deliver_fn) {
            Ok(s) => {
                self.socket = Some(s);
                self.emit(json!({ "type": "connection", "state": "connecting" }));
            }
            Err(e) => self.fatal("bad_url", &format!("cannot open the signaling URL: {e}")),
        }
    }

    fn fatal(&mut self, code: &str, message: &str) {
        self.signal_up = false;
        self.socket = None;
        self.reconnect_at = None;
        self.stopped = Some(message.to_owned());
        self.emit(json!({ "type": "error", "code": code, "message": message }));
        self.emit(json!({ "type": "connection", "state": "closed", "detail": message }));
    }

    fn on_signal(&mut self, input: SignalInput) {
        match input {
            SignalInput::Open { generation } if generation == self.socket_gen => {
                self.signal_up = true;
                self.emit(json!({ "type": "connection", "state": "open" }));
            }
            SignalInput::Message {
                generation,
                message,
            } if generation == self.socket_gen => self.on_server_message(*message),
            SignalInput::Invalid { generation, .. } if generation == self.socket_gen => {
                self.counters.signal_invalid += 1;
            }
            SignalInput::Closed {
                generation,
                code,
                reason,
            } if generation == self.socket_gen => self.on_signal_closed(code, &reason),
            _ => {} // a replaced socket
        }
    }

    fn on_signal_closed(&mut self, code: u16, reason: &str) {
        self.signal_up = false;
        self.socket = None;
        if self.stopped.is_some() || self.session.as_ref().is_some_and(Session::is_ended) {
            return;
        }
        if code == CLOSE_FORBIDDEN {
            self.fatal(
                "not_member",
                "you are not a member of this room, or it has ended",
            );
            return;
        }
        if code == CLOSE_UNAUTHORIZED {
            self.auth_failures += 1;
            if self.auth_failures >= MAX_AUTH_FAILURES {
                self.fatal(
                    "unauthorized",
                    "the server refused the sign-in; sign in again",
                );
                return;
            }
        }
        let delay = self.signal_backoff.next_delay();
        let retry_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.reconnect_at =
            Some(self.now() + watchparty_peer::time::TimeDelta::from_duration(delay));
        self.emit(json!({
            "type": "connection", "state": "retrying", "detail": view::close_text(code),
            "close_code": code, "close_reason": reason, "retry_ms": retry_ms,
        }));
    }

    fn send_signal(&mut self, msg: &ClientMessage) {
        if let SignalMode::InPage(f) = &self.opts.signal {
            if self.stopped.is_none() {
                f(msg.clone());
            }
            return;
        }
        let sent = self.socket.as_ref().is_some_and(|s| s.send(msg).is_ok());
        if !sent {
            self.counters.signal_dropped += 1;
        }
    }

    fn ensure_session(&mut self, hello_key: PublicKey) -> bool {
        if self.session.is_some() {
            return true;
        }
        let Some(identity) = self.identity.take() else {
            return false;
        };
        let server_key = *self.server_key.get_or_insert(hello_key);
        let now = self.now();
        let wall = WallTime::from_unix_millis_f64(wall_ms());
        let mut cfg = SessionConfig::new(self.opts.room);
        cfg.admit_secret = self.opts.admit_secret;
        match Session::new(cfg, identity, server_key, self.opts.pinned_host, now, wall) {
            Ok(s) => {
                self.session = Some(s);
                true
            }
            Err(e) => {
                self.fatal("session", &e.to_string());
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
                self.signal_backoff.reset();
                self.auth_failures = 0;
                if !self.ensure_session(server_key) {
                    return;
                }
                self.server_ice = to_rtc_ice(ice_servers.as_slice());
                self.roster.clear();
                for m in members.as_slice() {
                    self.note_roster(m);
                }
                let online: Vec<UserId> = members
                    .as_slice()
                    .iter()
                    .filter(|m| m.online)
                    .map(|m| m.certificate.claimed().user)
                    .collect();
                if let Some(s) = self.session.as_mut() {
                    // A repeated hello (reconnect) is the session's to
                    // reconcile; playback and the mesh stay.
                    s.handle_signal(msg.clone(), now);
                }
                if self.me() == Some(you) {
                    self.links.set_me(you);
                }
                let conns = &self.conns;
                let offer = self.links.on_hello(online, |p| conns.contains_key(&p));
                for peer in offer {
                    self.offer(peer);
                }
                self.emit_roster();
            }
            ServerMessage::MemberJoined { ref member } => {
                let user = member.certificate.claimed().user;
                self.links.member_joined(user, member.online);
                self.note_roster(member);
                if let Some(s) = self.session.as_mut() {
                    s.handle_signal(msg, now);
                }
                self.emit_roster();
            }
            ServerMessage::MemberLeft { user } => {
                self.links.member_left(user);
                if let Some(r) = self.roster.get_mut(&user) {
                    r.online = false;
                }
                if let Some(s) = self.session.as_mut() {
                    s.handle_signal(msg, now);
                }
                self.emit_roster();
            }
            ServerMessage::Offer { from, sdp } => self.on_offer(from, sdp.as_str()),
            ServerMessage::Answer { from, sdp } => self.on_answer(from, sdp.as_str()),
            ServerMessage::Ice { from, candidate } => self.on_remote_ice(from, candidate),
            ServerMessage::Error { code, .. } => {
                self.emit(json!({
                    "type": "error", "code": view::error_code(code),
                    "message": view::server_error_text(code),
                }));
            }
            ServerMessage::RoomEnded { reason } => {
                let reason = view::end_reason(reason);
                if let Some(s) = self.session.as_mut() {
                    s.handle_signal(msg, now);
                }
                if self.session.is_none() {
                    self.emit(json!({ "type": "room_ended", "reason": reason }));
                }
                self.stopped = Some(format!("room ended ({reason})"));
                self.socket = None;
                self.reconnect_at = None;
            }
            other => {
                if let ServerMessage::RoleChanged { certificate } = &other {
                    let c = certificate.claimed();
                    if let Some(r) = self.roster.get_mut(&c.user) {
                        r.role = c.role;
                    }
                }
                if let Some(s) = self.session.as_mut() {
                    s.handle_signal(other, now);
                }
            }
        }
    }

    fn note_roster(&mut self, m: &signaling::RosterEntry) {
        let c = m.certificate.claimed();
        self.roster.insert(
            c.user,
            RosterEntry {
                name: c.name.as_str().to_owned(),
                role: c.role,
                online: m.online,
            },
        );
    }

    // ------------------------------------------------------ negotiation --

    fn ice_servers(&self) -> Vec<IceServer> {
        crate::rtc::combine_ice_servers(&self.server_ice, &self.opts.ice_servers)
    }

    /// Replaces any connection to `peer` with a new one; returns its
    /// generation.
    fn new_conn(&mut self, peer: UserId) -> Option<u64> {
        self.drop_conn(peer, false);
        let conn_gen = self.next_gen;
        self.next_gen += 1;
        match Conn::new(peer, conn_gen, &self.ice_servers(), &self.weak) {
            Ok(c) => {
                self.conns.insert(peer, c);
                let since = self.now();
                self.ice_tried.insert(
                    peer,
                    IceTried {
                        since,
                        local: Vec::new(),
                        remote: Vec::new(),
                        reported: false,
                    },
                );
                Some(conn_gen)
            }
            Err(e) => {
                self.counters.negotiation_errors += 1;
                self.emit(json!({
                    "type": "error", "code": "webrtc",
                    "message": format!("cannot create a connection: {e}"),
                }));
                None
            }
        }
    }

    /// Closes the connection to `peer`, telling the session if it was open.
    fn drop_conn(&mut self, peer: UserId, retry: bool) {
        if self.conns.remove(&peer).is_none() {
            return;
        }
        self.ice_tried.remove(&peer);
        let now = self.now();
        if self.links.closed(peer, now, retry)
            && let Some(s) = self.session.as_mut()
        {
            s.peer_disconnected(peer, now);
        }
        self.emit_roster();
    }

    fn offer(&mut self, peer: UserId) {
        if Some(peer) == self.me() || self.stopped.is_some() {
            return;
        }
        let Some(conn_gen) = self.new_conn(peer) else {
            let now = self.now();
            self.links.failed(peer, now);
            return;
        };
        self.links.offer_sent(peer);
        let Some(pc) = self.conns.get(&peer).map(|c| Rc::clone(&c.pc)) else {
            return;
        };
        let weak = self.weak.clone();
        spawn_local(async move {
            let result = pc.create_offer().await.map_err(|e| e.to_string());
            deliver(
                &weak,
                Input::LocalDescription {
                    peer,
                    conn_gen,
                    result,
                },
            );
        });
    }

    fn on_offer(&mut self, from: UserId, sdp: &str) {
        if self.links.incoming_offer(from) == OfferDecision::Ignore {
            return;
        }
        let remote_fp = watchparty_peer::sdp::fingerprint(sdp);
        // Same DTLS identity on a live connection: an ICE restart, applied
        // in place. Anything else replaces the connection.
        let reuse = self.conns.get(&from).is_some_and(|c| {
            c.pc.has_remote_description()
                && remote_fp.is_some()
                && c.remote_fp == remote_fp
                && !matches!(c.state, ConnectionState::Failed | ConnectionState::Closed)
        });
        let conn_gen = if reuse {
            self.conns.get(&from).map(|c| c.conn_gen)
        } else {
            self.new_conn(from)
        };
        let Some(conn_gen) = conn_gen else { return };
        let Some(conn) = self.conns.get_mut(&from) else {
            return;
        };
        conn.remote_fp = remote_fp;
        let pc = Rc::clone(&conn.pc);
        self.note_remote_sdp(from, sdp);
        for c in self.links.take_candidates(from) {
            self.add_candidate(&pc, &c);
        }
        let weak = self.weak.clone();
        let offer = SessionDescription {
            kind: SdpKind::Offer,
            sdp: sdp.to_owned(),
        };
        spawn_local(async move {
            let result = async {
                pc.set_remote_description(&offer).await?;
                pc.create_answer().await
            }
            .await
            .map_err(|e| e.to_string());
            deliver(
                &weak,
                Input::LocalDescription {
                    peer: from,
                    conn_gen,
                    result,
                },
            );
        });
    }

    fn on_answer(&mut self, from: UserId, sdp: &str) {
        let pending = self.links.get(from).is_some_and(|l| l.offer_pending());
        let Some(conn) = self.conns.get_mut(&from) else {
            return;
        };
        if !pending {
            return; // not ours to take (stale or unsolicited)
        }
        self.links.answered(from);
        conn.remote_fp = watchparty_peer::sdp::fingerprint(sdp);
        let (conn_gen, pc) = (conn.conn_gen, Rc::clone(&conn.pc));
        self.note_remote_sdp(from, sdp);
        let weak = self.weak.clone();
        let answer = SessionDescription {
            kind: SdpKind::Answer,
            sdp: sdp.to_owned(),
        };
        spawn_local(async move {
            let result = pc
                .set_remote_description(&answer)
                .await
                .map_err(|e| e.to_string());
            deliver(
                &weak,
                Input::RemoteApplied {
                    peer: from,
                    conn_gen,
                    result,
                },
            );
        });
    }

    fn add_candidate(&self, pc: &Rc<crate::rtc::PeerConnection>, c: &signaling::IceCandidate) {
        let candidate = IceCandidate {
            candidate: c.candidate.as_str().to_owned(),
            sdp_mid: c.sdp_mid.as_ref().map(|m| m.as_str().to_owned()),
            sdp_m_line_index: c.sdp_m_line_index,
        };
        let pc = Rc::clone(pc);
        let weak = self.weak.clone();
        spawn_local(async move {
            if pc.add_remote_candidate(&candidate).await.is_err() {
                deliver(&weak, Input::CandidateFailed);
            }
        });
    }

    /// Remembers the candidate types in a remote SDP.
    fn note_remote_sdp(&mut self, peer: UserId, sdp: &str) {
        if let Some(t) = self.ice_tried.get_mut(&peer) {
            for line in sdp.lines().filter(|l| l.starts_with("a=candidate:")) {
                IceTried::note(&mut t.remote, line);
            }
        }
    }

    /// Explains a link that did not come up: which member, what was tried,
    /// what to do (the words are the core's, shared with the native peer).
    fn link_failed(&mut self, peer: UserId) {
        let Some(tried) = self.ice_tried.get_mut(&peer) else {
            return;
        };
        tried.reported = true;
        let (local, remote) = (tried.local.clone(), tried.remote.clone());
        let turn_offered = self
            .ice_servers()
            .iter()
            .any(|s| s.credential.is_some() && s.urls.iter().any(|u| u.starts_with("turn")));
        let failure = LinkFailure {
            member: self
                .roster
                .get(&peer)
                .map_or_else(|| format!("member {}", peer.get()), |r| r.name.clone()),
            local,
            remote,
            turn_offered,
            relay_problem: None,
        };
        let message = failure.explain();
        self.problems.insert(peer, message.clone());
        self.emit(json!({
            "type": "link_failed",
            "user_id": peer.get(),
            "local": failure.local.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "remote": failure.remote.iter().map(|t| t.as_str()).collect::<Vec<_>>(),
            "message": message,
        }));
        self.emit_roster();
    }

    fn on_remote_ice(&mut self, from: UserId, candidate: signaling::IceCandidate) {
        if candidate.candidate.as_str().is_empty() {
            return; // end of candidates
        }
        if let Some(t) = self.ice_tried.get_mut(&from) {
            IceTried::note(&mut t.remote, candidate.candidate.as_str());
        }
        if let Some(pc) = self.conns.get(&from).map(|c| Rc::clone(&c.pc)) {
            self.add_candidate(&pc, &candidate);
        } else {
            self.links.buffer_candidate(from, candidate);
        }
    }

    fn on_local_description(
        &mut self,
        peer: UserId,
        conn_gen: u64,
        result: Result<SessionDescription, String>,
    ) {
        if self.conns.get(&peer).map(|c| c.conn_gen) != Some(conn_gen) {
            return;
        }
        match result {
            Ok(desc) => {
                if let Some(c) = self.conns.get_mut(&peer) {
                    c.local_fp = watchparty_peer::sdp::fingerprint(&desc.sdp);
                }
                let Ok(sdp) = signaling::Sdp::new(desc.sdp) else {
                    self.negotiation_failed(peer);
                    return;
                };
                let msg = match desc.kind {
                    SdpKind::Offer => ClientMessage::Offer { to: peer, sdp },
                    SdpKind::Answer => ClientMessage::Answer { to: peer, sdp },
                };
                self.send_signal(&msg);
            }
            Err(_) => self.negotiation_failed(peer),
        }
    }

    fn negotiation_failed(&mut self, peer: UserId) {
        self.counters.negotiation_errors += 1;
        self.conns.remove(&peer);
        let now = self.now();
        if self.links.closed(peer, now, false)
            && let Some(s) = self.session.as_mut()
        {
            s.peer_disconnected(peer, now);
        }
        self.links.failed(peer, now);
    }

    fn on_local_ice(&mut self, peer: UserId, conn_gen: u64, candidate: Option<IceCandidate>) {
        if self.conns.get(&peer).map(|c| c.conn_gen) != Some(conn_gen) {
            return;
        }
        let Some(c) = candidate else { return };
        if c.candidate.is_empty() {
            return;
        }
        if let Some(t) = self.ice_tried.get_mut(&peer) {
            IceTried::note(&mut t.local, &c.candidate);
        }
        let (Ok(line), mid) = (
            signaling::Candidate::new(c.candidate),
            c.sdp_mid.map(signaling::SdpMid::new).transpose(),
        ) else {
            return;
        };
        let Ok(sdp_mid) = mid else { return };
        self.send_signal(&ClientMessage::Ice {
            to: peer,
            candidate: signaling::IceCandidate {
                candidate: line,
                sdp_mid,
                sdp_m_line_index: c.sdp_m_line_index,
            },
        });
    }

    fn on_conn_state(&mut self, peer: UserId, conn_gen: u64, state: ConnectionState) {
        let Some(conn) = self.conns.get_mut(&peer) else {
            return;
        };
        if conn.conn_gen != conn_gen {
            return;
        }
        conn.state = state;
        let now = self.now();
        match state {
            ConnectionState::Connected => self.links.recovered(peer),
            ConnectionState::Disconnected => {
                self.links.interrupted(peer, now);
            }
            ConnectionState::Failed | ConnectionState::Closed => {
                let up = self.links.get(peer).is_some_and(|l| l.connected());
                if state == ConnectionState::Failed
                    && !up
                    && self.ice_tried.get(&peer).is_some_and(|t| !t.reported)
                {
                    self.link_failed(peer);
                }
                self.drop_conn(peer, true);
                return;
            }
            _ => {}
        }
        self.emit_roster();
    }

    fn on_channel_open(&mut self, peer: UserId, conn_gen: u64, channel: ChannelId) {
        let Some(conn) = self.conns.get(&peer) else {
            return;
        };
        if conn.conn_gen != conn_gen {
            return;
        }
        let open = ChannelOpen {
            peer,
            local_fingerprint: conn.local_fp,
            remote_fingerprint: conn.remote_fp,
        };
        if self.links.channel_open(peer, channel) {
            self.problems.remove(&peer);
            let now = self.now();
            if let Some(s) = self.session.as_mut() {
                s.channel_open(open, now);
            }
            self.emit_roster();
        }
    }

    // ------------------------------------------------------------ media --

    fn start_load(&mut self, item: MediaItem) {
        self.loading = Some(item.clone());
        let media = item.media.as_str().to_owned();
        self.emit(json!({ "type": "media", "state": "loading", "media_id": media }));
        let api = self.opts.api.clone();
        let weak = self.weak.clone();
        spawn_local(async move {
            let result = match media.parse::<i64>() {
                Ok(id) => api.stream_source(id).await.map_err(|e| e.to_string()),
                Err(_) => Err("the media id is not a catalog id of this server".to_owned()),
            };
            deliver(&weak, Input::MediaResolved { media, result });
        });
    }

    fn on_media_resolved(
        &mut self,
        media: &str,
        result: Result<crate::http::StreamSource, String>,
    ) {
        let Some(item) = self.loading.clone() else {
            return;
        };
        if item.media.as_str() != media {
            return; // superseded
        }
        self.loading = None;
        let now = self.now();
        match result {
            Ok(src) => {
                self.player.load(&src.url, &src.subtitles);
                if let Some(s) = self.session.as_mut() {
                    s.media_loaded(Some(item.hash), now);
                }
                self.emit(json!({ "type": "media", "state": "ready", "media_id": media }));
            }
            Err(e) => self.media_failed(media, &e),
        }
    }

    fn media_failed(&mut self, media: &str, error: &str) {
        let now = self.now();
        if let Some(s) = self.session.as_mut() {
            s.media_loaded(None, now);
        }
        self.emit(json!({
            "type": "media", "state": "failed", "media_id": media, "error": error,
        }));
    }

    fn on_player(&mut self, input: PlayerInput) {
        let now = self.now();
        match input {
            PlayerInput::Observation(obs) => {
                if let Some(s) = self.session.as_mut() {
                    s.handle_player(obs, now);
                }
            }
            PlayerInput::AutoplayBlocked => self.emit(json!({ "type": "autoplay_blocked" })),
            PlayerInput::AutoplayUnblocked => self.emit(json!({ "type": "autoplay_unblocked" })),
            PlayerInput::Failed(e) => {
                self.counters.player_errors += 1;
                let media = self
                    .session
                    .as_ref()
                    .and_then(|s| s.loaded().map(|i| i.media.as_str().to_owned()));
                if let Some(m) = media {
                    self.media_failed(&m, &e);
                }
            }
        }
    }

    // ---------------------------------------------------------- outputs --

    /// Handles one input.
    pub fn handle(&mut self, input: Input) {
        let now = self.now();
        match input {
            Input::Signal(s) => self.on_signal(s),
            Input::ServerMessage(m) => {
                if matches!(self.opts.signal, SignalMode::InPage(_)) && self.stopped.is_none() {
                    self.on_server_message(*m);
                }
            }
            Input::LocalDescription {
                peer,
                conn_gen,
                result,
            } => {
                self.on_local_description(peer, conn_gen, result);
            }
            Input::RemoteApplied {
                peer,
                conn_gen,
                result,
            } => {
                if result.is_err() && self.conns.get(&peer).map(|c| c.conn_gen) == Some(conn_gen) {
                    self.negotiation_failed(peer);
                } else if let Some(pc) = self.conns.get(&peer).map(|c| Rc::clone(&c.pc)) {
                    for c in self.links.take_candidates(peer) {
                        self.add_candidate(&pc, &c);
                    }
                }
            }
            Input::CandidateFailed => self.counters.negotiation_errors += 1,
            Input::LocalIce {
                peer,
                conn_gen,
                candidate,
            } => self.on_local_ice(peer, conn_gen, candidate),
            Input::ConnState {
                peer,
                conn_gen,
                state,
            } => self.on_conn_state(peer, conn_gen, state),
            Input::ChannelOpen {
                peer,
                conn_gen,
                channel,
            } => self.on_channel_open(peer, conn_gen, channel),
            Input::ChannelClosed {
                peer,
                conn_gen,
                channel,
            } => {
                if self.conns.get(&peer).map(|c| c.conn_gen) == Some(conn_gen) {
                    self.links.channel_closed(peer, channel);
                }
            }
            Input::Frame {
                peer,
                conn_gen,
                channel,
                bytes,
            } => {
                if self.conns.get(&peer).map(|c| c.conn_gen) == Some(conn_gen)
                    && let Some(s) = self.session.as_mut()
                {
                    s.handle_frame(peer, channel, &bytes, now);
                }
            }
            Input::Player(p) => self.on_player(p),
            Input::MediaResolved { media, result } => self.on_media_resolved(&media, result),
            Input::RestFailed { what, message } => self.emit(json!({
                "type": "error", "code": "rest", "what": what,
                "message": format!("{what} failed: {message}"),
            })),
            Input::Timer => self.on_timer(),
        }
    }

    /// Carries out everything the session asked for.
    pub fn drain(&mut self) {
        while let Some(out) = self.session.as_mut().and_then(Session::poll_output) {
            match out {
                Output::SendFrame { to, channel, bytes } => match self.conns.get(&to) {
                    Some(c) => {
                        if c.send(channel, &bytes).is_err() {
                            self.counters.send_failed += 1;
                        }
                    }
                    None => self.counters.send_no_peer += 1,
                },
                Output::Signal(msg) => self.on_signal_output(msg),
                Output::Player(action) => self.player.apply(action),
                Output::Disconnect { peer, .. } => self.drop_conn(peer, false),
                Output::Event(e) => self.on_session_event(e),
            }
        }
        let applied = self
            .session
            .as_ref()
            .map_or(0, |s| s.stats().applied_total());
        if applied != self.applied_total {
            self.applied_total = applied;
            let now = self.now();
            if let Some(p) = self.session.as_ref().and_then(|s| view::playback(s, now)) {
                let mut ev = p;
                ev["type"] = json!("playback");
                self.emit(ev);
            }
        }
        if self.session.as_ref().is_some_and(Session::is_ended) && self.stopped.is_none() {
            self.stopped = Some("session ended".into());
            self.socket = None;
            self.reconnect_at = None;
            let peers: Vec<UserId> = self.conns.keys().copied().collect();
            for p in peers {
                self.drop_conn(p, false);
            }
        }
    }

    /// Host actions the signaling WebSocket refuses go over REST.
    fn on_signal_output(&mut self, msg: ClientMessage) {
        let room = self.opts.room.to_string();
        let api = self.opts.api.clone();
        let weak = self.weak.clone();
        match msg {
            ClientMessage::SetRole { user, role } => spawn_local(async move {
                if let Err(e) = api.set_role(&room, user.get(), view::role_name(role)).await {
                    let message = e.to_string();
                    deliver(
                        &weak,
                        Input::RestFailed {
                            what: "role change",
                            message,
                        },
                    );
                }
            }),
            ClientMessage::Kick { user } => spawn_local(async move {
                if let Err(e) = api.kick(&room, user.get()).await {
                    let message = e.to_string();
                    deliver(
                        &weak,
                        Input::RestFailed {
                            what: "kick",
                            message,
                        },
                    );
                }
            }),
            ClientMessage::Handoff { to } => spawn_local(async move {
                if let Err(e) = api.handoff(&room, to.get()).await {
                    let message = e.to_string();
                    deliver(
                        &weak,
                        Input::RestFailed {
                            what: "handoff",
                            message,
                        },
                    );
                }
            }),
            other => self.send_signal(&other),
        }
    }

    fn on_session_event(&mut self, e: Event) {
        match &e {
            Event::LoadMedia(item) => {
                self.start_load(item.clone());
                return;
            }
            Event::RoleChanged { member, role } => {
                if let Some(r) = self.roster.get_mut(member) {
                    r.role = *role;
                }
            }
            Event::HostChanged { host, .. } => {
                for (u, r) in &mut self.roster {
                    if *u == *host {
                        r.role = Role::Host;
                    } else if r.role == Role::Host {
                        r.role = Role::Controller;
                    }
                }
            }
            _ => {}
        }
        let ev = view::event(&e, self.session.as_ref(), wall_ms());
        if let Some(mut ev) = ev {
            // Display names from the roster (the certificates' names).
            if let Event::Chat { from, .. } | Event::Reaction { from, .. } = &e
                && let Some(r) = self.roster.get(from)
            {
                ev["name"] = json!(r.name);
            }
            self.emit(ev);
        }
        if matches!(
            e,
            Event::RoleChanged { .. }
                | Event::HostChanged { .. }
                | Event::Kicked(_)
                | Event::MemberJoined(_)
                | Event::MemberLeft(_)
                | Event::Joined { .. }
        ) {
            self.emit_roster();
        }
    }

    // ----------------------------------------------------- page queries --

    fn peer_state(&self, peer: UserId) -> &'static str {
        let connected = self.links.get(peer).is_some_and(|l| l.connected());
        match self.conns.get(&peer).map(|c| c.state) {
            _ if connected => "connected",
            Some(ConnectionState::Disconnected) => "disconnected",
            Some(ConnectionState::Failed | ConnectionState::Closed) => "failed",
            Some(_) => "connecting",
            None => "none",
        }
    }

    fn emit_roster(&mut self) {
        let now = self.now();
        let me = self.me();
        let sync: BTreeMap<UserId, Value> = self
            .session
            .as_ref()
            .map(|s| view::peer_sync(s, now).into_iter().collect())
            .unwrap_or_default();
        let members: Vec<Value> = self
            .roster
            .iter()
            .map(|(u, r)| {
                let s = sync.get(u);
                let role = self
                    .session
                    .as_ref()
                    .filter(|s| s.host() == Some(*u))
                    .map_or(r.role, |_| Role::Host);
                json!({
                    "user_id": u.get(),
                    "name": r.name,
                    "role": view::role_name(role),
                    "online": r.online,
                    "you": Some(*u) == me,
                    "connection": if Some(*u) == me { "self" } else { self.peer_state(*u) },
                    "rtt_ms": s.and_then(|v| v.get("rtt_ms")).cloned(),
                    "offset_ms": s.and_then(|v| v.get("offset_ms")).cloned(),
                    "error_ms": s.and_then(|v| v.get("error_ms")).cloned(),
                    "buffering": s.and_then(|v| v.get("buffering")).cloned().unwrap_or(json!(false)),
                    "waited_for": s.and_then(|v| v.get("waited_for")).cloned(),
                    "problem": self.problems.get(u),
                })
            })
            .collect();
        self.emit(json!({ "type": "roster", "members": members }));
    }

    /// The `status()` snapshot.
    #[must_use]
    pub fn status(&self) -> Value {
        let now = self.now();
        let s = self.session.as_ref();
        let sync = s.map(|s| s.sync_status(now));
        let peer_sync: BTreeMap<UserId, Value> = s
            .map(|s| view::peer_sync(s, now).into_iter().collect())
            .unwrap_or_default();
        let peers: Vec<Value> = self
            .links
            .iter()
            .map(|(u, l)| {
                let mut v = json!({
                    "user_id": u.get(),
                    "state": self.peer_state(u),
                    "online": l.online(),
                    "channels_open": l.channels_open(),
                    "attempts": l.attempts(),
                });
                if let (Some(obj), Some(Value::Object(extra))) =
                    (v.as_object_mut(), peer_sync.get(&u))
                {
                    for (k, x) in extra {
                        obj.insert(k.clone(), x.clone());
                    }
                }
                v
            })
            .collect();
        let el = self.player.element();
        json!({
            "you": s.and_then(Session::user).map(UserId::get),
            "role": s.and_then(Session::role).map(view::role_name),
            "host": s.and_then(Session::host).map(UserId::get),
            "is_host": s.is_some_and(Session::is_host),
            "admission": s.is_some_and(Session::admission_enforced),
            "admitted": s.is_some_and(|s| s.user().is_some_and(|me| s.is_admitted(me))),
            "admit_secret": self.opts.admit_secret.map(|a| a.to_base64url()),
            "resuming": s.is_some_and(Session::is_resuming),
            "epoch": s.map_or(0, |s| s.epoch().0),
            "refused_host_change": s.and_then(Session::refused_host_change).map(view::refused_host_change),
            "signaling": self.signal_up,
            "stopped": self.stopped,
            "local_ms": view::ms(now.since(LocalTime::ZERO)),
            "room_ms": s.and_then(|s| s.sync().room_time(now)).map(|r| r.as_micros() as f64 / 1000.0),
            "playback": s.and_then(|s| view::playback(s, now)),
            "loaded": s.and_then(|s| s.loaded().map(|i| i.media.as_str().to_owned())),
            "player": {
                "position_ms": el.current_time() * 1000.0,
                "paused": el.paused(),
                "rate": el.playback_rate(),
                "ready_state": el.ready_state(),
                "autoplay_blocked": self.player.autoplay_blocked(),
            },
            "free_watch": sync.as_ref().is_some_and(|x| !x.attached),
            "sync": {
                "clock_ready": sync.as_ref().is_some_and(|x| x.clock_ready),
                "offset_ms": sync.as_ref().and_then(|x| x.offset).map(view::ms),
                "offset_uncertainty_ms": sync.as_ref().and_then(|x| x.uncertainty).map(view::ms),
                "error_ms": sync.as_ref().and_then(|x| x.error).map(view::ms),
                "correcting": sync.as_ref().is_some_and(|x| x.correcting),
                "rate_offset_ppm": sync.as_ref().map_or(0, |x| x.rate_offset_ppm),
                "startup_ms": sync.as_ref().map(|x| view::ms(x.startup_estimate)),
                "lead_ms": s.and_then(Session::command_lead).map(|l| json!({
                    "start": view::ms(l.start),
                    "delivery": view::ms(l.delivery),
                })),
                "actions": s.map(|s| {
                    let st = s.sync().stats();
                    json!({
                        "plays": st.plays,
                        "pauses": st.pauses,
                        "seeks": st.seeks,
                        "rate_changes": st.rate_changes,
                        "user_intents": st.user_intents,
                        "echoes": st.echoes,
                        "recues": st.recues,
                    })
                }),
            },
            "policy": s.map(|s| view::policy(s.policy())),
            "asks": s.map_or_else(|| json!([]), view::asks),
            "queue": s.map(view::queue),
            "peers": peers,
            "dropped": s.map_or_else(|| json!({}), view::drops),
            "counters": {
                "commands_applied": s.map_or(0, |s| s.stats().commands_applied),
                "states_applied": s.map_or(0, |s| s.stats().states_applied),
                "accepted": s.map_or(0, |s| s.stats().accepted),
                "send_failed": self.counters.send_failed,
                "send_no_peer": self.counters.send_no_peer,
                "signal_dropped": self.counters.signal_dropped,
                "signal_invalid": self.counters.signal_invalid,
                "negotiation_errors": self.counters.negotiation_errors,
                "events_dropped": self.events.dropped(),
                "player_errors": self.counters.player_errors,
                "glare_ignored": self.links.stats().glare_ignored,
                "candidates_dropped": self.links.stats().candidates_dropped,
            },
        })
    }

    // --------------------------------------------------------- commands --

    /// A room command from the page.
    ///
    /// # Errors
    /// The session's refusal.
    pub fn command(&mut self, cmd: UserCommand) -> Result<(), CommandError> {
        let now = self.now();
        match self.session.as_mut() {
            Some(s) => s.command(cmd, now),
            None => Err(CommandError::NotJoined),
        }
    }

    /// The room policy now (for partial `policy` commands).
    #[must_use]
    pub fn policy(&self) -> Option<watchparty_peer::message::Policy> {
        self.session.as_ref().map(Session::policy)
    }

    /// The REST client (for lookups before a command).
    #[must_use]
    pub fn api(&self) -> Api {
        self.opts.api.clone()
    }

    /// A new access token: used for the next REST call and the next
    /// signaling connection's `auth`.
    pub fn set_token(&mut self, token: String) {
        self.opts.api.token = token;
        if self.stopped.is_none() && self.auth_failures > 0 && self.socket.is_none() {
            self.reconnect_at = Some(self.now());
        }
    }

    /// Diagnostics for tests: signs a `Play`/`Pause` control frame with our
    /// own key, bypassing the local role check, and sends it to every
    /// connected peer on the control channel — what a viewer tampering with
    /// the page could do. Every other peer must refuse it (only the host's
    /// key may sign control frames). Returns the number of peers sent to.
    ///
    /// # Errors
    /// Not joined yet, or the frame could not be encoded.
    pub fn forge_control(&mut self, paused: bool, position_ms: u64) -> Result<usize, String> {
        use watchparty_peer::frame::{self, Header};
        use watchparty_peer::ids::{PositionMs, RoomMs, Seq};
        use watchparty_peer::message::Message;
        let now = self.now();
        let s = self.session.as_ref().ok_or("not in a room")?;
        let key = self.forge_key.as_ref().ok_or("no key")?;
        let at = s
            .sync()
            .room_time(now)
            .map_or(RoomMs(now.as_millis_floor()), RoomMs::from_room_time);
        let position = PositionMs::new(position_ms).map_err(|e| e.to_string())?;
        let msg = if paused {
            Message::Pause { position, at }
        } else {
            Message::Play { position, at }
        };
        let header = Header {
            room: self.opts.room,
            epoch: s.epoch(),
            // Far above our own sequence numbers (never reached in a term).
            seq: Seq::new(1 << 40).map_err(|e| e.to_string())?,
            issued_at: at,
        };
        let bytes = frame::encode(key, &header, &msg).map_err(|e| e.to_string())?;
        let mut sent = 0;
        for (peer, conn) in &self.conns {
            if self.links.get(*peer).is_some_and(|l| l.connected())
                && conn
                    .send(watchparty_peer::channels::CONTROL.id, &bytes)
                    .is_ok()
            {
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// Lets playback start after an autoplay refusal (call in a click).
    pub fn unlock_playback(&mut self) {
        self.player.unlock();
    }

    /// Leaves: tells the server, closes every connection and the socket.
    pub fn leave(&mut self) {
        if self.socket.as_ref().is_some_and(SignalSocket::is_open) {
            self.send_signal(&ClientMessage::Leave);
        }
        self.stopped = Some("left".into());
        self.conns.clear();
        self.socket = None;
        self.reconnect_at = None;
    }
}
