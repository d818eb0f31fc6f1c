//! Power loss across thousands of seeded crash points.
//!
//! Each seed drives a `PartitionLog` on `SimDisk` through appends (single and packed batches),
//! group-commit syncs, segment rolls, retention, DeleteRecords and recovery-point checkpoints
//! (run late, beside the next sync, as the server's group commit does), and acknowledges records
//! exactly the way the server does: only once the `run_data` fsyncs covering them succeeded. At a
//! seeded step the power fails with one fault: plain loss of unsynced writes, a torn last write, a
//! failed fsync (the server stops on it) or a flipped bit in synced data. The log is reopened and
//! judged: every acknowledged record is there and byte-identical, every surviving unacknowledged
//! batch is intact (a torn tail is cut to whole batches), and damage to synced data is refused at
//! open or on read, never served. Then the seed goes on from the recovered log, up to three crashes.
//!
//! `FERRY_SLOW=1` runs far more seeds. One seed reproduces a run: a failure prints it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use storage::{Disk, LogConfig, LogError, PartitionLog, SimDisk, SyncWork, Wal};
use wire::batch::Batches;

use crate::{batch, DIR};

/// Seeds in the default run, and with `FERRY_SLOW=1`.
const SEEDS_DEFAULT: u64 = 2_000;
const SEEDS_SLOW: u64 = 100_000;
/// Crashes per seed at most: later ones recover a log that was itself recovered.
const CRASHES_PER_SEED_MAX: u64 = 3;
/// Steps before a crash at most.
const STEPS_PER_CRASH_MAX: u64 = 60;

/// splitmix64: small, seedable, and the same on every platform.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn percent(&mut self, p: u64) -> bool {
        self.below(100) < p
    }
}

/// How the harness acknowledges: as the server does, or (the control) at append, before fsync.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AckPolicy {
    AfterSync,
    BeforeSync,
    /// As the server's group commit does with its write-ahead log: a small round of appends is
    /// acknowledged once its frame is fsynced, any other once its own fsyncs ran, and a round
    /// that reshapes the log resets the write-ahead log. Recovery replays it first.
    AfterWal,
    /// The control of `AfterWal`: the same, but recovery opens the log without replaying the
    /// write-ahead log.
    AfterWalNoReplay,
}

