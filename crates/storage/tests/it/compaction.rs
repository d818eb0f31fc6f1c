//! Log compaction through the public API, on `SimDisk`: what a cleaning keeps, that recovery
//! reads a compacted log back, and power cuts at every sync of the install.

use std::collections::{BTreeMap, HashMap};

use storage::{CleanContext, CompactionConfig, Disk, LogConfig, PartitionLog, SimDisk};
use wire::batch::{build_batch, Batches, ProducerFields};
use wire::retain::Inflated;

use crate::{append, open_sim, read_all, sync};

const DELETE_RETENTION_MS: i64 = 1_000;

fn compacted_config() -> LogConfig {
    LogConfig {
        segment_bytes: 300,
        index_interval_bytes: 100,
        // Every sync checkpoints, so sealed segments fall below the recovery point at once.
        recovery_point_interval_ms: 1,
        retention_ms: -1,
        compaction: Some(CompactionConfig {
            delete_retention_ms: DELETE_RETENTION_MS,
            min_cleanable_dirty_ratio_ppm: 0,
            ..CompactionConfig::default()
        }),
        ..LogConfig::default()
    }
}

fn everything() -> CleanContext {
    CleanContext {
        end_offset: i64::MAX,
        ..CleanContext::default()
    }
}

/// The key of the `i`th record written by `fill`: five keys in turn, `k3` deleted by a
/// tombstone at 40 and never written again, and every tenth record without a key.
fn record(i: i64) -> (Option<String>, Option<String>) {
    let key = match i % 5 {
        3 if i > 40 => "k4".to_string(),
        k => format!("k{k}"),
    };
    match i {
        40 => (Some("k3".into()), None),
        i if i % 10 == 9 => (None, Some(format!("keyless {i}"))),
        i => (Some(key), Some(format!("v{i}"))),
    }
}

/// Appends records `from..to` one batch each, at time `1_000 + i`, syncing each.
fn fill(log: &mut PartitionLog, from: i64, to: i64, producer: ProducerFields) {
    for i in from..to {
        fill_one(log, i, producer);
    }
}

/// Each record's value, for comparing with what was written.
fn values(log: &PartitionLog) -> BTreeMap<i64, (Option<String>, Option<String>)> {
    let bytes = read_all(log);
    let mut out = BTreeMap::new();
    for batch in Batches::new(&bytes) {
        let (_, view) = batch.expect("whole batches");
        if view.is_control() {
            continue;
        }
        let inflated = Inflated::of(&view).expect("records");
        let body_values: Vec<_> = inflated.records().collect();
        for record in body_values {
            let key = record.key.map(|k| String::from_utf8(k.to_vec()).unwrap());
            let value = record_value(record.offset);
            out.insert(
                record.offset,
                (key, if record.tombstone { None } else { value }),
            );
        }
    }
    out
}

fn record_value(offset: i64) -> Option<String> {
    record(offset).1
}

/// What compaction promises, checked against what `fill` wrote (`written`, offsets
/// `0..written`): every record read is the one written at its offset; below the cleaner
/// checkpoint no key appears twice and no keyless record remains; every key's last record is
/// there, unless it is a tombstone older than `delete.retention.ms` at `now_ms`.
fn check_compacted(log: &PartitionLog, written: i64, now_ms: i64) {
    let read = values(log);
    for (offset, (key, value)) in &read {
        assert!(*offset < written, "offset {offset} was never written");
        assert_eq!(
            &record(*offset),
            &(key.clone(), value.clone()),
            "offset {offset}"
        );
    }
    // A fetch from any offset, one in a gap included, starts at the first batch holding a
    // record at or after it (reads go on past a segment whose last batches were removed).
    let last_read = read.keys().next_back().copied().unwrap_or(-1);
    for offset in log.log_start_offset()..written {
        let batches = match log.plan_read(offset, i64::MAX).expect("plan") {
            Some(planned) => planned.run(usize::MAX, true).expect("read"),
            None => bytes::Bytes::new(),
        };
        let first = Batches::new(&batches)
            .next()
            .map(|b| b.expect("whole").1.last_offset());
        match first {
            Some(last) => assert!(
                last >= offset,
                "a fetch at {offset} starts at a batch ending at {last}"
            ),
            None => assert!(
                offset > last_read,
                "a fetch at {offset} found nothing, the log holds {last_read}"
            ),
        }
    }
    let cleaned = log.cleaned_offset();
    let mut seen: HashMap<&Option<String>, i64> = HashMap::new();
    for (offset, (key, _)) in read.range(..cleaned) {
        assert!(
            key.is_some(),
            "a keyless record at {offset} survived compaction"
        );
        if let Some(before) = seen.insert(key, *offset) {
            panic!(
                "{key:?} at {before} and again at {offset} below the cleaner checkpoint {cleaned}"
            );
        }
    }
    let mut last: HashMap<String, i64> = HashMap::new();
    for i in 0..written {
        if let (Some(key), _) = record(i) {
            last.insert(key, i);
        }
    }
    for (key, offset) in last {
        let tombstone = record(offset).1.is_none();
        let expired = tombstone && now_ms - (1_000 + offset) > DELETE_RETENTION_MS;
        match (read.get(&offset), expired && offset < cleaned) {
            (Some(_), false) => {}
            (None, true) => {}
            (found, expired) => {
                panic!(
                    "{key}'s last record at {offset}: found {found:?}, expired tombstone {expired}"
                )
            }
        }
    }
}

