//! The sink's consumer loop: a librdkafka group consumer whose rebalance callback claims the
//! assigned partitions in the database and seeks to the positions found there, and whose
//! [`Sink::step`] applies one commit window of records in one fenced transaction.
//!
//! A window is what arrives within the [`CommitPolicy`] interval after its first record (100 ms
//! by default), up to its record cap: a database commit (an fsync) is paid once per window, and
//! a record waits at most the interval before its transaction starts.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use client::consumer::poll_window;
use client::{ClientError, CommitPolicy, Guarantee, Record, Settings};
use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::backend::{Backend, TransactError};
use crate::error::{DbError, SinkError};
use crate::plan::{Claims, Plan};

/// The default most records applied in one transaction.
pub const BATCH_RECORDS_MAX_DEFAULT: usize = 5_000;
/// How long a seek back after a failed transaction may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// The most queued events a dropped sink serves before librdkafka's close begins.
const DRAIN_EVENTS_MAX: usize = 10_000;

/// What one step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkStep {
    pub polled: usize,
    /// Records applied and committed with their positions.
    pub applied: usize,
    /// Records of partitions this consumer does not own, or already applied.
    pub dropped: usize,
}

/// State the rebalance callback and the loop share. The callback runs inside `poll`, on the
/// loop's thread, so the locks are never contended; they exist because librdkafka's context is
/// shared.
struct Shared<B> {
    group: String,
    backend: Mutex<B>,
    claims: Mutex<Claims>,
    claim_error: Mutex<Option<DbError>>,
    /// Assigned partitions whose claim failed: claimed again before the next poll.
    unclaimed: Mutex<Vec<(String, i32)>>,
    /// The sink is being dropped: an assignment is declined, not claimed, so a consumer on its
    /// way out never bumps an epoch and fences the instance that replaces it.
    closing: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves nothing half-written that matters: the database
    // transaction rolled back when its guard dropped.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub struct SinkContext<B: Backend> {
    shared: Arc<Shared<B>>,
}

impl<B: Backend> ClientContext for SinkContext<B> {
    /// librdkafka's client-wide errors (all brokers down during a restart) are transient: it
    /// reconnects by itself, and a step that met one says so ([`SinkError::is_broker_unreachable`]).
    /// Traced with librdkafka's own log lines (target `librdkafka`), so an application filters
    /// or collects both together.
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::warn!(target: "librdkafka", %error, reason, "librdkafka error");
    }
}

impl<B: Backend> ConsumerContext for SinkContext<B> {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let closing = self.shared.closing.load(Ordering::Relaxed);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS if !closing => {
                self.claim_assigned(tpl);
                if consumer.closed() {
                    return;
                }
                if let Err(error) = consumer.assign(tpl) {
                    tracing::warn!(%error, "assign partitions");
                }
            }
            other => {
                if other != RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS
                    && other != RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS
                {
                    tracing::warn!(?other, "rebalance error; dropping the assignment");
                }
                lock(&self.shared.claims).revoke_all();
                lock(&self.shared.unclaimed).clear();
                // librdkafka answers assign and unassign from its group thread and waits for
                // the answer without a timeout. Once the group has terminated (a rebalance
                // event served during close, after the close already released the assignment)
                // the request is dropped unanswered and the call never returns (librdkafka
                // #4884): there is nothing left to unassign then.
                if consumer.closed() {
                    return;
                }
                if let Err(error) = consumer.unassign() {
                    tracing::warn!(%error, "unassign partitions");
                }
            }
        }
    }
}

impl<B: Backend> SinkContext<B> {
    /// Claims an assignment in the database and sets each partition's offset to the position
    /// found there.
    fn claim_assigned(&self, tpl: &mut TopicPartitionList) {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let claimed = lock(&self.shared.backend).claim(&self.shared.group, &partitions);
        match claimed {
            Ok(claims) => {
                for claim in &claims {
                    let offset = claim.next_offset.map_or(Offset::Beginning, Offset::Offset);
                    if let Err(error) =
                        tpl.set_partition_offset(&claim.topic, claim.partition, offset)
                    {
                        tracing::warn!(%error, "set assigned offset");
                    }
                }
                lock(&self.shared.claims).assign(&claims);
            }
            Err(error) => {
                // Reported by the next step, which claims them again.
                *lock(&self.shared.claim_error) = Some(error);
                *lock(&self.shared.unclaimed) = partitions;
            }
        }
    }
}

