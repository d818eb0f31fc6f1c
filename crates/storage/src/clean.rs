//! Log compaction (`cleanup.policy=compact`): keep at least the last record of every key, at its
//! original offset, and drop the records a later one with the same key supersedes.
//!
//! One cleaning has three steps, so that only the first and last hold the broker's lock:
//! - [`PartitionLog::plan_clean`] (under the lock, no I/O) picks the cleanable segments: sealed,
//!   below the recovery point (so recovery trusts them), below the caller's end (the last stable
//!   offset) and older than `min.compaction.lag.ms`; it runs when the dirty part (the segments
//!   after the cleaner checkpoint) is at least `min.cleanable.dirty.ratio` of them, or when a
//!   dirty segment is older than `max.compaction.lag.ms`.
//! - [`CleanJob::run`] (anywhere, I/O only on files nobody writes) maps every key of the dirty
//!   segments to its last offset, then writes each cleanable segment again as `<name>.cleaned`
//!   with the records that are the last of their key (and tombstones younger than
//!   `delete.retention.ms`), and syncs those files; then it raises the compacted checkpoint
//!   (recovery accepts offset gaps below it), removes the segments' index files and syncs the
//!   directory.
//! - [`PartitionLog::install_clean`] (under the lock, no fsync) checks that the segments are
//!   still the ones it read, renames each `.cleaned` file over its segment and swaps the
//!   segments in memory; the log's next `SyncWork` then syncs the directory, writes the new index
//!   files, and last the cleaner checkpoint (the end of the clean part; what follows is dirty).
//!
//! A crash before the compacted checkpoint leaves `.cleaned` files, which recovery removes;
//! after it, each segment is the old file or the new one, both valid below that checkpoint, and
//! until the cleaner checkpoint is written they count as dirty, so the next cleaning maps them
//! again.
//!
//! What is kept as it was: control batches (transaction markers), the data of aborted
//! transactions (read_committed consumers skip it as before; its keys supersede nothing), and a
//! batch's header (see `wire::retain`). A batch left with no record goes, unless it is its
//! producer's last batch, which stays empty so the producer's sequence survives a restart (as in
//! Kafka). A record without a key is dropped, as Kafka's cleaner drops it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use tracing::{info, warn};
use wire::batch::{BatchView, Batches};
use wire::retain::Inflated;

use crate::checkpoint::{self, CLEANER_FILE, COMPACTED_FILE};
use crate::disk::{Disk, DiskFile};
use crate::error::LogError;
use crate::log::{segment_time_ms, PartitionLog};
use crate::segment::{
    file_name, write_index_files, BatchMeta, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};

/// The suffix of a cleaned segment written but not yet renamed over its segment.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// The most memory one cleaning's key map may take (key bytes plus [`KEY_ENTRY_BYTES`] each).
/// A cleaning that would exceed it cleans the segments before the one that did, whose later
/// records remain to supersede; Kafka bounds its map the same way (`log.cleaner.dedupe.buffer.size`).
pub const KEY_MAP_BYTES_MAX: usize = 64 << 20;
/// What one key map entry costs beside its key's bytes (the offset, the hash table's slot).
const KEY_ENTRY_BYTES: usize = 48;
/// A million, the denominator of `min_cleanable_dirty_ratio_ppm`.
const PPM: u64 = 1_000_000;

/// A compacted topic's settings, by Kafka's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionConfig {
    /// `delete.retention.ms`: how long a tombstone stays after its record's timestamp.
    pub delete_retention_ms: i64,
    /// `min.cleanable.dirty.ratio`, in millionths.
    pub min_cleanable_dirty_ratio_ppm: u32,
    /// `min.compaction.lag.ms`: a segment is cleaned only once its newest record is this old.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty segment this old is cleaned whatever the ratio.
    pub max_compaction_lag_ms: i64,
}

impl Default for CompactionConfig {
    /// Kafka's defaults.
    fn default() -> CompactionConfig {
        CompactionConfig {
            delete_retention_ms: 24 * 60 * 60 * 1000,
            min_cleanable_dirty_ratio_ppm: 500_000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
        }
    }
}

