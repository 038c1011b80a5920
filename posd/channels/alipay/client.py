# SPDX-License-Identifier: MIT
"""Alipay face-to-face bar-code client (当面付条码): trade.pay, .query, .cancel, .refund and
fastpay.refund.query. [shell]

Every call returns a :data:`posd.core.sale.ChannelResult` value, never raises for what the channel
or the network did, never returns a dict (reference/channels.md §2, §4).

- Requests go to ``gateway.do`` as the official SDK sends them: the common parameters and
  ``sign`` in the query string, ``biz_content`` in a form body, ``charset=utf-8``, RSA2
  signed with the app private key (``alipay_wire``). ``timestamp`` is Beijing time, whatever
  the host's time zone (both public SDKs use local time: a till set to UTC would be 8 h off).
- An answer is used only if it is JSON (at most ``MAX_BODY`` bytes) holding the method's
  ``_response`` (or ``error_response``), signed by the *Alipay* public key over its raw text
  as received, and about the ``out_trade_no`` we asked for. Anything else is
  ``Unknown(may_have_arrived=True)``: money may have moved, so the engine queries.
- Gateway refusals (codes 20001, 40001, 40002, 40006: the request was not accepted, often
  unsigned) mean no trade was made: pay -> ``Declined``, query and cancel -> ``Unknown`` (a
  cancel is sent again with backoff: e.g. 40002 isv.invalid-timestamp while the clock is off). Code 20000 and sub_code ACQ.SYSTEM_ERROR are Unknown whatever else they say.
- Transport failures follow urllib3's rule (``posd.channels.transport``).
- Never logged: the private key, strings-to-sign, full payment codes (``posd.core.codes.mask``).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, ClassVar, Final
from urllib.parse import urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from posd.channels import transport
from posd.channels.answers import Rejected, hide, logged_query, scrub, text, with_text
from posd.core.zones import BEIJING
from posd.core import alipay_codes as codes
from posd.core import alipay_wire as wire
from posd.core.bills import BillAnswer, BillFailed, NoBill
from posd.core.codes import mask
from posd.channels.alipay.config import AlipayConfig
from posd.config_base import read_secret
from posd.core.errors import AmountError, ConfigError
from posd.core.money import Fen, format_yuan, parse_yuan
from posd.core.refund import (
    Abnormal, Accepted, NoRefund, Processing, RefundAnswer, Refunded, RefundRefused,
)
from posd.core.sale import ChannelResult, Closed, Declined, NotFound, Paid, Pending, Unknown

if TYPE_CHECKING:  # certificate mode's module (and cryptography's X.509) only in that mode
    from posd.core.alipay_certs import CertMode

log = logging.getLogger(__name__)

PAY: Final = "alipay.trade.pay"
QUERY: Final = "alipay.trade.query"
CANCEL: Final = "alipay.trade.cancel"
REFUND: Final = "alipay.trade.refund"
REFUND_QUERY: Final = "alipay.trade.fastpay.refund.query"
BILL: Final = "alipay.data.dataservice.bill.downloadurl.query"
#: Alipay's current certificate by its SN, when an answer names another (certificate mode)
CERT_DOWNLOAD: Final = "alipay.open.app.alipaycert.download"
#: a day's bill zip: 10,000 rows are about 0.5 MB; more than this is not a bill
BILL_MAX_BYTES: Final = 64 * 1024 * 1024
REFUND_REASON_MAX: Final = 256  # refund_reason String(256)
SUBJECT_MAX: Final = 256  # trade.pay ``subject`` String(256)
_STRING_TO_SIGN: Final = re.compile(r"[，,]?\s*(网关生成的)?验签字符串.*", re.DOTALL)


_Reply = wire.Answer | Rejected | Unknown


class Alipay:
    """The Alipay channel (``posd.channels.Channel``)."""

    name: ClassVar[str] = "alipay"

    def __init__(
        self,
        config: AlipayConfig,
        *,
        app_private_key: rsa.RSAPrivateKey,
        alipay_public_key: rsa.RSAPublicKey,
        store_id: str = "",
        terminal_id: str = "",
        clock: Callable[[], float] = time.time,
        app_auth_token: str = "",
        certs: CertMode | None = None,
    ) -> None:
        if wire.same_key(app_private_key.public_key(), alipay_public_key):
            # The #1 cause of verification failures in python-alipay-sdk's tracker (§4).
            raise ConfigError(
                "channels.alipay.alipay_public_key_file: this is the app's own public key; "
                "use the Alipay public key (支付宝公钥) shown in the Alipay console"
            )
        self._config = config
        self._private_key = app_private_key
        self._public_key = alipay_public_key
        self._store_id = store_id
        self._terminal_id = terminal_id
        self._clock = clock
        self._app_auth_token = app_auth_token
        self._certs = certs
        self._rotating = threading.Lock()
        self._timeout = (config.connect_timeout_s, config.read_timeout_s)
        self._verify: str | bool = str(config.ca_file) if config.ca_file else True
        self._session = transport.session()

    @classmethod
    def from_config(
        cls,
        config: AlipayConfig,
        *,
        store_id: str = "",
        terminal_id: str = "",
        clock: Callable[[], float] = time.time,
    ) -> Alipay:
        """Read the app private key (a private file: 0600/0400) and the Alipay public key."""
        raw = read_secret(config.app_private_key_file, "channels.alipay.app_private_key_file")
        try:
            private_key = wire.load_private_key(raw)
        except wire.WireError as err:
            raise ConfigError(f"channels.alipay.app_private_key_file: {err}") from None
        certs = read_cert_mode(config) if config.cert_mode else None
        path = config.alipay_public_key_file
        try:
            public_key = certs.alipay_public_key if certs is not None else \
                wire.load_public_key(path.read_bytes() if path else b"")
        except OSError as err:
            raise ConfigError(
                f"channels.alipay.alipay_public_key_file: {path}: {err.strerror or err}"
            ) from err
        except wire.WireError as err:
            raise ConfigError(f"channels.alipay.alipay_public_key_file: {err}") from None
        token = ""
        if config.app_auth_token_file is not None:
            token = read_secret(config.app_auth_token_file,
                                "channels.alipay.app_auth_token_file").decode(
                                    "ascii", errors="replace").strip()
            if not token or not token.isascii() or not token.isprintable():
                raise ConfigError("channels.alipay.app_auth_token_file: not an app_auth_token "
                                  "(one line of ASCII, as the ISV authorisation gave it)")
        return cls(config, app_private_key=private_key, alipay_public_key=public_key,
                   store_id=store_id, terminal_id=terminal_id, clock=clock,
                   app_auth_token=token, certs=certs)

    def close(self) -> None:
        self._session.close()

    # --- the three calls -------------------------------------------------------------------

    def pay(self, out_trade_no: str, amount: Fen, auth_code: str, subject: str) -> ChannelResult:
        """trade.pay, scene bar_code. Paid, Declined, Pending (10003) or Unknown."""
        biz = {
            "out_trade_no": out_trade_no,
            "scene": "bar_code",
            "auth_code": auth_code,
            "subject": _subject(subject),
            "total_amount": format_yuan(amount),  # a string: never a binary float
            "product_code": "FACE_TO_FACE_PAYMENT",
            "store_id": self._store_id,
            "terminal_id": self._terminal_id,
        }
        reply = _hide(self._call(PAY, self._pay_biz(biz), out_trade_no), auth_code)
        result = _pay_result(reply)
        log.info("alipay pay %s %s fen %s -> %s", out_trade_no, amount, mask(auth_code), result)
        return result

    def _rotate(self, wanted_sn: str) -> str | None:
        """Alipay rotated its certificate (an answer names ``wanted_sn``): download it with
        alipaycert.download, trust it only under the root bundle and only if the download's
        own answer verifies with it, then use it. None when done; else why not (the
        official SDKs' "无感知升级", alipay-sdk-java-all ``AlipayClient``)."""
        with self._rotating:
            certs = self._certs
            assert certs is not None
            if certs.alipay_cert_sn == wanted_sn:
                return None  # another thread did it meanwhile
            from posd.core.alipay_certs import CertError, rotated

            raw = self._send(CERT_DOWNLOAD, {"alipay_cert_sn": wanted_sn})
            if isinstance(raw, Unknown):
                return f"the download failed: {raw.detail}"
            try:
                answer = wire.parse_answer(raw, CERT_DOWNLOAD)
                new = rotated(certs, _cert_content(answer), wanted_sn, datetime.now(UTC))
            except (wire.WireError, CertError) as err:
                return str(err)
            if not answer.verifies(new.alipay_public_key):
                return "the download's answer does not verify with the certificate it holds"
            self._certs, self._public_key = new, new.alipay_public_key
            log.warning("ALERT alipay: Alipay's certificate is now %s (valid until %s), "
                        "checked under the root: put it into alipay_cert_file (Alipay console) "
                        "so that posd need not download it at the next start",
                        wanted_sn, f"{new.alipay_cert_not_after:%Y-%m-%d}")
            return None

    def _pay_biz(self, biz: Mapping[str, str]) -> dict[str, object]:
        """trade.pay's biz_content: the fields that are set, and for an ISV its PID as
        ``extend_params.sys_service_provider_id`` (its commission; channels.md §2)."""
        sent: dict[str, object] = {k: v for k, v in biz.items() if v}
        if self._config.sys_service_provider_id:
            sent["extend_params"] = {
                "sys_service_provider_id": self._config.sys_service_provider_id}
        return sent

    def query(self, out_trade_no: str, amount: Fen) -> ChannelResult:
        """trade.query: the trade's status."""
        result = _query_result(self._call(QUERY, {"out_trade_no": out_trade_no}, out_trade_no))
        return logged_query(log, "alipay", out_trade_no, amount, result)

    def reverse(self, out_trade_no: str) -> ChannelResult:
        """trade.cancel: closes an unpaid trade, refunds a paid one (``action``)."""
        reply = self._call(CANCEL, {"out_trade_no": out_trade_no}, out_trade_no)
        result = _cancel_result(reply)
        if result is None:
            # code 10000 without ``action``: "未查询到交易，或接口调用失败" -- no such trade,
            # or the call failed (§2.9; a cancel of an unknown out_trade_no reportedly
            # answers exactly so). Decision: neither trust it as NotFound nor repeat the
            # cancel blindly: ask trade.query, whose answer is definite. No trade ->
            # NotFound (reversed, nothing taken); closed -> Closed; anything else (paid,
            # waiting, no answer) -> Unknown, and the engine cancels again.
            result = self._confirm_cancel(out_trade_no)
        log.info("alipay cancel %s -> %s", out_trade_no, result)
        return result

    def _confirm_cancel(self, out_trade_no: str) -> ChannelResult:
        found = _query_result(self._call(QUERY, {"out_trade_no": out_trade_no}, out_trade_no))
        match found:
            case NotFound():
                return NotFound("cancel without action; trade.query: no such trade")
            case Closed():
                return Closed("cancel without action; trade.query: TRADE_CLOSED", refunded=None)
            case _:
                return Unknown(f"cancel answered without action; the trade is {found}")

    # --- refunds (DESIGN §9) -------------------------------------------------------------

    def refund(self, out_trade_no: str, out_refund_no: str, total: Fen, amount: Fen,
               reason: str) -> RefundAnswer:
        """trade.refund with ``out_request_no`` always set (without it Alipay takes the
        out_trade_no, and a second partial refund would look like a repeat of the first)."""
        biz = {
            "out_trade_no": out_trade_no, "out_request_no": out_refund_no,
            "refund_amount": format_yuan(amount),  # a string: never a binary float
            "refund_reason": _subject(reason)[:REFUND_REASON_MAX],
            "store_id": self._store_id, "terminal_id": self._terminal_id,
        }
        result = _refund_result(self._call(REFUND, {k: v for k, v in biz.items() if v},
                                           out_trade_no))
        log.info("alipay refund %s %s %s fen -> %s", out_trade_no, out_refund_no, amount, result)
        return result

    def refund_query(self, out_trade_no: str, out_refund_no: str) -> RefundAnswer:
        """fastpay.refund.query by the same ``out_request_no``."""
        biz = {"out_trade_no": out_trade_no, "out_request_no": out_refund_no}
        result = _refund_query_result(self._call(REFUND_QUERY, biz, out_trade_no), out_refund_no)
        log.info("alipay refund.query %s %s -> %s", out_trade_no, out_refund_no, result)
        return result

    # --- reconciliation (DESIGN §10) -----------------------------------------------------

    def download_bill(self, day: date) -> BillAnswer:
        """The ``trade`` bill of ``day``: ask for its URL (a signed, verified answer), then
        fetch the zip behind it within its 30 s (channels.md §2.11). The zip's bytes as
        served; NoBill for ``isp.bill_not_exist``; BillFailed otherwise."""
        biz = {"bill_type": "trade", "bill_date": day.isoformat()}
        reply = self._call(BILL, biz, "")
        if isinstance(reply, Unknown):
            return BillFailed(reply.detail)
        if isinstance(reply, Rejected):
            return BillFailed(f"Alipay refused the bill request: {reply.message}")
        if reply.text("sub_code") == "isp.bill_not_exist":
            return NoBill(f"Alipay: {_describe(reply)}")
        url = reply.text("bill_download_url")
        if reply.text("code") != "10000" or not url:
            return BillFailed(f"{BILL}: {_describe(reply)}")
        if (problem := self._bill_url_problem(url)) is not None:
            log.warning("ALERT alipay %s: %s", BILL, problem)
            return BillFailed(f"{BILL}: {problem}")
        answer = transport.get(self._session, url, timeout=self._timeout, verify=self._verify,
                               limit=BILL_MAX_BYTES, what="alipay bill download")
        if isinstance(answer, Unknown):
            return BillFailed(answer.detail)
        status, data = answer
        if status != 200:
            return BillFailed(f"alipay bill download: HTTP {status} (the URL lasts 30 s)")
        log.info("alipay bill %s: %d bytes", day, len(data))
        return data

    def _bill_url_problem(self, url: str) -> str | None:
        """An https URL (plain http only when the gateway itself is: the simulator)."""
        parts = urlsplit(url)
        allowed = ("https", "http") if self._config.gateway_url.startswith("http://") \
            else ("https",)
        if parts.scheme not in allowed or not parts.hostname:
            return f"the bill URL is not an {' or '.join(allowed)} URL"
        return None

    # --- one request -----------------------------------------------------------------------

    def _params(self, method: str, biz: Mapping[str, object]) -> dict[str, str]:
        common = {"app_auth_token": self._app_auth_token} if self._app_auth_token else {}
        if self._certs is not None:  # certificate mode: both SNs, inside the signature
            common |= {"app_cert_sn": self._certs.app_cert_sn,
                       "alipay_root_cert_sn": self._certs.alipay_root_cert_sn}
        return common | {
            "app_id": self._config.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": wire.SIGN_TYPE,
            "timestamp": datetime.fromtimestamp(self._clock(), BEIJING).strftime(
                "%Y-%m-%d %H:%M:%S"
            ),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }

    def _call(self, method: str, biz: Mapping[str, object], out_trade_no: str) -> _Reply:
        raw = self._send(method, biz)
        if isinstance(raw, Unknown):
            return raw
        return self._check(method, raw, out_trade_no)

    def _send(self, method: str, biz: Mapping[str, object]) -> bytes | Unknown:
        """One signed request: the common parameters in the query, biz_content in the body."""
        params = self._params(method, biz)
        params["sign"] = wire.sign(params, self._private_key)
        body = urlencode({"biz_content": params.pop("biz_content")}).encode()
        return self._post(method, urlencode(params), body)

    def _post(self, method: str, query: str, body: bytes) -> bytes | Unknown:
        url = self._config.gateway_url
        url += ("&" if "?" in url else "?") + query
        return transport.post(
            self._session, url, body,
            content_type="application/x-www-form-urlencoded;charset=utf-8",
            timeout=self._timeout, verify=self._verify, limit=wire.MAX_BODY, what=method,
        )

    def _check(self, method: str, raw: bytes, out_trade_no: str) -> _Reply:
        """Parse and authenticate an answer; see the module docstring for the rules."""
        try:
            answer = wire.parse_answer(raw, method)
        except wire.WireError as err:
            return Unknown(f"{method}: unreadable answer: {err}")
        if self._certs is not None and answer.cert_sn and \
                answer.cert_sn != self._certs.alipay_cert_sn and \
                (problem := self._rotate(answer.cert_sn)) is not None:
            # Alipay signed with another certificate and posd could not get it, or could not
            # tie it to the root: the answer is not trusted (the sale stays unknown).
            log.warning("ALERT alipay %s %s: signed with Alipay certificate %s: %s",
                        method, out_trade_no, text(answer.cert_sn, 40), problem)
            return Unknown(f"{method}: Alipay signed with another certificate (alipay_cert_sn "
                           f"{text(answer.cert_sn, 40)}) that posd cannot trust: {problem}")
        if answer.sign is not None and not answer.verifies(self._public_key):
            log.warning("ALERT alipay %s %s: the answer's signature does not verify",
                        method, out_trade_no)
            return Unknown(f"{method}: the answer's signature does not verify")
        code = text(answer.text("code"), 8)  # Unknown details carry no channel text
        if code in codes.GATEWAY_REFUSALS:
            return Rejected(_describe(answer))
        if answer.sign is None or answer.key == wire.ERROR_RESPONSE:
            log.warning("ALERT alipay %s %s: unsigned or error_response answer (code %r)",
                        method, out_trade_no, code)
            return Unknown(f"{method}: unsigned or error_response answer (code {code!r})")
        if answer.text("out_trade_no") not in ("", out_trade_no):
            log.warning("ALERT alipay %s %s: the answer is for another out_trade_no",
                        method, out_trade_no)
            return Unknown(f"{method}: the answer is for another out_trade_no")
        return answer


def _cert_content(answer: wire.Answer) -> bytes:
    """The PEM of an alipaycert.download answer (``alipay_cert_content``, base64)."""
    try:
        return base64.b64decode(answer.text("alipay_cert_content"), validate=True)
    except (ValueError, binascii.Error):
        return b""


def read_cert_mode(config: AlipayConfig) -> CertMode:
    """Read and check certificate mode's three files (ConfigError naming the key)."""
    # Here, not at the top: a till in public-key mode never loads cryptography's X.509.
    from posd.core.alipay_certs import CertError, cert_mode

    files = {}
    for name in ("app_cert_file", "alipay_cert_file", "alipay_root_cert_file"):
        path = getattr(config, name)
        try:
            files[name] = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"channels.alipay.{name}: {path}: {err.strerror or err}") from err
    try:
        return cert_mode(files["app_cert_file"], files["alipay_cert_file"],
                         files["alipay_root_cert_file"], datetime.now(UTC))
    except CertError as err:
        raise ConfigError(f"channels.alipay.{err}") from None


