//! The request handlers: InitProducerId (with a transactional id), AddPartitionsToTxn,
//! AddOffsetsToTxn, EndTxn and TxnOffsetCommit, each answering exactly as Kafka's
//! `TransactionCoordinator` (and `KafkaApis` around it) answers.
//!
//! One difference in timing, none in answers: Kafka holds a "pending" state while a log append is
//! in flight and answers CONCURRENT_TRANSACTIONS to requests that arrive meanwhile. ferry applies
//! a transition at once and holds its responses until the records are durable (see
//! [`Output`]), so a request is answered against the state it follows. The one pending state
//! clients can observe in Kafka, the markers being written after EndTxn, is PrepareCommit /
//! PrepareAbort here, and gets CONCURRENT_TRANSACTIONS as in Kafka.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use tracing::info;

use crate::api::{
    GroupMember, GroupOffsets, MemberCheck, Output, PartitionCheck, ProducerIdSource, Request,
    RequestContext, Response, TxnOffset,
};
use crate::coordinator::{fenced, ms, TxnCoordinator};
use crate::record::{Record, StagedOffset, TopicPartition, TxnValue};
use crate::state::{epoch_exhausted, TxnState};

/// First versions that answer PRODUCER_FENCED rather than INVALID_PRODUCER_EPOCH (KIP-588).
const INIT_PRODUCER_ID_FENCED_VERSION: i16 = 4;
const ADD_PARTITIONS_FENCED_VERSION: i16 = 2;
const ADD_OFFSETS_FENCED_VERSION: i16 = 2;
const END_TXN_FENCED_VERSION: i16 = 2;
const TXN_OFFSET_COMMIT_FENCED_VERSION: i16 = 3;
/// First TxnOffsetCommit version with the group generation, member id and instance id.
const KIP_447_VERSION: i16 = 3;

/// A producer id and epoch a KIP-360 InitProducerId (v3+) says its producer holds.
type Expected = Option<(i64, i16)>;

impl TxnCoordinator {
    /// One entry point for every transaction request.
    pub fn handle(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        request: Request,
        ids: &mut dyn ProducerIdSource,
        check: PartitionCheck,
        members: MemberCheck,
    ) -> Output {
        match request {
            Request::InitProducerId(r) => self.handle_init_producer_id(now_ms, ctx, r, ids),
            Request::AddPartitionsToTxn(r) => {
                self.handle_add_partitions_to_txn(now_ms, ctx, r, check)
            }
            Request::AddOffsetsToTxn(r) => self.handle_add_offsets_to_txn(now_ms, ctx, r),
            Request::EndTxn(r) => self.handle_end_txn(now_ms, ctx, r),
            Request::TxnOffsetCommit(r) => {
                self.handle_txn_offset_commit(now_ms, ctx, r, check, members)
            }
            Request::ListTransactions(r) => self.handle_list_transactions(now_ms, ctx, r),
            Request::DescribeTransactions(r) => self.handle_describe_transactions(now_ms, ctx, r),
        }
    }

    /// InitProducerId v0–4 with a transactional id: a new or bumped epoch (fencing the previous
    /// producer), a new producer id when the epochs are used up, KIP-360 recovery from v3. An
    /// ongoing transaction of the previous producer is aborted first; the answer is then
    /// CONCURRENT_TRANSACTIONS and the client retries.
    pub fn handle_init_producer_id(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: InitProducerIdRequest,
        ids: &mut dyn ProducerIdSource,
    ) -> Output {
        self.assert_recovered();
        let mut out = Output::default();
        let mut r = InitProducerIdResponse::default();
        match self.init_producer_id(now_ms, &req, ids, &mut out) {
            Ok((producer_id, producer_epoch)) => {
                r.producer_id = producer_id.into();
                r.producer_epoch = producer_epoch;
            }
            Err(error) => {
                let error = match error {
                    ResponseError::ProducerFenced => {
                        fenced(ctx.api_version, INIT_PRODUCER_ID_FENCED_VERSION)
                    }
                    other => other,
                };
                r.error_code = error.code();
                r.producer_id = (-1).into();
                r.producer_epoch = -1;
            }
        }
        out.respond(ctx.token, Response::InitProducerId(r));
        out
    }

