//! Pure checkers: each is a function of a history (and, where needed, the run's id ranges), with
//! no I/O and no clock, so the same code judges a run in this process, a history read back from
//! a file, and a history recorded against a real cluster.
//!
//! Words, per record id:
//! - **expected**: sent at least once outside an aborted transaction; it should be processed.
//! - **lost**: expected and never processed.
//! - **duplicated**: processings beyond the first.
//! - **reordered**: on one partition, processed for the first time after a record sent later.
//! - **aborted read**: a record written by an aborted transaction was processed.
//! - **phantom**: processed but never sent.
//!
//! "Processed" depends on the [`View`]: every delivery to the processing step, or only those the
//! idempotent consumer applied.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::history::{Event, Kind, Op};

/// Examples kept per kind of anomaly, so a report can name records without growing.
pub const EXAMPLES_MAX: usize = 10;

/// Which consumer operations count as processing a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum View {
    /// Every record handed to the processing step: what a consumer without deduplication does.
    Deliveries,
    /// Only records whose effect ran (`applied`): what the idempotent consumer does.
    Effects,
}

/// A few record ids per anomaly.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Examples {
    pub lost: Vec<u64>,
    pub duplicated: Vec<u64>,
    pub reordered: Vec<u64>,
    pub aborted_reads: Vec<u64>,
}

/// What the delivery checker counts.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    /// Distinct ids the producer was asked to send.
    pub sent: u64,
    /// Distinct ids by the outcome of their last send: ok, fail, info (or never completed).
    pub send_ok: u64,
    pub send_fail: u64,
    pub send_info: u64,
    /// Ids sent only inside aborted transactions: they must not be processed.
    pub aborted: u64,
    pub expected: u64,
    /// Distinct ids processed.
    pub processed: u64,
    /// Processings counted (the view's operations).
    pub processings: u64,
    pub lost: u64,
    /// Lost ids by the outcome the producer heard.
    pub lost_after_ok: u64,
    pub lost_after_fail: u64,
    pub lost_after_info: u64,
    pub duplicated: u64,
    /// Deliveries the idempotent consumer recognised and skipped.
    pub dedup_skipped: u64,
    pub reordered: u64,
    pub aborted_reads: u64,
    pub phantom: u64,
    pub examples: Examples,
}

#[derive(Default)]
struct SendState {
    last: Option<Kind>,
    /// Whether some send of this id was outside any aborted transaction.
    expected: bool,
}

/// Counts loss, duplicates, reordering and aborted reads in `history` under `view`.
pub fn counts(history: &[Op], view: View) -> Counts {
    let aborted_txns = txns_with(history, Kind::Fail);
    let mut sends: BTreeMap<u64, SendState> = BTreeMap::new();
    // Where each aborted transaction's records landed, to recognise them when read.
    let mut aborted_positions: HashSet<(i32, i64)> = HashSet::new();
    let mut processed: HashMap<u64, u64> = HashMap::new();
    let mut out = Counts::default();
    let mut max_first_per_partition: HashMap<i32, u64> = HashMap::new();
    for op in history {
        match &op.event {
            Event::Send {
                id,
                txn,
                partition,
                offset,
                ..
            } => {
                let in_aborted = txn.is_some_and(|t| aborted_txns.contains(&t));
                let state = sends.entry(*id).or_default();
                if op.kind == Kind::Invoke {
                    state.expected |= !in_aborted;
                } else {
                    state.last = Some(op.kind);
                }
                if let (Kind::Ok, true, Some(p), Some(o)) = (op.kind, in_aborted, partition, offset)
                {
                    aborted_positions.insert((*p, *o));
                }
            }
            Event::Process {
                id,
                partition,
                offset,
                applied,
            } => {
                if !applied {
                    out.dedup_skipped += 1;
                }
                if aborted_positions.contains(&(*partition, *offset)) {
                    out.aborted_reads += 1;
                    push_example(&mut out.examples.aborted_reads, *id);
                }
                if view == View::Effects && !applied {
                    continue;
                }
                out.processings += 1;
                let seen = processed.entry(*id).or_insert(0);
                *seen += 1;
                if *seen > 1 {
                    out.duplicated += 1;
                    push_example(&mut out.examples.duplicated, *id);
                    continue;
                }
                // First processing: ids are sent in increasing order, so a smaller id after a
                // larger one on the same partition was overtaken.
                let max = max_first_per_partition.entry(*partition).or_insert(*id);
                if *id < *max {
                    out.reordered += 1;
                    push_example(&mut out.examples.reordered, *id);
                }
                *max = (*max).max(*id);
            }
            _ => {}
        }
    }
    out.sent = sends.len() as u64;
    for (id, state) in &sends {
        match state.last {
            Some(Kind::Ok) => out.send_ok += 1,
            Some(Kind::Fail) => out.send_fail += 1,
            _ => out.send_info += 1,
        }
        if !state.expected {
            out.aborted += 1;
            continue;
        }
        out.expected += 1;
        if processed.contains_key(id) {
            continue;
        }
        out.lost += 1;
        push_example(&mut out.examples.lost, *id);
        match state.last {
            Some(Kind::Ok) => out.lost_after_ok += 1,
            Some(Kind::Fail) => out.lost_after_fail += 1,
            _ => out.lost_after_info += 1,
        }
    }
    out.processed = processed.len() as u64;
    out.phantom = processed
        .keys()
        .filter(|id| !sends.contains_key(id))
        .count() as u64;
    out
}

