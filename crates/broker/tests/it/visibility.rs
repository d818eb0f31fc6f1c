//! The high watermark is the fsynced end of the log: a record written but not yet synced by the
//! group commit is invisible to fetches and to ListOffsets, so a consumer never sees a record a
//! power loss could take back. A fetch at an offset between the high watermark and the log end
//! is not out of range; it is answered empty until the fsync.

use broker::{Broker, FetchRead, Now, Outcome};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::idempotence::{call, now, open, produce, request};

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("t"))
}

/// (error code, high watermark, record bytes) of a fetch of t-0 from `offset`.
fn fetch(broker: &mut Broker, offset: i64) -> (i16, i64, usize) {
    let body = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let outcome = call(broker, request(ApiKey::Fetch, 12, RequestKind::Fetch(body)));
    let FetchRead::Ready(response) = read(outcome) else {
        panic!("a fetch whose wait is over is answered");
    };
    let p = &response.responses[0].partitions[0];
    let bytes = p.records.as_ref().map_or(0, |r| r.len());
    (p.error_code, p.high_watermark, bytes)
}

fn latest(broker: &mut Broker) -> i64 {
    let body = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic())
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(-1)])]);
    let outcome = call(
        broker,
        request(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(body)),
    );
    let Outcome::Respond(ResponseKind::ListOffsets(r)) = outcome else {
        panic!("unexpected outcome {outcome:?}");
    };
    r.topics[0].partitions[0].offset
}

/// What the server's group commit does: take the work, fsync, report (at `NOW_MS`).
pub(crate) fn group_commit(broker: &mut Broker) {
    group_commit_at(broker, now());
}

/// `group_commit`, reported at `now`.
pub(crate) fn group_commit_at(broker: &mut Broker, now: Now) {
    let round = broker.take_sync_work();
    if let Some(ids) = &round.ids {
        ids.run().unwrap();
    }
    let mut synced = Vec::new();
    for (partition, sync) in round.logs {
        sync.run_data().unwrap();
        synced.push((partition, sync.offset()));
    }
    broker.synced(now, round.ticket, synced).unwrap();
}

#[test]
fn records_are_visible_once_synced() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    let answer = produce(&mut broker, -1, -1, -1, 3);
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));

    assert_eq!(
        fetch(&mut broker, 0),
        (0, 0, 0),
        "unsynced records are not served"
    );
    assert_eq!(latest(&mut broker), 0);
    assert_eq!(
        fetch(&mut broker, 3),
        (0, 0, 0),
        "the log end is not out of range"
    );
    assert_eq!(
        fetch(&mut broker, 4).0,
        1,
        "past the log end is OFFSET_OUT_OF_RANGE"
    );

    group_commit(&mut broker);
    let (error, high_watermark, bytes) = fetch(&mut broker, 0);
    assert_eq!((error, high_watermark), (0, 3));
    assert!(bytes > 0, "synced records are served");
    assert_eq!(latest(&mut broker), 3);
}

/// A Fetch of t-0 from offset 0 for at least one byte, waiting up to `max_wait_ms`.
fn long_poll(max_wait_ms: i32) -> wire::Request {
    let body = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic())
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    request(ApiKey::Fetch, 12, RequestKind::Fetch(body))
}

/// What the server does with a Fetch: runs its planned reads.
pub(crate) fn read(outcome: Outcome) -> FetchRead {
    let Outcome::Fetch(fetch) = outcome else {
        panic!("a fetch is planned: {outcome:?}");
    };
    fetch.read()
}

/// The record bytes of an answered fetch.
fn fetched_bytes(outcome: Outcome) -> usize {
    let FetchRead::Ready(response) = read(outcome) else {
        panic!("fetch not answered");
    };
    let records = &response.responses[0].partitions[0].records;
    records.as_ref().map_or(0, |r| r.len())
}

#[test]
fn a_fetch_waits_for_visible_data_until_the_deadline_the_broker_sets() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    let FetchRead::Short(fetch) = read(call(&mut broker, long_poll(500))) else {
        panic!("nothing to fetch: the fetch waits");
    };
    assert_eq!(fetch.deadline(), now().plus_ms(500).mono());
    produce(&mut broker, -1, -1, -1, 1);
    let FetchRead::Short(fetch) = read(broker.fetch_again(now().plus_ms(100), fetch).unwrap())
    else {
        panic!("written but not fsynced: still waiting");
    };
    group_commit_at(&mut broker, now().plus_ms(200));
    let answer = broker.fetch_again(now().plus_ms(200), fetch).unwrap();
    assert!(
        fetched_bytes(answer) > 0,
        "visible: answered with the record"
    );

    // Nothing new past offset 1: answered empty at the deadline, capped at FETCH_WAIT_MAX.
    let later = now().plus_ms(1_000);
    let mut body = long_poll(3_600_000);
    if let RequestKind::Fetch(fetch) = &mut body.body {
        fetch.topics[0].partitions[0].fetch_offset = 1;
    }
    let outcome = broker
        .handle(later, 2, &broker::ClientInfo::default(), body)
        .unwrap();
    let FetchRead::Short(fetch) = read(outcome) else {
        panic!("nothing to fetch: the fetch waits");
    };
    let cap = broker::config::FETCH_WAIT_MAX.as_millis() as u64;
    assert_eq!(fetch.deadline(), later.plus_ms(cap).mono());
    let FetchRead::Short(fetch) = read(broker.fetch_again(later.plus_ms(cap - 1), fetch).unwrap())
    else {
        panic!("not answered before its deadline");
    };
    assert_eq!(
        fetched_bytes(broker.fetch_again(later.plus_ms(cap), fetch).unwrap()),
        0
    );
}

