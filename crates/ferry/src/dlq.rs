//! `ferry dlq list|show|replay TOPIC.dlq`: look into a dead-letter topic written by the client's
//! retrying consumer (`client::retry`, headers in `docs/dead-letters.md`) and put its records
//! back into their original topics once the cause is fixed. Through librdkafka, so it works
//! against any Kafka cluster.
//!
//! A replay is one transaction: the re-produced records and the dead-letter topic's consumed
//! position (under `--group`) commit together, so a replay that dies half-way leaves nothing
//! behind and a second replay does not repeat the first.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Subcommand;
use client::retry::headers::{self as h, header_str};
use client::transactional::TxnProducer;
use client::{Record, Settings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

/// How long reading a dead-letter topic waits for a record before it takes the topic as read
/// (the end of a partition written transactionally is a marker, not a record, so the high
/// watermark alone cannot say).
const IDLE_END: Duration = Duration::from_millis(1500);
/// How long a metadata or watermark request may take.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
/// The most bytes of a payload `show` prints.
const SHOW_PAYLOAD_BYTES_MAX: usize = 200;
/// Records replayed per transaction.
const REPLAY_BATCH_RECORDS_MAX: usize = 500;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// Count the dead-lettered records by original topic and error.
    List(Target),
    /// Print the dead-lettered records with their headers.
    Show(Target),
    /// Produce the records back to their original topics, marked `ferry.replayed`, and commit
    /// the dead-letter topic's position under --group in the same transaction.
    Replay {
        #[command(flatten)]
        target: Target,
        /// The consumer group whose committed position says what was replayed already.
        #[arg(long, default_value = "ferry-dlq-replay")]
        group: String,
    },
}

#[derive(clap::Args)]
pub struct Target {
    /// The dead-letter topic, such as `orders.dlq`.
    topic: String,
    #[arg(long, default_value = "127.0.0.1:9092")]
    bootstrap: String,
    #[command(flatten)]
    filter: FilterArgs,
}

#[derive(clap::Args)]
struct FilterArgs {
    /// Only records whose `ferry.error` contains this text.
    #[arg(long)]
    error: Option<String>,
    /// Only records dead-lettered at or after this time (RFC 3339 or epoch milliseconds).
    #[arg(long)]
    since: Option<String>,
    /// Only records dead-lettered before this time (RFC 3339 or epoch milliseconds).
    #[arg(long)]
    until: Option<String>,
}

/// Which dead-lettered records a command takes: by error text and by the time they were
/// dead-lettered (the record's timestamp).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    error: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

impl Filter {
    fn parse(args: &FilterArgs) -> Result<Filter> {
        Ok(Filter {
            error: args.error.clone(),
            since_ms: args.since.as_deref().map(parse_time_ms).transpose()?,
            until_ms: args.until.as_deref().map(parse_time_ms).transpose()?,
        })
    }

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

/// `2026-12-03T15:00:00Z` or milliseconds since the epoch.
fn parse_time_ms(text: &str) -> Result<i64> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    let at = humantime::parse_rfc3339_weak(text)
        .with_context(|| format!("parse time {text:?} (RFC 3339 or epoch milliseconds)"))?;
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64))
}

pub fn run(command: DlqCommand) -> Result<()> {
    match command {
        DlqCommand::List(target) => {
            let filter = Filter::parse(&target.filter)?;
            let records = read_all(&target.bootstrap, &target.topic)?;
            print!("{}", summary(records.iter().filter(|r| filter.matches(r))));
            Ok(())
        }
        DlqCommand::Show(target) => {
            let filter = Filter::parse(&target.filter)?;
            for record in read_all(&target.bootstrap, &target.topic)? {
                if filter.matches(&record) {
                    print!("{}", show(&record));
                }
            }
            Ok(())
        }
        DlqCommand::Replay { target, group } => {
            let filter = Filter::parse(&target.filter)?;
            let replayed = replay(&target.bootstrap, &target.topic, &group, &filter)?;
            println!(
                "replayed {} of {} records read from {}",
                replayed.replayed, replayed.read, target.topic
            );
            Ok(())
        }
    }
}

