//! One lane's incremental checker: the lab's words (`lab::check`: expected, lost, duplicated,
//! reordered, aborted read), judged as events arrive instead of over a finished history, with
//! time passed in. The lab can wait for the end of a run to call a record lost; a live auditor
//! cannot, so a record is lost once it is expected and unseen `grace_ms` after the producer
//! took it, or after its transaction committed ("not yet seen" before that). A lost record seen
//! later is counted `late` as well. Latency and availability count from the time a record was
//! due by the lane's rate, so a producer that fell behind shows its stall there.
//!
//! Only the current run's records are judged: records of earlier runs (an auditor restarted on
//! the same topic) are counted as `earlier_run` and nothing else, so a restart never shows as
//! loss or duplicates. The records an earlier run sent in its last grace window are judged by
//! nobody.
//!
//! Memory is bounded: per-sequence state is dropped once older than the longest window plus
//! the grace (and beyond [`SEQS_MAX`] entries); what remains of it is counts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stamp::{Lane, Stamp};
use crate::window::{Outcome, Tally, Window, Windows, WINDOWS, WINDOW_LONGEST_MS};

/// The most sequences whose state a lane keeps, whatever their age: at 1,000 records a second
/// that is 2,000 s, beyond the longest window.
pub const SEQS_MAX: usize = 2_000_000;

/// The times that decide a lane's verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// How long after its send a record may arrive before it is lost.
    pub grace_ms: u64,
    /// How long after its send a record must be acknowledged to count as available.
    pub ack_timeout_ms: u64,
}

/// Whether a record should be consumed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Yes,
    /// Sent in a transaction not yet ended: read_committed readers cannot see it yet, so its
    /// grace starts when the transaction commits.
    Open,
    /// Sent in a transaction that was aborted: it must never be consumed.
    Aborted,
    /// Sent in a transaction whose outcome is unknown: neither its absence nor its presence
    /// is a fault.
    Unknown,
}

#[derive(Clone, Debug)]
struct Seq {
    /// When it was due by the rate: latency and availability count from here.
    sent_ms: u64,
    /// When the producer took it: the grace counts from here, so a producer that fell behind
    /// does not make its late records lost before they could arrive.
    enqueued_ms: u64,
    expect: Expect,
    /// Consumptions so far.
    seen: u32,
    /// Counted lost (unseen after the grace).
    lost: bool,
    /// Counted available or unavailable.
    availability_judged: bool,
}

/// One lane's state for the current run.
#[derive(Clone, Debug)]
pub struct LaneState {
    lane: Lane,
    run: u64,
    limits: Limits,
    seqs: BTreeMap<u64, Seq>,
    /// Sequences below this were forgotten.
    floor: u64,
    /// The next sequences to judge for loss and for availability; sends come in sequence
    /// order, so both move forward.
    loss_cursor: u64,
    availability_cursor: u64,
    /// The largest sequence consumed for the first time (one partition per lane).
    first_seen_max: Option<u64>,
    windows: Windows,
    started_ms: u64,
    /// The run's first sequence number (where it resumed the lane's sequence).
    first_seq: u64,
    /// Client instances replaced after a fatal error (a fenced consumer, a transactional
    /// producer whose transaction's end is unknown), by client.
    restarts: BTreeMap<Client, u64>,
}

/// A lane's clients, for their restarts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Client {
    Producer,
    Consumer,
}

impl Client {
    pub fn name(self) -> &'static str {
        match self {
            Client::Producer => "producer",
            Client::Consumer => "consumer",
        }
    }
}

impl LaneState {
    pub fn new(lane: Lane, run: u64, limits: Limits, started_ms: u64) -> LaneState {
        LaneState {
            lane,
            run,
            limits,
            seqs: BTreeMap::new(),
            floor: 0,
            loss_cursor: 0,
            availability_cursor: 0,
            first_seen_max: None,
            windows: Windows::default(),
            started_ms,
            first_seq: 0,
            restarts: BTreeMap::new(),
        }
    }

