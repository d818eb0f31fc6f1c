//! DescribeProducers (KIP-664): each partition's active idempotent and transactional producers as
//! its producer state knows them (epoch, last sequence, last write time, and the first offset of
//! the transaction it has open, or -1). ferry keeps no coordinator epoch per producer: -1.

use acl::Operation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{
    DescribeProducersRequest, DescribeProducersResponse, ProducerId, ResponseKind,
};

use super::code;
use crate::{Broker, ClientInfo};

pub fn handle(
    broker: &Broker,
    client: &ClientInfo,
    request: &DescribeProducersRequest,
) -> ResponseKind {
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let denied = broker.topic_denied(client, Operation::Read, topic.name.as_str());
            let partitions = topic
                .partition_indexes
                .iter()
                .map(|&index| {
                    let answer = PartitionResponse::default().with_partition_index(index);
                    match (denied, broker.topics.partition(topic.name.as_str(), index)) {
                        (None, Some(partition)) => {
                            answer.with_active_producers(producers(&partition))
                        }
                        (denied, _) => answer.with_error_code(code(
                            denied.unwrap_or(ResponseError::UnknownTopicOrPartition),
                        )),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ResponseKind::DescribeProducers(DescribeProducersResponse::default().with_topics(topics))
}

fn producers(partition: &crate::partition::Partition) -> Vec<ProducerState> {
    let ongoing = partition.ongoing_transactions();
    partition
        .producers()
        .sorted()
        .into_iter()
        .map(|(producer_id, entry)| {
            let last_sequence = entry.batches.last().map_or(-1, |b| b.last_sequence);
            ProducerState::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(i32::from(entry.producer_epoch))
                .with_last_sequence(last_sequence)
                .with_last_timestamp(entry.last_timestamp_ms)
                .with_coordinator_epoch(-1)
                .with_current_txn_start_offset(ongoing.get(&producer_id).copied().unwrap_or(-1))
        })
        .collect()
}
