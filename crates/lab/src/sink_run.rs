//! The sink rows: the ledger workload applied through `crates/sink` into SQLite or a real
//! PostgreSQL server, under the lab's faults, and judged from what SQL finds in the database.
//!
//! ```text
//! setup (no faults)  ledger database (16 accounts), topic, two sink consumers (static members
//!                    slot 0 and 1), one warm-up record per partition applied by them
//! faults on          transactional producer as in the exactly-once row; nemesis: kill -9 the
//!                    broker, crash consumers, or a third consumer joins and leaves
//! heal               one drain record per partition after the last transfer; the run waits
//!                    until the sinks have committed every one of them
//! check              SELECT the applied table: its rows become the history's `process`
//!                    operations (time = when the transaction applied them); SQL totals
//! ```
//!
//! The consumer-crash profile alternates two deaths: a consumer killed mid-batch (its handler
//! fails, the transaction rolls back, a successor with the same `group.instance.id` takes
//! over), and a paused consumer (a zombie: it polled a batch, then stalls while its successor
//! joins and claims its partitions; when it resumes, its commit is fenced in the database).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::{Guarantee, Producer, Record, Settings};
use sink::local_postgres::LocalPostgres;
use sink::postgres::{PgTx, PostgresBackend};
use sink::sqlite::SqliteBackend;
use sink::{Backend, Polled, Sink, SinkError, SinkStep};

use crate::history::{Event, Kind, Op, Process, Recorder};
use crate::profile::{Params, Profile};
use crate::results::SinkCheck;
use crate::runner::{
    check_transaction_apis, client_settings, kill_and_restart, new_producer, produce_transactions,
    proxy_faults, warm_up, with_faults, ProgressFn, RunOutput, RunSpec, SendRecorder, Shared,
    ASSIGNMENT_TIMEOUT, CONSUMER_SETTINGS, POLL_TIMEOUT, WARM_UP_KEY, WARM_UP_TAG,
};
use crate::target::Target;
use crate::workload::{transfer, Row, Workload, LEDGER_ACCOUNTS, LEDGER_INITIAL_BALANCE};

