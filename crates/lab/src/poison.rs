//! The `poison-messages` profile: records whose processing fails. 1% fail transiently (they
//! succeed at attempt [`TRANSIENT_SUCCEEDS_AT`]), 0.1% always fail. Each row is a guarantee with
//! a way of retrying: at-most-once has none (a failed record is skipped, so lost), the others run
//! the client's `RetryingConsumer` blocking (retry in place) or non-blocking (retry topics), with
//! the dead-letter topic for what keeps failing. The table counts lost, duplicated and parked
//! records (in the dead-letter topic: counted, not lost) and the latency each way of retrying
//! costs the records around the failures; then the handler is fixed, the dead-letter topic
//! replayed (`client::retry::replay`), and the counts taken again: parked goes to 0.
//!
//! Not a fault of the network or of a process, so it runs outside the proxy's profiles and
//! their histories: the counts are pure functions ([`tally`]) of the ids sent, processed and
//! parked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::retry::replay::{read_all, replay, Filter};
use client::retry::{topics_needed, Failure, Mode, RetryPolicy, RetryingConsumer};
use client::{Consumer, Guarantee, NoObserver, Producer, Record};
use rand::SeedableRng;
use rdkafka::consumer::Consumer as _;
use serde::{Deserialize, Serialize};

use crate::check::{latency_of, Latency};
use crate::profile::Profile;
use crate::runner::settings::{client_settings, with, CONSUMER_SETTINGS, PRODUCER_SETTINGS};
use crate::target::Target;
use crate::workload::Workload;

/// Records of a `--quick` run.
pub const RECORDS_QUICK: u64 = 2_000;
/// Records of a thorough run.
pub const RECORDS_THOROUGH: u64 = 20_000;
/// Transient failures succeed at this attempt (two failures first).
pub const TRANSIENT_SUCCEEDS_AT: u32 = 3;
/// Attempts the retry policy allows: enough for the transient records, not for the permanent.
const ATTEMPTS: u32 = 4;
/// The retry policy's first backoff; it doubles up to eight times this.
const BACKOFF_BASE: Duration = Duration::from_millis(50);
/// One in this many records fails transiently (1%).
const TRANSIENT_ONE_IN: u64 = 100;
/// One in this many records always fails (0.1%).
const PERMANENT_ONE_IN: u64 = 1000;
/// How long a run may take to process or park every record.
const RUN_DEADLINE: Duration = Duration::from_secs(120);
/// How long a consumer waits for its partitions before the records are sent.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the run after the replay goes on without a record before it stops.
const AFTER_REPLAY_IDLE: Duration = Duration::from_secs(3);
const POLL_TIMEOUT: Duration = Duration::from_millis(50);

/// A row of the poison-messages table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PoisonRow {
    /// Commit, then process; a failed record is skipped.
    AtMostOnce,
    AtLeastOnceBlocking,
    AtLeastOnceNonBlocking,
    ExactlyOnceBlocking,
    ExactlyOnceNonBlocking,
}

impl PoisonRow {
    pub const ALL: [PoisonRow; 5] = [
        PoisonRow::AtMostOnce,
        PoisonRow::AtLeastOnceBlocking,
        PoisonRow::AtLeastOnceNonBlocking,
        PoisonRow::ExactlyOnceBlocking,
        PoisonRow::ExactlyOnceNonBlocking,
    ];

    pub fn guarantee(self) -> Guarantee {
        match self {
            PoisonRow::AtMostOnce => Guarantee::AtMostOnce,
            PoisonRow::AtLeastOnceBlocking | PoisonRow::AtLeastOnceNonBlocking => {
                Guarantee::AtLeastOnce
            }
            PoisonRow::ExactlyOnceBlocking | PoisonRow::ExactlyOnceNonBlocking => {
                Guarantee::ExactlyOnce
            }
        }
    }

    /// How the row retries; `None`: it does not.
    pub fn mode(self) -> Option<Mode> {
        match self {
            PoisonRow::AtMostOnce => None,
            PoisonRow::AtLeastOnceBlocking | PoisonRow::ExactlyOnceBlocking => Some(Mode::Blocking),
            PoisonRow::AtLeastOnceNonBlocking | PoisonRow::ExactlyOnceNonBlocking => {
                Some(Mode::NonBlocking)
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            PoisonRow::AtMostOnce => "at-most-once",
            PoisonRow::AtLeastOnceBlocking => "at-least-once-blocking",
            PoisonRow::AtLeastOnceNonBlocking => "at-least-once-non-blocking",
            PoisonRow::ExactlyOnceBlocking => "exactly-once-blocking",
            PoisonRow::ExactlyOnceNonBlocking => "exactly-once-non-blocking",
        }
    }

    fn retries(self) -> &'static str {
        match self.mode() {
            None => "none: skip",
            Some(Mode::Blocking) => "blocking",
            Some(Mode::NonBlocking) => "retry topics",
        }
    }
}

