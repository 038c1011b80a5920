# SPDX-License-Identifier: MIT
"""WeChat Pay API v3 client: codepay, query, reverse, refunds and the trade bill. [shell]

The same rules as the v2 client (posd.channels.wechat.client), in v3's wire form
(reference/channels.md §1.11; posd.core.wechat_v3_wire for the signatures):

- Every request is JSON, signed ``WECHATPAY2-SHA256-RSA2048`` with the merchant's API key
  and certificate serial; in public-key mode posd names the key it expects the answer to be
  signed with (``Wechatpay-Serial: PUB_KEY_ID_…``).
- An answer is used only if its ``Wechatpay-Signature`` verifies with the key its
  ``Wechatpay-Serial`` names (the WeChat Pay public key or a configured platform
  certificate), it is a JSON object of at most ``MAX_BODY`` bytes, and it is for our
  merchant (``mchid``, or ``sp_mchid`` + ``sub_mchid`` in partner mode) and for the trade we
  asked about. Anything else is ``Unknown(may_have_arrived=True)``: money may have moved,
  so the engine queries -- never "declined".
- HTTP 5xx (``SYSTEM_ERROR``) and 429 (``FREQUENCY_LIMITED``) are Unknown. A 4xx error is
  mapped by its ``code`` only when it is signed; the one unsigned refusal trusted for a pay
  is 401 (WeChat could not authenticate the request, so it did nothing with it): Declined as
  a misconfigured till, as v2's unsigned ``return_code=FAIL`` is.
- While the customer confirms, codepay answers ``{"trade_state": "USERPAYING"}`` (200 or
  202) and keeps doing so after a wrong password: Pending, and the engine queries.
- No retries here: what to do next is ``posd.core.sale``'s decision (15 s before a reverse).
- Never logged: the private key, strings-to-sign, full payment codes.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import ClassVar, Final
from urllib.parse import quote, urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from posd.channels import transport
from posd.channels.answers import text, with_text
# v3's query names its trade states as v2's orderquery does (SUCCESS apart: it carries data)
from posd.channels.wechat.client import TRADE_STATES, route_address
from posd.channels.wechat_v3.config import WechatV3Config
from posd.config_base import read_secret
from posd.core import wechat_v3_wire as wire
from posd.core.bills import BillAnswer, BillFailed, NoBill
from posd.core.codes import mask
from posd.core.errors import ConfigError
from posd.core.money import Fen
from posd.core.refund import (
    Abnormal, Accepted, NoRefund, Processing, RefundAnswer, Refunded, RefundRefused,
)
from posd.core.sale import (
    ChannelResult, Closed, Declined, NotFound, Paid, Pending, Refused, Unknown,
)

log = logging.getLogger(__name__)

#: the paths of the direct merchant (普通商户) and of the service provider (服务商)
CODEPAY: Final = "/v3/pay/transactions/codepay"
PARTNER_CODEPAY: Final = "/v3/pay/partner/transactions/codepay"
BY_NUMBER: Final = "/v3/pay/transactions/out-trade-no/"
PARTNER_BY_NUMBER: Final = "/v3/pay/partner/transactions/out-trade-no/"
REFUNDS: Final = "/v3/refund/domestic/refunds"
TRADEBILL: Final = "/v3/bill/tradebill"
BILL_MAX_BYTES: Final = 64 * 1024 * 1024
DESCRIPTION_MAX: Final = 127  # ``description`` string(127), counted in UTF-8 bytes to be safe
REASON_MAX: Final = 80  # refund ``reason`` string(80)

_MISCONFIGURED: Final = (
    "The till is misconfigured for WeChat Pay; no money was taken. "
    "Ask the store manager to check the WeChat Pay v3 settings, or take another payment method."
)
_NEW_CODE: Final = "ask the customer to refresh the payment code and scan again"

#: Errors that say the request itself was wrong (keys, ids, permissions): nothing was done.
CONFIG_ERRORS: Final = (
    "PARAM_ERROR", "SIGN_ERROR", "NO_AUTH", "APPID_MCHID_NOT_MATCH", "MCH_NOT_EXISTS",
    "ACCOUNT_ERROR", "APPID_NOT_EXIST", "MCHID_NOT_EXIST",
)  # fmt: skip
_NOT_FOUND: Final = ("ORDER_NOT_EXIST", "ORDERNOTEXIST", "RESOURCE_NOT_EXISTS")

#: codepay error ``code`` (a signed 4xx) -> result. v3 spells codes with underscores; v2's
#: spellings are accepted beside them (WeChat's v3 codepay error list was not re-read from
#: the live page: channels.md §5). A code not listed is Unknown: never decline what we do not
#: understand.
PAY_ERRORS: Final[Mapping[str, ChannelResult]] = {
    "USERPAYING": Pending("USERPAYING"),
    **{code: Unknown(f"{code}: outcome unknown: query") for code in (
        "SYSTEM_ERROR", "SYSTEMERROR", "BANK_ERROR", "BANKERROR", "FREQUENCY_LIMITED",
        "ORDER_PAID", "ORDERPAID", "OUT_TRADE_NO_USED", "INVALID_REQUEST")},
    **{code: Declined(code, f"The payment code has expired: {_NEW_CODE}.")
       for code in ("AUTH_CODE_EXPIRE", "AUTHCODE_EXPIRE", "AUTHCODEEXPIRE")},
    **{code: Declined(code, f"The payment code was refused (each code works once): {_NEW_CODE}.")
       for code in ("AUTH_CODE_ERROR",)},
    **{code: Declined(code, "This is not a valid WeChat payment code: ask the customer to open "
                      "WeChat Pay's payment code (付款码) and scan again.")
       for code in ("AUTH_CODE_INVALID",)},
    **{code: Declined(code, "Not enough balance: ask the customer to choose another card in "
                      "WeChat or pay another way.") for code in ("NOT_ENOUGH", "NOTENOUGH")},
    **{code: Declined(code, "The customer's card cannot be used here: ask them to choose "
                      "another card or pay another way.")
       for code in ("NOT_SUPPORT_CARD", "NOTSUPORTCARD")},
    "BUYER_MISMATCH": Declined("BUYER_MISMATCH", "Another WeChat account already tried this "
                               "sale: start a new sale."),
    **{code: Declined(code, "WeChat refused this payment: ask the customer to pay another way.")
       for code in ("TRADE_ERROR", "RULE_LIMIT")},
    **{code: Declined(code, "WeChat has closed this payment: start a new sale.")
       for code in ("ORDER_CLOSED", "ORDER_REVERSED")},
    **{code: Declined(code, _MISCONFIGURED) for code in CONFIG_ERRORS},
}

_REVERSE_REFUSED: Final = "WeChat refused to reverse this payment"
#: reverse error ``code`` (signed) -> result. Not listed (SYSTEM_ERROR, USERPAYING,
#: FREQUENCY_LIMITED, INVALID_REQUEST, new codes): Unknown, and the engine reverses again.
REVERSE_ERRORS: Final[Mapping[str, ChannelResult]] = {
    **{code: NotFound(code) for code in _NOT_FOUND},
    "ORDER_REVERSED": Closed("ORDER_REVERSED"),
    "ORDER_CLOSED": Closed("ORDER_CLOSED"),
    "REVERSE_EXPIRE": Refused("REVERSE_EXPIRE", "WeChat no longer reverses this order (older "
                              "than 7 days)", too_late=True),
    **{code: Refused(code, _REVERSE_REFUSED) for code in ("TRADE_ERROR", *CONFIG_ERRORS)},
}

_REFUND_REFUSED: Final = "WeChat refused the refund"
#: refund error ``code`` (signed) -> answer. Not listed (SYSTEM_ERROR, FREQUENCY_LIMITED,
#: ORDER_NOT_EXIST, new codes): Unknown, and posd queries before anything else. v3 refunds
#: are idempotent by out_refund_no, so INVALID_REQUEST ("not by the business rules": paid
#: in full already, more than the payment) is a refusal of this refund, as v2's ``ERROR``.
REFUND_ERRORS: Final[Mapping[str, RefundAnswer]] = {
    "NOT_ENOUGH": RefundRefused("NOT_ENOUGH", "the merchant account's balance is too low"),
    "TRADE_OVERDUE": RefundRefused("TRADE_OVERDUE", "the payment is too old to refund"),
    "USER_ACCOUNT_ABNORMAL": RefundRefused("USER_ACCOUNT_ABNORMAL",
                                           "the customer's account cannot take the refund"),
    "INVALID_REQUEST": RefundRefused("INVALID_REQUEST", _REFUND_REFUSED),
    **{code: RefundRefused(code, _REFUND_REFUSED) for code in CONFIG_ERRORS},
}

#: refund ``status`` -> answer (the refund's own, in its answer and its query).
REFUND_STATUSES: Final[Mapping[str, RefundAnswer]] = {
    "PROCESSING": Processing("PROCESSING"),
    "CLOSED": RefundRefused("CLOSED", "WeChat closed the refund without paying it"),
    "ABNORMAL": Abnormal("ABNORMAL", "the customer's bank card refused the refund (退款异常)"),
}


@dataclass(frozen=True, slots=True)
class Ok:
    """A signed 2xx answer, for our merchant and trade."""

    status: int
    data: Mapping[str, object]


@dataclass(frozen=True, slots=True)
class Error:
    """A 4xx answer: its status and ``code``/``message``, and why it is not trusted (None:
    its signature verified)."""

    status: int
    code: str
    message: str
    untrusted: str | None = None

    @property
    def signed(self) -> bool:
        return self.untrusted is None


_Answer = Ok | Error | Unknown


class WechatPayV3:
    """The WeChat Pay API v3 codepay channel (``posd.channels.Channel``)."""

    name: ClassVar[str] = "wechat_v3"

    def __init__(self, config: WechatV3Config, *, private_key: rsa.RSAPrivateKey,
                 verifier: wire.Verifier, store_id: str = "", body_prefix: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self._config = config
        self._key = private_key
        self._verifier = verifier
        self._store_id = store_id
        self._body_prefix = body_prefix
        self._clock = clock
        self._timeout = (config.connect_timeout_s, config.read_timeout_s)
        self._verify: str | bool = str(config.ca_file) if config.ca_file else True
        self._route_ip: str | None = None
        self._session = transport.session()

    @classmethod
    def from_config(cls, config: WechatV3Config, *, store_id: str = "",
                    body_prefix: str = "") -> WechatPayV3:
        """Read the merchant key (private: 0600/0400) and the keys answers are checked with."""
        return cls(config, private_key=read_private_key(config), verifier=read_verifier(config),
                   store_id=store_id, body_prefix=body_prefix)

    def close(self) -> None:
        self._session.close()

    # --- pay, query, reverse ---------------------------------------------------------------

    def pay(self, out_trade_no: str, amount: Fen, auth_code: str, subject: str) -> ChannelResult:
        """codepay: Paid, Declined, Pending (customer confirming) or Unknown."""
        scene: dict[str, object] = {"device_ip": self._device_ip()}
        if self._store_id:
            scene["store_info"] = {"out_id": self._store_id[:32]}
        payload = self._ids(body=True) | {
            "description": self._description(subject),
            "out_trade_no": out_trade_no,
            "payer": {"auth_code": auth_code},
            "amount": {"total": int(amount), "currency": "CNY"},
            "scene_info": scene,
        }
        path = PARTNER_CODEPAY if self._config.partner else CODEPAY
        answer = _hidden(self._call("POST", path, payload, out_trade_no), auth_code)
        result = _pay_result(answer, path)
        log.info("wechat_v3 pay %s %s fen %s -> %s", out_trade_no, amount, mask(auth_code), result)
        return result

    def query(self, out_trade_no: str, amount: Fen) -> ChannelResult:
        """Query by out_trade_no."""
        answer = self._call("GET", self._by_number(out_trade_no) + "?" + self._ids_query(),
                            None, out_trade_no)
        result = _query_result(answer)
        if isinstance(result, Paid) and result.amount != amount:
            log.warning("wechat_v3 %s: paid %s fen, the sale is for %s", out_trade_no,
                        result.amount, amount)
        log.info("wechat_v3 query %s -> %s", out_trade_no, result)
        return result

    def reverse(self, out_trade_no: str) -> ChannelResult:
        """Reverse (撤销) the trade; a paid trade is refunded by it."""
        path = self._by_number(out_trade_no) + "/reverse"
        answer = self._call("POST", path, self._ids(body=True), out_trade_no)
        result = _reverse_result(answer)
        log.info("wechat_v3 reverse %s -> %s", out_trade_no, result)
        return result

    # --- refunds (DESIGN §9) ----------------------------------------------------------------

    def refund(self, out_trade_no: str, out_refund_no: str, total: Fen, amount: Fen,
               reason: str) -> RefundAnswer:
        """POST /v3/refund/domestic/refunds: SUCCESS (rare at once), PROCESSING (accepted:
        the query says more), or an error."""
        payload: dict[str, object] = {
            "out_trade_no": out_trade_no, "out_refund_no": out_refund_no,
            "reason": "".join(c if c.isprintable() else " " for c in reason)[:REASON_MAX]
            or "refund",
            "amount": {"refund": int(amount), "total": int(total), "currency": "CNY"},
        }
        if self._config.partner:
            payload = {"sub_mchid": self._config.sub_mchid} | payload
        result = _refund_result(self._call("POST", REFUNDS, payload, out_trade_no),
                                out_refund_no)
        log.info("wechat_v3 refund %s %s %s fen -> %s", out_trade_no, out_refund_no, amount,
                 result)
        return result

    def refund_query(self, out_trade_no: str, out_refund_no: str) -> RefundAnswer:
        """GET /v3/refund/domestic/refunds/{out_refund_no}."""
        path = f"{REFUNDS}/{quote(out_refund_no, safe='')}"
        if self._config.partner:
            path += "?" + urlencode({"sub_mchid": self._config.sub_mchid})
        result = _refundquery_result(self._call("GET", path, None, out_trade_no), out_refund_no)
        log.info("wechat_v3 refund query %s %s -> %s", out_trade_no, out_refund_no, result)
        return result

    # --- reconciliation (DESIGN §10) ---------------------------------------------------------

    def download_bill(self, day: date) -> BillAnswer:
        """``GET /v3/bill/tradebill`` of ``day`` (ALL, GZIP), then its ``download_url``.

        The bill answer is signed and names the file's SHA-1; the file itself is not signed
        (WeChat: the download answer carries no signature), so it is checked against that
        hash, after gunzip, and fetched only from the configured host."""
        query = {"bill_date": day.isoformat(), "bill_type": "ALL", "tar_type": "GZIP"}
        if self._config.partner:
            query["sub_mchid"] = self._config.sub_mchid
        answer = self._call("GET", f"{TRADEBILL}?{urlencode(query)}", None, "")
        if isinstance(answer, Unknown):
            return BillFailed(answer.detail)
        if isinstance(answer, Error):
            if answer.signed and answer.code in ("NO_STATEMENT_EXIST", "STATEMENT_CREATING"):
                return NoBill(f"WeChat: {answer.code}: {text(answer.message)}")
            return BillFailed(f"WeChat refused the bill: HTTP {answer.status} {answer.code}: "
                              f"{text(answer.message)}")
        url, hash_type, hash_value = (str(answer.data.get(k, "")) for k in
                                      ("download_url", "hash_type", "hash_value"))
        if hash_type != "SHA1" or not hash_value or not url:
            return BillFailed(f"{TRADEBILL}: answer without download_url or a SHA1 hash")
        if (problem := self._foreign(url)) is not None:
            return BillFailed(f"{TRADEBILL}: {problem}")
        parts = urlsplit(url)
        got = self._send("GET", parts.path + (f"?{parts.query}" if parts.query else ""), b"",
                         BILL_MAX_BYTES)
        if isinstance(got, Unknown):
            return BillFailed(got.detail)
        if got.status != 200:
            return BillFailed(f"bill download: HTTP {got.status}")
        try:
            plain = gzip.decompress(got.body) if got.body[:2] == b"\x1f\x8b" else got.body
        except (OSError, EOFError) as err:
            return BillFailed(f"bill download: not a gzip file ({err})")
        if not hmac.compare_digest(hashlib.sha1(plain).hexdigest(), hash_value.lower()):
            log.warning("ALERT wechat_v3 bill %s: the file's SHA-1 is not the one announced", day)
            return BillFailed("bill download: the file's SHA-1 is not the one WeChat announced")
        log.info("wechat_v3 tradebill %s: %d bytes", day, len(got.body))
        return got.body

    # --- one request ---------------------------------------------------------------------------

    def _ids(self, *, body: bool) -> dict[str, object]:
        """The merchant's ids as a body carries them: appid + mchid, or in partner mode
        sp_appid, sp_mchid, sub_mchid (and sub_appid)."""
        c = self._config
        if not c.partner:
            return {"appid": c.appid, "mchid": c.mchid}
        ids: dict[str, object] = {"sp_appid": c.appid, "sp_mchid": c.mchid,
                                  "sub_mchid": c.sub_mchid}
        if c.sub_appid:
            ids["sub_appid"] = c.sub_appid
        return ids

    def _ids_query(self) -> str:
        c = self._config
        if not c.partner:
            return urlencode({"mchid": c.mchid})
        return urlencode({"sp_mchid": c.mchid, "sub_mchid": c.sub_mchid})

    def _by_number(self, out_trade_no: str) -> str:
        base = PARTNER_BY_NUMBER if self._config.partner else BY_NUMBER
        return base + quote(out_trade_no, safe="")

    def _device_ip(self) -> str:
        if self._config.device_ip:
            return self._config.device_ip
        if self._route_ip is None:
            self._route_ip = route_address(self._config.base_url) or "127.0.0.1"
        return self._route_ip

    def _description(self, subject: str) -> str:
        words = "-".join(p for p in (self._body_prefix, subject) if p.strip()) or "POS"
        words = "".join(ch if ch.isprintable() else " " for ch in words)
        return words.encode()[:DESCRIPTION_MAX].decode(errors="ignore")

    def _foreign(self, url: str) -> str | None:
        """Why a download URL is not one to follow: another scheme, host or port than
        base_url's (WeChat's own is api.mch.weixin.qq.com/v3/billdownload/file)."""
        want, got = urlsplit(self._config.base_url), urlsplit(url)
        if (got.scheme, got.hostname, got.port) != (want.scheme, want.hostname, want.port):
            return f"download_url {url[:80]!r} is not on {self._config.base_url}"
        return None

    def _send(self, method: str, url: str, body: bytes,
              limit: int = wire.MAX_BODY) -> transport.Received | Unknown:
        timestamp, nonce = str(int(self._clock())), secrets.token_hex(16)
        signature = wire.sign(wire.request_message(method, url, timestamp, nonce, body), self._key)
        headers = {
            "Authorization": wire.authorization(
                mchid=self._config.mchid, serial_no=self._config.merchant_serial_no.upper(),
                nonce=nonce, timestamp=timestamp, signature=signature),
            "Accept": "application/json",
            "User-Agent": "posd (WeChat Pay v3 codepay)",
        }
        if body:
            headers["Content-Type"] = "application/json"
        if self._config.wechatpay_public_key_id:
            headers["Wechatpay-Serial"] = self._config.wechatpay_public_key_id
        what = urlsplit(url).path
        return transport.send(self._session, method, self._config.base_url + url,
                              body=body or None, headers=headers, timeout=self._timeout,
                              verify=self._verify, limit=limit, what=what)

    def _call(self, method: str, url: str, payload: Mapping[str, object] | None,
              out_trade_no: str) -> _Answer:
        body = b"" if payload is None else json.dumps(
            payload, ensure_ascii=False, separators=(",", ":")).encode()
        got = self._send(method, url, body)
        if isinstance(got, Unknown):
            return got
        return self._check(urlsplit(url).path, got, out_trade_no)

    def _check(self, path: str, got: transport.Received, out_trade_no: str) -> _Answer:
        """Authenticate and read an answer; see the module docstring for the rules."""
        if got.status >= 500 or got.status == 429:
            code = _error_fields(got.body)[0]
            return Unknown(f"{path}: HTTP {got.status} {code}".rstrip())
        problem = self._verifier.problem(wire.AnswerSignature.from_headers(got.headers), got.body)
        if 400 <= got.status < 500:
            code, message = _error_fields(got.body)
            return Error(got.status, code, message, problem)
        if problem is not None:
            log.warning("ALERT wechat_v3 %s %s: %s", path, out_trade_no, problem)
            return Unknown(f"{path}: {problem}")
        if got.status not in (200, 202, 204):
            return Unknown(f"{path}: HTTP {got.status}")
        if got.status == 204 or not got.body.strip():
            return Ok(got.status, {})
        try:
            data = json.loads(got.body)
        except (ValueError, UnicodeDecodeError) as err:
            return Unknown(f"{path}: unreadable answer: {err}")
        if not isinstance(data, dict):
            return Unknown(f"{path}: the answer is not a JSON object")
        if (wrong := self._not_ours(data, out_trade_no)) is not None:
            log.warning("ALERT wechat_v3 %s %s: %s", path, out_trade_no, wrong)
            return Unknown(f"{path}: {wrong}")
        return Ok(got.status, data)

    def _not_ours(self, data: Mapping[str, object], out_trade_no: str) -> str | None:
        c = self._config
        if c.partner:
            if data.get("sp_mchid", c.mchid) != c.mchid or data.get(
                    "sub_mchid", c.sub_mchid) != c.sub_mchid:
                return "the answer is for another sp_mchid/sub_mchid"
        elif data.get("mchid", c.mchid) != c.mchid:
            return "the answer is for another mchid"
        if out_trade_no and data.get("out_trade_no", out_trade_no) != out_trade_no:
            return "the answer is for another out_trade_no"
        return None


# --- keys -------------------------------------------------------------------------------------


def read_private_key(config: WechatV3Config) -> rsa.RSAPrivateKey:
    raw = read_secret(config.private_key_file, "channels.wechat_v3.private_key_file")
    try:
        return wire.load_private_key(raw)
    except wire.WireError as err:
        raise ConfigError(f"channels.wechat_v3.private_key_file: {err}") from err


def read_verifier(config: WechatV3Config) -> wire.Verifier:
    """The WeChat Pay public key and the platform certificates, by the names answers use."""
    public = None
    if config.wechatpay_public_key_file is not None:
        key = "channels.wechat_v3.wechatpay_public_key_file"
        try:
            public = (config.wechatpay_public_key_id,
                      wire.load_public_key(config.wechatpay_public_key_file.read_bytes()))
        except (OSError, wire.WireError) as err:
            raise ConfigError(f"{key}: {err}") from err
    certificates = {}
    for n, path in enumerate(config.platform_cert_files):
        try:
            cert = wire.load_certificate(path.read_bytes())
        except (OSError, wire.WireError) as err:
            raise ConfigError(f"channels.wechat_v3.platform_cert_files[{n}]: {err}") from err
        public_key = cert.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)  # load_certificate checked it
        certificates[wire.serial_hex(cert)] = public_key
    try:
        return wire.Verifier(public, certificates)
    except wire.WireError as err:
        raise ConfigError(f"channels.wechat_v3: {err}") from err


# --- answers -> results -------------------------------------------------------------------------


def _error_fields(body: bytes) -> tuple[str, str]:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return "", ""
    if not isinstance(data, dict):
        return "", ""
    return text(str(data.get("code", "")), 40), text(str(data.get("message", "")))


def _paid(data: Mapping[str, object], path: str) -> ChannelResult:
    """A SUCCESS answer must name the trade, WeChat's transaction and the amount in fen."""
    amount = data.get("amount")
    total = amount.get("total") if isinstance(amount, dict) else None
    transaction_id = data.get("transaction_id")
    if (not data.get("out_trade_no") or not isinstance(transaction_id, str) or not transaction_id
            or not isinstance(total, int) or isinstance(total, bool) or total < 0):
        return Unknown(f"{path}: SUCCESS without out_trade_no, transaction_id or amount.total")
    return Paid(transaction_id, Fen(total))


