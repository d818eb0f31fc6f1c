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
    /// librdkafka reported an error instead of records (the client's error names the action).
    #[error(transparent)]
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
    /// Claiming assigned partitions failed (in the rebalance callback or the retry before a
    /// poll); until a claim succeeds none of their records is applied, and every step tries
    /// again.
    #[error("claim assigned partitions: {0}")]
    Claim(DbError),
    /// The handler failed; its writes were rolled back.
    #[error("handler failed")]
    Handler(E),
}

impl SinkError {
    /// The same error in a step whose handler fails with `E` (a poll never runs the handler).
    pub fn widen<E>(self) -> SinkError<E> {
        match self {
            SinkError::Poll(e) => SinkError::Poll(e),
            SinkError::Consumer(e) => SinkError::Consumer(e),
            SinkError::Db(e) => SinkError::Db(e),
            SinkError::Fenced {
                topic,
                partition,
                epoch,
            } => SinkError::Fenced {
                topic,
                partition,
                epoch,
            },
            SinkError::Claim(e) => SinkError::Claim(e),
            SinkError::Handler(never) => match never {},
        }
    }
}

impl<E> SinkError<E> {
    /// librdkafka lost its connections to the brokers (a broker restart, a network fault).
    /// It reconnects by itself and the step committed nothing, so the loop just goes on.
    pub fn is_broker_unreachable(&self) -> bool {
        use rdkafka::error::{KafkaError, RDKafkaErrorCode};
        matches!(
            self,
            SinkError::Poll(ClientError::Kafka {
                source: KafkaError::MessageConsumption(
                    RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
                ),
                ..
            })
        )
    }
}
