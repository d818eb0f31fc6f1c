//! One client connection: a reader that frames, checks and decodes requests and passes each to
//! the broker's one front door (`Broker::handle`) in arrival order, and a writer that sends the
//! responses in the same order, waiting where the broker's `Outcome` says a response waits (the
//! group-commit fsync of a ticket, an answer routed later to the request's token, fetchable data
//! for a long-polling Fetch). Protocol violations
//! that have no Kafka error (bad length, unknown API or version, undecodable body) close this
//! connection with a WARN naming the peer; every other connection is unaffected.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::{ClientInfo, FetchRead, Outcome, PendingFetch, Principal, SharedCall};
use bytes::{Buf, BytesMut};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, ResponseKind};
use observe::{CloseReason, ServerMetrics, Stage};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use wire::frame::{decode_request, encode_response, header_prefix, HeaderPrefix};
use wire::pieces::encode_fetch_pieces;
use wire::versions;

use crate::limits::FRAME_BUFFER_INITIAL_BYTES_MAX;
use crate::listener::{Arrival, SecurityProtocol};
use crate::{fatal, routes, Delivery, Shared};

/// A response slot, queued in request order.
pub(crate) enum Pending {
    Ready {
        reply: Reply,
        response: ResponseKind,
    },
    /// Sent once the group commit has written (`acks=1`) or fsynced (`acks=all`, coordinator
    /// answers) everything up to `ticket`.
    AfterTicket {
        reply: Reply,
        ticket: u64,
        fsynced: bool,
        response: ResponseKind,
    },
    /// A Fetch planned by the broker, its reads to be run here, outside the broker lock;
    /// `visible` is the visible ticket it was planned at.
    Fetch {
        reply: Reply,
        fetch: PendingFetch,
        visible: u64,
    },
    /// A ListOffsets whose timestamp lookups the broker planned, to be run here, outside the
    /// broker lock.
    Offsets {
        reply: Reply,
        offsets: broker::PendingOffsets,
    },
    /// An answer the broker routes to this request later.
    Routed {
        reply: Reply,
        delivery: oneshot::Receiver<Delivery>,
    },
    Close(String),
    /// A SASL token of a SaslHandshake v0 exchange: length-prefixed raw bytes, no Kafka header.
    SaslToken(bytes::Bytes),
}

/// Where a response goes: its API, version and correlation id; and when its request was read
/// whole and when the broker had handled it, for the metrics.
#[derive(Clone, Copy)]
pub(crate) struct Reply {
    pub(crate) api_key: ApiKey,
    pub(crate) version: i16,
    pub(crate) correlation_id: i32,
    pub(crate) received: Instant,
    pub(crate) handled: Instant,
}

/// A queued response slot and the request bytes it holds of the connection's budget, returned
/// once the response is written.
pub(crate) type Queued = (Pending, Option<OwnedSemaphorePermit>);

/// Serves one accepted connection: the listener's TLS handshake first if it has one, then its
/// requests until it ends; counts it open and closed, with why.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    arrival: Arrival,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    tracing::debug!(%peer, listener = %arrival.name, protocol = %arrival.protocol, "connection opened");
    let metrics = shared.metrics.clone();
    if let Some(metrics) = &metrics {
        metrics.connection_opened();
    }
    let mut client = ClientInfo {
        host: peer.ip().to_string(),
        listener: arrival.name.clone(),
        ..ClientInfo::default()
    };
    let end = match &arrival.tls {
        // The plaintext path keeps the socket's own halves: no lock between reader and writer.
        None => {
            let (reader, writer) = stream.into_split();
            serve_requests(&shared, reader, writer, client, arrival.protocol, peer).await
        }
        Some(config) => match crate::tls::handshake(&shared, config, stream, peer).await {
            Ok((stream, principal)) => {
                if let Some(principal) = principal {
                    client.principal = principal;
                }
                let (reader, writer) = tokio::io::split(stream);
                serve_requests(&shared, reader, writer, client, arrival.protocol, peer).await
            }
            Err(end) => end,
        },
    };
    if let Some(metrics) = &metrics {
        metrics.connection_closed(end);
    }
    tracing::debug!(%peer, reason = end.as_str(), "connection closed");
}

