# SPDX-License-Identifier: MIT
"""posd.channels.wechat.client against scripted loopback servers: real HTTP(S), real sockets, no mocks.

Answers are built and signed with wechat_wire and a test key, as WeChat would send them.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from posd.channels import Channel
from posd.core import wechat_wire as wire
from posd.channels.simulator import TestPki
from posd.channels.wechat.client import MICROPAY_ERRORS, REVERSE_ERRORS, TRADE_STATES, WechatPay
from posd.channels.wechat.config import WechatConfig
from posd.core.errors import ConfigError
from posd.core.money import Fen
from posd.core.sale import (
    ChannelResult,
    Closed,
    Declined,
    Failed,
    NotFound,
    Paid,
    Pending,
    Refused,
    Unknown,
)
from tests.shell.conftest import Reply, ScriptedServer

KEY = "0123456789abcdefghijklmnopqrstuv"  # 32 characters, like a real APIv2 key
APPID = "wx2421b1c4370ec43b"
MCH_ID = "10000100"
OUT_TRADE_NO = "S001T01250101120000000001"
CODE = "134567890123456789"
AMOUNT = Fen(1234)

Start = Callable[..., ScriptedServer]
Call = Callable[[WechatPay], ChannelResult]


def _pay(client: WechatPay) -> ChannelResult:
    return client.pay(OUT_TRADE_NO, AMOUNT, CODE, "Coffee")


def _query(client: WechatPay) -> ChannelResult:
    return client.query(OUT_TRADE_NO, AMOUNT)


def _reverse(client: WechatPay) -> ChannelResult:
    return client.reverse(OUT_TRADE_NO)


CALLS = pytest.mark.parametrize("call", [_pay, _query, _reverse], ids=["pay", "query", "reverse"])


# --- answers, as WeChat writes them -------------------------------------------------------


BASE: dict[str, str | None] = {
    "return_code": "SUCCESS",
    "return_msg": "OK",
    "appid": APPID,
    "mch_id": MCH_ID,
    "nonce_str": "5K8264ILTKCH16CQ",
    "result_code": "SUCCESS",
}
PAID: dict[str, str | None] = {
    "out_trade_no": OUT_TRADE_NO,
    "transaction_id": "4200000001202501011234567890",
    "total_fee": "1234",
    "trade_type": "MICROPAY",
    "trade_state": "SUCCESS",
    "openid": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o",
}


def signed_answer(fields: dict[str, str | None], key: str, sign_type: str) -> bytes:
    """A signed return_code=SUCCESS answer; ``field=None`` leaves a default field out."""
    params = {k: v for k, v in (BASE | fields).items() if v is not None}
    params["sign"] = wire.sign(params, key, sign_type)
    return wire.to_xml(params)


def answer(*, key: str = KEY, sign_type: str = "HMAC-SHA256", **fields: str | None) -> bytes:
    return signed_answer(fields, key, sign_type)


def paid(*, key: str = KEY, sign_type: str = "HMAC-SHA256", **fields: str | None) -> bytes:
    return signed_answer(PAID | fields, key, sign_type)


def error(err_code: str, des: str = "", **fields: str | None) -> bytes:
    failure: dict[str, str | None] = {"result_code": "FAIL", "err_code": err_code}
    return signed_answer(failure | {"err_code_des": des} | fields, KEY, "HMAC-SHA256")


def rejected(message: str = "签名错误") -> bytes:
    return wire.to_xml({"return_code": "FAIL", "return_msg": message})


# --- fixtures -----------------------------------------------------------------------------


def make_config(url: str, pki: TestPki, **changes: object) -> WechatConfig:
    values: dict[str, object] = {
        "base_url": url,
        "appid": APPID,
        "mch_id": MCH_ID,
        "api_key_file": "/nonexistent/wechat-api-key",
        "sign_type": "HMAC-SHA256",
        "cert_file": pki.client_cert_file,
        "key_file": pki.client_key_file,
        "ca_file": pki.ca_cert_file,
        "client_ip": "10.1.2.3",
        "connect_timeout_s": 0.5,
        "read_timeout_s": 0.5,
    }
    return WechatConfig.model_validate(values | changes)


@pytest.fixture
def client_for(pki: TestPki) -> Iterator[Callable[..., WechatPay]]:
    """``client_for(url, sign_type=...)``: a WechatPay for that server, closed at teardown."""
    clients: list[WechatPay] = []

    def make(url: str, **changes: object) -> WechatPay:
        client = WechatPay(
            make_config(url, pki, **changes),
            api_key=KEY,
            device_info="S001T01",
            body_prefix="Example Mart",
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def exchange(
    scripted_server: Start, client_for: Callable[..., WechatPay]
) -> Callable[..., tuple[ChannelResult, ScriptedServer]]:
    """``exchange(call, reply, ...)``: one call against a server scripted with ``replies``."""

    def run(call: Call, *replies: Reply, **changes: object) -> tuple[ChannelResult, ScriptedServer]:
        server = scripted_server(list(replies))
        return call(client_for(server.url, **changes)), server

    return run


Exchange = Callable[..., tuple[ChannelResult, ScriptedServer]]


def sent(server: ScriptedServer, index: int = 0, sign_type: str = "HMAC-SHA256") -> dict[str, str]:
    """The fields of a request the server received, after checking its signature."""
    fields = wire.from_xml(server.received[index].body)
    assert wire.verify(fields, KEY, sign_type), "the request is not signed with the API key"
    return fields


def test_is_a_channel(client_for: Callable[..., WechatPay]) -> None:
    client: Channel = client_for("http://127.0.0.1:9")
    assert client.name == "wechat"


# --- what is sent -----------------------------------------------------------------------


@pytest.mark.parametrize("sign_type", ["HMAC-SHA256", "MD5"])
def test_pay_sends_signed_micropay_and_reads_paid(exchange: Exchange, sign_type: str) -> None:
    result, server = exchange(_pay, paid(sign_type=sign_type), sign_type=sign_type)
    assert result == Paid("4200000001202501011234567890", Fen(1234))
    assert server.received[0].path == "/pay/micropay"
    fields = sent(server, sign_type=sign_type)
    assert set(fields) == {
        "appid", "mch_id", "nonce_str", "sign_type", "sign", "body", "out_trade_no", "total_fee",
        "fee_type", "spbill_create_ip", "auth_code", "device_info",
    }  # fmt: skip
    assert fields | {"nonce_str": "", "sign": ""} == {
        "appid": APPID, "mch_id": MCH_ID, "nonce_str": "", "sign_type": sign_type, "sign": "",
        "body": "Example Mart-Coffee", "out_trade_no": OUT_TRADE_NO, "total_fee": "1234",
        "fee_type": "CNY", "spbill_create_ip": "10.1.2.3", "auth_code": CODE,
        "device_info": "S001T01",
    }  # fmt: skip
    assert len(fields["nonce_str"]) == 32
    assert len(fields["sign"]) == (64 if sign_type == "HMAC-SHA256" else 32)


@pytest.mark.parametrize(
    ("call", "path"), [(_query, "/pay/orderquery"), (_reverse, "/secapi/pay/reverse")]
)
def test_query_and_reverse_send_only_the_trade(exchange: Exchange, call: Call, path: str) -> None:
    _, server = exchange(call, paid())
    assert server.received[0].path == path
    fields = sent(server)
    assert set(fields) == {"appid", "mch_id", "out_trade_no", "nonce_str", "sign_type", "sign"}
    assert (fields["appid"], fields["mch_id"], fields["out_trade_no"]) == (
        APPID,
        MCH_ID,
        OUT_TRADE_NO,
    )


def test_every_request_has_a_fresh_nonce(
    exchange: Exchange, scripted_server: Start, client_for: Callable[..., WechatPay]
) -> None:
    server = scripted_server([paid(), paid(), paid()])
    client = client_for(server.url)
    _pay(client), _query(client), _query(client)
    nonces = {sent(server, i)["nonce_str"] for i in range(3)}
    assert len(nonces) == 3


def test_body_is_cut_to_127_bytes_and_stays_signable(
    scripted_server: Start, client_for: Callable[..., WechatPay]
) -> None:
    server = scripted_server([paid()])
    client = client_for(server.url)
    assert client.pay(OUT_TRADE_NO, AMOUNT, CODE, "拿铁咖啡\r\n大杯" * 20) == Paid(
        "4200000001202501011234567890", AMOUNT
    )
    body = sent(server)["body"]  # the signature verified over what the server parsed
    assert len(body.encode()) <= 127
    assert body.startswith("Example Mart-拿铁咖啡  大杯")


# --- micropay -------------------------------------------------------------------------------

# The spec, written out apart from the module's table (channels.md §1.5).
MICROPAY_EXPECTED: dict[str, type] = {
    "SYSTEMERROR": Unknown, "BANKERROR": Unknown, "USERPAYING": Pending, "ORDERPAID": Unknown,
    "OUT_TRADE_NO_USED": Unknown,
    "AUTHCODEEXPIRE": Declined, "AUTH_CODE_ERROR": Declined, "AUTH_CODE_INVALID": Declined,
    "NOTENOUGH": Declined, "NOTSUPORTCARD": Declined, "BUYER_MISMATCH": Declined,
    "TRADE_ERROR": Declined, "ORDERCLOSED": Declined, "ORDERREVERSED": Declined,
    "NOAUTH": Declined, "PARAM_ERROR": Declined, "APPID_NOT_EXIST": Declined,
    "MCHID_NOT_EXIST": Declined, "APPID_MCHID_NOT_MATCH": Declined, "LACK_PARAMS": Declined,
    "SIGNERROR": Declined, "XML_FORMAT_ERROR": Declined, "REQUIRE_POST_METHOD": Declined,
    "POST_DATA_EMPTY": Declined, "NOT_UTF8": Declined, "INVALID_REQUEST": Declined,
    "RULELIMIT": Declined,
    "SOMETHING_NEW": Unknown, "": Unknown,
}  # fmt: skip


def test_micropay_table_is_the_spec() -> None:
    assert set(MICROPAY_ERRORS) == set(MICROPAY_EXPECTED) - {"SOMETHING_NEW", ""}


@pytest.mark.parametrize(("err_code", "expected"), MICROPAY_EXPECTED.items())
def test_pay_err_codes(exchange: Exchange, err_code: str, expected: type) -> None:
    result, _ = exchange(_pay, error(err_code, "余额不足"))
    assert type(result) is expected
    match result:
        case Declined(code=code, message=message):
            assert code == err_code
            assert "余额不足" in message
            assert message[0].isupper()  # a sentence for the cashier
            assert len(message) > 30
        case Unknown(may_have_arrived=arrived):
            assert arrived is True
        case _:
            pass


def test_config_errors_tell_the_cashier_no_money_was_taken(exchange: Exchange) -> None:
    result, _ = exchange(_pay, error("SIGNERROR", "签名错误"))
    assert isinstance(result, Declined)
    assert "misconfigured" in result.message
    assert "no money was taken" in result.message


def test_pay_return_fail_is_declined_as_misconfigured(exchange: Exchange) -> None:
    result, _ = exchange(_pay, rejected("appid和mch_id不匹配"))
    assert isinstance(result, Declined)
    assert result.code == "RETURN_FAIL"
    assert "misconfigured" in result.message
    assert "appid和mch_id不匹配" in result.message


def test_channel_text_never_carries_the_full_code(exchange: Exchange) -> None:
    result, _ = exchange(_pay, error("AUTH_CODE_INVALID", f"授权码 {CODE} 检验错误"))
    assert isinstance(result, Declined)
    assert CODE not in result.message
    assert "1345…6789" in result.message
    result, _ = exchange(_pay, error("NEW_CODE", f"code {CODE}"))
    assert isinstance(result, Unknown)
    assert CODE not in result.detail


def test_pay_success_without_transaction_id_is_unknown(exchange: Exchange) -> None:
    result, _ = exchange(_pay, paid(transaction_id=None))
    assert isinstance(result, Unknown)
    assert result.may_have_arrived


# --- orderquery ---------------------------------------------------------------------------

TRADE_STATE_EXPECTED: dict[str, ChannelResult | type] = {
    "SUCCESS": Paid("4200000001202501011234567890", Fen(1234)),
    "USERPAYING": Pending, "NOTPAY": Pending,
    "CLOSED": Closed, "REVOKED": Closed,
    "PAYERROR": Failed,
    "REFUND": Unknown, "ACCEPT": Unknown, "": Unknown,
}  # fmt: skip


def test_trade_state_table_is_the_spec() -> None:
    assert set(TRADE_STATES) == set(TRADE_STATE_EXPECTED) - {"SUCCESS", "REFUND", "ACCEPT", ""}


@pytest.mark.parametrize(("state", "expected"), TRADE_STATE_EXPECTED.items())
def test_query_trade_states(exchange: Exchange, state: str, expected: ChannelResult | type) -> None:
    result, _ = exchange(_query, paid(trade_state=state, trade_state_desc="说明"))
    if isinstance(expected, type):
        assert type(result) is expected
    else:
        assert result == expected
    if isinstance(result, Closed):
        assert result.refunded is None


def test_query_reports_the_channels_amount(exchange: Exchange) -> None:
    """A different total_fee is passed on: posd.core.sale sends that sale to needs_attention."""
    result, _ = exchange(_query, paid(total_fee="999"))
    assert result == Paid("4200000001202501011234567890", Fen(999))


@pytest.mark.parametrize(
    ("err_code", "expected"),
    [("ORDERNOTEXIST", NotFound), ("SYSTEMERROR", Unknown), ("SIGNERROR", Unknown), ("X", Unknown)],
)
def test_query_err_codes(exchange: Exchange, err_code: str, expected: type) -> None:
    result, _ = exchange(_query, error(err_code, "此交易订单号不存在"))
    assert type(result) is expected


def test_query_return_fail_is_unknown(exchange: Exchange) -> None:
    result, _ = exchange(_query, rejected())
    assert isinstance(result, Unknown)
    assert result.may_have_arrived


# --- reverse ------------------------------------------------------------------------------

REVERSE_EXPECTED: dict[str, type] = {
    "ORDERNOTEXIST": NotFound, "ORDERREVERSED": Closed, "ORDERCLOSED": Closed,
    "REVERSE_EXPIRE": Refused, "INVALID_TRANSACTIONID": Refused, "TRADE_ERROR": Refused,
    "NOAUTH": Refused, "PARAM_ERROR": Refused, "APPID_NOT_EXIST": Refused,
    "MCHID_NOT_EXIST": Refused, "APPID_MCHID_NOT_MATCH": Refused, "LACK_PARAMS": Refused,
    "SIGNERROR": Refused, "XML_FORMAT_ERROR": Refused, "REQUIRE_POST_METHOD": Refused,
    "POST_DATA_EMPTY": Refused, "NOT_UTF8": Refused, "INVALID_REQUEST": Unknown,
    "RULELIMIT": Refused,
    "SYSTEMERROR": Unknown, "USERPAYING": Unknown, "SOMETHING_NEW": Unknown,
}  # fmt: skip


def test_reverse_table_is_the_spec() -> None:
    unknown = {code for code, kind in REVERSE_EXPECTED.items() if kind is Unknown}
    assert set(REVERSE_ERRORS) == set(REVERSE_EXPECTED) - unknown | {"INVALID_REQUEST"}


@pytest.mark.parametrize(("err_code", "expected"), REVERSE_EXPECTED.items())
def test_reverse_err_codes_with_recall_n(exchange: Exchange, err_code: str, expected: type) -> None:
    result, _ = exchange(_reverse, error(err_code, "订单已超过撤销期限", recall="N"))
    assert type(result) is expected
    if isinstance(result, Refused):
        assert result.code == err_code


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (answer(recall="N"), Closed("reversed", refunded=None)),
        (answer(), Closed("reversed", refunded=None)),
        (answer(recall="Y"), Pending),
        (error("SYSTEMERROR", recall="Y"), Pending),
        (error("USERPAYING", recall="Y"), Pending),
    ],
    ids=[
        "success",
        "success-no-recall-field",
        "success-recall",
        "systemerror-recall",
        "userpaying-recall",
    ],
)
def test_reverse_success_and_recall(exchange: Exchange, reply: bytes, expected: object) -> None:
    result, _ = exchange(_reverse, reply)
    if isinstance(expected, type):
        assert type(result) is expected
    else:
        assert result == expected


def test_reverse_return_fail_is_retried(exchange: Exchange) -> None:
    """return_code=FAIL: WeChat did not take the reverse; nothing changed, so it is sent
    again with backoff (Unknown) rather than handed to a person."""
    result, _ = exchange(_reverse, rejected("证书验证失败"))
    assert isinstance(result, Unknown)
    assert "证书验证失败" in result.detail


def test_reverse_expire_is_too_late(exchange: Exchange) -> None:
    """Past the 7-day window: posd.core.sale queries the order instead of asking a person at once."""
    result, _ = exchange(_reverse, error("REVERSE_EXPIRE", "订单已超过撤销期限", recall="N"))
    assert isinstance(result, Refused) and result.too_late


# --- answers that cannot be trusted: Unknown, money may have moved ------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">
<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]>
<xml><return_code>SUCCESS</return_code><result_code>&d;</result_code></xml>"""
EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/hostname">]>
<xml><return_code>SUCCESS</return_code><result_code>&e;</result_code></xml>"""


def _unsigned_paid() -> bytes:
    fields = wire.from_xml(paid())
    del fields["sign"]
    return wire.to_xml(fields)


def _tampered_paid() -> bytes:
    return paid().replace(b"<total_fee>1234<", b"<total_fee>1<")


UNTRUSTWORTHY = {
    "garbage": b"hello, this is not XML",
    "empty": b"",
    "html": b"<html><body>Bad Gateway</body></html>",
    "billion-laughs": BILLION_LAUGHS,
    "external-entity": EXTERNAL_ENTITY,
    "too-large": b"<xml>" + b"<a>0123456789</a>" * 10_000 + b"</xml>",
    "other-key": paid(key="another-key-0123456789abcdefghij"),
    "other-algorithm": paid(sign_type="MD5"),
    "unsigned-success": _unsigned_paid(),
    "tampered": _tampered_paid(),
    "other-appid": paid(appid="wx0000000000000000"),
    "other-mch-id": paid(mch_id="10000999"),
    "no-appid": paid(appid=None),
    "other-out-trade-no": paid(out_trade_no="S001T01250101120000000002"),
    "no-return-code": paid(return_code=None),
    "no-result-code": paid(result_code=None),
    "odd-result-code": paid(result_code="MAYBE"),
}


@CALLS
@pytest.mark.parametrize("body", UNTRUSTWORTHY.values(), ids=UNTRUSTWORTHY.keys())
def test_untrustworthy_answers_are_unknown(exchange: Exchange, call: Call, body: bytes) -> None:
    result, _ = exchange(call, (200, body))
    assert isinstance(result, Unknown), result
    assert result.may_have_arrived is True


# --- transport (urllib3's rule for every client: tests/shell/test_channel_transport.py) ----


def test_a_timeout_does_not_spoil_the_next_call(
    scripted_server: Start, client_for: Callable[..., WechatPay]
) -> None:
    server = scripted_server(["HANG", paid()])
    client = client_for(server.url)
    assert isinstance(_pay(client), Unknown)
    assert isinstance(_query(client), Paid)


# --- TLS --------------------------------------------------------------------------------------


def server_tls(pki: TestPki, client_cert: ssl.VerifyMode = ssl.CERT_OPTIONAL) -> ssl.SSLContext:
    context = pki.server_tls().context()
    context.verify_mode = client_cert
    return context


def test_only_secapi_presents_the_merchant_certificate(
    scripted_server: Start, pki: TestPki, client_for: Callable[..., WechatPay]
) -> None:
    server = scripted_server([paid(), paid(), answer()], tls=server_tls(pki))
    client = client_for(server.url)
    assert isinstance(_pay(client), Paid)
    assert isinstance(_query(client), Paid)
    assert _reverse(client) == Closed("reversed", refunded=None)
    assert [r.client_cert for r in server.received] == [False, False, True]


def test_reverse_passes_a_server_that_requires_the_certificate(
    scripted_server: Start, pki: TestPki, client_for: Callable[..., WechatPay]
) -> None:
    server = scripted_server([answer()], tls=server_tls(pki, ssl.CERT_REQUIRED))
    assert _reverse(client_for(server.url)) == Closed("reversed", refunded=None)


def test_missing_ca_file_never_arrived(
    scripted_server: Start, pki: TestPki, client_for: Callable[..., WechatPay], tmp_path: Path
) -> None:
    server = scripted_server([paid()], tls=server_tls(pki))
    result = _pay(client_for(server.url, ca_file=tmp_path / "gone.pem"))
    assert isinstance(result, Unknown)
    assert result.may_have_arrived is False
    assert server.received == []


@pytest.mark.parametrize("broken", ["cert_file", "key_file"])
def test_a_merchant_certificate_that_cannot_be_used_never_arrived(
    scripted_server: Start, pki: TestPki, client_for: Callable[..., WechatPay], tmp_path: Path,
    broken: str,
) -> None:
    """Only /secapi/ presents the certificate: the pay goes, the reverse is refused before
    sending, naming the files (posd.channels.transport.TlsFilesError)."""
    server = scripted_server([paid(), answer()], tls=server_tls(pki))
    other = tmp_path / "not-pem.pem"
    other.write_text("not a certificate or key\n")
    client = client_for(server.url, **{broken: other})
    assert isinstance(_pay(client), Paid)
    result = _reverse(client)
    assert isinstance(result, Unknown) and result.may_have_arrived is False, result
    assert "cannot use the TLS files" in result.detail and "client certificate" in result.detail
    assert len(server.received) == 1


def test_tls_to_a_plain_http_server_never_arrived(
    scripted_server: Start, client_for: Callable[..., WechatPay]
) -> None:
    server = scripted_server([paid()])
    https = server.url.replace("http://", "https://")
    result = _pay(client_for(https))
    assert isinstance(result, Unknown)
    assert result.may_have_arrived is False
    assert server.received == []


# --- secrets -------------------------------------------------------------------------------


def test_logs_hold_no_key_and_no_full_code(
    exchange: Exchange, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    exchange(_pay, paid())
    exchange(_pay, error("AUTH_CODE_INVALID", f"bad code {CODE}"))
    exchange(_pay, paid(key="another-key-0123456789abcdefghij"))
    exchange(_reverse, answer())
    assert KEY not in caplog.text
    assert CODE not in caplog.text
    assert "1345…6789" in caplog.text
    assert "ALERT" in caplog.text  # the bad signature is called out


def test_from_config_reads_a_private_key_file(tmp_path: Path, pki: TestPki) -> None:
    key_file = tmp_path / "wechat-api-key"
    key_file.write_text(KEY + "\n")
    key_file.chmod(0o600)
    config = make_config("http://127.0.0.1:9", pki, api_key_file=key_file)
    client = WechatPay.from_config(config, device_info="S001T01", body_prefix="Mart")
    client.close()
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="api_key_file"):
        WechatPay.from_config(config)
    key_file.write_text("\n")
    key_file.chmod(0o600)
    with pytest.raises(ConfigError, match="empty"):
        WechatPay.from_config(config)


# --- refunds (DESIGN §9, reference/channels.md §1.8) --------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from wechatpy.pay.utils import calculate_signature_hmac  # noqa: E402

from posd.core import refund as r  # noqa: E402

REFUND_NO = "S001T01R25010112000000001"


def refunded_query(status: str, **fields: str | None) -> bytes:
    return answer(out_trade_no=OUT_TRADE_NO, refund_count="1", out_refund_no_0=REFUND_NO,
                  refund_id_0="50300001", refund_status_0=status, **fields)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(amount=st.integers(1, 10**8), reason=st.text(max_size=120))
def test_a_refund_is_signed_as_wechatpy_signs_and_names_its_number(
        exchange: Exchange, amount: int, reason: str) -> None:
    result, server = exchange(
        lambda c: c.refund(OUT_TRADE_NO, REFUND_NO, Fen(10**8), Fen(amount), reason),
        answer(out_trade_no=OUT_TRADE_NO, out_refund_no=REFUND_NO, refund_id="50300001"))
    assert result == r.Accepted("50300001")  # accepted, not refunded: the query decides
    received = server.received[0]
    assert received.path == "/secapi/pay/refund"
    fields = wire.from_xml(received.body)
    unsigned = {k: v for k, v in fields.items() if k != "sign"}
    assert fields["sign"] == calculate_signature_hmac(unsigned, KEY)  # wechatpy, independently
    assert (fields["out_trade_no"], fields["out_refund_no"], fields["refund_fee"],
            fields["total_fee"]) == (OUT_TRADE_NO, REFUND_NO, str(amount), str(10**8))
    assert len(fields["refund_desc"]) <= 80 and fields["refund_desc"].isprintable()


@pytest.mark.parametrize(("reply", "expected"), [
    (error("NOTENOUGH", "基本账户余额不足"), r.RefundRefused),
    (error("TRADE_OVERDUE"), r.RefundRefused),
    (error("SYSTEMERROR"), r.Unknown),
    (error("BIZERR_NEED_RETRY"), r.Unknown),
    (error("SOMETHING_NEW"), r.Unknown),
    (rejected("频率限制"), r.Unknown),
    (answer(out_refund_no="S001T01ROTHER"), r.Unknown),
    ("HANG", r.Unknown),
    (b"not xml", r.Unknown),
    (answer(key="another-key-another-key-another-k"), r.Unknown),
])
def test_refund_answers(exchange: Exchange, reply: Reply, expected: type) -> None:
    result, _ = exchange(lambda c: c.refund(OUT_TRADE_NO, REFUND_NO, AMOUNT, AMOUNT, "x"),
                         reply)
    assert isinstance(result, expected), result


@pytest.mark.parametrize(("reply", "expected"), [
    (refunded_query("SUCCESS"), r.Refunded("50300001")),
    (refunded_query("PROCESSING"), r.Processing("PROCESSING")),
    (error("REFUNDNOTEXIST"), r.NoRefund("REFUNDNOTEXIST")),
])
def test_refundquery_answers(exchange: Exchange, reply: bytes, expected: object) -> None:
    result, server = exchange(lambda c: c.refund_query(OUT_TRADE_NO, REFUND_NO), reply)
    assert result == expected
    fields = sent(server)
    assert server.received[0].path == "/pay/refundquery" and fields["out_refund_no"] == REFUND_NO


@pytest.mark.parametrize(("status", "expected"), [
    ("REFUNDCLOSE", r.RefundRefused), ("CHANGE", r.Abnormal), ("WHATEVER", r.Unknown)])
def test_refundquery_final_and_unknown_statuses(exchange: Exchange, status: str,
                                                expected: type) -> None:
    result, _ = exchange(lambda c: c.refund_query(OUT_TRADE_NO, REFUND_NO),
                         refunded_query(status))
    assert isinstance(result, expected), result
