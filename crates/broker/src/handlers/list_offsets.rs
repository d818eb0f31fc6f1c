//! ListOffsets: earliest (-2) is the log start offset, latest (-1) the high watermark (the last
//! stable offset under read_committed), a timestamp the first record whose timestamp reaches it,
//! and max timestamp (-3, v7+) the first record carrying the log's largest timestamp, as in Kafka;
//! a record found at or above the high watermark (last stable offset) is not answered (-1).
//! Inside a compressed batch ferry does not decompress: the answer is then the batch's first
//! offset and its max timestamp. With no tiered storage, earliest local (-4, v8+) is the log start
//! offset and latest tiered (-5, v9+) is -1, as Kafka answers without remote storage.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse, ResponseKind, TopicName};

use super::code;
use acl::Operation;
use storage::{LogError, TimestampLookup};

use crate::{Broker, ClientInfo, Outcome};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;
const LATEST_TIERED: i64 = -5;
/// The first versions that may ask for -3, -4 and -5.
const MAX_TIMESTAMP_MIN_VERSION: i16 = 7;
const EARLIEST_LOCAL_MIN_VERSION: i16 = 8;
const LATEST_TIERED_MIN_VERSION: i16 = 9;
const READ_COMMITTED: i8 = 1;

/// One partition's answer: ready, or waiting for a timestamp lookup run outside the lock.
enum Slot {
    Ready(ListOffsetsPartitionResponse),
    Lookup {
        response: ListOffsetsPartitionResponse,
        lookup: TimestampLookup,
        /// A record found counts only below what a consumer may read (the high watermark, or
        /// the last stable offset under read_committed).
        last_fetchable: i64,
        topic: String,
    },
}

/// A ListOffsets whose timestamp lookups were planned under the broker lock; the server runs
/// them outside it ([`PendingOffsets::run`]), reading batch headers, then sends the answer.
pub struct PendingOffsets {
    topics: Vec<(TopicName, Vec<Slot>)>,
}

impl std::fmt::Debug for PendingOffsets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingOffsets")
            .field("topics", &self.topics.len())
            .finish()
    }
}

impl PendingOffsets {
    /// Runs the lookups (file reads: call without the broker lock) and makes the answer.
    pub fn run(self) -> ResponseKind {
        let topics = self
            .topics
            .into_iter()
            .map(|(name, slots)| {
                let partitions = slots.into_iter().map(Slot::answer).collect();
                ListOffsetsTopicResponse::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        ResponseKind::ListOffsets(ListOffsetsResponse::default().with_topics(topics))
    }
}

impl Slot {
    fn answer(self) -> ListOffsetsPartitionResponse {
        let (response, lookup, last_fetchable, topic) = match self {
            Slot::Ready(response) => return response,
            Slot::Lookup {
                response,
                lookup,
                last_fetchable,
                topic,
            } => (response, lookup, last_fetchable, topic),
        };
        match lookup.run() {
            Ok(found) => {
                let (offset, timestamp) = found
                    .filter(|&(offset, _)| offset < last_fetchable)
                    .unwrap_or((-1, -1));
                response.with_offset(offset).with_timestamp(timestamp)
            }
            // A damaged batch (or a failed read) found while looking up a timestamp fails this
            // partition's answer, loudly, as a fetch's read does; the broker and the other
            // partitions go on.
            Err(error) => {
                let answer = match error {
                    LogError::Corrupt { .. } => ResponseError::CorruptMessage,
                    _ => ResponseError::KafkaStorageError,
                };
                let partition = response.partition_index;
                tracing::error!(%topic, partition, %error, "ListOffsets read failed; answering {answer:?} for this partition");
                response
                    .with_error_code(code(answer))
                    .with_offset(-1)
                    .with_timestamp(-1)
            }
        }
    }
}

/// Answers what needs no read at once; a timestamp's lookup is planned (no I/O under the lock)
/// and the answer is [`Outcome::Offsets`], run by the server.
pub fn handle(
    broker: &Broker,
    client: &ClientInfo,
    request: &ListOffsetsRequest,
    version: i16,
) -> Outcome {
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut topics = Vec::with_capacity(request.topics.len());
    let mut lookups = false;
    for topic in &request.topics {
        let name = topic.name.0.to_string();
        let denied = broker.topic_denied(client, Operation::Describe, &name);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for wanted in &topic.partitions {
            let response = ListOffsetsPartitionResponse::default()
                .with_partition_index(wanted.partition_index)
                .with_leader_epoch(if version >= 4 { 0 } else { -1 });
            let partition = broker.topics.partition(&name, wanted.partition_index);
            let (None, Some(partition)) = (denied, partition) else {
                let error = denied.unwrap_or(ResponseError::UnknownTopicOrPartition);
                let response = response
                    .with_error_code(code(error))
                    .with_offset(-1)
                    .with_timestamp(-1);
                partitions.push(Slot::Ready(response));
                continue;
            };
            let last_fetchable = if read_committed {
                partition.last_stable_offset()
            } else {
                partition.high_watermark()
            };
            let by_timestamp = |timestamp: i64| Slot::Lookup {
                response: response.clone(),
                lookup: partition.log().plan_offset_for_timestamp(timestamp),
                last_fetchable,
                topic: name.clone(),
            };
            let ready = |(offset, timestamp): (i64, i64)| {
                Slot::Ready(
                    response
                        .clone()
                        .with_offset(offset)
                        .with_timestamp(timestamp),
                )
            };
            let slot = match wanted.timestamp {
                EARLIEST => ready((partition.log_start_offset(), -1)),
                LATEST => ready((last_fetchable, -1)),
                timestamp if timestamp >= 0 => by_timestamp(timestamp),
                MAX_TIMESTAMP if version >= MAX_TIMESTAMP_MIN_VERSION => {
                    match partition.log().max_timestamp() {
                        Some(max) => by_timestamp(max),
                        None => ready((-1, -1)),
                    }
                }
                EARLIEST_LOCAL if version >= EARLIEST_LOCAL_MIN_VERSION => {
                    ready((partition.log_start_offset(), -1))
                }
                LATEST_TIERED if version >= LATEST_TIERED_MIN_VERSION => ready((-1, -1)),
                _ => Slot::Ready(
                    response
                        .clone()
                        .with_error_code(code(ResponseError::InvalidRequest))
                        .with_offset(-1),
                ),
            };
            lookups |= matches!(slot, Slot::Lookup { .. });
            partitions.push(slot);
        }
        topics.push((topic.name.clone(), partitions));
    }
    let pending = PendingOffsets { topics };
    if lookups {
        Outcome::Offsets(pending)
    } else {
        Outcome::Respond(pending.run())
    }
}
