//! Topic creation as the tools need it (the lab, the auditor, the bench, the examples): create
//! what is missing, and take a topic that exists already as created.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use crate::{ClientError, Settings};

/// Creates each `(name, partitions)` topic with one replica; one that exists already is left as
/// it is. `timeout` bounds the broker's work on the request.
pub async fn create_topics(
    settings: &Settings,
    topics: &[(&str, i32)],
    timeout: Duration,
) -> Result<(), ClientError> {
    let admin: AdminClient<DefaultClientContext> = settings
        .base_config()
        .create()
        .map_err(ClientError::kafka("create the admin client"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(timeout));
    let results = admin
        .create_topics(&new, &options)
        .await
        .map_err(ClientError::kafka("create topics"))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(ClientError::CreateTopic { topic, code }),
        }
    }
    Ok(())
}
