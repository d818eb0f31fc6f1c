//! Topic configs are parsed once, when a topic is created, altered or loaded: the produce path
//! obeys a `max.message.bytes` override, the override survives a reopen through `meta.json`, and
//! DescribeConfigs tells overrides from defaults.

use broker::{Broker, Outcome};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use wire::batch::{build_batch, ProducerFields};

use crate::idempotence::{call, open, request, NOW_MS};

fn respond(broker: &mut Broker, api_key: ApiKey, version: i16, body: RequestKind) -> ResponseKind {
    match call(broker, request(api_key, version, body)) {
        Outcome::Respond(response)
        | Outcome::AfterSync { response, .. }
        | Outcome::AfterWrite { response, .. } => response,
        other => panic!("unexpected outcome {other:?}"),
    }
}

fn create_small(broker: &mut Broker) {
    let config = |name: &'static str, value: &'static str| {
        CreatableTopicConfig::default()
            .with_name(StrBytes::from_static_str(name))
            .with_value(Some(StrBytes::from_static_str(value)))
    };
    let body = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("small")))
        .with_num_partitions(1)
        .with_replication_factor(1)
        .with_configs(vec![
            config("max.message.bytes", "100"),
            config("retention.ms", "-1"),
        ])]);
    let ResponseKind::CreateTopics(r) = respond(
        broker,
        ApiKey::CreateTopics,
        7,
        RequestKind::CreateTopics(body),
    ) else {
        panic!("not a CreateTopics response");
    };
    assert_eq!(r.topics[0].error_code, 0);
}

/// The error code of producing `value_bytes` bytes to small-0.
fn produce(broker: &mut Broker, value_bytes: usize) -> i16 {
    produce_to(broker, "small", value_bytes)
}

/// The error code of producing `value_bytes` bytes to partition 0 of `topic`.
fn produce_to(broker: &mut Broker, topic: &'static str, value_bytes: usize) -> i16 {
    let value = vec![b'x'; value_bytes];
    let batch = build_batch(&[(None, Some(&value[..]))], NOW_MS, ProducerFields::NONE, 0);
    let body =
        ProduceRequest::default()
            .with_acks(1)
            .with_topic_data(vec![TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str(topic)))
                .with_partition_data(vec![PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.into()))])]);
    let ResponseKind::Produce(r) = respond(broker, ApiKey::Produce, 9, RequestKind::Produce(body))
    else {
        panic!("not a Produce response");
    };
    r.responses[0].partition_responses[0].error_code
}

/// (name, value, source) of every config of topic `small`.
fn describe(broker: &mut Broker) -> Vec<(String, String, i8)> {
    let body =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_static_str("small"))
            .with_configuration_keys(None)]);
    let ResponseKind::DescribeConfigs(r) = respond(
        broker,
        ApiKey::DescribeConfigs,
        4,
        RequestKind::DescribeConfigs(body),
    ) else {
        panic!("not a DescribeConfigs response");
    };
    assert_eq!(r.results[0].error_code, 0, "{r:?}");
    r.results[0]
        .configs
        .iter()
        .map(|c| {
            let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
            (c.name.to_string(), value, c.config_source)
        })
        .collect()
}

#[test]
fn topic_overrides_are_enforced_reloaded_and_described() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    create_small(&mut broker);
    let expect = |broker: &mut Broker| {
        assert_eq!(produce(broker, 10), 0);
        assert_eq!(produce(broker, 200), 10, "MESSAGE_TOO_LARGE");
        let described = describe(broker);
        let source = |name: &str| described.iter().find(|c| c.0 == name).unwrap().2;
        let value = |name: &str| described.iter().find(|c| c.0 == name).unwrap().1.clone();
        assert_eq!(
            (value("max.message.bytes"), source("max.message.bytes")),
            ("100".into(), 1)
        );
        assert_eq!(
            (value("retention.ms"), source("retention.ms")),
            ("-1".into(), 1)
        );
        assert_eq!(
            (value("cleanup.policy"), source("cleanup.policy")),
            ("delete".into(), 5)
        );
        assert_eq!(source("segment.bytes"), 5);
    };
    expect(&mut broker);
    broker.close().unwrap();
    let mut broker = open(dir.path());
    expect(&mut broker);
}

/// IncrementalAlterConfigs on the BROKER resource; returns the resource's error code.
fn alter_broker(
    broker: &mut Broker,
    name: &'static str,
    operation: i8,
    value: &'static str,
) -> i16 {
    use kafka_protocol::messages::incremental_alter_configs_request::{
        AlterConfigsResource, AlterableConfig,
    };
    let body = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(4)
            .with_resource_name(StrBytes::from_static_str("1"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str(name))
                .with_config_operation(operation)
                .with_value(Some(StrBytes::from_static_str(value)))]),
    ]);
    let ResponseKind::IncrementalAlterConfigs(r) = respond(
        broker,
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(body),
    ) else {
        panic!("not an IncrementalAlterConfigs response");
    };
    r.responses[0].error_code
}

/// Produces `value_bytes` bytes to t-0 (no override of max.message.bytes); the error code.
fn produce_t(broker: &mut Broker, value_bytes: usize) -> i16 {
    produce_to(broker, "t", value_bytes)
}

#[test]
fn dynamic_broker_configs_change_the_defaults_of_topics_without_overrides() {
    const SET: i8 = 0;
    const DELETE: i8 = 1;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    create_small(&mut broker);
    // The control: 2,000 bytes pass under the static 1 MiB default.
    assert_eq!(produce_t(&mut broker, 2_000), 0);
    assert_eq!(
        alter_broker(&mut broker, "message.max.bytes", SET, "1000"),
        0
    );
    let expect = |broker: &mut Broker| {
        assert_eq!(produce_t(broker, 2_000), 10, "MESSAGE_TOO_LARGE on t");
        // A topic override wins over the broker's default.
        assert_eq!(produce(broker, 10), 0);
        let described = describe(broker);
        let small = described
            .iter()
            .find(|c| c.0 == "max.message.bytes")
            .unwrap();
        assert_eq!(
            (small.1.as_str(), small.2),
            ("100", 1),
            "small keeps its override"
        );
    };
    expect(&mut broker);
    // Settings fixed at start are refused, and nothing changes.
    assert_eq!(alter_broker(&mut broker, "num.partitions", SET, "3"), 42);
    // A value no log accepts is refused.
    assert_eq!(alter_broker(&mut broker, "log.segment.bytes", SET, "0"), 40);
    // Kept in meta.json across a reopen.
    broker.close().unwrap();
    let mut broker = open(dir.path());
    expect(&mut broker);
    // DELETE goes back to the static setting.
    assert_eq!(
        alter_broker(&mut broker, "message.max.bytes", DELETE, ""),
        0
    );
    assert_eq!(produce_t(&mut broker, 2_000), 0);
}

#[test]
fn describe_log_dirs_without_a_topic_list_names_every_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    let ResponseKind::DescribeLogDirs(r) = respond(
        &mut broker,
        ApiKey::DescribeLogDirs,
        4,
        RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None)),
    ) else {
        panic!("not a DescribeLogDirs response");
    };
    let names: Vec<String> = r.results[0]
        .topics
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(names, ["t", "__consumer_offsets", "__transaction_state"]);
    assert!(r.results[0].total_bytes > 0);
}
