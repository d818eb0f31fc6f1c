//! One classic consumer group: its state machine, members, parked JoinGroup/SyncGroup requests,
//! timers and committed offsets (Kafka's `GroupMetadata` and `MemberMetadata`).
//!
//! The request handlers live in the child modules (`join`, `sync`, `timers`, `offsets`), which see
//! the private fields; everything else goes through the `pub(crate)` methods here, which keep the
//! counters (members awaiting join, protocol support) consistent.

mod join;
mod offsets;
mod sync;
mod timers;

use std::collections::{BTreeMap, HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::protocol::StrBytes;

use crate::api::{Output, ResponseToken};
use crate::config::GroupConfig;
use crate::coordinator::MemberDescription;
use crate::ids::IdGenerator;
use crate::record::{CommittedOffset, GroupValue, MemberValue, Record};

pub(crate) use join::{error_response as join_error_response, JoinArgs};
pub(crate) use offsets::{commit_error, Committer, Fetched};
pub(crate) use sync::{response as sync_response, SyncArgs};
pub(crate) use timers::{JoinTimer, SyncTimer};

/// The states of a classic group, spelled as Kafka spells them in ListGroups and DescribeGroups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    Empty,
    /// Waiting for the members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment in SyncGroup.
    CompletingRebalance,
    Stable,
    /// Deleted; a transient state before the group is dropped.
    Dead,
}

impl GroupState {
    pub fn as_str(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }

    /// Kafka's `PreparingRebalance.validPreviousStates`.
    fn can_rebalance(self) -> bool {
        matches!(
            self,
            GroupState::Stable | GroupState::CompletingRebalance | GroupState::Empty
        )
    }
}

/// A JoinGroup or SyncGroup request waiting for its barrier.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Parked {
    pub(crate) token: ResponseToken,
    pub(crate) version: i16,
}

/// What a handler needs besides the group: settings, time, ids, and where results go.
pub(crate) struct Env<'a> {
    pub(crate) config: &'a GroupConfig,
    pub(crate) now_ms: u64,
    pub(crate) ids: &'a mut IdGenerator,
    pub(crate) out: &'a mut Output,
}

impl Env<'_> {
    fn deadline(&self, timeout_ms: i64) -> u64 {
        self.now_ms
            .saturating_add(u64::try_from(timeout_ms.max(0)).unwrap_or(u64::MAX))
    }
}

pub(crate) type TopicPartition = (StrBytes, i32);

pub(crate) struct Member {
    id: StrBytes,
    instance_id: Option<StrBytes>,
    client_id: StrBytes,
    client_host: StrBytes,
    rebalance_timeout_ms: i32,
    session_timeout_ms: i32,
    protocol_type: StrBytes,
    /// In the member's order of preference.
    protocols: Vec<(StrBytes, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<Parked>,
    awaiting_sync: Option<Parked>,
    /// Joined but not yet through its first rebalance; expires after
    /// [`NEW_MEMBER_JOIN_TIMEOUT_MS`](crate::NEW_MEMBER_JOIN_TIMEOUT_MS) even while parked.
    is_new: bool,
    /// Session expiry; `None` while suspended (parked members cannot heartbeat).
    heartbeat_deadline_ms: Option<u64>,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        // Every member supports the selected protocol (it was chosen among the protocols all
        // members support), so the fallback only guards against a broken invariant.
        self.protocols
            .iter()
            .find(|(name, _)| name.as_str() == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    fn matches(&self, protocols: &[(StrBytes, Bytes)]) -> bool {
        self.protocols == protocols
    }

    /// Kafka's `MemberMetadata.vote`: the member's most preferred protocol among the candidates.
    fn vote<'a>(&'a self, candidates: &HashSet<&str>) -> Option<&'a StrBytes> {
        self.protocols
            .iter()
            .map(|(name, _)| name)
            .find(|name| candidates.contains(name.as_str()))
    }

    fn is_static(&self) -> bool {
        self.instance_id.is_some()
    }
}

