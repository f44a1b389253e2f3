//! `cargo xtask fuzz --seconds N [--only T,..]`: every cargo-fuzz target
//! of the project for `N` seconds each (nightly toolchain, cargo-fuzz),
//! then a table of executions, coverage and crashes per target. Fails when
//! any target crashed (or could not run).
//!
//! * Targets live in `peer/fuzz/` and `signal/fuzz/` (standalone crates,
//!   excluded from the workspace). Their bodies are in `<crate>/fuzz/checks.rs`,
//!   shared with the stable regression tests `<crate>/tests/fuzz_corpus.rs`.
//! * Input corpus: the committed generated seeds `<crate>/fuzz/corpus/<t>/seed-*`
//!   (read-only here) plus a working corpus under the target dir
//!   (`<target-dir>/fuzz-corpus/<t>/`), where libFuzzer keeps what it finds;
//!   nothing new lands in the source tree except crash reproducers.
//! * A crash: libFuzzer writes the input to `<crate>/fuzz/artifacts/<t>/`;
//!   it is copied to `<crate>/fuzz/regressions/<t>/`, which the regression
//!   test replays on every `cargo xtask test` (so it fails until fixed —
//!   commit the file with the fix).
//! * Logs: `<target-dir>/fuzz-logs/<t>.log`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::run::{Cmd, Failure, root, search_path};

/// Seconds per target when `--seconds` is not given.
pub const DEFAULT_SECONDS: u64 = 60;

/// Longest a single libFuzzer input may run before it counts as a hang
/// (libFuzzer `-timeout`, seconds).
const INPUT_TIMEOUT_SECS: u64 = 10;

/// libFuzzer's memory ceiling per target process (`-rss_limit_mb`): growth
/// beyond it is a finding (unbounded growth on network input).
const RSS_LIMIT_MB: u64 = 2048;

/// Extra wall-clock time a target run may take beyond `--seconds`
/// (start-up, corpus loading, final merge) before it is killed.
const RUN_SLACK: Duration = Duration::from_secs(300);

/// Longest the nightly build of one fuzz crate may take.
const BUILD_TIME_LIMIT: Duration = Duration::from_secs(60 * 60);

/// A cargo-fuzz crate and its targets.
struct FuzzCrate {
    /// The crate that owns `fuzz/`, relative to the workspace root.
    dir: &'static str,
    /// Target names (`fuzz/fuzz_targets/<name>.rs`).
    targets: &'static [&'static str],
}

const CRATES: &[FuzzCrate] = &[
    FuzzCrate {
        dir: "peer",
        targets: &[
            "frame_decode",
            "signaling_json",
            "certificate",
            "session_input",
        ],
    },
    FuzzCrate {
        dir: "signal",
        targets: &["range_header", "media_token", "ws_client_message"],
    },
];

/// Every target name, for `--only` and the usage text.
pub fn all_targets() -> Vec<&'static str> {
    CRATES
        .iter()
        .flat_map(|c| c.targets.iter().copied())
        .collect()
}

/// What `cargo xtask fuzz` was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FuzzArgs {
    /// Seconds per target.
    pub seconds: u64,
    /// Only these targets (all when empty).
    pub only: Vec<String>,
}

/// Parses the arguments after `cargo xtask fuzz`.
pub fn parse_args(args: &[String]) -> Result<FuzzArgs, String> {
    let mut out = FuzzArgs {
        seconds: DEFAULT_SECONDS,
        only: Vec::new(),
    };
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) => (flag, Some(value.to_owned())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| iter.next().cloned())
                .ok_or_else(|| format!("`{flag}` needs a value"))
        };
        match flag {
            "--seconds" => {
                out.seconds = value()?
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| "`--seconds` needs a positive number".to_owned())?;
            }
            "--only" => out.only.extend(
                value()?
                    .split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned),
            ),
            _ => return Err(format!("unknown option `{arg}` for `fuzz`")),
        }
    }
    Ok(out)
}

/// The figures of one target run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// `stat::number_of_executed_units`.
    pub execs: Option<u64>,
    /// Coverage counters (`cov:`) at the end of the run.
    pub cov: Option<u64>,
    /// Features (`ft:`) at the end of the run.
    pub features: Option<u64>,
    /// Corpus entries (`corp:`) at the end of the run.
    pub corpus: Option<u64>,
    /// Crash reproducers libFuzzer wrote (`Test unit written to …`).
    pub artifacts: Vec<String>,
}

fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Reads libFuzzer's output (run with `-print_final_stats=1`).
pub fn parse_log(log: &str) -> Stats {
    let mut s = Stats::default();
    for line in log.lines() {
        if let Some(n) = number_after(line, "stat::number_of_executed_units:") {
            s.execs = Some(n);
        }
        // Status lines: `#123 NEW    cov: 456 ft: 789 corp: 12/34b ...`
        if line.starts_with('#') && line.contains(" cov: ") {
            s.cov = number_after(line, " cov: ").or(s.cov);
            s.features = number_after(line, " ft: ").or(s.features);
            s.corpus = number_after(line, " corp: ").or(s.corpus);
        }
        if let Some(rest) = line.split("Test unit written to ").nth(1) {
            s.artifacts.push(rest.trim().to_owned());
        }
    }
    s
}

