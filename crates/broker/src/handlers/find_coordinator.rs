//! FindCoordinator: this broker coordinates every group (key type 0) and every transactional id
//! (key type 1).

use acl::{Operation, Resource};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{
    BrokerId, FindCoordinatorRequest, FindCoordinatorResponse, ResponseKind,
};

use super::{code, str_bytes};
use crate::{Broker, ClientInfo};

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The coordinator's address is the one advertised on the listener `client` came in on.
pub fn handle(
    broker: &Broker,
    client: &ClientInfo,
    request: &FindCoordinatorRequest,
    version: i16,
) -> ResponseKind {
    let config = &broker.config;
    let advertised = config.advertised_for(&client.listener);
    // Finding a coordinator needs DESCRIBE on its group or transactional id.
    let answer = |key_type: i8, key: &str| -> Result<(), ResponseError> {
        let allows = |resource| broker.allows(client, Operation::Describe, resource);
        match key_type {
            KEY_TYPE_GROUP if !allows(Resource::group(key)) => {
                Err(ResponseError::GroupAuthorizationFailed)
            }
            KEY_TYPE_TRANSACTION if !allows(Resource::transactional_id(key)) => {
                Err(ResponseError::TransactionalIdAuthorizationFailed)
            }
            KEY_TYPE_GROUP | KEY_TYPE_TRANSACTION => Ok(()),
            _ => Err(ResponseError::CoordinatorNotAvailable),
        }
    };
    let node = BrokerId(config.node_id);
    let host = str_bytes(advertised.host.clone());
    let response = if version >= 4 {
        let coordinators = request
            .coordinator_keys
            .iter()
            .map(|key| {
                let coordinator = Coordinator::default().with_key(key.clone());
                match answer(request.key_type, key) {
                    Ok(()) => coordinator
                        .with_node_id(node)
                        .with_host(host.clone())
                        .with_port(advertised.port),
                    Err(error) => coordinator
                        .with_node_id(BrokerId(-1))
                        .with_error_code(code(error)),
                }
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        match answer(request.key_type, &request.key) {
            Ok(()) => FindCoordinatorResponse::default()
                .with_node_id(node)
                .with_host(host)
                .with_port(advertised.port),
            Err(error) => FindCoordinatorResponse::default()
                .with_node_id(BrokerId(-1))
                .with_error_code(code(error))
                .with_error_message((version >= 1).then(|| str_bytes(error.to_string()))),
        }
    };
    ResponseKind::FindCoordinator(response)
}
