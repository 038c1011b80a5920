# SPDX-License-Identifier: MIT
"""WeChat Pay API v3 endpoints of the simulator: codepay, query, reverse, refunds, the bill.

Wire facts from reference/channels.md §1.11 (posd.core.wechat_v3_wire for the signatures):
JSON in and out; every request must carry a ``WECHATPAY2-SHA256-RSA2048`` Authorization that
verifies with the merchant's key and names its serial, else 401 ``SIGN_ERROR`` (unsigned);
every other answer but a 5xx is signed, with the WeChat Pay public key's private half when
the request's ``Wechatpay-Serial`` names that key, else with the platform certificate's key
(as WeChat does during the switch to public keys; a sandbox with one key signs with it).
System errors are 500 ``SYSTEM_ERROR``, unsigned. While the customer confirms, codepay
answers 202 ``{"trade_state": "USERPAYING"}``.

The simulator plays one WeChat merchant behind both APIs: v3 trades are the ledger's
``wechat`` trades, so v2 and v3 see the same orders and one daily bill, as a real merchant
account does. Called with the simulator's lock held.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import itertools
import json
import logging
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from urllib.parse import parse_qs, unquote

from cryptography.hazmat.primitives.asymmetric import rsa

from posd.channels.simulator.gateway import Reply, Request, Tamper
from posd.channels.simulator.ledger import (
    Ledger, Outcome, PayAnswer, PayRequest, RefundReply, RefundStatus, ReverseAnswer, Trade,
    TradeState, Violation,
)
from posd.channels.wechat.simulator_bill import render_bill
from posd.core import wechat_v3_wire as wire
from posd.core.money import Fen
from posd.core.zones import BEIJING

log = logging.getLogger(__name__)

CHANNEL = "wechat"  # the ledger's: one merchant account behind v2 and v3
_JSON = "application/json"
_CODE = re.compile(r"1[0-5][0-9]{16}", re.ASCII)
_OUT_NO = re.compile(r"[0-9A-Za-z_\-|*]{6,32}", re.ASCII)
_BY_NUMBER = re.compile(r"/v3/pay/(partner/)?transactions/out-trade-no/([^/]+)(/reverse)?")
_REFUND_BY_NUMBER = re.compile(r"/v3/refund/domestic/refunds/([^/]+)")
_BILL_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


@dataclass(frozen=True, slots=True)
class WechatV3Sandbox:
    """The v3 merchant the simulator plays: who may call, and the keys it answers with."""

    appid: str
    mchid: str
    merchant_serial_no: str
    merchant_key: rsa.RSAPublicKey = field(repr=False)
    #: name (PUB_KEY_ID_... or a platform certificate's serial) -> its private key
    signers: Mapping[str, rsa.RSAPrivateKey] = field(repr=False)
    #: partner mode: the sub-merchants under this service provider (empty: any)
    sub_mchids: frozenset[str] = frozenset()

    def signer(self, asked: str) -> tuple[str, rsa.RSAPrivateKey]:
        """The key an answer is signed with: the one the request named, else a platform
        certificate's, else the only one there is."""
        if asked in self.signers:
            return asked, self.signers[asked]
        platform = [n for n in self.signers if not n.startswith(wire.PUBLIC_KEY_PREFIX)]
        name = platform[0] if platform else next(iter(self.signers))
        return name, self.signers[name]


_DECLINES = {Outcome.INSUFFICIENT_BALANCE: (403, "NOT_ENOUGH", "用户余额不足"),
             Outcome.CODE_EXPIRED: (403, "AUTH_CODE_EXPIRE", "二维码已过期，请用户在微信上刷新后再试")}
