//! A topic's settings, typed: the broker defaults with the topic's overrides applied, parsed
//! once when the topic is created, altered or loaded, so the produce path and the partition logs
//! read numbers, not strings. The overrides themselves stay strings by Kafka name in `meta.json`
//! (`TopicMeta.configs`, format unchanged), which DescribeConfigs reports as topic overrides.

use std::collections::BTreeMap;

use storage::{CompactionConfig, LogConfig};

/// A record's or batch's timestamp when it has none (Kafka's `RecordBatch.NO_TIMESTAMP`).
pub const NO_TIMESTAMP: i64 = -1;

/// Topic-level settings ferry understands, by their Kafka names.
pub const TOPIC_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "delete.retention.ms",
    "min.cleanable.dirty.ratio",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
    "message.timestamp.before.max.ms",
    "message.timestamp.after.max.ms",
    "message.timestamp.difference.max.ms",
    "message.timestamp.type",
    "compression.type",
    "message.format.version",
];

/// Kafka 3.x's default `message.format.version`: accepted and ignored, as Kafka 3.x ignores it
/// (every batch is v2).
pub const MESSAGE_FORMAT_VERSION_DEFAULT: &str = "3.0-IV1";
/// The one `compression.type` ferry takes: batches are stored as the producer compressed them
/// (ferry never recompresses, so the other values are refused rather than ignored).
pub const COMPRESSION_TYPE_PRODUCER: &str = "producer";

/// `message.timestamp.type`: whose clock a record's timestamp is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// The producer's (the default).
    CreateTime,
    /// The broker's, set on every batch as it is appended.
    LogAppendTime,
}

/// The broker settings that can change at run time (IncrementalAlterConfigs on the BROKER
/// resource), each the default of a topic setting: (broker name, topic name).
pub const DYNAMIC_BROKER_CONFIGS: &[(&str, &str)] = &[
    ("log.retention.ms", "retention.ms"),
    ("log.retention.bytes", "retention.bytes"),
    ("log.segment.bytes", "segment.bytes"),
    ("log.roll.ms", "segment.ms"),
    ("message.max.bytes", "max.message.bytes"),
];

/// The topic setting a dynamic broker setting is the default of.
pub fn topic_synonym(broker_config: &str) -> Option<&'static str> {
    DYNAMIC_BROKER_CONFIGS
        .iter()
        .find(|(broker, _)| *broker == broker_config)
        .map(|(_, topic)| *topic)
}

/// Kafka's default of `message.timestamp.before.max.ms`: a record may be any age.
pub const MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT: i64 = i64::MAX;
/// Kafka's default of `message.timestamp.after.max.ms` since 4.0 (KIP-1030; `Long.MAX_VALUE`
/// in 3.6 to 3.9): a record may be at most an hour ahead of the broker's clock. ferry takes the
/// newer default, also for clients on older protocol versions.
pub const MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT: i64 = 3_600_000;
/// Kafka's default of the older `message.timestamp.difference.max.ms` (deprecated in 3.6,
/// removed in 4.0): no limit.
pub const MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS_DEFAULT: i64 = i64::MAX;

/// `cleanup.policy`: delete old segments (retention), compact by key, or both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    /// Kafka's list syntax: `delete`, `compact`, or both in either order, comma-separated.
    pub fn parse(value: &str) -> Option<CleanupPolicy> {
        let (mut compact, mut delete) = (false, false);
        for item in value.split(',').map(str::trim) {
            match item {
                "compact" => compact = true,
                "delete" => delete = true,
                _ => return None,
            }
        }
        Some(match (compact, delete) {
            (true, true) => CleanupPolicy::CompactDelete,
            (true, false) => CleanupPolicy::Compact,
            (false, _) => CleanupPolicy::Delete,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            CleanupPolicy::Delete => "delete",
            CleanupPolicy::Compact => "compact",
            CleanupPolicy::CompactDelete => "compact,delete",
        }
    }

    pub fn compacts(self) -> bool {
        self != CleanupPolicy::Delete
    }

    /// Whether retention deletes old segments (`compact` alone keeps every key forever).
    pub fn deletes(self) -> bool {
        self != CleanupPolicy::Compact
    }
}

