//! Issue 19: topic changes do their file work outside the broker lock. Handling the request
//! (what runs under the lock) changes nothing on disk; the job the server runs without the lock
//! does the directories, `meta.json` and the removals; the change is seen once the job is
//! reported. Requests that change topics meanwhile are held in order; every other request is
//! served while a job is in flight.

use std::path::Path;
use std::sync::Arc;

use broker::{Broker, BrokerConfig, Outcome};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use storage::SimDisk;

use crate::idempotence::{now, produce, request};

const DATA: &str = "/data";

fn open(disk: &SimDisk) -> Broker {
    let config = BrokerConfig::new(Path::new(DATA).to_path_buf());
    Broker::open(config, Arc::new(disk.clone()), now()).unwrap()
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn create(topic: &str, partitions: i32) -> wire::Request {
    let body = CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(1)]);
    request(ApiKey::CreateTopics, 7, RequestKind::CreateTopics(body))
}

fn delete(topic: &str) -> wire::Request {
    let body = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_name(Some(name(topic)))
    ]);
    request(ApiKey::DeleteTopics, 6, RequestKind::DeleteTopics(body))
}

fn grow(topic: &str, count: i32) -> wire::Request {
    let body =
        CreatePartitionsRequest::default().with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name(topic))
            .with_count(count)
            .with_assignments(None)]);
    request(
        ApiKey::CreatePartitions,
        3,
        RequestKind::CreatePartitions(body),
    )
}

fn set_retention(topic: &str, ms: &str) -> wire::Request {
    let body = IncrementalAlterConfigsRequest::default().with_resources(vec![
        AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(StrBytes::from_string(topic.to_string()))
            .with_configs(vec![AlterableConfig::default()
                .with_name(StrBytes::from_static_str("retention.ms"))
                .with_config_operation(0)
                .with_value(Some(StrBytes::from_string(ms.to_string())))]),
    ]);
    request(
        ApiKey::IncrementalAlterConfigs,
        1,
        RequestKind::IncrementalAlterConfigs(body),
    )
}

fn metadata(topic: &str) -> wire::Request {
    let body = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(name(topic)))]))
        .with_allow_auto_topic_creation(true);
    request(ApiKey::Metadata, 9, RequestKind::Metadata(body))
}

fn handle(broker: &mut Broker, token: u64, request: wire::Request) -> Outcome {
    broker
        .handle(now(), token, &broker::ClientInfo::default(), request)
        .unwrap()
}

/// Runs the job that is ready and reports it; the answers routed by the report.
fn finish_job(broker: &mut Broker, disk: &SimDisk) -> Vec<(u64, ResponseKind)> {
    let job = broker.take_admin_job().expect("a job is ready");
    let before = disk.mutations();
    let done = job.run();
    assert!(
        disk.mutations() > before,
        "the job does the file work (the control of every 'nothing on disk' check)"
    );
    broker.admin_done(now(), done).unwrap();
    let routed = broker.take_routed().into_iter();
    routed.map(|r| (r.token, r.response)).collect()
}

/// Handles `request` as token `token`, checking that nothing reached the disk, that the
/// answer waits for a job, and that `seen` does not hold until the job is reported; then runs
/// the job and returns the answer.
fn change(
    broker: &mut Broker,
    disk: &SimDisk,
    token: u64,
    request: wire::Request,
    seen: impl Fn(&Broker) -> bool,
) -> ResponseKind {
    let before = disk.mutations();
    let outcome = handle(broker, token, request);
    assert!(matches!(outcome, Outcome::Later), "{outcome:?}");
    assert_eq!(disk.mutations(), before, "file work under the broker lock");
    assert!(!seen(broker), "the change is seen before it is durable");
    let mut routed = finish_job(broker, disk);
    assert!(seen(broker), "the change is not seen after its job");
    assert_eq!(routed.len(), 1);
    let (answered, response) = routed.remove(0);
    assert_eq!(answered, token);
    response
}

fn error_codes(response: &ResponseKind) -> Vec<i16> {
    match response {
        ResponseKind::CreateTopics(r) => r.topics.iter().map(|t| t.error_code).collect(),
        ResponseKind::DeleteTopics(r) => r.responses.iter().map(|t| t.error_code).collect(),
        ResponseKind::CreatePartitions(r) => r.results.iter().map(|t| t.error_code).collect(),
        ResponseKind::IncrementalAlterConfigs(r) => {
            r.responses.iter().map(|t| t.error_code).collect()
        }
        ResponseKind::Metadata(r) => r.topics.iter().map(|t| t.error_code).collect(),
        other => panic!("unexpected response {other:?}"),
    }
}

fn partitions(broker: &Broker, topic: &str) -> Option<usize> {
    broker.topics().get(topic).map(|t| t.partitions.len())
}

#[test]
fn every_topic_change_does_its_file_work_outside_the_lock_and_is_seen_once_durable() {
    let disk = SimDisk::new();
    let mut broker = open(&disk);
    let created = change(&mut broker, &disk, 1, create("a", 2), |b| {
        partitions(b, "a") == Some(2)
    });
    assert_eq!(error_codes(&created), [0]);
    let grown = change(&mut broker, &disk, 2, grow("a", 3), |b| {
        partitions(b, "a") == Some(3)
    });
    assert_eq!(error_codes(&grown), [0]);
    let altered = change(&mut broker, &disk, 3, set_retention("a", "12345"), |b| {
        b.topics()
            .get("a")
            .unwrap()
            .meta
            .configs
            .get("retention.ms")
            == Some(&"12345".into())
    });
    assert_eq!(error_codes(&altered), [0]);
    let auto = change(&mut broker, &disk, 4, metadata("b"), |b| {
        partitions(b, "b").is_some()
    });
    assert_eq!(error_codes(&auto), [0]);
    // A deleted topic is gone at once (nothing may be appended to it while its directories
    // are removed); its answer waits for the job.
    let before = disk.mutations();
    let outcome = handle(&mut broker, 5, delete("a"));
    assert!(matches!(outcome, Outcome::Later), "{outcome:?}");
    assert_eq!(disk.mutations(), before, "file work under the broker lock");
    assert!(partitions(&broker, "a").is_none());
    assert!(disk.exists(&Path::new(DATA).join("a-0")));
    let routed = finish_job(&mut broker, &disk);
    assert_eq!(routed.len(), 1);
    assert_eq!(error_codes(&routed[0].1), [0]);
    assert!(!disk.exists(&Path::new(DATA).join("a-0")));
    // What the jobs wrote is what the next start finds.
    broker.close().unwrap();
    disk.crash();
    let broker = open(&disk);
    assert!(broker.topics().get("a").is_none());
    assert_eq!(partitions(&broker, "b"), Some(1));
}

