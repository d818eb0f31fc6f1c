//! What the network shell measures as requests pass: live counters and histograms, updated on
//! the request path (each update is an atomic add after a label lookup).

use std::time::Duration;

use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec,
    IntGauge, Opts, Registry,
};

/// A step of a request's life in the broker, for `ferry_request_stage_seconds`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// From the whole frame read to the broker held (shared or exclusively): decoding, the checks that need no
    /// broker state (a produce's CRCs), and other calls ahead.
    Queued,
    /// The broker's handling once held: checks, producer state, the append to memory.
    Handled,
    /// Waiting for the group commit: written (`acks=1`) or fsynced (`acks=all`, and every
    /// coordinator answer whose records must be durable first).
    GroupCommit,
    /// Waiting for an answer routed later (JoinGroup for its group, EndTxn for its markers).
    Routed,
    /// A Fetch's long poll: waiting for data or the fetch's deadline.
    LongPoll,
    /// A Fetch's reads of the log, or a ListOffsets' timestamp lookups (outside every lock).
    Read,
    /// Encoding the response and writing it to the socket.
    Write,
}

impl Stage {
    /// Every stage, in the order of the enum (`stage as usize` indexes it).
    pub const ALL: [Stage; 7] = [
        Stage::Queued,
        Stage::Handled,
        Stage::GroupCommit,
        Stage::Routed,
        Stage::LongPoll,
        Stage::Read,
        Stage::Write,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Queued => "queued",
            Stage::Handled => "handled",
            Stage::GroupCommit => "group_commit",
            Stage::Routed => "routed",
            Stage::LongPoll => "long_poll",
            Stage::Read => "read",
            Stage::Write => "write",
        }
    }
}

/// Why a connection ended, for `ferry_connections_closed_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed it (or the socket failed).
    Client,
    /// Nothing arrived for `connections.max.idle.ms`.
    Idle,
    /// A frame ferry cannot answer: bad length, unknown API or version, undecodable body.
    Protocol,
    /// The broker is shutting down.
    Shutdown,
    /// SASL authentication failed, or a request came before it ended.
    Authentication,
    /// A TLS listener's handshake failed or did not finish in `ssl.handshake.timeout.ms`.
    Handshake,
}

impl CloseReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::Client => "client",
            CloseReason::Idle => "idle",
            CloseReason::Protocol => "protocol_error",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Authentication => "authentication",
            CloseReason::Handshake => "tls_handshake",
        }
    }
}

/// Buckets for latencies: 50 µs to about 13 s, each √2 times the one before (two per doubling),
/// so a millisecond-scale tail is read to within 41%, not 100%.
fn latency_buckets() -> Vec<f64> {
    exponential_buckets(0.000_05, std::f64::consts::SQRT_2, 37).expect("valid buckets")
}

fn latency_histogram(name: &str, help: &str) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(latency_buckets()))
        .expect("valid metric")
}

pub struct ServerMetrics {
    registry: Registry,
    /// Every family's name, whether or not it has samples yet.
    names: Vec<String>,
    requests: IntCounterVec,
    errors: IntCounterVec,
    duration: HistogramVec,
    stages: HistogramVec,
    fetch_bytes: IntCounterVec,
    write_seconds: Histogram,
    fsync_seconds: Histogram,
    group_commit_logs: Histogram,
    group_commit_rounds: IntCounterVec,
    connections_open: IntGauge,
    connections_accepted: IntCounter,
    connections_refused: IntCounterVec,
    connections_closed: IntCounterVec,
    recovery_seconds: prometheus::Gauge,
    sasl_authentications: IntCounterVec,
}