/// What happens to a record's processing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    Succeeds,
    /// Fails until attempt [`TRANSIENT_SUCCEEDS_AT`].
    Transient,
    /// Fails at every attempt (until the fix).
    Permanent,
}

/// Which of `records` ids fail, and how: exactly one in [`TRANSIENT_ONE_IN`] transiently and
/// one in [`PERMANENT_ONE_IN`] permanently, drawn from `seed`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fates {
    transient: BTreeSet<u64>,
    permanent: BTreeSet<u64>,
}

impl Fates {
    pub fn draw(seed: u64, records: u64) -> Fates {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let transient = (records / TRANSIENT_ONE_IN) as usize;
        let permanent = (records / PERMANENT_ONE_IN).max(1) as usize;
        let picked = rand::seq::index::sample(&mut rng, records as usize, transient + permanent);
        let mut ids = picked.into_iter().map(|i| i as u64);
        Fates {
            permanent: ids.by_ref().take(permanent).collect(),
            transient: ids.collect(),
        }
    }

    pub fn of(&self, id: u64) -> Fate {
        if self.permanent.contains(&id) {
            Fate::Permanent
        } else if self.transient.contains(&id) {
            Fate::Transient
        } else {
            Fate::Succeeds
        }
    }

    /// The handler's verdict on record `id` at `attempt`; `fixed`: the permanent cause is
    /// fixed.
    pub fn verdict(&self, id: u64, attempt: u32, fixed: bool) -> Result<(), Failure> {
        match self.of(id) {
            Fate::Permanent if !fixed => Err(Failure::permanent("no such customer")),
            Fate::Transient if attempt < TRANSIENT_SUCCEEDS_AT => {
                Err(Failure::transient("mail server busy"))
            }
            _ => Ok(()),
        }
    }
}

/// Lost, duplicated and parked records of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Neither processed nor parked.
    pub lost: u64,
    /// Processings beyond each record's first.
    pub duplicated: u64,
    /// In the dead-letter topic and not processed.
    pub parked: u64,
}

/// The tally of `records` ids sent, given the ids processed (each time) and the ids found in
/// the dead-letter topic.
pub fn tally(records: u64, processed: &[u64], dead_lettered: &[u64]) -> Tally {
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for id in processed {
        *counts.entry(*id).or_default() += 1;
    }
    let parked: BTreeSet<u64> = dead_lettered
        .iter()
        .filter(|id| !counts.contains_key(id))
        .copied()
        .collect();
    Tally {
        lost: (0..records)
            .filter(|id| !counts.contains_key(id) && !parked.contains(id))
            .count() as u64,
        duplicated: counts.values().map(|n| n - 1).sum(),
        parked: parked.len() as u64,
    }
}

/// One row's results.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoisonRowResult {
    pub row: PoisonRow,
    pub guarantee: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tally: Option<Tally>,
    /// Send to first successful processing, every record that was processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// From the first send until every record was processed or parked.
    pub elapsed_ms: u64,
    /// After the fix and a replay of the dead-letter topic (rows that have one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_replay: Option<Tally>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The poison-messages table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PoisonResults {
    pub records: u64,
    pub partitions: i32,
    pub transient: u64,
    pub permanent: u64,
    pub rows: Vec<PoisonRowResult>,
}

/// Runs every row against `target`: `records` records over `partitions` partitions.
pub fn run(target: &Target, seed: u64, records: u64, partitions: i32) -> PoisonResults {
    let fates = Fates::draw(seed, records);
    let rows = PoisonRow::ALL
        .iter()
        .map(|&row| {
            let topic = format!("lab-poison-{}-{seed}", row.name());
            match run_row(target, row, &topic, &fates, records, partitions, seed) {
                Ok(result) => result,
                Err(error) => PoisonRowResult {
                    row,
                    guarantee: row.guarantee().name().into(),
                    tally: None,
                    latency: None,
                    elapsed_ms: 0,
                    after_replay: None,
                    error: Some(format!("{error:#}")),
                },
            }
        })
        .collect();
    PoisonResults {
        records,
        partitions,
        transient: fates.transient.len() as u64,
        permanent: fates.permanent.len() as u64,
        rows,
    }
}