_PAY_ERRORS = {
    PayAnswer.ERROR_BUT_PAID: (500, "SYSTEM_ERROR", "系统错误"),
    PayAnswer.ALREADY_PAID: (400, "ORDER_PAID", "订单已支付"),
    PayAnswer.ALREADY_REVERSED: (403, "ORDER_REVERSED", "订单已撤销"),
    PayAnswer.ALREADY_CLOSED: (403, "ORDER_CLOSED", "订单已关闭"),
    PayAnswer.MISMATCH: (400, "OUT_TRADE_NO_USED", "商户订单号重复"),
}
_REVERSE_ERRORS = {
    ReverseAnswer.NOT_FOUND: (404, "ORDER_NOT_EXIST", "订单不存在"),
    ReverseAnswer.TOO_EARLY: (500, "SYSTEM_ERROR", "系统错误"),  # WeChat defines no code
    ReverseAnswer.RETRY: (500, "SYSTEM_ERROR", "系统错误"),  # v3 has no recall: just again
    ReverseAnswer.EXPIRED: (400, "REVERSE_EXPIRE", "订单已经超过撤销时间"),
}
_TRADE_STATES = {
    TradeState.WAITING: ("USERPAYING", "需要用户输入支付密码"),
    TradeState.PAID: ("SUCCESS", "支付成功"),
    TradeState.FAILED: ("PAYERROR", "支付失败"),
    TradeState.REVERSED: ("REVOKED", "已撤销"),
    TradeState.REFUNDED: ("REVOKED", "已撤销"),
    TradeState.CLOSED: ("CLOSED", "已关闭"),
}
_REFUND_STATUSES = {RefundStatus.PROCESSING: "PROCESSING", RefundStatus.SUCCESS: "SUCCESS",
                    RefundStatus.CHANGE: "ABNORMAL"}


def _time(at: float) -> str:
    return datetime.fromtimestamp(at, BEIJING).isoformat(timespec="seconds")


