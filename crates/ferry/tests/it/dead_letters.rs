//! Retries and dead letters (issue 17) with a real broker and a real consumer process,
//! `ferry retry-worker`: a `client::retry::RetryingConsumer` whose handler fails as the records
//! say (`poison…` always, `flaky:N…` until attempt N) and appends each success to a file.
//! Transient failures succeed after retries in both modes; permanent ones land in the dead-letter
//! topic once, with their headers; `kill -9` of the worker during its moves loses nothing;
//! `ferry dlq list|show|replay` puts the dead letters back once. Each has its control.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use client::retry::{headers as h, topics_needed, Mode, RetryPolicy};
use client::{Consumer, Guarantee, NoObserver, Record, Settings};
use rand::Rng;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use crate::harness::{kill_plan, producer, Ferry};

/// A group's first member is assigned its partitions at once, not after Kafka's 3 s wait for
/// more members.
const FAST_GROUPS: &[&str] = &["group.initial.rebalance.delay.ms=0"];
/// The worker's backoff base; its policy is `RetryPolicy::new(attempts, base, base * 8)`.
const BACKOFF_MS: u64 = 100;
/// How long the worker runs without a record before it exits.
const IDLE_EXIT_MS: u64 = 1500;
/// The longest a worker run to idle may take.
const WORKER_DEADLINE: Duration = Duration::from_secs(60);
/// How long reading a topic waits for one more record before it takes the topic as read.
const READ_IDLE: Duration = Duration::from_millis(1000);

/// One worker configuration.
struct Worker<'a> {
    bootstrap: &'a str,
    topic: &'a str,
    group: &'a str,
    guarantee: Guarantee,
    mode: Mode,
    attempts: u32,
    processed: PathBuf,
    extra: Vec<String>,
}

impl Worker<'_> {
    fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .arg("retry-worker")
            .args(["--bootstrap", self.bootstrap, "--topic", self.topic])
            .args(["--group", self.group, "--guarantee", self.guarantee.name()])
            .args(["--attempts", &self.attempts.to_string()])
            .args(["--backoff-ms", &BACKOFF_MS.to_string()])
            .arg("--processed")
            .arg(&self.processed)
            .args(&self.extra)
            .env("FERRY_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        if self.mode == Mode::Blocking {
            command.arg("--blocking");
        }
        command
    }

    fn spawn(&self) -> Child {
        self.command().spawn().expect("spawn ferry retry-worker")
    }

    /// Runs the worker until it has been idle for [`IDLE_EXIT_MS`].
    fn run_to_idle(&self) {
        let mut child = self
            .command()
            .args(["--idle-exit-ms", &IDLE_EXIT_MS.to_string()])
            .spawn()
            .expect("spawn ferry retry-worker");
        let deadline = Instant::now() + WORKER_DEADLINE;
        loop {
            if let Some(status) = child.try_wait().expect("poll the worker") {
                assert!(status.success(), "retry-worker exited with {status}");
                return;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                panic!("retry-worker still running after {WORKER_DEADLINE:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The successes the worker reported, in order: (key, attempt).
    fn processed(&self) -> Vec<(String, u32)> {
        self.processed_at()
            .into_iter()
            .map(|(key, attempt, _)| (key, attempt))
            .collect()
    }

    /// The successes the worker reported, in order: (key, attempt, wall-clock ms).
    fn processed_at(&self) -> Vec<(String, u32, i64)> {
        let text = std::fs::read_to_string(&self.processed).unwrap_or_default();
        text.lines()
            .map(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                let [key, attempt, at_ms] = fields[..] else {
                    panic!("KEY ATTEMPT MS: {line:?}");
                };
                let attempt = attempt.parse().expect("attempt");
                (key.to_string(), attempt, at_ms.parse().expect("ms"))
            })
            .collect()
    }
}

fn worker<'a>(
    ferry: &'a Ferry,
    bootstrap: &'a str,
    topic: &'a str,
    guarantee: Guarantee,
    mode: Mode,
    attempts: u32,
) -> Worker<'a> {
    Worker {
        bootstrap,
        topic,
        group: topic,
        guarantee,
        mode,
        attempts,
        processed: ferry.data_dir.join(format!("{topic}.processed")),
        extra: Vec::new(),
    }
}

/// The worker's policy, for the names of its topics.
fn policy(attempts: u32) -> RetryPolicy {
    let base = Duration::from_millis(BACKOFF_MS);
    RetryPolicy::new(attempts, base, base * 8)
}

