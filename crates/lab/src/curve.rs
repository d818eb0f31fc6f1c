//! The cost curve: what a commit interval buys and costs. For each guarantee that commits after
//! processing (at-least-once's offsets, exactly-once's transactions, the sinks' database
//! transactions), throughput and p50/p99 latency without faults at several commit intervals.
//! A short interval commits often (a synchronous round trip and an fsync each time); a long one
//! makes transactional records wait for their commit before a reader sees them. This is the
//! picture an engineer chooses an interval with.
//!
//! The runs are the lab's ordinary baseline runs with another `commit_interval_ms`; this module
//! holds which points to measure and how a run's row becomes a point.

use serde::{Deserialize, Serialize};

use crate::results::{RowResult, Status};
use crate::workload::Row;

/// The commit intervals of a thorough run, in milliseconds.
pub const INTERVALS_MS_THOROUGH: [u64; 5] = [10, 50, 100, 500, 1000];
/// The commit intervals of a quick run.
pub const INTERVALS_MS_QUICK: [u64; 3] = [10, 100, 1000];
/// The rows whose loops commit on an interval.
pub const ROWS: [Row; 4] = [
    Row::AtLeastOnce,
    Row::ExactlyOnce,
    Row::SinkSqlite,
    Row::SinkPostgres,
];

/// One point: a row at one commit interval.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub row: Row,
    pub commit_interval_ms: u64,
    pub per_second: Option<f64>,
    pub p50_us: Option<u64>,
    pub p99_us: Option<u64>,
    /// Why the point has no figures (a skipped or failed run), if it has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmeasured: Option<String>,
}

impl CurvePoint {
    /// The point a run's row makes.
    pub fn of(result: &RowResult, commit_interval_ms: u64) -> CurvePoint {
        let unmeasured = match &result.status {
            Status::Measured => None,
            Status::NotApplicable { reason }
            | Status::Skipped { reason }
            | Status::NeedsTransactions { reason } => Some(reason.clone()),
            Status::Failed { error } => Some(format!("failed: {error}")),
        };
        CurvePoint {
            row: result.row,
            commit_interval_ms,
            per_second: result.throughput.as_ref().map(|t| t.per_second),
            p50_us: result.latency.as_ref().map(|l| l.p50_us),
            p99_us: result.latency.as_ref().map(|l| l.p99_us),
            unmeasured,
        }
    }
}

/// The rows a `--quick` curve measures: the sink rows' fixed costs (a database per run, waits
/// of a whole interval for their marks) would take the quick lab past its minute.
pub const ROWS_QUICK: [Row; 2] = [Row::AtLeastOnce, Row::ExactlyOnce];

/// The intervals to measure.
pub fn intervals_ms(quick: bool) -> &'static [u64] {
    if quick {
        &INTERVALS_MS_QUICK
    } else {
        &INTERVALS_MS_THOROUGH
    }
}

/// The rows to measure.
pub fn rows(quick: bool) -> &'static [Row] {
    if quick {
        &ROWS_QUICK
    } else {
        &ROWS
    }
}

/// The points of `row`, in interval order.
pub fn of_row(points: &[CurvePoint], row: Row) -> Vec<&CurvePoint> {
    let mut of_row: Vec<&CurvePoint> = points.iter().filter(|p| p.row == row).collect();
    of_row.sort_by_key(|p| p.commit_interval_ms);
    of_row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Latency, Throughput};

    #[test]
    fn a_measured_row_is_a_point_and_a_skipped_one_says_why() {
        let mut row = RowResult::unmeasured(Row::ExactlyOnce, Status::Measured);
        row.throughput = Some(Throughput {
            records: 10,
            elapsed_us: 10,
            per_second: 1e6,
        });
        row.latency = Some(Latency {
            samples: 10,
            p50_us: 50,
            p99_us: 99,
            p999_us: 100,
            max_us: 100,
        });
        let point = CurvePoint::of(&row, 100);
        assert_eq!(
            (
                point.per_second,
                point.p50_us,
                point.p99_us,
                point.unmeasured
            ),
            (Some(1e6), Some(50), Some(99), None)
        );
        let skipped = RowResult::unmeasured(
            Row::SinkPostgres,
            Status::Skipped {
                reason: "no PostgreSQL".into(),
            },
        );
        let point = CurvePoint::of(&skipped, 10);
        assert_eq!(point.per_second, None);
        assert_eq!(point.unmeasured.as_deref(), Some("no PostgreSQL"));
    }

    #[test]
    fn points_of_a_row_come_in_interval_order() {
        let point = |row, ms| CurvePoint {
            row,
            commit_interval_ms: ms,
            per_second: None,
            p50_us: None,
            p99_us: None,
            unmeasured: None,
        };
        let points = [
            point(Row::ExactlyOnce, 1000),
            point(Row::AtLeastOnce, 10),
            point(Row::ExactlyOnce, 10),
        ];
        let intervals: Vec<u64> = of_row(&points, Row::ExactlyOnce)
            .iter()
            .map(|p| p.commit_interval_ms)
            .collect();
        assert_eq!(intervals, vec![10, 1000]);
    }
}
