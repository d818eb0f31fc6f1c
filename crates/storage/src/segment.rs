//! One segment of a partition log: a `.log` file of v2 batches packed back to back, with its
//! in-memory offset and time indexes, and a cursor that walks its batches in large reads.
//!
//! A segment never decodes records: everything it knows comes from batch headers, through
//! `wire::batch::BatchView`.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use wire::batch::{BatchError, BatchSpan, BatchView, HEADER_BYTES};

use crate::disk::{Disk, DiskFile};
use crate::error::LogError;
use crate::index::{OffsetEntry, OffsetIndex, TimeEntry, TimeIndex};

pub(crate) const LOG_SUFFIX: &str = ".log";
pub(crate) const INDEX_SUFFIX: &str = ".index";
pub(crate) const TIME_INDEX_SUFFIX: &str = ".timeindex";

/// Largest batch the log stores or reads back. It bounds the memory a single read can take, so a
/// header whose length field was torn cannot make recovery allocate gigabytes. It is far above
/// the broker's batch limit (1 MiB by default), which is what clients see.
pub const BATCH_BYTES_MAX: usize = 128 << 20;
/// Bytes read at once when walking batch headers. Bigger reads mean fewer system calls; the index
/// keeps walks short (about `index_interval_bytes`) except in recovery.
pub(crate) const SCAN_CHUNK_BYTES: usize = 64 << 10;
/// Bytes read at once when searching a damaged segment for a batch.
const SEARCH_CHUNK_BYTES: usize = 1 << 20;

/// `{base_offset:020}{suffix}`, Kafka's names, so that names sort in offset order.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}{suffix}")
}

/// The base offset and suffix of a segment file name, or None for other files.
pub(crate) fn parse_file_name(name: &str) -> Option<(i64, &'static str)> {
    for suffix in [LOG_SUFFIX, INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
        if let Some(stem) = name.strip_suffix(suffix) {
            if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
                return stem.parse().ok().map(|base| (base, suffix));
            }
        }
    }
    None
}

/// A file written but not yet synced, with its path for the error message if the sync fails.
pub(crate) type Unsynced = (PathBuf, Arc<dyn DiskFile>);

/// An index file to write: its path and its whole content.
pub(crate) type IndexFile = (PathBuf, Vec<u8>);

/// Writes index files whole (created or replaced in place); returns them, still to be synced.
pub(crate) fn write_index_files(
    disk: &dyn Disk,
    encoded: Vec<IndexFile>,
) -> Result<Vec<Unsynced>, LogError> {
    let mut written = Vec::new();
    for (path, bytes) in encoded {
        let file = disk
            .open(&path, true)
            .map_err(LogError::io("create index", &path))?;
        file.write_all_at(0, &bytes)
            .map_err(LogError::io("write index", &path))?;
        file.truncate(bytes.len() as u64)
            .map_err(LogError::io("truncate index", &path))?;
        written.push((path, file));
    }
    Ok(written)
}

/// What the log keeps of one batch's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMeta {
    pub position: u64,
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp_ms: i64,
    pub total_bytes: u64,
}

impl BatchMeta {
    pub fn of(position: u64, view: &BatchView<'_>) -> BatchMeta {
        BatchMeta {
            position,
            base_offset: view.base_offset(),
            last_offset: view.last_offset(),
            max_timestamp_ms: view.max_timestamp(),
            total_bytes: view.total_bytes() as u64,
        }
    }
}

pub(crate) struct Segment {
    pub base_offset: i64,
    /// The offset after the last batch; `base_offset` when the segment is empty. A compacted
    /// segment's offsets reach the next segment's base even when its last batches were removed.
    pub next_offset: i64,
    /// The offset after the last batch the file holds: `next_offset`, except in a compacted
    /// segment whose last batches were removed (a read past it goes on to the next segment).
    pub data_end_offset: i64,
    pub size_bytes: u64,
    /// How many of `size_bytes` are in the file: appends reach the OS only when the group commit
    /// runs their `SyncWork`, so readers stop here (what lies beyond is not synced either, so no
    /// consumer may see it yet).
    pub written_bytes: u64,
    pub log: Arc<dyn DiskFile>,
    pub log_path: PathBuf,
    index: OffsetIndex,
    time_index: TimeIndex,
    /// -1 (Kafka's "no timestamp") until a batch carries one.
    pub max_timestamp_ms: i64,
    pub offset_of_max_timestamp: i64,
    bytes_since_index_entry: u64,
    /// When the segment started to fill, for `segment_ms`; None while it is empty.
    pub roll_base_ms: Option<i64>,
    /// Compaction rewrote the segment (or it lies below the cleaner checkpoint): batches it
    /// removed leave offset gaps between the batches that remain, so a batch may start after
    /// the offset the previous one ended at (never before).
    pub gaps: bool,
}

