"""Consumer groups with confluent-kafka and kafka-python against ferry.

Three members of one group over six partitions get disjoint assignments covering every partition;
a member that leaves hands its partitions over at once; a member killed without leaving (kcat in
its own process, SIGKILL) loses them after the session timeout; cooperative-sticky keeps the
unaffected partitions; both clients can share one group; and commit-after-processing resumes at
the committed offset after a crash (at-least-once: the uncommitted records come again) while
commit-before-processing loses the record in flight (at-most-once).
"""

import os
import subprocess
import threading
import time

import confluent_kafka
import confluent_kafka.admin
import kafka
import pytest
from kafka.coordinator.assignors.range import RangePartitionAssignor

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000
DEADLINE_S = 60.0


@pytest.fixture
def broker_settings():
    return {"num.partitions": str(PARTITIONS), "group.initial.rebalance.delay.ms": "200"}


def produce(bootstrap, topic, count, partitions=PARTITIONS):
    producer = confluent_kafka.Producer({"bootstrap.servers": bootstrap, "acks": "all"})
    for i in range(count):
        producer.produce(topic, key=str(i).encode(), value=str(i).encode(), partition=i % partitions)
    assert producer.flush(30) == 0


def confluent_member(bootstrap, group, topic, strategy="range", revoked=None):
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "session.timeout.ms": SESSION_TIMEOUT_MS,
            "heartbeat.interval.ms": 500,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "partition.assignment.strategy": strategy,
        }
    )

    def on_revoke(_consumer, partitions):
        if revoked is not None:
            revoked.extend(p.partition for p in partitions)

    consumer.subscribe([topic], on_revoke=on_revoke)
    return consumer


def kafka_python_member(bootstrap, group, topic):
    return kafka.KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        session_timeout_ms=SESSION_TIMEOUT_MS,
        heartbeat_interval_ms=500,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        partition_assignment_strategy=[RangePartitionAssignor],
    )


def assignment(member):
    if isinstance(member, kafka.KafkaConsumer):
        return {tp.partition for tp in member.assignment()}
    return {tp.partition for tp in member.assignment()}


def poll_once(member):
    if isinstance(member, kafka.KafkaConsumer):
        member.poll(timeout_ms=50)
    else:
        message = member.poll(0.05)
        assert message is None or message.error() is None, message and message.error()


def covers_all(assignments):
    union = set().union(*assignments)
    return (
        sum(len(a) for a in assignments) == PARTITIONS
        and union == set(range(PARTITIONS))
        and all(assignments)
    )


def poll_until(members, what, done):
    start = time.monotonic()
    while True:
        for member in members:
            poll_once(member)
        assignments = [assignment(m) for m in members]
        if done(assignments):
            return time.monotonic() - start
        assert time.monotonic() - start < DEADLINE_S, f"{what}: timed out with {assignments}"


