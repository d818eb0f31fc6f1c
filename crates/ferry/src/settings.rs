//! `ferry serve` settings by their Kafka names, resolved in this order (later wins): defaults, the
//! TOML file (`--config`), `FERRY_*` environment variables (`FERRY_NUM_PARTITIONS=4` is
//! `num.partitions=4`), `--set name=value`, then the dedicated flags.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use broker::BrokerConfig;
use server::Limits;

/// Environment variables that are flags, not Kafka-named settings.
const FLAG_VARIABLES: &[&str] = &[
    "FERRY_DATA_DIR",
    "FERRY_LISTEN",
    "FERRY_ADVERTISED_LISTENER",
    "FERRY_CONFIG",
    "FERRY_LOG",
    "FERRY_LOG_FORMAT",
];

#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    /// `--listen`: the shorthand for one PLAINTEXT listener.
    pub listen: Option<SocketAddr>,
    /// `listeners`, `advertised.listeners` and the rest of the listener settings.
    pub network: crate::listeners::NetworkSettings,
    pub broker: BrokerConfig,
    pub limits: Limits,
    /// `max.partitions` when set; otherwise `ferry serve` derives it from the descriptor limit.
    pub max_partitions: Option<usize>,
    /// `num.network.threads` when set: the runtime's worker threads, which read requests, run
    /// them and write responses (file work and fsyncs run on threads of their own beside them);
    /// otherwise one per core. On a small machine shared with clients, fewer cost less CPU: at
    /// 10k records/s with acks=all on 2 cores, 1 worker spent 25-45% less broker CPU than 2, at
    /// the same produce throughput and (in 4 interleaved pairs of runs) no clear change in the
    /// acknowledgement tail (`ferry bench`, 2026-12-05).
    pub network_threads: Option<usize>,
    /// `metrics.listen`: where `/metrics`, `/healthz` and `/readyz` are served; off when unset.
    pub metrics_listen: Option<SocketAddr>,
    /// `sasl.enabled.mechanisms`: what SASL listeners offer, in order (Kafka's default is
    /// GSSAPI, which ferry does not have; ferry's is SCRAM-SHA-512,SCRAM-SHA-256).
    pub sasl_mechanisms: Vec<sasl::Mechanism>,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            data_dir: PathBuf::from("./ferry-data"),
            listen: None,
            network: Default::default(),
            broker: BrokerConfig::new(PathBuf::from("./ferry-data")),
            limits: Limits::default(),
            max_partitions: None,
            network_threads: None,
            metrics_listen: None,
            sasl_mechanisms: vec![sasl::Mechanism::ScramSha512, sasl::Mechanism::ScramSha256],
        }
    }
}

