"""Idempotent producers under lost acknowledgements (issue 4), with confluent-kafka and
kafka-python: a proxy drops a share of Produce responses after the broker wrote the batch, the
client times the request out and retries it, and the broker answers the retry with the original
offsets instead of writing it again. Every record must be stored exactly once, in order, and
every delivery report must name the offset the record really has.

The proxy is a small frame-aware TCP relay in this file (the Rust tests use ferry's chaos crate):
it remembers each request's API key by correlation id and drops responses to Produce (API key 0)
with a seeded probability. ferry advertises the proxy's address, so clients never bypass it.
"""

import random
import socket
import struct
import threading

import kafka
import pytest

from support import (
    DEADLINE_S,
    Expected,
    check_confluent_offsets,
    confluent_produce,
    confluent_read,
    kafka_python_read,
    key_for,
    value_for,
)

PARTITIONS = 4
RECORDS = 20_000
DROP_PROBABILITY = 0.1
PRODUCE_API_KEY = 0


def _reserve_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _read_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            return None
        data += chunk
    return bytes(data)


def _read_frame(sock):
    header = _read_exact(sock, 4)
    if header is None:
        return None
    (length,) = struct.unpack(">i", header)
    body = _read_exact(sock, length)
    return None if body is None else header + body


class LostAckProxy:
    """Relays 127.0.0.1:listen_port to upstream_port, dropping Produce responses at random."""

    def __init__(self, listen_port, upstream_port, probability, seed):
        self.upstream_port = upstream_port
        self.probability = probability
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.dropped = 0
        self.sockets = []
        self.listener = socket.create_server(("127.0.0.1", listen_port))
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                self.sockets += [client, upstream]
            api_keys = {}
            threading.Thread(
                target=self._requests, args=(client, upstream, api_keys), daemon=True
            ).start()
            threading.Thread(
                target=self._responses, args=(upstream, client, api_keys), daemon=True
            ).start()

    def _requests(self, client, upstream, api_keys):
        try:
            while (frame := _read_frame(client)) is not None:
                api_key, _version, correlation_id = struct.unpack(">hhi", frame[4:12])
                with self.lock:
                    api_keys[correlation_id] = api_key
                upstream.sendall(frame)
        except OSError:
            pass
        self._close(client, upstream)

    def _responses(self, upstream, client, api_keys):
        try:
            while (frame := _read_frame(upstream)) is not None:
                (correlation_id,) = struct.unpack(">i", frame[4:8])
                with self.lock:
                    api_key = api_keys.pop(correlation_id, None)
                    drop = api_key == PRODUCE_API_KEY and self.rng.random() < self.probability
                    if drop:
                        self.dropped += 1
                if not drop:
                    client.sendall(frame)
        except OSError:
            pass
        self._close(client, upstream)

    @staticmethod
    def _close(*sockets):
        for s in sockets:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def close(self):
        self.listener.close()
        with self.lock:
            sockets, self.sockets = self.sockets, []
        self._close(*sockets)


@pytest.fixture
def proxy_port():
    return _reserve_port()


@pytest.fixture
def broker_settings(proxy_port):
    return {"num.partitions": PARTITIONS, "advertised.listeners": f"127.0.0.1:{proxy_port}"}


@pytest.fixture
def lost_acks(broker, proxy_port, request):
    seed = sum(map(ord, request.node.name))
    proxy = LostAckProxy(proxy_port, broker.port, DROP_PROBABILITY, seed)
    print(f"lost-ack proxy 127.0.0.1:{proxy_port} -> ferry {broker.port}, seed {seed}")
    try:
        yield proxy
    finally:
        proxy.close()


def _kafka_python_produce(bootstrap, topic, expected, **config):
    """Produce `expected` with an idempotent kafka-python producer; {partition: [offsets]}."""
    producer = kafka.KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, **config)
    try:
        futures = [
            producer.send(
                topic,
                partition=seq % expected.partitions,
                key=key_for(expected.tag, seq),
                value=value_for(expected.tag, seq),
            )
            for seq in range(expected.count)
        ]
        producer.flush(timeout=DEADLINE_S)
        offsets = {p: [] for p in range(expected.partitions)}
        for future in futures:
            metadata = future.get(timeout=DEADLINE_S)
            offsets[metadata.partition].append(metadata.offset)
        return offsets
    finally:
        producer.close(timeout=10)


def _broker_duplicates(broker):
    """Stops the broker and reads the duplicates it detected from its shutdown trace line."""
    broker.stop()
    text = broker.stderr_path(broker.starts).read_text(errors="replace")
    lines = [l for l in text.splitlines() if "idempotent producers at shutdown" in l]
    assert lines, f"no shutdown counters in the traces\n{broker.stderr_tail()}"
    field = lines[-1].split("duplicates_detected=")[1]
    return int(field.split()[0])


def test_confluent_idempotent_producer_under_lost_acks(broker, lost_acks, proxy_port):
    topic = "confluent-idempotent-lost-acks"
    expected = Expected("cf-idem", RECORDS, PARTITIONS)
    bootstrap = f"127.0.0.1:{proxy_port}"
    offsets = confluent_produce(
        bootstrap,
        topic,
        expected,
        **{
            "enable.idempotence": True,
            "acks": "all",
            "max.in.flight.requests.per.connection": 5,
            # A dropped response is noticed when its request times out: keep that short.
            "socket.timeout.ms": 500,
            "message.timeout.ms": 90_000,
            # Each lost ack costs a reconnect; the default backoff grows to 10 s.
            "reconnect.backoff.max.ms": 200,
            "batch.num.messages": 200,
        },
    )
    # Every delivery report names a distinct offset 0..n-1: retries answered with the originals.
    check_confluent_offsets(expected, offsets)
    expected.check(confluent_read(bootstrap, topic, PARTITIONS))
    assert lost_acks.dropped > 0, "the proxy dropped no produce response"
    detected = _broker_duplicates(broker)
    print(f"confluent-kafka: {lost_acks.dropped} responses dropped, {detected} duplicates detected")
    assert detected > 0, "no retry reached the broker as a duplicate"


def test_kafka_python_idempotent_producer_under_lost_acks(broker, lost_acks, proxy_port):
    topic = "kafka-python-idempotent-lost-acks"
    expected = Expected("kp-idem", RECORDS, PARTITIONS)
    bootstrap = f"127.0.0.1:{proxy_port}"
    offsets = _kafka_python_produce(
        bootstrap,
        topic,
        expected,
        enable_idempotence=True,
        acks="all",
        max_in_flight_requests_per_connection=5,
        # A dropped response is noticed when its request times out: keep that short.
        request_timeout_ms=1_000,
        delivery_timeout_ms=90_000,
        reconnect_backoff_max_ms=200,
        batch_size=16_384,
    )
    for partition, got in offsets.items():
        assert got == list(range(len(expected.seqs(partition)))), partition
    expected.check(kafka_python_read(bootstrap, topic, PARTITIONS, expected.per_partition()))
    assert lost_acks.dropped > 0, "the proxy dropped no produce response"
    detected = _broker_duplicates(broker)
    print(f"kafka-python: {lost_acks.dropped} responses dropped, {detected} duplicates detected")
    assert detected > 0, "no retry reached the broker as a duplicate"
