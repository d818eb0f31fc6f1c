//! Opening a partition directory: find the segments, trust what lies before the recovery point,
//! validate every batch after it, and cut only a torn tail that was never synced.
//!
//! The rules, in the order they are applied (see `docs/storage-format.md`):
//! - a sealed segment that ends before the recovery point is trusted: its index files are checked
//!   cheaply and the batches after its last index entry are re-validated; anything wrong there is
//!   rebuilt from the log, and a log that does not rebuild is corruption;
//! - every batch of the other segments is validated (header, CRC-32C, contiguous offsets);
//! - the first invalid batch is a torn tail, truncated with a WARN, unless it lies before the
//!   recovery point or a valid batch with the next expected offset exists after it: then the
//!   damage is inside synced data and opening fails with `LogError::Corrupt`.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tracing::{info, warn};
use wire::batch::HEADER_BYTES;

use crate::checkpoint::{
    self, CLEANER_FILE, COMPACTED_FILE, LOG_START_FILE, RECOVERY_POINT_FILE, TEMP_SUFFIX,
};
use crate::clean::CLEANED_SUFFIX;
use crate::disk::{Disk, DiskFile};
use crate::error::LogError;
use crate::index::{OffsetIndex, TimeIndex};
use crate::segment::{
    self, file_name, find_batch, BatchMeta, Cursor, Loaded, Segment, Step, Unsynced, INDEX_SUFFIX,
    LOG_SUFFIX, SCAN_CHUNK_BYTES, TIME_INDEX_SUFFIX,
};

/// A partition as found on disk, validated, repaired and synced.
pub(crate) struct Recovered {
    pub segments: Vec<Segment>,
    pub log_start_offset: i64,
    /// The cleaner checkpoint: compaction cleaned the segments below it (0 when none was).
    pub cleaned_offset: i64,
    /// Segments ending at or below it may have offset gaps (0 when none may).
    pub compacted_offset: i64,
}

/// A `.log` file found in the directory.
struct Found {
    base_offset: i64,
    file: Arc<dyn DiskFile>,
    len: u64,
}

/// How a walk over a segment's batches ended.
enum ScanEnd {
    Clean,
    /// Bytes that are not a valid batch: a torn tail, or damage. When the header was whole (only
    /// the CRC or the body failed), `successor` is the offset of the batch that should follow.
    Invalid {
        position: u64,
        reason: String,
        successor: Option<i64>,
    },
    /// A valid batch (CRC and all) in the wrong place: never the shape of a torn write.
    Misplaced {
        position: u64,
        reason: String,
    },
}

pub(crate) fn recover(
    disk: &dyn Disk,
    dir: &Path,
    index_interval_bytes: u32,
    now_ms: i64,
) -> Result<Recovered, LogError> {
    let mut found = list_segments(disk, dir)?;
    let log_start_checkpoint = checkpoint::read(disk, dir, LOG_START_FILE)?;
    let recovery_point = checkpoint::read(disk, dir, RECOVERY_POINT_FILE)?;
    let cleaned_offset = checkpoint::read(disk, dir, CLEANER_FILE)?.unwrap_or(0);
    let compacted_offset = checkpoint::read(disk, dir, COMPACTED_FILE)?.unwrap_or(0);
    if found.is_empty() {
        let base_offset = log_start_checkpoint.unwrap_or(0);
        let segment = create_segment(disk, dir, base_offset)?;
        found.push(Found {
            base_offset,
            len: 0,
            file: segment.log,
        });
    }
    let rules = Rules {
        disk,
        dir,
        index_interval_bytes,
        now_ms,
        recovery_point,
        compacted_offset,
    };
    // A sealed segment is trusted once the next segment starts before the recovery point: the
    // sync that covered an offset of the next segment also synced the index files written when
    // this one was rolled.
    let scan_from = (0..found.len())
        .find(|&i| {
            i + 1 == found.len() || recovery_point.is_none_or(|rp| found[i + 1].base_offset >= rp)
        })
        .expect("the last segment always qualifies");
    let mut segments = Vec::with_capacity(found.len());
    let mut rebuilt = Vec::new();
    for i in 0..scan_from {
        let (segment, was_rebuilt) = rules.load_sealed(&found[i], found[i + 1].base_offset)?;
        if was_rebuilt {
            rebuilt.push(i);
        }
        segments.push(segment);
    }
    rules.scan_tail(&found[scan_from..], &mut segments)?;
    rebuilt.extend(scan_from..segments.len());
    let log_end_offset = segments.last().expect("at least one segment").next_offset;
    if let Some(rp) = recovery_point.filter(|&rp| rp > log_end_offset) {
        let last = segments.last().expect("at least one segment");
        let reason = format!("the recovery point {rp} is beyond the recovered log end {log_end_offset}: synced batches are missing");
        return Err(LogError::corrupt(&last.log_path, last.size_bytes, reason));
    }
    let mut log_start_offset = log_start_checkpoint
        .unwrap_or(0)
        .max(segments[0].base_offset);
    if log_start_offset > log_end_offset {
        // DeleteRecords covered batches that were never synced and are gone: the log restarts
        // empty at the log start offset.
        warn!(dir = %dir.display(), log_start_offset, log_end_offset, "log start offset is beyond the recovered log end; starting an empty segment there");
        for segment in segments.drain(..) {
            segment.remove_files(disk)?;
        }
        segments.push(create_segment(disk, dir, log_start_offset)?);
        rebuilt.clear();
    }
    log_start_offset = log_start_offset.max(segments[0].base_offset);
    rules.make_durable(&mut segments, &rebuilt, scan_from)?;
    let log_end_offset = segments.last().expect("at least one segment").next_offset;
    if recovery_point != Some(log_end_offset) {
        checkpoint::write(disk, dir, RECOVERY_POINT_FILE, log_end_offset)?;
    }
    Ok(Recovered {
        segments,
        log_start_offset,
        cleaned_offset,
        compacted_offset,
    })
}

