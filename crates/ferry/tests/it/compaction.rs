//! Log compaction (`cleanup.policy=compact`) with librdkafka on both ends: keyed records
//! produced with lz4 by an idempotent producer, the cleaner run by the broker, and a consumer
//! from the beginning reading each key's last value at the offset it was written at. The
//! control is a topic with `cleanup.policy=delete` fed the same records, which keeps all of
//! them. Keyless records are refused on the compacted topic (and taken by the control), and the
//! compacted log reads back the same after a `kill -9`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::FutureRecord;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, Message};

use crate::harness::{consumer_from_start, producer, Ferry};
use crate::metrics::scrape;

const KEYS: usize = 25;
const RECORDS: usize = 3_000;
/// The key whose last record is a tombstone.
const DELETED_KEY: usize = 3;
const TIMEOUT: Duration = Duration::from_secs(60);

/// (offset, key, value) as produced or consumed; a tombstone has no value.
type Row = (i64, Option<String>, Option<String>);

fn admin(bootstrap: &str) -> AdminClient<DefaultClientContext> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client")
}

/// Produces the keyed records (the last of `DELETED_KEY` a tombstone) and returns them with
/// the offsets the broker acknowledged.
async fn produce_keyed(bootstrap: &str, topic: &str) -> Vec<Row> {
    let producer = producer(
        bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("compression.type", "lz4"),
            // Small batches, so the records fill many small segments.
            ("batch.num.messages", "20"),
        ],
    );
    let mut sent = Vec::new();
    for i in 0..RECORDS {
        let key = format!("key-{}", i % KEYS);
        let value = (i != RECORDS - KEYS + DELETED_KEY).then(|| format!("value-{i}"));
        let mut record = FutureRecord::<str, str>::to(topic).key(&key);
        if let Some(value) = &value {
            record = record.payload(value);
        }
        let delivery = producer.send_result(record).expect("queue the record");
        sent.push((delivery, key.clone(), value.clone()));
    }
    let mut rows = Vec::new();
    for (delivery, key, value) in sent {
        let delivery = delivery.await.expect("delivery").expect("acknowledged");
        rows.push((delivery.offset, Some(key), value));
    }
    rows
}

/// Everything a consumer from the beginning reads up to the high watermark.
fn read_all(bootstrap: &str, topic: &str) -> Vec<Row> {
    let consumer = consumer_from_start(bootstrap, topic, 1);
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    read_until(&consumer, high)
}

fn read_until(consumer: &BaseConsumer, high: i64) -> Vec<Row> {
    let deadline = Instant::now() + TIMEOUT;
    let mut rows: Vec<Row> = Vec::new();
    while rows.last().is_none_or(|row| row.0 + 1 < high) {
        assert!(
            Instant::now() < deadline,
            "read {} rows, never reached {high}",
            rows.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = message.expect("consume");
        let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8(b.to_vec()).unwrap());
        rows.push((
            message.offset(),
            text(message.key()),
            text(message.payload()),
        ));
    }
    rows
}

/// What a compacted topic promises a reader: every record read is the one written at its
/// offset, and every key's last record written is there.
fn check_compacted(produced: &[Row], read: &[Row], when: &str) {
    let written: HashMap<i64, &Row> = produced.iter().map(|row| (row.0, row)).collect();
    for row in read {
        assert_eq!(
            Some(&row),
            written.get(&row.0),
            "{when}: what was written at {}",
            row.0
        );
    }
    let kept = last_by_key(read);
    for (key, last) in last_by_key(produced) {
        assert_eq!(kept.get(&key), Some(&last), "{when}: {key:?}'s last record");
    }
}