# --- answers -> results ------------------------------------------------------------------


def _subject(subject: str) -> str:
    """Control characters replaced (they would be escaped differently), cut to 256."""
    text = "".join(ch if ch.isprintable() else " " for ch in subject).strip() or "POS"
    return text[:SUBJECT_MAX]


def _describe(answer: wire.Answer) -> str:
    """``code sub_code sub_msg`` for a message. For isv.invalid-signature the gateway appends
    its string-to-sign (``网关生成的验签字符串为：app_id=...``), which holds the payment code:
    it is cut off, as posd never logs a string-to-sign."""
    message = _STRING_TO_SIGN.sub(" (string-to-sign withheld)",
                                  answer.text("sub_msg") or answer.text("msg"))
    parts = (answer.text("code"), answer.text("sub_code"), message)
    return text(" ".join(p for p in parts if p)) or "no code given"


def _paid(answer: wire.Answer, method: str) -> ChannelResult:
    """A success must name Alipay's trade_no and the amount (yuan, two decimals)."""
    trade_no, total = answer.text("trade_no"), answer.text("total_amount")
    try:
        amount = parse_yuan(total)
    except AmountError:
        return Unknown(f"{method}: success without a valid total_amount")
    if not trade_no:
        return Unknown(f"{method}: success without trade_no")
    return Paid(trade_no, amount)


