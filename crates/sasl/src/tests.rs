//! Whole exchanges through [`Authenticator`]: the RFC 7677 test vector, round trips with the
//! test client, and every way an exchange must fail (each beside its succeeding control).

use proptest::prelude::*;

use crate::client::{plain_message, ScramClient};
use crate::{Authenticator, Mechanism, SaslError, ScramCredential, ScramMechanism, Step};

const SECRET: &[u8] = b"unknown-user-secret";

/// A store with `user` (password `pencil`) for both SCRAM mechanisms, salted as ferry salts.
fn store(mechanism: ScramMechanism) -> Option<ScramCredential> {
    let salt = [7; crate::SALT_BYTES];
    Some(ScramCredential::from_password(mechanism, b"pencil", &salt, 4096).unwrap())
}

fn lookup(user: &str, mechanism: ScramMechanism) -> Option<ScramCredential> {
    (user == "user").then(|| store(mechanism)).flatten()
}

fn text(step: Step) -> String {
    match step {
        Step::Continue(bytes) => String::from_utf8(bytes).unwrap(),
        other => panic!("expected a continuation, got {other:?}"),
    }
}

/// Runs a SCRAM exchange with the test client; the server's final answer or its error.
fn scram(
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
    server_nonce: &str,
) -> Result<Step, SaslError> {
    let mut client = ScramClient::new(mechanism, user, password, "client-nonce");
    let mut server = Authenticator::new(mechanism.mechanism(), server_nonce.into(), SECRET);
    let server_first = text(server.step(client.client_first().as_bytes(), &lookup)?);
    let client_final = client.client_final(&server_first).unwrap();
    server.step(client_final.as_bytes(), &lookup)
}

#[test]
fn rfc_7677_sha_256_test_vector() {
    let salt = base64_decode("W22ZaJ0SNY7soEsUEjb6gQ==");
    let credential =
        ScramCredential::from_password(ScramMechanism::Sha256, b"pencil", &salt, 4096).unwrap();
    let lookup = |user: &str, _| (user == "user").then(|| credential.clone());
    let mut server = Authenticator::new(
        Mechanism::ScramSha256,
        "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into(),
        SECRET,
    );
    let server_first = server
        .step(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &lookup)
        .unwrap();
    assert_eq!(
        text(server_first),
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
    );
    let client_final = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                        p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let done = server.step(client_final.as_bytes(), &lookup).unwrap();
    assert_eq!(
        done,
        Step::Done {
            user: "user".into(),
            response: b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".to_vec(),
        }
    );
    assert_eq!(
        server.step(client_final.as_bytes(), &lookup),
        Err(SaslError::Finished)
    );
}

#[test]
fn both_scram_mechanisms_round_trip_and_the_client_checks_the_server() {
    for mechanism in ScramMechanism::ALL {
        let mut client = ScramClient::new(mechanism, "user", "pencil", "cnonce");
        let mut server = Authenticator::new(mechanism.mechanism(), "snonce".into(), SECRET);
        let first = text(
            server
                .step(client.client_first().as_bytes(), &lookup)
                .unwrap(),
        );
        let last = client.client_final(&first).unwrap();
        let Step::Done { user, response } = server.step(last.as_bytes(), &lookup).unwrap() else {
            panic!("not done");
        };
        assert_eq!(user, "user");
        let server_final = String::from_utf8(response).unwrap();
        client.verify_server_final(&server_final).unwrap();
        // The control: a signature made with other keys is refused by the client.
        assert!(client.verify_server_final("v=AAAA").is_err());
    }
}

#[test]
fn a_wrong_password_and_an_unknown_user_fail_at_the_proof() {
    for mechanism in ScramMechanism::ALL {
        assert!(matches!(
            scram(mechanism, "user", "pencil", "s"),
            Ok(Step::Done { .. })
        ));
        assert_eq!(
            scram(mechanism, "user", "pencil!", "s"),
            Err(SaslError::BadCredentials("user".into()))
        );
        assert_eq!(
            scram(mechanism, "nobody", "pencil", "s"),
            Err(SaslError::UnknownUser("nobody".into()))
        );
    }
}

