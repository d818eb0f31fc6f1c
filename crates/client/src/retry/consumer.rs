//! The consumer loop with a retry policy: [`RetryingConsumer::step`] polls a batch, runs the
//! handler on each record, and moves the records that failed to a retry topic or the
//! dead-letter topic before their offsets are committed, so a failed record is never lost
//! between topics.
//!
//! ```text
//! blocking:      handler ─ fails ─ sleep backoff ─ handler ─ … ─ out of attempts: → T.dlq
//!                (the partition waits, order is kept)
//! non-blocking:  handler ─ fails ─ → T.retry.<delay> (due time in a header) ─ partition moves on
//!                T.retry.<delay> record, not yet due: seek back to it, pause the partition
//!                until it is due; then handler ─ fails again ─ → next retry topic or T.dlq
//!
//! at-least-once: send moves ─ wait for every ack (acks=all) ─ then commit the offsets
//! exactly-once:  begin ─ send moves ─ send offsets to the transaction ─ commit
//! ```
//!
//! Either way, a crash before the commit delivers the batch again: at-least-once may then move a
//! record twice (the idempotent consumer, keyed on the record key that a move keeps, sees the
//! copy as a duplicate); exactly-once aborts the first move with its transaction.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::SeedableRng;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer as _, DefaultConsumerContext};
use rdkafka::message::{DeliveryResult, Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, TopicPartitionList};

use super::headers::{self, dlq_topic, moved, retry_topic, Moved, Origin};
use super::policy::{
    retry_in_place, Decision, Failure, InPlace, RetryPolicy, Sleeper, ThreadSleeper,
};
use crate::consumer::{next_offsets, offset_list, poll_records, seek_to_first, Record};
use crate::error::ClientError;
use crate::guarantee::Guarantee;
use crate::settings::Settings;
use crate::transactional::TxnProducer;

/// The most records one step handles.
pub const BATCH_RECORDS_MAX_DEFAULT: usize = 100;
/// How long a step waits for its moves' acknowledgements before it gives up (and commits
/// nothing).
pub const MOVE_ACK_TIMEOUT: Duration = Duration::from_secs(30);

/// Where retries happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Retry in place: the partition waits through the backoffs, so order is kept; a record out
    /// of attempts goes to the dead-letter topic.
    Blocking,
    /// Retry through delay topics: the partition moves on at once; the record comes back from
    /// `T.retry.<delay>` when due.
    NonBlocking,
}

/// Every topic a consumer of `topic` with `policy` in `mode` reads or writes: the source topics
/// it subscribes to (`topic`, then the retry topics of non-blocking mode) and last the
/// dead-letter topic. Create them before the first step.
pub fn topics_needed(topic: &str, mode: Mode, policy: &RetryPolicy) -> Vec<String> {
    let mut topics = source_topics(topic, mode, policy);
    topics.push(dlq_topic(topic));
    topics
}

/// The topics the consumer subscribes to.
pub fn source_topics(topic: &str, mode: Mode, policy: &RetryPolicy) -> Vec<String> {
    let mut topics = vec![topic.to_string()];
    if mode == Mode::NonBlocking {
        topics.extend(policy.delays().into_iter().map(|d| retry_topic(topic, d)));
    }
    topics
}

/// What one step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RetryStep {
    pub polled: usize,
    /// Records whose handler succeeded (in blocking mode, after however many attempts).
    pub succeeded: usize,
    /// Records moved to a retry topic.
    pub retried: usize,
    /// Records moved to the dead-letter topic.
    pub dead_lettered: usize,
    /// Records of retry topics not yet due: their partitions are paused until they are.
    pub deferred: usize,
    /// Whether the step committed the offsets of the records it handled.
    pub committed: bool,
}

/// Why a step did not commit. After `Move` and `Commit` the handled records are delivered again.
#[derive(Debug, thiserror::Error)]
pub enum RetryError {
    #[error("poll records: {0}")]
    Poll(ClientError),
    /// A move was not acknowledged (at-least-once) or its transaction failed (exactly-once).
    #[error("move failed records: {0}")]
    Move(ClientError),
    #[error("commit offsets: {0}")]
    Commit(ClientError),
}

