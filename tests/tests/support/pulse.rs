//! A private PulseAudio daemon for the acoustic measure: user mode, its own
//! runtime directory and socket in a temporary directory (no system or user
//! configuration read beyond the daemon's defaults, nothing written outside
//! that directory), `--exit-idle-time=-1` (it stays up however long the
//! players take to start), no realtime scheduling.
//!
//! One **sink per player** (a `module-remap-sink`, mono) feeds one channel
//! of a single multichannel null sink ([`RECORD_SINK`]); recording that
//! sink's monitor with one `parec` captures every player's output in one
//! stream, sample-aligned: the same start instant for all by construction.
//! Players are pointed at their sink: mpv with `--ao=pulse
//! --pulse-host=… --audio-device=pulse/<sink>`, Chromium with the
//! `PULSE_SERVER`/`PULSE_SINK` environment of its process.
//!
//! Include with `#[path = "support/pulse.rs"] mod pulse;`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Sample rate of the sinks and the recording (Hz).
pub const RATE: u32 = 48_000;
/// The null sink every player's sink feeds one channel of.
pub const RECORD_SINK: &str = "wp_record";
/// Longest wait for the daemon's socket.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// Most players (channels) one daemon records; PulseAudio's limit is 32.
pub const MAX_PLAYERS: usize = 8;

/// The running daemon; stopped (and its directory removed) on drop.
pub struct Pulse {
    daemon: Child,
    dir: tempfile::TempDir,
    sinks: Vec<String>,
}

