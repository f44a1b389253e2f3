//! A deterministic room of real `Session`s exchanging real signed frames over
//! a virtual network, with a scripted signaling server, drifting clocks and
//! virtual players. Virtual time only.

#![allow(dead_code)]

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use watchparty_peer::cert::{CertificateBody, SignedCertificate};
use watchparty_peer::channels::{self, ChannelId};
use watchparty_peer::crypto::SigningKey;
use watchparty_peer::ids::{ContentHash, DisplayName, Epoch, Role, RoomId, UnixSeconds, UserId};
use watchparty_peer::message::{Fingerprint, MediaItem};
use watchparty_peer::prng::SplitMix64;
use watchparty_peer::session::{ChannelOpen, Event, Output, Session, SessionConfig, UserCommand};
use watchparty_peer::signaling::{
    BoundedVec, ClientMessage, OffererRule, RosterEntry, ServerMessage,
};
use watchparty_peer::time::{LocalTime, MediaPos, RoomTime, TimeDelta};
use watchparty_peer::virtual_player::{VirtualPlayer, VirtualPlayerConfig};

pub const ROOM: RoomId = RoomId::from_bytes([0x42; 16]);
pub const WALL: UnixSeconds = UnixSeconds(1_700_000_000);

#[derive(Debug, Clone, Copy)]
pub struct Net {
    pub latency_us: i64,
    pub jitter_us: i64,
    pub loss_ppm: u32,
    pub retransmit_us: i64,
}

impl Default for Net {
    fn default() -> Self {
        Self {
            latency_us: 40_000,
            jitter_us: 15_000,
            loss_ppm: 20_000,
            retransmit_us: 200_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub offset: i64,
    pub drift_ppm: i64,
}

impl Clock {
    pub fn local(&self, t: i64) -> LocalTime {
        LocalTime::from_micros(self.offset + t + t * self.drift_ppm / 1_000_000)
    }
    pub fn true_time(&self, l: LocalTime) -> i64 {
        let target = l.as_micros() - self.offset;
        let mut t = target * 1_000_000 / (1_000_000 + self.drift_ppm) - 2;
        while self.local(t) < l {
            t += 1;
        }
        t
    }
}

pub struct Peer {
    pub user: UserId,
    pub key: SigningKey,
    pub clock: Clock,
    pub session: Session,
    pub player: VirtualPlayer,
    pub next_observe: i64,
    pub events: Vec<(i64, Event)>,
    pub errors: Vec<(i64, i64)>,
    /// Delay before `media_loaded` after a `LoadMedia`; `None`: never.
    pub load_delay: Option<i64>,
    pub pending_load: Option<(i64, ContentHash)>,
    /// The player's settings: a load replaces the player with a fresh one
    /// (paused at zero), as the real drivers' players do.
    pub player_cfg: VirtualPlayerConfig,
    pub online: bool,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, Clone)]
struct Packet {
    at: i64,
    seq: u64,
    from: UserId,
    to: UserId,
    channel: ChannelId,
    bytes: Vec<u8>,
}
impl PartialEq for Packet {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Packet {}
impl PartialOrd for Packet {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Packet {
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.seq).cmp(&(self.at, self.seq))
    }
}

pub struct Room {
    pub t: i64,
    pub net: Net,
    pub server: SigningKey,
    pub epoch: Epoch,
    pub peers: Vec<Peer>,
    pub links: BTreeSet<(usize, usize)>,
    /// Fingerprint the "server" shows peer `i` for neighbour `j` (MITM test).
    pub swapped: BTreeSet<(usize, usize)>,
    queue: BinaryHeap<Packet>,
    last_reliable: BTreeMap<(UserId, UserId, ChannelId), i64>,
    pseq: u64,
    rng: SplitMix64,
    next_sample: i64,
    pub sample_us: i64,
    pub observe_us: i64,
    pub max_offset_us: i64,
    pub max_drift_ppm: i64,
    pub signals: Vec<(usize, ClientMessage)>,
    pub seed: u64,
    /// Followers added from now on pin the host key (as from an invite
    /// link); `false` adds followers without a pin.
    pub pin_followers: bool,
    /// Peers added from now on hold the room's admission secret (derived
    /// from the host's key, as the invite link carries it); `false` (the
    /// default) adds peers without it.
    pub admit: bool,
    /// Peers added from now on adapt the lead time (the default, as the
    /// real drivers); `false` keeps the fixed `lead_time`.
    pub adaptive_lead: bool,
}

pub fn key(i: usize) -> SigningKey {
    let mut seed = [0u8; 32];
    seed[0] = 7;
    seed[1] = i as u8;
    SigningKey::from_seed(&seed).unwrap()
}

pub fn user(i: usize) -> UserId {
    UserId::new(i as u64 + 1).unwrap()
}

pub fn item(n: u8, secs: i64) -> MediaItem {
    MediaItem {
        media: watchparty_peer::ids::MediaId::new(&format!("movie-{n}")).unwrap(),
        hash: ContentHash([n; 32]),
        duration: watchparty_peer::ids::PositionMs::new((secs * 1000) as u64).unwrap(),
    }
}

impl Room {
    pub fn new(seed: u64, net: Net) -> Self {
        Self {
            t: 0,
            net,
            server: SigningKey::from_seed(&[0x55; 32]).unwrap(),
            epoch: Epoch(1),
            peers: Vec::new(),
            links: BTreeSet::new(),
            swapped: BTreeSet::new(),
            queue: BinaryHeap::new(),
            last_reliable: BTreeMap::new(),
            pseq: 0,
            rng: SplitMix64::new(seed),
            next_sample: 0,
            sample_us: 50_000,
            observe_us: 100_000,
            max_offset_us: 5_000_000,
            max_drift_ppm: 200,
            signals: Vec::new(),
            seed,
            pin_followers: true,
            admit: false,
            adaptive_lead: true,
        }
    }

