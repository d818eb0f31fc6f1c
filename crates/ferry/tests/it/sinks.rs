//! Exactly-once sinks (crates/sink) into SQLite and a real PostgreSQL server: ledger transfers
//! applied through two consumers of one group while the broker is killed with `kill -9` twice
//! and restarted. Each consumer slot is a static member (`group.instance.id`), so a killed
//! instance sends no LeaveGroup, as a killed process would not, and its successor is handed its
//! partitions at once. Instances die mid-batch, right after a commit, or pause after a poll
//! while their successor claims the partitions, then resume and try to commit: a zombie, fenced
//! in the database (every run asserts as many fenced commits as paused consumers). The second
//! slot joins once the first has applied something, so a rebalance moves partitions from the
//! first consumer to the second (asserted: some partition applied by both), and once per slot a
//! successor comes back under a new instance id (a new member: more rebalances). After the run every transfer is applied exactly once and the balances are the
//! ledger's, checked with SQL; the only failed steps are polls that met the killed broker. The
//! control runs the same workload committing offsets to the broker after the database commit
//! (at-least-once) and shows duplicates. A zombie consumer whose partitions were claimed by
//! another is fenced inside its transaction and leaves no trace.
//!
//! The PostgreSQL tests start their own server (`sink::local_postgres`); without the server
//! binaries they fail, naming `scripts/install-deps`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use client::{Consumer, Guarantee, Record, Settings};
use lab::workload::{transfer, Workload, LEDGER_ACCOUNTS, LEDGER_INITIAL_BALANCE};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use sink::local_postgres::LocalPostgres;
use sink::postgres::{PgTx, PostgresBackend};
use sink::sqlite::SqliteBackend;
use sink::{Backend, Sink, SinkError};

use crate::harness::{producer, Ferry};

const PARTITIONS: i32 = 4;
const TRANSFERS: u64 = 3_000;
const BATCH_RECORDS_MAX: usize = 50;
const RUN_DEADLINE: Duration = Duration::from_secs(150);
const POLL: Duration = Duration::from_millis(100);

/// A ledger database the tests can open connections to and check with SQL.
trait LedgerDb: Send + Sync + 'static {
    type B: Backend;
    fn open(&self) -> Self::B;
    /// Applies the transfers of `ids` inside the sink's transaction.
    fn apply(tx: &mut <Self::B as Backend>::Tx<'_>, ids: &[u64]) -> Result<(), String>;
    /// Runs a query returning one integer, on a fresh connection.
    fn scalar(&self, sql: &str) -> i64;
    fn balances(&self) -> Vec<i64>;
}

const SCHEMA: &str = "CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance BIGINT NOT NULL);
     CREATE TABLE applied (transfer_id BIGINT NOT NULL);";

fn seed_sql() -> String {
    let rows: Vec<String> = (0..LEDGER_ACCOUNTS)
        .map(|id| format!("({id}, {LEDGER_INITIAL_BALANCE})"))
        .collect();
    format!("INSERT INTO accounts VALUES {};", rows.join(", "))
}

struct SqliteLedger {
    path: std::path::PathBuf,
}

impl SqliteLedger {
    fn create(dir: &std::path::Path) -> SqliteLedger {
        let ledger = SqliteLedger {
            path: dir.join("ledger.sqlite"),
        };
        let mut backend = ledger.open();
        backend
            .connection()
            .execute_batch(&format!("{SCHEMA} {}", seed_sql()))
            .expect("create ledger");
        ledger
    }
}

impl LedgerDb for SqliteLedger {
    type B = SqliteBackend;

    fn open(&self) -> SqliteBackend {
        SqliteBackend::open(&self.path).expect("open sqlite ledger")
    }

