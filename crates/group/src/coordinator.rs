//! [`GroupCoordinator`]: every group of the broker, the request handlers' entry points, the
//! deadline index that `tick` and `next_deadline_ms` use, replay, and admin queries.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::api::{Output, Request, RequestContext, Response};
use crate::config::GroupConfig;
use crate::group::{
    commit_error, join_error_response, owned, sync_response, Committer, Env, Fetched, Group,
    GroupState, JoinArgs, Parked, SyncArgs, TopicPartition,
};
use crate::ids::IdGenerator;
use crate::record::{CommittedOffset, DecodedRecord, Record, RecordError};

/// The only group type this coordinator runs (ListGroups v5 `group_type`).
const GROUP_TYPE_CLASSIC: &str = "classic";
/// DescribeGroups `authorized_operations` with no authorizer: READ (3), DELETE (6) and
/// DESCRIBE (8), every operation that applies to a group.
const GROUP_AUTHORIZED_OPERATIONS_ALL: i32 = (1 << 3) | (1 << 6) | (1 << 8);
/// DescribeGroups `authorized_operations` when the client did not ask for them.
const AUTHORIZED_OPERATIONS_OMITTED: i32 = i32::MIN;

/// A group as ListGroups shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOverview {
    pub group_id: StrBytes,
    /// Empty for a group that only ever had simple commits.
    pub protocol_type: StrBytes,
    pub state: GroupState,
}

/// A group in full, for admin commands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: StrBytes,
    pub state: GroupState,
    pub protocol_type: Option<StrBytes>,
    pub protocol_name: Option<StrBytes>,
    pub generation_id: i32,
    pub leader_id: Option<StrBytes>,
    pub members: Vec<MemberDescription>,
    pub offsets: Vec<TopicPartitionOffset>,
    /// Rebalances begun since this process loaded the group.
    pub rebalances: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: StrBytes,
    pub group_instance_id: Option<StrBytes>,
    pub client_id: StrBytes,
    pub client_host: StrBytes,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// Opaque to the broker; the leader's assignor chose it.
    pub assignment: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicPartitionOffset {
    pub topic: StrBytes,
    pub partition: i32,
    pub offset: CommittedOffset,
}

/// Kafka's classic group coordinator for every group of one broker. Not thread-safe by design:
/// the broker drives it from one task.
pub struct GroupCoordinator {
    config: GroupConfig,
    groups: BTreeMap<StrBytes, Group>,
    /// (next deadline, group) for every group with a timer, so a tick visits only due groups.
    deadlines: BTreeSet<(u64, StrBytes)>,
    /// The deadline each group is indexed under in `deadlines`.
    indexed: HashMap<StrBytes, u64>,
    ids: IdGenerator,
    /// When `tick` next sweeps every group for expired offsets.
    next_offset_expiry_ms: u64,
}

