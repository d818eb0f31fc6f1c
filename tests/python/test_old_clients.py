"""Clients built for older Kafka: the request versions Kafka 3.9 still answers below the ones the
codec (Kafka 4) kept. kafka-python pinned to old broker versions speaks Produce v0-2 with the old
message format (magic 0 and 1, compressed wrappers), Fetch v0-2, ListOffsets v0, OffsetCommit
v0-1, OffsetFetch v0, CreateTopics v0, DeleteTopics v0 and DescribeConfigs v0; librdkafka (kcat)
without ApiVersions on a 0.9/0.10 fallback does the same. Each test reads back what the old client
wrote with a current client too (the log holds v2 batches only), and the other way round."""

import confluent_kafka
import confluent_kafka.admin
import kafka
import kafka.admin
import kafka.errors
import pytest
from kafka.structs import OffsetAndMetadata, TopicPartition

from support import (
    Expected,
    confluent_produce,
    confluent_read,
    kafka_python_produce,
    kafka_python_read,
    kcat,
)

PARTITIONS = 2
RECORDS = 400


@pytest.fixture
def broker_settings():
    return {"num.partitions": PARTITIONS}


# magic 0 producers (0.8.2, 0.9) and magic 1 producers (0.10.0), plain and compressed.
# kafka-python's magic 0 LZ4 is the pre-KIP-57 framing (a wrong frame header checksum), which
# Kafka reads by ignoring that checksum; kafka-python needs the xxhash package to write it.
OLD_PRODUCERS = [
    ((0, 8, 2), None),
    ((0, 9), "gzip"),
    ((0, 9), "snappy"),
    ((0, 9), "lz4"),
    ((0, 10, 0), None),
    ((0, 10, 0), "gzip"),
    ((0, 10, 0), "lz4"),
]


@pytest.mark.parametrize("api_version,codec", OLD_PRODUCERS)
def test_old_kafka_python_produces_and_fetches(broker, api_version, codec):
    name = "-".join(map(str, api_version))
    topic = f"old-{name}-{codec or 'none'}"
    expected = Expected(topic, RECORDS, PARTITIONS)
    offsets = kafka_python_produce(
        broker.bootstrap, topic, expected, api_version=api_version, compression_type=codec
    )
    for partition, got in offsets.items():
        assert got == list(range(len(expected.seqs(partition)))), partition
    counts = expected.per_partition()
    # The old consumer (Fetch v0-2, ListOffsets v0) and a current one read the same records.
    expected.check(
        kafka_python_read(broker.bootstrap, topic, PARTITIONS, counts, api_version=api_version)
    )
    expected.check(confluent_read(broker.bootstrap, topic, PARTITIONS))


def test_old_consumers_read_what_current_producers_wrote(broker):
    """v2 batches (compressed, several per partition) converted down for each old Fetch."""
    topic = "new-to-old"
    expected = Expected(topic, RECORDS, PARTITIONS)
    confluent_produce(broker.bootstrap, topic, expected, **{"compression.type": "gzip"})
    counts = expected.per_partition()
    for api_version in [(0, 8, 2), (0, 9), (0, 10, 0), (0, 10, 1)]:
        expected.check(
            kafka_python_read(broker.bootstrap, topic, PARTITIONS, counts, api_version=api_version)
        )
    # zstd data is not converted for a consumer older than Fetch v10 (KIP-110): Kafka answers
    # UNSUPPORTED_COMPRESSION_TYPE, and so does ferry. Control: a current client reads it.
    zstd = Expected("zstd-to-old", 50, PARTITIONS)
    confluent_produce(broker.bootstrap, "zstd-to-old", zstd, **{"compression.type": "zstd"})
    zstd.check(confluent_read(broker.bootstrap, "zstd-to-old", PARTITIONS))
    with pytest.raises(kafka.errors.UnsupportedCompressionTypeError):
        kafka_python_read(
            broker.bootstrap, "zstd-to-old", PARTITIONS, zstd.per_partition(), api_version=(0, 10, 1)
        )


