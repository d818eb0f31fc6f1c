//! Torture: an idempotent `acks=all` producer, a transactional producer that commits and aborts,
//! and a client committing group offsets, all running while the broker is `kill -9`ed at random
//! moments and restarted. Afterwards every acknowledged record is in the log once, in order and
//! intact; no record of an aborted (or unacknowledged and aborted) transaction is visible to
//! read_committed, every committed transaction is whole; committed group offsets never went back.
//!
//! The default run kills the broker 3 times; `FERRY_SLOW=1` 25 times. `FERRY_SEED=n` picks the
//! kill moments; the seed is printed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rand::Rng;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, FutureProducer, FutureRecord, Producer, ThreadedProducer,
};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::harness::Ferry;

const IDEMPOTENT_TOPIC: &str = "torture-idempotent";
const TXN_TOPIC: &str = "torture-txn";
const GROUP: &str = "torture-offsets";
const KILLS_DEFAULT: usize = 3;
const KILLS_SLOW: usize = 25;
/// Records per idempotent window (sent together, then awaited).
const WINDOW: u64 = 50;
const TXN_RECORDS: usize = 5;
const TIMEOUT: Duration = Duration::from_secs(60);

/// What the transactional producer knows about each of its transactions.
#[derive(Default)]
struct TxnOutcomes {
    committed: Vec<usize>,
    aborted: Vec<usize>,
    /// The broker died under it: whole or absent, never partial.
    unknown: Vec<usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_records_survive_repeated_kill9() {
    let (kills, mut rng) = crate::harness::kill_plan("torture", KILLS_DEFAULT, KILLS_SLOW);
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &["num.partitions=1"]);
    let bootstrap = ferry.bootstrap();
    let stop = Arc::new(AtomicBool::new(false));

    let idempotent = tokio::spawn(idempotent_load(bootstrap.clone(), stop.clone()));
    let txn_outcomes = Arc::new(Mutex::new(TxnOutcomes::default()));
    let txn = {
        let (bootstrap, stop, outcomes) = (bootstrap.clone(), stop.clone(), txn_outcomes.clone());
        std::thread::spawn(move || txn_load(&bootstrap, &stop, &outcomes))
    };
    let offsets = {
        let (bootstrap, stop) = (bootstrap.clone(), stop.clone());
        std::thread::spawn(move || offset_load(&bootstrap, &stop))
    };

    for _ in 0..kills {
        tokio::time::sleep(Duration::from_millis(rng.gen_range(300..2_000))).await;
        ferry.kill9();
        tokio::time::sleep(Duration::from_millis(rng.gen_range(0..300))).await;
        ferry.restart();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = idempotent.await.expect("idempotent load");
    txn.join().expect("transactional load");
    let (offset_commits, offsets_checked) = offsets.join().expect("offset load");

    // Idempotent: every acknowledged record once, in order, intact, at its acknowledged offset.
    let log = read_all(&bootstrap, IDEMPOTENT_TOPIC, "read_committed");
    let mut seen: BTreeMap<String, Vec<i64>> = BTreeMap::new();
    for (offset, value) in &log {
        seen.entry(value.clone()).or_default().push(*offset);
    }
    for (seq, offset) in &acked {
        let offsets = seen
            .get(&value(*seq))
            .unwrap_or_else(|| panic!("acknowledged record {seq} at {offset} is missing"));
        assert_eq!(
            offsets,
            &vec![*offset],
            "record {seq} once, where acknowledged"
        );
    }
    let order: Vec<u64> = log.iter().filter_map(|(_, v)| parse_seq(v)).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in send order");
    assert!(
        seen.values().all(|o| o.len() == 1),
        "no record twice (idempotence)"
    );

    // Transactions: committed ones whole, aborted ones invisible, unknown ones all or nothing.
    let visible = read_all(&bootstrap, TXN_TOPIC, "read_committed");
    let mut by_txn: BTreeMap<usize, usize> = BTreeMap::new();
    for (_, value) in &visible {
        let txn: usize = value.split('-').nth(1).unwrap().parse().unwrap();
        *by_txn.entry(txn).or_default() += 1;
    }
    let outcomes = txn_outcomes.lock().unwrap();
    for txn in &outcomes.committed {
        assert_eq!(
            by_txn.get(txn),
            Some(&TXN_RECORDS),
            "committed txn {txn} whole"
        );
    }
    for txn in &outcomes.aborted {
        assert_eq!(by_txn.get(txn), None, "aborted txn {txn} invisible");
    }
    for txn in &outcomes.unknown {
        let count = by_txn.get(txn).copied().unwrap_or(0);
        assert!(
            count == 0 || count == TXN_RECORDS,
            "txn {txn} partial: {count}"
        );
    }
    // The control: read_uncommitted sees the aborted transactions' records.
    let raw = read_all(&bootstrap, TXN_TOPIC, "read_uncommitted");
    if !outcomes.aborted.is_empty() {
        assert!(raw.len() > visible.len(), "aborted records are in the log");
    }

    assert!(!acked.is_empty() && !outcomes.committed.is_empty() && offset_commits > 0);
    assert!(ferry.is_running());
    eprintln!(
        "torture: {kills} kills; idempotent: {} acknowledged, {} in the log, 0 lost, 0 duplicated; \
         transactions: {} committed, {} aborted, {} unknown, 0 partial, {} aborted records hidden; \
         group offsets: {offset_commits} commits acknowledged, {offsets_checked} read back, never behind",
        acked.len(),
        log.len(),
        outcomes.committed.len(),
        outcomes.aborted.len(),
        outcomes.unknown.len(),
        raw.len() - visible.len(),
    );
}

fn value(seq: u64) -> String {
    format!("i-{seq:08}-{}", "x".repeat(seq as usize % 64))
}

fn parse_seq(value: &str) -> Option<u64> {
    value.split('-').nth(1)?.parse().ok()
}

/// Sends windows of records until `stop`; returns (sequence, offset) of each acknowledged one.
async fn idempotent_load(bootstrap: String, stop: Arc<AtomicBool>) -> Vec<(u64, i64)> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("message.timeout.ms", "120000")
        .set("linger.ms", "2")
        .create()
        .expect("create idempotent producer");
    let mut acked = Vec::new();
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let sends: Vec<_> = (seq..seq + WINDOW)
            .map(|s| {
                let payload = value(s);
                let record = FutureRecord::<str, _>::to(IDEMPOTENT_TOPIC)
                    .partition(0)
                    .payload(&payload);
                (s, producer.send_result(record).ok())
            })
            .collect();
        seq += WINDOW;
        let (seqs, futures): (Vec<u64>, Vec<_>) = sends.into_iter().unzip();
        let results = join_all(futures.into_iter().map(|f| async move {
            match f {
                Some(future) => future.await.ok().and_then(|r| r.ok()),
                None => None,
            }
        }))
        .await;
        for (s, result) in seqs.into_iter().zip(results) {
            if let Some(delivery) = result {
                acked.push((s, delivery.offset));
            }
        }
    }
    acked
}

