"""Fixtures that run a real `ferry serve` for each test.

Every test gets its own broker on a fresh data directory and a free loopback port (`--listen
127.0.0.1:0`; the port is read from the first stdout line). The fixture stops it with SIGTERM and
asserts a clean exit (0); `restart()` brings it back on the same data directory and port, and
`kill9()` crashes it so recovery can be checked. The broker's stderr (traces) is kept in a file
and printed when a test fails, so a failure report carries the broker's side of the story.
"""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

LISTENING_PREFIX = "ferry: listening on "
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 30.0
STDERR_TAIL_BYTES = 20_000


def ferry_bin():
    path = os.environ.get("FERRY_BIN")
    if not path:
        pytest.fail("FERRY_BIN is not set: run tests/python/run.sh FERRY_BIN", pytrace=False)
    if not os.access(path, os.X_OK):
        pytest.fail(f"FERRY_BIN={path} is not an executable", pytrace=False)
    return path


class Broker:
    """One `ferry serve` process, restartable on the same data directory and port."""

    def __init__(self, data_dir, log_dir, settings):
        self.data_dir = Path(data_dir)
        self.log_dir = Path(log_dir)
        self.settings = dict(settings)
        self.port = 0
        self.proc = None
        self.starts = 0
        self._stdout_lines = []

    @property
    def bootstrap(self):
        assert self.port, "broker was never started"
        return f"127.0.0.1:{self.port}"

    def listener(self, name):
        """The bound "host:port" of the listener `name`, from its `ferry: listener` line."""
        prefix = f"ferry: listener {name} on "
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in list(self._stdout_lines):
                if line.startswith(prefix):
                    return line[len(prefix):].strip()
            time.sleep(0.01)
        pytest.fail(f"no listener {name} in {self._stdout_lines!r}", pytrace=False)

    def stderr_path(self, start):
        return self.log_dir / f"ferry-stderr-{start}.log"

    def start(self):
        assert self.proc is None, "broker already running"
        self.starts += 1
        command = [
            ferry_bin(),
            "serve",
            "--data-dir",
            str(self.data_dir),
        ]
        # With `listeners` set, the broker opens those (--listen beside it is refused).
        if "listeners" not in self.settings:
            command += ["--listen", f"127.0.0.1:{self.port}"]
        for name, value in self.settings.items():
            command += ["--set", f"{name}={value}"]
        # ferry reads every FERRY_* variable as a setting (FERRY_NUM_PARTITIONS=4) and rejects
        # unknown ones, so the harness's own FERRY_BIN must not reach it.
        env = {k: v for k, v in os.environ.items() if k != "FERRY_BIN"}
        env.setdefault("FERRY_LOG", "info")
        stderr = open(self.stderr_path(self.starts), "wb")
        self.proc = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, env=env
        )
        stderr.close()
        first_line = self._read_first_line()
        assert first_line.startswith(LISTENING_PREFIX), (
            f"unexpected first stdout line {first_line!r}\n{self.stderr_tail()}"
        )
        address = first_line[len(LISTENING_PREFIX):].strip()
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1", address
        if self.port:
            assert int(port) == self.port, f"restarted on {address}, wanted port {self.port}"
        self.port = int(port)

    def _read_first_line(self):
        # The first line is read on a thread so a broker that never prints cannot hang the test;
        # the same thread then drains stdout so the pipe never fills.
        proc = self.proc
        got_line = threading.Event()
        lines = []

        def drain():
            for raw in proc.stdout:
                lines.append(raw.decode("utf-8", "replace"))
                got_line.set()
            got_line.set()

        threading.Thread(target=drain, daemon=True).start()
        if not got_line.wait(START_TIMEOUT_S) or not lines:
            status = proc.poll()
            self._force_kill()
            pytest.fail(
                f"ferry printed no listening line within {START_TIMEOUT_S}s "
                f"(exit status {status})\n{self.stderr_tail()}",
                pytrace=False,
            )
        self._stdout_lines = lines
        return lines[0]

    def stop(self):
        """SIGTERM, then require a clean exit (0) within STOP_TIMEOUT_S."""
        assert self.proc is not None, "broker not running"
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            status = proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"ferry did not exit within {STOP_TIMEOUT_S}s of SIGTERM\n{self.stderr_tail()}")
        assert status == 0, f"ferry exited {status} after SIGTERM\n{self.stderr_tail()}"

    def kill9(self):
        """Crash the broker: SIGKILL, no chance to flush anything."""
        assert self.proc is not None, "broker not running"
        proc, self.proc = self.proc, None
        proc.kill()
        status = proc.wait(STOP_TIMEOUT_S)
        assert status == -signal.SIGKILL, status

    def restart(self, crash=False):
        """Stop (SIGTERM, or SIGKILL when crash=True) and start again on the same dir and port."""
        if crash:
            self.kill9()
        else:
            self.stop()
        # A port just released can be briefly refused on bind; retry a few times.
        deadline = time.monotonic() + 10
        while True:
            try:
                self.start()
                return
            except (AssertionError, pytest.fail.Exception):
                if self.proc is not None and self.proc.poll() is None:
                    raise
                self.proc = None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def _force_kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def stderr_tail(self, start=None):
        path = self.stderr_path(start or self.starts)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return "(no stderr)"
        text = data[-STDERR_TAIL_BYTES:].decode("utf-8", "replace")
        return f"--- ferry stderr (start {start or self.starts}, {path}) ---\n{text}"


def _start_broker(tmp_path, settings):
    data_dir = tmp_path / "data"
    log_dir = tmp_path / "logs"
    data_dir.mkdir()
    log_dir.mkdir()
    broker = Broker(data_dir, log_dir, settings)
    broker.start()
    return broker


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)
    return report


def _failed(request):
    report = getattr(request.node, "report_call", None)
    return report is not None and report.failed


@pytest.fixture
def broker_settings():
    """Override in a test module (or with parametrize) to pass `--set` settings."""
    return {}


@pytest.fixture
def broker(tmp_path, request, broker_settings):
    """A running ferry; stopped with SIGTERM at the end, which must exit 0."""
    server = _start_broker(tmp_path, broker_settings)
    try:
        yield server
    finally:
        if _failed(request):
            for start in range(1, server.starts + 1):
                print(server.stderr_tail(start))
        if server.proc is not None:
            server.stop()
