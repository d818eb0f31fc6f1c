//! The results of one run: the JSON document (schema in `docs/bench.md`) and the table printed
//! from it, with ratios to the machine's limits, ratios to each peer, and the design brief's
//! performance targets judged met or missed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::Plan;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub schema_version: u32,
    /// "quick" or "full".
    pub mode: String,
    /// "release" or "debug": the build of the ferry binary that ran (and was measured).
    pub build: String,
    pub ferry_version: String,
    pub started_unix_s: u64,
    pub duration_s: f64,
    pub host: Host,
    pub settings: Settings,
    pub machine: Machine,
    pub targets: Vec<Target>,
    pub results: Vec<Row>,
    pub design_targets: Vec<DesignCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Host {
    pub cores: u64,
    pub memory_bytes: u64,
    pub cpu: String,
    pub kernel: String,
    /// The directory that held the data directories and the disk probes.
    pub work_dir: String,
    /// The 1-minute load average when the run started: other work on the machine skews it.
    pub load_average_start: f64,
}

/// What the workloads were run with, so two JSON files can be compared knowingly.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub partitions: i32,
    pub produce_seconds: f64,
    pub latency_seconds: f64,
    pub latency_rate_per_s: u64,
    pub recovery_log_bytes: u64,
    pub startup_runs: u64,
    /// The CPUs the brokers ran on and those the clients ran on (`--broker-cpus`); empty when
    /// they shared every CPU.
    #[serde(default)]
    pub broker_cpus: Vec<usize>,
    #[serde(default)]
    pub client_cpus: Vec<usize>,
}

/// A broker measured (or not) in this run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Target {
    pub name: String,
    pub status: Status,
    pub version: Option<String>,
    pub note: Option<String>,
    /// Capabilities found on the broker, e.g. "idempotence": true.
    pub features: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// The broker lacks what the workload needs (e.g. transactions); not an error.
    NotAvailable,
    /// The peer is not installed.
    Absent,
    Failed,
}

/// One workload against one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Row {
    pub target: String,
    pub workload: String,
    pub status: Status,
    pub note: Option<String>,
    pub metrics: BTreeMap<String, f64>,
}

impl Row {
    pub fn ok(target: &str, workload: &str, metrics: &[(&str, f64)]) -> Row {
        Row {
            target: target.into(),
            workload: workload.into(),
            status: Status::Ok,
            note: None,
            metrics: metrics.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        }
    }

    pub fn not_ok(target: &str, workload: &str, status: Status, note: String) -> Row {
        Row {
            target: target.into(),
            workload: workload.into(),
            status,
            note: Some(note),
            metrics: BTreeMap::new(),
        }
    }

    /// Adds metrics named at run time.
    pub fn with_metrics(mut self, metrics: Vec<(String, f64)>) -> Row {
        self.metrics.extend(metrics);
        self
    }

    pub fn with_note(mut self, note: Option<String>) -> Row {
        self.note = note;
        self
    }

    fn metric(&self, name: &str) -> Option<f64> {
        if self.status != Status::Ok {
            return None;
        }
        self.metrics.get(name).copied()
    }
}

/// A target and its rows, as a runner hands them back.
pub struct TargetRun {
    pub target: Target,
    pub rows: Vec<Row>,
}

impl TargetRun {
    pub fn absent(name: &str, note: &str) -> TargetRun {
        crate::progress(&format!("{name}: absent ({note})"));
        TargetRun {
            target: Target {
                name: name.into(),
                status: Status::Absent,
                version: None,
                note: Some(note.into()),
                features: BTreeMap::new(),
            },
            rows: Vec::new(),
        }
    }
}

/// One performance target of the design brief.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DesignCheck {
    pub name: String,
    pub goal: String,
    pub measured: Option<f64>,
    /// "met", "missed" or "not_measured".
    pub verdict: String,
    pub note: Option<String>,
}

