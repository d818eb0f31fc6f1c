//! AlterUserScramCredentials (API 51, KIP-554): deletions and upserts of SCRAM credentials. An
//! upsert arrives salted (salt, iterations, SaltedPassword: never the password); the StoredKey
//! and ServerKey are derived here and only they are stored. Each user is judged whole: any bad
//! alteration of a user fails all of that user's, as Kafka does. The store is written durably
//! before the answer.

use std::collections::BTreeMap;

use acl::{Operation, Resource};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_user_scram_credentials_response::AlterUserScramCredentialsResult;
use kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, AlterUserScramCredentialsResponse, ResponseKind,
};
use sasl::{ScramCredential, ScramMechanism};

use super::{code, str_bytes};
use crate::users::check_user_name;
use crate::{Broker, BrokerError, ClientInfo};

/// One user's failure: the error and its message.
type Refusal = (ResponseError, String);

/// One alteration: a deletion (None) or an upsert's credential.
struct Alteration {
    mechanism: i8,
    upsert: Option<Result<ScramCredential, Refusal>>,
}

pub fn handle(
    broker: &mut Broker,
    client: &ClientInfo,
    request: &AlterUserScramCredentialsRequest,
) -> Result<ResponseKind, BrokerError> {
    // Altering credentials needs ALTER on the cluster; Kafka answers each user with the error.
    if !broker.allows(client, Operation::Alter, Resource::CLUSTER) {
        let error = ResponseError::ClusterAuthorizationFailed;
        let users: std::collections::BTreeSet<&str> = request
            .deletions
            .iter()
            .map(|d| d.name.as_str())
            .chain(request.upsertions.iter().map(|u| u.name.as_str()))
            .collect();
        let results = users
            .into_iter()
            .map(|name| {
                AlterUserScramCredentialsResult::default()
                    .with_user(str_bytes(name))
                    .with_error_code(code(error))
                    .with_error_message(Some(str_bytes(error.to_string())))
            })
            .collect();
        return Ok(ResponseKind::AlterUserScramCredentials(
            AlterUserScramCredentialsResponse::default().with_results(results),
        ));
    }
    let mut by_user = BTreeMap::<&str, Vec<Alteration>>::new();
    for deletion in &request.deletions {
        by_user
            .entry(deletion.name.as_str())
            .or_default()
            .push(Alteration {
                mechanism: deletion.mechanism,
                upsert: None,
            });
    }
    for upsert in &request.upsertions {
        let credential = salted(
            upsert.mechanism,
            upsert.iterations,
            &upsert.salt,
            &upsert.salted_password,
        );
        by_user
            .entry(upsert.name.as_str())
            .or_default()
            .push(Alteration {
                mechanism: upsert.mechanism,
                upsert: Some(credential),
            });
    }
    let mut deletions = Vec::new();
    let mut upserts = Vec::new();
    let mut results = Vec::new();
    for (name, alterations) in by_user {
        let verdict = judge(broker, name, alterations);
        let result = AlterUserScramCredentialsResult::default().with_user(str_bytes(name));
        results.push(match verdict {
            Ok(changes) => {
                for (mechanism, credential) in changes {
                    match credential {
                        Some(credential) => upserts.push((name.to_string(), mechanism, credential)),
                        None => deletions.push((name.to_string(), mechanism)),
                    }
                }
                result
            }
            Err((error, message)) => result
                .with_error_code(code(error))
                .with_error_message(Some(str_bytes(message))),
        });
    }
    broker.users.stage(&deletions, upserts);
    Ok(ResponseKind::AlterUserScramCredentials(
        AlterUserScramCredentialsResponse::default().with_results(results),
    ))
}

/// A user's alterations checked together: the changes to make, or the first refusal.
fn judge(
    broker: &Broker,
    name: &str,
    alterations: Vec<Alteration>,
) -> Result<Vec<(ScramMechanism, Option<ScramCredential>)>, Refusal> {
    if let Some(why) = check_user_name(name) {
        return Err((ResponseError::UnacceptableCredential, why.to_string()));
    }
    let mut changes = BTreeMap::new();
    for alteration in alterations {
        let mechanism = ScramMechanism::from_kafka_type(alteration.mechanism).ok_or_else(|| {
            (
                ResponseError::UnsupportedSaslMechanism,
                format!("Unknown SCRAM mechanism {}", alteration.mechanism),
            )
        })?;
        let change = match alteration.upsert {
            Some(credential) => Some(credential?),
            None if broker.users.credential(name, mechanism).is_none() => {
                return Err((
                    ResponseError::ResourceNotFound,
                    format!("Attempt to delete a user credential that does not exist: {mechanism}"),
                ));
            }
            None => None,
        };
        if changes.insert(mechanism, change).is_some() {
            return Err((
                ResponseError::DuplicateResource,
                "A user credential cannot be altered twice in the same request".to_string(),
            ));
        }
    }
    Ok(changes.into_iter().collect())
}

/// The credential an upsert makes, or why it is unacceptable.
fn salted(
    mechanism: i8,
    iterations: i32,
    salt: &[u8],
    salted_password: &[u8],
) -> Result<ScramCredential, Refusal> {
    let unacceptable = |message: String| (ResponseError::UnacceptableCredential, message);
    let Some(mechanism) = ScramMechanism::from_kafka_type(mechanism) else {
        return Err((
            ResponseError::UnsupportedSaslMechanism,
            format!("Unknown SCRAM mechanism {mechanism}"),
        ));
    };
    if iterations < sasl::ITERATIONS_MIN as i32 {
        return Err(unacceptable(format!("Too few iterations: {iterations}")));
    }
    if iterations > sasl::ITERATIONS_MAX as i32 {
        return Err(unacceptable(format!("Too many iterations: {iterations}")));
    }
    if salted_password.is_empty() {
        return Err(unacceptable("The salted password is empty".into()));
    }
    ScramCredential::from_salted_password(mechanism, salted_password, salt, iterations as u32)
        .map_err(|error| unacceptable(error.to_string()))
}