def _by_sub_code(table: Mapping[str, ChannelResult], answer: wire.Answer,
                 method: str) -> ChannelResult:
    known = table.get(answer.text("sub_code"))
    if known is None:
        return Unknown(f"{method}: {_describe(answer)}")
    return _with_text(known, answer.text("sub_msg"))


def _common(answer: _Reply, method: str) -> Unknown | wire.Answer:
    """What every method treats alike: no answer, system errors, an unknown code."""
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Rejected):
        return Unknown(f"{method}: request not accepted: {answer.message}")
    code, sub_code = answer.text("code"), answer.text("sub_code")
    if code == "20000" or sub_code in codes.SYSTEM_ERRORS:
        return Unknown(f"{method}: {_describe(answer)}: outcome unknown")
    if code not in ("10000", "10003", "40004"):
        return Unknown(f"{method}: unexpected code: {_describe(answer)}")
    return answer


def _pay_result(reply: _Reply) -> ChannelResult:
    if isinstance(reply, Rejected):
        return Declined("GATEWAY_REFUSED", f"{codes.MISCONFIGURED} (支付宝: {reply.message})")
    answer = _common(reply, PAY)
    if not isinstance(answer, wire.Answer):
        return answer
    match answer.text("code"):
        case "10000":
            return _paid(answer, PAY)
        case "10003":  # trade created, the customer is confirming (password)
            return Pending(f"10003 {text(answer.text('msg'))}".strip())
        case _:
            return _by_sub_code(codes.PAY_SUB_CODES, answer, PAY)


