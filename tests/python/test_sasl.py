"""SASL over a SASL_PLAINTEXT listener with every Python-side client: confluent-kafka, kafka-python
and kcat produce and consume with SCRAM-SHA-512 and PLAIN as a user made by `ferry users add`;
a user created online by confluent-kafka's AdminClient.alter_user_scram_credentials (the client
salts the password) logs in with kafka-python and survives a kill -9; a wrong password is refused
while the right one (the control) works."""

import shutil
import socket
import subprocess

import confluent_kafka
import pytest
from confluent_kafka.admin import (
    AdminClient,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)

from conftest import ferry_bin
from support import Expected, confluent_produce, confluent_read, kafka_python_produce, kafka_python_read

TIMEOUT_S = 30
MECHANISMS = ["SCRAM-SHA-512", "PLAIN"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def broker_settings():
    # A fixed port, so the broker's restarts find it again.
    return {
        "listeners": f"SASL_PLAINTEXT://127.0.0.1:{free_port()}",
        "sasl.enabled.mechanisms": "SCRAM-SHA-512,SCRAM-SHA-256,PLAIN",
        "group.initial.rebalance.delay.ms": "0",
        "num.partitions": "2",
    }


def users_add(data_dir, name, password):
    subprocess.run(
        [ferry_bin(), "users", "add", name, "--data-dir", str(data_dir)],
        input=(password + "\n").encode(), check=True, capture_output=True, timeout=TIMEOUT_S,
    )


@pytest.fixture
def sasl_broker(broker):
    """The broker, restarted once with user alice (added offline, the broker stopped)."""
    broker.stop()
    users_add(broker.data_dir, "alice", "alice-secret")
    broker.start()
    return broker


def confluent_login(mechanism, user="alice", password="alice-secret"):
    return {
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": mechanism,
        "sasl.username": user,
        "sasl.password": password,
    }


def kafka_python_login(mechanism, user="alice", password="alice-secret"):
    return dict(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_plain_username=user,
        sasl_plain_password=password,
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_python_clients_and_kcat_round_trip_over_sasl(sasl_broker, mechanism):
    bootstrap = sasl_broker.bootstrap
    tag = mechanism.lower().replace("-", "")
    expected = Expected(f"ck-{tag}", 200, 2)
    confluent_produce(bootstrap, f"sasl-ck-{tag}", expected, **confluent_login(mechanism))
    expected.check(confluent_read(bootstrap, f"sasl-ck-{tag}", 2, **confluent_login(mechanism)))
    # kafka-python reads what confluent-kafka wrote and writes its own.
    kafka_python_read(bootstrap, f"sasl-ck-{tag}", 2, {0: 100, 1: 100}, **kafka_python_login(mechanism))
    expected = Expected(f"kp-{tag}", 200, 2)
    kafka_python_produce(bootstrap, f"sasl-kp-{tag}", expected, **kafka_python_login(mechanism))
    expected.check(kafka_python_read(bootstrap, f"sasl-kp-{tag}", 2, {0: 100, 1: 100}, **kafka_python_login(mechanism)))

    kcat = shutil.which("kcat")
    assert kcat is not None, "kcat is not installed (scripts/install-deps installs it)"
    auth = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", f"sasl.mechanism={mechanism}",
            "-X", "sasl.username=alice", "-X", "sasl.password=alice-secret"]
    lines = b"".join(b"kcat %d\n" % i for i in range(100))
    topic = f"sasl-kcat-{tag}"
    subprocess.run([kcat, "-P", "-b", bootstrap, "-t", topic, "-p", "0", *auth], input=lines, check=True, timeout=TIMEOUT_S)
    got = subprocess.run([kcat, "-C", "-b", bootstrap, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q", *auth],
                         capture_output=True, check=True, timeout=TIMEOUT_S).stdout
    assert got == lines

    # The control's refusal: the same client with a wrong password gets no metadata.
    wrong = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "x",
                                      **confluent_login(mechanism, password="wrong")})
    with pytest.raises(confluent_kafka.KafkaException):
        wrong.list_topics(timeout=3)
    wrong.close()
    done = subprocess.run([kcat, "-L", "-b", bootstrap, "-m", "3", *auth[:-1], "sasl.password=wrong"],
                          capture_output=True, timeout=TIMEOUT_S)
    assert done.returncode != 0


def test_a_user_created_online_logs_in_and_survives_kill_9(sasl_broker):
    bootstrap = sasl_broker.bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap, **confluent_login("SCRAM-SHA-512")})
    upsert = UserScramCredentialUpsertion(
        "dave", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), b"dave-secret")
    for user, future in admin.alter_user_scram_credentials([upsert]).items():
        future.result(timeout=TIMEOUT_S)
    described = admin.describe_user_scram_credentials(["dave"])["dave"].result(timeout=TIMEOUT_S)
    infos = described.scram_credential_infos
    assert [(i.mechanism, i.iterations) for i in infos] == [(ScramMechanism.SCRAM_SHA_512, 8192)]

    expected = Expected("dave", 50, 1)
    kafka_python_produce(bootstrap, "sasl-dave", expected,
                         **kafka_python_login("SCRAM-SHA-512", "dave", "dave-secret"))
    sasl_broker.restart(crash=True)
    got = kafka_python_read(bootstrap, "sasl-dave", 1, {0: 50},
                            **kafka_python_login("SCRAM-SHA-512", "dave", "dave-secret"))
    expected.check(got)
    # PLAIN works for dave too: it is checked against his SCRAM keys.
    kafka_python_read(bootstrap, "sasl-dave", 1, {0: 50}, **kafka_python_login("PLAIN", "dave", "dave-secret"))
    wrong = confluent_kafka.Consumer({"bootstrap.servers": bootstrap, "group.id": "x",
                                      **confluent_login("PLAIN", "dave", "not-dave")})
    with pytest.raises(confluent_kafka.KafkaException):
        wrong.list_topics(timeout=3)
    wrong.close()
