//! `cargo xtask bench [--quick] [--only SECTION,..]`: builds the release
//! binaries, installs `matchbox_server` when missing (the comparison server
//! of the relay figures), builds the wasm bundle for its size (all of that
//! outside, with the network), then runs `watchparty-bench` inside a fresh
//! private network namespace ([`crate::netns`], with its environment
//! [`crate::netns::NETNS_ENV`]): the loss/delay grid changes that
//! namespace's firewall, and every other section only needs 127.0.0.1
//! there. It writes `target/bench/results.json` and the Markdown report.
//!
//! A full run writes `docs/benchmarks.md`; `--quick` (under 3 minutes once
//! built) writes `target/bench/benchmarks-quick.md` so the committed full
//! numbers are not replaced by short runs.
//!
//! The `browser` section (sync spread between two headless Chromium `video`
//! elements) is measured first by the e2e target
//! `tests/tests/browser_spread.rs` inside a private network namespace (see
//! [`browser_measurement`]); its raw samples go to
//! `target/bench/browser_spread.json` and on to the bench binary with
//! `--browser-samples`.
//!
//! The `room_life` section (time to resume after a host reload, and the
//! like) is measured in the same namespace right after: the reload tests of
//! [`ROOM_LIFE_TESTS`] run [`ROOM_LIFE_RUNS`] times each, and every passing
//! run appends its figure to `target/bench/room_life.jsonl`, passed on with
//! `--room-life-samples`.
//!
//! The `acoustic` section (what people hear: each player's real audio
//! output through a private PulseAudio daemon) is measured there too, by
//! `tests/tests/acoustic.rs` with a longer window; its offsets go to
//! `target/bench/acoustic.json`, passed on with `--acoustic-samples`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::netns;
use crate::run::{Cmd, Failure, find_program, root};

/// Name of the internal subcommand that runs the bench binary inside the
/// namespace: `__in-netns-bench PROGRAM ARGS..`.
pub const IN_NETNS_BENCH: &str = "__in-netns-bench";

/// The comparison server and the version issue 9 names.
const MATCHBOX: &str = "matchbox_server";
const MATCHBOX_VERSION: &str = "0.15.0";

/// Longest the bench binary may run (a full run takes about 10 minutes).
const BENCH_TIME_LIMIT: Duration = Duration::from_secs(40 * 60);

/// Internal option of `bench`: only the browser measurement, inside the
/// private network namespace xtask re-runs itself in.
const IN_NETNS_BROWSER: &str = "--in-netns-browser";
/// File (under `target/bench/`) with the browser measurement's samples.
const BROWSER_SAMPLES: &str = "browser_spread.json";
/// Env naming that file for the measurement.
const BROWSER_OUT_ENV: &str = "WATCHPARTY_BENCH_BROWSER_OUT";
/// Env selecting the measurement's short windows.
const BROWSER_QUICK_ENV: &str = "WATCHPARTY_BENCH_QUICK";
/// Longest the browser measurement may take, its build included (the run
/// itself takes under 2 minutes).
const BROWSER_TIME_LIMIT: Duration = Duration::from_secs(30 * 60);
/// The e2e test targets that measure the room-life figures (each one's
/// figure names are in `bench/src/room_life.rs`).
pub const ROOM_LIFE_TESTS: &[&str] = &["web_host_reload", "web_follower_reload"];
/// Runs of each room-life test in a full bench (`--quick`: 1).
const ROOM_LIFE_RUNS: usize = 5;
/// File (under `target/bench/`) the room-life tests append their figures to.
const ROOM_LIFE_SAMPLES: &str = "room_life.jsonl";
/// Env naming that file for the tests (`tests/tests/browser/mod.rs`).
const ROOM_LIFE_OUT_ENV: &str = "WATCHPARTY_BENCH_ROOM_LIFE_OUT";
/// Longest one room-life test run may take (one takes under a minute).
const ROOM_LIFE_TIME_LIMIT: Duration = Duration::from_secs(10 * 60);
/// The e2e test target of the acoustic measure.
const ACOUSTIC_TEST: &str = "acoustic";
/// File (under `target/bench/`) with the acoustic offsets.
const ACOUSTIC_SAMPLES: &str = "acoustic.json";
/// Env naming that file for the measurement (`tests/tests/acoustic.rs`).
const ACOUSTIC_OUT_ENV: &str = "WATCHPARTY_BENCH_ACOUSTIC_OUT";
/// Longest the acoustic measurement may take (a full one: about 2 minutes).
const ACOUSTIC_TIME_LIMIT: Duration = Duration::from_secs(10 * 60);

