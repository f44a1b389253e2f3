//! Clock sync against the host: NTP-style four-timestamp exchanges, solved as
//! a small linear feasibility problem so that offset *and* drift are bounded,
//! not just guessed.
//!
//! # Model
//!
//! The room clock is the host's clock. On a follower,
//! `room = local + θ(local)` with `θ(t) = a + b·(t − t_ref)`: an offset `a`
//! and a frequency error `b` (drift, ppm) that is constant over the sample
//! window.
//!
//! A ping sent at local `t1`, stamped by the host at room `t2` (receive) and
//! `t3` (transmit), and whose pong arrives at local `t4`, proves — because
//! no message travels backwards in time — that
//!
//! ```text
//!     t3 − t4  ≤  θ  ≤  t2 − t1
//! ```
//!
//! (upper bound at `t1`, lower bound at `t4`). The interval's width is the
//! round trip; its midpoint is the classic NTP offset. Classic NTP keeps the
//! midpoint of the lowest-RTT sample. We keep *all* constraints of the window
//! and intersect them in the `(b, a)` plane: the upper bound comes from the
//! fastest ping *up* and the lower bound from the fastest pong *down*, which
//! may be different samples, so the result is tighter than the best single
//! sample; the slope dimension estimates drift over the whole window.
//!
//! The feasible set is a convex polygon (at most `4 + 2·window` vertices),
//! computed by clipping a box with each half-plane. At any local time the
//! offset's possible values form an interval (min/max over the vertices); the
//! estimate is its midpoint and the **uncertainty its half-width — a hard
//! bound** under the model, which grows naturally with the time since the
//! last sample because the slope is only known within bounds.
//!
//! If a new sample does not fit (the polygon is empty), a clock jumped or
//! the drift changed: the oldest samples are dropped until it fits, and a new
//! burst of pings is scheduled.
//!
//! Floats: the polygon is computed in `f64` (coordinates relative to the
//! newest sample, so magnitudes stay below 1e7 and precision below 1 ns);
//! everything observable is returned as integer microseconds. This runs once
//! per pong, not per frame.

use std::collections::VecDeque;

use crate::sync_config::SyncConfig;
use crate::time::{LocalTime, RoomTime, TimeDelta};

/// A clock ping to send to the host (unordered, unreliable clock channel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPing {
    /// Identifies the exchange; echoed in the pong.
    pub id: u32,
    /// `t1`: when the ping left, on the sender's local clock (µs on the wire).
    pub origin: LocalTime,
}

/// The host's answer to a [`ClockPing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockPong {
    /// The ping's id.
    pub id: u32,
    /// The ping's `t1`, echoed.
    pub origin: LocalTime,
    /// `t2`: when the host received the ping, on the room clock.
    pub receive: RoomTime,
    /// `t3`: when the host sent the pong, on the room clock.
    pub transmit: RoomTime,
}

/// Builds the host's pong. `receive` is the room time at which the ping was
/// handled and `transmit` the room time at which the pong leaves (the same
/// value is fine for a sans-I/O host: the queueing delay then counts as
/// network delay, which only widens the sample's interval).
#[must_use]
pub fn answer_ping(ping: ClockPing, receive: RoomTime, transmit: RoomTime) -> ClockPong {
    ClockPong {
        id: ping.id,
        origin: ping.origin,
        receive,
        transmit: transmit.max(receive),
    }
}

/// Why a pong was refused. Refused pongs change nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PongError {
    /// This peer is the room clock; it sends no pings.
    #[error("this peer is the clock reference and sent no ping")]
    NotFollower,
    /// No ping with this id is outstanding (duplicate, expired or forged).
    #[error("no outstanding ping with id {0}")]
    UnknownPing(u32),
    /// The echoed `t1` differs from the one we sent.
    #[error("pong echoes a different origin timestamp")]
    OriginMismatch,
    /// `t3 < t2`: the host claims to have answered before receiving.
    #[error("pong transmit time precedes its receive time")]
    HostTimesReversed,
    /// The round trip, minus the host's hold time, is negative.
    #[error("negative round-trip time")]
    NegativeRoundTrip,
    /// The round trip exceeds the ping timeout: too imprecise to use.
    #[error("round trip {0} exceeds the ping timeout")]
    RoundTripTooLong(TimeDelta),
}

/// The current estimate of the offset to the room clock.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OffsetEstimate {
    /// `room − local` at the queried instant.
    pub offset: TimeDelta,
    /// Half-width of the interval the true offset is known to lie in.
    pub uncertainty: TimeDelta,
    /// Estimated rate of the room clock relative to ours, minus one, in ppm.
    pub drift_ppm: f64,
    /// Half-width of the drift interval, in ppm.
    pub drift_uncertainty_ppm: f64,
}