    fn init_producer_id(
        &mut self,
        now_ms: u64,
        req: &InitProducerIdRequest,
        ids: &mut dyn ProducerIdSource,
        out: &mut Output,
    ) -> Result<(i64, i16), ResponseError> {
        // KafkaApis: a producer id and an epoch come together or not at all.
        let expected = match (req.producer_id.0, req.producer_epoch) {
            (-1, -1) => None,
            (-1, _) | (_, -1) => return Err(ResponseError::InvalidRequest),
            (producer_id, epoch) => Some((producer_id, epoch)),
        };
        let id = match &req.transactional_id {
            Some(id) if !id.0.is_empty() => owned(&id.0),
            // A null id is a non-transactional InitProducerId: the broker's, not ours.
            _ => return Err(ResponseError::InvalidRequest),
        };
        let timeout_ms = req.transaction_timeout_ms;
        if timeout_ms <= 0 || timeout_ms > self.config.transaction_max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        if !self.txns.contains_key(id.as_bytes()) {
            if !self.has_room() {
                return Err(ResponseError::PolicyViolation);
            }
            // Not persisted as such: the epoch bump below always succeeds on a new id and
            // persists the result.
            let created = TxnValue {
                producer_id: ids.next(),
                last_producer_id: -1,
                producer_epoch: -1,
                last_producer_epoch: -1,
                timeout_ms,
                state: TxnState::Empty,
                start_ms: -1,
                last_update_ms: ms(now_ms),
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
            };
            self.txns.insert(id.clone(), created);
        }
        let result = self.init_transition(now_ms, &id, expected, timeout_ms, ids, out);
        self.settle(&id);
        result
    }

    /// Kafka's `prepareInitProducerIdTransit`.
    fn init_transition(
        &mut self,
        now_ms: u64,
        id: &StrBytes,
        expected: Expected,
        timeout_ms: i32,
        ids: &mut dyn ProducerIdSource,
        out: &mut Output,
    ) -> Result<(i64, i16), ResponseError> {
        let v = &self.txns[id.as_bytes()];
        // Markers in flight are Kafka's pending transition, checked before anything else.
        if v.state.is_completing() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if let Some((producer_id, epoch)) = expected {
            // The metadata was just created; or the producer id is the current one (its epoch is
            // checked below); or it is the previous one, rotated away from an exhausted epoch
            // (a retry whose answer was lost).
            let valid = v.producer_epoch == -1
                || producer_id == v.producer_id
                || (producer_id == v.last_producer_id && epoch_exhausted(epoch));
            if !valid {
                return Err(ResponseError::ProducerFenced);
            }
        }
        if v.state == TxnState::Ongoing {
            // The epoch bumped here is never returned: the client retries after the abort, which
            // bumps again (and rotates the producer id if the fence used up the epochs).
            info!(transactional_id = %id, producer_id = v.producer_id, "fencing the previous producer, aborting its transaction");
            self.fence_and_abort(now_ms, id, out);
            return Err(ResponseError::ConcurrentTransactions);
        }
        let rotate = epoch_exhausted(v.producer_epoch)
            && expected.is_none_or(|(_, epoch)| epoch == v.producer_epoch);
        let (producer_id, last_producer_id, epoch, last_epoch) = if rotate {
            let last_epoch = if expected.is_some() {
                v.producer_epoch
            } else {
                -1
            };
            (ids.next(), v.producer_id, 0, last_epoch)
        } else {
            let (epoch, last_epoch) = match expected {
                None => (v.producer_epoch + 1, -1),
                // The producer continues after an error and nobody else took over: bump.
                Some((_, e)) if v.producer_epoch == -1 || e == v.producer_epoch => {
                    (v.producer_epoch + 1, v.producer_epoch)
                }
                // A retry of a bump whose answer was lost: the same epoch again.
                Some((_, e)) if e == v.last_producer_epoch => {
                    (v.producer_epoch, v.last_producer_epoch)
                }
                // Kafka reaches this with an exhausted epoch too, and fails there with an
                // internal error; PRODUCER_FENCED is what its comments intend.
                Some(_) => return Err(ResponseError::ProducerFenced),
            };
            (v.producer_id, v.producer_id, epoch, last_epoch)
        };
        let v = self
            .txns
            .get_mut(id.as_bytes())
            .expect("transaction exists");
        *v = TxnValue {
            producer_id,
            last_producer_id,
            producer_epoch: epoch,
            last_producer_epoch: last_epoch,
            timeout_ms,
            state: TxnState::Empty,
            start_ms: -1,
            last_update_ms: ms(now_ms),
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
        };
        self.persist(id, out);
        Ok((producer_id, epoch))
    }

