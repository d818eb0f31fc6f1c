//! Admin commands against ferry or any Kafka-compatible cluster. `ferry groups list` and
//! `ferry groups describe GROUP` (members, assignments, committed offsets and lag per
//! partition) go through librdkafka, so every client setting works (`-X`, `--client-config`:
//! TLS, SASL). `ferry transactions list` speaks ListTransactions and DescribeTransactions
//! itself, since librdkafka has no API for them, and so reaches PLAINTEXT listeners only.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use clap::Subcommand;
use client::connect::ConnectArgs;
use kafka_protocol::messages::{
    ApiKey, ConsumerProtocolAssignment, RequestHeader, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, StrBytes};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

/// Largest response frame the admin client accepts.
const RESPONSE_BYTES_MAX: usize = 100 * 1024 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Subcommand)]
pub enum GroupsCommand {
    /// List the consumer groups.
    List {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
    /// Show a group's state, members, assignments, committed offsets and lag.
    Describe {
        group: String,
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

#[derive(Subcommand)]
pub enum TransactionsCommand {
    /// List the transactional ids with their producer id and state, and describe each.
    List {
        #[arg(long, default_value = "127.0.0.1:9092")]
        bootstrap: String,
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// `ferry transactions list`: ListTransactions, then DescribeTransactions of every id found.
pub fn run_transactions(command: TransactionsCommand) -> Result<()> {
    let TransactionsCommand::List { bootstrap, connect } = command;
    let settings = connect.resolve()?;
    if !settings.plaintext() {
        bail!(
            "ferry transactions speaks ListTransactions and DescribeTransactions itself (librdkafka \
             has no API for them) and reaches PLAINTEXT listeners only, not {}; use a PLAINTEXT \
             listener of the cluster",
            settings.security_protocol()
        );
    }
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
        GroupsCommand::List { bootstrap, connect } => list(&bootstrap, &connect),
        GroupsCommand::Describe {
            group,
            bootstrap,
            connect,
        } => describe(&bootstrap, &connect, &group),
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

/// A client of `bootstrap` in `group` that never joins it: it reads the group's listing and
/// committed offsets, and the partitions' ends.
fn group_reader(bootstrap: &str, connect: &ConnectArgs, group: &str) -> Result<BaseConsumer> {
    let mut config = connect.resolve()?.config(bootstrap);
    config
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("client.id", "ferry-admin");
    config.create().context("create the admin client")
}

fn list(bootstrap: &str, connect: &ConnectArgs) -> Result<()> {
    // librdkafka asks every broker (ListGroups) and describes what they list (DescribeGroups).
    let client = group_reader(bootstrap, connect, "ferry-admin")?;
    let listed = client
        .fetch_group_list(None, IO_TIMEOUT)
        .context("list the consumer groups")?;
    let mut groups: Vec<_> = listed.groups().iter().collect();
    groups.sort_by_key(|g| g.name());
    println!("{:<40} {:<20} {:<10}", "GROUP", "STATE", "TYPE");
    for group in groups {
        println!(
            "{:<40} {:<20} {:<10}",
            group.name(),
            group.state(),
            group.protocol_type()
        );
    }
    Ok(())
}

fn describe(bootstrap: &str, connect: &ConnectArgs, group: &str) -> Result<()> {
    let client = group_reader(bootstrap, connect, group)?;
    let listed = client
        .fetch_group_list(Some(group), IO_TIMEOUT)
        .with_context(|| format!("describe group {group}"))?;
    let described = listed
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .with_context(|| format!("group {group} was not described"))?;
    println!(
        "group {group}  state {}  protocol {} ({})",
        described.state(),
        described.protocol(),
        described.protocol_type()
    );
    println!(
        "{:<50} {:<20} {:<16} ASSIGNMENT",
        "MEMBER", "CLIENT-ID", "HOST"
    );
    for member in described.members() {
        let assignment = describe_assignment(member.assignment().unwrap_or_default());
        println!(
            "{:<50} {:<20} {:<16} {assignment}",
            member.id(),
            member.client_id(),
            member.client_host()
        );
    }
    // The group's committed offsets over every partition of every topic (one OffsetFetch);
    // partitions without a commit are left out.
    let metadata = client
        .fetch_metadata(None, IO_TIMEOUT)
        .context("read the cluster's topics")?;
    let mut partitions = TopicPartitionList::new();
    for topic in metadata
        .topics()
        .iter()
        .filter(|t| !t.name().starts_with("__"))
    {
        for partition in topic.partitions() {
            partitions.add_partition(topic.name(), partition.id());
        }
    }
    let committed = client
        .committed_offsets(partitions, IO_TIMEOUT)
        .with_context(|| format!("read the committed offsets of {group}"))?;
    println!(
        "{:<30} {:>9} {:>12} {:>12} {:>8}  METADATA",
        "TOPIC", "PARTITION", "COMMITTED", "END", "LAG"
    );
    for entry in committed.elements() {
        let Offset::Offset(offset) = entry.offset() else {
            continue;
        };
        let (topic, partition) = (entry.topic(), entry.partition());
        let end = client
            .fetch_watermarks(topic, partition, IO_TIMEOUT)
            .ok()
            .map(|(_, high)| high);
        let lag = end.map(|end| (end - offset).max(0));
        let show = |v: Option<i64>| v.map_or("-".to_string(), |v| v.to_string());
        println!(
            "{topic:<30} {partition:>9} {offset:>12} {:>12} {:>8}  {}",
            show(end),
            show(lag),
            entry.metadata()
        );
    }
    Ok(())
}

/// "topic[0,1,2] other[3]" from the standard consumer protocol assignment bytes.
fn describe_assignment(bytes: &[u8]) -> String {
    if bytes.len() < 2 {
        return "-".to_string();
    }
    let mut body = Bytes::copy_from_slice(bytes);
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