/// Creates `topic`, its retry topics in `mode` and its dead-letter topic.
fn create_topics(bootstrap: &str, topic: &str, partitions: i32, mode: Mode, attempts: u32) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let names = topics_needed(topic, mode, &policy(attempts));
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|name| NewTopic::new(name, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results =
        futures::executor::block_on(admin.create_topics(&topics, &options)).expect("create topics");
    for result in results {
        result.expect("topic created");
    }
}

/// Produces (key, payload) pairs to `topic`, partition by `partition_of`, acks=all, in order.
fn produce(bootstrap: &str, topic: &str, records: &[(String, String)], partitions: i32) {
    let producer = producer(
        bootstrap,
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    let sends = records.iter().enumerate().map(|(i, (key, payload))| {
        producer.send(
            FutureRecord::to(topic)
                .key(key)
                .payload(payload)
                .partition(i as i32 % partitions),
            Duration::from_secs(10),
        )
    });
    for result in futures::executor::block_on(futures::future::join_all(sends)) {
        result.expect("produce");
    }
}

/// Every committed record of `topic` (all partitions, from the beginning), with headers.
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "dead-letters-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create reader");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut list = TopicPartitionList::new();
    for partition in metadata.topics()[0].partitions() {
        list.add_partition_offset(topic, partition.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&list).expect("assign");
    let mut records = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < READ_IDLE {
        let batch = client::consumer::poll_records(&consumer, 500, Duration::from_millis(100))
            .expect("poll");
        if !batch.is_empty() {
            last = Instant::now();
        }
        records.extend(batch);
    }
    records
}

fn key_of(record: &Record) -> String {
    String::from_utf8_lossy(record.key.as_deref().unwrap_or_default()).into_owned()
}

/// How many times each key occurs.
fn counts<'k>(keys: impl Iterator<Item = &'k str>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for key in keys {
        *counts.entry(key.to_string()).or_default() += 1;
    }
    counts
}

/// Twenty records `k00`..`k19`; `k05` fails until attempt 3, `k12` until attempt 2.
fn flaky_records() -> Vec<(String, String)> {
    (0..20)
        .map(|i| {
            let payload = match i {
                5 => "flaky:3|order".to_string(),
                12 => "flaky:2|order".to_string(),
                _ => "order".to_string(),
            };
            (format!("k{i:02}"), payload)
        })
        .collect()
}

fn keys(processed: &[(String, u32)]) -> Vec<&str> {
    processed.iter().map(|(k, _)| k.as_str()).collect()
}

fn attempt_of(processed: &[(String, u32)], key: &str) -> Option<u32> {
    processed.iter().find(|(k, _)| k == key).map(|(_, a)| *a)
}

#[test]
fn blocking_retries_succeed_in_place_and_keep_order() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), FAST_GROUPS);
    let bootstrap = ferry.bootstrap();
    for (topic, attempts) in [("dl-block", 3), ("dl-block-control", 1)] {
        create_topics(&bootstrap, topic, 1, Mode::Blocking, attempts);
        produce(&bootstrap, topic, &flaky_records(), 1);
    }

    let w = worker(
        &ferry,
        &bootstrap,
        "dl-block",
        Guarantee::AtLeastOnce,
        Mode::Blocking,
        3,
    );
    w.run_to_idle();
    let processed = w.processed();
    let expected: Vec<String> = flaky_records().into_iter().map(|(k, _)| k).collect();
    assert_eq!(keys(&processed), expected, "every record, once, in order");
    assert_eq!(attempt_of(&processed, "k05"), Some(3));
    assert_eq!(attempt_of(&processed, "k12"), Some(2));
    assert!(read_topic(&bootstrap, "dl-block.dlq").is_empty());

    // Control: one attempt, no retries. The flaky records fail for good and are dead-lettered,
    // so it was the retries that made them succeed.
    let control = worker(
        &ferry,
        &bootstrap,
        "dl-block-control",
        Guarantee::AtLeastOnce,
        Mode::Blocking,
        1,
    );
    control.run_to_idle();
    let processed = control.processed();
    assert_eq!(processed.len(), 18);
    assert_eq!(attempt_of(&processed, "k05"), None);
    let dead: Vec<String> = read_topic(&bootstrap, "dl-block-control.dlq")
        .iter()
        .map(key_of)
        .collect();
    assert_eq!(dead, ["k05", "k12"]);
}

