//! Every threshold of clock sync, scheduling and drift correction, in one place.
//!
//! [`SyncConfig::default`] holds the documented defaults (the rationale for
//! each is in `docs/sync.md`, section "Sync algorithm"); a peer may override
//! any field and must then pass the result through [`SyncConfig::check`]
//! (done by [`crate::sync::SyncEngine::new`]).

use crate::time::TimeDelta;

/// A [`SyncConfig`] field outside its allowed range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sync config field `{field}` is invalid: {reason}")]
pub struct ConfigError {
    /// The offending field.
    pub field: &'static str,
    /// Why it was refused.
    pub reason: &'static str,
}

/// Every tunable of the sync core. See the field docs for defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncConfig {
    // ----- clock sync -----
    /// Pings sent back to back when sync starts or after a clock jump.
    /// Default 8.
    pub ping_burst_count: u32,
    /// Spacing of burst pings. Default 50 ms.
    pub ping_burst_interval: TimeDelta,
    /// Spacing of pings in steady state. Default 1 s.
    pub ping_interval: TimeDelta,
    /// A ping not answered within this is lost; a pong for it is refused and
    /// a sample with a longer round trip is discarded. Default 2 s.
    pub ping_timeout: TimeDelta,
    /// Most pings awaiting their pong at once (bounds memory). Default 16.
    pub max_outstanding_pings: usize,
    /// Most clock samples kept in the estimator window. Default 64.
    pub clock_window: usize,
    /// Samples older than this leave the window (oscillators wander over
    /// minutes, so old samples would bias the drift fit). Default 300 s.
    pub clock_max_sample_age: TimeDelta,
    /// Bound on the frequency difference between two peers' clocks, in ppm:
    /// the prior of the drift fit. Default 1000 ppm (crystals are ±100 ppm,
    /// NTP slewing adds up to 500 ppm).
    pub max_drift_ppm: u32,
    /// Timestamp granularity allowance added on each side of every sample's
    /// offset interval (browsers coarsen `performance.now()` to 100 µs–1 ms).
    /// Default 1 ms.
    pub timestamp_slack: TimeDelta,
    /// A step of the offset estimate larger than this (or samples that no
    /// longer fit one line) counts as a clock jump and starts a new burst.
    /// Default 10 ms.
    pub clock_jump_threshold: TimeDelta,
    /// Samples needed before the engine acts on the clock (it also acts once
    /// the first burst has ended with at least one sample). Default 3.
    pub min_clock_samples: usize,

    // ----- room timeline -----
    /// How far ahead of "now" a host schedules a command's room time, so that
    /// every follower has it before it takes effect, while the lead cannot be
    /// adapted (a member has not reported its latency yet, or
    /// `adaptive_lead` is off). Default 150 ms (one-way 40 ms ± 15 ms plus
    /// retransmission slack on a typical WAN).
    pub lead_time: TimeDelta,
    /// Adapt the lead time to the room (docs/protocol.md §9.3, *Adaptive
    /// lead time*): twice the largest round trip any present member
    /// reported, plus (for a start) the slowest start-up latency, at least
    /// `lead_time_min`, at most `lead_time_max`. Default on.
    pub adaptive_lead: bool,
    /// Shortest adaptive lead. Default 30 ms.
    pub lead_time_min: TimeDelta,
    /// Longest adaptive lead: a member reporting a huge latency delays
    /// commands by at most this. Default 1 s.
    pub lead_time_max: TimeDelta,

    // ----- position filter -----
    /// Player position samples used by the error filter. Default 12.
    pub filter_window: usize,
    /// Samples older than this leave the filter. Default 1.5 s.
    pub filter_max_age: TimeDelta,
    /// Samples needed before the filter yields an estimate. Default 3.
    pub filter_min_samples: usize,

    // ----- correction controller -----
    /// Errors smaller than this are never corrected with an audible rate
    /// change. Default 20 ms.
    pub dead_zone: TimeDelta,
    /// A correction episode ends when the error is below this (hysteresis
    /// against the dead zone). Default 3 ms.
    pub settle_threshold: TimeDelta,
    /// Largest rate nudge, in ppm of the room rate. Default 50 000 (±5 %).
    pub max_nudge_ppm: u32,
    /// Smallest nudge of an active correction, so it ends in bounded time.
    /// Default 5 000 (0.5 %).
    pub min_nudge_ppm: u32,
    /// Largest change of the nudge per second (ramp). Default 25 000 ppm/s
    /// (0 → 5 % in 2 s).
    pub nudge_ramp_ppm_per_sec: u32,
    /// Time constant of the proportional correction: nudge = error / tau.
    /// Default 2 s.
    pub catch_up_tau: TimeDelta,
    /// Smallest change of the player's rate worth a `SetRate` while ramping.
    /// Default 2 500 ppm (0.25 %).
    pub rate_step_ppm: u32,
    /// When a new room state takes effect (a host seek, or a play that
    /// arrived late), a player farther than this from it seeks instead of
    /// catching up by rate. Default 100 ms.
    pub command_seek_threshold: TimeDelta,
    /// Errors at least this large are fixed with a seek. Default 1 s.
    pub seek_threshold: TimeDelta,
    /// Longest a rate correction may take; if the error cannot be removed in
    /// this time at the largest nudge, seek instead. Default 20 s.
    pub max_catch_up: TimeDelta,
    /// Least time between two corrective seeks. Default 3 s.
    pub seek_cooldown: TimeDelta,
    /// Largest continuous trim (drift compensation plus removal of residual
    /// error inside the dead zone), in ppm. Inaudible by design. Default 2 000
    /// (0.2 %, 3.5 cents without pitch correction).
    pub max_trim_ppm: u32,
    /// Time constant with which the trim removes residual error inside the
    /// dead zone. Default 10 s.
    pub trim_tau: TimeDelta,
    /// Smallest trim change worth a `SetRate`; the trim changes only when
    /// its target is a full step away (hysteresis). Default 100 ppm.
    pub trim_step_ppm: u32,
    /// Smoothed errors smaller than this do not move the trim (its own dead
    /// zone, so measurement noise does not make it hunt). Default 2 ms.
    pub trim_dead_zone: TimeDelta,
    /// Least time between two trim changes. Default 5 s.
    pub trim_interval: TimeDelta,
    /// A paused player farther than this from the room position is seeked
    /// (invisible while paused). Default 40 ms (one frame at 25 fps).
    pub paused_seek_threshold: TimeDelta,
    /// First guess of the time from a play or seek command until the player
    /// advances; learned from the player's events afterwards. Default 100 ms
    /// (typical for a browser `video` element); the native driver uses its
    /// player's own hint instead (mpv: 5 ms, `PlayerBackend::startup_hint`).
    pub startup_estimate_initial: TimeDelta,
    /// Upper bound of the learned start-up latency. Default 2 s.
    pub startup_estimate_max: TimeDelta,
    /// A paused player joining a playing room is cued this far beyond where
    /// the room will be once the seek lands (slack for a seek slower than
    /// estimated). Default 100 ms.
    pub cue_margin: TimeDelta,
    /// A paused player at most this far ahead of the room waits for the
    /// room to reach it instead of seeking. Default 1 s.
    pub max_cue_wait: TimeDelta,

    // ----- anti-echo -----
    /// How long a play, pause or rate action of ours may take to show up in
    /// the player before it is retried. Default 3 s.
    pub action_retry: TimeDelta,
    /// How long a seek of ours may take to complete and still be recognised
    /// as ours. Default 30 s.
    pub seek_echo_timeout: TimeDelta,
    /// A seek lands "where we asked" within this. Default 250 ms.
    pub seek_match_tolerance: TimeDelta,
    /// A position jump larger than this without a seek event is a seek.
    /// Default 500 ms.
    pub seek_jump_threshold: TimeDelta,
    /// Two player rates closer than this (ppm) are the same rate. Default 50.
    pub rate_tolerance_ppm: u32,
    /// After a user action on an attached player, the engine waits this long
    /// for the room to answer (the host's command) before enforcing the room
    /// state again. Default 2 s.
    pub intent_hold: TimeDelta,
}

