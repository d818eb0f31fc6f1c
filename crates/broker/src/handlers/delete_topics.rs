//! DeleteTopics: by name (v1–5) or by name or id (v6). The topic is forgotten durably before its
//! directories are removed, so a crash in between leaves only orphan files, never a half topic.
//! Every group's committed offsets of the topic go with it (tombstones in the group log), as in
//! Kafka, so a topic created again under the same name starts without stale offsets.

use acl::Operation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, ResponseKind};

use super::{code, topic_name};
use crate::{Broker, BrokerError, ClientInfo, Now};

pub fn handle(
    broker: &mut Broker,
    client: &ClientInfo,
    now: Now,
    request: &DeleteTopicsRequest,
    version: i16,
) -> Result<ResponseKind, BrokerError> {
    let mut wanted: Vec<(Option<String>, uuid::Uuid)> = Vec::new();
    if version >= 6 {
        for state in &request.topics {
            wanted.push((state.name.as_ref().map(|n| n.0.to_string()), state.topic_id));
        }
    } else {
        wanted.extend(
            request
                .topic_names
                .iter()
                .map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())),
        );
    }
    let mut responses = Vec::with_capacity(wanted.len());
    for (name, id) in wanted {
        let resolved = match &name {
            Some(name) => broker.topics.get(name).map(|t| (name.clone(), t.meta.id)),
            None => broker.topics.name_by_id(id).map(|n| (n.to_string(), id)),
        };
        let result = DeletableTopicResult::default()
            .with_name(name.as_deref().map(topic_name))
            .with_topic_id(id);
        // Needs DELETE on the topic; one named by id also DESCRIBE (Kafka's rule), and its
        // answer carries only the id, so a refusal does not tell its name. An unknown id is
        // UNKNOWN_TOPIC_ID first; an unknown name is UNKNOWN_TOPIC_OR_PARTITION only to whoever
        // may delete it.
        let denied = match (&name, &resolved) {
            (Some(name), _) => broker.topic_denied(client, Operation::Delete, name),
            (None, Some((name, _))) => broker
                .topic_denied(client, Operation::Describe, name)
                .or_else(|| broker.topic_denied(client, Operation::Delete, name)),
            (None, None) => None,
        };
        let result = match (denied, resolved) {
            (Some(error), _) => result.with_error_code(code(error)),
            (None, None) if name.is_some() => {
                result.with_error_code(code(ResponseError::UnknownTopicOrPartition))
            }
            (None, None) => result.with_error_code(code(ResponseError::UnknownTopicId)),
            (None, Some((name, id))) => {
                broker.topics.stage_delete(&name);
                if broker.groups.delete_topic_offsets(now, &name)? {
                    broker.tickets.note(crate::LogId::Groups);
                }
                result.with_name(Some(topic_name(&name))).with_topic_id(id)
            }
        };
        responses.push(result);
    }
    Ok(ResponseKind::DeleteTopics(
        DeleteTopicsResponse::default().with_responses(responses),
    ))
}
