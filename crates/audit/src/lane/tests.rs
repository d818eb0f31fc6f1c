//! The lane checker as data, and its agreement with the lab's batch checker on the same
//! histories.

use expect_test::{expect, Expect};
use lab::check::{self, View};
use lab::history::{Event, Kind, Op, Process};
use proptest::prelude::*;

use super::*;

const LIMITS: Limits = Limits {
    grace_ms: 100,
    ack_timeout_ms: 50,
};

/// Runs events on a lane of run 1 and prints the non-zero counts since the start, then the
/// pending records. Events, space-separated, each `<op><seq>@<ms>`:
/// `s` sent, `S<seq>@<due>/<ms>` sent at `ms` though due at `due`, `a` acked, `f` send failed, `c` consumed, `d` consumed but skipped by the dedup,
/// `o` consumed from run 0, `T` sent in a transaction, `k` its transaction committed, `x`
/// aborted, `u` its transaction's outcome unknown,
/// `t` a tick (no seq).
fn check(events: &str, expect: Expect) {
    let mut lane = LaneState::new(Lane::ExactlyOnce, 1, LIMITS, 0);
    let mut now = 0;
    for event in events.split_whitespace() {
        let (op, rest) = event.split_at(1);
        let (seq, at) = rest.split_once('@').expect("<op><seq>@<ms>");
        // `S<seq>@<due>/<ms>`: sent late.
        let (due, at) = at.split_once('/').unwrap_or((at, at));
        let (due, at): (u64, u64) = (due.parse().expect("time"), at.parse().expect("time"));
        let seq: u64 = seq.parse().unwrap_or(0);
        now = now.max(at);
        let stamp = |run| Stamp {
            lane: Lane::ExactlyOnce,
            run,
            seq,
            sent_ms: 0,
        };
        match op {
            "s" => lane.sent(seq, at),
            "S" => lane.sent_late(seq, due, at),
            "T" => lane.sent_in_transaction(seq, at, at),
            "k" => lane.transaction_ended(seq, Some(true), at),
            "a" => lane.acked(seq, true, at),
            "f" => lane.acked(seq, false, at),
            "c" => lane.consumed(Some(&stamp(1)), true, at),
            "d" => lane.consumed(Some(&stamp(1)), false, at),
            "o" => lane.consumed(Some(&stamp(0)), true, at),
            "x" => lane.transaction_ended(seq, Some(false), at),
            "u" => lane.transaction_ended(seq, None, at),
            "t" => lane.tick(at),
            _ => panic!("unknown event {event}"),
        }
    }
    let summary = lane.summary(now);
    let all = summary.window(Window::SinceStart);
    let counts: Vec<String> = all
        .records
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(name, n)| format!("{name}={n}"))
        .collect();
    let latency = match (all.latency_p50_ms, all.latency_p99_ms) {
        (Some(p50), Some(p99)) => format!(" p50={p50} p99={p99}"),
        _ => String::new(),
    };
    expect.assert_eq(&format!(
        "{} pending={}{latency}",
        counts.join(" "),
        summary.pending
    ));
}