def _state(data: Mapping[str, object], path: str) -> ChannelResult:
    state = str(data.get("trade_state", ""))
    if state == "SUCCESS":
        return _paid(data, path)
    known = TRADE_STATES.get(state)
    if known is None:
        return Unknown(f"{path}: trade_state {text(state)!r}")
    return with_text(known, str(data.get("trade_state_desc", "")), "微信")


def _by_code(table: Mapping[str, ChannelResult], answer: Error, path: str) -> ChannelResult:
    known = table.get(answer.code)
    if known is None:
        return Unknown(f"{path}: HTTP {answer.status} {answer.code!r}: {answer.message}")
    return with_text(known, answer.message, "微信")


def _pay_result(answer: _Answer, path: str) -> ChannelResult:
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Error):
        if answer.signed:
            return _by_code(PAY_ERRORS, answer, path)
        if answer.status == 401:  # not authenticated: WeChat did nothing with the request
            said = " ".join(p for p in ("HTTP 401", answer.code, answer.message) if p)
            return Declined(answer.code or "HTTP_401", f"{_MISCONFIGURED} (WeChat: {said})")
        return Unknown(f"{path}: HTTP {answer.status} {answer.code!r} not trusted "
                       f"({answer.untrusted}): query")
    state = str(answer.data.get("trade_state", ""))
    if state == "USERPAYING":
        return Pending("USERPAYING")
    if state == "SUCCESS":
        return _paid(answer.data, path)
    return Unknown(f"{path}: trade_state {text(state)!r}")


