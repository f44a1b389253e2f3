//! In-memory brute-force throttles and rate limiters with bounded memory.
//!
//! - [`FailureThrottle`]: exponential back-off keyed by account, room, or
//!   (room, IP): after `free_failures` consecutive failures, the key is locked
//!   for `base × 2^(extra failures − 1)`, capped at `max_lock`. A success resets it.
//! - [`RateLimiter`]: a token bucket per key (per-IP request limits).
//!
//! Both hold at most `capacity` keys and never refuse a key because the table
//! is full: a new key evicts the least recently used one (the key whose last
//! failure or request is oldest), in constant time, so a full table costs a
//! request no more than an empty one. Filling a table therefore only makes
//! the server forget old state — at worst an attacker's own — and never locks
//! out a newcomer (issue #22: a full table used to refuse every new key).
//! Keys are hashed with the standard library's keyed SipHash, so chosen keys
//! cannot collide on purpose. Time is passed in (`now`) so tests can drive it.

use std::collections::hash_map::RandomState;
use std::hash::Hash;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use hashlink::LinkedHashMap;
use hashlink::linked_hash_map::Entry;

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
/// Per-IPv6-prefix limit on authentication endpoints (on top of the
/// per-address one; the prefix length is `auth_ipv6_prefix_len`): burst.
/// One subscriber's /64 holds more addresses than any table, so the prefix is
/// what an attacker cannot multiply.
pub const AUTH_PREFIX_BURST: u32 = 60;
/// Per-IPv6-prefix limit on authentication endpoints: refill interval.
pub const AUTH_PREFIX_REFILL: Duration = Duration::from_secs(1);
/// Default length in bits of the IPv6 prefix the per-prefix limit keys on.
pub const DEFAULT_IPV6_PREFIX_LEN: u8 = 64;
/// Allowed range of `auth_ipv6_prefix_len`.
pub const IPV6_PREFIX_LEN_RANGE: std::ops::RangeInclusive<u8> = 32..=128;
/// Per-user limit on room creation: burst.
pub const ROOM_CREATE_BURST: u32 = 10;
/// Per-user limit on room creation: refill interval.
pub const ROOM_CREATE_REFILL: Duration = Duration::from_secs(30);
/// Most keys any one throttle or limiter tracks; past it the least recently
/// used key is forgotten (never a refusal).
pub const THROTTLE_CAPACITY: usize = 10_000;

/// The network `ip` counts against for per-prefix limits: an IPv6 address
/// cut to its first `len` bits (clamped to 0..=128). `None` for IPv4, where one
/// address is the unit (IPv4-mapped IPv6 addresses arrive already unmapped,
/// see [`crate::client_ip`]).
pub fn ipv6_prefix(ip: IpAddr, len: u8) -> Option<Ipv6Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let len = u32::from(len.min(128));
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    Some(Ipv6Addr::from(u128::from(v6) & mask))
}

/// A map that remembers the order in which keys were last touched.
pub(crate) type LruMap<K, V> = LinkedHashMap<K, V, RandomState>;

/// Makes room for `key` and returns its entry, moved to the most recently
/// used end: a known key keeps its value; a new one starts as `fresh`, first
/// evicting the least recently used key when `capacity` keys are tracked.
pub(crate) fn touch<'m, K: Eq + Hash + Clone, V>(
    map: &'m mut LruMap<K, V>,
    key: &K,
    capacity: usize,
    fresh: V,
) -> &'m mut V {
    if !map.contains_key(key) {
        while map.len() >= capacity.max(1) {
            map.pop_front();
        }
    }
    match map.entry(key.clone()) {
        Entry::Occupied(mut known) => {
            known.to_back();
            known.into_mut()
        }
        Entry::Vacant(new) => new.insert(fresh),
    }
}

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
    entries: Mutex<LruMap<K, FailureState>>,
}

