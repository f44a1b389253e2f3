//! Rate limits of member-signed messages: token buckets in virtual time.
//!
//! Each member has one bucket per limited kind (reactions, chat, requests).
//! A bucket holds at most `burst` tokens and gains one every `interval` of
//! the receiving peer's local time; a message takes one token. Everything is
//! integer arithmetic on [`LocalTime`], so the limits are exact and
//! deterministic in simulations.

use crate::message::Kind;
use crate::time::{LocalTime, TimeDelta};

/// A token bucket's parameters: up to `burst` messages at once, then one per
/// `interval` on average.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Most messages accepted back to back (bucket size). At least 1.
    pub burst: u32,
    /// Time to earn one more message. Positive.
    pub interval: TimeDelta,
}

impl RateLimit {
    /// Whether the parameters can ever admit a message.
    pub(crate) fn is_valid(&self) -> bool {
        self.burst >= 1 && self.interval > TimeDelta::ZERO
    }

    /// Tokens the sending session keeps in reserve: one when the burst
    /// allows it, so arrival jitter of up to one `interval` never pushes an
    /// honest sender over the receivers' limit.
    fn sender_reserve(&self) -> u32 {
        u32::from(self.burst > 1)
    }
}

/// Default limit on reactions per member: bursts of 8, then 4 per second.
pub const DEFAULT_REACTION_LIMIT: RateLimit = RateLimit {
    burst: 8,
    interval: TimeDelta::from_millis(250),
};

/// Default limit on chat messages per member: bursts of 5, then 1 per
/// second.
pub const DEFAULT_CHAT_LIMIT: RateLimit = RateLimit {
    burst: 5,
    interval: TimeDelta::from_secs(1),
};

/// Default limit on requests per member (checked by the host): bursts of
/// 10, then 5 per second.
pub const DEFAULT_REQUEST_LIMIT: RateLimit = RateLimit {
    burst: 10,
    interval: TimeDelta::from_millis(200),
};

/// Default limit on asks per member (a viewer's, or a controller's the
/// policy does not allow, held for the host's decision; docs/protocol.md
/// §4.2 *Asking the host*): bursts of 3, then one per 10 s. Asks reach a
/// person, so this is far below [`DEFAULT_REQUEST_LIMIT`]; the host checks
/// it on top of the request limit, and the asking session keeps one in
/// reserve (so it asks at most twice back to back).
pub const DEFAULT_ASK_LIMIT: RateLimit = RateLimit {
    burst: 3,
    interval: TimeDelta::from_secs(10),
};

/// A follower answers a member's own `Status` (sent to it directly, the
/// sign of a member without a channel to the host) with its latest signed
/// `State` at most once per this interval per member (docs/protocol.md
/// §7.1). The host's periodic `State` reaches every member through the mesh
/// anyway; the reply only speeds up a late join, so one per interval is
/// enough, and a `Status` flood can no longer draw a `State` for each frame.
pub const STATE_REPLY_INTERVAL: TimeDelta = TimeDelta::from_secs(5);

/// A member one of whose frames reached a follower through the host within
/// this time has a path to the host: the follower does not answer its
/// `Status` with a `State` (docs/protocol.md §7.1). Three status intervals,
/// so a lost or late `Status` does not flip it.
pub const HOST_PATH_MEMORY: TimeDelta = TimeDelta::from_secs(15);

/// The limits of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) reaction: RateLimit,
    pub(crate) chat: RateLimit,
    pub(crate) request: RateLimit,
    /// Requests held for the host's decision (a subset of requests).
    pub(crate) ask: RateLimit,
}

impl Limits {
    fn for_kind(&self, kind: Kind) -> Option<RateLimit> {
        match kind {
            Kind::Reaction => Some(self.reaction),
            Kind::Chat => Some(self.chat),
            Kind::Request => Some(self.request),
            _ => None,
        }
    }
}

/// One token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Bucket {
    tokens: u32,
    /// Refills are accounted up to this instant.
    at: LocalTime,
}

impl Bucket {
    fn full(limit: RateLimit, now: LocalTime) -> Self {
        Self {
            tokens: limit.burst,
            at: now,
        }
    }

