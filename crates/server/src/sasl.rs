//! The SASL phase of a connection on a SASL listener (`SASL_PLAINTEXT`, `SASL_SSL`), before any
//! request reaches the broker: ApiVersions, then SaslHandshake v1 naming a mechanism, then
//! SaslAuthenticate requests carrying the mechanism's messages (KIP-152) until the exchange
//! (`sasl::Authenticator`) ends. Anything else before it ends closes the connection with a WARN
//! naming the peer, as Kafka does (ILLEGAL_SASL_STATE). A failed authentication is answered with
//! SASL_AUTHENTICATION_FAILED after a short delay, counted, logged with the peer and the user, and
//! the connection closed. After SaslHandshake v0 (the legacy form, before KIP-152) the
//! mechanism's messages come as raw length-prefixed tokens without Kafka headers, answered the
//! same way; a failure there has no way to say so and just closes the connection, as in Kafka.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use broker::ClientInfo;
use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{
    ApiKey, RequestKind, ResponseKind, SaslAuthenticateResponse, SaslHandshakeResponse,
};
use kafka_protocol::protocol::StrBytes;
use observe::CloseReason;
use rand::distributions::{Alphanumeric, DistString};
use rand::RngCore;
use sasl::{Authenticator, Mechanism, SaslError, ScramMechanism, Step};
use tokio::io::AsyncRead;
use tokio::sync::{mpsc, watch, Semaphore};
use wire::frame::{decode_request, header_prefix};
use wire::versions;

use crate::connection::{fill, request_pending, Pending, Queued, ReadEnd, Reply};
use crate::Shared;

/// Kafka's `sasl.server.max.receive.size`: the largest frame read before authentication, so an
/// unauthenticated peer cannot make the broker reserve or read a large request.
pub const SASL_RECEIVE_BYTES_MAX: usize = 512 * 1024;

/// Kafka's `connection.failed.authentication.delay.ms`: a failed authentication's answer (and the
/// close after it) waits this long, which slows a password guesser on one connection.
pub const FAILED_AUTHENTICATION_DELAY: Duration = Duration::from_millis(100);

/// Random bytes of a SCRAM server nonce (as alphanumeric characters).
const SERVER_NONCE_CHARS: usize = 32;

/// The SASL settings of the server: which mechanisms a SASL listener offers.
#[derive(Debug, Clone)]
pub struct SaslConfig {
    /// `sasl.enabled.mechanisms`, in the order offered.
    pub mechanisms: Vec<Mechanism>,
}

/// The process's SASL state: the settings and the secret that derives unknown users' fake
/// salts (random per process, the same for every exchange, so a fake salt does not change
/// between attempts and give the user's absence away).
pub(crate) struct SaslState {
    pub(crate) config: SaslConfig,
    unknown_user_secret: [u8; 32],
}

impl SaslState {
    pub(crate) fn new(config: SaslConfig) -> SaslState {
        let mut unknown_user_secret = [0; 32];
        rand::rngs::OsRng.fill_bytes(&mut unknown_user_secret);
        SaslState {
            config,
            unknown_user_secret,
        }
    }
}

/// Where the phase is.
enum Phase {
    /// Before SaslHandshake: ApiVersions or SaslHandshake.
    Handshake,
    /// After SaslHandshake v1: SaslAuthenticate requests only.
    Authenticate(Authenticator),
    /// After SaslHandshake v0: raw tokens only.
    Raw(Authenticator),
}

