//! A group consumer whose loop commits where its guarantee says: before processing a batch
//! (at-most-once) or after it (at-least-once). One [`Consumer::step`] polls a batch and runs the
//! loop once; the order inside a step is the whole guarantee, so it is written out plainly.
//!
//! ```text
//! at-most-once:   poll ─ commit ─ process each      crash after commit: the rest is lost
//! at-least-once:  poll ─ process each ─ commit      crash before commit: all of it comes again
//!                        (commit when the window is due: every 100 ms by default)
//! ```
//!
//! At-least-once commits on a [`CommitPolicy`]: processed records join an open window whose
//! offsets are committed once it is due, so a commit (a synchronous round trip) is paid once per
//! interval rather than once per batch. A crash redelivers the whole uncommitted window, which
//! the guarantee allows. At-most-once must commit each batch before processing it, so it has no
//! window.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer as _, ConsumerContext, DefaultConsumerContext,
};
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::commit::{CommitPolicy, Window};
use crate::error::ClientError;
use crate::guarantee::{CommitPoint, Guarantee};
use crate::settings::Settings;

/// The default most records handed out by one step.
pub const BATCH_RECORDS_MAX_DEFAULT: usize = 500;

/// How long a step waits for a seek back after a failed handler (at-least-once).
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);

/// One consumed record, owned, so a batch outlives the poll that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
    pub timestamp_ms: Option<i64>,
    /// Headers in record order (a header without a value has an empty one).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// What one step did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Step {
    /// Records polled.
    pub polled: usize,
    /// Records handed to the handler that returned Ok.
    pub processed: usize,
    /// Whether this step committed: at-most-once commits every batch, at-least-once the open
    /// window (this batch and those before it) when the window is due.
    pub committed: bool,
    /// Why the commit failed, when it did (at-least-once: the window is committed again at
    /// the next due step; a crash before then redelivers it).
    pub commit_error: Option<String>,
}

/// Why a step stopped early.
#[derive(Debug, thiserror::Error)]
pub enum StepError<E> {
    #[error("poll records: {0}")]
    Poll(ClientError),
    /// At-most-once only: the commit before processing failed, so the batch was not processed.
    /// Processing it could deliver it twice (the commit may not have happened); not processing it
    /// loses it, which the guarantee allows.
    #[error("commit before processing failed, {skipped} records not processed: {error}")]
    Commit { error: ClientError, skipped: usize },
    /// The handler failed after `processed` records of the batch. At-least-once seeks back, so
    /// the failed record and the rest of the batch come again; at-most-once has committed them
    /// already, so they are lost.
    #[error("handler failed after {processed} records")]
    Handler { error: E, processed: usize },
}

/// Hears about commits as they happen, for histories and metrics. Every method has a no-op
/// default.
pub trait Observer {
    /// A commit of `offsets` (partition, next offset) is about to be sent.
    fn commit_started(&mut self, _offsets: &[(i32, i64)]) {}
    /// The commit finished; `Err` carries librdkafka's reason.
    fn commit_finished(&mut self, _result: Result<(), &ClientError>) {}
}

/// The observer that hears nothing.
pub struct NoObserver;

impl Observer for NoObserver {}

/// A group consumer whose commit point is its guarantee's. Exactly-once consumption goes through
/// [`crate::transactional::Transactional`] instead.
pub struct Consumer<C: ConsumerContext + 'static = DefaultConsumerContext> {
    inner: BaseConsumer<C>,
    guarantee: Guarantee,
    batch_records_max: usize,
    policy: CommitPolicy,
    /// At-least-once: records processed and not yet committed.
    window: Option<(Window, Span)>,
}

impl Consumer<DefaultConsumerContext> {
    pub fn new(guarantee: Guarantee, settings: &Settings) -> Result<Self, ClientError> {
        Consumer::with_context(guarantee, settings, DefaultConsumerContext)
    }
}

