//! A real `mpv` behind [`PlayerBackend`], over its JSON IPC socket.
//!
//! [`MpvBackend::spawn`] starts `mpv --idle=yes --keep-open=yes --pause
//! --input-ipc-server=<socket>` with the socket in a private temporary
//! directory (mode 0700, removed on drop); [`MpvBackend::attach`] connects to
//! the socket of an mpv the user started. A task owns the connection:
//!
//! - it observes `time-pos`, `pause`, `speed`, `paused-for-cache`,
//!   `seeking`, `eof-reached` and `duration`, and the `seek` and
//!   `playback-restart` events;
//! - it reads the position with `get_property` every
//!   [`MpvConfig::sample_interval`] (and at once after any state change) and
//!   stamps the reading with the local time taken right after the reply was
//!   read: `audio-pts` when the media has audio, else `time-pos`;
//! - it applies actions with `set_property pause`, `seek <s>
//!   absolute+exact`, `set_property speed`, and loads media with `loadfile`.
//!
//! Mapping to the core's model: `pause` → `paused`; `speed` → `rate`;
//! `paused-for-cache` → `buffering` (with `waiting`/`playing` events);
//! the end of a seek (`playback-restart` after `seek`, the moment mpv shows
//! the new frame) → the `seeked` event; `eof-reached` → `ended`. `seeking`
//! itself is not buffering (the core already waits for its seeks), but no
//! position is extrapolated while it is set.
//!
//! **Accuracy.** `audio-pts` is the position of the audio being played,
//! updated per audio chunk: it follows the local clock within about 1 ms
//! plus the IPC round trip (measured against our clock: a constant offset
//! of −3.6 ms after an unpause, sub-millisecond spread). `time-pos` is
//! coarser: it is the timestamp of the video frame mpv has *queued*, so it
//! moves in steps of one frame (40 ms at 25 fps) and runs up to a frame
//! ahead of what is shown. Without audio we remember when each new
//! `time-pos` value was announced (`property-change`) and, while playing,
//! report `value + speed × (now − announced)`, bounded by
//! [`MAX_EXTRAPOLATION`]; that removes the steps but not the up-to-one-frame
//! lead. What remains in both cases is the delivery jitter of mpv's replies
//! and of our task's wake-ups (a few ms on a loaded 2-core machine; the
//! `mpv_follows_*` test prints the residuals of a line fit and the start-up
//! latency the readings imply), which the core's position filter averages
//! over its window.
//!
//! Failure: mpv exiting, the socket closing, a request unanswered for
//! [`MpvConfig::request_timeout`], or a line breaking the protocol
//! ([`super::ipc`]) ends the task; [`PlayerBackend::next_event`] then returns
//! the [`PlayerError`]. Queues are bounded ([`ACTION_QUEUE`],
//! [`EVENT_QUEUE`], [`MAX_PENDING_REQUESTS`]).

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::{Child, Command as ProcessCommand};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ipc::{Change, Command, Event, LineDecoder, Message, Property};
use super::{BackendEvent, PlayerBackend, PlayerClock, PlayerError};
use crate::player::{PlayerAction, PlayerEvent, PlayerObservation};
use crate::time::{MediaPos, Rate, TimeDelta};

/// Default spacing of `time-pos` readings (the core's filter is tuned for
/// about 10 per second).
pub const SAMPLE_INTERVAL: Duration = Duration::from_millis(100);
/// Default limit for mpv to answer any request; mpv answers in
/// milliseconds, so a silence this long means it hangs.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Default limit for a spawned mpv to open its IPC socket.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// After the socket closes, how long to wait for a spawned mpv's exit
/// status (to report [`PlayerError::Exited`] rather than
/// [`PlayerError::Closed`]).
pub const EXIT_GRACE: Duration = Duration::from_millis(500);
/// Most actions queued for the task.
pub const ACTION_QUEUE: usize = 32;
/// Most events queued for the driver; newer readings are dropped while it
/// is full (the driver is not polling).
pub const EVENT_QUEUE: usize = 64;
/// Most requests awaiting mpv's reply; further samples are skipped and
/// further commands refused ([`BackendEvent::CommandFailed`]).
pub const MAX_PENDING_REQUESTS: usize = 64;
/// Most player events (`seeked`, `waiting`, …) held for the next reading.
pub const MAX_HELD_EVENTS: usize = 8;
/// Longest span a reading is extrapolated past the moment mpv announced the
/// frame (longer means mpv is not presenting frames: report the raw value).
pub const MAX_EXTRAPOLATION: Duration = Duration::from_millis(250);
/// Largest distance between `audio-pts` and the video position for the
/// audio clock to be trusted (a frame or two of lead, plus slack).
pub const AUDIO_VIDEO_AGREEMENT: Duration = Duration::from_millis(150);
/// Bytes read from the socket at once.
const READ_CHUNK: usize = 8 * 1024;
/// Spacing of connection attempts while a spawned mpv starts.
const CONNECT_RETRY: Duration = Duration::from_millis(20);

