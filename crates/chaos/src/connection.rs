//! One proxied connection: a client socket, its upstream socket, and a pump each way that reads
//! whole frames, asks the plan what to do with each, and does it.
//!
//! Both pumps run inside one task, joined by a `select!`: when either ends (end of stream, an
//! injected cut, a black hole, an operator cut), the other is dropped with it and both sockets
//! close. Kafka clients never half-close a connection, so losing the other direction's tail at
//! that point loses nothing a real broker would have sent.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{sleep, timeout};

use crate::frame::{self, FrameError, RequestHeader, LENGTH_PREFIX_BYTES};
use crate::in_flight::{InFlight, ResponseMatch};
use crate::plan::{Decision, Direction, Fault};
use crate::proxy::Shared;

/// The read buffer per socket; frames larger than this are read straight through it.
const READ_BUFFER_BYTES: usize = 64 * 1024;

/// Why a connection ended.
#[derive(Debug)]
enum End {
    /// The peer on this side closed its connection.
    Closed { direction: Direction },
    /// A rule or the operator cut the connection.
    Cut,
    /// A rule black-holed the connection: silence for a while, then a cut.
    BlackHole { duration_ms: u64 },
    /// A frame broke the limits; the connection cannot be followed any further.
    BadFrame {
        direction: Direction,
        error: FrameError,
    },
    /// Reading or writing a socket failed.
    Failed {
        direction: Direction,
        error: io::Error,
    },
}

enum ReadError {
    Io(io::Error),
    Frame(FrameError),
}

impl ReadError {
    fn into_end(self, direction: Direction) -> End {
        match self {
            ReadError::Io(error) => End::Failed { direction, error },
            ReadError::Frame(error) => End::BadFrame { direction, error },
        }
    }
}

/// Reads one whole frame, length prefix included; `None` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    from: &mut R,
    frame_bytes_max: usize,
) -> Result<Option<Bytes>, ReadError> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    let n = from.read(&mut prefix).await.map_err(ReadError::Io)?;
    if n == 0 {
        return Ok(None);
    }
    from.read_exact(&mut prefix[n..])
        .await
        .map_err(ReadError::Io)?;
    let body_bytes = frame::body_len(prefix, frame_bytes_max).map_err(ReadError::Frame)?;
    let mut frame = BytesMut::zeroed(LENGTH_PREFIX_BYTES + body_bytes);
    frame[..LENGTH_PREFIX_BYTES].copy_from_slice(&prefix);
    from.read_exact(&mut frame[LENGTH_PREFIX_BYTES..])
        .await
        .map_err(ReadError::Io)?;
    Ok(Some(frame.freeze()))
}

/// Serves one accepted client until either side ends, a fault cuts it, or the proxy stops.
pub(crate) async fn serve(
    shared: Arc<Shared>,
    connection: u64,
    client: TcpStream,
    peer: SocketAddr,
    cuts: watch::Receiver<u64>,
) {
    let connect_timeout = Duration::from_millis(shared.limits.upstream_connect_timeout_ms);
    let upstream = match timeout(connect_timeout, TcpStream::connect(shared.upstream)).await {
        Ok(Ok(upstream)) => upstream,
        Ok(Err(error)) => {
            tracing::warn!(connection, %peer, upstream = %shared.upstream, %error, "connect upstream");
            return;
        }
        Err(_) => {
            tracing::warn!(connection, %peer, upstream = %shared.upstream, "connect upstream: timed out");
            return;
        }
    };
    // Kafka traffic is request/response; Nagle's algorithm would only add latency the plan did
    // not ask for. Failing to set it changes timing, not correctness.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tracing::debug!(connection, %peer, "client connected");
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let mut sockets = Sockets {
        client_read: BufReader::with_capacity(READ_BUFFER_BYTES, client_read),
        client_write,
        upstream_read: BufReader::with_capacity(READ_BUFFER_BYTES, upstream_read),
        upstream_write,
    };
    let conn = Connection {
        in_flight: Mutex::new(InFlight::new(shared.limits.in_flight_requests_max)),
        shared,
        connection,
    };
    let mut cuts = cuts;
    let end = conn.forward(&mut sockets, &mut cuts).await;
    if let End::BlackHole { duration_ms } = end {
        conn.black_hole(&mut sockets, &mut cuts, duration_ms).await;
    }
    match &end {
        End::Closed { direction } => tracing::debug!(connection, ?direction, "peer closed"),
        End::Cut | End::BlackHole { .. } => tracing::debug!(connection, "connection cut"),
        End::BadFrame { direction, error } => {
            tracing::warn!(connection, %peer, ?direction, %error, "cut connection: bad frame")
        }
        End::Failed { direction, error } => {
            tracing::debug!(connection, ?direction, %error, "connection failed")
        }
    }
    // Dropping `sockets` closes both connections.
}