/// Where cargo puts build output (`CARGO_TARGET_DIR`, else `target/`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// The rustup proxy `cargo` (so `+nightly` works), else `cargo` on `PATH`.
fn rustup_cargo() -> PathBuf {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    home.map(|h| h.join("bin").join("cargo"))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("cargo"))
}

/// `cargo +nightly fuzz <sub>` for the crate in `dir`, without the
/// variables the outer (stable) cargo set for us.
fn nightly_fuzz(dir: &str, sub: &str) -> Vec<String> {
    let fuzz_dir = root().join(dir).join("fuzz");
    vec![
        "+nightly".into(),
        "fuzz".into(),
        sub.into(),
        "-O".into(),
        "--fuzz-dir".into(),
        fuzz_dir.to_string_lossy().into_owned(),
        "--target-dir".into(),
        target_dir().join("fuzz").to_string_lossy().into_owned(),
    ]
}

const OUTER_CARGO_VARS: [&str; 4] = ["CARGO", "RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC"];

fn check_tools() -> Result<(), Failure> {
    let fuzz = Cmd::new(rustup_cargo())
        .args(["+nightly", "fuzz", "--version"])
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("CARGO")
        .probe();
    if fuzz.is_none() {
        return Err(Failure::new(
            "`cargo +nightly fuzz` is not available. Install with:\n\n    \
             rustup toolchain install nightly --profile minimal\n    \
             cargo install --locked cargo-fuzz\n",
        ));
    }
    Ok(())
}

/// Runs one target; returns its figures and whether it exited cleanly.
fn run_target(krate: &FuzzCrate, target: &str, seconds: u64) -> Result<(Stats, bool), Failure> {
    let seeds = root().join(krate.dir).join("fuzz/corpus").join(target);
    let work = target_dir().join("fuzz-corpus").join(target);
    let logs = target_dir().join("fuzz-logs");
    for d in [&work, &logs] {
        std::fs::create_dir_all(d)
            .map_err(|e| Failure::new(format!("cannot create {}: {e}", d.display())))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log = File::create(&log_path)
        .map_err(|e| Failure::new(format!("cannot create {}: {e}", log_path.display())))?;
    let log_err = log
        .try_clone()
        .map_err(|e| Failure::new(format!("cannot open {}: {e}", log_path.display())))?;
    let mut args = nightly_fuzz(krate.dir, "run");
    args.push(target.into());
    args.push(work.to_string_lossy().into_owned());
    if seeds.is_dir() {
        args.push(seeds.to_string_lossy().into_owned());
    }
    args.extend([
        "--".into(),
        format!("-max_total_time={seconds}"),
        "-print_final_stats=1".into(),
        format!("-timeout={INPUT_TIMEOUT_SECS}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
    ]);
    println!("$ cargo {}  (log: {})", args.join(" "), log_path.display());
    let mut cmd = Command::new(rustup_cargo());
    cmd.args(&args)
        .current_dir(root().join(krate.dir))
        .env("PATH", search_path())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err);
    for var in OUTER_CARGO_VARS {
        cmd.env_remove(var);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| Failure::new(format!("could not start cargo fuzz: {e}")))?;
    let deadline = Duration::from_secs(seconds) + RUN_SLACK;
    let started = Instant::now();
    let clean = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status.success(),
            Ok(None) if started.elapsed() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                break false;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(Failure::new(format!("waiting for cargo fuzz: {e}"))),
        }
    };
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    Ok((parse_log(&text), clean))
}

/// Copies a crash reproducer into `<crate>/fuzz/regressions/<target>/`.
fn keep_regression(krate: &FuzzCrate, target: &str, artifact: &str) -> Option<PathBuf> {
    let src = {
        let p = Path::new(artifact);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            root().join(krate.dir).join(p)
        }
    };
    let dir = root().join(krate.dir).join("fuzz/regressions").join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let dst = dir.join(src.file_name()?);
    std::fs::copy(&src, &dst).ok()?;
    Some(dst)
}

fn show(n: Option<u64>) -> String {
    n.map_or_else(|| "?".to_owned(), |n| n.to_string())
}