/// What the broker knows that the log does not, when it plans a cleaning.
#[derive(Debug, Clone, Default)]
pub struct CleanContext {
    /// Nothing at or above it is cleaned: the last stable offset, so an open transaction's
    /// data is never read as committed.
    pub end_offset: i64,
    /// Aborted transactions: (producer id, first offset, offset of the abort marker).
    pub aborted: Vec<(i64, i64, i64)>,
    /// Each producer's last batch's last offset.
    pub producer_last_offsets: HashMap<i64, i64>,
}

impl CleanContext {
    fn is_aborted(&self, batch: &BatchView<'_>) -> bool {
        batch.is_transactional()
            && self.aborted.iter().any(|&(producer_id, first, marker)| {
                producer_id == batch.producer_id() && (first..marker).contains(&batch.base_offset())
            })
    }
}

/// What one cleaning did, for the log line and the tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CleanStats {
    pub segments: usize,
    pub records_read: u64,
    pub records_removed: u64,
    pub tombstones_removed: u64,
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// The segments changed under the cleaning (retention or DeleteRecords deleted one): its
    /// output was discarded.
    pub discarded: bool,
}

/// A segment as the plan saw it.
struct Source {
    base_offset: i64,
    next_offset: i64,
    file: Arc<dyn DiskFile>,
    len: u64,
    path: PathBuf,
    /// Its age for `delete.retention.ms` when a record has no timestamp (as retention's).
    time_ms: i64,
}

/// A cleaning planned under the lock, to run without it.
pub struct CleanJob {
    disk: Arc<dyn Disk>,
    dir: PathBuf,
    /// The log's compacted checkpoint when the cleaning was planned.
    compacted_offset: i64,
    sources: Vec<Source>,
    /// The first source after the cleaner checkpoint.
    first_dirty: usize,
    config: CompactionConfig,
    context: CleanContext,
    now_ms: i64,
}

/// One cleaned segment, written and synced as `<segment>.cleaned`.
struct Output {
    source: Source,
    path: PathBuf,
    file: Arc<dyn DiskFile>,
    metas: Vec<BatchMeta>,
    len: u64,
}

/// A cleaning's result, for [`PartitionLog::install_clean`].
pub struct Cleaned {
    outputs: Vec<Output>,
    /// The compacted checkpoint as the run left it on disk.
    compacted_offset: i64,
    pub stats: CleanStats,
}

impl PartitionLog {
    /// A cleaning of this log, if it is compacted and one is due (see the module comment);
    /// None otherwise, or while one is under way.
    pub fn plan_clean(&mut self, now_ms: i64, context: CleanContext) -> Option<CleanJob> {
        let config = self.config.compaction?;
        if self.cleaning {
            return None;
        }
        let sealed = self.segments.len() - 1;
        let lag_horizon = now_ms.saturating_sub(config.min_compaction_lag_ms);
        let mut sources = Vec::new();
        for segment in &self.segments[..sealed] {
            let cleanable = segment.next_offset < self.recovery_point
                && segment.next_offset <= context.end_offset
                && segment.next_offset <= self.synced_offset
                && segment.next_offset > self.log_start_offset;
            if !cleanable {
                break;
            }
            let Ok(time_ms) = segment_time_ms(segment) else {
                break;
            };
            // The lag holds back segments never cleaned; one compacted before passed it then
            // (and its time is its cleaning's when compaction emptied it).
            if !segment.gaps && time_ms > lag_horizon {
                break;
            }
            sources.push(Source {
                base_offset: segment.base_offset,
                next_offset: segment.next_offset,
                file: segment.log.clone(),
                len: segment.written_bytes,
                path: segment.log_path.clone(),
                time_ms,
            });
        }
        let first_dirty = sources.partition_point(|s| s.next_offset <= self.cleaned_offset);
        let dirty = &sources[first_dirty..];
        if dirty.is_empty() {
            return None;
        }
        let total_bytes: u64 = sources.iter().map(|s| s.len).sum();
        let dirty_bytes: u64 = dirty.iter().map(|s| s.len).sum();
        let ratio_due =
            dirty_bytes * PPM >= total_bytes * u64::from(config.min_cleanable_dirty_ratio_ppm);
        let lag_due = now_ms.saturating_sub(dirty[0].time_ms) >= config.max_compaction_lag_ms;
        if !(ratio_due || lag_due) || dirty_bytes == 0 {
            return None;
        }
        self.cleaning = true;
        Some(CleanJob {
            disk: self.disk.clone(),
            dir: self.dir.clone(),
            compacted_offset: self.compacted_offset,
            sources,
            first_dirty,
            config,
            context,
            now_ms,
        })
    }

