//! What the examples share: where the broker is, fresh topic names, topic creation.

use std::time::Duration;

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
    let topics: Vec<(&str, i32)> = topics.iter().map(|t| (t.as_str(), partitions)).collect();
    let settings = client::Settings::new(bootstrap);
    let created = client::admin::create_topics(&settings, &topics, Duration::from_secs(10));
    Ok(futures::executor::block_on(created)?)
}