/// How to start or reach mpv.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpvConfig {
    /// The program to spawn (default `mpv`, looked up in `PATH`).
    pub program: PathBuf,
    /// Extra arguments (e.g. `--vo=null`, `--ao=null`, `--no-config`).
    pub args: Vec<String>,
    /// Spacing of `time-pos` readings (default [`SAMPLE_INTERVAL`]).
    pub sample_interval: Duration,
    /// Limit for any request's reply (default [`REQUEST_TIMEOUT`]).
    pub request_timeout: Duration,
    /// Limit for the IPC socket to come up (default [`STARTUP_TIMEOUT`]).
    pub startup_timeout: Duration,
}

impl Default for MpvConfig {
    fn default() -> Self {
        Self {
            program: PathBuf::from("mpv"),
            args: Vec::new(),
            sample_interval: SAMPLE_INTERVAL,
            request_timeout: REQUEST_TIMEOUT,
            startup_timeout: STARTUP_TIMEOUT,
        }
    }
}

/// A private temporary directory (mode 0700), removed with its contents on
/// drop.
#[derive(Debug)]
pub(crate) struct PrivateDir {
    path: PathBuf,
}

impl PrivateDir {
    /// Creates `<tmp>/<prefix>-<random>` readable only by this user.
    pub(crate) fn new(prefix: &str) -> Result<Self, PlayerError> {
        use ring::rand::SecureRandom;
        use std::os::unix::fs::DirBuilderExt;
        let rng = ring::rand::SystemRandom::new();
        let mut last = None;
        for _ in 0..4 {
            let mut bytes = [0u8; 8];
            rng.fill(&mut bytes)
                .map_err(|_| std::io::Error::other("no system randomness"))?;
            let path = std::env::temp_dir().join(format!("{prefix}-{}", hex::encode(bytes)));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .unwrap_or_else(|| std::io::Error::other("temp dir"))
            .into())
    }

