//! Metadata: this broker as the only node and leader of every partition, and topic
//! auto-creation (`auto.create.topics.enable`, and the request's own flag from v4).
//!
//! Authorization as in Kafka: the topics listed are those the client may DESCRIBE; a topic asked
//! for by name that it may not DESCRIBE is TOPIC_AUTHORIZATION_FAILED whether it exists or not
//! (its existence is not told), and auto-creating one needs CREATE on the cluster or the topic.

use std::collections::BTreeMap;

use acl::{Operation, Resource};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, MetadataRequest, MetadataResponse, RequestKind, ResponseKind,
};

use super::{code, str_bytes, topic_name};
use crate::topics::{validate_topic_name, TopicMeta};
use crate::{Broker, BrokerError, ClientInfo, Outcome, Prepared, SharedCall};

/// An authorized-operations field the client did not ask for.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

pub fn handle(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &MetadataRequest,
    version: i16,
) -> Result<ResponseKind, BrokerError> {
    // The topics this request auto-creates are staged first, in request order (a topic named
    // twice is created once); then the answer is read as a shared call reads it.
    let mut refused = BTreeMap::new();
    if let Some(allow_create) = asked_names(request, version) {
        let node = BrokerId(broker.config.node_id);
        for name in request
            .topics
            .iter()
            .flatten()
            .filter_map(|t| t.name.as_ref())
        {
            let asked = Asked {
                name: name.0.as_str(),
                allow_create,
            };
            if known(broker, client, node, asked, version).is_none() {
                if let Err(error) = create(broker, name.0.as_str()) {
                    refused.insert(name.0.to_string(), error);
                }
            }
        }
    }
    Ok(answer(broker, client, request, version, &refused)
        .expect("every topic named is known, created or refused"))
}

/// The answer, the topics it creates staged already (or `refused` their creation): None when
/// a topic named may still be auto-created, which needs the broker exclusively ([`handle`]).
fn answer(
    broker: &Broker,
    client: &ClientInfo,
    request: &MetadataRequest,
    version: i16,
    refused: &BTreeMap<String, ResponseError>,
) -> Option<ResponseKind> {
    let node = BrokerId(broker.config.node_id);
    let topics = match asked_names(request, version) {
        None => all_topics(broker, client, node, version),
        Some(allow_create) => request
            .topics
            .iter()
            .flatten()
            .map(|entry| match entry.name.as_ref() {
                None => Some(by_id(broker, client, node, entry.topic_id, version)),
                Some(name) => {
                    let name = name.0.as_str();
                    let asked = Asked { name, allow_create };
                    known(broker, client, node, asked, version)
                        .or_else(|| Some(failed(name, *refused.get(name)?)))
                }
            })
            .collect::<Option<_>>()?,
    };
    Some(respond(broker, client, request, version, topics))
}

/// A Metadata request handled holding the broker shared, or handed back when it may
/// auto-create a topic.
pub(crate) fn shared(broker: &Broker, client: &ClientInfo, prepared: Prepared) -> SharedCall {
    let RequestKind::Metadata(request) = &prepared.request.body else {
        panic!("a Metadata request");
    };
    let version = prepared.request.header.request_api_version;
    match answer(broker, client, request, version, &BTreeMap::new()) {
        Some(response) => SharedCall::Handled(Outcome::Respond(response)),
        None => SharedCall::Exclusive(prepared),
    }
}

/// None when the request asks for every topic (a null list; v0's empty list meant the same);
/// otherwise whether it lets a topic it names be auto-created (its flag from v4).
fn asked_names(request: &MetadataRequest, version: i16) -> Option<bool> {
    match &request.topics {
        None => None,
        Some(requested) if requested.is_empty() && version == 0 => None,
        Some(_) => Some(version < 4 || request.allow_auto_topic_creation),
    }
}

