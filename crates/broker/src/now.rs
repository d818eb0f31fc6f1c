//! `Now`: the time of a call into the broker, as a plain value. The broker reads no clock: the
//! server reads both clocks once per call, under the broker lock, and guarantees that neither
//! goes back from one call to the next (the broker asserts it).

use std::time::Duration;

/// The time of one call: a monotonic clock for waits, the wall clock for everything Kafka
/// timestamps or persists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Time since the caller's monotonic clock started (a Fetch's `max_wait_ms` runs on it).
    mono: Duration,
    /// Milliseconds since the Unix epoch (record timestamps, retention, the coordinators'
    /// timeouts and expiry).
    wall_ms: i64,
}

impl Now {
    /// `mono` since the caller's monotonic clock started and `wall_ms` since the Unix epoch (not
    /// before it).
    pub fn new(mono: Duration, wall_ms: i64) -> Now {
        assert!(
            wall_ms >= 0,
            "wall clock {wall_ms} ms before the Unix epoch"
        );
        Now { mono, wall_ms }
    }

    /// Both clocks at `wall_ms`, for callers with one clock (tests, tools): the monotonic
    /// clock counts from the epoch too.
    pub fn at_wall_ms(wall_ms: i64) -> Now {
        let mono = Duration::from_millis(u64::try_from(wall_ms).unwrap_or(0));
        Now::new(mono, wall_ms)
    }

    /// This time plus `ms` milliseconds on both clocks.
    pub fn plus_ms(self, ms: u64) -> Now {
        let wall_ms = self
            .wall_ms
            .saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        Now::new(self.mono + Duration::from_millis(ms), wall_ms)
    }

    pub fn mono(self) -> Duration {
        self.mono
    }

    pub fn wall_ms(self) -> i64 {
        self.wall_ms
    }

    /// The wall clock as the group and transaction coordinators count it (never negative: see
    /// [`Now::new`]).
    pub(crate) fn coordinator_ms(self) -> u64 {
        self.wall_ms as u64
    }

    /// Whether `self` is no earlier than `before` on either clock.
    pub(crate) fn not_before(self, before: Now) -> bool {
        self.mono >= before.mono && self.wall_ms >= before.wall_ms
    }
}
