//! The room session: the sans-I/O state machine that joins a room, enforces
//! host authority on every frame, runs the sync engine, and (as host) issues
//! signed commands.
//!
//! Inputs, each with `now` (this peer's [`LocalTime`]):
//! [`Session::handle_signal`] (server messages), [`Session::handle_frame`]
//! (data-channel bytes from a neighbour), [`Session::handle_player`] (player
//! readings), [`Session::command`] (user intent), [`Session::media_loaded`],
//! [`Session::channel_open`] / [`Session::peer_disconnected`] (driver
//! notices) and [`Session::handle_timeout`]. Outputs are polled:
//! [`Session::poll_output`] until `None`, then [`Session::poll_timeout`].
//!
//! Acceptance (docs/protocol.md §7) runs on every frame, direct or
//! forwarded, in order; a dropped frame is counted by reason, reported as
//! [`Event::Dropped`], and changes nothing. The driver sends the signaling
//! `auth` itself (it owns the token), with [`Session::public_key`] as `key`.

mod admission;
mod asks;
mod binding;
mod custody;
mod history;
mod holds;
mod lead;
mod limits;
mod mesh;
mod observe;
mod types;

use std::collections::{BTreeMap, BTreeSet, VecDeque};

pub use asks::{AskFor, MAX_PENDING_ASKS, PendingAsk, ask_text, policy_text};
pub use binding::BIND_DEADLINE;
pub use history::{CHAT_HISTORY_MAX, CHAT_HISTORY_MAX_BYTES, MAX_SEEN_CHATS};
pub use holds::{
    HOLD_ALLOWANCE_WAITS, HOLD_REFILL_DIVISOR, MAX_HOLD_RECORDS, no_longer_waited_for_text,
};
pub use limits::{
    DEFAULT_ASK_LIMIT, DEFAULT_CHAT_LIMIT, DEFAULT_REACTION_LIMIT, DEFAULT_REQUEST_LIMIT,
    HOST_PATH_MEMORY, RateLimit, STATE_REPLY_INTERVAL,
};
pub use mesh::{MAX_DEDUPE_ENTRIES, MAX_PING_ROUTES};
pub use observe::{CommandLead, HoldView, MAX_PEER_RECORDS, MemberReport, PeerCounters, PeerInfo};
pub use types::{
    ChannelOpen, CommandError, DEFAULT_POLICY, DisconnectReason, EXCUSE_STEADY, Event,
    HOST_CHANGE_GRACE, HOST_RETURN_GRACE, HOST_RETURN_WAIT, HostChangeRefusal, MAX_QUEUED_OUTPUTS,
    Output, REHOLD_GRACE, RefusedHostChange, RejoinError, SessionConfig, SessionError,
    SessionStats, UserCommand,
};

use crate::acceptance::{DropCounts, DropReason, ReplayTable, check_skew};
use crate::cert::{
    CertError, CertVerifier, CertificateBody, SignedCertificate, VerifiedCertificate,
};
use crate::channels::{self, ChannelId};
use crate::clock::ClockPing;
use crate::crypto::{KeyId, PublicKey, SigningKey};
use crate::frame::{self, Envelope, Frame, Header};
use crate::ids::{
    ContentHash, DisplayName, Epoch, PositionMs, RateMilli, Role, RoomMs, Seq, UnixSeconds, UserId,
};
use crate::message::{
    Buffering, ChatText, Emoji, Fingerprint, Handoff, Kind, Latency, MAX_ROLE_GRANTS, MediaItem,
    Message, Permissions, Policy, Queue, Readiness, Refusal, RefuseReason, ReportedLatency,
    RequestedCommand, RoleGrant, RoomState, SignerClass, Status, Timeline as WireTimeline,
};
use crate::player::{PlayerObservation, UserIntent};
use crate::signaling::{ClientMessage, RosterEntry, ServerMessage};
use crate::sync::{SyncEngine, SyncEvent, SyncOutput, SyncStatus};
use crate::time::{LocalTime, MediaPos, Rate, RoomTime, TimeDelta, WallTime};
use crate::timeline::PlaybackState;

use asks::AskTable;
use custody::PresentHost;
use history::ChatLog;
use holds::{HoldLedger, full_allowance};
use lead::{LeadFor, LeadTimes};
use limits::{Limits, MemberBuckets};
use mesh::{Dedupe, FrameKey, PingRoutes, digest};
use observe::PeerRecords;

/// A verified member.
#[derive(Debug, Clone)]
struct Member {
    key: PublicKey,
    role: Role,
    /// Still in the room (left, kicked or expired members' frames are
    /// refused).
    current: bool,
    /// The certificate's expiry (inclusive).
    not_after: UnixSeconds,
    /// Rate limits of this member's reactions, chat and requests.
    buckets: MemberBuckets,
    /// The certificate's display name.
    name: DisplayName,
}

/// The current host term.
#[derive(Debug, Clone, Copy)]
struct HostTerm {
    user: UserId,
    key: PublicKey,
    /// The host certificate's expiry (inclusive).
    not_after: UnixSeconds,
}

/// An open connection to a neighbour.
#[derive(Debug, Clone, Default)]
struct Link {
    local_fingerprint: Option<Fingerprint>,
    remote_fingerprint: Option<Fingerprint>,
    /// Follower: a host `Bind` verified on this connection.
    bound: bool,
    /// Pinned room, follower, host link: when it is closed unless a `Bind`
    /// verified by then ([`BIND_DEADLINE`]).
    bind_deadline: Option<LocalTime>,
    /// Host: we started hosting with this link open; its member's first
    /// direct `Status` of our term draws the `Bind` again.
    rebind_on_status: bool,
    /// `ChatHistory` frames accepted over this link (at most
    /// [`CHAT_HISTORY_MAX`]).
    earlier_received: usize,
}

/// What the host knows of a member's player.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct MemberStatus {
    readiness: Readiness,
    detached: bool,
    /// The reported player position and the room time it was taken at.
    position: MediaPos,
    at: RoomTime,
    received: LocalTime,
}

/// A refused host certificate a follower keeps for a signed `Handoff` that
/// may still arrive; the refusal is reported at `report_at` unless it did.
#[derive(Debug, Clone)]
struct HeldHostCert {
    cert: SignedCertificate,
    refusal: RefusedHostChange,
    report_at: Option<LocalTime>,
}

/// A host that joined with members online, waiting for its own signed
/// `State` of an earlier term from them (docs/protocol.md §7.2).
#[derive(Debug, Clone)]
struct Resume {
    /// When to give up and start afresh ([`HOST_RETURN_WAIT`]).
    until: LocalTime,
    /// Members online at `hello` that have not reported a `Status` yet
    /// (each sends the state it holds before its `Status`).
    waiting: BTreeSet<UserId>,
    /// The (epoch, seq) of the freshest state adopted so far.
    adopted: Option<(Epoch, Seq)>,
}

/// Who signed the latest host `State` a follower holds, and when.
#[derive(Debug, Clone, Copy)]
struct StateMeta {
    signer: KeyId,
    epoch: Epoch,
    issued_at: RoomMs,
}

/// Who signed a frame.
#[derive(Debug, Clone, Copy)]
struct Signer {
    user: UserId,
    key: PublicKey,
    is_host: bool,
    current: bool,
}

/// The room session. See the module docs.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    identity: SigningKey,
    server_key: PublicKey,
    verifier: CertVerifier,
    wall_origin: (LocalTime, WallTime),
    now: LocalTime,
    me: Option<UserId>,
    ended: bool,
    epoch: Epoch,
    host: Option<HostTerm>,
    members: BTreeMap<UserId, Member>,
    engine: SyncEngine,
    is_host: bool,
    next_seq: Seq,
    replay: ReplayTable,
    last_control_seq: Option<Seq>,
    drops: DropCounts,
    stats: SessionStats,
    // room state as known from the host (or set by us as host)
    loaded: Option<MediaItem>,
    queue: Queue,
    policy: Policy,
    roles: BTreeMap<UserId, Role>,
    // neighbours and mesh
    links: BTreeMap<UserId, Link>,
    dedupe: Dedupe,
    ping_routes: PingRoutes,
    peer_records: PeerRecords,
    pending_handoff: Option<Handoff>,
    /// A host certificate refused by the pin or for lack of the current
    /// host's signature, kept until a signed handoff.
    pending_host_cert: Option<HeldHostCert>,
    /// The latest host change the server announced and we refused (since
    /// the current host term began).
    refused_host_change: Option<RefusedHostChange>,
    last_state_frame: Option<Vec<u8>>,
    /// Signer, epoch and issue time of `last_state_frame`.
    last_state_meta: Option<StateMeta>,
    /// A returning host collecting the room state (see [`Resume`]).
    resume: Option<Resume>,
    // our player
    my_media: Option<ContentHash>,
    media_failed: bool,
    buffering: bool,
    player_ended: bool,
    last_position: MediaPos,
    /// When `last_position` was read (a `Status` pairs the reading with
    /// the room time of that instant, not of the send).
    last_position_at: Option<LocalTime>,
    next_status_at: Option<LocalTime>,
    /// The `Latency` report we last sent, and to which host term (sent
    /// again with every `Status`, and at once for a new host term).
    latency_sent: Option<(UserId, Epoch)>,
    // host
    statuses: BTreeMap<UserId, MemberStatus>,
    /// The members' latency reports: the adaptive lead time.
    lead_times: LeadTimes,
    want_playing: bool,
    waiting_since: Option<LocalTime>,
    /// When the current hold was released (its count goes on if the room
    /// is held again within [`REHOLD_GRACE`]).
    wait_released_at: Option<LocalTime>,
    /// Members the watchdog excused, with since when each has been `Ready`
    /// (waited for again after [`EXCUSE_STEADY`]).
    excused: BTreeMap<UserId, Option<LocalTime>>,
    /// What holding the room has cost each member (its hold allowance).
    holds: HoldLedger,
    /// Asks waiting for our user's decision (host).
    asks: AskTable,
    next_state_at: Option<LocalTime>,
    /// Admitted members and the session keys they knocked with: the host's
    /// own roster, or (follower) the host's latest `Roster`.
    admitted: BTreeMap<UserId, PublicKey>,
    /// Follower: (epoch, seq) of the `Roster` in `admitted`, and the
    /// frame (handed on with the `State` to a member without a path to the
    /// host).
    roster_version: Option<(Epoch, Seq)>,
    last_roster_frame: Option<Vec<u8>>,
    /// We hosted in this session (a former host trusts the host it handed
    /// the room to as a pinned follower does; §2.2).
    hosted: bool,
    /// Follower: knock again with the next `Status` (a new link to the
    /// host, e.g. a host that came back with an empty roster).
    knock_due: bool,
    /// Our own buckets: we never send what receivers would drop.
    own_buckets: MemberBuckets,
    /// `CertificateExpired` was reported for our own certificate.
    own_cert_expired: bool,
    /// The chat frames shown, kept for late joiners (docs/protocol.md §4.1
    /// *Chat history*).
    chat_log: ChatLog,
    out: VecDeque<Output>,
}

impl Session {
    /// A session for `config.room`, signing with `identity` (the member
    /// session key; for the host, the room key), trusting certificates from
    /// `server_key`, and, when the invite link carried one, accepting only
    /// `pinned_host` as host key. `wall_clock` is the Unix time at `now`
    /// (certificate expiry; as host, the origin of the room clock, so pass
    /// it with sub-second precision: a [`WallTime`]).
    ///
    /// # Errors
    /// [`SessionError`] for an invalid configuration.
    pub fn new(
        config: SessionConfig,
        identity: SigningKey,
        server_key: PublicKey,
        pinned_host: Option<PublicKey>,
        now: LocalTime,
        wall_clock: impl Into<WallTime>,
    ) -> Result<Self, SessionError> {
        if config.state_interval <= TimeDelta::ZERO {
            return Err(SessionError::Interval("state_interval"));
        }
        if config.status_interval <= TimeDelta::ZERO {
            return Err(SessionError::Interval("status_interval"));
        }
        for (name, limit) in [
            ("reaction_limit", config.reaction_limit),
            ("chat_limit", config.chat_limit),
            ("request_limit", config.request_limit),
            ("ask_limit", config.ask_limit),
        ] {
            if !limit.is_valid() {
                return Err(SessionError::RateLimit(name));
            }
        }
        let own_buckets = MemberBuckets::new(&limits_of(&config), now);
        let mut verifier = CertVerifier::new(server_key, config.room);
        if let Some(pin) = pinned_host {
            verifier.pin_host(pin);
        }
        let engine = SyncEngine::follower(config.sync.clone())?;
        Ok(Self {
            policy: config.initial_policy,
            cfg: config,
            identity,
            server_key,
            verifier,
            wall_origin: (now, wall_clock.into()),
            now,
            me: None,
            ended: false,
            epoch: Epoch(0),
            host: None,
            members: BTreeMap::new(),
            engine,
            is_host: false,
            next_seq: Seq::ZERO,
            replay: ReplayTable::default(),
            last_control_seq: None,
            drops: DropCounts::default(),
            stats: SessionStats::default(),
            loaded: None,
            queue: Queue::default(),
            roles: BTreeMap::new(),
            links: BTreeMap::new(),
            dedupe: Dedupe::default(),
            ping_routes: PingRoutes::default(),
            peer_records: PeerRecords::default(),
            pending_handoff: None,
            pending_host_cert: None,
            refused_host_change: None,
            last_state_frame: None,
            last_state_meta: None,
            resume: None,
            my_media: None,
            media_failed: false,
            buffering: false,
            player_ended: false,
            last_position: MediaPos::ZERO,
            last_position_at: None,
            next_status_at: None,
            latency_sent: None,
            statuses: BTreeMap::new(),
            lead_times: LeadTimes::default(),
            want_playing: false,
            waiting_since: None,
            wait_released_at: None,
            excused: BTreeMap::new(),
            holds: HoldLedger::default(),
            asks: AskTable::default(),
            next_state_at: None,
            admitted: BTreeMap::new(),
            roster_version: None,
            last_roster_frame: None,
            hosted: false,
            knock_due: false,
            own_buckets,
            own_cert_expired: false,
            chat_log: ChatLog::default(),
            out: VecDeque::new(),
        })
    }

