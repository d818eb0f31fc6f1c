//! Request versions older than the codec knows but Kafka 3.9 still answers. `kafka-protocol`
//! follows Kafka 4.0, which dropped them (KIP-896); clients built for Kafka 3.x and earlier
//! still send them (an older Go client commits offsets with OffsetCommit v1, lists configs
//! with DescribeConfigs v0, produces with v2 and the old message format).
//!
//! Each old request is read here into the codec's type at a *stand-in* version, the oldest the
//! codec has, whose meaning it shares; the broker handles it as that version. Its response is
//! written back here at the old version. Produce v0–2 message sets are converted up to a v2
//! batch and Fetch v0–3 record data down to message sets ([`message_set`]).

mod acls;
mod codec;
pub mod message_set;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{
    create_topics_request, describe_configs_request, fetch_request, list_offsets_request,
    offset_commit_request, produce_request, ApiKey, BrokerId, CreateTopicsRequest,
    DescribeConfigsRequest, FetchRequest, ListOffsetsRequest, OffsetCommitRequest, ProduceRequest,
    RequestKind, ResponseKind, TopicName,
};

use codec::{ReadResult, Reader, Writer};

/// The codec version that stands in for `version` of `api`, if `version` is one the codec
/// does not know.
pub fn stand_in(api: ApiKey, version: i16) -> Option<i16> {
    let oldest = api.valid_versions().min;
    if version >= oldest || version < 0 {
        return None;
    }
    match api {
        ApiKey::Produce
        | ApiKey::Fetch
        | ApiKey::ListOffsets
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::CreateTopics
        | ApiKey::DeleteTopics
        | ApiKey::DescribeConfigs
        | ApiKey::DescribeLogDirs
        | ApiKey::DescribeAcls
        | ApiKey::CreateAcls
        | ApiKey::DeleteAcls => Some(oldest),
        _ => None,
    }
}

/// Reads the body of an old request (`version` of `api`, below the codec's oldest) as the
/// stand-in version's request.
pub fn decode_request(api: ApiKey, version: i16, body: &mut Bytes) -> ReadResult<RequestKind> {
    let stand_in = stand_in(api, version).ok_or("no stand-in version")?;
    let mut r = Reader::new(body);
    Ok(match api {
        ApiKey::Produce => RequestKind::Produce(produce(&mut r)?),
        ApiKey::Fetch => RequestKind::Fetch(fetch(&mut r, version)?),
        ApiKey::ListOffsets => RequestKind::ListOffsets(list_offsets(&mut r)?),
        ApiKey::OffsetCommit => RequestKind::OffsetCommit(offset_commit(&mut r, version)?),
        ApiKey::CreateTopics if version == 0 => {
            RequestKind::CreateTopics(create_topics_v0(&mut r)?)
        }
        ApiKey::DescribeConfigs => RequestKind::DescribeConfigs(describe_configs_v0(&mut r)?),
        ApiKey::DescribeAcls => RequestKind::DescribeAcls(acls::describe_request(&mut r)?),
        ApiKey::CreateAcls => RequestKind::CreateAcls(acls::create_request(&mut r)?),
        ApiKey::DeleteAcls => RequestKind::DeleteAcls(acls::delete_request(&mut r)?),
        // The same bytes as the stand-in's (OffsetFetch v0, CreateTopics v1, DeleteTopics v0,
        // DescribeLogDirs v0 differ from the next version in meaning only).
        _ => RequestKind::decode(api, body, stand_in).map_err(|e| e.to_string())?,
    })
}

