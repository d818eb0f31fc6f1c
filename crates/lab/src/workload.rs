//! The seed's three use cases as named workloads, and the rows of the lab's table.
//!
//! Every workload sends records whose key carries the record id (`order-000123`), so the consumer
//! knows which record it holds and the idempotent consumer has a message id to deduplicate on.
//! Payloads are deterministic functions of the id, so a history needs no payloads to be checked.

use client::Guarantee;
use serde::{Deserialize, Serialize};

use crate::check::{Transfer, View};

/// A use case from the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Workload {
    /// High-volume metrics where a lost point does not change the trend: at-most-once.
    Telemetry,
    /// Order notifications that must not be lost; a repeat is absorbed by an idempotent
    /// consumer: at-least-once.
    Orders,
    /// Money transfers between accounts: exactly-once, with the ledger invariant.
    Ledger,
}

/// Accounts in the ledger workload, and what each holds at the start.
pub const LEDGER_ACCOUNTS: u32 = 16;
pub const LEDGER_INITIAL_BALANCE: i64 = 1_000_000;

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Telemetry => "telemetry",
            Workload::Orders => "orders",
            Workload::Ledger => "ledger",
        }
    }

    fn key_prefix(self) -> &'static str {
        match self {
            Workload::Telemetry => "metric",
            Workload::Orders => "order",
            Workload::Ledger => "transfer",
        }
    }

    pub fn key(self, id: u64) -> String {
        format!("{}-{id:09}", self.key_prefix())
    }

    /// The record id in a key of this workload; `None` for a key it did not write.
    pub fn id_of(self, key: &[u8]) -> Option<u64> {
        let key = std::str::from_utf8(key).ok()?;
        let digits = key.strip_prefix(self.key_prefix())?.strip_prefix('-')?;
        digits.parse().ok()
    }

    /// The record's value, padded with spaces to `bytes` (JSON stays valid).
    pub fn payload(self, id: u64, bytes: usize) -> Vec<u8> {
        let mut text = match self {
            Workload::Telemetry => format!(
                r#"{{"host":"web-{}","metric":"cpu.busy","value":{}.{:02}}}"#,
                id % 32,
                id % 100,
                id % 97
            ),
            Workload::Orders => format!(
                r#"{{"order":{id},"customer":{},"event":"shipped"}}"#,
                id * 7 % 10_007
            ),
            Workload::Ledger => {
                let t = transfer(id);
                format!(
                    r#"{{"transfer":{id},"from":{},"to":{},"amount":{}}}"#,
                    t.from, t.to, t.amount
                )
            }
        };
        while text.len() < bytes {
            text.push(' ');
        }
        text.into_bytes()
    }
}

/// Transfer `id` of the ledger workload: a pure function of the id, so the checker can replay
/// the ledger from a history of ids alone.
pub fn transfer(id: u64) -> Transfer {
    let accounts = u64::from(LEDGER_ACCOUNTS);
    let from = id % accounts;
    // A step in 1..accounts, so `to` never equals `from`.
    let to = (from + 1 + (id / accounts) % (accounts - 1)) % accounts;
    Transfer {
        from: from as u32,
        to: to as u32,
        amount: (id * 37 % 500 + 1) as i64,
    }
}

/// A row of the lab's table: a guarantee, its use case and how its history is read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Row {
    AtMostOnce,
    AtLeastOnce,
    /// The same run as [`Row::AtLeastOnce`], read through the idempotent consumer's effects.
    AtLeastOnceIdempotent,
    ExactlyOnce,
    /// Exactly-once into a database: the transactional producer, and the `sink` crate's
    /// consumers applying the ledger into SQLite with their positions in the same transaction.
    SinkSqlite,
    /// The same into PostgreSQL.
    SinkPostgres,
}

impl Row {
    pub const ALL: [Row; 6] = [
        Row::AtMostOnce,
        Row::AtLeastOnce,
        Row::AtLeastOnceIdempotent,
        Row::ExactlyOnce,
        Row::SinkSqlite,
        Row::SinkPostgres,
    ];

    /// Whether the row runs through `crates/sink` (its effects are read back from a database).
    pub fn is_sink(self) -> bool {
        matches!(self, Row::SinkSqlite | Row::SinkPostgres)
    }