/// `min.cleanable.dirty.ratio` as a number of millionths, from Kafka's decimal form.
fn parse_ratio(value: &str) -> Option<u32> {
    let ratio: f64 = value.parse().ok()?;
    (0.0..=1.0)
        .contains(&ratio)
        .then(|| (ratio * 1_000_000.0).round() as u32)
}

/// The effective settings of a topic (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`, `min.cleanable.dirty.ratio`, `min.compaction.lag.ms` and
    /// `max.compaction.lag.ms`: used when `cleanup_policy` compacts.
    pub compaction: CompactionConfig,
    /// `retention.ms`: -1 for unlimited.
    pub retention_ms: i64,
    /// `retention.bytes`: -1 for unlimited.
    pub retention_bytes: i64,
    /// `segment.bytes`.
    pub segment_bytes: u64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `max.message.bytes`: the largest record batch a producer may send to the topic.
    pub max_message_bytes: usize,
    /// `message.timestamp.before.max.ms`: how far behind the broker's clock a produced
    /// timestamp may be (`message.timestamp.difference.max.ms` when only that is set).
    pub timestamp_before_max_ms: i64,
    /// `message.timestamp.after.max.ms`: how far ahead of the broker's clock a produced
    /// timestamp may be (`message.timestamp.difference.max.ms` when only that is set).
    pub timestamp_after_max_ms: i64,
    /// `message.timestamp.difference.max.ms`, the pre-3.6 name of both bounds; kept to report
    /// it, the bounds above already include it.
    pub timestamp_difference_max_ms: i64,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
}

impl TopicConfig {
    /// The broker defaults: its `log.*` settings and `message.max.bytes`.
    pub fn defaults(log: &LogConfig, message_max_bytes: usize) -> TopicConfig {
        TopicConfig {
            cleanup_policy: CleanupPolicy::Delete,
            compaction: CompactionConfig::default(),
            retention_ms: log.retention_ms,
            retention_bytes: log.retention_bytes,
            segment_bytes: log.segment_bytes,
            segment_ms: log.segment_ms,
            max_message_bytes: message_max_bytes,
            timestamp_before_max_ms: MESSAGE_TIMESTAMP_BEFORE_MAX_MS_DEFAULT,
            timestamp_after_max_ms: MESSAGE_TIMESTAMP_AFTER_MAX_MS_DEFAULT,
            timestamp_difference_max_ms: MESSAGE_TIMESTAMP_DIFFERENCE_MAX_MS_DEFAULT,
            timestamp_type: TimestampType::CreateTime,
        }
    }