/// The `.log` files of the directory in offset order, after removing what a crash can leave
/// behind: temporary checkpoint files and index files without a log.
fn list_segments(disk: &dyn Disk, dir: &Path) -> Result<Vec<Found>, LogError> {
    let names = disk
        .list_dir(dir)
        .map_err(LogError::io("list directory", dir))?;
    let mut logs = Vec::new();
    let mut indexes = Vec::new();
    for name in &names {
        match segment::parse_file_name(name) {
            Some((base_offset, LOG_SUFFIX)) => logs.push(base_offset),
            Some((base_offset, _)) => indexes.push((base_offset, name)),
            // A checkpoint being replaced, or a compaction's output never renamed into place.
            None if name.ends_with(TEMP_SUFFIX) || name.ends_with(CLEANED_SUFFIX) => {
                remove(disk, &dir.join(name))?
            }
            None if [
                LOG_START_FILE,
                RECOVERY_POINT_FILE,
                CLEANER_FILE,
                COMPACTED_FILE,
            ]
            .contains(&name.as_str()) => {}
            // The broker's producer state snapshots (docs/producer-snapshot-format.md).
            None if name.ends_with(".snapshot") => {}
            None => {
                warn!(path = %dir.join(name).display(), "ignoring an unknown file in a partition directory")
            }
        }
    }
    for (base_offset, name) in indexes {
        if !logs.contains(&base_offset) {
            remove(disk, &dir.join(name))?;
        }
    }
    logs.sort_unstable();
    let mut found = Vec::with_capacity(logs.len());
    for base_offset in logs {
        let path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let file = disk
            .open(&path, false)
            .map_err(LogError::io("open segment", &path))?;
        let len = file.len().map_err(LogError::io("stat segment", &path))?;
        found.push(Found {
            base_offset,
            file,
            len,
        });
    }
    Ok(found)
}

fn remove(disk: &dyn Disk, path: &Path) -> Result<(), LogError> {
    info!(path = %path.display(), "removing a leftover file");
    disk.remove_file(path)
        .map_err(LogError::io("remove leftover", path))
}

/// Creates an empty segment file (not yet durable: its directory needs a sync).
pub(crate) fn create_segment(
    disk: &dyn Disk,
    dir: &Path,
    base_offset: i64,
) -> Result<Segment, LogError> {
    let path = dir.join(file_name(base_offset, LOG_SUFFIX));
    let file = disk
        .open(&path, true)
        .map_err(LogError::io("create segment", &path))?;
    let len = file.len().map_err(LogError::io("stat segment", &path))?;
    if len > 0 {
        // Only a file beyond the log end can have this name, and nothing beyond the log end was
        // ever acknowledged.
        warn!(path = %path.display(), dropped_bytes = len, "emptying a stale segment file at the log end");
        file.truncate(0)
            .map_err(LogError::io("truncate segment", &path))?;
    }
    Ok(Segment::new(dir, base_offset, file))
}

