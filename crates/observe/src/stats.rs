//! The broker's snapshot ([`broker::Stats`]) as metric families.

use prometheus::proto::MetricFamily;

use crate::families::Families;

/// The families of one broker snapshot.
pub fn broker_families(stats: &broker::Stats) -> Vec<MetricFamily> {
    let mut f = Families::default();
    partitions(&mut f, stats);
    idempotence(&mut f, &stats.producers);
    transactions(&mut f, &stats.transactions);
    groups(&mut f, stats);
    compaction(&mut f, &stats.compaction);
    f.finish()
}

fn compaction(f: &mut Families, counters: &broker::cleaner::CompactionCounters) {
    let counted = [
        (
            "ferry_log_cleanings_total",
            "Cleanings of compacted partitions put in place (cleanup.policy=compact).",
            counters.cleanings,
        ),
        (
            "ferry_log_cleaning_failures_total",
            "Cleanings that failed on an I/O error or damaged data; the partition is left as it was.",
            counters.failures,
        ),
        (
            "ferry_log_cleaner_records_removed_total",
            "Records compaction removed: superseded by a later record of their key, keyless, or tombstones past delete.retention.ms.",
            counters.records_removed,
        ),
        (
            "ferry_log_cleaner_bytes_reclaimed_total",
            "Bytes of segment files compaction freed.",
            counters.bytes_reclaimed,
        ),
    ];
    unlabelled_counters(f, &counted);
}

fn partitions(f: &mut Families, stats: &broker::Stats) {
    type Read = fn(&broker::stats::PartitionStats) -> f64;
    let gauges: [(&str, &str, Read); 7] = [
        (
            "ferry_partition_log_start_offset",
            "The partition's first offset still in the log.",
            |p| p.log_start_offset as f64,
        ),
        (
            "ferry_partition_log_end_offset",
            "The offset the partition's next record gets.",
            |p| p.log_end_offset as f64,
        ),
        (
            "ferry_partition_high_watermark",
            "The end of the fsynced, readable records.",
            |p| p.high_watermark as f64,
        ),
        (
            "ferry_partition_last_stable_offset",
            "The end of what read_committed consumers may read (before the oldest open transaction).",
            |p| p.last_stable_offset as f64,
        ),
        (
            "ferry_partition_size_bytes",
            "Bytes of the partition's log segments.",
            |p| p.size_bytes as f64,
        ),
        (
            "ferry_partition_segments",
            "Log segments of the partition.",
            |p| p.segments as f64,
        ),
        (
            "ferry_partition_producers",
            "Producer ids with state in the partition (idempotent and transactional producers).",
            |p| p.producers as f64,
        ),
    ];
    for (name, help, read) in gauges {
        f.gauge(name, help);
        for p in &stats.partitions {
            let partition = p.partition.to_string();
            f.sample(&[("topic", &p.topic), ("partition", &partition)], read(p));
        }
    }
    f.counter(
        "ferry_topic_bytes_in_total",
        "Bytes of producers' record batches appended to the topic since the broker started.",
    );
    let mut by_topic: Vec<(&str, u64)> = Vec::new();
    for p in &stats.partitions {
        match by_topic.last_mut() {
            Some((topic, bytes)) if *topic == &*p.topic => *bytes += p.appended_bytes,
            _ => by_topic.push((&p.topic, p.appended_bytes)),
        }
    }
    for (topic, bytes) in by_topic {
        f.sample(&[("topic", topic)], bytes as f64);
    }
}

fn idempotence(f: &mut Families, counters: &broker::producers::Counters) {
    let counted = [
        (
            "ferry_idempotent_duplicate_batches_total",
            "Retried batches already in the log, answered with their original offsets and not written again.",
            counters.duplicates,
        ),
        (
            "ferry_idempotent_out_of_order_batches_total",
            "Batches refused with OUT_OF_ORDER_SEQUENCE_NUMBER (a gap in a producer's sequence).",
            counters.out_of_order,
        ),
        (
            "ferry_idempotent_fenced_batches_total",
            "Batches refused with INVALID_PRODUCER_EPOCH (a fenced, older producer).",
            counters.fenced,
        ),
        (
            "ferry_producer_ids_allocated_total",
            "Producer ids handed out by InitProducerId.",
            counters.allocated,
        ),
        (
            "ferry_producer_ids_expired_total",
            "Producer ids forgotten after producer.id.expiration.ms idle.",
            counters.expired,
        ),
    ];
    unlabelled_counters(f, &counted);
}

/// Counters without labels: (name, help, value).
fn unlabelled_counters(f: &mut Families, counted: &[(&str, &str, u64)]) {
    for &(name, help, value) in counted {
        f.counter(name, help).sample(&[], value as f64);
    }
}

fn transactions(f: &mut Families, stats: &broker::stats::TransactionStats) {
    let counters = stats.counters;
    f.counter(
        "ferry_transactions_total",
        "Transactions begun, committed, aborted (by the client or a timeout) and timed out (aborted by the coordinator), since the broker started.",
    );
    for (event, value) in [
        ("begun", counters.begun),
        ("committed", counters.committed),
        ("aborted", counters.aborted),
        ("timed_out", counters.timed_out),
    ] {
        f.sample(&[("event", event)], value as f64);
    }
    f.gauge(
        "ferry_transactions_open",
        "Transactions in flight: ongoing, or writing their markers.",
    )
    .sample(&[], stats.open as f64);
    f.gauge(
        "ferry_transaction_oldest_open_seconds",
        "How long the oldest transaction in flight has been open (0 when none is).",
    )
    .sample(&[], stats.oldest_open_ms.unwrap_or(0) as f64 / 1000.0);
}

fn groups(f: &mut Families, stats: &broker::Stats) {
    f.gauge("ferry_group_members", "Members of the consumer group.");
    for g in &stats.groups {
        f.sample(&[("group", &g.group_id)], g.members as f64);
    }
    f.gauge(
        "ferry_group_generation",
        "The consumer group's generation id.",
    );
    for g in &stats.groups {
        f.sample(&[("group", &g.group_id)], f64::from(g.generation));
    }
    f.gauge(
        "ferry_group_state",
        "1 for the consumer group's state (Empty, PreparingRebalance, CompletingRebalance, Stable, Dead).",
    );
    for g in &stats.groups {
        f.sample(&[("group", &g.group_id), ("state", g.state)], 1.0);
    }
    f.counter(
        "ferry_group_rebalances_total",
        "Rebalances the consumer group began since the broker started.",
    );
    for g in &stats.groups {
        f.sample(&[("group", &g.group_id)], g.rebalances as f64);
    }
    f.gauge(
        "ferry_group_committed_offset",
        "The offset the consumer group committed for the partition.",
    );
    for g in &stats.groups {
        for o in &g.offsets {
            let partition = o.partition.to_string();
            let labels = [
                ("group", g.group_id.as_str()),
                ("topic", &o.topic),
                ("partition", &partition),
            ];
            f.sample(&labels, o.committed as f64);
        }
    }
    f.gauge(
        "ferry_group_lag",
        "Records between the consumer group's committed offset and the partition's high watermark.",
    );
    for g in &stats.groups {
        for o in &g.offsets {
            let Some(lag) = o.lag else { continue };
            let partition = o.partition.to_string();
            let labels = [
                ("group", g.group_id.as_str()),
                ("topic", &o.topic),
                ("partition", &partition),
            ];
            f.sample(&labels, lag as f64);
        }
    }
}