fn txns_with(history: &[Op], kind: Kind) -> HashSet<u64> {
    history
        .iter()
        .filter(|op| op.kind == kind)
        .filter_map(|op| match op.event {
            Event::Txn { txn, .. } => Some(txn),
            _ => None,
        })
        .collect()
}

fn push_example(examples: &mut Vec<u64>, id: u64) {
    if examples.len() < EXAMPLES_MAX {
        examples.push(id);
    }
}

/// Send-to-processed latency percentiles, in microseconds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Latency {
    pub samples: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

/// For the ids in `ids`, the time from the send's invocation to the first processing.
pub fn latency(history: &[Op], ids: Range<u64>) -> Option<Latency> {
    let (invoked, first_processed) = first_times(history, &ids);
    let samples: Vec<u64> = first_processed
        .iter()
        .filter_map(|(id, done)| Some(done.saturating_sub(*invoked.get(id)?)))
        .collect();
    latency_of(samples)
}

/// The percentiles of latency `samples` (microseconds); `None` without samples.
pub fn latency_of(mut samples: Vec<u64>) -> Option<Latency> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    Some(Latency {
        samples: samples.len() as u64,
        p50_us: percentile(&samples, 0.50),
        p99_us: percentile(&samples, 0.99),
        p999_us: percentile(&samples, 0.999),
        max_us: *samples.last().expect("not empty"),
    })
}

