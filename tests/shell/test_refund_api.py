# SPDX-License-Identifier: MIT
"""Refunds and resolving through the real daemon's API and the `posd` CLI (DESIGN §3-4, §9):
only the manager token refunds and resolves (the cashier's gets 403 with a sentence),
Idempotency-Key replays, 404/409/422 with sentences, long-polls, lists, the sale's
``refunded_amount``, the refund slip, and `posd refund` / `posd refunds` / `posd resolve`."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.core.sale import State
from posd.daemon import Daemon
from tests.sandbox import config, make_config, secret, start_simulator, to_toml
from tests.shell.test_engine import code
from tests.shell.test_refunds import FAST_REFUND
from tests.waiting import TOKEN, wait_until_final

ROOT = Path(__file__).parents[2]
MANAGER = "manager-token-0123456789abcdef"


@dataclass
class Shop:
    url: str
    daemon: Daemon
    sim: Simulator
    receipts: io.StringIO
    config_path: Path

    def call(self, method: str, path: str, token: str = MANAGER, **kwargs: Any) -> requests.Response:
        return requests.request(method, self.url + path, timeout=15,
                                headers={"Authorization": f"Bearer {token}",
                                         **kwargs.pop("headers", {})}, **kwargs)

    def paid(self, channel: str = "alipay", amount: int = 5000, n: int = 0) -> dict[str, Any]:
        created = self.call("POST", "/v1/sales", token=TOKEN,
                            json={"amount": amount, "auth_code": code("0000", n, channel)})
        assert created.status_code == 201, created.text
        sale = wait_until_final(self.url, created.json())
        assert sale["state"] == "paid", sale
        return sale

    def refund_final(self, refund: dict[str, Any]) -> dict[str, Any]:
        for _ in range(20):
            if refund["final"]:
                return refund
            refund = self.call("GET", f"/v1/refunds/{refund['id']}",
                               params={"wait": 5}).json()
        raise AssertionError(f"refund not final: {refund}")


@pytest.fixture(name="shop")
def _shop(tmp_path: Path, pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Shop]:
    sim = start_simulator(pki, alipay=alipay_keys, refund_delay_s=0.5)
    data = make_config(tmp_path, sim.url, pki, alipay=alipay_keys, printer={"kind": "console"})
    yield from run_shop(tmp_path, sim, data)


def run_shop(tmp_path: Path, sim: Simulator, data: dict[str, Any]) -> Iterator[Shop]:
    """The daemon on config ``data`` (with the manager's token added, and written to
    ``config.toml`` for the CLI), fast refunds; stops it and ``sim`` afterwards."""
    data["api"]["manager_token_file"] = str(secret(tmp_path / "manager-token", MANAGER))
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    receipts = io.StringIO()
    daemon = Daemon.build(config(data), receipts_to=receipts,
                          refund_policies={"wechat": FAST_REFUND, "alipay": FAST_REFUND,
                                           "wechat_v3": FAST_REFUND})
    daemon.start()
    try:
        yield Shop(f"http://127.0.0.1:{daemon.api.port}", daemon, sim, receipts, path)
    finally:
        daemon.stop()
        sim.stop()


@pytest.mark.parametrize("channel", ["wechat", "alipay"])
def test_a_manager_refunds_part_of_a_sale_and_a_slip_prints(shop: Shop, channel: str) -> None:
    sale = shop.paid(channel)
    cashier = shop.call("POST", f"/v1/sales/{sale['id']}/refunds", token=TOKEN,
                        json={"amount": 1200, "reason": "returned a mug"})
    assert cashier.status_code == 403 and "manager's token" in cashier.json()["detail"]
    made = shop.call("POST", f"/v1/sales/{sale['id']}/refunds", json={
        "amount": 1200, "reason": "returned a mug"}, headers={"Idempotency-Key": "r-1"})
    assert made.status_code == 201, made.text
    assert made.headers["Location"] == f"/v1/refunds/{made.json()['id']}"
    again = shop.call("POST", f"/v1/sales/{sale['id']}/refunds", json={
        "amount": 1200, "reason": "returned a mug"}, headers={"Idempotency-Key": "r-1"})
    assert again.status_code == 200 and again.json()["id"] == made.json()["id"]
    refund = shop.refund_final(made.json())
    assert refund["state"] == "refunded" and refund["amount"] == 1200
    assert refund["sale_id"] == sale["id"] and refund["out_refund_no"]
    seen = shop.call("GET", f"/v1/sales/{sale['id']}", token=TOKEN).json()
    assert seen["refunded_amount"] == 1200 and seen["state"] == "paid"
    listed = shop.call("GET", "/v1/refunds", token=TOKEN, params={"sale_id": sale["id"]}).json()
    assert [r["id"] for r in listed["refunds"]] == [refund["id"]]
    slip = shop.receipts.getvalue()
    assert "REFUND" in slip and refund["out_refund_no"] in slip and "12.00" in slip
    trade = shop.sim.trade(sale["out_trade_no"], channel)
    assert trade is not None and len(trade["refunds"]) == 1  # type: ignore[arg-type]
    day = shop.call("GET", "/v1/reports/daily", token=TOKEN).json()
    totals = next(c for c in day["channels"] if c["channel"] == channel)
    assert totals["refunded"] == {"count": 1, "amount": 1200}
    assert totals["net"] == 5000 - 1200 and day["total"]["refunded"]["amount"] == 1200


def test_what_cannot_be_refunded_is_told_plainly(shop: Shop) -> None:
    sale = shop.paid()
    url = f"/v1/sales/{sale['id']}/refunds"
    too_much = shop.call("POST", url, json={"amount": 5001, "reason": "x"})
    assert too_much.status_code == 409 and "more than is left" in too_much.json()["detail"]
    no_reason = shop.call("POST", url, json={"amount": 100})
    assert no_reason.status_code == 422 and "reason" in no_reason.json()["detail"]
    float_amount = shop.call("POST", url, json={"amount": 12.5, "reason": "x"})
    assert float_amount.status_code == 422 and "integer number of fen" in float_amount.text
    missing = shop.call("POST", "/v1/sales/999999/refunds", json={"reason": "x"})
    assert missing.status_code == 404
    whole = shop.refund_final(shop.call("POST", url, json={"reason": "all of it"}).json())
    assert whole["amount"] == 5000 and whole["state"] == "refunded"
    done = shop.call("POST", url, json={"reason": "again"})
    assert done.status_code == 409 and "refunded in full" in done.json()["detail"]
    assert shop.call("GET", "/v1/refunds/999999").status_code == 404


def test_resolve_is_the_managers_and_only_for_sales_that_need_attention(shop: Shop) -> None:
    sale = shop.paid()
    url = f"/v1/sales/{sale['id']}/resolve"
    body = {"as": "reversed", "note": "checked in the portal"}
    assert shop.call("POST", url, token=TOKEN, json=body).status_code == 403
    not_stuck = shop.call("POST", url, json=body)
    assert not_stuck.status_code == 409 and "needs attention" in not_stuck.json()["detail"]
    store = shop.daemon.store
    store.save(replace(store.get(sale["id"]), state=State.NEEDS_ATTENTION))
    bad = shop.call("POST", url, json={"as": "declined", "note": "x"})
    assert bad.status_code == 422
    resolved = shop.call("POST", url, json=body)
    assert resolved.status_code == 200 and resolved.json()["state"] == "reversed"
    assert "Resolved by a manager" in resolved.json()["message"]


def _posd(shop: Shop, *args: str, token_file: Path | None = None) -> subprocess.CompletedProcess[str]:
    env_args = ["-c", str(shop.config_path)]
    return subprocess.run([sys.executable, "-m", "posd", *args, *env_args], capture_output=True,
                          text=True, timeout=90, cwd=ROOT, check=False,
                          stdin=subprocess.DEVNULL)


def test_the_cli_refunds_lists_and_resolves(shop: Shop, tmp_path: Path) -> None:
    sale = shop.paid("alipay", 3000)
    # The CLI talks to this daemon: point its config at the daemon's port.
    text = shop.config_path.read_text().replace('listen = "127.0.0.1:0"',
                                                f'listen = "127.0.0.1:{shop.daemon.api.port}"')
    shop.config_path.write_text(text)
    done = _posd(shop, "refund", str(sale["id"]), "10.00", "--reason", "returned", "--json")
    assert done.returncode == 0, done.stderr
    refund = json.loads(done.stdout)
    assert refund["state"] == "refunded" and refund["amount"] == 1000
    rest = _posd(shop, "refund", str(sale["id"]), "--reason", "the rest")
    assert rest.returncode == 0, rest.stderr
    assert "refunded" in rest.stdout and "20.00" in rest.stdout
    listed = _posd(shop, "refunds", "--json")
    assert listed.returncode == 0 and [r["amount"] for r in json.loads(listed.stdout)] == [1000, 2000]
    refused = _posd(shop, "refund", str(sale["id"]), "--reason", "more")
    assert refused.returncode != 0 and "refunded in full" in refused.stderr
    unstuck = _posd(shop, "resolve", str(sale["id"]), "--as", "paid", "--note", "x")
    assert unstuck.returncode != 0 and "needs attention" in unstuck.stderr
