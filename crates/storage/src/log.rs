//! The partition log: an ordered list of segments, the last one active, storing v2 record batches
//! exactly as the producer sent them, with only the base offset and partition leader epoch (both
//! outside the CRC) rewritten.
//!
//! Durability is explicit. `append` keeps the batches in memory (the request's own bytes, no
//! copy) and does no I/O; the broker takes a [`SyncWork`] under its lock, which writes them and
//! runs the fsyncs outside it (group commit: one fsync covers every append before it), then
//! reports back with `mark_synced`. So no request waits on a file write behind a lock: on ext4 a
//! write can stall for as long as a concurrent journal commit, which showed as 50 ms produce
//! tails. Readers see what was written and synced, which is all a consumer may see anyway (the
//! high watermark). Time comes in as `now_ms` arguments, never from a clock.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tracing::info;
use wire::batch::{assign_base_offset, BatchSpan, Batches, HEADER_BYTES};

use crate::checkpoint::{self, LOG_START_FILE, RECOVERY_POINT_FILE};
use crate::clean::CompactionConfig;
use crate::disk::{Disk, DiskFile, Release, Released};
use crate::error::LogError;
use crate::lazy::LazyFile;
use crate::recovery;
use crate::segment::{
    file_name, write_index_files, BatchMeta, IndexFile, Segment, SegmentRead, Unsynced,
    BATCH_BYTES_MAX, LOG_SUFFIX,
};

/// Largest `segment_bytes`: positions in the offset index are u32, and a segment can exceed
/// `segment_bytes` by one append.
pub const SEGMENT_BYTES_MAX: u64 = i32::MAX as u64;
/// Largest single append (a produce request's records for one partition); with
/// `SEGMENT_BYTES_MAX` it keeps every position below 2^32.
pub const APPEND_BYTES_MAX: usize = 1 << 30;
/// How often, at most, a sync also rewrites the recovery point checkpoint, by default (also on
/// every roll and at close). Recovery re-validates what lies after it, so this bounds how much
/// data recovery reads again; each checkpoint costs two fsyncs (file, directory) beside the
/// group commit's, and those delay the rounds running beside them. Kafka's
/// `log.flush.offset.checkpoint.interval.ms` default, and ferry's since 2026-12-04: at 1 s (4
/// partitions at 10k records/s), the rounds' worst 1 s windows of round-trip p99 were 1.5 to
/// 4.0 ms against 1.2 to 1.9 ms at 60 s, in 7 of 7 paired `ferry bench` runs.
pub const RECOVERY_POINT_INTERVAL_MS: i64 = 60_000;
/// Appends a write-ahead log frame made durable are left in the page cache until this many bytes
/// of the active segment are; then the work that reaches it starts their writeback
/// (`SyncWork::start_writeback`), so the fsync that later syncs the segment in place (a reset, a
/// checkpoint) finds little to write. One writeback per frame cost the broker a tenth of its CPU
/// at 10k records/s (one block-layer submission each, a VM exit on a virtual disk); at 256 KiB,
/// the write-ahead log's resets (which hold it while they sync the segments) took a median
/// 1.2 ms against 0.9 ms at 64 KiB.
pub const WRITEBACK_BYTES_MIN: u64 = 64 * 1024;

/// Per-partition settings, named after Kafka's topic configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// `segment.bytes`: roll when an append would make the active segment larger.
    pub segment_bytes: u64,
    /// `segment.ms`: roll when the active segment's first batch is this old.
    pub segment_ms: i64,
    /// `retention.bytes`: -1 for unlimited.
    pub retention_bytes: i64,
    /// `retention.ms`: -1 for unlimited.
    pub retention_ms: i64,
    /// `index.interval.bytes`: bytes between two offset index entries.
    pub index_interval_bytes: u32,
    /// `log.flush.offset.checkpoint.interval.ms`: how often, at most, the recovery point is
    /// checkpointed (see `RECOVERY_POINT_INTERVAL_MS`).
    pub recovery_point_interval_ms: i64,
    /// `cleanup.policy` with `compact`: the compaction settings; None for `delete` alone.
    pub compaction: Option<CompactionConfig>,
}

impl Default for LogConfig {
    fn default() -> LogConfig {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 60 * 60 * 1000,
            retention_bytes: -1,
            retention_ms: 7 * 24 * 60 * 60 * 1000,
            index_interval_bytes: 4096,
            recovery_point_interval_ms: RECOVERY_POINT_INTERVAL_MS,
            compaction: None,
        }
    }
}

impl LogConfig {
    /// Refuses settings the log cannot work with (the broker checks topic overrides with this
    /// before creating or altering a topic).
    pub fn validate(&self) -> Result<(), LogError> {
        if self.segment_bytes == 0 || self.segment_bytes > SEGMENT_BYTES_MAX {
            return Err(LogError::Config(format!(
                "segment_bytes {} is outside 1..={SEGMENT_BYTES_MAX}",
                self.segment_bytes
            )));
        }
        if self.segment_ms <= 0 {
            return Err(LogError::Config(format!(
                "segment_ms {} must be positive",
                self.segment_ms
            )));
        }
        if self.recovery_point_interval_ms <= 0 {
            return Err(LogError::Config(format!(
                "recovery_point_interval_ms {} must be positive",
                self.recovery_point_interval_ms
            )));
        }
        if let Some(compaction) = &self.compaction {
            let ratio = compaction.min_cleanable_dirty_ratio_ppm;
            if compaction.delete_retention_ms < 0
                || compaction.min_compaction_lag_ms < 0
                || compaction.max_compaction_lag_ms < 1
                || ratio > 1_000_000
            {
                return Err(LogError::Config(format!(
                    "compaction settings out of range: {compaction:?}"
                )));
            }
        }
        if self.retention_bytes < -1 || self.retention_ms < -1 {
            return Err(LogError::Config(
                "retention_bytes and retention_ms must be -1 (unlimited) or more".into(),
            ));
        }
        Ok(())
    }
}

impl PartitionLog {
    /// Applies new settings (a topic's altered configs) from the next append or retention check
    /// on; existing segments are not rewritten.
    pub fn set_config(&mut self, config: LogConfig) -> Result<(), LogError> {
        config.validate()?;
        self.config = config;
        Ok(())
    }
}

/// Where an append landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    pub first_offset: i64,
    pub last_offset: i64,
    /// The base offset assigned to each batch, in order.
    pub batch_base_offsets: Vec<i64>,
    pub log_end_offset: i64,
}

/// A range of a segment file whose writeback a work starts (`SyncWork::start_writeback`).
struct Writeback {
    segment: i64,
    file: Arc<dyn DiskFile>,
    position: u64,
    len: u64,
}