impl GroupCoordinator {
    /// `seed` drives member id generation; give each broker start a different one (ids of
    /// replayed members are skipped anyway), and tests a fixed one.
    pub fn new(config: GroupConfig, seed: u64) -> GroupCoordinator {
        GroupCoordinator {
            groups: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            indexed: HashMap::new(),
            ids: IdGenerator::new(seed),
            next_offset_expiry_ms: config.offsets_retention_check_interval_ms,
            config,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// One entry point for every group request.
    pub fn handle(&mut self, now_ms: u64, ctx: &RequestContext, request: Request) -> Output {
        match request {
            Request::JoinGroup(r) => self.handle_join_group(now_ms, ctx, r),
            Request::SyncGroup(r) => self.handle_sync_group(now_ms, ctx, r),
            Request::Heartbeat(r) => self.handle_heartbeat(now_ms, ctx, r),
            Request::LeaveGroup(r) => self.handle_leave_group(now_ms, ctx, r),
            Request::OffsetCommit(r) => self.handle_offset_commit(now_ms, ctx, r),
            Request::OffsetFetch(r) => self.handle_offset_fetch(now_ms, ctx, r),
            Request::ListGroups(r) => self.handle_list_groups(now_ms, ctx, r),
            Request::DescribeGroups(r) => self.handle_describe_groups(now_ms, ctx, r),
            Request::DeleteGroups(r) => self.handle_delete_groups(now_ms, ctx, r),
            Request::OffsetDelete(r) => self.handle_offset_delete(now_ms, ctx, r),
        }
    }

    /// JoinGroup v0–9. The response is usually parked until the join barrier completes and
    /// comes out of a later call.
    pub fn handle_join_group(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: JoinGroupRequest,
    ) -> Output {
        let mut out = Output::default();
        let version = ctx.api_version;
        let reject = |out: &mut Output, error: ResponseError| {
            let r = join_error_response(version, req.member_id.clone(), error);
            out.respond(ctx.token, Response::JoinGroup(r));
        };
        let group_id = req.group_id.0.clone();
        if group_id.is_empty() {
            reject(&mut out, ResponseError::InvalidGroupId);
            return out;
        }
        let session_timeout_ms = req.session_timeout_ms;
        if session_timeout_ms < self.config.group_min_session_timeout_ms
            || session_timeout_ms > self.config.group_max_session_timeout_ms
        {
            reject(&mut out, ResponseError::InvalidSessionTimeout);
            return out;
        }
        if !self.groups.contains_key(group_id.as_bytes()) {
            if !req.member_id.is_empty() {
                reject(&mut out, ResponseError::UnknownMemberId);
                return out;
            }
            self.create_group(&group_id, now_ms);
        }
        let args = JoinArgs {
            parked: Parked {
                token: ctx.token,
                version,
            },
            member_id: req.member_id,
            require_known_member_id: version >= 4 && req.group_instance_id.is_none(),
            instance_id: req.group_instance_id,
            client_id: ctx.client_id.clone(),
            client_host: ctx.client_host.clone(),
            // v0 has no rebalance timeout; Kafka uses the session timeout.
            rebalance_timeout_ms: if version == 0 {
                session_timeout_ms
            } else {
                req.rebalance_timeout_ms
            },
            session_timeout_ms,
            protocol_type: req.protocol_type,
            protocols: req
                .protocols
                .into_iter()
                .map(|p| (p.name, p.metadata))
                .collect(),
            support_skip_assignment: version >= 9,
        };
        self.run(now_ms, &mut out, &group_id, |group, env| {
            group.join(env, args)
        });
        out
    }

    /// SyncGroup v0–5. Followers' responses are parked until the leader's assignment arrives.
    pub fn handle_sync_group(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: SyncGroupRequest,
    ) -> Output {
        let mut out = Output::default();
        let parked = Parked {
            token: ctx.token,
            version: ctx.api_version,
        };
        let reject = |out: &mut Output, error: ResponseError| {
            let r = sync_response(parked.version, None, Bytes::new(), Some(error));
            out.respond(parked.token, Response::SyncGroup(r));
        };
        // From v5 the protocol type and name are mandatory (Kafka's KafkaApis check).
        if ctx.api_version >= 5 && (req.protocol_type.is_none() || req.protocol_name.is_none()) {
            reject(&mut out, ResponseError::InconsistentGroupProtocol);
            return out;
        }
        let group_id = req.group_id.0.clone();
        if group_id.is_empty() {
            reject(&mut out, ResponseError::InvalidGroupId);
            return out;
        }
        if !self.groups.contains_key(group_id.as_bytes()) {
            reject(&mut out, ResponseError::UnknownMemberId);
            return out;
        }
        let args = SyncArgs {
            parked,
            member_id: req.member_id,
            instance_id: req.group_instance_id,
            generation_id: req.generation_id,
            protocol_type: req.protocol_type,
            protocol_name: req.protocol_name,
            assignments: req
                .assignments
                .into_iter()
                .map(|a| (a.member_id, a.assignment))
                .collect(),
        };
        self.run(now_ms, &mut out, &group_id, |group, env| {
            group.sync(env, args)
        });
        out
    }

    /// Heartbeat v0–4.
    pub fn handle_heartbeat(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: HeartbeatRequest,
    ) -> Output {
        let mut out = Output::default();
        let group_id = req.group_id.0.clone();
        let error = if group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else {
            let member_id = req.member_id.as_str();
            let instance_id = req.group_instance_id.as_deref();
            self.run(now_ms, &mut out, &group_id, |group, env| {
                group.heartbeat(env, member_id, instance_id, req.generation_id)
            })
            .unwrap_or(Some(ResponseError::UnknownMemberId))
        };
        let mut r = HeartbeatResponse::default();
        r.error_code = error.map_or(0, |e| e.code());
        out.respond(ctx.token, Response::Heartbeat(r));
        out
    }

    /// LeaveGroup v0–5; v3+ leaves a batch of members at once.
    pub fn handle_leave_group(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: LeaveGroupRequest,
    ) -> Output {
        let mut out = Output::default();
        let leaving = if ctx.api_version < 3 {
            let mut identity = MemberIdentity::default();
            identity.member_id = req.member_id.clone();
            vec![identity]
        } else {
            req.members
        };
        let group_id = req.group_id.0.clone();
        let (error, answers) = if group_id.is_empty() {
            (Some(ResponseError::InvalidGroupId), Vec::new())
        } else {
            let answers = self.run(now_ms, &mut out, &group_id, |group, env| {
                group.leave(env, &leaving)
            });
            (None, answers.unwrap_or_else(|| unknown_members(&leaving)))
        };
        let r = leave_response(ctx.api_version, error, answers);
        out.respond(ctx.token, Response::LeaveGroup(r));
        out
    }

    /// OffsetCommit v2–8. The output's records hold the commits; the response may be sent only
    /// once they are durable.
    pub fn handle_offset_commit(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: OffsetCommitRequest,
    ) -> Output {
        let mut out = Output::default();
        let group_id = req.group_id.0.clone();
        let generation_id = req.generation_id_or_member_epoch;
        if !self.groups.contains_key(group_id.as_bytes()) && generation_id < 0 {
            // No group management: a "simple" group that only stores offsets.
            self.create_group(&group_id, now_ms);
        }
        let who = Committer {
            member_id: &req.member_id,
            instance_id: req.group_instance_id.as_deref(),
            generation_id,
        };
        let topics = self
            .run(now_ms, &mut out, &group_id, |group, env| {
                group.commit_offsets(env, &who, &req.topics)
            })
            // A member of a group this coordinator does not know holds a stale generation.
            .unwrap_or_else(|| commit_error(&req.topics, Some(ResponseError::IllegalGeneration)));
        let mut r = OffsetCommitResponse::default();
        r.topics = topics;
        out.respond(ctx.token, Response::OffsetCommit(r));
        out
    }

    /// OffsetFetch v1–9 (v8+ with the `groups` array). A null topic list means every committed
    /// offset of the group.
    pub fn handle_offset_fetch(
        &mut self,
        _now_ms: u64,
        ctx: &RequestContext,
        req: OffsetFetchRequest,
    ) -> Output {
        let mut out = Output::default();
        let r = if ctx.api_version >= 8 {
            self.offset_fetch_groups(&req)
        } else {
            let wanted = req.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.clone(), t.partition_indexes.clone()))
                    .collect()
            });
            let fetched = self.fetch_offsets(&req.group_id.0, wanted, req.require_stable);
            let mut r = OffsetFetchResponse::default();
            r.topics = fetched
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut t = OffsetFetchResponseTopic::default();
                    t.name = TopicName(topic);
                    t.partitions = partitions
                        .into_iter()
                        .map(|(p, f)| partition_v0(p, f))
                        .collect();
                    t
                })
                .collect();
            r
        };
        out.respond(ctx.token, Response::OffsetFetch(r));
        out
    }

    fn offset_fetch_groups(&self, req: &OffsetFetchRequest) -> OffsetFetchResponse {
        let mut r = OffsetFetchResponse::default();
        for g in &req.groups {
            let wanted = g.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .map(|t| (t.name.0.clone(), t.partition_indexes.clone()))
                    .collect()
            });
            let mut group = OffsetFetchResponseGroup::default();
            group.group_id = g.group_id.clone();
            group.topics = self
                .fetch_offsets(&g.group_id.0, wanted, req.require_stable)
                .into_iter()
                .map(|(topic, partitions)| {
                    let mut t = OffsetFetchResponseTopics::default();
                    t.name = TopicName(topic);
                    t.partitions = partitions
                        .into_iter()
                        .map(|(p, f)| partition_v8(p, f))
                        .collect();
                    t
                })
                .collect();
            r.groups.push(group);
        }
        r
    }

    /// Kafka's `getOffsets`: the asked partitions (or all committed ones, sorted), -1 where
    /// nothing is committed.
    fn fetch_offsets(
        &self,
        group_id: &StrBytes,
        wanted: Option<Vec<(StrBytes, Vec<i32>)>>,
        require_stable: bool,
    ) -> Vec<(StrBytes, Vec<(i32, Fetched)>)> {
        let group = self.groups.get(group_id.as_bytes());
        let wanted = match wanted {
            Some(wanted) => wanted,
            None => {
                let mut all: Vec<(StrBytes, Vec<i32>)> = Vec::new();
                for (topic, partition) in group.map(|g| g.offsets().keys()).into_iter().flatten() {
                    match all.last_mut() {
                        Some((last, partitions)) if last == topic => partitions.push(*partition),
                        _ => all.push((topic.clone(), vec![*partition])),
                    }
                }
                all
            }
        };
        wanted
            .into_iter()
            .map(|(topic, partitions)| {
                let fetched = partitions
                    .into_iter()
                    .map(|p| {
                        let tp: TopicPartition = (topic.clone(), p);
                        let f = group
                            .map_or_else(Fetched::none, |g| g.fetch_offset(&tp, require_stable));
                        (p, f)
                    })
                    .collect();
                (topic, fetched)
            })
            .collect()
    }

    /// ListGroups v0–5 with the states filter (v4+, case-insensitive) and types filter (v5+).
    pub fn handle_list_groups(
        &mut self,
        _now_ms: u64,
        ctx: &RequestContext,
        req: ListGroupsRequest,
    ) -> Output {
        let version = ctx.api_version;
        let wants = |filter: &[StrBytes], value: &str| {
            filter.is_empty() || filter.iter().any(|f| f.eq_ignore_ascii_case(value))
        };
        let mut r = ListGroupsResponse::default();
        if !wants(&req.types_filter, GROUP_TYPE_CLASSIC) {
            return single(ctx, Response::ListGroups(r));
        }
        for overview in self.groups() {
            if !wants(&req.states_filter, overview.state.as_str()) {
                continue;
            }
            let mut g = ListedGroup::default();
            g.group_id = GroupId(overview.group_id);
            g.protocol_type = overview.protocol_type;
            if version >= 4 {
                g.group_state = StrBytes::from_static_str(overview.state.as_str());
            }
            if version >= 5 {
                g.group_type = StrBytes::from_static_str(GROUP_TYPE_CLASSIC);
            }
            r.groups.push(g);
        }
        single(ctx, Response::ListGroups(r))
    }

    /// DescribeGroups v0–6. Member metadata and assignments are shown only for a Stable group,
    /// as Kafka does; an unknown group is "Dead" (v6+: GROUP_ID_NOT_FOUND).
    pub fn handle_describe_groups(
        &mut self,
        _now_ms: u64,
        ctx: &RequestContext,
        req: DescribeGroupsRequest,
    ) -> Output {
        let version = ctx.api_version;
        let mut r = DescribeGroupsResponse::default();
        for group_id in &req.groups {
            let mut d = self.describe_one(&group_id.0, version);
            d.group_id = group_id.clone();
            if version >= 3 && req.include_authorized_operations {
                d.authorized_operations = GROUP_AUTHORIZED_OPERATIONS_ALL;
            } else {
                d.authorized_operations = AUTHORIZED_OPERATIONS_OMITTED;
            }
            r.groups.push(d);
        }
        single(ctx, Response::DescribeGroups(r))
    }

    fn describe_one(&self, group_id: &StrBytes, version: i16) -> DescribedGroup {
        let mut d = DescribedGroup::default();
        let Some(group) = self.groups.get(group_id.as_bytes()) else {
            d.group_state = StrBytes::from_static_str(GroupState::Dead.as_str());
            if version >= 6 {
                d.error_code = ResponseError::GroupIdNotFound.code();
                d.error_message = Some(StrBytes::from_string(format!(
                    "Group {group_id} not found."
                )));
            }
            return d;
        };
        let stable = group.state() == GroupState::Stable;
        d.group_state = StrBytes::from_static_str(group.state().as_str());
        d.protocol_type = group.protocol_type().cloned().unwrap_or_default();
        if stable {
            d.protocol_data = group.protocol_name().cloned().unwrap_or_default();
        }
        d.members = group
            .describe_members(stable)
            .into_iter()
            .map(|(m, metadata)| {
                let mut out = DescribedGroupMember::default();
                out.member_id = m.member_id;
                out.group_instance_id = if version >= 4 {
                    m.group_instance_id
                } else {
                    None
                };
                out.client_id = m.client_id;
                out.client_host = m.client_host;
                if stable {
                    out.member_metadata = metadata;
                    out.member_assignment = m.assignment;
                }
                out
            })
            .collect();
        d
    }

    /// DeleteGroups v0–2: only Empty groups; the output's records are their tombstones.
    pub fn handle_delete_groups(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: DeleteGroupsRequest,
    ) -> Output {
        let mut out = Output::default();
        let mut r = DeleteGroupsResponse::default();
        for group_id in &req.groups_names {
            let error = self.delete_group(now_ms, &group_id.0, &mut out);
            let mut result = DeletableGroupResult::default();
            result.group_id = group_id.clone();
            result.error_code = error.map_or(0, |e| e.code());
            r.results.push(result);
        }
        out.respond(ctx.token, Response::DeleteGroups(r));
        out
    }

    /// OffsetDelete v0 (KIP-496): removes committed offsets of a group that is Empty, or, in a
    /// consumer group with members, of partitions whose topic no member subscribes to (the others
    /// answer GROUP_SUBSCRIBED_TO_TOPIC); any other group with members is NON_EMPTY_GROUP, an
    /// unknown one GROUP_ID_NOT_FOUND. The output's records are the removed offsets' tombstones.
    pub fn handle_offset_delete(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: OffsetDeleteRequest,
    ) -> Output {
        let mut out = Output::default();
        let group_id = req.group_id.0.clone();
        let result = self.run(now_ms, &mut out, &group_id, |group, env| {
            group.delete_offsets(env, &req.topics)
        });
        let mut r = OffsetDeleteResponse::default();
        match result.unwrap_or(Err(ResponseError::GroupIdNotFound)) {
            Ok(topics) => r.topics = topics,
            Err(error) => r.error_code = error.code(),
        }
        out.respond(ctx.token, Response::OffsetDelete(r));
        out
    }

    fn delete_group(
        &mut self,
        now_ms: u64,
        group_id: &StrBytes,
        out: &mut Output,
    ) -> Option<ResponseError> {
        let Some(group) = self.groups.get_mut(group_id.as_bytes()) else {
            return Some(ResponseError::GroupIdNotFound);
        };
        match group.state() {
            GroupState::Dead => return Some(ResponseError::GroupIdNotFound),
            GroupState::Empty => {}
            _ => return Some(ResponseError::NonEmptyGroup),
        }
        tracing::info!(group = %group_id, "group deleted");
        out.records.extend(group.delete(now_ms));
        self.groups.remove(group_id.as_bytes());
        self.unindex(group_id);
        None
    }

    /// Fires every timeout due at `now_ms`: session expiry, rebalance and sync timeouts, the
    /// initial-join delay, pending-member expiry, and the periodic sweep for expired offsets.
    pub fn tick(&mut self, now_ms: u64) -> Output {
        let mut out = Output::default();
        if now_ms >= self.next_offset_expiry_ms {
            self.expire_offsets(now_ms, &mut out);
            self.next_offset_expiry_ms =
                now_ms.saturating_add(self.config.offsets_retention_check_interval_ms.max(1));
        }
        let due: Vec<StrBytes> = self
            .deadlines
            .iter()
            .take_while(|(deadline_ms, _)| *deadline_ms <= now_ms)
            .map(|(_, group_id)| group_id.clone())
            .collect();
        for group_id in due {
            self.run(now_ms, &mut out, &group_id, |group, env| group.expire(env));
        }
        out
    }

    /// When `tick` next has something to do (at the latest, the next offset-expiry sweep).
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let timers = self.deadlines.first().map(|(deadline_ms, _)| *deadline_ms);
        Some(timers.map_or(self.next_offset_expiry_ms, |t| {
            t.min(self.next_offset_expiry_ms)
        }))
    }

    /// Forgets every group's offsets of `topic`, which was deleted (Kafka's
    /// `cleanupGroupMetadata` for deleted partitions); the output's records are their tombstones,
    /// then those of Empty groups left without offsets, which are dropped.
    pub fn delete_topic_offsets(&mut self, now_ms: u64, topic: &str) -> Output {
        let mut out = Output::default();
        self.clean_up(now_ms, &mut out, |group| {
            let tombstones = group.remove_topic_offsets(topic);
            if !tombstones.is_empty() {
                let offsets = tombstones.len();
                tracing::info!(group = %group.id(), topic, offsets, "offsets of a deleted topic removed");
            }
            tombstones
        });
        out
    }

    /// Kafka's `cleanupGroupMetadata`: tombstones for every expired offset, then for every Empty
    /// group left without offsets, which is dropped.
    fn expire_offsets(&mut self, now_ms: u64, out: &mut Output) {
        let retention_ms = self.config.offsets_retention_ms;
        self.clean_up(now_ms, out, |group| {
            let tombstones = group.expire_offsets(now_ms, retention_ms);
            if !tombstones.is_empty() {
                tracing::info!(group = %group.id(), offsets = tombstones.len(), "offsets expired");
            }
            tombstones
        });
    }

    /// Runs `remove` on every group, keeping the tombstones it returns, then deletes the Empty
    /// groups left without offsets.
    fn clean_up(
        &mut self,
        now_ms: u64,
        out: &mut Output,
        mut remove: impl FnMut(&mut Group) -> Vec<Record>,
    ) {
        let group_ids: Vec<StrBytes> = self.groups.keys().cloned().collect();
        for group_id in group_ids {
            let group = self
                .groups
                .get_mut(group_id.as_bytes())
                .expect("listed group");
            out.records.extend(remove(group));
            if group.is_expired() {
                tracing::info!(group = %group_id, "empty group without offsets deleted");
                out.records.extend(group.delete(now_ms));
                self.groups.remove(group_id.as_bytes());
            }
            self.settle(&group_id);
        }
    }

    /// Applies one record of the group log at start-up, oldest first. Offsets come back exactly;
    /// a group comes back as last persisted (Stable with its members, or Empty), and members that
    /// do not heartbeat within their session timeout from `now_ms` are removed as usual.
    pub fn replay(&mut self, now_ms: u64, record: &Record) -> Result<(), RecordError> {
        let group_id = match record.decode()? {
            DecodedRecord::Offset {
                group_id,
                topic,
                partition,
                value,
            } => {
                self.create_group(&group_id, now_ms);
                let group = self.groups.get_mut(group_id.as_bytes()).expect("created");
                group.load_offset((topic, partition), value);
                group_id
            }
            DecodedRecord::Group { group_id, value } => {
                self.create_group(&group_id, now_ms);
                let group = self.groups.get_mut(group_id.as_bytes()).expect("created");
                match value {
                    Some(value) => group.load(value, now_ms),
                    None => group.unload(now_ms),
                }
                group_id
            }
        };
        self.settle(&group_id);
        Ok(())
    }

    /// Records that rebuild the persisted state of every group (last group metadata and every
    /// committed offset): what a compacted group log holds.
    pub fn snapshot(&self) -> Vec<Record> {
        self.groups.values().flat_map(Group::snapshot).collect()
    }

    /// Hook for the transaction coordinator (TxnOffsetCommit): stages `offsets` of `producer_id`.
    /// They stay invisible to OffsetFetch, which answers UNSTABLE_OFFSET_COMMIT for them under
    /// `require_stable`, until [`complete_txn_offsets`](Self::complete_txn_offsets). Creates the
    /// group if needed, as Kafka does.
    pub fn stage_txn_offsets(
        &mut self,
        now_ms: u64,
        group_id: &StrBytes,
        producer_id: i64,
        offsets: Vec<(StrBytes, i32, CommittedOffset)>,
    ) {
        self.create_group(group_id, now_ms);
        let mut out = Output::default();
        self.run(now_ms, &mut out, group_id, |group, _| {
            let offsets = offsets.into_iter().map(|(t, p, o)| ((t, p), o));
            group.stage_txn_offsets(producer_id, offsets)
        });
        debug_assert!(out.is_empty());
    }

    /// Ends the transaction of `producer_id` for `group_id`: on commit its staged offsets become
    /// the committed ones and the returned records must be persisted; on abort they vanish.
    pub fn complete_txn_offsets(
        &mut self,
        now_ms: u64,
        group_id: &StrBytes,
        producer_id: i64,
        commit: bool,
    ) -> Vec<Record> {
        let mut out = Output::default();
        self.run(now_ms, &mut out, group_id, |group, _| {
            group.complete_txn_offsets(producer_id, commit)
        })
        .unwrap_or_default()
    }

    /// KIP-447's fencing of a TxnOffsetCommit: its generation, member id and group instance id
    /// are checked against the group as an OffsetCommit's are (Kafka's `doTxnCommitOffsets`), so a
    /// zombie that lost its partitions in a rebalance cannot commit offsets for them. Returns
    /// ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID (or COORDINATOR_NOT_AVAILABLE for
    /// a dead group), or `None` when the commit may go on. A group this coordinator does not know
    /// is checked as the empty group Kafka creates for it: only a commit without member fields
    /// (TxnOffsetCommit before v3) passes. Changes nothing.
    pub fn validate_txn_offset_commit(
        &self,
        now_ms: u64,
        group_id: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Option<ResponseError> {
        let who = Committer {
            member_id,
            instance_id,
            generation_id,
        };
        match self.groups.get(group_id.as_bytes()) {
            Some(group) => group.validate_offset_commit(&who, true),
            None => Group::new(StrBytes::from_string(group_id.to_owned()), now_ms)
                .validate_offset_commit(&who, true),
        }
    }

    /// Every group, ordered by id.
    pub fn groups(&self) -> Vec<GroupOverview> {
        self.groups
            .values()
            .map(|g| GroupOverview {
                group_id: g.id().clone(),
                protocol_type: g.protocol_type().cloned().unwrap_or_default(),
                state: g.state(),
            })
            .collect()
    }

    /// One group with its members and committed offsets, for admin commands.
    pub fn group(&self, group_id: &str) -> Option<GroupDescription> {
        let group = self.groups.get(group_id.as_bytes())?;
        Some(GroupDescription {
            group_id: group.id().clone(),
            state: group.state(),
            protocol_type: group.protocol_type().cloned(),
            protocol_name: group.protocol_name().cloned(),
            generation_id: group.generation_id(),
            leader_id: group.leader_id().cloned(),
            rebalances: group.rebalances(),
            members: group
                .describe_members(false)
                .into_iter()
                .map(|(m, _)| m)
                .collect(),
            offsets: group
                .offsets()
                .iter()
                .map(|((topic, partition), offset)| TopicPartitionOffset {
                    topic: topic.clone(),
                    partition: *partition,
                    offset: offset.clone(),
                })
                .collect(),
        })
    }

    fn create_group(&mut self, group_id: &StrBytes, now_ms: u64) {
        if !self.groups.contains_key(group_id.as_bytes()) {
            let group_id = owned(group_id);
            self.groups
                .insert(group_id.clone(), Group::new(group_id, now_ms));
        }
    }

    /// Runs `f` on an existing group, then drops the group if vacant and re-indexes its deadline.
    fn run<R>(
        &mut self,
        now_ms: u64,
        out: &mut Output,
        group_id: &StrBytes,
        f: impl FnOnce(&mut Group, &mut Env) -> R,
    ) -> Option<R> {
        let group = self.groups.get_mut(group_id.as_bytes())?;
        let mut env = Env {
            config: &self.config,
            now_ms,
            ids: &mut self.ids,
            out,
        };
        let result = f(group, &mut env);
        self.settle(group_id);
        #[cfg(debug_assertions)]
        self.assert_index();
        Some(result)
    }

    fn settle(&mut self, group_id: &StrBytes) {
        let Some(group) = self.groups.get(group_id.as_bytes()) else {
            return self.unindex(group_id);
        };
        if group.is_vacant() {
            self.groups.remove(group_id.as_bytes());
            return self.unindex(group_id);
        }
        #[cfg(debug_assertions)]
        group.assert_invariants();
        let next = group.next_deadline_ms();
        let group_id = group.id().clone();
        if next == self.indexed.get(group_id.as_bytes()).copied() {
            return;
        }
        self.unindex(&group_id);
        if let Some(deadline_ms) = next {
            self.deadlines.insert((deadline_ms, group_id.clone()));
            self.indexed.insert(group_id, deadline_ms);
        }
    }

    #[cfg(debug_assertions)]
    fn assert_index(&self) {
        assert_eq!(
            self.indexed.len(),
            self.deadlines.len(),
            "deadline index size"
        );
        for (group_id, deadline_ms) in &self.indexed {
            assert!(
                self.groups.contains_key(group_id.as_bytes()),
                "indexed group exists"
            );
            assert!(
                self.deadlines.contains(&(*deadline_ms, group_id.clone())),
                "indexed deadline"
            );
        }
    }

    fn unindex(&mut self, group_id: &StrBytes) {
        if let Some(deadline_ms) = self.indexed.remove(group_id.as_bytes()) {
            let removed = self.deadlines.remove(&(deadline_ms, group_id.clone()));
            assert!(removed, "indexed deadline present");
        }
    }
}