/// Plans, runs and installs one cleaning, and runs the sync that finishes the install.
fn clean(log: &mut PartitionLog, now_ms: i64, context: CleanContext) -> storage::CleanStats {
    let job = log.plan_clean(now_ms, context).expect("a cleaning is due");
    let cleaned = job.run().expect("run the cleaning");
    let stats = log.install_clean(cleaned).expect("install the cleaning");
    sync(log);
    stats
}

#[test]
fn compaction_keeps_each_keys_last_record_at_its_offset() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, compacted_config());
    fill(&mut log, 0, 60, ProducerFields::NONE);
    let before = log.size_bytes();
    let written_rows = values(&log).len();
    assert_eq!(
        written_rows, 60,
        "control: every record is there before a cleaning"
    );

    let stats = clean(&mut log, 1_100, everything());
    eprintln!("{stats:?}");
    assert!(stats.segments >= 5, "{stats:?}");
    assert!(stats.records_removed > 30, "{stats:?}");
    assert!(
        log.size_bytes() < before,
        "{} bytes, {before} before",
        log.size_bytes()
    );
    assert!(
        log.cleaned_offset() > 40,
        "the tombstone's segment was cleaned"
    );
    check_compacted(&log, 60, 1_100);
    assert!(values(&log).get(&40).is_some(), "the young tombstone stays");
    let after_clean = values(&log);

    // Recovery reads the gaps back as the cleaning left them.
    disk.crash();
    let log = open_sim(&disk, compacted_config());
    assert_eq!(
        values(&log),
        after_clean,
        "the compacted log survives a power cut"
    );
    // Without the recovery point, recovery validates every segment, gaps included.
    drop(log);
    let dir = std::path::Path::new(crate::DIR);
    disk.remove_file(&dir.join("recovery-point.checkpoint"))
        .unwrap();
    disk.sync_dir(dir).unwrap();
    let mut log = open_sim(&disk, compacted_config());
    assert_eq!(
        values(&log),
        after_clean,
        "recovered without a recovery point"
    );

    // More records and a later cleaning: the tombstone is old enough to go, and `k3` with it.
    fill(&mut log, 60, 90, ProducerFields::NONE);
    let stats = clean(&mut log, 5_000, everything());
    assert!(stats.tombstones_removed >= 1, "{stats:?}");
    check_compacted(&log, 90, 5_000);
    assert!(values(&log)
        .values()
        .all(|(key, _)| key.as_deref() != Some("k3")));
}

#[test]
fn a_log_without_compaction_is_never_cleaned() {
    let disk = SimDisk::new();
    let config = LogConfig {
        compaction: None,
        ..compacted_config()
    };
    let mut log = open_sim(&disk, config);
    fill(&mut log, 0, 60, ProducerFields::NONE);
    assert!(log.plan_clean(1_100, everything()).is_none());
    assert_eq!(values(&log).len(), 60);
}

#[test]
fn nothing_at_or_above_the_callers_end_is_cleaned() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, compacted_config());
    fill(&mut log, 0, 60, ProducerFields::NONE);
    // An open transaction from offset 20 on: only segments ending at or before it are cleaned.
    let context = CleanContext {
        end_offset: 20,
        ..CleanContext::default()
    };
    clean(&mut log, 1_100, context);
    assert!(
        log.cleaned_offset() <= 20,
        "cleaned to {}",
        log.cleaned_offset()
    );
    let read = values(&log);
    for offset in 20..60 {
        assert!(
            read.contains_key(&offset),
            "offset {offset} above the end was touched"
        );
    }
    assert!(
        read.len() < 60,
        "control: something below the end was cleaned"
    );
}

