//! The authorization check of every API through `Broker::handle`, the authorizer on: each API
//! is refused with its error for a principal without ACLs, then, ACL by ACL, gets past each
//! check it makes (the table's steps; a step's ACLs are added to the earlier ones). Each case
//! acts as its own principal, so one broker serves the whole table. Then the rules across APIs:
//! DENY over ALLOW, prefixed ACLs, super users, `allow.everyone.if.no.acl.found`, what the
//! listing APIs leave out, and KIP-430's authorized operations.

use broker::Broker;
use kafka_protocol::messages::*;
use wire::batch::{build_batch, ProducerFields};

use crate::acls::{answer, create_acls, open_authorizing, text, ADMIN};
use crate::idempotence::NOW_MS;

const TOPIC_DENIED: i16 = 29;
const GROUP_DENIED: i16 = 30;
const CLUSTER_DENIED: i16 = 31;
const TXN_DENIED: i16 = 53;
/// A step's expectation: any answer but an authorization failure (what the request then meets
/// is the coordinator's business: an unknown member, a missing producer id mapping).
const NOT_REFUSED: i16 = i16::MIN;

fn name(s: &str) -> TopicName {
    TopicName(text(s))
}

fn group(s: &str) -> GroupId {
    GroupId(text(s))
}

fn txn_id(s: &str) -> TransactionalId {
    TransactionalId(text(s))
}

/// Topics `t`, `d` (to delete), `p` (to grow), one record in `t`, and group `sg` with an offset
/// committed for `t`-0, all made by the super user.
fn setup(dir: &std::path::Path, allow_everyone_if_no_acl_found: bool) -> Broker {
    let mut broker = open_authorizing(dir, allow_everyone_if_no_acl_found);
    for topic in ["t", "d", "p"] {
        let body = CreateTopicsRequest::default().with_topics(vec![
            create_topics_request::CreatableTopic::default()
                .with_name(name(topic))
                .with_num_partitions(1)
                .with_replication_factor(1),
        ]);
        let created = answer(
            &mut broker,
            ADMIN,
            ApiKey::CreateTopics,
            7,
            RequestKind::CreateTopics(body),
        );
        assert_eq!(code(&created), 0, "create {topic}");
    }
    let (api, version, body) = produce("t", None);
    assert_eq!(code(&answer(&mut broker, ADMIN, api, version, body)), 0);
    let (api, version, body) = offset_commit("sg", "t");
    assert_eq!(code(&answer(&mut broker, ADMIN, api, version, body)), 0);
    broker
}

type Sample = (ApiKey, i16, RequestKind);

fn produce(topic: &str, transactional_id: Option<&str>) -> Sample {
    let batch = build_batch(&[(None, Some(&b"v"[..]))], NOW_MS, ProducerFields::NONE, 0);
    let body = ProduceRequest::default()
        .with_acks(1)
        .with_transactional_id(transactional_id.map(txn_id))
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(batch.into())),
            ])]);
    (ApiKey::Produce, 9, RequestKind::Produce(body))
}

fn offset_commit(group_id: &str, topic: &str) -> Sample {
    let body = OffsetCommitRequest::default()
        .with_group_id(group(group_id))
        .with_generation_id_or_member_epoch(-1)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1),
                ]),
        ]);
    (ApiKey::OffsetCommit, 8, RequestKind::OffsetCommit(body))
}

fn offset_fetch(group_id: &str, topics: Option<&[&str]>) -> Sample {
    let topics = topics.map(|topics| {
        topics
            .iter()
            .map(|t| {
                offset_fetch_request::OffsetFetchRequestTopic::default()
                    .with_name(name(t))
                    .with_partition_indexes(vec![0])
            })
            .collect()
    });
    let body = OffsetFetchRequest::default()
        .with_group_id(group(group_id))
        .with_topics(topics);
    (ApiKey::OffsetFetch, 7, RequestKind::OffsetFetch(body))
}

fn metadata(topics: Option<&[&str]>, version: i16) -> Sample {
    let topics = topics.map(|topics| {
        topics
            .iter()
            .map(|t| metadata_request::MetadataRequestTopic::default().with_name(Some(name(t))))
            .collect()
    });
    let body = MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(true)
        .with_include_topic_authorized_operations(version >= 8)
        .with_include_cluster_authorized_operations((8..=10).contains(&version));
    (ApiKey::Metadata, version, RequestKind::Metadata(body))
}

