# SPDX-License-Identifier: MIT
"""Alipay ``gateway.do`` of the simulator: alipay.trade.pay (bar_code), .query, .cancel,
.refund, fastpay.refund.query and the bill (``alipay.data.dataservice.bill.downloadurl.query``
answers a URL under ``/_bill/alipay/`` that serves the day's zip for 30 s).

Wire facts from reference/channels.md §2: form-encoded parameters in the query string and/or
the body (GET or POST, as the public SDKs send them), RSA2 signed with the *app* private key
(verified here with the app public key), answers as JSON signed with the simulator's own key
over the raw text of ``<method>_response``, written the way Alipay writes them: non-ASCII as
is, ``/`` as ``\\/``. A request the gateway does not accept (unknown method, app id,
signature, timestamp more than 15 min from Beijing time, ...) gets an unsigned answer with a
4000x code and is recorded as a violation. What happens to a trade is decided by the ledger
(the same scripted codes as WeChat, DESIGN.md §5); this module only translates. Called with
the simulator's lock held.
"""

from __future__ import annotations

import base64

import dataclasses
import itertools
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Final
from urllib.parse import parse_qsl

from cryptography.hazmat.primitives.asymmetric import rsa

from posd.core.zones import BEIJING
from posd.core import alipay_wire as wire
from posd.channels.simulator.gateway import Reply, Request, Tamper
from posd.channels.simulator.ledger import (
    RefundReply,
    RefundStatus,
    Ledger,
    Outcome,
    PayAnswer,
    PayRequest,
    ReverseAnswer,
    Trade,
    TradeState,
    Violation,
)
from posd.core.money import Fen, format_yuan
from posd.channels.alipay.simulator_bill import archive_name, pid_of, render_zip

log = logging.getLogger(__name__)

CHANNEL: Final = "alipay"
PATH: Final = "/gateway.do"
#: Alipay's tolerance is not documented (channels.md §6); 15 min is lenient and still catches
#: a till that sends its local time from outside UTC+8.
TIMESTAMP_SKEW_S: Final = 15 * 60
_JSON = "application/json;charset=utf-8"
_CODE = re.compile(r"(2[5-9]|30)[0-9]{14,22}", re.ASCII)  # channels.md §2.13
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_]{1,64}", re.ASCII)
#: Stricter than Alipay (which takes a JSON number too): posd must send "12.30".
_AMOUNT = re.compile(r"(0|[1-9][0-9]{0,8})\.([0-9]{2})", re.ASCII)
_HANG = "_hang"
#: method -> the ledger's call counter name
METHODS: Final = {"alipay.trade.pay": "pay", "alipay.trade.query": "query",
                  "alipay.trade.cancel": "cancel", "alipay.trade.refund": "refund",
                  "alipay.trade.fastpay.refund.query": "refund_query",
                  "alipay.data.dataservice.bill.downloadurl.query": "bill",
                  "alipay.open.app.alipaycert.download": "cert_download"}
CERT_METHOD: Final = "alipay.open.app.alipaycert.download"
BILL_METHOD: Final = "alipay.data.dataservice.bill.downloadurl.query"
#: where the bill URL points (Alipay's own is another host, dwbillcenter.alipay.com)
BILL_PATH: Final = "/_bill/alipay/"
#: how long a bill URL works (channels.md §2.11: "about 30 seconds")
BILL_URL_S: Final = 30.0
_BILL_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


@dataclass(frozen=True, slots=True)
class SandboxCerts:
    app_cert_sn: str
    alipay_root_cert_sn: str
    alipay_cert_sn: str
    #: the certificate ``alipay_cert_sn`` names, served by alipaycert.download (a test makes
    #: the simulator "rotate" by naming a certificate the client does not hold yet)
    alipay_cert_pem: bytes = field(default=b"", repr=False)


@dataclass(frozen=True, slots=True)
class AlipaySandbox:
    """The app the simulator plays Alipay for: requests must carry ``app_id`` and verify."""

    app_id: str
    app_public_key: rsa.RSAPublicKey = field(repr=False)
    private_key: rsa.RSAPrivateKey = field(repr=False)  # the simulator's, signs answers
    #: an ISV (第三方应用) acting for the merchant: when set, every request must carry this
    #: ``app_auth_token`` (the merchant's authorisation), as Alipay checks it
    app_auth_token: str = field(default="", repr=False)
    #: public-key certificate mode: the SNs requests must carry (``app_cert_sn``,
    #: ``alipay_root_cert_sn``) and the one answers name (``alipay_cert_sn``); None: public-key
    #: mode (posd.core.alipay_certs computes them from the certificates)
    certs: SandboxCerts | None = None

    @property
    def public_key_pem(self) -> bytes:
        """What posd needs as ``alipay_public_key_file``."""
        return wire.public_pem(self.private_key.public_key())


