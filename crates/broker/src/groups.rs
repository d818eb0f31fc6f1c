//! The broker side of consumer groups: the `group` crate's coordinator, its durable log, replay
//! on start, and routing of (possibly delayed) responses to the requests they answer.
//!
//! The group log is an internal partition log, `__consumer_offsets-0` in the data directory, not
//! listed as a topic. Each coordinator `Output` becomes one uncompressed v2 batch of its records
//! (tombstones have a null value); the responses of that output are released only once the batch
//! is fsynced (its append ticket), so an acknowledged commit is durable. On start the log is
//! replayed through `GroupCoordinator::replay`; when it has grown past `GROUP_LOG_COMPACT_BYTES`
//! the coordinator's snapshot is appended, synced, and everything before it is deleted.

use std::path::Path;
use std::sync::Arc;

use group::{
    GroupConfig, GroupCoordinator, Output, Record, RequestContext, Response, ResponseToken,
};
use kafka_protocol::messages::ResponseKind;
use kafka_protocol::protocol::StrBytes;
use storage::{Disk, LogConfig, PartitionLog};
use wire::batch::{build_batch, Batches, ProducerFields};

use crate::BrokerError;

/// Directory of the group log inside the data directory.
pub const GROUP_LOG_DIR: &str = "__consumer_offsets-0";
/// Name used for the group log in traces and sync bookkeeping.
pub const GROUP_LOG_TOPIC: &str = "__consumer_offsets";
/// Compact the group log on start once it is larger than this.
pub const GROUP_LOG_COMPACT_BYTES: u64 = 64 * 1024 * 1024;
/// Segment size of the group log, small so compaction frees space soon.
const GROUP_LOG_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// Bytes read per step when replaying the group log.
const REPLAY_CHUNK_BYTES: usize = 1024 * 1024;
/// Records per batch when writing a snapshot.
const SNAPSHOT_BATCH_RECORDS: usize = 1000;

/// Responses for request tokens; send them once `sync_ticket` (if any) is fsynced.
#[derive(Debug, Default)]
pub struct Routed {
    pub sync_ticket: Option<u64>,
    pub responses: Vec<(u64, ResponseKind)>,
}

pub struct Groups {
    coordinator: GroupCoordinator,
    log: PartitionLog,
    /// The coordinator needs a clock that never goes back; wall time is clamped to it.
    clock_ms: u64,
}

