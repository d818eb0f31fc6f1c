"""acks=0 with confluent-kafka: the producer hears nothing back, yet on loopback every record
must arrive, in order."""

import time

import confluent_kafka

from support import Expected, confluent_consumer, confluent_produce, confluent_read

RECORDS = 10_000


def test_confluent_acks_0_delivers_everything_on_loopback(broker):
    topic = "acks-zero"
    expected = Expected("acks0", RECORDS, 1)
    offsets = confluent_produce(broker.bootstrap, topic, expected, acks=0)
    # With acks=0 librdkafka reports success without an offset.
    assert sum(len(v) for v in offsets.values()) == RECORDS

    # Nothing acknowledged the writes: wait (bounded) for the high watermark to get there.
    consumer = confluent_consumer(broker.bootstrap)
    try:
        deadline = time.monotonic() + 30
        while True:
            low, high = consumer.get_watermark_offsets(
                confluent_kafka.TopicPartition(topic, 0), timeout=10
            )
            if high >= RECORDS or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert (low, high) == (0, RECORDS)
    finally:
        consumer.close()

    expected.check(confluent_read(broker.bootstrap, topic, 1))
