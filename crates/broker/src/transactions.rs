//! The broker side of transactions: the `txn` crate's coordinator, its durable log, replay and
//! recovery on start, and the two-stage marker pipeline that keeps a transaction atomic.
//!
//! The transaction log is an internal partition log, `__transaction_state-0` in the data
//! directory, not listed as a topic, written like the group log (one uncompressed batch of the
//! coordinator's records per output). Ending a transaction happens in three durable steps:
//!
//! 1. the coordinator writes PrepareCommit / PrepareAbort; EndTxn is answered once it is fsynced;
//! 2. only then are the markers written: a control batch on every partition of the transaction,
//!    and the group offsets committed or dropped in the group log;
//! 3. once those are fsynced, `markers_written` moves the transaction to CompleteCommit /
//!    CompleteAbort.
//!
//! Writing markers before step 1 is durable could leave one partition committed and another
//! aborted after a crash; the tickets of the group commit order the steps. After a restart,
//! `recover` re-issues the markers of every transaction left in step 1 or 2 (writing a marker
//! twice is harmless: the second finds no open transaction).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::ResponseKind;
use storage::{Disk, PartitionLog};
use txn::{MarkerRequest, Record, Response, TxnConfig, TxnCoordinator};

use crate::internal_log::InternalLog;
use crate::BrokerError;

/// Name of the transaction log in traces; its directory is `__transaction_state-0`
/// (`docs/storage-format.md`). Sync bookkeeping names it `LogId::Transactions`.
pub const TXN_LOG_NAME: &str = "__transaction_state";

/// The transaction coordinator, locked for a look at it.
pub struct CoordinatorGuard<'a>(pub(crate) std::sync::MutexGuard<'a, Transactions>);

impl std::ops::Deref for CoordinatorGuard<'_> {
    type Target = TxnCoordinator;

    fn deref(&self) -> &TxnCoordinator {
        self.0.coordinator()
    }
}

pub struct Transactions {
    coordinator: TxnCoordinator,
    log: InternalLog,
    /// Markers to write once the append ticket that prepared them is fsynced (step 2).
    markers_due: Vec<(u64, MarkerRequest)>,
    /// Transactions whose markers are written, to report once that ticket is fsynced (step 3).
    completions_due: Vec<(u64, MarkerRequest)>,
    /// Transactional id → the (topic, partition, append ticket) it added to its transaction by
    /// AddPartitionsToTxn, until that ticket is fsynced. Keyed by id so that the check on every
    /// transactional produce borrows its strings instead of allocating.
    unsynced_adds: HashMap<String, Vec<(String, i32, u64)>>,
}

