//! ListOffsets: earliest (-2) is the log start offset, latest (-1) the high watermark (the last
//! stable offset under read_committed), and a timestamp the first record whose timestamp reaches
//! it, as in Kafka. Inside a compressed batch ferry does not decompress: the answer is then the
//! batch's first offset and its max timestamp. -3 (max timestamp, v7) is not
//! advertised.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind};

use super::code;
use crate::{Broker, BrokerError};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const READ_COMMITTED: i8 = 1;

pub fn handle(
    broker: &Broker,
    request: &ListOffsetsRequest,
    version: i16,
) -> Result<ResponseKind, BrokerError> {
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(wanted.partition_index)
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let Some(partition) = broker.topics.partition(&name, wanted.partition_index) else {
                partitions.push(
                    response
                        .with_error_code(code(ResponseError::UnknownTopicOrPartition))
                        .with_offset(-1)
                        .with_timestamp(-1),
                );
                continue;
            };
            let log_error = |source| BrokerError::Log {
                topic: name.clone(),
                partition: wanted.partition_index,
                source,
            };
            let (offset, timestamp) = match wanted.timestamp {
                EARLIEST => (partition.log_start_offset(), -1),
                LATEST if read_committed => (partition.last_stable_offset(), -1),
                LATEST => (partition.high_watermark(), -1),
                timestamp if timestamp >= 0 => partition
                    .log()
                    .offset_for_timestamp(timestamp)
                    .map_err(log_error)?
                    .unwrap_or((-1, -1)),
                _ => {
                    partitions.push(
                        response
                            .with_error_code(code(ResponseError::InvalidRequest))
                            .with_offset(-1),
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
