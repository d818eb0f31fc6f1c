//! The errors the chaos library returns to its caller (the CLI, the lab, tests).
//!
//! Faults on a single proxied connection are not errors here: they are traced and end that
//! connection, as the proxy's clients would see from a real network.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::plan::PlanError;

#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("check plan")]
    Plan(#[from] PlanError),
    #[error("read plan {path}")]
    ReadPlan {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("open fault event file {path}")]
    OpenEvents {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bind proxy listener {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("wait for ctrl-c")]
    WaitForSignal(#[source] io::Error),
}
