//! Concurrency stress: many producer connections over many partitions and many consumers
//! reading while they write, on small segments that roll all the time, beside a topic whose
//! retention deletes segments under its readers, with the broker `kill -9`ed and restarted.
//! Fetch reads run outside the broker lock, from mapped files, concurrently with appends, rolls
//! and deletions; none of that may change what is promised: every consumer sees each partition's
//! records intact and in offset order (never a damaged batch), and afterwards every acknowledged
//! record is in the log once, at its acknowledged offset.
//!
//! The default run kills the broker twice; `FERRY_SLOW=1` ten times. `FERRY_SEED=n` picks the
//! kill moments; the seed is printed.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message};

use crate::harness::{consumer_from_start_with, producer, Ferry};

/// Acknowledged records of this topic are checked at the end.
const KEPT: &str = "stress-kept";
/// This topic's retention deletes segments while consumers read them.
const CHURN: &str = "stress-churn";
const PARTITIONS: i32 = 24;
const PRODUCERS: usize = 8;
const CONSUMERS: usize = 6;
/// Records each producer sends at once before awaiting their acknowledgements.
const WINDOW: u64 = 20;
const RUN: Duration = Duration::from_secs(12);
const KILLS_DEFAULT: usize = 2;
const KILLS_SLOW: usize = 10;

/// The value of a record: its key repeated, so any damaged or misplaced byte is seen.
fn value_of(key: &str) -> String {
    format!("{key}|").repeat(12)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_readers_and_writers_under_kill9_lose_and_garble_nothing() {
    let (kills, mut rng) = crate::harness::kill_plan("stress", KILLS_DEFAULT, KILLS_SLOW);
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(
        dir.path(),
        &[
            "log.segment.bytes=32768",
            "log.retention.check.interval.ms=100",
        ],
    );
    let bootstrap = ferry.bootstrap();
    create_topics(&bootstrap).await;

    let stop = Arc::new(AtomicBool::new(false));
    let consumers: Vec<_> = (0..CONSUMERS)
        .map(|i| {
            let topic = if i % 2 == 0 { KEPT } else { CHURN };
            let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
            std::thread::spawn(move || read_along(&bootstrap, topic, &stop))
        })
        .collect();
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|id| tokio::spawn(produce(bootstrap.clone(), id, stop.clone())))
        .collect();

    let started = Instant::now();
    for _ in 0..kills {
        tokio::time::sleep(RUN / (kills as u32 + 1) + Duration::from_millis(rng.gen_range(0..500)))
            .await;
        ferry.kill9();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        ferry.restart();
    }
    tokio::time::sleep(RUN.saturating_sub(started.elapsed())).await;
    stop.store(true, Ordering::Relaxed);
    let acked: Vec<(i32, i64, String)> = join_all(producers)
        .await
        .into_iter()
        .flat_map(|r| r.expect("producer task"))
        .collect();
    let read: Vec<Reader> = consumers
        .into_iter()
        .map(|c| c.join().expect("consumer thread"))
        .collect();

    for reader in &read {
        assert_eq!(
            reader.damaged, 0,
            "{}: damaged batches served",
            reader.topic
        );
        assert!(
            reader.records > 0,
            "{}: a consumer read nothing",
            reader.topic
        );
    }
    let churn_jumps: usize = read
        .iter()
        .filter(|r| r.topic == CHURN)
        .map(|r| r.jumps)
        .sum();
    // The control for the churn topic: retention really deleted segments while it was read.
    let churned = deleted_partitions(&bootstrap, CHURN);

    let log = read_all(&bootstrap, KEPT);
    let mut seen: HashMap<&str, Vec<(i32, i64)>> = HashMap::new();
    for ((partition, offset), key) in &log {
        seen.entry(key.as_str())
            .or_default()
            .push((*partition, *offset));
    }
    for (partition, offset, key) in &acked {
        assert_eq!(
            seen.get(key.as_str()),
            Some(&vec![(*partition, *offset)]),
            "acknowledged {key} once, at {partition}/{offset}"
        );
    }
    assert!(
        seen.values().all(|places| places.len() == 1),
        "no record twice"
    );
    assert!(ferry.is_running());
    eprintln!(
        "stress: {kills} kills; {} acknowledged, {} in the log, 0 lost, 0 duplicated; \
         consumers read {} records along, 0 damaged; retention deleted from {churned} of \
         {PARTITIONS} {CHURN} partitions ({churn_jumps} offset jumps seen)",
        acked.len(),
        log.len(),
        read.iter().map(|r| r.records).sum::<usize>(),
    );
    assert!(
        churned > 0,
        "retention deleted nothing while the topic was read"
    );
    // The deleted segments' files are gone from the disk too (the group commit removes them
    // after retention moved the log start): none starts below its partition's log start.
    let consumer = assigned(&bootstrap, CHURN, "read_uncommitted");
    for partition in 0..PARTITIONS {
        let (low, _) = consumer
            .fetch_watermarks(CHURN, partition, Duration::from_secs(10))
            .expect("watermarks");
        let dir = ferry.data_dir.join(format!("{CHURN}-{partition}"));
        let stale: Vec<i64> = std::fs::read_dir(&dir)
            .expect("partition directory")
            .filter_map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".log")?.parse::<i64>().ok()
            })
            .filter(|&base| {
                // A segment holding the log start begins below it; only wholly deleted ones
                // (the next segment also starts at or below it) are stale.
                base < low
            })
            .collect();
        assert!(
            stale.len() <= 1,
            "{CHURN}-{partition}: segment files {stale:?} below the log start {low} were not removed"
        );
    }
}