/// Nearest-rank percentile of sorted, non-empty `samples`.
fn percentile(samples: &[u64], q: f64) -> u64 {
    let rank = (q * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

/// Records processed per second for the ids in `ids`, from the first send's invocation to the
/// last first processing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub records: u64,
    pub elapsed_us: u64,
    pub per_second: f64,
}

pub fn throughput(history: &[Op], ids: Range<u64>) -> Option<Throughput> {
    let (invoked, first_processed) = first_times(history, &ids);
    Throughput::over(
        first_processed.len() as u64,
        *invoked.values().min()?,
        *first_processed.values().max()?,
    )
}

impl Throughput {
    /// `records` between `start_us` and `end_us`; `None` over no time.
    fn over(records: u64, start_us: u64, end_us: u64) -> Option<Throughput> {
        let elapsed_us = end_us.saturating_sub(start_us);
        if elapsed_us == 0 {
            return None;
        }
        Some(Throughput {
            records,
            elapsed_us,
            per_second: records as f64 * 1e6 / elapsed_us as f64,
        })
    }
}

/// Records acknowledged per second for the ids in `ids`, from the first send's invocation to the
/// last first acknowledgement: the producer's side of the pipeline alone. Beside [`throughput`]
/// (send to processed) it tells which side limits a row's rate. Under `acks=0` an
/// acknowledgement means written to the socket.
pub fn acked_throughput(history: &[Op], ids: Range<u64>) -> Option<Throughput> {
    let mut start: Option<u64> = None;
    let mut acked: HashMap<u64, u64> = HashMap::new();
    for op in history {
        let Event::Send { id, .. } = op.event else {
            continue;
        };
        if !ids.contains(&id) {
            continue;
        }
        match op.kind {
            Kind::Invoke => start = Some(start.map_or(op.time_us, |s| s.min(op.time_us))),
            Kind::Ok => {
                acked.entry(id).or_insert(op.time_us);
            }
            _ => {}
        }
    }
    Throughput::over(acked.len() as u64, start?, *acked.values().max()?)
}

/// Invocation time and first processing time of each id in `ids` (any delivery counts).
fn first_times(history: &[Op], ids: &Range<u64>) -> (HashMap<u64, u64>, HashMap<u64, u64>) {
    let mut invoked = HashMap::new();
    let mut first_processed = HashMap::new();
    for op in history {
        match op.event {
            Event::Send { id, .. } if op.kind == Kind::Invoke && ids.contains(&id) => {
                invoked.entry(id).or_insert(op.time_us);
            }
            Event::Process { id, .. } if ids.contains(&id) => {
                first_processed.entry(id).or_insert(op.time_us);
            }
            _ => {}
        }
    }
    (invoked, first_processed)
}

/// The faults a history records, by kind. A fault profile whose history has none did not act.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Faults {
    /// Faults injected (proxy faults, kills, crashes); restarts and heals are not faults.
    pub injected: u64,
    pub by_kind: BTreeMap<String, u64>,
}

impl Faults {
    /// Each kind with its count, "3 × kill -9 broker", in kind order.
    pub fn listed(&self) -> Vec<String> {
        self.by_kind
            .iter()
            .map(|(kind, n)| format!("{n} × {kind}"))
            .collect()
    }
}

pub fn faults(history: &[Op]) -> Faults {
    let mut out = Faults::default();
    for op in history {
        if op.kind == Kind::Invoke {
            continue;
        }
        let (kind, injected) = match &op.event {
            Event::Fault {
                fault,
                api_key,
                direction,
                ..
            } => (format!("{fault} {} {direction}", api_name(*api_key)), true),
            Event::KillBroker {} => ("kill -9 broker".to_string(), true),
            Event::RestartBroker {} => ("restart broker".to_string(), false),
            Event::CrashConsumer { .. } => ("crash consumer".to_string(), true),
            Event::CrashProducer {} => ("crash producer".to_string(), true),
            Event::JoinConsumer { .. } => ("consumer joins group".to_string(), true),
            Event::LeaveConsumer { .. } => ("consumer leaves group".to_string(), true),
            _ => continue,
        };
        out.injected += u64::from(injected);
        *out.by_kind.entry(kind).or_insert(0) += 1;
    }
    out
}

/// A Kafka API's name for fault summaries.
pub fn api_name(api_key: Option<i16>) -> &'static str {
    match api_key {
        None => "unknown",
        Some(0) => "produce",
        Some(1) => "fetch",
        Some(2) => "list_offsets",
        Some(3) => "metadata",
        Some(8) => "offset_commit",
        Some(9) => "offset_fetch",
        Some(10) => "find_coordinator",
        Some(11) => "join_group",
        Some(12) => "heartbeat",
        Some(13) => "leave_group",
        Some(14) => "sync_group",
        Some(18) => "api_versions",
        Some(19) => "create_topics",
        Some(22) => "init_producer_id",
        Some(24) => "add_partitions_to_txn",
        Some(25) => "add_offsets_to_txn",
        Some(26) => "end_txn",
        Some(28) => "txn_offset_commit",
        Some(_) => "other",
    }
}

/// One ledger transfer: `amount` moves from account `from` to account `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub from: u32,
    pub to: u32,
    pub amount: i64,
}

