//! A producer configured by its guarantee, reporting every record's outcome in Jepsen's three
//! words: persisted (ok), not persisted (fail: it did not happen), possibly persisted (info: it
//! may have happened, as when an acknowledgement was lost).
//!
//! It wraps librdkafka's threaded producer: `send` enqueues, a background thread polls, and the
//! caller's [`DeliveryHandler`] hears about each record once, tagged with the caller's number.

use std::time::Duration;

use rdkafka::client::DefaultClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Message};

use crate::error::ClientError;
use crate::guarantee::Guarantee;
use crate::settings::Settings;

/// The outcome of one record, as the broker and librdkafka know it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Written at `offset` of `partition`. Under `acks=0` librdkafka reports success once the
    /// record is on the socket; the offset is then unknown (-1).
    Persisted { partition: i32, offset: i64 },
    /// Definitely not written (for example, timed out before it was ever sent).
    NotPersisted { error: String },
    /// Maybe written: the request went out but no answer came back.
    PossiblyPersisted { error: String },
}

/// Hears the outcome of every record sent, on librdkafka's polling thread.
pub trait DeliveryHandler: Send + Sync + 'static {
    /// `tag` is the number given to [`Producer::send`].
    fn delivered(&self, tag: usize, delivery: Delivery);

    /// librdkafka reports a client-wide error (all brokers down, a failed connection). Such
    /// errors are retried internally; the default traces them, as the rdkafka crate does.
    fn client_error(&self, error: &KafkaError, reason: &str) {
        tracing::error!(%error, reason, "librdkafka producer error");
    }

    /// A librdkafka log line; the default logs it as the rdkafka crate does.
    fn client_log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        DefaultClientContext.log(level, fac, message);
    }
}

/// The librdkafka context that forwards delivery reports to the handler.
pub struct DeliveryContext<H> {
    handler: H,
}

impl<H: DeliveryHandler> ClientContext for DeliveryContext<H> {
    fn error(&self, error: KafkaError, reason: &str) {
        self.handler.client_error(&error, reason);
    }

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.handler.client_log(level, fac, log_message);
    }
}

impl<H: DeliveryHandler> ProducerContext for DeliveryContext<H> {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, tag: usize) {
        let delivery = match result {
            Ok(message) => {
                let (partition, offset) = (message.partition(), message.offset());
                if persisted(message) == Persistence::Possibly {
                    // acks=0: "delivered" means written to the socket, nothing more.
                    Delivery::Persisted {
                        partition,
                        offset: -1,
                    }
                } else {
                    Delivery::Persisted { partition, offset }
                }
            }
            Err((error, message)) => match persisted(message) {
                Persistence::Not => Delivery::NotPersisted {
                    error: error.to_string(),
                },
                Persistence::Possibly | Persistence::Yes => Delivery::PossiblyPersisted {
                    error: error.to_string(),
                },
            },
        };
        self.handler.delivered(tag, delivery);
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Persistence {
    Not,
    Possibly,
    Yes,
}

/// librdkafka's own judgement of whether a reported message reached the log; the rdkafka crate
/// does not wrap it.
fn persisted(message: &rdkafka::message::BorrowedMessage<'_>) -> Persistence {
    use rdkafka::bindings::rd_kafka_msg_status_t as Status;
    // SAFETY: the pointer is the live message of a delivery report, valid for this call.
    let status = unsafe { rdkafka::bindings::rd_kafka_message_status(message.ptr()) };
    match status {
        Status::RD_KAFKA_MSG_STATUS_NOT_PERSISTED => Persistence::Not,
        Status::RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED => Persistence::Possibly,
        Status::RD_KAFKA_MSG_STATUS_PERSISTED => Persistence::Yes,
    }
}

/// How long one wait for delivery reports lasts while draining.
const DRAIN_POLL_STEP: Duration = Duration::from_millis(1);

/// Waits up to `timeout` until librdkafka has reported every record sent, serving delivery
/// reports as they come.
///
/// Not the rdkafka crate's `flush`: in rdkafka 0.39 `BaseProducer::poll(t)` serves events until
/// all of `t` has passed, and `flush` polls in steps of up to 100 ms, so a flush that finds one
/// record in flight returns 100 ms later however soon the broker answered. Its
/// `commit_transaction` flushes first, so every transaction paid that step: 500-record
/// transactions took 120-140 ms, and exactly-once ran at a fiftieth of at-least-once's rate.
/// Once this returns nothing is in flight, and `flush` inside `commit_transaction` returns at
/// its first check.
pub(crate) fn drain<C: ProducerContext + 'static>(
    producer: &ThreadedProducer<C>,
    timeout: Duration,
) -> Result<(), ClientError> {
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 {
        if std::time::Instant::now() >= deadline {
            return Err(ClientError::Kafka {
                action: "flush producer",
                source: KafkaError::Flush(rdkafka::types::RDKafkaErrorCode::OperationTimedOut),
            });
        }
        producer.poll(DRAIN_POLL_STEP);
    }
    Ok(())
}

