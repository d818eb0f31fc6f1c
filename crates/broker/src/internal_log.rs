//! An internal log of coordinator records: the group log (`__consumer_offsets-0`) and the
//! transaction log (`__transaction_state-0`). Each is a partition log in the data directory,
//! not listed as a topic, holding uncompressed v2 batches whose records are the coordinator's
//! (key, value) pairs, a null value being a tombstone. On start the whole log is read back (CRC
//! checked by the storage layer) and replayed in order; a record that does not decode stops the
//! broker.
//!
//! Compaction: once a log has grown past its compaction size (and past twice what its last
//! compaction left), the coordinator's snapshot (every live key's last value) is appended like
//! any record; once the group commit has fsynced it, everything before it is deleted. A crash
//! in between leaves the old records and the snapshot, whose replay gives the same state.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use storage::{Disk, LogConfig, PartitionLog};
use wire::batch::{build_batch, Batches, ProducerFields};

use crate::BrokerError;

/// Segment size of internal logs, small so that deleting a compacted prefix frees space soon.
const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes read per step when replaying.
const REPLAY_CHUNK_BYTES: usize = 1024 * 1024;
/// Records per batch when appending.
const RECORDS_PER_BATCH: usize = 1000;
/// An internal log larger than this is compacted (`BrokerConfig::internal_log_compact_bytes`).
pub const INTERNAL_LOG_COMPACT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// A coordinator record as an internal log stores it: a key and a value (none: a tombstone).
pub trait KeyValue {
    fn key_value(&self) -> (&[u8], Option<&[u8]>);
}

impl KeyValue for group::Record {
    fn key_value(&self) -> (&[u8], Option<&[u8]>) {
        (&self.key, self.value.as_deref())
    }
}

impl KeyValue for txn::Record {
    fn key_value(&self) -> (&[u8], Option<&[u8]>) {
        (&self.key, self.value.as_deref())
    }
}

pub struct InternalLog {
    log: PartitionLog,
    /// The log's name in traces and errors (`__consumer_offsets`, `__transaction_state`).
    name: &'static str,
    /// A snapshot appended at `[start, end)`, waiting to be fsynced before the records below
    /// `start` are deleted.
    compacting: Option<(i64, i64)>,
    /// The log's size when its last compaction finished (0 before any).
    compacted_bytes: u64,
}

