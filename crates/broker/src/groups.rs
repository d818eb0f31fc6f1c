//! The broker side of consumer groups: the `group` crate's coordinator, its durable log, and
//! replay on start. `coordinators.rs` routes the answers (possibly delayed) to their requests.
//!
//! The group log is an internal partition log, `__consumer_offsets-0` in the data directory, not
//! listed as a topic. Each coordinator `Output` becomes one uncompressed v2 batch of its records
//! (tombstones have a null value); the responses of that output are released only once the batch
//! is fsynced (its append ticket), so an acknowledged commit is durable. On start the log is
//! replayed through `GroupCoordinator::replay`. When it has grown past its compaction size
//! (`BrokerConfig::internal_log_compact_bytes`), the coordinator's snapshot is appended and,
//! once fsynced, everything before it is deleted: at start-up at once, at run time through the
//! group commit (`maintain_log`).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use group::{
    GroupConfig, GroupCoordinator, Output, Record, RequestContext, Response, ResponseToken,
};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, ResponseKind, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use storage::{Disk, PartitionLog};

use crate::internal_log::InternalLog;
use crate::{BrokerError, Now};

/// Name of the group log in traces; its directory is `__consumer_offsets-0`
/// (`docs/storage-format.md`). Sync bookkeeping names it `LogId::Groups`.
pub const GROUP_LOG_NAME: &str = "__consumer_offsets";

/// The group coordinator and its log, behind a lock of their own: group requests are handled
/// holding the broker shared (`Broker::handle_shared`), beside produces and fetches, and lock
/// only this. A caller holding the broker exclusively (ticks, the group commit, transactions'
/// offsets, topic deletion) reaches it without locking (`get_mut`).
pub struct Groups(Mutex<GroupsState>);

struct GroupsState {
    coordinator: GroupCoordinator,
    log: InternalLog,
}

/// The group coordinator, locked for a look at it.
pub struct CoordinatorGuard<'a>(MutexGuard<'a, GroupsState>);

impl std::ops::Deref for CoordinatorGuard<'_> {
    type Target = GroupCoordinator;

    fn deref(&self) -> &GroupCoordinator {
        &self.0.coordinator
    }
}

const POISONED: &str = "group coordinator lock poisoned by an earlier panic";

impl Groups {
    pub fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        config: GroupConfig,
        compact_bytes: u64,
        now: Now,
    ) -> Result<Groups, BrokerError> {
        GroupsState::open(disk, data_dir, config, compact_bytes, now)
            .map(|state| Groups(Mutex::new(state)))
    }

    fn locked(&self) -> MutexGuard<'_, GroupsState> {
        self.0.lock().expect(POISONED)
    }

    fn state(&mut self) -> &mut GroupsState {
        self.0.get_mut().expect(POISONED)
    }

    /// The coordinator, locked while the guard lives (a caller holds one guard at a time).
    pub fn coordinator(&self) -> CoordinatorGuard<'_> {
        CoordinatorGuard(self.locked())
    }

    pub fn log_start_offset(&self) -> i64 {
        self.locked().log.log_start_offset()
    }

    pub fn log_mut(&mut self) -> &mut PartitionLog {
        self.state().log.log_mut()
    }

    /// Bytes of the internal log's segments.
    pub fn log_size_bytes(&self) -> u64 {
        self.locked().log.size_bytes()
    }

    pub fn close(self) -> Result<(), BrokerError> {
        self.0.into_inner().expect(POISONED).log.close()
    }

    /// Handles a group request, with the broker held shared; the response for `token` may come
    /// now or in a later call. Returns the output and whether records were appended (the
    /// caller then takes a ticket, still holding the broker shared).
    pub fn handle(
        &self,
        now: Now,
        token: u64,
        version: i16,
        client_id: &str,
        client_host: &str,
        request: group::Request,
    ) -> Result<(Vec<(u64, ResponseKind)>, bool), BrokerError> {
        let context = RequestContext {
            token: ResponseToken(token),
            api_version: version,
            client_id: StrBytes::from_string(client_id.to_string()),
            client_host: StrBytes::from_string(client_host.to_string()),
        };
        let mut state = self.locked();
        let output = state
            .coordinator
            .handle(now.coordinator_ms(), &context, request);
        state.apply(output, now.wall_ms())
    }

    /// Fires due timeouts (session expiry, rebalance and join delays).
    pub fn tick(&mut self, now: Now) -> Result<(Vec<(u64, ResponseKind)>, bool), BrokerError> {
        let state = self.state();
        let output = state.coordinator.tick(now.coordinator_ms());
        state.apply(output, now.wall_ms())
    }

    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.locked().coordinator.next_deadline_ms()
    }

    /// Removes every group's offsets of a deleted topic; returns whether tombstones were
    /// appended (the caller then takes a ticket).
    pub fn delete_topic_offsets(&mut self, now: Now, topic: &str) -> Result<bool, BrokerError> {
        let state = self.state();
        let output = state
            .coordinator
            .delete_topic_offsets(now.coordinator_ms(), topic);
        debug_assert!(output.responses.is_empty());
        let (_, appended) = state.apply(output, now.wall_ms())?;
        Ok(appended)
    }

    /// Stages a transaction's offsets (TxnOffsetCommit): invisible until the transaction ends.
    pub fn stage_txn_offsets(&self, now: Now, staged: &txn::GroupOffsets) {
        self.locked().stage_txn_offsets(now, staged)
    }

    /// Ends a transaction's offsets for one group (the group side of a transaction marker):
    /// commit makes them the committed offsets, in the group log; abort drops them. The offsets
    /// are staged again first, from the transaction log's copy, so this also works after a
    /// restart. Returns whether records were appended.
    pub fn complete_txn_offsets(
        &mut self,
        now: Now,
        staged: &txn::GroupOffsets,
        commit: bool,
    ) -> Result<bool, BrokerError> {
        self.state().complete_txn_offsets(now, staged, commit)
    }

    /// Run-time compaction of the group log (see `internal_log`); returns whether records were
    /// appended or segments deleted (the caller then takes a sync ticket).
    pub fn maintain_log(&mut self, now_ms: i64, threshold_bytes: u64) -> Result<bool, BrokerError> {
        let state = self.state();
        let coordinator = &state.coordinator;
        state
            .log
            .maintain(now_ms, threshold_bytes, || coordinator.snapshot())
    }
}

