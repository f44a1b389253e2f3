//! Simple alerting on the audit trail: a fixed-window counter per (rule,
//! actor or client address). When a counter reaches its rule's threshold the
//! server logs one structured warning (`audit alert`: the action, outcome,
//! the key — a user id, an attempted name's hash or an address — the count,
//! threshold and window; never a secret) and the alert is listed by
//! `GET /api/v1/admin/audit/alerts` until its window ends.
//!
//! Memory is bounded: at most [`MAX_ALERT_KEYS`] counters and
//! [`MAX_RAISED_ALERTS`] raised alerts; past either cap the least recently
//! touched entry is forgotten (the throttles' rule, [`crate::throttle`]).
//! Counters live in memory only and restart empty with the server.

use std::collections::hash_map::RandomState;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use utoipa::ToSchema;

use super::config::{AlertPer, AlertRule};
use super::{Actor, AuditAction, AuditOutcome, Entry};
use crate::throttle::{LruMap, touch};

/// Most (rule, key) counters tracked at once.
pub const MAX_ALERT_KEYS: usize = 10_000;
/// Most raised alerts remembered at once.
pub const MAX_RAISED_ALERTS: usize = 200;

#[derive(Debug, Clone, Copy)]
struct Window {
    start: Instant,
    start_unix: i64,
    count: u32,
}

/// A raised alert, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AlertView {
    /// The action counted.
    pub action: AuditAction,
    /// The outcome counted (all when absent).
    pub outcome: Option<AuditOutcome>,
    /// Counted per actor or per address.
    pub per: AlertPer,
    /// Whose records: `user <id>`, `name <hash>`, `operator`, `system`, or an address.
    pub key: String,
    /// Records in the window so far.
    pub count: u32,
    /// The rule's threshold.
    pub threshold: u32,
    /// The rule's window (seconds).
    pub window_secs: u64,
    /// When the window started (Unix seconds).
    pub window_started_at: i64,
    /// When the window ends (Unix seconds); the alert is listed until then.
    pub window_ends_at: i64,
}

type Key = (usize, String);

/// The counters and the raised alerts.
#[derive(Debug)]
pub struct AlertTracker {
    rules: Vec<AlertRule>,
    capacity: usize,
    counters: Mutex<LruMap<Key, Window>>,
    raised: Mutex<LruMap<Key, AlertView>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock only means another thread panicked mid-update of plain
    // counters; the map is still usable.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The key an entry counts under for `per`, if it has one.
fn key_of(entry: &Entry, per: AlertPer) -> Option<String> {
    match per {
        AlertPer::Ip => entry.client_ip.map(|ip| ip.to_string()),
        AlertPer::Actor => Some(match &entry.actor {
            Actor::User(id) => format!("user {id}"),
            Actor::Anonymous { name_hash: Some(h) } => format!("name {h}"),
            Actor::Anonymous { name_hash: None } => "anonymous".to_owned(),
            Actor::Operator => "operator".to_owned(),
            Actor::System => "system".to_owned(),
        }),
    }
}

impl AlertTracker {
    /// A tracker for `rules` with [`MAX_ALERT_KEYS`] counters.
    pub fn new(rules: Vec<AlertRule>) -> Self {
        Self::with_capacity(rules, MAX_ALERT_KEYS)
    }

    /// A tracker holding at most `capacity` counters.
    pub fn with_capacity(rules: Vec<AlertRule>, capacity: usize) -> Self {
        AlertTracker {
            rules,
            capacity,
            counters: Mutex::new(LruMap::with_hasher(RandomState::new())),
            raised: Mutex::new(LruMap::with_hasher(RandomState::new())),
        }
    }