/// One sample request per API, on the setup's resources.
fn sample(api: &str) -> Sample {
    match api {
        "Produce" => produce("t", None),
        "Produce transactional" => produce("t", Some("tx")),
        "Fetch" => {
            let body = FetchRequest::default()
                .with_max_bytes(1 << 20)
                .with_topics(vec![fetch_request::FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![fetch_request::FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(1 << 20)])]);
            (ApiKey::Fetch, 12, RequestKind::Fetch(body))
        }
        "ListOffsets" => {
            let body = ListOffsetsRequest::default().with_topics(vec![
                list_offsets_request::ListOffsetsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        list_offsets_request::ListOffsetsPartition::default().with_timestamp(-1)
                    ]),
            ]);
            (ApiKey::ListOffsets, 7, RequestKind::ListOffsets(body))
        }
        "Metadata" => metadata(Some(&["t"]), 9),
        "Metadata auto-create" => metadata(Some(&["auto"]), 9),
        "CreateTopics" => {
            let body = CreateTopicsRequest::default().with_topics(vec![
                create_topics_request::CreatableTopic::default()
                    .with_name(name("c"))
                    .with_num_partitions(1)
                    .with_replication_factor(1),
            ]);
            (ApiKey::CreateTopics, 7, RequestKind::CreateTopics(body))
        }
        "DeleteTopics" => {
            let body = DeleteTopicsRequest::default().with_topic_names(vec![name("d")]);
            (ApiKey::DeleteTopics, 5, RequestKind::DeleteTopics(body))
        }
        "DeleteRecords" => {
            let body = DeleteRecordsRequest::default().with_topics(vec![
                delete_records_request::DeleteRecordsTopic::default()
                    .with_name(name("t"))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default().with_offset(0),
                    ]),
            ]);
            (ApiKey::DeleteRecords, 2, RequestKind::DeleteRecords(body))
        }
        "CreatePartitions" => {
            let body = CreatePartitionsRequest::default().with_topics(vec![
                create_partitions_request::CreatePartitionsTopic::default()
                    .with_name(name("p"))
                    .with_count(2)
                    .with_assignments(None),
            ]);
            (
                ApiKey::CreatePartitions,
                3,
                RequestKind::CreatePartitions(body),
            )
        }
        "DescribeConfigs topic" | "DescribeConfigs broker" => {
            let (kind, resource) = if api.ends_with("topic") {
                (2, "t")
            } else {
                (4, "1")
            };
            let body = DescribeConfigsRequest::default().with_resources(vec![
                describe_configs_request::DescribeConfigsResource::default()
                    .with_resource_type(kind)
                    .with_resource_name(text(resource)),
            ]);
            (
                ApiKey::DescribeConfigs,
                4,
                RequestKind::DescribeConfigs(body),
            )
        }
        "AlterConfigs" => {
            let body = AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(text("t")),
            ]);
            (ApiKey::AlterConfigs, 2, RequestKind::AlterConfigs(body))
        }
        "IncrementalAlterConfigs broker" => {
            let body = IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(text("1")),
            ]);
            (
                ApiKey::IncrementalAlterConfigs,
                1,
                RequestKind::IncrementalAlterConfigs(body),
            )
        }
        "DescribeLogDirs" => {
            let body = DescribeLogDirsRequest::default().with_topics(None);
            (
                ApiKey::DescribeLogDirs,
                4,
                RequestKind::DescribeLogDirs(body),
            )
        }
        "DescribeProducers" => {
            let body = DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0]),
            ]);
            (
                ApiKey::DescribeProducers,
                0,
                RequestKind::DescribeProducers(body),
            )
        }
        "FindCoordinator group" | "FindCoordinator txn" => {
            let (key, key_type) = if api.ends_with("group") {
                ("g", 0)
            } else {
                ("tx", 1)
            };
            let body = FindCoordinatorRequest::default()
                .with_key(text(key))
                .with_key_type(key_type);
            (
                ApiKey::FindCoordinator,
                3,
                RequestKind::FindCoordinator(body),
            )
        }
        "InitProducerId" | "InitProducerId txn" => {
            let id = api.ends_with("txn").then(|| txn_id("tx"));
            let body = InitProducerIdRequest::default()
                .with_transactional_id(id)
                .with_transaction_timeout_ms(60_000);
            (ApiKey::InitProducerId, 4, RequestKind::InitProducerId(body))
        }
        "JoinGroup" => {
            let body = JoinGroupRequest::default()
                .with_group_id(group("g"))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(text("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(text("range"))]);
            (ApiKey::JoinGroup, 5, RequestKind::JoinGroup(body))
        }
        "SyncGroup" => {
            let body = SyncGroupRequest::default()
                .with_group_id(group("g"))
                .with_member_id(text("m"));
            (ApiKey::SyncGroup, 3, RequestKind::SyncGroup(body))
        }
        "Heartbeat" => {
            let body = HeartbeatRequest::default()
                .with_group_id(group("g"))
                .with_member_id(text("m"));
            (ApiKey::Heartbeat, 3, RequestKind::Heartbeat(body))
        }
        "LeaveGroup" => {
            let body = LeaveGroupRequest::default()
                .with_group_id(group("g"))
                .with_member_id(text("m"));
            (ApiKey::LeaveGroup, 2, RequestKind::LeaveGroup(body))
        }
        "OffsetCommit" => offset_commit("sg", "t"),
        "OffsetFetch" => offset_fetch("sg", Some(&["t"])),
        "OffsetFetch v1" => {
            let (api, _, body) = offset_fetch("sg", Some(&["t"]));
            (api, 1, body)
        }
        "OffsetDelete" => {
            let body = OffsetDeleteRequest::default()
                .with_group_id(group("sg"))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default(),
                        ]),
                ]);
            (ApiKey::OffsetDelete, 0, RequestKind::OffsetDelete(body))
        }
        "DescribeGroups" => {
            let body = DescribeGroupsRequest::default().with_groups(vec![group("sg")]);
            (ApiKey::DescribeGroups, 5, RequestKind::DescribeGroups(body))
        }
        "DeleteGroups" => {
            let body = DeleteGroupsRequest::default().with_groups_names(vec![group("missing")]);
            (ApiKey::DeleteGroups, 2, RequestKind::DeleteGroups(body))
        }
        "AddPartitionsToTxn" => {
            let body = AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id("tx"))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![0]),
                ]);
            (
                ApiKey::AddPartitionsToTxn,
                3,
                RequestKind::AddPartitionsToTxn(body),
            )
        }
        "AddOffsetsToTxn" => {
            let body = AddOffsetsToTxnRequest::default()
                .with_transactional_id(txn_id("tx"))
                .with_group_id(group("sg"));
            (
                ApiKey::AddOffsetsToTxn,
                3,
                RequestKind::AddOffsetsToTxn(body),
            )
        }
        "EndTxn" => {
            let body = EndTxnRequest::default().with_transactional_id(txn_id("tx"));
            (ApiKey::EndTxn, 3, RequestKind::EndTxn(body))
        }
        "TxnOffsetCommit" => {
            let body = TxnOffsetCommitRequest::default()
                .with_transactional_id(txn_id("tx"))
                .with_group_id(group("sg"))
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default(),
                        ]),
                ]);
            (
                ApiKey::TxnOffsetCommit,
                3,
                RequestKind::TxnOffsetCommit(body),
            )
        }
        "DescribeTransactions" => {
            let body =
                DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id("tx")]);
            (
                ApiKey::DescribeTransactions,
                0,
                RequestKind::DescribeTransactions(body),
            )
        }
        other => panic!("no sample for {other}"),
    }
}

