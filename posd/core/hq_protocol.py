# SPDX-License-Identifier: MIT
"""The HQ sync wire format, shared by the terminal (posd.sync) and the receiver. [core]

Pure: bytes and dicts in, values out; no clock, no network, no database. The format is
documented in docs/hq-sync.md and, as a JSON Schema, in docs/hq-sync.schema.json; a test
checks real records against the schema and the checks below against the same examples.

A batch is one JSON object::

    {"protocol": 1, "store_id": "S001", "terminal_id": "T01", "records": [RECORD, ...]}

and every record is an envelope (``record_id``: the terminal-made idempotency key; ``seq``:
the terminal's sequence number; ``day``: the store's business day) merged with a versioned
body (``type``, ``version`` and one field named after the type)::

    {"record_id": "sale:S001T01...:paid", "seq": 17, "day": "2024-05-01",
     "type": "sale", "version": 1, "sale": {...}}

The body's signature is ``X-Posd-Signature: sha256=<hex HMAC-SHA256(key, raw body)>``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Final

from posd.core.refund import FINAL as REFUND_FINAL
from posd.core.refund import Refund
from posd.core.sale import FINAL, Sale

PROTOCOL: Final = 1
SIGNATURE_HEADER: Final = "X-Posd-Signature"
#: most records in one batch; the terminal's ``hq.batch_size`` is at most this.
MAX_BATCH: Final = 1000
#: record types and the versions this code understands. Sale records: version 2 (explicit
#: fields, below) is what terminals send now; version 1 (the terminal's whole internal row,
#: scheduling fields included) is still taken from terminals not yet upgraded.
VERSIONS: Final = {"sale": (1, 2), "refund": (1,), "daily_summary": (1,),
                   "reconciliation": (1,)}
SALE_VERSION: Final = 2
#: A version 2 sale record's fields: what HQ may rely on, and nothing of posd's scheduling.
#: ``auth_code`` is masked (first 4 + last 4 digits), under the API's name for it.
SALE_FIELDS: Final = (
    "id", "out_trade_no", "order_ref", "amount", "currency", "state", "channel",
    "channel_trade_no", "auth_code", "decline_code", "message", "refunded", "subject",
    "created_at", "paid_at", "updated_at",
)
#: A refund record's fields (type ``refund``, version 1): the refund, and the sale it returns
#: money of by ``out_trade_no``. Sent when the refund reaches a final state.
REFUND_VERSION: Final = 1
REFUND_FIELDS: Final = (
    "id", "sale_id", "out_trade_no", "out_refund_no", "channel", "channel_refund_no", "amount",
    "currency", "state", "reason", "message", "created_at", "refunded_at", "updated_at",
)
#: final refund states (posd.core.refund.FINAL).
REFUND_STATES: Final = frozenset(state.value for state in REFUND_FINAL)
#: final sale states (posd.core.sale.FINAL); only these are ever recorded.
SALE_STATES: Final = frozenset(state.value for state in FINAL)
#: statuses of a record in HQ's answer.
ACCEPTED, DUPLICATE, REJECTED = "accepted", "duplicate", "rejected"

_ID = re.compile(r"[0-9A-Za-z]{1,8}", re.ASCII)
_RECORD_ID = re.compile(r"[0-9A-Za-z_:.-]{1,128}", re.ASCII)
_DAY = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])", re.ASCII)
_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_-]{1,32}", re.ASCII)


def is_day(text: str) -> bool:
    """Whether ``text`` looks like a date written YYYY-MM-DD."""
    return _DAY.fullmatch(text) is not None


def sign(key: bytes, body: bytes) -> str:
    """The signature header's value for ``body``: ``sha256=<hex>``."""
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def signature_ok(key: bytes, body: bytes, header: str | None) -> bool:
    """Whether ``header`` is the signature of ``body`` (constant-time comparison)."""
    return header is not None and hmac.compare_digest(sign(key, body), header)


