//! Pure building blocks of the acceptance rules: drop reasons with counters,
//! the per-signer replay window, and the issued-at skew bound.
//!
//! The session applies the rules in the order of `docs/protocol.md` §6; this
//! module holds the parts that need no session state. The replay window is a
//! DTLS-style (RFC 6347 §4.1.2.6) 64-entry sliding bitmap per signer and epoch,
//! and it is only ever advanced with a [`Frame`], which exists only after the
//! signature verified (the Terrapin lesson: never advance a counter on
//! unauthenticated input).

use std::collections::BTreeMap;

use crate::crypto::KeyId;
use crate::frame::{Frame, FrameError};
use crate::ids::{Epoch, RoomMs, Seq};
use crate::message::MessageError;

/// Width of the replay window: a sequence number up to 63 below the highest
/// accepted one is still accepted once.
pub const REPLAY_WINDOW: u64 = 64;
/// Most signers a [`ReplayTable`] tracks (room members are capped at 16; the
/// margin covers members who left and rejoined with new keys).
pub const MAX_TRACKED_SIGNERS: usize = 64;
/// Default bound on `|issued_at − now|` on the room clock, in milliseconds.
pub const DEFAULT_MAX_SKEW_MS: u64 = 30_000;

macro_rules! drop_reasons {
    ($($(#[$doc:meta])* $name:ident => $label:literal,)*) => {
        /// Why a received frame was dropped. Every drop is counted by reason
        /// and surfaced as an event; nothing that is dropped changes state.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum DropReason {
            $($(#[$doc])* $name,)*
        }

        impl DropReason {
            /// Every reason, in rule order.
            pub const ALL: &'static [DropReason] = &[$(DropReason::$name,)*];

            /// A stable snake_case label (metrics, logs).
            #[must_use]
            pub const fn label(self) -> &'static str {
                match self { $(Self::$name => $label,)* }
            }
        }
    };
}

drop_reasons! {
    /// Does not start with the frame magic.
    NotAFrame => "not_a_frame",
    /// Shorter than its fixed parts.
    Truncated => "truncated",
    /// Larger than the maximum frame size.
    Oversized => "oversized",
    /// Unknown frame version.
    UnknownVersion => "unknown_version",
    /// Unknown frame kind.
    UnknownKind => "unknown_kind",
    /// Arrived on a data channel other than its kind's (`Kind::channel`).
    WrongChannel => "wrong_channel",
    /// The signer key id names no member's verified key.
    UnknownSigner => "unknown_signer",
    /// The signature does not verify.
    BadSignature => "bad_signature",
    /// The verified body does not decode.
    Malformed => "malformed",
    /// A control frame not signed by the current host.
    NotHost => "not_host",
    /// A member frame not signed by a current member.
    NotMember => "not_member",
    /// For another room.
    WrongRoom => "wrong_room",
    /// From an epoch older than the current one.
    StaleEpoch => "stale_epoch",
    /// From an epoch this peer does not know yet.
    UnknownEpoch => "unknown_epoch",
    /// A sequence number already accepted.
    Replay => "replay",
    /// A sequence number below the replay window.
    OldSequence => "old_sequence",
    /// Issued-at too far from the room clock.
    SkewedTime => "skewed_time",
    /// Chat text breaks the chat rules.
    ChatInvalid => "chat_invalid",
    /// The replay table is full (more distinct signers than any room has).
    TooManySigners => "too_many_signers",
    /// The signer exceeded its rate limit for this kind (reactions, chat,
    /// requests; see `SessionConfig`).
    RateLimited => "rate_limited",
    /// Pinned room: host control over the link to the host before a host
    /// `Bind` verified on it (docs/protocol.md §7.1 *Binding*).
    UnboundLink => "unbound_link",
    /// Pinned room: a member frame (other than `Knock` and `ClockPing`)
    /// signed by a member the host did not admit, or by another key than
    /// the one it admitted (docs/protocol.md §2.2).
    NotAdmitted => "not_admitted",
}

impl From<&FrameError> for DropReason {
    fn from(e: &FrameError) -> Self {
        match e {
            FrameError::Oversized(_) => Self::Oversized,
            FrameError::BadMagic => Self::NotAFrame,
            FrameError::Truncated => Self::Truncated,
            FrameError::UnknownVersion(_) => Self::UnknownVersion,
            FrameError::UnknownKind(_) => Self::UnknownKind,
            FrameError::SignerMismatch | FrameError::BadSignature => Self::BadSignature,
            FrameError::Malformed(_) => Self::Malformed,
            FrameError::Payload(MessageError::Chat(_)) => Self::ChatInvalid,
            FrameError::Payload(_) => Self::Malformed,
        }
    }
}

impl From<&crate::frame::ReceiveError> for DropReason {
    fn from(e: &crate::frame::ReceiveError) -> Self {
        match e {
            crate::frame::ReceiveError::UnknownSigner(_) => Self::UnknownSigner,
            crate::frame::ReceiveError::Frame(f) => f.into(),
        }
    }
}

/// Drop counters, one per [`DropReason`] (saturating).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DropCounts {
    counts: BTreeMap<DropReason, u64>,
}

impl DropCounts {
    /// Counts one drop.
    pub fn record(&mut self, reason: DropReason) {
        let c = self.counts.entry(reason).or_insert(0);
        *c = c.saturating_add(1);
    }

    /// Drops counted for `reason`.
    #[must_use]
    pub fn get(&self, reason: DropReason) -> u64 {
        self.counts.get(&reason).copied().unwrap_or(0)
    }

    /// All drops.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.counts.values().fold(0, |a, b| a.saturating_add(*b))
    }
}