/// The ledger invariant: money is neither created nor destroyed, and every account holds what
/// the transfers that should have happened, each applied once, leave in it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub total_initial: i64,
    pub total_observed: i64,
    /// Accounts whose balance differs from the expected one.
    pub accounts_off: u32,
    pub holds: bool,
}

/// Replays the applied transfers of `history` over `accounts` accounts holding `initial` each.
/// `transfer` derives a transfer from its record id (the workload's pure generator).
pub fn ledger(
    history: &[Op],
    accounts: u32,
    initial: i64,
    transfer: impl Fn(u64) -> Transfer,
) -> Ledger {
    let counts = counts(history, View::Effects);
    let mut expected = vec![initial; accounts as usize];
    let mut observed = vec![initial; accounts as usize];
    let apply = |balances: &mut Vec<i64>, t: Transfer| {
        balances[t.from as usize] -= t.amount;
        balances[t.to as usize] += t.amount;
    };
    let mut expected_ids = HashSet::new();
    let aborted_txns = txns_with(history, Kind::Fail);
    for op in history {
        match op.event {
            Event::Send { id, txn, .. }
                if op.kind == Kind::Invoke
                    && !txn.is_some_and(|t| aborted_txns.contains(&t))
                    && expected_ids.insert(id) =>
            {
                apply(&mut expected, transfer(id));
            }
            Event::Process {
                id, applied: true, ..
            } => apply(&mut observed, transfer(id)),
            _ => {}
        }
    }
    let total_initial = initial * i64::from(accounts);
    let total_observed = observed.iter().sum();
    let accounts_off = expected
        .iter()
        .zip(&observed)
        .filter(|(e, o)| e != o)
        .count() as u32;
    Ledger {
        total_initial,
        total_observed,
        accounts_off,
        holds: total_observed == total_initial && accounts_off == 0 && counts.aborted_reads == 0,
    }
}

/// Per-bucket counts over a run, for charts: records first sent, records first processed,
/// faults injected, and the times of nemesis actions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeline {
    pub bucket_us: u64,
    pub sent: Vec<u32>,
    pub processed: Vec<u32>,
    pub faults: Vec<u32>,
    /// (time, what) of kills, restarts, crashes, fault start and heal.
    pub marks: Vec<(u64, String)>,
}

