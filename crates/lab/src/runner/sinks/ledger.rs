//! The ledger databases of the sink rows: the schema (16 funded accounts, an `applied` row per
//! applied transfer), how a batch of transfers is applied in one transaction, and the SQL the
//! checks read back, for SQLite and for a real PostgreSQL server.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use client::Record;
use sink::local_postgres::LocalPostgres;
use sink::postgres::{PgTx, PostgresBackend};
use sink::sqlite::SqliteBackend;
use sink::Backend;

use crate::workload::{transfer, Workload, LEDGER_ACCOUNTS, LEDGER_INITIAL_BALANCE};

/// The databases of the sink rows: a directory for SQLite files and, when a PostgreSQL row
/// runs, one throwaway server for all of them (a database per run).
pub struct SinkEnv {
    dir: tempfile::TempDir,
    postgres: Option<std::result::Result<LocalPostgres, String>>,
    databases: AtomicU32,
}

impl SinkEnv {
    /// A directory under `parent` (or the system's temporary directory); starts PostgreSQL if
    /// `postgres`, keeping a failure to report on the rows.
    pub fn new(parent: Option<&Path>, postgres: bool) -> Result<SinkEnv> {
        let mut builder = tempfile::Builder::new();
        builder.prefix("ferry-lab-sinks-");
        let dir = match parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .context("create the sink rows' directory")?;
        let postgres = postgres.then(|| LocalPostgres::start().map_err(|e| e.to_string()));
        Ok(SinkEnv {
            dir,
            postgres,
            databases: AtomicU32::new(0),
        })
    }

    /// Why the PostgreSQL rows cannot run, if they cannot.
    pub fn postgres_unavailable(&self) -> Option<String> {
        match &self.postgres {
            None => Some("PostgreSQL was not started".into()),
            Some(Ok(_)) => None,
            Some(Err(error)) => Some(error.clone()),
        }
    }

    fn next_database(&self) -> u32 {
        self.databases.fetch_add(1, Ordering::Relaxed)
    }
}

/// One applied transfer, as the `applied` table holds it.
#[derive(Clone, Copy, Debug)]
pub struct AppliedRow {
    pub(crate) id: u64,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    /// Microseconds since the run's start when the transaction applied it.
    pub(crate) applied_us: u64,
    pub(crate) consumer: u32,
}

const SCHEMA: &str = "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL);
     CREATE TABLE applied (transfer_id BIGINT NOT NULL, partition_id INTEGER NOT NULL,
        record_offset BIGINT NOT NULL, applied_us BIGINT NOT NULL, consumer INTEGER NOT NULL);";

fn seed_sql() -> String {
    let rows: Vec<String> = (0..LEDGER_ACCOUNTS)
        .map(|id| format!("({id}, {LEDGER_INITIAL_BALANCE})"))
        .collect();
    format!("INSERT INTO accounts VALUES {};", rows.join(", "))
}

/// The balance change of each account the transfers of `rows` touch, by account id. Applied
/// in this order, concurrent transactions lock account rows in one order and cannot deadlock.
fn deltas(rows: &[AppliedRow]) -> std::collections::BTreeMap<u32, i64> {
    let mut deltas = std::collections::BTreeMap::new();
    for row in rows {
        let t = transfer(row.id);
        *deltas.entry(t.from).or_insert(0) -= t.amount;
        *deltas.entry(t.to).or_insert(0) += t.amount;
    }
    deltas
}

/// A ledger database the sink writes and the checks read with SQL. Public for the sink
/// throughput measurement (`crates/ferry/tests/it/sinks.rs`), which applies the same way.
pub trait LedgerDb: Send + Sync + 'static {
    type B: Backend;
    const NAME: &'static str;
    fn open(&self) -> Result<Self::B>;
    /// Applies `rows` (their transfers, and a row each in `applied`) inside `tx`.
    fn apply(tx: &mut <Self::B as Backend>::Tx<'_>, rows: &[AppliedRow]) -> Result<(), String>;
    fn applied(&self) -> Result<Vec<AppliedRow>>;
    fn scalar(&self, sql: &str) -> Result<i64>;
    fn balances(&self) -> Result<Vec<i64>>;
}

/// The lab's sink handler for transfer records: applies each (a row in `applied` for consumer
/// `consumer` at `applied_us`) in `tx`. Records without a transfer key are skipped.
pub fn apply_transfers<D: LedgerDb>(
    tx: &mut <D::B as Backend>::Tx<'_>,
    records: &[Record],
    consumer: u32,
    applied_us: u64,
) -> Result<(), String> {
    let rows: Vec<AppliedRow> = records
        .iter()
        .filter_map(|record| {
            let id = Workload::Ledger.id_of(record.key.as_deref()?)?;
            Some(AppliedRow {
                id,
                partition: record.partition,
                offset: record.offset,
                applied_us,
                consumer,
            })
        })
        .collect();
    D::apply(tx, &rows)
}

pub struct SqliteLedger {
    path: PathBuf,
}

impl SqliteLedger {
    pub(crate) fn create(env: &SinkEnv) -> Result<SqliteLedger> {
        let path = env
            .dir
            .path()
            .join(format!("ledger-{}.sqlite", env.next_database()));
        SqliteLedger::create_at(path)
    }

    /// A new ledger database file at `path`, its 16 accounts funded.
    pub fn create_at(path: PathBuf) -> Result<SqliteLedger> {
        let ledger = SqliteLedger { path };
        ledger
            .open()?
            .connection()
            .execute_batch(&format!("{SCHEMA} {}", seed_sql()))
            .context("create the sqlite ledger")?;
        Ok(ledger)
    }
}

