//! `cargo xtask bench [--quick] [--only SECTION,..]`: builds the release
//! binaries, installs `matchbox_server` when missing (the comparison server
//! of the relay figures), builds the wasm bundle for its size, and runs
//! `watchparty-bench`, which writes `target/bench/results.json` and the
//! Markdown report.
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

use std::path::PathBuf;
use std::time::Duration;

use crate::netns;
use crate::run::{Cmd, Failure, find_program, root};

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
                o.only = Some(
                    it.next()
                        .cloned()
                        .ok_or("`--only` needs a list: rooms,micro,capacity,accounts,browser")?,
                );
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

/// The browser measurement: re-runs xtask inside a private network
/// namespace (Chromium gathers no loopback candidates) to run
/// `tests/tests/browser_spread.rs`; returns its samples file. When it
/// fails, the file holds `{"error": ...}` and the bench notes the failure.
fn browser_measurement(quick: bool) -> PathBuf {
    let out = root().join("target").join("bench").join(BROWSER_SAMPLES);
    // A stale file from an earlier run must not be reported as this one.
    let _ = std::fs::remove_file(&out);
    let mut args = vec!["bench".to_owned(), IN_NETNS_BROWSER.to_owned()];
    if quick {
        args.push("--quick".to_owned());
    }
    println!("\n==> browser sync spread (two headless Chromium pages)");
    let result = Cmd::cargo()
        .args(["fetch"])
        .run()
        .and_then(|()| netns::reexec(&args));
    if let Err(e) = result {
        eprintln!("xtask bench: the browser measurement failed: {e}");
        if !out.is_file() {
            let _ = std::fs::create_dir_all(root().join("target").join("bench"));
            let doc = format!("{{\"error\": {}}}\n", json_string(&e.to_string()));
            let _ = std::fs::write(&out, doc);
        }
    }
    out
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
/// the measurement.
fn browser_inner(quick: bool) -> Result<(), Failure> {
    netns::enter()?;
    let isolated = |cmd: Cmd| {
        netns::NETNS_ENV
            .iter()
            .fold(cmd, |cmd, (key, value)| cmd.env(key, value))
    };
    for cmd in crate::web::bundle_commands(true) {
        isolated(cmd).run()?;
    }
    let out = root().join("target").join("bench").join(BROWSER_SAMPLES);
    let mut test = crate::test::browser_env(isolated(Cmd::cargo()))
        .args(["test", "--offline", "-p", "watchparty-e2e"])
        .args(["--test", "browser_spread", "--", "--ignored", "--nocapture"])
        .env("WATCHPARTY_WEB_DIR", root().join("web"))
        .env("WATCHPARTY_WEB_PKG_DIR", crate::web::pkg_dir())
        .env(BROWSER_OUT_ENV, out)
        .time_limit(BROWSER_TIME_LIMIT);
    if quick {
        test = test.env(BROWSER_QUICK_ENV, "1");
    }
    test.run()
}

/// Runs `cargo xtask bench`.
pub fn run(opts: &BenchOptions) -> Result<(), Failure> {
    if opts.in_netns_browser {
        return browser_inner(opts.quick);
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
    let browser = opts
        .only
        .as_deref()
        .is_none_or(|o| o.contains("browser"))
        .then(|| browser_measurement(opts.quick));
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
    let mut cmd = Cmd::new(release.join("watchparty-bench"))
        .args(["--json"])
        .args([bench_dir.join("results.json")])
        .args(["--markdown"])
        .args([&markdown])
        .args(["--analysis"])
        .args([root().join("bench").join("analysis.md")])
        .args(["--signal-bin"])
        .args([release.join("watchparty-signal")])
        .args([
            "--commit",
            &format!("{commit}{}", if dirty { " (modified)" } else { "" }),
        ])
        .time_limit(BENCH_TIME_LIMIT);
    if opts.quick {
        cmd = cmd.args(["--quick"]);
    }
    if let Some(only) = &opts.only {
        cmd = cmd.args(["--only", only]);
    }
    if let Some(mb) = mb {
        cmd = cmd.args(["--matchbox-bin"]).args([mb]);
    }
    for w in wasm {
        cmd = cmd.args(["--wasm"]).args([w]);
    }
    if let Some(samples) = browser {
        cmd = cmd.args(["--browser-samples"]).args([samples]);
    }
    cmd.run()?;
    println!(
        "xtask bench: wrote {} and {}",
        bench_dir.join("results.json").display(),
        markdown.display()
    );
    Ok(())
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
}
