//! The player as the core sees it, and anti-echo.
//!
//! A driver reports what its player does ([`PlayerObservation`]) and applies
//! what the core asks ([`PlayerAction`]). Every action we issue makes the
//! player emit events too (a seek we applied fires `seeked`, our pause flips
//! `paused`, a rate nudge changes `playbackRate`). [`EchoTracker`] remembers
//! what we asked for, so those echoes are never mistaken for the user's
//! intent, while a change we did not ask for — the user clicking pause,
//! dragging the seek bar, choosing 1.5× — is reported as a [`UserIntent`].
//!
//! The rule: a change that moves the player *toward* something we recently
//! commanded is an echo; a change away from it is the user's. Buffering and
//! reaching the end of the media are neither.

use std::collections::VecDeque;

use crate::sync_config::SyncConfig;
use crate::time::{LocalTime, MediaPos, Rate, TimeDelta};

/// What the core asks the player to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerAction {
    /// Start or resume playback.
    Play,
    /// Pause playback.
    Pause,
    /// Jump to a position (keeping play/pause).
    Seek {
        /// Target position.
        position: MediaPos,
    },
    /// Set the playback rate.
    SetRate {
        /// New rate.
        rate: Rate,
    },
}

/// A discrete player event reported with an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayerEvent {
    /// A seek completed (`seeked`; mpv `playback-restart` after a seek).
    Seeked,
    /// Playback stalled for data (`waiting`; mpv `paused-for-cache`).
    Waiting,
    /// Playback actually started or resumed (`playing`).
    Playing,
    /// The media reached its end (`ended`; mpv `eof-reached`).
    Ended,
}

/// One reading of the player's state, taken at local time `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerObservation {
    /// When the reading was taken.
    pub at: LocalTime,
    /// Current position.
    pub position: MediaPos,
    /// Paused by command (not by buffering).
    pub paused: bool,
    /// Current playback rate.
    pub rate: Rate,
    /// Stalled waiting for data (or not yet able to play).
    pub buffering: bool,
    /// At the end of the media.
    pub ended: bool,
    /// The event that prompted this reading, if any.
    pub event: Option<PlayerEvent>,
}

/// A change of the player that the user made (not an echo of ours).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserIntent {
    /// The user started playback at `position`.
    Play {
        /// Where the player was.
        position: MediaPos,
    },
    /// The user paused at `position`.
    Pause {
        /// Where the player was.
        position: MediaPos,
    },
    /// The user jumped to `position`.
    Seek {
        /// Where the player landed.
        position: MediaPos,
    },
    /// The user changed the rate.
    Rate {
        /// The new rate.
        rate: Rate,
    },
}

/// The result of classifying one observation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Classified {
    /// The user's action, if the change was not ours.
    pub intent: Option<UserIntent>,
    /// The position jumped or play/pause/buffering changed: position history
    /// before this reading no longer predicts the future.
    pub discontinuity: bool,
    /// One of our seeks completed, after this long.
    pub seek_latency: Option<TimeDelta>,
    /// One of our plays took effect (player advancing), after this long.
    pub start_latency: Option<TimeDelta>,
    /// Buffering started (`Some(true)`) or ended (`Some(false)`).
    pub buffering_changed: Option<bool>,
    /// The number of changes recognised as echoes of our actions.
    pub echoes: u32,
}

/// Most recent actions remembered for echo matching (bounded memory).
pub const MAX_REMEMBERED_ACTIONS: usize = 16;

#[derive(Debug, Clone, Copy)]
struct Issued {
    action: PlayerAction,
    at: LocalTime,
    /// For seeks: a position jump matching it was already seen (its
    /// `Seeked` event is still expected).
    jump_seen: bool,
}

#[derive(Debug, Clone)]
struct Params {
    action_window: TimeDelta,
    seek_window: TimeDelta,
    seek_tolerance: TimeDelta,
    jump_threshold: TimeDelta,
    rate_tolerance_ppm: i64,
}

