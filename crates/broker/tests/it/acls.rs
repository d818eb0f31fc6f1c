//! CreateAcls, DescribeAcls and DeleteAcls through `Broker::handle`: Kafka's validation errors,
//! the CLUSTER ALTER / DESCRIBE checks, SECURITY_DISABLED without an authorizer (and its control
//! with one), ACLs kept in `acls.json` across a reopen, and a damaged file refusing the start.
//! The helpers here (a client acting as a principal, ACLs written one per line) serve
//! `authorization.rs` too.

use std::path::Path;
use std::sync::Arc;

use acl::{AuthorizerConfig, Principal};
use broker::{Broker, BrokerConfig, BrokerError, ClientInfo, FetchRead, Outcome};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use crate::idempotence::{now, request};

pub(crate) const ADMIN: &str = "User:admin";

/// A broker with the authorizer on, `User:admin` its super user.
pub(crate) fn open_authorizing(dir: &Path, allow_everyone_if_no_acl_found: bool) -> Broker {
    let mut config = BrokerConfig::new(dir.to_path_buf());
    config.authorizer_enabled = true;
    config.authorizer = AuthorizerConfig {
        super_users: vec![Principal::parse(ADMIN).unwrap()],
        allow_everyone_if_no_acl_found,
    };
    Broker::open(config, Arc::new(storage::FsDisk), now()).unwrap()
}

/// `principal` connected from 127.0.0.1.
pub(crate) fn client(principal: &str) -> ClientInfo {
    ClientInfo {
        host: "127.0.0.1".to_string(),
        principal: Principal::parse(principal).unwrap(),
        ..ClientInfo::default()
    }
}

/// The response to `body` sent by `principal`, whenever it comes (a parked JoinGroup is
/// answered once the join delay passes; a Fetch's reads are run).
pub(crate) fn answer(
    broker: &mut Broker,
    principal: &str,
    api_key: ApiKey,
    version: i16,
    body: RequestKind,
) -> ResponseKind {
    let at = now();
    let outcome = broker
        .handle(at, 1, &client(principal), request(api_key, version, body))
        .unwrap();
    let outcome = crate::idempotence::outside_the_lock(broker, at, 1, outcome);
    let response = match outcome {
        Outcome::Respond(response)
        | Outcome::AfterSync { response, .. }
        | Outcome::AfterWrite { response, .. } => response,
        Outcome::Fetch(fetch) => match fetch.read() {
            FetchRead::Ready(response) => ResponseKind::Fetch(response),
            FetchRead::Short(fetch) => {
                let later = at.plus_ms(broker::config::FETCH_WAIT_MAX.as_millis() as u64);
                match crate::visibility::read(broker.fetch_again(later, fetch).unwrap()) {
                    FetchRead::Ready(response) => ResponseKind::Fetch(response),
                    FetchRead::Short(_) => panic!("fetch waits past its deadline"),
                }
            }
        },
        Outcome::Later => {
            broker.tick(at.plus_ms(60_000)).unwrap();
            let mut routed = broker.take_routed().into_iter().filter(|r| r.token == 1);
            routed
                .next()
                .expect("a parked request is answered")
                .response
        }
        other => panic!("unexpected outcome {other:?}"),
    };
    // Every answer must encode at the version asked (an error entry filling a field the
    // version lacks would not).
    wire::frame::encode_response(api_key, version, 1, &response)
        .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
    response
}

pub(crate) fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// `ALLOW User:alice * READ TOPIC LITERAL orders` as a CreateAcls creation.
pub(crate) fn creation(line: &str) -> AclCreation {
    let binding = line.parse().unwrap_or_else(|e| panic!("{line}: {e}"));
    broker::acls::creation(&binding)
}

/// CreateAcls of `lines` as `principal`: each creation's error code.
pub(crate) fn create_acls(broker: &mut Broker, principal: &str, lines: &[&str]) -> Vec<i16> {
    let creations = lines.iter().map(|line| creation(line)).collect();
    create_raw(broker, principal, 3, creations)
}

fn create_raw(
    broker: &mut Broker,
    principal: &str,
    version: i16,
    creations: Vec<AclCreation>,
) -> Vec<i16> {
    let body = CreateAclsRequest::default().with_creations(creations);
    let ResponseKind::CreateAcls(r) = answer(
        broker,
        principal,
        ApiKey::CreateAcls,
        version,
        RequestKind::CreateAcls(body),
    ) else {
        panic!("not a CreateAcls response");
    };
    r.results.iter().map(|r| r.error_code).collect()
}

