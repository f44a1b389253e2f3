//! A deterministic, clock-driven player for tests, simulations, benchmarks and
//! the native CLI's `--player virtual`.
//!
//! It behaves like a real one where it matters for sync: play and seek take a
//! configurable start-up latency during which the position does not advance;
//! its media clock may run fast or slow (ppm) relative to the local clock it
//! is driven by; it can stall for buffering; reported positions carry
//! jitter; it stops at the end of the media. Everything is a function of the
//! `now` passed in and a seed, so runs are reproducible.

use std::collections::VecDeque;

use crate::player::{PlayerAction, PlayerEvent, PlayerObservation};
use crate::prng::SplitMix64;
use crate::time::{LocalTime, MediaPos, Rate, TimeDelta};

/// How a [`VirtualPlayer`] behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualPlayerConfig {
    /// From `Play` until the position advances.
    pub start_latency: TimeDelta,
    /// From `Seek` until the seek completes (and playback resumes).
    pub seek_latency: TimeDelta,
    /// Media clock error relative to the local clock, ppm (+ runs fast).
    pub drift_ppm: i32,
    /// Media length; `None` for endless.
    pub duration: Option<MediaPos>,
    /// Reported positions are off by a uniform error in ± this while playing.
    pub position_jitter: TimeDelta,
    /// Seed of the jitter stream.
    pub seed: u64,
}

impl Default for VirtualPlayerConfig {
    fn default() -> Self {
        Self {
            start_latency: TimeDelta::from_millis(50),
            seek_latency: TimeDelta::from_millis(150),
            drift_ppm: 0,
            duration: None,
            position_jitter: TimeDelta::ZERO,
            seed: 1,
        }
    }
}

/// Most queued events (bounded; older ones are dropped).
pub const MAX_QUEUED_EVENTS: usize = 32;

/// A deterministic virtual player. See the module docs.
#[derive(Debug, Clone)]
pub struct VirtualPlayer {
    cfg: VirtualPlayerConfig,
    paused: bool,
    ended: bool,
    rate: Rate,
    /// Position at `anchor_at`; advances from `max(anchor_at, frozen_until)`.
    anchor_pos: MediaPos,
    anchor_at: LocalTime,
    frozen_until: Option<LocalTime>,
    stalled_until: Option<LocalTime>,
    events: VecDeque<(LocalTime, PlayerEvent)>,
    rng: SplitMix64,
}

impl VirtualPlayer {
    /// A paused player at the start of the media.
    #[must_use]
    pub fn new(cfg: VirtualPlayerConfig, now: LocalTime) -> Self {
        let rng = SplitMix64::new(cfg.seed);
        Self {
            cfg,
            paused: true,
            ended: false,
            rate: Rate::NORMAL,
            anchor_pos: MediaPos::ZERO,
            anchor_at: now,
            frozen_until: None,
            stalled_until: None,
            events: VecDeque::new(),
            rng,
        }
    }

    fn advancing_from(&self) -> LocalTime {
        match self.frozen_until {
            Some(f) => f.max(self.anchor_at),
            None => self.anchor_at,
        }
    }

    /// The true position at `now` (what is on screen), without jitter.
    #[must_use]
    pub fn position(&self, now: LocalTime) -> MediaPos {
        if self.paused || self.ended {
            return self.anchor_pos;
        }
        let start = self.advancing_from();
        if now <= start {
            return self.anchor_pos;
        }
        let media = self.rate.advance(now - start);
        let drift = TimeDelta::from_micros(
            i64::try_from(
                i128::from(media.as_micros()) * i128::from(self.cfg.drift_ppm) / 1_000_000,
            )
            .unwrap_or(0),
        );
        let p = self.anchor_pos + media + drift;
        match self.cfg.duration {
            Some(d) => p.min(d),
            None => p,
        }
    }

    /// Whether the position is advancing at `now`.
    #[must_use]
    pub fn is_advancing(&self, now: LocalTime) -> bool {
        !self.paused && !self.ended && now > self.advancing_from()
    }

