# SPDX-License-Identifier: MIT
"""sd_notify over a real AF_UNIX datagram socket: the protocol alone, the watchdog's rule, and
READY / WATCHDOG / STOPPING observed from a real `posd run` process (as systemd would see
them), including a SIGTERM with a sale in flight: kept, and finished after the restart."""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from posd.channels.simulator import Simulator, TestPki
from posd.core.errors import StoreError
from posd.daemon import Daemon
from posd.notify import Notifier, Watchdog
from tests.sandbox import config as validate
from tests.sandbox import make_config, start_simulator, to_toml

TOKEN = {"Authorization": "Bearer test-token-0123456789abcdef"}


@pytest.fixture(name="listener")
def _listener() -> Iterator[tuple[socket.socket, str]]:
    """What systemd holds: a datagram socket with a short path (sun_path is 108 bytes)."""
    directory = tempfile.mkdtemp(prefix="posd-notify-")
    path = os.path.join(directory, "notify")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    yield sock, path
    sock.close()
    os.unlink(path)
    os.rmdir(directory)


def receive(sock: socket.socket, timeout: float = 10.0) -> dict[str, str]:
    sock.settimeout(timeout)
    fields = sock.recv(4096).decode()
    return dict(line.split("=", 1) for line in fields.split("\n"))