    /// Its path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for PrivateDir {
    fn drop(&mut self) {
        // Best effort: a leftover empty temp dir is harmless.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// mpv over JSON IPC. See the module docs.
#[derive(Debug)]
pub struct MpvBackend {
    actions: mpsc::Sender<Command>,
    events: mpsc::Receiver<BackendEvent>,
    task: Option<JoinHandle<PlayerError>>,
    pid: Option<u32>,
    socket: PathBuf,
    // Dropped after the task is aborted (see `Drop`), removing the socket.
    _dir: Option<PrivateDir>,
}

impl MpvBackend {
    /// Spawns mpv with its IPC socket in a private temporary directory and
    /// connects to it. mpv starts idle and paused; [`PlayerBackend::load`]
    /// gives it media.
    ///
    /// # Errors
    /// [`PlayerError::Spawn`] if the program cannot run,
    /// [`PlayerError::Exited`] if it exits during start-up,
    /// [`PlayerError::StartupTimeout`] if its socket does not come up.
    pub async fn spawn(config: MpvConfig, clock: PlayerClock) -> Result<Self, PlayerError> {
        let dir = PrivateDir::new("watchparty-mpv")?;
        let socket = dir.path().join("mpv.sock");
        let mut ipc_arg = std::ffi::OsString::from("--input-ipc-server=");
        ipc_arg.push(&socket);
        let mut child = ProcessCommand::new(&config.program)
            .args(["--idle=yes", "--keep-open=yes", "--pause", "--no-terminal"])
            .arg(ipc_arg)
            .args(&config.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| PlayerError::Spawn {
                program: config.program.display().to_string(),
                source,
            })?;
        let pid = child.id();
        let started = Instant::now();
        let stream = loop {
            if let Some(status) = child.try_wait()? {
                return Err(exited(status));
            }
            match UnixStream::connect(&socket).await {
                Ok(s) => break s,
                Err(_) if started.elapsed() < config.startup_timeout => {
                    tokio::time::sleep(CONNECT_RETRY).await;
                }
                Err(_) => {
                    // `kill_on_drop` ends the child.
                    return Err(PlayerError::StartupTimeout {
                        waited_ms: millis(config.startup_timeout),
                    });
                }
            }
        };
        tracing::debug!(pid, "mpv started");
        Ok(Self::start(
            stream,
            Some(child),
            pid,
            socket,
            Some(dir),
            config,
            clock,
        ))
    }

    /// Connects to the IPC socket of an mpv started elsewhere (e.g. by the
    /// user with `--input-ipc-server=PATH`). Dropping the backend leaves
    /// that mpv running.
    ///
    /// # Errors
    /// [`PlayerError::Io`] if the socket refuses the connection.
    pub async fn attach(
        socket: &Path,
        config: MpvConfig,
        clock: PlayerClock,
    ) -> Result<Self, PlayerError> {
        let stream = UnixStream::connect(socket).await?;
        Ok(Self::start(
            stream,
            None,
            None,
            socket.to_path_buf(),
            None,
            config,
            clock,
        ))
    }

    fn start(
        stream: UnixStream,
        child: Option<Child>,
        pid: Option<u32>,
        socket: PathBuf,
        dir: Option<PrivateDir>,
        config: MpvConfig,
        clock: PlayerClock,
    ) -> Self {
        let (actions, action_rx) = mpsc::channel(ACTION_QUEUE);
        let (event_tx, events) = mpsc::channel(EVENT_QUEUE);
        let (reader, writer) = stream.into_split();
        let session = Session {
            clock,
            config,
            reader,
            writer,
            decoder: LineDecoder::default(),
            events: event_tx,
            pending: VecDeque::new(),
            next_id: 1,
            state: MpvState::default(),
            held: VecDeque::new(),
            want_sample: false,
            want_time_pos: false,
            duration_unsent: None,
        };
        let task = tokio::spawn(session.run(action_rx, child));
        Self {
            actions,
            events,
            task: Some(task),
            pid,
            socket,
            _dir: dir,
        }
    }

    /// The process id of a spawned mpv (`None` when attached).
    #[must_use]
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The IPC socket path.
    #[must_use]
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn send(&self, cmd: Command) -> Result<(), PlayerError> {
        self.actions.try_send(cmd).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => PlayerError::QueueFull {
                capacity: ACTION_QUEUE,
            },
            mpsc::error::TrySendError::Closed(_) => PlayerError::Closed,
        })
    }
}

impl Drop for MpvBackend {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            // Drops the child (`kill_on_drop`) and the connection.
            t.abort();
        }
    }
}

impl PlayerBackend for MpvBackend {
    async fn next_event(&mut self) -> Result<BackendEvent, PlayerError> {
        if let Some(ev) = self.events.recv().await {
            return Ok(ev);
        }
        // The task ended and every event before its end was delivered.
        let Some(task) = &mut self.task else {
            return Err(PlayerError::Closed);
        };
        let result = task.await;
        self.task = None;
        Err(result.unwrap_or(PlayerError::Closed))
    }

    fn apply(&mut self, action: PlayerAction) -> Result<(), PlayerError> {
        self.send(match action {
            PlayerAction::Play => Command::SetPause(false),
            PlayerAction::Pause => Command::SetPause(true),
            PlayerAction::Seek { position } => Command::SeekAbsolute(position.as_secs_f64()),
            PlayerAction::SetRate { rate } => Command::SetSpeed(rate.as_f64()),
        })
    }

    fn load(&mut self, source: &str) -> Result<(), PlayerError> {
        self.send(Command::SetPause(true))?;
        self.send(Command::LoadFile(source.to_owned()))
    }

    fn startup_hint(&self) -> TimeDelta {
        MPV_STARTUP_HINT
    }
}

