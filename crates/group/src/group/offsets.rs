//! Committed offsets of one group: OffsetCommit validation against the membership, storage,
//! OffsetFetch lookups and the transactional (pending) offsets hook.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_request::OffsetCommitRequestTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_delete_request::OffsetDeleteRequestTopic;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::protocol::StrBytes;

use super::{owned, Env, Group, GroupState, TopicPartition};
use crate::record::{CommittedOffset, Record};

/// Who commits: the member fields of an OffsetCommit request.
pub(crate) struct Committer<'a> {
    pub(crate) member_id: &'a str,
    pub(crate) instance_id: Option<&'a str>,
    pub(crate) generation_id: i32,
}

/// One partition of an OffsetFetch answer.
pub(crate) struct Fetched {
    pub(crate) offset: i64,
    pub(crate) leader_epoch: i32,
    pub(crate) metadata: StrBytes,
    pub(crate) error: Option<ResponseError>,
}

impl Fetched {
    /// Kafka's answer for a partition without a committed offset.
    pub(crate) fn none() -> Fetched {
        Fetched {
            offset: -1,
            leader_epoch: -1,
            metadata: StrBytes::new(),
            error: None,
        }
    }
}

/// Every partition of `topics` answered with one error.
pub(crate) fn commit_error(
    topics: &[OffsetCommitRequestTopic],
    error: Option<ResponseError>,
) -> Vec<OffsetCommitResponseTopic> {
    topics
        .iter()
        .map(|topic| {
            let mut out = OffsetCommitResponseTopic::default();
            out.name = topic.name.clone();
            out.partitions = topic
                .partitions
                .iter()
                .map(|p| partition_answer(p.partition_index, error))
                .collect();
            out
        })
        .collect()
}

fn partition_answer(partition: i32, error: Option<ResponseError>) -> OffsetCommitResponsePartition {
    let mut out = OffsetCommitResponsePartition::default();
    out.partition_index = partition;
    out.error_code = error.map_or(0, |e| e.code());
    out
}

impl Group {
    /// Kafka's `validateOffsetCommit`, for OffsetCommit and (`transactional`) TxnOffsetCommit:
    /// a commit that names a member, an instance or a generation must come from the current
    /// member of the current generation (KIP-447 fences a zombie's transactional commit the same
    /// way). A commit naming none of them is a "simple" commit, allowed into a group with members
    /// only when transactional, because TxnOffsetCommit before v3 carries no member fields.
    pub(crate) fn validate_offset_commit(
        &self,
        who: &Committer,
        transactional: bool,
    ) -> Option<ResponseError> {
        if self.state == GroupState::Dead {
            return Some(ResponseError::CoordinatorNotAvailable);
        }
        let is_member_commit =
            who.generation_id >= 0 || !who.member_id.is_empty() || who.instance_id.is_some();
        if is_member_commit {
            if let Some(error) = self.validate_current_member(who.member_id, who.instance_id) {
                return Some(error);
            }
            if who.generation_id != self.generation_id {
                return Some(ResponseError::IllegalGeneration);
            }
        } else if !transactional && self.state != GroupState::Empty {
            return Some(ResponseError::UnknownMemberId);
        }
        None
    }

