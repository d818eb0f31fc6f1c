//! JoinGroup and the rebalance it drives: member admission, MEMBER_ID_REQUIRED (KIP-394), static
//! membership (KIP-345), the join barrier and the start of a new generation.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::JoinGroupResponse;
use kafka_protocol::protocol::StrBytes;
use tracing::{debug, info};

use super::{Env, Group, GroupState, JoinTimer, Member, Parked, SyncTimer};
use crate::api::Response;
use crate::config::NEW_MEMBER_JOIN_TIMEOUT_MS;

/// A JoinGroup request, normalised across versions.
pub(crate) struct JoinArgs {
    pub(crate) parked: Parked,
    pub(crate) member_id: StrBytes,
    pub(crate) instance_id: Option<StrBytes>,
    pub(crate) client_id: StrBytes,
    pub(crate) client_host: StrBytes,
    pub(crate) rebalance_timeout_ms: i32,
    pub(crate) session_timeout_ms: i32,
    pub(crate) protocol_type: StrBytes,
    pub(crate) protocols: Vec<(StrBytes, Bytes)>,
    /// v4+ without a group instance id: a new member first gets MEMBER_ID_REQUIRED.
    pub(crate) require_known_member_id: bool,
    /// v9+: a static leader rejoining a stable group may skip the assignment.
    pub(crate) support_skip_assignment: bool,
}

/// Kafka's `JoinGroupResult`.
struct JoinResult {
    members: Vec<JoinGroupResponseMember>,
    member_id: StrBytes,
    generation_id: i32,
    protocol_type: Option<StrBytes>,
    protocol_name: Option<StrBytes>,
    leader: StrBytes,
    skip_assignment: bool,
}

/// A JoinGroup error as Kafka shapes it: generation -1, no leader, no protocol.
pub(crate) fn error_response(
    version: i16,
    member_id: StrBytes,
    error: ResponseError,
) -> JoinGroupResponse {
    let mut r = shape(
        version,
        JoinResult {
            members: Vec::new(),
            member_id,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: StrBytes::new(),
            skip_assignment: false,
        },
    );
    r.error_code = error.code();
    r
}

pub(crate) fn respond_error(
    env: &mut Env,
    parked: Parked,
    member_id: StrBytes,
    error: ResponseError,
) {
    let response = error_response(parked.version, member_id, error);
    env.out.respond(parked.token, Response::JoinGroup(response));
}

fn respond(env: &mut Env, parked: Parked, result: JoinResult) {
    env.out.respond(
        parked.token,
        Response::JoinGroup(shape(parked.version, result)),
    );
}

/// Fits a result to the request version; fields a version lacks must stay at their defaults.
fn shape(version: i16, mut result: JoinResult) -> JoinGroupResponse {
    if version < 5 {
        for m in &mut result.members {
            m.group_instance_id = None;
        }
    }
    let mut r = JoinGroupResponse::default();
    r.generation_id = result.generation_id;
    if version >= 7 {
        r.protocol_type = result.protocol_type;
        r.protocol_name = result.protocol_name;
    } else {
        // Before v7 the protocol name is not nullable; Kafka sends "".
        r.protocol_name = Some(result.protocol_name.unwrap_or_default());
    }
    r.leader = result.leader;
    r.skip_assignment = version >= 9 && result.skip_assignment;
    r.member_id = result.member_id;
    r.members = result.members;
    r
}

impl Group {
    fn result(&self, member_id: StrBytes, with_members: bool) -> JoinResult {
        JoinResult {
            members: if with_members {
                self.current_member_metadata()
            } else {
                Vec::new()
            },
            member_id,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            skip_assignment: false,
        }
    }

    /// Kafka's `handleJoinGroup` once the group exists.
    pub(crate) fn join(&mut self, env: &mut Env, args: JoinArgs) {
        if !self.accept_joining_member(&args.member_id, env) {
            self.remove_member(env, &args.member_id);
            respond_error(
                env,
                args.parked,
                StrBytes::new(),
                ResponseError::GroupMaxSizeReached,
            );
        } else if args.member_id.is_empty() {
            self.join_new_member(env, args);
        } else {
            self.join_current_member(env, args);
        }
        if self.state == GroupState::PreparingRebalance {
            self.maybe_complete_join(env);
        }
    }

