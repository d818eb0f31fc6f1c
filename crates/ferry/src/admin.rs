//! Admin commands over the Kafka protocol, so they work against ferry or any Kafka-compatible
//! cluster: `ferry groups list` and `ferry groups describe GROUP` (members, assignments,
//! committed offsets and lag per partition).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Subcommand;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, DescribeGroupsRequest, FindCoordinatorRequest, GroupId,
    ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, RequestHeader,
    RequestKind, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

/// Largest response frame the admin client accepts.
const RESPONSE_BYTES_MAX: usize = 100 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// List the consumer groups.
    List {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
    /// Show a group's state, members, assignments, committed offsets and lag.
    Describe {
        group: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

#[derive(Subcommand)]
pub enum TransactionsCommand {
    /// List the transactional ids with their producer id and state, and describe each.
    List {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
    },
}

/// `ferry transactions list`: ListTransactions, then DescribeTransactions of every id found.
pub fn run_transactions(command: TransactionsCommand) -> Result<()> {
    let TransactionsCommand::List { bootstrap } = command;
    let mut connection = Connection::connect(&bootstrap)?;
    let ResponseKind::ListTransactions(listed) = connection.call(
        ApiKey::ListTransactions,
        0,
        RequestKind::ListTransactions(kafka_protocol::messages::ListTransactionsRequest::default()),
    )?
    else {
        bail!("unexpected response to ListTransactions");
    };
    check(listed.error_code, "ListTransactions")?;
    let ids: Vec<_> = listed
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.clone())
        .collect();
    println!(
        "{:<32} {:>12} {:>6} {:<16} {:>10} PARTITIONS",
        "TRANSACTIONAL-ID", "PRODUCER-ID", "EPOCH", "STATE", "TIMEOUT-MS"
    );
    if ids.is_empty() {
        return Ok(());
    }
    let ResponseKind::DescribeTransactions(described) = connection.call(
        ApiKey::DescribeTransactions,
        0,
        RequestKind::DescribeTransactions(
            kafka_protocol::messages::DescribeTransactionsRequest::default()
                .with_transactional_ids(ids),
        ),
    )?
    else {
        bail!("unexpected response to DescribeTransactions");
    };
    for state in described.transaction_states {
        check(state.error_code, "DescribeTransactions")?;
        let partitions = state
            .topics
            .iter()
            .map(|t| format!("{}{:?}", t.topic.0.as_str(), t.partitions))
            .collect::<Vec<_>>()
            .join(" ");
        println!(
            "{:<32} {:>12} {:>6} {:<16} {:>10} {partitions}",
            state.transactional_id.0.as_str(),
            state.producer_id.0,
            state.producer_epoch,
            state.transaction_state.as_str(),
            state.transaction_timeout_ms
        );
    }
    Ok(())
}

pub fn run(command: GroupsCommand) -> Result<()> {
    match command {
        GroupsCommand::List { bootstrap } => list(&bootstrap),
        GroupsCommand::Describe { group, bootstrap } => describe(&bootstrap, &group),
    }
}

/// One synchronous connection to a broker.
struct Connection {
    stream: TcpStream,
    correlation_id: i32,
}

impl Connection {
    fn connect(address: &str) -> Result<Connection> {
        let stream =
            TcpStream::connect(address).with_context(|| format!("connect to {address}"))?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        Ok(Connection {
            stream,
            correlation_id: 0,
        })
    }

    fn call(&mut self, api_key: ApiKey, version: i16, body: RequestKind) -> Result<ResponseKind> {
        self.correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("ferry-admin")));
        let frame = wire::frame::encode_request(&header, &body)?;
        self.stream
            .write_all(&frame)
            .with_context(|| format!("send {api_key:?}"))?;
        let mut length = [0u8; 4];
        self.stream
            .read_exact(&mut length)
            .with_context(|| format!("read {api_key:?} response"))?;
        let length = i32::from_be_bytes(length);
        if length < 4 || length as usize > RESPONSE_BYTES_MAX {
            bail!("{api_key:?} response has an invalid length {length}");
        }
        let mut body = vec![0u8; length as usize];
        self.stream
            .read_exact(&mut body)
            .with_context(|| format!("read {api_key:?} response"))?;
        let mut body = Bytes::from(body);
        let header = kafka_protocol::messages::ResponseHeader::decode(
            &mut body,
            api_key.response_header_version(version),
        )?;
        if header.correlation_id != self.correlation_id {
            bail!(
                "{api_key:?} response has correlation id {}, expected {}",
                header.correlation_id,
                self.correlation_id
            );
        }
        Ok(ResponseKind::decode(api_key, &mut body, version)?)
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

fn list(bootstrap: &str) -> Result<()> {
    let mut connection = Connection::connect(bootstrap)?;
    let ResponseKind::ListGroups(response) = connection.call(
        ApiKey::ListGroups,
        4,
        RequestKind::ListGroups(ListGroupsRequest::default()),
    )?
    else {
        bail!("unexpected response to ListGroups");
    };
    check(response.error_code, "ListGroups")?;
    println!("{:<40} {:<20} {:<10}", "GROUP", "STATE", "TYPE");
    for group in response.groups {
        println!(
            "{:<40} {:<20} {:<10}",
            group.group_id.0.as_str(),
            group.group_state.as_str(),
            group.protocol_type.as_str()
        );
    }
    Ok(())
}

fn describe(bootstrap: &str, group: &str) -> Result<()> {
    let mut bootstrap_connection = Connection::connect(bootstrap)?;
    let mut coordinator = coordinator(&mut bootstrap_connection, group)?;
    let ResponseKind::DescribeGroups(described) = coordinator.call(
        ApiKey::DescribeGroups,
        5,
        RequestKind::DescribeGroups(
            DescribeGroupsRequest::default().with_groups(vec![group_id(group)]),
        ),
    )?
    else {
        bail!("unexpected response to DescribeGroups");
    };
    let described = described
        .groups
        .into_iter()
        .next()
        .context("DescribeGroups returned no group")?;
    check(described.error_code, "DescribeGroups")?;
    println!(
        "group {group}  state {}  protocol {} ({})",
        described.group_state.as_str(),
        described.protocol_data.as_str(),
        described.protocol_type.as_str()
    );
    println!(
        "{:<50} {:<20} {:<16} ASSIGNMENT",
        "MEMBER", "CLIENT-ID", "HOST"
    );
    for member in &described.members {
        let assignment = describe_assignment(&member.member_assignment);
        println!(
            "{:<50} {:<20} {:<16} {assignment}",
            member.member_id.as_str(),
            member.client_id.as_str(),
            member.client_host.as_str()
        );
    }
    let ResponseKind::OffsetFetch(offsets) = coordinator.call(
        ApiKey::OffsetFetch,
        7,
        RequestKind::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(group_id(group))
                .with_topics(None),
        ),
    )?
    else {
        bail!("unexpected response to OffsetFetch");
    };
    check(offsets.error_code, "OffsetFetch")?;
    let mut committed: BTreeMap<(String, i32), (i64, String)> = BTreeMap::new();
    for topic in offsets.topics {
        for partition in topic.partitions {
            check(partition.error_code, "OffsetFetch partition")?;
            let metadata = partition
                .metadata
                .map(|m| m.to_string())
                .unwrap_or_default();
            committed.insert(
                (topic.name.0.to_string(), partition.partition_index),
                (partition.committed_offset, metadata),
            );
        }
    }
    let ends = end_offsets(&mut bootstrap_connection, committed.keys())?;
    println!(
        "{:<30} {:>9} {:>12} {:>12} {:>8}  METADATA",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    for ((topic, partition), (offset, metadata)) in &committed {
        let end = ends.get(&(topic.clone(), *partition)).copied();
        let lag = end
            .filter(|_| *offset >= 0)
            .map(|end| (end - offset).max(0));
        let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        println!(
            "{topic:<30} {partition:>9} {offset:>12} {:>12} {:>8}  {metadata}",
            show(end),
            show(lag)
        );
    }
    Ok(())
}

/// Connects to the group's coordinator (in a cluster, another broker than the bootstrap one).
fn coordinator(connection: &mut Connection, group: &str) -> Result<Connection> {
    let ResponseKind::FindCoordinator(found) = connection.call(
        ApiKey::FindCoordinator,
        2,
        RequestKind::FindCoordinator(
            FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_string())),
        ),
    )?
    else {
        bail!("unexpected response to FindCoordinator");
    };
    check(found.error_code, "FindCoordinator")?;
    Connection::connect(&format!("{}:{}", found.host.as_str(), found.port))
}

