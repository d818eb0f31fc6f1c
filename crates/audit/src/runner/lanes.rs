//! One lane's clients: a producer thread sending stamped records at the lane's rate, and a
//! consumer thread reading them back, both reporting to the lane's [`LaneState`] with the time
//! they read from the [`Clock`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use client::dedup::{Applied, Idempotent, MemoryDedupStore, MessageId};
use client::transactional::TxnProducer;
use client::StepError;
use client::{Consumer, Delivery, DeliveryHandler, Guarantee, NoObserver, Producer, Settings};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseRecord;

use super::clock::Clock;
use crate::lane::{Client, LaneState};
use crate::stamp::{Lane, Stamp};

/// How long a consumer step waits for records.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// The exactly-once lane commits a transaction every this long (Kafka Streams' default).
const TXN_INTERVAL: Duration = Duration::from_millis(100);
/// The most records one transaction carries: a producer catching up after a long stall sends
/// its overdue records in several transactions, not one that may outgrow the broker's limits.
const TXN_RECORDS_MAX: usize = 10_000;
/// The time allowed for each transaction call (init, commit, abort).
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a producer waits between attempts to come back after a fatal error.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// How long the producer may flush at the end of a run.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// What a lane's threads share.
pub(crate) struct LaneShared {
    pub lane: Lane,
    pub state: Mutex<LaneState>,
    pub clock: Arc<Clock>,
    /// The producer stops sending (then flushes); the consumer goes on.
    pub stop_producing: AtomicBool,
    pub stop_consuming: AtomicBool,
    /// The consumer has its partition: the producer may start.
    pub assigned: AtomicBool,
    pub settings: Settings,
    pub rate_per_second: u64,
    /// Exactly-once: one transaction in this many is aborted on purpose.
    pub abort_every: u64,
    /// Exactly-once: the consumer's `isolation.level` (`read_committed` but for a control).
    pub exactly_once_isolation: String,
    pub first_seq: u64,
}

impl LaneShared {
    fn state(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state
            .lock()
            .expect("no lane thread panics holding the state")
    }

    /// The stamp of the `n`th record of the run, sent at its due time (see [`Pace`]).
    fn stamp(&self, pace: &Pace, n: u64) -> Stamp {
        let run = self.state().run();
        Stamp {
            lane: self.lane,
            run,
            seq: self.first_seq + n,
            sent_ms: pace.due_ms(n),
        }
    }

    fn pace(&self) -> Pace {
        Pace {
            started: Instant::now(),
            started_ms: self.clock.now_ms(),
            rate_per_second: self.rate_per_second.max(1),
        }
    }

    /// Sleeps until `at`; false if told to stop first.
    fn wait_until(&self, at: Instant) -> bool {
        while let Some(left) = at.checked_duration_since(Instant::now()) {
            if self.stop_producing.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
        !self.stop_producing.load(Ordering::Relaxed)
    }
}

/// When each record of a run is due, by the rate. A record's send time is its due time, not
/// the moment the producer got to it: a producer held up (a transaction's commit waiting out a
/// broker restart) then shows its wait in latency and availability instead of hiding it by
/// sending late (no coordinated omission).
pub(crate) struct Pace {
    started: Instant,
    started_ms: u64,
    rate_per_second: u64,
}

impl Pace {
    fn due(&self, n: u64) -> Instant {
        self.started + Duration::from_micros(n * 1_000_000 / self.rate_per_second)
    }

    fn due_ms(&self, n: u64) -> u64 {
        self.started_ms + n * 1_000 / self.rate_per_second
    }
}

/// Hears the plain producer's delivery reports.
struct Acks(Arc<LaneShared>);

impl DeliveryHandler for Acks {
    fn delivered(&self, tag: usize, delivery: Delivery) {
        let ok = matches!(delivery, Delivery::Persisted { .. });
        let now = self.0.clock.now_ms();
        self.0.state().acked(tag as u64, ok, now);
    }

    // A broker down is what the auditor measures; librdkafka's complaints about it are noise.
    fn client_error(&self, error: &KafkaError, reason: &str) {
        tracing::debug!(%error, reason, lane = %self.0.lane, "producer");
    }

    fn client_log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, message, lane = %self.0.lane, "producer");
    }
}