/// Options of `cargo xtask bench`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BenchOptions {
    /// Short runs.
    pub quick: bool,
    /// Sections (empty: all).
    pub only: Option<String>,
    /// Internal: only the browser measurement (we are inside the namespace).
    pub in_netns_browser: bool,
}

/// Parses the arguments after `bench`.
pub fn parse(args: &[String]) -> Result<BenchOptions, String> {
    let mut o = BenchOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            IN_NETNS_BROWSER => o.in_netns_browser = true,
            "--only" => {
                o.only = Some(it.next().cloned().ok_or(
                    "`--only` needs a list: rooms,grid,micro,capacity,accounts,browser,room_life,\
                     acoustic",
                )?);
            }
            other => return Err(format!("unknown option `{other}` for `bench`")),
        }
    }
    Ok(o)
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// Finds `matchbox_server`, installing it with cargo when missing. A failed
/// install is reported and the comparison skipped.
fn matchbox() -> Option<PathBuf> {
    if let Some(p) = find_program(MATCHBOX) {
        return Some(p);
    }
    println!("xtask bench: installing {MATCHBOX} {MATCHBOX_VERSION} (about 4 minutes)");
    let r = Cmd::cargo()
        .args([
            "install",
            "--locked",
            MATCHBOX,
            "--version",
            MATCHBOX_VERSION,
        ])
        .env_remove("CARGO_TARGET_DIR")
        .run();
    match r {
        Ok(()) => find_program(MATCHBOX),
        Err(e) => {
            eprintln!("xtask bench: {e}; the matchbox comparison is skipped");
            None
        }
    }
}

/// Builds the wasm bundle; returns the files to size (best effort).
fn wasm_bundle(target: &std::path::Path) -> Vec<PathBuf> {
    let built = Cmd::cargo()
        .args([
            "build",
            "-p",
            "watchparty-wasm-peer",
            "--target",
            "wasm32-unknown-unknown",
            "--release",
        ])
        .run();
    if let Err(e) = built {
        eprintln!("xtask bench: wasm build failed ({e}); bundle size not measured");
        return Vec::new();
    }
    let wasm = target
        .join("wasm32-unknown-unknown")
        .join("release")
        .join("watchparty_wasm_peer.wasm");
    let pkg = target.join("bench").join("pkg");
    let bindgen = Cmd::new("wasm-bindgen")
        .args(["--target", "web", "--out-dir"])
        .args([&pkg])
        .args([&wasm])
        .run();
    match bindgen {
        Ok(()) => vec![
            pkg.join("watchparty_wasm_peer_bg.wasm"),
            pkg.join("watchparty_wasm_peer.js"),
        ],
        Err(e) => {
            eprintln!("xtask bench: wasm-bindgen failed ({e}); sizing the raw .wasm");
            vec![wasm]
        }
    }
}

/// A path as a command-line argument of the re-executed xtask.
fn arg(path: &Path) -> Result<String, Failure> {
    path.to_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::new(format!("path is not UTF-8: {}", path.display())))
}

/// What the bench binary is given.
#[derive(Debug)]
struct BenchArgs {
    results: PathBuf,
    markdown: PathBuf,
    analysis: PathBuf,
    signal: PathBuf,
    commit: String,
    matchbox: Option<PathBuf>,
    wasm: Vec<PathBuf>,
    previous: Option<PathBuf>,
    browser_samples: Option<PathBuf>,
    room_life_samples: Option<PathBuf>,
    acoustic_samples: Option<PathBuf>,
}

/// The bench binary's command line (without the program).
fn bench_args(opts: &BenchOptions, b: &BenchArgs) -> Result<Vec<String>, Failure> {
    let mut v = vec!["--json".to_owned(), arg(&b.results)?];
    v.extend(["--markdown".to_owned(), arg(&b.markdown)?]);
    v.extend(["--analysis".to_owned(), arg(&b.analysis)?]);
    v.extend(["--signal-bin".to_owned(), arg(&b.signal)?]);
    v.extend(["--commit".to_owned(), b.commit.clone()]);
    if opts.quick {
        v.push("--quick".to_owned());
    }
    if let Some(only) = &opts.only {
        v.extend(["--only".to_owned(), only.clone()]);
    }
    if let Some(mb) = &b.matchbox {
        v.extend(["--matchbox-bin".to_owned(), arg(mb)?]);
    }
    for w in &b.wasm {
        v.extend(["--wasm".to_owned(), arg(w)?]);
    }
    if let Some(p) = &b.previous {
        v.extend(["--previous".to_owned(), arg(p)?]);
    }
    if let Some(p) = &b.browser_samples {
        v.extend(["--browser-samples".to_owned(), arg(p)?]);
    }
    if let Some(p) = &b.room_life_samples {
        v.extend(["--room-life-samples".to_owned(), arg(p)?]);
    }
    if let Some(p) = &b.acoustic_samples {
        v.extend(["--acoustic-samples".to_owned(), arg(p)?]);
    }
    Ok(v)
}

