//! The group commit: whenever appends are newer than the last fsync, take every dirty
//! partition's sync work under the lock, write and fdatasync it all outside the lock (on the
//! blocking pool), then publish the covered ticket so every `acks=all` response up to it is
//! released. Appends that arrive during an fsync are covered by the next round, so one fsync
//! serves many producers. A round of small appends only is made durable by one frame of the
//! write-ahead log (`storage::Wal`): one fdatasync of one file, however many logs it wrote to.
//! While a frame's fsync runs, the next round of appends is taken and written as the next frame
//! (`Broker::take_append_round`), so fsyncs overlap. A frame's fdatasync covers every frame written
//! before it, so the thread that sees one return reports every frame up to its own, in order
//! (`Unfinished`): the acknowledgements go out from there, without a hop through this task. A
//! round with more than appends (a roll, a deletion, a checkpoint) waits until every frame is
//! reported.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::producers::ids::IdReservation;
use broker::{LogId, SyncRound};
use storage::{SyncWork, Wal};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::{fatal, Locked, Shared};

/// Rounds whose write-ahead log frame is written and whose fsync may still run, at most: the
/// next round of appends is taken as soon as the previous frame is written, so their fsyncs
/// overlap and an append that just missed a round waits for one fsync, not for the rest of
/// that round's and then its own.
const FRAMES_IN_FLIGHT_MAX: usize = 4;

pub(crate) async fn run(shared: Arc<Shared>) {
    let mut appended = shared.appended.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    // Checkpoint writers still running; the logs close only after they finished.
    let mut checkpoints: Vec<JoinHandle<()>> = Vec::new();
    let wal = locked(&shared).wal();
    // Transactions recovered at start wait for this first report to write their markers.
    report(&shared, *shared.synced.borrow(), Vec::new());
    // Frames not yet reported, shared with their fsync threads.
    let unfinished = Arc::new(Unfinished::default());
    // The fsync threads of the frames in flight, oldest first; a frame is reported by the time
    // its thread ends.
    let mut frames: VecDeque<JoinHandle<()>> = VecDeque::new();
    // The newest ticket a round took.
    let mut taken = *shared.synced.borrow();
    loop {
        let pending = *appended.borrow_and_update() > taken;
        if pending && frames.len() < FRAMES_IN_FLIGHT_MAX {
            if frames.is_empty() {
                checkpoints.retain(|task| !task.is_finished());
                match round(&shared, &wal, &unfinished).await {
                    Round::Logged { ticket, synced } => {
                        taken = ticket;
                        frames.push_back(synced);
                    }
                    Round::Synced { ticket, checkpoint } => {
                        taken = ticket;
                        checkpoints.extend(checkpoint);
                    }
                }
                continue;
            }
            // None: more than appends, or more than a frame takes: a whole round, once the
            // frames are reported.
            let next = locked(&shared).take_append_round(storage::WAL_ROUND_BYTES_MAX);
            if let Some(next) = next {
                taken = next.ticket;
                frames.push_back(write_frame(&shared, wal.clone(), &unfinished, next).await);
                continue;
            }
        }
        // Here frames are in flight, or nothing is pending.
        if let Some(front) = frames.front_mut() {
            // The oldest frame's fsync, or (while nothing waits to be taken) new appends.
            let more = !pending;
            tokio::select! {
                biased;
                done = front => {
                    if let Err(error) = done {
                        fatal(format!("write-ahead log fsync task failed: {error}"));
                    }
                    frames.pop_front();
                }
                changed = appended.changed(), if more => if changed.is_err() { break },
            }
            continue;
        }
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            changed = appended.changed() => if changed.is_err() { break },
            _ = shutdown.changed() => {}
        }
    }
    for task in checkpoints {
        if let Err(error) = task.await {
            fatal(format!("recovery point task failed: {error}"));
        }
    }
}

/// What a round taken with nothing in flight became.
enum Round {
    /// Written as a frame, its fsync running on `synced`'s thread.
    Logged { ticket: u64, synced: JoinHandle<()> },
    /// Synced and reported, with the task writing its checkpoints, if any.
    Synced {
        ticket: u64,
        checkpoint: Option<JoinHandle<()>>,
    },
}

/// A round made durable by a write-ahead log frame: written, its fsync running.
struct Frame {
    ticket: u64,
    work: Vec<Arc<(LogId, SyncWork)>>,
    /// How long the round's writes (segments and frame) took, and when its fsync began.
    writes: Duration,
    syncing: Instant,
}

/// The frames written and not yet reported, oldest first. Each frame's thread adds it once the
/// frame is written (frames are written one after the other, so in order), and when its fsync
/// returns, reports every frame up to its own. `reporting` keeps the reports in order when two
/// fsyncs return at once; `written` is held only to add or take frames, so that writing the
/// next frame never waits for a report.
#[derive(Default)]
struct Unfinished {
    written: parking_lot::Mutex<VecDeque<Frame>>,
    reporting: parking_lot::Mutex<()>,
}

impl Unfinished {
    fn add(&self, frame: Frame) {
        let mut written = self.written.lock();
        debug_assert!(written.back().is_none_or(|last| last.ticket < frame.ticket));
        written.push_back(frame);
    }

    /// Reports every frame up to `ticket`, whose fsync just returned, unless another thread
    /// did; then starts the writeback the reported frames owe.
    fn report_through(&self, shared: &Arc<Shared>, ticket: u64) {
        let reported: Vec<Frame> = {
            let _reporting = self.reporting.lock();
            let durable: Vec<Frame> = {
                let mut written = self.written.lock();
                let count = written.iter().take_while(|f| f.ticket <= ticket).count();
                written.drain(..count).collect()
            };
            for frame in &durable {
                finish(shared, frame);
            }
            durable
        };
        // Off the acknowledgement path: once a segment holds `storage::WRITEBACK_BYTES_MIN` not
        // yet written back, its pages go to the disk now, so the fsync that syncs it in place
        // later (a reset, a checkpoint) is short.
        for item in reported.iter().flat_map(|frame| &frame.work) {
            if let Err(error) = item.1.start_writeback() {
                fatal(format!("{}: {error}", item.0));
            }
        }
    }
}

