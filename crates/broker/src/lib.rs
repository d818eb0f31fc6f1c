//! ferry's broker logic: topics, partitions and one handler per Kafka API.
//!
//! Nothing here opens a socket, reads a clock or spawns a task: the `server` crate decodes
//! requests, passes them in with the current time, and carries out the returned [`Outcome`]
//! (send now, send after the group-commit fsync, send nothing). Disk access goes through the
//! `storage` crate's `Disk` trait, so tests can run the whole broker on a simulated disk.

pub mod config;
mod durable;
mod error;
pub mod groups;
mod handlers;
mod internal_log;
pub mod partition;
pub mod producers;
mod sync;
pub mod topic_config;
pub mod topics;
pub mod transactions;
pub mod txn_index;

use std::sync::Arc;

use kafka_protocol::messages::{FetchRequest, RequestKind, ResponseKind};
use storage::Disk;
use wire::Request;

pub use config::BrokerConfig;
pub use error::BrokerError;
use groups::Groups;
pub use groups::Routed;
pub use handlers::api_versions::response as api_versions_response;
pub use handlers::fetch::FetchOutcome;
pub use sync::LogId;
use topics::Topics;

/// What the server must do with a handled request.
#[derive(Debug)]
pub enum Outcome {
    /// Send this response now.
    Respond(ResponseKind),
    /// Send this response once everything appended up to `ticket` is fsynced (`acks=all`).
    AfterSync { ticket: u64, response: ResponseKind },
    /// Send nothing (`acks=0`).
    NoResponse,
    /// Close the connection; used for `acks=0` produce errors, which have no other way to reach
    /// the client (Kafka does the same).
    Close(String),
}

pub struct Broker {
    config: BrokerConfig,
    topics: Topics,
    /// Append tickets and the logs waiting for the group commit.
    tickets: sync::Tickets,
    retention_checked_ms: i64,
    groups: Groups,
    transactions: transactions::Transactions,
    /// Producer ids and the idempotence counters (the per-partition state is in `Partition`).
    producers: producers::Producers,
}

impl Broker {
    /// Opens the data directory, recovering every partition.
    pub fn open(
        config: BrokerConfig,
        disk: Arc<dyn Disk>,
        now_ms: i64,
    ) -> Result<Broker, BrokerError> {
        let topics = Topics::open(
            disk.clone(),
            &config.data_dir,
            &config.log,
            config.message_max_bytes,
            now_ms,
        )?;
        let producers = producers::Producers::open(disk.clone(), &config.data_dir)?;
        let groups = Groups::open(
            disk.clone(),
            &config.data_dir,
            config.group.clone(),
            config.internal_log_compact_bytes,
            now_ms,
        )?;
        let transactions = transactions::Transactions::open(
            disk,
            &config.data_dir,
            config.txn.clone(),
            config.internal_log_compact_bytes,
            now_ms,
        )?;
        let mut broker = Broker {
            config,
            topics,
            tickets: sync::Tickets::default(),
            retention_checked_ms: now_ms,
            groups,
            transactions,
            producers,
        };
        // Finish every transaction a crash left prepared: its markers are re-issued and written
        // once the recovered state is fsynced (the first group-commit round).
        let now = broker.txns_mut().now(now_ms);
        let output = broker.txns_mut().coordinator_mut().recover(now);
        let routed = broker.apply_txn_output(output, None, now_ms)?;
        assert!(routed.responses.is_empty(), "recovery answers no request");
        Ok(broker)
    }

    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Handles every request except Fetch, which may wait (see [`Broker::fetch`]).
    pub fn handle(&mut self, now_ms: i64, request: Request) -> Result<Outcome, BrokerError> {
        let version = request.header.request_api_version;
        let response = match request.body {
            RequestKind::ApiVersions(r) => handlers::api_versions::handle(&r, version),
            RequestKind::Metadata(r) => handlers::metadata::handle(self, now_ms, &r, version)?,
            RequestKind::Produce(r) => return handlers::produce::handle(self, now_ms, r, version),
            RequestKind::ListOffsets(r) => handlers::list_offsets::handle(self, &r, version)?,
            RequestKind::CreateTopics(r) => {
                handlers::create_topics::handle(self, now_ms, &r, version)?
            }
            RequestKind::DeleteTopics(r) => {
                handlers::delete_topics::handle(self, now_ms, &r, version)?
            }
            RequestKind::CreatePartitions(r) => {
                handlers::create_partitions::handle(self, now_ms, &r)?
            }
            RequestKind::AlterConfigs(r) => handlers::alter_configs::handle_alter(self, &r)?,
            RequestKind::IncrementalAlterConfigs(r) => {
                handlers::alter_configs::handle_incremental(self, &r)?
            }
            RequestKind::DescribeConfigs(r) => handlers::describe_configs::handle(self, &r),
            RequestKind::DeleteRecords(r) => handlers::delete_records::handle(self, &r)?,
            RequestKind::FindCoordinator(r) => {
                handlers::find_coordinator::handle(self, &r, version)
            }
            RequestKind::InitProducerId(r) => handlers::init_producer_id::handle(self, &r)?,
            RequestKind::Fetch(_) => panic!("Fetch goes through Broker::fetch"),
            other => panic!("server dispatched an unadvertised API: {other:?}"),
        };
        Ok(Outcome::Respond(response))
    }