/// Remembers what we asked the player to do and classifies what it reports.
#[derive(Debug, Clone)]
pub struct EchoTracker {
    params: Params,
    recent: VecDeque<Issued>,
    commanded_paused: Option<bool>,
    commanded_rate: Option<Rate>,
    /// Our last `Play`, until the player confirms it advances.
    awaiting_start: Option<LocalTime>,
    /// The last seek attributed to the user (its `Seeked` event, or its
    /// jump, may arrive in a later reading: the same action, not a new one).
    user_seek: Option<(MediaPos, LocalTime)>,
    last: Option<PlayerObservation>,
}

impl EchoTracker {
    /// A tracker with the anti-echo thresholds of `config`.
    #[must_use]
    pub fn new(config: &SyncConfig) -> Self {
        Self {
            params: Params {
                action_window: config.action_retry,
                seek_window: config.seek_echo_timeout,
                seek_tolerance: config.seek_match_tolerance,
                jump_threshold: config.seek_jump_threshold,
                rate_tolerance_ppm: i64::from(config.rate_tolerance_ppm),
            },
            recent: VecDeque::new(),
            commanded_paused: None,
            commanded_rate: None,
            awaiting_start: None,
            user_seek: None,
            last: None,
        }
    }

    /// Records an action we are about to give the player.
    pub fn issued(&mut self, action: PlayerAction, now: LocalTime) {
        match action {
            PlayerAction::Play => {
                self.commanded_paused = Some(false);
                // A start behind a seek still under way measures the seek
                // too: learning it would make every later start early.
                self.awaiting_start = (!self.seek_pending(now)).then_some(now);
            }
            PlayerAction::Pause => {
                self.commanded_paused = Some(true);
                self.awaiting_start = None;
            }
            PlayerAction::SetRate { rate } => self.commanded_rate = Some(rate),
            PlayerAction::Seek { .. } => {
                // Only the newest seek can still complete.
                self.recent
                    .retain(|i| !matches!(i.action, PlayerAction::Seek { .. }));
                // A start still awaited now includes this seek.
                self.awaiting_start = None;
            }
        }
        if self.recent.len() >= MAX_REMEMBERED_ACTIONS {
            self.recent.pop_front();
        }
        self.recent.push_back(Issued {
            action,
            at: now,
            jump_seen: false,
        });
    }

    /// Forgets what we commanded (free-watch): every later change of the
    /// player is the user's.
    pub fn forget(&mut self) {
        self.recent.clear();
        self.user_seek = None;
        self.commanded_paused = None;
        self.commanded_rate = None;
        self.awaiting_start = None;
    }

    /// The latest observation.
    #[must_use]
    pub fn last(&self) -> Option<&PlayerObservation> {
        self.last.as_ref()
    }

    /// The play/pause state we last commanded.
    #[must_use]
    pub fn commanded_paused(&self) -> Option<bool> {
        self.commanded_paused
    }

    /// The rate we last commanded.
    #[must_use]
    pub fn commanded_rate(&self) -> Option<Rate> {
        self.commanded_rate
    }

    /// When `action` was issued within the retry window before `now` and is
    /// still the latest of its kind (play/pause, seek, rate), if so: don't
    /// issue it again yet. A contrary action in between (pause after play)
    /// makes it new again.
    #[must_use]
    pub fn recently_issued(&self, action: PlayerAction, now: LocalTime) -> Option<LocalTime> {
        let class = |a: &PlayerAction| match a {
            PlayerAction::Play | PlayerAction::Pause => 0,
            PlayerAction::Seek { .. } => 1,
            PlayerAction::SetRate { .. } => 2,
        };
        self.recent
            .iter()
            .rev()
            .find(|i| class(&i.action) == class(&action))
            .filter(|i| i.action == action && now.since(i.at) <= self.window(i.action))
            .map(|i| i.at)
    }

    /// Whether one of our seeks has not completed yet.
    #[must_use]
    pub fn seek_pending(&self, now: LocalTime) -> bool {
        self.recent.iter().any(|i| {
            matches!(i.action, PlayerAction::Seek { .. })
                && now.since(i.at) <= self.params.seek_window
        })
    }

