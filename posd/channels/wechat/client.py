# SPDX-License-Identifier: MIT
"""WeChat Pay v2 client: micropay, orderquery, reverse, refund, refundquery, downloadbill.
[shell]

Every call returns a :data:`posd.core.sale.ChannelResult` value, never raises for what the channel
or the network did, never returns a dict (reference/channels.md §1, §4).

- An answer is used only if it is XML (parsed by defusedxml, at most ``MAX_BODY`` bytes),
  ``return_code=SUCCESS``, signed with our key and sign_type (``wechat_wire.verify``, constant
  time), for our appid/mch_id and for the ``out_trade_no`` we asked about. Anything else is
  ``Unknown(may_have_arrived=True)``: money may have moved, so the engine queries.
- ``return_code=FAIL`` (unsigned) means the request was not accepted: pay -> ``Declined`` (the
  till is misconfigured, no money moved), query and reverse -> ``Unknown`` (asked again with
  backoff: a reverse WeChat did not take changed nothing, and the trade must still be closed).
- Transport failures follow urllib3's rule (``posd.channels.transport``): only a failed
  connect or TLS handshake is ``Unknown(may_have_arrived=False)``; read timeouts, resets,
  closes after sending and non-200 statuses are ``Unknown(may_have_arrived=True)``.
- No retries here (urllib3 retries off): what to do next is ``posd.core.sale``'s decision.
- Never logged: the API key, strings-to-sign, full payment codes (``posd.core.codes.mask``).
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Mapping
from datetime import date
from typing import ClassVar, Final
from urllib.parse import urlsplit


from posd.channels import transport
from posd.channels.answers import Rejected, hide, logged_query, scrub, text, with_text
from posd.core import wechat_wire as wire
from posd.core.bills import BillAnswer, BillFailed, NoBill
from posd.core.codes import mask
from posd.channels.wechat.config import WechatConfig
from posd.config_base import read_secret
from posd.core.errors import ConfigError
from posd.core.money import Fen
from posd.core.refund import (
    Abnormal, Accepted, NoRefund, Processing, RefundAnswer, Refunded, RefundRefused,
)
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

log = logging.getLogger(__name__)

MICROPAY: Final = "/pay/micropay"
ORDERQUERY: Final = "/pay/orderquery"
REVERSE: Final = "/secapi/pay/reverse"  # /secapi/: mutual TLS with the merchant certificate
REFUND: Final = "/secapi/pay/refund"  # the client certificate on every refund call (§1.8)
REFUNDQUERY: Final = "/pay/refundquery"
DOWNLOADBILL: Final = "/pay/downloadbill"
#: a day's bill, gzip: 10,000 rows are about 0.3 MB; more than this is not a bill
BILL_MAX_BYTES: Final = 64 * 1024 * 1024
REFUND_DESC_MAX: Final = 80  # ``refund_desc`` String(80)
BODY_MAX_BYTES: Final = 127  # micropay ``body`` String(127); counted in UTF-8 bytes to be safe
DEVICE_INFO_MAX: Final = 32  # ``device_info`` String(32)

_MISCONFIGURED: Final = (
    "The till is misconfigured for WeChat Pay; no money was taken. "
    "Ask the store manager to check the WeChat settings, or take another payment method."
)
_NEW_CODE: Final = "ask the customer to refresh the payment code and scan again"

#: Merchant/config/request errors: final for this attempt, the operator must fix the setup.
CONFIG_ERRORS: Final = (
    "NOAUTH", "PARAM_ERROR", "APPID_NOT_EXIST", "MCHID_NOT_EXIST", "APPID_MCHID_NOT_MATCH",
    "LACK_PARAMS", "SIGNERROR", "XML_FORMAT_ERROR", "REQUIRE_POST_METHOD", "POST_DATA_EMPTY",
    "NOT_UTF8", "INVALID_REQUEST", "RULELIMIT",
)  # fmt: skip

#: micropay ``err_code`` -> result (reference/channels.md §1.5). WeChat's ``err_code_des`` is
#: appended to a Declined message. A code not listed here is Unknown: never decline what we
#: do not understand.
MICROPAY_ERRORS: Final[Mapping[str, ChannelResult]] = {
    "SYSTEMERROR": Unknown("SYSTEMERROR: WeChat system error, outcome unknown"),
    "BANKERROR": Unknown("BANKERROR: bank system error, outcome unknown"),
    "USERPAYING": Pending("USERPAYING"),
    # A retry of an attempt that did succeed: the query confirms it (and gives transaction_id).
    "ORDERPAID": Unknown("ORDERPAID: already paid: query"),
    # The out_trade_no was used before with other data: a posd bug, and no money moved for
    # *this* request -- but a trade under this number exists and may be paid. Declining could
    # hide a payment, so query (and reverse at the deadline) instead.
    "OUT_TRADE_NO_USED": Unknown("OUT_TRADE_NO_USED: number already used: query"),
    "AUTHCODEEXPIRE": Declined("AUTHCODEEXPIRE", f"The payment code has expired: {_NEW_CODE}."),
    **{
        code: Declined(code, message)
        for code, message in {
            "AUTH_CODE_ERROR": f"The payment code was refused (each code works once): {_NEW_CODE}.",
            "AUTH_CODE_INVALID": "This is not a valid WeChat payment code: ask the customer to "
            "open WeChat Pay's payment code (付款码) and scan again.",
            "NOTENOUGH": "Not enough balance: ask the customer to choose another card in WeChat "
            "or pay another way.",
            "NOTSUPORTCARD": "The customer's card cannot be used here: ask them to choose another "
            "card or pay another way.",  # sic: WeChat's spelling
            "BUYER_MISMATCH": "Another WeChat account already tried this sale: start a new sale.",
            "TRADE_ERROR": "WeChat refused this payment: ask the customer to pay another way.",
            "ORDERCLOSED": "WeChat has closed this payment: start a new sale.",
            "ORDERREVERSED": "This payment was already reversed: start a new sale.",
        }.items()
    },
    **{code: Declined(code, _MISCONFIGURED) for code in CONFIG_ERRORS},
}

#: orderquery ``trade_state`` -> result (§1.6); SUCCESS is handled apart (it carries data);
#: REFUND and anything not listed is Unknown.
TRADE_STATES: Final[Mapping[str, ChannelResult]] = {
    "USERPAYING": Pending("USERPAYING"),
    "NOTPAY": Pending("NOTPAY"),
    "CLOSED": Closed("CLOSED"),
    "REVOKED": Closed("REVOKED"),
    "PAYERROR": Failed(
        "PAYERROR", "The payment failed at WeChat: it is being reversed; ask for another payment."
    ),
}

_REVERSE_REFUSED: Final = "WeChat refused to reverse this payment"

#: reverse ``err_code`` (with ``recall=N``) -> result (§1.7). Not listed (SYSTEMERROR,
#: USERPAYING, new codes): Unknown, and the engine reverses again.
REVERSE_ERRORS: Final[Mapping[str, ChannelResult]] = {
    "ORDERNOTEXIST": NotFound("ORDERNOTEXIST"),
    # Not in WeChat's list for reverse, but if it ever says so the trade is closed: the aim.
    "ORDERREVERSED": Closed("ORDERREVERSED"),
    "ORDERCLOSED": Closed("ORDERCLOSED"),
    # Past the 7-day window: posd.core.sale queries the order and says "refund it" if it is paid.
    "REVERSE_EXPIRE": Refused(
        "REVERSE_EXPIRE", "WeChat no longer reverses this order (older than 7 days)",
        too_late=True,
    ),
    # INVALID_REQUEST covers WeChat's rate limit (频率限制) as well as bad requests: retried
    # with backoff like no answer, never final (a request WeChat did not take changed nothing).
    "INVALID_REQUEST": Unknown("INVALID_REQUEST: reverse not taken (e.g. rate limit): again"),
    **{
        code: Refused(code, _REVERSE_REFUSED)
        for code in ("INVALID_TRANSACTIONID", "TRADE_ERROR", *CONFIG_ERRORS)
        if code != "INVALID_REQUEST"
    },
}


#: refund ``err_code`` -> answer (§1.8). Not listed (SYSTEMERROR, BIZERR_NEED_RETRY,
#: FREQUENCY_LIMITED, new codes): Unknown, and posd queries before anything else.
_REFUND_REFUSED: Final = "WeChat refused the refund"
REFUND_ERRORS: Final[Mapping[str, RefundAnswer]] = {
    # the merchant's balance, not the customer's: top up in the merchant portal
    "NOTENOUGH": RefundRefused("NOTENOUGH", "the merchant account's balance is too low"),
    "TRADE_OVERDUE": RefundRefused("TRADE_OVERDUE", "the payment is too old to refund"),
    "USER_ACCOUNT_ABNORMAL": RefundRefused("USER_ACCOUNT_ABNORMAL",
                                           "the customer's account cannot take the refund"),
    "INVALID_TRANSACTIONID": RefundRefused("INVALID_TRANSACTIONID", _REFUND_REFUSED),
    # 业务错误 with a reason: refunded in full already, more than the payment, ...
    "ERROR": RefundRefused("ERROR", _REFUND_REFUSED),
    **{code: RefundRefused(code, _REFUND_REFUSED) for code in CONFIG_ERRORS
       if code not in ("INVALID_REQUEST",)},
}

#: refundquery ``refund_status_$n`` -> answer (§1.8).
REFUND_STATUSES: Final[Mapping[str, RefundAnswer]] = {
    "PROCESSING": Processing("PROCESSING"),
    "REFUNDCLOSE": RefundRefused("REFUNDCLOSE", "WeChat closed the refund without paying it"),
    "CHANGE": Abnormal("CHANGE", "the customer's bank card refused the refund (退款异常)"),
}


_Answer = Mapping[str, str] | Rejected | Unknown  # Rejected: return_code=FAIL


class WechatPay:
    """The WeChat Pay v2 channel (``posd.channels.Channel``)."""

    name: ClassVar[str] = "wechat"

    def __init__(
        self, config: WechatConfig, *, api_key: str, device_info: str = "", body_prefix: str = ""
    ) -> None:
        if not api_key:
            raise ConfigError("channels.wechat.api_key_file: the API key is empty")
        if len(device_info) > DEVICE_INFO_MAX:
            raise ConfigError(f"WeChat device_info {device_info!r} is longer than 32 characters")
        self._config = config
        self._api_key = api_key
        self._device_info = device_info
        self._body_prefix = body_prefix
        self._timeout = (config.connect_timeout_s, config.read_timeout_s)
        self._verify: str | bool = str(config.ca_file) if config.ca_file else True
        self._cert = (str(config.cert_file), str(config.key_file)) if config.key_file else None
        self._route_ip: str | None = None
        self._session = transport.session()

    @classmethod
    def from_config(
        cls, config: WechatConfig, *, device_info: str = "", body_prefix: str = ""
    ) -> WechatPay:
        """Read the API key from ``api_key_file`` (which must be private: 0600/0400)."""
        raw = read_secret(config.api_key_file, "channels.wechat.api_key_file")
        try:
            api_key = raw.decode("ascii").strip()
        except UnicodeDecodeError as err:
            raise ConfigError("channels.wechat.api_key_file: the key is not ASCII text") from err
        return cls(config, api_key=api_key, device_info=device_info, body_prefix=body_prefix)

    def close(self) -> None:
        self._session.close()

    # --- the three calls ---------------------------------------------------------------

    def pay(self, out_trade_no: str, amount: Fen, auth_code: str, subject: str) -> ChannelResult:
        """Send micropay. Paid, Declined, Pending (customer confirming) or Unknown."""
        params = self._common(out_trade_no) | {
            "body": self._body(subject),
            "total_fee": str(int(amount)),
            "fee_type": "CNY",
            "spbill_create_ip": self._client_ip(),
            "auth_code": auth_code,
            "device_info": self._device_info,
        }
        result = _pay_result(_hide(self._call(MICROPAY, params, out_trade_no), auth_code))
        log.info("wechat pay %s %s fen %s -> %s", out_trade_no, amount, mask(auth_code), result)
        return result

    def query(self, out_trade_no: str, amount: Fen) -> ChannelResult:
        """Ask orderquery for the trade's state."""
        answer = self._call(ORDERQUERY, self._common(out_trade_no), out_trade_no)
        return logged_query(log, "wechat", out_trade_no, amount, _query_result(answer))

    def reverse(self, out_trade_no: str) -> ChannelResult:
        """Reverse (撤销) the trade over mutual TLS; a paid trade is refunded by it."""
        answer = self._call(REVERSE, self._common(out_trade_no), out_trade_no)
        result = _reverse_result(answer)
        log.info("wechat reverse %s -> %s", out_trade_no, result)
        return result

    # --- refunds (DESIGN §9) ------------------------------------------------------------

    def refund(self, out_trade_no: str, out_refund_no: str, total: Fen, amount: Fen,
               reason: str) -> RefundAnswer:
        """/secapi/pay/refund. SUCCESS only means *accepted* (§1.8): the query says more."""
        params = self._common(out_trade_no) | {
            "out_refund_no": out_refund_no, "total_fee": str(int(total)),
            "refund_fee": str(int(amount)), "refund_fee_type": "CNY",
            "refund_desc": "".join(c if c.isprintable() else " " for c in reason)[
                :REFUND_DESC_MAX] or "refund",
        }
        result = _refund_result(self._call(REFUND, params, out_trade_no), out_refund_no)
        log.info("wechat refund %s %s %s fen -> %s", out_trade_no, out_refund_no, amount, result)
        return result

    def refund_query(self, out_trade_no: str, out_refund_no: str) -> RefundAnswer:
        """/pay/refundquery by ``out_refund_no``: this refund's status."""
        params = self._common(out_trade_no)
        del params["out_trade_no"]
        params["out_refund_no"] = out_refund_no
        result = _refundquery_result(self._call(REFUNDQUERY, params, out_trade_no), out_refund_no)
        log.info("wechat refundquery %s %s -> %s", out_trade_no, out_refund_no, result)
        return result

    # --- reconciliation (DESIGN §10) -----------------------------------------------------

    def download_bill(self, day: date) -> BillAnswer:
        """``/pay/downloadbill`` of ``day`` (``ALL``, gzip): the file's bytes as WeChat sent
        them, NoBill for "No Bill Exist" (error_code 20002), BillFailed otherwise.

        The bill itself is not signed (a CSV; channels.md §1.9): TLS to the configured host
        is what vouches for it; an XML answer is a refusal (unsigned, return_code=FAIL)."""
        params = self._merchant() | {
            "nonce_str": secrets.token_hex(16), "sign_type": self._config.sign_type,
            "bill_date": day.strftime("%Y%m%d"), "bill_type": "ALL", "tar_type": "GZIP",
        }
        params["sign"] = wire.sign(params, self._api_key, self._config.sign_type)
        raw = self._post(DOWNLOADBILL, wire.to_xml(params), limit=BILL_MAX_BYTES)
        if isinstance(raw, Unknown):
            return BillFailed(raw.detail)
        if raw.lstrip()[:5] != b"<xml>":
            log.info("wechat downloadbill %s: %d bytes", day, len(raw))
            return raw
        try:
            answer = wire.from_xml(raw)
        except wire.WireError as err:
            return BillFailed(f"{DOWNLOADBILL}: unreadable answer: {err}")
        message = text(answer.get("return_msg", "")) or text(answer.get("err_code_des", ""))
        if answer.get("error_code") == "20002" or "bill exist" in message.lower():
            return NoBill(f"WeChat: {message or 'No Bill Exist'}")
        return BillFailed(f"WeChat refused the bill download: {message or 'no reason given'}")

    # --- one request -----------------------------------------------------------------------

    def _common(self, out_trade_no: str) -> dict[str, str]:
        return self._merchant() | {
            "out_trade_no": out_trade_no,
            "nonce_str": secrets.token_hex(16),  # 32 characters, the field's limit
            "sign_type": self._config.sign_type,
        }

    def _merchant(self) -> dict[str, str]:
        """appid and mch_id, and in service-provider mode (服务商) sub_mch_id and sub_appid:
        every call carries them inside its signature (channels.md §1.2)."""
        ids = {"appid": self._config.appid, "mch_id": self._config.mch_id}
        if self._config.sub_mch_id:
            ids["sub_mch_id"] = self._config.sub_mch_id
        if self._config.sub_appid:
            ids["sub_appid"] = self._config.sub_appid
        return ids

    def _client_ip(self) -> str:
        """spbill_create_ip: as configured, else this machine's address on its route to
        the channel (a UDP socket's connect sends nothing), found once."""
        if self._config.spbill_create_ip:
            return self._config.spbill_create_ip
        if "client_ip" in self._config.model_fields_set:
            return self._config.client_ip
        if self._route_ip is None:
            self._route_ip = route_address(self._config.base_url) or self._config.client_ip
        return self._route_ip

    def _body(self, subject: str) -> str:
        """``门店品牌名-城市分店名-实际商品名称``: prefix and subject, cut to 127 UTF-8 bytes."""
        text = "-".join(part for part in (self._body_prefix, subject) if part.strip()) or "POS"
        # Control characters would break the XML (or be normalised by it, breaking the sign).
        text = "".join(ch if ch.isprintable() else " " for ch in text)
        return text.encode()[:BODY_MAX_BYTES].decode(errors="ignore")

    def _call(self, path: str, params: dict[str, str], out_trade_no: str) -> _Answer:
        params["sign"] = wire.sign(params, self._api_key, self._config.sign_type)
        raw = self._post(path, wire.to_xml(params))
        if isinstance(raw, Unknown):
            return raw
        return self._check(path, raw, out_trade_no)

    def _post(self, path: str, body: bytes, limit: int = wire.MAX_BODY) -> bytes | Unknown:
        """POST to ``base_url``; after a connect error there (nothing was sent: the request
        cannot have arrived) once to ``backup_base_url``, never after a request may have
        arrived (a timeout, a reset, an answer): the same request twice at two hosts could
        be two charges (channels.md §1; WeChat's backup domain note)."""
        answer = self._post_to(self._config.base_url, path, body, limit)
        backup = self._config.backup_base_url
        if isinstance(answer, Unknown) and not answer.may_have_arrived and backup:
            log.warning("wechat %s: %s; trying the backup host %s", path, answer.detail, backup)
            answer = self._post_to(backup, path, body, limit)
        return answer

    def _post_to(self, base: str, path: str, body: bytes, limit: int) -> bytes | Unknown:
        return transport.post(
            self._session, base + path, body,
            content_type="text/xml; charset=utf-8", timeout=self._timeout,
            verify=self._verify, limit=limit, what=path,
            cert=self._cert if path.startswith("/secapi/") else None,  # mutual TLS
        )

    def _check(self, path: str, raw: bytes, out_trade_no: str) -> _Answer:
        """Parse and authenticate an answer; see the module docstring for the rules."""
        try:
            answer = wire.from_xml(raw)
        except wire.WireError as err:
            return Unknown(f"{path}: unreadable answer: {err}")
        if answer.get("return_code") == "FAIL":
            return Rejected(text(answer.get("return_msg", "")) or "no reason given")
        if (problem := self._distrust(answer, out_trade_no)) is not None:
            log.warning("ALERT wechat %s %s: %s", path, out_trade_no, problem)
            return Unknown(f"{path}: {problem}")
        return answer

    def _distrust(self, answer: Mapping[str, str], out_trade_no: str) -> str | None:
        """Why a return_code=SUCCESS answer cannot be used, or None."""
        if answer.get("return_code") != "SUCCESS":
            return "answer without a valid return_code"
        if not wire.verify(answer, self._api_key, self._config.sign_type):
            return "the answer's signature does not verify"
        if (answer.get("appid"), answer.get("mch_id")) != (self._config.appid, self._config.mch_id):
            return "the answer is for another appid/mch_id"
        if self._config.sub_mch_id and answer.get("sub_mch_id") != self._config.sub_mch_id:
            return "the answer is for another sub_mch_id"
        if answer.get("out_trade_no", out_trade_no) != out_trade_no:
            return "the answer is for another out_trade_no"
        if answer.get("result_code") not in ("SUCCESS", "FAIL"):
            return "answer without a valid result_code"
        return None