#[test]
fn non_blocking_retries_move_on_and_come_back_when_due() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), FAST_GROUPS);
    let bootstrap = ferry.bootstrap();
    create_topics(&bootstrap, "dl-flow", 1, Mode::NonBlocking, 3);
    produce(&bootstrap, "dl-flow", &flaky_records(), 1);

    let w = worker(
        &ferry,
        &bootstrap,
        "dl-flow",
        Guarantee::AtLeastOnce,
        Mode::NonBlocking,
        3,
    );
    w.run_to_idle();
    let processed = w.processed();
    assert_eq!(processed.len(), 20, "{processed:?}");
    assert_eq!(attempt_of(&processed, "k05"), Some(3));
    assert_eq!(attempt_of(&processed, "k12"), Some(2));
    // The partition moved on: the records after the flaky ones came first.
    let position = |key: &str| keys(&processed).iter().position(|k| *k == key).unwrap();
    assert!(position("k05") > position("k19"), "{processed:?}");
    assert!(position("k12") > position("k19"), "{processed:?}");
    assert!(read_topic(&bootstrap, "dl-flow.dlq").is_empty());

    // The first retry topic holds both flaky records after their first failure, the second
    // k05 after its second; each with its origin, attempt and a due time after its failure.
    let first = read_topic(&bootstrap, "dl-flow.retry.100ms");
    let second = read_topic(&bootstrap, "dl-flow.retry.200ms");
    assert_eq!(first.iter().map(key_of).collect::<Vec<_>>(), ["k05", "k12"]);
    assert_eq!(second.iter().map(key_of).collect::<Vec<_>>(), ["k05"]);
    let num = |r: &Record, name| h::header_num::<i64>(r, name).unwrap();
    for (record, attempt) in [(&first[0], 1), (&first[1], 1), (&second[0], 2)] {
        assert_eq!(h::header_str(record, h::ORIGINAL_TOPIC), Some("dl-flow"));
        assert_eq!(num(record, h::ATTEMPT), attempt);
        assert!(num(record, h::DUE_MS) > num(record, h::FIRST_FAILURE_MS));
    }
    // A retried record is processed no earlier than the due time of the move that carried it.
    let processed_ms = |key: &str| {
        w.processed_at()
            .into_iter()
            .find(|(k, _, _)| k == key)
            .map(|(_, _, at_ms)| at_ms)
            .unwrap()
    };
    assert!(processed_ms("k05") >= num(&second[0], h::DUE_MS));
    assert!(processed_ms("k12") >= num(&first[1], h::DUE_MS));
    assert_eq!(num(&first[0], h::ORIGINAL_OFFSET), 5);
    assert_eq!(num(&second[0], h::ORIGINAL_OFFSET), 5);
    assert_eq!(
        num(&second[0], h::FIRST_FAILURE_MS),
        num(&first[0], h::FIRST_FAILURE_MS),
        "the first failure's time travels with the record"
    );
}

/// Twelve records with two poison ones, `p03` and `p08`.
fn poison_records() -> Vec<(String, String)> {
    (0..12)
        .map(|i| match i {
            3 | 8 => (format!("p{i:02}"), "poison|order".to_string()),
            _ => (format!("k{i:02}"), "order".to_string()),
        })
        .collect()
}

