//! Client settings given on a command line, the way kcat and Kafka's own tools take them:
//! `-X key=value` (repeatable, kcat's convention) and `--client-config FILE` (a Java properties
//! file, like Kafka's `--command-config`). They reach librdkafka as they are, so whatever a
//! cluster needs (`security.protocol=SASL_SSL`, `sasl.mechanism=SCRAM-SHA-512`, certificates)
//! works in every ferry tool without ferry knowing the names.

use std::path::{Path, PathBuf};

use rdkafka::ClientConfig;

use crate::error::ClientError;

/// The command-line options every ferry tool that connects to a cluster takes.
#[derive(Debug, Clone, Default)]
#[cfg_attr(feature = "cli", derive(clap::Args))]
pub struct ConnectArgs {
    /// A librdkafka setting for every client this command makes, e.g.
    /// `-X security.protocol=SASL_SSL` (repeatable; wins over --client-config).
    #[cfg_attr(feature = "cli", arg(short = 'X', value_name = "KEY=VALUE", value_parser = parse_pair))]
    pub settings: Vec<(String, String)>,
    /// A Java properties file of librdkafka settings (Kafka's `--command-config`).
    #[cfg_attr(feature = "cli", arg(long, value_name = "FILE"))]
    pub client_config: Option<PathBuf>,
}

impl ConnectArgs {
    /// The settings in force: the file's, then each `-X` in order (a later one wins).
    pub fn resolve(&self) -> Result<ClientSettings, ClientError> {
        let mut pairs = match &self.client_config {
            Some(path) => read_properties(path)?,
            None => Vec::new(),
        };
        pairs.extend(self.settings.iter().cloned());
        Ok(ClientSettings { pairs })
    }
}

/// librdkafka settings to add to every client a tool makes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientSettings {
    pub pairs: Vec<(String, String)>,
}

impl ClientSettings {
    /// A librdkafka configuration for `bootstrap` with these settings.
    pub fn config(&self, bootstrap: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", bootstrap);
        self.apply(&mut config);
        config
    }

    pub fn apply(&self, config: &mut ClientConfig) {
        for (name, value) in &self.pairs {
            config.set(name, value);
        }
    }

    /// The value in force for `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `security.protocol` as set (librdkafka's default is PLAINTEXT), upper case.
    pub fn security_protocol(&self) -> String {
        self.get("security.protocol")
            .unwrap_or("PLAINTEXT")
            .to_ascii_uppercase()
    }

    /// Whether the connection is encrypted (SSL or SASL_SSL): then nothing between client and
    /// broker, the chaos proxy included, can read the Kafka frames, and a plain TCP probe
    /// cannot talk to the broker.
    pub fn encrypted(&self) -> bool {
        self.security_protocol().ends_with("SSL")
    }

    /// The same settings on the cluster's listener without TLS: `SSL` becomes `PLAINTEXT` and
    /// `SASL_SSL` becomes `SASL_PLAINTEXT` (the SASL settings stay); what a client behind the
    /// chaos proxy uses, since the proxy must read the frames.
    pub fn without_tls(&self) -> ClientSettings {
        let lowered = match self.security_protocol().as_str() {
            "SSL" => "PLAINTEXT",
            "SASL_SSL" => "SASL_PLAINTEXT",
            _ => return self.clone(),
        };
        let mut settings = self.clone();
        settings
            .pairs
            .push(("security.protocol".to_string(), lowered.to_string()));
        settings
    }

    /// Whether the connection is plaintext and unauthenticated, what ferry's own small protocol
    /// clients (the ApiVersions probe) can speak.
    pub fn plaintext(&self) -> bool {
        self.security_protocol() == "PLAINTEXT"
    }
}

/// Parses one `-X` argument: `key=value`, the value may hold `=`.
pub fn parse_pair(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

/// Reads a Java properties file (comments, `=`/`:`/space separators, continuation lines and
/// escapes as Java reads them), in file order.
pub fn read_properties(path: &Path) -> Result<Vec<(String, String)>, ClientError> {
    let failed = |reason: String| ClientError::ClientConfig {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
    let mut pairs = Vec::new();
    java_properties::PropertiesIter::new(std::io::BufReader::new(file))
        .read_into(|key, value| pairs.push((key, value)))
        .map_err(|e| failed(e.to_string()))?;
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_properties_file_then_each_flag_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.properties");
        std::fs::write(
            &path,
            "# Kafka's --command-config style\n\
             security.protocol=SASL_SSL\n\
             sasl.mechanism : SCRAM-SHA-512\n\
             sasl.username alice\n\
             sasl.password=pa\\\n    ss=word\n\
             ! another comment\n",
        )
        .unwrap();
        let args = ConnectArgs {
            settings: vec![
                parse_pair("sasl.username=bob").unwrap(),
                parse_pair("ssl.ca.location=/tmp/ca=1.pem").unwrap(),
            ],
            client_config: Some(path),
        };
        let settings = args.resolve().unwrap();
        assert_eq!(settings.get("sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(settings.get("sasl.password"), Some("pass=word"));
        assert_eq!(settings.get("sasl.username"), Some("bob"), "-X wins");
        assert_eq!(settings.get("ssl.ca.location"), Some("/tmp/ca=1.pem"));
        assert!(settings.encrypted());
        assert!(!settings.plaintext());
        let config = settings.config("127.0.0.1:9093");
        assert_eq!(config.get("bootstrap.servers"), Some("127.0.0.1:9093"));
        assert_eq!(config.get("sasl.username"), Some("bob"));
    }

    #[test]
    fn protocols_by_what_a_proxy_or_probe_can_see() {
        let with = |protocol: &str| ClientSettings {
            pairs: vec![("security.protocol".into(), protocol.into())],
        };
        let cases = [
            ("plaintext", false, true),
            ("SSL", true, false),
            ("sasl_ssl", true, false),
            ("SASL_PLAINTEXT", false, false),
        ];
        for (protocol, encrypted, plaintext) in cases {
            assert_eq!(with(protocol).encrypted(), encrypted, "{protocol}");
            assert_eq!(with(protocol).plaintext(), plaintext, "{protocol}");
        }
        assert!(ClientSettings::default().plaintext());
        let lowered = [
            ("SSL", "PLAINTEXT"),
            ("SASL_SSL", "SASL_PLAINTEXT"),
            ("SASL_PLAINTEXT", "SASL_PLAINTEXT"),
            ("PLAINTEXT", "PLAINTEXT"),
        ];
        for (protocol, without) in lowered {
            let settings = with(protocol).without_tls();
            assert_eq!(settings.security_protocol(), without, "{protocol}");
            assert!(!settings.encrypted());
        }
    }

    #[test]
    fn bad_input_is_named() {
        assert!(parse_pair("novalue").is_err());
        assert!(parse_pair("=x").is_err());
        let missing = ConnectArgs {
            client_config: Some("/nonexistent/client.properties".into()),
            ..ConnectArgs::default()
        };
        let error = missing.resolve().unwrap_err().to_string();
        assert!(error.contains("/nonexistent/client.properties"), "{error}");
    }
}