impl Default for SyncConfig {
    fn default() -> Self {
        Self {
            ping_burst_count: 8,
            ping_burst_interval: TimeDelta::from_millis(50),
            ping_interval: TimeDelta::from_secs(1),
            ping_timeout: TimeDelta::from_secs(2),
            max_outstanding_pings: 16,
            clock_window: 64,
            clock_max_sample_age: TimeDelta::from_secs(300),
            max_drift_ppm: 1_000,
            timestamp_slack: TimeDelta::from_millis(1),
            clock_jump_threshold: TimeDelta::from_millis(10),
            min_clock_samples: 3,
            lead_time: TimeDelta::from_millis(150),
            adaptive_lead: true,
            lead_time_min: TimeDelta::from_millis(30),
            lead_time_max: TimeDelta::from_secs(1),
            filter_window: 12,
            filter_max_age: TimeDelta::from_micros(1_500_000),
            filter_min_samples: 3,
            dead_zone: TimeDelta::from_millis(20),
            settle_threshold: TimeDelta::from_millis(3),
            max_nudge_ppm: 50_000,
            min_nudge_ppm: 5_000,
            nudge_ramp_ppm_per_sec: 25_000,
            catch_up_tau: TimeDelta::from_secs(2),
            rate_step_ppm: 2_500,
            command_seek_threshold: TimeDelta::from_millis(100),
            seek_threshold: TimeDelta::from_secs(1),
            max_catch_up: TimeDelta::from_secs(20),
            seek_cooldown: TimeDelta::from_secs(3),
            max_trim_ppm: 2_000,
            trim_tau: TimeDelta::from_secs(10),
            trim_step_ppm: 100,
            trim_dead_zone: TimeDelta::from_millis(2),
            trim_interval: TimeDelta::from_secs(5),
            paused_seek_threshold: TimeDelta::from_millis(40),
            startup_estimate_initial: TimeDelta::from_millis(100),
            startup_estimate_max: TimeDelta::from_secs(2),
            cue_margin: TimeDelta::from_millis(100),
            max_cue_wait: TimeDelta::from_secs(1),
            action_retry: TimeDelta::from_secs(3),
            seek_echo_timeout: TimeDelta::from_secs(30),
            seek_match_tolerance: TimeDelta::from_millis(250),
            seek_jump_threshold: TimeDelta::from_millis(500),
            rate_tolerance_ppm: 50,
            intent_hold: TimeDelta::from_secs(2),
        }
    }
}