pub fn timeline(history: &[Op], bucket_us: u64) -> Timeline {
    assert!(bucket_us > 0, "a bucket has a width");
    let end = history.last().map_or(0, |op| op.time_us);
    let buckets = (end / bucket_us + 1) as usize;
    let mut out = Timeline {
        bucket_us,
        sent: vec![0; buckets],
        processed: vec![0; buckets],
        faults: vec![0; buckets],
        marks: Vec::new(),
    };
    let mut seen = HashSet::new();
    let mut sent = HashSet::new();
    for op in history {
        let bucket = ((op.time_us / bucket_us) as usize).min(buckets - 1);
        match &op.event {
            Event::Send { id, .. } if op.kind == Kind::Invoke && sent.insert(*id) => {
                out.sent[bucket] += 1
            }
            Event::Process { id, .. } if seen.insert(*id) => out.processed[bucket] += 1,
            Event::Fault { .. } => out.faults[bucket] += 1,
            Event::KillBroker {} if op.kind != Kind::Invoke => {
                out.marks.push((op.time_us, "kill -9".into()))
            }
            Event::RestartBroker {} if op.kind != Kind::Invoke => {
                out.marks.push((op.time_us, "restart".into()))
            }
            Event::CrashConsumer { .. } => out.marks.push((op.time_us, "consumer crash".into())),
            Event::CrashProducer {} => out.marks.push((op.time_us, "producer crash".into())),
            Event::JoinConsumer { .. } => out.marks.push((op.time_us, "consumer joins".into())),
            Event::LeaveConsumer { .. } => out.marks.push((op.time_us, "consumer leaves".into())),
            Event::StartFaults { .. } if op.kind != Kind::Invoke => {
                out.marks.push((op.time_us, "faults on".into()))
            }
            Event::Heal {} if op.kind != Kind::Invoke => {
                out.marks.push((op.time_us, "heal".into()))
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Process;
    use expect_test::{expect, Expect};

    /// Parses a history written one operation per line: `TIME_MS TYPE F ARGS`, where
    /// - `send ID [pP oO] [txnN]`
    /// - `process ID pP oO [dup] [cN]` (`dup`: the idempotent consumer skipped it; `cN`: instance)
    /// - `txn N [ID...]`
    /// - `fault NAME API_KEY DIRECTION`, `kill`, `restart`, `crash`
    fn parse(text: &str) -> Vec<Op> {
        let mut ops = Vec::new();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let words: Vec<&str> = line.split_whitespace().collect();
            let time_us = words[0].parse::<u64>().unwrap() * 1000;
            let kind = match words[1] {
                "invoke" => Kind::Invoke,
                "ok" => Kind::Ok,
                "fail" => Kind::Fail,
                "info" => Kind::Info,
                other => panic!("type {other}"),
            };
            let args = &words[3..];
            let tagged = |prefix: &str| {
                args.iter()
                    .find_map(|w| w.strip_prefix(prefix).and_then(|v| v.parse::<i64>().ok()))
            };
            let (process, event) = match words[2] {
                "send" => (
                    Process::Producer,
                    Event::Send {
                        id: args[0].parse().unwrap(),
                        partition: tagged("p").map(|p| p as i32),
                        offset: tagged("o"),
                        txn: tagged("txn").map(|t| t as u64),
                        error: None,
                    },
                ),
                "process" => (
                    Process::Consumer(tagged("c").unwrap_or(0) as u32),
                    Event::Process {
                        id: args[0].parse().unwrap(),
                        partition: tagged("p").unwrap() as i32,
                        offset: tagged("o").unwrap(),
                        applied: !args.contains(&"dup"),
                    },
                ),
                "txn" => (
                    Process::Producer,
                    Event::Txn {
                        txn: args[0].parse().unwrap(),
                        ids: args[1..].iter().map(|w| w.parse().unwrap()).collect(),
                        error: None,
                    },
                ),
                "fault" => (
                    Process::Nemesis,
                    Event::Fault {
                        fault: args[0].into(),
                        api_key: Some(args[1].parse().unwrap()),
                        direction: args[2].into(),
                        connection: 0,
                    },
                ),
                "kill" => (Process::Nemesis, Event::KillBroker {}),
                "restart" => (Process::Nemesis, Event::RestartBroker {}),
                "crash" => (Process::Nemesis, Event::CrashConsumer { instance: 0 }),
                other => panic!("f {other}"),
            };
            ops.push(Op {
                index: ops.len() as u64,
                time_us,
                kind,
                process,
                event,
            });
        }
        ops
    }

    fn summary(c: &Counts) -> String {
        format!(
            "sent {} (ok {} fail {} info {}) aborted {} expected {} processed {} \
             lost {} (after ok {} fail {} info {}) dup {} skipped {} reordered {} \
             aborted_reads {} phantom {} | examples lost {:?} dup {:?} reordered {:?}",
            c.sent,
            c.send_ok,
            c.send_fail,
            c.send_info,
            c.aborted,
            c.expected,
            c.processed,
            c.lost,
            c.lost_after_ok,
            c.lost_after_fail,
            c.lost_after_info,
            c.duplicated,
            c.dedup_skipped,
            c.reordered,
            c.aborted_reads,
            c.phantom,
            c.examples.lost,
            c.examples.duplicated,
            c.examples.reordered,
        )
    }

    /// Checks a history under both views.
    fn check(history: &str, expect: Expect) {
        let ops = parse(history);
        let out = format!(
            "deliveries: {}\neffects:    {}",
            summary(&counts(&ops, View::Deliveries)),
            summary(&counts(&ops, View::Effects))
        );
        expect.assert_eq(&out);
    }

    #[test]
    fn a_clean_history_passes() {
        check(
            "0 invoke send 1
             1 invoke send 2
             5 ok send 1 p0 o0
             5 ok send 2 p0 o1
             7 ok process 1 p0 o0
             7 ok process 2 p0 o1",
            expect![[r#"
                deliveries: sent 2 (ok 2 fail 0 info 0) aborted 0 expected 2 processed 2 lost 0 (after ok 0 fail 0 info 0) dup 0 skipped 0 reordered 0 aborted_reads 0 phantom 0 | examples lost [] dup [] reordered []
                effects:    sent 2 (ok 2 fail 0 info 0) aborted 0 expected 2 processed 2 lost 0 (after ok 0 fail 0 info 0) dup 0 skipped 0 reordered 0 aborted_reads 0 phantom 0 | examples lost [] dup [] reordered []"#]],
        );
    }

    #[test]
    fn at_most_once_loss_must_be_counted() {
        // Record 2 was "delivered" (acks=0) but never processed; record 3's send failed; record 4
        // never completed (the producer was cut off).
        check(
            "0 invoke send 1
             0 invoke send 2
             0 invoke send 3
             0 invoke send 4
             1 ok send 1 p0 o-1
             1 ok send 2 p0 o-1
             2 fail send 3
             3 ok process 1 p0 o0",
            expect![[r#"
                deliveries: sent 4 (ok 2 fail 1 info 1) aborted 0 expected 4 processed 1 lost 3 (after ok 1 fail 1 info 1) dup 0 skipped 0 reordered 0 aborted_reads 0 phantom 0 | examples lost [2, 3, 4] dup [] reordered []
                effects:    sent 4 (ok 2 fail 1 info 1) aborted 0 expected 4 processed 1 lost 3 (after ok 1 fail 1 info 1) dup 0 skipped 0 reordered 0 aborted_reads 0 phantom 0 | examples lost [2, 3, 4] dup [] reordered []"#]],
        );
    }

    #[test]
    fn a_lost_ack_duplicate_must_be_counted_and_the_idempotent_view_absorbs_it() {
        // The broker wrote record 1 twice (ack lost, producer retried); the consumer saw both;
        // with the idempotent consumer the second was skipped.
        check(
            "0 invoke send 1
             0 info fault drop_frame 0 response
             9 ok send 1 p0 o1
             10 ok process 1 p0 o0
             11 ok process 1 p0 o1 dup",
            expect![[r#"
                deliveries: sent 1 (ok 1 fail 0 info 0) aborted 0 expected 1 processed 1 lost 0 (after ok 0 fail 0 info 0) dup 1 skipped 1 reordered 0 aborted_reads 0 phantom 0 | examples lost [] dup [1] reordered []
                effects:    sent 1 (ok 1 fail 0 info 0) aborted 0 expected 1 processed 1 lost 0 (after ok 0 fail 0 info 0) dup 0 skipped 1 reordered 0 aborted_reads 0 phantom 0 | examples lost [] dup [] reordered []"#]],
        );
    }

    #[test]
    fn a_consumer_crash_redelivery_must_be_counted() {
        check(
            "0 invoke send 1
             0 invoke send 2
             1 ok send 1 p0 o0
             1 ok send 2 p0 o1
             2 ok process 1 p0 o0
             2 info crash
             5 ok process 1 p0 o0 c1
             5 ok process 2 p0 o1 c1",
            expect![[r#"
                deliveries: sent 2 (ok 2 fail 0 info 0) aborted 0 expected 2 processed 2 lost 0 (after ok 0 fail 0 info 0) dup 1 skipped 0 reordered 0 aborted_reads 0 phantom 0 | examples lost [] dup [1] reordered []
                effects:    sent 2 (ok 2 fail 0 info 0) aborted 0 expected 2 processed 2 lost 0 (after ok 0 fail 0 info 0) dup 1 skipped 0 reordered 0 aborted_reads 0 phantom 0 | examples lost [] dup [1] reordered []"#]],
        );
    }

    #[test]
    fn reordering_is_per_partition_and_on_first_processing_only() {
        // Record 1's batch was retried after record 2's: 2 then 1 on partition 0. Record 3 on
        // partition 1 is not compared with partition 0. The redelivery of 2 is a duplicate, not
        // a reordering.
        check(
            "0 invoke send 1
             0 invoke send 2
             0 invoke send 3
             5 ok send 2 p0 o0
             6 ok send 1 p0 o1
             6 ok send 3 p1 o0
             7 ok process 2 p0 o0
             7 ok process 1 p0 o1
             7 ok process 3 p1 o0
             8 ok process 2 p0 o0",
            expect![[r#"
                deliveries: sent 3 (ok 3 fail 0 info 0) aborted 0 expected 3 processed 3 lost 0 (after ok 0 fail 0 info 0) dup 1 skipped 0 reordered 1 aborted_reads 0 phantom 0 | examples lost [] dup [2] reordered [1]
                effects:    sent 3 (ok 3 fail 0 info 0) aborted 0 expected 3 processed 3 lost 0 (after ok 0 fail 0 info 0) dup 1 skipped 0 reordered 1 aborted_reads 0 phantom 0 | examples lost [] dup [2] reordered [1]"#]],
        );
    }

    #[test]
    fn aborted_reads_and_phantoms_must_be_counted() {
        // Transaction 1 (records 1, 2) aborted; record 1 was read anyway: an aborted read.
        // Records 1 and 2 were sent again in transaction 2, which committed, so they are
        // expected; record 99 was never sent.
        check(
            "0 invoke txn 1 1 2
             0 invoke send 1 txn1
             0 invoke send 2 txn1
             1 ok send 1 p0 o0 txn1
             1 ok send 2 p0 o1 txn1
             2 fail txn 1
             3 invoke txn 2 1 2
             3 invoke send 1 txn2
             3 invoke send 2 txn2
             4 ok send 1 p0 o3 txn2
             4 ok send 2 p0 o4 txn2
             5 ok txn 2
             6 ok process 1 p0 o0
             6 ok process 1 p0 o3
             6 ok process 2 p0 o4
             6 ok process 99 p0 o5",
            expect![[r#"
                deliveries: sent 2 (ok 2 fail 0 info 0) aborted 0 expected 2 processed 3 lost 0 (after ok 0 fail 0 info 0) dup 1 skipped 0 reordered 0 aborted_reads 1 phantom 1 | examples lost [] dup [1] reordered []
                effects:    sent 2 (ok 2 fail 0 info 0) aborted 0 expected 2 processed 3 lost 0 (after ok 0 fail 0 info 0) dup 1 skipped 0 reordered 0 aborted_reads 1 phantom 1 | examples lost [] dup [1] reordered []"#]],
        );
        // Only in an aborted transaction and never read: aborted, not lost.
        check(
            "0 invoke txn 1 1
             0 invoke send 1 txn1
             1 ok send 1 p0 o0 txn1
             2 fail txn 1",
            expect![[r#"
                deliveries: sent 1 (ok 1 fail 0 info 0) aborted 1 expected 0 processed 0 lost 0 (after ok 0 fail 0 info 0) dup 0 skipped 0 reordered 0 aborted_reads 0 phantom 0 | examples lost [] dup [] reordered []
                effects:    sent 1 (ok 1 fail 0 info 0) aborted 1 expected 0 processed 0 lost 0 (after ok 0 fail 0 info 0) dup 0 skipped 0 reordered 0 aborted_reads 0 phantom 0 | examples lost [] dup [] reordered []"#]],
        );
    }

    #[test]
    fn latency_and_throughput() {
        let mut text = String::new();
        // 1000 records: record i is sent at i ms and processed (i % 100) ms later.
        for i in 0..1000u64 {
            text.push_str(&format!("{i} invoke send {i}\n"));
            text.push_str(&format!("{} ok process {i} p0 o{i}\n", i + i % 100));
        }
        let mut ops = parse(&text);
        ops.sort_by_key(|op| op.time_us);
        let latency = latency(&ops, 0..1000).unwrap();
        expect![[r#"
            Latency {
                samples: 1000,
                p50_us: 49000,
                p99_us: 98000,
                p999_us: 99000,
                max_us: 99000,
            }"#]]
        .assert_eq(&format!("{latency:#?}"));
        let only_some = super::latency(&ops, 10..20).unwrap();
        assert_eq!((only_some.samples, only_some.max_us), (10, 19_000));
        let throughput = throughput(&ops, 0..1000).unwrap();
        // From 0 ms to the last processing at 999 + 99 ms.
        assert_eq!(throughput.elapsed_us, 1_098_000);
        assert_eq!(throughput.records, 1000);
        assert!(super::latency(&ops, 5000..6000).is_none());
    }

    #[test]
    fn acked_throughput_is_the_producers_side_alone() {
        // Three records sent at 0, 1 and 2 ms, acknowledged at 10, 20 and (twice) 30 ms; one
        // never acknowledged; processing much later does not count.
        let ops = parse(
            "0 invoke send 0
             1 invoke send 1
             2 invoke send 2
             3 invoke send 3
             10 ok send 0 p0 o0
             20 ok send 1 p0 o1
             30 ok send 2 p0 o2
             31 ok send 2 p0 o3
             500 ok process 0 p0 o0",
        );
        let acked = acked_throughput(&ops, 0..4).unwrap();
        assert_eq!((acked.records, acked.elapsed_us), (3, 30_000));
        assert_eq!(acked_throughput(&ops, 10..20), None);
    }

    #[test]
    fn faults_are_counted_and_an_empty_history_has_none() {
        let ops = parse(
            "0 info fault drop_frame 0 response
             1 info fault drop_frame 8 response
             2 info fault drop_frame 0 response
             3 invoke kill
             3 info kill
             4 info restart
             5 info crash",
        );
        expect![[r#"
            Faults {
                injected: 5,
                by_kind: {
                    "crash consumer": 1,
                    "drop_frame offset_commit response": 1,
                    "drop_frame produce response": 2,
                    "kill -9 broker": 1,
                    "restart broker": 1,
                },
            }"#]]
        .assert_eq(&format!("{:#?}", faults(&ops)));
        assert_eq!(faults(&parse("0 invoke send 1")).injected, 0);
    }

    #[test]
    fn the_ledger_holds_only_when_each_transfer_applies_once() {
        // Three accounts of 100; transfer i moves i from account i%3 to (i+1)%3.
        let transfer = |id: u64| Transfer {
            from: (id % 3) as u32,
            to: ((id + 1) % 3) as u32,
            amount: id as i64,
        };
        let run = |text: &str| {
            let l = ledger(&parse(text), 3, 100, transfer);
            format!(
                "{} {} off {} holds {}",
                l.total_initial, l.total_observed, l.accounts_off, l.holds
            )
        };
        let sends = "0 invoke send 1\n0 invoke send 2\n";
        expect!["300 300 off 0 holds true"].assert_eq(&run(&format!(
            "{sends} 1 ok process 1 p0 o0\n 1 ok process 2 p0 o1"
        )));
        // A duplicate applied twice: money stays, but accounts are wrong.
        expect!["300 300 off 2 holds false"].assert_eq(&run(&format!(
            "{sends} 1 ok process 1 p0 o0\n 1 ok process 2 p0 o1\n 2 ok process 2 p0 o1"
        )));
        // The idempotent consumer skipped the duplicate: holds.
        expect!["300 300 off 0 holds true"].assert_eq(&run(&format!(
            "{sends} 1 ok process 1 p0 o0\n 1 ok process 2 p0 o1\n 2 ok process 2 p0 o1 dup"
        )));
        // A lost transfer.
        expect!["300 300 off 2 holds false"]
            .assert_eq(&run(&format!("{sends} 1 ok process 1 p0 o0")));
    }

    #[test]
    fn timeline_buckets() {
        let ops = parse(
            "0 invoke send 1
             0 invoke send 2
             1 ok process 1 p0 o0
             1 info fault drop_frame 0 response
             150 ok process 2 p0 o1
             150 ok process 2 p0 o1
             160 info kill",
        );
        let t = timeline(&ops, 100_000);
        assert_eq!(t.sent, vec![2, 0]);
        assert_eq!(t.processed, vec![1, 1]);
        assert_eq!(t.faults, vec![1, 0]);
        assert_eq!(t.marks, vec![(160_000, "kill -9".to_string())]);
    }
}
