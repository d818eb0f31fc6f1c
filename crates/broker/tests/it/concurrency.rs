//! Produces holding the broker shared (`Broker::handle_shared`), from many threads at once, on
//! partitions they share: every idempotent producer's batch is sent by two threads racing (a
//! retry on a second connection while the first is still in flight), so the partition's
//! producer-state check and its append must be one step. Each batch must be written once, both
//! senders must be answered with its one offset, and the offsets must be the partition's log,
//! without a gap or a repeat.

use std::collections::BTreeMap;
use std::sync::Barrier;

use broker::{BrokerConfig, ClientInfo, Outcome, SharedCall};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use wire::batch::{build_batch, ProducerFields};

use crate::idempotence::{init_producer_id, now, open_with, request, NOW_MS};
use crate::timers::join;

const PARTITIONS: i32 = 4;
/// Two producers per partition, each sending its batches from two threads.
const PRODUCERS: usize = 8;
const BATCHES: i32 = 400;

#[test]
fn racing_retries_across_partitions_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = BrokerConfig::new(dir.path().to_path_buf());
    config.num_partitions = PARTITIONS;
    let mut broker = open_with(config);
    let ids: Vec<i64> = (0..PRODUCERS)
        .map(|_| {
            let (error, id, _epoch) = init_producer_id(&mut broker, None);
            assert_eq!(error, 0);
            id
        })
        .collect();

    let broker = &broker;
    // A producer's two senders send each sequence at once, then wait for each other: Kafka keeps
    // a producer's last 5 batches, so a retry may lag its original by no more.
    let in_step: Vec<Barrier> = (0..PRODUCERS).map(|_| Barrier::new(2)).collect();
    // (producer, sequence) -> the base offsets its two senders were answered.
    let answers: Vec<BTreeMap<i32, i64>> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..PRODUCERS * 2)
            .map(|sender| {
                let (producer, in_step) = (sender / 2, &in_step);
                let (id, partition) = (ids[producer], producer as i32 % PARTITIONS);
                scope.spawn(move || {
                    let mut offsets = BTreeMap::new();
                    for seq in 0..BATCHES {
                        in_step[producer].wait();
                        let outcome = broker
                            .handle_shared(
                                now(),
                                sender as u64,
                                &ClientInfo::default(),
                                produce(id, partition, seq),
                            )
                            .unwrap();
                        offsets.insert(seq, base_offset(outcome));
                    }
                    offsets
                })
            })
            .collect();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    });

    let mut by_partition: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for (producer, pair) in answers.chunks(2).enumerate() {
        let split = pair[0]
            .iter()
            .find(|(seq, offset)| pair[1][seq] != **offset);
        assert_eq!(
            split, None,
            "producer {producer}: both senders of a batch are answered its one offset"
        );
        let partition = producer as i32 % PARTITIONS;
        by_partition
            .entry(partition)
            .or_default()
            .extend(pair[0].values());
    }
    for (partition, mut offsets) in by_partition {
        offsets.sort_unstable();
        let written = broker
            .topics()
            .partition("t", partition)
            .unwrap()
            .log_end_offset();
        let expected: Vec<i64> = (0..written).collect();
        assert_eq!(
            offsets, expected,
            "partition {partition}: every batch written once, at the offset it was answered"
        );
    }
}

/// One record of producer `id` at sequence `seq` to `t-{partition}`, `acks=all`.
fn produce(id: i64, partition: i32, seq: i32) -> wire::Request {
    let producer = ProducerFields {
        producer_id: id,
        producer_epoch: 0,
        base_sequence: seq,
    };
    let batch = build_batch(&[(None, Some(&b"v"[..]))], NOW_MS, producer, 0);
    let body = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.into()))])]);
    request(ApiKey::Produce, 9, RequestKind::Produce(body))
}

fn base_offset(call: SharedCall) -> i64 {
    let SharedCall::Handled(outcome) = call else {
        panic!("a produce is handled holding the broker shared");
    };
    let Outcome::AfterSync {
        response: ResponseKind::Produce(response),
        ..
    } = outcome
    else {
        panic!("an acks=all produce waits for the group commit: {outcome:?}");
    };
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 0, "{answer:?}");
    answer.base_offset
}