/// A 64-entry sliding replay window over sequence numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest accepted sequence number, if any.
    highest: Option<u64>,
    /// Bit `i` set: `highest − i` was accepted.
    seen: u64,
}

impl ReplayWindow {
    /// Whether `seq` would be accepted (no change).
    ///
    /// # Errors
    /// [`DropReason::Replay`] if already accepted, [`DropReason::OldSequence`]
    /// if 64 or more below the highest accepted.
    pub fn check(&self, seq: Seq) -> Result<(), DropReason> {
        let seq = seq.get();
        let Some(high) = self.highest else {
            return Ok(());
        };
        if seq > high {
            return Ok(());
        }
        let back = high - seq;
        if back >= REPLAY_WINDOW {
            return Err(DropReason::OldSequence);
        }
        if self.seen & (1 << back) != 0 {
            Err(DropReason::Replay)
        } else {
            Ok(())
        }
    }

    /// Checks and records `seq`.
    ///
    /// # Errors
    /// As [`ReplayWindow::check`]; nothing changes on error.
    pub fn accept(&mut self, seq: Seq) -> Result<(), DropReason> {
        self.check(seq)?;
        let s = seq.get();
        match self.highest {
            Some(high) if s <= high => self.seen |= 1 << (high - s),
            Some(high) => {
                let shift = s - high;
                self.seen = if shift >= REPLAY_WINDOW {
                    0
                } else {
                    self.seen << shift
                };
                self.seen |= 1;
                self.highest = Some(s);
            }
            None => {
                self.seen = 1;
                self.highest = Some(s);
            }
        }
        Ok(())
    }

    /// The highest accepted sequence number.
    #[must_use]
    pub fn highest(&self) -> Option<Seq> {
        self.highest.and_then(|h| Seq::new(h).ok())
    }
}

/// Replay windows per signer, each tied to the epoch it counts in. A frame
/// from a newer epoch than the signer's window starts a fresh window (commit
/// only); one from an older epoch is stale.
#[derive(Debug, Clone, Default)]
pub struct ReplayTable {
    windows: BTreeMap<KeyId, (Epoch, ReplayWindow)>,
}

impl ReplayTable {
    /// Whether `frame` passes the replay rules (no change).
    ///
    /// # Errors
    /// [`DropReason::StaleEpoch`], [`DropReason::Replay`],
    /// [`DropReason::OldSequence`] or [`DropReason::TooManySigners`].
    pub fn check(&self, frame: &Frame) -> Result<(), DropReason> {
        self.check_parts(frame.signer(), frame.header().epoch, frame.header().seq)
    }

