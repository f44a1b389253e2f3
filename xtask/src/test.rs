//! `cargo xtask test`: every check, in order, stopping at the first failure.
//!
//! 1. `setup` (always; a quick no-op when everything is installed)
//! 2. `fmt` — `cargo fmt --all --check`
//! 3. `clippy` — host target, whole workspace, all targets, `-D warnings`
//! 4. `clippy-wasm` — `wasm32-unknown-unknown`: the protocol core without
//!    default features, and the browser peer with its tests
//! 5. `deny` — `cargo deny check bans licenses sources` (offline), plus
//!    `cargo audit` when a local advisory DB is given (see [`crate::hygiene`])
//! 6. `native` — `cargo test` for the workspace (without the e2e crate)
//! 7. `wasm` — the browser tests of `wasm-peer` in headless Chromium, then
//!    in headless Firefox, via `wasm-bindgen-test-runner`
//! 8. `e2e` — the whole-system tests of the `tests/` crate
//!
//! Before the first step, every crate of `Cargo.lock` is fetched (`cargo
//! fetch --locked`, all platforms) and [`crate::preflight`] checks that every
//! tool the selected steps need is installed; then every step runs offline
//! (`CARGO_NET_OFFLINE=true`), so nothing is downloaded on the fly and a
//! missing piece fails early with the command that provides it.
//! Steps 6–8 run inside a private network namespace (see [`crate::netns`]),
//! where no packet can leave the machine.

use std::time::{Duration, Instant};

use crate::netns;
use crate::preflight;
use crate::run::{Cmd, Failure, root};
use crate::setup::{self, CHROMEDRIVER, CHROMIUM, FIREFOX, WASM_TARGET};

/// Seconds `wasm-bindgen-test-runner` waits for a browser test run
/// (its default of 20 s is tight on a loaded 2-core CI machine).
const WASM_TEST_TIMEOUT_SECS: &str = "120";

/// One step of the pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// `cargo fmt --all --check`.
    Fmt,
    /// Clippy for the host target.
    Clippy,
    /// Clippy for `wasm32-unknown-unknown`.
    ClippyWasm,
    /// Dependency hygiene: cargo-deny (and cargo-audit when configured).
    Deny,
    /// Native `cargo test`.
    Native,
    /// Browser tests in headless Chromium and headless Firefox.
    Wasm,
    /// Whole-system tests.
    E2e,
}

impl Step {
    /// Every step, in pipeline order.
    pub const ALL: [Self; 7] = [
        Self::Fmt,
        Self::Clippy,
        Self::ClippyWasm,
        Self::Deny,
        Self::Native,
        Self::Wasm,
        Self::E2e,
    ];