    /// Handles a consumer group request (JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
    /// OffsetCommit, OffsetFetch, ListGroups, DescribeGroups, DeleteGroups). Its response is
    /// routed to `token`, now or in a later call (JoinGroup and SyncGroup wait for the group);
    /// the returned responses may answer other members' earlier requests too.
    pub fn handle_group(
        &mut self,
        now_ms: i64,
        token: u64,
        client_host: &str,
        request: Request,
    ) -> Result<Routed, BrokerError> {
        let version = request.header.request_api_version;
        let client_id = request
            .header
            .client_id
            .as_deref()
            .unwrap_or("")
            .to_string();
        let mut body = match groups::group_request(request.body) {
            Ok(body) => body,
            Err(other) => panic!("handle_group with a non-group request: {other:?}"),
        };
        let mut unknown = Vec::new();
        if let group::Request::OffsetCommit(commit) = &mut body {
            let had_topics = !commit.topics.is_empty();
            unknown = groups::take_unknown_commits(commit, |topic, partition| {
                self.topics.partition(topic, partition).is_some()
            });
            if had_topics && commit.topics.is_empty() {
                let response = groups::unknown_commits_response(unknown);
                return Ok(self.routed(vec![(token, response)], false));
            }
        }
        let (mut responses, appended) =
            self.groups_mut()
                .handle(now_ms, token, version, &client_id, client_host, body)?;
        if !unknown.is_empty() {
            for (answered, response) in &mut responses {
                if let (true, ResponseKind::OffsetCommit(r)) = (*answered == token, response) {
                    r.topics.extend(std::mem::take(&mut unknown));
                }
            }
            debug_assert!(unknown.is_empty(), "an OffsetCommit is answered at once");
        }
        Ok(self.routed(responses, appended))
    }

    /// Fires due group timeouts; see [`Broker::group_deadline_ms`].
    pub fn group_tick(&mut self, now_ms: i64) -> Result<Routed, BrokerError> {
        let (responses, appended) = self.groups_mut().tick(now_ms)?;
        Ok(self.routed(responses, appended))
    }

    /// When the group coordinator next needs a tick, in its clock (wall milliseconds).
    pub fn group_deadline_ms(&self) -> Option<u64> {
        self.groups_ref().next_deadline_ms()
    }

    pub fn groups(&self) -> &group::GroupCoordinator {
        self.groups_ref().coordinator()
    }

    /// The group log's first offset: above 0 once compaction dropped records.
    pub fn group_log_start_offset(&self) -> i64 {
        self.groups_ref().log_start_offset()
    }

    /// The transaction log's first offset: above 0 once compaction dropped records.
    pub fn transaction_log_start_offset(&self) -> i64 {
        self.transactions.log_start_offset()
    }

    fn groups_ref(&self) -> &Groups {
        &self.groups
    }

    fn groups_mut(&mut self) -> &mut Groups {
        &mut self.groups
    }

