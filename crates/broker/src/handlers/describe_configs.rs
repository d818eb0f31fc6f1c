//! DescribeConfigs for topics (the effective value of each setting ferry enforces, and whether it
//! is a topic override, a broker setting changed at run time, or a default) and for the broker
//! (its main settings: those that can change at run time with their source, the rest read-only).

use acl::Operation;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse, ResponseKind};

use super::create_topics::{SOURCE_DEFAULT, SOURCE_TOPIC};
use super::{code, str_bytes};
use crate::topic_config::{DYNAMIC_BROKER_CONFIGS, TOPIC_CONFIG_NAMES};
use crate::{Broker, ClientInfo};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// Config source of a broker setting changed at run time (Kafka's DYNAMIC_BROKER_CONFIG).
const SOURCE_DYNAMIC_BROKER: i8 = 2;
/// Config source of a static broker setting.
const SOURCE_STATIC_BROKER: i8 = 4;

pub fn handle(
    broker: &Broker,
    client: &ClientInfo,
    request: &DescribeConfigsRequest,
) -> ResponseKind {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            let (kind, name) = (resource.resource_type, &resource.resource_name);
            let denied = broker.config_denied(client, Operation::DescribeConfigs, kind, name);
            let entries = match (denied, kind) {
                (Some(error), _) => Err(error),
                (None, RESOURCE_TOPIC) => topic_entries(broker, name),
                (None, RESOURCE_BROKER) => Ok(broker_entries(broker)),
                (None, _) => Err(ResponseError::InvalidRequest),
            };
            let wanted = resource.configuration_keys.as_ref();
            match entries {
                Ok(entries) => result.with_configs(
                    entries
                        .into_iter()
                        .filter(|e| wanted.is_none_or(|keys| keys.iter().any(|k| *k == e.name)))
                        .collect(),
                ),
                Err(error) => result
                    .with_error_code(code(error))
                    .with_error_message(Some(str_bytes(error.to_string()))),
            }
        })
        .collect();
    ResponseKind::DescribeConfigs(DescribeConfigsResponse::default().with_results(results))
}

fn entry(name: &str, value: String, source: i8, read_only: bool) -> DescribeConfigsResourceResult {
    DescribeConfigsResourceResult::default()
        .with_name(str_bytes(name))
        .with_value(Some(str_bytes(value)))
        .with_config_source(source)
        .with_read_only(read_only)
}

fn topic_entries(
    broker: &Broker,
    name: &str,
) -> Result<Vec<DescribeConfigsResourceResult>, ResponseError> {
    let topic = broker
        .topics
        .get(name)
        .ok_or(ResponseError::UnknownTopicOrPartition)?;
    let defaults = broker.topics.defaults();
    // An override is shown as it was set (meta.json keeps it so); a default as the broker has it.
    Ok(TOPIC_CONFIG_NAMES
        .iter()
        .map(|config| match topic.meta.configs.get(*config) {
            Some(value) => entry(config, value.clone(), SOURCE_TOPIC, false),
            None => {
                let value = defaults
                    .value(config)
                    .unwrap_or_else(|| unreachable!("config {config} has no default"));
                let dynamic = DYNAMIC_BROKER_CONFIGS
                    .iter()
                    .any(|(broker_name, topic_name)| {
                        topic_name == config
                            && broker.topics.broker_configs().contains_key(*broker_name)
                    });
                let source = if dynamic {
                    SOURCE_DYNAMIC_BROKER
                } else {
                    SOURCE_DEFAULT
                };
                entry(config, value, source, false)
            }
        })
        .collect())
}

fn broker_entries(broker: &Broker) -> Vec<DescribeConfigsResourceResult> {
    let config = &broker.config;
    let fixed = [
        ("node.id", config.node_id.to_string()),
        ("num.partitions", config.num_partitions.to_string()),
        (
            "auto.create.topics.enable",
            config.auto_create_topics.to_string(),
        ),
        ("fetch.max.bytes", config.fetch_max_bytes.to_string()),
        ("max.partitions", config.max_partitions.to_string()),
        ("log.dirs", config.data_dir.display().to_string()),
    ]
    .into_iter()
    .map(|(name, value)| entry(name, value, SOURCE_STATIC_BROKER, true));
    // The settings that can change at run time, as they are now.
    let changed = broker.topics.broker_configs();
    let defaults = broker.topics.defaults();
    let dynamic = DYNAMIC_BROKER_CONFIGS.iter().map(|(name, topic_name)| {
        let value = defaults
            .value(topic_name)
            .unwrap_or_else(|| unreachable!("config {topic_name} has no default"));
        let source = if changed.contains_key(*name) {
            SOURCE_DYNAMIC_BROKER
        } else {
            SOURCE_STATIC_BROKER
        };
        entry(name, value, source, false)
    });
    fixed.chain(dynamic).collect()
}
