# SPDX-License-Identifier: MIT
"""WeChat Pay v2 endpoints of the simulator: micropay, orderquery, reverse, downloadbill.

Wire facts from reference/channels.md §1: XML in and out; a request that is not accepted
(format, missing or unknown parameter, appid/mch_id, signature, missing client certificate on
``/secapi/``) is answered ``return_code=FAIL`` with a ``return_msg`` and no signature; every
``return_code=SUCCESS`` answer, including ``result_code=FAIL``, is signed with the request's
``sign_type`` (default MD5). What happens to a trade is decided by the ledger; this module only
translates. Called with the simulator's lock held.
"""

from __future__ import annotations

import dataclasses
import gzip
import itertools
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from posd.core.zones import BEIJING
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
from posd.channels.wechat.simulator_bill import BILL_TYPES, parse_bill_date, render_bill
from posd.core.wechat_wire import SIGN_TYPES, WireError, from_xml, sign, to_xml, verify
from posd.core.money import Fen

log = logging.getLogger(__name__)

CHANNEL = "wechat"
_XML = "text/xml; charset=utf-8"
_CODE = re.compile(r"1[0-5][0-9]{16}", re.ASCII)  # 18 digits, 10-15 (channels.md §1.12)
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_\-|*]{1,32}", re.ASCII)
_TOTAL_FEE = re.compile(r"[1-9][0-9]{0,9}", re.ASCII)


@dataclass(frozen=True, slots=True)
class WechatSandbox:
    """The merchant account the simulator plays: requests must carry these and be signed."""

    appid: str
    mch_id: str
    api_key: str = field(repr=False)

    @classmethod
    def example(cls) -> WechatSandbox:
        """The official documentation's example merchant (channels.md §1.2): public values."""
        return cls("wxd930ea5d5a258f4f", "10000100", "192006250b4c09247ec02edce69f6a2d")


@dataclass(frozen=True, slots=True)
class _Endpoint:
    name: str  # call counters: micropay, orderquery, reverse, downloadbill
    action: str  # the ledger's word: pay, query, reverse, bill
    required: frozenset[str]
    optional: frozenset[str]
    one_of: tuple[str, ...] = ()  # at least one of these (also in ``optional``)
    client_cert: bool = False


_COMMON = frozenset({"appid", "mch_id", "nonce_str", "sign"})
_OPTIONAL = frozenset({"sign_type", "sub_appid", "sub_mch_id"})
_BY_TRADE = ("transaction_id", "out_trade_no")
_ENDPOINTS = {
    "/pay/micropay": _Endpoint(
        "micropay",
        "pay",
        _COMMON | {"body", "out_trade_no", "total_fee", "spbill_create_ip", "auth_code"},
        _OPTIONAL
        | {
            "device_info",
            "detail",
            "attach",
            "fee_type",
            "goods_tag",
            "limit_pay",
            "time_start",
            "time_expire",
            "receipt",
            "profit_sharing",
            "scene_info",
            "version",
        },
    ),
    "/pay/orderquery": _Endpoint(
        "orderquery", "query", _COMMON, _OPTIONAL | set(_BY_TRADE), _BY_TRADE
    ),
    "/secapi/pay/reverse": _Endpoint(
        "reverse", "reverse", _COMMON, _OPTIONAL | set(_BY_TRADE), _BY_TRADE, client_cert=True
    ),
    "/secapi/pay/refund": _Endpoint(
        "refund", "refund", _COMMON | {"out_refund_no", "total_fee", "refund_fee"},
        _OPTIONAL | set(_BY_TRADE) | {"refund_fee_type", "refund_desc", "refund_account",
                                      "notify_url"},
        _BY_TRADE, client_cert=True,
    ),
    "/pay/refundquery": _Endpoint(
        "refundquery", "refund_query", _COMMON,
        _OPTIONAL | set(_BY_TRADE) | {"out_refund_no", "refund_id", "offset"},
        ("out_refund_no", "refund_id", *_BY_TRADE),
    ),
    "/pay/downloadbill": _Endpoint(
        "downloadbill",
        "bill",
        _COMMON | {"bill_date"},
        _OPTIONAL | {"bill_type", "tar_type", "device_info"},
    ),
}