/// Every ACL, as `admin` sees them: (error code, ACL lines).
fn describe_all(broker: &mut Broker, principal: &str) -> (i16, Vec<String>) {
    let body = DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_operation(1)
        .with_permission_type(1);
    let ResponseKind::DescribeAcls(r) = answer(
        broker,
        principal,
        ApiKey::DescribeAcls,
        3,
        RequestKind::DescribeAcls(body),
    ) else {
        panic!("not a DescribeAcls response");
    };
    let lines = broker::acls::described(&r.resources)
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect();
    (r.error_code, lines)
}

/// DeleteAcls of every ACL of `principal_filter` as `principal`: per filter, (error code, how
/// many ACLs it removed).
fn delete_of(
    broker: &mut Broker,
    principal: &str,
    filters: Vec<DeleteAclsFilter>,
) -> Vec<(i16, usize)> {
    let body = DeleteAclsRequest::default().with_filters(filters);
    let ResponseKind::DeleteAcls(r) = answer(
        broker,
        principal,
        ApiKey::DeleteAcls,
        3,
        RequestKind::DeleteAcls(body),
    ) else {
        panic!("not a DeleteAcls response");
    };
    r.filter_results
        .iter()
        .map(|f| (f.error_code, f.matching_acls.len()))
        .collect()
}

/// The filter of every ACL of `principal`.
pub(crate) fn acls_of(principal: &str) -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_name_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(1)
        .with_pattern_type_filter(1)
        .with_principal_filter(Some(text(principal)))
        .with_operation(1)
        .with_permission_type(1)
}

const INVALID_REQUEST: i16 = 42;

#[test]
fn creations_are_checked_as_kafka_checks_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open_authorizing(dir.path(), false);
    let valid = || creation("ALLOW User:alice * READ TOPIC LITERAL t");
    // (what is wrong, creation, error code)
    let cases: Vec<(&str, AclCreation, i16)> = vec![
        ("nothing", valid(), 0),
        (
            "nothing, prefixed",
            creation("DENY User:* 10.0.0.1 ALL GROUP PREFIXED g"),
            0,
        ),
        (
            "principal without a type",
            valid().with_principal(text("alice")),
            INVALID_REQUEST,
        ),
        (
            "principal with an empty type",
            valid().with_principal(text(":alice")),
            INVALID_REQUEST,
        ),
        (
            "empty resource name",
            valid().with_resource_name(text("")),
            INVALID_REQUEST,
        ),
        (
            "cluster with another name",
            creation("ALLOW User:alice * ALTER CLUSTER LITERAL kafka-cluster")
                .with_resource_name(text("c")),
            INVALID_REQUEST,
        ),
        (
            "cluster",
            creation("ALLOW User:alice * ALTER CLUSTER LITERAL kafka-cluster"),
            0,
        ),
        (
            "ANY resource type",
            valid().with_resource_type(1),
            INVALID_REQUEST,
        ),
        (
            "UNKNOWN resource type",
            valid().with_resource_type(0),
            INVALID_REQUEST,
        ),
        (
            "MATCH pattern",
            valid().with_resource_pattern_type(2),
            INVALID_REQUEST,
        ),
        (
            "ANY pattern",
            valid().with_resource_pattern_type(1),
            INVALID_REQUEST,
        ),
        ("ANY operation", valid().with_operation(1), INVALID_REQUEST),
        (
            "an operation ferry lacks (CREATE_TOKENS)",
            valid().with_operation(13),
            INVALID_REQUEST,
        ),
        (
            "ANY permission",
            valid().with_permission_type(1),
            INVALID_REQUEST,
        ),
        ("empty host", valid().with_host(text("")), INVALID_REQUEST),
    ];
    let (names, creations): (Vec<&str>, Vec<AclCreation>) =
        cases.iter().map(|(name, c, _)| (*name, c.clone())).unzip();
    let codes = create_raw(&mut broker, ADMIN, 3, creations);
    for ((name, code), (_, _, expect)) in names.iter().zip(codes).zip(&cases) {
        assert_eq!(code, *expect, "{name}");
    }
    let (error, lines) = describe_all(&mut broker, ADMIN);
    assert_eq!(error, 0);
    assert_eq!(
        lines,
        [
            "ALLOW User:alice * READ TOPIC LITERAL t",
            "DENY User:* 10.0.0.1 ALL GROUP PREFIXED g",
            "ALLOW User:alice * ALTER CLUSTER LITERAL kafka-cluster",
        ]
    );
}