/// An exactly-once sink into the database behind `B`.
pub struct Sink<B: Backend> {
    consumer: BaseConsumer<SinkContext<B>>,
    policy: CommitPolicy,
}

impl<B: Backend> Sink<B> {
    /// A group consumer (`settings` must name the group) reading committed records only, with
    /// its positions in `backend`. Subscribe with [`Sink::subscribe`].
    pub fn new(settings: &Settings, backend: B) -> Result<Sink<B>, SinkError> {
        let group = settings
            .group_id
            .clone()
            .ok_or(SinkError::Consumer(ClientError::MissingSetting("group.id")))?;
        let mut config = settings
            .consumer_config(Guarantee::ExactlyOnce)
            .map_err(SinkError::Consumer)?;
        // The claim decides every position; an eager assignor hands whole assignments to it.
        config.set("partition.assignment.strategy", "range");
        let context = SinkContext {
            shared: Arc::new(Shared {
                group,
                backend: Mutex::new(backend),
                claims: Mutex::new(Claims::default()),
                claim_error: Mutex::new(None),
                unclaimed: Mutex::new(Vec::new()),
                closing: AtomicBool::new(false),
            }),
        };
        let consumer = config.create_with_context(context).map_err(|source| {
            SinkError::Consumer(ClientError::Kafka {
                action: "create consumer",
                source,
            })
        })?;
        Ok(Sink {
            consumer,
            policy: CommitPolicy::default().records_max(BATCH_RECORDS_MAX_DEFAULT),
        })
    }

    /// Sets the most records applied in one transaction.
    pub fn batch_records_max(mut self, batch_records_max: usize) -> Self {
        self.policy = self.policy.records_max(batch_records_max);
        self
    }

    /// Sets how long a window gathers records before its transaction, and its record cap.
    pub fn commit_policy(mut self, policy: CommitPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn subscribe(&self, topics: &[&str]) -> Result<(), SinkError> {
        self.consumer.subscribe(topics).map_err(|source| {
            SinkError::Consumer(ClientError::Kafka {
                action: "subscribe",
                source,
            })
        })
    }

    /// The librdkafka consumer, for assignment and watermarks.
    pub fn consumer(&self) -> &BaseConsumer<SinkContext<B>> {
        &self.consumer
    }

    /// The database, between steps (the application's own reads and writes).
    pub fn backend(&self) -> MutexGuard<'_, B> {
        lock(&self.consumer.context().shared.backend)
    }

    /// The partitions this consumer owns and their epochs.
    pub fn owned(&self) -> Vec<(String, i32, i64)> {
        lock(&self.consumer.context().shared.claims).epochs()
    }

