//! Host: the adaptive lead time (docs/protocol.md §9.3, *Adaptive lead
//! time*).
//!
//! A command takes effect at room time `now + lead`. The lead must cover the
//! slowest member's delivery (its round trip to the host, which every
//! follower measures with its clock pings) and, for a start from pause, the
//! slowest player's start-up latency (`Play` is issued that long before the
//! start). Members report both in a `Latency` frame; the host keeps the
//! latest report of each member and derives the lead from the members
//! present:
//!
//! * start from pause: `2 × max round trip + max start-up` (ours included);
//! * anything else (pause, seek, rate, load…): `2 × max round trip`;
//!
//! clamped to `lead_time_min ..= lead_time_max`. While any present member
//! has not reported (a member that just joined, or a peer that does not send
//! `Latency`), or with `adaptive_lead` off, the fixed `lead_time` is used.
//! State is one report per member, removed when the member leaves.

use std::collections::BTreeMap;

use crate::ids::UserId;
use crate::message::Latency;
use crate::sync_config::SyncConfig;
use crate::time::TimeDelta;

/// What a scheduled command must leave time for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeadFor {
    /// A start from pause: delivery, then every player's start-up.
    Start,
    /// Anything else (pause, seek, rate, load): delivery only.
    Delivery,
}

/// The members' latest latency reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct LeadTimes {
    reports: BTreeMap<UserId, Latency>,
}

impl LeadTimes {
    /// Keeps `user`'s latest report.
    pub(crate) fn record(&mut self, user: UserId, report: Latency) {
        self.reports.insert(user, report);
    }

    /// Forgets a member that left.
    pub(crate) fn forget(&mut self, user: UserId) {
        self.reports.remove(&user);
    }

    /// Forgets everything (a new host term).
    pub(crate) fn clear(&mut self) {
        self.reports.clear();
    }

    /// `user`'s latest report.
    pub(crate) fn report(&self, user: UserId) -> Option<Latency> {
        self.reports.get(&user).copied()
    }

    /// The lead for a command, given the members present (other than us)
    /// and our own player's start-up latency.
    pub(crate) fn lead(
        &self,
        cfg: &SyncConfig,
        present: impl IntoIterator<Item = UserId>,
        own_startup: TimeDelta,
        what: LeadFor,
    ) -> TimeDelta {
        if !cfg.adaptive_lead {
            return cfg.lead_time;
        }
        let mut round_trip = TimeDelta::ZERO;
        let mut startup = own_startup.max(TimeDelta::ZERO);
        for user in present {
            let Some(r) = self.reports.get(&user) else {
                return cfg.lead_time;
            };
            round_trip = round_trip.max(r.round_trip.as_delta());
            startup = startup.max(r.startup.as_delta());
        }
        let delivery = round_trip + round_trip;
        let lead = match what {
            LeadFor::Start => delivery + startup,
            LeadFor::Delivery => delivery,
        };
        lead.max(cfg.lead_time_min).min(cfg.lead_time_max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ReportedLatency;

    fn user(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    fn report(rtt_ms: i64, startup_ms: i64) -> Latency {
        Latency {
            round_trip: ReportedLatency::saturating_from(TimeDelta::from_millis(rtt_ms)),
            startup: ReportedLatency::saturating_from(TimeDelta::from_millis(startup_ms)),
        }
    }

    fn ms(n: i64) -> TimeDelta {
        TimeDelta::from_millis(n)
    }

    #[test]
    fn a_lan_room_reacts_within_the_minimum() {
        let cfg = SyncConfig::default();
        let mut l = LeadTimes::default();
        l.record(user(2), report(1, 5));
        l.record(user(3), report(2, 3));
        let present = [user(2), user(3)];
        assert_eq!(l.lead(&cfg, present, ms(4), LeadFor::Delivery), ms(30));
        // A start adds the slowest start-up: 2 × 2 + 5 = 9, still 30.
        assert_eq!(l.lead(&cfg, present, ms(4), LeadFor::Start), ms(30));
        // Our own slow player counts for a start.
        assert_eq!(l.lead(&cfg, present, ms(80), LeadFor::Start), ms(84));
    }

    #[test]
    fn the_slowest_member_sets_the_lead() {
        let cfg = SyncConfig::default();
        let mut l = LeadTimes::default();
        l.record(user(2), report(5, 90));
        l.record(user(3), report(120, 10));
        let present = [user(2), user(3)];
        assert_eq!(l.lead(&cfg, present, ms(1), LeadFor::Delivery), ms(240));
        assert_eq!(l.lead(&cfg, present, ms(1), LeadFor::Start), ms(330));
    }

    #[test]
    fn a_member_without_a_report_means_the_fixed_lead() {
        let cfg = SyncConfig::default();
        let mut l = LeadTimes::default();
        l.record(user(2), report(1, 1));
        let present = [user(2), user(3)];
        assert_eq!(l.lead(&cfg, present, ms(1), LeadFor::Delivery), ms(150));
        assert_eq!(l.lead(&cfg, [user(2)], ms(1), LeadFor::Delivery), ms(30));
        l.forget(user(2));
        assert_eq!(l.report(user(2)), None);
        assert_eq!(l.lead(&cfg, [user(2)], ms(1), LeadFor::Start), ms(150));
        // Alone in the room: only our own start-up.
        assert_eq!(l.lead(&cfg, [], ms(60), LeadFor::Start), ms(60));
    }

    #[test]
    fn the_lead_is_capped_and_can_be_turned_off() {
        let mut cfg = SyncConfig::default();
        let mut l = LeadTimes::default();
        // A member reporting the largest values delays commands by at most
        // lead_time_max.
        l.record(user(2), report(10_000, 10_000));
        assert_eq!(l.lead(&cfg, [user(2)], ms(1), LeadFor::Start), ms(1_000));
        cfg.adaptive_lead = false;
        assert_eq!(l.lead(&cfg, [user(2)], ms(1), LeadFor::Start), ms(150));
        l.clear();
        cfg.adaptive_lead = true;
        assert_eq!(l.lead(&cfg, [user(2)], ms(1), LeadFor::Start), ms(150));
    }
}
