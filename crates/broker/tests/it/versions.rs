//! Every advertised API at every advertised version: the broker's response encodes. The codec
//! refuses fields that a version does not carry, so this catches a handler that fills one in.

use std::sync::Arc;

use broker::config::FETCH_WAIT_MAX;
use broker::{Broker, BrokerConfig, ClientInfo, FetchRead, Now, Outcome};
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use wire::batch::{build_batch, ProducerFields};
use wire::Request;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn request(api_key: ApiKey, version: i16, body: RequestKind) -> Request {
    let header = RequestHeader::default()
        .with_request_api_key(api_key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1);
    Request {
        api_key,
        header,
        body,
    }
}

/// A representative request of `api_key` at `version`, on topic `t`.
fn sample(api_key: ApiKey, version: i16) -> RequestKind {
    let batch = build_batch(
        &[(Some(b"k"), Some(b"v"))],
        1_700_000_000_000,
        ProducerFields::NONE,
        0,
    );
    match api_key {
        ApiKey::ApiVersions => RequestKind::ApiVersions(Default::default()),
        ApiKey::Metadata => RequestKind::Metadata(
            MetadataRequest::default()
                .with_topics(Some(vec![
                    MetadataRequestTopic::default().with_name(Some(name("t")))
                ]))
                .with_allow_auto_topic_creation(true),
        ),
        ApiKey::Produce => {
            RequestKind::Produce(ProduceRequest::default().with_acks(1).with_topic_data(vec![
            TopicProduceData::default().with_name(name("t")).with_partition_data(vec![
                PartitionProduceData::default().with_index(0).with_records(Some(batch.into())),
            ]),
        ]))
        }
        ApiKey::Fetch => RequestKind::Fetch(
            FetchRequest::default()
                .with_max_bytes(1 << 20)
                .with_topics(vec![FetchTopic::default()
                    .with_topic(name("t"))
                    .with_partitions(vec![FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20)])]),
        ),
        ApiKey::ListOffsets => {
            RequestKind::ListOffsets(ListOffsetsRequest::default().with_topics(vec![
            ListOffsetsTopic::default().with_name(name("t")).with_partitions(vec![
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(-1),
                ListOffsetsPartition::default().with_partition_index(0).with_timestamp(0),
                ListOffsetsPartition::default().with_partition_index(9).with_timestamp(-2),
            ]),
        ]))
        }
        ApiKey::CreateTopics => {
            RequestKind::CreateTopics(CreateTopicsRequest::default().with_topics(vec![
            CreatableTopic::default()
                .with_name(name(&format!("created-v{version}")))
                .with_num_partitions(2)
                .with_replication_factor(1),
            CreatableTopic::default().with_name(name("bad name")).with_num_partitions(1),
        ]))
        }
        ApiKey::DeleteTopics => {
            let doomed = format!("created-v{}", version + 1);
            let request = if version >= 6 {
                DeleteTopicsRequest::default().with_topics(vec![
                    DeleteTopicState::default().with_name(Some(name(&doomed))),
                    DeleteTopicState::default().with_name(Some(name("missing"))),
                ])
            } else {
                DeleteTopicsRequest::default()
                    .with_topic_names(vec![name(&doomed), name("missing")])
            };
            RequestKind::DeleteTopics(request)
        }
        ApiKey::DescribeConfigs => {
            RequestKind::DescribeConfigs(DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t")),
                DescribeConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1")),
                DescribeConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("nope")),
            ]))
        }
        ApiKey::DeleteRecords => {
            RequestKind::DeleteRecords(DeleteRecordsRequest::default().with_topics(vec![
            DeleteRecordsTopic::default().with_name(name("t")).with_partitions(vec![
                DeleteRecordsPartition::default().with_partition_index(0).with_offset(0),
            ]),
        ]))
        }
        ApiKey::AlterConfigs => {
            RequestKind::AlterConfigs(AlterConfigsRequest::default().with_resources(vec![
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_configs(vec![alter_configs_request::AlterableConfig::default()
                        .with_name(StrBytes::from_static_str("retention.ms"))
                        .with_value(Some(StrBytes::from_static_str("60000")))]),
                alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(4)
                    .with_resource_name(StrBytes::from_static_str("1")),
            ]))
        }
        ApiKey::IncrementalAlterConfigs => RequestKind::IncrementalAlterConfigs(
            IncrementalAlterConfigsRequest::default().with_resources(vec![
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("t"))
                    .with_configs(vec![
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(StrBytes::from_static_str("retention.ms"))
                            .with_config_operation(1),
                    ]),
                incremental_alter_configs_request::AlterConfigsResource::default()
                    .with_resource_type(2)
                    .with_resource_name(StrBytes::from_static_str("nope")),
            ]),
        ),
        ApiKey::CreatePartitions => {
            RequestKind::CreatePartitions(CreatePartitionsRequest::default().with_topics(vec![
                CreatePartitionsTopic::default()
                    .with_name(name("t"))
                    .with_count(i32::from(version) + 2),
                CreatePartitionsTopic::default()
                    .with_name(name("nope"))
                    .with_count(3),
            ]))
        }
        ApiKey::FindCoordinator => RequestKind::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(StrBytes::from_static_str("g"))
                .with_coordinator_keys(if version >= 4 {
                    vec![StrBytes::from_static_str("g")]
                } else {
                    vec![]
                }),
        ),
        ApiKey::JoinGroup => RequestKind::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(format!("g{version}"))))
                .with_session_timeout_ms(10_000)
                .with_rebalance_timeout_ms(10_000)
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
                )
                .with_name(StrBytes::from_static_str("range"))
                .with_metadata(bytes::Bytes::from_static(b"m"))]),
        ),
        ApiKey::SyncGroup => RequestKind::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::Heartbeat => RequestKind::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::LeaveGroup => RequestKind::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_member_id(StrBytes::from_static_str("nobody")),
        ),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                .with_generation_id_or_member_epoch(-1)
                .with_topics(vec![
                    offset_commit_request::OffsetCommitRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_commit_request::OffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(1),
                        ]),
                ]),
        ),
        ApiKey::OffsetFetch => RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                .with_topics(None),
        ),
        ApiKey::ListGroups => RequestKind::ListGroups(ListGroupsRequest::default()),
        ApiKey::DescribeGroups => RequestKind::DescribeGroups(
            DescribeGroupsRequest::default()
                .with_groups(vec![GroupId(StrBytes::from_static_str("simple"))]),
        ),
        ApiKey::DeleteGroups => RequestKind::DeleteGroups(
            DeleteGroupsRequest::default()
                .with_groups_names(vec![GroupId(StrBytes::from_static_str("missing"))]),
        ),
        ApiKey::InitProducerId => RequestKind::InitProducerId(
            InitProducerIdRequest::default()
                .with_transactional_id(None)
                .with_transaction_timeout_ms(60_000),
        ),
        ApiKey::AddPartitionsToTxn => RequestKind::AddPartitionsToTxn(
            AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(TransactionalId(StrBytes::from_static_str(
                    "tx",
                )))
                .with_v3_and_below_producer_id(ProducerId(1))
                .with_v3_and_below_topics(vec![
                    add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![0]),
                ]),
        ),
        ApiKey::AddOffsetsToTxn => RequestKind::AddOffsetsToTxn(
            AddOffsetsToTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                .with_producer_id(ProducerId(1))
                .with_group_id(GroupId(StrBytes::from_static_str("g"))),
        ),
        ApiKey::EndTxn => RequestKind::EndTxn(
            EndTxnRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                .with_producer_id(ProducerId(1))
                .with_committed(true),
        ),
        ApiKey::TxnOffsetCommit => RequestKind::TxnOffsetCommit(
            TxnOffsetCommitRequest::default()
                .with_transactional_id(TransactionalId(StrBytes::from_static_str("tx")))
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_producer_id(ProducerId(1)),
        ),
        ApiKey::ListTransactions => {
            RequestKind::ListTransactions(ListTransactionsRequest::default())
        }
        ApiKey::DescribeTransactions => RequestKind::DescribeTransactions(
            DescribeTransactionsRequest::default()
                .with_transactional_ids(vec![TransactionalId(StrBytes::from_static_str("tx"))]),
        ),
        ApiKey::OffsetDelete => RequestKind::OffsetDelete(
            OffsetDeleteRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("simple")))
                .with_topics(vec![
                    offset_delete_request::OffsetDeleteRequestTopic::default()
                        .with_name(name("t"))
                        .with_partitions(vec![
                            offset_delete_request::OffsetDeleteRequestPartition::default()
                                .with_partition_index(0),
                        ]),
                ]),
        ),
        ApiKey::DescribeLogDirs => {
            RequestKind::DescribeLogDirs(DescribeLogDirsRequest::default().with_topics(None))
        }
        ApiKey::DescribeProducers => {
            RequestKind::DescribeProducers(DescribeProducersRequest::default().with_topics(vec![
                describe_producers_request::TopicRequest::default()
                    .with_name(name("t"))
                    .with_partition_indexes(vec![0, 7]),
            ]))
        }
        ApiKey::DescribeUserScramCredentials => RequestKind::DescribeUserScramCredentials(
            DescribeUserScramCredentialsRequest::default().with_users(None),
        ),
        ApiKey::AlterUserScramCredentials => RequestKind::AlterUserScramCredentials(
            AlterUserScramCredentialsRequest::default().with_upsertions(vec![
                alter_user_scram_credentials_request::ScramCredentialUpsertion::default()
                    .with_name(StrBytes::from_static_str("alice"))
                    .with_mechanism(2)
                    .with_iterations(4096)
                    .with_salt(bytes::Bytes::from_static(b"salt"))
                    .with_salted_password(bytes::Bytes::from(vec![7; 64])),
            ]),
        ),
        ApiKey::SaslHandshake => RequestKind::SaslHandshake(
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        ),
        ApiKey::SaslAuthenticate => {
            RequestKind::SaslAuthenticate(SaslAuthenticateRequest::default())
        }
        // Without an authorizer (the broker here) every ACL API answers SECURITY_DISABLED;
        // `acls.rs` encodes them with one.
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(DescribeAclsRequest::default()),
        ApiKey::CreateAcls => RequestKind::CreateAcls(
            CreateAclsRequest::default()
                .with_creations(vec![create_acls_request::AclCreation::default()]),
        ),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(
            DeleteAclsRequest::default()
                .with_filters(vec![delete_acls_request::DeleteAclsFilter::default()]),
        ),
        other => panic!("no sample request for advertised API {other:?}"),
    }
}