/// mpv resumes within a few milliseconds of `pause=no` once the file is
/// loaded (its output is already open), far below a `video` element's
/// ~100 ms: with the browser's guess, the first start under mpv came 100 ms
/// early and was corrected by rate for ~5 s (issue #17). The engine
/// replaces the hint with its first measurement.
pub const MPV_STARTUP_HINT: TimeDelta = TimeDelta::from_millis(5);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn exited(status: ExitStatus) -> PlayerError {
    PlayerError::Exited {
        status: status.to_string(),
    }
}

/// What mpv last told us.
#[derive(Debug)]
struct MpvState {
    pause: bool,
    speed: f64,
    paused_for_cache: bool,
    seeking: bool,
    eof: bool,
    /// A `seek` event was seen and its `playback-restart` not yet.
    seek_started: bool,
    /// The latest announced `time-pos` and when we read the announcement.
    announced: Option<(f64, Instant)>,
}

impl MpvState {
    /// Whether the position should be moving.
    fn advancing(&self) -> bool {
        !self.pause && !self.paused_for_cache && !self.seeking && !self.eof
    }

    /// Whether an `audio-pts` of `secs` read at `at` is usable: finite,
    /// playing, and within [`AUDIO_VIDEO_AGREEMENT`] of the video position
    /// (the audio clock lags while audio restarts after a seek or unpause).
    fn agrees(&self, secs: f64, at: Instant) -> bool {
        let Some((v, when)) = self.announced else {
            return false;
        };
        let video = v + self.speed * at.saturating_duration_since(when).as_secs_f64();
        secs.is_finite()
            && self.advancing()
            && (secs - video).abs() <= AUDIO_VIDEO_AGREEMENT.as_secs_f64()
    }
}

impl Default for MpvState {
    fn default() -> Self {
        Self {
            pause: true,
            speed: 1.0,
            paused_for_cache: false,
            seeking: false,
            eof: false,
            seek_started: false,
            announced: None,
        }
    }
}

#[derive(Debug)]
struct Pending {
    id: u64,
    command: Command,
    sent: Instant,
}

/// The task owning the connection.
#[derive(Debug)]
struct Session {
    clock: PlayerClock,
    config: MpvConfig,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    decoder: LineDecoder,
    events: mpsc::Sender<BackendEvent>,
    pending: VecDeque<Pending>,
    next_id: u64,
    state: MpvState,
    held: VecDeque<PlayerEvent>,
    want_sample: bool,
    want_time_pos: bool,
    duration_unsent: Option<Option<MediaPos>>,
}

/// Why the session loop stopped early (`Err`) — a [`PlayerError`].
type Step = Result<(), PlayerError>;

async fn wait_child(child: &mut Option<Child>) -> std::io::Result<ExitStatus> {
    match child {
        Some(c) => c.wait().await,
        None => std::future::pending().await,
    }
}

impl Session {
    async fn run(
        mut self,
        mut actions: mpsc::Receiver<Command>,
        mut child: Option<Child>,
    ) -> PlayerError {
        let err = self.run_inner(&mut actions, &mut child).await;
        let err = match err {
            PlayerError::Closed => match child.as_mut() {
                // The socket closed: report the exit status if mpv died.
                Some(c) => match tokio::time::timeout(EXIT_GRACE, c.wait()).await {
                    Ok(Ok(status)) => exited(status),
                    _ => PlayerError::Closed,
                },
                None => PlayerError::Closed,
            },
            other => other,
        };
        tracing::debug!(error = %err, "mpv backend stopped");
        err
    }

