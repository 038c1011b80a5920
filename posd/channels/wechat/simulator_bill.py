# SPDX-License-Identifier: MIT
"""WeChat Pay v2 daily bill (``/pay/downloadbill``) from the ledger's trades. No I/O.

Format (reference/channels.md §1.9): CSV text, a detail header line, detail rows in which every
field is prefixed with a backtick (so Excel keeps long numbers), then a summary header and a
summary row, also backticked. Amounts in yuan. Micropay rows have 交易类型 ``MICROPAY``; a
paid-then-reversed order appears twice under the same order number: its payment (交易状态
``SUCCESS``) and its refund (``REVOKED``, with the refunded amount); a refund made with
``/secapi/pay/refund`` is a row of its own on the day it was *started* (交易状态 ``REFUND``,
with its 微信退款单号, 商户退款单号 and amount), its 退款状态 as it stood when the bill was
made (09:00 the next day) and never updated later, as WeChat's own. Days are Beijing days.
:class:`~posd.channels.simulator.ledger.BillEdit` values put differences into a bill: a trade's
rows left out, or its payment shown with another amount.
Fees are charged at the common 0.6 % rate and shown, as WeChat does, to 1/100,000 yuan.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from posd.core.zones import BEIJING
from posd.channels.simulator.ledger import (
    BillEdit, BillEditKind, RefundEntry, RefundOutcome, Trade, TradeState,
)
from posd.core.money import Fen, format_yuan

BILL_TYPES = ("ALL", "SUCCESS", "REFUND")

DETAIL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,"
    "交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,"
    "充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
_BILL_DATE = re.compile(r"[0-9]{8}", re.ASCII)
_FEE_RATE = "0.60%"
_FEE_PER_FEN = 6  # 0.6 % of 1 fen, in units of 1/100,000 yuan


@dataclass(frozen=True, slots=True)
class _Row:
    at: float
    trade: Trade
    refund: bool
    #: a refund's row: that refund (None: the payment, or the refund a reverse made)
    entry: RefundEntry | None = None
    #: a refund's 退款状态 when the bill was made
    status: str = "SUCCESS"
    #: what the payment row shows as its amount (a bill edit may change it)
    amount: Fen | None = None

    @property
    def refunded(self) -> Fen:
        if not self.refund:
            return Fen(0)
        return self.entry.amount if self.entry is not None else self.trade.amount


def made_at(day: date) -> float:
    """When the bill of ``day`` is made: 09:00 Beijing the next day (channels.md §1.9)."""
    return datetime.combine(day + timedelta(days=1), time(9), BEIJING).timestamp()


def render_bill(
    trades: Iterable[Trade], *, appid: str, mch_id: str, day: date, bill_type: str = "ALL",
    now: float | None = None, edits: Mapping[str, BillEdit] | None = None,
) -> str | None:
    """The bill text for ``day``, or None when there is nothing to bill ("No Bill Exist").
    ``now``: the refunds' statuses are as they stood then, or at :func:`made_at` if earlier."""
    cutoff = made_at(day) if now is None else min(now, made_at(day))
    edits = edits or {}
    rows = sorted(_edited(_rows(trades, day, bill_type, cutoff), edits),
                  key=lambda r: (r.at, r.trade.out_trade_no))
    if not rows:
        return None
    lines = [DETAIL_HEADER]
    lines += [_detail(row, appid, mch_id) for row in rows]
    lines += [SUMMARY_HEADER, _summary(rows)]
    return "\r\n".join(lines) + "\r\n"


def parse_bill_date(text: str) -> date | None:
    """``yyyyMMdd`` -> the date, or None."""
    if not _BILL_DATE.fullmatch(text):
        return None
    try:
        return date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return None


