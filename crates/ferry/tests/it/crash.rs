//! `kill -9` in the middle of `acks=all` production: after a restart every acknowledged record
//! is there at the offset it was acknowledged with; unacknowledged ones may be missing, and
//! nothing is garbled.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::producer::{FutureRecord, Producer};

use crate::harness::{consume, consumer_from_start, producer, record, Ferry};

const PARTITIONS: i32 = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_acks_all_keeps_every_acknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &[&format!("num.partitions={PARTITIONS}")]);
    let topic = "crash-acks-all";
    let producer = producer(
        &ferry.bootstrap(),
        &[
            ("acks", "all"),
            ("message.timeout.ms", "3000"),
            ("retries", "0"),
        ],
    );
    // (partition, seq) -> acknowledged offset.
    let acked: Arc<Mutex<HashMap<(i32, u64), i64>>> = Arc::default();
    let mut tasks = Vec::new();
    let mut killed_at = None;
    let mut seq = 0u64;
    // Send in steady slices; the kill lands while slices are in flight, then sending goes on
    // for a while against the dead broker.
    while killed_at.is_none_or(|at| seq < at + 5_000) {
        assert!(seq < 1_000_000, "never reached 5000 acknowledgements");
        let partition = (seq % PARTITIONS as u64) as i32;
        let seq_in_partition = seq / PARTITIONS as u64;
        let (key, value) = record(partition, seq_in_partition);
        let Ok(delivery) = producer.send_result(
            FutureRecord::to(topic)
                .partition(partition)
                .key(&key)
                .payload(&value),
        ) else {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        };
        seq += 1;
        let record_ack = acked.clone();
        tasks.push(tokio::spawn(async move {
            if let Ok(Ok(delivery)) = delivery.await {
                record_ack
                    .lock()
                    .unwrap()
                    .insert((partition, seq_in_partition), delivery.offset);
            }
        }));
        if seq % 200 == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
            if killed_at.is_none() && acked.lock().unwrap().len() >= 5_000 {
                ferry.kill9();
                killed_at = Some(seq);
            }
        }
    }
    let sent_total = seq;
    for task in tasks {
        task.await.unwrap();
    }
    producer.purge(rdkafka::producer::PurgeConfig::default().queue().inflight());
    drop(producer);
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() >= 5_000, "acknowledged {}", acked.len());

    ferry.restart();
    // Everything the log holds now: read to the high watermark of each partition.
    let consumer = consumer_from_start(&ferry.bootstrap(), topic, PARTITIONS);
    let mut stored = 0usize;
    for partition in 0..PARTITIONS {
        let (_, high) = rdkafka::consumer::Consumer::fetch_watermarks(
            &consumer,
            topic,
            partition,
            Duration::from_secs(10),
        )
        .expect("watermarks");
        stored += high as usize;
    }
    let received = consume(&consumer, PARTITIONS, stored, Duration::from_secs(60));
    let mut found: HashMap<(i32, u64), i64> = HashMap::new();
    for (partition, records) in received.iter().enumerate() {
        for (offset, key, value) in records {
            let seq: u64 = key
                .rsplit('-')
                .next()
                .and_then(|s| s.parse().ok())
                .expect("key carries its sequence");
            let (want_key, want_value) = record(partition as i32, seq);
            assert_eq!(
                key, &want_key,
                "record at offset {offset} of partition {partition} is garbled"
            );
            assert_eq!(
                value, &want_value,
                "record at offset {offset} of partition {partition} is garbled"
            );
            found.insert((partition as i32, seq), *offset);
        }
    }
    let mut lost = Vec::new();
    for (id, offset) in &acked {
        if found.get(id) != Some(offset) {
            lost.push((*id, *offset, found.get(id).copied()));
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost or moved, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let unacked_present = found.keys().filter(|id| !acked.contains_key(id)).count();
    let unacked_missing = sent_total as usize - acked.len() - unacked_present;
    eprintln!(
        "kill -9: {} acknowledged, all present; {} unacknowledged present, {} unacknowledged missing",
        acked.len(),
        unacked_present,
        unacked_missing
    );
}
