"""Record generation, producing and reading back with both Python clients, and exact checks.

A record is identified by its sequence number `seq`: it goes to partition `seq % partitions`, its
key and value carry `seq`, so a reader can check every record is present, once, in order per
partition, at the expected offset, with its bytes intact.
"""

import shutil
import subprocess
import time

import confluent_kafka
import kafka
import pytest

DEADLINE_S = 60.0


def key_for(tag, seq):
    return f"{tag}-{seq}".encode()


def value_for(tag, seq):
    # Varied length and compressible, so codecs really compress and batches differ in size.
    return f"{tag}:{seq}:".encode() + b"0123456789abcdef" * (seq % 24) + bytes([seq % 256])


def headers_for(seq):
    return [("seq", str(seq).encode()), ("even", b"1" if seq % 2 == 0 else b"0")]


class Expected:
    """The records a test produced, by partition, in the order they must be read."""

    def __init__(self, tag, count, partitions, with_headers=False):
        self.tag = tag
        self.count = count
        self.partitions = partitions
        self.with_headers = with_headers

    def seqs(self, partition):
        return range(partition, self.count, self.partitions)

    def per_partition(self):
        return {p: len(self.seqs(p)) for p in range(self.partitions)}

    def check(self, got):
        """`got` maps partition -> list of (offset, key, value, headers-or-None) in read order."""
        assert sorted(got) == list(range(self.partitions)), sorted(got)
        for partition in range(self.partitions):
            records = got[partition]
            seqs = self.seqs(partition)
            assert len(records) == len(seqs), (
                f"partition {partition}: read {len(records)} records, produced {len(seqs)}"
            )
            for index, (seq, record) in enumerate(zip(seqs, records)):
                offset, key, value, headers = record
                where = f"partition {partition} index {index}"
                assert offset == index, f"{where}: offset {offset}"
                assert key == key_for(self.tag, seq), f"{where}: key {key!r}"
                assert value == value_for(self.tag, seq), f"{where}: value {value[:60]!r}"
                if self.with_headers:
                    assert headers == headers_for(seq), f"{where}: headers {headers!r}"


# --- confluent-kafka (librdkafka) -------------------------------------------------------------


def confluent_produce(bootstrap, topic, expected, **config):
    """Produce `expected` with explicit partitions; return {partition: [offsets]} from reports."""
    producer = confluent_kafka.Producer(
        {
            "bootstrap.servers": bootstrap,
            "enable.idempotence": False,
            "linger.ms": 5,
            **config,
        }
    )
    offsets = {p: [] for p in range(expected.partitions)}
    errors = []

    def on_delivery(err, msg):
        if err is not None:
            errors.append(err)
        else:
            offsets[msg.partition()].append(msg.offset())

    for seq in range(expected.count):
        kwargs = dict(
            topic=topic,
            partition=seq % expected.partitions,
            key=key_for(expected.tag, seq),
            value=value_for(expected.tag, seq),
            on_delivery=on_delivery,
        )
        if expected.with_headers:
            kwargs["headers"] = headers_for(seq)
        while True:
            try:
                producer.produce(**kwargs)
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    remaining = producer.flush(DEADLINE_S)
    assert remaining == 0, f"{remaining} records not delivered within {DEADLINE_S}s"
    assert errors == [], errors[:5]
    return offsets


def check_confluent_offsets(expected, offsets):
    for partition, got in offsets.items():
        assert sorted(got) == list(range(len(expected.seqs(partition)))), (
            f"partition {partition}: delivery reports gave offsets {got[:10]}..."
        )


def confluent_consumer(bootstrap, **config):
    return confluent_kafka.Consumer(
        {
            "bootstrap.servers": bootstrap,
            # librdkafka wants a group id; these readers use assign() with explicit offsets and
            # commit nothing unless a test commits explicitly.
            "group.id": "ferry-interop",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "error",
            "enable.partition.eof": True,
            **config,
        }
    )


def confluent_read(bootstrap, topic, partitions, with_headers=False, **config):
    """Read every partition from the beginning until each reports end of partition."""
    consumer = confluent_consumer(bootstrap, **config)
    try:
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in range(partitions)
            ]
        )
        got = {p: [] for p in range(partitions)}
        at_end = set()
        deadline = time.monotonic() + DEADLINE_S
        while len(at_end) < partitions:
            assert time.monotonic() < deadline, (
                f"reading {topic}: only {sorted(at_end)} reached the end; "
                f"counts {[len(v) for v in got.values()]}"
            )
            for msg in consumer.consume(num_messages=10_000, timeout=0.5):
                err = msg.error()
                if err is not None:
                    assert err.code() == confluent_kafka.KafkaError._PARTITION_EOF, err
                    at_end.add(msg.partition())
                    continue
                assert msg.topic() == topic
                headers = msg.headers() if with_headers else None
                got[msg.partition()].append((msg.offset(), msg.key(), msg.value(), headers))
        return got
    finally:
        consumer.close()


