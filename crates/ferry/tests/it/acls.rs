//! ACLs with real clients on a PLAINTEXT listener, where every connection is `User:ANONYMOUS`:
//! with the authorizer on, no super user and no ACL, librdkafka's producer, consumer (its group
//! join) and transactional producer are refused with Kafka's errors; ACLs created by the super
//! user survive `kill -9`; with them, and no super user, the same clients get through, a
//! consumer that may only DESCRIBE a topic is refused its Fetch until READ is granted, and
//! DeleteAcls takes a grant back. The ACL requests are built with `kafka-protocol` (rust-rdkafka
//! has no ACL admin API); the Python suite drives them with confluent-kafka's and
//! kafka-python's admin clients.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use acl::AclBinding;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

use crate::harness::{producer, Ferry};
use crate::hostile::{read_response, request_frame};

const TOPIC: &str = "orders";
const GROUP: &str = "readers";
const TXN: &str = "orders-tx";
const TIMEOUT: Duration = Duration::from_secs(20);
const ANONYMOUS: &str = "User:ANONYMOUS";

/// One request on a fresh connection, its response decoded at `version`.
fn call<R: Decodable>(ferry: &Ferry, api_key: ApiKey, version: i16, body: RequestKind) -> R {
    let mut stream = TcpStream::connect(ferry.addr).expect("connect");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream
        .write_all(&request_frame(api_key, version, &body))
        .expect("send");
    // The correlation id, and the tagged fields of a flexible header (none here).
    let header_bytes = if api_key.response_header_version(version) >= 1 {
        5
    } else {
        4
    };
    let mut bytes = read_response(&mut stream, header_bytes);
    R::decode(&mut bytes, version).expect("decode response")
}

/// CreateAcls of ACL lines: each creation's error code.
fn create_acls(ferry: &Ferry, lines: &[&str]) -> Vec<i16> {
    let creations = lines
        .iter()
        .map(|line| broker::acls::creation(&line.parse::<AclBinding>().expect(line)))
        .collect();
    let body = CreateAclsRequest::default().with_creations(creations);
    let response: CreateAclsResponse =
        call(ferry, ApiKey::CreateAcls, 3, RequestKind::CreateAcls(body));
    response.results.iter().map(|r| r.error_code).collect()
}

/// Every ACL, as lines: (error code, lines).
fn describe_acls(ferry: &Ferry) -> (i16, Vec<String>) {
    let body = DescribeAclsRequest::default()
        .with_resource_type_filter(acl::ANY_CODE)
        .with_resource_name_filter(None)
        .with_pattern_type_filter(acl::ANY_CODE)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_operation(acl::ANY_CODE)
        .with_permission_type(acl::ANY_CODE);
    let response: DescribeAclsResponse = call(
        ferry,
        ApiKey::DescribeAcls,
        3,
        RequestKind::DescribeAcls(body),
    );
    let bindings = broker::acls::described(&response.resources).expect("ACLs");
    (
        response.error_code,
        bindings.iter().map(|b| b.to_string()).collect(),
    )
}

/// DeleteAcls of exactly the ACL `line`: (error code, how many ACLs it removed).
fn delete_acl(ferry: &Ferry, line: &str) -> (i16, usize) {
    let binding: AclBinding = line.parse().expect(line);
    let text = |s: String| Some(StrBytes::from_string(s));
    let filter = DeleteAclsFilter::default()
        .with_resource_type_filter(binding.resource_type.code())
        .with_resource_name_filter(text(binding.name))
        .with_pattern_type_filter(binding.pattern.code())
        .with_principal_filter(text(binding.principal.to_string()))
        .with_host_filter(text(binding.host))
        .with_operation(binding.operation.code())
        .with_permission_type(binding.permission.code());
    let body = DeleteAclsRequest::default().with_filters(vec![filter]);
    let response: DeleteAclsResponse =
        call(ferry, ApiKey::DeleteAcls, 3, RequestKind::DeleteAcls(body));
    let result = &response.filter_results[0];
    (result.error_code, result.matching_acls.len())
}

/// Produces one record with a fresh producer: Ok, or the delivery's error.
async fn produce(ferry: &Ferry, value: &str) -> Result<(), RDKafkaErrorCode> {
    let producer = producer(&ferry.bootstrap(), &[("message.timeout.ms", "10000")]);
    let delivered = producer
        .send(FutureRecord::to(TOPIC).key("k").payload(value), TIMEOUT)
        .await;
    delivered.map(|_| ()).map_err(|(error, _)| {
        error
            .rdkafka_error_code()
            .unwrap_or_else(|| panic!("{error}"))
    })
}

fn consumer(ferry: &Ferry, group: &str) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", ferry.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .create()
        .expect("create consumer")
}

/// Polls until a record arrives (Ok, its value) or the consumer reports an error in `wanted`.
fn first_record_or(
    consumer: &BaseConsumer,
    wanted: &[RDKafkaErrorCode],
) -> Result<String, RDKafkaErrorCode> {
    let deadline = Instant::now() + TIMEOUT;
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                return Ok(String::from_utf8_lossy(message.payload().unwrap_or_default()).into())
            }
            Some(Err(error)) => {
                let code = error.rdkafka_error_code();
                if let Some(code) = code.filter(|c| wanted.contains(c)) {
                    return Err(code);
                }
                seen.push(error.to_string());
            }
            None => {}
        }
    }
    panic!("neither a record nor {wanted:?} in {TIMEOUT:?}; errors seen: {seen:?}");
}