    /// Kafka's `doCommitOffsets`: validates, then stores every partition whose metadata fits,
    /// returning the answers and pushing one record per stored offset.
    pub(crate) fn commit_offsets(
        &mut self,
        env: &mut Env,
        who: &Committer,
        topics: &[OffsetCommitRequestTopic],
    ) -> Vec<OffsetCommitResponseTopic> {
        if let Some(error) = self.validate_offset_commit(who, false) {
            return commit_error(topics, Some(error));
        }
        if self.state == GroupState::CompletingRebalance {
            // The member holds the new generation but no assignment yet (Kafka's
            // `doCommitOffsets`; its transactional twin has no such check).
            return commit_error(topics, Some(ResponseError::RebalanceInProgress));
        }
        if matches!(
            self.state,
            GroupState::Stable | GroupState::PreparingRebalance
        ) {
            // A commit proves the member alive. During PreparingRebalance the commit is still
            // accepted; the next heartbeat tells the member to rejoin.
            self.reschedule_heartbeat(env, who.member_id);
        }
        let commit_timestamp_ms = i64::try_from(env.now_ms).unwrap_or(i64::MAX);
        let mut answers = Vec::with_capacity(topics.len());
        for topic in topics {
            let mut answer = OffsetCommitResponseTopic::default();
            answer.name = topic.name.clone();
            for p in &topic.partitions {
                let metadata = p.committed_metadata.as_ref().map(owned).unwrap_or_default();
                if metadata.len() > env.config.offset_metadata_max_bytes {
                    let error = Some(ResponseError::OffsetMetadataTooLarge);
                    answer
                        .partitions
                        .push(partition_answer(p.partition_index, error));
                    continue;
                }
                let value = CommittedOffset {
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata,
                    commit_timestamp_ms,
                };
                let record = Record::offset(&self.id, &topic.name, p.partition_index, Some(&value));
                env.out.records.push(record);
                self.offsets
                    .insert((owned(&topic.name), p.partition_index), value);
                answer
                    .partitions
                    .push(partition_answer(p.partition_index, None));
            }
            answers.push(answer);
        }
        answers
    }

    /// Kafka's `GroupMetadataManager.getOffsets` for one partition.
    pub(crate) fn fetch_offset(&self, tp: &TopicPartition, require_stable: bool) -> Fetched {
        if self.state == GroupState::Dead {
            return Fetched::none();
        }
        if require_stable
            && self
                .pending_txn_offsets
                .values()
                .any(|p| p.contains_key(tp))
        {
            let mut fetched = Fetched::none();
            fetched.error = Some(ResponseError::UnstableOffsetCommit);
            return fetched;
        }
        match self.offsets.get(tp) {
            None => Fetched::none(),
            Some(o) => Fetched {
                offset: o.offset,
                leader_epoch: o.leader_epoch,
                metadata: o.metadata.clone(),
                error: None,
            },
        }
    }

    /// Stages a transaction's offsets: invisible to OffsetFetch, and answered
    /// UNSTABLE_OFFSET_COMMIT under `require_stable`, until the transaction ends.
    pub(crate) fn stage_txn_offsets(
        &mut self,
        producer_id: i64,
        offsets: impl IntoIterator<Item = (TopicPartition, CommittedOffset)>,
    ) {
        let staged = self.pending_txn_offsets.entry(producer_id).or_default();
        for ((topic, partition), offset) in offsets {
            staged.insert((owned(&topic), partition), offset);
        }
    }

    /// Ends a transaction's offsets: a commit stores them (with records), an abort drops them.
    pub(crate) fn complete_txn_offsets(&mut self, producer_id: i64, commit: bool) -> Vec<Record> {
        let Some(staged) = self.pending_txn_offsets.remove(&producer_id) else {
            return Vec::new();
        };
        if !commit {
            return Vec::new();
        }
        let mut records = Vec::with_capacity(staged.len());
        for ((topic, partition), offset) in staged {
            records.push(Record::offset(&self.id, &topic, partition, Some(&offset)));
            self.offsets.insert((topic, partition), offset);
        }
        records
    }

    /// Kafka's `GroupMetadata.removeExpiredOffsets` (KIP-211): removes the offsets whose
    /// retention has run out and returns their tombstones. The clock starts when the group became
    /// Empty for a group that had members, and at each commit for a group that never had any
    /// (offsets stored by standalone consumers). Offsets staged by an open transaction stay.
    /// Kafka also expires, in a Stable group, the offsets of topics no member subscribes to;
    /// that needs the members' subscriptions, which this crate never decodes, so here the
    /// offsets of a group with members never expire.
    pub(crate) fn expire_offsets(&mut self, now_ms: u64, retention_ms: u64) -> Vec<Record> {
        let became_empty_ms = match (self.protocol_type.is_some(), self.state) {
            (true, GroupState::Empty) => Some(self.state_timestamp_ms),
            (false, _) => None,
            (true, _) => return Vec::new(),
        };
        let staged = &self.pending_txn_offsets;
        remove_offsets(&self.id, &mut self.offsets, |tp, offset| {
            let base_ms = became_empty_ms
                .unwrap_or_else(|| u64::try_from(offset.commit_timestamp_ms).unwrap_or(0));
            now_ms.saturating_sub(base_ms) >= retention_ms
                && !staged.values().any(|p| p.contains_key(tp))
        })
    }

