//! The sync engine: one peer's clock sync, room timeline, player tracking and
//! drift correction, combined behind a sans-I/O interface.
//!
//! Inputs (each carries `now`, this peer's [`LocalTime`]):
//! [`SyncEngine::handle_timeline`] (a verified host command or `State`),
//! [`SyncEngine::handle_player`] (a player reading),
//! [`SyncEngine::handle_pong`] (clock channel), [`SyncEngine::handle_timeout`].
//! Outputs are polled: [`SyncEngine::poll_output`] until `None`, then
//! [`SyncEngine::next_timeout`]. The host runs the same engine with the
//! reference clock ([`SyncEngine::host`]), so its own player is held to the
//! room timeline the same way, and answers pings with
//! [`SyncEngine::answer_ping`].
//!
//! What the engine does with the player, in order of precedence:
//! 1. nothing while detached (free-watch) or holding after a user action;
//! 2. room paused (or waiting for a scheduled start): pause, and seek while
//!    paused if the frame is off by more than `paused_seek_threshold`;
//!    issue `Play` the learned start-up latency before a scheduled start;
//! 3. room playing, player paused (a member that joins or reloads mid-play):
//!    *cue* — seek while paused to a point the room has not reached yet
//!    (`cue_margin` beyond where it will be once the seek lands), wait for
//!    the room to arrive there, and issue `Play` the learned start-up
//!    latency before it does. The start then depends only on the start-up
//!    latency, not on how long the seek took. The first reading after such
//!    a start checks it: off by more than `dead_zone` (the start-up guess
//!    was wrong), the player is paused and cued again once, with the
//!    latency just measured ([`MAX_RECUES`]); a smaller miss starts a
//!    correction episode even inside the dead zone (it is not drift);
//! 4. room playing, player playing: [`Corrector`] on the filtered error.

use std::collections::VecDeque;

use crate::clock::{ClockPing, ClockPong, ClockStats, ClockSync, PongError, answer_ping};
use crate::correction::{Correction, Corrector, PositionFilter};
use crate::player::{EchoTracker, PlayerAction, PlayerObservation, UserIntent};
use crate::sync_config::{ConfigError, SyncConfig};
use crate::time::{LocalTime, MediaPos, Rate, RoomTime, TimeDelta};
use crate::timeline::{PlaybackState, Timeline};

/// Something the engine wants done or reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncOutput {
    /// Apply this to the local player.
    Player(PlayerAction),
    /// Send this ping to the host on the clock channel.
    Ping(ClockPing),
    /// Tell the session.
    Event(SyncEvent),
}

/// Notifications for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncEvent {
    /// The user acted on the local player. While attached the engine holds
    /// off for `intent_hold` waiting for the room to follow (the host
    /// session turns it into a command; a controller's session sends a
    /// request); while detached it is local only.
    UserIntent {
        /// What the user did.
        intent: UserIntent,
        /// Whether the engine was attached to the room when it happened.
        attached: bool,
    },
    /// The player started (`true`) or stopped (`false`) buffering: the
    /// session reports it to the host (buffering policy).
    Buffering(bool),
    /// The player reached the end of the media.
    Ended,
    /// Clock sync detected a jump and restarted with a burst.
    ClockJump,
    /// The clock estimate became usable.
    ClockReady,
}

/// Counters for observability, benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Seeks issued (any reason).
    pub seeks: u64,
    /// Seeks issued by the corrector because of a large error.
    pub corrective_seeks: u64,
    /// Cued starts that missed by more than `dead_zone` and were cued again.
    pub recues: u64,
    /// `SetRate` actions issued.
    pub rate_changes: u64,
    /// `Play` actions issued.
    pub plays: u64,
    /// `Pause` actions issued.
    pub pauses: u64,
    /// User intents detected.
    pub user_intents: u64,
    /// Player changes recognised as echoes of our actions.
    pub echoes: u64,
    /// Largest |rate offset| requested, ppm of the room rate.
    pub max_rate_offset_ppm: u64,
    /// Clock sync counters.
    pub clock: ClockStats,
}

/// A snapshot of the engine's state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncStatus {
    /// Following the room (not in free-watch).
    pub attached: bool,
    /// The clock estimate is usable.
    pub clock_ready: bool,
    /// Offset estimate `room − local`.
    pub offset: Option<TimeDelta>,
    /// Hard bound of the offset error.
    pub uncertainty: Option<TimeDelta>,
    /// Estimated drift of the room clock against ours, ppm.
    pub drift_ppm: Option<f64>,
    /// Last filtered position error (player − room; positive = ahead).
    pub error: Option<TimeDelta>,
    /// A rate correction episode is running.
    pub correcting: bool,
    /// Current rate offset (trim + nudge), ppm.
    pub rate_offset_ppm: i64,
    /// Current trim, ppm.
    pub trim_ppm: i64,
    /// Learned start-up latency of the player.
    pub startup_estimate: TimeDelta,
}

/// Clock windows shorter than this don't feed drift forward into the trim
/// (a drift fitted over a short window is noise).
pub const DRIFT_FEED_FORWARD_MIN_SAMPLES: usize = 20;

/// How long after a cued start its error is checked: the readings right
/// after a start (several media events within milliseconds) do not show
/// the steady motion yet.
pub const CUE_CHECK_AFTER: TimeDelta = TimeDelta::from_millis(400);

