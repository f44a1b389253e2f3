//! Browser sync: the spread between two headless Chromium `video` elements.
//!
//! The measurement itself is the e2e target `tests/tests/browser_spread.rs`
//! (real server, real WebRTC, the web app and its wasm bundle), which
//! `cargo xtask bench` runs in a private network namespace before this
//! binary; it writes its raw samples as JSON, passed here with
//! `--browser-samples FILE`. This module turns them into figures of the
//! `browser` section. A missing or malformed file is a note in the report.

use std::path::Path;

use serde_json::{Value, json};

use crate::stats::{Figure, Stat, Target};

/// Report section (group) of these figures.
pub const GROUP: &str = "browser";
/// Largest samples file accepted (bytes); a full run writes about 100 KB.
pub const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;
/// Most samples accepted per phase (a full run has a few hundred).
pub const MAX_SAMPLES: usize = 100_000;
/// The file format version written by the measurement.
const FORMAT_VERSION: u64 = 1;
/// Phases in the file, and the figure each becomes.
const PHASES: [(&str, &str, &str); 3] = [
    ("after_play", "browser_spread_after_play", "after play"),
    (
        "after_seek",
        "browser_spread_after_seek",
        "after seek while playing",
    ),
    ("steady", "browser_spread_steady", "steady state"),
];
/// Issue 9's goal for browsers.
const TARGET_P99_MS: f64 = 50.0;

/// Adds the figures from the samples file `path`, or a note saying why not.
pub fn run(path: Option<&Path>, out: &mut Vec<Figure>, notes: &mut Vec<String>) {
    run_file(
        GROUP,
        "tests/tests/browser_spread.rs and passes --browser-samples",
        path,
        figures,
        (out, notes),
    );
}

/// Turns a parsed samples file into figures and notes, or says why not.
pub(crate) type FromFile = fn(&Value) -> Result<(Vec<Figure>, Vec<String>), String>;

/// The figures of a section measured by an e2e test into a JSON file:
/// `figures` of the file at `path`, or a note naming `section` and saying
/// why not (`producer`: what `cargo xtask bench` runs to write it).
pub(crate) fn run_file(
    section: &str,
    producer: &str,
    path: Option<&Path>,
    figures: FromFile,
    (out, notes): (&mut Vec<Figure>, &mut Vec<String>),
) {
    let Some(path) = path else {
        notes.push(format!(
            "{section}: not measured: no samples file (`cargo xtask bench` runs {producer})"
        ));
        return;
    };
    match read(path).and_then(|doc| figures(&doc)) {
        Ok((figs, extra)) => {
            out.extend(figs);
            notes.extend(extra);
        }
        Err(e) => notes.push(format!(
            "{section}: not measured: samples file {}: {e}",
            path.display()
        )),
    }
}

/// A JSON samples file of at most [`MAX_FILE_BYTES`].
fn read(path: &Path) -> Result<Value, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "{len} bytes, more than the limit of {MAX_FILE_BYTES}"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    serde_json::from_str(&text).map_err(|e| format!("not JSON: {e}"))
}

/// Samples of one phase: finite, non-negative, at most [`MAX_SAMPLES`].
pub(crate) fn samples(v: &Value, phase: &str) -> Result<Vec<f64>, String> {
    let list = v
        .as_array()
        .ok_or_else(|| format!("phase `{phase}` is not a list"))?;
    if list.is_empty() {
        return Err(format!("phase `{phase}` has no samples"));
    }
    if list.len() > MAX_SAMPLES {
        return Err(format!(
            "phase `{phase}` has {} samples, more than {MAX_SAMPLES}",
            list.len()
        ));
    }
    list.iter()
        .map(|x| {
            x.as_f64()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| format!("phase `{phase}`: bad sample {x}"))
        })
        .collect()
}

