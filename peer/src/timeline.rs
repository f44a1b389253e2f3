//! The room timeline: which media position should be on screen at which
//! room time.
//!
//! Every host command is state-carrying: "from room time `T`, position `P`,
//! rate `R`, playing or paused" ([`PlaybackState`]). The host picks `T` a
//! little in the future (the lead time) so that every follower has the
//! command before it takes effect and all act at the same instant, instead
//! of each acting on arrival. A follower that receives it late simply finds
//! `T` in the past and joins the line where it is by then.

use crate::time::{MediaPos, Rate, RoomTime};

/// The room's playback state from room time `at` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaybackState {
    /// Media position at room time `at`.
    pub position: MediaPos,
    /// Room time from which this state holds.
    pub at: RoomTime,
    /// Playback rate (also kept while paused).
    pub rate: Rate,
    /// Paused at `position`, or playing from it.
    pub paused: bool,
}

impl PlaybackState {
    /// Playing from `position` at room time `at`.
    #[must_use]
    pub const fn playing(position: MediaPos, at: RoomTime, rate: Rate) -> Self {
        Self {
            position,
            at,
            rate,
            paused: false,
        }
    }

    /// Paused at `position` from room time `at`.
    #[must_use]
    pub const fn paused(position: MediaPos, at: RoomTime, rate: Rate) -> Self {
        Self {
            position,
            at,
            rate,
            paused: true,
        }
    }

    /// The position this state gives at room time `t` (held at `position`
    /// before `at` and while paused).
    #[must_use]
    pub fn position_at(&self, t: RoomTime) -> MediaPos {
        if self.paused || t <= self.at {
            self.position
        } else {
            self.position + self.rate.advance(t - self.at)
        }
    }

    /// Whether `other` describes the same motion from `other.at` on: both
    /// paused at the same position, or both playing at the same rate on the
    /// same line (within `tolerance_us`). A periodic `State` heartbeat is
    /// equivalent to the command it repeats.
    #[must_use]
    pub fn equivalent(&self, other: &Self, tolerance_us: i64) -> bool {
        if self.paused != other.paused || self.rate != other.rate {
            return false;
        }
        let at = self.at.max(other.at);
        (self.position_at(at) - other.position_at(at))
            .abs()
            .as_micros()
            <= tolerance_us
    }
}

/// What the room expects at one room time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expected {
    /// Where the media should be.
    pub position: MediaPos,
    /// Whether it should be advancing.
    pub playing: bool,
    /// The room rate in effect.
    pub rate: Rate,
    /// A state that takes effect later (room time of the change).
    pub next_change: Option<RoomTime>,
    /// The position reached the end of the media.
    pub ended: bool,
}

/// Positions of two states that differ by at most this are the same line
/// (µs): one wire millisecond of rounding plus slack.
pub const EQUIVALENCE_TOLERANCE_US: i64 = 2_000;

/// The room timeline: the latest state, and the one it replaces until the
/// latest takes effect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeline {
    latest: PlaybackState,
    previous: Option<PlaybackState>,
    duration: Option<MediaPos>,
    generation: u64,
}

impl Timeline {
    /// A timeline starting with `state`.
    #[must_use]
    pub fn new(state: PlaybackState) -> Self {
        Self {
            latest: state,
            previous: None,
            duration: None,
            generation: 0,
        }
    }

    /// Sets the media duration (positions clamp to it; reaching it ends).
    pub fn set_duration(&mut self, duration: Option<MediaPos>) {
        self.duration = duration;
    }

    /// The media duration, if known.
    #[must_use]
    pub fn duration(&self) -> Option<MediaPos> {
        self.duration
    }

    /// The latest state (the one to put in a `State` snapshot).
    #[must_use]
    pub fn latest(&self) -> &PlaybackState {
        &self.latest
    }

    /// Counts real changes (not equivalent re-sends).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Applies a new state. Returns `false` (and changes nothing) when it is
    /// equivalent to the latest one — a repeated or heartbeat state.
    pub fn apply(&mut self, state: PlaybackState) -> bool {
        if state.equivalent(&self.latest, EQUIVALENCE_TOLERANCE_US) && state.at >= self.latest.at {
            return false;
        }
        // Whatever was in effect just before the new state starts stays in
        // effect until then.
        let before = self.segment_before(state.at);
        self.previous = Some(before);
        self.latest = state;
        self.generation += 1;
        true
    }

    /// The state in effect just before room time `t`.
    fn segment_before(&self, t: RoomTime) -> PlaybackState {
        if t > self.latest.at {
            self.latest
        } else {
            self.previous.unwrap_or(self.latest)
        }
    }

    /// What the room expects at room time `t`.
    #[must_use]
    pub fn expected_at(&self, t: RoomTime) -> Expected {
        let (position, playing, rate, next_change) = if t >= self.latest.at {
            let l = &self.latest;
            (l.position_at(t), !l.paused, l.rate, None)
        } else {
            match self.previous {
                // Playing until the change: keep playing.
                Some(p) if !p.paused => (p.position_at(t), true, p.rate, Some(self.latest.at)),
                // Paused (or nothing before): wait at the new position, so a
                // scheduled start can pre-seek and buffer.
                _ => (
                    self.latest.position,
                    false,
                    self.latest.rate,
                    Some(self.latest.at),
                ),
            }
        };
        match self.duration {
            Some(d) if position >= d => Expected {
                position: d,
                playing: false,
                rate,
                next_change,
                ended: true,
            },
            _ => Expected {
                position,
                playing,
                rate,
                next_change,
                ended: false,
            },
        }
    }

