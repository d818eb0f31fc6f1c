//! Named limits on everything that grows with client behaviour, with Kafka's names where Kafka
//! has one.

use std::time::Duration;

/// `socket.request.max.bytes`: the largest request frame accepted.
pub const REQUEST_BYTES_MAX_DEFAULT: usize = 100 * 1024 * 1024;
/// `max.connections`.
pub const CONNECTIONS_MAX_DEFAULT: usize = 4096;
/// Requests read from one connection whose responses are not yet written. Beyond it the
/// connection is not read (TCP pushes back), so one client cannot queue unbounded work.
pub const IN_FLIGHT_REQUESTS_PER_CONNECTION_DEFAULT: usize = 32;
/// `connections.max.idle.ms`: a connection that sends nothing for this long while none of its
/// requests is outstanding is closed (Kafka's default), so half-open peers do not hold a slot.
pub const CONNECTIONS_MAX_IDLE_MS_DEFAULT: u64 = 600_000;
/// `connection.queued.max.request.bytes` (ferry's own; Kafka's `queued.max.request.bytes` is
/// broker-wide): request bytes one connection may have read and not yet answered. A frame's
/// bytes are reserved before they are read, so one connection's request memory stays within it
/// whatever its in-flight count; never below `socket.request.max.bytes`.
pub const CONNECTION_QUEUED_REQUEST_BYTES_MAX_DEFAULT: usize = 128 * 1024 * 1024;
/// A request frame's buffer starts at most this large and grows as its bytes arrive, so a client
/// that announces a large frame and trickles it (slow loris) holds little more than it sent, while
/// a common request is read without a copy.
pub const FRAME_BUFFER_INITIAL_BYTES_MAX: usize = 1024 * 1024;
/// `ssl.handshake.timeout.ms` (ferry's own): a connection on a TLS listener that has not
/// finished its handshake this long after it was accepted is closed, so a peer that connects and
/// sends nothing (or no ClientHello) holds a connection slot for no longer than this.
pub const TLS_HANDSHAKE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// How long a graceful shutdown waits for connections to finish.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Limits {
    pub request_bytes_max: usize,
    pub connections_max: usize,
    pub in_flight_requests_per_connection: usize,
    pub connections_max_idle_ms: u64,
    pub connection_queued_request_bytes_max: usize,
    pub shutdown_grace: Duration,
    pub tls_handshake_timeout: Duration,
}

impl Limits {
    /// The per-connection byte budget actually applied: room for at least one largest request.
    pub fn connection_budget_bytes(&self) -> usize {
        self.connection_queued_request_bytes_max
            .max(self.request_bytes_max)
            .min(u32::MAX as usize)
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            in_flight_requests_per_connection: IN_FLIGHT_REQUESTS_PER_CONNECTION_DEFAULT,
            connections_max_idle_ms: CONNECTIONS_MAX_IDLE_MS_DEFAULT,
            connection_queued_request_bytes_max: CONNECTION_QUEUED_REQUEST_BYTES_MAX_DEFAULT,
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
            tls_handshake_timeout: TLS_HANDSHAKE_TIMEOUT_DEFAULT,
        }
    }
}