@dataclass(frozen=True, slots=True)
class Record:
    """One valid record, with what HQ indexes pulled out of it."""

    record_id: str
    seq: int
    day: str
    type: str
    data: dict[str, Any]
    #: sale records only: out_trade_no, state, amount (fen), channel.
    out_trade_no: str | None = None
    state: str | None = None
    amount: int = 0
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class Rejected:
    """A record that cannot be stored, and why (a sentence for the terminal's operator)."""

    record_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Batch:
    store_id: str
    terminal_id: str
    records: tuple[Record | Rejected, ...]


class BatchError(ValueError):
    """The body is not a batch at all (the whole request is refused with 400)."""


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_batch(data: object) -> Batch:
    """Check a decoded batch. Bad records become :class:`Rejected`; a bad envelope raises."""
    if not isinstance(data, dict):
        raise BatchError("the body must be a JSON object (a batch)")
    if data.get("protocol") != PROTOCOL:
        raise BatchError(f"protocol must be {PROTOCOL}, got {data.get('protocol')!r}")
    for key in ("store_id", "terminal_id"):
        if not isinstance(data.get(key), str) or not _ID.fullmatch(data[key]):
            raise BatchError(f"{key} must be 1-8 letters or digits")
    records = data.get("records")
    if not isinstance(records, list) or not 0 < len(records) <= MAX_BATCH:
        raise BatchError(f"records must be a list of 1 to {MAX_BATCH} records")
    return Batch(data["store_id"], data["terminal_id"], tuple(check_record(r) for r in records))


def check_record(data: object) -> Record | Rejected:
    """One record: a :class:`Record`, or :class:`Rejected` saying what is wrong."""
    if not isinstance(data, dict):
        return Rejected("?", "a record must be a JSON object")
    record_id = data.get("record_id")
    if not isinstance(record_id, str) or not _RECORD_ID.fullmatch(record_id):
        return Rejected(str(record_id)[:128], "record_id must be 1-128 of [0-9A-Za-z_:.-]")
    why = _envelope_problem(data)
    if why is None:
        why = {"sale": _sale_problem, "refund": _refund_problem,
               "reconciliation": _reconciliation_problem}.get(data["type"], _summary_problem)(data)
    if why is not None:
        return Rejected(record_id, why)
    if data["type"] != "sale":  # refunds and summaries: kept as records, summed from them
        return Record(record_id, data["seq"], data["day"], data["type"], data)
    sale = data["sale"]
    return Record(record_id, data["seq"], data["day"], "sale", data, sale["out_trade_no"],
                  sale["state"], sale["amount"], sale.get("channel"))


def _envelope_problem(data: dict[str, Any]) -> str | None:
    if not _is_int(data.get("seq")) or data["seq"] < 1:
        return "seq must be a positive integer"
    if not isinstance(data.get("day"), str) or not is_day(data["day"]):
        return "day must be a date written YYYY-MM-DD"
    kind, version = data.get("type"), data.get("version")
    if kind not in VERSIONS:
        return f"unknown record type {kind!r} (this HQ understands {', '.join(VERSIONS)})"
    if version not in VERSIONS[kind]:
        known = ", ".join(str(v) for v in VERSIONS[kind])
        return f"unsupported version {version!r} of {kind} records (this HQ understands {known})"
    return None


def _sale_problem(data: dict[str, Any]) -> str | None:
    sale = data.get("sale")
    if not isinstance(sale, dict):
        return "a sale record needs a 'sale' object"
    if not isinstance(sale.get("out_trade_no"), str) or not _OUT_TRADE_NO.fullmatch(
            sale["out_trade_no"]):
        return "sale.out_trade_no must be 1-32 of [0-9A-Za-z_-]"
    if sale.get("state") not in SALE_STATES:
        return f"sale.state must be a final state ({', '.join(sorted(SALE_STATES))})"
    if not _is_int(sale.get("amount")) or sale["amount"] < 0:
        return "sale.amount must be a whole number of fen, not negative"
    if sale.get("channel") is not None and not isinstance(sale["channel"], str):
        return "sale.channel must be a string or null"
    return None


