//! What one Fetch response may carry, and what a damaged batch does to it: the response's
//! `max_bytes`, capped by the broker's `fetch.max.bytes`, bounds the whole response; only the
//! first batch of the first partition with data may exceed a limit (KIP-74), also when a
//! partition's limit is 0; a batch that fails its check on the way out fails its partition only.

use std::os::unix::fs::FileExt;

use broker::{Broker, BrokerConfig, FetchRead};
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use wire::batch::{build_batch, ProducerFields};

use crate::idempotence::{call, open_with, request, NOW_MS};
use crate::visibility::{group_commit, read};

const PARTITIONS: i32 = 3;
/// Each partition holds one batch of this many value bytes (about 920 KB, as in the report).
const VALUE_BYTES: usize = 920_000;

fn topic() -> TopicName {
    TopicName(StrBytes::from_static_str("t"))
}

/// A broker whose topic `t` has three partitions of one big batch each, all visible.
fn filled(dir: &std::path::Path, fetch_max_bytes: Option<usize>) -> Broker {
    let mut config = BrokerConfig::new(dir.to_path_buf());
    config.num_partitions = PARTITIONS;
    if let Some(limit) = fetch_max_bytes {
        config.fetch_max_bytes = limit;
    }
    let mut broker = open_with(config);
    let value = vec![b'v'; VALUE_BYTES];
    for partition in 0..PARTITIONS {
        produce(&mut broker, partition, &value);
    }
    group_commit(&mut broker);
    broker
}

/// Appends one batch of one record holding `value` to partition `partition` of `t`.
fn produce(broker: &mut Broker, partition: i32, value: &[u8]) {
    let batch = build_batch(&[(None, Some(value))], NOW_MS, ProducerFields::NONE, 0);
    let body = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(partition)
                .with_records(Some(batch.into()))])]);
    call(
        broker,
        request(ApiKey::Produce, 9, RequestKind::Produce(body)),
    );
}

/// (error code, record bytes) of each partition in a fetch of all three from offset 0.
fn fetch(broker: &mut Broker, max_bytes: i32, partition_max_bytes: i32) -> Vec<(i16, usize)> {
    let partitions = (0..PARTITIONS)
        .map(|p| {
            FetchPartition::default()
                .with_partition(p)
                .with_fetch_offset(0)
                .with_partition_max_bytes(partition_max_bytes)
        })
        .collect();
    let body = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(max_bytes)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic())
            .with_partitions(partitions)]);
    let FetchRead::Ready(response) = read(call(
        broker,
        request(ApiKey::Fetch, 12, RequestKind::Fetch(body)),
    )) else {
        panic!("a fetch without wait is answered");
    };
    response.responses[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.records.as_ref().map_or(0, |r| r.len())))
        .collect()
}

fn has_data(answers: &[(i16, usize)]) -> Vec<bool> {
    answers.iter().map(|&(_, bytes)| bytes > 0).collect()
}

#[test]
fn the_response_limit_bounds_the_whole_response() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = filled(dir.path(), None);
    // Control: a limit that holds all three serves all three.
    assert_eq!(
        has_data(&fetch(&mut broker, 3_000_000, 1 << 20)),
        [true, true, true]
    );
    // 1,000,000 bytes hold one batch: only the first partition's, not one per partition.
    let answers = fetch(&mut broker, 1_000_000, 1 << 20);
    assert_eq!(has_data(&answers), [true, false, false], "{answers:?}");
    assert!(answers.iter().all(|&(error, _)| error == 0));
    // Below one batch: the first partition's first batch still comes whole (KIP-74).
    assert_eq!(
        has_data(&fetch(&mut broker, 1, 1 << 20)),
        [true, false, false]
    );
}

#[test]
fn a_partition_limit_of_zero_still_serves_the_first_batch_of_the_first_partition() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = filled(dir.path(), None);
    assert_eq!(
        has_data(&fetch(&mut broker, 50_000_000, 0)),
        [true, false, false]
    );
}

#[test]
fn fetch_max_bytes_caps_what_a_client_asks_for() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = filled(dir.path(), Some(1_000_000));
    assert_eq!(
        has_data(&fetch(&mut broker, 50_000_000, 1 << 20)),
        [true, false, false]
    );
    // A request without a response limit (max_bytes 0, before v3's field) gets the cap too.
    assert_eq!(
        has_data(&fetch(&mut broker, 0, 1 << 20)),
        [true, false, false]
    );
}

