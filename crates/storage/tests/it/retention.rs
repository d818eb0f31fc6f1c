//! Retention by bytes and by time, DeleteRecords, and deleting a partition.

use std::path::Path;
use std::time::{Duration, SystemTime};

use expect_test::{expect, Expect};
use storage::{LogConfig, PartitionLog, SimDisk};

use crate::{append, batch, open_sim, summary, sync, DIR};

/// Ten segments of two one-record batches of 129 bytes each (segment k holds offsets 2k and
/// 2k + 1), batch `i` stamped `i * 1000` ms, all synced.
fn ten_segments(disk: &SimDisk, config: LogConfig) -> PartitionLog {
    let mut log = open_sim(
        disk,
        LogConfig {
            segment_bytes: 300,
            ..config
        },
    );
    for seed in 0..20 {
        append(&mut log, &batch(seed, 1, 60, seed as i64 * 1_000), 0);
    }
    sync(&mut log);
    assert_eq!(log.segment_count(), 10);
    log
}

fn describe(log: &PartitionLog) -> String {
    format!(
        "start {} end {} segments {} bytes {}",
        log.log_start_offset(),
        log.log_end_offset(),
        log.segment_count(),
        log.size_bytes()
    )
}

fn check_retention(config: LogConfig, now_ms: i64, expect: Expect) {
    let disk = SimDisk::new();
    let mut log = ten_segments(&disk, config);
    let deleted = log.enforce_retention(now_ms).unwrap();
    expect.assert_eq(&format!("deleted {deleted}: {}", describe(&log)));
}

#[test]
fn retention_by_bytes() {
    let by_bytes = |retention_bytes| LogConfig {
        retention_bytes,
        retention_ms: -1,
        ..LogConfig::default()
    };
    check_retention(
        by_bytes(-1),
        0,
        expect!["deleted 0: start 0 end 20 segments 10 bytes 2580"],
    );
    check_retention(
        by_bytes(2580),
        0,
        expect!["deleted 0: start 0 end 20 segments 10 bytes 2580"],
    );
    check_retention(
        by_bytes(2322),
        0,
        expect!["deleted 1: start 2 end 20 segments 9 bytes 2322"],
    );
    check_retention(
        by_bytes(2323),
        0,
        expect!["deleted 0: start 0 end 20 segments 10 bytes 2580"],
    );
    check_retention(
        by_bytes(1000),
        0,
        expect!["deleted 6: start 12 end 20 segments 4 bytes 1032"],
    );
    // The active segment is never deleted.
    check_retention(
        by_bytes(0),
        0,
        expect!["deleted 9: start 18 end 20 segments 1 bytes 258"],
    );
}

#[test]
fn retention_by_time() {
    let by_time = |retention_ms| LogConfig {
        retention_ms,
        ..LogConfig::default()
    };
    // Segment k's newest batch is stamped (2k + 1) * 1000.
    check_retention(
        by_time(-1),
        1_000_000,
        expect!["deleted 0: start 0 end 20 segments 10 bytes 2580"],
    );
    check_retention(
        by_time(5_000),
        6_000,
        expect!["deleted 0: start 0 end 20 segments 10 bytes 2580"],
    );
    check_retention(
        by_time(5_000),
        6_001,
        expect!["deleted 1: start 2 end 20 segments 9 bytes 2322"],
    );
    check_retention(
        by_time(5_000),
        13_500,
        expect!["deleted 4: start 8 end 20 segments 6 bytes 1548"],
    );
    check_retention(
        by_time(0),
        1_000_000,
        expect!["deleted 9: start 18 end 20 segments 1 bytes 258"],
    );
}

/// Issue 14, item 6: segments whose batches carry timestamp -1 age by their file's last-modified
/// time, as in Kafka. Before, such a segment never expired and kept every later one: with the
/// same log, `enforce_retention` deleted nothing (the control below shows the fresh segments
/// are still kept, so mtime is what decides).
#[test]
fn segments_without_timestamps_expire_by_modified_time() {
    let disk = SimDisk::new();
    let retention_ms = 60_000;
    let mut log = open_sim(
        &disk,
        LogConfig {
            segment_bytes: 300,
            retention_ms,
            ..LogConfig::default()
        },
    );
    let old = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let fresh = old + Duration::from_secs(3_600);
    let ms = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64
    };
    // Four segments written (synced) at `old`, then three more at `fresh`; every batch -1.
    disk.set_clock(old);
    for seed in 0..8 {
        append(&mut log, &batch(seed, 1, 60, -1), 0);
    }
    sync(&mut log);
    disk.set_clock(fresh);
    for seed in 8..14 {
        append(&mut log, &batch(seed, 1, 60, -1), 0);
    }
    sync(&mut log);
    expect!["start 0 end 14 segments 7 bytes 1806"].assert_eq(&describe(&log));
    // Control: under a one-day retention, at `fresh` the old segments (an hour old) stay.
    log.set_config(LogConfig {
        segment_bytes: 300,
        retention_ms: 86_400_000,
        ..LogConfig::default()
    })
    .unwrap();
    assert_eq!(log.enforce_retention(ms(fresh)).unwrap(), 0);
    // With a one-minute retention, a minute after `fresh`, the four old segments go and the
    // fresh ones (last-modified less than a minute ago) stay.
    log.set_config(LogConfig {
        segment_bytes: 300,
        retention_ms,
        ..LogConfig::default()
    })
    .unwrap();
    assert_eq!(log.enforce_retention(ms(fresh) + retention_ms).unwrap(), 4);
    expect!["start 8 end 14 segments 3 bytes 774"].assert_eq(&describe(&log));
}