    /// Puts a finished cleaning in place (see the module comment): renames and the in-memory
    /// swap now, the rest deferred to the log's next `SyncWork` (the caller makes sure one
    /// comes, as for any deferred file work). An error is an I/O error on this log's directory:
    /// the broker must stop, as for a failed write.
    pub fn install_clean(&mut self, cleaned: Cleaned) -> Result<CleanStats, LogError> {
        self.cleaning = false;
        let Cleaned {
            outputs,
            compacted_offset,
            mut stats,
        } = cleaned;
        self.compacted_offset = self.compacted_offset.max(compacted_offset);
        let unchanged = outputs.iter().all(|output| {
            self.segments[..self.segments.len() - 1]
                .iter()
                .any(|segment| {
                    segment.base_offset == output.source.base_offset
                        && segment.next_offset == output.source.next_offset
                        && Arc::ptr_eq(&segment.log, &output.source.file)
                })
        });
        if !unchanged || outputs.is_empty() {
            stats.discarded = !outputs.is_empty();
            let paths: Vec<PathBuf> = outputs.into_iter().map(|output| output.path).collect();
            if !paths.is_empty() {
                self.defer(Box::new(move |disk, _| {
                    for path in paths {
                        if let Err(error) = remove_if_present(disk, &path) {
                            warn!(%error, "removing a discarded cleaned segment");
                        }
                    }
                }));
            }
            return Ok(stats);
        }
        let end_offset = outputs.last().expect("outputs").source.next_offset;
        let disk = self.disk.clone();
        let index_interval_bytes = self.config.index_interval_bytes;
        let mut index_files = Vec::new();
        for output in outputs {
            let source = &output.source;
            // A read planned before this rename still reads the old file.
            source
                .file
                .keep_open()
                .map_err(LogError::io("open segment", &source.path))?;
            disk.rename(&output.path, &source.path)
                .map_err(LogError::io("rename cleaned segment", &output.path))?;
            // Opened again under its new name: a released descriptor is reopened by path.
            let file = disk
                .open(&source.path, false)
                .map_err(LogError::io("open cleaned segment", &source.path))?;
            drop(output.file);
            let at = self
                .segments
                .iter()
                .position(|s| s.base_offset == source.base_offset)
                .expect("checked above");
            let mut segment = Segment::new(&self.dir, source.base_offset, file);
            segment.gaps = true;
            for meta in output.metas {
                segment.record(meta, index_interval_bytes);
            }
            assert_eq!(segment.size_bytes, output.len, "the metas cover the file");
            assert!(
                segment.next_offset <= source.next_offset,
                "offsets stay inside"
            );
            segment.next_offset = source.next_offset;
            segment.written_bytes = segment.size_bytes;
            index_files.extend(segment.seal_indexes());
            self.segments[at] = segment;
        }
        self.release_due = true;
        self.cleaned_offset = self.cleaned_offset.max(end_offset);
        self.defer(Box::new(move |disk, dir| {
            if let Err(error) = finish_install(disk, dir, index_files, end_offset) {
                // Nothing is lost: each segment is its old file or its cleaned one, both valid
                // below the compacted checkpoint; missing indexes are rebuilt at the next
                // start, and without the cleaner checkpoint the segments are cleaned again.
                warn!(%error, "finishing a log cleaning's install");
            }
        }));
        info!(
            dir = %self.dir.display(),
            segments = stats.segments,
            records_removed = stats.records_removed,
            tombstones_removed = stats.tombstones_removed,
            bytes_before = stats.bytes_before,
            bytes_after = stats.bytes_after,
            cleaned_offset = self.cleaned_offset,
            "compacted the log"
        );
        Ok(stats)
    }

