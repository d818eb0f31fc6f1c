//! CreatePartitions: grows a topic to a new partition count, as Kafka does; a count that is not
//! higher is INVALID_PARTITIONS, an unknown topic UNKNOWN_TOPIC_OR_PARTITION, a topic named twice
//! INVALID_REQUEST. Manual assignments may only name this broker (one replica per partition).
//! Existing partitions and their records are untouched; keys hash to other partitions afterwards,
//! as in Kafka.

use std::collections::BTreeMap;

use acl::Operation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse, ResponseKind};

use super::{code, str_bytes};
use crate::topics::PARTITIONS_PER_TOPIC_MAX;
use crate::{Broker, BrokerError, ClientInfo};

pub fn handle(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &CreatePartitionsRequest,
) -> Result<ResponseKind, BrokerError> {
    let mut named: BTreeMap<&str, usize> = BTreeMap::new();
    for topic in &request.topics {
        *named.entry(topic.name.0.as_str()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.as_str();
        let result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        let checked = if named[name] > 1 {
            Err((
                ResponseError::InvalidRequest,
                format!("topic {name} appears more than once in the request"),
            ))
        } else if let Some(error) = broker.topic_denied(client, Operation::Alter, name) {
            Err((error, format!("ALTER on topic {name} is needed")))
        } else {
            check(broker, name, topic)
        };
        let result = match checked {
            Err((error, message)) => result
                .with_error_code(code(error))
                .with_error_message(Some(str_bytes(message))),
            Ok(()) if request.validate_only => result,
            Ok(()) => {
                broker.topics.stage_add_partitions(name, topic.count);
                result
            }
        };
        results.push(result);
    }
    Ok(ResponseKind::CreatePartitions(
        CreatePartitionsResponse::default().with_results(results),
    ))
}

fn check(
    broker: &Broker,
    name: &str,
    topic: &CreatePartitionsTopic,
) -> Result<(), (ResponseError, String)> {
    let Some(existing) = broker.topics.get(name) else {
        return Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ));
    };
    let current = existing.meta.partitions;
    if topic.count < current {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "topic currently has {current} partitions, which is higher than the requested {}",
                topic.count
            ),
        ));
    }
    if topic.count == current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("topic already has {current} partitions"),
        ));
    }
    if topic.count > PARTITIONS_PER_TOPIC_MAX {
        return Err((
            ResponseError::InvalidPartitions,
            format!("partitions must be at most {PARTITIONS_PER_TOPIC_MAX}"),
        ));
    }
    broker
        .topics
        .check_room((topic.count - current) as usize)
        .map_err(|m| (ResponseError::PolicyViolation, m))?;
    if let Some(assignments) = &topic.assignments {
        let added = (topic.count - current) as usize;
        let node = broker.config.node_id;
        let valid = assignments.len() == added
            && assignments
                .iter()
                .all(|a| a.broker_ids.len() == 1 && a.broker_ids[0].0 == node);
        if !valid {
            return Err((
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "ferry is a single node: each new partition is assigned to broker {node} alone"
                ),
            ));
        }
    }
    Ok(())
}