#[test]
fn every_advertised_version_answers_with_an_encodable_response() {
    let dir = tempfile::tempdir().unwrap();
    let mut broker = Broker::open(
        BrokerConfig::new(dir.path().to_path_buf()),
        Arc::new(storage::FsDisk),
        Now::at_wall_ms(0),
    )
    .unwrap();
    let client = ClientInfo {
        host: "127.0.0.1".to_string(),
        ..ClientInfo::default()
    };
    let mut clock = Now::at_wall_ms(1_700_000_000_000);
    let mut token = 0;
    for supported in wire::versions::SUPPORTED {
        for version in supported.min..=supported.max {
            let api_key = supported.api_key;
            let body = sample(api_key, version);
            let group = wire::versions::is_group_api(api_key);
            if group {
                // Each step moves well past every group timeout of the step before.
                clock = clock.plus_ms(7_200_000);
            }
            token += 1;
            let outcome = broker
                .handle(clock, token, &client, request(api_key, version, body))
                .unwrap();
            let outcome = crate::idempotence::outside_the_lock(&mut broker, clock, token, outcome);
            let response = match outcome {
                Outcome::Respond(response) | Outcome::AfterSync { response, .. } => response,
                Outcome::Later if group => {
                    // A JoinGroup waits for its group: let the join delay pass.
                    clock = clock.plus_ms(3_600_000);
                    broker.tick(clock).unwrap();
                    let routed = broker.take_routed().into_iter();
                    routed
                        .filter(|r| r.token == token)
                        .map(|r| r.response)
                        .next()
                        .unwrap_or_else(|| panic!("{api_key:?} v{version}: no response"))
                }
                Outcome::Fetch(fetch) => match fetch.read() {
                    FetchRead::Ready(response) => ResponseKind::Fetch(response),
                    FetchRead::Short(fetch) => {
                        // Nothing to fetch yet: answered at the deadline.
                        clock = clock.plus_ms(FETCH_WAIT_MAX.as_millis() as u64);
                        match crate::visibility::read(broker.fetch_again(clock, fetch).unwrap()) {
                            FetchRead::Ready(response) => ResponseKind::Fetch(response),
                            FetchRead::Short(_) => panic!("fetch waits past its deadline"),
                        }
                    }
                },
                other => panic!("{api_key:?} v{version}: unexpected outcome {other:?}"),
            };
            wire::frame::encode_response(api_key, version, 1, &response)
                .unwrap_or_else(|e| panic!("{api_key:?} v{version}: {e}"));
        }
    }
}
