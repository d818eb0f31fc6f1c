//! Transactions end to end: partitions and consumer offsets added, commit and abort with their
//! marker requests and completion, CONCURRENT_TRANSACTIONS while markers are written, retries,
//! zombies, limits.

use expect_test::expect;

use crate::harness::check;

#[test]
fn consume_transform_produce_commit() {
    check(
        "
        p init
        p add t/0 u/1
        p send t/0
        p add t/0                    # already in: answered without a record
        p offsets g
        p txncommit g t/2=5:m t/3=9  # the consumed position, staged in the transaction
        p txncommit g t/2=6          # a later commit of the same partition wins
        tick 10
        p commit
        describe tx
        p add t/1                    # the next transaction waits for the markers
        p commit                     # a retry of EndTxn while the markers are written
        markers
        committed
        p commit                     # a retry whose answer was lost
        p add t/1
        ",
        expect![[r#"
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0 u/1
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0 u/1] groups=[]
              p.add: t/0:ok u/1:ok
            > p send t/0
              p.send: ok
            > p add t/0
              p.add: t/0:ok
            > p offsets g
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0 u/1] groups=[g]
              p.offsets: ok
            > p txncommit g t/2=5:m t/3=9
              ~ tx: offset g t/2=5 pid=1000 meta="m"
              ~ tx: offset g t/3=9 pid=1000 meta=""
              + stage g pid=1000 t/2=5 t/3=9
              p.txncommit: t/2:ok t/3:ok
            > p txncommit g t/2=6
              ~ tx: offset g t/2=6 pid=1000 meta=""
              + stage g pid=1000 t/2=6
              p.txncommit: t/2:ok
            > tick 10
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0 u/1] groups=[g]
              ! markers tx pid=1000 epoch=0 COMMIT parts=[t/0 u/1] groups=[g:t/2=6 t/3=9]
            > describe tx
              admin.describe: tx PrepareCommit pid=1000 epoch=0 timeout=60000 start=0 [t:0 u:1 __consumer_offsets:0]
            > p add t/1
              p.add: t/1:ConcurrentTransactions
            > p commit
              p.commit: ConcurrentTransactions
            > markers
              ~ tx: offset g t/2 deleted
              ~ tx: offset g t/3 deleted
              ~ tx: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              p.commit: ok
            > committed
              committed [g:t/2=6 g:t/3=9]
            > p commit
              p.commit: ok
            > p add t/1
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=10 parts=[t/1] groups=[]
              p.add: t/1:ok
        "#]],
    );
}

