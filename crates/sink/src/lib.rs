//! Exactly-once sinks: Kafka records into a database, each record's effect applied once.
//!
//! The handler gets a batch of records and an open database transaction; the sink writes the
//! consumed positions (the next offset of each partition) into the same transaction and commits
//! once, so the effects and the positions become durable together or not at all. On start and
//! on every partition assignment the consumer seeks to the positions in the database; the
//! broker's committed offsets are never read.
//!
//! ```text
//! assign ─ claim (epoch + 1, read position) ─ seek ─┐
//!            ┌──────────────────────────────────────┘
//!            └ poll ─ BEGIN ─ fence + position ─ handler ─ COMMIT ─ poll ─ …
//! ```
//!
//! A consumer that lost a partition cannot commit it: every commit updates the position `WHERE
//! epoch = <the epoch this consumer claimed>`, inside the transaction, so a zombie's write is
//! rolled back whole ([`SinkError::Fenced`]). The tables are drawn in `docs/sink-format.md`.
//!
//! The storage-neutral part ([`plan`]: claims, which records a batch may apply, the positions it
//! writes) is apart from the two back ends behind [`Backend`]: [`sqlite::SqliteBackend`]
//! (`rusqlite`) and [`postgres::PostgresBackend`] (`tokio-postgres`). [`Backend::inbox_first`]
//! is the inbox helper for at-least-once users who deduplicate by message id instead.

pub mod backend;
pub mod error;
pub mod local_postgres;
pub mod plan;
pub mod postgres;
pub mod sink;
pub mod sqlite;

pub use backend::{Backend, Claim, Fence, TransactError};
pub use error::{DbError, SinkError};
pub use sink::{Polled, Sink, SinkStep};
