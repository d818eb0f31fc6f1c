//! Exactly-once: an idempotent, transactional producer, and the consume-transform-produce loop
//! that puts a batch's outputs and its consumer offsets in one transaction. Either all of it
//! becomes visible to read_committed readers and the offsets move, or none of it and the batch
//! is read again.
//!
//! ```text
//! poll ─ begin ─ send outputs ─ send offsets to transaction ─ commit
//!                      └─ any failure: abort, seek back to the batch's first records
//! ```
//!
//! A restarted instance with the same `transactional.id` fences its predecessor: the old one's
//! open transaction is aborted by the broker and its later sends are refused.
//!
//! The lab's exactly-once run (`docs/lab.md`, "Exactly-once") drives librdkafka's transaction
//! API directly, to record every send and transaction in its history; this loop is the
//! library's packaged form of the same calls.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _, ConsumerContext, DefaultConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer as _, ThreadedProducer};

use crate::consumer::{
    next_offsets, offset_list, poll_records, seek_to_first, Record, BATCH_RECORDS_MAX_DEFAULT,
};
use crate::error::ClientError;
use crate::guarantee::Guarantee;
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

/// A transactional producer: `begin`, `send`, then `commit` or `abort`.
pub struct TxnProducer {
    inner: ThreadedProducer<DefaultProducerContext>,
    call_timeout: Duration,
}

impl TxnProducer {
    /// Creates the producer and registers its transactional id with the broker (fencing any
    /// previous instance with the same id).
    pub fn new(settings: &Settings) -> Result<TxnProducer, ClientError> {
        let inner: ThreadedProducer<DefaultProducerContext> = settings
            .producer_config(Guarantee::ExactlyOnce)?
            .create()
            .map_err(ClientError::kafka("create transactional producer"))?;
        let call_timeout = TRANSACTION_CALL_TIMEOUT_DEFAULT;
        inner
            .init_transactions(call_timeout)
            .map_err(ClientError::kafka("init transactions"))?;
        Ok(TxnProducer {
            inner,
            call_timeout,
        })
    }

    pub fn begin(&self) -> Result<(), ClientError> {
        self.inner
            .begin_transaction()
            .map_err(ClientError::kafka("begin transaction"))
    }

    /// Enqueues `output` in the open transaction, waiting for queue room if needed.
    pub fn send(&self, output: &Output) -> Result<(), ClientError> {
        let deadline = std::time::Instant::now() + QUEUE_FULL_WAIT;
        loop {
            let mut record = BaseRecord::to(&output.topic)
                .key(&output.key)
                .payload(&output.payload);
            if let Some(partition) = output.partition {
                record = record.partition(partition);
            }
            match self.inner.send(record) {
                Ok(()) => return Ok(()),
                Err((KafkaError::MessageProduction(code), _))
                    if code == rdkafka::types::RDKafkaErrorCode::QueueFull
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((source, _)) => {
                    return Err(ClientError::Kafka {
                        action: "send in transaction",
                        source,
                    })
                }
            }
        }
    }

    pub fn commit(&self) -> Result<(), ClientError> {
        self.inner
            .commit_transaction(self.call_timeout)
            .map_err(ClientError::kafka("commit transaction"))
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
}

/// Why a transactional step did not commit. In every case but `Poll` the transaction was
/// aborted (or the abort itself failed, see `abort_error`) and the batch will be read again.
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
        })
    }

    pub fn subscribe(&self, topics: &[&str]) -> Result<(), ClientError> {
        self.consumer
            .subscribe(topics)
            .map_err(ClientError::kafka("subscribe"))
    }

    pub fn consumer(&self) -> &BaseConsumer<C> {
        &self.consumer
    }

    /// Polls a batch and, in one transaction, produces `transform`'s outputs for each record
    /// and commits the batch's offsets.
    pub fn step<E>(
        &self,
        timeout: Duration,
        mut transform: impl FnMut(&Record) -> Result<Vec<Output>, E>,
    ) -> Result<TxnStep, TxnError<E>> {
        let batch = poll_records(&self.consumer, self.batch_records_max, timeout)
            .map_err(TxnError::Poll)?;
        let mut step = TxnStep {
            polled: batch.len(),
            outputs: 0,
        };
        if batch.is_empty() {
            return Ok(step);
        }
        if let Err(error) = self.producer.begin() {
            seek_to_first(&self.consumer, &batch);
            return Err(TxnError::Transaction {
                error: Box::new(error),
                abort_error: None,
            });
        }
        for record in &batch {
            let outputs = match transform(record) {
                Ok(outputs) => outputs,
                Err(error) => {
                    let abort_error = self.abort(&batch);
                    return Err(TxnError::Transform { error, abort_error });
                }
            };
            for output in &outputs {
                if let Err(error) = self.producer.send(output) {
                    let abort_error = self.abort(&batch);
                    return Err(TxnError::Transaction {
                        error: Box::new(error),
                        abort_error,
                    });
                }
            }
            step.outputs += outputs.len();
        }
        if let Err(error) = self.commit_with_offsets(&batch) {
            let abort_error = self.abort(&batch);
            return Err(TxnError::Transaction {
                error: Box::new(error),
                abort_error,
            });
        }
        Ok(step)
    }

    fn commit_with_offsets(&self, batch: &[Record]) -> Result<(), ClientError> {
        let offsets = offset_list(&next_offsets(batch))?;
        let group = self
            .consumer
            .group_metadata()
            .ok_or(ClientError::MissingSetting("group.id"))?;
        self.producer
            .inner
            .send_offsets_to_transaction(&offsets, &group, self.producer.call_timeout)
            .map_err(ClientError::kafka("send offsets to transaction"))?;
        self.producer.commit()
    }

    fn abort(&self, batch: &[Record]) -> Option<Box<ClientError>> {
        let abort_error = self.producer.abort().err().map(Box::new);
        seek_to_first(&self.consumer, batch);
        abort_error
    }
}