pub(crate) struct Group {
    id: StrBytes,
    state: GroupState,
    state_timestamp_ms: u64,
    protocol_type: Option<StrBytes>,
    protocol_name: Option<StrBytes>,
    generation_id: i32,
    leader_id: Option<StrBytes>,
    /// In join order; the order decides the fallback leader and the leader's member list.
    members: IndexMap<StrBytes, Member>,
    /// group.instance.id → member id.
    static_members: HashMap<StrBytes, StrBytes>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to rejoin.
    pending_members: IndexMap<StrBytes, u64>,
    /// Members that joined the current generation but have not sent SyncGroup yet.
    pending_sync: HashSet<StrBytes>,
    /// How many members support each protocol name.
    protocol_support: HashMap<StrBytes, usize>,
    awaiting_join_count: usize,
    /// A member joined during the initial delay, which then waits one more delay.
    new_member_added: bool,
    join_timer: Option<JoinTimer>,
    sync_timer: Option<SyncTimer>,
    offsets: BTreeMap<TopicPartition, CommittedOffset>,
    /// Transactional offsets by producer id, invisible until the transaction commits.
    pending_txn_offsets: BTreeMap<i64, BTreeMap<TopicPartition, CommittedOffset>>,
    /// The last group metadata value written to the log, for snapshots.
    persisted: Option<GroupValue>,
    /// Rebalances begun since this process loaded the group (a metric; not persisted).
    rebalances: u64,
}

/// Copies a string out of a request buffer so long-lived state does not pin the whole buffer.
pub(crate) fn owned(s: &StrBytes) -> StrBytes {
    StrBytes::from_string(s.as_str().to_owned())
}

pub(crate) fn owned_bytes(b: &Bytes) -> Bytes {
    Bytes::copy_from_slice(b)
}

/// The protocol type of Kafka's consumers.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// The topics of a consumer subscription (its version first, then the fields of that version).
fn subscription_topics(metadata: &Bytes) -> Option<Vec<String>> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut buf = metadata.clone();
    let version = i16::from_be_bytes(metadata.get(..2)?.try_into().ok()?);
    bytes::Buf::advance(&mut buf, 2);
    // Newer versions start with the fields of the newest one known (Kafka reads them so too).
    let version = version.clamp(0, 3);
    let subscription = ConsumerProtocolSubscription::decode(&mut buf, version).ok()?;
    Some(subscription.topics.iter().map(|t| t.to_string()).collect())
}