/// Most outputs queued before the oldest pings are dropped (bounded memory
/// if a driver stops polling).
pub const MAX_QUEUED_OUTPUTS: usize = 64;

/// How many times a cued start that missed by more than `dead_zone` is
/// paused and cued again before the corrector takes over (the second start
/// uses the start-up latency the first one measured; more retries would
/// only chase the player's jitter).
pub const MAX_RECUES: u8 = 1;

/// One peer's sync engine. See the module docs.
#[derive(Debug, Clone)]
pub struct SyncEngine {
    cfg: SyncConfig,
    clock: ClockSync,
    timeline: Option<Timeline>,
    duration: Option<MediaPos>,
    tracker: EchoTracker,
    filter: PositionFilter,
    corrector: Corrector,
    attached: bool,
    hold_until: Option<LocalTime>,
    now: LocalTime,
    out: VecDeque<SyncOutput>,
    stats: SyncStats,
    seek_estimate: TimeDelta,
    start_estimate: TimeDelta,
    /// Whether the start-up / seek estimates are still the initial guess
    /// (the first measurement replaces a guess instead of averaging with it).
    start_learned: bool,
    seek_learned: bool,
    /// `Play` was issued from a cue at this time: the first filtered error
    /// [`CUE_CHECK_AFTER`] after it is checked.
    cued_start: Option<LocalTime>,
    /// Re-cues left for the current join (reset by a new player or clock).
    recues_left: u8,
    last_error: Option<TimeDelta>,
    wake_at: Option<LocalTime>,
    clock_was_ready: bool,
    buffering: bool,
    timeline_generation: Option<u64>,
    /// A new room state whose jump (if any) is not yet applied.
    unchecked_state: bool,
}

