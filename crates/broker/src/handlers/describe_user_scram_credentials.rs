//! DescribeUserScramCredentials (API 50, KIP-554): each user's SCRAM mechanisms and iteration
//! counts, never a key or salt. No users named (null or empty) means every user; a named user
//! without credentials is RESOURCE_NOT_FOUND and a name asked twice DUPLICATE_RESOURCE, as Kafka
//! answers.

use std::collections::BTreeMap;

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_user_scram_credentials_response::{
    CredentialInfo, DescribeUserScramCredentialsResult,
};
use kafka_protocol::messages::{
    DescribeUserScramCredentialsRequest, DescribeUserScramCredentialsResponse, ResponseKind,
};

use acl::{Operation, Resource};

use super::{code, str_bytes};
use crate::{Broker, ClientInfo};

pub fn handle(
    broker: &Broker,
    client: &ClientInfo,
    request: &DescribeUserScramCredentialsRequest,
) -> ResponseKind {
    // Describing credentials needs DESCRIBE on the cluster; Kafka refuses the whole request.
    if !broker.allows(client, Operation::Describe, Resource::CLUSTER) {
        let error = ResponseError::ClusterAuthorizationFailed;
        return ResponseKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsResponse::default()
                .with_error_code(code(error))
                .with_error_message(Some(str_bytes(error.to_string()))),
        );
    }
    let listed: BTreeMap<&str, Vec<CredentialInfo>> = broker
        .users
        .list()
        .map(|(name, mechanisms)| (name, infos(mechanisms)))
        .collect();
    let results = match request.users.as_deref() {
        None | Some([]) => listed
            .iter()
            .map(|(name, infos)| result(name).with_credential_infos(infos.clone()))
            .collect(),
        Some(names) => {
            let mut counts = BTreeMap::<&str, usize>::new();
            for name in names {
                *counts.entry(name.name.as_str()).or_default() += 1;
            }
            counts
                .into_iter()
                .map(|(name, count)| match listed.get(name) {
                    _ if count > 1 => failed(
                        name,
                        ResponseError::DuplicateResource,
                        "Cannot describe SCRAM credentials for the same user twice in a single request",
                    ),
                    Some(infos) => result(name).with_credential_infos(infos.clone()),
                    None => failed(
                        name,
                        ResponseError::ResourceNotFound,
                        "Attempt to describe a user credential that does not exist",
                    ),
                })
                .collect()
        }
    };
    ResponseKind::DescribeUserScramCredentials(
        DescribeUserScramCredentialsResponse::default().with_results(results),
    )
}

fn infos(mechanisms: Vec<(sasl::ScramMechanism, u32)>) -> Vec<CredentialInfo> {
    mechanisms
        .into_iter()
        .map(|(mechanism, iterations)| {
            CredentialInfo::default()
                .with_mechanism(mechanism.kafka_type())
                .with_iterations(iterations as i32)
        })
        .collect()
}

fn result(name: &str) -> DescribeUserScramCredentialsResult {
    DescribeUserScramCredentialsResult::default().with_user(str_bytes(name))
}

fn failed(name: &str, error: ResponseError, message: &str) -> DescribeUserScramCredentialsResult {
    result(name)
        .with_error_code(code(error))
        .with_error_message(Some(str_bytes(format!("{message}: {name}"))))
}
