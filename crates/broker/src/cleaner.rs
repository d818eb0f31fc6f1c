//! The log cleaner of compacted topics (`cleanup.policy=compact`): the housekeeping plans a
//! cleaning per partition under the broker's lock (`PartitionLog::plan_clean`), one background
//! thread runs it (`CleanJob::run`: reading, mapping keys, writing and syncing the cleaned
//! segments, all without the lock), and a later housekeeping installs the result under the lock
//! (`PartitionLog::install_clean`: a few renames and fsyncs). As Kafka's `log.cleaner.threads`
//! defaults to one, one thread cleans one partition at a time; it starts with the first
//! cleaning, so a broker without compacted topics has none.

use std::collections::HashMap;
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};

use storage::{CleanContext, CleanJob, Cleaned, LogError};

use crate::{Broker, BrokerError};

/// Kafka's default `log.cleaner.backoff.ms`: how often the housekeeping looks for partitions to
/// clean.
pub const CLEANER_BACKOFF_MS_DEFAULT: i64 = 15_000;

/// A finished cleaning, waiting to be installed.
struct Finished {
    topic: String,
    partition: i32,
    result: Result<Cleaned, LogError>,
}

#[derive(Default)]
pub(crate) struct Cleaner {
    jobs: Option<Sender<(String, i32, CleanJob)>>,
    done: Arc<Mutex<Vec<Finished>>>,
    checked_ms: i64,
    /// Cleanings sent and not yet installed.
    in_flight: usize,
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

impl Cleaner {
    fn send(&mut self, topic: String, partition: i32, job: CleanJob) {
        let done = self.done.clone();
        let jobs = self.jobs.get_or_insert_with(|| {
            let (sender, receiver) = channel::<(String, i32, CleanJob)>();
            std::thread::Builder::new()
                .name("ferry-cleaner".into())
                .spawn(move || {
                    for (topic, partition, job) in receiver {
                        let result = job.run();
                        done.lock().expect("cleaner results").push(Finished {
                            topic,
                            partition,
                            result,
                        });
                    }
                })
                .expect("spawn the log cleaner thread");
            sender
        });
        jobs.send((topic, partition, job))
            .expect("the cleaner thread lives as long as the broker");
        self.in_flight += 1;
    }

    fn take_finished(&mut self) -> Vec<Finished> {
        let finished = std::mem::take(&mut *self.done.lock().expect("cleaner results"));
        self.in_flight -= finished.len();
        finished
    }
}

impl Broker {
    /// Installs the cleanings the cleaner finished, then, every `log.cleaner.backoff.ms`, plans
    /// one for each compacted partition that is due.
    pub(crate) fn maintain_compaction(&mut self, now_ms: i64) -> Result<(), BrokerError> {
        for finished in self.cleaner.take_finished() {
            let Finished {
                topic,
                partition,
                result,
            } = finished;
            // A topic deleted meanwhile took its files with it.
            let Some(log) = self
                .topics
                .partition_mut(&topic, partition)
                .map(|p| p.log_mut())
            else {
                continue;
            };
            match result {
                Ok(cleaned) => {
                    let stats = log
                        .install_clean(cleaned)
                        .map_err(|source| BrokerError::log(&topic, partition, source))?;
                    self.cleaner.counters.add(&stats);
                }
                Err(error) => {
                    tracing::warn!(topic, partition, %error, "log cleaning failed; the partition is left as it was and cleaned again later");
                    self.cleaner.counters.failures += 1;
                    log.abandon_clean();
                }
            }
        }
        if now_ms - self.cleaner.checked_ms < self.config.cleaner_backoff_ms {
            return Ok(());
        }
        self.cleaner.checked_ms = now_ms;
        let mut due = Vec::new();
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
                    due.push((name.clone(), index as i32, job));
                }
            }
        }
        for (topic, partition, job) in due {
            self.cleaner.send(topic, partition, job);
        }
        Ok(())
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
