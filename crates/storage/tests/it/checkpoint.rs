//! The recovery-point checkpoint runs apart from the data fsyncs (as the server runs it, off the
//! acknowledgement path): the next sync may be taken while it is outstanding, no second
//! checkpoint is scheduled meanwhile, and only a written checkpoint moves the recovery point.

use storage::{LogConfig, SimDisk, RECOVERY_POINT_INTERVAL_MS};

use crate::{append, batch, open_sim};

#[test]
fn a_checkpoint_outstanding_blocks_only_the_next_checkpoint() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    let mut now_ms = 0;
    let mut tick = |log: &mut storage::PartitionLog, seed| {
        now_ms += RECOVERY_POINT_INTERVAL_MS;
        append(log, &batch(seed, 2, 10, now_ms), now_ms);
    };

    tick(&mut log, 1);
    let first = log.take_sync_work().expect("appended data needs a sync");
    assert_eq!(
        first.checkpoint(),
        Some(2),
        "a checkpoint is due after the interval"
    );
    first.run_data().expect("data fsync");
    log.mark_data_synced(first.offset());
    assert_eq!(log.synced_offset(), 2);
    assert_eq!(log.checkpoint_in_flight(), Some(2));

    // The checkpoint is still being written: the next round syncs data without one.
    tick(&mut log, 2);
    let second = log.take_sync_work().expect("a second round may start");
    assert_eq!(second.checkpoint(), None, "one checkpoint at a time");
    second.run().expect("data fsync");
    log.mark_data_synced(second.offset());

    first.run_checkpoint().expect("checkpoint");
    log.mark_checkpointed(2);
    assert_eq!(log.checkpoint_in_flight(), None);

    // With the first reported, the next due checkpoint covers everything synced.
    tick(&mut log, 3);
    let third = log.take_sync_work().expect("third round");
    assert_eq!(third.checkpoint(), Some(6));
    third.run().expect("sync");
    log.mark_synced(third.offset());
    assert_eq!(
        log.checkpoint_in_flight(),
        None,
        "mark_synced reports both halves"
    );
    log.close().expect("close");
}

#[test]
#[should_panic(expected = "only the scheduled checkpoint is reported")]
fn reporting_an_unscheduled_checkpoint_is_a_bug() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    append(&mut log, &batch(1, 1, 10, 0), 0);
    log.mark_checkpointed(1);
}

/// The checkpoint is written by path after the round's data (the server runs it in a task of
/// its own): deleting the partition waits for it, so a partition created again under the same
/// name can never receive the old one's recovery point.
#[test]
fn delete_waits_for_a_checkpoint_in_flight() {
    let disk = SimDisk::new();
    let mut log = open_sim(&disk, LogConfig::default());
    let now_ms = RECOVERY_POINT_INTERVAL_MS;
    append(&mut log, &batch(1, 2, 10, now_ms), now_ms);
    let work = log.take_sync_work().expect("appended data needs a sync");
    assert_eq!(work.checkpoint(), Some(2));
    work.run_data().expect("data fsync");
    log.mark_data_synced(work.offset());
    let written = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let written = written.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            work.run_checkpoint().expect("checkpoint");
            written.store(true, std::sync::atomic::Ordering::SeqCst);
            work
        })
    };
    log.delete().unwrap();
    assert!(
        written.load(std::sync::atomic::Ordering::SeqCst),
        "delete returned before the checkpoint was written"
    );
    writer.join().unwrap();
}
