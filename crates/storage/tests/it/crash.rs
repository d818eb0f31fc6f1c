//! Crashes on `SimDisk`: what was synced survives, what was not may go, a torn tail is cut, and
//! damage inside synced data stops the open instead of being cut.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use expect_test::{expect, Expect};
use storage::{LogConfig, LogError, PartitionLog, SimDisk};

use crate::{append, batch, open_sim, read_all, small_config, summary, sync, DIR};

fn segment_path(base_offset: i64) -> PathBuf {
    Path::new(DIR).join(format!("{base_offset:020}.log"))
}

fn try_open(disk: &SimDisk, config: LogConfig) -> Result<PartitionLog, LogError> {
    PartitionLog::open(Arc::new(disk.clone()), Path::new(DIR), config, 0)
}

/// Appends batches of `records` records (10-byte values) at time 0.
fn append_batches(log: &mut PartitionLog, first_seed: u64, records: &[usize]) {
    for (i, &count) in records.iter().enumerate() {
        append(log, &batch(first_seed + i as u64, count, 10, 0), 0);
    }
}

#[test]
fn crash_keeps_what_was_synced_and_drops_the_rest() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    append_batches(&mut log, 0, &[2, 3]);
    sync(&mut log);
    assert_eq!(log.synced_offset(), 5);
    let synced = read_all(&log);
    append_batches(&mut log, 10, &[1, 1]);
    drop(log);
    disk.crash();
    let log = open_sim(&disk, LogConfig::default());
    assert_eq!(log.log_end_offset(), 5);
    assert_eq!(read_all(&log), synced);
}

#[test]
fn crash_keeps_synced_segments_after_rolls() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, small_config());
    for seed in 0..40 {
        append(&mut log, &batch(seed, 2, 50, 0), 0);
        if seed % 7 == 0 {
            sync(&mut log);
        }
    }
    sync(&mut log);
    let synced = read_all(&log);
    let segments = log.segment_count();
    assert!(segments > 5);
    append(&mut log, &batch(99, 2, 900, 0), 0); // rolls, never synced
    drop(log);
    disk.crash();
    let log = open_sim(&disk, small_config());
    assert_eq!(log.segment_count(), segments);
    assert_eq!(read_all(&log), synced);
}

/// A roll does no file I/O (it runs in `append`, under the broker's lock): the sealed segment's
/// index files and the new segment's file appear with the next sync, which makes them durable.
#[test]
fn a_roll_leaves_its_files_to_the_next_sync() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, small_config());
    let mut seed = 0;
    while log.segment_count() == 1 {
        append(&mut log, &batch(seed, 2, 50, 0), 0);
        seed += 1;
    }
    let new_base = log.log_end_offset() - 2;
    let index = Path::new(DIR).join(format!("{:020}.index", 0));
    assert!(
        !disk.exists(&segment_path(new_base)),
        "no file created in the append"
    );
    assert!(!disk.exists(&index), "no index written in the append");
    sync(&mut log);
    assert!(disk.exists(&segment_path(new_base)));
    assert!(disk.exists(&index));
    let synced = read_all(&log);
    drop(log);
    disk.crash();
    let log = open_sim(&disk, small_config());
    assert_eq!(log.segment_count(), 2, "the new segment's name was synced");
    assert_eq!(read_all(&log), synced);
}

fn check_tear(keep_bytes: usize, expect: Expect) {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    append_batches(&mut log, 0, &[2]);
    sync(&mut log);
    // One write of three batches of 78, 112 and 78 bytes, torn after `keep_bytes`.
    let mut packed = batch(1, 1, 10, 0);
    packed.extend(batch(2, 3, 10, 0));
    packed.extend(batch(3, 1, 10, 0));
    log.append(bytes::Bytes::copy_from_slice(&packed), 0)
        .unwrap();
    // The group commit writes them, and the crash comes before their fsync.
    let work = log.take_sync_work().unwrap();
    disk.fail_next_sync();
    work.run_data().unwrap_err();
    drop(log);
    disk.tear_on_crash(keep_bytes);
    disk.crash();
    let log = open_sim(&disk, LogConfig::default());
    expect.assert_eq(&format!(
        "{} -> end {}",
        summary(&read_all(&log)),
        log.log_end_offset()
    ));
}

#[test]
fn torn_last_write_is_truncated_to_its_whole_batches() {
    check_tear(0, expect!["0..1 -> end 2"]);
    check_tear(1, expect!["0..1 -> end 2"]);
    check_tear(77, expect!["0..1 -> end 2"]);
    check_tear(78, expect!["0..1 2..2 -> end 3"]);
    check_tear(189, expect!["0..1 2..2 -> end 3"]);
    check_tear(190, expect!["0..1 2..2 3..5 -> end 6"]);
    check_tear(267, expect!["0..1 2..2 3..5 -> end 6"]);
    check_tear(268, expect!["0..1 2..2 3..5 6..6 -> end 7"]);
}