/// Each key's last record, by key.
fn last_by_key(rows: &[Row]) -> HashMap<Option<String>, Row> {
    rows.iter()
        .map(|row| (row.1.clone(), row.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compacted_topic_keeps_each_keys_last_value_at_its_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(
        dir.path(),
        &[
            "log.cleaner.backoff.ms=200",
            "log.flush.offset.checkpoint.interval.ms=200",
            "metrics.listen=127.0.0.1:0",
        ],
    );
    let bootstrap = ferry.bootstrap();
    let admin = admin(&bootstrap);
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let small = |name, policy| {
        NewTopic::new(name, 1, TopicReplication::Fixed(1))
            .set("cleanup.policy", policy)
            .set("segment.bytes", "4096")
            .set("min.cleanable.dirty.ratio", "0.01")
    };
    let created = admin
        .create_topics(
            &[small("compacted", "compact"), small("kept", "delete")],
            &options,
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic("compacted")], &options)
        .await
        .expect("describe configs");
    let resource = described[0].as_ref().expect("described");
    let policy = resource.get("cleanup.policy").and_then(|e| e.value.clone());
    assert_eq!(policy.as_deref(), Some("compact"));

    let produced = produce_keyed(&bootstrap, "compacted").await;
    let control = produce_keyed(&bootstrap, "kept").await;

    // The cleaner runs within a few backoffs once the sealed segments are checkpointed.
    let deadline = Instant::now() + TIMEOUT;
    while scrape(&ferry).or_zero("ferry_log_cleanings_total") < 1.0 {
        assert!(Instant::now() < deadline, "no cleaning ran");
        std::thread::sleep(Duration::from_millis(200));
    }
    let metrics = scrape(&ferry);
    let removed = metrics.or_zero("ferry_log_cleaner_records_removed_total");
    let reclaimed = metrics.or_zero("ferry_log_cleaner_bytes_reclaimed_total");
    eprintln!("compaction: {removed} records removed, {reclaimed} bytes reclaimed");

    let read = read_all(&bootstrap, "compacted");
    check_compacted(&produced, &read, "after the cleaning");
    assert!(
        read.len() < RECORDS / 2,
        "compaction removed superseded records: {} of {RECORDS} read",
        read.len()
    );
    assert!(removed > 0.0 && reclaimed > 0.0);
    // Control: the same records on a topic that only deletes are all there.
    assert_eq!(read_all(&bootstrap, "kept"), control);

    // A record without a key has no place in a compacted topic.
    let plain = producer(&bootstrap, &[("message.timeout.ms", "10000")]);
    let keyless = |topic| FutureRecord::<str, str>::to(topic).payload("no key");
    let refused = plain
        .send(keyless("compacted"), Duration::from_secs(10))
        .await;
    match refused {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(code, RDKafkaErrorCode::InvalidRecord)
        }
        other => panic!("a keyless record on a compacted topic: {other:?}"),
    }
    let taken = plain.send(keyless("kept"), Duration::from_secs(10)).await;
    assert!(
        taken.is_ok(),
        "control: the delete topic takes it: {taken:?}"
    );

    // The compacted log, gaps and all, reads back the same after a kill -9.
    ferry.kill9();
    ferry.restart();
    assert_eq!(read_all(&bootstrap, "compacted"), read);
}

/// Produces `count` records over `KEYS` keys from `first`, waiting for each acknowledgement
/// batch: (offset, key, value) of each.
async fn produce_round(bootstrap: &str, topic: &str, first: usize, count: usize) -> Vec<Row> {
    let producer = producer(bootstrap, &[("batch.num.messages", "10")]);
    let mut sent = Vec::new();
    for i in first..first + count {
        let key = format!("key-{}", i % KEYS);
        let value = format!("value-{i}");
        let record = FutureRecord::<str, str>::to(topic)
            .key(&key)
            .payload(&value);
        sent.push((producer.send_result(record).expect("queue"), key, value));
    }
    let mut rows = Vec::new();
    for (delivery, key, value) in sent {
        let delivery = delivery.await.expect("delivery").expect("acknowledged");
        rows.push((delivery.offset, Some(key), Some(value)));
    }
    rows
}

/// `kill -9` at random moments while the cleaner works (a cleaning every 100 ms): after each
/// restart every key's last acknowledged record is there, at its offset, and nothing read was
/// never written. `FERRY_SLOW=1` kills 30 times instead of 4.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_cleanings_keeps_each_keys_last_record() {
    use rand::Rng;
    let (kills, mut rng) = crate::harness::kill_plan("compaction kill -9", 4, 30);
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(
        dir.path(),
        &[
            "log.cleaner.backoff.ms=100",
            "log.flush.offset.checkpoint.interval.ms=100",
            "metrics.listen=127.0.0.1:0",
        ],
    );
    let bootstrap = ferry.bootstrap();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topic = NewTopic::new("churn", 1, TopicReplication::Fixed(1))
        .set("cleanup.policy", "compact")
        .set("segment.bytes", "2048")
        .set("min.cleanable.dirty.ratio", "0.01");
    let created = admin(&bootstrap).create_topics(&[topic], &options).await;
    assert!(created.expect("create").iter().all(Result::is_ok));
    let mut produced: Vec<Row> = Vec::new();
    let mut cleanings = 0.0;
    for round in 0..kills {
        produced.extend(produce_round(&bootstrap, "churn", round * 400, 400).await);
        // Cleanings run while the records are checkpointed; the kill lands somewhere among them.
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..1_500))).await;
        cleanings += scrape(&ferry).or_zero("ferry_log_cleanings_total");
        ferry.kill9();
        ferry.restart();
        let read = read_all(&bootstrap, "churn");
        check_compacted(&produced, &read, &format!("round {round}"));
        eprintln!(
            "round {round}: {} of {} records left",
            read.len(),
            produced.len()
        );
    }
    assert!(
        cleanings >= 1.0,
        "no cleaning ran before the kills ({cleanings})"
    );
    // Control: compaction did remove records (the checks above are not vacuous).
    let read = read_all(&bootstrap, "churn");
    assert!(
        read.len() < produced.len(),
        "{} of {}",
        read.len(),
        produced.len()
    );
}
