//! DescribeAcls: the ACLs a filter matches, grouped by resource pattern. Needs DESCRIBE on the
//! cluster; without an authorizer it is SECURITY_DISABLED, as in Kafka.

use acl::{Operation, Resource};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{DescribeAclsRequest, DescribeAclsResponse, ResponseKind};

use super::{code, str_bytes};
use crate::{acls, Broker, ClientInfo};

pub fn handle(broker: &Broker, client: &ClientInfo, request: &DescribeAclsRequest) -> ResponseKind {
    let failed = |error: ResponseError, message: String| {
        DescribeAclsResponse::default()
            .with_error_code(code(error))
            .with_error_message(Some(str_bytes(message)))
    };
    let response = match broker.acls.authorizer() {
        None => failed(ResponseError::SecurityDisabled, super::NO_AUTHORIZER.into()),
        Some(_) if !broker.allows(client, Operation::Describe, Resource::CLUSTER) => failed(
            ResponseError::ClusterAuthorizationFailed,
            "DescribeAcls needs DESCRIBE on the cluster".into(),
        ),
        Some(authorizer) => match acls::filter(request.into()) {
            Err(error) => failed(ResponseError::InvalidRequest, error.to_string()),
            Ok(filter) => DescribeAclsResponse::default()
                .with_error_message(None)
                .with_resources(acls::describe_resources(&authorizer.matching(&filter))),
        },
    };
    ResponseKind::DescribeAcls(response)
}
