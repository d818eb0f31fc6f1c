//! The listener settings by Kafka's names: `listeners` (several at once, each
//! `NAME://host:port`), `listener.security.protocol.map` (custom names), `advertised.listeners`
//! (matched by name), and the shorthands `--listen` (one PLAINTEXT listener) and
//! `--advertised-listener` (a bare `host:port` for the first listener). Resolving them is pure;
//! `ferry serve` binds what they say.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use broker::ListenerName;
use server::tls::{ClientAuth, TlsSettings};
use server::SecurityProtocol;

/// The listener settings as given; [`NetworkSettings::resolve`] checks and combines them.
#[derive(Debug, Clone, Default)]
pub struct NetworkSettings {
    /// `listeners`.
    listeners: Option<String>,
    /// `listener.security.protocol.map`.
    protocol_map: Option<String>,
    /// `advertised.listeners`, or `--advertised-listener`.
    pub advertised: Option<String>,
    /// The `ssl.*` settings of TLS listeners.
    pub tls: TlsSettings,
}

/// One listener to bind, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerSpec {
    pub name: ListenerName,
    pub protocol: SecurityProtocol,
    /// Where to bind; an empty host in `listeners` means every interface, as in Kafka.
    pub host: String,
    pub port: u16,
    /// Its `advertised.listeners` entry; None advertises the bound address.
    pub advertised: Option<(String, u16)>,
}