/// What a pong did to the estimate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PongOutcome {
    /// The sample's round trip.
    pub round_trip: TimeDelta,
    /// The sample contradicted the window (or moved the estimate beyond the
    /// jump threshold): old samples were dropped and a burst is scheduled.
    pub jumped: bool,
}

/// Counters for observability.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockStats {
    /// Pings emitted.
    pub pings_sent: u64,
    /// Pongs accepted as samples.
    pub pongs_accepted: u64,
    /// Pongs refused (any [`PongError`]).
    pub pongs_refused: u64,
    /// Pings that expired without an answer (or were evicted).
    pub pings_lost: u64,
    /// Clock jumps detected.
    pub jumps: u64,
    /// Round trip of the last accepted pong (network time to the host,
    /// without the host's hold time).
    pub last_round_trip: Option<TimeDelta>,
}

#[derive(Debug, Clone, Copy)]
struct Sample {
    t1: LocalTime,
    t4: LocalTime,
    /// `t2 − t1` (µs): upper bound of θ at `t1`.
    hi: i64,
    /// `t3 − t4` (µs): lower bound of θ at `t4`.
    lo: i64,
}

/// `k + kx·x + ky·y ≥ 0` with `x` = drift (ppm) and `y` = offset relative to
/// `base` (µs) at `t_ref`.
#[derive(Debug, Clone, Copy)]
struct HalfPlane {
    k: f64,
    kx: f64,
    ky: f64,
}

impl HalfPlane {
    fn eval(&self, p: [f64; 2]) -> f64 {
        self.k + self.kx * p[0] + self.ky * p[1]
    }
}

/// Tolerance of the inside test, in µs: touching constraints stay feasible.
const INSIDE_EPS: f64 = 1e-3;

fn clip(poly: &[[f64; 2]], h: HalfPlane) -> Vec<[f64; 2]> {
    let n = poly.len();
    let mut out = Vec::with_capacity(n + 1);
    for i in 0..n {
        let p = poly[i];
        let q = poly[(i + 1) % n];
        let fp = h.eval(p);
        let fq = h.eval(q);
        let p_in = fp >= -INSIDE_EPS;
        let q_in = fq >= -INSIDE_EPS;
        if p_in {
            out.push(p);
        }
        if p_in != q_in && n > 1 {
            let denom = fp - fq;
            let t = if denom == 0.0 {
                0.0
            } else {
                (fp / denom).clamp(0.0, 1.0)
            };
            out.push([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]);
        }
    }
    out
}

#[derive(Debug, Clone)]
struct Estimator {
    samples: VecDeque<Sample>,
    /// Vertices `(drift ppm, offset − base µs)` of the feasible set.
    polygon: Vec<[f64; 2]>,
    /// The deepest point of the feasible set: the estimate.
    center: [f64; 2],
    t_ref: LocalTime,
    base: i64,
}

/// Bisection steps for the deepest line: the search interval (half the
/// narrowest sample interval, < 1 s) shrinks below 0.1 µs.
const DEPTH_STEPS: u32 = 24;

/// How much shallower than the deepest line the region is whose centroid is
/// the estimate (µs).
const DEPTH_RELAX_US: f64 = 1_000.0;

impl Estimator {
    fn new() -> Self {
        Self {
            samples: VecDeque::new(),
            polygon: Vec::new(),
            center: [0.0, 0.0],
            t_ref: LocalTime::ZERO,
            base: 0,
        }
    }

    /// The feasible set with every sample interval widened by `slack` on
    /// each side (a negative `slack` shrinks them).
    fn feasible(&self, slack: f64, max_drift: f64) -> Vec<[f64; 2]> {
        let Some(newest) = self.samples.back() else {
            return Vec::new();
        };
        let secs = |t: LocalTime| t.since(self.t_ref).as_secs_f64();
        let rtt_s = secs(newest.t4).abs();
        let hi_rel = (newest.hi - self.base) as f64;
        let lo_rel = (newest.lo - self.base) as f64;
        // A box containing the newest sample's feasible strip.
        let y_hi = hi_rel + slack.abs() + 1.0;
        let y_lo = lo_rel - slack.abs() - max_drift * rtt_s - 1.0;
        let mut poly = vec![
            [-max_drift, y_lo],
            [max_drift, y_lo],
            [max_drift, y_hi],
            [-max_drift, y_hi],
        ];
        for s in &self.samples {
            // Upper: y + x·d1 ≤ hi − base + slack.
            let upper = HalfPlane {
                k: (s.hi - self.base) as f64 + slack,
                kx: -secs(s.t1),
                ky: -1.0,
            };
            // Lower: y + x·d4 ≥ lo − base − slack.
            let lower = HalfPlane {
                k: -((s.lo - self.base) as f64 - slack),
                kx: secs(s.t4),
                ky: 1.0,
            };
            poly = clip(&poly, upper);
            poly = clip(&poly, lower);
            if poly.is_empty() {
                break;
            }
        }
        poly
    }