#[test]
fn permanent_failures_are_dead_lettered_once_with_their_headers() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), FAST_GROUPS);
    let bootstrap = ferry.bootstrap();
    let cases = [
        ("dl-perm-alo-block", Guarantee::AtLeastOnce, Mode::Blocking),
        ("dl-perm-alo", Guarantee::AtLeastOnce, Mode::NonBlocking),
        ("dl-perm-eos", Guarantee::ExactlyOnce, Mode::NonBlocking),
    ];
    for (topic, guarantee, mode) in cases {
        create_topics(&bootstrap, topic, 2, mode, 3);
        produce(&bootstrap, topic, &poison_records(), 2);
        let w = worker(&ferry, &bootstrap, topic, guarantee, mode, 3);
        let started_ms = now_ms();
        w.run_to_idle();
        assert_eq!(w.processed().len(), 10, "{topic}");
        let dead = read_topic(&bootstrap, &format!("{topic}.dlq"));
        let mut dead_keys: Vec<String> = dead.iter().map(key_of).collect();
        dead_keys.sort();
        assert_eq!(dead_keys, ["p03", "p08"], "{topic}: once each");
        for record in &dead {
            // Records alternate between the two partitions: p03 is offset 1 of partition 1,
            // p08 offset 4 of partition 0.
            let (partition, offset) = if key_of(record) == "p03" {
                (1, 1)
            } else {
                (0, 4)
            };
            assert_eq!(h::header_str(record, h::ORIGINAL_TOPIC), Some(topic));
            assert_eq!(
                h::header_num(record, h::ORIGINAL_PARTITION),
                Some(partition)
            );
            assert_eq!(h::header_num(record, h::ORIGINAL_OFFSET), Some(offset));
            assert_eq!(
                h::header_str(record, h::ERROR),
                Some("permanent: poison record")
            );
            // A permanent failure is not retried, in either mode.
            assert_eq!(h::header_num(record, h::ATTEMPT), Some(1));
            let first_failure: i64 = h::header_num(record, h::FIRST_FAILURE_MS).unwrap();
            assert!((started_ms..=now_ms()).contains(&first_failure));
            assert_eq!(h::header_str(record, h::DUE_MS), None);
            assert_eq!(record.payload.as_deref(), Some(&b"poison|order"[..]));
        }
    }

    // Control: without a retry policy, at-least-once's plain consumer meets the poison record
    // again and again and the records behind it in its partition are never processed.
    let mut consumer = Consumer::new(
        Guarantee::AtLeastOnce,
        &Settings::new(&bootstrap).group_id("dl-perm-control"),
    )
    .unwrap();
    consumer.subscribe(&["dl-perm-alo"]).unwrap();
    let mut handled = Vec::new();
    let mut failures = 0;
    // Partition 0's records before its poison one, `p08`. Partition 1's `k01` (before `p03`)
    // is not waited for: a failure seeks back every partition the rest of the batch held, and
    // when partition 0's records come first in each batch, partition 1 is never reached at all,
    // which is this consumer's failure too.
    let before = ["k00", "k02", "k04", "k06"];
    let deadline = Instant::now() + Duration::from_secs(20);
    while failures < 5 || !before.iter().all(|key| handled.iter().any(|k| k == key)) {
        assert!(
            Instant::now() < deadline,
            "control: {failures} failures, {handled:?}"
        );
        let step = consumer.step(Duration::from_millis(100), &mut NoObserver, |record| {
            if record
                .payload
                .as_deref()
                .unwrap_or_default()
                .starts_with(b"poison")
            {
                return Err("poison record");
            }
            handled.push(key_of(record));
            Ok(())
        });
        if step.is_err() {
            failures += 1;
        }
    }
    // The poison records came back again and again, and what stands behind them in their
    // partitions was never handled.
    for key in ["k05", "k07", "k09", "k10", "k11"] {
        assert!(
            !handled.iter().any(|k| k == key),
            "{key} blocked: {handled:?}"
        );
    }
}

/// `n` records over two partitions: `p…` poison (every 30th), `f…` failing once (every 10th),
/// `r…` plain.
fn mixed_records(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| match i {
            i if i % 30 == 15 => (format!("p{i:03}"), "poison|order".to_string()),
            i if i % 10 == 5 => (format!("f{i:03}"), "flaky:2|order".to_string()),
            i => (format!("r{i:03}"), "order".to_string()),
        })
        .collect()
}

/// What a run with consumer kills left.
struct Killed {
    /// Successes the handler should have reported and never did.
    lost: Vec<String>,
    /// How often each key was reported processed.
    processed: BTreeMap<String, usize>,
    /// How often each key is in the dead-letter topic (read_committed).
    dead: BTreeMap<String, usize>,
    /// How often each key is in the first retry topic (read_committed).
    retried: BTreeMap<String, usize>,
    /// Successes reported when each kill came.
    at_kills: Vec<usize>,
}