struct Rules<'a> {
    disk: &'a dyn Disk,
    dir: &'a Path,
    index_interval_bytes: u32,
    now_ms: i64,
    recovery_point: Option<i64>,
    /// Segments that end at or below it were compacted and may have offset gaps.
    compacted_offset: i64,
}

impl Rules<'_> {
    /// Whether a segment that ends where `next_base_offset` begins may have offset gaps.
    fn gaps(&self, next_base_offset: i64) -> bool {
        next_base_offset <= self.compacted_offset
    }

    /// Loads a trusted sealed segment from its index files, rebuilding them from the log when they
    /// fail their checks. Returns the segment and whether it was rebuilt.
    fn load_sealed(
        &self,
        found: &Found,
        next_base_offset: i64,
    ) -> Result<(Segment, bool), LogError> {
        let path = self.dir.join(file_name(found.base_offset, LOG_SUFFIX));
        let span = next_base_offset - found.base_offset;
        if span > u32::MAX as i64 + 1 {
            let reason = format!(
                "segment spans {span} offsets up to the next segment at {next_base_offset}"
            );
            return Err(LogError::corrupt(&path, 0, reason));
        }
        let reason = match self.load_indexes(found, next_base_offset)? {
            Ok(segment) => return Ok((segment, false)),
            Err(reason) => reason,
        };
        info!(path = %path.display(), reason, "rebuilding the indexes of a segment");
        let mut segment = Segment::new(self.dir, found.base_offset, found.file.clone());
        segment.gaps = self.gaps(next_base_offset);
        let synced = |reason: String| {
            format!(
                "{reason}; the segment lies before the recovery point {:?}, so it was synced",
                self.recovery_point
            )
        };
        match self.scan(&mut segment, found.len)? {
            ScanEnd::Clean if segment.next_offset == next_base_offset => Ok((segment, true)),
            // Compaction removed the segment's last batches; its offsets still reach the next.
            ScanEnd::Clean if segment.gaps && segment.next_offset < next_base_offset => {
                segment.next_offset = next_base_offset;
                Ok((segment, true))
            }
            ScanEnd::Clean => {
                let reason = format!(
                    "segment ends at offset {} but the next one starts at {next_base_offset}",
                    segment.next_offset
                );
                Err(LogError::corrupt(&path, found.len, synced(reason)))
            }
            ScanEnd::Invalid {
                position, reason, ..
            }
            | ScanEnd::Misplaced { position, reason } => {
                Err(LogError::corrupt(&path, position, synced(reason)))
            }
        }
    }

    /// Reads and checks a sealed segment's index files, and re-validates the batches after the
    /// last offset index entry, which must end exactly where the next segment begins. The inner
    /// error says why the indexes cannot be trusted.
    fn load_indexes(
        &self,
        found: &Found,
        next_base_offset: i64,
    ) -> Result<Result<Segment, String>, LogError> {
        let span = (next_base_offset - found.base_offset) as u64;
        let index_bytes = match self.read_index(found.base_offset, INDEX_SUFFIX)? {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(Err(reason)),
        };
        let time_bytes = match self.read_index(found.base_offset, TIME_INDEX_SUFFIX)? {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(Err(reason)),
        };
        let index = match OffsetIndex::decode(&index_bytes, span, found.len) {
            Ok(index) => index,
            Err(reason) => return Ok(Err(format!("offset index: {reason}"))),
        };
        let time_index = match TimeIndex::decode(&time_bytes, span) {
            Ok(index) => index,
            Err(reason) => return Ok(Err(format!("time index: {reason}"))),
        };
        let (start, mut expected) = index.last().map_or((0, found.base_offset), |e| {
            (
                e.position as u64,
                found.base_offset + e.relative_offset as i64,
            )
        });
        let loaded = Loaded {
            next_offset: next_base_offset,
            size_bytes: found.len,
            index,
            time_index,
        };
        let mut segment = Segment::sealed(self.dir, found.base_offset, found.file.clone(), loaded);
        segment.gaps = self.gaps(next_base_offset);
        let mut cursor = Cursor::new(found.file.as_ref(), found.len, start, SCAN_CHUNK_BYTES);
        loop {
            let step = cursor
                .next()
                .map_err(LogError::io("read segment", &segment.log_path))?;
            match step {
                Step::End => break,
                Step::Invalid { position, reason } => {
                    return Ok(Err(format!("tail at byte {position}: {reason}")))
                }
                Step::Batch(position, view) => {
                    if let Err(error) = view.validate() {
                        return Ok(Err(format!("tail batch at byte {position}: {error}")));
                    }
                    let misplaced = if segment.gaps {
                        view.base_offset() < expected
                    } else {
                        view.base_offset() != expected
                    };
                    if misplaced {
                        return Ok(Err(format!(
                            "tail batch at byte {position} has offset {}, expected {expected}",
                            view.base_offset()
                        )));
                    }
                    if view.max_timestamp() > segment.max_timestamp_ms {
                        segment.max_timestamp_ms = view.max_timestamp();
                        segment.offset_of_max_timestamp = view.base_offset();
                    }
                    expected = view.last_offset() + 1;
                }
            }
        }
        segment.data_end_offset = expected;
        if expected > next_base_offset || (!segment.gaps && expected != next_base_offset) {
            return Ok(Err(format!("last batch ends before offset {expected}, the next segment starts at {next_base_offset}")));
        }
        Ok(Ok(segment))
    }

    /// The bytes of an index file; the inner error when it is missing.
    fn read_index(
        &self,
        base_offset: i64,
        suffix: &str,
    ) -> Result<Result<Vec<u8>, String>, LogError> {
        let path = self.dir.join(file_name(base_offset, suffix));
        let file = match self.disk.open(&path, false) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Ok(Err(format!("{suffix} file is missing")))
            }
            Err(error) => return Err(LogError::io("open index", &path)(error)),
        };
        let len = file.len().map_err(LogError::io("stat index", &path))?;
        let mut bytes = vec![0u8; len as usize];
        file.read_exact_at(0, &mut bytes)
            .map_err(LogError::io("read index", &path))?;
        Ok(Ok(bytes))
    }

    /// Validates every batch of the segments from the first one not trusted to the end, appending
    /// them to `segments`, and truncates a torn tail.
    fn scan_tail(&self, found: &[Found], segments: &mut Vec<Segment>) -> Result<(), LogError> {
        for (i, current) in found.iter().enumerate() {
            let expected = segments
                .last()
                .map_or(current.base_offset, |s: &Segment| s.next_offset);
            let compacted_gap = current.base_offset > expected && self.gaps(current.base_offset);
            if current.base_offset != expected && !compacted_gap {
                // The previous segment lost its end but the directory kept this newer file.
                let path = self.dir.join(file_name(current.base_offset, LOG_SUFFIX));
                let reason = format!(
                    "segment starts at offset {} but the log before it ends at {expected}",
                    current.base_offset
                );
                if current.base_offset < expected || self.is_synced(expected) {
                    return Err(LogError::corrupt(&path, 0, reason));
                }
                return self.drop_tail(None, &found[i..], expected, &reason);
            }
            if compacted_gap {
                // Compaction removed the last batches of the segment before.
                segments
                    .last_mut()
                    .expect("a gap follows a segment")
                    .next_offset = current.base_offset;
            }
            let mut segment = Segment::new(self.dir, current.base_offset, current.file.clone());
            segment.gaps = found
                .get(i + 1)
                .is_some_and(|next| self.gaps(next.base_offset));
            match self.scan(&mut segment, current.len)? {
                ScanEnd::Clean => segments.push(segment),
                ScanEnd::Misplaced { position, reason } => {
                    let reason = format!(
                        "{reason}: a valid batch in the wrong place is damage, not a torn write"
                    );
                    return Err(LogError::corrupt(&segment.log_path, position, reason));
                }
                ScanEnd::Invalid {
                    position,
                    reason,
                    successor,
                } => {
                    self.check_torn(
                        &segment,
                        current,
                        (position, successor),
                        &reason,
                        &found[i + 1..],
                    )?;
                    let next_offset = segment.next_offset;
                    segments.push(segment);
                    let torn = segments.last().expect("just pushed");
                    return self.drop_tail(
                        Some((torn, current.len)),
                        &found[i + 1..],
                        next_offset,
                        &reason,
                    );
                }
            }
        }
        Ok(())
    }

    /// Refuses to treat invalid bytes as a torn tail when the evidence says they are damage to
    /// data that was synced: they lie before the recovery point, or a valid batch that should
    /// come next (with the offset expected at the damage, or right after the damaged batch when
    /// its header is whole) follows them. A torn write leaves nothing valid after the tear.
    fn check_torn(
        &self,
        segment: &Segment,
        found: &Found,
        invalid: (u64, Option<i64>),
        reason: &str,
        later: &[Found],
    ) -> Result<(), LogError> {
        let (position, successor) = invalid;
        let expected = segment.next_offset;
        let path = &segment.log_path;
        if let Some(rp) = self.recovery_point.filter(|&rp| expected < rp) {
            let reason = format!("{reason}; offset {expected} is below the recovery point {rp}, so this batch was synced: refusing to truncate it");
            return Err(LogError::corrupt(path, position, reason));
        }
        let next_offsets: Vec<i64> = [Some(expected), successor].into_iter().flatten().collect();
        let search = find_batch(found.file.as_ref(), position + 1, found.len, &next_offsets);
        if let Some((at, offset)) = search.map_err(LogError::io("read segment", path))? {
            let reason = format!("{reason}; a valid batch with the next offset {offset} follows at byte {at}, so the log is damaged in the middle, not torn at its end");
            return Err(LogError::corrupt(path, position, reason));
        }
        // The damaged header may lie about its own length or offset count (both are data that
        // was synced as much as its CRC), so any valid batch after it with a later offset is
        // evidence too (found by the power-loss test).
        let search = find_later_batch(found.file.as_ref(), position + 1, found.len, expected);
        if let Some((at, offset)) = search.map_err(LogError::io("read segment", path))? {
            let reason = format!("{reason}; a valid batch with the later offset {offset} follows at byte {at}, so the log is damaged in the middle, not torn at its end");
            return Err(LogError::corrupt(path, position, reason));
        }
        if later.iter().any(|f| f.base_offset == expected) {
            let reason = format!("{reason}; a later segment starts at the next offset {expected}, so the log is damaged in the middle, not torn at its end");
            return Err(LogError::corrupt(path, position, reason));
        }
        // A group commit fsyncs a rolled segment before the segments after it, so a later segment
        // that holds a valid first batch proves this one was synced whole (found by the
        // power-loss test: a flip in the last batch of a sealed segment cut every later one).
        for later in later {
            let search = find_batch(later.file.as_ref(), 0, later.len, &[later.base_offset]);
            let path = self.dir.join(file_name(later.base_offset, LOG_SUFFIX));
            if let Some((0, offset)) = search.map_err(LogError::io("read segment", &path))? {
                let reason = format!("{reason}; the later segment {} holds a valid batch at offset {offset}, so this one was synced and is damaged, not torn", path.display());
                return Err(LogError::corrupt(&segment.log_path, position, reason));
            }
        }
        Ok(())
    }

    /// Truncates the torn segment at its size and removes the later segments, all of which lie
    /// after the last synced offset.
    fn drop_tail(
        &self,
        torn: Option<(&Segment, u64)>,
        later: &[Found],
        log_end_offset: i64,
        reason: &str,
    ) -> Result<(), LogError> {
        let later_bytes: u64 = later.iter().map(|f| f.len).sum();
        let torn_bytes = torn.map_or(0, |(segment, len)| len - segment.size_bytes);
        let path = torn.map_or_else(
            || self.dir.to_path_buf(),
            |(segment, _)| segment.log_path.clone(),
        );
        warn!(
            path = %path.display(),
            position = torn.map_or(0, |(segment, _)| segment.size_bytes),
            dropped_bytes = torn_bytes + later_bytes,
            dropped_segments = later.len(),
            log_end_offset,
            reason,
            "truncating the torn tail of the log (never synced, so never acknowledged under acks=all)"
        );
        if let Some((segment, _)) = torn {
            segment
                .log
                .truncate(segment.size_bytes)
                .map_err(LogError::io("truncate segment", &segment.log_path))?;
        }
        for found in later {
            let segment = Segment::new(self.dir, found.base_offset, found.file.clone());
            segment.remove_files(self.disk)?;
        }
        Ok(())
    }

    fn is_synced(&self, offset: i64) -> bool {
        self.recovery_point.is_some_and(|rp| offset < rp)
    }

    /// Validates every batch of a segment from its start, recording it into the (empty) segment.
    fn scan(&self, segment: &mut Segment, len: u64) -> Result<ScanEnd, LogError> {
        let log = segment.log.clone();
        let mut cursor = Cursor::new(log.as_ref(), len, 0, SCAN_CHUNK_BYTES);
        loop {
            let step = cursor
                .next()
                .map_err(LogError::io("read segment", &segment.log_path))?;
            let (position, view) = match step {
                Step::End => return Ok(ScanEnd::Clean),
                Step::Invalid { position, reason } => {
                    return Ok(ScanEnd::Invalid {
                        position,
                        reason,
                        successor: None,
                    })
                }
                Step::Batch(position, view) => (position, view),
            };
            if let Err(error) = view.validate() {
                let successor =
                    (view.base_offset() == segment.next_offset).then(|| view.last_offset() + 1);
                return Ok(ScanEnd::Invalid {
                    position,
                    reason: error.to_string(),
                    successor,
                });
            }
            let misplaced = if segment.gaps {
                view.base_offset() < segment.next_offset
            } else {
                view.base_offset() != segment.next_offset
            };
            if misplaced {
                let reason = format!(
                    "batch has offset {}, expected {}",
                    view.base_offset(),
                    segment.next_offset
                );
                return Ok(ScanEnd::Misplaced { position, reason });
            }
            if position > u32::MAX as u64
                || view.last_offset() - segment.base_offset > u32::MAX as i64
            {
                let reason =
                    "batch lies beyond what a segment can index (4 GiB, 2^32 offsets)".to_string();
                return Ok(ScanEnd::Misplaced { position, reason });
            }
            if position == 0 {
                // segment_ms counts from the first batch's timestamp, as in Kafka, so a restart does
                // not postpone a time-based roll; a timestamp from the future counts as now.
                let first_ms = view.max_timestamp();
                segment.roll_base_ms = Some(if first_ms >= 0 {
                    first_ms.min(self.now_ms)
                } else {
                    self.now_ms
                });
            }
            segment.record(BatchMeta::of(position, &view), self.index_interval_bytes);
        }
    }

    /// Writes the rebuilt index files of sealed segments and syncs every file recovery read or
    /// changed, so that what was validated is on disk before the recovery point says so.
    fn make_durable(
        &self,
        segments: &mut [Segment],
        rebuilt: &[usize],
        scan_from: usize,
    ) -> Result<(), LogError> {
        let last = segments.len() - 1;
        let mut files: Vec<Unsynced> = Vec::new();
        for &i in rebuilt.iter().filter(|&&i| i < last) {
            files.extend(segments[i].write_indexes(self.disk)?);
        }
        for segment in segments.iter().skip(scan_from.min(last)) {
            files.push((segment.log_path.clone(), segment.log.clone()));
        }
        for (path, file) in files {
            file.sync_data().map_err(LogError::io("sync file", &path))?;
        }
        self.disk
            .sync_dir(self.dir)
            .map_err(LogError::io("sync directory", self.dir))
    }
}

