//! AlterUserScramCredentials and DescribeUserScramCredentials through `Broker::handle`: Kafka's
//! answers for every refusal beside the accepted control, the store surviving a reopen, and the
//! stored credential accepting the password the client salted.

use bytes::Bytes;
use kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use sasl::{Authenticator, Mechanism, ScramMechanism, Step};

use crate::idempotence::{call, open, request};

pub(crate) fn upsert(
    user: &str,
    mechanism: i8,
    iterations: i32,
    password: &str,
) -> ScramCredentialUpsertion {
    let salt = b"0123456789abcdef0123456789abcdef";
    let salted = match ScramMechanism::from_kafka_type(mechanism) {
        // What a client computes: PBKDF2 of the password (the test client's Hi).
        Some(m) => sasl::client::salted_password(m, password.as_bytes(), salt, 4096),
        None => vec![1; 32],
    };
    ScramCredentialUpsertion::default()
        .with_name(StrBytes::from_string(user.into()))
        .with_mechanism(mechanism)
        .with_iterations(iterations)
        .with_salt(Bytes::from_static(salt))
        .with_salted_password(Bytes::from(salted))
}

fn deletion(user: &str, mechanism: i8) -> ScramCredentialDeletion {
    ScramCredentialDeletion::default()
        .with_name(StrBytes::from_string(user.into()))
        .with_mechanism(mechanism)
}

/// Each user's error name in the answer, in user order.
fn alter(
    broker: &mut broker::Broker,
    deletions: Vec<ScramCredentialDeletion>,
    upserts: Vec<ScramCredentialUpsertion>,
) -> Vec<(String, String)> {
    let body = AlterUserScramCredentialsRequest::default()
        .with_deletions(deletions)
        .with_upsertions(upserts);
    let outcome = call(
        broker,
        request(
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(body),
        ),
    );
    let broker::Outcome::Respond(ResponseKind::AlterUserScramCredentials(response)) = outcome
    else {
        panic!("unexpected {outcome:?}");
    };
    response
        .results
        .iter()
        .map(|r| (r.user.to_string(), error_name(r.error_code)))
        .collect()
}

fn describe(broker: &mut broker::Broker, users: Option<Vec<&str>>) -> Vec<String> {
    let users = users.map(|names| {
        names
            .into_iter()
            .map(|n| UserName::default().with_name(StrBytes::from_string(n.into())))
            .collect()
    });
    let body = DescribeUserScramCredentialsRequest::default().with_users(users);
    let outcome = call(
        broker,
        request(
            ApiKey::DescribeUserScramCredentials,
            0,
            RequestKind::DescribeUserScramCredentials(body),
        ),
    );
    let broker::Outcome::Respond(ResponseKind::DescribeUserScramCredentials(response)) = outcome
    else {
        panic!("unexpected {outcome:?}");
    };
    response
        .results
        .iter()
        .map(|r| {
            let infos: Vec<String> = r
                .credential_infos
                .iter()
                .map(|i| format!("{}/{}", i.mechanism, i.iterations))
                .collect();
            format!(
                "{} {} {}",
                r.user,
                error_name(r.error_code),
                infos.join(",")
            )
        })
        .collect()
}

fn error_name(code: i16) -> String {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        Some(error) => format!("{error:?}"),
        None => "none".into(),
    }
}

fn ok(user: &str) -> (String, String) {
    (user.into(), "none".into())
}

fn err(user: &str, error: &str) -> (String, String) {
    (user.into(), error.into())
}

#[test]
fn scram_credentials_are_altered_described_and_kept_as_kafka_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open(dir.path());
    assert_eq!(describe(&mut broker, None), Vec::<String>::new());
    assert_eq!(
        alter(
            &mut broker,
            vec![deletion("ghost", 1)],
            vec![
                upsert("alice", 1, 4096, "pw"),
                upsert("alice", 2, 8192, "pw"),
                upsert("bob", 3, 4096, "pw"),
                upsert("carol", 1, 4095, "pw"),
                upsert("dave", 1, 16385, "pw"),
                upsert("erin", 1, 4096, "pw"),
                upsert("erin", 1, 4096, "pw"),
                upsert("", 1, 4096, "pw"),
            ],
        ),
        vec![
            err("", "UnacceptableCredential"),
            ok("alice"),
            err("bob", "UnsupportedSaslMechanism"),
            err("carol", "UnacceptableCredential"),
            err("dave", "UnacceptableCredential"),
            err("erin", "DuplicateResource"),
            err("ghost", "ResourceNotFound"),
        ]
    );
    // A failed user changes nothing, even its valid alterations (erin's first upsert).
    assert_eq!(
        describe(&mut broker, None),
        vec!["alice none 1/4096,2/8192"]
    );
    assert_eq!(
        describe(
            &mut broker,
            Some(vec!["alice", "nobody", "alice2", "alice2"])
        ),
        vec![
            "alice none 1/4096,2/8192",
            "alice2 DuplicateResource ",
            "nobody ResourceNotFound ",
        ]
    );
    // The stored credential accepts the password the client salted, and only it.
    for (password, accepted) in [("pw", true), ("wrong", false)] {
        let credential = broker.scram_credential("alice", ScramMechanism::Sha256);
        let mut server = Authenticator::new(Mechanism::Plain, "n".into(), b"secret");
        let step = server.step(&sasl::client::plain_message("alice", password), &|_, m| {
            (m == ScramMechanism::Sha256)
                .then(|| credential.clone())
                .flatten()
        });
        assert_eq!(
            matches!(step, Ok(Step::Done { .. })),
            accepted,
            "{password}"
        );
    }
    // Deleted, and the deletion survives a reopen as the upsert did.
    assert_eq!(
        alter(&mut broker, vec![deletion("alice", 1)], vec![]),
        vec![ok("alice")]
    );
    drop(broker);
    let mut broker = open(dir.path());
    assert_eq!(describe(&mut broker, None), vec!["alice none 2/8192"]);
    assert!(broker
        .scram_credential("alice", ScramMechanism::Sha512)
        .is_some());
    assert!(broker
        .scram_credential("alice", ScramMechanism::Sha256)
        .is_none());
}
