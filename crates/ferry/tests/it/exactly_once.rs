//! Exactly-once consume-transform-produce through librdkafka under random aborts, producer kills
//! and broker kills (`kill -9` and restart inside the loop): every input record appears in the
//! committed output exactly once, in order, and the group's committed offset is the input's end.
//!
//! The default run moves 5,000 records through 2 broker kills; `FERRY_SLOW=1` moves 50,000
//! through 10. `FERRY_TEST_SEED` replays one plan of endings (the kills' timing still varies).

use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::harness::Ferry;

type TxnProducer = ThreadedProducer<DefaultProducerContext>;

/// One librdkafka call; a broker kill makes calls wait for the restart, never this long.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
const INPUT: &str = "eos-in";
const OUTPUT: &str = "eos-out";
const GROUP: &str = "eos";
const TRANSACTIONAL_ID: &str = "eos-ctp";

/// The size of one run.
struct Size {
    records: i64,
    /// Input records per transaction.
    batch: usize,
    broker_kills: usize,
    /// A broker kill ends every this many transactions until all have happened.
    kill_every: usize,
    deadline: Duration,
}

const SHORT: Size = Size {
    records: 5_000,
    batch: 100,
    broker_kills: 2,
    kill_every: 9,
    deadline: Duration::from_secs(120),
};

const SLOW: Size = Size {
    records: 50_000,
    batch: 500,
    broker_kills: 10,
    kill_every: 9,
    deadline: Duration::from_secs(900),
};

/// Where in a transaction the broker is killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillPoint {
    AfterRecords,
    AfterOffsets,
    /// While `commit_transaction` is in flight, after a random 0–30 ms.
    DuringCommit,
    AfterCommit,
}

/// How the loop ends one transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ending {
    Commit,
    Abort,
    /// The producer is dropped inside its transaction, records in the log, and a new instance
    /// with the same transactional id takes over (fencing it and aborting its transaction).
    ProducerKill,
    BrokerKill(KillPoint),
}

/// The seeded plan of endings: broker kills at fixed steps, otherwise one transaction in five
/// aborted, one in ten with its producer killed, and at least one of each.
struct Plan {
    rng: StdRng,
    kills_left: usize,
    kill_every: usize,
}

impl Plan {
    fn new(seed: u64, size: &Size) -> Plan {
        Plan {
            rng: StdRng::seed_from_u64(seed),
            kills_left: size.broker_kills,
            kill_every: size.kill_every,
        }
    }

    fn ending(&mut self, attempt: usize) -> Ending {
        // One abort and one producer kill early on, whatever the seed.
        match attempt {
            1 => return Ending::Abort,
            3 => return Ending::ProducerKill,
            _ => {}
        }
        if self.kills_left > 0 && attempt % self.kill_every == self.kill_every - 1 {
            self.kills_left -= 1;
            let point = [
                KillPoint::AfterRecords,
                KillPoint::AfterOffsets,
                KillPoint::DuringCommit,
                KillPoint::AfterCommit,
            ][self.rng.gen_range(0..4)];
            return Ending::BrokerKill(point);
        }
        match self.rng.gen_range(0..10) {
            0 | 1 => Ending::Abort,
            2 => Ending::ProducerKill,
            _ => Ending::Commit,
        }
    }

    fn kill_delay(&mut self) -> Duration {
        Duration::from_millis(self.rng.gen_range(0..30))
    }
}

/// What became of one transaction, as far as the loop knows.
enum Attempt {
    Committed,
    Aborted,
    /// The producer died or a call failed: the outcome is the group's committed offset.
    Unknown,
}

#[derive(Debug, Default)]
struct Tally {
    commits: usize,
    aborts: usize,
    producer_kills: usize,
    broker_kills: Vec<KillPoint>,
    /// Failed librdkafka calls recovered from (a new producer, rewound to the group's offset).
    recoveries: usize,
    consumer_errors: usize,
}