    // ------------------------------------------------------------ queries --

    /// Our signing key's public half (send it as `key` in `auth`).
    #[must_use]
    pub fn public_key(&self) -> PublicKey {
        self.identity.public_key()
    }

    /// Our user id, once joined.
    #[must_use]
    pub fn user(&self) -> Option<UserId> {
        self.me
    }

    /// Whether we are the host.
    #[must_use]
    pub fn is_host(&self) -> bool {
        self.is_host
    }

    /// The current host, if known.
    #[must_use]
    pub fn host(&self) -> Option<UserId> {
        self.host.map(|h| h.user)
    }

    /// The current epoch.
    #[must_use]
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The latest host change the server announced without the current
    /// host's signature, refused (docs/protocol.md §6); cleared when a new
    /// host term begins.
    #[must_use]
    pub fn refused_host_change(&self) -> Option<&RefusedHostChange> {
        self.refused_host_change.as_ref()
    }

    /// Our role (host-signed grants override the certificate's).
    #[must_use]
    pub fn role(&self) -> Option<Role> {
        let me = self.me?;
        if self.is_host {
            return Some(Role::Host);
        }
        self.roles
            .get(&me)
            .or_else(|| self.members.get(&me).map(|m| &m.role))
            .copied()
    }

    /// The role of current member `user` (host-signed grants override the
    /// certificate's); `None` for someone not in the room.
    #[must_use]
    pub fn member_role(&self, user: UserId) -> Option<Role> {
        if Some(user) == self.host() {
            return Some(Role::Host);
        }
        let m = self.members.get(&user).filter(|m| m.current)?;
        Some(self.roles.get(&user).copied().unwrap_or(m.role))
    }

    /// The room policy as last signed by the host.
    #[must_use]
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The loaded item.
    #[must_use]
    pub fn loaded(&self) -> Option<&MediaItem> {
        self.loaded.as_ref()
    }

    /// The room queue.
    #[must_use]
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// The room timeline's latest state.
    #[must_use]
    pub fn playback(&self) -> Option<PlaybackState> {
        self.engine.timeline().map(|t| *t.latest())
    }

    /// The sync engine (clock, timeline, counters).
    #[must_use]
    pub fn sync(&self) -> &SyncEngine {
        &self.engine
    }

    /// Sync status at `now`.
    #[must_use]
    pub fn sync_status(&self, now: LocalTime) -> SyncStatus {
        self.engine.status(now)
    }

    /// Drop counters by reason.
    #[must_use]
    pub fn drops(&self) -> &DropCounts {
        &self.drops
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// Every neighbour this session knows something about at `now`: linked
    /// ones, ones that sent frames (bounded, see [`MAX_PEER_RECORDS`]),
    /// the host (follower) and members that reported a `Status` (host),
    /// sorted by user id.
    #[must_use]
    pub fn peers(&self, now: LocalTime) -> Vec<PeerInfo> {
        let mut users: BTreeSet<UserId> = self.links.keys().copied().collect();
        users.extend(self.peer_records.users());
        users.extend(self.statuses.keys().copied());
        users.extend(self.host());
        if let Some(me) = self.me {
            users.remove(&me);
        }
        let host = self.host();
        users
            .into_iter()
            .map(|user| {
                let is_host = Some(user) == host;
                let follower_of = is_host && !self.is_host;
                PeerInfo {
                    user,
                    linked: self.links.contains_key(&user),
                    bound: self.links.get(&user).is_some_and(|l| l.bound),
                    admitted: self.is_admitted(user),
                    is_host,
                    role: self.member_role(user),
                    name: self.members.get(&user).map(|m| m.name.clone()),
                    counters: self.peer_records.get(user).cloned().unwrap_or_default(),
                    clock: follower_of
                        .then(|| self.engine.clock().estimate(now))
                        .flatten(),
                    clock_round_trip: follower_of
                        .then(|| self.engine.clock().stats().last_round_trip)
                        .flatten(),
                    report: self.statuses.get(&user).map(|s| MemberReport {
                        readiness: s.readiness,
                        detached: s.detached,
                        position_error: self.engine.timeline().and_then(|t| {
                            let room = t.latest();
                            (s.at >= room.at).then(|| s.position - room.position_at(s.at))
                        }),
                        received: s.received,
                    }),
                    hold: self.hold_view(user, now),
                    latency: self.lead_times.report(user),
                }
            })
            .collect()
    }

    /// Host: how the buffering policy treats current member `user` at `now`.
    fn hold_view(&self, user: UserId, now: LocalTime) -> Option<HoldView> {
        if !self.is_host || !self.members.get(&user).is_some_and(|m| m.current) {
            return None;
        }
        let full = full_allowance(self.wait_timeout());
        Some(HoldView {
            waited_for: self.policy.buffering == Buffering::WaitForEveryone
                && !self.excused.contains_key(&user)
                && self.holds.waits_for(user, full, now),
            allowance: self.holds.left(user, full, now),
        })
    }

    /// The key of current member `member` (its certificate's).
    fn current_member_key(&self, member: UserId) -> Result<PublicKey, CommandError> {
        self.members
            .get(&member)
            .filter(|m| m.current)
            .map(|m| m.key)
            .ok_or(CommandError::UnknownMember(member))
    }

    /// A current or former member's certificate name.
    #[must_use]
    pub fn member_name(&self, user: UserId) -> Option<&DisplayName> {
        self.members.get(&user).map(|m| &m.name)
    }

    /// What to call a member on screen: its certificate name, or "member N"
    /// when we never had its certificate.
    #[must_use]
    pub fn member_label(&self, user: UserId) -> String {
        self.member_name(user).map_or_else(
            || format!("member {}", user.get()),
            |n| n.as_str().to_owned(),
        )
    }

    /// The latest host-signed `State` frame this follower holds (what it
    /// hands a neighbour without a path to the host).
    #[must_use]
    pub fn last_state_frame(&self) -> Option<&[u8]> {
        self.last_state_frame.as_deref()
    }

    /// Frames not attributed to a neighbour in [`Session::peers`] (the
    /// per-peer table was full).
    #[must_use]
    pub fn unattributed_frames(&self) -> u64 {
        self.peer_records.unattributed()
    }

    /// Neighbours with open channels.
    pub fn neighbours(&self) -> impl Iterator<Item = UserId> + '_ {
        self.links.keys().copied()
    }