_DECLINES = {
    Outcome.INSUFFICIENT_BALANCE: ("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足"),
    Outcome.CODE_EXPIRED: ("ACQ.PAYMENT_AUTH_CODE_INVALID",
                           "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款"),
}
_PAY_FAILURES = {
    PayAnswer.ALREADY_PAID: ("ACQ.TRADE_HAS_SUCCESS", "交易已被支付"),
    PayAnswer.ALREADY_REVERSED: ("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
    PayAnswer.ALREADY_CLOSED: ("ACQ.TRADE_HAS_CLOSE", "交易已经关闭"),
    PayAnswer.MISMATCH: ("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改"),
}
_STATUSES = {
    TradeState.WAITING: "WAIT_BUYER_PAY",
    TradeState.PAID: "TRADE_SUCCESS",
    TradeState.FAILED: "TRADE_CLOSED",
    TradeState.REVERSED: "TRADE_CLOSED",
    TradeState.REFUNDED: "TRADE_CLOSED",  # fully refunded
    TradeState.CLOSED: "TRADE_CLOSED",
}


def _ok(**fields: object) -> dict[str, object]:
    return {"code": "10000", "msg": "Success", **fields}


def _failed(sub_code: str, sub_msg: str, **fields: object) -> dict[str, object]:
    return {"code": "40004", "msg": "Business Failed", "sub_code": sub_code, "sub_msg": sub_msg,
            **fields}


def _refusal(code: str, sub_code: str, sub_msg: str) -> dict[str, object]:
    msg = "Missing Required Arguments" if code == "40001" else "Invalid Arguments"
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg}


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _buyer(trade: Trade) -> dict[str, object]:
    """A stable, masked pseudonym of the payer (the same code gives the same one)."""
    digits = str(int(trade.buyer_ref[:12], 16))[-10:].rjust(10, "0")
    return {"buyer_logon_id": f"1{digits[:2]}******{digits[-2:]}",
            "buyer_user_id": f"2088{digits}01"}


def _trade_fields(trade: Trade) -> dict[str, object]:
    amount = format_yuan(trade.amount)
    paid = trade.state in (TradeState.PAID, TradeState.REFUNDED) and trade.paid_at is not None
    fields: dict[str, object] = {
        "trade_no": trade.channel_trade_no, "out_trade_no": trade.out_trade_no, **_buyer(trade),
        "total_amount": amount, "receipt_amount": amount if paid else "0.00",
        "buyer_pay_amount": amount if paid else "0.00", "point_amount": "0.00",
        "invoice_amount": amount if paid else "0.00",
    }
    if paid and trade.paid_at is not None:
        fields["gmt_payment"] = _when(trade.paid_at)
        fields["fund_bill_list"] = [{"fund_channel": "ALIPAYACCOUNT", "amount": amount}]
    return fields


def _form(request: Request) -> dict[str, str] | None:
    """Query string plus form body as one dict; None if unreadable or a name repeats."""
    try:
        pairs = parse_qsl(request.query, keep_blank_values=True, errors="strict",
                          max_num_fields=64)
        if request.body:
            pairs += parse_qsl(request.body.decode("utf-8"), keep_blank_values=True,
                               errors="strict", max_num_fields=64)
    except ValueError:  # bad percent-encoding, not UTF-8, too many fields
        return None
    params = dict(pairs)
    return params if len(params) == len(pairs) else None


def _timestamp_problem(value: str, now: float) -> str | None:
    try:
        sent = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
    except ValueError:
        return "时间戳格式错误"
    if abs(sent.timestamp() - now) > TIMESTAMP_SKEW_S:
        return "非法的时间戳参数"  # isv.invalid-timestamp: not Beijing time, or a wrong clock
    return None


#: The store name the ``slash`` fault puts into an answer (Alipay signs it with "/", sends "\/").
SLASH_STORE_NAME = "示例便利店/Example Mart 1/F"


