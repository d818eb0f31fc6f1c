//! `ferry lab`: the same workloads under each delivery guarantee and each fault profile, through
//! the chaos proxy, recorded as Jepsen-style histories, checked by pure functions, and reported
//! as the seed's comparison table with measured numbers (terminal, HTML, JSON).
//!
//! - [`history`]: operations (invoke, ok / fail / info) and the recorder.
//! - [`check`]: pure checkers (lost, duplicated, reordered, aborted reads, latency, throughput,
//!   faults, the ledger invariant).
//! - [`judge`]: one row's history through the checkers to its verdict (live runs and
//!   `ferry lab check` alike).
//! - [`workload`]: the seed's use cases (telemetry, orders, ledger) and the table's rows.
//! - [`profile`]: the fault profiles and run sizes (`--quick`, thorough).
//! - [`target`]: the lab's own broker (a child process) or a cluster, behind the proxy.
//! - [`runner`]: one run, from topic creation to drained history.
//! - [`sink_run`]: the sink rows' runs, the ledger through `crates/sink` into SQLite and
//!   PostgreSQL, judged from the database.
//! - [`results`] and [`report`]: verdicts, JSON, the terminal table and the HTML page.
//! - [`require`]: `--require`, the cheapest row meeting a requirement.
//! - [`recheck`]: `ferry lab check`, a saved history judged again.
//! - [`poison`]: the poison-messages profile, handlers that fail, retried and dead-lettered
//!   by the client's `RetryingConsumer`, with its own table (lost, duplicated, parked).
//!
//! Errors are `anyhow`: the lab is one of the binary's commands, and its errors are reported to
//! the person running it, never matched on.

pub mod check;
pub mod curve;
pub mod history;
pub mod judge;
pub mod poison;
pub mod profile;
pub mod recheck;
pub mod report;
pub mod require;
pub mod results;
pub mod runner;
mod session;
pub mod sink_run;
pub mod target;
pub mod trials;
pub mod workload;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use client::Guarantee;
use indicatif::{ProgressBar, ProgressStyle};

use crate::profile::{Params, Profile};
use crate::results::{LabResults, RowResult, Status, TargetInfo};
use crate::runner::{RunOutput, RunSpec};
use crate::sink_run::SinkEnv;
use crate::target::Target;
use crate::workload::Row;

/// The width of a timeline bucket in reports.
const TIMELINE_BUCKET_US: u64 = 100_000;

/// The status text of exactly-once against a broker without transactions.
pub const NEEDS_TRANSACTIONS: &str = "needs transactions (not yet in this broker)";

/// The lab's command-line options.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LabArgs {
    #[command(subcommand)]
    pub command: Option<LabCommand>,
    /// Small runs: the whole lab in under a minute. The default is thorough.
    #[arg(long)]
    pub quick: bool,
    /// Run against this Kafka-compatible cluster instead of the lab's own broker. Faults that
    /// need the broker process (kill -9) are skipped; proxy faults need the cluster to
    /// advertise the proxy (see docs/lab.md).
    #[arg(long, value_name = "HOST:PORT")]
    pub bootstrap: Option<String>,
    /// Where the chaos proxy listens with --bootstrap (the address the cluster advertises).
    #[arg(long, value_name = "HOST:PORT", default_value = "127.0.0.1:0")]
    pub proxy_listen: SocketAddr,
    /// Client settings for every client with --bootstrap (`-X`, `--client-config`), such as
    /// `-X security.protocol=SASL_SSL`.
    #[command(flatten)]
    pub connect: client::connect::ConnectArgs,
    /// With --bootstrap over TLS: a listener of the same cluster without TLS (PLAINTEXT or
    /// SASL_PLAINTEXT) that advertises --proxy-listen, for the runs with proxy faults (the
    /// proxy cannot read frames inside TLS); without it those runs are skipped.
    #[arg(long, value_name = "HOST:PORT")]
    pub proxy_upstream: Option<String>,
    /// Replication factor of the lab's topics with --bootstrap.
    #[arg(long, default_value_t = 1)]
    pub replication_factor: i32,
    /// Run only these fault profiles (repeatable): none, lost-acks, lossy-network,
    /// duplicating-network, slow-network, broker-kill, consumer-crash, producer-crash,
    /// rebalance, poison-messages.
    #[arg(long = "profile", value_name = "NAME")]
    pub profiles: Vec<Profile>,
    /// Seeds the fault plans; printed, so a run can be repeated.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Write the results as JSON to this file (default: ./ferry-lab.json, unless --no-report).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Write the HTML report to this file (default: ./ferry-lab.html, unless --no-report).
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Write each run's history (JSON lines) into this directory.
    #[arg(long, value_name = "DIR")]
    pub histories: Option<PathBuf>,
    /// Where the lab's own broker keeps its temporary data directory.
    #[arg(long, value_name = "DIR", env = "FERRY_LAB_DIR")]
    pub dir: Option<PathBuf>,
    /// Recommend the cheapest row meeting every clause under every profile it was measured in:
    /// `loss`, `duplicates`, `p99` (us, ms, s; bare: ms), `rate` (records/s, `k`) with `=`,
    /// `<=` or `>=`, e.g. 'loss=0,duplicates=0,p99<=250ms'.
    #[arg(long, value_name = "CLAUSES")]
    pub require: Option<require::Requirement>,
    /// Write no report unless asked: without it, ferry-lab.html and ferry-lab.json go to the
    /// current directory when --html or --json does not say where.
    #[arg(long)]
    pub no_report: bool,
    /// How often the loops that commit after processing commit (at-least-once offsets,
    /// exactly-once transactions, sink database transactions), as Kafka Streams'
    /// commit.interval.ms.
    #[arg(long, value_name = "MS", default_value_t = 100)]
    pub commit_interval: u64,
    /// The size of every record's value, the same for every row so rows compare.
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub record_bytes: usize,
    /// Baseline (no faults) runs per row; the table shows their median and spread. Default:
    /// 3 thorough, 1 --quick.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub trials: Option<u32>,
    /// Skip the cost curve (throughput and latency by commit interval, no faults).
    #[arg(long)]
    pub no_curve: bool,
}

