//! Produce: validate every batch (v2 only, CRC-32C, size, no client-written control batches),
//! judge batches of idempotent producers against the partition's producer state (a retry of a
//! batch already written is answered with its original offsets and not written again; a fenced
//! epoch or a sequence gap is refused), append the rest as received with broker-assigned offsets,
//! and answer per `acks`: 0 nothing, 1 once written to the OS, -1 (all) once the group commit has
//! fsynced it. A duplicate's answer under `acks=all` waits for the fsync too: its original may
//! have been written a moment ago and not be durable yet.

use acl::{Operation, Resource};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse, ResponseKind};
use wire::batch::{set_log_append_time, BatchError, BatchSpan, Batches, Compression};

use super::{code, str_bytes};
use crate::partition::Partition;
use crate::prepared::ProduceChecks;
use crate::producers::{BatchHeader, Verdict};
use crate::topic_config::{TimestampType, TopicConfig};
use crate::ClientInfo;
use crate::{Broker, BrokerError, Outcome};

const ACKS_NONE: i16 = 0;
const ACKS_LEADER: i16 = 1;
const ACKS_ALL: i16 = -1;

/// Where one partition's records are: just appended, or (a duplicate) appended before.
struct Placed {
    base_offset: i64,
    log_start_offset: i64,
    /// The broker time set on the batches of a LogAppendTime topic, else -1.
    log_append_time_ms: i64,
}

/// Why one partition's records were refused, and the log start offset to report with it
/// (Kafka reports it with producer state errors, so a client can tell a sequence gap caused by
/// deleted records from a real one).
struct Refused {
    error: ResponseError,
    message: Option<String>,
    log_start_offset: i64,
}

impl Refused {
    fn new(error: ResponseError) -> Refused {
        Refused {
            error,
            message: None,
            log_start_offset: -1,
        }
    }
}

