//! One run: a workload through one guarantee's producer and consumer loop, under one fault
//! profile, recorded as a history.
//!
//! ```text
//! setup (no faults)  create topic, start producer and consumer, one warm-up record per
//!                    partition (outside the history) read by the consumer
//! faults on          producer: paced records (latency), then a burst (throughput);
//!                    nemesis: kill -9 / restart the broker, or crash the consumer
//! heal               faults off, producer flushes, consumer drains to the high watermarks
//! ```
//!
//! Faults stop before the final reads, as in Jepsen, so "not processed" means lost and not
//! "not processed yet".

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chaos::Plan;
use client::dedup::{Applied, Idempotent, MemoryDedupStore, MessageId};
use client::{
    ClientError, Consumer, Delivery, DeliveryHandler, Guarantee, Observer, Producer, Record,
    Settings, StepError,
};
use rdkafka::consumer::Consumer as _;
use rdkafka::Offset;

mod transactions;

pub(crate) use transactions::produce_transactions;

use crate::history::{micros_since, Event, Kind, Op, Process, Recorder};
use crate::profile::{Params, Profile};
use crate::target::Target;
use crate::workload::{Row, Workload};

/// How long the consumer waits in one poll.
pub(crate) const POLL_TIMEOUT: Duration = Duration::from_millis(50);
/// How long setup waits for the clients to be ready.
pub(crate) const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// The key of the warm-up records, which no workload uses.
pub(crate) const WARM_UP_KEY: &[u8] = b"ferry-lab-warm-up";
/// The send tag of partition 0's warm-up record; partition p's is this minus p. Record ids
/// stay far below.
pub(crate) const WARM_UP_TAG: usize = usize::MAX;
/// The most partitions a run may use (bounds the warm-up tags).
const PARTITIONS_MAX: usize = 1024;
/// How often the draining consumer asks for high watermarks and committed offsets.
const DRAIN_CHECK_INTERVAL: Duration = Duration::from_millis(100);
/// Time allowed for watermark and committed-offset requests while draining.
pub(crate) const DRAIN_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The most distinct notes a run keeps.
const NOTES_MAX: usize = 20;
/// When the paced part kills the broker, as a fraction of it.
const KILL_AT_FRACTION: f64 = 0.4;

/// librdkafka settings shared by the lab's clients: short timeouts, so a dropped frame costs a
/// second rather than a minute, and Kafka's default of 5 requests in flight, so a slow link
/// makes batches larger instead of queueing requests behind each other.
///
/// librdkafka's own logs stop at errors: disconnects are what the faults are for, and the
/// history records what matters about them.
const CLIENT_SETTINGS: &[(&str, &str)] = &[
    ("socket.timeout.ms", "2000"),
    // librdkafka doubles its reconnect back-off up to 10 s by default; a run that resets
    // connections on purpose would measure that back-off rather than the guarantee.
    ("reconnect.backoff.max.ms", "1000"),
    ("client.id", "ferry-lab"),
    ("log_level", "3"),
];
pub(crate) const PRODUCER_SETTINGS: &[(&str, &str)] = &[
    ("linger.ms", "5"),
    ("request.timeout.ms", "1000"),
    ("retry.backoff.ms", "50"),
    ("max.in.flight.requests.per.connection", "5"),
    ("queue.buffering.max.messages", "1000000"),
];
pub(crate) const CONSUMER_SETTINGS: &[(&str, &str)] = &[
    ("session.timeout.ms", "6000"),
    ("heartbeat.interval.ms", "500"),
    ("fetch.wait.max.ms", "50"),
];

/// What to run.
#[derive(Clone, Debug)]
pub struct RunSpec {
    /// The row whose run this is: at-most-once, at-least-once (read as both of its rows) or
    /// exactly-once.
    pub row: Row,
    pub profile: Profile,
    pub params: Params,
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
    pub sink: Option<crate::results::SinkCheck>,
}

/// Progress as the run goes: a short phase description and records sent so far.
pub type ProgressFn<'a> = &'a (dyn Fn(&str, u64) + Sync);