    /// Current members (verified certificates).
    pub fn members(&self) -> impl Iterator<Item = UserId> + '_ {
        self.members
            .iter()
            .filter(|(_, m)| m.current)
            .map(|(u, _)| *u)
    }

    /// Whether we are a host that joined with members online and is still
    /// collecting the room state they hold for it (docs/protocol.md §7.2);
    /// ends with [`Event::RoomResumed`].
    #[must_use]
    pub fn is_resuming(&self) -> bool {
        self.resume.is_some()
    }

    /// Whether the session ended (kicked, room ended).
    #[must_use]
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    // ------------------------------------------------------------ outputs --

    /// The next output. Drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`Session::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<LocalTime> {
        let watchdog = match self.wait_released_at {
            Some(released) => Some(released + REHOLD_GRACE),
            None => self.waiting_since.map(|s| s + self.wait_timeout()),
        };
        let allowance_out = self.holds.runs_out_at(full_allowance(self.wait_timeout()));
        [
            self.engine.next_timeout(),
            self.next_state_at,
            self.next_status_at,
            watchdog,
            allowance_out,
            self.end_of_item_at(),
            self.next_expiry(),
            self.pending_host_cert.as_ref().and_then(|h| h.report_at),
            self.resume.as_ref().map(|r| r.until),
            self.next_bind_deadline(),
        ]
        .into_iter()
        .flatten()
        .map(|t| t.max(self.now + TimeDelta::from_micros(1)))
        .min()
    }

    /// Queues an output; when [`MAX_QUEUED_OUTPUTS`] are queued, first
    /// drops the oldest output of the lowest [`drop_rank`] (counted).
    fn push(&mut self, o: Output) {
        if self.out.len() >= MAX_QUEUED_OUTPUTS {
            self.stats.outputs_dropped = self.stats.outputs_dropped.saturating_add(1);
            let idx = (0..=MAX_DROP_RANK)
                .find_map(|rank| self.out.iter().position(|o| drop_rank(o) == Some(rank)))
                .unwrap_or(0);
            if let Some(Output::SendFrame { channel, .. }) = self.out.remove(idx)
                && channel == channels::CONTROL.id
                && self.is_host
            {
                // A follower may have missed a command: the next State
                // (queued behind everything else) repairs it.
                self.next_state_at = Some(self.now);
            }
        }
        self.out.push_back(o);
    }

    fn event(&mut self, e: Event) {
        self.push(Output::Event(e));
    }

    // ------------------------------------------------------------- inputs --

    /// A message from the signaling server.
    pub fn handle_signal(&mut self, msg: ServerMessage, now: LocalTime) {
        self.advance(now);
        if self.ended {
            return;
        }
        match msg {
            ServerMessage::Hello {
                room,
                you,
                epoch,
                server_key,
                certificate,
                members,
                ..
            } => self.on_hello(
                room,
                you,
                epoch,
                server_key,
                &certificate,
                members.as_slice(),
                now,
            ),
            ServerMessage::MemberJoined { member } => {
                if let Some(user) = self.add_member(&member.certificate, now) {
                    self.excuse_late_joiner(user);
                    self.event(Event::MemberJoined(user));
                }
            }
            ServerMessage::MemberLeft { user } => self.on_member_left(user, now),
            ServerMessage::HostChanged { certificate } => self.on_host_changed(&certificate, now),
            ServerMessage::RoleChanged { certificate } => {
                // The server re-issued a certificate (e.g. a new key); the
                // role that counts is the host-signed one.
                let _ = self.add_member(&certificate, now);
            }
            ServerMessage::Kicked { user } => {
                if Some(user) == self.me {
                    self.end(now);
                    self.event(Event::Kicked(user));
                } else {
                    self.remove_member(user);
                }
            }
            ServerMessage::Error { code, .. } => self.event(Event::ServerError(code)),
            ServerMessage::RoomEnded { reason } => {
                self.end(now);
                self.event(Event::RoomEnded(reason));
            }
            // WebRTC negotiation is the driver's business.
            ServerMessage::Offer { .. }
            | ServerMessage::Answer { .. }
            | ServerMessage::Ice { .. } => {}
        }
        self.drive(now);
    }

    /// The data channels to `open.peer` are open.
    pub fn channel_open(&mut self, open: ChannelOpen, now: LocalTime) {
        self.advance(now);
        if self.ended {
            return;
        }
        let peer = open.peer;
        self.links.insert(
            peer,
            Link {
                local_fingerprint: open.local_fingerprint,
                remote_fingerprint: open.remote_fingerprint,
                ..Link::default()
            },
        );
        if self.is_host {
            self.send_bind(peer, now);
            self.send_roster(Some(peer), now);
            self.send_history(peer, now);
            // One new State for everyone at the next timeout, so joins in
            // the same instant share it (a State sent to the newcomer alone,
            // or a burst of them, would reach the others forwarded after
            // newer commands).
            self.next_state_at = Some(now);
        } else {
            // Report to the host; without a direct path to it, the Status
            // goes to the neighbours, which answer with the latest signed
            // State they hold (late join through any peer).
            let host_linked = self.host().is_some_and(|h| self.links.contains_key(&h));
            if Some(peer) == self.host() {
                self.offer_state_to_returning_host(peer);
                self.knock_due = true;
            }
            self.roster_to_new_link(peer);
            if Some(peer) == self.host() || !host_linked {
                self.send_status(now);
            }
        }
        self.drive(now);
    }

    /// The connection to `peer` closed.
    pub fn peer_disconnected(&mut self, peer: UserId, now: LocalTime) {
        self.advance(now);
        self.links.remove(&peer);
        self.drive(now);
    }

    /// A reading of the local player.
    pub fn handle_player(&mut self, obs: PlayerObservation, now: LocalTime) {
        self.advance(now);
        self.last_position = obs.position;
        self.last_position_at = Some(obs.at);
        self.engine.handle_player(obs, now);
        self.drive(now);
    }

    /// The driver loaded media whose content hash is `hash` (`None`: loading
    /// failed). Call it right after the player was (re)loaded: the sync
    /// engine then treats the player as fresh (see
    /// [`SyncEngine::player_reloaded`]).
    pub fn media_loaded(&mut self, hash: Option<ContentHash>, now: LocalTime) {
        self.advance(now);
        if hash.is_some() {
            // The player holds a fresh copy: what was asked of the old one
            // no longer applies.
            self.engine.player_reloaded(now);
        }
        self.my_media = hash;
        self.media_failed = hash.is_none();
        self.send_status(now);
        if self.is_host {
            self.evaluate_buffering(now);
        }
        self.drive(now);
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: LocalTime) {
        self.advance(now);
        if self.ended {
            return;
        }
        self.expire_certificates(now);
        self.enforce_bind_deadlines(now);
        self.report_held_host_change(now);
        self.engine.handle_timeout(now);
        if self.is_host {
            if self.resume.as_ref().is_some_and(|r| r.until <= now) {
                self.finish_resume(now);
            }
            if self.next_state_at.is_some_and(|t| t <= now) {
                self.send_state_to(None, now);
            }
            self.evaluate_buffering(now);
            if self.end_of_item_at().is_some_and(|t| t <= now) {
                self.auto_advance(now);
            }
        } else if self.next_status_at.is_some_and(|t| t <= now) {
            self.send_status(now);
        }
        self.drive(now);
    }

    /// What the local user wants.
    ///
    /// # Errors
    /// [`CommandError`] when refused (role, policy) or invalid; nothing is
    /// sent then.
    pub fn command(&mut self, cmd: UserCommand, now: LocalTime) -> Result<(), CommandError> {
        self.advance(now);
        if self.ended || self.me.is_none() {
            return Err(CommandError::NotJoined);
        }
        let r = self.command_inner(cmd, now);
        self.drive(now);
        r
    }

    fn command_inner(&mut self, cmd: UserCommand, now: LocalTime) -> Result<(), CommandError> {
        match cmd {
            UserCommand::Chat(text) => {
                let text = ChatText::new(&text)?;
                self.admit_own(Kind::Chat, now)?;
                let bytes = self.sign(&Message::Chat(text.clone()), now)?;
                self.broadcast(channels::CHAT.id, &bytes, None);
                if let Some(me) = self.me
                    && self.chat_log.show(&bytes)
                {
                    self.event(Event::Chat {
                        from: me,
                        text,
                        earlier: None,
                    });
                }
                Ok(())
            }
            UserCommand::Reaction(s) => {
                let emoji = Emoji::new(&s).map_err(|_| CommandError::Reaction)?;
                self.admit_own(Kind::Reaction, now)?;
                let bytes = self.sign(&Message::Reaction(emoji.clone()), now)?;
                self.broadcast(channels::CHAT.id, &bytes, None);
                if let Some(me) = self.me {
                    self.event(Event::Reaction { from: me, emoji });
                }
                Ok(())
            }
            UserCommand::FreeWatch => {
                self.engine.detach(now);
                self.send_status(now);
                Ok(())
            }
            UserCommand::Resync => {
                self.engine.resync(now);
                self.send_status(now);
                Ok(())
            }
            UserCommand::Ask(what) => self.ask(what, now),
            UserCommand::AcceptAsk(member) => self.accept_ask(member, now),
            UserCommand::DismissAsk(member) => self.dismiss_ask(member, now),
            UserCommand::Approve(member) => self.approve(member, now),
            cmd if self.is_host => self.host_command(cmd, now),
            cmd => self.follower_command(cmd, now),
        }
    }

    // ------------------------------------------------------------ signaling --

    /// Wall-clock microseconds (Unix) at `now`.
    fn wall_micros(&self, now: LocalTime) -> i64 {
        self.wall_origin
            .1
            .as_unix_micros()
            .saturating_add(now.since(self.wall_origin.0).as_micros())
    }

    /// The room clock at `now`, or our wall clock before we know it.
    fn room_ms(&self, now: LocalTime) -> RoomMs {
        self.engine.room_time(now).map_or_else(
            || RoomMs(self.wall_micros(now).div_euclid(1000)),
            RoomMs::from_room_time,
        )
    }

    fn unix_now(&self, now: LocalTime) -> UnixSeconds {
        WallTime::from_unix_micros(self.wall_micros(now)).unix_seconds()
    }

    #[allow(clippy::too_many_arguments)]
    fn on_hello(
        &mut self,
        room: crate::ids::RoomId,
        you: UserId,
        epoch: Epoch,
        server_key: PublicKey,
        certificate: &SignedCertificate,
        members: &[RosterEntry],
        now: LocalTime,
    ) {
        if server_key != self.server_key {
            self.event(Event::ServerKeyMismatch);
            return;
        }
        if room != self.cfg.room {
            self.event(Event::CertificateRefused {
                user: Some(you),
                error: CertError::WrongRoom,
            });
            return;
        }
        let mine = match self.verifier.verify(certificate, self.unix_now(now)) {
            Ok(c) => c,
            Err(error) => {
                self.event(Event::CertificateRefused {
                    user: Some(you),
                    error,
                });
                return;
            }
        };
        if mine.body().user != you || mine.body().key != self.identity.public_key() {
            self.event(Event::CertificateRefused {
                user: Some(you),
                error: CertError::BadSignature,
            });
            return;
        }
        if let Some(me) = self.me {
            self.on_rehello(me, epoch, certificate, &mine, members, now);
            return;
        }
        self.me = Some(you);
        self.epoch = epoch;
        self.insert_member(&mine);
        for entry in members {
            let _ = self.add_member(&entry.certificate, now);
        }
        if let Some(h) = self.host
            && h.user == you
            && h.key == self.identity.public_key()
        {
            // Members online may hold the room state of our earlier term
            // (we reloaded or restarted): ask them before starting afresh.
            let online: BTreeSet<UserId> = members
                .iter()
                .filter(|m| m.online)
                .map(|m| m.certificate.claimed().user)
                .filter(|u| *u != you && self.members.get(u).is_some_and(|m| m.current))
                .collect();
            self.start_hosting(now, true, online);
        }
        let role = self.role().unwrap_or(Role::Viewer);
        self.event(Event::Joined {
            you,
            role,
            host: self.host(),
            epoch: self.epoch,
        });
    }

    /// A `hello` after we joined: the signaling connection came back (or the
    /// server restarted) and we re-registered. Playback and the mesh are not
    /// touched; certificates and the roster are refreshed. A newer epoch is
    /// accepted only as `host_changed` would accept it (valid host
    /// certificate of that epoch, pin and handoff rules); an older one is
    /// refused. Members missing from the roster have left.
    fn on_rehello(
        &mut self,
        me: UserId,
        epoch: Epoch,
        certificate: &SignedCertificate,
        mine: &VerifiedCertificate,
        members: &[RosterEntry],
        now: LocalTime,
    ) {
        if mine.body().user != me {
            self.event(Event::RejoinRefused(RejoinError::OtherUser));
            return;
        }
        if epoch < self.epoch {
            self.event(Event::RejoinRefused(RejoinError::StaleEpoch));
            return;
        }
        if epoch > self.epoch {
            let host_cert = std::iter::once(certificate)
                .chain(members.iter().map(|m| &m.certificate))
                .find(|c| {
                    let b = c.claimed();
                    b.role == Role::Host && b.epoch == epoch
                })
                .cloned();
            let Some(host_cert) = host_cert else {
                self.event(Event::RejoinRefused(RejoinError::NoHostCertificate));
                return;
            };
            self.on_host_changed(&host_cert, now);
            if self.epoch != epoch {
                return; // refused (reported by on_host_changed)
            }
        }
        // Same epoch from here on: refresh our own certificate and the
        // roster (a host certificate of this epoch refreshes the host term).
        if mine.body().role != Role::Host || mine.body().epoch == self.epoch {
            self.insert_member(mine);
        }
        let mut listed = BTreeSet::from([me]);
        for entry in members {
            listed.insert(entry.certificate.claimed().user);
            let _ = self.add_member(&entry.certificate, now);
        }
        let gone: Vec<UserId> = self
            .members
            .iter()
            .filter(|(u, m)| m.current && !listed.contains(u))
            .map(|(u, _)| *u)
            .collect();
        for user in gone {
            self.on_member_left(user, now);
        }
        let role = self.role().unwrap_or(Role::Viewer);
        self.event(Event::Rejoined {
            you: me,
            role,
            host: self.host(),
            epoch: self.epoch,
        });
    }

    /// Verifies and records a member certificate; returns the user.
    fn add_member(&mut self, cert: &SignedCertificate, now: LocalTime) -> Option<UserId> {
        match self.verifier.verify(cert, self.unix_now(now)) {
            Ok(v) => {
                let body = v.body();
                if body.role == Role::Host && body.epoch != self.epoch {
                    // A host certificate of another term: only HostChanged
                    // may open a new one. Not an error: the server announces
                    // a host's (re)registration with `member_joined` as well
                    // as `host_changed`, in that order, and an older term's
                    // certificate is merely stale.
                    return None;
                }
                Some(self.insert_member(&v))
            }
            Err(error) => {
                self.event(Event::CertificateRefused {
                    user: Some(cert.claimed().user),
                    error,
                });
                None
            }
        }
    }

    fn insert_member(&mut self, v: &VerifiedCertificate) -> UserId {
        let b = v.body();
        if let Some(old) = self.members.get(&b.user)
            && old.key != b.key
        {
            self.replay.forget(&old.key.key_id());
        }
        // A re-issued certificate keeps the member's rate-limit state.
        let buckets = self.members.get(&b.user).map_or_else(
            || MemberBuckets::new(&limits_of(&self.cfg), self.now),
            |m| m.buckets,
        );
        self.members.insert(
            b.user,
            Member {
                key: b.key,
                role: b.role,
                current: true,
                not_after: b.not_after,
                buckets,
                name: b.name.clone(),
            },
        );
        if Some(b.user) == self.me {
            self.own_cert_expired = false;
        }
        if b.role == Role::Host {
            self.host = Some(HostTerm {
                user: b.user,
                key: b.key,
                not_after: b.not_after,
            });
        } else {
            self.roles.entry(b.user).or_insert(b.role);
        }
        b.user
    }

    fn remove_member(&mut self, user: UserId) {
        if let Some(m) = self.members.get_mut(&user) {
            m.current = false;
        }
        self.roles.remove(&user);
        self.statuses.remove(&user);
        self.lead_times.forget(user);
        self.excused.remove(&user);
        if self.asks.remove(user).is_some() {
            self.event(Event::AsksChanged);
        }
    }

    fn on_member_left(&mut self, user: UserId, now: LocalTime) {
        let was_host = self.host().is_some_and(|h| h == user);
        self.remove_member(user);
        self.event(Event::MemberLeft(user));
        if was_host && !self.is_host {
            self.pause_after_grace(now);
            self.event(Event::HostLeft(user));
        }
        if self.is_host {
            if let Some(r) = self.resume.as_mut() {
                r.waiting.remove(&user);
            }
            self.maybe_finish_resume(now);
            self.evaluate_buffering(now);
        }
    }

    /// The host left: the room plays on until [`HOST_RETURN_GRACE`] after
    /// the latest host `State` we hold was issued (a host that reloads is
    /// back long before), then pauses there. A returning host computes the
    /// same point from the same signed `State` (§7.2).
    fn pause_after_grace(&mut self, now: LocalTime) {
        let (Some(t), Some(room_now)) = (self.engine.timeline(), self.engine.room_time(now)) else {
            return;
        };
        let at = self
            .last_state_meta
            .map_or(room_now, |m| m.issued_at.to_room_time() + HOST_RETURN_GRACE)
            .max(room_now);
        let s = t.pause_at(at);
        self.engine.handle_timeline(s, now);
    }

    /// The host is gone (left, or its certificate expired): the room pauses
    /// where it is until a new host acts.
    fn pause_without_host(&mut self, now: LocalTime) {
        if let (Some(t), Some(room_now)) = (self.engine.timeline(), self.engine.room_time(now)) {
            let s = t.pause_at(room_now);
            self.engine.handle_timeline(s, now);
        }
    }

    /// Local time at which a certificate valid through `not_after` expires
    /// (the first second after it), if within the representable future.
    fn expiry_time(&self, not_after: UnixSeconds) -> Option<LocalTime> {
        let (origin, wall) = self.wall_origin;
        let us = (i128::from(not_after.0) + 1) * 1_000_000 - i128::from(wall.as_unix_micros());
        let us = i64::try_from(us).ok()?;
        Some(origin + TimeDelta::from_micros(us))
    }

    /// When the next current member's (or our own) certificate expires.
    fn next_expiry(&self) -> Option<LocalTime> {
        if self.ended {
            return None;
        }
        self.members
            .iter()
            .filter(|(u, m)| {
                if Some(**u) == self.me {
                    !self.own_cert_expired
                } else {
                    m.current
                }
            })
            .filter_map(|(_, m)| self.expiry_time(m.not_after))
            .min()
    }

    /// Members whose certificate passed its not-after are no longer
    /// accepted (their frames drop as `not_member` / `not_host`). Our own
    /// expiry is reported once; re-joining is the driver's business.
    fn expire_certificates(&mut self, now: LocalTime) {
        let unix = self.unix_now(now);
        let expired: Vec<UserId> = self
            .members
            .iter()
            .filter(|(u, m)| m.current && unix > m.not_after && Some(**u) != self.me)
            .map(|(u, _)| *u)
            .collect();
        for user in &expired {
            let was_host = self.host() == Some(*user);
            self.remove_member(*user);
            self.event(Event::CertificateExpired(*user));
            if was_host && !self.is_host {
                self.pause_without_host(now);
            }
        }
        if let Some(me) = self.me
            && !self.own_cert_expired
            && self.members.get(&me).is_some_and(|m| unix > m.not_after)
        {
            self.own_cert_expired = true;
            self.event(Event::CertificateExpired(me));
        }
        if self.is_host && !expired.is_empty() {
            self.evaluate_buffering(now);
        }
    }

    fn on_host_changed(&mut self, cert: &SignedCertificate, now: LocalTime) {
        let v = match self.verifier.verify(cert, self.unix_now(now)) {
            Ok(v) => v,
            Err(error) => {
                let claimed = cert.claimed().clone();
                if error == CertError::HostKeyMismatch
                    && claimed.role == Role::Host
                    && claimed.epoch > self.epoch
                {
                    // The pinned host may not have announced its handoff
                    // yet: keep the certificate until a signed Handoff
                    // names its key.
                    self.refuse_host_change(cert, &claimed, HostChangeRefusal::PinMismatch, now);
                }
                self.event(Event::CertificateRefused {
                    user: Some(cert.claimed().user),
                    error,
                });
                return;
            }
        };
        let b = v.body().clone();
        if b.role == Role::Host
            && b.epoch == self.epoch
            && self
                .host
                .is_some_and(|h| h.user == b.user && h.key == b.key)
        {
            // The current term announced again: a refresh, not a change.
            self.insert_member(&v);
            return;
        }
        if b.role != Role::Host || b.epoch <= self.epoch {
            self.event(Event::CertificateRefused {
                user: Some(b.user),
                error: CertError::HostKeyMismatch,
            });
            return;
        }
        // Chain of custody: only the current host hands the room over.
        if let Err(reason) =
            custody::approve(self.present_host(now), self.pending_handoff.as_ref(), &b)
        {
            self.refuse_host_change(cert, &b, reason, now);
            return;
        }
        let was_host = self.is_host;
        // The same user with the same key: the host came back (reloaded,
        // restarted, reconnected), not a new host.
        let returned = self
            .host
            .is_some_and(|h| h.user == b.user && h.key == b.key);
        if let Some(old) = self.host
            && let Some(m) = self.members.get_mut(&old.user)
            && m.key == old.key
        {
            m.role = Role::Controller;
        }
        self.epoch = b.epoch;
        self.pending_handoff = None;
        self.pending_host_cert = None;
        self.refused_host_change = None;
        self.last_control_seq = None;
        self.next_seq = Seq::ZERO;
        self.insert_member(&v);
        self.roles.remove(&b.user);
        let us = Some(b.user) == self.me && b.key == self.identity.public_key();
        if us {
            self.start_hosting(now, false, BTreeSet::new());
        } else if was_host {
            self.stop_hosting(now);
        } else {
            self.engine.new_room_clock(now);
        }
        if returned {
            self.event(Event::HostReturned {
                host: b.user,
                epoch: b.epoch,
            });
        } else {
            self.event(Event::HostChanged {
                host: b.user,
                epoch: b.epoch,
                us,
            });
        }
    }

    /// The host that holds the room now and could sign a handoff: us, or a
    /// host whose certificate is current (not left, not expired).
    fn present_host(&self, now: LocalTime) -> Option<PresentHost> {
        let h = self.host?;
        let here = self.is_host
            || (self
                .members
                .get(&h.user)
                .is_some_and(|m| m.current && m.key == h.key)
                && self.unix_now(now) <= h.not_after);
        here.then_some(PresentHost {
            user: h.user,
            key: h.key,
        })
    }

    /// Refuses a host change (the current host stays). A follower keeps
    /// the certificate for a signed `Handoff` that may still arrive and
    /// reports the refusal after [`HOST_CHANGE_GRACE`] unless it did; the
    /// host reports at once (it knows it signed nothing), and so does a
    /// follower that already accepted a `Handoff` naming someone else.
    fn refuse_host_change(
        &mut self,
        cert: &SignedCertificate,
        claimed: &CertificateBody,
        reason: HostChangeRefusal,
        now: LocalTime,
    ) {
        let refusal = RefusedHostChange {
            claimed_host: claimed.user,
            name: claimed.name.clone(),
            epoch: claimed.epoch,
            host: self.host(),
            we_are_host: self.is_host,
            reason,
        };
        if self.is_host || self.pending_handoff.is_some() {
            self.report_host_change_refusal(refusal);
            return;
        }
        // A refusal still waiting keeps its deadline: repeating the push
        // never postpones the report.
        let report_at = self
            .pending_host_cert
            .as_ref()
            .and_then(|h| h.report_at)
            .unwrap_or(now + HOST_CHANGE_GRACE);
        self.pending_host_cert = Some(HeldHostCert {
            cert: cert.clone(),
            refusal,
            report_at: Some(report_at),
        });
        self.report_held_host_change(now);
    }

    /// Reports a held host change once its grace has passed.
    fn report_held_host_change(&mut self, now: LocalTime) {
        let due = self
            .pending_host_cert
            .as_mut()
            .filter(|h| h.report_at.is_some_and(|t| t <= now))
            .map(|h| {
                h.report_at = None;
                h.refusal.clone()
            });
        if let Some(refusal) = due {
            self.report_host_change_refusal(refusal);
        }
    }

    fn report_host_change_refusal(&mut self, refusal: RefusedHostChange) {
        self.refused_host_change = Some(refusal.clone());
        self.event(Event::HostChangeRefused(refusal));
    }

    /// We host: a new room (our own clock, started at our wall clock so a
    /// host that reloads or restarts continues the same room clock), or a
    /// handoff / a new term of ours (the clock goes on). `online`: members
    /// that may hold our earlier term's state, asked first (§7.2).
    fn start_hosting(&mut self, now: LocalTime, new_room: bool, online: BTreeSet<UserId>) {
        self.is_host = true;
        self.hosted = true;
        self.asks.clear();
        self.statuses.clear();
        self.lead_times.clear();
        self.excused.clear();
        self.holds.clear();
        self.reset_wait();
        self.next_status_at = None;
        // Our links were member links: bind each to us as host.
        let peers: Vec<UserId> = self.links.keys().copied().collect();
        for peer in peers {
            self.send_bind(peer, now);
            if let Some(l) = self.links.get_mut(&peer) {
                l.rebind_on_status = true;
            }
        }
        // The roster we held as a follower is ours now (§2.2).
        self.send_roster(None, now);
        if new_room {
            let offset =
                TimeDelta::from_micros(self.wall_micros(now).saturating_sub(now.as_micros()));
            match SyncEngine::host(self.cfg.sync.clone(), offset) {
                Ok(e) => self.engine = e,
                Err(_) => return, // config checked in `new`
            }
            if !online.is_empty() && self.engine.timeline().is_none() {
                self.resume = Some(Resume {
                    until: now + HOST_RETURN_WAIT,
                    waiting: online,
                    adopted: None,
                });
                return; // no State until we know whether to resume
            }
        } else {
            self.engine.become_host(now);
        }
        let state = match (self.engine.timeline(), self.engine.room_time(now)) {
            (Some(t), _) => *t.latest(),
            (None, Some(r)) => PlaybackState::paused(MediaPos::ZERO, r, Rate::NORMAL),
            (None, None) => PlaybackState::paused(MediaPos::ZERO, RoomTime::ZERO, Rate::NORMAL),
        };
        self.want_playing = !state.paused;
        self.engine.handle_timeline(state, now);
        self.send_state_to(None, now);
    }

    /// Returning host: every member online at `hello` reported (each sends
    /// the state it holds before its `Status`), or one left: resume.
    fn maybe_finish_resume(&mut self, now: LocalTime) {
        if self.resume.as_ref().is_some_and(|r| r.waiting.is_empty()) {
            self.finish_resume(now);
        }
    }

    /// Ends the wait for our earlier term's state: with nothing adopted the
    /// room starts afresh (paused at 0, nothing loaded).
    fn finish_resume(&mut self, now: LocalTime) {
        let Some(r) = self.resume.take() else {
            return;
        };
        if r.adopted.is_none() && self.engine.timeline().is_none() {
            let room = self.engine.room_time(now).unwrap_or(RoomTime::ZERO);
            self.want_playing = false;
            self.engine.handle_timeline(
                PlaybackState::paused(MediaPos::ZERO, room, Rate::NORMAL),
                now,
            );
            self.send_state_to(None, now);
        }
        self.event(Event::RoomResumed {
            adopted: r.adopted.is_some(),
        });
    }

    /// Returning host: a member handed us our own signed `State` of an
    /// earlier term (verified by the caller: our key, our room). The
    /// freshest one (highest epoch, then seq) becomes the room state, re-
    /// issued in our new term. If the room was playing and we stayed away
    /// past [`HOST_RETURN_GRACE`], the followers paused at that point (see
    /// `pause_after_grace`): the room resumes playing from there.
    fn adopt_state(&mut self, frame: &Frame, now: LocalTime) {
        let h = *frame.header();
        let (Some(r), Message::State(state)) = (self.resume.as_mut(), frame.message()) else {
            return;
        };
        if r.adopted.is_some_and(|a| a >= (h.epoch, h.seq)) {
            return;
        }
        r.adopted = Some((h.epoch, h.seq));
        self.apply_command(&Message::State(state.clone()), h.issued_at, now);
        let stop = h.issued_at.to_room_time() + HOST_RETURN_GRACE;
        let latest = self
            .engine
            .timeline()
            .map(|t| (*t.latest(), t.pause_at(stop)));
        if let Some((latest, paused_at_stop)) = latest {
            self.want_playing = !latest.paused;
            if !latest.paused && self.engine.room_time(now).is_some_and(|r| r > stop) {
                self.engine.handle_timeline(paused_at_stop, now);
            }
        }
        // We catch up like any member: our own loading does not hold the
        // room (as for a member the watchdog excused).
        if let Some(me) = self.me {
            self.excused.insert(me, None);
        }
        self.send_state_to(None, now);
        self.evaluate_buffering(now);
    }

    /// Follower: the host came back in a new term with the key that signed
    /// the latest `State` we hold; hand it that state (before our `Status`,
    /// on the same ordered channel) so it can resume the room (§7.2).
    fn offer_state_to_returning_host(&mut self, host: UserId) {
        let (Some(meta), Some(h)) = (self.last_state_meta, self.host) else {
            return;
        };
        if meta.signer == h.key.key_id()
            && meta.epoch < self.epoch
            && let Some(bytes) = self.last_state_frame.clone()
        {
            self.send(host, channels::CONTROL.id, bytes);
        }
    }

    fn stop_hosting(&mut self, now: LocalTime) {
        self.is_host = false;
        if self.asks.clear() {
            self.event(Event::AsksChanged);
        }
        self.next_state_at = None;
        self.reset_wait();
        let latest = self.engine.timeline().map(|t| *t.latest());
        if let Ok(mut e) = SyncEngine::follower(self.cfg.sync.clone()) {
            if let Some(item) = &self.loaded {
                e.set_duration(Some(item.duration.to_media_pos()));
            }
            if let Some(s) = latest {
                e.handle_timeline(s, now);
            }
            self.engine = e;
        }
        self.next_status_at = Some(now);
    }

    fn end(&mut self, _now: LocalTime) {
        self.ended = true;
        let peers: Vec<UserId> = self.links.keys().copied().collect();
        for peer in peers {
            self.push(Output::Disconnect {
                peer,
                reason: DisconnectReason::SessionEnded,
            });
        }
        self.links.clear();
        self.next_state_at = None;
        self.next_status_at = None;
        self.reset_wait();
    }

    // ------------------------------------------------------------- frames --

    /// A data-channel message from neighbour `from`.
    pub fn handle_frame(&mut self, from: UserId, channel: ChannelId, bytes: &[u8], now: LocalTime) {
        self.advance(now);
        if self.ended {
            return;
        }
        self.expire_certificates(now);
        let r = self.receive(from, channel, bytes, now);
        if matches!(r, Err(Rx::Duplicate)) {
            self.note_via_host(from, bytes, now);
        }
        let links = &self.links;
        let linked = |u: UserId| links.contains_key(&u);
        match r {
            Ok(()) => self.peer_records.accepted(from, linked),
            Err(Rx::Duplicate) => {
                self.stats.duplicates = self.stats.duplicates.saturating_add(1);
                self.peer_records.duplicate(from, linked);
            }
            Err(Rx::Drop(reason)) => {
                self.drops.record(reason);
                self.peer_records.dropped(from, reason, linked);
                self.event(Event::Dropped { from, reason });
            }
        }
        self.drive(now);
    }

    /// The signer named by key id `id`. A certificate past its not-after
    /// counts as neither host nor current member (checked on use, not
    /// only by [`Session::handle_timeout`]).
    fn lookup(&self, id: KeyId, now: LocalTime) -> Option<Signer> {
        let unix = self.unix_now(now);
        if let Some(h) = self.host
            && h.key.key_id() == id
            && unix <= h.not_after
        {
            return Some(Signer {
                user: h.user,
                key: h.key,
                is_host: true,
                current: true,
            });
        }
        self.members
            .iter()
            .find(|(_, m)| m.key.key_id() == id)
            .map(|(u, m)| Signer {
                user: *u,
                key: m.key,
                is_host: false,
                current: m.current && unix <= m.not_after,
            })
    }

    fn receive(
        &mut self,
        from: UserId,
        channel: ChannelId,
        bytes: &[u8],
        now: LocalTime,
    ) -> Result<(), Rx> {
        // 1. envelope, and the channel its kind travels on (forwarded
        // copies are sent on that channel too)
        let env = Envelope::parse(bytes).map_err(|e| Rx::Drop((&e).into()))?;
        if env.kind().channel().id != channel {
            return Err(Rx::Drop(DropReason::WrongChannel));
        }
        // Exact copy of a frame we accepted: the same authentic frame.
        let d = digest(bytes);
        if let Some(key) = raw_key(&env, bytes)
            && self.dedupe.is_duplicate(&key, &d)
        {
            return Err(Rx::Duplicate);
        }
        // 2. signer known
        let signer = self
            .lookup(env.signer(), now)
            .ok_or(Rx::Drop(DropReason::UnknownSigner))?;
        // 3. signature over the exact bytes, 4. decode
        let verified = env.verify(&signer.key).map_err(|e| Rx::Drop((&e).into()))?;
        let frame = verified.decode().map_err(|e| Rx::Drop((&e).into()))?;
        let h = *frame.header();
        // 5. signer class
        match frame.kind().signer() {
            SignerClass::Host if !signer.is_host => return Err(Rx::Drop(DropReason::NotHost)),
            SignerClass::Member if !signer.current => return Err(Rx::Drop(DropReason::NotMember)),
            _ => {}
        }
        // 6. room
        if h.room != self.cfg.room {
            return Err(Rx::Drop(DropReason::WrongRoom));
        }
        // 7. epoch (a returning host adopts its own earlier State, §7.2)
        if h.epoch < self.epoch {
            if frame.kind() == Kind::State
                && self.resume.is_some()
                && signer.key == self.identity.public_key()
            {
                self.adopt_state(&frame, now);
                return Ok(());
            }
            return Err(Rx::Drop(DropReason::StaleEpoch));
        }
        if h.epoch > self.epoch {
            return Err(Rx::Drop(DropReason::UnknownEpoch));
        }
        // 8. replay; host commands are totally ordered per epoch
        self.replay.check(&frame).map_err(Rx::Drop)?;
        if is_command(frame.kind()) && self.last_control_seq.is_some_and(|s| h.seq <= s) {
            return Err(Rx::Drop(DropReason::OldSequence));
        }
        // 9. skew (pings carry their own timestamps and may be sent before
        // the sender knows the room clock). Before our clock estimate is
        // usable, against our wall clock: the room clock starts at the
        // host's wall clock and unsynchronised senders stamp theirs, so a
        // joiner refuses frames replayed from long ago (docs/protocol.md
        // §7.1 *Skew*).
        if frame.kind() != Kind::ClockPing {
            check_skew(h.issued_at, self.room_ms(now), self.cfg.max_skew_ms).map_err(Rx::Drop)?;
        }
        // 10. kind-specific checks. A ChatHistory: the chat frame it
        // carries, without the freshness rules (it is old by nature).
        let earlier = match frame.message() {
            Message::ChatHistory(c) if !self.is_host => {
                self.check_earlier(from, c, now).map_err(Rx::Drop)?
            }
            _ => None,
        };
        if let Message::Announce(cert) = frame.message() {
            let ok = self
                .verifier
                .verify(cert, self.unix_now(now))
                .is_ok_and(|v| v.body().key == signer.key && v.body().user == signer.user);
            if !ok {
                return Err(Rx::Drop(DropReason::Malformed));
            }
        }
        // A knock with the wrong MAC, at the host (§2.2). Not committed.
        if let Message::Knock(mac) = frame.message()
            && !self.knock_valid(&signer, mac)
        {
            return Err(Rx::Drop(DropReason::NotAdmitted));
        }
        // 11. admission (pinned room, §2.2): member frames only from
        // members the host admitted, with the key they knocked with. Not
        // committed: a copy arriving once the host's Roster names the
        // member still counts.
        if self.refused_not_admitted(&signer, frame.kind()) {
            return Err(Rx::Drop(DropReason::NotAdmitted));
        }
        // 12. rate limits: reactions and chat on every peer, requests at
        // the host. The frame is authentic, so it is remembered (a copy is
        // a silent duplicate and cannot be retried later), but neither
        // applied nor forwarded.
        if !self.admit(signer.user, frame.kind()) {
            self.replay.commit(&frame).map_err(Rx::Drop)?;
            self.dedupe.insert((frame.signer(), h.epoch, h.seq), d);
            if frame.kind() == Kind::Request {
                self.refuse_rate_limited(signer.user, h.seq, now);
            }
            return Err(Rx::Drop(DropReason::RateLimited));
        }
        // 13. pinned room: no host control over a host link not bound yet
        // (not committed: the same frame may still arrive over another
        // link, §7.1 *Binding*)
        if self.refused_unbound(from, frame.kind()) {
            return Err(Rx::Drop(DropReason::UnboundLink));
        }
        // accepted: commit, remember, forward, apply
        self.replay.commit(&frame).map_err(Rx::Drop)?;
        if is_command(frame.kind()) {
            self.last_control_seq = Some(h.seq);
        }
        self.dedupe.insert((frame.signer(), h.epoch, h.seq), d);
        self.stats.accepted = self.stats.accepted.saturating_add(1);
        self.forward(&frame, from, signer.user);
        self.apply(&frame, from, signer.user, now);
        if let Message::ChatHistory(c) = frame.message() {
            self.show_earlier(from, earlier, c.frame());
        }
        Ok(())
    }

    /// Whether a `kind` frame signed by `user` is within its rate limit
    /// (takes a token). Requests count only at the host, which acts on them.
    fn admit(&mut self, user: UserId, kind: Kind) -> bool {
        if kind == Kind::Request && !self.is_host {
            return true;
        }
        let limits = limits_of(&self.cfg);
        let now = self.now;
        let Some(m) = self.members.get_mut(&user) else {
            return true; // the host signs no limited kind
        };
        let ok = m.buckets.admit(&limits, kind, now);
        if ok && kind == Kind::Request {
            m.buckets.refused = false;
        }
        ok
    }

    /// Our own limit for `kind`, keeping the sender's reserve.
    fn admit_own(&mut self, kind: Kind, now: LocalTime) -> Result<(), CommandError> {
        let limits = limits_of(&self.cfg);
        if self.own_buckets.admit_own(&limits, kind, now) {
            Ok(())
        } else {
            Err(CommandError::RateLimited)
        }
    }

    /// Host: refuses an over-limit request, once per over-limit streak of
    /// that member (so a flood of requests cannot make the host flood the
    /// room with refusals).
    fn refuse_rate_limited(&mut self, member: UserId, seq: Seq, now: LocalTime) {
        let Some(m) = self.members.get_mut(&member) else {
            return;
        };
        if m.buckets.refused {
            return;
        }
        m.buckets.refused = true;
        self.refuse(member, seq, RefuseReason::RateLimited, now);
    }

    fn forward(&mut self, frame: &Frame, from: UserId, signer: UserId) {
        if !self.cfg.forward
            || matches!(
                frame.kind(),
                Kind::ClockPing | Kind::ClockPong | Kind::Bind | Kind::ChatHistory
            )
        {
            return;
        }
        let targets: Vec<UserId> = self
            .links
            .keys()
            .copied()
            .filter(|n| *n != from && *n != signer)
            .collect();
        let channel = frame.kind().channel().id;
        for n in targets {
            self.stats.forwarded = self.stats.forwarded.saturating_add(1);
            self.send(n, channel, frame.bytes().to_vec());
        }
    }

    /// Follower: a member frame delivered by the host (accepted, or an
    /// exact copy of one) shows that its signer has a path to the host
    /// (§7.1: such a member's `Status` gets no `State` reply).
    fn note_via_host(&mut self, from: UserId, bytes: &[u8], now: LocalTime) {
        if self.is_host || self.host() != Some(from) {
            return;
        }
        let Ok(env) = Envelope::parse(bytes) else {
            return;
        };
        if let Some(signer) = self.lookup(env.signer(), now)
            && !signer.is_host
            && let Some(m) = self.members.get_mut(&signer.user)
        {
            m.buckets.seen_via_host(now);
        }
    }

    fn apply(&mut self, frame: &Frame, from: UserId, signer: UserId, now: LocalTime) {
        if !self.is_host
            && self.host() == Some(from)
            && signer != from
            && let Some(m) = self.members.get_mut(&signer)
        {
            m.buckets.seen_via_host(now);
        }
        let issued = frame.header().issued_at;
        match frame.message() {
            Message::ClockPing(ping) => self.on_ping(*ping, frame.bytes(), from, now),
            Message::ClockPong(pong) => {
                if let Some(via) = self.ping_routes.take(pong.id, pong.origin.as_micros()) {
                    self.send(via, channels::CLOCK.id, frame.bytes().to_vec());
                } else if !self.is_host && self.engine.handle_pong(*pong, now).is_err() {
                    self.stats.pongs_refused = self.stats.pongs_refused.saturating_add(1);
                }
            }
            Message::Bind(b) => self.on_bind(b, from),
            Message::Knock(_) => {
                if let Some(sig) = self.lookup(frame.signer(), now) {
                    self.on_knock(&sig, from, now);
                }
            }
            Message::Roster(list) => {
                let h = frame.header();
                if self.on_roster(list, h.epoch, h.seq) {
                    self.last_roster_frame = Some(frame.bytes().to_vec());
                }
            }
            Message::Refuse(r) => {
                if Some(r.member) == self.me {
                    self.event(Event::RequestRefused { reason: r.reason });
                }
            }
            Message::Handoff(h) => {
                if self.verifier.pinned_host().is_some() {
                    self.verifier.pin_host(h.new_key);
                }
                self.pending_handoff = Some(*h);
                self.event(Event::HandoffAnnounced {
                    new_host: h.new_host,
                });
                if let Some(held) = self.pending_host_cert.take() {
                    self.on_host_changed(&held.cert, now);
                }
            }
            Message::Chat(text) => {
                if self.chat_log.show(frame.bytes()) {
                    self.event(Event::Chat {
                        from: signer,
                        text: text.clone(),
                        earlier: None,
                    });
                }
            }
            // Shown once accepted (`show_earlier`), never applied as a command.
            Message::ChatHistory(_) => {}
            Message::Reaction(emoji) => self.event(Event::Reaction {
                from: signer,
                emoji: emoji.clone(),
            }),
            Message::Announce(cert) => {
                let _ = self.add_member(cert, now);
            }
            Message::Latency(l) => {
                if self.is_host {
                    self.lead_times.record(signer, *l);
                }
            }
            Message::Status(s) => {
                self.rebind_on_status(from, signer, now);
                if !self.is_host && from == signer {
                    // Its own Status, sent to us: a member without a
                    // channel to the host. Hand it the latest signed State
                    // (it verifies the host signature) — unless it showed a
                    // path to the host, and at most once per
                    // STATE_REPLY_INTERVAL, so a Status flood draws no
                    // State flood.
                    if let Some(bytes) = self.last_state_frame.clone()
                        && self
                            .members
                            .get_mut(&signer)
                            .is_some_and(|m| m.buckets.answer_status(now))
                    {
                        self.send(from, channels::CONTROL.id, bytes);
                        if let Some(roster) = self.last_roster_frame.clone() {
                            self.send(from, channels::CONTROL.id, roster);
                        }
                    }
                }
                if self.is_host {
                    self.statuses.insert(
                        signer,
                        MemberStatus {
                            readiness: s.readiness,
                            detached: s.detached,
                            position: s.position.to_media_pos(),
                            at: s.at.to_room_time(),
                            received: now,
                        },
                    );
                    if let Some(ready_since) = self.excused.get_mut(&signer) {
                        if s.readiness == Readiness::Ready {
                            let since = *ready_since.get_or_insert(now);
                            if now.since(since) >= EXCUSE_STEADY {
                                self.excused.remove(&signer);
                            }
                        } else {
                            *ready_since = None;
                        }
                    }
                    if let Some(r) = self.resume.as_mut() {
                        r.waiting.remove(&signer);
                    }
                    self.maybe_finish_resume(now);
                    self.evaluate_buffering(now);
                }
            }
            Message::Request(cmd) => {
                if self.is_host {
                    self.serve_request(signer, frame.header().seq, cmd.clone(), now);
                }
            }
            msg => {
                if frame.kind() == Kind::State {
                    self.last_state_frame = Some(frame.bytes().to_vec());
                    self.last_state_meta = Some(StateMeta {
                        signer: frame.signer(),
                        epoch: frame.header().epoch,
                        issued_at: issued,
                    });
                }
                let first = self.next_status_at.is_none() && !self.is_host;
                self.apply_command(msg, issued, now);
                if first {
                    self.send_status(now);
                }
            }
        }
    }

    fn on_ping(&mut self, ping: ClockPing, bytes: &[u8], from: UserId, now: LocalTime) {
        if self.is_host {
            if let Some(pong) = self.engine.answer_ping(ping, now)
                && let Ok(b) = self.sign(&Message::ClockPong(pong), now)
            {
                self.send(from, channels::CLOCK.id, b);
            }
        } else if let Some(host) = self.host() {
            // Relay for a peer without a direct path to the host.
            if from == host {
                return;
            }
            self.ping_routes
                .insert(ping.id, ping.origin.as_micros(), from);
            if self.links.contains_key(&host) {
                self.send(host, channels::CLOCK.id, bytes.to_vec());
            } else {
                self.broadcast(channels::CLOCK.id, bytes, Some(from));
            }
        }
    }

    /// Applies a verified host command (or our own, as host).
    fn apply_command(&mut self, msg: &Message, issued: RoomMs, now: LocalTime) {
        if matches!(msg, Message::State(_)) {
            self.stats.states_applied = self.stats.states_applied.saturating_add(1);
        } else {
            self.stats.commands_applied = self.stats.commands_applied.saturating_add(1);
        }
        let latest = self.engine.timeline().map(|t| *t.latest());
        let rate = latest.map_or(Rate::NORMAL, |s| s.rate);
        let paused = latest.is_none_or(|s| s.paused);
        match msg {
            Message::Load(item) => self.load(item.clone(), issued, now),
            Message::Queue(q) => {
                self.queue = q.clone();
                self.event(Event::QueueChanged);
            }
            Message::Next | Message::Previous | Message::Jump { .. } => {
                let len = self.queue.items().len();
                let cur = self.queue.current();
                let idx = match (msg, cur) {
                    (Message::Next, Some(c)) => usize::from(c) + 1,
                    (Message::Next, None) => 0,
                    (Message::Previous, Some(c)) => usize::from(c).saturating_sub(1),
                    (Message::Previous, None) => 0,
                    (Message::Jump { index }, _) => usize::from(*index),
                    _ => return,
                };
                if idx < len
                    && let (Ok(i), Some(item)) =
                        (u16::try_from(idx), self.queue.items().get(idx).cloned())
                {
                    if let Ok(q) = Queue::new(self.queue.items().to_vec(), Some(i)) {
                        self.queue = q;
                    }
                    self.event(Event::QueueChanged);
                    self.load(item, issued, now);
                }
            }
            Message::Play { position, at } => self.set_timeline(
                PlaybackState::playing(position.to_media_pos(), at.to_room_time(), rate),
                now,
            ),
            Message::Pause { position, at } => self.set_timeline(
                PlaybackState::paused(position.to_media_pos(), at.to_room_time(), rate),
                now,
            ),
            Message::Seek {
                position,
                paused,
                at,
            } => self.set_timeline(
                PlaybackState {
                    position: position.to_media_pos(),
                    at: at.to_room_time(),
                    rate,
                    paused: *paused,
                },
                now,
            ),
            Message::Rate { rate, position, at } => self.set_timeline(
                PlaybackState {
                    position: position.to_media_pos(),
                    at: at.to_room_time(),
                    rate: rate.to_rate(),
                    paused,
                },
                now,
            ),
            Message::State(s) => {
                if s.loaded != self.loaded {
                    self.loaded = s.loaded.clone();
                    self.engine
                        .set_duration(s.loaded.as_ref().map(|i| i.duration.to_media_pos()));
                    if let Some(item) = &s.loaded {
                        self.event(Event::LoadMedia(item.clone()));
                    }
                }
                if s.queue != self.queue {
                    self.queue = s.queue.clone();
                    self.event(Event::QueueChanged);
                }
                if s.policy != self.policy {
                    self.policy = s.policy;
                    self.event(Event::PolicyChanged(s.policy));
                }
                for g in &s.roles {
                    self.grant(*g);
                }
                let t = &s.timeline;
                self.set_timeline(
                    PlaybackState {
                        position: t.position.to_media_pos(),
                        at: t.at.to_room_time(),
                        rate: t.rate.to_rate(),
                        paused: t.paused,
                    },
                    now,
                );
            }
            Message::Policy(p) => {
                self.policy = *p;
                self.event(Event::PolicyChanged(*p));
            }
            Message::Role(g) => self.grant(*g),
            Message::Kick { member } => {
                if Some(*member) == self.me {
                    self.end(now);
                    self.event(Event::Kicked(*member));
                } else {
                    self.remove_member(*member);
                    if self.links.remove(member).is_some() {
                        self.push(Output::Disconnect {
                            peer: *member,
                            reason: DisconnectReason::Kicked,
                        });
                    }
                    self.event(Event::Kicked(*member));
                }
            }
            _ => {}
        }
    }

    fn grant(&mut self, g: RoleGrant) {
        if g.role == Role::Host {
            return; // the host moves only by handoff
        }
        if self.roles.insert(g.member, g.role) != Some(g.role) {
            self.event(Event::RoleChanged {
                member: g.member,
                role: g.role,
            });
        }
    }

    fn load(&mut self, item: MediaItem, issued: RoomMs, now: LocalTime) {
        self.engine.set_duration(Some(item.duration.to_media_pos()));
        self.loaded = Some(item.clone());
        self.player_ended = false;
        self.statuses.clear();
        self.want_playing = false;
        self.event(Event::LoadMedia(item));
        self.set_timeline(
            PlaybackState::paused(MediaPos::ZERO, issued.to_room_time(), Rate::NORMAL),
            now,
        );
        self.send_status(now);
    }

    fn set_timeline(&mut self, s: PlaybackState, now: LocalTime) {
        self.engine.handle_timeline(s, now);
    }

    // --------------------------------------------------------------- host --

    fn host_command(&mut self, cmd: UserCommand, now: LocalTime) -> Result<(), CommandError> {
        // Acting ends the wait for our earlier state (§7.2).
        self.finish_resume(now);
        let at = self
            .scheduled_at(now, LeadFor::Delivery)
            .ok_or(CommandError::InvalidState)?;
        match cmd {
            UserCommand::Play => {
                self.want_playing = true;
                self.reset_wait();
                self.evaluate_buffering(now);
                Ok(())
            }
            UserCommand::Pause => {
                self.want_playing = false;
                self.reset_wait();
                let s = self.timeline_at(at, |t| t.pause_at(at))?;
                self.issue(&pause_msg(&s), now)
            }
            UserCommand::Seek(pos) => {
                let s = self.timeline_at(at, |t| t.seek_at(at, pos, None))?;
                self.issue(&seek_msg(&s), now)
            }
            UserCommand::Rate(rate) => {
                let s = self.timeline_at(at, |t| t.rate_at(at, rate))?;
                self.issue(&rate_msg(&s), now)
            }
            UserCommand::Load(item) => self.issue(&Message::Load(item), now),
            UserCommand::Queue(items) => {
                let current = if items.is_empty() { None } else { Some(0) };
                let q = Queue::new(items, current).map_err(|_| CommandError::InvalidState)?;
                self.issue(&Message::Queue(q), now)
            }
            UserCommand::Next => self.issue(&Message::Next, now),
            UserCommand::Previous => self.issue(&Message::Previous, now),
            UserCommand::Jump(index) => {
                if usize::from(index) >= self.queue.items().len() {
                    return Err(CommandError::InvalidState);
                }
                self.issue(&Message::Jump { index }, now)
            }
            UserCommand::SetRole { member, role } => {
                if role == Role::Host || !self.members.get(&member).is_some_and(|m| m.current) {
                    return Err(CommandError::InvalidState);
                }
                self.issue(&Message::Role(RoleGrant { member, role }), now)?;
                self.push(Output::Signal(ClientMessage::SetRole {
                    user: member,
                    role,
                }));
                Ok(())
            }
            UserCommand::Kick(member) => {
                if Some(member) == self.me {
                    return Err(CommandError::InvalidState);
                }
                self.issue(&Message::Kick { member }, now)?;
                self.push(Output::Signal(ClientMessage::Kick { user: member }));
                Ok(())
            }
            UserCommand::Handoff(member) => {
                let key = self.current_member_key(member)?;
                let new_epoch = self.epoch.next().ok_or(CommandError::SeqExhausted)?;
                let h = Handoff {
                    new_host: member,
                    new_key: key,
                    new_epoch,
                };
                self.issue(&Message::Handoff(h), now)?;
                // As every receiver of our signed Handoff does: a pinned
                // host key moves to the new host's (else our own pin, e.g.
                // from the invite link, would refuse its certificate).
                if self.verifier.pinned_host().is_some() {
                    self.verifier.pin_host(key);
                }
                self.pending_handoff = Some(h);
                self.push(Output::Signal(ClientMessage::Handoff { to: member }));
                Ok(())
            }
            UserCommand::SetPolicy(p) => {
                self.issue(&Message::Policy(p), now)?;
                self.evaluate_buffering(now);
                Ok(())
            }
            // Handled before the role split (`command_inner`).
            UserCommand::Chat(_)
            | UserCommand::Reaction(_)
            | UserCommand::FreeWatch
            | UserCommand::Resync
            | UserCommand::Ask(_)
            | UserCommand::AcceptAsk(_)
            | UserCommand::DismissAsk(_)
            | UserCommand::Approve(_) => Ok(()),
        }
    }

    fn timeline_at(
        &self,
        _at: RoomTime,
        f: impl FnOnce(&crate::timeline::Timeline) -> PlaybackState,
    ) -> Result<PlaybackState, CommandError> {
        self.engine
            .timeline()
            .map(f)
            .ok_or(CommandError::InvalidState)
    }

    /// Host: sign, send to every neighbour, apply locally.
    fn issue(&mut self, msg: &Message, now: LocalTime) -> Result<(), CommandError> {
        let seq = self.next_seq;
        let bytes = self.sign(msg, now)?;
        self.broadcast(msg.kind().channel().id, &bytes, None);
        self.last_control_seq = Some(seq);
        let issued = RoomMs::from_room_time(self.engine.room_time(now).unwrap_or(RoomTime::ZERO));
        match msg {
            Message::Handoff(h) => self.event(Event::HandoffAnnounced {
                new_host: h.new_host,
            }),
            m => self.apply_command(m, issued, now),
        }
        if is_command(msg.kind()) && !matches!(msg.kind(), Kind::State | Kind::Handoff) {
            // A State follows every change at the next timeout (commands in
            // the same instant share it): the latest State a follower holds
            // is then the room as it is, which a returning host adopts.
            self.next_state_at = Some(now);
        }
        Ok(())
    }

    fn serve_request(&mut self, member: UserId, seq: Seq, cmd: RequestedCommand, now: LocalTime) {
        let role = self.roles.get(&member).copied().unwrap_or(Role::Viewer);
        let refuse = match role {
            Role::Host => None,
            Role::Viewer => Some(RefuseReason::ViewerRole),
            Role::Controller
                if !self
                    .policy
                    .controllers
                    .contains(Permissions::needed_for(&cmd)) =>
            {
                Some(RefuseReason::PolicyDenied)
            }
            Role::Controller => None,
        };
        // What the member may not do itself but may ask for waits for our
        // user's decision (§4.2 *Asking the host*).
        if matches!(
            refuse,
            Some(RefuseReason::ViewerRole | RefuseReason::PolicyDenied)
        ) && let Some(what) = AskFor::from_request(&cmd)
        {
            self.hold_ask(member, seq, what, now);
            return;
        }
        let result = match refuse {
            Some(r) => Err(r),
            None => {
                let c = match cmd {
                    RequestedCommand::Play => UserCommand::Play,
                    RequestedCommand::Pause => UserCommand::Pause,
                    RequestedCommand::Seek { position } => {
                        UserCommand::Seek(position.to_media_pos())
                    }
                    RequestedCommand::Rate { rate } => UserCommand::Rate(rate.to_rate()),
                    RequestedCommand::Load(item) => UserCommand::Load(item),
                    RequestedCommand::Next => UserCommand::Next,
                    RequestedCommand::Previous => UserCommand::Previous,
                    RequestedCommand::Jump { index } => UserCommand::Jump(index),
                };
                self.host_command(c, now)
                    .map_err(|_| RefuseReason::InvalidState)
            }
        };
        if let Err(reason) = result {
            self.refuse(member, seq, reason, now);
        }
    }

    /// Host: signs a `Refuse` of `member`'s request `seq`.
    fn refuse(&mut self, member: UserId, seq: Seq, reason: RefuseReason, now: LocalTime) {
        let m = Message::Refuse(Refusal {
            member,
            request_seq: seq,
            reason,
        });
        let _ = self.issue(&m, now);
    }

    /// Host: holds an ask for our user's decision, within the member's ask
    /// limit (one refusal per over-limit streak) and [`MAX_PENDING_ASKS`].
    fn hold_ask(&mut self, member: UserId, seq: Seq, what: AskFor, now: LocalTime) {
        let limits = limits_of(&self.cfg);
        let Some(m) = self.members.get_mut(&member) else {
            return;
        };
        if !m.buckets.admit_ask(&limits, now) {
            if !std::mem::replace(&mut m.buckets.ask_refused, true) {
                self.refuse(member, seq, RefuseReason::RateLimited, now);
            }
            return;
        }
        m.buckets.ask_refused = false;
        let ask = PendingAsk {
            member,
            what,
            request_seq: seq,
            at: now,
        };
        if self.asks.insert(ask) {
            self.event(Event::AsksChanged);
        } else {
            self.refuse(member, seq, RefuseReason::TooManyPending, now);
        }
    }

    /// Host: the asks waiting for our user's decision, oldest first (at
    /// most one per member, [`MAX_PENDING_ASKS`] in all). Empty on a
    /// follower.
    #[must_use]
    pub fn pending_asks(&self) -> Vec<PendingAsk> {
        self.asks.list()
    }

    /// Host: carries out `member`'s ask as our own signed command. If the
    /// command no longer applies, the member is told (`invalid state`).
    fn accept_ask(&mut self, member: UserId, now: LocalTime) -> Result<(), CommandError> {
        if !self.is_host {
            return Err(CommandError::NotHost);
        }
        let ask = self.asks.remove(member).ok_or(CommandError::NoSuchAsk)?;
        self.event(Event::AsksChanged);
        let r = self.host_command(ask.what.to_command(), now);
        if r.is_err() {
            self.refuse(member, ask.request_seq, RefuseReason::InvalidState, now);
        }
        r
    }

    /// Host: says no to `member`'s ask (`Refuse` with `dismissed`).
    fn dismiss_ask(&mut self, member: UserId, now: LocalTime) -> Result<(), CommandError> {
        if !self.is_host {
            return Err(CommandError::NotHost);
        }
        let ask = self.asks.remove(member).ok_or(CommandError::NoSuchAsk)?;
        self.event(Event::AsksChanged);
        self.refuse(member, ask.request_seq, RefuseReason::Dismissed, now);
        Ok(())
    }

    fn wait_timeout(&self) -> TimeDelta {
        TimeDelta::from_millis(i64::from(self.policy.wait_timeout_ms))
    }

    fn room_paused(&self) -> bool {
        self.engine.timeline().is_none_or(|t| t.latest().paused)
    }

    /// Who holds up the room (wait-for-everyone).
    fn blockers(&self, now: LocalTime) -> Vec<UserId> {
        let full = full_allowance(self.wait_timeout());
        let mut v: Vec<UserId> = self
            .statuses
            .iter()
            .filter(|(u, s)| {
                !s.detached
                    && matches!(s.readiness, Readiness::Loading | Readiness::Buffering)
                    && !self.excused.contains_key(u)
                    && self.holds.waits_for(**u, full, now)
                    && self.members.get(u).is_some_and(|m| m.current)
            })
            .map(|(u, _)| *u)
            .collect();
        if let Some(me) = self.me {
            let loading = self
                .loaded
                .as_ref()
                .is_some_and(|i| self.my_media != Some(i.hash));
            if (self.buffering || loading) && !self.excused.contains_key(&me) {
                v.push(me);
            }
        }
        v
    }

    /// Host: pause the room for buffering members or (re)start it.
    fn evaluate_buffering(&mut self, now: LocalTime) {
        // What the hold so far cost the members it waited for; a member
        // whose allowance ran out is no longer waited for.
        for user in self.holds.settle(full_allowance(self.wait_timeout()), now) {
            self.excused.insert(user, None);
            self.event(Event::NoLongerWaitedFor(user));
        }
        self.track_own_excuse(now);
        if !self.is_host || !self.want_playing {
            self.reset_wait();
            return;
        }
        let wait = self.policy.buffering == Buffering::WaitForEveryone;
        let blockers = if wait { self.blockers(now) } else { Vec::new() };
        if blockers.is_empty() {
            if self.waiting_since.is_some() && self.wait_released_at.is_none() {
                self.wait_released_at = Some(now);
            }
            if self
                .wait_released_at
                .is_some_and(|r| now.since(r) >= REHOLD_GRACE)
            {
                self.reset_wait();
            }
            if self.room_paused() {
                self.issue_play(now);
            }
            return;
        }
        let since = match self.waiting_since {
            Some(s) => {
                // Held again within the grace: the earlier hold goes on.
                if self.wait_released_at.take().is_some() {
                    self.event(Event::Waiting(blockers.clone()));
                }
                s
            }
            None => {
                self.waiting_since = Some(now);
                self.event(Event::Waiting(blockers.clone()));
                now
            }
        };
        if now.since(since) >= self.wait_timeout() {
            self.excused.extend(blockers.iter().map(|u| (*u, None)));
            self.reset_wait();
            self.event(Event::WatchdogExpired(blockers));
            if self.room_paused() {
                self.issue_play(now);
            }
            return;
        }
        // The room is held for these members from now on (we, the host,
        // have no allowance).
        let charged = blockers.iter().copied().filter(|u| Some(*u) != self.me);
        self.holds.hold(charged.collect(), now);
        if !self.room_paused()
            && let Some(at) = self.scheduled_at(now, LeadFor::Delivery)
            && let Ok(s) = self.timeline_at(at, |t| t.pause_at(at))
        {
            let _ = self.issue(&pause_msg(&s), now);
        }
    }

    /// Host: a member that joins (or comes back after a reload) while the
    /// room plays catches up on its own: its loading and the buffering of
    /// its first seeks do not hold the room, or a member aligning itself
    /// would pause and resume everyone again and again. It is waited for
    /// like everyone once it has reported `Ready` for [`EXCUSE_STEADY`].
    fn excuse_late_joiner(&mut self, user: UserId) {
        if self.is_host && self.want_playing && Some(user) != self.me {
            self.excused.insert(user, None);
        }
    }

    /// A host excused from holding the room (returning, catching up) is
    /// waited for again once it has been ready for [`EXCUSE_STEADY`].
    fn track_own_excuse(&mut self, now: LocalTime) {
        let loading = self
            .loaded
            .as_ref()
            .is_some_and(|i| self.my_media != Some(i.hash));
        let ready = !loading && !self.buffering && !self.media_failed;
        let Some(me) = self.me else { return };
        let Some(since) = self.excused.get_mut(&me) else {
            return;
        };
        if !ready {
            *since = None;
        } else if now.since(*since.get_or_insert(now)) >= EXCUSE_STEADY {
            self.excused.remove(&me);
        }
    }

    /// Forgets the current hold (and its grace).
    fn reset_wait(&mut self) {
        self.waiting_since = None;
        self.wait_released_at = None;
    }

    /// Host: how far ahead commands are scheduled now; `None` on a
    /// follower.
    #[must_use]
    pub fn command_lead(&self) -> Option<CommandLead> {
        self.is_host.then(|| CommandLead {
            start: self.lead_time(LeadFor::Start),
            delivery: self.lead_time(LeadFor::Delivery),
        })
    }

    /// Host: the room time at which a command issued at `now` takes
    /// effect: `now` plus the lead time for `what` (§9.3, *Adaptive lead
    /// time*).
    fn scheduled_at(&self, now: LocalTime, what: LeadFor) -> Option<RoomTime> {
        Some(self.engine.room_time(now)? + self.lead_time(what))
    }

    /// Host: the lead time for `what`, from the latency reports of the
    /// members in the room.
    fn lead_time(&self, what: LeadFor) -> TimeDelta {
        let present = self
            .members
            .iter()
            .filter(|(u, m)| m.current && Some(**u) != self.me)
            .map(|(u, _)| *u);
        self.lead_times.lead(
            self.engine.config(),
            present,
            self.engine.start_estimate(),
            what,
        )
    }

    fn issue_play(&mut self, now: LocalTime) {
        if let Some(at) = self.scheduled_at(now, LeadFor::Start)
            && let Ok(s) = self.timeline_at(at, |t| t.play_at(at, None))
        {
            let _ = self.issue(&play_msg(&s), now);
        }
    }

    fn end_of_item_at(&self) -> Option<LocalTime> {
        if !self.is_host {
            return None;
        }
        let item = self.loaded.as_ref()?;
        let s = self.engine.timeline()?.latest();
        if s.paused || self.queue.items().is_empty() {
            return None;
        }
        let remaining = item.duration.to_media_pos() - s.position;
        let end_room = s.at + s.rate.time_for(remaining);
        let room_now = self.engine.room_time(self.now)?;
        Some(self.now + end_room.since(room_now))
    }

    fn auto_advance(&mut self, now: LocalTime) {
        let has_next = self
            .queue
            .current()
            .is_some_and(|c| usize::from(c) + 1 < self.queue.items().len());
        if has_next {
            let keep_playing = self.want_playing;
            let _ = self.issue(&Message::Next, now);
            if keep_playing {
                self.want_playing = true;
                self.evaluate_buffering(now);
            }
        } else if let Some(at) = self.scheduled_at(now, LeadFor::Delivery) {
            self.want_playing = false;
            if let Ok(s) = self.timeline_at(at, |t| t.pause_at(at)) {
                let _ = self.issue(&pause_msg(&s), now);
            }
        }
    }

    fn send_state_to(&mut self, to: Option<UserId>, now: LocalTime) {
        self.next_state_at = Some(now + self.cfg.state_interval);
        let Some(t) = self.engine.timeline().map(|t| *t.latest()) else {
            return;
        };
        let roles: Vec<RoleGrant> = self
            .roles
            .iter()
            .filter(|(u, _)| self.members.get(u).is_some_and(|m| m.current))
            .take(MAX_ROLE_GRANTS)
            .map(|(u, r)| RoleGrant {
                member: *u,
                role: *r,
            })
            .collect();
        let state = Message::State(Box::new(RoomState {
            loaded: self.loaded.clone(),
            queue: self.queue.clone(),
            timeline: WireTimeline {
                paused: t.paused,
                position: PositionMs::from_media_pos(t.position),
                at: RoomMs::from_room_time(t.at),
                rate: RateMilli::from_rate(t.rate),
            },
            policy: self.policy,
            roles,
        }));
        let seq = self.next_seq;
        if let Ok(bytes) = self.sign(&state, now) {
            self.last_control_seq = Some(seq);
            match to {
                Some(p) => self.send(p, channels::CONTROL.id, bytes),
                None => self.broadcast(channels::CONTROL.id, &bytes, None),
            }
        }
    }

    // ----------------------------------------------------------- follower --

    fn follower_command(&mut self, cmd: UserCommand, now: LocalTime) -> Result<(), CommandError> {
        let req = match cmd {
            UserCommand::Play => RequestedCommand::Play,
            UserCommand::Pause => RequestedCommand::Pause,
            UserCommand::Seek(p) => RequestedCommand::Seek {
                position: PositionMs::from_media_pos(p),
            },
            UserCommand::Rate(r) => RequestedCommand::Rate {
                rate: RateMilli::from_rate(r),
            },
            UserCommand::Load(item) => RequestedCommand::Load(item),
            UserCommand::Next => RequestedCommand::Next,
            UserCommand::Previous => RequestedCommand::Previous,
            UserCommand::Jump(index) => RequestedCommand::Jump { index },
            UserCommand::Queue(_)
            | UserCommand::SetRole { .. }
            | UserCommand::Kick(_)
            | UserCommand::Handoff(_)
            | UserCommand::SetPolicy(_) => return Err(CommandError::NotHost),
            UserCommand::AcceptAsk(_) | UserCommand::DismissAsk(_) | UserCommand::Approve(_) => {
                return Err(CommandError::NotHost);
            }
            UserCommand::Chat(_)
            | UserCommand::Reaction(_)
            | UserCommand::FreeWatch
            | UserCommand::Resync
            | UserCommand::Ask(_) => {
                return Ok(());
            }
        };
        self.request(req, now)
    }

    /// Asks the host for what we may not do ourselves; what we may do is
    /// simply done (§4.2 *Asking the host*).
    fn ask(&mut self, what: AskFor, now: LocalTime) -> Result<(), CommandError> {
        if self.is_host {
            return self.host_command(what.to_command(), now);
        }
        let req = what.to_request();
        if self.role() == Some(Role::Controller)
            && self
                .policy
                .controllers
                .contains(Permissions::needed_for(&req))
        {
            return self.request(req, now);
        }
        let limits = limits_of(&self.cfg);
        if !self.own_buckets.admit_own_ask(&limits, now) {
            return Err(CommandError::AskedTooOften);
        }
        self.admit_own(Kind::Request, now)?;
        let bytes = self.sign(&Message::Request(req), now)?;
        self.send_to_host(channels::CONTROL.id, bytes);
        Ok(())
    }

    fn request(&mut self, req: RequestedCommand, now: LocalTime) -> Result<(), CommandError> {
        match self.role() {
            Some(Role::Host) => {}
            Some(Role::Controller) => {
                if !self
                    .policy
                    .controllers
                    .contains(Permissions::needed_for(&req))
                {
                    return Err(CommandError::Refused(RefuseReason::PolicyDenied));
                }
            }
            _ => return Err(CommandError::Refused(RefuseReason::ViewerRole)),
        }
        self.admit_own(Kind::Request, now)?;
        let bytes = self.sign(&Message::Request(req), now)?;
        self.send_to_host(channels::CONTROL.id, bytes);
        Ok(())
    }

    fn readiness(&self) -> Readiness {
        if self.media_failed {
            return Readiness::Failed;
        }
        if let Some(item) = &self.loaded
            && self.my_media != Some(item.hash)
        {
            return Readiness::Loading;
        }
        if self.buffering {
            Readiness::Buffering
        } else if self.player_ended {
            Readiness::Ended
        } else {
            Readiness::Ready
        }
    }

    fn send_status(&mut self, now: LocalTime) {
        if self.is_host || self.me.is_none() || self.host.is_none() {
            return;
        }
        self.next_status_at = Some(now + self.cfg.status_interval);
        if let Some(knock) = self.knock_frame(now) {
            self.send_to_host(channels::CONTROL.id, knock);
        }
        if self.status_withheld() {
            return;
        }
        // The room time when the position was read: stamping the send
        // instant instead would report a playing member up to one sampling
        // interval behind.
        let read_at = self
            .last_position_at
            .and_then(|t| self.engine.room_time(t))
            .or_else(|| self.engine.room_time(now))
            .unwrap_or(RoomTime::ZERO);
        let s = Message::Status(Status {
            readiness: self.readiness(),
            item: self.my_media,
            position: PositionMs::from_media_pos(self.last_position),
            at: RoomMs::from_room_time(read_at),
            detached: !self.engine.is_attached(),
        });
        if let Ok(bytes) = self.sign(&s, now) {
            self.send_to_host(channels::CONTROL.id, bytes);
        }
        self.send_latency(now);
    }

    /// Member: tells the host our round trip and start-up latency (its
    /// adaptive lead time, §9.3), once the clock has samples.
    fn send_latency(&mut self, now: LocalTime) {
        let Some(host) = self.host() else { return };
        if self.is_host || self.me.is_none() || self.status_withheld() {
            return;
        }
        let Some(round_trip) = self.engine.clock().max_round_trip() else {
            return;
        };
        let report = Message::Latency(Latency {
            round_trip: ReportedLatency::saturating_from(round_trip),
            startup: ReportedLatency::saturating_from(self.engine.start_estimate()),
        });
        if let Ok(bytes) = self.sign(&report, now) {
            self.send_to_host(channels::CONTROL.id, bytes);
            self.latency_sent = Some((host, self.epoch));
        }
    }

    /// Directly when linked to the host, otherwise through every neighbour.
    fn send_to_host(&mut self, channel: ChannelId, bytes: Vec<u8>) {
        match self.host() {
            Some(h) if self.links.contains_key(&h) => self.send(h, channel, bytes),
            _ => self.broadcast(channel, &bytes, None),
        }
    }

    // ------------------------------------------------------------- common --

    fn advance(&mut self, now: LocalTime) {
        self.now = self.now.max(now);
    }

    /// Signs `msg` with our key under the current epoch and next seq.
    fn sign(&mut self, msg: &Message, now: LocalTime) -> Result<Vec<u8>, CommandError> {
        let seq = self.next_seq;
        // Before the room clock is known: our wall clock, which a host's
        // room clock starts from (so the host's skew check passes).
        let issued_at = self.room_ms(now);
        let header = Header {
            room: self.cfg.room,
            epoch: self.epoch,
            seq,
            issued_at,
        };
        let bytes = frame::encode(&self.identity, &header, msg)?;
        self.next_seq = seq.next().ok_or(CommandError::SeqExhausted)?;
        self.dedupe
            .insert((self.identity.key_id(), self.epoch, seq), digest(&bytes));
        self.stats.signed = self.stats.signed.saturating_add(1);
        Ok(bytes)
    }

    fn send(&mut self, to: UserId, channel: ChannelId, bytes: Vec<u8>) {
        if self.withheld(to, channel) {
            return;
        }
        self.push(Output::SendFrame { to, channel, bytes });
    }

    fn broadcast(&mut self, channel: ChannelId, bytes: &[u8], except: Option<UserId>) {
        let targets: Vec<UserId> = self
            .links
            .keys()
            .copied()
            .filter(|p| Some(*p) != except)
            .collect();
        for to in targets {
            self.send(to, channel, bytes.to_vec());
        }
    }

    /// Drains the sync engine's outputs.
    fn drive(&mut self, now: LocalTime) {
        self.arm_bind_deadlines(now);
        if !self.is_host
            && self.engine.clock().is_ready()
            && self
                .host()
                .is_some_and(|h| self.latency_sent != Some((h, self.epoch)))
        {
            self.send_latency(now);
        }
        while let Some(o) = self.engine.poll_output() {
            match o {
                SyncOutput::Player(a) => self.push(Output::Player(a)),
                SyncOutput::Ping(p) => {
                    if self.is_host || self.host.is_none() || self.me.is_none() {
                        continue;
                    }
                    if let Ok(bytes) = self.sign(&Message::ClockPing(p), now) {
                        self.send_to_host(channels::CLOCK.id, bytes);
                    }
                }
                SyncOutput::Event(e) => self.on_sync_event(e, now),
            }
        }
    }

    fn on_sync_event(&mut self, e: SyncEvent, now: LocalTime) {
        match e {
            SyncEvent::UserIntent {
                intent,
                attached: true,
            } => {
                if self.is_host {
                    self.host_intent(intent, now);
                } else {
                    let req = match intent {
                        UserIntent::Play { .. } => RequestedCommand::Play,
                        UserIntent::Pause { .. } => RequestedCommand::Pause,
                        UserIntent::Seek { position } => RequestedCommand::Seek {
                            position: PositionMs::from_media_pos(position),
                        },
                        UserIntent::Rate { rate } => RequestedCommand::Rate {
                            rate: RateMilli::from_rate(rate),
                        },
                    };
                    // A refused intent is undone by the engine after its hold.
                    let _ = self.request(req, now);
                }
            }
            SyncEvent::Buffering(b) => {
                self.buffering = b;
                if self.is_host {
                    self.evaluate_buffering(now);
                } else {
                    self.send_status(now);
                }
            }
            SyncEvent::Ended => {
                self.player_ended = true;
                self.send_status(now);
            }
            SyncEvent::UserIntent {
                attached: false, ..
            } => {}
            SyncEvent::ClockJump | SyncEvent::ClockReady => {}
        }
        self.event(Event::Sync(e));
    }

    /// The host's own user acted on its player: a command effective now.
    fn host_intent(&mut self, intent: UserIntent, now: LocalTime) {
        let Some(room_now) = self.engine.room_time(now) else {
            return;
        };
        let Some(tl) = self.engine.timeline() else {
            return;
        };
        let msg = match intent {
            UserIntent::Play { position } => {
                self.want_playing = true;
                play_msg(&tl.play_at(room_now, Some(position)))
            }
            UserIntent::Pause { position } => {
                self.want_playing = false;
                pause_msg(&PlaybackState::paused(
                    position,
                    room_now,
                    tl.expected_at(room_now).rate,
                ))
            }
            UserIntent::Seek { position } => seek_msg(&tl.seek_at(room_now, position, None)),
            UserIntent::Rate { rate } => rate_msg(&tl.rate_at(room_now, rate)),
        };
        let _ = self.issue(&msg, now);
    }
}