impl<C: ConsumerContext + 'static> Consumer<C> {
    /// Creates an at-most-once or at-least-once consumer with a librdkafka context of the
    /// caller's (for rebalance callbacks).
    pub fn with_context(
        guarantee: Guarantee,
        settings: &Settings,
        context: C,
    ) -> Result<Self, ClientError> {
        assert!(
            guarantee != Guarantee::ExactlyOnce,
            "exactly-once consumption is transactional: use Transactional"
        );
        let inner = settings
            .consumer_config(guarantee)?
            .create_with_context(context)
            .map_err(ClientError::kafka("create consumer"))?;
        Ok(Consumer {
            inner,
            guarantee,
            batch_records_max: BATCH_RECORDS_MAX_DEFAULT,
            policy: CommitPolicy::default(),
            window: None,
        })
    }

    /// Sets the most records one step handles.
    pub fn batch_records_max(mut self, batch_records_max: usize) -> Self {
        assert!(batch_records_max > 0, "a batch holds at least one record");
        self.batch_records_max = batch_records_max;
        self
    }

    /// Sets how often at-least-once commits (at-most-once commits every batch regardless).
    pub fn commit_policy(mut self, policy: CommitPolicy) -> Self {
        self.policy = policy;
        self
    }

    pub fn subscribe(&self, topics: &[&str]) -> Result<(), ClientError> {
        self.inner
            .subscribe(topics)
            .map_err(ClientError::kafka("subscribe"))
    }

    /// The librdkafka consumer, for assignment, positions and watermarks.
    pub fn inner(&self) -> &BaseConsumer<C> {
        &self.inner
    }

    /// Waits up to `timeout` for a first record, then takes what is already there, up to the
    /// batch limit.
    pub fn poll_batch(&self, timeout: Duration) -> Result<Vec<Record>, ClientError> {
        poll_records(&self.inner, self.batch_records_max, timeout)
    }

    /// Commits, synchronously, the offsets after the last record of each partition in `batch`.
    pub fn commit(&self, batch: &[Record], observer: &mut dyn Observer) -> Result<(), ClientError> {
        self.commit_offsets(&next_offsets(batch), observer)
    }

    fn commit_offsets(
        &self,
        offsets: &BTreeMap<(String, i32), i64>,
        observer: &mut dyn Observer,
    ) -> Result<(), ClientError> {
        let list = offset_list(offsets)?;
        let pairs: Vec<(i32, i64)> = offsets.iter().map(|((_, p), o)| (*p, *o)).collect();
        observer.commit_started(&pairs);
        let result = self
            .inner
            .commit(&list, CommitMode::Sync)
            .map_err(ClientError::kafka("commit offsets"));
        observer.commit_finished(result.as_ref().map(|_| ()));
        result
    }

    /// Polls one batch and runs the guarantee's loop over it once. The poll waits at most until
    /// the open window is due, so a quiet topic still commits on time.
    pub fn step<E>(
        &mut self,
        timeout: Duration,
        observer: &mut dyn Observer,
        mut handler: impl FnMut(&Record) -> Result<(), E>,
    ) -> Result<Step, StepError<E>> {
        let timeout = match &self.window {
            Some((window, _)) => timeout.min(self.policy.remaining(window.opened, Instant::now())),
            None => timeout,
        };
        let batch = self.poll_batch(timeout).map_err(StepError::Poll)?;
        let mut step = Step {
            polled: batch.len(),
            ..Step::default()
        };
        if self.guarantee.commit_point() == CommitPoint::BeforeProcessing {
            if !batch.is_empty() {
                if let Err(error) = self.commit(&batch, observer) {
                    return Err(StepError::Commit {
                        error,
                        skipped: batch.len(),
                    });
                }
                step.committed = true;
            }
            for record in &batch {
                if let Err(error) = handler(record) {
                    return Err(StepError::Handler {
                        error,
                        processed: step.processed,
                    });
                }
                step.processed += 1;
            }
            return Ok(step);
        }
        for record in &batch {
            if let Err(error) = handler(record) {
                self.add_to_window(&batch[..step.processed]);
                seek_to_first(&self.inner, &batch[step.processed..]);
                return Err(StepError::Handler {
                    error,
                    processed: step.processed,
                });
            }
            step.processed += 1;
        }
        self.add_to_window(&batch);
        let now = Instant::now();
        let due = self
            .window
            .as_ref()
            .is_some_and(|(window, _)| self.policy.due(window.opened, window.records, now));
        if due {
            match self.commit_window(observer) {
                Ok(()) => step.committed = true,
                Err(error) => step.commit_error = Some(error.to_string()),
            }
        }
        Ok(step)
    }

    /// Commits the open window now, if there is one (before a clean shutdown).
    pub fn commit_window(&mut self, observer: &mut dyn Observer) -> Result<(), ClientError> {
        let Some((window, span)) = self.window.take() else {
            return Ok(());
        };
        let result = self.commit_offsets(span.next_offsets(), observer);
        if result.is_err() {
            // Committed again when the next window is due; a crash first redelivers it.
            self.window = Some((
                Window {
                    opened: Instant::now(),
                    ..window
                },
                span,
            ));
        }
        result
    }

    fn add_to_window(&mut self, processed: &[Record]) {
        if processed.is_empty() {
            return;
        }
        let (window, span) = self
            .window
            .get_or_insert_with(|| (Window::open(Instant::now()), Span::default()));
        window.records += processed.len();
        span.add(processed);
    }
}

/// Waits up to `timeout` for a first record, then takes what is already there, up to
/// `records_max`.
pub fn poll_records<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    records_max: usize,
    timeout: Duration,
) -> Result<Vec<Record>, ClientError> {
    let mut batch = Vec::new();
    let mut wait = timeout;
    while batch.len() < records_max {
        match consumer.poll(wait) {
            None => break,
            Some(Ok(message)) => batch.push(Record {
                topic: message.topic().to_string(),
                partition: message.partition(),
                offset: message.offset(),
                key: message.key().map(<[u8]>::to_vec),
                payload: message.payload().map(<[u8]>::to_vec),
                timestamp_ms: message.timestamp().to_millis(),
                headers: headers_of(&message),
            }),
            // An error after some records ends the batch; the records are still good.
            Some(Err(error)) if batch.is_empty() => {
                return Err(ClientError::Kafka {
                    action: "poll records",
                    source: error,
                })
            }
            Some(Err(error)) => {
                tracing::debug!(%error, "poll ended a batch early");
                break;
            }
        }
        wait = Duration::ZERO;
    }
    Ok(batch)
}