#: err_code_des as WeChat words them (channels.md §1.5-§1.7).
_DES = {
    "USERPAYING": "需要用户输入支付密码",
    "SYSTEMERROR": "系统超时，请立即调用被扫订单结果查询API，查询当前订单状态，并根据订单的状态决定下一步的操作。",
    "NOTENOUGH": "余额不足",
    "AUTHCODEEXPIRE": "二维码已过期，请用户在微信上刷新后再试",
    "AUTH_CODE_INVALID": "请扫描微信支付授权码(以10/11/12/13/14/15为前缀的18位数字)",
    "ORDERPAID": "订单已支付",
    "ORDERREVERSED": "订单已撤销",
    "ORDERCLOSED": "订单已关闭",
    "OUT_TRADE_NO_USED": "商户订单号重复",
    "ORDERNOTEXIST": "此交易订单号不存在",
    "REVERSE_EXPIRE": "订单已经超过撤销时间",
    "PARAM_ERROR": "参数错误",
    "NOTENOUGH_REFUND": "基本账户余额不足，请充值后重新发起",
    "REFUNDNOTEXIST": "退款订单查询失败",
    "ERROR_NOT_PAID": "订单未支付，不能退款",
    "ERROR_TOO_MUCH": "累计退款金额大于支付金额",
    "ERROR_MISMATCH": "同一笔退款单号的退款金额不一致",
}
#: refund status -> refund_status_$n (§1.8)
_REFUND_STATUSES = {RefundStatus.PROCESSING: "PROCESSING", RefundStatus.SUCCESS: "SUCCESS",
                    RefundStatus.CHANGE: "CHANGE"}
_DECLINES = {Outcome.INSUFFICIENT_BALANCE: "NOTENOUGH", Outcome.CODE_EXPIRED: "AUTHCODEEXPIRE"}
_PAY_ERRORS = {
    PayAnswer.WAITING: "USERPAYING",
    PayAnswer.ERROR_BUT_PAID: "SYSTEMERROR",
    PayAnswer.ALREADY_PAID: "ORDERPAID",
    PayAnswer.ALREADY_REVERSED: "ORDERREVERSED",
    PayAnswer.ALREADY_CLOSED: "ORDERCLOSED",
    PayAnswer.MISMATCH: "OUT_TRADE_NO_USED",
}
#: reverse answer -> (err_code or None for success, recall)
_REVERSE = {
    ReverseAnswer.NOT_FOUND: ("ORDERNOTEXIST", "N"),
    ReverseAnswer.TOO_EARLY: ("SYSTEMERROR", "Y"),  # WeChat defines no code for it
    ReverseAnswer.EXPIRED: ("REVERSE_EXPIRE", "N"),
    ReverseAnswer.RETRY: ("SYSTEMERROR", "Y"),
    ReverseAnswer.CLOSED: (None, "N"),
    ReverseAnswer.REFUNDED: (None, "N"),
}
_TRADE_STATES = {
    TradeState.WAITING: ("USERPAYING", "需要用户输入支付密码"),
    TradeState.PAID: ("SUCCESS", "支付成功"),
    TradeState.FAILED: ("PAYERROR", "支付失败,请撤销订单"),
    TradeState.REVERSED: ("REVOKED", "已撤销"),
    TradeState.REFUNDED: ("REVOKED", "已撤销"),
    TradeState.CLOSED: ("CLOSED", "已关闭"),
}


def _error(err_code: str, des: str = "") -> dict[str, str]:
    return {"result_code": "FAIL", "err_code": err_code, "err_code_des": des or _DES[err_code]}


def _fail(message: str, **extra: str) -> Reply:
    """A request WeChat does not accept: unsigned, ``return_code=FAIL``."""
    return Reply(200, to_xml({"return_code": "FAIL", "return_msg": message, **extra}), _XML)


def _time_end(at: float) -> str:
    return datetime.fromtimestamp(at, BEIJING).strftime("%Y%m%d%H%M%S")


def _paid_fields(trade: Trade) -> dict[str, str]:
    fee = str(trade.amount)
    return {
        "openid": "oSIM" + trade.buyer_ref,
        "is_subscribe": "N",
        "trade_type": "MICROPAY",
        "bank_type": "CFT",
        "total_fee": fee,
        "cash_fee": fee,
        "fee_type": "CNY",
        "cash_fee_type": "CNY",
        "transaction_id": trade.channel_trade_no,
        "out_trade_no": trade.out_trade_no,
        "attach": trade.attach,
        "time_end": _time_end(trade.paid_at if trade.paid_at is not None else trade.created_at),
    }


