//! DescribeLogDirs: ferry's one log directory (the data directory), the size of each partition's
//! log in it, and (v4) the size and usable space of its file system. The requested partitions
//! ferry does not hold are left out, as Kafka leaves out what a directory does not host; with no
//! topic list every topic partition is described, the internal group and transaction logs
//! included, as Kafka lists `__consumer_offsets` and `__transaction_state` (one partition each
//! here). Offset lag is 0: there is no future replica.

use acl::{Operation, Resource};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    DescribeLogDirsRequest, DescribeLogDirsResponse, ResponseKind, TopicName,
};

use super::{code, str_bytes};
use crate::groups::GROUP_LOG_NAME;
use crate::topics::Topic;
use crate::transactions::TXN_LOG_NAME;
use crate::{Broker, ClientInfo};

/// The first version with a top-level error code.
const ERROR_CODE_VERSION: i16 = 3;

pub fn handle(
    broker: &Broker,
    client: &ClientInfo,
    request: &DescribeLogDirsRequest,
    version: i16,
) -> ResponseKind {
    if !broker.allows(client, Operation::Describe, Resource::CLUSTER) {
        // As Kafka: no directory, and (v3+) the error; before v3 only the empty answer tells.
        let error = if version >= ERROR_CODE_VERSION {
            code(ResponseError::ClusterAuthorizationFailed)
        } else {
            0
        };
        return ResponseKind::DescribeLogDirs(
            DescribeLogDirsResponse::default().with_error_code(error),
        );
    }
    let internal = [
        (GROUP_LOG_NAME, broker.groups.log_size_bytes()),
        (TXN_LOG_NAME, broker.txns_locked().log_size_bytes()),
    ];
    let internal_wanted = |name: &str| match &request.topics {
        None => true,
        Some(wanted) => wanted
            .iter()
            .any(|w| w.topic.as_str() == name && w.partitions.contains(&0)),
    };
    let mut topics: Vec<DescribeLogDirsTopic> = match &request.topics {
        None => broker
            .topics
            .iter()
            .map(|(name, topic)| describe(name, topic, None))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|w| {
                let topic = broker.topics.get(w.topic.as_str())?;
                Some(describe(w.topic.as_str(), topic, Some(&w.partitions)))
            })
            .filter(|t| !t.partitions.is_empty())
            .collect(),
    };
    topics.extend(
        internal
            .into_iter()
            .filter(|(name, _)| internal_wanted(name))
            .map(|(name, size)| {
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(str_bytes(name)))
                    .with_partitions(vec![partition(0, size)])
            }),
    );
    let result = DescribeLogDirsResult::default()
        .with_log_dir(str_bytes(broker.config.data_dir.display().to_string()))
        .with_topics(topics);
    let result = match broker.topics.space() {
        Ok(space) => result
            .with_total_bytes(i64::try_from(space.total_bytes).unwrap_or(i64::MAX))
            .with_usable_bytes(i64::try_from(space.usable_bytes).unwrap_or(i64::MAX)),
        Err(error) => {
            tracing::warn!(%error, "cannot read the data directory's file system size");
            result
                .with_error_code(code(ResponseError::KafkaStorageError))
                .with_total_bytes(-1)
                .with_usable_bytes(-1)
        }
    };
    ResponseKind::DescribeLogDirs(DescribeLogDirsResponse::default().with_results(vec![result]))
}

fn partition(index: i32, size_bytes: u64) -> DescribeLogDirsPartition {
    DescribeLogDirsPartition::default()
        .with_partition_index(index)
        .with_partition_size(i64::try_from(size_bytes).unwrap_or(i64::MAX))
        .with_offset_lag(0)
}

/// A topic's partitions in the log directory: all of them, or those of `wanted` it has.
fn describe(name: &str, topic: &Topic, wanted: Option<&Vec<i32>>) -> DescribeLogDirsTopic {
    let partitions = topic
        .partitions
        .iter()
        .enumerate()
        .filter(|(index, _)| wanted.is_none_or(|w| w.contains(&(*index as i32))))
        .map(|(index, p)| partition(index as i32, p.log().size_bytes()))
        .collect();
    DescribeLogDirsTopic::default()
        .with_name(TopicName(str_bytes(name)))
        .with_partitions(partitions)
}