/// The at-most-once and at-least-once producer: one record at each tick of the rate.
pub(crate) fn produce_plain(shared: Arc<LaneShared>) -> Result<()> {
    let topic = shared.lane.topic();
    let guarantee = shared.lane.guarantee();
    let producer = Producer::new(guarantee, &shared.settings, Acks(shared.clone()))
        .context("create the producer")?;
    let pace = shared.pace();
    for n in 0.. {
        if !shared.wait_until(pace.due(n)) {
            break;
        }
        let stamp = shared.stamp(&pace, n);
        let seq = stamp.seq;
        shared
            .state()
            .sent_late(seq, stamp.sent_ms, shared.clock.now_ms());
        let (key, value) = (stamp.key(), stamp.encode());
        loop {
            match producer.send(&topic, Some(0), &key, &value, seq as usize) {
                Ok(()) => break,
                Err(error) if error.is_queue_full() => std::thread::sleep(Duration::from_millis(1)),
                Err(error) => {
                    tracing::debug!(%error, "enqueue");
                    let now = shared.clock.now_ms();
                    shared.state().acked(seq, false, now);
                    break;
                }
            }
        }
    }
    let _ = producer.flush(FLUSH_TIMEOUT);
    producer.purge();
    Ok(())
}

/// The transactional producer's context: delivery reports acknowledge records.
struct TxnAcks(Arc<LaneShared>);

impl rdkafka::ClientContext for TxnAcks {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, message, "transactional producer");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "transactional producer");
    }
}

impl rdkafka::producer::ProducerContext for TxnAcks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, seq: usize) {
        let now = self.0.clock.now_ms();
        self.0.state().acked(seq as u64, result.is_ok(), now);
    }
}

type TxnLaneProducer = TxnProducer<TxnAcks>;

fn new_txn_producer(shared: &Arc<LaneShared>) -> Option<TxnLaneProducer> {
    let settings = shared
        .settings
        .clone()
        .transactional_id(shared.lane.topic());
    match TxnProducer::with_context(&settings, TxnAcks(shared.clone()), TXN_CALL_TIMEOUT) {
        Ok(producer) => Some(producer),
        Err(error) => {
            tracing::debug!(%error, "create the transactional producer");
            None
        }
    }
}

/// How a transaction ended, for its records.
fn ended(shared: &LaneShared, seqs: &[u64], committed: Option<bool>) {
    let now = shared.clock.now_ms();
    let mut state = shared.state();
    for seq in seqs {
        state.transaction_ended(*seq, committed, now);
    }
}

/// The exactly-once producer: records at the lane's rate in transactions of
/// [`TXN_INTERVAL`], one in `abort_every` aborted on purpose; a transaction that fails is
/// aborted (its records are then not expected), and one whose end is unknown is left unjudged
/// while a new producer instance fences the old.
pub(crate) fn produce_transactions(shared: Arc<LaneShared>) -> Result<()> {
    let topic = shared.lane.topic();
    let mut producer: Option<TxnLaneProducer> = None;
    let pace = shared.pace();
    let mut n = 0u64;
    for txn in 1u64.. {
        if shared.stop_producing.load(Ordering::Relaxed) {
            break;
        }
        let Some(current) = producer.as_ref() else {
            producer = new_txn_producer(&shared);
            if producer.is_none() {
                std::thread::sleep(RETRY_PAUSE);
            }
            continue;
        };
        if let Err(error) = current.begin() {
            tracing::debug!(%error, "begin transaction");
            shared.state().restarted(Client::Producer);
            producer = None;
            continue;
        }
        let window_end = Instant::now() + TXN_INTERVAL;
        let mut seqs = Vec::new();
        while seqs.len() < TXN_RECORDS_MAX
            && pace.due(n) < window_end
            && shared.wait_until(pace.due(n))
        {
            let stamp = shared.stamp(&pace, n);
            let seq = stamp.seq;
            n += 1;
            shared
                .state()
                .sent_in_transaction(seq, stamp.sent_ms, shared.clock.now_ms());
            seqs.push(seq);
            let (key, value) = (stamp.key(), stamp.encode());
            let record = BaseRecord::with_opaque_to(&topic, seq as usize)
                .partition(0)
                .key(&key)
                .payload(&value);
            if let Err(error) = current.send_record(record) {
                tracing::debug!(%error, "send in transaction");
                let now = shared.clock.now_ms();
                shared.state().acked(seq, false, now);
            }
        }
        let on_purpose = shared.abort_every > 0 && txn % shared.abort_every == 0;
        let committed = if on_purpose {
            current
                .flush()
                .and_then(|()| current.abort())
                .map(|()| false)
        } else {
            current.commit().map(|()| true).or_else(|error| {
                tracing::debug!(%error, "commit transaction");
                current.abort().map(|()| false)
            })
        };
        match committed {
            Ok(true) => ended(&shared, &seqs, Some(true)),
            Ok(false) => ended(&shared, &seqs, Some(false)),
            Err(error) => {
                tracing::debug!(%error, "end transaction");
                ended(&shared, &seqs, None);
                shared.state().restarted(Client::Producer);
                producer = None;
            }
        }
    }
    Ok(())
}

/// librdkafka's consumer messages: debug traces only.
pub(crate) struct QuietContext;

impl rdkafka::ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(?level, fac, message, "consumer");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "consumer");
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