/// The records counted by original topic and error, as a table.
pub fn summary<'r>(records: impl Iterator<Item = &'r Record>) -> String {
    let mut counts: BTreeMap<(String, String), usize> = BTreeMap::new();
    for record in records {
        let topic = header_str(record, h::ORIGINAL_TOPIC)
            .unwrap_or("?")
            .to_string();
        let error = header_str(record, h::ERROR).unwrap_or("?").to_string();
        *counts.entry((topic, error)).or_default() += 1;
    }
    let mut out = format!("{:<24} {:>8}  ERROR\n", "ORIGINAL-TOPIC", "RECORDS");
    for ((topic, error), count) in &counts {
        out.push_str(&format!("{topic:<24} {count:>8}  {error}\n"));
    }
    out.push_str(&format!(
        "{:<24} {:>8}\n",
        "total",
        counts.values().sum::<usize>()
    ));
    out
}

/// One record as `show` prints it: where it is, its key, headers and the start of its payload.
pub fn show(record: &Record) -> String {
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    let mut out = format!(
        "{}/{} @{} key={}\n",
        record.topic,
        record.partition,
        record.offset,
        record.key.as_deref().map_or("-".into(), text)
    );
    for (name, value) in &record.headers {
        out.push_str(&format!("  {name}: {}\n", text(value)));
    }
    let payload = record.payload.as_deref().unwrap_or_default();
    let shown = &payload[..payload.len().min(SHOW_PAYLOAD_BYTES_MAX)];
    let more = if shown.len() < payload.len() {
        "…"
    } else {
        ""
    };
    out.push_str(&format!("  payload: {}{more}\n", text(shown)));
    out
}

/// Every record of `topic` from the beginning, read_committed (a move's aborted transaction
/// is not a dead letter).
fn read_all(bootstrap: &str, topic: &str) -> Result<Vec<Record>> {
    let consumer: BaseConsumer = reader_config(bootstrap, "ferry-dlq-reader")
        .create()
        .context("create consumer")?;
    let ends = partition_ends(&consumer, topic)?;
    let mut list = TopicPartitionList::new();
    for partition in ends.keys() {
        list.add_partition_offset(topic, *partition, Offset::Beginning)?;
    }
    consumer.assign(&list).context("assign partitions")?;
    read_to_ends(&consumer, ends, usize::MAX)
}

fn reader_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "false");
    config
}

/// The high watermark of each partition of `topic`.
fn partition_ends(consumer: &BaseConsumer, topic: &str) -> Result<BTreeMap<i32, i64>> {
    let metadata = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .with_context(|| format!("fetch metadata of {topic}"))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} not found");
    };
    if let Some(error) = found.error() {
        bail!(
            "topic {topic}: {:?}",
            rdkafka::types::RDKafkaRespErr::from(error)
        );
    }
    let mut ends = BTreeMap::new();
    for partition in found.partitions() {
        let (_, high) = consumer
            .fetch_watermarks(topic, partition.id(), METADATA_TIMEOUT)
            .with_context(|| format!("fetch watermarks of {topic}/{}", partition.id()))?;
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
) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    let mut last_record = Instant::now();
    ends.retain(|_, end| *end > 0);
    while !ends.is_empty() && records.len() < records_max && last_record.elapsed() < IDLE_END {
        let batch = client::consumer::poll_records(
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
pub struct Replayed {
    pub read: usize,
    pub replayed: usize,
}

/// Replays `topic` from `group`'s committed position to its end, in transactions of up to
/// [`REPLAY_BATCH_RECORDS_MAX`] records that also commit the position.
fn replay(bootstrap: &str, topic: &str, group: &str, filter: &Filter) -> Result<Replayed> {
    let consumer: BaseConsumer = reader_config(bootstrap, group)
        .create()
        .context("create consumer")?;
    let ends = partition_ends(&consumer, topic)?;
    let mut list = TopicPartitionList::new();
    for partition in ends.keys() {
        list.add_partition(topic, *partition);
    }
    // From the committed position; `auto.offset.reset` (earliest) where there is none.
    let committed = consumer
        .committed_offsets(list, METADATA_TIMEOUT)
        .context("read the replay group's position")?;
    consumer.assign(&committed).context("assign partitions")?;
    let settings = Settings::new(bootstrap)
        .group_id(group)
        .transactional_id(format!("ferry-dlq-replay-{group}-{topic}"));
    let producer = TxnProducer::new(&settings).context("create the replay's producer")?;
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
            producer.send_record(replay_record(record, original))?;
            replayed += 1;
        }
        let offsets = client::consumer::offset_list(&client::consumer::next_offsets(&batch))?;
        let group_metadata = consumer
            .group_metadata()
            .context("the replay consumer's group metadata")?;
        producer.send_offsets(&offsets, &group_metadata)?;
        producer.commit().context("commit the replay transaction")?;
        total.read += batch.len();
        total.replayed += replayed;
    }
}

