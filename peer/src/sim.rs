//! A deterministic, discrete-event simulation of one room: a host and up to
//! [`MAX_SIM_FOLLOWERS`] followers, each with its own drifting clock, a
//! [`SyncEngine`] and a [`VirtualPlayer`], joined by a virtual network with
//! latency, jitter, loss and reordering.
//!
//! Everything runs in virtual time from a seed ([`SplitMix64`]), so a run is
//! reproducible and takes milliseconds. Used by the sync tests
//! (`peer/tests/sync_sim.rs`) and by benchmarks.
//!
//! Model:
//! * True time `t` (µs). Peer `i`'s local clock reads
//!   `offset_i + t·(1 + drift_i)`; the host's local clock is the room clock.
//! * Clock pings/pongs: unreliable, unordered (each packet independently
//!   delayed by `latency ± jitter`, lost with `loss_ppm`).
//! * Room states: reliable and ordered per follower (a lost transmission is
//!   retried after `retransmit_after`; later states wait for earlier ones).
//! * The host turns its own player's user intents into commands, as the
//!   session will; followers' intents are recorded.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::clock::{ClockPing, ClockPong};
use crate::player::{PlayerAction, UserIntent};
use crate::prng::SplitMix64;
use crate::sync::{SyncEngine, SyncEvent, SyncOutput, SyncStats};
use crate::sync_config::{ConfigError, SyncConfig};
use crate::time::{LocalTime, MediaPos, Rate, RoomTime, TimeDelta};
use crate::timeline::PlaybackState;
use crate::virtual_player::{VirtualPlayer, VirtualPlayerConfig};

/// Most followers a simulation holds.
pub const MAX_SIM_FOLLOWERS: usize = 16;

/// The virtual network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Mean one-way latency. Default 40 ms.
    pub latency: TimeDelta,
    /// Uniform jitter around the mean (±). Default 15 ms.
    pub jitter: TimeDelta,
    /// Loss probability per transmission, ppm. Default 20 000 (2 %).
    pub loss_ppm: u32,
    /// Reliable channel: delay before a lost transmission is retried.
    /// Default 200 ms.
    pub retransmit_after: TimeDelta,
}

impl Default for NetConfig {
    fn default() -> Self {
        Self {
            latency: TimeDelta::from_millis(40),
            jitter: TimeDelta::from_millis(15),
            loss_ppm: 20_000,
            retransmit_after: TimeDelta::from_millis(200),
        }
    }
}

/// A simulation's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Number of followers (at most [`MAX_SIM_FOLLOWERS`]).
    pub followers: usize,
    /// Seed of everything random.
    pub seed: u64,
    /// The network.
    pub net: NetConfig,
    /// Followers' clock offsets are uniform in ± this. Default 5 s.
    pub max_clock_offset: TimeDelta,
    /// Every peer's clock drift is uniform in ± this, ppm. Default 200.
    pub max_clock_drift_ppm: i32,
    /// Players' start-up latency range. Default 20–250 ms.
    pub start_latency: (TimeDelta, TimeDelta),
    /// Players' seek latency range. Default 50–400 ms.
    pub seek_latency: (TimeDelta, TimeDelta),
    /// Players' media clock drift against their local clock, ± ppm.
    /// Default 50.
    pub media_drift_ppm: i32,
    /// Jitter of reported positions (±). Default 2 ms.
    pub position_jitter: TimeDelta,
    /// How often drivers read the player. Default 100 ms.
    pub observe_interval: TimeDelta,
    /// How often the host re-sends its state (heartbeat). Default 5 s.
    pub state_interval: TimeDelta,
    /// How often errors are sampled for the metrics. Default 50 ms.
    pub sample_interval: TimeDelta,
    /// Media duration. Default: none (endless).
    pub duration: Option<MediaPos>,
    /// The sync configuration of every peer.
    pub sync: SyncConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            followers: 8,
            seed: 1,
            net: NetConfig::default(),
            max_clock_offset: TimeDelta::from_secs(5),
            max_clock_drift_ppm: 200,
            start_latency: (TimeDelta::from_millis(20), TimeDelta::from_millis(250)),
            seek_latency: (TimeDelta::from_millis(50), TimeDelta::from_millis(400)),
            media_drift_ppm: 50,
            position_jitter: TimeDelta::from_millis(2),
            observe_interval: TimeDelta::from_millis(100),
            state_interval: TimeDelta::from_secs(5),
            sample_interval: TimeDelta::from_millis(50),
            duration: None,
            sync: SyncConfig::default(),
        }
    }
}

