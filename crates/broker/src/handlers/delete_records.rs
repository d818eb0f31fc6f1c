//! DeleteRecords: advance a partition's log start offset (durably) to the given offset, -1
//! meaning the high watermark; offsets beyond it are OFFSET_OUT_OF_RANGE. Reads below it are
//! refused at once; the answer goes once the group commit's round has checkpointed it and
//! removed the deleted segments' files, outside the lock.

use acl::Operation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse, ResponseKind};

use super::code;
use crate::{Broker, BrokerError, ClientInfo, Outcome};

pub fn handle(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &DeleteRecordsRequest,
) -> Result<Outcome, BrokerError> {
    let mut deleted_any = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let denied = broker.topic_denied(client, Operation::Delete, &name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(wanted.partition_index);
            let partition = broker.topics.partition_mut(&name, wanted.partition_index);
            let (None, Some(partition)) = (denied, partition) else {
                let error = denied.unwrap_or(ResponseError::UnknownTopicOrPartition);
                partitions.push(result.with_error_code(code(error)).with_low_watermark(-1));
                continue;
            };
            let high_watermark = partition.high_watermark();
            let offset = if wanted.offset == -1 {
                high_watermark
            } else {
                wanted.offset
            };
            if offset < 0 || offset > high_watermark {
                partitions.push(
                    result
                        .with_error_code(code(ResponseError::OffsetOutOfRange))
                        .with_low_watermark(-1),
                );
                continue;
            }
            let low_watermark =
                partition
                    .log_mut()
                    .delete_records_before(offset)
                    .map_err(|source| BrokerError::Log {
                        topic: name.clone(),
                        partition: wanted.partition_index,
                        source,
                    })?;
            // The group commit's next round checkpoints the log start and removes the deleted
            // segments' files, outside the lock.
            broker.note_append(&name, wanted.partition_index);
            deleted_any = true;
            partitions.push(result.with_low_watermark(low_watermark));
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions),
        );
    }
    let response =
        ResponseKind::DeleteRecords(DeleteRecordsResponse::default().with_topics(topics));
    Ok(if deleted_any {
        Outcome::AfterSync {
            ticket: broker.append_ticket(),
            response,
        }
    } else {
        Outcome::Respond(response)
    })
}