/// `ferry lab`'s subcommands; without one, the lab runs.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum LabCommand {
    /// Judge a history saved by --histories again and print what the checkers find; exits
    /// non-zero when the row broke its promises.
    Check(recheck::CheckArgs),
}

/// The lab's traces: those of `FERRY_LOG` if set, else errors only. The proxy and librdkafka
/// trace every fault they meet at info and warn level; under a progress bar, with every fault
/// already in the history, those lines are noise.
fn quiet_dispatch() -> &'static tracing::Dispatch {
    static QUIET: std::sync::OnceLock<tracing::Dispatch> = std::sync::OnceLock::new();
    QUIET.get_or_init(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("error"));
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .finish();
        tracing::Dispatch::new(subscriber)
    })
}

/// Runs `f` with the lab's traces on this thread.
pub(crate) fn quietly<R>(f: impl FnOnce() -> R) -> R {
    tracing::dispatcher::with_default(quiet_dispatch(), f)
}

/// Gives this thread the lab's traces for the rest of its life (for runtime worker threads).
pub(crate) fn quiet_this_thread() {
    std::mem::forget(tracing::dispatcher::set_default(quiet_dispatch()));
}

/// Runs the lab and prints the table; the entry point of `ferry lab`.
pub fn run(args: LabArgs) -> Result<()> {
    if let Some(LabCommand::Check(check)) = &args.command {
        return recheck::run(check);
    }
    quietly(|| run_quietly(args))
}

