//! The admin requests of KIP-664: ListTransactions and DescribeTransactions, answered from the
//! coordinator's state as Kafka's `TransactionStateManager` answers them.

use std::collections::BTreeSet;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{self, TopicData};
use kafka_protocol::messages::list_transactions_response;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::api::{Output, RequestContext, Response};
use crate::coordinator::{ms, TxnCoordinator};
use crate::state::{TxnState, TRANSIENT_STATE_NAMES};

/// How DescribeTransactions shows the consumer groups of a transaction: Kafka lists the group's
/// `__consumer_offsets` partition, and ferry's group log is that topic's only partition.
pub const GROUP_LOG_TOPIC: &str = "__consumer_offsets";

impl TxnCoordinator {
    /// ListTransactions v0–1: filters by state (unknown names are echoed back), producer id and,
    /// from v1, by running longer than `duration_filter` ms. v2's regular expression filter is
    /// not supported; advertise 0–1.
    pub fn handle_list_transactions(
        &mut self,
        now_ms: u64,
        ctx: &RequestContext,
        req: ListTransactionsRequest,
    ) -> Output {
        let mut r = ListTransactionsResponse::default();
        let mut states = BTreeSet::new();
        for name in &req.state_filters {
            match TxnState::from_name(name) {
                Some(state) => {
                    states.insert(state);
                }
                None if TRANSIENT_STATE_NAMES.contains(&name.as_str()) => {}
                None => r.unknown_state_filters.push(name.clone()),
            }
        }
        let duration_filter_ms = if ctx.api_version >= 1 {
            req.duration_filter
        } else {
            -1
        };
        let now = ms(now_ms);
        for (id, v) in &self.txns {
            let excluded = (!req.producer_id_filters.is_empty()
                && !req.producer_id_filters.iter().any(|p| p.0 == v.producer_id))
                || (!req.state_filters.is_empty() && !states.contains(&v.state))
                || (duration_filter_ms >= 0
                    && now.saturating_sub(v.start_ms) <= duration_filter_ms);
            if excluded {
                continue;
            }
            let mut t = list_transactions_response::TransactionState::default();
            t.transactional_id = TransactionalId(id.clone());
            t.producer_id = v.producer_id.into();
            t.transaction_state = StrBytes::from_static_str(v.state.as_str());
            r.transaction_states.push(t);
        }
        let mut out = Output::default();
        out.respond(ctx.token, Response::ListTransactions(r));
        out
    }

    /// DescribeTransactions v0.
    pub fn handle_describe_transactions(
        &mut self,
        _now_ms: u64,
        ctx: &RequestContext,
        req: DescribeTransactionsRequest,
    ) -> Output {
        let mut r = DescribeTransactionsResponse::default();
        for id in &req.transactional_ids {
            r.transaction_states.push(self.describe_one(id));
        }
        let mut out = Output::default();
        out.respond(ctx.token, Response::DescribeTransactions(r));
        out
    }

    fn describe_one(
        &self,
        id: &TransactionalId,
    ) -> describe_transactions_response::TransactionState {
        let mut t = describe_transactions_response::TransactionState::default();
        t.transactional_id = id.clone();
        if id.0.is_empty() {
            t.error_code = ResponseError::InvalidRequest.code();
            return t;
        }
        let Some(v) = self.txns.get(id.0.as_bytes()) else {
            t.error_code = ResponseError::TransactionalIdNotFound.code();
            return t;
        };
        t.producer_id = v.producer_id.into();
        t.producer_epoch = v.producer_epoch;
        t.transaction_state = StrBytes::from_static_str(v.state.as_str());
        t.transaction_timeout_ms = v.timeout_ms;
        t.transaction_start_time_ms = v.start_ms;
        for (topic, partition) in &v.partitions {
            let name = TopicName(topic.clone());
            match t.topics.iter_mut().find(|d| d.topic == name) {
                Some(d) => d.partitions.push(*partition),
                None => {
                    let mut d = TopicData::default();
                    d.topic = name;
                    d.partitions.push(*partition);
                    t.topics.push(d);
                }
            }
        }
        if !v.groups.is_empty() {
            let mut d = TopicData::default();
            d.topic = TopicName(StrBytes::from_static_str(GROUP_LOG_TOPIC));
            d.partitions.push(0);
            t.topics.push(d);
        }
        t
    }
}