impl Segment {
    /// An empty in-memory segment over an open `.log` file.
    pub fn new(dir: &Path, base_offset: i64, log: Arc<dyn DiskFile>) -> Segment {
        Segment {
            base_offset,
            next_offset: base_offset,
            data_end_offset: base_offset,
            size_bytes: 0,
            written_bytes: 0,
            log,
            log_path: dir.join(file_name(base_offset, LOG_SUFFIX)),
            index: OffsetIndex::default(),
            time_index: TimeIndex::default(),
            max_timestamp_ms: -1,
            offset_of_max_timestamp: base_offset,
            bytes_since_index_entry: 0,
            roll_base_ms: None,
            gaps: false,
        }
    }

    /// A sealed segment whose indexes were loaded from their files.
    pub fn sealed(dir: &Path, base_offset: i64, log: Arc<dyn DiskFile>, loaded: Loaded) -> Segment {
        let mut segment = Segment::new(dir, base_offset, log);
        segment.next_offset = loaded.next_offset;
        segment.data_end_offset = loaded.next_offset;
        segment.size_bytes = loaded.size_bytes;
        segment.written_bytes = loaded.size_bytes;
        segment.index = loaded.index;
        segment.time_index = loaded.time_index;
        if let Some(last) = segment.time_index.last() {
            segment.max_timestamp_ms = last.timestamp_ms;
            segment.offset_of_max_timestamp = base_offset + last.relative_offset as i64;
        }
        segment
    }

    pub fn is_empty(&self) -> bool {
        self.size_bytes == 0
    }

    pub fn path(&self, suffix: &str) -> PathBuf {
        self.log_path.with_extension(&suffix[1..])
    }

    /// The offset relative to the base offset, as stored in the indexes.
    pub fn relative(&self, offset: i64) -> u32 {
        let relative = offset - self.base_offset;
        assert!(
            relative >= 0,
            "offset {offset} below segment base {}",
            self.base_offset
        );
        u32::try_from(relative).expect("a segment spans at most u32::MAX offsets")
    }

    /// Accounts for a batch written at the end of the segment, maintaining the indexes as Kafka
    /// does: an entry when more than `index_interval_bytes` were written since the last one.
    pub fn record(&mut self, meta: BatchMeta, index_interval_bytes: u32) {
        assert_eq!(
            meta.position, self.size_bytes,
            "batches are recorded in file order"
        );
        if self.gaps {
            assert!(meta.base_offset >= self.next_offset, "offsets increase");
        } else {
            assert_eq!(meta.base_offset, self.next_offset, "offsets are contiguous");
        }
        if meta.max_timestamp_ms > self.max_timestamp_ms {
            self.max_timestamp_ms = meta.max_timestamp_ms;
            self.offset_of_max_timestamp = meta.base_offset;
        }
        if self.bytes_since_index_entry > index_interval_bytes as u64 {
            let position = u32::try_from(meta.position).expect("segment positions fit in u32");
            self.index.push(OffsetEntry {
                relative_offset: self.relative(meta.base_offset),
                position,
            });
            self.push_time_entry();
            self.bytes_since_index_entry = 0;
        }
        self.bytes_since_index_entry += meta.total_bytes;
        self.size_bytes = meta.position + meta.total_bytes;
        self.next_offset = meta.last_offset + 1;
        self.data_end_offset = self.next_offset;
    }

    fn push_time_entry(&mut self) {
        if self.max_timestamp_ms >= 0 {
            let relative_offset = self.relative(self.offset_of_max_timestamp);
            self.time_index.push_if_newer(TimeEntry {
                timestamp_ms: self.max_timestamp_ms,
                relative_offset,
            });
        }
    }