/// Appended batches not yet handed to the OS; the `SyncWork` that makes them durable writes them.
struct PendingWrite {
    /// The base offset of the segment they belong to (which names its file).
    segment: i64,
    file: Arc<dyn DiskFile>,
    position: u64,
    /// Each batch's header with its offset assigned, then the rest of the batch: slices of the
    /// request's buffer, written with one vectored write.
    chunks: Vec<Bytes>,
    len: u64,
}

impl PendingWrite {
    fn end(&self) -> u64 {
        self.position + self.len
    }

    fn write(&self) -> io::Result<()> {
        self.file.write_all_vectored_at(self.position, &self.chunks)
    }

    /// The segment file's path, for an error message only (not built on every append).
    fn path(&self, dir: &Path) -> PathBuf {
        dir.join(file_name(self.segment, LOG_SUFFIX))
    }
}

/// The fsyncs that make the log durable up to `offset`, to run outside the broker's lock.
pub struct SyncWork {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// In append order: a file's writes are contiguous and in position order.
    writes: Vec<PendingWrite>,
    files: Vec<Unsynced>,
    /// The index files of a segment sealed by a roll, written by `run_writes` (outside the
    /// broker's lock) and then synced with `files`.
    index_writes: std::sync::Mutex<Vec<IndexFile>>,
    index_files: std::sync::Mutex<Vec<Unsynced>>,
    /// A log start offset raised by DeleteRecords, checkpointed (durably) after the data fsyncs
    /// and before the removals, so a crash never brings deleted records back into the log.
    log_start: Option<i64>,
    /// The files of segments deleted from the log (retention, DeleteRecords), removed after the
    /// data fsyncs and before the directory's.
    removals: Vec<PathBuf>,
    /// The caller's file work for this log (`PartitionLog::defer`), run after the removals.
    jobs: std::sync::Mutex<Vec<FileJob>>,
    /// Held while work by path is pending (removals, jobs, a checkpoint, appends a write-ahead
    /// log frame names): `PartitionLog::delete` waits for it, so work by path never meets the
    /// files of a partition created again under the same name.
    path_guard: std::sync::Mutex<Option<Arc<()>>>,
    sync_dir: bool,
    /// Taken by `take_append_work`: appends to the active segment and nothing else.
    appends_only: bool,
    /// The range of the active segment whose writeback this work starts once its frame is
    /// durable (`WRITEBACK_BYTES_MIN`): its own appends and those of the works before it.
    writeback: Option<Writeback>,
    /// The recovery point to checkpoint once the fsyncs succeeded.
    recovery_point: Option<i64>,
    offset: i64,
}

impl SyncWork {
    /// The log end offset this work makes durable; pass it to `mark_synced` once `run` succeeds.
    pub fn offset(&self) -> i64 {
        self.offset
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether this work is appends only, to the active segment, a file that exists durably: no
    /// roll, no new file, no deletion, no deferred file work, no checkpoint (it was taken as
    /// `PartitionLog::take_append_work`). Only such work may be made durable by the group
    /// commit's write-ahead log ([`crate::Wal`]) instead of its own fsyncs.
    pub fn only_appends(&self) -> bool {
        self.appends_only
    }

    /// Whether this work changes the shape of the log (a roll, a deletion, deferred file work):
    /// the group commit resets its write-ahead log after it, so no frame names a sealed segment.
    pub fn reshapes(&self) -> bool {
        self.sync_dir
    }

    /// The bytes appended.
    pub fn appended_bytes(&self) -> u64 {
        self.writes.iter().map(|write| write.len).sum()
    }

    /// Starts the writeback of the appended bytes (after a write-ahead log frame made them
    /// durable): the fsync that later syncs the segment in place, in a round or a reset, then
    /// finds them mostly written instead of seconds of appends to write at once.
    pub fn start_writeback(&self) -> io::Result<()> {
        let Some(range) = &self.writeback else {
            return Ok(());
        };
        range
            .file
            .start_writeback(range.position, range.len)
            .map_err(|e| {
                with_context(
                    e,
                    "start writeback",
                    &self.dir.join(file_name(range.segment, LOG_SUFFIX)),
                )
            })
    }

    /// The range of the active segment (position, length) whose writeback `start_writeback`
    /// starts, if this work has one.
    pub fn writeback(&self) -> Option<(u64, u64)> {
        self.writeback
            .as_ref()
            .map(|range| (range.position, range.len))
    }

    /// The write-ahead log has written this work's appends: `PartitionLog::delete` may go on.
    pub(crate) fn release_paths(&self) {
        self.path_guard.lock().expect("no removal panics").take();
    }

    /// The appends, in order: the segment file's name, the file, the position and the bytes.
    pub(crate) fn appends(
        &self,
    ) -> impl Iterator<Item = (String, &Arc<dyn DiskFile>, u64, &[Bytes])> + '_ {
        self.writes.iter().map(|write| {
            (
                file_name(write.segment, LOG_SUFFIX),
                &write.file,
                write.position,
                write.chunks.as_slice(),
            )
        })
    }

    /// Runs the fsyncs: data first, then the directory entries of new segments, then the
    /// recovery point (which covers data this very run synced). An error means the process must
    /// stop: after a failed fsync the kernel may have dropped the dirty pages, so a retry that
    /// succeeds proves nothing.
    pub fn run(&self) -> io::Result<()> {
        self.run_data()?;
        self.run_checkpoint()
    }

    /// The appended bytes' writes, then the fsyncs of data and directory entries: once they
    /// succeeded, everything below `offset` is durable and may be acknowledged
    /// (`mark_data_synced`).
    pub fn run_data(&self) -> io::Result<()> {
        self.run_writes()?;
        self.run_syncs()
    }

    /// The first half of `run_data`: the appended bytes reach the OS (what `acks=1` promises).
    pub fn run_writes(&self) -> io::Result<()> {
        for write in &self.writes {
            write
                .write()
                .map_err(|e| with_context(e, "write segment", &write.path(&self.dir)))?;
        }
        let encoded = std::mem::take(&mut *self.index_writes.lock().expect("no write panics"));
        if !encoded.is_empty() {
            let written =
                write_index_files(self.disk.as_ref(), encoded).map_err(log_error_as_io)?;
            self.index_files
                .lock()
                .expect("no write panics")
                .extend(written);
        }
        Ok(())
    }

