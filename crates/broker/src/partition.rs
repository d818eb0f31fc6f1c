//! One partition: its log, the offsets Kafka clients see, and the producer state of idempotent
//! producers writing to it. ferry has one replica, so the high watermark is what the fsync made
//! durable (the group commit moves it, and releases `acks=all` answers at the same moment).
//!
//! The producer state and the transaction index are rebuilt on open from the newest usable
//! snapshot plus the batch headers after it (read in chunks with `PartitionLog::read`; only
//! transaction markers are decoded), and snapshotted at every segment roll, every
//! `SNAPSHOT_INTERVAL_MS` while they change, and at a clean close.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;

use storage::{AppendInfo, Disk, LogError, PartitionLog};
use wire::batch::Batches;

use crate::producers::snapshot::Snapshot;
use crate::producers::{files, BatchHeader, ProducerStateTable, Verdict, SNAPSHOT_INTERVAL_MS};
use crate::txn_index::{marker_batch, AbortedTxn, Marker, TxnIndex};

/// Bytes read per step when replaying the log's tail into the producer state.
const REPLAY_CHUNK_BYTES: usize = 8 << 20;

pub struct Partition {
    log: PartitionLog,
    disk: Arc<dyn Disk>,
    producers: ProducerStateTable,
    /// The offset of the newest snapshot on disk, written or loaded.
    snapshot_offset: Option<i64>,
    snapshot_written_ms: i64,
    /// The producer state or the transaction index changed since the newest snapshot.
    state_changed: bool,
    /// Open transactions and aborted ones, for the last stable offset and read_committed.
    txns: TxnIndex,
    /// Bytes of producers' batches appended since the partition was opened (a metric).
    appended_bytes: u64,
}

impl Partition {
    /// Wraps a recovered log and rebuilds its producer state.
    pub fn open(
        disk: Arc<dyn Disk>,
        log: PartitionLog,
        now_ms: i64,
    ) -> Result<Partition, LogError> {
        let log_end = log.log_end_offset();
        let loaded = files::load_newest(disk.as_ref(), log.dir(), log_end)?;
        let snapshot_offset = loaded.as_ref().map(|(offset, _)| *offset);
        let Snapshot {
            mut producers,
            mut txns,
        } = loaded.map(|(_, state)| state).unwrap_or_default();
        let from = snapshot_offset.unwrap_or(0);
        let (batches, bytes) = replay(&log, &mut producers, &mut txns, from, now_ms)?;
        txns.truncate_before(log.log_start_offset());
        let mut partition = Partition {
            log,
            disk,
            producers,
            snapshot_offset,
            snapshot_written_ms: now_ms,
            state_changed: false,
            txns,
            appended_bytes: 0,
        };
        if bytes > 0 {
            tracing::info!(
                dir = %partition.log.dir().display(),
                snapshot_offset = ?snapshot_offset,
                replayed_batches = batches,
                replayed_bytes = bytes,
                producers = partition.producers.len(),
                open_transactions = partition.txns.ongoing_count(),
                "rebuilt producer and transaction state from the log"
            );
            // The next open starts from here.
            partition.write_snapshot(log_end, now_ms, false);
        }
        Ok(partition)
    }

    pub fn log(&self) -> &PartitionLog {
        &self.log
    }

    pub fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    /// The transactions open in this partition: producer id to first offset.
    pub fn ongoing_transactions(&self) -> &std::collections::BTreeMap<i64, i64> {
        self.txns.ongoing()
    }

    pub fn producers(&self) -> &ProducerStateTable {
        &self.producers
    }

    /// The high watermark: the end of the durable (fsynced) part of the log. Consumers read
    /// only below it, so a record they see is never taken back by a power loss; a record the
    /// group commit has not synced yet is written but invisible, as in Kafka before replication.
    pub fn high_watermark(&self) -> i64 {
        self.log.synced_offset()
    }

    /// The log end offset: the next offset to be written, synced or not.
    pub fn log_end_offset(&self) -> i64 {
        self.log.log_end_offset()
    }