    /// Polls one batch and applies it: `handler` writes its effects in the transaction, the
    /// sink writes the positions in it and commits. Nothing of a failed step is committed.
    pub fn step<E>(
        &self,
        timeout: Duration,
        handler: impl FnOnce(&[Record], &mut B::Tx<'_>) -> Result<(), E>,
    ) -> Result<SinkStep, SinkError<E>> {
        let polled = self.poll(timeout).map_err(SinkError::widen)?;
        self.apply(polled, handler)
    }

    /// The first half of [`Sink::step`]: repairs what an earlier failure left (a claim or a
    /// seek back that failed), polls a window of records and decides which of its records to apply under
    /// which epochs. Nothing is written until [`Sink::apply`]; a consumer that stalls between
    /// the two (a paused process) and lost its partitions meanwhile is fenced there.
    pub fn poll(&self, timeout: Duration) -> Result<Polled, SinkError> {
        let shared = &self.consumer.context().shared;
        if let Some(error) = lock(&shared.claim_error).take() {
            return Err(SinkError::Claim(error));
        }
        self.claim_unclaimed()?;
        self.seek_rewinds();
        let batch = poll_window(&self.consumer, self.policy, timeout).map_err(SinkError::Poll)?;
        let polled = batch.len();
        let plan = lock(&shared.claims).plan(batch);
        Ok(Polled { polled, plan })
    }

    /// The second half of [`Sink::step`]: one transaction that writes the positions (fenced by
    /// the claimed epochs), runs `handler` and commits. After a failure the batch's partitions
    /// are read again from the applied position.
    pub fn apply<E>(
        &self,
        polled: Polled,
        handler: impl FnOnce(&[Record], &mut B::Tx<'_>) -> Result<(), E>,
    ) -> Result<SinkStep, SinkError<E>> {
        let shared = &self.consumer.context().shared;
        let Polled { polled, plan } = polled;
        let mut step = SinkStep {
            polled,
            applied: 0,
            dropped: plan.dropped,
        };
        if plan.apply.is_empty() {
            return Ok(step);
        }
        let result = lock(&shared.backend)
            .transact(&shared.group, &plan.fences, |tx| handler(&plan.apply, tx));
        match result {
            Ok(()) => {
                lock(&shared.claims).committed(&plan.fences);
                step.applied = plan.apply.len();
                Ok(step)
            }
            Err(error) => {
                let error = match error {
                    TransactError::Fenced {
                        topic,
                        partition,
                        epoch,
                    } => {
                        lock(&shared.claims).lose(&topic, partition);
                        SinkError::Fenced {
                            topic,
                            partition,
                            epoch,
                        }
                    }
                    TransactError::Db(error) => SinkError::Db(error),
                    TransactError::Handler(error) => SinkError::Handler(error),
                };
                lock(&shared.claims).rewind(&plan.fences);
                self.seek_rewinds();
                Err(error)
            }
        }
    }

    /// Claims the partitions whose claim failed in the rebalance callback; they are read from
    /// their stored positions once seeked there.
    fn claim_unclaimed(&self) -> Result<(), SinkError> {
        let shared = &self.consumer.context().shared;
        let partitions = lock(&shared.unclaimed).clone();
        if partitions.is_empty() {
            return Ok(());
        }
        let claims = lock(&shared.backend)
            .claim(&shared.group, &partitions)
            .map_err(SinkError::Claim)?;
        let mut owned = lock(&shared.claims);
        owned.assign(&claims);
        // librdkafka fetches these from wherever it began; only a seek to the stored position
        // lets their records apply.
        owned.rewind_all();
        lock(&shared.unclaimed).clear();
        Ok(())
    }

    /// Seeks each partition marked as rewinding back to its applied position. A seek that
    /// fails leaves the partition rewinding (its records are not applied) and is tried again
    /// on the next poll.
    fn seek_rewinds(&self) {
        let shared = &self.consumer.context().shared;
        let rewinds = lock(&shared.claims).rewinds();
        for (topic, partition, next_offset) in rewinds {
            let offset = next_offset.map_or(Offset::Beginning, Offset::Offset);
            match self.consumer.seek(&topic, partition, offset, SEEK_TIMEOUT) {
                Ok(()) => lock(&shared.claims).rewound(&topic, partition),
                Err(error) => {
                    tracing::warn!(%error, topic, partition, "seek back; trying again next poll")
                }
            }
        }
    }
}

impl<B: Backend> Drop for Sink<B> {
    /// Answers the rebalance events queued while the application was busy before librdkafka's
    /// close (run when the consumer drops) begins. An event left queued can be served by the
    /// close after the group has already terminated, and the unassign it asks for would then
    /// never return (librdkafka #4884): a dropped sink would hang forever. Served here, while
    /// the group is alive, every answer comes back. Records polled by the drain are dropped:
    /// the positions are in the database.
    fn drop(&mut self) {
        self.consumer
            .context()
            .shared
            .closing
            .store(true, Ordering::Relaxed);
        for _ in 0..DRAIN_EVENTS_MAX {
            if self.consumer.poll(Duration::ZERO).is_none() {
                break;
            }
        }
    }
}

/// A polled batch and the decision of which records to apply: the first half of a step.
#[derive(Debug)]
pub struct Polled {
    polled: usize,
    plan: Plan,
}

impl Polled {
    /// How many of its records will be applied.
    pub fn applicable(&self) -> usize {
        self.plan.apply.len()
    }
}
