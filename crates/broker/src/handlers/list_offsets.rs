//! ListOffsets: earliest (-2) is the log start offset, latest (-1) the high watermark (the last
//! stable offset under read_committed), a timestamp the first record whose timestamp reaches it,
//! and max timestamp (-3, v7+) the first record carrying the log's largest timestamp, as in Kafka;
//! a record found at or above the high watermark (last stable offset) is not answered (-1).
//! Inside a compressed batch ferry does not decompress: the answer is then the batch's first
//! offset and its max timestamp. With no tiered storage, earliest local (-4, v8+) is the log start
//! offset and latest tiered (-5, v9+) is -1, as Kafka answers without remote storage.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};

use super::code;
use acl::Operation;
use storage::LogError;

use crate::{Broker, BrokerError, ClientInfo};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// The first versions that may ask for -3, -4 and -5.
const MAX_TIMESTAMP_MIN_VERSION: i16 = 7;
const EARLIEST_LOCAL_MIN_VERSION: i16 = 8;
const LATEST_TIERED_MIN_VERSION: i16 = 9;
const READ_COMMITTED: i8 = 1;

pub fn handle(
    broker: &Broker,
    client: &ClientInfo,
    request: &ListOffsetsRequest,
    version: i16,
) -> Result<ResponseKind, BrokerError> {
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let denied = broker.topic_denied(client, Operation::Describe, &name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(wanted.partition_index)
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let partition = broker.topics.partition(&name, wanted.partition_index);
            let (None, Some(partition)) = (denied, partition) else {
                let error = denied.unwrap_or(ResponseError::UnknownTopicOrPartition);
                partitions.push(
                    response
                        .with_error_code(code(error))
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            };
            let last_fetchable = if read_committed {
                partition.last_stable_offset()
            } else {
                partition.high_watermark()
            };
            // A record found by its timestamp counts only below what a consumer may read.
            let fetchable = |found: Option<(i64, i64)>| {
                found
                    .filter(|&(offset, _)| offset < last_fetchable)
                    .unwrap_or((-1, -1))
            };
            let by_timestamp = |timestamp: i64| partition.log().offset_for_timestamp(timestamp);
            let found = match wanted.timestamp {
                EARLIEST => Ok((partition.log_start_offset(), -1)),
                LATEST => Ok((last_fetchable, -1)),
                timestamp if timestamp >= 0 => by_timestamp(timestamp).map(fetchable),
                MAX_TIMESTAMP if version >= MAX_TIMESTAMP_MIN_VERSION => {
                    match partition.log().max_timestamp() {
                        Some(max) => by_timestamp(max).map(fetchable),
                        None => Ok((-1, -1)),
                    }
                }
                EARLIEST_LOCAL if version >= EARLIEST_LOCAL_MIN_VERSION => {
                    Ok((partition.log_start_offset(), -1))
                }
                LATEST_TIERED if version >= LATEST_TIERED_MIN_VERSION => Ok((-1, -1)),
                _ => {
                    partitions.push(
                        response
                            .with_error_code(code(ResponseError::InvalidRequest))
                            .with_offset(-1),
                    );
                    continue;
                }
            };
            let (offset, timestamp) = match found {
                Ok(found) => found,
                // A damaged batch (or a failed read) found while looking up a timestamp fails
                // this partition's answer, loudly, as a fetch's read does; the broker and the
                // other partitions go on.
                Err(error) => {
                    let answer = match error {
                        LogError::Corrupt { .. } => ResponseError::CorruptMessage,
                        _ => ResponseError::KafkaStorageError,
                    };
                    tracing::error!(topic = %name, partition = wanted.partition_index, %error, "ListOffsets read failed; answering {answer:?} for this partition");
                    partitions.push(
                        response
                            .with_error_code(code(answer))
                            .with_offset(-1)
                            .with_timestamp(-1),
                    );
                    continue;
                }
            };
            partitions.push(response.with_offset(offset).with_timestamp(timestamp));
        }
        topics.push(
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    Ok(ResponseKind::ListOffsets(
        ListOffsetsResponse::default().with_topics(topics),
    ))
}
