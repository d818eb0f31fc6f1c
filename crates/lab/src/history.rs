//! A run's history in Jepsen's words: every operation is invoked, then completes as `ok` (it
//! happened), `fail` (it did not happen) or `info` (unknown: it may have happened). Faults are
//! operations of the `nemesis` process. Checkers ([`crate::check`]) are pure functions of a
//! history, so a history written to a file can be judged again, or a history recorded against a
//! real cluster judged by the same code.
//!
//! Two operations are observations rather than requests, and are recorded as a completion only:
//! `process` (the consumer handed a record to its processing; the invocation is the poll, which
//! is not recorded) and `fault` (the proxy injected a fault; recorded as `info`, the way Jepsen
//! records nemesis actions). The format is drawn in `docs/lab.md`.

use std::io::{BufRead, Write};
use std::sync::Mutex;
use std::time::Instant;

use serde::{Deserialize, Serialize};

/// How an operation line reads: its invocation or one of the three completions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Invoke,
    Ok,
    Fail,
    Info,
}

/// Who performed an operation. A crashed consumer comes back as a new instance, the way Jepsen
/// gives a crashed client a new process number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Process {
    Producer,
    Consumer(u32),
    Nemesis,
}

/// What an operation is about, with its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "f", rename_all = "snake_case")]
pub enum Event {
    /// Record `id` handed to the producer (invoke) and its outcome. `partition` and `offset`
    /// are known on `ok` (offset -1 under `acks=0`); `txn` names the transaction it was sent in.
    Send {
        id: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        partition: Option<i32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<i64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        txn: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The consumer processed record `id` read at `partition`/`offset`. `applied` is false when
    /// the idempotent consumer recognised a duplicate and skipped the effect.
    Process {
        id: u64,
        partition: i32,
        offset: i64,
        applied: bool,
    },
    /// A consumer commit of (partition, next offset) pairs.
    Commit {
        offsets: Vec<(i32, i64)>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A transaction (exactly-once): invoked with the ids it carries; `ok` committed, `fail`
    /// aborted, `info` unknown.
    Txn {
        txn: u64,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        ids: Vec<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A fault the proxy injected into one frame or connection.
    Fault {
        fault: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        api_key: Option<i16>,
        direction: String,
        connection: u64,
    },
    /// The fault plan of the profile starts (invoke, info) or is lifted (`heal`).
    StartFaults {
        plan: String,
    },
    Heal {},
    /// `kill -9` of the broker process.
    KillBroker {},
    RestartBroker {},
    /// A consumer instance dies between processing and commit.
    CrashConsumer {
        instance: u32,
    },
    /// The producer dies inside an open transaction.
    CrashProducer {},
    /// A consumer instance joins the group mid-run (the rebalance profile), and leaves it.
    JoinConsumer {
        instance: u32,
    },
    LeaveConsumer {
        instance: u32,
    },
}

/// One line of a history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, from 0.
    pub index: u64,
    /// Microseconds since the run started.
    pub time_us: u64,
    #[serde(rename = "type")]
    pub kind: Kind,
    pub process: Process,
    #[serde(flatten)]
    pub event: Event,
}

/// Collects operations from several threads (producer, librdkafka's delivery thread, consumer,
/// nemesis) in one order. The time is read under the lock, so times never go backwards along
/// the history.
#[derive(Debug)]
pub struct Recorder {
    origin: Instant,
    ops: Mutex<Vec<Op>>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder {
            origin: Instant::now(),
            ops: Mutex::new(Vec::new()),
        }
    }

    /// The instant the history's times count from.
    pub fn origin(&self) -> Instant {
        self.origin
    }

    pub fn now_us(&self) -> u64 {
        micros_since(self.origin, Instant::now())
    }

    /// Appends an operation and returns its time.
    pub fn record(&self, kind: Kind, process: Process, event: Event) -> u64 {
        let mut ops = self.ops.lock().expect("history lock poisoned");
        let time_us = self.now_us();
        let index = ops.len() as u64;
        ops.push(Op {
            index,
            time_us,
            kind,
            process,
            event,
        });
        time_us
    }

    /// The history so far.
    pub fn snapshot(&self) -> Vec<Op> {
        self.ops.lock().expect("history lock poisoned").clone()
    }

    pub fn into_ops(self) -> Vec<Op> {
        self.ops.into_inner().expect("history lock poisoned")
    }
}

impl Default for Recorder {
    fn default() -> Recorder {
        Recorder::new()
    }
}

/// Microseconds from `origin` to `at`, 0 if `at` is earlier.
pub fn micros_since(origin: Instant, at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(origin).as_micros()).unwrap_or(u64::MAX)
}