    /// Kafka's OffsetDelete for this group (see `GroupCoordinator::handle_offset_delete`): the
    /// answers per partition, the tombstones pushed to the output.
    pub(crate) fn delete_offsets(
        &mut self,
        env: &mut Env,
        topics: &[OffsetDeleteRequestTopic],
    ) -> Result<Vec<OffsetDeleteResponseTopic>, ResponseError> {
        // Which topics the members consume; None when a member's subscription cannot be read,
        // which protects every topic.
        let subscribed = match self.state {
            GroupState::Dead => return Err(ResponseError::GroupIdNotFound),
            GroupState::Empty => Some(Default::default()),
            _ if self.is_consumer_group() => self.subscribed_topics(),
            _ => return Err(ResponseError::NonEmptyGroup),
        };
        let in_use = |topic: &str| subscribed.as_ref().is_none_or(|s| s.contains(topic));
        let mut answers = Vec::with_capacity(topics.len());
        let mut doomed = std::collections::BTreeSet::new();
        for topic in topics {
            let error =
                in_use(topic.name.as_str()).then_some(ResponseError::GroupSubscribedToTopic);
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    if error.is_none() {
                        doomed.insert((topic.name.0.clone(), p.partition_index));
                    }
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error.map_or(0, |e| e.code()))
                })
                .collect();
            answers.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(topic.name.clone())
                    .with_partitions(partitions),
            );
        }
        for staged in self.pending_txn_offsets.values_mut() {
            staged.retain(|tp, _| !doomed.contains(tp));
        }
        let tombstones = remove_offsets(&self.id, &mut self.offsets, |tp, _| doomed.contains(tp));
        if !tombstones.is_empty() {
            tracing::info!(group = %self.id, offsets = tombstones.len(), "offsets deleted");
        }
        env.out.records.extend(tombstones);
        Ok(answers)
    }

    /// Removes every offset (committed or staged by a transaction) of `topic`, which was deleted,
    /// and returns the tombstones of the committed ones (Kafka's `removeOffsets` for deleted
    /// partitions).
    pub(crate) fn remove_topic_offsets(&mut self, topic: &str) -> Vec<Record> {
        for staged in self.pending_txn_offsets.values_mut() {
            staged.retain(|(t, _), _| t.as_str() != topic);
        }
        remove_offsets(&self.id, &mut self.offsets, |(t, _), _| t.as_str() == topic)
    }

    /// Kafka's `cleanupGroupMetadata` deletes an Empty group without offsets at each sweep
    /// (here only once no member id handed out with MEMBER_ID_REQUIRED is still pending).
    pub(crate) fn is_expired(&self) -> bool {
        self.state == GroupState::Empty
            && self.offsets.is_empty()
            && self.pending_members.is_empty()
            && self.pending_txn_offsets.is_empty()
    }

    /// Replay of one offset record.
    pub(crate) fn load_offset(&mut self, tp: TopicPartition, value: Option<CommittedOffset>) {
        match value {
            Some(value) => {
                self.offsets.insert(tp, value);
            }
            None => {
                self.offsets.remove(&tp);
            }
        }
    }
}

/// Removes from `offsets` of group `id` the committed offsets `doomed` picks and returns their
/// tombstones.
fn remove_offsets(
    id: &StrBytes,
    offsets: &mut BTreeMap<TopicPartition, CommittedOffset>,
    doomed: impl Fn(&TopicPartition, &CommittedOffset) -> bool,
) -> Vec<Record> {
    let mut tombstones = Vec::new();
    offsets.retain(|tp, offset| {
        let remove = doomed(tp, offset);
        if remove {
            tombstones.push(Record::offset(id, &tp.0, tp.1, None));
        }
        !remove
    });
    tombstones
}