    fn check_parts(&self, signer: KeyId, epoch: Epoch, seq: Seq) -> Result<(), DropReason> {
        match self.windows.get(&signer) {
            Some((e, _)) if epoch < *e => Err(DropReason::StaleEpoch),
            Some((e, w)) if epoch == *e => w.check(seq),
            Some(_) => Ok(()),
            None if self.windows.len() >= MAX_TRACKED_SIGNERS => Err(DropReason::TooManySigners),
            None => Ok(()),
        }
    }

    /// Checks and records `frame` (call once every other rule passed).
    ///
    /// # Errors
    /// As [`ReplayTable::check`]; nothing changes on error.
    pub fn commit(&mut self, frame: &Frame) -> Result<(), DropReason> {
        self.commit_parts(frame.signer(), frame.header().epoch, frame.header().seq)
    }

    fn commit_parts(&mut self, signer: KeyId, epoch: Epoch, seq: Seq) -> Result<(), DropReason> {
        self.check_parts(signer, epoch, seq)?;
        let entry = self
            .windows
            .entry(signer)
            .or_insert((epoch, ReplayWindow::default()));
        if entry.0 != epoch {
            *entry = (epoch, ReplayWindow::default());
        }
        entry.1.accept(seq)
    }

    /// Forgets a signer (e.g. a member whose certificate was replaced). Its
    /// old frames are then only kept out by the membership and epoch rules.
    pub fn forget(&mut self, signer: &KeyId) {
        self.windows.remove(signer);
    }

    /// Number of signers tracked.
    #[must_use]
    pub fn len(&self) -> usize {
        self.windows.len()
    }

    /// Whether no signer is tracked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.windows.is_empty()
    }
}

