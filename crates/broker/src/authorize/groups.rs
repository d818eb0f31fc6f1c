//! Authorization of consumer group requests, around the `group` crate's coordinator (which knows
//! nothing of ACLs), with Kafka's operations:
//!
//! - JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit: READ on the group; refused whole
//!   (`group::refusal`: OffsetCommit's every partition) with GROUP_AUTHORIZATION_FAILED.
//!   OffsetCommit's topics also need READ: refused ones are taken out before the coordinator
//!   (`Broker::commit_refusal`, with the unknown partitions in `coordinators.rs`).
//! - OffsetFetch: DESCRIBE on the group (refused whole); of its topics, those it may not
//!   DESCRIBE are TOPIC_AUTHORIZATION_FAILED, or left out when it asked for all.
//! - OffsetDelete: DELETE on the group (refused whole); each topic READ, taken out as above.
//! - DescribeGroups: DESCRIBE per group; a refused group's entry is GROUP_AUTHORIZATION_FAILED
//!   alone; the others' authorized operations (KIP-430, when asked) are the client's.
//! - ListGroups: every group with DESCRIBE on the cluster, else those it may DESCRIBE.
//! - DeleteGroups: DELETE per group; refused ones are taken out before the coordinator.

use acl::{Operation, Resource};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{GroupId, ResponseKind};

use crate::{Broker, ClientInfo};

/// What authorization made of a group request, and what the coordinator's answer to it needs.
pub(crate) enum GroupCheck {
    /// Refused whole: this is the answer; the coordinator never sees the request.
    Refused(Box<ResponseKind>),
    /// Nothing (the authorizer is off, or the request needed no more).
    Unchanged,
    /// DeleteGroups: these groups were taken out, answered GROUP_AUTHORIZATION_FAILED.
    DeleteRefused(Vec<GroupId>),
    /// OffsetFetch: whether it asked for every topic.
    OffsetFetch {
        all_topics: bool,
    },
    ListGroups,
    DescribeGroups,
}

impl Broker {
    /// Checks a group request before the coordinator sees it.
    pub(crate) fn authorize_group(
        &self,
        client: &ClientInfo,
        version: i16,
        request: &mut group::Request,
    ) -> GroupCheck {
        use group::Request as R;
        if !self.authorizing() {
            return GroupCheck::Unchanged;
        }
        if let R::DeleteGroups(r) = request {
            let (allowed, refused) = std::mem::take(&mut r.groups_names)
                .into_iter()
                .partition(|g| self.allows(client, Operation::Delete, Resource::group(g)));
            r.groups_names = allowed;
            return GroupCheck::DeleteRefused(refused);
        }
        let (operation, group) = match &*request {
            R::JoinGroup(r) => (Operation::Read, &r.group_id),
            R::SyncGroup(r) => (Operation::Read, &r.group_id),
            R::Heartbeat(r) => (Operation::Read, &r.group_id),
            R::LeaveGroup(r) => (Operation::Read, &r.group_id),
            R::OffsetCommit(r) => (Operation::Read, &r.group_id),
            R::OffsetFetch(r) => (Operation::Describe, &r.group_id),
            R::OffsetDelete(r) => (Operation::Delete, &r.group_id),
            R::ListGroups(_) => return GroupCheck::ListGroups,
            R::DescribeGroups(_) => return GroupCheck::DescribeGroups,
            R::DeleteGroups(_) => unreachable!("answered above"),
        };
        if !self.allows(client, operation, Resource::group(group)) {
            let refused = group::refusal(version, request, ResponseError::GroupAuthorizationFailed);
            return GroupCheck::Refused(Box::new(crate::groups::response_kind(refused)));
        }
        match request {
            R::OffsetFetch(r) => GroupCheck::OffsetFetch {
                all_topics: r.topics.is_none(),
            },
            _ => GroupCheck::Unchanged,
        }
    }

    /// Why a topic of an OffsetCommit or OffsetDelete is refused: READ on it is needed.
    pub(crate) fn commit_refusal(&self, client: &ClientInfo, topic: &str) -> Option<ResponseError> {
        self.topic_denied(client, Operation::Read, topic)
    }

    /// Applies `check` to the coordinator's answer of the request it was made for.
    pub(crate) fn authorize_group_answer(
        &self,
        client: &ClientInfo,
        check: GroupCheck,
        answer: &mut ResponseKind,
    ) {
        match (check, answer) {
            (GroupCheck::Unchanged | GroupCheck::Refused(_), _) => {}
            (GroupCheck::DeleteRefused(refused), ResponseKind::DeleteGroups(r)) => {
                r.results.extend(refused.into_iter().map(|group_id| {
                    DeletableGroupResult::default()
                        .with_group_id(group_id)
                        .with_error_code(ResponseError::GroupAuthorizationFailed.code())
                }));
            }
            (GroupCheck::OffsetFetch { all_topics }, ResponseKind::OffsetFetch(r)) => {
                let denied =
                    |name: &str| !self.allows(client, Operation::Describe, Resource::topic(name));
                if all_topics {
                    r.topics.retain(|t| !denied(&t.name));
                }
                for topic in r.topics.iter_mut().filter(|t| denied(&t.name)) {
                    for p in &mut topic.partitions {
                        p.committed_offset = -1;
                        p.committed_leader_epoch = -1;
                        p.metadata = Some(Default::default());
                        p.error_code = ResponseError::TopicAuthorizationFailed.code();
                    }
                }
            }
            (GroupCheck::ListGroups, ResponseKind::ListGroups(r)) => {
                if !self.allows(client, Operation::Describe, Resource::CLUSTER) {
                    r.groups.retain(|g| {
                        self.allows(client, Operation::Describe, Resource::group(&g.group_id))
                    });
                }
            }
            (GroupCheck::DescribeGroups, ResponseKind::DescribeGroups(r)) => {
                for described in &mut r.groups {
                    let resource = Resource::group(&described.group_id);
                    if !self.allows(client, Operation::Describe, resource) {
                        let group_id = described.group_id.clone();
                        let error = ResponseError::GroupAuthorizationFailed;
                        *described = group::described_error(group_id, error);
                    } else if described.authorized_operations != i32::MIN {
                        described.authorized_operations =
                            self.authorized_operations(client, resource);
                    }
                }
            }
            (_, answer) => unreachable!("a check made for another request: {answer:?}"),
        }
    }
}
