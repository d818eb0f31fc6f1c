//! SyncGroup (the assignment barrier), Heartbeat and LeaveGroup.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::SyncGroupResponse;
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use super::{Env, Group, GroupState, Parked};
use crate::api::Response;

/// A SyncGroup request, normalised across versions.
pub(crate) struct SyncArgs {
    pub(crate) parked: Parked,
    pub(crate) member_id: StrBytes,
    pub(crate) instance_id: Option<StrBytes>,
    pub(crate) generation_id: i32,
    pub(crate) protocol_type: Option<StrBytes>,
    pub(crate) protocol_name: Option<StrBytes>,
    pub(crate) assignments: Vec<(StrBytes, Bytes)>,
}

pub(crate) fn response(
    version: i16,
    protocol: Option<(Option<StrBytes>, Option<StrBytes>)>,
    assignment: Bytes,
    error: Option<ResponseError>,
) -> SyncGroupResponse {
    let mut r = SyncGroupResponse::default();
    r.error_code = error.map_or(0, |e| e.code());
    if let (true, Some((protocol_type, protocol_name))) = (version >= 5, protocol) {
        r.protocol_type = protocol_type;
        r.protocol_name = protocol_name;
    }
    r.assignment = assignment;
    r
}

pub(crate) fn respond_error(env: &mut Env, parked: Parked, error: ResponseError) {
    let r = response(parked.version, None, Bytes::new(), Some(error));
    env.out.respond(parked.token, Response::SyncGroup(r));
}