impl Report {
    pub(crate) fn new(plan: &Plan, work_dir: &Path) -> Report {
        Report {
            schema_version: SCHEMA_VERSION,
            mode: if plan.quick { "quick" } else { "full" }.into(),
            build: if cfg!(debug_assertions) {
                "debug"
            } else {
                "release"
            }
            .into(),
            ferry_version: env!("CARGO_PKG_VERSION").into(),
            started_unix_s: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            duration_s: 0.0,
            host: host(work_dir),
            settings: Settings {
                partitions: plan.partitions,
                produce_seconds: plan.produce_seconds,
                latency_seconds: plan.latency_seconds,
                latency_rate_per_s: plan.latency_rate_per_s,
                recovery_log_bytes: plan.recovery_log_bytes,
                startup_runs: plan.startup_runs as u64,
                broker_cpus: Vec::new(),
                client_cpus: Vec::new(),
            },
            machine: Machine::default(),
            targets: Vec::new(),
            results: Vec::new(),
            design_targets: Vec::new(),
        }
    }

    pub fn add_target(&mut self, run: TargetRun) {
        self.targets.push(run.target);
        self.results.extend(run.rows);
    }

    pub fn finish(&mut self, elapsed: Duration) {
        self.duration_s = elapsed.as_secs_f64();
        self.design_targets = design_checks(self);
    }

    fn row(&self, target: &str, workload: &str) -> Option<&Row> {
        self.results
            .iter()
            .find(|row| row.target == target && row.workload == workload)
    }

    fn metric(&self, target: &str, workload: &str, metric: &str) -> Option<f64> {
        self.row(target, workload)?.metric(metric)
    }

    fn feature(&self, target: &str, feature: &str) -> bool {
        self.targets
            .iter()
            .any(|t| t.name == target && t.features.get(feature) == Some(&true))
    }

    /// The table as printed by `ferry bench`.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(
            out,
            "\nferry bench: {} mode, ferry {} {} build{}, {} s",
            self.mode,
            self.ferry_version,
            self.build,
            if self.build == "debug" {
                " (NOT representative: measure `cargo build --release -p ferry`)"
            } else {
                ""
            },
            self.duration_s.round()
        );
        let _ = writeln!(
            out,
            "host: {} cores, {:.1} GiB, {}, kernel {}, load {:.1} at start; work dir {}",
            self.host.cores,
            self.host.memory_bytes as f64 / (1u64 << 30) as f64,
            self.host.cpu,
            self.host.kernel,
            self.host.load_average_start,
            self.host.work_dir
        );
        if !self.settings.broker_cpus.is_empty() {
            let _ = writeln!(
                out,
                "CPUs: brokers on {:?}, clients on {:?} (--broker-cpus)",
                self.settings.broker_cpus, self.settings.client_cpus
            );
        }
        let chunks: Vec<String> = m
            .disk_chunks
            .iter()
            .map(|c| format!("{} MiB {}", c.chunk_bytes >> 20, mb_s(c.bytes_per_s)))
            .collect();
        let _ = writeln!(
            out,
            "machine: disk append+fdatasync {} ({}); fdatasync 4 KiB p50 {} p99 {} max {}; {} files at once p50 {} p99 {} max {}; loopback TCP {}",
            mb_s(m.disk_fdatasync_bytes_per_s),
            chunks.join(", "),
            ms(m.fsync_latency.p50_us),
            ms(m.fsync_latency.p99_us),
            ms(m.fsync_latency.max_us),
            m.round_files,
            ms(m.fsync_round_latency.p50_us),
            ms(m.fsync_round_latency.p99_us),
            ms(m.fsync_round_latency.max_us),
            mb_s(m.loopback_tcp_bytes_per_s),
        );
        self.write_targets(&mut out);
        self.write_rows(&mut out);
        self.write_design(&mut out);
        out
    }

    fn write_targets(&self, out: &mut String) {
        for target in &self.targets {
            let features: Vec<String> = target
                .features
                .iter()
                .map(|(name, on)| format!("{name} {}", if *on { "yes" } else { "NOT AVAILABLE" }))
                .collect();
            let _ = writeln!(
                out,
                "target {}: {:?}{}{}{}",
                target.name,
                target.status,
                target
                    .version
                    .as_ref()
                    .map(|v| format!(", {v}"))
                    .unwrap_or_default(),
                if features.is_empty() {
                    String::new()
                } else {
                    format!("; {}", features.join(", "))
                },
                target
                    .note
                    .as_ref()
                    .map(|n| format!("; {n}"))
                    .unwrap_or_default(),
            );
        }
    }

    fn write_rows(&self, out: &mut String) {
        let peers: Vec<&Target> = self.targets.iter().filter(|t| t.name != "ferry").collect();
        let mut header = format!("\n{:<44} {:>12} {:>16}", "workload", "ferry", "vs machine");
        for peer in &peers {
            let _ = write!(header, " {:>14} {:>9}", short(&peer.name), "ferry/it");
        }
        let _ = writeln!(out, "{header}");
        for line in LINES {
            let ferry = self.metric("ferry", line.workload, line.metric);
            let mut text = format!(
                "{:<44} {:>12} {:>16}",
                line.label,
                cell(self.row("ferry", line.workload), line),
                ferry
                    .and_then(|value| self.versus_machine(line, value))
                    .unwrap_or_default(),
            );
            for peer in &peers {
                let theirs = self.metric(&peer.name, line.workload, line.metric);
                let ratio = match (ferry, theirs) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
                    _ => "-".into(),
                };
                let _ = write!(
                    text,
                    " {:>14} {:>9}",
                    cell(self.row(&peer.name, line.workload), line),
                    ratio
                );
            }
            let _ = writeln!(out, "{text}");
        }
        let _ = writeln!(
            out,
            "(ferry/it: ferry's figure over the peer's; throughput higher is better, times, memory and CPU per GB lower)"
        );
        for row in self.results.iter().filter(|r| r.note.is_some()) {
            let _ = writeln!(
                out,
                "  note {}/{}: {}",
                row.target,
                row.workload,
                row.note.as_deref().unwrap_or("")
            );
        }
    }

    fn versus_machine(&self, line: &Line, value: f64) -> Option<String> {
        let m = &self.machine;
        let (limit, name) = match line.machine {
            MachineRef::None => return None,
            MachineRef::Disk => (m.disk_fdatasync_bytes_per_s, "disk"),
            MachineRef::Loopback => (m.loopback_tcp_bytes_per_s, "loopback"),
            MachineRef::FsyncP50 => (m.fsync_latency.p50_us, "fsync p50"),
            MachineRef::FsyncP99 => (m.fsync_latency.p99_us, "fsync p99"),
            MachineRef::RoundP99 => (m.fsync_round_latency.p99_us, "round p99"),
        };
        if limit <= 0.0 {
            return None;
        }
        Some(match line.machine {
            MachineRef::Disk | MachineRef::Loopback => {
                format!("{:.0}% {name}", 100.0 * value / limit)
            }
            _ => format!("{:.1}x {name}", value / limit),
        })
    }

    fn write_design(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\ndesign targets{}:",
            if self.mode == "quick" || self.build == "debug" {
                " (indicative only: quick mode or debug build)"
            } else {
                ""
            }
        );
        for check in &self.design_targets {
            let _ = writeln!(
                out,
                "  {:<13} {:<42} {}{}",
                check.verdict,
                check.goal,
                check
                    .measured
                    .map(|v| format!("measured {v:.3}"))
                    .unwrap_or_default(),
                check
                    .note
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            );
        }
    }
}