/// The figures (and notes) from a parsed file.
fn figures(doc: &Value) -> Result<(Vec<Figure>, Vec<String>), String> {
    // Written by `cargo xtask bench` when the measurement failed.
    if let Some(e) = doc["error"].as_str() {
        return Err(format!("the measurement failed: {e}"));
    }
    if doc["version"].as_u64() != Some(FORMAT_VERSION) {
        return Err(format!(
            "format version {} (expected {FORMAT_VERSION})",
            doc["version"]
        ));
    }
    let p = &doc["params"];
    let mut figs = Vec::new();
    let mut notes = Vec::new();
    for (key, name, phase) in PHASES {
        let s = samples(&doc["phases"][key], key)?;
        let info = &doc["phase_info"][key];
        let params = json!({
            "phase": phase,
            "pages": "host + 1 follower, headless Chromium",
            "chromium": p["chromium"],
            "clip": p["clip"],
            "window_s": p["windows_s"][key],
            "settle_ms": p["settle_ms"],
            "sample_every_ms": p["sample_every_ms"],
            "samples_not_playing": info["samples_not_playing"],
            "samples_seeking": info["samples_seeking"],
            "sampling_skew_ms_median": info["sampling_skew_ms_median"],
        });
        figs.extend(Figure::new(
            GROUP,
            name,
            "ms",
            &s,
            params,
            Some(Target::at_most(Stat::P99, TARGET_P99_MS, "p99 ≤ 50 ms")),
        ));
    }
    let c = &doc["correction"];
    let cp = json!({"window_s": c["window_s"], "samples": "the one follower"});
    let per_min = |k: &str| -> Option<f64> {
        let w = c["window_s"].as_f64().filter(|w| *w > 0.0)?;
        Some(c[k].as_f64()? / (w / 60.0))
    };
    let correction = [
        ("browser_seeks_per_min", "1/min", per_min("seeks")),
        (
            "browser_rate_changes_per_min",
            "1/min",
            per_min("rate_changes"),
        ),
        ("browser_time_off_1x", "%", c["time_off_1x_pct"].as_f64()),
        (
            "browser_max_rate_deviation",
            "ppm",
            c["max_rate_deviation_ppm"].as_f64(),
        ),
    ];
    for (name, unit, v) in correction {
        match v.filter(|v| v.is_finite() && *v >= 0.0) {
            Some(v) => figs.extend(Figure::single(GROUP, name, unit, v, cp.clone(), None)),
            None => notes.push(format!("browser: {name}: not in the samples file")),
        }
    }
    Ok((figs, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "version": 1,
            "params": {"chromium": "156.0", "clip": "c", "settle_ms": 2000, "sample_every_ms": 50,
                       "windows_s": {"after_play": 5.0, "after_seek": 5.0, "steady": 8.0}},
            "phases": {"after_play": [1.0, 2.0, 60.0], "after_seek": [3.0], "steady": [4.0, 5.0]},
            "phase_info": {},
            "correction": {"window_s": 30.0, "seeks": 1.0, "rate_changes": 3.0,
                           "time_off_1x_pct": 10.0, "max_rate_deviation_ppm": 2000.0},
        })
    }

    #[test]
    fn samples_become_figures_with_the_browser_target() {
        let (figs, notes) = figures(&doc()).unwrap();
        assert!(notes.is_empty(), "{notes:?}");
        let play = figs
            .iter()
            .find(|f| f.name == "browser_spread_after_play")
            .unwrap();
        assert_eq!((play.group.as_str(), play.runs, play.p99), (GROUP, 3, 60.0));
        assert_eq!((play.met, play.missed_by), (Some(false), Some(10.0)));
        let steady = figs
            .iter()
            .find(|f| f.name == "browser_spread_steady")
            .unwrap();
        assert_eq!(steady.met, Some(true));
        let seeks = figs
            .iter()
            .find(|f| f.name == "browser_seeks_per_min")
            .unwrap();
        assert_eq!(seeks.median, 2.0);
        assert_eq!(figs.len(), 7);
    }

    #[test]
    fn malformed_files_are_notes_not_crashes() {
        let mut d = doc();
        d["phases"]["steady"] = json!([1.0, "x"]);
        assert!(figures(&d).is_err());
        let mut d = doc();
        d["phases"]["after_seek"] = json!([]);
        assert!(figures(&d).is_err());
        let mut d = doc();
        d["phases"]["after_seek"] = json!(vec![1.0; MAX_SAMPLES + 1]);
        assert!(figures(&d).unwrap_err().contains("more than"));
        let mut d = doc();
        d["version"] = json!(2);
        assert!(figures(&d).is_err());
        let e = figures(&json!({"error": "`cargo test` failed"})).unwrap_err();
        assert!(e.contains("measurement failed: `cargo test` failed"), "{e}");
        let mut d = doc();
        d["correction"] = Value::Null;
        let (figs, notes) = figures(&d).unwrap();
        assert_eq!((figs.len(), notes.len()), (3, 4));

        let dir = tempfile::tempdir().unwrap();
        let (mut out, mut notes) = (Vec::new(), Vec::new());
        run(Some(&dir.path().join("missing.json")), &mut out, &mut notes);
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap();
        run(Some(&bad), &mut out, &mut notes);
        run(None, &mut out, &mut notes);
        let big = dir.path().join("big.json");
        std::fs::File::create(&big)
            .unwrap()
            .set_len(MAX_FILE_BYTES + 1)
            .unwrap();
        run(Some(&big), &mut out, &mut notes);
        assert!(out.is_empty());
        assert_eq!(notes.len(), 4);
        assert!(notes[3].contains("more than the limit"), "{notes:?}");
        assert!(notes.iter().all(|n| n.starts_with("browser: not measured")));
    }
}