def _paid(answer: Mapping[str, str], path: str) -> ChannelResult:
    """A SUCCESS answer must name the trade, WeChat's transaction and the amount in fen."""
    transaction_id = answer.get("transaction_id", "")
    fee = answer.get("total_fee", "")
    if "out_trade_no" not in answer or not transaction_id or not (fee.isascii() and fee.isdigit()):
        return Unknown(f"{path}: SUCCESS without out_trade_no, transaction_id or total_fee")
    return Paid(transaction_id, Fen(int(fee)))


def _by_err_code(
    table: Mapping[str, ChannelResult], answer: Mapping[str, str], path: str
) -> ChannelResult:
    code = answer.get("err_code", "")
    known = table.get(code)
    if known is None:
        return Unknown(f"{path}: err_code {text(code)!r}: {text(answer.get('err_code_des', ''))}")
    return _with_text(known, answer.get("err_code_des", ""))


def _pay_result(answer: _Answer) -> ChannelResult:
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Rejected):
        return Declined("RETURN_FAIL", f"{_MISCONFIGURED} (WeChat: {answer.message})")
    if answer["result_code"] == "SUCCESS":
        return _paid(answer, MICROPAY)
    return _by_err_code(MICROPAY_ERRORS, answer, MICROPAY)


def _query_result(answer: _Answer) -> ChannelResult:
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Rejected):
        return Unknown(f"{ORDERQUERY}: request not accepted: {answer.message}")
    if answer["result_code"] != "SUCCESS":
        return _by_err_code({"ORDERNOTEXIST": NotFound("ORDERNOTEXIST")}, answer, ORDERQUERY)
    state = answer.get("trade_state", "")
    if state == "SUCCESS":
        return _paid(answer, ORDERQUERY)
    known = TRADE_STATES.get(state)
    if known is None:
        return Unknown(f"{ORDERQUERY}: trade_state {text(state)!r}")
    return _with_text(known, answer.get("trade_state_desc", ""))