/// Consumers of the sink's group for the whole run.
const SLOTS: u32 = 2;
/// The key of the drain records, which no workload uses.
const DRAIN_KEY: &[u8] = b"ferry-lab-drain";
/// How long a paused consumer waits for its successor to claim the partitions, and how long
/// the rebalance profile's joiner may take to join and apply.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(15);
/// When the rebalance profile's consumer joins, as a fraction of the paced records' time.
const JOIN_AT_FRACTION: f64 = 0.4;

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
    id: u64,
    partition: i32,
    offset: i64,
    /// Microseconds since the run's start when the transaction applied it.
    applied_us: u64,
    consumer: u32,
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
    fn create(env: &SinkEnv) -> Result<SqliteLedger> {
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
    fn create(env: &SinkEnv) -> Result<PostgresLedger> {
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

/// Runs a sink row (`spec.row` is [`Row::SinkSqlite`] or [`Row::SinkPostgres`]).
pub fn run(
    target: &Target,
    spec: &RunSpec,
    env: &SinkEnv,
    progress: ProgressFn<'_>,
) -> Result<RunOutput> {
    match spec.row {
        Row::SinkSqlite => run_with(SqliteLedger::create(env)?, target, spec, progress),
        Row::SinkPostgres => run_with(PostgresLedger::create(env)?, target, spec, progress),
        row => bail!("{row:?} is not a sink row"),
    }
}

/// A death the consumer-crash profile deals to a sink consumer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Death {
    /// The handler fails part way through the batch: the transaction rolls back.
    MidBatch,
    /// The consumer stalls after polling while a successor claims its partitions.
    Paused,
}

/// What the run's consumers share.
struct Ctx<D: LedgerDb> {
    db: D,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    settings: Settings,
    topic: String,
    /// When the sinks commit their database transactions (the run's commit interval).
    policy: client::CommitPolicy,
    instances: AtomicU32,
    /// Partitions whose warm-up and drain records were committed.
    warmed: Mutex<HashSet<i32>>,
    drained: Mutex<HashSet<i32>>,
    transactions: AtomicU64,
    fenced: AtomicU64,
    paused: AtomicU64,
    broker_unreachable: AtomicU64,
}

impl<D: LedgerDb> Ctx<D> {
    fn new_sink(&self, settings: &Settings) -> Result<Sink<D::B>> {
        let sink = Sink::new(settings, self.db.open()?)
            .context("create a sink consumer")?
            .commit_policy(self.policy);
        sink.subscribe(&[&self.topic])
            .context("subscribe the sink consumer")?;
        Ok(sink)
    }

    fn next_instance(&self) -> u32 {
        self.instances.fetch_add(1, Ordering::Relaxed)
    }

    /// Takes the next consumer crash the producer asked for, if one is due.
    fn take_death(&self) -> Option<Death> {
        let shared = &self.shared;
        let requested = shared.crashes_requested.load(Ordering::Relaxed);
        let done = shared.crashes_done.load(Ordering::Relaxed);
        if done >= requested {
            return None;
        }
        shared
            .crashes_done
            .compare_exchange(done, done + 1, Ordering::Relaxed, Ordering::Relaxed)
            .ok()?;
        Some(if done.is_multiple_of(2) {
            Death::MidBatch
        } else {
            Death::Paused
        })
    }

    /// The handler: applies the transfers among `records` in `tx`, and notes which partitions'
    /// warm-up and drain records it saw (`marks`: counted once the transaction commits).
    fn handle(
        &self,
        instance: u32,
        records: &[Record],
        tx: &mut <D::B as Backend>::Tx<'_>,
        marks: &mut Vec<(bool, i32)>,
    ) -> Result<(), String> {
        let applied_us = self.recorder.now_us();
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            match record.key.as_deref() {
                Some(WARM_UP_KEY) => marks.push((false, record.partition)),
                Some(DRAIN_KEY) => marks.push((true, record.partition)),
                key => match key.and_then(|k| Workload::Ledger.id_of(k)) {
                    Some(id) => rows.push(AppliedRow {
                        id,
                        partition: record.partition,
                        offset: record.offset,
                        applied_us,
                        consumer: instance,
                    }),
                    None => self.shared.note(format!(
                        "a record without a transfer key at {}/{}",
                        record.partition, record.offset
                    )),
                },
            }
        }
        D::apply(tx, &rows)
    }

    /// Applies `polled` for consumer `instance` and accounts for the outcome.
    fn apply(&self, sink: &Sink<D::B>, instance: u32, polled: Polled) -> Option<SinkStep> {
        let mut marks = Vec::new();
        let result = sink.apply(polled, |records, tx| {
            self.handle(instance, records, tx, &mut marks)
        });
        self.account(result, &marks)
    }

    fn step(&self, sink: &Sink<D::B>, instance: u32) -> Option<SinkStep> {
        match sink.poll(POLL_TIMEOUT) {
            Ok(polled) => self.apply(sink, instance, polled),
            Err(error) => self.account(Err(error.widen()), &[]),
        }
    }

    fn account(
        &self,
        result: std::result::Result<SinkStep, SinkError<String>>,
        marks: &[(bool, i32)],
    ) -> Option<SinkStep> {
        match result {
            Ok(step) => {
                if step.applied > 0 {
                    self.transactions.fetch_add(1, Ordering::Relaxed);
                }
                for &(drain, partition) in marks {
                    let set = if drain { &self.drained } else { &self.warmed };
                    set.lock().expect("marks lock poisoned").insert(partition);
                }
                Some(step)
            }
            Err(SinkError::Fenced { .. }) => {
                self.fenced.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(error) if error.is_broker_unreachable() => {
                self.broker_unreachable.fetch_add(1, Ordering::Relaxed);
                None
            }
            Err(SinkError::Handler(error)) => {
                self.shared.note(format!("sink handler: {error}"));
                None
            }
            Err(error) => {
                self.shared.note(format!("sink step: {error}"));
                std::thread::sleep(Duration::from_millis(10));
                None
            }
        }
    }

    fn record(&self, kind: Kind, event: Event) {
        self.recorder.record(kind, Process::Nemesis, event);
    }
}

/// One consumer slot: a static member whose instances follow each other as they die.
fn slot<D: LedgerDb>(ctx: &Ctx<D>, slot: u32) -> Result<()> {
    let settings = ctx
        .settings
        .clone()
        .set("group.instance.id", format!("{}-sink-{slot}", ctx.topic));
    let mut instance = ctx.next_instance();
    let mut sink = ctx.new_sink(&settings)?;
    while !ctx.shared.stop.load(Ordering::Relaxed) {
        let polled = match sink.poll(POLL_TIMEOUT) {
            Ok(polled) => polled,
            Err(error) => {
                ctx.account(Err(error.widen()), &[]);
                continue;
            }
        };
        let death = (polled.applicable() > 1)
            .then(|| ctx.take_death())
            .flatten();
        match death {
            None => {
                ctx.apply(&sink, instance, polled);
                continue;
            }
            Some(Death::MidBatch) => {
                let mut marks = Vec::new();
                let result = sink.apply(polled, |records, tx| {
                    let half = &records[..records.len() / 2];
                    ctx.handle(instance, half, tx, &mut marks)?;
                    Err("killed mid-batch".to_string())
                });
                if !matches!(result, Err(SinkError::Handler(_))) {
                    ctx.account(result, &marks);
                }
                drop(sink);
                ctx.record(Kind::Info, Event::CrashConsumer { instance });
                instance = ctx.next_instance();
                sink = ctx.new_sink(&settings)?;
            }
            Some(Death::Paused) => {
                ctx.paused.fetch_add(1, Ordering::Relaxed);
                ctx.record(Kind::Info, Event::CrashConsumer { instance });
                // The successor joins as the same static member: the coordinator hands it the
                // paused instance's assignment, and its claim bumps the epochs.
                let successor_instance = ctx.next_instance();
                let successor = ctx.new_sink(&settings)?;
                let deadline = Instant::now() + TAKEOVER_TIMEOUT;
                while successor.owned().is_empty()
                    && Instant::now() < deadline
                    && !ctx.shared.stop.load(Ordering::Relaxed)
                {
                    ctx.step(&successor, successor_instance);
                }
                // The zombie resumes and commits what it polled before the pause.
                if let Some(step) = ctx.apply(&sink, instance, polled) {
                    ctx.shared.note(format!(
                        "a paused consumer committed {} records: its successor had not claimed \
                         the partitions yet",
                        step.applied
                    ));
                }
                drop(sink);
                sink = successor;
                instance = successor_instance;
            }
        }
    }
    Ok(())
}

/// The rebalance profile's nemesis: a third consumer (a dynamic member, so leaving sends
/// LeaveGroup) joins part way through, applies at least one batch, and leaves.
fn rebalance<D: LedgerDb>(ctx: &Ctx<D>, params: &Params) -> Result<()> {
    let at = Duration::from_millis((params.paced_ms() as f64 * JOIN_AT_FRACTION) as u64);
    std::thread::sleep(at);
    let instance = ctx.next_instance();
    ctx.record(Kind::Invoke, Event::JoinConsumer { instance });
    let joiner = ctx.new_sink(&ctx.settings)?;
    ctx.record(Kind::Info, Event::JoinConsumer { instance });
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    let mut applied = 0;
    while applied == 0 && Instant::now() < deadline {
        applied += ctx.step(&joiner, instance).map_or(0, |s| s.applied);
    }
    if applied == 0 {
        ctx.shared
            .note("the joining consumer applied nothing before it left".into());
    }
    ctx.record(Kind::Invoke, Event::LeaveConsumer { instance });
    drop(joiner);
    ctx.record(Kind::Info, Event::LeaveConsumer { instance });
    Ok(())
}

/// Sends one record with `key` to each partition, outside the history.
fn send_marks(producer: &Producer<SendRecorder>, spec: &RunSpec, key: &[u8]) -> Result<()> {
    for partition in 0..spec.params.partitions {
        let tag = WARM_UP_TAG - partition as usize;
        while let Err(error) = producer.send(&spec.topic, Some(partition), key, b"", tag) {
            if !error.is_queue_full() {
                bail!("send a mark record: {error}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// Waits until `set` holds every partition; false if `until` came first or a slot ended.
fn wait_marks(
    set: &Mutex<HashSet<i32>>,
    partitions: i32,
    until: Instant,
    slots: &[std::thread::JoinHandle<Result<()>>],
) -> bool {
    while set.lock().expect("marks lock poisoned").len() < partitions as usize {
        if Instant::now() > until || slots.iter().any(|s| s.is_finished()) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn run_with<D: LedgerDb>(
    db: D,
    target: &Target,
    spec: &RunSpec,
    progress: ProgressFn<'_>,
) -> Result<RunOutput> {
    check_transaction_apis(target)?;
    let started = Instant::now();
    let params = &spec.params;
    progress("setup", 0);
    target.create_topic(&spec.topic, params.partitions)?;
    let recorder = Arc::new(Recorder::new());
    let shared = Arc::new(Shared::default());
    let settings = client_settings(target, &spec.group);
    let mut consumer_settings = settings.clone();
    for (name, value) in CONSUMER_SETTINGS {
        consumer_settings = consumer_settings.set(*name, *value);
    }
    let producer = new_producer(&settings, Guarantee::AtLeastOnce, &recorder)?;
    warm_up(&producer, &spec.topic)?;
    let ctx = Arc::new(Ctx {
        db,
        recorder: recorder.clone(),
        shared: shared.clone(),
        settings: consumer_settings,
        topic: spec.topic.clone(),
        policy: params.commit_policy(),
        instances: AtomicU32::new(0),
        warmed: Mutex::default(),
        drained: Mutex::default(),
        transactions: AtomicU64::new(0),
        fenced: AtomicU64::new(0),
        paused: AtomicU64::new(0),
        broker_unreachable: AtomicU64::new(0),
    });
    let slots = Slots::start(&ctx)?;
    send_marks(&producer, spec, WARM_UP_KEY)?;
    if !wait_marks(
        &ctx.warmed,
        params.partitions,
        Instant::now() + ASSIGNMENT_TIMEOUT,
        &slots.handles,
    ) {
        bail!(
            "the sink consumers of {} did not apply the warm-up records within {ASSIGNMENT_TIMEOUT:?}",
            spec.topic
        );
    }

    let events_cursor = target.events_cursor();
    let produced = with_faults(target, spec, &recorder, || {
        std::thread::scope(|scope| -> Result<()> {
            let nemesis = match spec.profile {
                Profile::BrokerKill => Some(
                    scope.spawn(|| crate::quietly(|| kill_and_restart(target, params, &recorder))),
                ),
                Profile::Rebalance => {
                    Some(scope.spawn(|| crate::quietly(|| rebalance(&ctx, params))))
                }
                _ => None,
            };
            let produced = produce_transactions(&settings, spec, &recorder, &shared, progress);
            if let Some(nemesis) = nemesis {
                nemesis.join().expect("the nemesis thread panicked")?;
            }
            produced
        })
    })?;
    produced?;

    progress("heal: sinks drain", params.records());
    let drain_until = Instant::now() + Duration::from_millis(params.drain_timeout_ms);
    send_marks(&producer, spec, DRAIN_KEY)?;
    if let Err(error) = producer.flush(Duration::from_millis(params.drain_timeout_ms)) {
        shared.note(format!("drain records unanswered: {error}"));
    }
    if !wait_marks(&ctx.drained, params.partitions, drain_until, &slots.handles) {
        shared.note("the sinks did not apply every drain record before the drain timeout".into());
    }
    slots.stop(&shared);
    drop(producer);

    let requested = shared.crashes_requested.load(Ordering::Relaxed);
    let done = shared.crashes_done.load(Ordering::Relaxed);
    if requested > done {
        shared.note(format!(
            "{done} of {requested} consumer crashes found a batch to crash in"
        ));
    }
    let ctx = Arc::into_inner(ctx).context("the sink context is still shared")?;
    let check = sink_check(&ctx)?;
    if check.paused_consumers > check.fenced_commits {
        shared.note(format!(
            "{} paused consumers, {} fenced commits",
            check.paused_consumers, check.fenced_commits
        ));
    }
    let process_ops = process_ops(&ctx.db.applied()?);
    drop(ctx);
    let recorder = Arc::into_inner(recorder).context("the history is still shared")?;
    let mut more = proxy_faults(target, events_cursor, recorder.origin());
    more.extend(process_ops);
    let history = crate::history::merge(recorder.into_ops(), more);
    let notes = shared.notes.lock().expect("notes lock poisoned").clone();
    Ok(RunOutput {
        history,
        notes,
        elapsed: started.elapsed(),
        sink: Some(check),
    })
}

/// The applied table as the history's `process` operations, at the time each was applied.
fn process_ops(rows: &[AppliedRow]) -> Vec<Op> {
    rows.iter()
        .map(|row| Op {
            index: 0,
            time_us: row.applied_us,
            kind: Kind::Ok,
            process: Process::Consumer(row.consumer),
            event: Event::Process {
                id: row.id,
                partition: row.partition,
                offset: row.offset,
                applied: true,
            },
        })
        .collect()
}

/// What SQL finds in the ledger after the run.
fn sink_check<D: LedgerDb>(ctx: &Ctx<D>) -> Result<SinkCheck> {
    let db = &ctx.db;
    let distinct: Vec<i64> = {
        let mut ids: Vec<i64> = db.applied()?.iter().map(|r| r.id as i64).collect();
        ids.sort_unstable();
        ids.dedup();
        ids
    };
    let mut expected = vec![LEDGER_INITIAL_BALANCE; LEDGER_ACCOUNTS as usize];
    for &id in &distinct {
        let t = transfer(id as u64);
        expected[t.from as usize] -= t.amount;
        expected[t.to as usize] += t.amount;
    }
    Ok(SinkCheck {
        backend: D::NAME.into(),
        applied_rows: db.scalar("SELECT COUNT(*) FROM applied")? as u64,
        distinct_transfers: db.scalar("SELECT COUNT(DISTINCT transfer_id) FROM applied")? as u64,
        total_initial: i64::from(LEDGER_ACCOUNTS) * LEDGER_INITIAL_BALANCE,
        total_balance: db.scalar("SELECT CAST(SUM(balance) AS BIGINT) FROM accounts")?,
        balances_match: db.balances()? == expected,
        transactions: ctx.transactions.load(Ordering::Relaxed),
        fenced_commits: ctx.fenced.load(Ordering::Relaxed),
        paused_consumers: ctx.paused.load(Ordering::Relaxed),
        broker_unreachable: ctx.broker_unreachable.load(Ordering::Relaxed),
    })
}

/// The consumer slots' threads; dropping them stops and joins them.
struct Slots {
    handles: Vec<std::thread::JoinHandle<Result<()>>>,
    shared: Arc<Shared>,
}

impl Slots {
    fn start<D: LedgerDb>(ctx: &Arc<Ctx<D>>) -> Result<Slots> {
        let mut slots = Slots {
            handles: Vec::new(),
            shared: ctx.shared.clone(),
        };
        for n in 0..SLOTS {
            let ctx = ctx.clone();
            let handle = std::thread::Builder::new()
                .name(format!("lab-sink-{n}"))
                .spawn(move || crate::quietly(|| slot(&ctx, n)))
                .context("spawn a sink consumer thread")?;
            slots.handles.push(handle);
        }
        Ok(slots)
    }

    fn stop(mut self, shared: &Shared) {
        for result in self.join() {
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => shared.note(format!("sink consumer stopped: {error:#}")),
                Err(_) => shared.note("a sink consumer thread panicked".into()),
            }
        }
    }

    fn join(&mut self) -> Vec<std::thread::Result<Result<()>>> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.handles.drain(..).map(|h| h.join()).collect()
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        let _ = self.join();
    }
}