#[test]
fn requests_that_change_topics_wait_in_order_while_every_other_request_is_served() {
    let disk = SimDisk::new();
    let mut broker = open(&disk);
    change(&mut broker, &disk, 9, create("t", 1), |b| {
        partitions(b, "t").is_some()
    });
    // A creation's job is taken by the server and is running.
    assert!(matches!(
        handle(&mut broker, 1, create("x", 1)),
        Outcome::Later
    ));
    let job = broker.take_admin_job().expect("a job is ready");
    // Meanwhile: a produce to another topic is served; a deletion of the new topic and a second
    // creation are held; a Metadata request that would auto-create is told to retry.
    let answer = produce(&mut broker, -1, -1, -1, 1);
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));
    assert!(matches!(
        handle(&mut broker, 2, delete("x")),
        Outcome::Later
    ));
    assert!(matches!(
        handle(&mut broker, 3, create("y", 1)),
        Outcome::Later
    ));
    assert!(broker.take_admin_job().is_none(), "one job at a time");
    let Outcome::Respond(auto) = handle(&mut broker, 4, metadata("z")) else {
        panic!("Metadata is answered at once");
    };
    assert_eq!(
        error_codes(&auto),
        [kafka_protocol::error::ResponseError::LeaderNotAvailable.code()]
    );
    // The first job is reported: its answer is routed, and the held deletion is handled,
    // making the next job; the creation behind it waits for that one.
    broker.admin_done(now(), job.run()).unwrap();
    let routed: Vec<u64> = broker.take_routed().iter().map(|r| r.token).collect();
    assert_eq!(routed, [1]);
    assert_eq!(
        partitions(&broker, "x"),
        None,
        "deleted at once by the held request"
    );
    let routed = finish_job(&mut broker, &disk);
    let tokens: Vec<u64> = routed.iter().map(|r| r.0).collect();
    assert_eq!(tokens, [2]);
    let routed = finish_job(&mut broker, &disk);
    let tokens: Vec<u64> = routed.iter().map(|r| r.0).collect();
    assert_eq!(tokens, [3]);
    assert_eq!(partitions(&broker, "y"), Some(1));
    assert!(broker.take_admin_job().is_none());
    // Now that nothing is in flight, the same Metadata request creates its topic.
    assert!(matches!(
        handle(&mut broker, 5, metadata("z")),
        Outcome::Later
    ));
}

#[test]
fn acl_and_credential_changes_are_written_outside_the_lock_and_in_force_once_durable() {
    let disk = SimDisk::new();
    let mut config = BrokerConfig::new(Path::new(DATA).to_path_buf());
    config.authorizer_enabled = true;
    config.authorizer = acl::AuthorizerConfig {
        super_users: Vec::new(),
        allow_everyone_if_no_acl_found: true,
    };
    let mut broker = Broker::open(config.clone(), Arc::new(disk.clone()), now()).unwrap();
    let bob = crate::acls::client("User:bob");
    let bob_reads =
        |b: &Broker| b.allows(&bob, acl::Operation::Read, acl::Resource::topic("orders"));
    assert!(bob_reads(&broker), "no ACL on the topic: everyone may");
    // An ACL for alice on the topic: bob may no longer read it, once acls.json holds it.
    let creation = crate::acls::creation("ALLOW User:alice * READ TOPIC LITERAL orders");
    let body = CreateAclsRequest::default().with_creations(vec![creation]);
    let created = change(
        &mut broker,
        &disk,
        1,
        request(ApiKey::CreateAcls, 3, RequestKind::CreateAcls(body)),
        |b| !bob_reads(b),
    );
    let ResponseKind::CreateAcls(created) = created else {
        panic!("{created:?}");
    };
    assert_eq!(created.results[0].error_code, 0);
    // A SCRAM credential for carol: usable once users.json holds it.
    let body = AlterUserScramCredentialsRequest::default()
        .with_upsertions(vec![crate::scram::upsert("carol", 1, 4096, "pw")]);
    let altered = change(
        &mut broker,
        &disk,
        2,
        request(
            ApiKey::AlterUserScramCredentials,
            0,
            RequestKind::AlterUserScramCredentials(body),
        ),
        |b| {
            b.scram_credential("carol", sasl::ScramMechanism::Sha256)
                .is_some()
        },
    );
    let ResponseKind::AlterUserScramCredentials(altered) = altered else {
        panic!("{altered:?}");
    };
    assert_eq!(altered.results[0].error_code, 0);
    // Both survive a power cut right after their answers.
    drop(broker);
    disk.crash();
    let broker = Broker::open(config, Arc::new(disk.clone()), now()).unwrap();
    assert!(!bob_reads(&broker));
    assert!(broker
        .scram_credential("carol", sasl::ScramMechanism::Sha256)
        .is_some());
}
