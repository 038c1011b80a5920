# SPDX-License-Identifier: MIT
"""posd.channels.alipay.client against scripted loopback servers: real HTTP(S), real sockets, no mocks.

Answers are written and signed with alipay_wire and a test "Alipay" key, as Alipay would send
them; requests are checked with the test app's public key.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from posd.channels import Channel
from posd.core import alipay_codes as codes
from posd.core import alipay_wire as wire
from posd.channels.alipay.client import BEIJING, CANCEL, PAY, QUERY, Alipay
from posd.channels.simulator import TestPki
from posd.channels.alipay.sandbox_keys import private_pem, write_private
from posd.channels.alipay.config import AlipayConfig
from posd.core.errors import ConfigError
from posd.core.money import Fen
from posd.core.sale import ChannelResult, Closed, Declined, NotFound, Paid, Pending, Refused, Unknown
from tests.shell.conftest import Reply, ScriptedServer

APP_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ALIPAY_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
APP_ID = "2021000000000001"
OUT = "S001T01250101120000000001"
TRADE_NO = "2025010122001412341234567890"
CODE = "281234567890123456"
AMOUNT = Fen(1234)

Start = Callable[..., ScriptedServer]
Call = Callable[[Alipay], ChannelResult]


def _pay(client: Alipay) -> ChannelResult:
    return client.pay(OUT, AMOUNT, CODE, "Coffee")


def _query(client: Alipay) -> ChannelResult:
    return client.query(OUT, AMOUNT)


def _cancel(client: Alipay) -> ChannelResult:
    return client.reverse(OUT)


CALLS = pytest.mark.parametrize("call", [_pay, _query, _cancel], ids=["pay", "query", "cancel"])


# --- answers, as Alipay writes them --------------------------------------------------------------


def answer(method: str = PAY, *, key: rsa.RSAPrivateKey | None = ALIPAY_KEY,
           member: str = "", **fields: object) -> bytes:
    """A signed answer (unsigned with ``key=None``); ``field=None`` leaves a field out."""
    kept = {k: v for k, v in fields.items() if v is not None}
    return wire.render_answer(member or wire.response_key(method), kept, key)


def paid(method: str = PAY, **changes: object) -> bytes:
    fields: dict[str, object] = {
        "code": "10000", "msg": "Success", "trade_no": TRADE_NO, "out_trade_no": OUT,
        "buyer_logon_id": "159****5620", "total_amount": "12.34", "receipt_amount": "12.34",
        "gmt_payment": "2025-01-01 12:00:05",
        "fund_bill_list": [{"fund_channel": "ALIPAYACCOUNT", "amount": "12.34"}],
    }  # fmt: skip
    if method == QUERY:
        fields["trade_status"] = "TRADE_SUCCESS"
    return answer(method, **(fields | changes))


def failed(method: str, sub_code: str, sub_msg: str = "说明", **fields: object) -> bytes:
    return answer(method, code="40004", msg="Business Failed", sub_code=sub_code,
                  sub_msg=sub_msg, **fields)


def cancelled(**fields: object) -> bytes:
    base: dict[str, object] = {"code": "10000", "msg": "Success", "trade_no": TRADE_NO,
                               "out_trade_no": OUT, "retry_flag": "N"}
    return answer(CANCEL, **(base | fields))


# --- fixtures ----------------------------------------------------------------------------------


def make_config(url: str, pki: TestPki, **changes: object) -> AlipayConfig:
    values: dict[str, object] = {
        "gateway_url": f"{url}/gateway.do", "app_id": APP_ID,
        "app_private_key_file": "/nonexistent/app-key.pem",  # the keys are passed directly
        "alipay_public_key_file": "/nonexistent/alipay-public-key.pem",
        "ca_file": pki.ca_cert_file, "connect_timeout_s": 0.5, "read_timeout_s": 0.5,
    }  # fmt: skip
    return AlipayConfig.model_validate(values | changes)


@pytest.fixture
def client_for(pki: TestPki) -> Iterator[Callable[..., Alipay]]:
    """``client_for(url, clock=..., **config)``: an Alipay client for that server."""
    clients: list[Alipay] = []

    def make(url: str, clock: Callable[[], float] = time.time, **changes: object) -> Alipay:
        client = Alipay(make_config(url, pki, **changes), app_private_key=APP_KEY,
                        alipay_public_key=ALIPAY_KEY.public_key(), store_id="S001",
                        terminal_id="T01", clock=clock)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


Exchange = Callable[..., tuple[ChannelResult, ScriptedServer]]


@pytest.fixture
def exchange(scripted_server: Start, client_for: Callable[..., Alipay]) -> Exchange:
    """``exchange(call, reply, ...)``: one call against a server scripted with ``replies``."""

    def run(call: Call, *replies: Reply, **changes: object) -> tuple[ChannelResult, ScriptedServer]:
        server = scripted_server(list(replies))
        return call(client_for(server.url, **changes)), server

    return run


def sent(server: ScriptedServer, index: int = 0) -> tuple[dict[str, str], dict[str, object]]:
    """(common parameters, biz_content) of a request, after checking its RSA2 signature."""
    received = server.received[index]
    parts = urlsplit(received.path)
    assert parts.path == "/gateway.do"
    query = dict(parse_qsl(parts.query, strict_parsing=True))
    form = dict(parse_qsl(received.body.decode(), strict_parsing=True))
    assert set(form) == {"biz_content"}  # the official SDK's split: common params in the URL
    params = query | form
    assert wire.verify(params, APP_KEY.public_key()), "not signed with the app private key"
    return query, json.loads(params["biz_content"])


def test_is_a_channel(client_for: Callable[..., Alipay]) -> None:
    client: Channel = client_for("http://127.0.0.1:9")
    assert client.name == "alipay"


# --- what is sent ------------------------------------------------------------------------------


def test_pay_sends_a_signed_bar_code_pay_and_reads_paid(exchange: Exchange) -> None:
    result, server = exchange(_pay, paid())
    assert result == Paid(TRADE_NO, Fen(1234))
    query, biz = sent(server)
    assert query.keys() == {"app_id", "method", "format", "charset", "sign_type", "timestamp",
                            "version", "sign"}
    assert query | {"timestamp": "", "sign": ""} == {
        "app_id": APP_ID, "method": "alipay.trade.pay", "format": "JSON", "charset": "utf-8",
        "sign_type": "RSA2", "timestamp": "", "version": "1.0", "sign": "",
    }  # fmt: skip
    assert biz == {
        "out_trade_no": OUT, "scene": "bar_code", "auth_code": CODE, "subject": "Coffee",
        "total_amount": "12.34", "product_code": "FACE_TO_FACE_PAYMENT", "store_id": "S001",
        "terminal_id": "T01",
    }  # fmt: skip


@pytest.mark.parametrize(("fen", "yuan"), [(1, "0.01"), (10, "0.10"), (100, "1.00"),
                                           (123456, "1234.56"), (100_000_000, "1000000.00")])
def test_total_amount_is_a_two_decimal_string(exchange: Exchange, fen: int, yuan: str) -> None:
    _, server = exchange(lambda c: c.pay(OUT, Fen(fen), CODE, "x"), paid(total_amount=yuan))
    assert sent(server)[1]["total_amount"] == yuan  # a JSON string, never a number


@pytest.mark.parametrize(("call", "method"), [(_query, QUERY), (_cancel, CANCEL)])
def test_query_and_cancel_send_only_the_trade(exchange: Exchange, call: Call, method: str) -> None:
    _, server = exchange(call, paid(method), paid(QUERY))
    query, biz = sent(server)
    assert query["method"] == method
    assert biz == {"out_trade_no": OUT}


def test_subject_is_cleaned_and_cut(scripted_server: Start,
                                    client_for: Callable[..., Alipay]) -> None:
    server = scripted_server([paid()])
    client_for(server.url).pay(OUT, AMOUNT, CODE, "拿铁\r\n咖啡/{大杯}" * 40)
    subject = str(sent(server)[1]["subject"])
    assert len(subject) == 256
    assert subject.startswith("拿铁  咖啡/{大杯}拿铁")


def test_timestamp_is_beijing_time_pinned(exchange: Exchange) -> None:
    at = datetime(2024, 1, 1, 12, 0, 0, tzinfo=BEIJING).timestamp()
    _, server = exchange(_query, paid(QUERY), clock=lambda: at)
    assert sent(server)[0]["timestamp"] == "2024-01-01 12:00:00"


@pytest.mark.parametrize("zone", ["UTC", "America/Los_Angeles", "Asia/Tokyo"])
def test_timestamp_is_beijing_time_whatever_the_host_zone(
    exchange: Exchange, monkeypatch: pytest.MonkeyPatch, zone: str
) -> None:
    monkeypatch.setenv("TZ", zone)
    time.tzset()
    try:
        before = datetime.now(BEIJING).replace(microsecond=0, tzinfo=None)
        _, server = exchange(_query, paid(QUERY))
        stamp = datetime.strptime(sent(server)[0]["timestamp"], "%Y-%m-%d %H:%M:%S")
        assert 0 <= (stamp - before).total_seconds() <= 5
    finally:
        monkeypatch.undo()
        time.tzset()
    assert os.environ.get("TZ") != zone


# --- trade.pay codes ----------------------------------------------------------------------------

# The spec (channels.md §2.6-§2.7), written out apart from the module's tables.
PAY_EXPECTED: dict[str, type] = {
    "ACQ.SYSTEM_ERROR": Unknown, "ACQ.TRADE_HAS_SUCCESS": Unknown,
    "ACQ.CONTEXT_INCONSISTENT": Unknown,
    "ACQ.PAYMENT_AUTH_CODE_INVALID": Declined, "ACQ.BUYER_BALANCE_NOT_ENOUGH": Declined,
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": Declined, "ACQ.ERROR_BALANCE_PAYMENT_DISABLE": Declined,
    "ACQ.PAYMENT_FAIL": Declined, "ACQ.PULL_MOBILE_CASHIER_FAIL": Declined,
    "ACQ.MOBILE_PAYMENT_SWITCH_OFF": Declined, "ACQ.USER_FACE_PAYMENT_SWITCH_OFF": Declined,
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": Declined,
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR": Declined,
    "ACQ.BUYER_ENABLE_STATUS_FORBID": Declined, "ACQ.ERROR_BUYER_CERTIFY_LEVEL_LIMIT": Declined,
    "ACQ.PAYMENT_REQUEST_HAS_RISK": Declined, "ACQ.NO_PAYMENT_INSTRUMENTS_AVAILABLE": Declined,
    "ACQ.BUYER_SELLER_EQUAL": Declined,
    "ACQ.TRADE_HAS_CLOSE": Declined, "ACQ.TRADE_BUYER_NOT_MATCH": Declined,
    "ACQ.INVALID_PARAMETER": Declined, "ACQ.ACCESS_FORBIDDEN": Declined,
    "ACQ.EXIST_FORBIDDEN_WORD": Declined, "ACQ.PARTNER_ERROR": Declined,
    "ACQ.TOTAL_FEE_EXCEED": Declined, "ACQ.BEYOND_PAY_RESTRICTION": Declined,
    "ACQ.BEYOND_PER_RECEIPT_RESTRICTION": Declined, "ACQ.SELLER_BEEN_BLOCKED": Declined,
    "ACQ.INVALID_STORE_ID": Declined,
    "ACQ.SOMETHING_NEW": Unknown, "": Unknown,
}  # fmt: skip


def test_pay_table_is_the_spec() -> None:
    assert set(codes.PAY_SUB_CODES) == set(PAY_EXPECTED) - {"ACQ.SOMETHING_NEW", ""}


@pytest.mark.parametrize(("sub_code", "expected"), PAY_EXPECTED.items())
def test_pay_sub_codes(exchange: Exchange, sub_code: str, expected: type) -> None:
    result, _ = exchange(_pay, failed(PAY, sub_code, "余额不足", out_trade_no=OUT))
    assert type(result) is expected
    match result:
        case Declined(code=code, message=message):
            assert code == sub_code
            assert "(支付宝: 余额不足)" in message
            assert message[0].isupper() and len(message) > 30  # a sentence for the cashier
        case Unknown(may_have_arrived=arrived):
            assert arrived is True
        case _:
            pytest.fail(f"unexpected {result}")


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (answer(code="10003", msg=" order success pay inprocess", trade_no=TRADE_NO,
                out_trade_no=OUT, buyer_pay_amount="0.00"), Pending),
        (answer(code="20000", msg="Service Currently Unavailable", sub_code="isp.unknow-error"),
         Unknown),
        (answer(code="20000", msg="Service Currently Unavailable", sub_code="ACQ.SYSTEM_ERROR"),
         Unknown),
        (answer(code="10000", msg="Success", sub_code="ACQ.SYSTEM_ERROR"), Unknown),
        (answer(code="40004", msg="Business Failed"), Unknown),  # no sub_code
        (answer(code="99999", msg="new"), Unknown),
        (answer(code="40003"), Unknown),
        (answer(msg="no code"), Unknown),
    ],
    ids=["10003", "20000", "20000-system-error", "system-error-any-code", "40004-bare",
         "new-code", "40003", "no-code"],
)
def test_pay_gateway_codes(exchange: Exchange, reply: bytes, expected: type) -> None:
    result, _ = exchange(_pay, reply)
    assert type(result) is expected, result


@pytest.mark.parametrize("code", sorted(codes.GATEWAY_REFUSALS))
@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize("member", ["", "error_response"], ids=["response", "error-response"])
def test_gateway_refusals(exchange: Exchange, code: str, signed: bool, member: str) -> None:
    key = ALIPAY_KEY if signed else None
    refusal = {"code": code, "msg": "Invalid Arguments", "sub_code": "isv.invalid-signature",
               "sub_msg": "验签出错"}
    # A cancel the gateway did not take (e.g. 40002 isv.invalid-timestamp while the clock is
    # off) changed nothing: it is sent again with backoff, never handed to a person at once.
    expected = {_pay: Declined, _query: Unknown, _cancel: Unknown}
    for call, kind in expected.items():
        result, _ = exchange(call, _for(call, answer(key=key, member=member, **refusal)))
        assert type(result) is kind, (call, result)
    pay_result, _ = exchange(_pay, answer(PAY, key=key, member=member, **refusal))
    assert isinstance(pay_result, Declined)
    assert "misconfigured" in pay_result.message and "no money was taken" in pay_result.message
    assert "验签出错" in pay_result.message


def test_the_gateways_string_to_sign_is_withheld(exchange: Exchange,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    """Alipay's isv.invalid-signature sub_msg ends with its string-to-sign (with the code)."""
    caplog.set_level(logging.DEBUG)
    sub_msg = ("验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为："
               f'app_id={APP_ID}&biz_content={{"auth_code":"{CODE}","out_trade_no":"{OUT}"}}')
    result, _ = exchange(_pay, answer(key=None, code="40002", msg="Invalid Arguments",
                                      sub_code="isv.invalid-signature", sub_msg=sub_msg))
    assert isinstance(result, Declined)
    assert "isv.invalid-signature 验签出错" in result.message
    assert "(string-to-sign withheld)" in result.message
    assert "2812…3456" not in result.message  # not even masked: the whole string is cut
    for text in (result.message, caplog.text):
        assert "biz_content" not in text and CODE not in text


