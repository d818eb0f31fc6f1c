//! Join, sync, heartbeat and leave scripts: the rebalance protocol as clients see it.

use expect_test::expect;

use crate::harness::check;

#[test]
fn single_member_join_sync_heartbeat() {
    check(
        "
        a join
        a join
        tick 200
        a sync assign=a:p0
        a hb
        state
        ",
        expect![[r#"
            > a join
              a.join: MemberIdRequired id=a#1
            > a join
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0]
              a.sync: ok assign=p0
            > a hb
              a.hb: ok
            > state
              g: Stable gen=1 proto=range leader=a#1 members=[a#1:p0] offsets=[]
        "#]],
    );
}

#[test]
fn join_before_v4_gets_a_member_id_at_once() {
    check(
        "
        a join v=3
        tick 200
        a sync assign=a:p0 v=2
        a join v=0
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0 v=2
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0]
              a.sync: ok assign=p0
            > a join v=0
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a]
        "#]],
    );
}

#[test]
fn three_members_leader_gets_metadata_and_sync_distributes() {
    check(
        "
        a join v=3 proto=range:ma
        b join v=3 proto=range:mb
        c join v=3 proto=range:mc
        tick 200
        b sync
        c sync
        a sync assign=a:pa,b:pb,c:pc
        describe g
        b sync                      # a late repeat in Stable returns the assignment
        ",
        expect![[r#"
            > a join v=3 proto=range:ma
              (a.join parked)
            > b join v=3 proto=range:mb
              (b.join parked)
            > c join v=3 proto=range:mc
              (c.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:ma b#1:mb c#1:mc]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
              c.join: ok gen=1 proto=range leader=a#1 id=c#1
            > b sync
              (b.sync parked)
            > c sync
              (c.sync parked)
            > a sync assign=a:pa,b:pb,c:pc
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:pa b#1:pb c#1:pc]
              a.sync: ok assign=pa
              b.sync: ok assign=pb
              c.sync: ok assign=pc
            > describe g
              admin.describe: g ok Stable type=consumer proto=range [a#1 client=a host=/10.0.0.1 meta=ma assign=pa, b#1 client=b host=/10.0.0.1 meta=mb assign=pb, c#1 client=c host=/10.0.0.1 meta=mc assign=pc]
            > b sync
              b.sync: ok assign=pb
        "#]],
    );
}

#[test]
fn initial_delay_extends_while_members_arrive() {
    check(
        "
        a join v=3
        tick 80
        b join v=3
        tick 20                     # the delay ends, but b arrived: wait one more delay
        tick 99
        tick 1
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > tick 80
            > b join v=3
              (b.join parked)
            > tick 20
            > tick 99
            > tick 1
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
        "#]],
    );
}

#[test]
fn session_timeout_removes_member_and_rebalances() {
    check(
        "
        a join v=3
        b join v=3
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        tick 5000
        a hb
        tick 5000                   # b's session (10 s) runs out; a heartbeated at 5 s
        a hb
        a join
        a sync assign=a:p0p1
        ",
        expect![[r#"
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
            > tick 5000
            > a hb
              a.hb: ok
            > tick 5000
            > a hb
              a.hb: RebalanceInProgress
            > a join
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0p1
              ~ group g gen=2 proto=range leader=a#1 members=[a#1:p0p1]
              a.sync: ok assign=p0p1
        "#]],
    );
}

#[test]
fn leave_triggers_immediate_rebalance() {
    check(
        "
        a join v=3
        b join v=3
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        b leave
        a hb
        a join
        a sync assign=a:p0p1
        a leave v=0                 # the last member leaves: Empty, next generation
        b leave v=1                 # before v3 a member error is the top-level error
        list
        ",
        expect![[r#"
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
            > b leave
              b.leave: ok [b#1:ok]
            > a hb
              a.hb: RebalanceInProgress
            > a join
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0p1
              ~ group g gen=2 proto=range leader=a#1 members=[a#1:p0p1]
              a.sync: ok assign=p0p1
            > a leave v=0
              ~ group g gen=3 proto=- leader=- members=[]
              a.leave: ok
            > b leave v=1
              b.leave: UnknownMemberId
            > list
              admin.list: ok [g:Empty:consumer]
        "#]],
    );
}

#[test]
fn batch_leave_and_removal_by_instance_id() {
    check(
        "
        a join v=5 inst=ia
        b join v=5
        b join v=5
        c join v=5
        c join v=5
        tick 200
        a sync assign=a:x,b:y,c:z
        leave b c inst:ib inst:ia   # ib is unknown
        state
        ",
        expect![[r#"
            > a join v=5 inst=ia
              (a.join parked)
            > b join v=5
              b.join: MemberIdRequired id=b#1
            > b join v=5
              (b.join parked)
            > c join v=5
              c.join: MemberIdRequired id=c#1
            > c join v=5
              (c.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=ia#1 id=ia#1 members=[ia#1:a b#1:b c#1:c]
              b.join: ok gen=1 proto=range leader=ia#1 id=b#1
              c.join: ok gen=1 proto=range leader=ia#1 id=c#1
            > a sync assign=a:x,b:y,c:z
              ~ group g gen=1 proto=range leader=ia#1 members=[ia#1:x b#1:y c#1:z]
              a.sync: ok assign=x
            > leave b c inst:ib inst:ia
              ~ group g gen=2 proto=- leader=- members=[]
              admin.leave: ok [b#1:ok c#1:ok inst:ib:UnknownMemberId inst:ia:ok]
            > state
              g: Empty gen=2 proto=- leader=- members=[] offsets=[]
        "#]],
    );
}

#[test]
fn members_not_rejoining_within_rebalance_timeout_are_removed() {
    check(
        "
        a join v=3 rebalance=5000
        b join v=3 rebalance=5000
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        a join                      # the leader rejoins: rebalance
        b hb
        tick 4000
        b hb                        # b keeps heartbeating but never rejoins
        tick 1000
        b hb
        ",
        expect![[r#"
            > a join v=3 rebalance=5000
              (a.join parked)
            > b join v=3 rebalance=5000
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1]
              a.sync: ok assign=p0
            > b sync
              b.sync: ok assign=p1
            > a join
              (a.join parked)
            > b hb
              b.hb: RebalanceInProgress
            > tick 4000
            > b hb
              b.hb: RebalanceInProgress
            > tick 1000
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > b hb
              b.hb: UnknownMemberId
        "#]],
    );
}

#[test]
fn member_that_never_syncs_is_removed_after_rebalance_timeout() {
    check(
        "
        a join v=3 rebalance=5000
        b join v=3 rebalance=5000
        tick 200
        a sync assign=a:p0,b:p1
        tick 5000                   # b never sent SyncGroup
        a hb
        ",
        expect![[r#"
            > a join v=3 rebalance=5000
              (a.join parked)
            > b join v=3 rebalance=5000
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1]
              a.sync: ok assign=p0
            > tick 5000
            > a hb
              a.hb: RebalanceInProgress
        "#]],
    );
}

#[test]
fn member_id_required_flow() {
    check(
        "
        a join
        a join
        tick 200
        a sync assign=a:p0
        b join                      # pending: the group stays Stable
        a hb
        b join
        a hb
        a join
        b sync
        a sync assign=a:p0,b:p1
        b sync
        ",
        expect![[r#"
            > a join
              a.join: MemberIdRequired id=a#1
            > a join
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0]
              a.sync: ok assign=p0
            > b join
              b.join: MemberIdRequired id=b#1
            > a hb
              a.hb: ok
            > b join
              (b.join parked)
            > a hb
              a.hb: RebalanceInProgress
            > a join
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=2 proto=range leader=a#1 id=b#1
            > b sync
              (b.sync parked)
            > a sync assign=a:p0,b:p1
              ~ group g gen=2 proto=range leader=a#1 members=[a#1:p0 b#1:p1]
              a.sync: ok assign=p0
              b.sync: ok assign=p1
            > b sync
              b.sync: ok assign=p1
        "#]],
    );
}

#[test]
fn pending_member_holds_the_barrier_until_it_expires() {
    check(
        "
        a join v=3
        tick 200
        a sync assign=a:p0
        b join                      # pending: the group stays Stable
        a join                      # the leader rejoins: the barrier waits for pending b too
        tick 5000
        a hb
        tick 5000                   # b's pending id expires (session 10 s): the barrier completes
        b join                      # the expired pending id is now unknown
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0]
              a.sync: ok assign=p0
            > b join
              b.join: MemberIdRequired id=b#1
            > a join
              (a.join parked)
            > tick 5000
            > a hb
              a.hb: RebalanceInProgress
            > tick 5000
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > b join
              b.join: UnknownMemberId id=b#1
        "#]],
    );
}

#[test]
fn static_member_restart_keeps_generation_and_fences_old_id() {
    check(
        "
        a join v=5 inst=ia
        b join v=5 inst=ib
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        a2 join v=5 inst=ia         # ia restarts with an empty member id
        a2 sync gen=1
        a hb                        # the old id of ia is fenced
        a sync gen=1
        a commit t/0=5
        a2 hb gen=1
        a2 join v=9 inst=ia id=none # v9: the leader learns it leads but skips assignment
        ",
        expect![[r#"
            > a join v=5 inst=ia
              (a.join parked)
            > b join v=5 inst=ib
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=ia#1 id=ia#1 members=[ia#1:a ib#1:b]
              b.join: ok gen=1 proto=range leader=ia#1 id=ib#1
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=ia#1 members=[ia#1:p0 ib#1:p1]
              a.sync: ok assign=p0
            > b sync
              b.sync: ok assign=p1
            > a2 join v=5 inst=ia
              ~ group g gen=1 proto=range leader=ia#2 members=[ia#2:p0 ib#1:p1]
              a2.join: ok gen=1 proto=range leader=ia#1 id=ia#2
            > a2 sync gen=1
              a2.sync: ok assign=p0
            > a hb
              a.hb: FencedInstanceId
            > a sync gen=1
              a.sync: FencedInstanceId
            > a commit t/0=5
              a.commit: t/0:FencedInstanceId
            > a2 hb gen=1
              a2.hb: ok
            > a2 join v=9 inst=ia id=none
              ~ group g gen=1 proto=range leader=ia#3 members=[ia#3:p0 ib#1:p1]
              a2.join: ok gen=1 proto=range leader=ia#3 id=ia#3 members=[ia#3:a2 ib#1:b] skip_assignment
        "#]],
    );
}

#[test]
fn static_member_replaced_while_parked_is_fenced() {
    check(
        "
        a join v=5 inst=ia
        b join v=5
        b join v=5
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        b join                      # a follower rejoining Stable with the same metadata: answered at once
        a join                      # the leader rejoins: rebalance, ia#1 parked
        a2 join v=5 inst=ia         # ia restarts: the old id's parked join is fenced
        b join
        a2 sync assign=a2:p0,b:p1
        ",
        expect![[r#"
            > a join v=5 inst=ia
              (a.join parked)
            > b join v=5
              b.join: MemberIdRequired id=b#1
            > b join v=5
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=ia#1 id=ia#1 members=[ia#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=ia#1 id=b#1
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=ia#1 members=[ia#1:p0 b#1:p1]
              a.sync: ok assign=p0
            > b sync
              b.sync: ok assign=p1
            > b join
              b.join: ok gen=1 proto=range leader=ia#1 id=b#1
            > a join
              (a.join parked)
            > a2 join v=5 inst=ia
              a.join: FencedInstanceId id=ia#1
              (a2.join parked)
            > b join
              a2.join: ok gen=2 proto=range leader=ia#2 id=ia#2 members=[ia#2:a2 b#1:b]
              b.join: ok gen=2 proto=range leader=ia#2 id=b#1
            > a2 sync assign=a2:p0,b:p1
              ~ group g gen=2 proto=range leader=ia#2 members=[ia#2:p0 b#1:p1]
              a2.sync: ok assign=p0
        "#]],
    );
}

#[test]
fn static_members_are_not_removed_for_not_rejoining() {
    check(
        "
        a join v=5 inst=ia rebalance=5000
        b join v=5 inst=ib rebalance=5000
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        a join                      # leader rejoins; static b does not
        tick 5000                   # rebalance timeout: b stays, generation 2 includes it
        a sync assign=a:p0,b:p1
        tick 5000                   # b never syncs: removed at the sync timeout
        a hb
        ",
        expect![[r#"
            > a join v=5 inst=ia rebalance=5000
              (a.join parked)
            > b join v=5 inst=ib rebalance=5000
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=ia#1 id=ia#1 members=[ia#1:a ib#1:b]
              b.join: ok gen=1 proto=range leader=ia#1 id=ib#1
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=ia#1 members=[ia#1:p0 ib#1:p1]
              a.sync: ok assign=p0
            > b sync
              b.sync: ok assign=p1
            > a join
              (a.join parked)
            > tick 5000
              a.join: ok gen=2 proto=range leader=ia#1 id=ia#1 members=[ia#1:a ib#1:b]
            > a sync assign=a:p0,b:p1
              ~ group g gen=2 proto=range leader=ia#1 members=[ia#1:p0 ib#1:p1]
              a.sync: ok assign=p0
            > tick 5000
            > a hb
              a.hb: RebalanceInProgress
        "#]],
    );
}

#[test]
fn cooperative_rebalance_rejoins_twice() {
    check(
        "
        a join v=5 proto=cooperative-sticky:a
        a join v=5 proto=cooperative-sticky:a
        b join v=5 proto=cooperative-sticky:b
        b join v=5 proto=cooperative-sticky:b
        tick 200
        a sync v=5 proto=cooperative-sticky assign=a:p0p1,b:p2p3
        b sync v=5 proto=cooperative-sticky
        c join v=5 proto=cooperative-sticky:c
        c join v=5 proto=cooperative-sticky:c
        a hb
        b hb
        a join v=5 proto=cooperative-sticky:a-owns-p0p1
        b join v=5 proto=cooperative-sticky:b-owns-p2p3
        # generation 2: a gives up p1 (revoked), b keeps p2p3, c gets nothing yet
        c sync v=5 proto=cooperative-sticky
        b sync v=5 proto=cooperative-sticky
        a sync v=5 proto=cooperative-sticky assign=a:p0,b:p2p3,c:-
        # a revoked a partition, so it rejoins at once; the others follow
        a join v=5 proto=cooperative-sticky:a-owns-p0
        b hb
        c hb
        b commit t/2=10
        b join v=5 proto=cooperative-sticky:b-owns-p2p3
        c join v=5 proto=cooperative-sticky:c
        a sync v=5 proto=cooperative-sticky assign=a:p0,b:p2p3,c:p1
        b sync v=5 proto=cooperative-sticky
        c sync v=5 proto=cooperative-sticky
        state
        ",
        expect![[r#"
            > a join v=5 proto=cooperative-sticky:a
              a.join: MemberIdRequired id=a#1
            > a join v=5 proto=cooperative-sticky:a
              (a.join parked)
            > b join v=5 proto=cooperative-sticky:b
              b.join: MemberIdRequired id=b#1
            > b join v=5 proto=cooperative-sticky:b
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=cooperative-sticky leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=cooperative-sticky leader=a#1 id=b#1
            > a sync v=5 proto=cooperative-sticky assign=a:p0p1,b:p2p3
              ~ group g gen=1 proto=cooperative-sticky leader=a#1 members=[a#1:p0p1 b#1:p2p3]
              a.sync: ok assign=p0p1
            > b sync v=5 proto=cooperative-sticky
              b.sync: ok assign=p2p3
            > c join v=5 proto=cooperative-sticky:c
              c.join: MemberIdRequired id=c#1
            > c join v=5 proto=cooperative-sticky:c
              (c.join parked)
            > a hb
              a.hb: RebalanceInProgress
            > b hb
              b.hb: RebalanceInProgress
            > a join v=5 proto=cooperative-sticky:a-owns-p0p1
              (a.join parked)
            > b join v=5 proto=cooperative-sticky:b-owns-p2p3
              a.join: ok gen=2 proto=cooperative-sticky leader=a#1 id=a#1 members=[a#1:a-owns-p0p1 b#1:b-owns-p2p3 c#1:c]
              b.join: ok gen=2 proto=cooperative-sticky leader=a#1 id=b#1
              c.join: ok gen=2 proto=cooperative-sticky leader=a#1 id=c#1
            > c sync v=5 proto=cooperative-sticky
              (c.sync parked)
            > b sync v=5 proto=cooperative-sticky
              (b.sync parked)
            > a sync v=5 proto=cooperative-sticky assign=a:p0,b:p2p3,c:-
              ~ group g gen=2 proto=cooperative-sticky leader=a#1 members=[a#1:p0 b#1:p2p3 c#1:-]
              a.sync: ok assign=p0
              b.sync: ok assign=p2p3
              c.sync: ok assign=-
            > a join v=5 proto=cooperative-sticky:a-owns-p0
              (a.join parked)
            > b hb
              b.hb: RebalanceInProgress
            > c hb
              c.hb: RebalanceInProgress
            > b commit t/2=10
              ~ offset g t/2=10 epoch=-1 meta=""
              b.commit: t/2:ok
            > b join v=5 proto=cooperative-sticky:b-owns-p2p3
              (b.join parked)
            > c join v=5 proto=cooperative-sticky:c
              a.join: ok gen=3 proto=cooperative-sticky leader=a#1 id=a#1 members=[a#1:a-owns-p0 b#1:b-owns-p2p3 c#1:c]
              b.join: ok gen=3 proto=cooperative-sticky leader=a#1 id=b#1
              c.join: ok gen=3 proto=cooperative-sticky leader=a#1 id=c#1
            > a sync v=5 proto=cooperative-sticky assign=a:p0,b:p2p3,c:p1
              ~ group g gen=3 proto=cooperative-sticky leader=a#1 members=[a#1:p0 b#1:p2p3 c#1:p1]
              a.sync: ok assign=p0
            > b sync v=5 proto=cooperative-sticky
              b.sync: ok assign=p2p3
            > c sync v=5 proto=cooperative-sticky
              c.sync: ok assign=p1
            > state
              g: Stable gen=3 proto=cooperative-sticky leader=a#1 members=[a#1:p0 b#1:p2p3 c#1:p1] offsets=[t/2=10]
        "#]],
    );
}

#[test]
fn protocol_selection_by_votes() {
    check(
        "
        a join v=3 proto=range:1,roundrobin:2
        b join v=3 proto=roundrobin:3,range:4
        c join v=3 proto=range:5,roundrobin:6
        d join v=3 proto=sticky:7   # shares no protocol
        e join v=3 type=connect     # another protocol type
        tick 200
        ",
        expect![[r#"
            > a join v=3 proto=range:1,roundrobin:2
              (a.join parked)
            > b join v=3 proto=roundrobin:3,range:4
              (b.join parked)
            > c join v=3 proto=range:5,roundrobin:6
              (c.join parked)
            > d join v=3 proto=sticky:7
              d.join: InconsistentGroupProtocol id=-
            > e join v=3 type=connect
              e.join: InconsistentGroupProtocol id=-
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:1 b#1:4 c#1:5]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
              c.join: ok gen=1 proto=range leader=a#1 id=c#1
        "#]],
    );
}

#[test]
fn protocol_selection_only_among_common_protocols() {
    check(
        "
        a join v=3 proto=range:1,roundrobin:2
        b join v=3 proto=range:3,roundrobin:4
        c join v=3 proto=roundrobin:5
        tick 200
        ",
        expect![[r#"
            > a join v=3 proto=range:1,roundrobin:2
              (a.join parked)
            > b join v=3 proto=range:3,roundrobin:4
              (b.join parked)
            > c join v=3 proto=roundrobin:5
              (c.join parked)
            > tick 200
              a.join: ok gen=1 proto=roundrobin leader=a#1 id=a#1 members=[a#1:2 b#1:4 c#1:5]
              b.join: ok gen=1 proto=roundrobin leader=a#1 id=b#1
              c.join: ok gen=1 proto=roundrobin leader=a#1 id=c#1
        "#]],
    );
}

#[test]
fn join_validation() {
    check(
        "
        config max_size=2
        x join v=5 group=
        y join v=5 session=5999
        z join v=5 session=1800001
        w join v=5 type=            # empty protocol type
        v join v=5 proto=           # no protocols
        a join v=5
        a join v=5
        u join v=3 group=h id=a     # a member id for a group that does not exist
        b join v=3
        c join v=3                  # over group.max.size
        tick 200
        ",
        expect![[r#"
            > config max_size=2
            > x join v=5 group=
              x.join: InvalidGroupId id=-
            > y join v=5 session=5999
              y.join: InvalidSessionTimeout id=-
            > z join v=5 session=1800001
              z.join: InvalidSessionTimeout id=-
            > w join v=5 type=
              w.join: InconsistentGroupProtocol id=-
            > v join v=5 proto=
              v.join: InconsistentGroupProtocol id=-
            > a join v=5
              a.join: MemberIdRequired id=a#1
            > a join v=5
              (a.join parked)
            > u join v=3 group=h id=a
              u.join: UnknownMemberId id=a#1
            > b join v=3
              (b.join parked)
            > c join v=3
              c.join: GroupMaxSizeReached id=-
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
        "#]],
    );
}

#[test]
fn sync_validation() {
    check(
        "
        a join v=3
        b join v=3
        tick 200
        b sync gen=0
        b sync id=none
        x sync group=nope
        b sync v=5 proto=roundrobin
        b sync v=5 type=connect
        a sync assign=a:p0,b:p1
        b sync v=5
        a join
        b sync                      # PreparingRebalance
        b sync group=
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > b join v=3
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > b sync gen=0
              b.sync: IllegalGeneration
            > b sync id=none
              b.sync: UnknownMemberId
            > x sync group=nope
              x.sync: UnknownMemberId
            > b sync v=5 proto=roundrobin
              b.sync: InconsistentGroupProtocol
            > b sync v=5 type=connect
              b.sync: InconsistentGroupProtocol
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1]
              a.sync: ok assign=p0
            > b sync v=5
              b.sync: ok assign=p1
            > a join
              (a.join parked)
            > b sync
              b.sync: RebalanceInProgress
            > b sync group=
              b.sync: InvalidGroupId
        "#]],
    );
}

#[test]
fn heartbeat_validation() {
    check(
        "
        a join v=3
        b join v=3
        tick 200
        b hb                        # CompletingRebalance: fine
        a sync assign=a:p0,b:p1
        b hb
        b hb gen=7
        b hb id=none
        b hb v=0
        x hb group=nope
        x hb group=
        a join
        b hb                        # PreparingRebalance: rejoin
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > b join v=3
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > b hb
              b.hb: ok
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1]
              a.sync: ok assign=p0
            > b hb
              b.hb: ok
            > b hb gen=7
              b.hb: IllegalGeneration
            > b hb id=none
              b.hb: UnknownMemberId
            > b hb v=0
              b.hb: ok
            > x hb group=nope
              x.hb: UnknownMemberId
            > x hb group=
              x.hb: InvalidGroupId
            > a join
              (a.join parked)
            > b hb
              b.hb: RebalanceInProgress
        "#]],
    );
}

#[test]
fn leader_fails_to_rejoin_and_another_member_leads() {
    check(
        "
        a join v=3 rebalance=5000
        b join v=3 rebalance=5000
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        b join proto=range:changed  # follower with new metadata: rebalance
        a hb
        tick 5000                   # a never rejoins: b leads generation 2
        ",
        expect![[r#"
            > a join v=3 rebalance=5000
              (a.join parked)
            > b join v=3 rebalance=5000
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > a sync assign=a:p0,b:p1
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1]
              a.sync: ok assign=p0
            > b sync
              b.sync: ok assign=p1
            > b join proto=range:changed
              (b.join parked)
            > a hb
              a.hb: RebalanceInProgress
            > tick 5000
              b.join: ok gen=2 proto=range leader=b#1 id=b#1 members=[b#1:changed]
        "#]],
    );
}

#[test]
fn new_member_join_times_out_after_five_minutes() {
    check(
        "
        a join v=5 inst=ia rebalance=600000 session=600000
        tick 200
        a sync assign=a:p0
        b join v=3 rebalance=600000
        a hb
        tick 299999
        tick 1                      # b's first JoinGroup waited five minutes
        a hb
        ",
        expect![[r#"
            > a join v=5 inst=ia rebalance=600000 session=600000
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=ia#1 id=ia#1 members=[ia#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=ia#1 members=[ia#1:p0]
              a.sync: ok assign=p0
            > b join v=3 rebalance=600000
              (b.join parked)
            > a hb
              a.hb: RebalanceInProgress
            > tick 299999
            > tick 1
              b.join: UnknownMemberId id=-
            > a hb
              a.hb: RebalanceInProgress
        "#]],
    );
}

#[test]
fn rebalance_during_completing_rebalance_fails_parked_syncs() {
    check(
        "
        a join v=3
        b join v=3
        tick 200
        b sync                      # parked, waiting for the leader
        c join v=3                  # a new member: rebalance, b's sync is answered
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > b join v=3
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > b sync
              (b.sync parked)
            > c join v=3
              b.sync: RebalanceInProgress
              (c.join parked)
        "#]],
    );
}

#[test]
fn join_in_completing_rebalance_with_same_metadata_returns_current_generation() {
    check(
        "
        a join v=3 proto=range:ma
        b join v=3 proto=range:mb
        tick 200
        a join v=3 proto=range:ma   # the leader missed its response
        b join v=3 proto=range:mb
        ",
        expect![[r#"
            > a join v=3 proto=range:ma
              (a.join parked)
            > b join v=3 proto=range:mb
              (b.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:ma b#1:mb]
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
            > a join v=3 proto=range:ma
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:ma b#1:mb]
            > b join v=3 proto=range:mb
              b.join: ok gen=1 proto=range leader=a#1 id=b#1
        "#]],
    );
}

#[test]
fn superseded_parked_join_is_answered() {
    check(
        "
        a join v=3
        b join v=3
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        b join proto=range:new      # rebalance; parked
        b join                      # the client retried: the first request is answered
        a join
        ",
        expect![[r#"
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
            > b join proto=range:new
              (b.join parked)
            > b join
              b.join: RebalanceInProgress id=b#1
              (b.join parked)
            > a join
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:new]
              b.join: ok gen=2 proto=range leader=a#1 id=b#1
        "#]],
    );
}