fn short(name: &str) -> &str {
    name.split('-').next().unwrap_or(name)
}

/// Which machine limit a figure is read against.
enum MachineRef {
    None,
    Disk,
    Loopback,
    FsyncP50,
    FsyncP99,
    /// fdatasync of one 4 KiB append to each partition's file at once: a group commit round.
    RoundP99,
}

enum Unit {
    BytesPerS,
    RecordsPerS,
    Micros,
    Millis,
    Bytes,
    Cores,
    CpuSecondsPerGb,
    Count,
    /// A share, printed as a percentage.
    Share,
}

/// One line of the table: a metric of a workload.
struct Line {
    label: &'static str,
    workload: &'static str,
    metric: &'static str,
    unit: Unit,
    machine: MachineRef,
}

const fn line(
    label: &'static str,
    workload: &'static str,
    metric: &'static str,
    unit: Unit,
    machine: MachineRef,
) -> Line {
    Line {
        label,
        workload,
        metric,
        unit,
        machine,
    }
}

const LINES: &[Line] = &[
    line(
        "produce 1 KiB acks=all idempotent",
        "produce_1kib",
        "bytes_per_s",
        Unit::BytesPerS,
        MachineRef::Disk,
    ),
    line(
        "  records/s",
        "produce_1kib",
        "records_per_s",
        Unit::RecordsPerS,
        MachineRef::None,
    ),
    line(
        "  CPU cores used: broker",
        "produce_1kib",
        "broker_cpu_cores",
        Unit::Cores,
        MachineRef::None,
    ),
    line(
        "  CPU cores used: client",
        "produce_1kib",
        "client_cpu_cores",
        Unit::Cores,
        MachineRef::None,
    ),
    line(
        "  broker CPU per GB produced",
        "produce_1kib",
        "broker_cpu_s_per_gb",
        Unit::CpuSecondsPerGb,
        MachineRef::None,
    ),
    line(
        "  client CPU per GB produced",
        "produce_1kib",
        "client_cpu_s_per_gb",
        Unit::CpuSecondsPerGb,
        MachineRef::None,
    ),
    line(
        "produce 100 B acks=all idempotent",
        "produce_100b",
        "bytes_per_s",
        Unit::BytesPerS,
        MachineRef::Disk,
    ),
    line(
        "  records/s",
        "produce_100b",
        "records_per_s",
        Unit::RecordsPerS,
        MachineRef::None,
    ),
    line(
        "produce 1 KiB transactions every 100 ms",
        "produce_1kib_txn",
        "bytes_per_s",
        Unit::BytesPerS,
        MachineRef::Disk,
    ),
    line(
        "  idempotent produce in the same turns",
        "produce_1kib_txn",
        "idempotent_records_per_s_in_turns",
        Unit::RecordsPerS,
        MachineRef::None,
    ),
    line(
        "  transactions over idempotent, median of the turns",
        "produce_1kib_txn",
        "txn_vs_idempotent_in_turns",
        Unit::Share,
        MachineRef::None,
    ),
    line(
        "  commit: drain in-flight p50",
        "produce_1kib_txn",
        "commit_drain_p50_us",
        Unit::Micros,
        MachineRef::None,
    ),
    line(
        "  commit: EndTxn p50",
        "produce_1kib_txn",
        "commit_end_txn_p50_us",
        Unit::Micros,
        MachineRef::None,
    ),
    line(
        "produce 1 KiB, metrics endpoint off",
        "metrics_cost",
        "records_per_s_metrics_off",
        Unit::RecordsPerS,
        MachineRef::None,
    ),
    line(
        "  metrics on, scraped every second",
        "metrics_cost",
        "records_per_s_metrics_on",
        Unit::RecordsPerS,
        MachineRef::None,
    ),
    line(
        "  broker CPU per GB, metrics off",
        "metrics_cost",
        "broker_cpu_s_per_gb_metrics_off",
        Unit::CpuSecondsPerGb,
        MachineRef::None,
    ),
    line(
        "  broker CPU per GB, metrics on",
        "metrics_cost",
        "broker_cpu_s_per_gb_metrics_on",
        Unit::CpuSecondsPerGb,
        MachineRef::None,
    ),
    line(
        "consume 1 KiB",
        "consume_1kib",
        "bytes_per_s",
        Unit::BytesPerS,
        MachineRef::Loopback,
    ),
    line(
        "  records/s",
        "consume_1kib",
        "records_per_s",
        Unit::RecordsPerS,
        MachineRef::None,
    ),
    line(
        "  broker CPU per GB consumed",
        "consume_1kib",
        "broker_cpu_s_per_gb",
        Unit::CpuSecondsPerGb,
        MachineRef::None,
    ),
    line(
        "  client CPU per GB consumed",
        "consume_1kib",
        "client_cpu_s_per_gb",
        Unit::CpuSecondsPerGb,
        MachineRef::None,
    ),
    line(
        "produce 1 KiB over SSL (rustls)",
        "produce_1kib_tls",
        "bytes_per_s",
        Unit::BytesPerS,
        MachineRef::None,
    ),
    line(
        "  broker CPU per GB, SSL",
        "produce_1kib_tls",
        "broker_cpu_s_per_gb",
        Unit::CpuSecondsPerGb,
        MachineRef::None,
    ),
    line(
        "consume 1 KiB over SSL (rustls)",
        "consume_1kib_tls",
        "bytes_per_s",
        Unit::BytesPerS,
        MachineRef::None,
    ),
    line(
        "  broker CPU per GB consumed, SSL",
        "consume_1kib_tls",
        "broker_cpu_s_per_gb",
        Unit::CpuSecondsPerGb,
        MachineRef::None,
    ),
    line(
        "end-to-end latency p50 at 10k/s",
        "e2e_latency",
        "p50_us",
        Unit::Micros,
        MachineRef::FsyncP50,
    ),
    line(
        "end-to-end latency p99",
        "e2e_latency",
        "p99_us",
        Unit::Micros,
        MachineRef::FsyncP99,
    ),
    line(
        "end-to-end latency p999",
        "e2e_latency",
        "p999_us",
        Unit::Micros,
        MachineRef::FsyncP99,
    ),
    line(
        "produce ack latency p50 (send to ack)",
        "e2e_latency",
        "ack_p50_us",
        Unit::Micros,
        MachineRef::FsyncP50,
    ),
    line(
        "produce ack latency p99",
        "e2e_latency",
        "ack_p99_us",
        Unit::Micros,
        MachineRef::FsyncP99,
    ),
    line(
        "  beside fdatasync of all partitions at once",
        "e2e_latency",
        "ack_p99_us",
        Unit::Micros,
        MachineRef::RoundP99,
    ),
    line(
        "end-to-end latency p99 while topics are created and deleted",
        "e2e_latency_churn",
        "p99_us",
        Unit::Micros,
        MachineRef::FsyncP99,
    ),
    line(
        "  produce ack latency p99, same",
        "e2e_latency_churn",
        "ack_p99_us",
        Unit::Micros,
        MachineRef::FsyncP99,
    ),
    line(
        "  topics created and deleted meanwhile",
        "e2e_latency_churn",
        "topic_changes",
        Unit::Count,
        MachineRef::None,
    ),
    line(
        "  stage p99 (ferry metrics): queued",
        "e2e_latency",
        "produce_queued_p99_bound_us",
        Unit::Micros,
        MachineRef::None,
    ),
    line(
        "  stage p99: handled by the broker",
        "e2e_latency",
        "produce_handled_p99_bound_us",
        Unit::Micros,
        MachineRef::None,
    ),
    line(
        "  stage p99: waiting for group commit",
        "e2e_latency",
        "produce_group_commit_p99_bound_us",
        Unit::Micros,
        MachineRef::None,
    ),
    line(
        "  stage p99: response written",
        "e2e_latency",
        "produce_write_p99_bound_us",
        Unit::Micros,
        MachineRef::None,
    ),
    line(
        "  client: record queued until sent, p99 (median 1 s window)",
        "e2e_latency",
        "client_queued_p99_us",
        Unit::Micros,
        MachineRef::None,
    ),
    line(
        "  client: request round trip p99 (median 1 s window)",
        "e2e_latency",
        "client_rtt_p99_us",
        Unit::Micros,
        MachineRef::FsyncP99,
    ),
    line(
        "  group commit fsync p99 (ferry metrics)",
        "e2e_latency",
        "fsync_p99_bound_us",
        Unit::Micros,
        MachineRef::None,
    ),
    line(
        "start-up to first answered request",
        "startup",
        "ready_ms",
        Unit::Millis,
        MachineRef::None,
    ),
    line(
        "memory idle (RSS)",
        "memory",
        "idle_rss_bytes",
        Unit::Bytes,
        MachineRef::None,
    ),
    line(
        "memory loaded (peak RSS)",
        "memory",
        "loaded_rss_bytes",
        Unit::Bytes,
        MachineRef::None,
    ),
    line(
        "recovery after kill -9: log size",
        "recovery",
        "log_bytes",
        Unit::Bytes,
        MachineRef::None,
    ),
    line(
        "  restart to first answered request",
        "recovery",
        "ready_ms",
        Unit::Millis,
        MachineRef::None,
    ),
    line(
        "  restart to first acked produce",
        "recovery",
        "first_produce_ms",
        Unit::Millis,
        MachineRef::None,
    ),
];

