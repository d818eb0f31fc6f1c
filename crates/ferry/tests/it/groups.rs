//! Consumer groups through librdkafka: disjoint assignments covering every partition, handover on
//! leave and on a killed member's session timeout (the killed member is `kcat`, a separate
//! librdkafka process, killed with SIGKILL), cooperative-sticky rebalancing that keeps unaffected
//! partitions, at-least-once and at-most-once resumption after a consumer crash, and committed
//! offsets surviving a broker `kill -9`, and many groups rebalancing at once.

use std::collections::{BTreeSet, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use crate::harness::{producer, Ferry};

const PARTITIONS: i32 = 6;
const SESSION_TIMEOUT_MS: &str = "6000";

/// Records every rebalance a consumer goes through.
#[derive(Clone, Default)]
struct Recorder {
    events: Arc<Mutex<Vec<(bool, BTreeSet<i32>)>>>,
}

impl ClientContext for Recorder {}

impl ConsumerContext for Recorder {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let (assigned, list) = match rebalance {
            Rebalance::Assign(list) => (true, list),
            Rebalance::Revoke(list) => (false, list),
            Rebalance::Error(_) => return,
        };
        let partitions = list.elements().iter().map(|e| e.partition()).collect();
        self.events.lock().unwrap().push((assigned, partitions));
    }
}

impl Recorder {
    fn revoked(&self) -> BTreeSet<i32> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|(assigned, _)| !assigned)
            .flat_map(|(_, p)| p.clone())
            .collect()
    }
}

type Member = BaseConsumer<Recorder>;

fn member(bootstrap: &str, group: &str, strategy: &str) -> (Member, Recorder) {
    let recorder = Recorder::default();
    let consumer: Member = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", SESSION_TIMEOUT_MS)
        .set("heartbeat.interval.ms", "500")
        .set("partition.assignment.strategy", strategy)
        .create_with_context(recorder.clone())
        .expect("create group member");
    (consumer, recorder)
}

fn assignment(consumer: &Member) -> BTreeSet<i32> {
    consumer
        .assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect()
}

/// Polls every member until `done` holds for their assignments; returns how long it took.
fn poll_until(
    members: &[&Member],
    what: &str,
    done: impl Fn(&[BTreeSet<i32>]) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        for member in members {
            if let Some(Err(error)) = member.poll(Duration::from_millis(20)) {
                panic!("{what}: consumer error {error}");
            }
        }
        let assignments: Vec<_> = members.iter().map(|m| assignment(m)).collect();
        if done(&assignments) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{what}: timed out with {assignments:?}"
        );
    }
}

/// Disjoint assignments that together cover `0..PARTITIONS`, each member having some.
fn covers_all(assignments: &[BTreeSet<i32>]) -> bool {
    let total: usize = assignments.iter().map(|a| a.len()).sum();
    let union: BTreeSet<i32> = assignments.iter().flatten().copied().collect();
    total == PARTITIONS as usize
        && union.len() == PARTITIONS as usize
        && assignments.iter().all(|a| !a.is_empty())
}