/// Writes `response` (the stand-in version's) at `version`, after the response header.
pub fn encode_response(
    api: ApiKey,
    version: i16,
    response: &ResponseKind,
    out: &mut BytesMut,
) -> Result<(), String> {
    let stand_in = stand_in(api, version).ok_or("no stand-in version")?;
    let mut w = Writer::new(out);
    match (api, response) {
        (ApiKey::Produce, ResponseKind::Produce(response)) if version < 2 => {
            w.array(&response.responses, |w, topic| {
                w.string(&topic.name);
                w.array(&topic.partition_responses, |w, p| {
                    w.i32(p.index);
                    w.i16(p.error_code);
                    w.i64(p.base_offset);
                });
            });
            if version == 1 {
                w.i32(response.throttle_time_ms);
            }
        }
        (ApiKey::Fetch, ResponseKind::Fetch(response)) => {
            let magic = if version < 2 { 0 } else { 1 };
            if version >= 1 {
                w.i32(response.throttle_time_ms);
            }
            w.array(&response.responses, |w, topic| {
                w.string(&topic.topic);
                w.array(&topic.partitions, |w, p| {
                    w.i32(p.partition_index);
                    let records = p.records.as_deref().unwrap_or_default();
                    let converted = message_set::down_convert(records, magic);
                    let (error_code, records) = match converted {
                        Ok(records) => (p.error_code, records),
                        Err(reason) => {
                            tracing::error!(
                                topic = topic.topic.as_str(),
                                partition = p.partition_index,
                                "cannot convert fetched records for a Fetch v{version} \
                                 consumer: {reason}"
                            );
                            (CORRUPT_MESSAGE, Bytes::new())
                        }
                    };
                    w.i16(error_code);
                    w.i64(p.high_watermark);
                    w.nullable_bytes(Some(&records));
                });
            });
        }
        (ApiKey::ListOffsets, ResponseKind::ListOffsets(response)) => {
            w.array(&response.topics, |w, topic| {
                w.string(&topic.name);
                w.array(&topic.partitions, |w, p| {
                    w.i32(p.partition_index);
                    w.i16(p.error_code);
                    // v0 answers a list of offsets; ferry gives the one offset found.
                    let found: &[i64] = if p.error_code == 0 && p.offset >= 0 {
                        std::slice::from_ref(&p.offset)
                    } else {
                        &[]
                    };
                    w.array(found, |w, offset| w.i64(*offset));
                });
            });
        }
        (ApiKey::CreateTopics, ResponseKind::CreateTopics(response)) => {
            w.array(&response.topics, |w, topic| {
                w.string(&topic.name);
                w.i16(topic.error_code);
                if version == 1 {
                    w.nullable_string(topic.error_message.as_deref());
                }
            });
        }
        (ApiKey::DeleteTopics, ResponseKind::DeleteTopics(response)) => {
            w.array(&response.responses, |w, topic| {
                w.string(topic.name.as_deref().map_or("", |n| n.as_str()));
                w.i16(topic.error_code);
            });
        }
        (ApiKey::DescribeConfigs, ResponseKind::DescribeConfigs(response)) => {
            w.i32(response.throttle_time_ms);
            w.array(&response.results, |w, result| {
                w.i16(result.error_code);
                w.nullable_string(result.error_message.as_deref());
                w.i8(result.resource_type);
                w.string(&result.resource_name);
                w.array(&result.configs, |w, config| {
                    w.string(&config.name);
                    w.nullable_string(config.value.as_deref());
                    w.bool(config.read_only);
                    w.bool(config.config_source == CONFIG_SOURCE_DEFAULT);
                    w.bool(config.is_sensitive);
                });
            });
        }
        (ApiKey::DescribeAcls, ResponseKind::DescribeAcls(response)) => {
            acls::describe_response(&mut w, response)
        }
        (ApiKey::DeleteAcls, ResponseKind::DeleteAcls(response)) => {
            acls::delete_response(&mut w, response)
        }
        // The same bytes as the stand-in's: Produce v2, OffsetCommit v0–1, OffsetFetch v0,
        // DescribeLogDirs v0, CreateAcls v0.
        (_, response) => response.encode(out, stand_in).map_err(|e| e.to_string())?,
    }
    Ok(())
}

/// CORRUPT_MESSAGE: a fetched batch that cannot be converted for an old consumer.
const CORRUPT_MESSAGE: i16 = 2;
/// DescribeConfigs' `config_source` for a default value; v0 had `is_default` instead.
const CONFIG_SOURCE_DEFAULT: i8 = 5;

fn topic_name(r: &mut Reader<'_>, field: &str) -> ReadResult<TopicName> {
    Ok(TopicName(r.string(field)?))
}

/// Produce v0–2: `acks, timeout, [topic [partition records]]`, records up-converted. A message
/// set that does not convert is passed on as it came, for the broker to refuse as it refuses
/// any malformed batch.
fn produce(r: &mut Reader<'_>) -> ReadResult<ProduceRequest> {
    let acks = r.i16("acks")?;
    let timeout_ms = r.i32("timeout_ms")?;
    let topic_data = r.array("topic_data", |r| {
        let name = topic_name(r, "topic")?;
        let partition_data = r.array("partition_data", |r| {
            let index = r.i32("partition")?;
            let records = r
                .nullable_bytes("records")?
                .map(|set| message_set::up_convert(set.clone()).unwrap_or(set));
            Ok(produce_request::PartitionProduceData::default()
                .with_index(index)
                .with_records(records))
        })?;
        Ok(produce_request::TopicProduceData::default()
            .with_name(name)
            .with_partition_data(partition_data))
    })?;
    Ok(ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(timeout_ms)
        .with_topic_data(topic_data))
}