#[test]
fn a_damaged_batch_fails_its_partition_and_the_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = filled(dir.path(), None);
    // Control: undamaged, every partition is served.
    let answers = fetch(&mut broker, 3_000_000, 1 << 20);
    assert_eq!(answers.iter().map(|a| a.0).collect::<Vec<_>>(), [0, 0, 0]);
    // Flip one value byte of partition 1's synced batch in place, as bit rot would.
    let segment = dir.path().join("t-1").join(format!("{:020}.log", 0));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&segment)
        .unwrap();
    let at = file.metadata().unwrap().len() / 2;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x01], at).unwrap();
    let answers = fetch(&mut broker, 3_000_000, 1 << 20);
    let corrupt_message = 2;
    assert_eq!(
        answers,
        [(0, answers[0].1), (corrupt_message, 0), (0, answers[2].1)]
    );
    assert!(answers[0].1 > VALUE_BYTES && answers[2].1 > VALUE_BYTES);
    // The broker goes on: the damaged partition keeps failing the same way, loudly, and the
    // others keep serving.
    assert_eq!(
        fetch(&mut broker, 3_000_000, 1 << 20)[1],
        (corrupt_message, 0)
    );
}

/// Fetch v10 is the first whose clients may get zstd batches (KIP-110): an older Fetch of a
/// partition holding one is answered UNSUPPORTED_COMPRESSION_TYPE, and the newer one is served.
#[test]
fn zstd_batches_are_not_served_to_fetch_versions_before_10() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open_with(BrokerConfig::new(dir.path().to_path_buf()));
    // The codec bits say zstd; the broker never decompresses, so the records may stay plain.
    const ZSTD: i16 = 4;
    let batch = build_batch(
        &[(None, Some(&b"v"[..]))],
        NOW_MS,
        ProducerFields::NONE,
        ZSTD,
    );
    let body = ProduceRequest::default()
        .with_acks(-1)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic())
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch.into()))])]);
    call(
        &mut broker,
        request(ApiKey::Produce, 9, RequestKind::Produce(body)),
    );
    group_commit(&mut broker);
    let fetch_at = |broker: &mut Broker, version: i16| {
        let body = FetchRequest::default()
            .with_max_bytes(1 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic())
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let FetchRead::Ready(response) = read(call(
            broker,
            request(ApiKey::Fetch, version, RequestKind::Fetch(body)),
        )) else {
            panic!("answered");
        };
        let partition = &response.responses[0].partitions[0];
        (
            partition.error_code,
            partition.records.as_ref().map_or(0, |r| r.len()),
        )
    };
    let unsupported_compression_type = 76;
    assert_eq!(fetch_at(&mut broker, 9), (unsupported_compression_type, 0));
    let (error, bytes) = fetch_at(&mut broker, 10);
    assert_eq!(error, 0);
    assert!(bytes > 0, "served from v10 on");
}

/// A consumer reading the oldest segment while retention or DeleteRecords deletes it: the read
/// was planned with the segment in the log, its file (a sealed segment holds no descriptor) is
/// removed before the read runs. The partition gets nothing that time, without an error; planned
/// again, the fetch meets the new log start: OFFSET_OUT_OF_RANGE, as Kafka answers.
#[test]
fn a_segment_deleted_after_its_read_was_planned_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = three_segments(dir.path());
    let fetch_from_0 = || {
        RequestKind::Fetch(
            FetchRequest::default()
                .with_max_wait_ms(0)
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(topic())
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]),
        )
    };
    let planned = match call(&mut broker, request(ApiKey::Fetch, 12, fetch_from_0())) {
        broker::Outcome::Fetch(planned) => planned,
        other => panic!("a fetch is planned: {other:?}"),
    };
    delete_the_first_two_segments(&mut broker, dir.path());
    let FetchRead::Ready(response) = planned.read() else {
        panic!("a fetch without wait is answered");
    };
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "not a storage error");
    assert_eq!(partition.records.as_ref().map_or(0, |r| r.len()), 0);
    // Planned again: below the new log start.
    let offset_out_of_range = 1;
    let FetchRead::Ready(response) = read(call(
        &mut broker,
        request(ApiKey::Fetch, 12, fetch_from_0()),
    )) else {
        panic!("a fetch without wait is answered");
    };
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        offset_out_of_range
    );
}

