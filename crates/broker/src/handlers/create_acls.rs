//! CreateAcls: each creation checked as Kafka checks it (defined codes, a `type:name`
//! principal, a resource name; CLUSTER's is `kafka-cluster`), answered INVALID_REQUEST
//! otherwise; the others added and written to `acls.json` durably before the answer. Needs
//! ALTER on the cluster; without an authorizer every creation is SECURITY_DISABLED.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_response::AclCreationResult;
use kafka_protocol::messages::{CreateAclsRequest, CreateAclsResponse, ResponseKind};

use super::{code, str_bytes};
use crate::acls::{self, CreateRefused, ACLS_MAX};
use crate::{Broker, BrokerError, ClientInfo};

pub fn handle(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &CreateAclsRequest,
) -> Result<ResponseKind, BrokerError> {
    let refused = |error: ResponseError, message: String| {
        AclCreationResult::default()
            .with_error_code(code(error))
            .with_error_message(Some(str_bytes(message)))
    };
    let results =
        if let Some((error, message)) = super::acl_change_refused(broker, client, "CreateAcls") {
            vec![refused(error, message); request.creations.len()]
        } else {
            let bindings = request.creations.iter().map(acls::binding).collect();
            broker
                .acls
                .create(bindings)
                .into_iter()
                .map(|answer| match answer {
                    Ok(()) => AclCreationResult::default().with_error_message(None),
                    Err(CreateRefused::Invalid(error)) => {
                        refused(ResponseError::InvalidRequest, error.to_string())
                    }
                    Err(CreateRefused::TooMany) => refused(
                        ResponseError::PolicyViolation,
                        format!("the broker holds {ACLS_MAX} ACLs, its limit"),
                    ),
                })
                .collect()
        };
    Ok(ResponseKind::CreateAcls(
        CreateAclsResponse::default().with_results(results),
    ))
}
