//! ferry's guarantee-first Kafka client, on librdkafka (the `rdkafka` crate).
//!
//! ## Start from the examples
//!
//! Three programs, one per guarantee, in `crates/ferry/examples/`, runnable against
//! `ferry serve` (or any Kafka cluster, `FERRY_BOOTSTRAP=HOST:PORT`) with
//! `cargo run --example NAME`; each exits 0 when its guarantee's promise held, and the test
//! suite runs them:
//!
//! - `telemetry_at_most_once`: [`Producer`] and [`Consumer`] under [`Guarantee::AtMostOnce`]:
//!   nothing processed twice, a lost reading allowed.
//! - `orders_at_least_once`: a [`retry::RetryingConsumer`] retrying failed mails through retry
//!   topics, a [`dedup::Idempotent`] mailer, dead letters replayed after the fix
//!   ([`retry::replay`]): every order mailed once.
//! - `ledger_exactly_once`: a [`transactional::TxnProducer`] and the `sink` crate's `Sink` into
//!   PostgreSQL: every transfer applied once, the ledger balances.
//!
//! ## The guarantees
//!
//! Pick a [`Guarantee`]; get the producer settings and the consumer loop that deliver it:
//!
//! | guarantee | producer | consumer |
//! |---|---|---|
//! | [`Guarantee::AtMostOnce`] | `acks=0`, no retries ([`Producer`]) | commit, then process ([`Consumer::step`]) |
//! | [`Guarantee::AtLeastOnce`] | `acks=all`, retries, no idempotence | process, then commit every [`CommitPolicy`] interval; make it idempotent with [`dedup::Idempotent`] |
//! | [`Guarantee::ExactlyOnce`] | idempotent + transactional ([`transactional::TxnProducer`]), committed every [`CommitPolicy`] interval | read_committed, offsets in the transaction ([`transactional::Transactional`]) |
//!
//! ```no_run
//! use client::{Consumer, Guarantee, NoObserver, Settings};
//! use client::dedup::{Idempotent, MemoryDedupStore, MessageId};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let settings = Settings::new("127.0.0.1:9092").group_id("orders-mailer");
//! let mut consumer = Consumer::new(Guarantee::AtLeastOnce, &settings)?;
//! consumer.subscribe(&["orders"])?;
//! let mut mailer = Idempotent::new(MemoryDedupStore::default(), MessageId::Key);
//! loop {
//!     consumer.step(std::time::Duration::from_millis(100), &mut NoObserver, |record| {
//!         mailer.apply(record, |order| send_mail(order)).map(|_| ())
//!     })?;
//! }
//! # }
//! # fn send_mail(_: &client::Record) -> Result<(), std::io::Error> { Ok(()) }
//! ```
//!
//! A handler that fails gets a [`RetryPolicy`] ([`retry`]): retried in place or through retry
//! topics, then parked in a dead-letter topic with its origin in headers, moved and committed in
//! the order the guarantee needs (`docs/dead-letters.md`).
//!
//! [`probe::api_versions`] tells whether a broker has what a guarantee needs (exactly-once needs
//! the transaction APIs) before librdkafka fails on it.

pub mod admin;
pub mod commit;
pub mod connect;
pub mod consumer;
pub mod dedup;
pub mod error;
pub mod guarantee;
pub mod probe;
pub mod producer;
pub mod retry;
pub mod settings;
pub mod transactional;

pub use commit::CommitPolicy;
pub use consumer::{Consumer, NoObserver, Observer, Record, Step, StepError};
pub use error::ClientError;
pub use guarantee::{CommitPoint, Guarantee};
pub use producer::{Delivery, DeliveryHandler, Producer, SendError};
pub use retry::{Failure, RetryPolicy, RetryingConsumer};
pub use settings::Settings;
