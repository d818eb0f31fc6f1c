//! Transactions through librdkafka: read_committed consumers never see aborted records while
//! read_uncommitted ones do (the control), a fenced zombie cannot commit, an oversize transaction
//! timeout is refused, a consumer fenced by a rebalance cannot commit offsets (KIP-447), and the
//! control of the exactly-once loop (`exactly_once.rs`): without transactions it duplicates; six
//! producers' transactions interleaved in one partition are each whole or absent.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::harness::Ferry;

const TIMEOUT: Duration = Duration::from_secs(30);

fn transactional_producer(bootstrap: &str, id: &str) -> ThreadedProducer<DefaultProducerContext> {
    let producer: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("linger.ms", "5")
        .create()
        .expect("create transactional producer");
    producer
        .init_transactions(TIMEOUT)
        .expect("init_transactions");
    producer
}

fn consumer(bootstrap: &str, group: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create consumer")
}

/// Reads a single-partition topic from the start until `idle` passes without a message.
fn read_all(consumer: &BaseConsumer, topic: &str, idle: Duration) -> Vec<(i64, String)> {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    let mut out = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < idle {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            let value = String::from_utf8(message.payload().unwrap_or_default().to_vec()).unwrap();
            out.push((message.offset(), value));
            last = Instant::now();
        }
    }
    out
}

fn send(producer: &ThreadedProducer<DefaultProducerContext>, topic: &str, value: &str) {
    producer
        .send(
            BaseRecord::<str, str>::to(topic)
                .partition(0)
                .payload(value),
        )
        .expect("enqueue");
}

#[test]
fn read_committed_never_sees_aborted_records() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &["num.partitions=1"]);
    let bootstrap = ferry.bootstrap();
    let producer = transactional_producer(&bootstrap, "txn-visibility");
    for round in 0..4 {
        producer.begin_transaction().unwrap();
        for i in 0..10 {
            send(&producer, "txn-visibility", &format!("r{round}-{i}"));
        }
        // Flushed first, so the aborted records really are in the log (librdkafka drops unsent
        // records on abort); the read_uncommitted control below proves they are.
        producer.flush(TIMEOUT).expect("flush");
        if round % 2 == 0 {
            producer.abort_transaction(TIMEOUT).expect("abort");
        } else {
            producer.commit_transaction(TIMEOUT).expect("commit");
        }
    }
    let committed = read_all(
        &consumer(&bootstrap, "rc", "read_committed"),
        "txn-visibility",
        Duration::from_secs(3),
    );
    let values: Vec<&str> = committed.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values.len(), 20, "read_committed: {values:?}");
    assert!(
        values
            .iter()
            .all(|v| v.starts_with("r1-") || v.starts_with("r3-")),
        "aborted data seen: {values:?}"
    );
    // The control: read_uncommitted sees the aborted rounds too.
    let everything = read_all(
        &consumer(&bootstrap, "ru", "read_uncommitted"),
        "txn-visibility",
        Duration::from_secs(3),
    );
    assert_eq!(everything.len(), 40, "read_uncommitted sees all 40 records");
}

/// Transaction requests run at once, holding the broker shared: six transactional producers
/// interleave their transactions in one partition, each committing every other one and aborting
/// the rest. read_committed must see exactly the committed transactions, each whole; the
/// control, read_uncommitted, sees every record.
#[test]
fn interleaved_transactions_of_six_producers_are_each_whole_or_absent() {
    const PRODUCERS: usize = 6;
    const TRANSACTIONS: usize = 12;
    const RECORDS: usize = 10;
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &["num.partitions=1"]);
    let bootstrap = ferry.bootstrap();
    let topic = "txn-interleaved";
    std::thread::scope(|scope| {
        for p in 0..PRODUCERS {
            let bootstrap = &bootstrap;
            scope.spawn(move || {
                let producer = transactional_producer(bootstrap, &format!("txn-interleaved-{p}"));
                for t in 0..TRANSACTIONS {
                    producer.begin_transaction().unwrap();
                    for i in 0..RECORDS {
                        send(&producer, topic, &format!("p{p}-t{t}-{i}"));
                    }
                    producer.flush(TIMEOUT).expect("flush");
                    if t % 2 == 1 {
                        producer.commit_transaction(TIMEOUT).expect("commit");
                    } else {
                        producer.abort_transaction(TIMEOUT).expect("abort");
                    }
                }
            });
        }
    });
    let committed = read_all(
        &consumer(&bootstrap, "rc", "read_committed"),
        topic,
        Duration::from_secs(3),
    );
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, value) in &committed {
        let txn = value.rsplit_once('-').expect("p-t-i").0.to_string();
        *seen.entry(txn).or_default() += 1;
    }
    let expected: std::collections::BTreeMap<String, usize> = (0..PRODUCERS)
        .flat_map(|p| {
            (1..TRANSACTIONS)
                .step_by(2)
                .map(move |t| (format!("p{p}-t{t}"), RECORDS))
        })
        .collect();
    assert_eq!(
        seen, expected,
        "read_committed: the committed transactions, each whole"
    );
    let everything = read_all(
        &consumer(&bootstrap, "ru", "read_uncommitted"),
        topic,
        Duration::from_secs(3),
    );
    assert_eq!(
        everything.len(),
        PRODUCERS * TRANSACTIONS * RECORDS,
        "read_uncommitted sees every record"
    );
}