/// Which browser measurements a bench run wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BrowserParts {
    /// The sync spread (`browser`).
    spread: bool,
    /// The reload figures (`room_life`).
    room_life: bool,
    /// What people hear (`acoustic`).
    acoustic: bool,
}

impl BrowserParts {
    fn of(only: Option<&str>) -> Self {
        let wants = |s: &str| only.is_none_or(|o| o.split(',').any(|x| x == s));
        Self {
            spread: wants("browser"),
            room_life: wants("room_life"),
            acoustic: wants("acoustic"),
        }
    }

    fn any(self) -> bool {
        self.spread || self.room_life || self.acoustic
    }
}

/// The browser measurements: re-runs xtask inside a private network
/// namespace (Chromium gathers no loopback candidates) to run
/// `tests/tests/browser_spread.rs`, the room-life tests and the acoustic
/// measure; returns the samples files (spread, room life, acoustic). When
/// the spread or acoustic measurement fails, its file holds
/// `{"error": ...}` and the bench notes the failure; a room-life run that
/// fails adds no line (the bench notes what is missing).
fn browser_measurement(quick: bool, parts: BrowserParts) -> [Option<PathBuf>; 3] {
    let dir = root().join("target").join("bench");
    let out = dir.join(BROWSER_SAMPLES);
    let life = dir.join(ROOM_LIFE_SAMPLES);
    let acoustic = dir.join(ACOUSTIC_SAMPLES);
    // Stale files from an earlier run must not be reported as this one.
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&life);
    let _ = std::fs::remove_file(&acoustic);
    // The tests append to `life`: its folder must exist.
    let _ = std::fs::create_dir_all(&dir);
    let mut args = vec!["bench".to_owned(), IN_NETNS_BROWSER.to_owned()];
    if quick {
        args.push("--quick".to_owned());
    }
    let only: Vec<&str> = [
        (parts.spread, "browser"),
        (parts.room_life, "room_life"),
        (parts.acoustic, "acoustic"),
    ]
    .into_iter()
    .filter_map(|(want, name)| want.then_some(name))
    .collect();
    args.extend(["--only".to_owned(), only.join(",")]);
    println!("\n==> browser measurements ({})", only.join(", "));
    let result = Cmd::cargo()
        .args(["fetch"])
        .run()
        .and_then(|()| netns::reexec(&args));
    if let Err(e) = result {
        eprintln!("xtask bench: the browser measurement failed: {e}");
        let doc = format!("{{\"error\": {}}}\n", json_string(&e.to_string()));
        for (want, file) in [(parts.spread, &out), (parts.acoustic, &acoustic)] {
            if want && !file.is_file() {
                let _ = std::fs::create_dir_all(&dir);
                let _ = std::fs::write(file, &doc);
            }
        }
    }
    [
        parts.spread.then_some(out),
        parts.room_life.then_some(life),
        parts.acoustic.then_some(acoustic),
    ]
}

