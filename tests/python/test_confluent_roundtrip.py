"""confluent-kafka (librdkafka) produces with every codec and acks=all, reads everything back
exactly, then again after a clean restart and after a crash (acks=all records are fsynced)."""

import pytest

from support import (
    Expected,
    check_confluent_offsets,
    check_segments,
    confluent_produce,
    confluent_read,
)

PARTITIONS = 4
RECORDS_PER_CODEC = 20_000  # 5 codecs x 20k = 100k records through librdkafka


@pytest.fixture
def broker_settings():
    # Topics are auto-created by the producer's Metadata request, with 4 partitions.
    return {"num.partitions": PARTITIONS}


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
def test_confluent_round_trip_acks_all(broker, codec):
    topic = f"confluent-{codec}"
    expected = Expected(codec, RECORDS_PER_CODEC, PARTITIONS, with_headers=True)

    offsets = confluent_produce(
        broker.bootstrap, topic, expected, **{"acks": "all", "compression.type": codec}
    )
    check_confluent_offsets(expected, offsets)
    # ferry keeps batches as the producer sent them: the codec on disk is the one asked for.
    check_segments(broker.data_dir, topic, expected, codec)
    expected.check(confluent_read(broker.bootstrap, topic, PARTITIONS, with_headers=True))

    broker.restart()
    expected.check(confluent_read(broker.bootstrap, topic, PARTITIONS, with_headers=True))

    broker.restart(crash=True)
    expected.check(confluent_read(broker.bootstrap, topic, PARTITIONS, with_headers=True))
    check_segments(broker.data_dir, topic, expected, codec)
