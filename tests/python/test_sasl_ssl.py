"""SASL inside TLS (SASL_SSL, rustls on the broker) with every Python-side client: confluent-kafka,
kafka-python and kcat log in with SCRAM-SHA-512 and with PLAIN, produce and read back exactly; a
wrong password over the same TLS is refused (the control of the logins)."""

import confluent_kafka
import pytest

from support import Expected, confluent_produce, confluent_read, kafka_python_produce, kafka_python_read, kcat
from test_sasl import free_port, sasl_broker  # noqa: F401 (the broker with user alice)
from test_tls import pki  # noqa: F401 (the module's certificates, a fixture)

MECHANISMS = ["SCRAM-SHA-512", "PLAIN"]


@pytest.fixture
def broker_settings(pki):  # noqa: F811
    return {
        # A fixed port, so the restart that adds the user finds it again.
        "listeners": f"SASL_SSL://127.0.0.1:{free_port()}",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
        "ssl.keystore.location": pki["keystore"],
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "2",
    }


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_python_clients_and_kcat_over_sasl_ssl(sasl_broker, pki, mechanism):  # noqa: F811
    bootstrap = sasl_broker.bootstrap
    tag = mechanism.lower().replace("-", "")
    librdkafka = {
        "security.protocol": "SASL_SSL",
        "ssl.ca.location": pki["ca"],
        "sasl.mechanism": mechanism,
        "sasl.username": "alice",
        "sasl.password": "alice-secret",
    }
    expected = Expected(f"ssl-ck-{tag}", 200, 2)
    confluent_produce(bootstrap, f"sasl-ssl-ck-{tag}", expected, **librdkafka)
    expected.check(confluent_read(bootstrap, f"sasl-ssl-ck-{tag}", 2, **librdkafka))

    kafka_python = dict(
        security_protocol="SASL_SSL",
        ssl_cafile=pki["ca"],
        sasl_mechanism=mechanism,
        sasl_plain_username="alice",
        sasl_plain_password="alice-secret",
    )
    expected = Expected(f"ssl-kp-{tag}", 200, 2)
    kafka_python_produce(bootstrap, f"sasl-ssl-kp-{tag}", expected, **kafka_python)
    counts = expected.per_partition()
    expected.check(kafka_python_read(bootstrap, f"sasl-ssl-kp-{tag}", 2, counts, **kafka_python))

    auth = []
    for name, value in librdkafka.items():
        auth += ["-X", f"{name}={value}"]
    lines = b"".join(b"kcat over sasl_ssl %d\n" % i for i in range(100))
    topic = f"sasl-ssl-kcat-{tag}"
    kcat("-P", "-b", bootstrap, "-t", topic, "-p", "0", *auth, stdin=lines)
    got = kcat("-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", *auth)
    assert got == lines

    # The control: the same TLS with a wrong password gets no metadata.
    wrong = confluent_kafka.Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "x", **librdkafka, "sasl.password": "wrong"}
    )
    with pytest.raises(confluent_kafka.KafkaException):
        wrong.list_topics(timeout=3)
    wrong.close()