/// `text` as a JSON string literal (xtask has no dependencies).
fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Inside the namespace: builds the bundle as the `e2e` step does and runs
/// the measurements `parts` names.
fn browser_inner(quick: bool, parts: BrowserParts) -> Result<(), Failure> {
    netns::enter()?;
    let isolated = |cmd: Cmd| {
        netns::NETNS_ENV
            .iter()
            .fold(cmd, |cmd, (key, value)| cmd.env(key, value))
    };
    for cmd in crate::web::bundle_commands(true) {
        isolated(cmd).run()?;
    }
    let e2e_test = |target: &str, ignored: bool| {
        let mut args = vec!["--nocapture"];
        if ignored {
            args.push("--ignored");
        }
        crate::test::browser_env(isolated(Cmd::cargo()))
            .args(["test", "--offline", "-p", "watchparty-e2e"])
            .args(["--test", target, "--"])
            .args(args)
            .env("WATCHPARTY_WEB_DIR", root().join("web"))
            .env("WATCHPARTY_WEB_PKG_DIR", crate::web::pkg_dir())
    };
    let dir = root().join("target").join("bench");
    let mut spread = Ok(());
    if parts.spread {
        let mut test = e2e_test("browser_spread", true)
            .env(BROWSER_OUT_ENV, dir.join(BROWSER_SAMPLES))
            .time_limit(BROWSER_TIME_LIMIT);
        if quick {
            test = test.env(BROWSER_QUICK_ENV, "1");
        }
        spread = test.run();
    }
    if parts.room_life {
        let runs = if quick { 1 } else { ROOM_LIFE_RUNS };
        for target in ROOM_LIFE_TESTS {
            for i in 1..=runs {
                println!("\n==> room life: {target}, run {i} of {runs}");
                let r = e2e_test(target, false)
                    .env(ROOM_LIFE_OUT_ENV, dir.join(ROOM_LIFE_SAMPLES))
                    .time_limit(ROOM_LIFE_TIME_LIMIT)
                    .run();
                if let Err(e) = r {
                    eprintln!("xtask bench: {target} run {i} failed (no figure): {e}");
                }
            }
        }
    }
    let mut acoustic = Ok(());
    if parts.acoustic {
        println!("\n==> acoustic: {ACOUSTIC_TEST}");
        let mut test = e2e_test(ACOUSTIC_TEST, false)
            .env(ACOUSTIC_OUT_ENV, dir.join(ACOUSTIC_SAMPLES))
            .time_limit(ACOUSTIC_TIME_LIMIT);
        if quick {
            test = test.env(BROWSER_QUICK_ENV, "1");
        }
        acoustic = test.run();
    }
    spread.and(acoustic)
}

/// Runs `cargo xtask bench`: builds outside, measures inside a private
/// network namespace.
pub fn run(opts: &BenchOptions) -> Result<(), Failure> {
    if opts.in_netns_browser {
        return browser_inner(opts.quick, BrowserParts::of(opts.only.as_deref()));
    }
    let target = target_dir();
    let mb = matchbox();
    Cmd::cargo()
        .args([
            "build",
            "--release",
            "-p",
            "watchparty-bench",
            "-p",
            "watchparty-signal",
        ])
        .run()?;
    let wasm = if opts.only.as_deref().is_none_or(|o| o.contains("micro")) {
        wasm_bundle(&target)
    } else {
        Vec::new()
    };
    let parts = BrowserParts::of(opts.only.as_deref());
    let [browser, room_life, acoustic] = if parts.any() {
        browser_measurement(opts.quick, parts)
    } else {
        [None, None, None]
    };
    let commit = Cmd::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .probe()
        .unwrap_or_default();
    let dirty = Cmd::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .probe()
        .is_some_and(|s| !s.is_empty());
    let release = target.join("release");
    let bench_dir = root().join("target").join("bench");
    let markdown = if opts.quick {
        bench_dir.join("benchmarks-quick.md")
    } else {
        root().join("docs").join("benchmarks.md")
    };
    // The last results become the previous ones, compared in the report.
    let previous = bench_dir.join("results-previous.json");
    let have_previous = std::fs::rename(bench_dir.join("results.json"), &previous).is_ok();
    let args = bench_args(
        opts,
        &BenchArgs {
            results: bench_dir.join("results.json"),
            markdown: markdown.clone(),
            analysis: root().join("bench").join("analysis.md"),
            signal: release.join("watchparty-signal"),
            commit: format!("{commit}{}", if dirty { " (modified)" } else { "" }),
            matchbox: mb,
            wasm,
            previous: have_previous.then_some(previous),
            browser_samples: browser,
            room_life_samples: room_life,
            acoustic_samples: acoustic,
        },
    )?;
    let mut inner = vec![
        IN_NETNS_BENCH.to_owned(),
        arg(&release.join("watchparty-bench"))?,
    ];
    inner.extend(args);
    netns::reexec(&inner)?;
    println!(
        "xtask bench: wrote {} and {}",
        bench_dir.join("results.json").display(),
        markdown.display()
    );
    Ok(())
}

