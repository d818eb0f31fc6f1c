//! One run: a workload through one row's producer and consumers, under one fault profile,
//! recorded as a history. Every row runs the same skeleton; only its consumer side differs.
//!
//! ```text
//! setup (no faults)  create topic, start producer and consumers, one warm-up record per
//!                    partition (outside the history) taken by the consumers
//! faults on          producer: paced records (latency), then a burst (throughput), plain or
//!                    in transactions; nemesis: kill -9 / restart the broker, crash a
//!                    consumer, or (sinks) a consumer joins and leaves
//! heal               faults off, producer flushes, consumers drain to the log's end
//! finish             notes, the proxy's faults and the consumers' own operations merged into
//!                    the history
//! ```
//!
//! Faults stop before the final reads, as in Jepsen, so "not processed" means lost and not
//! "not processed yet".
//!
//! - `settings.rs`: the clients' librdkafka settings.
//! - `produce.rs`: the plain producer, the warm-up and drain records.
//! - `transactions/`: the exactly-once producer of the exactly-once and sink rows.
//! - `consume.rs`, `drain.rs`: the consumer of the at-most-once, at-least-once and
//!   exactly-once rows.
//! - `sinks/`: the sink rows' consumers (`slot.rs`) and their ledger databases (`ledger.rs`).
//! - `nemesis.rs`: the proxy's plan, kill -9 and restart, fault events into the history.
//! - `client_log/`: librdkafka's messages, into the notes when the faults explain them.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::{Guarantee, Producer, Settings};

mod client_log;
mod consume;
mod drain;
mod nemesis;
mod produce;
pub(crate) mod settings;
pub(crate) mod sinks;
mod transactions;

use client_log::ClientLog;
use produce::{new_producer, produce, send_marks, warm_up, SendRecorder};
use transactions::produce_transactions;

use crate::history::{Op, Recorder};
use crate::profile::Profile;
use crate::results::SinkCheck;
use crate::target::Target;
use crate::workload::Row;

/// How long a consumer waits in one poll.
const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// How long setup waits for the clients to be ready.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The key of the warm-up records, which no workload uses.
const WARM_UP_KEY: &[u8] = b"ferry-lab-warm-up";
/// The send tag of partition 0's warm-up record; partition p's is this minus p. Record ids
/// stay far below.
const WARM_UP_TAG: usize = usize::MAX;
/// The most partitions a run may use (bounds the warm-up tags).
const PARTITIONS_MAX: usize = 1024;
/// Time allowed for watermark and committed-offset requests while draining.
const DRAIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most distinct notes a run keeps.
const NOTES_MAX: usize = 20;

/// What to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The row whose run this is: at-most-once, at-least-once (read as both of its rows),
    /// exactly-once, or a sink row.
    pub row: Row,
    pub profile: Profile,
    pub params: crate::profile::Params,
    /// Seeds the proxy's plan.
    pub seed: u64,
    pub topic: String,
    pub group: String,
}

/// A finished run.
#[derive(Debug)]
pub struct RunOutput {
    pub history: Vec<Op>,
    /// Things a reader of the result should know (a drain that timed out, crashes that never
    /// found a batch to crash in).
    pub notes: Vec<String>,
    pub elapsed: Duration,
    /// Sink rows: what SQL found in the database after the run.
    pub sink: Option<SinkCheck>,
}

/// Progress as the run goes: a short phase description and records sent so far.
pub type ProgressFn<'a> = &'a (dyn Fn(&str, u64) + Sync);

/// State the runner, the producer and the consumer threads share.
#[derive(Default)]
pub(crate) struct Shared {
    /// Warm-up records the consumer has read.
    warm_up_records: AtomicU32,
    drain: AtomicBool,
    drained: AtomicBool,
    stop: AtomicBool,
    crashes_requested: AtomicU32,
    crashes_done: AtomicU32,
    notes: Mutex<Vec<String>>,
}

impl Shared {
    fn note(&self, note: String) {
        tracing::debug!(note, "run note");
        let mut notes = self.notes.lock().expect("notes lock poisoned");
        if notes.len() < NOTES_MAX && !notes.contains(&note) {
            notes.push(note);
        }
    }
}

/// What every part of one run reaches: the spec, the history, the shared state, the clients'
/// settings.
pub(crate) struct Run<'a> {
    target: &'a Target,
    spec: &'a RunSpec,
    progress: ProgressFn<'a>,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    settings: Settings,
    /// What the run's clients' librdkafka says.
    client_log: Arc<ClientLog>,
}