    pub fn guarantee(self) -> Guarantee {
        match self {
            Row::AtMostOnce => Guarantee::AtMostOnce,
            Row::AtLeastOnce | Row::AtLeastOnceIdempotent => Guarantee::AtLeastOnce,
            Row::ExactlyOnce | Row::SinkSqlite | Row::SinkPostgres => Guarantee::ExactlyOnce,
        }
    }

    /// The row's name in file names and the JSON (`sink-sqlite`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Row::AtMostOnce => "at-most-once",
            Row::AtLeastOnce => "at-least-once",
            Row::AtLeastOnceIdempotent => "at-least-once-idempotent",
            Row::ExactlyOnce => "exactly-once",
            Row::SinkSqlite => "sink-sqlite",
            Row::SinkPostgres => "sink-postgres",
        }
    }

    pub fn workload(self) -> Workload {
        match self {
            Row::AtMostOnce => Workload::Telemetry,
            Row::AtLeastOnce | Row::AtLeastOnceIdempotent => Workload::Orders,
            Row::ExactlyOnce | Row::SinkSqlite | Row::SinkPostgres => Workload::Ledger,
        }
    }

    pub fn view(self) -> View {
        match self {
            // Exactly-once keeps its offsets with its effects: a record read again after a
            // consumer crash is delivered twice but applied once.
            // A sink's history holds only the rows its transactions committed: all effects.
            Row::AtLeastOnceIdempotent | Row::ExactlyOnce | Row::SinkSqlite | Row::SinkPostgres => {
                View::Effects
            }
            _ => View::Deliveries,
        }
    }

    /// The row's label in tables.
    pub fn label(self) -> &'static str {
        match self {
            Row::AtMostOnce => "at-most-once",
            Row::AtLeastOnce => "at-least-once",
            Row::AtLeastOnceIdempotent => "+ idempotent consumer",
            Row::ExactlyOnce => "exactly-once",
            Row::SinkSqlite => "sink → SQLite",
            Row::SinkPostgres => "sink → PostgreSQL",
        }
    }

    /// The mechanism in at most 30 characters.
    pub fn mechanism(self) -> &'static str {
        match self {
            Row::AtMostOnce => "acks=0 · commit, then process",
            Row::AtLeastOnce => "acks=all+retry · commit after",
            Row::AtLeastOnceIdempotent => "+ dedup store by message id",
            Row::ExactlyOnce => "txn producer · read_committed",
            Row::SinkSqlite | Row::SinkPostgres => "txn producer · positions in DB",
        }
    }

    /// What the seed promises: (no loss, no duplicates).
    pub fn promises(self) -> (bool, bool) {
        match self {
            Row::AtMostOnce => (false, true),
            Row::AtLeastOnce => (true, false),
            Row::AtLeastOnceIdempotent | Row::ExactlyOnce | Row::SinkSqlite | Row::SinkPostgres => {
                (true, true)
            }
        }
    }

    /// The row whose run produces this row's history.
    pub fn run_row(self) -> Row {
        match self {
            Row::AtLeastOnceIdempotent => Row::AtLeastOnce,
            other => other,
        }
    }
}

impl std::str::FromStr for Row {
    type Err = String;

    /// A row by its command-line name, as `--row` and history file names give it.
    fn from_str(name: &str) -> Result<Row, String> {
        Row::ALL
            .into_iter()
            .find(|r| r.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Row::ALL.iter().map(|r| r.name()).collect();
                format!("unknown row {name}: expected one of {}", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_ids() {
        for workload in [Workload::Telemetry, Workload::Orders, Workload::Ledger] {
            for id in [0, 7, 123_456_789, 5_000_000_000] {
                assert_eq!(workload.id_of(workload.key(id).as_bytes()), Some(id));
            }
            assert_eq!(workload.id_of(b"something-else"), None);
            assert_eq!(workload.id_of(&[0xff, 0xfe]), None);
        }
        assert_eq!(Workload::Orders.key(42), "order-000000042");
    }

    #[test]
    fn payloads_are_padded_json() {
        let payload = Workload::Orders.payload(42, 100);
        assert_eq!(payload.len(), 100);
        let value: serde_json::Value = serde_json::from_slice(&payload).unwrap();
        assert_eq!(value["order"], 42);
    }

    #[test]
    fn transfers_move_money_between_distinct_accounts() {
        for id in 0..10_000 {
            let t = transfer(id);
            assert_ne!(t.from, t.to, "transfer {id}");
            assert!(t.to < LEDGER_ACCOUNTS && t.amount > 0);
        }
    }
}
