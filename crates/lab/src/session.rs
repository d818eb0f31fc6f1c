//! One `ferry lab` invocation's runs, in order: every fault profile with every row (the
//! baseline's rows several times, for their spread), then the cost curve. Each run gets its own
//! topic, group and seed, derived from the lab's seed so one seed repeats the whole session.

use indicatif::ProgressBar;

use crate::curve::CurvePoint;
use crate::profile::{Params, Profile};
use crate::results::{ProfileResult, RowResult};
use crate::runner::RunSpec;
use crate::sink_run::SinkEnv;
use crate::target::Target;
use crate::workload::Row;
use crate::LabArgs;

/// The rows that run (the idempotent consumer's row is read from at-least-once's run).
pub const RUN_ROWS: [Row; 5] = [
    Row::AtMostOnce,
    Row::AtLeastOnce,
    Row::ExactlyOnce,
    Row::SinkSqlite,
    Row::SinkPostgres,
];

pub(crate) struct Session<'a> {
    pub target: &'a Target,
    pub sinks: &'a SinkEnv,
    pub args: &'a LabArgs,
    pub seed: u64,
    pub bar: &'a ProgressBar,
}

/// Which run of a (profile, row) pair this is: the first trial, a further trial, or a point of
/// the cost curve.
#[derive(Clone, Copy, Debug)]
enum Tag {
    Trial(u32),
    Curve { commit_interval_ms: u64 },
}

impl Tag {
    /// The suffix of topic, group and history names; the first trial has none.
    fn suffix(self) -> Option<String> {
        match self {
            Tag::Trial(1) => None,
            Tag::Trial(n) => Some(format!("trial{n}")),
            Tag::Curve { commit_interval_ms } => Some(format!("commit{commit_interval_ms}ms")),
        }
    }

    fn number(self) -> u64 {
        match self {
            Tag::Trial(n) => u64::from(n),
            Tag::Curve { commit_interval_ms } => 1_000 + commit_interval_ms,
        }
    }
}

impl Session<'_> {
    /// Runs that `profiles` and the trials of the baseline make, for the progress bar.
    pub fn runs(profiles: &[Profile], trials: u32, curve_points: usize) -> u64 {
        let per_profile = |p: &Profile| if *p == Profile::None { trials } else { 1 };
        let runs: u32 = profiles.iter().map(per_profile).sum();
        (runs as usize * RUN_ROWS.len() + curve_points) as u64
    }

    /// Every profile with every row; the baseline's rows `trials` times each, combined into one
    /// row with its spread. The baseline's first trial runs in its place; the others run after
    /// the last profile, one round of every row each, so the spread covers how the machine
    /// drifts over the session and not only over the seconds of back-to-back runs.
    pub fn profiles(
        &self,
        profiles: &[Profile],
        params: &Params,
        trials: u32,
    ) -> Vec<ProfileResult> {
        let once = |profile: Profile, params: &Params, tag: Tag| -> Vec<Vec<RowResult>> {
            RUN_ROWS
                .iter()
                .map(|&run_row| self.measure(profile, run_row, params, tag))
                .collect()
        };
        let baseline = params.baseline();
        // Per profile, per run row, per trial: the rows a run yields.
        let mut runs: Vec<(Profile, Vec<Vec<Vec<RowResult>>>)> = profiles
            .iter()
            .map(|&profile| {
                let params = if profile == Profile::None {
                    &baseline
                } else {
                    params
                };
                let first = once(profile, params, Tag::Trial(1));
                (profile, first.into_iter().map(|rows| vec![rows]).collect())
            })
            .collect();
        if let Some((_, rows)) = runs.iter_mut().find(|(p, _)| *p == Profile::None) {
            for trial in 2..=trials {
                for (run_row, more) in once(Profile::None, &baseline, Tag::Trial(trial))
                    .into_iter()
                    .enumerate()
                {
                    rows[run_row].push(more);
                }
            }
        }
        runs.into_iter()
            .map(|(profile, per_row)| ProfileResult {
                profile,
                title: profile.title().into(),
                description: profile.description(params),
                rows: per_row.into_iter().flat_map(combine_trials).collect(),
            })
            .collect()
    }

    /// The cost curve: each interval-committing row, no faults, at each commit interval. The
    /// point at the lab's own interval is the baseline's row (`baseline`, when the baseline
    /// ran), not a run of its own.
    pub fn cost_curve(
        &self,
        params: &Params,
        intervals_ms: &[u64],
        rows: &[Row],
        baseline: Option<&ProfileResult>,
    ) -> Vec<CurvePoint> {
        let mut points = Vec::new();
        for &commit_interval_ms in intervals_ms {
            let own_interval = commit_interval_ms == params.commit_interval_ms;
            let params = Params {
                commit_interval_ms,
                ..params.baseline()
            };
            for &run_row in rows {
                let measured = baseline
                    .filter(|_| own_interval)
                    .and_then(|b| b.rows.iter().find(|r| r.row == run_row));
                if let Some(row) = measured {
                    points.push(CurvePoint::of(row, commit_interval_ms));
                    continue;
                }
                let tag = Tag::Curve { commit_interval_ms };
                let rows = self.measure(Profile::None, run_row, &params, tag);
                let row = rows
                    .iter()
                    .find(|r| r.row == run_row)
                    .expect("a run yields its row");
                points.push(CurvePoint::of(row, commit_interval_ms));
            }
        }
        points
    }

    fn measure(&self, profile: Profile, run_row: Row, params: &Params, tag: Tag) -> Vec<RowResult> {
        let suffix = tag.suffix();
        let mut label = format!("{} · {}", profile.title(), run_row.label());
        let mut name = format!(
            "ferry-lab-{}-{}-{}",
            self.seed,
            profile.name(),
            run_row.name()
        );
        if let Some(suffix) = &suffix {
            label = format!("{label} ({suffix})");
            name = format!("{name}-{suffix}");
        }
        self.bar.set_message(label.clone());
        let spec = RunSpec {
            row: run_row,
            profile,
            params: params.clone(),
            seed: run_seed(self.seed, profile, run_row, tag.number()),
            topic: name.clone(),
            group: name,
        };
        let progress = |phase: &str, sent: u64| {
            self.bar
                .set_message(format!("{label}: {phase} {sent}/{}", params.records()));
        };
        let rows = crate::run_rows_of(
            self.target,
            &spec,
            self.args,
            self.sinks,
            &progress,
            suffix.as_deref(),
        );
        self.bar.inc(1);
        rows
    }
}

/// The seed of one run: the lab's seed mixed with which run it is.
fn run_seed(seed: u64, profile: Profile, row: Row, tag: u64) -> u64 {
    let p = Profile::ALL.iter().position(|&x| x == profile).unwrap_or(0) as u64;
    let r = RUN_ROWS.iter().position(|&x| x == row).unwrap_or(0) as u64;
    let run = (p * RUN_ROWS.len() as u64 + r + 1) + tag * 1_000;
    seed.wrapping_add(run.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The rows of each trial (a run yields one or two rows) combined row by row.
fn combine_trials(per_trial: Vec<Vec<RowResult>>) -> Vec<RowResult> {
    let rows = per_trial.first().map_or(0, Vec::len);
    let mut by_row: Vec<Vec<RowResult>> = (0..rows).map(|_| Vec::new()).collect();
    for trial in per_trial {
        assert_eq!(trial.len(), rows, "every trial yields the same rows");
        for (i, row) in trial.into_iter().enumerate() {
            by_row[i].push(row);
        }
    }
    by_row.into_iter().map(crate::trials::combine).collect()
}
