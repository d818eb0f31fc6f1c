//! Authorization of transaction requests, around the `txn` crate's coordinator (which knows
//! nothing of ACLs), with Kafka's operations:
//!
//! - InitProducerId (with a transactional id), EndTxn: WRITE on the transactional id; refused
//!   whole (`txn::refusal`) with TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
//! - AddPartitionsToTxn: that, then WRITE on each topic: a refused topic's partitions are
//!   TOPIC_AUTHORIZATION_FAILED and the rest OPERATION_NOT_ATTEMPTED, as for unknown partitions
//!   (the coordinator's `PartitionCheck`).
//! - AddOffsetsToTxn: that, then READ on the group (GROUP_AUTHORIZATION_FAILED).
//! - TxnOffsetCommit: that, READ on the group, then READ on each topic (per partition).
//! - ListTransactions: the transactional ids it may DESCRIBE.
//! - DescribeTransactions: DESCRIBE per id (TRANSACTIONAL_ID_AUTHORIZATION_FAILED), and of each
//!   transaction only the topics it may DESCRIBE.

use acl::{Operation, Resource};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::ResponseKind;

use crate::{transactions, Broker, ClientInfo};

/// What authorization made of a transaction request, and what the coordinator's answer to it
/// needs.
pub(crate) enum TxnCheck {
    /// Refused whole: this is the answer; the coordinator never sees the request.
    Refused(Box<ResponseKind>),
    /// Nothing (the authorizer is off, or the request needed no more).
    Unchanged,
    /// AddPartitionsToTxn or TxnOffsetCommit: the topics the client may not WRITE (READ),
    /// whose partitions the coordinator answers TOPIC_AUTHORIZATION_FAILED.
    RefusedTopics(Vec<String>),
    ListTransactions,
    DescribeTransactions,
}

impl TxnCheck {
    /// The topics the coordinator must refuse.
    pub(crate) fn refused_topics(&self) -> &[String] {
        match self {
            TxnCheck::RefusedTopics(topics) => topics,
            _ => &[],
        }
    }
}

impl Broker {
    /// Checks a transaction request before the coordinator sees it.
    pub(crate) fn authorize_txn(&self, client: &ClientInfo, request: &txn::Request) -> TxnCheck {
        use txn::Request as R;
        if !self.authorizing() {
            return TxnCheck::Unchanged;
        }
        let writes =
            |id: &str| self.allows(client, Operation::Write, Resource::transactional_id(id));
        let reads = |group: &str| self.allows(client, Operation::Read, Resource::group(group));
        let refused = |error| {
            TxnCheck::Refused(Box::new(transactions::response_kind(txn::refusal(
                request, error,
            ))))
        };
        let id_refused = ResponseError::TransactionalIdAuthorizationFailed;
        let group_refused = ResponseError::GroupAuthorizationFailed;
        let refused_topics = |operation, names: Vec<&str>| {
            let refused = names
                .into_iter()
                .filter(|name| self.topic_denied(client, operation, name).is_some())
                .map(str::to_string)
                .collect();
            TxnCheck::RefusedTopics(refused)
        };
        match request {
            R::InitProducerId(r) => {
                let id = r.transactional_id.as_deref().map_or("", |id| id.as_str());
                if !writes(id) {
                    return refused(id_refused);
                }
                TxnCheck::Unchanged
            }
            R::AddPartitionsToTxn(r) => {
                if !writes(&r.v3_and_below_transactional_id) {
                    return refused(id_refused);
                }
                let topics = r.v3_and_below_topics.iter().map(|t| t.name.as_str());
                refused_topics(Operation::Write, topics.collect())
            }
            R::AddOffsetsToTxn(r) => {
                if !writes(&r.transactional_id) {
                    return refused(id_refused);
                }
                if !reads(&r.group_id) {
                    return refused(group_refused);
                }
                TxnCheck::Unchanged
            }
            R::EndTxn(r) => {
                if !writes(&r.transactional_id) {
                    return refused(id_refused);
                }
                TxnCheck::Unchanged
            }
            R::TxnOffsetCommit(r) => {
                if !writes(&r.transactional_id) {
                    return refused(id_refused);
                }
                if !reads(&r.group_id) {
                    return refused(group_refused);
                }
                let topics = r.topics.iter().map(|t| t.name.as_str());
                refused_topics(Operation::Read, topics.collect())
            }
            R::ListTransactions(_) => TxnCheck::ListTransactions,
            R::DescribeTransactions(_) => TxnCheck::DescribeTransactions,
        }
    }

    /// Applies `check` to the coordinator's answer of the request it was made for.
    pub(crate) fn authorize_txn_answer(
        &self,
        client: &ClientInfo,
        check: TxnCheck,
        answer: &mut ResponseKind,
    ) {
        let describes_id =
            |id: &str| self.allows(client, Operation::Describe, Resource::transactional_id(id));
        match (check, answer) {
            (TxnCheck::Unchanged | TxnCheck::Refused(_) | TxnCheck::RefusedTopics(_), _) => {}
            (TxnCheck::ListTransactions, ResponseKind::ListTransactions(r)) => {
                r.transaction_states
                    .retain(|t| describes_id(&t.transactional_id));
            }
            (TxnCheck::DescribeTransactions, ResponseKind::DescribeTransactions(r)) => {
                for state in &mut r.transaction_states {
                    if !describes_id(&state.transactional_id) {
                        let error = ResponseError::TransactionalIdAuthorizationFailed;
                        *state = TransactionState::default()
                            .with_transactional_id(state.transactional_id.clone())
                            .with_error_code(error.code());
                        continue;
                    }
                    state.topics.retain(|t| {
                        self.allows(client, Operation::Describe, Resource::topic(&t.topic))
                    });
                }
            }
            (_, answer) => unreachable!("a check made for another request: {answer:?}"),
        }
    }
}