#[test]
fn lane_as_data() {
    // Clean: sent, acked in time, consumed once, in order.
    check(
        "s0@0 s1@1 a0@2 a1@3 c0@10 c1@11 t@500",
        expect!["acked=2 available=2 consumed=2 sent=2 pending=0 p50=10 p99=10"],
    );
    // Not yet seen is not lost: within the grace it is pending.
    check(
        "s0@0 a0@1 t@99",
        expect!["acked=1 available=1 sent=1 pending=1"],
    );
    check(
        "s0@0 a0@1 t@100",
        expect!["acked=1 available=1 lost=1 sent=1 pending=0"],
    );
    // Seen after the grace: lost, and late.
    check(
        "s0@0 a0@1 t@100 c0@150",
        expect!["acked=1 available=1 consumed=1 late=1 lost=1 sent=1 pending=0 p50=159 p99=159"],
    );
    // Sent late (the producer fell behind): the grace counts from the send, latency and
    // availability from when it was due.
    check("S0@0/200 t@250", expect!["sent=1 unavailable=1 pending=1"]);
    check(
        "S0@0/200 a0@201 c0@210 t@400",
        expect!["acked=1 consumed=1 sent=1 unavailable=1 pending=0 p50=223 p99=223"],
    );
    check(
        "S0@0/200 t@300",
        expect!["lost=1 sent=1 unavailable=1 pending=0"],
    );
    // A transaction's records are expected from its commit: the grace starts there.
    check("T0@0 t@500", expect!["sent=1 unavailable=1 pending=1"]);
    check(
        "T0@0 k0@450 t@500",
        expect!["sent=1 unavailable=1 pending=1"],
    );
    check(
        "T0@0 k0@450 t@550",
        expect!["lost=1 sent=1 unavailable=1 pending=0"],
    );
    check(
        "T0@0 c0@300 k0@450 t@600",
        expect!["consumed=1 sent=1 unavailable=1 pending=0 p50=319 p99=319"],
    );
    // A duplicate and a reordering.
    check(
        "s0@0 s1@1 c1@5 c0@6 c0@7 t@500",
        expect!["consumed=3 duplicated=1 reordered=1 sent=2 unavailable=2 pending=0 p50=4 p99=6"],
    );
    // Acknowledged late or failed: unavailable; a failed send unseen is still lost.
    check(
        "s0@0 s1@0 a0@60 f1@10 c0@61 t@200",
        expect![
            "acked=1 consumed=1 lost=1 send_failed=1 sent=2 unavailable=2 pending=0 p50=63 p99=63"
        ],
    );
    // An aborted transaction's records are not expected; reading one is an aborted read,
    // whether the abort is heard before or after the read.
    check(
        "s0@0 x0@1 t@500",
        expect!["aborted=1 sent=1 unavailable=1 pending=0"],
    );
    check(
        "s0@0 x0@1 c0@2 s1@3 c1@4 x1@5 t@500",
        expect!["aborted=2 aborted_read=2 consumed=2 sent=2 unavailable=2 pending=0 p50=1 p99=2"],
    );
    // Unknown outcome: neither lost when absent nor an aborted read when present.
    check("s0@0 u0@1 t@500", expect!["sent=1 unavailable=1 pending=0"]);
    // Records of an earlier run are counted apart; skipped duplicates are not consumptions.
    check(
        "o7@0 s0@0 c0@1 d0@2 t@500",
        expect![
            "consumed=1 dedup_skipped=1 earlier_run=1 sent=1 unavailable=1 pending=0 p50=1 p99=1"
        ],
    );
    // A record never sent by this run.
    check("c3@0", expect!["consumed=1 phantom=1 pending=0"]);
}

#[test]
fn old_state_is_forgotten_and_counts_kept() {
    let mut lane = LaneState::new(Lane::AtLeastOnce, 1, LIMITS, 0);
    let stamp = |seq| Stamp {
        lane: Lane::AtLeastOnce,
        run: 1,
        seq,
        sent_ms: 0,
    };
    // Two hours at 10 records a second, each seen once.
    for seq in 0..72_000u64 {
        let at = seq * 100;
        lane.sent(seq, at);
        lane.acked(seq, true, at + 1);
        lane.consumed(Some(&stamp(seq)), true, at + 2);
        lane.tick(at + 2);
    }
    let retained = (WINDOW_LONGEST_MS + LIMITS.grace_ms) / 100 + 1;
    assert!(
        lane.seqs_kept() as u64 <= retained,
        "{} kept",
        lane.seqs_kept()
    );
    // Reading a forgotten record again is stale, not a duplicate or a phantom.
    lane.consumed(Some(&stamp(5)), true, 7_200_100);
    let all = lane.tally(Window::SinceStart, 7_200_100);
    assert_eq!(all.get(Outcome::Sent), 72_000);
    assert_eq!(all.get(Outcome::Stale), 1);
    assert_eq!(all.get(Outcome::Duplicated), 0);
    assert_eq!(all.get(Outcome::Lost), 0);
    let minute = lane.tally(Window::Minute, 7_200_100);
    assert!((590..=610).contains(&minute.get(Outcome::Sent)));
}

