# SPDX-License-Identifier: MIT
"""Reconciliation through the real daemon (DESIGN §4, §10): ``GET /v1/reconciliations`` for
either token, running a day and resolving a difference for the manager's only (403 with a
sentence for the cashier's), the money-taken item in ``/v1/health`` until it is resolved,
and ``posd reconcile --print`` printed by the daemon's print worker."""

from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout

from posd import cli
from posd.core.reconcile import beijing_day
from tests.shell.test_refund_api import Shop, _shop  # noqa: F401 - the fixture
from tests.shell.test_reconcile import _not_near_midnight  # noqa: F401 - autouse fixture
from tests.waiting import TOKEN


def test_run_list_health_and_resolve(shop: Shop) -> None:
    day = beijing_day(time.time()).isoformat()
    listed = shop.call("GET", "/v1/reconciliations", token=TOKEN)
    assert listed.status_code == 200 and listed.json() == {
        "verdict": "not reconciled yet", "reconciliations": []}
    denied = shop.call("POST", "/v1/reconciliations", token=TOKEN, json={"date": day})
    assert denied.status_code == 403 and "manager" in denied.json()["detail"]
    bad = shop.call("POST", "/v1/reconciliations", json={"date": "yesterday"})
    assert bad.status_code == 422
    shop.paid("alipay", 5000, 1)
    shop.paid("wechat", 3000, 2)
    ran = shop.call("POST", "/v1/reconciliations", json={"date": day})
    assert ran.status_code == 200, ran.text
    assert ran.json()["verdict"] == "all matched"
    assert {r["status"] for r in ran.json()["reconciliations"]} == {"matched"}
    health = shop.call("GET", "/v1/health").json()
    assert health["reconciliation"]["unresolved"] == 0
    assert not any(d.startswith("reconciliation") for d in health["degraded"])

    made = shop.sim.edit_bill("wechat", "channel_only", amount=1234)
    ran = shop.call("POST", "/v1/reconciliations", json={"date": day, "channel": "wechat"})
    assert ran.json()["verdict"] == "1 difference(s) remain"
    (rec,) = ran.json()["reconciliations"]
    (item,) = rec["result"]["differences"]
    assert (item["class"], item["out_trade_no"], item["money_taken"]) == (
        "channel_only", made["out_trade_no"], True)
    health = shop.call("GET", "/v1/health").json()
    assert health["status"] == "degraded"
    assert any("money taken" in d for d in health["degraded"] if d.startswith("reconciliation"))
    (taken,) = health["reconciliation"]["money_taken"]
    assert (taken["id"], taken["out_trade_no"], taken["channel_trade_no"], taken["amount"]) == (
        item["id"], made["out_trade_no"], made["channel_trade_no"], 1234)
    listed = shop.call("GET", "/v1/reconciliations", token=TOKEN, params={"date": day}).json()
    assert {r["channel"] for r in listed["reconciliations"]} == {"wechat", "alipay"}

    path = f"/v1/reconciliations/differences/{item['id']}/resolve"
    assert shop.call("POST", path, token=TOKEN, json={"note": "x"}).status_code == 403
    assert shop.call("POST", path, json={"note": ""}).status_code == 422
    done = shop.call("POST", path, json={"note": "refunded in the merchant platform"})
    assert done.status_code == 200 and done.json()["resolved_note"].startswith("refunded")
    again = shop.call("POST", path, json={"note": "again"})
    assert again.status_code == 409 and "resolved already" in again.json()["detail"]
    assert shop.call("POST", "/v1/reconciliations/differences/999/resolve",
                     json={"note": "x"}).status_code == 404
    health = shop.call("GET", "/v1/health").json()
    assert health["reconciliation"]["money_taken"] == []
    assert not any(d.startswith("reconciliation") for d in health["degraded"])

    # printed by the daemon's print worker (the console printer here)
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = cli.main(["reconcile", "-c", str(shop.config_path), "--date", day, "--kept",
                           "--print"])
    assert status == 0, err.getvalue()
    assert "printed" in out.getvalue()
    assert shop.receipts.getvalue().count(made["out_trade_no"]) >= 1
