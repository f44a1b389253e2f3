//! Token buckets: the per-connection message rate, and the relay budget of
//! one sender in bytes (in total and towards each receiver).

use std::collections::HashMap;

use tokio::time::Instant;

/// `burst` tokens, refilled at `per_sec` tokens per second; one message = one token.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(burst: u32, per_sec: u32, now: Instant) -> Self {
        TokenBucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec: f64::from(per_sec),
            last: now,
        }
    }

    /// Takes one token if available.
    pub fn take(&mut self, now: Instant) -> bool {
        self.take_n(1, now)
    }

    /// Takes `n` tokens if that many are available (else takes none).
    pub fn take_n(&mut self, n: usize, now: Instant) -> bool {
        if !self.has(n, now) {
            return false;
        }
        self.tokens -= n as f64;
        true
    }

    /// Whether `n` tokens are available (refilling up to `now` first).
    pub fn has(&mut self, n: usize, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + dt * self.per_sec).min(self.burst);
        self.tokens >= n as f64
    }

    /// Whether the bucket is full (forgetting it loses nothing).
    fn is_full(&mut self, now: Instant) -> bool {
        self.has(0, now) && self.tokens >= self.burst
    }
}

/// Most receivers whose pair budget one sender's [`RelayBudget`] tracks: four
/// full rooms' worth ([`MAX_ROSTER`](watchparty_peer::signaling::MAX_ROSTER)
/// members each). Past it, refilled (full) budgets are forgotten first, then
/// any; the sender's own budget still bounds what it can relay.
pub const RELAY_PAIRS_TRACKED: usize = 4 * watchparty_peer::signaling::MAX_ROSTER;

/// Which budget a relay would overdraw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overdrawn {
    /// The sender's total (`relay_bytes_*`).
    Sender,
    /// The sender's budget towards this receiver (`relay_pair_bytes_*`).
    Pair,
}

/// The bytes one sender may relay: a bucket for all its relays and one per
/// receiver, so a sender flooding one member is cut off long before the
/// member's queue fills (issue #22: four members flooding a fifth got *its*
/// socket closed).
#[derive(Debug)]
pub struct RelayBudget {
    sender: TokenBucket,
    pairs: HashMap<i64, TokenBucket>,
    pair_burst: u32,
    pair_per_sec: u32,
}

impl RelayBudget {
    /// Full budgets: `sender` = (burst, bytes per second), `pair` likewise.
    pub fn new(sender: (u32, u32), pair: (u32, u32), now: Instant) -> Self {
        RelayBudget {
            sender: TokenBucket::new(sender.0, sender.1, now),
            pairs: HashMap::new(),
            pair_burst: pair.0,
            pair_per_sec: pair.1,
        }
    }

    /// Charges `bytes` relayed to `to` against both budgets, or neither when
    /// either is short.
    pub fn take(&mut self, to: i64, bytes: usize, now: Instant) -> Result<(), Overdrawn> {
        if !self.pairs.contains_key(&to) && self.pairs.len() >= RELAY_PAIRS_TRACKED {
            self.pairs.retain(|_, b| !b.is_full(now));
            if self.pairs.len() >= RELAY_PAIRS_TRACKED
                && let Some(any) = self.pairs.keys().next().copied()
            {
                self.pairs.remove(&any);
            }
        }
        let (burst, rate) = (self.pair_burst, self.pair_per_sec);
        let pair = self
            .pairs
            .entry(to)
            .or_insert_with(|| TokenBucket::new(burst, rate, now));
        if !pair.has(bytes, now) {
            return Err(Overdrawn::Pair);
        }
        if !self.sender.take_n(bytes, now) {
            return Err(Overdrawn::Sender);
        }
        pair.take_n(bytes, now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn burst_then_refill() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(3, 2, t0);
        assert!(b.take(t0) && b.take(t0) && b.take(t0));
        assert!(!b.take(t0));
        assert!(b.take(t0 + Duration::from_millis(500)));
        assert!(!b.take(t0 + Duration::from_millis(500)));
        // Never more than the burst, however long the pause.
        let later = t0 + Duration::from_secs(3600);
        assert!((0..3).all(|_| b.take(later)));
        assert!(!b.take(later));
    }

    #[test]
    fn relay_budget_per_pair_and_per_sender() {
        let t0 = Instant::now();
        let mut b = RelayBudget::new((300, 100), (200, 50), t0);
        // One receiver gets at most the pair burst...
        assert_eq!(b.take(1, 150, t0), Ok(()));
        assert_eq!(b.take(1, 100, t0), Err(Overdrawn::Pair));
        // ...others share what is left of the sender's burst.
        assert_eq!(b.take(2, 150, t0), Ok(()));
        assert_eq!(b.take(3, 1, t0), Err(Overdrawn::Sender));
        // A refused relay charges nothing: after 1 s the sender has 100 again.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!(b.take(3, 100, t1), Ok(()));
        // The tracked receivers stay bounded.
        let later = t0 + Duration::from_secs(3600);
        for to in 0..(RELAY_PAIRS_TRACKED as i64 * 3) {
            let _ = b.take(to, 1, later);
            assert!(b.pairs.len() <= RELAY_PAIRS_TRACKED);
        }
    }
}
