//! Run-time compaction of the group log: past its compaction size the coordinator's snapshot is
//! appended, and only once the group commit has fsynced it are the records before it dropped;
//! the state replayed from the compacted log is the state before.

use broker::{Broker, BrokerConfig, Outcome};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::idempotence::{call, now, open_with, request};
use crate::visibility::group_commit;

const COMPACT_BYTES: u64 = 16 * 1024;

fn open(dir: &std::path::Path) -> Broker {
    let mut config = BrokerConfig::new(dir.to_path_buf());
    config.internal_log_compact_bytes = COMPACT_BYTES;
    open_with(config)
}

fn commit(broker: &mut Broker, group: &str, offset: i64) {
    let body = OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)])]);
    let outcome = call(
        broker,
        request(ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(body)),
    );
    assert!(matches!(outcome, Outcome::AfterSync { .. }), "{outcome:?}");
}

/// The time of the housekeeping after the one at `now()`.
fn next_housekeeping() -> broker::Now {
    now().plus_ms(broker::HOUSEKEEPING_INTERVAL_MS as u64)
}

fn committed(broker: &Broker) -> Vec<(String, i64)> {
    let coordinator = broker.groups();
    coordinator
        .groups()
        .iter()
        .map(|g| {
            let group = coordinator.group(&g.group_id).unwrap();
            (g.group_id.to_string(), group.offsets[0].offset.offset)
        })
        .collect()
}

#[test]
fn the_group_log_is_compacted_once_its_snapshot_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    for offset in 0..400 {
        commit(
            &mut broker,
            if offset % 2 == 0 { "even" } else { "odd" },
            offset,
        );
    }
    group_commit(&mut broker);
    let before = committed(&broker);
    assert_eq!(
        before,
        [("even".to_string(), 398), ("odd".to_string(), 399)]
    );

    broker.tick(now()).unwrap();
    assert_eq!(
        broker.group_log_start_offset(),
        0,
        "not before the snapshot is synced"
    );
    commit(&mut broker, "odd", 401); // after the snapshot: must survive the compaction
    group_commit(&mut broker);
    broker.tick(next_housekeeping()).unwrap();
    assert_eq!(
        broker.group_log_start_offset(),
        400,
        "the 400 commits are dropped"
    );

    broker.close().unwrap();
    let broker = open(dir.path());
    assert_eq!(
        committed(&broker),
        [("even".to_string(), 398), ("odd".to_string(), 401)]
    );
}

#[test]
fn the_transaction_log_is_compacted_and_replays_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    for round in 0..3 {
        for id in 0..60 {
            let body = InitProducerIdRequest::default()
                .with_transactional_id(Some(TransactionalId(StrBytes::from_string(format!(
                    "tx-{id}"
                )))))
                .with_transaction_timeout_ms(60_000 + round);
            call(
                &mut broker,
                request(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(body)),
            );
        }
        group_commit(&mut broker);
    }
    let describe = |broker: &Broker| format!("{:?}", broker.txn_coordinator().transactions());
    let before = describe(&broker);
    broker.tick(now()).unwrap(); // appends the snapshot
    group_commit(&mut broker);
    broker.tick(next_housekeeping()).unwrap(); // drops what precedes it
    assert_eq!(
        broker.transaction_log_start_offset(),
        180,
        "180 records dropped"
    );
    broker.close().unwrap();
    let broker = open(dir.path());
    assert_eq!(describe(&broker), before);
}
