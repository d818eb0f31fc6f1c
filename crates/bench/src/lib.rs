//! `ferry bench`: one run measures the machine's limits (disk fdatasync bandwidth and latency,
//! loopback TCP), ferry's durable produce, transactions, consume, end-to-end latency, start-up,
//! memory and recovery after `kill -9`, and the same workloads against peers found on this
//! machine (tansu, NATS JetStream). It prints a table of absolute figures, ratios to the machine's
//! limits and ratios to each peer, and writes the same as JSON (`docs/bench.md` has the schema).
//!
//! Errors are `anyhow`: the bench is one of the binary's commands, and its errors are reported to
//! the person running it, never matched on.

// `is_multiple_of` is newer than the workspace's rust-version (1.85).
#![allow(clippy::manual_is_multiple_of)]

mod kafka;
mod machine;
mod nats;
mod process;
mod report;
mod stages;
mod stats;
pub mod tls;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;

pub use report::Report;

/// The bench's command-line options.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Short mode: every workload for a fraction of a second, a small recovery log. Checks that
    /// the bench works; its figures are indicative only.
    #[arg(long)]
    quick: bool,
    /// Write the results as JSON to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// Where temporary data directories are created: put it on the disk you want measured.
    #[arg(long, value_name = "DIR", env = "FERRY_BENCH_DIR")]
    dir: Option<PathBuf>,
    /// Skip the peers (tansu, NATS JetStream) even when they are installed.
    #[arg(long)]
    no_peers: bool,
    /// Run only these workloads (comma-separated names as in the JSON, e.g. e2e_latency): for
    /// profiling one path.
    #[arg(long, value_delimiter = ',', value_name = "WORKLOAD")]
    only: Vec<String>,
    /// Run every broker on these CPUs (comma-separated numbers) and the bench's clients on the
    /// others, as if on separate machines; the machine probes run before, on every CPU. Without
    /// it, brokers and clients share all CPUs.
    #[arg(long, value_delimiter = ',', value_name = "CPU")]
    broker_cpus: Vec<usize>,
}

/// How long and how much each measurement runs; `quick` or `full`.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub quick: bool,
    /// Per chunk size of the disk bandwidth probe.
    pub disk_seconds: f64,
    pub fsync_samples: usize,
    pub loopback_seconds: f64,
    pub produce_seconds: f64,
    pub latency_seconds: f64,
    /// Samples sent before this are not counted (connections, first metadata).
    pub latency_warmup_seconds: f64,
    pub latency_rate_per_s: u64,
    pub startup_runs: usize,
    pub recovery_log_bytes: u64,
    pub fill_seconds_max: f64,
    pub partitions: i32,
    /// Workloads to run; empty: all.
    pub only: Vec<String>,
}

impl Plan {
    fn new(quick: bool, only: Vec<String>) -> Plan {
        if quick {
            Plan {
                quick,
                disk_seconds: 0.3,
                fsync_samples: 100,
                loopback_seconds: 0.3,
                produce_seconds: 1.0,
                latency_seconds: 1.5,
                latency_warmup_seconds: 0.3,
                latency_rate_per_s: 10_000,
                startup_runs: 2,
                recovery_log_bytes: 16 << 20,
                fill_seconds_max: 10.0,
                partitions: 4,
                only,
            }
        } else {
            Plan {
                quick,
                disk_seconds: 3.0,
                fsync_samples: 2_000,
                loopback_seconds: 2.0,
                produce_seconds: 15.0,
                latency_seconds: 21.0,
                latency_warmup_seconds: 1.0,
                latency_rate_per_s: 10_000,
                startup_runs: 7,
                recovery_log_bytes: 1 << 30,
                fill_seconds_max: 120.0,
                partitions: 4,
                only,
            }
        }
    }

    pub fn wants(&self, workload: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|w| w == workload)
    }
}

/// Runs the bench as `ferry bench` does: prints the table, writes the JSON, and fails when a
/// ferry workload failed (a failing peer is reported, not fatal).
pub fn run(args: BenchArgs) -> Result<()> {
    // Another build of ferry can be measured by this bench's code (before and after a change).
    let ferry_exe = match std::env::var_os("FERRY_BENCH_BROKER") {
        Some(exe) => PathBuf::from(exe),
        None => std::env::current_exe().context("find the ferry binary")?,
    };
    let dir = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let report = measure(&args, &ferry_exe, &dir)?;
    print!("{}", report.table());
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&report).context("encode results as JSON")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("write results to {}", path.display()))?;
        println!("results written to {}", path.display());
    }
    let failed: Vec<String> = report
        .results
        .iter()
        .filter(|row| row.target == "ferry" && row.status == report::Status::Failed)
        .map(|row| format!("{}: {}", row.workload, row.note.as_deref().unwrap_or("")))
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "ferry workloads failed: {}",
        failed.join("; ")
    );
    Ok(())
}

fn measure(args: &BenchArgs, ferry_exe: &Path, dir: &Path) -> Result<Report> {
    let plan = Plan::new(args.quick, args.only.clone());
    let started = Instant::now();
    let work = tempfile::Builder::new()
        .prefix("ferry-bench-")
        .tempdir_in(dir)
        .with_context(|| format!("create a work directory in {}", dir.display()))?;
    let mut report = Report::new(&plan, work.path());
    progress(&format!(
        "ferry bench ({} mode, {} build) in {}",
        report.mode,
        report.build,
        work.path().display()
    ));
    report.machine = machine::probe(&plan, work.path())?;
    if !args.broker_cpus.is_empty() {
        let clients = process::split_cpus(&args.broker_cpus)?;
        progress(&format!(
            "brokers on CPUs {:?}, clients on CPUs {clients:?}",
            args.broker_cpus
        ));
        report.settings.broker_cpus = args.broker_cpus.clone();
        report.settings.client_cpus = clients;
    }
    // Measured as deployed, with the metrics endpoint on; its cost alone is the metrics_cost
    // row, and the latency workload reads its stage timings from it.
    let ferry = kafka::Server::Ferry {
        exe: ferry_exe.to_path_buf(),
        metrics: Some(process::free_addr()?),
        tls: None,
    };
    report.add_target(kafka::run_target(&ferry, &plan, work.path()));
    if args.no_peers {
        progress("peers skipped (--no-peers)");
    } else {
        report.add_target(match kafka::find_tansu() {
            Some(exe) => kafka::run_target(&kafka::Server::Tansu { exe }, &plan, work.path()),
            None => report::TargetRun::absent(
                "tansu",
                "no tansu binary: set FERRY_BENCH_TANSU or put tansu on PATH (docs/bench.md)",
            ),
        });
        report.add_target(match nats::find_server() {
            Some(exe) => nats::run_target(&exe, &plan, work.path()),
            None => report::TargetRun::absent(
                "nats-jetstream",
                "no nats-server with sync_interval: always (2.10+): run scripts/bench-peers or set FERRY_BENCH_NATS",
            ),
        });
    }
    report.finish(started.elapsed());
    Ok(report)
}

/// One line of progress on stderr, so a long run shows where it is; stdout carries the table.
pub(crate) fn progress(line: &str) {
    eprintln!("bench: {line}");
}

pub(crate) fn secs(seconds: f64) -> Duration {
    Duration::from_secs_f64(seconds)
}
