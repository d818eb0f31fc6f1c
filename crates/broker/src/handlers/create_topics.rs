//! CreateTopics: one replica only (replication factor -1 or 1), partition count -1 means
//! `num.partitions`, topic configs limited to the ones ferry enforces (`topic_config::TOPIC_CONFIG_NAMES`).

use std::collections::BTreeMap;

use acl::Operation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse, ResponseKind};

use super::{code, str_bytes};
use crate::topic_config::validate_topic_config;
use crate::topics::{validate_topic_name, PARTITIONS_PER_TOPIC_MAX};
use crate::{Broker, BrokerError, ClientInfo};

/// Kafka's DescribeConfigs/CreateTopics config source for a value set on the topic.
pub(crate) const SOURCE_TOPIC: i8 = 1;
/// ... and for a broker default.
pub(crate) const SOURCE_DEFAULT: i8 = 5;

pub fn handle(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &CreateTopicsRequest,
    version: i16,
) -> Result<ResponseKind, BrokerError> {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let result = CreatableTopicResult::default().with_name(topic.name.clone());
        let checked = if broker.allows_create_topic(client, &name) {
            check(broker, &name, topic)
        } else {
            Err((
                ResponseError::TopicAuthorizationFailed,
                format!("CREATE on the cluster or on topic {name} is needed"),
            ))
        };
        let result = match checked {
            Err((error, message)) => result
                .with_error_code(code(error))
                .with_error_message(Some(str_bytes(message)))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
            Ok((partitions, configs)) => {
                let id = if request.validate_only {
                    uuid::Uuid::nil()
                } else {
                    broker
                        .topics
                        .stage_create(&name, partitions, configs.clone())
                        .id
                };
                let result =
                    result.with_topic_id(if version >= 7 { id } else { uuid::Uuid::nil() });
                if version < 5 {
                    result
                } else if let Some(error) =
                    broker.topic_denied(client, Operation::DescribeConfigs, &name)
                {
                    // Created, but its configs are not the client's to see (as in Kafka).
                    result
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                        .with_topic_config_error_code(code(error))
                } else {
                    result
                        .with_num_partitions(partitions)
                        .with_replication_factor(1)
                        .with_configs(Some(describe(&configs)))
                }
            }
        };
        results.push(result);
    }
    Ok(ResponseKind::CreateTopics(
        CreateTopicsResponse::default().with_topics(results),
    ))
}

type Checked = (i32, BTreeMap<String, String>);

fn check(
    broker: &Broker,
    name: &str,
    topic: &CreatableTopic,
) -> Result<Checked, (ResponseError, String)> {
    validate_topic_name(name).map_err(|m| (ResponseError::InvalidTopicException, m))?;
    if broker.topics.exists(name) {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("topic {name} already exists"),
        ));
    }
    let partitions = if !topic.assignments.is_empty() {
        manual_partitions(broker, topic)?
    } else if topic.num_partitions == -1 {
        broker.config.num_partitions
    } else {
        topic.num_partitions
    };
    if !(1..=PARTITIONS_PER_TOPIC_MAX).contains(&partitions) {
        return Err((
            ResponseError::InvalidPartitions,
            format!("partitions must be between 1 and {PARTITIONS_PER_TOPIC_MAX}"),
        ));
    }
    broker
        .topics
        .check_room(partitions as usize)
        .map_err(|m| (ResponseError::PolicyViolation, m))?;
    if !matches!(topic.replication_factor, -1 | 1) {
        return Err((
            ResponseError::InvalidReplicationFactor,
            "ferry is a single node: replication factor must be 1".into(),
        ));
    }
    let mut configs = BTreeMap::new();
    for config in &topic.configs {
        let value = config.value.as_ref().map(|v| v.to_string());
        validate_topic_config(&config.name, value.as_deref())
            .map_err(|m| (ResponseError::InvalidConfig, m))?;
        if let Some(value) = value {
            configs.insert(config.name.to_string(), value);
        }
    }
    broker
        .topics
        .resolve(&configs)
        .map_err(|m| (ResponseError::InvalidConfig, m))?;
    Ok((partitions, configs))
}

/// The partition count of a manual replica assignment, checked as Kafka checks one: with neither
/// a partition count nor a replication factor given, partitions numbered 0, 1, ... and each
/// placed on one broker, which on this one node must be this node.
fn manual_partitions(
    broker: &Broker,
    topic: &CreatableTopic,
) -> Result<i32, (ResponseError, String)> {
    if topic.num_partitions != -1 || topic.replication_factor != -1 {
        return Err((
            ResponseError::InvalidRequest,
            "both a partition count or replication factor and a replica assignment were given"
                .into(),
        ));
    }
    let mut indexes: Vec<i32> = topic
        .assignments
        .iter()
        .map(|a| a.partition_index)
        .collect();
    indexes.sort_unstable();
    if indexes
        .iter()
        .enumerate()
        .any(|(i, &index)| index != i as i32)
    {
        return Err((
            ResponseError::InvalidReplicaAssignment,
            "partitions must be numbered 0, 1, 2, ... without gaps or repeats".into(),
        ));
    }
    let node = broker.config.node_id;
    if let Some(other) = topic
        .assignments
        .iter()
        .find(|a| a.broker_ids.iter().map(|b| b.0).collect::<Vec<_>>() != [node])
    {
        let brokers: Vec<i32> = other.broker_ids.iter().map(|b| b.0).collect();
        return Err((
            ResponseError::InvalidReplicaAssignment,
            format!(
                "partition {} is assigned to brokers {brokers:?}: ferry is the single node {node}, \
                 so each partition has exactly the replica [{node}]",
                other.partition_index
            ),
        ));
    }
    i32::try_from(indexes.len()).map_err(|_| {
        (
            ResponseError::InvalidPartitions,
            "too many partitions".into(),
        )
    })
}

fn describe(configs: &BTreeMap<String, String>) -> Vec<CreatableTopicConfigs> {
    configs
        .iter()
        .map(|(name, value)| {
            CreatableTopicConfigs::default()
                .with_name(str_bytes(name.clone()))
                .with_value(Some(str_bytes(value.clone())))
                .with_config_source(SOURCE_TOPIC)
        })
        .collect()
}