def _query_result(reply: _Reply) -> ChannelResult:
    answer = _common(reply, QUERY)
    if not isinstance(answer, wire.Answer):
        return answer
    if answer.text("code") == "40004":
        return _by_sub_code(codes.QUERY_SUB_CODES, answer, QUERY)
    status = answer.text("trade_status")
    if answer.text("code") != "10000":
        return Unknown(f"{QUERY}: unexpected code: {_describe(answer)}")
    if status in ("TRADE_SUCCESS", "TRADE_FINISHED"):
        return _paid(answer, QUERY)
    known = codes.TRADE_STATUSES.get(status)
    return known if known is not None else Unknown(f"{QUERY}: trade_status {text(status)!r}")


def _cancel_result(reply: _Reply) -> ChannelResult | None:
    """The cancel's result; None for code 10000 without ``action`` (see Alipay.reverse)."""
    if isinstance(reply, Rejected):
        # The gateway did not take this cancel (40002 isv.invalid-timestamp when the till's
        # clock is off, a key being rotated, ...): nothing changed, and the trade must still be
        # closed, so cancel again with backoff instead of handing it to a person.
        return Unknown(f"{CANCEL}: request not accepted: {reply.message}: cancelling again")
    if isinstance(reply, wire.Answer) and reply.text("retry_flag") == "Y":
        # retry_flag=Y wins over everything: Alipay's rule is "cancel again" (§2.9, §2.12).
        return Pending(f"retry_flag=Y: {_describe(reply)}")
    answer = _common(reply, CANCEL)
    if not isinstance(answer, wire.Answer):
        return answer
    if answer.text("code") != "10000":
        return _by_sub_code(codes.CANCEL_SUB_CODES, answer, CANCEL)
    match answer.text("action"):
        case "close":
            return Closed("action=close", refunded=False)
        case "refund":
            return Closed("action=refund", refunded=True)
        case "":
            return None
        case other:
            return Unknown(f"{CANCEL}: unknown action {text(other)!r}")