    /// Recomputes the feasible polygon and the estimate; `false` if the
    /// samples are inconsistent (empty polygon).
    ///
    /// The feasible set bounds the truth but is wide: every interval is at
    /// least the path's base latency away from the truth on each side. The
    /// estimate is therefore the *deepest* line — the one that stays
    /// farthest inside all intervals (shrink every interval by the same
    /// amount, as far as the set stays non-empty). That is the minimax
    /// line fit, exact when base latencies are symmetric, and it uses the
    /// fastest up and fastest down path at both ends of the window, so the
    /// drift is estimated over the whole window.
    fn solve(&mut self, slack: f64, max_drift: f64) -> bool {
        let Some(newest) = self.samples.back().copied() else {
            self.polygon.clear();
            return false;
        };
        self.t_ref = newest.t1;
        // Midpoint of the newest interval; the exact value only conditions
        // the floats.
        self.base = newest.lo / 2 + newest.hi / 2;
        self.polygon = self.feasible(slack, max_drift);
        if self.polygon.is_empty() {
            return false;
        }
        let narrowest = self
            .samples
            .iter()
            .map(|s| (s.hi - s.lo) as f64)
            .fold(f64::INFINITY, f64::min);
        let (mut lo, mut hi) = (0.0_f64, narrowest / 2.0 + slack + 1.0);
        let mut deepest = self.polygon.clone();
        for _ in 0..DEPTH_STEPS {
            let mid = (lo + hi) / 2.0;
            let p = self.feasible(slack - mid, max_drift);
            if p.is_empty() {
                hi = mid;
            } else {
                lo = mid;
                deepest = p;
            }
        }
        // The deepest point itself rests on the two or three most extreme
        // samples; the centroid of the region slightly less deep averages
        // over more of them.
        let relaxed = self.feasible(slack - (lo - DEPTH_RELAX_US).max(0.0), max_drift);
        if !relaxed.is_empty() {
            deepest = relaxed;
        }
        let n = deepest.len() as f64;
        let (sx, sy) = deepest
            .iter()
            .fold((0.0, 0.0), |(ax, ay), v| (ax + v[0], ay + v[1]));
        self.center = [sx / n, sy / n];
        true
    }

    fn estimate(&self, at: LocalTime) -> Option<OffsetEstimate> {
        if self.polygon.is_empty() {
            return None;
        }
        let dt = at.since(self.t_ref).as_secs_f64();
        let eval = |v: &[f64; 2]| v[1] + v[0] * dt;
        let est = eval(&self.center);
        let (mut dev, mut ddev) = (0.0_f64, 0.0_f64);
        for v in &self.polygon {
            dev = dev.max((eval(v) - est).abs());
            ddev = ddev.max((v[0] - self.center[0]).abs());
        }
        Some(OffsetEstimate {
            offset: TimeDelta::from_micros(self.base) + TimeDelta::from_micros_f64(est),
            uncertainty: TimeDelta::from_micros_f64(dev),
            drift_ppm: self.center[0],
            drift_uncertainty_ppm: ddev,
        })
    }
}

#[derive(Debug, Clone)]
struct Params {
    burst_count: u32,
    burst_interval: TimeDelta,
    interval: TimeDelta,
    timeout: TimeDelta,
    max_outstanding: usize,
    window: usize,
    max_age: TimeDelta,
    max_drift_ppm: f64,
    slack: TimeDelta,
    jump_threshold: TimeDelta,
    min_samples: usize,
}

impl Params {
    fn from_config(c: &SyncConfig) -> Self {
        Self {
            burst_count: c.ping_burst_count,
            burst_interval: c.ping_burst_interval,
            interval: c.ping_interval,
            timeout: c.ping_timeout,
            max_outstanding: c.max_outstanding_pings,
            window: c.clock_window,
            max_age: c.clock_max_sample_age,
            max_drift_ppm: f64::from(c.max_drift_ppm),
            slack: c.timestamp_slack,
            jump_threshold: c.clock_jump_threshold,
            min_samples: c.min_clock_samples,
        }
    }
}

