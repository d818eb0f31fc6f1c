//! Exactly-once: an idempotent, transactional producer, and the consume-transform-produce loop
//! that puts its outputs and its consumer offsets in one transaction. Either all of it becomes
//! visible to read_committed readers and the offsets move, or none of it and the records are
//! read again.
//!
//! ```text
//! poll ─ begin (first batch of a window) ─ send outputs ─ … more batches …
//!      ─ window due (100 ms by default): send offsets to transaction ─ commit
//!                      └─ any failure: abort, seek back to the window's first records
//! ```
//!
//! A transaction stays open for a [`CommitPolicy`] window, as Kafka Streams' exactly-once
//! `commit.interval.ms`: a commit drains the producer and waits for the transaction's markers,
//! so committing every batch would make that wait the cost of every batch. Readers see a
//! window's records when it commits, so the interval is also the latency exactly-once adds.
//!
//! A restarted instance with the same `transactional.id` fences its predecessor: the old one's
//! open transaction is aborted by the broker and its later sends are refused.
//!
//! The lab's exactly-once run (`docs/lab.md`, "Exactly-once") drives [`TxnProducer`] with its
//! own context, to record every send and transaction in its history.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, DefaultConsumerContext};
use rdkafka::message::ToBytes;
use rdkafka::producer::{
    BaseRecord, DefaultProducerContext, Producer as _, ProducerContext, ThreadedProducer,
};

use crate::commit::{CommitPolicy, Window};
use crate::consumer::{
    offset_list, poll_records, seek_to_first, Record, Span, BATCH_RECORDS_MAX_DEFAULT,
};
use crate::error::ClientError;
use crate::guarantee::Guarantee;
use crate::producer::{drain, send_waiting};
use crate::settings::Settings;

/// The default time allowed for each transaction call (init, offsets, commit, abort).
pub const TRANSACTION_CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// How long `send` waits in total for room in librdkafka's queue inside a transaction.
const QUEUE_FULL_WAIT: Duration = Duration::from_secs(30);

/// One record to produce inside the transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub topic: String,
    pub partition: Option<i32>,
    pub key: Vec<u8>,
    pub payload: Vec<u8>,
}

/// A transactional producer: `begin`, `send`, then `commit` or `abort`. `C` is the librdkafka
/// context that hears delivery reports (the lab's records each one in its history).
pub struct TxnProducer<C: ProducerContext + 'static = DefaultProducerContext> {
    inner: ThreadedProducer<C>,
    call_timeout: Duration,
}

impl TxnProducer<DefaultProducerContext> {
    /// Creates the producer and registers its transactional id with the broker (fencing any
    /// previous instance with the same id).
    pub fn new(settings: &Settings) -> Result<Self, ClientError> {
        TxnProducer::with_context(
            settings,
            DefaultProducerContext,
            TRANSACTION_CALL_TIMEOUT_DEFAULT,
        )
    }

    /// Enqueues `output` in the open transaction, waiting for queue room if needed.
    pub fn send(&self, output: &Output) -> Result<(), ClientError> {
        let mut record = BaseRecord::to(&output.topic)
            .key(&output.key)
            .payload(&output.payload);
        if let Some(partition) = output.partition {
            record = record.partition(partition);
        }
        self.send_record(record)
    }
}