impl Transactions {
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        config: TxnConfig,
        compact_bytes: u64,
        now_ms: i64,
    ) -> Result<Transactions, BrokerError> {
        let log = InternalLog::open(disk, data_dir, TXN_LOG_NAME, now_ms)?;
        let mut transactions = Transactions {
            coordinator: TxnCoordinator::new(config),
            log,
            markers_due: Vec::new(),
            completions_due: Vec::new(),
            unsynced_adds: HashMap::new(),
        };
        let coordinator = &mut transactions.coordinator;
        let replayed = transactions.log.replay(|key, value| {
            coordinator
                .replay(&Record { key, value })
                .map_err(|e| e.to_string())
        })?;
        tracing::info!(
            records = replayed,
            transactional_ids = transactions.coordinator.transactions().len(),
            "replayed transaction log"
        );
        let coordinator = &transactions.coordinator;
        transactions
            .log
            .compact_at_open(now_ms, compact_bytes, || coordinator.snapshot())?;
        Ok(transactions)
    }

    pub fn coordinator(&self) -> &TxnCoordinator {
        &self.coordinator
    }

    pub fn coordinator_mut(&mut self) -> &mut TxnCoordinator {
        &mut self.coordinator
    }

    pub fn log_start_offset(&self) -> i64 {
        self.log.log_start_offset()
    }

    pub fn log_mut(&mut self) -> &mut PartitionLog {
        self.log.log_mut()
    }

    /// Bytes of the internal log's segments.
    pub fn log_size_bytes(&self) -> u64 {
        self.log.size_bytes()
    }

    /// Runtime compaction of the transaction log (see `internal_log`); returns whether records
    /// were appended or segments deleted (the caller then takes a sync ticket).
    pub fn maintain_log(&mut self, now_ms: i64, threshold_bytes: u64) -> Result<bool, BrokerError> {
        let coordinator = &self.coordinator;
        self.log
            .maintain(now_ms, threshold_bytes, || coordinator.snapshot())
    }

    pub fn close(self) -> Result<(), BrokerError> {
        self.log.close()
    }

    /// Appends an output's records; returns whether anything was appended.
    pub fn append(&mut self, records: &[Record], now_ms: i64) -> Result<bool, BrokerError> {
        self.log.append(records, now_ms)?;
        Ok(!records.is_empty())
    }

    /// Remembers that `transactional_id` added `partitions` to its transaction in records that
    /// are durable only once `ticket` is fsynced.
    pub fn note_added(
        &mut self,
        transactional_id: &str,
        partitions: Vec<(String, i32)>,
        ticket: u64,
    ) {
        let adds = self
            .unsynced_adds
            .entry(transactional_id.to_owned())
            .or_default();
        adds.retain(|(topic, partition, _)| {
            !partitions.iter().any(|(t, p)| t == topic && p == partition)
        });
        adds.extend(
            partitions
                .into_iter()
                .map(|(topic, partition)| (topic, partition, ticket)),
        );
    }

    /// Whether `transactional_id` added the partition in a record not fsynced yet (`synced` is
    /// the newest fsynced ticket).
    pub fn added_unsynced(
        &self,
        transactional_id: &str,
        topic: &str,
        partition: i32,
        synced: u64,
    ) -> bool {
        self.unsynced_adds
            .get(transactional_id)
            .is_some_and(|adds| {
                adds.iter()
                    .any(|(t, p, ticket)| t == topic && *p == partition && *ticket > synced)
            })
    }

    /// Forgets the additions fsynced up to `synced`.
    pub fn forget_synced(&mut self, synced: u64) {
        self.unsynced_adds.retain(|_, adds| {
            adds.retain(|(_, _, ticket)| *ticket > synced);
            !adds.is_empty()
        });
    }

    /// Schedules an output's markers for after `ticket` is durable (step 1 → 2).
    pub fn schedule_markers(&mut self, ticket: u64, markers: Vec<MarkerRequest>) {
        self.markers_due
            .extend(markers.into_iter().map(|m| (ticket, m)));
    }

    /// Markers whose preparing record is durable now.
    pub fn take_markers_due(&mut self, synced: u64) -> Vec<MarkerRequest> {
        take_due(&mut self.markers_due, synced)
    }

    /// Records that a transaction's markers were appended under `ticket` (step 2 → 3).
    pub fn markers_appended(&mut self, ticket: u64, marker: MarkerRequest) {
        self.completions_due.push((ticket, marker));
    }

    /// Transactions whose markers are durable now.
    pub fn take_completions_due(&mut self, synced: u64) -> Vec<MarkerRequest> {
        take_due(&mut self.completions_due, synced)
    }
}

fn take_due(due: &mut Vec<(u64, MarkerRequest)>, synced: u64) -> Vec<MarkerRequest> {
    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(due)
        .into_iter()
        .partition(|(t, _)| *t <= synced);
    *due = waiting;
    ready.into_iter().map(|(_, m)| m).collect()
}

pub fn response_kind(response: Response) -> ResponseKind {
    match response {
        Response::InitProducerId(r) => ResponseKind::InitProducerId(r),
        Response::AddPartitionsToTxn(r) => ResponseKind::AddPartitionsToTxn(r),
        Response::AddOffsetsToTxn(r) => ResponseKind::AddOffsetsToTxn(r),
        Response::EndTxn(r) => ResponseKind::EndTxn(r),
        Response::TxnOffsetCommit(r) => ResponseKind::TxnOffsetCommit(r),
        Response::ListTransactions(r) => ResponseKind::ListTransactions(r),
        Response::DescribeTransactions(r) => ResponseKind::DescribeTransactions(r),
    }
}

/// The transaction request in a decoded body, if it is one (InitProducerId only with a
/// transactional id: without one it is the idempotent producer's).
/// Whether `api` may be a transaction coordinator's (those [`txn_request`] takes; an
/// InitProducerId is one when it names a transactional id).
pub fn is_txn_api(api: kafka_protocol::messages::ApiKey) -> bool {
    use kafka_protocol::messages::ApiKey as A;
    matches!(
        api,
        A::InitProducerId
            | A::AddPartitionsToTxn
            | A::AddOffsetsToTxn
            | A::EndTxn
            | A::TxnOffsetCommit
            | A::ListTransactions
            | A::DescribeTransactions
    )
}

pub fn txn_request(
    body: kafka_protocol::messages::RequestKind,
) -> Result<txn::Request, kafka_protocol::messages::RequestKind> {
    use kafka_protocol::messages::RequestKind as K;
    Ok(match body {
        K::InitProducerId(r) if r.transactional_id.is_some() => txn::Request::InitProducerId(r),
        K::AddPartitionsToTxn(r) => txn::Request::AddPartitionsToTxn(r),
        K::AddOffsetsToTxn(r) => txn::Request::AddOffsetsToTxn(r),
        K::EndTxn(r) => txn::Request::EndTxn(r),
        K::TxnOffsetCommit(r) => txn::Request::TxnOffsetCommit(r),
        K::ListTransactions(r) => txn::Request::ListTransactions(r),
        K::DescribeTransactions(r) => txn::Request::DescribeTransactions(r),
        other => return Err(other),
    })
}