#[test]
fn abort_discards_staged_offsets() {
    check(
        "
        p init
        p offsets g
        p txncommit g t/0=5
        p add t/0
        p abort
        markers
        committed
        p abort                      # a retry
        p commit                     # the opposite of what happened
        ",
        expect![[r#"
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p offsets g
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[g]
              p.offsets: ok
            > p txncommit g t/0=5
              ~ tx: offset g t/0=5 pid=1000 meta=""
              + stage g pid=1000 t/0=5
              p.txncommit: t/0:ok
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
              p.add: t/0:ok
            > p abort
              ~ tx: PrepareAbort pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
              ! markers tx pid=1000 epoch=0 ABORT parts=[t/0] groups=[g:t/0=5]
            > markers
              ~ tx: offset g t/0 deleted
              ~ tx: CompleteAbort pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              p.abort: ok
            > committed
              committed []
            > p abort
              p.abort: ok
            > p commit
              p.commit: InvalidTxnState
        "#]],
    );
}

#[test]
fn end_txn_refusals() {
    check(
        "
        p init
        p commit                     # nothing started
        p add t/0
        p commit epoch=5             # a future epoch is no better than a past one
        p commit pid=77
        x commit id=unknown
        z commit id=none
        p abort
        p commit                     # PrepareAbort: retry, whatever the result
        p abort
        markers
        p commit
        ",
        expect![[r#"
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p commit
              p.commit: InvalidTxnState
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
            > p commit epoch=5
              p.commit: ProducerFenced
            > p commit pid=77
              p.commit: InvalidProducerIdMapping
            > x commit id=unknown
              x.commit: InvalidProducerIdMapping
            > z commit id=none
              z.commit: InvalidRequest
            > p abort
              ~ tx: PrepareAbort pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              ! markers tx pid=1000 epoch=0 ABORT parts=[t/0] groups=[]
            > p commit
              p.commit: ConcurrentTransactions
            > p abort
              p.abort: ConcurrentTransactions
            > markers
              ~ tx: CompleteAbort pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              p.abort: ok
            > p commit
              p.commit: InvalidTxnState
        "#]],
    );
}

#[test]
fn zombie_end_txn_is_rejected_and_its_transaction_aborted() {
    check(
        "
        old init
        old add t/0
        old send t/0
        new init                     # a new instance of the same application
        old commit                   # the zombie tries to commit: fenced
        old send t/0 force           # its writes are refused too
        markers
        new init
        new add t/0
        new send t/0
        new commit
        markers
        old commit v=0
        ",
        expect![[r#"
            > old init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              old.init: ok pid=1000 epoch=0
            > old add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              old.add: t/0:ok
            > old send t/0
              old.send: ok
            > new init
              ~ tx: PrepareAbort pid=1000 epoch=1 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              ! markers tx pid=1000 epoch=1 ABORT parts=[t/0] groups=[]
              new.init: ConcurrentTransactions
            > old commit
              old.commit: ProducerFenced
            > old send t/0 force
              old.send: InvalidProducerEpoch
            > markers
              ~ tx: CompleteAbort pid=1000 epoch=1 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
            > new init
              ~ tx: Empty pid=1000 epoch=2 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              new.init: ok pid=1000 epoch=2
            > new add t/0
              ~ tx: Ongoing pid=1000 epoch=2 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              new.add: t/0:ok
            > new send t/0
              new.send: ok
            > new commit
              ~ tx: PrepareCommit pid=1000 epoch=2 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              ! markers tx pid=1000 epoch=2 COMMIT parts=[t/0] groups=[]
            > markers
              ~ tx: CompleteCommit pid=1000 epoch=2 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              new.commit: ok
            > old commit v=0
              old.commit: InvalidProducerEpoch
        "#]],
    );
}

#[test]
fn add_partitions_refusals() {
    check(
        "
        p init
        p add t/0 x/0 t/9            # one unknown partition fails the whole request
        p add t/0 v=0 pid=77
        p add t/0 epoch=3
        p add t/0 epoch=3 v=1        # old versions say INVALID_PRODUCER_EPOCH
        z add t/0 id=none
        y add t/0 id=unknown
        p offsets g epoch=3
        p offsets g epoch=3 v=1
        p add t/0 t/0 t/1            # duplicates are answered once
        p send t/2                   # not added: a real producer would not send
        p send t/2 force             # verification refuses it
        ",
        expect![[r#"
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0 x/0 t/9
              p.add: t/0:OperationNotAttempted t/9:UnknownTopicOrPartition x/0:UnknownTopicOrPartition
            > p add t/0 v=0 pid=77
              p.add: t/0:InvalidProducerIdMapping
            > p add t/0 epoch=3
              p.add: t/0:ProducerFenced
            > p add t/0 epoch=3 v=1
              p.add: t/0:InvalidProducerEpoch
            > z add t/0 id=none
              z.add: t/0:InvalidRequest
            > y add t/0 id=unknown
              y.add: t/0:InvalidProducerIdMapping
            > p offsets g epoch=3
              p.offsets: ProducerFenced
            > p offsets g epoch=3 v=1
              p.offsets: InvalidProducerEpoch
            > p add t/0 t/0 t/1
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0 t/1] groups=[]
              p.add: t/0:ok t/1:ok
            > p send t/2
              p.send: not sent (partition not added)
            > p send t/2 force
              p.send: InvalidTxnState
        "#]],
    );
}

/// KIP-447: the group coordinator's verdict on the member fields of v3 fences a commit after
/// the transaction checks pass (the transaction's own errors come first, and unknown partitions
/// before both); v2 carries no member fields; a fenced commit stages nothing.
#[test]
fn txn_offset_commit_member_fencing() {
    check(
        "
        config metadata_max=3
        fence IllegalGeneration
        p init
        p add t/0
        p offsets g
        p txncommit g t/0=1 gen=1 member=m1
        p txncommit g t/0=1 x/0=1 t/1=2:long gen=1 member=m1
        p txncommit g t/0=1 gen=1 member=m1 epoch=9   # the transaction's error first, not asked
        fence FencedInstanceId
        p txncommit g t/0=2 gen=3 member=m2 inst=i1
        fence UnknownMemberId
        p txncommit g t/0=3 gen=3 member=m2 v=2       # v2: none of the fields reach the group
        fence ok                                      # the control: a current member commits
        p txncommit g t/0=4 gen=3 member=m2 inst=i1
        p commit
        markers
        committed
        ",
        expect![[r#"
            > config metadata_max=3
            > fence IllegalGeneration
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
            > p offsets g
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
              p.offsets: ok
            > p txncommit g t/0=1 gen=1 member=m1
              ? group g gen=1 member="m1" inst=-
              p.txncommit: t/0:IllegalGeneration
            > p txncommit g t/0=1 x/0=1 t/1=2:long gen=1 member=m1
              ? group g gen=1 member="m1" inst=-
              p.txncommit: t/0:IllegalGeneration t/1:IllegalGeneration x/0:UnknownTopicOrPartition
            > p txncommit g t/0=1 gen=1 member=m1 epoch=9
              p.txncommit: t/0:ProducerFenced
            > fence FencedInstanceId
            > p txncommit g t/0=2 gen=3 member=m2 inst=i1
              ? group g gen=3 member="m2" inst=i1
              p.txncommit: t/0:FencedInstanceId
            > fence UnknownMemberId
            > p txncommit g t/0=3 gen=3 member=m2 v=2
              ? group g gen=-1 member="" inst=-
              p.txncommit: t/0:UnknownMemberId
            > fence ok
            > p txncommit g t/0=4 gen=3 member=m2 inst=i1
              ? group g gen=3 member="m2" inst=i1
              ~ tx: offset g t/0=4 pid=1000 meta=""
              + stage g pid=1000 t/0=4
              p.txncommit: t/0:ok
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
              ! markers tx pid=1000 epoch=0 COMMIT parts=[t/0] groups=[g:t/0=4]
            > markers
              ~ tx: offset g t/0 deleted
              ~ tx: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              p.commit: ok
            > committed
              committed [g:t/0=4]
        "#]],
    );
}

#[test]
fn txn_offset_commit_refusals() {
    check(
        "
        config metadata_max=3
        p init
        p txncommit g t/0=1          # not in a transaction
        p add t/0
        p txncommit g t/0=1          # the group was not added
        p offsets g
        p txncommit none t/0=1
        p txncommit g t/0=1 x/0=1 t/1=2:long
        p txncommit g t/0=1 epoch=9
        p txncommit g t/0=1 epoch=9 v=2
        p txncommit g t/0=1 pid=1
        p commit
        p txncommit g t/0=3          # markers in flight
        markers
        committed
        ",
        expect![[r#"
            > config metadata_max=3
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p txncommit g t/0=1
              p.txncommit: t/0:InvalidTxnState
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
            > p txncommit g t/0=1
              p.txncommit: t/0:InvalidTxnState
            > p offsets g
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
              p.offsets: ok
            > p txncommit none t/0=1
              p.txncommit: t/0:InvalidGroupId
            > p txncommit g t/0=1 x/0=1 t/1=2:long
              ~ tx: offset g t/0=1 pid=1000 meta=""
              + stage g pid=1000 t/0=1
              p.txncommit: t/0:ok t/1:OffsetMetadataTooLarge x/0:UnknownTopicOrPartition
            > p txncommit g t/0=1 epoch=9
              p.txncommit: t/0:ProducerFenced
            > p txncommit g t/0=1 epoch=9 v=2
              p.txncommit: t/0:InvalidProducerEpoch
            > p txncommit g t/0=1 pid=1
              p.txncommit: t/0:InvalidProducerIdMapping
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[g]
              ! markers tx pid=1000 epoch=0 COMMIT parts=[t/0] groups=[g:t/0=1]
            > p txncommit g t/0=3
              p.txncommit: t/0:ConcurrentTransactions
            > markers
              ~ tx: offset g t/0 deleted
              ~ tx: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              p.commit: ok
            > committed
              committed [g:t/0=1]
        "#]],
    );
}

#[test]
fn an_empty_transaction_completes_at_once() {
    // AddPartitionsToTxn with no partitions starts a transaction that holds nothing (Kafka
    // allows it); ending it needs no markers.
    check(
        "
        p init
        p add
        p commit
        p add t/0
        ",
        expect![[r#"
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              p.add: none
            > p commit
              ~ tx: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              ~ tx: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              p.commit: ok
            > p add t/0
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              p.add: t/0:ok
        "#]],
    );
}

#[test]
fn limits_on_partitions_and_offsets() {
    check(
        "
        config partitions_max=3 offsets_max=2
        p init
        p add t/0 t/1
        p offsets g
        p add t/2                    # a fourth partition or group
        p offsets h
        p add t/0                    # what is in stays in
        p txncommit g t/0=1 t/1=1 t/2=1
        p txncommit g t/1=2          # replacing a staged offset is fine
        ",
        expect![[r#"
            > config partitions_max=3 offsets_max=2
            > p init
              ~ tx: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              p.init: ok pid=1000 epoch=0
            > p add t/0 t/1
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0 t/1] groups=[]
              p.add: t/0:ok t/1:ok
            > p offsets g
              ~ tx: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0 t/1] groups=[g]
              p.offsets: ok
            > p add t/2
              p.add: t/2:PolicyViolation
            > p offsets h
              p.offsets: PolicyViolation
            > p add t/0
              p.add: t/0:ok
            > p txncommit g t/0=1 t/1=1 t/2=1
              ~ tx: offset g t/0=1 pid=1000 meta=""
              ~ tx: offset g t/1=1 pid=1000 meta=""
              + stage g pid=1000 t/0=1 t/1=1
              p.txncommit: t/0:ok t/1:ok t/2:PolicyViolation
            > p txncommit g t/1=2
              ~ tx: offset g t/1=2 pid=1000 meta=""
              + stage g pid=1000 t/1=2
              p.txncommit: t/1:ok
        "#]],
    );
}

#[test]
fn transactions_of_different_ids_are_independent() {
    check(
        "
        a init id=a
        b init id=b
        a add t/0
        b add t/0
        a commit
        b abort
        markers id=b
        state
        markers
        state
        ",
        expect![[r#"
            > a init id=a
              ~ a: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=0
            > b init id=b
              ~ b: Empty pid=1001 epoch=0 last=1001:-1 timeout=60000 start=-1 parts=[] groups=[]
              b.init: ok pid=1001 epoch=0
            > a add t/0
              ~ a: Ongoing pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              a.add: t/0:ok
            > b add t/0
              ~ b: Ongoing pid=1001 epoch=0 last=1001:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              b.add: t/0:ok
            > a commit
              ~ a: PrepareCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              ! markers a pid=1000 epoch=0 COMMIT parts=[t/0] groups=[]
            > b abort
              ~ b: PrepareAbort pid=1001 epoch=0 last=1001:-1 timeout=60000 start=0 parts=[t/0] groups=[]
              ! markers b pid=1001 epoch=0 ABORT parts=[t/0] groups=[]
            > markers id=b
              ~ b: CompleteAbort pid=1001 epoch=0 last=1001:-1 timeout=60000 start=0 parts=[] groups=[]
              b.abort: ok
            > state
              a: PrepareCommit pid=1000 epoch=0 timeout=60000 start=0 parts=[t/0] groups=[]
              b: CompleteAbort pid=1001 epoch=0 timeout=60000 start=0 parts=[] groups=[]
            > markers
              ~ a: CompleteCommit pid=1000 epoch=0 last=1000:-1 timeout=60000 start=0 parts=[] groups=[]
              a.commit: ok
            > state
              a: CompleteCommit pid=1000 epoch=0 timeout=60000 start=0 parts=[] groups=[]
              b: CompleteAbort pid=1001 epoch=0 timeout=60000 start=0 parts=[] groups=[]
        "#]],
    );
}