class WechatV3Gateway:
    """WeChat Pay v3 as the simulator plays it. See the module docstring."""

    name = "wechat_v3"

    def __init__(self, sandbox: WechatV3Sandbox, ledger: Ledger, *,
                 clock: Callable[[], float], url: Callable[[], str],
                 min_reverse_delay_s: float = 15.0) -> None:
        self._sandbox = sandbox
        self._ledger = ledger
        self._clock = clock
        self._url = url
        self._min_reverse_delay_s = min_reverse_delay_s
        self._sequence = itertools.count(1)
        self._bills: dict[str, str] = {}  # download token -> bill date

    def handles(self, path: str) -> bool:
        return path.startswith("/v3/")

    def fault_paths(self, request: Request) -> tuple[str, ...]:
        """Its path, and ``/v3/<call>`` (codepay, query, reverse, refund, refundquery,
        tradebill, file) for the calls whose path names a trade."""
        return (request.path, f"/v3/{self._endpoint(request)}")

    def tamper(self, reply: Reply, kind: Tamper) -> Reply:
        signed = wire.AnswerSignature.from_headers(reply.headers)
        if kind == "slash" or signed is None:
            return reply  # JSON without escaped "/" here; unsigned answers: nothing to do
        body = reply.body
        if kind == "wrong_trade":
            try:
                data = json.loads(body)
            except ValueError:
                return reply
            if isinstance(data, dict) and "out_trade_no" in data:
                data["out_trade_no"] = str(data["out_trade_no"])[:-1] + "X"
            body = json.dumps(data, ensure_ascii=False).encode()
            key = self._sandbox.signers[signed.serial]
        else:
            key = _WRONG_KEY.get()
        again = wire.sign_answer(body, key, signed.serial, timestamp=signed.timestamp,
                                 nonce=signed.nonce)
        return dataclasses.replace(reply, body=body, headers=again.headers())

    # --- one request ------------------------------------------------------------------------

    def handle(self, request: Request) -> Reply:
        now = self._clock()
        endpoint = self._endpoint(request)
        url = request.path + (f"?{request.query}" if request.query else "")
        if (problem := self._authenticate(request, url)) is not None:
            self._reject(endpoint, "", now, problem)
            return Reply(401, json.dumps({"code": "SIGN_ERROR", "message": problem},
                                         ensure_ascii=False).encode(), _JSON)
        asked = request.headers.get("wechatpay-serial", "")
        query = {k: v[0] for k, v in parse_qs(request.query).items()}
        try:
            data = json.loads(request.body) if request.body else {}
        except (ValueError, UnicodeDecodeError):
            return self._error(asked, 400, "PARAM_ERROR", "请求体不是合法的JSON")
        if not isinstance(data, dict):
            return self._error(asked, 400, "PARAM_ERROR", "请求体不是JSON对象")
        path = request.path
        if request.method == "POST" and path in ("/v3/pay/transactions/codepay",
                                                 "/v3/pay/partner/transactions/codepay"):
            return self._codepay(asked, data, partner="/partner/" in path, now=now)
        if (match := _BY_NUMBER.fullmatch(path)) is not None:
            partner, number = bool(match.group(1)), unquote(match.group(2))
            self._ledger.count_call(CHANNEL, number, "v3 " + endpoint)
            if match.group(3) and request.method == "POST":
                if (wrong := self._ids(data, partner)) is not None:
                    return self._error(asked, 400, "PARAM_ERROR", wrong)
                return self._reverse(asked, number, now)
            if not match.group(3) and request.method == "GET":
                if (wrong := self._ids(query, partner, query=True)) is not None:
                    return self._error(asked, 400, "PARAM_ERROR", wrong)
                return self._query(asked, number, query if partner else None, now)
        if path == "/v3/refund/domestic/refunds" and request.method == "POST":
            return self._refund(asked, data, now)
        if (match := _REFUND_BY_NUMBER.fullmatch(path)) and request.method == "GET":
            return self._refund_query(asked, unquote(match.group(1)), now)
        if path == "/v3/bill/tradebill" and request.method == "GET":
            return self._tradebill(asked, query, now)
        if path == "/v3/billdownload/file" and request.method == "GET":
            return self._download(query, now)
        return self._error(asked, 404, "NOT_FOUND", "无效的请求路径或方法")

    @staticmethod
    def _endpoint(request: Request) -> str:
        path = request.path
        if path.endswith("/codepay"):
            return "codepay"
        if path.endswith("/reverse"):
            return "reverse"
        if "/out-trade-no/" in path:
            return "query"
        if path.startswith("/v3/refund/domestic/refunds/"):
            return "refundquery"
        if path == "/v3/refund/domestic/refunds":
            return "refund"
        return path.rsplit("/", 1)[-1]

    def _authenticate(self, request: Request, url: str) -> str | None:
        """Why the request's signature is not the merchant's, or None."""
        try:
            auth = wire.parse_authorization(request.headers.get("authorization", ""))
        except wire.WireError as err:
            return f"Authorization: {err}"
        if auth["mchid"] != self._sandbox.mchid:
            return "Authorization 的 mchid 与商户号不符"
        if not wire.same_serial(auth["serial_no"], self._sandbox.merchant_serial_no):
            return "商户证书序列号有误"
        message = wire.request_message(request.method, url, auth["timestamp"],
                                       auth["nonce_str"], request.body)
        if not wire.verify(message, auth["signature"], self._sandbox.merchant_key):
            return "签名错误"
        return None

    def _ids(self, data: Mapping[str, object], partner: bool, *, query: bool = False) -> str | None:
        """Why the merchant ids in a body or query string are not this sandbox's, or None."""
        s = self._sandbox
        if partner:
            if data.get("sp_mchid") != s.mchid or (not query and data.get("sp_appid") != s.appid):
                return "sp_appid/sp_mchid 与服务商不符"
            sub = data.get("sub_mchid")
            if not isinstance(sub, str) or not sub or (s.sub_mchids and sub not in s.sub_mchids):
                return "sub_mchid 无效或未与服务商绑定"
            return None
        if data.get("mchid") != s.mchid or (not query and data.get("appid") != s.appid):
            return "appid和mchid不匹配"
        return None

    def _reject(self, endpoint: str, out_trade_no: str, now: float, why: str) -> None:
        log.info("wechat v3 %s refused: %s", endpoint, why)
        self._ledger.violate(Violation(now, CHANNEL, out_trade_no, endpoint, "request_rejected",
                                       why))

    def _signed(self, asked: str, status: int, data: Mapping[str, object]) -> Reply:
        body = json.dumps(data, ensure_ascii=False).encode()
        name, key = self._sandbox.signer(asked)
        signed = wire.sign_answer(body, key, name, timestamp=str(int(self._clock())),
                                  nonce=secrets.token_hex(16))
        return Reply(status, body, _JSON, headers=signed.headers())

    def _error(self, asked: str, status: int, code: str, message: str) -> Reply:
        if status >= 500:
            return Reply(status, json.dumps({"code": code, "message": message},
                                            ensure_ascii=False).encode(), _JSON)
        return self._signed(asked, status, {"code": code, "message": message})

    # --- endpoints -----------------------------------------------------------------------------

    def _merchant(self, trade_ids: Mapping[str, object]) -> dict[str, object]:
        s = self._sandbox
        if "sub_mchid" in trade_ids:
            return {"sp_appid": s.appid, "sp_mchid": s.mchid,
                    "sub_mchid": trade_ids["sub_mchid"],
                    **({"sub_appid": trade_ids["sub_appid"]} if "sub_appid" in trade_ids else {})}
        return {"appid": s.appid, "mchid": s.mchid}

    def _codepay(self, asked: str, data: dict[str, object], *, partner: bool,
                 now: float) -> Reply:
        number = data.get("out_trade_no")
        if isinstance(number, str) and number:
            self._ledger.count_call(CHANNEL, number, "v3 codepay")
        if (wrong := self._ids(data, partner)) is not None:
            return self._error(asked, 400, "PARAM_ERROR", wrong)
        payer, amount = data.get("payer"), data.get("amount")
        code = payer.get("auth_code") if isinstance(payer, dict) else None
        total = amount.get("total") if isinstance(amount, dict) else None
        scene = data.get("scene_info")
        if not isinstance(number, str) or not _OUT_NO.fullmatch(number):
            return self._error(asked, 400, "PARAM_ERROR", "out_trade_no参数格式错误")
        if not isinstance(total, int) or isinstance(total, bool) or not 0 < total < 10**10:
            return self._error(asked, 400, "PARAM_ERROR", "amount.total参数格式错误")
        if not isinstance(scene, dict) or not scene.get("device_ip"):
            return self._error(asked, 400, "PARAM_ERROR", "缺少参数scene_info.device_ip")
        if not isinstance(data.get("description"), str) or not data["description"]:
            return self._error(asked, 400, "PARAM_ERROR", "缺少参数description")
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            return self._error(asked, 400, "AUTH_CODE_INVALID",
                               "请扫描微信支付授权码(以10/11/12/13/14/15为前缀的18位数字)")
        request = PayRequest(channel=CHANNEL, out_trade_no=number, auth_code=code,
                             amount=Fen(total), channel_trade_no=self._transaction_id(now),
                             subject=str(data["description"]),
                             attach=str(data.get("attach", "")))
        answer, trade = self._ledger.pay(request, now)
        log.info("wechat v3 codepay %s code %s %s fen: %s", number, trade.auth_code, total,
                 answer.value)
        ids = self._merchant(data)
        if answer in (PayAnswer.PAID, PayAnswer.HANG_BUT_PAID):
            reply = self._signed(asked, 200, ids | self._paid(trade))
            return dataclasses.replace(reply, hang=answer is PayAnswer.HANG_BUT_PAID)
        if answer is PayAnswer.WAITING:
            return self._signed(asked, 202, {"trade_state": "USERPAYING"})
        if answer is PayAnswer.DECLINED:
            return self._error(asked, *_DECLINES[trade.outcome])
        return self._error(asked, *_PAY_ERRORS[answer])

    @staticmethod
    def _paid(trade: Trade) -> dict[str, object]:
        paid_at = trade.paid_at if trade.paid_at is not None else trade.created_at
        return {"out_trade_no": trade.out_trade_no, "transaction_id": trade.channel_trade_no,
                "trade_type": "MICROPAY", "trade_state": "SUCCESS",
                "trade_state_desc": "支付成功", "bank_type": "OTHERS",
                "attach": trade.attach, "success_time": _time(paid_at),
                "payer": {"openid": "oSIM" + trade.buyer_ref},
                "amount": {"total": int(trade.amount), "payer_total": int(trade.amount),
                           "currency": "CNY", "payer_currency": "CNY"}}

    def _query(self, asked: str, number: str, partner: Mapping[str, str] | None,
               now: float) -> Reply:
        trade = self._ledger.find(CHANNEL, now, out_trade_no=number)
        if trade is None:
            return self._error(asked, 404, "ORDER_NOT_EXIST", "订单不存在")
        s = self._sandbox
        ids: dict[str, object] = ({"sp_appid": s.appid, "sp_mchid": s.mchid,
                                   "sub_mchid": partner["sub_mchid"]} if partner is not None
                                  else {"appid": s.appid, "mchid": s.mchid})
        if trade.state is TradeState.PAID:
            return self._signed(asked, 200, ids | self._paid(trade))
        state, desc = _TRADE_STATES[trade.state]
        return self._signed(asked, 200, ids | {
            "out_trade_no": trade.out_trade_no, "trade_state": state, "trade_state_desc": desc,
            "trade_type": "MICROPAY", "amount": {"total": int(trade.amount), "currency": "CNY"}})

    def _reverse(self, asked: str, number: str, now: float) -> Reply:
        trade = self._ledger.find(CHANNEL, now, out_trade_no=number)
        answer = self._ledger.reverse(trade, now, min_delay_s=self._min_reverse_delay_s)
        log.info("wechat v3 reverse %s: %s", number, answer.value)
        if answer in (ReverseAnswer.CLOSED, ReverseAnswer.REFUNDED):
            return self._signed(asked, 200, {"appid": self._sandbox.appid,
                                             "mchid": self._sandbox.mchid,
                                             "out_trade_no": number})
        return self._error(asked, *_REVERSE_ERRORS[answer])

    def _refund(self, asked: str, data: dict[str, object], now: float) -> Reply:
        number, refund_no = data.get("out_trade_no"), data.get("out_refund_no")
        amount = data.get("amount")
        refund = amount.get("refund") if isinstance(amount, dict) else None
        total = amount.get("total") if isinstance(amount, dict) else None
        if isinstance(number, str) and number:
            self._ledger.count_call(CHANNEL, number, "v3 refund")
        if not isinstance(number, str) or not isinstance(refund_no, str) or not refund_no:
            return self._error(asked, 400, "PARAM_ERROR", "缺少参数out_trade_no或out_refund_no")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                   for v in (refund, total)):
            return self._error(asked, 400, "PARAM_ERROR", "amount参数格式错误")
        assert isinstance(refund, int) and isinstance(total, int)
        if "sub_mchid" in data and self._ids({"sp_mchid": self._sandbox.mchid,
                                              "sp_appid": self._sandbox.appid, **data},
                                             True) is not None:
            return self._error(asked, 400, "PARAM_ERROR", "sub_mchid 无效或未与服务商绑定")
        trade = self._ledger.find(CHANNEL, now, out_trade_no=number)
        if trade is not None and total != trade.amount:
            return self._error(asked, 400, "PARAM_ERROR", "订单金额与原订单不一致")
        reply, entry = self._ledger.refund(trade, refund_no, Fen(refund), now)
        log.info("wechat v3 refund %s %s: %s", number, refund_no, reply.value)
        match reply:
            case RefundReply.NO_TRADE:
                return self._error(asked, 404, "RESOURCE_NOT_EXISTS", "订单不存在")
            case RefundReply.NOT_PAID:
                return self._error(asked, 400, "INVALID_REQUEST", "订单未支付，不能退款")
            case RefundReply.TOO_MUCH:
                return self._error(asked, 400, "INVALID_REQUEST", "累计退款金额大于支付金额")
            case RefundReply.MISMATCH:
                return self._error(asked, 400, "INVALID_REQUEST", "同一笔退款单号的退款金额不一致")
            case RefundReply.BALANCE:
                return self._error(asked, 403, "NOT_ENOUGH", "基本账户余额不足，请充值后重新发起")
            case RefundReply.ERROR_BUT_DONE:
                return self._error(asked, 500, "SYSTEM_ERROR", "系统错误")
        assert trade is not None and entry is not None
        reply_obj = self._signed(asked, 200, self._refund_json(trade, entry.out_refund_no, now))
        return dataclasses.replace(reply_obj, hang=reply is RefundReply.HANG_BUT_DONE)

    def _refund_json(self, trade: Trade, out_refund_no: str, now: float) -> dict[str, object]:
        entry = self._ledger.find_refund(trade, out_refund_no, now)
        assert entry is not None
        body: dict[str, object] = {
            "refund_id": entry.channel_refund_no, "out_refund_no": entry.out_refund_no,
            "transaction_id": trade.channel_trade_no, "out_trade_no": trade.out_trade_no,
            "channel": "ORIGINAL", "user_received_account": "支付用户零钱",
            "create_time": _time(now), "status": _REFUND_STATUSES[entry.status],
            "amount": {"total": int(trade.amount), "refund": int(entry.amount),
                       "payer_total": int(trade.amount), "payer_refund": int(entry.amount),
                       "currency": "CNY"}}
        if entry.succeeded_at is not None:
            body["success_time"] = _time(entry.succeeded_at)
        return body

    def _refund_query(self, asked: str, out_refund_no: str, now: float) -> Reply:
        trade = next((t for t in self._ledger.trades(now) if t.channel == CHANNEL and any(
            r.out_refund_no == out_refund_no for r in t.refunds)), None)
        if trade is None:
            return self._error(asked, 404, "RESOURCE_NOT_EXISTS", "退款单不存在")
        self._ledger.count_call(CHANNEL, trade.out_trade_no, "v3 refundquery")
        return self._signed(asked, 200, self._refund_json(trade, out_refund_no, now))

    def _tradebill(self, asked: str, query: Mapping[str, str], now: float) -> Reply:
        day_text = query.get("bill_date", "")
        if not _BILL_DATE.fullmatch(day_text) or query.get("bill_type", "ALL") != "ALL" \
                or query.get("tar_type", "GZIP") not in ("", "GZIP"):
            return self._error(asked, 400, "PARAM_ERROR", "bill_date, bill_type或tar_type参数错误")
        text = self._bill_text(day_text, now)
        if text is None:
            return self._error(asked, 400, "NO_STATEMENT_EXIST", "账单不存在")
        token = secrets.token_urlsafe(16)
        self._bills[token] = day_text
        return self._signed(asked, 200, {
            "hash_type": "SHA1", "hash_value": hashlib.sha1(text.encode()).hexdigest(),
            "download_url": f"{self._url()}/v3/billdownload/file?token={token}"})

    def _download(self, query: Mapping[str, str], now: float) -> Reply:
        day_text = self._bills.get(query.get("token", ""))
        text = None if day_text is None else self._bill_text(day_text, now)
        if text is None:
            return Reply(400, b'{"code":"PARAM_ERROR","message":"token invalid"}', _JSON)
        # The file itself is not signed (WeChat: no signature on the download's answer).
        return Reply(200, gzip.compress(text.encode()), "application/octet-stream")

    def _bill_text(self, day_text: str, now: float) -> str | None:
        trades = [t for t in self._ledger.trades(now) if t.channel == CHANNEL]
        return render_bill(trades, appid=self._sandbox.appid, mch_id=self._sandbox.mchid,
                           day=date.fromisoformat(day_text), bill_type="ALL", now=now,
                           edits=self._ledger.bill_edits(CHANNEL))

    def _transaction_id(self, now: float) -> str:
        day = datetime.fromtimestamp(now, BEIJING).strftime("%Y%m%d")
        sequence = next(self._sequence) % 1_000_000
        return f"4200{sequence:06d}{day}{secrets.randbelow(10**10):010d}"


class _WrongKey:
    """One throw-away key for the badsign fault, made on first use (RSA keys take time)."""

    def __init__(self) -> None:
        self._key: rsa.RSAPrivateKey | None = None

    def get(self) -> rsa.RSAPrivateKey:
        if self._key is None:
            self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return self._key


_WRONG_KEY = _WrongKey()