async fn create_topic(ferry: &Ferry, topic: &str, records: usize) {
    let producer = producer(&ferry.bootstrap(), &[("acks", "all")]);
    for i in 0..records {
        let key = format!("{i}");
        producer
            .send(
                FutureRecord::to(topic)
                    .partition((i % PARTITIONS as usize) as i32)
                    .key(&key)
                    .payload(&key),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("produce");
    }
}

fn start_ferry(dir: &std::path::Path) -> Ferry {
    Ferry::start(
        dir,
        &[
            &format!("num.partitions={PARTITIONS}"),
            "group.initial.rebalance.delay.ms=200",
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_share_partitions_and_hand_over_on_leave_and_on_kill() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = start_ferry(dir.path());
    let topic = "groups-eager";
    create_topic(&ferry, topic, 60).await;
    let bootstrap = ferry.bootstrap();

    let (a, _) = member(&bootstrap, "eager", "range");
    let (b, _) = member(&bootstrap, "eager", "range");
    let (c, _) = member(&bootstrap, "eager", "range");
    for m in [&a, &b, &c] {
        m.subscribe(&[topic]).unwrap();
    }
    let took = poll_until(&[&a, &b, &c], "three members", covers_all);
    eprintln!("rebalance: 3 members joined and were assigned 6 partitions in {took:?}");

    // A member that leaves hands its partitions over at once (well under the session timeout).
    drop(c);
    let took = poll_until(&[&a, &b], "after leave", covers_all);
    eprintln!("rebalance: handover after LeaveGroup took {took:?}");
    assert!(
        took < Duration::from_millis(5_000),
        "leave handover took {took:?}"
    );

    // A member killed without leaving: kcat in its own process, SIGKILLed once it owns partitions.
    let mut killed = kcat_member(&bootstrap, "eager", topic);
    poll_until(&[&a, &b], "kcat joined", |assignments| {
        assignments.iter().map(|a| a.len()).sum::<usize>() < PARTITIONS as usize
    });
    killed.kill().expect("kill -9 kcat");
    killed.wait().unwrap();
    let killed_at = Instant::now();
    poll_until(&[&a, &b], "after kill", covers_all);
    let took = killed_at.elapsed();
    eprintln!("rebalance: handover after a killed member took {took:?} (session timeout {SESSION_TIMEOUT_MS} ms)");
    assert!(
        took >= Duration::from_millis(3_000),
        "partitions moved before the session timeout: {took:?}"
    );
}

/// Group requests run at once, holding the broker shared beside produces and fetches: four
/// groups of three rebalance together, twice (all join, then one of each leaves), and every
/// member's JoinGroup and SyncGroup answer, many of them routed by another member's call on
/// another connection, must arrive. A lost one holds its group past the bounds: with a group
/// request's answer slot registered after its call instead of before (and 200 µs between), 3 of
/// 3 runs failed (two timed out, one handed over in 9.7 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_groups_rebalance_at_once() {
    const GROUPS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let ferry = start_ferry(dir.path());
    let topic = "groups-many";
    create_topic(&ferry, topic, 60).await;
    let bootstrap = ferry.bootstrap();

    let mut groups: Vec<Vec<Member>> = (0..GROUPS)
        .map(|g| {
            (0..3)
                .map(|_| member(&bootstrap, &format!("many-{g}"), "range").0)
                .collect()
        })
        .collect();
    for m in groups.iter().flatten() {
        m.subscribe(&[topic]).unwrap();
    }
    let all: Vec<&Member> = groups.iter().flatten().collect();
    let took = poll_until(&all, "twelve members in four groups", |assignments| {
        assignments.chunks(3).all(covers_all)
    });
    eprintln!("rebalance: {GROUPS} groups of 3 assigned in {took:?}");
    // The initial rebalance delay is 200 ms; a member whose answer is lost waits far longer.
    assert!(took < Duration::from_secs(10), "joining took {took:?}");

    // One member of each group leaves at once: four rebalances run together.
    for group in &mut groups {
        drop(group.pop());
    }
    let all: Vec<&Member> = groups.iter().flatten().collect();
    let took = poll_until(&all, "after four leaves", |assignments| {
        assignments.chunks(2).all(covers_all)
    });
    eprintln!("rebalance: {GROUPS} groups handed over after a leave in {took:?}");
    assert!(
        took < Duration::from_millis(5_000),
        "handover after LeaveGroup took {took:?}"
    );
}

fn kcat_member(bootstrap: &str, group: &str, topic: &str) -> Child {
    Command::new("kcat")
        .args([
            "-b",
            bootstrap,
            "-G",
            group,
            "-X",
            &format!("session.timeout.ms={SESSION_TIMEOUT_MS}"),
        ])
        .args(["-X", "partition.assignment.strategy=range", "-q", topic])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kcat (installed by scripts/install-deps)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_sticky_keeps_unaffected_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = start_ferry(dir.path());
    let topic = "groups-cooperative";
    create_topic(&ferry, topic, 6).await;
    let bootstrap = ferry.bootstrap();
    let (a, a_events) = member(&bootstrap, "coop", "cooperative-sticky");
    let (b, b_events) = member(&bootstrap, "coop", "cooperative-sticky");
    let (c, _) = member(&bootstrap, "coop", "cooperative-sticky");
    for m in [&a, &b, &c] {
        m.subscribe(&[topic]).unwrap();
    }
    poll_until(&[&a, &b, &c], "three cooperative members", covers_all);
    let (before_a, before_b) = (assignment(&a), assignment(&b));
    let (revoked_a, revoked_b) = (a_events.revoked(), b_events.revoked());
    drop(c);
    poll_until(&[&a, &b], "after cooperative leave", covers_all);
    assert!(
        assignment(&a).is_superset(&before_a),
        "a lost partitions: {before_a:?} -> {:?}",
        assignment(&a)
    );
    assert!(
        assignment(&b).is_superset(&before_b),
        "b lost partitions: {before_b:?} -> {:?}",
        assignment(&b)
    );
    assert_eq!(
        a_events.revoked(),
        revoked_a,
        "a had partitions revoked when c left"
    );
    assert_eq!(
        b_events.revoked(),
        revoked_b,
        "b had partitions revoked when c left"
    );
}

/// Consumes records of a single-partition topic with one group member, committing before or
/// after processing, and "crashes" (stops without committing again) once `crash_after` records
/// are processed: commit-after leaves the last 2 processed records uncommitted, commit-before has
/// committed the next record, which is never processed.
fn run_consumer(
    bootstrap: &str,
    topic: &str,
    group: &str,
    commit_before: bool,
    crash_after: Option<usize>,
) -> Vec<i64> {
    let (consumer, _) = member(bootstrap, group, "range");
    consumer.subscribe(&[topic]).unwrap();
    let mut processed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "consumer timed out after {} records",
            processed.len()
        );
        let Some(message) = consumer.poll(Duration::from_millis(100)) else {
            if crash_after.is_none()
                && !processed.is_empty()
                && consumer_caught_up(&consumer, topic)
            {
                return processed;
            }
            continue;
        };
        let message = message.expect("consume");
        let offset = message.offset();
        let mut position = TopicPartitionList::new();
        position
            .add_partition_offset(topic, 0, Offset::Offset(offset + 1))
            .unwrap();
        if commit_before {
            consumer
                .commit(&position, CommitMode::Sync)
                .expect("commit before processing");
        }
        if crash_after == Some(processed.len()) {
            // The crash: this record was taken but never processed; nothing more is committed.
            return processed;
        }
        processed.push(offset);
        if crash_after.is_some_and(|n| processed.len() > n.saturating_sub(2)) && !commit_before {
            // The last few records are processed but the crash comes before their commit.
            continue;
        }
        if !commit_before {
            consumer
                .commit(&position, CommitMode::Sync)
                .expect("commit after processing");
        }
    }
}