fn transactional_producer(bootstrap: &str) -> Option<ThreadedProducer<DefaultProducerContext>> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", "torture-txn")
        .set("transaction.timeout.ms", "60000")
        .set("linger.ms", "2")
        .create()
        .expect("create transactional producer");
    producer.init_transactions(TIMEOUT).ok()?;
    Some(producer)
}

/// Runs transactions, committing two of three and aborting the third, until `stop`. A failed
/// step (the broker died) makes the outcome unknown and starts a new producer, which fences the
/// old one and completes or aborts what it left.
fn txn_load(bootstrap: &str, stop: &AtomicBool, outcomes: &Mutex<TxnOutcomes>) {
    let mut txn = 0usize;
    let mut producer = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(p) = producer
            .take()
            .or_else(|| transactional_producer(bootstrap))
        else {
            std::thread::sleep(Duration::from_millis(200));
            continue;
        };
        txn += 1;
        let commit = txn % 3 != 0;
        let ok = p.begin_transaction().is_ok()
            && (0..TXN_RECORDS).all(|i| {
                let payload = format!("t-{txn}-{i}");
                p.send(
                    BaseRecord::<str, str>::to(TXN_TOPIC)
                        .partition(0)
                        .payload(&payload),
                )
                .is_ok()
            })
            // Flushed before an abort too, so the aborted records reach the log (the control).
            && p.flush(TIMEOUT).is_ok()
            && if commit {
                p.commit_transaction(TIMEOUT).is_ok()
            } else {
                p.abort_transaction(TIMEOUT).is_ok()
            };
        let mut outcomes = outcomes.lock().unwrap();
        match (ok, commit) {
            (true, true) => outcomes.committed.push(txn),
            (true, false) => outcomes.aborted.push(txn),
            (false, _) => {
                outcomes.unknown.push(txn);
                continue; // drop the producer; a new one fences it
            }
        }
        producer = Some(p);
    }
}

/// Commits ever larger group offsets until `stop`, reading them back after each restart; any
/// committed offset read back below one already acknowledged fails the test. Returns the commits
/// acknowledged and the read-backs checked.
fn offset_load(bootstrap: &str, stop: &AtomicBool) -> (u64, u64) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .create()
        .expect("create offset client");
    let mut acked_offset = 0i64;
    let mut commits = 0u64;
    let mut checked = 0u64;
    let mut next = 1i64;
    while !stop.load(Ordering::Relaxed) {
        let mut list = TopicPartitionList::new();
        list.add_partition_offset(IDEMPOTENT_TOPIC, 0, Offset::Offset(next))
            .unwrap();
        if consumer.commit(&list, CommitMode::Sync).is_ok() {
            acked_offset = next;
            commits += 1;
        }
        next += 1;
        let mut query = TopicPartitionList::new();
        query.add_partition(IDEMPOTENT_TOPIC, 0);
        if let Ok(committed) = consumer.committed_offsets(query, Duration::from_secs(5)) {
            if let Some(Offset::Offset(read)) = committed
                .find_partition(IDEMPOTENT_TOPIC, 0)
                .map(|e| e.offset())
            {
                assert!(
                    read >= acked_offset,
                    "committed offset went back from {acked_offset} to {read}"
                );
                checked += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (commits, checked)
}

/// Reads a single-partition topic from its start to its end at `isolation`.
fn read_all(bootstrap: &str, topic: &str, isolation: &str) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("torture-read-{isolation}"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create reader");
    let (_, high) = consumer
        .fetch_watermarks(topic, 0, TIMEOUT)
        .expect("watermarks");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let deadline = Instant::now() + TIMEOUT;
    let mut last_offset = -1;
    let mut idle_since = Instant::now();
    // read_committed stops at the last stable offset, so also stop after 3 s without records.
    while last_offset + 1 < high && idle_since.elapsed() < Duration::from_secs(3) {
        assert!(Instant::now() < deadline, "reading {topic} timed out");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            let value = String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap();
            last_offset = message.offset();
            out.push((message.offset(), value));
            idle_since = Instant::now();
        }
    }
    out
}
