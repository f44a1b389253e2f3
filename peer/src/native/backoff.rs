//! Backoff for the native driver: the core's [`crate::backoff`] schedule plus
//! a jitter seed from the operating system.

pub use crate::backoff::*;

/// A seed for jitter from the system's secure random source (falls back to
/// the time of day, which only weakens the spread, never correctness).
#[must_use]
pub fn random_seed() -> u64 {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 8];
    if ring::rand::SystemRandom::new().fill(&mut b).is_ok() {
        return u64::from_le_bytes(b);
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| {
            u64::try_from(d.as_nanos() & u128::from(u64::MAX)).unwrap_or(0)
        })
}