/// Runs the worker under `guarantee` over [`mixed_records`], kills it with `kill -9` at random
/// moments while it works (each after at least 20 more successes), restarts it, and finally
/// lets it finish.
fn run_with_consumer_kills(test: &str, guarantee: Guarantee, topic: &str) -> Killed {
    const RECORDS: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), FAST_GROUPS);
    let bootstrap = ferry.bootstrap();
    create_topics(&bootstrap, topic, 2, Mode::NonBlocking, 3);
    let records = mixed_records(RECORDS);
    produce(&bootstrap, topic, &records, 2);
    let mut w = worker(&ferry, &bootstrap, topic, guarantee, Mode::NonBlocking, 3);
    // A static member, so a successor takes over the killed one's partitions at once; 3 ms of
    // work per record, so a run lasts long enough to be killed in.
    w.extra = ["--instance-id", "w", "--handler-ms", "3"]
        .map(String::from)
        .to_vec();
    let (kills, mut rng) = kill_plan(test, 3, 10);
    let mut at_kills = Vec::new();
    for _ in 0..kills {
        let before = w.processed().len();
        let mut child = w.spawn();
        let deadline = Instant::now() + WORKER_DEADLINE;
        while w.processed().len() < before + 20 {
            assert!(Instant::now() < deadline, "the worker made no progress");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(0..50)));
        child.kill().expect("kill -9 the worker");
        child.wait().expect("reap the worker");
        at_kills.push(w.processed().len());
    }
    w.run_to_idle();
    let processed = counts(w.processed().iter().map(|(k, _)| k.as_str()));
    let lost = records
        .iter()
        .map(|(key, _)| key)
        .filter(|key| !key.starts_with('p') && !processed.contains_key(*key))
        .cloned()
        .collect();
    let read_keys = |topic: String| {
        let records = read_topic(&bootstrap, &topic);
        counts(
            records
                .iter()
                .map(key_of)
                .collect::<Vec<_>>()
                .iter()
                .map(String::as_str),
        )
    };
    Killed {
        lost,
        processed,
        dead: read_keys(format!("{topic}.dlq")),
        retried: read_keys(format!("{topic}.retry.100ms")),
        at_kills,
    }
}

/// The keys of [`mixed_records`] that start with `prefix`, each `times` times.
fn expected_keys(prefix: char, times: usize) -> BTreeMap<String, usize> {
    mixed_records(300)
        .into_iter()
        .filter(|(key, _)| key.starts_with(prefix))
        .map(|(key, _)| (key, times))
        .collect()
}

fn assert_kills_came_mid_run(killed: &Killed) {
    let successes = expected_keys('r', 1).len() + expected_keys('f', 1).len();
    assert!(!killed.at_kills.is_empty());
    assert!(
        killed.at_kills.iter().all(|n| *n < successes),
        "every kill came with work left: {:?} of {successes}",
        killed.at_kills
    );
}

#[test]
fn exactly_once_moves_survive_consumer_kills_without_loss_or_duplicates() {
    let killed = run_with_consumer_kills(
        "exactly_once_moves_survive_consumer_kills",
        Guarantee::ExactlyOnce,
        "dl-kill-eos",
    );
    assert_kills_came_mid_run(&killed);
    assert_eq!(killed.lost, Vec::<String>::new());
    // Each move and its offsets were one transaction: every poison record is dead-lettered
    // once, every flaky record went to the retry topic once, whatever the kills interrupted.
    assert_eq!(killed.dead, expected_keys('p', 1));
    assert_eq!(killed.retried, expected_keys('f', 1));
    assert!(killed.processed.keys().all(|k| !k.starts_with('p')));
}

#[test]
fn at_least_once_moves_survive_consumer_kills_without_loss() {
    let killed = run_with_consumer_kills(
        "at_least_once_moves_survive_consumer_kills",
        Guarantee::AtLeastOnce,
        "dl-kill-alo",
    );
    assert_kills_came_mid_run(&killed);
    assert_eq!(killed.lost, Vec::<String>::new());
    // Produced and acknowledged before the commit: every poison record is dead-lettered, a kill
    // between the ack and the commit may move one twice (the guarantee's duplicates).
    let dead: Vec<&String> = killed.dead.keys().collect();
    assert_eq!(dead, expected_keys('p', 1).keys().collect::<Vec<_>>());
    let duplicates: usize = killed.dead.values().map(|n| n - 1).sum::<usize>()
        + killed.processed.values().map(|n| n - 1).sum::<usize>();
    eprintln!("at-least-once under consumer kills: {duplicates} duplicates");
}

#[test]
fn control_at_most_once_without_retries_loses_records_to_consumer_kills() {
    let killed = run_with_consumer_kills(
        "control_at_most_once_without_retries",
        Guarantee::AtMostOnce,
        "dl-kill-amo",
    );
    assert_kills_came_mid_run(&killed);
    // The kills were real: at-most-once commits a batch before processing it, so a kill
    // loses the rest of the batch. And without a retry policy the poison and flaky records are
    // skipped: nothing is dead-lettered or retried.
    assert!(!killed.lost.is_empty(), "kills cost records");
    assert!(killed.lost.iter().any(|k| k.starts_with('r')));
    assert!(killed.dead.is_empty());
    assert!(killed.retried.is_empty());
}