    /// Forgets a planned cleaning whose run failed (its `.cleaned` files are replaced by the next
    /// cleaning or removed by recovery), so that another can be planned.
    pub fn abandon_clean(&mut self) {
        self.cleaning = false;
    }

    /// The cleaner checkpoint: compaction cleaned the log below it.
    pub fn cleaned_offset(&self) -> i64 {
        self.cleaned_offset
    }
}

impl CleanJob {
    /// Maps the keys, writes and syncs the cleaned segments (see the module comment). An error
    /// leaves `.cleaned` files at worst, which the next cleaning or recovery replaces.
    pub fn run(self) -> Result<Cleaned, LogError> {
        let mut stats = CleanStats::default();
        let (keys, mapped_end) = self.map_keys()?;
        let mut outputs = Vec::new();
        for source in self.sources.into_iter().take(mapped_end) {
            let output = clean_segment(
                self.disk.as_ref(),
                source,
                &keys,
                &self.context,
                &self.config,
                self.now_ms,
                &mut stats,
            )?;
            outputs.push(output);
        }
        stats.segments = outputs.len();
        let mut compacted_offset = self.compacted_offset;
        if let Some(last) = outputs.last() {
            // Before any rename: recovery must accept the gaps of whichever segments are renamed.
            let end_offset = last.source.next_offset;
            if end_offset > compacted_offset {
                checkpoint::write(self.disk.as_ref(), &self.dir, COMPACTED_FILE, end_offset)?;
                compacted_offset = end_offset;
            }
            // A renamed segment must never be found beside its predecessor's index files.
            for output in &outputs {
                for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
                    let path = self.dir.join(file_name(output.source.base_offset, suffix));
                    remove_if_present(self.disk.as_ref(), &path)?;
                }
            }
            self.disk
                .sync_dir(&self.dir)
                .map_err(LogError::io("sync directory", &self.dir))?;
        }
        Ok(Cleaned {
            outputs,
            compacted_offset,
            stats,
        })
    }

    /// Every key of the dirty segments with the offset of its last record, and how many of the
    /// sources the map covers (all of them, unless [`KEY_MAP_BYTES_MAX`] was reached in one: then
    /// the sources before it).
    fn map_keys(&self) -> Result<(HashMap<Vec<u8>, i64>, usize), LogError> {
        let mut keys: HashMap<Vec<u8>, i64> = HashMap::new();
        let mut bytes = 0usize;
        for (i, source) in self.sources.iter().enumerate().skip(self.first_dirty) {
            let data = read_all(source)?;
            for batch in Batches::new(&data) {
                let (position, view) =
                    batch.map_err(|e| LogError::corrupt(&source.path, 0, e.to_string()))?;
                if view.is_control() || self.context.is_aborted(&view) {
                    continue;
                }
                let inflated = inflate(&view, source, position)?;
                for record in inflated.records() {
                    let Some(key) = record.key else { continue };
                    match keys.get_mut(key) {
                        Some(offset) => *offset = record.offset,
                        None => {
                            bytes += key.len() + KEY_ENTRY_BYTES;
                            keys.insert(key.to_vec(), record.offset);
                        }
                    }
                }
            }
            if bytes > KEY_MAP_BYTES_MAX {
                warn!(path = %source.path.display(), bytes, "the key map is full: cleaning the segments before this one");
                return Ok((keys, i));
            }
        }
        Ok((keys, self.sources.len()))
    }
}

