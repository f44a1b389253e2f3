//! Figures: a named sample set summarised as median / p99 / min / max, and the
//! target it is compared with.

use serde::Serialize;

/// How a figure is judged against its goal.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// The chosen statistic must be at most the bound.
    AtMost(f64),
    /// The chosen statistic must be at least the bound.
    AtLeast(f64),
}

/// Which statistic a target applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stat {
    /// The median.
    Median,
    /// The 99th percentile.
    P99,
    /// The maximum.
    Max,
}

/// A target from issue 9.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    /// The statistic compared.
    pub stat: Stat,
    /// The bound.
    pub goal: Goal,
    /// Human-readable form, e.g. `p99 ≤ 5 ms`.
    pub text: String,
}

impl Target {
    /// `stat ≤ bound`.
    pub fn at_most(stat: Stat, bound: f64, text: &str) -> Self {
        Self {
            stat,
            goal: Goal::AtMost(bound),
            text: text.to_owned(),
        }
    }

    /// `stat ≥ bound`.
    pub fn at_least(stat: Stat, bound: f64, text: &str) -> Self {
        Self {
            stat,
            goal: Goal::AtLeast(bound),
            text: text.to_owned(),
        }
    }
}

/// One measured figure (one record of `results.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Figure {
    /// Group (report section).
    pub group: String,
    /// Name, unique in a run.
    pub name: String,
    /// Unit of the statistics.
    pub unit: String,
    /// Median.
    pub median: f64,
    /// 99th percentile (nearest rank).
    pub p99: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub runs: usize,
    /// Parameters of the measurement.
    pub params: serde_json::Value,
    /// The goal, if the issue sets one.
    pub target: Option<Target>,
    /// Whether the goal is met (`None` without a target).
    pub met: Option<bool>,
    /// How far off the goal (in `unit`, positive = missed by), when missed.
    pub missed_by: Option<f64>,
}

/// Nearest-rank percentile of sorted samples (`q` in 0..=1).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Figure {
    /// Summarises `samples` (NaNs are dropped). Returns `None` when empty.
    pub fn new(
        group: &str,
        name: &str,
        unit: &str,
        samples: &[f64],
        params: serde_json::Value,
        target: Option<Target>,
    ) -> Option<Self> {
        let mut s: Vec<f64> = samples.iter().copied().filter(|x| x.is_finite()).collect();
        if s.is_empty() {
            return None;
        }
        s.sort_by(f64::total_cmp);
        let median = if s.len() % 2 == 1 {
            s[s.len() / 2]
        } else {
            (s[s.len() / 2 - 1] + s[s.len() / 2]) / 2.0
        };
        let mut f = Self {
            group: group.to_owned(),
            name: name.to_owned(),
            unit: unit.to_owned(),
            median,
            p99: percentile(&s, 0.99),
            min: s[0],
            max: s[s.len() - 1],
            runs: s.len(),
            params,
            target: None,
            met: None,
            missed_by: None,
        };
        if let Some(t) = target {
            let v = match t.stat {
                Stat::Median => f.median,
                Stat::P99 => f.p99,
                Stat::Max => f.max,
            };
            let (met, by) = match t.goal {
                Goal::AtMost(b) => (v <= b, v - b),
                Goal::AtLeast(b) => (v >= b, b - v),
            };
            f.met = Some(met);
            f.missed_by = (!met).then_some(by);
            f.target = Some(t);
        }
        Some(f)
    }

    /// A single-valued figure (a size, a ratio).
    pub fn single(
        group: &str,
        name: &str,
        unit: &str,
        value: f64,
        params: serde_json::Value,
        target: Option<Target>,
    ) -> Option<Self> {
        Self::new(group, name, unit, &[value], params, target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_and_target() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let f = Figure::new(
            "g",
            "n",
            "ms",
            &samples,
            serde_json::json!({}),
            Some(Target::at_most(Stat::P99, 50.0, "p99 ≤ 50 ms")),
        )
        .unwrap();
        assert_eq!(f.median, 50.5);
        assert_eq!(f.p99, 99.0);
        assert_eq!((f.min, f.max, f.runs), (1.0, 100.0, 100));
        assert_eq!(f.met, Some(false));
        assert_eq!(f.missed_by, Some(49.0));
        let g = Figure::new(
            "g",
            "n",
            "x",
            &[3.0],
            serde_json::json!({}),
            Some(Target::at_least(Stat::Median, 1.0, "≥ 1")),
        )
        .unwrap();
        assert_eq!((g.met, g.missed_by), (Some(true), None));
        assert!(Figure::new("g", "n", "x", &[f64::NAN], serde_json::json!({}), None).is_none());
    }
}