    fn refill(&mut self, limit: RateLimit, now: LocalTime) {
        if self.tokens >= limit.burst {
            self.tokens = limit.burst;
            self.at = self.at.max(now);
            return;
        }
        let elapsed = now.since(self.at).as_micros();
        let step = limit.interval.as_micros();
        if elapsed <= 0 || step <= 0 {
            return;
        }
        let earned = elapsed / step;
        let room = i64::from(limit.burst - self.tokens);
        if earned >= room {
            self.tokens = limit.burst;
            self.at = now;
        } else {
            // earned < room ≤ u32::MAX, so both conversions are exact.
            self.tokens += u32::try_from(earned).unwrap_or(0);
            self.at += TimeDelta::from_micros(earned * step);
        }
    }

    /// Takes a token if more than `reserve` are available.
    fn try_take(&mut self, limit: RateLimit, now: LocalTime, reserve: u32) -> bool {
        self.refill(limit, now);
        if self.tokens > reserve {
            self.tokens -= 1;
            true
        } else {
            false
        }
    }
}

/// The buckets of one signer (a member, or ourselves as sender).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct MemberBuckets {
    reaction: Bucket,
    chat: Bucket,
    request: Bucket,
    ask: Bucket,
    /// Host: a `Refuse{RateLimited}` was sent since this member's last
    /// request within its limit (one refusal per over-limit streak).
    pub(crate) refused: bool,
    /// Host: the same for asks (one refusal per over-limit streak).
    pub(crate) ask_refused: bool,
    /// Follower: when we last answered this member's own `Status` with a
    /// `State`.
    state_reply_at: Option<LocalTime>,
    /// Follower: when a frame this member signed last reached us through
    /// the host (so it has a path to the host).
    via_host_at: Option<LocalTime>,
}

impl MemberBuckets {
    /// Full buckets at `now`.
    pub(crate) fn new(limits: &Limits, now: LocalTime) -> Self {
        Self {
            reaction: Bucket::full(limits.reaction, now),
            chat: Bucket::full(limits.chat, now),
            request: Bucket::full(limits.request, now),
            ask: Bucket::full(limits.ask, now),
            refused: false,
            ask_refused: false,
            state_reply_at: None,
            via_host_at: None,
        }
    }

    /// Follower: a frame this member signed reached us through the host.
    pub(crate) fn seen_via_host(&mut self, now: LocalTime) {
        self.via_host_at = Some(now);
    }

    /// Follower: whether to answer this member's own `Status` with our
    /// latest `State` (records the answer if so): only when it showed no
    /// path to the host within [`HOST_PATH_MEMORY`], and at most once per
    /// [`STATE_REPLY_INTERVAL`].
    pub(crate) fn answer_status(&mut self, now: LocalTime) -> bool {
        let recent =
            |t: Option<LocalTime>, within: TimeDelta| t.is_some_and(|t| now.since(t) < within);
        if recent(self.via_host_at, HOST_PATH_MEMORY)
            || recent(self.state_reply_at, STATE_REPLY_INTERVAL)
        {
            return false;
        }
        self.state_reply_at = Some(now);
        true
    }

    fn bucket(&mut self, kind: Kind) -> Option<&mut Bucket> {
        match kind {
            Kind::Reaction => Some(&mut self.reaction),
            Kind::Chat => Some(&mut self.chat),
            Kind::Request => Some(&mut self.request),
            _ => None,
        }
    }

    /// Receiving: whether a `kind` message from this member is within its
    /// limit (takes a token if so). Kinds without a limit always pass.
    pub(crate) fn admit(&mut self, limits: &Limits, kind: Kind, now: LocalTime) -> bool {
        match (limits.for_kind(kind), self.bucket(kind)) {
            (Some(l), Some(b)) => b.try_take(l, now, 0),
            _ => true,
        }
    }

    /// Receiving (host): whether an ask of this member is within the ask
    /// limit (takes a token if so).
    pub(crate) fn admit_ask(&mut self, limits: &Limits, now: LocalTime) -> bool {
        self.ask.try_take(limits.ask, now, 0)
    }

    /// Sending: whether we may ask the host now, keeping the sender's
    /// reserve (takes a token if so).
    pub(crate) fn admit_own_ask(&mut self, limits: &Limits, now: LocalTime) -> bool {
        self.ask
            .try_take(limits.ask, now, limits.ask.sender_reserve())
    }

