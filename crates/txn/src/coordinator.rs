//! [`TxnCoordinator`]: the metadata of every transactional id, the state transitions the request
//! handlers (`handlers.rs`) and timers share, the deadline index that `tick` and
//! `next_deadline_ms` use, marker completion, replay and recovery.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kafka_protocol::error::ResponseError;
use kafka_protocol::protocol::StrBytes;
use tracing::{info, warn};

use crate::api::{GroupOffsets, MarkerRequest, Output, Response, ResponseToken, TxnOffset};
use crate::config::{round_up, TxnConfig};
use crate::record::{DecodedRecord, Record, RecordError, StagedOffset, TopicPartition, TxnValue};
use crate::state::TxnState;

/// The key of a staged offset within its transaction: group, topic, partition.
pub(crate) type OffsetKey = (StrBytes, StrBytes, i32);

/// A transactional id in full, for admin commands (Kafka's DescribeTransactions, plus the groups
/// and staged offsets ferry keeps beside the partitions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionDescription {
    pub transactional_id: StrBytes,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub state: TxnState,
    pub timeout_ms: i32,
    /// -1 when no transaction was started since the last InitProducerId.
    pub start_ms: i64,
    pub last_update_ms: i64,
    pub partitions: Vec<TopicPartition>,
    pub groups: Vec<StrBytes>,
    pub staged_offsets: Vec<GroupOffsets>,
}

/// How many transactions this coordinator began and ended since it started, for metrics.
/// Replayed history is not counted: these are the process's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TxnCounters {
    /// Transactions that became Ongoing (the first AddPartitionsToTxn or AddOffsetsToTxn).
    pub begun: u64,
    /// Transactions completed as committed (their markers written).
    pub committed: u64,
    /// Transactions completed as aborted, by the client or by a timeout.
    pub aborted: u64,
    /// Transactions the coordinator aborted because their timeout passed.
    pub timed_out: u64,
}

/// Kafka's transaction coordinator for every transactional id of one broker. Not thread-safe by
/// design: the broker drives it from one task.
pub struct TxnCoordinator {
    pub(crate) counters: TxnCounters,
    pub(crate) config: TxnConfig,
    pub(crate) txns: BTreeMap<StrBytes, TxnValue>,
    /// Offsets staged by TxnOffsetCommit, per transactional id, for its transaction in flight.
    pub(crate) offsets: BTreeMap<StrBytes, BTreeMap<OffsetKey, StagedOffset>>,
    /// (next deadline, transactional id) for every id with a timer: a transaction's timeout while
    /// it is Ongoing, the id's expiration while nothing is in flight.
    deadlines: BTreeSet<(u64, StrBytes)>,
    /// The deadline each id is indexed under in `deadlines`.
    indexed: HashMap<StrBytes, u64>,
    /// Between the first `replay` and `recover`: staged offsets may still wait for their
    /// transaction's record (a compacted log keeps each key at its last write).
    replaying: bool,
    /// EndTxn answers held until their transaction's markers are written (see
    /// [`TxnCoordinator::handle_end_txn`]).
    pub(crate) ending: HashMap<StrBytes, Vec<(ResponseToken, Response)>>,
}

impl TxnCoordinator {
    pub fn new(config: TxnConfig) -> TxnCoordinator {
        TxnCoordinator {
            counters: TxnCounters::default(),
            config,
            txns: BTreeMap::new(),
            offsets: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            indexed: HashMap::new(),
            replaying: false,
            ending: HashMap::new(),
        }
    }

    pub fn config(&self) -> &TxnConfig {
        &self.config
    }

    pub fn counters(&self) -> TxnCounters {
        self.counters
    }

