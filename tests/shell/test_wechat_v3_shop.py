# SPDX-License-Identifier: MIT
"""Issue 15's "done when" for WeChat Pay v3, end to end through the real daemon and the
simulator: a shop configured as docs/wechat-v3.md says -- public-key mode, platform
certificates in partner (service-provider) mode, and both keys with v2 still enabled during
the move -- takes sales, a reversal and refunds; its day reconciles against the v3 bill; and
`posd doctor` passes on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from posd.channels.simulator import Simulator, TestPki
from posd.channels.wechat_v3.sandbox_keys import WechatV3Keys
from posd.core.zones import BEIJING
from posd.doctor import run_checks
from tests.sandbox import (
    SUB_MCHID, WECHAT, make_config, wechat_v3_sandbox, wechat_v3_section,
)
from tests.shell.test_engine import code
from tests.shell.test_refund_api import Shop, run_shop
from tests.waiting import TOKEN, wait_until_final

#: (posd's key mode, partner mode, v2 still enabled)
SETUPS = {
    "public-key": ("public_key", False, False),
    "partner-platform-certs": ("platform", True, False),
    "switch-with-v2": ("both", False, True),
}


@pytest.fixture(name="shop", params=list(SETUPS))
def _shop(request: pytest.FixtureRequest, tmp_path: Path, pki: TestPki,
          wechat_v3_keys: WechatV3Keys) -> Iterator[tuple[str, Shop]]:
    mode, partner, with_v2 = SETUPS[request.param]
    subs = frozenset({SUB_MCHID}) if partner else frozenset()
    sandbox = wechat_v3_sandbox(wechat_v3_keys, mode="both" if mode == "both" else mode,
                                sub_mchids=subs)
    sim = Simulator(wechat=WECHAT, tls=pki.server_tls(), min_reverse_delay_s=1.0,
                    confirm_delay_s=0.6, refund_delay_s=0.5,
                    sandboxes={"wechat_v3": sandbox}).start()
    data = make_config(tmp_path, sim.url, pki, wechat=with_v2)
    data["channels"]["wechat_v3"] = wechat_v3_section(sim.url, wechat_v3_keys, pki, mode=mode,
                                                      partner=partner)
    for shop in run_shop(tmp_path, sim, data):
        yield request.param, shop


def sale(shop: Shop, amount: int, auth_code: str) -> dict[str, Any]:
    made = shop.call("POST", "/v1/sales", token=TOKEN,
                     json={"amount": amount, "auth_code": auth_code})
    assert made.status_code == 201, made.text
    return wait_until_final(shop.url, made.json())


def test_a_v3_shop_sells_reverses_refunds_reconciles_and_passes_doctor(
        shop: tuple[str, Shop]) -> None:
    setup, shop = shop[0], shop[1]
    # a reversal: the customer never confirms and the cashier cancels; it takes WeChat's
    # 15 s, so it is started first and waited for at the end
    reversing = shop.call("POST", "/v1/sales", token=TOKEN,
                          json={"amount": 800, "auth_code": code("0002", 4)})
    assert reversing.status_code == 201, reversing.text
    assert shop.call("POST", f"/v1/sales/{reversing.json()['id']}/cancel",
                     token=TOKEN).status_code == 200
    paid = sale(shop, 5000, code("0000", 1))
    assert (paid["state"], paid["channel"]) == ("paid", "wechat_v3"), paid
    confirmed = sale(shop, 700, code("0001", 2))  # the customer confirms on the phone
    assert confirmed["state"] == "paid", confirmed
    declined = sale(shop, 300, code("0003", 3))
    assert declined["state"] == "declined" and "balance" in declined["message"], declined
    refund = shop.call("POST", f"/v1/sales/{paid['id']}/refunds",
                       json={"amount": 1200, "reason": "returned"})
    assert refund.status_code == 201, refund.text
    assert shop.refund_final(refund.json())["state"] == "refunded"
    slow = shop.call("POST", f"/v1/sales/{confirmed['id']}/refunds",  # 01: processing first
                     json={"amount": 201, "reason": "size"})
    assert shop.refund_final(slow.json())["state"] == "refunded"

    reversed_sale = wait_until_final(shop.url, reversing.json(), timeout=60)
    assert (reversed_sale["state"], reversed_sale["channel"]) == ("reversed", "wechat_v3")

    # the day against the v3 bill: every sale, reversal and refund matched
    today = datetime.now(BEIJING).date().isoformat()
    run = shop.call("POST", "/v1/reconciliations", json={"date": today, "channel": "wechat_v3"})
    assert run.status_code == 200, run.text
    (result,) = run.json()["reconciliations"]
    # (records within minutes of Beijing midnight wait for the next day's bill: "held")
    assert result["status"] in ("matched", "held"), result
    assert not result["result"]["differences"], result
    if setup == "switch-with-v2":  # one merchant account, one bill: v2's sales are in v3's
        again = shop.call("POST", "/v1/reconciliations", json={"date": today, "channel": "wechat"})
        assert again.status_code >= 400 and "reconciled here: wechat_v3" in again.text, again.text

    rows = {c.name: c for c in run_checks(shop.config_path)}
    for name in ("wechat_v3", "wechat_v3 set-up"):
        assert rows[name].result.value == "ok", rows[name]
    if setup == "partner-platform-certs":
        assert f"sub-merchant {SUB_MCHID}" in rows["wechat_v3 set-up"].detail
        assert rows["wechat_v3 platform certificate 1"].result.value == "ok"
    if setup == "switch-with-v2":
        assert rows["wechat"].result.value == "ok"  # v2 still there for its own old sales
    assert not [v for v in shop.sim.violations() if v["rule"] != "request_rejected"]