    /// AddPartitionsToTxn v0–3. Partitions `check` refuses (unknown, or a topic the client may
    /// not write) fail the whole request (the others are OPERATION_NOT_ATTEMPTED); otherwise
    /// every partition gets the same answer.
    pub fn handle_add_partitions_to_txn(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: AddPartitionsToTxnRequest,
        check: PartitionCheck,
    ) -> Output {
        self.assert_recovered();
        let mut out = Output::default();
        let mut seen = BTreeSet::new();
        let mut wanted: Vec<TopicPartition> = Vec::new();
        for topic in &req.v3_and_below_topics {
            for &partition in &topic.partitions {
                if seen.insert((topic.name.0.clone(), partition)) {
                    wanted.push((owned(&topic.name.0), partition));
                }
            }
        }
        let any_refused = wanted.iter().any(|(t, p)| check(t, *p).is_err());
        let answers: Vec<(TopicPartition, Option<ResponseError>)> = if any_refused {
            let answer = |(t, p): &TopicPartition| {
                check(t, *p)
                    .err()
                    .unwrap_or(ResponseError::OperationNotAttempted)
            };
            wanted
                .into_iter()
                .map(|tp| (tp.clone(), Some(answer(&tp))))
                .collect()
        } else {
            let error = self
                .add_to_txn(
                    now_ms,
                    &req.v3_and_below_transactional_id.0,
                    (
                        req.v3_and_below_producer_id.0,
                        req.v3_and_below_producer_epoch,
                    ),
                    &wanted,
                    None,
                    &mut out,
                )
                .err()
                .map(|e| fenced_as(e, ctx.api_version, ADD_PARTITIONS_FENCED_VERSION));
            wanted.into_iter().map(|tp| (tp, error)).collect()
        };
        let mut r = AddPartitionsToTxnResponse::default();
        for ((topic, partition), error) in answers {
            let name = TopicName(topic);
            let position = r
                .results_by_topic_v3_and_below
                .iter()
                .position(|t| t.name == name);
            let t = match position {
                Some(i) => &mut r.results_by_topic_v3_and_below[i],
                None => {
                    let mut t = AddPartitionsToTxnTopicResult::default();
                    t.name = name;
                    r.results_by_topic_v3_and_below.push(t);
                    r.results_by_topic_v3_and_below
                        .last_mut()
                        .expect("just pushed")
                }
            };
            let mut p = AddPartitionsToTxnPartitionResult::default();
            p.partition_index = partition;
            p.partition_error_code = error.map_or(0, |e| e.code());
            t.results_by_partition.push(p);
        }
        out.respond(ctx.token, Response::AddPartitionsToTxn(r));
        out
    }

    /// AddOffsetsToTxn v0–3: the group's offsets become part of the transaction (Kafka adds the
    /// group's `__consumer_offsets` partition; ferry records the group id).
    pub fn handle_add_offsets_to_txn(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: AddOffsetsToTxnRequest,
    ) -> Output {
        self.assert_recovered();
        let mut out = Output::default();
        let error = self
            .add_to_txn(
                now_ms,
                &req.transactional_id.0,
                (req.producer_id.0, req.producer_epoch),
                &[],
                Some(owned(&req.group_id.0)),
                &mut out,
            )
            .err()
            .map(|e| fenced_as(e, ctx.api_version, ADD_OFFSETS_FENCED_VERSION));
        let mut r = AddOffsetsToTxnResponse::default();
        r.error_code = error.map_or(0, |e| e.code());
        out.respond(ctx.token, Response::AddOffsetsToTxn(r));
        out
    }

    /// Kafka's `handleAddPartitionsToTransaction`, for partitions and for a group.
    fn add_to_txn(
        &mut self,
        now_ms: u64,
        transactional_id: &str,
        (producer_id, producer_epoch): (i64, i16),
        partitions: &[TopicPartition],
        group: Option<StrBytes>,
        out: &mut Output,
    ) -> Result<(), ResponseError> {
        if transactional_id.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let Some((id, v)) = self.txns.get_key_value(transactional_id.as_bytes()) else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        if v.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if v.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if v.state.is_completing() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let new_partitions: Vec<&TopicPartition> = partitions
            .iter()
            .filter(|tp| !v.partitions.contains(*tp))
            .collect();
        let new_group = group.filter(|g| !v.groups.contains(g));
        if v.state == TxnState::Ongoing && new_partitions.is_empty() && new_group.is_none() {
            // Kafka's shortcut: already part of the transaction, nothing to write.
            return Ok(());
        }
        let held = v.partitions.len() + v.groups.len();
        if held + new_partitions.len() + usize::from(new_group.is_some())
            > self.config.transaction_partitions_max
        {
            return Err(ResponseError::PolicyViolation);
        }
        let id = id.clone();
        let new_partitions: Vec<TopicPartition> = new_partitions.into_iter().cloned().collect();
        let v = self
            .txns
            .get_mut(id.as_bytes())
            .expect("transaction exists");
        if v.state != TxnState::Ongoing {
            v.start_ms = ms(now_ms);
            v.state = TxnState::Ongoing;
            self.counters.begun += 1;
        }
        v.partitions.extend(new_partitions);
        v.groups.extend(new_group);
        v.last_update_ms = ms(now_ms);
        self.persist(&id, out);
        self.settle(&id);
        Ok(())
    }

