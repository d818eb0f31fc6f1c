//! The group commit: whenever appends are newer than the last fsync, take every dirty
//! partition's sync work under the lock, write and fdatasync it all outside the lock (on the
//! blocking pool), then publish the covered ticket so every `acks=all` response up to it is
//! released. Appends that arrive during an fsync are covered by the next round, so one fsync
//! serves many producers. A round of small appends only is made durable by one frame of the
//! write-ahead log (`storage::Wal`): one fdatasync of one file, however many logs it wrote to.

use std::sync::Arc;
use std::time::Instant;

use broker::producers::ids::IdReservation;
use broker::{LogId, SyncRound};
use storage::{SyncWork, Wal};
use tokio::task::JoinHandle;

use crate::{fatal, Locked, Shared};

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut appended = shared.appended.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    // Checkpoint writers still running; the logs close only after they finished.
    let mut checkpoints: Vec<JoinHandle<()>> = Vec::new();
    let wal = locked(&shared).wal();
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
        checkpoints.extend(round(&shared, &wal).await);
    }
    for task in checkpoints {
        if let Err(error) = task.await {
            fatal(format!("recovery point task failed: {error}"));
        }
    }
}

/// One fsync round: a round of small appends is made durable by one write-ahead log frame,
/// any other by every dirty log's data fsyncs at once; then the covered `acks=all` responses
/// are released. The recovery-point checkpoints the work carries (each log at most once a
/// minute, and on rolls) are left to a task of their own, so their two extra fsyncs delay
/// neither these acknowledgements nor the next round.
async fn round(shared: &Arc<Shared>, wal: &Arc<Wal>) -> Option<JoinHandle<()>> {
    let SyncRound { ticket, ids, logs } = locked(shared).take_sync_work();
    let work: Vec<_> = logs.into_iter().map(Arc::new).collect();
    let logged = !work.is_empty() && wal.takes(work.iter().map(|item| &item.1));
    // The appends' writes first, one log after another on one blocking thread (each is one
    // `pwritev` into the page cache; a thread per log would add a wake-up per log to the
    // round): `acks=1` answers need only them. A block of producer ids goes before them, so
    // the transaction log's record of a new id never reaches the disk before its block. A
    // write-ahead log frame follows on the same thread.
    let writing = Instant::now();
    let syncing = run_writes(shared, ticket, ids, &work, logged.then(|| wal.clone())).await;
    if !logged {
        run_all(&work, |sync| sync.run_syncs(), "fsync").await;
        // A log that rolled (or deleted segments) must not be named by a frame any more.
        if work.iter().any(|item| item.1.reshapes()) && wal.owes() {
            let wal = wal.clone();
            let reset = tokio::task::spawn_blocking(move || wal.reset());
            match reset.await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => fatal(format!("reset write-ahead log: {error}")),
                Err(error) => fatal(format!("write-ahead log reset task failed: {error}")),
            }
        }
    }
    if let Some(metrics) = &shared.metrics {
        metrics.group_commit(work.len(), syncing - writing, syncing.elapsed(), logged);
    }
    let synced = work
        .iter()
        .map(|item| (item.0.clone(), item.1.offset()))
        .collect();
    // Acknowledgements first (they need no lock), then the high watermarks and the transaction
    // pipeline, then the fetches waiting for them.
    shared.synced.send_replace(ticket);
    if logged {
        // Off the acknowledgement path: the segments' pages go to the disk now, so the fsync
        // that syncs them in place later (a reset, a checkpoint) is short.
        let work = work.clone();
        tokio::task::spawn_blocking(move || {
            for item in &work {
                if let Err(error) = item.1.start_writeback() {
                    fatal(format!("{}: {error}", item.0));
                }
            }
        });
    }
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
/// thread, and publishes `ticket` as written; then, given the write-ahead log, writes and
/// fsyncs the round's frame. Returns when the syncs began (after the writes); any failure is
/// fatal.
async fn run_writes(
    shared: &Arc<Shared>,
    ticket: u64,
    ids: Option<IdReservation>,
    work: &[Arc<(LogId, SyncWork)>],
    wal: Option<Arc<Wal>>,
) -> Instant {
    let work = work.to_vec();
    let shared = shared.clone();
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
        shared.written.send_replace(ticket);
        let syncing = Instant::now();
        if let Some(wal) = wal {
            if let Err(error) = wal.log(work.iter().map(|item| &item.1)) {
                fatal(format!("write-ahead log: {error}"));
            }
        }
        syncing
    });
    match task.await {
        Ok(syncing) => syncing,
        Err(error) => fatal(format!("group commit write task failed: {error}")),
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