impl Groups {
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        config: GroupConfig,
        now_ms: i64,
    ) -> Result<Groups, BrokerError> {
        let log_config = LogConfig {
            segment_bytes: GROUP_LOG_SEGMENT_BYTES,
            retention_bytes: -1,
            retention_ms: -1,
            ..LogConfig::default()
        };
        let log = PartitionLog::open(disk, &data_dir.join(GROUP_LOG_DIR), log_config, now_ms)
            .map_err(log_error)?;
        let clock_ms = now_ms.max(0) as u64;
        let seed = clock_ms ^ u64::from(std::process::id()).rotate_left(32);
        let mut groups = Groups {
            coordinator: GroupCoordinator::new(config, seed),
            log,
            clock_ms,
        };
        let replayed = groups.replay()?;
        tracing::info!(
            records = replayed,
            groups = groups.coordinator.groups().len(),
            "replayed group log"
        );
        if groups.log.size_bytes() > GROUP_LOG_COMPACT_BYTES {
            groups.compact(now_ms)?;
        }
        Ok(groups)
    }

    pub fn coordinator(&self) -> &GroupCoordinator {
        &self.coordinator
    }

    pub fn log_mut(&mut self) -> &mut PartitionLog {
        &mut self.log
    }

    pub fn close(self) -> Result<(), BrokerError> {
        self.log.close().map_err(log_error)
    }

    fn now(&mut self, now_ms: i64) -> u64 {
        self.clock_ms = self.clock_ms.max(now_ms.max(0) as u64);
        self.clock_ms
    }

    /// Handles a group request; the response for `token` may come now or in a later call.
    /// Returns the output and whether records were appended (the caller then takes a ticket).
    pub fn handle(
        &mut self,
        now_ms: i64,
        token: u64,
        version: i16,
        client_id: &str,
        client_host: &str,
        request: group::Request,
    ) -> Result<(Vec<(u64, ResponseKind)>, bool), BrokerError> {
        let now = self.now(now_ms);
        let context = RequestContext {
            token: ResponseToken(token),
            api_version: version,
            client_id: StrBytes::from_string(client_id.to_string()),
            client_host: StrBytes::from_string(client_host.to_string()),
        };
        let output = self.coordinator.handle(now, &context, request);
        self.apply(output, now_ms)
    }

    /// Fires due timeouts (session expiry, rebalance and join delays).
    pub fn tick(&mut self, now_ms: i64) -> Result<(Vec<(u64, ResponseKind)>, bool), BrokerError> {
        let now = self.now(now_ms);
        let output = self.coordinator.tick(now);
        self.apply(output, now_ms)
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.coordinator.next_deadline_ms()
    }

    fn apply(
        &mut self,
        output: Output,
        now_ms: i64,
    ) -> Result<(Vec<(u64, ResponseKind)>, bool), BrokerError> {
        let appended = !output.records.is_empty();
        if appended {
            self.append(&output.records, now_ms)?;
        }
        let responses = output
            .responses
            .into_iter()
            .map(|(token, r)| (token.0, response_kind(r)))
            .collect();
        Ok((responses, appended))
    }

    fn append(&mut self, records: &[Record], now_ms: i64) -> Result<(), BrokerError> {
        for chunk in records.chunks(SNAPSHOT_BATCH_RECORDS) {
            let pairs: Vec<(Option<&[u8]>, Option<&[u8]>)> = chunk
                .iter()
                .map(|r| (Some(&r.key[..]), r.value.as_deref()))
                .collect();
            let mut batch = build_batch(&pairs, now_ms, ProducerFields::NONE, 0);
            self.log.append(&mut batch, now_ms).map_err(log_error)?;
        }
        Ok(())
    }

    /// Stages a transaction's offsets (TxnOffsetCommit): invisible until the transaction ends.
    pub fn stage_txn_offsets(&mut self, now_ms: i64, staged: &txn::GroupOffsets) {
        let now = self.now(now_ms);
        let offsets = staged
            .offsets
            .iter()
            .map(|o| {
                let committed = group::CommittedOffset {
                    offset: o.offset,
                    leader_epoch: o.leader_epoch,
                    metadata: o.metadata.clone(),
                    commit_timestamp_ms: o.commit_timestamp_ms,
                };
                (o.topic.clone(), o.partition, committed)
            })
            .collect();
        self.coordinator
            .stage_txn_offsets(now, &staged.group_id, staged.producer_id, offsets);
    }

    /// Ends a transaction's offsets for one group (the group side of a transaction marker):
    /// commit makes them the committed offsets, in the group log; abort drops them. The offsets
    /// are staged again first, from the transaction log's copy, so this also works after a
    /// restart. Returns whether records were appended.
    pub fn complete_txn_offsets(
        &mut self,
        now_ms: i64,
        staged: &txn::GroupOffsets,
        commit: bool,
    ) -> Result<bool, BrokerError> {
        self.stage_txn_offsets(now_ms, staged);
        let now = self.now(now_ms);
        let records = self.coordinator.complete_txn_offsets(
            now,
            &staged.group_id,
            staged.producer_id,
            commit,
        );
        if records.is_empty() {
            return Ok(false);
        }
        self.append(&records, now_ms)?;
        Ok(true)
    }

    /// Feeds every record of the group log to the coordinator.
    fn replay(&mut self) -> Result<usize, BrokerError> {
        let end = self.log.log_end_offset();
        let mut offset = self.log.log_start_offset();
        let mut replayed = 0;
        let now = self.clock_ms;
        while offset < end {
            let bytes = self
                .log
                .read(offset, REPLAY_CHUNK_BYTES, end)
                .map_err(log_error)?;
            assert!(
                !bytes.is_empty(),
                "group log read below its end returned nothing"
            );
            for item in Batches::new(&bytes) {
                let (_, batch) =
                    item.map_err(|e| corrupt(format!("batch at offset {offset}: {e}")))?;
                for record in batch
                    .records()
                    .map_err(|e| corrupt(format!("batch {}: {e}", batch.base_offset())))?
                {
                    let key = record
                        .key
                        .ok_or_else(|| corrupt("record without key".into()))?;
                    let record = Record {
                        key: bytes::Bytes::copy_from_slice(key),
                        value: record.value.map(bytes::Bytes::copy_from_slice),
                    };
                    self.coordinator
                        .replay(now, &record)
                        .map_err(|e| corrupt(e.to_string()))?;
                    replayed += 1;
                }
                offset = batch.last_offset() + 1;
            }
        }
        Ok(replayed)
    }

    /// Appends the coordinator's snapshot, makes it durable, then drops everything before it.
    fn compact(&mut self, now_ms: i64) -> Result<(), BrokerError> {
        let before = self.log.size_bytes();
        let start = self.log.log_end_offset();
        let snapshot = self.coordinator.snapshot();
        self.append(&snapshot, now_ms)?;
        if let Some(work) = self.log.take_sync_work() {
            work.run()
                .map_err(|source| BrokerError::io("sync group log", self.log.dir(), source))?;
            self.log.mark_synced(work.offset());
        }
        self.log.delete_records_before(start).map_err(log_error)?;
        tracing::info!(
            before,
            after = self.log.size_bytes(),
            records = snapshot.len(),
            "compacted group log"
        );
        Ok(())
    }
}