    /// The second half of `run_data`, after `run_writes`: the fsyncs.
    pub fn run_syncs(&self) -> io::Result<()> {
        if cfg!(feature = "unsafe-ack-before-fsync") {
            // The deliberately broken control build: report durable without any fsync.
            return Ok(());
        }
        let index_files = self.index_files.lock().expect("no sync panics");
        for (path, file) in self.files.iter().chain(index_files.iter()) {
            file.sync_data()
                .map_err(|e| with_context(e, "sync file", path))?;
        }
        drop(index_files);
        if let Some(offset) = self.log_start {
            checkpoint::write(self.disk.as_ref(), &self.dir, LOG_START_FILE, offset)
                .map_err(log_error_as_io)?;
        }
        remove_all(self.disk.as_ref(), &self.removals)
            .map_err(|(path, error)| with_context(error, "remove", &path))?;
        let jobs = std::mem::take(&mut *self.jobs.lock().expect("no job panics"));
        for job in jobs {
            job(self.disk.as_ref(), &self.dir);
        }
        if self.recovery_point.is_none() {
            self.path_guard.lock().expect("no removal panics").take();
        }
        if self.sync_dir {
            self.disk
                .sync_dir(&self.dir)
                .map_err(|e| with_context(e, "sync directory", &self.dir))?;
        }
        Ok(())
    }

    /// The recovery point `run_checkpoint` writes, if it has one to write; report it with
    /// `mark_checkpointed` once written.
    pub fn checkpoint(&self) -> Option<i64> {
        self.recovery_point
    }

    /// Writes the recovery point (at most once per `recovery_point_interval_ms` per busy log, and
    /// on rolls): a temporary file, its
    /// fsync, a rename and a directory fsync. It only speeds up the next start, so it runs after
    /// `run_data` and off the acknowledgement path, possibly beside the next `SyncWork`'s
    /// `run_data` (the log schedules no second checkpoint until this one is reported).
    pub fn run_checkpoint(&self) -> io::Result<()> {
        if let Some(offset) = self.recovery_point {
            checkpoint::write(self.disk.as_ref(), &self.dir, RECOVERY_POINT_FILE, offset)
                .map_err(log_error_as_io)?;
        }
        // The last work by path: `PartitionLog::delete` may go on.
        self.path_guard.lock().expect("no removal panics").take();
        Ok(())
    }
}

/// Removes the files of deleted segments; one already gone is no error (index files may never
/// have been written).
fn remove_all(disk: &dyn Disk, paths: &[PathBuf]) -> Result<(), (PathBuf, io::Error)> {
    for path in paths {
        match disk.remove_file(path) {
            Err(error) if error.kind() != io::ErrorKind::NotFound => {
                return Err((path.clone(), error));
            }
            _ => {}
        }
    }
    Ok(())
}

/// A `LogError` from work a `SyncWork` runs, as the `io::Error` its callers treat as fatal.
fn log_error_as_io(error: LogError) -> io::Error {
    match error {
        LogError::Io { op, path, source } => with_context(source, op, &path),
        other => io::Error::other(other.to_string()),
    }
}

fn with_context(error: io::Error, op: &str, path: &Path) -> io::Error {
    io::Error::new(error.kind(), format!("{op} {}: {error}", path.display()))
}

/// Where a work's writes end, by segment base offset.
fn written_ends(writes: &[PendingWrite]) -> Vec<(i64, u64)> {
    let mut written: Vec<(i64, u64)> = Vec::new();
    for write in writes {
        match written.last_mut() {
            Some((segment, end)) if *segment == write.segment => *end = write.end(),
            _ => written.push((write.segment, write.end())),
        }
    }
    written
}

/// An outstanding `SyncWork`, until `mark_synced` (or `mark_data_synced`) reports it done.
struct InFlight {
    offset: i64,
    /// Where its writes end, by segment base offset: readable once it is reported.
    written: Vec<(i64, u64)>,
}

/// How long `PartitionLog::delete` waits for a `SyncWork` still removing this log's files before
/// calling it a broken invariant (the group commit runs every work it takes at once).
const REMOVAL_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(60);

pub struct PartitionLog {
    pub(crate) disk: Arc<dyn Disk>,
    pub(crate) dir: PathBuf,
    pub(crate) config: LogConfig,
    /// In offset order, never empty; the last one takes the appends.
    pub(crate) segments: Vec<Segment>,
    pub(crate) log_start_offset: i64,
    /// The latest `now_ms` seen: the log's only notion of time.
    clock_ms: i64,
    /// Appended batches waiting for the next `SyncWork` to write them, in append order.
    pending: Vec<PendingWrite>,
    /// Files written but not yet synced, other than the active segment's log.
    dirty_files: Vec<Unsynced>,
    active_dirty: bool,
    dir_dirty: bool,
    /// The active segment (its base offset) and the position in it below which appends are
    /// synced or their writeback is started by a work taken (`WRITEBACK_BYTES_MIN`).
    written_back: (i64, u64),
    /// The outstanding works, oldest first: one taken by `take_sync_work` (alone), or any
    /// number taken by `take_append_work` (appends only, made durable by write-ahead log frames
    /// whose fsyncs overlap).
    in_flight: std::collections::VecDeque<InFlight>,
    /// The recovery point a `SyncWork` carries whose checkpoint is not reported written yet;
    /// no other is scheduled meanwhile, so two writers never share the temporary file.
    checkpoint_in_flight: Option<i64>,
    pub(crate) synced_offset: i64,
    /// The value in the recovery point checkpoint file.
    pub(crate) recovery_point: i64,
    recovery_point_written_ms: i64,
    /// Set by a roll, so the next sync moves the recovery point past the sealed segment.
    recovery_point_due: bool,
    /// A segment was sealed (or the log opened) since `release_idle_files` last released every
    /// sealed segment's descriptor.
    pub(crate) release_due: bool,
    /// The files of segments deleted from the log, for the next `SyncWork` to remove (outside
    /// the broker's lock: an unlink of a large file can stall, and the directory fsync that
    /// follows is an fsync).
    removals: Vec<PathBuf>,
    /// File work the caller deferred to the next `SyncWork` (`defer`).
    jobs: Vec<FileJob>,
    /// The index files of segments sealed by a roll, for the next `SyncWork` to write.
    index_writes: Vec<IndexFile>,
    /// A log start offset raised by `delete_records_before`, for the next `SyncWork` to
    /// checkpoint.
    log_start_due: Option<i64>,
    /// Cloned into each `SyncWork` that removes files or runs jobs, until it has: see
    /// `PartitionLog::delete`.
    path_guard: Arc<()>,
    /// The cleaner checkpoint: compaction cleaned the segments below it (`crate::clean`).
    pub(crate) cleaned_offset: i64,
    /// The compacted checkpoint: segments ending at or below it may have offset gaps.
    pub(crate) compacted_offset: i64,
    /// A cleaning was planned and not yet installed.
    pub(crate) cleaning: bool,
}

/// File work deferred to a log's next `SyncWork` (`PartitionLog::defer`), run outside the
/// broker's lock with the disk and the log's directory. It handles its own errors: what must
/// stop the process is not deferred.
pub type FileJob = Box<dyn FnOnce(&dyn Disk, &Path) + Send + Sync>;

