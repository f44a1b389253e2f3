//! Per-neighbour observability: what arrived from each neighbour (accepted
//! frames, exact duplicates, drops by reason) and the public per-peer view
//! ([`PeerInfo`]) a driver shows in its `status`.
//!
//! Bounded: at most [`MAX_PEER_RECORDS`] neighbours are tracked. A record is
//! only created for a neighbour with open channels (the driver hands frames
//! only from those); when the table is full, the record of a neighbour that
//! is no longer linked is evicted first, and when every record belongs to a
//! linked neighbour the frame is counted in the session-wide counters only.

use std::collections::BTreeMap;

use crate::acceptance::{DropCounts, DropReason};
use crate::clock::OffsetEstimate;
use crate::ids::{DisplayName, Role, UserId};
use crate::message::Readiness;
use crate::time::{LocalTime, TimeDelta};

/// Most neighbours with per-peer counters (a room has at most 16 members;
/// the margin covers members who left and came back).
pub const MAX_PEER_RECORDS: usize = 64;

/// What arrived from one neighbour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerCounters {
    /// Frames accepted (direct or forwarded by this neighbour).
    pub accepted: u64,
    /// Exact copies of accepted frames, dropped silently.
    pub duplicates: u64,
    /// Frames rejected, by the first rule they failed.
    pub drops: DropCounts,
}

/// The host's view of a member's last `Status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemberReport {
    /// Player readiness.
    pub readiness: Readiness,
    /// The member left sync (free-watch).
    pub detached: bool,
    /// Reported position minus the room's position at the reported room
    /// time (positive = ahead). `None` without a room timeline, or when the
    /// report predates the latest host command (it was about an older
    /// state).
    pub position_error: Option<TimeDelta>,
    /// When the report arrived (local time).
    pub received: LocalTime,
}

/// One neighbour as this session sees it (see [`super::Session::peers`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerInfo {
    /// The neighbour.
    pub user: UserId,
    /// Data channels are open to it now.
    pub linked: bool,
    /// Follower, host row: the host's signed `Bind` verified on our
    /// connection to it (docs/protocol.md §7.1 *Binding*); always false on
    /// other rows (nobody can sign a binding for a member link).
    pub bound: bool,
    /// The host admitted it (docs/protocol.md §2.2): the host's latest
    /// `Roster` names it with the key of its certificate. Always true for
    /// the host itself; only meaningful where
    /// [`super::Session::admission_enforced`].
    pub admitted: bool,
    /// It is the current host.
    pub is_host: bool,
    /// Its role now (host-signed grants override the certificate's), while
    /// it is a current member.
    pub role: Option<Role>,
    /// Its display name (from its certificate), once known.
    pub name: Option<DisplayName>,
    /// What arrived from it.
    pub counters: PeerCounters,
    /// Follower, for the host's row: our estimate of the host's (room)
    /// clock relative to ours, with its hard error bound.
    pub clock: Option<OffsetEstimate>,
    /// Follower, for the host's row: round trip of the last clock exchange.
    pub clock_round_trip: Option<TimeDelta>,
    /// Host, for a member's row: its last `Status`.
    pub report: Option<MemberReport>,
    /// Host, for a current member's row: whether the room waits for it and
    /// its hold allowance.
    pub hold: Option<HoldView>,
    /// Host, for a member's row: its last `Latency` report (its largest
    /// round trip to us, its player's start-up latency).
    pub latency: Option<crate::message::Latency>,
}

/// Host: how far ahead commands are scheduled now (docs/protocol.md §9.3,
/// *Adaptive lead time*).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandLead {
    /// For a start from pause (delivery plus the slowest start-up).
    pub start: TimeDelta,
    /// For anything else (pause, seek, rate, load).
    pub delivery: TimeDelta,
}

/// Host: how the buffering policy treats one member (see
/// [`super::HOLD_ALLOWANCE_WAITS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldView {
    /// The room would wait for it if it buffered now (false: it kept
    /// stalling and catches up by itself; or the policy is
    /// laggards-catch-up).
    pub waited_for: bool,
    /// Hold allowance left.
    pub allowance: TimeDelta,
}