/// Why a frame was not accepted.
enum Rx {
    /// An exact copy of an accepted frame (mesh); not an attack, not counted.
    Duplicate,
    /// Failed an acceptance rule.
    Drop(DropReason),
}

/// Host commands that carry or change room state; totally ordered per epoch.
fn is_command(kind: Kind) -> bool {
    kind.signer() == SignerClass::Host
        && kind != Kind::ClockPong
        && kind != Kind::Bind
        && kind != Kind::Refuse
        && kind != Kind::Roster
        && kind != Kind::ChatHistory
}

/// (signer, epoch, seq) read from a parsed envelope's unverified header,
/// used only to look up exact copies.
fn raw_key(env: &Envelope<'_>, bytes: &[u8]) -> Option<FrameKey> {
    let start = frame::ENVELOPE_HEADER_LEN + crate::ids::ROOM_ID_LEN;
    let epoch = u64::from_be_bytes(bytes.get(start..start + 8)?.try_into().ok()?);
    let seq = u64::from_be_bytes(bytes.get(start + 8..start + 16)?.try_into().ok()?);
    Some((env.signer(), Epoch(epoch), Seq::new(seq).ok()?))
}

/// The rate limits of a configuration.
fn limits_of(cfg: &SessionConfig) -> Limits {
    Limits {
        reaction: cfg.reaction_limit,
        chat: cfg.chat_limit,
        request: cfg.request_limit,
        ask: cfg.ask_limit,
    }
}