    /// Whether one of our seeks toward `target` (give or take `tolerance`)
    /// has not completed yet. A pending seek elsewhere does not count: a new
    /// target supersedes it (players abort a seek for a newer one).
    #[must_use]
    pub fn seek_pending_toward(
        &self,
        target: MediaPos,
        tolerance: TimeDelta,
        now: LocalTime,
    ) -> bool {
        self.recent.iter().any(|i| match i.action {
            PlayerAction::Seek { position } => {
                now.since(i.at) <= self.params.seek_window && (position - target).abs() <= tolerance
            }
            _ => false,
        })
    }

    /// Whether our last `Play` has not shown the player advancing yet.
    #[must_use]
    pub fn start_pending(&self, now: LocalTime) -> bool {
        self.awaiting_start
            .is_some_and(|t| now.since(t) <= self.params.action_window)
    }

    fn window(&self, action: PlayerAction) -> TimeDelta {
        match action {
            PlayerAction::Seek { .. } => self.params.seek_window,
            _ => self.params.action_window,
        }
    }

    fn expire(&mut self, now: LocalTime) {
        let (a, s) = (self.params.action_window, self.params.seek_window);
        self.recent.retain(|i| {
            let w = if matches!(i.action, PlayerAction::Seek { .. }) {
                s
            } else {
                a
            };
            now.since(i.at) <= w
        });
        if self.awaiting_start.is_some_and(|t| now.since(t) > a) {
            self.awaiting_start = None;
        }
    }

    fn same_rate(&self, a: Rate, b: Rate) -> bool {
        a.ppm_relative_to(b).abs() <= self.params.rate_tolerance_ppm
    }

    /// Whether the move from `last` to `obs` is continuous playback (no jump).
    fn continuous(&self, last: &PlayerObservation, obs: &PlayerObservation) -> bool {
        let elapsed = obs.at.since(last.at).max(TimeDelta::ZERO);
        let fastest = last.rate.max(obs.rate);
        let lo = last.position - self.params.jump_threshold;
        let hi = last.position + fastest.advance(elapsed) + self.params.jump_threshold;
        obs.position >= lo && obs.position <= hi
    }

    /// Index of our seek that a landing at `obs` matches.
    fn matching_seek(&self, obs: &PlayerObservation) -> Option<usize> {
        self.recent.iter().rposition(|i| match i.action {
            PlayerAction::Seek { position } => {
                let played = obs.rate.advance(obs.at.since(i.at).max(TimeDelta::ZERO));
                obs.position + self.params.seek_tolerance >= position
                    && obs.position <= position + played + self.params.seek_tolerance
            }
            _ => false,
        })
    }

    fn paused_echo(&self, paused: bool) -> bool {
        let want = if paused {
            PlayerAction::Pause
        } else {
            PlayerAction::Play
        };
        self.commanded_paused == Some(paused) || self.recent.iter().any(|i| i.action == want)
    }

    fn rate_echo(&self, rate: Rate) -> bool {
        self.commanded_rate.is_some_and(|r| self.same_rate(r, rate))
            || self.recent.iter().any(|i| match i.action {
                PlayerAction::SetRate { rate: r } => self.same_rate(r, rate),
                _ => false,
            })
    }