/// Reads, handles and answers requests on a connection's two halves until it ends; says why it
/// ended. Every stream (TCP, TLS) goes through this same code. On a SASL listener the client
/// authenticates first (`sasl.rs`): nothing but ApiVersions reaches the broker before, and every
/// request after carries the authenticated principal.
async fn serve_requests<R, W>(
    shared: &Arc<Shared>,
    mut reader: R,
    writer: W,
    mut client: ClientInfo,
    protocol: SecurityProtocol,
    peer: SocketAddr,
) -> CloseReason
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (queue, pending) = mpsc::channel(shared.limits.in_flight_requests_per_connection);
    let writer = tokio::spawn(write_loop(shared.clone(), writer, pending, peer));
    let authenticated = match &shared.sasl {
        Some(sasl) if protocol.uses_sasl() => {
            crate::sasl::authenticate(shared, sasl, &mut reader, &queue, &client, peer)
                .await
                .map(|user| client.principal = Principal::user(user))
        }
        _ => {
            assert!(
                !protocol.uses_sasl(),
                "a SASL listener without SASL settings"
            );
            Ok(())
        }
    };
    let end = match authenticated {
        Ok(()) => read_loop(shared, reader, queue, &client, peer).await,
        Err(end) => {
            // The writer ends once the queue is closed, after writing what was queued.
            drop(queue);
            end
        }
    };
    let _ = writer.await;
    end
}

/// Why a connection stopped reading.
pub(crate) enum ReadEnd {
    /// The client closed it, or the read failed.
    Closed,
    /// Nothing arrived for `connections.max.idle.ms` and no request was outstanding.
    Idle,
    Shutdown,
}

/// Reads from the socket until `buf` holds `want` bytes, growing it as the bytes arrive. Gives
/// up when the client closes, on shutdown, or when nothing arrives for the idle time while the
/// connection has no outstanding request (all of `budget` is free).
pub(crate) async fn fill<R: AsyncRead + Unpin>(
    reader: &mut R,
    shutdown: &mut watch::Receiver<bool>,
    idle: Duration,
    budget: (&Semaphore, usize),
    buf: &mut BytesMut,
    want: usize,
) -> Result<(), ReadEnd> {
    while buf.len() < want {
        if buf.capacity() == buf.len() {
            // Grows geometrically (BytesMut doubles), so a trickled frame costs what it sent.
            buf.reserve((want - buf.len()).min(buf.capacity().max(4096)));
        }
        let mut frame = (&mut *reader).take((want - buf.len()) as u64);
        // `read_buf` is cancel safe: a timeout loses no bytes.
        tokio::select! {
            read = frame.read_buf(buf) => match read {
                Ok(read) if read > 0 => {}
                _ => return Err(ReadEnd::Closed),
            },
            _ = shutdown.changed() => return Err(ReadEnd::Shutdown),
            _ = tokio::time::sleep(idle) => {
                if budget.0.available_permits() == budget.1 {
                    return Err(ReadEnd::Idle);
                }
            }
        }
    }
    Ok(())
}