    /// Sending: like [`MemberBuckets::admit`], but keeps the sender's
    /// reserve so receivers (which see the same messages with jitter) admit
    /// everything an honest sender sends.
    pub(crate) fn admit_own(&mut self, limits: &Limits, kind: Kind, now: LocalTime) -> bool {
        match (limits.for_kind(kind), self.bucket(kind)) {
            (Some(l), Some(b)) => b.try_take(l, now, l.sender_reserve()),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        reaction: RateLimit {
            burst: 3,
            interval: TimeDelta::from_millis(100),
        },
        chat: DEFAULT_CHAT_LIMIT,
        request: DEFAULT_REQUEST_LIMIT,
        ask: DEFAULT_ASK_LIMIT,
    };

    fn ms(v: i64) -> LocalTime {
        LocalTime::from_millis(v)
    }

    #[test]
    fn burst_then_one_per_interval() {
        let mut b = MemberBuckets::new(&LIMITS, ms(0));
        for _ in 0..3 {
            assert!(b.admit(&LIMITS, Kind::Reaction, ms(0)));
        }
        assert!(!b.admit(&LIMITS, Kind::Reaction, ms(0)), "burst spent");
        assert!(!b.admit(&LIMITS, Kind::Reaction, ms(99)), "not yet earned");
        assert!(b.admit(&LIMITS, Kind::Reaction, ms(100)));
        assert!(!b.admit(&LIMITS, Kind::Reaction, ms(150)));
        // Partial progress is kept: the next token is due at 200 ms.
        assert!(b.admit(&LIMITS, Kind::Reaction, ms(200)));
        // A long pause refills to the burst, never beyond.
        for _ in 0..3 {
            assert!(b.admit(&LIMITS, Kind::Reaction, ms(10_000)));
        }
        assert!(!b.admit(&LIMITS, Kind::Reaction, ms(10_000)));
        // Other kinds have their own buckets or none.
        assert!(b.admit(&LIMITS, Kind::Chat, ms(10_000)));
        for _ in 0..100 {
            assert!(b.admit(&LIMITS, Kind::Status, ms(10_000)));
        }
    }

    #[test]
    fn sender_keeps_one_token_in_reserve() {
        let mut b = MemberBuckets::new(&LIMITS, ms(0));
        assert!(b.admit_own(&LIMITS, Kind::Reaction, ms(0)));
        assert!(b.admit_own(&LIMITS, Kind::Reaction, ms(0)));
        assert!(!b.admit_own(&LIMITS, Kind::Reaction, ms(0)));
        let one = Limits {
            reaction: RateLimit {
                burst: 1,
                interval: TimeDelta::from_millis(100),
            },
            ..LIMITS
        };
        let mut b = MemberBuckets::new(&one, ms(0));
        assert!(
            b.admit_own(&one, Kind::Reaction, ms(0)),
            "burst 1: no reserve"
        );
        assert!(!b.admit_own(&one, Kind::Reaction, ms(50)));
    }

    #[test]
    fn status_answers_are_bounded_and_only_without_a_host_path() {
        let mut b = MemberBuckets::new(&LIMITS, ms(0));
        assert!(b.answer_status(ms(0)), "the first Status is answered");
        let interval = STATE_REPLY_INTERVAL.as_micros() / 1000;
        for t in [1, 1000, interval - 1] {
            assert!(!b.answer_status(ms(t)), "at {t} ms");
        }
        assert!(b.answer_status(ms(interval)), "one per interval");
        // A frame of this member came through the host: no answer while
        // that is recent, whatever the interval says.
        let seen = 3 * interval;
        b.seen_via_host(ms(seen));
        let memory = HOST_PATH_MEMORY.as_micros() / 1000;
        assert!(!b.answer_status(ms(seen)));
        assert!(!b.answer_status(ms(seen + memory - 1)));
        assert!(b.answer_status(ms(seen + memory)));
    }

    #[test]
    fn validity() {
        assert!(DEFAULT_REACTION_LIMIT.is_valid());
        assert!(DEFAULT_CHAT_LIMIT.is_valid());
        assert!(DEFAULT_REQUEST_LIMIT.is_valid());
        assert!(DEFAULT_ASK_LIMIT.is_valid());
        let zero_burst = RateLimit {
            burst: 0,
            interval: TimeDelta::from_millis(1),
        };
        assert!(!zero_burst.is_valid());
        let zero_interval = RateLimit {
            burst: 1,
            interval: TimeDelta::ZERO,
        };
        assert!(!zero_interval.is_valid());
    }
}