/// Searches `file[from..end]` for a valid batch (whole, CRC-32C matching) whose base offset lies
/// after `after`, by at most what one segment can index. A torn write leaves no such batch.
fn find_later_batch(
    file: &dyn DiskFile,
    from: u64,
    end: u64,
    after: i64,
) -> io::Result<Option<(u64, i64)>> {
    const CHUNK_BYTES: u64 = 1 << 20;
    const MAGIC_AT: usize = 16;
    let mut chunk = Vec::new();
    let mut chunk_start = from;
    while chunk_start + HEADER_BYTES as u64 <= end {
        let len = CHUNK_BYTES.min(end - chunk_start) as usize;
        chunk.resize(len, 0);
        file.read_exact_at(chunk_start, &mut chunk)?;
        for at in 0..len.saturating_sub(MAGIC_AT) {
            let base = i64::from_be_bytes(chunk[at..at + 8].try_into().expect("8 bytes"));
            let plausible =
                chunk[at + MAGIC_AT] == 2 && base > after && base - after <= i64::from(u32::MAX);
            if !plausible {
                continue;
            }
            let position = chunk_start + at as u64;
            let mut cursor = Cursor::new(file, end, position, HEADER_BYTES);
            if let Step::Batch(_, view) = cursor.next()? {
                if view.validate().is_ok() {
                    return Ok(Some((position, view.base_offset())));
                }
            }
        }
        if chunk_start + len as u64 == end {
            break;
        }
        // Overlap by a header so that a batch starting near the chunk's end is not missed.
        chunk_start += (len as u64).saturating_sub(HEADER_BYTES as u64).max(1);
    }
    Ok(None)
}
