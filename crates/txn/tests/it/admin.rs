//! ListTransactions and DescribeTransactions (KIP-664) as Kafka's admin tools see them.

use expect_test::expect;

use crate::harness::check;

#[test]
fn list_and_describe_transactions() {
    check(
        "
        a init id=a
        b init id=b timeout=20000
        c init id=c
        tick 100
        b add t/1 t/0 u/0
        b offsets g
        c add t/2
        c commit
        tick 400
        list
        list states=Ongoing,PrepareCommit
        list states=Dead,Bogus       # Kafka's transient states are known names; others echoed
        list pids=1001
        list duration=450            # running for longer than 450 ms
        list duration=450 v=0        # v0 has no duration filter
        describe b a none unknown
        ",
        expect![[r#"
            > a init id=a
              ~ a: Empty pid=1000 epoch=0 last=1000:-1 timeout=60000 start=-1 parts=[] groups=[]
              a.init: ok pid=1000 epoch=0
            > b init id=b timeout=20000
              ~ b: Empty pid=1001 epoch=0 last=1001:-1 timeout=20000 start=-1 parts=[] groups=[]
              b.init: ok pid=1001 epoch=0
            > c init id=c
              ~ c: Empty pid=1002 epoch=0 last=1002:-1 timeout=60000 start=-1 parts=[] groups=[]
              c.init: ok pid=1002 epoch=0
            > tick 100
            > b add t/1 t/0 u/0
              ~ b: Ongoing pid=1001 epoch=0 last=1001:-1 timeout=20000 start=100 parts=[t/0 t/1 u/0] groups=[]
              b.add: t/1:ok t/0:ok u/0:ok
            > b offsets g
              ~ b: Ongoing pid=1001 epoch=0 last=1001:-1 timeout=20000 start=100 parts=[t/0 t/1 u/0] groups=[g]
              b.offsets: ok
            > c add t/2
              ~ c: Ongoing pid=1002 epoch=0 last=1002:-1 timeout=60000 start=100 parts=[t/2] groups=[]
              c.add: t/2:ok
            > c commit
              ~ c: PrepareCommit pid=1002 epoch=0 last=1002:-1 timeout=60000 start=100 parts=[t/2] groups=[]
              ! markers c pid=1002 epoch=0 COMMIT parts=[t/2] groups=[]
            > tick 400
            > list
              admin.list: ok [a:1000:Empty b:1001:Ongoing c:1002:PrepareCommit]
            > list states=Ongoing,PrepareCommit
              admin.list: ok [b:1001:Ongoing c:1002:PrepareCommit]
            > list states=Dead,Bogus
              admin.list: ok [] unknown=[Bogus]
            > list pids=1001
              admin.list: ok [b:1001:Ongoing]
            > list duration=450
              admin.list: ok [a:1000:Empty]
            > list duration=450 v=0
              admin.list: ok [a:1000:Empty b:1001:Ongoing c:1002:PrepareCommit]
            > describe b a none unknown
              admin.describe: b Ongoing pid=1001 epoch=0 timeout=20000 start=100 [t:0,1 u:0 __consumer_offsets:0]; a Empty pid=1000 epoch=0 timeout=60000 start=-1 []; "":InvalidRequest; "unknown":TransactionalIdNotFound
        "#]],
    );
}
