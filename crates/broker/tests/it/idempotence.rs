//! Idempotent produce through `Broker::handle`, without sockets: InitProducerId, duplicates
//! answered with their original offsets (and, under `acks=all`, only after the group commit),
//! fencing and sequence gaps with Kafka's error codes, and producer ids and state that survive
//! a reopen of the data directory.

use std::sync::Arc;

use broker::{Broker, BrokerConfig, ClientInfo, Now, Outcome};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use wire::batch::{build_batch, ProducerFields};
use wire::Request;

pub(crate) const NOW_MS: i64 = 1_700_000_000_000;

/// `NOW_MS` as the broker takes it.
pub(crate) fn now() -> Now {
    Now::at_wall_ms(NOW_MS)
}

/// Handles `request` at `NOW_MS`, as the request of token 1.
pub(crate) fn call(broker: &mut Broker, request: Request) -> Outcome {
    call_at(broker, now(), request)
}

/// Handles `request` at `now`, as the request of token 1.
pub(crate) fn call_at(broker: &mut Broker, now: Now, request: Request) -> Outcome {
    let outcome = broker
        .handle(now, 1, &ClientInfo::default(), request)
        .unwrap();
    outside_the_lock(broker, now, 1, outcome)
}

/// The outcome of the request of `token` once what the server runs outside the lock is run: a
/// ListOffsets' planned lookups (its answer), or the file work of its metadata changes, reported
/// (its routed answer).
pub(crate) fn outside_the_lock(
    broker: &mut Broker,
    now: Now,
    token: u64,
    outcome: Outcome,
) -> Outcome {
    if let Outcome::Offsets(offsets) = outcome {
        return Outcome::Respond(offsets.run());
    }
    let Some(job) = broker.take_admin_job() else {
        return outcome;
    };
    assert!(matches!(outcome, Outcome::Later), "{outcome:?}");
    broker.admin_done(now, job.run()).unwrap();
    let routed = broker.take_routed().into_iter();
    let answer = routed.filter(|r| r.token == token).map(|r| r.response);
    Outcome::Respond(
        answer
            .last()
            .expect("a job's answer is routed to its request"),
    )
}
const PRODUCE_VERSION: i16 = 9;

/// Opens a broker on `dir` with topic `t` (one partition).
pub(crate) fn open(dir: &std::path::Path) -> Broker {
    open_with(BrokerConfig::new(dir.to_path_buf()))
}

/// Opens a broker with `config` and creates topic `t` (one partition).
pub(crate) fn open_with(config: BrokerConfig) -> Broker {
    let mut broker = Broker::open(config, Arc::new(storage::FsDisk), now()).unwrap();
    let body = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))]))
        .with_allow_auto_topic_creation(true);
    call(
        &mut broker,
        request(ApiKey::Metadata, 9, RequestKind::Metadata(body)),
    );
    broker
}

pub(crate) fn request(api_key: ApiKey, version: i16, body: RequestKind) -> Request {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1);
    Request {
        api_key,
        header,
        body,
    }
}

pub(crate) fn init_producer_id(
    broker: &mut Broker,
    transactional_id: Option<&str>,
) -> (i16, i64, i16) {
    init_producer_id_waiting(broker, transactional_id).0
}

/// InitProducerId's answer, and the ticket it waits for (`None`: answered at once). A new id
/// whose block of ids is not durable yet waits for the round that writes the block.
pub(crate) fn init_producer_id_waiting(
    broker: &mut Broker,
    transactional_id: Option<&str>,
) -> ((i16, i64, i16), Option<u64>) {
    let body = InitProducerIdRequest::default()
        .with_transactional_id(
            transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
        )
        .with_transaction_timeout_ms(60_000);
    let outcome = call(
        broker,
        request(ApiKey::InitProducerId, 4, RequestKind::InitProducerId(body)),
    );
    // A transactional id's answer waits for the transaction log's fsync.
    let (r, ticket) = match outcome {
        Outcome::Respond(ResponseKind::InitProducerId(r)) => (r, None),
        Outcome::AfterSync {
            response: ResponseKind::InitProducerId(r),
            ticket,
        } => (r, Some(ticket)),
        other => panic!("unexpected outcome {other:?}"),
    };
    ((r.error_code, r.producer_id.0, r.producer_epoch), ticket)
}

/// One partition's answer to a produce request, and whether it waits for the group commit.
#[derive(Debug, PartialEq)]
pub(crate) struct Answer {
    pub(crate) error_code: i16,
    pub(crate) base_offset: i64,
    log_start_offset: i64,
    after_sync: Option<u64>,
    error_message: Option<String>,
}

/// Produces `count` records of producer `id`, epoch `epoch`, from sequence `seq`, to t-0.
pub(crate) fn produce(broker: &mut Broker, id: i64, epoch: i16, seq: i32, count: usize) -> Answer {
    produce_as(broker, None, id, epoch, seq, count)
}