    /// Aborts every transaction whose timeout has passed (bumping the epoch, so the hung producer
    /// is fenced, as Kafka does) and forgets transactional ids idle past
    /// `transactional.id.expiration.ms`.
    pub fn tick(&mut self, now_ms: u64) -> Output {
        self.assert_recovered();
        let mut out = Output::default();
        let due: Vec<StrBytes> = self
            .deadlines
            .iter()
            .take_while(|(deadline_ms, _)| *deadline_ms <= now_ms)
            .map(|(_, id)| id.clone())
            .collect();
        for id in due {
            let v = &self.txns[id.as_bytes()];
            let now = ms(now_ms);
            if v.state == TxnState::Ongoing
                && v.start_ms.saturating_add(i64::from(v.timeout_ms)) < now
            {
                info!(transactional_id = %id, producer_id = v.producer_id, "aborting timed-out transaction");
                self.counters.timed_out += 1;
                self.fence_and_abort(now_ms, &id, &mut out);
            } else if v.state.may_expire()
                && v.last_update_ms
                    .saturating_add(ms(self.config.transactional_id_expiration_ms))
                    <= now
            {
                info!(transactional_id = %id, producer_id = v.producer_id, "transactional id expired");
                self.expire(&id, &mut out);
            }
            self.settle(&id);
        }
        debug_assert!(
            self.next_deadline_ms().is_none_or(|d| d > now_ms),
            "tick left a due deadline"
        );
        out
    }

