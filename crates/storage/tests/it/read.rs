//! Append and read round trips on the real file system: rolls, the KIP-74 first-batch rule, the
//! end offset bound, out-of-range offsets, reopening, rebuilt indexes, timestamps.

use std::path::Path;
use std::sync::Arc;

use expect_test::{expect, Expect};
use storage::{Disk, FsDisk, LogConfig, LogError, PartitionLog, Release};

use crate::{append, batch, read_all, small_config, summary, sync};

/// One stored batch of the model: base offset, last offset, stored bytes.
struct Stored {
    base: i64,
    last: i64,
    bytes: Vec<u8>,
}

/// Appends `count` batches of 1 to 5 records and 10 to 300 value bytes, returning what the log
/// should hold (the bytes as stored, offsets assigned).
fn fill(log: &mut PartitionLog, count: u64) -> Vec<Stored> {
    let mut stored = Vec::new();
    for seed in 0..count {
        let records = 1 + (seed % 5) as usize;
        let bytes = batch(
            seed,
            records,
            10 + (seed * 37 % 290) as usize,
            1_000 + seed as i64,
        );
        let info = log
            .append(bytes::Bytes::copy_from_slice(&bytes), 0)
            .expect("append");
        assert_eq!(info.batch_base_offsets, vec![info.first_offset]);
        stored.push(Stored {
            base: info.first_offset,
            last: info.last_offset,
            bytes: crate::stored(&bytes, &info),
        });
    }
    // Appends become readable once the group commit wrote them.
    sync(log);
    stored
}

/// What `read` must return, computed from the model.
fn expected_read(stored: &[Stored], start: i64, max_bytes: usize, end: i64) -> Vec<u8> {
    let mut out = Vec::new();
    for batch in stored.iter().filter(|b| b.last >= start) {
        if batch.base >= end || (!out.is_empty() && out.len() + batch.bytes.len() > max_bytes) {
            break;
        }
        out.extend_from_slice(&batch.bytes);
    }
    out
}

fn open_fs(dir: &Path, config: LogConfig) -> PartitionLog {
    PartitionLog::open(Arc::new(FsDisk), dir, config, 0).expect("open log")
}

#[test]
fn round_trip_across_many_rolls() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("topic-0");
    let mut log = open_fs(&dir, small_config());
    let stored = fill(&mut log, 150);
    assert!(log.segment_count() > 20, "{} segments", log.segment_count());
    let end = log.log_end_offset();
    assert_eq!(end, stored.last().unwrap().last + 1);
    for start in 0..=end {
        for max_bytes in [0, 100, 700, 5_000] {
            for bound in [end, end - 7, start + 3] {
                let got = log.read(start, max_bytes, bound).unwrap();
                let want = expected_read(&stored, start, max_bytes, bound);
                assert!(
                    got == want,
                    "read({start}, {max_bytes}, {bound}): {} != {}",
                    summary(&got),
                    summary(&want)
                );
            }
        }
    }
    assert_eq!(
        log.size_bytes(),
        stored.iter().map(|b| b.bytes.len() as u64).sum::<u64>()
    );
}

/// What a planned read must return: `read`'s answer cut at the end of the segment that holds the
/// first batch served (a planned read covers one segment, as Kafka's do).
fn expected_planned(log: &PartitionLog, start: i64, max_bytes: usize, end: i64) -> Vec<u8> {
    let all = log.read(start, max_bytes, end).unwrap();
    let Some(first) = all.get(..61) else {
        return all;
    };
    let base = i64::from_be_bytes(first[..8].try_into().unwrap());
    // The segment holding `base`: its successor starts at the next segment file's base offset.
    let next_segment_base = (base + 1..=log.log_end_offset())
        .find(|&offset| is_segment_start(log, offset))
        .unwrap_or(i64::MAX);
    let mut out = Vec::new();
    let mut rest = &all[..];
    while rest.len() >= 61 {
        let base = i64::from_be_bytes(rest[..8].try_into().unwrap());
        let length = i32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize + 12;
        if base >= next_segment_base {
            break;
        }
        out.extend_from_slice(&rest[..length]);
        rest = &rest[length..];
    }
    out
}

/// Whether a segment file starts at `offset`.
fn is_segment_start(log: &PartitionLog, offset: i64) -> bool {
    log.dir()
        .join(format!("{offset:020}.log"))
        .try_exists()
        .unwrap()
}

