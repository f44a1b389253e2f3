//! The browser's monotonic clock as the core's [`LocalTime`].
//!
//! `performance.now()` (milliseconds with sub-millisecond resolution since
//! the page's time origin) is the one clock of a browser peer: network
//! inputs, player readings and timers all use it, so they are comparable.

use watchparty_peer::time::LocalTime;

/// The local monotonic clock.
#[derive(Debug, Clone)]
pub struct Clock {
    performance: Option<web_sys::Performance>,
}

impl Clock {
    /// The page's clock (`window.performance`). Outside a window (never in
    /// this product) it reads zero, which only stalls timers.
    #[must_use]
    pub fn new() -> Self {
        Self {
            performance: web_sys::window().and_then(|w| w.performance()),
        }
    }

    /// Now, in microseconds since the page's time origin.
    #[must_use]
    pub fn now(&self) -> LocalTime {
        let ms = self
            .performance
            .as_ref()
            .map_or(0.0, web_sys::Performance::now);
        LocalTime::from_micros(ms_to_micros(ms))
    }

    /// Milliseconds from now until `t` (0 when due), for `setTimeout`.
    #[must_use]
    pub fn delay_ms(&self, t: LocalTime) -> u32 {
        let us = t.since(self.now()).as_micros().max(0);
        // Round up so the timer never fires before `t`.
        u32::try_from((us + 999) / 1000).unwrap_or(u32::MAX)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// Milliseconds (as `performance.now()` returns them) to whole microseconds;
/// non-finite or negative readings map to zero.
#[must_use]
pub fn ms_to_micros(ms: f64) -> i64 {
    if ms.is_finite() && ms > 0.0 {
        // A page's clock stays far below 2^53 µs; `as` saturates anyway.
        (ms * 1000.0).round() as i64
    } else {
        0
    }
}

/// Milliseconds since the Unix epoch (`Date.now()`), for chat timestamps
/// and certificate expiry.
#[must_use]
pub fn wall_ms() -> f64 {
    js_sys::Date::now()
}
