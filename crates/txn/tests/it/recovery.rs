//! Restarts and crashes: replaying the transaction log rebuilds the same state (the harness
//! checks it against the snapshot and the compacted log on every restart), recovery finishes
//! every transaction left completing, and nothing answered is lost.

use expect_test::expect;

use crate::harness::check;

#[test]
fn restart_resumes_the_markers_of_completing_transactions() {
    check(
        "
        a init id=a
        a add t/0
        a offsets g
        a txncommit g t/1=7
        a commit
        b init id=b
        b add u/0
        b abort
        c init id=c
        c add t/3
        restart                      # a and b completing, c ongoing, no marker written
        a add t/0                    # still completing after the restart
        markers
        committed
        c add t/2                    # c's producer carries on after the restart
        c commit
        markers
        ",
        expect![[r#"
            > a init id=a
              ~ a: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=0
            > a add t/0
              ~ a: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              a.add: t/0:ok
            > a offsets g
              ~ a: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
              a.offsets: ok
            > a txncommit g t/1=7
              ~ a: offset g t/1=7 pid=1000 meta=""
              + stage g pid=1000 t/1=7
              a.txncommit: t/1:ok
            > a commit
              ~ a: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
              ! markers a pid=1000 epoch=0 COMMIT parts=[t/0] groups=[g:t/1=7]
            > b init id=b
              ~ b: Empty pid=1001 epoch=0 last=1001:-1 timeout=60000 start=-1 parts=[] groups=[]
              b.init: ok pid=1001 epoch=0
            > b add u/0
              ~ b: Ongoing pid=1001 epoch=0 last=1001:-1 timeout=60000 start=0 parts=[u/0] groups=[]
              b.add: u/0:ok
            > b abort
              ~ b: PrepareAbort pid=1001 epoch=0 last=1001:-1 timeout=60000 start=0 parts=[u/0] groups=[]
              ! markers b pid=1001 epoch=0 ABORT parts=[u/0] groups=[]
            > c init id=c
              ~ c: Empty pid=1002 epoch=0 last=1002:-1 timeout=60000 start=-1 parts=[] groups=[]
              c.init: ok pid=1002 epoch=0
            > c add t/3
              ~ c: Ongoing pid=1002 epoch=0 last=1002:-1 timeout=60000 start=0 parts=[t/3] groups=[]
              c.add: t/3:ok
            > restart
              a: PrepareCommit pid=1000 epoch=0 timeout=60000 start=0 parts=[t/0] groups=[g] staged g:[t/1=7]
              b: PrepareAbort pid=1001 epoch=0 timeout=60000 start=0 parts=[u/0] groups=[]
              c: Ongoing pid=1002 epoch=0 timeout=60000 start=0 parts=[t/3] groups=[]
              + stage g pid=1000 t/1=7
              ! markers a pid=1000 epoch=0 COMMIT parts=[t/0] groups=[g:t/1=7]
              ! markers b pid=1001 epoch=0 ABORT parts=[u/0] groups=[]
            > a add t/0
              a.add: t/0:ConcurrentTransactions
            > markers
              ~ a: offset g t/1 deleted
              ~ a: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              ~ b: CompleteAbort pid=1001 epoch=0 last=1001:-1 timeout=60000 start=0 parts=[] groups=[]
            > committed
              committed [g:t/1=7]
            > c add t/2
              ~ c: Ongoing pid=1002 epoch=0 last=1002:-1 timeout=60000 start=0 parts=[t/2 t/3] groups=[]
              c.add: t/2:ok
            > c commit
              ~ c: PrepareCommit pid=1002 epoch=0 last=1002:-1 timeout=60000 start=0 parts=[t/2 t/3] groups=[]
              ! markers c pid=1002 epoch=0 COMMIT parts=[t/2 t/3] groups=[]
            > markers
              ~ c: CompleteCommit pid=1002 epoch=0 last=1002:-1 timeout=60000 start=0 parts=[] groups=[]
              c.commit: ok
        "#]],
    );
}

#[test]
fn an_ongoing_transaction_times_out_after_a_restart() {
    check(
        "
        config abort_interval=1
        p init timeout=1000
        p add t/0
        p offsets g
        p txncommit g t/0=3
        tick 500
        restart                      # the staged offsets go back to the group coordinator
        tick 500
        tick 1                       # the timeout counts from the original start
        markers
        committed
        ",
        expect![[r#"
            > config abort_interval=1
            > p init timeout=1000
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=1000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=1000 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
            > p offsets g
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=1000 start=0 parts=[t/0] groups=[g]
              p.offsets: ok
            > p txncommit g t/0=3
              ~ tx: offset g t/0=3 pid=1000 meta=""
              + stage g pid=1000 t/0=3
              p.txncommit: t/0:ok
            > tick 500
            > restart
              tx: Ongoing pid=1000 epoch=0 timeout=1000 start=0 parts=[t/0] groups=[g] staged g:[t/0=3]
              + stage g pid=1000 t/0=3
            > tick 500
            > tick 1
              ~ tx: PrepareAbort pid=1000 epoch=1 last=1000:-1 timeout=1000 start=0 parts=[t/0] groups=[g]
              ! markers tx pid=1000 epoch=1 ABORT parts=[t/0] groups=[g:t/0=3]
            > markers
              ~ tx: offset g t/0 deleted
              ~ tx: CompleteAbort pid=1000 epoch=1 last=1000:-1 timeout=1000 start=0 parts=[] groups=[]
            > committed
              committed []
        "#]],
    );
}

#[test]
fn a_crash_before_the_prepare_is_durable_loses_the_commit_and_its_answer() {
    check(
        "
        config manual_sync
        p init
        sync
        p add t/0
        sync
        p send t/0
        p commit                     # appended, not durable: no answer, no markers yet
        crash
        p commit                     # the client retries on a new connection
        sync
        markers
        ",
        expect![[r#"
            > config manual_sync
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
            > sync
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
            > sync
              p.add: t/0:ok
            > p send t/0
              p.send: ok
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
            > crash
              tx: Ongoing pid=1000 epoch=0 timeout=60000 start=0 parts=[t/0] groups=[]
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
            > sync
              ! markers tx pid=1000 epoch=0 COMMIT parts=[t/0] groups=[]
            > markers
              ~ tx: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
        "#]],
    );
}

#[test]
fn a_crash_after_the_prepare_completes_it_whatever_else_was_lost() {
    check(
        "
        config manual_sync
        p init
        sync
        p add t/0
        p offsets g
        sync
        p txncommit g t/0=4
        sync
        p commit
        sync                         # durable: the answer goes out, markers start
        markers                      # written, but CompleteCommit is not durable yet
        crash                        # so the markers are issued again: same outcome
        markers
        sync
        committed
        p add t/1
        sync
        ",
        expect![[r#"
            > config manual_sync
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
            > sync
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
            > p offsets g
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
            > sync
              p.add: t/0:ok
              p.offsets: ok
            > p txncommit g t/0=4
              ~ tx: offset g t/0=4 pid=1000 meta=""
            > sync
              + stage g pid=1000 t/0=4
              p.txncommit: t/0:ok
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
            > sync
              ! markers tx pid=1000 epoch=0 COMMIT parts=[t/0] groups=[g:t/0=4]
            > markers
              ~ tx: offset g t/0 deleted
              ~ tx: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
            > crash
              (p.commit lost)
              tx: PrepareCommit pid=1000 epoch=0 timeout=60000 start=0 parts=[t/0] groups=[g] staged g:[t/0=4]
              + stage g pid=1000 t/0=4
              ! markers tx pid=1000 epoch=0 COMMIT parts=[t/0] groups=[g:t/0=4]
            > markers
              ~ tx: offset g t/0 deleted
              ~ tx: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
            > sync
            > committed
              committed [g:t/0=4]
            > p add t/1
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/1] groups=[]
            > sync
              p.add: t/1:ok
        "#]],
    );
}

#[test]
fn answers_wait_for_every_earlier_record() {
    // The second AddPartitionsToTxn needs no record of its own, but its answer rests on the
    // first one's: it is held until that is durable too, and lost with it.
    check(
        "
        config manual_sync
        p init
        sync
        p add t/0
        q add t/0 id=tx pid=1000 epoch=0
        crash
        state
        ",
        expect![[r#"
            > config manual_sync
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
            > sync
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
            > q add t/0 id=tx pid=1000 epoch=0
            > crash
              (p.add lost)
              (q.add lost)
              tx: Empty pid=1000 epoch=0 timeout=60000 start=-1 parts=[] groups=[]
            > state
              tx: Empty pid=1000 epoch=0 timeout=60000 start=-1 parts=[] groups=[]
        "#]],
    );
}

#[test]
fn expired_ids_stay_expired_after_a_restart() {
    check(
        "
        config expiration=1000 remove_interval=1
        a init id=a
        b init id=b
        tick 500
        b init id=b
        tick 500
        restart
        ",
        expect![[r#"
            > config expiration=1000 remove_interval=1
            > a init id=a
              ~ a: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=0
            > b init id=b
              ~ b: Empty pid=1001 epoch=0 last=1001:-1 timeout=60000 start=-1 parts=[] groups=[]
              b.init: ok pid=1001 epoch=0
            > tick 500
            > b init id=b
              ~ b: Empty pid=1001 epoch=1 last=1001:-1 timeout=60000 start=-1 parts=[] groups=[]
              b.init: ok pid=1001 epoch=1
            > tick 500
              ~ a: deleted
            > restart
              b: Empty pid=1001 epoch=1 timeout=60000 start=-1 parts=[] groups=[]
        "#]],
    );
}