def test_channel_text_never_carries_the_full_code(exchange: Exchange) -> None:
    result, _ = exchange(_pay, failed(PAY, "ACQ.PAYMENT_AUTH_CODE_INVALID", f"付款码 {CODE} 无效"))
    assert isinstance(result, Declined)
    assert CODE not in result.message and "2812…3456" in result.message
    result, _ = exchange(_pay, failed(PAY, "ACQ.NEW", f"code {CODE}"))
    assert isinstance(result, Unknown) and CODE not in result.detail


@pytest.mark.parametrize("changes", [{"trade_no": None}, {"total_amount": None},
                                     {"total_amount": 12.34}, {"total_amount": "12.345"},
                                     {"total_amount": "0.00"}],
                         ids=["no-trade-no", "no-amount", "number", "sub-fen", "zero"])
def test_pay_success_without_the_facts_is_unknown(exchange: Exchange,
                                                  changes: dict[str, object]) -> None:
    result, _ = exchange(_pay, paid(**changes))
    assert isinstance(result, Unknown) and result.may_have_arrived


# --- trade.query -------------------------------------------------------------------------------

STATUS_EXPECTED: dict[str, ChannelResult | type] = {
    "TRADE_SUCCESS": Paid(TRADE_NO, Fen(1234)), "TRADE_FINISHED": Paid(TRADE_NO, Fen(1234)),
    "WAIT_BUYER_PAY": Pending, "TRADE_CLOSED": Closed, "SOMETHING_NEW": Unknown, "": Unknown,
}  # fmt: skip


