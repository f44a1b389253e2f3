//! Drift correction: a filter for the player's noisy position readings and a
//! controller that turns the filtered error into gentle rate changes or, for
//! large errors only, a seek.
//!
//! # Controller
//!
//! The error `e` is the player's position minus the room's expected position
//! (positive: ahead). The player's rate is `room rate × (1 + trim + nudge)`:
//!
//! * **Nudge** (audible-range correction, bounded by `max_nudge_ppm`, ±5 %):
//!   only used once `|e|` leaves the dead zone (20 ms); then proportional,
//!   `|nudge| = clamp(|e| / catch_up_tau, min_nudge, max_nudge)`, changed
//!   at most `nudge_ramp_ppm_per_sec` per second (never a step), and ended
//!   (ramped back to zero) once `|e|` is below `settle_threshold` (3 ms) or
//!   changes sign — the gap between dead zone and settle threshold is the
//!   hysteresis that prevents oscillation.
//! * **Trim** (inaudible, at most `max_trim_ppm`, 0.2 %): a slow, quantized,
//!   rarely updated offset that cancels the clock drift measured by clock
//!   sync (feed-forward) and removes residual error inside the dead zone with
//!   time constant `trim_tau`. This is what keeps steady-state error near
//!   zero instead of anywhere inside the dead zone.
//! * **Seek**: when `|e| ≥ seek_threshold` (1 s), or when even the largest
//!   nudge would need longer than `max_catch_up` (20 s), or a correction has
//!   run that long without finishing; at most one per `seek_cooldown`.
//!
//! Integers throughout except the filter's least-squares fit (f64 on a dozen
//! points; results are rounded to µs).

use std::collections::VecDeque;

use crate::sync_config::SyncConfig;
use crate::time::{LocalTime, MediaPos, Rate, TimeDelta};

/// Readings closer together than this are not compared for "advancing"
/// (their jitter would dominate).
pub const MIN_ADVANCE_SPAN: TimeDelta = TimeDelta::from_millis(40);

/// The filtered position error.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FilteredError {
    /// Player position minus expected position at the evaluation time.
    pub error: TimeDelta,
    /// Rate at which the error grows, ppm of room time.
    pub slope_ppm: f64,
    /// Readings used.
    pub samples: usize,
}

/// Smooths the player's position readings: keeps the readings since the
/// last discontinuity while the player advances, and fits a line to their
/// errors so jitter averages out and a steady rate difference is followed
/// without lag.
#[derive(Debug, Clone)]
pub struct PositionFilter {
    samples: VecDeque<(LocalTime, MediaPos)>,
    window: usize,
    max_age: TimeDelta,
    min_samples: usize,
}

impl PositionFilter {
    /// A filter with the window of `config`.
    #[must_use]
    pub fn new(config: &SyncConfig) -> Self {
        Self {
            samples: VecDeque::new(),
            window: config.filter_window,
            max_age: config.filter_max_age,
            min_samples: config.filter_min_samples,
        }
    }

    /// Forgets all readings (after a seek, play/pause, buffering, a new
    /// room state).
    pub fn reset(&mut self) {
        self.samples.clear();
    }

    /// Readings held.
    #[must_use]
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// `true` when no reading is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Adds a reading of an advancing (playing, not buffering) player at
    /// `rate`. A reading that shows the player not advancing since the
    /// previous one (start-up, seek in progress) clears the window and is
    /// dropped, so the window starts at the first reading that advances.
    pub fn push(&mut self, at: LocalTime, position: MediaPos, rate: Rate) {
        if let Some(&(last_at, last_pos)) = self.samples.back() {
            if at <= last_at {
                return;
            }
            let span = at - last_at;
            if span >= MIN_ADVANCE_SPAN {
                let expected = rate.advance(span).as_micros();
                let moved = (position - last_pos).as_micros();
                if moved.saturating_mul(4) < expected {
                    // Stalled: restart from the next reading.
                    self.samples.clear();
                    self.samples.push_back((at, position));
                    return;
                }
            }
        }
        self.samples.push_back((at, position));
        while self.samples.len() > self.window {
            self.samples.pop_front();
        }
        while self
            .samples
            .front()
            .is_some_and(|&(t, _)| at.since(t) > self.max_age)
        {
            self.samples.pop_front();
        }
    }

