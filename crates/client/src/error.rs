//! The client's typed errors. Per-record delivery outcomes are not errors: they are
//! [`crate::producer::Delivery`] values handed to the caller's callback.

use rdkafka::error::KafkaError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("setting {0} is required")]
    MissingSetting(&'static str),
    /// librdkafka refused or failed an operation; `action` reads "verb object".
    #[error("{action}: {source}")]
    Kafka {
        action: &'static str,
        #[source]
        source: KafkaError,
    },
    /// The broker does not advertise the APIs transactions need.
    #[error("the broker does not support transactions (missing API keys {missing:?})")]
    TransactionsUnsupported { missing: Vec<i16> },
    #[error("topic {0} not found")]
    UnknownTopic(String),
    #[error("create topic {topic}: {code}")]
    CreateTopic {
        topic: String,
        code: rdkafka::types::RDKafkaErrorCode,
    },
    #[error("probe {addr}: {source}")]
    ProbeIo {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("client config {}: {reason}", path.display())]
    ClientConfig {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("probe {addr}: {reason}")]
    ProbeDecode { addr: String, reason: String },
}

impl ClientError {
    pub(crate) fn kafka(action: &'static str) -> impl FnOnce(KafkaError) -> ClientError {
        move |source| ClientError::Kafka { action, source }
    }
}