    /// Writes the index files of a segment that takes no more appends (rolled or closed), ending
    /// the time index with the segment's largest timestamp so that it survives a restart. Returns
    /// the written files, which still need a `sync_data`.
    pub fn write_indexes(&mut self, disk: &dyn Disk) -> Result<Vec<Unsynced>, LogError> {
        write_index_files(disk, self.seal_indexes())
    }

    /// What `write_indexes` writes, encoded without I/O (the time index ended with the segment's
    /// largest timestamp): each index file's path and bytes, for `write_index_files`.
    pub fn seal_indexes(&mut self) -> Vec<IndexFile> {
        self.push_time_entry();
        [
            (INDEX_SUFFIX, self.index.encode()),
            (TIME_INDEX_SUFFIX, self.time_index.encode()),
        ]
        .map(|(suffix, bytes)| (self.path(suffix), bytes))
        .into()
    }

    /// The segment's files: its log, index and time index (the index files may never have been
    /// written).
    pub fn file_paths(&self) -> [PathBuf; 3] {
        [
            self.log_path.clone(),
            self.path(INDEX_SUFFIX),
            self.path(TIME_INDEX_SUFFIX),
        ]
    }

    /// Removes the segment's files (the index files may never have been written).
    pub fn remove_files(&self, disk: &dyn Disk) -> Result<(), LogError> {
        disk.remove_file(&self.log_path)
            .map_err(LogError::io("remove segment", &self.log_path))?;
        for suffix in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let path = self.path(suffix);
            match disk.remove_file(&path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => {
                    return Err(LogError::io("remove index", &path)(error));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A read of this segment from the batch holding `offset` (or the first batch after it) up to
    /// `offset_end` (exclusive), planned from the in-memory index without I/O. The plan holds the
    /// file and the segment's written end, below which bytes never change, so it can be run
    /// outside the broker lock, even after the segment is deleted (the open file stays readable).
    pub fn plan_read(&self, offset: i64, offset_end: i64) -> SegmentRead {
        let entry = self
            .index
            .lookup(self.relative(offset.max(self.base_offset)));
        SegmentRead {
            file: self.log.clone(),
            path: self.log_path.clone(),
            position: entry.map_or(0, |e| e.position as u64),
            // The base offset is outside the CRC: each hop checks it against the index entry or
            // the batch before, so a damaged one is refused rather than served (found by the
            // power-loss test).
            expected: entry.map_or(self.base_offset, |e| {
                self.base_offset + i64::from(e.relative_offset)
            }),
            written_bytes: self.written_bytes,
            offset,
            offset_end,
            gaps: self.gaps,
        }
    }

    /// Plans the search for the first batch ending at or after `offset_min` whose max timestamp
    /// is at or after `timestamp_ms`, from the indexes (in memory, no I/O); the scan of the
    /// batch headers runs later, outside the broker lock ([`TimestampScan::run`]).
    pub fn plan_timestamp(&self, timestamp_ms: i64, offset_min: i64) -> TimestampScan {
        let from_time = self
            .time_index
            .lookup(timestamp_ms)
            .map_or(self.base_offset, |e| {
                self.base_offset + e.relative_offset as i64
            });
        let from = from_time
            .max(offset_min)
            .min(self.next_offset - 1)
            .max(self.base_offset);
        let start = self
            .index
            .lookup(self.relative(from))
            .map_or(0, |e| e.position);
        TimestampScan {
            file: self.log.clone(),
            path: self.log_path.clone(),
            written_bytes: self.written_bytes,
            start: u64::from(start),
            timestamp_ms,
            offset_min,
        }
    }
}

/// The scan of one segment's batch headers for a timestamp, planned under the broker lock
/// ([`Segment::plan_timestamp`]) and run outside it: it reads only below the segment's written
/// end when planned, which never changes while the file is open.
pub struct TimestampScan {
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    written_bytes: u64,
    start: u64,
    timestamp_ms: i64,
    offset_min: i64,
}

impl TimestampScan {
    /// The first batch ending at or after the planned `offset_min` whose max timestamp is at or
    /// after the planned timestamp: (the first record's offset at or after both, or the batch's
    /// base offset raised to `offset_min`; its timestamp, or the batch's max timestamp).
    pub fn run(&self) -> Result<Option<(i64, i64)>, LogError> {
        let (timestamp_ms, offset_min) = (self.timestamp_ms, self.offset_min);
        let mut cursor = Cursor::new(
            self.file.as_ref(),
            self.written_bytes,
            self.start,
            SCAN_CHUNK_BYTES,
        );
        loop {
            match cursor
                .next()
                .map_err(LogError::io("read segment", &self.path))?
            {
                Step::End => return Ok(None),
                Step::Batch(_, view)
                    if view.last_offset() >= offset_min && view.max_timestamp() >= timestamp_ms =>
                {
                    let found = first_record_at_or_after(&view, timestamp_ms, offset_min);
                    return Ok(Some(found.unwrap_or((
                        view.base_offset().max(offset_min),
                        view.max_timestamp(),
                    ))));
                }
                Step::Batch(..) => {}
                Step::Invalid { position, reason } => {
                    return Err(LogError::corrupt(&self.path, position, reason))
                }
            }
        }
    }
}

/// A read of one segment, planned under the broker lock ([`Segment::plan_read`]) and run outside
/// it: whole batches as stored, each verified (CRC, contiguous offsets) before it is served.
pub struct SegmentRead {
    file: Arc<dyn DiskFile>,
    path: PathBuf,
    /// Where the walk starts (an index entry, or the segment's start) and the base offset the
    /// batch there must have.
    position: u64,
    expected: i64,
    /// The segment's written end when the read was planned.
    written_bytes: u64,
    /// The offset wanted, and the first offset not to serve (the high watermark or last stable
    /// offset): no batch whose base offset is at or above it is served.
    offset: i64,
    offset_end: i64,
    /// The segment was compacted: a batch may start after the offset the one before ended at.
    gaps: bool,
}

impl std::fmt::Debug for SegmentRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SegmentRead")
            .field("path", &self.path)
            .field("position", &self.position)
            .field("written_bytes", &self.written_bytes)
            .field("offset", &self.offset)
            .field("offset_end", &self.offset_end)
            .finish()
    }
}

impl SegmentRead {
    /// The whole batches from the one holding the planned offset, within `max_bytes`; with
    /// `whole_first`, the first batch is served whole whatever its size (KIP-74). The bytes are
    /// the file's as [`DiskFile::read_shared`] gives them (mapped, not copied, on a real disk).
    pub fn run(&self, max_bytes: usize, whole_first: bool) -> Result<Bytes, LogError> {
        Ok(match self.position()? {
            Some(position) => self.batches(position, max_bytes, whole_first)?.0,
            None => Bytes::new(),
        })
    }

