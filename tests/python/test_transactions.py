"""Transactions with confluent-kafka: a consume-transform-produce loop with aborts moves every
input record to the output exactly once, with the group offset committed inside the
transaction; read_committed never sees aborted records while read_uncommitted does (the control).
"""

import time

import confluent_kafka
import pytest

TIMEOUT_S = 30


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


def test_consume_transform_produce_with_aborts_is_exactly_once(broker):
    feeder = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "acks": "all"})
    for i in range(500):
        feeder.produce("py-txn-in", value=str(i).encode(), partition=0)
    assert feeder.flush(TIMEOUT_S) == 0

    producer = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "transactional.id": "py-ctp", "linger.ms": 5}
    )
    producer.init_transactions(TIMEOUT_S)
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": broker.bootstrap,
            "group.id": "py-ctp",
            "isolation.level": "read_committed",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe(["py-txn-in"])
    moved, transactions, aborts = 0, 0, 0
    deadline = time.monotonic() + 120
    while moved < 500:
        assert time.monotonic() < deadline, f"moved only {moved}"
        batch = consumer.consume(num_messages=40, timeout=0.5)
        if not batch:
            continue
        for message in batch:
            assert message.error() is None, message.error()
        producer.begin_transaction()
        for message in batch:
            producer.produce("py-txn-out", value=b"out-" + message.value(), partition=0)
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), TIMEOUT_S
        )
        transactions += 1
        if transactions % 3 == 0:
            producer.flush(TIMEOUT_S)  # the doomed records really reach the log
            producer.abort_transaction(TIMEOUT_S)
            aborts += 1
            consumer.seek(confluent_kafka.TopicPartition("py-txn-in", 0, batch[0].offset()))
        else:
            producer.commit_transaction(TIMEOUT_S)
            moved += len(batch)
    consumer.close()

    committed = read_all(broker.bootstrap, "py-txn-out", "read_committed")
    assert sorted(committed) == sorted(f"out-{i}" for i in range(500)), "not exactly once"
    raw = read_all(broker.bootstrap, "py-txn-out", "read_uncommitted")
    assert aborts > 0 and len(raw) > len(committed), "the aborted output never reached the log"

    check = confluent_kafka.Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "py-ctp"})
    offsets = check.committed([confluent_kafka.TopicPartition("py-txn-in", 0)], timeout=TIMEOUT_S)
    assert offsets[0].offset == 500
    check.close()
