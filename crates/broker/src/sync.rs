//! The broker's side of the group commit: append tickets, the logs written since their last
//! fsync (named by [`LogId`], the internal group and transaction logs included), the sync work
//! handed to the server to run outside the lock, and its reports (`Broker::synced` for a round's
//! data fsyncs, `Broker::mark_checkpointed` for its recovery points).

use std::collections::BTreeSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use storage::{PartitionLog, SyncWork};

use crate::producers::ids::IdReservation;
use crate::{groups, transactions, Broker, BrokerError, Now};

/// Which log: a topic's partition, or one of the coordinators' internal logs. Cheap to clone
/// (the topic name is shared with the registry).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogId {
    /// A topic's partition log.
    Partition { topic: Arc<str>, partition: i32 },
    /// The group coordinator's log (directory `__consumer_offsets-0`).
    Groups,
    /// The transaction coordinator's log (directory `__transaction_state-0`).
    Transactions,
}

impl LogId {
    pub fn partition(topic: impl Into<Arc<str>>, partition: i32) -> LogId {
        LogId::Partition {
            topic: topic.into(),
            partition,
        }
    }
}

/// As the log's directory is named: `orders-3`, `__consumer_offsets-0`.
impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogId::Partition { topic, partition } => write!(f, "{topic}-{partition}"),
            LogId::Groups => write!(f, "{}-0", groups::GROUP_LOG_NAME),
            LogId::Transactions => write!(f, "{}-0", transactions::TXN_LOG_NAME),
        }
    }
}

/// One group-commit round's work, taken under the lock ([`Broker::take_sync_work`]) and run
/// outside it.
pub struct SyncRound {
    /// The round covers everything appended up to this ticket.
    pub ticket: u64,
    /// A block of producer ids to make durable before any log's writes: an answer naming an
    /// id of it waits for this round, and so may the transaction log's record of it.
    pub ids: Option<IdReservation>,
    /// Every log appended to since its last round: writes, then fsyncs.
    pub logs: Vec<(LogId, SyncWork)>,
}

/// Append tickets and the logs that wait for an fsync. Produces note their appends holding the
/// broker shared, so this is interior: the counters are atomics and the dirty set has a lock of
/// its own, held for one insert. The group commit takes the dirty set holding the broker
/// exclusively, so no append is in flight then and a round's ticket covers every append noted.
#[derive(Debug, Default)]
pub(crate) struct Tickets {
    /// Incremented on every append; the group commit fsyncs up to a ticket.
    appended: AtomicU64,
    /// The newest ticket the group commit reported fsynced.
    synced: AtomicU64,
    /// Logs appended to since their last fsync.
    dirty: Mutex<BTreeSet<LogId>>,
}

impl Tickets {
    pub(crate) fn appended(&self) -> u64 {
        self.appended.load(Ordering::SeqCst)
    }

    pub(crate) fn synced(&self) -> u64 {
        self.synced.load(Ordering::SeqCst)
    }

    /// Learns that everything up to `ticket` is fsynced.
    pub(crate) fn observe_synced(&self, ticket: u64) {
        self.synced.fetch_max(ticket, Ordering::SeqCst);
    }

