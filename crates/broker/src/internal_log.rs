//! An internal log of coordinator records: the group log (`__consumer_offsets-0`) and the
//! transaction log (`__transaction_state-0`). Each is a partition log in the data directory,
//! not listed as a topic, holding uncompressed v2 batches whose records are the coordinator's
//! (key, value) pairs, a null value being a tombstone. On start the whole log is read back (CRC
//! checked by the storage layer) and replayed in order; a record that does not decode stops the
//! broker.

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

pub struct InternalLog {
    log: PartitionLog,
    /// The log's name in traces and errors (`__consumer_offsets`, `__transaction_state`).
    name: &'static str,
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
        Ok(InternalLog { log, name })
    }

    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    pub fn close(self) -> Result<(), BrokerError> {
        let name = self.name;
        self.log.close().map_err(|source| log_error(name, source))
    }

    /// Appends (key, value) records, written to the OS; the caller takes a sync ticket.
    pub fn append<'a>(
        &mut self,
        records: impl IntoIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
        now_ms: i64,
    ) -> Result<(), BrokerError> {
        let records: Vec<_> = records.into_iter().map(|(k, v)| (Some(k), v)).collect();
        for chunk in records.chunks(RECORDS_PER_BATCH) {
            let mut batch = build_batch(chunk, now_ms, ProducerFields::NONE, 0);
            self.log
                .append(&mut batch, now_ms)
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