    /// The lane's `client` was replaced by a new instance after a fatal error.
    pub fn restarted(&mut self, client: Client) {
        *self.restarts.entry(client).or_insert(0) += 1;
    }

    /// The run resumes the lane's sequence at `first_seq` (reported, not judged: sequences
    /// below it belong to earlier runs, which the run id tells apart).
    pub fn resuming_at(mut self, first_seq: u64) -> LaneState {
        self.first_seq = first_seq;
        self
    }

    pub fn lane(&self) -> Lane {
        self.lane
    }

    pub fn run(&self) -> u64 {
        self.run
    }

    /// Record `seq` was handed to the producer at `at_ms` (sequences in increasing order).
    pub fn sent(&mut self, seq: u64, at_ms: u64) {
        self.sent_late(seq, at_ms, at_ms);
    }

    /// Record `seq`, due at `due_ms`, was handed to the producer at `at_ms` (later, when the
    /// producer fell behind its rate).
    pub fn sent_late(&mut self, seq: u64, due_ms: u64, at_ms: u64) {
        let seq_state = Seq {
            sent_ms: due_ms,
            enqueued_ms: at_ms.max(due_ms),
            expect: Expect::Yes,
            seen: 0,
            lost: false,
            availability_judged: false,
        };
        if self.seqs.is_empty() {
            self.floor = self.floor.max(seq);
            self.loss_cursor = self.loss_cursor.max(seq);
            self.availability_cursor = self.availability_cursor.max(seq);
        }
        self.seqs.insert(seq, seq_state);
        self.windows.count(Outcome::Sent, at_ms, 1);
        while self.seqs.len() > SEQS_MAX {
            self.forget_oldest();
        }
    }

    /// As [`LaneState::sent_late`], for a record of a transaction still open: it is expected
    /// once [`LaneState::transaction_ended`] says the transaction committed.
    pub fn sent_in_transaction(&mut self, seq: u64, due_ms: u64, at_ms: u64) {
        self.sent_late(seq, due_ms, at_ms);
        if let Some(state) = self.seqs.get_mut(&seq) {
            state.expect = Expect::Open;
        }
    }

    /// The producer's report on `seq`: acknowledged (`ok`) or not.
    pub fn acked(&mut self, seq: u64, ok: bool, at_ms: u64) {
        let outcome = if ok {
            Outcome::Acked
        } else {
            Outcome::SendFailed
        };
        self.windows.count(outcome, at_ms, 1);
        let ack_timeout_ms = self.limits.ack_timeout_ms;
        let Some(state) = self.seqs.get_mut(&seq) else {
            return;
        };
        if state.availability_judged {
            return;
        }
        state.availability_judged = true;
        let in_time = ok && at_ms.saturating_sub(state.sent_ms) <= ack_timeout_ms;
        let outcome = if in_time {
            Outcome::Available
        } else {
            Outcome::Unavailable
        };
        self.windows.count(outcome, at_ms, 1);
    }

    /// `seq` was sent in a transaction that committed (`Some(true)`: its grace starts now),
    /// aborted (`Some(false)`) or whose outcome is unknown (`None`).
    pub fn transaction_ended(&mut self, seq: u64, committed: Option<bool>, at_ms: u64) {
        let Some(state) = self.seqs.get_mut(&seq) else {
            return;
        };
        if committed == Some(true) {
            state.enqueued_ms = state.enqueued_ms.max(at_ms);
        }
        state.expect = match committed {
            Some(true) => Expect::Yes,
            Some(false) => Expect::Aborted,
            None => Expect::Unknown,
        };
        if state.expect == Expect::Aborted {
            self.windows.count(Outcome::Aborted, at_ms, 1);
        }
        if state.expect == Expect::Aborted && state.seen > 0 {
            let seen = u64::from(state.seen);
            self.windows.count(Outcome::AbortedRead, at_ms, seen);
        }
    }

