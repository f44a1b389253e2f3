//! Media duration probe: runs `ffprobe` (Debian package `ffmpeg`) on a file
//! at scan time and reads the container's duration.
//!
//! The probe never fails a scan: when `ffprobe` is not installed, times out
//! ([`PROBE_TIMEOUT`]), exits with an error or prints something that is not a
//! plausible duration, the item's duration stays unknown (`duration_ms`
//! `null`) and a warning is logged (once per scan for a missing `ffprobe`,
//! after which the scan stops trying). Peers then fall back to their own
//! "unknown duration" (24 h).
//!
//! `ffprobe` is given the file as `file:<absolute path>` with
//! `-protocol_whitelist file`, so neither a file name nor the file's content
//! can make it open anything but local files. Its output is read up to
//! [`MAX_PROBE_OUTPUT_BYTES`].

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest a single `ffprobe` run may take before it is killed and the item's
/// duration left unknown.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
/// Most bytes of `ffprobe` output read (a duration is one short line).
pub const MAX_PROBE_OUTPUT_BYTES: u64 = 4096;
/// Longest duration accepted (one week); anything longer is taken as garbage.
pub const MAX_DURATION_MS: i64 = 7 * 24 * 3600 * 1000;
/// How often a running probe is checked for completion.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Why a probe found no duration.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The probe program could not be started (not installed).
    #[error("cannot run {program}: {source}")]
    Unavailable {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The probe ran longer than its timeout and was killed.
    #[error("probe timed out after {0:?}")]
    TimedOut(Duration),
    /// The probe exited with an error status.
    #[error("probe exited with {0}")]
    Failed(std::process::ExitStatus),
    /// The probe's output was not a plausible duration.
    #[error("probe printed no usable duration")]
    NoDuration,
    /// Waiting for or reading from the probe failed.
    #[error("probe i/o: {0}")]
    Io(std::io::Error),
}

/// Runs the duration probe; remembers a missing program for the rest of a
/// scan so a library without `ffprobe` costs one failed spawn, not one per
/// file.
#[derive(Debug)]
pub struct Prober {
    program: PathBuf,
    timeout: Duration,
    unavailable: AtomicBool,
}

impl Default for Prober {
    /// `ffprobe` from `PATH` with [`PROBE_TIMEOUT`].
    fn default() -> Self {
        Self::new("ffprobe", PROBE_TIMEOUT)
    }
}

impl Prober {
    /// A prober running `program` (an `ffprobe`), killing it after `timeout`.
    #[must_use]
    pub fn new(program: impl Into<PathBuf>, timeout: Duration) -> Self {
        Self {
            program: program.into(),
            timeout,
            unavailable: AtomicBool::new(false),
        }
    }

    /// Whether the probe program runs at all (`ffprobe -version`).
    #[must_use]
    pub fn available(&self) -> bool {
        Command::new(&self.program)
            .arg("-version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// The duration of the media file at `path` in milliseconds, or `None`
    /// (logged as a warning) when it cannot be found out.
    #[must_use]
    pub fn duration_ms(&self, path: &Path) -> Option<i64> {
        if self.unavailable.load(Ordering::Relaxed) {
            return None;
        }
        match self.try_duration_ms(path) {
            Ok(ms) => Some(ms),
            Err(e @ ProbeError::Unavailable { .. }) => {
                self.unavailable.store(true, Ordering::Relaxed);
                tracing::warn!(
                    error = %e,
                    "media durations stay unknown: install ffprobe (Debian package ffmpeg)"
                );
                None
            }
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "media duration unknown");
                None
            }
        }
    }

    /// Like [`Self::duration_ms`], with the reason when there is none.
    ///
    /// # Errors
    /// [`ProbeError`].
    pub fn try_duration_ms(&self, path: &Path) -> Result<i64, ProbeError> {
        let mut input = std::ffi::OsString::from("file:");
        input.push(path.as_os_str());
        let mut child = Command::new(&self.program)
            .args(["-v", "error", "-protocol_whitelist", "file"])
            .args(["-show_entries", "format=duration"])
            .args(["-of", "default=noprint_wrappers=1:nokey=1"])
            .arg(input)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| ProbeError::Unavailable {
                program: self.program.display().to_string(),
                source,
            })?;
        let started = Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if started.elapsed() >= self.timeout => {
                    // Kill and reap; an error here means it already exited.
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ProbeError::TimedOut(self.timeout));
                }
                Ok(None) => std::thread::sleep(POLL_INTERVAL),
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(ProbeError::Io(e));
                }
            }
        };
        if !status.success() {
            return Err(ProbeError::Failed(status));
        }
        let mut out = String::new();
        if let Some(stdout) = child.stdout.take() {
            stdout
                .take(MAX_PROBE_OUTPUT_BYTES)
                .read_to_string(&mut out)
                .map_err(ProbeError::Io)?;
        }
        parse_duration_ms(&out).ok_or(ProbeError::NoDuration)
    }
}

