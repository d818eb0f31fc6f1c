//! Restart scripts: the records an output carries rebuild offsets exactly and groups as last
//! persisted; members carry on or rejoin as after a Kafka coordinator failover.

use expect_test::expect;

use crate::harness::check;

#[test]
fn restart_keeps_offsets_generation_and_members() {
    check(
        "
        a join v=3
        b join v=3
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        a commit t/0=5:meta t/1=6
        x commit gen=-1 group=simple epoch=4 t/0=9
        restart
        fetch t/0 t/1
        fetch group=simple
        a hb                        # the same member id and generation carry on
        tick 9000
        a hb
        tick 2000                   # b never came back: its session ends
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
            > a commit t/0=5:meta t/1=6
              ~ offset g t/0=5 epoch=-1 meta="meta"
              ~ offset g t/1=6 epoch=-1 meta=""
              a.commit: t/0:ok t/1:ok
            > x commit gen=-1 group=simple epoch=4 t/0=9
              ~ offset simple t/0=9 epoch=4 meta=""
              x.commit: t/0:ok
            > restart
              g: Stable gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1] offsets=[t/0=5 t/1=6]
              simple: Empty gen=0 proto=- leader=- members=[] offsets=[t/0=9]
            > fetch t/0 t/1
              admin.fetch: t/0=5:meta t/1=6
            > fetch group=simple
              admin.fetch: t/0=9@4
            > a hb
              a.hb: ok
            > tick 9000
            > a hb
              a.hb: ok
            > tick 2000
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
fn restart_during_rebalance_restores_last_stable_generation() {
    check(
        "
        a join v=3
        b join v=3
        tick 200
        a sync assign=a:p0,b:p1
        b sync
        c join v=3                  # rebalance in progress when the broker stops
        restart
        a hb
        c join v=3 id=none          # c's parked join was lost with the connection; it rejoins
        a join
        b join
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
            > c join v=3
              (c.join parked)
            > restart
              g: Stable gen=1 proto=range leader=a#1 members=[a#1:p0 b#1:p1] offsets=[]
            > a hb
              a.hb: ok
            > c join v=3 id=none
              (c.join parked)
            > a join
              (a.join parked)
            > b join
              a.join: ok gen=2 proto=range leader=a#1 id=a#1 members=[a#1:a b#1:b c#1:c]
              b.join: ok gen=2 proto=range leader=a#1 id=b#1
              c.join: ok gen=2 proto=range leader=a#1 id=c#1
        "#]],
    );
}

#[test]
fn restart_keeps_empty_groups_and_static_replacements() {
    check(
        "
        a join v=5 inst=ia
        tick 200
        a sync assign=a:p0
        a2 join v=5 inst=ia
        b join v=3 group=h
        tick 200
        b leave group=h
        restart
        a hb inst=ia                # the replaced id stays fenced
        a2 hb gen=1
        b join v=3 group=h id=none
        tick 200
        ",
        expect![[r#"
            > a join v=5 inst=ia
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=ia#1 id=ia#1 members=[ia#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=ia#1 members=[ia#1:p0]
              a.sync: ok assign=p0
            > a2 join v=5 inst=ia
              ~ group g gen=1 proto=range leader=ia#2 members=[ia#2:p0]
              a2.join: ok gen=1 proto=range leader=ia#1 id=ia#2
            > b join v=3 group=h
              (b.join parked)
            > tick 200
              b.join: ok gen=1 proto=range leader=b#1 id=b#1 members=[b#1:b]
            > b leave group=h
              ~ group h gen=2 proto=- leader=- members=[]
              b.leave: ok [b#1:ok]
            > restart
              g: Stable gen=1 proto=range leader=ia#2 members=[ia#2(inst=ia):p0] offsets=[]
              h: Empty gen=2 proto=- leader=- members=[] offsets=[]
            > a hb inst=ia
              a.hb: FencedInstanceId
            > a2 hb gen=1
              a2.hb: ok
            > b join v=3 group=h id=none
              (b.join parked)
            > tick 200
              b.join: ok gen=3 proto=range leader=b#2 id=b#2 members=[b#2:b]
        "#]],
    );
}

#[test]
fn restart_after_delete_forgets_the_group() {
    check(
        "
        x commit gen=-1 t/0=1
        delete g
        x commit gen=-1 group=h t/0=2
        restart
        list
        fetch t/0
        ",
        expect![[r#"
            > x commit gen=-1 t/0=1
              ~ offset g t/0=1 epoch=-1 meta=""
              x.commit: t/0:ok
            > delete g
              ~ offset g t/0 deleted
              ~ group g deleted
              admin.delete: g:ok
            > x commit gen=-1 group=h t/0=2
              ~ offset h t/0=2 epoch=-1 meta=""
              x.commit: t/0:ok
            > restart
              h: Empty gen=0 proto=- leader=- members=[] offsets=[t/0=2]
            > list
              admin.list: ok [h:Empty:-]
            > fetch t/0
              admin.fetch: t/0=-1
        "#]],
    );
}