/// State the runner and the consumer thread share.
#[derive(Default)]
pub(crate) struct Shared {
    /// Warm-up records the consumer has read.
    pub(crate) warm_up_records: AtomicU32,
    pub(crate) drain: AtomicBool,
    pub(crate) drained: AtomicBool,
    pub(crate) stop: AtomicBool,
    pub(crate) crashes_requested: AtomicU32,
    pub(crate) crashes_done: AtomicU32,
    pub(crate) notes: Mutex<Vec<String>>,
}

impl Shared {
    pub(crate) fn note(&self, note: String) {
        tracing::debug!(note, "run note");
        let mut notes = self.notes.lock().expect("notes lock poisoned");
        if notes.len() < NOTES_MAX && !notes.contains(&note) {
            notes.push(note);
        }
    }
}

/// Runs `spec` against `target`; the sink rows go through [`crate::sink_run::run`].
pub fn run(target: &Target, spec: &RunSpec, progress: ProgressFn<'_>) -> Result<RunOutput> {
    let guarantee = spec.row.guarantee();
    assert!(!spec.row.is_sink(), "sink rows run in sink_run");
    let exactly_once = guarantee == Guarantee::ExactlyOnce;
    if exactly_once {
        check_transaction_apis(target)?;
    }
    let started = Instant::now();
    let params = &spec.params;
    assert!(
        (1..=PARTITIONS_MAX as i32).contains(&params.partitions),
        "partitions within 1..={PARTITIONS_MAX}"
    );
    progress("setup", 0);
    target.create_topic(&spec.topic, params.partitions)?;
    let recorder = Arc::new(Recorder::new());
    let shared = Arc::new(Shared::default());
    let settings = client_settings(target, &spec.group);
    // Exactly-once: the warm-up records go through a plain at-least-once producer (outside the
    // history); the workload goes through the transactional one.
    let producer_guarantee = if exactly_once {
        Guarantee::AtLeastOnce
    } else {
        guarantee
    };
    let producer = new_producer(&settings, producer_guarantee, &recorder)?;
    warm_up(&producer, &spec.topic)?;
    let consumer = ConsumerThread::start(&settings, spec, &recorder, &shared)?;
    wait_for_warm_up(&producer, spec, &shared, &consumer)?;

    let events_cursor = target.events_cursor();
    let produced = with_faults(target, spec, &recorder, || {
        std::thread::scope(|scope| -> Result<()> {
            let nemesis = (spec.profile == Profile::BrokerKill).then(|| {
                let recorder = &recorder;
                scope.spawn(move || crate::quietly(|| kill_and_restart(target, params, recorder)))
            });
            let produced = if exactly_once {
                produce_transactions(&settings, spec, &recorder, &shared, progress)
            } else {
                produce(&producer, spec, &recorder, &shared, progress);
                Ok(())
            };
            if let Some(nemesis) = nemesis {
                nemesis.join().expect("the nemesis thread panicked")?;
            }
            produced
        })
    })?;
    produced?;

    progress("heal: producer flushes", params.records());
    let drain_until = Instant::now() + Duration::from_millis(params.drain_timeout_ms);
    if let Err(error) = producer.flush(Duration::from_millis(params.drain_timeout_ms)) {
        shared.note(format!(
            "{} sends still unanswered after the drain timeout: {error}",
            producer.in_flight()
        ));
    }
    // Purged sends are reported now, as fail (never sent) or info (maybe written).
    drop(producer);
    progress("heal: consumer drains", params.records());
    consumer.drain(drain_until)?;

    let requested = shared.crashes_requested.load(Ordering::Relaxed);
    let done = shared.crashes_done.load(Ordering::Relaxed);
    if requested > done {
        shared.note(format!(
            "{done} of {requested} consumer crashes found a batch to crash in"
        ));
    }
    let recorder = Arc::into_inner(recorder).context("the history is still shared")?;
    let faults = proxy_faults(target, events_cursor, recorder.origin());
    let history = crate::history::merge(recorder.into_ops(), faults);
    let notes = shared.notes.lock().expect("notes lock poisoned").clone();
    Ok(RunOutput {
        history,
        notes,
        elapsed: started.elapsed(),
        sink: None,
    })
}