/// Fetch v0–3: `replica, max_wait, min_bytes, [max_bytes v3], [topic [partition offset
/// max_bytes]]`; read uncommitted (the old versions have no isolation level), and without a
/// whole-response limit below v3 (Kafka's `Integer.MAX_VALUE`).
fn fetch(r: &mut Reader<'_>, version: i16) -> ReadResult<FetchRequest> {
    let replica_id = r.i32("replica_id")?;
    let max_wait_ms = r.i32("max_wait_ms")?;
    let min_bytes = r.i32("min_bytes")?;
    let max_bytes = if version >= 3 {
        r.i32("max_bytes")?
    } else {
        i32::MAX
    };
    let topics = r.array("topics", |r| {
        let topic = topic_name(r, "topic")?;
        let partitions = r.array("partitions", |r| {
            Ok(fetch_request::FetchPartition::default()
                .with_partition(r.i32("partition")?)
                .with_fetch_offset(r.i64("fetch_offset")?)
                .with_partition_max_bytes(r.i32("partition_max_bytes")?))
        })?;
        Ok(fetch_request::FetchTopic::default()
            .with_topic(topic)
            .with_partitions(partitions))
    })?;
    Ok(FetchRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(min_bytes)
        .with_max_bytes(max_bytes)
        .with_isolation_level(0)
        .with_topics(topics))
}

/// ListOffsets v0: `replica, [topic [partition timestamp max_num_offsets]]`.
fn list_offsets(r: &mut Reader<'_>) -> ReadResult<ListOffsetsRequest> {
    let replica_id = r.i32("replica_id")?;
    let topics = r.array("topics", |r| {
        let name = topic_name(r, "topic")?;
        let partitions = r.array("partitions", |r| {
            let partition = list_offsets_request::ListOffsetsPartition::default()
                .with_partition_index(r.i32("partition")?)
                .with_timestamp(r.i64("timestamp")?);
            let _max_num_offsets = r.i32("max_num_offsets")?;
            Ok(partition)
        })?;
        Ok(list_offsets_request::ListOffsetsTopic::default()
            .with_name(name)
            .with_partitions(partitions))
    })?;
    Ok(ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(topics))
}

/// OffsetCommit v0 (`group, [topic [partition offset metadata]]`) and v1 (with generation,
/// member and a per-partition commit timestamp, which Kafka 3 ignores as well).
fn offset_commit(r: &mut Reader<'_>, version: i16) -> ReadResult<OffsetCommitRequest> {
    let group_id = r.string("group_id")?;
    let (generation, member_id) = if version >= 1 {
        (r.i32("generation_id")?, r.string("member_id")?)
    } else {
        (-1, Default::default())
    };
    let topics = r.array("topics", |r| {
        let name = topic_name(r, "topic")?;
        let partitions = r.array("partitions", |r| {
            let partition_index = r.i32("partition")?;
            let committed_offset = r.i64("committed_offset")?;
            if version >= 1 {
                let _commit_timestamp = r.i64("commit_timestamp")?;
            }
            let committed_metadata = r.nullable_string("committed_metadata")?;
            Ok(
                offset_commit_request::OffsetCommitRequestPartition::default()
                    .with_partition_index(partition_index)
                    .with_committed_offset(committed_offset)
                    .with_committed_metadata(committed_metadata),
            )
        })?;
        Ok(offset_commit_request::OffsetCommitRequestTopic::default()
            .with_name(name)
            .with_partitions(partitions))
    })?;
    Ok(OffsetCommitRequest::default()
        .with_group_id(group_id.into())
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(member_id)
        .with_retention_time_ms(-1)
        .with_topics(topics))
}

/// CreateTopics v0: v1 without `validate_only`.
fn create_topics_v0(r: &mut Reader<'_>) -> ReadResult<CreateTopicsRequest> {
    let topics = r.array("topics", |r| {
        let name = topic_name(r, "name")?;
        let num_partitions = r.i32("num_partitions")?;
        let replication_factor = r.i16("replication_factor")?;
        let assignments = r.array("assignments", |r| {
            let partition_index = r.i32("partition_index")?;
            let broker_ids = r.array("broker_ids", |r| Ok(BrokerId(r.i32("broker_id")?)))?;
            Ok(create_topics_request::CreatableReplicaAssignment::default()
                .with_partition_index(partition_index)
                .with_broker_ids(broker_ids))
        })?;
        let configs = r.array("configs", |r| {
            Ok(create_topics_request::CreatableTopicConfig::default()
                .with_name(r.string("name")?)
                .with_value(r.nullable_string("value")?))
        })?;
        Ok(create_topics_request::CreatableTopic::default()
            .with_name(name)
            .with_num_partitions(num_partitions)
            .with_replication_factor(replication_factor)
            .with_assignments(assignments)
            .with_configs(configs))
    })?;
    let timeout_ms = r.i32("timeout_ms")?;
    Ok(CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(timeout_ms))
}

/// DescribeConfigs v0: v1 without `include_synonyms`.
fn describe_configs_v0(r: &mut Reader<'_>) -> ReadResult<DescribeConfigsRequest> {
    let resources = r.array("resources", |r| {
        let resource_type = r.i8("resource_type")?;
        let resource_name = r.string("resource_name")?;
        let keys = r.nullable_array("configuration_keys", |r| r.string("key"))?;
        Ok(describe_configs_request::DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(resource_name)
            .with_configuration_keys(keys))
    })?;
    Ok(DescribeConfigsRequest::default().with_resources(resources))
}
