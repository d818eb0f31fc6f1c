//! The one ferry binary: `ferry serve` (the broker) and, as they land, `chaos`, `lab`, `bench` and
//! the admin commands.

mod serve;
mod settings;

use anyhow::Result;
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
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    init_traces();
    match cli.command {
        Command::Serve(args) => serve::run(args),
    }
}

fn init_traces() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
