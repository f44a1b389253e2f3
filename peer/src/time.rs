//! Time newtypes for the sync core.
//!
//! Three different clocks meet in playback sync, and mixing them up is the
//! classic bug, so each has its own type:
//!
//! * [`LocalTime`]: this peer's monotonic clock, in microseconds since an
//!   arbitrary origin. Drivers convert from `Instant` (native) or
//!   `performance.now()` (browser); the core never reads a clock.
//! * [`RoomTime`]: the room clock, which is the host's monotonic clock, in
//!   microseconds. Followers estimate it with [`crate::clock::ClockSync`].
//! * [`MediaPos`]: a position in the media, in microseconds, never negative.
//!
//! [`TimeDelta`] is a signed span of microseconds and [`Rate`] a playback rate
//! in millionths (`1_000_000` = 1.0×), fine enough for inaudible trims of a
//! few ppm while the wire carries rates in thousandths.
//!
//! All arithmetic saturates instead of overflowing: the values come from the
//! network and from drivers, and a saturated time is a wrong answer that the
//! protocol's checks catch, never a panic. Microsecond `i64` covers about
//! 292 000 years, so saturation only happens on hostile input.

use core::fmt;
use core::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use core::time::Duration;

const MICROS_PER_MILLI: i64 = 1_000;
const MICROS_PER_SEC: i64 = 1_000_000;

/// A signed span of time in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeDelta(i64);

impl TimeDelta {
    /// Zero.
    pub const ZERO: Self = Self(0);
    /// The largest representable span.
    pub const MAX: Self = Self(i64::MAX);

    /// A span of `us` microseconds.
    #[must_use]
    pub const fn from_micros(us: i64) -> Self {
        Self(us)
    }

    /// A span of `ms` milliseconds (saturating).
    #[must_use]
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms.saturating_mul(MICROS_PER_MILLI))
    }

    /// A span of `s` seconds (saturating).
    #[must_use]
    pub const fn from_secs(s: i64) -> Self {
        Self(s.saturating_mul(MICROS_PER_SEC))
    }

    /// Converts a non-negative [`Duration`] (saturating at [`TimeDelta::MAX`]).
    #[must_use]
    pub fn from_duration(d: Duration) -> Self {
        Self(i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
    }

    /// The span in microseconds.
    #[must_use]
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The span in whole milliseconds, rounded toward negative infinity.
    #[must_use]
    pub const fn as_millis_floor(self) -> i64 {
        self.0.div_euclid(MICROS_PER_MILLI)
    }

    /// The span in seconds as a float (for reports and float-based estimators).
    #[must_use]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_SEC as f64
    }

    /// The absolute value (saturating).
    #[must_use]
    pub const fn abs(self) -> Self {
        Self(self.0.saturating_abs())
    }

    /// `true` when the span is negative.
    #[must_use]
    pub const fn is_negative(self) -> bool {
        self.0 < 0
    }

    /// The smaller of two spans.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        Ord::min(self, other)
    }

    /// The larger of two spans.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        Ord::max(self, other)
    }

    /// Rounds a float number of microseconds, saturating (NaN becomes zero).
    #[must_use]
    pub fn from_micros_f64(us: f64) -> Self {
        Self(f64_to_i64_saturating(us))
    }
}

impl Add for TimeDelta {
    type Output = Self;
    fn add(self, rhs: Self) -> Self {
        Self(self.0.saturating_add(rhs.0))
    }
}

impl Sub for TimeDelta {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self(self.0.saturating_sub(rhs.0))
    }
}

impl Neg for TimeDelta {
    type Output = Self;
    fn neg(self) -> Self {
        Self(self.0.saturating_neg())
    }
}

impl AddAssign for TimeDelta {
    fn add_assign(&mut self, rhs: Self) {
        *self = *self + rhs;
    }
}

impl SubAssign for TimeDelta {
    fn sub_assign(&mut self, rhs: Self) {
        *self = *self - rhs;
    }
}

