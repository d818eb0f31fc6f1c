//! The sink rows' consumer side: the ledger workload applied through `crates/sink` into SQLite
//! or a real PostgreSQL server, under the lab's faults, and judged from what SQL finds in the
//! database.
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
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::{Producer, Record, Settings};
use sink::{Backend, Polled, Sink, SinkError, SinkStep};

pub(crate) mod ledger;
mod slot;

use ledger::{AppliedRow, LedgerDb, PostgresLedger, SinkEnv, SqliteLedger};
use slot::Slots;

use super::client_log::ClientLog;
use super::produce::{send_marks, SendRecorder};
use super::settings::{self, CONSUMER_SETTINGS};
use super::{
    run_with, Consumers, Finish, ProgressFn, Run, RunOutput, RunSpec, Shared, ASSIGNMENT_TIMEOUT,
    POLL_TIMEOUT, WARM_UP_KEY,
};
use crate::history::{Event, Kind, Op, Process, Recorder};
use crate::profile::Profile;
use crate::results::SinkCheck;
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

/// Runs a sink row (`spec.row` is [`Row::SinkSqlite`] or [`Row::SinkPostgres`]).
pub fn run(
    target: &Target,
    spec: &RunSpec,
    env: &SinkEnv,
    progress: ProgressFn<'_>,
) -> Result<RunOutput> {
    match spec.row {
        Row::SinkSqlite => {
            let db = SqliteLedger::create(env)?;
            run_with(target, spec, progress, |run| SinkSlots::start(db, run))
        }
        Row::SinkPostgres => {
            let db = PostgresLedger::create(env)?;
            run_with(target, spec, progress, |run| SinkSlots::start(db, run))
        }
        row => bail!("{row:?} is not a sink row"),
    }
}

/// What the run's consumers share.
struct Ctx<D: LedgerDb> {
    db: D,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    /// Takes in the sink consumers' librdkafka messages on their threads.
    client_log: Arc<ClientLog>,
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

/// The sink rows' consumer side: the two slots and the context they share.
struct SinkSlots<D: LedgerDb> {
    ctx: Arc<Ctx<D>>,
    slots: Slots,
}

impl<D: LedgerDb> SinkSlots<D> {
    fn start(db: D, run: &Run<'_>) -> Result<SinkSlots<D>> {
        let ctx = Arc::new(Ctx {
            db,
            recorder: run.recorder.clone(),
            shared: run.shared.clone(),
            client_log: run.client_log.clone(),
            settings: settings::with(run.settings.clone(), CONSUMER_SETTINGS),
            topic: run.spec.topic.clone(),
            policy: run.spec.params.commit_policy(),
            instances: AtomicU32::new(0),
            warmed: Mutex::default(),
            drained: Mutex::default(),
            transactions: AtomicU64::new(0),
            fenced: AtomicU64::new(0),
            paused: AtomicU64::new(0),
            broker_unreachable: AtomicU64::new(0),
        });
        let slots = Slots::start(&ctx)?;
        Ok(SinkSlots { ctx, slots })
    }

    /// Waits until `set` holds every partition; false if `until` came first or a slot ended.
    fn wait_marks(&self, set: &Mutex<HashSet<i32>>, partitions: i32, until: Instant) -> bool {
        while set.lock().expect("marks lock poisoned").len() < partitions as usize {
            if Instant::now() > until || self.slots.handles.iter().any(|s| s.is_finished()) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    }
}

impl<D: LedgerDb> Consumers for SinkSlots<D> {
    fn wait_for_warm_up(&self, run: &Run<'_>) -> Result<()> {
        let until = Instant::now() + ASSIGNMENT_TIMEOUT;
        if !self.wait_marks(&self.ctx.warmed, run.spec.params.partitions, until) {
            bail!(
                "the sink consumers of {} did not apply the warm-up records within {ASSIGNMENT_TIMEOUT:?}",
                run.spec.topic
            );
        }
        Ok(())
    }

    fn has_nemesis(&self, profile: Profile) -> bool {
        profile == Profile::Rebalance
    }

    fn nemesis(&self, run: &Run<'_>) -> Result<()> {
        slot::rebalance(&self.ctx, run)
    }

    /// One drain record per partition after the last transfer; the sinks drain until they
    /// have committed every one.
    fn heal(
        &mut self,
        run: &Run<'_>,
        producer: Producer<SendRecorder>,
        until: Instant,
    ) -> Result<()> {
        let (spec, shared) = (run.spec, &run.shared);
        (run.progress)("heal: sinks drain", spec.params.records());
        send_marks(&producer, spec, DRAIN_KEY)?;
        if let Err(error) = producer.flush(Duration::from_millis(spec.params.drain_timeout_ms)) {
            shared.note(format!("drain records unanswered: {error}"));
        }
        if !self.wait_marks(&self.ctx.drained, spec.params.partitions, until) {
            shared
                .note("the sinks did not apply every drain record before the drain timeout".into());
        }
        self.slots.stop();
        drop(producer);
        Ok(())
    }

    /// The SQL check, and the applied table as the history's `process` operations.
    fn finish(self, run: &Run<'_>) -> Result<Finish> {
        let SinkSlots { ctx, slots } = self;
        drop(slots);
        let ctx = Arc::into_inner(ctx).context("the sink context is still shared")?;
        let check = sink_check(&ctx)?;
        if check.paused_consumers > check.fenced_commits {
            run.shared.note(format!(
                "{} paused consumers, {} fenced commits",
                check.paused_consumers, check.fenced_commits
            ));
        }
        Ok(Finish {
            ops: process_ops(&ctx.db.applied()?),
            sink: Some(check),
        })
    }
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
