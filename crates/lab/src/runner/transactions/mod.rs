//! The exactly-once producer of the exactly-once and sink rows: the workload's records in
//! transactions that commit on the run's commit interval (`--commit-interval`, 100 ms by
//! default, as Kafka Streams' exactly-once `commit.interval.ms`), through the client library's
//! [`client::transactional::TxnProducer`], with every send and transaction in the history.
//!
//! ```text
//! begin ─ send records (paced, then burst) until the window is due ─ commit
//!              └─ abort, or an unknown outcome: the same records again in a new transaction
//! ```
//!
//! Under the producer-crash profile the producer dies inside a transaction (its records flushed
//! to the log) and a new instance with the same transactional id takes over, fencing it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use client::transactional::TxnProducer;
use client::Settings;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

use super::client_log::ClientLog;
use super::settings::{self, PRODUCER_SETTINGS};
use super::{ProgressFn, Run, RunSpec, Shared};
use crate::history::{Event, Kind, Process, Recorder};
use crate::profile::Profile;

mod attempt;

use attempt::{Feed, TxnAttempt, TxnEnd};

/// Time allowed for each transaction call (init, flush, commit, abort).
const TXN_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a transaction's records are re-sent in a new transaction before the run gives up.
const TXN_ATTEMPTS_MAX: u32 = 20;
/// How often a commit that failed with a retriable error is retried.
const TXN_COMMIT_RETRIES: u32 = 5;

/// The transactional producer's librdkafka context: records every delivery report as the
/// completion of a send, with its transaction; librdkafka's messages go to the run's client
/// log.
struct TxnContext {
    recorder: Arc<Recorder>,
    client_log: Arc<ClientLog>,
}

impl rdkafka::ClientContext for TxnContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        self.client_log
            .log("transactional producer", level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.client_log
            .error("transactional producer", &error, reason);
    }
}

impl rdkafka::producer::ProducerContext for TxnContext {
    type DeliveryOpaque = Box<(u64, u64)>;

    fn delivery(
        &self,
        result: &rdkafka::message::DeliveryResult<'_>,
        opaque: Self::DeliveryOpaque,
    ) {
        use rdkafka::Message as _;
        let (id, txn) = *opaque;
        // A failed delivery inside a transaction may still have reached the log (aborted with
        // its transaction): unknown.
        let (kind, partition, offset, error) = match result {
            Ok(message) => (
                Kind::Ok,
                Some(message.partition()),
                Some(message.offset()),
                None,
            ),
            Err((error, _)) => (Kind::Info, None, None, Some(error.to_string())),
        };
        let event = Event::Send {
            id,
            partition,
            offset,
            txn: Some(txn),
            error,
        };
        self.recorder.record(kind, Process::Producer, event);
    }
}

type Producer = TxnProducer<TxnContext>;

/// Creates a transactional producer and registers its transactional id, which fences any
/// previous instance and aborts its open transaction.
fn new_txn_producer(
    settings: &Settings,
    recorder: &Arc<Recorder>,
    client_log: &Arc<ClientLog>,
) -> Result<Producer> {
    let settings = settings::with(settings.clone(), PRODUCER_SETTINGS);
    let context = TxnContext {
        recorder: recorder.clone(),
        client_log: client_log.clone(),
    };
    TxnProducer::with_context(&settings, context, TXN_CALL_TIMEOUT)
        .context("create the transactional producer")
}

/// The exactly-once producer: the paced records, then the burst, in transactions that commit
/// when `spec.params`' commit interval is due; a transaction that did not commit is sent again
/// in a new one.
pub(crate) fn produce_transactions(run: &Run<'_>) -> Result<()> {
    let (spec, recorder, client_log) = (run.spec, &run.recorder, &run.client_log);
    let params = &spec.params;
    let settings = run
        .settings
        .clone()
        .transactional_id(format!("{}-txn", spec.group));
    let mut producer = TxnRun {
        producer: Some(new_txn_producer(&settings, recorder, client_log)?),
        settings,
        spec,
        recorder,
        client_log,
        shared: &run.shared,
        progress: run.progress,
        consumer_crash_at: crashes_at(spec, Profile::ConsumerCrash),
        producer_crash_at: crashes_at(spec, Profile::ProducerCrash),
    };
    // The pace starts once the producer is ready: its init is not the records' latency.
    let mut feed = Feed {
        fresh: params.paced_ids().chain(params.burst_ids()).peekable(),
        started: Instant::now(),
        paced_records: params.paced_records,
        rate_per_second: params.rate_per_second,
    };
    let mut txn = 0u64;
    let mut again: Vec<u64> = Vec::new();
    let mut attempts = 0;
    while !again.is_empty() || feed.fresh.peek().is_some() {
        attempts = if again.is_empty() { 1 } else { attempts + 1 };
        if attempts > TXN_ATTEMPTS_MAX {
            bail!(
                "records {}.. did not commit in {TXN_ATTEMPTS_MAX} transactions",
                again[0]
            );
        }
        txn += 1;
        let event = Event::Txn {
            txn,
            ids: again.clone(),
            error: None,
        };
        recorder.record(Kind::Invoke, Process::Producer, event);
        again = producer.transaction(txn, &mut feed, std::mem::take(&mut again))?;
    }
    Ok(())
}

