# SPDX-License-Identifier: MIT
"""The API's JSON shapes (the register's contract, documented into /openapi.json) and
the conversions from the core's values to them."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, tzinfo
from typing import Annotated, Any, Literal

from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator

from posd.core.money import MAX_FEN, check_fen
from posd.core.report import BUCKETS, ChannelTotals, DailyReport
from posd.core.refund import Refund, RefundState
from posd.core.sale import Sale, State


log = logging.getLogger(__name__)

#: Request bodies are a few hundred bytes; anything much larger is a mistake or an attack.
MAX_BODY_BYTES = 16 * 1024


# --- JSON shapes ---------------------------------------------------------------------------


class SaleRequest(BaseModel):
    """``POST /v1/sales``: what the register sends."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(
        gt=0, le=MAX_FEN, examples=[1250],
        description="Integer fen (1 yuan = 100 fen): 12.50 yuan is 1250. Not a float or string.",
    )
    order_ref: str | None = Field(
        default=None, examples=["R-20240501-0042"],
        description="The register's order (1-64 characters). An order has at most one paid "
        "sale and at most one unresolved sale at a time.",
        # Documented, checked by the engine (its sentence, not pydantic's, reaches the client).
        json_schema_extra={"minLength": 1, "maxLength": 64},
    )
    auth_code: str | None = Field(
        default=None, examples=["134567890123450001"],
        description="The customer's payment code as a string of digits. Without it the sale "
        "waits (awaiting_code) for the next scan.",
    )
    subject: str = Field(default="", max_length=128, description="Goods description for the "
                         "channel; the store's name when empty.")

    @field_validator("amount", mode="before")
    @classmethod
    def _fen(cls, value: object) -> int:
        return _strict_fen(value)

    @field_validator("auth_code")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        # The engine reads "" as "no code" and would wait for a scan; a register sending ""
        # had a scan that read nothing.
        if value == "":
            raise ValueError("auth_code is empty: nothing was scanned. Scan the customer's "
                             "payment code again, or leave auth_code out to wait for the scanner")
        return value


class SaleOut(BaseModel):
    """A sale as the API shows it. Times are ISO 8601 with the store's UTC offset."""

    id: int
    order_ref: str | None
    amount: int = Field(description="fen")
    currency: Literal["CNY"] = "CNY"
    state: State
    final: bool = Field(description="true once the state will not change by itself")
    channel: str | None = Field(description='"wechat", "alipay", or null before a code')
    out_trade_no: str
    channel_trade_no: str | None
    auth_code: str | None = Field(description="the payment code, masked: first 4 + last 4")
    decline_code: str | None
    message: str = Field(description="a sentence a cashier can read")
    refunded: bool | None = Field(
        description="for a reversed sale: true if money taken was returned, false if none was "
        "taken, null if the channel did not say")
    subject: str
    created_at: datetime
    paid_at: datetime | None
    updated_at: datetime
    deadline_at: datetime | None = Field(description="reverse starts if not final by then")
    refunded_amount: int = Field(default=0, description="fen: the sum of its refunded refunds")


class SaleList(BaseModel):
    sales: list[SaleOut]


def _strict_fen(value: object) -> int:
    """Strict: 12.5, "1250", true and 1e3 are refused (pydantic's lax int would take 1250.0
    and "1250"). A ValueError here reaches the client as its sentence."""
    if isinstance(value, bool) or not isinstance(value, int):
        shown = json.dumps(value, ensure_ascii=False)[:40]
        raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError
            f"amount must be an integer number of fen (1 yuan = 100 fen: "
            f"send 12.50 yuan as 1250), got {shown}")
    return check_fen(value)


class RefundRequest(BaseModel):
    """``POST /v1/sales/{id}/refunds``: what the manager asks for."""

    model_config = ConfigDict(extra="forbid")

    amount: int | None = Field(
        default=None, gt=0, le=MAX_FEN, examples=[1201],
        description="Integer fen to refund; leave it out to refund all that is left.")
    reason: str = Field(
        examples=["returned a mug"], description="Why (kept with the refund, sent to the "
        "channel as the refund's description): 1 to 80 characters.",
        json_schema_extra={"minLength": 1, "maxLength": 80})

    @field_validator("amount", mode="before")
    @classmethod
    def _fen(cls, value: object) -> int | None:
        return None if value is None else _strict_fen(value)


class RefundOut(BaseModel):
    """A refund as the API shows it (DESIGN §9). Times are ISO 8601 with the store's offset."""

    id: int
    sale_id: int
    amount: int = Field(description="fen")
    currency: Literal["CNY"] = "CNY"
    reason: str
    state: RefundState
    final: bool = Field(description="true once the state will not change by itself")
    channel: str
    out_trade_no: str = Field(description="the sale's number at the channel")
    out_refund_no: str = Field(description="this refund's number: the same on every retry")
    channel_refund_no: str | None
    message: str = Field(description="a sentence a manager can read")
    created_at: datetime
    refunded_at: datetime | None
    updated_at: datetime


class RefundList(BaseModel):
    refunds: list[RefundOut]