/// A group consumer that retries failing records and dead-letters the ones that keep failing.
pub struct RetryingConsumer {
    consumer: BaseConsumer<DefaultConsumerContext>,
    mover: Mover,
    topic: String,
    mode: Mode,
    policy: RetryPolicy,
    rng: rand::rngs::StdRng,
    sleeper: Box<dyn Sleeper + Send>,
    /// Partitions of retry topics paused until the wall-clock ms of their next record.
    paused: BTreeMap<(String, i32), i64>,
    batch_records_max: usize,
}

/// How moved records are produced.
enum Mover {
    /// acks=all, retried; the step waits for every ack before it commits.
    AtLeastOnce {
        producer: ThreadedProducer<FailureCounter>,
        failed: Arc<AtomicU64>,
    },
    /// The moves and the offsets are one transaction.
    ExactlyOnce(TxnProducer),
}

impl RetryingConsumer {
    /// A consumer of `topic` (and, non-blocking, its retry topics) for `guarantee`:
    /// at-least-once (`settings` needs a group id) or exactly-once (and a transactional id).
    /// `seed` seeds the backoff jitter.
    pub fn new(
        guarantee: Guarantee,
        settings: &Settings,
        topic: &str,
        mode: Mode,
        policy: RetryPolicy,
        seed: u64,
    ) -> Result<RetryingConsumer, ClientError> {
        assert!(
            guarantee != Guarantee::AtMostOnce,
            "at-most-once does not retry: a failed record is lost"
        );
        let consumer = settings
            .consumer_config(guarantee)?
            .create()
            .map_err(ClientError::kafka("create consumer"))?;
        let mover = match guarantee {
            Guarantee::ExactlyOnce => Mover::ExactlyOnce(TxnProducer::new(settings)?),
            _ => {
                let failed = Arc::new(AtomicU64::new(0));
                let producer = settings
                    .producer_config(Guarantee::AtLeastOnce)?
                    .create_with_context(FailureCounter(failed.clone()))
                    .map_err(ClientError::kafka("create producer"))?;
                Mover::AtLeastOnce { producer, failed }
            }
        };
        Ok(RetryingConsumer {
            consumer,
            mover,
            topic: topic.to_string(),
            mode,
            policy,
            rng: rand::rngs::StdRng::seed_from_u64(seed),
            sleeper: Box::new(ThreadSleeper),
            paused: BTreeMap::new(),
            batch_records_max: BATCH_RECORDS_MAX_DEFAULT,
        })
    }

    /// Waits through blocking backoffs with `sleeper` instead of sleeping the thread.
    pub fn sleeper(mut self, sleeper: impl Sleeper + Send + 'static) -> RetryingConsumer {
        self.sleeper = Box::new(sleeper);
        self
    }

    pub fn batch_records_max(mut self, batch_records_max: usize) -> RetryingConsumer {
        assert!(batch_records_max > 0, "a batch holds at least one record");
        self.batch_records_max = batch_records_max;
        self
    }

