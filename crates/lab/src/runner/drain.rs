//! When the draining consumer of the at-most-once, at-least-once and exactly-once rows has
//! read everything, so the final reads end at the log's end and not at a guess.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use client::Consumer;
use rdkafka::consumer::Consumer as _;
use rdkafka::Offset;

use super::consume::QuietContext;
use super::{Shared, DRAIN_REQUEST_TIMEOUT};

/// How often the draining consumer asks for high watermarks and committed offsets.
const DRAIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Decides when a draining consumer has read everything: its position (or, for a partition it
/// has not read since it started, its committed offset) has reached each partition's high
/// watermark, and the high watermarks did not move between two checks.
#[derive(Default)]
pub(crate) struct Drain {
    checked: Option<Instant>,
    /// librdkafka's cached high watermarks at the last check.
    cached: Option<HashMap<i32, i64>>,
    watermarks: Option<HashMap<i32, i64>>,
}

impl Drain {
    pub(crate) fn done(
        &mut self,
        consumer: &Consumer<QuietContext>,
        topic: &str,
        shared: &Shared,
    ) -> bool {
        if self
            .checked
            .is_some_and(|at| at.elapsed() < DRAIN_CHECK_INTERVAL)
        {
            return false;
        }
        self.checked = Some(Instant::now());
        // While the consumer is behind the high watermarks its fetches brought back, or those
        // still move, it is not done, and asking the broker would only slow it: the watermark
        // requests queue behind the consumer's own fetches (three per check, ~100 ms in all),
        // and the drain, read as throughput, ran at 500 records per check (thorough baseline:
        // 5.8k records/s instead of ~300k).
        let cached = cached_watermarks(consumer, topic);
        let behind = cached
            .iter()
            .any(|(p, high)| position_of(consumer, *p) < *high);
        let moved = self.cached.as_ref() != Some(&cached);
        self.cached = Some(cached);
        if behind || moved {
            return false;
        }
        let Some(watermarks) = high_watermarks(consumer, topic, shared) else {
            return false;
        };
        let stable = self.watermarks.as_ref() == Some(&watermarks);
        self.watermarks = Some(watermarks.clone());
        stable && reached(consumer, watermarks)
    }
}

/// The high watermark of each assigned partition; `None` without an assignment or when a
/// request failed.
fn high_watermarks(
    consumer: &Consumer<QuietContext>,
    topic: &str,
    shared: &Shared,
) -> Option<HashMap<i32, i64>> {
    let inner = consumer.inner();
    let assignment = inner.assignment().ok()?;
    let partitions: Vec<i32> = assignment
        .elements()
        .iter()
        .map(|e| e.partition())
        .collect();
    if partitions.is_empty() {
        return None;
    }
    let mut watermarks = HashMap::new();
    for &partition in &partitions {
        match inner.fetch_watermarks(topic, partition, DRAIN_REQUEST_TIMEOUT) {
            Ok((_, high)) => watermarks.insert(partition, high),
            Err(error) => {
                shared.note(format!("fetch watermarks while draining: {error}"));
                return None;
            }
        };
    }
    Some(watermarks)
}

/// The high watermarks librdkafka cached from its last fetch of each partition the consumer has
/// a position in (no request is sent). Cached watermarks only ever lag, so they never end a
/// drain: the end is decided by [`high_watermarks`], asked of the broker.
fn cached_watermarks(consumer: &Consumer<QuietContext>, topic: &str) -> HashMap<i32, i64> {
    positions(consumer)
        .into_keys()
        .filter_map(|partition| {
            let high = client::consumer::cached_high_watermark(consumer.inner(), topic, partition)?;
            Some((partition, high))
        })
        .collect()
}

fn position_of(consumer: &Consumer<QuietContext>, partition: i32) -> i64 {
    positions(consumer).get(&partition).copied().unwrap_or(-1)
}

/// Whether the consumer's position, or its committed offset where it has none, is at each
/// partition's high watermark.
fn reached(consumer: &Consumer<QuietContext>, watermarks: HashMap<i32, i64>) -> bool {
    let positions = positions(consumer);
    let mut committed = None;
    for (partition, high) in watermarks {
        let mut at = positions.get(&partition).copied();
        if at.is_none() && high > 0 {
            let committed = committed.get_or_insert_with(|| committed_offsets(consumer));
            at = committed.get(&partition).copied();
        }
        if at.unwrap_or(0) < high {
            return false;
        }
    }
    true
}

fn positions(consumer: &Consumer<QuietContext>) -> HashMap<i32, i64> {
    let Ok(list) = consumer.inner().position() else {
        return HashMap::new();
    };
    offsets_of(&list)
}

fn committed_offsets(consumer: &Consumer<QuietContext>) -> HashMap<i32, i64> {
    let Ok(list) = consumer.inner().committed(DRAIN_REQUEST_TIMEOUT) else {
        return HashMap::new();
    };
    offsets_of(&list)
}

fn offsets_of(list: &rdkafka::TopicPartitionList) -> HashMap<i32, i64> {
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}