    /// Counts `entry` against every rule it matches (`now` and `now_unix`
    /// are the same instant on the two clocks).
    pub fn observe(&self, entry: &Entry, now: Instant, now_unix: i64) {
        for (index, rule) in self.rules.iter().enumerate() {
            if rule.action != entry.action || rule.outcome.is_some_and(|o| o != entry.outcome) {
                continue;
            }
            let Some(key) = key_of(entry, rule.per) else {
                continue;
            };
            let window = Duration::from_secs(rule.window_secs);
            let key = (index, key);
            let count = {
                let mut counters = lock(&self.counters);
                let fresh = Window {
                    start: now,
                    start_unix: now_unix,
                    count: 0,
                };
                let w = touch(&mut counters, &key, self.capacity, fresh);
                if now.duration_since(w.start) >= window {
                    *w = fresh;
                }
                w.count = w.count.saturating_add(1);
                *w
            };
            if count.count < rule.threshold {
                continue;
            }
            let view = AlertView {
                action: rule.action,
                outcome: rule.outcome,
                per: rule.per,
                key: key.1.clone(),
                count: count.count,
                threshold: rule.threshold,
                window_secs: rule.window_secs,
                window_started_at: count.start_unix,
                window_ends_at: count
                    .start_unix
                    .saturating_add(i64::try_from(rule.window_secs).unwrap_or(i64::MAX)),
            };
            if count.count == rule.threshold {
                tracing::warn!(
                    action = rule.action.as_str(),
                    outcome = rule.outcome.map(AuditOutcome::as_str),
                    per = ?rule.per,
                    key = %view.key,
                    count = count.count,
                    threshold = rule.threshold,
                    window_secs = rule.window_secs,
                    "audit alert"
                );
            }
            let mut raised = lock(&self.raised);
            let slot = touch(&mut raised, &key, MAX_RAISED_ALERTS, view.clone());
            *slot = view;
        }
    }

    /// Alerts whose window has not ended at `now_unix`, newest first.
    pub fn active(&self, now_unix: i64) -> Vec<AlertView> {
        let mut raised = lock(&self.raised);
        raised.retain(|_, a| a.window_ends_at > now_unix);
        let mut out: Vec<AlertView> = raised.values().cloned().collect();
        out.sort_by_key(|a| std::cmp::Reverse(a.window_started_at));
        out
    }

    /// Counters tracked (tests).
    pub fn tracked(&self) -> usize {
        lock(&self.counters).len()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn failed_login(ip: &str) -> Entry {
        let mut e = Entry::new(
            Actor::Anonymous { name_hash: None },
            AuditAction::Login,
            AuditOutcome::Failure,
        );
        e.client_ip = Some(ip.parse::<IpAddr>().unwrap());
        e
    }

    fn rule(threshold: u32) -> AlertRule {
        AlertRule {
            action: AuditAction::Login,
            outcome: Some(AuditOutcome::Failure),
            per: AlertPer::Ip,
            window_secs: 60,
            threshold,
        }
    }

    #[test]
    fn the_threshold_raises_an_alert_until_the_window_ends() {
        let t = AlertTracker::new(vec![rule(3)]);
        let now = Instant::now();
        for _ in 0..2 {
            t.observe(&failed_login("192.0.2.1"), now, 1000);
        }
        // A success and another address do not count.
        let mut ok = failed_login("192.0.2.1");
        ok.outcome = AuditOutcome::Success;
        t.observe(&ok, now, 1000);
        t.observe(&failed_login("192.0.2.2"), now, 1000);
        assert!(t.active(1000).is_empty());
        t.observe(&failed_login("192.0.2.1"), now, 1001);
        let active = t.active(1001);
        assert_eq!(active.len(), 1);
        assert_eq!(active[0].key, "192.0.2.1");
        assert_eq!((active[0].count, active[0].window_ends_at), (3, 1060));
        t.observe(&failed_login("192.0.2.1"), now, 1002);
        assert_eq!(t.active(1002)[0].count, 4);
        assert!(t.active(1060).is_empty(), "gone when the window ends");
        // A new window starts from zero.
        let later = now + Duration::from_secs(61);
        t.observe(&failed_login("192.0.2.1"), later, 1061);
        assert!(t.active(1061).is_empty());
    }

    #[test]
    fn the_named_caps_hold() {
        let t = AlertTracker::new(vec![rule(1)]);
        let now = Instant::now();
        for i in 0..MAX_ALERT_KEYS + 50 {
            let ip = std::net::Ipv6Addr::from(u128::try_from(i).unwrap() + 1);
            let mut e = failed_login("192.0.2.1");
            e.client_ip = Some(IpAddr::V6(ip));
            t.observe(&e, now, 0);
        }
        assert_eq!(t.tracked(), MAX_ALERT_KEYS);
        assert_eq!(t.active(0).len(), MAX_RAISED_ALERTS);
    }

    #[test]
    fn counters_are_bounded() {
        let t = AlertTracker::with_capacity(vec![rule(2)], 4);
        let now = Instant::now();
        for i in 0..10 {
            t.observe(&failed_login(&format!("192.0.2.{i}")), now, 0);
        }
        assert_eq!(t.tracked(), 4);
        // Entries without an address are not counted per address.
        let mut e = failed_login("192.0.2.1");
        e.client_ip = None;
        t.observe(&e, now, 0);
        t.observe(&e, now, 0);
        assert!(t.active(0).is_empty());
    }
}
