//! The broker's one timer: calls `Broker::tick` (coordinator timeouts, retention, checkpoints,
//! compaction, producer maintenance) and sleeps until `Broker::next_deadline`, or until a call
//! moves that deadline earlier (`Shared::timer_wake`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::{fatal, Shared};

/// Longest sleep between two ticks, so that a wall clock that jumps forward is caught up with.
const TICK_IDLE_MS: i64 = 1_000;

pub(crate) async fn run(shared: Arc<Shared>) {
    loop {
        let wait = {
            let Some(mut broker) = shared.lock() else {
                return;
            };
            let now = broker.now;
            if let Err(error) = broker.tick(now) {
                fatal(error);
            }
            let deadline_ms = broker.next_deadline();
            shared
                .timer_deadline_ms
                .store(deadline_ms, Ordering::Relaxed);
            let wait_ms = deadline_ms
                .saturating_sub(now.wall_ms())
                .clamp(0, TICK_IDLE_MS);
            Duration::from_millis(wait_ms as u64)
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.timer_wake.notified() => {}
        }
    }
}