/// Where the profile crashes the producer or a consumer: after these record ids, spread
/// evenly over the paced records; none if the run's profile is not `profile`.
fn crashes_at(spec: &RunSpec, profile: Profile) -> Vec<u64> {
    if spec.profile != profile {
        return Vec::new();
    }
    let params = &spec.params;
    let n = u64::from(params.consumer_crashes);
    (1..=n)
        .map(|k| params.paced_records * k / (n + 1))
        .collect()
}

/// The exactly-once producer of one run, from one transaction to the next.
struct TxnRun<'a> {
    /// None only while one instance dies and the next starts.
    producer: Option<Producer>,
    /// With the run's transactional id: a new instance fences the previous one.
    settings: Settings,
    spec: &'a RunSpec,
    recorder: &'a Arc<Recorder>,
    client_log: &'a Arc<ClientLog>,
    shared: &'a Shared,
    progress: ProgressFn<'a>,
    consumer_crash_at: Vec<u64>,
    /// Producer crashes still to come.
    producer_crash_at: Vec<u64>,
}

impl TxnRun<'_> {
    /// Transaction `txn`: `again` if not empty, else fresh records; returns the records to
    /// send again (none once it committed).
    fn transaction<I: Iterator<Item = u64>>(
        &mut self,
        txn: u64,
        feed: &mut Feed<I>,
        again: Vec<u64>,
    ) -> Result<Vec<u64>> {
        let attempt = TxnAttempt {
            producer: self
                .producer
                .as_ref()
                .context("no producer between transactions")?,
            spec: self.spec,
            recorder: self.recorder,
            shared: self.shared,
            txn,
            policy: self.spec.params.commit_policy(),
            crash_at: self.producer_crash_at.first().copied(),
            consumer_crash_at: &self.consumer_crash_at,
        };
        let (end, sent) = attempt.run(feed, again);
        let txn_end = |kind: Kind, error: Option<String>| {
            let ids = if kind == Kind::Ok {
                sent.clone()
            } else {
                Vec::new()
            };
            let event = Event::Txn { txn, ids, error };
            self.recorder.record(kind, Process::Producer, event);
        };
        match end {
            TxnEnd::Committed => {
                txn_end(Kind::Ok, None);
                if let Some(&last) = sent.last() {
                    (self.progress)("transactions", last + 1);
                }
                return Ok(Vec::new());
            }
            TxnEnd::Aborted(error) => txn_end(Kind::Fail, Some(error)),
            TxnEnd::Crashed => {
                self.crash()?;
                // The successor's InitProducerId fenced the crashed instance and aborted its
                // open transaction.
                let error = "the producer crashed; its successor's init aborted the transaction";
                txn_end(Kind::Fail, Some(error.into()));
            }
            TxnEnd::Unknown(error) => {
                txn_end(Kind::Info, Some(error));
                self.producer = None;
                self.producer = Some(new_txn_producer(
                    &self.settings,
                    self.recorder,
                    self.client_log,
                )?);
            }
        }
        Ok(sent)
    }

    /// The producer-crash nemesis: the producer dies, a new instance takes over its
    /// transactional id.
    fn crash(&mut self) -> Result<()> {
        self.producer_crash_at.remove(0);
        let recorder = self.recorder;
        recorder.record(Kind::Invoke, Process::Nemesis, Event::CrashProducer {});
        self.producer = None;
        recorder.record(Kind::Info, Process::Nemesis, Event::CrashProducer {});
        self.producer = Some(new_txn_producer(&self.settings, recorder, self.client_log)?);
        Ok(())
    }
}
