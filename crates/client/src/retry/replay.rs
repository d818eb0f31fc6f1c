//! Reading and replaying a dead-letter topic: every record of it (read_committed), and a
//! replay that produces matching records back to their `ferry.original.topic` with a
//! `ferry.replayed` marker and commits the topic's consumed position under a group in the same
//! transaction, so a replay that dies leaves nothing half done and a second one does not repeat
//! the first. `ferry dlq` is its command line; the lab replays with it too.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::headers::{self as h, header_str};
use crate::consumer::{next_offsets, offset_list, poll_records, Record};
use crate::error::ClientError;
use crate::settings::Settings;
use crate::transactional::TxnProducer;

use super::consumer::base_record;

/// How long reading a dead-letter topic waits for a record before it takes the topic as read
/// (the end of a partition written transactionally is a marker, not a record, so the high
/// watermark alone cannot say).
const IDLE_END: Duration = Duration::from_millis(1500);
/// How long a metadata or watermark request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// Records replayed per transaction.
pub const REPLAY_BATCH_RECORDS_MAX: usize = 500;
/// The group of `read_all`, which commits nothing.
const READER_GROUP: &str = "ferry-dlq-reader";
/// The default group of a replay.
pub const REPLAY_GROUP_DEFAULT: &str = "ferry-dlq-replay";

/// Which dead-lettered records a command takes: by error text and by the time they were
/// dead-lettered (the record's timestamp).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Text `ferry.error` must contain.
    pub error: Option<String>,
    /// Dead-lettered at or after, wall-clock ms.
    pub since_ms: Option<i64>,
    /// Dead-lettered before, wall-clock ms.
    pub until_ms: Option<i64>,
}

impl Filter {
    pub fn matches(&self, record: &Record) -> bool {
        if let Some(text) = &self.error {
            if !header_str(record, h::ERROR).is_some_and(|e| e.contains(text.as_str())) {
                return false;
            }
        }
        let at = record.timestamp_ms.unwrap_or(i64::MIN);
        self.since_ms.is_none_or(|since| at >= since)
            && self.until_ms.is_none_or(|until| at < until)
    }
}

/// Every record of `topic` of `cluster` (its bootstrap and client settings) from the beginning, read_committed (a move's aborted transaction
/// is not a dead letter).
pub fn read_all(cluster: &Settings, topic: &str) -> Result<Vec<Record>, ClientError> {
    let consumer: BaseConsumer = reader_config(cluster, READER_GROUP)
        .create()
        .map_err(ClientError::kafka("create consumer"))?;
    let ends = partition_ends(&consumer, topic)?;
    let mut list = TopicPartitionList::new();
    for partition in ends.keys() {
        list.add_partition_offset(topic, *partition, Offset::Beginning)
            .map_err(ClientError::kafka("build offset list"))?;
    }
    consumer
        .assign(&list)
        .map_err(ClientError::kafka("assign partitions"))?;
    read_to_ends(&consumer, ends, usize::MAX)
}

/// A reader of `cluster` (its bootstrap and client settings) in `group`.
fn reader_config(cluster: &Settings, group: &str) -> ClientConfig {
    let mut config = cluster.base_config();
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false");
    config
}

/// The high watermark of each partition of `topic`.
fn partition_ends(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>, ClientError> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(ClientError::kafka("fetch metadata"))?;
    let found = metadata.topics().iter().find(|t| t.name() == topic);
    let Some(found) = found.filter(|t| t.error().is_none()) else {
        return Err(ClientError::UnknownTopic(topic.to_string()));
    };
    let mut ends = BTreeMap::new();
    for partition in found.partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), METADATA_TIMEOUT)
            .map_err(ClientError::kafka("fetch watermarks"))?;
        ends.insert(partition.id(), high);
    }
    Ok(ends)
}

/// Polls until every partition is read up to its end in `ends`, nothing came for
/// [`IDLE_END`], or `records_max` records were read.
fn read_to_ends(
    consumer: &BaseConsumer,
    mut ends: BTreeMap<i32, i64>,
    records_max: usize,
) -> Result<Vec<Record>, ClientError> {
    let mut records = Vec::new();
    let mut last_record = Instant::now();
    ends.retain(|_, end| *end > 0);
    while !ends.is_empty() && records.len() < records_max && last_record.elapsed() < IDLE_END {
        let batch = poll_records(
            consumer,
            records_max - records.len(),
            Duration::from_millis(100),
        )?;
        if !batch.is_empty() {
            last_record = Instant::now();
        }
        for record in batch {
            if ends
                .get(&record.partition)
                .is_some_and(|end| record.offset + 1 >= *end)
            {
                ends.remove(&record.partition);
            }
            records.push(record);
        }
    }
    Ok(records)
}

/// What a replay did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Replayed {
    /// Records read from the dead-letter topic (and passed by the position).
    pub read: usize,
    /// Records that matched the filter and were produced to their original topic.
    pub replayed: usize,
}

