//! The group commit: whenever appends are newer than the last fsync, take every dirty
//! partition's sync work under the lock, fdatasync it all outside the lock (on the blocking pool),
//! then publish the covered ticket so every `acks=all` response up to it is released. Appends that
//! arrive during an fsync are covered by the next round, so one fsync serves many producers.

use std::sync::Arc;

use crate::{fatal, Shared};

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut appended = shared.appended.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let synced = *shared.synced.borrow();
        let pending = *appended.borrow_and_update() > synced;
        if !pending {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                changed = appended.changed() => if changed.is_err() { return },
                _ = shutdown.changed() => {}
            }
            continue;
        }
        round(&shared).await;
    }
}

/// One fsync round.
async fn round(shared: &Arc<Shared>) {
    let (ticket, work) = shared.broker().take_sync_work();
    let synced = tokio::task::spawn_blocking(move || {
        let mut synced = Vec::with_capacity(work.len());
        for (partition, sync) in work {
            if let Err(error) = sync.run() {
                fatal(format!("fsync {}-{}: {error}", partition.0, partition.1));
            }
            synced.push((partition, sync.offset()));
        }
        synced
    })
    .await;
    let synced = match synced {
        Ok(synced) => synced,
        Err(error) => fatal(format!("group commit fsync task failed: {error}")),
    };
    shared.broker().mark_synced(synced);
    shared.synced.send_replace(ticket);
}