    /// When `tick` next has something to do; `None` if no timer runs.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        self.deadlines.first().map(|(deadline_ms, _)| *deadline_ms)
    }

    /// The broker made every marker of `transactional_id`'s transaction durable (partitions and
    /// group offsets): PrepareCommit / PrepareAbort becomes CompleteCommit / CompleteAbort. The
    /// producer id and epoch are the [`MarkerRequest`]'s; a call for a transaction that is not
    /// completing any more (a duplicate) does nothing.
    pub fn markers_written(
        &mut self,
        now_ms: u64,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Output {
        self.assert_recovered();
        let mut out = Output::default();
        let Some((id, v)) = self.txns.get_key_value(transactional_id.as_bytes()) else {
            warn!(
                transactional_id,
                "markers written for an unknown transactional id"
            );
            return out;
        };
        let id = id.clone();
        if !v.state.is_completing()
            || v.producer_id != producer_id
            || v.producer_epoch != producer_epoch
        {
            warn!(
                transactional_id,
                producer_id,
                producer_epoch,
                state = v.state.as_str(),
                "markers written for a transaction that is not completing"
            );
            return out;
        }
        self.complete(now_ms, &id, &mut out);
        self.settle(&id);
        for (token, response) in self.ending.remove(&id).unwrap_or_default() {
            out.respond(token, response);
        }
        out
    }

    /// Applies one record of the transaction log at start-up, oldest first. Call
    /// [`recover`](Self::recover) once after the last one, before anything else.
    pub fn replay(&mut self, record: &Record) -> Result<(), RecordError> {
        self.replaying = true;
        match record.decode()? {
            DecodedRecord::Txn {
                transactional_id: id,
                value: Some(v),
            } => {
                self.txns.insert(id.clone(), v);
                self.drop_foreign_offsets(&id);
                self.settle(&id);
            }
            DecodedRecord::Txn {
                transactional_id: id,
                value: None,
            } => {
                self.txns.remove(id.as_bytes());
                self.offsets.remove(id.as_bytes());
                self.unindex(&id);
            }
            DecodedRecord::Offset {
                transactional_id: id,
                group_id,
                topic,
                partition,
                value,
            } => {
                let key = (group_id, topic, partition);
                match value {
                    Some(o) => {
                        self.offsets.entry(id).or_default().insert(key, o);
                    }
                    None => {
                        if let Some(staged) = self.offsets.get_mut(id.as_bytes()) {
                            staged.remove(&key);
                            if staged.is_empty() {
                                self.offsets.remove(id.as_bytes());
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Finishes start-up after [`replay`](Self::replay): the marker requests that complete every
    /// transaction left in PrepareCommit or PrepareAbort (so after a crash every transaction ends
    /// committed or aborted, never half), and the staged offsets of transactions in flight for the
    /// group coordinator. Ongoing transactions stay Ongoing, as in Kafka: their producer may carry
    /// on, and `tick` aborts them at their timeout otherwise.
    pub fn recover(&mut self, _now_ms: u64) -> Output {
        self.replaying = false;
        let ids: Vec<StrBytes> = self.offsets.keys().cloned().collect();
        for id in ids {
            self.drop_foreign_offsets(&id);
        }
        let mut out = Output::default();
        for (id, v) in &self.txns {
            if v.state.is_completing() {
                info!(transactional_id = %id, state = v.state.as_str(), "resuming transaction markers");
                out.markers.push(self.marker_request(id));
            }
            if v.state.in_flight() {
                out.offsets_to_stage.extend(
                    self.group_offsets(id)
                        .into_iter()
                        .filter(|g| !g.offsets.is_empty()),
                );
            }
        }
        #[cfg(debug_assertions)]
        self.assert_all();
        out
    }

    /// Records that rebuild the persisted state of every transactional id: what a compacted
    /// transaction log holds.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut records = Vec::new();
        for (id, v) in &self.txns {
            records.push(Record::txn(id, Some(v)));
            for ((group, topic, partition), o) in
                self.offsets.get(id.as_bytes()).into_iter().flatten()
            {
                records.push(Record::offset(id, group, topic, *partition, Some(o)));
            }
        }
        records
    }

    /// Every transactional id, ordered by id.
    pub fn transactions(&self) -> Vec<TransactionDescription> {
        self.txns
            .keys()
            .filter_map(|id| self.transaction(id))
            .collect()
    }

    /// One transactional id in full.
    pub fn transaction(&self, transactional_id: &str) -> Option<TransactionDescription> {
        let (id, v) = self.txns.get_key_value(transactional_id.as_bytes())?;
        Some(TransactionDescription {
            transactional_id: id.clone(),
            producer_id: v.producer_id,
            producer_epoch: v.producer_epoch,
            state: v.state,
            timeout_ms: v.timeout_ms,
            start_ms: v.start_ms,
            last_update_ms: v.last_update_ms,
            partitions: v.partitions.iter().cloned().collect(),
            groups: v.groups.iter().cloned().collect(),
            staged_offsets: self
                .group_offsets(id)
                .into_iter()
                .filter(|g| !g.offsets.is_empty())
                .collect(),
        })
    }

    /// Kafka's produce-side transaction verification (KIP-890 part 1), for the broker's Produce
    /// handler: a transactional batch may only go to a partition of the producer's ongoing
    /// transaction. Otherwise the partition would hold data no marker ever ends, pinning its last
    /// stable offset forever. Errors: INVALID_PRODUCER_ID_MAPPING (unknown id or other producer
    /// id), INVALID_PRODUCER_EPOCH (fenced), CONCURRENT_TRANSACTIONS (completing; Kafka maps it
    /// to a retriable NOT_ENOUGH_REPLICAS for Produce), INVALID_TXN_STATE (partition not added).
    pub fn check_produce(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        topic: &str,
        partition: i32,
    ) -> Result<(), ResponseError> {
        let v = self
            .txns
            .get(transactional_id.as_bytes())
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if v.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if v.producer_epoch != producer_epoch {
            return Err(ResponseError::InvalidProducerEpoch);
        }
        if v.state.is_completing() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        let key = (StrBytes::from_string(topic.to_owned()), partition);
        if v.state != TxnState::Ongoing || !v.partitions.contains(&key) {
            return Err(ResponseError::InvalidTxnState);
        }
        Ok(())
    }

    // ---- transitions shared by handlers and timers ----

    /// Appends the current value of `id` to the output's records.
    pub(crate) fn persist(&self, id: &StrBytes, out: &mut Output) {
        out.records
            .push(Record::txn(id, Some(&self.txns[id.as_bytes()])));
    }

    /// Ongoing → PrepareCommit / PrepareAbort, with the markers to write once it is durable. A
    /// transaction that holds nothing completes at once, as Kafka's marker manager does.
    pub(crate) fn prepare_end(
        &mut self,
        now_ms: u64,
        id: &StrBytes,
        commit: bool,
        out: &mut Output,
    ) {
        let v = self
            .txns
            .get_mut(id.as_bytes())
            .expect("transaction exists");
        assert_eq!(
            v.state,
            TxnState::Ongoing,
            "only an ongoing transaction ends"
        );
        v.state = if commit {
            TxnState::PrepareCommit
        } else {
            TxnState::PrepareAbort
        };
        v.last_update_ms = ms(now_ms);
        let holds_nothing = v.partitions.is_empty() && v.groups.is_empty();
        self.persist(id, out);
        if holds_nothing {
            self.complete(now_ms, id, out);
        } else {
            out.markers.push(self.marker_request(id));
        }
    }

    /// Kafka's `prepareFenceProducerEpoch` followed by an abort: the epoch goes up by one so every
    /// request of the current producer is refused, and the markers carry the new epoch so the
    /// partitions refuse its batches too.
    pub(crate) fn fence_and_abort(&mut self, now_ms: u64, id: &StrBytes, out: &mut Output) {
        let v = self
            .txns
            .get_mut(id.as_bytes())
            .expect("transaction exists");
        assert_eq!(
            v.state,
            TxnState::Ongoing,
            "only an ongoing transaction is fenced"
        );
        assert!(
            v.producer_epoch < i16::MAX,
            "an ongoing transaction never holds the fencing epoch"
        );
        v.producer_epoch += 1;
        v.last_producer_epoch = -1;
        self.prepare_end(now_ms, id, false, out);
    }

    /// PrepareCommit / PrepareAbort → CompleteCommit / CompleteAbort; the staged offsets are done
    /// with (the markers handed them to the group coordinator).
    fn complete(&mut self, now_ms: u64, id: &StrBytes, out: &mut Output) {
        let v = self
            .txns
            .get_mut(id.as_bytes())
            .expect("transaction exists");
        v.state = match v.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            other => panic!("complete a transaction in state {}", other.as_str()),
        };
        v.partitions.clear();
        v.groups.clear();
        v.last_update_ms = ms(now_ms);
        match v.state {
            TxnState::CompleteCommit => self.counters.committed += 1,
            _ => self.counters.aborted += 1,
        }
        info!(transactional_id = %id, producer_id = v.producer_id, state = v.state.as_str(), "transaction completed");
        for ((group, topic, partition), _) in
            self.offsets.remove(id.as_bytes()).into_iter().flatten()
        {
            out.records
                .push(Record::offset(id, &group, &topic, partition, None));
        }
        self.persist(id, out);
    }

    fn expire(&mut self, id: &StrBytes, out: &mut Output) {
        let v = self.txns.remove(id.as_bytes()).expect("transaction exists");
        assert!(
            v.state.may_expire(),
            "only an idle transactional id expires"
        );
        assert!(
            !self.offsets.contains_key(id.as_bytes()),
            "an idle id stages no offsets"
        );
        out.records.push(Record::txn(id, None));
    }

    pub(crate) fn marker_request(&self, id: &StrBytes) -> MarkerRequest {
        let v = &self.txns[id.as_bytes()];
        MarkerRequest {
            transactional_id: id.clone(),
            producer_id: v.producer_id,
            producer_epoch: v.producer_epoch,
            commit: v
                .state
                .outcome()
                .expect("a completing transaction has an outcome"),
            partitions: v.partitions.iter().cloned().collect(),
            groups: self.group_offsets(id),
        }
    }

    /// The transaction's groups, each with the offsets staged for it (possibly none).
    pub(crate) fn group_offsets(&self, id: &StrBytes) -> Vec<GroupOffsets> {
        let v = &self.txns[id.as_bytes()];
        let staged = self.offsets.get(id.as_bytes());
        v.groups
            .iter()
            .map(|group_id| GroupOffsets {
                group_id: group_id.clone(),
                producer_id: v.producer_id,
                offsets: staged
                    .into_iter()
                    .flatten()
                    .filter(|((g, _, _), _)| g == group_id)
                    .map(|((_, topic, partition), o)| txn_offset(topic, *partition, o))
                    .collect(),
            })
            .collect()
    }

    /// Keeps only the staged offsets of `id` that belong to its transaction in flight.
    fn drop_foreign_offsets(&mut self, id: &StrBytes) {
        let Some(staged) = self.offsets.get_mut(id.as_bytes()) else {
            return;
        };
        match self.txns.get(id.as_bytes()) {
            Some(v) if v.state.in_flight() => {
                staged.retain(|(group, _, _), o| {
                    o.producer_id == v.producer_id && v.groups.contains(group)
                });
            }
            _ => staged.clear(),
        }
        if staged.is_empty() {
            self.offsets.remove(id.as_bytes());
        }
    }

    // ---- the deadline index ----

    fn deadline_ms(&self, v: &TxnValue) -> Option<u64> {
        let c = &self.config;
        match v.state {
            // Kafka aborts when `start + timeout < now`.
            TxnState::Ongoing => {
                let due = v
                    .start_ms
                    .saturating_add(i64::from(v.timeout_ms))
                    .saturating_add(1);
                Some(round_up(
                    unsigned(due),
                    c.transaction_abort_timed_out_transaction_cleanup_interval_ms,
                ))
            }
            TxnState::PrepareCommit | TxnState::PrepareAbort => None,
            // Kafka expires when `last_update <= now - expiration`.
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let due =
                    unsigned(v.last_update_ms).saturating_add(c.transactional_id_expiration_ms);
                Some(round_up(
                    due,
                    c.transaction_remove_expired_transaction_cleanup_interval_ms,
                ))
            }
        }
    }

    /// Re-indexes the deadline of `id` after a change, and checks its invariants.
    pub(crate) fn settle(&mut self, id: &StrBytes) {
        let Some(v) = self.txns.get(id.as_bytes()) else {
            return self.unindex(id);
        };
        #[cfg(debug_assertions)]
        if !self.replaying {
            self.assert_invariants(id);
        }
        let next = self.deadline_ms(v);
        if next == self.indexed.get(id.as_bytes()).copied() {
            return;
        }
        self.unindex(id);
        if let Some(deadline_ms) = next {
            self.deadlines.insert((deadline_ms, id.clone()));
            self.indexed.insert(id.clone(), deadline_ms);
        }
    }

    fn unindex(&mut self, id: &StrBytes) {
        if let Some(deadline_ms) = self.indexed.remove(id.as_bytes()) {
            let removed = self.deadlines.remove(&(deadline_ms, id.clone()));
            assert!(removed, "indexed deadline present");
        }
    }

    pub(crate) fn assert_recovered(&self) {
        assert!(!self.replaying, "recover() must follow the last replay()");
    }

    #[cfg(debug_assertions)]
    fn assert_invariants(&self, id: &StrBytes) {
        let v = &self.txns[id.as_bytes()];
        if let Err(reason) = crate::record::check_txn_value(v) {
            panic!("transaction {id}: {reason}");
        }
        for ((group, _, _), o) in self.offsets.get(id.as_bytes()).into_iter().flatten() {
            assert!(v.state.in_flight(), "offsets staged outside a transaction");
            assert_eq!(
                o.producer_id, v.producer_id,
                "offsets staged by another producer"
            );
            assert!(
                v.groups.contains(group),
                "offsets staged for a group not in the transaction"
            );
        }
    }

    #[cfg(debug_assertions)]
    fn assert_all(&self) {
        for id in self.txns.keys() {
            self.assert_invariants(id);
            assert_eq!(
                self.indexed.get(id.as_bytes()).copied(),
                self.deadline_ms(&self.txns[id.as_bytes()]),
                "indexed deadline"
            );
        }
        assert_eq!(
            self.indexed.len(),
            self.deadlines.len(),
            "deadline index size"
        );
        for id in self.offsets.keys() {
            assert!(
                self.txns.contains_key(id.as_bytes()),
                "offsets of an unknown transactional id"
            );
        }
    }

    /// Whether a new transactional id may be created.
    pub(crate) fn has_room(&self) -> bool {
        self.txns.len() < self.config.transactional_ids_max
    }
}

fn txn_offset(topic: &StrBytes, partition: i32, o: &StagedOffset) -> TxnOffset {
    TxnOffset {
        topic: topic.clone(),
        partition,
        offset: o.offset,
        leader_epoch: o.leader_epoch,
        metadata: o.metadata.clone(),
        commit_timestamp_ms: o.commit_timestamp_ms,
    }
}

/// Records hold signed milliseconds, as Kafka's do.
pub(crate) fn ms(now_ms: u64) -> i64 {
    i64::try_from(now_ms).unwrap_or(i64::MAX)
}

fn unsigned(ms: i64) -> u64 {
    u64::try_from(ms).unwrap_or(0)
}

/// The error a request gets when its producer was fenced: PRODUCER_FENCED from the versions that
/// know it (KIP-588), INVALID_PRODUCER_EPOCH before.
pub(crate) fn fenced(version: i16, first_version_with_producer_fenced: i16) -> ResponseError {
    if version >= first_version_with_producer_fenced {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}
