//! Fetch: stored batches served as they are on disk (no record is decoded or re-encoded), bounded
//! by the response's `max_bytes` (at most the broker's `fetch.max.bytes`) and each partition's
//! `partition_max_bytes`, the first batch of the first partition with data always whole (KIP-74),
//! by the high watermark, or by the last stable offset under read_committed.
//!
//! Under the broker lock a Fetch is only planned ([`PendingFetch`]: the partitions' offsets,
//! high watermarks, aborted transactions and a [`SegmentRead`] each, no I/O); the server runs the
//! reads outside the lock with [`PendingFetch::read`], and the record bytes it sends are the
//! file's own (mapped, not copied). A Fetch whose `min_bytes` are not there waits: the read hands
//! it back as a [`WaitingFetch`] with its deadline (`max_wait_ms`, at most [`FETCH_WAIT_MAX`], on
//! the monotonic clock), and the server asks again when a group-commit round makes data visible
//! or the deadline passes. A read that finds damage fails that partition only
//! (CORRUPT_MESSAGE, or KAFKA_STORAGE_ERROR when the file cannot be read), loudly, and every other
//! partition is served.

use std::time::Duration;

use acl::Operation;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{FetchRequest, FetchResponse};
use kafka_protocol::protocol::StrBytes;
use storage::{LogError, SegmentRead};
use wire::batch::{Batches, Compression};

use super::code;
use crate::config::FETCH_WAIT_MAX;
use crate::{Broker, BrokerError, ClientInfo, Now, Outcome};

const READ_COMMITTED: i8 = 1;

/// The first Fetch version whose clients may be sent zstd batches (KIP-110): an older one is
/// answered UNSUPPORTED_COMPRESSION_TYPE for a partition whose data holds one, as Kafka does.
const ZSTD_MIN_VERSION: i16 = 10;

/// A Fetch waiting for `min_bytes` (see the module comment).
#[derive(Debug)]
pub struct WaitingFetch {
    request: Box<FetchRequest>,
    version: i16,
    /// Per topic of the request, whether its client may not READ it (judged once, when the
    /// Fetch arrived); empty with the authorizer off. A denied topic answers at once, so such
    /// a Fetch never waits.
    denied: Vec<bool>,
    /// When the wait is over, on the monotonic clock (`Now::mono`).
    deadline: Duration,
}

impl WaitingFetch {
    /// When the wait is over, on the monotonic clock of the [`Now`]s passed in.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    /// Ends the wait early (the server shuts down): the next ask answers with what there is.
    pub fn stop_waiting(&mut self) {
        self.deadline = Duration::ZERO;
    }
}

/// A Fetch planned under the broker lock, its reads to be run outside it ([`PendingFetch::read`]).
#[derive(Debug)]
pub struct PendingFetch {
    waiting: WaitingFetch,
    /// The deadline had passed when the fetch was planned: answer with what there is.
    wait_over: bool,
    /// The response's limit: the request's `max_bytes`, at most `fetch.max.bytes`.
    max_bytes: usize,
    /// A partition answered with an error: the response goes now, whatever `min_bytes` says.
    any_error: bool,
    topics: Vec<TopicReads>,
}

#[derive(Debug)]
struct TopicReads {
    response: FetchableTopicResponse,
    partitions: Vec<PartitionRead>,
}

#[derive(Debug)]
struct PartitionRead {
    /// The answer without its records.
    data: PartitionData,
    /// What to read; None when nothing below the high watermark (or last stable offset) is
    /// there, or the partition is answered with an error.
    read: Option<SegmentRead>,
    partition_max_bytes: usize,
    /// For a read-committed fetch: the transactions aborted in the range read.
    aborted: Option<Vec<AbortedTransaction>>,
    /// The topic's name, for a read error's trace (the request's own bytes, not a copy).
    topic: StrBytes,
}

/// What a [`PendingFetch`]'s reads came to.
#[derive(Debug)]
pub enum FetchRead {
    Ready(FetchResponse),
    /// Fewer than `min_bytes` and the wait is not over: ask the broker again
    /// ([`crate::Broker::fetch_again`]) when data becomes visible or at the deadline.
    Short(WaitingFetch),
}

