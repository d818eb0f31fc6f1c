//! AlterConfigs (v0–2: the request's set replaces all of a topic's overrides) and
//! IncrementalAlterConfigs (v0–1: SET, DELETE, APPEND, SUBTRACT per config) on topics. Values are
//! checked as CreateTopics checks them (INVALID_CONFIG); the new overrides are written to
//! `meta.json` durably and apply to the topic's logs from the next append or retention check.
//! On the BROKER resource (this node's id, or "" for the cluster default: one node, one set),
//! the settings that are topic defaults can change at run time (`DYNAMIC_BROKER_CONFIGS`), as
//! Kafka's dynamic broker configs; they are kept in `meta.json` and apply to every topic that
//! does not override them. Any other broker setting is fixed at start (`ferry serve --set`).

use std::collections::BTreeMap;

use acl::Operation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::{code, str_bytes};
use crate::topic_config::{topic_synonym, validate_topic_config, DYNAMIC_BROKER_CONFIGS};
use crate::{Broker, BrokerError, ClientInfo};

/// Kafka's `ConfigResource.Type.TOPIC`.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's `ConfigResource.Type.BROKER`.
const RESOURCE_BROKER: i8 = 4;
/// IncrementalAlterConfigs operations (Kafka's `AlterConfigOp.OpType`).
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
const OP_APPEND: i8 = 2;
const OP_SUBTRACT: i8 = 3;
/// Topic configs whose value is a list (APPEND and SUBTRACT apply to them only).
const LIST_CONFIGS: &[&str] = &["cleanup.policy"];

type Refusal = (ResponseError, String);

/// One resource of either request: its configs as (name, operation, value); `replace` for
/// AlterConfigs, whose set replaces all of the topic's overrides.
struct Alteration {
    resource_type: i8,
    resource_name: StrBytes,
    configs: Vec<(String, i8, Option<String>)>,
    replace: bool,
}

/// The answer for one resource: (resource type, name, error code, message).
type Answer = (i8, StrBytes, i16, Option<StrBytes>);

pub fn handle_alter(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &AlterConfigsRequest,
) -> Result<ResponseKind, BrokerError> {
    let alterations = request.resources.iter().map(|r| Alteration {
        resource_type: r.resource_type,
        resource_name: r.resource_name.clone(),
        configs: r
            .configs
            .iter()
            .map(|c| match &c.value {
                Some(value) => (c.name.to_string(), OP_SET, Some(value.to_string())),
                // A null value leaves the config at its default, as in Kafka.
                None => (c.name.to_string(), OP_DELETE, None),
            })
            .collect(),
        replace: true,
    });
    let responses = alter_all(broker, client, alterations, request.validate_only)?
        .into_iter()
        .map(|(resource_type, name, error, message)| {
            AlterConfigsResourceResponse::default()
                .with_error_code(error)
                .with_error_message(message)
                .with_resource_type(resource_type)
                .with_resource_name(name)
        })
        .collect();
    Ok(ResponseKind::AlterConfigs(
        AlterConfigsResponse::default().with_responses(responses),
    ))
}

pub fn handle_incremental(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &IncrementalAlterConfigsRequest,
) -> Result<ResponseKind, BrokerError> {
    let alterations = request.resources.iter().map(|r| Alteration {
        resource_type: r.resource_type,
        resource_name: r.resource_name.clone(),
        configs: r
            .configs
            .iter()
            .map(|c| {
                let value = c.value.as_ref().map(|v| v.to_string());
                (c.name.to_string(), c.config_operation, value)
            })
            .collect(),
        replace: false,
    });
    let responses = alter_all(broker, client, alterations, request.validate_only)?
        .into_iter()
        .map(|(resource_type, name, error, message)| {
            IncrementalResult::default()
                .with_error_code(error)
                .with_error_message(message)
                .with_resource_type(resource_type)
                .with_resource_name(name)
        })
        .collect();
    Ok(ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    ))
}

fn alter_all(
    broker: &mut Broker,
    client: &ClientInfo,
    alterations: impl Iterator<Item = Alteration>,
    validate_only: bool,
) -> Result<Vec<Answer>, BrokerError> {
    let mut answers = Vec::new();
    for alteration in alterations {
        let (kind, name) = (alteration.resource_type, &alteration.resource_name);
        let outcome = match broker.config_denied(client, Operation::AlterConfigs, kind, name) {
            Some(error) => Err((error, "ALTER_CONFIGS is needed".to_string())),
            None => apply(broker, &alteration, validate_only)?,
        };
        let (error, message) = match outcome {
            Ok(()) => (0, None),
            Err((error, message)) => (code(error), Some(str_bytes(message))),
        };
        answers.push((
            alteration.resource_type,
            alteration.resource_name,
            error,
            message,
        ));
    }
    Ok(answers)
}