    // ----- host helpers: build the next state from this timeline -----

    /// Play from the current position (or `position`) starting at room time `at`.
    #[must_use]
    pub fn play_at(&self, at: RoomTime, position: Option<MediaPos>) -> PlaybackState {
        let e = self.expected_at(at);
        PlaybackState::playing(position.unwrap_or(e.position), at, e.rate)
    }

    /// Pause at whatever position the room reaches at room time `at`.
    #[must_use]
    pub fn pause_at(&self, at: RoomTime) -> PlaybackState {
        let e = self.expected_at(at);
        PlaybackState::paused(e.position, at, e.rate)
    }

    /// Jump to `position` at room time `at`, keeping play/pause unless
    /// `paused` says otherwise.
    #[must_use]
    pub fn seek_at(&self, at: RoomTime, position: MediaPos, paused: Option<bool>) -> PlaybackState {
        let e = self.expected_at(at);
        PlaybackState {
            position,
            at,
            rate: e.rate,
            paused: paused.unwrap_or(!e.playing),
        }
    }

    /// Change the rate at room time `at`, continuing from the position then.
    #[must_use]
    pub fn rate_at(&self, at: RoomTime, rate: Rate) -> PlaybackState {
        let e = self.expected_at(at);
        PlaybackState {
            position: e.position,
            at,
            rate,
            paused: !e.playing,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::TimeDelta;

    fn ms(v: i64) -> RoomTime {
        RoomTime::from_millis(v)
    }

    fn pos(v: u64) -> MediaPos {
        MediaPos::from_millis(v)
    }

    #[test]
    fn playing_state_advances_paused_holds() {
        let p = PlaybackState::playing(pos(10_000), ms(1_000), Rate::NORMAL);
        assert_eq!(p.position_at(ms(500)), pos(10_000));
        assert_eq!(p.position_at(ms(3_000)), pos(12_000));
        let double = Rate::from_milli(2_000).unwrap_or_default();
        let p2 = PlaybackState::playing(pos(0), ms(0), double);
        assert_eq!(p2.position_at(ms(1_500)), pos(3_000));
        let z = PlaybackState::paused(pos(7), ms(0), Rate::NORMAL);
        assert_eq!(z.position_at(ms(99_999)), pos(7));
    }

    #[test]
    fn scheduled_play_waits_at_the_new_position() {
        let mut t = Timeline::new(PlaybackState::paused(pos(5_000), ms(0), Rate::NORMAL));
        assert!(t.apply(PlaybackState::playing(
            pos(20_000),
            ms(10_000),
            Rate::NORMAL
        )));
        let before = t.expected_at(ms(9_900));
        assert_eq!(before.position, pos(20_000));
        assert!(!before.playing);
        assert_eq!(before.next_change, Some(ms(10_000)));
        let after = t.expected_at(ms(10_250));
        assert!(after.playing);
        assert_eq!(after.position, pos(20_250));
        assert_eq!(after.next_change, None);
    }

    #[test]
    fn scheduled_pause_keeps_playing_until_it_takes_effect() {
        let mut t = Timeline::new(PlaybackState::playing(pos(0), ms(0), Rate::NORMAL));
        let pause = t.pause_at(ms(5_000));
        assert_eq!(pause.position, pos(5_000));
        assert!(t.apply(pause));
        assert!(t.expected_at(ms(4_999)).playing);
        assert_eq!(t.expected_at(ms(4_999)).position, pos(4_999));
        assert!(!t.expected_at(ms(5_000)).playing);
        assert_eq!(t.expected_at(ms(60_000)).position, pos(5_000));
        // A second change scheduled before the first took effect replaces it
        // and the playing segment stays in effect until then.
        assert!(t.apply(t.seek_at(ms(4_000), pos(100_000), Some(false))));
        assert_eq!(t.expected_at(ms(3_000)).position, pos(3_000));
        assert_eq!(t.expected_at(ms(4_500)).position, pos(100_500));
    }

    #[test]
    fn heartbeat_of_same_line_is_not_a_change() {
        let mut t = Timeline::new(PlaybackState::playing(pos(0), ms(0), Rate::NORMAL));
        let g = t.generation();
        assert!(!t.apply(PlaybackState::playing(
            pos(60_000),
            ms(60_000),
            Rate::NORMAL
        )));
        assert!(!t.apply(PlaybackState::playing(
            pos(60_001),
            ms(60_000),
            Rate::NORMAL
        )));
        assert_eq!(t.generation(), g);
        assert!(t.apply(PlaybackState::playing(
            pos(60_010),
            ms(60_000),
            Rate::NORMAL
        )));
        let rate = t.rate_at(ms(70_000), Rate::from_milli(1_500).unwrap_or_default());
        assert_eq!(rate.position, pos(70_010));
        assert!(t.apply(rate));
        assert_eq!(t.expected_at(ms(72_000)).position, pos(73_010));
    }

    #[test]
    fn duration_clamps_and_ends() {
        let mut t = Timeline::new(PlaybackState::playing(pos(0), ms(0), Rate::NORMAL));
        t.set_duration(Some(pos(10_000)));
        let e = t.expected_at(ms(12_000));
        assert!(e.ended);
        assert!(!e.playing);
        assert_eq!(e.position, pos(10_000));
        assert!(!t.expected_at(ms(9_000)).ended);
        assert_eq!(
            t.expected_at(ms(9_000)).position - pos(9_000),
            TimeDelta::ZERO
        );
    }
}
