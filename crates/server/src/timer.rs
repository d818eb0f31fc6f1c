//! The broker's one timer: calls `Broker::tick` (coordinator timeouts, retention, checkpoints,
//! compaction, producer maintenance) and sleeps until `Broker::next_deadline`, or until a call
//! moves that deadline earlier (`Shared::timer_wake`). The compacted topics' cleanings a tick
//! planned run here too, one at a time, on a blocking thread without the broker's lock, each
//! reported back under it (`broker::cleaner`).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::{fatal, Shared};

/// Longest sleep between two ticks, so that a wall clock that jumps forward is caught up with.
const TICK_IDLE_MS: i64 = 1_000;

pub(crate) async fn run(shared: Arc<Shared>) {
    // Held by the cleaning that runs: one at a time.
    let cleaning = Arc::new(tokio::sync::Mutex::new(()));
    loop {
        let wait = {
            let Some(mut broker) = shared.lock() else {
                return;
            };
            let now = broker.now;
            if let Err(error) = broker.tick(now) {
                fatal(error);
            }
            for task in broker.take_clean_tasks() {
                tokio::spawn(clean(shared.clone(), cleaning.clone(), task));
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

/// Runs one planned cleaning outside the lock, then puts it in place under the lock.
async fn clean(
    shared: Arc<Shared>,
    cleaning: Arc<tokio::sync::Mutex<()>>,
    task: broker::cleaner::CleanTask,
) {
    let _one_at_a_time = cleaning.lock().await;
    let done = match tokio::task::spawn_blocking(move || task.run()).await {
        Ok(done) => done,
        Err(error) => fatal(format!("a log cleaning panicked: {error}")),
    };
    let Some(mut broker) = shared.lock() else {
        return;
    };
    if let Err(error) = broker.clean_done(done) {
        fatal(error);
    }
}