impl Settings {
    pub fn apply_file(&mut self, path: &Path) -> Result<()> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("read config {}", path.display()))?;
        let table: toml::Table = text
            .parse()
            .with_context(|| format!("parse config {}", path.display()))?;
        for (name, value) in table {
            let value = match value {
                toml::Value::String(s) => s,
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                other => bail!(
                    "{}: setting {name} has unsupported value {other}",
                    path.display()
                ),
            };
            self.apply(&name, &value)
                .with_context(|| format!("in {}", path.display()))?;
        }
        Ok(())
    }

    pub fn apply_env(&mut self, vars: impl Iterator<Item = (String, String)>) -> Result<()> {
        for (key, value) in vars {
            if !key.starts_with("FERRY_") || FLAG_VARIABLES.contains(&key.as_str()) {
                continue;
            }
            let name = key["FERRY_".len()..].to_ascii_lowercase().replace('_', ".");
            if !is_setting(&name) {
                // The environment is shared with other tools (FERRY_BIN, FERRY_TEST_*), so an
                // unknown name is ignored with a warning; files and --set stay strict.
                tracing::warn!(variable = %key, "ignoring FERRY_* variable that names no setting");
                continue;
            }
            self.apply(&name, &value)
                .with_context(|| format!("environment variable {key}"))?;
        }
        Ok(())
    }

    /// Sets one setting by its Kafka name.
    pub fn apply(&mut self, name: &str, value: &str) -> Result<()> {
        if self.network.apply(name, value)? {
            return Ok(());
        }
        let broker = &mut self.broker;
        let limits = &mut self.limits;
        match name {
            "log.dirs" | "log.dir" => self.data_dir = PathBuf::from(value),
            "metrics.listen" => {
                self.metrics_listen = Some(
                    strip_scheme(value)
                        .parse()
                        .with_context(|| format!("metrics.listen={value}: expected host:port"))?,
                )
            }
            "sasl.enabled.mechanisms" => self.sasl_mechanisms = mechanisms(value)?,
            "node.id" | "broker.id" => broker.node_id = number(name, value)?,
            "num.partitions" => broker.num_partitions = positive(name, value)?,
            "auto.create.topics.enable" => broker.auto_create_topics = boolean(name, value)?,
            "message.max.bytes" => broker.message_max_bytes = positive(name, value)?,
            "fetch.max.bytes" => broker.fetch_max_bytes = positive(name, value)?,
            "log.segment.bytes" => broker.log.segment_bytes = positive(name, value)?,
            "log.roll.ms" => broker.log.segment_ms = positive(name, value)?,
            "log.roll.hours" => broker.log.segment_ms = positive::<i64>(name, value)? * 3_600_000,
            "log.retention.ms" => broker.log.retention_ms = number(name, value)?,
            "log.retention.hours" => {
                broker.log.retention_ms = number::<i64>(name, value)? * 3_600_000
            }
            "log.retention.bytes" => broker.log.retention_bytes = number(name, value)?,
            "log.retention.check.interval.ms" => {
                broker.retention_check_interval_ms = positive(name, value)?
            }
            "log.cleaner.backoff.ms" => broker.cleaner_backoff_ms = positive(name, value)?,
            "log.index.interval.bytes" => broker.log.index_interval_bytes = positive(name, value)?,
            "log.flush.offset.checkpoint.interval.ms" => {
                broker.log.recovery_point_interval_ms = positive(name, value)?
            }
            "group.initial.rebalance.delay.ms" => {
                broker.group.group_initial_rebalance_delay_ms = number(name, value)?
            }
            "group.min.session.timeout.ms" => {
                broker.group.group_min_session_timeout_ms = positive(name, value)?
            }
            "group.max.session.timeout.ms" => {
                broker.group.group_max_session_timeout_ms = positive(name, value)?
            }
            "group.max.size" => broker.group.group_max_size = positive(name, value)?,
            "offsets.retention.minutes" => {
                broker.group.offsets_retention_ms =
                    positive::<u64>(name, value)?.saturating_mul(60_000)
            }
            "offsets.retention.check.interval.ms" => {
                broker.group.offsets_retention_check_interval_ms = positive(name, value)?
            }
            "producer.id.expiration.ms" => {
                broker.producer_id_expiration_ms = positive(name, value)?
            }
            "authorizer.enabled" => broker.authorizer_enabled = boolean(name, value)?,
            "super.users" => {
                broker.authorizer.super_users =
                    acl::parse_super_users(value).with_context(|| format!("{name}={value}"))?
            }
            "allow.everyone.if.no.acl.found" => {
                broker.authorizer.allow_everyone_if_no_acl_found = boolean(name, value)?
            }
            "socket.request.max.bytes" => limits.request_bytes_max = positive(name, value)?,
            "max.connections" => limits.connections_max = positive(name, value)?,
            "max.partitions" => self.max_partitions = Some(positive(name, value)?),
            "num.network.threads" => self.network_threads = Some(positive(name, value)?),
            "max.in.flight.requests.per.connection" => {
                limits.in_flight_requests_per_connection = positive(name, value)?
            }
            "connections.max.idle.ms" => limits.connections_max_idle_ms = positive(name, value)?,
            "ssl.handshake.timeout.ms" => {
                limits.tls_handshake_timeout =
                    std::time::Duration::from_millis(positive(name, value)?)
            }
            "connection.queued.max.request.bytes" => {
                limits.connection_queued_request_bytes_max = positive(name, value)?
            }
            other => bail!("unknown setting {other}"),
        }
        Ok(())
    }

    pub fn broker_config(&self) -> BrokerConfig {
        let mut config = self.broker.clone();
        config.data_dir = self.data_dir.clone();
        config
    }
}

/// Whether `name` is a setting `Settings::apply` knows.
fn is_setting(name: &str) -> bool {
    let mut probe = Settings::default();
    match probe.apply(name, "1") {
        Ok(()) => true,
        Err(error) => !error.to_string().starts_with("unknown setting"),
    }
}