pub fn handle(
    broker: &Broker,
    client: &ClientInfo,
    now_ms: i64,
    request: ProduceRequest,
    checks: ProduceChecks,
    version: i16,
) -> Result<Outcome, BrokerError> {
    assert_eq!(checks.len(), request.topic_data.len(), "a check per topic");
    let acks = request.acks;
    let acks_valid = matches!(acks, ACKS_NONE | ACKS_LEADER | ACKS_ALL);
    let mut failed = false;
    // Whether the answer covers data written now or before (a duplicate), which `acks=all`
    // must wait for.
    let mut placed_any = false;
    let mut topics = Vec::with_capacity(request.topic_data.len());
    let transactional_id = request.transactional_id.as_ref().map(|t| t.0.to_string());
    // A transactional produce needs WRITE on its transactional id, then each topic WRITE.
    let txn_denied = transactional_id.as_deref().and_then(|id| {
        let allowed = broker.allows(client, Operation::Write, Resource::transactional_id(id));
        (!allowed).then_some(ResponseError::TransactionalIdAuthorizationFailed)
    });
    for (topic, checks) in request.topic_data.into_iter().zip(checks) {
        let name = topic.name.0.to_string();
        let denied = txn_denied.or_else(|| broker.topic_denied(client, Operation::Write, &name));
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        assert_eq!(
            checks.len(),
            topic.partition_data.len(),
            "a check per partition"
        );
        for (data, checked) in topic.partition_data.into_iter().zip(checks) {
            let result = if let Some(error) = denied {
                Err(Refused::new(error))
            } else if acks_valid {
                append(
                    broker,
                    now_ms,
                    &name,
                    data.index,
                    (data.records, checked),
                    transactional_id.as_deref(),
                )?
            } else {
                Err(Refused::new(ResponseError::InvalidRequiredAcks))
            };
            let response = PartitionProduceResponse::default().with_index(data.index);
            let log_start = |offset: i64| if version >= 5 { offset } else { -1 };
            let response = match result {
                Ok(placed) => {
                    placed_any = true;
                    response
                        .with_base_offset(placed.base_offset)
                        .with_log_start_offset(log_start(placed.log_start_offset))
                        .with_log_append_time_ms(placed.log_append_time_ms)
                }
                Err(refused) => {
                    failed = true;
                    response
                        .with_error_code(code(refused.error))
                        .with_base_offset(-1)
                        .with_log_start_offset(log_start(refused.log_start_offset))
                        .with_error_message(refused.message.map(str_bytes))
                }
            };
            partitions.push(response);
        }
        topics.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    let response = ResponseKind::Produce(ProduceResponse::default().with_responses(topics));
    Ok(match acks {
        ACKS_NONE if failed => Outcome::Close("acks=0 produce failed".into()),
        ACKS_NONE => Outcome::NoResponse,
        // Every append so far, a duplicate's original included, is covered by this ticket.
        ACKS_ALL if placed_any => Outcome::AfterSync {
            ticket: broker.append_ticket(),
            response,
        },
        // `acks=1` means written to the OS: it survives the broker process, not a power loss.
        ACKS_LEADER if placed_any => Outcome::AfterWrite {
            ticket: broker.append_ticket(),
            response,
        },
        _ => Outcome::Respond(response),
    })
}

/// Validates, judges and appends one partition's records (with their structure check, done
/// outside the lock).
fn append(
    broker: &Broker,
    now_ms: i64,
    topic: &str,
    index: i32,
    (records, checked): (Option<Bytes>, StructureCheck),
    transactional_id: Option<&str>,
) -> Result<Result<Placed, Refused>, BrokerError> {
    // The topic is looked up once: its config and its partition serve every check below.
    let known = broker.topics.get(topic).and_then(|known| {
        let partition = usize::try_from(index).ok()?;
        (partition < known.partitions.len()).then_some((known, partition))
    });
    let Some((known, partition)) = known else {
        return Ok(Err(Refused::new(ResponseError::UnknownTopicOrPartition)));
    };
    let config = &known.config;
    let max_bytes = config.max_message_bytes;
    let Some(records) = records.filter(|r| !r.is_empty()) else {
        return Ok(Err(Refused::new(ResponseError::CorruptMessage)));
    };
    let headers = match validate(&records, max_bytes, checked) {
        Ok(headers) => headers,
        Err(error) => {
            tracing::debug!(topic, partition = index, %error, "rejected produce batch");
            return Ok(Err(Refused::new(error)));
        }
    };
    // A LogAppendTime topic stamps the broker's time on each batch, once the producer's CRC has
    // been checked (the stamp recomputes it); only then are the bytes copied.
    let log_append_time = config.timestamp_type == TimestampType::LogAppendTime;
    let (records, headers) = if log_append_time {
        let stamped = stamp_log_append_time(&records, now_ms);
        // The producer's version passed the codec check already.
        let checked = check_structure(&stamped, ZSTD_PRODUCE_VERSION_MIN);
        let headers = validate(&stamped, max_bytes, checked)
            .expect("a batch stamped with the broker's time stays valid");
        (stamped, headers)
    } else {
        (records, headers)
    };
    if let Err(reason) = check_timestamps(config, &records, now_ms) {
        tracing::debug!(topic, partition = index, %reason, "refused produce batch: timestamp out of range");
        return Ok(Err(Refused {
            error: ResponseError::InvalidTimestamp,
            message: Some(reason),
            log_start_offset: -1,
        }));
    }
    if let Err(refused) = check_keys(config, topic, index, &records) {
        tracing::debug!(topic, partition = index, reason = ?refused.message, "refused produce batch on a compacted topic");
        return Ok(Err(refused));
    }
    if let Err(error) = check_transaction(broker, transactional_id, &records, topic, index) {
        tracing::debug!(topic, partition = index, %error, "refused transactional produce");
        return Ok(Err(Refused::new(error)));
    }
    // The partition stays locked from the producer-state check to the append, so that a retry
    // of the same batch on another connection is judged a duplicate of this one.
    let mut partition = known
        .partitions
        .get(partition)
        .expect("partition looked up above");
    if let Some(answer) = judge(broker, &partition, topic, index, &headers) {
        return Ok(answer);
    }
    let info = partition
        // The request's own bytes: the log keeps them for the group commit to write.
        .append(records, &headers, now_ms)
        .map_err(|source| BrokerError::Log {
            topic: topic.to_string(),
            partition: index,
            source,
        })?;
    let log_start_offset = partition.log_start_offset();
    broker.note_append(topic, index);
    Ok(Ok(Placed {
        base_offset: info.first_offset,
        log_start_offset,
        log_append_time_ms: if log_append_time { now_ms } else { -1 },
    }))
}

/// Kafka's check on a compacted topic: every record has a key (compaction keeps a record by its
/// key, so a keyless one could never be kept). The records are inflated for it, within
/// `wire::compression::INFLATED_BYTES_MAX`; other topics never inflate a produced batch.
fn check_keys(
    config: &TopicConfig,
    topic: &str,
    index: i32,
    records: &[u8],
) -> Result<(), Refused> {
    if !config.cleanup_policy.compacts() {
        return Ok(());
    }
    for (_, batch) in Batches::new(records).flatten() {
        if batch.is_control() {
            continue;
        }
        let inflated = wire::retain::Inflated::of(&batch).map_err(|reason| Refused {
            error: ResponseError::CorruptMessage,
            message: Some(reason),
            log_start_offset: -1,
        })?;
        if inflated.records().any(|record| record.key.is_none()) {
            return Err(Refused {
                error: ResponseError::InvalidRecord,
                message: Some(format!(
                    "Compacted topic cannot accept message without key in topic partition {topic}-{index}."
                )),
                log_start_offset: -1,
            });
        }
    }
    Ok(())
}

/// A copy of `records` whose batches carry `now_ms` as their max timestamp and the
/// LogAppendTime flag, as Kafka stores them on such a topic.
fn stamp_log_append_time(records: &[u8], now_ms: i64) -> Bytes {
    let mut stamped = records.to_vec();
    let mut position = 0;
    while position < stamped.len() {
        let span = BatchSpan::parse(&stamped[position..]).expect("validated batches");
        let end = position + span.total_bytes;
        set_log_append_time(&mut stamped[position..end], now_ms);
        position = end;
    }
    Bytes::from(stamped)
}

/// Kafka's `message.timestamp.before.max.ms` / `after.max.ms` checks on CreateTime timestamps,
/// from the batch headers (records are never decoded on the produce path): the newest record's
/// timestamp (`max_timestamp`) against the after bound, exactly; the first record's
/// (`base_timestamp`) against the before bound, where Kafka checks every record (a batch whose
/// later records are older than its first passes here when Kafka would refuse it).
fn check_timestamps(config: &TopicConfig, records: &[u8], now_ms: i64) -> Result<(), String> {
    for (_, batch) in Batches::new(records).flatten() {
        if batch.attributes() & TIMESTAMP_TYPE_LOG_APPEND_TIME != 0 {
            continue;
        }
        config.check_timestamp(batch.max_timestamp(), now_ms)?;
        config.check_timestamp(batch.base_timestamp(), now_ms)?;
    }
    Ok(())
}

/// Attribute bit 3 of a v2 batch: its timestamps are the broker's (LogAppendTime), not the
/// producer's, and the bounds do not apply.
const TIMESTAMP_TYPE_LOG_APPEND_TIME: i16 = 0x08;

/// Transactional batches may only go to a partition of their producer's ongoing transaction
/// (Kafka's produce-side verification); otherwise no marker would ever end them and the
/// partition's last stable offset would be pinned forever.
fn check_transaction(
    broker: &Broker,
    transactional_id: Option<&str>,
    records: &[u8],
    topic: &str,
    index: i32,
) -> Result<(), ResponseError> {
    let Some(Ok((_, first))) = Batches::new(records).next() else {
        return Ok(());
    };
    if !first.is_transactional() {
        return Ok(());
    }
    let Some(transactional_id) = transactional_id else {
        return Err(ResponseError::InvalidRecord);
    };
    broker
        .check_txn_produce(
            transactional_id,
            first.producer_id(),
            first.producer_epoch(),
            topic,
            index,
        )
        .map_err(|error| match error {
            // Retriable for the producer, as Kafka maps it.
            ResponseError::ConcurrentTransactions => ResponseError::NotEnoughReplicas,
            other => other,
        })
}

/// Judges a partition's batches against its producer state and counts the verdict; `Some` is
/// the answer when they are not to be written (a duplicate, or refused).
fn judge(
    broker: &Broker,
    partition: &Partition,
    topic: &str,
    index: i32,
    headers: &[BatchHeader],
) -> Option<Result<Placed, Refused>> {
    let log_start_offset = partition.log_start_offset();
    let verdict = partition.check_producers(headers);
    let counters = broker.producers.count(&verdict);
    match verdict {
        Verdict::Append => None,
        Verdict::Duplicate(original) => {
            tracing::debug!(
                topic,
                partition = index,
                producer_id = headers
                    .iter()
                    .find(|h| h.has_producer_id())
                    .map(|h| h.producer_id),
                base_sequence = original.first_sequence,
                base_offset = original.base_offset,
                duplicates_detected = counters.duplicates,
                "duplicate batch: answered with its original offsets, not written again"
            );
            Some(Ok(Placed {
                base_offset: original.base_offset,
                log_start_offset,
                // The time set when the original was appended is not kept.
                log_append_time_ms: -1,
            }))
        }
        refused => {
            let error = refused.error().expect("a refusing verdict has an error");
            let message = refused.reason();
            tracing::debug!(
                topic,
                partition = index,
                %error,
                reason = message.as_deref().unwrap_or(""),
                producers_fenced = counters.fenced,
                out_of_order_rejected = counters.out_of_order,
                "refused produce batch"
            );
            Some(Err(Refused {
                error,
                message,
                log_start_offset,
            }))
        }
    }
}

/// The outcome of [`check_structure`]: `Err((batch index, error))` for the first batch that
/// failed.
pub(crate) type StructureCheck = Result<(), (usize, ResponseError)>;

/// The first Produce version whose clients may send zstd batches (KIP-110); Kafka answers an
/// older one UNSUPPORTED_COMPRESSION_TYPE.
pub(crate) const ZSTD_PRODUCE_VERSION_MIN: i16 = 7;

/// Kafka's checks on incoming batches of a Produce `version` that need nothing but their bytes
/// (framing, CRC-32C, codec, zstd only from v7, record count, no client-written control
/// batches), mapped to its error codes. The costly part of validation (the CRC reads every
/// byte), run outside the broker lock.
pub(crate) fn check_structure(records: &[u8], version: i16) -> StructureCheck {
    for (index, item) in Batches::new(records).enumerate() {
        let (_, batch) = item.map_err(|e| (index, batch_error(e)))?;
        batch.validate().map_err(|e| (index, batch_error(e)))?;
        if batch.is_control() || batch.record_count() == 0 {
            return Err((index, ResponseError::InvalidRecord));
        }
        if version < ZSTD_PRODUCE_VERSION_MIN && batch.compression() == Ok(Compression::Zstd) {
            return Err((index, ResponseError::UnsupportedCompressionType));
        }
    }
    Ok(())
}

/// Kafka's checks on incoming batches, given their structure check (`checked`, from
/// [`check_structure`] on these same bytes); returns their headers. A batch over `max_bytes`
/// is refused before its structure is judged, as Kafka does.
pub(crate) fn validate(
    records: &[u8],
    max_bytes: usize,
    checked: StructureCheck,
) -> Result<Vec<BatchHeader>, ResponseError> {
    let failed = checked.err();
    let mut headers = Vec::new();
    for (index, item) in Batches::new(records).enumerate() {
        let batch = match item {
            Ok((_, batch)) => batch,
            Err(error) => {
                debug_assert_eq!(
                    failed.map(|(at, _)| at),
                    Some(index),
                    "checked the same bytes"
                );
                return Err(batch_error(error));
            }
        };
        if batch.total_bytes() > max_bytes {
            return Err(ResponseError::MessageTooLarge);
        }
        if let Some((at, error)) = failed.filter(|(at, _)| *at == index) {
            debug_assert_eq!(at, index);
            return Err(error);
        }
        headers.push(BatchHeader::of(&batch));
    }
    assert!(
        failed.is_none(),
        "a failed structure check names a batch of these bytes"
    );
    assert!(
        !headers.is_empty(),
        "non-empty records hold at least one batch or an error"
    );
    Ok(headers)
}

fn batch_error(error: BatchError) -> ResponseError {
    match error {
        BatchError::Magic(_) => ResponseError::UnsupportedForMessageFormat,
        BatchError::Truncated { .. }
        | BatchError::Length(_)
        | BatchError::Crc { .. }
        | BatchError::Count { .. }
        | BatchError::Codec(_)
        | BatchError::Record { .. }
        | BatchError::Offsets { .. } => ResponseError::CorruptMessage,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::batch::{build_batch, ProducerFields};

    fn batch() -> Vec<u8> {
        build_batch(&[(None, Some(b"v"))], 1, ProducerFields::NONE, 0)
    }

    #[test]
    fn zstd_is_refused_below_produce_v7() {
        let mut zstd = batch();
        zstd[22] |= 4; // the codec bits of the attributes: zstd
        let crc = crc32c::crc32c(&zstd[21..]);
        zstd[17..21].copy_from_slice(&crc.to_be_bytes());
        for (version, expected) in [
            (3, Err((0, ResponseError::UnsupportedCompressionType))),
            (6, Err((0, ResponseError::UnsupportedCompressionType))),
            (7, Ok(())),
            (9, Ok(())),
        ] {
            assert_eq!(check_structure(&zstd, version), expected, "v{version}");
        }
        // Control: an uncompressed batch is fine on any version.
        assert_eq!(check_structure(&batch(), 3), Ok(()));
    }

    #[test]
    fn validation_maps_to_kafka_errors() {
        let check = |bytes: &[u8], max: usize, expect: Result<(), ResponseError>| {
            assert_eq!(
                validate(bytes, max, check_structure(bytes, 9)).map(|_| ()),
                expect
            );
        };
        check(&batch(), 1 << 20, Ok(()));
        check(&batch(), 10, Err(ResponseError::MessageTooLarge));
        let mut crc = batch();
        *crc.last_mut().unwrap() ^= 1;
        check(&crc, 1 << 20, Err(ResponseError::CorruptMessage));
        check(&batch()[..30], 1 << 20, Err(ResponseError::CorruptMessage));
        let mut magic = batch();
        magic[16] = 1;
        check(
            &magic,
            1 << 20,
            Err(ResponseError::UnsupportedForMessageFormat),
        );
        let control = build_batch(&[(None, Some(b"v"))], 1, ProducerFields::NONE, 0x20);
        check(&control, 1 << 20, Err(ResponseError::InvalidRecord));
    }

    #[test]
    fn issue_14_timestamps_beyond_the_topic_bounds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let config = crate::BrokerConfig::new(dir.path().to_path_buf());
        let now_ms = 1_700_000_000_000;
        let mut broker = Broker::open(
            config,
            std::sync::Arc::new(storage::FsDisk),
            crate::Now::at_wall_ms(now_ms),
        )
        .unwrap();
        let overrides = [("message.timestamp.after.max.ms", "60000")]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .into();
        broker
            .topics
            .create("bounded", 1, overrides, now_ms)
            .unwrap();
        broker
            .topics
            .create("default", 1, Default::default(), now_ms)
            .unwrap();
        let produce = |broker: &mut Broker, topic: &str, timestamp: i64| {
            let batch = build_batch(&[(None, Some(b"v"))], timestamp, ProducerFields::NONE, 0);
            let checked = check_structure(&batch, 9);
            append(
                broker,
                now_ms,
                topic,
                0,
                (Some(batch.into()), checked),
                None,
            )
            .unwrap()
            .map(|_| ())
            .map_err(|refused| refused.error)
        };
        let future = now_ms + 10 * 60_000;
        assert_eq!(
            produce(&mut broker, "bounded", future),
            Err(ResponseError::InvalidTimestamp)
        );
        assert_eq!(
            broker
                .topics
                .partition("bounded", 0)
                .unwrap()
                .log_end_offset(),
            0
        );
        // Controls: within the bound, no timestamp (-1), and the default's one hour.
        assert_eq!(produce(&mut broker, "bounded", now_ms + 60_000), Ok(()));
        assert_eq!(produce(&mut broker, "bounded", -1), Ok(()));
        assert_eq!(produce(&mut broker, "default", future), Ok(()));
        assert_eq!(
            produce(&mut broker, "default", now_ms + 3_600_001),
            Err(ResponseError::InvalidTimestamp)
        );
    }
}
