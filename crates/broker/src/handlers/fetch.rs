//! Fetch: stored batches served as they are on disk (no record is decoded or re-encoded), bounded
//! by `max_bytes` and `partition_max_bytes` (the first batch always whole, KIP-74), by the high
//! watermark, or by the last stable offset under read_committed. Long polling is the server's
//! job: this handler says `Wait` while `min_bytes` is not reached and the wait is not over.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{FetchRequest, FetchResponse};

use super::code;
use crate::{Broker, BrokerError};

const READ_COMMITTED: i8 = 1;

#[derive(Debug)]
pub enum FetchOutcome {
    Ready(FetchResponse),
    /// Not enough data for `min_bytes` yet: ask again after the next append or at the deadline.
    Wait,
}

pub fn handle(
    broker: &mut Broker,
    request: &FetchRequest,
    version: i16,
    wait_over: bool,
) -> Result<FetchOutcome, BrokerError> {
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut remaining = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total_bytes = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let data = PartitionData::default().with_partition_index(wanted.partition);
            let Some(partition) = broker.topics.partition(&name, wanted.partition) else {
                any_error = true;
                partitions.push(data.with_error_code(code(ResponseError::UnknownTopicOrPartition)));
                continue;
            };
            let high_watermark = partition.high_watermark();
            let last_stable_offset = partition.last_stable_offset();
            let log_start_offset = partition.log_start_offset();
            let data = data
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(last_stable_offset)
                .with_log_start_offset(if version >= 5 { log_start_offset } else { -1 })
                .with_aborted_transactions(read_committed.then(Vec::new));
            let offset = wanted.fetch_offset;
            // Offsets up to the log end are valid (Kafka checks against the log end too); between
            // the high watermark and the log end the answer is empty until the fsync.
            if offset < log_start_offset || offset > partition.log_end_offset() {
                any_error = true;
                partitions.push(data.with_error_code(code(ResponseError::OffsetOutOfRange)));
                continue;
            }
            let end = if read_committed {
                last_stable_offset
            } else {
                high_watermark
            };
            let budget = remaining.min(wanted.partition_max_bytes.max(0) as usize);
            let records = if budget == 0 || offset >= end {
                Vec::new()
            } else {
                partition
                    .log()
                    .read(offset, budget, end)
                    .map_err(|source| BrokerError::Log {
                        topic: name.clone(),
                        partition: wanted.partition,
                        source,
                    })?
            };
            remaining = remaining.saturating_sub(records.len());
            total_bytes += records.len();
            // read_committed clients drop the data of these producers between each entry's first
            // offset and its abort marker; without the list they would deliver aborted records.
            let data = if read_committed && !records.is_empty() {
                let aborted = partition
                    .aborted_in(offset, end)
                    .into_iter()
                    .map(|t| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(t.producer_id))
                            .with_first_offset(t.first_offset)
                    })
                    .collect();
                data.with_aborted_transactions(Some(aborted))
            } else {
                data
            };
            partitions.push(data.with_records(Some(Bytes::from(records))));
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    let min_bytes = request.min_bytes.max(0) as usize;
    if !wait_over && !any_error && total_bytes < min_bytes {
        return Ok(FetchOutcome::Wait);
    }
    Ok(FetchOutcome::Ready(
        FetchResponse::default().with_responses(topics),
    ))
}
