"""kcat (librdkafka's command-line client): list metadata, produce lines from stdin, read them
back exactly."""

from support import kcat


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