def _query_result(answer: _Answer) -> ChannelResult:
    path = BY_NUMBER + "…"
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Error):
        if answer.signed and answer.code in _NOT_FOUND:
            return NotFound(answer.code)
        return Unknown(f"{path}: HTTP {answer.status} {answer.code!r}: {answer.message}")
    return _state(answer.data, path)


def _reverse_result(answer: _Answer) -> ChannelResult:
    path = BY_NUMBER + "…/reverse"
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Error):
        if not answer.signed:
            return Unknown(f"{path}: HTTP {answer.status} {answer.code!r} not trusted "
                           f"({answer.untrusted}): again")
        return _by_code(REVERSE_ERRORS, answer, path)
    return Closed("reversed", refunded=None)


def _refund_status(data: Mapping[str, object], out_refund_no: str, path: str,
                   *, answer: bool) -> RefundAnswer:
    if data.get("out_refund_no", out_refund_no) != out_refund_no:
        return Unknown(f"{path}: the answer is for another out_refund_no")
    status, refund_id = str(data.get("status", "")), str(data.get("refund_id", ""))
    if status == "SUCCESS":
        return Refunded(refund_id)
    if status == "PROCESSING" and answer:
        return Accepted(refund_id)  # taken: the query says when it is paid out
    known = REFUND_STATUSES.get(status)
    return known if known is not None else Unknown(f"{path}: refund status {text(status)!r}")


