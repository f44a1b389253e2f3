//! `watchparty-bench`: the measuring side of `cargo xtask bench`.
//!
//! Runs the sections of issue 9 in priority order (control latency and
//! connect time over real WebRTC, sync accuracy, the loss/delay grid, micro
//! figures, signaling server capacity against matchbox_server, accounts) and
//! writes `results.json` (one record per figure) and the Markdown report.
//! Every loop is bounded in count and time; all traffic stays on 127.0.0.1
//! (inside the private network namespace `cargo xtask bench` runs us in). A
//! section that fails is listed in the report as not measured, with the
//! reason.
#![forbid(unsafe_code)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

mod accounts;
mod acoustic;
mod browser;
mod capacity;
mod compare;
mod grid;
mod micro;
mod probe;
mod procfs;
mod report;
mod room;
mod room_bench;
mod room_life;
mod stats;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use stats::Figure;

/// A bench failure: a message for the report.
#[derive(Debug)]
pub struct Error(String);

impl Error {
    /// From anything printable.
    pub fn msg(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Self::msg(e)
    }
}

/// Locks a mutex, ignoring poisoning (the data is plain bench records).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Command-line options (set by `cargo xtask bench`).
#[derive(Debug, Default)]
pub struct Options {
    /// Short runs (under 3 minutes in total).
    pub quick: bool,
    /// Where `results.json` goes.
    pub json: PathBuf,
    /// Where the Markdown report goes.
    pub markdown: PathBuf,
    /// The release `watchparty-signal` binary (capacity, accounts).
    pub signal_bin: Option<PathBuf>,
    /// The `matchbox_server` binary.
    pub matchbox_bin: Option<PathBuf>,
    /// The wasm bundle files (`.wasm`, `.js`) to size.
    pub wasm: Vec<PathBuf>,
    /// Sections to run (empty: all).
    pub only: Vec<String>,
    /// Git commit measured.
    pub commit: String,
    /// Hand-written analysis appended to the report, if the file exists.
    pub analysis: Option<PathBuf>,
    /// Load averages when the run started.
    pub load_start: String,
    /// The previous run's `results.json`, compared in the report.
    pub previous: Option<PathBuf>,
    /// Raw samples of the browser spread measurement (JSON written by
    /// `tests/tests/browser_spread.rs`), for the `browser` section.
    pub browser_samples: Option<PathBuf>,
    /// Room-life figures (JSON lines written by the reload e2e tests), for
    /// the `room_life` section.
    pub room_life_samples: Option<PathBuf>,
    /// Acoustic offsets (JSON written by `tests/tests/acoustic.rs`), for
    /// the `acoustic` section.
    pub acoustic_samples: Option<PathBuf>,
}

const USAGE: &str = "usage: watchparty-bench [--quick] --json FILE --markdown FILE \
[--signal-bin FILE] [--matchbox-bin FILE] [--wasm FILE]... [--only SECTION,...] [--commit SHA] [--analysis FILE] [--previous RESULTS.json] [--browser-samples FILE] [--room-life-samples FILE] [--acoustic-samples FILE]
sections: rooms, grid, micro, capacity, accounts, browser, room_life, acoustic (all by default); connect (connect time only, more runs);
relay (the relay part of capacity only)
env: WATCHPARTY_BENCH_LOG=<tracing filter> traces to stderr, e.g. watchparty_peer=debug;
WATCHPARTY_BENCH_SERVER_WRAPPER=<command> runs our server under it (e.g. valgrind --tool=callgrind)";

/// Environment variable with a `tracing` filter: when set, the bench traces
/// to stderr (with uptime stamps), e.g. the driver's `connect:` phases.
pub const LOG_ENV: &str = "WATCHPARTY_BENCH_LOG";

fn init_tracing() {
    let Ok(filter) = std::env::var(LOG_ENV) else {
        return;
    };
    let filter = match tracing_subscriber::EnvFilter::try_new(&filter) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("watchparty-bench: {LOG_ENV}: {e}");
            return;
        }
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_timer(tracing_subscriber::fmt::time::uptime())
        .with_writer(std::io::stderr)
        .try_init();
}

fn parse(args: &[String]) -> Result<Options, String> {
    let mut o = Options::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--json" => o.json = value()?.into(),
            "--markdown" => o.markdown = value()?.into(),
            "--signal-bin" => o.signal_bin = Some(value()?.into()),
            "--matchbox-bin" => o.matchbox_bin = Some(value()?.into()),
            "--wasm" => o.wasm.push(value()?.into()),
            "--only" => o.only = value()?.split(',').map(str::to_owned).collect(),
            "--commit" => o.commit = value()?,
            "--analysis" => o.analysis = Some(value()?.into()),
            "--previous" => o.previous = Some(value()?.into()),
            "--browser-samples" => o.browser_samples = Some(value()?.into()),
            "--room-life-samples" => o.room_life_samples = Some(value()?.into()),
            "--acoustic-samples" => o.acoustic_samples = Some(value()?.into()),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if o.json.as_os_str().is_empty() || o.markdown.as_os_str().is_empty() {
        return Err("--json and --markdown are required".into());
    }
    Ok(o)
}

/// Results of a run.
#[derive(Debug, Default)]
pub struct Run {
    /// Figures measured.
    pub figures: Vec<Figure>,
    /// Problems and not-measured items, for the report.
    pub notes: Vec<String>,
    /// Time per section, s.
    pub timings: Vec<(String, f64)>,
}

