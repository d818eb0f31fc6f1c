//! One transaction of the exactly-once producer: fresh records (paced, then burst) until the
//! commit interval is due, or a failed transaction's records again; then commit, or abort.

use std::iter::Peekable;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use client::commit::Window;
use client::{ClientError, CommitPolicy};
use rdkafka::error::KafkaError;
use rdkafka::producer::BaseRecord;

use super::{Producer, TXN_COMMIT_RETRIES};
use crate::history::{Event, Kind, Process, Recorder};
use crate::runner::{RunSpec, Shared};

/// How a transaction attempt ended.
pub(super) enum TxnEnd {
    Committed,
    /// The producer-crash nemesis struck with the transaction open (its records flushed).
    Crashed,
    /// Aborted (the abort was acknowledged): its records must be sent again.
    Aborted(String),
    /// Outcome unknown (a fatal error, a failed abort): a new producer instance fences this one.
    Unknown(String),
}

/// The records a run still has to send: fresh ones from the workload, paced then burst, or the
/// records of a transaction that did not commit, sent again all at once.
pub(super) struct Feed<I: Iterator<Item = u64>> {
    pub(super) fresh: Peekable<I>,
    /// When each paced record is due.
    pub(super) started: Instant,
    pub(super) paced_records: u64,
    pub(super) rate_per_second: u64,
}

impl<I: Iterator<Item = u64>> Feed<I> {
    fn due(&self, id: u64) -> Option<Instant> {
        (id < self.paced_records).then(|| {
            self.started + Duration::from_micros(id * 1_000_000 / self.rate_per_second.max(1))
        })
    }
}

/// One attempt at committing a window of records in a transaction.
pub(super) struct TxnAttempt<'a> {
    pub(super) producer: &'a Producer,
    pub(super) spec: &'a RunSpec,
    pub(super) recorder: &'a Recorder,
    pub(super) shared: &'a Shared,
    pub(super) txn: u64,
    pub(super) policy: CommitPolicy,
    /// The record after whose send the producer dies, if this run crashes it.
    pub(super) crash_at: Option<u64>,
    pub(super) consumer_crash_at: &'a [u64],
}

impl TxnAttempt<'_> {
    /// Sends `again` (a transaction's records that did not commit) if it is not empty, else
    /// fresh records from `feed` until the window is due, and ends the transaction. Returns how
    /// it ended and the ids it sent.
    pub(super) fn run<I: Iterator<Item = u64>>(
        &self,
        feed: &mut Feed<I>,
        again: Vec<u64>,
    ) -> (TxnEnd, Vec<u64>) {
        if let Err(error) = self.producer.begin() {
            return (TxnEnd::Unknown(format!("{error}")), again);
        }
        let mut sent = Vec::new();
        let end = if again.is_empty() {
            self.send_fresh(feed, &mut sent)
        } else {
            self.send_again(&again, &mut sent)
        };
        let end = end.unwrap_or_else(|| self.commit());
        (end, sent)
    }

    /// Sends fresh records, pacing the paced ones, until the window is due; `Some` if the
    /// transaction ended early.
    fn send_fresh<I: Iterator<Item = u64>>(
        &self,
        feed: &mut Feed<I>,
        sent: &mut Vec<u64>,
    ) -> Option<TxnEnd> {
        let window = Window::open(Instant::now());
        let deadline = window.opened + self.policy.interval;
        while let Some(&id) = feed.fresh.peek() {
            if !sent.is_empty() && self.policy.due(window.opened, sent.len(), Instant::now()) {
                break;
            }
            if let Some(due) = feed.due(id) {
                // A paced record due after the window's deadline waits for the next window:
                // the transaction commits on time rather than idling open.
                if !sent.is_empty() && due > deadline {
                    sleep_until(deadline);
                    break;
                }
                sleep_until(due);
            }
            feed.fresh.next();
            if self.consumer_crash_at.contains(&id) {
                self.shared
                    .crashes_requested
                    .fetch_add(1, Ordering::Relaxed);
            }
            sent.push(id);
            if let Some(end) = self.send(id) {
                return Some(end);
            }
            if self.crash_at == Some(id) {
                // The records sent so far reach the log; the transaction's end never comes.
                let _ = self.producer.flush();
                return Some(TxnEnd::Crashed);
            }
        }
        None
    }

    fn send_again(&self, again: &[u64], sent: &mut Vec<u64>) -> Option<TxnEnd> {
        for &id in again {
            sent.push(id);
            if let Some(end) = self.send(id) {
                return Some(end);
            }
        }
        None
    }

    /// Sends one record in the transaction; `Some` if the send failed and ended it.
    fn send(&self, id: u64) -> Option<TxnEnd> {
        let params = &self.spec.params;
        let workload = self.spec.row.workload();
        let invoke = Event::Send {
            id,
            partition: None,
            offset: None,
            txn: Some(self.txn),
            error: None,
        };
        self.recorder
            .record(Kind::Invoke, Process::Producer, invoke);
        let key = workload.key(id);
        let payload = workload.payload(id, params.payload_bytes);
        let record = BaseRecord::with_opaque_to(&self.spec.topic, Box::new((id, self.txn)))
            .key(key.as_bytes())
            .payload(&payload);
        let error = self.producer.send_record(record).err()?;
        let event = Event::Send {
            id,
            partition: None,
            offset: None,
            txn: Some(self.txn),
            error: Some(error.to_string()),
        };
        self.recorder.record(Kind::Fail, Process::Producer, event);
        Some(self.abort(format!("send: {error}")))
    }

    fn commit(&self) -> TxnEnd {
        let mut retries = 0;
        loop {
            let Err(error) = self.producer.commit() else {
                return TxnEnd::Committed;
            };
            let txn_error = match &error {
                ClientError::Kafka {
                    source: KafkaError::Transaction(e),
                    ..
                } => Some(e),
                _ => None,
            };
            if txn_error.is_some_and(|e| e.is_retriable()) && retries < TXN_COMMIT_RETRIES {
                retries += 1;
                continue;
            }
            if txn_error.is_some_and(|e| e.txn_requires_abort()) {
                return self.abort(format!("{error}"));
            }
            return TxnEnd::Unknown(format!("{error}"));
        }
    }

    fn abort(&self, reason: String) -> TxnEnd {
        match self.producer.abort() {
            Ok(()) => TxnEnd::Aborted(reason),
            Err(error) => TxnEnd::Unknown(format!("{reason}; {error}")),
        }
    }
}

fn sleep_until(at: Instant) {
    if let Some(wait) = at.checked_duration_since(Instant::now()) {
        std::thread::sleep(wait);
    }
}
