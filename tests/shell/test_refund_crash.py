# SPDX-License-Identifier: MIT
"""A refund survives SIGKILL of the real daemon between its write-ahead and its answer: after
the restart the same refund (same number) is asked again and ends refunded, with exactly one
refund at the channel, and the ledger and the store agree (DESIGN §9 rule 1)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from tests.sandbox import make_config, secret, start_simulator, to_toml
from tests.shell.test_crash import Daemon, _free_port
from tests.waiting import TOKEN, wait_until_final

MANAGER = "manager-token-0123456789abcdef"


@pytest.fixture(name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    sim = start_simulator(pki, alipay=alipay_keys, hang_s=3.0)
    yield sim
    sim.stop()


def _refunds_at_channel(sim: Simulator, out_trade_no: str) -> list[dict[str, object]]:
    trade = sim.trade(out_trade_no, "alipay")
    return list(trade["refunds"]) if trade else []  # type: ignore[arg-type]


def test_sigkill_while_a_refund_hangs_makes_neither_two_refunds_nor_none(
        tmp_path: Path, sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys) -> None:
    port = _free_port()
    data = make_config(tmp_path, sim.url, pki, api_port=port, read_timeout_s=1.0,
                       alipay=alipay_keys, wechat=False)
    data["api"]["manager_token_file"] = str(secret(tmp_path / "manager-token", MANAGER))
    config_path = tmp_path / "config.toml"
    config_path.write_text(to_toml(data))
    daemon = Daemon(config_path, port, tmp_path / "posd.log")
    daemon.start()
    manager = {"Authorization": f"Bearer {MANAGER}"}
    try:
        created = requests.post(f"{daemon.url}/v1/sales", timeout=10,
                                headers={"Authorization": f"Bearer {TOKEN}"},
                                json={"amount": 5000, "auth_code": "281234567890120000"})
        sale = wait_until_final(daemon.url, created.json())
        assert sale["state"] == "paid"
        # 06: the refund is made at the channel, its answer hangs past the read timeout.
        refund = requests.post(f"{daemon.url}/v1/sales/{sale['id']}/refunds", timeout=10,
                               headers=manager, json={"amount": 1206, "reason": "returned"}).json()
        pause = threading.Event()  # never set: a bounded pause while the ledger catches up
        for _ in range(200):
            if _refunds_at_channel(sim, sale["out_trade_no"]):
                break
            pause.wait(0.02)
        assert _refunds_at_channel(sim, sale["out_trade_no"]), "the refund never reached it"
        daemon.kill()  # the answer is still hanging: posd has only its write-ahead record
        daemon.start()
        for _ in range(30):
            refund = requests.get(f"{daemon.url}/v1/refunds/{refund['id']}", timeout=15,
                                  params={"wait": 5}, headers=manager).json()
            if refund["final"]:
                break
        assert refund["state"] == "refunded", refund
        at_channel = _refunds_at_channel(sim, sale["out_trade_no"])
        assert [e["out_refund_no"] for e in at_channel] == [refund["out_refund_no"]]
        assert at_channel[0]["amount"] == 1206 and at_channel[0]["requests"] >= 2
        stored = requests.get(f"{daemon.url}/v1/refunds", params={"sale_id": sale["id"]},
                              headers=manager, timeout=10).json()["refunds"]
        assert len(stored) == 1
        seen = requests.get(f"{daemon.url}/v1/sales/{sale['id']}", headers=manager,
                            timeout=10).json()
        assert seen["refunded_amount"] == 1206
        assert sim.violations() == []
    finally:
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.terminate()