#[test]
fn a_producers_last_batch_stays_as_an_empty_batch() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, compacted_config());
    let producer = ProducerFields {
        producer_id: 9,
        producer_epoch: 0,
        base_sequence: 0,
    };
    // Producer 9 writes offsets 0..10 (its last batch at 9, superseded by k4 at 14), then
    // records without a producer follow.
    for i in 0..10 {
        let mut fields = producer;
        fields.base_sequence = i as i32;
        fill_one(&mut log, i, fields);
    }
    fill(&mut log, 10, 60, ProducerFields::NONE);
    let context = CleanContext {
        producer_last_offsets: HashMap::from([(9, 9)]),
        ..everything()
    };
    clean(&mut log, 1_100, context);
    let bytes = read_all(&log);
    let batches: Vec<_> = Batches::new(&bytes)
        .map(|b| b.unwrap().1)
        .filter(|b| b.producer_id() == 9)
        .map(|b| (b.base_offset(), b.record_count(), b.base_sequence()))
        .collect();
    assert!(
        batches.contains(&(9, 0, 9)),
        "producer 9's last batch stays, empty, with its sequence: {batches:?}"
    );
    // Its earlier batches that lost every record are gone (offsets 0..9 hold keys k0..k4,
    // all superseded).
    assert!(
        batches
            .iter()
            .all(|&(offset, count, _)| offset == 9 || count > 0),
        "{batches:?}"
    );
}

fn fill_one(log: &mut PartitionLog, i: i64, producer: ProducerFields) {
    let (key, value) = record(i);
    let batch = build_batch(
        &[(
            key.as_deref().map(str::as_bytes),
            value.as_deref().map(str::as_bytes),
        )],
        1_000 + i,
        producer,
        0,
    );
    append(log, &batch, 1_000 + i);
    sync(log);
}

#[test]
fn a_cleaning_whose_segments_changed_is_discarded() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, compacted_config());
    fill(&mut log, 0, 60, ProducerFields::NONE);
    let job = log.plan_clean(1_100, everything()).expect("due");
    let cleaned = job.run().expect("run");
    log.delete_records_before(10).expect("delete records");
    sync(&mut log);
    let stats = log.install_clean(cleaned).expect("install");
    sync(&mut log);
    assert!(stats.discarded, "{stats:?}");
    let read = values(&log);
    assert_eq!(
        read.len(),
        60 - read.keys().next().copied().unwrap() as usize
    );
    assert!(
        !disk
            .list_dir(std::path::Path::new(crate::DIR))
            .unwrap()
            .iter()
            .any(|n| n.ends_with(".cleaned")),
        "the cleaned files are removed"
    );
    // Control: the next cleaning goes through.
    let stats = clean(&mut log, 1_100, everything());
    assert!(!stats.discarded && stats.records_removed > 0, "{stats:?}");
}

#[test]
fn a_power_cut_at_any_sync_of_a_cleaning_keeps_every_keys_last_record() {
    let mut cut_points = 0;
    for syncs in 0.. {
        let disk = SimDisk::new();
        let mut log = open_sim(&disk, compacted_config());
        fill(&mut log, 0, 60, ProducerFields::NONE);
        let job = log.plan_clean(1_100, everything()).expect("due");
        disk.fail_sync_after(syncs);
        let outcome = job
            .run()
            .and_then(|cleaned| log.install_clean(cleaned))
            .map(|_| match log.take_sync_work() {
                Some(work) => work.run().map(|()| log.mark_synced(work.offset())),
                None => Ok(()),
            });
        if !disk.sync_failure_pending() {
            cut_points += 1;
        }
        eprintln!("power cut after {syncs} syncs: {outcome:?}");
        let finished = disk.sync_failure_pending();
        drop(log);
        disk.crash();
        let mut log = open_sim(&disk, compacted_config());
        check_compacted(&log, 60, 1_100);
        let dir = std::path::Path::new(crate::DIR);
        assert!(
            !disk
                .list_dir(dir)
                .unwrap()
                .iter()
                .any(|n| n.ends_with(".cleaned")),
            "recovery removes the cleaned files left behind"
        );
        if finished {
            // The whole cleaning went through before the power cut.
            assert!(log.cleaned_offset() > 40, "the cleaner checkpoint survived");
            break;
        }
        // A cleaning after the restart finishes the job.
        if let Some(job) = log.plan_clean(1_100, everything()) {
            let cleaned = job.run().expect("run");
            log.install_clean(cleaned).expect("install");
            sync(&mut log);
        }
        check_compacted(&log, 60, 1_100);
        assert!(log.cleaned_offset() > 40);
        assert!(syncs < 200, "the cleaning never finished");
    }
    assert!(cut_points >= 6, "only {cut_points} cut points");
}

#[test]
fn a_compacted_log_on_the_file_system_reads_after_its_descriptors_are_released() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        PartitionLog::open(
            std::sync::Arc::new(storage::FsDisk),
            dir.path(),
            compacted_config(),
            0,
        )
        .expect("open")
    };
    let mut log = open();
    fill(&mut log, 0, 60, ProducerFields::NONE);
    clean(&mut log, 1_100, everything());
    // Sealed segments' descriptors are closed and opened again by name on the next read: the
    // name a cleaned segment has now.
    drop(log.release_idle_files(true));
    check_compacted(&log, 60, 1_100);
    let compacted = values(&log);
    drop(log);
    let log = open();
    assert_eq!(values(&log), compacted, "reopened from the files");
}
