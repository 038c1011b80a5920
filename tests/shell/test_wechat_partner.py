# SPDX-License-Identifier: MIT
"""WeChat Pay v2 set-ups beyond a direct merchant (DESIGN §12, issue 15, part 1): the
service-provider mode (服务商: ``sub_mch_id``/``sub_appid`` in every call, inside its
signature, echoed in the answers), the backup host only after a connect error, and
``spbill_create_ip``. Against the simulator, which checks every request's signature over all
its fields, and with wechatpy as an independent signer."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import ValidationError

from posd.channels.simulator import Simulator, TestPki
from posd.channels.wechat import client as wechat_client
from posd.channels.wechat.client import WechatPay
from posd.channels.wechat.config import WechatConfig
from posd.core import wechat_wire as wire
from posd.core.money import Fen
from posd.core.bills import parse_wechat
from posd.core.reconcile import beijing_day
from posd.core.refund import Accepted, Refunded
from posd.core.sale import Closed, Paid, Unknown
from tests.sandbox import WECHAT, Clock

SUB_MCH_ID = "1900000109"
SUB_APPID = "wx8888888888888888"


def code(ending: str, n: int = 0) -> str:
    return f"1345678901234{n}{ending}"


def settings(sim_url: str, pki: TestPki, **extra: Any) -> WechatConfig:
    return WechatConfig.model_validate({
        "base_url": sim_url, "appid": WECHAT.appid, "mch_id": WECHAT.mch_id,
        "api_key_file": "/nonexistent", "cert_file": pki.client_cert_file,
        "key_file": pki.client_key_file, "ca_file": pki.ca_cert_file,
        "connect_timeout_s": 1.0, "read_timeout_s": 0.5, **extra})


@pytest.fixture(name="sim")
def _sim(pki: TestPki, clock: Clock) -> Iterator[Simulator]:
    with Simulator(wechat=WECHAT, tls=pki.server_tls(), clock=clock, hang_s=1.5,
                   min_reverse_delay_s=15.0, confirm_delay_s=2.0) as simulator:
        yield simulator
        assert [v["rule"] for v in simulator.violations()] == []


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])  # nothing listens once it is closed


def test_service_provider_mode_pays_reverses_refunds_and_bills(
        sim: Simulator, pki: TestPki, clock: Clock) -> None:
    client = WechatPay(settings(sim.url, pki, sub_mch_id=SUB_MCH_ID, sub_appid=SUB_APPID),
                       api_key=WECHAT.api_key)
    try:
        paid = client.pay("S001T01261202000000000001", Fen(1250), code("0000"), "coffee")
        assert isinstance(paid, Paid) and paid.amount == 1250
        assert isinstance(client.query("S001T01261202000000000001", Fen(1250)), Paid)
        refund = client.refund("S001T01261202000000000001", "S001T01R26120200000000001",
                               Fen(1250), Fen(200), "returned")
        assert isinstance(refund, Accepted | Refunded), refund
        assert isinstance(client.refund_query("S001T01261202000000000001",
                                              "S001T01R26120200000000001"), Refunded)
        client.pay("S001T01261202000000000002", Fen(800), code("0002", 1), "tea")
        clock.now += 16  # WeChat forbids a reverse within 15 s of the pay
        assert isinstance(client.reverse("S001T01261202000000000002"), Closed)
        bill = client.download_bill(beijing_day(clock.now))
        assert isinstance(bill, bytes), bill
        numbers = {r.out_trade_no for r in parse_wechat(bill, beijing_day(clock.now)).rows}
        assert "S001T01261202000000000001" in numbers
    finally:
        client.close()


def test_an_answer_for_another_sub_merchant_is_not_trusted(sim: Simulator,
                                                           pki: TestPki) -> None:
    client = WechatPay(settings(sim.url, pki, sub_mch_id=SUB_MCH_ID), api_key=WECHAT.api_key)
    answer = {"return_code": "SUCCESS", "result_code": "SUCCESS", "appid": WECHAT.appid,
              "mch_id": WECHAT.mch_id, "sub_mch_id": "1900000999", "nonce_str": "x" * 32,
              "out_trade_no": "N1", "trade_state": "SUCCESS"}
    answer["sign"] = wire.sign(answer, WECHAT.api_key, "HMAC-SHA256")
    checked = client._check("/pay/orderquery", wire.to_xml(answer), "N1")
    assert isinstance(checked, Unknown) and "another sub_mch_id" in checked.detail
    client.close()


def test_requests_carry_the_sub_merchant_inside_the_signature(pki: TestPki) -> None:
    """wechatpy, signing the same fields, gets the same signature posd sends."""
    from wechatpy.pay.utils import calculate_signature_hmac

    client = WechatPay(settings("https://127.0.0.1:1", pki, sub_mch_id=SUB_MCH_ID,
                                sub_appid=SUB_APPID), api_key=WECHAT.api_key)
    params = client._common("S001T01261202000000000003")
    assert (params["sub_mch_id"], params["sub_appid"]) == (SUB_MCH_ID, SUB_APPID)
    ours = wire.sign(params, WECHAT.api_key, "HMAC-SHA256")
    assert ours == calculate_signature_hmac(params, WECHAT.api_key)
    client.close()


def test_backup_host_only_after_a_connect_error(sim: Simulator, pki: TestPki,
                                                clock: Clock) -> None:
    down = f"https://127.0.0.1:{closed_port()}"
    client = WechatPay(settings(down, pki, backup_base_url=sim.url), api_key=WECHAT.api_key)
    try:
        assert isinstance(client.pay("S001T01261202000000000004", Fen(500), code("0000", 2),
                                     "x"), Paid)
    finally:
        client.close()
    # a read timeout at the main host: the request may have arrived; never the backup
    with Simulator(wechat=WECHAT, tls=pki.server_tls(), clock=clock) as backup:
        sim.add_fault("hang", path="/pay/micropay")
        client = WechatPay(settings(sim.url, pki, backup_base_url=backup.url),
                           api_key=WECHAT.api_key)
        try:
            answer = client.pay("S001T01261202000000000005", Fen(500), code("0000", 3), "x")
            assert isinstance(answer, Unknown) and answer.may_have_arrived
        finally:
            client.close()
        assert backup.calls() == {}


def test_spbill_create_ip_as_set_or_found(sim: Simulator, pki: TestPki) -> None:
    assert WechatPay(settings(sim.url, pki, spbill_create_ip="10.1.2.3"),
                     api_key=WECHAT.api_key)._client_ip() == "10.1.2.3"
    assert WechatPay(settings(sim.url, pki, client_ip="10.9.9.9"),
                     api_key=WECHAT.api_key)._client_ip() == "10.9.9.9"
    assert wechat_client.route_address(sim.url) == "127.0.0.1"
    assert WechatPay(settings(sim.url, pki), api_key=WECHAT.api_key)._client_ip() == "127.0.0.1"


@pytest.mark.parametrize(("extra", "words"), [
    ({"sub_appid": SUB_APPID}, "set sub_mch_id too"),
    ({"sub_mch_id": "19x"}, "sub_mch_id"),
    ({"backup_base_url": "ftp://api2.example"}, "backup_base_url"),
    ({"spbill_create_ip": "not an ip"}, "spbill_create_ip"),
])
def test_bad_partner_settings_are_named(pki: TestPki, extra: dict[str, str],
                                        words: str) -> None:
    with pytest.raises(ValidationError, match=words):
        settings("https://api.mch.weixin.qq.com", pki, **extra)


def test_doctor_passes_in_service_provider_mode(sim: Simulator, pki: TestPki,
                                                tmp_path: Any) -> None:
    from posd.channels.spec import Till
    from posd.channels.wechat import doctor
    from tests.sandbox import secret

    key = secret(tmp_path / "wechat-api-key", WECHAT.api_key)
    section = settings(sim.url, pki, sub_mch_id=SUB_MCH_ID, api_key_file=str(key),
                       backup_base_url="https://api2.mch.weixin.qq.com")
    rows = {c.name: c for c in doctor.checks(section, Till("S001", "T01", "shop"))}
    assert rows["wechat"].result.value == "ok", rows["wechat"]
    assert f"sub-merchant {SUB_MCH_ID}" in rows["wechat set-up"].detail
    assert "backup host" in rows["wechat set-up"].detail