class ResolveRequest(BaseModel):
    """``POST /v1/sales/{id}/resolve``: how a person found the sale had ended."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    as_: Literal["paid", "reversed"] = Field(alias="as", description="paid: the customer paid "
                                             "and the shop keeps it; reversed: no money kept")
    note: str = Field(min_length=1, max_length=200, description="what was checked, and where")


class ReconcileRequest(BaseModel):
    """``POST /v1/reconciliations``: run a bill day now (manager token)."""

    model_config = ConfigDict(extra="forbid")

    date: str | None = Field(default=None, pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$",
                             description="the bill day, Beijing time; default yesterday")
    channel: str | None = Field(default=None, pattern=r"^[a-z0-9_]{1,32}$",
                                description="one channel; default every enabled one")


class DifferenceResolveRequest(BaseModel):
    """``POST /v1/reconciliations/differences/{id}/resolve``: what a person did about it."""

    model_config = ConfigDict(extra="forbid")

    note: str = Field(min_length=1, max_length=500, description="e.g. refunded in the merchant "
                      "platform on 12-02, refund no. ...; or: recorded as a sale by hand")


class ReconciliationOut(BaseModel):
    """One channel's reconciliation of one bill day (docs/reconciliation.md)."""

    id: int
    channel: str
    date: str = Field(description="the bill day (Beijing), YYYY-MM-DD")
    status: Literal["matched", "held", "differences", "waiting", "failed"]
    detail: str = Field(description="one sentence: all matched, how many differ, or why not run")
    attempts: int
    run_at: str = Field(description="ISO 8601, Beijing time")
    bill_file: str | None = Field(description="the bill as downloaded, under the state directory")
    result: dict[str, Any] | None = Field(description="the result (version 1): counts, "
                                          "figures, differences (each with id, resolved_at, "
                                          "resolved_note), held records; null when no bill "
                                          "was read")


class ReconciliationList(BaseModel):
    verdict: str = Field(description='"all matched", or what remains')
    reconciliations: list[ReconciliationOut]


class TallyOut(BaseModel):
    count: int
    amount: int = Field(description="fen")


class ChannelTotalsOut(BaseModel):
    channel: str
    count: int
    paid: TallyOut
    reversed: TallyOut
    declined: TallyOut
    cancelled: TallyOut
    needs_attention: TallyOut
    in_progress: TallyOut
    refunded: TallyOut = Field(description="refunds paid out that day, of any day's sales")
    net: int = Field(description="fen taken and kept: paid less refunded")


class DailyReportOut(BaseModel):
    """The Z-report of one local calendar day (by the sales' created_at)."""

    date: date
    channels: list[ChannelTotalsOut]
    total: ChannelTotalsOut
    net: int = Field(description="fen taken and kept, all channels")
    needs_attention: list[int] = Field(description="ids of sales a person must check")


class HealthOut(BaseModel):
    """Liveness plus what is degraded; further engine fields pass through."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded", "down"]
    version: str
    degraded: list[str]


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, as a sentence to act on")


class StoppingOut(BaseModel):
    detail: str = Field(description="posd is shutting down; the sale goes on after the restart")
    sale: SaleOut = Field(description="the sale as it stands")


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be read (not UTF-8 JSON)"},
    401: {"model": ErrorOut, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorOut, "description": "No such sale"},
    422: {"model": ErrorOut, "description": "Bad input (amount, payment code, date, ...)"},
    413: {"model": ErrorOut, "description": f"Request body over {MAX_BODY_BYTES} bytes"},
    503: {"model": ErrorOut, "description": "posd is shutting down or its database is unusable"},
}

#: A sale id: SQLite's integer range (a larger number is not an id, and would overflow).
SaleId = Annotated[int, PathParam(ge=0, le=2**63 - 1, description="the sale's id")]
#: ``date`` query parameters; parse_day() checks them with a sentence of its own.
DAY_FORMAT = {"format": "date"}


# --- conversions -------------------------------------------------------------------------


def _at(epoch: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).astimezone(tz)  # tz None: the local time zone


def _maybe_at(epoch: float | None, tz: tzinfo | None) -> datetime | None:
    return None if epoch is None else _at(epoch, tz)


def refund_out(refund: Refund, tz: tzinfo | None = None) -> RefundOut:
    return RefundOut(
        id=refund.id, sale_id=refund.sale_id, amount=refund.amount, reason=refund.reason,
        state=refund.state, final=refund.final, channel=refund.channel,
        out_trade_no=refund.out_trade_no, out_refund_no=refund.out_refund_no,
        channel_refund_no=refund.channel_refund_no, message=refund.message,
        created_at=_at(refund.created_at, tz), refunded_at=_maybe_at(refund.refunded_at, tz),
        updated_at=_at(refund.updated_at, tz))


def sale_out(sale: Sale, tz: tzinfo | None = None, refunded: int = 0) -> SaleOut:
    """The API's view of ``sale``; times in ``tz`` (None: the system's local time zone)."""
    return SaleOut(
        id=sale.id, order_ref=sale.order_ref, amount=sale.amount, state=sale.state,
        final=sale.final, channel=sale.channel, out_trade_no=sale.out_trade_no,
        channel_trade_no=sale.channel_trade_no, auth_code=sale.auth_code_masked,
        decline_code=sale.decline_code, message=sale.message, refunded=sale.refunded,
        subject=sale.subject, created_at=_at(sale.created_at, tz),
        paid_at=_maybe_at(sale.paid_at, tz), updated_at=_at(sale.updated_at, tz),
        deadline_at=_maybe_at(sale.deadline_at, tz), refunded_amount=refunded,
    )


def _totals_out(totals: ChannelTotals) -> ChannelTotalsOut:
    tallies = {name: TallyOut(count=getattr(totals, name).count,
                              amount=getattr(totals, name).amount)
               for name in (*BUCKETS, "refunded")}
    return ChannelTotalsOut(channel=totals.channel, count=totals.count, net=totals.net, **tallies)


def report_out(report: DailyReport) -> DailyReportOut:
    return DailyReportOut(
        date=report.day, channels=[_totals_out(c) for c in report.channels],
        total=_totals_out(report.total), net=report.net,
        needs_attention=list(report.needs_attention),
    )