/// What the consumer side of a run saw.
#[derive(Default)]
struct Seen {
    /// Each successful processing: (id, when).
    processed: Vec<(u64, Instant)>,
    /// Records the handler gave up on: skipped (at-most-once) or dead-lettered.
    given_up: u64,
}

fn run_row(
    target: &Target,
    row: PoisonRow,
    topic: &str,
    fates: &Fates,
    records: u64,
    partitions: i32,
    seed: u64,
) -> Result<PoisonRowResult> {
    let policy = RetryPolicy::new(ATTEMPTS, BACKOFF_BASE, BACKOFF_BASE * 8).jitter(0.2);
    let topics = match row.mode() {
        Some(mode) => topics_needed(topic, mode, &policy),
        None => vec![topic.to_string()],
    };
    for name in &topics {
        target.create_topic(name, partitions)?;
    }
    let group = format!("{topic}-group");
    let settings = with(
        client_settings(target, Profile::PoisonMessages, &group),
        CONSUMER_SETTINGS,
    )
    .transactional_id(format!("{topic}-txn"));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let assigned = Arc::new(AtomicBool::new(false));
    let sent_at = std::thread::scope(|scope| -> Result<Vec<Instant>> {
        let consumer = scope.spawn(|| {
            consume(
                row, &settings, topic, policy, seed, fates, records, false, &seen, &assigned,
            )
        });
        let deadline = Instant::now() + ASSIGNMENT_TIMEOUT;
        while !assigned.load(Ordering::SeqCst) && !consumer.is_finished() {
            if Instant::now() >= deadline {
                bail!("the consumer was assigned no partitions");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let sent_at = produce(target, topic, records)?;
        consumer.join().expect("the poison consumer panicked")?;
        Ok(sent_at)
    })?;
    let started = sent_at.first().copied().unwrap_or_else(Instant::now);
    let seen = std::mem::take(&mut *seen.lock().expect("seen lock"));
    let finished = seen
        .processed
        .iter()
        .map(|(_, at)| *at)
        .max()
        .unwrap_or(started);
    let mut first: BTreeMap<u64, Instant> = BTreeMap::new();
    for (id, at) in &seen.processed {
        first.entry(*id).or_insert(*at);
    }
    let samples = first
        .iter()
        .map(|(id, at)| {
            at.saturating_duration_since(sent_at[*id as usize])
                .as_micros() as u64
        })
        .collect();
    let mut processed: Vec<u64> = seen.processed.iter().map(|(id, _)| *id).collect();
    let dlq = client::retry::headers::dlq_topic(topic);
    let dead = |target: &Target| -> Result<Vec<u64>> {
        if row.mode().is_none() {
            return Ok(Vec::new());
        }
        Ok(ids(&read_all(&target.cluster(false), &dlq)?))
    };
    let tally_before = tally(records, &processed, &dead(target)?);
    let after_replay = match row.mode() {
        None => None,
        Some(_) => {
            replay(
                &target.cluster(false),
                &dlq,
                &format!("{topic}-replay"),
                &Filter::default(),
            )
            .context("replay the dead-letter topic")?;
            let seen_after = Arc::new(Mutex::new(Seen::default()));
            let assigned = AtomicBool::new(false);
            consume(
                row,
                &settings,
                topic,
                policy,
                seed,
                fates,
                0,
                true,
                &seen_after,
                &assigned,
            )?;
            let seen_after = seen_after.lock().expect("seen lock");
            processed.extend(seen_after.processed.iter().map(|(id, _)| *id));
            Some(tally(records, &processed, &dead(target)?))
        }
    };
    Ok(PoisonRowResult {
        row,
        guarantee: row.guarantee().name().into(),
        tally: Some(tally_before),
        latency: latency_of(samples),
        elapsed_ms: finished.saturating_duration_since(started).as_millis() as u64,
        after_replay,
        error: None,
    })
}

/// The record ids of the workload's keys in `records`.
fn ids(records: &[Record]) -> Vec<u64> {
    records
        .iter()
        .filter_map(|r| Workload::Orders.id_of(r.key.as_deref()?))
        .collect()
}

/// Sends records `0..records` (acks=all), flushed; returns when each was sent.
fn produce(target: &Target, topic: &str, records: u64) -> Result<Vec<Instant>> {
    struct Ignore;
    impl client::DeliveryHandler for Ignore {
        fn delivered(&self, _: usize, _: client::Delivery) {}
    }
    let settings = with(
        client_settings(target, Profile::PoisonMessages, "unused"),
        PRODUCER_SETTINGS,
    );
    let producer = Producer::new(Guarantee::AtLeastOnce, &settings, Ignore)?;
    let mut sent_at = Vec::with_capacity(records as usize);
    for id in 0..records {
        let key = Workload::Orders.key(id);
        let payload = Workload::Orders.payload(id, 100);
        sent_at.push(Instant::now());
        while let Err(error) = producer.send(topic, None, key.as_bytes(), &payload, id as usize) {
            if !error.is_queue_full() {
                return Err(error.into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(RUN_DEADLINE)?;
    Ok(sent_at)
}

/// Consumes `topic` as `row` does until every one of `records` ids was processed or given up
/// (or, with `records` 0, until it has been idle for [`AFTER_REPLAY_IDLE`]).
#[allow(clippy::too_many_arguments)]
fn consume(
    row: PoisonRow,
    settings: &client::Settings,
    topic: &str,
    policy: RetryPolicy,
    seed: u64,
    fates: &Fates,
    records: u64,
    fixed: bool,
    seen: &Mutex<Seen>,
    assigned: &AtomicBool,
) -> Result<()> {
    let deadline = Instant::now() + RUN_DEADLINE;
    let mut last_record = Instant::now();
    let done = |seen: &Seen, last_record: Instant| {
        if records == 0 {
            return last_record.elapsed() >= AFTER_REPLAY_IDLE;
        }
        let distinct: BTreeSet<u64> = seen.processed.iter().map(|(id, _)| *id).collect();
        distinct.len() as u64 + seen.given_up >= records
    };
    let mut handle = |record: &Record, attempt: u32| -> Result<(), Failure> {
        let id = Workload::Orders
            .id_of(record.key.as_deref().unwrap_or_default())
            .ok_or_else(|| Failure::permanent("not an order"))?;
        fates.verdict(id, attempt, fixed)?;
        seen.lock()
            .expect("seen lock")
            .processed
            .push((id, Instant::now()));
        Ok(())
    };
    let Some(mode) = row.mode() else {
        let mut consumer = Consumer::new(Guarantee::AtMostOnce, settings)?;
        consumer.subscribe(&[topic])?;
        while !done(&seen.lock().expect("seen lock"), last_record) {
            if Instant::now() >= deadline {
                bail!("at-most-once: records still missing at the deadline");
            }
            let step = consumer.step(POLL_TIMEOUT, &mut NoObserver, |record| {
                if handle(record, 1).is_err() {
                    seen.lock().expect("seen lock").given_up += 1;
                }
                Ok::<(), Failure>(())
            });
            mark(consumer.inner().assignment().ok(), assigned);
            if step.is_ok_and(|s| s.polled > 0) {
                last_record = Instant::now();
            }
        }
        return Ok(());
    };
    let mut consumer = RetryingConsumer::new(row.guarantee(), settings, topic, mode, policy, seed)?;
    consumer.subscribe()?;
    while !done(&seen.lock().expect("seen lock"), last_record) || consumer.paused() > 0 {
        if Instant::now() >= deadline {
            bail!("{}: records still missing at the deadline", row.name());
        }
        match consumer.step(POLL_TIMEOUT, &mut handle) {
            Ok(step) => {
                seen.lock().expect("seen lock").given_up += step.dead_lettered as u64;
                if step.polled > 0 {
                    last_record = Instant::now();
                }
            }
            Err(error) => tracing::debug!(%error, "poison-messages step"),
        }
        mark(consumer.inner().assignment().ok(), assigned);
    }
    Ok(())
}

/// Says the consumer has partitions once its assignment is not empty.
fn mark(assignment: Option<rdkafka::TopicPartitionList>, assigned: &AtomicBool) {
    if assignment.is_some_and(|a| a.count() > 0) {
        assigned.store(true, Ordering::SeqCst);
    }
}

/// The poison-messages table, for the terminal (at most 100 columns, as the lab's others).
pub fn render(results: &PoisonResults) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n━━ poison messages ━━ {} records, {} partitions: {} fail transiently (ok at attempt \
         {TRANSIENT_SUCCEEDS_AT}),\n   {} always fail; {ATTEMPTS} attempts, backoff from {} ms doubling\n   after \
         replay: lost/dup/parked once the fix is deployed and the dead letters replayed",
        results.records,
        results.partitions,
        results.transient,
        results.permanent,
        BACKOFF_BASE.as_millis()
    );
    let _ = writeln!(
        out,
        " {:<13} {:<12} {:>4} {:>4} {:>6} {:>7} {:>7} {:>7} {:>8}  {}",
        "guarantee",
        "retries",
        "lost",
        "dup",
        "parked",
        "p50 ms",
        "p99 ms",
        "max ms",
        "elapsed",
        "after replay"
    );
    let ms = |us: u64| format!("{:.0}", us as f64 / 1000.0);
    for row in &results.rows {
        let (Some(t), None) = (&row.tally, &row.error) else {
            let _ = writeln!(
                out,
                " {:<13} {:<12} failed: {}",
                row.guarantee,
                row.row.retries(),
                row.error.as_deref().unwrap_or("no tally")
            );
            continue;
        };
        let latency = row.latency.as_ref();
        let after = row.after_replay.map_or("-".to_string(), |a| {
            format!("{}/{}/{}", a.lost, a.duplicated, a.parked)
        });
        let _ = writeln!(
            out,
            " {:<13} {:<12} {:>4} {:>4} {:>6} {:>7} {:>7} {:>7} {:>6}ms  {after}",
            row.guarantee,
            row.row.retries(),
            t.lost,
            t.duplicated,
            t.parked,
            latency.map_or("-".into(), |l| ms(l.p50_us)),
            latency.map_or("-".into(), |l| ms(l.p99_us)),
            latency.map_or("-".into(), |l| ms(l.max_us)),
            row.elapsed_ms,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (records, processed ids, dead-lettered ids) → (lost, duplicated, parked)
    fn check(records: u64, processed: &[u64], dead: &[u64], expect: (u64, u64, u64)) {
        let t = tally(records, processed, dead);
        assert_eq!(
            (t.lost, t.duplicated, t.parked),
            expect,
            "{records} records, processed {processed:?}, dead {dead:?}"
        );
    }

    #[test]
    fn tallies_as_data() {
        check(3, &[0, 1, 2], &[], (0, 0, 0));
        check(3, &[0, 2], &[], (1, 0, 0));
        check(3, &[0, 2], &[1], (0, 0, 1));
        // Dead-lettered twice (at-least-once moved it twice): parked once.
        check(3, &[0, 2], &[1, 1], (0, 0, 1));
        check(3, &[0, 0, 1, 2, 2], &[], (0, 2, 0));
        // Replayed and processed after the fix: no longer parked.
        check(3, &[0, 2, 1], &[1], (0, 0, 0));
        check(0, &[], &[], (0, 0, 0));
    }

    #[test]
    fn fates_are_exact_fractions_and_repeat_by_seed() {
        let fates = Fates::draw(7, 10_000);
        assert_eq!(fates.transient.len(), 100);
        assert_eq!(fates.permanent.len(), 10);
        assert!(fates.transient.is_disjoint(&fates.permanent));
        assert_eq!(fates, Fates::draw(7, 10_000));
        assert_ne!(fates, Fates::draw(8, 10_000));
        // At least one permanent failure, however few the records.
        assert_eq!(Fates::draw(1, 500).permanent.len(), 1);
    }

    #[test]
    fn verdicts_follow_the_fates() {
        let fates = Fates::draw(3, 1000);
        let permanent = *fates.permanent.first().unwrap();
        let transient = *fates.transient.first().unwrap();
        let fine = (0..1000)
            .find(|id| fates.of(*id) == Fate::Succeeds)
            .unwrap();
        assert!(fates.verdict(permanent, 9, false).is_err());
        assert!(fates.verdict(permanent, 1, true).is_ok());
        assert!(fates
            .verdict(transient, TRANSIENT_SUCCEEDS_AT - 1, false)
            .is_err());
        assert!(fates
            .verdict(transient, TRANSIENT_SUCCEEDS_AT, false)
            .is_ok());
        assert!(fates.verdict(fine, 1, false).is_ok());
    }
}