impl fmt::Display for TimeDelta {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} ms", self.0 as f64 / MICROS_PER_MILLI as f64)
    }
}

/// Rounds a float to `i64`, saturating at the bounds; NaN becomes zero.
pub(crate) fn f64_to_i64_saturating(v: f64) -> i64 {
    if v.is_nan() {
        0
    } else {
        // `as` saturates for out-of-range floats since Rust 1.45.
        v.round() as i64
    }
}

macro_rules! instant_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(i64);

        impl $name {
            /// The origin of this clock.
            pub const ZERO: Self = Self(0);
            /// The earliest representable instant ("as soon as possible" when
            /// used as a deadline).
            pub const MIN: Self = Self(i64::MIN);

            /// An instant `us` microseconds after the origin.
            #[must_use]
            pub const fn from_micros(us: i64) -> Self {
                Self(us)
            }

            /// An instant `ms` milliseconds after the origin (saturating).
            #[must_use]
            pub const fn from_millis(ms: i64) -> Self {
                Self(ms.saturating_mul(MICROS_PER_MILLI))
            }

            /// Microseconds since the origin.
            #[must_use]
            pub const fn as_micros(self) -> i64 {
                self.0
            }

            /// Whole milliseconds since the origin, rounded toward negative infinity.
            #[must_use]
            pub const fn as_millis_floor(self) -> i64 {
                self.0.div_euclid(MICROS_PER_MILLI)
            }

            /// The later of two instants.
            #[must_use]
            pub fn max(self, other: Self) -> Self {
                Ord::max(self, other)
            }

            /// The earlier of two instants.
            #[must_use]
            pub fn min(self, other: Self) -> Self {
                Ord::min(self, other)
            }

            /// The span from `earlier` to `self` (negative if `earlier` is later).
            #[must_use]
            pub const fn since(self, earlier: Self) -> TimeDelta {
                TimeDelta(self.0.saturating_sub(earlier.0))
            }
        }

        impl Add<TimeDelta> for $name {
            type Output = Self;
            fn add(self, rhs: TimeDelta) -> Self {
                Self(self.0.saturating_add(rhs.0))
            }
        }

        impl Sub<TimeDelta> for $name {
            type Output = Self;
            fn sub(self, rhs: TimeDelta) -> Self {
                Self(self.0.saturating_sub(rhs.0))
            }
        }

        impl AddAssign<TimeDelta> for $name {
            fn add_assign(&mut self, rhs: TimeDelta) {
                *self = *self + rhs;
            }
        }

        impl Sub for $name {
            type Output = TimeDelta;
            fn sub(self, rhs: Self) -> TimeDelta {
                self.since(rhs)
            }
        }
    };
}

instant_type!(
    /// An instant on this peer's monotonic clock, in microseconds since an
    /// arbitrary per-process origin.
    ///
    /// Drivers build it from their clock (`Instant::duration_since(origin)`,
    /// `performance.now()`); see [`LocalTime::from_duration`]. Values of
    /// different peers are not comparable.
    LocalTime
);

instant_type!(
    /// An instant on the room clock (the host's monotonic clock, which a
    /// host session starts at its wall clock: Unix microseconds, so a host
    /// that reloads or restarts continues the same room clock), in
    /// microseconds. The wire carries it in milliseconds (commands) or
    /// microseconds (clock pings).
    RoomTime
);

/// Wall-clock time: microseconds since the Unix epoch. A session reads it
/// once, at its start (drivers: `Date.now()`, `SystemTime::now()`); it
/// anchors certificate expiry and a host's room clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WallTime(i64);

impl WallTime {
    /// `us` microseconds after the Unix epoch.
    #[must_use]
    pub const fn from_unix_micros(us: i64) -> Self {
        Self(us)
    }

    /// Milliseconds after the Unix epoch as a float (`Date.now()`);
    /// NaN saturates to the epoch.
    #[must_use]
    pub fn from_unix_millis_f64(ms: f64) -> Self {
        Self(f64_to_i64_saturating(ms * MICROS_PER_MILLI as f64))
    }