impl GroupsState {
    fn open(
        disk: Arc<dyn Disk>,
        data_dir: &Path,
        config: GroupConfig,
        compact_bytes: u64,
        now: Now,
    ) -> Result<GroupsState, BrokerError> {
        let log = InternalLog::open(disk, data_dir, GROUP_LOG_NAME, now.wall_ms())?;
        let clock_ms = now.coordinator_ms();
        let seed = clock_ms ^ u64::from(std::process::id()).rotate_left(32);
        let mut groups = GroupsState {
            coordinator: GroupCoordinator::new(config, seed),
            log,
        };
        let coordinator = &mut groups.coordinator;
        let replayed = groups.log.replay(|key, value| {
            coordinator
                .replay(clock_ms, &Record { key, value })
                .map_err(|e| e.to_string())
        })?;
        tracing::info!(
            records = replayed,
            groups = groups.coordinator.groups().len(),
            "replayed group log"
        );
        let coordinator = &groups.coordinator;
        groups
            .log
            .compact_at_open(now.wall_ms(), compact_bytes, || coordinator.snapshot())?;
        Ok(groups)
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
        self.log.append(records, now_ms)
    }

    fn stage_txn_offsets(&mut self, now: Now, staged: &txn::GroupOffsets) {
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
        self.coordinator.stage_txn_offsets(
            now.coordinator_ms(),
            &staged.group_id,
            staged.producer_id,
            offsets,
        );
    }

    fn complete_txn_offsets(
        &mut self,
        now: Now,
        staged: &txn::GroupOffsets,
        commit: bool,
    ) -> Result<bool, BrokerError> {
        self.stage_txn_offsets(now, staged);
        let records = self.coordinator.complete_txn_offsets(
            now.coordinator_ms(),
            &staged.group_id,
            staged.producer_id,
            commit,
        );
        if records.is_empty() {
            return Ok(false);
        }
        self.append(&records, now.wall_ms())?;
        Ok(true)
    }
}

pub(crate) fn response_kind(response: Response) -> ResponseKind {
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
        Response::OffsetDelete(r) => ResponseKind::OffsetDelete(r),
    }
}

/// The topics of an OffsetCommit or OffsetDelete request, whose partitions of topics the broker
/// does not have are answered before the group coordinator sees the request.
trait RequestTopic {
    type Partition;
    fn name(&self) -> &TopicName;
    fn partitions(&mut self) -> &mut Vec<Self::Partition>;
    fn index(partition: &Self::Partition) -> i32;
}

