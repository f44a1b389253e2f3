//! Player backends for the tokio driver.
//!
//! The sans-I/O core sees the player only through
//! [`PlayerObservation`](crate::player::PlayerObservation)s and
//! [`PlayerAction`](crate::player::PlayerAction)s. A [`PlayerBackend`] owns a
//! real (or virtual) player and translates both ways:
//!
//! - [`PlayerBackend::next_event`] yields [`BackendEvent`]s: readings stamped
//!   with [`LocalTime`] from the driver's [`PlayerClock`], the media duration
//!   when it becomes known, and refused commands. It is cancel-safe, so the
//!   driver can `select!` on it next to its sockets and timers.
//! - [`PlayerBackend::apply`] queues an action without waiting for the player
//!   (the core's anti-echo matches the player's later reports against it).
//!
//! Implementations:
//! - [`virtual_backend::VirtualBackend`]: the core's
//!   [`VirtualPlayer`](crate::virtual_player::VirtualPlayer) driven by tokio
//!   time (`--player virtual`, headless use, tests).
//! - [`mpv::MpvBackend`] (Unix): a real `mpv` over its JSON IPC socket
//!   (`--player mpv`); [`ipc`] is its bounded line protocol.
//!
//! [`AnyBackend`] picks one at run time.

use std::future::Future;

use tokio::time::Instant;

use crate::player::{PlayerAction, PlayerObservation};
use crate::time::{LocalTime, MediaPos, TimeDelta};

pub mod ipc;
#[cfg(unix)]
pub mod mpv;
pub mod virtual_backend;

#[cfg(all(test, unix))]
mod tests;

/// Converts tokio [`Instant`]s to the core's [`LocalTime`]: microseconds since
/// an origin the driver chooses once (every component of one peer must share
/// it, so player readings and network timestamps are comparable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayerClock {
    origin: Instant,
}

impl PlayerClock {
    /// A clock counting from `origin`.
    #[must_use]
    pub fn new(origin: Instant) -> Self {
        Self { origin }
    }

    /// The origin.
    #[must_use]
    pub fn origin(&self) -> Instant {
        self.origin
    }

    /// `LocalTime` of `instant` (instants before the origin map to zero).
    #[must_use]
    pub fn at(&self, instant: Instant) -> LocalTime {
        LocalTime::from_duration(instant.saturating_duration_since(self.origin))
    }

    /// `LocalTime` now.
    #[must_use]
    pub fn now(&self) -> LocalTime {
        self.at(Instant::now())
    }

    /// The tokio instant of a `LocalTime` (negative times map to the origin).
    #[must_use]
    pub fn instant(&self, t: LocalTime) -> Instant {
        let us = u64::try_from(t.as_micros()).unwrap_or(0);
        self.origin + std::time::Duration::from_micros(us)
    }
}

/// Something a backend reports.
#[derive(Debug, Clone, PartialEq)]
pub enum BackendEvent {
    /// A reading of the player: feed to
    /// [`SyncEngine::handle_player`](crate::sync::SyncEngine::handle_player).
    Observation(PlayerObservation),
    /// The media duration became known or changed (`None`: unknown, e.g. a
    /// live stream or no media): feed to
    /// [`SyncEngine::set_duration`](crate::sync::SyncEngine::set_duration).
    Duration(Option<MediaPos>),
    /// The player refused a command (e.g. a seek with no media loaded). The
    /// player is still usable; the core retries per its own rules.
    CommandFailed {
        /// What was refused (`"seek"`, `"pause"`, `"speed"`, `"loadfile"`).
        command: &'static str,
        /// The player's reason.
        reason: String,
    },
}

/// Why a backend stopped or refused a call.
#[derive(Debug, thiserror::Error)]
pub enum PlayerError {
    /// The player program could not be started.
    #[error("could not start the player `{program}`: {source}")]
    Spawn {
        /// The program name or path.
        program: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The player's IPC socket did not accept a connection in time.
    #[error("the player's IPC socket was not ready within {waited_ms} ms")]
    StartupTimeout {
        /// How long we waited.
        waited_ms: u64,
    },
    /// The player process exited.
    #[error("the player exited ({status})")]
    Exited {
        /// Its exit status, as the OS reports it.
        status: String,
    },
    /// The IPC connection closed (the player quit or the socket went away).
    #[error("the player's IPC connection closed")]
    Closed,
    /// The player did not answer a request in time.
    #[error("the player did not answer `{command}` within {timeout_ms} ms")]
    Timeout {
        /// The request that timed out.
        command: &'static str,
        /// The limit.
        timeout_ms: u64,
    },
    /// The player sent something we cannot parse or that breaks a limit.
    #[error("player IPC protocol error: {0}")]
    Protocol(#[from] ipc::IpcError),
    /// Too many actions are queued (the player is not keeping up).
    #[error("the player's action queue is full ({capacity} queued)")]
    QueueFull {
        /// The queue's capacity.
        capacity: usize,
    },
    /// Local I/O failed (temp dir, socket).
    #[error("player I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// A player the driver controls. See the module docs.
pub trait PlayerBackend {
    /// The next event. Cancel-safe: dropping the future loses nothing.
    ///
    /// # Errors
    /// A [`PlayerError`] when the player is gone (exited, connection closed,
    /// unresponsive, protocol violation); the backend is then unusable and
    /// every later call returns an error too.
    fn next_event(&mut self) -> impl Future<Output = Result<BackendEvent, PlayerError>> + Send;

    /// Queues `action` for the player; does not wait for it to take effect.
    ///
    /// # Errors
    /// [`PlayerError::QueueFull`] when the player is not keeping up, or the
    /// error that stopped the backend.
    fn apply(&mut self, action: PlayerAction) -> Result<(), PlayerError>;

    /// Loads media (a local path or a URL), paused at its start.
    ///
    /// # Errors
    /// As for [`PlayerBackend::apply`].
    fn load(&mut self, source: &str) -> Result<(), PlayerError>;

    /// How long a `Play` typically takes to start this player: the sync
    /// engine's start-up guess until it has measured one (and what the
    /// member reports for the host's lead time meanwhile). Default: the
    /// engine's `startup_estimate_initial` (100 ms, a `video` element).
    fn startup_hint(&self) -> TimeDelta {
        crate::sync_config::SyncConfig::default().startup_estimate_initial
    }
}

/// A backend chosen at run time (`--player virtual|mpv`).
#[derive(Debug)]
pub enum AnyBackend {
    /// The virtual player.
    Virtual(virtual_backend::VirtualBackend),
    /// mpv over JSON IPC.
    #[cfg(unix)]
    Mpv(mpv::MpvBackend),
}

impl PlayerBackend for AnyBackend {
    async fn next_event(&mut self) -> Result<BackendEvent, PlayerError> {
        match self {
            Self::Virtual(v) => v.next_event().await,
            #[cfg(unix)]
            Self::Mpv(m) => m.next_event().await,
        }
    }

    fn apply(&mut self, action: PlayerAction) -> Result<(), PlayerError> {
        match self {
            Self::Virtual(v) => v.apply(action),
            #[cfg(unix)]
            Self::Mpv(m) => m.apply(action),
        }
    }

    fn load(&mut self, source: &str) -> Result<(), PlayerError> {
        match self {
            Self::Virtual(v) => v.load(source),
            #[cfg(unix)]
            Self::Mpv(m) => m.load(source),
        }
    }

    fn startup_hint(&self) -> TimeDelta {
        match self {
            Self::Virtual(v) => v.startup_hint(),
            #[cfg(unix)]
            Self::Mpv(m) => m.startup_hint(),
        }
    }
}