    /// The position of the batch holding the planned offset (or the first batch after it), None
    /// if the segment ends before it. Hops header to header: the bodies are read (and verified)
    /// by `batches` only.
    pub(crate) fn position(&self) -> Result<Option<u64>, LogError> {
        let (mut position, mut expected) = (self.position, self.expected);
        while position < self.written_bytes {
            let available = self.written_bytes - position;
            if available < HEADER_BYTES as u64 {
                let reason = format!("{available} bytes at the end are not a batch header");
                return Err(LogError::corrupt(&self.path, position, reason));
            }
            let header = self.read(position, HEADER_BYTES)?;
            let span = BatchSpan::parse(&header)
                .map_err(|error| LogError::corrupt(&self.path, position, error.to_string()))?;
            if span.total_bytes as u64 > available {
                let reason = format!(
                    "batch needs {} bytes, the segment has {available} left",
                    span.total_bytes
                );
                return Err(LogError::corrupt(&self.path, position, reason));
            }
            let misplaced = if self.gaps {
                span.base_offset < expected
            } else {
                span.base_offset != expected
            };
            if misplaced || span.last_offset < span.base_offset {
                let reason = format!(
                    "batch header says offset {}, expected {expected}",
                    span.base_offset
                );
                return Err(LogError::corrupt(&self.path, position, reason));
            }
            if span.last_offset >= self.offset {
                return Ok(Some(position));
            }
            expected = span.last_offset + 1;
            position += span.total_bytes as u64;
        }
        Ok(None)
    }

