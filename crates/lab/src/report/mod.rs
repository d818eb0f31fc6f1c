//! The lab's reports, drawn from [`crate::results::LabResults`] alone: the terminal table and
//! the self-contained HTML page.

pub mod curve;
pub mod files;
pub mod html;
pub mod recommendation;
pub mod table;

#[cfg(test)]
pub(crate) mod tests {
    use crate::check::{Counts, Faults, Latency, Throughput};
    use crate::profile::{Params, Profile};
    use crate::results::{
        summarize, verdict, LabResults, ProfileResult, RowResult, Status, TargetInfo,
    };
    use crate::workload::Row;

    fn measured(
        row: Row,
        lost: u64,
        duplicated: u64,
        skipped: u64,
        faults: &[(&str, u64)],
    ) -> RowResult {
        let counts = Counts {
            sent: 3600,
            expected: 3600,
            processed: 3600 - lost,
            lost,
            duplicated,
            dedup_skipped: skipped,
            ..Counts::default()
        };
        let faults = Faults {
            injected: faults.iter().map(|(_, n)| n).sum(),
            by_kind: faults.iter().map(|(k, n)| (k.to_string(), *n)).collect(),
        };
        let mut result = RowResult::unmeasured(row, Status::Measured);
        result.verdict = verdict(row, Profile::LostAcks, &counts, &faults);
        result.counts = Some(counts);
        result.faults = Some(faults);
        result.latency = Some(match row {
            Row::AtMostOnce => Latency {
                samples: 600,
                p50_us: 2_100,
                p99_us: 8_000,
                p999_us: 12_300,
                max_us: 13_000,
            },
            _ => Latency {
                samples: 600,
                p50_us: 3_400,
                p99_us: 15_000,
                p999_us: 1_234_000,
                max_us: 1_300_000,
            },
        });
        result.throughput = Some(Throughput {
            records: 3000,
            elapsed_us: 1_000_000,
            per_second: if row == Row::AtMostOnce {
                45_123.0
            } else {
                30_200.0
            },
        });
        result
    }

    /// A hand-made result with one profile, for report tests.
    pub(crate) fn sample_results() -> LabResults {
        let profile = Profile::LostAcks;
        let params = Params::quick();
        let rows = vec![
            measured(
                Row::AtMostOnce,
                12,
                0,
                0,
                &[("drop_frame offset_commit response", 4)],
            ),
            measured(
                Row::AtLeastOnce,
                0,
                37,
                37,
                &[("drop_frame produce response", 41)],
            ),
            measured(
                Row::AtLeastOnceIdempotent,
                0,
                0,
                37,
                &[("drop_frame produce response", 41)],
            ),
            RowResult::unmeasured(
                Row::ExactlyOnce,
                Status::NeedsTransactions {
                    reason: "needs transactions (not yet in this broker)".into(),
                },
            ),
        ];
        let profiles = vec![ProfileResult {
            profile,
            title: profile.title().into(),
            description: profile.description(&params),
            rows,
        }];
        LabResults {
            schema: crate::results::SCHEMA_VERSION,
            ferry_version: "0.1.0".into(),
            build: "release".into(),
            seed: 7,
            mode: "quick".into(),
            target: TargetInfo {
                kind: "embedded".into(),
                broker: "127.0.0.1:1".into(),
                proxy: "127.0.0.1:2".into(),
                advertised: vec!["127.0.0.1:2".into()],
                proxy_in_path: true,
                transactions: false,
                apis: Vec::new(),
            },
            params,
            started_unix_ms: 0,
            elapsed_ms: 1234,
            summary: summarize(&profiles),
            profiles,
            cost_curve: sample_curve(),
            recommendation: None,
            poison: None,
        }
    }

    /// Two rows at three intervals: throughput rising with the interval, latency with it too.
    fn sample_curve() -> Vec<crate::curve::CurvePoint> {
        let mut points = Vec::new();
        for (row, rate) in [(Row::AtLeastOnce, 200_000.0), (Row::ExactlyOnce, 150_000.0)] {
            for (i, ms) in [10u64, 100, 1000].into_iter().enumerate() {
                points.push(crate::curve::CurvePoint {
                    row,
                    commit_interval_ms: ms,
                    per_second: Some(rate * (1.0 + i as f64 * 0.2)),
                    p50_us: Some(ms * 500),
                    p99_us: Some(ms * 1000 + 5_000),
                    unmeasured: None,
                });
            }
        }
        points
    }
}