def _query_fields(trade: Trade) -> dict[str, str]:
    if trade.state is TradeState.PAID:
        return {"trade_state": "SUCCESS", "trade_state_desc": "支付成功", **_paid_fields(trade)}
    state, desc = _TRADE_STATES[trade.state]
    if trade.state is TradeState.FAILED:
        desc = _DES[_DECLINES[trade.outcome]]
    return {
        "trade_state": state,
        "trade_state_desc": desc,
        "trade_type": "MICROPAY",
        "out_trade_no": trade.out_trade_no,
        "transaction_id": trade.channel_trade_no,
        "total_fee": str(trade.amount),
        "fee_type": "CNY",
        "attach": trade.attach,
    }


def _other(value: str) -> str:
    """A different identifier of the same shape (for the wrong_trade fault)."""
    if not value:
        return "SIM_OTHER_TRADE"
    return value[:-1] + ("1" if value[-1] == "0" else "0")


class WechatGateway:
    """WeChat Pay v2 as the simulator plays it. See the module docstring."""

    name = CHANNEL

    def __init__(
        self,
        sandbox: WechatSandbox,
        ledger: Ledger,
        *,
        clock: Callable[[], float],
        require_client_cert: bool = False,
        min_reverse_delay_s: float = 15.0,
    ) -> None:
        self._sandbox = sandbox
        self._ledger = ledger
        self._clock = clock
        self._require_client_cert = require_client_cert
        self._min_reverse_delay_s = min_reverse_delay_s
        self._sequence = itertools.count(1)
        self._handlers: Mapping[str, Callable[[dict[str, str], float], Reply]] = {
            "micropay": self._micropay,
            "orderquery": self._orderquery,
            "reverse": self._reverse,
            "downloadbill": self._downloadbill,
            "refund": self._refund,
            "refundquery": self._refundquery,
        }

    def handles(self, path: str) -> bool:
        return path in _ENDPOINTS

    def fault_paths(self, request: Request) -> tuple[str, ...]:
        return (request.path,)

    def handle(self, request: Request) -> Reply:
        endpoint = _ENDPOINTS[request.path]
        if request.method != "POST":
            return _fail("请使用post方法")
        now = self._clock()
        if endpoint.client_cert and self._require_client_cert and not request.client_cert:
            self._reject(endpoint, "", now, "证书验证失败")
            return _fail("证书验证失败")
        try:
            fields = from_xml(request.body)
        except WireError:
            self._reject(endpoint, "", now, "XML格式错误")
            return _fail("XML格式错误")
        out_trade_no = fields.get("out_trade_no", "")
        if out_trade_no:
            self._ledger.count_call(CHANNEL, out_trade_no, endpoint.name)
        if (problem := self._problem(fields, endpoint)) is not None:
            self._reject(endpoint, out_trade_no, now, problem)
            return _fail(problem)
        return self._handlers[endpoint.name](fields, now)

    def tamper(self, reply: Reply, kind: Tamper) -> Reply:
        if kind == "slash":
            return reply  # XML has no escaped "/": nothing to do for WeChat
        try:
            fields = from_xml(reply.body)
        except WireError:
            return reply  # a bill is CSV: nothing signed to tamper with
        if "sign" not in fields:
            return reply  # return_code=FAIL answers are unsigned
        sign_type = "HMAC-SHA256" if len(fields["sign"]) == 64 else "MD5"
        key = self._sandbox.api_key
        if kind == "wrong_trade":
            fields["out_trade_no"] = _other(fields.get("out_trade_no", ""))
            if "transaction_id" in fields:
                fields["transaction_id"] = _other(fields["transaction_id"])
        else:
            key = "not-" + key  # well formed, the right length, and wrong
        fields["sign"] = sign(fields, key, sign_type)
        return dataclasses.replace(reply, body=to_xml(fields))

    # --- request checks -------------------------------------------------------------------

    def _problem(self, fields: dict[str, str], endpoint: _Endpoint) -> str | None:
        """Why WeChat would refuse the request (return_code=FAIL), or None."""
        missing = sorted(k for k in endpoint.required if not fields.get(k))
        if missing:
            return f"缺少参数{missing[0]}"
        if endpoint.one_of and not any(fields.get(k) for k in endpoint.one_of):
            return f"缺少参数{endpoint.one_of[-1]}"
        unknown = sorted(fields.keys() - endpoint.required - endpoint.optional)
        if unknown:
            return f"不识别的参数{unknown[0]}"
        sign_type = fields.get("sign_type") or "MD5"
        if sign_type not in SIGN_TYPES:
            return "sign_type参数错误"
        if fields["appid"] != self._sandbox.appid or fields["mch_id"] != self._sandbox.mch_id:
            return "appid和mch_id不匹配"
        if not verify(fields, self._sandbox.api_key, sign_type):
            return "签名错误"
        return None

    def _reject(self, endpoint: _Endpoint, out_trade_no: str, now: float, why: str) -> None:
        log.info("wechat %s refused: %s", endpoint.name, why)
        self._ledger.violate(
            Violation(now, CHANNEL, out_trade_no, endpoint.action, "request_rejected", why)
        )

    def _signed(
        self, request: dict[str, str], body: dict[str, str], *, hang: bool = False
    ) -> Reply:
        fields = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": self._sandbox.appid,
            "mch_id": self._sandbox.mch_id,
            # service-provider mode: the sub-merchant the request named, as WeChat echoes it
            "sub_mch_id": request.get("sub_mch_id", ""),
            "sub_appid": request.get("sub_appid", ""),
            "device_info": request.get("device_info", ""),
            "nonce_str": secrets.token_hex(16),
            **body,
        }
        fields = {k: v for k, v in fields.items() if v}
        fields["sign"] = sign(fields, self._sandbox.api_key, request.get("sign_type") or "MD5")
        return Reply(200, to_xml(fields), _XML, hang=hang)

    # --- endpoints --------------------------------------------------------------------------

    def _micropay(self, fields: dict[str, str], now: float) -> Reply:
        code = fields["auth_code"]
        if not _CODE.fullmatch(code):
            return self._signed(fields, _error("AUTH_CODE_INVALID"))
        if not _OUT_TRADE_NO.fullmatch(fields["out_trade_no"]):
            return self._signed(fields, _error("PARAM_ERROR", "out_trade_no参数格式错误"))
        if not _TOTAL_FEE.fullmatch(fields["total_fee"]):
            return self._signed(fields, _error("PARAM_ERROR", "total_fee参数格式错误"))
        request = PayRequest(
            channel=CHANNEL,
            out_trade_no=fields["out_trade_no"],
            auth_code=code,
            amount=Fen(int(fields["total_fee"])),
            channel_trade_no=self._transaction_id(now),
            subject=fields["body"],
            device_info=fields.get("device_info", ""),
            attach=fields.get("attach", ""),
        )
        answer, trade = self._ledger.pay(request, now)
        log.info(
            "wechat micropay %s code %s %s fen: %s",
            trade.out_trade_no,
            trade.auth_code,
            request.amount,
            answer.value,
        )
        if answer in (PayAnswer.PAID, PayAnswer.HANG_BUT_PAID):
            body = {"result_code": "SUCCESS", **_paid_fields(trade)}
            return self._signed(fields, body, hang=answer is PayAnswer.HANG_BUT_PAID)
        if answer is PayAnswer.DECLINED:
            return self._signed(fields, _error(_DECLINES[trade.outcome]))
        return self._signed(fields, _error(_PAY_ERRORS[answer]))

    def _find(self, fields: dict[str, str], now: float) -> Trade | None:
        return self._ledger.find(
            CHANNEL,
            now,
            out_trade_no=fields.get("out_trade_no", ""),
            channel_trade_no=fields.get("transaction_id", ""),
        )

    def _orderquery(self, fields: dict[str, str], now: float) -> Reply:
        trade = self._find(fields, now)
        if trade is None:
            return self._signed(fields, _error("ORDERNOTEXIST"))
        return self._signed(fields, {"result_code": "SUCCESS", **_query_fields(trade)})

    def _reverse(self, fields: dict[str, str], now: float) -> Reply:
        trade = self._find(fields, now)
        answer = self._ledger.reverse(trade, now, min_delay_s=self._min_reverse_delay_s)
        log.info("wechat reverse %s: %s", fields.get("out_trade_no", ""), answer.value)
        err_code, recall = _REVERSE[answer]
        body = {"result_code": "SUCCESS"} if err_code is None else _error(err_code)
        return self._signed(fields, {**body, "recall": recall})

    def _refund(self, fields: dict[str, str], now: float) -> Reply:
        """Refund: SUCCESS means accepted; the refund itself is seen with refundquery."""
        trade = self._find(fields, now)
        if not (_TOTAL_FEE.fullmatch(fields["refund_fee"]) and _TOTAL_FEE.fullmatch(
                fields["total_fee"])):
            return self._signed(fields, _error("PARAM_ERROR", "refund_fee参数格式错误"))
        if trade is not None and int(fields["total_fee"]) != trade.amount:
            return self._signed(fields, _error("PARAM_ERROR", "订单金额与原订单不一致"))
        reply, entry = self._ledger.refund(trade, fields["out_refund_no"],
                                           Fen(int(fields["refund_fee"])), now)
        log.info("wechat refund %s %s: %s", fields.get("out_trade_no", ""),
                 fields["out_refund_no"], reply.value)
        match reply:
            case RefundReply.NO_TRADE:
                return self._signed(fields, _error("ORDERNOTEXIST"))
            case RefundReply.NOT_PAID:
                return self._signed(fields, _error("ERROR", _DES["ERROR_NOT_PAID"]))
            case RefundReply.TOO_MUCH:
                return self._signed(fields, _error("ERROR", _DES["ERROR_TOO_MUCH"]))
            case RefundReply.MISMATCH:
                return self._signed(fields, _error("ERROR", _DES["ERROR_MISMATCH"]))
            case RefundReply.BALANCE:
                return self._signed(fields, _error("NOTENOUGH", _DES["NOTENOUGH_REFUND"]))
            case RefundReply.ERROR_BUT_DONE:
                return self._signed(fields, _error("SYSTEMERROR"))
        assert trade is not None and entry is not None  # accepted, or hang_but_done
        body = {"result_code": "SUCCESS", "transaction_id": trade.channel_trade_no,
                "out_trade_no": trade.out_trade_no, "out_refund_no": entry.out_refund_no,
                "refund_id": entry.channel_refund_no, "refund_fee": str(entry.amount),
                "total_fee": str(trade.amount), "cash_fee": str(trade.amount)}
        return self._signed(fields, body, hang=reply is RefundReply.HANG_BUT_DONE)

    def _refundquery(self, fields: dict[str, str], now: float) -> Reply:
        """Refundquery by out_refund_no (or every refund of the trade)."""
        if fields.get("out_refund_no"):
            trade = next((t for t in self._ledger.trades(now) if t.channel == CHANNEL and any(
                r.out_refund_no == fields["out_refund_no"] for r in t.refunds)), None)
            if trade is None or (fields.get("out_trade_no") not in (None, "", trade.out_trade_no)):
                return self._signed(fields, _error("REFUNDNOTEXIST"))
            entries = [r for r in trade.refunds if r.out_refund_no == fields["out_refund_no"]]
        else:
            trade = self._find(fields, now)
            entries = trade.refunds if trade is not None else []
        if trade is None or not entries:
            return self._signed(fields, _error("REFUNDNOTEXIST"))
        body = {"result_code": "SUCCESS", "transaction_id": trade.channel_trade_no,
                "out_trade_no": trade.out_trade_no, "total_fee": str(trade.amount),
                "cash_fee": str(trade.amount), "refund_count": str(len(entries))}
        for n, entry in enumerate(entries):
            self._ledger.find_refund(trade, entry.out_refund_no, now)  # settle it
            body |= {f"out_refund_no_{n}": entry.out_refund_no,
                     f"refund_id_{n}": entry.channel_refund_no,
                     f"refund_fee_{n}": str(entry.amount),
                     f"refund_status_{n}": _REFUND_STATUSES[entry.status],
                     f"refund_channel_{n}": "ORIGINAL"}
            if entry.succeeded_at is not None:
                body[f"refund_success_time_{n}"] = datetime.fromtimestamp(
                    entry.succeeded_at, BEIJING).strftime("%Y-%m-%d %H:%M:%S")
        return self._signed(fields, body)

    def _downloadbill(self, fields: dict[str, str], now: float) -> Reply:
        day = parse_bill_date(fields["bill_date"])
        bill_type = fields.get("bill_type") or "ALL"
        tar_type = fields.get("tar_type", "")
        if day is None or bill_type not in BILL_TYPES or tar_type not in ("", "GZIP"):
            return _fail("invalid bill_date, bill_type or tar_type", error_code="20001")
        trades = [t for t in self._ledger.trades(now) if t.channel == CHANNEL]
        text = render_bill(
            trades,
            appid=self._sandbox.appid,
            mch_id=self._sandbox.mch_id,
            day=day,
            bill_type=bill_type,
            now=now,
            edits=self._ledger.bill_edits(CHANNEL),
        )
        if text is None:
            return _fail("No Bill Exist", error_code="20002")
        if tar_type == "GZIP":
            return Reply(200, gzip.compress(text.encode()), "application/x-gzip")
        return Reply(200, text.encode(), "text/plain; charset=utf-8")

    def _transaction_id(self, now: float) -> str:
        """28 digits like WeChat's: 4200, a sequence, the Beijing date, random digits."""
        day = datetime.fromtimestamp(now, BEIJING).strftime("%Y%m%d")
        sequence = next(self._sequence) % 1_000_000
        return f"4200{sequence:06d}{day}{secrets.randbelow(10**10):010d}"
