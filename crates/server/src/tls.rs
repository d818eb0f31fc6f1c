//! TLS for SSL (and SASL_SSL) listeners, on rustls with the ring provider: the server
//! configuration built from Kafka's `ssl.*` settings (PEM files only), and a connection's
//! handshake under a named timeout: a peer that sends nothing, or something that is no
//! ClientHello, costs one connection slot for at most `ssl.handshake.timeout.ms` and closes only
//! its own connection.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use broker::Principal;
use observe::CloseReason;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use thiserror::Error;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

use crate::Shared;

/// Kafka's `ssl.client.auth`: whether a client must, may or must not present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    #[default]
    None,
    Requested,
    Required,
}

impl ClientAuth {
    pub fn parse(value: &str) -> Option<ClientAuth> {
        match value.to_ascii_lowercase().as_str() {
            "none" => Some(ClientAuth::None),
            "requested" => Some(ClientAuth::Requested),
            "required" => Some(ClientAuth::Required),
            _ => None,
        }
    }
}

/// The `ssl.*` settings a TLS listener needs.
#[derive(Debug, Clone, Default)]
pub struct TlsSettings {
    /// `ssl.keystore.location`: one PEM file with the private key and the certificate chain
    /// (the broker's certificate first).
    pub keystore: Option<PathBuf>,
    /// `ssl.key.password`: only to refuse an encrypted key with the reason.
    pub key_password: Option<String>,
    /// `ssl.truststore.location`: PEM CA certificates that client certificates are checked
    /// against.
    pub truststore: Option<PathBuf>,
    /// `ssl.client.auth`.
    pub client_auth: ClientAuth,
}

/// Why a TLS listener cannot start; each names the setting and file at fault.
#[derive(Debug, Error)]
pub enum TlsError {
    #[error("a TLS listener needs ssl.keystore.location (a PEM file with the private key and the certificate chain)")]
    NoKeystore,
    #[error("ssl.client.auth={0:?} needs ssl.truststore.location (PEM CA certificates for client certificates)")]
    NoTruststore(ClientAuth),
    #[error("read {setting} {}: {error}", path.display())]
    Read {
        setting: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("ssl.keystore.location {}: {what}", path.display())]
    Keystore { path: PathBuf, what: String },
    #[error("ssl.truststore.location {}: {what}", path.display())]
    Truststore { path: PathBuf, what: String },
}

/// The server configuration of every TLS listener, from the `ssl.*` settings.
pub fn server_config(settings: &TlsSettings) -> Result<Arc<ServerConfig>, TlsError> {
    let keystore = settings.keystore.as_deref().ok_or(TlsError::NoKeystore)?;
    let (chain, key) = read_keystore(keystore, settings.key_password.is_some())?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| keystore_error(keystore, e))?;
    let builder = match settings.client_auth {
        ClientAuth::None => builder.with_no_client_auth(),
        auth => {
            let path = settings
                .truststore
                .as_deref()
                .ok_or(TlsError::NoTruststore(auth))?;
            let roots = read_truststore(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match auth {
                ClientAuth::Requested => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            let verifier = verifier.build().map_err(|e| TlsError::Truststore {
                path: path.to_path_buf(),
                what: e.to_string(),
            })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // Checks that the key is the certificate's (a mismatch is refused here, at start-up).
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| keystore_error(keystore, e))?;
    Ok(Arc::new(config))
}

fn keystore_error(path: &Path, error: impl std::fmt::Display) -> TlsError {
    TlsError::Keystore {
        path: path.to_path_buf(),
        what: error.to_string(),
    }
}

fn read(setting: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        setting,
        path: path.to_path_buf(),
        error,
    })
}

/// The certificate chain and the private key of the keystore PEM file.
fn read_keystore(
    path: &Path,
    password_given: bool,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let pem = read("ssl.keystore.location", path)?;
    let text = String::from_utf8_lossy(&pem);
    if text.contains("ENCRYPTED PRIVATE KEY") || text.contains("Proc-Type: 4,ENCRYPTED") {
        let password = if password_given {
            "ssl.key.password is set, but "
        } else {
            ""
        };
        return Err(keystore_error(
            path,
            format!(
                "{password}the private key is encrypted, which ferry does not support: store it                  unencrypted (openssl pkey -in KEY -out PLAIN) and protect the file's permissions"
            ),
        ));
    }
    let chain = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| keystore_error(path, format!("bad PEM: {e}")))?;
    if chain.is_empty() {
        return Err(keystore_error(path, "no CERTIFICATE in the file"));
    }
    let key = PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|e| keystore_error(path, format!("no private key in the file ({e})")))?;
    Ok((chain, key))
}

fn read_truststore(path: &Path) -> Result<RootCertStore, TlsError> {
    let pem = read("ssl.truststore.location", path)?;
    let error = |what: String| TlsError::Truststore {
        path: path.to_path_buf(),
        what,
    };
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pem) {
        let certificate = certificate.map_err(|e| error(format!("bad PEM: {e}")))?;
        roots
            .add(certificate)
            .map_err(|e| error(format!("unusable CA certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(error("no CERTIFICATE in the file".into()));
    }
    Ok(roots)
}

/// Runs the server side of the handshake; on success the stream and, if the client presented a
/// certificate, the principal it names. A failure is traced (WARN, naming the peer) and says
/// why the connection ends.
pub(crate) async fn handshake(
    shared: &Shared,
    config: &Arc<rustls::ServerConfig>,
    stream: TcpStream,
    peer: SocketAddr,
) -> Result<(TlsStream<TcpStream>, Option<Principal>), CloseReason> {
    let timeout = shared.limits.tls_handshake_timeout;
    let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
    let mut shutdown = shared.shutdown.subscribe();
    let stream = tokio::select! {
        done = tokio::time::timeout(timeout, acceptor.accept(stream)) => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::warn!(%peer, %error, "TLS handshake failed; closing connection");
                return Err(CloseReason::Handshake);
            }
            Err(_) => {
                tracing::warn!(%peer, timeout_ms = timeout.as_millis() as u64, "no TLS handshake within ssl.handshake.timeout.ms; closing connection");
                return Err(CloseReason::Handshake);
            }
        },
        _ = shutdown.wait_for(|stop| *stop) => return Err(CloseReason::Shutdown),
    };
    let principal = stream
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| crate::principal::from_certificate(leaf.as_ref()));
    let principal = match principal {
        None => None,
        Some(Ok(principal)) => Some(principal),
        // rustls verified the chain, so this is a certificate webpki reads and we do not.
        Some(Err(error)) => {
            tracing::warn!(%peer, %error, "client certificate subject unreadable; closing connection");
            return Err(CloseReason::Handshake);
        }
    };
    tracing::debug!(
        %peer,
        principal = %principal.clone().unwrap_or_default(),
        "authenticated by TLS"
    );
    Ok((stream, principal))
}
