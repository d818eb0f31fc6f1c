//! Repeated baseline trials and their spread. One burst of records on a shared machine is one
//! sample: noise decides it. The baseline (no faults) therefore runs each row several times
//! (thorough: [`TRIALS_THOROUGH`]); the table shows each figure's median with its spread, and
//! marks a figure whose spread is wide, so a reader can tell a property of a guarantee from the
//! machine's mood.
//!
//! Pure: trials in, one row out.

use serde::{Deserialize, Serialize};

use crate::results::{RowResult, Verdict};

/// Baseline trials per row in a thorough run.
pub const TRIALS_THOROUGH: u32 = 3;
/// Baseline trials per row in a quick run.
pub const TRIALS_QUICK: u32 = 1;
/// A spread above this (± percent of the median) marks a figure as unstable.
pub const SPREAD_WIDE_PCT: f64 = 15.0;

/// One trial's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialFigures {
    pub per_second: Option<f64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
}

/// A figure over trials: median, range, and half the range as a share of the median.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Figure {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// ± percent: (max − min) / 2 / median × 100.
    pub spread_pct: f64,
}

impl Figure {
    /// `None` when no trial had the figure.
    pub fn of(samples: impl IntoIterator<Item = f64>) -> Option<Figure> {
        let mut samples: Vec<f64> = samples.into_iter().collect();
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        let median = samples[samples.len() / 2];
        let (min, max) = (samples[0], samples[samples.len() - 1]);
        let spread_pct = if median > 0.0 {
            (max - min) / 2.0 / median * 100.0
        } else {
            0.0
        };
        Some(Figure {
            median,
            min,
            max,
            spread_pct,
        })
    }

    /// Whether the spread is too wide for the median to be trusted.
    pub fn is_wide(&self) -> bool {
        self.spread_pct > SPREAD_WIDE_PCT
    }
}

/// The spread of a row's baseline figures over its trials.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Spread {
    pub trials: Vec<TrialFigures>,
    pub per_second: Option<Figure>,
    pub p50_us: Option<Figure>,
    pub p99_us: Option<Figure>,
}

impl Spread {
    pub fn of(trials: Vec<TrialFigures>) -> Spread {
        Spread {
            per_second: Figure::of(trials.iter().filter_map(|t| t.per_second)),
            p50_us: Figure::of(trials.iter().filter_map(|t| t.p50_us.map(|us| us as f64))),
            p99_us: Figure::of(trials.iter().filter_map(|t| t.p99_us.map(|us| us as f64))),
            trials,
        }
    }

    /// Whether any figure's spread is wide.
    pub fn is_wide(&self) -> bool {
        [&self.per_second, &self.p50_us, &self.p99_us]
            .into_iter()
            .flatten()
            .any(Figure::is_wide)
    }
}

fn figures(row: &RowResult) -> TrialFigures {
    TrialFigures {
        per_second: row.throughput.as_ref().map(|t| t.per_second),
        p50_us: row.latency.as_ref().map(|l| l.p50_us),
        p99_us: row.latency.as_ref().map(|l| l.p99_us),
    }
}

/// One row out of its trials (each a result of the same row): the trial with the median
/// throughput stands for the row (its counts, latency, history), the spread of every trial's
/// figures goes beside it, and a promise broken in any trial breaks the row's verdict.
pub fn combine(trials: Vec<RowResult>) -> RowResult {
    assert!(!trials.is_empty(), "a row has at least one trial");
    if trials.len() == 1 {
        return trials.into_iter().next().expect("one trial");
    }
    let spread = Spread::of(trials.iter().map(figures).collect());
    let mut order: Vec<usize> = (0..trials.len()).collect();
    order.sort_by(|&a, &b| {
        let rate = |i: usize| spread.trials[i].per_second.unwrap_or(-1.0);
        rate(a).total_cmp(&rate(b))
    });
    let median = order[order.len() / 2];
    let mut broken = Vec::new();
    for (i, trial) in trials.iter().enumerate() {
        if let Verdict::Violated { reasons } = &trial.verdict {
            broken.extend(reasons.iter().map(|r| format!("trial {}: {r}", i + 1)));
        }
    }
    let mut row = trials
        .into_iter()
        .nth(median)
        .expect("the median trial exists");
    if !broken.is_empty() {
        row.verdict = Verdict::Violated { reasons: broken };
    }
    row.spread = Some(spread);
    row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Latency, Throughput};
    use crate::results::Status;
    use crate::workload::Row;

    fn trial(per_second: f64, p99_ms: u64, violated: Option<&str>) -> RowResult {
        let mut row = RowResult::unmeasured(Row::AtLeastOnce, Status::Measured);
        row.throughput = Some(Throughput {
            records: 1000,
            elapsed_us: 1,
            per_second,
        });
        row.latency = Some(Latency {
            samples: 100,
            p50_us: p99_ms * 500,
            p99_us: p99_ms * 1000,
            p999_us: p99_ms * 1000,
            max_us: p99_ms * 1000,
        });
        row.verdict = match violated {
            Some(reason) => Verdict::Violated {
                reasons: vec![reason.into()],
            },
            None => Verdict::Baseline,
        };
        row
    }

    /// Rates in, (median, spread %, wide) out.
    fn check(rates: &[f64], expect: (f64, f64, bool)) {
        let figure = Figure::of(rates.iter().copied()).unwrap();
        let got = (
            figure.median,
            (figure.spread_pct * 10.0).round() / 10.0,
            figure.is_wide(),
        );
        assert_eq!(got, expect, "{rates:?}");
    }

    #[test]
    fn figures() {
        check(&[100.0], (100.0, 0.0, false));
        check(&[90.0, 100.0, 110.0], (100.0, 10.0, false));
        check(&[110.0, 90.0, 100.0], (100.0, 10.0, false));
        check(&[50.0, 100.0, 110.0], (100.0, 30.0, true));
        check(&[0.0, 0.0, 0.0], (0.0, 0.0, false));
        assert_eq!(Figure::of([]), None);
    }

    #[test]
    fn the_median_trial_stands_for_the_row() {
        let row = combine(vec![
            trial(300.0, 30, None),
            trial(100.0, 10, None),
            trial(200.0, 20, None),
        ]);
        assert_eq!(row.throughput.unwrap().per_second, 200.0);
        assert_eq!(row.latency.unwrap().p99_us, 20_000);
        assert_eq!(row.verdict, Verdict::Baseline);
        let spread = row.spread.unwrap();
        assert_eq!(spread.trials.len(), 3);
        assert_eq!(spread.per_second.unwrap().spread_pct, 50.0);
        assert_eq!(spread.p99_us.unwrap().median, 20_000.0);
    }

    #[test]
    fn a_promise_broken_in_any_trial_breaks_the_row() {
        let row = combine(vec![
            trial(100.0, 10, None),
            trial(200.0, 20, Some("3 records lost")),
            trial(300.0, 30, None),
        ]);
        assert_eq!(
            row.verdict,
            Verdict::Violated {
                reasons: vec!["trial 2: 3 records lost".into()]
            }
        );
    }

    #[test]
    fn one_trial_is_the_row_itself() {
        let row = combine(vec![trial(100.0, 10, None)]);
        assert_eq!(row.spread, None);
    }
}