    /// A consumed record's stamp. `applied` is false when the consumer skipped it (the
    /// idempotent consumer's duplicate, a record read again below the exactly-once consumer's
    /// position): the lane then counts the effects only.
    pub fn consumed(&mut self, stamp: Option<&Stamp>, applied: bool, at_ms: u64) {
        let Some(stamp) = stamp.filter(|s| s.lane == self.lane) else {
            self.windows.count(Outcome::Phantom, at_ms, 1);
            return;
        };
        if stamp.run != self.run {
            self.windows.count(Outcome::EarlierRun, at_ms, 1);
            return;
        }
        if !applied {
            self.windows.count(Outcome::DedupSkipped, at_ms, 1);
            return;
        }
        self.windows.count(Outcome::Consumed, at_ms, 1);
        if stamp.seq < self.floor {
            self.windows.count(Outcome::Stale, at_ms, 1);
            return;
        }
        let Some(state) = self.seqs.get_mut(&stamp.seq) else {
            self.windows.count(Outcome::Phantom, at_ms, 1);
            return;
        };
        state.seen += 1;
        let (seen, expect, lost, sent_ms) = (state.seen, state.expect, state.lost, state.sent_ms);
        if expect == Expect::Aborted {
            self.windows.count(Outcome::AbortedRead, at_ms, 1);
        }
        if seen > 1 {
            self.windows.count(Outcome::Duplicated, at_ms, 1);
            return;
        }
        if lost {
            self.windows.count(Outcome::Late, at_ms, 1);
        }
        self.windows.latency(at_ms, at_ms.saturating_sub(sent_ms));
        let max = self.first_seen_max.get_or_insert(stamp.seq);
        if stamp.seq < *max {
            self.windows.count(Outcome::Reordered, at_ms, 1);
        }
        *max = (*max).max(stamp.seq);
    }

    /// Judges what `now_ms` decides: records unseen past the grace are lost, records
    /// unacknowledged past the acknowledgement timeout unavailable; forgets old state.
    pub fn tick(&mut self, now_ms: u64) {
        let Limits {
            grace_ms,
            ack_timeout_ms,
        } = self.limits;
        let (cursor, lost) = judge_due(
            &mut self.seqs,
            self.loss_cursor,
            // An open transaction stops the judging until it ends (transactions end in order).
            |s| s.expect != Expect::Open && s.enqueued_ms + grace_ms <= now_ms,
            |s| {
                let lost = s.expect == Expect::Yes && s.seen == 0;
                s.lost |= lost;
                lost
            },
        );
        self.loss_cursor = cursor;
        self.windows.count(Outcome::Lost, now_ms, lost);
        let (cursor, unavailable) = judge_due(
            &mut self.seqs,
            self.availability_cursor,
            |s| s.sent_ms + ack_timeout_ms <= now_ms,
            |s| !std::mem::replace(&mut s.availability_judged, true),
        );
        self.availability_cursor = cursor;
        self.windows
            .count(Outcome::Unavailable, now_ms, unavailable);
        let retain_ms = WINDOW_LONGEST_MS + grace_ms.max(ack_timeout_ms);
        while self
            .seqs
            .first_key_value()
            .is_some_and(|(seq, s)| s.enqueued_ms + retain_ms <= now_ms && *seq < self.loss_cursor)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((seq, _)) = self.seqs.pop_first() {
            self.floor = seq + 1;
            self.loss_cursor = self.loss_cursor.max(self.floor);
            self.availability_cursor = self.availability_cursor.max(self.floor);
        }
    }

    /// Expected records sent and neither seen nor yet judged lost: what a run's end waits for.
    pub fn pending(&self) -> usize {
        self.seqs
            .range(self.loss_cursor..)
            .filter(|(_, s)| matches!(s.expect, Expect::Yes | Expect::Open) && s.seen == 0)
            .count()
    }

    /// Sequences whose state is kept.
    pub fn seqs_kept(&self) -> usize {
        self.seqs.len()
    }

    pub fn tally(&self, window: Window, now_ms: u64) -> Tally {
        self.windows.tally(window, now_ms)
    }

