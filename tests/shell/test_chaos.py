# SPDX-License-Identifier: MIT
"""Chaos (issue 16): the real daemon (`posd run`) and the real HQ receiver (`posd hq serve`),
each SIGKILLed at random moments and restarted, while a register drives sales AND a manager
asks for refunds through the API, and the channel simulator gives ~30 % of its requests a
random transport fault (drops, hangs, 5xx, garbage, bad signatures, answers about another
trade; half of them after the ledger saw the request). Then the faults stop, everything
settles, and three records of the same money are compared:

- the simulator's ledger and posd's store: no trade paid without a paid (or reversed, if
  the channel refunded it) sale, no paid sale without a paid trade, no order paid twice;
  every refund the channel made is a refunded refund in posd and the other way round, each
  refund at the channel once, never more than the payment;
- posd's store and the receiver's database: every final sale once, in its final state,
  every refunded refund once;
- nothing left non-final, no protocol violation, the outbox empty.

Bounded in `make test` (12 sales, refunds of three Alipay ones, under two minutes); ``POSD_CHAOS_SALES=N`` runs longer
(docs/testing.md records a long run), ``POSD_CHAOS_SEED`` picks the randomness.
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from posd.channels.simulator import AlipayKeys, TestPki
from tests.sandbox import make_config, secret, start_simulator, to_toml
from tests.shell.test_crash import Daemon, _free_port, assert_ledger_agrees
from tests.waiting import TOKEN

pytestmark = pytest.mark.slow

MIN_KILLS = 8
MANAGER = "manager-token-0123456789abcdef"
HQ_TOKEN = "hq-chaos-token-0123456789abcdef"
SALE_FINAL = {"paid", "declined", "reversed", "cancelled", "needs_attention"}
#: the sandbox endings the register's codes end in, in turn (sale n takes ENDINGS[n % 17]):
#: the bounded run's 12 sales meet every one, and three Alipay "0000" sales get refunds
ENDINGS = ["0000", "0000", "0003", "0000", "0005", "0001", "0006", "0000", "0002", "0007",
           "0008", "0000", "0001", "0000", "0001", "0000", "0000"]
PREFIXES = ("13", "28")  # WeChat, Alipay
#: refund amounts by their last two digits (the simulator's refund endings): refunded at
#: once, processing first, "system error" although it happened
REFUND_AMOUNTS = (50, 201, 205)


class Receiver:
    """`posd hq serve` on a fixed port (the daemon's hq.url), killed and restarted at will."""

    def __init__(self, db: Path, token_file: Path, port: int, log: Path) -> None:
        self.db, self.token_file, self.port, self.log = db, token_file, port, log
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        with self.log.open("a") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "posd", "hq", "serve", "--listen",
                 f"127.0.0.1:{self.port}", "--db", str(self.db), "--token-file",
                 str(self.token_file)], stdout=subprocess.PIPE, stderr=log,
                stdin=subprocess.DEVNULL, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert "listening on" in line, line + self.log.read_text()[-2000:]

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


def _call(method: str, url: str, token: str, stop: threading.Event, **kwargs: Any) -> Any:
    """The same request (same Idempotency-Key) again until posd answers."""
    headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
    while not stop.is_set():
        try:
            got = requests.request(method, url, headers=headers, timeout=(1, 8), **kwargs)
        except requests.RequestException:
            stop.wait(0.2)
            continue
        if got.status_code >= 500:
            stop.wait(0.2)
            continue
        return got
    raise AssertionError("gave up")


