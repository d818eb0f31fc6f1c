//! The client library's commit windows against the real broker: at-least-once commits its
//! processed records once its window is due, and exactly-once (consume-transform-produce) keeps
//! one transaction open across batches for its window. Each test has its control: a window that
//! is dropped before it is committed really leaves the offsets (and, for transactions, the
//! outputs) where they were, and the records come again.

use std::time::{Duration, Instant};

use client::transactional::{Output, Transactional};
use client::{CommitPolicy, Consumer, Guarantee, NoObserver, Settings};
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::harness::{producer, Ferry};

const PARTITIONS: i32 = 3;
const RECORDS: usize = 600;
const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);

fn start() -> (Ferry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &[
            &format!("num.partitions={PARTITIONS}"),
            "group.initial.rebalance.delay.ms=0",
        ],
    );
    (ferry, dir)
}

/// Produces `RECORDS` records keyed `k0..` to `topic`, acknowledged.
fn fill(bootstrap: &str, topic: &str) {
    let producer = producer(bootstrap, &[("acks", "all")]);
    let keys: Vec<String> = (0..RECORDS).map(|i| format!("k{i}")).collect();
    let sends: Vec<_> = keys
        .iter()
        .map(|key| {
            producer
                .send_result(FutureRecord::to(topic).key(key).payload("v"))
                .expect("enqueue")
        })
        .collect();
    for send in sends {
        futures::executor::block_on(send)
            .expect("delivery report")
            .expect("acknowledged");
    }
}

/// The group's committed offsets of `topic`, summed over partitions (what it has consumed).
fn committed_total(bootstrap: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition(topic, partition);
    }
    let committed = consumer.committed_offsets(list, TIMEOUT).unwrap();
    committed
        .elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => offset,
            _ => 0,
        })
        .sum()
}

fn settings(ferry: &Ferry, group: &str) -> Settings {
    Settings::new(ferry.bootstrap()).group_id(group)
}

/// Steps an at-least-once consumer until it has processed every record; returns how many
/// steps committed.
fn drain_at_least_once(consumer: &mut Consumer, processed: &mut usize) -> usize {
    let deadline = Instant::now() + TIMEOUT;
    let mut commits = 0;
    while *processed < RECORDS {
        assert!(
            Instant::now() < deadline,
            "processed {processed} of {RECORDS}"
        );
        let step = consumer
            .step(POLL, &mut NoObserver, |_| Ok::<(), ()>(()))
            .unwrap();
        *processed += step.processed;
        commits += usize::from(step.committed);
    }
    commits
}

#[test]
fn at_least_once_commits_its_window_when_due_and_a_dropped_window_comes_again() {
    let (ferry, _dir) = start();
    fill(&ferry.bootstrap(), "alo");
    // Control: a window of 10 minutes is never due in this test; the consumer is dropped with
    // everything processed and nothing committed, so the group's offsets have not moved.
    let mut first = Consumer::new(Guarantee::AtLeastOnce, &settings(&ferry, "g-alo"))
        .unwrap()
        .commit_policy(CommitPolicy::every(Duration::from_secs(600)));
    first.subscribe(&["alo"]).unwrap();
    let mut processed = 0;
    assert_eq!(drain_at_least_once(&mut first, &mut processed), 0);
    drop(first);
    assert_eq!(committed_total(&ferry.bootstrap(), "g-alo", "alo"), 0);

    // The successor reads everything again and commits its window once it is due (50 ms).
    let mut second = Consumer::new(Guarantee::AtLeastOnce, &settings(&ferry, "g-alo"))
        .unwrap()
        .commit_policy(CommitPolicy::every(Duration::from_millis(50)));
    second.subscribe(&["alo"]).unwrap();
    let mut processed = 0;
    drain_at_least_once(&mut second, &mut processed);
    assert_eq!(
        processed, RECORDS,
        "the dropped window's records came again"
    );
    // Quiet steps still commit the last window once it is due.
    let deadline = Instant::now() + TIMEOUT;
    while committed_total(&ferry.bootstrap(), "g-alo", "alo") < RECORDS as i64 {
        assert!(
            Instant::now() < deadline,
            "the last window was never committed"
        );
        second
            .step(POLL, &mut NoObserver, |_| Ok::<(), ()>(()))
            .unwrap();
    }
}

/// A read_committed reader of `topic` from the beginning: the keys it sees within `wait`.
fn committed_keys(bootstrap: &str, topic: &str, wait: Duration) -> Vec<String> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "reader")
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        list.add_partition_offset(topic, partition, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).unwrap();
    let mut keys = Vec::new();
    let until = Instant::now() + wait;
    while Instant::now() < until {
        if let Some(Ok(message)) = consumer.poll(POLL) {
            keys.push(String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned());
        }
    }
    keys
}

/// Runs consume-transform-produce from `in` to `out` until `RECORDS` records were polled;
/// commits at the end only if `commit`.
fn transform(ferry: &Ferry, policy: CommitPolicy, commit: bool) -> usize {
    let settings = settings(ferry, "g-eos").transactional_id("t-eos");
    let mut loop_ = Transactional::new(&settings).unwrap().commit_policy(policy);
    loop_.subscribe(&["in"]).unwrap();
    let (mut polled, mut commits) = (0, 0);
    let deadline = Instant::now() + TIMEOUT;
    while polled < RECORDS {
        assert!(Instant::now() < deadline, "polled {polled} of {RECORDS}");
        let step = loop_
            .step(POLL, |record| {
                Ok::<_, ()>(vec![Output {
                    topic: "out".into(),
                    partition: Some(record.partition),
                    key: record.key.clone().unwrap_or_default(),
                    payload: b"out".to_vec(),
                }])
            })
            .unwrap();
        polled += step.polled;
        commits += usize::from(step.committed);
    }
    if commit {
        loop_.commit_open::<()>().unwrap();
        commits += 1;
    }
    commits
}

#[test]
fn exactly_once_keeps_one_transaction_open_for_its_window() {
    let (ferry, _dir) = start();
    let bootstrap = ferry.bootstrap();
    fill(&bootstrap, "in");
    // Control: a window that is never due; the loop is dropped with its transaction open. The
    // outputs stay invisible to read_committed readers and the offsets do not move.
    let commits = transform(&ferry, CommitPolicy::every(Duration::from_secs(600)), false);
    assert_eq!(commits, 0);
    assert_eq!(committed_total(&bootstrap, "g-eos", "in"), 0);
    // The successor (same transactional id) fences the dropped instance, aborting its open
    // transaction, reads everything again and commits every window of 50 ms.
    transform(&ferry, CommitPolicy::every(Duration::from_millis(50)), true);
    assert_eq!(committed_total(&bootstrap, "g-eos", "in"), RECORDS as i64);
    let mut keys = committed_keys(&bootstrap, "out", Duration::from_secs(3));
    keys.sort();
    let before = keys.len();
    keys.dedup();
    assert_eq!(
        before, RECORDS,
        "every output once, none of the aborted ones"
    );
    assert_eq!(keys.len(), RECORDS);
}