#[test]
fn planned_reads_serve_one_segment() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("topic-0");
    let mut log = open_fs(&dir, small_config());
    fill(&mut log, 60);
    assert!(log.segment_count() > 5, "{} segments", log.segment_count());
    let end = log.log_end_offset();
    let mut crossed = 0;
    for start in 0..end {
        for max_bytes in [0, 700, 5_000] {
            let read = log
                .plan_read(start, end)
                .unwrap()
                .expect("data below the end");
            let got = read.run(max_bytes, true).unwrap();
            let want = expected_planned(&log, start, max_bytes, end);
            if want.len() < log.read(start, max_bytes, end).unwrap().len() {
                crossed += 1;
            }
            assert!(
                got[..] == want[..],
                "plan_read({start}).run({max_bytes}): {} != {}",
                summary(&got),
                summary(&want)
            );
        }
    }
    assert!(crossed > 0, "some reads would have crossed a segment");
    assert!(
        log.plan_read(end, end).unwrap().is_none(),
        "nothing at the end"
    );
    assert!(log.plan_read(end + 1, end).is_err(), "out of range");
}

#[test]
fn a_planned_read_outlives_its_segment() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("topic-0");
    let mut log = open_fs(&dir, small_config());
    fill(&mut log, 30);
    let end = log.log_end_offset();
    let read = log.plan_read(0, end).unwrap().unwrap();
    let before = read.run(usize::MAX, true).unwrap();
    // Retention deletes the first segments, files included; the planned read still has the file.
    log.delete_records_before(end).unwrap();
    log.enforce_retention(0).unwrap();
    sync(&mut log);
    assert!(!is_segment_start(&log, 0), "the first segment is gone");
    assert_eq!(read.run(usize::MAX, true).unwrap(), before);
    assert!(!before.is_empty());
}

fn check_read(log: &PartitionLog, start: i64, max_bytes: usize, end: i64, expect: Expect) {
    let result = log
        .read(start, max_bytes, end)
        .map(|bytes| format!("{} ({} bytes)", summary(&bytes), bytes.len()));
    expect.assert_eq(&match result {
        Ok(text) => text,
        Err(error) => error.to_string(),
    });
}

#[test]
fn read_limits() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), LogConfig::default());
    // Batches of 3, 1, 2 records, 112, 300 and 115 bytes.
    for (seed, records, value_bytes) in [(0, 3, 10), (1, 1, 230), (2, 2, 20)] {
        append(&mut log, &batch(seed, records, value_bytes, 0), 0);
    }
    sync(&mut log);
    check_read(&log, 0, 10_000, 6, expect!["0..2 3..3 4..5 (527 bytes)"]);
    check_read(&log, 1, 10_000, 6, expect!["0..2 3..3 4..5 (527 bytes)"]);
    check_read(&log, 3, 10_000, 6, expect!["3..3 4..5 (415 bytes)"]);
    // KIP-74: the first batch whole even beyond max_bytes, then nothing that does not fit.
    check_read(&log, 3, 1, 6, expect!["3..3 (300 bytes)"]);
    check_read(&log, 0, 0, 6, expect!["0..2 (112 bytes)"]);
    check_read(&log, 0, 411, 6, expect!["0..2 (112 bytes)"]);
    check_read(&log, 0, 412, 6, expect!["0..2 3..3 (412 bytes)"]);
    // Never a batch at or above the end offset (high watermark, last stable offset).
    check_read(&log, 0, 10_000, 4, expect!["0..2 3..3 (412 bytes)"]);
    check_read(&log, 0, 10_000, 3, expect!["0..2 (112 bytes)"]);
    check_read(&log, 4, 10_000, 4, expect![" (0 bytes)"]);
    check_read(&log, 5, 10_000, 4, expect![" (0 bytes)"]);
    // The log end is in range and empty; beyond either end is out of range.
    check_read(&log, 6, 10_000, 6, expect![" (0 bytes)"]);
    check_read(
        &log,
        7,
        10_000,
        6,
        expect!["offset 7 is out of range: the log holds [0, 6)"],
    );
    check_read(
        &log,
        -1,
        10_000,
        6,
        expect!["offset -1 is out of range: the log holds [0, 6)"],
    );
}

#[test]
fn append_returns_offsets_per_batch() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), LogConfig::default());
    append(&mut log, &batch(9, 2, 1, 0), 0);
    let mut packed = batch(0, 3, 10, 0);
    packed.extend(batch(1, 1, 10, 0));
    packed.extend(batch(2, 2, 10, 0));
    let info = log
        .append(bytes::Bytes::copy_from_slice(&packed), 0)
        .unwrap();
    expect!["2 7 [2, 5, 6] 8"].assert_eq(&format!(
        "{} {} {:?} {}",
        info.first_offset, info.last_offset, info.batch_base_offsets, info.log_end_offset
    ));
    assert_eq!(
        log.read(2, usize::MAX, 8).unwrap(),
        Vec::<u8>::new(),
        "nothing is readable before the group commit wrote it"
    );
    sync(&mut log);
    let packed = crate::stored(&packed, &info);
    assert_eq!(
        log.read(2, usize::MAX, 8).unwrap(),
        packed,
        "stored exactly as written, offsets included"
    );
}

