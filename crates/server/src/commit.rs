//! The group commit: whenever appends are newer than the last fsync, take every dirty
//! partition's sync work under the lock, fdatasync it all outside the lock (on the blocking pool),
//! then publish the covered ticket so every `acks=all` response up to it is released. Appends that
//! arrive during an fsync are covered by the next round, so one fsync serves many producers.

use std::sync::Arc;

use crate::{fatal, Shared};

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut appended = shared.appended.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    // Transactions recovered at start wait for this first call to write their markers.
    after_sync(&shared, *shared.synced.borrow());
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
    after_sync(&shared, ticket);
}

/// Lets the transaction pipeline take its next steps now that `ticket` is durable; what it
/// appends is covered by a later round.
fn after_sync(shared: &Shared, ticket: u64) {
    let routed = {
        let mut broker = shared.broker();
        let routed = broker.after_sync(ticket, crate::now_ms());
        shared.publish_appends(broker.append_ticket());
        routed
    };
    match routed {
        Ok(routed) => crate::groups::deliver(shared, routed),
        Err(error) => fatal(error),
    }
}
