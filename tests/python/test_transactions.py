"""Transactions with confluent-kafka: a consume-transform-produce loop with random aborts,
producer kills and broker kills (kill -9 and restart inside the loop) moves every input record to
the output exactly once, in order, with the group offset committed inside the transaction;
read_committed never sees aborted records while read_uncommitted does (the control).

The default run moves 5,000 records through 2 broker kills; FERRY_SLOW=1 moves 50,000 through 10.
FERRY_TEST_SEED replays one plan of endings (the kills' timing still varies).
"""

import os
import random
import threading
import time

import confluent_kafka
import pytest

TIMEOUT_S = 30
SLOW = os.environ.get("FERRY_SLOW") == "1"
RECORDS = 50_000 if SLOW else 5_000
BATCH = 500 if SLOW else 100
BROKER_KILLS = 10 if SLOW else 2
KILL_EVERY = 9  # a broker kill ends every ninth transaction until all have happened
KILL_POINTS = ("after-records", "after-offsets", "during-commit", "after-commit")
IN, OUT, GROUP, TXN_ID = "py-eos-in", "py-eos-out", "py-eos", "py-eos-ctp"


@pytest.fixture
def broker_settings():
    return {"num.partitions": "1", "group.initial.rebalance.delay.ms": "0"}


def read_all(bootstrap, topic, isolation, idle_s=3.0):
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"read-{isolation}-{time.monotonic_ns()}",
            "isolation.level": isolation,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.assign([confluent_kafka.TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
    values = []
    last = time.monotonic()
    while time.monotonic() - last < idle_s:
        message = consumer.poll(0.1)
        if message is None:
            continue
        assert message.error() is None, message.error()
        values.append(message.value().decode())
        last = time.monotonic()
    consumer.close()
    return values


class Plan:
    """Seeded endings: broker kills at fixed steps, otherwise one transaction in five aborted and
    one in ten with its producer killed (dropped inside its transaction, records in the log), and
    at least one of each."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.kills_left = BROKER_KILLS

    def ending(self, attempt):
        # One abort and one producer kill early on, whatever the seed.
        if attempt in (1, 3):
            return ("abort", None) if attempt == 1 else ("producer-kill", None)
        if self.kills_left and attempt % KILL_EVERY == KILL_EVERY - 1:
            self.kills_left -= 1
            return ("broker-kill", self.rng.choice(KILL_POINTS))
        roll = self.rng.randrange(10)
        if roll < 2:
            return ("abort", None)
        if roll == 2:
            return ("producer-kill", None)
        return ("commit", None)


def new_producer(bootstrap, deadline):
    """A transactional producer past init_transactions, retried while the broker comes back."""
    while True:
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": bootstrap,
                "transactional.id": TXN_ID,
                "linger.ms": 5,
                "reconnect.backoff.max.ms": 200,
                # librdkafka 2.16 re-bootstraps when every broker is down (a broker kill here)
                # and decommissions the cached group coordinator; send_offsets_to_transaction
                # then waits for it forever, past its timeout (confluentinc/librdkafka#5511).
                "metadata.recovery.strategy": "none",
            }
        )
        try:
            producer.init_transactions(TIMEOUT_S)
            return producer
        except confluent_kafka.KafkaException as error:
            assert time.monotonic() < deadline, f"init_transactions: {error}"
            print(f"init_transactions: {error}; retrying")


def group_offset(consumer):
    """The group's committed input offset (read_committed asks with require_stable)."""
    [tp] = consumer.committed([confluent_kafka.TopicPartition(IN, 0)], timeout=TIMEOUT_S)
    return max(tp.offset, 0)


def rewind(consumer, offset):
    # The loop owns the position: assigned, not subscribed, so no rebalance moves it.
    consumer.assign([confluent_kafka.TopicPartition(IN, 0, offset)])


def transact(broker, producer, consumer, batch, end, ending, rng):
    """One transaction over `batch` (input up to offset `end`); returns "committed", "aborted"
    or "unknown" (the producer was killed: the group's offset tells)."""
    kind, point = ending

    def kill_at(where):
        if kind == "broker-kill" and point == where:
            broker.restart(crash=True)

    producer.begin_transaction()
    for offset, value in batch:
        producer.produce(OUT, value=b"out-" + value, partition=0)
    assert producer.flush(TIMEOUT_S) == 0  # aborted or orphaned records really reach the log
    kill_at("after-records")
    producer.send_offsets_to_transaction(
        [confluent_kafka.TopicPartition(IN, 0, end)], consumer.consumer_group_metadata(), TIMEOUT_S
    )
    kill_at("after-offsets")
    if kind == "abort":
        producer.abort_transaction(TIMEOUT_S)
        return "aborted"
    if kind == "producer-kill":
        return "unknown"
    if point == "during-commit":
        errors = []

        def commit():
            try:
                producer.commit_transaction(TIMEOUT_S)
            except confluent_kafka.KafkaException as error:
                errors.append(error)

        committer = threading.Thread(target=commit)
        committer.start()
        time.sleep(rng.uniform(0, 0.03))
        broker.restart(crash=True)
        committer.join()
        if errors:
            raise errors[0]
        return "committed"
    producer.commit_transaction(TIMEOUT_S)
    kill_at("after-commit")
    return "committed"


def test_consume_transform_produce_is_exactly_once_through_producer_and_broker_kills(broker):
    seed = int(os.environ.get("FERRY_TEST_SEED") or random.randrange(2**63))
    print(f"exactly-once loop: seed {seed}, {RECORDS} records")
    feeder = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 5}
    )
    for i in range(RECORDS):
        feeder.produce(IN, value=str(i).encode(), partition=0)
        if i % 10_000 == 0:
            feeder.poll(0)
    assert feeder.flush(60) == 0

    deadline = time.monotonic() + (900 if SLOW else 120)
    plan = Plan(seed)
    rng = random.Random(seed ^ 1)
    tally = {"commits": 0, "aborts": 0, "producer-kills": 0, "broker-kills": [], "recoveries": 0}
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": GROUP,
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "reconnect.backoff.max.ms": 200,
        }
    )
    producer = new_producer(broker.bootstrap, deadline)
    committed, batch, attempt = 0, [], 0
    rewind(consumer, committed)
    started = time.monotonic()
    while committed < RECORDS:
        assert time.monotonic() < deadline, f"moved only {committed}: {tally}"
        end = committed + len(batch)
        if len(batch) < BATCH and end < RECORDS:
            message = consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue  # a dead broker: librdkafka reports it and reconnects
            assert message.offset() == end, f"input out of place: {message.offset()} != {end}"
            batch.append((end, message.value()))
            continue
        ending = plan.ending(attempt)
        attempt += 1
        try:
            outcome = transact(broker, producer, consumer, batch, end, ending, rng)
        except confluent_kafka.KafkaException as error:
            print(f"{ending}: {error}; recovering")
            tally["recoveries"] += 1
            outcome = "unknown"
        if ending[0] == "broker-kill":
            tally["broker-kills"].append(ending[1])
        batch = []
        if outcome == "committed":
            tally["commits"] += 1
            committed = end
        elif outcome == "aborted":
            tally["aborts"] += 1
            rewind(consumer, committed)
        else:
            if ending[0] == "producer-kill":
                tally["producer-kills"] += 1
            # The new instance fences the old one and finishes its transaction first, so the
            # group's offset is settled when it is read.
            del producer
            producer = new_producer(broker.bootstrap, deadline)
            committed = group_offset(consumer)
            rewind(consumer, committed)
    print(f"exactly-once loop: {tally} in {time.monotonic() - started:.1f} s")
    assert len(tally["broker-kills"]) == BROKER_KILLS, f"seed {seed}"
    assert tally["aborts"] > 0 and tally["producer-kills"] > 0, f"seed {seed}"
    producer.flush(TIMEOUT_S)
    consumer.close()

    committed_out = read_all(broker.bootstrap, OUT, "read_committed")
    expected = [f"out-{i}" for i in range(RECORDS)]
    distinct = set(committed_out)
    missing = sum(1 for v in expected if v not in distinct)
    assert (missing, len(committed_out) - len(distinct)) == (0, 0), f"seed {seed}"
    assert committed_out == expected, f"output out of order, seed {seed}"
    raw = read_all(broker.bootstrap, OUT, "read_uncommitted")
    print(f"exactly-once loop: {len(committed_out)} committed output records, {len(raw)} in the log")
    assert len(raw) > len(committed_out), "the aborted output never reached the log"

    check = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": GROUP})
    [tp] = check.committed([confluent_kafka.TopicPartition(IN, 0)], timeout=TIMEOUT_S)
    assert tp.offset == RECORDS
    check.close()