/// Runs the SASL phase; the authenticated user, or why the connection ends.
pub(crate) async fn authenticate<R: AsyncRead + Unpin>(
    shared: &Shared,
    sasl: &SaslState,
    reader: &mut R,
    queue: &mpsc::Sender<Queued>,
    client: &ClientInfo,
    peer: SocketAddr,
) -> Result<String, CloseReason> {
    let mut shutdown = shared.shutdown.subscribe();
    let idle = Duration::from_millis(shared.limits.connections_max_idle_ms);
    let mut phase = Phase::Handshake;
    loop {
        let frame = read_frame(reader, &mut shutdown, idle, peer).await?;
        if let Phase::Raw(authenticator) = &mut phase {
            let token = |message: Vec<u8>| Pending::SaslToken(message.into());
            match exchange(shared, authenticator, &frame, peer).await {
                Ok(Step::Continue(message)) => send(queue, token(message)).await?,
                Ok(Step::Done { user, response }) => {
                    send(queue, token(response)).await?;
                    return Ok(user);
                }
                Err(_) => return Err(CloseReason::Authentication),
            }
            continue;
        }
        let received = Instant::now();
        let refuse = |reason: String| {
            tracing::warn!(%peer, "closing connection before SASL authentication: {reason}");
            Err(CloseReason::Authentication)
        };
        let Ok(prefix) = header_prefix(&frame) else {
            return refuse("a frame too short for a request header".into());
        };
        let api = ApiKey::try_from(prefix.api_key).ok();
        let reply = Reply {
            api_key: api.unwrap_or(ApiKey::ApiVersions),
            version: prefix.api_version,
            correlation_id: prefix.correlation_id,
            received,
            handled: received,
        };
        match (api, &mut phase) {
            (Some(ApiKey::ApiVersions), Phase::Handshake) => {
                match request_pending(shared, frame, client, peer, received) {
                    Ok(Some(pending)) => send(queue, pending).await?,
                    Ok(None) => {}
                    Err(reason) => return refuse(reason),
                }
            }
            (Some(ApiKey::SaslHandshake), Phase::Handshake) => {
                let RequestKind::SaslHandshake(request) = decode(api, frame.freeze(), peer)? else {
                    unreachable!("decoded as its API key")
                };
                let offered = &sasl.config.mechanisms;
                let chosen =
                    Mechanism::parse(request.mechanism.as_str()).filter(|m| offered.contains(m));
                let mechanisms = offered.iter().map(|m| StrBytes::from_static_str(m.name()));
                let mut response =
                    SaslHandshakeResponse::default().with_mechanisms(mechanisms.collect());
                if chosen.is_none() {
                    response.error_code = ResponseError::UnsupportedSaslMechanism.code();
                }
                send(queue, ready(reply, ResponseKind::SaslHandshake(response))).await?;
                let Some(mechanism) = chosen else {
                    return refuse(format!(
                        "SASL mechanism {:?} not enabled (sasl.enabled.mechanisms)",
                        request.mechanism.as_str()
                    ));
                };
                let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), SERVER_NONCE_CHARS);
                let authenticator = Authenticator::new(mechanism, nonce, &sasl.unknown_user_secret);
                phase = if prefix.api_version == 0 {
                    Phase::Raw(authenticator)
                } else {
                    Phase::Authenticate(authenticator)
                };
            }
            (Some(ApiKey::SaslAuthenticate), Phase::Authenticate(authenticator)) => {
                let RequestKind::SaslAuthenticate(request) = decode(api, frame.freeze(), peer)?
                else {
                    unreachable!("decoded as its API key")
                };
                let mechanism = authenticator.mechanism();
                match exchange(shared, authenticator, &request.auth_bytes, peer).await {
                    Ok(Step::Continue(message)) => {
                        send(queue, ready(reply, authenticated(message))).await?;
                    }
                    Ok(Step::Done { user, response }) => {
                        send(queue, ready(reply, authenticated(response))).await?;
                        return Ok(user);
                    }
                    Err(error) => {
                        let failed = failed(&error, mechanism);
                        send(queue, ready(reply, failed)).await?;
                        return Err(CloseReason::Authentication);
                    }
                }
            }
            (api, _) => {
                let name = api.map_or("an unknown API", versions::name);
                return refuse(format!(
                    "{name} request (key {}) while the SASL exchange is not done",
                    prefix.api_key
                ));
            }
        }
    }
}

