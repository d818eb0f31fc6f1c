//! Issue 19: a new block of producer ids is made durable by the group commit, outside the broker
//! lock, before any log's writes of that round. Handling InitProducerId changes nothing on disk;
//! its answer waits for the round that writes the block. The order inside the round is what
//! keeps ids unique across a power cut: the transaction log's record of a new id must never be
//! on disk without the id's block (the control shows that it otherwise repeats).

use std::path::Path;
use std::sync::Arc;

use broker::{Broker, BrokerConfig, SyncRound};
use storage::SimDisk;

use crate::idempotence::{init_producer_id_waiting, now};

const DATA: &str = "/data";

fn open(disk: &SimDisk) -> Broker {
    let config = BrokerConfig::new(Path::new(DATA).to_path_buf());
    Broker::open(config, Arc::new(disk.clone()), now()).unwrap()
}

/// How much of a round runs before the power is cut.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Cut {
    /// The block of ids is written, the logs' writes are not.
    AfterIds,
    /// The logs are written and fsynced but the block is skipped: the wrong order, as control.
    LogsWithoutIds,
    /// The whole round.
    AfterRound,
}

/// An idempotent producer's id and a transactional id's, both answered only after `ticket`;
/// then one round run as far as `cut` says, and a power cut. Returns the ids, and what a new
/// idempotent producers and then the transactional id get after the restart.
fn allocate_then_cut(cut: Cut) -> ((i64, i64), ([i64; 2], i64)) {
    let disk = SimDisk::new();
    let mut broker = open(&disk);
    let before = disk.mutations();
    let ((error, idempotent, _), waits) = init_producer_id_waiting(&mut broker, None);
    assert_eq!(
        (error, waits.is_some()),
        (0, true),
        "a new block is waited for"
    );
    let ((error, transactional, _), txn_waits) = init_producer_id_waiting(&mut broker, Some("t"));
    assert_eq!(error, 0);
    assert!(
        txn_waits >= waits,
        "the transaction log's answer waits for the block too"
    );
    assert_eq!(disk.mutations(), before, "InitProducerId does no I/O");

    let SyncRound { ids, logs, .. } = broker.take_sync_work();
    let ids = ids.expect("the round carries the block");
    assert!(
        logs.iter()
            .any(|(log, _)| *log == broker::LogId::Transactions),
        "and the transaction log's record of the new id"
    );
    if cut != Cut::LogsWithoutIds {
        ids.run().unwrap();
    }
    if cut != Cut::AfterIds {
        for (_, sync) in &logs {
            sync.run_data().unwrap();
        }
    }
    disk.crash();
    drop(broker);

    let mut broker = open(&disk);
    let mut next = || init_producer_id_waiting(&mut broker, None).0 .1;
    let next = [next(), next()];
    let ((_, again, _), _) = init_producer_id_waiting(&mut broker, Some("t"));
    ((idempotent, transactional), (next, again))
}

#[test]
fn a_new_block_is_written_by_the_round_before_the_logs() {
    // The block alone reached the disk: the transactional id's record did not, so it starts
    // over with a new id; ids continue past the block.
    let ((idempotent, transactional), (next, again)) = allocate_then_cut(Cut::AfterIds);
    assert_eq!((idempotent, transactional), (0, 1));
    assert_eq!(next, [1_000, 1_001]);
    assert_eq!(again, 1_002);

    // The whole round: the transactional id keeps its id (a new epoch), ids continue past it.
    let (_, (next, again)) = allocate_then_cut(Cut::AfterRound);
    assert_eq!(next, [1_000, 1_001]);
    assert_eq!(again, 1, "the transactional id keeps its producer id");
}

#[test]
fn control_the_transaction_log_on_disk_without_its_block_repeats_an_id() {
    let ((_, transactional), (next, again)) = allocate_then_cut(Cut::LogsWithoutIds);
    assert_eq!(again, transactional, "the transaction log came back");
    // Nothing reserved a block, so a new producer gets the id the transactional id holds.
    assert!(
        next.contains(&transactional),
        "ids {next:?} after the restart; the transactional id holds {transactional}"
    );
}
