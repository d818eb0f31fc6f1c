//! The SQLite back end (`rusqlite`, SQLite bundled): the embedded default. Write transactions
//! are `BEGIN IMMEDIATE`, so two consumers on one file take the write lock in turn instead of
//! failing a commit on an upgrade; the journal is WAL with `synchronous=FULL`, so a committed
//! batch survives a power loss.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use crate::backend::{Backend, Claim, Fence, TransactError, INBOX_TABLE, POSITIONS_TABLE};
use crate::error::DbError;

/// How long a writer waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

pub struct SqliteBackend {
    connection: Connection,
}

impl SqliteBackend {
    /// Opens (creating) the database file at `path` and the sink's tables in it.
    pub fn open(path: &Path) -> Result<SqliteBackend, DbError> {
        let connection = Connection::open(path).map_err(DbError::sqlite("open sqlite database"))?;
        connection
            .busy_timeout(BUSY_TIMEOUT)
            .map_err(DbError::sqlite("set busy timeout"))?;
        connection
            .execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")
            .map_err(DbError::sqlite("set journal mode"))?;
        let mut backend = SqliteBackend { connection };
        backend.prepare()?;
        Ok(backend)
    }

    /// The connection, for the application's own tables and queries outside the sink.
    pub fn connection(&mut self) -> &mut Connection {
        &mut self.connection
    }
}

impl Backend for SqliteBackend {
    type Tx<'a> = Transaction<'a>;

    fn prepare(&mut self) -> Result<(), DbError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (
                group_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                partition_id INTEGER NOT NULL,
                epoch INTEGER NOT NULL,
                next_offset INTEGER,
                PRIMARY KEY (group_id, topic, partition_id)
            );
            CREATE TABLE IF NOT EXISTS {INBOX_TABLE} (
                inbox TEXT NOT NULL,
                message_id TEXT NOT NULL,
                PRIMARY KEY (inbox, message_id)
            );"
        );
        self.connection
            .execute_batch(&sql)
            .map_err(DbError::sqlite("create sink tables"))
    }

    fn claim(&mut self, group: &str, partitions: &[(String, i32)]) -> Result<Vec<Claim>, DbError> {
        let tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(DbError::sqlite("begin claim"))?;
        let sql = format!(
            "INSERT INTO {POSITIONS_TABLE} (group_id, topic, partition_id, epoch, next_offset)
             VALUES (?1, ?2, ?3, 1, NULL)
             ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET epoch = epoch + 1
             RETURNING epoch, next_offset"
        );
        let mut sorted = partitions.to_vec();
        sorted.sort();
        let mut claims = Vec::with_capacity(sorted.len());
        {
            let mut statement = tx
                .prepare_cached(&sql)
                .map_err(DbError::sqlite("prepare claim"))?;
            for (topic, partition) in sorted {
                let (epoch, next_offset) = statement
                    .query_row(params![group, topic, partition], |row| {
                        Ok((row.get::<_, i64>(0)?, row.get::<_, Option<i64>>(1)?))
                    })
                    .map_err(DbError::sqlite("claim partition"))?;
                claims.push(Claim {
                    topic,
                    partition,
                    epoch,
                    next_offset,
                });
            }
        }
        tx.commit().map_err(DbError::sqlite("commit claim"))?;
        Ok(claims)
    }

    fn transact<T, E>(
        &mut self,
        group: &str,
        fences: &[Fence],
        work: impl FnOnce(&mut Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, TransactError<E>> {
        let mut tx = self
            .connection
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| TransactError::Db(DbError::sqlite("begin transaction")(e)))?;
        let sql = format!(
            "UPDATE {POSITIONS_TABLE} SET next_offset = ?1
             WHERE group_id = ?2 AND topic = ?3 AND partition_id = ?4 AND epoch = ?5"
        );
        for fence in fences {
            let updated = tx
                .prepare_cached(&sql)
                .and_then(|mut s| {
                    s.execute(params![
                        fence.next_offset,
                        group,
                        fence.topic,
                        fence.partition,
                        fence.epoch
                    ])
                })
                .map_err(|e| TransactError::Db(DbError::sqlite("write position")(e)))?;
            if updated == 0 {
                // Dropping `tx` rolls back.
                return Err(TransactError::Fenced {
                    topic: fence.topic.clone(),
                    partition: fence.partition,
                    epoch: fence.epoch,
                });
            }
        }
        let value = work(&mut tx).map_err(TransactError::Handler)?;
        tx.commit()
            .map_err(|e| TransactError::Db(DbError::sqlite("commit transaction")(e)))?;
        Ok(value)
    }

    fn inbox_first(
        tx: &mut Transaction<'_>,
        inbox: &str,
        message_id: &str,
    ) -> Result<bool, DbError> {
        let sql = format!(
            "INSERT INTO {INBOX_TABLE} (inbox, message_id) VALUES (?1, ?2)
             ON CONFLICT DO NOTHING"
        );
        let inserted = tx
            .prepare_cached(&sql)
            .and_then(|mut s| s.execute(params![inbox, message_id]))
            .map_err(DbError::sqlite("write inbox"))?;
        Ok(inserted == 1)
    }
}

/// The position of `group` in `topic`/`partition` and its epoch, for tests and tools.
pub fn position(
    connection: &Connection,
    group: &str,
    topic: &str,
    partition: i32,
) -> Result<Option<(i64, Option<i64>)>, DbError> {
    let sql = format!(
        "SELECT epoch, next_offset FROM {POSITIONS_TABLE}
         WHERE group_id = ?1 AND topic = ?2 AND partition_id = ?3"
    );
    connection
        .query_row(&sql, params![group, topic, partition], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })
        .optional()
        .map_err(DbError::sqlite("read position"))
}