#[test]
fn a_fenced_zombie_cannot_commit_and_oversize_timeouts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), &["num.partitions=1"]);
    let bootstrap = ferry.bootstrap();
    let zombie = transactional_producer(&bootstrap, "txn-zombie");
    zombie.begin_transaction().unwrap();
    send(&zombie, "txn-zombie", "from the zombie");
    zombie.flush(TIMEOUT).ok();
    let successor = transactional_producer(&bootstrap, "txn-zombie");
    let result = zombie.commit_transaction(TIMEOUT);
    assert!(result.is_err(), "the fenced producer committed");
    successor.begin_transaction().unwrap();
    send(&successor, "txn-zombie", "from the successor");
    successor
        .commit_transaction(TIMEOUT)
        .expect("successor commits");
    let seen = read_all(
        &consumer(&bootstrap, "z", "read_committed"),
        "txn-zombie",
        Duration::from_secs(3),
    );
    let values: Vec<&str> = seen.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values, vec!["from the successor"]);

    let oversize: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "txn-too-long")
        .set("transaction.timeout.ms", "900001")
        .create()
        .unwrap();
    let error = oversize
        .init_transactions(TIMEOUT)
        .expect_err("a timeout above the maximum is refused");
    assert!(format!("{error}").contains("timeout"), "{error}");
}

#[test]
fn after_a_broker_kill9_every_transaction_is_whole_or_absent() {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &["num.partitions=1"]);
    let bootstrap = ferry.bootstrap();
    let producer = transactional_producer(&bootstrap, "txn-crash");
    for round in 0..10 {
        producer.begin_transaction().unwrap();
        for i in 0..10 {
            send(&producer, "txn-crash", &format!("c{round}-{i}"));
        }
        producer
            .commit_transaction(TIMEOUT)
            .expect("commit acknowledged");
    }
    // A transaction open at the crash: its records are in the log, its end never came.
    producer.begin_transaction().unwrap();
    for i in 0..10 {
        send(&producer, "txn-crash", &format!("open-{i}"));
    }
    producer.flush(TIMEOUT).unwrap();
    ferry.kill9();
    drop(producer);
    ferry.restart();

    // A new instance of the same transactional id fences the old one and aborts its transaction.
    let successor = transactional_producer(&ferry.bootstrap(), "txn-crash");
    successor.begin_transaction().unwrap();
    send(&successor, "txn-crash", "after");
    successor
        .commit_transaction(TIMEOUT)
        .expect("successor commits");

    let committed = read_all(
        &consumer(&ferry.bootstrap(), "k1", "read_committed"),
        "txn-crash",
        Duration::from_secs(3),
    );
    let values: Vec<&str> = committed.iter().map(|(_, v)| v.as_str()).collect();
    assert_eq!(values.len(), 101, "100 acknowledged + 1 after: {values:?}");
    assert!(
        !values.iter().any(|v| v.starts_with("open-")),
        "the open transaction became visible"
    );
    assert_eq!(
        values.last(),
        Some(&"after"),
        "the last stable offset moved past the aborted transaction"
    );
    // The control: the open transaction's records did reach the log.
    let raw = read_all(
        &consumer(&ferry.bootstrap(), "k2", "read_uncommitted"),
        "txn-crash",
        Duration::from_secs(3),
    );
    assert_eq!(
        raw.iter().filter(|(_, v)| v.starts_with("open-")).count(),
        10
    );

    // `ferry transactions list` shows the id, its bumped epoch and its state.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["transactions", "list", "--bootstrap", &ferry.bootstrap()])
        .output()
        .expect("run ferry transactions list");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed = String::from_utf8(output.stdout).unwrap();
    let row = listed
        .lines()
        .find(|l| l.starts_with("txn-crash"))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(row.contains("CompleteCommit"), "{row}");
}