    /// EndTxn v0–3. Kafka answers once the PrepareCommit / PrepareAbort record is written and
    /// writes the markers afterwards; ferry holds a successful answer until the markers are
    /// written too ([`Output::markers`], then [`markers_written`](Self::markers_written)). The
    /// answers say the same, but the producer's next transaction then never meets the markers
    /// still in flight: librdkafka answers CONCURRENT_TRANSACTIONS on its first
    /// AddPartitionsToTxn with a 20 ms back-off, which cost every short transaction that much.
    pub fn handle_end_txn(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: EndTxnRequest,
    ) -> Output {
        self.assert_recovered();
        let mut out = Output::default();
        let error = self
            .end_txn(now_ms, &req, &mut out)
            .err()
            .map(|e| fenced_as(e, ctx.api_version, END_TXN_FENCED_VERSION));
        let mut r = EndTxnResponse::default();
        r.error_code = error.map_or(0, |e| e.code());
        let id = &req.transactional_id.0;
        let completing = self
            .txns
            .get(id.as_bytes())
            .is_some_and(|v| v.state.is_completing());
        if error.is_none() && completing {
            self.ending
                .entry(id.clone())
                .or_default()
                .push((ctx.token, Response::EndTxn(r)));
        } else {
            out.respond(ctx.token, Response::EndTxn(r));
        }
        out
    }

    fn end_txn(
        &mut self,
        now_ms: u64,
        req: &EndTxnRequest,
        out: &mut Output,
    ) -> Result<(), ResponseError> {
        let commit = req.committed;
        if req.transactional_id.0.is_empty() {
            return Err(ResponseError::InvalidRequest);
        }
        let Some((id, v)) = self.txns.get_key_value(req.transactional_id.0.as_bytes()) else {
            return Err(ResponseError::InvalidProducerIdMapping);
        };
        if v.producer_id != req.producer_id.0 {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        // A zombie (an older epoch) and a future epoch alike.
        if v.producer_epoch != req.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        match v.state {
            TxnState::Ongoing => {
                let id = id.clone();
                self.prepare_end(now_ms, &id, commit, out);
                self.settle(&id);
                Ok(())
            }
            // A retry whose answer was lost.
            TxnState::CompleteCommit if commit => Ok(()),
            TxnState::CompleteAbort if !commit => Ok(()),
            // Kafka's markers are a pending transition: CONCURRENT_TRANSACTIONS whatever the
            // result asked for.
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                Err(ResponseError::InvalidTxnState)
            }
        }
    }

