//! Negotiation bookkeeping shared by the drivers: who offers to whom, the
//! glare rule, retries with backoff, candidates buffered before an offer,
//! and when a connection counts as open for the [`crate::session::Session`].
//!
//! Sans-I/O: the driver owns the WebRTC stack and the timers; [`Links`]
//! only decides. The rules (docs/protocol.md §8, server rule `joiner`):
//!
//! - On `hello` we offer to every online member we have no connection with;
//!   members who come online later offer to us ([`Links::on_hello`]).
//! - **Glare:** when an offer arrives while our own offer to the same peer is
//!   unanswered, the peer with the **lower user id ignores** the incoming
//!   offer and the higher one accepts it (dropping its own), so exactly one
//!   offer wins ([`Links::incoming_offer`]).
//! - A failed or closed connection is re-offered after a delay from
//!   [`Backoff::peer`] while the member is online; a connection that lost
//!   ICE is restarted by the lower id only (again, one side only).
//! - Remote candidates that arrive before the offer they belong to are kept,
//!   at most [`MAX_PENDING_CANDIDATES`] per peer (more are dropped and
//!   counted).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use crate::backoff::Backoff;
use crate::channels::{self, ChannelId};
use crate::ids::UserId;
use crate::signaling::IceCandidate;
use crate::time::{LocalTime, TimeDelta};

/// Remote ICE candidates buffered per peer before its offer arrives.
pub const MAX_PENDING_CANDIDATES: usize = 32;

/// What to do with an incoming offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OfferDecision {
    /// Accept it (replacing any unanswered offer of ours).
    Accept,
    /// Ignore it: our own offer wins the glare (our id is lower).
    Ignore,
}

/// What a due retry asks the driver to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Restart ICE on the existing connection (or, where the stack cannot,
    /// replace the connection with a fresh offer).
    RestartIce,
    /// Send a fresh offer on a new connection.
    Offer,
}

/// Negotiation state with one member.
#[derive(Debug, Clone)]
pub struct Link {
    online: bool,
    offer_pending: bool,
    open: BTreeSet<ChannelId>,
    notified: bool,
    backoff: Backoff,
    retry_at: Option<LocalTime>,
    retry: Retry,
    pending_candidates: VecDeque<IceCandidate>,
}

impl Link {
    fn new(seed: u64) -> Self {
        Self {
            online: false,
            offer_pending: false,
            open: BTreeSet::new(),
            notified: false,
            backoff: Backoff::peer(seed),
            retry_at: None,
            retry: Retry::Offer,
            pending_candidates: VecDeque::new(),
        }
    }

    /// Announced online by the server.
    #[must_use]
    pub fn online(&self) -> bool {
        self.online
    }

    /// We sent an offer that is not answered yet.
    #[must_use]
    pub fn offer_pending(&self) -> bool {
        self.offer_pending
    }

    /// Data channels open.
    #[must_use]
    pub fn channels_open(&self) -> usize {
        self.open.len()
    }

    /// All channels are open and the session was told.
    #[must_use]
    pub fn connected(&self) -> bool {
        self.notified
    }

    /// Failed attempts since the last success.
    #[must_use]
    pub fn attempts(&self) -> u32 {
        self.backoff.attempts()
    }

    /// When the next retry is due.
    #[must_use]
    pub fn retry_at(&self) -> Option<LocalTime> {
        self.retry_at
    }
}

/// Counters of [`Links`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Offers ignored by the glare rule.
    pub glare_ignored: u64,
    /// Remote candidates dropped because [`MAX_PENDING_CANDIDATES`] were
    /// already waiting.
    pub candidates_dropped: u64,
}

/// Negotiation state with every member. See the module docs.
#[derive(Debug, Clone)]
pub struct Links {
    me: Option<UserId>,
    seed: u64,
    links: BTreeMap<UserId, Link>,
    stats: LinkStats,
}

fn to_delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_duration(d)
}