    /// These settings with a topic's overrides applied. Overrides are checked when they are set
    /// ([`validate_topic_config`]); one that does not parse (a hand-edited `meta.json`), a
    /// non-positive `segment.bytes` or `segment.ms`, or a negative `max.message.bytes` leaves
    /// the default in place. `message.timestamp.difference.max.ms` sets each of the before and
    /// after bounds that is not itself overridden (Kafka 3.6 to 3.9 apply it to a bound left at
    /// its default).
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let mut config = self.clone();
        let mut before_set = false;
        let mut after_set = false;
        let mut difference_set = false;
        for (name, value) in overrides {
            if name == "message.timestamp.type" && value == "LogAppendTime" {
                config.timestamp_type = TimestampType::LogAppendTime;
            }
            if name == "cleanup.policy" {
                if let Some(policy) = CleanupPolicy::parse(value) {
                    config.cleanup_policy = policy;
                }
            }
            if name == "min.cleanable.dirty.ratio" {
                if let Some(ppm) = parse_ratio(value) {
                    config.compaction.min_cleanable_dirty_ratio_ppm = ppm;
                }
            }
            let Ok(number) = value.parse::<i64>() else {
                continue;
            };
            match name.as_str() {
                "retention.ms" => config.retention_ms = number,
                "delete.retention.ms" if number >= 0 => {
                    config.compaction.delete_retention_ms = number
                }
                "min.compaction.lag.ms" if number >= 0 => {
                    config.compaction.min_compaction_lag_ms = number
                }
                "max.compaction.lag.ms" if number >= 1 => {
                    config.compaction.max_compaction_lag_ms = number
                }
                "retention.bytes" => config.retention_bytes = number,
                "segment.bytes" if number > 0 => config.segment_bytes = number as u64,
                "segment.ms" if number > 0 => config.segment_ms = number,
                "max.message.bytes" => {
                    if let Ok(bytes) = usize::try_from(number) {
                        config.max_message_bytes = bytes;
                    }
                }
                "message.timestamp.before.max.ms" if number >= 0 => {
                    config.timestamp_before_max_ms = number;
                    before_set = true;
                }
                "message.timestamp.after.max.ms" if number >= 0 => {
                    config.timestamp_after_max_ms = number;
                    after_set = true;
                }
                "message.timestamp.difference.max.ms" if number >= 0 => {
                    config.timestamp_difference_max_ms = number;
                    difference_set = true;
                }
                _ => {}
            }
        }
        if difference_set {
            if !before_set {
                config.timestamp_before_max_ms = config.timestamp_difference_max_ms;
            }
            if !after_set {
                config.timestamp_after_max_ms = config.timestamp_difference_max_ms;
            }
        }
        config
    }

    /// Whether a produced (CreateTime) timestamp is within the bounds around `now_ms`; the
    /// error text goes back to the client with INVALID_TIMESTAMP. -1, no timestamp, always is.
    pub fn check_timestamp(&self, timestamp_ms: i64, now_ms: i64) -> Result<(), String> {
        let earliest = now_ms.saturating_sub(self.timestamp_before_max_ms);
        let latest = now_ms.saturating_add(self.timestamp_after_max_ms);
        if timestamp_ms == NO_TIMESTAMP || (earliest..=latest).contains(&timestamp_ms) {
            return Ok(());
        }
        Err(format!(
            "timestamp {timestamp_ms} is out of range: it must be within [{earliest}, {latest}] \
             (message.timestamp.before.max.ms {}, message.timestamp.after.max.ms {})",
            self.timestamp_before_max_ms, self.timestamp_after_max_ms
        ))
    }

    /// The partition logs' settings: `base` (the broker's, for what a topic cannot override)
    /// with this topic's segment and retention settings.
    /// A topic that compacts only keeps old segments whatever their age or size (retention is
    /// the `delete` policy's).
    pub fn log_config(&self, base: &LogConfig) -> LogConfig {
        let deletes = self.cleanup_policy.deletes();
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_bytes: if deletes { self.retention_bytes } else { -1 },
            retention_ms: if deletes { self.retention_ms } else { -1 },
            compaction: self.cleanup_policy.compacts().then_some(self.compaction),
            ..base.clone()
        }
    }

    /// A setting's value by its Kafka name, as DescribeConfigs shows it.
    pub fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => self.cleanup_policy.name().to_string(),
            "delete.retention.ms" => self.compaction.delete_retention_ms.to_string(),
            "min.cleanable.dirty.ratio" => {
                (f64::from(self.compaction.min_cleanable_dirty_ratio_ppm) / 1_000_000.0).to_string()
            }
            "min.compaction.lag.ms" => self.compaction.min_compaction_lag_ms.to_string(),
            "max.compaction.lag.ms" => self.compaction.max_compaction_lag_ms.to_string(),
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "message.timestamp.before.max.ms" => self.timestamp_before_max_ms.to_string(),
            "message.timestamp.after.max.ms" => self.timestamp_after_max_ms.to_string(),
            "message.timestamp.difference.max.ms" => self.timestamp_difference_max_ms.to_string(),
            "message.timestamp.type" => match self.timestamp_type {
                TimestampType::CreateTime => "CreateTime".to_string(),
                TimestampType::LogAppendTime => "LogAppendTime".to_string(),
            },
            "compression.type" => COMPRESSION_TYPE_PRODUCER.to_string(),
            "message.format.version" => MESSAGE_FORMAT_VERSION_DEFAULT.to_string(),
            _ => return None,
        })
    }
}

