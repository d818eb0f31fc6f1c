//! The one clock of the process: the monotonic clock since start, for waits, and the wall clock,
//! which Kafka timestamps and the coordinators' timeouts use. It is read once per call into the
//! broker, once the broker is held, so a call holding it exclusively is never earlier than any
//! call before it (calls holding it shared run at once, in no order); the wall clock is
//! clamped here, and only here, so that it never goes back (an NTP step back would otherwise
//! move record timestamps, retention and every timeout backwards).

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broker::Now;

pub struct Clock {
    started: Instant,
    /// The newest wall-clock reading handed out (calls holding the broker shared read the clock
    /// at once).
    wall_ms_last: AtomicI64,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            started: Instant::now(),
            wall_ms_last: AtomicI64::new(0),
        }
    }

    /// The time now; neither clock is earlier than in the previous call.
    pub fn now(&self) -> Now {
        self.observe(self.started.elapsed(), wall_ms())
    }

    /// The time of clock readings `mono` and `wall_ms`: the wall clock is held where it was
    /// while the reading is behind it (the one clamp of the process).
    fn observe(&self, mono: Duration, wall_ms: i64) -> Now {
        let before = self.wall_ms_last.fetch_max(wall_ms, Ordering::SeqCst);
        Now::new(mono, wall_ms.max(before))
    }

    /// The instant the monotonic clock counts from: `origin() + Now::mono` is when that was.
    pub fn origin(&self) -> tokio::time::Instant {
        tokio::time::Instant::from_std(self.started)
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 for a clock set before it).
fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_wall_clock_never_goes_back() {
        let clock = Clock::start();
        let check = |mono_ms: u64, reading_ms: i64, expect_ms: i64| {
            let now = clock.observe(Duration::from_millis(mono_ms), reading_ms);
            assert_eq!(now.wall_ms(), expect_ms, "reading {reading_ms}");
            assert_eq!(now.mono(), Duration::from_millis(mono_ms));
        };
        check(0, 1_000, 1_000);
        check(1, 1_005, 1_005);
        check(2, 900, 1_005); // an NTP step back: held
        check(3, 1_004, 1_005);
        check(4, 1_010, 1_010); // caught up: moves again
    }
}
