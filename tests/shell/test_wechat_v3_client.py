# SPDX-License-Identifier: MIT
"""The WeChat Pay v3 codepay client against the simulator's v3 endpoints over HTTPS: every
call in both key modes and in partner mode, and what each transport fault and each untrusted
answer becomes (issue 15; DESIGN §12)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from posd.channels.simulator import Simulator, TestPki
from posd.channels.wechat_v3.client import WechatPayV3
from posd.channels.wechat_v3.config import WechatV3Config
from posd.channels.wechat_v3.sandbox_keys import WechatV3Keys, make_wechat_v3_keys
from posd.core import bills
from posd.core.bills import BillFailed, NoBill
from posd.core.errors import ConfigError
from posd.core.money import Fen
from posd.core.refund import Abnormal, Accepted, NoRefund, Processing, Refunded, RefundRefused
from posd.core.sale import Closed, Declined, NotFound, Paid, Pending, Unknown
from posd.core.zones import BEIJING
from tests.sandbox import (
    SUB_MCHID, WECHAT, Clock, wechat_v3_sandbox, wechat_v3_section,
)

def code(ending: str) -> str:
    """A WeChat payment code with the sandbox ending (0000 paid, 0001 confirms later, ...)."""
    return f"13456789012345{ending}"


class V3:
    """A simulator with a v3 sandbox and a client for it."""

    def __init__(self, pki: TestPki, keys: WechatV3Keys, clock: Clock, *,
                 sim_mode: str = "public_key", posd_mode: str = "public_key",
                 partner: bool = False, read_timeout_s: float = 1.0) -> None:
        subs = frozenset({SUB_MCHID}) if partner else frozenset()
        self.sim = Simulator(wechat=WECHAT, tls=pki.server_tls(), clock=clock, hang_s=3.0,
                             min_reverse_delay_s=15.0, confirm_delay_s=5.0,
                             refund_delay_s=5.0,
                             sandboxes={"wechat_v3": wechat_v3_sandbox(keys, mode=sim_mode,
                                                                       sub_mchids=subs)}).start()
        self.section = WechatV3Config.model_validate(wechat_v3_section(
            self.sim.url, keys, pki, mode=posd_mode, partner=partner,
            read_timeout_s=read_timeout_s))
        self.client = WechatPayV3.from_config(self.section, store_id="S001", body_prefix="测试店")
        self.clock = clock
        self._n = 0

    def number(self) -> str:
        self._n += 1
        return f"S001T01V3{self._n:016d}"

    def close(self) -> None:
        self.client.close()
        self.sim.stop()


@pytest.fixture(name="v3")
def _v3(pki: TestPki, wechat_v3_keys: WechatV3Keys, clock: Clock) -> Iterator[V3]:
    v3 = V3(pki, wechat_v3_keys, clock)
    yield v3
    v3.close()


def test_paid_at_once_and_the_query_agrees(v3: V3) -> None:
    number = v3.number()
    paid = v3.client.pay(number, Fen(2500), code("0000"), "tea")
    assert isinstance(paid, Paid) and paid.amount == 2500
    assert v3.client.query(number, Fen(2500)) == paid
    trade = v3.sim.trade(number)
    assert trade is not None and trade["state"] == "paid"
    assert not v3.sim.violations()


def test_customer_confirming_is_pending_until_the_query_says_paid(v3: V3) -> None:
    number = v3.number()
    assert isinstance(v3.client.pay(number, Fen(100), code("0001"), "tea"), Pending)
    assert isinstance(v3.client.query(number, Fen(100)), Pending)
    v3.clock.now += 6
    assert isinstance(v3.client.query(number, Fen(100)), Paid)


@pytest.mark.parametrize(("ending", "wanted"), [("0003", "NOT_ENOUGH"),
                                                 ("0004", "AUTH_CODE_EXPIRE")])
def test_declines_are_declined_with_wechat_words(v3: V3, ending: str, wanted: str) -> None:
    result = v3.client.pay(v3.number(), Fen(100), code(ending), "tea")
    assert isinstance(result, Declined) and result.code == wanted, result
    assert "微信" in result.message


def test_a_system_error_is_unknown_and_the_query_finds_it_paid(v3: V3) -> None:
    number = v3.number()
    result = v3.client.pay(number, Fen(100), code("0005"), "tea")
    assert isinstance(result, Unknown) and result.may_have_arrived
    assert "SYSTEM_ERROR" in result.detail
    assert isinstance(v3.client.query(number, Fen(100)), Paid)


def test_reverse_closes_and_is_refused_too_early_as_unknown(v3: V3) -> None:
    number = v3.number()
    assert isinstance(v3.client.pay(number, Fen(100), code("0002"), "tea"), Pending)
    early = v3.client.reverse(number)
    assert isinstance(early, Unknown)  # 500: reversed again later, never given up
    v3.clock.now += 16
    assert v3.client.reverse(number) == Closed("reversed", refunded=None)
    query = v3.client.query(number, Fen(100))
    assert isinstance(query, Closed) and query.detail.startswith("REVOKED")
    assert isinstance(v3.client.reverse("S001T01V3NEVERMADE0000001"), NotFound)


def test_a_paid_trade_reversed_is_refunded_by_it(v3: V3) -> None:
    number = v3.number()
    v3.client.pay(number, Fen(100), code("0000"), "tea")
    v3.clock.now += 16
    assert isinstance(v3.client.reverse(number), Closed)
    assert v3.sim.trade(number)["state"] == "refunded"  # type: ignore[index]


def test_refunds_processing_then_refunded_and_refusals(v3: V3) -> None:
    number = v3.number()
    v3.client.pay(number, Fen(1000), code("0000"), "tea")
    # 01 fen: processing for refund_delay_s, then refunded
    first = v3.client.refund(number, "S001T01R0000000001", Fen(1000), Fen(201), "size")
    assert isinstance(first, Accepted) and first.channel_refund_no
    assert isinstance(v3.client.refund_query(number, "S001T01R0000000001"), Processing)
    v3.clock.now += 6
    assert isinstance(v3.client.refund_query(number, "S001T01R0000000001"), Refunded)
    # the same number again is the same refund, not a second one
    again = v3.client.refund(number, "S001T01R0000000001", Fen(1000), Fen(201), "size")
    assert isinstance(again, Refunded)
    too_much = v3.client.refund(number, "S001T01R0000000002", Fen(1000), Fen(900), "x")
    assert isinstance(too_much, RefundRefused) and too_much.code == "INVALID_REQUEST"
    balance = v3.client.refund(number, "S001T01R0000000003", Fen(1000), Fen(103), "x")
    assert isinstance(balance, RefundRefused) and balance.code == "NOT_ENOUGH"
    assert isinstance(v3.client.refund_query(number, "S001T01R0000000099"), NoRefund)
    trade = v3.sim.trade(number)
    assert trade is not None
    assert [(r["out_refund_no"], r["amount"]) for r in trade["refunds"]] == [  # type: ignore[attr-defined]
        ("S001T01R0000000001", 201)]


def test_the_trade_bill_is_fetched_checked_and_read(v3: V3) -> None:
    number = v3.number()
    v3.client.pay(number, Fen(1234), code("0000"), "tea")
    day = datetime.fromtimestamp(v3.clock.now, BEIJING).date()
    raw = v3.client.download_bill(day)
    assert isinstance(raw, bytes) and raw[:2] == b"\x1f\x8b"
    bill = bills.parse_wechat(raw, day)
    assert [(r.out_trade_no, r.amount) for r in bill.rows] == [(number, 1234)]
    assert isinstance(v3.client.download_bill(day - timedelta(days=30)), NoBill)
    v3.sim.add_fault("http500", path="/v3/billdownload/file")
    assert isinstance(v3.client.download_bill(day), BillFailed)
    assert gzip.decompress(raw).decode().startswith("交易时间")


@pytest.mark.parametrize("fault", ["drop", "garbage", "http500", "http502", "badsign",
                                   "wrong_trade", "hang"])
def test_a_fault_on_pay_is_unknown_never_declined(v3: V3, fault: str) -> None:
    number = v3.number()
    v3.sim.add_fault(fault, path="/v3/pay/transactions/codepay")
    result = v3.client.pay(number, Fen(100), code("0000"), "tea")
    assert isinstance(result, Unknown) and result.may_have_arrived, (fault, result)
    assert isinstance(v3.client.query(number, Fen(100)), Paid)


@pytest.mark.parametrize("fault", ["badsign", "wrong_trade", "garbage", "http503"])
def test_a_fault_on_query_and_reverse_is_unknown(v3: V3, fault: str) -> None:
    number = v3.number()
    v3.client.pay(number, Fen(100), code("0002"), "tea")
    v3.sim.add_fault(fault, path="/v3/query")
    assert isinstance(v3.client.query(number, Fen(100)), Unknown)
    v3.clock.now += 16
    v3.sim.add_fault(fault, path="/v3/reverse")
    assert isinstance(v3.client.reverse(number), Unknown)
    assert isinstance(v3.client.reverse(number), Closed)


def test_a_refund_answer_that_does_not_verify_is_unknown(v3: V3) -> None:
    number = v3.number()
    v3.client.pay(number, Fen(500), code("0000"), "tea")
    v3.sim.add_fault("badsign", path="/v3/refund/domestic/refunds")
    answer = v3.client.refund(number, "S001T01R0000000010", Fen(500), Fen(100), "x")
    assert isinstance(answer, Unknown)
    # it happened: the query (signed) says so
    assert isinstance(v3.client.refund_query(number, "S001T01R0000000010"), Refunded)


def test_connect_error_never_arrived(v3: V3, closed_port: int) -> None:
    section = v3.section.model_copy(update={"base_url": f"https://127.0.0.1:{closed_port}"})
    client = WechatPayV3.from_config(section)
    try:
        result = client.pay(v3.number(), Fen(100), code("0000"), "tea")
    finally:
        client.close()
    assert isinstance(result, Unknown) and not result.may_have_arrived


def test_read_timeout_may_have_arrived(pki: TestPki, wechat_v3_keys: WechatV3Keys,
                                       clock: Clock) -> None:
    v3 = V3(pki, wechat_v3_keys, clock, read_timeout_s=0.3)
    try:
        number = v3.number()
        result = v3.client.pay(number, Fen(100), code("0006"), "tea")  # hangs, but is paid
        assert isinstance(result, Unknown) and result.may_have_arrived
        assert "read timeout" in result.detail
        assert isinstance(v3.client.query(number, Fen(100)), Paid)
    finally:
        v3.close()


def test_wrong_merchant_key_is_an_unsigned_401_a_misconfigured_decline(
        v3: V3, tmp_path: Path) -> None:
    other = make_wechat_v3_keys(tmp_path / "other")
    section = v3.section.model_copy(update={"private_key_file": other.merchant_key_file})
    client = WechatPayV3.from_config(section)
    try:
        number = v3.number()
        pay = client.pay(number, Fen(100), code("0000"), "tea")
        assert isinstance(pay, Declined) and pay.code == "SIGN_ERROR", pay
        assert "misconfigured" in pay.message
        assert isinstance(client.query(number, Fen(100)), Unknown)  # never "not found"
        assert isinstance(client.reverse(number), Unknown)
    finally:
        client.close()
    assert v3.sim.trade(number) is None
    assert any(v["rule"] == "request_rejected" for v in v3.sim.violations())


def test_an_answer_signed_with_a_key_posd_does_not_hold_is_unknown(
        pki: TestPki, wechat_v3_keys: WechatV3Keys, clock: Clock) -> None:
    # WeChat signs with a platform certificate posd was not given: nothing is trusted
    v3 = V3(pki, wechat_v3_keys, clock, sim_mode="platform", posd_mode="public_key")
    try:
        number = v3.number()
        result = v3.client.pay(number, Fen(100), code("0003"), "tea")  # a decline...
        assert isinstance(result, Unknown), result  # ...that cannot be believed
        assert "does not hold" in result.detail
    finally:
        v3.close()


@pytest.mark.parametrize(("sim_mode", "posd_mode"), [("platform", "platform"),
                                                      ("both", "both"),
                                                      ("both", "platform"),
                                                      ("platform", "both")])
def test_platform_certificates_and_the_switch(pki: TestPki, wechat_v3_keys: WechatV3Keys,
                                              clock: Clock, sim_mode: str,
                                              posd_mode: str) -> None:
    v3 = V3(pki, wechat_v3_keys, clock, sim_mode=sim_mode, posd_mode=posd_mode)
    try:
        number = v3.number()
        assert isinstance(v3.client.pay(number, Fen(100), code("0000"), "tea"), Paid)
        assert isinstance(v3.client.query(number, Fen(100)), Paid)
    finally:
        v3.close()


def test_partner_mode_uses_the_partner_paths_and_ids(pki: TestPki, wechat_v3_keys: WechatV3Keys,
                                                     clock: Clock) -> None:
    v3 = V3(pki, wechat_v3_keys, clock, partner=True)
    try:
        number = v3.number()
        assert isinstance(v3.client.pay(number, Fen(300), code("0000"), "tea"), Paid)
        assert isinstance(v3.client.query(number, Fen(300)), Paid)
        refund = v3.client.refund(number, "S001T01R0000000020", Fen(300), Fen(100), "x")
        assert isinstance(refund, Refunded | Accepted)
        calls = v3.sim.calls()["wechat"][number]
        assert calls["v3 codepay"] == 1 and calls["v3 query"] == 1
        # a sub-merchant not bound to this provider: a signed PARAM_ERROR, nothing taken
        other = v3.section.model_copy(update={"sub_mchid": "1900000999"})
        client = WechatPayV3.from_config(other)
        try:
            refused = client.pay(v3.number(), Fen(100), code("0000"), "tea")
        finally:
            client.close()
        assert isinstance(refused, Declined) and refused.code == "PARAM_ERROR", refused
        assert not [v for v in v3.sim.violations() if v["rule"] != "request_rejected"]
    finally:
        v3.close()


def test_v2_and_v3_see_one_merchant_account(v3: V3, pki: TestPki, tmp_path: Path) -> None:
    """The simulator plays one merchant behind both APIs: a trade paid over v3 is queried and
    reversed over v2 (a till moving from v2 to v3 keeps its open sales)."""
    from posd.channels.wechat.client import WechatPay
    from posd.channels.wechat.config import WechatConfig
    from tests.sandbox import make_config

    data = make_config(tmp_path, v3.sim.url, pki)["channels"]["wechat"]
    v2 = WechatPay.from_config(WechatConfig.model_validate(data))
    try:
        number = v3.number()
        v3.client.pay(number, Fen(100), code("0000"), "tea")
        assert isinstance(v2.query(number, Fen(100)), Paid)
    finally:
        v2.close()


def test_config_names_what_is_missing(wechat_v3_keys: WechatV3Keys) -> None:
    base = {"enabled": True, "appid": "wx1", "mchid": "1900000001",
            "merchant_serial_no": wechat_v3_keys.merchant_serial_no,
            "private_key_file": str(wechat_v3_keys.merchant_key_file)}
    with pytest.raises(ValueError, match="wechatpay_public_key_file .* platform_cert_files"):
        WechatV3Config.model_validate(base)
    with pytest.raises(ValueError, match="both wechatpay_public_key_file and "
                                         "wechatpay_public_key_id"):
        WechatV3Config.model_validate(base | {"wechatpay_public_key_file": "/x.pem"})
    with pytest.raises(ValueError, match="missing: appid, merchant_serial_no"):
        WechatV3Config.model_validate({"enabled": True, "mchid": "1"})
    with pytest.raises(ValueError, match="sub_mchid too"):
        WechatV3Config.model_validate(base | {"platform_cert_files": ["/x"], "sub_appid": "wx2"})
    assert not WechatV3Config().enabled  # v2 stays the default


def test_unusable_key_files_are_config_errors(wechat_v3_keys: WechatV3Keys,
                                              tmp_path: Path) -> None:
    loose = tmp_path / "key.pem"
    loose.write_bytes(wechat_v3_keys.merchant_key_file.read_bytes())
    loose.chmod(0o644)
    base = WechatV3Config.model_validate({
        "enabled": True, "appid": "wx1", "mchid": "1900000001",
        "merchant_serial_no": wechat_v3_keys.merchant_serial_no,
        "private_key_file": str(loose), "platform_cert_files": [str(wechat_v3_keys.public_key_file)]})
    with pytest.raises(ConfigError, match="run chmod 600"):
        WechatPayV3.from_config(base)
    loose.chmod(0o600)
    with pytest.raises(ConfigError, match=r"platform_cert_files\[0\]: not a PEM certificate"):
        WechatPayV3.from_config(base)


def test_a_refund_the_bank_refuses_is_abnormal(v3: V3) -> None:
    number = v3.number()
    v3.client.pay(number, Fen(1000), code("0000"), "tea")
    first = v3.client.refund(number, "S001T01R0000000030", Fen(1000), Fen(302), "x")  # 02
    assert isinstance(first, Accepted)
    v3.clock.now += 6
    after = v3.client.refund_query(number, "S001T01R0000000030")
    assert isinstance(after, Abnormal) and after.code == "ABNORMAL", after


def test_doctor_rows_for_platform_certificates(wechat_v3_keys: WechatV3Keys,
                                               tmp_path: Path) -> None:
    from posd.channels.wechat_v3 import doctor
    from posd.channels.wechat_v3.sandbox_keys import write_platform_certificate
    from posd.core import wechat_v3_wire as wire

    key = wire.load_private_key(wechat_v3_keys.platform_private_key_file.read_bytes())
    now = datetime.now(BEIJING)
    soon = tmp_path / "soon.pem"
    write_platform_certificate(soon, key, days=40, start=now - timedelta(days=30))
    gone = tmp_path / "gone.pem"
    write_platform_certificate(gone, key, days=10, start=now - timedelta(days=30))
    section = WechatV3Config.model_validate({
        "enabled": True, "appid": "wx1", "mchid": "1900000001",
        "merchant_serial_no": wechat_v3_keys.merchant_serial_no,
        "private_key_file": str(wechat_v3_keys.merchant_key_file),
        "platform_cert_files": [str(wechat_v3_keys.platform_cert_file), str(soon), str(gone)]})
    rows = [doctor.platform_certificate(section, n) for n in range(3)]
    assert [r.result.value for r in rows] == ["ok", "warn", "fail"], rows
    assert "expires in" in rows[1].detail and "expired" in rows[2].detail
    setup = doctor.setup(section)
    assert "direct merchant 1900000001" in setup.detail and "3 platform certificate" in setup.detail