    /// The error at `now`: `error_of(at, position)` gives each reading's error
    /// (µs) against the room timeline as known *now* (so clock estimate
    /// updates never create artificial trends). `None` until
    /// `filter_min_samples` readings exist or if any error is unknown.
    pub fn estimate(
        &self,
        now: LocalTime,
        mut error_of: impl FnMut(LocalTime, MediaPos) -> Option<TimeDelta>,
    ) -> Option<FilteredError> {
        if self.samples.len() < self.min_samples {
            return None;
        }
        let &(t_last, _) = self.samples.back()?;
        let mut pts = Vec::with_capacity(self.samples.len());
        for &(t, p) in &self.samples {
            let e = error_of(t, p)?;
            pts.push((t.since(t_last).as_secs_f64(), e.as_micros() as f64));
        }
        let n = pts.len() as f64;
        let mx = pts.iter().map(|p| p.0).sum::<f64>() / n;
        let my = pts.iter().map(|p| p.1).sum::<f64>() / n;
        let sxx: f64 = pts.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
        let sxy: f64 = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
        let slope = if sxx > 1e-9 { sxy / sxx } else { 0.0 };
        let ahead = now
            .since(t_last)
            .max(TimeDelta::ZERO)
            .min(TimeDelta::from_secs(1));
        let at_now = my + slope * (ahead.as_secs_f64() - mx);
        Some(FilteredError {
            error: TimeDelta::from_micros_f64(at_now),
            slope_ppm: slope,
            samples: pts.len(),
        })
    }
}

/// What the controller wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Correction {
    /// Nothing to change.
    Hold,
    /// Set the player's rate to room rate × (1 + ppm / 10⁶).
    RateOffset(i64),
    /// The error is too large for rate correction: seek.
    Seek,
}

#[derive(Debug, Clone, Copy)]
struct Episode {
    ahead: bool,
    since: LocalTime,
}

#[derive(Debug, Clone)]
struct Params {
    dead_zone: i64,
    settle: i64,
    max_nudge: i64,
    min_nudge: i64,
    ramp: i64,
    tau: i64,
    rate_step: i64,
    seek_threshold: i64,
    max_catch_up: TimeDelta,
    seek_cooldown: TimeDelta,
    max_trim: i64,
    trim_tau: i64,
    trim_step: i64,
    trim_interval: TimeDelta,
    trim_dead_zone: f64,
}

/// Time constant of the error average the trim follows (smooths jitter
/// that the short position filter leaves).
pub const TRIM_SMOOTHING: TimeDelta = TimeDelta::from_secs(2);

/// The correction controller (see the module docs).
#[derive(Debug, Clone)]
pub struct Corrector {
    p: Params,
    nudge: i64,
    trim: i64,
    applied: i64,
    episode: Option<Episode>,
    last_update: Option<LocalTime>,
    smoothed: Option<f64>,
    last_trim_change: Option<LocalTime>,
    last_seek: Option<LocalTime>,
}

impl Corrector {
    /// A controller with the thresholds of `config`.
    #[must_use]
    pub fn new(config: &SyncConfig) -> Self {
        Self {
            p: Params {
                dead_zone: config.dead_zone.as_micros(),
                settle: config.settle_threshold.as_micros(),
                max_nudge: i64::from(config.max_nudge_ppm),
                min_nudge: i64::from(config.min_nudge_ppm),
                ramp: i64::from(config.nudge_ramp_ppm_per_sec),
                tau: config.catch_up_tau.as_micros().max(1),
                rate_step: i64::from(config.rate_step_ppm),
                seek_threshold: config.seek_threshold.as_micros(),
                max_catch_up: config.max_catch_up,
                seek_cooldown: config.seek_cooldown,
                max_trim: i64::from(config.max_trim_ppm),
                trim_tau: config.trim_tau.as_micros().max(1),
                trim_step: i64::from(config.trim_step_ppm).max(1),
                trim_interval: config.trim_interval,
                trim_dead_zone: config.trim_dead_zone.as_micros() as f64,
            },
            nudge: 0,
            trim: 0,
            applied: 0,
            episode: None,
            last_update: None,
            smoothed: None,
            last_trim_change: None,
            last_seek: None,
        }
    }

    /// The rate offset last requested (trim + nudge), ppm.
    #[must_use]
    pub fn applied_ppm(&self) -> i64 {
        self.applied
    }

    /// The current nudge, ppm.
    #[must_use]
    pub fn nudge_ppm(&self) -> i64 {
        self.nudge
    }

    /// The current trim, ppm.
    #[must_use]
    pub fn trim_ppm(&self) -> i64 {
        self.trim
    }

    /// Whether a correction episode is running.
    #[must_use]
    pub fn correcting(&self) -> bool {
        self.episode.is_some()
    }

    /// Ends any episode and drops the nudge (after a seek or a new room
    /// state); the trim stays. Returns the offset to apply now.
    pub fn reset(&mut self) -> i64 {
        self.episode = None;
        self.nudge = 0;
        self.last_update = None;
        self.smoothed = None;
        self.applied = self.trim;
        self.applied
    }

    /// Starts a correction episode for `error` even inside the dead zone
    /// (above `settle_threshold`): the residual of a fresh start is not
    /// drift, so it is removed at once instead of by the slow trim. An
    /// episode already running is kept.
    pub fn start_episode(&mut self, now: LocalTime, error: TimeDelta) {
        let e = error.as_micros();
        if self.episode.is_none() && e.saturating_abs() > self.p.settle {
            self.episode = Some(Episode {
                ahead: e > 0,
                since: now,
            });
        }
    }