/// Checks a topic config override; the error text goes back to the client with INVALID_CONFIG.
pub fn validate_topic_config(name: &str, value: Option<&str>) -> Result<(), String> {
    if !TOPIC_CONFIG_NAMES.contains(&name) {
        return Err(format!("unknown or unsupported topic config {name}"));
    }
    let Some(value) = value else { return Ok(()) };
    match name {
        "cleanup.policy" if CleanupPolicy::parse(value).is_some() => Ok(()),
        "cleanup.policy" => Err(format!(
            "cleanup.policy={value} is not a list of delete and compact"
        )),
        "min.cleanable.dirty.ratio" if parse_ratio(value).is_some() => Ok(()),
        "min.cleanable.dirty.ratio" => Err(format!(
            "min.cleanable.dirty.ratio={value} is not a number from 0 to 1"
        )),
        "delete.retention.ms" | "min.compaction.lag.ms" => at_least(name, value, 0),
        "max.compaction.lag.ms" => at_least(name, value, 1),
        "message.timestamp.type" if matches!(value, "CreateTime" | "LogAppendTime") => Ok(()),
        "message.timestamp.type" => Err(format!(
            "message.timestamp.type={value} is not CreateTime or LogAppendTime"
        )),
        "compression.type" if value == COMPRESSION_TYPE_PRODUCER => Ok(()),
        "compression.type" => Err(format!(
            "compression.type={value} is not supported: ferry stores batches as the producer \
             compressed them (only compression.type=producer)"
        )),
        // Ignored, as Kafka 3.x ignores it; any version string is taken.
        "message.format.version" if !value.is_empty() => Ok(()),
        // Kafka's range for these: at least 0.
        "message.timestamp.before.max.ms"
        | "message.timestamp.after.max.ms"
        | "message.timestamp.difference.max.ms" => match value.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(()),
            _ => Err(format!("{name}={value} is not a number of at least 0")),
        },
        // Kafka's ranges: a segment of at least 14 bytes (one empty batch header), rolled after
        // at least 1 ms; a batch limit of at least 0.
        "segment.bytes" => at_least(name, value, SEGMENT_BYTES_MIN),
        "segment.ms" => at_least(name, value, 1),
        "max.message.bytes" => at_least(name, value, 0),
        _ => at_least(name, value, -1),
    }
}

/// Kafka's smallest `segment.bytes`.
const SEGMENT_BYTES_MIN: i64 = 14;

