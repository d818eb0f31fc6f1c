//! Random producers, brokers and crashes: whatever happens, no invariant breaks (the harness
//! checks every record, response and marker), one transaction never gets two outcomes, every
//! write ends with a marker of its own transaction, no EndTxn answered ok is undone, and the log
//! always replays to the state it was written from.

use proptest::prelude::*;

use crate::harness::World;

/// A producer alias and the transactional id it always uses: `a` and `b` compete for `x` (one
/// fences the other), `c` owns `y`.
fn who() -> impl Strategy<Value = (&'static str, &'static str)> {
    prop::sample::select(vec![("a", "x"), ("b", "x"), ("c", "y")])
}

fn line() -> impl Strategy<Value = String> {
    let tp = prop::sample::select(vec!["t/0", "t/1", "u/0", "t/0", "t/1", "u/0", "x/0"]);
    let version = prop::sample::select(vec![0i16, 1, 2, 3, 3, 3]);
    prop_oneof![
        // A well-behaved producer's whole transaction (it waits for each answer), cut short
        // at a random point so that other producers, timeouts and crashes hit it mid-way.
        6 => (who(), prop::sample::select(vec!["t/0", "t/1", "u/0"]), 0u16..50, any::<bool>(), 3usize..12)
            .prop_map(|((w, id), tp, o, commit, steps)| {
                let end = if commit { "commit" } else { "abort" };
                [
                    format!("{w} init id={id} timeout=60000"),
                    "sync".to_owned(),
                    format!("{w} add {tp} id={id}"),
                    "sync".to_owned(),
                    format!("{w} send {tp} id={id}"),
                    format!("{w} offsets g id={id}"),
                    "sync".to_owned(),
                    format!("{w} txncommit g t/0={o} u/0={o} id={id}"),
                    "sync".to_owned(),
                    format!("{w} {end} id={id}"),
                    "sync".to_owned(),
                    "markers".to_owned(),
                ][..steps]
                    .join("\n")
            }),
        2 => (who(), prop::sample::select(vec![100i32, 1_000, 60_000]), any::<bool>())
            .prop_map(|((w, id), timeout, recover)| {
                let recover = if recover { " recover" } else { "" };
                format!("{w} init id={id} timeout={timeout}{recover}")
            }),
        4 => (who(), tp.clone(), version.clone())
            .prop_map(|((w, id), a, v)| format!("{w} add {a} id={id} v={v}")),
        2 => (who(), prop::sample::select(vec!["g", "h"]), version.clone())
            .prop_map(|((w, id), g, v)| format!("{w} offsets {g} id={id} v={v}")),
        2 => (who(), prop::sample::select(vec!["g", "h"]), 0u16..50)
            .prop_map(|((w, id), g, o)| format!("{w} txncommit {g} t/0={o} u/0={o} id={id}")),
        5 => (who(), tp).prop_map(|((w, id), tp)| format!("{w} send {tp} id={id}")),
        3 => (who(), any::<bool>(), version).prop_map(|((w, id), commit, v)| {
            format!("{w} {} id={id} v={v}", if commit { "commit" } else { "abort" })
        }),
        1 => (who(), 0i16..3).prop_map(|((w, id), e)| format!("{w} commit id={id} epoch={e}")),
        3 => Just("markers".to_owned()),
        1 => Just("markers id=x".to_owned()),
        4 => Just("sync".to_owned()),
        1 => Just("crash".to_owned()),
        1 => Just("restart".to_owned()),
        1 => Just("list".to_owned()),
        2 => prop::sample::select(vec![1u32, 50, 500, 5_000, 70_000]).prop_map(|ms| format!("tick {ms}")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_producers_never_break_the_coordinator(
        manual_sync in any::<bool>(),
        lines in prop::collection::vec(line(), 1..80),
    ) {
        let mut world = World::new();
        let config = if manual_sync {
            "config abort_interval=1 expiration=200000 remove_interval=1 manual_sync"
        } else {
            "config abort_interval=1 expiration=200000 remove_interval=1"
        };
        world.run_line(config);
        for line in lines.iter().flat_map(|l| l.lines()) {
            world.run_line(line);
        }
        world.settle_and_check();
        world.run_line("restart");
    }
}

/// The random scripts must reach the interesting cases, not only refusals.
#[test]
fn random_scripts_commit_abort_and_write() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut totals = (0, 0, 0, 0);
    for _ in 0..200 {
        let lines = prop::collection::vec(line(), 1..80)
            .new_tree(&mut runner)
            .unwrap()
            .current();
        let mut world = World::new();
        world.run_line("config abort_interval=1 expiration=200000 remove_interval=1 manual_sync");
        for line in lines.iter().flat_map(|l| l.lines()) {
            world.run_line(line);
        }
        world.settle_and_check();
        let (c, a, w, e) = world.counts();
        totals = (totals.0 + c, totals.1 + a, totals.2 + w, totals.3 + e);
    }
    let (commits, aborts, writes, ended) = totals;
    assert!(commits > 50, "{totals:?}");
    assert!(aborts > 50, "{totals:?}");
    assert!(writes > 50, "{totals:?}");
    assert!(ended > 50, "{totals:?}");
}
