//! Acoustic sync: what people hear, next to what the players report.
//!
//! The measurement is the e2e target `tests/tests/acoustic.rs`: a private
//! PulseAudio daemon gives each player (two headless Chromium pages, two
//! mpv) its own sink, captured in one sample-aligned recording while a clip
//! with a marker track (a chirp and an identity tone every second) plays in
//! a room; each marker's chirp is cross-correlated between two players.
//! `cargo xtask bench` runs it in a private network namespace and passes
//! its JSON here with `--acoustic-samples FILE`. A missing or malformed
//! file is a note in the report.
//!
//! Figures per pair kind (browser↔browser, mpv↔mpv, browser↔mpv): the
//! heard offset |second − first| marker by marker, with issue #17's
//! targets; the reported-position spread of the same pairs over the same
//! window; and the heard drift (ms per minute) per pair. The same run
//! records which frame each page presents, and when
//! (`requestVideoFrameCallback`): the `visual` section.

use std::path::Path;

use serde_json::{Value, json};

use crate::browser::{run_file, samples};
use crate::stats::{Figure, Stat, Target};

/// Report section (group) of these figures.
pub const GROUP: &str = "acoustic";
/// Report section of the frame (visual) figures.
pub const VISUAL_GROUP: &str = "visual";
/// The file format version written by the measurement.
const FORMAT_VERSION: u64 = 1;
/// Pair kinds in the file: key, what it compares, issue #17's p99 goal (ms).
const KINDS: [(&str, &str, f64); 3] = [
    (
        "browser_browser",
        "the two Chromium pages (host and follower)",
        5.0,
    ),
    ("mpv_mpv", "the two mpv followers", 2.0),
    (
        "browser_mpv",
        "each page with each mpv (four pairs pooled)",
        10.0,
    ),
];
/// What the figures are compared with, printed above the section's table.
pub const ANCHORS: &str = "Heard = the players' real audio output, captured per player \
    through PulseAudio and compared marker by marker (a chirp a second); reported = the \
    positions the players report (`currentTime`, mpv's position) sampled over the same \
    window. Anchors: two sources in one room start to sound like an echo at about **20 ms**; \
    HbbTV's inter-device sync requires **−35 ms to +50 ms**; timingsrc's tolerance is \
    **25 ms**. Targets (issue #17): p99 ≤ 5 ms browser↔browser, ≤ 2 ms mpv↔mpv, ≤ 10 ms \
    browser↔mpv.";

/// Adds the figures from the samples file `path`, or a note saying why not.
pub fn run(path: Option<&Path>, out: &mut Vec<Figure>, notes: &mut Vec<String>) {
    run_file(
        GROUP,
        "tests/tests/acoustic.rs and passes --acoustic-samples",
        path,
        figures,
        (out, notes),
    );
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
    for (kind, what, goal) in KINDS {
        let k = &doc["pairs"][kind];
        let offsets: Vec<Value> = k["offsets"].as_array().cloned().unwrap_or_default();
        let abs: Vec<Value> = offsets
            .iter()
            .filter_map(|o| o["offset_ms"].as_f64())
            .map(|x| json!(x.abs()))
            .collect();
        let signed: Vec<f64> = offsets
            .iter()
            .filter_map(|o| o["offset_ms"].as_f64())
            .collect();
        let pairs = k["pairs"].as_array().cloned().unwrap_or_default();
        let params = json!({
            "what": what,
            "window_s": p["window_s"],
            "settle_s": p["settle_s"],
            "clip": p["clip"],
            "method": p["method"],
            "signed_median_ms": median(&signed),
            "drift_ms_per_min": pairs.iter().map(|x| x["drift_ms_per_min"].clone()).collect::<Vec<_>>(),
            "markers": pairs
                .iter()
                .map(|x| format!("{}↔{}: {}/{} found, {} paired", x["first"].as_str().unwrap_or("?"),
                    x["second"].as_str().unwrap_or("?"), x["markers_first"], x["markers_second"], x["paired"]))
                .collect::<Vec<_>>(),
        });
        let target = Target::at_most(Stat::P99, goal, &format!("p99 ≤ {goal} ms"));
        match samples(&Value::Array(abs), kind) {
            Ok(s) => figs.extend(Figure::new(
                GROUP,
                &format!("heard_{kind}"),
                "ms",
                &s,
                params,
                Some(target),
            )),
            Err(e) => notes.push(format!("acoustic: heard_{kind}: not measured: {e}")),
        }
        let reported = json!({
            "what": format!("{what}: reported positions, same window"),
            "sample_every_ms": p["reported_every_ms"],
        });
        match samples(&k["reported_spread_ms"], kind) {
            Ok(s) => figs.extend(Figure::new(
                GROUP,
                &format!("reported_{kind}"),
                "ms",
                &s,
                reported,
                None,
            )),
            Err(e) => notes.push(format!("acoustic: reported_{kind}: not measured: {e}")),
        }
        let drift: Vec<f64> = pairs
            .iter()
            .filter_map(|x| x["drift_ms_per_min"].as_f64())
            .map(f64::abs)
            .collect();
        figs.extend(Figure::new(
            GROUP,
            &format!("heard_{kind}_drift"),
            "ms/min",
            &drift,
            json!({"what": format!("{what}: |slope| of the heard offset over the window, one sample per pair")}),
            None,
        ));
    }
    let fr = &doc["frames"];
    let abs: Vec<Value> = fr["offsets_ms"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_f64)
                .map(|x| json!(x.abs()))
                .collect()
        })
        .unwrap_or_default();
    let signed: Vec<f64> = fr["offsets_ms"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_f64).collect())
        .unwrap_or_default();
    let params = json!({
        "what": "the follower page's display time of each frame minus the host page's, \
                 for every frame both showed (requestVideoFrameCallback)",
        "window_s": p["window_s"],
        "frames_presented": [fr["presented_first"], fr["presented_second"]],
        "signed_median_ms": median(&signed),
    });
    match samples(&Value::Array(abs), "frames") {
        Ok(s) => figs.extend(Figure::new(
            VISUAL_GROUP,
            "seen_browser_browser",
            "ms",
            &s,
            params,
            None,
        )),
        Err(e) => notes.push(format!("visual: seen_browser_browser: not measured: {e}")),
    }
    Ok((figs, notes))
}