/// Reads and handles requests until the connection ends; says why it ended.
async fn read_loop<R: AsyncRead + Unpin>(
    shared: &Shared,
    mut reader: R,
    queue: mpsc::Sender<Queued>,
    client: &ClientInfo,
    peer: SocketAddr,
) -> CloseReason {
    let mut shutdown = shared.shutdown.subscribe();
    let idle = Duration::from_millis(shared.limits.connections_max_idle_ms);
    let budget_bytes = shared.limits.connection_budget_bytes();
    let budget = Arc::new(Semaphore::new(budget_bytes));
    loop {
        let mut prefix = BytesMut::with_capacity(4);
        let budget_ref = (budget.as_ref(), budget_bytes);
        match fill(&mut reader, &mut shutdown, idle, budget_ref, &mut prefix, 4).await {
            Ok(()) => {}
            Err(ReadEnd::Idle) => {
                tracing::info!(%peer, idle_ms = idle.as_millis() as u64, "closing idle connection (connections.max.idle.ms)");
                return CloseReason::Idle;
            }
            Err(ReadEnd::Closed) => return CloseReason::Client,
            Err(ReadEnd::Shutdown) => return CloseReason::Shutdown,
        }
        let length = prefix.get_i32();
        if length < 8 || length as usize > shared.limits.request_bytes_max {
            let reason = format!(
                "frame length {length} outside 8..={} (socket.request.max.bytes)",
                shared.limits.request_bytes_max
            );
            let _ = queue.send((Pending::Close(reason), None)).await;
            return CloseReason::Protocol;
        }
        let length = length as usize;
        // The frame's bytes count against the connection's budget until its response is written;
        // while the budget is spent the socket is not read (TCP pushes back).
        let permit = tokio::select! {
            permit = budget.clone().acquire_many_owned(length as u32) => match permit {
                Ok(permit) => permit,
                Err(_) => return CloseReason::Client,
            },
            _ = shutdown.changed() => return CloseReason::Shutdown,
        };
        // Read into spare capacity instead of zero-filling the buffer first; start small for a
        // large frame, so that a slow sender holds only what it sent.
        let mut body = BytesMut::with_capacity(length.min(FRAME_BUFFER_INITIAL_BYTES_MAX));
        match fill(
            &mut reader,
            &mut shutdown,
            idle,
            // Idle means nothing outstanding but this frame, whose bytes are reserved already.
            (budget.as_ref(), budget_bytes - length),
            &mut body,
            length,
        )
        .await
        {
            Ok(()) => {}
            Err(ReadEnd::Closed) => {
                tracing::warn!(%peer, length, "connection closed in the middle of a frame");
                return CloseReason::Client;
            }
            Err(ReadEnd::Idle) => {
                tracing::warn!(%peer, length, "closing connection idle in the middle of a frame (connections.max.idle.ms)");
                return CloseReason::Idle;
            }
            Err(ReadEnd::Shutdown) => return CloseReason::Shutdown,
        }
        let received = Instant::now();
        let pending = match request_pending(shared, body, client, peer, received) {
            Ok(Some(pending)) => pending,
            Ok(None) => continue,
            Err(reason) => Pending::Close(reason),
        };
        // A close the broker asked for (an acks=0 produce error) is the protocol's too.
        let close = matches!(pending, Pending::Close(_));
        if queue.send((pending, Some(permit))).await.is_err() {
            return CloseReason::Client;
        }
        if close {
            return CloseReason::Protocol;
        }
    }
}