# --- kafka-python -----------------------------------------------------------------------------
#
# kafka-python 3 turns idempotence on by default whenever acks='all'; these round trips test
# plain produce, so idempotence is off here (test_idempotence.py covers it with kafka-python).


def kafka_python_produce(bootstrap, topic, expected, **config):
    """Produce `expected` with explicit partitions; return {partition: [offsets]} from metadata."""
    producer = kafka.KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, enable_idempotence=False, **config
    )
    try:
        futures = []
        for seq in range(expected.count):
            futures.append(
                producer.send(
                    topic,
                    partition=seq % expected.partitions,
                    key=key_for(expected.tag, seq),
                    value=value_for(expected.tag, seq),
                    headers=headers_for(seq) if expected.with_headers else None,
                )
            )
        producer.flush(timeout=DEADLINE_S)
        offsets = {p: [] for p in range(expected.partitions)}
        for future in futures:
            metadata = future.get(timeout=DEADLINE_S)
            offsets[metadata.partition].append(metadata.offset)
        return offsets
    finally:
        producer.close(timeout=10)


def kafka_python_read(bootstrap, topic, partitions, counts, with_headers=False, **config):
    """Read `counts[p]` records of every partition from the beginning, then require the end."""
    consumer = kafka.KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="none",
        **config,
    )
    try:
        tps = [kafka.TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        got = {p: [] for p in range(partitions)}
        total = sum(counts.values())
        deadline = time.monotonic() + DEADLINE_S
        while sum(len(v) for v in got.values()) < total:
            assert time.monotonic() < deadline, (
                f"reading {topic}: counts {[len(v) for v in got.values()]}, wanted {counts}"
            )
            for tp, records in consumer.poll(timeout_ms=500, max_records=10_000).items():
                assert tp.topic == topic
                for r in records:
                    headers = [(k, v) for k, v in r.headers] if with_headers else None
                    got[tp.partition].append((r.offset, r.key, r.value, headers))
        # Everything read, nothing more: each position is the partition's end.
        end = consumer.end_offsets(tps)
        for tp in tps:
            assert end[tp] == counts[tp.partition], (tp, end[tp], counts)
            assert consumer.position(tp) == counts[tp.partition], (tp, consumer.position(tp))
        return got
    finally:
        consumer.close(autocommit=False)


# --- ferry's segment files (docs/storage-format.md) -------------------------------------------

CODEC_IDS = {"none": 0, None: 0, "gzip": 1, "snappy": 2, "lz4": 3, "zstd": 4}
BATCH_HEADER_BYTES = 61


def segment_batches(data_dir, topic, partition):
    """Every batch header of a partition's .log segments: (base_offset, attributes, count)."""
    import struct

    import crc32c

    directory = data_dir / f"{topic}-{partition}"
    batches = []
    for segment in sorted(directory.glob("*.log")):
        data = segment.read_bytes()
        position = 0
        while position < len(data):
            assert len(data) - position >= BATCH_HEADER_BYTES, f"{segment}: torn header at {position}"
            base_offset, length, _epoch, magic, crc, attributes = struct.unpack_from(
                ">qiibIh", data, position
            )
            end = position + 12 + length
            assert magic == 2, (segment, position, magic)
            assert end <= len(data), f"{segment}: torn batch at {position}"
            assert crc32c.crc32c(data[position + 21 : end]) == crc, f"{segment}: bad CRC at {position}"
            (last_delta,) = struct.unpack_from(">i", data, position + 23)
            (count,) = struct.unpack_from(">i", data, position + 57)
            assert count == last_delta + 1, (segment, position, count, last_delta)
            batches.append((base_offset, attributes, count))
            position = end
    return batches


def check_segments(data_dir, topic, expected, codec):
    """Batches on disk are contiguous, CRC-valid, and stored with the codec the client chose.

    A client may send a batch uncompressed when compressing would not make it smaller
    (kafka-python does this for a small last batch), so each batch must carry the requested codec
    or none, and most of the data must carry the requested one."""
    for partition in range(expected.partitions):
        batches = segment_batches(data_dir, topic, partition)
        next_offset = 0
        compressed_records = 0
        for base_offset, attributes, count in batches:
            assert base_offset == next_offset, (partition, base_offset, next_offset)
            assert attributes & 0x7 in (CODEC_IDS[codec], 0), (partition, base_offset, attributes)
            if attributes & 0x7 == CODEC_IDS[codec]:
                compressed_records += count
            next_offset += count
        assert next_offset == len(expected.seqs(partition)), (partition, next_offset)
        assert compressed_records * 2 > next_offset, (partition, "mostly not in the requested codec")


# --- kcat ----------------------------------------------------------------------------------------

KCAT_TIMEOUT_S = 30


def kcat(*args, stdin=None):
    """Runs kcat with `args`; fails the test unless it exits 0; returns its stdout."""
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed (scripts/install-deps installs it)", pytrace=False)
    done = subprocess.run(
        [path, *args], input=stdin, capture_output=True, timeout=KCAT_TIMEOUT_S, check=False
    )
    assert done.returncode == 0, (args, done.returncode, done.stderr.decode(errors="replace"))
    return done.stdout

