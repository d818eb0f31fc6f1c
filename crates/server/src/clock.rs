//! The one clock of the process: the monotonic clock since start, for waits, and the wall clock,
//! which Kafka timestamps and the coordinators' timeouts use. It is read once per call into the
//! broker, under the broker lock, so the broker sees calls in time order; the wall clock is
//! clamped here, and only here, so that it never goes back (an NTP step back would otherwise
//! move record timestamps, retention and every timeout backwards).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use broker::Now;

pub struct Clock {
    started: Instant,
    /// The newest wall-clock reading handed out.
    wall_ms_last: i64,
}

impl Clock {
    pub fn start() -> Clock {
        Clock {
            started: Instant::now(),
            wall_ms_last: 0,
        }
    }

    /// The time now; neither clock is earlier than in the previous call.
    pub fn now(&mut self) -> Now {
        let wall_ms = wall_ms().max(self.wall_ms_last);
        self.wall_ms_last = wall_ms;
        Now::new(self.started.elapsed(), wall_ms)
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
