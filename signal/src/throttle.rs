//! In-memory brute-force throttles and rate limiters with bounded memory.
//!
//! - [`FailureThrottle`]: exponential back-off keyed by account, room, or
//!   (room, IP): after `free_failures` consecutive failures, the key is locked
//!   for `base × 2^(extra failures − 1)`, capped at `max_lock`. A success resets it.
//! - [`RateLimiter`]: a token bucket per key (per-IP request limits).
//!
//! Both hold at most `capacity` keys. When full, idle entries are purged; if
//! still full, new keys are refused (fail closed) rather than growing memory.
//! Time is passed in (`now`) so tests can drive it.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Per-account login throttle: failures allowed before back-off starts.
pub const LOGIN_FREE_FAILURES: u32 = 3;
/// Per-account login throttle: first lock duration (doubles each further failure).
pub const LOGIN_BASE_LOCK: Duration = Duration::from_secs(1);
/// Per-account login throttle: longest lock.
pub const LOGIN_MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Room password throttle per room: failures allowed before back-off.
pub const ROOM_FREE_FAILURES: u32 = 10;
/// Room password throttle per (room, IP): failures allowed before back-off.
pub const ROOM_IP_FREE_FAILURES: u32 = 5;
/// Room password throttles: first lock duration.
pub const ROOM_BASE_LOCK: Duration = Duration::from_secs(1);
/// Room password throttles: longest lock.
pub const ROOM_MAX_LOCK: Duration = Duration::from_secs(15 * 60);
/// Per-IP limit on authentication endpoints (login, register, refresh): burst.
pub const AUTH_IP_BURST: u32 = 20;
/// Per-IP limit on authentication endpoints: one token refilled every this long.
pub const AUTH_IP_REFILL: Duration = Duration::from_secs(3);
/// Per-user limit on room creation: burst.
pub const ROOM_CREATE_BURST: u32 = 10;
/// Per-user limit on room creation: refill interval.
pub const ROOM_CREATE_REFILL: Duration = Duration::from_secs(30);
/// Most keys any one throttle or limiter tracks.
pub const THROTTLE_CAPACITY: usize = 10_000;

/// Returned when an action must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up, at least 1.
    pub fn secs(&self) -> u64 {
        let s = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        s.max(1)
    }
}

#[derive(Debug, Clone, Copy)]
struct FailureState {
    failures: u32,
    locked_until: Option<Instant>,
    last: Instant,
}

/// Exponential back-off after repeated failures.
#[derive(Debug)]
pub struct FailureThrottle<K> {
    free_failures: u32,
    base: Duration,
    max_lock: Duration,
    capacity: usize,
    entries: Mutex<HashMap<K, FailureState>>,
}