/// Checks `|issued_at − now| ≤ max_skew_ms` on the room clock.
///
/// # Errors
/// [`DropReason::SkewedTime`] otherwise.
pub fn check_skew(issued_at: RoomMs, now: RoomMs, max_skew_ms: u64) -> Result<(), DropReason> {
    let diff = i128::from(issued_at.0) - i128::from(now.0);
    if diff.unsigned_abs() <= u128::from(max_skew_ms) {
        Ok(())
    } else {
        Err(DropReason::SkewedTime)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn s(v: u64) -> Seq {
        Seq::new(v).unwrap()
    }

    #[test]
    fn window_basics() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(s(5)), Ok(()));
        assert_eq!(w.accept(s(5)), Err(DropReason::Replay));
        assert_eq!(w.accept(s(3)), Ok(()));
        assert_eq!(w.accept(s(3)), Err(DropReason::Replay));
        assert_eq!(w.accept(s(100)), Ok(()));
        assert_eq!(w.accept(s(36)), Err(DropReason::OldSequence));
        assert_eq!(w.accept(s(37)), Ok(()));
        assert_eq!(w.accept(s(37)), Err(DropReason::Replay));
        assert_eq!(w.highest(), Some(s(100)));
        // A jump larger than the window clears it.
        assert_eq!(w.accept(s(1_000)), Ok(()));
        assert_eq!(w.accept(s(937)), Ok(()));
        assert_eq!(w.accept(s(936)), Err(DropReason::OldSequence));
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(s(Seq::LIMIT - 1)), Ok(()));
        assert_eq!(w.accept(s(Seq::LIMIT - 64)), Ok(()));
        assert_eq!(w.accept(s(0)), Err(DropReason::OldSequence));
    }

    #[test]
    fn table_epochs_and_capacity() {
        let a = KeyId::from_bytes([1; 8]);
        let mut t = ReplayTable::default();
        assert_eq!(t.commit_parts(a, Epoch(2), s(10)), Ok(()));
        assert_eq!(t.commit_parts(a, Epoch(2), s(10)), Err(DropReason::Replay));
        assert_eq!(
            t.check_parts(a, Epoch(1), s(11)),
            Err(DropReason::StaleEpoch)
        );
        // A new epoch restarts the count.
        assert_eq!(t.commit_parts(a, Epoch(3), s(0)), Ok(()));
        assert_eq!(
            t.commit_parts(a, Epoch(2), s(11)),
            Err(DropReason::StaleEpoch)
        );
        assert_eq!(t.commit_parts(a, Epoch(3), s(0)), Err(DropReason::Replay));
        for i in 1..MAX_TRACKED_SIGNERS {
            let k = KeyId::from_bytes((i as u64).to_be_bytes());
            assert_eq!(t.commit_parts(k, Epoch(3), s(0)), Ok(()));
        }
        assert_eq!(t.len(), MAX_TRACKED_SIGNERS);
        let extra = KeyId::from_bytes([0xff; 8]);
        assert_eq!(
            t.commit_parts(extra, Epoch(3), s(0)),
            Err(DropReason::TooManySigners)
        );
        t.forget(&a);
        assert_eq!(t.commit_parts(extra, Epoch(3), s(0)), Ok(()));
    }

    #[test]
    fn skew() {
        assert_eq!(check_skew(RoomMs(0), RoomMs(30_000), 30_000), Ok(()));
        assert_eq!(
            check_skew(RoomMs(0), RoomMs(30_001), 30_000),
            Err(DropReason::SkewedTime)
        );
        assert_eq!(
            check_skew(RoomMs(30_001), RoomMs(0), 30_000),
            Err(DropReason::SkewedTime)
        );
        assert_eq!(
            check_skew(RoomMs(i64::MIN), RoomMs(i64::MAX), u64::MAX),
            Ok(())
        );
        assert_eq!(
            check_skew(RoomMs(i64::MIN), RoomMs(i64::MAX), 30_000),
            Err(DropReason::SkewedTime)
        );
    }

    #[test]
    fn labels_unique() {
        let labels: HashSet<_> = DropReason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels.len(), DropReason::ALL.len());
        let mut c = DropCounts::default();
        c.record(DropReason::Replay);
        c.record(DropReason::Replay);
        c.record(DropReason::WrongRoom);
        assert_eq!(c.get(DropReason::Replay), 2);
        assert_eq!(c.get(DropReason::NotHost), 0);
        assert_eq!(c.total(), 3);
    }

    proptest! {
        /// Oracle: a sequence number is accepted iff it was never accepted
        /// before and it is less than 64 below the highest accepted so far
        /// (no replay is ever accepted; every first-seen number within the
        /// window is).
        #[test]
        fn window_matches_oracle(seqs in prop::collection::vec(
            prop_oneof![0u64..200, 0u64..20, Just(Seq::LIMIT - 1), (Seq::LIMIT - 100)..Seq::LIMIT], 1..300)) {
            let mut w = ReplayWindow::default();
            let mut accepted: HashSet<u64> = HashSet::new();
            let mut highest: Option<u64> = None;
            for v in seqs {
                // Below the window the window cannot tell a replay from a
                // never-seen number: both are refused as old.
                let expect = if highest.is_some_and(|h| v + REPLAY_WINDOW <= h) {
                    Err(DropReason::OldSequence)
                } else if accepted.contains(&v) {
                    Err(DropReason::Replay)
                } else {
                    Ok(())
                };
                prop_assert_eq!(w.accept(s(v)), expect, "seq {}", v);
                if expect.is_ok() {
                    accepted.insert(v);
                    highest = Some(highest.map_or(v, |h| h.max(v)));
                }
            }
        }

        /// Reordering within the window loses nothing: any permutation of a
        /// block of 64 consecutive numbers is accepted entirely, and a second
        /// pass entirely refused.
        #[test]
        fn reordered_block_all_accepted(start in 0u64..1_000_000, perm in Just((0u64..64).collect::<Vec<_>>()).prop_shuffle()) {
            let mut w = ReplayWindow::default();
            for p in &perm {
                prop_assert_eq!(w.accept(s(start + p)), Ok(()));
            }
            for p in &perm {
                prop_assert!(w.accept(s(start + p)).is_err());
            }
        }
    }
}