impl AckPolicy {
    fn wal(self) -> bool {
        matches!(self, AckPolicy::AfterWal | AckPolicy::AfterWalNoReplay)
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Fault {
    Loss,
    Tear,
    FailedFsync,
    BitFlip,
}

const FAULTS: [Fault; 4] = [Fault::Loss, Fault::Tear, Fault::FailedFsync, Fault::BitFlip];

/// What the seeds did and found. `lost` and `served_corrupt` must stay 0.
#[derive(Default, Debug, Clone, PartialEq, Eq)]
pub struct Tally {
    pub seeds: u64,
    pub crash_points: u64,
    /// Crash points by fault, in the order of `FAULTS`.
    pub faults: [u64; 4],
    /// Acknowledged records checked present and intact after a recovery (counted per crash).
    pub acked_records_checked: u64,
    pub appends: u64,
    pub syncs: u64,
    /// Rounds made durable by a write-ahead log frame, and write-ahead log resets.
    pub wal_frames: u64,
    pub wal_resets: u64,
    /// Frames written while an earlier frame's fsync was still to come (pipelined rounds).
    pub wal_pipelined: u64,
    /// Appends recovery wrote again from the write-ahead log.
    pub wal_replayed: u64,
    pub checkpoints: u64,
    pub retention_runs: u64,
    pub delete_records: u64,
    /// Recoveries that dropped unacknowledged records (a lost or torn unsynced tail).
    pub tails_truncated: u64,
    /// Bit flips refused when opening the log (`LogError::Corrupt`).
    pub flips_refused_at_open: u64,
    /// Bit flips the open did not look at, refused when the batch was read.
    pub flips_caught_on_read: u64,
    /// Bit flips that landed where no acknowledged data depends on them.
    pub flips_harmless: u64,
    /// Bit flips in the last batch past the recovery point: indistinguishable from a torn write,
    /// so recovery cuts that batch (a documented limitation); the acknowledged records it held.
    pub flips_cut_as_torn: u64,
    pub acked_records_cut_as_torn: u64,
    /// Acknowledged records missing or different after recovery, other than the above.
    pub lost: u64,
    /// Batches served whose bytes differ from what was appended.
    pub served_corrupt: u64,
    /// Opens refused as corrupt with no bit flipped: the log's own writes contradict each other.
    pub refused_undamaged: u64,
    /// The first seeds that lost or served something, to reproduce.
    pub failing_seeds: Vec<u64>,
}

impl Tally {
    fn add(&mut self, other: &Tally) {
        self.seeds += other.seeds;
        self.crash_points += other.crash_points;
        for (a, b) in self.faults.iter_mut().zip(other.faults) {
            *a += b;
        }
        self.acked_records_checked += other.acked_records_checked;
        self.appends += other.appends;
        self.syncs += other.syncs;
        self.wal_frames += other.wal_frames;
        self.wal_resets += other.wal_resets;
        self.wal_pipelined += other.wal_pipelined;
        self.wal_replayed += other.wal_replayed;
        self.checkpoints += other.checkpoints;
        self.retention_runs += other.retention_runs;
        self.delete_records += other.delete_records;
        self.tails_truncated += other.tails_truncated;
        self.flips_refused_at_open += other.flips_refused_at_open;
        self.flips_caught_on_read += other.flips_caught_on_read;
        self.flips_harmless += other.flips_harmless;
        self.flips_cut_as_torn += other.flips_cut_as_torn;
        self.acked_records_cut_as_torn += other.acked_records_cut_as_torn;
        self.lost += other.lost;
        self.served_corrupt += other.served_corrupt;
        self.refused_undamaged += other.refused_undamaged;
        if self.failing_seeds.len() < 10 {
            self.failing_seeds
                .extend(other.failing_seeds.iter().take(10));
        }
    }
}

/// The model: what was appended (bytes as stored, by base offset) and what was acknowledged.
struct Model {
    batches: BTreeMap<i64, Vec<u8>>,
    /// Records below this offset were acknowledged.
    acked_end: i64,
    /// The log start offset before the crash: records below it were deleted on purpose.
    log_start: i64,
    seed_next: u64,
    now_ms: i64,
    /// The fault of the current crash, for the traces.
    fault: Fault,
}

/// Where a flipped bit landed, to tell the torn-write limitation from a loss.
struct Flip {
    /// Base offset of the damaged batch.
    base_offset: i64,
    /// It is the last batch of the last segment, past the on-disk recovery point.
    looks_torn: bool,
}

fn config(rng: &mut Rng) -> LogConfig {
    LogConfig {
        segment_bytes: [300, 1_024, 4_096][rng.below(3) as usize],
        index_interval_bytes: [50, 100, 4_096][rng.below(3) as usize],
        retention_bytes: [-1, 2_000][rng.below(2) as usize],
        retention_ms: [-1, 3_000][rng.below(2) as usize],
        // The default (a minute) and the interval these tests long ran with; steps are up to
        // 400 ms, so at a minute most runs checkpoint only on rolls.
        recovery_point_interval_ms: [1_000, storage::RECOVERY_POINT_INTERVAL_MS]
            [rng.below(2) as usize],
        ..LogConfig::default()
    }
}

/// The write-ahead log's directory: the parent of the log's.
const WAL_ROOT: &str = "/";

fn open_wal(disk: &SimDisk, tally: &mut Tally) -> Wal {
    let (wal, replayed) = Wal::open(Arc::new(disk.clone()), Path::new(WAL_ROOT))
        .expect("the write-ahead log opens after a crash");
    tally.wal_replayed += replayed.appends;
    wal
}

fn open(disk: &SimDisk, config: &LogConfig, now_ms: i64) -> Result<PartitionLog, LogError> {
    PartitionLog::open(
        Arc::new(disk.clone()),
        Path::new(DIR),
        config.clone(),
        now_ms,
    )
}

/// Runs every seed in `seeds` and adds up what they did.
pub fn run_seeds(seeds: std::ops::Range<u64>, policy: AckPolicy) -> Tally {
    let mut tally = Tally::default();
    for seed in seeds {
        let mut one = Tally::default();
        run_seed(seed, policy, &mut one);
        if one.lost > 0 || one.served_corrupt > 0 || one.refused_undamaged > 0 {
            one.failing_seeds.push(seed);
        }
        tally.add(&one);
    }
    tally
}

fn run_seed(seed: u64, policy: AckPolicy, tally: &mut Tally) {
    let mut rng = Rng(seed);
    let config = config(&mut rng);
    let disk = SimDisk::new();
    let mut model = Model {
        batches: BTreeMap::new(),
        acked_end: 0,
        log_start: 0,
        seed_next: seed << 20,
        now_ms: 0,
        fault: Fault::Loss,
    };
    tally.seeds += 1;
    let crashes = 1 + rng.below(CRASHES_PER_SEED_MAX);
    let mut wal = policy.wal().then(|| open_wal(&disk, tally));
    for _ in 0..crashes {
        let mut log = open(&disk, &config, model.now_ms)
            .unwrap_or_else(|e| panic!("seed {seed}: open before a crash: {e}"));
        let fault = FAULTS[rng.below(4) as usize];
        model.fault = fault;
        let steps = 1 + rng.below(STEPS_PER_CRASH_MAX);
        let mut checkpoint: Option<SyncWork> = None;
        // Works whose write-ahead log frame is written and not yet fsynced, oldest first.
        let mut frames: Vec<SyncWork> = Vec::new();
        for _ in 0..steps {
            step(
                &mut rng,
                &mut log,
                wal.as_ref(),
                &mut frames,
                &mut model,
                &mut checkpoint,
                policy,
                tally,
            );
        }
        model.log_start = log.log_start_offset();
        if fault == Fault::FailedFsync {
            fail_a_sync(
                &mut rng,
                &disk,
                &mut log,
                wal.as_ref(),
                &frames,
                &mut model,
                checkpoint.take(),
                tally,
            );
        }
        if fault == Fault::Tear {
            disk.tear_on_crash(rng.below(300) as usize);
        }
        drop(checkpoint);
        drop(frames);
        drop(log);
        drop(wal.take());
        disk.crash();
        tally.crash_points += 1;
        tally.faults[FAULTS.iter().position(|f| *f == fault).unwrap()] += 1;
        let flip = (fault == Fault::BitFlip)
            .then(|| flip_a_bit(&mut rng, &disk))
            .flatten();
        if policy == AckPolicy::AfterWal {
            wal = Some(open_wal(&disk, tally));
        }
        if !recover_and_check(seed, &disk, &config, &mut model, flip, tally) {
            return;
        }
    }
}

/// One random operation, acknowledging as `policy` says.
#[allow(clippy::too_many_arguments)]
fn step(
    rng: &mut Rng,
    log: &mut PartitionLog,
    wal: Option<&Wal>,
    frames: &mut Vec<SyncWork>,
    model: &mut Model,
    checkpoint: &mut Option<SyncWork>,
    policy: AckPolicy,
    tally: &mut Tally,
) {
    model.now_ms += rng.below(400) as i64;
    match rng.below(100) {
        0..=49 => {
            let packed = 1 + rng.below(3) * u64::from(rng.percent(30));
            let mut bytes = Vec::new();
            for _ in 0..packed {
                model.seed_next += 1;
                let records = 1 + rng.below(5) as usize;
                let value_bytes = 5 + rng.below(120) as usize;
                bytes.extend(batch(model.seed_next, records, value_bytes, model.now_ms));
            }
            let info = log
                .append(bytes::Bytes::copy_from_slice(&bytes), model.now_ms)
                .expect("append on a healthy disk");
            let stored = crate::stored(&bytes, &info);
            tally.appends += 1;
            for item in Batches::new(&stored) {
                let (_, view) = item.expect("appended batches are whole");
                model
                    .batches
                    .insert(view.base_offset(), view.as_bytes().to_vec());
            }
            if policy == AckPolicy::BeforeSync {
                model.acked_end = log.log_end_offset();
            }
        }
        50..=79 if !frames.is_empty() => {
            let wal = wal.expect("frames are the write-ahead log's");
            if rng.percent(10) {
                // A reset meanwhile (another partition's deletion, a full log): it syncs the
                // frames' segments before it voids them, so their fsync still acknowledges.
                wal.reset().expect("fsync on a healthy disk");
                tally.wal_resets += 1;
            }
            if rng.percent(50) {
                // The server's next round while the earlier frames' fsync runs: appends only.
                if let Some(work) = log.take_append_work() {
                    work.run_writes().expect("write on a healthy disk");
                    wal.write([&work]).expect("write on a healthy disk");
                    tally.wal_frames += 1;
                    tally.wal_pipelined += 1;
                    frames.push(work);
                }
            } else {
                // The fsync of the frames written so far: every one of them is acknowledged.
                wal.sync().expect("fsync on a healthy disk");
                for work in frames.drain(..) {
                    log.mark_data_synced(work.offset());
                    tally.syncs += 1;
                    model.acked_end = model.acked_end.max(work.offset());
                }
            }
        }
        50..=79 => {
            // The server's round: data fsyncs, acknowledge, the checkpoint later in its own task.
            match log.take_sync_work() {
                Some(work) if wal.is_some_and(|wal| wal.takes([&work])) && rng.percent(40) => {
                    // A frame written, its fsync left to a later step.
                    let wal = wal.expect("checked");
                    work.run_writes().expect("write on a healthy disk");
                    wal.write([&work]).expect("write on a healthy disk");
                    tally.wal_frames += 1;
                    frames.push(work);
                }
                Some(work) => {
                    sync(&work, wal, tally).expect("fsync on a healthy disk");
                    log.mark_data_synced(work.offset());
                    tally.syncs += 1;
                    model.acked_end = model.acked_end.max(work.offset());
                    if work.checkpoint().is_some() {
                        *checkpoint = Some(work);
                    }
                }
                None => {}
            }
            if rng.percent(50) {
                run_checkpoint(log, checkpoint, tally);
            }
        }
        80..=89 => {
            log.enforce_retention(model.now_ms)
                .expect("retention on a healthy disk");
            tally.retention_runs += 1;
        }
        90..=92 => {
            let low = log.log_start_offset();
            let high = log.synced_offset();
            let to = low + rng.below((high - low + 1) as u64) as i64;
            log.delete_records_before(to)
                .expect("DeleteRecords on a healthy disk");
            tally.delete_records += 1;
        }
        _ => run_checkpoint(log, checkpoint, tally),
    }
}

/// Makes a work's appends durable as the server's group commit does: with the write-ahead log
/// when there is one and it takes the round, else by the work's own fsyncs (then a reset of the
/// write-ahead log if the work reshaped the log).
fn sync(work: &SyncWork, wal: Option<&Wal>, tally: &mut Tally) -> std::io::Result<()> {
    match wal {
        Some(wal) if wal.takes([work]) => {
            work.run_writes()?;
            wal.log([work])?;
            tally.wal_frames += 1;
        }
        _ => {
            work.run_data()?;
            if let Some(wal) = wal.filter(|_| work.reshapes()) {
                wal.reset()?;
                tally.wal_resets += 1;
            }
        }
    }
    Ok(())
}

fn run_checkpoint(log: &mut PartitionLog, checkpoint: &mut Option<SyncWork>, tally: &mut Tally) {
    if let Some(work) = checkpoint.take() {
        work.run_checkpoint().expect("checkpoint on a healthy disk");
        log.mark_checkpointed(work.checkpoint().expect("scheduled"));
        tally.checkpoints += 1;
    }
}

/// Makes one fsync fail, a data fsync or a pending checkpoint's. The server stops on it, so
/// nothing it covered is acknowledged; the crash follows.
#[allow(clippy::too_many_arguments)]
fn fail_a_sync(
    rng: &mut Rng,
    disk: &SimDisk,
    log: &mut PartitionLog,
    wal: Option<&Wal>,
    frames: &[SyncWork],
    model: &mut Model,
    checkpoint: Option<SyncWork>,
    tally: &mut Tally,
) {
    if let (Some(wal), false) = (wal, frames.is_empty()) {
        // The fsync of the frames written and not yet synced fails: none is acknowledged.
        disk.fail_next_sync();
        let failed = wal.sync().is_err();
        assert!(
            failed || cfg!(feature = "unsafe-ack-before-fsync"),
            "the injected failure fires"
        );
        return;
    }
    if let (Some(work), true) = (&checkpoint, rng.percent(30)) {
        disk.fail_next_sync();
        assert!(work.run_checkpoint().is_err(), "the injected failure fires");
        return;
    }
    model.seed_next += 1;
    let bytes = batch(model.seed_next, 1 + rng.below(4) as usize, 20, model.now_ms);
    let info = log
        .append(bytes::Bytes::copy_from_slice(&bytes), model.now_ms)
        .expect("append on a healthy disk");
    let stored = crate::stored(&bytes, &info);
    tally.appends += 1;
    model.batches.insert(
        Batches::new(&stored)
            .next()
            .unwrap()
            .unwrap()
            .1
            .base_offset(),
        stored,
    );
    let work = log.take_sync_work().expect("an append needs a sync");
    disk.fail_next_sync();
    let failed = sync(&work, wal, tally).is_err();
    // The unsafe control build runs no fsync to fail.
    assert!(
        failed || cfg!(feature = "unsafe-ack-before-fsync"),
        "the injected failure fires"
    );
}

fn segment_bases(disk: &SimDisk) -> Vec<(i64, PathBuf)> {
    let names = disk.list_dir(Path::new(DIR)).unwrap_or_default();
    names
        .iter()
        .filter_map(|name| {
            let base = name.strip_suffix(".log")?.parse::<i64>().ok()?;
            Some((base, Path::new(DIR).join(name)))
        })
        .collect()
}

fn recovery_point_on_disk(disk: &SimDisk) -> i64 {
    disk.contents(&Path::new(DIR).join("recovery-point.checkpoint"))
        .and_then(|bytes| Some(i64::from_be_bytes(bytes.get(4..12)?.try_into().ok()?)))
        .unwrap_or(0)
}

/// Flips one bit of one segment file after the crash (so in data that was synced).
fn flip_a_bit(rng: &mut Rng, disk: &SimDisk) -> Option<Flip> {
    let segments: Vec<(i64, PathBuf, Vec<u8>)> = segment_bases(disk)
        .into_iter()
        .filter_map(|(base, path)| {
            let bytes = disk.contents(&path)?;
            (!bytes.is_empty()).then_some((base, path, bytes))
        })
        .collect();
    if segments.is_empty() {
        return None;
    }
    let which = rng.below(segments.len() as u64) as usize;
    let (_, path, bytes) = &segments[which];
    let position = rng.below(bytes.len() as u64);
    let mut found = None;
    let mut last = true;
    for item in Batches::new(bytes) {
        let (start, view) = item.expect("synced segments hold whole batches");
        let end = (start + view.total_bytes()) as u64;
        if found.is_some() {
            last = false;
            break;
        }
        if (start as u64..end).contains(&position) {
            found = Some(view.base_offset());
        }
    }
    let base_offset = found.expect("every byte of a segment belongs to a batch");
    let looks_torn =
        last && which == segments.len() - 1 && base_offset >= recovery_point_on_disk(disk);
    let mask = 1 << rng.below(8);
    if std::env::var_os("FERRY_POWERLOSS_TRACE").is_some() {
        eprintln!(
            "flip {} byte {position} of {} mask {mask:#x}: batch {base_offset}, last {last}, recovery point {}",
            path.display(),
            bytes.len(),
            recovery_point_on_disk(disk)
        );
    }
    disk.corrupt(path, position, mask).unwrap();
    Some(Flip {
        base_offset,
        looks_torn,
    })
}

/// Reopens the log after a crash and judges it against the model. Returns whether the seed can
/// go on (a refused or damaged log needs an operator, not more appends).
fn recover_and_check(
    seed: u64,
    disk: &SimDisk,
    config: &LogConfig,
    model: &mut Model,
    flip: Option<Flip>,
    tally: &mut Tally,
) -> bool {
    let trace = std::env::var_os("FERRY_POWERLOSS_TRACE").is_some();
    if trace {
        for (base, path) in segment_bases(disk) {
            let bytes = disk.contents(&path).unwrap_or_default();
            let batches: Vec<String> = Batches::new(&bytes)
                .map(|b| match b {
                    Ok((at, v)) => format!("{at}:{}..{}", v.base_offset(), v.last_offset()),
                    Err(e) => format!("err {e}"),
                })
                .collect();
            eprintln!("before open: segment {base}: {}", batches.join(" "));
        }
    }
    let log = match open(disk, config, model.now_ms) {
        Ok(log) => log,
        Err(LogError::Corrupt { .. }) if flip.is_some() => {
            tally.flips_refused_at_open += 1;
            return false;
        }
        Err(error @ LogError::Corrupt { .. }) => {
            // Only the unsafe control build gets here: its checkpoints cover data never synced.
            eprintln!(
                "seed {seed} ({:?}): refused without damage: {error}",
                model.fault
            );
            tally.refused_undamaged += 1;
            return false;
        }
        Err(error) => panic!("seed {seed}: recovery failed: {error}"),
    };
    let log_end = log.log_end_offset();
    let checked_from = model.log_start.max(log.log_start_offset());
    let mut caught = false;
    let mut offset = log.log_start_offset();
    // Batch by batch, so that a batch refused on read does not hide the ones after it.
    while offset < log_end {
        match log.read(offset, 1, i64::MAX) {
            Ok(bytes) => {
                let (_, view) = Batches::new(&bytes)
                    .next()
                    .expect("a read below the log end returns a batch")
                    .expect("served batches are whole");
                if model.batches.get(&view.base_offset()).map(Vec::as_slice) != Some(&bytes[..]) {
                    tally.served_corrupt += 1;
                    eprintln!(
                        "seed {seed} ({:?}): batch {} served altered",
                        model.fault,
                        view.base_offset()
                    );
                }
                offset = view.last_offset() + 1;
            }
            Err(LogError::Corrupt { .. }) if flip.is_some() => {
                caught = true;
                let (_, bytes) = model
                    .batches
                    .range(..=offset)
                    .next_back()
                    .expect("the log holds appended batches only");
                offset = Batches::new(bytes).next().unwrap().unwrap().1.last_offset() + 1;
            }
            Err(error) => panic!("seed {seed}: read at {offset} failed: {error}"),
        }
    }
    let acked = (model.acked_end - checked_from).max(0) as u64;
    tally.acked_records_checked += acked;
    let missing = (model.acked_end - log_end).max(0) as u64;
    let appended_end = model.batches.last_key_value().map_or(0, |(_, b)| {
        Batches::new(b).next().unwrap().unwrap().1.last_offset() + 1
    });
    if log_end < appended_end && missing == 0 {
        tally.tails_truncated += 1;
    }
    if log.log_start_offset() > model.log_start && log.log_start_offset() > 0 {
        // The log start moved forward on its own: records between were deleted by recovery.
        let gone = (log.log_start_offset().min(model.acked_end) - model.log_start).max(0);
        tally.lost += gone as u64;
        eprintln!(
            "seed {seed}: log start moved from {} to {}",
            model.log_start,
            log.log_start_offset()
        );
    }
    match &flip {
        Some(_) if caught => {
            tally.flips_caught_on_read += 1;
            return false;
        }
        Some(flip) if missing > 0 && flip.looks_torn && flip.base_offset < model.acked_end => {
            // Only the damaged last batch may be cut; anything before it is a loss.
            let expected_end = flip.base_offset;
            tally.flips_cut_as_torn += 1;
            tally.acked_records_cut_as_torn += (model.acked_end - log_end.max(expected_end)) as u64;
            tally.lost += (expected_end - log_end).max(0) as u64;
            return false;
        }
        Some(_) => tally.flips_harmless += 1,
        None => {}
    }
    if missing > 0 {
        tally.lost += missing;
        eprintln!(
            "seed {seed} ({:?}): acknowledged up to {} but the log ends at {log_end}",
            model.fault, model.acked_end
        );
        return false;
    }
    // Go on from the recovered log: what it dropped was never acknowledged.
    model.batches.retain(|&base, _| base < log_end);
    model.log_start = log.log_start_offset();
    drop(log);
    true
}

/// The seeds to run: `FERRY_SEED=n` reproduces one, `FERRY_SLOW=1` runs many.
fn seeds() -> std::ops::Range<u64> {
    if let Some(seed) = std::env::var("FERRY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return seed..seed + 1;
    }
    if std::env::var_os("FERRY_SLOW").is_some() {
        0..SEEDS_SLOW
    } else {
        0..SEEDS_DEFAULT
    }
}

fn report(name: &str, tally: &Tally) {
    let faults: Vec<String> = FAULTS
        .iter()
        .zip(tally.faults)
        .map(|(fault, n)| format!("{fault:?} {n}"))
        .collect();
    eprintln!(
        "{name}: {tally:#?}\n{name}: faults by kind: {}",
        faults.join(", ")
    );
}

/// No acknowledged record lost, no altered batch served, no undamaged log refused.
fn assert_nothing_lost(tally: &Tally) {
    assert_eq!(
        tally.lost, 0,
        "lost acknowledged records; seeds {:?}",
        tally.failing_seeds
    );
    assert_eq!(
        tally.served_corrupt, 0,
        "served altered batches; seeds {:?}",
        tally.failing_seeds
    );
    assert_eq!(
        tally.refused_undamaged, 0,
        "refused an undamaged log; seeds {:?}",
        tally.failing_seeds
    );
}

#[cfg(not(feature = "unsafe-ack-before-fsync"))]
#[test]
fn no_acknowledged_record_is_lost_at_any_crash_point() {
    let tally = run_seeds(seeds(), AckPolicy::AfterSync);
    report("power loss", &tally);
    if tally.seeds >= SEEDS_DEFAULT {
        assert!(
            tally.faults.iter().all(|&n| n > 0),
            "every fault is injected"
        );
        assert!(tally.acked_records_checked > 0);
        assert!(
            tally.tails_truncated > 0,
            "some crashes cut an unsynced tail"
        );
        assert!(tally.flips_refused_at_open > 0, "some flips are refused");
    }
    assert_nothing_lost(&tally);
}

/// The control, in the default run: the same harness acknowledging at append, before the fsync,
/// finds lost acknowledged records. So the test above can fail.
#[test]
fn control_acknowledging_before_fsync_loses_records() {
    let tally = run_seeds(0..200, AckPolicy::BeforeSync);
    report("power loss control (harness acks at append)", &tally);
    assert!(
        tally.lost > 0,
        "acknowledging before fsync must lose records"
    );
}

/// The control as a build setting: with the storage feature `unsafe-ack-before-fsync`,
/// `SyncWork::run_data` skips its fsyncs, so the server (and this harness) acknowledge what is
/// not durable. Run: `cargo test -p storage --features unsafe-ack-before-fsync --test it powerloss`.
#[cfg(feature = "unsafe-ack-before-fsync")]
#[test]
fn control_build_acknowledging_before_fsync_is_caught() {
    let tally = run_seeds(seeds(), AckPolicy::AfterSync);
    report("power loss with unsafe-ack-before-fsync", &tally);
    assert!(
        tally.lost > 0,
        "the unsafe build must lose acknowledged records"
    );
}

/// The same seeds with the group commit's write-ahead log: small rounds are acknowledged once
/// their frame is fsynced, while their segment writes stay unsynced until a later round or reset.
#[cfg(not(feature = "unsafe-ack-before-fsync"))]
#[test]
fn no_acknowledged_record_is_lost_with_the_write_ahead_log() {
    let tally = run_seeds(seeds(), AckPolicy::AfterWal);
    report("power loss with the write-ahead log", &tally);
    if tally.seeds >= SEEDS_DEFAULT {
        assert!(
            tally.faults.iter().all(|&n| n > 0),
            "every fault is injected"
        );
        assert!(tally.wal_frames > 0 && tally.wal_resets > 0 && tally.wal_pipelined > 0);
        assert!(
            tally.wal_replayed > 0,
            "some crashes lose segment writes only the write-ahead log held"
        );
        assert!(tally.acked_records_checked > 0);
    }
    assert_nothing_lost(&tally);
}

/// The control of the test above: the same rounds, but recovery skips the replay, finds
/// acknowledged records missing. So the write-ahead log is what keeps them.
#[cfg(not(feature = "unsafe-ack-before-fsync"))]
#[test]
fn control_skipping_the_write_ahead_log_replay_loses_records() {
    let tally = run_seeds(0..200, AckPolicy::AfterWalNoReplay);
    report("power loss control (no write-ahead log replay)", &tally);
    assert!(tally.wal_frames > 0);
    assert!(
        tally.lost > 0,
        "without the replay, acknowledged records must be lost"
    );
}
