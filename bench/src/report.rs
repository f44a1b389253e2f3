//! Writing `results.json` and the Markdown report.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::stats::Figure;
use crate::{Error, Options, Run};

/// Figures not measured by this harness yet (listed in every report).
const NOT_MEASURED: &[&str] = &[
    "Loss/delay grid (1 % / 5 % / 10 % UDP loss via nftables in a namespace; 50 / 150 ms one-way delay relay) for control latency and sync spread",
];

/// CPU model, core count and memory from `/proc`.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpu
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_owned();
    let cores = cpu.lines().filter(|l| l.starts_with("processor")).count();
    let mem = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let total_kib: u64 = mem
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{model}, {cores} logical CPUs, {:.1} GiB RAM, Linux {}",
        total_kib as f64 / 1024.0 / 1024.0,
        kernel.trim()
    )
}

/// The 1/5/15-minute load averages (other work on this machine skews the
/// figures; the report shows them).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn date() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

fn num(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 10_000.0 {
        format!("{v:.0}")
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn verdict(f: &Figure) -> String {
    match (f.met, f.missed_by) {
        (Some(true), _) => "met".into(),
        (Some(false), Some(by)) => format!("**missed by {} {}**", num(by), f.unit),
        (Some(false), None) => "**missed**".into(),
        (None, _) => "—".into(),
    }
}

const SECTIONS: &[(&str, &str)] = &[
    (
        "control",
        "Control latency: host command → follower's player (native peers, real WebRTC on loopback)",
    ),
    (
        "connect",
        "Connect time: followers join → every data channel open",
    ),
    (
        "sync",
        "Sync accuracy: spread of true positions across all peers at one instant",
    ),
    (
        "correction",
        "Correction quality in steady state (per follower)",
    ),
    (
        "browser",
        "Browser sync: two headless Chromium video elements",
    ),
    ("micro", "Micro benchmarks"),
    (
        "capacity",
        "Signaling server capacity (server as a separate release process)",
    ),
    (
        "relay",
        "Relay: offers/answers between pairs, ours vs matchbox_server",
    ),
    (
        "accounts",
        "Accounts: login with the production argon2 parameters",
    ),
];

/// Writes both files.
pub fn write(opts: &Options, run: &Run) -> Result<(), Error> {
    let machine = machine();
    let date = date();
    let json_doc = json!({
        "machine": machine,
        "date": date,
        "commit": opts.commit,
        "quick": opts.quick,
        "loadavg_start": opts.load_start,
        "loadavg_end": loadavg(),
        "figures": run.figures,
        "notes": run.notes,
        "section_seconds": run.timings,
    });
    write_file(
        &opts.json,
        &serde_json::to_string_pretty(&json_doc).map_err(Error::msg)?,
    )?;
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Produced by `cargo xtask bench{}` (release build). Raw records: `target/bench/results.json`.\n",
        if opts.quick { " --quick" } else { "" }
    );
    let _ = writeln!(md, "| | |\n|---|---|");
    let _ = writeln!(md, "| Machine | {machine} |");
    let _ = writeln!(md, "| Date | {date} |");
    let _ = writeln!(md, "| Commit | `{}` |", opts.commit);
    let _ = writeln!(
        md,
        "| Mode | {} |",
        if opts.quick { "quick" } else { "full" }
    );
    let _ = writeln!(
        md,
        "| Load average at start / end | {} / {} |",
        opts.load_start,
        loadavg()
    );
    let total: f64 = run.timings.iter().map(|t| t.1).sum();
    let _ = writeln!(md, "| Run time | {total:.0} s |\n");
    let _ = writeln!(
        md,
        "Each row summarises `runs` samples: median, 99th percentile (nearest rank), min and max. \
         Targets are issue 9's goals, compared with the statistic named in the target column; \
         they are goals, not test assertions.\n"
    );
    let _ = writeln!(md, "## Summary against targets\n");
    let _ = writeln!(
        md,
        "| Figure | Target | Measured | Verdict |\n|---|---|---|---|"
    );
    for f in run.figures.iter().filter(|f| f.target.is_some()) {
        if let Some(t) = &f.target {
            let v = match t.stat {
                crate::stats::Stat::Median => f.median,
                crate::stats::Stat::P99 => f.p99,
                crate::stats::Stat::Max => f.max,
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} {} | {} |",
                f.name,
                t.text,
                num(v),
                f.unit,
                verdict(f)
            );
        }
    }
    let _ = writeln!(md);
    for (group, title) in SECTIONS {
        let figs: Vec<&Figure> = run.figures.iter().filter(|f| f.group == *group).collect();
        if figs.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {title}\n");
        let _ = writeln!(
            md,
            "| Figure | Unit | Median | p99 | Min | Max | Runs | Target | Verdict | Parameters |\n|---|---|---|---|---|---|---|---|---|---|"
        );
        for f in figs {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                f.name,
                f.unit,
                num(f.median),
                num(f.p99),
                num(f.min),
                num(f.max),
                f.runs,
                f.target.as_ref().map_or("—", |t| t.text.as_str()),
                verdict(f),
                params(&f.params)
            );
        }
        let _ = writeln!(md);
    }
    if let Some(text) = opts
        .analysis
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
    {
        let _ = writeln!(md, "{}\n", text.trim_end());
    }
    let _ = writeln!(md, "## Notes, failures and figures not yet measured\n");
    for n in &run.notes {
        let _ = writeln!(md, "- {n}");
    }
    for n in NOT_MEASURED {
        let _ = writeln!(md, "- Not yet measured: {n}.");
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Time per section: {}",
        run.timings
            .iter()
            .map(|(s, t)| format!("{s} {t:.0} s"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    write_file(&opts.markdown, &md)
}

fn params(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("; ")
            .replace('|', "/"),
        other => other.to_string(),
    }
}

fn write_file(path: &Path, text: &str) -> Result<(), Error> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    Ok(())
}