#[test]
fn without_an_authorizer_the_acl_apis_are_security_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let disabled = ResponseError::SecurityDisabled.code();
    let lines = ["ALLOW User:alice * READ TOPIC LITERAL t"];
    let mut off = crate::idempotence::open(dir.path());
    assert_eq!(create_acls(&mut off, ADMIN, &lines), [disabled]);
    assert_eq!(describe_all(&mut off, ADMIN), (disabled, vec![]));
    assert_eq!(
        delete_of(&mut off, ADMIN, vec![acls_of("User:alice")]),
        [(disabled, 0)]
    );
    off.close().unwrap();
    assert!(
        !dir.path().join("acls.json").exists(),
        "nothing written without an authorizer"
    );
    // Control: the same requests with the authorizer on.
    let mut on = open_authorizing(dir.path(), false);
    assert_eq!(create_acls(&mut on, ADMIN, &lines), [0]);
    assert_eq!(
        describe_all(&mut on, ADMIN),
        (0, lines.map(String::from).to_vec())
    );
    assert_eq!(
        delete_of(&mut on, ADMIN, vec![acls_of("User:alice")]),
        [(0, 1)]
    );
}

#[test]
fn the_acl_apis_need_alter_and_describe_on_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open_authorizing(dir.path(), false);
    let denied = ResponseError::ClusterAuthorizationFailed.code();
    let line = "ALLOW User:bob * READ TOPIC LITERAL t";
    assert_eq!(create_acls(&mut broker, "User:alice", &[line]), [denied]);
    assert_eq!(describe_all(&mut broker, "User:alice"), (denied, vec![]));
    assert_eq!(
        delete_of(&mut broker, "User:alice", vec![acls_of("User:bob")]),
        [(denied, 0)]
    );
    // DESCRIBE on the cluster lets alice describe, not create.
    let describe = "ALLOW User:alice * DESCRIBE CLUSTER LITERAL kafka-cluster";
    assert_eq!(create_acls(&mut broker, ADMIN, &[describe]), [0]);
    assert_eq!(create_acls(&mut broker, "User:alice", &[line]), [denied]);
    assert_eq!(describe_all(&mut broker, "User:alice").0, 0);
    // ALTER on the cluster lets her create and delete (and describe: ALTER implies DESCRIBE).
    let alter = "ALLOW User:alice * ALTER CLUSTER LITERAL kafka-cluster";
    assert_eq!(create_acls(&mut broker, ADMIN, &[alter]), [0]);
    assert_eq!(create_acls(&mut broker, "User:alice", &[line]), [0]);
    assert_eq!(
        delete_of(&mut broker, "User:alice", vec![acls_of("User:bob")]),
        [(0, 1)]
    );
}

#[test]
fn acls_survive_a_reopen_and_a_damaged_file_refuses_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let lines = [
        "ALLOW User:alice * READ TOPIC LITERAL t",
        "DENY User:bob 10.0.0.1 WRITE TRANSACTIONAL_ID PREFIXED tx-",
    ];
    let mut broker = open_authorizing(dir.path(), false);
    assert_eq!(create_acls(&mut broker, ADMIN, &lines), [0, 0]);
    // Creating one again changes nothing and is no error, as in Kafka.
    assert_eq!(create_acls(&mut broker, ADMIN, &lines[..1]), [0]);
    drop(broker);
    let mut broker = open_authorizing(dir.path(), false);
    let (_, mut described) = describe_all(&mut broker, ADMIN);
    described.sort();
    let mut expect = lines.map(String::from).to_vec();
    expect.sort();
    assert_eq!(described, expect);
    // A filter with an UNKNOWN code is refused; the valid one beside it still deletes.
    let unknown = acls_of("User:alice").with_operation(0);
    assert_eq!(
        delete_of(&mut broker, ADMIN, vec![unknown, acls_of("User:alice")]),
        [(INVALID_REQUEST, 0), (0, 1)]
    );
    drop(broker);
    let mut broker = open_authorizing(dir.path(), false);
    assert_eq!(
        describe_all(&mut broker, ADMIN).1.len(),
        1,
        "the deletion is durable"
    );
    drop(broker);

    let file = dir.path().join("acls.json");
    let good = std::fs::read_to_string(&file).unwrap();
    let damaged: [(&str, String); 3] = [
        ("cut short", good[..good.len() / 2].to_string()),
        (
            "a principal without a type",
            good.replace("User:bob", "bob"),
        ),
        (
            "another version",
            good.replace("\"version\": 1", "\"version\": 7"),
        ),
    ];
    for (what, text) in damaged {
        std::fs::write(&file, text).unwrap();
        let mut config = BrokerConfig::new(dir.path().to_path_buf());
        config.authorizer_enabled = true;
        match Broker::open(config, Arc::new(storage::FsDisk), now()) {
            Err(error @ BrokerError::AclFile { .. }) => {
                assert!(
                    error.to_string().contains(&file.display().to_string()),
                    "{what}: {error}"
                )
            }
            Err(other) => panic!("{what}: {other}"),
            Ok(_) => panic!("{what}: started"),
        }
    }
    // Control: the file as written starts.
    std::fs::write(&file, good).unwrap();
    let mut broker = open_authorizing(dir.path(), false);
    assert_eq!(describe_all(&mut broker, ADMIN).1.len(), 1);
}

