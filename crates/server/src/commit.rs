//! The group commit: whenever appends are newer than the last fsync, take every dirty
//! partition's sync work under the lock, write and fdatasync it all outside the lock, then
//! publish the covered ticket so every `acks=all` response up to it is released. Appends that
//! arrive during an fsync are covered by the next round, so one fsync serves many producers. A
//! round of small appends only is made durable by one frame of the write-ahead log
//! (`storage::Wal`): one fdatasync of one file, however many logs it wrote to.
//!
//! The work runs on `FRAMES_IN_FLIGHT_MAX` threads of its own, which take turns ([`Pipeline`]):
//! a connection that appended wakes an idle one, which takes the round under the lock, writes
//! it as a frame, lets the next thread take the appends that arrived meanwhile (so fsyncs
//! overlap), then runs the frame's fsync and reports it itself. A frame's fdatasync covers every
//! frame written before it, so the thread that sees one return reports every frame up to its
//! own, in order (`Unfinished`). From append to acknowledgement that is one thread wake-up
//! each way, with no task or blocking-pool hand-off between. A round with more than appends (a
//! roll, a deletion, a checkpoint) waits until every frame is reported, then the thread that
//! took it fdatasyncs every dirty log at once, a thread each.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::producers::ids::IdReservation;
use broker::{LogId, SyncRound};
use parking_lot::{Condvar, Mutex};
use storage::{SyncWork, Wal};
use tokio::runtime::Handle;
use tokio::task::JoinHandle;

use crate::{fatal, Locked, Shared};

/// Rounds whose write-ahead log frame is written and whose fsync may still run, at most, and so
/// the group commit's threads: the next round of appends is taken as soon as the previous frame
/// is written, so their fsyncs overlap and an append that just missed a round waits for one
/// fsync, not for the rest of that round's and then its own.
const FRAMES_IN_FLIGHT_MAX: usize = 4;

/// The group commit's threads' turns. Connections publish their appends here
/// ([`Pipeline::appended`]); one thread at a time takes and writes a round (so frames are
/// written in the order taken), at most `FRAMES_IN_FLIGHT_MAX` frames are in flight, and a round
/// with more than appends waits until none is. Lock order: the broker, then this.
pub(crate) struct Pipeline {
    /// The newest ticket published, read without the lock so that the many calls that appended
    /// nothing new take no lock.
    published: AtomicU64,
    turns: Mutex<Turns>,
    /// Idle threads wait here for a round to take.
    work: Condvar,
    /// The thread taking a round that needs every frame reported waits here.
    drained: Condvar,
}

#[derive(Debug)]
struct Turns {
    /// The newest append ticket published.
    appended: u64,
    /// The newest ticket a round took.
    taken: u64,
    /// A thread is taking and writing a round.
    taking: bool,
    /// Frames taken and not yet reported.
    in_flight: usize,
    /// The server has no connection left: the threads end once nothing is pending.
    shutdown: bool,
}

impl Turns {
    fn pending(&self) -> bool {
        self.appended > self.taken
    }

    fn can_take(&self) -> bool {
        self.pending() && !self.taking && self.in_flight < FRAMES_IN_FLIGHT_MAX
    }

    fn done(&self) -> bool {
        self.shutdown && !self.pending() && !self.taking && self.in_flight == 0
    }
}

impl Pipeline {
    pub(crate) fn new(ticket: u64) -> Pipeline {
        Pipeline {
            published: AtomicU64::new(ticket),
            turns: Mutex::new(Turns {
                appended: ticket,
                taken: ticket,
                taking: false,
                in_flight: 0,
                shutdown: false,
            }),
            work: Condvar::new(),
            drained: Condvar::new(),
        }
    }

    /// Everything up to `ticket` is appended: an idle thread takes it when it may.
    pub(crate) fn appended(&self, ticket: u64) {
        if self.published.fetch_max(ticket, Ordering::SeqCst) >= ticket {
            return;
        }
        let mut turns = self.turns.lock();
        turns.appended = turns.appended.max(ticket);
        if turns.can_take() {
            self.work.notify_one();
        }
    }

    /// No connection is left: the threads sync what is pending, then end.
    pub(crate) fn shut_down(&self) {
        self.turns.lock().shutdown = true;
        self.work.notify_all();
    }

    /// Waits for a turn to take a round, then sets `taking` and says whether any frame is in
    /// flight; None once the threads are to end.
    fn wait_to_take(&self) -> Option<Turn> {
        let mut turns = self.turns.lock();
        loop {
            if turns.can_take() {
                turns.taking = true;
                return Some(match turns.in_flight {
                    0 => Turn::Drained,
                    _ => Turn::FramesInFlight,
                });
            }
            if turns.done() {
                // The others may wait for this state too.
                self.work.notify_all();
                return None;
            }
            self.work.wait(&mut turns);
        }
    }