/// How long one wait for queue room lasts inside [`send_waiting`].
const QUEUE_FULL_STEP: Duration = Duration::from_millis(1);

/// Enqueues `record`, waiting up to `wait` in all for room in librdkafka's queue (serving
/// delivery reports meanwhile), for senders that must not drop a record on a full queue.
pub(crate) fn send_waiting<C, K, P>(
    producer: &ThreadedProducer<C>,
    record: BaseRecord<'_, K, P, C::DeliveryOpaque>,
    wait: Duration,
) -> Result<(), ClientError>
where
    C: ProducerContext + 'static,
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    let deadline = std::time::Instant::now() + wait;
    let mut record = record;
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(code), returned))
                if code == rdkafka::types::RDKafkaErrorCode::QueueFull
                    && std::time::Instant::now() < deadline =>
            {
                record = returned;
                producer.poll(QUEUE_FULL_STEP);
            }
            Err((source, _)) => {
                return Err(ClientError::Kafka {
                    action: "send record",
                    source,
                })
            }
        }
    }
}

/// Why `send` did not enqueue a record. The record was not sent; the caller may try again.
#[derive(Debug, thiserror::Error)]
#[error("enqueue record: {0}")]
pub struct SendError(pub KafkaError);

impl SendError {
    /// True when librdkafka's queue is full: poll a little and send again.
    pub fn is_queue_full(&self) -> bool {
        matches!(
            self.0,
            KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull)
        )
    }
}

/// A producer whose settings come from a [`Guarantee`]. For exactly-once, use
/// [`crate::transactional::Transactional`], which also owns the transaction.
pub struct Producer<H: DeliveryHandler> {
    inner: ThreadedProducer<DeliveryContext<H>>,
    guarantee: Guarantee,
}

impl<H: DeliveryHandler> Producer<H> {
    /// Creates an at-most-once or at-least-once producer.
    pub fn new(guarantee: Guarantee, settings: &Settings, handler: H) -> Result<Self, ClientError> {
        assert!(
            guarantee != Guarantee::ExactlyOnce,
            "exactly-once producers are transactional: use Transactional"
        );
        let config = settings.producer_config(guarantee)?;
        let inner = config
            .create_with_context(DeliveryContext { handler })
            .map_err(ClientError::kafka("create producer"))?;
        Ok(Producer { inner, guarantee })
    }

    pub fn guarantee(&self) -> Guarantee {
        self.guarantee
    }

    /// Enqueues one record; its outcome reaches the handler with `tag`. `partition` `None` lets
    /// the partitioner choose by key.
    pub fn send(
        &self,
        topic: &str,
        partition: Option<i32>,
        key: &[u8],
        payload: &[u8],
        tag: usize,
    ) -> Result<(), SendError> {
        let mut record = BaseRecord::with_opaque_to(topic, tag)
            .key(key)
            .payload(payload);
        if let Some(partition) = partition {
            record = record.partition(partition);
        }
        self.inner
            .send(record)
            .map_err(|(error, _)| SendError(error))
    }

    /// Waits up to `timeout` for every enqueued record to be reported.
    pub fn flush(&self, timeout: Duration) -> Result<(), ClientError> {
        drain(&self.inner, timeout)
    }

    /// Records enqueued or in flight and not yet reported.
    pub fn in_flight(&self) -> i32 {
        self.inner.in_flight_count()
    }

    /// Fails every record not yet reported (their handler calls say whether they may have been
    /// written); used before dropping a producer that must not block.
    pub fn purge(&self) {
        use rdkafka::producer::PurgeConfig;
        self.inner.purge(PurgeConfig::default().queue().inflight());
        self.inner.poll(Duration::ZERO);
    }

    /// The underlying librdkafka client, for metadata and watermarks.
    pub fn client(&self) -> &rdkafka::client::Client<DeliveryContext<H>> {
        self.inner.client()
    }
}