    /// Microseconds after the Unix epoch.
    #[must_use]
    pub const fn as_unix_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds after the Unix epoch (0 before it).
    #[must_use]
    pub const fn unix_seconds(self) -> crate::ids::UnixSeconds {
        let s = self.0.div_euclid(MICROS_PER_SEC);
        crate::ids::UnixSeconds(if s < 0 { 0 } else { s as u64 })
    }
}

impl From<crate::ids::UnixSeconds> for WallTime {
    fn from(s: crate::ids::UnixSeconds) -> Self {
        let secs = i64::try_from(s.0).unwrap_or(i64::MAX);
        Self(secs.saturating_mul(MICROS_PER_SEC))
    }
}

impl LocalTime {
    /// The instant `since_origin` after the driver's origin (saturating).
    #[must_use]
    pub fn from_duration(since_origin: Duration) -> Self {
        Self(TimeDelta::from_duration(since_origin).as_micros())
    }
}

/// A position in the media, in microseconds from its start. Never negative.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MediaPos(i64);

impl MediaPos {
    /// The start of the media.
    pub const ZERO: Self = Self(0);

    /// A position `us` microseconds into the media; negative values clamp to
    /// the start.
    #[must_use]
    pub const fn from_micros(us: i64) -> Self {
        if us < 0 { Self(0) } else { Self(us) }
    }

    /// A position `ms` milliseconds into the media (wire form; saturating).
    #[must_use]
    pub const fn from_millis(ms: u64) -> Self {
        let us = if ms > (i64::MAX / MICROS_PER_MILLI) as u64 {
            i64::MAX
        } else {
            ms as i64 * MICROS_PER_MILLI
        };
        Self(us)
    }

    /// A position in seconds (player APIs use float seconds); NaN and negative
    /// values clamp to the start.
    #[must_use]
    pub fn from_secs_f64(secs: f64) -> Self {
        Self::from_micros(f64_to_i64_saturating(secs * MICROS_PER_SEC as f64))
    }

    /// Microseconds from the start.
    #[must_use]
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// Whole milliseconds from the start, rounded to nearest (wire form).
    #[must_use]
    pub const fn as_millis(self) -> u64 {
        // Non-negative by construction, so the cast is lossless.
        (self.0.saturating_add(MICROS_PER_MILLI / 2) / MICROS_PER_MILLI) as u64
    }

    /// Seconds from the start as a float (player APIs).
    #[must_use]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / MICROS_PER_SEC as f64
    }

    /// The later of two positions.
    #[must_use]
    pub fn max(self, other: Self) -> Self {
        Ord::max(self, other)
    }

    /// The earlier of two positions.
    #[must_use]
    pub fn min(self, other: Self) -> Self {
        Ord::min(self, other)
    }
}

impl Add<TimeDelta> for MediaPos {
    type Output = Self;
    /// Moves the position, clamping at the start of the media.
    fn add(self, rhs: TimeDelta) -> Self {
        Self::from_micros(self.0.saturating_add(rhs.0))
    }
}

impl Sub<TimeDelta> for MediaPos {
    type Output = Self;
    /// Moves the position back, clamping at the start of the media.
    fn sub(self, rhs: TimeDelta) -> Self {
        Self::from_micros(self.0.saturating_sub(rhs.0))
    }
}

impl Sub for MediaPos {
    type Output = TimeDelta;
    /// The signed distance between two positions.
    fn sub(self, rhs: Self) -> TimeDelta {
        TimeDelta(self.0.saturating_sub(rhs.0))
    }
}

impl fmt::Display for MediaPos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.3} s", self.as_secs_f64())
    }
}

/// A playback rate out of the supported range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("playback rate {millionths}/1000000 is outside {min}..={max}", min = Rate::MIN.0, max = Rate::MAX.0)]
pub struct RateError {
    /// The rejected rate, in millionths.
    pub millionths: u64,
}