impl<K: Eq + Hash + Clone> FailureThrottle<K> {
    /// A throttle with the given policy.
    pub fn new(free_failures: u32, base: Duration, max_lock: Duration, capacity: usize) -> Self {
        FailureThrottle {
            free_failures,
            base,
            max_lock,
            capacity,
            entries: Mutex::new(LruMap::with_hasher(RandomState::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LruMap<K, FailureState>> {
        // A poisoned lock only means another thread panicked mid-update of plain
        // counters; the map is still usable.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err` if `key` is currently locked. A key the table does not hold (never
    /// failed, or forgotten to make room) is free.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        match self.lock().get(key) {
            Some(FailureState {
                locked_until: Some(until),
                ..
            }) if *until > now => Err(RetryAfter(*until - now)),
            _ => Ok(()),
        }
    }

    /// Records a failure for `key`; when the table is full, a new key makes
    /// room by forgetting the key whose last failure is oldest.
    pub fn fail(&self, key: &K, now: Instant) {
        let mut map = self.lock();
        let fresh = FailureState {
            failures: 0,
            locked_until: None,
            last: now,
        };
        let state = touch(&mut map, key, self.capacity, fresh);
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
    buckets: Mutex<LruMap<K, Bucket>>,
}

impl<K: Eq + Hash + Clone> RateLimiter<K> {
    /// `burst` requests at once, then one per `refill`.
    pub fn new(burst: u32, refill: Duration, capacity: usize) -> Self {
        RateLimiter {
            burst: burst.max(1),
            refill,
            capacity,
            buckets: Mutex::new(LruMap::with_hasher(RandomState::new())),
        }
    }

    /// Takes one token for `key`, or says how long to wait. When the table is
    /// full, a new key makes room by forgetting the least recently seen key.
    pub fn hit(&self, key: &K, now: Instant) -> Result<(), RetryAfter> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let burst = f64::from(self.burst);
        let refill = self.refill.as_secs_f64().max(f64::MIN_POSITIVE);
        let fresh = Bucket {
            tokens: burst,
            last: now,
        };
        let bucket = touch(&mut map, key, self.capacity, fresh);
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
    fn full_failure_table_forgets_the_oldest_and_never_refuses() {
        let t = FailureThrottle::new(
            0,
            Duration::from_secs(60),
            Duration::from_secs(60),
            THROTTLE_CAPACITY,
        );
        let now = Instant::now();
        // Past the bound: every key locked at once.
        for i in 0..THROTTLE_CAPACITY + 500 {
            t.fail(&i, now);
        }
        assert_eq!(t.len(), THROTTLE_CAPACITY);
        assert!(t.check(&usize::MAX, now).is_ok(), "a new key is free");
        assert!(t.check(&0, now).is_ok(), "the oldest keys were forgotten");
        assert!(t.check(&(THROTTLE_CAPACITY + 499), now).is_err());
        // A key that keeps failing stays remembered while others come and go.
        t.fail(&500, now);
        for i in 0..THROTTLE_CAPACITY - 1 {
            t.fail(&(1_000_000 + i), now);
        }
        assert!(t.check(&500, now).is_err());
        t.purge(now + Duration::from_secs(120));
        assert!(t.is_empty());
    }

    #[test]
    fn full_rate_table_forgets_the_oldest_and_never_refuses() {
        let r = RateLimiter::new(1, Duration::from_secs(60), THROTTLE_CAPACITY);
        let now = Instant::now();
        for i in 0..THROTTLE_CAPACITY + 500 {
            assert!(r.hit(&i, now).is_ok());
        }
        assert_eq!(r.len(), THROTTLE_CAPACITY);
        assert!(r.hit(&usize::MAX, now).is_ok(), "a newcomer gets its burst");
        assert!(r.hit(&usize::MAX, now).is_err(), "and is limited after it");
    }

    #[test]
    fn ipv6_prefixes() {
        let v6: IpAddr = "2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap();
        assert_eq!(
            ipv6_prefix(v6, DEFAULT_IPV6_PREFIX_LEN),
            Some("2001:db8:1:2::".parse().unwrap())
        );
        assert_eq!(ipv6_prefix(v6, 48), Some("2001:db8:1::".parse().unwrap()));
        assert_eq!(
            ipv6_prefix(v6, 128),
            Some("2001:db8:1:2:aaaa:bbbb:cccc:dddd".parse().unwrap())
        );
        assert_eq!(ipv6_prefix(v6, 0), Some(Ipv6Addr::UNSPECIFIED));
        assert_eq!(ipv6_prefix("192.0.2.1".parse().unwrap(), 64), None);
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
        assert!(r.hit(&3, t0).is_ok(), "capacity 2 reached: 1 is forgotten");
        assert_eq!(r.len(), 2);
    }
}
