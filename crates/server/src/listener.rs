//! The listeners a server accepts on, by Kafka's names: each a bound socket, its listener name
//! (what Metadata answers by) and its security protocol (what a connection must go through
//! before its first request: a TLS handshake, SASL authentication, both or neither).

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;

use broker::ListenerName;
use tokio::net::{TcpListener, TcpStream};

/// Kafka's `security.protocol` of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub const ALL: [SecurityProtocol; 4] = [
        SecurityProtocol::Plaintext,
        SecurityProtocol::Ssl,
        SecurityProtocol::SaslPlaintext,
        SecurityProtocol::SaslSsl,
    ];

    /// Kafka's name for it, as `listeners` and `security.protocol` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "PLAINTEXT",
            SecurityProtocol::Ssl => "SSL",
            SecurityProtocol::SaslPlaintext => "SASL_PLAINTEXT",
            SecurityProtocol::SaslSsl => "SASL_SSL",
        }
    }

    /// The protocol of that name, in any case (Kafka upper-cases them).
    pub fn parse(name: &str) -> Option<SecurityProtocol> {
        SecurityProtocol::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether a connection starts with a TLS handshake.
    pub fn uses_tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }

    /// Whether a connection must authenticate with SASL before any other request.
    pub fn uses_sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl std::fmt::Display for SecurityProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One bound listener.
pub struct Listener {
    pub name: ListenerName,
    pub protocol: SecurityProtocol,
    pub socket: TcpListener,
    /// The TLS configuration its connections' handshakes use; present exactly when the
    /// protocol uses TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl Listener {
    pub fn local_addr(&self) -> SocketAddr {
        self.socket
            .local_addr()
            .expect("bound listener has an address")
    }

    pub(crate) fn arrival(&self) -> Arrival {
        Arrival {
            name: self.name.clone(),
            protocol: self.protocol,
            tls: self.tls.clone(),
        }
    }
}

/// Accepts the next connection on any of `listeners`, polling them in turn from `turn` (moved
/// on after each accept); says which listener it came in on. Cancel safe, as each
/// `poll_accept` is.
pub(crate) async fn accept_any(
    listeners: &[Listener],
    turn: &mut usize,
) -> (usize, std::io::Result<(TcpStream, SocketAddr)>) {
    let count = listeners.len();
    let accepted = std::future::poll_fn(|cx| {
        for step in 0..count {
            let index = (*turn + step) % count;
            if let Poll::Ready(accepted) = listeners[index].socket.poll_accept(cx) {
                return Poll::Ready((index, accepted));
            }
        }
        Poll::Pending
    })
    .await;
    *turn = (accepted.0 + 1) % count;
    accepted
}

/// What a connection knows of the listener it came in on.
#[derive(Clone)]
pub(crate) struct Arrival {
    pub(crate) name: ListenerName,
    pub(crate) protocol: SecurityProtocol,
    pub(crate) tls: Option<Arc<rustls::ServerConfig>>,
}

#[cfg(test)]
mod tests {
    use super::SecurityProtocol;

    #[test]
    fn protocols_parse_by_kafka_names_in_any_case() {
        for protocol in SecurityProtocol::ALL {
            assert_eq!(SecurityProtocol::parse(protocol.as_str()), Some(protocol));
        }
        assert_eq!(
            SecurityProtocol::parse("sasl_ssl"),
            Some(SecurityProtocol::SaslSsl)
        );
        assert_eq!(SecurityProtocol::parse("TLS"), None);
    }
}
