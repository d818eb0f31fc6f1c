//! Timers: transactions aborted at their timeout with the producer fenced, on Kafka's scan grid,
//! and idle transactional ids expired.

use expect_test::expect;

use crate::harness::check;

#[test]
fn a_hung_transaction_is_aborted_and_its_producer_fenced() {
    check(
        "
        p init timeout=30000
        p add t/0
        p send t/0
        deadline                     # 30000 passed: the next 10 s scan
        tick 20000
        p add t/1                    # more partitions do not extend the timeout
        tick 19999
        tick 1
        p add t/2                    # the hung producer wakes up: fenced
        p commit
        p send t/0 force             # a zombie that keeps writing after its commit
        markers
        deadline                     # nothing in flight: the id's expiration, on the hourly scan
        p init recover               # KIP-360 cannot revive a fenced epoch
        q init
        ",
        expect![[r#"
            > p init timeout=30000
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=30000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=30000 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
            > p send t/0
              p.send: ok
            > deadline
              next deadline 40000
            > tick 20000
            > p add t/1
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=30000 start=0 parts=[t/0 t/1] groups=[]
              p.add: t/1:ok
            > tick 19999
            > tick 1
              ~ tx: PrepareAbort pid=1000 epoch=1 last=1000:-1 timeout=30000 start=0 parts=[t/0 t/1] groups=[]
              ! markers tx pid=1000 epoch=1 ABORT parts=[t/0 t/1] groups=[]
            > p add t/2
              p.add: t/2:ProducerFenced
            > p commit
              p.commit: ProducerFenced
            > p send t/0 force
              p.send: InvalidProducerEpoch
            > markers
              ~ tx: CompleteAbort pid=1000 epoch=1 last=1000:-1 timeout=30000 start=0 parts=[] groups=[]
            > deadline
              next deadline 608400000
            > p init recover
              p.init: ProducerFenced
            > q init
              ~ tx: Empty pid=1000 epoch=2 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              q.init: ok pid=1000 epoch=2
        "#]],
    );
}

#[test]
fn exact_deadlines_without_a_scan_grid() {
    check(
        "
        config abort_interval=1 remove_interval=1
        p init timeout=100
        p add t/0
        deadline
        tick 100                     # Kafka aborts once start + timeout < now
        tick 1
        deadline                     # markers in flight: no timer
        markers
        deadline
        ",
        expect![[r#"
            > config abort_interval=1 remove_interval=1
            > p init timeout=100
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=100 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=100 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
            > deadline
              next deadline 101
            > tick 100
            > tick 1
              ~ tx: PrepareAbort pid=1000 epoch=1 last=1000:-1 timeout=100 start=0 parts=[t/0] groups=[]
              ! markers tx pid=1000 epoch=1 ABORT parts=[t/0] groups=[]
            > deadline
              next deadline none
            > markers
              ~ tx: CompleteAbort pid=1000 epoch=1 last=1000:-1 timeout=100 start=0 parts=[] groups=[]
            > deadline
              next deadline 604800101
        "#]],
    );
}

#[test]
fn completing_transactions_never_time_out() {
    check(
        "
        config abort_interval=1
        p init timeout=100
        p add t/0
        p commit
        tick 1000000                 # the broker has not written the markers: nothing to do
        state
        markers
        ",
        expect![[r#"
            > config abort_interval=1
            > p init timeout=100
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=100 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=100 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=100 start=0 parts=[t/0] groups=[]
              ! markers tx pid=1000 epoch=0 COMMIT parts=[t/0] groups=[]
            > tick 1000000
            > state
              tx: PrepareCommit pid=1000 epoch=0 timeout=100 start=0 parts=[t/0] groups=[]
            > markers
              ~ tx: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=100 start=0 parts=[] groups=[]
              p.commit: ok
        "#]],
    );
}

#[test]
fn idle_transactional_ids_expire() {
    check(
        "
        config expiration=5000 remove_interval=1000 abort_interval=1
        a init id=a
        b init id=b timeout=100000
        b add t/0
        tick 4000
        a init id=a                  # activity restarts the clock
        tick 4999
        state
        tick 1
        state
        tick 100000                  # b's transaction times out first
        markers
        tick 5000
        state
        b add t/0                    # gone: the producer must init again
        b init
        ",
        expect![[r#"
            > config expiration=5000 remove_interval=1000 abort_interval=1
            > a init id=a
              ~ a: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=0
            > b init id=b timeout=100000
              ~ b: Empty pid=1001 epoch=0 last=1001:-1 timeout=100000 start=-1 parts=[] groups=[]
              b.init: ok pid=1001 epoch=0
            > b add t/0
              ~ b: Ongoing pid=1001 epoch=0 last=1001:-1 timeout=100000 start=0 parts=[t/0] groups=[]
              b.add: t/0:ok
            > tick 4000
            > a init id=a
              ~ a: Empty pid=1000 epoch=1 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=1
            > tick 4999
            > state
              a: Empty pid=1000 epoch=1 timeout=60000 start=-1 parts=[] groups=[]
              b: Ongoing pid=1001 epoch=0 timeout=100000 start=0 parts=[t/0] groups=[]
            > tick 1
              ~ a: deleted
            > state
              b: Ongoing pid=1001 epoch=0 timeout=100000 start=0 parts=[t/0] groups=[]
            > tick 100000
              ~ b: PrepareAbort pid=1001 epoch=1 last=1001:-1 timeout=100000 start=0 parts=[t/0] groups=[]
              ! markers b pid=1001 epoch=1 ABORT parts=[t/0] groups=[]
            > markers
              ~ b: CompleteAbort pid=1001 epoch=1 last=1001:-1 timeout=100000 start=0 parts=[] groups=[]
            > tick 5000
              ~ b: deleted
            > state
            > b add t/0
              b.add: t/0:InvalidProducerIdMapping
            > b init
              ~ b: Empty pid=1002 epoch=0 last=1002:-1 timeout=60000 start=-1 parts=[] groups=[]
              b.init: ok pid=1002 epoch=0
        "#]],
    );
}