/// A playback rate in millionths: `1_000_000` is normal speed.
///
/// Always within [`Rate::MIN`]..=[`Rate::MAX`] (0.0625× to 16×, the range
/// browsers accept for `playbackRate`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Rate(u32);

impl Default for Rate {
    fn default() -> Self {
        Self::NORMAL
    }
}

impl Rate {
    /// Normal speed (1.0×).
    pub const NORMAL: Self = Self(1_000_000);
    /// The slowest supported rate (0.0625×).
    pub const MIN: Self = Self(62_500);
    /// The fastest supported rate (16×).
    pub const MAX: Self = Self(16_000_000);

    /// A rate in millionths (`1_000_000` = 1.0×).
    ///
    /// # Errors
    /// [`RateError`] when outside [`Rate::MIN`]..=[`Rate::MAX`].
    pub fn from_millionths(millionths: u32) -> Result<Self, RateError> {
        if (Self::MIN.0..=Self::MAX.0).contains(&millionths) {
            Ok(Self(millionths))
        } else {
            Err(RateError {
                millionths: u64::from(millionths),
            })
        }
    }

    /// A rate in thousandths, the wire form (`1000` = 1.0×).
    ///
    /// # Errors
    /// [`RateError`] when outside [`Rate::MIN`]..=[`Rate::MAX`].
    pub fn from_milli(milli: u32) -> Result<Self, RateError> {
        let millionths = u64::from(milli) * 1_000;
        u32::try_from(millionths)
            .map_err(|_| RateError { millionths })
            .and_then(Self::from_millionths)
    }

    /// A rate from a player's float (e.g. `playbackRate`), rounded to the
    /// nearest millionth and clamped to the supported range; NaN gives
    /// [`Rate::NORMAL`].
    #[must_use]
    pub fn from_f64_clamped(rate: f64) -> Self {
        if rate.is_nan() {
            return Self::NORMAL;
        }
        let m = f64_to_i64_saturating(rate * 1e6);
        Self::clamp_i64(m)
    }

    fn clamp_i64(m: i64) -> Self {
        // Clamped into u32 range first, so the cast is lossless.
        Self(m.clamp(i64::from(Self::MIN.0), i64::from(Self::MAX.0)) as u32)
    }

    /// The rate in millionths.
    #[must_use]
    pub const fn as_millionths(self) -> u32 {
        self.0
    }

    /// The rate in thousandths, rounded to nearest (wire form).
    #[must_use]
    pub const fn as_milli(self) -> u32 {
        (self.0 + 500) / 1_000
    }

    /// The rate as a float, for player APIs.
    #[must_use]
    pub fn as_f64(self) -> f64 {
        f64::from(self.0) / 1e6
    }

    /// This rate changed by `ppm` parts per million of itself (a correction
    /// nudge), clamped to the supported range.
    #[must_use]
    pub fn scaled_ppm(self, ppm: i64) -> Self {
        let factor = 1_000_000_i128 + i128::from(ppm.clamp(-999_999, 10_000_000));
        let m = (i128::from(self.0) * factor + 500_000) / 1_000_000;
        Self::clamp_i64(i64::try_from(m).unwrap_or(i64::MAX))
    }

    /// The relative difference `self / other - 1`, in parts per million.
    #[must_use]
    pub fn ppm_relative_to(self, other: Self) -> i64 {
        let num = (i128::from(self.0) - i128::from(other.0)) * 1_000_000;
        // `other` is at least MIN > 0, so the division is defined.
        i64::try_from(num / i128::from(other.0)).unwrap_or(i64::MAX)
    }

    /// How far media advances in `elapsed` at this rate (rounded to nearest
    /// microsecond, saturating).
    #[must_use]
    pub fn advance(self, elapsed: TimeDelta) -> TimeDelta {
        let v = i128::from(elapsed.0) * i128::from(self.0);
        let rounded = if v >= 0 {
            (v + 500_000) / 1_000_000
        } else {
            (v - 500_000) / 1_000_000
        };
        TimeDelta(i64::try_from(rounded).unwrap_or(if v >= 0 { i64::MAX } else { i64::MIN }))
    }

