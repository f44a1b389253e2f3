//! A virtual player backend that records what it is told and lets the bench
//! read the true on-screen position of every peer at one real instant.
//!
//! Same behaviour as the peer's `VirtualBackend` (periodic readings plus the
//! player's own events), but the [`VirtualPlayer`] sits behind a short-held
//! mutex shared with a [`Probe`], and every applied action is logged with the
//! process-wide [`std::time::Instant`] at which the driver handed it over.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use watchparty_peer::native::player::{BackendEvent, PlayerBackend, PlayerClock, PlayerError};
use watchparty_peer::player::PlayerAction;
use watchparty_peer::virtual_player::{VirtualPlayer, VirtualPlayerConfig};

/// Reading interval (the peer's `VIRTUAL_SAMPLE_INTERVAL`).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);

/// Most actions kept per peer (bounded; a bench run issues a few hundred).
pub const MAX_LOGGED_ACTIONS: usize = 100_000;

/// One applied action.
#[derive(Debug, Clone, Copy)]
pub struct Applied {
    /// When the driver handed it to the player.
    pub at: std::time::Instant,
    /// What.
    pub action: PlayerAction,
}

#[derive(Debug)]
struct Shared {
    player: VirtualPlayer,
    log: Vec<Applied>,
}

/// The bench's view of one peer's player.
#[derive(Debug, Clone)]
pub struct Probe {
    shared: Arc<Mutex<Shared>>,
    clock: PlayerClock,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic while holding this lock only happens in a bench bug; the data
    // stays usable either way.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Probe {
    /// True position (ms) at the real instant `at`.
    pub fn position_ms(&self, at: std::time::Instant) -> f64 {
        let local = self.clock.at(Instant::from_std(at));
        lock(&self.shared).player.position(local).as_micros() as f64 / 1000.0
    }

    /// Current rate.
    pub fn rate(&self) -> f64 {
        lock(&self.shared).player.rate().as_f64()
    }

    /// Actions applied so far.
    pub fn log(&self) -> Vec<Applied> {
        lock(&self.shared).log.clone()
    }
}

/// The backend given to the driver. See the module docs.
#[derive(Debug)]
pub struct ProbeBackend {
    shared: Arc<Mutex<Shared>>,
    cfg: VirtualPlayerConfig,
    clock: PlayerClock,
    next_sample: Instant,
    duration_unreported: bool,
}

impl ProbeBackend {
    /// A paused player and the probe reading it.
    pub fn new(cfg: VirtualPlayerConfig, clock: PlayerClock) -> (Self, Probe) {
        let shared = Arc::new(Mutex::new(Shared {
            player: VirtualPlayer::new(cfg.clone(), clock.now()),
            log: Vec::new(),
        }));
        let probe = Probe {
            shared: shared.clone(),
            clock,
        };
        (
            Self {
                shared,
                cfg,
                clock,
                next_sample: Instant::now(),
                duration_unreported: true,
            },
            probe,
        )
    }
}

impl PlayerBackend for ProbeBackend {
    async fn next_event(&mut self) -> Result<BackendEvent, PlayerError> {
        loop {
            if self.duration_unreported {
                self.duration_unreported = false;
                return Ok(BackendEvent::Duration(self.cfg.duration));
            }
            let now = Instant::now();
            let local = self.clock.at(now);
            let wake = {
                let mut s = lock(&self.shared);
                if let Some(o) = s.player.poll_event(local) {
                    return Ok(BackendEvent::Observation(o));
                }
                if now >= self.next_sample {
                    self.next_sample = (self.next_sample + SAMPLE_INTERVAL).max(now);
                    return Ok(BackendEvent::Observation(s.player.observe(local)));
                }
                s.player
                    .next_event_at()
                    .map_or(self.next_sample, |t| self.clock.instant(t))
                    .min(self.next_sample)
            };
            tokio::time::sleep_until(wake).await;
        }
    }

    fn apply(&mut self, action: PlayerAction) -> Result<(), PlayerError> {
        let at = std::time::Instant::now();
        let mut s = lock(&self.shared);
        s.player.apply(action, self.clock.at(Instant::from_std(at)));
        if s.log.len() < MAX_LOGGED_ACTIONS {
            s.log.push(Applied { at, action });
        }
        Ok(())
    }

    fn load(&mut self, _source: &str) -> Result<(), PlayerError> {
        let mut s = lock(&self.shared);
        s.player = VirtualPlayer::new(self.cfg.clone(), self.clock.now());
        self.duration_unreported = true;
        self.next_sample = Instant::now();
        Ok(())
    }
}
