//! Metadata: this broker as the only node and leader of every partition, and topic
//! auto-creation (`auto.create.topics.enable`, and the request's own flag from v4).

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, ResponseKind};

use super::{code, str_bytes, topic_name};
use crate::topics::{validate_topic_name, Topic};
use crate::{Broker, BrokerError, ClientInfo};

/// Kafka's ACL operation codes, as bits of an authorized-operations field.
const READ: i32 = 1 << 3;
const WRITE: i32 = 1 << 4;
const CREATE: i32 = 1 << 5;
const DELETE: i32 = 1 << 6;
const ALTER: i32 = 1 << 7;
const DESCRIBE: i32 = 1 << 8;
const CLUSTER_ACTION: i32 = 1 << 9;
const DESCRIBE_CONFIGS: i32 = 1 << 10;
const ALTER_CONFIGS: i32 = 1 << 11;
const IDEMPOTENT_WRITE: i32 = 1 << 12;
/// Every operation that applies to a topic.
const TOPIC_AUTHORIZED_OPERATIONS_ALL: i32 =
    READ | WRITE | CREATE | DELETE | ALTER | DESCRIBE | DESCRIBE_CONFIGS | ALTER_CONFIGS;
/// Every operation that applies to the cluster.
const CLUSTER_AUTHORIZED_OPERATIONS_ALL: i32 = CREATE
    | CLUSTER_ACTION
    | DESCRIBE_CONFIGS
    | ALTER_CONFIGS
    | IDEMPOTENT_WRITE
    | ALTER
    | DESCRIBE;
/// An authorized-operations field the client did not ask for.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(
    broker: &mut Broker,
    now_ms: i64,
    client: &ClientInfo,
    request: &MetadataRequest,
    version: i16,
) -> Result<ResponseKind, BrokerError> {
    let node = BrokerId(broker.config.node_id);
    let mut topics = Vec::new();
    match &request.topics {
        // A null list asks for every topic; v0 used an empty list for the same.
        None => topics.extend(all_topics(broker, node, version)),
        Some(requested) if requested.is_empty() && version == 0 => {
            topics.extend(all_topics(broker, node, version))
        }
        Some(requested) => {
            let allow_create = version < 4 || request.allow_auto_topic_creation;
            for entry in requested {
                let Some(name) = entry.name.as_ref().map(|n| n.0.to_string()) else {
                    topics.push(by_id(broker, node, entry.topic_id, version));
                    continue;
                };
                topics.push(by_name(broker, now_ms, node, &name, allow_create, version)?);
            }
        }
    }
    // With no authorizer every operation is allowed, and Kafka reports them all (v8+, when
    // asked); otherwise the field keeps its "not asked" value.
    if version >= 8 && request.include_topic_authorized_operations {
        for topic in topics.iter_mut().filter(|t| t.error_code == 0) {
            topic.topic_authorized_operations = TOPIC_AUTHORIZED_OPERATIONS_ALL;
        }
    }
    let cluster_operations =
        if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
            CLUSTER_AUTHORIZED_OPERATIONS_ALL
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        };
    // The broker as the client's listener advertises it (Kafka answers by listener too).
    let advertised = broker.config.advertised_for(&client.listener);
    let response = MetadataResponse::default()
        .with_cluster_authorized_operations(cluster_operations)
        .with_brokers(vec![MetadataResponseBroker::default()
            .with_node_id(node)
            .with_host(str_bytes(advertised.host.clone()))
            .with_port(advertised.port)])
        .with_cluster_id(Some(str_bytes(broker.topics.cluster_id())))
        .with_controller_id(node)
        .with_topics(topics);
    Ok(ResponseKind::Metadata(response))
}

fn all_topics(broker: &Broker, node: BrokerId, version: i16) -> Vec<MetadataResponseTopic> {
    broker
        .topics
        .iter()
        .map(|(name, topic)| describe(name, topic, node, version))
        .collect()
}

fn by_id(broker: &Broker, node: BrokerId, id: uuid::Uuid, version: i16) -> MetadataResponseTopic {
    match broker.topics.name_by_id(id) {
        Some(name) => {
            let topic = broker.topics.get(name).expect("name from registry");
            describe(name, topic, node, version)
        }
        None => MetadataResponseTopic::default()
            .with_name(None)
            .with_topic_id(id)
            .with_error_code(code(ResponseError::UnknownTopicId)),
    }
}

fn by_name(
    broker: &mut Broker,
    now_ms: i64,
    node: BrokerId,
    name: &str,
    allow_create: bool,
    version: i16,
) -> Result<MetadataResponseTopic, BrokerError> {
    if let Some(topic) = broker.topics.get(name) {
        return Ok(describe(name, topic, node, version));
    }
    let failed = |error: ResponseError| {
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(name)))
            .with_error_code(code(error))
    };
    if validate_topic_name(name).is_err() {
        return Ok(failed(ResponseError::InvalidTopicException));
    }
    if !(allow_create && broker.config.auto_create_topics) {
        return Ok(failed(ResponseError::UnknownTopicOrPartition));
    }
    let partitions = broker.config.num_partitions;
    if let Err(reason) = broker.topics.check_room(partitions as usize) {
        // Clients ask again every few hundred milliseconds: warn once per topic name.
        if broker.topics.first_refusal(name) {
            tracing::warn!(topic = name, %reason, "topic not auto-created");
        } else {
            tracing::debug!(topic = name, %reason, "topic not auto-created");
        }
        return Ok(failed(ResponseError::PolicyViolation));
    }
    let topic = broker
        .topics
        .create(name, partitions, BTreeMap::new(), now_ms)?;
    Ok(describe(name, topic, node, version))
}

/// Fields a version does not carry must keep their defaults, or the codec refuses to encode.
fn describe(name: &str, topic: &Topic, node: BrokerId, version: i16) -> MetadataResponseTopic {
    let partitions = (0..topic.meta.partitions)
        .map(|index| {
            MetadataResponsePartition::default()
                .with_partition_index(index)
                .with_leader_id(node)
                .with_leader_epoch(if version >= 7 { 0 } else { -1 })
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_topic_id(if version >= 10 {
            topic.meta.id
        } else {
            uuid::Uuid::nil()
        })
        .with_partitions(partitions)
}
