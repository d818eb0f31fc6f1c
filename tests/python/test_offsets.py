"""Offsets: watermarks, offsets by timestamp and DeleteRecords, through both clients.

Each record is produced alone and flushed (linger.ms=0), so each is its own batch; a lookup by
timestamp inside one uncompressed batch is exact too (compressed batches are answered at batch
granularity, since ferry never decompresses)."""

import confluent_kafka
import kafka
from confluent_kafka import TopicPartition
from confluent_kafka.admin import AdminClient

from support import confluent_consumer, segment_batches

TIMEOUT_S = 15
RECORDS = 20
BASE_MS = 1_700_000_000_000
STEP_MS = 1_000


def produce_one_batch_each(bootstrap, topic):
    """Record i has timestamp BASE_MS + i*STEP_MS and is its own batch; returns their offsets."""
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all", "enable.idempotence": False}
    )
    offsets = []
    for i in range(RECORDS):
        producer.produce(
            topic, partition=0, value=b"%d" % i, timestamp=BASE_MS + i * STEP_MS,
            on_delivery=lambda err, msg: offsets.append(err or msg.offset()),
        )
        assert producer.flush(TIMEOUT_S) == 0
    assert offsets == list(range(RECORDS))


def test_confluent_offsets(broker):
    topic = "times"
    produce_one_batch_each(broker.bootstrap, topic)
    consumer = confluent_consumer(broker.bootstrap)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S) == (0, RECORDS)

        def offset_for(ts):
            (tp,) = consumer.offsets_for_times([TopicPartition(topic, 0, ts)], timeout=TIMEOUT_S)
            assert tp.error is None, tp.error
            return tp.offset

        assert offset_for(0) == 0
        assert offset_for(BASE_MS) == 0
        assert offset_for(BASE_MS + 1) == 1
        assert offset_for(BASE_MS + 7 * STEP_MS) == 7
        assert offset_for(BASE_MS + 7 * STEP_MS - 1) == 7
        assert offset_for(BASE_MS + (RECORDS - 1) * STEP_MS) == RECORDS - 1
        assert offset_for(BASE_MS + RECORDS * STEP_MS) == -1  # past the last record: no offset

        # The timestamps read back are the producer's (CreateTime).
        consumer.assign([TopicPartition(topic, 0, 5)])
        msg = consumer.poll(TIMEOUT_S)
        assert msg is not None and msg.error() is None, msg and msg.error()
        assert (msg.offset(), msg.value()) == (5, b"5")
        assert msg.timestamp() == (confluent_kafka.TIMESTAMP_CREATE_TIME, BASE_MS + 5 * STEP_MS)

        # DeleteRecords moves the log start offset; the high watermark stays.
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        (future,) = admin.delete_records([TopicPartition(topic, 0, 8)], request_timeout=TIMEOUT_S).values()
        assert future.result(TIMEOUT_S).low_watermark == 8
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S) == (8, RECORDS)
        assert offset_for(BASE_MS) == 8

    finally:
        consumer.close()

    # The log start offset survives a restart (a fresh client: librdkafka re-bootstraps and
    # forgets partition leaders while every broker is down).
    broker.restart()
    consumer = confluent_consumer(broker.bootstrap)
    try:
        assert consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=TIMEOUT_S) == (8, RECORDS)
        consumer.assign([TopicPartition(topic, 0, confluent_kafka.OFFSET_BEGINNING)])
        msg = consumer.poll(TIMEOUT_S)
        assert msg is not None and msg.error() is None, msg and msg.error()
        assert (msg.offset(), msg.value()) == (8, b"8")
    finally:
        consumer.close()


def test_kafka_python_offsets(broker):
    topic = "kp-times"
    produce_one_batch_each(broker.bootstrap, topic)
    consumer = kafka.KafkaConsumer(bootstrap_servers=broker.bootstrap, group_id=None, enable_auto_commit=False)
    try:
        tp = kafka.TopicPartition(topic, 0)
        assert consumer.beginning_offsets([tp]) == {tp: 0}
        assert consumer.end_offsets([tp]) == {tp: RECORDS}

        def offset_for(ts):
            found = consumer.offsets_for_times({tp: ts})[tp]
            return None if found is None else (found.offset, found.timestamp)

        assert offset_for(0) == (0, BASE_MS)
        assert offset_for(BASE_MS + 1) == (1, BASE_MS + STEP_MS)
        assert offset_for(BASE_MS + 12 * STEP_MS) == (12, BASE_MS + 12 * STEP_MS)
        assert offset_for(BASE_MS + RECORDS * STEP_MS) is None
        assert consumer.partitions_for_topic(topic) == {0}

        admin = kafka.KafkaAdminClient(bootstrap_servers=broker.bootstrap)
        try:
            deleted = admin.delete_records({tp: 5})
            assert list(deleted) == [tp]
        finally:
            admin.close()
        assert consumer.beginning_offsets([tp]) == {tp: 5}
        assert consumer.end_offsets([tp]) == {tp: RECORDS}
        assert offset_for(0) == (5, BASE_MS + 5 * STEP_MS)
    finally:
        consumer.close(autocommit=False)


