//! What the examples share: where the broker is, fresh topic names, topic creation.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// The broker: `FERRY_BOOTSTRAP`, else the first argument, else `ferry serve`'s default.
pub fn bootstrap() -> String {
    std::env::var("FERRY_BOOTSTRAP")
        .ok()
        .or_else(|| std::env::args().nth(1))
        .unwrap_or_else(|| "127.0.0.1:9092".into())
}

/// `name` with this run's number, so every run starts from empty topics and its counts are
/// exact.
pub fn fresh(name: &str) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    format!("{name}-{now_ms}")
}

/// Creates `topics` with `partitions` partitions each (one that exists already is fine).
pub fn create_topics(
    bootstrap: &str,
    topics: &[String],
    partitions: i32,
) -> Result<(), Box<dyn std::error::Error>> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in futures::executor::block_on(admin.create_topics(&new, &options))? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(format!("create topic {topic}: {code}").into()),
        }
    }
    Ok(())
}