    /// The wall time needed to cover `media` at this rate (inverse of
    /// [`Rate::advance`]).
    #[must_use]
    pub fn time_for(self, media: TimeDelta) -> TimeDelta {
        let v = i128::from(media.0) * 1_000_000;
        let d = i128::from(self.0);
        let rounded = if v >= 0 {
            (v + d / 2) / d
        } else {
            (v - d / 2) / d
        };
        TimeDelta(i64::try_from(rounded).unwrap_or(if v >= 0 { i64::MAX } else { i64::MIN }))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:.6}x", self.as_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_saturate_instead_of_overflowing() {
        let t = LocalTime::from_micros(i64::MAX - 1);
        assert_eq!((t + TimeDelta::from_secs(1)).as_micros(), i64::MAX);
        let r = RoomTime::from_micros(i64::MIN + 1);
        assert_eq!((r - TimeDelta::from_secs(1)).as_micros(), i64::MIN);
        assert_eq!(
            LocalTime::from_micros(5) - LocalTime::from_micros(8),
            TimeDelta::from_micros(-3)
        );
        assert_eq!(TimeDelta::from_millis(i64::MAX), TimeDelta::MAX);
    }

    #[test]
    fn media_position_never_negative() {
        let p = MediaPos::from_millis(10);
        assert_eq!(p - TimeDelta::from_secs(1), MediaPos::ZERO);
        assert_eq!(MediaPos::from_micros(-5), MediaPos::ZERO);
        assert_eq!(MediaPos::from_secs_f64(f64::NAN), MediaPos::ZERO);
        assert_eq!(MediaPos::from_millis(u64::MAX).as_micros(), i64::MAX);
        assert_eq!(MediaPos::from_micros(1_499).as_millis(), 1);
        assert_eq!(MediaPos::from_micros(1_500).as_millis(), 2);
    }

    #[test]
    fn rate_range_is_enforced() {
        assert_eq!(Rate::from_milli(1000), Ok(Rate::NORMAL));
        assert!(Rate::from_milli(62).is_err());
        assert!(Rate::from_milli(63).is_ok());
        assert!(Rate::from_milli(16_000).is_ok());
        assert!(Rate::from_milli(16_001).is_err());
        assert!(Rate::from_milli(u32::MAX).is_err());
        assert!(Rate::from_millionths(0).is_err());
        assert_eq!(Rate::from_f64_clamped(100.0), Rate::MAX);
        assert_eq!(Rate::from_f64_clamped(-1.0), Rate::MIN);
        assert_eq!(Rate::from_f64_clamped(f64::NAN), Rate::NORMAL);
        assert_eq!(Rate::from_f64_clamped(1.25).as_milli(), 1250);
    }

    #[test]
    fn rate_arithmetic() {
        let r = Rate::from_milli(1500).unwrap_or_default();
        assert_eq!(r.advance(TimeDelta::from_secs(2)), TimeDelta::from_secs(3));
        assert_eq!(r.time_for(TimeDelta::from_secs(3)), TimeDelta::from_secs(2));
        assert_eq!(
            Rate::NORMAL.advance(TimeDelta::from_micros(-7)),
            TimeDelta::from_micros(-7)
        );
        let nudged = Rate::NORMAL.scaled_ppm(50_000);
        assert_eq!(nudged.as_millionths(), 1_050_000);
        assert_eq!(nudged.ppm_relative_to(Rate::NORMAL), 50_000);
        assert_eq!(Rate::NORMAL.scaled_ppm(-2_000_000), Rate::MIN);
        assert_eq!(Rate::MAX.scaled_ppm(i64::MAX), Rate::MAX);
        assert_eq!(
            Rate::MAX.advance(TimeDelta::MAX).as_micros(),
            i64::MAX,
            "saturates"
        );
    }
}