/// The high watermark of each partition, asked of its leader.
fn end_offsets<'a>(
    connection: &mut Connection,
    partitions: impl Iterator<Item = &'a (String, i32)>,
) -> Result<BTreeMap<(String, i32), i64>> {
    let partitions: Vec<&(String, i32)> = partitions.collect();
    let ResponseKind::Metadata(metadata) = connection.call(
        ApiKey::Metadata,
        9,
        RequestKind::Metadata(MetadataRequest::default().with_topics(None)),
    )?
    else {
        bail!("unexpected response to Metadata");
    };
    let brokers: BTreeMap<i32, String> = metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
        .collect();
    let mut by_leader: BTreeMap<i32, BTreeMap<String, Vec<i32>>> = BTreeMap::new();
    for topic in &metadata.topics {
        let Some(name) = topic.name.as_ref().map(|n| n.0.to_string()) else {
            continue;
        };
        for partition in &topic.partitions {
            if partitions.contains(&&(name.clone(), partition.partition_index)) {
                by_leader
                    .entry(partition.leader_id.0)
                    .or_default()
                    .entry(name.clone())
                    .or_default()
                    .push(partition.partition_index);
            }
        }
    }
    let mut ends = BTreeMap::new();
    for (leader, topics) in by_leader {
        let address = brokers
            .get(&leader)
            .with_context(|| format!("leader {leader} is not in the metadata"))?;
        let mut leader_connection = Connection::connect(address)?;
        let request = ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(
                topics
                    .iter()
                    .map(|(name, indexes)| {
                        ListOffsetsTopic::default()
                            .with_name(kafka_protocol::messages::TopicName(StrBytes::from_string(
                                name.clone(),
                            )))
                            .with_partitions(
                                indexes
                                    .iter()
                                    .map(|i| {
                                        ListOffsetsPartition::default()
                                            .with_partition_index(*i)
                                            .with_timestamp(-1)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let ResponseKind::ListOffsets(response) =
            leader_connection.call(ApiKey::ListOffsets, 5, RequestKind::ListOffsets(request))?
        else {
            bail!("unexpected response to ListOffsets");
        };
        for topic in response.topics {
            for partition in topic.partitions {
                if partition.error_code == 0 {
                    ends.insert(
                        (topic.name.0.to_string(), partition.partition_index),
                        partition.offset,
                    );
                }
            }
        }
    }
    Ok(ends)
}

/// "topic[0,1,2] other[3]" from the standard consumer protocol assignment bytes.
fn describe_assignment(bytes: &Bytes) -> String {
    if bytes.len() < 2 {
        return "-".to_string();
    }
    let mut body = bytes.clone();
    let version = i16::from_be_bytes([bytes[0], bytes[1]]);
    let _ = bytes::Buf::get_i16(&mut body);
    match ConsumerProtocolAssignment::decode(&mut body, version.clamp(0, 3)) {
        Ok(assignment) => assignment
            .assigned_partitions
            .iter()
            .map(|t| format!("{}{:?}", t.topic.0.as_str(), t.partitions))
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) => format!("({} opaque bytes)", bytes.len()),
    }
}

fn check(code: i16, what: &str) -> Result<()> {
    match kafka_protocol::error::ResponseError::try_from_code(code) {
        None => Ok(()),
        Some(error) => bail!("{what}: {error}"),
    }
}
