"""kcat (librdkafka's command-line client): list metadata, produce lines from stdin, read them
back exactly."""

import shutil
import subprocess

import pytest

TIMEOUT_S = 30


def kcat(*args, stdin=None):
    path = shutil.which("kcat")
    if path is None:
        pytest.fail("kcat is not installed (scripts/install-deps installs it)", pytrace=False)
    done = subprocess.run(
        [path, *args], input=stdin, capture_output=True, timeout=TIMEOUT_S, check=False
    )
    assert done.returncode == 0, (args, done.returncode, done.stderr.decode(errors="replace"))
    return done.stdout


def test_kcat_metadata_produce_consume(broker):
    addr = broker.bootstrap
    lines = [f"line {i} " + "x" * (i % 30) for i in range(1000)] + ["", "last line ✓"]
    payload = "".join(line + "\n" for line in lines).encode()

    kcat("-P", "-b", addr, "-t", "kcat-lines", "-p", "0", stdin=payload)
    kcat("-P", "-b", addr, "-t", "kcat-keyed", "-p", "0", "-K", ":", "-z", "snappy",
         stdin=b"".join(b"k%d:v%d\n" % (i, i) for i in range(500)))

    listing = kcat("-L", "-b", addr).decode()
    assert f"broker 1 at 127.0.0.1:{broker.port}" in listing, listing
    assert 'topic "kcat-lines" with 1 partitions:' in listing, listing
    assert 'topic "kcat-keyed" with 1 partitions:' in listing, listing

    # kcat skips empty input lines (it produces no empty messages by default).
    got = kcat("-C", "-b", addr, "-t", "kcat-lines", "-p", "0", "-o", "beginning", "-e", "-q")
    assert got.decode().split("\n")[:-1] == [line for line in lines if line]

    got = kcat("-C", "-b", addr, "-t", "kcat-keyed", "-o", "beginning", "-e", "-q", "-f", "%o %k=%s\n")
    assert got.decode().splitlines() == [f"{i} k{i}=v{i}" for i in range(500)]

    broker.restart()
    got = kcat("-C", "-b", addr, "-t", "kcat-keyed", "-o", "-10", "-e", "-q", "-f", "%o %k=%s\n")
    assert got.decode().splitlines() == [f"{i} k{i}=v{i}" for i in range(490, 500)]