    /// TxnOffsetCommit v0–3: stages the offsets in the transaction (durably, in the transaction
    /// log), to be committed to the group by the commit markers.
    ///
    /// The transaction is checked first, as Kafka's transaction verification does (KIP-890): the
    /// producer must own the transactional id with this epoch, and the group must have been added
    /// with AddOffsetsToTxn; otherwise INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED
    /// (INVALID_PRODUCER_EPOCH before v3), CONCURRENT_TRANSACTIONS or INVALID_TXN_STATE. Then
    /// `members`, the group coordinator, checks the generation, member id and instance id of v3
    /// (KIP-447), so a consumer that lost its partitions in a rebalance cannot commit offsets for
    /// them; then the metadata size. Partitions `check` refuses fail before all of it, as in Kafka.
    pub fn handle_txn_offset_commit(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: TxnOffsetCommitRequest,
        check: PartitionCheck,
        members: MemberCheck,
    ) -> Output {
        self.assert_recovered();
        let mut out = Output::default();
        let group_id = owned(&req.group_id.0);
        let producer_id = req.producer_id.0;
        let txn_error = if group_id.is_empty() {
            Some(ResponseError::InvalidGroupId)
        } else {
            self.check_offset_commit(
                &req.transactional_id.0,
                producer_id,
                req.producer_epoch,
                &group_id,
            )
            .err()
            .map(|e| fenced_as(e, ctx.api_version, TXN_OFFSET_COMMIT_FENCED_VERSION))
        };
        let request_error = txn_error.or_else(|| members(&group_member(ctx, &req)));
        let id = owned(&req.transactional_id.0);
        let mut staged = Vec::new();
        let mut r = TxnOffsetCommitResponse::default();
        for topic in &req.topics {
            let mut t = TxnOffsetCommitResponseTopic::default();
            t.name = topic.name.clone();
            for p in &topic.partitions {
                let metadata = p
                    .committed_metadata
                    .as_ref()
                    .map_or_else(StrBytes::new, owned);
                let error = if let Err(refused) = check(&topic.name.0, p.partition_index) {
                    Some(refused)
                } else if request_error.is_some() {
                    request_error
                } else if metadata.len() > self.config.offset_metadata_max_bytes {
                    Some(ResponseError::OffsetMetadataTooLarge)
                } else {
                    let key = (group_id.clone(), owned(&topic.name.0), p.partition_index);
                    let offset = StagedOffset {
                        producer_id,
                        offset: p.committed_offset,
                        leader_epoch: p.committed_leader_epoch,
                        metadata,
                        commit_timestamp_ms: ms(now_ms),
                    };
                    self.stage_offset(&id, key, offset, &mut out, &mut staged)
                };
                let mut answer = TxnOffsetCommitResponsePartition::default();
                answer.partition_index = p.partition_index;
                answer.error_code = error.map_or(0, |e| e.code());
                t.partitions.push(answer);
            }
            r.topics.push(t);
        }
        if !staged.is_empty() {
            out.offsets_to_stage.push(GroupOffsets {
                group_id,
                producer_id,
                offsets: staged,
            });
        }
        out.respond(ctx.token, Response::TxnOffsetCommit(r));
        out
    }

    fn check_offset_commit(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &StrBytes,
    ) -> Result<(), ResponseError> {
        let v = self
            .txns
            .get(transactional_id.as_bytes())
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if v.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if v.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if v.state.is_completing() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if v.state != TxnState::Ongoing || !v.groups.contains(group_id) {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }

    /// Stages one offset (the transaction was checked); POLICY_VIOLATION past the limit.
    fn stage_offset(
        &mut self,
        id: &StrBytes,
        key: (StrBytes, StrBytes, i32),
        offset: StagedOffset,
        out: &mut Output,
        staged: &mut Vec<TxnOffset>,
    ) -> Option<ResponseError> {
        let limit = self.config.transaction_offsets_max;
        let offsets = self.offsets.entry(id.clone()).or_default();
        if !offsets.contains_key(&key) && offsets.len() >= limit {
            if offsets.is_empty() {
                self.offsets.remove(id.as_bytes());
            }
            return Some(ResponseError::PolicyViolation);
        }
        let (group, topic, partition) = &key;
        out.records
            .push(Record::offset(id, group, topic, *partition, Some(&offset)));
        staged.push(TxnOffset {
            topic: topic.clone(),
            partition: *partition,
            offset: offset.offset,
            leader_epoch: offset.leader_epoch,
            metadata: offset.metadata.clone(),
            commit_timestamp_ms: offset.commit_timestamp_ms,
        });
        offsets.insert(key, offset);
        None
    }
}

/// The member fields of a TxnOffsetCommit; v0–2 carry none (KIP-447 came with v3).
fn group_member<'a>(ctx: &RequestContext, req: &'a TxnOffsetCommitRequest) -> GroupMember<'a> {
    let v3 = ctx.api_version >= KIP_447_VERSION;
    GroupMember {
        group_id: &req.group_id.0,
        member_id: if v3 { &req.member_id } else { "" },
        group_instance_id: req.group_instance_id.as_deref().filter(|_| v3),
        generation_id: if v3 { req.generation_id } else { -1 },
    }
}

fn fenced_as(error: ResponseError, version: i16, first_version: i16) -> ResponseError {
    match error {
        ResponseError::ProducerFenced => fenced(version, first_version),
        other => other,
    }
}

/// A copy that does not pin the request buffer the string was decoded from.
pub(crate) fn owned(s: &StrBytes) -> StrBytes {
    StrBytes::from_string(s.to_string())
}
