//! The plain producer of the at-most-once and at-least-once rows, which also sends every run's
//! warm-up and drain records: each send an operation of the history, completed by its delivery
//! report.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::{Delivery, DeliveryHandler, Guarantee, Producer};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use super::client_log::ClientLog;
use super::settings::{self, PRODUCER_SETTINGS};
use super::{
    Run, RunSpec, ASSIGNMENT_TIMEOUT, DRAIN_REQUEST_TIMEOUT, PARTITIONS_MAX, WARM_UP_KEY,
    WARM_UP_TAG,
};
use crate::history::{Event, Kind, Process, Recorder};
use crate::profile::Profile;
use crate::workload::Workload;

/// Records every delivery report as the completion of a send; librdkafka's messages go to the
/// run's client log.
pub(crate) struct SendRecorder {
    recorder: Arc<Recorder>,
    client_log: Arc<ClientLog>,
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

    fn client_error(&self, error: &KafkaError, reason: &str) {
        self.client_log.error("producer", error, reason);
    }

    fn client_log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.client_log.log("producer", level, fac, message);
    }
}

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

/// A producer with `guarantee` whose delivery reports complete the run's sends.
pub(crate) fn new_producer(run: &Run<'_>, guarantee: Guarantee) -> Result<Producer<SendRecorder>> {
    let settings = settings::with(run.settings.clone(), PRODUCER_SETTINGS);
    let handler = SendRecorder {
        recorder: run.recorder.clone(),
        client_log: run.client_log.clone(),
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

/// Sends one record with `key` (a warm-up or drain mark) to each partition, outside the
/// history: its tag is above every record id, so its delivery report is not recorded.
pub(crate) fn send_marks(
    producer: &Producer<SendRecorder>,
    spec: &RunSpec,
    key: &[u8],
) -> Result<()> {
    let what = if key == WARM_UP_KEY {
        "warm-up"
    } else {
        "drain"
    };
    for partition in 0..spec.params.partitions {
        let tag = WARM_UP_TAG - partition as usize;
        while let Err(error) = producer.send(&spec.topic, Some(partition), key, b"", tag) {
            if !error.is_queue_full() {
                bail!("send a {what} record: {error}");
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    Ok(())
}

/// Sends the paced records, then the burst; asks for consumer crashes along the way.
pub(crate) fn produce(producer: &Producer<SendRecorder>, run: &Run<'_>) {
    let (spec, recorder, shared, progress) = (run.spec, &*run.recorder, &run.shared, run.progress);
    let params = &spec.params;
    let crash_at: Vec<u64> = if spec.profile == Profile::ConsumerCrash {
        let n = u64::from(params.consumer_crashes);
        (1..=n)
            .map(|k| params.paced_records * k / (n + 1))
            .collect()
    } else {
        Vec::new()
    };
    let send = |id| {
        let workload = spec.row.workload();
        send(
            producer,
            workload,
            &spec.topic,
            id,
            params.payload_bytes,
            recorder,
        );
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
        send(id);
        if id % 100 == 0 {
            progress("paced", id);
        }
    }
    for id in params.burst_ids() {
        send(id);
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