fn check_append_error(bytes: &mut [u8], expect: Expect) {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), LogConfig::default());
    expect.assert_eq(
        &log.append(bytes::Bytes::copy_from_slice(&bytes), 0)
            .unwrap_err()
            .to_string(),
    );
    assert_eq!(log.log_end_offset(), 0);
}

#[test]
fn append_rejects_what_is_not_a_batch() {
    check_append_error(
        &mut [],
        expect!["append of 0 bytes is empty or exceeds the limit of 1073741824 bytes"],
    );
    check_append_error(&mut [1, 2, 3], expect!["batch 0 of the append is invalid: batch is truncated: 3 bytes available, header needs 61"]);
    let mut flipped = batch(0, 1, 10, 0);
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    check_append_error(&mut flipped, expect!["batch 0 of the append is invalid: CRC-32C mismatch: stored 0x24eeab9f, computed 0xd685289c"]);
    let mut second_torn = batch(0, 1, 10, 0);
    second_torn.extend(&batch(1, 1, 10, 0)[..70]);
    check_append_error(&mut second_torn, expect!["batch 1 of the append is invalid: batch is truncated: 70 bytes available, header needs 78"]);
}

#[test]
fn reopen_after_close_returns_identical_bytes() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), small_config());
    fill(&mut log, 60);
    let before = read_all(&log);
    let (end, segments) = (log.log_end_offset(), log.segment_count());
    log.close().unwrap();
    let log = open_fs(temp.path(), small_config());
    assert_eq!((log.log_end_offset(), log.segment_count()), (end, segments));
    assert_eq!(read_all(&log), before);
}

#[test]
fn reopen_rebuilds_missing_or_damaged_indexes() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), small_config());
    let stored = fill(&mut log, 60);
    let end = log.log_end_offset();
    log.close().unwrap();
    let mut index_files: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "index" || e == "timeindex")
        })
        .collect();
    index_files.sort();
    assert!(index_files.len() > 10);
    for (i, path) in index_files.iter().enumerate() {
        match i % 3 {
            0 => std::fs::remove_file(path).unwrap(),
            1 => std::fs::write(path, b"garbage").unwrap(),
            _ => std::fs::write(path, [0xff; 24]).unwrap(),
        }
    }
    let log = open_fs(temp.path(), small_config());
    assert_eq!(log.log_end_offset(), end);
    for start in 0..end {
        assert_eq!(
            log.read(start, 500, end).unwrap(),
            expected_read(&stored, start, 500, end)
        );
    }
    assert_eq!(
        log.offset_for_timestamp(1_030).unwrap(),
        Some((stored[30].base, 1_030))
    );
    for path in &index_files[..index_files.len() - 2] {
        assert!(path.exists(), "{} rewritten", path.display());
    }
}

fn check_timestamp(log: &PartitionLog, timestamp_ms: i64, expect: Expect) {
    expect.assert_eq(&format!(
        "{:?}",
        log.offset_for_timestamp(timestamp_ms).unwrap()
    ));
}

#[test]
fn offset_for_timestamp_finds_the_first_batch_at_or_after() {
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(
        temp.path(),
        LogConfig {
            segment_bytes: 300,
            index_interval_bytes: 0,
            ..LogConfig::default()
        },
    );
    // Out-of-order timestamps: the answer is the first batch whose max timestamp is late enough.
    for (seed, timestamp_ms) in [100, 300, 200, 400, 250, 500, 450].into_iter().enumerate() {
        append(&mut log, &batch(seed as u64, 2, 10, timestamp_ms), 0);
    }
    check_timestamp(&log, 0, expect!["None"]);
    sync(&mut log);
    assert!(log.segment_count() > 2);
    check_timestamp(&log, 0, expect!["Some((0, 100))"]);
    check_timestamp(&log, 100, expect!["Some((0, 100))"]);
    check_timestamp(&log, 101, expect!["Some((2, 300))"]);
    check_timestamp(&log, 300, expect!["Some((2, 300))"]);
    check_timestamp(&log, 301, expect!["Some((6, 400))"]);
    check_timestamp(&log, 460, expect!["Some((10, 500))"]);
    check_timestamp(&log, 501, expect!["None"]);
    log.delete_records_before(3).unwrap();
    check_timestamp(&log, 0, expect!["Some((3, 300))"]);
    // The batch holding the log start offset is served whole.
    expect!["2..3 4..5"].assert_eq(&summary(&log.read(3, 200, 14).unwrap()));
    log.delete_records_before(4).unwrap();
    check_timestamp(&log, 0, expect!["Some((4, 200))"]);
}

