//! Kafka's transaction coordinator as pure logic: decoded requests and the time go in;
//! responses, records to persist and transaction-marker actions come out.
//!
//! The broker owns sockets, files, clocks and partitions; [`TxnCoordinator`] owns the metadata
//! of every transactional id (producer id and epoch, state, partitions and consumer groups of the
//! transaction in flight, offsets staged by TxnOffsetCommit) and the state machine
//! Empty → Ongoing → PrepareCommit / PrepareAbort → CompleteCommit / CompleteAbort. The shape is
//! the group coordinator's (`crates/group`): every `handle_*(now_ms, ctx, request)` returns an
//! [`Output`], [`TxnCoordinator::tick`] aborts timed-out transactions and expires idle
//! transactional ids, and [`TxnCoordinator::next_deadline_ms`] says when to tick next.
//!
//! Markers: ending a transaction (EndTxn, a fence by InitProducerId, a timeout) returns a
//! [`MarkerRequest`] in the output: the broker appends the COMMIT / ABORT control batches to the
//! partitions, commits or drops the group offsets, makes all of it durable and then calls
//! [`TxnCoordinator::markers_written`], which moves the transaction to CompleteCommit /
//! CompleteAbort. As in Kafka, EndTxn is answered once its PrepareCommit / PrepareAbort record is
//! durable, before the markers; until they are written, the producer's next requests get
//! CONCURRENT_TRANSACTIONS and it retries.
//!
//! Durability is the broker's job. Each [`Output`] lists [`Record`]s for the transaction log;
//! the broker appends them in order and makes them (and all earlier ones) durable **before** it
//! sends any response or carries out any marker of the same output. On start-up the broker feeds
//! the log back through [`TxnCoordinator::replay`] and then calls [`TxnCoordinator::recover`],
//! whose output resumes the markers of every transaction left in PrepareCommit / PrepareAbort:
//! after a crash each transaction ends committed or aborted, never half. `docs/transaction-log-format.md` draws the
//! records byte by byte.
//!
//! `now_ms` is any monotonic millisecond clock (it must never go back); records keep it as
//! Kafka keeps wall-clock timestamps, so the broker's clock should be wall time clamped to never
//! go back, as for the group coordinator.
//!
//! Architecture Invariant: this crate knows nothing about sockets, files, clocks or partition
//! logs; it never writes a marker itself and never decodes a record batch.

mod admin;
mod api;
mod config;
mod coordinator;
mod handlers;
mod record;
mod refusal;
mod state;

pub use admin::GROUP_LOG_TOPIC;
pub use api::{
    EncodeError, GroupMember, GroupOffsets, MarkerRequest, MemberCheck, Output, PartitionCheck,
    ProducerIdSource, Request, RequestContext, Response, ResponseToken, TxnOffset,
};
pub use config::{
    TxnConfig, OFFSET_METADATA_MAX_BYTES_DEFAULT, TRANSACTIONAL_IDS_MAX_DEFAULT,
    TRANSACTIONAL_ID_EXPIRATION_MS_DEFAULT,
    TRANSACTION_ABORT_TIMED_OUT_TRANSACTION_CLEANUP_INTERVAL_MS_DEFAULT,
    TRANSACTION_MAX_TIMEOUT_MS_DEFAULT, TRANSACTION_OFFSETS_MAX_DEFAULT,
    TRANSACTION_PARTITIONS_MAX_DEFAULT,
    TRANSACTION_REMOVE_EXPIRED_TRANSACTION_CLEANUP_INTERVAL_MS_DEFAULT,
};
pub use coordinator::{TransactionDescription, TxnCoordinator, TxnCounters};
pub use record::{
    compact, DecodedRecord, Record, RecordError, StagedOffset, TopicPartition, TxnValue,
};
pub use refusal::refusal;
pub use state::TxnState;