    pub fn cert(&self, i: usize, role: Role, epoch: Epoch) -> SignedCertificate {
        SignedCertificate::issue(
            &self.server,
            CertificateBody {
                room: ROOM,
                epoch,
                user: user(i),
                name: DisplayName::new(&format!("user{i}")).unwrap(),
                role,
                key: self.peers[i].key.public_key(),
                not_after: UnixSeconds(WALL.0 + 86_400),
            },
        )
        .unwrap()
    }

    pub fn role_of(&self, i: usize) -> Role {
        if i == 0 { Role::Host } else { Role::Controller }
    }

    /// Adds a peer (0 is the host) with a random clock; it joins at once
    /// (hello, member_joined to the others, links to every online peer
    /// unless `links` says otherwise).
    pub fn add(&mut self, role: Role, link_to: Option<Vec<usize>>) -> usize {
        let i = self.peers.len();
        let clock = if i == 0 {
            Clock {
                offset: 0,
                drift_ppm: 0,
            }
        } else {
            Clock {
                offset: self.rng.range_i64(-self.max_offset_us, self.max_offset_us),
                drift_ppm: self.rng.range_i64(-self.max_drift_ppm, self.max_drift_ppm),
            }
        };
        let k = key(i);
        let mut cfg = SessionConfig::new(ROOM);
        cfg.initial_policy.wait_timeout_ms = 10_000;
        cfg.sync.adaptive_lead = self.adaptive_lead;
        if self.admit {
            cfg.admit_secret = Some(watchparty_peer::admit::AdmitSecret::derive(&key(0)));
        }
        let local = clock.local(self.t);
        let pin = if i == 0 || !self.pin_followers {
            None
        } else {
            Some(key(0).public_key())
        };
        let session =
            Session::new(cfg, key(i), self.server.public_key(), pin, local, WALL).unwrap();
        let pcfg = VirtualPlayerConfig {
            start_latency: TimeDelta::from_micros(self.rng.range_i64(20_000, 250_000)),
            seek_latency: TimeDelta::from_micros(self.rng.range_i64(50_000, 400_000)),
            drift_ppm: self.rng.range_i64(-50, 50) as i32,
            duration: None,
            position_jitter: TimeDelta::from_millis(2),
            seed: self.rng.next_u64(),
        };
        self.peers.push(Peer {
            user: user(i),
            key: k,
            clock,
            session,
            player: VirtualPlayer::new(pcfg.clone(), local),
            player_cfg: pcfg,
            next_observe: self.t,
            events: Vec::new(),
            errors: Vec::new(),
            load_delay: Some(self.rng.range_i64(100_000, 1_500_000)),
            pending_load: None,
            online: true,
            fingerprint: Fingerprint::Sha256([i as u8 + 1; 32]),
        });
        let my_role = if i == 0 { Role::Host } else { role };
        let mine = self.cert(i, my_role, self.epoch);
        let host_epoch = self.epoch;
        let mut members = Vec::new();
        for j in 0..i {
            if !self.peers[j].online {
                continue;
            }
            let r = self.peers[j].session.role().unwrap_or(Role::Viewer);
            let r = if self.peers[j].session.is_host() {
                Role::Host
            } else {
                r
            };
            members.push(RosterEntry {
                certificate: self.cert(j, r, host_epoch),
                online: true,
            });
        }
        let hello = ServerMessage::Hello {
            protocol: 1,
            room: ROOM,
            you: user(i),
            epoch: self.epoch,
            server_key: self.server.public_key(),
            certificate: mine.clone(),
            members: BoundedVec::new(members).unwrap(),
            ice_servers: BoundedVec::empty(),
            offerer: OffererRule::Joiner,
        };
        self.signal(i, hello);
        for j in 0..i {
            if self.peers[j].online {
                self.signal(
                    j,
                    ServerMessage::MemberJoined {
                        member: RosterEntry {
                            certificate: mine.clone(),
                            online: true,
                        },
                    },
                );
            }
        }
        let targets: Vec<usize> = match link_to {
            Some(v) => v,
            None => (0..i).filter(|j| self.peers[*j].online).collect(),
        };
        for j in targets {
            self.link(i, j);
        }
        i
    }

