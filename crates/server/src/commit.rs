//! The group commit: whenever appends are newer than the last fsync, take every dirty
//! partition's sync work under the lock, fdatasync it all outside the lock (on the blocking pool),
//! then publish the covered ticket so every `acks=all` response up to it is released. Appends that
//! arrive during an fsync are covered by the next round, so one fsync serves many producers.

use std::sync::Arc;
use std::time::Instant;

use broker::producers::ids::IdReservation;
use broker::{LogId, SyncRound};
use storage::SyncWork;
use tokio::task::JoinHandle;

use crate::{fatal, Locked, Shared};

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut appended = shared.appended.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    // Checkpoint writers still running; the logs close only after they finished.
    let mut checkpoints: Vec<JoinHandle<()>> = Vec::new();
    // Transactions recovered at start wait for this first report to write their markers.
    report(&shared, *shared.synced.borrow(), Vec::new());
    loop {
        let synced = *shared.synced.borrow();
        let pending = *appended.borrow_and_update() > synced;
        if !pending {
            if *shutdown.borrow() {
                break;
            }
            tokio::select! {
                changed = appended.changed() => if changed.is_err() { break },
                _ = shutdown.changed() => {}
            }
            continue;
        }
        checkpoints.retain(|task| !task.is_finished());
        checkpoints.extend(round(&shared).await);
    }
    for task in checkpoints {
        if let Err(error) = task.await {
            fatal(format!("recovery point task failed: {error}"));
        }
    }
}

/// One fsync round: every dirty log's data fsyncs run at once (the disk merges concurrent
/// journal commits), then the covered `acks=all` responses are released. The recovery-point
/// checkpoints the work carries (each log at most once a minute, and on rolls) are left to a
/// task of their own,
/// so their two extra fsyncs delay neither these acknowledgements nor the next round.
async fn round(shared: &Arc<Shared>) -> Option<JoinHandle<()>> {
    let SyncRound { ticket, ids, logs } = locked(shared).take_sync_work();
    let work: Vec<_> = logs.into_iter().map(Arc::new).collect();
    // The appends' writes first, one log after another on one blocking thread (each is one
    // `pwritev` into the page cache; a thread per log would add a wake-up per log to the
    // round): `acks=1` answers need only them. A block of producer ids goes before them, so
    // the transaction log's record of a new id never reaches the disk before its block.
    let writing = Instant::now();
    run_writes(ids, &work).await;
    shared.written.send_replace(ticket);
    let syncing = Instant::now();
    run_all(&work, |sync| sync.run_syncs(), "fsync").await;
    if let Some(metrics) = &shared.metrics {
        metrics.group_commit(work.len(), syncing - writing, syncing.elapsed());
    }
    let synced = work
        .iter()
        .map(|item| (item.0.clone(), item.1.offset()))
        .collect();
    // Acknowledgements first (they need no lock), then the high watermarks and the transaction
    // pipeline, then the fetches waiting for them.
    shared.synced.send_replace(ticket);
    report(shared, ticket, synced);
    shared.visible.send_replace(ticket);
    let checkpoints: Vec<_> = work
        .into_iter()
        .filter(|item| item.1.checkpoint().is_some())
        .collect();
    if checkpoints.is_empty() {
        return None;
    }
    let shared = shared.clone();
    Some(tokio::spawn(async move {
        let tasks: Vec<_> = checkpoints
            .into_iter()
            .map(|item| tokio::task::spawn_blocking(move || (item.1.run_checkpoint(), item)))
            .collect();
        let mut written = Vec::new();
        let mut failed = Vec::new();
        for task in tasks {
            match task.await {
                Ok((Ok(()), item)) => {
                    written.extend(item.1.checkpoint().map(|at| (item.0.clone(), at)))
                }
                Ok((Err(error), item)) => failed.push((item.0.clone(), error)),
                Err(error) => fatal(format!("recovery point task failed: {error}")),
            }
        }
        let mut broker = locked(&shared);
        for (log, error) in failed {
            // A partition deleted while its checkpoint was written took its directory along.
            if broker.has_log(&log) {
                fatal(format!("recovery point {log}: {error}"));
            }
        }
        broker.mark_checkpointed(written);
    }))
}

/// Writes the block of producer ids, if any, then every log's writes in order, on one blocking
/// thread; any failure is fatal.
async fn run_writes(ids: Option<IdReservation>, work: &[Arc<(LogId, SyncWork)>]) {
    let work = work.to_vec();
    let task = tokio::task::spawn_blocking(move || {
        if let Some(Err(error)) = ids.map(|ids| ids.run()) {
            fatal(error);
        }
        for item in &work {
            let (log, sync) = &**item;
            if let Err(error) = sync.run_writes() {
                fatal(format!("write {log}: {error}"));
            }
        }
    });
    if let Err(error) = task.await {
        fatal(format!("group commit write task failed: {error}"));
    }
}

/// Runs `step` for every log's work on the blocking pool, all at once; any failure is fatal
/// (after a failed fsync the kernel may have dropped the dirty pages).
async fn run_all(
    work: &[Arc<(LogId, SyncWork)>],
    step: fn(&SyncWork) -> std::io::Result<()>,
    what: &'static str,
) {
    let tasks: Vec<_> = work
        .iter()
        .map(|item| {
            let item = item.clone();
            tokio::task::spawn_blocking(move || {
                let (log, sync) = &*item;
                if let Err(error) = step(sync) {
                    fatal(format!("{what} {log}: {error}"));
                }
            })
        })
        .collect();
    for task in tasks {
        if let Err(error) = task.await {
            fatal(format!("group commit {what} task failed: {error}"));
        }
    }
}

/// Reports a round to the broker: the high watermarks move, and the transaction pipeline takes
/// its next steps now that `ticket` is durable (what it appends is covered by a later round).
fn report(shared: &Shared, ticket: u64, synced: Vec<(LogId, i64)>) {
    let mut broker = locked(shared);
    let now = broker.now;
    if let Err(error) = broker.synced(now, ticket, synced) {
        fatal(error);
    }
}

/// The broker, which the group commit (and its checkpoint tasks) finish with before it closes.
fn locked(shared: &Shared) -> Locked<'_> {
    shared
        .lock()
        .expect("the group commit ends before the broker closes")
}