/// Upper bound for counts in the config (window sizes, bursts): keeps every
/// per-peer buffer small whatever a caller sets.
pub const MAX_CONFIG_COUNT: usize = 1_024;

fn positive(field: &'static str, v: TimeDelta) -> Result<(), ConfigError> {
    if v > TimeDelta::ZERO {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            reason: "must be positive",
        })
    }
}

fn non_negative(field: &'static str, v: TimeDelta) -> Result<(), ConfigError> {
    if v.is_negative() {
        Err(ConfigError {
            field,
            reason: "must not be negative",
        })
    } else {
        Ok(())
    }
}

fn count(field: &'static str, v: usize) -> Result<(), ConfigError> {
    if (1..=MAX_CONFIG_COUNT).contains(&v) {
        Ok(())
    } else {
        Err(ConfigError {
            field,
            reason: "must be between 1 and MAX_CONFIG_COUNT",
        })
    }
}

impl SyncConfig {
    /// Checks every field's range and the relations between fields.
    ///
    /// # Errors
    /// The first [`ConfigError`] found.
    pub fn check(&self) -> Result<(), ConfigError> {
        count("ping_burst_count", self.ping_burst_count as usize)?;
        positive("ping_burst_interval", self.ping_burst_interval)?;
        positive("ping_interval", self.ping_interval)?;
        positive("ping_timeout", self.ping_timeout)?;
        count("max_outstanding_pings", self.max_outstanding_pings)?;
        count("clock_window", self.clock_window)?;
        positive("clock_max_sample_age", self.clock_max_sample_age)?;
        if !(1..=100_000).contains(&self.max_drift_ppm) {
            return Err(ConfigError {
                field: "max_drift_ppm",
                reason: "must be between 1 and 100000",
            });
        }
        non_negative("timestamp_slack", self.timestamp_slack)?;
        positive("clock_jump_threshold", self.clock_jump_threshold)?;
        count("min_clock_samples", self.min_clock_samples)?;
        non_negative("lead_time", self.lead_time)?;
        non_negative("lead_time_min", self.lead_time_min)?;
        if self.lead_time_max < self.lead_time_min {
            return Err(ConfigError {
                field: "lead_time_max",
                reason: "must not be below lead_time_min",
            });
        }
        count("filter_window", self.filter_window)?;
        positive("filter_max_age", self.filter_max_age)?;
        count("filter_min_samples", self.filter_min_samples)?;
        if self.filter_min_samples > self.filter_window {
            return Err(ConfigError {
                field: "filter_min_samples",
                reason: "must not exceed filter_window",
            });
        }
        non_negative("dead_zone", self.dead_zone)?;
        non_negative("settle_threshold", self.settle_threshold)?;
        if self.settle_threshold > self.dead_zone {
            return Err(ConfigError {
                field: "settle_threshold",
                reason: "must not exceed dead_zone (hysteresis)",
            });
        }
        if !(1..=500_000).contains(&self.max_nudge_ppm) {
            return Err(ConfigError {
                field: "max_nudge_ppm",
                reason: "must be between 1 and 500000 (50 %)",
            });
        }
        if self.min_nudge_ppm > self.max_nudge_ppm {
            return Err(ConfigError {
                field: "min_nudge_ppm",
                reason: "must not exceed max_nudge_ppm",
            });
        }
        if self.nudge_ramp_ppm_per_sec == 0 {
            return Err(ConfigError {
                field: "nudge_ramp_ppm_per_sec",
                reason: "must be positive",
            });
        }
        positive("catch_up_tau", self.catch_up_tau)?;
        if self.rate_step_ppm > self.max_nudge_ppm {
            return Err(ConfigError {
                field: "rate_step_ppm",
                reason: "must not exceed max_nudge_ppm",
            });
        }
        if self.command_seek_threshold < self.dead_zone {
            return Err(ConfigError {
                field: "command_seek_threshold",
                reason: "must not be below dead_zone",
            });
        }
        if self.seek_threshold <= self.dead_zone {
            return Err(ConfigError {
                field: "seek_threshold",
                reason: "must exceed dead_zone",
            });
        }
        positive("max_catch_up", self.max_catch_up)?;
        non_negative("seek_cooldown", self.seek_cooldown)?;
        if self.max_trim_ppm > self.max_nudge_ppm {
            return Err(ConfigError {
                field: "max_trim_ppm",
                reason: "must not exceed max_nudge_ppm",
            });
        }
        positive("trim_tau", self.trim_tau)?;
        non_negative("trim_interval", self.trim_interval)?;
        non_negative("trim_dead_zone", self.trim_dead_zone)?;
        non_negative("paused_seek_threshold", self.paused_seek_threshold)?;
        non_negative("startup_estimate_initial", self.startup_estimate_initial)?;
        non_negative("startup_estimate_max", self.startup_estimate_max)?;
        non_negative("cue_margin", self.cue_margin)?;
        if self.max_cue_wait < self.cue_margin {
            return Err(ConfigError {
                field: "max_cue_wait",
                reason: "must not be below cue_margin",
            });
        }
        positive("action_retry", self.action_retry)?;
        positive("seek_echo_timeout", self.seek_echo_timeout)?;
        non_negative("seek_match_tolerance", self.seek_match_tolerance)?;
        positive("seek_jump_threshold", self.seek_jump_threshold)?;
        non_negative("intent_hold", self.intent_hold)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(SyncConfig::default().check(), Ok(()));
    }

