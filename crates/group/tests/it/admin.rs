//! ListGroups, DescribeGroups and DeleteGroups scripts.

use expect_test::expect;

use crate::harness::check;

#[test]
fn list_groups_with_filters() {
    check(
        "
        a join v=3
        tick 200
        a sync assign=a:p0
        b join v=3 group=h
        x commit gen=-1 group=simple t/0=1
        list
        list v=3
        list states=stable,Empty
        list states=PreparingRebalance
        list v=5 types=classic
        list v=5 types=consumer
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0]
              a.sync: ok assign=p0
            > b join v=3 group=h
              (b.join parked)
            > x commit gen=-1 group=simple t/0=1
              ~ offset simple t/0=1 epoch=-1 meta=""
              x.commit: t/0:ok
            > list
              admin.list: ok [g:Stable:consumer h:PreparingRebalance:consumer simple:Empty:-]
            > list v=3
              admin.list: ok [g:?:consumer h:?:consumer simple:?:-]
            > list states=stable,Empty
              admin.list: ok [g:Stable:consumer simple:Empty:-]
            > list states=PreparingRebalance
              admin.list: ok [h:PreparingRebalance:consumer]
            > list v=5 types=classic
              admin.list: ok [g:Stable:consumer h:PreparingRebalance:consumer simple:Empty:-]
            > list v=5 types=consumer
              admin.list: ok []
        "#]],
    );
}

#[test]
fn describe_groups() {
    check(
        "
        a join v=5 inst=ia proto=range:meta-a
        b join v=3 proto=range:meta-b
        describe g                  # rebalancing: no metadata, no assignment
        tick 200
        a sync assign=a:pa,b:pb
        describe g nope
        describe v=3 g ops=1
        describe v=6 nope
        describe v=0 g
        ",
        expect![[r#"
            > a join v=5 inst=ia proto=range:meta-a
              (a.join parked)
            > b join v=3 proto=range:meta-b
              (b.join parked)
            > describe g
              admin.describe: g ok PreparingRebalance type=consumer proto= [ia#1 client=a host=/10.0.0.1 meta=- assign=-, b#1 client=b host=/10.0.0.1 meta=- assign=-]
            > tick 200
              a.join: ok gen=1 proto=range leader=ia#1 id=ia#1 members=[ia#1:meta-a b#1:meta-b]
              b.join: ok gen=1 proto=range leader=ia#1 id=b#1
            > a sync assign=a:pa,b:pb
              ~ group g gen=1 proto=range leader=ia#1 members=[ia#1:pa b#1:pb]
              a.sync: ok assign=pa
            > describe g nope
              admin.describe: g ok Stable type=consumer proto=range [ia#1 client=a host=/10.0.0.1 meta=meta-a assign=pa, b#1 client=b host=/10.0.0.1 meta=meta-b assign=pb]; nope ok Dead type= proto= []
            > describe v=3 g ops=1
              admin.describe: g ok Stable type=consumer proto=range [ia#1 client=a host=/10.0.0.1 meta=meta-a assign=pa, b#1 client=b host=/10.0.0.1 meta=meta-b assign=pb] ops=328
            > describe v=6 nope
              admin.describe: nope GroupIdNotFound Dead type= proto= []
            > describe v=0 g
              admin.describe: g ok Stable type=consumer proto=range [ia#1 client=a host=/10.0.0.1 meta=meta-a assign=pa, b#1 client=b host=/10.0.0.1 meta=meta-b assign=pb]
        "#]],
    );
}

#[test]
fn delete_groups_only_when_empty() {
    check(
        "
        a join v=3
        tick 200
        a sync assign=a:p0
        a commit t/0=5 t/1=6
        x commit gen=-1 group=simple t/0=1
        delete g simple nope
        a leave
        delete g
        fetch t/0
        list
        a join v=3 id=none          # the group starts over from generation 0
        tick 200
        ",
        expect![[r#"
            > a join v=3
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#1 id=a#1 members=[a#1:a]
            > a sync assign=a:p0
              ~ group g gen=1 proto=range leader=a#1 members=[a#1:p0]
              a.sync: ok assign=p0
            > a commit t/0=5 t/1=6
              ~ offset g t/0=5 epoch=-1 meta=""
              ~ offset g t/1=6 epoch=-1 meta=""
              a.commit: t/0:ok t/1:ok
            > x commit gen=-1 group=simple t/0=1
              ~ offset simple t/0=1 epoch=-1 meta=""
              x.commit: t/0:ok
            > delete g simple nope
              ~ offset simple t/0 deleted
              ~ group simple deleted
              admin.delete: g:NonEmptyGroup simple:ok nope:GroupIdNotFound
            > a leave
              ~ group g gen=2 proto=- leader=- members=[]
              a.leave: ok [a#1:ok]
            > delete g
              ~ offset g t/0 deleted
              ~ offset g t/1 deleted
              ~ group g deleted
              admin.delete: g:ok
            > fetch t/0
              admin.fetch: t/0=-1
            > list
              admin.list: ok []
            > a join v=3 id=none
              (a.join parked)
            > tick 200
              a.join: ok gen=1 proto=range leader=a#2 id=a#2 members=[a#2:a]
        "#]],
    );
}
