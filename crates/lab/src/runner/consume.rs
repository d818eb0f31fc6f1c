//! The consumer side of the at-most-once, at-least-once and exactly-once rows: one thread, one
//! consumer instance after another (the consumer-crash profile kills them between processing
//! and commit), each processed record a `process` operation and each commit a `commit`
//! operation of the history.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::dedup::{Applied, Idempotent, MemoryDedupStore, MessageId};
use client::{ClientError, Consumer, Guarantee, Observer, Producer, Record, Settings, StepError};
use rdkafka::config::RDKafkaLogLevel;

use super::client_log::ClientLog;
use super::drain::Drain;
use super::produce::SendRecorder;
use super::settings::{self, CONSUMER_SETTINGS};
use super::{Consumers, Finish, Run, Shared, ASSIGNMENT_TIMEOUT, POLL_TIMEOUT, WARM_UP_KEY};
use crate::history::{Event, Kind, Process, Recorder};
use crate::workload::{Row, Workload};

/// The consumer thread; dropping it stops the thread and waits for it, so a failed run leaves
/// no consumer behind.
pub(crate) struct ConsumerThread {
    handle: Option<std::thread::JoinHandle<Result<()>>>,
    shared: Arc<Shared>,
}

impl ConsumerThread {
    pub(crate) fn start(run: &Run<'_>) -> Result<ConsumerThread> {
        let env = ConsumerEnv {
            settings: run.settings.clone(),
            row: run.spec.row,
            policy: run.spec.params.commit_policy(),
            topic: run.spec.topic.clone(),
            recorder: run.recorder.clone(),
            shared: run.shared.clone(),
            client_log: run.client_log.clone(),
        };
        let handle = std::thread::Builder::new()
            .name("lab-consumer".into())
            .spawn(move || env.client_log.clone().capture("consumer", || consume(&env)))
            .context("spawn the consumer thread")?;
        Ok(ConsumerThread {
            handle: Some(handle),
            shared: run.shared.clone(),
        })
    }

    fn is_finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Lets the consumer read up to the high watermarks (or until `until`), then stops it.
    fn drain(&mut self, until: Instant) -> Result<()> {
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

impl Consumers for ConsumerThread {
    /// Waits until the consumer has processed every partition's warm-up record: then both
    /// clients are connected and fetching, and the first records' latency is not the clients'
    /// start-up.
    fn wait_for_warm_up(&self, run: &Run<'_>) -> Result<()> {
        let partitions = run.spec.params.partitions;
        let wait_until = Instant::now() + ASSIGNMENT_TIMEOUT;
        while run.shared.warm_up_records.load(Ordering::Relaxed) < partitions as u32 {
            if Instant::now() > wait_until || self.is_finished() {
                bail!(
                    "the consumer of {} did not read the warm-up records within {ASSIGNMENT_TIMEOUT:?}",
                    run.spec.topic
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// The producer flushes; then the consumer drains to the high watermarks.
    fn heal(
        &mut self,
        run: &Run<'_>,
        producer: Producer<SendRecorder>,
        until: Instant,
    ) -> Result<()> {
        let params = &run.spec.params;
        (run.progress)("heal: producer flushes", params.records());
        if let Err(error) = producer.flush(Duration::from_millis(params.drain_timeout_ms)) {
            run.shared.note(format!(
                "{} sends still unanswered after the drain timeout: {error}",
                producer.in_flight()
            ));
        }
        // Purged sends are reported now, as fail (never sent) or info (maybe written).
        drop(producer);
        (run.progress)("heal: consumer drains", params.records());
        self.drain(until)
    }

    /// Everything the consumer did is in the recorder already.
    fn finish(self, _run: &Run<'_>) -> Result<Finish> {
        Ok(Finish::default())
    }
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
    /// librdkafka raised a fatal error: a static member fenced (FENCED_INSTANCE_ID), as when a
    /// duplicated JoinGroup gave its instance id to a second member id. Such a consumer never
    /// polls a record again; a new instance takes over from the committed offsets.
    Fatal,
}

/// What the consumer thread takes from the run.
struct ConsumerEnv {
    settings: Settings,
    row: Row,
    policy: client::CommitPolicy,
    topic: String,
    recorder: Arc<Recorder>,
    shared: Arc<Shared>,
    client_log: Arc<ClientLog>,
}

/// The consumer thread: one consumer instance after another (a crash, or a fatal client error
/// such as a fenced static member, starts the next), until drained or stopped.
fn consume(env: &ConsumerEnv) -> Result<()> {
    let (row, topic, recorder, shared) = (env.row, &env.topic, &*env.recorder, &*env.shared);
    let mut settings = settings::with(env.settings.clone(), CONSUMER_SETTINGS);
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
        match run_instance(env, &settings, guarantee, instance, &mut sink)? {
            InstanceEnd::Stopped => return Ok(()),
            InstanceEnd::Crashed => {
                let event = Event::CrashConsumer { instance };
                recorder.record(Kind::Info, Process::Nemesis, event);
                shared.crashes_done.fetch_add(1, Ordering::Relaxed);
            }
            InstanceEnd::Fatal => {}
        }
    }
    unreachable!("consumer instances are counted by a u32 that a run never exhausts")
}

/// One consumer instance: steps through batches until told to stop, drained, or crashed. A
/// crashed instance is dropped without committing; as a static member it sends no LeaveGroup.
fn run_instance(
    env: &ConsumerEnv,
    settings: &Settings,
    guarantee: Guarantee,
    instance: u32,
    sink: &mut Sink<'_>,
) -> Result<InstanceEnd> {
    let (shared, topic) = (sink.shared, env.topic.as_str());
    let context = QuietContext {
        client_log: env.client_log.clone(),
    };
    // The client's default batch limit: one commit per batch of up to 500 records.
    let mut consumer =
        Consumer::with_context(guarantee, settings, context)?.commit_policy(env.policy);
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
        let client = rdkafka::consumer::Consumer::client(consumer.inner());
        if let Some((code, reason)) = client.fatal_error() {
            shared.note(format!(
                "consumer instance {instance} failed ({code:?}: {reason}); a new one takes over"
            ));
            return Ok(InstanceEnd::Fatal);
        }
    }
}

/// The consumer's librdkafka context: its messages (all brokers down during a kill, a fenced
/// static member after a crash) go to the run's client log, which keeps those the faults
/// explain off the terminal.
pub(crate) struct QuietContext {
    client_log: Arc<ClientLog>,
}

impl rdkafka::ClientContext for QuietContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.client_log.log("consumer", level, fac, log_message);
    }

    fn error(&self, error: rdkafka::error::KafkaError, reason: &str) {
        self.client_log.error("consumer", &error, reason);
    }
}

impl rdkafka::consumer::ConsumerContext for QuietContext {}
