# SPDX-License-Identifier: MIT
"""The simulator's fixes from the audit: the ledger kept on disk, a pay that reaches the
ledger late, latency after processing, and no traceback after a dropped connection."""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

import pytest
import requests

from posd.channels.simulator import Simulator
from tests.sandbox import Clock
from tests.shell.test_simulator import MICROPAY, SANDBOX, code, err, pay, query, sim, state

__all__ = ["sim"]  # the fixture, shared with test_simulator


def test_the_ledger_survives_a_restart(tmp_path: Path, clock: Clock) -> None:
    """posd demo restarts the simulator with the daemon: a resumed sale must still find its
    trade (it used to be "no such trade", and the sale ended as if nothing was taken)."""
    ledger = tmp_path / "simulator-ledger.json"
    with Simulator(wechat=SANDBOX, clock=clock, ledger_file=ledger) as first:
        assert pay(first, code("1234"))["result_code"] == "SUCCESS"
        before = first.ledger()
    assert json.loads(ledger.read_text())["version"] == 1
    assert code("1234") not in ledger.read_text()  # masked there too
    with Simulator(wechat=SANDBOX, clock=clock, ledger_file=ledger) as second:
        assert second.ledger() == before
        assert state(query(second)) == "SUCCESS"


def test_an_unreadable_ledger_file_starts_empty(tmp_path: Path, clock: Clock,
                                                caplog: pytest.LogCaptureFixture) -> None:
    ledger = tmp_path / "simulator-ledger.json"
    ledger.write_text("{not json")
    with Simulator(wechat=SANDBOX, clock=clock, ledger_file=ledger) as sim:
        assert sim.ledger() == []
    assert "unreadable" in caplog.text


def test_late_pay_reaches_the_ledger_after_the_reset(sim: Simulator) -> None:
    sim.add_fault("late", path=MICROPAY, seconds=0.3)
    with pytest.raises(requests.ConnectionError):
        pay(sim, code("1234"))
    assert err(query(sim)) == "ORDERNOTEXIST"  # not there yet
    arrived = threading.Event()
    for _ in range(50):
        if sim.ledger():
            break
        arrived.wait(0.05)
    assert state(query(sim)) == "SUCCESS"


def test_latency_with_process_reaches_the_ledger_before_the_answer(sim: Simulator) -> None:
    """docs/simulator.md: a latency fault with ``process`` (the default) lets the request
    reach the ledger first; only the answer is slow (it used to delay both)."""
    sim.add_fault("latency", path=MICROPAY, seconds=1.0)
    done = threading.Event()
    answer: list[dict[str, str]] = []
    thread = threading.Thread(target=lambda: (answer.append(pay(sim, code("1234"))), done.set()))
    thread.start()
    seen = False
    for _ in range(40):
        if sim.ledger():
            seen = not done.is_set()
            break
        done.wait(0.02)
    thread.join(5)
    assert seen, "the trade appeared only with the answer"
    assert answer and answer[0]["result_code"] == "SUCCESS"


def test_a_dropped_connection_logs_no_traceback(sim: Simulator,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    sim.add_fault("drop", path=MICROPAY)
    with pytest.raises(requests.ConnectionError):
        pay(sim, code("1234"))
    assert state(query(sim)) == "SUCCESS"  # the server thread is fine, the next call too
    assert "I/O operation on closed file" not in caplog.text
    assert "Traceback" not in caplog.text
