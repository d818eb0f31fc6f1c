//! The write-ahead log against a partition deleted and created again under the same name: the
//! reset the broker's deletion runs is what keeps the old partition's frames out of the new one.
//! The control skips that reset and finds the old records replayed into the new partition.
//! Also which ranges of a segment the works made durable by frames start the writeback of.

use std::path::Path;
use std::sync::Arc;

use storage::{Disk, LogConfig, PartitionLog, SimDisk, Wal};

use crate::{append, batch, DIR};

const ROOT: &str = "/";

/// A new partition at `DIR`, its directory durable, as the broker creates one.
fn create(disk: &SimDisk) -> PartitionLog {
    create_at(disk, DIR)
}

fn create_at(disk: &SimDisk, dir: &str) -> PartitionLog {
    let log = PartitionLog::open(
        Arc::new(disk.clone()),
        Path::new(dir),
        LogConfig::default(),
        0,
    )
    .expect("open log");
    disk.sync_dir(Path::new(dir)).unwrap();
    disk.sync_dir(Path::new(ROOT)).unwrap();
    log
}

/// Appends `records` one-record batches, each acknowledged through a frame alone.
fn append_through_frames(log: &mut PartitionLog, wal: &Wal, records: u64, seed: u64) {
    for i in 0..records {
        append(log, &batch(seed + i, 1, 20, 0), 0);
        let work = log.take_sync_work().expect("an append needs a sync");
        assert!(wal.takes([&work]), "a small append goes through a frame");
        work.run_writes().unwrap();
        wal.log([&work]).unwrap();
        log.mark_data_synced(work.offset());
    }
}

/// Four records through frames, the partition deleted, created again with one record through a
/// frame, a power loss: the log end the next start finds.
fn recreated_log_end(reset_on_delete: bool) -> i64 {
    let disk = SimDisk::new();
    let (wal, _) = Wal::open(Arc::new(disk.clone()), Path::new(ROOT)).unwrap();
    let mut old = create(&disk);
    append_through_frames(&mut old, &wal, 4, 0);
    old.delete().unwrap();
    if reset_on_delete {
        wal.reset().unwrap();
    }
    let mut new = create(&disk);
    append_through_frames(&mut new, &wal, 1, 100);
    drop((new, wal));
    disk.crash();
    let (_wal, replayed) = Wal::open(Arc::new(disk.clone()), Path::new(ROOT)).unwrap();
    assert!(replayed.appends > 0, "the new record was only in a frame");
    create(&disk).log_end_offset()
}

#[test]
fn a_reset_on_deletion_keeps_the_old_partitions_frames_out_of_the_new_one() {
    assert_eq!(recreated_log_end(true), 1);
}

/// The control: without the reset, the old frames write the deleted partition's records 1..3
/// after the new partition's record 0, as valid batches with the offsets recovery expects next.
#[test]
fn control_without_the_reset_the_old_frames_land_in_the_new_partition() {
    assert_eq!(recreated_log_end(false), 4);
}

/// Three records through frames in each of two partitions, a reset (with a failing fsync or
/// not), a power loss: the frames the next start replays, and the two logs' ends.
fn reset_of_two_partitions(fail_a_sync: bool) -> (u64, i64, i64) {
    let disk = SimDisk::new();
    let (wal, _) = Wal::open(Arc::new(disk.clone()), Path::new(ROOT)).unwrap();
    let (mut first, mut second) = (create_at(&disk, DIR), create_at(&disk, "/p1"));
    append_through_frames(&mut first, &wal, 3, 0);
    append_through_frames(&mut second, &wal, 3, 10);
    if fail_a_sync {
        disk.fail_next_sync();
    }
    assert_eq!(
        wal.reset().is_err(),
        fail_a_sync,
        "a failed fsync fails the reset"
    );
    drop((first, second, wal));
    disk.crash();
    let (_wal, replayed) = Wal::open(Arc::new(disk.clone()), Path::new(ROOT)).unwrap();
    let ends = (
        create_at(&disk, DIR).log_end_offset(),
        create_at(&disk, "/p1").log_end_offset(),
    );
    (replayed.frames, ends.0, ends.1)
}

#[test]
fn a_reset_makes_every_segment_it_owes_durable_before_it_voids_the_frames() {
    // Synced at once (a thread each), then voided: nothing to replay, nothing lost.
    assert_eq!(reset_of_two_partitions(false), (0, 3, 3));
}

#[test]
fn a_reset_whose_fsync_fails_voids_no_frame() {
    // One of the two fsyncs fails: the reset reports it and keeps the epoch, so the frames are
    // replayed and nothing is lost.
    assert_eq!(reset_of_two_partitions(true), (6, 3, 3));
}

/// Appends through frames, each one 1 KiB batch alone in its work: the ranges whose writeback
/// the works start, with the log's end after each work that starts one.
fn writeback_ranges(config: LogConfig, appends: u64) -> Vec<(u64, u64)> {
    let disk = SimDisk::new();
    let (wal, _) = Wal::open(Arc::new(disk.clone()), Path::new(ROOT)).unwrap();
    let mut log = PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config, 0).unwrap();
    let mut ranges = Vec::new();
    for i in 0..appends {
        append(&mut log, &batch(i, 1, 1024, 0), 0);
        let work = log.take_sync_work().expect("an append needs a sync");
        if wal.takes([&work]) {
            work.run_writes().unwrap();
            wal.log([&work]).unwrap();
            ranges.extend(work.writeback());
            log.mark_data_synced(work.offset());
        } else {
            // A roll: the whole round syncs the files in place.
            assert_eq!(
                work.writeback(),
                None,
                "only appends-only works start writeback"
            );
            work.run().unwrap();
            log.mark_synced(work.offset());
        }
    }
    ranges
}

#[test]
fn frames_start_writeback_once_per_writeback_bytes_min() {
    let batch_bytes = batch(0, 1, 1024, 0).len() as u64;
    let appends = 600;
    let ranges = writeback_ranges(LogConfig::default(), appends);
    // Ranges back to back from the segment's start, each at least WRITEBACK_BYTES_MIN and less
    // than one batch more (each ends where the work that started it ended), as many as fit.
    let min = storage::WRITEBACK_BYTES_MIN;
    let per_range = min.div_ceil(batch_bytes);
    assert_eq!(ranges.len() as u64, appends / per_range, "{ranges:?}");
    let mut end = 0;
    for (position, len) in &ranges {
        assert_eq!(*position, end, "{ranges:?}");
        assert_eq!(*len, per_range * batch_bytes, "{ranges:?}");
        end = position + len;
    }
}

#[test]
fn a_roll_starts_the_writeback_count_again_in_the_new_segment() {
    // The first segment rolls after its first writeback range: the second segment's first range
    // starts after the batch that rolled it (synced in place by the roll's round), not where the
    // first segment's range ended.
    let batch_bytes = batch(0, 1, 1024, 0).len() as u64;
    let per_range = storage::WRITEBACK_BYTES_MIN.div_ceil(batch_bytes);
    let config = LogConfig {
        segment_bytes: (per_range + per_range / 2) * batch_bytes,
        ..LogConfig::default()
    };
    let ranges = writeback_ranges(config, 3 * per_range);
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0], (0, per_range * batch_bytes));
    assert_eq!(
        ranges[1],
        (batch_bytes, per_range * batch_bytes),
        "{ranges:?}"
    );
}