/// Writes one segment's cleaned copy and syncs it.
fn clean_segment(
    disk: &dyn Disk,
    source: Source,
    keys: &HashMap<Vec<u8>, i64>,
    context: &CleanContext,
    config: &CompactionConfig,
    now_ms: i64,
    stats: &mut CleanStats,
) -> Result<Output, LogError> {
    let data = read_all(&source)?;
    let mut out = Vec::with_capacity(data.len());
    let mut metas = Vec::new();
    for batch in Batches::new(&data) {
        let (position, view) =
            batch.map_err(|e| LogError::corrupt(&source.path, 0, e.to_string()))?;
        view.validate()
            .map_err(|e| LogError::corrupt(&source.path, position as u64, e.to_string()))?;
        let kept = if view.is_control() || context.is_aborted(&view) {
            Some(view.as_bytes().to_vec())
        } else {
            let inflated = inflate(&view, &source, position)?;
            let keep: Vec<bool> = inflated
                .records()
                .map(|record| {
                    let Some(key) = record.key else { return false };
                    let last = keys.get(key).is_none_or(|&last| last <= record.offset);
                    if !last || !record.tombstone {
                        return last;
                    }
                    let time_ms = if record.timestamp >= 0 {
                        record.timestamp
                    } else {
                        source.time_ms
                    };
                    let expired = now_ms.saturating_sub(time_ms) > config.delete_retention_ms;
                    if expired {
                        stats.tombstones_removed += 1;
                    }
                    !expired
                })
                .collect();
            stats.records_read += keep.len() as u64;
            let removed = keep.iter().filter(|&&k| !k).count();
            stats.records_removed += removed as u64;
            let last_of_producer = view.has_producer_id()
                && context.producer_last_offsets.get(&view.producer_id())
                    == Some(&view.last_offset());
            if removed == 0 {
                Some(view.as_bytes().to_vec())
            } else if removed == keep.len() && !last_of_producer {
                None
            } else {
                Some(
                    inflated
                        .rebuild(&view, &keep)
                        .map_err(|e| LogError::corrupt(&source.path, position as u64, e))?,
                )
            }
        };
        if let Some(bytes) = kept {
            let view = BatchView::parse(&bytes).expect("a batch written here parses");
            metas.push(BatchMeta::of(out.len() as u64, &view));
            out.extend_from_slice(&bytes);
        }
    }
    let path = source
        .path
        .with_extension(format!("{}{CLEANED_SUFFIX}", &LOG_SUFFIX[1..]));
    let file = disk
        .open(&path, true)
        .map_err(LogError::io("create cleaned segment", &path))?;
    file.truncate(0)
        .map_err(LogError::io("truncate cleaned segment", &path))?;
    file.write_all_at(0, &out)
        .map_err(LogError::io("write cleaned segment", &path))?;
    file.sync_data()
        .map_err(LogError::io("sync cleaned segment", &path))?;
    stats.bytes_before += source.len;
    stats.bytes_after += out.len() as u64;
    Ok(Output {
        source,
        path,
        file,
        metas,
        len: out.len() as u64,
    })
}

/// The install's deferred half: the renames made durable, the new index files written and
/// synced, and last the cleaner checkpoint.
fn finish_install(
    disk: &dyn Disk,
    dir: &std::path::Path,
    index_files: Vec<crate::segment::IndexFile>,
    end_offset: i64,
) -> Result<(), LogError> {
    for (path, file) in write_index_files(disk, index_files)? {
        file.sync_data()
            .map_err(LogError::io("sync index", &path))?;
    }
    disk.sync_dir(dir)
        .map_err(LogError::io("sync directory", dir))?;
    checkpoint::write(disk, dir, CLEANER_FILE, end_offset)
}

fn read_all(source: &Source) -> Result<bytes::Bytes, LogError> {
    let len = usize::try_from(source.len).expect("a segment's length fits in memory addresses");
    source
        .file
        .read_shared(0, len)
        .map_err(LogError::io("read segment", &source.path))
}

fn inflate(view: &BatchView<'_>, source: &Source, position: usize) -> Result<Inflated, LogError> {
    Inflated::of(view).map_err(|reason| LogError::corrupt(&source.path, position as u64, reason))
}

fn remove_if_present(disk: &dyn Disk, path: &std::path::Path) -> Result<(), LogError> {
    match disk.remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(LogError::io("remove", path)(error))
        }
        _ => Ok(()),
    }
}
