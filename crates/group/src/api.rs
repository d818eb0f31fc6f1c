//! What goes into the coordinator (a request with its context) and what comes out (responses keyed
//! by the caller's tokens, and records the broker must make durable first).

use bytes::BytesMut;
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

use crate::record::Record;

/// An opaque handle chosen by the caller for one request; the coordinator hands it back with the
/// response, which for JoinGroup and SyncGroup can come much later (from another member's request
/// or from [`tick`](crate::GroupCoordinator::tick)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ResponseToken(pub u64);

/// Who sent a request and how to answer it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestContext {
    pub token: ResponseToken,
    /// The request's API version; the response is shaped for it.
    pub api_version: i16,
    /// The `client_id` of the request header; JoinGroup builds member ids from it.
    pub client_id: StrBytes,
    /// The client's address as DescribeGroups shows it (Kafka prints `/127.0.0.1`).
    pub client_host: StrBytes,
}

/// The group requests the coordinator answers, for callers that prefer one entry point
/// ([`GroupCoordinator::handle`](crate::GroupCoordinator::handle)).
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    JoinGroup(JoinGroupRequest),
    SyncGroup(SyncGroupRequest),
    Heartbeat(HeartbeatRequest),
    LeaveGroup(LeaveGroupRequest),
    OffsetCommit(OffsetCommitRequest),
    OffsetFetch(OffsetFetchRequest),
    ListGroups(ListGroupsRequest),
    DescribeGroups(DescribeGroupsRequest),
    DeleteGroups(DeleteGroupsRequest),
    OffsetDelete(OffsetDeleteRequest),
}

/// A response ready to encode at the version of the request it answers.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    Heartbeat(HeartbeatResponse),
    LeaveGroup(LeaveGroupResponse),
    OffsetCommit(OffsetCommitResponse),
    OffsetFetch(OffsetFetchResponse),
    ListGroups(ListGroupsResponse),
    DescribeGroups(DescribeGroupsResponse),
    DeleteGroups(DeleteGroupsResponse),
    OffsetDelete(OffsetDeleteResponse),
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
            Response::JoinGroup(_) => ApiKey::JoinGroup,
            Response::SyncGroup(_) => ApiKey::SyncGroup,
            Response::Heartbeat(_) => ApiKey::Heartbeat,
            Response::LeaveGroup(_) => ApiKey::LeaveGroup,
            Response::OffsetCommit(_) => ApiKey::OffsetCommit,
            Response::OffsetFetch(_) => ApiKey::OffsetFetch,
            Response::ListGroups(_) => ApiKey::ListGroups,
            Response::DescribeGroups(_) => ApiKey::DescribeGroups,
            Response::DeleteGroups(_) => ApiKey::DeleteGroups,
            Response::OffsetDelete(_) => ApiKey::OffsetDelete,
        }
    }

    /// Encodes the response body (no header) at `api_version`.
    pub fn encode(&self, api_version: i16, buf: &mut BytesMut) -> Result<(), EncodeError> {
        let result = match self {
            Response::JoinGroup(r) => r.encode(buf, api_version),
            Response::SyncGroup(r) => r.encode(buf, api_version),
            Response::Heartbeat(r) => r.encode(buf, api_version),
            Response::LeaveGroup(r) => r.encode(buf, api_version),
            Response::OffsetCommit(r) => r.encode(buf, api_version),
            Response::OffsetFetch(r) => r.encode(buf, api_version),
            Response::ListGroups(r) => r.encode(buf, api_version),
            Response::DescribeGroups(r) => r.encode(buf, api_version),
            Response::DeleteGroups(r) => r.encode(buf, api_version),
            Response::OffsetDelete(r) => r.encode(buf, api_version),
        };
        result.map_err(|e| EncodeError {
            api_key: self.api_key(),
            api_version,
            message: e.to_string(),
        })
    }
}

/// What one call produced.
///
/// Contract with the broker: append `records` to the group log in order; if there are any, make
/// them durable (fsync) before sending **any** of `responses`. Responses of one output may answer
/// requests of several members; send each on the connection that owns its token, and drop those
/// whose connection has gone.
#[derive(Clone, Debug, Default, PartialEq)]
#[must_use]
pub struct Output {
    pub records: Vec<Record>,
    pub responses: Vec<(ResponseToken, Response)>,
}

impl Output {
    pub fn is_empty(&self) -> bool {
        self.records.is_empty() && self.responses.is_empty()
    }

    /// Appends `other` after `self`, keeping the order of records and responses.
    pub fn extend(&mut self, other: Output) {
        self.records.extend(other.records);
        self.responses.extend(other.responses);
    }

    pub(crate) fn respond(&mut self, token: ResponseToken, response: Response) {
        self.responses.push((token, response));
    }
}