fn main() -> ExitCode {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match parse(&args) {
        Ok(mut o) => {
            o.load_start = report::loadavg();
            o
        }
        Err(e) => {
            eprintln!("watchparty-bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("watchparty-bench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let run = rt.block_on(run_all(&opts));
    rt.shutdown_timeout(Duration::from_secs(2));
    match report::write(&opts, &run) {
        Ok(()) => {
            eprintln!(
                "watchparty-bench: {} figures -> {} and {}",
                run.figures.len(),
                opts.json.display(),
                opts.markdown.display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("watchparty-bench: writing the report: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Phases of each grid cell: about 10 s per cell quick (three cells, about
/// 30 s with connecting), about 30 s full (six cells, ≲ 3 min).
fn grid_phases(quick: bool) -> room_bench::Phases {
    if quick {
        room_bench::Phases {
            commands: 6,
            pre_play: Duration::from_millis(500),
            settle: Duration::from_secs(1),
            spread_window: Duration::from_secs(1),
            steady_window: Duration::from_millis(1500),
        }
    } else {
        room_bench::Phases {
            commands: 15,
            pre_play: room_bench::PRE_PLAY,
            settle: room_bench::SETTLE,
            spread_window: Duration::from_secs(4),
            steady_window: Duration::from_secs(6),
        }
    }
}

fn wanted(opts: &Options, section: &str) -> bool {
    opts.only.is_empty() || opts.only.iter().any(|s| s == section)
}

async fn run_all(opts: &Options) -> Run {
    let mut run = Run::default();
    if wanted(opts, "rooms") {
        let plan = if opts.quick {
            room_bench::Plan {
                connect_runs: 2,
                sync_sizes: &[8],
                phases: room_bench::Phases {
                    commands: 15,
                    pre_play: room_bench::PRE_PLAY,
                    settle: room_bench::SETTLE,
                    spread_window: Duration::from_secs(4),
                    steady_window: Duration::from_secs(8),
                },
            }
        } else {
            room_bench::Plan {
                connect_runs: 5,
                sync_sizes: &[8, 16],
                phases: room_bench::Phases {
                    commands: 45,
                    pre_play: room_bench::PRE_PLAY,
                    settle: room_bench::SETTLE,
                    spread_window: Duration::from_secs(10),
                    steady_window: Duration::from_secs(30),
                },
            }
        };
        let t = Instant::now();
        if let Err(e) = room_bench::run(plan, &mut run.figures, &mut run.notes).await {
            run.notes.push(format!("rooms: not measured: {e}"));
        }
        run.timings
            .push(("rooms".into(), t.elapsed().as_secs_f64()));
    }
    if wanted(opts, "grid") {
        let t = Instant::now();
        if let Err(e) = grid::run(
            if opts.quick {
                &grid::QUICK_CELLS
            } else {
                &grid::CELLS
            },
            grid_phases(opts.quick),
            &mut run.figures,
            &mut run.notes,
        )
        .await
        {
            run.notes.push(format!("grid: not measured: {e}"));
        }
        run.timings.push(("grid".into(), t.elapsed().as_secs_f64()));
    }
    if opts.only.iter().any(|s| s == "connect") {
        let t = Instant::now();
        let runs = if opts.quick { 3 } else { 10 };
        if let Err(e) = room_bench::connect_only(runs, &mut run.figures, &mut run.notes).await {
            run.notes.push(format!("connect: not measured: {e}"));
        }
        run.timings
            .push(("connect".into(), t.elapsed().as_secs_f64()));
    }
    if wanted(opts, "micro") {
        let t = Instant::now();
        micro::run(opts, &mut run.figures, &mut run.notes);
        run.timings
            .push(("micro".into(), t.elapsed().as_secs_f64()));
    }
    if wanted(opts, "capacity") || opts.only.iter().any(|s| s == "relay") {
        let t = Instant::now();
        if let Err(e) = capacity::run(opts, &mut run.figures, &mut run.notes).await {
            run.notes.push(format!("capacity: not measured: {e}"));
        }
        run.timings
            .push(("capacity".into(), t.elapsed().as_secs_f64()));
    }
    if wanted(opts, "browser") {
        let t = Instant::now();
        browser::run(
            opts.browser_samples.as_deref(),
            &mut run.figures,
            &mut run.notes,
        );
        run.timings
            .push(("browser".into(), t.elapsed().as_secs_f64()));
    }
    if wanted(opts, "room_life") {
        let t = Instant::now();
        room_life::run(
            opts.room_life_samples.as_deref(),
            &mut run.figures,
            &mut run.notes,
        );
        run.timings
            .push(("room_life".into(), t.elapsed().as_secs_f64()));
    }
    if wanted(opts, "acoustic") {
        let t = Instant::now();
        acoustic::run(
            opts.acoustic_samples.as_deref(),
            &mut run.figures,
            &mut run.notes,
        );
        run.timings
            .push(("acoustic".into(), t.elapsed().as_secs_f64()));
    }
    if wanted(opts, "accounts") {
        let t = Instant::now();
        if let Err(e) = accounts::run(opts, &mut run.figures, &mut run.notes).await {
            run.notes.push(format!("accounts: not measured: {e}"));
        }
        run.timings
            .push(("accounts".into(), t.elapsed().as_secs_f64()));
    }
    run
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_options() {
        let a: Vec<String> = [
            "--quick",
            "--json",
            "a.json",
            "--markdown",
            "b.md",
            "--only",
            "micro,rooms",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        let o = parse(&a).unwrap();
        assert!(o.quick);
        assert_eq!(o.only, ["micro", "rooms"]);
        assert!(parse(&a[..3]).is_err());
        assert!(parse(&["--bogus".to_owned()]).is_err());
    }
}