#[test]
fn an_unknown_user_gets_a_server_first_message_of_the_same_shape() {
    let first = |user: &str| {
        let client = ScramClient::new(ScramMechanism::Sha512, user, "x", "c");
        let mut server = Authenticator::new(Mechanism::ScramSha512, "s".into(), SECRET);
        text(
            server
                .step(client.client_first().as_bytes(), &lookup)
                .unwrap(),
        )
    };
    let shape = |message: String| {
        let parts: Vec<_> = message
            .split(',')
            .map(|p| (p[..2].to_string(), p.len()))
            .collect();
        parts
    };
    assert_eq!(shape(first("user")), shape(first("nobodyy")));
    // The same salt every time for the same unknown name, another for another name.
    assert_eq!(first("nobody"), first("nobody"));
    assert_ne!(first("nobody"), first("someone"));
}

#[test]
fn a_replayed_client_final_message_fails() {
    let mechanism = ScramMechanism::Sha256;
    let mut client = ScramClient::new(mechanism, "user", "pencil", "cnonce");
    let mut first_exchange = Authenticator::new(mechanism.mechanism(), "one".into(), SECRET);
    let server_first = text(
        first_exchange
            .step(client.client_first().as_bytes(), &lookup)
            .unwrap(),
    );
    let recorded = client.client_final(&server_first).unwrap();
    assert!(matches!(
        first_exchange.step(recorded.as_bytes(), &lookup),
        Ok(Step::Done { .. })
    ));
    // An eavesdropper replays both of the client's messages to a new exchange.
    let mut replay = Authenticator::new(mechanism.mechanism(), "two".into(), SECRET);
    replay
        .step(client.client_first().as_bytes(), &lookup)
        .unwrap();
    assert_eq!(
        replay.step(recorded.as_bytes(), &lookup),
        Err(SaslError::NonceMismatch)
    );
}

/// Client-final messages after a good client-first, and the error each gets.
#[test]
fn malformed_client_final_messages() {
    let mechanism = ScramMechanism::Sha256;
    let check = |tamper: &dyn Fn(&str) -> String, expect: &str| {
        let mut client = ScramClient::new(mechanism, "user", "pencil", "cnonce");
        let mut server = Authenticator::new(mechanism.mechanism(), "snonce".into(), SECRET);
        let first = text(
            server
                .step(client.client_first().as_bytes(), &lookup)
                .unwrap(),
        );
        let good = client.client_final(&first).unwrap();
        let got = server
            .step(tamper(&good).as_bytes(), &lookup)
            .map(|_| "ok".to_string())
            .unwrap_or_else(|e| e.to_string());
        assert_eq!(got, expect, "{}", tamper(&good));
    };
    check(&|good| good.to_string(), "ok");
    check(
        &|good| good.replace("c=biws", "c=eSws"),
        "channel binding does not match the gs2 header",
    );
    check(
        &|good| good.replace("snonce", "snoncf"),
        "client-final nonce is not this exchange's",
    );
    check(
        &|good| good.split(",p=").next().unwrap().to_string(),
        "malformed client-final message: no proof (`p=`) at the end",
    );
    check(
        &|good| format!("{},p=!!!", good.split(",p=").next().unwrap()),
        "malformed client-final message: the proof is not base64",
    );
    check(
        &|good| format!("{},p=AAAA", good.split(",p=").next().unwrap()),
        "malformed client-final message: the proof is not as long as the hash",
    );
    check(
        &|good| good.replacen("c=", "x=", 1),
        "malformed client-final message: the channel binding (`c=`) must come first",
    );
    check(
        &|good| good.replacen(",r=", ",x=", 1),
        "malformed client-final message: the nonce (`r=`) must follow the channel binding",
    );
    check(
        &|_| "\u{ff}".to_string() + "\u{0}",
        "malformed client-final message: no proof (`p=`) at the end",
    );
    check(&flip_a_proof_bit, "wrong password for user \"user\"");
    // librdkafka up to 2.0 repeats its client nonce before the combined nonce: accepted when
    // the proof is computed over what it sent, as Kafka accepts it.
    check(
        &|good| good.replace("r=cnoncesnonce", "r=cnoncecnoncesnonce"),
        "wrong password for user \"user\"",
    );
    check(
        &|good| good.replace("r=cnoncesnonce", "r=xcnoncesnonce"),
        "client-final nonce is not this exchange's",
    );
}