/// Why a simulation could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    /// More followers than [`MAX_SIM_FOLLOWERS`].
    #[error("{0} followers exceed the maximum of {MAX_SIM_FOLLOWERS}")]
    TooManyFollowers(usize),
    /// The sync configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An interval of the simulation must be positive.
    #[error("simulation interval `{0}` must be positive")]
    Interval(&'static str),
}

/// A peer's clock relative to true time.
#[derive(Debug, Clone, Copy)]
struct PeerClock {
    offset: i64,
    drift_ppm: i64,
}

impl PeerClock {
    fn local(&self, t: i64) -> LocalTime {
        let drift =
            i64::try_from(i128::from(t) * i128::from(self.drift_ppm) / 1_000_000).unwrap_or(0);
        LocalTime::from_micros(self.offset.saturating_add(t).saturating_add(drift))
    }

    /// The earliest true time at which the local clock reads `l` or more.
    fn true_time(&self, l: LocalTime) -> i64 {
        let target = l.as_micros().saturating_sub(self.offset);
        let guess = i64::try_from(
            i128::from(target) * 1_000_000 / (1_000_000 + i128::from(self.drift_ppm)),
        )
        .unwrap_or(i64::MAX / 2);
        let mut t = guess.saturating_sub(2);
        while self.local(t) < l {
            t += 1;
        }
        t
    }
}

#[derive(Debug)]
struct SimPeer {
    clock: PeerClock,
    engine: SyncEngine,
    player: VirtualPlayer,
    next_observe: i64,
    last_control_delivery: i64,
}

#[derive(Debug, Clone, Copy)]
enum Msg {
    Ping(ClockPing),
    Pong(ClockPong),
    State(PlaybackState),
}

#[derive(Debug, Clone, Copy)]
struct Packet {
    at: i64,
    seq: u64,
    to: usize,
    msg: Msg,
}

impl PartialEq for Packet {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Packet {}
impl PartialOrd for Packet {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Packet {
    /// Reversed: the earliest packet is the heap's maximum.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// A player action a peer's engine issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActionRecord {
    /// Peer index (0 = host).
    pub peer: usize,
    /// True time of issue.
    pub at: TimeDelta,
    /// The action.
    pub action: PlayerAction,
}

/// A host command and its delivery to each follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandRecord {
    /// True time the host issued it.
    pub at: TimeDelta,
    /// The state.
    pub state: PlaybackState,
    /// Per follower (index 1..): true delivery time and whether a
    /// retransmission was needed.
    pub deliveries: Vec<(usize, TimeDelta, bool)>,
}

/// An event a peer's engine reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRecord {
    /// Peer index (0 = host).
    pub peer: usize,
    /// True time.
    pub at: TimeDelta,
    /// The event.
    pub event: SyncEvent,
}

/// The simulation. Peer 0 is the host, 1..=n the followers.
#[derive(Debug)]
pub struct Sim {
    cfg: SimConfig,
    t: i64,
    peers: Vec<SimPeer>,
    queue: BinaryHeap<Packet>,
    seq: u64,
    rng: SplitMix64,
    next_state: i64,
    next_sample: i64,
    errors: Vec<Vec<(i64, i64)>>,
    /// Every player action issued by an engine.
    pub actions: Vec<ActionRecord>,
    /// Every host command.
    pub commands: Vec<CommandRecord>,
    /// Every engine event.
    pub events: Vec<EventRecord>,
}

fn check_positive(name: &'static str, v: TimeDelta) -> Result<(), SimError> {
    if v > TimeDelta::ZERO {
        Ok(())
    } else {
        Err(SimError::Interval(name))
    }
}

