//! Kafka's classic consumer group coordinator as pure logic: decoded requests and the time go in,
//! responses and records to persist come out.
//!
//! The broker owns sockets, files and clocks; [`GroupCoordinator`] owns group membership
//! (JoinGroup / SyncGroup / Heartbeat / LeaveGroup barriers and timeouts) and committed offsets.
//! The shape follows quinn-proto: every `handle_*(now_ms, ctx, request)` returns an [`Output`],
//! [`GroupCoordinator::tick`] fires the timeouts that are due, and
//! [`GroupCoordinator::next_deadline_ms`] says when to tick next.
//!
//! JoinGroup and SyncGroup are barriers, so a response can be ready long after its request: each
//! request carries an opaque [`ResponseToken`] chosen by the caller, and an [`Output`] lists
//! `(token, response)` pairs that may answer requests of other members or of earlier calls.
//!
//! Durability is the broker's job. An [`Output`] also lists [`Record`]s for the group log
//! (offset commits, group metadata, tombstones); the broker appends them in order and makes them
//! durable **before** it sends any response of the same output. On start-up the broker feeds the
//! log back through [`GroupCoordinator::replay`]. `docs/group-log-format.md` draws the records byte by byte.
//! The coordinator applies a commit to its own state at once, so an OffsetFetch may see an
//! offset whose commit is not durable yet; a failed fsync stops the broker, and the restarted
//! broker does not have it either.
//!
//! `now_ms` is any monotonic millisecond clock (it must never go back); the coordinator only
//! compares and adds to it.
//!
//! Architecture Invariant: this crate knows nothing about sockets, files, clocks or topics; it
//! never decodes member metadata or assignments, which are opaque bytes to a broker.

mod api;
mod config;
mod coordinator;
mod group;
mod ids;
mod record;
mod refusal;

pub use api::{EncodeError, Output, Request, RequestContext, Response, ResponseToken};
pub use config::{
    GroupConfig, GROUP_INITIAL_REBALANCE_DELAY_MS_DEFAULT, GROUP_MAX_SESSION_TIMEOUT_MS_DEFAULT,
    GROUP_MAX_SIZE_DEFAULT, GROUP_MIN_SESSION_TIMEOUT_MS_DEFAULT, NEW_MEMBER_JOIN_TIMEOUT_MS,
    OFFSETS_RETENTION_CHECK_INTERVAL_MS_DEFAULT, OFFSETS_RETENTION_MS_DEFAULT,
    OFFSET_METADATA_MAX_BYTES_DEFAULT,
};
pub use coordinator::{
    GroupCoordinator, GroupDescription, GroupOverview, MemberDescription, TopicPartitionOffset,
};
pub use group::GroupState;
pub use record::{
    compact, CommittedOffset, DecodedRecord, GroupValue, MemberValue, Record, RecordError,
    RecordKey,
};
pub use refusal::{described_error, refusal};