    /// The last stable offset: below the first offset of every open transaction.
    pub fn last_stable_offset(&self) -> i64 {
        self.txns.last_stable_offset(self.high_watermark())
    }

    /// Aborted transactions overlapping `[from, to)`, for read_committed fetches.
    pub fn aborted_in(&self, from: i64, to: i64) -> Vec<AbortedTxn> {
        self.txns.aborted_in(from, to)
    }

    /// Appends a transaction marker (control batch) ending `marker.producer_id`'s transaction.
    /// Markers carry no sequence, so they do not touch the idempotent producer state.
    pub fn append_marker(&mut self, marker: Marker, now_ms: i64) -> Result<(), LogError> {
        let bytes = Bytes::from(marker_batch(marker, 0, now_ms));
        let info = self.log.append(bytes.clone(), now_ms)?;
        self.state_changed = true;
        self.index_txns(&bytes, &info.batch_base_offsets)
    }

    /// Indexes appended batches; `base_offsets` are their final offsets.
    fn index_txns(&mut self, appended: &[u8], base_offsets: &[i64]) -> Result<(), LogError> {
        for (item, &base_offset) in Batches::new(appended).zip(base_offsets) {
            let (_, view) = item.map_err(|e| corrupt(self.log.dir(), e.to_string()))?;
            self.txns
                .on_batch(&view, base_offset)
                .map_err(|e| corrupt(self.log.dir(), e))?;
        }
        Ok(())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    /// Bytes of producers' batches appended since the partition was opened.
    pub fn appended_bytes(&self) -> u64 {
        self.appended_bytes
    }

    /// Judges a produce request's batches against the producer state (see `producers::state`).
    pub fn check_producers(&self, headers: &[BatchHeader]) -> Verdict {
        self.producers.check(headers)
    }

    /// Appends batches that `check_producers` accepted (`headers` are theirs, in order) and
    /// records them in the producer state. A segment roll first snapshots the state as it stood
    /// at the new segment's base offset.
    pub fn append(
        &mut self,
        batches: Bytes,
        headers: &[BatchHeader],
        now_ms: i64,
    ) -> Result<AppendInfo, LogError> {
        let segments_before = self.log.segment_count();
        let info = self.log.append(batches.clone(), now_ms)?;
        self.appended_bytes += batches.len() as u64;
        assert_eq!(
            info.batch_base_offsets.len(),
            headers.len(),
            "one header per appended batch"
        );
        if self.log.segment_count() > segments_before {
            self.defer_snapshot(info.first_offset, now_ms);
        }
        self.index_txns(&batches, &info.batch_base_offsets)?;
        for (header, &base_offset) in headers.iter().zip(&info.batch_base_offsets) {
            if header.has_producer_id() {
                self.producers.record(header, base_offset, now_ms);
                self.state_changed = true;
            }
        }
        Ok(info)
    }

    /// Expires idle producers (when `expiration_ms` is given) and writes a periodic snapshot if
    /// the state changed and the last one is `SNAPSHOT_INTERVAL_MS` old. Returns how many
    /// producers expired.
    pub fn maintain_producers(&mut self, now_ms: i64, expiration_ms: Option<i64>) -> usize {
        let expired = expiration_ms.map_or(0, |ms| self.producers.expire(now_ms, ms));
        if expired > 0 {
            self.state_changed = true;
            tracing::debug!(dir = %self.log.dir().display(), expired, "expired idle producer ids");
        }
        if self.state_changed
            && now_ms.saturating_sub(self.snapshot_written_ms) >= SNAPSHOT_INTERVAL_MS
        {
            self.defer_snapshot(self.log.log_end_offset(), now_ms);
        }
        expired
    }

    /// Encodes a snapshot of the current producer state at `offset` (as `write_snapshot`) and
    /// leaves writing it, and deleting older ones, to the log's next group-commit round,
    /// outside the broker's lock; the caller makes sure one comes (an append does). Failure,
    /// then or now, is only traced: a snapshot is a cache, the log stays the truth.
    fn defer_snapshot(&mut self, offset: i64, now_ms: i64) {
        let dir = self.log.dir();
        self.txns.truncate_before(self.log.log_start_offset());
        let bytes = match files::encode(dir, &self.producers, &self.txns, offset) {
            Ok(bytes) => bytes,
            Err(error) => {
                tracing::warn!(%error, "cannot write a producer snapshot; recovery will replay more of the log");
                return;
            }
        };
        self.log.defer(Box::new(move |disk, dir| {
            let written = files::write_encoded(disk, dir, offset, &bytes, false)
                .and_then(|()| files::prune(disk, dir));
            if let Err(error) = written {
                tracing::warn!(%error, "cannot write a producer snapshot; recovery will replay more of the log");
            }
        }));
        self.snapshot_offset = Some(offset);
        self.snapshot_written_ms = now_ms;
        self.state_changed = false;
    }

    /// Writes a snapshot of the current producer state at `offset` (which must be the log end
    /// or, during an append, the base offset of the batches not yet recorded) and deletes older
    /// ones, now: at open and at a clean close, when nothing else runs. Failure is only traced:
    /// a snapshot is a cache, the log stays the truth.
    fn write_snapshot(&mut self, offset: i64, now_ms: i64, sync: bool) {
        let dir = self.log.dir();
        self.txns.truncate_before(self.log.log_start_offset());
        let written = files::write(
            self.disk.as_ref(),
            dir,
            &self.producers,
            &self.txns,
            offset,
            sync,
        )
        .and_then(|()| files::prune(self.disk.as_ref(), dir));
        match written {
            Ok(()) => {
                self.snapshot_offset = Some(offset);
                self.snapshot_written_ms = now_ms;
                self.state_changed = false;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot write a producer snapshot; recovery will replay more of the log");
            }
        }
    }

    /// Closes the log cleanly, then snapshots the producer state at the log end durably, so the
    /// next open replays nothing.
    pub fn close(mut self) -> Result<(), LogError> {
        let log_end = self.log.log_end_offset();
        // A snapshot still deferred would be written by the log's close after this one, and
        // not fsynced: write it now, durably, once those have run.
        let deferred = self.log.has_deferred_files();
        if self.snapshot_offset != Some(log_end) || self.state_changed || deferred {
            self.log.run_deferred_files()?;
            self.write_snapshot(log_end, self.snapshot_written_ms, true);
        }
        self.log.close()
    }

    pub fn delete(self) -> Result<(), LogError> {
        self.log.delete()
    }
}

/// Replays the batch headers of `log` from offset `from` to its end into `producers` and
/// `txns`; returns the batches and bytes read. Nothing is validated: the log holds only accepted
/// batches.
fn replay(
    log: &PartitionLog,
    producers: &mut ProducerStateTable,
    txns: &mut TxnIndex,
    from: i64,
    now_ms: i64,
) -> Result<(u64, u64), LogError> {
    let end = log.log_end_offset();
    let mut offset = from.max(log.log_start_offset());
    let (mut batches, mut bytes) = (0u64, 0u64);
    while offset < end {
        let chunk = log.read(offset, REPLAY_CHUNK_BYTES, end)?;
        if chunk.is_empty() {
            break;
        }
        bytes += chunk.len() as u64;
        for item in Batches::new(&chunk) {
            let (_, view) = item.map_err(|error| LogError::Corrupt {
                path: log.dir().to_path_buf(),
                position: 0,
                reason: format!("batch at offset {offset} read back unparsable: {error}"),
            })?;
            offset = view.last_offset() + 1;
            // A snapshot at `from` covers every batch that starts below it.
            if view.base_offset() < from {
                continue;
            }
            batches += 1;
            txns.on_batch(&view, view.base_offset())
                .map_err(|e| corrupt(log.dir(), e))?;
            if view.is_control() {
                continue;
            }
            let header = BatchHeader::of(&view);
            // The append time is not stored; the batch's max timestamp stands in for it.
            let timestamp_ms = match header.max_timestamp_ms {
                ts if ts >= 0 => ts.min(now_ms),
                _ => now_ms,
            };
            producers.record(&header, view.base_offset(), timestamp_ms);
        }
    }
    Ok((batches, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use storage::{LogConfig, SimDisk};
    use wire::batch::{build_batch, BatchView, ProducerFields};

    const NOW_MS: i64 = 1_700_000_000_000;

    fn open(disk: &Arc<SimDisk>, segment_bytes: u64) -> Partition {
        let config = LogConfig {
            segment_bytes,
            ..LogConfig::default()
        };
        let dir = Path::new("/t-0");
        let disk: Arc<dyn Disk> = disk.clone();
        let log = PartitionLog::open(disk.clone(), dir, config, NOW_MS).unwrap();
        Partition::open(disk, log, NOW_MS).unwrap()
    }

    /// Appends a batch of `count` records of producer `id` (epoch 0) from `seq`, as the produce
    /// handler does: check, then append.
    fn produce(p: &mut Partition, id: i64, seq: i32, count: usize) -> Verdict {
        let records = vec![(None, Some(&b"v"[..])); count];
        let producer = ProducerFields {
            producer_id: id,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let bytes = build_batch(&records, NOW_MS, producer, 0);
        let header = BatchHeader::of(&BatchView::parse(&bytes).unwrap());
        let verdict = p.check_producers(&[header]);
        if verdict == Verdict::Append {
            p.append(bytes.into(), &[header], NOW_MS).unwrap();
        }
        verdict
    }

    fn sync(p: &mut Partition) {
        let work = p.log_mut().take_sync_work().unwrap();
        work.run().unwrap();
        p.log_mut().mark_synced(work.offset());
    }

    fn snapshots(disk: &SimDisk) -> Vec<i64> {
        files::list(disk, Path::new("/t-0")).unwrap()
    }

    #[test]
    fn state_survives_a_crash_by_replaying_the_log() {
        let disk = Arc::new(SimDisk::new());
        let mut p = open(&disk, 1 << 30);
        for i in 0..10 {
            assert_eq!(produce(&mut p, 1, i * 2, 2), Verdict::Append);
        }
        sync(&mut p);
        drop(p);
        disk.crash();
        let mut p = open(&disk, 1 << 30);
        assert!(matches!(produce(&mut p, 1, 18, 2), Verdict::Duplicate(b) if b.base_offset == 18));
        assert!(matches!(produce(&mut p, 1, 10, 2), Verdict::Duplicate(b) if b.base_offset == 10));
        assert_eq!(produce(&mut p, 1, 20, 1), Verdict::Append);
        assert_eq!(snapshots(&disk), [20], "a snapshot after the replay");
    }

    /// A transactional batch of producer `id` (epoch 0), appended as the produce handler does.
    fn produce_txn(p: &mut Partition, id: i64, seq: i32) {
        let producer = ProducerFields {
            producer_id: id,
            producer_epoch: 0,
            base_sequence: seq,
        };
        let bytes = build_batch(&[(None, Some(&b"t"[..]))], NOW_MS, producer, 0x10);
        let header = BatchHeader::of(&BatchView::parse(&bytes).unwrap());
        assert_eq!(p.check_producers(&[header]), Verdict::Append);
        p.append(bytes.into(), &[header], NOW_MS).unwrap();
    }

    fn end_txn(p: &mut Partition, id: i64, commit: bool) {
        let marker = Marker {
            producer_id: id,
            producer_epoch: 0,
            commit,
        };
        p.append_marker(marker, NOW_MS).unwrap();
    }

    /// Aborted, committed and open transactions across several segments (so that rolls write
    /// snapshots in the middle of them).
    fn transactions(disk: &Arc<SimDisk>) -> Partition {
        let mut p = open(disk, 400);
        for round in 0..6 {
            produce_txn(&mut p, 5, round * 2);
            produce_txn(&mut p, 6, round);
            produce_txn(&mut p, 5, round * 2 + 1);
            end_txn(&mut p, 5, round % 2 == 0);
        }
        produce_txn(&mut p, 7, 0);
        assert!(p.log().segment_count() > 3, "rolls happened");
        assert_eq!(p.txns.aborted().len(), 3);
        assert_eq!(p.txns.ongoing_count(), 2);
        p
    }

    #[test]
    fn transaction_state_comes_back_from_the_snapshot_or_the_log() {
        // After a clean close: from the snapshot at the log end, nothing replayed.
        let disk = Arc::new(SimDisk::new());
        let p = transactions(&disk);
        let (before, log_end) = (format!("{:?}", p.txns), p.log_end_offset());
        p.close().unwrap();
        assert_eq!(snapshots(&disk).last(), Some(&log_end));
        let p = open(&disk, 400);
        assert_eq!(format!("{:?}", p.txns), before);
        assert_eq!(
            p.last_stable_offset(),
            1,
            "producer 6's transaction pins the LSO"
        );

        // After a crash: from the last roll's snapshot plus the log after it.
        let disk = Arc::new(SimDisk::new());
        let mut p = transactions(&disk);
        sync(&mut p);
        let before = format!("{:?}", p.txns);
        drop(p);
        disk.crash();
        assert!(!snapshots(&disk).is_empty(), "rolls wrote snapshots");
        let p = open(&disk, 400);
        assert_eq!(format!("{:?}", p.txns), before);

        // Without any snapshot: from the whole log.
        let dir = Path::new("/t-0");
        for offset in snapshots(&disk) {
            let path = dir.join(crate::producers::snapshot::file_name(offset));
            disk.remove_file(&path).unwrap();
        }
        drop(p);
        let p = open(&disk, 400);
        assert_eq!(format!("{:?}", p.txns), before);
    }

    #[test]
    fn unsynced_batches_lost_in_a_crash_are_not_remembered() {
        let disk = Arc::new(SimDisk::new());
        let mut p = open(&disk, 1 << 30);
        assert_eq!(produce(&mut p, 1, 0, 2), Verdict::Append);
        sync(&mut p);
        assert_eq!(produce(&mut p, 1, 2, 2), Verdict::Append);
        drop(p);
        disk.crash();
        let mut p = open(&disk, 1 << 30);
        // The retry of the lost batch is written again, at the offset it had.
        assert_eq!(produce(&mut p, 1, 2, 2), Verdict::Append);
        assert_eq!(p.log_end_offset(), 4);
    }

    #[test]
    fn rolls_and_close_write_snapshots_and_open_uses_the_newest() {
        let disk = Arc::new(SimDisk::new());
        // Small segments: every few batches roll.
        let mut p = open(&disk, 300);
        for i in 0..20 {
            assert_eq!(produce(&mut p, 7, i * 3, 3), Verdict::Append);
        }
        let rolls = p.log().segment_count() - 1;
        assert!(rolls >= 3, "{rolls} rolls");
        // Encoded at each roll, written by the next sync, outside the broker's lock.
        assert!(snapshots(&disk).is_empty(), "no file I/O in the append");
        sync(&mut p);
        assert_eq!(snapshots(&disk).len(), files::SNAPSHOTS_KEPT);
        p.close().unwrap();
        assert_eq!(*snapshots(&disk).last().unwrap(), 60);
        let mut p = open(&disk, 300);
        assert!(matches!(produce(&mut p, 7, 57, 3), Verdict::Duplicate(b) if b.base_offset == 57));
        assert_eq!(produce(&mut p, 7, 60, 1), Verdict::Append);
    }

    #[test]
    fn a_damaged_snapshot_is_ignored_and_the_log_replayed() {
        let disk = Arc::new(SimDisk::new());
        let mut p = open(&disk, 1 << 30);
        for i in 0..4 {
            assert_eq!(produce(&mut p, 3, i, 1), Verdict::Append);
        }
        p.close().unwrap();
        let path = Path::new("/t-0").join(crate::producers::snapshot::file_name(4));
        let file = disk.open(&path, false).unwrap();
        file.write_all_at(3, &[0xff]).unwrap();
        let mut p = open(&disk, 1 << 30);
        assert!(matches!(produce(&mut p, 3, 3, 1), Verdict::Duplicate(b) if b.base_offset == 3));
        assert_eq!(
            produce(&mut p, 3, 5, 1),
            Verdict::OutOfOrder {
                producer_id: 3,
                epoch: 0,
                sequence: 5,
                expected: 4
            }
        );
    }

    #[test]
    fn a_snapshot_beyond_the_log_end_is_deleted() {
        let disk = Arc::new(SimDisk::new());
        let mut p = open(&disk, 1 << 30);
        assert_eq!(produce(&mut p, 3, 0, 1), Verdict::Append);
        sync(&mut p);
        assert_eq!(produce(&mut p, 3, 1, 1), Verdict::Append);
        // A snapshot covering the unsynced batch, written durably as if it were periodic.
        files::write(
            disk.as_ref(),
            Path::new("/t-0"),
            p.producers(),
            &TxnIndex::default(),
            2,
            true,
        )
        .unwrap();
        drop(p);
        disk.crash();
        let mut p = open(&disk, 1 << 30);
        assert_eq!(p.log_end_offset(), 1);
        assert_eq!(snapshots(&disk), [1]);
        assert_eq!(produce(&mut p, 3, 1, 1), Verdict::Append);
        // The deletion was durable: another crash does not bring the stale snapshot back.
        drop(p);
        disk.crash();
        assert!(!snapshots(&disk).contains(&2));
    }
}

fn corrupt(dir: &std::path::Path, reason: String) -> LogError {
    LogError::Corrupt {
        path: dir.to_path_buf(),
        position: 0,
        reason,
    }
}

/// A topic's partitions, each behind its own lock: a produce or a fetch, which holds the broker
/// shared, locks only the partition it works on, so requests on different partitions run at
/// once. A caller holding the broker exclusively reaches them without locking (`get_mut`,
/// `iter_mut`). A call holds at most one partition lock at a time.
#[derive(Default)]
pub struct Partitions(Vec<Mutex<Partition>>);

/// A partition locked for one step of a call.
pub type PartitionGuard<'a> = MutexGuard<'a, Partition>;

impl Partitions {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Locks partition `index`, with the broker held shared.
    pub fn get(&self, index: usize) -> Option<PartitionGuard<'_>> {
        self.0.get(index).map(lock)
    }

    /// Partition `index`, with the broker held exclusively (no lock taken).
    pub fn get_mut(&mut self, index: usize) -> Option<&mut Partition> {
        self.0.get_mut(index).map(get_mut)
    }

    /// Every partition in index order, each locked in turn while the caller looks at it.
    pub fn iter(&self) -> impl Iterator<Item = PartitionGuard<'_>> {
        self.0.iter().map(lock)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Partition> {
        self.0.iter_mut().map(get_mut)
    }
}

impl FromIterator<Partition> for Partitions {
    fn from_iter<I: IntoIterator<Item = Partition>>(partitions: I) -> Partitions {
        Partitions(partitions.into_iter().map(Mutex::new).collect())
    }
}

impl Extend<Partition> for Partitions {
    fn extend<I: IntoIterator<Item = Partition>>(&mut self, partitions: I) {
        self.0.extend(partitions.into_iter().map(Mutex::new));
    }
}

impl IntoIterator for Partitions {
    type Item = Partition;
    type IntoIter =
        std::iter::Map<std::vec::IntoIter<Mutex<Partition>>, fn(Mutex<Partition>) -> Partition>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(into_inner)
    }
}

/// A poisoned partition lock means a call panicked on a broken invariant while it held the
/// partition: its state cannot be trusted, so nothing goes on with it.
const POISONED: &str = "partition lock poisoned by an earlier panic";

fn lock(partition: &Mutex<Partition>) -> PartitionGuard<'_> {
    partition.lock().expect(POISONED)
}

fn get_mut(partition: &mut Mutex<Partition>) -> &mut Partition {
    partition.get_mut().expect(POISONED)
}

fn into_inner(partition: Mutex<Partition>) -> Partition {
    partition.into_inner().expect(POISONED)
}