#[test]
fn segment_ms_rolls_a_non_empty_segment() {
    let temp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_ms: 1_000,
        ..LogConfig::default()
    };
    let mut log = open_fs(temp.path(), config.clone());
    append(&mut log, &batch(0, 1, 1, 0), 5_000);
    append(&mut log, &batch(1, 1, 1, 0), 5_999);
    assert_eq!(log.segment_count(), 1);
    append(&mut log, &batch(2, 1, 1, 0), 6_000);
    assert_eq!(log.segment_count(), 2);
    append(&mut log, &batch(3, 1, 1, 0), 100_000);
    assert_eq!(log.segment_count(), 3);
}

#[test]
fn config_is_validated() {
    let temp = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 0,
        ..LogConfig::default()
    };
    let error = PartitionLog::open(Arc::new(FsDisk), temp.path(), config, 0)
        .err()
        .unwrap();
    expect!["invalid log config: segment_bytes 0 is outside 1..=2147483647"]
        .assert_eq(&error.to_string());
    assert!(matches!(error, LogError::Config(_)));
}

#[test]
fn one_append_of_more_batches_than_one_vectored_write_takes() {
    // Each batch is two slices (its header with the offset, then its body), so 700 batches are
    // more slices than one pwritev takes (1024): the write goes out in several calls.
    let temp = tempfile::tempdir().unwrap();
    let mut log = open_fs(temp.path(), LogConfig::default());
    let mut packed = Vec::new();
    for seed in 0..700 {
        packed.extend(batch(seed, 1 + (seed % 3) as usize, 7, 0));
    }
    let info = log
        .append(bytes::Bytes::copy_from_slice(&packed), 0)
        .unwrap();
    assert_eq!(info.batch_base_offsets.len(), 700);
    sync(&mut log);
    assert_eq!(read_all(&log), crate::stored(&packed, &info));
    drop(log);
    let log = open_fs(temp.path(), LogConfig::default());
    assert_eq!(
        read_all(&log),
        crate::stored(&packed, &info),
        "and after reopening"
    );
}

/// Whether this process maps `path` (`/proc/self/maps`).
fn maps(path: &Path) -> bool {
    let path = path.to_str().unwrap();
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .any(|line| line.ends_with(path))
}

/// Releasing idle files skips a sealed segment whose mapping a read still holds (its unmap would
/// fall to whichever thread drops the read) and takes it at the next release once the read is
/// done, even with nothing newly sealed or reopened.
#[test]
fn a_release_leaves_a_segment_a_read_holds_for_the_next_one() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("topic-0");
    let mut log = open_fs(&dir, small_config());
    fill(&mut log, 30);
    assert!(log.segment_count() > 2, "{} segments", log.segment_count());
    drop(log.release_idle_files(true));
    let first = dir.join(format!("{:020}.log", 0));
    let end = log.log_end_offset();
    let read = log
        .plan_read(0, end)
        .unwrap()
        .expect("data below the end")
        .run(5_000, true)
        .unwrap();
    assert!(!read.is_empty());
    assert!(maps(&first), "the read maps the first segment");
    let released = log.release_idle_files(true);
    assert!(released.is_empty(), "only the first segment was used");
    assert!(maps(&first), "a read holds it");
    drop(read);
    assert!(maps(&first), "still cached for the next read");
    let released = log.release_idle_files(false);
    assert_eq!(released.len(), 1, "tried again: nothing else says so");
    drop(released);
    assert!(!maps(&first), "unmapped once released");
}

#[test]
fn a_file_release_waits_for_the_reads_and_hands_the_mapping_to_the_caller() {
    let temp = tempfile::tempdir().unwrap();
    let path = temp.path().join("segment");
    let file = FsDisk.open(&path, true).unwrap();
    file.write_all_at(0, b"synced").unwrap();
    file.sync_data().unwrap();
    let read = file.read_shared(0, 6).unwrap();
    assert!(maps(&path));
    // While a read holds it, nothing is released (its drop would unmap it, wherever).
    assert!(
        matches!(file.release(), Release::InUse),
        "in use: left as it is"
    );
    assert!(maps(&path));
    assert_eq!(&read[1..], b"ynced");
    drop(read);
    assert!(maps(&path), "still cached for the next read");
    let released = file
        .release()
        .taken()
        .expect("no read holds it: a descriptor and a mapping to release");
    assert!(maps(&path), "the caller unmaps it where it chooses");
    drop(released);
    assert!(!maps(&path));
    // The next read opens and maps it again.
    assert_eq!(&file.read_shared(1, 5).unwrap()[..], b"ynced");
    assert!(maps(&path));
}