def _refund_problem(data: dict[str, Any]) -> str | None:
    refund = data.get("refund")
    if not isinstance(refund, dict):
        return "a refund record needs a 'refund' object"
    for key in ("out_trade_no", "out_refund_no"):
        if not isinstance(refund.get(key), str) or not _OUT_TRADE_NO.fullmatch(refund[key]):
            return f"refund.{key} must be 1-32 of [0-9A-Za-z_-]"
    if refund.get("state") not in REFUND_STATES:
        return f"refund.state must be a final state ({', '.join(sorted(REFUND_STATES))})"
    if not _is_int(refund.get("amount")) or refund["amount"] <= 0:
        return "refund.amount must be a whole number of fen, more than 0"
    if refund.get("channel") is not None and not isinstance(refund["channel"], str):
        return "refund.channel must be a string or null"
    return None


#: a reconciliation's statuses (posd.core.reconcile.Reconciliation.status)
RECONCILIATION_STATUSES: Final = frozenset({"matched", "held", "differences"})


def _reconciliation_problem(data: dict[str, Any]) -> str | None:
    """A ``reconciliation`` record (version 1): one channel's result for one bill day, as
    posd.core.reconcile.as_json writes it, with the terminal's ids and when it ran."""
    body = data.get("reconciliation")
    if not isinstance(body, dict):
        return "a reconciliation record needs a 'reconciliation' object"
    if not isinstance(body.get("channel"), str) or not body["channel"]:
        return "reconciliation.channel must be a non-empty string"
    if not isinstance(body.get("date"), str) or not is_day(body["date"]):
        return "reconciliation.date must be a date written YYYY-MM-DD"
    if body.get("status") not in RECONCILIATION_STATUSES:
        return f"reconciliation.status must be one of {', '.join(sorted(RECONCILIATION_STATUSES))}"
    counts, differences = body.get("counts"), body.get("differences")
    if not isinstance(counts, dict) or not all(_is_int(n) for n in counts.values()):
        return "reconciliation.counts must map each class to a whole number"
    if not isinstance(differences, list) or not all(isinstance(d, dict) for d in differences):
        return "reconciliation.differences must be a list of objects"
    return None


def _summary_problem(data: dict[str, Any]) -> str | None:
    summary = data.get("summary")
    if not isinstance(summary, dict) or not isinstance(summary.get("total"), dict):
        return "a daily_summary record needs a 'summary' object with a 'total'"
    paid = summary["total"].get("paid")
    if not isinstance(paid, dict) or not (_is_int(paid.get("count")) and _is_int(
            paid.get("amount"))):
        return "summary.total.paid must have an integer count and amount (fen)"
    return None


def sale_record(sale: Sale) -> dict[str, Any]:
    """The outbox payload of a final sale: a version 2 HQ record, its fields listed in
    :data:`SALE_FIELDS` (docs/hq-sync.schema.json)."""
    fields = {
        "id": sale.id, "out_trade_no": sale.out_trade_no, "order_ref": sale.order_ref,
        "amount": int(sale.amount), "currency": "CNY", "state": sale.state.value,
        "channel": sale.channel, "channel_trade_no": sale.channel_trade_no,
        "auth_code": sale.auth_code_masked, "decline_code": sale.decline_code,
        "message": sale.message, "refunded": sale.refunded, "subject": sale.subject,
        "created_at": sale.created_at, "paid_at": sale.paid_at, "updated_at": sale.updated_at,
    }
    return {"type": "sale", "version": SALE_VERSION, "sale": fields}


def refund_record(refund: Refund) -> dict[str, Any]:
    """The outbox payload of a final refund: a version 1 ``refund`` record, its fields
    listed in :data:`REFUND_FIELDS`."""
    fields = {
        "id": refund.id, "sale_id": refund.sale_id, "out_trade_no": refund.out_trade_no,
        "out_refund_no": refund.out_refund_no, "channel": refund.channel or None,
        "channel_refund_no": refund.channel_refund_no, "amount": int(refund.amount),
        "currency": "CNY", "state": refund.state.value, "reason": refund.reason,
        "message": refund.message, "created_at": refund.created_at,
        "refunded_at": refund.refunded_at, "updated_at": refund.updated_at,
    }
    return {"type": "refund", "version": REFUND_VERSION, "refund": fields}
