//! `ferry audit`: the lab's checks, run continuously against a live cluster.
//!
//! One lane per guarantee ([`stamp::Lane`]), each on its own topic, produces stamped records at
//! a steady rate and consumes them back; each lane's [`lane::LaneState`] judges them as they
//! come (lost, duplicated, reordered, aborted reads, latency, produce availability) over
//! sliding windows ([`window`]). The pure core (stamp, lane, window, conditions) reads no clock
//! and does no I/O; [`runner`] is the shell (librdkafka clients through the `client` crate, the
//! `/metrics` endpoint, the terminal view).
//!
//! Errors in the shell are `anyhow`, as in the lab: it is one of the binary's commands and its
//! errors are reported to the person running it.

pub mod condition;
pub mod lane;
pub mod metrics;
pub mod runner;
pub mod stamp;
pub mod view;
pub mod window;

pub use runner::{run, AuditArgs};
