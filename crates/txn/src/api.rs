//! What goes into the coordinator (a request with its context, fresh producer ids, which
//! partitions exist) and what comes out (responses, records the broker must make durable first,
//! and the marker and offset actions it must then carry out).

use bytes::BytesMut;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::record::{Record, TopicPartition};

/// An opaque handle chosen by the caller for one request; the coordinator hands it back with the
/// response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResponseToken(pub u64);

/// Who sent a request and how to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub token: ResponseToken,
    /// The request's API version; the response is shaped for it (old versions get
    /// INVALID_PRODUCER_EPOCH where new ones get PRODUCER_FENCED, as in Kafka's KIP-588).
    pub api_version: i16,
}

/// Hands out producer ids for InitProducerId: the broker's durable allocator, which never repeats
/// an id, across restarts too. Allocation cannot fail here: a failed durable reservation stops the
/// broker (ferry never answers on top of a failed write).
pub trait ProducerIdSource {
    fn next(&mut self) -> i64;
}

impl<F: FnMut() -> i64> ProducerIdSource for F {
    fn next(&mut self) -> i64 {
        self()
    }
}

/// The broker's verdict on a topic partition of an AddPartitionsToTxn or TxnOffsetCommit, before
/// the transaction's: `Err` when the partition does not exist (UNKNOWN_TOPIC_OR_PARTITION) or
/// its topic is not the client's to use (TOPIC_AUTHORIZATION_FAILED), answered for it as
/// Kafka's request handlers do.
pub type PartitionCheck<'a> = &'a dyn Fn(&str, i32) -> Result<(), ResponseError>;

/// The consumer-group member fields of a TxnOffsetCommit v3+ (KIP-447). Before v3 a request
/// carries none: generation -1, an empty member id and no instance id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupMember<'a> {
    pub group_id: &'a str,
    pub member_id: &'a str,
    pub group_instance_id: Option<&'a str>,
    pub generation_id: i32,
}

/// The group coordinator's verdict on a TxnOffsetCommit's member fields (KIP-447):
/// ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID, or `None` to go on. The broker
/// asks its group coordinator, which checks OffsetCommit the same way; this crate knows nothing
/// of group membership.
pub type MemberCheck<'a> = &'a dyn Fn(&GroupMember) -> Option<ResponseError>;

/// The transaction requests the coordinator answers, for callers that prefer one entry point
/// ([`TxnCoordinator::handle`](crate::TxnCoordinator::handle)).
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// Only with a transactional id; a non-transactional InitProducerId is the broker's.
    InitProducerId(InitProducerIdRequest),
    AddPartitionsToTxn(AddPartitionsToTxnRequest),
    AddOffsetsToTxn(AddOffsetsToTxnRequest),
    EndTxn(EndTxnRequest),
    TxnOffsetCommit(TxnOffsetCommitRequest),
    ListTransactions(ListTransactionsRequest),
    DescribeTransactions(DescribeTransactionsRequest),
}

/// A response ready to encode at the version of the request it answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    InitProducerId(InitProducerIdResponse),
    AddPartitionsToTxn(AddPartitionsToTxnResponse),
    AddOffsetsToTxn(AddOffsetsToTxnResponse),
    EndTxn(EndTxnResponse),
    TxnOffsetCommit(TxnOffsetCommitResponse),
    ListTransactions(ListTransactionsResponse),
    DescribeTransactions(DescribeTransactionsResponse),
}

/// The message of a failed [`Response::encode`]; the codec reports no finer type.
#[derive(Debug, thiserror::Error)]
#[error("encode {api_key:?} response v{api_version}: {message}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub message: String,
}

impl Response {
    pub fn api_key(&self) -> ApiKey {
        match self {
            Response::InitProducerId(_) => ApiKey::InitProducerId,
            Response::AddPartitionsToTxn(_) => ApiKey::AddPartitionsToTxn,
            Response::AddOffsetsToTxn(_) => ApiKey::AddOffsetsToTxn,
            Response::EndTxn(_) => ApiKey::EndTxn,
            Response::TxnOffsetCommit(_) => ApiKey::TxnOffsetCommit,
            Response::ListTransactions(_) => ApiKey::ListTransactions,
            Response::DescribeTransactions(_) => ApiKey::DescribeTransactions,
        }
    }