#[derive(Debug, Clone)]
struct Follower {
    params: Params,
    est: Estimator,
    outstanding: VecDeque<(u32, LocalTime)>,
    next_id: u32,
    /// `None`: send as soon as polled.
    next_ping_at: Option<LocalTime>,
    burst_left: u32,
    ready: bool,
}

#[derive(Debug, Clone)]
enum Mode {
    Reference { offset: TimeDelta },
    Follower(Box<Follower>),
}

/// This peer's view of the room clock: either the reference itself (the
/// host) or a follower estimating its offset with pings.
///
/// Sans-I/O: call [`ClockSync::poll_ping`] whenever
/// [`ClockSync::next_timeout`] is due (or after any input), send what it
/// returns, and feed answers to [`ClockSync::handle_pong`].
#[derive(Debug, Clone)]
pub struct ClockSync {
    mode: Mode,
    stats: ClockStats,
}

impl ClockSync {
    /// The room clock itself: `room = local + offset`. The host uses
    /// `offset = 0` when it creates the room; a new host after a handoff
    /// keeps its last estimate (see [`ClockSync::become_reference`]).
    #[must_use]
    pub fn reference(offset: TimeDelta) -> Self {
        Self {
            mode: Mode::Reference { offset },
            stats: ClockStats::default(),
        }
    }

    /// A follower with no samples yet; it starts with a burst of pings.
    #[must_use]
    pub fn follower(config: &SyncConfig) -> Self {
        let params = Params::from_config(config);
        let burst_left = params.burst_count;
        Self {
            mode: Mode::Follower(Box::new(Follower {
                params,
                est: Estimator::new(),
                outstanding: VecDeque::new(),
                next_id: 0,
                next_ping_at: None,
                burst_left,
                ready: false,
            })),
            stats: ClockStats::default(),
        }
    }

    /// Becomes the room clock (host handoff), freezing the current estimate
    /// so that room time continues without a step.
    pub fn become_reference(&mut self, now: LocalTime) {
        let offset = self.estimate(now).map_or(TimeDelta::ZERO, |e| e.offset);
        self.mode = Mode::Reference { offset };
    }

    /// `true` for the reference clock.
    #[must_use]
    pub fn is_reference(&self) -> bool {
        matches!(self.mode, Mode::Reference { .. })
    }

