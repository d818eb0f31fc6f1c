//! One module per Kafka API. Each `handle` takes the decoded request (and the broker state, and
//! the time where it matters) and returns the response; none of them does socket I/O.

pub mod alter_configs;
pub mod alter_user_scram_credentials;
pub mod api_versions;
pub mod create_acls;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_acls;
pub mod delete_records;
pub mod delete_topics;
pub mod describe_acls;
pub mod describe_configs;
pub mod describe_log_dirs;
pub mod describe_producers;
pub mod describe_user_scram_credentials;
pub mod fetch;
pub mod find_coordinator;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;
pub mod sasl;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::TopicName;
use kafka_protocol::protocol::StrBytes;

/// The ACL APIs' message without an authorizer (Kafka's words).
const NO_AUTHORIZER: &str = "No Authorizer is configured on the broker";

/// Why a change to the ACLs (`api`: CreateAcls, DeleteAcls) is refused as a whole, if it is:
/// no authorizer (SECURITY_DISABLED), or no ALTER on the cluster.
fn acl_change_refused(
    broker: &crate::Broker,
    client: &crate::ClientInfo,
    api: &str,
) -> Option<(kafka_protocol::error::ResponseError, String)> {
    use kafka_protocol::error::ResponseError;
    if broker.acls.authorizer().is_none() {
        return Some((ResponseError::SecurityDisabled, NO_AUTHORIZER.into()));
    }
    if !broker.allows(client, acl::Operation::Alter, acl::Resource::CLUSTER) {
        let message = format!("{api} needs ALTER on the cluster");
        return Some((ResponseError::ClusterAuthorizationFailed, message));
    }
    None
}

pub(crate) fn code(error: ResponseError) -> i16 {
    error.code()
}

pub(crate) fn str_bytes(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

pub(crate) fn topic_name(s: &str) -> TopicName {
    TopicName(str_bytes(s))
}