    /// Subscribes to the source topics.
    pub fn subscribe(&self) -> Result<(), ClientError> {
        let topics = source_topics(&self.topic, self.mode, &self.policy);
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&names)
            .map_err(ClientError::kafka("subscribe"))
    }

    /// How many partitions of retry topics wait for their next record to be due.
    pub fn paused(&self) -> usize {
        self.paused.len()
    }

    /// The librdkafka consumer, for assignment and positions.
    pub fn inner(&self) -> &BaseConsumer<DefaultConsumerContext> {
        &self.consumer
    }

    /// Polls a batch (waiting at most `timeout`, or until a paused partition is due), runs
    /// `handler` on each record with the number of the attempt (from 1), moves what failed, and
    /// commits the handled records' offsets after the moves are safe.
    pub fn step(
        &mut self,
        timeout: Duration,
        mut handler: impl FnMut(&Record, u32) -> Result<(), Failure>,
    ) -> Result<RetryStep, RetryError> {
        self.resume_due(now_ms());
        let timeout = match self.paused.values().min() {
            Some(&due) => timeout.min(Duration::from_millis((due - now_ms()).max(0) as u64)),
            None => timeout,
        };
        let batch = poll_records(&self.consumer, self.batch_records_max, timeout)
            .map_err(RetryError::Poll)?;
        let mut step = RetryStep {
            polled: batch.len(),
            ..RetryStep::default()
        };
        if batch.is_empty() {
            return Ok(step);
        }
        if let Mover::ExactlyOnce(producer) = &self.mover {
            if let Err(error) = producer.begin() {
                seek_to_first(&self.consumer, &batch);
                return Err(RetryError::Move(error));
            }
        }
        // Delivery reports arrive on librdkafka's thread at any time: count from before the
        // first send of this step.
        let failed_before = self.failed_deliveries();
        let mut handled = Vec::new();
        let mut deferred = BTreeSet::new();
        for record in &batch {
            let partition = (record.topic.clone(), record.partition);
            if deferred.contains(&partition) {
                continue;
            }
            if let Some(due) = headers::due_ms(record).filter(|due| *due > now_ms()) {
                self.defer(record, due);
                deferred.insert(partition);
                step.deferred += 1;
                continue;
            }
            let outcome = self.handle(record, &mut handler);
            let sent = match outcome {
                Handled::Succeeded => {
                    step.succeeded += 1;
                    Ok(())
                }
                Handled::Move(moved, retry) => {
                    if retry {
                        step.retried += 1;
                    } else {
                        step.dead_lettered += 1;
                    }
                    self.send(&moved)
                }
            };
            if let Err(error) = sent {
                // The whole batch comes again, also the records after this one, which were
                // polled and not handled: a later commit of their partition would skip them.
                return Err(self.give_up(&batch, RetryError::Move(error)));
            }
            handled.push(record.clone());
        }
        self.commit(&handled, failed_before)?;
        step.committed = !handled.is_empty();
        Ok(step)
    }

    /// Runs the handler on `record` as the mode says and what follows from its result.
    fn handle(
        &mut self,
        record: &Record,
        handler: &mut impl FnMut(&Record, u32) -> Result<(), Failure>,
    ) -> Handled {
        let origin = Origin::of(record);
        let now = now_ms();
        match self.mode {
            Mode::Blocking => {
                let first = origin.attempts_failed;
                let mut first_failure_ms = None;
                let outcome =
                    retry_in_place(&self.policy, &mut self.rng, &mut *self.sleeper, |attempt| {
                        let result = handler(record, first + attempt);
                        if result.is_err() {
                            first_failure_ms.get_or_insert_with(now_ms);
                        }
                        result
                    });
                match outcome {
                    InPlace::Succeeded { .. } => Handled::Succeeded,
                    InPlace::Failed { attempts, failure } => Handled::Move(
                        moved(
                            record,
                            dlq_topic(&origin.topic),
                            first + attempts,
                            &failure.reason(),
                            first_failure_ms.unwrap_or(now),
                            None,
                        ),
                        false,
                    ),
                }
            }
            Mode::NonBlocking => {
                let attempt = origin.attempt();
                let Err(failure) = handler(record, attempt) else {
                    return Handled::Succeeded;
                };
                match self.policy.decide(attempt, &failure, &mut self.rng) {
                    Decision::Retry { after, .. } => {
                        let topic =
                            retry_topic(&origin.topic, self.policy.nominal_backoff(attempt));
                        let due = now + after.as_millis() as i64;
                        Handled::Move(
                            moved(record, topic, attempt, &failure.reason(), now, Some(due)),
                            true,
                        )
                    }
                    Decision::DeadLetter => Handled::Move(
                        moved(
                            record,
                            dlq_topic(&origin.topic),
                            attempt,
                            &failure.reason(),
                            now,
                            None,
                        ),
                        false,
                    ),
                }
            }
        }
    }

    /// Leaves `record` (of a retry topic, due at `due_ms`) for later: seeks its partition back
    /// to it and pauses the partition until then.
    fn defer(&mut self, record: &Record, due_ms: i64) {
        seek_to_first(&self.consumer, std::slice::from_ref(record));
        let mut list = TopicPartitionList::new();
        list.add_partition(&record.topic, record.partition);
        if let Err(error) = self.consumer.pause(&list) {
            tracing::warn!(%error, topic = record.topic, "pause a retry topic's partition");
        }
        self.paused
            .insert((record.topic.clone(), record.partition), due_ms);
    }

    /// Resumes the paused partitions that are due at `now_ms`.
    fn resume_due(&mut self, now_ms: i64) {
        let due: Vec<(String, i32)> = self
            .paused
            .iter()
            .filter(|(_, due)| **due <= now_ms)
            .map(|(partition, _)| partition.clone())
            .collect();
        for (topic, partition) in due {
            self.paused.remove(&(topic.clone(), partition));
            let mut list = TopicPartitionList::new();
            list.add_partition(&topic, partition);
            // A partition revoked meanwhile is not ours to resume; its new owner reads it.
            if let Err(error) = self.consumer.resume(&list) {
                tracing::debug!(%error, topic, partition, "resume a retry topic's partition");
            }
        }
    }

    fn send(&self, moved: &Moved) -> Result<(), ClientError> {
        let record = base_record(
            &moved.topic,
            moved.key.as_deref(),
            moved.payload.as_deref(),
            &moved.headers,
        );
        match &self.mover {
            Mover::ExactlyOnce(producer) => producer.send_record(record),
            Mover::AtLeastOnce { producer, .. } => {
                crate::producer::send_waiting(producer, record, MOVE_ACK_TIMEOUT)
            }
        }
    }

    /// Moved records whose delivery failed since the consumer started (at-least-once).
    fn failed_deliveries(&self) -> u64 {
        match &self.mover {
            Mover::AtLeastOnce { failed, .. } => failed.load(Ordering::SeqCst),
            Mover::ExactlyOnce(_) => 0,
        }
    }

    /// Commits the offsets after `handled`, once their moves are safe: at-least-once, once
    /// every move is acknowledged and none failed since `failed_before`.
    fn commit(&self, handled: &[Record], failed_before: u64) -> Result<(), RetryError> {
        if handled.is_empty() {
            if let Mover::ExactlyOnce(producer) = &self.mover {
                // Nothing was sent; the empty transaction ends here.
                producer.abort().map_err(RetryError::Move)?;
            }
            return Ok(());
        }
        let offsets = offset_list(&next_offsets(handled)).map_err(RetryError::Commit)?;
        let result = match &self.mover {
            Mover::AtLeastOnce { producer, failed } => {
                crate::producer::drain(producer, MOVE_ACK_TIMEOUT)
                    .and_then(|()| {
                        if failed.load(Ordering::SeqCst) == failed_before {
                            return Ok(());
                        }
                        Err(ClientError::Kafka {
                            action: "acknowledge moved records",
                            source: rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::Fail,
                            ),
                        })
                    })
                    .map_err(RetryError::Move)
                    .and_then(|()| {
                        self.consumer
                            .commit(&offsets, CommitMode::Sync)
                            .map_err(ClientError::kafka("commit offsets"))
                            .map_err(RetryError::Commit)
                    })
            }
            Mover::ExactlyOnce(producer) => {
                let group = self
                    .consumer
                    .group_metadata()
                    .ok_or(ClientError::MissingSetting("group.id"));
                group
                    .and_then(|group| producer.send_offsets(&offsets, &group))
                    .and_then(|()| producer.commit())
                    .map_err(RetryError::Move)
            }
        };
        result.map_err(|error| self.give_up(handled, error))
    }

    /// After a failed move or commit: aborts the open transaction (exactly-once) and seeks back
    /// so `records` are delivered again.
    fn give_up(&self, records: &[Record], error: RetryError) -> RetryError {
        if let Mover::ExactlyOnce(producer) = &self.mover {
            if let Err(abort) = producer.abort() {
                tracing::warn!(error = %abort, "abort the moves' transaction");
            }
        }
        seek_to_first(&self.consumer, records);
        error
    }
}

/// The librdkafka record of `topic`, `key`, `payload` and `headers` (in order).
pub(crate) fn base_record<'r>(
    topic: &'r str,
    key: Option<&'r [u8]>,
    payload: Option<&'r [u8]>,
    headers: &[(String, Vec<u8>)],
) -> BaseRecord<'r, [u8], [u8], ()> {
    let mut owned = OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers {
        owned = owned.insert(Header {
            key: name,
            value: Some(value),
        });
    }
    let mut record = BaseRecord::to(topic).headers(owned);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(payload) = payload {
        record = record.payload(payload);
    }
    record
}

/// What became of one record.
enum Handled {
    Succeeded,
    /// Move it; `true` to a retry topic, `false` to the dead-letter topic.
    Move(Moved, bool),
}

/// Counts records whose delivery failed, so a step commits only when none did.
struct FailureCounter(Arc<AtomicU64>);

impl ClientContext for FailureCounter {}

impl ProducerContext for FailureCounter {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((error, _)) = result {
            tracing::warn!(%error, "a moved record was not delivered");
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// Wall-clock milliseconds since the Unix epoch: due times cross processes and machines.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