fn strip_scheme(value: &str) -> &str {
    value.split_once("://").map_or(value, |(_, rest)| rest)
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}={value}: not a number"))
}

fn positive<T: std::str::FromStr + PartialOrd + Default>(name: &str, value: &str) -> Result<T> {
    let n: T = number(name, value)?;
    if n <= T::default() {
        bail!("{name}={value}: must be positive");
    }
    Ok(n)
}

/// A comma-separated list of SASL mechanisms by Kafka's names; an unknown one is an error (a
/// typo must not quietly leave a listener without the mechanism its clients use).
fn mechanisms(value: &str) -> Result<Vec<sasl::Mechanism>> {
    let mut mechanisms = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some(mechanism) = sasl::Mechanism::parse(name) else {
            bail!("sasl.enabled.mechanisms: unknown mechanism {name} (ferry has PLAIN, SCRAM-SHA-256, SCRAM-SHA-512)");
        };
        if !mechanisms.contains(&mechanism) {
            mechanisms.push(mechanism);
        }
    }
    Ok(mechanisms)
}

fn boolean(name: &str, value: &str) -> Result<bool> {
    value
        .parse()
        .map_err(|_| anyhow::anyhow!("{name}={value}: expected true or false"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_resolve_by_kafka_names() {
        let mut settings = Settings::default();
        settings.apply("num.partitions", "4").unwrap();
        settings
            .apply_env(
                [(
                    "FERRY_AUTO_CREATE_TOPICS_ENABLE".to_string(),
                    "false".to_string(),
                )]
                .into_iter(),
            )
            .unwrap();
        settings
            .apply("log.flush.offset.checkpoint.interval.ms", "60000")
            .unwrap();
        assert_eq!(settings.broker.log.recovery_point_interval_ms, 60_000);
        assert!(settings
            .apply("log.flush.offset.checkpoint.interval.ms", "0")
            .is_err());
        assert_eq!(settings.broker.num_partitions, 4);
        assert!(!settings.broker.auto_create_topics);
        assert!(settings.apply("num.partitions", "0").is_err());
        assert_eq!(settings.metrics_listen, None);
        settings.apply("metrics.listen", "127.0.0.1:9644").unwrap();
        assert_eq!(
            settings.metrics_listen,
            Some("127.0.0.1:9644".parse().unwrap())
        );
        assert!(settings.apply("metrics.listen", "9644").is_err());
        assert!(settings.apply("no.such.setting", "1").is_err());
        assert_eq!(
            settings.sasl_mechanisms,
            [sasl::Mechanism::ScramSha512, sasl::Mechanism::ScramSha256]
        );
        settings
            .apply("sasl.enabled.mechanisms", "PLAIN, SCRAM-SHA-256")
            .unwrap();
        assert_eq!(
            settings.sasl_mechanisms,
            [sasl::Mechanism::Plain, sasl::Mechanism::ScramSha256]
        );
        let unknown = settings.apply("sasl.enabled.mechanisms", "PLAIN,GSSAPI");
        assert!(unknown.unwrap_err().to_string().contains("GSSAPI"));
        assert!(
            !settings.broker.authorizer_enabled,
            "the authorizer is off by default"
        );
        settings.apply("authorizer.enabled", "true").unwrap();
        settings
            .apply("super.users", "User:admin;User:ops")
            .unwrap();
        settings
            .apply("allow.everyone.if.no.acl.found", "true")
            .unwrap();
        let authorizer = &settings.broker.authorizer;
        assert!(settings.broker.authorizer_enabled);
        assert_eq!(
            authorizer.super_users,
            [acl::Principal::user("admin"), acl::Principal::user("ops")]
        );
        assert!(authorizer.allow_everyone_if_no_acl_found);
        assert!(settings.apply("super.users", "admin").is_err());
        let ignored = [("FERRY_BIN".to_string(), "/x".to_string())];
        settings.apply_env(ignored.into_iter()).unwrap();
    }

    #[test]
    fn network_threads_are_one_per_core_unless_set() {
        let mut settings = Settings::default();
        assert_eq!(settings.network_threads, None);
        settings.apply("num.network.threads", "3").unwrap();
        assert_eq!(settings.network_threads, Some(3));
        assert!(settings.apply("num.network.threads", "0").is_err());
    }
}
