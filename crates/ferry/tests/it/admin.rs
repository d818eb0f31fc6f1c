//! Admin APIs through librdkafka's admin client: CreateTopics (with configs, errors), DescribeConfigs,
//! DeleteTopics, DeleteRecords, and ListOffsets (earliest, latest, by timestamp).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::harness::{producer, Ferry};

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_configs_offsets_and_record_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &["auto.create.topics.enable=false"]);
    let bootstrap = ferry.bootstrap();
    let admin = admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));

    let results = admin
        .create_topics(
            &[
                NewTopic::new("admin-a", 3, TopicReplication::Fixed(1))
                    .set("retention.ms", "3600000"),
                NewTopic::new("admin-bad-rf", 1, TopicReplication::Fixed(3)),
                NewTopic::new("admin bad name", 1, TopicReplication::Fixed(1)),
                NewTopic::new("admin-bad-config", 1, TopicReplication::Fixed(1))
                    .set("no.such", "1"),
            ],
            &options,
        )
        .await
        .expect("create topics");
    let codes: Vec<_> = results
        .iter()
        .map(|r| r.as_ref().err().map(|(_, code)| *code))
        .collect();
    assert_eq!(
        codes,
        vec![
            None,
            Some(RDKafkaErrorCode::InvalidReplicationFactor),
            Some(RDKafkaErrorCode::InvalidTopic),
            Some(RDKafkaErrorCode::InvalidConfig),
        ]
    );
    let again = admin
        .create_topics(
            &[NewTopic::new("admin-a", 3, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        again[0].as_ref().err().map(|(_, c)| *c),
        Some(RDKafkaErrorCode::TopicAlreadyExists)
    );

    let configs = admin
        .describe_configs(&[ResourceSpecifier::Topic("admin-a")], &options)
        .await
        .unwrap();
    let resource = configs[0].as_ref().expect("describe admin-a");
    let retention = resource.get("retention.ms").expect("retention.ms listed");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert!(!retention.is_default);
    assert!(
        resource
            .get("segment.bytes")
            .expect("segment.bytes listed")
            .is_default
    );

    // Produce 30 records to partition 0 with increasing timestamps.
    let producer = producer(&bootstrap, &[("acks", "all"), ("linger.ms", "0")]);
    let base_ms = 1_700_000_000_000i64;
    for i in 0..30i64 {
        producer
            .send(
                FutureRecord::to("admin-a")
                    .partition(0)
                    .key("k")
                    .payload("v")
                    .timestamp(base_ms + i * 1000),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    assert_eq!(
        consumer
            .fetch_watermarks("admin-a", 0, Duration::from_secs(10))
            .unwrap(),
        (0, 30)
    );
    assert_eq!(
        consumer
            .fetch_watermarks("admin-a", 1, Duration::from_secs(10))
            .unwrap(),
        (0, 0)
    );
    let mut by_time = TopicPartitionList::new();
    by_time
        .add_partition_offset("admin-a", 0, Offset::Offset(base_ms + 10_000))
        .unwrap();
    let found = consumer
        .offsets_for_times(by_time, Duration::from_secs(10))
        .unwrap();
    let offset = found.find_partition("admin-a", 0).unwrap().offset();
    assert_eq!(
        offset,
        Offset::Offset(10),
        "records were sent one per batch (linger.ms=0)"
    );
    let mut late = TopicPartitionList::new();
    late.add_partition_offset("admin-a", 0, Offset::Offset(base_ms + 999_000))
        .unwrap();
    let found = consumer
        .offsets_for_times(late, Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        found.find_partition("admin-a", 0).unwrap().offset(),
        Offset::End
    );

    // DeleteRecords moves the low watermark; beyond the high watermark is refused.
    let mut delete = TopicPartitionList::new();
    delete
        .add_partition_offset("admin-a", 0, Offset::Offset(12))
        .unwrap();
    let deleted = admin
        .delete_records(&delete, &options)
        .await
        .expect("delete records");
    assert_eq!(
        deleted.find_partition("admin-a", 0).unwrap().offset(),
        Offset::Offset(12)
    );
    assert_eq!(
        consumer
            .fetch_watermarks("admin-a", 0, Duration::from_secs(10))
            .unwrap(),
        (12, 30)
    );
    let mut beyond = TopicPartitionList::new();
    beyond
        .add_partition_offset("admin-a", 0, Offset::Offset(31))
        .unwrap();
    let refused = admin
        .delete_records(&beyond, &options)
        .await
        .expect("delete records answer");
    assert!(refused
        .find_partition("admin-a", 0)
        .unwrap()
        .error()
        .is_err());

    let deleted = admin
        .delete_topics(&["admin-a", "admin-missing"], &options)
        .await
        .unwrap();
    assert!(deleted[0].is_ok());
    assert_eq!(
        deleted[1].as_ref().err().map(|(_, c)| *c),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition)
    );
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    assert!(
        metadata.topics().iter().all(|t| t.name() != "admin-a"),
        "deleted topic still listed"
    );
}
