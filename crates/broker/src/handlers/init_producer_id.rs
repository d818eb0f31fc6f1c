//! InitProducerId (v0-4): a new producer id, epoch 0, for an idempotent producer.
//!
//! As in Kafka, a request without a transactional id always gets a fresh id, whatever
//! producer id and epoch it carries (v3+, KIP-360): an idempotent producer bumps its own epoch
//! and asks again only when it must start over. A producer id without an epoch, or the reverse,
//! is INVALID_REQUEST; an empty transactional id too.
//!
//! Transactional ids arrive with transactions (issue 5). Until then they are answered
//! COORDINATOR_NOT_AVAILABLE, which is what FindCoordinator answers for key type 1 as well:
//! a retriable error, so librdkafka's `init_transactions()` keeps retrying at
//! `retry.backoff.ms` and fails with that error at its own timeout instead of raising a fatal
//! error (TRANSACTIONAL_ID_AUTHORIZATION_FAILED would blame ACLs ferry does not have) or
//! spinning; Kafka answers the same while its transaction log is not loaded.

use acl::{Operation, Resource, ResourceType};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProducerId, ResponseKind,
};

use super::code;
use crate::{Broker, ClientInfo, Outcome};

const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

/// Answered at once, or once the block of the new id is durable (`producers/ids.rs`).
pub fn handle(broker: &Broker, client: &ClientInfo, request: &InitProducerIdRequest) -> Outcome {
    // An idempotent producer needs IDEMPOTENT_WRITE on the cluster or, since Kafka 3.0
    // (KIP-679), WRITE on some topic.
    let allowed = broker.allows(client, Operation::IdempotentWrite, Resource::CLUSTER)
        || broker.allows_any(client, Operation::Write, ResourceType::Topic);
    let refused = if allowed {
        refusal(request)
    } else {
        Some(ResponseError::ClusterAuthorizationFailed)
    };
    match refused {
        Some(error) => {
            tracing::debug!(
                transactional_id = ?request.transactional_id.as_ref().map(|t| t.0.as_str()),
                %error,
                "InitProducerId refused"
            );
            Outcome::Respond(ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_error_code(code(error))
                    .with_producer_id(ProducerId(NO_PRODUCER_ID))
                    .with_producer_epoch(NO_PRODUCER_EPOCH),
            ))
        }
        None => {
            let allocated = broker.producers.allocate(&broker.tickets);
            tracing::debug!(producer_id = allocated.id, "allocated a producer id");
            let response = ResponseKind::InitProducerId(
                InitProducerIdResponse::default()
                    .with_producer_id(ProducerId(allocated.id))
                    .with_producer_epoch(0),
            );
            match allocated.after_sync {
                Some(ticket) => Outcome::AfterSync { ticket, response },
                None => Outcome::Respond(response),
            }
        }
    }
}

/// Why the request cannot get a producer id, if it cannot.
fn refusal(request: &InitProducerIdRequest) -> Option<ResponseError> {
    let id_given = request.producer_id.0 != NO_PRODUCER_ID;
    let epoch_given = request.producer_epoch != NO_PRODUCER_EPOCH;
    if id_given != epoch_given {
        return Some(ResponseError::InvalidRequest);
    }
    match &request.transactional_id {
        None => None,
        Some(id) if id.0.is_empty() => Some(ResponseError::InvalidRequest),
        Some(_) => Some(ResponseError::CoordinatorNotAvailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::TransactionalId;
    use kafka_protocol::protocol::StrBytes;

    #[test]
    fn refusals_as_data() {
        let check = |txn: Option<&str>, id: i64, epoch: i16, expect: Option<ResponseError>| {
            let request = InitProducerIdRequest::default()
                .with_transactional_id(
                    txn.map(|t| TransactionalId(StrBytes::from_string(t.to_string()))),
                )
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch);
            assert_eq!(refusal(&request), expect, "{txn:?} {id} {epoch}");
        };
        check(None, -1, -1, None);
        check(None, 42, 3, None);
        check(None, 42, -1, Some(ResponseError::InvalidRequest));
        check(None, -1, 0, Some(ResponseError::InvalidRequest));
        check(Some(""), -1, -1, Some(ResponseError::InvalidRequest));
        check(
            Some("txn-1"),
            -1,
            -1,
            Some(ResponseError::CoordinatorNotAvailable),
        );
    }
}