    /// Encodes the response body (no header) at `api_version`.
    pub fn encode(&self, api_version: i16, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let result = match self {
            Response::InitProducerId(r) => r.encode(buf, api_version),
            Response::AddPartitionsToTxn(r) => r.encode(buf, api_version),
            Response::AddOffsetsToTxn(r) => r.encode(buf, api_version),
            Response::EndTxn(r) => r.encode(buf, api_version),
            Response::TxnOffsetCommit(r) => r.encode(buf, api_version),
            Response::ListTransactions(r) => r.encode(buf, api_version),
            Response::DescribeTransactions(r) => r.encode(buf, api_version),
        };
        result.map_err(|e| EncodeError {
            api_key: self.api_key(),
            api_version,
            message: e.to_string(),
        })
    }
}

/// An offset of a transaction, as the group coordinator commits it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TxnOffset {
    pub topic: StrBytes,
    pub partition: i32,
    pub offset: i64,
    /// -1 when the client sent none.
    pub leader_epoch: i32,
    /// Kafka stores a null metadata as the empty string.
    pub metadata: StrBytes,
    pub commit_timestamp_ms: i64,
}

/// Offsets of one transaction for one consumer group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupOffsets {
    pub group_id: StrBytes,
    pub producer_id: i64,
    pub offsets: Vec<TxnOffset>,
}

/// "Write these transaction markers": Kafka's WriteTxnMarkers, carried out by the broker itself.
///
/// For every partition, append a control batch (`producer_id`, `producer_epoch`, a COMMIT or
/// ABORT control record) and end the producer's transaction there (last stable offset; an abort
/// also goes into the aborted-transaction index). For every group, the group coordinator makes
/// the transaction's offsets committed (`commit`) or drops them: `stage_txn_offsets` with
/// `offsets` (they may not be staged any more after a restart), then `complete_txn_offsets`. Once
/// all of it is durable, call [`markers_written`](crate::TxnCoordinator::markers_written).
///
/// A marker request may be issued again after a restart (from [`recover`]), so carrying one out
/// twice must be harmless; it always has the same outcome for the same transaction.
///
/// [`recover`]: crate::TxnCoordinator::recover
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarkerRequest {
    pub transactional_id: StrBytes,
    pub producer_id: i64,
    /// The epoch to write the markers with: one above the producer's after a fence or a timeout,
    /// so the partitions fence the old producer too.
    pub producer_epoch: i16,
    pub commit: bool,
    pub partitions: Vec<TopicPartition>,
    pub groups: Vec<GroupOffsets>,
}

/// What one call produced.
///
/// Contract with the broker: append `records` to the transaction log in order. Send
/// `responses`, and carry out `markers` and `offsets_to_stage`, only once these records **and
/// every record of earlier outputs** are durable. The log is one ordered stream, so waiting for
/// the fsync that covers the log's last append is enough; an output without records still waits
/// for earlier ones (an answer such as "already added" rests on state that may still be in flight).
/// Writing markers before their PrepareCommit / PrepareAbort is durable could leave a crash with
/// commit markers on a transaction that recovery then aborts.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct Output {
    pub records: Vec<Record>,
    pub responses: Vec<(ResponseToken, Response)>,
    pub markers: Vec<MarkerRequest>,
    /// TxnOffsetCommit's offsets for the group coordinator's `stage_txn_offsets`, so OffsetFetch
    /// with `require_stable` answers UNSTABLE_OFFSET_COMMIT until the transaction ends.
    pub offsets_to_stage: Vec<GroupOffsets>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
            && self.responses.is_empty()
            && self.markers.is_empty()
            && self.offsets_to_stage.is_empty()
    }

    /// Appends `other` after `self`, keeping the order of everything.
    pub fn extend(&mut self, other: Output) {
        self.records.extend(other.records);
        self.responses.extend(other.responses);
        self.markers.extend(other.markers);
        self.offsets_to_stage.extend(other.offsets_to_stage);
    }

    pub(crate) fn respond(&mut self, token: ResponseToken, response: Response) {
        self.responses.push((token, response));
    }
}