/// Appends five batches (offsets 0..9) in one segment, and a sixth one an interval later when
/// `recovery_point_covers` (the recovery point is checkpointed at most once per
/// `RECOVERY_POINT_INTERVAL_MS` of log time), syncs, crashes, then XORs `mask` into byte `at`
/// of batch `victim` (from its end when `at` is negative) and opens the log again.
fn check_flip(victim: Option<(usize, i64, u8)>, recovery_point_covers: bool, expect: Expect) {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    let mut positions = Vec::new();
    for seed in 0..5 {
        positions.push(log.size_bytes());
        append(&mut log, &batch(seed, 2, 10, 0), 0);
    }
    if recovery_point_covers {
        positions.push(log.size_bytes());
        // Log time past the interval: this round's sync writes the recovery point.
        append(
            &mut log,
            &batch(5, 1, 10, 0),
            storage::RECOVERY_POINT_INTERVAL_MS + 1_000,
        );
    }
    positions.push(log.size_bytes());
    sync(&mut log);
    drop(log);
    disk.crash();
    if let Some((victim, at, mask)) = victim {
        let base = if at < 0 {
            positions[victim + 1]
        } else {
            positions[victim]
        };
        disk.corrupt(&segment_path(0), base.checked_add_signed(at).unwrap(), mask)
            .unwrap();
    }
    expect.assert_eq(&match try_open(&disk, LogConfig::default()) {
        Ok(log) => format!("opened: {}", summary(&read_all(&log))),
        Err(error) => error.to_string(),
    });
}

#[test]
fn flipped_bit_in_synced_data_fails_the_open() {
    // Controls: the same logs without a flip open with everything.
    check_flip(
        None,
        true,
        expect!["opened: 0..1 2..3 4..5 6..7 8..9 10..10"],
    );
    check_flip(None, false, expect!["opened: 0..1 2..3 4..5 6..7 8..9"]);
    // Before the recovery point: corruption, wherever it is. The last byte of the records is
    // covered by the CRC only.
    check_flip(Some((1, -1, 0x10)), true, expect!["corrupt log /p0/00000000000000000000.log at byte 95: CRC-32C mismatch: stored 0xc7ae9c4e, computed 0xd7f05b21; offset 2 is below the recovery point 11, so this batch was synced: refusing to truncate it"]);
    check_flip(Some((5, -1, 0x10)), true, expect!["corrupt log /p0/00000000000000000000.log at byte 475: CRC-32C mismatch: stored 0xe5806eb8, computed 0xf5dea9d7; offset 10 is below the recovery point 11, so this batch was synced: refusing to truncate it"]);
    // After the recovery point, a valid batch that should come next proves damage.
    check_flip(Some((1, -1, 0x10)), false, expect!["corrupt log /p0/00000000000000000000.log at byte 95: CRC-32C mismatch: stored 0xc7ae9c4e, computed 0xd7f05b21; a valid batch with the next offset 4 follows at byte 190, so the log is damaged in the middle, not torn at its end"]);
    // The base offset is outside the CRC: a valid batch with the wrong offset is damage too.
    check_flip(Some((4, 0, 0x10)), false, expect!["corrupt log /p0/00000000000000000000.log at byte 380: batch has offset 1152921504606846984, expected 8: a valid batch in the wrong place is damage, not a torn write"]);
    // Limitation: damage to the very last batch after the recovery point looks exactly like a
    // torn write, and is cut. The recovery point lags the synced offset by at most its
    // interval (a minute by default) of log time, or to the last roll.
    check_flip(
        Some((4, -1, 0x10)),
        false,
        expect!["opened: 0..1 2..3 4..5 6..7"],
    );
}

#[test]
fn flipped_bit_in_a_trusted_segment_is_caught_on_read() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, small_config());
    for seed in 0..30 {
        append(&mut log, &batch(seed, 2, 50, 0), seed as i64 * 100);
    }
    log.close().unwrap();
    // The first batch of the first segment: before its last index entry, so the open's cheap
    // checks do not read it.
    disk.corrupt(&segment_path(0), 70, 0x01).unwrap();
    let log = open_sim(&disk, small_config());
    let error = log.read(0, 1_000, log.log_end_offset()).unwrap_err();
    expect!["corrupt log /p0/00000000000000000000.log at byte 0: batch at offset 0 read back invalid: CRC-32C mismatch: stored 0xad960092, computed 0x69457895"]
        .assert_eq(&error.to_string());
    assert!(
        log.read(2, 1_000, log.log_end_offset()).is_ok(),
        "the other batches are served"
    );
}

