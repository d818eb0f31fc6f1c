//! `BrokerError`: what stops the broker. Kafka error codes are response data and never appear
//! here; this is only for a failed write or fsync, corruption in synced data and unreadable
//! metadata, after which restarting is the repair (recovery re-derives the truth from disk).

use std::path::{Path, PathBuf};

use storage::LogError;
use thiserror::Error;

/// Errors that stop the broker: a failed write or fsync, corruption in synced data, unreadable
/// metadata. Restarting is the repair; recovery re-derives the truth from disk.
#[derive(Debug, Error)]
pub enum BrokerError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("partition {topic}-{partition}: {source}")]
    Log {
        topic: String,
        partition: i32,
        source: LogError,
    },
    #[error("metadata: {0}")]
    Meta(String),
    /// The group commit's write-ahead log could not be read, replayed or reset.
    #[error("write-ahead log: {0}")]
    Wal(LogError),
    /// The credential store could not be read (damaged, named) or written.
    #[error("credential store: {0}")]
    Users(#[from] crate::users::UsersError),
    /// The data directory holds more partitions than `max.partitions` allows (by default what
    /// the file descriptor limit leaves room for): serving them would run out of descriptors.
    #[error(
        "the data directory holds {held} partitions, more than max.partitions ({max}); raise the \
         file descriptor limit (ulimit -n) or max.partitions"
    )]
    TooManyPartitions { held: usize, max: usize },
    /// `acls.json` cannot be read back as the ACLs it was written with: starting with fewer
    /// ACLs (a lost DENY) could let in whom they kept out.
    #[error(
        "ACL file {} is damaged: {reason}; refusing to start: restore it, or move it away to \
         start with no ACLs",
        path.display()
    )]
    AclFile { path: PathBuf, reason: String },
    /// The partition directories and `meta.json` differ (see `reconcile.rs`): the broker
    /// refuses to start rather than guess which one is right.
    #[error(
        "data directory {} does not match its meta.json: {differences}; refusing to start rather \
         than guess: restore meta.json or the directories, or move what does not belong out of \
         the data directory",
        data_dir.display()
    )]
    DataDirMismatch {
        data_dir: PathBuf,
        differences: crate::reconcile::DirDifferences,
    },
}

impl BrokerError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> BrokerError {
        BrokerError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }

    /// A partition log's error, named by its topic and partition.
    pub(crate) fn log(topic: &str, partition: i32, source: LogError) -> BrokerError {
        BrokerError::Log {
            topic: topic.to_string(),
            partition,
            source,
        }
    }
}
