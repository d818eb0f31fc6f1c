//! Kafka's answers as a table: every transaction state against every request a current, a
//! fenced or a foreign producer can send. Each row runs in a fresh coordinator.

use expect_test::expect;

use crate::harness::World;

/// Scripts that leave the transactional id `tx` in a state, held by producer `p` (epoch 0).
const STATES: [(&str, &str); 7] = [
    ("unknown", ""),
    ("Empty", "p init"),
    ("Ongoing", "p init\np add t/0\np offsets g"),
    ("PrepareCommit", "p init\np add t/0\np offsets g\np commit"),
    ("PrepareAbort", "p init\np add t/0\np offsets g\np abort"),
    ("CompleteCommit", "p init\np add t/0\np commit\nmarkers"),
    ("CompleteAbort", "p init\np add t/0\np abort\nmarkers"),
];

/// Requests of `p`: its own producer id and epoch unless overridden.
const REQUESTS: [&str; 17] = [
    "init",
    "init v=0",
    "init recover",
    "init recover pid=77 epoch=0",
    "init timeout=900001",
    "add t/1",
    "add t/1 epoch=5",
    "add t/1 epoch=5 v=1",
    "add t/1 pid=77",
    "offsets g",
    "offsets h",
    "txncommit g t/1=1",
    "commit",
    "abort",
    "commit epoch=5",
    "abort epoch=5 v=1",
    "commit pid=77",
];

fn answer(setup: &str, request: &str) -> String {
    let mut world = World::new();
    for line in setup.lines() {
        world.run_line(line);
    }
    let skip = world.transcript().len();
    world.run_line(&format!("p {request}"));
    let now = answers_since(&world, skip);
    if !now.is_empty() {
        return now;
    }
    // A successful EndTxn is answered once its markers are written and durable.
    let skip = world.transcript().len();
    world.run_line("markers");
    world.run_line("sync");
    format!("{} (after its markers)", answers_since(&world, skip))
}