#[test]
fn the_nonce_librdkafka_2_0_sends_is_accepted() {
    let mechanism = ScramMechanism::Sha512;
    let client = ScramClient::new(mechanism, "user", "pencil", "cn");
    let mut server = Authenticator::new(mechanism.mechanism(), "sn".into(), SECRET);
    let first = text(
        server
            .step(client.client_first().as_bytes(), &lookup)
            .unwrap(),
    );
    assert!(first.starts_with("r=cnsn,"));
    // The client-final message librdkafka 2.0.2 (Debian's kcat) builds, with its proof.
    let last = sasl_client_final_with_nonce(
        mechanism,
        "pencil",
        &client.client_first()[3..],
        &first,
        "cncnsn",
    );
    assert!(matches!(
        server.step(last.as_bytes(), &lookup),
        Ok(Step::Done { .. })
    ));
}

/// A client-final message with `nonce` in place of the combined one, its proof computed over it.
fn sasl_client_final_with_nonce(
    mechanism: ScramMechanism,
    password: &str,
    client_first_bare: &str,
    server_first: &str,
    nonce: &str,
) -> String {
    use crate::credential::{client_key, hash, hmac, salted_password, xor};
    use base64::Engine;
    let salt = base64_decode(
        server_first
            .split(",s=")
            .nth(1)
            .unwrap()
            .split(',')
            .next()
            .unwrap(),
    );
    let salted = salted_password(mechanism, password.as_bytes(), &salt, 4096);
    let key = client_key(mechanism, &salted);
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac(mechanism, &hash(mechanism, &key), auth_message.as_bytes());
    let proof = base64::engine::general_purpose::STANDARD.encode(xor(&key, &signature));
    format!("{without_proof},p={proof}")
}

#[test]
fn plain_checks_the_password_against_the_scram_credential() {
    let check = |user: &str, password: &str| {
        let mut server = Authenticator::new(Mechanism::Plain, "unused".into(), SECRET);
        server.step(&plain_message(user, password), &lookup)
    };
    assert_eq!(
        check("user", "pencil"),
        Ok(Step::Done {
            user: "user".into(),
            response: vec![]
        })
    );
    assert_eq!(
        check("user", "pencil2"),
        Err(SaslError::BadCredentials("user".into()))
    );
    assert_eq!(
        check("nobody", "pencil"),
        Err(SaslError::UnknownUser("nobody".into()))
    );
    // A user with only a SCRAM-SHA-256 credential logs in with PLAIN too.
    let only_256 = |user: &str, m: ScramMechanism| {
        (user == "user" && m == ScramMechanism::Sha256)
            .then(|| store(m))
            .flatten()
    };
    let mut server = Authenticator::new(Mechanism::Plain, "unused".into(), SECRET);
    assert!(server
        .step(&plain_message("user", "pencil"), &only_256)
        .is_ok());
}

#[test]
fn the_client_message_does_not_tell_unknown_users_from_wrong_passwords() {
    let unknown = SaslError::UnknownUser("a".into()).client_message(Mechanism::ScramSha256);
    let wrong = SaslError::BadCredentials("a".into()).client_message(Mechanism::ScramSha256);
    assert_eq!(unknown, wrong);
    assert!(!unknown.contains("\"a\""));
}

/// The same client-final message with one bit of its proof flipped.
fn flip_a_proof_bit(good: &str) -> String {
    use base64::Engine;
    let (without_proof, proof) = good.rsplit_once(",p=").unwrap();
    let mut proof = base64_decode(proof);
    proof[0] ^= 1;
    let proof = base64::engine::general_purpose::STANDARD.encode(proof);
    format!("{without_proof},p={proof}")
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

proptest! {
    /// Arbitrary bytes as either message of any mechanism are an error or a step, never a panic.
    #[test]
    fn random_bytes_never_panic(first in proptest::collection::vec(any::<u8>(), 0..200),
                                last in proptest::collection::vec(any::<u8>(), 0..200),
                                which in 0..3usize) {
        let mechanism = Mechanism::ALL[which];
        let mut server = Authenticator::new(mechanism, "s".into(), SECRET);
        let _ = server.step(&first, &lookup);
        let _ = server.step(&last, &lookup);
    }

    /// A valid client-first with random text after `r=` and a random final message.
    #[test]
    fn random_text_after_a_valid_start_never_panics(tail in "\\PC{0,80}", last in "\\PC{0,120}") {
        let mut server = Authenticator::new(Mechanism::ScramSha256, "s".into(), SECRET);
        let _ = server.step(format!("n,,n=user,r={tail}").as_bytes(), &lookup);
        let _ = server.step(last.as_bytes(), &lookup);
    }
}
