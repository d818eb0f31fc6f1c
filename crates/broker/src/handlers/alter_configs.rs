//! AlterConfigs (v0–2: the request's set replaces all of a topic's overrides) and
//! IncrementalAlterConfigs (v0–1: SET, DELETE, APPEND, SUBTRACT per config) on topics. Values are
//! checked as CreateTopics checks them (INVALID_CONFIG); the new overrides are written to
//! `meta.json` durably and apply to the topic's logs from the next append or retention check.
//! Broker settings are fixed at start (`ferry serve --set`), so broker resources are refused.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse as IncrementalResult;
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, IncrementalAlterConfigsRequest,
    IncrementalAlterConfigsResponse, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use super::{code, str_bytes};
use crate::topics::{validate_log_config, validate_topic_config};
use crate::{Broker, BrokerError};

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

pub fn handle_alter(
    broker: &mut Broker,
    request: &AlterConfigsRequest,
) -> Result<ResponseKind, BrokerError> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let pairs: Vec<_> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = apply(
            broker,
            resource.resource_type,
            &resource.resource_name,
            request.validate_only,
            |_| {
                let mut configs = BTreeMap::new();
                for (name, value) in &pairs {
                    validate_topic_config(name, value.as_deref())
                        .map_err(|m| (ResponseError::InvalidConfig, m))?;
                    if let Some(value) = value {
                        configs.insert(name.clone(), value.clone());
                    }
                }
                Ok(configs)
            },
            &pairs,
        )?;
        let (error, message) = split(outcome);
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_error_code(error)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone()),
        );
    }
    Ok(ResponseKind::AlterConfigs(
        AlterConfigsResponse::default().with_responses(responses),
    ))
}

pub fn handle_incremental(
    broker: &mut Broker,
    request: &IncrementalAlterConfigsRequest,
) -> Result<ResponseKind, BrokerError> {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in &request.resources {
        let pairs: Vec<_> = resource
            .configs
            .iter()
            .map(|c| (c.name.to_string(), c.value.as_ref().map(|v| v.to_string())))
            .collect();
        let outcome = apply(
            broker,
            resource.resource_type,
            &resource.resource_name,
            request.validate_only,
            |current| {
                let mut configs = current.clone();
                for config in &resource.configs {
                    let name = config.name.to_string();
                    let value = config.value.as_ref().map(|v| v.to_string());
                    alter_one(&mut configs, &name, config.config_operation, value)?;
                }
                Ok(configs)
            },
            &pairs,
        )?;
        let (error, message) = split(outcome);
        responses.push(
            IncrementalResult::default()
                .with_error_code(error)
                .with_error_message(message)
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone()),
        );
    }
    Ok(ResponseKind::IncrementalAlterConfigs(
        IncrementalAlterConfigsResponse::default().with_responses(responses),
    ))
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

/// Checks the resource and the request's keys, computes the topic's new overrides with
/// `overrides` (given the current ones), and stores them unless `validate_only`.
fn apply(
    broker: &mut Broker,
    resource_type: i8,
    resource_name: &StrBytes,
    validate_only: bool,
    overrides: impl FnOnce(&BTreeMap<String, String>) -> Result<BTreeMap<String, String>, Refusal>,
    pairs: &[(String, Option<String>)],
) -> Result<Result<(), Refusal>, BrokerError> {
    let name = resource_name.as_str();
    let refused = |error, message: String| Ok(Err((error, message)));
    match resource_type {
        RESOURCE_TOPIC => {}
        RESOURCE_BROKER => {
            return refused(
                ResponseError::InvalidRequest,
                "ferry's broker settings are fixed at start (ferry serve --set)".into(),
            )
        }
        other => {
            return refused(
                ResponseError::InvalidRequest,
                format!("resource type {other} cannot be altered"),
            )
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    if let Some((duplicate, _)) = pairs.iter().find(|(n, _)| !seen.insert(n.as_str())) {
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
    let configs = match overrides(&topic.meta.configs) {
        Ok(configs) => configs,
        Err(refusal) => return Ok(Err(refusal)),
    };
    let defaults = broker.config.log.clone();
    if let Err(message) = validate_log_config(&defaults, &configs) {
        return refused(ResponseError::InvalidConfig, message);
    }
    if !validate_only {
        broker.topics.set_configs(name, configs, &defaults)?;
    }
    Ok(Ok(()))
}

fn split(outcome: Result<(), Refusal>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((error, message)) => (code(error), Some(str_bytes(message))),
    }
}