    fn apply(tx: &mut rusqlite::Transaction<'_>, ids: &[u64]) -> Result<(), String> {
        for &id in ids {
            let t = transfer(id);
            let steps = [
                (
                    "UPDATE accounts SET balance = balance - ?1 WHERE id = ?2",
                    t.amount,
                    i64::from(t.from),
                ),
                (
                    "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2",
                    t.amount,
                    i64::from(t.to),
                ),
            ];
            for (sql, amount, account) in steps {
                tx.prepare_cached(sql)
                    .and_then(|mut s| s.execute(rusqlite::params![amount, account]))
                    .map_err(|e| e.to_string())?;
            }
            tx.prepare_cached("INSERT INTO applied (transfer_id) VALUES (?1)")
                .and_then(|mut s| s.execute([id as i64]))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn scalar(&self, sql: &str) -> i64 {
        let mut backend = self.open();
        backend
            .connection()
            .query_row(sql, [], |row| row.get(0))
            .expect("query ledger")
    }

    fn balances(&self) -> Vec<i64> {
        let mut backend = self.open();
        let connection = backend.connection();
        let mut statement = connection
            .prepare("SELECT balance FROM accounts ORDER BY id")
            .expect("prepare balances");
        let rows = statement
            .query_map([], |row| row.get(0))
            .expect("query balances");
        rows.map(|r| r.expect("balance")).collect()
    }
}

struct PostgresLedger {
    config: String,
}

impl PostgresLedger {
    fn create(server: &LocalPostgres, database: &str) -> PostgresLedger {
        let mut admin = PostgresBackend::connect(&server.config()).expect("connect to postgres");
        admin
            .batch_execute(&format!("CREATE DATABASE {database}"))
            .expect("create database");
        let ledger = PostgresLedger {
            config: format!("{} dbname={database}", server.config()),
        };
        ledger
            .open()
            .batch_execute(&format!("{SCHEMA} {}", seed_sql()))
            .expect("create ledger");
        ledger
    }
}

impl LedgerDb for PostgresLedger {
    type B = PostgresBackend;

    fn open(&self) -> PostgresBackend {
        PostgresBackend::connect(&self.config).expect("connect to postgres ledger")
    }

    fn apply(tx: &mut PgTx<'_>, ids: &[u64]) -> Result<(), String> {
        for &id in ids {
            let t = transfer(id);
            let (from, to) = (t.from as i32, t.to as i32);
            tx.execute(
                "UPDATE accounts SET balance = balance - $1 WHERE id = $2",
                &[&t.amount, &from],
            )
            .map_err(|e| e.to_string())?;
            tx.execute(
                "UPDATE accounts SET balance = balance + $1 WHERE id = $2",
                &[&t.amount, &to],
            )
            .map_err(|e| e.to_string())?;
            tx.execute(
                "INSERT INTO applied (transfer_id) VALUES ($1)",
                &[&(id as i64)],
            )
            .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    fn scalar(&self, sql: &str) -> i64 {
        let rows = self.open().query(sql, &[]).expect("query ledger");
        rows[0].get(0)
    }

    fn balances(&self) -> Vec<i64> {
        let rows = self
            .open()
            .query("SELECT balance FROM accounts ORDER BY id", &[])
            .expect("query balances");
        rows.iter().map(|r| r.get(0)).collect()
    }
}

/// The transfer ids in `records` (every record is a ledger transfer).
fn ids(records: &[Record]) -> Vec<u64> {
    records
        .iter()
        .map(|r| {
            let key = r.key.as_deref().expect("transfer key");
            Workload::Ledger.id_of(key).expect("transfer id in key")
        })
        .collect()
}

fn expected_balances(transfers: u64) -> Vec<i64> {
    let mut balances = vec![LEDGER_INITIAL_BALANCE; LEDGER_ACCOUNTS as usize];
    for id in 0..transfers {
        let t = transfer(id);
        balances[t.from as usize] -= t.amount;
        balances[t.to as usize] += t.amount;
    }
    balances
}

/// How a consumer instance's life ends. Every instance is a static group member
/// (`group.instance.id`): like a killed process it sends no LeaveGroup, and its successor with
/// the same instance id is handed its assignment at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kill {
    /// The handler has written its effects and the process dies before the commit.
    MidBatch,
    /// The process dies right after the database commit (the control: before the offsets
    /// reach the broker).
    AfterCommit,
    /// The process stops after polling a batch (SIGSTOP, a long pause) while its successor
    /// joins with its instance id and claims the partitions; then it resumes and commits what
    /// it polled: a zombie, which the database must fence.
    Paused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Positions in the database, through `Sink`.
    Sink,
    /// The control: offsets committed to the broker after the database commit.
    BrokerOffsets,
}

#[derive(Debug, Default)]
struct Stats {
    consumer_kills: usize,
    mid_batch_kills: usize,
    after_commit_kills: usize,
    paused_kills: usize,
    /// Commits the database rejected: a paused consumer's, or any other.
    fenced: usize,
    /// Paused consumers whose successor had not claimed within `TAKEOVER_TIMEOUT` (a slow
    /// rebalance on a loaded machine): their commit went through, as it may, unfenced.
    unclaimed_pauses: usize,
    /// Lives that restarted under a new instance id (a new member: a rebalance).
    new_identities: usize,
    /// The partitions this slot's instances applied batches of.
    partitions: std::collections::BTreeSet<i32>,
    /// Steps that failed because librdkafka had lost the broker (its kill -9): nothing was
    /// written and the loop goes on.
    broker_unreachable: usize,
    /// Any other failed step, with its message.
    errors: Vec<String>,
}

/// The seed (and instance id suffix) of the first consumer slot; the second is the next.
const FIRST_SLOT_SEED: u64 = 7;

/// How long a paused consumer waits for its successor to claim its partitions.
const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(20);

fn settings(bootstrap: &str, group: &str) -> Settings {
    Settings::new(bootstrap)
        .group_id(group)
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
}

fn static_settings(bootstrap: &str, group: &str, instance_id: &str) -> Settings {
    settings(bootstrap, group).set("group.instance.id", instance_id)
}

/// Whether a poll failed because librdkafka lost its broker connections (a broker kill).
fn broker_unreachable(error: &rdkafka::error::KafkaError) -> bool {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};
    matches!(
        error,
        KafkaError::MessageConsumption(
            RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::AllBrokersDown
        )
    )
}

/// What a consumer slot needs to start instances.
struct Slot<'a, D> {
    db: &'a D,
    bootstrap: &'a str,
    group: &'a str,
    topic: &'a str,
    /// The slot's static instance id; a life with a new identity appends a generation.
    instance_id: String,
}

impl<D: LedgerDb> Slot<'_, D> {
    fn sink(&self) -> Sink<D::B> {
        let settings = static_settings(self.bootstrap, self.group, &self.instance_id);
        let sink = Sink::new(&settings, self.db.open())
            .expect("create sink")
            .batch_records_max(BATCH_RECORDS_MAX);
        sink.subscribe(&[self.topic]).expect("subscribe");
        sink
    }
}