    /// Notes an append to `log`; returns its ticket.
    pub(crate) fn note(&self, log: LogId) -> u64 {
        let mut dirty = self.dirty.lock().expect(TICKETS_POISONED);
        dirty.insert(log);
        self.appended.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Takes a ticket without an append, so that the group commit runs a round anyway.
    pub(crate) fn bump(&self) -> u64 {
        self.appended.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The dirty logs, with the broker held exclusively.
    fn dirty_mut(&mut self) -> &mut BTreeSet<LogId> {
        self.dirty.get_mut().expect(TICKETS_POISONED)
    }
}

const TICKETS_POISONED: &str = "ticket lock poisoned by an earlier panic";

impl Broker {
    /// The ticket of the newest append; the group commit covers all appends up to it.
    pub fn append_ticket(&self) -> u64 {
        self.tickets.appended()
    }

    /// Takes the fsync work for everything appended so far: the server runs it outside the lock
    /// (the producer id block first, then every log's writes, then their fsyncs), then calls
    /// [`Broker::synced`] with the round's ticket and the logs' offsets.
    pub fn take_sync_work(&mut self) -> SyncRound {
        let mut work = Vec::new();
        for log in std::mem::take(self.tickets.dirty_mut()) {
            let internal = matches!(log, LogId::Groups | LogId::Transactions);
            let Some(partition_log) = self.log_of(&log) else {
                continue;
            };
            if let Some(sync) = partition_log.take_sync_work() {
                work.push((log, sync));
            } else if internal {
                // The previous round's work is still running; sync again next round.
                self.tickets.dirty_mut().insert(log);
            }
        }
        SyncRound {
            ticket: self.tickets.appended(),
            ids: self.producers.take_reservation(),
            logs: work,
        }
    }

    /// A round of appends only, taken while earlier rounds' write-ahead log frames are still
    /// being fsynced (`PartitionLog::take_append_work`), so that their fsyncs overlap; None when
    /// some dirty log has more than appends to sync (a roll, a deletion, a checkpoint due), which
    /// waits for a round of [`Broker::take_sync_work`] once the earlier rounds are reported,
    /// when the appends come to more than `bytes_max` (a round the write-ahead log would not
    /// take: it syncs its files directly, after the earlier rounds), or when no log has anything
    /// to sync. Reported with [`Broker::synced`] in the order taken.
    pub fn take_append_round(&mut self, bytes_max: u64) -> Option<SyncRound> {
        let mut ready = true;
        let mut bytes = 0;
        let mut any = false;
        for log in self.tickets.dirty_mut().clone() {
            let Some(partition_log) = self.log_of(&log) else {
                continue;
            };
            if partition_log.can_take_appends() {
                any = true;
                bytes += partition_log.pending_bytes();
            } else if partition_log.sync_due() {
                ready = false;
            }
        }
        if !ready || !any || bytes > bytes_max {
            return None;
        }
        let mut work = Vec::new();
        for log in std::mem::take(self.tickets.dirty_mut()) {
            if let Some(sync) = self.log_of(&log).and_then(|l| l.take_append_work()) {
                work.push((log, sync));
            }
        }
        Some(SyncRound {
            ticket: self.tickets.appended(),
            ids: self.producers.take_reservation(),
            logs: work,
        })
    }

    /// The group commit's write-ahead log: a round of small appends is made durable by one
    /// frame of it instead of one fsync per log (`storage::Wal`).
    pub fn wal(&self) -> std::sync::Arc<storage::Wal> {
        self.topics.wal().clone()
    }

    /// Learns that everything appended up to `ticket` is fsynced (the server may release
    /// acknowledgements before it reports the round with `synced`).
    pub fn observe_synced(&self, ticket: u64) {
        self.tickets.observe_synced(ticket);
    }

    /// The group commit's report of a round: everything appended up to `ticket` is fsynced,
    /// each log's data up to its offset in `logs` (`SyncWork::run_data`). The high watermarks
    /// move, then the transaction pipeline takes the steps this unblocked (its answers are
    /// routed: [`Broker::take_routed`]). The checkpoints the work carries are reported later
    /// with [`Broker::mark_checkpointed`].
    pub fn synced(
        &mut self,
        now: Now,
        ticket: u64,
        logs: Vec<(LogId, i64)>,
    ) -> Result<(), BrokerError> {
        self.advance(now);
        self.mark_synced(ticket, logs);
        self.advance_transactions(now, ticket)
    }

    fn mark_synced(&mut self, ticket: u64, synced: Vec<(LogId, i64)>) {
        self.observe_synced(ticket);
        // Shared calls may have observed it first: the additions are forgotten here.
        let synced_ticket = self.tickets.synced();
        self.txns().forget_synced(synced_ticket);
        self.producers.synced(ticket);
        for (log, offset) in synced {
            // A log deleted and created again meanwhile is not the one that was synced; its
            // high watermark must not move for fsyncs of another file.
            if let Some(log) = self.log_of(&log).filter(|log| log.syncs_in_flight(offset)) {
                log.mark_data_synced(offset);
            }
        }
    }

    /// Reports recovery-point checkpoints written (`SyncWork::run_checkpoint`).
    pub fn mark_checkpointed(&mut self, written: Vec<(LogId, i64)>) {
        for (log, recovery_point) in written {
            // A log deleted and created again meanwhile is not the one the checkpoint was for.
            if let Some(log) = self
                .log_of(&log)
                .filter(|log| log.checkpoint_in_flight() == Some(recovery_point))
            {
                log.mark_checkpointed(recovery_point);
            }
        }
    }

    /// Whether the log exists (a partition may have been deleted since its work was taken).
    pub fn has_log(&mut self, log: &LogId) -> bool {
        self.log_of(log).is_some()
    }

    /// The log behind a [`LogId`], the internal group and transaction logs included.
    fn log_of(&mut self, log: &LogId) -> Option<&mut PartitionLog> {
        match log {
            LogId::Groups => Some(self.groups.log_mut()),
            LogId::Transactions => Some(self.txns().log_mut()),
            LogId::Partition { topic, partition } => self
                .topics
                .partition_mut(topic, *partition)
                .map(|partition| partition.log_mut()),
        }
    }

    /// Marks dirty every quiet log whose recovery point lags its synced data (see
    /// `PartitionLog::wants_trailing_checkpoint`), and takes a ticket so that the group commit
    /// runs a round: its work for those logs is the checkpoint alone.
    pub(crate) fn schedule_trailing_checkpoints(&mut self, now_ms: i64) {
        let mut lagging: Vec<LogId> = Vec::new();
        for (_, topic) in self.topics.iter_mut() {
            for (index, partition) in topic.partitions.iter_mut().enumerate() {
                if partition.log_mut().wants_trailing_checkpoint(now_ms) {
                    lagging.push(LogId::partition(topic.name.clone(), index as i32));
                }
            }
        }
        if self.groups.log_mut().wants_trailing_checkpoint(now_ms) {
            lagging.push(LogId::Groups);
        }
        if self.txns().log_mut().wants_trailing_checkpoint(now_ms) {
            lagging.push(LogId::Transactions);
        }
        if !lagging.is_empty() {
            self.tickets.dirty_mut().extend(lagging);
            self.tickets.bump();
        }
    }

    /// Notes an append to a topic's partition (the produce path); returns its ticket.
    pub(crate) fn note_append(&self, topic: &str, partition: i32) -> u64 {
        // The registry's name is shared rather than copied: this runs on every produce.
        let topic = match self.topics.get(topic) {
            Some(known) => known.name.clone(),
            None => Arc::from(topic),
        };
        self.tickets.note(LogId::partition(topic, partition))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ids_read_as_their_directories() {
        // The internal logs' directories are documented in docs/storage-format.md.
        assert_eq!(LogId::Groups.to_string(), "__consumer_offsets-0");
        assert_eq!(LogId::Transactions.to_string(), "__transaction_state-0");
        assert_eq!(LogId::partition("orders", 3).to_string(), "orders-3");
    }
}