@pytest.mark.parametrize(("status", "expected"), STATUS_EXPECTED.items())
def test_query_trade_statuses(exchange: Exchange, status: str,
                              expected: ChannelResult | type) -> None:
    result, _ = exchange(_query, paid(QUERY, trade_status=status))
    if isinstance(expected, type):
        assert type(result) is expected
    else:
        assert result == expected
    if isinstance(result, Closed):
        assert result.refunded is None  # TRADE_CLOSED: unpaid and closed, or fully refunded


def test_query_reports_the_channels_amount(exchange: Exchange) -> None:
    result, _ = exchange(_query, paid(QUERY, total_amount="9.99"))
    assert result == Paid(TRADE_NO, Fen(999))


@pytest.mark.parametrize(("sub_code", "expected"), [
    ("ACQ.TRADE_NOT_EXIST", NotFound), ("ACQ.SYSTEM_ERROR", Unknown),
    ("ACQ.INVALID_PARAMETER", Unknown), ("ACQ.NEW", Unknown)])
def test_query_sub_codes(exchange: Exchange, sub_code: str, expected: type) -> None:
    result, _ = exchange(_query, failed(QUERY, sub_code, "交易不存在", out_trade_no=OUT))
    assert type(result) is expected


def test_query_10003_is_not_an_answer_to_a_query(exchange: Exchange) -> None:
    result, _ = exchange(_query, answer(QUERY, code="10003", trade_status="TRADE_SUCCESS"))
    assert isinstance(result, Unknown)


