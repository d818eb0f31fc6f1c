//! Broker settings, with Kafka's names where Kafka has one (`num.partitions`,
//! `auto.create.topics.enable`, `message.max.bytes`, `log.segment.bytes`, ...). Parsing from files,
//! environment and flags belongs to the binary; this is the typed result.

use std::path::PathBuf;
use std::time::Duration;

use storage::LogConfig;

use crate::ListenerName;

/// Kafka's default `message.max.bytes`: the largest record batch a producer may send (1 MiB plus
/// the batch overhead Kafka counts in).
pub const MESSAGE_MAX_BYTES_DEFAULT: usize = 1_048_588;

/// Kafka's default `fetch.max.bytes` (55 MiB): the most record bytes one Fetch response carries,
/// whatever the client asks for (the first batch excepted, KIP-74).
pub const FETCH_MAX_BYTES_DEFAULT: usize = 57_671_680;

/// Longest Fetch long-poll honoured, whatever `max_wait_ms` the client asks for.
pub const FETCH_WAIT_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// `node.id`: the id this broker reports in Metadata.
    pub node_id: i32,
    /// Host and port clients are told to connect to (`advertised.listeners`), by the listener
    /// their request came in on.
    pub advertised: Vec<Advertised>,
    /// `log.dirs`: where partitions and metadata live.
    pub data_dir: PathBuf,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `num.partitions`: partitions of auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// `message.max.bytes`: largest accepted record batch.
    pub message_max_bytes: usize,
    /// `fetch.max.bytes`: the most record bytes in one Fetch response.
    pub fetch_max_bytes: usize,
    /// `max.partitions` (ferry's own): the most partitions all topics may hold together. Each
    /// holds a file descriptor (its active segment's), so `ferry serve` derives the default from
    /// the descriptor limit; creating more is refused with POLICY_VIOLATION.
    pub max_partitions: usize,
    /// Segment and retention defaults for topics without overrides.
    pub log: LogConfig,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: i64,
    /// `log.cleaner.backoff.ms`: how often compacted partitions are checked for a cleaning.
    pub cleaner_backoff_ms: i64,
    /// Consumer group settings (`group.min.session.timeout.ms`, ...).
    pub group: group::GroupConfig,
    /// Transaction coordinator settings (`transaction.max.timeout.ms`, ...).
    pub txn: txn::TxnConfig,
    /// `producer.id.expiration.ms`: an idempotent producer idle this long is forgotten.
    pub producer_id_expiration_ms: i64,
    /// The group and transaction logs are compacted once larger than this (Kafka compacts its
    /// `__consumer_offsets` and `__transaction_state` topics with its log cleaner).
    pub internal_log_compact_bytes: u64,
    /// `authorizer.enabled` (ferry's switch for what Kafka's `authorizer.class.name` turns on):
    /// every request is checked against the ACLs (`acls.json`). Off by default, as in Kafka: a
    /// broker without authentication has nothing to tell clients apart by, and the ACL APIs
    /// answer SECURITY_DISABLED.
    pub authorizer_enabled: bool,
    /// `super.users` and `allow.everyone.if.no.acl.found`, used when the authorizer is on.
    pub authorizer: acl::AuthorizerConfig,
}

/// One listener's entry of `advertised.listeners`: where a client that came in on `listener` is
/// told to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertised {
    pub listener: ListenerName,
    pub host: String,
    pub port: i32,
}

impl BrokerConfig {
    /// The address advertised to a client that came in on `listener`. A name without an entry
    /// (a broker driven without a server, as in tests) gets the first listener's; none at all
    /// is a configuration the binary never builds.
    pub fn advertised_for(&self, listener: &ListenerName) -> &Advertised {
        self.advertised
            .iter()
            .find(|a| &a.listener == listener)
            .or_else(|| self.advertised.first())
            .expect("at least one advertised listener")
    }

    pub fn new(data_dir: PathBuf) -> BrokerConfig {
        BrokerConfig {
            node_id: 1,
            advertised: vec![Advertised {
                listener: ListenerName::default(),
                host: "127.0.0.1".to_string(),
                port: 9092,
            }],
            data_dir,
            auto_create_topics: true,
            num_partitions: 1,
            message_max_bytes: MESSAGE_MAX_BYTES_DEFAULT,
            fetch_max_bytes: FETCH_MAX_BYTES_DEFAULT,
            max_partitions: usize::MAX,
            log: LogConfig::default(),
            retention_check_interval_ms: 300_000,
            cleaner_backoff_ms: crate::cleaner::CLEANER_BACKOFF_MS_DEFAULT,
            group: group::GroupConfig::default(),
            txn: txn::TxnConfig::default(),
            producer_id_expiration_ms: crate::producers::PRODUCER_ID_EXPIRATION_MS_DEFAULT,
            internal_log_compact_bytes: crate::internal_log::INTERNAL_LOG_COMPACT_BYTES_DEFAULT,
            authorizer_enabled: false,
            authorizer: acl::AuthorizerConfig::default(),
        }
    }
}
