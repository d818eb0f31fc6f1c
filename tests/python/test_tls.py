"""TLS: confluent-kafka, kafka-python and kcat produce and consume over ferry's SSL listener,
with a client certificate and (where `ssl.client.auth=requested` allows) without one. The CA,
the broker's and the client's certificates are made per module with the `openssl` CLI."""

import shutil
import subprocess

import pytest

from support import (
    Expected,
    check_confluent_offsets,
    confluent_produce,
    confluent_read,
    kafka_python_produce,
    kafka_python_read,
)

TIMEOUT_S = 30


def openssl(*args, cwd):
    path = shutil.which("openssl")
    if path is None:
        pytest.fail("openssl is not installed (scripts/install-deps installs it)", pytrace=False)
    subprocess.run([path, *args], cwd=cwd, check=True, capture_output=True, timeout=TIMEOUT_S)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """ca.pem; broker.pem (key, certificate for 127.0.0.1 and localhost, CA); client.pem and
    client.key (subject O=ferry, CN=python)."""
    d = tmp_path_factory.mktemp("pki")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=ferry test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=d)
    # Extensions make them X.509 v3 certificates: rustls (webpki) refuses v1 ones.
    (d / "broker.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n"
                                  "extendedKeyUsage=serverAuth\n")
    (d / "client.ext").write_text("extendedKeyUsage=clientAuth\n")
    for name, subject in [("broker", "/CN=localhost"), ("client", "/O=ferry/CN=python")]:
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
                "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-days", "2", "-out", f"{name}.crt",
                "-extfile", f"{name}.ext", cwd=d)
    (d / "broker.pem").write_bytes(
        (d / "broker.key").read_bytes() + (d / "broker.crt").read_bytes()
        + (d / "ca.pem").read_bytes())
    return {"ca": str(d / "ca.pem"), "keystore": str(d / "broker.pem"),
            "cert": str(d / "client.crt"), "key": str(d / "client.key")}


@pytest.fixture
def broker_settings(pki):
    return {
        "listeners": "PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0",
        "ssl.keystore.location": pki["keystore"],
        "ssl.truststore.location": pki["ca"],
        "ssl.client.auth": "requested",
        "num.partitions": 2,
    }


def librdkafka_ssl(pki, with_certificate):
    config = {"security.protocol": "SSL", "ssl.ca.location": pki["ca"]}
    if with_certificate:
        config.update({"ssl.certificate.location": pki["cert"], "ssl.key.location": pki["key"]})
    return config


@pytest.mark.parametrize("with_certificate", [True, False])
def test_confluent_kafka_over_ssl(broker, pki, with_certificate):
    bootstrap = broker.listener("SSL")
    expected = Expected("confluent-ssl", 500, 2)
    ssl = librdkafka_ssl(pki, with_certificate)
    offsets = confluent_produce(bootstrap, "confluent-ssl", expected, acks="all", **ssl)
    check_confluent_offsets(expected, offsets)
    expected.check(confluent_read(bootstrap, "confluent-ssl", 2, **ssl))


@pytest.mark.parametrize("with_certificate", [True, False])
def test_kafka_python_over_ssl(broker, pki, with_certificate):
    bootstrap = broker.listener("SSL")
    expected = Expected("kafka-python-ssl", 500, 2)
    ssl = {"security_protocol": "SSL", "ssl_cafile": pki["ca"]}
    if with_certificate:
        ssl.update({"ssl_certfile": pki["cert"], "ssl_keyfile": pki["key"]})
    offsets = kafka_python_produce(bootstrap, "kafka-python-ssl", expected, **ssl)
    assert {p: sorted(o) for p, o in offsets.items()} == {
        p: list(range(n)) for p, n in expected.per_partition().items()
    }
    got = kafka_python_read(bootstrap, "kafka-python-ssl", 2, expected.per_partition(), **ssl)
    expected.check(got)


def test_kcat_over_ssl_with_a_client_certificate(broker, pki):
    bootstrap = broker.listener("SSL")
    ssl = []
    for name, value in librdkafka_ssl(pki, True).items():
        ssl += ["-X", f"{name}={value}"]
    path = shutil.which("kcat")
    assert path is not None, "kcat is not installed (scripts/install-deps installs it)"

    def kcat(*args, stdin=None):
        done = subprocess.run([path, "-b", bootstrap, *ssl, *args], input=stdin,
                              capture_output=True, timeout=TIMEOUT_S, check=False)
        assert done.returncode == 0, (args, done.stderr.decode(errors="replace"))
        return done.stdout

    lines = [f"tls line {i}" for i in range(300)]
    kcat("-P", "-t", "kcat-ssl", "-p", "0", stdin="".join(l + "\n" for l in lines).encode())
    # Metadata through the SSL listener names the SSL port, not the PLAINTEXT one.
    listing = kcat("-L").decode()
    assert f"broker 1 at {bootstrap}" in listing, listing
    got = kcat("-C", "-t", "kcat-ssl", "-p", "0", "-o", "beginning", "-e", "-q")
    assert got.decode().split("\n")[:-1] == lines