def _reverse_result(answer: _Answer) -> ChannelResult:
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Rejected):
        # return_code=FAIL: WeChat did not take this reverse (nothing changed): send it again
        # with backoff, as for no answer, rather than give the trade up to a person.
        return Unknown(f"{REVERSE}: return_code=FAIL: {answer.message}: reversing again")
    # recall=Y wins even over SUCCESS: WeChat's rule is "call again until recall=N", and a
    # repeated reverse of a reversed order answers SUCCESS again.
    if answer.get("recall") == "Y":
        return Pending(f"recall: {text(answer.get('err_code', '')) or 'repeat the reverse'}")
    if answer["result_code"] == "SUCCESS":
        return Closed("reversed", refunded=None)
    return _by_err_code(REVERSE_ERRORS, answer, REVERSE)


def _refund_result(answer: _Answer, out_refund_no: str) -> RefundAnswer:
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Rejected):
        # Not taken (nothing changed by *this* request); an earlier try may have been: the
        # query decides, and a refund WeChat never got is sent again under the same number.
        return Unknown(f"{REFUND}: return_code=FAIL: {answer.message}")
    if answer.get("out_refund_no", out_refund_no) != out_refund_no:
        return Unknown(f"{REFUND}: the answer is for another out_refund_no")
    if answer["result_code"] == "SUCCESS":
        return Accepted(answer.get("refund_id", ""))
    known = REFUND_ERRORS.get(answer.get("err_code", ""))
    words = text(answer.get("err_code_des", ""))
    if known is None:
        return Unknown(f"{REFUND}: err_code {text(answer.get('err_code', ''))!r}: {words}")
    if isinstance(known, RefundRefused) and words:
        return RefundRefused(known.code, f"{known.message} (微信: {words})")
    return known