impl RequestTopic for OffsetCommitRequestTopic {
    type Partition = OffsetCommitRequestPartition;
    fn name(&self) -> &TopicName {
        &self.name
    }
    fn partitions(&mut self) -> &mut Vec<Self::Partition> {
        &mut self.partitions
    }
    fn index(partition: &Self::Partition) -> i32 {
        partition.partition_index
    }
}

impl RequestTopic for OffsetDeleteRequestTopic {
    type Partition = OffsetDeleteRequestPartition;
    fn name(&self) -> &TopicName {
        &self.name
    }
    fn partitions(&mut self) -> &mut Vec<Self::Partition> {
        &mut self.partitions
    }
    fn index(partition: &Self::Partition) -> i32 {
        partition.partition_index
    }
}

/// Why a topic of an OffsetCommit or OffsetDelete is refused before the group coordinator sees
/// it (the client may not READ it), if it is.
pub(crate) type TopicRefusal<'a> = &'a dyn Fn(&str) -> Option<ResponseError>;

/// Takes out of `topics` the partitions refused: every partition of a topic `topic_refusal`
/// refuses, then those for which `exists` is false (UNKNOWN_TOPIC_OR_PARTITION); drops the
/// topics left without partitions; returns the refused ones by topic, with their errors.
fn take_refused<T: RequestTopic>(
    topics: &mut Vec<T>,
    topic_refusal: TopicRefusal,
    exists: impl Fn(&str, i32) -> bool,
) -> Vec<(TopicName, Vec<(i32, ResponseError)>)> {
    let mut refused = Vec::new();
    for topic in topics.iter_mut() {
        let name = topic.name().clone();
        let whole = topic_refusal(name.as_str());
        let (kept, gone): (Vec<_>, Vec<_>) = std::mem::take(topic.partitions())
            .into_iter()
            .map(|p| {
                let error = whole.or_else(|| {
                    let unknown = !exists(name.as_str(), T::index(&p));
                    unknown.then_some(ResponseError::UnknownTopicOrPartition)
                });
                (p, error)
            })
            .partition(|(_, error)| error.is_none());
        *topic.partitions() = kept.into_iter().map(|(p, _)| p).collect();
        if !gone.is_empty() {
            let answers = gone.iter().map(|(p, e)| (T::index(p), e.expect("refused")));
            refused.push((name, answers.collect()));
        }
    }
    topics.retain_mut(|t| !t.partitions().is_empty());
    refused
}

/// Takes out of an OffsetCommit the partitions refused (see [`take_refused`]) and returns their
/// answers: Kafka's request handler answers them so before the group coordinator sees the
/// commit (which then only holds the others).
pub fn take_refused_commits(
    request: &mut OffsetCommitRequest,
    topic_refusal: TopicRefusal,
    exists: impl Fn(&str, i32) -> bool,
) -> Vec<OffsetCommitResponseTopic> {
    take_refused(&mut request.topics, topic_refusal, exists)
        .into_iter()
        .map(|(name, answers)| {
            let partitions = answers
                .into_iter()
                .map(|(index, error)| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error.code())
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect()
}

/// Takes out of an OffsetDelete the partitions refused (see [`take_refused`]) and returns their
/// answers, as Kafka's request handler answers them before the group coordinator sees the
/// request.
pub fn take_refused_deletes(
    request: &mut OffsetDeleteRequest,
    topic_refusal: TopicRefusal,
    exists: impl Fn(&str, i32) -> bool,
) -> Vec<OffsetDeleteResponseTopic> {
    take_refused(&mut request.topics, topic_refusal, exists)
        .into_iter()
        .map(|(name, answers)| {
            let partitions = answers
                .into_iter()
                .map(|(index, error)| {
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(error.code())
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect()
}

/// The answer to an OffsetCommit all of whose partitions were refused.
pub fn refused_commits_response(unknown: Vec<OffsetCommitResponseTopic>) -> ResponseKind {
    ResponseKind::OffsetCommit(OffsetCommitResponse::default().with_topics(unknown))
}

/// Whether `api` is a consumer group API (those [`group_request`] takes).
pub fn is_group_api(api: kafka_protocol::messages::ApiKey) -> bool {
    use kafka_protocol::messages::ApiKey as A;
    matches!(
        api,
        A::JoinGroup
            | A::SyncGroup
            | A::Heartbeat
            | A::LeaveGroup
            | A::OffsetCommit
            | A::OffsetFetch
            | A::ListGroups
            | A::DescribeGroups
            | A::DeleteGroups
            | A::OffsetDelete
    )
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
        K::OffsetDelete(r) => group::Request::OffsetDelete(r),
        other => return Err(other),
    })
}