class AlipayGateway:
    """Alipay's gateway.do as the simulator plays it. See the module docstring."""

    name = CHANNEL

    def __init__(self, sandbox: AlipaySandbox, ledger: Ledger, *,
                 clock: Callable[[], float], url: Callable[[], str] = lambda: "") -> None:
        self._sandbox = sandbox
        self._ledger = ledger
        self._clock = clock
        self._url = url
        #: bill URL token -> (when it stops working, the zip)
        self._bill_urls: dict[str, tuple[float, bytes]] = {}
        self._sequence = itertools.count(1)
        self._handlers: Mapping[str, Callable[[Mapping[str, object], float],
                                              dict[str, object]]] = {
            "alipay.trade.pay": self._pay,
            "alipay.trade.query": self._query,
            "alipay.trade.cancel": self._cancel,
            "alipay.trade.refund": self._refund,
            "alipay.trade.fastpay.refund.query": self._refund_query,
        }

    def handles(self, path: str) -> bool:
        return path == PATH or path.startswith(BILL_PATH)

    def fault_paths(self, request: Request) -> tuple[str, ...]:
        """A fault may name the gateway or one method: ``/gateway.do?method=alipay.trade.pay``;
        the bill download answers to ``/_bill/alipay/``."""
        if request.path.startswith(BILL_PATH):
            return (BILL_PATH,)
        method = (_form(request) or {}).get("method", "")
        return (PATH, f"{PATH}?method={method}") if method else (PATH,)

    def handle(self, request: Request) -> Reply:
        now = self._clock()
        if request.path.startswith(BILL_PATH):
            return self._download(request.path[len(BILL_PATH):], now)
        params = _form(request) or {}
        method = params.get("method", "")
        if method not in METHODS:
            self._reject(method or "?", "", now, "isv.invalid-method")
            fields = _refusal("40002", "isv.invalid-method", "不存在的方法名")
            return self._reply(wire.ERROR_RESPONSE, fields, signed=False)
        biz = _biz(params.get("biz_content", ""))
        out_trade_no = str(biz.get("out_trade_no", "")) if biz is not None else ""
        if out_trade_no:
            self._ledger.count_call(CHANNEL, out_trade_no, METHODS[method])
        if (refusal := self._gateway_problem(params, now)) is not None:
            self._reject(method, out_trade_no, now, str(refusal["sub_code"]))
            return self._reply(wire.response_key(method), refusal, signed=False)
        if method == BILL_METHOD:
            return self._answer(method, self._bill(biz or {}, now))
        if method == CERT_METHOD:
            return self._answer(method, self._cert_download(biz or {}))
        if biz is None or not isinstance(biz.get("out_trade_no"), str):
            return self._answer(method, _failed("ACQ.INVALID_PARAMETER", "参数无效"))
        return self._answer(method, self._handlers[method](biz, now))

    def tamper(self, reply: Reply, kind: Tamper) -> Reply:
        try:
            document = json.loads(reply.body)
        except ValueError:
            return reply
        key = next((k for k in document if k.endswith("_response")), None)
        if key is None or "sign" not in document:
            return reply  # unsigned refusals: nothing to tamper with
        fields = document[key]
        if kind == "slash":
            fields["store_name"] = SLASH_STORE_NAME
            body = wire.render_answer(key, fields, self._key, sign_unescaped=True)
            return dataclasses.replace(reply, body=body)
        if kind == "wrong_trade":
            for name in ("out_trade_no", "trade_no"):
                if isinstance(fields.get(name), str):
                    fields[name] = _other(fields[name])
            return dataclasses.replace(reply, body=wire.render_answer(key, fields, self._key))
        body = wire.render_answer(key, fields, None)
        raw = wire.members(body.decode())[key][1]
        wrong = wire.sign_text(raw + " ", self._key)  # well formed, the right key, and wrong
        signed = body[:-1] + b',"sign":' + json.dumps(wrong).encode() + b"}"
        return dataclasses.replace(reply, body=signed)

    # --- request checks -------------------------------------------------------------------

    @property
    def _key(self) -> rsa.RSAPrivateKey:
        return self._sandbox.private_key

    def _gateway_problem(self, params: Mapping[str, str], now: float) -> dict[str, object] | None:
        """Why the gateway would not accept the request (an unsigned 4000x answer), or None."""
        for name in ("app_id", "charset", "sign_type", "timestamp", "version", "sign",
                     "biz_content"):
            if not params.get(name):
                return _refusal("40001", f"isv.missing-{name.replace('_', '-')}", f"缺少{name}参数")
        checks = (
            (params["app_id"] != self._sandbox.app_id, "isv.invalid-app-id", "无效的AppID参数"),
            (params["charset"].lower() != "utf-8", "isv.invalid-charset", "字符集错误"),
            (params["sign_type"] != wire.SIGN_TYPE, "isv.invalid-signature-type", "签名类型错误"),
            (params.get("format", "JSON").upper() != "JSON", "isv.invalid-format", "格式错误"),
            (params["version"] != "1.0", "isv.invalid-parameter", "version参数错误"),
        )
        for failed, sub_code, sub_msg in checks:
            if failed:
                return _refusal("40002", sub_code, sub_msg)
        if self._sandbox.app_auth_token and params.get("app_auth_token") != \
                self._sandbox.app_auth_token:
            return _refusal("40002", "isv.invalid-app-auth-token", "无效的应用授权令牌")
        certs = self._sandbox.certs
        if certs is not None and params.get("app_cert_sn") != certs.app_cert_sn:
            return _refusal("40002", "isv.app-cert-sn-not-match", "应用公钥证书序列号不匹配")
        if certs is not None and params.get("alipay_root_cert_sn") != certs.alipay_root_cert_sn:
            return _refusal("40002", "isv.alipay-root-cert-sn-not-match", "支付宝根证书序列号不匹配")
        if (problem := _timestamp_problem(params["timestamp"], now)) is not None:
            return _refusal("40002", "isv.invalid-timestamp", problem)
        if not wire.verify(params, self._sandbox.app_public_key):
            return _refusal("40002", "isv.invalid-signature", "验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配")
        return None

    def _reject(self, method: str, out_trade_no: str, now: float, why: str) -> None:
        log.info("alipay %s refused: %s", method, why)
        action = METHODS.get(method, method)
        self._ledger.violate(
            Violation(now, CHANNEL, out_trade_no, action, "request_rejected", why))

    def _answer(self, method: str, fields: dict[str, object]) -> Reply:
        # _HANG is a marker from _pay (sandbox code 0006), not a field Alipay sends.
        hang = bool(fields.pop(_HANG, False))
        return dataclasses.replace(self._reply(wire.response_key(method), fields), hang=hang)

    def _reply(self, key: str, fields: Mapping[str, object], *, signed: bool = True) -> Reply:
        cert_sn = self._sandbox.certs.alipay_cert_sn if self._sandbox.certs else ""
        return Reply(200, wire.render_answer(key, fields, self._key if signed else None,
                                             cert_sn=cert_sn), _JSON)

    # --- methods ----------------------------------------------------------------------------

    def _pay(self, biz: Mapping[str, object], now: float) -> dict[str, object]:
        code, out_trade_no = biz.get("auth_code"), str(biz["out_trade_no"])
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            sub_code, sub_msg = _DECLINES[Outcome.CODE_EXPIRED]
            return _failed(sub_code, sub_msg, out_trade_no=out_trade_no)
        amount = _amount(biz.get("total_amount"))
        subject, terminal_id = biz.get("subject"), biz.get("terminal_id", "")
        if (biz.get("scene") not in ("bar_code", "wave_code") or amount is None
                or not _OUT_TRADE_NO.fullmatch(out_trade_no)
                or not isinstance(subject, str) or not subject
                or not isinstance(terminal_id, str)):
            return _failed("ACQ.INVALID_PARAMETER", "参数无效", out_trade_no=out_trade_no)
        request = PayRequest(CHANNEL, out_trade_no, code, amount, self._trade_no(now),
                             subject=subject, device_info=terminal_id)
        answer, trade = self._ledger.pay(request, now)
        log.info("alipay pay %s code %s %s fen: %s", out_trade_no, trade.auth_code, amount,
                 answer.value)
        if answer in (PayAnswer.PAID, PayAnswer.HANG_BUT_PAID):
            return _ok(**_trade_fields(trade), **{_HANG: answer is PayAnswer.HANG_BUT_PAID})
        if answer is PayAnswer.WAITING:  # the real msg has this leading space (§2.6)
            return {"code": "10003", "msg": " order success pay inprocess", **_trade_fields(trade)}
        if answer is PayAnswer.ERROR_BUT_PAID:
            return {"code": "20000", "msg": "Service Currently Unavailable",
                    "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"}
        sub_code, sub_msg = (_DECLINES[trade.outcome] if answer is PayAnswer.DECLINED
                             else _PAY_FAILURES[answer])
        return _failed(sub_code, sub_msg, out_trade_no=out_trade_no)

    def _query(self, biz: Mapping[str, object], now: float) -> dict[str, object]:
        trade = self._ledger.find(CHANNEL, now, out_trade_no=str(biz["out_trade_no"]))
        if trade is None:
            return _failed("ACQ.TRADE_NOT_EXIST", "交易不存在", out_trade_no=biz["out_trade_no"])
        fields = _ok(trade_status=_STATUSES[trade.state], **_trade_fields(trade))
        if trade.paid_at is not None:
            fields["send_pay_date"] = _when(trade.paid_at)
        return fields

    def _cancel(self, biz: Mapping[str, object], now: float) -> dict[str, object]:
        out_trade_no = str(biz["out_trade_no"])
        trade = self._ledger.find(CHANNEL, now, out_trade_no=out_trade_no)
        answer = self._ledger.reverse(trade, now)
        log.info("alipay cancel %s: %s", out_trade_no, answer.value)
        if trade is None:
            # Reportedly what Alipay answers for an unknown number: success, no action (§2.9).
            return _ok(out_trade_no=out_trade_no, retry_flag="N")
        ids = {"trade_no": trade.channel_trade_no, "out_trade_no": out_trade_no}
        match answer:
            case ReverseAnswer.NOT_FOUND:
                return _ok(out_trade_no=out_trade_no, retry_flag="N")
            case ReverseAnswer.CLOSED:
                return _ok(**ids, retry_flag="N", action="close")
            case ReverseAnswer.REFUNDED:
                return _ok(**ids, retry_flag="N", action="refund",
                           gmt_refund_pay=_when(trade.closed_at or now))
            case ReverseAnswer.EXPIRED:
                return _failed("ACQ.TRADE_CANCEL_TIME_OUT", "超过撤销时间范围", **ids,
                               retry_flag="N")
            case ReverseAnswer.RETRY | ReverseAnswer.TOO_EARLY:
                return _failed("ACQ.SYSTEM_ERROR", "系统错误", **ids, retry_flag="Y")

    def _refund(self, biz: Mapping[str, object], now: float) -> dict[str, object]:
        """trade.refund: ``fund_change=Y`` when this call moved the money (§2.10)."""
        out_trade_no, number = str(biz["out_trade_no"]), biz.get("out_request_no")
        amount = _amount(biz.get("refund_amount"))
        if amount is None:
            return _failed("ACQ.INVALID_PARAMETER", "参数无效", out_trade_no=out_trade_no)
        trade = self._ledger.find(CHANNEL, now, out_trade_no=out_trade_no)
        # Without out_request_no Alipay takes the out_trade_no: a second partial refund then
        # looks like the first one repeated (the bug posd must not have).
        number = number if isinstance(number, str) and number else out_trade_no
        before = trade.refunded_amount if trade is not None else Fen(0)
        reply, entry = self._ledger.refund(trade, number, amount, now)
        log.info("alipay refund %s %s: %s", out_trade_no, number, reply.value)
        match reply:
            case RefundReply.NO_TRADE:
                return _failed("ACQ.TRADE_NOT_EXIST", "交易不存在", out_trade_no=out_trade_no)
            case RefundReply.NOT_PAID:
                return _failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法",
                               out_trade_no=out_trade_no)
            case RefundReply.TOO_MUCH:
                return _failed("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限",
                               out_trade_no=out_trade_no)
            case RefundReply.MISMATCH:
                return _failed("ACQ.DISCORDANT_REPEAT_REQUEST", "请求信息不一致",
                               out_trade_no=out_trade_no)
            case RefundReply.BALANCE:
                return _failed("ACQ.SELLER_BALANCE_NOT_ENOUGH", "卖家余额不足",
                               out_trade_no=out_trade_no)
            case RefundReply.ERROR_BUT_DONE:
                return {"code": "20000", "msg": "Service Currently Unavailable",
                        "sub_code": "isp.unknow-error", "sub_msg": "系统繁忙"}
        assert trade is not None and entry is not None  # accepted, or hang_but_done
        moved = entry.requests == 1 and entry.status is RefundStatus.SUCCESS
        return _ok(trade_no=trade.channel_trade_no, out_trade_no=out_trade_no,
                   **_buyer(trade), fund_change="Y" if moved else "N",
                   refund_fee=format_yuan(Fen(int(before) + (int(amount) if moved else 0))),
                   gmt_refund_pay=_when(now), **{_HANG: reply is RefundReply.HANG_BUT_DONE})

    def _refund_query(self, biz: Mapping[str, object], now: float) -> dict[str, object]:
        """fastpay.refund.query: REFUND_SUCCESS, or no status while not done (§2.10)."""
        out_trade_no, number = str(biz["out_trade_no"]), str(biz.get("out_request_no") or "")
        trade = self._ledger.find(CHANNEL, now, out_trade_no=out_trade_no)
        if trade is None:
            return _failed("ACQ.TRADE_NOT_EXIST", "交易不存在", out_trade_no=out_trade_no)
        entry = self._ledger.find_refund(trade, number or out_trade_no, now)
        if entry is None:  # 未查询到退款: the fields are simply absent
            return _ok(trade_no=trade.channel_trade_no, out_trade_no=out_trade_no)
        fields = _ok(trade_no=trade.channel_trade_no, out_trade_no=out_trade_no,
                     out_request_no=entry.out_refund_no, total_amount=format_yuan(trade.amount),
                     refund_amount=format_yuan(entry.amount))
        if entry.status is RefundStatus.SUCCESS:
            fields["refund_status"] = "REFUND_SUCCESS"
            fields["gmt_refund_pay"] = _when(entry.succeeded_at or now)
        elif entry.status is RefundStatus.CHANGE:
            fields["refund_status"] = "REFUND_FAIL"  # the sandbox's word for a failed payout
        return fields

    def _bill(self, biz: Mapping[str, object], now: float) -> dict[str, object]:
        """A URL to the day's zip, valid :data:`BILL_URL_S`; ``isp.bill_not_exist`` for a day
        with no trades. (The sandbox also serves today's bill, which Alipay refuses.)"""
        day_text = biz.get("bill_date")
        if biz.get("bill_type") != "trade" or not isinstance(day_text, str) \
                or not _BILL_DAY.fullmatch(day_text):
            return _failed("isv.invalid-parameter", "参数不合法: bill_type trade, bill_date "
                           "yyyy-MM-dd")
        try:
            day = date.fromisoformat(day_text)
        except ValueError:
            return _failed("isv.invalid-parameter", "bill_date不合法")
        if day > datetime.fromtimestamp(now, BEIJING).date():
            return _failed("isv.invalid-parameter", "参数不合法")
        trades = [t for t in self._ledger.trades(now) if t.channel == CHANNEL]
        archive = render_zip(trades, pid=pid_of(self._sandbox.app_id), day=day, now=now,
                             edits=self._ledger.bill_edits(CHANNEL))
        if archive is None:
            return _failed("isp.bill_not_exist", "账单不存在")
        self._bill_urls = {k: v for k, v in self._bill_urls.items() if v[0] > now}
        token = secrets.token_hex(16)
        self._bill_urls[token] = (now + BILL_URL_S, archive)
        name = archive_name(pid_of(self._sandbox.app_id), day)
        return _ok(bill_download_url=f"{self._url()}{BILL_PATH}{token}?downloadFileName={name}")

    def _cert_download(self, biz: Mapping[str, object]) -> dict[str, object]:
        """Alipay's certificate by its SN (base64 of the PEM), for a client that saw an
        answer name a certificate it does not hold."""
        certs = self._sandbox.certs
        if certs is None or not certs.alipay_cert_pem or \
                biz.get("alipay_cert_sn") != certs.alipay_cert_sn:
            return _failed("isv.cert-not-exist", "证书不存在")
        return _ok(alipay_cert_content=base64.b64encode(certs.alipay_cert_pem).decode())

    def _download(self, token: str, now: float) -> Reply:
        found = self._bill_urls.get(token)
        if found is None or found[0] <= now:
            return Reply(404, "账单下载链接已失效 (the bill URL has expired)\n".encode())
        return Reply(200, found[1], "application/zip")

    def _trade_no(self, now: float) -> str:
        """28 digits like Alipay's: the Beijing date, 22, a sequence, random digits."""
        day = datetime.fromtimestamp(now, BEIJING).strftime("%Y%m%d")
        sequence = next(self._sequence) % 1_000_000
        return f"{day}22{sequence:06d}{secrets.randbelow(10**12):012d}"


def _biz(text: str) -> dict[str, object] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _amount(value: object) -> Fen | None:
    """'12.30' -> 1230; None for anything else (numbers included), zero or over 1e8 yuan."""
    if not isinstance(value, str) or (m := _AMOUNT.fullmatch(value)) is None:
        return None
    fen = int(m[1]) * 100 + int(m[2])
    return Fen(fen) if 0 < fen <= 100_000_000 * 100 else None


def _other(value: str) -> str:
    """A different identifier of the same shape (for the wrong_trade fault)."""
    return value[:-1] + ("1" if value[-1:] == "0" else "0") if value else "SIM_OTHER_TRADE"