impl<C: ProducerContext + 'static> TxnProducer<C> {
    /// As [`TxnProducer::new`], with the caller's context and time allowed for each
    /// transaction call (init, drain, commit, abort).
    pub fn with_context(
        settings: &Settings,
        context: C,
        call_timeout: Duration,
    ) -> Result<Self, ClientError> {
        let inner: ThreadedProducer<C> = settings
            .producer_config(Guarantee::ExactlyOnce)?
            .create_with_context(context)
            .map_err(ClientError::kafka("create transactional producer"))?;
        inner
            .init_transactions(call_timeout)
            .map_err(ClientError::kafka("init transactions"))?;
        Ok(TxnProducer {
            inner,
            call_timeout,
        })
    }

    /// The librdkafka producer, for metadata.
    pub fn inner(&self) -> &ThreadedProducer<C> {
        &self.inner
    }

    pub fn begin(&self) -> Result<(), ClientError> {
        self.inner
            .begin_transaction()
            .map_err(ClientError::kafka("begin transaction"))
    }

    /// Enqueues `record` in the open transaction, waiting for queue room if needed (up to
    /// [`QUEUE_FULL_WAIT`]).
    pub fn send_record<K, P>(
        &self,
        record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
    ) -> Result<(), ClientError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        send_waiting(&self.inner, record, QUEUE_FULL_WAIT)
    }

    /// Waits until every record sent has been acknowledged (or failed), serving the delivery
    /// reports promptly (see [`crate::producer`]'s `drain`).
    pub fn flush(&self) -> Result<(), ClientError> {
        drain(&self.inner, self.call_timeout)
    }

    /// Flushes, then commits: EndTxn, whose markers make the transaction's records visible to
    /// read_committed consumers.
    pub fn commit(&self) -> Result<(), ClientError> {
        self.flush()?;
        self.inner
            .commit_transaction(self.call_timeout)
            .map_err(ClientError::kafka("commit transaction"))
    }

    /// Adds the consumer's offsets to the open transaction.
    pub fn send_offsets(
        &self,
        offsets: &rdkafka::TopicPartitionList,
        group: &rdkafka::consumer::ConsumerGroupMetadata,
    ) -> Result<(), ClientError> {
        self.inner
            .send_offsets_to_transaction(offsets, group, self.call_timeout)
            .map_err(ClientError::kafka("send offsets to transaction"))
    }

    pub fn abort(&self) -> Result<(), ClientError> {
        self.inner
            .abort_transaction(self.call_timeout)
            .map_err(ClientError::kafka("abort transaction"))
    }
}

/// What one transactional step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TxnStep {
    pub polled: usize,
    pub outputs: usize,
    /// Whether the step committed the open transaction (its window was due).
    pub committed: bool,
}

/// Why a transactional step did not commit. In every case but `Poll` the transaction was
/// aborted (or the abort itself failed, see `abort_error`) and the window's records will be
/// read again.
#[derive(Debug, thiserror::Error)]
pub enum TxnError<E> {
    #[error("poll records: {0}")]
    Poll(ClientError),
    #[error("transform failed")]
    Transform {
        error: E,
        abort_error: Option<Box<ClientError>>,
    },
    #[error("transaction failed: {error}")]
    Transaction {
        error: Box<ClientError>,
        abort_error: Option<Box<ClientError>>,
    },
}

/// Consume-transform-produce with offsets in the transaction.
pub struct Transactional<C: ConsumerContext + 'static = DefaultConsumerContext> {
    consumer: BaseConsumer<C>,
    producer: TxnProducer,
    batch_records_max: usize,
    policy: CommitPolicy,
    /// The open transaction's window and the records it consumed.
    open: Option<(Window, Span)>,
}

impl Transactional<DefaultConsumerContext> {
    pub fn new(settings: &Settings) -> Result<Self, ClientError> {
        Transactional::with_context(settings, DefaultConsumerContext)
    }
}

