//! The log cleaner of compacted topics (`cleanup.policy=compact`): the housekeeping plans a
//! cleaning per partition under the broker's lock (`PartitionLog::plan_clean`), the server takes
//! the plans (`Broker::take_clean_tasks`) and runs them one at a time on a blocking thread
//! (`CleanTask::run`: reading, mapping keys, writing and syncing the cleaned segments, all
//! without the lock), and reports each back under the lock (`Broker::clean_done`), which puts it
//! in place (`PartitionLog::install_clean`: a few renames and fsyncs). One at a time, as Kafka's
//! `log.cleaner.threads` defaults to one.

use std::collections::HashMap;

use storage::{CleanContext, CleanJob, Cleaned, LogError};

use crate::{Broker, BrokerError};

/// Kafka's default `log.cleaner.backoff.ms`: how often the housekeeping looks for partitions to
/// clean.
pub const CLEANER_BACKOFF_MS_DEFAULT: i64 = 15_000;

/// A cleaning planned for one partition, for the server to run outside the lock.
pub struct CleanTask {
    topic: String,
    partition: i32,
    job: CleanJob,
}

impl CleanTask {
    /// The cleaning's file work (see the module comment).
    pub fn run(self) -> CleanDone {
        CleanDone {
            topic: self.topic,
            partition: self.partition,
            result: self.job.run(),
        }
    }
}

/// A cleaning run, for [`Broker::clean_done`].
pub struct CleanDone {
    topic: String,
    partition: i32,
    result: Result<Cleaned, LogError>,
}

#[derive(Default)]
pub(crate) struct Cleaner {
    /// Planned and not yet taken by the server.
    planned: Vec<CleanTask>,
    checked_ms: i64,
    pub counters: CompactionCounters,
}

/// What the cleaner did since start (metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionCounters {
    /// Cleanings installed.
    pub cleanings: u64,
    /// Cleanings that failed (an I/O error or damage met while reading or writing).
    pub failures: u64,
    /// Records compaction removed (superseded, keyless, or tombstones past their time).
    pub records_removed: u64,
    /// Bytes of segment files compaction freed.
    pub bytes_reclaimed: u64,
}

impl CompactionCounters {
    fn add(&mut self, stats: &storage::CleanStats) {
        if stats.discarded || stats.segments == 0 {
            return;
        }
        self.cleanings += 1;
        self.records_removed += stats.records_removed;
        self.bytes_reclaimed += stats.bytes_before.saturating_sub(stats.bytes_after);
    }
}

impl Broker {
    /// The cleanings planned since the last call, for the server to run one at a time and
    /// report with [`Broker::clean_done`].
    pub fn take_clean_tasks(&mut self) -> Vec<CleanTask> {
        std::mem::take(&mut self.cleaner.planned)
    }

    /// Puts a cleaning the server ran in place. An error is an I/O error on the partition's
    /// directory during the install: the process must stop, as for a failed fsync. A cleaning
    /// whose run failed leaves the partition as it was, with a WARN, to be cleaned again later.
    pub fn clean_done(&mut self, done: CleanDone) -> Result<(), BrokerError> {
        let CleanDone {
            topic,
            partition,
            result,
        } = done;
        // A topic deleted meanwhile took its files with it.
        let Some(log) = self
            .topics
            .partition_mut(&topic, partition)
            .map(|p| p.log_mut())
        else {
            return Ok(());
        };
        match result {
            Ok(cleaned) => {
                let stats = log
                    .install_clean(cleaned)
                    .map_err(|source| BrokerError::log(&topic, partition, source))?;
                self.cleaner.counters.add(&stats);
                // The next group commit round finishes the install (see `install_clean`).
                self.tickets
                    .note(crate::LogId::partition(topic.as_str(), partition));
            }
            Err(error) => {
                tracing::warn!(topic, partition, %error, "log cleaning failed; the partition is left as it was and cleaned again later");
                self.cleaner.counters.failures += 1;
                log.abandon_clean();
            }
        }
        Ok(())
    }

    /// Every `log.cleaner.backoff.ms`, plans a cleaning for each compacted partition that is
    /// due and has none under way.
    pub(crate) fn plan_compaction(&mut self, now_ms: i64) {
        if now_ms - self.cleaner.checked_ms < self.config.cleaner_backoff_ms {
            return;
        }
        self.cleaner.checked_ms = now_ms;
        for (name, topic) in self.topics.iter_mut() {
            if !topic.config.cleanup_policy.compacts() {
                continue;
            }
            for (index, partition) in topic.partitions.iter_mut().enumerate() {
                let end_offset = partition.last_stable_offset();
                let context = CleanContext {
                    end_offset,
                    aborted: partition
                        .aborted_in(partition.log_start_offset(), end_offset)
                        .iter()
                        .map(|t| (t.producer_id, t.first_offset, t.last_offset))
                        .collect(),
                    producer_last_offsets: producer_last_offsets(partition),
                };
                if let Some(job) = partition.log_mut().plan_clean(now_ms, context) {
                    self.cleaner.planned.push(CleanTask {
                        topic: name.clone(),
                        partition: index as i32,
                        job,
                    });
                }
            }
        }
    }
}

fn producer_last_offsets(partition: &crate::partition::Partition) -> HashMap<i64, i64> {
    partition
        .producers()
        .sorted()
        .into_iter()
        .filter_map(|(id, entry)| entry.batches.last().map(|b| (id, b.last_offset())))
        .collect()
}