def _refund_result(reply: _Reply) -> RefundAnswer:
    # Not a usable answer (no answer, not taken, system error): Unknown, and the query
    # decides (a refund Alipay never got is sent again under the same number).
    answer = _common(reply, REFUND)
    if not isinstance(answer, wire.Answer):
        return answer
    if answer.text("code") == "40004":
        known = codes.REFUND_SUB_CODES.get(answer.text("sub_code"))
        if known is None:
            return Unknown(f"{REFUND}: {_describe(answer)}")
        if isinstance(known, RefundRefused) and (words := text(answer.text("sub_msg"))):
            return RefundRefused(known.code, f"{known.message} (支付宝: {words})")
        return known
    if answer.text("code") != "10000":
        return Unknown(f"{REFUND}: unexpected code: {_describe(answer)}")
    # fund_change=Y: this very call moved the money. N: a repeat of a refund made before, or
    # nothing moved yet -- only refund.query can tell, so it is merely accepted (§2.10).
    if answer.text("fund_change") == "Y":
        return Refunded(answer.text("trade_no"))
    return Accepted(answer.text("trade_no"))


def _refund_query_result(reply: _Reply, out_refund_no: str) -> RefundAnswer:
    answer = _common(reply, REFUND_QUERY)
    if not isinstance(answer, wire.Answer):
        return answer
    if answer.text("code") == "40004" and answer.text("sub_code") == "ACQ.TRADE_NOT_EXIST":
        return NoRefund("ACQ.TRADE_NOT_EXIST")
    if answer.text("code") != "10000":
        return Unknown(f"{REFUND_QUERY}: {_describe(answer)}")
    if answer.text("out_request_no") not in ("", out_refund_no):
        return Unknown(f"{REFUND_QUERY}: the answer is for another out_request_no")
    status = answer.text("refund_status")
    if status == "REFUND_SUCCESS":
        return Refunded(answer.text("trade_no"))
    if not status and not answer.text("refund_amount"):
        # An empty result (未查询到退款): not received or not made -- send the same again.
        return NoRefund("refund.query: no such refund (yet)")
    if not status:  # the refund is there, its outcome not yet: ask again later
        return Processing("refund.query: no refund_status yet")
    # Any other explicit status says the payout did not happen as asked: a person checks
    # it in the Alipay console (never failed: money may be on its way).
    return Abnormal(text(status), "Alipay reports the refund as not paid out")


def _with_text(result: ChannelResult, words: str) -> ChannelResult:
    return with_text(result, words, "支付宝")


def _hide(reply: _Reply, auth_code: str) -> _Reply:
    return hide(reply, auth_code, _scrub)


def _scrub(reply: _Reply, auth_code: str) -> _Reply:
    assert isinstance(reply, wire.Answer)  # hide() passes on only the channel's answers
    return replace(reply, fields=scrub(reply.fields, auth_code))