impl PartitionLog {
    /// Opens the partition directory `dir`, creating it (and making its name durable) or
    /// recovering what it holds. Recovery errors, corruption above all, mean the broker must not
    /// start on this directory.
    pub fn open(
        disk: Arc<dyn Disk>,
        dir: &Path,
        config: LogConfig,
        now_ms: i64,
    ) -> Result<PartitionLog, LogError> {
        config.validate()?;
        disk.create_dir_all(dir)
            .map_err(LogError::io("create directory", dir))?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            disk.sync_dir(parent)
                .map_err(LogError::io("sync directory", parent))?;
        }
        let mut recovered =
            recovery::recover(disk.as_ref(), dir, config.index_interval_bytes, now_ms)?;
        for segment in &mut recovered.segments {
            segment.written_bytes = segment.size_bytes;
        }
        let log_end_offset = recovered
            .segments
            .last()
            .expect("recovery yields a segment")
            .next_offset;
        info!(
            dir = %dir.display(),
            log_start_offset = recovered.log_start_offset,
            log_end_offset,
            segments = recovered.segments.len(),
            "opened partition log"
        );
        let mut log = PartitionLog {
            disk,
            dir: dir.to_path_buf(),
            config,
            segments: recovered.segments,
            log_start_offset: recovered.log_start_offset,
            clock_ms: now_ms,
            pending: Vec::new(),
            dirty_files: Vec::new(),
            active_dirty: false,
            dir_dirty: false,
            written_back: (i64::MIN, 0),
            in_flight: std::collections::VecDeque::new(),
            checkpoint_in_flight: None,
            synced_offset: log_end_offset,
            recovery_point: log_end_offset,
            recovery_point_written_ms: now_ms,
            recovery_point_due: false,
            release_due: true,
            removals: Vec::new(),
            jobs: Vec::new(),
            index_writes: Vec::new(),
            log_start_due: None,
            path_guard: Arc::new(()),
            cleaned_offset: recovered.cleaned_offset,
            compacted_offset: recovered.compacted_offset,
            cleaning: false,
        };
        // Recovery synced everything it read: the sealed segments hold no descriptor from now
        // (closed here: opening is not done under the broker's lock).
        drop(log.release_idle_files(false));
        Ok(log)
    }

    /// Closes the descriptors and drops the mappings of the sealed segments whose data is synced
    /// and no sync work holds (they are opened and mapped again on their next read), so a
    /// partition holds one descriptor and at most one mapping, its active segment's, however
    /// many segments it has. The broker calls it at open and from its
    /// housekeeping. It looks at the segments only when one was sealed since it last released
    /// them all, or when `reopened` says a released descriptor was opened again meanwhile (a read
    /// of an old segment, anywhere: see `storage::reopened_descriptors`). The descriptors taken
    /// are returned with the mappings, for the caller to close and unmap where that may wait
    /// (not under its lock).
    #[must_use = "dropping the descriptors closes them: do it outside the caller's lock"]
    pub fn release_idle_files(&mut self, reopened: bool) -> Vec<Released> {
        let mut released = Vec::new();
        if !self.in_flight.is_empty() || !(self.release_due || reopened) {
            return released;
        }
        let sealed = self.segments.len() - 1;
        let mut kept = false;
        for segment in &self.segments[..sealed] {
            let synced = segment.next_offset <= self.synced_offset;
            let dirty = self
                .dirty_files
                .iter()
                .any(|(path, _)| *path == segment.log_path);
            if !synced || dirty {
                kept = true;
                continue;
            }
            match segment.log.release() {
                Release::Taken(taken) => released.push(taken),
                Release::Nothing => {}
                // A read holds its mapping: the next call tries again.
                Release::InUse => kept = true,
            }
        }
        self.release_due = kept;
        released
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset
    }

    /// Bytes of all `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The offset below which every batch is known durable.
    pub fn synced_offset(&self) -> i64 {
        self.synced_offset
    }

    fn active(&self) -> &Segment {
        self.segments.last().expect("a log has an active segment")
    }

    /// Appends one or more v2 batches packed back to back, already validated by the broker,
    /// assigning them consecutive offsets from the log end. The buffer is kept, not copied: only
    /// each batch's header is, to carry its offset (outside the CRC). The bytes reach the OS, in
    /// one vectored write, and the disk when the next `SyncWork` runs.
    pub fn append(&mut self, batches: Bytes, now_ms: i64) -> Result<AppendInfo, LogError> {
        self.clock_ms = self.clock_ms.max(now_ms);
        if batches.is_empty() || batches.len() > APPEND_BYTES_MAX {
            return Err(LogError::AppendSize {
                bytes: batches.len(),
                limit: APPEND_BYTES_MAX,
            });
        }
        let incoming = check_incoming(&batches)?;
        let offset_count: i64 = incoming
            .iter()
            .map(|b| b.last_offset_delta as i64 + 1)
            .sum();
        if self.should_roll(batches.len() as u64, offset_count, now_ms) {
            self.roll()?;
        }
        let first_offset = self.log_end_offset();
        let mut batch_base_offsets = Vec::with_capacity(incoming.len());
        let mut headers = BytesMut::with_capacity(incoming.len() * HEADER_BYTES);
        let mut next_offset = first_offset;
        for batch in &incoming {
            let header = headers.len();
            headers.extend_from_slice(&batches[batch.position..batch.position + HEADER_BYTES]);
            assign_base_offset(&mut headers[header..], next_offset, 0);
            batch_base_offsets.push(next_offset);
            next_offset += batch.last_offset_delta as i64 + 1;
        }
        assert_eq!(
            incoming.iter().map(|b| b.total_bytes).sum::<usize>(),
            batches.len(),
            "the batches fill the append"
        );
        let headers = headers.freeze();
        let mut chunks = Vec::with_capacity(incoming.len() * 2);
        for (i, batch) in incoming.iter().enumerate() {
            chunks.push(headers.slice(i * HEADER_BYTES..(i + 1) * HEADER_BYTES));
            let body = batch.position + HEADER_BYTES..batch.position + batch.total_bytes;
            if !body.is_empty() {
                chunks.push(batches.slice(body));
            }
        }
        assert_ready_to_write(&headers, &incoming, first_offset);
        let active = self
            .segments
            .last_mut()
            .expect("a log has an active segment");
        let position = active.size_bytes;
        self.pending.push(PendingWrite {
            segment: active.base_offset,
            file: active.log.clone(),
            position,
            chunks,
            len: batches.len() as u64,
        });
        for (batch, &base_offset) in incoming.iter().zip(&batch_base_offsets) {
            let meta = BatchMeta {
                position: position + batch.position as u64,
                base_offset,
                last_offset: base_offset + batch.last_offset_delta as i64,
                max_timestamp_ms: batch.max_timestamp_ms,
                total_bytes: batch.total_bytes as u64,
            };
            active.record(meta, self.config.index_interval_bytes);
        }
        active.roll_base_ms.get_or_insert(now_ms);
        self.active_dirty = true;
        Ok(AppendInfo {
            first_offset,
            last_offset: next_offset - 1,
            batch_base_offsets,
            log_end_offset: next_offset,
        })
    }

    fn should_roll(&self, bytes: u64, offset_count: i64, now_ms: i64) -> bool {
        let active = self.active();
        if active.is_empty() {
            return false;
        }
        let too_big = active.size_bytes + bytes > self.config.segment_bytes;
        let too_old = active
            .roll_base_ms
            .is_some_and(|base_ms| now_ms - base_ms >= self.config.segment_ms);
        // Relative offsets in the indexes are u32.
        let too_many_offsets =
            active.next_offset + offset_count - 1 - active.base_offset > u32::MAX as i64;
        too_big || too_old || too_many_offsets
    }

    /// Seals the active segment (its index files written, to be synced with the next sync) and
    /// starts a new one at the log end.
    fn roll(&mut self) -> Result<(), LogError> {
        let base_offset = self.log_end_offset();
        let active = self
            .segments
            .last_mut()
            .expect("a log has an active segment");
        // No file I/O here (this runs in `append`, under the broker's lock): the sealed
        // segment's indexes are encoded for the next `SyncWork` to write, and the new segment's
        // file is created by its first write, in a `SyncWork` too.
        self.index_writes.extend(active.seal_indexes());
        if std::mem::take(&mut self.active_dirty) {
            self.dirty_files
                .push((active.log_path.clone(), active.log.clone()));
        }
        let path = self.dir.join(file_name(base_offset, LOG_SUFFIX));
        let file: Arc<dyn DiskFile> = Arc::new(LazyFile::new(self.disk.clone(), &path));
        let segment = Segment::new(&self.dir, base_offset, file);
        info!(path = %segment.log_path.display(), "rolled to a new segment");
        self.segments.push(segment);
        self.release_due = true;
        self.dir_dirty = true;
        self.recovery_point_due = true;
        Ok(())
    }

    fn check_range(&self, offset: i64) -> Result<(), LogError> {
        if offset < self.log_start_offset || offset > self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        Ok(())
    }

    /// The stored bytes of the whole batches from the one holding `start_offset`, within
    /// `max_bytes` except that the first batch is always whole (KIP-74), and none whose base
    /// offset is at or above `end_offset_exclusive` (the high watermark or last stable offset).
    /// Every batch is verified before it is returned; damage is `LogError::Corrupt`, never served.
    pub fn read(
        &self,
        start_offset: i64,
        max_bytes: usize,
        end_offset_exclusive: i64,
    ) -> Result<Vec<u8>, LogError> {
        self.check_range(start_offset)?;
        let mut out = Vec::new();
        if start_offset == self.log_end_offset() {
            return Ok(out);
        }
        let first = self.segment_index(start_offset);
        for (i, segment) in self.segments[first..].iter().enumerate() {
            if segment.base_offset >= end_offset_exclusive {
                break;
            }
            let read = segment.plan_read(start_offset, end_offset_exclusive);
            let position = if i == 0 {
                match read.position()? {
                    Some(position) => position,
                    None => continue,
                }
            } else {
                0
            };
            let (batches, stopped) = read.batches(
                position,
                max_bytes.saturating_sub(out.len()),
                out.is_empty(),
            )?;
            out.extend_from_slice(&batches);
            if stopped {
                break;
            }
        }
        Ok(out)
    }

    /// A read of the batches from the one holding `start_offset`, none at or above
    /// `end_offset_exclusive`, planned without I/O and run later, outside the broker lock
    /// ([`SegmentRead::run`]). It covers one segment, as Kafka's reads do: the segment holding
    /// the first batch to serve. None when nothing below the end is there to read.
    pub fn plan_read(
        &self,
        start_offset: i64,
        end_offset_exclusive: i64,
    ) -> Result<Option<SegmentRead>, LogError> {
        self.check_range(start_offset)?;
        if start_offset >= end_offset_exclusive {
            return Ok(None);
        }
        let first = self.segment_index(start_offset);
        Ok(self.segments[first..]
            .iter()
            .take_while(|segment| segment.base_offset < end_offset_exclusive)
            .find(|segment| segment.data_end_offset > start_offset && segment.written_bytes > 0)
            .map(|segment| segment.plan_read(start_offset, end_offset_exclusive)))
    }

    /// The index of the segment whose offsets would hold `offset` (at or after the first one).
    fn segment_index(&self, offset: i64) -> usize {
        self.segments
            .partition_point(|s| s.base_offset <= offset)
            .saturating_sub(1)
    }

    /// The largest timestamp of the records from the log start on (batch max timestamps), None
    /// when none carries one.
    pub fn max_timestamp(&self) -> Option<i64> {
        self.segments
            .iter()
            .filter(|segment| segment.next_offset > self.log_start_offset)
            .map(|segment| segment.max_timestamp_ms)
            .max()
            .filter(|&max| max >= 0)
    }

    /// The first batch whose max timestamp is at or after `timestamp_ms`: its base offset (at
    /// least the log start offset) and that max timestamp. Batch granularity, as the log never
    /// decodes records.
    pub fn offset_for_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>, LogError> {
        self.plan_offset_for_timestamp(timestamp_ms).run()
    }

    /// [`PartitionLog::offset_for_timestamp`] planned without I/O, to run outside the broker
    /// lock: the scans of the segments that may hold the timestamp, in offset order.
    pub fn plan_offset_for_timestamp(&self, timestamp_ms: i64) -> TimestampLookup {
        let scans = self
            .segments
            .iter()
            .filter(|segment| {
                segment.next_offset > self.log_start_offset
                    && segment.max_timestamp_ms >= timestamp_ms
            })
            .map(|segment| segment.plan_timestamp(timestamp_ms, self.log_start_offset))
            .collect();
        TimestampLookup { scans }
    }

    /// Raises the log start offset to `offset` (DeleteRecords) and deletes the segments wholly
    /// below it; the next `SyncWork` makes it durable (the checkpoint, then the files' removal).
    /// Returns the new log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64, LogError> {
        if offset < 0 || offset > self.log_end_offset() {
            return Err(LogError::OffsetOutOfRange {
                offset,
                log_start: self.log_start_offset,
                log_end: self.log_end_offset(),
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        // Checkpointed by the next `SyncWork`, outside the broker's lock, before it removes the
        // segments deleted here; the broker answers once that round is done.
        self.log_start_due = Some(offset);
        self.dir_dirty = true;
        self.log_start_offset = offset;
        let count = self.segments[..self.segments.len() - 1]
            .iter()
            .zip(&self.segments[1..])
            .take_while(|(_, next)| next.base_offset <= offset)
            .count();
        self.delete_oldest(count)?;
        Ok(self.log_start_offset)
    }

    /// Deletes the oldest segments whose newest batch is older than `retention_ms`, then those
    /// that `retention_bytes` does not need (as in Kafka, a segment goes only if the rest still
    /// holds `retention_bytes`). Never deletes the active segment, nor one holding offsets not yet
    /// synced (a consumer may not have been allowed to read them). Returns how many were deleted.
    /// A segment whose batches carry no valid timestamp (all -1) is as old as its file's
    /// last-modified time, as in Kafka; otherwise it would never expire and would keep every
    /// later segment too.
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<usize, LogError> {
        self.clock_ms = self.clock_ms.max(now_ms);
        let deletable = self.segments[..self.segments.len() - 1]
            .iter()
            .take_while(|s| s.next_offset <= self.synced_offset)
            .count();
        let mut count = 0;
        if self.config.retention_ms >= 0 {
            for segment in &self.segments[..deletable] {
                if now_ms - segment_time_ms(segment)? <= self.config.retention_ms {
                    break;
                }
                count += 1;
            }
        }
        if self.config.retention_bytes >= 0 {
            let mut size = self.size_bytes()
                - self.segments[..count]
                    .iter()
                    .map(|s| s.size_bytes)
                    .sum::<u64>();
            while count < deletable
                && size - self.segments[count].size_bytes >= self.config.retention_bytes as u64
            {
                size -= self.segments[count].size_bytes;
                count += 1;
            }
        }
        self.delete_oldest(count)?;
        Ok(count)
    }

    fn delete_oldest(&mut self, count: usize) -> Result<(), LogError> {
        assert!(
            count < self.segments.len(),
            "the active segment is never deleted"
        );
        if count == 0 {
            return Ok(());
        }
        for segment in self.segments.drain(..count) {
            info!(path = %segment.log_path.display(), "deleting segment");
            self.removals.extend(segment.file_paths());
        }
        self.log_start_offset = self.log_start_offset.max(self.segments[0].base_offset);
        // The next `SyncWork` removes the files, then syncs the directory: not needed for
        // safety (a segment resurrected by a crash before it is deleted again) but it keeps the
        // log start offset from moving back after a crash.
        self.dir_dirty = true;
        Ok(())
    }

    /// The fsyncs needed to make everything appended so far durable, or None when there is
    /// nothing to do or a previous `SyncWork` has not been reported by `mark_synced` yet: one
    /// outstanding sync per log, the appends made meanwhile form the next group. Appends only
    /// are taken as by `take_append_work`.
    pub fn take_sync_work(&mut self) -> Option<SyncWork> {
        if !self.in_flight.is_empty() {
            return None;
        }
        if self.can_take_appends() {
            return self.take_append_work();
        }
        let mut files = std::mem::take(&mut self.dirty_files);
        if std::mem::take(&mut self.active_dirty) {
            let active = self.active();
            files.push((active.log_path.clone(), active.log.clone()));
        }
        let sync_dir = std::mem::take(&mut self.dir_dirty);
        let removals = std::mem::take(&mut self.removals);
        let jobs = std::mem::take(&mut self.jobs);
        let index_writes = std::mem::take(&mut self.index_writes);
        let log_start = self.log_start_due.take();
        let offset = self.log_end_offset();
        let writes = std::mem::take(&mut self.pending);
        let written = written_ends(&writes);
        // With no other sync outstanding, everything below `offset` is synced already or by this
        // work, so the checkpoint it writes after its fsyncs is true.
        let recovery_point = self.checkpoint_due(offset);
        if files.is_empty() && !sync_dir && recovery_point.is_none() {
            assert!(writes.is_empty(), "appended bytes mark their file dirty");
            assert!(removals.is_empty(), "a deletion marks the directory dirty");
            assert!(jobs.is_empty(), "a deferred job marks the directory dirty");
            assert!(index_writes.is_empty(), "a roll marks the directory dirty");
            assert!(log_start.is_none(), "a deletion marks the directory dirty");
            return None;
        }
        if recovery_point.is_some() {
            self.recovery_point_due = false;
            self.recovery_point_written_ms = self.clock_ms;
            self.checkpoint_in_flight = recovery_point;
        }
        self.in_flight.push_back(InFlight { offset, written });
        // Every work holds the guard until its files are done with: removals and jobs work by
        // path, a checkpoint is written by path after the round (so a partition deleted and
        // created again meanwhile never gets the old one's), and appends the write-ahead log
        // takes are named by path in its frame (the work drops the guard once it is written).
        let path_guard = Some(self.path_guard.clone());
        Some(SyncWork {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            writes,
            files,
            index_writes: std::sync::Mutex::new(index_writes),
            index_files: std::sync::Mutex::new(Vec::new()),
            log_start,
            removals,
            jobs: std::sync::Mutex::new(jobs),
            path_guard: std::sync::Mutex::new(path_guard),
            sync_dir,
            appends_only: false,
            writeback: None,
            recovery_point,
            offset,
        })
    }

    /// The recovery point a work taken now would checkpoint, if one is due.
    fn checkpoint_due(&self, offset: i64) -> Option<i64> {
        let due = self.recovery_point_due
            || self.clock_ms - self.recovery_point_written_ms
                >= self.config.recovery_point_interval_ms;
        (due && offset > self.recovery_point && self.checkpoint_in_flight.is_none())
            .then_some(offset)
    }

    /// Whether `take_sync_work` would find something to do once no work is outstanding.
    pub fn sync_due(&self) -> bool {
        self.active_dirty
            || !self.dirty_files.is_empty()
            || self.dir_dirty
            || self.checkpoint_due(self.log_end_offset()).is_some()
    }

    /// The bytes appended since the last work was taken.
    pub fn pending_bytes(&self) -> u64 {
        self.pending.iter().map(|write| write.len).sum()
    }

    /// Whether everything to sync is appends to the active segment (no roll, no new file, no
    /// deletion, no deferred job, no checkpoint due): what `take_append_work` takes.
    pub fn can_take_appends(&self) -> bool {
        !self.pending.is_empty()
            && self.dirty_files.is_empty()
            && !self.dir_dirty
            && self.removals.is_empty()
            && self.jobs.is_empty()
            && self.index_writes.is_empty()
            && self.log_start_due.is_none()
            && self.checkpoint_due(self.log_end_offset()).is_none()
    }

    /// The appends since the last work, as a work of appends only, even while earlier works are
    /// outstanding (their writes were taken, so these follow them in the file): for the group
    /// commit's write-ahead log, whose frames' fsyncs may overlap. None unless
    /// `can_take_appends`. Report it with `mark_data_synced`, in the order taken.
    pub fn take_append_work(&mut self) -> Option<SyncWork> {
        if !self.can_take_appends() {
            return None;
        }
        assert!(
            self.active_dirty,
            "appended bytes mark the active segment dirty"
        );
        self.active_dirty = false;
        let active = self.active();
        let files = vec![(active.log_path.clone(), active.log.clone())];
        let writes = std::mem::take(&mut self.pending);
        let writeback = self.writeback_due(&writes);
        let offset = self.log_end_offset();
        self.in_flight.push_back(InFlight {
            offset,
            written: written_ends(&writes),
        });
        Some(SyncWork {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            writes,
            files,
            index_writes: std::sync::Mutex::new(Vec::new()),
            index_files: std::sync::Mutex::new(Vec::new()),
            log_start: None,
            removals: Vec::new(),
            jobs: std::sync::Mutex::new(Vec::new()),
            path_guard: std::sync::Mutex::new(Some(self.path_guard.clone())),
            sync_dir: false,
            appends_only: true,
            writeback,
            recovery_point: None,
            offset,
        })
    }

    /// The writeback an appends-only work of `writes` (to the active segment) starts, if the
    /// active segment's appends not yet written back reach `WRITEBACK_BYTES_MIN` with them.
    fn writeback_due(&mut self, writes: &[PendingWrite]) -> Option<Writeback> {
        let (first, last) = (writes.first()?, writes.last()?);
        assert_eq!(first.segment, last.segment, "appends only: one segment");
        if self.written_back.0 != first.segment {
            // A new active segment: what it held before these appends was synced in place.
            self.written_back = (first.segment, first.position);
        }
        let from = self.written_back.1;
        assert!(from <= first.position, "writeback stays below the appends");
        if last.end() - from < WRITEBACK_BYTES_MIN {
            return None;
        }
        self.written_back.1 = last.end();
        Some(Writeback {
            segment: first.segment,
            file: first.file.clone(),
            position: from,
            len: last.end() - from,
        })
    }

    /// Defers file work (a producer snapshot, say) to the log's next `SyncWork`, so it runs
    /// outside the broker's lock, after that work's removals and before its directory fsync (or
    /// at `close`). The caller must make sure a sync round comes (the broker notes the log).
    pub fn defer(&mut self, job: FileJob) {
        self.jobs.push(job);
        self.dir_dirty = true;
    }

    /// Runs the deferred file work now (segment files removed, jobs run), for a caller that
    /// closes the log and has work of its own to order after it.
    pub fn run_deferred_files(&mut self) -> Result<(), LogError> {
        if let Some(offset) = self.log_start_due.take() {
            checkpoint::write(self.disk.as_ref(), &self.dir, LOG_START_FILE, offset)?;
        }
        remove_all(self.disk.as_ref(), &std::mem::take(&mut self.removals))
            .map_err(|(path, error)| LogError::io("remove", &path)(error))?;
        for job in std::mem::take(&mut self.jobs) {
            job(self.disk.as_ref(), &self.dir);
        }
        Ok(())
    }

    /// Whether file work waits for the next `SyncWork` (segment files to remove, deferred jobs,
    /// a log start offset to checkpoint): the broker then notes the log so that a round comes.
    pub fn has_deferred_files(&self) -> bool {
        !self.removals.is_empty() || !self.jobs.is_empty() || self.log_start_due.is_some()
    }

    /// Whether the log is quiet with synced data past its recovery point and a checkpoint is
    /// due (`recovery_point_interval_ms` since the last one, by `now_ms`). A log gets
    /// checkpoints only from `take_sync_work`, which the broker calls for logs appended to since
    /// the last round; the broker's one-second tick asks this of every log and, for those that
    /// answer yes, runs a checkpoint-only round, so the recovery point of a log that went quiet
    /// catches up with its data within about a second (recovery validates everything past it).
    pub fn wants_trailing_checkpoint(&mut self, now_ms: i64) -> bool {
        self.clock_ms = self.clock_ms.max(now_ms);
        self.in_flight.is_empty()
            && self.checkpoint_in_flight.is_none()
            && self.synced_offset == self.log_end_offset()
            && self.synced_offset > self.recovery_point
            && self.clock_ms - self.recovery_point_written_ms
                >= self.config.recovery_point_interval_ms
    }

    /// The offset below which recovery trusts the log without validating it (as last written
    /// to the recovery-point checkpoint).
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Reports that a `SyncWork` ran successfully, its checkpoint included: everything below
    /// `offset` is durable.
    pub fn mark_synced(&mut self, offset: i64) {
        self.mark_data_synced(offset);
        if let Some(recovery_point) = self.checkpoint_in_flight.filter(|&at| at <= offset) {
            self.mark_checkpointed(recovery_point);
        }
    }

    /// Reports that a `SyncWork`'s `run_data` succeeded: everything below `offset` is durable
    /// and the next `SyncWork` may be taken, while its checkpoint may still be running.
    pub fn mark_data_synced(&mut self, offset: i64) {
        assert!(
            offset <= self.log_end_offset(),
            "synced offset {offset} beyond the log end"
        );
        self.synced_offset = self.synced_offset.max(offset);
        while self.in_flight.front().is_some_and(|w| offset >= w.offset) {
            let done = self.in_flight.pop_front().expect("a front work");
            for (base_offset, end) in done.written {
                // A segment deleted meanwhile (DeleteRecords) is simply gone.
                if let Some(segment) = self
                    .segments
                    .iter_mut()
                    .find(|s| s.base_offset == base_offset)
                {
                    assert!(end <= segment.size_bytes, "written past the segment's end");
                    segment.written_bytes = segment.written_bytes.max(end);
                }
            }
        }
    }

    /// The offset the oldest outstanding `SyncWork` makes durable, if one was taken and not
    /// reported.
    pub fn sync_in_flight(&self) -> Option<i64> {
        self.in_flight.front().map(|w| w.offset)
    }

    /// Whether an outstanding `SyncWork` makes the log durable up to `offset`.
    pub fn syncs_in_flight(&self, offset: i64) -> bool {
        self.in_flight.iter().any(|w| w.offset == offset)
    }

    /// The recovery point of the outstanding checkpoint, if one is scheduled.
    pub fn checkpoint_in_flight(&self) -> Option<i64> {
        self.checkpoint_in_flight
    }

    /// Reports that a `SyncWork`'s `run_checkpoint` wrote `recovery_point`.
    pub fn mark_checkpointed(&mut self, recovery_point: i64) {
        assert_eq!(
            self.checkpoint_in_flight,
            Some(recovery_point),
            "only the scheduled checkpoint is reported"
        );
        assert!(
            recovery_point <= self.synced_offset,
            "a recovery point covers synced data only"
        );
        self.checkpoint_in_flight = None;
        self.recovery_point = self.recovery_point.max(recovery_point);
    }

    /// Closes the log cleanly: writes the active segment's index files, syncs everything and
    /// moves the recovery point to the log end, so the next open validates only the last segment.
    pub fn close(mut self) -> Result<(), LogError> {
        assert!(
            self.checkpoint_in_flight.is_none(),
            "a log closes after its outstanding checkpoint was reported"
        );
        assert!(
            self.in_flight.is_empty(),
            "a log closes after its outstanding sync was reported (its writes are in it)"
        );
        for write in std::mem::take(&mut self.pending) {
            write
                .write()
                .map_err(|e| LogError::io("write segment", &write.path(&self.dir))(e))?;
        }
        let active = self
            .segments
            .last_mut()
            .expect("a log has an active segment");
        let mut files = active.write_indexes(self.disk.as_ref())?;
        files.push((active.log_path.clone(), active.log.clone()));
        files.extend(write_index_files(
            self.disk.as_ref(),
            std::mem::take(&mut self.index_writes),
        )?);
        files.append(&mut self.dirty_files);
        for (path, file) in files {
            file.sync_data().map_err(LogError::io("sync file", &path))?;
        }
        self.run_deferred_files()?;
        self.disk
            .sync_dir(&self.dir)
            .map_err(LogError::io("sync directory", &self.dir))?;
        let log_end_offset = self.log_end_offset();
        if log_end_offset != self.recovery_point {
            checkpoint::write(
                self.disk.as_ref(),
                &self.dir,
                RECOVERY_POINT_FILE,
                log_end_offset,
            )?;
        }
        Ok(())
    }

    /// Removes the partition directory and everything in it (topic deletion).
    pub fn delete(self) -> Result<(), LogError> {
        // A `SyncWork` taken before still removes files by path: let it finish before a
        // partition of the same name can be created here again (it runs without the broker's
        // lock, so waiting for it under the lock cannot deadlock; it takes a few milliseconds).
        let waited = std::time::Instant::now();
        while Arc::strong_count(&self.path_guard) > 1 {
            assert!(
                waited.elapsed() < REMOVAL_WAIT_MAX,
                "a SyncWork of {} holds segment removals and never ran",
                self.dir.display()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.disk
            .remove_dir_all(&self.dir)
            .map_err(LogError::io("remove directory", &self.dir))?;
        if let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            self.disk
                .sync_dir(parent)
                .map_err(LogError::io("sync directory", parent))?;
        }
        Ok(())
    }

    /// Whether the partition directory `dir` never held a record, judged from its file names
    /// and sizes alone, without opening it as a log (which could write): no segment but an empty
    /// first one (base offset 0), and no log start offset raised by DeleteRecords. Such a
    /// directory is what a crash leaves when it interrupts a partition's creation; one that ever
    /// held a record carries offsets (at least in its segment names) that must not be lost.
    pub fn never_held_records(disk: &dyn Disk, dir: &Path) -> Result<bool, LogError> {
        let first_segment = file_name(0, LOG_SUFFIX);
        for name in disk
            .list_dir(dir)
            .map_err(LogError::io("list directory", dir))?
        {
            if name == LOG_START_FILE {
                return Ok(false);
            }
            if !name.ends_with(LOG_SUFFIX) {
                continue;
            }
            if name != first_segment {
                return Ok(false);
            }
            let path = dir.join(&name);
            let len = disk
                .open(&path, false)
                .and_then(|file| file.len())
                .map_err(LogError::io("read size of segment", &path))?;
            if len > 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// The time retention ages a segment by: its newest batch's timestamp or, when no batch
/// carries a valid one, the `.log` file's last-modified time (Kafka's `largestTimestamp`).
pub(crate) fn segment_time_ms(segment: &Segment) -> Result<i64, LogError> {
    if segment.max_timestamp_ms >= 0 {
        return Ok(segment.max_timestamp_ms);
    }
    let modified = segment.log.modified().map_err(LogError::io(
        "read modified time of segment",
        &segment.log_path,
    ))?;
    // A time before 1970 is as old as 1970; one beyond i64 milliseconds is far in the future.
    Ok(match modified.duration_since(std::time::UNIX_EPOCH) {
        Ok(age) => i64::try_from(age.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    })
}

/// What `append` needs of an incoming batch.
struct Incoming {
    position: usize,
    total_bytes: usize,
    last_offset_delta: i32,
    max_timestamp_ms: i64,
}

/// Parses and validates the incoming batches. The broker validated them already; bytes from the
/// network are checked again here rather than trusted, at the price of one more CRC pass.
fn check_incoming(batches: &[u8]) -> Result<Vec<Incoming>, LogError> {
    let mut incoming = Vec::new();
    for (index, batch) in Batches::new(batches).enumerate() {
        let (position, view) = batch.map_err(|source| LogError::InvalidBatch { index, source })?;
        view.validate()
            .map_err(|source| LogError::InvalidBatch { index, source })?;
        if view.total_bytes() > BATCH_BYTES_MAX {
            return Err(LogError::BatchTooLarge {
                index,
                bytes: view.total_bytes(),
                limit: BATCH_BYTES_MAX,
            });
        }
        incoming.push(Incoming {
            position,
            total_bytes: view.total_bytes(),
            last_offset_delta: view.last_offset_delta(),
            max_timestamp_ms: view.max_timestamp(),
        });
    }
    Ok(incoming)
}

/// The pair of the checks made when reading back: each header to be written says the offsets
/// that continue the log, and the header and body come from the same batch. A failure is a bug,
/// so it stops.
fn assert_ready_to_write(headers: &[u8], incoming: &[Incoming], first_offset: i64) {
    let mut expected = first_offset;
    for (header, batch) in headers.chunks_exact(HEADER_BYTES).zip(incoming) {
        let span = BatchSpan::parse(header).expect("headers parsed before offsets were assigned");
        assert_eq!(
            span.base_offset, expected,
            "batch offsets must continue the log"
        );
        assert_eq!(
            span.total_bytes, batch.total_bytes,
            "header and body are one batch"
        );
        expected = span.last_offset + 1;
    }
    assert_eq!(
        headers.len(),
        incoming.len() * HEADER_BYTES,
        "every batch is written"
    );
}

/// A timestamp lookup planned under the broker lock ([`PartitionLog::plan_offset_for_timestamp`])
/// and run outside it.
pub struct TimestampLookup {
    scans: Vec<crate::segment::TimestampScan>,
}

impl TimestampLookup {
    /// The first record at or after the timestamp: (offset, timestamp), None past the log. A
    /// segment deleted since the plan (retention, DeleteRecords) holds nothing for it any more:
    /// the search goes on in the next one.
    pub fn run(&self) -> Result<Option<(i64, i64)>, LogError> {
        for scan in &self.scans {
            match scan.run() {
                Ok(Some(found)) => return Ok(Some(found)),
                Ok(None) => {}
                Err(LogError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(None)
    }
}
