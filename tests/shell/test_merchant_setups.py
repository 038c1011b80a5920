# SPDX-License-Identifier: MIT
"""Issue 15's "done when" for the set-ups built so far, end to end: a shop signed up through
a WeChat service provider (sub_mch_id) and an Alipay ISV app in certificate mode (the
merchant's app_auth_token, the ISV's PID), configured as their docs sections say, takes a sale
on each channel, a reversal and a refund through the real daemon and the simulator, and
`posd doctor` passes on it."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posd.channels.alipay.simulator import SandboxCerts
from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.core import alipay_certs
from posd.doctor import run_checks
from tests.sandbox import ALIPAY_APP_ID, WECHAT, make_config, secret
from tests.shell.test_alipay_certs import NOW, Certs, _certs  # noqa: F401 - the fixture
from tests.shell.test_engine import code
from tests.shell.test_refund_api import Shop, run_shop
from tests.waiting import TOKEN, wait_until_final

AUTH_TOKEN = "202612BB6f4c0a1f8d9e4b7c2a5d3e1f0b9c8X01"


@pytest.fixture(name="shop")
def _shop(tmp_path: Path, pki: TestPki, alipay_keys: AlipayKeys,
          certs: Certs) -> Iterator[Shop]:
    mode = alipay_certs.cert_mode(certs.app.read_bytes(), certs.alipay.read_bytes(),
                                  certs.root.read_bytes(), NOW)
    sandbox = dataclasses.replace(
        alipay_keys.sandbox(ALIPAY_APP_ID), app_auth_token=AUTH_TOKEN,
        certs=SandboxCerts(mode.app_cert_sn, mode.alipay_root_cert_sn, mode.alipay_cert_sn))
    sim = Simulator(wechat=WECHAT, alipay=sandbox, tls=pki.server_tls(),
                    min_reverse_delay_s=1.0, confirm_delay_s=0.6, refund_delay_s=0.5).start()
    data = make_config(tmp_path, sim.url, pki, alipay=alipay_keys)
    data["channels"]["wechat"] |= {"sub_mch_id": "1900000109"}
    alipay = data["channels"]["alipay"]
    del alipay["alipay_public_key_file"]
    alipay |= {"app_cert_file": str(certs.app), "alipay_cert_file": str(certs.alipay),
               "alipay_root_cert_file": str(certs.root),
               "app_auth_token_file": str(secret(tmp_path / "app-auth-token", AUTH_TOKEN)),
               "sys_service_provider_id": "2088102146225135"}
    yield from run_shop(tmp_path, sim, data)


def sale(shop: Shop, amount: int, auth_code: str) -> dict[str, Any]:
    made = shop.call("POST", "/v1/sales", token=TOKEN,
                     json={"amount": amount, "auth_code": auth_code})
    assert made.status_code == 201, made.text
    return wait_until_final(shop.url, made.json())


def test_service_provider_and_isv_certificate_shop_end_to_end(shop: Shop) -> None:
    for n, channel in enumerate(("wechat", "alipay")):
        paid = sale(shop, 5000, code("0000", 1 + n, channel))
        assert (paid["state"], paid["channel"]) == ("paid", channel), paid
        # a reversal: the customer never confirms and the cashier cancels
        made = shop.call("POST", "/v1/sales", token=TOKEN,
                         json={"amount": 800, "auth_code": code("0002", 3 + n, channel)})
        shop.call("POST", f"/v1/sales/{made.json()['id']}/cancel", token=TOKEN)
        assert wait_until_final(shop.url, made.json(), timeout=60)["state"] == "reversed"
        refund = shop.call("POST", f"/v1/sales/{paid['id']}/refunds",
                           json={"amount": 1200, "reason": "returned"})
        assert refund.status_code == 201, refund.text
        done = shop.refund_final(refund.json())
        assert done["state"] == "refunded", done
    rows = {c.name: c for c in run_checks(shop.config_path)}
    for name in ("wechat", "alipay", "wechat set-up", "alipay set-up"):
        assert rows[name].result.value == "ok", rows[name]
    assert "sub-merchant 1900000109" in rows["wechat set-up"].detail
    assert "ISV app" in rows["alipay set-up"].detail
    assert "certificate mode" in rows["alipay set-up"].detail