    /// Handles a transaction request (InitProducerId with a transactional id, AddPartitionsToTxn,
    /// AddOffsetsToTxn, EndTxn, TxnOffsetCommit, ListTransactions, DescribeTransactions); its
    /// response is routed to `token` once the transaction log is durable up to it.
    pub fn handle_txn(
        &mut self,
        now_ms: i64,
        token: u64,
        request: Request,
    ) -> Result<Routed, BrokerError> {
        let version = request.header.request_api_version;
        let body = match transactions::txn_request(request.body) {
            Ok(body) => body,
            Err(other) => panic!("handle_txn with a non-transaction request: {other:?}"),
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
        let now = self.txns_mut().now(now_ms);
        let Broker {
            topics,
            producers,
            transactions,
            groups,
            ..
        } = self;
        let exists = |topic: &str, partition: i32| topics.partition(topic, partition).is_some();
        let groups = groups.coordinator();
        // KIP-447: TxnOffsetCommit's member fields are checked as OffsetCommit's are.
        let members = |m: &txn::GroupMember| {
            groups.validate_txn_offset_commit(
                now,
                m.group_id,
                m.member_id,
                m.group_instance_id,
                m.generation_id,
            )
        };
        let mut allocate = || {
            producers
                .allocate()
                .unwrap_or_else(|error| panic!("allocate a producer id: {error}"))
        };
        let output = transactions.coordinator_mut().handle(
            now,
            &context,
            body,
            &mut allocate,
            &exists,
            &members,
        );
        self.apply_txn_output(output, added, now_ms)
    }

    /// Fires due transaction timeouts (aborting and fencing hung transactions).
    pub fn txn_tick(&mut self, now_ms: i64) -> Result<Routed, BrokerError> {
        let now = self.txns_mut().now(now_ms);
        let output = self.txns_mut().coordinator_mut().tick(now);
        self.apply_txn_output(output, None, now_ms)
    }

    pub fn txn_deadline_ms(&self) -> Option<u64> {
        self.transactions.coordinator().next_deadline_ms()
    }

    pub fn txn_coordinator(&self) -> &txn::TxnCoordinator {
        self.transactions.coordinator()
    }

    /// Checks a transactional produce against the coordinator (KIP-890 part 1).
    pub(crate) fn check_txn_produce(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), kafka_protocol::error::ResponseError> {
        // The coordinator's state is ahead of its log until the group commit: a transaction whose
        // AddPartitionsToTxn is not durable yet could be ended after a crash by a re-issued
        // marker of the transaction before it. Its answer is not out yet either, so only a client
        // that does not wait for it gets here: it retries (CONCURRENT_TRANSACTIONS, answered to
        // the producer as the retriable NOT_ENOUGH_REPLICAS).
        let txns = &self.transactions;
        if txns.added_unsynced(transactional_id, topic, partition, self.tickets.synced()) {
            return Err(kafka_protocol::error::ResponseError::ConcurrentTransactions);
        }
        self.txn_coordinator().check_produce(
            transactional_id,
            producer_id,
            producer_epoch,
            topic,
            partition,
        )
    }

    /// Carries out the transaction pipeline's steps that the fsync up to `synced` unblocked:
    /// markers whose Prepare record is durable are written (step 2), and transactions whose
    /// markers are durable are completed (step 3). Called after every group-commit round.
    pub fn after_sync(&mut self, synced: u64, now_ms: i64) -> Result<Routed, BrokerError> {
        let mut routed = Routed::default();
        for marker in self.txns_mut().take_completions_due(synced) {
            let now = self.txns_mut().now(now_ms);
            let id = marker.transactional_id.to_string();
            let output = self.txns_mut().coordinator_mut().markers_written(
                now,
                &id,
                marker.producer_id,
                marker.producer_epoch,
            );
            merge(&mut routed, self.apply_txn_output(output, None, now_ms)?);
        }
        for marker in self.txns_mut().take_markers_due(synced) {
            self.write_markers(&marker, now_ms)?;
            let ticket = self.tickets.appended();
            self.txns_mut().markers_appended(ticket, marker);
        }
        Ok(routed)
    }

    /// Whether the transaction pipeline waits on a sync (the server then keeps syncing).
    pub fn txn_work_pending(&self) -> bool {
        self.transactions.has_due_work()
    }

    fn write_markers(
        &mut self,
        marker: &txn::MarkerRequest,
        now_ms: i64,
    ) -> Result<(), BrokerError> {
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
                .append_marker(ending, now_ms)
                .map_err(|source| BrokerError::Log {
                    topic: topic.to_string(),
                    partition: *index,
                    source,
                })?;
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
                .groups_mut()
                .complete_txn_offsets(now_ms, &group, marker.commit)?;
            if appended {
                self.tickets.note(LogId::Groups);
            }
        }
        // Make sure a round runs even when nothing was appended (all partitions gone).
        self.tickets.bump();
        Ok(())
    }

