//! The errors of the storage crate.
//!
//! `Io` and `Corrupt` mean the broker must stop: a failed write or fsync is never retried (the page
//! cache may already have dropped the data, see PostgreSQL's fsyncgate), and corruption of synced
//! data needs an operator, not a silent truncation. The other variants are answers to a caller.

use std::io;
use std::path::PathBuf;

use thiserror::Error;
use wire::batch::BatchError;

#[derive(Debug, Error)]
pub enum LogError {
    /// `op` reads "verb object", e.g. "write segment", "sync directory".
    #[error("{op} {}: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("corrupt log {} at byte {position}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    #[error("offset {offset} is out of range: the log holds [{log_start}, {log_end})")]
    OffsetOutOfRange {
        offset: i64,
        log_start: i64,
        log_end: i64,
    },
    #[error("batch {index} of the append is invalid: {source}")]
    InvalidBatch { index: usize, source: BatchError },
    #[error("append of {bytes} bytes is empty or exceeds the limit of {limit} bytes")]
    AppendSize { bytes: usize, limit: usize },
    #[error("batch {index} of the append is {bytes} bytes, over the limit of {limit}")]
    BatchTooLarge {
        index: usize,
        bytes: usize,
        limit: usize,
    },
    #[error("invalid log config: {0}")]
    Config(String),
}

impl LogError {
    pub(crate) fn io(
        op: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> LogError {
        let path = path.into();
        move |source| LogError::Io { op, path, source }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        position: u64,
        reason: impl Into<String>,
    ) -> LogError {
        LogError::Corrupt {
            path: path.into(),
            position,
            reason: reason.into(),
        }
    }
}