#[test]
fn consume_transform_produce_is_exactly_once_through_producer_and_broker_kills() {
    let size = if std::env::var("FERRY_SLOW").as_deref() == Ok("1") {
        SLOW
    } else {
        SHORT
    };
    let seed = std::env::var("FERRY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("exactly-once loop: seed {seed}, {} records", size.records);
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(dir.path(), &["num.partitions=1"]);
    let bootstrap = ferry.bootstrap();
    feed(&bootstrap, size.records);

    let started = Instant::now();
    let tally = run_loop(&mut ferry, &size, Plan::new(seed, &size));
    eprintln!(
        "exactly-once loop: {tally:?} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(tally.broker_kills.len(), size.broker_kills, "seed {seed}");
    assert!(tally.aborts > 0 && tally.producer_kills > 0, "seed {seed}");

    let committed = read_output(&bootstrap, "read_committed");
    let expected: Vec<String> = (0..size.records).map(|i| format!("out-{i}")).collect();
    let mut sorted = committed.clone();
    let key = |v: &String| v[4..].parse::<i64>().expect("output value out-<n>");
    sorted.sort_by_key(key);
    sorted.dedup();
    let missing = expected
        .iter()
        .filter(|v| sorted.binary_search_by_key(&key(v), |s| key(s)).is_err())
        .count();
    let duplicated = committed.len() - sorted.len();
    assert_eq!((missing, duplicated), (0, 0), "seed {seed}");
    assert!(committed == expected, "output out of order, seed {seed}");
    // The control: the aborted and orphaned transactions' records are in the log.
    let everything = read_output(&bootstrap, "read_uncommitted");
    eprintln!(
        "exactly-once loop: {} committed output records, {} in the log",
        committed.len(),
        everything.len()
    );
    assert!(everything.len() > committed.len(), "nothing was aborted");
    assert_eq!(
        group_offset(&consumer(&bootstrap, "read_committed")),
        size.records
    );
}

fn run_loop(ferry: &mut Ferry, size: &Size, mut plan: Plan) -> Tally {
    let bootstrap = ferry.bootstrap();
    let deadline = Instant::now() + size.deadline;
    let mut tally = Tally::default();
    let source = consumer(&bootstrap, "read_committed");
    let mut producer = new_producer(&bootstrap, deadline);
    let mut committed = 0i64;
    rewind(&source, committed);
    let mut batch: Vec<(i64, String)> = Vec::new();
    let mut attempt = 0;
    while committed < size.records {
        assert!(Instant::now() < deadline, "moved {committed}: {tally:?}");
        let next = committed + batch.len() as i64;
        if batch.len() < size.batch && next < size.records {
            match source.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    // The position is the loop's: a record out of place is a bug in the test.
                    assert_eq!(message.offset(), next, "input out of place");
                    let value = message.payload().expect("input value");
                    batch.push((next, String::from_utf8(value.to_vec()).unwrap()));
                }
                // A dead broker: librdkafka reports it and reconnects.
                Some(Err(_)) => tally.consumer_errors += 1,
                None => {}
            }
            continue;
        }
        let ending = plan.ending(attempt);
        attempt += 1;
        let offsets = (committed, next);
        let outcome = transact(
            ferry, &producer, &source, &batch, offsets, ending, &mut plan,
        );
        match ending {
            Ending::ProducerKill => tally.producer_kills += 1,
            Ending::BrokerKill(point) => tally.broker_kills.push(point),
            Ending::Commit | Ending::Abort => {}
        }
        batch.clear();
        match outcome {
            Ok(Attempt::Committed) => {
                tally.commits += 1;
                committed = next;
            }
            Ok(Attempt::Aborted) => {
                tally.aborts += 1;
                rewind(&source, committed);
            }
            Ok(Attempt::Unknown) | Err(_) => {
                if let Err(error) = &outcome {
                    eprintln!("exactly-once loop: {ending:?}: {error}; recovering");
                    tally.recoveries += 1;
                }
                // The new instance fences the old one and finishes its transaction first, so
                // the group's offset is settled when it is read.
                drop(std::mem::replace(
                    &mut producer,
                    new_producer(&bootstrap, deadline),
                ));
                committed = group_offset(&source);
                rewind(&source, committed);
            }
        }
    }
    tally
}