/// Inside the namespace (`__in-netns-bench PROGRAM ARGS..`): checks and
/// configures it like the test steps (so Chromium gathers candidates
/// there), then runs the bench binary with [`netns::NETNS_ENV`].
pub fn inner(args: &[String]) -> Result<(), Failure> {
    let Some((program, rest)) = args.split_first() else {
        return Err(Failure::new(format!(
            "`{IN_NETNS_BENCH}` needs the bench program"
        )));
    };
    netns::enter()?;
    netns::NETNS_ENV
        .iter()
        .fold(Cmd::new(program), |cmd, (key, value)| cmd.env(key, value))
        .args(rest)
        .time_limit(BENCH_TIME_LIMIT)
        .run()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bench_options() {
        let a = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert_eq!(parse(&a(&[])), Ok(BenchOptions::default()));
        let o = parse(&a(&["--quick", "--only", "micro"])).unwrap();
        assert!(o.quick);
        assert_eq!(o.only.as_deref(), Some("micro"));
        assert!(parse(&a(&["--only"])).is_err());
        assert!(parse(&a(&["--fast"])).is_err());
        let o = parse(&a(&[IN_NETNS_BROWSER, "--quick"])).unwrap();
        assert!(o.in_netns_browser && o.quick);
    }

    #[test]
    fn failure_messages_become_json_strings() {
        assert_eq!(json_string("a \"b\" \\ c\nd"), r#""a \"b\" \\ c\u000ad""#);
    }

    #[test]
    fn bench_command_line() {
        let b = BenchArgs {
            results: "/t/results.json".into(),
            markdown: "/t/q.md".into(),
            analysis: "/r/analysis.md".into(),
            signal: "/t/sig".into(),
            commit: "abc (modified)".into(),
            matchbox: Some("/bin/mb".into()),
            wasm: vec!["/t/a.wasm".into(), "/t/a.js".into()],
            previous: None,
            browser_samples: None,
            room_life_samples: Some("/t/life.jsonl".into()),
            acoustic_samples: Some("/t/acoustic.json".into()),
        };
        let quick = BenchOptions {
            quick: true,
            only: Some("grid".into()),
            ..BenchOptions::default()
        };
        let v = bench_args(&quick, &b).unwrap();
        let pairs: Vec<(&str, &str)> = v
            .windows(2)
            .map(|w| (w[0].as_str(), w[1].as_str()))
            .collect();
        for want in [
            ("--json", "/t/results.json"),
            ("--markdown", "/t/q.md"),
            ("--commit", "abc (modified)"),
            ("--only", "grid"),
            ("--matchbox-bin", "/bin/mb"),
            ("--wasm", "/t/a.js"),
            ("--room-life-samples", "/t/life.jsonl"),
            ("--acoustic-samples", "/t/acoustic.json"),
        ] {
            assert!(pairs.contains(&want), "{want:?} in {v:?}");
        }
        assert!(v.iter().any(|a| a == "--quick"));
        let full = bench_args(
            &BenchOptions::default(),
            &BenchArgs {
                matchbox: None,
                previous: None,
                browser_samples: None,
                ..b
            },
        )
        .unwrap();
        assert!(
            !full
                .iter()
                .any(|a| a == "--quick" || a == "--only" || a == "--matchbox-bin")
        );
        assert!(inner(&[]).is_err());
    }

    #[test]
    fn browser_parts_follow_only() {
        let all = BrowserParts::of(None);
        assert!(all.spread && all.room_life && all.acoustic);
        let heard = BrowserParts::of(Some("acoustic"));
        assert!(heard.acoustic && !heard.spread && !heard.room_life && heard.any());
        let life = BrowserParts::of(Some("micro,room_life"));
        assert!(!life.spread && life.room_life);
        let spread = BrowserParts::of(Some("browser"));
        assert!(spread.spread && !spread.room_life);
        let none = BrowserParts::of(Some("grid"));
        assert!(!none.spread && !none.room_life && !none.any());
    }

    /// Every room-life test exists, and is the one the bench binary names
    /// for its figures (`test: "..."` in bench/src/room_life.rs).
    #[test]
    fn room_life_tests_match_the_bench_figures() {
        let src = std::fs::read_to_string(root().join("bench/src/room_life.rs")).unwrap();
        let named: std::collections::BTreeSet<&str> = src
            .split("test: \"")
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        let ours: std::collections::BTreeSet<&str> = ROOM_LIFE_TESTS.iter().copied().collect();
        assert_eq!(named, ours);
        for t in ROOM_LIFE_TESTS {
            assert!(
                root().join("tests/tests").join(format!("{t}.rs")).is_file(),
                "{t}"
            );
        }
    }
}