/// Runs `ferry dlq ARGS…` and returns its standard output.
fn dlq(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("dlq")
        .args(args)
        .env("FERRY_LOG", "warn")
        .output()
        .expect("run ferry dlq");
    assert!(
        output.status.success(),
        "ferry dlq {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

#[test]
fn dlq_replay_after_the_fix_puts_dead_letters_back_once() {
    use client::dedup::{Applied, Idempotent, MemoryDedupStore, MessageId};
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(dir.path(), FAST_GROUPS);
    let bootstrap = ferry.bootstrap();
    let b = bootstrap.as_str();
    create_topics(b, "dl-replay", 1, Mode::NonBlocking, 2);
    produce(b, "dl-replay", &poison_records(), 1);
    let mut w = worker(
        &ferry,
        b,
        "dl-replay",
        Guarantee::AtLeastOnce,
        Mode::NonBlocking,
        2,
    );
    w.run_to_idle();
    assert_eq!(w.processed().len(), 10);

    let list = dlq(&["list", "--bootstrap", b, "dl-replay.dlq"]);
    assert!(
        list.contains("dl-replay                       2  permanent: poison record"),
        "{list}"
    );
    let show = dlq(&["show", "--bootstrap", b, "dl-replay.dlq"]);
    assert!(show.contains("dl-replay.dlq/0 @0 key=p03\n"), "{show}");
    assert!(show.contains("  ferry.original.offset: 8\n"), "{show}");
    // Control for the filter: no record has this error, so nothing is replayed.
    let filtered = dlq(&[
        "replay",
        "--bootstrap",
        b,
        "dl-replay.dlq",
        "--group",
        "filtered",
        "--error",
        "db down",
    ]);
    assert_eq!(
        filtered.trim(),
        "replayed 0 of 2 records read from dl-replay.dlq"
    );

    let replayed = dlq(&["replay", "--bootstrap", b, "dl-replay.dlq"]);
    assert_eq!(
        replayed.trim(),
        "replayed 2 of 2 records read from dl-replay.dlq"
    );
    // The position is committed with the replay: a second one has nothing left.
    let again = dlq(&["replay", "--bootstrap", b, "dl-replay.dlq"]);
    assert_eq!(
        again.trim(),
        "replayed 0 of 0 records read from dl-replay.dlq"
    );

    let original = read_topic(b, "dl-replay");
    assert_eq!(original.len(), 14);
    let back: Vec<(String, Option<&str>)> = original[12..]
        .iter()
        .map(|r| (key_of(r), h::header_str(r, h::REPLAYED)))
        .collect();
    assert_eq!(
        back,
        [
            ("p03".to_string(), Some("dl-replay.dlq/0/0")),
            ("p08".to_string(), Some("dl-replay.dlq/0/1"))
        ]
    );
    // After the fix the replayed records succeed: nothing is parked any more.
    w.extra = vec!["--fixed".into()];
    w.run_to_idle();
    let processed = w.processed();
    assert_eq!(keys(&processed[10..]), ["p03", "p08"]);
    assert_eq!(
        read_topic(b, "dl-replay.dlq").len(),
        2,
        "the dead letters stay, replayed"
    );

    // A replay under another group puts the records back a second time; the idempotent
    // consumer, keyed on the record key that moves and replays keep, applies them once.
    let twice = dlq(&[
        "replay",
        "--bootstrap",
        b,
        "dl-replay.dlq",
        "--group",
        "again",
    ]);
    assert_eq!(
        twice.trim(),
        "replayed 2 of 2 records read from dl-replay.dlq"
    );
    // The effect fails for the poison record in its first life (before the fix) and succeeds
    // for the replayed copies.
    let mut idempotent = Idempotent::new(MemoryDedupStore::default(), MessageId::Key);
    let mut outcomes: BTreeMap<String, Vec<Result<Applied, &str>>> = BTreeMap::new();
    for record in read_topic(b, "dl-replay") {
        let applied = idempotent.apply(&record, |r| {
            let poison = r
                .payload
                .as_deref()
                .unwrap_or_default()
                .starts_with(b"poison");
            match poison && h::header_str(r, h::REPLAYED).is_none() {
                true => Err("poison record"),
                false => Ok(()),
            }
        });
        outcomes.entry(key_of(&record)).or_default().push(applied);
    }
    assert_eq!(outcomes.len(), 12);
    assert_eq!(outcomes["k00"], [Ok(Applied::Applied)]);
    for key in ["p03", "p08"] {
        assert_eq!(
            outcomes[key],
            [
                Err("poison record"),
                Ok(Applied::Applied),
                Ok(Applied::Duplicate)
            ]
        );
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}
