//! A lane's topic: created with one partition if missing, and read at its tail on start so a
//! new run of the auditor continues the lane's sequence (the next run id, the next sequence
//! number) instead of starting over.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::Settings;
use rdkafka::consumer::{BaseConsumer, Consumer as _};
use rdkafka::{Message as _, Offset, TopicPartitionList};

use crate::stamp::{Lane, Stamp};

/// How many records at the topic's end are read to find the last run and sequence.
const RESUME_TAIL_RECORDS: i64 = 1_000;
/// How long reading them may take.
const RESUME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the topic creation may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Creates the lane's topic with one partition; an existing one is left as it is.
pub(crate) async fn create(settings: &Settings, lane: Lane) -> Result<()> {
    let topic = lane.topic();
    client::admin::create_topics(settings, &[(&topic, 1)], CREATE_TIMEOUT)
        .await
        .with_context(|| format!("create topic {topic}"))
}

/// Where a lane starts: its run id and first sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resume {
    pub run: u64,
    pub first_seq: u64,
}

/// The run after the last one the topic's tail holds, and the sequence after its largest.
pub(crate) fn resume(settings: &Settings, lane: Lane) -> Result<Resume> {
    let topic = lane.topic();
    let mut config = settings.base_config();
    config
        .set("group.id", format!("{topic}-resume"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    let consumer: BaseConsumer = config.create().context("create the resume consumer")?;
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, RESUME_TIMEOUT)
        .with_context(|| format!("read the offsets of {topic}"))?;
    let mut last: Option<(u64, u64)> = None;
    if high > low {
        let mut assignment = TopicPartitionList::new();
        let from = low.max(high - RESUME_TAIL_RECORDS);
        assignment
            .add_partition_offset(&topic, 0, Offset::Offset(from))
            .context("assign the resume offset")?;
        consumer.assign(&assignment).context("assign")?;
        let deadline = Instant::now() + RESUME_TIMEOUT;
        loop {
            if Instant::now() > deadline {
                if last.is_some() {
                    break;
                }
                bail!("read the tail of {topic} ({from}..{high}): timed out");
            }
            let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                // The tail may end in transaction markers, which are never handed out.
                if position(&consumer, &topic).is_some_and(|p| p >= high) {
                    break;
                }
                continue;
            };
            let message = message.with_context(|| format!("read the tail of {topic}"))?;
            if let Some(stamp) = message.payload().and_then(|p| Stamp::decode(p).ok()) {
                let (run, seq) = last.unwrap_or((0, 0));
                last = Some((run.max(stamp.run), seq.max(stamp.seq)));
            }
            if message.offset() + 1 >= high {
                break;
            }
        }
    }
    Ok(match last {
        Some((run, seq)) => Resume {
            run: run + 1,
            first_seq: seq + 1,
        },
        None => Resume {
            run: 1,
            first_seq: 0,
        },
    })
}

/// The consumer's position on partition 0 of `topic`, once it has one.
fn position(consumer: &BaseConsumer, topic: &str) -> Option<i64> {
    let positions = consumer.position().ok()?;
    match positions.find_partition(topic, 0)?.offset() {
        Offset::Offset(offset) => Some(offset),
        _ => None,
    }
}