    /// The whole batches from `position` on whose base offset is below the planned end, within
    /// `max_bytes` (the first whole whatever its size with `whole_first`), and whether a limit
    /// stopped the read (false: it reached the end of the segment).
    pub(crate) fn batches(
        &self,
        position: u64,
        max_bytes: usize,
        whole_first: bool,
    ) -> Result<(Bytes, bool), LogError> {
        let remaining = self.written_bytes.saturating_sub(position) as usize;
        // Enough for the first header even when the budget is smaller, to learn the batch size.
        let want = if whole_first {
            max_bytes.max(HEADER_BYTES)
        } else {
            max_bytes
        }
        .min(remaining);
        let mut data = self.read(position, want)?;
        let mut accepted = 0usize;
        let mut expected: Option<i64> = None;
        let stopped = loop {
            if accepted == data.len() {
                // A first batch bigger than max_bytes ends the read too.
                break data.len() < remaining || accepted >= max_bytes;
            }
            let at = position + accepted as u64;
            let needed = match BatchView::parse(&data[accepted..]) {
                Ok(view) => {
                    if view.base_offset() >= self.offset_end {
                        break true;
                    }
                    if let Err(reason) = verify_read_back(&view, expected, self.gaps) {
                        return Err(LogError::corrupt(&self.path, at, reason));
                    }
                    expected = Some(view.last_offset() + 1);
                    accepted += view.total_bytes();
                    continue;
                }
                Err(BatchError::Truncated { needed, .. }) if accepted + needed <= remaining => {
                    needed
                }
                Err(error) => return Err(LogError::corrupt(&self.path, at, error.to_string())),
            };
            if !(whole_first && accepted == 0) {
                break true;
            }
            // KIP-74: the first batch is served whole even when it exceeds max_bytes.
            if needed > BATCH_BYTES_MAX {
                let reason = format!("batch of {needed} bytes exceeds {BATCH_BYTES_MAX}");
                return Err(LogError::corrupt(&self.path, at, reason));
            }
            data = self.read(position, needed)?;
        };
        Ok((data.slice(..accepted), stopped))
    }

    fn read(&self, position: u64, len: usize) -> Result<Bytes, LogError> {
        self.file
            .read_shared(position, len)
            .map_err(LogError::io("read segment", &self.path))
    }
}

/// The checks a batch passes on its way out, pairing the ones it passed on its way in.
fn verify_read_back(view: &BatchView<'_>, expected: Option<i64>, gaps: bool) -> Result<(), String> {
    view.validate().map_err(|error| {
        format!(
            "batch at offset {} read back invalid: {error}",
            view.base_offset()
        )
    })?;
    // The partition leader epoch is outside the CRC too; the log writes 0 (one broker).
    if view.partition_leader_epoch() != 0 {
        return Err(format!(
            "batch at offset {} read back with partition leader epoch {}, the log writes 0",
            view.base_offset(),
            view.partition_leader_epoch()
        ));
    }
    match expected {
        Some(expected)
            if view.base_offset() < expected || (!gaps && view.base_offset() != expected) =>
        {
            Err(format!(
                "batch at offset {} follows a batch ending before {expected}",
                view.base_offset()
            ))
        }
        _ => Ok(()),
    }
}

/// What a sealed segment's index files said, once checked.
pub(crate) struct Loaded {
    pub next_offset: i64,
    pub size_bytes: u64,
    pub index: OffsetIndex,
    pub time_index: TimeIndex,
}

/// Walks the batches of a file from a position, reading `chunk_bytes` at a time.
pub(crate) struct Cursor<'f> {
    file: &'f dyn DiskFile,
    end: u64,
    position: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk_bytes: usize,
}

/// Kafka's answer to ListOffsets by timestamp inside the batch found: the first record at or
/// after `offset_min` whose timestamp reaches `timestamp_ms`, with that timestamp. `None` when
/// the records cannot be read without decompressing, when every record carries the batch's time
/// (LogAppendTime), or when the CRC does not match (the caller then answers with the batch, and
/// a read of it reports the damage).
fn first_record_at_or_after(
    view: &BatchView,
    timestamp_ms: i64,
    offset_min: i64,
) -> Option<(i64, i64)> {
    if view.is_log_append_time() || view.verify_crc().is_err() {
        return None;
    }
    let records = view.records().ok()?;
    records.iter().find_map(|record| {
        let offset = view.base_offset() + i64::from(record.offset_delta);
        let timestamp = view.base_timestamp().saturating_add(record.timestamp_delta);
        (offset >= offset_min && timestamp >= timestamp_ms).then_some((offset, timestamp))
    })
}