/// The control for the loop in `exactly_once.rs`: the same consume-transform-produce without
/// transactions (acks=all producer, offsets committed after the output is acknowledged), with a
/// crash between producing and committing, writes the crashed batches' output twice.
#[test]
fn consume_transform_produce_without_transactions_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &["num.partitions=1", "group.initial.rebalance.delay.ms=0"],
    );
    let bootstrap = ferry.bootstrap();
    let plain = |acks: &str| -> ThreadedProducer<DefaultProducerContext> {
        ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("acks", acks)
            .create()
            .unwrap()
    };
    let feeder = plain("all");
    for i in 0..300 {
        send(&feeder, "plain-in", &format!("{i}"));
    }
    feeder.flush(TIMEOUT).unwrap();
    let producer = plain("all");
    let source = consumer(&bootstrap, "plain-ctp", "read_uncommitted");
    source.subscribe(&["plain-in"]).unwrap();
    let (mut batch, mut moved, mut round) = (Vec::<(i64, String)>::new(), 0, 0);
    let deadline = Instant::now() + Duration::from_secs(120);
    while moved < 300 {
        assert!(Instant::now() < deadline, "moved only {moved}");
        if let Some(message) = source.poll(Duration::from_millis(100)) {
            let message = message.expect("consume input");
            batch.push((
                message.offset(),
                String::from_utf8(message.payload().unwrap().to_vec()).unwrap(),
            ));
        }
        if batch.len() < 50 && !(batch.len() > 0 && moved + batch.len() == 300) {
            continue;
        }
        for (_, value) in &batch {
            send(&producer, "plain-out", &format!("out-{value}"));
        }
        producer.flush(TIMEOUT).expect("output acknowledged");
        round += 1;
        if round % 3 == 2 {
            // The crash: output written, offsets never committed; the input comes again.
            source
                .seek("plain-in", 0, Offset::Offset(batch[0].0), TIMEOUT)
                .unwrap();
        } else {
            let mut offsets = TopicPartitionList::new();
            offsets
                .add_partition_offset("plain-in", 0, Offset::Offset(batch.last().unwrap().0 + 1))
                .unwrap();
            source
                .commit(&offsets, rdkafka::consumer::CommitMode::Sync)
                .unwrap();
            moved += batch.len();
        }
        batch.clear();
    }
    let out = read_all(
        &consumer(&bootstrap, "plain-verify", "read_committed"),
        "plain-out",
        Duration::from_secs(3),
    );
    let distinct: std::collections::HashSet<&str> = out.iter().map(|(_, v)| v.as_str()).collect();
    eprintln!(
        "without transactions: {} output records for 300 inputs ({} distinct)",
        out.len(),
        distinct.len()
    );
    assert_eq!(distinct.len(), 300, "nothing lost");
    assert!(out.len() > 300, "the control shows no duplicates");
}

/// KIP-447 with librdkafka: the group metadata a consumer held before a rebalance is stale, so
/// `send_offsets_to_transaction` with it fails with ILLEGAL_GENERATION (a zombie that lost its
/// partitions cannot commit offsets for them); the control, the same call with the metadata
/// after the rebalance, commits.
#[test]
fn a_consumer_fenced_by_a_rebalance_cannot_commit_transactional_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &["num.partitions=2", "group.initial.rebalance.delay.ms=0"],
    );
    let bootstrap = ferry.bootstrap();
    let input = "kip447-in";
    let feeder = transactional_producer(&bootstrap, "kip447-feeder");
    feeder.begin_transaction().unwrap();
    send(&feeder, input, "x");
    feeder.commit_transaction(TIMEOUT).unwrap();

    let first = consumer(&bootstrap, "kip447", "read_committed");
    first.subscribe(&[input]).unwrap();
    poll_until_assigned(&[&first], 2);
    let stale = first.group_metadata().expect("group metadata");
    let second = consumer(&bootstrap, "kip447", "read_committed");
    second.subscribe(&[input]).unwrap();
    // The rebalance: both rejoin under generation 2 and split the two partitions.
    poll_until_assigned(&[&first, &second], 1);
    let fresh = first.group_metadata().expect("group metadata");

    let producer = transactional_producer(&bootstrap, "kip447-ctp");
    let mut offsets = TopicPartitionList::new();
    let partition = first.assignment().unwrap().elements()[0].partition();
    offsets
        .add_partition_offset(input, partition, Offset::Offset(1))
        .unwrap();
    producer.begin_transaction().unwrap();
    let error = producer
        .send_offsets_to_transaction(&offsets, &stale, TIMEOUT)
        .expect_err("offsets of a stale generation were accepted");
    assert_eq!(
        error.rdkafka_error_code(),
        Some(RDKafkaErrorCode::IllegalGeneration),
        "{error}"
    );
    producer
        .abort_transaction(TIMEOUT)
        .expect("abort after fencing");

    producer.begin_transaction().unwrap();
    producer
        .send_offsets_to_transaction(&offsets, &fresh, TIMEOUT)
        .expect("the current generation commits");
    producer.commit_transaction(TIMEOUT).expect("commit");
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(input, partition);
    let committed = consumer(&bootstrap, "kip447", "read_committed")
        .committed_offsets(wanted, TIMEOUT)
        .unwrap();
    assert_eq!(
        committed.find_partition(input, partition).unwrap().offset(),
        Offset::Offset(1)
    );
}

/// Polls `consumers` until each holds exactly `partitions` assigned partitions.
fn poll_until_assigned(consumers: &[&BaseConsumer], partitions: usize) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let counts: Vec<usize> = consumers
            .iter()
            .map(|c| c.assignment().map_or(0, |a| a.count()))
            .collect();
        if counts.iter().all(|n| *n == partitions) {
            return;
        }
        assert!(Instant::now() < deadline, "assignments stuck at {counts:?}");
        for c in consumers {
            if let Some(message) = c.poll(Duration::from_millis(50)) {
                message.expect("poll");
            }
        }
    }
}
