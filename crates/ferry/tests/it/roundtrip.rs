//! Produce with every acks level and every compression codec through librdkafka, read everything
//! back in order and intact, restart the broker (cleanly) and read it all again.

use std::time::Duration;

use rdkafka::producer::FutureRecord;

use crate::harness::{consume, consumer_from_start, producer, record, Ferry};

const PARTITIONS: i32 = 4;

/// Records per (acks, codec) case; the default run keeps the suite fast, FERRY_TEST_RECORDS
/// raises it (the 100k is `FERRY_TEST_RECORDS=100000`).
fn records_per_case() -> u64 {
    std::env::var("FERRY_TEST_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

async fn produce_all(bootstrap: &str, topic: &str, acks: &str, codec: &str, count: u64) {
    let producer = producer(bootstrap, &[("acks", acks), ("compression.codec", codec)]);
    let mut deliveries = Vec::with_capacity(count as usize);
    for seq in 0..count {
        let partition = (seq % PARTITIONS as u64) as i32;
        let (key, value) = record(partition, seq / PARTITIONS as u64);
        let future = loop {
            match producer.send_result(
                FutureRecord::to(topic)
                    .partition(partition)
                    .key(&key)
                    .payload(&value),
            ) {
                Ok(future) => break future,
                Err((error, _)) => {
                    assert!(
                        matches!(
                            error.rdkafka_error_code(),
                            Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                        ),
                        "{error}"
                    );
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        };
        deliveries.push(future);
    }
    for delivery in deliveries {
        let result = delivery.await.expect("delivery not cancelled");
        if acks != "0" {
            result.expect("delivered");
        }
    }
}

/// Every partition holds its records in sequence, each intact.
fn check_in_order(
    received: &[Vec<(i64, String, String)>],
    per_partition: u64,
    offsets_known: bool,
) {
    for (partition, records) in received.iter().enumerate() {
        assert_eq!(
            records.len() as u64,
            per_partition,
            "partition {partition} record count"
        );
        for (seq, (offset, key, value)) in records.iter().enumerate() {
            let (want_key, want_value) = record(partition as i32, seq as u64);
            assert_eq!(key, &want_key, "partition {partition} position {seq}");
            assert_eq!(value, &want_value, "partition {partition} position {seq}");
            if offsets_known {
                assert_eq!(*offset, seq as i64, "partition {partition} offset");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acks_level_and_codec_round_trips_and_survives_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &[&format!("num.partitions={PARTITIONS}")]);
    let count = records_per_case();
    let per_partition = count / PARTITIONS as u64;
    let mut topics = Vec::new();
    for acks in ["0", "1", "all"] {
        for codec in ["none", "gzip", "snappy", "lz4", "zstd"] {
            let topic = format!("roundtrip-acks{acks}-{codec}");
            produce_all(&ferry.bootstrap(), &topic, acks, codec, count).await;
            let consumer = consumer_from_start(&ferry.bootstrap(), &topic, PARTITIONS);
            let received = consume(
                &consumer,
                PARTITIONS,
                count as usize,
                Duration::from_secs(60),
            );
            // acks=0 over loopback to a healthy broker loses nothing in practice, but nothing
            // promises it, so its offsets are checked only through order and content.
            check_in_order(&received, per_partition, acks != "0");
            topics.push(topic);
        }
    }
    ferry.stop();
    ferry.restart();
    for topic in &topics {
        let consumer = consumer_from_start(&ferry.bootstrap(), topic, PARTITIONS);
        let received = consume(
            &consumer,
            PARTITIONS,
            count as usize,
            Duration::from_secs(60),
        );
        check_in_order(&received, per_partition, true);
    }
}