    /// Classifies a new observation against the previous one and what we
    /// commanded. The first observation only sets the baseline.
    pub fn observe(&mut self, obs: PlayerObservation) -> Classified {
        self.expire(obs.at);
        let mut c = Classified::default();
        let Some(last) = self.last.replace(obs) else {
            c.discontinuity = true;
            return c;
        };
        if obs.at < last.at {
            // Out-of-order reading: keep the newer baseline, ignore it.
            self.last = Some(last);
            return c;
        }

        // Seeks: an explicit event or a jump of the position.
        let jumped = !self.continuous(&last, &obs);
        let seeked = obs.event == Some(PlayerEvent::Seeked);
        if jumped || seeked {
            c.discontinuity = true;
            match self.matching_seek(&obs) {
                Some(idx) => {
                    c.echoes += 1;
                    let issued = self.recent[idx];
                    if seeked {
                        c.seek_latency = Some(obs.at.since(issued.at));
                        self.recent.remove(idx);
                    } else if let Some(i) = self.recent.get_mut(idx) {
                        i.jump_seen = true;
                    }
                }
                None if self.same_user_seek(&obs) => {}
                None if jumped || !self.recent_jump_absorbed() => {
                    c.intent = Some(UserIntent::Seek {
                        position: obs.position,
                    });
                    self.user_seek = Some((obs.position, obs.at));
                }
                None => {}
            }
        }

        // Play / pause.
        if obs.paused != last.paused {
            c.discontinuity = true;
            if self.paused_echo(obs.paused) {
                c.echoes += 1;
            } else if obs.paused && obs.ended {
                // The media ended by itself.
            } else {
                c.intent = Some(if obs.paused {
                    UserIntent::Pause {
                        position: obs.position,
                    }
                } else {
                    UserIntent::Play {
                        position: obs.position,
                    }
                });
                self.commanded_paused = Some(obs.paused);
            }
        }

        // Start of playback after our Play.
        if let Some(t) = self.awaiting_start {
            let playing_event = obs.event == Some(PlayerEvent::Playing);
            let moved = !last.paused && obs.position > last.position && !jumped;
            if !obs.paused && !obs.buffering && (playing_event || moved) {
                let started = if playing_event {
                    obs.at
                } else {
                    // Back-date to when the movement began.
                    (obs.at - obs.rate.time_for(obs.position - last.position)).max(last.at)
                };
                c.start_latency = Some(started.since(t).max(TimeDelta::ZERO));
                self.awaiting_start = None;
            }
        }

        if obs.buffering != last.buffering {
            c.discontinuity = true;
            c.buffering_changed = Some(obs.buffering);
        }

        // Rate.
        if !self.same_rate(obs.rate, last.rate) {
            if self.rate_echo(obs.rate) {
                c.echoes += 1;
            } else {
                if c.intent.is_none() {
                    c.intent = Some(UserIntent::Rate { rate: obs.rate });
                }
                self.commanded_rate = Some(obs.rate);
            }
        }
        c
    }

    /// Whether `obs` is the second sign (event after jump, or jump after
    /// event) of the seek already attributed to the user.
    fn same_user_seek(&mut self, obs: &PlayerObservation) -> bool {
        let Some((pos, at)) = self.user_seek else {
            return false;
        };
        let elapsed = obs.at.since(at).max(TimeDelta::ZERO);
        if elapsed > self.params.seek_window {
            self.user_seek = None;
            return false;
        }
        let played = obs.rate.advance(elapsed);
        let same = obs.position + self.params.seek_tolerance >= pos
            && obs.position <= pos + played + self.params.seek_tolerance;
        if same {
            // Both signs seen: a later seek to the same place is new.
            self.user_seek = None;
        }
        same
    }