/// Median of `v` (upper middle), `None` when empty.
fn median(v: &[f64]) -> Option<f64> {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    s.get(s.len() / 2).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(offsets: &[f64], reported: &[f64]) -> Value {
        json!({
            "offsets": offsets.iter().enumerate().map(|(i, o)| json!({
                "pair": "a-b", "at_s": i as f64, "offset_ms": o, "correlation": 0.99
            })).collect::<Vec<_>>(),
            "pairs": [{"first": "a", "second": "b", "markers_first": 3, "markers_second": 3,
                       "paired": offsets.len(), "drift_ms_per_min": -1.5, "median_signed_ms": 1.0}],
            "reported_spread_ms": reported,
        })
    }

    #[test]
    fn offsets_become_heard_and_reported_figures_with_the_targets() {
        let doc = json!({
            "version": 1,
            "params": {"window_s": 15.0, "settle_s": 3.0, "reported_every_ms": 250},
            "pairs": {
                "browser_browser": kind(&[-3.0, 4.0, 6.0], &[1.0, 2.0]),
                "mpv_mpv": kind(&[1.0, -1.0], &[0.5]),
                "browser_mpv": kind(&[], &[]),
            }
        });
        let (figs, _) = figures(&doc).unwrap();
        assert!(!figs.iter().any(|f| f.group == VISUAL_GROUP));
        let mut doc = doc;
        doc["frames"] = json!({"offsets_ms": [-2.0, 1.0, 16.7], "presented_first": 3});
        let (with_frames, _) = figures(&doc).unwrap();
        let seen = with_frames
            .iter()
            .find(|f| f.name == "seen_browser_browser")
            .unwrap();
        assert_eq!(seen.group, VISUAL_GROUP);
        assert!((seen.median - 2.0).abs() < 1e-9, "absolute offsets");
        doc.as_object_mut().unwrap().remove("frames");
        let (figs, notes) = figures(&doc).unwrap();
        let bb = figs
            .iter()
            .find(|f| f.name == "heard_browser_browser")
            .unwrap();
        assert_eq!(bb.runs, 3);
        assert!((bb.max - 6.0).abs() < 1e-9, "absolute offsets");
        assert_eq!(bb.met, Some(false), "p99 6 ms > 5 ms");
        assert_eq!(bb.params["signed_median_ms"], json!(4.0));
        let mm = figs.iter().find(|f| f.name == "heard_mpv_mpv").unwrap();
        assert_eq!(mm.met, Some(true));
        assert!(figs.iter().any(|f| f.name == "reported_browser_browser"));
        let drift = figs
            .iter()
            .find(|f| f.name == "heard_mpv_mpv_drift")
            .unwrap();
        assert!((drift.median - 1.5).abs() < 1e-9);
        // The empty kind is two notes, not a crash.
        assert!(!figs.iter().any(|f| f.name == "heard_browser_mpv"));
        // No frames either: a third note.
        assert_eq!(notes.len(), 3, "{notes:?}");
    }

    #[test]
    fn failed_or_foreign_files_are_errors() {
        let e = figures(&json!({"error": "`cargo test` failed"})).unwrap_err();
        assert!(e.contains("failed"), "{e}");
        assert!(figures(&json!({"version": 99})).is_err());
    }
}