/// Adds operations recorded elsewhere (the proxy's faults) and restores one order by time,
/// keeping the recorded order among equal times, then renumbers.
pub fn merge(mut ops: Vec<Op>, more: Vec<Op>) -> Vec<Op> {
    ops.extend(more);
    ops.sort_by_key(|op| op.time_us);
    for (index, op) in ops.iter_mut().enumerate() {
        op.index = index as u64;
    }
    ops
}

/// Writes a history as JSON lines, one operation per line.
pub fn write_jsonl(ops: &[Op], out: &mut impl Write) -> std::io::Result<()> {
    for op in ops {
        serde_json::to_writer(&mut *out, op)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Reads a history written by [`write_jsonl`]; blank lines are skipped.
pub fn read_jsonl(input: impl BufRead) -> Result<Vec<Op>, String> {
    let mut ops = Vec::new();
    for (number, line) in input.lines().enumerate() {
        let line = line.map_err(|e| format!("line {}: {e}", number + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let op = serde_json::from_str(&line).map_err(|e| format!("line {}: {e}", number + 1))?;
        ops.push(op);
    }
    Ok(ops)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;

    #[test]
    fn json_lines_format() {
        let ops = vec![
            Op {
                index: 0,
                time_us: 10,
                kind: Kind::Invoke,
                process: Process::Producer,
                event: Event::Send {
                    id: 7,
                    partition: None,
                    offset: None,
                    txn: None,
                    error: None,
                },
            },
            Op {
                index: 1,
                time_us: 900,
                kind: Kind::Ok,
                process: Process::Producer,
                event: Event::Send {
                    id: 7,
                    partition: Some(1),
                    offset: Some(42),
                    txn: None,
                    error: None,
                },
            },
            Op {
                index: 2,
                time_us: 950,
                kind: Kind::Info,
                process: Process::Nemesis,
                event: Event::Fault {
                    fault: "drop_frame".into(),
                    api_key: Some(0),
                    direction: "response".into(),
                    connection: 3,
                },
            },
            Op {
                index: 3,
                time_us: 1200,
                kind: Kind::Ok,
                process: Process::Consumer(0),
                event: Event::Process {
                    id: 7,
                    partition: 1,
                    offset: 42,
                    applied: true,
                },
            },
            Op {
                index: 4,
                time_us: 1300,
                kind: Kind::Info,
                process: Process::Nemesis,
                event: Event::KillBroker {},
            },
        ];
        let mut out = Vec::new();
        write_jsonl(&ops, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        expect![[r#"
            {"index":0,"time_us":10,"type":"invoke","process":"producer","f":"send","id":7}
            {"index":1,"time_us":900,"type":"ok","process":"producer","f":"send","id":7,"partition":1,"offset":42}
            {"index":2,"time_us":950,"type":"info","process":"nemesis","f":"fault","fault":"drop_frame","api_key":0,"direction":"response","connection":3}
            {"index":3,"time_us":1200,"type":"ok","process":{"consumer":0},"f":"process","id":7,"partition":1,"offset":42,"applied":true}
            {"index":4,"time_us":1300,"type":"info","process":"nemesis","f":"kill_broker"}
        "#]]
        .assert_eq(&text);
        assert_eq!(read_jsonl(text.as_bytes()).unwrap(), ops);
    }

    #[test]
    fn merge_orders_by_time_and_renumbers() {
        let op = |time_us, id| Op {
            index: 99,
            time_us,
            kind: Kind::Invoke,
            process: Process::Producer,
            event: Event::Send {
                id,
                partition: None,
                offset: None,
                txn: None,
                error: None,
            },
        };
        let merged = merge(vec![op(1, 1), op(5, 2)], vec![op(3, 3), op(5, 4)]);
        let order: Vec<(u64, u64)> = merged
            .iter()
            .map(|o| match o.event {
                Event::Send { id, .. } => (o.index, id),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(order, vec![(0, 1), (1, 3), (2, 2), (3, 4)]);
    }
}