pub(crate) enum Step<'b> {
    End,
    /// A batch whose header and length are sound (its CRC is not checked yet).
    Batch(u64, BatchView<'b>),
    /// Bytes at `position` that are not a whole batch; the cursor stays there.
    Invalid {
        position: u64,
        reason: String,
    },
}

impl<'f> Cursor<'f> {
    pub fn new(file: &'f dyn DiskFile, end: u64, position: u64, chunk_bytes: usize) -> Cursor<'f> {
        Cursor {
            file,
            end,
            position,
            buf: Vec::new(),
            buf_start: position,
            chunk_bytes,
        }
    }

    pub fn next(&mut self) -> io::Result<Step<'_>> {
        if self.position >= self.end {
            return Ok(Step::End);
        }
        // Decide first, borrow last: the view returned borrows the buffer. Each refill holds at
        // least the bytes the last probe asked for, so `needed` grows and the loop ends.
        loop {
            match self.probe() {
                Ok(()) => break,
                Err(BatchError::Truncated { needed, .. }) => {
                    if let Some(reason) = self.unreadable(needed) {
                        return Ok(Step::Invalid {
                            position: self.position,
                            reason,
                        });
                    }
                    self.refill(needed.max(self.chunk_bytes))?;
                }
                Err(error) => {
                    return Ok(Step::Invalid {
                        position: self.position,
                        reason: error.to_string(),
                    })
                }
            }
        }
        let position = self.position;
        let view = BatchView::parse(&self.buf[(position - self.buf_start) as usize..])
            .expect("probed above");
        self.position += view.total_bytes() as u64;
        Ok(Step::Batch(position, view))
    }

    /// Parses the batch at the cursor from what is buffered, reporting only whether it parses.
    fn probe(&self) -> Result<(), BatchError> {
        let buffered = self.buf_start..self.buf_start + self.buf.len() as u64;
        if !buffered.contains(&self.position) {
            return Err(BatchError::Truncated {
                available: 0,
                needed: HEADER_BYTES,
            });
        }
        BatchView::parse(&self.buf[(self.position - self.buf_start) as usize..]).map(|_| ())
    }

    /// Why a batch of `needed` bytes at the cursor cannot be read, if it cannot.
    fn unreadable(&self, needed: usize) -> Option<String> {
        let available = self.end - self.position;
        if needed as u64 > available {
            return Some(format!(
                "batch needs {needed} bytes, the file has {available} left"
            ));
        }
        if needed > BATCH_BYTES_MAX {
            return Some(format!("batch of {needed} bytes exceeds {BATCH_BYTES_MAX}"));
        }
        None
    }

    fn refill(&mut self, len: usize) -> io::Result<()> {
        let len = (len as u64).min(self.end - self.position) as usize;
        self.buf.resize(len, 0);
        self.buf_start = self.position;
        self.file.read_exact_at(self.position, &mut self.buf)
    }
}

