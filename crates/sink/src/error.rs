//! The sink's typed errors.

use client::ClientError;

/// A database failed; `action` reads "verb object".
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("{action}: {source}")]
    Sqlite {
        action: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("{action}: {source}")]
    Postgres {
        action: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("{action}: {source}")]
    Io {
        action: &'static str,
        #[source]
        source: std::io::Error,
    },
}

impl DbError {
    pub(crate) fn sqlite(action: &'static str) -> impl FnOnce(rusqlite::Error) -> DbError {
        move |source| DbError::Sqlite { action, source }
    }

    pub(crate) fn postgres(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> DbError {
        move |source| DbError::Postgres { action, source }
    }
}

/// Why a sink step applied nothing. In every case the transaction was rolled back and the
/// batch's partitions that this consumer still owns are read again.
#[derive(Debug, thiserror::Error)]
pub enum SinkError<E = std::convert::Infallible> {
    #[error("poll records: {0}")]
    Poll(ClientError),
    #[error("create consumer: {0}")]
    Consumer(ClientError),
    #[error(transparent)]
    Db(DbError),
    /// Another consumer claimed the partition after this one did (a newer epoch is in the
    /// database): this consumer lost it, and its transaction left no trace.
    #[error("fenced: {topic}/{partition} was claimed by a newer consumer (ours is epoch {epoch})")]
    Fenced {
        topic: String,
        partition: i32,
        epoch: i64,
    },
    /// Claiming assigned partitions failed in the rebalance callback; until the next
    /// assignment this consumer owns none of them.
    #[error("claim assigned partitions: {0}")]
    Claim(DbError),
    /// The handler failed; its writes were rolled back.
    #[error("handler failed")]
    Handler(E),
}