/// What the lane's processing keeps beside its counts, outliving consumer instances as a
/// database outlives the processes writing to it.
struct Effects {
    lane: Lane,
    /// The idempotent lane's dedup store.
    dedup: Option<Idempotent<MemoryDedupStore>>,
    /// Exactly-once keeps its position beside its effects (as the lab's consumer and the sinks
    /// do), so a record read again after a rebalance, its offset not yet committed, is not
    /// applied twice; a record written twice sits at two offsets and is counted twice.
    position: Option<i64>,
}

impl Effects {
    /// Whether `record` takes effect (false: recognised as already applied).
    fn apply(&mut self, record: &client::Record) -> bool {
        match (self.lane, self.dedup.as_mut()) {
            (_, Some(dedup)) => {
                let applied = dedup.apply(record, |_| Ok::<(), std::convert::Infallible>(()));
                !matches!(applied, Ok(Applied::Duplicate))
            }
            (Lane::ExactlyOnce, None) => {
                let next = record.offset + 1;
                let applied = self
                    .position
                    .is_none_or(|position| record.offset >= position);
                self.position = Some(self.position.map_or(next, |position| position.max(next)));
                applied
            }
            _ => true,
        }
    }
}

/// The consumer: the guarantee's loop (`Consumer::step`), every record reported to the lane;
/// the idempotent lane reports what `Idempotent` applied. A consumer instance that hits a
/// fatal error (a static member fenced, as when a duplicated JoinGroup gave its instance id to
/// a second member id) is replaced by a new one.
pub(crate) fn consume(shared: Arc<LaneShared>) -> Result<()> {
    let topic = shared.lane.topic();
    // A static member (KIP-345): a restarted auditor takes over its predecessor's partition
    // at once, even when the predecessor was killed and never left the group.
    let mut settings = shared
        .settings
        .clone()
        .group_id(topic.clone())
        .set("group.instance.id", format!("{topic}-consumer"));
    let guarantee = match shared.lane {
        Lane::AtMostOnce => Guarantee::AtMostOnce,
        Lane::AtLeastOnce | Lane::AtLeastOnceIdempotent => Guarantee::AtLeastOnce,
        // Read committed data only; the offsets are committed after processing, as the lab's
        // exactly-once consumer does (its effects are the lane's counts, kept in memory).
        Lane::ExactlyOnce => {
            settings = settings.set("isolation.level", shared.exactly_once_isolation.as_str());
            Guarantee::AtLeastOnce
        }
    };
    let mut effects = Effects {
        lane: shared.lane,
        dedup: (shared.lane == Lane::AtLeastOnceIdempotent)
            .then(|| Idempotent::new(MemoryDedupStore::default(), MessageId::Key)),
        position: None,
    };
    loop {
        let mut consumer = Consumer::with_context(guarantee, &settings, QuietContext)
            .context("create the consumer")?;
        consumer.subscribe(&[&topic])?;
        match consume_with(&shared, &mut consumer, &mut effects) {
            None => {
                let _ = consumer.commit_window(&mut NoObserver);
                return Ok(());
            }
            Some((code, reason)) => {
                shared.state().restarted(Client::Consumer);
                tracing::warn!(lane = %shared.lane, ?code, reason, "consumer failed; a new one takes over");
            }
        }
    }
}

/// Steps `consumer` until the lane stops consuming (`None`) or the consumer has a fatal error.
fn consume_with(
    shared: &LaneShared,
    consumer: &mut Consumer<QuietContext>,
    effects: &mut Effects,
) -> Option<(rdkafka::types::RDKafkaErrorCode, String)> {
    while !shared.stop_consuming.load(Ordering::Relaxed) {
        let step = consumer.step(POLL_TIMEOUT, &mut NoObserver, |record| {
            let now = shared.clock.now_ms();
            let stamp = record
                .payload
                .as_deref()
                .and_then(|p| Stamp::decode(p).ok());
            let applied = effects.apply(record);
            shared.state().consumed(stamp.as_ref(), applied, now);
            Ok::<(), std::convert::Infallible>(())
        });
        match step {
            Ok(_) | Err(StepError::Commit { .. }) | Err(StepError::Handler { .. }) => {}
            Err(StepError::Poll(error)) => {
                tracing::debug!(%error, "poll");
                std::thread::sleep(POLL_TIMEOUT);
            }
        }
        let client = rdkafka::consumer::Consumer::client(consumer.inner());
        if let Some(fatal) = client.fatal_error() {
            return Some(fatal);
        }
        if !shared.assigned.load(Ordering::Relaxed) {
            let assigned = rdkafka::consumer::Consumer::assignment(consumer.inner())
                .is_ok_and(|a| a.count() > 0);
            shared.assigned.store(assigned, Ordering::Relaxed);
        }
    }
    None
}