def _get(url: str, token: str = TOKEN) -> Any:
    got = requests.get(url, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    got.raise_for_status()
    return got.json()


def refunds_due(db: Path) -> float | None:
    """When (wall clock) the last step posd has scheduled for an open refund falls due, read
    from its own store (read-only; the API does not show ``next_at``)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute("select max(next_at) from refunds where next_at is not null and "
                           "state = 'refunding'").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return None if row is None or row[0] is None else float(row[0])


def test_chaos_sales_refunds_kills_and_faults_lose_nothing(
        tmp_path: Path, pki: TestPki, alipay_keys: AlipayKeys) -> None:
    seed = int(os.environ.get("POSD_CHAOS_SEED", "20261202"))
    long_run = "POSD_CHAOS_SALES" in os.environ
    sales_wanted = int(os.environ.get("POSD_CHAOS_SALES", "12"))
    rng = random.Random(seed)
    sim = start_simulator(pki, alipay=alipay_keys, min_reverse_delay_s=15.0,
                          confirm_delay_s=2.0, hang_s=2.0, refund_delay_s=1.0)
    hq_port, port = _free_port(), _free_port()
    hq_token = secret(tmp_path / "hq-token", HQ_TOKEN)
    receiver = Receiver(tmp_path / "hq.db", hq_token, hq_port, tmp_path / "hq.log")
    receiver.start()
    data = make_config(tmp_path, sim.url, pki, api_port=port, read_timeout_s=1.0,
                       alipay=alipay_keys, payment={"deadline_s": 16},
                       hq={"url": f"http://127.0.0.1:{hq_port}", "token_file": str(hq_token),
                           "interval_s": 1.0, "backoff_initial_s": 0.5, "backoff_max_s": 2.0,
                           "connect_timeout_s": 1.0, "read_timeout_s": 5.0})
    data["api"]["manager_token_file"] = str(secret(tmp_path / "manager-token", MANAGER))
    config_path = tmp_path / "config.toml"
    config_path.write_text(to_toml(data))
    daemon = Daemon(config_path, port, tmp_path / "posd.log")
    daemon.start()
    sim.set_chaos(0.3, seed=seed)

    stop = threading.Event()
    orders: dict[str, str] = {}
    asked_refunds: list[tuple[int, int]] = []  # (sale id, amount) the manager asked for

    failures: list[BaseException] = []

    def register() -> None:
        try:
            sell()
        except BaseException as err:  # the test fails with it below
            failures.append(err)
            raise

    def sell() -> None:
        for n in range(sales_wanted):
            ending = ENDINGS[n % len(ENDINGS)]
            code = f"{PREFIXES[n % 2]}{n:012d}{ending}"
            order = f"R{n:04d}"
            orders[order] = code
            made = _call("POST", f"{daemon.url}/v1/sales", TOKEN, stop,
                         json={"amount": 1000 + n, "order_ref": order, "auth_code": code},
                         headers={"Idempotency-Key": str(uuid.uuid4())})
            assert made.status_code in (200, 201), made.text
            # The manager refunds part of some paid sales: Alipay's in the bounded run (its
            # first refund query comes after 10 s; WeChat's after 60), both in a long run.
            if ending == "0000" and n % 3 != 2 and (long_run or code.startswith("28")):
                sale = made.json()
                while sale["state"] not in SALE_FINAL:
                    sale = _call("GET", f"{daemon.url}/v1/sales/{sale['id']}", TOKEN, stop,
                                 params={"wait": 5}).json()
                if sale["state"] == "paid":
                    amount = REFUND_AMOUNTS[n % len(REFUND_AMOUNTS)]
                    asked = _call("POST", f"{daemon.url}/v1/sales/{sale['id']}/refunds",
                                  MANAGER, stop, json={"amount": amount, "reason": "chaos"},
                                  headers={"Idempotency-Key": f"refund-{n}"})
                    assert asked.status_code in (200, 201), asked.text
                    asked_refunds.append((sale["id"], amount))
            stop.wait(rng.uniform(0.05, 0.3))

    driver = threading.Thread(target=register, daemon=True)
    driver.start()
    kills = receiver_kills = 0
    try:
        # kills while the register sells, and on into the settling of what it left (the
        # reversals and refunds still running), at least MIN_KILLS of them
        while driver.is_alive() or kills < MIN_KILLS:
            driver.join(rng.uniform(0.3, 2.0))
            daemon.kill()
            kills += 1
            if rng.random() < 0.3:
                receiver.kill()
                receiver_kills += 1
                receiver.start()
            daemon.start()
        stop.set()

        # The faults stop; every sale, refund and HQ record settles (with a restart or two).
        sim.set_chaos(0.0)
        # Long enough for what posd has scheduled: a refund whose queries met faults asks
        # again later and later (WeChat's policy: 60, 120, 300, 600 s, ...; the long run
        # refunds WeChat sales too), so the wait follows the refunds' own next_at.
        started_settling = time.monotonic()
        deadline = started_settling + 240
        settled = threading.Event()  # never set: the pause between polls below
        while time.monotonic() < deadline:
            sales = _get(f"{daemon.url}/v1/sales")["sales"]
            refunds = _get(f"{daemon.url}/v1/refunds", MANAGER)["refunds"]
            backlog = _get(f"{daemon.url}/v1/health")["hq_backlog"]["count"]
            if all(s["state"] in SALE_FINAL for s in sales) and all(
                    r["final"] for r in refunds) and backlog == 0:
                break
            due = refunds_due(tmp_path / "posd.db")
            if due is not None:  # a minute after the last refund query posd has scheduled
                deadline = min(max(deadline, time.monotonic() + due - time.time() + 60),
                               started_settling + 3600)
            settled.wait(0.5)  # a pause between polls of posd's own state
        assert daemon.terminate() == 0
    finally:
        stop.set()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        receiver.kill()
        sim.stop()
    print(f"chaos: {len(orders)} sales, {len(asked_refunds)} refunds, {kills} daemon kills, "
          f"{receiver_kills} receiver kills, seed {seed}")

    assert not failures, failures
    assert len(orders) == sales_wanted
    assert kills >= MIN_KILLS
    assert not [s for s in sales if s["state"] not in SALE_FINAL]
    assert not [r for r in refunds if not r["final"]]
    assert backlog == 0
    assert not sim.violations(), sim.violations()

    # the ledger and posd's store
    assert_ledger_agrees(sim, sales, set(orders))
    ledger = sim.ledger()

    # refunds: one posd refund per request, each at the channel once, states agreeing
    assert len(refunds) == len(asked_refunds)
    at_channel = {str(r["out_refund_no"]): (trade, r) for trade in ledger
                  for r in trade["refunds"]}  # type: ignore[attr-defined]
    assert len(at_channel) == sum(len(t["refunds"]) for t in ledger)  # type: ignore[arg-type]
    for refund in refunds:
        found = at_channel.get(refund["out_refund_no"])
        if refund["state"] == "refunded":
            assert found is not None and found[1]["status"] == "success", refund
        elif refund["state"] == "needs_attention":
            assert found is not None, refund
        else:  # refund_failed: nothing moved
            assert found is None or found[1]["status"] not in ("success", "processing"), refund
    posd_refund_nos = {r["out_refund_no"] for r in refunds}
    for number, (trade, entry) in at_channel.items():
        assert number in posd_refund_nos, f"a refund posd does not know: {entry}"
        assert sum(int(r["amount"]) for r in trade["refunds"]) <= int(trade["amount"])

    # posd's store and the receiver's database
    hq = sqlite3.connect(tmp_path / "hq.db")
    try:
        hq_sales = {no: state for no, state in hq.execute(
            "select out_trade_no, state from sales")}
        hq_refunded = {rid for (rid,) in hq.execute(
            "select record_id from records where type = 'refund' and record_id like "
            "'%:refunded'")}
        copies = hq.execute("select count(*), count(distinct record_id) from records").fetchone()
    finally:
        hq.close()
    assert copies[0] == copies[1]
    assert hq_sales == {s["out_trade_no"]: s["state"] for s in sales}
    refunded = [r for r in refunds if r["state"] == "refunded"]
    assert len(hq_refunded) == len(refunded)
    assert all(any(r["out_refund_no"] in rid for rid in hq_refunded) for r in refunded)