/// The response around `topics`: the broker, the cluster and the authorized operations.
fn respond(
    broker: &Broker,
    client: &ClientInfo,
    request: &MetadataRequest,
    version: i16,
    mut topics: Vec<MetadataResponseTopic>,
) -> ResponseKind {
    let node = BrokerId(broker.config.node_id);
    // KIP-430 (v8+, when asked): what the client may do; every operation without an
    // authorizer, as Kafka reports. Otherwise the field keeps its "not asked" value.
    if version >= 8 && request.include_topic_authorized_operations {
        for topic in topics.iter_mut().filter(|t| t.error_code == 0) {
            let name = topic.name.as_ref().map_or("", |n| n.0.as_str());
            let operations = broker.authorized_operations(client, Resource::topic(name));
            topic.topic_authorized_operations = operations;
        }
    }
    let cluster_operations =
        if (8..=10).contains(&version) && request.include_cluster_authorized_operations {
            broker.authorized_operations(client, Resource::CLUSTER)
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
    ResponseKind::Metadata(response)
}

/// Every topic `client` may DESCRIBE.
fn all_topics(
    broker: &Broker,
    client: &ClientInfo,
    node: BrokerId,
    version: i16,
) -> Vec<MetadataResponseTopic> {
    broker
        .topics
        .iter()
        .filter(|(name, _)| broker.allows(client, Operation::Describe, Resource::topic(name)))
        .map(|(name, topic)| describe(name, &topic.meta, node, version))
        .collect()
}

fn by_id(
    broker: &Broker,
    client: &ClientInfo,
    node: BrokerId,
    id: uuid::Uuid,
    version: i16,
) -> MetadataResponseTopic {
    let name = broker.topics.name_by_id(id);
    let refused = match name {
        None => Some(ResponseError::UnknownTopicId),
        Some(name) => broker.topic_denied(client, Operation::Describe, name),
    };
    match (name, refused) {
        (Some(name), None) => {
            let topic = broker.topics.get(name).expect("name from registry");
            describe(name, &topic.meta, node, version)
        }
        // Refused by its id, its name is not told.
        (_, refused) => MetadataResponseTopic::default()
            .with_name(None)
            .with_topic_id(id)
            .with_error_code(code(refused.expect("refused or found"))),
    }
}

/// A topic asked for by name, and whether the request lets it be auto-created.
struct Asked<'a> {
    name: &'a str,
    allow_create: bool,
}

/// A topic asked for by name, answered without creating it; None when it may be auto-created.
fn known(
    broker: &Broker,
    client: &ClientInfo,
    node: BrokerId,
    asked: Asked<'_>,
    version: i16,
) -> Option<MetadataResponseTopic> {
    let name = asked.name;
    let failed = |error: ResponseError| Some(failed(name, error));
    if let Some(error) = broker.topic_denied(client, Operation::Describe, name) {
        return failed(error);
    }
    if let Some(topic) = broker.topics.get(name) {
        return Some(describe(name, &topic.meta, node, version));
    }
    if let Some(meta) = broker.topics.staged_creation(name) {
        // Named twice in this request, and created by it.
        return Some(describe(name, meta, node, version));
    }
    if validate_topic_name(name).is_err() {
        return failed(ResponseError::InvalidTopicException);
    }
    if !(asked.allow_create && broker.config.auto_create_topics) {
        return failed(ResponseError::UnknownTopicOrPartition);
    }
    if !broker.allows_create_topic(client, name) {
        return failed(ResponseError::TopicAuthorizationFailed);
    }
    None
}

/// A topic name's answer when it is not known: the error alone.
fn failed(name: &str, error: ResponseError) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(code(error))
}

/// Stages the auto-creation of topic `name` (its `known` answer was None), or says why not. It
/// is created by this request's job, which its answer waits for (`admin.rs`).
fn create(broker: &mut Broker, name: &str) -> Result<(), ResponseError> {
    let partitions = broker.config.num_partitions;
    if let Err(reason) = broker.topics.check_room(partitions as usize) {
        // Clients ask again every few hundred milliseconds: warn once per topic name.
        if broker.topics.first_refusal(name) {
            tracing::warn!(topic = name, %reason, "topic not auto-created");
        } else {
            tracing::debug!(topic = name, %reason, "topic not auto-created");
        }
        return Err(ResponseError::PolicyViolation);
    }
    if broker.admin_busy() {
        // Another request's topic changes are being written; Kafka's answer while a topic is
        // being created, which clients retry.
        return Err(ResponseError::LeaderNotAvailable);
    }
    broker
        .topics
        .stage_create(name, partitions, BTreeMap::new());
    Ok(())
}

/// Fields a version does not carry must keep their defaults, or the codec refuses to encode.
fn describe(name: &str, meta: &TopicMeta, node: BrokerId, version: i16) -> MetadataResponseTopic {
    let partitions = (0..meta.partitions)
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
            meta.id
        } else {
            uuid::Uuid::nil()
        })
        .with_partitions(partitions)
}