/// A transaction request; returns the ticket its answer waits for.
fn txn(broker: &mut Broker, api_key: ApiKey, version: i16, body: RequestKind) -> Option<u64> {
    match call(broker, request(api_key, version, body)) {
        Outcome::AfterSync { ticket, .. } => Some(ticket),
        Outcome::Respond(_) => None,
        other => panic!("unexpected outcome {other:?}"),
    }
}

#[test]
fn transactional_produce_waits_until_its_partition_is_durably_added() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    let tid = || TransactionalId(StrBytes::from_static_str("tx"));
    let init = InitProducerIdRequest::default()
        .with_transactional_id(Some(tid()))
        .with_transaction_timeout_ms(60_000);
    txn(
        &mut broker,
        ApiKey::InitProducerId,
        4,
        RequestKind::InitProducerId(init),
    );
    group_commit(&mut broker);

    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(tid())
        .with_v3_and_below_producer_id(ProducerId(0))
        .with_v3_and_below_producer_epoch(0)
        .with_v3_and_below_topics(vec![
            add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                .with_name(topic())
                .with_partitions(vec![0]),
        ]);
    let ticket = txn(
        &mut broker,
        ApiKey::AddPartitionsToTxn,
        3,
        RequestKind::AddPartitionsToTxn(add),
    );
    assert!(ticket.is_some(), "the answer waits for the group commit");
    // A client that produces before that answer (librdkafka never does) is told to retry:
    // NOT_ENOUGH_REPLICAS, the retriable code Kafka maps CONCURRENT_TRANSACTIONS to here.
    let early = crate::idempotence::produce_as(&mut broker, Some("tx"), 0, 0, 0, 1);
    assert_eq!(early.error_code, 19);
    group_commit(&mut broker);
    let after = crate::idempotence::produce_as(&mut broker, Some("tx"), 0, 0, 0, 1);
    assert_eq!((after.error_code, after.base_offset), (0, 0));
}

#[test]
fn a_quiet_logs_recovery_point_catches_up_with_its_synced_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    produce(&mut broker, -1, -1, -1, 2);
    let recovery_point = |b: &Broker| b.topics().partition("t", 0).unwrap().log().recovery_point();
    // The round right after the log opened syncs the data but is too early for a checkpoint.
    let broker::SyncRound {
        ticket, logs: work, ..
    } = broker.take_sync_work();
    assert!(work.iter().all(|(_, w)| w.checkpoint().is_none()));
    run_round(&mut broker, now(), ticket, work);
    assert_eq!(
        recovery_point(&broker),
        0,
        "synced data past the recovery point"
    );

    let interval = storage::RECOVERY_POINT_INTERVAL_MS as u64;
    broker.tick(now().plus_ms(interval / 2)).unwrap();
    assert!(
        broker.take_sync_work().logs.is_empty(),
        "not due within the interval"
    );
    broker.tick(now().plus_ms(interval * 3 / 2)).unwrap();
    let broker::SyncRound {
        ticket, logs: work, ..
    } = broker.take_sync_work();
    let checkpoints: Vec<_> = work
        .iter()
        .map(|(tp, w)| (tp.clone(), w.checkpoint()))
        .collect();
    assert_eq!(
        checkpoints,
        [(broker::LogId::partition("t", 0), Some(2))],
        "a checkpoint-only round"
    );
    run_round(&mut broker, now().plus_ms(interval * 3 / 2), ticket, work);
    assert_eq!(recovery_point(&broker), 2);
    broker.tick(now().plus_ms(interval * 2)).unwrap();
    assert!(
        broker.take_sync_work().logs.is_empty(),
        "nothing left to checkpoint"
    );
}

/// Runs a round's fsyncs and checkpoints and reports them, as the server does.
fn run_round(
    broker: &mut Broker,
    now: Now,
    ticket: u64,
    work: Vec<(broker::LogId, storage::SyncWork)>,
) {
    let mut synced = Vec::new();
    let mut written = Vec::new();
    for (partition, sync) in work {
        sync.run_data().unwrap();
        sync.run_checkpoint().unwrap();
        synced.push((partition.clone(), sync.offset()));
        written.extend(sync.checkpoint().map(|at| (partition, at)));
    }
    broker.synced(now, ticket, synced).unwrap();
    broker.mark_checkpointed(written);
}

/// (offset, timestamp) ListOffsets v7 answers for `timestamp` on t-0.
fn offset_at(broker: &mut Broker, timestamp: i64) -> (i64, i64) {
    let body = ListOffsetsRequest::default().with_topics(vec![ListOffsetsTopic::default()
        .with_name(topic())
        .with_partitions(vec![ListOffsetsPartition::default()
            .with_partition_index(0)
            .with_timestamp(timestamp)])]);
    let outcome = call(
        broker,
        request(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(body)),
    );
    let Outcome::Respond(ResponseKind::ListOffsets(r)) = outcome else {
        panic!("unexpected outcome {outcome:?}");
    };
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    (p.offset, p.timestamp)
}

#[test]
fn offsets_by_timestamp_answer_only_visible_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    produce(&mut broker, -1, -1, -1, 3);
    let max_timestamp = -3;
    // Written, not fsynced: neither a timestamp lookup nor max timestamp finds the records.
    assert_eq!(offset_at(&mut broker, 0), (-1, -1));
    assert_eq!(offset_at(&mut broker, max_timestamp), (-1, -1));
    group_commit(&mut broker);
    assert_eq!(offset_at(&mut broker, 0), (0, crate::idempotence::NOW_MS));
    assert_eq!(
        offset_at(&mut broker, max_timestamp),
        (0, crate::idempotence::NOW_MS)
    );
}