/// One round taken with nothing in flight: a round of small appends is written as one
/// write-ahead log frame, whose fsync the caller waits for (and may overlap with the next
/// rounds'); any other is made durable by every dirty log's data fsyncs at once, then the
/// covered `acks=all` responses are released. The recovery-point checkpoints the work carries
/// (each log at most once a minute, and on rolls) are left to a task of their own, so their two
/// extra fsyncs delay neither these acknowledgements nor the next round.
async fn round(shared: &Arc<Shared>, wal: &Arc<Wal>, unfinished: &Arc<Unfinished>) -> Round {
    let taken = locked(shared).take_sync_work();
    let logged = !taken.logs.is_empty() && wal.takes(taken.logs.iter().map(|(_, work)| work));
    if logged {
        let ticket = taken.ticket;
        let synced = write_frame(shared, wal.clone(), unfinished, taken).await;
        return Round::Logged { ticket, synced };
    }
    let SyncRound { ticket, ids, logs } = taken;
    let work: Vec<_> = logs.into_iter().map(Arc::new).collect();
    let writing = Instant::now();
    let syncing = run_writes(shared, ticket, ids, &work).await;
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
    if let Some(metrics) = &shared.metrics {
        metrics.group_commit(work.len(), syncing - writing, syncing.elapsed(), false);
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
    Round::Synced {
        ticket,
        checkpoint: (!checkpoints.is_empty()).then(|| write_checkpoints(shared, checkpoints)),
    }
}

/// Writes a round of appends and its write-ahead log frame on one blocking thread (producer ids
/// first, as `run_writes`), and returns once the frame is written, with its fsync running on
/// that thread, which then reports it (and any earlier frame not yet reported).
async fn write_frame(
    shared: &Arc<Shared>,
    wal: Arc<Wal>,
    unfinished: &Arc<Unfinished>,
    round: SyncRound,
) -> JoinHandle<()> {
    let SyncRound { ticket, ids, logs } = round;
    let work: Vec<_> = logs.into_iter().map(Arc::new).collect();
    let writing = Instant::now();
    let (written, frame_written) = oneshot::channel();
    let synced = {
        let (shared, unfinished) = (shared.clone(), unfinished.clone());
        tokio::task::spawn_blocking(move || {
            write_all(&shared, ticket, ids, &work);
            if let Err(error) = wal.write(work.iter().map(|item| &item.1)) {
                fatal(format!("write-ahead log: {error}"));
            }
            let syncing = Instant::now();
            unfinished.add(Frame {
                ticket,
                work,
                writes: syncing - writing,
                syncing,
            });
            // The receiver waits unless the task is being torn down with the runtime.
            let _ = written.send(());
            if let Err(error) = wal.sync() {
                fatal(format!("write-ahead log fsync: {error}"));
            }
            unfinished.report_through(&shared, ticket);
        })
    };
    if frame_written.await.is_err() {
        fatal("group commit write task failed before its frame was written");
    }
    synced
}

/// Reports a frame whose fsync (or a later frame's) is done; frames are reported in the order
/// written (`Unfinished::report_through`).
fn finish(shared: &Arc<Shared>, frame: &Frame) {
    let Frame {
        ticket,
        work,
        writes,
        syncing,
    } = frame;
    if let Some(metrics) = &shared.metrics {
        metrics.group_commit(work.len(), *writes, syncing.elapsed(), true);
    }
    shared.synced.send_replace(*ticket);
    let synced = work
        .iter()
        .map(|item| (item.0.clone(), item.1.offset()))
        .collect();
    report(shared, *ticket, synced);
    shared.visible.send_replace(*ticket);
}

/// Writes the recovery-point checkpoints of a round's works, in a task of its own.
fn write_checkpoints(
    shared: &Arc<Shared>,
    checkpoints: Vec<Arc<(LogId, SyncWork)>>,
) -> JoinHandle<()> {
    let shared = shared.clone();
    tokio::spawn(async move {
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
    })
}

/// Writes the block of producer ids, if any, then every log's writes in order (one `pwritev`
/// each into the page cache; a thread per log would add a wake-up per log to the round), and
/// publishes `ticket` as written (`acks=1` answers need only that). The block of producer ids
/// goes first, so the transaction log's record of a new id never reaches the disk before its
/// block. Any failure is fatal. On a blocking thread.
fn write_all(
    shared: &Shared,
    ticket: u64,
    ids: Option<IdReservation>,
    work: &[Arc<(LogId, SyncWork)>],
) {
    if let Some(Err(error)) = ids.map(|ids| ids.run()) {
        fatal(error);
    }
    for item in work {
        let (log, sync) = &**item;
        if let Err(error) = sync.run_writes() {
            fatal(format!("write {log}: {error}"));
        }
    }
    shared.written.send_replace(ticket);
}

/// `write_all` on a blocking thread; returns when the writes were done (when the syncs began).
async fn run_writes(
    shared: &Arc<Shared>,
    ticket: u64,
    ids: Option<IdReservation>,
    work: &[Arc<(LogId, SyncWork)>],
) -> Instant {
    let work = work.to_vec();
    let shared = shared.clone();
    let task = tokio::task::spawn_blocking(move || {
        write_all(&shared, ticket, ids, &work);
        Instant::now()
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