impl NetworkSettings {
    /// Takes one of the listener or `ssl.*` settings; false if `name` is none of them.
    pub fn apply(&mut self, name: &str, value: &str) -> Result<bool> {
        let tls = &mut self.tls;
        match name {
            "listeners" => self.listeners = Some(value.to_string()),
            "listener.security.protocol.map" => self.protocol_map = Some(value.to_string()),
            "advertised.listeners" => self.advertised = Some(value.to_string()),
            "ssl.keystore.type" if value.eq_ignore_ascii_case("PEM") => {}
            "ssl.keystore.type" | "ssl.truststore.type" if !value.eq_ignore_ascii_case("PEM") => {
                bail!("{name}={value}: ferry reads PEM files only ({name}=PEM)")
            }
            "ssl.truststore.type" => {}
            "ssl.keystore.location" => tls.keystore = Some(PathBuf::from(value)),
            "ssl.key.password" => tls.key_password = Some(value.to_string()),
            "ssl.truststore.location" => tls.truststore = Some(PathBuf::from(value)),
            "ssl.client.auth" => {
                tls.client_auth = ClientAuth::parse(value).with_context(|| {
                    format!("ssl.client.auth={value}: expected none, requested or required")
                })?
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// The listeners to bind, in the order given (the first is the one `ferry: listening on`
    /// names). `listen` is `--listen`: one PLAINTEXT listener, refused beside `listeners`.
    /// Without either, PLAINTEXT on 127.0.0.1:9092.
    pub fn resolve(&self, listen: Option<SocketAddr>) -> Result<Vec<ListenerSpec>> {
        let listeners = match (&self.listeners, listen) {
            (Some(value), Some(listen)) => bail!(
                "both --listen {listen} (FERRY_LISTEN) and listeners={value} are set: --listen \
                 is the shorthand for listeners=PLAINTEXT://{listen}; use one of them"
            ),
            (Some(value), None) => value.clone(),
            (None, Some(listen)) => format!("PLAINTEXT://{listen}"),
            (None, None) => "PLAINTEXT://127.0.0.1:9092".to_string(),
        };
        let map = self.protocol_map()?;
        let mut specs: Vec<ListenerSpec> = Vec::new();
        for entry in entries(&listeners) {
            let spec = listener(entry, &map).with_context(|| format!("listeners={listeners}"))?;
            if specs.iter().any(|s| s.name == spec.name) {
                bail!(
                    "listeners={listeners}: listener {} appears twice",
                    spec.name
                );
            }
            specs.push(spec);
        }
        if specs.is_empty() {
            bail!("listeners={listeners}: no listener");
        }
        if let Some(advertised) = &self.advertised {
            self.apply_advertised(advertised, &mut specs)
                .with_context(|| format!("advertised.listeners={advertised}"))?;
        }
        Ok(specs)
    }

    /// `listener.security.protocol.map`, over Kafka's default: each protocol names itself.
    fn protocol_map(&self) -> Result<BTreeMap<ListenerName, SecurityProtocol>> {
        let mut map: BTreeMap<ListenerName, SecurityProtocol> = SecurityProtocol::ALL
            .into_iter()
            .map(|p| (ListenerName::new(p.as_str()), p))
            .collect();
        let Some(value) = &self.protocol_map else {
            return Ok(map);
        };
        for entry in entries(value) {
            let (name, protocol) = entry.split_once(':').with_context(|| {
                format!("listener.security.protocol.map={value}: expected NAME:PROTOCOL in {entry}")
            })?;
            let protocol = protocol_named(protocol.trim())
                .with_context(|| format!("listener.security.protocol.map={value}"))?;
            map.insert(ListenerName::new(name.trim()), protocol);
        }
        Ok(map)
    }

    fn apply_advertised(&self, advertised: &str, specs: &mut [ListenerSpec]) -> Result<()> {
        let advertised_entries: Vec<&str> = entries(advertised).collect();
        for entry in &advertised_entries {
            let (name, address) = match entry.split_once("://") {
                Some((name, address)) => (Some(ListenerName::new(name.trim())), address),
                // A bare host:port (the `--advertised-listener` shorthand) is the first
                // listener's, and only on its own.
                None if advertised_entries.len() == 1 => (None, *entry),
                None => bail!("{entry}: expected NAME://host:port beside other entries"),
            };
            let spec = match &name {
                Some(name) => specs
                    .iter_mut()
                    .find(|s| &s.name == name)
                    .with_context(|| format!("{entry}: no listener named {name} in listeners"))?,
                None => &mut specs[0],
            };
            let (host, port) = host_port(address)?;
            if host.is_empty() {
                bail!("{entry}: an advertised listener needs a host");
            }
            spec.advertised = Some((host, port));
        }
        Ok(())
    }
}

/// The non-empty, trimmed entries of a comma-separated list.
fn entries(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|e| !e.is_empty())
}

/// One `NAME://host:port` of `listeners`; a bare `host:port` is PLAINTEXT.
fn listener(entry: &str, map: &BTreeMap<ListenerName, SecurityProtocol>) -> Result<ListenerSpec> {
    let (name, address) = entry
        .split_once("://")
        .unwrap_or((ListenerName::PLAINTEXT, entry));
    let name = ListenerName::new(name.trim());
    let protocol = *map.get(&name).with_context(|| {
        format!(
            "{entry}: {name} is no security protocol ({}) and listener.security.protocol.map \
             does not map it",
            protocol_names()
        )
    })?;
    let (host, port) = host_port(address).with_context(|| format!("{entry}"))?;
    Ok(ListenerSpec {
        name,
        protocol,
        host: if host.is_empty() {
            "0.0.0.0".into()
        } else {
            host
        },
        port,
        advertised: None,
    })
}

/// `host:port`, `[v6]:port` or `:port` (empty host).
fn host_port(address: &str) -> Result<(String, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .with_context(|| format!("{address}: expected host:port"))?;
    let port = port
        .parse()
        .with_context(|| format!("{address}: bad port {port}"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), port))
}

fn protocol_named(name: &str) -> Result<SecurityProtocol> {
    SecurityProtocol::parse(name).with_context(|| {
        format!(
            "{name} is no security protocol (one of {})",
            protocol_names()
        )
    })
}

fn protocol_names() -> String {
    SecurityProtocol::ALL
        .map(SecurityProtocol::as_str)
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Resolves `settings` (name, value pairs) with `--listen` if given, and prints the specs or
    /// the error.
    fn check(settings: &[(&str, &str)], listen: Option<&str>, expect: expect_test::Expect) {
        let mut network = NetworkSettings::default();
        for (name, value) in settings {
            assert!(
                network.apply(name, value).unwrap(),
                "{name} is a listener setting"
            );
        }
        let listen = listen.map(|l| l.parse().unwrap());
        let actual = match network.resolve(listen) {
            Ok(specs) => specs
                .iter()
                .map(|s| {
                    let advertised = s
                        .advertised
                        .as_ref()
                        .map_or("bound".to_string(), |(h, p)| format!("{h}:{p}"));
                    format!(
                        "{} {} {}:{} advertised {advertised}",
                        s.name, s.protocol, s.host, s.port
                    )
                })
                .collect::<Vec<_>>()
                .join("\n"),
            Err(error) => format!("error: {error:#}"),
        };
        expect.assert_eq(&actual);
    }

    #[test]
    fn listeners_resolve_as_kafka_names_them() {
        use expect_test::expect;
        check(
            &[],
            None,
            expect!["PLAINTEXT PLAINTEXT 127.0.0.1:9092 advertised bound"],
        );
        check(
            &[],
            Some("127.0.0.1:0"),
            expect!["PLAINTEXT PLAINTEXT 127.0.0.1:0 advertised bound"],
        );
        check(
            &[("listeners", "127.0.0.1:9999")],
            None,
            expect!["PLAINTEXT PLAINTEXT 127.0.0.1:9999 advertised bound"],
        );
        check(
            &[("listeners", "PLAINTEXT://127.0.0.1:0, ssl://:0")],
            None,
            expect![[r#"
                PLAINTEXT PLAINTEXT 127.0.0.1:0 advertised bound
                SSL SSL 0.0.0.0:0 advertised bound"#]],
        );
        check(
            &[
                (
                    "listeners",
                    "INTERNAL://127.0.0.1:9092,EXTERNAL://[::1]:9093",
                ),
                (
                    "listener.security.protocol.map",
                    "INTERNAL:PLAINTEXT,EXTERNAL:SSL",
                ),
                ("advertised.listeners", "EXTERNAL://kafka.example:443"),
            ],
            None,
            expect![[r#"
                INTERNAL PLAINTEXT 127.0.0.1:9092 advertised bound
                EXTERNAL SSL ::1:9093 advertised kafka.example:443"#]],
        );
        // The single-listener shorthand: a bare advertised address is the first listener's.
        check(
            &[("advertised.listeners", "localhost:29092")],
            Some("127.0.0.1:0"),
            expect!["PLAINTEXT PLAINTEXT 127.0.0.1:0 advertised localhost:29092"],
        );
    }

    #[test]
    fn bad_listener_settings_are_refused_with_the_reason() {
        use expect_test::expect;
        check(
            &[("listeners", "PLAINTEXT://127.0.0.1:1")],
            Some("127.0.0.1:0"),
            expect!["error: both --listen 127.0.0.1:0 (FERRY_LISTEN) and listeners=PLAINTEXT://127.0.0.1:1 are set: --listen is the shorthand for listeners=PLAINTEXT://127.0.0.1:0; use one of them"],
        );
        check(
            &[("listeners", "INTERNAL://127.0.0.1:0")],
            None,
            expect!["error: listeners=INTERNAL://127.0.0.1:0: INTERNAL://127.0.0.1:0: INTERNAL is no security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL) and listener.security.protocol.map does not map it"],
        );
        check(
            &[("listeners", "PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:1")],
            None,
            expect!["error: listeners=PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:1: listener PLAINTEXT appears twice"],
        );
        check(
            &[("listeners", "SSL://127.0.0.1")],
            None,
            expect![
                "error: listeners=SSL://127.0.0.1: SSL://127.0.0.1: 127.0.0.1: expected host:port"
            ],
        );
        check(
            &[("advertised.listeners", "SSL://h:1")],
            None,
            expect!["error: advertised.listeners=SSL://h:1: SSL://h:1: no listener named SSL in listeners"],
        );
        check(
            &[("advertised.listeners", "h:1,h:2")],
            None,
            expect!["error: advertised.listeners=h:1,h:2: h:1: expected NAME://host:port beside other entries"],
        );
        check(
            &[("listener.security.protocol.map", "A:TLS")],
            None,
            expect!["error: listener.security.protocol.map=A:TLS: TLS is no security protocol (one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)"],
        );
    }
}