/// Replays `topic` of `cluster` (its bootstrap and client settings; its own group and
/// transactional ids are not used) from `group`'s committed position to its end, in transactions of up to
/// [`REPLAY_BATCH_RECORDS_MAX`] records that also commit the position.
pub fn replay(
    cluster: &Settings,
    topic: &str,
    group: &str,
    filter: &Filter,
) -> Result<Replayed, ClientError> {
    let consumer: BaseConsumer = reader_config(cluster, group)
        .create()
        .map_err(ClientError::kafka("create consumer"))?;
    let ends = partition_ends(&consumer, topic)?;
    let mut list = TopicPartitionList::new();
    for partition in ends.keys() {
        list.add_partition(topic, *partition);
    }
    // From the committed position; `auto.offset.reset` (earliest) where there is none.
    let committed = consumer
        .committed_offsets(list, METADATA_TIMEOUT)
        .map_err(ClientError::kafka("read the replay group's position"))?;
    consumer
        .assign(&committed)
        .map_err(ClientError::kafka("assign partitions"))?;
    let settings = cluster
        .clone()
        .group_id(group)
        .transactional_id(format!("ferry-dlq-replay-{group}-{topic}"));
    let producer = TxnProducer::new(&settings)?;
    let mut total = Replayed {
        read: 0,
        replayed: 0,
    };
    loop {
        let ends_left = remaining_ends(&consumer, topic, &ends)?;
        let batch = read_to_ends(&consumer, ends_left, REPLAY_BATCH_RECORDS_MAX)?;
        if batch.is_empty() {
            return Ok(total);
        }
        producer.begin()?;
        let mut replayed = 0;
        for record in batch.iter().filter(|r| filter.matches(r)) {
            let Some(original) = header_str(record, h::ORIGINAL_TOPIC) else {
                tracing::warn!(
                    partition = record.partition,
                    offset = record.offset,
                    "no {} header: not replayed",
                    h::ORIGINAL_TOPIC
                );
                continue;
            };
            let mut headers = record.headers.clone();
            let marker = format!("{}/{}/{}", record.topic, record.partition, record.offset);
            headers.push((h::REPLAYED.to_string(), marker.into_bytes()));
            producer.send_record(base_record(
                original,
                record.key.as_deref(),
                record.payload.as_deref(),
                &headers,
            ))?;
            replayed += 1;
        }
        let offsets = offset_list(&next_offsets(&batch))?;
        let group_metadata = consumer
            .group_metadata()
            .ok_or(ClientError::MissingSetting("group.id"))?;
        if let Err(error) = producer
            .send_offsets(&offsets, &group_metadata)
            .and_then(|()| producer.commit())
        {
            // Nothing of this batch is visible; a later replay starts from the same position.
            let _ = producer.abort();
            return Err(error);
        }
        total.read += batch.len();
        total.replayed += replayed;
    }
}

/// The partitions of `ends` the consumer has not read to the end yet, by its position.
fn remaining_ends(
    consumer: &BaseConsumer,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>, ClientError> {
    let positions = consumer
        .position()
        .map_err(ClientError::kafka("read positions"))?;
    let mut left = ends.clone();
    for element in positions.elements_for_topic(topic) {
        if let Offset::Offset(position) = element.offset() {
            if position >= ends.get(&element.partition()).copied().unwrap_or(0) {
                left.remove(&element.partition());
            }
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(error: &str, at_ms: i64) -> Record {
        Record {
            topic: "orders.dlq".into(),
            partition: 0,
            offset: 3,
            key: None,
            payload: None,
            timestamp_ms: Some(at_ms),
            headers: vec![(h::ERROR.into(), error.as_bytes().to_vec())],
        }
    }

    /// (error filter, since, until) against a record with `error` dead-lettered at `at_ms`.
    fn check(
        filter: (Option<&str>, Option<i64>, Option<i64>),
        error: &str,
        at_ms: i64,
        expect: bool,
    ) {
        let filter = Filter {
            error: filter.0.map(String::from),
            since_ms: filter.1,
            until_ms: filter.2,
        };
        assert_eq!(
            filter.matches(&record(error, at_ms)),
            expect,
            "{filter:?} on {error:?} at {at_ms}"
        );
    }

    #[test]
    fn filters_as_data() {
        check((None, None, None), "permanent: bad", 5, true);
        check((Some("bad"), None, None), "permanent: bad", 5, true);
        check((Some("db down"), None, None), "permanent: bad", 5, false);
        check((None, Some(5), None), "x", 5, true);
        check((None, Some(6), None), "x", 5, false);
        check((None, None, Some(5)), "x", 5, false);
        check((None, Some(1), Some(6)), "x", 5, true);
        check((Some("x"), Some(1), Some(6)), "y", 5, false);
    }
}