/// Per-neighbour counters, bounded by [`MAX_PEER_RECORDS`].
#[derive(Debug, Default)]
pub(crate) struct PeerRecords {
    map: BTreeMap<UserId, PeerCounters>,
    /// Frames not attributed to a neighbour because the table was full of
    /// linked neighbours.
    unattributed: u64,
}

impl PeerRecords {
    /// The record of `peer`, created if needed (see the module docs);
    /// `linked` tells whether a user currently has open channels.
    fn entry(
        &mut self,
        peer: UserId,
        linked: impl Fn(UserId) -> bool,
    ) -> Option<&mut PeerCounters> {
        if !self.map.contains_key(&peer) {
            if !linked(peer) {
                self.unattributed = self.unattributed.saturating_add(1);
                return None;
            }
            if self.map.len() >= MAX_PEER_RECORDS {
                let Some(evict) = self.map.keys().copied().find(|u| !linked(*u)) else {
                    self.unattributed = self.unattributed.saturating_add(1);
                    return None;
                };
                self.map.remove(&evict);
            }
        }
        Some(self.map.entry(peer).or_default())
    }

    pub(crate) fn accepted(&mut self, peer: UserId, linked: impl Fn(UserId) -> bool) {
        if let Some(c) = self.entry(peer, linked) {
            c.accepted = c.accepted.saturating_add(1);
        }
    }

    pub(crate) fn duplicate(&mut self, peer: UserId, linked: impl Fn(UserId) -> bool) {
        if let Some(c) = self.entry(peer, linked) {
            c.duplicates = c.duplicates.saturating_add(1);
        }
    }

    pub(crate) fn dropped(
        &mut self,
        peer: UserId,
        reason: DropReason,
        linked: impl Fn(UserId) -> bool,
    ) {
        if let Some(c) = self.entry(peer, linked) {
            c.drops.record(reason);
        }
    }

    pub(crate) fn get(&self, peer: UserId) -> Option<&PeerCounters> {
        self.map.get(&peer)
    }

    pub(crate) fn users(&self) -> impl Iterator<Item = UserId> + '_ {
        self.map.keys().copied()
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Frames that could not be attributed to a neighbour.
    pub(crate) fn unattributed(&self) -> u64 {
        self.unattributed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    #[test]
    fn counts_by_peer_and_reason() {
        let mut r = PeerRecords::default();
        let all = |_| true;
        r.accepted(u(2), all);
        r.dropped(u(2), DropReason::NotHost, all);
        r.dropped(u(2), DropReason::NotHost, all);
        r.duplicate(u(3), all);
        let c = r.get(u(2)).unwrap();
        assert_eq!((c.accepted, c.duplicates), (1, 0));
        assert_eq!(c.drops.get(DropReason::NotHost), 2);
        assert_eq!(r.get(u(3)).unwrap().duplicates, 1);
    }

    #[test]
    fn unlinked_newcomers_are_not_recorded() {
        let mut r = PeerRecords::default();
        r.accepted(u(9), |_| false);
        assert!(r.get(u(9)).is_none());
        assert_eq!(r.unattributed(), 1);
    }

    #[test]
    fn table_is_bounded_and_evicts_unlinked_first() {
        let mut r = PeerRecords::default();
        let max = MAX_PEER_RECORDS as u64;
        for n in 1..=max {
            r.accepted(u(n), |_| true);
        }
        assert_eq!(r.len(), MAX_PEER_RECORDS);
        // Full of linked peers: the newcomer is only counted globally.
        r.accepted(u(max + 1), |_| true);
        assert_eq!(r.len(), MAX_PEER_RECORDS);
        assert!(r.get(u(max + 1)).is_none());
        assert_eq!(r.unattributed(), 1);
        // Peer 5 is no longer linked: it makes room.
        r.accepted(u(max + 2), |p| p != u(5));
        assert_eq!(r.len(), MAX_PEER_RECORDS);
        assert!(r.get(u(5)).is_none());
        assert_eq!(r.get(u(max + 2)).unwrap().accepted, 1);
    }
}