impl InternalLog {
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        name: &'static str,
        now_ms: i64,
    ) -> Result<InternalLog, BrokerError> {
        let config = LogConfig {
            segment_bytes: SEGMENT_BYTES,
            retention_bytes: -1,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let dir = data_dir.join(format!("{name}-0"));
        let log =
            PartitionLog::open(disk, &dir, config, now_ms).map_err(|source| BrokerError::Log {
                topic: name.to_string(),
                partition: 0,
                source,
            })?;
        Ok(InternalLog {
            log,
            name,
            compacting: None,
            compacted_bytes: 0,
        })
    }

    /// Whether the log should be compacted: larger than `threshold_bytes` and than twice what
    /// its last compaction left (a large snapshot is not rewritten over and over), and no
    /// compaction under way.
    fn wants_compaction(&self, threshold_bytes: u64) -> bool {
        let size = self.log.size_bytes();
        self.compacting.is_none()
            && size > threshold_bytes
            && size > self.compacted_bytes.saturating_mul(2)
    }

    /// Run-time compaction: finishes one whose snapshot is fsynced, or begins one (appending
    /// `snapshot()`, the coordinator's live records) when the log wants it. Returns whether
    /// records were appended or segments deleted: the caller then takes a sync ticket (the
    /// round writes the one and removes the files of the other).
    pub fn maintain<R: KeyValue>(
        &mut self,
        now_ms: i64,
        threshold_bytes: u64,
        snapshot: impl FnOnce() -> Vec<R>,
    ) -> Result<bool, BrokerError> {
        // A finished compaction deleted segments, whose files the next sync removes.
        let finished = self.finish_compaction()?;
        if !self.wants_compaction(threshold_bytes) {
            return Ok(finished);
        }
        self.begin_compaction(&snapshot(), now_ms)?;
        Ok(true)
    }

    /// Compaction at start-up, when the log wants it: the snapshot is appended and fsynced under
    /// the caller's lock (nothing else runs yet), then what precedes it is deleted.
    pub fn compact_at_open<R: KeyValue>(
        &mut self,
        now_ms: i64,
        threshold_bytes: u64,
        snapshot: impl FnOnce() -> Vec<R>,
    ) -> Result<(), BrokerError> {
        if !self.wants_compaction(threshold_bytes) {
            return Ok(());
        }
        self.begin_compaction(&snapshot(), now_ms)?;
        if let Some(work) = self.log.take_sync_work() {
            work.run()
                .map_err(|source| BrokerError::io("sync internal log", self.log.dir(), source))?;
            self.log.mark_synced(work.offset());
        }
        let finished = self.finish_compaction()?;
        assert!(finished, "a synced snapshot finishes its compaction");
        // The deleted segments' files go now, before anything else runs.
        if let Some(work) = self.log.take_sync_work() {
            work.run()
                .map_err(|source| BrokerError::io("sync internal log", self.log.dir(), source))?;
            self.log.mark_synced(work.offset());
        }
        Ok(())
    }

    /// Appends a snapshot; [`InternalLog::finish_compaction`] deletes what precedes it once it
    /// is fsynced.
    fn begin_compaction(
        &mut self,
        snapshot: &[impl KeyValue],
        now_ms: i64,
    ) -> Result<(), BrokerError> {
        assert!(self.compacting.is_none(), "one compaction at a time");
        let start = self.log.log_end_offset();
        self.append(snapshot, now_ms)?;
        self.compacting = Some((start, self.log.log_end_offset()));
        Ok(())
    }

    /// Deletes the records before the snapshot of the compaction under way once the snapshot is
    /// fsynced; returns whether it did.
    fn finish_compaction(&mut self) -> Result<bool, BrokerError> {
        let Some((start, end)) = self.compacting else {
            return Ok(false);
        };
        if self.log.synced_offset() < end {
            return Ok(false);
        }
        let before = self.log.size_bytes();
        self.log
            .delete_records_before(start)
            .map_err(|source| log_error(self.name, source))?;
        self.compacting = None;
        self.compacted_bytes = self.log.size_bytes();
        tracing::info!(
            log = self.name,
            before,
            after = self.compacted_bytes,
            snapshot_records_from = start,
            "compacted internal log"
        );
        Ok(true)
    }

    /// The first offset still in the log (raised by compaction).
    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    pub fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    /// Bytes of the log's segments.
    pub fn size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    pub fn close(self) -> Result<(), BrokerError> {
        let name = self.name;
        self.log.close().map_err(|source| log_error(name, source))
    }

    /// Appends (key, value) records, written to the OS; the caller takes a sync ticket.
    pub fn append(&mut self, records: &[impl KeyValue], now_ms: i64) -> Result<(), BrokerError> {
        let records: Vec<_> = records
            .iter()
            .map(|r| {
                let (key, value) = r.key_value();
                (Some(key), value)
            })
            .collect();
        for chunk in records.chunks(RECORDS_PER_BATCH) {
            let batch = build_batch(chunk, now_ms, ProducerFields::NONE, 0);
            self.log
                .append(batch.into(), now_ms)
                .map_err(|source| log_error(self.name, source))?;
        }
        Ok(())
    }

    /// Feeds every record, oldest first, to `apply`; returns how many there were.
    pub fn replay(
        &self,
        mut apply: impl FnMut(Bytes, Option<Bytes>) -> Result<(), String>,
    ) -> Result<usize, BrokerError> {
        let end = self.log.log_end_offset();
        let mut offset = self.log.log_start_offset();
        let mut replayed = 0;
        while offset < end {
            let bytes = self
                .log
                .read(offset, REPLAY_CHUNK_BYTES, end)
                .map_err(|source| log_error(self.name, source))?;
            assert!(
                !bytes.is_empty(),
                "{} read below its end returned nothing",
                self.name
            );
            for item in Batches::new(&bytes) {
                let (_, batch) =
                    item.map_err(|e| self.corrupt(format!("batch at {offset}: {e}")))?;
                let records = batch
                    .records()
                    .map_err(|e| self.corrupt(format!("batch {}: {e}", batch.base_offset())))?;
                for record in records {
                    let key = record
                        .key
                        .ok_or_else(|| self.corrupt("record without key".into()))?;
                    let value = record.value.map(Bytes::copy_from_slice);
                    apply(Bytes::copy_from_slice(key), value).map_err(|e| self.corrupt(e))?;
                    replayed += 1;
                }
                offset = batch.last_offset() + 1;
            }
        }
        Ok(replayed)
    }

    fn corrupt(&self, reason: String) -> BrokerError {
        BrokerError::Meta(format!("internal log {}-0: {reason}", self.name))
    }
}

fn log_error(name: &str, source: storage::LogError) -> BrokerError {
    BrokerError::Log {
        topic: name.to_string(),
        partition: 0,
        source,
    }
}
