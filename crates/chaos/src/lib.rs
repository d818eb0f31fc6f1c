//! A Kafka-frame-aware TCP fault proxy: it sits between Kafka clients and any Kafka-compatible
//! broker and drops, delays, duplicates and cuts by API key, direction and probability, seeded.
//!
//! It makes the failures of the delivery-guarantees seed real: a lost produce acknowledgement
//! (the broker wrote the batch, the client never hears), a lost request, a slow network, a
//! retried request arriving twice, a dead connection, a partition.
//!
//! - [`plan`] decides what happens to each frame. It is pure: a seed, rules, and for every frame
//!   the connection number, direction, API key and frame index; no sockets, no clocks.
//! - [`Proxy`] is the tokio shell: it accepts clients, opens one upstream connection per client,
//!   reads whole frames each way and applies the plan's decisions.
//! - Every injected fault becomes a [`FaultEvent`], kept in memory (bounded) and optionally
//!   appended as JSON lines to a file.
//!
//! # Broker addresses: advertise the proxy
//!
//! Kafka clients learn broker addresses from Metadata and FindCoordinator responses and connect
//! to those directly, which would bypass the proxy. The supported set-up, and the one ferry
//! uses, is to start the broker with its **advertised listener set to the proxy's address**
//! (for `ferry serve`, its advertised host and port; for Kafka, `advertised.listeners`). The
//! broker then tells clients to connect to the proxy, and no response needs rewriting. For a
//! cluster, run one proxy per broker and advertise each broker as its own proxy.
//!
//! Rewriting addresses inside Metadata and FindCoordinator responses is a non-goal for now: it
//! needs a full decoder and encoder for every version of both responses (flexible versions,
//! compact strings, tagged fields), which this crate deliberately does without.
//!
//! # Other non-goals
//!
//! - TLS: the proxy reads frames in clear text. Put it in front of a plaintext listener.
//! - SASL with raw (headerless) authentication frames, as after `SaslHandshake` v0: such frames
//!   are forwarded, but their "API key" is garbage, so rules restricted to API keys may miss them.
//!
//! # Reproducibility
//!
//! Connection numbers count from 0 in accept order, frame indexes from 0 per connection and
//! direction. The decision for a frame depends only on the plan and those numbers, so one seed
//! reproduces the same faults for the same traffic. The seed is traced when the proxy starts.

mod connection;
pub mod error;
pub mod events;
pub mod frame;
pub mod in_flight;
pub mod plan;
mod proxy;

use std::net::SocketAddr;
use std::path::Path;

pub use error::ChaosError;
pub use events::FaultEvent;
pub use plan::{Action, Decision, Direction, Fault, FaultRule, Plan, PlanError};
pub use proxy::{
    Limits, Proxy, ProxyConfig, ProxyHandle, CONNECTIONS_MAX_DEFAULT,
    UPSTREAM_CONNECT_TIMEOUT_MS_DEFAULT,
};

/// Reads and checks a JSON plan file (the format of [`Plan::to_json`]).
pub fn load_plan(path: &Path) -> Result<Plan, ChaosError> {
    let text = std::fs::read_to_string(path).map_err(|source| ChaosError::ReadPlan {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(Plan::from_json(&text)?)
}

/// Runs a proxy from `listen` to `upstream` with the plan in `plan_path` until ctrl-c, appending
/// fault events to `events_path` if given. The entry point of `ferry chaos`.
pub async fn run(
    listen: SocketAddr,
    upstream: SocketAddr,
    plan_path: &Path,
    events_path: Option<&Path>,
) -> Result<(), ChaosError> {
    let plan = load_plan(plan_path)?;
    let mut config = ProxyConfig::new(listen, upstream, plan);
    config.events_path = events_path.map(Path::to_path_buf);
    let proxy = Proxy::start_with(config).await?;
    tokio::signal::ctrl_c()
        .await
        .map_err(ChaosError::WaitForSignal)?;
    let events = proxy.events().len() as u64 + proxy.events_forgotten();
    proxy.shutdown().await;
    tracing::info!(events, "chaos proxy stopped by ctrl-c");
    Ok(())
}