impl Group {
    pub(crate) fn new(id: StrBytes, now_ms: u64) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            state_timestamp_ms: now_ms,
            rebalances: 0,
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: IndexMap::new(),
            static_members: HashMap::new(),
            pending_members: IndexMap::new(),
            pending_sync: HashSet::new(),
            protocol_support: HashMap::new(),
            awaiting_join_count: 0,
            new_member_added: false,
            join_timer: None,
            sync_timer: None,
            offsets: BTreeMap::new(),
            pending_txn_offsets: BTreeMap::new(),
            persisted: None,
        }
    }

    pub(crate) fn id(&self) -> &StrBytes {
        &self.id
    }

    pub(crate) fn rebalances(&self) -> u64 {
        self.rebalances
    }

    pub(crate) fn state(&self) -> GroupState {
        self.state
    }

    pub(crate) fn protocol_type(&self) -> Option<&StrBytes> {
        self.protocol_type.as_ref()
    }

    /// Whether the members speak the consumer protocol (their metadata are Kafka's consumer
    /// subscriptions).
    pub(crate) fn is_consumer_group(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    /// The topics the members subscribe to, read from their metadata for the group's protocol
    /// (Kafka's `ConsumerProtocolSubscription`); None when the group has no protocol yet or a
    /// member's subscription cannot be read.
    pub(crate) fn subscribed_topics(&self) -> Option<HashSet<String>> {
        let protocol = self.protocol_name.as_ref()?;
        let mut topics = HashSet::new();
        for member in self.members.values() {
            let (_, metadata) = member.protocols.iter().find(|(name, _)| name == protocol)?;
            topics.extend(subscription_topics(metadata)?);
        }
        Some(topics)
    }

    pub(crate) fn protocol_name(&self) -> Option<&StrBytes> {
        self.protocol_name.as_ref()
    }

    pub(crate) fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub(crate) fn leader_id(&self) -> Option<&StrBytes> {
        self.leader_id.as_ref()
    }

    pub(crate) fn offsets(&self) -> &BTreeMap<TopicPartition, CommittedOffset> {
        &self.offsets
    }

    /// Nothing worth keeping: what the offset-expiry sweep deletes (`is_expired`), with no
    /// members and never persisted. Kafka would drop such a group at its next sweep; ferry
    /// drops it at once.
    pub(crate) fn is_vacant(&self) -> bool {
        self.is_expired() && self.members.is_empty() && self.generation_id == 0
    }

    fn transition(&mut self, state: GroupState, now_ms: u64) {
        if state == GroupState::PreparingRebalance && self.state != state {
            self.rebalances += 1;
        }
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    /// Kafka's `rebalanceTimeoutMs`: the longest rebalance timeout of any member.
    fn rebalance_timeout_ms(&self) -> i32 {
        self.members
            .values()
            .map(|m| m.rebalance_timeout_ms)
            .max()
            .unwrap_or(0)
    }

    fn has_all_members_joined(&self) -> bool {
        self.members.len() == self.awaiting_join_count && self.pending_members.is_empty()
    }

    fn add_member(&mut self, member: Member) {
        if let Some(instance_id) = &member.instance_id {
            let previous = self
                .static_members
                .insert(instance_id.clone(), member.id.clone());
            assert!(previous.is_none(), "static member added twice");
        }
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.id.clone());
        }
        self.count_protocols(&member.protocols);
        if member.awaiting_join.is_some() {
            self.awaiting_join_count += 1;
        }
        self.pending_members.shift_remove(member.id.as_bytes());
        let previous = self.members.insert(member.id.clone(), member);
        assert!(previous.is_none(), "member added twice");
    }

    /// Kafka's `GroupMetadata.remove`, plus an answer to any request the member still has
    /// parked, so that no connection waits forever: UNKNOWN_MEMBER_ID tells the client to rejoin.
    fn remove_member(&mut self, env: &mut Env, member_id: &str) {
        if let Some(mut member) = self.members.shift_remove(member_id.as_bytes()) {
            self.forget_protocols(&member.protocols);
            if let Some(parked) = self.take_join(&mut member) {
                join::respond_error(env, parked, StrBytes::new(), ResponseError::UnknownMemberId);
            }
            if let Some(parked) = member.awaiting_sync.take() {
                sync::respond_error(env, parked, ResponseError::UnknownMemberId);
            }
            if let Some(instance_id) = &member.instance_id {
                self.static_members.remove(instance_id.as_bytes());
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.shift_remove(member_id.as_bytes());
        self.pending_sync.remove(member_id.as_bytes());
    }

    fn count_protocols(&mut self, protocols: &[(StrBytes, Bytes)]) {
        for (name, _) in protocols {
            *self.protocol_support.entry(name.clone()).or_default() += 1;
        }
    }

    fn forget_protocols(&mut self, protocols: &[(StrBytes, Bytes)]) {
        for (name, _) in protocols {
            if let Some(count) = self.protocol_support.get_mut(name.as_bytes()) {
                *count -= 1;
                if *count == 0 {
                    self.protocol_support.remove(name.as_bytes());
                }
            }
        }
    }

    /// Replaces a member's protocols and timeouts and parks (or clears) its JoinGroup; Kafka's
    /// `updateMember`. A JoinGroup already parked for the member is superseded and answered at
    /// once with REBALANCE_IN_PROGRESS, so its connection does not hang (Kafka drops it silently).
    fn update_member(
        &mut self,
        env: &mut Env,
        member_id: &str,
        protocols: Vec<(StrBytes, Bytes)>,
        timeouts_ms: (i32, i32),
        parked: Option<Parked>,
    ) {
        let Some(member) = self.members.get_mut(member_id.as_bytes()) else {
            return;
        };
        let old_protocols = std::mem::replace(&mut member.protocols, protocols);
        (member.rebalance_timeout_ms, member.session_timeout_ms) = timeouts_ms;
        let old_parked = std::mem::replace(&mut member.awaiting_join, parked);
        let id = member.id.clone();
        let new_protocols = member.protocols.clone();
        self.forget_protocols(&old_protocols);
        self.count_protocols(&new_protocols);
        if old_parked.is_some() {
            self.awaiting_join_count -= 1;
        }
        if parked.is_some() {
            self.awaiting_join_count += 1;
        }
        if let Some(old) = old_parked {
            join::respond_error(env, old, id, ResponseError::RebalanceInProgress);
        }
    }

    fn take_join(&mut self, member: &mut Member) -> Option<Parked> {
        let parked = member.awaiting_join.take();
        if parked.is_some() {
            self.awaiting_join_count -= 1;
        }
        parked
    }

    fn take_member_join(&mut self, member_id: &str) -> Option<Parked> {
        let member = self.members.get_mut(member_id.as_bytes())?;
        let parked = member.awaiting_join.take();
        if parked.is_some() {
            self.awaiting_join_count -= 1;
        }
        parked
    }

    /// Kafka's `supportsProtocols`.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[(StrBytes, Bytes)]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| {
                self.protocol_support
                    .get(name.as_bytes())
                    .copied()
                    .unwrap_or(0)
                    == self.members.len()
            })
    }

    /// Kafka's `selectProtocol`: every member votes for its most preferred protocol among those
    /// all members support; most votes wins. Kafka breaks ties arbitrarily (hash order); ferry
    /// picks the protocol voted for by the earliest member, so runs are reproducible.
    fn select_protocol(&self) -> StrBytes {
        assert!(
            !self.members.is_empty(),
            "select protocol of an empty group"
        );
        let candidates: HashSet<&str> = self
            .protocol_support
            .iter()
            .filter(|(_, count)| **count == self.members.len())
            .map(|(name, _)| name.as_str())
            .collect();
        let mut votes: IndexMap<&StrBytes, usize> = IndexMap::new();
        for member in self.members.values() {
            if let Some(vote) = member.vote(&candidates) {
                *votes.entry(vote).or_default() += 1;
            }
        }
        let most = votes.values().copied().max().unwrap_or(0);
        votes
            .into_iter()
            .find(|(_, count)| *count == most)
            .map(|(name, _)| name.clone())
            .expect("members share a protocol: every join checked supports_protocols")
    }

    /// Kafka's `validateCurrentMember`.
    fn validate_current_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Option<ResponseError> {
        if let Some(instance_id) = instance_id {
            return match self.static_members.get(instance_id.as_bytes()) {
                Some(current) if current.as_str() != member_id => {
                    Some(ResponseError::FencedInstanceId)
                }
                Some(_) => None,
                None => Some(ResponseError::UnknownMemberId),
            };
        }
        if !self.members.contains_key(member_id.as_bytes()) {
            return Some(ResponseError::UnknownMemberId);
        }
        None
    }

    fn generate_member_id(&self, ids: &mut IdGenerator, prefix: &str) -> StrBytes {
        // A generator seeded like an earlier run could repeat an id that replay restored.
        loop {
            let id = ids.member_id(prefix);
            if !self.members.contains_key(id.as_bytes())
                && !self.pending_members.contains_key(id.as_bytes())
            {
                return id;
            }
        }
    }

    /// Every member's metadata for the selected protocol, as the leader receives it.
    fn current_member_metadata(&self) -> Vec<JoinGroupResponseMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                let mut out = JoinGroupResponseMember::default();
                out.member_id = m.id.clone();
                out.group_instance_id = m.instance_id.clone();
                out.metadata = m.metadata(protocol);
                out
            })
            .collect()
    }

    fn reschedule_heartbeat(&mut self, env: &Env, member_id: &str) {
        if let Some(member) = self.members.get_mut(member_id.as_bytes()) {
            member.heartbeat_deadline_ms = Some(env.deadline(i64::from(member.session_timeout_ms)));
        }
    }

    /// The group as the log keeps it; also remembered for [`Group::snapshot`].
    fn store(&mut self, env: &mut Env) {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let value = GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            state_timestamp_ms: i64::try_from(self.state_timestamp_ms).unwrap_or(i64::MAX),
            members: self
                .members
                .values()
                .map(|m| MemberValue {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        };
        env.out.records.push(Record::group(&self.id, Some(&value)));
        self.persisted = Some(value);
    }

    /// Every member for DescribeGroups and admin queries, with its metadata for the selected
    /// protocol when `with_metadata`.
    pub(crate) fn describe_members(&self, with_metadata: bool) -> Vec<(MemberDescription, Bytes)> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| {
                let description = MemberDescription {
                    member_id: m.id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    assignment: m.assignment.clone(),
                };
                let metadata = if with_metadata {
                    m.metadata(protocol)
                } else {
                    Bytes::new()
                };
                (description, metadata)
            })
            .collect()
    }

    /// Records that rebuild this group's persisted state: its last metadata and its offsets.
    pub(crate) fn snapshot(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self
            .persisted
            .iter()
            .map(|value| Record::group(&self.id, Some(value)))
            .collect();
        for ((topic, partition), offset) in &self.offsets {
            records.push(Record::offset(&self.id, topic, *partition, Some(offset)));
        }
        records
    }

    /// Rebuilds the membership from a persisted value (Kafka's `GroupMetadata.loadGroup`): a
    /// group with members comes back Stable, its members' sessions start now.
    pub(crate) fn load(&mut self, value: GroupValue, now_ms: u64) {
        let offsets = std::mem::take(&mut self.offsets);
        let pending_txn_offsets = std::mem::take(&mut self.pending_txn_offsets);
        *self = Group::new(self.id.clone(), now_ms);
        self.offsets = offsets;
        self.pending_txn_offsets = pending_txn_offsets;
        self.generation_id = value.generation_id;
        self.protocol_type = Some(value.protocol_type.clone()).filter(|t| !t.is_empty());
        self.protocol_name = value.protocol_name.clone();
        self.state_timestamp_ms = u64::try_from(value.state_timestamp_ms).unwrap_or(0);
        for m in &value.members {
            let protocol = value.protocol_name.clone().unwrap_or_default();
            let session_timeout_ms = m.session_timeout_ms;
            self.add_member(Member {
                id: m.member_id.clone(),
                instance_id: m.group_instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                session_timeout_ms,
                protocol_type: value.protocol_type.clone(),
                protocols: vec![(protocol, m.subscription.clone())],
                assignment: m.assignment.clone(),
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                heartbeat_deadline_ms: Some(
                    now_ms.saturating_add(u64::try_from(session_timeout_ms.max(0)).unwrap_or(0)),
                ),
            });
        }
        // add_member made the first member leader; the log knows the real one.
        self.leader_id = value.leader_id.clone().filter(|_| !self.members.is_empty());
        self.state = if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        self.persisted = Some(value);
    }

    /// Forgets the membership after a group tombstone; offsets have their own records.
    pub(crate) fn unload(&mut self, now_ms: u64) {
        let offsets = std::mem::take(&mut self.offsets);
        let pending_txn_offsets = std::mem::take(&mut self.pending_txn_offsets);
        *self = Group::new(self.id.clone(), now_ms);
        self.offsets = offsets;
        self.pending_txn_offsets = pending_txn_offsets;
    }

    /// Marks the group deleted and returns its tombstones: every offset, then the group.
    pub(crate) fn delete(&mut self, now_ms: u64) -> Vec<Record> {
        self.transition(GroupState::Dead, now_ms);
        let mut records: Vec<Record> = self
            .offsets
            .keys()
            .map(|(topic, partition)| Record::offset(&self.id, topic, *partition, None))
            .collect();
        records.push(Record::group(&self.id, None));
        self.offsets.clear();
        self.pending_txn_offsets.clear();
        records
    }

    /// Panics when a counter or index disagrees with the data it summarises, or the state
    /// disagrees with the membership. Checked after every change in debug builds (tests).
    #[cfg(debug_assertions)]
    pub(crate) fn assert_invariants(&self) {
        self.assert_counters();
        self.assert_state();
    }

    #[cfg(debug_assertions)]
    fn assert_counters(&self) {
        let awaiting = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_some())
            .count();
        assert_eq!(awaiting, self.awaiting_join_count, "awaiting join count");
        let mut support: HashMap<StrBytes, usize> = HashMap::new();
        for m in self.members.values() {
            for (name, _) in &m.protocols {
                *support.entry(name.clone()).or_default() += 1;
            }
        }
        assert_eq!(support, self.protocol_support, "protocol support counts");
        let statics = self.members.values().filter(|m| m.is_static()).count();
        assert_eq!(statics, self.static_members.len(), "static member count");
        for (instance_id, member_id) in &self.static_members {
            let member = self
                .members
                .get(member_id.as_bytes())
                .expect("static member exists");
            assert_eq!(
                member.instance_id.as_ref(),
                Some(instance_id),
                "static mapping"
            );
        }
        for (id, m) in &self.members {
            assert_eq!(id, &m.id, "member key");
            assert!(
                !self.pending_members.contains_key(id.as_bytes()),
                "member also pending"
            );
        }
        match &self.leader_id {
            Some(leader) => assert!(
                self.members.contains_key(leader.as_bytes()),
                "leader is a member"
            ),
            None => assert!(self.members.is_empty(), "members without leader"),
        }
        for id in &self.pending_sync {
            assert!(
                self.members.contains_key(id.as_bytes()),
                "pending sync is a member"
            );
        }
    }

    #[cfg(debug_assertions)]
    fn assert_state(&self) {
        let awaiting = self.awaiting_join_count;
        let rebalancing = self.state == GroupState::PreparingRebalance;
        assert_eq!(
            rebalancing,
            self.join_timer.is_some(),
            "join timer iff rebalancing"
        );
        if self.state == GroupState::Empty {
            assert!(self.members.is_empty(), "empty group has no members");
        }
        if matches!(
            self.state,
            GroupState::Stable | GroupState::CompletingRebalance
        ) {
            assert!(!self.members.is_empty(), "stable group has members");
            assert!(self.protocol_name.is_some(), "stable group has a protocol");
            assert_eq!(awaiting, 0, "no member awaits join outside a rebalance");
        }
        if self.state != GroupState::CompletingRebalance {
            let syncing = self
                .members
                .values()
                .filter(|m| m.awaiting_sync.is_some())
                .count();
            assert_eq!(syncing, 0, "sync parked only while completing a rebalance");
        }
    }
}