    /// The lane's figures for every window as of `now_ms`.
    pub fn summary(&self, now_ms: u64) -> LaneSummary {
        LaneSummary {
            lane: self.lane,
            run: self.run,
            first_seq: self.first_seq,
            restarts: self.restarts.clone(),
            elapsed_ms: now_ms.saturating_sub(self.started_ms),
            pending: self.pending() as u64,
            windows: WINDOWS
                .iter()
                .map(|&w| WindowSummary::of(w, &self.tally(w, now_ms)))
                .collect(),
        }
    }
}

/// Runs `judge` over the sequences from `cursor` that are `due` (a time after their send;
/// sends come in sequence order, so the due ones are a prefix); returns the next cursor and
/// how many `judge` counted.
fn judge_due(
    seqs: &mut BTreeMap<u64, Seq>,
    cursor: u64,
    due: impl Fn(&Seq) -> bool,
    mut judge: impl FnMut(&mut Seq) -> bool,
) -> (u64, u64) {
    let (mut next, mut counted) = (cursor, 0);
    for (seq, state) in seqs.range_mut(cursor..) {
        if !due(state) {
            break;
        }
        next = seq + 1;
        counted += u64::from(judge(state));
    }
    (next, counted)
}

/// One window's figures, as reported (JSON, metrics, terminal).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowSummary {
    pub window: Window,
    /// Every outcome by name, zeros included.
    pub records: BTreeMap<String, u64>,
    /// Lost records not seen since (`lost` minus `late`).
    pub missing: u64,
    pub latency_p50_ms: Option<u64>,
    pub latency_p99_ms: Option<u64>,
    /// Sends acknowledged in time over sends judged.
    pub availability: Option<f64>,
}

impl WindowSummary {
    fn of(window: Window, tally: &Tally) -> WindowSummary {
        WindowSummary {
            window,
            records: Outcome::ALL
                .iter()
                .map(|o| (o.name().to_string(), tally.get(*o)))
                .collect(),
            missing: tally
                .get(Outcome::Lost)
                .saturating_sub(tally.get(Outcome::Late)),
            latency_p50_ms: tally.latency.percentile_ms(0.50),
            latency_p99_ms: tally.latency.percentile_ms(0.99),
            availability: tally.availability(),
        }
    }

    pub fn get(&self, outcome: Outcome) -> u64 {
        self.records.get(outcome.name()).copied().unwrap_or(0)
    }
}

/// One lane's figures.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaneSummary {
    pub lane: Lane,
    pub run: u64,
    /// Where the run resumed the lane's sequence.
    pub first_seq: u64,
    /// Client instances replaced after a fatal error, by client.
    pub restarts: BTreeMap<Client, u64>,
    pub elapsed_ms: u64,
    /// Expected records not yet seen and still within the grace.
    pub pending: u64,
    /// In [`WINDOWS`] order.
    pub windows: Vec<WindowSummary>,
}

impl LaneSummary {
    pub fn window(&self, window: Window) -> &WindowSummary {
        self.windows
            .iter()
            .find(|w| w.window == window)
            .expect("every window is summarised")
    }
}

/// For other modules' tests: a lane of `run` (grace and acknowledgement timeout 10 ms) that
/// sent each of `sent` at its time and had it acknowledged 1 ms later, consumed each of
/// `consumed` at its time, and was ticked at `now_ms`.
#[cfg(test)]
pub(crate) fn scripted(
    lane: Lane,
    run: u64,
    sent: &[(u64, u64)],
    consumed: &[(u64, u64)],
    now_ms: u64,
) -> LaneSummary {
    let limits = Limits {
        grace_ms: 10,
        ack_timeout_ms: 10,
    };
    let mut state = LaneState::new(lane, run, limits, 0);
    for (seq, at) in sent {
        state.sent(*seq, *at);
        state.acked(*seq, true, at + 1);
    }
    for (seq, at) in consumed {
        let stamp = Stamp {
            lane,
            run,
            seq: *seq,
            sent_ms: 0,
        };
        state.consumed(Some(&stamp), true, *at);
    }
    state.tick(now_ms);
    state.summary(now_ms)
}

#[cfg(test)]
mod tests;