# --- trade.cancel ------------------------------------------------------------------------------

CANCEL_EXPECTED: dict[str, type] = {
    "ACQ.SYSTEM_ERROR": Unknown, "AQC.SYSTEM_ERROR": Unknown, "ACQ.TRADE_NOT_EXIST": NotFound,
    "ACQ.INVALID_PARAMETER": Refused, "ACQ.SELLER_BALANCE_NOT_ENOUGH": Refused,
    "ACQ.REASON_TRADE_BEEN_FREEZEN": Refused, "ACQ.TRADE_CANCEL_TIME_OUT": Refused,
    "ACQ.TRADE_HAS_FINISHED": Refused, "ACQ.CANCEL_NOT_ALLOWED": Refused,
    "ACQ.REASON_TRADE_REFUND_FEE_ERR": Refused, "ACQ.SOMETHING_NEW": Unknown,
}  # fmt: skip
#: Refusals that say the cancel window has passed: posd.core.sale queries the trade instead.
CANCEL_TOO_LATE = {"ACQ.TRADE_CANCEL_TIME_OUT", "ACQ.TRADE_HAS_FINISHED"}


def test_cancel_table_is_the_spec() -> None:
    assert set(codes.CANCEL_SUB_CODES) == set(CANCEL_EXPECTED) - {"ACQ.SOMETHING_NEW"}


