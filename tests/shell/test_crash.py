# SPDX-License-Identifier: MIT
"""Crash safety: the real daemon (`posd run`, a separate process) is killed with SIGKILL at
random moments while a register drives many sales through its API, and restarted each time.
Afterwards the simulator's ledger and posd's store must agree:

- no trade paid at the channel without a `paid` (or, if refunded, `reversed`) sale;
- no `paid` sale without a paid trade;
- no order paid twice;
- nothing left non-final, and no protocol violation (e.g. a reverse within 15 s).

The register's customers alternate between WeChat and Alipay codes, so both channels (and
their reverse / cancel) go through the same kills in the same run. Real WeChat timing (15 s
before a reverse, 16 s deadline), so this test takes about a minute.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from tests.waiting import wait_until_up
from tests.sandbox import make_config, start_simulator, to_toml

pytestmark = pytest.mark.slow

TOKEN = "test-token-0123456789abcdef"
FINAL = {"paid", "declined", "reversed", "cancelled", "needs_attention"}
#: The mix of customers: mostly pay at once; some confirm later, fail, error or hang.
ENDINGS = ["0000"] * 10 + ["0001"] * 4 + ["0003", "0004", "0005", "0006", "0002", "0007", "0008"]
#: 18-digit codes by channel: WeChat 10-15, Alipay 25-30 (+ 12 digits + the ending)
PREFIXES = ("13", "28")


class Daemon:
    """`posd run` in a child process, killed and restarted at will."""

    def __init__(self, config_path: Path, port: int, log: Path) -> None:
        self.config_path, self.port, self.log = config_path, port, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "posd", "run", "-c", str(self.config_path)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            )
        wait_until_up(self.url, self.proc, timeout=20,
                      output=lambda: self.log.read_text()[-2000:])

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    sim = start_simulator(pki, alipay=alipay_keys, min_reverse_delay_s=15.0,
                          confirm_delay_s=2.0, hang_s=2.0)
    yield sim
    sim.stop()


def _post_sale(url: str, body: dict[str, Any], key: str, stop: threading.Event) -> dict[str, Any]:
    """The register retries the same request (same Idempotency-Key) until posd answers."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Idempotency-Key": key}
    while not stop.is_set():
        try:
            r = requests.post(f"{url}/v1/sales", json=body, headers=headers, timeout=(1, 5))
        except requests.RequestException:
            stop.wait(0.1)
            continue
        assert r.status_code in (200, 201), r.text
        return dict(r.json())
    raise AssertionError("gave up")


def _all_sales(url: str) -> list[dict[str, Any]]:
    r = requests.get(f"{url}/v1/sales", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=5)
    r.raise_for_status()
    return list(r.json()["sales"])


def test_sigkill_at_random_moments_loses_nothing(tmp_path: Path, sim: Simulator,
                                                 pki: TestPki, alipay_keys: AlipayKeys) -> None:
    rng = random.Random(int(os.environ.get("POSD_CRASH_SEED", "20261123")))
    port = _free_port()
    data = make_config(tmp_path, sim.url, pki, api_port=port, read_timeout_s=1.0,
                       alipay=alipay_keys, payment={"deadline_s": 16})
    config_path = tmp_path / "config.toml"
    config_path.write_text(to_toml(data))
    daemon = Daemon(config_path, port, tmp_path / "posd.log")
    daemon.start()

    stop = threading.Event()
    orders: dict[str, str] = {}

    def register() -> None:
        for n in range(48):
            ending = ENDINGS[n % len(ENDINGS)]
            code = f"{PREFIXES[n % 2]}{n:012d}{ending}"
            order = f"R{n:03d}"
            orders[order] = code
            _post_sale(daemon.url, {"amount": 100 + n, "order_ref": order, "auth_code": code},
                       str(uuid.uuid4()), stop)
            stop.wait(rng.uniform(0.05, 0.4))

    driver = threading.Thread(target=register, daemon=True)
    driver.start()
    kills = 0
    while driver.is_alive():
        driver.join(rng.uniform(0.3, 2.0))
        daemon.kill()
        kills += 1
        daemon.start()
    stop.set()

    # Let every sale settle (reverses need 15 s after their pay call), with restarts too.
    deadline = time.monotonic() + 90
    sales = _all_sales(daemon.url)
    while any(s["state"] not in FINAL for s in sales) and time.monotonic() < deadline:
        stop.wait(0.5)
        sales = _all_sales(daemon.url)
    assert daemon.terminate() == 0

    assert kills >= 5
    unresolved = [s for s in sales if s["state"] not in FINAL]
    assert not unresolved, unresolved
    for v in sim.violations():
        print("VIOLATION", v, sim.trade(str(v["out_trade_no"]), str(v["channel"])))
    assert not sim.violations()
    assert {s["channel"] for s in sales} == {"wechat", "alipay"}
    assert_ledger_agrees(sim, sales, set(orders))


def assert_ledger_agrees(sim: Simulator, sales: list[dict[str, Any]], orders: set[str]) -> None:
    """The simulator's ledger and posd's sales agree: no trade paid without a paid (or, if
    the channel refunded it, reversed) sale, no paid sale without a paid trade, no order
    paid twice, every order the register sent there."""
    by_no = {s["out_trade_no"]: s for s in sales}
    for trade in sim.ledger():
        sale = by_no.get(str(trade["out_trade_no"]))
        assert sale is not None, f"the channel has a trade posd does not know: {trade}"
        if trade["state"] == "paid":
            assert sale["state"] == "paid", (trade, sale)
        elif trade["state"] == "refunded":
            assert sale["state"] == "reversed", (trade, sale)
    for sale in sales:
        if sale["state"] == "paid":
            trade = sim.trade(sale["out_trade_no"], sale["channel"])
            assert trade is not None and trade["state"] == "paid", sale
    paid_orders = [s["order_ref"] for s in sales if s["state"] == "paid"]
    assert len(paid_orders) == len(set(paid_orders))
    assert {s["order_ref"] for s in sales} == orders  # every order the register sent
