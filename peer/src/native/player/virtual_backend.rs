//! The core's [`VirtualPlayer`] behind [`PlayerBackend`], driven by tokio
//! time: `--player virtual`, headless peers and tests.
//!
//! It reports a reading every [`VIRTUAL_SAMPLE_INTERVAL`] and each of the
//! player's events (`playing`, `seeked`, `waiting`, `ended`) when it is due.

use std::time::Duration;

use tokio::time::Instant;

use super::{BackendEvent, PlayerBackend, PlayerClock, PlayerError};
use crate::player::PlayerAction;
use crate::virtual_player::{VirtualPlayer, VirtualPlayerConfig};

/// Spacing of periodic readings (the core's position filter is tuned for
/// about 10 readings per second).
pub const VIRTUAL_SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// A [`VirtualPlayer`] on tokio time. See the module docs.
#[derive(Debug)]
pub struct VirtualBackend {
    player: VirtualPlayer,
    cfg: VirtualPlayerConfig,
    clock: PlayerClock,
    interval: Duration,
    next_sample: Instant,
    duration_unreported: bool,
}

impl VirtualBackend {
    /// A paused player at the start of the media, read every
    /// [`VIRTUAL_SAMPLE_INTERVAL`].
    #[must_use]
    pub fn new(cfg: VirtualPlayerConfig, clock: PlayerClock) -> Self {
        Self::with_interval(cfg, clock, VIRTUAL_SAMPLE_INTERVAL)
    }

    /// As [`VirtualBackend::new`] with another reading interval (at least
    /// 1 ms).
    #[must_use]
    pub fn with_interval(cfg: VirtualPlayerConfig, clock: PlayerClock, interval: Duration) -> Self {
        let player = VirtualPlayer::new(cfg.clone(), clock.now());
        Self {
            player,
            cfg,
            clock,
            interval: interval.max(Duration::from_millis(1)),
            next_sample: Instant::now(),
            duration_unreported: true,
        }
    }

    /// The player, e.g. to read its true position in tests.
    #[must_use]
    pub fn player(&self) -> &VirtualPlayer {
        &self.player
    }

    /// The player, e.g. to simulate a user's action or a buffering stall
    /// (changes made here are not known to the core, so they are reported
    /// as the user's).
    pub fn player_mut(&mut self) -> &mut VirtualPlayer {
        &mut self.player
    }

    /// The driver's clock.
    #[must_use]
    pub fn clock(&self) -> PlayerClock {
        self.clock
    }
}

impl PlayerBackend for VirtualBackend {
    async fn next_event(&mut self) -> Result<BackendEvent, PlayerError> {
        loop {
            if self.duration_unreported {
                self.duration_unreported = false;
                return Ok(BackendEvent::Duration(self.cfg.duration));
            }
            let now = Instant::now();
            let local = self.clock.at(now);
            if let Some(o) = self.player.poll_event(local) {
                return Ok(BackendEvent::Observation(o));
            }
            if now >= self.next_sample {
                // Keep the cadence; after a long gap, restart it from now.
                self.next_sample = (self.next_sample + self.interval).max(now);
                return Ok(BackendEvent::Observation(self.player.observe(local)));
            }
            let wake = self
                .player
                .next_event_at()
                .map_or(self.next_sample, |t| self.clock.instant(t))
                .min(self.next_sample);
            // Only sleeping here: cancelling loses nothing.
            tokio::time::sleep_until(wake).await;
        }
    }

    fn apply(&mut self, action: PlayerAction) -> Result<(), PlayerError> {
        self.player.apply(action, self.clock.now());
        Ok(())
    }

    fn load(&mut self, _source: &str) -> Result<(), PlayerError> {
        self.player = VirtualPlayer::new(self.cfg.clone(), self.clock.now());
        self.duration_unreported = true;
        self.next_sample = Instant::now();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::player::{PlayerEvent, PlayerObservation};
    use crate::time::{MediaPos, Rate, TimeDelta};

    async fn next_obs(b: &mut VirtualBackend) -> PlayerObservation {
        loop {
            match b.next_event().await {
                Ok(BackendEvent::Observation(o)) => return o,
                Ok(_) => {}
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[tokio::test]
    async fn reports_duration_readings_and_events_on_tokio_time() {
        let clock = PlayerClock::new(Instant::now());
        let cfg = VirtualPlayerConfig {
            duration: Some(MediaPos::from_millis(60_000)),
            ..VirtualPlayerConfig::default()
        };
        let mut b = VirtualBackend::with_interval(cfg, clock, Duration::from_millis(20));
        assert_eq!(
            b.next_event().await.unwrap(),
            BackendEvent::Duration(Some(MediaPos::from_millis(60_000)))
        );
        let first = next_obs(&mut b).await;
        assert!(first.paused);
        b.apply(PlayerAction::Play).unwrap();
        b.apply(PlayerAction::SetRate {
            rate: Rate::from_f64_clamped(2.0),
        })
        .unwrap();
        // The `playing` event arrives after the start-up latency.
        let mut playing = None;
        for _ in 0..100 {
            let o = next_obs(&mut b).await;
            if o.event == Some(PlayerEvent::Playing) {
                playing = Some(o);
                break;
            }
        }
        let playing = playing.expect("a playing event");
        assert!(!playing.paused);
        // Readings are stamped with the driver's clock and advance at 2x.
        let mut last = playing;
        for _ in 0..10 {
            let o = next_obs(&mut b).await;
            assert!(o.at > last.at);
            last = o;
        }
        let elapsed = last.at.since(playing.at);
        let moved = last.position - playing.position;
        assert_eq!(moved, Rate::from_f64_clamped(2.0).advance(elapsed));
        assert!(last.at <= clock.now());
        assert!(clock.now().since(last.at) < TimeDelta::from_secs(1));
        // A seek is reported by its `seeked` event.
        b.apply(PlayerAction::Seek {
            position: MediaPos::from_millis(30_000),
        })
        .unwrap();
        let mut seeked = None;
        for _ in 0..100 {
            let o = next_obs(&mut b).await;
            if o.event == Some(PlayerEvent::Seeked) {
                seeked = Some(o);
                break;
            }
        }
        let seeked = seeked.expect("a seeked event");
        assert!(seeked.position >= MediaPos::from_millis(30_000));
        // Loading resets to a paused start and re-reports the duration.
        b.load("anything").unwrap();
        assert!(matches!(
            b.next_event().await,
            Ok(BackendEvent::Duration(Some(_)))
        ));
        let o = next_obs(&mut b).await;
        assert!(o.paused);
        assert_eq!(o.position, MediaPos::ZERO);
    }

    #[tokio::test]
    async fn next_event_is_cancel_safe() {
        let clock = PlayerClock::new(Instant::now());
        let mut b = VirtualBackend::with_interval(
            VirtualPlayerConfig::default(),
            clock,
            Duration::from_millis(50),
        );
        // Cancel many waits half-way; the backend keeps its cadence.
        let mut got = 0;
        for _ in 0..20 {
            if tokio::time::timeout(Duration::from_millis(7), b.next_event())
                .await
                .is_ok()
            {
                got += 1;
            }
        }
        assert!(got >= 2, "{got}");
        assert!(matches!(
            b.next_event().await,
            Ok(BackendEvent::Observation(_))
        ));
    }
}
