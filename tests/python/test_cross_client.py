"""What one client writes the other reads, byte for byte: kafka-python -> confluent-kafka and
confluent-kafka -> kafka-python, with edge-case records (null key, null value, empty value, large
value, headers) among ordinary ones, over two partitions and a compressed batch."""

import time

import confluent_kafka
import kafka
import pytest

from support import DEADLINE_S, confluent_consumer

PARTITIONS = 2
ORDINARY = 2_000


def records():
    """(partition, key, value, headers) in produce order."""
    special = [
        (0, None, b"null key", [("h", b"1")]),
        (1, b"null value", None, []),
        (0, b"empty value", b"", []),
        (1, b"", b"empty key", []),
        (0, b"large", bytes(range(256)) * 800, [("size", b"204800")]),
        (1, "ünïcødé ✓".encode(), "välue ✓".encode(), [("ü", "✓".encode())]),
        (0, b"many headers", b"v", [(f"h{i}", bytes([i])) for i in range(20)]),
    ]
    ordinary = [
        (i % PARTITIONS, f"k{i}".encode(), f"value {i} ".encode() * (1 + i % 7), [("i", str(i).encode())])
        for i in range(ORDINARY)
    ]
    return special + ordinary + special


def by_partition(rs):
    got = {p: [] for p in range(PARTITIONS)}
    for partition, key, value, headers in rs:
        got[partition].append((key, value, headers))
    return got


def produce_kafka_python(bootstrap, topic, codec):
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", compression_type=codec, linger_ms=5,
        enable_idempotence=False,  # see support.py: ferry has no InitProducerId yet
    )
    try:
        futures = [
            producer.send(topic, partition=p, key=k, value=v, headers=h)
            for p, k, v, h in records()
        ]
        producer.flush(timeout=DEADLINE_S)
        for future in futures:
            future.get(timeout=DEADLINE_S)
    finally:
        producer.close(timeout=10)


def produce_confluent(bootstrap, topic, codec):
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "all",
            "compression.type": codec,
            "linger.ms": 5,
            "enable.idempotence": False,
        }
    )
    errors = []
    for p, k, v, h in records():
        producer.produce(
            topic, partition=p, key=k, value=v, headers=h or None,
            on_delivery=lambda err, msg: err and errors.append(err),
        )
        producer.poll(0)
    assert producer.flush(DEADLINE_S) == 0
    assert errors == []


def read_confluent(bootstrap, topic):
    consumer = confluent_consumer(bootstrap)
    got = {p: [] for p in range(PARTITIONS)}
    try:
        consumer.assign(
            [confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING) for p in range(PARTITIONS)]
        )
        at_end = set()
        deadline = time.monotonic() + DEADLINE_S
        while len(at_end) < PARTITIONS:
            assert time.monotonic() < deadline, [len(v) for v in got.values()]
            for msg in consumer.consume(1000, 0.5):
                if msg.error() is not None:
                    assert msg.error().code() == confluent_kafka.KafkaError._PARTITION_EOF, msg.error()
                    at_end.add(msg.partition())
                    continue
                assert msg.offset() == len(got[msg.partition()])
                got[msg.partition()].append((msg.key(), msg.value(), msg.headers() or []))
    finally:
        consumer.close()
    return got


def read_kafka_python(bootstrap, topic, want):
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="none"
    )
    got = {p: [] for p in range(PARTITIONS)}
    try:
        tps = [kafka.TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        deadline = time.monotonic() + DEADLINE_S
        while sum(map(len, got.values())) < want:
            assert time.monotonic() < deadline, [len(v) for v in got.values()]
            for tp, rs in consumer.poll(timeout_ms=500).items():
                for r in rs:
                    assert r.offset == len(got[tp.partition])
                    got[tp.partition].append((r.key, r.value, list(r.headers)))
        end = consumer.end_offsets(tps)
        assert {tp.partition: end[tp] for tp in tps} == {p: len(v) for p, v in got.items()}
    finally:
        consumer.close(autocommit=False)
    return got


@pytest.fixture
def broker_settings():
    return {"num.partitions": PARTITIONS}


@pytest.mark.parametrize("codec", [None, "gzip", "zstd"])
def test_kafka_python_to_confluent(broker, codec):
    topic = f"kp-to-ck-{codec}"
    produce_kafka_python(broker.bootstrap, topic, codec)
    assert read_confluent(broker.bootstrap, topic) == by_partition(records())


@pytest.mark.parametrize("codec", ["none", "snappy", "lz4"])
def test_confluent_to_kafka_python(broker, codec):
    topic = f"ck-to-kp-{codec}"
    produce_confluent(broker.bootstrap, topic, codec)
    assert read_kafka_python(broker.bootstrap, topic, len(records())) == by_partition(records())
