//! The narrow interface a database offers the sink: create the tables, claim partitions,
//! run one fenced transaction, and the inbox helper. Two implementations: SQLite and PostgreSQL.

use crate::error::DbError;

/// The tables' names, shared by both back ends (drawn in `docs/sink-format.md`).
pub const POSITIONS_TABLE: &str = "ferry_sink_positions";
pub const INBOX_TABLE: &str = "ferry_sink_inbox";

/// A partition claimed for this consumer: the epoch it must commit under, and where to read
/// from (`None`: no position yet, so from the beginning of the partition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub topic: String,
    pub partition: i32,
    pub epoch: i64,
    pub next_offset: Option<i64>,
}

/// One position a commit writes, under the epoch that must still be the partition's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    pub topic: String,
    pub partition: i32,
    pub epoch: i64,
    pub next_offset: i64,
}

/// Why [`Backend::transact`] committed nothing.
#[derive(Debug, thiserror::Error)]
pub enum TransactError<E> {
    #[error("fenced: {topic}/{partition} epoch {epoch} is no longer the partition's")]
    Fenced {
        topic: String,
        partition: i32,
        epoch: i64,
    },
    #[error(transparent)]
    Db(DbError),
    #[error("handler failed")]
    Handler(E),
}

pub trait Backend: Send + 'static {
    /// The open transaction the handler writes its effects in.
    type Tx<'a>
    where
        Self: 'a;

    /// Creates the sink's tables if they are missing.
    fn prepare(&mut self) -> Result<(), DbError>;

    /// In one transaction, bumps the epoch of each partition of `group` (creating its row at
    /// epoch 1) and reads its position. Every earlier claimant is fenced from then on.
    fn claim(&mut self, group: &str, partitions: &[(String, i32)]) -> Result<Vec<Claim>, DbError>;

    /// In one transaction: writes each of `fences` (position updated only where the epoch is
    /// still the claimed one; none updated means fenced, and everything rolls back), then runs
    /// `work`, then commits. `fences` must be sorted by (topic, partition) so that concurrent
    /// transactions lock rows in one order.
    fn transact<T, E>(
        &mut self,
        group: &str,
        fences: &[Fence],
        work: impl FnOnce(&mut Self::Tx<'_>) -> Result<T, E>,
    ) -> Result<T, TransactError<E>>;

    /// The inbox helper: records `message_id` in `inbox` inside `tx` and says whether it was
    /// new (`false`: a repeat, skip its effects). It commits or rolls back with `tx`.
    fn inbox_first(tx: &mut Self::Tx<'_>, inbox: &str, message_id: &str) -> Result<bool, DbError>;
}
