//! Real-process harness: the `watchparty-signal` server binary and
//! `watchparty` CLI peers (`--json`, `--player virtual`), all on 127.0.0.1.
//!
//! Binaries: a test of this crate cannot name another package's binaries
//! (`CARGO_BIN_EXE_*` covers its own package only), so [`bins`] runs
//! `cargo build --offline -p watchparty-signal -p watchparty-peer --bins`
//! once per test process into the target directory this test binary lives
//! in (a no-op when they are up to date) and takes them from there. Any
//! failure panics with cargo's output; nothing is skipped.
//!
//! Peers: each CLI process gets its own config directory (tokens, room
//! keys), reads commands on stdin and prints one JSON event per line; a
//! reader thread parses stdout into a channel, stderr goes to a log file in
//! the test's temporary directory (quoted when a wait fails).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Password of every user the harness creates.
pub const PASSWORD: &str = "correct-horse-battery";
/// Longest wait for a (re)started server to answer `/healthz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default wait for an expected peer event.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Prints `msg` with the seconds since the first call (shown with the
/// failure output, or live with `--nocapture`).
pub fn step(msg: &str) {
    static START: OnceLock<Instant> = OnceLock::new();
    let t = START.get_or_init(Instant::now).elapsed();
    println!("[{:>7.2} s] {msg}", t.as_secs_f64());
}

/// Paths of the two binaries under test.
#[derive(Debug)]
pub struct Bins {
    /// `watchparty-signal`.
    pub signal: PathBuf,
    /// `watchparty` (the native peer's CLI).
    pub peer: PathBuf,
}

/// Builds (once per process) and returns the binaries; panics with cargo's
/// output when that fails.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Result<Bins, String>> = OnceLock::new();
    match BINS.get_or_init(build_bins) {
        Ok(b) => b,
        Err(e) => panic!("cannot build the binaries under test: {e}"),
    }
}