/// How many partitions of `topic` start after offset 0 (retention deleted their first records).
fn deleted_partitions(bootstrap: &str, topic: &str) -> usize {
    let consumer = assigned(bootstrap, topic, "read_uncommitted");
    (0..PARTITIONS)
        .filter(|&partition| {
            let (low, _) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(10))
                .expect("watermarks");
            low > 0
        })
        .count()
}

async fn create_topics(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let kept = NewTopic::new(KEPT, PARTITIONS, TopicReplication::Fixed(1));
    let churn = NewTopic::new(CHURN, PARTITIONS, TopicReplication::Fixed(1))
        .set("retention.bytes", "16384")
        .set("segment.bytes", "4096");
    for result in admin
        .create_topics([&kept, &churn], &AdminOptions::new())
        .await
        .expect("create topics")
    {
        result.expect("topic created");
    }
}

/// One producer connection: windows of records over every partition of both topics until
/// `stop`; returns the acknowledged records of `KEPT` as (partition, offset, key).
async fn produce(bootstrap: String, id: usize, stop: Arc<AtomicBool>) -> Vec<(i32, i64, String)> {
    let producer = producer(
        &bootstrap,
        &[
            ("acks", "all"),
            ("enable.idempotence", "true"),
            ("linger.ms", "2"),
        ],
    );
    let mut acked = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let sends = (seq..seq + WINDOW).map(|s| {
            let key = format!("p{id}-{s}");
            let partition = ((s + id as u64) % PARTITIONS as u64) as i32;
            let producer = &producer;
            async move {
                let value = value_of(&key);
                let topic = if s % 2 == 0 { KEPT } else { CHURN };
                let record = FutureRecord::to(topic)
                    .partition(partition)
                    .key(&key)
                    .payload(&value);
                let result = producer.send(record, Duration::from_secs(30)).await;
                (topic, key, result)
            }
        });
        for (topic, key, result) in join_all(sends).await {
            if let (KEPT, Ok(delivery)) = (topic, result) {
                acked.push((delivery.partition, delivery.offset, key));
            }
        }
        seq += WINDOW;
    }
    acked
}

/// What a consumer reading along saw.
struct Reader {
    topic: &'static str,
    records: usize,
    /// Batches the broker refused to serve as damaged (CORRUPT_MESSAGE): never expected.
    damaged: usize,
    /// Offsets that moved past deleted records (retention) rather than by one.
    jumps: usize,
}

/// Reads `topic` from the start while it is written, checking every record and the offset order
/// of each partition, until `stop`.
fn read_along(bootstrap: &str, topic: &'static str, stop: &AtomicBool) -> Reader {
    let consumer = assigned(bootstrap, topic, "read_uncommitted");
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    let mut reader = Reader {
        topic,
        records: 0,
        damaged: 0,
        jumps: 0,
    };
    while !stop.load(Ordering::Relaxed) {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                let key = std::str::from_utf8(message.key().expect("key")).expect("utf-8 key");
                let value = message.payload().expect("value");
                assert_eq!(
                    value,
                    value_of(key).as_bytes(),
                    "{topic}: record {key} intact"
                );
                let expected = next.entry(message.partition()).or_insert(0);
                assert!(
                    message.offset() >= *expected,
                    "{topic}/{}: offset {} after {}",
                    message.partition(),
                    message.offset(),
                    *expected - 1
                );
                if message.offset() > *expected {
                    assert_eq!(topic, CHURN, "{topic}: a gap in the offsets");
                    reader.jumps += 1;
                }
                *expected = message.offset() + 1;
                reader.records += 1;
            }
            Some(Err(error)) if error.to_string().contains("Invalid message") => {
                reader.damaged += 1
            }
            // Transport errors while the broker is down.
            Some(Err(_)) | None => {}
        }
    }
    reader
}

/// A consumer of every partition of `topic` from the start; after retention deleted what it
/// was to read next, it goes on from the new start.
fn assigned(bootstrap: &str, topic: &str, isolation: &str) -> BaseConsumer {
    consumer_from_start_with(
        bootstrap,
        topic,
        PARTITIONS,
        &[
            ("auto.offset.reset", "earliest"),
            ("isolation.level", isolation),
        ],
    )
}

/// Every record of `topic` as ((partition, offset), key).
fn read_all(bootstrap: &str, topic: &str) -> BTreeMap<(i32, i64), String> {
    let consumer = assigned(bootstrap, topic, "read_committed");
    let mut records = BTreeMap::new();
    let mut quiet_since = Instant::now();
    while quiet_since.elapsed() < Duration::from_secs(3) {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("read back without error");
            let key = String::from_utf8(message.key().expect("key").to_vec()).expect("utf-8");
            records.insert((message.partition(), message.offset()), key);
            quiet_since = Instant::now();
        }
    }
    records
}