/// Runs `workload` with the profile's proxy plan in force, and heals afterwards whatever
/// happened; the outer error is a failure to steer the proxy.
pub(crate) fn with_faults<R>(
    target: &Target,
    spec: &RunSpec,
    recorder: &Recorder,
    workload: impl FnOnce() -> R,
) -> Result<R> {
    recorder.record(Kind::Invoke, Process::Nemesis, start_faults(spec.profile));
    target.set_plan(spec.profile.plan(spec.seed, &spec.params))?;
    recorder.record(Kind::Info, Process::Nemesis, start_faults(spec.profile));
    let result = workload();
    recorder.record(Kind::Invoke, Process::Nemesis, Event::Heal {});
    target.set_plan(Plan::none(spec.seed))?;
    recorder.record(Kind::Info, Process::Nemesis, Event::Heal {});
    Ok(result)
}

/// Sends one warm-up record per partition, outside the history, and waits until the consumer
/// has processed them all: then both clients are connected and fetching, and the first
/// records' latency is not the clients' start-up.
fn wait_for_warm_up(
    producer: &Producer<SendRecorder>,
    spec: &RunSpec,
    shared: &Shared,
    consumer: &ConsumerThread,
) -> Result<()> {
    let partitions = spec.params.partitions;
    for partition in 0..partitions {
        let tag = WARM_UP_TAG - partition as usize;
        while let Err(error) = producer.send(&spec.topic, Some(partition), WARM_UP_KEY, b"", tag) {
            if !error.is_queue_full() {
                bail!("send a warm-up record: {error}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    let wait_until = Instant::now() + ASSIGNMENT_TIMEOUT;
    while shared.warm_up_records.load(Ordering::Relaxed) < partitions as u32 {
        if Instant::now() > wait_until || consumer.is_finished() {
            bail!(
                "the consumer of {} did not read the warm-up records within {ASSIGNMENT_TIMEOUT:?}",
                spec.topic
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(())
}

/// The consumer thread; dropping it stops the thread and waits for it, so a failed run leaves
/// no consumer behind.
struct ConsumerThread {
    handle: Option<std::thread::JoinHandle<Result<()>>>,
    shared: Arc<Shared>,
}

impl ConsumerThread {
    fn start(
        settings: &Settings,
        spec: &RunSpec,
        recorder: &Arc<Recorder>,
        shared: &Arc<Shared>,
    ) -> Result<ConsumerThread> {
        let (recorder, thread_shared, settings) =
            (recorder.clone(), shared.clone(), settings.clone());
        let (topic, row, policy) = (spec.topic.clone(), spec.row, spec.params.commit_policy());
        let handle = std::thread::Builder::new()
            .name("lab-consumer".into())
            .spawn(move || {
                crate::quietly(|| {
                    consume(&settings, row, policy, &topic, &recorder, &thread_shared)
                })
            })
            .context("spawn the consumer thread")?;
        Ok(ConsumerThread {
            handle: Some(handle),
            shared: shared.clone(),
        })
    }

    fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Lets the consumer read up to the high watermarks (or until `until`), then stops it.
    fn drain(mut self, until: Instant) -> Result<()> {
        let shared = self.shared.clone();
        shared.drain.store(true, Ordering::Relaxed);
        while !shared.drained.load(Ordering::Relaxed) && !self.is_finished() {
            if Instant::now() > until {
                shared.note(
                    "the consumer did not reach the high watermarks before the drain timeout"
                        .into(),
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        match self.stop() {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(error))) => {
                shared.note(format!("consumer stopped: {error:#}"));
                Ok(())
            }
            Some(Err(_)) => bail!("the consumer thread panicked"),
        }
    }

    fn stop(&mut self) -> Option<std::thread::Result<Result<()>>> {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.handle.take().map(|h| h.join())
    }
}

impl Drop for ConsumerThread {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Exactly-once runs need the transaction APIs; without them a run is refused rather than faked.
pub(crate) fn check_transaction_apis(target: &Target) -> Result<()> {
    let missing = target
        .apis()
        .map(|apis| apis.missing_for(Guarantee::ExactlyOnce))
        .unwrap_or_default();
    if !missing.is_empty() {
        bail!("the broker does not advertise the transaction APIs {missing:?}");
    }
    Ok(())
}

fn start_faults(profile: Profile) -> Event {
    Event::StartFaults {
        plan: profile.name().to_string(),
    }
}

pub(crate) fn client_settings(target: &Target, group: &str) -> Settings {
    let mut settings = Settings::new(target.bootstrap()).group_id(group);
    for (name, value) in CLIENT_SETTINGS {
        settings = settings.set(*name, *value);
    }
    settings
}

/// Records every delivery report as the completion of a send.
pub(crate) struct SendRecorder {
    recorder: Arc<Recorder>,
}

impl DeliveryHandler for SendRecorder {
    fn delivered(&self, tag: usize, delivery: Delivery) {
        if tag > WARM_UP_TAG - PARTITIONS_MAX {
            return;
        }
        let id = tag as u64;
        let (kind, event) = match delivery {
            Delivery::Persisted { partition, offset } => (
                Kind::Ok,
                Event::Send {
                    id,
                    partition: Some(partition),
                    offset: Some(offset),
                    txn: None,
                    error: None,
                },
            ),
            Delivery::NotPersisted { error } => (Kind::Fail, send_error(id, error)),
            Delivery::PossiblyPersisted { error } => (Kind::Info, send_error(id, error)),
        };
        self.recorder.record(kind, Process::Producer, event);
    }

    fn client_error(&self, error: &rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "producer error under faults");
    }
}

/// The consumer's librdkafka context: client-wide errors (all brokers down during a kill) are
/// expected under faults and are traced at debug level instead of error.
pub(crate) struct QuietContext;

impl rdkafka::ClientContext for QuietContext {
    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        tracing::debug!(%error, reason, "consumer error under faults");
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}

fn send_error(id: u64, error: String) -> Event {
    Event::Send {
        id,
        partition: None,
        offset: None,
        txn: None,
        error: Some(error),
    }
}

fn send_invoke(id: u64) -> Event {
    Event::Send {
        id,
        partition: None,
        offset: None,
        txn: None,
        error: None,
    }
}

pub(crate) fn new_producer(
    settings: &Settings,
    guarantee: Guarantee,
    recorder: &Arc<Recorder>,
) -> Result<Producer<SendRecorder>> {
    let mut settings = settings.clone();
    for (name, value) in PRODUCER_SETTINGS {
        settings = settings.set(*name, *value);
    }
    let handler = SendRecorder {
        recorder: recorder.clone(),
    };
    Ok(Producer::new(guarantee, &settings, handler)?)
}

/// Learns the topic's partition leaders before the first record, so the first records'
/// latency is not the producer's start-up.
pub(crate) fn warm_up(producer: &Producer<SendRecorder>, topic: &str) -> Result<()> {
    let deadline = Instant::now() + ASSIGNMENT_TIMEOUT;
    loop {
        let metadata = producer
            .client()
            .fetch_metadata(Some(topic), DRAIN_REQUEST_TIMEOUT)
            .with_context(|| format!("fetch metadata of {topic}"))?;
        let ready = metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty());
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("topic {topic} has no partitions in metadata after {ASSIGNMENT_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends the paced records, then the burst; asks for consumer crashes along the way.
fn produce(
    producer: &Producer<SendRecorder>,
    spec: &RunSpec,
    recorder: &Recorder,
    shared: &Shared,
    progress: ProgressFn<'_>,
) {
    let params = &spec.params;
    let workload = spec.row.workload();
    let crash_at: Vec<u64> = if spec.profile == Profile::ConsumerCrash {
        let n = u64::from(params.consumer_crashes);
        (1..=n)
            .map(|k| params.paced_records * k / (n + 1))
            .collect()
    } else {
        Vec::new()
    };
    let started = Instant::now();
    for id in params.paced_ids() {
        let due = started + Duration::from_micros(id * 1_000_000 / params.rate_per_second.max(1));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        if crash_at.contains(&id) {
            shared.crashes_requested.fetch_add(1, Ordering::Relaxed);
        }
        send(
            producer,
            workload,
            &spec.topic,
            id,
            params.payload_bytes,
            recorder,
        );
        if id % 100 == 0 {
            progress("paced", id);
        }
    }
    for id in params.burst_ids() {
        send(
            producer,
            workload,
            &spec.topic,
            id,
            params.payload_bytes,
            recorder,
        );
        if id % 1000 == 0 {
            progress("burst", id);
        }
    }
}

fn send(
    producer: &Producer<SendRecorder>,
    workload: Workload,
    topic: &str,
    id: u64,
    payload_bytes: usize,
    recorder: &Recorder,
) {
    let key = workload.key(id);
    let payload = workload.payload(id, payload_bytes);
    recorder.record(Kind::Invoke, Process::Producer, send_invoke(id));
    loop {
        match producer.send(topic, None, key.as_bytes(), &payload, id as usize) {
            Ok(()) => return,
            // Back-pressure, not failure: the record was not taken yet.
            Err(error) if error.is_queue_full() => std::thread::sleep(Duration::from_millis(1)),
            Err(error) => {
                recorder.record(
                    Kind::Fail,
                    Process::Producer,
                    send_error(id, error.to_string()),
                );
                return;
            }
        }
    }
}

/// The broker-kill nemesis: `kill -9` part way through the paced records, restart after the
/// downtime.
pub(crate) fn kill_and_restart(
    target: &Target,
    params: &Params,
    recorder: &Recorder,
) -> Result<()> {
    let at = Duration::from_millis((params.paced_ms() as f64 * KILL_AT_FRACTION) as u64);
    std::thread::sleep(at);
    recorder.record(Kind::Invoke, Process::Nemesis, Event::KillBroker {});
    target.kill_broker()?;
    recorder.record(Kind::Info, Process::Nemesis, Event::KillBroker {});
    std::thread::sleep(Duration::from_millis(params.kill_downtime_ms));
    recorder.record(Kind::Invoke, Process::Nemesis, Event::RestartBroker {});
    target
        .restart_broker()
        .context("restart the broker after kill -9")?;
    recorder.record(Kind::Info, Process::Nemesis, Event::RestartBroker {});
    Ok(())
}

/// Records commits as operations of the consumer instance.
struct CommitRecorder<'a> {
    recorder: &'a Recorder,
    instance: u32,
    offsets: Vec<(i32, i64)>,
}

impl Observer for CommitRecorder<'_> {
    fn commit_started(&mut self, offsets: &[(i32, i64)]) {
        self.offsets = offsets.to_vec();
        let event = Event::Commit {
            offsets: self.offsets.clone(),
            error: None,
        };
        self.recorder
            .record(Kind::Invoke, Process::Consumer(self.instance), event);
    }

    fn commit_finished(&mut self, result: Result<(), &ClientError>) {
        // A failed commit may still have reached the broker (a lost response): unknown.
        let (kind, error) = match result {
            Ok(()) => (Kind::Ok, None),
            Err(error) => (Kind::Info, Some(error.to_string())),
        };
        let event = Event::Commit {
            offsets: std::mem::take(&mut self.offsets),
            error,
        };
        self.recorder
            .record(kind, Process::Consumer(self.instance), event);
    }
}

/// The handler's way of dying between processing and commit.
#[derive(Debug)]
struct Crash;

/// The consumer's "database": the effects (recorded as `process` operations) and, for the
/// idempotent consumer, the dedup store beside them. It outlives consumer instances, as a
/// database outlives the processes that write to it.
struct Sink<'a> {
    workload: Workload,
    dedup: Option<Idempotent<MemoryDedupStore>>,
    /// Exactly-once: the next offset per partition, stored with the effects (in a real system:
    /// in the same database transaction), so a record read again after a consumer crash (its
    /// offset never committed) is recognised and not applied twice. Two records written twice
    /// sit at two offsets and are both applied: producer duplicates stay visible.
    positions: Option<HashMap<i32, i64>>,
    recorder: &'a Recorder,
    shared: &'a Shared,
}

impl Sink<'_> {
    /// Processes one record for consumer `instance`: the effect is the history operation.
    fn process(&mut self, instance: u32, record: &Record) {
        if record.key.as_deref() == Some(WARM_UP_KEY) {
            self.shared.warm_up_records.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let Some(id) = record.key.as_deref().and_then(|k| self.workload.id_of(k)) else {
            self.shared.note(format!(
                "a record without a {} key at {}/{}",
                self.workload.name(),
                record.partition,
                record.offset
            ));
            return;
        };
        let applied = match (self.dedup.as_mut(), self.positions.as_mut()) {
            (Some(dedup), _) => {
                let applied = dedup.apply(record, |_| Ok::<(), Crash>(()));
                matches!(applied, Ok(Applied::Applied))
            }
            (None, Some(positions)) => {
                let next = positions.entry(record.partition).or_insert(0);
                let applied = record.offset >= *next;
                *next = (*next).max(record.offset + 1);
                applied
            }
            (None, None) => true,
        };
        let event = Event::Process {
            id,
            partition: record.partition,
            offset: record.offset,
            applied,
        };
        self.recorder
            .record(Kind::Ok, Process::Consumer(instance), event);
    }
}

/// How a consumer instance ended.
enum InstanceEnd {
    Stopped,
    Crashed,
}

/// The consumer thread: one consumer instance after another (a crash starts the next), until
/// drained or stopped.
fn consume(
    settings: &Settings,
    row: Row,
    policy: client::CommitPolicy,
    topic: &str,
    recorder: &Recorder,
    shared: &Shared,
) -> Result<()> {
    let mut settings = settings.clone();
    for (name, value) in CONSUMER_SETTINGS {
        settings = settings.set(*name, *value);
    }
    // A static member (KIP-345): a crashed instance sends no LeaveGroup, as a killed process
    // would not, and its successor takes over its assignment at once instead of after the
    // session timeout.
    settings = settings.set("group.instance.id", format!("{topic}-consumer"));
    // The at-least-once run is read both ways: every delivery, and the effects that ran.
    let idempotent = row == Row::AtLeastOnce;
    let exactly_once = row == Row::ExactlyOnce;
    // Exactly-once reads committed data only and keeps its offsets beside its effects (see
    // `Sink::positions`); its consumer loop processes, then commits.
    let guarantee = if exactly_once {
        settings = settings.set("isolation.level", "read_committed");
        Guarantee::AtLeastOnce
    } else {
        row.guarantee()
    };
    let mut sink = Sink {
        workload: row.workload(),
        dedup: idempotent.then(|| Idempotent::new(MemoryDedupStore::default(), MessageId::Key)),
        positions: exactly_once.then(HashMap::new),
        recorder,
        shared,
    };
    for instance in 0.. {
        match run_instance(&settings, guarantee, policy, topic, instance, &mut sink)? {
            InstanceEnd::Stopped => return Ok(()),
            InstanceEnd::Crashed => {
                let event = Event::CrashConsumer { instance };
                recorder.record(Kind::Info, Process::Nemesis, event);
                shared.crashes_done.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    unreachable!("consumer instances are counted by a u32 that a run never exhausts")
}

/// One consumer instance: steps through batches until told to stop, drained, or crashed. A
/// crashed instance is dropped without committing; as a static member it sends no LeaveGroup.
fn run_instance(
    settings: &Settings,
    guarantee: Guarantee,
    policy: client::CommitPolicy,
    topic: &str,
    instance: u32,
    sink: &mut Sink<'_>,
) -> Result<InstanceEnd> {
    let shared = sink.shared;
    // The client's default batch limit: one commit per batch of up to 500 records.
    let mut consumer =
        Consumer::with_context(guarantee, settings, QuietContext)?.commit_policy(policy);
    consumer.subscribe(&[topic])?;
    let mut drain = Drain::default();
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(InstanceEnd::Stopped);
        }
        if shared.drain.load(Ordering::Relaxed) && drain.done(&consumer, topic, shared) {
            shared.drained.store(true, Ordering::Relaxed);
            return Ok(InstanceEnd::Stopped);
        }
        let mut observer = CommitRecorder {
            recorder: sink.recorder,
            instance,
            offsets: Vec::new(),
        };
        let crash_due = shared.crashes_done.load(Ordering::Relaxed)
            < shared.crashes_requested.load(Ordering::Relaxed);
        let mut processed_in_step = 0u32;
        let step = consumer.step(POLL_TIMEOUT, &mut observer, |record| {
            // Die after part of the batch is processed, before the commit (at-least-once) or
            // before the rest is processed (at-most-once, which committed first).
            if crash_due && processed_in_step >= 1 {
                return Err(Crash);
            }
            sink.process(instance, record);
            processed_in_step += 1;
            Ok(())
        });
        match step {
            Ok(_) | Err(StepError::Commit { .. }) => {}
            Err(StepError::Handler { error: Crash, .. }) => return Ok(InstanceEnd::Crashed),
            Err(StepError::Poll(error)) => {
                shared.note(format!("consumer poll error: {error}"));
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Decides when a draining consumer has read everything: its position (or, for a partition it
/// has not read since it started, its committed offset) has reached each partition's high
/// watermark, and the high watermarks did not move between two checks.
#[derive(Default)]
struct Drain {
    checked: Option<Instant>,
    watermarks: Option<HashMap<i32, i64>>,
}

impl Drain {
    fn done(&mut self, consumer: &Consumer<QuietContext>, topic: &str, shared: &Shared) -> bool {
        if self
            .checked
            .is_some_and(|at| at.elapsed() < DRAIN_CHECK_INTERVAL)
        {
            return false;
        }
        self.checked = Some(Instant::now());
        let inner = consumer.inner();
        let Ok(assignment) = inner.assignment() else {
            return false;
        };
        let partitions: Vec<i32> = assignment
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        if partitions.is_empty() {
            return false;
        }
        let mut watermarks = HashMap::new();
        for &partition in &partitions {
            match inner.fetch_watermarks(topic, partition, DRAIN_REQUEST_TIMEOUT) {
                Ok((_, high)) => watermarks.insert(partition, high),
                Err(error) => {
                    shared.note(format!("fetch watermarks while draining: {error}"));
                    return false;
                }
            };
        }
        let stable = self.watermarks.as_ref() == Some(&watermarks);
        self.watermarks = Some(watermarks.clone());
        if !stable {
            return false;
        }
        let positions = positions(consumer);
        let mut committed = None;
        for (partition, high) in watermarks {
            let mut at = positions.get(&partition).copied();
            if at.is_none() && high > 0 {
                let committed = committed.get_or_insert_with(|| committed_offsets(consumer));
                at = committed.get(&partition).copied();
            }
            if at.unwrap_or(0) < high {
                return false;
            }
        }
        true
    }
}

fn positions(consumer: &Consumer<QuietContext>) -> HashMap<i32, i64> {
    let Ok(list) = consumer.inner().position() else {
        return HashMap::new();
    };
    offsets_of(&list)
}

fn committed_offsets(consumer: &Consumer<QuietContext>) -> HashMap<i32, i64> {
    let Ok(list) = consumer.inner().committed(DRAIN_REQUEST_TIMEOUT) else {
        return HashMap::new();
    };
    offsets_of(&list)
}

fn offsets_of(list: &rdkafka::TopicPartitionList) -> HashMap<i32, i64> {
    list.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect()
}

/// The proxy's fault events since `cursor`, as nemesis operations on the history's clock.
pub(crate) fn proxy_faults(target: &Target, cursor: u64, origin: Instant) -> Vec<Op> {
    target
        .events_since(cursor)
        .into_iter()
        .map(|(at, event)| Op {
            index: 0,
            time_us: micros_since(origin, at),
            kind: Kind::Info,
            process: Process::Nemesis,
            event: Event::Fault {
                fault: fault_name(&event.action),
                api_key: event.api_key,
                direction: format!("{:?}", event.direction).to_lowercase(),
                connection: event.connection,
            },
        })
        .collect()
}

fn fault_name(fault: &chaos::Fault) -> String {
    match fault {
        chaos::Fault::DropFrame => "drop_frame".into(),
        chaos::Fault::Delay { .. } => "delay".into(),
        chaos::Fault::Duplicate => "duplicate".into(),
        chaos::Fault::CutConnection => "cut_connection".into(),
        chaos::Fault::BlackHole { .. } => "black_hole".into(),
        chaos::Fault::Pause => "pause".into(),
        chaos::Fault::Resume => "resume".into(),
    }
}