/// A group request handled holding the broker shared may answer other members' requests: the
/// answers it routes are left for the server with the call's effects (`take_shared_effects`),
/// which a produce never leaves. Here B's JoinGroup waits (the group rebalances), and A's
/// rejoin, another shared call, completes the rebalance: B's answer comes out with A's call.
#[test]
fn a_shared_group_call_leaves_the_answers_it_routes_to_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open_with(BrokerConfig::new(dir.path().to_path_buf()));
    // The first tick sets the coordinators' periodic timers from the time.
    broker.tick(now()).unwrap();
    let client = ClientInfo::default();
    let shared = |broker: &broker::Broker, at: broker::Now, token: u64, request| match broker
        .handle_shared(at, token, &client, request)
        .unwrap()
    {
        SharedCall::Handled(outcome) => outcome,
        SharedCall::Exclusive(_) => panic!("a group request is handled shared"),
    };

    // A joins the new group, alone: answered by the tick at the initial rebalance delay.
    let (a_join, b_join, a_rejoin) = (1, 2, 3);
    let outcome = shared(&broker, now(), a_join, join(""));
    assert!(matches!(outcome, Outcome::Later), "{outcome:?}");
    assert!(
        broker.take_shared_effects().is_some(),
        "the join may have moved the coordinator's deadline"
    );
    let (a, later) = loop {
        let at = broker::Now::at_wall_ms(broker.next_deadline());
        broker.tick(at).unwrap();
        let routed = broker.take_routed();
        if let Some(answer) = routed.into_iter().find(|r| r.token == a_join) {
            let ResponseKind::JoinGroup(answer) = answer.response else {
                panic!("a JoinGroup answer");
            };
            break (answer, at);
        }
    };
    let sync = SyncGroupRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g")))
        .with_generation_id(a.generation_id)
        .with_member_id(a.member_id.clone())
        .with_assignments(vec![
            sync_group_request::SyncGroupRequestAssignment::default()
                .with_member_id(a.member_id.clone())
                .with_assignment(bytes::Bytes::from_static(b"a")),
        ]);
    let outcome = broker
        .handle_shared(
            later,
            4,
            &client,
            request(ApiKey::SyncGroup, 3, RequestKind::SyncGroup(sync)),
        )
        .unwrap();
    assert!(matches!(
        outcome,
        SharedCall::Handled(Outcome::Respond(_) | Outcome::AfterSync { .. })
    ));
    broker.take_shared_effects();

    // B joins: the group rebalances and B waits for A.
    let outcome = shared(&broker, later, b_join, join(""));
    assert!(matches!(outcome, Outcome::Later), "{outcome:?}");
    let routed = broker
        .take_shared_effects()
        .expect("a group call's effects");
    assert!(routed.is_empty(), "nobody answered yet: {}", routed.len());

    // A produce leaves no effects for the server to look at.
    let outcome = shared(&broker, later, 5, produce(-1, 0, 0));
    assert!(matches!(outcome, Outcome::AfterSync { .. }), "{outcome:?}");
    assert!(broker.take_shared_effects().is_none());

    // A rejoins: the rebalance completes, and B's answer is routed by A's call.
    let outcome = shared(&broker, later, a_rejoin, join(a.member_id.as_str()));
    assert!(
        matches!(
            outcome,
            Outcome::Respond(ResponseKind::JoinGroup(_))
                | Outcome::AfterSync {
                    response: ResponseKind::JoinGroup(_),
                    ..
                }
        ),
        "{outcome:?}"
    );
    let routed = broker
        .take_shared_effects()
        .expect("a group call's effects");
    let answered: Vec<u64> = routed.iter().map(|r| r.token).collect();
    assert_eq!(
        answered,
        vec![b_join],
        "B's JoinGroup is answered by A's rejoin"
    );
    let ResponseKind::JoinGroup(b) = &routed[0].response else {
        panic!("a JoinGroup answer");
    };
    assert_eq!((b.error_code, b.generation_id), (0, a.generation_id + 1));
}

/// A Metadata request is answered holding the broker shared unless it may auto-create a topic:
/// that one is handed back, to be handled holding the broker exclusively.
#[test]
fn a_metadata_request_is_shared_unless_it_may_create_a_topic() {
    let dir = tempfile::tempdir().unwrap();
    let broker = open_with(BrokerConfig::new(dir.path().to_path_buf()));
    let metadata = |name: &'static str, create: bool| {
        let body = MetadataRequest::default()
            .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
            )
            .with_name(Some(TopicName(StrBytes::from_static_str(name))))]))
            .with_allow_auto_topic_creation(create);
        request(ApiKey::Metadata, 9, RequestKind::Metadata(body))
    };
    let shared = |request| match broker
        .handle_shared(now(), 1, &ClientInfo::default(), request)
        .unwrap()
    {
        SharedCall::Handled(Outcome::Respond(ResponseKind::Metadata(r))) => Some(r),
        SharedCall::Handled(other) => panic!("{other:?}"),
        SharedCall::Exclusive(_) => None,
    };
    let existing = shared(metadata("t", true)).expect("an existing topic: shared");
    assert_eq!(existing.topics[0].error_code, 0);
    let refused = shared(metadata("new", false)).expect("no auto-creation asked: shared");
    assert_eq!(
        refused.topics[0].error_code, 3,
        "UNKNOWN_TOPIC_OR_PARTITION"
    );
    assert!(
        shared(metadata("new", true)).is_none(),
        "an auto-creating Metadata needs the broker exclusively"
    );
}
