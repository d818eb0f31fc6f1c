//! Random client behaviour: whatever clients do, no invariant breaks, every response encodes,
//! no request is answered twice or left hanging once time passes, and replaying the emitted
//! records rebuilds exactly the persisted state.

use proptest::prelude::*;

use crate::harness::World;

fn line() -> impl Strategy<Value = String> {
    let who = prop::sample::select(vec!["a", "b", "c", "d"]);
    let version = prop::sample::select(vec![0i16, 1, 3, 4, 5, 7, 9]);
    let proto = prop::sample::select(vec![
        "range:x",
        "range:y",
        "roundrobin:z,range:w",
        "sticky:q",
    ]);
    prop_oneof![
        4 => (who.clone(), version, proto, prop::bool::weighted(0.15)).prop_map(|(w, v, p, fresh)| {
            let inst = if w == "c" || w == "d" { format!(" inst=i{w}") } else { String::new() };
            let id = if fresh { " id=none" } else { "" };
            format!("{w} join v={v} proto={p}{inst}{id}")
        }),
        4 => (who.clone(), 0u8..3).prop_map(|(w, kind)| match kind {
            0 => format!("{w} sync assign=a:1,b:2,c:3,d:4"),
            1 => format!("{w} sync"),
            _ => format!("{w} sync v=5"),
        }),
        3 => who.clone().prop_map(|w| format!("{w} hb")),
        1 => (who.clone(), any::<bool>()).prop_map(|(w, old)| if old {
            format!("{w} leave v=1")
        } else {
            format!("{w} leave")
        }),
        2 => (who.clone(), 0u8..3, 0u16..100).prop_map(|(w, p, o)| format!("{w} commit t/{p}={o}:m")),
        1 => (0u8..3, 0u16..100).prop_map(|(p, o)| format!("x commit gen=-1 id=none t/{p}={o}")),
        3 => prop::sample::select(vec![0u32, 50, 100, 200, 3_000, 10_000, 40_000]).prop_map(|ms| format!("tick {ms}")),
        1 => Just("restart".to_owned()),
        1 => Just("delete g".to_owned()),
        1 => Just("fetch stable".to_owned()),
        1 => Just("describe g".to_owned()),
        1 => Just("list".to_owned()),
        1 => (0i64..3, any::<bool>()).prop_map(|(pid, commit)| if commit {
            format!("endtxn pid={pid} commit")
        } else {
            format!("stage pid={pid} t/1=50")
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn random_clients_never_break_the_coordinator(lines in prop::collection::vec(line(), 1..60)) {
        let mut world = World::new();
        for line in &lines {
            world.run_line(line);
        }
        // Time passes without clients: every parked request must get its answer.
        for _ in 0..4 {
            world.run_line("tick 400000");
        }
        prop_assert!(world.unanswered().is_empty(), "unanswered: {:?}\n{}", world.unanswered(), world.transcript());
        world.run_line("restart");
    }
}