@pytest.mark.parametrize(("sub_code", "expected"), CANCEL_EXPECTED.items())
def test_cancel_sub_codes_with_retry_flag_n(exchange: Exchange, sub_code: str,
                                            expected: type) -> None:
    result, _ = exchange(_cancel, failed(CANCEL, sub_code, out_trade_no=OUT, retry_flag="N"))
    assert type(result) is expected
    if isinstance(result, Refused):
        assert result.code == sub_code
        assert result.too_late is (sub_code in CANCEL_TOO_LATE)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (cancelled(action="close"), Closed("action=close", refunded=False)),
        (cancelled(action="refund", gmt_refund_pay="2025-01-01 12:00:31"),
         Closed("action=refund", refunded=True)),
        (cancelled(action="refund", retry_flag="Y"), Pending),
        (cancelled(action=None, retry_flag="Y"), Pending),
        (failed(CANCEL, "ACQ.SYSTEM_ERROR", retry_flag="Y"), Pending),
        (failed(CANCEL, "ACQ.SELLER_BALANCE_NOT_ENOUGH", retry_flag="Y"), Pending),
        (cancelled(action="reverse"), Unknown),
        (answer(CANCEL, code="20000", msg="Service Currently Unavailable"), Unknown),
    ],
    ids=["close", "refund", "refund-retry", "retry-no-action", "system-error-retry",
         "refused-but-retry", "unknown-action", "20000"],
)
def test_cancel_action_and_retry_flag(exchange: Exchange, reply: bytes, expected: object) -> None:
    result, server = exchange(_cancel, reply)
    if isinstance(expected, type):
        assert type(result) is expected, result
    else:
        assert result == expected
    assert len(server.received) == 1


