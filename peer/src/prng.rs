//! A tiny deterministic pseudo-random generator (SplitMix64) for simulations
//! and virtual players. **Not** for anything security-related: keys and nonces
//! come from `ring`'s system RNG.

/// SplitMix64 (Steele, Lea, Flood 2014): 64-bit state, passes BigCrush, and
/// every seed gives a full-period stream, so runs are reproducible from one
/// number.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    #[must_use]
    pub const fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform integer in `lo..=hi` (returns `lo` if `hi < lo`).
    pub fn range_i64(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        // Width fits in u64 for any i64 pair; the modulo bias is below 2^-40
        // for the small ranges simulations use.
        let width = hi.abs_diff(lo).saturating_add(1);
        let v = self.next_u64() % width;
        lo.wrapping_add(v as i64)
    }

    /// `true` with probability `ppm` / 1 000 000.
    pub fn chance_ppm(&mut self, ppm: u32) -> bool {
        self.next_u64() % 1_000_000 < u64::from(ppm)
    }

    /// An independent generator derived from this one (for per-peer streams).
    pub fn fork(&mut self) -> Self {
        Self(self.next_u64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_and_in_range() {
        let mut a = SplitMix64::new(42);
        let mut b = SplitMix64::new(42);
        for _ in 0..1_000 {
            assert_eq!(a.next_u64(), b.next_u64());
            let v = a.range_i64(-15, 15);
            assert!((-15..=15).contains(&v));
            b.range_i64(-15, 15);
        }
        assert_eq!(a.range_i64(5, 5), 5);
        assert_eq!(a.range_i64(5, 1), 5);
        let hits = (0..100_000).filter(|_| a.chance_ppm(20_000)).count();
        assert!((1_500..2_500).contains(&hits), "{hits}");
        // Reference value of SplitMix64 seeded with 0.
        assert_eq!(SplitMix64::new(0).next_u64(), 0xE220_A839_7B1D_CDAF);
    }
}