impl Pulse {
    /// Starts a daemon with one sink per name in `players` (channel `i` of
    /// the recording is `players[i]`).
    pub fn start(players: &[&str]) -> Pulse {
        assert!(
            (1..=MAX_PLAYERS).contains(&players.len()),
            "1 to {MAX_PLAYERS} players"
        );
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("native");
        let n = players.len();
        let aux: Vec<String> = (0..n).map(|i| format!("aux{i}")).collect();
        let mut modules = vec![format!(
            "module-null-sink sink_name={RECORD_SINK} channels={n} rate={RATE} \
             channel_map={}",
            aux.join(",")
        )];
        let sinks: Vec<String> = players.iter().map(|p| format!("wp_{p}")).collect();
        for (sink, ch) in sinks.iter().zip(&aux) {
            // `remix=no`: the mono channel goes to its aux channel as is.
            modules.push(format!(
                "module-remap-sink sink_name={sink} master={RECORD_SINK} channels=1 \
                 channel_map=mono master_channel_map={ch} remix=no"
            ));
        }
        // The socket last: once it exists, every sink does.
        modules.push(format!(
            "module-native-protocol-unix socket={} auth-anonymous=1",
            socket.display()
        ));
        let mut cmd = Command::new("pulseaudio");
        cmd.args([
            "-n",
            "--daemonize=no",
            "--exit-idle-time=-1",
            "--use-pid-file=no",
            "--disable-shm=yes",
            "--realtime=no",
            "--high-priority=no",
            "--log-target=stderr",
            "--log-level=error",
        ]);
        for m in &modules {
            cmd.arg("-L").arg(m);
        }
        let log = std::fs::File::create(dir.path().join("pulseaudio.log")).unwrap();
        let daemon = private_env(&mut cmd, &dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("pulseaudio runs (`cargo xtask setup` installs it)");
        let mut pulse = Pulse { daemon, dir, sinks };
        let started = Instant::now();
        while !socket.exists() {
            if let Ok(Some(status)) = pulse.daemon.try_wait() {
                panic!("pulseaudio exited ({status}): {}", pulse.log());
            }
            assert!(
                started.elapsed() < START_TIMEOUT,
                "pulseaudio did not open its socket: {}",
                pulse.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        pulse
    }

    /// The daemon's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("pulseaudio.log")).unwrap_or_default()
    }

    /// The server address (`PULSE_SERVER`, mpv's `--pulse-host`).
    pub fn server(&self) -> String {
        format!("unix:{}", self.dir.path().join("native").display())
    }

    /// The sink of player `i`.
    pub fn sink(&self, i: usize) -> &str {
        &self.sinks[i]
    }

    /// mpv's arguments to play into player `i`'s sink.
    pub fn mpv_args(&self, i: usize) -> Vec<String> {
        vec![
            "--ao=pulse".into(),
            format!("--pulse-host={}", self.server()),
            format!("--audio-device=pulse/{}", self.sink(i)),
        ]
    }

    /// The environment that sends a process's audio to player `i`'s sink.
    pub fn env(&self, i: usize) -> Vec<(String, String)> {
        vec![
            ("PULSE_SERVER".into(), self.server()),
            ("PULSE_SINK".into(), self.sink(i).to_owned()),
        ]
    }

    /// Starts recording every player's sink (one stream, one channel each).
    pub fn record(&self) -> Recording {
        let path = self.dir.path().join(format!(
            "record-{}.raw",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let n = self.sinks.len();
        let map: Vec<String> = (0..n).map(|i| format!("aux{i}")).collect();
        let out = std::fs::File::create(&path).unwrap();
        let mut cmd = Command::new("parec");
        cmd.arg("-d")
            .arg(format!("{RECORD_SINK}.monitor"))
            .args(["--raw", "--format=s16le"])
            .arg(format!("--rate={RATE}"))
            .arg(format!("--channels={n}"))
            .arg(format!("--channel-map={}", map.join(",")))
            .args(["--latency-msec=20"])
            .env("PULSE_SERVER", self.server());
        let child = private_env(&mut cmd, &self.dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::null())
            .spawn()
            .expect("parec runs (package pulseaudio-utils, installed with pulseaudio)");
        Recording {
            child,
            path,
            channels: n,
            started: Instant::now(),
        }
    }
}

/// Points `cmd`'s PulseAudio state, configuration and runtime at `dir`.
fn private_env<'a>(cmd: &'a mut Command, dir: &tempfile::TempDir) -> &'a mut Command {
    let d = dir.path();
    cmd.env("HOME", d)
        .env("XDG_CONFIG_HOME", d)
        .env("XDG_RUNTIME_DIR", d)
        .env("PULSE_RUNTIME_PATH", d)
        .env("PULSE_STATE_PATH", d)
        .env_remove("DBUS_SESSION_BUS_ADDRESS")
}

impl Drop for Pulse {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A running capture of every sink.
pub struct Recording {
    child: Child,
    path: PathBuf,
    channels: usize,
    /// When the capture was started (its first sample is a little later).
    pub started: Instant,
}

impl Recording {
    /// Bytes captured so far.
    pub fn bytes(&self) -> u64 {
        std::fs::metadata(&self.path).map_or(0, |m| m.len())
    }

    /// Stops the capture; returns one signal per player (full scale 1).
    pub fn stop(mut self) -> Vec<Vec<f32>> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let bytes = std::fs::read(&self.path).unwrap();
        let _ = std::fs::remove_file(&self.path);
        watchparty_e2e::acoustic::deinterleave_s16le(&bytes, self.channels)
    }
}

impl Drop for Recording {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An X display (Xvfb) for headed Chromium, for when headless Chromium
/// sends no sound (`WATCHPARTY_ACOUSTIC_XVFB=1`); stopped on drop.
pub struct Display {
    server: Child,
    /// The display name (`DISPLAY`), e.g. `:5`.
    pub name: String,
}

impl Display {
    /// Starts Xvfb on a free display number (it picks one and says which).
    pub fn start() -> Display {
        use std::io::BufRead;
        let mut server = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x860x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("Xvfb runs (`cargo xtask setup` installs it)");
        let mut line = String::new();
        let out = server.stdout.take().unwrap();
        std::io::BufReader::new(out).read_line(&mut line).unwrap();
        let n: u32 = line.trim().parse().expect("Xvfb names its display");
        Display {
            server,
            name: format!(":{n}"),
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}