    /// Appends a transaction output's records, stages its offsets, schedules its markers, and
    /// routes its responses behind the ticket that makes all of it (and everything before) durable.
    /// `added`: the transactional id and partitions of an AddPartitionsToTxn, if that is what
    /// produced `output`.
    fn apply_txn_output(
        &mut self,
        output: txn::Output,
        added: Option<(String, Vec<(String, i32)>)>,
        now_ms: i64,
    ) -> Result<Routed, BrokerError> {
        if self.txns_mut().append(&output.records, now_ms)? {
            let ticket = self.tickets.note(LogId::Transactions);
            if let Some((transactional_id, partitions)) = added {
                self.txns_mut()
                    .note_added(&transactional_id, partitions, ticket);
            }
        }
        for staged in &output.offsets_to_stage {
            self.groups_mut().stage_txn_offsets(now_ms, staged);
        }
        let ticket = self.tickets.appended();
        self.txns_mut().schedule_markers(ticket, output.markers);
        let responses = output
            .responses
            .into_iter()
            .map(|(token, response)| (token.0, transactions::response_kind(response)))
            .collect();
        Ok(Routed {
            sync_ticket: Some(ticket),
            responses,
        })
    }

    fn txns_mut(&mut self) -> &mut transactions::Transactions {
        &mut self.transactions
    }

    fn routed(&mut self, responses: Vec<(u64, ResponseKind)>, appended: bool) -> Routed {
        let sync_ticket = appended.then(|| self.tickets.note(LogId::Groups));
        Routed {
            sync_ticket,
            responses,
        }
    }

    /// Answers a Fetch, or says to wait for more data (`min_bytes` not reached and the wait not
    /// over). `wait_over` is true once `max_wait_ms` has passed since the request arrived.
    pub fn fetch(
        &mut self,
        request: &FetchRequest,
        version: i16,
        wait_over: bool,
    ) -> Result<FetchOutcome, BrokerError> {
        handlers::fetch::handle(self, request, version, wait_over)
    }

    /// Deletes segments past retention, at most once per `log.retention.check.interval.ms`.
    /// Also maintains the producer state (see [`Broker::maintain_producers`]).
    pub fn enforce_retention(&mut self, now_ms: i64) -> Result<(), BrokerError> {
        self.maintain_producers(now_ms);
        self.schedule_trailing_checkpoints(now_ms);
        let compact_bytes = self.config.internal_log_compact_bytes;
        if self.groups_mut().maintain_log(now_ms, compact_bytes)? {
            self.tickets.note(LogId::Groups);
        }
        if self.txns_mut().maintain_log(now_ms, compact_bytes)? {
            self.tickets.note(LogId::Transactions);
        }
        if now_ms - self.retention_checked_ms < self.config.retention_check_interval_ms {
            return Ok(());
        }
        self.retention_checked_ms = now_ms;
        for (name, topic) in self.topics.iter_mut() {
            for (index, partition) in topic.partitions.iter_mut().enumerate() {
                let deleted = partition
                    .log_mut()
                    .enforce_retention(now_ms)
                    .map_err(|source| BrokerError::Log {
                        topic: name.clone(),
                        partition: index as i32,
                        source,
                    })?;
                if deleted > 0 {
                    tracing::info!(topic = %name, partition = index, deleted, "retention deleted segments");
                }
            }
        }
        Ok(())
    }

    /// Closes every partition log cleanly (indexes written, everything fsynced, recovery points
    /// at the log end), consuming the broker. Called once, at shutdown.
    pub fn close(self) -> Result<(), BrokerError> {
        self.topics.close()?;
        self.groups.close()?;
        self.transactions.close()?;
        self.producers
            .counters
            .trace("idempotent producers at shutdown");
        Ok(())
    }

    /// Forgets producer ids idle for `producer.id.expiration.ms` (checked once a minute),
    /// writes periodic producer snapshots, and traces the idempotence counters when they moved.
    pub fn maintain_producers(&mut self, now_ms: i64) {
        let expiration_ms = self
            .producers
            .expiration_due(now_ms)
            .then_some(self.config.producer_id_expiration_ms);
        for (_, topic) in self.topics.iter_mut() {
            for partition in &mut topic.partitions {
                let expired = partition.maintain_producers(now_ms, expiration_ms);
                self.producers.counters.expired += expired as u64;
            }
        }
        self.producers.trace_if_changed();
    }
}

fn merge(into: &mut Routed, other: Routed) {
    into.sync_ticket = into.sync_ticket.max(other.sync_ticket);
    into.responses.extend(other.responses);
}
