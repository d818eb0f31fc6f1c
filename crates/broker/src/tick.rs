//! `Broker::tick`: all of the broker's timed work, at the time the server passes in, and
//! `Broker::next_deadline`, when it is next due. The coordinators' timeouts fire on every tick
//! that reaches them; the housekeeping that walks every log (retention, trailing recovery-point
//! checkpoints, internal-log compaction, compacted topics' cleaning, producer maintenance) runs
//! at most once per
//! [`HOUSEKEEPING_INTERVAL_MS`].

use crate::{Broker, BrokerError, LogId, Now};

/// How often the housekeeping over every log runs. Retention itself runs only every
/// `log.retention.check.interval.ms`; the other steps look at each log's own timing.
pub const HOUSEKEEPING_INTERVAL_MS: i64 = 1_000;

impl Broker {
    /// Does the timed work due at `now`. Responses it produces (a JoinGroup released by its
    /// delay, an expired member's pending answers) are routed: see [`Broker::take_routed`].
    pub fn tick(&mut self, now: Now) -> Result<(), BrokerError> {
        self.advance(now);
        self.tick_coordinators(now)?;
        if now.wall_ms() >= self.housekeeping_due_ms {
            self.housekeeping_due_ms = now.wall_ms().saturating_add(HOUSEKEEPING_INTERVAL_MS);
            self.housekeeping(now.wall_ms())?;
        }
        Ok(())
    }

    /// When [`Broker::tick`] next has work, in wall-clock milliseconds (at the latest the next
    /// housekeeping). A call may move it earlier (a JoinGroup starts its group's delay).
    pub fn next_deadline(&self) -> i64 {
        let housekeeping = self.housekeeping_due_ms;
        self.coordinators_deadline_ms()
            .map_or(housekeeping, |deadline| deadline.min(housekeeping))
    }

    /// The descriptors and mappings housekeeping released, for the caller to close and unmap
    /// outside its lock.
    pub fn take_released(&mut self) -> Vec<storage::Released> {
        std::mem::take(&mut self.released)
    }

    /// Producer maintenance, trailing checkpoints, internal-log compaction, the descriptors of
    /// sealed segments read since the last time closed again, and segments past retention
    /// deleted at most once per `log.retention.check.interval.ms`.
    fn housekeeping(&mut self, now_ms: i64) -> Result<(), BrokerError> {
        self.maintain_producers(now_ms);
        let reopened_seen = storage::reopened_descriptors();
        let reopened = reopened_seen != self.reopened_seen;
        self.reopened_seen = reopened_seen;
        for (_, topic) in self.topics.iter_mut() {
            for partition in topic.partitions.iter_mut() {
                let released = partition.log_mut().release_idle_files(reopened);
                self.released.extend(released);
            }
        }
        self.schedule_trailing_checkpoints(now_ms);
        let compact_bytes = self.config.internal_log_compact_bytes;
        if self.groups.maintain_log(now_ms, compact_bytes)? {
            self.tickets.note(LogId::Groups);
        }
        if self.txns().maintain_log(now_ms, compact_bytes)? {
            self.tickets.note(LogId::Transactions);
        }
        self.plan_compaction(now_ms);
        if now_ms - self.retention_checked_ms < self.config.retention_check_interval_ms {
            return Ok(());
        }
        self.retention_checked_ms = now_ms;
        for (name, topic) in self.topics.iter_mut() {
            for (index, partition) in topic.partitions.iter_mut().enumerate() {
                let deleted = partition
                    .log_mut()
                    .enforce_retention(now_ms)
                    .map_err(|source| BrokerError::log(name, index as i32, source))?;
                if deleted > 0 {
                    tracing::info!(topic = %name, partition = index, deleted, "retention deleted segments");
                    // The group commit's next round removes their files, outside the lock.
                    self.tickets
                        .note(LogId::partition(topic.name.clone(), index as i32));
                }
            }
        }
        Ok(())
    }

    /// Forgets producer ids idle for `producer.id.expiration.ms` (checked once a minute),
    /// writes periodic producer snapshots, and traces the idempotence counters when they moved.
    fn maintain_producers(&mut self, now_ms: i64) {
        let expiration_ms = self
            .producers
            .expiration_due(now_ms)
            .then_some(self.config.producer_id_expiration_ms);
        for (_, topic) in self.topics.iter_mut() {
            for (index, partition) in topic.partitions.iter_mut().enumerate() {
                let expired = partition.maintain_producers(now_ms, expiration_ms);
                self.producers.count_expired(expired);
                if partition.log().has_deferred_files() {
                    // A snapshot to write: the group commit's next round does it.
                    self.tickets
                        .note(LogId::partition(topic.name.clone(), index as i32));
                }
            }
        }
        self.producers.trace_if_changed();
    }
}