/// `cargo xtask fuzz`.
pub fn run(args: &FuzzArgs) -> Result<(), Failure> {
    let known = all_targets();
    if let Some(bad) = args.only.iter().find(|t| !known.contains(&t.as_str())) {
        return Err(Failure::new(format!(
            "unknown fuzz target `{bad}` (targets: {})",
            known.join(", ")
        )));
    }
    check_tools()?;
    let wanted = |t: &str| args.only.is_empty() || args.only.iter().any(|o| o == t);
    let started = Instant::now();
    let mut rows: Vec<(String, Stats, bool)> = Vec::new();
    let mut failures: Vec<String> = Vec::new();
    for krate in CRATES {
        if !krate.targets.iter().any(|t| wanted(t)) {
            continue;
        }
        println!(
            "\n==> building the fuzz targets of {}/ (nightly, ASan)",
            krate.dir
        );
        let mut build = Cmd::new(rustup_cargo())
            .args(nightly_fuzz(krate.dir, "build"))
            .time_limit(BUILD_TIME_LIMIT);
        for var in OUTER_CARGO_VARS {
            build = build.env_remove(var);
        }
        build.run()?;
        for target in krate.targets.iter().filter(|t| wanted(t)) {
            println!("\n==> fuzzing {target} for {} s", args.seconds);
            let (stats, clean) = run_target(krate, target, args.seconds)?;
            for a in &stats.artifacts {
                match keep_regression(krate, target, a) {
                    Some(p) => failures.push(format!(
                        "{target}: crash, reproducer kept as {} (replayed by {}/tests/fuzz_corpus.rs)",
                        p.display(),
                        krate.dir
                    )),
                    None => failures.push(format!("{target}: crash, reproducer {a}")),
                }
            }
            if !clean && stats.artifacts.is_empty() {
                failures.push(format!(
                    "{target}: cargo fuzz did not finish cleanly (see {})",
                    target_dir()
                        .join("fuzz-logs")
                        .join(format!("{target}.log"))
                        .display()
                ));
            }
            rows.push(((*target).to_owned(), stats, clean));
        }
    }
    println!(
        "\n{:<20} {:>12} {:>8} {:>8} {:>8} {:>8}",
        "target", "execs", "cov", "ft", "corpus", "crashes"
    );
    for (t, s, _) in &rows {
        println!(
            "{:<20} {:>12} {:>8} {:>8} {:>8} {:>8}",
            t,
            show(s.execs),
            show(s.cov),
            show(s.features),
            show(s.corpus),
            s.artifacts.len()
        );
    }
    if failures.is_empty() {
        println!(
            "\nxtask fuzz: OK — {} target(s), {} s each, no crash ({} s in all)",
            rows.len(),
            args.seconds,
            started.elapsed().as_secs()
        );
        Ok(())
    } else {
        Err(Failure::new(format!(
            "fuzzing FAILED:\n       {}",
            failures.join("\n       ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\
INFO: Seed: 123
#2\tINITED cov: 310 ft: 320 corp: 9/1200b exec/s: 0 rss: 40Mb
#4096\tpulse  cov: 412 ft: 530 corp: 40/3kb lim: 43 exec/s: 2048 rss: 45Mb
#9000\tNEW    cov: 415 ft: 540 corp: 41/3kb lim: 43 exec/s: 2000 rss: 45Mb
Done 9123 runs in 5 second(s)
stat::number_of_executed_units: 9123
stat::average_exec_per_sec:     1824
";

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        let f = parse_args(&[]).expect("parses");
        assert_eq!((f.seconds, f.only.len()), (DEFAULT_SECONDS, 0));
        let f = parse_args(&args(&["--seconds=5", "--only", "a,b"])).expect("parses");
        assert_eq!(
            (f.seconds, f.only),
            (5, vec!["a".to_owned(), "b".to_owned()])
        );
        assert!(parse_args(&args(&["--seconds", "0"])).is_err());
        assert!(parse_args(&args(&["--seconds"])).is_err());
        assert!(parse_args(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn reads_final_figures() {
        let s = parse_log(LOG);
        assert_eq!(s.execs, Some(9123));
        assert_eq!(s.cov, Some(415));
        assert_eq!(s.features, Some(540));
        assert_eq!(s.corpus, Some(41));
        assert!(s.artifacts.is_empty());
    }

    #[test]
    fn reads_crash_artifacts() {
        let log = "==1==ERROR: AddressSanitizer: heap-buffer-overflow\n\
                   artifact_prefix='/x/artifacts/t/'; Test unit written to /x/artifacts/t/crash-abc\n";
        assert_eq!(parse_log(log).artifacts, vec!["/x/artifacts/t/crash-abc"]);
    }

    #[test]
    fn every_target_has_a_fuzz_source_and_seeds() {
        for krate in CRATES {
            for t in krate.targets {
                let src = root()
                    .join(krate.dir)
                    .join("fuzz/fuzz_targets")
                    .join(format!("{t}.rs"));
                assert!(src.is_file(), "{}", src.display());
                let manifest =
                    std::fs::read_to_string(root().join(krate.dir).join("fuzz/Cargo.toml"))
                        .expect("fuzz manifest");
                assert!(
                    manifest.contains(&format!("name = \"{t}\"")),
                    "{t} in manifest"
                );
            }
        }
    }
}