impl Group {
    /// Kafka's `validateSyncGroup`.
    fn validate_sync(&self, args: &SyncArgs) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(error) =
            self.validate_current_member(&args.member_id, args.instance_id.as_deref())
        {
            return Some(error);
        }
        if args.generation_id != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        let type_differs = args.protocol_type.is_some() && args.protocol_type != self.protocol_type;
        let name_differs = args.protocol_name.is_some() && args.protocol_name != self.protocol_name;
        if type_differs || name_differs {
            return Some(ResponseError::InconsistentGroupProtocol);
        }
        None
    }

    /// Kafka's `doSyncGroup`: followers wait for the leader; the leader's assignment is
    /// persisted and handed to everyone parked.
    pub(crate) fn sync(&mut self, env: &mut Env, args: SyncArgs) {
        if let Some(error) = self.validate_sync(&args) {
            return respond_error(env, args.parked, error);
        }
        match self.state {
            GroupState::Empty => respond_error(env, args.parked, ResponseError::UnknownMemberId),
            GroupState::PreparingRebalance => {
                respond_error(env, args.parked, ResponseError::RebalanceInProgress)
            }
            GroupState::CompletingRebalance => self.sync_completing(env, args),
            GroupState::Stable => {
                self.remove_pending_sync(&args.member_id);
                let assignment = self.members[args.member_id.as_bytes()].assignment.clone();
                let protocol = (self.protocol_type.clone(), self.protocol_name.clone());
                let r = response(args.parked.version, Some(protocol), assignment, None);
                env.out.respond(args.parked.token, Response::SyncGroup(r));
                self.reschedule_heartbeat(env, &args.member_id);
            }
            GroupState::Dead => unreachable!("validate_sync answers a dead group"),
        }
    }

    fn sync_completing(&mut self, env: &mut Env, args: SyncArgs) {
        let member = self
            .members
            .get_mut(args.member_id.as_bytes())
            .expect("validated member");
        if let Some(old) = member.awaiting_sync.replace(args.parked) {
            // Superseded (the client retried); Kafka drops the old callback silently.
            respond_error(env, old, ResponseError::RebalanceInProgress);
        }
        self.remove_pending_sync(&args.member_id);
        if !self.is_leader(&args.member_id) {
            return;
        }
        info!(group = %self.id, generation = self.generation_id, "assignment received from leader");
        // Members the leader left out get an empty assignment; unknown ids are ignored.
        for member in self.members.values_mut() {
            member.assignment = args
                .assignments
                .iter()
                .rev()
                .find(|(id, _)| *id == member.id)
                .map(|(_, assignment)| super::owned_bytes(assignment))
                .unwrap_or_default();
        }
        self.store(env);
        self.propagate_assignment(env, None);
        self.transition(GroupState::Stable, env.now_ms);
    }

    /// Kafka's `resetAndPropagateAssignmentError`.
    pub(crate) fn reset_and_propagate_assignment_error(
        &mut self,
        env: &mut Env,
        error: ResponseError,
    ) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
        }
        self.propagate_assignment(env, Some(error));
    }

    /// Answers every parked SyncGroup and restarts those members' sessions: a session that ran
    /// out while parked was ignored and must be scheduled again.
    fn propagate_assignment(&mut self, env: &mut Env, error: Option<ResponseError>) {
        let protocol = match error {
            None => Some((self.protocol_type.clone(), self.protocol_name.clone())),
            Some(_) => None,
        };
        let deadline = |timeout_ms: i32| env.deadline(i64::from(timeout_ms));
        let mut answered = Vec::new();
        for member in self.members.values_mut() {
            if let Some(parked) = member.awaiting_sync.take() {
                let r = response(
                    parked.version,
                    protocol.clone(),
                    member.assignment.clone(),
                    error,
                );
                answered.push((parked.token, Response::SyncGroup(r)));
                member.heartbeat_deadline_ms = Some(deadline(member.session_timeout_ms));
            }
        }
        for (token, response) in answered {
            env.out.respond(token, response);
        }
    }

    fn remove_pending_sync(&mut self, member_id: &str) {
        self.pending_sync.remove(member_id.as_bytes());
        if self.pending_sync.is_empty() {
            self.sync_timer = None;
        }
    }

    /// Kafka's `handleHeartbeat` once the group exists; returns the error code.
    pub(crate) fn heartbeat(
        &mut self,
        env: &mut Env,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        if let Some(error) = self.validate_current_member(member_id, instance_id) {
            return Some(error);
        }
        if generation_id != self.generation_id {
            return Some(ResponseError::IllegalGeneration);
        }
        match self.state {
            GroupState::Empty => Some(ResponseError::UnknownMemberId),
            // Members may heartbeat between their JoinGroup and SyncGroup responses.
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.reschedule_heartbeat(env, member_id);
                None
            }
            GroupState::PreparingRebalance => {
                self.reschedule_heartbeat(env, member_id);
                Some(ResponseError::RebalanceInProgress)
            }
            GroupState::Dead => unreachable!("answered above"),
        }
    }

    /// Kafka's `handleLeaveGroup` once the group exists: one answer per leaving identity. An
    /// empty member id with a group instance id is an administrative removal of that instance.
    pub(crate) fn leave(
        &mut self,
        env: &mut Env,
        leaving: &[MemberIdentity],
    ) -> Vec<MemberResponse> {
        let mut answers = Vec::with_capacity(leaving.len());
        for identity in leaving {
            let error = self.leave_one(env, identity);
            let mut answer = MemberResponse::default();
            answer.member_id = identity.member_id.clone();
            answer.group_instance_id = identity.group_instance_id.clone();
            answer.error_code = error.map_or(0, |e| e.code());
            answers.push(answer);
        }
        answers
    }

    fn leave_one(&mut self, env: &mut Env, identity: &MemberIdentity) -> Option<ResponseError> {
        let member_id = identity.member_id.as_str();
        let instance_id = identity.group_instance_id.as_deref();
        if member_id.is_empty() {
            let current = instance_id.and_then(|i| self.static_members.get(i.as_bytes()).cloned());
            return match current {
                Some(current) => {
                    info!(group = %self.id, member = %current, "static member removed by instance id");
                    self.remove_member_and_update_group(env, &current);
                    None
                }
                None => Some(ResponseError::UnknownMemberId),
            };
        }
        if self
            .pending_members
            .shift_remove(member_id.as_bytes())
            .is_some()
        {
            info!(group = %self.id, member = member_id, "pending member left");
            if self.state == GroupState::PreparingRebalance {
                self.maybe_complete_join(env);
            }
            return None;
        }
        if let Some(error) = self.validate_current_member(member_id, instance_id) {
            return Some(error);
        }
        info!(group = %self.id, member = member_id, "member left");
        self.remove_member_and_update_group(env, member_id);
        None
    }
}