fn build_bins() -> Result<Bins, String> {
    // <target>/<profile>/deps/<this test>
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("unexpected test binary location")?
        .to_owned();
    let target_dir = profile_dir
        .parent()
        .ok_or("unexpected test binary location")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--offline", "--quiet"])
        .args(["-p", "watchparty-signal", "-p", "watchparty-peer", "--bins"])
        .env("CARGO_TARGET_DIR", target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().map_err(|e| format!("running cargo: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let bins = Bins {
        signal: profile_dir.join("watchparty-signal"),
        peer: profile_dir.join("watchparty"),
    };
    for p in [&bins.signal, &bins.peer] {
        if !p.is_file() {
            return Err(format!("{} missing after the build", p.display()));
        }
    }
    Ok(bins)
}

/// A free TCP port on 127.0.0.1 (the listener is closed again; the server
/// binds it with `SO_REUSEADDR`, so a restart on the same port works).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The server: a data directory with a library `films` (one file) and
/// users, and the `serve` process (killable and restartable on the same
/// SQLite file and port).
pub struct Server {
    /// `--data-dir`.
    pub data: PathBuf,
    /// The port it listens on (127.0.0.1).
    pub port: u16,
    /// Host of [`Self::base_url`]: 127.0.0.1, or the address peers in
    /// other namespaces reach it on (the server then binds 0.0.0.0).
    pub url_host: String,
    /// A TOML configuration file (`--config`).
    pub config: Option<PathBuf>,
    log: PathBuf,
    child: Option<Child>,
}

impl Server {
    /// Prepares the data directory under `root` through the admin CLI:
    /// library, scan, users (`PASSWORD`) with access to the library.
    pub fn setup(root: &Path, users: &[&str]) -> Server {
        let data = root.join("data");
        let lib = root.join("lib");
        std::fs::create_dir_all(&lib).unwrap();
        let mut mp4 = vec![7u8; 10_000];
        mp4[..12].copy_from_slice(b"\0\0\0\x18ftypisom");
        std::fs::write(lib.join("movie.mp4"), mp4).unwrap();
        let s = Server {
            data,
            port: free_port(),
            url_host: "127.0.0.1".to_owned(),
            config: None,
            log: root.join("server.log"),
            child: None,
        };
        s.admin(&["library", "add", "films", lib.to_str().unwrap()], None);
        s.admin(&["media", "scan", "films"], None);
        for u in users {
            s.admin(&["user", "add", u], Some(&format!("{PASSWORD}\n")));
            s.admin(&["grant", u, "films"], None);
        }
        s
    }

    fn admin(&self, args: &[&str], stdin: Option<&str>) {
        let mut child = Command::new(&bins().signal)
            .arg("--data-dir")
            .arg(&self.data)
            .args(args)
            .env_remove("WATCHPARTY_BIND")
            .env_remove("WATCHPARTY_CONFIG")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .unwrap()
                .write_all(input.as_bytes())
                .unwrap();
        }
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "watchparty-signal {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `http://127.0.0.1:PORT` (or [`Self::url_host`]).
    pub fn base_url(&self) -> String {
        format!("http://{}:{}", self.url_host, self.port)
    }

    /// Starts `serve` and waits until `/healthz` answers.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "server already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let bind = if self.url_host == "127.0.0.1" {
            "127.0.0.1"
        } else {
            "0.0.0.0"
        };
        let mut cmd = Command::new(&bins().signal);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        let child = cmd
            .arg("--data-dir")
            .arg(&self.data)
            .args(["serve", "--bind", &format!("{bind}:{}", self.port)])
            .env_remove("WATCHPARTY_CONFIG")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        while Instant::now() < deadline {
            if http_status(self.port, "/healthz") == Some(200) {
                return;
            }
            if let Some(c) = self.child.as_mut()
                && let Ok(Some(st)) = c.try_wait()
            {
                panic!("server exited ({st}):\n{}", tail(&self.log));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "server not ready in {READY_TIMEOUT:?}:\n{}",
            tail(&self.log)
        );
    }

    /// SIGKILL (no shutdown path runs) and reap.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            // `Child::kill` sends SIGKILL on Unix.
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `GET path` over plain HTTP/1.0; the status code, if any.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    buf.split_whitespace().nth(1)?.parse().ok()
}

fn tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// Logs `user` in with the CLI into config directory `dir`.
pub fn login(dir: &Path, server: &Server, user: &str) {
    login_at(dir, &server.base_url(), user);
}

/// Logs `user` in with the CLI into config directory `dir`, against the
/// server at `url`.
pub fn login_at(dir: &Path, url: &str, user: &str) {
    let mut child = Command::new(&bins().peer)
        .arg("--config-dir")
        .arg(dir)
        .args(["login", "--server", url, "--user", user])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{PASSWORD}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "login {user}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `watchparty --json media`: the id of the first item.
pub fn first_media(dir: &Path) -> i64 {
    let out = Command::new(&bins().peer)
        .arg("--config-dir")
        .arg(dir)
        .args(["--json", "media"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.lines().next().expect("at least one media item");
    serde_json::from_str::<Value>(first).unwrap()["id"]
        .as_i64()
        .unwrap()
}

/// One CLI peer process.
pub struct Peer {
    /// Name (for messages).
    pub name: String,
    /// Its config directory.
    pub dir: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
    events: Receiver<Value>,
    log: PathBuf,
    /// Every event read so far.
    pub seen: Vec<Value>,
    next_tag: u64,
}

impl Peer {
    fn spawn(name: &str, dir: &Path, args: &[String]) -> Peer {
        Peer::spawn_in(name, dir, args, None)
    }

    /// `watchparty --json ARGS` with config directory `dir`; inside the
    /// network namespace of process `netns` (through `nsenter`) if given.
    pub fn spawn_in(name: &str, dir: &Path, args: &[String], netns: Option<u32>) -> Peer {
        let log = dir.join("peer.log");
        let err = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = match netns {
            None => Command::new(&bins().peer),
            Some(pid) => {
                let mut c = Command::new("nsenter");
                c.args(["-t", &pid.to_string(), "-n", "--"])
                    .arg(&bins().peer);
                c
            }
        };
        let mut child = cmd
            .arg("--config-dir")
            .arg(dir)
            .arg("--json")
            .args(args)
            .env("WATCHPARTY_LOG", "info")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(err)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str::<Value>(&line)
                    .unwrap_or_else(|_| serde_json::json!({ "event": "non_json", "line": line }));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Peer {
            name: name.to_owned(),
            dir: dir.to_owned(),
            stdin: child.stdin.take(),
            child,
            events: rx,
            log,
            seen: Vec::new(),
            next_tag: 0,
        }
    }

    /// `watchparty host --media ID --player virtual` on 127.0.0.1, with
    /// `invites` as `USER:ROLE`.
    pub fn host(name: &str, dir: &Path, media: i64, invites: &[&str]) -> Peer {
        let mut args: Vec<String> = ["host", "--player", "virtual", "--bind", "127.0.0.1:0"]
            .map(String::from)
            .to_vec();
        args.extend(["--media".to_owned(), media.to_string()]);
        for i in invites {
            args.extend(["--invite".to_owned(), (*i).to_owned()]);
        }
        Peer::spawn(name, dir, &args)
    }

    /// `watchparty join LINK --player virtual` on 127.0.0.1.
    pub fn join(name: &str, dir: &Path, link: &str) -> Peer {
        let args = ["join", link, "--player", "virtual", "--bind", "127.0.0.1:0"].map(String::from);
        Peer::spawn(name, dir, &args)
    }

    /// Its log (stderr) so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes one command line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!("{}: cannot send `{line}`: {e}\n{}", self.name, self.diag());
        }
    }

    /// SIGKILL and reap.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits up to `timeout` for the process to exit; its status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: still running after {timeout:?}\n{}",
                    self.name,
                    self.diag()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The last events and the stderr log, for failure messages.
    pub fn diag(&self) -> String {
        // The last 25 events other than status snapshots, then the last
        // snapshot.
        let mut last: Vec<String> = self
            .seen
            .iter()
            .filter(|v| v["event"] != "status")
            .map(Value::to_string)
            .collect();
        last.drain(..last.len().saturating_sub(25));
        if let Some(s) = self.seen.iter().rev().find(|v| v["event"] == "status") {
            last.push(s.to_string());
        }
        format!(
            "--- {} last events:\n{}\n--- {} log:\n{}",
            self.name,
            last.join("\n"),
            self.name,
            tail(&self.log)
        )
    }

    /// Waits up to `timeout` for an event matching `f` (others are kept in
    /// [`Peer::seen`]); panics with diagnostics on timeout or exit.
    pub fn wait_for_within(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if f(&v) {
                        return v;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "{}: timed out waiting for {what}\n{}",
                        self.name,
                        self.diag()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!(
                        "{}: exited while waiting for {what}\n{}",
                        self.name,
                        self.diag()
                    )
                }
            }
        }
    }

    /// A position in [`Peer::seen`] for [`Peer::wait_after`].
    pub fn mark(&self) -> usize {
        self.seen.len()
    }

    /// Like [`Peer::wait_for`], but first looks at the events already read
    /// since `mark` (status polls may have read past the one wanted).
    pub fn wait_after(&mut self, mark: usize, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        if let Some(v) = self.seen.get(mark..).and_then(|s| s.iter().find(|v| f(v))) {
            return v.clone();
        }
        self.wait_for(what, f)
    }

    /// [`Peer::wait_for_within`] with [`EVENT_TIMEOUT`].
    pub fn wait_for(&mut self, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        self.wait_for_within(what, EVENT_TIMEOUT, f)
    }

    /// Waits for an event named `event`.
    pub fn wait_event(&mut self, event: &str) -> Value {
        self.wait_for(event, |v| v["event"] == event)
    }

    /// Asks for a status snapshot (tagged) without waiting for it.
    pub fn request_status(&mut self) -> String {
        self.next_tag += 1;
        let tag = format!("t{}", self.next_tag);
        self.send(&format!("status {tag}"));
        tag
    }

    /// Waits for the status snapshot answering `tag`.
    pub fn status_reply(&mut self, tag: &str) -> Value {
        let tag = tag.to_owned();
        self.wait_for(&format!("status {tag}"), move |v| {
            v["event"] == "status" && v["tag"] == tag.as_str()
        })
    }

    /// A fresh status snapshot.
    pub fn status(&mut self) -> Value {
        let tag = self.request_status();
        self.status_reply(&tag)
    }

    /// Polls status until `f` holds (every 100 ms, up to `timeout`).
    pub fn status_until(
        &mut self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status();
            if f(&s) {
                return s;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}: status never showed {what}; last: {s}\n{}",
                    self.name,
                    self.diag()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The number of host commands a status says were applied (not counting
/// `State` frames). Exact for the host, which applies every command it
/// signs; for a follower it depends on timing (a `State` may carry a step
/// first), so tests compare followers' outcomes instead.
pub fn applied(s: &Value) -> u64 {
    s["commands_applied"].as_u64().unwrap_or(0)
}

/// A peer's player position extrapolated to Unix time `at_us`.
///
/// Each status carries `wall_us`, the Unix time (µs) of the snapshot instant
/// (the CLI reads its driver clock and the system clock back to back), and
/// `player_position_ms`, the player's position at that instant. All
/// processes share the machine's system clock, so moving every reading to
/// one common instant `at_us` (a few ms away) with the room's rate compares
/// positions at the same instant.
pub fn position_at(s: &Value, at_us: i64) -> f64 {
    let pos = s["player_position_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no player position in {s}"));
    moved_to(s, pos, at_us)
}

/// `pos`, read in status `s`, moved from the snapshot's `wall_us` to Unix
/// time `at_us` at the room's rate (unchanged when paused).
fn moved_to(s: &Value, pos: f64, at_us: i64) -> f64 {
    let paused = s["playback"]["paused"].as_bool().unwrap_or(true);
    let rate = s["playback"]["rate"].as_f64().unwrap_or(1.0);
    let wall = s["wall_us"]
        .as_i64()
        .unwrap_or_else(|| panic!("no wall_us in {s}"));
    if paused {
        pos
    } else {
        pos + rate * (at_us - wall) as f64 / 1000.0
    }
}

/// Snapshots of every peer taken at (nearly) one instant: all requests are
/// written first, then the replies collected.
pub fn statuses(peers: &mut [&mut Peer]) -> Vec<Value> {
    let tags: Vec<String> = peers.iter_mut().map(|p| p.request_status()).collect();
    peers
        .iter_mut()
        .zip(tags)
        .map(|(p, t)| p.status_reply(&t))
        .collect()
}

/// Largest |follower − host| player position (ms) at one common instant,
/// with the per-peer differences for messages. `peers[0]` is the host.
pub fn spread(snaps: &[Value]) -> (f64, Vec<f64>) {
    let at = snaps
        .iter()
        .filter_map(|s| s["wall_us"].as_i64())
        .max()
        .unwrap_or(0);
    let host = position_at(&snaps[0], at);
    let diffs: Vec<f64> = snaps[1..]
        .iter()
        .map(|s| position_at(s, at) - host)
        .collect();
    let worst = diffs.iter().fold(0.0_f64, |m, d| m.max(d.abs()));
    (worst, diffs)
}

/// Rounds of measurement after the room settled; each must pass.
pub const SYNC_ROUNDS: usize = 3;

/// Consecutive polls (250 ms apart) the room must look settled before the
/// measurement rounds.
pub const SETTLED_POLLS: usize = 4;

/// Whether every peer looks settled: its player agrees with its own view of
/// the room within half the tolerance (both right now and in the core's
/// filtered position error), no correction is running, and that view
/// (paused, rate) is the host's.
fn settled(snaps: &[Value], tolerance_ms: f64) -> bool {
    let half = tolerance_ms / 2.0;
    let host = &snaps[0]["playback"];
    snaps.iter().all(|s| {
        let (Some(player), Some(room)) = (
            s["player_position_ms"].as_f64(),
            s["playback"]["position_ms"].as_f64(),
        ) else {
            return false;
        };
        (player - room).abs() <= half
            && s["position_error_ms"]
                .as_f64()
                .is_none_or(|e| e.abs() <= half)
            && s["correcting"] == false
            && s["playback"]["paused"] == host["paused"]
            && s["playback"]["rate"] == host["rate"]
    })
}

/// Waits (polling every 250 ms up to `timeout`) until the room looked
/// settled in [`SETTLED_POLLS`] consecutive polls (see [`settled`]), then takes [`SYNC_ROUNDS`] measurements 200 ms apart: in
/// each, every follower's player must be within `tolerance_ms` of the
/// host's player at one common instant. Returns the last round; panics with
/// the positions otherwise. `peers[0]` is the host.
pub fn wait_in_sync(peers: &mut [&mut Peer], tolerance_ms: f64, timeout: Duration) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    let mut calm = 0;
    loop {
        let snaps = statuses(peers);
        calm = if settled(&snaps, tolerance_ms) {
            calm + 1
        } else {
            0
        };
        if calm >= SETTLED_POLLS {
            break;
        }
        if Instant::now() >= deadline {
            let detail: Vec<String> = snaps.iter().map(Value::to_string).collect();
            panic!("room not settled after {timeout:?}:\n{}", detail.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let mut last = Vec::new();
    for round in 0..SYNC_ROUNDS {
        if round > 0 {
            std::thread::sleep(Duration::from_millis(200));
        }
        let snaps = statuses(peers);
        let (worst, diffs) = spread(&snaps);
        if worst > tolerance_ms {
            let detail: Vec<String> = snaps.iter().map(Value::to_string).collect();
            panic!(
                "out of sync (round {round}): follower − host = {diffs:?} ms, tolerance {tolerance_ms} ms\n{}",
                detail.join("\n")
            );
        }
        step(&format!("in sync: follower − host = {diffs:.2?} ms"));
        last = snaps;
    }
    last
}

/// The room position a peer's status shows (its view of the host's
/// timeline, not its player), moved to Unix time `at_us` like
/// [`position_at`].
pub fn room_position_at(s: &Value, at_us: i64) -> f64 {
    let pos = s["playback"]["position_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no room playback in {s}"));
    moved_to(s, pos, at_us)
}

/// Waits (every 250 ms up to `timeout`) until every peer's view of the room
/// timeline is `peers[0]`'s: the same paused state and rate, and positions
/// within `tolerance_ms` at one common instant; returns those snapshots,
/// panics with the differences otherwise.
pub fn wait_rooms_agree(
    peers: &mut [&mut Peer],
    tolerance_ms: f64,
    timeout: Duration,
) -> Vec<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let snaps = statuses(peers);
        if snaps
            .iter()
            .all(|s| s["playback"]["position_ms"].is_number())
        {
            let at = snaps
                .iter()
                .filter_map(|s| s["wall_us"].as_i64())
                .max()
                .unwrap_or(0);
            let first = room_position_at(&snaps[0], at);
            let diffs: Vec<f64> = snaps[1..]
                .iter()
                .map(|s| room_position_at(s, at) - first)
                .collect();
            let same_motion = snaps.iter().all(|s| {
                s["playback"]["paused"] == snaps[0]["playback"]["paused"]
                    && s["playback"]["rate"] == snaps[0]["playback"]["rate"]
            });
            if same_motion && diffs.iter().all(|d| d.abs() <= tolerance_ms) {
                step(&format!("room views agree: {diffs:.2?} ms"));
                return snaps;
            }
            if Instant::now() >= deadline {
                panic!("room views differ: {diffs:?} ms\n{snaps:?}");
            }
        } else if Instant::now() >= deadline {
            panic!("no room playback: {snaps:?}");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}