impl<K: Eq + Hash + Clone> FailureThrottle<K> {
    /// A throttle with the given policy.
    pub fn new(free_failures: u32, base: Duration, max_lock: Duration, capacity: usize) -> Self {
        FailureThrottle {
            free_failures,
            base,
            max_lock,
            capacity,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, FailureState>> {
        // A poisoned lock only means another thread panicked mid-update of plain
        // counters; the map is still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err` if `key` is currently locked (or the table is full of active keys).
    pub fn check(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        let map = self.lock();
        match map.get(key) {
            Some(FailureState {
                locked_until: Some(until),
                ..
            }) if *until > now => Err(RetryAfter(*until - now)),
            Some(_) => Ok(()),
            None if map.len() >= self.capacity => Err(RetryAfter(self.base)),
            None => Ok(()),
        }
    }

    /// Records a failure for `key`.
    pub fn fail(&self, key: &K, now: Instant) {
        let mut map = self.lock();
        if !map.contains_key(key) && map.len() >= self.capacity {
            let horizon = self.max_lock;
            map.retain(|_, s| {
                s.locked_until.is_some_and(|u| u > now) || now.duration_since(s.last) < horizon
            });
            if map.len() >= self.capacity {
                return;
            }
        }
        let state = map.entry(key.clone()).or_insert(FailureState {
            failures: 0,
            locked_until: None,
            last: now,
        });
        // Failures long after the last one start a fresh count.
        if now.duration_since(state.last) >= self.max_lock
            && state.locked_until.is_none_or(|u| u <= now)
        {
            state.failures = 0;
        }
        state.failures = state.failures.saturating_add(1);
        state.last = now;
        if state.failures > self.free_failures {
            let exp = (state.failures - self.free_failures - 1).min(30);
            let lock = self.base.saturating_mul(1u32 << exp).min(self.max_lock);
            state.locked_until = Some(now + lock);
        }
    }

    /// Clears `key` after a success.
    pub fn succeed(&self, key: &K) {
        self.lock().remove(key);
    }

    /// Number of tracked keys.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops entries idle for longer than the longest lock.
    pub fn purge(&self, now: Instant) {
        let horizon = self.max_lock;
        self.lock().retain(|_, s| {
            s.locked_until.is_some_and(|u| u > now) || now.duration_since(s.last) < horizon
        });
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token-bucket limiter per key.
#[derive(Debug)]
pub struct RateLimiter<K> {
    burst: u32,
    refill: Duration,
    capacity: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `burst` requests at once, then one per `refill`.
    pub fn new(burst: u32, refill: Duration, capacity: usize) -> Self {
        RateLimiter {
            burst: burst.max(1),
            refill,
            capacity,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`, or says how long to wait.
    pub fn hit(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let burst = f64::from(self.burst);
        let refill = self.refill.as_secs_f64().max(f64::MIN_POSITIVE);
        if !map.contains_key(key) && map.len() >= self.capacity {
            // Drop buckets that have refilled completely: they carry no state.
            let full_after = self.refill.saturating_mul(self.burst);
            map.retain(|_, b| now.duration_since(b.last) < full_after);
            if map.len() >= self.capacity {
                return Err(RetryAfter(self.refill));
            }
        }
        let bucket = map.entry(key.clone()).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let elapsed = now.duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed / refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) * refill;
            Err(RetryAfter(Duration::from_secs_f64(wait)))
        }
    }

    /// Number of tracked keys.
    pub fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_resets() {
        let t = FailureThrottle::new(2, Duration::from_secs(1), Duration::from_secs(8), 100);
        let t0 = Instant::now();
        let k = "alice".to_string();
        t.fail(&k, t0);
        t.fail(&k, t0);
        assert!(t.check(&k, t0).is_ok(), "free failures do not lock");
        t.fail(&k, t0);
        assert_eq!(t.check(&k, t0), Err(RetryAfter(Duration::from_secs(1))));
        assert!(t.check(&k, t0 + Duration::from_secs(1)).is_ok());
        t.fail(&k, t0 + Duration::from_secs(1));
        assert_eq!(
            t.check(&k, t0 + Duration::from_secs(1)),
            Err(RetryAfter(Duration::from_secs(2)))
        );
        for i in 0..10 {
            t.fail(&k, t0 + Duration::from_secs(2 + i));
        }
        let now = t0 + Duration::from_secs(11);
        assert_eq!(
            t.check(&k, now),
            Err(RetryAfter(Duration::from_secs(8))),
            "capped"
        );
        t.succeed(&k);
        assert!(t.check(&k, now).is_ok());
        assert!(
            t.check(&"bob".to_string(), now).is_ok(),
            "keys are independent"
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let t = FailureThrottle::new(0, Duration::from_secs(60), Duration::from_secs(60), 3);
        let now = Instant::now();
        for i in 0..10 {
            t.fail(&i, now);
        }
        assert_eq!(t.len(), 3);
        assert!(t.check(&99, now).is_err(), "full table fails closed");
        t.purge(now + Duration::from_secs(120));
        assert!(t.is_empty());
    }

    #[test]
    fn token_bucket() {
        let r = RateLimiter::new(3, Duration::from_secs(2), 2);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(r.hit(&1, t0).is_ok());
        }
        let err = r.hit(&1, t0).unwrap_err();
        assert_eq!(err.secs(), 2);
        assert!(r.hit(&1, t0 + Duration::from_secs(2)).is_ok());
        assert!(r.hit(&2, t0).is_ok());
        assert!(r.hit(&3, t0).is_err(), "capacity 2 reached");
        assert!(
            r.hit(&3, t0 + Duration::from_secs(60)).is_ok(),
            "stale buckets purged"
        );
    }
}