#[test]
fn failed_sync_is_an_error() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    append_batches(&mut log, 0, &[1]);
    let work = log.take_sync_work().unwrap();
    disk.fail_next_sync();
    expect!["sync file /p0/00000000000000000000.log: injected fsync failure"]
        .assert_eq(&work.run().unwrap_err().to_string());
    assert_eq!(log.synced_offset(), 0, "nothing is marked synced");
    // The process stops after a failed fsync; a log that never took a sync fails on close.
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    append_batches(&mut log, 0, &[1]);
    disk.fail_next_sync();
    expect!["sync file /p0/00000000000000000000.index: injected fsync failure"]
        .assert_eq(&log.close().unwrap_err().to_string());
}

#[test]
fn failed_write_is_an_error() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    disk.fail_next_write();
    append_batches(&mut log, 0, &[1]);
    let work = log.take_sync_work().unwrap();
    expect!["write segment /p0/00000000000000000000.log: injected write failure"]
        .assert_eq(&work.run().unwrap_err().to_string());
    assert_eq!(log.synced_offset(), 0, "nothing is marked synced");
}

#[test]
fn one_sync_in_flight_at_a_time() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    assert!(log.take_sync_work().is_none(), "nothing to sync after open");
    append_batches(&mut log, 0, &[1]);
    let first = log.take_sync_work().unwrap();
    append_batches(&mut log, 1, &[1]);
    assert!(
        log.take_sync_work().is_none(),
        "the next group waits for the outstanding sync"
    );
    first.run().unwrap();
    log.mark_synced(first.offset());
    assert_eq!(log.synced_offset(), 1);
    let second = log.take_sync_work().unwrap();
    assert_eq!(second.offset(), 2);
    second.run().unwrap();
    log.mark_synced(second.offset());
    assert_eq!(log.synced_offset(), 2);
    assert!(log.take_sync_work().is_none());
}

/// The recovery point checkpoint's value (format in docs/storage-format.md).
fn recovery_point(disk: &SimDisk) -> i64 {
    let bytes = disk
        .contents(&Path::new(DIR).join("recovery-point.checkpoint"))
        .unwrap();
    i64::from_be_bytes(bytes[4..12].try_into().unwrap())
}

#[test]
fn recovery_point_lags_by_at_most_its_interval_of_log_time() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    let interval = storage::RECOVERY_POINT_INTERVAL_MS;
    assert_eq!(recovery_point(&disk), 0);
    append(&mut log, &batch(0, 1, 1, 0), interval / 2);
    sync(&mut log);
    assert_eq!(recovery_point(&disk), 0, "not due yet");
    append(&mut log, &batch(1, 1, 1, 0), interval);
    sync(&mut log);
    assert_eq!(recovery_point(&disk), 2, "due after the interval");
    append(&mut log, &batch(2, 1, 1, 0), interval * 3 / 2);
    sync(&mut log);
    assert_eq!(recovery_point(&disk), 2);
    log.close().unwrap();
    assert_eq!(
        recovery_point(&disk),
        3,
        "a clean close checkpoints the log end"
    );
}

#[test]
fn new_directory_survives_a_crash() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    append_batches(&mut log, 0, &[3]);
    sync(&mut log);
    drop(log);
    disk.crash();
    assert_eq!(open_sim(&disk, LogConfig::default()).log_end_offset(), 3);
}

#[test]
fn missing_synced_segment_fails_the_open() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    append_batches(&mut log, 0, &[3]);
    log.close().unwrap();
    use storage::Disk;
    disk.remove_file(&segment_path(0)).unwrap();
    let error = try_open(&disk, LogConfig::default()).err().unwrap();
    expect!["corrupt log /p0/00000000000000000000.log at byte 0: the recovery point 3 is beyond the recovered log end 0: synced batches are missing"]
        .assert_eq(&error.to_string());
}

#[test]
fn log_start_offset_survives_a_crash() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, small_config());
    for seed in 0..20 {
        append(&mut log, &batch(seed, 2, 50, 0), 0);
    }
    sync(&mut log);
    assert_eq!(log.delete_records_before(13).unwrap(), 13);
    // Durable with the next sync (the broker answers DeleteRecords after that round): a crash
    // before it keeps the old log start.
    drop(log);
    disk.crash();
    let mut log = open_sim(&disk, small_config());
    assert_eq!(log.log_start_offset(), 0, "not durable before the sync");
    assert_eq!(log.delete_records_before(13).unwrap(), 13);
    sync(&mut log);
    drop(log);
    disk.crash();
    let log = open_sim(&disk, small_config());
    assert_eq!(log.log_start_offset(), 13);
    assert_eq!(summary(&log.read(13, 150, 40).unwrap()), "12..13");
}