/// The answers to `p` in the transcript after its first `skip` bytes.
fn answers_since(world: &World, skip: usize) -> String {
    world.transcript()[skip..]
        .lines()
        .filter_map(|l| l.trim().strip_prefix("p."))
        .map(|l| {
            l.split_once(": ")
                .map_or(l, |(_, answer)| answer)
                .to_owned()
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn kafka_answers_by_state() {
    let mut table = String::new();
    for (state, setup) in STATES {
        for request in REQUESTS {
            let line = format!("{state:<15}{request:<30}{}\n", answer(setup, request));
            table.push_str(&line);
        }
    }
    expect![[r#"
        unknown        init                          ok pid=1000 epoch=0
        unknown        init v=0                      ok pid=1000 epoch=0
        unknown        init recover                  ok pid=1000 epoch=0
        unknown        init recover pid=77 epoch=0   ok pid=1000 epoch=0
        unknown        init timeout=900001           InvalidTransactionTimeout
        unknown        add t/1                       t/1:InvalidProducerIdMapping
        unknown        add t/1 epoch=5               t/1:InvalidProducerIdMapping
        unknown        add t/1 epoch=5 v=1           t/1:InvalidProducerIdMapping
        unknown        add t/1 pid=77                t/1:InvalidProducerIdMapping
        unknown        offsets g                     InvalidProducerIdMapping
        unknown        offsets h                     InvalidProducerIdMapping
        unknown        txncommit g t/1=1             t/1:InvalidProducerIdMapping
        unknown        commit                        InvalidProducerIdMapping
        unknown        abort                         InvalidProducerIdMapping
        unknown        commit epoch=5                InvalidProducerIdMapping
        unknown        abort epoch=5 v=1             InvalidProducerIdMapping
        unknown        commit pid=77                 InvalidProducerIdMapping
        Empty          init                          ok pid=1000 epoch=1
        Empty          init v=0                      ok pid=1000 epoch=1
        Empty          init recover                  ok pid=1000 epoch=1
        Empty          init recover pid=77 epoch=0   ProducerFenced
        Empty          init timeout=900001           InvalidTransactionTimeout
        Empty          add t/1                       t/1:ok
        Empty          add t/1 epoch=5               t/1:ProducerFenced
        Empty          add t/1 epoch=5 v=1           t/1:InvalidProducerEpoch
        Empty          add t/1 pid=77                t/1:InvalidProducerIdMapping
        Empty          offsets g                     ok
        Empty          offsets h                     ok
        Empty          txncommit g t/1=1             t/1:InvalidTxnState
        Empty          commit                        InvalidTxnState
        Empty          abort                         InvalidTxnState
        Empty          commit epoch=5                ProducerFenced
        Empty          abort epoch=5 v=1             InvalidProducerEpoch
        Empty          commit pid=77                 InvalidProducerIdMapping
        Ongoing        init                          ConcurrentTransactions
        Ongoing        init v=0                      ConcurrentTransactions
        Ongoing        init recover                  ConcurrentTransactions
        Ongoing        init recover pid=77 epoch=0   ProducerFenced
        Ongoing        init timeout=900001           InvalidTransactionTimeout
        Ongoing        add t/1                       t/1:ok
        Ongoing        add t/1 epoch=5               t/1:ProducerFenced
        Ongoing        add t/1 epoch=5 v=1           t/1:InvalidProducerEpoch
        Ongoing        add t/1 pid=77                t/1:InvalidProducerIdMapping
        Ongoing        offsets g                     ok
        Ongoing        offsets h                     ok
        Ongoing        txncommit g t/1=1             t/1:ok
        Ongoing        commit                        ok (after its markers)
        Ongoing        abort                         ok (after its markers)
        Ongoing        commit epoch=5                ProducerFenced
        Ongoing        abort epoch=5 v=1             InvalidProducerEpoch
        Ongoing        commit pid=77                 InvalidProducerIdMapping
        PrepareCommit  init                          ConcurrentTransactions
        PrepareCommit  init v=0                      ConcurrentTransactions
        PrepareCommit  init recover                  ConcurrentTransactions
        PrepareCommit  init recover pid=77 epoch=0   ConcurrentTransactions
        PrepareCommit  init timeout=900001           InvalidTransactionTimeout
        PrepareCommit  add t/1                       t/1:ConcurrentTransactions
        PrepareCommit  add t/1 epoch=5               t/1:ProducerFenced
        PrepareCommit  add t/1 epoch=5 v=1           t/1:InvalidProducerEpoch
        PrepareCommit  add t/1 pid=77                t/1:InvalidProducerIdMapping
        PrepareCommit  offsets g                     ConcurrentTransactions
        PrepareCommit  offsets h                     ConcurrentTransactions
        PrepareCommit  txncommit g t/1=1             t/1:ConcurrentTransactions
        PrepareCommit  commit                        ConcurrentTransactions
        PrepareCommit  abort                         ConcurrentTransactions
        PrepareCommit  commit epoch=5                ProducerFenced
        PrepareCommit  abort epoch=5 v=1             InvalidProducerEpoch
        PrepareCommit  commit pid=77                 InvalidProducerIdMapping
        PrepareAbort   init                          ConcurrentTransactions
        PrepareAbort   init v=0                      ConcurrentTransactions
        PrepareAbort   init recover                  ConcurrentTransactions
        PrepareAbort   init recover pid=77 epoch=0   ConcurrentTransactions
        PrepareAbort   init timeout=900001           InvalidTransactionTimeout
        PrepareAbort   add t/1                       t/1:ConcurrentTransactions
        PrepareAbort   add t/1 epoch=5               t/1:ProducerFenced
        PrepareAbort   add t/1 epoch=5 v=1           t/1:InvalidProducerEpoch
        PrepareAbort   add t/1 pid=77                t/1:InvalidProducerIdMapping
        PrepareAbort   offsets g                     ConcurrentTransactions
        PrepareAbort   offsets h                     ConcurrentTransactions
        PrepareAbort   txncommit g t/1=1             t/1:ConcurrentTransactions
        PrepareAbort   commit                        ConcurrentTransactions
        PrepareAbort   abort                         ConcurrentTransactions
        PrepareAbort   commit epoch=5                ProducerFenced
        PrepareAbort   abort epoch=5 v=1             InvalidProducerEpoch
        PrepareAbort   commit pid=77                 InvalidProducerIdMapping
        CompleteCommit init                          ok pid=1000 epoch=1
        CompleteCommit init v=0                      ok pid=1000 epoch=1
        CompleteCommit init recover                  ok pid=1000 epoch=1
        CompleteCommit init recover pid=77 epoch=0   ProducerFenced
        CompleteCommit init timeout=900001           InvalidTransactionTimeout
        CompleteCommit add t/1                       t/1:ok
        CompleteCommit add t/1 epoch=5               t/1:ProducerFenced
        CompleteCommit add t/1 epoch=5 v=1           t/1:InvalidProducerEpoch
        CompleteCommit add t/1 pid=77                t/1:InvalidProducerIdMapping
        CompleteCommit offsets g                     ok
        CompleteCommit offsets h                     ok
        CompleteCommit txncommit g t/1=1             t/1:InvalidTxnState
        CompleteCommit commit                        ok
        CompleteCommit abort                         InvalidTxnState
        CompleteCommit commit epoch=5                ProducerFenced
        CompleteCommit abort epoch=5 v=1             InvalidProducerEpoch
        CompleteCommit commit pid=77                 InvalidProducerIdMapping
        CompleteAbort  init                          ok pid=1000 epoch=1
        CompleteAbort  init v=0                      ok pid=1000 epoch=1
        CompleteAbort  init recover                  ok pid=1000 epoch=1
        CompleteAbort  init recover pid=77 epoch=0   ProducerFenced
        CompleteAbort  init timeout=900001           InvalidTransactionTimeout
        CompleteAbort  add t/1                       t/1:ok
        CompleteAbort  add t/1 epoch=5               t/1:ProducerFenced
        CompleteAbort  add t/1 epoch=5 v=1           t/1:InvalidProducerEpoch
        CompleteAbort  add t/1 pid=77                t/1:InvalidProducerIdMapping
        CompleteAbort  offsets g                     ok
        CompleteAbort  offsets h                     ok
        CompleteAbort  txncommit g t/1=1             t/1:InvalidTxnState
        CompleteAbort  commit                        InvalidTxnState
        CompleteAbort  abort                         ok
        CompleteAbort  commit epoch=5                ProducerFenced
        CompleteAbort  abort epoch=5 v=1             InvalidProducerEpoch
        CompleteAbort  commit pid=77                 InvalidProducerIdMapping
    "#]]
    .assert_eq(&table);
}