    pub fn link(&mut self, a: usize, b: usize) {
        self.links.insert((a.min(b), a.max(b)));
        for (x, y) in [(a, b), (b, a)] {
            let remote = if self.swapped.contains(&(x, y)) {
                Fingerprint::Sha256([0xee; 32])
            } else {
                self.peers[y].fingerprint
            };
            let open = ChannelOpen {
                peer: user(y),
                local_fingerprint: Some(self.peers[x].fingerprint),
                remote_fingerprint: Some(remote),
            };
            let local = self.local(x);
            self.peers[x].session.channel_open(open, local);
            self.drain(x);
        }
    }

    pub fn unlink(&mut self, a: usize, b: usize) {
        self.links.remove(&(a.min(b), a.max(b)));
        for (x, y) in [(a, b), (b, a)] {
            let local = self.local(x);
            self.peers[x].session.peer_disconnected(user(y), local);
            self.drain(x);
        }
    }

    pub fn local(&self, i: usize) -> LocalTime {
        self.peers[i].clock.local(self.t)
    }

    pub fn signal(&mut self, i: usize, msg: ServerMessage) {
        let local = self.local(i);
        self.peers[i].session.handle_signal(msg, local);
        self.drain(i);
    }

    pub fn command(
        &mut self,
        i: usize,
        cmd: UserCommand,
    ) -> Result<(), watchparty_peer::session::CommandError> {
        let local = self.local(i);
        let r = self.peers[i].session.command(cmd, local);
        self.drain(i);
        r
    }

    /// The current host index.
    pub fn host(&self) -> usize {
        self.peers
            .iter()
            .position(|p| p.online && p.session.is_host())
            .unwrap_or(0)
    }

    /// Every peer leaves the room; the server tells the others.
    pub fn leave(&mut self, i: usize) {
        self.peers[i].online = false;
        let others: Vec<usize> = (0..self.peers.len())
            .filter(|j| *j != i && self.peers[*j].online)
            .collect();
        for j in others {
            if self.links.contains(&(i.min(j), i.max(j))) {
                self.unlink(i, j);
            }
            self.signal(j, ServerMessage::MemberLeft { user: user(i) });
        }
    }

    fn delay(&mut self) -> i64 {
        (self.net.latency_us + self.rng.range_i64(-self.net.jitter_us, self.net.jitter_us)).max(0)
    }

    fn transmit(&mut self, from: UserId, to: UserId, channel: ChannelId, bytes: Vec<u8>) {
        let (a, b) = ((from.get() - 1) as usize, (to.get() - 1) as usize);
        if !self.links.contains(&(a.min(b), a.max(b))) || !self.peers[b].online {
            return;
        }
        let reliable = channel != channels::CLOCK.id;
        let mut extra = 0;
        if reliable {
            for _ in 0..20 {
                if !self.rng.chance_ppm(self.net.loss_ppm) {
                    break;
                }
                extra += self.net.retransmit_us;
            }
        } else if self.rng.chance_ppm(self.net.loss_ppm) {
            return;
        }
        let mut at = self.t + extra + self.delay();
        if reliable {
            let last = self.last_reliable.entry((from, to, channel)).or_insert(0);
            at = at.max(*last);
            *last = at;
        }
        self.pseq += 1;
        self.queue.push(Packet {
            at,
            seq: self.pseq,
            from,
            to,
            channel,
            bytes,
        });
    }

