//! Writing `results.json` and the Markdown report.

use std::fmt::Write as _;
use std::path::Path;

use serde_json::json;

use crate::grid::{CELLS, GRID_PEERS, naming};
use crate::room_bench::{GRID_GROUP, Naming};
use crate::stats::Figure;
use crate::{Error, Options, Run};

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
        GRID_GROUP,
        "Network impairment grid: the room figures under UDP loss and added one-way delay (N = 4, private network namespace)",
    ),
    (
        "browser",
        "Browser sync: two headless Chromium video elements",
    ),
    (
        crate::acoustic::GROUP,
        "Acoustic sync: what people hear (two Chromium pages and two mpv, real audio output captured through PulseAudio), next to what the players report",
    ),
    (
        crate::acoustic::VISUAL_GROUP,
        "Visual sync: which frame each Chromium page shows, and when (requestVideoFrameCallback, same run as the acoustic section)",
    ),
    (
        "room_life",
        "Room life: a page reloads mid-play (two Chromium profiles + a native follower)",
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
        if *group == GRID_GROUP {
            md.push_str(&grid_matrix(&run.figures));
        }
        if *group == crate::acoustic::GROUP {
            let _ = writeln!(md, "{}\n", crate::acoustic::ANCHORS);
        }
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
    if let Some(path) = &opts.previous {
        match crate::compare::Previous::read(path) {
            Ok(prev) => crate::compare::section(&mut md, &prev, opts.quick, &run.figures),
            Err(e) => {
                let _ = writeln!(md, "Previous results not compared: {e}.\n");
            }
        }
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

/// Rows of the grid matrix: figure base name and unit.
const GRID_ROWS: &[(&str, &str)] = &[
    ("control_latency_seek", "ms"),
    ("control_latency_play", "ms"),
    ("control_latency_pause", "ms"),
    ("commands_lost", "commands"),
    ("spread_after_play", "ms"),
    ("spread_after_seek", "ms"),
    ("spread_steady", "ms"),
    ("seeks_per_min", "1/min"),
    ("rate_changes_per_min", "1/min"),
    ("time_off_1x", "%"),
    ("max_rate_deviation", "ppm"),
    ("connect_time", "ms"),
];

/// The grid at a glance: one row per figure, one column per cell (median /
/// p99), next to the loopback section's figure of the same room size when
/// this run has it. The full records follow in the usual table.
fn grid_matrix(figures: &[Figure]) -> String {
    let find = |name: &str| figures.iter().find(|f| f.name == name);
    let cell = |f: Option<&Figure>| match f {
        None => "—".to_owned(),
        Some(f) if f.runs == 1 => num(f.median),
        Some(f) => format!("{} / {}", num(f.median), num(f.p99)),
    };
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Loss: nftables drops the given share of UDP datagrams arriving at every follower's port \
         (host → follower and follower ↔ follower lossy, follower → host clean). Delay: a \
         userspace relay in front of every follower adds the given delay to every one-way path \
         (host ↔ follower and follower ↔ follower alike, no jitter); the ICE round trips in the \
         connect rows' parameters show it. `none` is the same room and phases without impairment. \
         Clock distortions as in the loopback section (±5 s offsets, ±200 ppm drift). No targets: \
         issue 9's targets are for loopback. Cells: median / p99 (single values: the value).\n"
    );
    let loopback = |base: &str| Naming::loopback(GRID_PEERS).name(base);
    let _ = write!(
        md,
        "| Figure (N = {GRID_PEERS}) | Unit | Loopback section |"
    );
    for c in CELLS {
        let _ = write!(md, " {} |", c.tag());
    }
    let _ = write!(md, "\n|---|---|---|");
    for _ in CELLS {
        md.push_str("---|");
    }
    md.push('\n');
    for (base, unit) in GRID_ROWS {
        let _ = write!(md, "| {base} | {unit} | {} |", cell(find(&loopback(base))));
        for c in CELLS {
            let _ = write!(md, " {} |", cell(find(&naming(c).name(base))));
        }
        md.push('\n');
    }
    md.push('\n');
    md
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grid::Impairment;

    fn fig(name: &str, samples: &[f64]) -> Figure {
        Figure::new("g", name, "ms", samples, json!({}), None).unwrap()
    }

    #[test]
    fn grid_matrix_puts_cells_next_to_loopback() {
        let figures = [
            fig("control_latency_seek_n4", &[1.0, 2.0, 3.0]),
            fig("grid_control_latency_seek_loss5_n4", &[10.0, 20.0, 30.0]),
            fig("grid_commands_lost_delay150_n4", &[2.0]),
            fig("control_latency_seek_n8", &[99.0]),
        ];
        let md = grid_matrix(&figures);
        let row = md
            .lines()
            .find(|l| l.starts_with("| control_latency_seek |"))
            .unwrap();
        let cols: Vec<&str> = row.split('|').map(str::trim).collect();
        // "", name, unit, loopback, then the cells in CELLS order.
        let at = |c: Impairment| 4 + CELLS.iter().position(|x| *x == c).unwrap();
        assert_eq!(cols[3], "2.00 / 3.00");
        assert_eq!(cols[at(Impairment::Loss(5))], "20.00 / 30.00");
        assert_eq!(cols[at(Impairment::None)], "—");
        assert!(!row.contains("99"));
        let lost = md
            .lines()
            .find(|l| l.starts_with("| commands_lost |"))
            .unwrap();
        let cols: Vec<&str> = lost.split('|').map(str::trim).collect();
        assert_eq!(cols[at(Impairment::Delay(150))], "2.00");
        assert_eq!(
            md.lines().filter(|l| l.starts_with("| ")).count(),
            1 + GRID_ROWS.len()
        );
    }
}