impl Sim {
    /// Builds the room at true time 0: the host paused at the start, every
    /// follower joining at once.
    ///
    /// # Errors
    /// [`SimError`] for invalid parameters.
    pub fn new(cfg: SimConfig) -> Result<Self, SimError> {
        if cfg.followers > MAX_SIM_FOLLOWERS {
            return Err(SimError::TooManyFollowers(cfg.followers));
        }
        cfg.sync.check()?;
        check_positive("observe_interval", cfg.observe_interval)?;
        check_positive("state_interval", cfg.state_interval)?;
        check_positive("sample_interval", cfg.sample_interval)?;
        let mut rng = SplitMix64::new(cfg.seed);
        let mut sim = Self {
            t: 0,
            peers: Vec::new(),
            queue: BinaryHeap::new(),
            seq: 0,
            next_state: cfg.state_interval.as_micros(),
            next_sample: 0,
            errors: Vec::new(),
            actions: Vec::new(),
            commands: Vec::new(),
            events: Vec::new(),
            rng: rng.fork(),
            cfg,
        };
        let host_clock = PeerClock {
            offset: 0,
            drift_ppm: 0,
        };
        let engine = SyncEngine::host(sim.cfg.sync.clone(), TimeDelta::ZERO)?;
        sim.add_peer(host_clock, engine, &mut rng);
        for _ in 0..sim.cfg.followers {
            sim.join_with(&mut rng)?;
        }
        let initial = PlaybackState::paused(MediaPos::ZERO, RoomTime::ZERO, Rate::NORMAL);
        sim.host_command(initial);
        Ok(sim)
    }

    fn add_peer(&mut self, clock: PeerClock, mut engine: SyncEngine, rng: &mut SplitMix64) {
        let c = &self.cfg;
        let pcfg = VirtualPlayerConfig {
            start_latency: TimeDelta::from_micros(
                rng.range_i64(c.start_latency.0.as_micros(), c.start_latency.1.as_micros()),
            ),
            seek_latency: TimeDelta::from_micros(
                rng.range_i64(c.seek_latency.0.as_micros(), c.seek_latency.1.as_micros()),
            ),
            drift_ppm: i32::try_from(
                rng.range_i64(-i64::from(c.media_drift_ppm), i64::from(c.media_drift_ppm)),
            )
            .unwrap_or(0),
            duration: c.duration,
            position_jitter: c.position_jitter,
            seed: rng.next_u64(),
        };
        engine.set_duration(c.duration);
        let local = clock.local(self.t);
        let peer = SimPeer {
            clock,
            engine,
            player: VirtualPlayer::new(pcfg, local),
            next_observe: self.t,
            last_control_delivery: self.t,
        };
        self.peers.push(peer);
        self.errors.push(Vec::new());
    }

    fn join_with(&mut self, rng: &mut SplitMix64) -> Result<usize, SimError> {
        let max_off = self.cfg.max_clock_offset.as_micros();
        let max_drift = i64::from(self.cfg.max_clock_drift_ppm);
        let clock = PeerClock {
            offset: rng.range_i64(-max_off, max_off),
            drift_ppm: rng.range_i64(-max_drift, max_drift),
        };
        let engine = SyncEngine::follower(self.cfg.sync.clone())?;
        self.add_peer(clock, engine, rng);
        Ok(self.peers.len() - 1)
    }

    /// A late joiner: a new follower that receives the current state.
    ///
    /// # Errors
    /// [`SimError::TooManyFollowers`] when the room is full.
    pub fn join(&mut self) -> Result<usize, SimError> {
        if self.peers.len() > MAX_SIM_FOLLOWERS {
            return Err(SimError::TooManyFollowers(self.peers.len()));
        }
        let mut rng = self.rng.fork();
        let idx = self.join_with(&mut rng)?;
        if let Some(state) = self.host_state() {
            self.send_reliable(idx, Msg::State(state));
        }
        Ok(idx)
    }

    /// Current true time.
    #[must_use]
    pub fn now(&self) -> TimeDelta {
        TimeDelta::from_micros(self.t)
    }

    /// Number of peers including the host.
    #[must_use]
    pub fn peer_count(&self) -> usize {
        self.peers.len()
    }

    /// A peer's engine counters.
    #[must_use]
    pub fn stats(&self, peer: usize) -> Option<SyncStats> {
        self.peers.get(peer).map(|p| p.engine.stats())
    }