    /// The current rate.
    #[must_use]
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Paused (by command or at the end).
    #[must_use]
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    fn settle(&mut self, now: LocalTime) {
        self.update_end(now);
        self.anchor_pos = self.position(now);
        self.anchor_at = now;
        if self.frozen_until.is_some_and(|f| f <= now) {
            self.frozen_until = None;
        }
        if self.stalled_until.is_some_and(|f| f <= now) {
            self.stalled_until = None;
        }
    }

    fn push_event(&mut self, at: LocalTime, ev: PlayerEvent) {
        if self.events.len() >= MAX_QUEUED_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back((at, ev));
        self.events.make_contiguous().sort_by_key(|e| e.0);
    }

    fn freeze(&mut self, until: LocalTime) {
        self.frozen_until = Some(self.frozen_until.map_or(until, |f| f.max(until)));
    }

    fn update_end(&mut self, now: LocalTime) {
        let Some(d) = self.cfg.duration else { return };
        if self.ended || self.paused || self.position(now) < d {
            return;
        }
        // When exactly the end was reached, for the event time.
        let start = self.advancing_from();
        let remaining = d - self.anchor_pos;
        let scaled = self.rate.time_for(remaining);
        let at = (start + scaled).min(now);
        self.anchor_pos = d;
        self.anchor_at = at;
        self.ended = true;
        self.paused = true;
        self.push_event(at, PlayerEvent::Ended);
    }

    /// Applies an action (from the core, or a simulated user) at `now`.
    pub fn apply(&mut self, action: PlayerAction, now: LocalTime) {
        self.settle(now);
        match action {
            PlayerAction::Play => {
                if self.paused && !self.ended {
                    self.paused = false;
                    let start = now + self.cfg.start_latency;
                    self.freeze(start);
                    let at = self.frozen_until.unwrap_or(start);
                    self.push_event(at, PlayerEvent::Playing);
                }
            }
            PlayerAction::Pause => {
                self.paused = true;
                self.events.retain(|e| e.1 != PlayerEvent::Playing);
            }
            PlayerAction::Seek { position } => {
                let target = match self.cfg.duration {
                    Some(d) => position.min(d),
                    None => position,
                };
                self.anchor_pos = target;
                self.ended = false;
                let done = now + self.cfg.seek_latency;
                self.freeze(done);
                self.events.retain(|e| e.1 != PlayerEvent::Seeked);
                self.push_event(done, PlayerEvent::Seeked);
            }
            PlayerAction::SetRate { rate } => self.rate = rate,
        }
    }

    /// Simulates a buffering stall of `duration` starting at `now` (only
    /// while playing).
    pub fn stall(&mut self, now: LocalTime, duration: TimeDelta) {
        self.settle(now);
        if self.paused || self.ended {
            return;
        }
        let until = now + duration;
        self.freeze(until);
        self.stalled_until = Some(until);
        self.push_event(now, PlayerEvent::Waiting);
        self.push_event(until, PlayerEvent::Playing);
    }

    /// When the next event is due, if any.
    #[must_use]
    pub fn next_event_at(&self) -> Option<LocalTime> {
        self.events.front().map(|e| e.0)
    }

    fn reading(&mut self, now: LocalTime, event: Option<PlayerEvent>) -> PlayerObservation {
        self.update_end(now);
        let mut position = self.position(now);
        if self.is_advancing(now) && self.cfg.position_jitter > TimeDelta::ZERO {
            let j = self.cfg.position_jitter.as_micros();
            position = position + TimeDelta::from_micros(self.rng.range_i64(-j, j));
        }
        PlayerObservation {
            at: now,
            position,
            paused: self.paused,
            rate: self.rate,
            buffering: self.stalled_until.is_some_and(|s| now < s),
            ended: self.ended,
            event,
        }
    }

    /// The next due event as an observation, if one is due at `now`.
    pub fn poll_event(&mut self, now: LocalTime) -> Option<PlayerObservation> {
        self.update_end(now);
        if self.events.front().is_some_and(|e| e.0 <= now) {
            let (_, ev) = self.events.pop_front()?;
            Some(self.reading(now, Some(ev)))
        } else {
            None
        }
    }

