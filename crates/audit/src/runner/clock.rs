//! The auditor's one clock: wall-clock milliseconds (stamps are compared across restarts of
//! the auditor), clamped so that it never goes back within a run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub(crate) struct Clock {
    last_ms: AtomicU64,
}

impl Clock {
    pub(crate) fn now_ms(&self) -> u64 {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let before = self.last_ms.fetch_max(wall, Ordering::Relaxed);
        before.max(wall)
    }
}
