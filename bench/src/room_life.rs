//! Room life: what people feel when someone reloads mid-play.
//!
//! The measurements are browser e2e tests (two Chromium profiles and a
//! native follower, real server, real WebRTC) that `cargo xtask bench` runs
//! a few times inside its private network namespace (the tests of
//! [`KNOWN`]). Each run that gets that far appends
//! one JSON line `{"figure": NAME, "ms": VALUE}` to the file passed here
//! with `--room-life-samples FILE`; this module turns the lines into
//! figures. A missing file, an unknown name or a malformed line is a note.

use std::path::Path;

use serde_json::{Value, json};

use crate::stats::{Figure, Stat, Target};

/// Report section (group) of these figures.
pub const GROUP: &str = "room_life";
/// Largest samples file accepted (bytes); a full run writes under 1 KB.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;
/// Most lines accepted (a full run writes a handful per figure).
pub const MAX_LINES: usize = 10_000;

/// A figure this module knows: its name in the file, the test that writes
/// it, what it means, and the goal the issue sets, if any.
pub struct Known {
    /// Name in the file and in `results.json`.
    pub name: &'static str,
    /// The e2e test target that measures it.
    pub test: &'static str,
    /// What is measured, for the report.
    pub what: &'static str,
    /// The goal (issue #20), if any.
    pub target: Option<(Stat, f64, &'static str)>,
}

/// Every room-life figure.
pub const KNOWN: &[Known] = &[
    Known {
        name: "host_reload_resume",
        test: "web_host_reload",
        what: "host page reloads mid-play → the room plays on its own video again (page load, \
           sign-in restore, reconnect, resume from the followers' state)",
        target: None,
    },
    Known {
        name: "follower_reload_in_sync",
        test: "web_follower_reload",
        what: "follower page reloads mid-play → its video is ready → it plays within 50 ms of \
           the room's timeline (the host-signed state, placed by the native follower's clock) \
           (issue #20: within 1 s)",
        target: Some((Stat::Max, 1000.0, "max ≤ 1 s")),
    },
    Known {
        name: "follower_reload_with_host_page",
        test: "web_follower_reload",
        what: "the same reload → the page is within 50 ms of the host's page (which on this \
           2-core machine itself lags the timeline while the other browser loads)",
        target: None,
    },
];

/// Adds the figures from the samples file `path`, or a note saying why not.
pub fn run(path: Option<&Path>, out: &mut Vec<Figure>, notes: &mut Vec<String>) {
    let Some(path) = path else {
        notes.push(
            "room life: not measured: no samples file (`cargo xtask bench` runs the \
             reload tests and passes --room-life-samples)"
                .into(),
        );
        return;
    };
    match read(path) {
        Ok(text) => {
            let (figs, extra) = figures(&text);
            out.extend(figs);
            notes.extend(extra);
        }
        Err(e) => notes.push(format!(
            "room life: not measured: samples file {}: {e}",
            path.display()
        )),
    }
}

fn read(path: &Path) -> Result<String, String> {
    let len = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
    if len > MAX_FILE_BYTES {
        return Err(format!(
            "{len} bytes, more than the limit of {MAX_FILE_BYTES}"
        ));
    }
    std::fs::read_to_string(path).map_err(|e| e.to_string())
}

/// One line: `{"figure": NAME, "ms": VALUE}` with a known name and a
/// finite, non-negative value.
fn parse_line(line: &str) -> Result<(&'static Known, f64), String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    let name = v["figure"].as_str().ok_or("no `figure` name")?;
    let known = KNOWN
        .iter()
        .find(|k| k.name == name)
        .ok_or_else(|| format!("unknown figure `{name}`"))?;
    let ms = v["ms"]
        .as_f64()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .ok_or_else(|| format!("`{name}`: bad value {}", v["ms"]))?;
    Ok((known, ms))
}

/// The figures (and notes) from the file's text.
fn figures(text: &str) -> (Vec<Figure>, Vec<String>) {
    let mut notes = Vec::new();
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); KNOWN.len()];
    for (i, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if i >= MAX_LINES {
            notes.push(format!(
                "room life: lines after the first {MAX_LINES} ignored"
            ));
            break;
        }
        match parse_line(line) {
            Ok((known, ms)) => {
                if let Some(k) = KNOWN.iter().position(|k| k.name == known.name) {
                    samples[k].push(ms);
                }
            }
            Err(e) => notes.push(format!("room life: line {} ignored: {e}", i + 1)),
        }
    }
    let mut figs = Vec::new();
    for (known, s) in KNOWN.iter().zip(&samples) {
        if s.is_empty() {
            notes.push(format!(
                "room life: `{}` not measured: no run of tests/tests/{}.rs recorded it",
                known.name, known.test
            ));
            continue;
        }
        let params = json!({
            "what": known.what,
            "test": format!("tests/tests/{}.rs", known.test),
            "peers": "browser host + browser follower (headless Chromium) + native follower",
        });
        let target = known
            .target
            .map(|(stat, bound, text)| Target::at_most(stat, bound, text));
        figs.extend(Figure::new(GROUP, known.name, "ms", s, params, target));
    }
    (figs, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_become_figures_and_bad_lines_notes() {
        let text = "{\"figure\":\"host_reload_resume\",\"ms\":600}\n\
                    {\"figure\":\"host_reload_resume\",\"ms\":800}\n\
                    {\"figure\":\"host_reload_resume\",\"ms\":700}\n\
                    {\"figure\":\"follower_reload_in_sync\",\"ms\":300}\n\
                    {\"figure\":\"follower_reload_in_sync\",\"ms\":1200}\n\
                    {\"figure\":\"follower_reload_with_host_page\",\"ms\":1500}\n\
                    {\"figure\":\"nonsense\",\"ms\":1}\n\
                    {\"figure\":\"host_reload_resume\",\"ms\":-1}\n\
                    not json\n";
        let (figs, notes) = figures(text);
        assert_eq!(figs.len(), 3);
        assert_eq!(figs[0].name, "host_reload_resume");
        assert_eq!(figs[0].runs, 3);
        assert!((figs[0].median - 700.0).abs() < 1e-9);
        assert_eq!(figs[0].met, None, "no goal");
        // The 1 s goal judges the worst run.
        assert_eq!(figs[1].name, "follower_reload_in_sync");
        assert_eq!(figs[1].met, Some(false));
        assert_eq!(figs[1].missed_by, Some(200.0));
        assert_eq!(figs[2].name, "follower_reload_with_host_page");
        assert_eq!(figs[2].met, None, "no goal");
        assert_eq!(notes.len(), 3, "{notes:?}");
        assert!(notes[0].contains("unknown figure"), "{notes:?}");
        assert!(notes[1].contains("bad value"), "{notes:?}");
        assert!(notes[2].contains("not JSON"), "{notes:?}");
    }

    #[test]
    fn a_figure_without_runs_is_a_note() {
        let (figs, notes) = figures("");
        assert!(figs.is_empty());
        assert_eq!(notes.len(), KNOWN.len());
    }

    #[test]
    fn lines_past_the_limit_are_ignored_with_a_note() {
        let line = "{\"figure\":\"host_reload_resume\",\"ms\":1}\n";
        let (figs, notes) = figures(&line.repeat(MAX_LINES + 5));
        assert_eq!(figs[0].runs, MAX_LINES);
        assert!(notes.iter().any(|n| n.contains("ignored")), "{notes:?}");
    }
}