/// Searches `file[from..end]` for a valid batch whose base offset is one of `offsets`: evidence
/// that the damage before it is not a torn tail. Returns its position and base offset.
pub(crate) fn find_batch(
    file: &dyn DiskFile,
    from: u64,
    end: u64,
    offsets: &[i64],
) -> io::Result<Option<(u64, i64)>> {
    const NEEDLE_BYTES: usize = 8;
    let needles: Vec<[u8; NEEDLE_BYTES]> = offsets.iter().map(|o| o.to_be_bytes()).collect();
    let mut chunk = Vec::new();
    let mut chunk_start = from;
    while chunk_start + NEEDLE_BYTES as u64 <= end {
        let len = (SEARCH_CHUNK_BYTES as u64).min(end - chunk_start) as usize;
        chunk.resize(len, 0);
        file.read_exact_at(chunk_start, &mut chunk)?;
        for (at, window) in chunk.windows(NEEDLE_BYTES).enumerate() {
            if !needles.iter().any(|needle| window == needle) {
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
        // Overlap by a needle minus one byte so that a match across chunks is not missed.
        chunk_start += (len - (NEEDLE_BYTES - 1)).max(1) as u64;
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::SimDisk;
    use expect_test::{expect, Expect};
    use wire::batch::{assign_base_offset, build_batch, ProducerFields};

    fn check_name(name: &str, expect: Expect) {
        expect.assert_eq(&format!("{:?}", parse_file_name(name)));
    }

    #[test]
    fn file_names() {
        assert_eq!(file_name(42, LOG_SUFFIX), "00000000000000000042.log");
        check_name(
            "00000000000000000042.log",
            expect![[r#"Some((42, ".log"))"#]],
        );
        check_name(
            "00000000000000000042.timeindex",
            expect![[r#"Some((42, ".timeindex"))"#]],
        );
        check_name("42.log", expect!["None"]);
        check_name("0000000000000000004x.log", expect!["None"]);
        check_name("recovery-point.checkpoint", expect!["None"]);
    }

    fn batch(offset: i64, records: usize, payload: usize) -> Vec<u8> {
        let value = vec![7u8; payload];
        let records: Vec<_> = (0..records).map(|_| (None, Some(&value[..]))).collect();
        let mut batch = build_batch(&records, 1_000 + offset, ProducerFields::NONE, 0);
        assign_base_offset(&mut batch, offset, 0);
        batch
    }

    fn file_with(bytes: &[u8]) -> (SimDisk, Arc<dyn DiskFile>) {
        let disk = SimDisk::new();
        let file = disk.open(Path::new("/f"), true).unwrap();
        file.write_all_at(0, bytes).unwrap();
        (disk, file)
    }

    /// Walks a file with a tiny chunk size, so that batches straddle chunk boundaries.
    fn walk(bytes: &[u8], chunk_bytes: usize) -> String {
        let (_disk, file) = file_with(bytes);
        let mut cursor = Cursor::new(file.as_ref(), bytes.len() as u64, 0, chunk_bytes);
        let mut steps = Vec::new();
        loop {
            match cursor.next().unwrap() {
                Step::End => break,
                Step::Batch(position, view) => {
                    steps.push(format!("{position}:{}", view.base_offset()))
                }
                Step::Invalid { position, reason } => {
                    steps.push(format!("{position}: {reason}"));
                    break;
                }
            }
        }
        steps.join(" | ")
    }

    #[test]
    fn cursor_walks_batches_across_chunks() {
        let mut bytes = batch(0, 3, 10);
        bytes.extend(batch(3, 1, 200));
        bytes.extend(batch(4, 2, 5));
        let expected = expect!["0:0 | 112:3 | 382:4"];
        for chunk_bytes in [1, 61, 100, 4096] {
            expected.assert_eq(&walk(&bytes, chunk_bytes));
        }
    }

    #[test]
    fn cursor_stops_at_a_torn_batch() {
        let mut bytes = batch(0, 3, 10);
        bytes.extend(&batch(3, 1, 200)[..100]);
        expect!["0:0 | 112: batch needs 270 bytes, the file has 100 left"]
            .assert_eq(&walk(&bytes, 64));
        let mut zeros = batch(0, 1, 1);
        zeros.extend([0u8; 70]);
        expect!["0:0 | 69: unsupported record batch magic 0 (only v2 is accepted)"]
            .assert_eq(&walk(&zeros, 64));
    }

    #[test]
    fn find_batch_skips_false_matches() {
        let mut bytes = vec![0u8; 3];
        bytes.extend(5i64.to_be_bytes()); // the offset alone, not a batch
        bytes.extend(batch(5, 1, 1));
        let (_disk, file) = file_with(&bytes);
        assert_eq!(
            find_batch(file.as_ref(), 0, bytes.len() as u64, &[5]).unwrap(),
            Some((11, 5))
        );
        assert_eq!(
            find_batch(file.as_ref(), 0, bytes.len() as u64, &[6, 5]).unwrap(),
            Some((11, 5))
        );
        assert_eq!(
            find_batch(file.as_ref(), 0, bytes.len() as u64, &[6]).unwrap(),
            None
        );
        assert_eq!(
            find_batch(file.as_ref(), 12, bytes.len() as u64, &[5]).unwrap(),
            None
        );
    }
}