impl SyncEngine {
    /// A follower: estimates the room clock with pings to the host.
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`SyncConfig::check`].
    pub fn follower(config: SyncConfig) -> Result<Self, ConfigError> {
        config.check()?;
        let clock = ClockSync::follower(&config);
        Ok(Self::with_clock(config, clock))
    }

    /// The host: its clock is the room clock (`room = local + offset`;
    /// `offset` is zero for a new room).
    ///
    /// # Errors
    /// [`ConfigError`] if `config` fails [`SyncConfig::check`].
    pub fn host(config: SyncConfig, offset: TimeDelta) -> Result<Self, ConfigError> {
        config.check()?;
        Ok(Self::with_clock(config, ClockSync::reference(offset)))
    }

    fn with_clock(cfg: SyncConfig, clock: ClockSync) -> Self {
        Self {
            tracker: EchoTracker::new(&cfg),
            filter: PositionFilter::new(&cfg),
            corrector: Corrector::new(&cfg),
            seek_estimate: cfg.startup_estimate_initial,
            start_estimate: cfg.startup_estimate_initial,
            start_learned: false,
            seek_learned: false,
            cued_start: None,
            recues_left: MAX_RECUES,
            cfg,
            clock,
            timeline: None,
            duration: None,
            attached: true,
            hold_until: None,
            now: LocalTime::MIN,
            out: VecDeque::new(),
            stats: SyncStats::default(),
            last_error: None,
            wake_at: None,
            clock_was_ready: false,
            buffering: false,
            timeline_generation: None,
            unchecked_state: false,
        }
    }

    /// Host handoff: this peer's clock becomes the room clock, continuing
    /// from its current estimate.
    pub fn become_host(&mut self, now: LocalTime) {
        self.clock.become_reference(now);
        self.drive(now);
    }

    /// The configuration in use.
    #[must_use]
    pub fn config(&self) -> &SyncConfig {
        &self.cfg
    }

    /// The learned start-up latency of our player (from `Play` to playing;
    /// the initial guess until measured).
    #[must_use]
    pub fn start_estimate(&self) -> TimeDelta {
        self.start_estimate
    }

    /// The room timeline, once a state was received.
    #[must_use]
    pub fn timeline(&self) -> Option<&Timeline> {
        self.timeline.as_ref()
    }

    /// The clock.
    #[must_use]
    pub fn clock(&self) -> &ClockSync {
        &self.clock
    }

    /// Room time at local `now`, once the clock is usable.
    #[must_use]
    pub fn room_time(&self, now: LocalTime) -> Option<RoomTime> {
        self.clock.to_room_time(now)
    }

    /// Host helper: the room time at which a command issued at `now` would
    /// take effect with the fixed `lead_time` (the session adapts the lead
    /// to the room's reported latencies, docs/protocol.md §9.3).
    #[must_use]
    pub fn scheduled_at(&self, now: LocalTime) -> Option<RoomTime> {
        Some(self.room_time(now)? + self.cfg.lead_time)
    }

    /// Sets the media duration (positions clamp; the end is reported).
    pub fn set_duration(&mut self, duration: Option<MediaPos>) {
        self.duration = duration;
        if let Some(t) = &mut self.timeline {
            t.set_duration(duration);
        }
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> SyncStats {
        SyncStats {
            clock: self.clock.stats(),
            ..self.stats
        }
    }

    /// A snapshot of the state at `now`.
    #[must_use]
    pub fn status(&self, now: LocalTime) -> SyncStatus {
        let est = self.clock.estimate(now);
        SyncStatus {
            attached: self.attached,
            clock_ready: self.clock.is_ready(),
            offset: est.map(|e| e.offset),
            uncertainty: est.map(|e| e.uncertainty),
            drift_ppm: est.map(|e| e.drift_ppm),
            error: self.last_error,
            correcting: self.corrector.correcting(),
            rate_offset_ppm: self.corrector.applied_ppm(),
            trim_ppm: self.corrector.trim_ppm(),
            startup_estimate: self.start_estimate.max(self.seek_estimate),
        }
    }

    /// Whether the engine follows the room (not free-watch).
    #[must_use]
    pub fn is_attached(&self) -> bool {
        self.attached
    }

    // ----- inputs -----

    /// A verified room state (from a host command or `State` snapshot).
    pub fn handle_timeline(&mut self, state: PlaybackState, now: LocalTime) {
        let changed = match &mut self.timeline {
            Some(t) => t.apply(state),
            None => {
                let mut t = Timeline::new(state);
                t.set_duration(self.duration);
                self.timeline = Some(t);
                true
            }
        };
        if changed {
            self.hold_until = None;
        }
        self.drive(now);
    }

    /// A reading of the local player.
    pub fn handle_player(&mut self, obs: PlayerObservation, now: LocalTime) {
        let c = self.tracker.observe(obs);
        self.stats.echoes += u64::from(c.echoes);
        if c.discontinuity {
            self.filter.reset();
        }
        if let Some(l) = c.seek_latency {
            self.seek_estimate = self.learn(self.seek_estimate, self.seek_learned, l);
            self.seek_learned = true;
        }
        if let Some(l) = c.start_latency {
            self.start_estimate = self.learn(self.start_estimate, self.start_learned, l);
            self.start_learned = true;
        }
        if let Some(b) = c.buffering_changed
            && b != self.buffering
        {
            self.buffering = b;
            self.push(SyncOutput::Event(SyncEvent::Buffering(b)));
        }
        if obs.event == Some(crate::player::PlayerEvent::Ended) {
            self.push(SyncOutput::Event(SyncEvent::Ended));
        }
        if let Some(intent) = c.intent {
            self.stats.user_intents += 1;
            self.push(SyncOutput::Event(SyncEvent::UserIntent {
                intent,
                attached: self.attached,
            }));
            if self.attached {
                self.hold_until = Some(now + self.cfg.intent_hold);
                self.corrector.reset();
            }
        }
        if !obs.paused && !obs.buffering && !obs.ended {
            self.filter.push(obs.at, obs.position, obs.rate);
        }
        self.drive(now);
    }

    /// The host's answer to one of our pings.
    ///
    /// # Errors
    /// [`PongError`] when refused (nothing changes).
    pub fn handle_pong(&mut self, pong: ClockPong, now: LocalTime) -> Result<(), PongError> {
        let outcome = self.clock.handle_pong(pong, now)?;
        if outcome.jumped {
            self.push(SyncOutput::Event(SyncEvent::ClockJump));
        }
        self.drive(now);
        Ok(())
    }

    /// Time passed.
    pub fn handle_timeout(&mut self, now: LocalTime) {
        self.drive(now);
    }

    /// Host side: answers a follower's ping received at `now`. `None` on a
    /// follower (only the room clock answers).
    #[must_use]
    pub fn answer_ping(&self, ping: ClockPing, now: LocalTime) -> Option<ClockPong> {
        if !self.clock.is_reference() {
            return None;
        }
        let room = self.clock.to_room_time(now)?;
        Some(answer_ping(ping, room, room))
    }

    /// A new host term by another peer: its room clock may be unrelated to
    /// the old host's (a restarted host process starts its own), so the
    /// estimate starts over with a burst. Until it is ready nothing is
    /// enforced and [`SyncEngine::room_time`] is `None` (the session then
    /// skips its skew check, which would otherwise drop every frame of a
    /// host whose clock differs by more than the skew bound — including
    /// the pongs that would fix the estimate).
    pub fn new_room_clock(&mut self, now: LocalTime) {
        if self.clock.is_reference() {
            return;
        }
        self.clock = ClockSync::follower(&self.cfg);
        self.clock_was_ready = false;
        self.filter.reset();
        self.corrector.reset();
        self.timeline_generation = None;
        self.drive(now);
    }

    /// The local player was (re)loaded with new media: it starts afresh
    /// (typically paused at zero) and will never complete actions issued
    /// before. Forget them and the readings of the old player, so the
    /// next reading is a new baseline (its jump is neither a user seek nor
    /// the echo of an old seek) and the room is enforced from it at once.
    /// Without this, a seek swallowed by the reload stays "pending" for
    /// `seek_echo_timeout`, during which nothing is corrected (issue #6).
    pub fn player_reloaded(&mut self, now: LocalTime) {
        self.tracker = EchoTracker::new(&self.cfg);
        self.cued_start = None;
        self.recues_left = MAX_RECUES;
        self.filter.reset();
        self.corrector.reset();
        self.hold_until = None;
        self.timeline_generation = None;
        self.drive(now);
    }

    /// Free-watch: stop following the room. The player is left where it is
    /// (at the room rate, without correction); later user actions are
    /// reported with `attached: false` and never enforced against.
    pub fn detach(&mut self, now: LocalTime) {
        if !self.attached {
            return;
        }
        self.attached = false;
        self.hold_until = None;
        self.corrector.reset();
        if let Some(r) = self.room_rate(now) {
            let current = self.tracker.commanded_rate();
            if current.is_some_and(|c| c != r) {
                self.issue(PlayerAction::SetRate { rate: r }, now);
            }
        }
        self.tracker.forget();
        self.drive(now);
    }

    /// Leaves free-watch: follow the room again, at once.
    pub fn resync(&mut self, now: LocalTime) {
        self.attached = true;
        self.cued_start = None;
        self.recues_left = MAX_RECUES;
        self.hold_until = None;
        self.corrector.reset();
        self.filter.reset();
        self.drive(now);
    }

    // ----- outputs -----

    /// The next output, if any. Drain until `None` after every input.
    pub fn poll_output(&mut self) -> Option<SyncOutput> {
        self.out.pop_front()
    }

    /// When to call [`SyncEngine::handle_timeout`] next.
    #[must_use]
    pub fn next_timeout(&self) -> Option<LocalTime> {
        let candidates = [self.clock.next_timeout(), self.wake_at, self.hold_until];
        candidates
            .into_iter()
            .flatten()
            .map(|t| t.max(self.now + TimeDelta::from_micros(1)))
            .min()
    }

    // ----- internals -----

    /// The new estimate of a latency after measuring `sample`: the average
    /// of the estimate and the sample, or the sample itself while the
    /// estimate is still the initial guess (`learned` false).
    fn learn(&self, current: TimeDelta, learned: bool, sample: TimeDelta) -> TimeDelta {
        let s = sample
            .max(TimeDelta::ZERO)
            .min(self.cfg.startup_estimate_max);
        if !learned {
            return s;
        }
        TimeDelta::from_micros((current.as_micros() + s.as_micros()) / 2)
    }

    fn push(&mut self, o: SyncOutput) {
        if self.out.len() >= MAX_QUEUED_OUTPUTS {
            // Drop the oldest ping (stale anyway); otherwise the oldest item.
            let idx = self
                .out
                .iter()
                .position(|o| matches!(o, SyncOutput::Ping(_)))
                .unwrap_or(0);
            self.out.remove(idx);
        }
        self.out.push_back(o);
    }

    fn room_rate(&self, now: LocalTime) -> Option<Rate> {
        let r = self.clock.to_room_time(now)?;
        Some(self.timeline.as_ref()?.expected_at(r).rate)
    }

    /// Issues `action` unless the same one is still awaiting its effect.
    fn issue(&mut self, action: PlayerAction, now: LocalTime) {
        if self.tracker.recently_issued(action, now).is_some() {
            return;
        }
        match action {
            PlayerAction::Play => self.stats.plays += 1,
            PlayerAction::Pause => self.stats.pauses += 1,
            PlayerAction::Seek { .. } => {
                self.stats.seeks += 1;
                self.filter.reset();
            }
            PlayerAction::SetRate { .. } => self.stats.rate_changes += 1,
        }
        self.tracker.issued(action, now);
        self.push(SyncOutput::Player(action));
    }

    fn set_rate(&mut self, room_rate: Rate, offset_ppm: i64, now: LocalTime) {
        let rate = room_rate.scaled_ppm(offset_ppm);
        self.stats.max_rate_offset_ppm = self
            .stats
            .max_rate_offset_ppm
            .max(offset_ppm.unsigned_abs());
        let tolerance = i64::from(self.cfg.rate_tolerance_ppm);
        let player_ok = self
            .tracker
            .last()
            .is_some_and(|o| o.rate.ppm_relative_to(rate).abs() <= tolerance);
        match self.tracker.commanded_rate() {
            // Asked already: retry only once the retry window passed.
            Some(c) if c == rate && player_ok => {}
            None if player_ok => {}
            _ => self.issue(PlayerAction::SetRate { rate }, now),
        }
    }

    fn drive(&mut self, now: LocalTime) {
        self.now = self.now.max(now);
        if let Some(p) = self.clock.poll_ping(now) {
            self.push(SyncOutput::Ping(p));
        }
        if self.clock.is_ready() && !self.clock_was_ready {
            self.clock_was_ready = true;
            self.push(SyncOutput::Event(SyncEvent::ClockReady));
        }
        self.wake_at = None;
        if self.hold_until.is_some_and(|h| now >= h) {
            self.hold_until = None;
        }
        if !self.attached || self.hold_until.is_some() || !self.clock.is_ready() {
            return;
        }
        let (Some(room_now), Some(tl)) = (self.clock.to_room_time(now), self.timeline.as_ref())
        else {
            return;
        };
        let Some(obs) = self.tracker.last().copied() else {
            return;
        };
        if self.timeline_generation != Some(tl.generation()) {
            // A new room state: old readings were judged against another line.
            self.timeline_generation = Some(tl.generation());
            self.filter.reset();
            self.corrector.reset();
            self.unchecked_state = true;
        }
        let exp = tl.expected_at(room_now);
        let startup = self.start_estimate;
        let seek_lead = self.seek_estimate.max(self.start_estimate);
        // Where the room will be once a seek/start issued now takes effect.
        let landing = tl.expected_at(room_now + seek_lead).position;
        let starts_soon = exp.next_change.and_then(|at| {
            let next = tl.expected_at(at);
            next.playing.then_some(at)
        });

        if exp.ended {
            return;
        }
        if !exp.playing {
            // Paused, or waiting for a scheduled start. A rate-correction
            // episode begun while the room still played (e.g. before a
            // scheduled pause took effect) ends here: nothing is corrected
            // while paused, and `correcting` must not stay set.
            if self.corrector.correcting() {
                self.corrector.reset();
            }
            let start_local = starts_soon.and_then(|at| self.clock.to_local_time(at));
            let start_due = start_local.is_some_and(|l| now >= l - startup);
            if start_due {
                if obs.paused {
                    self.issue(PlayerAction::Play, now);
                }
            } else {
                if !obs.paused {
                    self.issue(PlayerAction::Pause, now);
                }
                // Only a paused reading shows where the player stopped.
                // A seek still under way toward another position (the
                // alignment after a load, an earlier command) is superseded
                // at once, so a command never waits for the player to finish
                // an older seek.
                if obs.paused
                    && (obs.position - exp.position).abs() > self.cfg.paused_seek_threshold
                    && !self.tracker.seek_pending_toward(
                        exp.position,
                        self.cfg.paused_seek_threshold,
                        now,
                    )
                {
                    self.issue(
                        PlayerAction::Seek {
                            position: exp.position,
                        },
                        now,
                    );
                }
                self.wake_at = start_local.map(|l| l - startup);
            }
            self.set_rate(exp.rate, self.corrector.applied_ppm(), now);
            if self.wake_at.is_none() {
                self.wake_at = exp.next_change.and_then(|at| self.clock.to_local_time(at));
            }
            return;
        }

        // The room is playing.
        self.wake_at = exp.next_change.and_then(|at| self.clock.to_local_time(at));
        if obs.paused {
            if self
                .tracker
                .recently_issued(PlayerAction::Play, now)
                .is_none()
                && !self.tracker.seek_pending(now)
            {
                // Cue (module docs, step 3). `ahead`: how far the paused
                // frame is beyond where a start issued now would begin.
                let at_start = tl.expected_at(room_now + startup).position;
                let ahead = obs.position - at_start;
                if self.clock.is_reference() {
                    // The host's own player: the room's line is its own, so
                    // it starts at once (seeking first if off) rather than
                    // waiting for a cue point; a returning host resumes the
                    // room without delay.
                    if ahead.abs() > self.cfg.dead_zone {
                        self.issue(PlayerAction::Seek { position: landing }, now);
                    }
                    self.issue(PlayerAction::Play, now);
                } else if ahead < -self.cfg.dead_zone || ahead > self.cfg.max_cue_wait {
                    let cue = tl
                        .expected_at(room_now + seek_lead + startup + self.cfg.cue_margin)
                        .position;
                    self.issue(PlayerAction::Seek { position: cue }, now);
                } else if ahead > TimeDelta::ZERO {
                    // Wait for the room to reach the frame.
                    let wait = exp.rate.time_for(ahead);
                    self.wake_at = Some(self.wake_at.map_or(now + wait, |w| w.min(now + wait)));
                } else {
                    self.issue(PlayerAction::Play, now);
                    self.cued_start = Some(now);
                }
            }
            self.set_rate(exp.rate, self.corrector.applied_ppm(), now);
            return;
        }
        if obs.buffering || self.tracker.seek_pending(now) || self.tracker.start_pending(now) {
            // Readings are meaningless until the player moves; keep the room
            // rate enforced meanwhile.
            self.set_rate(exp.rate, self.corrector.applied_ppm(), now);
            return;
        }
        if self.unchecked_state && exp.next_change.is_none() {
            // A new state is in effect: apply a jump it makes by seeking at
            // once (a command is not drift; don't catch up by rate).
            self.unchecked_state = false;
            let elapsed = now.since(obs.at).max(TimeDelta::ZERO);
            let projected = obs.position + obs.rate.advance(elapsed);
            if (projected - exp.position).abs() > self.cfg.command_seek_threshold {
                self.issue(PlayerAction::Seek { position: landing }, now);
                self.corrector.seeked(now);
                return;
            }
        }
        let clock = &self.clock;
        let estimate = self.filter.estimate(now, |at, pos| {
            let r = clock.to_room_time(at)?;
            Some(pos - tl.expected_at(r).position)
        });
        let Some(fe) = estimate else {
            self.set_rate(exp.rate, self.corrector.applied_ppm(), now);
            return;
        };
        self.last_error = Some(fe.error);
        if let Some(at) = self.cued_start
            && now.since(at) >= CUE_CHECK_AFTER
        {
            // The first estimate once the start has settled.
            self.cued_start = None;
            if fe.error.abs() > self.cfg.dead_zone && self.recues_left > 0 {
                self.recues_left -= 1;
                self.stats.recues += 1;
                self.corrector.reset();
                self.issue(PlayerAction::Pause, now);
                self.set_rate(exp.rate, 0, now);
                return;
            }
            self.corrector.start_episode(now, fe.error);
        }
        let drift = if self.clock.sample_count() >= DRIFT_FEED_FORWARD_MIN_SAMPLES {
            self.clock
                .estimate(now)
                .map_or(0, |e| crate::time::f64_to_i64_saturating(e.drift_ppm))
        } else {
            0
        };
        match self.corrector.update(now, fe.error, exp.rate, drift) {
            Correction::Hold => self.set_rate(exp.rate, self.corrector.applied_ppm(), now),
            Correction::RateOffset(ppm) => self.set_rate(exp.rate, ppm, now),
            Correction::Seek => {
                self.stats.corrective_seeks += 1;
                self.issue(PlayerAction::Seek { position: landing }, now);
                let ppm = self.corrector.applied_ppm();
                self.set_rate(exp.rate, ppm, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ClockPing;

    fn t(ms: i64) -> LocalTime {
        LocalTime::from_millis(ms)
    }

    fn reading(at: i64, pos_ms: u64, paused: bool) -> PlayerObservation {
        PlayerObservation {
            at: t(at),
            position: MediaPos::from_millis(pos_ms),
            paused,
            rate: Rate::NORMAL,
            buffering: false,
            ended: false,
            event: None,
        }
    }

    fn drain(e: &mut SyncEngine) -> Vec<SyncOutput> {
        std::iter::from_fn(|| e.poll_output()).collect()
    }

    #[test]
    fn invalid_config_is_refused() {
        let bad = SyncConfig {
            dead_zone: TimeDelta::from_millis(-1),
            ..SyncConfig::default()
        };
        assert!(SyncEngine::follower(bad.clone()).is_err());
        assert!(SyncEngine::host(bad, TimeDelta::ZERO).is_err());
    }

    #[test]
    fn follower_pings_but_never_acts_before_its_clock_is_ready() {
        let Ok(mut e) = SyncEngine::follower(SyncConfig::default()) else {
            panic!("default config")
        };
        e.handle_player(reading(0, 0, true), t(0));
        e.handle_timeline(
            PlaybackState::playing(MediaPos::ZERO, RoomTime::ZERO, Rate::NORMAL),
            t(0),
        );
        let out = drain(&mut e);
        assert!(out.iter().any(|o| matches!(o, SyncOutput::Ping(_))));
        assert!(
            !out.iter().any(|o| matches!(o, SyncOutput::Player(_))),
            "{out:?}"
        );
        assert_eq!(
            e.answer_ping(
                ClockPing {
                    id: 1,
                    origin: t(0)
                },
                t(1)
            ),
            None
        );
    }

    #[test]
    fn host_follows_its_own_timeline_and_answers_pings() {
        let Ok(mut e) = SyncEngine::host(SyncConfig::default(), TimeDelta::ZERO) else {
            panic!("default config")
        };
        e.handle_player(reading(0, 0, true), t(0));
        let at = e.scheduled_at(t(0));
        assert_eq!(at, Some(RoomTime::from_millis(150)));
        e.handle_timeline(
            PlaybackState::playing(MediaPos::ZERO, RoomTime::from_millis(150), Rate::NORMAL),
            t(0),
        );
        // Nothing before the start minus the start-up estimate (100 ms).
        assert!(
            drain(&mut e)
                .iter()
                .all(|o| !matches!(o, SyncOutput::Player(_)))
        );
        assert_eq!(e.next_timeout(), Some(t(50)));
        e.handle_timeout(t(50));
        assert!(drain(&mut e).contains(&SyncOutput::Player(PlayerAction::Play)));
        let pong = e.answer_ping(
            ClockPing {
                id: 7,
                origin: t(3),
            },
            t(1_000),
        );
        assert_eq!(
            pong.map(|p| (p.id, p.receive)),
            Some((7, RoomTime::from_millis(1_000)))
        );
    }

    #[test]
    fn detached_engine_leaves_the_player_alone() {
        let Ok(mut e) = SyncEngine::host(SyncConfig::default(), TimeDelta::ZERO) else {
            panic!("default config")
        };
        e.handle_player(reading(0, 0, true), t(0));
        e.handle_timeline(
            PlaybackState::playing(MediaPos::ZERO, RoomTime::ZERO, Rate::NORMAL),
            t(0),
        );
        // Room playing, player paused: the engine cues it (a seek first).
        let out = drain(&mut e);
        assert!(
            out.iter()
                .any(|o| matches!(o, SyncOutput::Player(PlayerAction::Seek { .. }))),
            "{out:?}"
        );
        e.detach(t(10));
        drain(&mut e);
        // The user pauses: a local intent, and the engine does not fight it.
        e.handle_player(reading(200, 190, false), t(200));
        e.handle_player(reading(300, 250, true), t(300));
        for i in 4..100 {
            e.handle_player(reading(i * 100, 250, true), t(i * 100));
        }
        let out = drain(&mut e);
        assert!(
            !out.iter().any(|o| matches!(o, SyncOutput::Player(_))),
            "{out:?}"
        );
        assert!(out.iter().any(|o| matches!(
            o,
            SyncOutput::Event(SyncEvent::UserIntent {
                attached: false,
                ..
            })
        )));
        // One call re-attaches and plays again.
        e.resync(t(10_000));
        assert!(
            drain(&mut e)
                .iter()
                .any(|o| matches!(o, SyncOutput::Player(_)))
        );
    }

    #[test]
    fn unpolled_outputs_are_bounded() {
        let Ok(mut e) = SyncEngine::follower(SyncConfig::default()) else {
            panic!("default config")
        };
        for i in 0..10_000 {
            e.handle_timeout(t(i * 100));
        }
        let out = drain(&mut e);
        assert!(out.len() <= MAX_QUEUED_OUTPUTS, "{}", out.len());
        assert!(!out.is_empty());
    }

    /// A tiny instant-acting player for engine tests.
    struct Toy {
        pos_us: i64,
        paused: bool,
        rate: Rate,
        seeked: bool,
    }

    impl Toy {
        /// A fresh player: paused at zero.
        fn fresh() -> Self {
            Self {
                pos_us: 0,
                paused: true,
                rate: Rate::NORMAL,
                seeked: false,
            }
        }
        fn apply(&mut self, a: PlayerAction) {
            match a {
                PlayerAction::Play => self.paused = false,
                PlayerAction::Pause => self.paused = true,
                PlayerAction::Seek { position } => {
                    self.pos_us = position.as_micros();
                    self.seeked = true;
                }
                PlayerAction::SetRate { rate } => self.rate = rate,
            }
        }
        fn reading(&mut self, at: i64) -> PlayerObservation {
            let seeked = std::mem::take(&mut self.seeked);
            PlayerObservation {
                at: t(at),
                position: MediaPos::from_micros(self.pos_us),
                paused: self.paused,
                rate: self.rate,
                buffering: false,
                ended: false,
                event: seeked.then_some(crate::player::PlayerEvent::Seeked),
            }
        }
    }

    /// A host whose room clock is its local time + 60 s, and a follower
    /// of a 300 s item.
    fn host_and_follower() -> (SyncEngine, SyncEngine) {
        let cfg = SyncConfig::default();
        let (Ok(h), Ok(mut f)) = (
            SyncEngine::host(cfg.clone(), TimeDelta::from_secs(60)),
            SyncEngine::follower(cfg),
        ) else {
            panic!("default config")
        };
        f.set_duration(Some(MediaPos::from_millis(300_000)));
        (h, f)
    }

    /// Runs follower `f` against the host clock `host` from `from` to `to`
    /// ms (1 ms each way), stepping 10 ms; returns the toy player.
    fn run(f: &mut SyncEngine, host: &SyncEngine, toy: &mut Toy, from: i64, to: i64) {
        let mut ms = from;
        while ms < to {
            for o in drain(f) {
                match o {
                    SyncOutput::Player(a) => toy.apply(a),
                    SyncOutput::Ping(p) => {
                        if let Some(pong) = host.answer_ping(p, t(ms)) {
                            let _ = f.handle_pong(pong, t(ms + 2));
                        }
                    }
                    SyncOutput::Event(_) => {}
                }
            }
            ms += 10;
            if !toy.paused {
                toy.pos_us += 10_000;
            }
            f.handle_player(toy.reading(ms), t(ms));
        }
    }

    #[test]
    fn a_new_host_term_on_a_fresh_room_clock_moves_the_player() {
        let (old, mut f) = host_and_follower();
        let mut toy = Toy::fresh();
        // Old term: playing from 50 s at room 61 s (local 1 s).
        f.handle_timeline(
            PlaybackState::playing(
                MediaPos::from_millis(50_000),
                RoomTime::from_millis(61_000),
                Rate::NORMAL,
            ),
            t(0),
        );
        run(&mut f, &old, &mut toy, 0, 5_000);
        assert!((toy.pos_us - 54_000_000).abs() < 100_000, "{}", toy.pos_us);
        // The host dies: the room pauses where it is (room 65 s → 54 s).
        f.handle_timeline(
            PlaybackState::paused(
                MediaPos::from_millis(54_000),
                RoomTime::from_millis(65_000),
                Rate::NORMAL,
            ),
            t(5_000),
        );
        // A fresh host process: room clock = its own local time, which
        // started 2 s before (room = local − 3 s).
        let Ok(new) = SyncEngine::host(SyncConfig::default(), TimeDelta::from_secs(-3)) else {
            panic!("default config")
        };
        run(&mut f, &new, &mut toy, 5_000, 8_000);
        // Its term: load (paused at 0), seek 90, play.
        f.handle_timeline(
            PlaybackState::paused(MediaPos::ZERO, RoomTime::from_millis(5_150), Rate::NORMAL),
            t(8_000),
        );
        f.handle_timeline(
            PlaybackState::paused(
                MediaPos::from_millis(90_000),
                RoomTime::from_millis(5_200),
                Rate::NORMAL,
            ),
            t(8_050),
        );
        f.handle_timeline(
            PlaybackState::playing(
                MediaPos::from_millis(90_000),
                RoomTime::from_millis(5_300),
                Rate::NORMAL,
            ),
            t(8_100),
        );
        run(&mut f, &new, &mut toy, 8_000, 20_000);
        // Room at local 20 s = room 17 s: 90 + 11.7 s.
        let want = 101_700_000;
        assert!(
            (toy.pos_us - want).abs() < 200_000,
            "player at {} µs, room at {want}; {:?}",
            toy.pos_us,
            f.status(t(20_000))
        );
    }

    /// Issue #20 item 2: joining a playing room, the paused player is cued
    /// (one seek ahead, then `Play` when the room arrives). The toy starts
    /// at once, so the initial 100 ms start-up guess starts it early; the
    /// first reading after the start sees it and cues once more, with the
    /// latency just measured, and the player ends up on the room's line.
    #[test]
    fn a_joiner_is_cued_and_a_missed_start_is_cued_once_more() {
        let (host, mut f) = host_and_follower();
        let mut toy = Toy::fresh();
        // Playing since room 59 s (local −1 s): the room plays already.
        f.handle_timeline(
            PlaybackState::playing(
                MediaPos::from_millis(50_000),
                RoomTime::from_millis(59_000),
                Rate::NORMAL,
            ),
            t(0),
        );
        run(&mut f, &host, &mut toy, 0, 4_000);
        // Room at local 4 s = room 64 s: 55 s.
        let error = toy.pos_us - 55_000_000;
        let stats = f.stats();
        assert!(
            error.abs() <= f.config().dead_zone.as_micros(),
            "off by {error} µs; {stats:?}"
        );
        assert_eq!((stats.seeks, stats.recues), (1, 1), "{stats:?}");
        assert!(!toy.paused);
        // Settled: no further pause or seek.
        run(&mut f, &host, &mut toy, 4_000, 8_000);
        assert_eq!((f.stats().seeks, f.stats().pauses), (1, stats.pauses));
    }

    /// Issue #6: a seek issued to the old player just before a reload
    /// (new host term loading the same media) is never completed; once the
    /// engine learns of the reload it enforces the room on the fresh player.
    #[test]
    fn a_reload_that_swallows_a_seek_does_not_block_sync() {
        let (host, mut f) = host_and_follower();
        let mut toy = Toy::fresh();
        f.handle_timeline(
            PlaybackState::paused(
                MediaPos::from_millis(54_000),
                RoomTime::from_millis(60_000),
                Rate::NORMAL,
            ),
            t(0),
        );
        run(&mut f, &host, &mut toy, 0, 3_000);
        assert_eq!((toy.pos_us, toy.paused), (54_000_000, true));
        // The new term's load, then `seek 90`: the engine seeks the old
        // player, but the reload replaces it before the seek lands.
        f.handle_timeline(
            PlaybackState::paused(MediaPos::ZERO, RoomTime::from_millis(63_000), Rate::NORMAL),
            t(3_000),
        );
        f.handle_timeline(
            PlaybackState::paused(
                MediaPos::from_millis(90_000),
                RoomTime::from_millis(63_050),
                Rate::NORMAL,
            ),
            t(3_050),
        );
        let out = drain(&mut f);
        assert!(
            out.iter()
                .any(|o| matches!(o, SyncOutput::Player(PlayerAction::Seek { .. }))),
            "{out:?}"
        );
        toy = Toy::fresh();
        f.player_reloaded(t(3_100));
        f.handle_timeline(
            PlaybackState::playing(
                MediaPos::from_millis(90_000),
                RoomTime::from_millis(63_300),
                Rate::NORMAL,
            ),
            t(3_100),
        );
        run(&mut f, &host, &mut toy, 3_100, 8_000);
        // Room at local 8 s = room 68 s: 90 + 4.7 s.
        let want = 94_700_000;
        assert!(
            (toy.pos_us - want).abs() < 100_000 && !toy.paused,
            "player at {} µs, room at {want}; {:?}",
            toy.pos_us,
            f.status(t(8_000))
        );
    }

    /// A command's seek while paused goes out at once, even while an older
    /// seek toward another position is still under way (the alignment
    /// after a load, or the previous command): it supersedes it. The same
    /// target is not issued twice while it is under way.
    #[test]
    fn a_paused_seek_command_supersedes_a_seek_still_under_way() {
        let (host, mut f) = host_and_follower();
        let mut toy = Toy::fresh();
        let paused_at = |pos: u64, room: i64| {
            PlaybackState::paused(
                MediaPos::from_millis(pos),
                RoomTime::from_millis(room),
                Rate::NORMAL,
            )
        };
        let seeks = |out: Vec<SyncOutput>| -> Vec<i64> {
            out.into_iter()
                .filter_map(|o| match o {
                    SyncOutput::Player(PlayerAction::Seek { position }) => {
                        Some(position.as_micros() / 1000)
                    }
                    _ => None,
                })
                .collect()
        };
        f.handle_timeline(paused_at(10_000, 60_000), t(0));
        run(&mut f, &host, &mut toy, 0, 3_000);
        assert_eq!((toy.pos_us, toy.paused), (10_000_000, true));
        // The player is slow: it keeps showing 10 s while seeking.
        f.handle_timeline(paused_at(54_000, 63_000), t(3_000));
        assert_eq!(seeks(drain(&mut f)), [54_000]);
        f.handle_player(reading(3_010, 10_000, true), t(3_010));
        assert_eq!(seeks(drain(&mut f)), Vec::<i64>::new());
        f.handle_timeline(paused_at(90_000, 63_020), t(3_020));
        assert_eq!(seeks(drain(&mut f)), [90_000]);
        f.handle_player(reading(3_030, 10_000, true), t(3_030));
        assert_eq!(seeks(drain(&mut f)), Vec::<i64>::new());
    }

    /// A new host term on an unrelated room clock: the old estimate is
    /// dropped at once (no room time, so no skew judgement against it) and
    /// the new host's clock is learned.
    #[test]
    fn a_new_room_clock_forgets_the_old_estimate() {
        let (old, mut f) = host_and_follower();
        let mut toy = Toy::fresh();
        run(&mut f, &old, &mut toy, 0, 3_000);
        let off = |r: Option<RoomTime>, l: i64| r.map(|r| r.as_micros() - l * 1_000);
        assert!(off(f.room_time(t(3_000)), 3_000).is_some_and(|o| (o - 60_000_000).abs() < 5_000));
        f.new_room_clock(t(3_000));
        assert_eq!(f.room_time(t(3_000)), None);
        let Ok(new) = SyncEngine::host(SyncConfig::default(), TimeDelta::from_secs(-3)) else {
            panic!("default config")
        };
        run(&mut f, &new, &mut toy, 3_000, 4_000);
        assert!(
            off(f.room_time(t(4_000)), 4_000).is_some_and(|o| (o + 3_000_000).abs() < 5_000),
            "{:?}",
            f.status(t(4_000))
        );
    }
}