    /// A jump matching one of our seeks was seen; its late `Seeked` event is
    /// an echo even if the position moved on since.
    fn recent_jump_absorbed(&mut self) -> bool {
        if let Some(idx) = self.recent.iter().position(|i| i.jump_seen) {
            self.recent.remove(idx);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(at_ms: i64, pos_ms: u64, paused: bool) -> PlayerObservation {
        PlayerObservation {
            at: LocalTime::from_millis(at_ms),
            position: MediaPos::from_millis(pos_ms),
            paused,
            rate: Rate::NORMAL,
            buffering: false,
            ended: false,
            event: None,
        }
    }

    fn t(ms: i64) -> LocalTime {
        LocalTime::from_millis(ms)
    }

    #[test]
    fn our_pause_and_play_are_echoes_users_are_intents() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        assert!(e.observe(obs(0, 0, true)).discontinuity);
        e.issued(PlayerAction::Play, t(10));
        let c = e.observe(obs(100, 0, false));
        assert_eq!((c.intent, c.echoes), (None, 1));
        e.observe(obs(200, 100, false));
        // The user pauses: not ours.
        let c = e.observe(obs(300, 200, true));
        assert_eq!(
            c.intent,
            Some(UserIntent::Pause {
                position: MediaPos::from_millis(200)
            })
        );
        // Much later we pause and play again; both are echoes.
        e.issued(PlayerAction::Play, t(10_000));
        assert_eq!(e.observe(obs(10_050, 200, false)).intent, None);
        e.issued(PlayerAction::Pause, t(20_000));
        assert_eq!(e.observe(obs(20_010, 10_150, true)).intent, None);
        // The user plays: intent.
        let c = e.observe(obs(30_000, 10_150, false));
        assert!(matches!(c.intent, Some(UserIntent::Play { .. })));
    }

    #[test]
    fn a_start_behind_a_pending_seek_teaches_no_start_latency() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        e.observe(obs(0, 0, true));
        // A seek (350 ms to land) and a play right behind it: the player
        // moves only after the seek, which is not its start-up latency.
        e.issued(
            PlayerAction::Seek {
                position: MediaPos::from_millis(20_000),
            },
            t(10),
        );
        e.issued(PlayerAction::Play, t(20));
        let mut landed = obs(360, 20_000, true);
        landed.event = Some(PlayerEvent::Seeked);
        assert_eq!(e.observe(landed).start_latency, None);
        let c = e.observe(obs(400, 20_000, false));
        assert_eq!(c.start_latency, None);
        assert_eq!(e.observe(obs(500, 20_100, false)).start_latency, None);
        // A play with no seek under way is measured.
        e.issued(PlayerAction::Pause, t(1_000));
        e.observe(obs(1_010, 20_600, true));
        e.issued(PlayerAction::Play, t(2_000));
        e.observe(obs(2_030, 20_600, true));
        let mut playing = obs(2_060, 20_600, false);
        playing.event = Some(PlayerEvent::Playing);
        assert_eq!(
            e.observe(playing).start_latency,
            Some(TimeDelta::from_millis(60))
        );
        // A seek issued while a start is awaited cancels the measurement.
        e.issued(PlayerAction::Pause, t(3_000));
        e.observe(obs(3_010, 21_500, true));
        e.issued(PlayerAction::Play, t(4_000));
        e.issued(
            PlayerAction::Seek {
                position: MediaPos::from_millis(30_000),
            },
            t(4_005),
        );
        let mut playing = obs(4_400, 30_000, false);
        playing.event = Some(PlayerEvent::Playing);
        assert_eq!(e.observe(playing).start_latency, None);
    }

