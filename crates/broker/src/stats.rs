//! The broker's state as metrics show it: a snapshot taken holding the broker shared when
//! `/metrics` is scraped, as plain data, so the broker knows nothing of any exposition format and
//! the scrape costs the request path nothing between scrapes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::producers::Counters as ProducerCounters;
use crate::Broker;

/// Everything `Broker::stats` reports.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    /// Every partition of every topic, by topic then partition (internal logs not included).
    pub partitions: Vec<PartitionStats>,
    /// The idempotence checks since start.
    pub producers: ProducerCounters,
    pub transactions: TransactionStats,
    /// Every group the coordinator knows, by id.
    pub groups: Vec<GroupStats>,
    /// What the compacted topics' cleaner did since start.
    pub compaction: crate::cleaner::CompactionCounters,
}

#[derive(Clone, Debug)]
pub struct PartitionStats {
    pub topic: Arc<str>,
    pub partition: i32,
    pub log_start_offset: i64,
    pub log_end_offset: i64,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub size_bytes: u64,
    pub segments: usize,
    /// Bytes of producers' batches appended since start.
    pub appended_bytes: u64,
    /// Producer ids with state in this partition.
    pub producers: usize,
}

#[derive(Clone, Debug, Default)]
pub struct TransactionStats {
    pub counters: txn::TxnCounters,
    /// Transactions in flight: Ongoing, or ending (markers being written).
    pub open: usize,
    /// How long the oldest transaction in flight has been open, in milliseconds.
    pub oldest_open_ms: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct GroupStats {
    pub group_id: String,
    pub state: &'static str,
    pub members: usize,
    pub generation: i32,
    /// Rebalances begun since start.
    pub rebalances: u64,
    pub offsets: Vec<GroupOffsetStats>,
}

#[derive(Clone, Debug)]
pub struct GroupOffsetStats {
    pub topic: String,
    pub partition: i32,
    pub committed: i64,
    /// The partition's high watermark minus the committed offset (Kafka's consumer lag); None
    /// when the partition does not exist (any more).
    pub lag: Option<i64>,
}

impl Broker {
    /// A snapshot of the state metrics show, at the time of the latest call.
    pub fn stats(&self) -> Stats {
        let now_ms = self.now.wall_ms();
        let mut partitions = Vec::new();
        for (_, topic) in self.topics.iter() {
            for (index, partition) in topic.partitions.iter().enumerate() {
                let log = partition.log();
                partitions.push(PartitionStats {
                    topic: topic.name.clone(),
                    partition: i32::try_from(index).expect("partition index fits an i32"),
                    log_start_offset: partition.log_start_offset(),
                    log_end_offset: partition.log_end_offset(),
                    high_watermark: partition.high_watermark(),
                    last_stable_offset: partition.last_stable_offset(),
                    size_bytes: log.size_bytes(),
                    segments: log.segment_count(),
                    appended_bytes: partition.appended_bytes(),
                    producers: partition.producers().len(),
                });
            }
        }
        let coordinator = self.txn_coordinator();
        let in_flight: Vec<_> = coordinator
            .transactions()
            .into_iter()
            .filter(|t| t.state.in_flight())
            .collect();
        let transactions = TransactionStats {
            counters: coordinator.counters(),
            open: in_flight.len(),
            oldest_open_ms: in_flight
                .iter()
                .filter(|t| t.start_ms >= 0)
                .map(|t| (now_ms - t.start_ms).max(0))
                .max(),
        };
        // The lags from the partitions' snapshot above: the group coordinator's lock is not
        // held while a partition's is taken.
        let high_watermarks: HashMap<(&str, i32), i64> = partitions
            .iter()
            .map(|p| ((&*p.topic, p.partition), p.high_watermark))
            .collect();
        let groups = self.groups.coordinator();
        let groups = groups
            .groups()
            .into_iter()
            .filter_map(|overview| groups.group(overview.group_id.as_str()))
            .map(|group| GroupStats {
                group_id: group.group_id.to_string(),
                state: group.state.as_str(),
                members: group.members.len(),
                generation: group.generation_id,
                rebalances: group.rebalances,
                offsets: group
                    .offsets
                    .iter()
                    .map(|o| GroupOffsetStats {
                        topic: o.topic.to_string(),
                        partition: o.partition,
                        committed: o.offset.offset,
                        lag: high_watermarks
                            .get(&(o.topic.as_str(), o.partition))
                            .map(|hw| (hw - o.offset.offset).max(0)),
                    })
                    .collect(),
            })
            .collect();
        Stats {
            partitions,
            producers: self.producers.counters(),
            transactions,
            groups,
            compaction: self.cleaner.counters,
        }
    }
}