    /// Waits until every frame taken is reported (the taker, before a round of more than
    /// appends).
    fn wait_drained(&self) {
        let mut turns = self.turns.lock();
        while turns.in_flight > 0 {
            self.drained.wait(&mut turns);
        }
    }

    /// The taker took a round up to `ticket`, a frame when `frame`.
    fn took(&self, ticket: u64, frame: bool) {
        let mut turns = self.turns.lock();
        debug_assert!(turns.taking);
        turns.taken = turns.taken.max(ticket);
        if frame {
            turns.in_flight += 1;
        }
    }

    /// The taker is done writing: the next thread may take the appends that came meanwhile.
    fn written(&self) {
        let mut turns = self.turns.lock();
        turns.taking = false;
        if turns.can_take() {
            self.work.notify_one();
        }
    }

    /// A frame is reported.
    fn reported(&self) {
        let mut turns = self.turns.lock();
        turns.in_flight -= 1;
        if turns.in_flight == 0 {
            self.drained.notify_all();
        }
    }
}

/// What a thread's turn starts from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Turn {
    /// No frame is in flight: any round may be taken.
    Drained,
    /// Frames are in flight: a round of appends only, or wait until they are reported.
    FramesInFlight,
}

/// Runs the group commit until the server shuts it down ([`Pipeline::shut_down`]) and nothing
/// is pending.
pub(crate) async fn run(shared: Arc<Shared>) {
    let wal = locked(&shared).wal();
    // Transactions recovered at start wait for this first report to write their markers.
    report(&shared, [(*shared.synced.borrow(), Vec::new())]);
    let commit = Arc::new(Commit {
        shared,
        wal,
        unfinished: Unfinished::default(),
        runtime: Handle::current(),
        checkpoints: Mutex::new(Vec::new()),
    });
    let threads: Vec<_> = (0..FRAMES_IN_FLIGHT_MAX)
        .map(|_| {
            let commit = commit.clone();
            std::thread::Builder::new()
                .name("ferry-commit".into())
                .spawn(move || {
                    let _stop = StopOnPanic;
                    commit.work()
                })
                .unwrap_or_else(|error| fatal(format!("start a group commit thread: {error}")))
        })
        .collect();
    // A thread that panicked stopped the process (`StopOnPanic`): a join returns once the
    // threads ended their turns.
    let joined = tokio::task::spawn_blocking(move || {
        for thread in threads {
            let _ = thread.join();
        }
    });
    if let Err(error) = joined.await {
        fatal(format!("group commit join task failed: {error}"));
    }
    // The logs close only after the checkpoint writers finished.
    let checkpoints = std::mem::take(&mut *commit.checkpoints.lock());
    for task in checkpoints {
        if let Err(error) = task.await {
            fatal(format!("recovery point task failed: {error}"));
        }
    }
}

/// Stops the process when a group commit thread panics: the others would wait for its turn
/// forever, and every `acks=all` answer with them.
struct StopOnPanic;

impl Drop for StopOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            fatal("a group commit thread panicked");
        }
    }
}

/// What the group commit's threads share.
struct Commit {
    shared: Arc<Shared>,
    wal: Arc<Wal>,
    unfinished: Unfinished,
    /// The server's runtime, for the checkpoint writers.
    runtime: Handle,
    /// Checkpoint writers started, some maybe still running.
    checkpoints: Mutex<Vec<JoinHandle<()>>>,
}

impl Commit {
    /// One group commit thread: takes its turns until the pipeline ends.
    fn work(&self) {
        let pipeline = &self.shared.commit;
        while let Some(turn) = pipeline.wait_to_take() {
            // With frames in flight, a round of appends only; else (more than appends, or more
            // than a frame takes) a whole round, once every frame is reported.
            let next = match turn {
                Turn::Drained => None,
                Turn::FramesInFlight => {
                    locked(&self.shared).take_append_round(storage::WAL_ROUND_BYTES_MAX)
                }
            };
            let round = match next {
                Some(round) => round,
                None => {
                    pipeline.wait_drained();
                    let round = locked(&self.shared).take_sync_work();
                    let logged = !round.logs.is_empty()
                        && self.wal.takes(round.logs.iter().map(|(_, work)| work));
                    if !logged {
                        pipeline.took(round.ticket, false);
                        self.sync_round(round);
                        pipeline.written();
                        continue;
                    }
                    round
                }
            };
            pipeline.took(round.ticket, true);
            self.frame(round);
            pipeline.reported();
        }
    }