impl ServerMetrics {
    pub fn new() -> ServerMetrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "ferry_requests_total",
                "Requests decoded, by API and version.",
            ),
            &["api", "version"],
        )
        .expect("valid metric");
        let errors = IntCounterVec::new(
            Opts::new(
                "ferry_request_errors_total",
                "Responses that carried the Kafka error, by API (a response counts once per distinct error, however many partitions carry it).",
            ),
            &["api", "error"],
        )
        .expect("valid metric");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "ferry_request_duration_seconds",
                "From a request's whole frame read to its response written, by API.",
            )
            .buckets(latency_buckets()),
            &["api"],
        )
        .expect("valid metric");
        let stages = HistogramVec::new(
            HistogramOpts::new(
                "ferry_request_stage_seconds",
                "Time a request spends in each stage (queued, handled, group_commit, routed, long_poll, read, write), by API.",
            )
            .buckets(latency_buckets()),
            &["api", "stage"],
        )
        .expect("valid metric");
        let fetch_bytes = IntCounterVec::new(
            Opts::new(
                "ferry_topic_bytes_out_total",
                "Bytes of record batches sent to consumers in Fetch responses, by topic.",
            ),
            &["topic"],
        )
        .expect("valid metric");
        let write_seconds = latency_histogram(
            "ferry_log_write_duration_seconds",
            "A group commit round's writes of appended batches to the OS (page cache).",
        );
        let fsync_seconds = latency_histogram(
            "ferry_fsync_duration_seconds",
            "A group commit round's fdatasyncs, every log of the round at once.",
        );
        let group_commit_logs = Histogram::with_opts(
            HistogramOpts::new(
                "ferry_group_commit_logs",
                "Logs (partitions, the group and transaction logs) one group commit round fsynced.",
            )
            .buckets(exponential_buckets(1.0, 2.0, 11).expect("valid buckets")),
        )
        .expect("valid metric");
        let group_commit_rounds = IntCounterVec::new(
            Opts::new(
                "ferry_group_commit_rounds_total",
                "Group commit rounds, by how they made their appends durable (wal: one write-ahead log frame and its fdatasync; fsync: an fdatasync per file).",
            ),
            &["durable"],
        )
        .expect("valid metric");
        let connections_open =
            IntGauge::new("ferry_connections_open", "Client connections open.").expect("valid");
        let connections_accepted = IntCounter::new(
            "ferry_connections_accepted_total",
            "Client connections accepted.",
        )
        .expect("valid metric");
        let connections_refused = IntCounterVec::new(
            Opts::new(
                "ferry_connections_refused_total",
                "Client connections closed at once, by reason (limit: max.connections reached).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let connections_closed = IntCounterVec::new(
            Opts::new(
                "ferry_connections_closed_total",
                "Client connections ended, by reason (client, idle, protocol_error, shutdown, tls_handshake, authentication).",
            ),
            &["reason"],
        )
        .expect("valid metric");
        let recovery_seconds = prometheus::Gauge::new(
            "ferry_recovery_duration_seconds",
            "How long opening the data directory (recovery) took at start.",
        )
        .expect("valid metric");
        let sasl_authentications = IntCounterVec::new(
            Opts::new(
                "ferry_sasl_authentications_total",
                "SASL authentications ended, by mechanism and outcome (success, failure).",
            ),
            &["mechanism", "outcome"],
        )
        .expect("valid metric");
        let mut names = Vec::new();
        for collector in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(errors.clone()),
            Box::new(duration.clone()),
            Box::new(stages.clone()),
            Box::new(fetch_bytes.clone()),
            Box::new(write_seconds.clone()),
            Box::new(fsync_seconds.clone()),
            Box::new(group_commit_logs.clone()),
            Box::new(group_commit_rounds.clone()),
            Box::new(connections_open.clone()),
            Box::new(connections_accepted.clone()),
            Box::new(connections_refused.clone()),
            Box::new(connections_closed.clone()),
            Box::new(recovery_seconds.clone()),
            Box::new(sasl_authentications.clone()),
        ] {
            names.extend(collector.desc().iter().map(|d| d.fq_name.clone()));
            registry
                .register(collector)
                .expect("metric names are distinct");
        }
        ServerMetrics {
            registry,
            names,
            requests,
            errors,
            duration,
            stages,
            fetch_bytes,
            write_seconds,
            fsync_seconds,
            group_commit_logs,
            group_commit_rounds,
            connections_open,
            connections_accepted,
            connections_refused,
            connections_closed,
            recovery_seconds,
            sasl_authentications,
        }
    }

    pub fn request(&self, api: &str, version: i16) {
        let version = VERSIONS.get(version as usize).copied().unwrap_or("other");
        self.requests.with_label_values(&[api, version]).inc();
    }

    /// A response went out carrying these distinct error codes.
    pub fn errors(&self, api: &str, codes: &[i16]) {
        for &code in codes {
            let name = crate::error_name(code);
            self.errors.with_label_values(&[api, &name]).inc();
        }
    }

    pub fn duration(&self, api: &str, took: Duration) {
        self.duration
            .with_label_values(&[api])
            .observe(took.as_secs_f64());
    }

    pub fn stage(&self, api: &str, stage: Stage, took: Duration) {
        self.stages
            .with_label_values(&[api, stage.as_str()])
            .observe(took.as_secs_f64());
    }

    pub fn fetched(&self, topic: &str, bytes: u64) {
        self.fetch_bytes.with_label_values(&[topic]).inc_by(bytes);
    }

    /// One group commit round: its writes, its fsyncs, and how many logs it covered.
    /// One group commit round over `logs` logs: its writes, then its fsyncs (one write-ahead log
    /// frame's when `through_wal`).
    pub fn group_commit(&self, logs: usize, writes: Duration, fsyncs: Duration, through_wal: bool) {
        self.write_seconds.observe(writes.as_secs_f64());
        self.fsync_seconds.observe(fsyncs.as_secs_f64());
        self.group_commit_logs.observe(logs as f64);
        let durable = if through_wal { "wal" } else { "fsync" };
        self.group_commit_rounds.with_label_values(&[durable]).inc();
    }

    pub fn connection_opened(&self) {
        self.connections_accepted.inc();
        self.connections_open.inc();
    }

    pub fn connection_closed(&self, reason: CloseReason) {
        self.connections_open.dec();
        self.connections_closed
            .with_label_values(&[reason.as_str()])
            .inc();
    }

    pub fn connection_refused_by_limit(&self) {
        self.connections_refused.with_label_values(&["limit"]).inc();
    }

    /// A SASL authentication ended: `mechanism` by Kafka's name, `success` or not.
    pub fn sasl_authentication(&self, mechanism: &str, success: bool) {
        let outcome = if success { "success" } else { "failure" };
        self.sasl_authentications
            .with_label_values(&[mechanism, outcome])
            .inc();
    }

    pub fn recovered(&self, took: Duration) {
        self.recovery_seconds.set(took.as_secs_f64());
    }

    /// The name of every family, with samples or not yet.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The live families, for a scrape.
    pub fn gather(&self) -> Vec<prometheus::proto::MetricFamily> {
        self.registry.gather()
    }
}

impl Default for ServerMetrics {
    fn default() -> Self {
        ServerMetrics::new()
    }
}

/// Version labels without formatting on the request path.
const VERSIONS: [&str; 20] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_index_their_list() {
        for (index, stage) in Stage::ALL.into_iter().enumerate() {
            assert_eq!(stage as usize, index, "{stage:?}");
        }
    }
}
