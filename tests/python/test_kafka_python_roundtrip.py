"""kafka-python (pure Python client) produces with every codec it has libraries for, with acks=1
and acks='all', and reads everything back exactly, again after a restart."""

import kafka
import kafka.errors
import pytest

from support import Expected, check_segments, kafka_python_produce, kafka_python_read

PARTITIONS = 4
RECORDS = 10_000  # per codec and acks setting: 10 cases x 10k = 100k records


@pytest.fixture
def broker_settings():
    return {"num.partitions": PARTITIONS}


@pytest.mark.parametrize("acks", [1, "all"])
@pytest.mark.parametrize("codec", [None, "gzip", "snappy", "lz4", "zstd"])
def test_kafka_python_round_trip(broker, codec, acks):
    topic = f"kafka-python-{codec or 'none'}-{acks}"
    expected = Expected(f"{codec}{acks}", RECORDS, PARTITIONS, with_headers=True)

    offsets = kafka_python_produce(
        broker.bootstrap, topic, expected, acks=acks, compression_type=codec
    )
    for partition, got in offsets.items():
        assert got == list(range(len(expected.seqs(partition)))), partition

    check_segments(broker.data_dir, topic, expected, codec)

    counts = expected.per_partition()
    expected.check(kafka_python_read(broker.bootstrap, topic, PARTITIONS, counts, with_headers=True))
    broker.restart()
    expected.check(kafka_python_read(broker.bootstrap, topic, PARTITIONS, counts, with_headers=True))


def test_kafka_python_default_producer(broker):
    """A producer with kafka-python's defaults: it turns idempotence on (acks='all'), which
    needs InitProducerId; all records go to partition 0 so offsets are 0..99."""
    producer = kafka.KafkaProducer(bootstrap_servers=broker.bootstrap)
    try:
        offsets = [producer.send("defaults", value=b"%d" % i, partition=0) for i in range(100)]
        producer.flush(timeout=30)
        assert [f.get(timeout=30).offset for f in offsets] == list(range(100))
    finally:
        producer.close(timeout=10)
    counts = {0: 100}
    got = kafka_python_read(broker.bootstrap, "defaults", 1, counts)
    assert [(offset, value) for offset, _, value, _ in got[0]] == [(i, b"%d" % i) for i in range(100)]
