//! Running child processes: echoed, with stdin closed and a time limit.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longest a single child command (one build, one test run) may take before
/// it is killed and the run fails. CI has 90 minutes for everything; a cold
/// build of the whole workspace takes well under 15 minutes on 2 cores.
pub const COMMAND_TIME_LIMIT: Duration = Duration::from_secs(40 * 60);

/// Lines of a failed [`Cmd::run_logged`] command's log shown in the error.
const LOG_TAIL_LINES: usize = 15;

/// How often a running child is checked against [`COMMAND_TIME_LIMIT`].
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Why an xtask command failed; printed to the user as is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure(String);

impl Failure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The workspace root (parent of `xtask/`).
pub fn root() -> PathBuf {
    // Set by cargo when it runs us; the compile-time value is the fallback.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.clone(), Path::to_path_buf)
}

/// The cargo that runs us (`$CARGO`), else `cargo` from `PATH`.
pub fn cargo_program() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"))
}

/// A child command, run from the workspace root with stdin closed.
#[derive(Debug)]
pub struct Cmd {
    inner: Command,
    shown: String,
    time_limit: Duration,
}

impl Cmd {
    /// `program`, to be given arguments with [`Cmd::args`].
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        let program = program.as_ref();
        let mut inner = Command::new(program);
        inner
            .current_dir(root())
            .stdin(Stdio::null())
            .env("PATH", search_path());
        let name = Path::new(program)
            .file_name()
            .unwrap_or(program)
            .to_string_lossy()
            .into_owned();
        Self {
            inner,
            shown: name,
            time_limit: COMMAND_TIME_LIMIT,
        }
    }

    /// `cargo`, the same cargo that runs xtask.
    pub fn cargo() -> Self {
        let mut cmd = Self::new(cargo_program());
        cmd.shown = "cargo".to_owned();
        cmd
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        for arg in args {
            let arg = arg.as_ref();
            self.shown.push(' ');
            self.shown.push_str(&arg.to_string_lossy());
            self.inner.arg(arg);
        }
        self
    }

    /// Sets an environment variable for the child.
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.inner.env(key, value);
        self
    }

    /// Removes an environment variable for the child.
    pub fn env_remove(mut self, key: impl AsRef<OsStr>) -> Self {
        self.inner.env_remove(key);
        self
    }

    /// The program this command runs (as given to [`Cmd::new`]).
    pub fn program(&self) -> &OsStr {
        self.inner.get_program()
    }

    /// The first argument (a cargo command's subcommand), if any.
    pub fn first_arg(&self) -> Option<&OsStr> {
        self.inner.get_args().next()
    }

    /// Replaces the default [`COMMAND_TIME_LIMIT`].
    pub fn time_limit(mut self, limit: Duration) -> Self {
        self.time_limit = limit;
        self
    }

    /// Runs with inherited stdout/stderr; fails on a non-zero exit, a spawn
    /// error or when the time limit ([`COMMAND_TIME_LIMIT`] unless changed)
    /// is crossed.
    pub fn run(self) -> Result<(), Failure> {
        println!("$ {}", self.shown);
        self.run_quiet()
    }

    fn run_quiet(mut self) -> Result<(), Failure> {
        let mut child = self
            .inner
            .spawn()
            .map_err(|e| Failure::new(format!("could not start `{}`: {e}", self.shown)))?;
        let started = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => return Ok(()),
                Ok(Some(status)) => {
                    return Err(Failure::new(format!("`{}` failed ({status})", self.shown)));
                }
                Ok(None) if started.elapsed() > self.time_limit => {
                    // Best effort: the child may have exited just now.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(Failure::new(format!(
                        "`{}` took longer than {} s and was killed",
                        self.shown,
                        self.time_limit.as_secs()
                    )));
                }
                Ok(None) => std::thread::sleep(POLL_INTERVAL),
                Err(e) => {
                    return Err(Failure::new(format!(
                        "waiting for `{}` failed: {e}",
                        self.shown
                    )));
                }
            }
        }
    }

    /// Like [`Cmd::run`], but with stdout and stderr written to the file
    /// `log` instead of the terminal (for a command that runs beside
    /// another); on failure the last lines of the log are part of the error.
    pub fn run_logged(mut self, log: &Path) -> Result<(), Failure> {
        let file = std::fs::File::create(log)
            .map_err(|e| Failure::new(format!("cannot create {}: {e}", log.display())))?;
        let err = file
            .try_clone()
            .map_err(|e| Failure::new(format!("cannot reopen {}: {e}", log.display())))?;
        self.inner.stdout(file).stderr(err);
        println!("$ {}   (output in {})", self.shown, log.display());
        self.shown = format!("{} (log {})", self.shown, log.display());
        self.run_quiet().map_err(|f| {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n    ");
            Failure::new(format!("{f}; its last lines:\n    {tail}"))
        })
    }

    /// Runs quietly and returns stdout when the command exists and succeeds.
    /// For quick probes such as `tool --version`.
    pub fn probe(mut self) -> Option<String> {
        let output = self.inner.stderr(Stdio::null()).output().ok()?;
        if !output.status.success() {
            return None;
        }
        Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }
}

/// `$CARGO_HOME/bin` (default `~/.cargo/bin`), where `cargo install` puts
/// wasm-bindgen-cli.
fn cargo_bin_dir() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|home| home.join("bin"))
}

/// The `PATH` children get: ours, plus `$CARGO_HOME/bin` and the `sbin`
/// directories (not always on a non-root user's `PATH`) when absent.
pub fn search_path() -> OsString {
    let current = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&current).collect();
    let extra = cargo_bin_dir()
        .into_iter()
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from));
    for dir in extra {
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }
    std::env::join_paths(dirs).unwrap_or(current)
}

/// Finds `name` in [`search_path`].
pub fn find_program(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&search_path())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether we run as root (effective uid 0), without `unsafe` libc calls.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}