@pytest.mark.parametrize(
    ("query_reply", "expected"),
    [
        (failed(QUERY, "ACQ.TRADE_NOT_EXIST", "交易不存在"), NotFound),
        (paid(QUERY, trade_status="TRADE_CLOSED"), Closed),
        (paid(QUERY, trade_status="TRADE_SUCCESS"), Unknown),  # paid and not refunded: again
        (paid(QUERY, trade_status="WAIT_BUYER_PAY"), Unknown),
        ("HANG", Unknown),
    ],
    ids=["not-exist", "closed", "still-paid", "waiting", "no-answer"],
)
def test_cancel_without_action_is_confirmed_by_a_query(exchange: Exchange, query_reply: Reply,
                                                       expected: type) -> None:
    result, server = exchange(_cancel, cancelled(action=None, trade_no=None), query_reply)
    assert type(result) is expected, result
    assert [sent(server, i)[0]["method"] for i in range(2)] == [CANCEL, QUERY]
    if isinstance(result, Closed):
        assert result.refunded is None


# --- answers that cannot be trusted: Unknown, money may have moved ------------------------------

OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)

UNTRUSTWORTHY = {
    "garbage": b"upstream connect error or disconnect/reset before headers",
    "empty": b"",
    "html": b"<html><body>Bad Gateway</body></html>",
    "xml": b"<xml><return_code>SUCCESS</return_code></xml>",
    "too-large": answer(code="10000", memo="x" * 70_000),
    "other-key": answer(key=OTHER_KEY, code="10000", msg="Success", trade_no=TRADE_NO,
                        total_amount="12.34", trade_status="TRADE_SUCCESS", action="close"),
    "app-key": answer(key=APP_KEY, code="10000", msg="Success", trade_no=TRADE_NO,
                      total_amount="12.34", trade_status="TRADE_SUCCESS", action="close"),
    "unsigned-success": answer(key=None, code="10000", msg="Success", trade_no=TRADE_NO,
                               total_amount="12.34", trade_status="TRADE_SUCCESS",
                               action="close"),
    "unsigned-business-failure": answer(key=None, code="40004",
                                        sub_code="ACQ.BUYER_BALANCE_NOT_ENOUGH"),
    "sign-not-base64": paid().replace(b'"sign":"', b'"sign":"!!'),
    "other-out-trade-no": answer(code="10000", msg="Success", trade_no=TRADE_NO,
                                 out_trade_no="S001T01250101120000000002", total_amount="12.34",
                                 trade_status="TRADE_SUCCESS", action="close"),
    "other-method": answer(QUERY + ".other", code="10000"),
    "signed-error-response-success": answer(member="error_response", code="10000",
                                            msg="Success", trade_no=TRADE_NO,
                                            total_amount="12.34", trade_status="TRADE_SUCCESS",
                                            action="close"),
    "duplicate-member": b'{"alipay_trade_pay_response":{"code":"10000"},'
                        b'"alipay_trade_pay_response":{"code":"10000"}}',
}


def _for(call: Call, raw: bytes) -> bytes:
    """Address an answer written for pay to the call's method (the name is not signed)."""
    method = {_pay: PAY, _query: QUERY, _cancel: CANCEL}[call]
    return raw.replace(b"alipay_trade_pay_response", wire.response_key(method).encode())


