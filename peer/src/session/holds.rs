//! Host, wait-for-everyone: what one member may cost the room.
//!
//! Each member has a **hold allowance**: [`HOLD_ALLOWANCE_WAITS`] times the
//! policy's wait timeout. While the room is held (paused) waiting for a
//! member, the time is taken from that member's allowance; while it is not
//! holding the room, the allowance refills at one second per
//! [`HOLD_REFILL_DIVISOR`] seconds, up to the full amount. A member whose
//! allowance runs out is no longer waited for ("laggards catch up" for that
//! member: the room plays on and it catches up by itself) until the
//! allowance is full again. One honest stall never uses more than one wait,
//! so it never empties the allowance; a member that stalls again and again
//! does. For any span `T`, the room is held for one member at most
//! `HOLD_ALLOWANCE_WAITS · wait + T / HOLD_REFILL_DIVISOR` (25 s in five
//! minutes with the default 10 s wait: 8.3 %), and not at all once the
//! allowance has run out until it is full again (20 minutes with the
//! default wait).

use std::collections::BTreeMap;

use crate::ids::UserId;
use crate::time::{LocalTime, TimeDelta};

/// A member's hold allowance is this many times the policy's wait timeout
/// (one full wait for a single stall, with room for a second one).
pub const HOLD_ALLOWANCE_WAITS: i64 = 2;

/// A member's hold allowance regains one second for every this many
/// seconds it is not holding the room (1 s per minute).
pub const HOLD_REFILL_DIVISOR: i64 = 60;

/// Most members whose partly used allowance is remembered (a full one is
/// the same as none and is forgotten). When the table is full, the entry
/// with the most allowance left is forgotten first (it counts as full).
/// Members that left stay in the table, so leaving and rejoining does not
/// refill an allowance.
pub const MAX_HOLD_RECORDS: usize = 64;

/// What the host is told when the room stops waiting for member `name`
/// ([`super::Event::NoLongerWaitedFor`]); both drivers show this.
#[must_use]
pub fn no_longer_waited_for_text(name: &str) -> String {
    format!(
        "{name}'s player kept stalling; the room no longer waits for {name} \
         ({name}'s video catches up on its own until it has played smoothly for a while)"
    )
}

/// One member's allowance.
#[derive(Debug, Clone, Copy)]
struct Allowance {
    /// What was left at `at` (refill accrues from `at` while not holding).
    left: TimeDelta,
    at: LocalTime,
    /// It ran out: not waited for until it is full again.
    spent: bool,
}

impl Allowance {
    fn left_at(&self, full: TimeDelta, now: LocalTime) -> TimeDelta {
        let refill = TimeDelta::from_micros(now.since(self.at).as_micros() / HOLD_REFILL_DIVISOR);
        (self.left + refill.max(TimeDelta::ZERO)).min(full)
    }
}

/// What the room's hold costs each member (host only).
#[derive(Debug, Default)]
pub(crate) struct HoldLedger {
    allowances: BTreeMap<UserId, Allowance>,
    /// The members the room is held for, since when (not yet charged).
    holding: Vec<UserId>,
    since: Option<LocalTime>,
}

/// The full allowance for a policy wait timeout.
pub(crate) fn full_allowance(wait: TimeDelta) -> TimeDelta {
    TimeDelta::from_micros(wait.as_micros().saturating_mul(HOLD_ALLOWANCE_WAITS))
}

impl HoldLedger {
    /// Allowance `user` has left at `now`.
    pub(crate) fn left(&self, user: UserId, full: TimeDelta, now: LocalTime) -> TimeDelta {
        let Some(a) = self.allowances.get(&user) else {
            return full;
        };
        if let (Some(since), true) = (self.since, self.holding.contains(&user)) {
            return (a.left_at(full, since) - now.since(since)).max(TimeDelta::ZERO);
        }
        a.left_at(full, now)
    }

    /// Whether the room waits for `user` at `now` (its allowance has not
    /// run out, or has been refilled since).
    pub(crate) fn waits_for(&self, user: UserId, full: TimeDelta, now: LocalTime) -> bool {
        self.allowances
            .get(&user)
            .is_none_or(|a| !a.spent || a.left_at(full, now) >= full)
    }

