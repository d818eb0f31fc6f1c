//! Where to connect and what to add to a guarantee's settings; turns both into a librdkafka
//! configuration. The guarantee's own settings are applied last, so an extra setting can never
//! quietly weaken the contract (an `acks=1` in `extra` is overridden, not obeyed).

use rdkafka::ClientConfig;

use crate::error::ClientError;
use crate::guarantee::Guarantee;

/// Connection and identity settings shared by producers and consumers.
#[derive(Clone, Debug)]
pub struct Settings {
    /// `bootstrap.servers`.
    pub bootstrap: String,
    /// `group.id`; consumers need one.
    pub group_id: Option<String>,
    /// `transactional.id`; exactly-once producers need one, stable per application instance so
    /// that a restarted instance fences its predecessor.
    pub transactional_id: Option<String>,
    /// Further librdkafka settings (timeouts, batching). They may not change what the guarantee
    /// sets; see the module documentation.
    pub extra: Vec<(String, String)>,
}

impl Settings {
    pub fn new(bootstrap: impl Into<String>) -> Settings {
        Settings {
            bootstrap: bootstrap.into(),
            group_id: None,
            transactional_id: None,
            extra: Vec::new(),
        }
    }

    pub fn group_id(mut self, group_id: impl Into<String>) -> Settings {
        self.group_id = Some(group_id.into());
        self
    }

    pub fn transactional_id(mut self, transactional_id: impl Into<String>) -> Settings {
        self.transactional_id = Some(transactional_id.into());
        self
    }

    /// Adds a tool's command-line client settings (`-X`, `--client-config`: security and the
    /// like) to `extra`.
    pub fn with_client(mut self, client: &crate::connect::ClientSettings) -> Settings {
        self.extra.extend(client.pairs.iter().cloned());
        self
    }

    pub fn set(mut self, name: impl Into<String>, value: impl Into<String>) -> Settings {
        self.extra.push((name.into(), value.into()));
        self
    }

    /// The librdkafka configuration of a producer under `guarantee`.
    pub fn producer_config(&self, guarantee: Guarantee) -> Result<ClientConfig, ClientError> {
        let mut config = self.base_config();
        for (name, value) in guarantee.producer_settings() {
            config.set(*name, *value);
        }
        if guarantee == Guarantee::ExactlyOnce {
            let id = self
                .transactional_id
                .as_deref()
                .ok_or(ClientError::MissingSetting("transactional.id"))?;
            config.set("transactional.id", id);
        }
        Ok(config)
    }

    /// The librdkafka configuration of a group consumer under `guarantee`.
    pub fn consumer_config(&self, guarantee: Guarantee) -> Result<ClientConfig, ClientError> {
        let group_id = self
            .group_id
            .as_deref()
            .ok_or(ClientError::MissingSetting("group.id"))?;
        let mut config = self.base_config();
        config.set("group.id", group_id);
        // A consumer loop notices end of partition by an empty poll; EOF events are noise.
        config.set("enable.partition.eof", "false");
        for (name, value) in guarantee.consumer_settings() {
            config.set(*name, *value);
        }
        Ok(config)
    }

    /// The configuration every client starts from: the bootstrap and `extra`.
    pub fn base_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (name, value) in &self.extra {
            config.set(name, value);
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guarantee_settings_win_over_extra() {
        let settings = Settings::new("127.0.0.1:9092")
            .set("acks", "1")
            .set("linger.ms", "1");
        let config = settings.producer_config(Guarantee::AtLeastOnce).unwrap();
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("linger.ms"), Some("1"));
        assert_eq!(config.get("enable.idempotence"), Some("false"));
    }

    #[test]
    fn missing_ids_are_errors() {
        let settings = Settings::new("127.0.0.1:9092");
        assert_eq!(
            settings
                .producer_config(Guarantee::ExactlyOnce)
                .unwrap_err()
                .to_string(),
            "setting transactional.id is required"
        );
        assert_eq!(
            settings
                .consumer_config(Guarantee::AtMostOnce)
                .unwrap_err()
                .to_string(),
            "setting group.id is required"
        );
    }
}
