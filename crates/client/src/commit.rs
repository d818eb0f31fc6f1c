//! When a loop commits: on a time interval with a record cap, as Kafka Streams' exactly-once
//! `commit.interval.ms` (100 ms by default). A commit is the expensive, synchronous step of every
//! guarantee that commits after processing (a round trip and an fsync on the broker, or a
//! database commit), so how often it happens decides throughput; how long records wait for it
//! decides, for transactions, the latency readers see. [`CommitPolicy`] is that choice, as data.
//!
//! Time is passed in: the policy is a pure function of when the open window began, how many
//! records it holds and now.

use std::time::{Duration, Instant};

/// Kafka Streams' `commit.interval.ms` under exactly-once.
pub const COMMIT_INTERVAL_DEFAULT: Duration = Duration::from_millis(100);
/// The most records one window holds by default: what a commit may redo after a failure.
pub const COMMIT_RECORDS_MAX_DEFAULT: usize = 50_000;

/// Commit once `interval` has passed since the window's first record, or once it holds
/// `records_max` records, whichever comes first. An interval of zero commits every batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitPolicy {
    pub interval: Duration,
    pub records_max: usize,
}

impl Default for CommitPolicy {
    fn default() -> Self {
        CommitPolicy {
            interval: COMMIT_INTERVAL_DEFAULT,
            records_max: COMMIT_RECORDS_MAX_DEFAULT,
        }
    }
}

impl CommitPolicy {
    /// A policy committing every `interval` with the default record cap.
    pub fn every(interval: Duration) -> CommitPolicy {
        CommitPolicy {
            interval,
            ..CommitPolicy::default()
        }
    }

    pub fn records_max(self, records_max: usize) -> CommitPolicy {
        assert!(records_max > 0, "a window holds at least one record");
        CommitPolicy {
            records_max,
            ..self
        }
    }

    /// Whether a window opened at `opened` and holding `records` records is due.
    pub fn due(&self, opened: Instant, records: usize, now: Instant) -> bool {
        records >= self.records_max || now.saturating_duration_since(opened) >= self.interval
    }

    /// How long from `now` until a window opened at `opened` is due by time (zero if it is).
    pub fn remaining(&self, opened: Instant, now: Instant) -> Duration {
        self.interval
            .saturating_sub(now.saturating_duration_since(opened))
    }
}

/// An open window: when its first record came and how many it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub opened: Instant,
    pub records: usize,
}

impl Window {
    pub fn open(now: Instant) -> Window {
        Window {
            opened: now,
            records: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (interval ms, records max, ms since opened, records) → due
    fn check(interval_ms: u64, records_max: usize, elapsed_ms: u64, records: usize, due: bool) {
        let policy =
            CommitPolicy::every(Duration::from_millis(interval_ms)).records_max(records_max);
        let opened = Instant::now();
        let now = opened + Duration::from_millis(elapsed_ms);
        assert_eq!(
            policy.due(opened, records, now),
            due,
            "{interval_ms} ms / {records_max} records, after {elapsed_ms} ms with {records}"
        );
    }

    #[test]
    fn due_by_time_or_by_records() {
        check(100, 1000, 0, 1, false);
        check(100, 1000, 99, 999, false);
        check(100, 1000, 100, 1, true);
        check(100, 1000, 5, 1000, true);
        check(0, 1000, 0, 1, true);
        check(1000, 1, 0, 1, true);
    }

    #[test]
    fn remaining_counts_down_to_zero() {
        let policy = CommitPolicy::every(Duration::from_millis(100));
        let opened = Instant::now();
        let at = |ms| opened + Duration::from_millis(ms);
        assert_eq!(policy.remaining(opened, at(0)), Duration::from_millis(100));
        assert_eq!(policy.remaining(opened, at(30)), Duration::from_millis(70));
        assert_eq!(policy.remaining(opened, at(250)), Duration::ZERO);
    }
}