#[test]
fn retention_keeps_unsynced_segments() {
    let disk = SimDisk::new();
    let mut log = open_sim(
        &disk,
        LogConfig {
            segment_bytes: 300,
            retention_bytes: 0,
            ..LogConfig::default()
        },
    );
    for seed in 0..6 {
        append(&mut log, &batch(seed, 1, 60, 0), 0);
    }
    assert_eq!(
        log.enforce_retention(0).unwrap(),
        0,
        "nothing synced, nothing deleted"
    );
    sync(&mut log);
    assert_eq!(log.enforce_retention(0).unwrap(), 2);
}

#[test]
fn delete_records_before() {
    let disk = SimDisk::new();
    let mut log = ten_segments(&disk, LogConfig::default());
    assert_eq!(log.delete_records_before(5).unwrap(), 5);
    expect!["start 5 end 20 segments 8 bytes 2064"].assert_eq(&describe(&log));
    // Below the log start offset is out of range.
    expect!["5..5 6..6"].assert_eq(&summary(&log.read(5, 300, 20).unwrap()));
    expect!["offset 4 is out of range: the log holds [5, 20)"]
        .assert_eq(&log.read(4, 300, 20).unwrap_err().to_string());
    assert_eq!(log.delete_records_before(3).unwrap(), 5, "never moves back");
    expect!["offset 21 is out of range: the log holds [5, 20)"]
        .assert_eq(&log.delete_records_before(21).unwrap_err().to_string());
    assert_eq!(log.delete_records_before(20).unwrap(), 20);
    expect!["start 20 end 20 segments 1 bytes 258"].assert_eq(&describe(&log));
    // The deleted segments' files go with the next sync.
    sync(&mut log);
    drop(log);
    let log = open_sim(&disk, LogConfig::default());
    expect!["start 20 end 20 segments 1 bytes 258"].assert_eq(&describe(&log));
}

#[test]
fn delete_removes_the_directory() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    append(&mut log, &batch(0, 1, 1, 0), 0);
    log.delete().unwrap();
    assert!(!disk.exists(Path::new(DIR)));
    disk.crash();
    assert!(!disk.exists(Path::new(DIR)), "the removal was synced");
}

/// A deletion moves the log start at once and leaves the files to the next `SyncWork`, which
/// removes them after its data fsyncs and syncs the directory (outside the broker's lock).
#[test]
fn deleted_segments_are_removed_by_the_next_sync() {
    let disk = SimDisk::new();
    let mut log = ten_segments(&disk, LogConfig::default());
    let first = Path::new(DIR).join(format!("{:020}.log", 0));
    assert!(disk.exists(&first));
    assert_eq!(log.delete_records_before(4).unwrap(), 4);
    let after = describe(&log);
    expect!["start 4 end 20 segments 8 bytes 2064"].assert_eq(&after);
    assert!(disk.exists(&first), "no file I/O in the deletion itself");
    let work = log.take_sync_work().expect("the removals need a sync");
    work.run().unwrap();
    log.mark_synced(work.offset());
    assert!(!disk.exists(&first), "removed by the sync");
    disk.crash();
    assert!(!disk.exists(&first), "and the directory synced");
    assert_eq!(describe(&open_sim(&disk, LogConfig::default())), after);
}

/// Deleting a partition waits for a `SyncWork` still removing its files by path, so a partition
/// created again under the same name cannot lose its files to it.
#[test]
fn delete_waits_for_the_removals_in_flight() {
    let disk = SimDisk::new();
    let mut log = ten_segments(&disk, LogConfig::default());
    log.delete_records_before(4).unwrap();
    let work = log.take_sync_work().expect("the removals need a sync");
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let runner = {
        let ran = ran.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            work.run().unwrap();
            ran.store(true, std::sync::atomic::Ordering::SeqCst);
            work
        })
    };
    log.delete().unwrap();
    assert!(
        ran.load(std::sync::atomic::Ordering::SeqCst),
        "delete returned before the removals ran"
    );
    runner.join().unwrap();
    assert!(!disk.exists(Path::new(DIR)));
}