    /// Charges the members the room was held for since the last call with
    /// the time up to `now`; returns those whose allowance ran out (no
    /// longer waited for). Call before deciding who holds the room now,
    /// then [`HoldLedger::hold`].
    pub(crate) fn settle(&mut self, full: TimeDelta, now: LocalTime) -> Vec<UserId> {
        let mut spent = Vec::new();
        let holding = std::mem::take(&mut self.holding);
        if let Some(since) = self.since.take()
            && full > TimeDelta::ZERO
        {
            let held = now.since(since).max(TimeDelta::ZERO);
            for user in holding {
                let before = self
                    .allowances
                    .get(&user)
                    .map_or(full, |a| a.left_at(full, since));
                let left = before - held;
                let ran_out = left <= TimeDelta::ZERO;
                self.allowances.insert(
                    user,
                    Allowance {
                        left: left.max(TimeDelta::ZERO),
                        at: now,
                        spent: ran_out,
                    },
                );
                if ran_out {
                    spent.push(user);
                }
            }
        }
        // A full allowance is the same as none.
        self.allowances.retain(|_, a| a.left_at(full, now) < full);
        while self.allowances.len() > MAX_HOLD_RECORDS {
            let fullest = self
                .allowances
                .iter()
                .filter(|(_, a)| !a.spent)
                .max_by_key(|(_, a)| a.left_at(full, now))
                .or_else(|| {
                    self.allowances
                        .iter()
                        .max_by_key(|(_, a)| a.left_at(full, now))
                })
                .map(|(u, _)| *u);
            match fullest {
                Some(u) => self.allowances.remove(&u),
                None => break,
            };
        }
        spent
    }

    /// The room is held for `users` from `now` on (none: not held).
    pub(crate) fn hold(&mut self, users: Vec<UserId>, now: LocalTime) {
        self.since = (!users.is_empty()).then_some(now);
        self.holding = users;
    }

    /// When the first allowance of the members holding the room runs out.
    pub(crate) fn runs_out_at(&self, full: TimeDelta) -> Option<LocalTime> {
        let since = self.since?;
        if full <= TimeDelta::ZERO {
            return None;
        }
        self.holding
            .iter()
            .map(|u| {
                since
                    + self
                        .allowances
                        .get(u)
                        .map_or(full, |a| a.left_at(full, since))
            })
            .min()
    }

    /// Forgets everything (a new host term).
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const WAIT: TimeDelta = TimeDelta::from_secs(10);

    fn u(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    fn t(s: i64) -> LocalTime {
        LocalTime::from_micros(s * 1_000_000)
    }

    #[test]
    fn one_wait_leaves_allowance_two_run_it_out_then_it_refills() {
        let full = full_allowance(WAIT);
        let mut l = HoldLedger::default();
        l.hold(vec![u(1)], t(0));
        assert_eq!(l.runs_out_at(full), Some(t(20)));
        assert!(l.settle(full, t(10)).is_empty());
        l.hold(Vec::new(), t(10));
        assert_eq!(l.left(u(1), full, t(10)), TimeDelta::from_secs(10));
        assert!(l.waits_for(u(1), full, t(10)));
        // Not holding for 60 s: one second back.
        l.hold(vec![u(1)], t(70));
        assert_eq!(l.runs_out_at(full), Some(t(81)));
        assert_eq!(l.settle(full, t(81)), vec![u(1)]);
        l.hold(Vec::new(), t(81));
        assert!(!l.waits_for(u(1), full, t(81)));
        // Full again after 20 minutes without holding.
        assert!(!l.waits_for(u(1), full, t(81 + 1199)));
        assert!(l.waits_for(u(1), full, t(81 + 1200)));
        // Full entries are forgotten.
        assert!(l.settle(full, t(81 + 1200)).is_empty());
        assert!(l.allowances.is_empty());
    }

    #[test]
    fn the_table_is_bounded_and_keeps_the_emptiest() {
        let full = full_allowance(WAIT);
        let mut l = HoldLedger::default();
        // Member 1 runs out first; then more members than the table holds
        // each use a little.
        l.hold(vec![u(1)], t(0));
        assert_eq!(l.settle(full, t(20)), vec![u(1)]);
        let many: Vec<UserId> = (2..=MAX_HOLD_RECORDS as u64 + 5).map(u).collect();
        l.hold(many, t(20));
        assert!(l.settle(full, t(21)).is_empty());
        l.hold(Vec::new(), t(21));
        assert_eq!(l.allowances.len(), MAX_HOLD_RECORDS);
        assert!(!l.waits_for(u(1), full, t(21)), "the spent member is kept");
    }

    #[test]
    fn no_wait_timeout_charges_nothing() {
        let mut l = HoldLedger::default();
        l.hold(vec![u(1)], t(0));
        assert_eq!(l.runs_out_at(TimeDelta::ZERO), None);
        assert!(l.settle(TimeDelta::ZERO, t(100)).is_empty());
        assert!(l.waits_for(u(1), TimeDelta::ZERO, t(100)));
    }
}