/// One consumer slot: instances that live for a few batches each and end by a kill.
fn worker<D: LedgerDb>(
    db: Arc<D>,
    bootstrap: String,
    group: String,
    topic: String,
    mode: Mode,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Stats {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut stats = Stats::default();
    if mode == Mode::Sink && seed != FIRST_SLOT_SEED {
        // The second slot joins once the first has applied something, so the first holds
        // every partition until a rebalance moves some of them here.
        while db.scalar("SELECT COUNT(*) FROM applied") == 0 && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let mut slot = Slot {
        db: &*db,
        bootstrap: &bootstrap,
        group: &group,
        topic: &topic,
        instance_id: format!("{group}-slot-{seed}"),
    };
    // The first instance ends after a commit, so the control's kill point always happens;
    // the second pauses (in sink mode), so a zombie is fenced in every run.
    let mut kills = vec![Kill::AfterCommit, Kill::Paused].into_iter();
    let mut successor = None;
    let mut life = 0;
    while !stop.load(Ordering::Relaxed) {
        let batches = rng.gen_range(2..8);
        let kill = kills.next().unwrap_or_else(|| match rng.gen_range(0..3) {
            0 => Kill::MidBatch,
            1 => Kill::AfterCommit,
            _ => Kill::Paused,
        });
        // The control has no fence: a paused instance is just one more death after a commit.
        let kill = match (mode, kill) {
            (Mode::BrokerOffsets, Kill::Paused) => Kill::AfterCommit,
            (_, kill) => kill,
        };
        match mode {
            Mode::Sink => {
                let sink = successor.take().unwrap_or_else(|| slot.sink());
                successor = sink_life(&slot, sink, batches, kill, &stop, &mut stats);
            }
            Mode::BrokerOffsets => {
                broker_offsets_life(&slot, batches, kill, &stop, &mut stats);
            }
        }
        stats.consumer_kills += 1;
        life += 1;
        // Once per slot the next instance comes back under a new identity (a replaced pod):
        // a new member joins, a rebalance; the old one's session expires, another.
        if life >= 3 && stats.new_identities == 0 && successor.is_none() {
            slot.instance_id = format!("{group}-slot-{seed}-b");
            stats.new_identities += 1;
        }
    }
    stats
}

/// Accounts for a failed sink step.
fn sink_error(error: SinkError<String>, stats: &mut Stats) {
    match error {
        SinkError::Fenced { .. } => stats.fenced += 1,
        error if error.is_broker_unreachable() => stats.broker_unreachable += 1,
        error => stats.errors.push(error.to_string()),
    }
}

/// One sink instance's life; returns the successor when it ended paused (the successor has
/// already joined and claimed).
fn sink_life<D: LedgerDb>(
    slot: &Slot<'_, D>,
    sink: Sink<D::B>,
    batches: usize,
    kill: Kill,
    stop: &AtomicBool,
    stats: &mut Stats,
) -> Option<Sink<D::B>> {
    let mut applied_batches = 0;
    while !stop.load(Ordering::Relaxed) {
        let last = applied_batches + 1 == batches;
        let polled = match sink.poll(POLL) {
            Ok(polled) => polled,
            Err(error) => {
                sink_error(error.widen(), stats);
                continue;
            }
        };
        if last && kill == Kill::Paused && polled.applicable() > 0 {
            return Some(pause(slot, sink, polled, stop, stats));
        }
        let result = sink.apply(polled, |records, tx| {
            D::apply(tx, &ids(records))?;
            if last && kill == Kill::MidBatch {
                return Err("killed mid-batch".to_string());
            }
            Ok(())
        });
        match result {
            Ok(step) if step.applied > 0 => {
                applied_batches += 1;
                stats
                    .partitions
                    .extend(sink.owned().iter().map(|(_, p, _)| *p));
                if last && kill == Kill::AfterCommit {
                    stats.after_commit_kills += 1;
                    return None;
                }
            }
            Ok(_) => {}
            Err(SinkError::Handler(_)) => {
                stats.mid_batch_kills += 1;
                return None;
            }
            Err(error) => sink_error(error, stats),
        }
    }
    None
}

/// `zombie` polled `polled` and stops; its successor (the same static member) joins, is handed
/// the assignment and claims it; then the zombie resumes and tries to commit. Returns the
/// successor.
fn pause<D: LedgerDb>(
    slot: &Slot<'_, D>,
    zombie: Sink<D::B>,
    polled: sink::Polled,
    stop: &AtomicBool,
    stats: &mut Stats,
) -> Sink<D::B> {
    stats.paused_kills += 1;
    let successor = slot.sink();
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    while successor.owned().is_empty() && Instant::now() < deadline && !stop.load(Ordering::Relaxed)
    {
        if let Err(error) = successor.step(POLL, |records, tx| D::apply(tx, &ids(records))) {
            sink_error(error, stats);
        }
    }
    match zombie.apply(polled, |records, tx| D::apply(tx, &ids(records))) {
        Ok(step) => {
            stats.unclaimed_pauses += 1;
            eprintln!(
                "a paused consumer committed {} records: its successor had not claimed yet",
                step.applied
            )
        }
        Err(error) => sink_error(error, stats),
    }
    successor
}

fn broker_offsets_life<D: LedgerDb>(
    slot: &Slot<'_, D>,
    batches: usize,
    kill: Kill,
    stop: &AtomicBool,
    stats: &mut Stats,
) {
    let settings = static_settings(slot.bootstrap, slot.group, &slot.instance_id);
    let consumer = Consumer::new(Guarantee::AtLeastOnce, &settings)
        .expect("create consumer")
        .batch_records_max(BATCH_RECORDS_MAX);
    consumer.subscribe(&[slot.topic]).expect("subscribe");
    let mut backend = slot.db.open();
    let mut applied_batches = 0;
    while !stop.load(Ordering::Relaxed) {
        let batch = match consumer.poll_batch(POLL) {
            Ok(batch) => batch,
            Err(client::ClientError::Kafka { source, .. }) if broker_unreachable(&source) => {
                stats.broker_unreachable += 1;
                continue;
            }
            Err(error) => {
                stats.errors.push(error.to_string());
                continue;
            }
        };
        if batch.is_empty() {
            continue;
        }
        let last = applied_batches + 1 == batches;
        let result = backend.transact(slot.group, &[], |tx| {
            D::apply(tx, &ids(&batch))?;
            if last && kill == Kill::MidBatch {
                return Err("killed mid-batch".to_string());
            }
            Ok(())
        });
        match result {
            Ok(()) => applied_batches += 1,
            Err(sink::TransactError::Handler(_)) => {
                stats.mid_batch_kills += 1;
                return;
            }
            Err(error) => panic!("ledger transaction: {error}"),
        }
        if last {
            // Dies between the database commit and the offset commit.
            stats.after_commit_kills += 1;
            return;
        }
        // A commit that fails (the broker is down, the group is rebalancing) is not retried:
        // the records are read again, which is the control's point.
        let _ = consumer.commit(&batch, &mut client::NoObserver);
    }
}

fn produce_transfers(ferry: &Ferry, topic: &str) {
    produce_n(ferry, topic, TRANSFERS);
}

/// What a run left in the database.
#[derive(Debug)]
struct Outcome {
    rows: i64,
    distinct: i64,
    total: i64,
    balances_match: bool,
    stats: Vec<Stats>,
    broker_kills: usize,
}

/// Two consumer slots of one group apply the ledger while the broker is killed twice.
fn run<D: LedgerDb>(db: Arc<D>, mode: Mode, topic: &str) -> Outcome {
    let dir = tempfile::tempdir().unwrap();
    let mut ferry = Ferry::start(
        dir.path(),
        &[
            &format!("num.partitions={PARTITIONS}"),
            "group.initial.rebalance.delay.ms=0",
        ],
    );
    produce_transfers(&ferry, topic);
    let stop = Arc::new(AtomicBool::new(false));
    let group = format!("{topic}-group");
    let workers: Vec<_> = (0..2u64)
        .map(|slot| {
            let (db, stop) = (db.clone(), stop.clone());
            let (bootstrap, group, topic) = (ferry.bootstrap(), group.clone(), topic.to_string());
            let seed = FIRST_SLOT_SEED + slot;
            std::thread::spawn(move || worker(db, bootstrap, group, topic, mode, seed, stop))
        })
        .collect();
    let started = Instant::now();
    let mut broker_kills = 0;
    let transfers = TRANSFERS as i64;
    loop {
        let distinct = db.scalar("SELECT COUNT(DISTINCT transfer_id) FROM applied");
        if distinct >= transfers {
            break;
        }
        if broker_kills < 2 && distinct * 3 >= transfers * (broker_kills as i64 + 1) {
            ferry.kill9();
            std::thread::sleep(Duration::from_millis(300));
            ferry.restart();
            broker_kills += 1;
        }
        assert!(
            started.elapsed() < RUN_DEADLINE,
            "run stuck: {distinct} of {transfers} transfers applied"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let stats = workers
        .into_iter()
        .map(|w| w.join().expect("worker"))
        .collect();
    Outcome {
        rows: db.scalar("SELECT COUNT(*) FROM applied"),
        distinct: db.scalar("SELECT COUNT(DISTINCT transfer_id) FROM applied"),
        total: db.scalar("SELECT CAST(SUM(balance) AS BIGINT) FROM accounts"),
        balances_match: db.balances() == expected_balances(TRANSFERS),
        stats,
        broker_kills,
    }
}

fn assert_exactly_once(outcome: &Outcome) {
    eprintln!("sink run: {outcome:?}");
    assert_eq!(outcome.distinct, TRANSFERS as i64, "every transfer applied");
    assert_eq!(outcome.rows, TRANSFERS as i64, "no transfer applied twice");
    assert_eq!(
        outcome.total,
        i64::from(LEDGER_ACCOUNTS) * LEDGER_INITIAL_BALANCE,
        "total balance unchanged"
    );
    assert!(outcome.balances_match, "balances are the ledger's");
    assert_eq!(outcome.broker_kills, 2);
    let sum = |f: fn(&Stats) -> usize| -> usize { outcome.stats.iter().map(f).sum() };
    let kills = sum(|s| s.consumer_kills);
    let mid = sum(|s| s.mid_batch_kills);
    let after = sum(|s| s.after_commit_kills);
    let paused = sum(|s| s.paused_kills);
    let fenced = sum(|s| s.fenced);
    assert!(kills >= 4, "consumers were killed ({kills})");
    assert!(mid >= 1, "a consumer died mid-batch ({mid})");
    assert!(after >= 1, "a consumer died right after a commit ({after})");
    assert!(paused >= 2, "a consumer of each slot paused ({paused})");
    let moved: Vec<&i32> = outcome.stats[0]
        .partitions
        .intersection(&outcome.stats[1].partitions)
        .collect();
    assert!(
        !moved.is_empty(),
        "no partition moved between the two consumers: {:?} and {:?}",
        outcome.stats[0].partitions,
        outcome.stats[1].partitions
    );
    let new_identities = sum(|s| s.new_identities);
    assert_eq!(
        new_identities, 2,
        "each slot came back once as a new member"
    );
    // Each paused consumer whose successor claimed before it resumed is fenced (more fences may
    // come from rebalances racing a commit); one whose successor had not claimed in time
    // committed, as it may. Fencing must have been seen.
    let unclaimed = sum(|s| s.unclaimed_pauses);
    assert!(
        fenced + unclaimed >= paused && fenced >= 1,
        "{fenced} fenced commits and {unclaimed} unclaimed pauses for {paused} paused consumers"
    );
    assert_no_unexpected_errors(outcome);
}

/// The only failed steps a run may show are polls that met the killed broker (how many depends
/// on which consumers were polling when it died: 0 to about 17 per slot were seen).
fn assert_no_unexpected_errors(outcome: &Outcome) {
    let errors: Vec<&String> = outcome.stats.iter().flat_map(|s| &s.errors).collect();
    assert!(errors.is_empty(), "unexpected step errors: {errors:?}");
}

fn assert_duplicates(outcome: &Outcome) {
    eprintln!("control run: {outcome:?}");
    assert_eq!(outcome.distinct, TRANSFERS as i64);
    assert!(
        outcome.rows > TRANSFERS as i64,
        "the control applies transfers twice ({} rows)",
        outcome.rows
    );
    assert_no_unexpected_errors(outcome);
}

fn start_postgres() -> LocalPostgres {
    LocalPostgres::start()
        .unwrap_or_else(|error| panic!("start PostgreSQL for the sink tests: {error}"))
}

#[test]
fn sqlite_sink_applies_each_transfer_once_through_consumer_and_broker_kills() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(SqliteLedger::create(dir.path()));
    assert_exactly_once(&run(db, Mode::Sink, "ledger-sqlite"));
}

#[test]
fn sqlite_control_with_broker_offsets_applies_transfers_twice() {
    let dir = tempfile::tempdir().unwrap();
    let db = Arc::new(SqliteLedger::create(dir.path()));
    assert_duplicates(&run(db, Mode::BrokerOffsets, "ledger-sqlite-control"));
}

#[test]
fn postgres_sink_applies_each_transfer_once_through_consumer_and_broker_kills() {
    let server = start_postgres();
    let db = Arc::new(PostgresLedger::create(&server, "ledger"));
    assert_exactly_once(&run(db, Mode::Sink, "ledger-postgres"));
}

#[test]
fn postgres_control_with_broker_offsets_applies_transfers_twice() {
    let server = start_postgres();
    let db = Arc::new(PostgresLedger::create(&server, "ledger_control"));
    assert_duplicates(&run(db, Mode::BrokerOffsets, "ledger-postgres-control"));
}

/// A consumer applies some transfers, then another claims its partitions (a new owner after a
/// rebalance this consumer has not heard of). Its next transaction is fenced and leaves no
/// trace: no applied rows, balances and positions as before. The control is its own first
/// batches, committed while it still held the claim.
fn zombie_is_fenced<D: LedgerDb>(db: &D) {
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &[
            &format!("num.partitions={PARTITIONS}"),
            "group.initial.rebalance.delay.ms=0",
        ],
    );
    let topic = "ledger-zombie";
    produce_transfers(&ferry, topic);
    let group = "zombie";
    let zombie = Sink::new(&settings(&ferry.bootstrap(), group), db.open())
        .expect("create sink")
        .batch_records_max(BATCH_RECORDS_MAX);
    zombie.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut applied = 0;
    while applied == 0 {
        assert!(Instant::now() < deadline, "the zombie applied nothing");
        let step = zombie
            .step(POLL, |records, tx| D::apply(tx, &ids(records)))
            .expect("apply before the takeover");
        applied += step.applied;
    }
    let rows_before = db.scalar("SELECT COUNT(*) FROM applied");
    assert_eq!(
        rows_before, applied as i64,
        "the control: its batch committed"
    );
    let balances_before = db.balances();
    let positions_before =
        db.scalar("SELECT CAST(SUM(next_offset) AS BIGINT) FROM ferry_sink_positions");

    // The new owner claims every partition the zombie holds.
    let owned: Vec<(String, i32)> = zombie
        .owned()
        .into_iter()
        .map(|(topic, partition, _)| (topic, partition))
        .collect();
    assert_eq!(owned.len(), PARTITIONS as usize);
    let claims = db
        .open()
        .claim(group, &owned)
        .expect("claim as the new owner");
    assert!(claims.iter().all(|c| c.epoch == 2), "{claims:?}");

    let mut fenced = None;
    let mut handler_ran = 0;
    while fenced.is_none() {
        assert!(Instant::now() < deadline, "the zombie was never fenced");
        match zombie.step(POLL, |records, tx| {
            handler_ran += 1;
            D::apply(tx, &ids(records))
        }) {
            Ok(step) => assert_eq!(step.applied, 0, "a fenced zombie applied {step:?}"),
            Err(error @ SinkError::Fenced { .. }) => fenced = Some(error),
            Err(error) => panic!("zombie step: {error}"),
        }
    }
    eprintln!("zombie: {}", fenced.unwrap());
    assert_eq!(
        handler_ran, 0,
        "the fence is checked before the handler runs"
    );
    assert_eq!(db.scalar("SELECT COUNT(*) FROM applied"), rows_before);
    assert_eq!(db.balances(), balances_before);
    assert_eq!(
        db.scalar("SELECT CAST(SUM(next_offset) AS BIGINT) FROM ferry_sink_positions"),
        positions_before
    );
    assert_eq!(db.scalar("SELECT MIN(epoch) FROM ferry_sink_positions"), 2);
}

#[test]
fn sqlite_zombie_consumer_is_fenced_and_leaves_no_trace() {
    let dir = tempfile::tempdir().unwrap();
    zombie_is_fenced(&SqliteLedger::create(dir.path()));
}

#[test]
fn postgres_zombie_consumer_is_fenced_and_leaves_no_trace() {
    let server = start_postgres();
    zombie_is_fenced(&PostgresLedger::create(&server, "zombie"));
}

/// The inbox helper: a message id is new once per inbox, and a rolled-back transaction forgets
/// that it saw one.
fn inbox_dedups<D: LedgerDb>(db: &D) {
    let mut backend = db.open();
    let mut first = |id: &str, fail: bool| -> Option<bool> {
        backend
            .transact("inbox-test", &[], |tx| {
                let new = D::B::inbox_first(tx, "mail", id).map_err(|e| e.to_string())?;
                if fail {
                    return Err("handler failed".to_string());
                }
                Ok(new)
            })
            .ok()
    };
    let seen: BTreeMap<&str, Option<bool>> = [
        ("m1 first", first("m1", false)),
        ("m1 again", first("m1", false)),
        ("m2 rolled back", first("m2", true)),
        ("m2 after rollback", first("m2", false)),
    ]
    .into_iter()
    .collect();
    assert_eq!(seen["m1 first"], Some(true));
    assert_eq!(seen["m1 again"], Some(false));
    assert_eq!(seen["m2 rolled back"], None);
    assert_eq!(seen["m2 after rollback"], Some(true));
}

#[test]
fn inbox_helper_dedups_on_both_backends() {
    let dir = tempfile::tempdir().unwrap();
    inbox_dedups(&SqliteLedger::create(dir.path()));
    let server = start_postgres();
    inbox_dedups(&PostgresLedger::create(&server, "inbox"));
}

/// Records per second applied through each sink by one consumer with no faults, beside a plain
/// at-least-once consumer (offsets committed to the broker after each batch, no database) on
/// the same topic, machine and batch size. The sinks apply with the lab's handler
/// (`lab::sink_run::apply_transfers`: one UPDATE per touched account and the batch's `applied`
/// rows per transaction). The clock starts when the first poll returns records (group join and
/// assignment excluded, the first batch's apply included) and stops when the last batch is
/// committed. A short run by default (2,000 transfers: it checks the ledger, its rate means
/// little);
/// `FERRY_SLOW=1` applies 500,000 transfers; measure in a release build:
/// `cargo test --release -p ferry --test it sink_throughput -- --nocapture`.
fn transfers_for_throughput() -> u64 {
    if std::env::var_os("FERRY_SLOW").is_some() {
        500_000
    } else {
        2_000
    }
}

const THROUGHPUT_BATCH: usize = 500;

fn rate(name: &str, records: u64, seconds: f64) -> f64 {
    let per_second = records as f64 / seconds;
    eprintln!("throughput {name}: {records} records in {seconds:.2} s = {per_second:.0} records/s");
    per_second
}

fn sink_throughput<D: lab::sink_run::LedgerDb>(ferry: &Ferry, topic: &str, db: &D) -> f64 {
    let transfers = transfers_for_throughput();
    let group = format!("throughput-{}", D::NAME);
    let sink = Sink::new(
        &settings(&ferry.bootstrap(), &group),
        db.open().expect("open"),
    )
    .expect("create sink")
    .batch_records_max(THROUGHPUT_BATCH);
    sink.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut applied = 0u64;
    let mut started = None;
    while applied < transfers {
        assert!(
            Instant::now() < deadline,
            "throughput run stuck at {applied}"
        );
        let polled = sink.poll(POLL).expect("poll");
        if polled.applicable() > 0 && started.is_none() {
            started = Some(Instant::now());
        }
        let step = sink
            .apply(polled, |records, tx| {
                lab::sink_run::apply_transfers::<D>(tx, records, 0, 0)
            })
            .expect("apply");
        applied += step.applied as u64;
    }
    let seconds = started.expect("applied something").elapsed().as_secs_f64();
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM applied").unwrap(),
        transfers as i64
    );
    assert_eq!(
        db.scalar("SELECT COUNT(DISTINCT transfer_id) FROM applied")
            .unwrap(),
        transfers as i64
    );
    assert_eq!(db.balances().unwrap(), expected_balances(transfers));
    rate(&format!("sink {}", D::NAME), transfers, seconds)
}

fn plain_consumer_throughput(ferry: &Ferry, topic: &str) -> f64 {
    let transfers = transfers_for_throughput();
    let consumer = Consumer::new(
        Guarantee::AtLeastOnce,
        &settings(&ferry.bootstrap(), "throughput-plain"),
    )
    .expect("create consumer")
    .batch_records_max(THROUGHPUT_BATCH);
    consumer.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut seen = std::collections::HashSet::new();
    let mut started = None;
    while (seen.len() as u64) < transfers {
        assert!(
            Instant::now() < deadline,
            "plain run stuck at {}",
            seen.len()
        );
        let batch = consumer.poll_batch(POLL).expect("poll");
        if batch.is_empty() {
            continue;
        }
        started.get_or_insert_with(Instant::now);
        seen.extend(ids(&batch));
        consumer
            .commit(&batch, &mut client::NoObserver)
            .expect("commit offsets");
    }
    let seconds = started.expect("read something").elapsed().as_secs_f64();
    rate("plain consumer (broker offsets)", transfers, seconds)
}

#[test]
fn sink_throughput_sqlite_and_postgres_beside_a_plain_consumer() {
    let transfers = transfers_for_throughput();
    let dir = tempfile::tempdir().unwrap();
    let ferry = Ferry::start(
        dir.path(),
        &["num.partitions=4", "group.initial.rebalance.delay.ms=0"],
    );
    let topic = "throughput";
    produce_n(&ferry, topic, transfers);
    let plain = plain_consumer_throughput(&ferry, topic);
    let sqlite = lab::sink_run::SqliteLedger::create_at(dir.path().join("throughput.sqlite"))
        .expect("create sqlite ledger");
    let sqlite = sink_throughput(&ferry, topic, &sqlite);
    let server = start_postgres();
    let postgres = lab::sink_run::PostgresLedger::create_in(&server, "throughput")
        .expect("create postgres ledger");
    let postgres = sink_throughput(&ferry, topic, &postgres);
    let build = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!(
        "throughput ({build} build, {transfers} transfers, batches of {THROUGHPUT_BATCH}): \
         plain {plain:.0}, sqlite sink {sqlite:.0}, postgres sink {postgres:.0} records/s"
    );
}

fn produce_n(ferry: &Ferry, topic: &str, transfers: u64) {
    // Idempotent, so a retried send cannot put a transfer in the topic twice.
    let producer = producer(
        &ferry.bootstrap(),
        &[("acks", "all"), ("enable.idempotence", "true")],
    );
    futures::executor::block_on(async {
        let sends: Vec<_> = (0..transfers)
            .map(|id| {
                let key = Workload::Ledger.key(id);
                let payload = Workload::Ledger.payload(id, 0);
                let producer = &producer;
                async move {
                    producer
                        .send(
                            FutureRecord::to(topic).key(&key).payload(&payload),
                            Duration::from_secs(30),
                        )
                        .await
                        .map_err(|(e, _)| e)
                        .expect("produce transfer");
                }
            })
            .collect();
        futures::future::join_all(sends).await;
    });
}
