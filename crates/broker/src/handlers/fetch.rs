//! Fetch: stored batches served as they are on disk (no record is decoded or re-encoded), bounded
//! by `max_bytes` and `partition_max_bytes` (the first batch always whole, KIP-74), by the high
//! watermark, or by the last stable offset under read_committed. A Fetch whose `min_bytes` are
//! not there waits: the broker hands it back as a [`WaitingFetch`] with its deadline
//! (`max_wait_ms`, at most [`FETCH_WAIT_MAX`], on the monotonic clock), and the server asks
//! again when a group-commit round makes data visible or the deadline passes.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::ProducerId;
use kafka_protocol::messages::{FetchRequest, FetchResponse, ResponseKind};

use super::code;
use crate::config::FETCH_WAIT_MAX;
use crate::{Broker, BrokerError, Now, Outcome};

const READ_COMMITTED: i8 = 1;

/// A Fetch waiting for `min_bytes` (see the module comment).
#[derive(Debug)]
pub struct WaitingFetch {
    request: Box<FetchRequest>,
    version: i16,
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

/// A Fetch as it arrives: answered at once, or waiting until its deadline.
pub(crate) fn begin(
    broker: &mut Broker,
    now: Now,
    request: FetchRequest,
    version: i16,
) -> Result<Outcome, BrokerError> {
    let wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
    let waiting = WaitingFetch {
        request: Box::new(request),
        version,
        deadline: now.mono() + wait.min(FETCH_WAIT_MAX),
    };
    again(broker, now, waiting)
}

/// A waiting Fetch asked again: answered if its data is there or its wait is over.
pub(crate) fn again(
    broker: &mut Broker,
    now: Now,
    waiting: WaitingFetch,
) -> Result<Outcome, BrokerError> {
    let wait_over = now.mono() >= waiting.deadline;
    Ok(
        match handle(broker, &waiting.request, waiting.version, wait_over)? {
            Some(response) => Outcome::Respond(ResponseKind::Fetch(response)),
            None => Outcome::Wait(waiting),
        },
    )
}

/// The response, or `None` while `min_bytes` are not there and the wait is not over.
fn handle(
    broker: &mut Broker,
    request: &FetchRequest,
    version: i16,
    wait_over: bool,
) -> Result<Option<FetchResponse>, BrokerError> {
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut remaining = if request.max_bytes > 0 {
        request.max_bytes as usize
    } else {
        usize::MAX
    };
    let mut total_bytes = 0usize;
    let mut any_error = false;
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let name = topic.topic.0.to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let data = PartitionData::default().with_partition_index(wanted.partition);
            let Some(partition) = broker.topics.partition(&name, wanted.partition) else {
                any_error = true;
                partitions.push(data.with_error_code(code(ResponseError::UnknownTopicOrPartition)));
                continue;
            };
            let high_watermark = partition.high_watermark();
            let last_stable_offset = partition.last_stable_offset();
            let log_start_offset = partition.log_start_offset();
            let data = data
                .with_high_watermark(high_watermark)
                .with_last_stable_offset(last_stable_offset)
                .with_log_start_offset(if version >= 5 { log_start_offset } else { -1 })
                .with_aborted_transactions(read_committed.then(Vec::new));
            let offset = wanted.fetch_offset;
            // Offsets up to the log end are valid (Kafka checks against the log end too); between
            // the high watermark and the log end the answer is empty until the fsync.
            if offset < log_start_offset || offset > partition.log_end_offset() {
                any_error = true;
                partitions.push(data.with_error_code(code(ResponseError::OffsetOutOfRange)));
                continue;
            }
            let end = if read_committed {
                last_stable_offset
            } else {
                high_watermark
            };
            let budget = remaining.min(wanted.partition_max_bytes.max(0) as usize);
            let records = if budget == 0 || offset >= end {
                Vec::new()
            } else {
                partition
                    .log()
                    .read(offset, budget, end)
                    .map_err(|source| BrokerError::Log {
                        topic: name.clone(),
                        partition: wanted.partition,
                        source,
                    })?
            };
            remaining = remaining.saturating_sub(records.len());
            total_bytes += records.len();
            // read_committed clients drop the data of these producers between each entry's first
            // offset and its abort marker; without the list they would deliver aborted records.
            let data = if read_committed && !records.is_empty() {
                let aborted = partition
                    .aborted_in(offset, end)
                    .into_iter()
                    .map(|t| {
                        AbortedTransaction::default()
                            .with_producer_id(ProducerId(t.producer_id))
                            .with_first_offset(t.first_offset)
                    })
                    .collect();
                data.with_aborted_transactions(Some(aborted))
            } else {
                data
            };
            partitions.push(data.with_records(Some(Bytes::from(records))));
        }
        topics.push(
            FetchableTopicResponse::default()
                .with_topic(topic.topic.clone())
                .with_topic_id(topic.topic_id)
                .with_partitions(partitions),
        );
    }
    let min_bytes = request.min_bytes.max(0) as usize;
    if !wait_over && !any_error && total_bytes < min_bytes {
        return Ok(None);
    }
    Ok(Some(FetchResponse::default().with_responses(topics)))
}