/// A v0 client (Kafka 1.x, before prefixed ACLs) sees only LITERAL ACLs: its filters mean
/// LITERAL (`wire::legacy` reads them so), and its answers, written without a pattern type,
/// never carry a PREFIXED one.
#[test]
fn v0_clients_see_only_literal_acls() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open_authorizing(dir.path(), false);
    let lines = [
        "ALLOW User:alice * READ TOPIC LITERAL orders",
        "ALLOW User:alice * READ TOPIC PREFIXED ord",
    ];
    assert_eq!(create_acls(&mut broker, ADMIN, &lines), [0, 0]);
    let literal_filter = DescribeAclsRequest::default()
        .with_resource_type_filter(1)
        .with_resource_name_filter(None)
        .with_pattern_type_filter(3)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(1)
        .with_permission_type(1);
    let body = RequestKind::DescribeAcls(literal_filter);
    let ResponseKind::DescribeAcls(r) = answer(&mut broker, ADMIN, ApiKey::DescribeAcls, 0, body)
    else {
        panic!("not a DescribeAcls response");
    };
    let described: Vec<String> = broker::acls::described(&r.resources)
        .unwrap()
        .iter()
        .map(|b| b.to_string())
        .collect();
    assert_eq!(described, lines[..1]);
    let delete = acls_of("User:alice").with_pattern_type_filter(3);
    let body = RequestKind::DeleteAcls(DeleteAclsRequest::default().with_filters(vec![delete]));
    let ResponseKind::DeleteAcls(r) = answer(&mut broker, ADMIN, ApiKey::DeleteAcls, 0, body)
    else {
        panic!("not a DeleteAcls response");
    };
    assert_eq!(r.filter_results[0].matching_acls.len(), 1);
    assert_eq!(describe_all(&mut broker, ADMIN).1, lines[1..]);
}

#[test]
fn the_scram_apis_need_describe_and_alter_on_the_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = open_authorizing(dir.path(), false);
    let alter = |user: &'static str| {
        RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                    .with_name(StrBytes::from_static_str(user))
                    .with_mechanism(2)
                    .with_iterations(4096)
                    .with_salt(bytes::Bytes::from_static(b"salt"))
                    .with_salted_password(bytes::Bytes::from(vec![7; 64])),
            ]),
        )
    };
    let describe = || {
        RequestKind::DescribeUserScramCredentials(DescribeUserScramCredentialsRequest::default())
    };
    let cluster_denied = ResponseError::ClusterAuthorizationFailed.code();
    // bob tries to store carol, the super user stores dave.
    for (principal, user, expected) in [("User:bob", "carol", cluster_denied), (ADMIN, "dave", 0)] {
        let ResponseKind::AlterUserScramCredentials(altered) = answer(
            &mut broker,
            principal,
            ApiKey::AlterUserScramCredentials,
            0,
            alter(user),
        ) else {
            panic!("not an AlterUserScramCredentials response");
        };
        assert_eq!(
            altered.results[0].error_code, expected,
            "{principal} alters"
        );
        let ResponseKind::DescribeUserScramCredentials(described) = answer(
            &mut broker,
            principal,
            ApiKey::DescribeUserScramCredentials,
            0,
            describe(),
        ) else {
            panic!("not a DescribeUserScramCredentials response");
        };
        assert_eq!(described.error_code, expected, "{principal} describes");
        if expected == 0 {
            // The super user sees dave only: bob's refused alteration stored nothing.
            let users: Vec<_> = described
                .results
                .iter()
                .map(|r| r.user.to_string())
                .collect();
            assert_eq!(users, ["dave"]);
        }
    }
}
