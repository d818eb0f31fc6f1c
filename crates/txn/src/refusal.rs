//! [`refusal`]: the answer to a transaction request refused whole before it reaches the
//! coordinator (the broker's authorization: TRANSACTIONAL_ID_AUTHORIZATION_FAILED or
//! GROUP_AUTHORIZATION_FAILED), in each API's error shape, so the broker need not know those
//! shapes. The coordinator's state is untouched.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnResponse, DescribeTransactionsResponse,
    EndTxnResponse, InitProducerIdResponse, ListTransactionsResponse, ProducerId,
    TxnOffsetCommitResponse,
};

use crate::api::{Request, Response};

/// The answer to `request` refused whole with `error`: on every partition where the API
/// answers per partition (AddPartitionsToTxn v0–3, TxnOffsetCommit), on every id
/// (DescribeTransactions), else its error code.
pub fn refusal(request: &Request, error: ResponseError) -> Response {
    let code = error.code();
    match request {
        Request::InitProducerId(_) => {
            let mut r = InitProducerIdResponse::default();
            r.error_code = code;
            r.producer_id = ProducerId(-1);
            r.producer_epoch = -1;
            Response::InitProducerId(r)
        }
        Request::AddPartitionsToTxn(request) => {
            let mut r = AddPartitionsToTxnResponse::default();
            r.results_by_topic_v3_and_below = request
                .v3_and_below_topics
                .iter()
                .map(|topic| {
                    let mut t = AddPartitionsToTxnTopicResult::default();
                    t.name = topic.name.clone();
                    t.results_by_partition = topic
                        .partitions
                        .iter()
                        .map(|&partition| {
                            let mut p = AddPartitionsToTxnPartitionResult::default();
                            p.partition_index = partition;
                            p.partition_error_code = code;
                            p
                        })
                        .collect();
                    t
                })
                .collect();
            Response::AddPartitionsToTxn(r)
        }
        Request::AddOffsetsToTxn(_) => {
            let mut r = AddOffsetsToTxnResponse::default();
            r.error_code = code;
            Response::AddOffsetsToTxn(r)
        }
        Request::EndTxn(_) => {
            let mut r = EndTxnResponse::default();
            r.error_code = code;
            Response::EndTxn(r)
        }
        Request::TxnOffsetCommit(request) => {
            let mut r = TxnOffsetCommitResponse::default();
            r.topics = request
                .topics
                .iter()
                .map(|topic| {
                    let mut t = TxnOffsetCommitResponseTopic::default();
                    t.name = topic.name.clone();
                    t.partitions = topic
                        .partitions
                        .iter()
                        .map(|partition| {
                            let mut p = TxnOffsetCommitResponsePartition::default();
                            p.partition_index = partition.partition_index;
                            p.error_code = code;
                            p
                        })
                        .collect();
                    t
                })
                .collect();
            Response::TxnOffsetCommit(r)
        }
        Request::ListTransactions(_) => {
            let mut r = ListTransactionsResponse::default();
            r.error_code = code;
            Response::ListTransactions(r)
        }
        Request::DescribeTransactions(request) => {
            let mut r = DescribeTransactionsResponse::default();
            r.transaction_states = request
                .transactional_ids
                .iter()
                .map(|id| {
                    let mut t = TransactionState::default();
                    t.transactional_id = id.clone();
                    t.error_code = code;
                    t
                })
                .collect();
            Response::DescribeTransactions(r)
        }
    }
}