    /// Injects raw bytes as if `from` had sent them to `to`, on the channel
    /// of their kind byte (control when there is none).
    pub fn inject(&mut self, from: usize, to: usize, bytes: Vec<u8>) {
        let local = self.local(to);
        let channel = bytes
            .get(3)
            .and_then(|b| watchparty_peer::message::Kind::from_byte(*b))
            .map_or(channels::CONTROL.id, |k| k.channel().id);
        self.peers[to]
            .session
            .handle_frame(user(from), channel, &bytes, local);
        self.drain(to);
    }

    pub fn drain(&mut self, i: usize) {
        let local = self.local(i);
        while let Some(o) = self.peers[i].session.poll_output() {
            match o {
                Output::SendFrame { to, channel, bytes } => {
                    let from = self.peers[i].user;
                    self.transmit(from, to, channel, bytes);
                }
                Output::Player(a) => self.peers[i].player.apply(a, local),
                Output::Signal(m) => self.server_handle(i, m),
                Output::Disconnect { peer, .. } => {
                    let j = (peer.get() - 1) as usize;
                    self.links.remove(&(i.min(j), i.max(j)));
                }
                Output::Event(e) => {
                    if let Event::LoadMedia(item) = &e {
                        if let Some(d) = self.peers[i].load_delay {
                            self.peers[i].pending_load = Some((self.t + d, item.hash));
                        } else {
                            self.peers[i].pending_load = None;
                        }
                    }
                    self.peers[i].events.push((self.t, e));
                }
            }
        }
    }

    /// The scripted server's reaction to a client message.
    fn server_handle(&mut self, i: usize, m: ClientMessage) {
        self.signals.push((i, m.clone()));
        if let ClientMessage::Handoff { to } = m {
            let j = (to.get() - 1) as usize;
            self.epoch = Epoch(self.epoch.0 + 1);
            let cert = self.cert(j, Role::Host, self.epoch);
            for k in 0..self.peers.len() {
                if self.peers[k].online {
                    self.signal(
                        k,
                        ServerMessage::HostChanged {
                            certificate: cert.clone(),
                        },
                    );
                }
            }
        }
    }

    /// Server opens a new host term for `j` without a handoff (host left).
    pub fn server_promote(&mut self, j: usize) {
        self.epoch = Epoch(self.epoch.0 + 1);
        let cert = self.cert(j, Role::Host, self.epoch);
        for k in 0..self.peers.len() {
            if self.peers[k].online {
                self.signal(
                    k,
                    ServerMessage::HostChanged {
                        certificate: cert.clone(),
                    },
                );
            }
        }
    }

    fn wake(&self, i: usize) -> i64 {
        let p = &self.peers[i];
        let mut w = p.next_observe;
        if let Some(t) = p.session.poll_timeout() {
            w = w.min(p.clock.true_time(t));
        }
        if let Some(t) = p.player.next_event_at() {
            w = w.min(p.clock.true_time(t));
        }
        if let Some((t, _)) = p.pending_load {
            w = w.min(t);
        }
        w
    }

    fn step(&mut self, i: usize) {
        let local = self.local(i);
        while let Some(obs) = self.peers[i].player.poll_event(local) {
            self.peers[i].session.handle_player(obs, local);
            self.drain(i);
        }
        if self.peers[i].next_observe <= self.t {
            let obs = self.peers[i].player.observe(local);
            self.peers[i].session.handle_player(obs, local);
            self.peers[i].next_observe += self.observe_us;
            self.drain(i);
        }
        if let Some((at, hash)) = self.peers[i].pending_load
            && at <= self.t
        {
            self.peers[i].pending_load = None;
            let fresh = VirtualPlayer::new(self.peers[i].player_cfg.clone(), local);
            self.peers[i].player = fresh;
            self.peers[i].session.media_loaded(Some(hash), local);
            self.drain(i);
        }
        if self.peers[i]
            .session
            .poll_timeout()
            .is_some_and(|t| t <= local)
        {
            self.peers[i].session.handle_timeout(local);
            self.drain(i);
        }
    }