/// Offset of the kind byte in a frame (after magic and version).
const FRAME_KIND_OFFSET: usize = frame::MAGIC.len() + 1;

/// Highest [`drop_rank`].
const MAX_DROP_RANK: u8 = 3;

/// Which queued outputs go first when the queue is full (lowest rank
/// first); `None` for essential outputs: `Disconnect`, `Signal` and the
/// host's `Bind` (the MITM check of a connection).
fn drop_rank(o: &Output) -> Option<u8> {
    match o {
        Output::Event(_) => Some(0),
        Output::SendFrame { channel, .. } if *channel == channels::CLOCK.id => Some(1),
        Output::SendFrame { bytes, .. }
            if bytes.get(FRAME_KIND_OFFSET) == Some(&Kind::Bind.to_byte()) =>
        {
            None
        }
        Output::SendFrame { .. } => Some(2),
        Output::Player(_) => Some(3),
        Output::Disconnect { .. } | Output::Signal(_) => None,
    }
}

fn play_msg(s: &PlaybackState) -> Message {
    Message::Play {
        position: PositionMs::from_media_pos(s.position),
        at: RoomMs::from_room_time(s.at),
    }
}

fn pause_msg(s: &PlaybackState) -> Message {
    Message::Pause {
        position: PositionMs::from_media_pos(s.position),
        at: RoomMs::from_room_time(s.at),
    }
}

fn seek_msg(s: &PlaybackState) -> Message {
    Message::Seek {
        position: PositionMs::from_media_pos(s.position),
        paused: s.paused,
        at: RoomMs::from_room_time(s.at),
    }
}

fn rate_msg(s: &PlaybackState) -> Message {
    Message::Rate {
        rate: RateMilli::from_rate(s.rate),
        position: PositionMs::from_media_pos(s.position),
        at: RoomMs::from_room_time(s.at),
    }
}