    async fn run_inner(
        &mut self,
        actions: &mut mpsc::Receiver<Command>,
        child: &mut Option<Child>,
    ) -> PlayerError {
        for p in Property::ALL {
            if let Err(e) = self.request(Command::Observe(p)).await {
                return e;
            }
        }
        let mut tick = tokio::time::interval(self.config.sample_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut buf = vec![0u8; READ_CHUNK];
        loop {
            let deadline = self
                .pending
                .front()
                .map(|p| (p.sent + self.config.request_timeout, p.command.name()));
            let step: Step = tokio::select! {
                status = wait_child(child) => {
                    return match status {
                        Ok(s) => exited(s),
                        Err(e) => PlayerError::Io(e),
                    };
                }
                read = self.reader.read(&mut buf) => {
                    let at = Instant::now();
                    match read {
                        Ok(0) => return PlayerError::Closed,
                        Ok(n) => self.received(buf.get(..n).unwrap_or_default(), at),
                        // mpv died with data unread: same as a close.
                        Err(e) if is_disconnect(&e) => return PlayerError::Closed,
                        Err(e) => return PlayerError::Io(e),
                    }
                }
                cmd = actions.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    // The backend was dropped.
                    None => return PlayerError::Closed,
                },
                _ = tick.tick() => {
                    self.want_sample = true;
                    Ok(())
                }
                () = sleep_until_opt(deadline.map(|d| d.0)) => {
                    let command = deadline.map_or("request", |d| d.1);
                    return PlayerError::Timeout {
                        command,
                        timeout_ms: millis(self.config.request_timeout),
                    };
                }
            };
            if let Err(e) = step {
                return e;
            }
            let sample = if self.want_time_pos {
                // `audio-pts` was unavailable: fall back at once.
                self.want_time_pos = false;
                Some(Command::GetTimePos)
            } else if self.want_sample && !self.sample_in_flight() {
                self.want_sample = false;
                // `audio-pts` is stale while paused and around seeks.
                Some(if self.state.advancing() {
                    Command::GetAudioPts
                } else {
                    Command::GetTimePos
                })
            } else {
                None
            };
            if let Some(cmd) = sample
                && let Err(e) = self.request(cmd).await
            {
                return e;
            }
            if let Some(d) = self.duration_unsent {
                self.emit_duration(d);
            }
            if self.events.is_closed() {
                return PlayerError::Closed;
            }
        }
    }

    fn sample_in_flight(&self) -> bool {
        self.pending
            .iter()
            .any(|p| matches!(p.command, Command::GetTimePos | Command::GetAudioPts))
    }