    /// Records that we seeked at `now` (starts the cooldown).
    pub fn seeked(&mut self, now: LocalTime) {
        self.last_seek = Some(now);
        self.reset();
    }

    fn seek_allowed(&self, now: LocalTime) -> bool {
        self.last_seek
            .is_none_or(|t| now.since(t) >= self.p.seek_cooldown)
    }

    /// One control step at `now` with the filtered `error`, the room `rate`
    /// and the measured clock drift (feed-forward, ppm; pass 0 when unknown).
    pub fn update(
        &mut self,
        now: LocalTime,
        error: TimeDelta,
        rate: Rate,
        drift_ppm: i64,
    ) -> Correction {
        let dt = self
            .last_update
            .map_or(0, |t| now.since(t).as_micros().clamp(0, 500_000));
        self.last_update = Some(now);
        let e = error.as_micros();
        let abs = e.saturating_abs();
        let ahead = e > 0;

        // Seek decisions.
        // Media µs per second the largest nudge recovers.
        let recover_per_sec =
            (i128::from(self.p.max_nudge) * i128::from(rate.as_millionths()) / 1_000_000).max(1);
        let catch_up_us = i128::from(abs) * 1_000_000 / recover_per_sec;
        let too_slow =
            abs > self.p.dead_zone && catch_up_us > i128::from(self.p.max_catch_up.as_micros());
        let overdue = self
            .episode
            .is_some_and(|ep| now.since(ep.since) > self.p.max_catch_up);
        if (abs >= self.p.seek_threshold || too_slow || overdue) && self.seek_allowed(now) {
            self.seeked(now);
            return Correction::Seek;
        }

        // Episode with hysteresis.
        match self.episode {
            Some(ep) if abs <= self.p.settle || ep.ahead != ahead => self.episode = None,
            None if abs > self.p.dead_zone => self.episode = Some(Episode { ahead, since: now }),
            _ => {}
        }

        // Nudge: proportional, bounded, ramped.
        let target = match self.episode {
            Some(_) => {
                let mag = (i128::from(abs) * 1_000_000 / i128::from(self.p.tau))
                    .clamp(i128::from(self.p.min_nudge), i128::from(self.p.max_nudge));
                // Clamped to max_nudge, so it fits.
                let mag = i64::try_from(mag).unwrap_or(self.p.max_nudge);
                if ahead { -mag } else { mag }
            }
            None => 0,
        };
        let step = (self.p.ramp.saturating_mul(dt) / 1_000_000).max(1);
        self.nudge += (target - self.nudge).clamp(-step, step);

        // Trim: slow, quantized, rare.
        let mut trim_changed = false;
        if self.episode.is_none() {
            let alpha = dt as f64 / (TRIM_SMOOTHING.as_micros() as f64 + dt as f64);
            let s = match self.smoothed {
                Some(s) => s + alpha * (e as f64 - s),
                None => e as f64,
            };
            self.smoothed = Some(s);
            let pull = if s.abs() < self.p.trim_dead_zone {
                0
            } else {
                (s * 1_000_000.0 / self.p.trim_tau as f64) as i64
            };
            let want = (drift_ppm - pull).clamp(-self.p.max_trim, self.p.max_trim);
            let quantized =
                (want as f64 / self.p.trim_step as f64).round() as i64 * self.p.trim_step;
            let due = self
                .last_trim_change
                .is_none_or(|t| now.since(t) >= self.p.trim_interval);
            if (want - self.trim).abs() >= self.p.trim_step && quantized != self.trim && due {
                self.trim = quantized.clamp(-self.p.max_trim, self.p.max_trim);
                self.last_trim_change = Some(now);
                trim_changed = true;
            }
        }

        // The bound holds for the sum too.
        let total = (self.trim + self.nudge).clamp(-self.p.max_nudge, self.p.max_nudge);
        let settled = self.nudge == 0 && total != self.applied;
        if trim_changed || settled || (total - self.applied).abs() >= self.p.rate_step {
            self.applied = total;
            Correction::RateOffset(total)
        } else {
            Correction::Hold
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> LocalTime {
        LocalTime::from_millis(ms)
    }

    /// Drives a corrector against an ideal player whose error changes by the
    /// rate offset applied; returns (final error µs, seeks, max |offset|,
    /// rate changes).
    fn run(start_error_ms: i64, secs: i64, cfg: &SyncConfig) -> (i64, u32, i64, u32) {
        let mut c = Corrector::new(cfg);
        let mut e = start_error_ms * 1_000;
        let mut offset = 0_i64;
        let (mut seeks, mut max_off, mut changes) = (0, 0, 0);
        for i in 0..secs * 10 {
            match c.update(t(i * 100), TimeDelta::from_micros(e), Rate::NORMAL, 0) {
                Correction::Hold => {}
                Correction::RateOffset(o) => {
                    offset = o;
                    changes += 1;
                }
                Correction::Seek => {
                    seeks += 1;
                    e = 0;
                    offset = c.applied_ppm();
                }
            }
            max_off = max_off.max(offset.abs());
            // 100 ms of playback at (1 + offset).
            e += offset * 100_000 / 1_000_000;
        }
        (e, seeks, max_off, changes)
    }

    #[test]
    fn small_errors_inside_dead_zone_use_only_trim() {
        let cfg = SyncConfig::default();
        let (e, seeks, max_off, _) = run(15, 60, &cfg);
        assert_eq!(seeks, 0);
        assert!(max_off <= i64::from(cfg.max_trim_ppm), "{max_off}");
        assert!(e.abs() < 3_000, "residual {e} µs");
    }

    #[test]
    fn three_hundred_ms_converges_gently_without_seek() {
        let cfg = SyncConfig::default();
        let (e, seeks, max_off, changes) = run(300, 30, &cfg);
        assert_eq!(seeks, 0);
        assert!(max_off <= i64::from(cfg.max_nudge_ppm));
        assert!(e.abs() <= 3_500, "residual {e} µs");
        assert!(changes < 80, "{changes} rate changes");
        let (e, seeks, _, _) = run(-300, 30, &cfg);
        assert_eq!(seeks, 0);
        assert!(e.abs() <= 3_500, "residual {e} µs");
    }

    #[test]
    fn large_error_seeks_once() {
        let cfg = SyncConfig::default();
        let (_, seeks, _, _) = run(3_000, 30, &cfg);
        assert_eq!(seeks, 1);
        // At half speed 900 ms cannot be recovered within max_catch_up.
        let mut c = Corrector::new(&cfg);
        let half = Rate::from_f64_clamped(0.5);
        assert_eq!(
            c.update(t(0), TimeDelta::from_millis(900), half, 0),
            Correction::Seek
        );
        // Cooldown: no second seek right away.
        assert_ne!(
            c.update(t(100), TimeDelta::from_millis(1_500), half, 0),
            Correction::Seek
        );
        assert_eq!(
            c.update(t(3_100), TimeDelta::from_millis(1_500), half, 0),
            Correction::Seek
        );
    }

    #[test]
    fn nudge_is_ramped_never_a_step() {
        let cfg = SyncConfig::default();
        let mut c = Corrector::new(&cfg);
        let mut prev = 0;
        for i in 0..50 {
            c.update(t(i * 100), TimeDelta::from_millis(400), Rate::NORMAL, 0);
            let n = c.nudge_ppm();
            assert!((n - prev).abs() <= i64::from(cfg.nudge_ramp_ppm_per_sec) / 10 + 1);
            assert!(n.abs() <= i64::from(cfg.max_nudge_ppm));
            prev = n;
        }
        assert_eq!(prev, -i64::from(cfg.max_nudge_ppm));
    }

    #[test]
    fn drift_is_cancelled_by_trim_feed_forward() {
        let cfg = SyncConfig::default();
        let mut c = Corrector::new(&cfg);
        let mut out = None;
        for i in 0..20 {
            if let Correction::RateOffset(o) =
                c.update(t(i * 100), TimeDelta::ZERO, Rate::NORMAL, 180)
            {
                out = Some(o);
            }
        }
        assert_eq!(out, Some(200));
        assert!(!c.correcting());
    }

    #[test]
    fn filter_fits_through_jitter_and_restarts_after_stall() {
        let cfg = SyncConfig::default();
        let mut f = PositionFilter::new(&cfg);
        let mut rng = crate::prng::SplitMix64::new(9);
        // Player 12 ms ahead, ±4 ms jitter.
        for i in 0..12 {
            let at = t(1_000 + i * 100);
            let truth = 1_000_000 + i * 100_000 + 12_000;
            f.push(
                at,
                MediaPos::from_micros(truth + rng.range_i64(-4_000, 4_000)),
                Rate::NORMAL,
            );
        }
        let est = f.estimate(t(2_100), |at, p| {
            Some(p - MediaPos::from_micros(at.as_micros()))
        });
        let Some(est) = est else {
            panic!("no estimate")
        };
        assert!((est.error.as_micros() - 12_000).abs() < 3_000, "{est:?}");
        // A frozen reading (seek in progress) restarts the window.
        f.push(t(2_300), MediaPos::from_micros(2_112_000), Rate::NORMAL);
        assert_eq!(f.len(), 1);
        assert!(f.estimate(t(2_300), |_, _| Some(TimeDelta::ZERO)).is_none());
    }
}