/// An alteration of the BROKER resource: the dynamic broker settings (see the module comment).
fn apply_broker(
    broker: &mut Broker,
    alteration: &Alteration,
    validate_only: bool,
) -> Result<Result<(), Refusal>, BrokerError> {
    let name = alteration.resource_name.as_str();
    let refused = |error, message: String| Ok(Err((error, message)));
    if !name.is_empty() && name != broker.config.node_id.to_string() {
        return refused(
            ResponseError::InvalidRequest,
            format!(
                "broker {name} is not this broker ({})",
                broker.config.node_id
            ),
        );
    }
    let fixed: Vec<&str> = alteration
        .configs
        .iter()
        .map(|(config, ..)| config.as_str())
        .filter(|config| topic_synonym(config).is_none())
        .collect();
    if !fixed.is_empty() {
        let dynamic: Vec<&str> = DYNAMIC_BROKER_CONFIGS.iter().map(|(n, _)| *n).collect();
        return refused(
            ResponseError::InvalidRequest,
            format!(
                "cannot update these configs dynamically: {} (ferry changes {} at run time; the \
                 others are set at start, ferry serve --set)",
                fixed.join(", "),
                dynamic.join(", ")
            ),
        );
    }
    let mut configs = if alteration.replace {
        BTreeMap::new()
    } else {
        broker.topics.broker_configs().clone()
    };
    for (config, operation, value) in &alteration.configs {
        let synonym = topic_synonym(config).expect("checked above");
        if matches!(*operation, OP_APPEND | OP_SUBTRACT) {
            return refused(
                ResponseError::InvalidConfig,
                format!("{config} is not a list: APPEND and SUBTRACT apply to list configs only"),
            );
        }
        // Checked as the topic setting it is the default of.
        let mut as_topic = BTreeMap::new();
        if let Err(refusal) = alter_one(&mut as_topic, synonym, *operation, value.clone()) {
            return Ok(Err(refusal));
        }
        match as_topic.remove(synonym) {
            Some(value) => configs.insert(config.clone(), value),
            None => configs.remove(config),
        };
    }
    if let Err(message) = broker.topics.resolve_broker(&configs) {
        return refused(ResponseError::InvalidConfig, message);
    }
    if !validate_only {
        broker.topics.stage_broker_configs(configs);
    }
    Ok(Ok(()))
}

/// One IncrementalAlterConfigs operation on a topic's overrides.
fn alter_one(
    configs: &mut BTreeMap<String, String>,
    name: &str,
    operation: i8,
    value: Option<String>,
) -> Result<(), Refusal> {
    let invalid = |m: String| (ResponseError::InvalidConfig, m);
    validate_topic_config(name, None).map_err(invalid)?;
    match operation {
        OP_SET => {
            let value = value.ok_or_else(|| invalid(format!("SET {name} without a value")))?;
            validate_topic_config(name, Some(&value)).map_err(invalid)?;
            configs.insert(name.to_string(), value);
        }
        OP_DELETE => {
            configs.remove(name);
        }
        OP_APPEND | OP_SUBTRACT => {
            if !LIST_CONFIGS.contains(&name) {
                return Err(invalid(format!(
                    "{name} is not a list: APPEND and SUBTRACT apply to list configs only"
                )));
            }
            let value = value.unwrap_or_default();
            let mut items: Vec<String> = configs
                .get(name)
                .map(|v| v.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            for item in value.split(',').filter(|i| !i.is_empty()) {
                if operation == OP_APPEND && !items.iter().any(|i| i == item) {
                    items.push(item.to_string());
                } else if operation == OP_SUBTRACT {
                    items.retain(|i| i != item);
                }
            }
            if items.is_empty() {
                configs.remove(name);
            } else {
                let joined = items.join(",");
                validate_topic_config(name, Some(&joined)).map_err(invalid)?;
                configs.insert(name.to_string(), joined);
            }
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("unknown config operation {other}"),
            ))
        }
    }
    Ok(())
}

/// Checks the resource and the request's keys, computes the topic's new overrides, and stores
/// them unless `validate_only`.
fn apply(
    broker: &mut Broker,
    alteration: &Alteration,
    validate_only: bool,
) -> Result<Result<(), Refusal>, BrokerError> {
    let name = alteration.resource_name.as_str();
    let refused = |error, message: String| Ok(Err((error, message)));
    match alteration.resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => return apply_broker(broker, alteration, validate_only),
        other => {
            return refused(
                ResponseError::InvalidRequest,
                format!("resource type {other} cannot be altered"),
            )
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some((duplicate, ..)) = alteration
        .configs
        .iter()
        .find(|(n, ..)| !seen.insert(n.as_str()))
    {
        return refused(
            ResponseError::InvalidRequest,
            format!("config {duplicate} appears more than once"),
        );
    }
    let Some(topic) = broker.topics.get(name) else {
        return refused(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        );
    };
    let mut configs = if alteration.replace {
        BTreeMap::new()
    } else {
        topic.meta.configs.clone()
    };
    for (config, operation, value) in &alteration.configs {
        if let Err(refusal) = alter_one(&mut configs, config, *operation, value.clone()) {
            return Ok(Err(refusal));
        }
    }
    if let Err(message) = broker.topics.resolve(&configs) {
        return refused(ResponseError::InvalidConfig, message);
    }
    if !validate_only {
        broker.topics.stage_configs(name, configs);
    }
    Ok(Ok(()))
}