/// Checks, decodes and handles one request frame; `Err` is a reason to close the connection.
pub(crate) fn request_pending(
    shared: &Shared,
    body: BytesMut,
    client: &ClientInfo,
    peer: SocketAddr,
    received: Instant,
) -> Result<Option<Pending>, String> {
    let HeaderPrefix {
        api_key,
        api_version,
        correlation_id,
    } = header_prefix(&body).map_err(|e| e.to_string())?;
    let api = ApiKey::try_from(api_key).map_err(|()| format!("unknown API key {api_key}"))?;
    if !versions::is_supported(api, api_version) {
        if api == ApiKey::ApiVersions {
            // KIP-511: answer with v0 and our ranges so the client can pick a version.
            let reply = Reply {
                api_key: api,
                version: 0,
                correlation_id,
                received,
                handled: received,
            };
            let response = ResponseKind::ApiVersions(broker::api_versions_response(Some(
                ResponseError::UnsupportedVersion,
            )));
            return Ok(Some(Pending::Ready { reply, response }));
        }
        return Err(format!("unsupported {api:?} version {api_version}"));
    }
    let request = decode_request(body.freeze()).map_err(|e| e.to_string())?;
    tracing::debug!(
        %peer,
        api = ?api,
        version = api_version,
        correlation_id,
        client_id = request.header.client_id.as_deref().unwrap_or(""),
        "request"
    );
    // The checks that need no broker state (a produce's CRCs) run here, in parallel across
    // connections, before the broker is held.
    let request = broker::Prepared::new(request);
    const CLOSED: &str = "the broker is closed";
    let token = shared.next_token();
    // A group or transaction request may be answered by another connection's call running at
    // the same time: its slot exists before the call.
    let early = request
        .may_be_answered_later()
        .then(|| routes::register(shared, token));
    // Produces, fetches, list-offsets, InitProducerId, group and transaction requests and a
    // Metadata that creates no topic are handled holding the broker shared (at once); the
    // broker hands any other request back, to be handled holding it exclusively.
    let reading = shared.read().ok_or(CLOSED)?;
    let mut locked = Instant::now();
    let call = reading.handle_shared(reading.now, token, client, request);
    let (outcome, visible, registered) = match call.unwrap_or_else(|error| fatal(error)) {
        SharedCall::Handled(outcome) => {
            let visible = reading.visible;
            drop(reading);
            (outcome, Some(visible), early)
        }
        SharedCall::Exclusive(request) => {
            drop(reading);
            let mut broker = shared.lock().ok_or(CLOSED)?;
            locked = Instant::now();
            let now = broker.now;
            let outcome = broker
                .handle(now, token, client, request)
                .unwrap_or_else(|error| fatal(error));
            // Registered while the broker is still held: no answer can be routed before.
            let registered = early.or_else(|| {
                matches!(outcome, Outcome::Later).then(|| routes::register(shared, token))
            });
            (outcome, None, registered)
        }
    };
    let routed = match (&outcome, registered) {
        (Outcome::Later, registered) => registered,
        (_, Some(_)) => {
            routes::cancel(shared, token);
            None
        }
        (_, None) => None,
    };
    let handled = Instant::now();
    if let Some(metrics) = &shared.metrics {
        let name = versions::name(api);
        metrics.request(name, api_version);
        metrics.stage(name, Stage::Queued, locked - received);
        metrics.stage(name, Stage::Handled, handled - locked);
    }
    let reply = Reply {
        api_key: api,
        version: api_version,
        correlation_id,
        received,
        handled,
    };
    Ok(match outcome {
        Outcome::Respond(response) => Some(Pending::Ready { reply, response }),
        Outcome::AfterSync { ticket, response } => Some(Pending::AfterTicket {
            reply,
            ticket,
            fsynced: true,
            response,
        }),
        Outcome::AfterWrite { ticket, response } => Some(Pending::AfterTicket {
            reply,
            ticket,
            fsynced: false,
            response,
        }),
        Outcome::Later => Some(Pending::Routed {
            reply,
            delivery: routed.expect("a slot is registered for an answer routed later"),
        }),
        Outcome::Fetch(fetch) => Some(Pending::Fetch {
            reply,
            fetch,
            visible: visible.expect("a Fetch is handled holding the broker shared"),
        }),
        Outcome::Offsets(offsets) => Some(Pending::Offsets { reply, offsets }),
        Outcome::NoResponse => {
            tracing::debug!(%peer, api = ?api, correlation_id, "no response (acks=0)");
            None
        }
        Outcome::Close(reason) => Some(Pending::Close(reason)),
    })
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    writer: W,
    mut pending: mpsc::Receiver<Queued>,
    peer: SocketAddr,
) {
    let mut writer = BufWriter::with_capacity(64 * 1024, writer);
    let mut synced = shared.synced.subscribe();
    let mut written = shared.written.subscribe();
    // Fetches wake when the group commit has moved the high watermarks.
    let mut visible = shared.visible.subscribe();
    let mut shutdown = shared.shutdown.subscribe();
    // `_permit` returns the request's bytes to the connection's budget at the end of each turn,
    // once its response is written.
    while let Some((item, _permit)) = pending.recv().await {
        // Responses already written must not sit in the buffer while this one waits (a Fetch
        // flushes only if it comes to wait: most are answered at once).
        let may_wait = !matches!(
            item,
            Pending::Ready { .. }
                | Pending::Fetch { .. }
                | Pending::Offsets { .. }
                | Pending::SaslToken(_)
        );
        if may_wait && writer.flush().await.is_err() {
            return;
        }
        // Each response's time in the stages between handling and writing, for the metrics.
        let mut stages = Stages::default();
        let (reply, response) = match item {
            Pending::Ready { reply, response } => (reply, response),
            Pending::AfterTicket {
                reply,
                ticket,
                fsynced,
                response,
            } => {
                let reached = if fsynced { &mut synced } else { &mut written };
                if reached.wait_for(|t| *t >= ticket).await.is_err() {
                    return;
                }
                stages.waited(Stage::GroupCommit, reply.handled.elapsed());
                (reply, response)
            }
            Pending::Fetch {
                reply,
                fetch,
                visible: seen,
            } => {
                let fetched =
                    fetch_response(&shared, &mut writer, &mut visible, fetch, seen, &mut stages);
                match fetched.await {
                    Some(response) => (reply, response),
                    None => return,
                }
            }
            Pending::Offsets { reply, offsets } => {
                let reading = Instant::now();
                let response = offsets.run();
                stages.waited(Stage::Read, reading.elapsed());
                (reply, response)
            }
            Pending::Routed { reply, delivery } => {
                let delivery = tokio::select! {
                    delivery = delivery => match delivery {
                        Ok(delivery) => delivery,
                        Err(_) => return,
                    },
                    // A JoinGroup can wait minutes for its group; do not hold up a shutdown.
                    _ = shutdown.wait_for(|stop| *stop) => return,
                };
                if let Some(ticket) = delivery.sync_ticket {
                    if synced.wait_for(|s| *s >= ticket).await.is_err() {
                        return;
                    }
                }
                stages.waited(Stage::Routed, reply.handled.elapsed());
                (reply, delivery.response)
            }
            Pending::Close(reason) => {
                tracing::warn!(%peer, "closing connection: {reason}");
                let _ = writer.flush().await;
                return;
            }
            Pending::SaslToken(token) => {
                let length = (token.len() as u32).to_be_bytes();
                if writer.write_all(&length).await.is_err()
                    || writer.write_all(&token).await.is_err()
                    || writer.flush().await.is_err()
                {
                    return;
                }
                continue;
            }
        };
        let writing = Instant::now();
        let metrics = shared.metrics.as_deref();
        let errors = (metrics.is_some() || tracing::enabled!(tracing::Level::DEBUG))
            .then(|| wire::errors::error_codes(&response));
        tracing::debug!(
            %peer,
            api = ?reply.api_key,
            version = reply.version,
            correlation_id = reply.correlation_id,
            errors = %ErrorNames(errors.clone().unwrap_or_default()),
            "response"
        );
        // Counted before the response goes out: a client that has its answer finds it counted.
        if let Some(metrics) = metrics {
            let name = versions::name(reply.api_key);
            metrics.errors(name, errors.as_deref().unwrap_or_default());
            if let ResponseKind::Fetch(fetch) = &response {
                count_fetched(metrics, fetch);
            }
        }
        // A Fetch response's record data goes out as the file's own bytes, not copied first.
        let frame = match &response {
            ResponseKind::Fetch(fetch) => {
                encode_fetch_pieces(reply.version, reply.correlation_id, fetch)
            }
            response => {
                encode_response(reply.api_key, reply.version, reply.correlation_id, response)
                    .map(|frame| vec![frame])
            }
        };
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                tracing::error!(%peer, %error, "cannot encode response; closing connection");
                return;
            }
        };
        for piece in &frame {
            // A piece larger than the buffer goes to the socket directly, not through it.
            if writer.write_all(piece).await.is_err() {
                return;
            }
        }
        if pending.is_empty() && writer.flush().await.is_err() {
            return;
        }
        if let Some(metrics) = metrics {
            let name = versions::name(reply.api_key);
            stages.waited(Stage::Write, writing.elapsed());
            stages.record(metrics, name);
            metrics.duration(name, reply.received.elapsed());
        }
    }
    let _ = writer.flush().await;
}