def _refundquery_result(answer: _Answer, out_refund_no: str) -> RefundAnswer:
    if isinstance(answer, Unknown):
        return answer
    if isinstance(answer, Rejected):
        return Unknown(f"{REFUNDQUERY}: request not accepted: {answer.message}")
    if answer["result_code"] != "SUCCESS":
        if answer.get("err_code") == "REFUNDNOTEXIST":
            return NoRefund("REFUNDNOTEXIST")
        return Unknown(f"{REFUNDQUERY}: err_code {text(answer.get('err_code', ''))!r}")
    # refund_count refunds, numbered from 0; ours is the one with our number.
    count = answer.get("refund_count", "")
    if not (count.isascii() and count.isdigit()):
        return Unknown(f"{REFUNDQUERY}: SUCCESS without refund_count")
    for n in range(int(count)):
        if answer.get(f"out_refund_no_{n}") != out_refund_no:
            continue
        status = answer.get(f"refund_status_{n}", "")
        if status == "SUCCESS":
            return Refunded(answer.get(f"refund_id_{n}", ""))
        known = REFUND_STATUSES.get(status)
        return known if known is not None else Unknown(
            f"{REFUNDQUERY}: refund_status {text(status)!r}")
    return NoRefund(f"{REFUNDQUERY}: {out_refund_no} not among the order's refunds")


def _with_text(result: ChannelResult, words: str) -> ChannelResult:
    return with_text(result, words, "微信")


def _hide(answer: _Answer, auth_code: str) -> _Answer:
    return hide(answer, auth_code, _scrub)


def _scrub(answer: _Answer, auth_code: str) -> _Answer:
    assert isinstance(answer, Mapping)  # hide() passes on only the channel's answers
    return scrub(answer, auth_code)


def route_address(base_url: str) -> str | None:
    """This machine's address on its route to ``base_url``'s host, or None (no route, no
    name resolution yet). ``connect`` on a UDP socket picks the route and sends nothing."""
    parts = urlsplit(base_url)
    try:
        infos = socket.getaddrinfo(parts.hostname or "", parts.port or 443, type=socket.SOCK_DGRAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect(address)
            return str(probe.getsockname()[0])
    except (OSError, IndexError):
        return None