    /// A periodic reading (no event) at `now`.
    pub fn observe(&mut self, now: LocalTime) -> PlayerObservation {
        self.reading(now, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(ms: i64) -> LocalTime {
        LocalTime::from_millis(ms)
    }

    fn p(ms: u64) -> MediaPos {
        MediaPos::from_millis(ms)
    }

    #[test]
    fn play_starts_after_latency_and_emits_playing() {
        let mut v = VirtualPlayer::new(VirtualPlayerConfig::default(), t(0));
        v.apply(PlayerAction::Play, t(1_000));
        assert_eq!(v.position(t(1_040)), p(0));
        assert_eq!(v.position(t(1_550)), p(500));
        assert_eq!(v.poll_event(t(1_049)), None);
        let ev = v.poll_event(t(1_050));
        assert_eq!(ev.and_then(|o| o.event), Some(PlayerEvent::Playing));
        assert!(!v.observe(t(1_100)).paused);
    }

    #[test]
    fn seek_freezes_then_resumes_from_target() {
        let mut v = VirtualPlayer::new(VirtualPlayerConfig::default(), t(0));
        v.apply(PlayerAction::Play, t(0));
        v.apply(
            PlayerAction::Seek {
                position: p(60_000),
            },
            t(1_000),
        );
        assert_eq!(v.observe(t(1_100)).position, p(60_000));
        assert_eq!(v.position(t(1_150)), p(60_000));
        assert_eq!(v.position(t(1_250)), p(60_100));
        let mut events = Vec::new();
        while let Some(o) = v.poll_event(t(1_200)) {
            events.push(o.event);
        }
        assert_eq!(
            events,
            [Some(PlayerEvent::Playing), Some(PlayerEvent::Seeked)]
        );
    }

    #[test]
    fn drift_rate_stall_and_end() {
        let cfg = VirtualPlayerConfig {
            start_latency: TimeDelta::ZERO,
            drift_ppm: 200,
            duration: Some(p(20_000)),
            ..VirtualPlayerConfig::default()
        };
        let mut v = VirtualPlayer::new(cfg, t(0));
        v.apply(PlayerAction::Play, t(0));
        assert_eq!(v.position(t(10_000)), MediaPos::from_micros(10_002_000));
        v.apply(
            PlayerAction::SetRate {
                rate: Rate::from_f64_clamped(0.5),
            },
            t(10_000),
        );
        assert_eq!(v.position(t(12_000)), MediaPos::from_micros(11_002_200));
        v.stall(t(12_000), TimeDelta::from_millis(3_000));
        let o = v.observe(t(13_000));
        assert!(o.buffering);
        assert_eq!(o.position, MediaPos::from_micros(11_002_200));
        assert!(!v.observe(t(15_000)).buffering);
        // Runs to its end and pauses there.
        let o = v.observe(t(100_000));
        assert!(o.ended && o.paused);
        assert_eq!(o.position, p(20_000));
        let mut saw_end = false;
        while let Some(ev) = v.poll_event(t(100_000)) {
            saw_end |= ev.event == Some(PlayerEvent::Ended);
        }
        assert!(saw_end);
    }

    #[test]
    fn queued_events_are_bounded() {
        let mut v = VirtualPlayer::new(VirtualPlayerConfig::default(), t(0));
        for i in 0..1_000 {
            v.apply(PlayerAction::Play, t(i));
            v.stall(t(i), TimeDelta::from_secs(10));
        }
        assert!(v.events.len() <= MAX_QUEUED_EVENTS);
    }

    #[test]
    fn jitter_is_bounded_and_deterministic() {
        let cfg = VirtualPlayerConfig {
            start_latency: TimeDelta::ZERO,
            position_jitter: TimeDelta::from_millis(3),
            ..VirtualPlayerConfig::default()
        };
        let mut a = VirtualPlayer::new(cfg.clone(), t(0));
        let mut b = VirtualPlayer::new(cfg, t(0));
        a.apply(PlayerAction::Play, t(0));
        b.apply(PlayerAction::Play, t(0));
        for i in 1..200 {
            let (oa, ob) = (a.observe(t(i * 10)), b.observe(t(i * 10)));
            assert_eq!(oa, ob);
            let err = (oa.position - a.position(t(i * 10))).abs();
            assert!(err <= TimeDelta::from_millis(3));
        }
    }
}