/// A consumer assigned partition 0 of the topic from its start (no group join).
fn assigned(ferry: &Ferry) -> BaseConsumer {
    let consumer = consumer(ferry, "assigned-only");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(TOPIC, 0, Offset::Beginning)
        .unwrap();
    consumer.assign(&assignment).unwrap();
    consumer
}

/// `init_transactions`, then one committed record: Ok, or the error's code.
fn transaction(ferry: &Ferry) -> Result<(), RDKafkaErrorCode> {
    let producer: rdkafka::producer::BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", ferry.bootstrap())
        .set("transactional.id", TXN)
        .create()
        .expect("create transactional producer");
    let code = |error: KafkaError| {
        error
            .rdkafka_error_code()
            .unwrap_or_else(|| panic!("{error}"))
    };
    producer.init_transactions(TIMEOUT).map_err(code)?;
    producer.begin_transaction().map_err(code)?;
    let record = rdkafka::producer::BaseRecord::to(TOPIC)
        .key("k")
        .payload("in a transaction");
    producer.send(record).map_err(|(error, _)| code(error))?;
    producer.commit_transaction(TIMEOUT).map_err(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_clients_are_refused_until_acls_let_them_through() {
    let dir = tempfile::tempdir().unwrap();
    let on = "authorizer.enabled=true";
    // No super user, no ACL: every client is refused.
    let mut ferry = Ferry::start(dir.path(), &[on]);
    assert_eq!(
        produce(&ferry, "refused").await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
    let group_consumer = consumer(&ferry, GROUP);
    group_consumer.subscribe(&[TOPIC]).unwrap();
    let join = first_record_or(
        &group_consumer,
        &[RDKafkaErrorCode::GroupAuthorizationFailed],
    );
    assert_eq!(join, Err(RDKafkaErrorCode::GroupAuthorizationFailed));
    drop(group_consumer);
    assert_eq!(
        transaction(&ferry),
        Err(RDKafkaErrorCode::TransactionalIdAuthorizationFailed)
    );
    let cluster_refused = kafka_protocol::error::ResponseError::ClusterAuthorizationFailed.code();
    assert_eq!(describe_acls(&ferry), (cluster_refused, vec![]));
    ferry.kill9();

    // The super user grants: managing ACLs, writing the topic (which implies DESCRIBE), the
    // group, the transactional id; not READ on the topic yet.
    let mut ferry = Ferry::start(dir.path(), &[on, &format!("super.users={ANONYMOUS}")]);
    let grants = [
        format!("ALLOW {ANONYMOUS} * ALTER CLUSTER LITERAL kafka-cluster"),
        format!("ALLOW {ANONYMOUS} * CREATE CLUSTER LITERAL kafka-cluster"),
        format!("ALLOW {ANONYMOUS} * WRITE TOPIC LITERAL {TOPIC}"),
        format!("ALLOW {ANONYMOUS} * READ GROUP LITERAL {GROUP}"),
        format!("ALLOW {ANONYMOUS} * WRITE TRANSACTIONAL_ID LITERAL {TXN}"),
    ];
    let grants: Vec<&str> = grants.iter().map(String::as_str).collect();
    assert_eq!(create_acls(&ferry, &grants), [0; 5]);
    ferry.kill9();

    // Without a super user again: the ACLs survived the kill, and let the clients through.
    let ferry = Ferry::start(dir.path(), &[on]);
    let (error, mut listed) = describe_acls(&ferry);
    listed.sort();
    let mut expect: Vec<String> = grants.iter().map(|g| g.to_string()).collect();
    expect.sort();
    assert_eq!((error, listed), (0, expect));
    assert_eq!(produce(&ferry, "first").await, Ok(()));
    assert_eq!(transaction(&ferry), Ok(()));
    // WRITE lets the consumer see the topic, not read it: its Fetch is refused.
    let reader = assigned(&ferry);
    let fetch = first_record_or(&reader, &[RDKafkaErrorCode::TopicAuthorizationFailed]);
    assert_eq!(fetch, Err(RDKafkaErrorCode::TopicAuthorizationFailed));
    drop(reader);
    let read = format!("ALLOW {ANONYMOUS} * READ TOPIC LITERAL {TOPIC}");
    assert_eq!(create_acls(&ferry, &[&read]), [0]);
    assert_eq!(
        first_record_or(&assigned(&ferry), &[]),
        Ok("first".to_string())
    );
    let group_consumer = consumer(&ferry, GROUP);
    group_consumer.subscribe(&[TOPIC]).unwrap();
    assert_eq!(
        first_record_or(&group_consumer, &[]),
        Ok("first".to_string())
    );
    group_consumer
        .commit_consumer_state(rdkafka::consumer::CommitMode::Sync)
        .unwrap();
    drop(group_consumer);

    // DeleteAcls takes WRITE back: the topic is still visible (READ), its Produce refused.
    assert_eq!(delete_acl(&ferry, grants[2]), (0, 1));
    assert_eq!(
        produce(&ferry, "refused again").await,
        Err(RDKafkaErrorCode::TopicAuthorizationFailed)
    );
}
