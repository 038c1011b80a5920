# SPDX-License-Identifier: MIT
"""Alipay for an ISV acting for the merchant (第三方应用授权; DESIGN §12, issue 15): the
merchant's ``app_auth_token`` (a private file) as a common parameter of every call, inside
the signature, and the service provider's PID as ``extend_params.sys_service_provider_id``.
Against the simulator playing an app that requires the token."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from posd.channels.alipay.client import Alipay
from posd.channels.alipay.config import AlipayConfig
from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.core.errors import ConfigError
from posd.core.money import Fen
from posd.core.refund import Refunded
from posd.core.sale import Closed, Paid
from tests.sandbox import ALIPAY_APP_ID, WECHAT, alipay_section, secret

TOKEN = "202612BB6f4c0a1f8d9e4b7c2a5d3e1f0b9c8X01"
PID = "2088102146225135"


@pytest.fixture(name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    sandbox = dataclasses.replace(alipay_keys.sandbox(ALIPAY_APP_ID), app_auth_token=TOKEN)
    with Simulator(wechat=WECHAT, alipay=sandbox, tls=pki.server_tls(),
                   min_reverse_delay_s=0.0, confirm_delay_s=0.5) as simulator:
        yield simulator


def client(sim: Simulator, pki: TestPki, keys: AlipayKeys, tmp_path: Path,
           token: str | None = TOKEN, **extra: str) -> Alipay:
    section = alipay_section(sim.url, keys, pki) | extra
    if token is not None:
        section["app_auth_token_file"] = str(secret(tmp_path / "app-auth-token", token + "\n"))
    return Alipay.from_config(AlipayConfig.model_validate(section))


def test_isv_calls_carry_the_merchants_token(sim: Simulator, pki: TestPki,
                                             alipay_keys: AlipayKeys, tmp_path: Path) -> None:
    isv = client(sim, pki, alipay_keys, tmp_path, sys_service_provider_id=PID)
    try:
        paid = isv.pay("S001T01261202000000000011", Fen(1250), "281234567890120000", "x")
        assert isinstance(paid, Paid), paid
        assert isinstance(isv.query("S001T01261202000000000011", Fen(1250)), Paid)
        assert isinstance(isv.refund("S001T01261202000000000011", "S001T01R2612020000000011",
                                     Fen(1250), Fen(300), "returned"), Refunded)
        isv.pay("S001T01261202000000000012", Fen(800), "281234567890120002", "x")
        assert isinstance(isv.reverse("S001T01261202000000000012"), Closed)
    finally:
        isv.close()


def test_without_the_token_the_isv_app_is_refused(sim: Simulator, pki: TestPki,
                                                  alipay_keys: AlipayKeys,
                                                  tmp_path: Path) -> None:
    plain = client(sim, pki, alipay_keys, tmp_path, token=None)
    try:
        answer = plain.pay("S001T01261202000000000013", Fen(100), "281234567890120000", "x")
        assert not isinstance(answer, Paid)
        assert "app-auth-token" in str(answer) or "授权令牌" in str(answer), answer
    finally:
        plain.close()


def test_the_pid_goes_into_extend_params(sim: Simulator, pki: TestPki,
                                         alipay_keys: AlipayKeys, tmp_path: Path) -> None:
    isv = client(sim, pki, alipay_keys, tmp_path, sys_service_provider_id=PID)
    biz = isv._pay_biz({"out_trade_no": "N", "store_id": ""})
    assert biz == {"out_trade_no": "N", "extend_params": {"sys_service_provider_id": PID}}
    assert "app_auth_token" in isv._params("alipay.trade.query", {})
    isv.close()


def test_bad_isv_settings_are_named(pki: TestPki, alipay_keys: AlipayKeys, sim: Simulator,
                                    tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="sys_service_provider_id"):
        AlipayConfig.model_validate(alipay_section(sim.url, alipay_keys, pki)
                                    | {"sys_service_provider_id": "1234"})
    with pytest.raises(ConfigError, match="app_auth_token_file"):
        client(sim, pki, alipay_keys, tmp_path, token="  ")
    loose = tmp_path / "loose-token"
    loose.write_text(TOKEN)
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="app_auth_token_file"):
        Alipay.from_config(AlipayConfig.model_validate(
            alipay_section(sim.url, alipay_keys, pki) | {"app_auth_token_file": str(loose)}))
