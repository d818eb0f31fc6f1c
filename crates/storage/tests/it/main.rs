//! The storage crate's one integration-test binary: the partition log through its public API, on
//! the real file system and on `SimDisk` with crashes.

mod arbitrary;
mod checkpoint;
mod compaction;
mod crash;
mod powerloss;
mod props;
mod read;
mod retention;
mod wal;

use std::path::Path;
use std::sync::Arc;

use storage::{AppendInfo, LogConfig, PartitionLog, SimDisk};
use wire::batch::{build_batch, Batches, ProducerFields};

/// The partition directory used on `SimDisk`.
pub const DIR: &str = "/p0";

/// A batch of `records` records whose values are `value_bytes` long and derived from `seed`, so
/// that two batches never have the same bytes.
pub fn batch(seed: u64, records: usize, value_bytes: usize, timestamp_ms: i64) -> Vec<u8> {
    let values: Vec<Vec<u8>> = (0..records)
        .map(|i| {
            let mut value = format!("{seed}:{i}:").into_bytes();
            value.resize(value_bytes.max(value.len()), b'x');
            value
        })
        .collect();
    let records: Vec<_> = values.iter().map(|v| (None, Some(&v[..]))).collect();
    build_batch(&records, timestamp_ms, ProducerFields::NONE, 0)
}

/// Small segments and a dense index, so that a few kilobytes exercise rolls and index lookups.
pub fn small_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 100,
        ..LogConfig::default()
    }
}

pub fn open_sim(disk: &SimDisk, config: LogConfig) -> PartitionLog {
    PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config, 0).expect("open log")
}

pub fn append(log: &mut PartitionLog, batch: &[u8], now_ms: i64) -> AppendInfo {
    let bytes = batch.to_vec();
    log.append(bytes::Bytes::copy_from_slice(&bytes), now_ms)
        .expect("append")
}

/// The bytes the log stores for `sent` (batches packed back to back) appended as `info` says:
/// the same bytes with each batch's base offset assigned.
pub fn stored(sent: &[u8], info: &AppendInfo) -> Vec<u8> {
    let mut stored = sent.to_vec();
    let mut bases = info.batch_base_offsets.iter();
    let mut position = 0;
    while position < stored.len() {
        let span = wire::batch::BatchSpan::parse(&stored[position..]).expect("whole batches");
        let base = *bases.next().expect("one base offset per batch");
        wire::batch::assign_base_offset(&mut stored[position..], base, 0);
        position += span.total_bytes;
    }
    assert!(bases.next().is_none(), "one batch per base offset");
    stored
}

/// Runs a group commit the way the broker will: take under the lock, run, report.
pub fn sync(log: &mut PartitionLog) {
    if let Some(work) = log.take_sync_work() {
        work.run().expect("sync");
        log.mark_synced(work.offset());
    }
}

/// "base..last" for each batch in `bytes`.
pub fn summary(bytes: &[u8]) -> String {
    let ranges: Vec<String> = Batches::new(bytes)
        .map(|batch| {
            let (_, view) = batch.expect("whole batches");
            format!("{}..{}", view.base_offset(), view.last_offset())
        })
        .collect();
    ranges.join(" ")
}

/// Reads the whole log from its start.
pub fn read_all(log: &PartitionLog) -> Vec<u8> {
    log.read(log.log_start_offset(), usize::MAX, i64::MAX)
        .expect("read")
}

#[test]
fn handles_cross_threads() {
    // The server runs `SyncWork` on a blocking thread and shares the logs behind a lock.
    fn check<T: Send + Sync>() {}
    check::<PartitionLog>();
    check::<storage::SyncWork>();
    check::<SimDisk>();
}