/// The consumer side of a run, the part in which the rows differ: one consumer thread
/// ([`consume::ConsumerThread`]) or the two sink slots ([`sinks::SinkSlots`]).
trait Consumers: Sync {
    /// Waits until the consumers have taken every partition's warm-up record, already sent.
    fn wait_for_warm_up(&self, run: &Run<'_>) -> Result<()>;

    /// Whether the consumers bring their own nemesis under `profile` (the sinks' rebalance).
    fn has_nemesis(&self, _profile: Profile) -> bool {
        false
    }

    /// Their nemesis, beside the producer, when [`Consumers::has_nemesis`].
    fn nemesis(&self, _run: &Run<'_>) -> Result<()> {
        Ok(())
    }

    /// With faults off: `producer` (the warm-up producer) flushes and the consumers drain
    /// until the log's end or `until`; then they stop.
    fn heal(
        &mut self,
        run: &Run<'_>,
        producer: Producer<SendRecorder>,
        until: Instant,
    ) -> Result<()>;

    /// After the consumers stopped: what the history needs beyond the recorder's operations.
    fn finish(self, run: &Run<'_>) -> Result<Finish>;
}

/// What a consumer side adds to the run's output.
#[derive(Default)]
struct Finish {
    /// Operations the recorder did not see (the sinks' applied rows, read back with SQL).
    ops: Vec<Op>,
    sink: Option<SinkCheck>,
}

/// Runs `spec` (not a sink row: those need their databases, [`crate::sink_run::run`]) against
/// `target`.
pub fn run(target: &Target, spec: &RunSpec, progress: ProgressFn<'_>) -> Result<RunOutput> {
    assert!(!spec.row.is_sink(), "sink rows run in sink_run");
    run_with(target, spec, progress, consume::ConsumerThread::start)
}

/// The skeleton of every run, with the consumers `start` starts.
fn run_with<C: Consumers>(
    target: &Target,
    spec: &RunSpec,
    progress: ProgressFn<'_>,
    start: impl FnOnce(&Run<'_>) -> Result<C>,
) -> Result<RunOutput> {
    if spec.row.guarantee() == Guarantee::ExactlyOnce {
        check_transaction_apis(target)?;
    }
    let started = Instant::now();
    let partitions = spec.params.partitions;
    assert!(
        (1..=PARTITIONS_MAX as i32).contains(&partitions),
        "partitions within 1..={PARTITIONS_MAX}"
    );
    progress("setup", 0);
    target.create_topic(&spec.topic, partitions)?;
    let run = Run {
        target,
        spec,
        progress,
        recorder: Arc::new(Recorder::new()),
        shared: Arc::new(Shared::default()),
        settings: settings::client_settings(target, spec.profile, &spec.group),
        client_log: ClientLog::new(spec.profile),
    };
    run.client_log
        .clone()
        .capture("runner", || phases(run, start, started))
}

/// The run's phases, from the warm-up producer to the output.
fn phases<C: Consumers>(
    run: Run<'_>,
    start: impl FnOnce(&Run<'_>) -> Result<C>,
    started: Instant,
) -> Result<RunOutput> {
    let (target, spec) = (run.target, run.spec);
    // Exactly-once: the warm-up records go through a plain at-least-once producer (outside the
    // history); the workload goes through the transactional one.
    let producer_guarantee = match spec.row.guarantee() {
        Guarantee::ExactlyOnce => Guarantee::AtLeastOnce,
        guarantee => guarantee,
    };
    let producer = new_producer(&run, producer_guarantee)?;
    warm_up(&producer, &spec.topic)?;
    let mut consumers = start(&run)?;
    send_marks(&producer, spec, WARM_UP_KEY)?;
    consumers.wait_for_warm_up(&run)?;

    let events_cursor = target.events_cursor();
    faults(&run, &producer, &consumers)?;

    let drain_until = Instant::now() + Duration::from_millis(spec.params.drain_timeout_ms);
    consumers.heal(&run, producer, drain_until)?;
    finish(run, consumers, events_cursor, started)
}

/// The workload with the profile's faults on: the producer, and beside it the nemesis thread
/// if the profile has one.
fn faults(
    run: &Run<'_>,
    producer: &Producer<SendRecorder>,
    consumers: &impl Consumers,
) -> Result<()> {
    let (target, spec, recorder) = (run.target, run.spec, &run.recorder);
    let produced = nemesis::with_faults(target, spec, recorder, || {
        std::thread::scope(|scope| -> Result<()> {
            let nemesis = if spec.profile == Profile::BrokerKill {
                Some(scope.spawn(|| {
                    run.client_log.capture("nemesis", || {
                        nemesis::kill_and_restart(target, &spec.params, recorder)
                    })
                }))
            } else if consumers.has_nemesis(spec.profile) {
                Some(scope.spawn(|| run.client_log.capture("nemesis", || consumers.nemesis(run))))
            } else {
                None
            };
            let produced = if spec.row.guarantee() == Guarantee::ExactlyOnce {
                produce_transactions(run)
            } else {
                produce(producer, run);
                Ok(())
            };
            if let Some(nemesis) = nemesis {
                nemesis.join().expect("the nemesis thread panicked")?;
            }
            produced
        })
    })?;
    produced
}

/// The run's output, once its consumers stopped: notes, and the history with the proxy's
/// faults and the consumers' own operations merged in.
fn finish(
    run: Run<'_>,
    consumers: impl Consumers,
    events_cursor: u64,
    started: Instant,
) -> Result<RunOutput> {
    let shared = &run.shared;
    let requested = shared.crashes_requested.load(Ordering::Relaxed);
    let done = shared.crashes_done.load(Ordering::Relaxed);
    if requested > done {
        shared.note(format!(
            "{done} of {requested} consumer crashes found a batch to crash in"
        ));
    }
    let Finish { ops, sink } = consumers.finish(&run)?;
    for note in run.client_log.notes() {
        shared.note(note);
    }
    let Run {
        target,
        recorder,
        shared,
        ..
    } = run;
    let recorder = Arc::into_inner(recorder).context("the history is still shared")?;
    let mut more = nemesis::proxy_faults(target, events_cursor, recorder.origin());
    more.extend(ops);
    let history = crate::history::merge(recorder.into_ops(), more);
    let notes = shared.notes.lock().expect("notes lock poisoned").clone();
    Ok(RunOutput {
        history,
        notes,
        elapsed: started.elapsed(),
        sink,
    })
}

/// Exactly-once runs need the transaction APIs; without them a run is refused rather than faked.
fn check_transaction_apis(target: &Target) -> Result<()> {
    let missing = target.missing_for(Guarantee::ExactlyOnce);
    if !missing.is_empty() {
        bail!("the broker does not advertise the transaction APIs {missing:?}");
    }
    Ok(())
}