def _refund_result(answer: _Answer, out_refund_no: str) -> RefundAnswer:
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Error):
        known = REFUND_ERRORS.get(answer.code) if answer.signed else None
        if known is None:
            return Unknown(f"{REFUNDS}: HTTP {answer.status} {answer.code!r}: {answer.message}")
        if isinstance(known, RefundRefused) and answer.message:
            return RefundRefused(known.code, f"{known.message} (微信: {answer.message})")
        return known
    return _refund_status(answer.data, out_refund_no, REFUNDS, answer=True)


def _refundquery_result(answer: _Answer, out_refund_no: str) -> RefundAnswer:
    path = REFUNDS + "/…"
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Error):
        if answer.signed and answer.code in _NOT_FOUND:
            return NoRefund(answer.code)
        return Unknown(f"{path}: HTTP {answer.status} {answer.code!r}: {answer.message}")
    return _refund_status(answer.data, out_refund_no, path, answer=False)


def _hidden(answer: _Answer, auth_code: str) -> _Answer:
    """The payment code masked wherever WeChat might echo it (a message, a field)."""
    if not auth_code or isinstance(answer, Unknown):
        return answer
    hidden = mask(auth_code)
    if isinstance(answer, Error):
        return Error(answer.status, answer.code, answer.message.replace(auth_code, hidden),
                     answer.untrusted)
    data = {k: v.replace(auth_code, hidden) if isinstance(v, str) else v
            for k, v in answer.data.items() if k != "payer"}
    return Ok(answer.status, data)
