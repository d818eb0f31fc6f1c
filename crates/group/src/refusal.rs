//! [`refusal`]: the answer to a group request refused whole before it reaches a group (the
//! broker's authorization refuses with GROUP_AUTHORIZATION_FAILED), in each API's error shape at
//! its version, so the broker need not know those shapes. The coordinator's state is untouched.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsResponse, DescribeGroupsResponse, HeartbeatResponse, ListGroupsResponse,
    OffsetCommitResponse, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse,
};

use crate::api::{Request, Response};
use crate::coordinator::{leave_response, partition_v0};
use crate::group::{commit_error, join_error_response, sync_response, Fetched};

/// The first OffsetFetch version with a top-level error code.
const OFFSET_FETCH_ERROR_VERSION: i16 = 2;
/// The first OffsetFetch version with one answer per group.
const OFFSET_FETCH_GROUPS_VERSION: i16 = 8;

/// The answer to `request` (at `version`) refused whole with `error`.
pub fn refusal(version: i16, request: &Request, error: ResponseError) -> Response {
    let code = error.code();
    match request {
        Request::JoinGroup(r) => {
            Response::JoinGroup(join_error_response(version, r.member_id.clone(), error))
        }
        Request::SyncGroup(_) => {
            Response::SyncGroup(sync_response(version, None, Bytes::new(), Some(error)))
        }
        Request::Heartbeat(_) => {
            let mut r = HeartbeatResponse::default();
            r.error_code = code;
            Response::Heartbeat(r)
        }
        Request::LeaveGroup(_) => {
            Response::LeaveGroup(leave_response(version, Some(error), Vec::new()))
        }
        Request::OffsetCommit(r) => {
            let mut answer = OffsetCommitResponse::default();
            answer.topics = commit_error(&r.topics, Some(error));
            Response::OffsetCommit(answer)
        }
        Request::OffsetFetch(r) => Response::OffsetFetch(offset_fetch(version, r, error)),
        Request::ListGroups(_) => {
            let mut r = ListGroupsResponse::default();
            r.error_code = code;
            Response::ListGroups(r)
        }
        Request::DescribeGroups(r) => {
            let mut answer = DescribeGroupsResponse::default();
            answer.groups = r
                .groups
                .iter()
                .map(|id| described_error(id.clone(), error))
                .collect();
            Response::DescribeGroups(answer)
        }
        Request::DeleteGroups(r) => {
            let mut answer = DeleteGroupsResponse::default();
            answer.results = r
                .groups_names
                .iter()
                .map(|id| {
                    let mut result = DeletableGroupResult::default();
                    result.group_id = id.clone();
                    result.error_code = code;
                    result
                })
                .collect();
            Response::DeleteGroups(answer)
        }
        Request::OffsetDelete(_) => {
            let mut r = OffsetDeleteResponse::default();
            r.error_code = code;
            Response::OffsetDelete(r)
        }
    }
}

/// DescribeGroups' entry for a group answered with `error` alone (Kafka's `groupError`: no
/// state, no members, authorized operations not told).
pub fn described_error(
    group_id: kafka_protocol::messages::GroupId,
    error: ResponseError,
) -> DescribedGroup {
    let mut d = DescribedGroup::default();
    d.group_id = group_id;
    d.error_code = error.code();
    d.authorized_operations = i32::MIN;
    d
}

/// OffsetFetch refused: one error per group (v8+), the top-level error (v2+), or before v2 the
/// error on every partition asked for, as Kafka's `getErrorResponse` shapes it.
fn offset_fetch(
    version: i16,
    request: &OffsetFetchRequest,
    error: ResponseError,
) -> OffsetFetchResponse {
    let mut r = OffsetFetchResponse::default();
    if version >= OFFSET_FETCH_GROUPS_VERSION {
        r.groups = request
            .groups
            .iter()
            .map(|g| {
                let mut group = OffsetFetchResponseGroup::default();
                group.group_id = g.group_id.clone();
                group.error_code = error.code();
                group
            })
            .collect();
    } else if version >= OFFSET_FETCH_ERROR_VERSION {
        r.error_code = error.code();
    } else {
        r.topics = request
            .topics
            .iter()
            .flatten()
            .map(|t| {
                let mut topic = OffsetFetchResponseTopic::default();
                topic.name = t.name.clone();
                topic.partitions = t
                    .partition_indexes
                    .iter()
                    .map(|&p| {
                        let fetched = Fetched {
                            error: Some(error),
                            ..Fetched::none()
                        };
                        partition_v0(p, fetched)
                    })
                    .collect();
                topic
            })
            .collect();
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    fn group() -> GroupId {
        GroupId(StrBytes::from_static_str("g"))
    }

    /// Every refusal encodes at every version of its API and carries the error where that
    /// version has room for it.
    #[test]
    fn refusals_carry_the_error_at_every_version() {
        let error = ResponseError::GroupAuthorizationFailed;
        let code = error.code();
        let fetch_topics = Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_indexes(vec![0, 1])]);
        let requests = [
            Request::JoinGroup(JoinGroupRequest::default().with_group_id(group())),
            Request::SyncGroup(SyncGroupRequest::default().with_group_id(group())),
            Request::Heartbeat(HeartbeatRequest::default().with_group_id(group())),
            Request::LeaveGroup(LeaveGroupRequest::default().with_group_id(group())),
            Request::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(group())
                    .with_topics(fetch_topics)
                    .with_groups(vec![
                        offset_fetch_request::OffsetFetchRequestGroup::default()
                            .with_group_id(group()),
                    ]),
            ),
            Request::ListGroups(ListGroupsRequest::default()),
            Request::DescribeGroups(DescribeGroupsRequest::default().with_groups(vec![group()])),
            Request::DeleteGroups(DeleteGroupsRequest::default().with_groups_names(vec![group()])),
            Request::OffsetDelete(OffsetDeleteRequest::default().with_group_id(group())),
        ];
        for request in &requests {
            let versions = refusal(0, request, error).api_key().valid_versions();
            for version in versions.min..=versions.max {
                let response = refusal(version, request, error);
                response
                    .encode(version, &mut bytes::BytesMut::new())
                    .unwrap_or_else(|e| panic!("{request:?} v{version}: {e}"));
                let carried = match &response {
                    Response::JoinGroup(r) => r.error_code,
                    Response::SyncGroup(r) => r.error_code,
                    Response::Heartbeat(r) => r.error_code,
                    Response::LeaveGroup(r) => r.error_code,
                    Response::OffsetFetch(r) if version >= 8 => r.groups[0].error_code,
                    Response::OffsetFetch(r) if version >= 2 => r.error_code,
                    Response::OffsetFetch(r) => r.topics[0].partitions[1].error_code,
                    Response::ListGroups(r) => r.error_code,
                    Response::DescribeGroups(r) => r.groups[0].error_code,
                    Response::DeleteGroups(r) => r.results[0].error_code,
                    Response::OffsetDelete(r) => r.error_code,
                    Response::OffsetCommit(_) => unreachable!("not asked"),
                };
                assert_eq!(carried, code, "{request:?} v{version}");
            }
        }
    }
}
