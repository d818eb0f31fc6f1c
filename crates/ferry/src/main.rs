//! The one ferry binary: `ferry serve` (the broker) and, as they land, `chaos`, `lab`, `bench` and
//! the admin commands.

mod admin;
mod data_dir_lock;
mod descriptors;
mod dlq;
mod listeners;
mod retry_worker;
mod serve;
mod settings;
mod users;

use anyhow::Result;
use audit::runner::ConditionsHeld;
use clap::{Parser, Subcommand};

/// Huge allocations (a hostile array count) are mapped lazily instead of aborting the process.
#[global_allocator]
static ALLOCATOR: server::alloc::LazyHugeAlloc = server::alloc::LazyHugeAlloc;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Delivery guarantees, measured: a Kafka-protocol broker, fault proxy and lab"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker: a durable Kafka-protocol log on this machine.
    Serve(serve::ServeArgs),
    /// Consumer group administration against any Kafka-compatible broker.
    Groups {
        #[command(subcommand)]
        command: admin::GroupsCommand,
    },
    /// Transaction administration against any Kafka-compatible broker.
    Transactions {
        #[command(subcommand)]
        command: admin::TransactionsCommand,
    },
    /// Dead-letter topics of the client's retrying consumer: list, show, replay.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// SCRAM users of a stopped broker's data directory: add, delete, list.
    Users {
        #[command(subcommand)]
        command: users::UsersCommand,
    },
    /// A consumer process with a retry policy and a scripted handler, for tests.
    #[command(hide = true)]
    RetryWorker(retry_worker::RetryWorkerArgs),
    /// Run the Kafka-aware fault proxy between clients and a broker.
    Chaos(ChaosArgs),
    /// Run the guarantees lab: each guarantee under each fault profile, measured and checked.
    Lab(lab::LabArgs),
    /// Audit a live cluster continuously: one lane per guarantee, checked for loss,
    /// duplicates, reordering and aborted reads, with latency and produce availability.
    Audit(audit::AuditArgs),
    /// Measure the machine's limits, ferry and installed peers; print a table, write JSON.
    Bench(bench::BenchArgs),
}

#[derive(clap::Args)]
struct ChaosArgs {
    /// Where clients connect.
    #[arg(long)]
    listen: std::net::SocketAddr,
    /// The broker behind the proxy (start it with --advertised-listener set to --listen).
    #[arg(long)]
    upstream: std::net::SocketAddr,
    /// The fault plan, JSON (see crates/chaos/src/plan.rs).
    #[arg(long)]
    plan: std::path::PathBuf,
    /// Append every injected fault as a JSON line to this file.
    #[arg(long)]
    events: Option<std::path::PathBuf>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    init_traces();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            if error.downcast_ref::<ConditionsHeld>().is_some() {
                // A verdict on the audited cluster, not a fault of the program: no backtrace.
                eprintln!("Error: {error}");
            } else {
                eprintln!("Error: {error:?}");
            }
            std::process::ExitCode::from(exit_code(&error))
        }
    }
}

/// The process's exit code for `error`: [`server::EXIT_FATAL`] for a failed clean shutdown (a
/// failed write, as everywhere else in the broker), [`audit::runner::EXIT_CONDITION_HELD`] when
/// a `ferry audit --fail-on` condition held, 1 for anything else (bad settings, a data
/// directory that does not open).
fn exit_code(error: &anyhow::Error) -> u8 {
    if error.downcast_ref::<serve::ShutdownFailed>().is_some() {
        server::EXIT_FATAL
    } else if error.downcast_ref::<ConditionsHeld>().is_some() {
        audit::runner::EXIT_CONDITION_HELD
    } else {
        1
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Groups { command } => admin::run(command),
        Command::Transactions { command } => admin::run_transactions(command),
        Command::Lab(args) => lab::run(args),
        Command::Audit(args) => audit::run(args),
        Command::Dlq { command } => dlq::run(command),
        Command::Users { command } => users::run(command),
        Command::RetryWorker(args) => retry_worker::run(args),
        Command::Chaos(args) => {
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(chaos::run(
                args.listen,
                args.upstream,
                &args.plan,
                args.events.as_deref(),
            ))?;
            Ok(())
        }
    }
}

/// Traces go to stderr, filtered by `FERRY_LOG` (default `info`), as text, or as one JSON object
/// per line with `FERRY_LOG_FORMAT=json` (for log pipelines: `timestamp`, `level`, `target`,
/// `fields` with the message and every field, `spans`).
fn init_traces() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let traces = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match std::env::var("FERRY_LOG_FORMAT").as_deref() {
        Ok("json") => traces.json().init(),
        Ok("text") | Err(_) => traces
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        Ok(other) => {
            traces.init();
            tracing::warn!(
                format = other,
                "FERRY_LOG_FORMAT: expected json or text; using text"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_clean_shutdown_exits_fatal() {
        let close = broker::BrokerError::Meta("close: No space left on device".into());
        let shutdown =
            anyhow::Error::new(serve::ShutdownFailed(server::ServerError::Broker(close)));
        assert_eq!(exit_code(&shutdown), 70);
        // Control: other errors, a data directory that does not open among them, exit 1.
        let open = anyhow::Error::new(broker::BrokerError::Meta("parse meta.json".into()))
            .context("open data directory /data");
        assert_eq!(exit_code(&open), 1);
        assert_eq!(
            exit_code(&anyhow::anyhow!("--set x: expected NAME=VALUE")),
            1
        );
        let held = ConditionsHeld(vec!["loss>0: at-most-once = 3".into()]);
        assert_eq!(exit_code(&anyhow::Error::new(held)), 2);
    }
}