def _rows(trades: Iterable[Trade], day: date, bill_type: str, cutoff: float) -> Iterator[_Row]:
    payments, refunds = bill_type in ("ALL", "SUCCESS"), bill_type in ("ALL", "REFUND")
    for trade in trades:
        if payments and trade.paid_at is not None and _day(trade.paid_at) == day:
            yield _Row(trade.paid_at, trade, refund=False)
        refunded_at = trade.closed_at if trade.state is TradeState.REFUNDED else None
        if refunds and refunded_at is not None and _day(refunded_at) == day:
            yield _Row(refunded_at, trade, refund=True)
        for entry in trade.refunds if refunds else ():
            if _day(entry.created_at) == day:  # dated when started, as WeChat dates them
                yield _Row(entry.created_at, trade, refund=True, entry=entry,
                           status=_refund_status(entry, cutoff))


def _refund_status(entry: RefundEntry, cutoff: float) -> str:
    """退款状态 as it stood at ``cutoff`` (the ledger settles refunds lazily)."""
    if entry.succeeded_at is not None and entry.succeeded_at <= cutoff:
        return "SUCCESS"
    if entry.done_at is not None and entry.done_at <= cutoff:
        return "CHANGE" if entry.outcome is RefundOutcome.CHANGE else "SUCCESS"
    return "PROCESSING"


def _edited(rows: Iterable[_Row], edits: Mapping[str, BillEdit]) -> Iterator[_Row]:
    for row in rows:
        edit = edits.get(row.trade.out_trade_no)
        if edit is None:
            yield row
        elif edit.kind is BillEditKind.AMOUNT and not row.refund:
            yield _Row(row.at, row.trade, row.refund, row.entry, row.status, edit.amount)
        elif edit.kind is BillEditKind.AMOUNT:
            yield row


def _day(at: float) -> date:
    return datetime.fromtimestamp(at, BEIJING).date()


def _detail(row: _Row, appid: str, mch_id: str) -> str:
    t, entry = row.trade, row.entry
    amount = format_yuan(t.amount if row.amount is None else row.amount)
    refund = format_yuan(row.refunded) if row.refund else "0.00"
    fee = _fee(-row.refunded if row.refund else t.amount if row.amount is None else row.amount)
    state = "REVOKED" if row.refund and entry is None else "REFUND" if row.refund else "SUCCESS"
    refund_id = entry.channel_refund_no if entry is not None else "50" + t.channel_trade_no[2:]
    out_refund_no = entry.out_refund_no if entry is not None else t.out_trade_no
    fields = [
        datetime.fromtimestamp(row.at, BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        appid,
        mch_id,
        "0",
        t.device_info,
        t.channel_trade_no,
        t.out_trade_no,
        "oSIM" + t.buyer_ref,
        "MICROPAY",
        state,
        "CFT",
        "CNY",
        amount,
        "0.00",
        refund_id if row.refund else "0",
        out_refund_no if row.refund else "0",
        refund,
        "0.00",
        "ORIGINAL" if row.refund else "",
        row.status if row.refund else "",
        t.subject,
        t.attach,
        fee,
        _FEE_RATE,
        amount,
        refund,
        "",
    ]
    return ",".join(_cell(f) for f in fields)


def _summary(rows: list[_Row]) -> str:
    paid = Fen(sum(r.trade.amount if r.amount is None else r.amount
                   for r in rows if not r.refund))
    refunded = Fen(sum(r.refunded for r in rows))
    fields = [
        str(len(rows)),
        format_yuan(paid),
        format_yuan(refunded),
        "0.00",
        _fee(paid - refunded),
        format_yuan(paid),
        format_yuan(refunded),
    ]
    return ",".join(_cell(f) for f in fields)


def _fee(fen: int) -> str:
    units = abs(fen) * _FEE_PER_FEN
    sign = "-" if fen < 0 else ""
    return f"{sign}{units // 100_000}.{units % 100_000:05d}"


def _cell(value: str) -> str:
    """Backtick-prefixed, as WeChat writes every field; commas in free text become spaces."""
    return "`" + value.replace(",", " ").replace("\r", " ").replace("\n", " ")
