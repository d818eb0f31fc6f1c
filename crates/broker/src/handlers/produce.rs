//! Produce: validate every batch (v2 only, CRC-32C, size, no client-written control batches),
//! append it as received with broker-assigned offsets, and answer per `acks`: 0 nothing, 1 once
//! written to the OS, -1 (all) once the group commit has fsynced it.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use wire::batch::{BatchError, Batches};

use super::code;
use crate::{Broker, BrokerError, Outcome};

const ACKS_NONE: i16 = 0;
const ACKS_LEADER: i16 = 1;
const ACKS_ALL: i16 = -1;

pub fn handle(
    broker: &mut Broker,
    now_ms: i64,
    request: ProduceRequest,
    version: i16,
) -> Result<Outcome, BrokerError> {
    let acks = request.acks;
    let acks_valid = matches!(acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL);
    let mut failed = false;
    let mut appended = false;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    for topic in request.topic_data {
        let name = topic.name.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let result = if acks_valid {
                append(broker, now_ms, &name, data.index, data.records)?
            } else {
                Err(ResponseError::InvalidRequiredAcks)
            };
            let response = PartitionProduceResponse::default().with_index(data.index);
            let response = match result {
                Ok((base_offset, log_start_offset)) => {
                    appended = true;
                    response
                        .with_base_offset(base_offset)
                        .with_log_start_offset(if version >= 5 { log_start_offset } else { -1 })
                        .with_log_append_time_ms(-1)
                }
                Err(error) => {
                    failed = true;
                    response.with_error_code(code(error)).with_base_offset(-1)
                }
            };
            partitions.push(response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    let response = ResponseKind::Produce(ProduceResponse::default().with_responses(topics));
    Ok(match acks {
        ACKS_NONE if failed => Outcome::Close("acks=0 produce failed".into()),
        ACKS_NONE => Outcome::NoResponse,
        ACKS_ALL if appended => Outcome::AfterSync {
            ticket: broker.append_ticket(),
            response,
        },
        _ => Outcome::Respond(response),
    })
}

/// Validates and appends one partition's records; returns (base offset, log start offset) or the
/// Kafka error for this partition.
fn append(
    broker: &mut Broker,
    now_ms: i64,
    topic: &str,
    index: i32,
    records: Option<Bytes>,
) -> Result<Result<(i64, i64), ResponseError>, BrokerError> {
    let max_bytes = max_message_bytes(broker, topic);
    let Some(partition) = broker.topics.partition_mut(topic, index) else {
        return Ok(Err(ResponseError::UnknownTopicOrPartition));
    };
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Ok(Err(ResponseError::CorruptMessage));
    };
    if let Err(error) = validate(&records, max_bytes) {
        tracing::debug!(topic, partition = index, %error, "rejected produce batch");
        return Ok(Err(error));
    }
    let mut bytes = records.to_vec();
    let info = partition
        .log_mut()
        .append(&mut bytes, now_ms)
        .map_err(|source| BrokerError::Log {
            topic: topic.to_string(),
            partition: index,
            source,
        })?;
    let log_start = partition.log_start_offset();
    broker.note_append(topic, index);
    Ok(Ok((info.first_offset, log_start)))
}

fn max_message_bytes(broker: &Broker, topic: &str) -> usize {
    broker
        .topics
        .get(topic)
        .and_then(|t| t.meta.configs.get("max.message.bytes"))
        .and_then(|v| v.parse().ok())
        .unwrap_or(broker.config.message_max_bytes)
}

/// Kafka's checks on incoming batches, mapped to its error codes.
pub(crate) fn validate(records: &[u8], max_bytes: usize) -> Result<(), ResponseError> {
    let mut count = 0;
    for item in Batches::new(records) {
        let (_, batch) = item.map_err(batch_error)?;
        if batch.total_bytes() > max_bytes {
            return Err(ResponseError::MessageTooLarge);
        }
        batch.validate().map_err(batch_error)?;
        if batch.is_control() {
            return Err(ResponseError::InvalidRecord);
        }
        if batch.record_count() == 0 {
            return Err(ResponseError::InvalidRecord);
        }
        count += 1;
    }
    assert!(
        count > 0,
        "non-empty records hold at least one batch or an error"
    );
    Ok(())
}

fn batch_error(error: BatchError) -> ResponseError {
    match error {
        BatchError::Magic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::Truncated { .. }
        | BatchError::Length(_)
        | BatchError::Crc { .. }
        | BatchError::Count { .. }
        | BatchError::Codec(_)
        | BatchError::Record { .. } => ResponseError::CorruptMessage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::batch::{build_batch, ProducerFields};

    fn batch() -> Vec<u8> {
        build_batch(&[(None, Some(b"v"))], 1, ProducerFields::NONE, 0)
    }

    #[test]
    fn validation_maps_to_kafka_errors() {
        let check = |bytes: &[u8], max: usize, expect: Result<(), ResponseError>| {
            assert_eq!(validate(bytes, max), expect);
        };
        check(&batch(), 1 << 20, Ok(()));
        check(&batch(), 10, Err(ResponseError::MessageTooLarge));
        let mut crc = batch();
        *crc.last_mut().unwrap() ^= 1;
        check(&crc, 1 << 20, Err(ResponseError::CorruptMessage));
        check(&batch()[..30], 1 << 20, Err(ResponseError::CorruptMessage));
        let mut magic = batch();
        magic[16] = 1;
        check(
            &magic,
            1 << 20,
            Err(ResponseError::UnsupportedForMessageFormat),
        );
        let control = build_batch(&[(None, Some(b"v"))], 1, ProducerFields::NONE, 0x20);
        check(&control, 1 << 20, Err(ResponseError::InvalidRecord));
    }
}
