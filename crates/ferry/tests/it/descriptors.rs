//! File descriptors: a partition holds one (its active segment's), not one per segment, and the
//! descriptor limit bounds how many partitions the broker takes, so topics auto-created by the
//! hundred are refused with POLICY_VIOLATION before the broker runs out, and a restart under
//! the same limit serves clients. Under `ulimit -n 1024`, 1,008 auto-created topics used to stop
//! the broker (exit 70), and after a restart it held 1,020 descriptors and accepted no client.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::ClientConfig;

use crate::harness::{consume, consumer_from_start, producer, Ferry};

/// Enough segments per partition that one descriptor per segment would show.
const PARTITIONS: i32 = 20;
const RECORDS_PER_PARTITION: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_holds_one_descriptor_however_many_segments_it_has() {
    let dir = tempfile::tempdir().unwrap();
    let partitions = format!("num.partitions={PARTITIONS}");
    let mut ferry = Ferry::start(dir.path(), &[&partitions, "log.segment.bytes=4096"]);
    let producer = producer(&ferry.bootstrap(), &[("acks", "all"), ("linger.ms", "0")]);
    let value = vec![b'v'; 500];
    // Round by round, so each append is one small batch and the segments fill and roll.
    for i in 0..RECORDS_PER_PARTITION {
        let key = i.to_string();
        let sends = (0..PARTITIONS).map(|p| {
            producer.send(
                FutureRecord::to("many-segments")
                    .partition(p)
                    .key(&key)
                    .payload(&value),
                Duration::from_secs(30),
            )
        });
        for sent in futures::future::join_all(sends).await {
            sent.map_err(|(e, _)| e).unwrap();
        }
    }
    drop(producer);
    ferry.stop();
    let segments = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .flat_map(|p| std::fs::read_dir(p).unwrap())
        .filter(|e| e.as_ref().unwrap().path().extension() == Some("log".as_ref()))
        .count();
    // The control: far more segment files than partitions.
    assert!(segments > 10 * PARTITIONS as usize, "{segments} segments");

    ferry.restart();
    let held = ferry.open_descriptors();
    eprintln!(
        "{segments} segment files in {PARTITIONS} partitions: {held} descriptors after restart"
    );
    // One per partition and internal log, the listener, the runtime, stdio and the like.
    assert!(
        held < PARTITIONS as usize + 40,
        "{held} descriptors for {segments} segments"
    );

    // Reading every segment opens and maps them again; the broker's housekeeping (once a
    // second) closes and unmaps them once read.
    let consumer = consumer_from_start(&ferry.bootstrap(), "many-segments", PARTITIONS);
    let total = PARTITIONS as usize * RECORDS_PER_PARTITION;
    consume(&consumer, PARTITIONS, total, Duration::from_secs(60));
    let right_after = ferry.open_descriptors();
    let mapped_right_after = ferry.mapped_segments();
    drop(consumer);
    std::thread::sleep(Duration::from_millis(2_500));
    let later = ferry.open_descriptors();
    let mapped_later = ferry.mapped_segments();
    eprintln!(
        "after reading every segment: {right_after} descriptors and {mapped_right_after} \
         segments mapped, 2.5 s later {later} and {mapped_later}"
    );
    assert!(
        later < PARTITIONS as usize + 40,
        "{later} descriptors after the reads"
    );
    // At most each partition's active segment and the internal logs' stay mapped: a mapping
    // per segment ever read would grow without bound, up to the process's vm.max_map_count.
    assert!(
        mapped_later <= PARTITIONS as usize + 2,
        "{mapped_later} of {segments} segments still mapped after the reads"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_created_topics_stop_at_the_descriptor_budget_and_a_restart_serves() {
    // 256 descriptors: 128 for connections, 66 kept aside, 62 partitions.
    const LIMIT: u64 = 256;
    const BUDGET: usize = 62;
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start_with_descriptor_limit(dir.path(), &["num.partitions=1"], LIMIT);
    let first = producer(
        &ferry.bootstrap(),
        &[
            ("acks", "all"),
            ("linger.ms", "0"),
            ("message.timeout.ms", "5000"),
        ],
    );
    let mut created = 0;
    for i in 0..BUDGET {
        let topic = format!("auto-{i}");
        first
            .send(
                FutureRecord::to(&topic).key("k").payload("v"),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap_or_else(|e| panic!("topic {i} of {BUDGET} auto-created: {e}"));
        created += 1;
    }
    // Beyond the budget nothing is created: librdkafka, told POLICY_VIOLATION for the topic,
    // keeps the records until their timeout.
    let beyond = (BUDGET..BUDGET + 3).map(|i| {
        let topic = format!("auto-{i}");
        let first = &first;
        async move {
            first
                .send(
                    FutureRecord::to(&topic).key("k").payload("v"),
                    Duration::from_secs(10),
                )
                .await
                .is_ok()
        }
    });
    let delivered = futures::future::join_all(beyond).await;
    assert_eq!(delivered, [false; 3], "{created} created, then none");
    // An admin client is told why.
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", ferry.bootstrap())
        .create()
        .unwrap();
    let results = admin
        .create_topics(
            [&NewTopic::new("explicit", 1, TopicReplication::Fixed(1))],
            &AdminOptions::new(),
        )
        .await
        .unwrap();
    let refusal = results[0].as_ref().unwrap_err();
    assert_eq!(refusal.1, RDKafkaErrorCode::PolicyViolation, "{refusal:?}");
    let metadata = first
        .client()
        .fetch_metadata(None, Duration::from_secs(10))
        .unwrap();
    let topics = metadata
        .topics()
        .iter()
        .filter(|t| t.name().starts_with("auto-"))
        .count();
    assert_eq!(topics, BUDGET, "only the topics within the budget exist");
    assert!(ferry.is_running(), "the broker kept running");
    drop(first);

    // A restart under the same limit serves clients and the topics it holds.
    ferry.kill9();
    ferry.restart();
    let producer = producer(&ferry.bootstrap(), &[("acks", "all")]);
    producer
        .send(
            FutureRecord::to("auto-0").key("k").payload("again"),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .expect("a client is served after the restart");
    assert!(ferry.open_descriptors() < LIMIT as usize / 2);
}
