//! `cargo xtask bench [--quick] [--only SECTION,..]`: builds the release
//! binaries, installs `matchbox_server` when missing (the comparison server
//! of the relay figures), builds the wasm bundle for its size, and runs
//! `watchparty-bench`, which writes `target/bench/results.json` and the
//! Markdown report.
//!
//! A full run writes `docs/benchmarks.md`; `--quick` (under 3 minutes once
//! built) writes `target/bench/benchmarks-quick.md` so the committed full
//! numbers are not replaced by short runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::run::{Cmd, Failure, find_program, root};

/// The comparison server and the version issue 9 names.
const MATCHBOX: &str = "matchbox_server";
const MATCHBOX_VERSION: &str = "0.15.0";

/// Longest the bench binary may run (a full run takes about 10 minutes).
const BENCH_TIME_LIMIT: Duration = Duration::from_secs(40 * 60);

/// Options of `cargo xtask bench`.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BenchOptions {
    /// Short runs.
    pub quick: bool,
    /// Sections (empty: all).
    pub only: Option<String>,
}

/// Parses the arguments after `bench`.
pub fn parse(args: &[String]) -> Result<BenchOptions, String> {
    let mut o = BenchOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--only" => {
                o.only = Some(
                    it.next()
                        .cloned()
                        .ok_or("`--only` needs a list: rooms,micro,capacity,accounts")?,
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

/// Runs `cargo xtask bench`.
pub fn run(opts: &BenchOptions) -> Result<(), Failure> {
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
    let results = bench_dir.join("results.json");
    let previous = bench_dir.join("results-previous.json");
    let have_previous = std::fs::rename(&results, &previous).is_ok();
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
    if have_previous {
        cmd = cmd.args(["--previous"]).args([&previous]);
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
    }
}
