//! ferry's metrics, in the Prometheus text format, served on `metrics.listen`:
//!
//! - [`ServerMetrics`]: what the network shell measures as requests pass (requests and errors by
//!   API, latency by API and by stage, the group commit's writes and fsyncs, connections, bytes
//!   fetched), kept in `prometheus` counters and histograms that the request path updates;
//! - [`broker_families`]: the broker's state (partition offsets and sizes, idempotence,
//!   transactions, groups and their lag), read from a [`broker::Stats`] snapshot taken when
//!   `/metrics` is scraped, so nothing on the request path pays for it;
//! - [`http`]: the `/metrics`, `/healthz` and `/readyz` endpoint.
//!
//! Names follow Prometheus conventions: `ferry_` first, the unit in the name (`_seconds`,
//! `_bytes`), `_total` for counters. The list is in `docs/metrics.md`.

mod families;
pub mod http;
mod server;
mod stats;

pub use families::{error_name, Families};
pub use http::Endpoint;
pub use server::{CloseReason, ServerMetrics, Stage};
pub use stats::broker_families;