/// (error code, offset) of each partition for a ListOffsets by timestamp 0.
fn offsets_for_timestamp_0(broker: &mut Broker) -> Vec<(i16, i64)> {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let body = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic())
            .with_partitions(
                (0..PARTITIONS)
                    .map(|p| {
                        ListOffsetsPartition::default()
                            .with_partition_index(p)
                            .with_timestamp(0)
                    })
                    .collect(),
            )]);
    let outcome = call(
        broker,
        request(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(body)),
    );
    let broker::Outcome::Respond(ResponseKind::ListOffsets(response)) = outcome else {
        panic!("ListOffsets is answered at once: {outcome:?}");
    };
    response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.offset))
        .collect()
}

/// A batch damaged in synced data, met by ListOffsets looking up a timestamp: that partition is
/// answered CORRUPT_MESSAGE and the broker goes on (it used to stop: a `BrokerError`).
#[test]
fn a_damaged_batch_found_by_a_timestamp_lookup_fails_its_partition_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = filled(dir.path(), None);
    // Control: undamaged, every partition finds its first record.
    assert_eq!(
        offsets_for_timestamp_0(&mut broker),
        [(0, 0), (0, 0), (0, 0)]
    );
    // Partition 1's batch claims a length past the end of its segment.
    let segment = dir.path().join("t-1").join(format!("{:020}.log", 0));
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&segment)
        .unwrap();
    file.write_all_at(&i32::MAX.to_be_bytes(), 8).unwrap();
    let corrupt_message = 2;
    for _ in 0..2 {
        assert_eq!(
            offsets_for_timestamp_0(&mut broker),
            [(0, 0), (corrupt_message, -1), (0, 0)]
        );
    }
}

/// Issue 19: a ListOffsets by timestamp is planned under the lock and its batch headers are
/// read outside it. A segment deleted between the two (DeleteRecords here, retention alike) is
/// passed over: the answer is the first record after the new log start, not a storage error.
/// Control (run by hand): without `TimestampLookup::run` passing over a segment whose file is
/// gone, this partition is answered KAFKA_STORAGE_ERROR (56).
#[test]
fn a_timestamp_lookup_planned_before_its_segment_was_deleted_answers_from_the_next() {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    let dir = tempfile::tempdir().unwrap();
    let mut broker = three_segments(dir.path());
    let body = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(topic())
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(0)])]);
    let lookup = request(ApiKey::ListOffsets, 7, RequestKind::ListOffsets(body));
    let outcome = broker
        .handle(
            crate::idempotence::now(),
            1,
            &broker::ClientInfo::default(),
            lookup,
        )
        .unwrap();
    let broker::Outcome::Offsets(planned) = outcome else {
        panic!("a timestamp lookup is planned, not read under the lock: {outcome:?}");
    };
    delete_the_first_two_segments(&mut broker, dir.path());
    let ResponseKind::ListOffsets(response) = planned.run() else {
        panic!("a ListOffsets answer");
    };
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0, "not a storage error");
    // Two records per segment: the deletion up to 4 took the segments of 0-1 and 2-3; the
    // lookup planned before it finds offset 4, the first record of the next.
    assert_eq!(answer.offset, 4, "{answer:?}");
}

/// A broker on `dir` whose one partition holds six records of 2,000 bytes, two per segment,
/// synced and reopened, so that the sealed segments hold no descriptor (a read opens them
/// again by path).
fn three_segments(dir: &std::path::Path) -> Broker {
    let mut config = BrokerConfig::new(dir.to_path_buf());
    config.num_partitions = 1;
    config.log.segment_bytes = 4096;
    let mut broker = open_with(config.clone());
    for _ in 0..6 {
        produce(&mut broker, 0, &[b'v'; 2_000]);
    }
    crate::data_dir::group_commit(&mut broker);
    broker.close().unwrap();
    open_with(config)
}

/// DeleteRecords up to offset 4 on `three_segments`, synced: the first two segments' files are
/// gone.
fn delete_the_first_two_segments(broker: &mut Broker, dir: &std::path::Path) {
    let delete = DeleteRecordsRequest::default().with_topics(vec![DeleteRecordsTopic::default()
        .with_name(topic())
        .with_partitions(vec![DeleteRecordsPartition::default()
            .with_partition_index(0)
            .with_offset(4)])]);
    call(
        broker,
        request(ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(delete)),
    );
    group_commit(broker);
    assert!(
        !dir.join("t-0").join(format!("{:020}.log", 0)).exists(),
        "the first segment's file is gone"
    );
}
