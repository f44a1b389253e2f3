//! Reproducibility: this run's medians against the previous run's
//! `results.json` (`--previous FILE`; `cargo xtask bench` keeps the last
//! results as `target/bench/results-previous.json`).

use std::fmt::Write as _;
use std::path::Path;

use crate::stats::Figure;

/// A change of a median within this fraction counts as "within noise".
pub const NOISE_BAND: f64 = 0.25;

/// How many of the largest changes the report lists.
const LARGEST_SHOWN: usize = 12;

/// The medians of an earlier run.
#[derive(Debug, Default)]
pub struct Previous {
    /// Its commit.
    pub commit: String,
    /// Its date.
    pub date: String,
    /// Whether it was a quick run.
    pub quick: bool,
    /// (name, unit, median) of every figure.
    pub medians: Vec<(String, String, f64)>,
}

impl Previous {
    /// Reads an earlier `results.json`; `Err` explains what was wrong.
    ///
    /// # Errors
    /// Unreadable file or not a results document.
    pub fn read(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::parse(&text)
    }

    fn parse(text: &str) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        let figures = v
            .get("figures")
            .and_then(|f| f.as_array())
            .ok_or("no `figures` list")?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_owned();
        let medians = figures
            .iter()
            .filter_map(|f| {
                Some((
                    f.get("name")?.as_str()?.to_owned(),
                    f.get("unit")?.as_str()?.to_owned(),
                    f.get("median")?.as_f64()?,
                ))
            })
            .collect();
        Ok(Self {
            commit: s("commit"),
            date: s("date"),
            quick: v.get("quick").and_then(|q| q.as_bool()).unwrap_or(false),
            medians,
        })
    }
}

/// One figure in both runs: (name, unit, previous median, this median).
type Pair<'a> = (&'a str, &'a str, f64, f64);

fn pairs<'a>(prev: &'a Previous, now: &'a [Figure]) -> Vec<Pair<'a>> {
    now.iter()
        .filter_map(|f| {
            let (_, _, m) = prev
                .medians
                .iter()
                .find(|(n, u, _)| *n == f.name && *u == f.unit)?;
            Some((f.name.as_str(), f.unit.as_str(), *m, f.median))
        })
        .collect()
}

/// `this / previous`, or `None` when either is zero or not finite.
fn ratio(prev: f64, now: f64) -> Option<f64> {
    (prev.is_finite() && now.is_finite() && prev != 0.0 && now != 0.0).then(|| now / prev)
}

/// Appends the "Reproducibility" section to `md`.
pub fn section(md: &mut String, prev: &Previous, quick: bool, now: &[Figure]) {
    let _ = writeln!(
        md,
        "## Reproducibility: this run against the previous one\n"
    );
    if prev.quick != quick {
        let _ = writeln!(
            md,
            "The previous run ({}, `{}`) was a {} run; this one is {}: not compared.\n",
            prev.date,
            prev.commit,
            if prev.quick { "quick" } else { "full" },
            if quick { "quick" } else { "full" }
        );
        return;
    }
    let both = pairs(prev, now);
    let mut rated: Vec<(Pair<'_>, f64)> = both
        .iter()
        .filter_map(|p| ratio(p.2, p.3).map(|r| (*p, r)))
        .collect();
    let within = rated
        .iter()
        .filter(|(_, r)| (r - 1.0).abs() <= NOISE_BAND)
        .count();
    let _ = writeln!(
        md,
        "Previous run: {} at `{}`. Of the {} figures in both runs, {} have a non-zero median in \
         both, and **{within} of those are within ±{:.0} %** of the previous median \
         (the machine is shared and noisy; see the load averages). The largest changes \
         (this / previous):\n",
        prev.date,
        prev.commit,
        both.len(),
        rated.len(),
        NOISE_BAND * 100.0
    );
    rated.sort_by(|a, b| (b.1.ln().abs()).total_cmp(&a.1.ln().abs()));
    let _ = writeln!(
        md,
        "| Figure | Unit | Previous median | This median | This / previous |\n|---|---|---|---|---|"
    );
    for ((name, unit, p, n), r) in rated.iter().take(LARGEST_SHOWN) {
        let _ = writeln!(md, "| {name} | {unit} | {p:.4} | {n:.4} | {r:.2} × |");
    }
    let _ = writeln!(md);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fig(name: &str, median: f64) -> Figure {
        Figure::single("g", name, "ms", median, serde_json::json!({}), None).unwrap()
    }

    #[test]
    fn compares_same_named_figures_and_counts_those_within_noise() {
        let prev = Previous::parse(
            r#"{"commit":"abc","date":"d","quick":false,"figures":[
                {"name":"a","unit":"ms","median":10.0},
                {"name":"b","unit":"ms","median":10.0},
                {"name":"c","unit":"ms","median":0.0},
                {"name":"gone","unit":"ms","median":1.0}]}"#,
        )
        .unwrap();
        let now = [
            fig("a", 11.0),
            fig("b", 30.0),
            fig("c", 5.0),
            fig("new", 1.0),
        ];
        let mut md = String::new();
        section(&mut md, &prev, false, &now);
        assert!(
            md.contains("Of the 3 figures in both runs, 2 have a non-zero median"),
            "{md}"
        );
        assert!(md.contains("**1 of those are within ±25 %**"), "{md}");
        // Largest change first.
        let b = md.find("| b |").unwrap();
        let a = md.find("| a |").unwrap();
        assert!(b < a, "{md}");
        assert!(md.contains("3.00 ×"), "{md}");
    }

    #[test]
    fn a_quick_run_is_not_compared_with_a_full_one() {
        let prev = Previous::parse(r#"{"quick":true,"figures":[]}"#).unwrap();
        let mut md = String::new();
        section(&mut md, &prev, false, &[fig("a", 1.0)]);
        assert!(md.contains("not compared"), "{md}");
    }

    #[test]
    fn malformed_previous_results_are_an_error() {
        assert!(Previous::parse("not json").is_err());
        assert!(Previous::parse(r#"{"figures":3}"#).is_err());
    }
}
