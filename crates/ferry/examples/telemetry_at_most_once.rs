//! Telemetry, at-most-once: CPU readings where a lost point does not change the trend, so the
//! producer sends with `acks=0` and no retries, and the consumer commits before it processes.
//! The promise: no reading is processed twice. Some may be lost; the example counts them.
//!
//! ```text
//! ferry serve &                       # or any Kafka cluster
//! cargo run --example telemetry_at_most_once [-- HOST:PORT]
//! ```
//!
//! Exits 0 when the promise held.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::{Consumer, Delivery, DeliveryHandler, Guarantee, NoObserver, Producer, Settings};

const READINGS: usize = 5_000;
/// How long the consumer waits for readings after the last one came.
const QUIET: Duration = Duration::from_secs(3);

/// Delivery reports under acks=0 say only that a reading left the socket; nothing to do.
struct FireAndForget;

impl DeliveryHandler for FireAndForget {
    fn delivered(&self, _tag: usize, _delivery: Delivery) {}
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = common::bootstrap();
    let topic = common::fresh("telemetry");
    common::create_topics(&bootstrap, std::slice::from_ref(&topic), 3)?;
    let settings = Settings::new(&bootstrap).group_id(format!("{topic}-dashboard"));

    // Subscribe first: an at-most-once consumer that joins late starts at the end it finds.
    let mut consumer = Consumer::new(Guarantee::AtMostOnce, &settings)?;
    consumer.subscribe(&[&topic])?;
    consumer.step(Duration::from_secs(3), &mut NoObserver, |_| {
        Ok::<(), String>(())
    })?;

    let producer = Producer::new(Guarantee::AtMostOnce, &settings, FireAndForget)?;
    for n in 0..READINGS {
        let reading = format!(r#"{{"host":"web-{}","cpu":{}}}"#, n % 8, n % 100);
        while let Err(error) = producer.send(&topic, None, &n.to_le_bytes(), reading.as_bytes(), n)
        {
            if !error.is_queue_full() {
                return Err(error.into());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    producer.flush(Duration::from_secs(10))?;

    let mut seen: BTreeMap<usize, u32> = BTreeMap::new();
    let mut last = Instant::now();
    while last.elapsed() < QUIET && seen.len() < READINGS {
        let step = consumer.step(Duration::from_millis(100), &mut NoObserver, |record| {
            let key: [u8; 8] = record
                .key
                .as_deref()
                .unwrap_or_default()
                .try_into()
                .map_err(|_| "key")?;
            *seen.entry(usize::from_le_bytes(key)).or_default() += 1;
            Ok::<(), &str>(())
        })?;
        if step.polled > 0 {
            last = Instant::now();
        }
    }
    let duplicated = seen.values().filter(|n| **n > 1).count();
    let lost = READINGS - seen.len();
    println!(
        "telemetry: {} of {READINGS} readings processed, {lost} lost (allowed), {duplicated} \
         processed twice",
        seen.len()
    );
    if duplicated > 0 || seen.is_empty() {
        return Err("at-most-once broken: a reading was processed twice (or none arrived)".into());
    }
    println!("at-most-once held");
    Ok(())
}