struct Sockets {
    client_read: BufReader<OwnedReadHalf>,
    client_write: OwnedWriteHalf,
    upstream_read: BufReader<OwnedReadHalf>,
    upstream_write: OwnedWriteHalf,
}

struct Connection {
    shared: Arc<Shared>,
    connection: u64,
    in_flight: Mutex<InFlight>,
}

impl Connection {
    /// Runs both pumps until one ends or the operator cuts; records pause and resume events.
    async fn forward(&self, sockets: &mut Sockets, cuts: &mut watch::Receiver<u64>) -> End {
        let mut paused = self.shared.paused.subscribe();
        let requests = self.pump_requests(&mut sockets.client_read, &mut sockets.upstream_write);
        let responses = self.pump_responses(&mut sockets.upstream_read, &mut sockets.client_write);
        tokio::pin!(requests, responses);
        loop {
            tokio::select! {
                end = &mut requests => return end,
                end = &mut responses => return end,
                _ = cuts.changed() => {
                    self.record_operator(Fault::CutConnection);
                    return End::Cut;
                }
                changed = paused.changed() => {
                    if changed.is_err() {
                        return End::Cut;
                    }
                    let fault = if *paused.borrow_and_update() { Fault::Pause } else { Fault::Resume };
                    self.record_operator(fault);
                }
            }
        }
    }