fn cell(row: Option<&Row>, line: &Line) -> String {
    let Some(row) = row else {
        return "-".into();
    };
    match row.status {
        Status::Ok => {}
        Status::NotAvailable => return "n/a".into(),
        Status::Absent => return "absent".into(),
        Status::Failed => return "FAILED".into(),
    }
    let Some(value) = row.metrics.get(line.metric).copied() else {
        return "-".into();
    };
    match line.unit {
        Unit::BytesPerS => mb_s(value),
        Unit::RecordsPerS => format!("{:.0}k/s", value / 1e3),
        Unit::Micros => ms(value),
        Unit::Millis => format!("{value:.1} ms"),
        Unit::Bytes => format!("{:.1} MiB", value / (1u64 << 20) as f64),
        Unit::Cores => format!("{value:.2}"),
        Unit::CpuSecondsPerGb => format!("{value:.2} s/GB"),
        Unit::Count => format!("{value:.0}"),
        Unit::Share => format!("{:.1}%", value * 100.0),
    }
}

fn mb_s(bytes_per_s: f64) -> String {
    format!("{:.1} MB/s", bytes_per_s / 1e6)
}

fn ms(us: f64) -> String {
    format!("{:.2} ms", us / 1e3)
}

/// The design brief's performance targets, judged from ferry's rows.
fn design_checks(report: &Report) -> Vec<DesignCheck> {
    let disk = report.machine.disk_fdatasync_bytes_per_s;
    let idempotent = report.feature("ferry", "idempotence");
    let produce = report.metric("ferry", "produce_1kib", "bytes_per_s");
    let mut checks = Vec::new();
    checks.push(check(
        "durable_produce_vs_disk",
        "produce 1 KiB acks=all idempotent >= 60% disk",
        produce.filter(|_| disk > 0.0).map(|p| p / disk),
        |v| v >= 0.6,
        (!idempotent).then(|| "measured without idempotence: InitProducerId not available".into()),
        idempotent,
    ));
    checks.push(check(
        "metrics_cost",
        "metrics on cost <= 2% of durable produce",
        report
            .metric("ferry", "metrics_cost", "on_vs_off")
            .map(|ratio| 1.0 - ratio),
        |v| v <= 0.02,
        None,
        true,
    ));
    // Measured in turns with idempotent produce on the same broker (reports before 2026-12-04
    // compared with the produce_1kib row, run earlier).
    let txn = report.metric("ferry", "produce_1kib_txn", "records_per_s");
    let in_turns = report
        .metric("ferry", "produce_1kib_txn", "txn_vs_idempotent_in_turns")
        .map(|ratio| 1.0 - ratio);
    checks.push(check(
        "transaction_cost",
        "transactions every 100 ms cost <= 5%",
        in_turns,
        |v| v <= 0.05,
        txn.is_none()
            .then(|| "transactions not available yet".into()),
        true,
    ));
    checks.push(check(
        "e2e_p99",
        "end-to-end p99 <= 2 ms at 10k records/s (ms)",
        report
            .metric("ferry", "e2e_latency", "p99_us")
            .map(|us| us / 1e3),
        |v| v <= 2.0,
        None,
        true,
    ));
    let fsync_p99_ms = report.machine.fsync_latency.p99_us / 1e3;
    checks.push(check(
        "ack_p99_over_fsync",
        "produce ack p99 <= 1 ms above the disk's fdatasync p99 (ms above)",
        report
            .metric("ferry", "e2e_latency", "ack_p99_us")
            .filter(|_| fsync_p99_ms > 0.0)
            .map(|us| us / 1e3 - fsync_p99_ms),
        |v| v <= 1.0,
        None,
        true,
    ));
    checks.push(check(
        "startup",
        "start-up to first connection <= 10 ms (ms)",
        report.metric("ferry", "startup", "ready_ms"),
        |v| v <= 10.0,
        None,
        true,
    ));
    checks.push(check(
        "idle_memory",
        "idle memory <= 10 MiB (MiB)",
        report
            .metric("ferry", "memory", "idle_rss_bytes")
            .map(|b| b / (1u64 << 20) as f64),
        |v| v <= 10.0,
        None,
        true,
    ));
    checks
}

fn check(
    name: &str,
    goal: &str,
    measured: Option<f64>,
    met: impl Fn(f64) -> bool,
    note: Option<String>,
    conclusive: bool,
) -> DesignCheck {
    let verdict = match measured {
        None => "not_measured",
        Some(_) if !conclusive => "not_measured",
        Some(v) if met(v) => "met",
        Some(_) => "missed",
    };
    DesignCheck {
        name: name.into(),
        goal: goal.into(),
        measured,
        verdict: verdict.into(),
        note,
    }
}

fn host(work_dir: &Path) -> Host {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown cpu".into());
    Host {
        cores: std::thread::available_parallelism()
            .map(|n| n.get() as u64)
            .unwrap_or(1),
        memory_bytes: memory_kib * 1024,
        cpu,
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .unwrap_or_default(),
        work_dir: work_dir.display().to_string(),
        load_average_start: std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next()?.parse().ok())
            .unwrap_or(0.0),
    }
}