fn run_quietly(args: LabArgs) -> Result<()> {
    validate(&args)?;
    let started = Instant::now();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let seed = args
        .seed
        .unwrap_or(started_unix_ms ^ u64::from(std::process::id()));
    let (mode, mut params) = if args.quick {
        ("quick", Params::quick())
    } else {
        ("thorough", Params::thorough())
    };
    params.commit_interval_ms = args.commit_interval;
    params.payload_bytes = args.record_bytes;
    let trials = args.trials.unwrap_or(if args.quick {
        trials::TRIALS_QUICK
    } else {
        trials::TRIALS_THOROUGH
    });
    let mut profiles = if args.profiles.is_empty() {
        Profile::SELECTABLE.to_vec()
    } else {
        args.profiles.clone()
    };
    // Poison messages are not a fault the rows run under: they have their own table.
    let poison_records = profiles
        .contains(&Profile::PoisonMessages)
        .then_some(if args.quick {
            poison::RECORDS_QUICK
        } else {
            poison::RECORDS_THOROUGH
        });
    profiles.retain(|p| *p != Profile::PoisonMessages);
    // `--profile poison-messages` alone asks for that table only: no rows, no cost curve.
    let only_poison = profiles.is_empty() && poison_records.is_some();
    let intervals_ms: &[u64] = if args.no_curve || only_poison {
        &[]
    } else {
        curve::intervals_ms(args.quick)
    };
    eprintln!("ferry lab: {mode}, seed {seed} (repeat with --seed {seed})");
    let target = match &args.bootstrap {
        None => {
            let exe = std::env::current_exe().context("find the ferry binary to run the broker")?;
            Target::embedded(&exe, args.dir.as_deref())?
        }
        Some(bootstrap) => Target::external(
            bootstrap,
            args.proxy_listen,
            args.replication_factor,
            args.connect.resolve()?,
            args.proxy_upstream.as_deref(),
        )?,
    };
    if let Some(dir) = &args.histories {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    // One PostgreSQL server for every sink-postgres run, if one will run.
    let postgres_runs = (!intervals_ms.is_empty() && !args.quick)
        || profiles
            .iter()
            .any(|&p| sink_profile(p, args.quick) && p.not_applicable(Row::SinkPostgres).is_none());
    let sinks = SinkEnv::new(args.dir.as_deref(), postgres_runs)?;
    let curve_rows = curve::rows(args.quick);
    // The point at the lab's own interval comes from the baseline when it runs.
    let own_point =
        profiles.contains(&Profile::None) && intervals_ms.contains(&args.commit_interval);
    let curve_runs = intervals_ms.len() - usize::from(own_point);
    let curve_points = curve_runs * curve_rows.len();
    let bar = ProgressBar::new(session::Session::runs(&profiles, trials, curve_points));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{bar:24}] {pos}/{len} runs {elapsed:>4} {wide_msg}",
        )
        .expect("a valid progress template")
        .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(120));
    let session = session::Session {
        target: &target,
        sinks: &sinks,
        args: &args,
        seed,
        bar: &bar,
    };
    let results = session.profiles(&profiles, &params, trials);
    let baseline = results.iter().find(|p| p.profile == Profile::None);
    let cost_curve = session.cost_curve(&params, intervals_ms, curve_rows, baseline);
    let poison = poison_records.map(|records| {
        bar.set_message("poison-messages");
        poison::run(&target, seed, records, params.partitions)
    });
    bar.finish_and_clear();
    let summary = results::summarize(&results);
    let recommendation = args
        .require
        .as_ref()
        .map(|requirement| require::recommend(requirement, &results, &summary));
    let lab = LabResults {
        schema: results::SCHEMA_VERSION,
        ferry_version: env!("CARGO_PKG_VERSION").into(),
        build: if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
        .into(),
        seed,
        mode: mode.into(),
        target: target_info(&target, args.bootstrap.is_some()),
        params,
        started_unix_ms,
        elapsed_ms: started.elapsed().as_millis() as u64,
        profiles: results,
        summary,
        cost_curve,
        recommendation,
        poison,
    };
    drop(target);
    drop(sinks);
    if !only_poison {
        print!("{}", report::table::render(&lab));
    }
    if let Some(poison) = &lab.poison {
        print!("{}", poison::render(poison));
    }
    print!("{}", report::recommendation::text(&lab));
    let paths = report::files::paths(args.html.as_deref(), args.json.as_deref(), args.no_report);
    if let Some(path) = &paths.html {
        write_file(path, report::html::render(&lab).as_bytes())?;
        eprintln!("report: {}", path.display());
    }
    if let Some(path) = &paths.json {
        let json = serde_json::to_string_pretty(&lab).context("serialize results")?;
        write_file(path, json.as_bytes())?;
        eprintln!("results: {}", path.display());
    }
    Ok(())
}

/// The table rows one run yields: its own row, and for at-least-once also the idempotent
/// consumer's reading of the same history.
fn run_rows_of(
    target: &Target,
    spec: &RunSpec,
    args: &LabArgs,
    sinks: &SinkEnv,
    progress: &(dyn Fn(&str, u64) + Sync),
    history_tag: Option<&str>,
) -> Vec<RowResult> {
    let rows: Vec<Row> = match spec.row {
        Row::AtLeastOnce => vec![Row::AtLeastOnce, Row::AtLeastOnceIdempotent],
        row => vec![row],
    };
    let unmeasured = |status: Status| {
        rows.iter()
            .map(|&row| RowResult::unmeasured(row, status.clone()))
            .collect::<Vec<_>>()
    };
    if let Some(status) = precondition(target, spec, args.quick, sinks) {
        return unmeasured(status);
    }
    let output = if spec.row.is_sink() {
        sink_run::run(target, spec, sinks, progress)
    } else {
        runner::run(target, spec, progress)
    };
    let output = match output {
        Ok(output) => output,
        Err(error) => {
            tracing::warn!(
                error = format!("{error:#}"),
                topic = spec.topic,
                "run failed"
            );
            return unmeasured(Status::Failed {
                error: format!("{error:#}"),
            });
        }
    };
    let history_file = args.histories.as_ref().and_then(|dir| {
        let tag = history_tag.map_or(String::new(), |tag| format!(".{tag}"));
        let name = format!("{}-{}{tag}.jsonl", spec.profile.name(), spec.row.name());
        let path = dir.join(name);
        match write_history(&path, &output.history) {
            Ok(()) => Some(path.display().to_string()),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "write history");
                None
            }
        }
    });
    rows.iter()
        .map(|&row| measured_row(row, spec, &output, history_file.clone()))
        .collect()
}