    #[test]
    fn out_of_range_fields_are_refused() {
        let c = SyncConfig {
            clock_window: MAX_CONFIG_COUNT + 1,
            ..SyncConfig::default()
        };
        assert_eq!(c.check().map_err(|e| e.field), Err("clock_window"));
        let c = SyncConfig {
            clock_window: 0,
            ..SyncConfig::default()
        };
        assert_eq!(c.check().map_err(|e| e.field), Err("clock_window"));
        let c = SyncConfig {
            settle_threshold: TimeDelta::from_millis(30),
            ..SyncConfig::default()
        };
        assert_eq!(c.check().map_err(|e| e.field), Err("settle_threshold"));
        let c = SyncConfig {
            seek_threshold: TimeDelta::from_millis(20),
            ..SyncConfig::default()
        };
        assert_eq!(c.check().map_err(|e| e.field), Err("seek_threshold"));
        let c = SyncConfig {
            ping_interval: TimeDelta::ZERO,
            ..SyncConfig::default()
        };
        assert_eq!(c.check().map_err(|e| e.field), Err("ping_interval"));
        let c = SyncConfig {
            max_trim_ppm: 60_000,
            ..SyncConfig::default()
        };
        assert_eq!(c.check().map_err(|e| e.field), Err("max_trim_ppm"));
        let c = SyncConfig {
            max_cue_wait: TimeDelta::from_millis(50),
            ..SyncConfig::default()
        };
        assert_eq!(c.check().map_err(|e| e.field), Err("max_cue_wait"));
        let c = SyncConfig {
            lead_time_max: TimeDelta::from_millis(29),
            ..SyncConfig::default()
        };
        assert_eq!(c.check().map_err(|e| e.field), Err("lead_time_max"));
    }
}