@pytest.mark.parametrize("api_version", [(0, 8, 1), (0, 8, 2), (0, 9)])
def test_old_kafka_python_commits_offsets(broker, api_version):
    """OffsetCommit/OffsetFetch v0 (0.8.1), v1 (0.8.2) and v2/v1 (0.9): the commit is stored and
    a current client reads it, and the old one reads back what a current client committed."""
    name = "-".join(map(str, api_version))
    topic, group = f"old-commit-{name}", f"old-group-{name}"
    expected = Expected(topic, 20, PARTITIONS)
    confluent_produce(broker.bootstrap, topic, expected)
    tp = TopicPartition(topic, 0)

    def old_consumer():
        return kafka.KafkaConsumer(
            bootstrap_servers=broker.bootstrap,
            group_id=group,
            enable_auto_commit=False,
            api_version=api_version,
        )

    consumer = old_consumer()
    try:
        consumer.assign([tp])
        consumer.commit({tp: OffsetAndMetadata(7, "old", -1)})
        assert consumer.committed(tp) == 7
    finally:
        consumer.close(autocommit=False)

    current = confluent_kafka.Consumer(
        {"bootstrap.servers": broker.bootstrap, "group.id": group, "enable.auto.commit": False}
    )
    try:
        [committed] = current.committed([confluent_kafka.TopicPartition(topic, 0)], timeout=10)
        assert committed.offset == 7, committed
        current.commit(
            offsets=[confluent_kafka.TopicPartition(topic, 0, 9)], asynchronous=False
        )
    finally:
        current.close()

    consumer = old_consumer()
    try:
        assert consumer.committed(tp) == 9
    finally:
        consumer.close(autocommit=False)


def test_old_admin_creates_describes_and_deletes_topics(broker):
    """CreateTopics v0 and DeleteTopics v0 (0.10.1), DescribeConfigs v0 (0.11)."""
    admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap, api_version=(0, 10, 1))
    try:
        admin.create_topics([kafka.admin.NewTopic("old-admin", 3, 1)])
        listed = confluent_kafka.admin.AdminClient({"bootstrap.servers": broker.bootstrap})
        topics = listed.list_topics(timeout=10).topics
        assert len(topics["old-admin"].partitions) == 3
    finally:
        admin.close()

    admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap, api_version=(0, 11))
    try:
        resource = kafka.admin.ConfigResource(kafka.admin.ConfigResourceType.TOPIC, "old-admin")
        described = admin.describe_configs([resource], config_filter="all")
        configs = described["topic"]["old-admin"]
        # v0 answers is_default where later versions answer config_source; the client derives
        # the source from it.
        assert configs["retention.ms"]["config_source"] == "DEFAULT_CONFIG", configs["retention.ms"]
        assert configs["retention.ms"]["is_default"] is True, configs["retention.ms"]
        # Control: only defaults, so the client's default filter (modified) keeps nothing.
        assert admin.describe_configs([resource])["topic"]["old-admin"] == {}
    finally:
        admin.close()

    admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap, api_version=(0, 10, 1))
    try:
        admin.delete_topics(["old-admin"])
    finally:
        admin.close()
    topics = listed.list_topics(timeout=10).topics
    assert "old-admin" not in topics or topics["old-admin"].error is not None




@pytest.mark.parametrize("fallback", ["0.9.0", "0.10.0"])
def test_kcat_without_api_versions_on_an_old_fallback(broker, fallback):
    """librdkafka told not to ask ApiVersions uses the fallback's versions: Produce v1 with
    magic 0 messages (0.9.0) or v2 with magic 1 (0.10.0), Fetch v1 or v2."""
    old = ["-X", "api.version.request=false", "-X", f"broker.version.fallback={fallback}"]
    topic = f"kcat-old-{fallback}"
    lines = [f"k{i}:v{i} " + "x" * (i % 40) for i in range(300)]
    payload = "".join(line + "\n" for line in lines).encode()
    kcat("-P", "-b", broker.bootstrap, *old, "-t", topic, "-p", "0", "-K", ":", "-z", "gzip",
         stdin=payload)
    got = kcat("-C", "-b", broker.bootstrap, *old, "-t", topic, "-p", "0", "-o", "beginning",
               "-e", "-q", "-f", "%o %k:%s\n")
    assert got.decode().splitlines() == [f"{i} {line}" for i, line in enumerate(lines)]
    # A current client reads the same.
    got = kcat("-C", "-b", broker.bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e",
               "-q", "-f", "%o %k:%s\n")
    assert got.decode().splitlines() == [f"{i} {line}" for i, line in enumerate(lines)]
