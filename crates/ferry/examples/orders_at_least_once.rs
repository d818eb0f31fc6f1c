//! Orders, at-least-once, with an idempotent consumer and dead letters: every order's mail is
//! sent once, even when the mail server fails now and then and some orders cannot be mailed at
//! all until a fix is deployed.
//!
//! - The producer sends with `acks=all` and retries until acknowledged: no order is lost.
//! - The consumer is a `RetryingConsumer`: a transient failure (the mail server is busy) is
//!   retried through the retry topics `orders-….retry.100ms` and `….retry.200ms` while the
//!   partition moves on; a permanent one (an order without an address) goes to `orders-….dlq`
//!   with its origin and error in headers. A move is acknowledged before its offset is
//!   committed, so nothing is lost between topics.
//! - `dedup::Idempotent`, keyed on the order id, makes redeliveries harmless.
//! - After the fix, the dead-letter topic is replayed (`client::retry::replay`, what
//!   `ferry dlq replay` runs) and the parked orders are mailed.
//!
//! ```text
//! ferry serve &
//! cargo run --example orders_at_least_once [-- HOST:PORT]
//! ```
//!
//! Exits 0 when every order was mailed exactly once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use client::dedup::{Idempotent, MemoryDedupStore, MessageId};
use client::retry::replay::{read_all, replay, Filter};
use client::retry::{topics_needed, Failure, Mode, RetryPolicy, RetryStep, RetryingConsumer};
use client::{Delivery, DeliveryHandler, Guarantee, Producer, Record, Settings};

const ORDERS: u64 = 1_000;
/// How long each phase may take.
const DEADLINE: Duration = Duration::from_secs(60);

/// Remembers orders the broker did not acknowledge (none should be).
#[derive(Clone, Default)]
struct Unacknowledged(std::sync::Arc<std::sync::Mutex<Vec<usize>>>);

impl DeliveryHandler for Unacknowledged {
    fn delivered(&self, tag: usize, delivery: Delivery) {
        if !matches!(delivery, Delivery::Persisted { .. }) {
            self.0.lock().expect("lock").push(tag);
        }
    }
}

/// The mail service: every 50th order meets a busy server on its first attempt; every 400th has
/// no address until the fix.
struct Mailer {
    fixed: bool,
    sent: BTreeMap<u64, u32>,
}

impl Mailer {
    fn mail(&mut self, record: &Record, attempt: u32) -> Result<(), Failure> {
        let id: u64 = std::str::from_utf8(record.key.as_deref().unwrap_or_default())
            .ok()
            .and_then(|k| k.strip_prefix("order-")?.parse().ok())
            .ok_or_else(|| Failure::permanent("not an order key"))?;
        if id % 400 == 7 && !self.fixed {
            return Err(Failure::permanent("order has no address"));
        }
        if id % 50 == 3 && attempt < 2 {
            return Err(Failure::transient("mail server busy"));
        }
        *self.sent.entry(id).or_default() += 1;
        Ok(())
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let bootstrap = common::bootstrap();
    let topic = common::fresh("orders");
    let backoff = Duration::from_millis(100);
    let policy = RetryPolicy::new(3, backoff, backoff * 8).jitter(0.2);
    common::create_topics(
        &bootstrap,
        &topics_needed(&topic, Mode::NonBlocking, &policy),
        3,
    )?;
    let settings = Settings::new(&bootstrap).group_id(format!("{topic}-mailer"));

    let unacknowledged = Unacknowledged::default();
    let producer = Producer::new(Guarantee::AtLeastOnce, &settings, unacknowledged.clone())?;
    for id in 0..ORDERS {
        let key = format!("order-{id}");
        let order = format!(r#"{{"order":{id},"event":"shipped"}}"#);
        producer.send(&topic, None, key.as_bytes(), order.as_bytes(), id as usize)?;
    }
    producer.flush(Duration::from_secs(30))?;
    let unacknowledged = unacknowledged.0.lock().expect("lock").len();
    if unacknowledged > 0 {
        return Err(format!("{unacknowledged} orders were not acknowledged").into());
    }

    let mut consumer = RetryingConsumer::new(
        Guarantee::AtLeastOnce,
        &settings,
        &topic,
        Mode::NonBlocking,
        policy,
        1,
    )?;
    consumer.subscribe()?;
    let mut mailer = Idempotent::new(MemoryDedupStore::default(), MessageId::Key);
    let mut service = Mailer {
        fixed: false,
        sent: BTreeMap::new(),
    };
    // Until every order is mailed or parked.
    let mut dead_lettered = 0;
    consume(&mut consumer, &mut mailer, &mut service, |service, step| {
        dead_lettered += step.dead_lettered;
        service.sent.len() + dead_lettered >= ORDERS as usize
    })?;
    let dlq = client::retry::headers::dlq_topic(&topic);
    let cluster = Settings::new(&bootstrap);
    let parked = read_all(&cluster, &dlq)?;
    println!(
        "orders: {} of {ORDERS} mailed, {} parked in {dlq}",
        service.sent.len(),
        parked.len()
    );

    service.fixed = true;
    let replayed = replay(
        &cluster,
        &dlq,
        &format!("{topic}-replay"),
        &Filter::default(),
    )?;
    consume(&mut consumer, &mut mailer, &mut service, |service, _| {
        service.sent.len() >= ORDERS as usize
    })?;
    let twice = service.sent.values().filter(|n| **n > 1).count();
    println!(
        "after the fix: {} replayed, {} of {ORDERS} mailed, {twice} mailed twice",
        replayed.replayed,
        service.sent.len()
    );
    if service.sent.len() as u64 != ORDERS || twice > 0 {
        return Err("at-least-once with an idempotent consumer broken".into());
    }
    println!("at-least-once held: every order mailed once");
    Ok(())
}

/// Steps until `done` says so (or the deadline passes).
fn consume(
    consumer: &mut RetryingConsumer,
    mailer: &mut Idempotent<MemoryDedupStore>,
    service: &mut Mailer,
    mut done: impl FnMut(&Mailer, &RetryStep) -> bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let deadline = Instant::now() + DEADLINE;
    while Instant::now() < deadline {
        let step = consumer.step(Duration::from_millis(100), |record, attempt| {
            mailer
                .apply(record, |order| service.mail(order, attempt))
                .map(|_| ())
        });
        match step {
            Ok(step) if done(service, &step) => return Ok(()),
            Ok(_) => {}
            // The records come again at the next step.
            Err(error) => eprintln!("orders: {error}"),
        }
    }
    Err("orders: the consumer did not finish in time".into())
}
