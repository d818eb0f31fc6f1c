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
/// Longest Fetch long-poll honoured, whatever `max_wait_ms` the client asks for.
pub const FETCH_WAIT_MAX: Duration = Duration::from_secs(30);
/// How long a graceful shutdown waits for connections to finish.
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Limits {
    pub request_bytes_max: usize,
    pub connections_max: usize,
    pub in_flight_requests_per_connection: usize,
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            request_bytes_max: REQUEST_BYTES_MAX_DEFAULT,
            connections_max: CONNECTIONS_MAX_DEFAULT,
            in_flight_requests_per_connection: IN_FLIGHT_REQUESTS_PER_CONNECTION_DEFAULT,
            shutdown_grace: SHUTDOWN_GRACE_DEFAULT,
        }
    }
}