    /// Position error of peer `i` against the host's room timeline now.
    pub fn error_now(&self, i: usize) -> Option<i64> {
        let h = self.host();
        let tl = self.peers[h].session.sync().timeline()?;
        let room_now = self.peers[h].session.sync().room_time(self.local(h))?;
        let exp = tl.expected_at(room_now);
        if !exp.playing {
            return None;
        }
        let p = &self.peers[i];
        Some((p.player.position(self.local(i)) - exp.position).as_micros())
    }

    pub fn run_until(&mut self, end: i64) {
        loop {
            let mut next = self.next_sample;
            if let Some(p) = self.queue.peek() {
                next = next.min(p.at);
            }
            for i in 0..self.peers.len() {
                if self.peers[i].online {
                    next = next.min(self.wake(i));
                }
            }
            if next > end {
                self.t = self.t.max(end);
                return;
            }
            self.t = self.t.max(next);
            while self.queue.peek().is_some_and(|p| p.at <= self.t) {
                let Some(p) = self.queue.pop() else { break };
                let j = (p.to.get() - 1) as usize;
                if !self.peers[j].online {
                    continue;
                }
                let local = self.local(j);
                self.peers[j]
                    .session
                    .handle_frame(p.from, p.channel, &p.bytes, local);
                self.drain(j);
            }
            for i in 0..self.peers.len() {
                if self.peers[i].online && self.wake(i) <= self.t {
                    self.step(i);
                }
            }
            if self.next_sample <= self.t {
                self.next_sample += self.sample_us;
                for i in 0..self.peers.len() {
                    if !self.peers[i].online || !self.peers[i].session.sync().is_attached() {
                        continue;
                    }
                    if let Some(e) = self.error_now(i) {
                        let t = self.t;
                        self.peers[i].errors.push((t, e));
                    }
                }
            }
        }
    }

    /// After a second, the host loads a one-hour item, then plays it from
    /// 20 s; returns 5 s after the play.
    pub fn play_from_20s(&mut self) {
        self.run_for_ms(1000);
        self.command(0, UserCommand::Load(item(1, 3600))).unwrap();
        self.run_for_ms(4000);
        self.command(0, UserCommand::Seek(MediaPos::from_millis(20_000)))
            .unwrap();
        self.command(0, UserCommand::Play).unwrap();
        self.run_for_ms(5000);
    }

    pub fn run_for_ms(&mut self, ms: i64) {
        let end = self.t + ms * 1000;
        self.run_until(end);
    }

    /// All sampled |errors| (µs) of online followers and host in [from, to).
    pub fn errors(&self, from_ms: i64, to_ms: i64) -> Vec<i64> {
        let mut v: Vec<i64> = self
            .peers
            .iter()
            .filter(|p| p.online)
            .flat_map(|p| p.errors.iter())
            .filter(|(t, _)| *t >= from_ms * 1000 && *t < to_ms * 1000)
            .map(|(_, e)| e.abs())
            .collect();
        v.sort_unstable();
        v
    }

    pub fn room_time_of_host(&self) -> RoomTime {
        let h = self.host();
        self.peers[h]
            .session
            .sync()
            .room_time(self.local(h))
            .unwrap_or(RoomTime::ZERO)
    }

    pub fn playing(&self, i: usize) -> bool {
        !self.peers[i].player.is_paused()
    }

    pub fn position(&self, i: usize) -> MediaPos {
        self.peers[i].player.position(self.local(i))
    }
}

pub fn p99(v: &[i64]) -> i64 {
    if v.is_empty() {
        return 0;
    }
    v[(v.len() * 99 / 100).min(v.len() - 1)]
}

/// A room of `n` peers (host + n−1 followers), everyone ready with `item`
/// loaded; returns it settled at 5 s.
pub fn ready_room(seed: u64, n: usize, roles: impl Fn(usize) -> Role) -> Room {
    let mut room = Room::new(seed, Net::default());
    for i in 0..n {
        room.add(roles(i), None);
    }
    room.run_for_ms(1000);
    room.command(0, UserCommand::Load(item(1, 3600))).unwrap();
    room.run_for_ms(4000);
    room
}