impl<C: ConsumerContext + 'static> Transactional<C> {
    /// `settings` needs both a group id and a transactional id.
    pub fn with_context(settings: &Settings, context: C) -> Result<Self, ClientError> {
        let consumer = settings
            .consumer_config(Guarantee::ExactlyOnce)?
            .create_with_context(context)
            .map_err(ClientError::kafka("create read_committed consumer"))?;
        let producer = TxnProducer::new(settings)?;
        Ok(Transactional {
            consumer,
            producer,
            batch_records_max: BATCH_RECORDS_MAX_DEFAULT,
            policy: CommitPolicy::default(),
            open: None,
        })
    }

    /// Sets how long a transaction stays open and how many records it may consume.
    pub fn commit_policy(mut self, policy: CommitPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn subscribe(&self, topics: &[&str]) -> Result<(), ClientError> {
        self.consumer
            .subscribe(topics)
            .map_err(ClientError::kafka("subscribe"))
    }

    pub fn consumer(&self) -> &BaseConsumer<C> {
        &self.consumer
    }

    /// Polls a batch and produces `transform`'s outputs for each record in the open transaction
    /// (beginning one if none is open); commits the transaction with its consumed offsets once
    /// its window is due. The poll waits at most until then, so a quiet topic still commits on
    /// time.
    pub fn step<E>(
        &mut self,
        timeout: Duration,
        mut transform: impl FnMut(&Record) -> Result<Vec<Output>, E>,
    ) -> Result<TxnStep, TxnError<E>> {
        let timeout = match &self.open {
            Some((window, _)) => timeout.min(self.policy.remaining(window.opened, Instant::now())),
            None => timeout,
        };
        let batch = poll_records(&self.consumer, self.batch_records_max, timeout)
            .map_err(TxnError::Poll)?;
        let mut step = TxnStep {
            polled: batch.len(),
            ..TxnStep::default()
        };
        if !batch.is_empty() {
            if self.open.is_none() {
                if let Err(error) = self.producer.begin() {
                    seek_to_first(&self.consumer, &batch);
                    return Err(TxnError::Transaction {
                        error: Box::new(error),
                        abort_error: None,
                    });
                }
                self.open = Some((Window::open(Instant::now()), Span::default()));
            }
            let (window, span) = self.open.as_mut().expect("a transaction is open");
            window.records += batch.len();
            span.add(&batch);
            step.outputs = self.transform_into_open(&batch, &mut transform)?;
        }
        let due = self.open.as_ref().is_some_and(|(window, _)| {
            self.policy
                .due(window.opened, window.records, Instant::now())
        });
        if due {
            self.commit_open()?;
            step.committed = true;
        }
        Ok(step)
    }

    /// Commits the open transaction now, if one is open (before a clean shutdown).
    pub fn commit_open<E>(&mut self) -> Result<(), TxnError<E>> {
        let Some((_, span)) = &self.open else {
            return Ok(());
        };
        if let Err(error) = self.commit_with_offsets(span) {
            let abort_error = self.abort_open();
            return Err(TxnError::Transaction {
                error: Box::new(error),
                abort_error,
            });
        }
        self.open = None;
        Ok(())
    }

    fn transform_into_open<E>(
        &mut self,
        batch: &[Record],
        transform: &mut impl FnMut(&Record) -> Result<Vec<Output>, E>,
    ) -> Result<usize, TxnError<E>> {
        let mut sent = 0;
        for record in batch {
            let outputs = match transform(record) {
                Ok(outputs) => outputs,
                Err(error) => {
                    let abort_error = self.abort_open();
                    return Err(TxnError::Transform { error, abort_error });
                }
            };
            for output in &outputs {
                if let Err(error) = self.producer.send(output) {
                    let abort_error = self.abort_open();
                    return Err(TxnError::Transaction {
                        error: Box::new(error),
                        abort_error,
                    });
                }
            }
            sent += outputs.len();
        }
        Ok(sent)
    }

    fn commit_with_offsets(&self, span: &Span) -> Result<(), ClientError> {
        let offsets = offset_list(span.next_offsets())?;
        let group = self
            .consumer
            .group_metadata()
            .ok_or(ClientError::MissingSetting("group.id"))?;
        self.producer.send_offsets(&offsets, &group)?;
        self.producer.commit()
    }

    /// Aborts the open transaction and seeks back to its first records.
    fn abort_open(&mut self) -> Option<Box<ClientError>> {
        let (_, span) = self.open.take()?;
        let abort_error = self.producer.abort().err().map(Box::new);
        span.seek_back(&self.consumer);
        abort_error
    }
}