/// One client message through the exchange: the outcome counted and traced (a failure at
/// WARN with the peer and the user), and a failure delayed by [`FAILED_AUTHENTICATION_DELAY`].
async fn exchange(
    shared: &Shared,
    authenticator: &mut Authenticator,
    message: &[u8],
    peer: SocketAddr,
) -> Result<Step, SaslError> {
    let lookup =
        |user: &str, mechanism: ScramMechanism| shared.read()?.scram_credential(user, mechanism);
    let step = authenticator.step(message, &lookup);
    let mechanism = authenticator.mechanism();
    match &step {
        Ok(Step::Continue(_)) => {}
        Ok(Step::Done { user, .. }) => {
            count(shared, mechanism, true);
            tracing::debug!(%peer, %mechanism, user, "SASL authentication succeeded");
        }
        Err(error) => {
            count(shared, mechanism, false);
            let user = authenticator.user().unwrap_or("");
            tracing::warn!(%peer, %mechanism, user, %error, "SASL authentication failed; closing connection");
            tokio::time::sleep(FAILED_AUTHENTICATION_DELAY).await;
        }
    }
    step
}

/// Reads one frame of at most [`SASL_RECEIVE_BYTES_MAX`] bytes: a longer length closes at once,
/// before anything is reserved for it.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    shutdown: &mut watch::Receiver<bool>,
    idle: Duration,
    peer: SocketAddr,
) -> Result<BytesMut, CloseReason> {
    // Nothing is outstanding before authentication: idle means idle.
    let nothing_outstanding = Semaphore::new(1);
    let budget = (&nothing_outstanding, 1);
    let mut prefix = BytesMut::with_capacity(4);
    fill(reader, shutdown, idle, budget, &mut prefix, 4)
        .await
        .map_err(ended)?;
    let length = prefix.get_i32();
    if length < 0 || length as usize > SASL_RECEIVE_BYTES_MAX {
        tracing::warn!(%peer, length, limit = SASL_RECEIVE_BYTES_MAX, "closing connection: frame length before SASL authentication outside 0..=limit (sasl.server.max.receive.size)");
        return Err(CloseReason::Authentication);
    }
    let mut body = BytesMut::with_capacity(length as usize);
    fill(reader, shutdown, idle, budget, &mut body, length as usize)
        .await
        .map_err(ended)?;
    Ok(body)
}

fn ended(end: ReadEnd) -> CloseReason {
    match end {
        ReadEnd::Closed => CloseReason::Client,
        ReadEnd::Idle => CloseReason::Idle,
        ReadEnd::Shutdown => CloseReason::Shutdown,
    }
}

fn decode(api: Option<ApiKey>, frame: Bytes, peer: SocketAddr) -> Result<RequestKind, CloseReason> {
    match decode_request(frame) {
        Ok(request) => Ok(request.body),
        Err(error) => {
            tracing::warn!(%peer, api = ?api, %error, "closing connection: undecodable SASL request");
            Err(CloseReason::Authentication)
        }
    }
}

fn ready(reply: Reply, response: ResponseKind) -> Pending {
    Pending::Ready { reply, response }
}

async fn send(queue: &mpsc::Sender<Queued>, pending: Pending) -> Result<(), CloseReason> {
    queue
        .send((pending, None))
        .await
        .map_err(|_| CloseReason::Client)
}

fn authenticated(message: Vec<u8>) -> ResponseKind {
    ResponseKind::SaslAuthenticate(
        SaslAuthenticateResponse::default().with_auth_bytes(Bytes::from(message)),
    )
}

fn failed(error: &SaslError, mechanism: Mechanism) -> ResponseKind {
    ResponseKind::SaslAuthenticate(
        SaslAuthenticateResponse::default()
            .with_error_code(ResponseError::SaslAuthenticationFailed.code())
            .with_error_message(Some(StrBytes::from_string(error.client_message(mechanism)))),
    )
}

fn count(shared: &Shared, mechanism: Mechanism, success: bool) {
    if let Some(metrics) = &shared.metrics {
        metrics.sasl_authentication(mechanism.name(), success);
    }
}