    /// Whether the estimate is good enough to act on: the reference always
    /// is; a follower once it has `min_clock_samples` samples, or its first
    /// burst has ended with at least one. Stays true afterwards while at
    /// least one sample is held.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        match &self.mode {
            Mode::Reference { .. } => true,
            Mode::Follower(f) => f.ready && !f.est.samples.is_empty(),
        }
    }

    /// Samples currently in the window (0 for the reference).
    #[must_use]
    pub fn sample_count(&self) -> usize {
        match &self.mode {
            Mode::Reference { .. } => 0,
            Mode::Follower(f) => f.est.samples.len(),
        }
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> ClockStats {
        self.stats
    }

    /// The largest round trip among the samples in the window (network
    /// time to the host, without its hold time): what a member reports in
    /// its `Latency` frame. `None` for the reference or without samples.
    #[must_use]
    pub fn max_round_trip(&self) -> Option<TimeDelta> {
        match &self.mode {
            Mode::Reference { .. } => None,
            Mode::Follower(f) => f
                .est
                .samples
                .iter()
                // hi − lo = (t2 − t1) − (t3 − t4) = (t4 − t1) − (t3 − t2).
                .map(|s| s.hi.saturating_sub(s.lo))
                .max()
                .map(TimeDelta::from_micros),
        }
    }

    /// The offset estimate at local time `at`, if any sample exists.
    #[must_use]
    pub fn estimate(&self, at: LocalTime) -> Option<OffsetEstimate> {
        match &self.mode {
            Mode::Reference { offset } => Some(OffsetEstimate {
                offset: *offset,
                uncertainty: TimeDelta::ZERO,
                drift_ppm: 0.0,
                drift_uncertainty_ppm: 0.0,
            }),
            Mode::Follower(f) => f.est.estimate(at),
        }
    }

    /// Maps a local instant to room time, if an estimate exists.
    #[must_use]
    pub fn to_room_time(&self, local: LocalTime) -> Option<RoomTime> {
        let e = self.estimate(local)?;
        Some(RoomTime::from_micros(local.as_micros()) + e.offset)
    }

    /// Maps a room instant to local time (inverse of
    /// [`ClockSync::to_room_time`], to schedule timeouts).
    #[must_use]
    pub fn to_local_time(&self, room: RoomTime) -> Option<LocalTime> {
        let guess = |offset: TimeDelta| LocalTime::from_micros((room - offset).as_micros());
        let start = match &self.mode {
            Mode::Reference { offset } => return Some(guess(*offset)),
            Mode::Follower(f) => f.est.t_ref,
        };
        // Fixed-point iteration: the offset changes by at most
        // `max_drift_ppm` of the correction, so two steps reach µs precision.
        let mut local = guess(self.estimate(start)?.offset);
        for _ in 0..2 {
            local = guess(self.estimate(local)?.offset);
        }
        Some(local)
    }

    /// When [`ClockSync::poll_ping`] next has something to send
    /// ([`LocalTime::MIN`]: at once).
    #[must_use]
    pub fn next_timeout(&self) -> Option<LocalTime> {
        match &self.mode {
            Mode::Reference { .. } => None,
            Mode::Follower(f) => Some(f.next_ping_at.unwrap_or(LocalTime::MIN)),
        }
    }

    /// Starts a new burst of pings (also done automatically after a jump).
    pub fn resync(&mut self) {
        if let Mode::Follower(f) = &mut self.mode {
            f.burst_left = f.params.burst_count;
            f.next_ping_at = None;
        }
    }

    /// Returns the ping to send now, if one is due.
    pub fn poll_ping(&mut self, now: LocalTime) -> Option<ClockPing> {
        let Mode::Follower(f) = &mut self.mode else {
            return None;
        };
        // Expire unanswered pings.
        while f
            .outstanding
            .front()
            .is_some_and(|&(_, t1)| now.since(t1) > f.params.timeout)
        {
            f.outstanding.pop_front();
            self.stats.pings_lost += 1;
        }
        if f.burst_left == 0 && f.outstanding.is_empty() && !f.est.samples.is_empty() {
            f.ready = true;
        }
        if f.next_ping_at.is_some_and(|t| now < t) {
            return None;
        }
        if f.outstanding.len() >= f.params.max_outstanding {
            f.outstanding.pop_front();
            self.stats.pings_lost += 1;
        }
        let id = f.next_id;
        f.next_id = f.next_id.wrapping_add(1);
        f.outstanding.push_back((id, now));
        f.burst_left = f.burst_left.saturating_sub(1);
        let gap = if f.burst_left > 0 {
            f.params.burst_interval
        } else {
            f.params.interval
        };
        f.next_ping_at = Some(now + gap);
        self.stats.pings_sent += 1;
        Some(ClockPing { id, origin: now })
    }

    /// Feeds the host's answer, received at local time `now` (`t4`).
    ///
    /// # Errors
    /// [`PongError`] when the pong does not match an outstanding ping or its
    /// timestamps are impossible; nothing changes then.
    pub fn handle_pong(
        &mut self,
        pong: ClockPong,
        now: LocalTime,
    ) -> Result<PongOutcome, PongError> {
        let r = self.accept_pong(pong, now);
        match r {
            Ok(o) => {
                self.stats.pongs_accepted += 1;
                self.stats.last_round_trip = Some(o.round_trip);
                if o.jumped {
                    self.stats.jumps += 1;
                }
            }
            Err(_) => self.stats.pongs_refused += 1,
        }
        r
    }

    fn accept_pong(&mut self, pong: ClockPong, t4: LocalTime) -> Result<PongOutcome, PongError> {
        let Mode::Follower(f) = &mut self.mode else {
            return Err(PongError::NotFollower);
        };
        let idx = f
            .outstanding
            .iter()
            .position(|&(id, _)| id == pong.id)
            .ok_or(PongError::UnknownPing(pong.id))?;
        let t1 = f.outstanding[idx].1;
        if t1 != pong.origin {
            return Err(PongError::OriginMismatch);
        }
        if pong.transmit < pong.receive {
            return Err(PongError::HostTimesReversed);
        }
        let hold = pong.transmit - pong.receive;
        let rtt = t4.since(t1) - hold;
        if rtt.is_negative() {
            return Err(PongError::NegativeRoundTrip);
        }
        if rtt > f.params.timeout {
            return Err(PongError::RoundTripTooLong(rtt));
        }
        f.outstanding.remove(idx);

        let sample = Sample {
            t1,
            t4,
            hi: pong.receive.as_micros().saturating_sub(t1.as_micros()),
            lo: pong.transmit.as_micros().saturating_sub(t4.as_micros()),
        };
        let before = f.est.estimate(t4);
        // Window: age, then count.
        while f
            .est
            .samples
            .front()
            .is_some_and(|s| t4.since(s.t4) > f.params.max_age)
        {
            f.est.samples.pop_front();
        }
        f.est.samples.push_back(sample);
        while f.est.samples.len() > f.params.window {
            f.est.samples.pop_front();
        }
        let slack = f.params.slack.as_micros() as f64;
        let mut dropped = false;
        while !f.est.solve(slack, f.params.max_drift_ppm) {
            // Only an inconsistent window can be empty; the newest sample
            // alone is always feasible because its round trip is >= 0.
            if f.est.samples.len() <= 1 {
                break;
            }
            f.est.samples.pop_front();
            dropped = true;
        }
        let after = f.est.estimate(t4);
        let stepped = match (before, after) {
            (Some(b), Some(a)) => {
                let step = (a.offset - b.offset).abs();
                step > f.params.jump_threshold && step > b.uncertainty
            }
            _ => false,
        };
        let jumped = dropped || stepped;
        if jumped {
            f.burst_left = f.params.burst_count;
            f.next_ping_at = None;
        }
        if f.est.samples.len() >= f.params.min_samples {
            f.ready = true;
        }
        Ok(PongOutcome {
            round_trip: rtt,
            jumped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host whose clock is `offset + local·(1 + drift)` relative to the
    /// follower, with fixed one-way delays.
    struct Link {
        offset_us: i64,
        drift_ppm: f64,
    }

    impl Link {
        fn room_at(&self, local: i64) -> RoomTime {
            RoomTime::from_micros(
                local + self.offset_us + (local as f64 * self.drift_ppm * 1e-6).round() as i64,
            )
        }

        /// Runs one exchange starting at local `t1` with the given delays.
        fn exchange(
            &self,
            clock: &mut ClockSync,
            t1: i64,
            up: i64,
            down: i64,
        ) -> Result<PongOutcome, PongError> {
            let ping = clock.poll_ping(LocalTime::from_micros(t1));
            let Some(ping) = ping else {
                return Err(PongError::UnknownPing(u32::MAX));
            };
            let t2 = self.room_at(t1 + up);
            let pong = answer_ping(ping, t2, t2);
            clock.handle_pong(pong, LocalTime::from_micros(t1 + up + down))
        }
    }

    fn true_offset(link: &Link, local: i64) -> i64 {
        link.room_at(local).as_micros() - local
    }

    #[test]
    fn max_round_trip_is_the_slowest_sample_in_the_window() {
        let link = Link {
            offset_us: 1_000,
            drift_ppm: 0.0,
        };
        let mut c = ClockSync::follower(&SyncConfig::default());
        assert_eq!(c.max_round_trip(), None);
        let mut t = 1_000_000;
        for (up, down) in [(2_000, 3_000), (9_000, 1_000), (1_000, 1_000)] {
            assert!(link.exchange(&mut c, t, up, down).is_ok());
            t += 100_000;
        }
        assert_eq!(c.max_round_trip(), Some(TimeDelta::from_millis(10)));
        assert_eq!(ClockSync::reference(TimeDelta::ZERO).max_round_trip(), None);
    }

    #[test]
    fn symmetric_delays_give_exact_offset() {
        let link = Link {
            offset_us: 4_321_000,
            drift_ppm: 0.0,
        };
        let mut c = ClockSync::follower(&SyncConfig::default());
        assert!(c.to_room_time(LocalTime::ZERO).is_none());
        let out = link.exchange(&mut c, 1_000_000, 30_000, 30_000);
        assert_eq!(out.map(|o| o.round_trip), Ok(TimeDelta::from_millis(60)));
        assert_eq!(c.stats().last_round_trip, Some(TimeDelta::from_millis(60)));
        let e = c.estimate(LocalTime::from_micros(1_060_000));
        let e = e.map(|e| (e.offset.as_micros(), e.uncertainty.as_micros()));
        // Interval [offset − 30 ms − slack, offset + 30 ms + slack].
        // Drift is unknown within ±1000 ppm over the 60 ms round trip: ±60 µs.
        assert!(e.is_some_and(|e| (e.0 - 4_321_000).abs() <= 60), "{e:?}");
        assert!(e.is_some_and(|e| (31_000..=31_200).contains(&e.1)), "{e:?}");
    }

    #[test]
    fn combines_fast_up_and_fast_down_from_different_samples() {
        let link = Link {
            offset_us: -2_000_000,
            drift_ppm: 0.0,
        };
        let mut c = ClockSync::follower(&SyncConfig::default());
        // Fast up, slow down; then slow up, fast down. Each alone is off by
        // ±20 ms; together they pin the offset.
        assert!(link.exchange(&mut c, 0, 5_000, 45_000).is_ok());
        assert!(link.exchange(&mut c, 100_000, 45_000, 5_000).is_ok());
        let e = c.estimate(LocalTime::from_micros(200_000));
        let Some(e) = e else {
            panic!("no estimate");
        };
        // Within the drift prior over the 0.1 s between the samples.
        assert!((e.offset.as_micros() - -2_000_000).abs() <= 250, "{e:?}");
        assert!(e.uncertainty <= TimeDelta::from_micros(6_300), "{e:?}");
    }

    #[test]
    fn tracks_drift_and_bounds_hold() {
        for drift in [-200.0, 0.0, 150.0, 200.0] {
            let link = Link {
                offset_us: 5_000_000,
                drift_ppm: drift,
            };
            let cfg = SyncConfig::default();
            let mut c = ClockSync::follower(&cfg);
            let mut rng = 0x1234_5678_u64;
            let mut t = 0_i64;
            for _ in 0..120 {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let up = 25_000 + (rng % 30_000) as i64;
                let down = 25_000 + ((rng >> 20) % 30_000) as i64;
                // Pings are due on their schedule; step until one is.
                while c.next_timeout().is_some_and(|n| n.as_micros() > t) {
                    t += 10_000;
                }
                let r = link.exchange(&mut c, t, up, down);
                assert!(matches!(r, Ok(PongOutcome { jumped: false, .. })), "{r:?}");
                t += up + down;
                let e = c.estimate(LocalTime::from_micros(t));
                let Some(e) = e else { panic!("no estimate") };
                let err = (e.offset.as_micros() - true_offset(&link, t)).abs();
                assert!(
                    err <= e.uncertainty.as_micros() + 1,
                    "bound violated: {err} > {e:?}"
                );
            }
            let e = c.estimate(LocalTime::from_micros(t));
            let Some(e) = e else { panic!("no estimate") };
            assert!((e.drift_ppm - drift).abs() < 30.0, "drift {drift}: {e:?}");
            let err = (e.offset.as_micros() - true_offset(&link, t)).abs();
            assert!(err < 2_000, "offset error {err} µs: {e:?}");
            // Extrapolating 10 s without samples keeps the error small.
            let later = t + 10_000_000;
            let e10 = c.estimate(LocalTime::from_micros(later));
            let Some(e10) = e10 else {
                panic!("no estimate")
            };
            let err10 = (e10.offset.as_micros() - true_offset(&link, later)).abs();
            assert!(err10 < 3_000, "10 s later: {err10} µs: {e10:?}");
            assert!(err10 <= e10.uncertainty.as_micros() + 1);
        }
    }

    #[test]
    fn clock_step_is_detected_and_recovered() {
        let mut link = Link {
            offset_us: 1_000_000,
            drift_ppm: 0.0,
        };
        let mut c = ClockSync::follower(&SyncConfig::default());
        let mut t = 0;
        for _ in 0..20 {
            while c.next_timeout().is_some_and(|n| n.as_micros() > t) {
                t += 10_000;
            }
            assert!(link.exchange(&mut c, t, 20_000, 20_000).is_ok());
            t += 40_000;
        }
        link.offset_us += 250_000;
        while c.next_timeout().is_some_and(|n| n.as_micros() > t) {
            t += 10_000;
        }
        let r = link.exchange(&mut c, t, 20_000, 20_000);
        assert!(matches!(r, Ok(PongOutcome { jumped: true, .. })), "{r:?}");
        assert_eq!(c.stats().jumps, 1);
        // A burst follows immediately.
        assert_eq!(c.next_timeout(), Some(LocalTime::MIN));
        let e = c.estimate(LocalTime::from_micros(t + 40_000));
        assert!(
            e.is_some_and(|e| (e.offset.as_micros() - 1_250_000).abs() <= 50),
            "{e:?}"
        );
    }

    #[test]
    fn bad_pongs_are_refused_without_effect() {
        let mut c = ClockSync::follower(&SyncConfig::default());
        let Some(ping) = c.poll_ping(LocalTime::from_micros(1_000)) else {
            panic!("burst starts immediately");
        };
        let room = RoomTime::from_micros(50_000);
        let unknown = ClockPong {
            id: ping.id + 7,
            ..answer_ping(ping, room, room)
        };
        let t4 = LocalTime::from_micros(2_000);
        assert_eq!(
            c.handle_pong(unknown, t4),
            Err(PongError::UnknownPing(ping.id + 7))
        );
        let forged = ClockPong {
            origin: LocalTime::from_micros(999),
            ..answer_ping(ping, room, room)
        };
        assert_eq!(c.handle_pong(forged, t4), Err(PongError::OriginMismatch));
        let reversed = ClockPong {
            transmit: RoomTime::from_micros(40_000),
            ..answer_ping(ping, room, room)
        };
        assert_eq!(
            c.handle_pong(reversed, t4),
            Err(PongError::HostTimesReversed)
        );
        let held = answer_ping(ping, room, room + TimeDelta::from_millis(5));
        assert_eq!(c.handle_pong(held, t4), Err(PongError::NegativeRoundTrip));
        let late = LocalTime::from_micros(1_000) + TimeDelta::from_secs(3);
        assert!(matches!(
            c.handle_pong(answer_ping(ping, room, room), late),
            Err(PongError::RoundTripTooLong(_))
        ));
        assert_eq!(c.sample_count(), 0);
        assert_eq!(c.stats().pongs_refused, 5);
        // The genuine pong is still accepted once; a duplicate is refused.
        assert!(c.handle_pong(answer_ping(ping, room, room), t4).is_ok());
        assert_eq!(
            c.handle_pong(answer_ping(ping, room, room), t4),
            Err(PongError::UnknownPing(ping.id))
        );
        assert_eq!(c.sample_count(), 1);
    }

    #[test]
    fn outstanding_pings_and_window_are_bounded() {
        let cfg = SyncConfig {
            max_outstanding_pings: 4,
            clock_window: 5,
            ..SyncConfig::default()
        };
        let mut c = ClockSync::follower(&cfg);
        let mut t = 0;
        let mut pings = Vec::new();
        for _ in 0..10 {
            if let Some(p) = c.poll_ping(LocalTime::from_micros(t)) {
                pings.push(p);
            }
            t += 50_000;
        }
        assert!(pings.len() >= 8);
        // Only the newest four are still answerable.
        let mut accepted = 0;
        for p in &pings {
            let room = RoomTime::from_micros(p.origin.as_micros() + 1_000);
            if c.handle_pong(answer_ping(*p, room, room), LocalTime::from_micros(t))
                .is_ok()
            {
                accepted += 1;
            }
        }
        assert_eq!(accepted, 4);
        assert!(c.stats().pings_lost >= 4);
        for _ in 0..20 {
            t += 1_000_000;
            if let Some(p) = c.poll_ping(LocalTime::from_micros(t)) {
                let room = RoomTime::from_micros(t + 10_000);
                let _ = c.handle_pong(
                    answer_ping(p, room, room),
                    LocalTime::from_micros(t + 20_000),
                );
            }
        }
        assert_eq!(c.sample_count(), 5);
    }

    #[test]
    fn schedule_bursts_then_settles() {
        let cfg = SyncConfig::default();
        let mut c = ClockSync::follower(&cfg);
        let mut sent = Vec::new();
        let mut t = 0;
        while t <= 5_000_000 {
            if let Some(p) = c.poll_ping(LocalTime::from_micros(t)) {
                sent.push(p.origin.as_micros());
            }
            t += 10_000;
        }
        // Eight pings 50 ms apart, then one per second.
        assert_eq!(
            &sent[..8],
            &[
                0, 50_000, 100_000, 150_000, 200_000, 250_000, 300_000, 350_000
            ]
        );
        assert_eq!(sent[8], 1_350_000);
        assert_eq!(sent.len(), 8 + 4);
    }

    #[test]
    fn reference_and_handoff() {
        let r = ClockSync::reference(TimeDelta::from_millis(5));
        assert!(r.is_ready());
        assert_eq!(r.next_timeout(), None);
        assert_eq!(
            r.to_room_time(LocalTime::from_micros(10)),
            Some(RoomTime::from_micros(5_010))
        );
        assert_eq!(
            r.to_local_time(RoomTime::from_micros(5_010)),
            Some(LocalTime::from_micros(10))
        );
        let link = Link {
            offset_us: 777_000,
            drift_ppm: 0.0,
        };
        let mut f = ClockSync::follower(&SyncConfig::default());
        assert!(link.exchange(&mut f, 0, 10_000, 10_000).is_ok());
        f.become_reference(LocalTime::from_micros(30_000));
        assert!(f.is_reference());
        let room = f.to_room_time(LocalTime::from_micros(30_000));
        assert!(
            room.is_some_and(|r| (r.as_micros() - 807_000).abs() <= 30),
            "{room:?}"
        );
    }
}
