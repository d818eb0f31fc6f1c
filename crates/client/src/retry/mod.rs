//! At-least-once that survives poison records: a [`RetryPolicy`] for consumer handlers
//! (attempts, exponential backoff with jitter, transient or permanent failures), applied in
//! place ([`Mode::Blocking`]) or through delay topics `T.retry.<delay>` ([`Mode::NonBlocking`]),
//! and a dead-letter topic `T.dlq` for what keeps failing, whose records carry their origin in
//! `ferry.*` headers ([`headers`], format in `docs/dead-letters.md`).
//!
//! `policy` and `headers` are pure logic; `consumer` is the librdkafka shell
//! ([`RetryingConsumer`]) that moves a failed record and commits its offset in the order the
//! guarantee needs: one transaction under exactly-once, produce-acknowledged-then-commit under
//! at-least-once; `replay` reads a dead-letter topic and puts its records back.

pub mod consumer;
pub mod headers;
pub mod policy;
pub mod replay;

pub use consumer::{source_topics, topics_needed, Mode, RetryError, RetryStep, RetryingConsumer};
pub use policy::{retry_in_place, Decision, Failure, InPlace, RetryPolicy, Sleeper, ThreadSleeper};
