# SPDX-License-Identifier: MIT
"""The serial reader: real pyserial on a real pseudo-terminal, including unplug and re-plug,
and the daemon reading a serial scanner into the one pipeline against the simulator."""

from __future__ import annotations

import queue
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.channels.simulator import Simulator, TestPki
from posd.config import ScannerConfig
from posd.daemon import Daemon
from posd.core.sale import State
from posd.devices.scanners import SerialScanner
from tests.sandbox import config, make_config, start_simulator
from tests.shell.pty_scanner import PtyScanner

CODE = "134567890123450000"
WAIT = 5.0
FAST_RETRY = (0.02, 0.05)

Got = queue.Queue[tuple[str, float, str]]


@pytest.fixture(name="pty")
def _pty(tmp_path: Path) -> Iterator[PtyScanner]:
    pty = PtyScanner(tmp_path / "usb-Test_Scanner-if00-port0")
    yield pty
    pty.close()


@pytest.fixture(name="got")
def _got() -> Got:
    return queue.Queue()


def reader(got: Got, link: Path, label: str = "scanner", **keys: object) -> SerialScanner:
    cfg = ScannerConfig.model_validate({"kind": "serial", "device": str(link), **keys})
    scanner = SerialScanner(cfg, lambda c, t, s: got.put((c, t, s)), label=label,
                            retry_delays=FAST_RETRY)
    scanner.start()
    return scanner


def test_a_code_and_cr_reach_the_pipeline(got: Got, pty: PtyScanner) -> None:
    scanner = reader(got, pty.link, label="scanner.fixed")
    assert scanner.wait_connected(timeout=WAIT)
    before = time.monotonic()
    pty.send(CODE.encode() + b"\r")
    code, read_at, source = got.get(timeout=WAIT)
    assert (code, source) == (CODE, "scanner.fixed")
    assert before <= read_at <= time.monotonic()
    health = scanner.health()
    assert health["connected"] and health["grabbed"] and health["codes"] == 1
    assert "degraded" not in health
    scanner.stop()


@pytest.mark.parametrize(("terminators", "sent"), [
    (["cr"], [b"1234\r"]),
    (["lf"], [b"1234\n"]),
    (["crlf"], [b"12", b"34\r", b"\n"]),
    (["tab"], [b"\x021234\x03\t"]),
    (["idle"], [b"1234"]),
])
def test_terminators(got: Got, pty: PtyScanner, terminators: list[str], sent: list[bytes]) -> None:
    scanner = reader(got, pty.link, terminators=terminators)
    assert scanner.wait_connected(timeout=WAIT)
    for chunk in sent:
        pty.send(chunk)
    assert got.get(timeout=WAIT)[0] == "1234"
    scanner.stop()
    assert got.empty()


def test_serial_settings_are_applied(got: Got, pty: PtyScanner) -> None:
    scanner = reader(got, pty.link, baudrate=115200, bytesize=7, parity="even", stopbits=2)
    assert scanner.wait_connected(timeout=WAIT)
    port = scanner._port  # noqa: SLF001 - the real pyserial object posd opened
    assert port is not None
    assert (port.baudrate, port.bytesize, port.parity, port.stopbits) == (115200, 7, "E", 2)
    scanner.stop()


def test_a_partial_code_is_dropped_after_the_idle_gap(got: Got, pty: PtyScanner) -> None:
    scanner = reader(got, pty.link, idle_gap_ms=20)
    assert scanner.wait_connected(timeout=WAIT)
    pty.send(b"1345678")
    assert scanner.wait_until(lambda state: state["partial_codes_dropped"] == 1, WAIT)
    pty.send(CODE.encode() + b"\r")
    assert got.get(timeout=WAIT)[0] == CODE
    scanner.stop()


def test_unplug_and_replug(got: Got, pty: PtyScanner) -> None:
    scanner = reader(got, pty.link)
    assert scanner.wait_connected(timeout=WAIT)
    pty.send(b"1234")  # a scan cut short by the unplug
    pty.unplug()
    assert scanner.wait_connected(False, timeout=WAIT)
    health = scanner.health()
    # EIO, or pyserial's "device reports readiness to read but returned no data": both are
    # what a pulled USB adapter gives, depending on when the read lands.
    assert health["last_error"].startswith("device lost:")
    assert health["degraded"].startswith("not connected")
    assert scanner.wait_until(lambda state: "not present" in state["last_error"], WAIT)
    pty.plug()  # the same by-id link, a new tty behind it
    assert scanner.wait_connected(timeout=WAIT)
    pty.send(CODE.encode() + b"\r")
    assert got.get(timeout=WAIT)[0] == CODE  # not "1234" + CODE
    scanner.stop()