@CALLS
@pytest.mark.parametrize("raw", UNTRUSTWORTHY.values(), ids=UNTRUSTWORTHY.keys())
def test_untrustworthy_answers_are_unknown(exchange: Exchange, call: Call, raw: bytes) -> None:
    result, _ = exchange(call, (200, _for(call, raw)), "HANG")  # cancel's follow-up: no answer
    assert isinstance(result, Unknown), result
    assert result.may_have_arrived is True


def test_tampered_answer_is_unknown_and_alerts(exchange: Exchange,
                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    result, _ = exchange(_pay, paid().replace(b'"12.34"', b'"0.01"', 1))
    assert isinstance(result, Unknown) and "signature" in result.detail
    assert "ALERT" in caplog.text


# --- transport: urllib3's rule is tests/shell/test_channel_transport.py's, for both clients ----


# --- secrets and keys ----------------------------------------------------------------------------


def test_logs_hold_no_key_no_string_to_sign_and_no_full_code(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exchange(_pay, paid())
    exchange(_pay, failed(PAY, "ACQ.PAYMENT_AUTH_CODE_INVALID", f"bad code {CODE}"))
    exchange(_pay, answer(key=OTHER_KEY, code="10000"))
    assert CODE not in caplog.text
    assert "2812…3456" in caplog.text
    # urllib3 logs the URL at DEBUG: it holds the common parameters, never biz_content
    # (the payment code), which travels only in the body.
    assert "biz_content" not in caplog.text and "auth_code" not in caplog.text
    pem = private_pem(APP_KEY).decode().splitlines()[1]
    assert pem not in caplog.text
    assert "ALERT" in caplog.text


def _config_with_files(tmp_path: Path, pki: TestPki, private: bytes,
                       public: bytes) -> AlipayConfig:
    key_file, pub_file = tmp_path / "app-key.pem", tmp_path / "alipay-public.pem"
    write_private(key_file, private)
    pub_file.write_bytes(public)
    return make_config("http://127.0.0.1:9", pki, app_private_key_file=key_file,
                       alipay_public_key_file=pub_file)


@pytest.mark.parametrize("pkcs1", [True, False], ids=["pkcs1", "pkcs8"])
def test_from_config_reads_the_key_files(tmp_path: Path, pki: TestPki, pkcs1: bool) -> None:
    config = _config_with_files(tmp_path, pki, private_pem(APP_KEY, pkcs1=pkcs1),
                                wire.public_pem(ALIPAY_KEY.public_key()))
    Alipay.from_config(config, store_id="S001", terminal_id="T01").close()
    assert config.app_private_key_file is not None
    config.app_private_key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="app_private_key_file.*chmod 600"):
        Alipay.from_config(config)


@pytest.mark.parametrize(
    ("private", "public", "match"),
    [
        (private_pem(APP_KEY), wire.public_pem(APP_KEY.public_key()), "app's own public key"),
        (b"not a key", wire.public_pem(ALIPAY_KEY.public_key()), "app_private_key_file: not a key"),
        (private_pem(APP_KEY), b"not a key", "alipay_public_key_file: not a key"),
    ],
    ids=["app-key-as-alipay-key", "bad-private", "bad-public"],
)
def test_from_config_refuses_unusable_keys(tmp_path: Path, pki: TestPki, private: bytes,
                                           public: bytes, match: str) -> None:
    config = _config_with_files(tmp_path, pki, private, public)
    with pytest.raises(ConfigError, match=match):
        Alipay.from_config(config)


def test_from_config_names_a_missing_public_key(tmp_path: Path, pki: TestPki) -> None:
    config = _config_with_files(tmp_path, pki, private_pem(APP_KEY), b"")
    assert config.alipay_public_key_file is not None
    config.alipay_public_key_file.unlink()
    with pytest.raises(ConfigError, match="alipay_public_key_file: .*No such file"):
        Alipay.from_config(config)


# --- refunds (DESIGN §9, reference/channels.md §2.10) --------------------------------------

from alipay import AliPay  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from posd.channels.alipay.client import REFUND, REFUND_QUERY  # noqa: E402
from posd.core import refund as r  # noqa: E402

REFUND_NO = "S001T01R25010112000000001"


def _pem(key: rsa.RSAPrivateKey | rsa.RSAPublicKey) -> str:
    if isinstance(key, rsa.RSAPrivateKey):
        return key.private_bytes(serialization.Encoding.PEM,
                                 serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption()).decode()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def refund_ok(fund_change: str = "Y") -> bytes:
    return answer(REFUND, code="10000", msg="Success", trade_no=TRADE_NO, out_trade_no=OUT,
                  fund_change=fund_change, refund_fee="12.01")


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.integers(1, 10**8), reason=st.text(max_size=60))
def test_a_refund_is_signed_as_python_alipay_sdk_signs_it(exchange: Exchange, amount: int,
                                                         reason: str) -> None:
    result, server = exchange(
        lambda c: c.refund(OUT, REFUND_NO, Fen(10**8), Fen(amount), reason), refund_ok())
    assert result == r.Refunded(TRADE_NO)  # fund_change=Y: this call moved the money
    query, biz = sent(server)
    assert query["method"] == REFUND
    assert (biz["out_trade_no"], biz["out_request_no"]) == (OUT, REFUND_NO)  # never left out
    assert biz["refund_amount"] == f"{amount // 100}.{amount % 100:02d}"  # a string of yuan
    # python-alipay-sdk (api_alipay_trade_refund's body), signing the same parameters:
    sdk = AliPay(appid=query["app_id"], app_private_key_string=_pem(APP_KEY),
                 alipay_public_key_string=_pem(ALIPAY_KEY.public_key()), sign_type="RSA2")
    form = dict(parse_qsl(server.received[0].body.decode()))
    data = sdk.build_body(REFUND, form["biz_content"], format="JSON")  # the same JSON text
    data["timestamp"] = query["timestamp"]
    unsigned = "&".join(f"{k}={v}" for k, v in sdk._ordered_data(data))  # noqa: SLF001
    assert sdk._sign(unsigned) == query["sign"]  # noqa: SLF001


