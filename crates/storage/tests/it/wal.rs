//! The write-ahead log against a partition deleted and created again under the same name: the
//! reset the broker's deletion runs is what keeps the old partition's frames out of the new one.
//! The control skips that reset and finds the old records replayed into the new partition.

use std::path::Path;
use std::sync::Arc;

use storage::{Disk, LogConfig, PartitionLog, SimDisk, Wal};

use crate::{append, batch, DIR};

const ROOT: &str = "/";

/// A new partition at `DIR`, its directory durable, as the broker creates one.
fn create(disk: &SimDisk) -> PartitionLog {
    let log = PartitionLog::open(
        Arc::new(disk.clone()),
        Path::new(DIR),
        LogConfig::default(),
        0,
    )
    .expect("open log");
    disk.sync_dir(Path::new(DIR)).unwrap();
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