fn log_error(source: storage::LogError) -> BrokerError {
    BrokerError::Log {
        topic: GROUP_LOG_TOPIC.to_string(),
        partition: 0,
        source,
    }
}

fn corrupt(reason: String) -> BrokerError {
    BrokerError::Meta(format!("group log {GROUP_LOG_DIR}: {reason}"))
}

fn response_kind(response: Response) -> ResponseKind {
    match response {
        Response::JoinGroup(r) => ResponseKind::JoinGroup(r),
        Response::SyncGroup(r) => ResponseKind::SyncGroup(r),
        Response::Heartbeat(r) => ResponseKind::Heartbeat(r),
        Response::LeaveGroup(r) => ResponseKind::LeaveGroup(r),
        Response::OffsetCommit(r) => ResponseKind::OffsetCommit(r),
        Response::OffsetFetch(r) => ResponseKind::OffsetFetch(r),
        Response::ListGroups(r) => ResponseKind::ListGroups(r),
        Response::DescribeGroups(r) => ResponseKind::DescribeGroups(r),
        Response::DeleteGroups(r) => ResponseKind::DeleteGroups(r),
    }
}

/// The group request in a decoded request body, if it is one.
pub fn group_request(
    body: kafka_protocol::messages::RequestKind,
) -> Result<group::Request, kafka_protocol::messages::RequestKind> {
    use kafka_protocol::messages::RequestKind as K;
    Ok(match body {
        K::JoinGroup(r) => group::Request::JoinGroup(r),
        K::SyncGroup(r) => group::Request::SyncGroup(r),
        K::Heartbeat(r) => group::Request::Heartbeat(r),
        K::LeaveGroup(r) => group::Request::LeaveGroup(r),
        K::OffsetCommit(r) => group::Request::OffsetCommit(r),
        K::OffsetFetch(r) => group::Request::OffsetFetch(r),
        K::ListGroups(r) => group::Request::ListGroups(r),
        K::DescribeGroups(r) => group::Request::DescribeGroups(r),
        K::DeleteGroups(r) => group::Request::DeleteGroups(r),
        other => return Err(other),
    })
}