    /// Sends `cmd` with a fresh request id (the write itself is bounded by
    /// the request timeout: mpv not reading is mpv hanging).
    async fn request(&mut self, cmd: Command) -> Step {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let line = cmd.encode(id);
        let name = cmd.name();
        match tokio::time::timeout(self.config.request_timeout, self.writer.write_all(&line)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) if is_disconnect(&e) => return Err(PlayerError::Closed),
            Ok(Err(e)) => return Err(PlayerError::Io(e)),
            Err(_) => {
                return Err(PlayerError::Timeout {
                    command: name,
                    timeout_ms: millis(self.config.request_timeout),
                });
            }
        }
        self.pending.push_back(Pending {
            id,
            command: cmd,
            sent: Instant::now(),
        });
        Ok(())
    }

    async fn command(&mut self, cmd: Command) -> Step {
        if self.pending.len() >= MAX_PENDING_REQUESTS {
            self.emit(BackendEvent::CommandFailed {
                command: cmd.name(),
                reason: format!("{MAX_PENDING_REQUESTS} requests already await mpv's reply"),
            });
            return Ok(());
        }
        self.request(cmd).await?;
        // Read the effect as soon as possible.
        self.want_sample = true;
        Ok(())
    }

    fn received(&mut self, data: &[u8], at: Instant) -> Step {
        for msg in self.decoder.feed(data)? {
            match msg {
                Message::Reply { request_id, result } => self.reply(request_id, result, at),
                Message::Event(ev) => self.event(ev, at),
            }
        }
        Ok(())
    }

    fn reply(&mut self, id: u64, result: Result<Value, String>, at: Instant) {
        let Some(idx) = self.pending.iter().position(|p| p.id == id) else {
            // Not ours (another client's id space is separate; ignore).
            return;
        };
        let Some(p) = self.pending.remove(idx) else {
            return;
        };
        match (p.command, result) {
            (Command::GetAudioPts, Ok(v)) => {
                match v.as_f64().filter(|s| self.state.agrees(*s, at)) {
                    Some(secs) => self.reading(secs, at, true),
                    None => self.want_time_pos = true,
                }
            }
            // No audio (or not started yet): read the video position.
            (Command::GetAudioPts, Err(_)) => self.want_time_pos = true,
            (Command::GetTimePos, Ok(v)) => {
                if let Some(secs) = v.as_f64().filter(|s| s.is_finite()) {
                    self.reading(secs, at, false);
                }
            }
            // No media: nothing to report.
            (Command::GetTimePos, Err(_)) => {}
            (cmd, Err(reason)) => self.emit(BackendEvent::CommandFailed {
                command: cmd.name(),
                reason,
            }),
            (_, Ok(_)) => {}
        }
    }

    fn hold(&mut self, ev: PlayerEvent) {
        if self.held.len() >= MAX_HELD_EVENTS {
            self.held.pop_front();
        }
        self.held.push_back(ev);
        self.want_sample = true;
    }

    fn event(&mut self, ev: Event, at: Instant) {
        let s = &mut self.state;
        let held = match ev {
            Event::PropertyChange(c) => match c {
                Change::TimePos(Some(t)) => {
                    if s.announced.is_none_or(|(v, _)| v != t) {
                        s.announced = Some((t, at));
                    }
                    None
                }
                Change::TimePos(None) => {
                    s.announced = None;
                    None
                }
                Change::Pause(Some(p)) if p != s.pause => {
                    s.pause = p;
                    self.want_sample = true;
                    None
                }
                Change::Speed(Some(v)) if v != s.speed => {
                    s.speed = v;
                    self.want_sample = true;
                    None
                }
                Change::PausedForCache(Some(b)) if b != s.paused_for_cache => {
                    s.paused_for_cache = b;
                    Some(if b {
                        PlayerEvent::Waiting
                    } else {
                        PlayerEvent::Playing
                    })
                }
                Change::Seeking(Some(b)) => {
                    s.seeking = b;
                    self.want_sample = true;
                    None
                }
                Change::EofReached(Some(b)) if b != s.eof => {
                    s.eof = b;
                    self.want_sample = true;
                    b.then_some(PlayerEvent::Ended)
                }
                Change::Duration(d) => {
                    let d = d.filter(|d| *d >= 0.0).map(MediaPos::from_secs_f64);
                    self.emit_duration(d);
                    None
                }
                _ => None,
            },
            Event::Seek => {
                s.seek_started = true;
                None
            }
            Event::PlaybackRestart if s.seek_started => {
                s.seek_started = false;
                Some(PlayerEvent::Seeked)
            }
            Event::StartFile => {
                s.announced = None;
                s.eof = false;
                s.seek_started = false;
                None
            }
            Event::PlaybackRestart | Event::Shutdown | Event::Other => None,
        };
        if let Some(ev) = held {
            self.hold(ev);
        }
    }

    /// A position reply `secs` read at `at` (`exact`: from `audio-pts`,
    /// else a `time-pos` frame timestamp): one observation per held event
    /// (or one without).
    fn reading(&mut self, secs: f64, at: Instant, exact: bool) {
        let advancing = self.state.advancing();
        let s = &mut self.state;
        let mut position = secs;
        match s.announced {
            _ if exact => {}
            Some((v, when)) if v == secs => {
                let since = at.saturating_duration_since(when);
                if advancing && since <= MAX_EXTRAPOLATION {
                    position += s.speed * since.as_secs_f64();
                }
            }
            // The reply is newer than any announcement: the frame just
            // changed.
            _ => s.announced = Some((secs, at)),
        }
        let obs = PlayerObservation {
            at: self.clock.at(at),
            position: MediaPos::from_secs_f64(position),
            paused: s.pause,
            rate: Rate::from_f64_clamped(s.speed),
            buffering: s.paused_for_cache,
            ended: s.eof,
            event: None,
        };
        if self.held.is_empty() {
            self.emit(BackendEvent::Observation(obs));
        }
        while let Some(ev) = self.held.pop_front() {
            self.emit(BackendEvent::Observation(PlayerObservation {
                event: Some(ev),
                ..obs
            }));
        }
    }

    fn emit_duration(&mut self, d: Option<MediaPos>) {
        match self.events.try_send(BackendEvent::Duration(d)) {
            Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => self.duration_unsent = None,
            // Retried after the next step: the duration must not be lost.
            Err(mpsc::error::TrySendError::Full(_)) => self.duration_unsent = Some(d),
        }
    }

    fn emit(&mut self, ev: BackendEvent) {
        // A full queue means the driver is not polling: drop the newest
        // reading rather than grow (readings are periodic).
        let _ = self.events.try_send(ev);
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn is_disconnect(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::BrokenPipe
            | std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::NotConnected
    )
}