    /// A peer's engine.
    #[must_use]
    pub fn engine(&self, peer: usize) -> Option<&SyncEngine> {
        self.peers.get(peer).map(|p| &p.engine)
    }

    /// The host's latest state.
    #[must_use]
    pub fn host_state(&self) -> Option<PlaybackState> {
        self.peers.first()?.engine.timeline().map(|t| *t.latest())
    }

    fn room_now(&self) -> RoomTime {
        RoomTime::from_micros(self.t)
    }

    /// A peer's true position error against the room at the current time
    /// (`None` when the room is not playing).
    #[must_use]
    pub fn error_now(&self, peer: usize) -> Option<TimeDelta> {
        let host = self.peers.first()?;
        let exp = host.engine.timeline()?.expected_at(self.room_now());
        if !exp.playing {
            return None;
        }
        let p = self.peers.get(peer)?;
        Some(p.player.position(p.clock.local(self.t)) - exp.position)
    }

    /// Error of a peer's room-clock estimate now (estimate − truth), if it
    /// has one. Zero for the host.
    #[must_use]
    pub fn clock_error(&self, peer: usize) -> Option<TimeDelta> {
        let p = self.peers.get(peer)?;
        let estimate = p.engine.room_time(p.clock.local(self.t))?;
        Some(estimate - self.room_now())
    }

    /// A peer's local clock reading now.
    #[must_use]
    pub fn local_time(&self, peer: usize) -> Option<LocalTime> {
        self.peers.get(peer).map(|p| p.clock.local(self.t))
    }

    /// True position of a peer's player now.
    #[must_use]
    pub fn position(&self, peer: usize) -> Option<MediaPos> {
        let p = self.peers.get(peer)?;
        Some(p.player.position(p.clock.local(self.t)))
    }

    /// Sampled errors (µs) of `peer` at true times in `from..to`.
    #[must_use]
    pub fn errors(&self, peer: usize, from: TimeDelta, to: TimeDelta) -> Vec<i64> {
        self.errors.get(peer).map_or_else(Vec::new, |v| {
            v.iter()
                .filter(|(t, _)| *t >= from.as_micros() && *t < to.as_micros())
                .map(|&(_, e)| e)
                .collect()
        })
    }

    // ----- scripted actions -----

    fn host_command(&mut self, state: PlaybackState) {
        let host_local = self.peers[0].clock.local(self.t);
        self.peers[0].engine.handle_timeline(state, host_local);
        self.drain(0);
        let mut deliveries = Vec::new();
        for i in 1..self.peers.len() {
            let (at, retried) = self.send_reliable(i, Msg::State(state));
            deliveries.push((i, TimeDelta::from_micros(at), retried));
        }
        self.commands.push(CommandRecord {
            at: self.now(),
            state,
            deliveries,
        });
    }

    fn lead_at(&self) -> RoomTime {
        self.room_now() + self.cfg.sync.lead_time
    }

    /// The host plays from the current position, lead time ahead.
    pub fn host_play(&mut self) {
        if let Some(tl) = self.peers[0].engine.timeline() {
            let s = tl.play_at(self.lead_at(), None);
            self.host_command(s);
        }
    }

    /// The host pauses, lead time ahead.
    pub fn host_pause(&mut self) {
        if let Some(tl) = self.peers[0].engine.timeline() {
            let s = tl.pause_at(self.lead_at());
            self.host_command(s);
        }
    }

    /// The host seeks, lead time ahead.
    pub fn host_seek(&mut self, position: MediaPos) {
        if let Some(tl) = self.peers[0].engine.timeline() {
            let s = tl.seek_at(self.lead_at(), position, None);
            self.host_command(s);
        }
    }

    /// The host changes the rate, lead time ahead.
    pub fn host_rate(&mut self, rate: Rate) {
        if let Some(tl) = self.peers[0].engine.timeline() {
            let s = tl.rate_at(self.lead_at(), rate);
            self.host_command(s);
        }
    }

    /// A user acts directly on a peer's player (bypassing the engine).
    pub fn user_action(&mut self, peer: usize, action: PlayerAction) {
        if let Some(p) = self.peers.get_mut(peer) {
            let local = p.clock.local(self.t);
            p.player.apply(action, local);
        }
    }