    /// Writes a round of appends (producer ids first, as `write_all`) and its write-ahead log
    /// frame, lets the next thread take its turn, then fsyncs the frame and reports it (and any
    /// earlier frame not yet reported).
    fn frame(&self, round: SyncRound) {
        let SyncRound { ticket, ids, logs } = round;
        let work: Vec<_> = logs.into_iter().map(Arc::new).collect();
        let writing = Instant::now();
        write_all(&self.shared, ticket, ids, &work);
        if let Err(error) = self.wal.write(work.iter().map(|item| &item.1)) {
            fatal(format!("write-ahead log: {error}"));
        }
        let syncing = Instant::now();
        self.unfinished.add(Frame {
            ticket,
            work,
            writes: syncing - writing,
            syncing,
        });
        self.shared.commit.written();
        if let Err(error) = self.wal.sync() {
            fatal(format!("write-ahead log fsync: {error}"));
        }
        self.unfinished.report_through(&self.shared, ticket);
    }

    /// A round of more than appends, with no frame in flight: every dirty log's writes, then
    /// their data fsyncs at once, then the covered `acks=all` responses are released. The
    /// recovery-point checkpoints the work carries (each log at most once a minute, and on
    /// rolls) are left to a task of their own, so their two extra fsyncs delay neither these
    /// acknowledgements nor the next round.
    fn sync_round(&self, round: SyncRound) {
        let shared = &self.shared;
        let SyncRound { ticket, ids, logs } = round;
        let work: Vec<_> = logs.into_iter().map(Arc::new).collect();
        let writing = Instant::now();
        write_all(shared, ticket, ids, &work);
        let syncing = Instant::now();
        sync_all(&work);
        // A log that rolled (or deleted segments) must not be named by a frame any more.
        if work.iter().any(|item| item.1.reshapes()) && self.wal.owes() {
            if let Err(error) = self.wal.reset() {
                fatal(format!("reset write-ahead log: {error}"));
            }
        }
        if let Some(metrics) = &shared.metrics {
            metrics.group_commit(work.len(), syncing - writing, syncing.elapsed(), false);
        }
        release(shared, ticket, [(ticket, offsets(&work))]);
        let checkpoints: Vec<_> = work
            .into_iter()
            .filter(|item| item.1.checkpoint().is_some())
            .collect();
        if !checkpoints.is_empty() {
            let task = write_checkpoints(&self.runtime, shared, checkpoints);
            let mut running = self.checkpoints.lock();
            running.retain(|task| !task.is_finished());
            running.push(task);
        }
    }
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
    written: Mutex<VecDeque<Frame>>,
    reporting: Mutex<()>,
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
            finish(shared, &durable);
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

/// Reports frames whose fsync (or a later frame's) is done, oldest first (`release`).
fn finish(shared: &Arc<Shared>, frames: &[Frame]) {
    let Some(newest) = frames.last().map(|frame| frame.ticket) else {
        return;
    };
    if let Some(metrics) = &shared.metrics {
        for frame in frames {
            let since = frame.syncing.elapsed();
            metrics.group_commit(frame.work.len(), frame.writes, since, true);
        }
    }
    let rounds = frames
        .iter()
        .map(|frame| (frame.ticket, offsets(&frame.work)));
    release(shared, newest, rounds);
}

/// Releases what rounds up to `newest` made durable, oldest first: the acknowledgements first
/// (they need no lock; a request sent after one finds the broker knowing, `Shared::enter`),
/// then the high watermarks and the transaction pipeline (`report`), then the fetches waiting
/// for them.
fn release(
    shared: &Shared,
    newest: u64,
    rounds: impl IntoIterator<Item = (u64, Vec<(LogId, i64)>)>,
) {
    shared.synced.send_replace(newest);
    report(shared, rounds);
    shared.visible.send_replace(newest);
}

/// Each log's offset up to which a round's work made its data durable.
fn offsets(work: &[Arc<(LogId, SyncWork)>]) -> Vec<(LogId, i64)> {
    work.iter()
        .map(|item| (item.0.clone(), item.1.offset()))
        .collect()
}

/// Writes the recovery-point checkpoints of a round's works, in a task of its own.
fn write_checkpoints(
    runtime: &Handle,
    shared: &Arc<Shared>,
    checkpoints: Vec<Arc<(LogId, SyncWork)>>,
) -> JoinHandle<()> {
    let shared = shared.clone();
    runtime.spawn(async move {
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
/// block. Any failure is fatal.
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

/// fdatasyncs every log's work at once, a thread each (`storage::at_once`); any failure is fatal
/// (after a failed fsync the kernel may have dropped the dirty pages).
fn sync_all(work: &[Arc<(LogId, SyncWork)>]) {
    let synced = storage::at_once(work, "ferry-fsync", |item| {
        let (log, sync) = &**item;
        sync.run_syncs()
            .map_err(|error| std::io::Error::new(error.kind(), format!("{log}: {error}")))
    });
    if let Err(error) = synced {
        fatal(format!("fsync {error}"));
    }
}

/// Reports rounds to the broker, oldest first, holding it once: for each, the high watermarks
/// move and the transaction pipeline takes its next steps now that the round's ticket is
/// durable (what it appends is covered by a later round).
fn report(shared: &Shared, rounds: impl IntoIterator<Item = (u64, Vec<(LogId, i64)>)>) {
    let mut broker = locked(shared);
    let now = broker.now;
    for (ticket, synced) in rounds {
        if let Err(error) = broker.synced(now, ticket, synced) {
            fatal(error);
        }
    }
}

/// The broker, which the group commit (and its checkpoint tasks) finish with before it closes.
fn locked(shared: &Shared) -> Locked<'_> {
    shared
        .lock()
        .expect("the group commit ends before the broker closes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state and whether a thread may take a round, or may end, in it.
    #[test]
    fn turns_say_when_a_thread_may_take_a_round_and_when_the_threads_end() {
        let turns = |appended, taken, taking, in_flight, shutdown| Turns {
            appended,
            taken,
            taking,
            in_flight,
            shutdown,
        };
        // (state, can take, done)
        let cases = [
            (turns(0, 0, false, 0, false), false, false),
            (turns(1, 0, false, 0, false), true, false),
            (turns(1, 0, true, 0, false), false, false),
            (
                turns(2, 1, false, FRAMES_IN_FLIGHT_MAX - 1, false),
                true,
                false,
            ),
            (
                turns(2, 1, false, FRAMES_IN_FLIGHT_MAX, false),
                false,
                false,
            ),
            (turns(1, 1, false, 0, true), false, true),
            (turns(2, 1, false, 0, true), true, false),
            (turns(1, 1, false, 1, true), false, false),
            (turns(1, 1, true, 0, true), false, false),
        ];
        for (state, can_take, done) in cases {
            assert_eq!(state.can_take(), can_take, "{state:?}");
            assert_eq!(state.done(), done, "{state:?}");
        }
    }

    #[test]
    fn one_thread_takes_at_a_time_and_the_frames_in_flight_are_capped() {
        let pipeline = Pipeline::new(0);
        for frame in 1..=FRAMES_IN_FLIGHT_MAX as u64 {
            pipeline.appended(frame);
            let expected = match frame {
                1 => Turn::Drained,
                _ => Turn::FramesInFlight,
            };
            assert_eq!(pipeline.wait_to_take(), Some(expected));
            pipeline.took(frame, true);
            pipeline.appended(frame + 1);
            assert!(
                !pipeline.turns.lock().can_take(),
                "a frame is being written"
            );
            pipeline.written();
        }
        assert!(
            !pipeline.turns.lock().can_take(),
            "every frame slot is taken"
        );
        pipeline.reported();
        assert!(pipeline.turns.lock().can_take());
    }

    #[test]
    fn an_append_wakes_a_waiting_thread_and_shutdown_ends_the_idle_ones() {
        let pipeline = Arc::new(Pipeline::new(7));
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let pipeline = pipeline.clone();
                std::thread::spawn(move || pipeline.wait_to_take())
            })
            .collect();
        // An older ticket is no news.
        pipeline.appended(7);
        pipeline.appended(8);
        let (taken, idle) = loop {
            match waiters.iter().position(|waiter| waiter.is_finished()) {
                Some(index) => break (index, 1 - index),
                None => std::thread::yield_now(),
            }
        };
        let mut waiters: Vec<_> = waiters.into_iter().map(Some).collect();
        let taker = waiters[taken].take().unwrap();
        assert_eq!(
            taker.join().unwrap(),
            Some(Turn::Drained),
            "the append is taken"
        );
        pipeline.took(8, false);
        pipeline.shut_down();
        // Time for the idle thread to see the shutdown, were it to end on it alone.
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !waiters[idle].as_ref().unwrap().is_finished(),
            "no thread ends while a round is being taken"
        );
        pipeline.written();
        // The taker, looping back, finds the pipeline done and wakes the other.
        assert_eq!(pipeline.wait_to_take(), None);
        assert_eq!(waiters[idle].take().unwrap().join().unwrap(), None);
    }
}