fn at_least(name: &str, value: &str, min: i64) -> Result<(), String> {
    match value.parse::<i64>() {
        Ok(n) if n >= min => Ok(()),
        _ => Err(format!("{name}={value} is not a number of at least {min}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_configs() {
        let check = |name: &str, value: &str, ok: bool| {
            assert_eq!(
                validate_topic_config(name, Some(value)).is_ok(),
                ok,
                "{name}={value}"
            )
        };
        check("retention.ms", "1000", true);
        check("retention.ms", "-1", true);
        check("retention.ms", "soon", false);
        check("cleanup.policy", "delete", true);
        check("cleanup.policy", "compact", true);
        check("cleanup.policy", "compact,delete", true);
        check("cleanup.policy", "delete, compact", true);
        check("cleanup.policy", "compacted", false);
        check("cleanup.policy", "", false);
        check("min.cleanable.dirty.ratio", "0.01", true);
        check("min.cleanable.dirty.ratio", "1.5", false);
        check("delete.retention.ms", "0", true);
        check("delete.retention.ms", "-1", false);
        check("max.compaction.lag.ms", "0", false);
        check("message.timestamp.after.max.ms", "0", true);
        check("message.timestamp.after.max.ms", "-1", false);
        check(
            "message.timestamp.before.max.ms",
            "9223372036854775807",
            true,
        );
        check("message.timestamp.difference.max.ms", "soon", false);
        check("message.timestamp.type", "LogAppendTime", true);
        check("message.timestamp.type", "CreateTime", true);
        check("message.timestamp.type", "logappendtime", false);
        check("compression.type", "producer", true);
        check("compression.type", "zstd", false);
        check("message.format.version", "2.8-IV1", true);
        check("segment.bytes", "0", false);
        check("segment.bytes", "14", true);
        check("segment.ms", "0", false);
        check("max.message.bytes", "-1", false);
        check("no.such.config", "1", false);
    }

    #[test]
    fn the_cleanup_policy_sets_compaction_and_retention() {
        let base = LogConfig::default();
        let defaults = TopicConfig::defaults(&base, 1 << 20);
        let with = |pairs: &[(&str, &str)]| {
            let overrides = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            defaults.with_overrides(&overrides).log_config(&base)
        };
        let delete = with(&[]);
        assert_eq!(
            (delete.compaction, delete.retention_ms),
            (None, base.retention_ms)
        );
        let compact = with(&[
            ("cleanup.policy", "compact"),
            ("min.cleanable.dirty.ratio", "0.01"),
            ("delete.retention.ms", "100"),
        ]);
        let settings = compact.compaction.expect("compacts");
        assert_eq!(settings.min_cleanable_dirty_ratio_ppm, 10_000);
        assert_eq!(settings.delete_retention_ms, 100);
        assert_eq!((compact.retention_ms, compact.retention_bytes), (-1, -1));
        let both = with(&[("cleanup.policy", "delete,compact")]);
        assert!(both.compaction.is_some());
        assert_eq!(both.retention_ms, base.retention_ms);
        let config = defaults
            .with_overrides(&[("cleanup.policy".to_string(), "delete,compact".to_string())].into());
        assert_eq!(
            config.value("cleanup.policy").as_deref(),
            Some("compact,delete")
        );
        assert_eq!(
            defaults.value("min.cleanable.dirty.ratio").as_deref(),
            Some("0.5")
        );
    }

    #[test]
    fn the_timestamp_type_is_parsed_once() {
        let defaults = TopicConfig::defaults(&LogConfig::default(), 1 << 20);
        assert_eq!(defaults.timestamp_type, TimestampType::CreateTime);
        let overrides = BTreeMap::from([(
            "message.timestamp.type".to_string(),
            "LogAppendTime".to_string(),
        )]);
        let config = defaults.with_overrides(&overrides);
        assert_eq!(config.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(
            config.value("message.timestamp.type").as_deref(),
            Some("LogAppendTime")
        );
    }

    #[test]
    fn overrides_apply_once_parsed() {
        let defaults = TopicConfig::defaults(&LogConfig::default(), 1000);
        let check = |pairs: &[(&str, &str)], expect: TopicConfig| {
            let overrides = pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(defaults.with_overrides(&overrides), expect, "{pairs:?}");
        };
        check(&[], defaults.clone());
        check(
            &[("retention.ms", "-1"), ("max.message.bytes", "42")],
            TopicConfig {
                retention_ms: -1,
                max_message_bytes: 42,
                ..defaults.clone()
            },
        );
        check(
            &[("segment.bytes", "4096"), ("segment.ms", "60000")],
            TopicConfig {
                segment_bytes: 4096,
                segment_ms: 60_000,
                ..defaults.clone()
            },
        );
        // The old name sets the bounds not set by their own names.
        check(
            &[
                ("message.timestamp.difference.max.ms", "5000"),
                ("message.timestamp.after.max.ms", "100"),
            ],
            TopicConfig {
                timestamp_before_max_ms: 5000,
                timestamp_after_max_ms: 100,
                timestamp_difference_max_ms: 5000,
                ..defaults.clone()
            },
        );
        // Values that cannot apply keep the defaults, as they always did.
        check(
            &[
                ("segment.bytes", "0"),
                ("segment.ms", "-1"),
                ("max.message.bytes", "-1"),
                ("retention.bytes", "soon"),
                ("message.timestamp.after.max.ms", "-1"),
            ],
            defaults.clone(),
        );
    }

    #[test]
    fn timestamp_bounds() {
        let now = 1_000_000;
        let config = TopicConfig::defaults(&LogConfig::default(), 1000).with_overrides(
            &[
                (
                    "message.timestamp.before.max.ms".to_string(),
                    "100".to_string(),
                ),
                (
                    "message.timestamp.after.max.ms".to_string(),
                    "10".to_string(),
                ),
            ]
            .into(),
        );
        let check = |timestamp: i64, ok: bool| {
            assert_eq!(
                config.check_timestamp(timestamp, now).is_ok(),
                ok,
                "{timestamp}"
            );
        };
        check(now, true);
        check(now - 100, true);
        check(now - 101, false);
        check(now + 10, true);
        check(now + 11, false);
        check(NO_TIMESTAMP, true);
        check(0, false);
        // The defaults: any age, at most an hour ahead.
        let defaults = TopicConfig::defaults(&LogConfig::default(), 1000);
        assert!(defaults.check_timestamp(0, now).is_ok());
        assert!(defaults.check_timestamp(now + 3_600_000, now).is_ok());
        assert!(defaults.check_timestamp(now + 3_600_001, now).is_err());
        assert!(defaults.check_timestamp(i64::MAX, i64::MAX).is_ok());
    }
}