impl LedgerDb for SqliteLedger {
    type B = SqliteBackend;
    const NAME: &'static str = "sqlite";

    fn open(&self) -> Result<SqliteBackend> {
        SqliteBackend::open(&self.path).context("open the sqlite ledger")
    }

    fn apply(tx: &mut rusqlite::Transaction<'_>, rows: &[AppliedRow]) -> Result<(), String> {
        let e = |e: rusqlite::Error| e.to_string();
        for (account, delta) in deltas(rows) {
            tx.prepare_cached("UPDATE accounts SET balance = balance + ?1 WHERE id = ?2")
                .and_then(|mut s| s.execute(rusqlite::params![delta, account]))
                .map_err(e)?;
        }
        let mut insert = tx
            .prepare_cached("INSERT INTO applied VALUES (?1, ?2, ?3, ?4, ?5)")
            .map_err(e)?;
        for row in rows {
            insert
                .execute(rusqlite::params![
                    row.id as i64,
                    row.partition,
                    row.offset,
                    row.applied_us as i64,
                    row.consumer
                ])
                .map_err(e)?;
        }
        Ok(())
    }

    fn applied(&self) -> Result<Vec<AppliedRow>> {
        let mut backend = self.open()?;
        let connection = backend.connection();
        let mut statement = connection.prepare(
            "SELECT transfer_id, partition_id, record_offset, applied_us, consumer FROM applied",
        )?;
        let rows = statement.query_map([], |r| {
            Ok(AppliedRow {
                id: r.get::<_, i64>(0)? as u64,
                partition: r.get(1)?,
                offset: r.get(2)?,
                applied_us: r.get::<_, i64>(3)? as u64,
                consumer: r.get(4)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn scalar(&self, sql: &str) -> Result<i64> {
        let mut backend = self.open()?;
        Ok(backend.connection().query_row(sql, [], |r| r.get(0))?)
    }

    fn balances(&self) -> Result<Vec<i64>> {
        let mut backend = self.open()?;
        let connection = backend.connection();
        let mut statement = connection.prepare("SELECT balance FROM accounts ORDER BY id")?;
        let rows = statement.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}

pub struct PostgresLedger {
    config: String,
}

impl PostgresLedger {
    pub(crate) fn create(env: &SinkEnv) -> Result<PostgresLedger> {
        let Some(Ok(server)) = &env.postgres else {
            bail!("PostgreSQL is not running");
        };
        PostgresLedger::create_in(server, &format!("lab_{}", env.next_database()))
    }

    /// A new ledger database `database` on `server`, its 16 accounts funded.
    pub fn create_in(server: &LocalPostgres, database: &str) -> Result<PostgresLedger> {
        PostgresBackend::connect(&server.config())
            .context("connect to postgres")?
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .context("create the ledger database")?;
        let ledger = PostgresLedger {
            config: format!("{} dbname={database}", server.config()),
        };
        ledger
            .open()?
            .batch_execute(&format!("{SCHEMA} {}", seed_sql()))
            .context("create the postgres ledger")?;
        Ok(ledger)
    }
}

impl LedgerDb for PostgresLedger {
    type B = PostgresBackend;
    const NAME: &'static str = "postgresql";

    fn open(&self) -> Result<PostgresBackend> {
        PostgresBackend::connect(&self.config).context("connect to the postgres ledger")
    }

    fn apply(tx: &mut PgTx<'_>, rows: &[AppliedRow]) -> Result<(), String> {
        let e = |e: tokio_postgres::Error| e.to_string();
        for (account, delta) in deltas(rows) {
            tx.execute(
                "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
                &[&delta, &(account as i32)],
            )
            .map_err(e)?;
        }
        // One statement for the batch's rows: a round trip per row would bound the rate by
        // the loopback latency.
        let ids: Vec<i64> = rows.iter().map(|r| r.id as i64).collect();
        let partitions: Vec<i32> = rows.iter().map(|r| r.partition).collect();
        let offsets: Vec<i64> = rows.iter().map(|r| r.offset).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.applied_us as i64).collect();
        let consumers: Vec<i32> = rows.iter().map(|r| r.consumer as i32).collect();
        tx.execute(
            "INSERT INTO applied SELECT * FROM
                unnest($1::BIGINT[], $2::INTEGER[], $3::BIGINT[], $4::BIGINT[], $5::INTEGER[])",
            &[&ids, &partitions, &offsets, &times, &consumers],
        )
        .map_err(e)?;
        Ok(())
    }

    fn applied(&self) -> Result<Vec<AppliedRow>> {
        let rows = self.open()?.query(
            "SELECT transfer_id, partition_id, record_offset, applied_us, consumer FROM applied",
            &[],
        )?;
        Ok(rows
            .iter()
            .map(|r| AppliedRow {
                id: r.get::<_, i64>(0) as u64,
                partition: r.get(1),
                offset: r.get(2),
                applied_us: r.get::<_, i64>(3) as u64,
                consumer: r.get::<_, i32>(4) as u32,
            })
            .collect())
    }

    fn scalar(&self, sql: &str) -> Result<i64> {
        let rows = self.open()?.query(sql, &[])?;
        let row = rows.first().context("a scalar query returned no row")?;
        Ok(row.get(0))
    }

    fn balances(&self) -> Result<Vec<i64>> {
        let rows = self
            .open()?
            .query("SELECT balance FROM accounts ORDER BY id", &[])?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}