    /// A peer's player stalls for `duration` (buffering).
    pub fn stall(&mut self, peer: usize, duration: TimeDelta) {
        if let Some(p) = self.peers.get_mut(peer) {
            let local = p.clock.local(self.t);
            p.player.stall(local, duration);
        }
    }

    /// Free-watch on a peer.
    pub fn detach(&mut self, peer: usize) {
        if let Some(p) = self.peers.get_mut(peer) {
            let local = p.clock.local(self.t);
            p.engine.detach(local);
        }
        self.drain(peer);
    }

    /// Re-sync a detached peer.
    pub fn resync(&mut self, peer: usize) {
        if let Some(p) = self.peers.get_mut(peer) {
            let local = p.clock.local(self.t);
            p.engine.resync(local);
        }
        self.drain(peer);
    }

    // ----- network -----

    fn delay(&mut self) -> i64 {
        let j = self.cfg.net.jitter.as_micros();
        let l = self.cfg.net.latency.as_micros();
        (l + self.rng.range_i64(-j, j)).max(0)
    }

    fn push_packet(&mut self, at: i64, to: usize, msg: Msg) {
        self.seq += 1;
        self.queue.push(Packet {
            at,
            seq: self.seq,
            to,
            msg,
        });
    }

    fn send_unreliable(&mut self, to: usize, msg: Msg) {
        if self.rng.chance_ppm(self.cfg.net.loss_ppm) {
            return;
        }
        let at = self.t + self.delay();
        self.push_packet(at, to, msg);
    }

    /// Returns the delivery time and whether a retransmission was needed.
    fn send_reliable(&mut self, to: usize, msg: Msg) -> (i64, bool) {
        let mut extra = 0;
        let mut retried = false;
        // Bounded: a transmission succeeds with probability >= 0 each try;
        // after 20 tries assume it got through.
        for _ in 0..20 {
            if !self.rng.chance_ppm(self.cfg.net.loss_ppm) {
                break;
            }
            retried = true;
            extra += self.cfg.net.retransmit_after.as_micros();
        }
        let d = self.delay();
        let last = self.peers.get(to).map_or(0, |p| p.last_control_delivery);
        let at = (self.t + extra + d).max(last);
        if let Some(p) = self.peers.get_mut(to) {
            p.last_control_delivery = at;
        }
        self.push_packet(at, to, msg);
        (at, retried)
    }

    // ----- event loop -----

    /// Drains a peer's outputs: actions go to its player, pings to the host
    /// (tagged with the peer index in the id's top byte so the virtual
    /// network can route the pong back), events to the log.
    fn drain(&mut self, i: usize) {
        let local = self.peers[i].clock.local(self.t);
        let mut host_intents = Vec::new();
        while let Some(o) = self.peers[i].engine.poll_output() {
            match o {
                SyncOutput::Player(a) => {
                    self.peers[i].player.apply(a, local);
                    self.actions.push(ActionRecord {
                        peer: i,
                        at: self.now(),
                        action: a,
                    });
                }
                SyncOutput::Ping(p) => {
                    // Engines number pings from 0; 24 bits are plenty for a run.
                    let tagged = ClockPing {
                        id: (p.id & 0x00FF_FFFF) | ((i as u32) << 24),
                        origin: p.origin,
                    };
                    self.send_unreliable(0, Msg::Ping(tagged));
                }
                SyncOutput::Event(e) => {
                    self.events.push(EventRecord {
                        peer: i,
                        at: self.now(),
                        event: e,
                    });
                    if let (
                        0,
                        SyncEvent::UserIntent {
                            intent,
                            attached: true,
                        },
                    ) = (i, e)
                    {
                        host_intents.push(intent);
                    }
                }
            }
        }
        for intent in host_intents {
            self.host_intent(intent);
        }
    }

    /// The host session turns its own user's actions into commands in
    /// effect now (the host's player already did it).
    fn host_intent(&mut self, intent: UserIntent) {
        let Some(tl) = self.peers[0].engine.timeline() else {
            return;
        };
        let now = self.room_now();
        let s = match intent {
            UserIntent::Play { position } => tl.play_at(now, Some(position)),
            UserIntent::Pause { position } => {
                PlaybackState::paused(position, now, tl.expected_at(now).rate)
            }
            UserIntent::Seek { position } => tl.seek_at(now, position, None),
            UserIntent::Rate { rate } => tl.rate_at(now, rate),
        };
        self.host_command(s);
    }