    /// The name used by `--only` / `--skip`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Fmt => "fmt",
            Self::Clippy => "clippy",
            Self::ClippyWasm => "clippy-wasm",
            Self::Deny => "deny",
            Self::Native => "native",
            Self::Wasm => "wasm",
            Self::E2e => "e2e",
        }
    }

    /// One line for `--list`.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Fmt => "cargo fmt --all --check",
            Self::Clippy => "clippy, host target, whole workspace, -D warnings",
            Self::ClippyWasm => "clippy, wasm32: watchparty-peer (no default features), wasm-peer",
            Self::Deny => "cargo deny check bans licenses sources (+ cargo audit if configured)",
            Self::Native => "cargo test, workspace without e2e (private netns)",
            Self::Wasm => {
                "wasm-peer browser tests in headless Chromium and Firefox (private netns)"
            }
            Self::E2e => "whole-system tests of tests/ (private netns)",
        }
    }

    /// The step called `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Whether the step runs inside the private network namespace.
    pub fn needs_netns(self) -> bool {
        matches!(self, Self::Native | Self::Wasm | Self::E2e)
    }

    /// The commands the step runs, in order.
    pub fn commands(self) -> Vec<Cmd> {
        let deny_warnings = ["--", "-D", "warnings"];
        match self {
            Self::Fmt => vec![Cmd::cargo().args(["fmt", "--all", "--check"])],
            Self::Clippy => vec![
                Cmd::cargo()
                    .args(["clippy", "--workspace", "--all-targets"])
                    .args(deny_warnings),
            ],
            Self::ClippyWasm => vec![
                Cmd::cargo()
                    .args(["clippy", "-p", "watchparty-peer", "--no-default-features"])
                    .args(["--target", WASM_TARGET])
                    .args(deny_warnings),
                Cmd::cargo()
                    .args(["clippy", "-p", "watchparty-wasm-peer", "--all-targets"])
                    .args(["--target", WASM_TARGET])
                    .args(deny_warnings),
            ],
            Self::Deny => crate::hygiene::commands(),
            Self::Native => vec![
                Cmd::cargo()
                    .args(["test", "--offline", "--workspace"])
                    .args(["--exclude", "watchparty-e2e"])
                    .env(SCHEMATHESIS_ENV, crate::venv::schemathesis()),
            ],
            // `wasm-bindgen-test-runner` drives the first browser whose
            // driver variable is set, `GECKODRIVER` before `CHROMEDRIVER`:
            // each run keeps only its own.
            Self::Wasm => [GECKODRIVER_ENV, CHROMEDRIVER_ENV]
                .into_iter()
                .map(|other_driver| {
                    browser_env(Cmd::cargo())
                        .env_remove(other_driver)
                        .args(["test", "--offline", "-p", "watchparty-wasm-peer"])
                        .args(["--target", WASM_TARGET])
                })
                .collect(),
            Self::E2e => {
                // The browser bundle first: the web-app tests load it from `web/pkg/`.
                let mut cmds = crate::web::bundle_commands(true);
                // `WATCHPARTY_E2E_TESTS=web_room,chaos` narrows the step to
                // those test targets (for working on one of them).
                let only: Vec<String> = std::env::var(E2E_TESTS_ENV)
                    .unwrap_or_default()
                    .split(',')
                    .filter(|t| !t.trim().is_empty())
                    .flat_map(|t| ["--test".to_owned(), t.trim().to_owned()])
                    .collect();
                cmds.push(
                    browser_env(Cmd::cargo())
                        .args(["test", "--offline", "-p", "watchparty-e2e"])
                        .args(only)
                        .env("WATCHPARTY_WEB_DIR", root().join("web"))
                        .env("WATCHPARTY_WEB_PKG_DIR", crate::web::pkg_dir()),
                );
                cmds
            }
        }
    }

    /// Runs the step's commands with the extra environment `env`, stopping
    /// at the first failure.
    pub fn run(self, env: &[(&str, &str)]) -> Result<(), Failure> {
        println!("\n==> step `{}`: {}", self.name(), self.describe());
        for cmd in self.commands() {
            let (key, value) = preflight::OFFLINE_ENV;
            env.iter()
                .fold(cmd.env(key, value), |cmd, (key, value)| cmd.env(key, value))
                .run()
                .map_err(|f| Failure::new(format!("step `{}` failed: {f}", self.name())))?;
        }
        Ok(())
    }
}

/// Names the API fuzzer for `signal/tests/openapi_fuzz.rs` (same name there).
pub const SCHEMATHESIS_ENV: &str = "WATCHPARTY_SCHEMATHESIS";

/// Names e2e test targets to run instead of all of them (comma-separated).
pub const E2E_TESTS_ENV: &str = "WATCHPARTY_E2E_TESTS";

/// Names chromedriver for the browser tests (and `wasm-bindgen-test-runner`).
pub const CHROMEDRIVER_ENV: &str = "CHROMEDRIVER";
/// Names geckodriver for the browser tests (and `wasm-bindgen-test-runner`).
pub const GECKODRIVER_ENV: &str = "GECKODRIVER";

/// Environment for tests that drive Chromium and Firefox.
pub fn browser_env(cmd: Cmd) -> Cmd {
    cmd.env(CHROMEDRIVER_ENV, CHROMEDRIVER)
        .env("WATCHPARTY_CHROMIUM", CHROMIUM)
        .env(GECKODRIVER_ENV, setup::geckodriver_path())
        .env("WATCHPARTY_FIREFOX", FIREFOX)
        .env(
            "WASM_BINDGEN_TEST_WEBDRIVER_JSON",
            root().join("wasm-peer").join("webdriver.json"),
        )
        .env("WASM_BINDGEN_TEST_TIMEOUT", WASM_TEST_TIMEOUT_SECS)
        // Interactive (non-headless) mode would wait for a human.
        .env_remove("NO_HEADLESS")
}

/// Which steps to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    steps: Vec<Step>,
}

impl Selection {
    /// `only` (all steps when `None`) minus `skip`, in pipeline order.
    pub fn new(only: Option<&[Step]>, skip: &[Step]) -> Self {
        let steps = Step::ALL
            .into_iter()
            .filter(|s| only.is_none_or(|only| only.contains(s)))
            .filter(|s| !skip.contains(s))
            .collect();
        Self { steps }
    }

    /// The selected steps, in pipeline order.
    pub fn steps(&self) -> Vec<Step> {
        self.steps.clone()
    }

