//! DeleteAcls: per filter, the ACLs it matches are removed (and listed in its answer), written
//! to `acls.json` durably before the answer; a filter with an UNKNOWN or undefined code is
//! INVALID_REQUEST. Needs ALTER on the cluster; without an authorizer every filter is
//! SECURITY_DISABLED.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_acls_response::DeleteAclsFilterResult;
use kafka_protocol::messages::{DeleteAclsRequest, DeleteAclsResponse, ResponseKind};

use super::{code, str_bytes};
use crate::{acls, Broker, BrokerError, ClientInfo};

pub fn handle(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &DeleteAclsRequest,
) -> Result<ResponseKind, BrokerError> {
    let refused = |error: ResponseError, message: String| {
        DeleteAclsFilterResult::default()
            .with_error_code(code(error))
            .with_error_message(Some(str_bytes(message)))
    };
    let results =
        if let Some((error, message)) = super::acl_change_refused(broker, client, "DeleteAcls") {
            vec![refused(error, message); request.filters.len()]
        } else {
            let parsed: Vec<_> = request
                .filters
                .iter()
                .map(|f| acls::filter(f.into()))
                .collect();
            let valid: Vec<_> = parsed.iter().flatten().cloned().collect();
            let mut removed = broker.acls.delete(&valid).into_iter();
            parsed
                .into_iter()
                .map(|filter| match filter {
                    Err(error) => refused(ResponseError::InvalidRequest, error.to_string()),
                    Ok(_) => {
                        let gone = removed.next().expect("one answer per valid filter");
                        DeleteAclsFilterResult::default()
                            .with_error_message(None)
                            .with_matching_acls(gone.iter().map(acls::deleted).collect())
                    }
                })
                .collect()
        };
    Ok(ResponseKind::DeleteAcls(
        DeleteAclsResponse::default().with_filter_results(results),
    ))
}