/// The error an answer carries: its top-level error if any, else its first item's (the
/// first partition's, resource's, group's ...).
fn code(response: &ResponseKind) -> i16 {
    fn first(codes: impl IntoIterator<Item = i16>) -> i16 {
        codes.into_iter().find(|c| *c != 0).unwrap_or(0)
    }
    use ResponseKind as K;
    match response {
        K::Produce(r) => first(
            r.responses
                .iter()
                .flat_map(|t| t.partition_responses.iter().map(|p| p.error_code)),
        ),
        K::Fetch(r) => first(
            r.responses
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        K::ListOffsets(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        K::Metadata(r) => first(r.topics.iter().map(|t| t.error_code)),
        K::CreateTopics(r) => first(r.topics.iter().map(|t| t.error_code)),
        K::DeleteTopics(r) => first(r.responses.iter().map(|t| t.error_code)),
        K::DeleteRecords(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        K::CreatePartitions(r) => first(r.results.iter().map(|t| t.error_code)),
        K::DescribeConfigs(r) => first(r.results.iter().map(|t| t.error_code)),
        K::AlterConfigs(r) => first(r.responses.iter().map(|t| t.error_code)),
        K::IncrementalAlterConfigs(r) => first(r.responses.iter().map(|t| t.error_code)),
        K::DescribeLogDirs(r) => first([r.error_code]),
        K::DescribeProducers(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        K::FindCoordinator(r) => first([r.error_code]),
        K::InitProducerId(r) => r.error_code,
        K::JoinGroup(r) => r.error_code,
        K::SyncGroup(r) => r.error_code,
        K::Heartbeat(r) => r.error_code,
        K::LeaveGroup(r) => r.error_code,
        K::OffsetCommit(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        K::OffsetFetch(r) => first(
            std::iter::once(r.error_code).chain(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            ),
        ),
        K::OffsetDelete(r) => first(
            std::iter::once(r.error_code).chain(
                r.topics
                    .iter()
                    .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
            ),
        ),
        K::DescribeGroups(r) => first(r.groups.iter().map(|g| g.error_code)),
        K::DeleteGroups(r) => first(r.results.iter().map(|g| g.error_code)),
        K::AddPartitionsToTxn(r) => first(r.results_by_topic_v3_and_below.iter().flat_map(|t| {
            t.results_by_partition
                .iter()
                .map(|p| p.partition_error_code)
        })),
        K::AddOffsetsToTxn(r) => r.error_code,
        K::EndTxn(r) => r.error_code,
        K::TxnOffsetCommit(r) => first(
            r.topics
                .iter()
                .flat_map(|t| t.partitions.iter().map(|p| p.error_code)),
        ),
        K::DescribeTransactions(r) => first(r.transaction_states.iter().map(|t| t.error_code)),
        other => panic!("no error code reader for {other:?}"),
    }
}

/// The authorization failures; an answer with none of them got past every check.
fn refused(code: i16) -> bool {
    [TOPIC_DENIED, GROUP_DENIED, CLUSTER_DENIED, TXN_DENIED].contains(&code)
}

#[test]
fn every_api_is_refused_until_its_acls_are_there() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = setup(dir.path(), false);
    // (API, steps: the ACLs added for the case's principal P, then the expected error)
    type Step = (&'static [&'static str], i16);
    let cases: &[(&str, &[Step])] = &[
        (
            "Produce",
            &[(&[], TOPIC_DENIED), (&["WRITE TOPIC LITERAL t"], 0)],
        ),
        ("Produce", &[(&["ALL TOPIC PREFIXED t"], 0)]),
        (
            "Produce transactional",
            &[
                (&["WRITE TOPIC LITERAL t"], TXN_DENIED),
                (&["WRITE TRANSACTIONAL_ID LITERAL tx"], NOT_REFUSED),
            ],
        ),
        (
            "Fetch",
            &[
                (&["WRITE TOPIC LITERAL t"], TOPIC_DENIED),
                (&["READ TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "ListOffsets",
            &[(&[], TOPIC_DENIED), (&["WRITE TOPIC LITERAL t"], 0)],
        ),
        (
            "Metadata",
            &[
                (&["CREATE TOPIC LITERAL t"], TOPIC_DENIED),
                (&["DESCRIBE TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "Metadata auto-create",
            &[
                (&[], TOPIC_DENIED),
                (&["DESCRIBE TOPIC LITERAL auto"], TOPIC_DENIED),
                (&["CREATE TOPIC LITERAL auto"], 0),
            ],
        ),
        (
            "CreateTopics",
            &[
                (&["CREATE TOPIC LITERAL other"], TOPIC_DENIED),
                (&["CREATE CLUSTER LITERAL kafka-cluster"], 0),
            ],
        ),
        (
            "DeleteTopics",
            &[
                (&["DESCRIBE TOPIC LITERAL d"], TOPIC_DENIED),
                (&["DELETE TOPIC LITERAL d"], 0),
            ],
        ),
        (
            "DeleteRecords",
            &[
                (&["READ TOPIC LITERAL t"], TOPIC_DENIED),
                (&["DELETE TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "CreatePartitions",
            &[(&[], TOPIC_DENIED), (&["ALTER TOPIC LITERAL p"], 0)],
        ),
        (
            "DescribeConfigs topic",
            &[
                (&["DESCRIBE TOPIC LITERAL t"], TOPIC_DENIED),
                (&["ALTER_CONFIGS TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "DescribeConfigs broker",
            &[
                (&["DESCRIBE_CONFIGS TOPIC LITERAL t"], CLUSTER_DENIED),
                (&["DESCRIBE_CONFIGS CLUSTER LITERAL kafka-cluster"], 0),
            ],
        ),
        (
            "AlterConfigs",
            &[
                (&["DESCRIBE_CONFIGS TOPIC LITERAL t"], TOPIC_DENIED),
                (&["ALTER_CONFIGS TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "IncrementalAlterConfigs broker",
            &[
                (&[], CLUSTER_DENIED),
                (&["ALTER_CONFIGS CLUSTER LITERAL kafka-cluster"], 0),
            ],
        ),
        (
            "DescribeLogDirs",
            &[
                (&[], CLUSTER_DENIED),
                (&["DESCRIBE CLUSTER LITERAL kafka-cluster"], 0),
            ],
        ),
        (
            "DescribeProducers",
            &[
                (&["DESCRIBE TOPIC LITERAL t"], TOPIC_DENIED),
                (&["READ TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "FindCoordinator group",
            &[
                (&["DESCRIBE GROUP LITERAL other"], GROUP_DENIED),
                (&["DESCRIBE GROUP LITERAL g"], 0),
            ],
        ),
        (
            "FindCoordinator txn",
            &[
                (&[], TXN_DENIED),
                (&["DESCRIBE TRANSACTIONAL_ID LITERAL tx"], 0),
            ],
        ),
        (
            "InitProducerId",
            &[
                (&["READ TOPIC LITERAL t"], CLUSTER_DENIED),
                (&["WRITE TOPIC PREFIXED x"], 0),
            ],
        ),
        (
            "InitProducerId",
            &[(&["IDEMPOTENT_WRITE CLUSTER LITERAL kafka-cluster"], 0)],
        ),
        (
            "InitProducerId txn",
            &[
                (&["WRITE TOPIC LITERAL t"], TXN_DENIED),
                (&["WRITE TRANSACTIONAL_ID LITERAL tx"], 0),
            ],
        ),
        (
            "JoinGroup",
            &[
                (&["DESCRIBE GROUP LITERAL g"], GROUP_DENIED),
                (&["READ GROUP LITERAL g"], NOT_REFUSED),
            ],
        ),
        (
            "SyncGroup",
            &[
                (&[], GROUP_DENIED),
                (&["READ GROUP LITERAL g"], NOT_REFUSED),
            ],
        ),
        (
            "Heartbeat",
            &[
                (&[], GROUP_DENIED),
                (&["READ GROUP LITERAL g"], NOT_REFUSED),
            ],
        ),
        (
            "LeaveGroup",
            &[
                (&[], GROUP_DENIED),
                (&["READ GROUP LITERAL g"], NOT_REFUSED),
            ],
        ),
        (
            "OffsetCommit",
            &[
                (&["READ TOPIC LITERAL t"], GROUP_DENIED),
                (&["READ GROUP LITERAL sg"], 0),
            ],
        ),
        (
            "OffsetCommit",
            &[
                (&["READ GROUP LITERAL sg"], TOPIC_DENIED),
                (&["READ TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "OffsetFetch",
            &[
                (&["READ TOPIC LITERAL t"], GROUP_DENIED),
                (&["DESCRIBE GROUP LITERAL sg"], 0),
            ],
        ),
        (
            "OffsetFetch",
            &[
                (&["DESCRIBE GROUP LITERAL sg"], TOPIC_DENIED),
                (&["DESCRIBE TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "OffsetFetch v1",
            &[
                (&[], GROUP_DENIED),
                (&["DESCRIBE GROUP LITERAL sg"], TOPIC_DENIED),
            ],
        ),
        (
            "OffsetDelete",
            &[
                (&["READ GROUP LITERAL sg"], GROUP_DENIED),
                (&["DELETE GROUP LITERAL sg"], TOPIC_DENIED),
                (&["READ TOPIC LITERAL t"], 0),
            ],
        ),
        (
            "DescribeGroups",
            &[
                (&["DELETE TOPIC LITERAL sg"], GROUP_DENIED),
                (&["DELETE GROUP LITERAL sg"], 0),
            ],
        ),
        (
            "DeleteGroups",
            &[
                (&["DESCRIBE GROUP LITERAL missing"], GROUP_DENIED),
                (&["DELETE GROUP LITERAL missing"], NOT_REFUSED),
            ],
        ),
        (
            "AddPartitionsToTxn",
            &[
                (&["WRITE TOPIC LITERAL t"], TXN_DENIED),
                (&["WRITE TRANSACTIONAL_ID LITERAL tx"], NOT_REFUSED),
            ],
        ),
        (
            "AddPartitionsToTxn",
            &[
                (&["WRITE TRANSACTIONAL_ID LITERAL tx"], TOPIC_DENIED),
                (&["WRITE TOPIC LITERAL t"], NOT_REFUSED),
            ],
        ),
        (
            "AddOffsetsToTxn",
            &[
                (&["READ GROUP LITERAL sg"], TXN_DENIED),
                (&["WRITE TRANSACTIONAL_ID LITERAL tx"], NOT_REFUSED),
            ],
        ),
        (
            "AddOffsetsToTxn",
            &[(&["WRITE TRANSACTIONAL_ID LITERAL tx"], GROUP_DENIED)],
        ),
        (
            "EndTxn",
            &[
                (&["DESCRIBE TRANSACTIONAL_ID LITERAL tx"], TXN_DENIED),
                (&["WRITE TRANSACTIONAL_ID LITERAL tx"], NOT_REFUSED),
            ],
        ),
        (
            "TxnOffsetCommit",
            &[
                (&[], TXN_DENIED),
                (&["WRITE TRANSACTIONAL_ID LITERAL tx"], GROUP_DENIED),
                (&["READ GROUP LITERAL sg"], TOPIC_DENIED),
                (&["READ TOPIC LITERAL t"], NOT_REFUSED),
            ],
        ),
        (
            "DescribeTransactions",
            &[
                (&[], TXN_DENIED),
                (&["WRITE TRANSACTIONAL_ID LITERAL tx"], NOT_REFUSED),
            ],
        ),
    ];
    for (at, (api, steps)) in cases.iter().enumerate() {
        let principal = format!("User:case-{at}");
        for (step, (acls, expect)) in steps.iter().enumerate() {
            let lines: Vec<String> = acls
                .iter()
                .map(|acl| format!("ALLOW {principal} * {acl}"))
                .collect();
            let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
            assert!(
                create_acls(&mut broker, ADMIN, &lines)
                    .iter()
                    .all(|c| *c == 0),
                "{lines:?}"
            );
            let (api_key, version, body) = sample(api);
            let got = code(&answer(&mut broker, &principal, api_key, version, body));
            let ok = if *expect == NOT_REFUSED {
                !refused(got)
            } else {
                got == *expect
            };
            assert!(
                ok,
                "{api} step {step} ({acls:?}): got {got}, expected {expect}"
            );
        }
    }
}

/// The error of producing one record to `topic` as `principal`.
fn produce_as(broker: &mut Broker, principal: &str, topic: &str) -> i16 {
    let (api, version, body) = produce(topic, None);
    code(&answer(broker, principal, api, version, body))
}

#[test]
fn deny_beats_allow_and_prefixed_wildcard_and_super_users_apply() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = setup(dir.path(), false);
    for topic in ["orders", "orders-secret", "other"] {
        let (api, version, body) = metadata(Some(&[topic]), 9);
        assert_eq!(
            code(&answer(&mut broker, ADMIN, api, version, body)),
            0,
            "{topic}"
        );
    }
    let acls = [
        "ALLOW User:alice * WRITE TOPIC PREFIXED orders",
        "DENY User:alice * WRITE TOPIC LITERAL orders-secret",
        "ALLOW User:* * WRITE TOPIC LITERAL other",
        "DENY User:mallory * ALL TOPIC LITERAL *",
        "ALLOW User:bob 10.9.9.9 WRITE TOPIC LITERAL orders",
    ];
    assert_eq!(create_acls(&mut broker, ADMIN, &acls), [0; 5]);
    // (principal, topic, error)
    let cases = [
        ("User:alice", "orders", 0),
        ("User:alice", "orders-secret", TOPIC_DENIED),
        ("User:alice", "other", 0),
        ("User:alice", "t", TOPIC_DENIED),
        ("User:carol", "other", 0),
        ("User:carol", "orders", TOPIC_DENIED),
        ("User:mallory", "other", TOPIC_DENIED),
        // bob's ACL is for another host than the test client's 127.0.0.1.
        ("User:bob", "orders", TOPIC_DENIED),
        // A super user passes every ACL, the DENYs included.
        (ADMIN, "orders-secret", 0),
        (ADMIN, "t", 0),
    ];
    for (principal, topic, expect) in cases {
        assert_eq!(
            produce_as(&mut broker, principal, topic),
            expect,
            "{principal} to {topic}"
        );
    }
}

#[test]
fn allow_everyone_if_no_acl_found_applies_only_where_no_acl_is() {
    for allow_everyone in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut broker = setup(dir.path(), allow_everyone);
        let open = if allow_everyone { 0 } else { TOPIC_DENIED };
        assert_eq!(produce_as(&mut broker, "User:alice", "t"), open);
        assert_eq!(produce_as(&mut broker, "User:alice", "p"), open);
        // One ACL on `t`, for someone else: `t` is no longer without ACLs.
        let bob = ["ALLOW User:bob * WRITE TOPIC LITERAL t"];
        assert_eq!(create_acls(&mut broker, ADMIN, &bob), [0]);
        assert_eq!(produce_as(&mut broker, "User:alice", "t"), TOPIC_DENIED);
        assert_eq!(produce_as(&mut broker, "User:bob", "t"), 0);
        assert_eq!(
            produce_as(&mut broker, "User:alice", "p"),
            open,
            "p has no ACL"
        );
    }
}

#[test]
fn listings_leave_out_what_the_client_may_not_describe() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = setup(dir.path(), false);
    let (api, version, body) = offset_commit("sg2", "t");
    assert_eq!(code(&answer(&mut broker, ADMIN, api, version, body)), 0);
    let acls = [
        "ALLOW User:alice * DESCRIBE TOPIC LITERAL t",
        "ALLOW User:alice * READ GROUP LITERAL sg",
        "ALLOW User:alice * DESCRIBE GROUP LITERAL sg2",
        "ALLOW User:ops * DESCRIBE CLUSTER LITERAL kafka-cluster",
    ];
    assert_eq!(create_acls(&mut broker, ADMIN, &acls), [0; 4]);

    // Metadata of every topic: only `t`; asked by name, `p` is refused, `nope` too (whether a
    // topic exists is not told to whoever may not describe it).
    let topics = |response: ResponseKind| match response {
        ResponseKind::Metadata(r) => r
            .topics
            .iter()
            .map(|t| (t.name.as_ref().unwrap().to_string(), t.error_code))
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    let (api, version, body) = metadata(None, 12);
    assert_eq!(
        topics(answer(&mut broker, "User:alice", api, version, body)),
        [("t".into(), 0)]
    );
    let (api, version, body) = metadata(None, 12);
    assert_eq!(
        topics(answer(&mut broker, ADMIN, api, version, body)).len(),
        3
    );
    let (api, version, body) = metadata(Some(&["t", "p", "nope"]), 12);
    let asked = topics(answer(&mut broker, "User:alice", api, version, body));
    let expect = [("t", 0), ("p", TOPIC_DENIED), ("nope", TOPIC_DENIED)];
    assert_eq!(asked, expect.map(|(n, c)| (n.to_string(), c)));

    // ListGroups: the groups alice may describe; everything with DESCRIBE on the cluster.
    let groups = |broker: &mut Broker, principal: &str| {
        let body = RequestKind::ListGroups(ListGroupsRequest::default());
        match answer(broker, principal, ApiKey::ListGroups, 4, body) {
            ResponseKind::ListGroups(r) => {
                let mut ids: Vec<String> =
                    r.groups.iter().map(|g| g.group_id.to_string()).collect();
                ids.sort();
                ids
            }
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(groups(&mut broker, "User:alice"), ["sg", "sg2"]);
    assert_eq!(groups(&mut broker, "User:bob"), Vec::<String>::new());
    assert_eq!(groups(&mut broker, "User:ops"), ["sg", "sg2"]);

    // OffsetFetch of every topic leaves out the topics alice may not describe; `p` has an
    // offset in sg2 after this.
    let (api, version, body) = offset_commit("sg2", "p");
    assert_eq!(code(&answer(&mut broker, ADMIN, api, version, body)), 0);
    let fetched = |broker: &mut Broker, principal: &str| {
        let (api, version, body) = offset_fetch("sg2", None);
        match answer(broker, principal, api, version, body) {
            ResponseKind::OffsetFetch(r) => r
                .topics
                .iter()
                .map(|t| t.name.to_string())
                .collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(fetched(&mut broker, "User:alice"), ["t"]);
    assert_eq!(fetched(&mut broker, ADMIN), ["p", "t"]);
}

#[test]
fn transactions_are_listed_and_described_as_far_as_the_client_may_see() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = setup(dir.path(), false);
    for id in ["tx", "tx2"] {
        let (api, version, _) = sample("InitProducerId txn");
        let body = InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id(id)))
            .with_transaction_timeout_ms(60_000);
        let init = answer(
            &mut broker,
            ADMIN,
            api,
            version,
            RequestKind::InitProducerId(body),
        );
        let ResponseKind::InitProducerId(init) = init else {
            panic!()
        };
        let add = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(txn_id(id))
            .with_v3_and_below_producer_id(init.producer_id)
            .with_v3_and_below_producer_epoch(init.producer_epoch)
            .with_v3_and_below_topics(
                ["t", "p"]
                    .map(|t| {
                        add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                            .with_name(name(t))
                            .with_partitions(vec![0])
                    })
                    .to_vec(),
            );
        let added = answer(
            &mut broker,
            ADMIN,
            ApiKey::AddPartitionsToTxn,
            3,
            RequestKind::AddPartitionsToTxn(add),
        );
        assert_eq!(code(&added), 0);
    }
    let acls = [
        "ALLOW User:alice * DESCRIBE TRANSACTIONAL_ID LITERAL tx",
        "ALLOW User:alice * DESCRIBE TOPIC LITERAL t",
    ];
    assert_eq!(create_acls(&mut broker, ADMIN, &acls), [0, 0]);
    let list = RequestKind::ListTransactions(ListTransactionsRequest::default());
    let ResponseKind::ListTransactions(listed) =
        answer(&mut broker, "User:alice", ApiKey::ListTransactions, 1, list)
    else {
        panic!()
    };
    let ids: Vec<String> = listed
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.to_string())
        .collect();
    assert_eq!(ids, ["tx"]);
    let describe = DescribeTransactionsRequest::default()
        .with_transactional_ids(vec![txn_id("tx"), txn_id("tx2")]);
    let described = answer(
        &mut broker,
        "User:alice",
        ApiKey::DescribeTransactions,
        0,
        RequestKind::DescribeTransactions(describe.clone()),
    );
    let ResponseKind::DescribeTransactions(described) = described else {
        panic!()
    };
    let shown: Vec<(String, i16, Vec<String>)> = described
        .transaction_states
        .iter()
        .map(|s| {
            (
                s.transactional_id.to_string(),
                s.error_code,
                s.topics.iter().map(|t| t.topic.to_string()).collect(),
            )
        })
        .collect();
    assert_eq!(
        shown,
        [
            ("tx".into(), 0, vec!["t".into()]),
            ("tx2".into(), TXN_DENIED, vec![])
        ]
    );
    // Control: the super user sees both transactions, each with both topics.
    let described = answer(
        &mut broker,
        ADMIN,
        ApiKey::DescribeTransactions,
        0,
        RequestKind::DescribeTransactions(describe),
    );
    let ResponseKind::DescribeTransactions(described) = described else {
        panic!()
    };
    assert!(described
        .transaction_states
        .iter()
        .all(|s| s.error_code == 0 && s.topics.len() == 2));
}

/// KIP-430: the bits of what the client may do, when asked; every operation without an
/// authorizer; INT32_MIN when not asked.
#[test]
fn authorized_operations_are_the_clients() {
    use acl::{bit_field, Operation::*};
    let not_asked = i32::MIN;
    let dir = tempfile::tempdir().unwrap();
    let mut broker = setup(dir.path(), false);
    let acls = [
        "ALLOW User:alice * READ TOPIC LITERAL t",
        "ALLOW User:alice * ALTER CLUSTER LITERAL kafka-cluster",
        "ALLOW User:alice * READ GROUP LITERAL sg",
    ];
    assert_eq!(create_acls(&mut broker, ADMIN, &acls), [0; 3]);
    let metadata_ops = |broker: &mut Broker, principal: &str, version: i16| {
        let (api, _, body) = metadata(Some(&["t"]), version);
        match answer(broker, principal, api, version, body) {
            ResponseKind::Metadata(r) => (
                r.topics[0].topic_authorized_operations,
                r.cluster_authorized_operations,
            ),
            other => panic!("{other:?}"),
        }
    };
    let topic_all = bit_field(acl::ResourceType::Topic.operations().iter().copied());
    let cluster_all = bit_field(acl::ResourceType::Cluster.operations().iter().copied());
    assert_eq!(
        metadata_ops(&mut broker, "User:alice", 10),
        (bit_field([Read, Describe]), bit_field([Alter, Describe]))
    );
    assert_eq!(
        metadata_ops(&mut broker, ADMIN, 10),
        (topic_all, cluster_all)
    );
    // v11+ has no cluster field; v7 has neither.
    assert_eq!(
        metadata_ops(&mut broker, "User:alice", 11),
        (bit_field([Read, Describe]), not_asked)
    );
    assert_eq!(
        metadata_ops(&mut broker, "User:alice", 7),
        (not_asked, not_asked)
    );
    let group_ops = |broker: &mut Broker, principal: &str, include: bool| {
        let body = DescribeGroupsRequest::default()
            .with_groups(vec![group("sg")])
            .with_include_authorized_operations(include);
        match answer(
            broker,
            principal,
            ApiKey::DescribeGroups,
            5,
            RequestKind::DescribeGroups(body),
        ) {
            ResponseKind::DescribeGroups(r) => r.groups[0].authorized_operations,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(
        group_ops(&mut broker, "User:alice", true),
        bit_field([Read, Describe])
    );
    assert_eq!(group_ops(&mut broker, "User:alice", false), not_asked);
    assert_eq!(
        group_ops(&mut broker, ADMIN, true),
        bit_field([Read, Describe, Delete])
    );

    // Control: without an authorizer every operation, as Kafka reports.
    let dir = tempfile::tempdir().unwrap();
    let mut off = crate::idempotence::open(dir.path());
    assert_eq!(
        metadata_ops(&mut off, "User:alice", 10),
        (topic_all, cluster_all)
    );
}