/// Runs a Fetch's reads, outside the broker lock; while they come short of `min_bytes`, waits
/// and has the broker plan it again each time the group commit makes data visible (a visible
/// ticket after `seen`), at the fetch's deadline, and at shutdown (when the fetch stops
/// waiting). Before it waits, the responses already in `writer` are flushed. None if the broker
/// closed meanwhile or the flush failed.
async fn fetch_response<W: AsyncWrite + Unpin>(
    shared: &Shared,
    writer: &mut BufWriter<W>,
    visible: &mut watch::Receiver<u64>,
    mut fetch: PendingFetch,
    mut seen: u64,
    stages: &mut Stages,
) -> Option<ResponseKind> {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let reading = Instant::now();
        let read = fetch.read();
        stages.waited(Stage::Read, reading.elapsed());
        let mut waiting = match read {
            FetchRead::Ready(response) => return Some(ResponseKind::Fetch(response)),
            FetchRead::Short(waiting) => waiting,
        };
        writer.flush().await.ok()?;
        let deadline = shared.clock_origin + waiting.deadline();
        let polling = Instant::now();
        tokio::select! {
            changed = visible.wait_for(|v| *v > seen) => if changed.is_err() { return None },
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.wait_for(|stop| *stop) => waiting.stop_waiting(),
        }
        stages.waited(Stage::LongPoll, polling.elapsed());
        let broker = shared.read()?;
        seen = broker.visible;
        let now = broker.now;
        fetch = match broker.fetch_again(now, waiting) {
            Ok(Outcome::Fetch(fetch)) => fetch,
            Ok(other) => unreachable!("a fetch planned again is a fetch: {other:?}"),
            Err(error) => fatal(error),
        };
    }
}