impl Links {
    /// Empty; `seed` jitters the retry delays (a random seed in production).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self {
            me: None,
            seed,
            links: BTreeMap::new(),
            stats: LinkStats::default(),
        }
    }

    /// Our user id (from `hello`); needed by the glare and restart rules.
    pub fn set_me(&mut self, me: UserId) {
        self.me = Some(me);
    }

    /// Our user id.
    #[must_use]
    pub fn me(&self) -> Option<UserId> {
        self.me
    }

    /// Counters.
    #[must_use]
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// The state with `peer`, if any.
    #[must_use]
    pub fn get(&self, peer: UserId) -> Option<&Link> {
        self.links.get(&peer)
    }

    /// Every known member and its state, by user id.
    pub fn iter(&self) -> impl Iterator<Item = (UserId, &Link)> + '_ {
        self.links.iter().map(|(u, l)| (*u, l))
    }

    fn link(&mut self, peer: UserId) -> &mut Link {
        let seed = self.seed ^ peer.get();
        self.links.entry(peer).or_insert_with(|| Link::new(seed))
    }

    /// A `hello` (first or after a reconnect): `online` are the members the
    /// server lists as online (we are skipped), `connected` tells which
    /// peers already have a connection. Returns the peers to offer to now.
    pub fn on_hello(
        &mut self,
        online: impl IntoIterator<Item = UserId>,
        connected: impl Fn(UserId) -> bool,
    ) -> Vec<UserId> {
        for l in self.links.values_mut() {
            l.online = false;
        }
        let mut offer = Vec::new();
        for peer in online {
            if Some(peer) == self.me {
                continue;
            }
            self.link(peer).online = true;
            if !connected(peer) {
                offer.push(peer);
            }
        }
        offer
    }

    /// A member came online (`true`) or its roster entry says offline. It
    /// offers to us (rule `joiner`).
    pub fn member_joined(&mut self, peer: UserId, online: bool) {
        if Some(peer) != self.me {
            self.link(peer).online = online;
        }
    }

    /// A member went offline at the server; a live P2P connection stays,
    /// but no more retries.
    pub fn member_left(&mut self, peer: UserId) {
        if let Some(l) = self.links.get_mut(&peer) {
            l.online = false;
            l.retry_at = None;
        }
    }

    /// We sent an offer to `peer`.
    pub fn offer_sent(&mut self, peer: UserId) {
        self.link(peer).offer_pending = true;
    }

    /// An offer from `from` arrived: the glare rule.
    pub fn incoming_offer(&mut self, from: UserId) -> OfferDecision {
        let me = self.me;
        let l = self.link(from);
        if l.offer_pending && me.is_some_and(|m| m < from) {
            self.stats.glare_ignored = self.stats.glare_ignored.saturating_add(1);
            return OfferDecision::Ignore;
        }
        l.offer_pending = false;
        l.retry_at = None;
        OfferDecision::Accept
    }

    /// `peer` answered our offer.
    pub fn answered(&mut self, peer: UserId) {
        self.link(peer).offer_pending = false;
    }

    /// Keeps a candidate from `peer` that arrived before its connection.
    /// Returns `false` (and counts) when the buffer is full.
    pub fn buffer_candidate(&mut self, peer: UserId, candidate: IceCandidate) -> bool {
        let l = self.link(peer);
        if l.pending_candidates.len() >= MAX_PENDING_CANDIDATES {
            self.stats.candidates_dropped = self.stats.candidates_dropped.saturating_add(1);
            return false;
        }
        l.pending_candidates.push_back(candidate);
        true
    }

    /// The buffered candidates of `peer` (now that its connection exists).
    pub fn take_candidates(&mut self, peer: UserId) -> Vec<IceCandidate> {
        self.link(peer).pending_candidates.drain(..).collect()
    }

    /// Channel `ch` to `peer` opened. Returns `true` exactly once per
    /// connection, when every channel of [`channels::ALL`] is open: then
    /// tell the session ([`crate::session::Session::channel_open`]).
    pub fn channel_open(&mut self, peer: UserId, ch: ChannelId) -> bool {
        let l = self.link(peer);
        l.open.insert(ch);
        if l.open.len() >= channels::ALL.len() && !l.notified {
            l.notified = true;
            l.backoff.reset();
            l.retry_at = None;
            return true;
        }
        false
    }

    /// Channel `ch` to `peer` closed.
    pub fn channel_closed(&mut self, peer: UserId, ch: ChannelId) {
        self.link(peer).open.remove(&ch);
    }

    /// ICE lost `peer` (it may come back). The lower id schedules an ICE
    /// restart; returns whether we did.
    pub fn interrupted(&mut self, peer: UserId, now: LocalTime) -> bool {
        if self.me.is_some_and(|m| m < peer) {
            self.schedule(peer, now, Retry::RestartIce);
            return true;
        }
        false
    }

    /// ICE came back after [`Self::interrupted`].
    pub fn recovered(&mut self, peer: UserId) {
        let l = self.link(peer);
        l.retry_at = None;
        l.backoff.reset();
    }

    /// The connection to `peer` closed. `retry`: schedule a fresh offer
    /// (false when the close was our decision or the connection is being
    /// replaced). Returns whether the session had been told it was open
    /// (then call [`crate::session::Session::peer_disconnected`]).
    pub fn closed(&mut self, peer: UserId, now: LocalTime, retry: bool) -> bool {
        let l = self.link(peer);
        let was_open = l.notified;
        l.notified = false;
        l.open.clear();
        l.offer_pending = false;
        l.retry_at = None;
        if retry {
            self.schedule(peer, now, Retry::Offer);
        }
        was_open
    }

    /// Negotiation with `peer` failed locally (offer or answer refused):
    /// retry with a fresh offer later.
    pub fn failed(&mut self, peer: UserId, now: LocalTime) {
        let l = self.link(peer);
        l.offer_pending = false;
        self.schedule(peer, now, Retry::Offer);
    }

    /// Schedules a retry after the next backoff delay. Fresh offers are only
    /// scheduled while `peer` is online.
    pub fn schedule(&mut self, peer: UserId, now: LocalTime, retry: Retry) {
        let l = self.link(peer);
        if !l.online && retry == Retry::Offer {
            return;
        }
        let delay = to_delta(l.backoff.next_delay());
        l.retry_at = Some(now + delay);
        l.retry = retry;
    }

    /// The earliest due retry.
    #[must_use]
    pub fn next_retry(&self) -> Option<LocalTime> {
        self.links.values().filter_map(|l| l.retry_at).min()
    }

    /// The retries due at `now` (each returned once). A fresh offer is only
    /// returned while the member is online.
    pub fn due(&mut self, now: LocalTime) -> Vec<(UserId, Retry)> {
        let mut out = Vec::new();
        for (peer, l) in &mut self.links {
            if l.retry_at.is_some_and(|t| t <= now) {
                l.retry_at = None;
                if l.retry == Retry::RestartIce || l.online {
                    out.push((*peer, l.retry));
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signaling::Candidate;

    fn u(n: u64) -> UserId {
        UserId::new(n).unwrap()
    }

    fn t(ms: i64) -> LocalTime {
        LocalTime::from_micros(ms * 1000)
    }

    fn cand(i: usize) -> IceCandidate {
        IceCandidate {
            candidate: Candidate::new(format!("candidate:{i} 1 udp 1 192.0.2.1 {i} typ host"))
                .unwrap(),
            sdp_mid: None,
            sdp_m_line_index: Some(0),
        }
    }

    #[test]
    fn hello_offers_to_online_members_without_a_connection() {
        let mut l = Links::new(1);
        l.set_me(u(5));
        let offer = l.on_hello([u(5), u(2), u(9), u(3)], |p| p == u(3));
        assert_eq!(offer, vec![u(2), u(9)]);
        assert!(l.get(u(3)).unwrap().online());
        // A second hello marks members missing from it offline.
        let offer = l.on_hello([u(2)], |_| false);
        assert_eq!(offer, vec![u(2)]);
        assert!(!l.get(u(9)).unwrap().online());
    }

    #[test]
    fn glare_lower_id_ignores_higher_accepts() {
        let mut low = Links::new(1);
        low.set_me(u(2));
        let mut high = Links::new(1);
        high.set_me(u(7));
        low.offer_sent(u(7));
        high.offer_sent(u(2));
        assert_eq!(low.incoming_offer(u(7)), OfferDecision::Ignore);
        assert_eq!(high.incoming_offer(u(2)), OfferDecision::Accept);
        assert!(!high.get(u(2)).unwrap().offer_pending());
        assert!(low.get(u(7)).unwrap().offer_pending());
        assert_eq!(low.stats().glare_ignored, 1);
        // Without our own offer pending, every offer is accepted.
        let mut fresh = Links::new(1);
        fresh.set_me(u(2));
        assert_eq!(fresh.incoming_offer(u(7)), OfferDecision::Accept);
    }

    #[test]
    fn open_is_reported_once_when_all_channels_are_open() {
        let mut l = Links::new(1);
        l.set_me(u(1));
        let ids: Vec<_> = channels::ALL.iter().map(|c| c.id).collect();
        let (last, first) = ids.split_last().unwrap();
        for ch in first {
            assert!(!l.channel_open(u(2), *ch));
        }
        assert!(l.channel_open(u(2), *last));
        assert!(!l.channel_open(u(2), *last));
        assert!(l.get(u(2)).unwrap().connected());
        assert!(l.closed(u(2), t(0), false));
        assert!(!l.closed(u(2), t(0), false));
    }

    #[test]
    fn closed_connections_are_retried_with_backoff_while_online() {
        let mut l = Links::new(3);
        l.set_me(u(1));
        l.member_joined(u(2), true);
        l.closed(u(2), t(0), true);
        let at = l.next_retry().unwrap();
        assert!(at > t(0) && at <= t(500), "{at:?}");
        assert!(l.due(t(0)).is_empty());
        assert_eq!(l.due(at), vec![(u(2), Retry::Offer)]);
        assert!(l.due(at).is_empty(), "each retry is returned once");
        // The second delay is longer (doubling ceiling).
        l.failed(u(2), at);
        let second = l.next_retry().unwrap();
        assert!(second.since(at) > TimeDelta::from_millis(250));
        // Offline members are not re-offered.
        l.member_left(u(2));
        assert_eq!(l.next_retry(), None);
        l.closed(u(2), t(0), true);
        assert_eq!(l.next_retry(), None);
    }

    #[test]
    fn only_the_lower_id_restarts_ice() {
        let mut l = Links::new(3);
        l.set_me(u(4));
        assert!(l.interrupted(u(9), t(0)));
        assert!(!l.interrupted(u(2), t(0)));
        let at = l.next_retry().unwrap();
        assert_eq!(l.due(at), vec![(u(9), Retry::RestartIce)]);
        l.interrupted(u(9), t(0));
        l.recovered(u(9));
        assert_eq!(l.next_retry(), None);
    }

    #[test]
    fn candidate_buffer_is_bounded() {
        let mut l = Links::new(1);
        for i in 0..MAX_PENDING_CANDIDATES {
            assert!(l.buffer_candidate(u(2), cand(i)));
        }
        assert!(!l.buffer_candidate(u(2), cand(99)));
        assert_eq!(l.stats().candidates_dropped, 1);
        let got = l.take_candidates(u(2));
        assert_eq!(got.len(), MAX_PENDING_CANDIDATES);
        assert_eq!(got[0], cand(0));
        assert!(l.take_candidates(u(2)).is_empty());
    }
}
