//! Admin APIs through librdkafka's admin client: CreateTopics (with configs, errors), DescribeConfigs,
//! DeleteTopics, DeleteRecords, and ListOffsets (earliest, latest, by timestamp).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
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

/// What an admin worker's changes left, by topic: the partition counts the topic may have after
/// the kill (None: deleted). One answered change leaves one; the change in flight when the
/// broker died leaves two, before and after (either may be on disk).
type Answered = std::collections::BTreeMap<String, Vec<Option<i32>>>;

/// One admin client's round of changes on topics of its own (create with 2 partitions, grow to
/// 3, alter a config, delete every other one), until `stop` or the first failed change.
async fn churn_topics(
    bootstrap: String,
    worker: usize,
    stop: Arc<AtomicBool>,
    deletions: Arc<AtomicUsize>,
) -> Answered {
    use rdkafka::admin::{AlterConfig, NewPartitions};
    let admin = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("socket.timeout.ms", "3000")
        .create::<AdminClient<DefaultClientContext>>()
        .expect("admin client");
    let options = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(3)))
        .request_timeout(Some(Duration::from_secs(3)));
    let ok = |results: rdkafka::error::KafkaResult<Vec<rdkafka::admin::TopicResult>>| {
        matches!(results.as_deref(), Ok([Ok(_)]))
    };
    let mut answered = Answered::new();
    for round in 0.. {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Paced: unpaced, three workers' directory and meta.json fsyncs saturate this disk and
        // slow every other broker on the machine (the CI run's other tests).
        tokio::time::sleep(Duration::from_millis(20)).await;
        let name = format!("churn-{worker}-{round}");
        let topic = NewTopic::new(&name, 2, TopicReplication::Fixed(1));
        answered.insert(name.clone(), vec![None, Some(2)]);
        if !ok(admin.create_topics([&topic], &options).await) {
            break;
        }
        answered.insert(name.clone(), vec![Some(2), Some(3)]);
        if !ok(admin
            .create_partitions([&NewPartitions::new(&name, 3)], &options)
            .await)
        {
            break;
        }
        answered.insert(name.clone(), vec![Some(3)]);
        let config =
            AlterConfig::new(ResourceSpecifier::Topic(&name)).set("retention.ms", "600000");
        if !matches!(
            admin.alter_configs([&config], &options).await.as_deref(),
            Ok([Ok(_)])
        ) {
            break;
        }
        if round % 2 == 1 {
            answered.insert(name.clone(), vec![Some(3), None]);
            if !ok(admin.delete_topics(&[&name], &options).await) {
                break;
            }
            answered.insert(name, vec![None]);
            deletions.fetch_add(1, Ordering::Relaxed);
        }
    }
    answered
}

/// Issue 19: topic changes do their file work (directories, meta.json, removals) outside the
/// broker lock, one job at a time, the changes asked meanwhile held in order. Three admin
/// clients change topics at once while an idempotent producer writes acks=all beside them, and
/// the broker is killed (kill -9) in the middle: it starts again (meta.json and the directories
/// agree), every topic change answered is there (created with its partitions, deleted gone),
/// and every acknowledged record is there exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_changes_from_several_clients_beside_produce_survive_kill9() {
    use rdkafka::Message;
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &["auto.create.topics.enable=false"]);
    let bootstrap = ferry.bootstrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let steady = NewTopic::new("steady", 2, TopicReplication::Fixed(1));
    let created = admin(&bootstrap).create_topics([&steady], &options).await;
    assert!(matches!(created.as_deref(), Ok([Ok(_)])), "{created:?}");
    let stop = Arc::new(AtomicBool::new(false));
    let deletions = Arc::new(AtomicUsize::new(0));
    let acks = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..3)
        .map(|worker| {
            let churn = churn_topics(bootstrap.clone(), worker, stop.clone(), deletions.clone());
            tokio::spawn(churn)
        })
        .collect();
    let producer = producer(
        &bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("message.timeout.ms", "5000"),
        ],
    );
    let sending = {
        let stop = stop.clone();
        let acks = acks.clone();
        tokio::spawn(async move {
            let mut acknowledged = std::collections::BTreeSet::new();
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("k{seq}");
                let record = FutureRecord::to("steady").key(&key).payload("v");
                if producer.send(record, Duration::from_secs(5)).await.is_ok() {
                    acknowledged.insert(key);
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                seq += 1;
            }
            acknowledged
        })
    };
    // Killed in the middle of the work: once a deletion was answered and a few records
    // acknowledged (a slow machine takes longer to get there), and not before 0.5 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let waited = std::time::Instant::now();
    while deletions.load(Ordering::Relaxed) == 0 || acks.load(Ordering::Relaxed) < 10 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "no progress to kill in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ferry.kill9();
    stop.store(true, Ordering::Relaxed);
    let mut answered = Answered::new();
    for worker in workers {
        answered.extend(worker.await.expect("admin worker"));
    }
    let acknowledged = sending.await.expect("producer task");
    ferry.restart();
    let deleted = answered.values().filter(|p| **p == [None]).count();
    eprintln!(
        "{} topics changed ({deleted} deleted), {} records acknowledged before the kill",
        answered.len(),
        acknowledged.len()
    );
    assert!(deleted > 0, "no deletion answered: {answered:?}");
    // Every answered change is on disk after the kill.
    let consumer = crate::harness::consumer_from_start(&bootstrap, "steady", 2);
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    let found: std::collections::BTreeMap<&str, usize> = metadata
        .topics()
        .iter()
        .map(|t| (t.name(), t.partitions().len()))
        .collect();
    for (name, possible) in &answered {
        let partitions = found.get(name.as_str()).map(|&p| p as i32);
        assert!(
            possible.contains(&partitions),
            "topic {name} has {partitions:?} partitions after the kill, not one of {possible:?} \
             (found {found:?})"
        );
    }
    // Every acknowledged record, once.
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !acknowledged.iter().all(|key| seen.contains_key(key)) {
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledged records missing"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            let key = String::from_utf8(message.key().unwrap().to_vec()).unwrap();
            *seen.entry(key).or_default() += 1;
        }
    }
    while let Some(message) = consumer.poll(Duration::from_millis(500)) {
        let key = String::from_utf8(message.expect("consume").key().unwrap().to_vec()).unwrap();
        *seen.entry(key).or_default() += 1;
    }
    let duplicated: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(duplicated.is_empty(), "duplicated records: {duplicated:?}");
}