    /// Arguments that select the same steps (`--only a,b`).
    pub fn to_args(&self) -> Vec<String> {
        let names: Vec<&str> = self.steps.iter().map(|s| s.name()).collect();
        vec!["--only".to_owned(), names.join(",")]
    }
}

/// Most `--repeat` runs one command may ask for.
pub const MAX_REPEAT: u32 = 10;

/// What `cargo xtask test` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// The steps.
    pub selection: Selection,
    /// How many times in a row (1 to [`MAX_REPEAT`]).
    pub repeat: u32,
    /// Whether to keep every core busy meanwhile (see [`CpuHog`]).
    pub cpu_hog: bool,
}

impl TestRun {
    /// The selection, once, on an otherwise quiet machine.
    pub fn once(selection: Selection) -> Self {
        Self {
            selection,
            repeat: 1,
            cpu_hog: false,
        }
    }
}

/// One busy thread per core for as long as it lives: a loaded CI machine,
/// made on purpose. The tests must pass with every core taken by something
/// else, so they may not count on prompt scheduling.
struct CpuHog {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CpuHog {
    fn start() -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let threads = (0..cores)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x: u64 = 1;
                    while !stop.load(Ordering::Relaxed) {
                        for _ in 0..10_000 {
                            x = std::hint::black_box(x.wrapping_mul(6_364_136_223_846_793_005) ^ 1);
                        }
                    }
                })
            })
            .collect();
        println!("xtask test: CPU hog started: {cores} busy thread(s), one per core");
        Self { stop, threads }
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            // A spinning thread cannot panic; nothing to report if it did.
            let _ = thread.join();
        }
    }
}

/// `cargo xtask test`, `repeat` times in a row, with the CPU hog if asked.
pub fn run_repeated(run_opts: &TestRun) -> Result<(), Failure> {
    let _hog = run_opts.cpu_hog.then(CpuHog::start);
    for i in 1..=run_opts.repeat {
        if run_opts.repeat > 1 {
            println!("\n==> xtask test: run {i} of {}", run_opts.repeat);
        }
        run(&run_opts.selection).map_err(|f| {
            if run_opts.repeat > 1 {
                Failure::new(format!("run {i} of {}: {f}", run_opts.repeat))
            } else {
                f
            }
        })?;
    }
    if run_opts.repeat > 1 || run_opts.cpu_hog {
        println!(
            "xtask test: all {} run(s) passed{}",
            run_opts.repeat,
            if run_opts.cpu_hog {
                " with every core kept busy by the CPU hog"
            } else {
                ""
            }
        );
    }
    Ok(())
}

/// `cargo xtask test`.
pub fn run(selection: &Selection) -> Result<(), Failure> {
    let started = Instant::now();
    let steps = selection.steps();
    if steps.is_empty() {
        return Err(Failure::new("no steps selected"));
    }
    println!("==> step `setup`");
    setup::run().map_err(|f| Failure::new(format!("step `setup` failed: {f}")))?;

    // Every crate of Cargo.lock, for every platform: cargo-deny reads the
    // manifests of crates no Linux build downloads, and every step runs
    // offline (see `preflight`).
    println!(
        "\n==> fetching every crate of Cargo.lock (all platforms), so no step needs the network"
    );
    Cmd::cargo()
        .args(["fetch", "--locked"])
        .run()
        .map_err(|f| failed(&f, started.elapsed()))?;
    println!("\n==> preflight: does every step have what it needs?");
    preflight::check(&steps).map_err(|f| failed(&f, started.elapsed()))?;
    let (isolated, host): (Vec<Step>, Vec<Step>) = steps.iter().partition(|s| s.needs_netns());
    for step in &host {
        step.run(&[]).map_err(|f| failed(&f, started.elapsed()))?;
    }
    if !isolated.is_empty() {
        netns::outer(&Selection::new(Some(&isolated), &[])).map_err(|f| {
            failed(
                &Failure::new(format!(
                    "{f}\n       (the failing step inside the private network namespace \
                     is named above)"
                )),
                started.elapsed(),
            )
        })?;
    }
    let names: Vec<&str> = steps.iter().map(|s| s.name()).collect();
    println!(
        "\nxtask test: OK — setup + {} step(s) passed ({}) in {} s",
        steps.len(),
        names.join(", "),
        started.elapsed().as_secs()
    );
    Ok(())
}

fn failed(failure: &Failure, elapsed: Duration) -> Failure {
    Failure::new(format!(
        "test FAILED after {} s\n       {failure}",
        elapsed.as_secs()
    ))
}
