//! A topic's settings, typed: the broker defaults with the topic's overrides applied, parsed
//! once when the topic is created, altered or loaded, so the produce path and the partition logs
//! read numbers, not strings. The overrides themselves stay strings by Kafka name in `meta.json`
//! (`TopicMeta.configs`, format unchanged), which DescribeConfigs reports as topic overrides.

use std::collections::BTreeMap;

use storage::LogConfig;

/// Topic-level settings ferry understands, by their Kafka names.
pub const TOPIC_CONFIG_NAMES: &[&str] = &[
    "cleanup.policy",
    "retention.ms",
    "retention.bytes",
    "segment.bytes",
    "segment.ms",
    "max.message.bytes",
];

/// `cleanup.policy`: ferry deletes old segments; it does not compact topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CleanupPolicy {
    Delete,
}

/// The effective settings of a topic (see the module comment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicConfig {
    pub cleanup_policy: CleanupPolicy,
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
}

impl TopicConfig {
    /// The broker defaults: its `log.*` settings and `message.max.bytes`.
    pub fn defaults(log: &LogConfig, message_max_bytes: usize) -> TopicConfig {
        TopicConfig {
            cleanup_policy: CleanupPolicy::Delete,
            retention_ms: log.retention_ms,
            retention_bytes: log.retention_bytes,
            segment_bytes: log.segment_bytes,
            segment_ms: log.segment_ms,
            max_message_bytes: message_max_bytes,
        }
    }

    /// These settings with a topic's overrides applied. Overrides are checked when they are set
    /// ([`validate_topic_config`]); one that does not parse (a hand-edited `meta.json`), a
    /// non-positive `segment.bytes` or `segment.ms`, or a negative `max.message.bytes` leaves
    /// the default in place.
    pub fn with_overrides(&self, overrides: &BTreeMap<String, String>) -> TopicConfig {
        let mut config = self.clone();
        for (name, value) in overrides {
            let Ok(number) = value.parse::<i64>() else {
                continue;
            };
            match name.as_str() {
                "retention.ms" => config.retention_ms = number,
                "retention.bytes" => config.retention_bytes = number,
                "segment.bytes" if number > 0 => config.segment_bytes = number as u64,
                "segment.ms" if number > 0 => config.segment_ms = number,
                "max.message.bytes" => {
                    if let Ok(bytes) = usize::try_from(number) {
                        config.max_message_bytes = bytes;
                    }
                }
                _ => {}
            }
        }
        config
    }

    /// The partition logs' settings: `base` (the broker's, for what a topic cannot override)
    /// with this topic's segment and retention settings.
    pub fn log_config(&self, base: &LogConfig) -> LogConfig {
        LogConfig {
            segment_bytes: self.segment_bytes,
            segment_ms: self.segment_ms,
            retention_bytes: self.retention_bytes,
            retention_ms: self.retention_ms,
            ..base.clone()
        }
    }

    /// A setting's value by its Kafka name, as DescribeConfigs shows it.
    pub fn value(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => match self.cleanup_policy {
                CleanupPolicy::Delete => "delete".to_string(),
            },
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
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
        "cleanup.policy" if value == "delete" => Ok(()),
        "cleanup.policy" => Err(format!(
            "cleanup.policy={value} is not supported (only delete)"
        )),
        _ => match value.parse::<i64>() {
            Ok(n) if n >= -1 => Ok(()),
            _ => Err(format!("{name}={value} is not a valid number")),
        },
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
        check("cleanup.policy", "compact", false);
        check("no.such.config", "1", false);
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
        // Values that cannot apply keep the defaults, as they always did.
        check(
            &[
                ("segment.bytes", "0"),
                ("segment.ms", "-1"),
                ("max.message.bytes", "-1"),
                ("retention.bytes", "soon"),
            ],
            defaults.clone(),
        );
    }
}
