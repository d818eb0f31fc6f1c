//! InitProducerId with a transactional id: creation, epoch bumps that fence the previous
//! producer, aborting its transaction first, KIP-360 recovery, epoch exhaustion, refusals.

use expect_test::expect;

use crate::harness::{check, World};

#[test]
fn init_creates_then_bumps_and_fences_the_previous_producer() {
    check(
        "
        a init timeout=30000
        a add t/0
        b init                      # same transactional id: fences a, aborts its transaction
        a add t/1                   # a is a zombie now
        a commit
        a commit v=1                # old clients learn INVALID_PRODUCER_EPOCH instead
        b init                      # still aborting: retry
        markers
        b init                      # bumped again: the fence's epoch is never handed out
        a init recover              # a's KIP-360 retry with its fenced epoch
        ",
        expect![[r#"
            > a init timeout=30000
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=30000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=0
            > a add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=30000 start=0 parts=[t/0] groups=[]
              a.add: t/0:ok
            > b init
              ~ tx: PrepareAbort pid=1000 epoch=1 last=1000:-1 timeout=30000 start=0 parts=[t/0] groups=[]
              ! markers tx pid=1000 epoch=1 ABORT parts=[t/0] groups=[]
              b.init: ConcurrentTransactions
            > a add t/1
              a.add: t/1:ProducerFenced
            > a commit
              a.commit: ProducerFenced
            > a commit v=1
              a.commit: InvalidProducerEpoch
            > b init
              b.init: ConcurrentTransactions
            > markers
              ~ tx: CompleteAbort pid=1000 epoch=1 last=1000:-1 timeout=30000 start=0 parts=[] groups=[]
            > b init
              ~ tx: Empty pid=1000 epoch=2 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              b.init: ok pid=1000 epoch=2
            > a init recover
              a.init: ProducerFenced
        "#]],
    );
}

#[test]
fn kip_360_bumps_for_the_current_producer_and_repeats_for_a_lost_answer() {
    check(
        "
        p init
        p init recover              # the producer's own epoch: bump, remember the previous one
        p init recover epoch=0      # a retry of that bump whose answer was lost: same epoch
        p init recover epoch=5      # an epoch the coordinator never handed out
        p init recover pid=77 epoch=1
        p init recover v=3 epoch=5  # v3 knows no PRODUCER_FENCED
        p init pid=1000 epoch=-1    # a producer id without an epoch
        p init                      # a new producer: fences whoever holds the id
        p init recover epoch=1      # the previous epoch is gone after a fence
        ",
        expect![[r#"
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p init recover
              ~ tx: Empty pid=1000 epoch=1 last=1000:0 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=1
            > p init recover epoch=0
              ~ tx: Empty pid=1000 epoch=1 last=1000:0 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=1
            > p init recover epoch=5
              p.init: ProducerFenced
            > p init recover pid=77 epoch=1
              p.init: ProducerFenced
            > p init recover v=3 epoch=5
              p.init: InvalidProducerEpoch
            > p init pid=1000 epoch=-1
              p.init: InvalidRequest
            > p init
              ~ tx: Empty pid=1000 epoch=2 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=2
            > p init recover epoch=1
              p.init: ProducerFenced
        "#]],
    );
}

#[test]
fn kip_360_recovery_of_an_unknown_id_gets_a_fresh_producer_id() {
    // After expiration (or on another cluster) the producer's id is gone: any producer id it
    // names is accepted for a new transactional id, as in Kafka.
    check(
        "
        p init recover pid=5 epoch=3
        ",
        expect![[r#"
            > p init recover pid=5 epoch=3
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
        "#]],
    );
}

#[test]
fn refused_inits() {
    check(
        "
        config max_timeout=60000
        p init timeout=60001
        p init timeout=0
        p init timeout=-5
        z init id=none
        p init timeout=60000
        p add t/0
        p commit
        q init                      # markers in flight
        q init recover pid=1 epoch=1
        ",
        expect![[r#"
            > config max_timeout=60000
            > p init timeout=60001
              p.init: InvalidTransactionTimeout
            > p init timeout=0
              p.init: InvalidTransactionTimeout
            > p init timeout=-5
              p.init: InvalidTransactionTimeout
            > z init id=none
              z.init: InvalidRequest
            > p init timeout=60000
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              ! markers tx pid=1000 epoch=0 COMMIT parts=[t/0] groups=[]
            > q init
              q.init: ConcurrentTransactions
            > q init recover pid=1 epoch=1
              q.init: ConcurrentTransactions
        "#]],
    );
}

#[test]
fn transactional_ids_are_limited() {
    check(
        "
        config ids_max=2
        a init id=a
        b init id=b
        c init id=c
        a init id=a                 # known ids carry on
        ",
        expect![[r#"
            > config ids_max=2
            > a init id=a
              ~ a: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=0
            > b init id=b
              ~ b: Empty pid=1001 epoch=0 last=1001:-1 timeout=60000 start=-1 parts=[] groups=[]
              b.init: ok pid=1001 epoch=0
            > c init id=c
              c.init: PolicyViolation
            > a init id=a
              ~ a: Empty pid=1000 epoch=1 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=1
        "#]],
    );
}

/// Runs `p init` until the epoch reaches `epoch`, then `script`; returns the script's transcript.
fn after_epoch(epoch: i16, script: &str) -> String {
    let mut world = World::new();
    for _ in 0..=epoch {
        world.run_line("p init");
    }
    let skip = world.transcript().len();
    for line in script.lines() {
        world.run_line(line);
    }
    world.transcript()[skip..].to_owned()
}

#[test]
fn exhausted_epochs_rotate_the_producer_id() {
    expect![[r#"
        > p init
          ~ tx: Empty pid=1001 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
          p.init: ok pid=1001 epoch=0
        > p init recover pid=1000 epoch=32766
          p.init: ProducerFenced
    "#]]
    .assert_eq(&after_epoch(
        32766,
        "
        p init                          # 32766 is the last epoch handed out: new producer id
        p init recover pid=1000 epoch=32766  # another producer rotated: the old one is fenced
        ",
    ));
}

#[test]
fn kip_360_rotation_records_the_last_epoch_for_retries() {
    expect![[r#"
        > p init recover
          ~ tx: Empty pid=1001 epoch=0 last=1000:32766 timeout=60000 start=-1 parts=[] groups=[]
          p.init: ok pid=1001 epoch=0
        > p init recover pid=1000 epoch=32766
          ~ tx: Empty pid=1001 epoch=0 last=1001:32766 timeout=60000 start=-1 parts=[] groups=[]
          p.init: ok pid=1001 epoch=0
    "#]]
    .assert_eq(&after_epoch(
        32766,
        "
        p init recover
        p init recover pid=1000 epoch=32766  # its answer was lost: the same new id again
        ",
    ));
}

#[test]
fn fencing_at_the_last_epoch_uses_the_reserved_one_then_rotates() {
    expect![[r#"
        > p add t/0
          ~ tx: Ongoing pid=1000 epoch=32766 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
          p.add: t/0:ok
        > q init
          ~ tx: PrepareAbort pid=1000 epoch=32767 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
          ! markers tx pid=1000 epoch=32767 ABORT parts=[t/0] groups=[]
          q.init: ConcurrentTransactions
        > markers
          ~ tx: CompleteAbort pid=1000 epoch=32767 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
        > q init
          ~ tx: Empty pid=1001 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
          q.init: ok pid=1001 epoch=0
    "#]]
    .assert_eq(&after_epoch(
        32766,
        "
        p add t/0
        q init
        markers
        q init
        ",
    ));
}