/// Waits up to `timeout` for a first record, then keeps taking records until `policy` is due
/// for the window that record opened (its interval has passed since, or it holds the record
/// cap): one commit window's worth of records, for loops that commit a window at once.
pub fn poll_window<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    policy: CommitPolicy,
    timeout: Duration,
) -> Result<Vec<Record>, ClientError> {
    let mut batch = poll_records(consumer, policy.records_max, timeout)?;
    let opened = Instant::now();
    while !batch.is_empty() && !policy.due(opened, batch.len(), Instant::now()) {
        let wait = policy.remaining(opened, Instant::now());
        match poll_records(consumer, policy.records_max - batch.len(), wait) {
            Ok(more) => batch.extend(more),
            // The records taken are still good; the error comes again at the next poll.
            Err(error) => {
                tracing::debug!(%error, "poll ended a window early");
                break;
            }
        }
    }
    Ok(batch)
}

/// The high watermark of `topic`/`partition` as librdkafka cached it from the consumer's last
/// fetch of that partition, without a request (the rdkafka crate wraps only the request). `None`
/// when nothing was fetched from it yet. Cached watermarks lag the broker's, never lead them.
pub fn cached_high_watermark<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: a live client handle, a NUL-terminated topic name and two out-pointers, all valid
    // for the duration of the call; librdkafka only reads its cache under its own lock.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            consumer.client().native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}

/// The librdkafka list of `offsets`.
pub fn offset_list(
    offsets: &BTreeMap<(String, i32), i64>,
) -> Result<TopicPartitionList, ClientError> {
    let mut list = TopicPartitionList::new();
    for ((topic, partition), offset) in offsets {
        list.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            .map_err(ClientError::kafka("build offset list"))?;
    }
    Ok(list)
}

/// Rewinds each partition of `consumer` to its first record in `records`, so they are polled
/// again.
pub(crate) fn seek_to_first<C: ConsumerContext>(consumer: &BaseConsumer<C>, records: &[Record]) {
    let mut span = Span::default();
    span.add(records);
    span.seek_back(consumer);
}

/// The records a commit window has taken so far, per partition: the first offset (where to
/// seek back to if the window fails) and the next offset (what its commit stores).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Span {
    first: BTreeMap<(String, i32), i64>,
    next: BTreeMap<(String, i32), i64>,
}

impl Span {
    pub fn add(&mut self, records: &[Record]) {
        for record in records {
            let key = (record.topic.clone(), record.partition);
            self.first.entry(key.clone()).or_insert(record.offset);
            let next = self.next.entry(key).or_insert(0);
            *next = (*next).max(record.offset + 1);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.next.is_empty()
    }

    /// The offset after the last record taken, per partition.
    pub fn next_offsets(&self) -> &BTreeMap<(String, i32), i64> {
        &self.next
    }

    /// Rewinds each partition to the window's first record, so the window is polled again.
    pub fn seek_back<C: ConsumerContext>(&self, consumer: &BaseConsumer<C>) {
        for ((topic, partition), &offset) in &self.first {
            let seek = consumer.seek(topic, *partition, Offset::Offset(offset), SEEK_TIMEOUT);
            if let Err(error) = seek {
                // The records still come again after a restart or rebalance, from the last
                // commit; until then this instance would skip them.
                tracing::warn!(%error, topic, partition, offset, "seek back");
            }
        }
    }
}

fn headers_of(message: &rdkafka::message::BorrowedMessage<'_>) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::Headers;
    let Some(headers) = message.headers() else {
        return Vec::new();
    };
    headers
        .iter()
        .map(|h| (h.key.to_string(), h.value.unwrap_or_default().to_vec()))
        .collect()
}

/// The offset after the last record of each (topic, partition) in `batch`.
pub fn next_offsets(batch: &[Record]) -> BTreeMap<(String, i32), i64> {
    let mut span = Span::default();
    span.add(batch);
    span.next
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(partition: i32, offset: i64) -> Record {
        Record {
            topic: "t".into(),
            partition,
            offset,
            key: None,
            payload: None,
            timestamp_ms: None,
            headers: Vec::new(),
        }
    }

    #[test]
    fn next_offsets_take_the_highest_per_partition() {
        let batch = [record(0, 5), record(1, 2), record(0, 7), record(0, 6)];
        let offsets: Vec<_> = next_offsets(&batch).into_iter().collect();
        assert_eq!(offsets, vec![(("t".into(), 0), 8), (("t".into(), 1), 3)]);
    }
}