def test_commit_to_unknown_topic_or_partition_is_refused(broker):
    """Kafka answers a commit for a topic or partition that does not exist
    UNKNOWN_TOPIC_OR_PARTITION and still commits the request's other partitions."""
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap})
    producer.produce("real", partition=0, value=b"x")
    assert producer.flush(TIMEOUT_S) == 0
    consumer = confluent_consumer(broker.bootstrap, **{"group.id": "unknown-commits"})
    try:
        offsets = [TopicPartition("real", 0, 1), TopicPartition("ghost", 0, 3), TopicPartition("real", 7, 3)]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
            raise AssertionError("the commit to unknown partitions succeeded")
        except confluent_kafka.KafkaException as error:
            assert error.args[0].code() == confluent_kafka.KafkaError.UNKNOWN_TOPIC_OR_PART, error
        committed = consumer.committed([TopicPartition("real", 0), TopicPartition("ghost", 0)], timeout=TIMEOUT_S)
        assert [(tp.topic, tp.offset) for tp in committed] == [("real", 1), ("ghost", confluent_kafka.OFFSET_INVALID)]
    finally:
        consumer.close()
    topics = AdminClient({"bootstrap.servers": broker.bootstrap}).list_topics(timeout=TIMEOUT_S).topics
    assert "ghost" not in topics, "the commit created the topic"


def test_offsets_for_times_inside_one_batch(broker):
    """Ten records with distinct timestamps in one uncompressed batch: offsets_for_times answers
    the first record whose timestamp reaches the one asked, with that record's timestamp. A
    first record, flushed alone, connects the producer so the ten wait out linger.ms together."""
    topic = "times-in-batch"
    producer = confluent_kafka.Producer(
        {"bootstrap.servers": broker.bootstrap, "linger.ms": 1000, "batch.num.messages": 100,
         "compression.type": "none", "acks": "all"}
    )
    producer.produce(topic, partition=0, value=b"warm-up", timestamp=BASE_MS - STEP_MS)
    assert producer.flush(TIMEOUT_S) == 0
    for i in range(10):
        producer.produce(topic, partition=0, value=b"%d" % i, timestamp=BASE_MS + i * STEP_MS)
    assert producer.flush(TIMEOUT_S) == 0
    consumer = confluent_consumer(broker.bootstrap)
    try:
        batches = segment_batches(broker.data_dir, topic, 0)
        assert [count for _, _, count in batches] == [1, 10], f"the ten were not one batch: {batches}"
        for wanted, expected in [(BASE_MS - STEP_MS, 0), (BASE_MS, 1), (BASE_MS + 1, 2),
                                 (BASE_MS + 4 * STEP_MS, 5), (BASE_MS + 9 * STEP_MS, 10),
                                 (BASE_MS + 9 * STEP_MS + 1, -1)]:
            [answer] = consumer.offsets_for_times([TopicPartition(topic, 0, wanted)], timeout=TIMEOUT_S)
            assert answer.error is None and answer.offset == expected, (wanted, answer)
    finally:
        consumer.close()


def test_confluent_admin_list_offsets_specs(broker):
    """AdminClient.list_offsets with every OffsetSpec: max_timestamp is ListOffsets v7's -3, the
    first record carrying the largest timestamp; here the largest is in the middle of the log."""
    from confluent_kafka.admin import OffsetSpec

    topic = "specs"
    producer = confluent_kafka.Producer({"bootstrap.servers": broker.bootstrap, "linger.ms": 0})
    stamps = [BASE_MS + 5_000, BASE_MS + 9_000, BASE_MS + 2_000]
    for i, ts in enumerate(stamps):
        producer.produce(topic, partition=0, value=b"%d" % i, timestamp=ts)
        assert producer.flush(TIMEOUT_S) == 0
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    tp = TopicPartition(topic, 0)

    def listed(spec):
        result = admin.list_offsets({tp: spec}, request_timeout=TIMEOUT_S)[tp].result(TIMEOUT_S)
        return result.offset, result.timestamp

    assert listed(OffsetSpec.max_timestamp()) == (1, BASE_MS + 9_000)
    assert listed(OffsetSpec.earliest())[0] == 0
    assert listed(OffsetSpec.latest())[0] == 3
    assert listed(OffsetSpec.for_timestamp(BASE_MS + 6_000)) == (1, BASE_MS + 9_000)
