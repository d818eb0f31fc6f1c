//! The glue between the broker and its two coordinators (`group`, `txn`): their requests and
//! timeouts, their records appended to the internal logs under an append ticket, and their
//! answers, to the request at hand or routed to earlier ones (`Broker::take_routed`), released
//! once that ticket is fsynced. The transaction pipeline's steps after a sync live here too:
//! markers are written only once the Prepare record is durable, and a transaction is completed
//! only once its markers are.
//!
//! Group and transaction requests are handled holding the broker shared: each coordinator and
//! its log sit behind a lock of their own (`Groups`, `Broker::txns_locked`), and the answers
//! they route go into `routed`, which has its own lock too; the timeouts, the markers and the
//! completions run from exclusive calls (`tick`, `synced`).

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{RequestHeader, ResponseKind};

use std::sync::atomic::Ordering;

use crate::authorize::{GroupCheck, TxnCheck};
use crate::{groups, transactions, txn_index};
use crate::{Broker, BrokerError, ClientInfo, LogId, Now, Outcome, Routed};

impl Broker {
    /// Handles a consumer group request (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
    /// OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups, OffsetDelete). JoinGroup and
    /// SyncGroup may be answered later, and may answer other members' earlier requests.
    pub(crate) fn handle_group(
        &self,
        now: Now,
        token: u64,
        client: &ClientInfo,
        header: &RequestHeader,
        mut body: group::Request,
    ) -> Result<Outcome, BrokerError> {
        let client_id = header.client_id.as_deref().unwrap_or("");
        let version = header.request_api_version;
        let check = match self.authorize_group(client, version, &mut body) {
            GroupCheck::Refused(answer) => return Ok(Outcome::Respond(*answer)),
            check => check,
        };
        // Partitions of topics the client may not READ, or that do not exist, are answered
        // before the coordinator sees the request, as Kafka's request handler answers them.
        let topic_refusal = |topic: &str| self.commit_refusal(client, topic);
        let exists = |topic: &str, partition| self.topics.partition(topic, partition).is_some();
        let mut refused_deletes = Vec::new();
        if let group::Request::OffsetDelete(delete) = &mut body {
            refused_deletes = groups::take_refused_deletes(delete, &topic_refusal, exists);
        }
        let mut refused = Vec::new();
        if let group::Request::OffsetCommit(commit) = &mut body {
            let had_topics = !commit.topics.is_empty();
            refused = groups::take_refused_commits(commit, &topic_refusal, exists);
            if had_topics && commit.topics.is_empty() {
                return Ok(Outcome::Respond(groups::refused_commits_response(refused)));
            }
        }
        let (mut responses, appended) =
            self.groups
                .handle(now, token, version, client_id, &client.host, body)?;
        let own = responses
            .iter_mut()
            .find_map(|(answered, response)| (*answered == token).then_some(response));
        match own {
            Some(ResponseKind::OffsetCommit(r)) => r.topics.append(&mut refused),
            // A group-level error is the whole answer, as in Kafka.
            Some(ResponseKind::OffsetDelete(r)) if r.error_code == 0 => {
                r.topics.append(&mut refused_deletes)
            }
            _ => {}
        }
        debug_assert!(refused.is_empty(), "an OffsetCommit is answered at once");
        if let Some(own) = responses
            .iter_mut()
            .find(|(answered, _)| *answered == token)
        {
            self.authorize_group_answer(client, check, &mut own.1);
        }
        let sync_ticket = appended.then(|| self.tickets.note(LogId::Groups));
        Ok(self.answer(token, sync_ticket, responses))
    }