@pytest.mark.parametrize(("reply", "expected"), [
    (refund_ok("N"), r.Accepted),  # a repeat, or nothing moved yet: the query decides
    (failed(REFUND, "ACQ.SELLER_BALANCE_NOT_ENOUGH"), r.RefundRefused),
    (failed(REFUND, "ACQ.TRADE_NOT_ALLOW_REFUND"), r.RefundRefused),
    (failed(REFUND, "ACQ.SYSTEM_ERROR"), r.Unknown),
    (failed(REFUND, "ACQ.DISCORDANT_REPEAT_REQUEST"), r.Unknown),
    (answer(REFUND, code="20000", msg="Service Currently Unavailable"), r.Unknown),
    (answer(REFUND, key=ALIPAY_KEY, code="10000", trade_no=TRADE_NO, out_trade_no="OTHER",
            fund_change="Y"), r.Unknown),
    ("DROP", r.Unknown),
    (b"<html>", r.Unknown),
])
def test_refund_answers(exchange: Exchange, reply: Reply, expected: type) -> None:
    result, _ = exchange(lambda c: c.refund(OUT, REFUND_NO, AMOUNT, AMOUNT, "x"), reply)
    assert isinstance(result, expected), result


@pytest.mark.parametrize(("fields", "expected"), [
    ({"refund_status": "REFUND_SUCCESS", "refund_amount": "12.01"}, r.Refunded),
    ({}, r.NoRefund),  # 未查询到退款: not received -- send the same refund again
    ({"refund_amount": "12.01"}, r.Processing),
    ({"refund_status": "REFUND_FAIL", "refund_amount": "12.01"}, r.Abnormal),
])
def test_refund_query_answers(exchange: Exchange, fields: dict[str, object],
                              expected: type) -> None:
    reply = answer(REFUND_QUERY, code="10000", msg="Success", trade_no=TRADE_NO,
                   out_trade_no=OUT, **fields)
    result, server = exchange(lambda c: c.refund_query(OUT, REFUND_NO), reply)
    assert isinstance(result, expected), result
    assert sent(server)[1] == {"out_trade_no": OUT, "out_request_no": REFUND_NO}