def test_one_datagram_per_message_to_a_path_socket(listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    assert notifier.ready("ready: two\nlines")
    assert receive(sock) == {"READY": "1", "STATUS": "ready: two lines"}
    assert notifier.stopping("bye")
    assert receive(sock) == {"STOPPING": "1", "STATUS": "bye"}


def test_abstract_namespace_socket() -> None:
    name = f"posd-test-{os.getpid()}-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert Notifier.from_environ({"NOTIFY_SOCKET": "@" + name}).status("hello")
        assert receive(sock) == {"STATUS": "hello"}


def test_environment_rules(caplog: pytest.LogCaptureFixture) -> None:
    assert not Notifier.from_environ({}).enabled
    assert not Notifier.from_environ({}).send("READY=1")  # outside systemd: nothing to do
    env = {"NOTIFY_SOCKET": "/run/x", "WATCHDOG_USEC": "30000000"}
    assert Notifier.from_environ(env).watchdog_s == 30.0
    assert Notifier.from_environ(env | {"WATCHDOG_PID": "1"}, pid=2).watchdog_s is None
    assert Notifier.from_environ(env | {"WATCHDOG_PID": "2"}, pid=2).watchdog_s == 30.0
    assert Notifier.from_environ({"NOTIFY_SOCKET": "vsock:2:3"}).address is None
    # A socket that went away: logged once, never raised.
    gone = Notifier.from_environ({"NOTIFY_SOCKET": "/nonexistent/notify"})
    caplog.clear()
    with caplog.at_level(logging.WARNING, "posd.notify"):
        assert not gone.status("a") and not gone.status("b")
    assert [r.getMessage() for r in caplog.records] == [
        "cannot notify systemd at '/nonexistent/notify': [Errno 2] No such file or directory"]


def test_the_watchdog_is_fed_only_after_a_health_check_passes(
        listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    now = [100.0]
    healthy = [True]

    def check() -> str:
        if not healthy[0]:
            raise StoreError("database error: disk I/O error")
        return "ok: 0 sale(s) in flight"

    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    watchdog = Watchdog(notifier, check, clock=lambda: now[0])
    assert watchdog.interval == 1.0  # half of WATCHDOG_USEC (sd_watchdog_enabled(3))
    assert watchdog.tick()
    assert receive(sock) == {"WATCHDOG": "1", "STATUS": "ok: 0 sale(s) in flight"}
    assert not watchdog.tick()  # not due yet
    assert watchdog.due_in() == 1.0
    now[0] += 1.0
    healthy[0] = False
    assert not watchdog.tick()
    assert receive(sock) == {"STATUS": "unhealthy: database error: disk I/O error"}
    now[0] += 1.0
    healthy[0] = True
    assert watchdog.tick()
    assert receive(sock)["WATCHDOG"] == "1"
    assert Watchdog(Notifier(), check).due_in() is None  # no WatchdogSec: no keep-alives


def test_a_manager_that_does_not_read_never_blocks_the_daemon(
        listener: tuple[socket.socket, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, path = listener  # bound, never read: its queue fills (net.unix.max_dgram_qlen)
    monkeypatch.setattr("posd.notify.SEND_TIMEOUT_S", 0.05)  # our own constant, not a library
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    started = time.monotonic()
    sent = 0
    while notifier.status(f"message {sent}") and sent < 100_000:
        sent += 1
    assert 0 < sent < 100_000
    assert not notifier.send("WATCHDOG=1")
    assert time.monotonic() - started < 10


@pytest.fixture(name="sim")
def _sim(pki: TestPki) -> Iterator[Simulator]:
    sim = start_simulator(pki, confirm_delay_s=3.0)
    yield sim
    sim.stop()


def run_posd(config: Path, notify_socket: str) -> subprocess.Popen[bytes]:
    env = dict(os.environ, NOTIFY_SOCKET=notify_socket, WATCHDOG_USEC="400000")
    env.pop("WATCHDOG_PID", None)
    with (config.parent / "posd.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "posd", "run", "-c", str(config)],
                                env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait()


class Manager:
    """systemd's side: reads every notification as it comes (as the real one does)."""

    def __init__(self, sock: socket.socket) -> None:
        self.messages: queue.Queue[dict[str, str]] = queue.Queue()
        self._sock = sock
        sock.settimeout(0.2)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._done.is_set():
            try:
                fields = self._sock.recv(4096).decode()
            except TimeoutError:
                continue
            self.messages.put(dict(line.split("=", 1) for line in fields.split("\n")))

    def until(self, key: str, timeout: float = 15.0) -> list[dict[str, str]]:
        """The messages up to and including the next one with ``key``."""
        seen = [self.messages.get(timeout=timeout)]
        while key not in seen[-1]:
            seen.append(self.messages.get(timeout=timeout))
        return seen

    def close(self) -> None:
        self._done.set()
        self._thread.join()


def test_a_running_posd_notifies_ready_watchdog_and_stopping(
        tmp_path: Path, sim: Simulator, pki: TestPki,
        listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    manager = Manager(sock)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = tmp_path / "config.toml"
    config.write_text(to_toml(make_config(tmp_path, sim.url, pki, api_port=port,
                                          payment={"deadline_s": 30})))
    url = f"http://127.0.0.1:{port}"
    proc = run_posd(config, path)
    try:
        before = manager.until("READY")
        assert before[0] == {"STATUS": "resuming unfinished sales"}
        assert before[-1]["STATUS"].startswith(f"ready: API on {url}, wechat; 0 sale(s)")
        # READY=1 means the API already listens: no retry needed.
        assert requests.get(f"{url}/v1/health", timeout=5).json()["status"] == "ok"
        beats = [m for m in manager.until("WATCHDOG") + manager.until("WATCHDOG")
                 if "WATCHDOG" in m]
        assert len(beats) == 2
        assert beats[0]["STATUS"].startswith("ok: 0 sale(s) in flight")

        # SIGTERM while the customer is still confirming: the sale is kept, not lost.
        sale = requests.post(f"{url}/v1/sales", headers=TOKEN, timeout=5, json={
            "amount": 880, "auth_code": "134567890123450001"}).json()
        seen = requests.get(f"{url}/v1/sales/{sale['id']}", headers=TOKEN, timeout=10,
                            params={"wait": 5, "seen_state": "paying"}).json()
        assert seen["state"] == "confirming"
        proc.send_signal(signal.SIGTERM)
        stopping = manager.until("STOPPING")[-1]
        assert stopping["STATUS"].startswith("stopping")
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)

    proc = run_posd(config, path)  # systemd's restart: recovery resumes and finishes it
    try:
        ready = manager.until("READY")[-1]
        assert "1 sale(s) resumed" in ready["STATUS"]
        done = requests.get(f"{url}/v1/sales/{sale['id']}", headers=TOKEN, timeout=15,
                            params={"wait": 10, "seen_state": "confirming"}).json()
        assert done["state"] == "paid", done
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert "STOPPING" in manager.until("STOPPING")[-1]
    finally:
        stop(proc)
        manager.close()


def test_a_dead_database_withholds_the_keep_alive_and_stops_the_daemon(
        tmp_path: Path, sim: Simulator, pki: TestPki,
        listener: tuple[socket.socket, str]) -> None:
    sock, path = listener
    manager = Manager(sock)
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    daemon = Daemon.build(validate(make_config(tmp_path, sim.url, pki)), notifier=notifier)
    daemon.start()
    status: list[int] = []
    main_loop = threading.Thread(target=lambda: status.append(daemon.wait()))
    try:
        assert "READY" in manager.until("READY")[-1]
        main_loop.start()
        assert "WATCHDOG" in manager.until("WATCHDOG")[-1]
        daemon.store.close()  # the database becomes unusable under the running daemon
        unhealthy = manager.until("STATUS")
        while not unhealthy[-1]["STATUS"].startswith("unhealthy"):
            unhealthy = manager.until("STATUS")
        assert "WATCHDOG" not in unhealthy[-1]  # systemd would restart posd now
        outcome = daemon.engine.scan("134567890123459999", time.monotonic())
        assert not outcome.accepted
        main_loop.join(timeout=10)  # the fatal error wakes the main loop at once
        assert status == [1]
    finally:
        daemon.stop()
        main_loop.join(timeout=10)
        manager.close()