/// A history in both forms: the lab's operations and the lane's events.
#[derive(Debug, Clone)]
struct Case {
    /// Per record id: the send succeeded, its transaction aborted.
    sends: Vec<(bool, bool)>,
    /// Consumptions in order: (id, applied).
    consumed: Vec<(u64, bool)>,
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..40).prop_flat_map(|n| {
        let sends = proptest::collection::vec((any::<bool>(), prop::bool::weighted(0.2)), n);
        let consumed =
            proptest::collection::vec((0..n as u64, prop::bool::weighted(0.8)), 0..(2 * n));
        (sends, consumed).prop_map(|(sends, consumed)| Case {
            // A record written in an aborted transaction was acknowledged: the transaction's
            // failed sends abort it, and the lab places aborted records by their written offset.
            sends: sends
                .into_iter()
                .map(|(ok, aborted)| (ok || aborted, aborted))
                .collect(),
            consumed,
        })
    })
}

/// The lab's history of `case`: one transaction per aborted record, positions = ids.
fn lab_history(case: &Case) -> Vec<Op> {
    let mut ops = Vec::new();
    let mut push = |kind, event| {
        let index = ops.len() as u64;
        ops.push(Op {
            index,
            time_us: index,
            kind,
            process: Process::Producer,
            event,
        });
    };
    for (id, (ok, aborted)) in case.sends.iter().enumerate() {
        let id = id as u64;
        let txn = aborted.then_some(id);
        let send = |partition, offset| Event::Send {
            id,
            partition,
            offset,
            txn,
            error: None,
        };
        push(Kind::Invoke, send(None, None));
        let kind = if *ok { Kind::Ok } else { Kind::Fail };
        push(kind, send(Some(0), Some(id as i64)));
        if *aborted {
            let event = Event::Txn {
                txn: id,
                ids: Vec::new(),
                error: None,
            };
            push(Kind::Fail, event);
        }
    }
    for (id, applied) in &case.consumed {
        let event = Event::Process {
            id: *id,
            partition: 0,
            offset: *id as i64,
            applied: *applied,
        };
        push(Kind::Ok, event);
    }
    ops
}

fn lane_counts(case: &Case, view: View) -> LaneSummary {
    let mut lane = LaneState::new(Lane::ExactlyOnce, 1, LIMITS, 0);
    for (id, (ok, aborted)) in case.sends.iter().enumerate() {
        lane.sent(id as u64, 0);
        lane.acked(id as u64, *ok, 1);
        if *aborted {
            lane.transaction_ended(id as u64, Some(false), 1);
        }
    }
    for (id, applied) in &case.consumed {
        let stamp = Stamp {
            lane: Lane::ExactlyOnce,
            run: 1,
            seq: *id,
            sent_ms: 0,
        };
        lane.consumed(Some(&stamp), *applied || view == View::Deliveries, 2);
    }
    lane.tick(10_000);
    lane.summary(10_000)
}

/// The lane's counts of `case` under `view`, once the grace has passed, as the lab's:
/// (outcome, lane, lab) for every count both keep.
fn compared(case: &Case, view: View) -> Vec<(Outcome, u64, u64)> {
    let lab = check::counts(&lab_history(case), view);
    let lane = lane_counts(case, view);
    let all = lane.window(Window::SinceStart);
    [
        (Outcome::Lost, lab.lost),
        (Outcome::Duplicated, lab.duplicated),
        (Outcome::Reordered, lab.reordered),
        (Outcome::AbortedRead, lab.aborted_reads),
        (Outcome::Consumed, lab.processings),
        (
            Outcome::DedupSkipped,
            if view == View::Effects {
                lab.dedup_skipped
            } else {
                0
            },
        ),
    ]
    .into_iter()
    .map(|(outcome, lab)| (outcome, all.get(outcome), lab))
    .collect()
}

proptest! {
    /// Every delivery counted, as the at-least-once and exactly-once lanes do.
    #[test]
    fn agrees_with_the_lab_checker(case in case()) {
        for (outcome, lane, lab) in compared(&case, View::Deliveries) {
            prop_assert_eq!(lane, lab, "{:?}", outcome);
        }
    }

    /// The idempotent lane counts effects, as the lab's `View::Effects` (no transactions there).
    #[test]
    fn agrees_with_the_lab_checker_on_effects(case in case()) {
        let case = Case {
            sends: case.sends.iter().map(|(ok, _)| (*ok, false)).collect(),
            ..case
        };
        for (outcome, lane, lab) in compared(&case, View::Effects) {
            prop_assert_eq!(lane, lab, "{:?}", outcome);
        }
    }
}