def test_confluent_members_share_hand_over_on_leave_and_on_kill(broker):
    topic = "py-groups"
    produce(broker.bootstrap, topic, 60)
    a, b, c = (confluent_member(broker.bootstrap, "py-eager", topic) for _ in range(3))
    poll_until([a, b, c], "three members", covers_all)

    c.close()
    took = poll_until([a, b], "after leave", covers_all)
    assert took < 5.0, f"leave handover took {took:.1f}s"

    killed = subprocess.Popen(
        ["kcat", "-b", broker.bootstrap, "-G", "py-eager", "-q", topic,
         "-X", f"session.timeout.ms={SESSION_TIMEOUT_MS}", "-X", "partition.assignment.strategy=range"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        poll_until([a, b], "kcat joined", lambda s: sum(len(x) for x in s) < PARTITIONS)
    finally:
        killed.kill()
        killed.wait()
    killed_at = time.monotonic()
    poll_until([a, b], "after kill", covers_all)
    took = time.monotonic() - killed_at
    assert took >= 3.0, f"partitions moved before the session timeout ({took:.1f}s)"
    a.close()
    b.close()


def test_confluent_cooperative_sticky_keeps_unaffected_partitions(broker):
    topic = "py-coop"
    produce(broker.bootstrap, topic, 6)
    revoked_a, revoked_b = [], []
    a = confluent_member(broker.bootstrap, "py-coop", topic, "cooperative-sticky", revoked_a)
    b = confluent_member(broker.bootstrap, "py-coop", topic, "cooperative-sticky", revoked_b)
    c = confluent_member(broker.bootstrap, "py-coop", topic, "cooperative-sticky")
    poll_until([a, b, c], "three cooperative members", covers_all)
    before_a, before_b = assignment(a), assignment(b)
    revoked_before = (list(revoked_a), list(revoked_b))
    c.close()
    poll_until([a, b], "after cooperative leave", covers_all)
    assert assignment(a) >= before_a
    assert assignment(b) >= before_b
    assert (revoked_a, revoked_b) == revoked_before, "an unaffected member had partitions revoked"
    a.close()
    b.close()


class PolledMember:
    """One group member polled continuously on its own thread, as an application runs it.

    kafka-python 3.0.12 needs this: when a JoinGroup/SyncGroup round completes while no
    `poll()` of that consumer is waiting (its poll timed out a moment earlier), the next
    `poll()` finds the finished join task, discards its result and sends a new JoinGroup
    (`join_group_async` in kafka/coordinator/base.py). Polled round-robin from one thread, a
    kafka-python group leader therefore rejoined after every SyncGroup, and a leader's rejoin
    rebalances the group (as in Kafka), so the group never settled. With one thread per
    member the result is observed almost always, and a rare miss costs one more rebalance.
    """

    def __init__(self, make):
        self._make = make
        self._lock = threading.Lock()
        self._assigned = set()
        self._stop = threading.Event()
        self._error = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            member = self._make()
            try:
                while not self._stop.is_set():
                    poll_once(member)
                    with self._lock:
                        self._assigned = assignment(member)
            finally:
                member.close()
        except Exception as error:  # reported by the test thread
            self._error = error

    def assignment(self):
        assert self._error is None, f"member thread failed: {self._error!r}"
        with self._lock:
            return set(self._assigned)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "member did not close"
        assert self._error is None, f"member thread failed: {self._error!r}"


def wait_until(members, what, done):
    start = time.monotonic()
    while True:
        assignments = [m.assignment() for m in members]
        if done(assignments):
            return time.monotonic() - start
        assert time.monotonic() - start < DEADLINE_S, f"{what}: timed out with {assignments}"
        time.sleep(0.05)


def test_kafka_python_and_confluent_share_one_group(broker):
    topic = "py-mixed"
    produce(broker.bootstrap, topic, 60)
    members = [
        PolledMember(lambda: kafka_python_member(broker.bootstrap, "py-mixed", topic)),
        PolledMember(lambda: kafka_python_member(broker.bootstrap, "py-mixed", topic)),
        PolledMember(lambda: confluent_member(broker.bootstrap, "py-mixed", topic)),
    ]
    try:
        wait_until(members, "mixed members", covers_all)
        members[0].close()
        took = wait_until(members[1:], "after kafka-python leave", covers_all)
        assert took < 5.0, f"leave handover took {took:.1f}s"
    finally:
        for member in members:
            member.close()


def consume_with_crash(bootstrap, topic, group, commit_before, crash_after):
    """kafka-python member on partition 0: commits before or after processing each record and
    "crashes" (closes without committing) as described in the module docstring."""
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        session_timeout_ms=SESSION_TIMEOUT_MS,
    )
    consumer.subscribe([topic])
    processed = []
    start = time.monotonic()
    while time.monotonic() - start < DEADLINE_S:
        batches = consumer.poll(timeout_ms=200, max_records=1)
        records = [r for rs in batches.values() for r in rs]
        if not records:
            if crash_after is None and processed and processed[-1] == 99:
                break
            continue
        record = records[0]
        position = {kafka.TopicPartition(topic, 0): kafka.OffsetAndMetadata(record.offset + 1, "", -1)}
        if commit_before:
            consumer.commit(position)
        if crash_after is not None and len(processed) == crash_after:
            break
        processed.append(record.offset)
        uncommitted_tail = crash_after is not None and len(processed) > crash_after - 2
        if not commit_before and not uncommitted_tail:
            consumer.commit(position)
    consumer.close(autocommit=False)
    return processed


@pytest.mark.parametrize("broker_settings", [{"num.partitions": "1", "group.initial.rebalance.delay.ms": "0"}])
def test_kafka_python_crash_resumes_at_committed_offset(broker):
    topic = "py-resume"
    produce(broker.bootstrap, topic, 100, partitions=1)
    first = consume_with_crash(broker.bootstrap, topic, "py-alo", False, 40)
    second = consume_with_crash(broker.bootstrap, topic, "py-alo", False, None)
    everything = first + second
    assert set(everything) == set(range(100)), "at-least-once lost records"
    assert len(everything) - 100 == 2, "the 2 processed-but-uncommitted records come again"
    assert second[0] == first[-2], "resumed exactly at the committed offset"

    first = consume_with_crash(broker.bootstrap, topic, "py-amo", True, 40)
    second = consume_with_crash(broker.bootstrap, topic, "py-amo", True, None)
    seen = set(first + second)
    assert len(first) + len(second) == len(seen), "at-most-once delivered a record twice"
    assert set(range(100)) - seen == {40}, "exactly the record in flight at the crash is lost"


SLOW = os.environ.get("FERRY_SLOW") == "1"
RETENTION_S = 60  # offsets.retention.minutes=1, Kafka's smallest setting


@pytest.mark.skipif(not SLOW, reason="waits out a one-minute offset retention; FERRY_SLOW=1 runs it")
@pytest.mark.parametrize(
    "broker_settings",
    [{"num.partitions": "1", "group.initial.rebalance.delay.ms": "0",
      "offsets.retention.minutes": "1", "offsets.retention.check.interval.ms": "1000"}],
)
def test_offsets_expire_a_retention_after_the_group_empties(broker):
    """Offset expiry (offsets.retention.minutes) with confluent-kafka: the offsets of a group whose
    last member left are gone one retention later, across a broker crash, and the group with
    them; the control group keeps a member all along and keeps its offsets."""
    topic = "py-expiry"
    produce(broker.bootstrap, topic, 10, partitions=1)
    tp = confluent_kafka.TopicPartition(topic, 0)

    def consume_and_commit(group):
        consumer = confluent_member(broker.bootstrap, group, topic)
        got = 0
        start = time.monotonic()
        while got < 10:
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                got += 1
            assert time.monotonic() - start < DEADLINE_S, f"{group}: read {got} of 10"
        consumer.commit(asynchronous=False)
        return consumer

    def committed(group):
        probe = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": group})
        try:
            return probe.committed([tp], timeout=15)[0].offset
        finally:
            probe.close()

    def groups():
        admin = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker.bootstrap})
        return {g.group_id for g in admin.list_consumer_groups().result(timeout=15).valid}

    keeper = consume_and_commit("py-keep")
    leaver = consume_and_commit("py-leave")
    leaver.close()
    emptied_at = time.monotonic()
    assert committed("py-leave") == 10 and committed("py-keep") == 10

    time.sleep(RETENTION_S / 3)
    keeper.poll(0.1)
    broker.restart(crash=True)  # the time the group became Empty survives the crash
    keeper.poll(0.1)
    while time.monotonic() - emptied_at < RETENTION_S - 10:
        keeper.poll(0.5)
    assert committed("py-leave") == 10, "expired before the retention"
    assert "py-leave" in groups()

    while "py-leave" in groups():
        keeper.poll(0.5)
        assert time.monotonic() - emptied_at < RETENTION_S + 30, "never expired"
    took = time.monotonic() - emptied_at
    assert committed("py-leave") == confluent_kafka.OFFSET_INVALID
    assert committed("py-keep") == 10, "a group with a member lost its offsets"
    assert "py-keep" in groups()
    keeper.close()
    assert RETENTION_S <= took + 1, f"expired after {took:.1f}s"