    /// Client to broker: decide per request, track what was sent so responses can be matched.
    async fn pump_requests(
        &self,
        from: &mut BufReader<OwnedReadHalf>,
        to: &mut OwnedWriteHalf,
    ) -> End {
        let direction = Direction::Request;
        let mut paused = self.shared.paused.subscribe();
        for frame_index in 0.. {
            let frame = match read_frame(from, self.shared.limits.frame_bytes_max).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return End::Closed { direction },
                Err(error) => return error.into_end(direction),
            };
            let header = RequestHeader::parse(&frame[LENGTH_PREFIX_BYTES..]);
            let api_key = header.map(|h| h.api_key);
            let correlation_id = header.map(|h| h.correlation_id);
            // The sender lives as long as `shared`, so waiting cannot fail.
            let _ = paused.wait_for(|paused| !*paused).await;
            let mut copies = 1;
            if let Some(fault) = self.decide(direction, api_key, correlation_id, frame_index) {
                match fault {
                    Fault::DropFrame => continue,
                    Fault::Delay { delay_ms } => sleep(Duration::from_millis(delay_ms)).await,
                    Fault::Duplicate => copies = 2,
                    Fault::CutConnection => return End::Cut,
                    Fault::BlackHole { duration_ms } => return End::BlackHole { duration_ms },
                    Fault::Pause | Fault::Resume => unreachable!("plans never decide {fault:?}"),
                }
            }
            if let Some(h) = header {
                // Recorded before writing, so the answer cannot arrive before its request is known.
                let evicted = self.in_flight().sent(h.correlation_id, h.api_key, copies);
                if evicted {
                    tracing::debug!(
                        connection = self.connection,
                        "forgot the oldest unanswered request"
                    );
                }
            }
            for _ in 0..copies {
                if let Err(error) = to.write_all(&frame).await {
                    return End::Failed { direction, error };
                }
            }
        }
        unreachable!("a connection does not forward 2^64 frames")
    }

    /// Broker to client: match each response to its request, swallow answers to duplicates,
    /// decide on the rest.
    async fn pump_responses(
        &self,
        from: &mut BufReader<OwnedReadHalf>,
        to: &mut OwnedWriteHalf,
    ) -> End {
        let direction = Direction::Response;
        let mut paused = self.shared.paused.subscribe();
        for frame_index in 0.. {
            let frame = match read_frame(from, self.shared.limits.frame_bytes_max).await {
                Ok(Some(frame)) => frame,
                Ok(None) => return End::Closed { direction },
                Err(error) => return error.into_end(direction),
            };
            let correlation_id = frame::response_correlation_id(&frame[LENGTH_PREFIX_BYTES..]);
            let matched = match correlation_id {
                Some(c) => self.in_flight().received(c),
                None => ResponseMatch::Unknown,
            };
            let api_key = match matched {
                ResponseMatch::Client { api_key } => Some(api_key),
                ResponseMatch::Swallow { api_key } => {
                    tracing::trace!(
                        connection = self.connection,
                        api_key,
                        ?correlation_id,
                        "swallow answer to duplicate"
                    );
                    continue;
                }
                ResponseMatch::Unknown => None,
            };
            let _ = paused.wait_for(|paused| !*paused).await;
            if let Some(fault) = self.decide(direction, api_key, correlation_id, frame_index) {
                match fault {
                    Fault::DropFrame => continue,
                    Fault::Delay { delay_ms } => sleep(Duration::from_millis(delay_ms)).await,
                    Fault::CutConnection => return End::Cut,
                    Fault::BlackHole { duration_ms } => return End::BlackHole { duration_ms },
                    Fault::Duplicate | Fault::Pause | Fault::Resume => {
                        unreachable!("plans never decide {fault:?} for a response")
                    }
                }
            }
            if let Err(error) = to.write_all(&frame).await {
                return End::Failed { direction, error };
            }
        }
        unreachable!("a connection does not forward 2^64 frames")
    }

    /// Reads and discards everything both peers send for `duration_ms`, then returns so the
    /// caller closes both sides. Reading keeps the peers' writes flowing into the void, as they
    /// would into a partitioned network, instead of blocking on full socket buffers.
    async fn black_hole(
        &self,
        sockets: &mut Sockets,
        cuts: &mut watch::Receiver<u64>,
        duration_ms: u64,
    ) {
        tokio::select! {
            _ = sleep(Duration::from_millis(duration_ms)) => {}
            _ = discard(&mut sockets.client_read) => {}
            _ = discard(&mut sockets.upstream_read) => {}
            _ = cuts.changed() => {}
        }
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, InFlight> {
        self.in_flight.lock().expect("in-flight lock poisoned")
    }

    /// Asks the plan in force about one frame and records the fault it injects, if any.
    fn decide(
        &self,
        direction: Direction,
        api_key: Option<i16>,
        correlation_id: Option<i32>,
        frame_index: u64,
    ) -> Option<Fault> {
        let plan = self.shared.plan();
        let decision = plan.decide(self.connection, direction, api_key, frame_index);
        let Decision::Inject { rule, fault } = decision else {
            return None;
        };
        if fault == Fault::Duplicate && correlation_id.is_none() {
            // Without a correlation id the second answer could not be recognised and
            // swallowed, and the client would see a stray response; forward it once.
            return None;
        }
        self.shared.record(
            self.connection,
            direction,
            api_key,
            correlation_id,
            fault,
            Some(rule),
        );
        Some(fault)
    }

    fn record_operator(&self, fault: Fault) {
        self.shared
            .record(self.connection, Direction::Both, None, None, fault, None);
    }
}

/// Reads until end of stream or error, keeping nothing.
async fn discard<R: AsyncRead + Unpin>(from: &mut R) {
    let mut sink = [0u8; 8192];
    while let Ok(n) = from.read(&mut sink).await {
        if n == 0 {
            return;
        }
    }
}