/// A response's time in the stages after its handling (a Fetch reads and polls in turns),
/// without allocating on the request path.
#[derive(Default)]
struct Stages {
    took: [Option<Duration>; Stage::ALL.len()],
}

impl Stages {
    fn waited(&mut self, stage: Stage, took: Duration) {
        let total = &mut self.took[stage as usize];
        *total = Some(total.unwrap_or_default() + took);
    }

    fn record(&self, metrics: &ServerMetrics, api: &str) {
        for (stage, took) in Stage::ALL.into_iter().zip(self.took) {
            if let Some(took) = took {
                metrics.stage(api, stage, took);
            }
        }
    }
}

/// Counts the record bytes a Fetch response carries, by topic.
fn count_fetched(metrics: &ServerMetrics, fetch: &kafka_protocol::messages::FetchResponse) {
    for topic in &fetch.responses {
        let bytes: usize = topic
            .partitions
            .iter()
            .filter_map(|p| p.records.as_ref().map(|r| r.len()))
            .sum();
        if bytes > 0 {
            metrics.fetched(topic.topic.as_str(), bytes as u64);
        }
    }
}

/// Error codes as a trace shows them: `none`, or each by name with its code.
struct ErrorNames(Vec<i16>);

impl std::fmt::Display for ErrorNames {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none");
        }
        for (i, &code) in self.0.iter().enumerate() {
            let separator = if i == 0 { "" } else { " " };
            match ResponseError::try_from_code(code) {
                Some(error) => write!(f, "{separator}{error:?}({code})")?,
                None => write!(f, "{separator}unknown({code})")?,
            }
        }
        Ok(())
    }
}