def test_a_port_held_by_another_reader_is_reported(got: Got, pty: PtyScanner) -> None:
    first = reader(got, pty.link, label="scanner")
    assert first.wait_connected(timeout=WAIT)
    second = reader(got, pty.link, label="scanner.2")
    assert second.wait_until(lambda state: "exclusively" in state["last_error"], WAIT)
    assert "fuser -v" in second.health()["last_error"]
    first.stop()  # the lock goes with the fd
    assert second.wait_connected(timeout=WAIT)
    second.stop()


def test_stop_wakes_a_blocked_read_and_releases_the_port(got: Got, pty: PtyScanner) -> None:
    scanner = reader(got, pty.link)
    assert scanner.wait_connected(timeout=WAIT)
    started = time.monotonic()
    scanner.stop(timeout=WAIT)
    assert time.monotonic() - started < 1.0 and not scanner.connected
    with serial.Serial(str(pty.link), exclusive=True, timeout=0):  # not locked any more
        pass


@settings(max_examples=25, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=64), max_size=8))
def test_any_bytes_through_the_port_leave_it_reading(tmp_path_factory: pytest.TempPathFactory,
                                                    chunks: list[bytes]) -> None:
    """Arbitrary bytes never stop the reader; a terminated code after them is read."""
    pty = PtyScanner(tmp_path_factory.mktemp("pty") / "link")
    got: Got = queue.Queue()
    scanner = reader(got, pty.link)
    try:
        assert scanner.wait_connected(timeout=WAIT)
        for chunk in chunks:
            pty.send(chunk)
        pty.send(b"\r" + CODE.encode() + b"\r")
        while (item := got.get(timeout=WAIT))[0] != CODE:
            assert item[0] and "\r" not in item[0] and "\n" not in item[0]
    finally:
        scanner.stop()
        pty.close()


# --- the daemon: config -> reader -> Engine.scan -> simulator ---------------------------


@pytest.fixture(name="sim")
def _sim(pki: TestPki) -> Iterator[Simulator]:
    sim = start_simulator(pki)
    yield sim
    sim.stop()


def test_the_daemon_reads_serial_scanners_into_the_one_pipeline(
    tmp_path: Path, sim: Simulator, pki: TestPki, pty: PtyScanner
) -> None:
    second = PtyScanner(tmp_path / "usb-Other_Scanner-if00", plugged=False)
    data = make_config(tmp_path, sim.url, pki, scanner={"kind": "serial", "device": str(pty.link)})
    data["scanners"] = [{"kind": "serial", "name": "fixed", "device": str(second.link),
                         "terminators": ["idle"]}]
    daemon = Daemon.build(config(data))
    daemon.start()
    try:
        front, fixed = daemon.readers
        assert front.wait_connected(timeout=WAIT)
        health = daemon.engine.health()
        assert health["scanner"]["connected"] and health["status"] == "degraded"
        assert "scanner.fixed: not connected" in " ".join(health["degraded"])
        sale, _ = daemon.engine.create_sale(100)
        pty.send(b"134567890123450009\r")
        deadline = time.monotonic() + 10
        while not (sale := daemon.engine.get(sale.id)).final and time.monotonic() < deadline:
            daemon.engine.wait_for_change(sale.id, sale.updated_at, deadline - time.monotonic())
        assert sale.state is State.PAID
        second.plug()
        assert fixed.wait_connected(timeout=WAIT)
        second.send(b"134567890123458888")  # no sale waiting: refused, shown, not queued
        assert fixed.wait_until(lambda state: state["codes"] == 1, WAIT)
        last = daemon.engine.health()["last_scan"]
        assert last["source"] == "scanner.fixed" and last["code"] == "1345…8888"
        assert not last["accepted"] and "no sale is waiting" in last["reason"]
        assert daemon.engine.health()["status"] == "ok"
    finally:
        daemon.stop()
        second.close()
    assert not front.connected and not fixed.connected


def test_the_serial_bench_runs_and_prints_its_table() -> None:
    """Smoke only (docs/benchmarks.md has the figures): no time is asserted."""
    root = Path(__file__).parents[2]
    done = subprocess.run([sys.executable, str(root / "bench" / "scan_latency_serial.py"),
                           "--quick"], cwd=root, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    for text in ("pty write of CR -> pay request at the simulator", "idle framing",
                 "baseline: pty write of CR -> SerialScanner on_code", "no verdict"):
        assert text in done.stdout, done.stdout


def test_serial_scanners_need_no_evdev() -> None:
    """A till with only a serial scanner (or a build without evdev) runs these tests too."""
    probe = ("import sys; import tests.shell.test_scanner_serial, posd.devices.scanners; "
             "print('evdev' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).parents[2])
    assert done.stdout.strip() == "False", done.stderr
