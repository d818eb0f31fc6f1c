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

use std::path::Path;
use std::sync::Arc;

use kafka_protocol::messages::ResponseKind;
use storage::{Disk, LogConfig, PartitionLog};
use txn::{MarkerRequest, Record, Response, TxnConfig, TxnCoordinator};
use wire::batch::{build_batch, Batches, ProducerFields};

use crate::BrokerError;

/// Directory of the transaction log inside the data directory.
pub const TXN_LOG_DIR: &str = "__transaction_state-0";
/// Name used for the transaction log in traces and sync bookkeeping.
pub const TXN_LOG_TOPIC: &str = "__transaction_state";
const TXN_LOG_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
const REPLAY_CHUNK_BYTES: usize = 1024 * 1024;
const RECORDS_PER_BATCH: usize = 1000;

pub struct Transactions {
    coordinator: TxnCoordinator,
    log: PartitionLog,
    clock_ms: u64,
    /// Markers to write once the append ticket that prepared them is fsynced (step 2).
    markers_due: Vec<(u64, MarkerRequest)>,
    /// Transactions whose markers are written, to report once that ticket is fsynced (step 3).
    completions_due: Vec<(u64, MarkerRequest)>,
}

impl Transactions {
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        config: TxnConfig,
        now_ms: i64,
    ) -> Result<Transactions, BrokerError> {
        let log_config = LogConfig {
            segment_bytes: TXN_LOG_SEGMENT_BYTES,
            retention_bytes: -1,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(disk, &data_dir.join(TXN_LOG_DIR), log_config, now_ms)
            .map_err(log_error)?;
        let mut transactions = Transactions {
            coordinator: TxnCoordinator::new(config),
            log,
            clock_ms: now_ms.max(0) as u64,
            markers_due: Vec::new(),
            completions_due: Vec::new(),
        };
        let replayed = transactions.replay()?;
        tracing::info!(
            records = replayed,
            transactional_ids = transactions.coordinator.transactions().len(),
            "replayed transaction log"
        );
        Ok(transactions)
    }

    pub fn coordinator(&self) -> &TxnCoordinator {
        &self.coordinator
    }

    pub fn coordinator_mut(&mut self) -> &mut TxnCoordinator {
        &mut self.coordinator
    }

    pub fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    pub fn close(self) -> Result<(), BrokerError> {
        self.log.close().map_err(log_error)
    }

    /// The coordinator's clock: wall time clamped so it never goes back.
    pub fn now(&mut self, now_ms: i64) -> u64 {
        self.clock_ms = self.clock_ms.max(now_ms.max(0) as u64);
        self.clock_ms
    }

    /// Appends an output's records; returns whether anything was appended.
    pub fn append(&mut self, records: &[Record], now_ms: i64) -> Result<bool, BrokerError> {
        for chunk in records.chunks(RECORDS_PER_BATCH) {
            let pairs: Vec<(Option<&[u8]>, Option<&[u8]>)> = chunk
                .iter()
                .map(|r| (Some(&r.key[..]), r.value.as_deref()))
                .collect();
            let mut batch = build_batch(&pairs, now_ms, ProducerFields::NONE, 0);
            self.log.append(&mut batch, now_ms).map_err(log_error)?;
        }
        Ok(!records.is_empty())
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

    pub fn has_due_work(&self) -> bool {
        !self.markers_due.is_empty() || !self.completions_due.is_empty()
    }

    fn replay(&mut self) -> Result<usize, BrokerError> {
        let end = self.log.log_end_offset();
        let mut offset = self.log.log_start_offset();
        let mut replayed = 0;
        while offset < end {
            let bytes = self
                .log
                .read(offset, REPLAY_CHUNK_BYTES, end)
                .map_err(log_error)?;
            assert!(
                !bytes.is_empty(),
                "transaction log read below its end returned nothing"
            );
            for item in Batches::new(&bytes) {
                let (_, batch) =
                    item.map_err(|e| corrupt(format!("batch at offset {offset}: {e}")))?;
                let records = batch
                    .records()
                    .map_err(|e| corrupt(format!("batch {}: {e}", batch.base_offset())))?;
                for record in records {
                    let key = record
                        .key
                        .ok_or_else(|| corrupt("record without key".into()))?;
                    let record = Record {
                        key: bytes::Bytes::copy_from_slice(key),
                        value: record.value.map(bytes::Bytes::copy_from_slice),
                    };
                    self.coordinator
                        .replay(&record)
                        .map_err(|e| corrupt(e.to_string()))?;
                    replayed += 1;
                }
                offset = batch.last_offset() + 1;
            }
        }
        Ok(replayed)
    }
}

fn take_due(due: &mut Vec<(u64, MarkerRequest)>, synced: u64) -> Vec<MarkerRequest> {
    let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(due)
        .into_iter()
        .partition(|(t, _)| *t <= synced);
    *due = waiting;
    ready.into_iter().map(|(_, m)| m).collect()
}

fn log_error(source: storage::LogError) -> BrokerError {
    BrokerError::Log {
        topic: TXN_LOG_TOPIC.to_string(),
        partition: 0,
        source,
    }
}

fn corrupt(reason: String) -> BrokerError {
    BrokerError::Meta(format!("transaction log {TXN_LOG_DIR}: {reason}"))
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