/// One transaction over `batch` (input offsets `from..to`), ended as `ending` says.
fn transact(
    ferry: &mut Ferry,
    producer: &TxnProducer,
    source: &BaseConsumer,
    batch: &[(i64, String)],
    (from, to): (i64, i64),
    ending: Ending,
    plan: &mut Plan,
) -> Result<Attempt, KafkaError> {
    assert_eq!(batch.first().map(|b| b.0), Some(from));
    let kill_at = |point: KillPoint, ferry: &mut Ferry| {
        if ending == Ending::BrokerKill(point) {
            ferry.kill9();
            ferry.restart();
        }
    };
    producer.begin_transaction()?;
    for (_, value) in batch {
        producer
            .send(
                BaseRecord::<str, str>::to(OUTPUT)
                    .partition(0)
                    .payload(&format!("out-{value}")),
            )
            .map_err(|(error, _)| error)?;
    }
    // Flushed, so an aborted or orphaned transaction's records really are in the log.
    producer.flush(CALL_TIMEOUT)?;
    kill_at(KillPoint::AfterRecords, ferry);
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(INPUT, 0, Offset::Offset(to))
        .unwrap();
    let metadata = source.group_metadata().expect("group metadata");
    producer.send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT)?;
    kill_at(KillPoint::AfterOffsets, ferry);
    match ending {
        Ending::Abort => {
            producer.abort_transaction(CALL_TIMEOUT)?;
            return Ok(Attempt::Aborted);
        }
        Ending::ProducerKill => return Ok(Attempt::Unknown),
        Ending::BrokerKill(KillPoint::DuringCommit) => {
            let delay = plan.kill_delay();
            return std::thread::scope(|s| {
                let commit = s.spawn(|| producer.commit_transaction(CALL_TIMEOUT));
                std::thread::sleep(delay);
                ferry.kill9();
                ferry.restart();
                commit.join().expect("commit thread")?;
                Ok(Attempt::Committed)
            });
        }
        Ending::Commit | Ending::BrokerKill(_) => {}
    }
    producer.commit_transaction(CALL_TIMEOUT)?;
    kill_at(KillPoint::AfterCommit, ferry);
    Ok(Attempt::Committed)
}

/// A transactional producer that has completed `init_transactions`; retried while the broker
/// comes back (a failed instance cannot be reused).
fn new_producer(bootstrap: &str, deadline: Instant) -> TxnProducer {
    loop {
        let producer: TxnProducer = ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("transactional.id", TRANSACTIONAL_ID)
            .set("linger.ms", "5")
            .set("reconnect.backoff.max.ms", "200")
            // Newer librdkafka re-bootstraps when every broker is down (a broker kill here) and
            // may leave send_offsets_to_transaction waiting forever for the decommissioned group
            // coordinator (confluentinc/librdkafka#5511); seen with 2.16 from Python.
            .set("metadata.recovery.strategy", "none")
            .create()
            .expect("create transactional producer");
        match producer.init_transactions(CALL_TIMEOUT) {
            Ok(()) => return producer,
            Err(error) => {
                assert!(Instant::now() < deadline, "init_transactions: {error}");
                eprintln!("exactly-once loop: init_transactions: {error}; retrying");
            }
        }
    }
}

fn consumer(bootstrap: &str, isolation: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", GROUP)
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("reconnect.backoff.max.ms", "200")
        .create()
        .expect("create consumer")
}

/// Assigns the input at `offset`: the loop owns the position (no subscription, so no rebalance
/// moves it behind the loop's back).
fn rewind(source: &BaseConsumer, offset: i64) {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(INPUT, 0, Offset::Offset(offset))
        .unwrap();
    source.assign(&assignment).expect("assign the input");
}

/// The group's committed input offset (librdkafka asks with require_stable under
/// read_committed, and retries while a transaction's offsets are pending).
fn group_offset(consumer: &BaseConsumer) -> i64 {
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(INPUT, 0);
    let committed = consumer
        .committed_offsets(wanted, CALL_TIMEOUT)
        .expect("committed offsets");
    match committed.find_partition(INPUT, 0).unwrap().offset() {
        Offset::Offset(offset) => offset,
        Offset::Invalid => 0,
        other => panic!("committed offset {other:?}"),
    }
}

fn feed(bootstrap: &str, records: i64) {
    let feeder: ThreadedProducer<DefaultProducerContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("enable.idempotence", "true")
        .set("linger.ms", "5")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .unwrap();
    for i in 0..records {
        feeder
            .send(
                BaseRecord::<str, str>::to(INPUT)
                    .partition(0)
                    .payload(&i.to_string()),
            )
            .expect("enqueue input");
    }
    feeder
        .flush(Duration::from_secs(60))
        .expect("input written");
}

/// The output's values from the start until 3 s pass without a record.
fn read_output(bootstrap: &str, isolation: &str) -> Vec<String> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("eos-verify-{isolation}"))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(OUTPUT, 0, Offset::Beginning)
        .unwrap();
    reader.assign(&assignment).unwrap();
    let mut values = Vec::new();
    let mut last = Instant::now();
    while last.elapsed() < Duration::from_secs(3) {
        if let Some(message) = reader.poll(Duration::from_millis(100)) {
            let message = message.expect("read the output");
            values.push(String::from_utf8(message.payload().unwrap().to_vec()).unwrap());
            last = Instant::now();
        }
    }
    values
}