/// The profiles the sink rows run under in `--quick` mode (all of them in thorough mode), to
/// keep the quick lab within a minute.
pub const SINK_QUICK_PROFILES: [Profile; 4] = [
    Profile::None,
    Profile::BrokerKill,
    Profile::ConsumerCrash,
    Profile::Rebalance,
];

/// Whether the sink rows run under `profile`.
fn sink_profile(profile: Profile, quick: bool) -> bool {
    !quick || SINK_QUICK_PROFILES.contains(&profile)
}

/// Why a run cannot happen on this target, if it cannot.
fn precondition(target: &Target, spec: &RunSpec, quick: bool, sinks: &SinkEnv) -> Option<Status> {
    let guarantee = spec.row.guarantee();
    if let Some(reason) = spec.profile.not_applicable(spec.row) {
        return Some(Status::NotApplicable {
            reason: reason.into(),
        });
    }
    if spec.row.is_sink() && !sink_profile(spec.profile, quick) {
        return Some(Status::Skipped {
            reason: "--quick runs the sink rows under 4 profiles only".into(),
        });
    }
    if spec.row == Row::SinkPostgres {
        if let Some(reason) = sinks.postgres_unavailable() {
            return Some(Status::Skipped { reason });
        }
    }
    if guarantee == Guarantee::ExactlyOnce {
        if !target.missing_for(Guarantee::ExactlyOnce).is_empty() {
            return Some(Status::NeedsTransactions {
                reason: NEEDS_TRANSACTIONS.into(),
            });
        }
    }
    if spec.profile.needs_broker_process() && !target.controls_broker() {
        return Some(Status::Skipped {
            reason: "needs the lab's own broker to kill (--bootstrap)".into(),
        });
    }
    if spec.profile.uses_proxy() {
        if let Some(reason) = target.proxy_unusable() {
            return Some(Status::Skipped { reason });
        }
    }
    None
}

fn measured_row(
    row: Row,
    spec: &RunSpec,
    output: &RunOutput,
    history_file: Option<String>,
) -> RowResult {
    let history = &output.history;
    let mut result = judge::judge(row, spec.profile, &spec.params, history);
    result.topic = Some(spec.topic.clone());
    result.timeline =
        (row != Row::AtLeastOnceIdempotent).then(|| check::timeline(history, TIMELINE_BUCKET_US));
    if let Some(check) = &output.sink {
        judge::add_violations(&mut result.verdict, check.violations());
        result.sink = Some(check.clone());
    }
    result.notes = output.notes.clone();
    result.elapsed_ms = output.elapsed.as_millis() as u64;
    result.history_file = history_file;
    result
}

fn target_info(target: &Target, bootstrap: bool) -> TargetInfo {
    let apis = target.apis();
    TargetInfo {
        kind: if bootstrap { "bootstrap" } else { "embedded" }.into(),
        broker: target.broker_addr().into(),
        proxy: target.bootstrap(),
        advertised: target.advertised().to_vec(),
        proxy_in_path: target.proxy_in_path(),
        transactions: apis.is_some_and(|a| a.missing_for(Guarantee::ExactlyOnce).is_empty()),
        apis: apis.map_or_else(Vec::new, |a| {
            a.apis.iter().map(|r| (r.api_key, r.min, r.max)).collect()
        }),
    }
}

fn write_history(path: &Path, ops: &[history::Op]) -> Result<()> {
    let file = std::fs::File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    history::write_jsonl(ops, &mut out).with_context(|| format!("write {}", path.display()))?;
    std::io::Write::flush(&mut out).with_context(|| format!("write {}", path.display()))
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("create {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

/// Checks that `--bootstrap`, the proxy's addresses and the client settings make sense
/// together.
pub fn validate(args: &LabArgs) -> Result<()> {
    if args.bootstrap.is_some() {
        return Ok(());
    }
    if args.proxy_listen.port() != 0 {
        bail!(
            "--proxy-listen is for --bootstrap; the lab's own broker advertises its proxy itself"
        );
    }
    if args.proxy_upstream.is_some() {
        bail!("--proxy-upstream is for --bootstrap");
    }
    if !args.connect.settings.is_empty() || args.connect.client_config.is_some() {
        bail!("-X and --client-config are for --bootstrap; the lab's own broker needs none");
    }
    Ok(())
}