/// The duration `ffprobe` printed (seconds, e.g. `4.000000`) in whole
/// milliseconds; `None` for `N/A`, anything unparsable, zero, negative or
/// longer than [`MAX_DURATION_MS`].
#[must_use]
pub fn parse_duration_ms(output: &str) -> Option<i64> {
    let secs: f64 = output.lines().next()?.trim().parse().ok()?;
    if !secs.is_finite() || secs <= 0.0 {
        return None;
    }
    let ms = (secs * 1000.0).round();
    // In range, so the cast is exact.
    #[allow(clippy::cast_possible_truncation)]
    (ms >= 1.0 && ms <= MAX_DURATION_MS as f64).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../wasm-peer/tests/assets/clip.webm")
    }

    fn ffprobe_installed() -> bool {
        Prober::default().available()
    }

    #[test]
    fn parses_ffprobe_output() {
        assert_eq!(parse_duration_ms("4.000000\n"), Some(4000));
        assert_eq!(parse_duration_ms("12.3456\n"), Some(12346));
        assert_eq!(parse_duration_ms("0.0004\n"), None, "rounds to 0 ms");
        assert_eq!(parse_duration_ms("N/A\n"), None);
        assert_eq!(parse_duration_ms(""), None);
        assert_eq!(parse_duration_ms("-3.0"), None);
        assert_eq!(parse_duration_ms("nan"), None);
        assert_eq!(parse_duration_ms("inf"), None);
        assert_eq!(parse_duration_ms("604800.000"), Some(MAX_DURATION_MS));
        assert_eq!(parse_duration_ms("604800.001"), None, "over a week");
    }

    #[test]
    fn probes_the_test_clip() {
        if !ffprobe_installed() {
            eprintln!("ffprobe not installed (cargo xtask setup installs it); skipped");
            return;
        }
        let ms = Prober::default().try_duration_ms(&clip()).unwrap();
        // 4 s of video; its Opus track's last 20 ms frame ends at 4.008 s.
        assert_eq!(ms, 4008, "clip.webm is 4.008 s");
    }

    #[test]
    fn a_file_that_is_not_media_has_no_duration() {
        if !ffprobe_installed() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fake.webm");
        std::fs::write(&p, b"\x1a\x45\xdf\xa3 not really webm").unwrap();
        let prober = Prober::default();
        assert!(prober.try_duration_ms(&p).is_err());
        assert_eq!(prober.duration_ms(&p), None);
    }

    #[test]
    fn a_missing_program_is_unavailable_and_not_retried() {
        let prober = Prober::new("/nonexistent/ffprobe", PROBE_TIMEOUT);
        assert!(!prober.available());
        assert!(matches!(
            prober.try_duration_ms(&clip()),
            Err(ProbeError::Unavailable { .. })
        ));
        assert_eq!(prober.duration_ms(&clip()), None);
        assert!(prober.unavailable.load(Ordering::Relaxed));
    }

    #[test]
    fn a_probe_running_past_its_timeout_is_killed() {
        if !ffprobe_installed() {
            return;
        }
        // A FIFO nobody writes to: the real ffprobe blocks opening it.
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("stuck.webm");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let timeout = Duration::from_millis(300);
        let prober = Prober::new("ffprobe", timeout);
        match prober.try_duration_ms(&fifo) {
            Err(ProbeError::TimedOut(t)) => assert_eq!(t, timeout),
            other => panic!("expected a timeout, got {other:?}"),
        }
        // Logged, not remembered as "ffprobe missing": the next file is
        // probed again.
        assert_eq!(prober.duration_ms(&fifo), None);
        assert!(!prober.unavailable.load(Ordering::Relaxed));
    }
}
