//! Mesh bookkeeping: the bounded memory of frames already seen (so a
//! forwarded copy is recognised without verifying it again) and the routes
//! of clock pings relayed for peers that have no direct path to the host.

use std::collections::{BTreeMap, VecDeque};

use sha2::{Digest, Sha256};

use crate::crypto::KeyId;
use crate::ids::{Epoch, Seq, UserId};

/// Most frames remembered for de-duplication (oldest forgotten first). A
/// forgotten frame that comes back is stopped by the replay window instead.
pub const MAX_DEDUPE_ENTRIES: usize = 2048;

/// Most relayed clock pings remembered while waiting for the host's answer.
pub const MAX_PING_ROUTES: usize = 64;

/// SHA-256 of a frame's exact bytes.
pub(crate) type FrameDigest = [u8; 32];

/// Hashes the exact received bytes.
pub(crate) fn digest(bytes: &[u8]) -> FrameDigest {
    Sha256::digest(bytes).into()
}

/// Identity of a signed frame: signer, epoch, sequence number.
pub(crate) type FrameKey = (KeyId, Epoch, Seq);

/// Frames already accepted (or sent), by (signer, epoch, seq), with the
/// digest of their exact bytes. An exact copy of an accepted frame is the
/// same authentic frame, so it can be dropped without a second signature
/// check; a different frame under the same key goes through every rule
/// (and is then dropped as a replay). Entries are only inserted after the
/// frame passed every rule, so unauthenticated input can never poison it.
#[derive(Debug, Default)]
pub(crate) struct Dedupe {
    seen: BTreeMap<FrameKey, FrameDigest>,
    order: VecDeque<FrameKey>,
}

impl Dedupe {
    /// Whether exactly these bytes were accepted under `key`.
    pub(crate) fn is_duplicate(&self, key: &FrameKey, d: &FrameDigest) -> bool {
        self.seen.get(key).is_some_and(|s| s == d)
    }

    /// Remembers an accepted frame.
    pub(crate) fn insert(&mut self, key: FrameKey, d: FrameDigest) {
        if self.seen.insert(key, d).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > MAX_DEDUPE_ENTRIES {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Number of frames remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }
}

/// A clock ping relayed to the host: answer it back through `via`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PingRoute {
    id: u32,
    origin_us: i64,
    via: UserId,
}

/// Bounded routes of relayed pings (oldest forgotten first).
#[derive(Debug, Default)]
pub(crate) struct PingRoutes {
    routes: VecDeque<PingRoute>,
}

impl PingRoutes {
    /// Remembers that the ping (`id`, `origin_us`) came from neighbour `via`.
    pub(crate) fn insert(&mut self, id: u32, origin_us: i64, via: UserId) {
        self.routes.push_back(PingRoute { id, origin_us, via });
        while self.routes.len() > MAX_PING_ROUTES {
            self.routes.pop_front();
        }
    }

    /// Takes the route of the pong answering (`id`, `origin_us`), if any.
    pub(crate) fn take(&mut self, id: u32, origin_us: i64) -> Option<UserId> {
        let idx = self
            .routes
            .iter()
            .position(|r| r.id == id && r.origin_us == origin_us)?;
        self.routes.remove(idx).map(|r| r.via)
    }

    /// Number of routes held.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.routes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u64) -> FrameKey {
        (KeyId::from_bytes([1; 8]), Epoch(1), Seq::new(n).unwrap())
    }

    #[test]
    fn dedupe_is_bounded_and_exact() {
        let mut d = Dedupe::default();
        d.insert(key(0), digest(b"a"));
        assert!(d.is_duplicate(&key(0), &digest(b"a")));
        assert!(!d.is_duplicate(&key(0), &digest(b"b")));
        for n in 1..=(MAX_DEDUPE_ENTRIES as u64) {
            d.insert(key(n), digest(b"x"));
        }
        assert_eq!(d.len(), MAX_DEDUPE_ENTRIES);
        assert!(!d.is_duplicate(&key(0), &digest(b"a")), "oldest forgotten");
    }

    #[test]
    fn ping_routes_are_bounded() {
        let mut r = PingRoutes::default();
        let via = UserId::new(3).unwrap();
        for id in 0..(MAX_PING_ROUTES as u32 + 10) {
            r.insert(id, 7, via);
        }
        assert_eq!(r.len(), MAX_PING_ROUTES);
        assert_eq!(r.take(0, 7), None, "oldest forgotten");
        assert_eq!(r.take(MAX_PING_ROUTES as u32 + 9, 7), Some(via));
        assert_eq!(r.take(MAX_PING_ROUTES as u32 + 9, 7), None, "taken once");
    }
}