fn consumer_caught_up(consumer: &Member, topic: &str) -> bool {
    let Ok((_, high)) = consumer.fetch_watermarks(topic, 0, Duration::from_secs(5)) else {
        return false;
    };
    consumer
        .position()
        .ok()
        .and_then(|p| p.find_partition(topic, 0).map(|e| e.offset()))
        == Some(Offset::Offset(high))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_consumer_resumes_at_its_committed_offset() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &["num.partitions=1", "group.initial.rebalance.delay.ms=0"],
    );
    let bootstrap = ferry.bootstrap();
    let topic = "groups-resume";
    let producer = producer(&bootstrap, &[("acks", "all")]);
    for i in 0..100 {
        let key = format!("{i}");
        producer
            .send(
                FutureRecord::to(topic).partition(0).key(&key).payload(&key),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .unwrap();
    }
    // At-least-once: commit after processing; crash with 2 records processed but not committed.
    let first = run_consumer(&bootstrap, topic, "alo", false, Some(40));
    let second = run_consumer(&bootstrap, topic, "alo", false, None);
    let mut counts: HashMap<i64, usize> = HashMap::new();
    for offset in first.iter().chain(&second) {
        *counts.entry(*offset).or_default() += 1;
    }
    let lost = (0..100).filter(|o| !counts.contains_key(o)).count();
    let duplicated = counts.values().filter(|n| **n > 1).count();
    eprintln!("at-least-once after a consumer crash: lost {lost}, duplicated {duplicated}");
    assert_eq!(lost, 0, "at-least-once lost records");
    assert_eq!(
        duplicated, 2,
        "the records processed after the last commit are delivered again"
    );
    assert_eq!(
        second[0],
        first[first.len() - 2],
        "resumed exactly at the committed offset"
    );

    // At-most-once: commit before processing; the record in flight at the crash is lost.
    let first = run_consumer(&bootstrap, topic, "amo", true, Some(40));
    let second = run_consumer(&bootstrap, topic, "amo", true, None);
    let seen: BTreeSet<i64> = first.iter().chain(&second).copied().collect();
    let lost = 100 - seen.len();
    let duplicated = first.len() + second.len() - seen.len();
    eprintln!("at-most-once after a consumer crash: lost {lost}, duplicated {duplicated}");
    assert_eq!(lost, 1, "the record committed but not processed is lost");
    assert_eq!(duplicated, 0, "at-most-once never redelivers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_commits_survive_broker_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = start_ferry(dir.path());
    let topic = "groups-durable";
    create_topic(&ferry, topic, 60).await;
    let bootstrap = ferry.bootstrap();
    let (consumer, _) = member(&bootstrap, "durable", "range");
    consumer.subscribe(&[topic]).unwrap();
    poll_until(&[&consumer], "single member", |a| {
        a[0].len() == PARTITIONS as usize
    });
    let mut committed = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        let offset = 1 + partition as i64;
        committed
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
        let mut one = TopicPartitionList::new();
        one.add_partition_offset(topic, partition, Offset::Offset(offset))
            .unwrap();
        consumer
            .commit(&one, CommitMode::Sync)
            .expect("commit acknowledged");
    }
    ferry.kill9();
    drop(consumer);
    ferry.restart();
    let (fresh, _) = member(&ferry.bootstrap(), "durable", "range");
    let mut wanted = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        wanted.add_partition(topic, partition);
    }
    let found = fresh
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("fetch committed offsets");
    for partition in 0..PARTITIONS {
        let entry = found.find_partition(topic, partition).unwrap();
        assert_eq!(
            entry.offset(),
            Offset::Offset(1 + partition as i64),
            "partition {partition}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_describe_shows_members_offsets_and_lag() {
    let dir = tempfile::tempdir().unwrap();
    let ferry = start_ferry(dir.path());
    let topic = "groups-admin";
    create_topic(&ferry, topic, 60).await;
    let bootstrap = ferry.bootstrap();
    let (consumer, _) = member(&bootstrap, "admin-view", "range");
    consumer.subscribe(&[topic]).unwrap();
    poll_until(&[&consumer], "single member", |a| {
        a[0].len() == PARTITIONS as usize
    });
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(3))
        .unwrap();
    offsets
        .add_partition_offset(topic, 1, Offset::Offset(10))
        .unwrap();
    consumer.commit(&offsets, CommitMode::Sync).unwrap();

    let ferry_bin = env!("CARGO_BIN_EXE_ferry");
    let run = |args: &[&str]| {
        let output = Command::new(ferry_bin)
            .args(args)
            .output()
            .expect("run ferry admin command");
        assert!(
            output.status.success(),
            "ferry {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let listed = run(&["groups", "list", "--bootstrap", &bootstrap]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("admin-view") && l.contains("Stable")),
        "{listed}"
    );
    let described = run(&[
        "groups",
        "describe",
        "admin-view",
        "--bootstrap",
        &bootstrap,
    ]);
    assert!(described.contains("state Stable"), "{described}");
    assert!(
        described.contains(&format!("{topic}[0, 1, 2, 3, 4, 5]")),
        "assignment shown: {described}"
    );
    // 60 records over 6 partitions: 10 each; lag = 10 - committed.
    let row = |partition: i32| -> Vec<String> {
        described
            .lines()
            .find(|l| {
                l.starts_with(topic) && l.split_whitespace().nth(1) == Some(&partition.to_string())
            })
            .unwrap_or_else(|| panic!("no row for partition {partition}: {described}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row(0)[2..5], ["3", "10", "7"]);
    assert_eq!(row(1)[2..5], ["10", "10", "0"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_carry_on_after_a_broker_kill9() {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = start_ferry(dir.path());
    let topic = "groups-restart";
    create_topic(&ferry, topic, 6).await;
    let bootstrap = ferry.bootstrap();
    let (a, _) = member(&bootstrap, "restart", "range");
    let (b, _) = member(&bootstrap, "restart", "range");
    for m in [&a, &b] {
        m.subscribe(&[topic]).unwrap();
    }
    poll_until(&[&a, &b], "before the kill", covers_all);
    ferry.kill9();
    ferry.restart();
    // New records after the restart must reach the same members, who still cover every partition.
    create_topic(&ferry, topic, 60).await;
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen < 60 {
        assert!(
            Instant::now() < deadline,
            "only {seen} of 60 records consumed after the restart"
        );
        for m in [&a, &b] {
            // Offset 0 of each partition was written before the kill; the rest after.
            if let Some(Ok(message)) = m.poll(Duration::from_millis(50)) {
                if message.offset() >= 1 {
                    seen += 1;
                }
            }
        }
    }
    poll_until(&[&a, &b], "after the restart", covers_all);
}
