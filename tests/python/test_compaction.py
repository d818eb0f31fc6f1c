"""Log compaction (cleanup.policy=compact) as other clients see it: kafka-python creates the
topic and produces keyed records (gzip, idempotent, with a tombstone, then every key again from
a plain producer), ferry's cleaner removes the superseded ones (leaving the idempotent
producer's last batch empty), and kafka-python, confluent-kafka and kcat each read every key's last value
at the offset it was written at, across the offset gaps compaction leaves. The control is the
same records on a topic with cleanup.policy=delete, which keeps them all. A keyless record is
refused on the compacted topic only."""

import struct
import time

import confluent_kafka
import kafka
import kafka.errors
import pytest
from kafka.admin import KafkaAdminClient, NewTopic

from support import confluent_read, kcat

KEYS = 20
RECORDS = 2000
DELETED_KEY = 7
DEADLINE_S = 60.0


@pytest.fixture
def broker_settings():
    return {"log.cleaner.backoff.ms": "200", "log.flush.offset.checkpoint.interval.ms": "200"}


def records():
    """Keyed records, the last one of DELETED_KEY a tombstone."""
    for i in range(RECORDS):
        key = f"key-{i % KEYS}".encode()
        tombstone = i == RECORDS - KEYS + DELETED_KEY
        yield key, None if tombstone else f"value-{i}".encode()


def later_records():
    """Every key once more (the idempotent producer's last batch is then superseded whole),
    then records of other keys, which fill segments after it."""
    for k in range(KEYS):
        yield f"key-{k}".encode(), f"final-{k}".encode()
    for j in range(200):
        yield f"filler-{j}".encode(), f"filler-value-{j}".encode()


def produce(bootstrap, topic, rows, **config):
    """Sends (key, value) rows; returns [(offset, key, value)] as acknowledged."""
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap, acks="all", linger_ms=0, batch_size=512, **config
    )
    try:
        sent = [(producer.send(topic, partition=0, key=key, value=value), key, value) for key, value in rows]
        producer.flush(timeout=DEADLINE_S)
        return [(future.get(timeout=DEADLINE_S).offset, key, value) for future, key, value in sent]
    finally:
        producer.close(timeout=10)


def produce_both(bootstrap, topic):
    first = produce(bootstrap, topic, records(), enable_idempotence=True, compression_type="gzip")
    return first + produce(bootstrap, topic, later_records(), enable_idempotence=False)


def empty_batches(data_dir, topic):
    """How many batches with no record (a producer's last batch compaction emptied) the
    partition's segments hold."""
    count = 0
    for segment in sorted((data_dir / f"{topic}-0").glob("*.log")):
        data = segment.read_bytes()
        position = 0
        while position < len(data):
            (length,) = struct.unpack_from(">i", data, position + 8)
            (records,) = struct.unpack_from(">i", data, position + 57)
            count += records == 0
            position += 12 + length
    return count


def kafka_python_read_all(bootstrap, topic):
    """Every record from the beginning to the partition's end, with kafka-python."""
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, auto_offset_reset="none"
    )
    try:
        tp = kafka.TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = consumer.end_offsets([tp])[tp]
        rows = []
        deadline = time.monotonic() + DEADLINE_S
        while consumer.position(tp) < end:
            assert time.monotonic() < deadline, f"kafka-python stuck at {consumer.position(tp)} of {end}"
            for records in consumer.poll(timeout_ms=500, max_records=10_000).values():
                rows.extend((r.offset, r.key, r.value) for r in records)
        return rows
    finally:
        consumer.close(autocommit=False)


def kcat_read_all(bootstrap, topic):
    # %S is the value's length, -1 for a tombstone; values here never hold spaces.
    out = kcat("-b", bootstrap, "-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
               "-f", "%o %k %S %s\\n")
    rows = []
    for line in out.decode().splitlines():
        offset, key, length, *value = line.split(" ", 3)
        rows.append((int(offset), key.encode(), None if length == "-1" else value[0].encode()))
    return rows


def check_compacted(produced, rows):
    written = {offset: (offset, key, value) for offset, key, value in produced}
    for row in rows:
        assert written.get(row[0]) == row, f"read {row}, written {written.get(row[0])}"
    last = {key: (offset, key, value) for offset, key, value in produced}
    read = {offset for offset, _, _ in rows}
    for key, row in last.items():
        assert row[0] in read, f"{key}'s last record {row} is missing"
    assert len(rows) < RECORDS // 2, f"{len(rows)} of {RECORDS} records read: nothing was compacted"


def test_every_client_reads_a_compacted_topic(broker):
    admin = KafkaAdminClient(bootstrap_servers=broker.bootstrap)
    configs = {"segment.bytes": "4096", "min.cleanable.dirty.ratio": "0.01"}
    admin.create_topics(
        [
            NewTopic("changelog", 1, 1, topic_configs={"cleanup.policy": "compact", **configs}),
            NewTopic("history", 1, 1, topic_configs={"cleanup.policy": "delete", **configs}),
        ]
    )
    admin.close()
    produced = produce_both(broker.bootstrap, "changelog")
    control = produce_both(broker.bootstrap, "history")

    deadline = time.monotonic() + DEADLINE_S
    while len(rows := kafka_python_read_all(broker.bootstrap, "changelog")) >= RECORDS // 2:
        assert time.monotonic() < deadline, f"still {len(rows)} records: no compaction"
        time.sleep(0.5)
    check_compacted(produced, rows)
    # The idempotent producer's last batch stays, empty, and every client reads past it.
    assert empty_batches(broker.data_dir, "changelog") >= 1
    assert empty_batches(broker.data_dir, "history") == 0
    assert kcat_read_all(broker.bootstrap, "changelog") == rows
    got = confluent_read(broker.bootstrap, "changelog", 1)[0]
    assert [(offset, key, value) for offset, key, value, _ in got] == rows

    # Control: the delete topic kept everything.
    assert kafka_python_read_all(broker.bootstrap, "history") == control

    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    outcomes = {}

    def report(topic):
        return lambda err, msg: outcomes.__setitem__(topic, err)

    for topic in ("changelog", "history"):
        producer.produce(topic, value=b"no key", partition=0, on_delivery=report(topic))
    producer.flush(30)
    assert outcomes["changelog"].code() == confluent_kafka.KafkaError.INVALID_RECORD
    assert outcomes["history"] is None