/// The partitions of `ends` the consumer has not read to the end yet, by its position.
fn remaining_ends(
    consumer: &BaseConsumer,
    topic: &str,
    ends: &BTreeMap<i32, i64>,
) -> Result<BTreeMap<i32, i64>> {
    let positions = consumer.position().context("read positions")?;
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

/// The record `record` becomes in its original topic: key, payload and headers kept, and a
/// `ferry.replayed` header naming where it was dead-lettered.
fn replay_record<'r>(record: &'r Record, original: &'r str) -> BaseRecord<'r, [u8], [u8], ()> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len() + 1);
    for (key, value) in &record.headers {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    let marker = format!("{}/{}/{}", record.topic, record.partition, record.offset);
    headers = headers.insert(Header {
        key: h::REPLAYED,
        value: Some(&marker),
    });
    let mut out: BaseRecord<'r, [u8], [u8], ()> = BaseRecord::to(original).headers(headers);
    if let Some(key) = &record.key {
        out = out.key(key.as_slice());
    }
    if let Some(payload) = &record.payload {
        out = out.payload(payload.as_slice());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    fn record(error: &str, at_ms: i64) -> Record {
        Record {
            topic: "orders.dlq".into(),
            partition: 0,
            offset: 3,
            key: Some(b"order-1".to_vec()),
            payload: Some(b"{\"total\": 12}".to_vec()),
            timestamp_ms: Some(at_ms),
            headers: vec![
                (h::ORIGINAL_TOPIC.into(), b"orders".to_vec()),
                (h::ERROR.into(), error.as_bytes().to_vec()),
            ],
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

    #[test]
    fn times_parse_as_rfc3339_or_epoch_ms() {
        assert_eq!(parse_time_ms("1700000000000").unwrap(), 1_700_000_000_000);
        assert_eq!(
            parse_time_ms("2023-11-14T22:13:20Z").unwrap(),
            1_700_000_000_000
        );
        assert!(parse_time_ms("yesterday").is_err());
    }

    #[test]
    fn summary_and_show() {
        let records = [
            record("permanent: bad", 1),
            record("permanent: bad", 2),
            record("transient: db", 3),
        ];
        expect![[r#"
            ORIGINAL-TOPIC            RECORDS  ERROR
            orders                          2  permanent: bad
            orders                          1  transient: db
            total                           3
        "#]]
        .assert_eq(&summary(records.iter()));
        expect![[r#"
            orders.dlq/0 @3 key=order-1
              ferry.original.topic: orders
              ferry.error: permanent: bad
              payload: {"total": 12}
        "#]]
        .assert_eq(&show(&records[0]));
    }
}