fn single(ctx: &RequestContext, response: Response) -> Output {
    let mut out = Output::default();
    out.respond(ctx.token, response);
    out
}

fn unknown_members(leaving: &[MemberIdentity]) -> Vec<MemberResponse> {
    leaving
        .iter()
        .map(|identity| {
            let mut answer = MemberResponse::default();
            answer.member_id = identity.member_id.clone();
            answer.group_instance_id = identity.group_instance_id.clone();
            answer.error_code = ResponseError::UnknownMemberId.code();
            answer
        })
        .collect()
}

/// Kafka's `LeaveGroupResponse` constructor: before v3 there is no member list, and the
/// top-level error carries the first member error.
pub(crate) fn leave_response(
    version: i16,
    error: Option<ResponseError>,
    answers: Vec<MemberResponse>,
) -> LeaveGroupResponse {
    let mut r = LeaveGroupResponse::default();
    let top = error.map_or(0, |e| e.code());
    if version >= 3 {
        r.error_code = top;
        r.members = answers;
    } else {
        let first_member_error = answers.iter().map(|a| a.error_code).find(|c| *c != 0);
        r.error_code = if top != 0 {
            top
        } else {
            first_member_error.unwrap_or(0)
        };
    }
    r
}

pub(crate) fn partition_v0(partition: i32, f: Fetched) -> OffsetFetchResponsePartition {
    let mut p = OffsetFetchResponsePartition::default();
    p.partition_index = partition;
    p.committed_offset = f.offset;
    p.committed_leader_epoch = f.leader_epoch;
    p.metadata = Some(f.metadata);
    p.error_code = f.error.map_or(0, |e| e.code());
    p
}

fn partition_v8(partition: i32, f: Fetched) -> OffsetFetchResponsePartitions {
    let mut p = OffsetFetchResponsePartitions::default();
    p.partition_index = partition;
    p.committed_offset = f.offset;
    p.committed_leader_epoch = f.leader_epoch;
    p.metadata = Some(f.metadata);
    p.error_code = f.error.map_or(0, |e| e.code());
    p
}