    /// Handles a transaction request (InitProducerId with a transactional id, AddPartitionsToTxn,
    /// AddOffsetsToTxn, EndTxn, TxnOffsetCommit, ListTransactions, DescribeTransactions); it is
    /// answered once the transaction log is durable up to it (EndTxn: once its markers are).
    pub(crate) fn handle_txn(
        &self,
        now: Now,
        token: u64,
        client: &ClientInfo,
        version: i16,
        body: txn::Request,
    ) -> Result<Outcome, BrokerError> {
        let check = match self.authorize_txn(client, &body) {
            TxnCheck::Refused(answer) => return Ok(Outcome::Respond(*answer)),
            check => check,
        };
        let added = match &body {
            txn::Request::AddPartitionsToTxn(r) => Some((
                r.v3_and_below_transactional_id.0.to_string(),
                r.v3_and_below_topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| (t.name.0.to_string(), *p)))
                    .collect(),
            )),
            _ => None,
        };
        let context = txn::RequestContext {
            token: txn::ResponseToken(token),
            api_version: version,
        };
        let coordinator_ms = now.coordinator_ms();
        // The coordinator's state and its log move together: the lock is held from the
        // request to its records appended, so two transaction calls never interleave.
        let mut txns = self.txns_locked();
        // A partition of a topic the client may not use, or that does not exist, is refused
        // before the transaction is looked at, as in Kafka.
        let refused_topics = check.refused_topics();
        let check_partition = |topic: &str, partition: i32| {
            if refused_topics.iter().any(|t| t == topic) {
                Err(ResponseError::TopicAuthorizationFailed)
            } else if self.topics.partition(topic, partition).is_some() {
                Ok(())
            } else {
                Err(ResponseError::UnknownTopicOrPartition)
            }
        };
        // KIP-447: TxnOffsetCommit's member fields are checked as OffsetCommit's are.
        let members = |m: &txn::GroupMember| {
            self.groups.coordinator().validate_txn_offset_commit(
                coordinator_ms,
                m.group_id,
                m.member_id,
                m.group_instance_id,
                m.generation_id,
            )
        };
        // A new id's block, if not durable yet, is written by the round of a ticket taken here,
        // before the transaction log's record naming the id: the answer waits for a later one.
        let mut allocate = || self.producers.allocate(&self.tickets).id;
        let output = txns.coordinator_mut().handle(
            coordinator_ms,
            &context,
            body,
            &mut allocate,
            &check_partition,
            &members,
        );
        let (sync_ticket, mut responses) = self.apply_txn_output(&mut txns, output, added, now)?;
        drop(txns);
        if let Some(own) = responses
            .iter_mut()
            .find(|(answered, _)| *answered == token)
        {
            self.authorize_txn_answer(client, check, &mut own.1);
        }
        Ok(self.answer(token, Some(sync_ticket), responses))
    }

    /// Fires the coordinators' due timeouts: session expiry, rebalance and join delays, the
    /// offset-expiry sweep, hung transactions (aborted and fenced).
    pub(crate) fn tick_coordinators(&mut self, now: Now) -> Result<(), BrokerError> {
        let (responses, appended) = self.groups.tick(now)?;
        let sync_ticket = appended.then(|| self.tickets.note(LogId::Groups));
        self.route(sync_ticket, responses);
        let mut txns = self.txns_locked();
        let output = txns.coordinator_mut().tick(now.coordinator_ms());
        let (sync_ticket, responses) = self.apply_txn_output(&mut txns, output, None, now)?;
        drop(txns);
        self.route(Some(sync_ticket), responses);
        Ok(())
    }

    /// When the coordinators next have a timeout to fire, in wall-clock milliseconds.
    pub(crate) fn coordinators_deadline_ms(&self) -> Option<i64> {
        let group = self.groups.next_deadline_ms();
        let txn = self.txns_locked().coordinator().next_deadline_ms();
        let deadline = match (group, txn) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        deadline.map(|ms| i64::try_from(ms).unwrap_or(i64::MAX))
    }

    /// The group coordinator, locked while the guard lives.
    pub fn groups(&self) -> groups::CoordinatorGuard<'_> {
        self.groups.coordinator()
    }

    /// The transaction coordinator, locked while the guard lives.
    pub fn txn_coordinator(&self) -> transactions::CoordinatorGuard<'_> {
        transactions::CoordinatorGuard(self.txns_locked())
    }

    /// The transaction coordinator's state, locked: transaction requests are handled holding
    /// the broker shared; the lock order is this, then the group coordinator's or a
    /// partition's lock, then the producer ids' (ARCHITECTURE.md).
    pub(crate) fn txns_locked(&self) -> std::sync::MutexGuard<'_, transactions::Transactions> {
        self.transactions.lock().expect(TXN_POISONED)
    }

    pub(crate) fn txns(&mut self) -> &mut transactions::Transactions {
        self.transactions.get_mut().expect(TXN_POISONED)
    }

    /// The group log's first offset: above 0 once compaction dropped records.
    pub fn group_log_start_offset(&self) -> i64 {
        self.groups.log_start_offset()
    }

    /// The transaction log's first offset: above 0 once compaction dropped records.
    pub fn transaction_log_start_offset(&self) -> i64 {
        self.txns_locked().log_start_offset()
    }

    /// Takes the responses routed to requests answered later ([`Outcome::Later`]); the server
    /// takes them after every exclusive call, and after a shared one that touched the group
    /// coordinator ([`Broker::take_shared_effects`]).
    pub fn take_routed(&self) -> Vec<Routed> {
        std::mem::take(&mut *self.routed.lock().expect(ROUTED_POISONED))
    }

    /// After a shared call: the answers it routed to other requests if it touched the group
    /// coordinator (the server then delivers them and looks at [`Broker::next_deadline`], which
    /// a group request may have moved); None after a produce, a fetch or a list-offsets.
    pub fn take_shared_effects(&self) -> Option<Vec<Routed>> {
        self.coordinators_touched
            .swap(false, Ordering::SeqCst)
            .then(|| self.take_routed())
    }

    /// Checks a transactional produce against the coordinator (KIP-890 part 1).
    pub(crate) fn check_txn_produce(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        // The coordinator's state is ahead of its log until the group commit: a transaction whose
        // AddPartitionsToTxn is not durable yet could be ended after a crash by a re-issued
        // marker of the transaction before it. Its answer is not out yet either, so only a client
        // that does not wait for it gets here: it retries (CONCURRENT_TRANSACTIONS, answered to
        // the producer as the retriable NOT_ENOUGH_REPLICAS).
        let txns = self.txns_locked();
        if txns.added_unsynced(transactional_id, topic, partition, self.tickets.synced()) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        txns.coordinator().check_produce(
            transactional_id,
            producer_id,
            producer_epoch,
            topic,
            partition,
        )
    }

    /// Finishes every transaction a crash left prepared (at open): its markers are re-issued and
    /// written once the recovered state is fsynced (the first group-commit report).
    pub(crate) fn recover_transactions(&mut self, now: Now) -> Result<(), BrokerError> {
        let mut txns = self.txns_locked();
        let output = txns.coordinator_mut().recover(now.coordinator_ms());
        let (_, responses) = self.apply_txn_output(&mut txns, output, None, now)?;
        assert!(responses.is_empty(), "recovery answers no request");
        Ok(())
    }

    /// Carries out the transaction pipeline's steps that the fsync up to `synced` unblocked:
    /// markers whose Prepare record is durable are written (step 2), and transactions whose
    /// markers are durable are completed (step 3). Runs on every group-commit report.
    pub(crate) fn advance_transactions(
        &mut self,
        now: Now,
        synced: u64,
    ) -> Result<(), BrokerError> {
        let completions = self.txns().take_completions_due(synced);
        for marker in completions {
            let id = marker.transactional_id.to_string();
            let mut txns = self.txns_locked();
            let output = txns.coordinator_mut().markers_written(
                now.coordinator_ms(),
                &id,
                marker.producer_id,
                marker.producer_epoch,
            );
            let (sync_ticket, responses) = self.apply_txn_output(&mut txns, output, None, now)?;
            drop(txns);
            self.route(Some(sync_ticket), responses);
        }
        let markers = self.txns().take_markers_due(synced);
        for marker in markers {
            self.write_markers(&marker, now)?;
            let ticket = self.tickets.appended();
            self.txns().markers_appended(ticket, marker);
        }
        Ok(())
    }

    fn write_markers(&mut self, marker: &txn::MarkerRequest, now: Now) -> Result<(), BrokerError> {
        let ending = txn_index::Marker {
            producer_id: marker.producer_id,
            producer_epoch: marker.producer_epoch,
            commit: marker.commit,
        };
        for (topic, index) in &marker.partitions {
            let topic = topic.as_str();
            let Some(partition) = self.topics.partition_mut(topic, *index) else {
                tracing::warn!(
                    topic,
                    partition = index,
                    "transaction marker for a partition that no longer exists"
                );
                continue;
            };
            partition
                .append_marker(ending, now.wall_ms())
                .map_err(|source| BrokerError::log(topic, *index, source))?;
            self.note_append(topic, *index);
        }
        for group in &marker.groups {
            // Offsets of a topic deleted since the TxnOffsetCommit are not committed (its
            // committed offsets went with it).
            let mut group = group.clone();
            let topics = &self.topics;
            group
                .offsets
                .retain(|o| topics.partition(&o.topic, o.partition).is_some());
            let appended = self
                .groups
                .complete_txn_offsets(now, &group, marker.commit)?;
            if appended {
                self.tickets.note(LogId::Groups);
            }
        }
        // Make sure a round runs even when nothing was appended (all partitions gone).
        self.tickets.bump();
        Ok(())
    }

    /// Appends a transaction output's records, stages its offsets, schedules its markers, and
    /// returns its responses with the ticket that makes all of it (and everything before)
    /// durable. `added`: the transactional id and partitions of an AddPartitionsToTxn, if that
    /// is what produced `output`.
    fn apply_txn_output(
        &self,
        txns: &mut transactions::Transactions,
        output: txn::Output,
        added: Option<(String, Vec<(String, i32)>)>,
        now: Now,
    ) -> Result<(u64, Vec<(u64, ResponseKind)>), BrokerError> {
        if txns.append(&output.records, now.wall_ms())? {
            let ticket = self.tickets.note(LogId::Transactions);
            if let Some((transactional_id, partitions)) = added {
                txns.note_added(&transactional_id, partitions, ticket);
            }
        }
        for staged in &output.offsets_to_stage {
            self.groups.stage_txn_offsets(now, staged);
        }
        let ticket = self.tickets.appended();
        txns.schedule_markers(ticket, output.markers);
        let responses = output
            .responses
            .into_iter()
            .map(|(token, response)| (token.0, transactions::response_kind(response)))
            .collect();
        Ok((ticket, responses))
    }

    /// Routes `responses` to their requests, all of them answered later.
    pub(crate) fn route(&self, sync_ticket: Option<u64>, responses: Vec<(u64, ResponseKind)>) {
        self.routed
            .lock()
            .expect(ROUTED_POISONED)
            .extend(responses.into_iter().map(|(token, response)| Routed {
                token,
                sync_ticket,
                response,
            }));
    }

    /// A coordinator request's outcome: its own response if it is among `responses` (the
    /// others are routed), else [`Outcome::Later`]. The call is marked as one that touched a
    /// coordinator, once the answers are routed: the server then delivers them and looks at
    /// the deadline, which the request may have moved ([`Broker::take_shared_effects`]).
    fn answer(
        &self,
        token: u64,
        sync_ticket: Option<u64>,
        mut responses: Vec<(u64, ResponseKind)>,
    ) -> Outcome {
        let own = responses
            .iter()
            .position(|(answered, _)| *answered == token)
            .map(|at| responses.remove(at).1);
        self.route(sync_ticket, responses);
        self.coordinators_touched.store(true, Ordering::SeqCst);
        match (own, sync_ticket) {
            (Some(response), Some(ticket)) => Outcome::AfterSync { ticket, response },
            (Some(response), None) => Outcome::Respond(response),
            (None, _) => Outcome::Later,
        }
    }
}

const ROUTED_POISONED: &str = "routed answers lock poisoned by an earlier panic";
const TXN_POISONED: &str = "transaction coordinator lock poisoned by an earlier panic";