    fn deliver(&mut self, p: Packet) {
        let Some(peer) = self.peers.get(p.to) else {
            return;
        };
        let local = peer.clock.local(self.t);
        match p.msg {
            Msg::Ping(ping) => {
                // Only the host answers; the sender is in the id's top byte.
                let from = (ping.id >> 24) as usize;
                let inner = ClockPing {
                    id: ping.id & 0x00FF_FFFF,
                    origin: ping.origin,
                };
                if let Some(pong) = self.peers[0].engine.answer_ping(inner, local) {
                    let pong = ClockPong {
                        id: ping.id,
                        ..pong
                    };
                    self.send_unreliable(from, Msg::Pong(pong));
                }
            }
            Msg::Pong(pong) => {
                let pong = ClockPong {
                    id: pong.id & 0x00FF_FFFF,
                    ..pong
                };
                // Refused pongs are counted by the engine.
                let _ = self.peers[p.to].engine.handle_pong(pong, local);
                self.drain(p.to);
            }
            Msg::State(s) => {
                self.peers[p.to].engine.handle_timeline(s, local);
                self.drain(p.to);
            }
        }
    }

    fn peer_wake(&self, i: usize) -> i64 {
        let p = &self.peers[i];
        let mut w = p.next_observe;
        if let Some(t) = p.engine.next_timeout() {
            w = w.min(p.clock.true_time(t));
        }
        if let Some(t) = p.player.next_event_at() {
            w = w.min(p.clock.true_time(t));
        }
        w
    }

    fn step_peer(&mut self, i: usize) {
        let local = self.peers[i].clock.local(self.t);
        while let Some(obs) = self.peers[i].player.poll_event(local) {
            self.peers[i].engine.handle_player(obs, local);
            self.drain(i);
        }
        if self.peers[i].next_observe <= self.t {
            let obs = self.peers[i].player.observe(local);
            self.peers[i].engine.handle_player(obs, local);
            self.peers[i].next_observe += self.cfg.observe_interval.as_micros();
            self.drain(i);
        }
        if self.peers[i]
            .engine
            .next_timeout()
            .is_some_and(|t| t <= local)
        {
            self.peers[i].engine.handle_timeout(local);
            self.drain(i);
        }
    }

    fn sample(&mut self) {
        for i in 0..self.peers.len() {
            if !self.peers[i].engine.is_attached() {
                continue;
            }
            if let Some(e) = self.error_now(i) {
                self.errors[i].push((self.t, e.as_micros()));
            }
        }
    }

    /// Runs the simulation until true time `until`.
    pub fn run_until(&mut self, until: TimeDelta) {
        let end = until.as_micros();
        loop {
            let mut next = self.next_state.min(self.next_sample);
            if let Some(p) = self.queue.peek() {
                next = next.min(p.at);
            }
            for i in 0..self.peers.len() {
                next = next.min(self.peer_wake(i));
            }
            if next > end {
                self.t = self.t.max(end);
                return;
            }
            self.t = self.t.max(next);
            while self.queue.peek().is_some_and(|p| p.at <= self.t) {
                if let Some(p) = self.queue.pop() {
                    self.deliver(p);
                }
            }
            for i in 0..self.peers.len() {
                if self.peer_wake(i) <= self.t {
                    self.step_peer(i);
                }
            }
            if self.next_state <= self.t {
                self.next_state += self.cfg.state_interval.as_micros();
                if let Some(s) = self.host_state() {
                    for i in 1..self.peers.len() {
                        self.send_reliable(i, Msg::State(s));
                    }
                }
            }
            if self.next_sample <= self.t {
                self.next_sample += self.cfg.sample_interval.as_micros();
                self.sample();
            }
        }
    }

    /// Runs for `span` more.
    pub fn run_for(&mut self, span: TimeDelta) {
        let until = self.now() + span;
        self.run_until(until);
    }
}
