//! Exponential backoff with jitter, for the signaling reconnect loop and for
//! re-offering to a peer whose connection failed (native and browser
//! drivers; sans-I/O: the caller supplies the seed and applies the delay).
//!
//! Attempt `n` (0-based) waits a uniformly random time in
//! `[base·2ⁿ·(1 − JITTER), base·2ⁿ]`, capped at `max` ("equal jitter" towards
//! the low side, so a crowd of clients that lost the server at the same
//! instant does not come back in lock-step). [`Backoff::reset`] after a
//! success starts again at `base`.

use std::time::Duration;

use crate::prng::SplitMix64;

/// First delay of the signaling reconnect loop.
pub const SIGNAL_BACKOFF_BASE: Duration = Duration::from_millis(250);
/// Longest delay of the signaling reconnect loop.
pub const SIGNAL_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// First delay before re-offering to a peer whose connection failed.
pub const PEER_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// Longest delay before re-offering to a peer.
pub const PEER_BACKOFF_MAX: Duration = Duration::from_secs(20);
/// Fraction of each delay that is randomised (taken off the top), in percent.
pub const JITTER_PERCENT: u64 = 50;

/// An exponential backoff schedule with jitter. See the module docs.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: SplitMix64,
}

impl Backoff {
    /// A schedule from `base` doubling up to `max`, jittered by `seed`'s
    /// random stream (use a random seed in production, a fixed one in tests).
    #[must_use]
    pub fn new(base: Duration, max: Duration, seed: u64) -> Self {
        Self {
            base,
            max: max.max(base),
            attempt: 0,
            rng: SplitMix64::new(seed),
        }
    }

    /// The signaling reconnect schedule.
    #[must_use]
    pub fn signaling(seed: u64) -> Self {
        Self::new(SIGNAL_BACKOFF_BASE, SIGNAL_BACKOFF_MAX, seed)
    }

    /// The peer re-offer schedule.
    #[must_use]
    pub fn peer(seed: u64) -> Self {
        Self::new(PEER_BACKOFF_BASE, PEER_BACKOFF_MAX, seed)
    }

    /// Failed attempts since the last reset.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// The upper bound of the next delay (before jitter).
    #[must_use]
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt; advances the schedule.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let top = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        let spread = top / 100 * JITTER_PERCENT;
        let lo = i64::try_from(top - spread).unwrap_or(i64::MAX);
        let hi = i64::try_from(top).unwrap_or(i64::MAX);
        let us = self.rng.range_i64(lo, hi);
        Duration::from_micros(u64::try_from(us).unwrap_or(0))
    }

    /// After a success: the next delay is `base` again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_within_the_jitter_band() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2), 7);
        let ceilings = [100, 200, 400, 800, 1600, 2000, 2000, 2000];
        for ms in ceilings {
            let top = Duration::from_millis(ms);
            assert_eq!(b.ceiling(), top);
            let d = b.next_delay();
            assert!(d <= top, "{d:?} > {top:?}");
            assert!(d >= top / 2, "{d:?} < half of {top:?}");
        }
        assert_eq!(b.attempts(), 8);
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_clients_apart() {
        // Ten clients with different seeds, same attempt: not all equal.
        let delays: Vec<Duration> = (0..10)
            .map(|seed| Backoff::signaling(seed).next_delay())
            .collect();
        let first = delays[0];
        assert!(delays.iter().any(|d| *d != first), "{delays:?}");
        // Same seed: same schedule (reproducible tests).
        let a: Vec<_> = {
            let mut b = Backoff::peer(3);
            (0..5).map(|_| b.next_delay()).collect()
        };
        let c: Vec<_> = {
            let mut b = Backoff::peer(3);
            (0..5).map(|_| b.next_delay()).collect()
        };
        assert_eq!(a, c);
    }

    #[test]
    fn huge_attempt_counts_saturate_at_the_cap() {
        let mut b = Backoff::signaling(1);
        for _ in 0..1000 {
            let d = b.next_delay();
            assert!(d <= SIGNAL_BACKOFF_MAX);
        }
        assert_eq!(b.ceiling(), SIGNAL_BACKOFF_MAX);
    }
}