def test_kafka_python_describe_producers(broker):
    """DescribeProducers (KIP-664) through kafka-python's admin client: an idempotent producer
    with its last sequence, and a transactional one whose open transaction's first offset is
    reported until it is aborted."""
    import kafka.admin
    from kafka import TopicPartition as KpTopicPartition

    topic = "described-producers"
    idempotent = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "enable.idempotence": True, "linger.ms": 0}
    )
    for i in range(3):
        idempotent.produce(topic, partition=0, value=b"i%d" % i)
        assert idempotent.flush(TIMEOUT_S) == 0
    txn = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": "described", "linger.ms": 0}
    )
    txn.init_transactions(TIMEOUT_S)
    txn.begin_transaction()
    for i in range(2):
        txn.produce(topic, partition=0, value=b"t%d" % i)
    assert txn.flush(TIMEOUT_S) == 0
    admin = kafka.admin.KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    tp = KpTopicPartition(topic, 0)
    try:
        producers = admin.describe_producers([tp])[tp].active_producers
        by_start = sorted(producers, key=lambda p: p.current_transaction_start_offset)
        assert [(p.last_sequence, p.current_transaction_start_offset) for p in by_start] == [
            (2, -1),  # the idempotent producer: three records, no transaction
            (1, 3),   # the transactional one: its open transaction starts after them
        ], producers
        assert all(p.producer_id >= 0 and p.last_timestamp > 0 for p in producers)
        txn.abort_transaction(TIMEOUT_S)
        producers = admin.describe_producers([tp])[tp].active_producers
        assert sorted(p.current_transaction_start_offset for p in producers) == [-1, -1]
    finally:
        admin.close()