impl PendingFetch {
    /// Runs the planned reads, outside the broker lock (they read files).
    pub fn read(self) -> FetchRead {
        let mut remaining = self.max_bytes;
        let mut total_bytes = 0usize;
        let mut any_error = self.any_error;
        let mut topics = Vec::with_capacity(self.topics.len());
        for topic in self.topics {
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for wanted in topic.partitions {
                let PartitionRead {
                    data,
                    read,
                    partition_max_bytes,
                    aborted,
                    topic,
                } = wanted;
                let budget = remaining.min(partition_max_bytes);
                // KIP-74: the first batch of the first partition with data is served whole, even
                // beyond either limit, so a consumer always makes progress; after it, limits hold.
                let whole_first = total_bytes == 0;
                let records = match read {
                    Some(read) if budget > 0 || whole_first => {
                        match read.run(budget, whole_first) {
                            Ok(records)
                                if self.waiting.version < ZSTD_MIN_VERSION
                                    && holds_zstd(&records) =>
                            {
                                any_error = true;
                                let error = code(ResponseError::UnsupportedCompressionType);
                                partitions.push(
                                    data.with_error_code(error).with_records(Some(Bytes::new())),
                                );
                                continue;
                            }
                            Ok(records) => records,
                            // Retention or DeleteRecords removed the segment after this read
                            // was planned: nothing this time, as for a partition without new
                            // data; planned again, the read meets the new log start
                            // (OFFSET_OUT_OF_RANGE), as Kafka answers such a fetch.
                            Err(error) if segment_gone(&error) => {
                                tracing::debug!(topic = topic.as_str(), partition = data.partition_index, %error, "segment deleted after the fetch was planned");
                                Bytes::new()
                            }
                            Err(error) => {
                                any_error = true;
                                partitions.push(read_failed(data, topic.as_str(), error));
                                continue;
                            }
                        }
                    }
                    _ => Bytes::new(),
                };
                remaining = remaining.saturating_sub(records.len());
                total_bytes += records.len();
                // read_committed clients drop the data of these producers between each entry's
                // first offset and its abort marker; without the list they would deliver aborted
                // records.
                let data = match aborted {
                    Some(aborted) if !records.is_empty() => {
                        data.with_aborted_transactions(Some(aborted))
                    }
                    _ => data,
                };
                partitions.push(data.with_records(Some(records)));
            }
            topics.push(topic.response.with_partitions(partitions));
        }
        let min_bytes = self.waiting.request.min_bytes.max(0) as usize;
        if !self.wait_over && !any_error && total_bytes < min_bytes {
            return FetchRead::Short(self.waiting);
        }
        FetchRead::Ready(FetchResponse::default().with_responses(topics))
    }
}

/// Whether any of these (verified) batches is zstd-compressed.
fn holds_zstd(records: &[u8]) -> bool {
    Batches::new(records)
        .any(|batch| matches!(batch, Ok((_, view)) if view.compression() == Ok(Compression::Zstd)))
}