def test_kafka_python_delete_group_offsets(broker):
    """OffsetDelete (KIP-496) through kafka-python's admin client: an Empty group's offsets go,
    partition by partition; while a librdkafka member consumes the topic, its offsets are
    protected (GROUP_SUBSCRIBED_TO_TOPIC), and an unknown group is refused."""
    import kafka.admin
    import kafka.errors
    from kafka import TopicPartition as KpTopicPartition

    topic, group = "offdel", "offdel-group"
    admin_c = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker.bootstrap})
    futures = admin_c.create_topics([confluent_kafka.admin.NewTopic(topic, 2, 1)])
    futures[topic].result(15)
    committed = confluent_kafka.ConsumerGroupTopicPartitions(
        group,
        [confluent_kafka.TopicPartition(topic, 0, 5), confluent_kafka.TopicPartition(topic, 1, 7)],
    )
    admin_c.alter_consumer_group_offsets([committed])[group].result(15)
    admin = kafka.admin.KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    try:
        result = admin.delete_group_offsets(group, [KpTopicPartition(topic, 0)])
        assert result == {KpTopicPartition(topic, 0): kafka.errors.NoError}, result
        left = admin.list_group_offsets(group)[group]
        assert {tp.partition: meta.offset for tp, meta in left.items()} == {1: 7}

        consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False}
        )
        consumer.subscribe([topic])
        deadline = time.monotonic() + 15
        while not consumer.assignment() and time.monotonic() < deadline:
            consumer.poll(0.2)
        assert consumer.assignment(), "the consumer joined"
        result = admin.delete_group_offsets(group, [KpTopicPartition(topic, 1)])
        assert result == {KpTopicPartition(topic, 1): kafka.errors.GroupSubscribedToTopicError}, result
        consumer.close()

        # A topic ferry does not have: UNKNOWN_TOPIC_OR_PARTITION for it, as Kafka answers.
        result = admin.delete_group_offsets(group, [KpTopicPartition("no-such-topic", 0)])
        assert result == {
            KpTopicPartition("no-such-topic", 0): kafka.errors.UnknownTopicOrPartitionError
        }, result

        with pytest.raises(kafka.errors.GroupIdNotFoundError):
            admin.delete_group_offsets("no-such-group", [KpTopicPartition(topic, 0)])
    finally:
        admin.close()


def test_confluent_list_groups_by_type(broker):
    """ListGroups v5 (KIP-848's group type): ferry runs classic groups, so a filter on CLASSIC
    lists them with their type and a filter on CONSUMER lists none."""
    from confluent_kafka import ConsumerGroupType

    admin_c = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker.bootstrap})
    committed = confluent_kafka.ConsumerGroupTopicPartitions(
        "typed", [confluent_kafka.TopicPartition("typed-topic", 0, 3)]
    )
    admin_c.create_topics([confluent_kafka.admin.NewTopic("typed-topic", 1, 1)])["typed-topic"].result(15)
    admin_c.alter_consumer_group_offsets([committed])["typed"].result(15)

    def listed(types):
        result = admin_c.list_consumer_groups(types=types).result(timeout=15)
        return {(g.group_id, g.type) for g in result.valid}

    assert ("typed", ConsumerGroupType.CLASSIC) in listed({ConsumerGroupType.CLASSIC})
    assert listed({ConsumerGroupType.CONSUMER}) == set()