    #[test]
    fn our_seek_is_an_echo_even_with_a_late_seeked_event() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        e.observe(obs(0, 0, false));
        e.issued(
            PlayerAction::Seek {
                position: MediaPos::from_millis(60_000),
            },
            t(50),
        );
        // The position jumps first, then the event arrives later.
        let c = e.observe(obs(100, 60_000, false));
        assert_eq!((c.intent, c.echoes, c.discontinuity), (None, 1, true));
        e.observe(obs(200, 60_000, false));
        let mut ev = obs(700, 60_400, false);
        ev.event = Some(PlayerEvent::Seeked);
        let c = e.observe(ev);
        assert_eq!(c.intent, None);
        assert!(!e.seek_pending(t(800)));
        // A user seek (event without a jump matching ours) is an intent.
        let mut user = obs(1_000, 60_700, false);
        user.event = Some(PlayerEvent::Seeked);
        assert!(matches!(
            e.observe(user).intent,
            Some(UserIntent::Seek { .. })
        ));
        // A big jump nobody asked for is a user seek too.
        let c = e.observe(obs(1_100, 5_000, false));
        assert_eq!(
            c.intent,
            Some(UserIntent::Seek {
                position: MediaPos::from_millis(5_000)
            })
        );
    }

    #[test]
    fn a_user_seek_is_one_intent_even_with_jump_and_event() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        e.observe(obs(0, 0, false));
        let c = e.observe(obs(100, 30_000, false));
        assert!(matches!(c.intent, Some(UserIntent::Seek { .. })));
        let mut ev = obs(300, 30_100, false);
        ev.event = Some(PlayerEvent::Seeked);
        assert_eq!(e.observe(ev).intent, None);
        // A new seek by the user later is a new intent.
        let mut again = obs(5_000, 30_100, false);
        again.event = Some(PlayerEvent::Seeked);
        assert!(matches!(
            e.observe(again).intent,
            Some(UserIntent::Seek { .. })
        ));
    }

    #[test]
    fn seek_event_reports_latency() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        e.observe(obs(0, 0, true));
        e.issued(
            PlayerAction::Seek {
                position: MediaPos::from_millis(2_000),
            },
            t(100),
        );
        let mut ev = obs(340, 2_000, true);
        ev.event = Some(PlayerEvent::Seeked);
        let c = e.observe(ev);
        assert_eq!(c.seek_latency, Some(TimeDelta::from_millis(240)));
        assert_eq!(c.intent, None);
    }

    #[test]
    fn rate_nudges_are_echoes_even_when_overtaken() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        e.observe(obs(0, 0, false));
        let r1 = Rate::NORMAL.scaled_ppm(2_500);
        let r2 = Rate::NORMAL.scaled_ppm(5_000);
        e.issued(PlayerAction::SetRate { rate: r1 }, t(10));
        e.issued(PlayerAction::SetRate { rate: r2 }, t(20));
        let mut o = obs(100, 100, false);
        o.rate = r1;
        assert_eq!(e.observe(o).intent, None);
        o = obs(200, 200, false);
        o.rate = r2;
        assert_eq!(e.observe(o).intent, None);
        // The user picks 1.5x.
        o = obs(300, 300, false);
        o.rate = Rate::from_f64_clamped(1.5);
        assert_eq!(
            e.observe(o).intent,
            Some(UserIntent::Rate {
                rate: Rate::from_f64_clamped(1.5)
            })
        );
    }

    #[test]
    fn buffering_and_ending_are_not_intents() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        e.issued(PlayerAction::Play, t(0));
        e.observe(obs(0, 0, false));
        let mut b = obs(100, 100, false);
        b.buffering = true;
        b.event = Some(PlayerEvent::Waiting);
        let c = e.observe(b);
        assert_eq!((c.intent, c.buffering_changed), (None, Some(true)));
        // Stalled for 3 s: no jump, no intent.
        let mut b2 = obs(3_100, 100, false);
        b2.buffering = true;
        assert_eq!(e.observe(b2).intent, None);
        let c = e.observe(obs(3_200, 150, false));
        assert_eq!((c.intent, c.buffering_changed), (None, Some(false)));
        let mut end = obs(10_000, 7_000, true);
        end.ended = true;
        end.event = Some(PlayerEvent::Ended);
        assert_eq!(e.observe(end).intent, None);
    }

    #[test]
    fn forget_makes_every_change_the_users() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        e.issued(PlayerAction::Play, t(0));
        e.observe(obs(0, 0, true));
        e.forget();
        assert!(matches!(
            e.observe(obs(100, 0, false)).intent,
            Some(UserIntent::Play { .. })
        ));
        assert!(matches!(
            e.observe(obs(200, 100, true)).intent,
            Some(UserIntent::Pause { .. })
        ));
    }

    #[test]
    fn a_contrary_action_makes_a_repeat_new() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        e.issued(PlayerAction::Pause, t(0));
        assert_eq!(e.recently_issued(PlayerAction::Pause, t(100)), Some(t(0)));
        assert_eq!(e.recently_issued(PlayerAction::Pause, t(5_000)), None);
        e.issued(PlayerAction::Play, t(200));
        assert_eq!(e.recently_issued(PlayerAction::Pause, t(300)), None);
        assert_eq!(e.recently_issued(PlayerAction::Play, t(300)), Some(t(200)));
    }

    #[test]
    fn memory_is_bounded() {
        let mut e = EchoTracker::new(&SyncConfig::default());
        for i in 0..1_000 {
            e.issued(
                PlayerAction::SetRate {
                    rate: Rate::NORMAL.scaled_ppm(i),
                },
                t(i),
            );
        }
        assert!(e.recent.len() <= MAX_REMEMBERED_ACTIONS);
    }
}
