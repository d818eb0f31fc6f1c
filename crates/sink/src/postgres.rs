//! The PostgreSQL back end (`tokio-postgres`, a real server). The sink's loop is synchronous,
//! like librdkafka's poll, so this back end owns a single-threaded tokio runtime and drives
//! the client's futures to completion on it; the handler gets a [`PgTx`] whose methods block.
//!
//! Transactions run at READ COMMITTED. A commit's position `UPDATE … WHERE epoch = $mine` takes
//! the row lock first; a concurrent claim waits for that commit and then bumps the epoch, and a
//! claim that committed first makes the `UPDATE` re-read the row, find the new epoch and
//! update nothing: fenced.

use tokio::runtime::Runtime;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Transaction};

use crate::backend::{Backend, Claim, Fence, TransactError, INBOX_TABLE, POSITIONS_TABLE};
use crate::error::DbError;

pub struct PostgresBackend {
    runtime: Runtime,
    client: Client,
}

/// An open PostgreSQL transaction whose methods block until the server answers.
pub struct PgTx<'a> {
    runtime: &'a Runtime,
    tx: Transaction<'a>,
}

impl<'a> PgTx<'a> {
    pub fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, tokio_postgres::Error> {
        self.runtime.block_on(self.tx.execute(sql, params))
    }

    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.runtime.block_on(self.tx.query(sql, params))
    }

    pub fn batch_execute(&mut self, sql: &str) -> Result<(), tokio_postgres::Error> {
        self.runtime.block_on(self.tx.batch_execute(sql))
    }

    /// The async transaction and the runtime that drives it, for what the blocking methods
    /// do not cover (prepared statements, COPY).
    pub fn inner(&mut self) -> (&'a Runtime, &mut Transaction<'a>) {
        (self.runtime, &mut self.tx)
    }
}

impl PostgresBackend {
    /// Connects with a libpq-style `config` ("host=127.0.0.1 port=5432 user=… dbname=…") and
    /// creates the sink's tables if they are missing.
    pub fn connect(config: &str) -> Result<PostgresBackend, DbError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| DbError::Io {
                action: "build postgres runtime",
                source,
            })?;
        let (client, connection) = runtime
            .block_on(tokio_postgres::connect(config, NoTls))
            .map_err(DbError::postgres("connect to postgres"))?;
        // The connection task runs whenever the runtime is driven, i.e. inside every call.
        runtime.spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "postgres connection ended");
            }
        });
        let mut backend = PostgresBackend { runtime, client };
        backend.prepare()?;
        Ok(backend)
    }

    /// Runs `sql` outside any sink transaction (the application's schema, checks).
    pub fn batch_execute(&mut self, sql: &str) -> Result<(), DbError> {
        self.runtime
            .block_on(self.client.batch_execute(sql))
            .map_err(DbError::postgres("run statements"))
    }

    /// Queries outside any sink transaction.
    pub fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, DbError> {
        self.runtime
            .block_on(self.client.query(sql, params))
            .map_err(DbError::postgres("query"))
    }
}

impl Backend for PostgresBackend {
    type Tx<'a> = PgTx<'a>;

    fn prepare(&mut self) -> Result<(), DbError> {
        // Two consumers may create the tables at once; CREATE … IF NOT EXISTS can still race
        // on the catalog, so the creation is serialised by an advisory lock.
        let sql = format!(
            "SELECT pg_advisory_lock(7007007);
             CREATE TABLE IF NOT EXISTS {POSITIONS_TABLE} (
                group_id TEXT NOT NULL,
                topic TEXT NOT NULL,
                partition_id INTEGER NOT NULL,
                epoch BIGINT NOT NULL,
                next_offset BIGINT,
                PRIMARY KEY (group_id, topic, partition_id)
             );
             CREATE TABLE IF NOT EXISTS {INBOX_TABLE} (
                inbox TEXT NOT NULL,
                message_id TEXT NOT NULL,
                PRIMARY KEY (inbox, message_id)
             );
             SELECT pg_advisory_unlock(7007007);"
        );
        self.batch_execute(&sql)
    }

    fn claim(&mut self, group: &str, partitions: &[(String, i32)]) -> Result<Vec<Claim>, DbError> {
        let mut sorted = partitions.to_vec();
        sorted.sort();
        let sql = format!(
            "INSERT INTO {POSITIONS_TABLE} AS p (group_id, topic, partition_id, epoch, next_offset)
             VALUES ($1, $2, $3, 1, NULL)
             ON CONFLICT (group_id, topic, partition_id) DO UPDATE SET epoch = p.epoch + 1
             RETURNING epoch, next_offset"
        );
        let runtime = &self.runtime;
        let client = &mut self.client;
        runtime.block_on(async move {
            let tx = client
                .transaction()
                .await
                .map_err(DbError::postgres("begin claim"))?;
            let statement = tx
                .prepare(&sql)
                .await
                .map_err(DbError::postgres("prepare claim"))?;
            let mut claims = Vec::with_capacity(sorted.len());
            for (topic, partition) in sorted {
                let row = tx
                    .query_one(&statement, &[&group, &topic, &partition])
                    .await
                    .map_err(DbError::postgres("claim partition"))?;
                claims.push(Claim {
                    topic,
                    partition,
                    epoch: row.get(0),
                    next_offset: row.get(1),
                });
            }
            tx.commit()
                .await
                .map_err(DbError::postgres("commit claim"))?;
            Ok(claims)
        })
    }

    fn transact<T, E>(
        &mut self,
        group: &str,
        fences: &[Fence],
        work: impl FnOnce(&mut PgTx<'_>) -> Result<T, E>,
    ) -> Result<T, TransactError<E>> {
        let db = |action| move |e| TransactError::Db(DbError::postgres(action)(e));
        let runtime = &self.runtime;
        let tx = runtime
            .block_on(self.client.transaction())
            .map_err(db("begin transaction"))?;
        let mut tx = PgTx { runtime, tx };
        let sql = format!(
            "UPDATE {POSITIONS_TABLE} SET next_offset = $1
             WHERE group_id = $2 AND topic = $3 AND partition_id = $4 AND epoch = $5"
        );
        for fence in fences {
            let updated = tx
                .execute(
                    &sql,
                    &[
                        &fence.next_offset,
                        &group,
                        &fence.topic,
                        &fence.partition,
                        &fence.epoch,
                    ],
                )
                .map_err(db("write position"))?;
            if updated == 0 {
                runtime
                    .block_on(tx.tx.rollback())
                    .map_err(db("roll back fenced transaction"))?;
                return Err(TransactError::Fenced {
                    topic: fence.topic.clone(),
                    partition: fence.partition,
                    epoch: fence.epoch,
                });
            }
        }
        let value = match work(&mut tx) {
            Ok(value) => value,
            Err(error) => {
                runtime
                    .block_on(tx.tx.rollback())
                    .map_err(db("roll back transaction"))?;
                return Err(TransactError::Handler(error));
            }
        };
        runtime
            .block_on(tx.tx.commit())
            .map_err(db("commit transaction"))?;
        Ok(value)
    }

    fn inbox_first(tx: &mut PgTx<'_>, inbox: &str, message_id: &str) -> Result<bool, DbError> {
        let sql = format!(
            "INSERT INTO {INBOX_TABLE} (inbox, message_id) VALUES ($1, $2) ON CONFLICT DO NOTHING"
        );
        let inserted = tx
            .execute(&sql, &[&inbox, &message_id])
            .map_err(DbError::postgres("write inbox"))?;
        Ok(inserted == 1)
    }
}
