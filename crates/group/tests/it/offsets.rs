//! OffsetCommit and OffsetFetch scripts: generation checks, storage, fetch shapes, the
//! transactional hook.

use expect_test::expect;

use crate::harness::check;

#[test]
fn simple_commit_and_fetch_round_trip() {
    check(
        "
        x commit gen=-1 t/0=5:hello t/1=7 u/0=1
        x commit gen=-1 epoch=3 t/1=8:again
        fetch t/0 t/1 t/2 v/0
        fetch                       # null topics: every committed offset
        fetch v=1 t/0
        fetch v=8 t/0
        fetch group=other t/0       # unknown group: -1, no error
        x commit gen=-1 v=2 t/0=9
        fetch t/0
        state
        list
        ",
        expect![[r#"
            > x commit gen=-1 t/0=5:hello t/1=7 u/0=1
              ~ offset g t/0=5 epoch=-1 meta="hello"
              ~ offset g t/1=7 epoch=-1 meta=""
              ~ offset g u/0=1 epoch=-1 meta=""
              x.commit: t/0:ok t/1:ok u/0:ok
            > x commit gen=-1 epoch=3 t/1=8:again
              ~ offset g t/1=8 epoch=3 meta="again"
              x.commit: t/1:ok
            > fetch t/0 t/1 t/2 v/0
              admin.fetch: t/0=5:hello t/1=8@3:again t/2=-1 v/0=-1
            > fetch
              admin.fetch: t/0=5:hello t/1=8@3:again u/0=1
            > fetch v=1 t/0
              admin.fetch: t/0=5:hello
            > fetch v=8 t/0
              admin.fetch: t/0=5:hello
            > fetch group=other t/0
              admin.fetch: t/0=-1
            > x commit gen=-1 v=2 t/0=9
              ~ offset g t/0=9 epoch=-1 meta=""
              x.commit: t/0:ok
            > fetch t/0
              admin.fetch: t/0=9
            > state
              g: Empty gen=0 proto=- leader=- members=[] offsets=[t/0=9 t/1=8 u/0=1]
            > list
              admin.list: ok [g:Empty:-]
        "#]],
    );
}

#[test]
fn commit_generation_and_member_checks() {
    check(
        "
        config metadata_max=4
        x commit gen=1 t/0=1        # a group that does not exist: stale generation
        a join v=3
        b join v=3
        tick 200
        a commit t/0=1              # CompletingRebalance
        a sync assign=a:p0,b:p1
        b sync
        a commit t/0=2 t/1=3:toolong
        a commit gen=0 t/0=3        # stale generation
        a commit id=none t/0=4      # unknown member
        x commit gen=-1 t/0=5       # a simple commit into a group with members
        a join                      # PreparingRebalance: commits of the current generation pass
        b commit t/1=6
        fetch
        ",
        expect![[r#"
            > config metadata_max=4
            > x commit gen=1 t/0=1
              x.commit: t/0:IllegalGeneration
            > a join v=3
              (a.join parked)
            > b join v=3
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > a commit t/0=1
              a.commit: t/0:RebalanceInProgress
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1]
              a.sync: ok assign=p0
            > b sync
              b.sync: ok assign=p1
            > a commit t/0=2 t/1=3:toolong
              ~ offset g t/0=2 epoch=-1 meta=""
              a.commit: t/0:ok t/1:OffsetMetadataTooLarge
            > a commit gen=0 t/0=3
              a.commit: t/0:IllegalGeneration
            > a commit id=none t/0=4
              a.commit: t/0:UnknownMemberId
            > x commit gen=-1 t/0=5
              x.commit: t/0:UnknownMemberId
            > a join
              (a.join parked)
            > b commit t/1=6
              ~ offset g t/1=6 epoch=-1 meta=""
              b.commit: t/1:ok
            > fetch
              admin.fetch: t/0=2 t/1=6
        "#]],
    );
}

#[test]
fn static_member_commit_checks() {
    check(
        "
        a join v=5 inst=ia
        tick 200
        a sync assign=a:p0
        a commit t/0=1
        a commit inst=ib t/0=2      # unknown instance id
        a2 join v=5 inst=ia         # ia restarts under a new member id
        a commit inst=ia t/0=3      # the old member id is fenced
        a2 commit gen=1 t/0=4
        ",
        expect![[r#"
            > a join v=5 inst=ia
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=ia#1 id=ia#1 members=[ia#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=ia#1 members=[ia#1:p0]
              a.sync: ok assign=p0
            > a commit t/0=1
              ~ offset g t/0=1 epoch=-1 meta=""
              a.commit: t/0:ok
            > a commit inst=ib t/0=2
              a.commit: t/0:UnknownMemberId
            > a2 join v=5 inst=ia
              ~ group g gen=1 proto=range leader=ia#2 members=[ia#2:p0]
              a2.join: ok gen=1 proto=range leader=ia#1 id=ia#2
            > a commit inst=ia t/0=3
              a.commit: t/0:FencedInstanceId
            > a2 commit gen=1 t/0=4
              ~ offset g t/0=4 epoch=-1 meta=""
              a2.commit: t/0:ok
        "#]],
    );
}

#[test]
fn commits_keep_the_session_alive() {
    check(
        "
        a join v=3
        tick 200
        a sync assign=a:p0
        tick 9000
        a commit t/0=1
        tick 9000
        a commit t/0=2
        tick 9000
        a hb
        tick 10000                  # no heartbeat, no commit: the session ends
        state
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0]
              a.sync: ok assign=p0
            > tick 9000
            > a commit t/0=1
              ~ offset g t/0=1 epoch=-1 meta=""
              a.commit: t/0:ok
            > tick 9000
            > a commit t/0=2
              ~ offset g t/0=2 epoch=-1 meta=""
              a.commit: t/0:ok
            > tick 9000
            > a hb
              a.hb: ok
            > tick 10000
              ~ group g gen=2 proto=- leader=- members=[]
            > state
              g: Empty gen=2 proto=- leader=- members=[] offsets=[t/0=2]
        "#]],
    );
}

#[test]
fn require_stable_sees_pending_transactional_offsets() {
    check(
        "
        x commit gen=-1 t/0=1
        stage pid=7 t/0=5 t/1=6
        fetch t/0 t/1
        fetch t/0 t/1 stable
        endtxn pid=7 commit
        fetch t/0 t/1 stable
        stage pid=8 t/0=9
        fetch stable
        endtxn pid=8 abort
        fetch stable
        stage pid=9 group=fresh t/0=1 # staging creates the group
        list
        endtxn pid=9 abort group=fresh
        list
        ",
        expect![[r#"
            > x commit gen=-1 t/0=1
              ~ offset g t/0=1 epoch=-1 meta=""
              x.commit: t/0:ok
            > stage pid=7 t/0=5 t/1=6
            > fetch t/0 t/1
              admin.fetch: t/0=1 t/1=-1
            > fetch t/0 t/1 stable
              admin.fetch: t/0:UnstableOffsetCommit t/1:UnstableOffsetCommit
            > endtxn pid=7 commit
              ~ offset g t/0=5 epoch=-1 meta=""
              ~ offset g t/1=6 epoch=-1 meta=""
            > fetch t/0 t/1 stable
              admin.fetch: t/0=5 t/1=6
            > stage pid=8 t/0=9
            > fetch stable
              admin.fetch: t/0:UnstableOffsetCommit t/1=6
            > endtxn pid=8 abort
            > fetch stable
              admin.fetch: t/0=5 t/1=6
            > stage pid=9 group=fresh t/0=1
            > list
              admin.list: ok [fresh:Empty:- g:Empty:-]
            > endtxn pid=9 abort group=fresh
            > list
              admin.list: ok [g:Empty:-]
        "#]],
    );
}

/// KIP-447: a TxnOffsetCommit's generation, member id and instance id are checked as an
/// OffsetCommit's, so a zombie fenced by a rebalance cannot commit; unlike OffsetCommit, a commit
/// without member fields (TxnOffsetCommit before v3) passes, and a rebalance being completed is
/// no error.
#[test]
fn txn_offset_commit_member_checks() {
    check(
        "
        x txncheck v=2              # a group nobody knows, no member fields: Kafka creates it
        x txncheck gen=1 id=none    # the same with a generation: no such member
        a join v=3
        b join v=3
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        a txncheck
        x txncheck v=2
        x commit gen=-1 t/0=1       # control: a simple non-transactional commit is refused
        a txncheck gen=0
        a txncheck id=none
        a txncheck id=b             # another member's id with a's generation: b is current too
        c join v=3                  # a rebalance starts
        a txncheck                  # PreparingRebalance: the current generation still commits
        a join
        b join
        tick 300
        a txncheck gen=1            # the zombie's old generation is fenced
        a txncheck                  # CompletingRebalance: no REBALANCE_IN_PROGRESS here
        a commit t/0=2              # control: OffsetCommit answers REBALANCE_IN_PROGRESS
        s join v=5 group=h inst=is
        tick 500
        s sync group=h assign=s:p0
        s txncheck group=h
        s txncheck group=h inst=iz  # an unknown instance id
        s2 join v=5 group=h inst=is # is restarts under a new member id
        s txncheck group=h inst=is  # the old member id is fenced
        s2 txncheck group=h gen=1
        ",
        expect![[r#"
            > x txncheck v=2
              x.txncheck: ok
            > x txncheck gen=1 id=none
              x.txncheck: UnknownMemberId
            > a join v=3
              (a.join parked)
            > b join v=3
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1]
              a.sync: ok assign=p0
            > b sync
              b.sync: ok assign=p1
            > a txncheck
              a.txncheck: ok
            > x txncheck v=2
              x.txncheck: ok
            > x commit gen=-1 t/0=1
              x.commit: t/0:UnknownMemberId
            > a txncheck gen=0
              a.txncheck: IllegalGeneration
            > a txncheck id=none
              a.txncheck: UnknownMemberId
            > a txncheck id=b
              a.txncheck: ok
            > c join v=3
              (c.join parked)
            > a txncheck
              a.txncheck: ok
            > a join
              (a.join parked)
            > b join
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b c#1:c]
              b.join: ok gen=2 proto=range leader=a#1 id=b#1
              c.join: ok gen=2 proto=range leader=a#1 id=c#1
            > tick 300
            > a txncheck gen=1
              a.txncheck: IllegalGeneration
            > a txncheck
              a.txncheck: ok
            > a commit t/0=2
              a.commit: t/0:RebalanceInProgress
            > s join v=5 group=h inst=is
              (s.join parked)
            > tick 500
              s.join: ok gen=1 proto=range leader=is#1 id=is#1 members=[is#1:s]
            > s sync group=h assign=s:p0
              ~ group h gen=1 proto=range leader=is#1 members=[is#1:p0]
              s.sync: ok assign=p0
            > s txncheck group=h
              s.txncheck: ok
            > s txncheck group=h inst=iz
              s.txncheck: UnknownMemberId
            > s2 join v=5 group=h inst=is
              ~ group h gen=1 proto=range leader=is#2 members=[is#2:p0]
              s2.join: ok gen=1 proto=range leader=is#1 id=is#2
            > s txncheck group=h inst=is
              s.txncheck: FencedInstanceId
            > s2 txncheck group=h gen=1
              s2.txncheck: ok
        "#]],
    );
}

#[test]
fn offsets_of_a_group_without_members_expire_after_their_commit() {
    check(
        "
        config retention=1000 retention_check=100
        x commit gen=-1 t/0=5
        tick 500
        x commit gen=-1 t/1=6
        stage pid=3 t/2=7           # an open transaction's offsets never expire
        tick 550                    # 1050: t/0 was committed 1000 ms ago
        fetch
        tick 500                    # 1550: t/1 too
        state
        endtxn pid=3 abort          # nothing left: the next sweep deletes the group
        tick 100
        list
        restart                     # the tombstones replay to nothing
        list
        ",
        expect![[r#"
            > config retention=1000 retention_check=100
            > x commit gen=-1 t/0=5
              ~ offset g t/0=5 epoch=-1 meta=""
              x.commit: t/0:ok
            > tick 500
            > x commit gen=-1 t/1=6
              ~ offset g t/1=6 epoch=-1 meta=""
              x.commit: t/1:ok
            > stage pid=3 t/2=7
            > tick 550
              ~ offset g t/0 deleted
            > fetch
              admin.fetch: t/1=6
            > tick 500
              ~ offset g t/1 deleted
            > state
              g: Empty gen=0 proto=- leader=- members=[] offsets=[]
            > endtxn pid=3 abort
            > tick 100
            > list
              admin.list: ok []
            > restart
            > list
              admin.list: ok []
        "#]],
    );
}

#[test]
fn offsets_of_a_consumer_group_expire_after_it_becomes_empty() {
    check(
        "
        config retention=1000 retention_check=100 initial_delay=0
        a join v=3
        tick 10
        a sync assign=a:p0
        a commit t/0=5
        tick 5000                   # Stable: offsets of a group with members never expire
        a hb
        fetch
        a leave                     # Empty from now on: the retention clock starts here
        tick 900
        fetch
        tick 200
        fetch
        list
        restart
        list
        ",
        expect![[r#"
            > config retention=1000 retention_check=100 initial_delay=0
            > a join v=3
              (a.join parked)
            > tick 10
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0]
              a.sync: ok assign=p0
            > a commit t/0=5
              ~ offset g t/0=5 epoch=-1 meta=""
              a.commit: t/0:ok
            > tick 5000
            > a hb
              a.hb: ok
            > fetch
              admin.fetch: t/0=5
            > a leave
              ~ group g gen=2 proto=- leader=- members=[]
              a.leave: ok [a#1:ok]
            > tick 900
            > fetch
              admin.fetch: t/0=5
            > tick 200
              ~ offset g t/0 deleted
              ~ group g deleted
            > fetch
              admin.fetch: none
            > list
              admin.list: ok []
            > restart
            > list
              admin.list: ok []
        "#]],
    );
}

#[test]
fn a_deleted_topics_offsets_are_removed_from_every_group() {
    check(
        "
        x commit gen=-1 t/0=5 t/1=6 u/0=7
        x commit gen=-1 group=only-t t/0=1
        stage pid=3 t/2=8           # a transaction's staged offsets of t go too
        deltopic t
        fetch
        endtxn pid=3 commit
        fetch
        list                        # only-t had nothing else: deleted
        restart
        fetch
        list
        ",
        expect![[r#"
            > x commit gen=-1 t/0=5 t/1=6 u/0=7
              ~ offset g t/0=5 epoch=-1 meta=""
              ~ offset g t/1=6 epoch=-1 meta=""
              ~ offset g u/0=7 epoch=-1 meta=""
              x.commit: t/0:ok t/1:ok u/0:ok
            > x commit gen=-1 group=only-t t/0=1
              ~ offset only-t t/0=1 epoch=-1 meta=""
              x.commit: t/0:ok
            > stage pid=3 t/2=8
            > deltopic t
              ~ offset g t/0 deleted
              ~ offset g t/1 deleted
              ~ offset only-t t/0 deleted
              ~ group only-t deleted
            > fetch
              admin.fetch: u/0=7
            > endtxn pid=3 commit
            > fetch
              admin.fetch: u/0=7
            > list
              admin.list: ok [g:Empty:-]
            > restart
              g: Empty gen=0 proto=- leader=- members=[] offsets=[u/0=7]
            > fetch
              admin.fetch: u/0=7
            > list
              admin.list: ok [g:Empty:-]
        "#]],
    );
}