/// Whether a planned read failed because its segment's file is gone: a sealed segment holds no
/// descriptor (`DiskFile::release`) and is opened again by path when read, after which its
/// deletion may have removed it.
fn segment_gone(error: &LogError) -> bool {
    matches!(error, LogError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
}

/// A partition whose read failed: its error, loud in the log; the other partitions are served.
fn read_failed(data: PartitionData, topic: &str, error: LogError) -> PartitionData {
    let partition = data.partition_index;
    let answer = match error {
        LogError::Corrupt { .. } => ResponseError::CorruptMessage,
        _ => ResponseError::KafkaStorageError,
    };
    tracing::error!(
        topic,
        partition,
        %error,
        "fetch read failed; answering {answer:?} for this partition"
    );
    data.with_error_code(code(answer))
        .with_records(Some(Bytes::new()))
}

/// A Fetch as it arrives: planned now, its reads run by the server.
pub(crate) fn begin(
    broker: &Broker,
    client: &ClientInfo,
    now: Now,
    request: FetchRequest,
    version: i16,
) -> Result<Outcome, BrokerError> {
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let topics = request.topics.iter().map(|t| t.topic.0.as_str());
    let denied = broker.denied_topics(client, Operation::Read, topics);
    let waiting = WaitingFetch {
        request: Box::new(request),
        version,
        denied,
        deadline: now.mono() + wait.min(FETCH_WAIT_MAX),
    };
    again(broker, now, waiting)
}

/// A waiting Fetch asked again: planned anew, from the partitions' state now.
pub(crate) fn again(
    broker: &Broker,
    now: Now,
    waiting: WaitingFetch,
) -> Result<Outcome, BrokerError> {
    let wait_over = now.mono() >= waiting.deadline;
    Ok(Outcome::Fetch(plan(broker, waiting, wait_over)?))
}

/// The partitions' answers without their records, and the reads that will fill them in.
fn plan(
    broker: &Broker,
    waiting: WaitingFetch,
    wait_over: bool,
) -> Result<PendingFetch, BrokerError> {
    let request = &waiting.request;
    let version = waiting.version;
    let read_committed = request.isolation_level == READ_COMMITTED;
    let max_bytes = match usize::try_from(request.max_bytes) {
        Ok(asked) if asked > 0 => asked.min(broker.config.fetch_max_bytes),
        _ => broker.config.fetch_max_bytes,
    };
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for (at, topic) in request.topics.iter().enumerate() {
        let name = topic.topic.0.as_str();
        let denied = waiting.denied.get(at).copied().unwrap_or(false);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let mut read = PartitionRead {
                data: PartitionData::default().with_partition_index(wanted.partition),
                read: None,
                partition_max_bytes: wanted.partition_max_bytes.max(0) as usize,
                aborted: None,
                topic: topic.topic.0.clone(),
            };
            let partition = broker.topics.partition(name, wanted.partition);
            let refused = match partition {
                _ if denied => Some(ResponseError::TopicAuthorizationFailed),
                None => Some(ResponseError::UnknownTopicOrPartition),
                Some(_) => None,
            };
            let (None, Some(partition)) = (refused, partition) else {
                any_error = true;
                let error = refused.expect("refused or found");
                read.data = read.data.with_error_code(code(error));
                partitions.push(read);
                continue;
            };
            let high_watermark = partition.high_watermark();
            let last_stable_offset = partition.last_stable_offset();
            let log_start_offset = partition.log_start_offset();
            read.data = read
                .data
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(last_stable_offset)
                .with_log_start_offset(if version >= 5 { log_start_offset } else { -1 })
                .with_aborted_transactions(read_committed.then(Vec::new));
            let offset = wanted.fetch_offset;
            // Offsets up to the log end are valid (Kafka checks against the log end too); between
            // the high watermark and the log end the answer is empty until the fsync.
            if offset < log_start_offset || offset > partition.log_end_offset() {
                any_error = true;
                read.data = read
                    .data
                    .with_error_code(code(ResponseError::OffsetOutOfRange));
                partitions.push(read);
                continue;
            }
            let end = if read_committed {
                last_stable_offset
            } else {
                high_watermark
            };
            read.read =
                partition
                    .log()
                    .plan_read(offset, end)
                    .map_err(|source| BrokerError::Log {
                        topic: name.to_string(),
                        partition: wanted.partition,
                        source,
                    })?;
            if read_committed && read.read.is_some() {
                let aborted = partition
                    .aborted_in(offset, end)
                    .into_iter()
                    .map(|t| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(t.producer_id))
                            .with_first_offset(t.first_offset)
                    })
                    .collect();
                read.aborted = Some(aborted);
            }
            partitions.push(read);
        }
        topics.push(TopicReads {
            response: FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id),
            partitions,
        });
    }
    Ok(PendingFetch {
        waiting,
        wait_over,
        max_bytes,
        any_error,
        topics,
    })
}
