# SPDX-License-Identifier: MIT
"""Issue 13's "done when", as a person does it: `posd demo` (real processes), a day of
sandbox sales on both channels, a refund and a reversal through the `posd` CLI and the API,
then `posd reconcile --date D` says "all matched"; each kind of difference put into the
simulator's bill through `POST /_sim/bill` is then said exactly."""

from __future__ import annotations

import json
import subprocess
import time
import tomllib
from pathlib import Path
from typing import Any

import requests

from posd.core.reconcile import beijing_day
from tests.shell.test_demo import PAID, Demo, _free_port, children, posd  # noqa: F401
from tests.shell.test_reconcile import _not_near_midnight  # noqa: F401 - autouse fixture
from tests.waiting import wait_until_final

ALIPAY_PAID = "2812345678901234560000"
ALIPAY_DECLINED = "2812345678901234560003"
PAY_AT_REVERSE = "134567891234560007"  # paid at the moment of the reverse: money returned


def test_demo_day_all_matched_then_each_difference(
        tmp_path: Path, children: list[subprocess.Popen[Any]]) -> None:  # noqa: F811
    data, port = tmp_path / "demo", _free_port()
    demo = Demo(data, tmp_path / "demo.out", children)
    demo.start("--port", str(port))
    demo.wait_ready(port)
    api = f"http://127.0.0.1:{port}"
    token = (data / "api-token").read_text().strip()
    for code in (PAID, ALIPAY_PAID):
        assert posd("charge", "50.00", "--code", code, data=data).returncode == 0
        assert posd("charge", "12.00", "--code", code, data=data).returncode == 0
    assert posd("charge", "9.00", "--code", ALIPAY_DECLINED, data=data).returncode == 1
    # A part refund (Alipay: final at once; a WeChat refund is first asked about after a
    # minute, as WeChat advises, and tests/shell/test_reconcile.py reconciles those).
    refund = posd("refund", "3", "10.00", "--reason", "returned", data=data)
    assert refund.returncode == 0, refund.stdout + refund.stderr
    # a cashier cancels a sale in flight; the customer pays just as the reverse arrives
    made = requests.post(f"{api}/v1/sales", json={"amount": 800, "auth_code": PAY_AT_REVERSE},
                         headers={"Authorization": f"Bearer {token}"}, timeout=10).json()
    requests.post(f"{api}/v1/sales/{made['id']}/cancel", timeout=10,
                  headers={"Authorization": f"Bearer {token}"})
    final = wait_until_final(api, made, token=token, timeout=90)
    assert final["state"] == "reversed", final

    day = beijing_day(time.time()).isoformat()
    first = posd("reconcile", "--date", day, data=data)
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.rstrip().endswith("all matched")

    config = tomllib.loads((data / "config.toml").read_text())
    sim = config["channels"]["wechat"]["base_url"]
    ca = config["channels"]["wechat"]["ca_file"]

    def edit(body: dict[str, object]) -> dict[str, Any]:
        answer = requests.post(f"{sim}/_sim/bill", json=body, verify=ca, timeout=10)
        assert answer.status_code == 200, answer.text
        return answer.json()["edit"]  # type: ignore[no-any-return]

    sales = json.loads(posd("sales", "--json", data=data).stdout)
    numbers = {(s["channel"], s["amount"], s["state"]): s["out_trade_no"] for s in sales}
    only = edit({"channel": "wechat", "kind": "channel_only", "amount": 777})
    missing = edit({"channel": "alipay", "kind": "missing",
                    "out_trade_no": numbers[("alipay", 1200, "paid")]})
    other = edit({"channel": "wechat", "kind": "amount", "amount": 1300,
                  "out_trade_no": numbers[("wechat", 1200, "paid")]})
    second = posd("reconcile", "--date", day, "--format", "json", data=data)
    assert second.returncode == 1, second.stdout + second.stderr
    result = json.loads(second.stdout)
    found = sorted((d["class"], d["out_trade_no"], d["bill_amount"], d["money_taken"])
                   for r in result["reconciliations"] for d in r["result"]["differences"])
    assert found == sorted([
        ("channel_only", only["out_trade_no"], 777, True),
        ("posd_only", missing["out_trade_no"], None, False),
        ("amount_mismatch", other["out_trade_no"], 1300, False)])
    text = posd("reconcile", "--date", day, "--kept", data=data).stdout
    assert "3 difference(s) remain" in text and only["out_trade_no"] in text
    health = requests.get(f"{api}/v1/health", timeout=10).json()
    assert [t["out_trade_no"] for t in health["reconciliation"]["money_taken"]] == [
        only["out_trade_no"]]
    assert demo.terminate() == 0