/// `produce`, as a transactional producer when `transactional_id` is given.
pub(crate) fn produce_as(
    broker: &mut Broker,
    transactional_id: Option<&str>,
    id: i64,
    epoch: i16,
    seq: i32,
    count: usize,
) -> Answer {
    let records = vec![(None, Some(&b"v"[..])); count];
    let producer = ProducerFields {
        producer_id: id,
        producer_epoch: epoch,
        base_sequence: seq,
    };
    let attributes = if transactional_id.is_some() { 0x10 } else { 0 };
    let batch = build_batch(&records, NOW_MS, producer, attributes);
    let body = ProduceRequest::default()
        .with_transactional_id(
            transactional_id.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
        )
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.into()))])]);
    let outcome = call(
        broker,
        request(ApiKey::Produce, PRODUCE_VERSION, RequestKind::Produce(body)),
    );
    let (after_sync, response) = match outcome {
        Outcome::Respond(response) => (None, response),
        Outcome::AfterSync { ticket, response } => (Some(ticket), response),
        other => panic!("unexpected outcome {other:?}"),
    };
    let ResponseKind::Produce(response) = response else {
        panic!("not a produce response");
    };
    let partition = &response.responses[0].partition_responses[0];
    Answer {
        error_code: partition.error_code,
        base_offset: partition.base_offset,
        log_start_offset: partition.log_start_offset,
        after_sync,
        error_message: partition.error_message.as_ref().map(|m| m.to_string()),
    }
}

fn ok(base_offset: i64, ticket: u64) -> Answer {
    Answer {
        error_code: 0,
        base_offset,
        log_start_offset: 0,
        after_sync: Some(ticket),
        error_message: None,
    }
}

fn refused(error_code: i16, message: &str) -> Answer {
    Answer {
        error_code,
        base_offset: -1,
        log_start_offset: 0,
        after_sync: None,
        error_message: Some(message.to_string()),
    }
}

#[test]
fn duplicates_fencing_and_gaps_as_kafka_answers_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    // The first id's block is staged with ticket 1, which its answer waits for.
    let ((error, id, epoch), waits) = init_producer_id_waiting(&mut broker, None);
    assert_eq!((error, id, epoch, waits), (0, 0, 0, Some(1)));
    assert_eq!(produce(&mut broker, id, 0, 0, 3), ok(0, 2));
    assert_eq!(produce(&mut broker, id, 0, 3, 2), ok(3, 3));
    // The retry of a lost ack: its original offset, nothing written, and under acks=all it
    // waits for the group commit like the original (which is not synced yet: ticket 3).
    assert_eq!(produce(&mut broker, id, 0, 0, 3), ok(0, 3));
    assert_eq!(produce(&mut broker, id, 0, 3, 2), ok(3, 3));
    assert_eq!(
        broker.topics().partition("t", 0).unwrap().log_end_offset(),
        5
    );
    // A gap.
    assert_eq!(
        produce(&mut broker, id, 0, 9, 1),
        refused(45, "producer 0 epoch 0: sequence 9, expected 5")
    );
    // librdkafka's own epoch bump: a newer epoch from sequence 0.
    assert_eq!(produce(&mut broker, id, 1, 0, 1), ok(5, 4));
    // The old epoch is fenced, even for what was a duplicate.
    assert_eq!(
        produce(&mut broker, id, 0, 3, 2),
        refused(47, "producer 0 epoch 0 is older than the current epoch 1")
    );
    // A newer epoch must start at 0.
    assert_eq!(
        produce(&mut broker, id, 2, 7, 1),
        refused(45, "producer 0 epoch 2: sequence 7, expected 0")
    );
    // Another producer, unknown to the partition, may start anywhere.
    // Its id is of the same block, still not durable: its answer waits for the same round.
    let ((_, other, _), waits) = init_producer_id_waiting(&mut broker, None);
    assert_eq!((other, waits), (1, Some(1)));
    assert_eq!(produce(&mut broker, other, 0, 40, 1), ok(6, 5));
}

/// Through the one front door (issue 19), an InitProducerId with a transactional id reaches the
/// transaction coordinator, as it always did through the server: no longer the
/// COORDINATOR_NOT_AVAILABLE stub of the idempotent handler, which only a direct call saw.
#[test]
fn transactional_ids_go_to_the_transaction_coordinator() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    assert_eq!(init_producer_id(&mut broker, Some("txn")), (0, 0, 0));
    assert_eq!(init_producer_id(&mut broker, Some("")), (42, -1, -1));
}

#[test]
fn producer_ids_and_state_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    let (_, id, _) = init_producer_id(&mut broker, None);
    assert_eq!(produce(&mut broker, id, 0, 0, 2), ok(0, 2));
    assert_eq!(produce(&mut broker, id, 0, 2, 2), ok(2, 3));
    broker.close().unwrap();
    let mut broker = open(dir.path());
    // The rest of the reserved block is never handed out again (the clean close wrote the
    // block no round had written yet).
    let (_, next, _) = init_producer_id(&mut broker, None);
    assert_eq!(next, 1_000);
    // The state came back from the snapshot written at close. The duplicate's answer waits
    // for the newest ticket, as any duplicate's does: here the new block's.
    assert_eq!(produce(&mut broker, id, 0, 2, 2), ok(2, 1));
    assert_eq!(
        produce(&mut broker, id, 0, 5, 1).error_code,
        45,
        "sequence 4 expected"
    );
    assert_eq!(produce(&mut broker, id, 0, 4, 1), ok(4, 2));
}

/// The server clamps the wall clock at its boundary, so the broker has no clamps of its own: a
/// call earlier than the one before is a broken invariant, and stops the broker.
#[test]
#[should_panic(expected = "time went back")]
fn a_call_earlier_than_the_previous_one_stops_the_broker() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    broker.tick(now().plus_ms(1_000)).unwrap();
    let body = ApiVersionsRequest::default();
    call(
        &mut broker,
        request(ApiKey::ApiVersions, 3, RequestKind::ApiVersions(body)),
    );
}