    /// Kafka's `acceptJoiningMember`: counting members awaiting join (not the group size) while
    /// rebalancing lets the last rejoiners be kicked out when the limit was lowered.
    fn accept_joining_member(&self, member_id: &str, env: &Env) -> bool {
        let max = env.config.group_max_size;
        let member = self.members.get(member_id.as_bytes());
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                member.is_some_and(|m| m.awaiting_join.is_some()) || self.awaiting_join_count < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.is_some() || self.members.len() < max
            }
        }
    }

    fn join_new_member(&mut self, env: &mut Env, args: JoinArgs) {
        if self.state == GroupState::Dead {
            return respond_error(
                env,
                args.parked,
                StrBytes::new(),
                ResponseError::CoordinatorNotAvailable,
            );
        }
        if !self.supports_protocols(&args.protocol_type, &args.protocols) {
            return respond_error(
                env,
                args.parked,
                StrBytes::new(),
                ResponseError::InconsistentGroupProtocol,
            );
        }
        let prefix = args.instance_id.as_ref().unwrap_or(&args.client_id);
        let new_id = self.generate_member_id(env.ids, prefix);
        match &args.instance_id {
            Some(instance_id) => match self.static_members.get(instance_id.as_bytes()).cloned() {
                Some(old_id) => self.update_static_member_and_rebalance(env, old_id, new_id, args),
                None => self.add_member_and_rebalance(env, new_id, args),
            },
            None if args.require_known_member_id => {
                debug!(group = %self.id, member = %new_id, "new member must rejoin with its id");
                let deadline = env.deadline(i64::from(args.session_timeout_ms));
                self.pending_members.insert(new_id.clone(), deadline);
                respond_error(env, args.parked, new_id, ResponseError::MemberIdRequired);
            }
            None => self.add_member_and_rebalance(env, new_id, args),
        }
    }

    fn join_current_member(&mut self, env: &mut Env, args: JoinArgs) {
        let member_id = args.member_id.clone();
        if self.state == GroupState::Dead {
            return respond_error(
                env,
                args.parked,
                member_id,
                ResponseError::CoordinatorNotAvailable,
            );
        }
        if !self.supports_protocols(&args.protocol_type, &args.protocols) {
            return respond_error(
                env,
                args.parked,
                member_id,
                ResponseError::InconsistentGroupProtocol,
            );
        }
        if self.pending_members.contains_key(member_id.as_bytes()) {
            // Pending ids are only handed to dynamic members; Kafka throws here.
            if args.instance_id.is_some() {
                return respond_error(
                    env,
                    args.parked,
                    member_id,
                    ResponseError::UnknownServerError,
                );
            }
            return self.add_member_and_rebalance(env, member_id, args);
        }
        if let Some(error) = self.validate_current_member(&member_id, args.instance_id.as_deref()) {
            return respond_error(env, args.parked, member_id, error);
        }
        let member = &self.members[member_id.as_bytes()];
        let matches = member.matches(&args.protocols);
        match self.state {
            GroupState::PreparingRebalance => self.update_member_and_rebalance(env, args),
            // The member may have missed the JoinGroup response: answer with the current
            // generation unless its metadata changed.
            GroupState::CompletingRebalance if matches => {
                let is_leader = self.is_leader(&member_id);
                let result = self.result(member_id, is_leader);
                respond(env, args.parked, result);
            }
            GroupState::CompletingRebalance => self.update_member_and_rebalance(env, args),
            // A rejoining leader forces a rebalance: it may have seen metadata change that the
            // member metadata does not show (new partitions, for a consumer).
            GroupState::Stable if self.is_leader(&member_id) || !matches => {
                self.update_member_and_rebalance(env, args)
            }
            GroupState::Stable => {
                let result = self.result(member_id, false);
                respond(env, args.parked, result);
            }
            GroupState::Empty | GroupState::Dead => {
                respond_error(env, args.parked, member_id, ResponseError::UnknownMemberId)
            }
        }
    }

    fn add_member_and_rebalance(&mut self, env: &mut Env, member_id: StrBytes, args: JoinArgs) {
        if self.state == GroupState::PreparingRebalance && self.generation_id == 0 {
            self.new_member_added = true;
        }
        info!(group = %self.id, member = %member_id, instance = ?args.instance_id, "member joins");
        self.add_member(Member {
            id: member_id,
            instance_id: args.instance_id.as_ref().map(super::owned),
            client_id: super::owned(&args.client_id),
            client_host: super::owned(&args.client_host),
            rebalance_timeout_ms: args.rebalance_timeout_ms,
            session_timeout_ms: args.session_timeout_ms,
            protocol_type: super::owned(&args.protocol_type),
            protocols: owned_protocols(&args.protocols),
            assignment: Bytes::new(),
            awaiting_join: Some(args.parked),
            awaiting_sync: None,
            is_new: true,
            // A parked new member cannot heartbeat, and a client that gave up would leave a
            // defunct member behind; this bounds how long it can hold up the rebalance.
            heartbeat_deadline_ms: Some(env.now_ms.saturating_add(NEW_MEMBER_JOIN_TIMEOUT_MS)),
        });
        self.maybe_prepare_rebalance(env);
    }

    fn update_member_and_rebalance(&mut self, env: &mut Env, args: JoinArgs) {
        let timeouts = (args.rebalance_timeout_ms, args.session_timeout_ms);
        let protocols = owned_protocols(&args.protocols);
        self.update_member(env, &args.member_id, protocols, timeouts, Some(args.parked));
        self.maybe_prepare_rebalance(env);
    }

    /// A known group.instance.id joined with an empty member id: the instance restarted. It
    /// takes over the old member's place under a new id; the old id is fenced.
    fn update_static_member_and_rebalance(
        &mut self,
        env: &mut Env,
        old_id: StrBytes,
        new_id: StrBytes,
        args: JoinArgs,
    ) {
        info!(group = %self.id, old = %old_id, new = %new_id, "static member replaced");
        let current_leader = self.leader_id.clone().unwrap_or_default();
        self.replace_static_member(env, &old_id, new_id.clone());
        self.reschedule_heartbeat(env, &new_id);
        let timeouts = (args.rebalance_timeout_ms, args.session_timeout_ms);
        let protocols = owned_protocols(&args.protocols);
        self.update_member(env, &new_id, protocols, timeouts, Some(args.parked));
        match self.state {
            GroupState::Stable => {
                if self.protocol_name.as_ref() != Some(&self.select_protocol()) {
                    return self.maybe_prepare_rebalance(env);
                }
                // The protocol stays: persist the new member id and keep the assignment.
                self.store(env);
                let Some(parked) = self.take_member_join(&new_id) else {
                    return;
                };
                let result = if args.support_skip_assignment {
                    // v9+: the leader learns it leads but skips the (side-effecting) assignor.
                    let is_leader = self.is_leader(&new_id);
                    let mut result = self.result(new_id, is_leader);
                    result.skip_assignment = is_leader;
                    result
                } else {
                    // Before v9 the old leader id is returned, so a restarted leader does not run
                    // an assignment that a stable group would not broadcast.
                    let mut result = self.result(new_id, false);
                    result.leader = current_leader;
                    result
                };
                respond(env, parked, result);
            }
            // The leader may already be assigning for the old member id; start over.
            GroupState::CompletingRebalance => self.prepare_rebalance(env),
            GroupState::PreparingRebalance => {}
            GroupState::Empty | GroupState::Dead => {
                unreachable!("group {} with a static member is {:?}", self.id, self.state)
            }
        }
    }

    /// Kafka's `replaceStaticMember`: moves the member to `new_id` in place and fences whatever
    /// the old id still has parked.
    fn replace_static_member(&mut self, env: &mut Env, old_id: &str, new_id: StrBytes) {
        let (index, _, mut member) = self
            .members
            .shift_remove_full(old_id.as_bytes())
            .expect("static mapping points at a member");
        if let Some(parked) = self.take_join(&mut member) {
            respond_error(
                env,
                parked,
                member.id.clone(),
                ResponseError::FencedInstanceId,
            );
        }
        if let Some(parked) = member.awaiting_sync.take() {
            super::sync::respond_error(env, parked, ResponseError::FencedInstanceId);
        }
        member.id = new_id.clone();
        if let Some(instance_id) = &member.instance_id {
            self.static_members
                .insert(instance_id.clone(), new_id.clone());
        }
        self.members.shift_insert(index, new_id.clone(), member);
        if self.is_leader(old_id) {
            self.leader_id = Some(new_id.clone());
        }
        if self.pending_sync.remove(old_id.as_bytes()) {
            self.pending_sync.insert(new_id);
        }
    }

    pub(crate) fn maybe_prepare_rebalance(&mut self, env: &mut Env) {
        if self.state.can_rebalance() {
            self.prepare_rebalance(env);
        }
    }

    /// Kafka's `prepareRebalance`: cancel the sync barrier, start the join barrier. The first
    /// rebalance of an empty group waits `group.initial.rebalance.delay.ms` for more members.
    pub(crate) fn prepare_rebalance(&mut self, env: &mut Env) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(env, ResponseError::RebalanceInProgress);
        }
        self.pending_sync.clear();
        self.sync_timer = None;
        let rebalance_timeout_ms = self.rebalance_timeout_ms();
        self.join_timer = Some(if self.state == GroupState::Empty {
            let delay_ms = env.config.group_initial_rebalance_delay_ms;
            JoinTimer::Initial {
                deadline_ms: env.deadline(i64::from(delay_ms)),
                delay_ms,
                remaining_ms: (rebalance_timeout_ms.saturating_sub(delay_ms)).max(0),
            }
        } else {
            JoinTimer::Regular {
                deadline_ms: env.deadline(i64::from(rebalance_timeout_ms)),
            }
        });
        info!(group = %self.id, generation = self.generation_id, from = self.state.as_str(), "preparing rebalance");
        self.transition(GroupState::PreparingRebalance, env.now_ms);
        self.maybe_complete_join(env);
    }

    /// Kafka's `DelayedJoin.tryComplete`; the initial delay never completes early.
    pub(crate) fn maybe_complete_join(&mut self, env: &mut Env) {
        let regular = matches!(self.join_timer, Some(JoinTimer::Regular { .. }));
        if self.state == GroupState::PreparingRebalance && regular && self.has_all_members_joined()
        {
            self.complete_join(env);
        }
    }

    /// Kafka's `onCompleteJoin`: drop dynamic members that did not rejoin, start the next
    /// generation and answer every parked JoinGroup (the leader gets everyone's metadata).
    pub(crate) fn complete_join(&mut self, env: &mut Env) {
        self.join_timer = None;
        let gone: Vec<StrBytes> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none() && !m.is_static())
            .map(|m| m.id.clone())
            .collect();
        for member_id in gone {
            info!(group = %self.id, member = %member_id, "member did not rejoin in time");
            self.remove_member(env, &member_id);
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members remain and none rejoined: wait for them (or their sessions).
            self.join_timer = Some(JoinTimer::Regular {
                deadline_ms: env.deadline(i64::from(self.rebalance_timeout_ms())),
            });
            return;
        }
        self.init_next_generation(env.now_ms);
        if self.state == GroupState::Empty {
            info!(group = %self.id, generation = self.generation_id, "group is empty");
            return self.store(env);
        }
        info!(group = %self.id, generation = self.generation_id, members = self.members.len(), "group rebalanced");
        let ids: Vec<StrBytes> = self.members.keys().cloned().collect();
        for member_id in ids {
            if let Some(parked) = self.take_member_join(&member_id) {
                let is_leader = self.is_leader(&member_id);
                let result = self.result(member_id.clone(), is_leader);
                respond(env, parked, result);
            }
            self.reschedule_heartbeat(env, &member_id);
            if let Some(member) = self.members.get_mut(member_id.as_bytes()) {
                member.is_new = false;
            }
            self.pending_sync.insert(member_id);
        }
        self.sync_timer = Some(SyncTimer {
            deadline_ms: env.deadline(i64::from(self.rebalance_timeout_ms())),
            generation_id: self.generation_id,
        });
    }

    /// Kafka's `maybeElectNewJoinedLeader`: false if there is no leader or nobody rejoined.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = &self.leader_id else {
            return false;
        };
        if self.members[leader.as_bytes()].awaiting_join.is_some() {
            return true;
        }
        match self.members.values().find(|m| m.awaiting_join.is_some()) {
            Some(joined) => {
                info!(group = %self.id, old = %leader, new = %joined.id, "leader did not rejoin");
                self.leader_id = Some(joined.id.clone());
                true
            }
            None => false,
        }
    }

    fn init_next_generation(&mut self, now_ms: u64) {
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.transition(GroupState::Empty, now_ms);
        } else {
            self.protocol_name = Some(self.select_protocol());
            self.transition(GroupState::CompletingRebalance, now_ms);
        }
        self.pending_sync.clear();
    }

    /// Kafka's `removeMemberAndUpdateGroup`: a member left or failed.
    pub(crate) fn remove_member_and_update_group(&mut self, env: &mut Env, member_id: &str) {
        self.remove_member(env, member_id);
        match self.state {
            GroupState::Dead | GroupState::Empty => {}
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.maybe_prepare_rebalance(env)
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(env),
        }
    }
}

fn owned_protocols(protocols: &[(StrBytes, Bytes)]) -> Vec<(StrBytes, Bytes)> {
    protocols
        .iter()
        .map(|(name, metadata)| (super::owned(name), super::owned_bytes(metadata)))
        .collect()
}
