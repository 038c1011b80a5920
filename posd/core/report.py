# SPDX-License-Identifier: MIT
"""The daily Z-report: one business day's sales -> counts and totals per channel. [core]

Pure: the caller picks the day's sales (``created_at`` in :func:`day_bounds`) and passes
them in, either as Sale values (:func:`daily_report`) or as the store's SQL aggregate
(:func:`from_totals`, what a store with a million sales needs); nothing here reads a clock
or a database, so the API, the CLI (text, JSON, CSV, print) and the tests share one set of
figures and one paper layout (:func:`elements`).

A business day runs from ``cutoff_hour`` (``report.business_day_cutoff_hour``, default 0:
midnight) to the same hour the next day, so a shop open past midnight can close its day at,
say, 04:00. A report made before its day is over is an X-report (the day so far); after, a
Z-report.

What the figures mean:

- ``paid``: money taken and kept. ``net`` is the paid total: posd takes no refunds yet, and a
  reversed sale returned whatever it took.
- ``reversed``: closed by a reverse/cancel (any money taken went back); ``declined``: the
  channel said no; ``cancelled``: cancelled before a code was sent. None of these moved money.
- ``needs_attention``: the machinery gave up and a person must check the trade with the
  channel; the amount may or may not have been taken, so it is never in ``net`` and the
  sale ids are listed so that someone looks at them.
- ``in_progress``: not final yet (awaiting a code, paying, confirming, reversing).
"""

from __future__ import annotations

import contextlib
import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, tzinfo
from typing import assert_never

from posd.core import receipt
from posd.core.errors import InputError
from posd.core.layout import Element, Line, centred, pair, rule, title_size, width
from posd.core.money import Fen, format_yuan
from posd.core.receipt import Header, Language
from posd.core.sale import Sale, State

#: Sales that never reached a channel (cancelled while awaiting a code) are counted here.
NO_CHANNEL = "none"

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Tally:
    """How many sales, and their amount in fen."""

    count: int = 0
    amount: Fen = Fen(0)  # noqa: RUF009 - Fen is a NewType: Fen(0) is the immutable int 0

    def add(self, amount: Fen, count: int = 1) -> Tally:
        """This tally with ``count`` more sales totalling ``amount``."""
        return Tally(self.count + count, Fen(self.amount + amount))


@dataclass(frozen=True, slots=True)
class ChannelTotals:
    """One channel's figures for the day (or every channel's, as ``channel="all"``)."""

    channel: str
    paid: Tally = Tally()
    reversed: Tally = Tally()
    declined: Tally = Tally()
    cancelled: Tally = Tally()
    needs_attention: Tally = Tally()
    in_progress: Tally = Tally()
    #: refunds paid out during the day (by when they were refunded), of any day's sales
    refunded: Tally = Tally()

    @property
    def net(self) -> Fen:
        """Money taken and kept (fen): paid less refunded (DESIGN §9 rule 4)."""
        return Fen(self.paid.amount - self.refunded.amount)

    @property
    def count(self) -> int:
        return sum(getattr(self, bucket).count for bucket in BUCKETS)


#: The buckets, in report order; each is a ChannelTotals field.
BUCKETS = ("paid", "reversed", "declined", "cancelled", "needs_attention", "in_progress")


@dataclass(frozen=True, slots=True)
class AttentionSale:
    """A sale a person must check with the channel, as the report lists it."""

    id: int
    out_trade_no: str
    channel: str | None
    amount: Fen


@dataclass(frozen=True, slots=True)
class DailyReport:
    """The Z-report of one business day (an X-report while ``complete`` is False)."""

    day: date
    channels: tuple[ChannelTotals, ...]
    total: ChannelTotals
    #: ids of the day's sales a person must look at, oldest first.
    needs_attention: tuple[int, ...] = field(default=())
    #: the same sales with what a person needs to find them at the channel.
    attention: tuple[AttentionSale, ...] = field(default=())
    #: the business day's epoch range [since, until), when the caller knows it.
    since: float | None = None
    until: float | None = None
    #: False while the day is not over: an X-report, the day so far.
    complete: bool = True

    @property
    def net(self) -> Fen:
        return self.total.net

    @property
    def kind(self) -> str:
        """``Z`` (the day is over) or ``X`` (the day so far)."""
        return "Z" if self.complete else "X"


def bucket(state: State) -> str:
    """The report bucket of a sale in ``state``."""
    match state:
        case State.PAID:
            return "paid"
        case State.REVERSED:
            return "reversed"
        case State.DECLINED:
            return "declined"
        case State.CANCELLED:
            return "cancelled"
        case State.NEEDS_ATTENTION:
            return "needs_attention"
        case State.AWAITING_CODE | State.PAYING | State.CONFIRMING | State.REVERSING:
            return "in_progress"
        case _:
            assert_never(state)


_Tallies = dict[str, Tally]  # bucket -> tally, while counting


def _count(tallies: _Tallies, name: str, amount: Fen, count: int = 1) -> None:
    tallies[name] = tallies.get(name, Tally()).add(amount, count)


def _totals(channel: str, tallies: _Tallies) -> ChannelTotals:
    def get(name: str) -> Tally:
        return tallies.get(name, Tally())

    return ChannelTotals(
        channel, paid=get("paid"), reversed=get("reversed"), declined=get("declined"),
        cancelled=get("cancelled"), needs_attention=get("needs_attention"),
        in_progress=get("in_progress"),
    )


def _attention(sale: Sale) -> AttentionSale:
    return AttentionSale(sale.id, sale.out_trade_no, sale.channel, sale.amount)


def _assemble(day: date, per_channel: Mapping[str, _Tallies], total: _Tallies,
              attention: Iterable[AttentionSale], *, since: float | None = None,
              until: float | None = None, complete: bool = True) -> DailyReport:
    channels = tuple(_totals(name, per_channel[name]) for name in sorted(per_channel))
    listed = tuple(sorted(attention, key=lambda a: a.id))
    return DailyReport(day, channels, _totals("all", total), tuple(a.id for a in listed),
                       listed, since, until, complete)


def daily_report(day: date, sales: Iterable[Sale]) -> DailyReport:
    """Summarise ``sales`` (the day's, as chosen by the caller) per channel and overall."""
    per_channel: dict[str, _Tallies] = {}
    total: _Tallies = {}
    attention: list[AttentionSale] = []
    for sale in sales:
        name = bucket(sale.state)
        _count(per_channel.setdefault(sale.channel or NO_CHANNEL, {}), name, sale.amount)
        _count(total, name, sale.amount)
        if sale.state is State.NEEDS_ATTENTION:
            attention.append(_attention(sale))
    return _assemble(day, per_channel, total, attention)


#: One row of the store's aggregate: (channel, state, count, amount in fen).
TotalsRow = tuple[str | None, str, int, int]


def from_totals(day: date, rows: Iterable[TotalsRow], attention: Iterable[Sale], *,
                since: float, until: float, complete: bool) -> DailyReport:
    """The report from the store's per (channel, state) counts and sums, plus the day's
    needs_attention sales; the same figures as :func:`daily_report` over the same sales."""
    per_channel: dict[str, _Tallies] = {}
    total: _Tallies = {}
    for channel, state, count, amount in rows:
        name = bucket(State(state))
        _count(per_channel.setdefault(channel or NO_CHANNEL, {}), name, Fen(amount), count)
        _count(total, name, Fen(amount), count)
    return _assemble(day, per_channel, total, (_attention(s) for s in attention),
                     since=since, until=until, complete=complete)


#: One row of the store's refund totals: (channel, count, amount in fen).
RefundRow = tuple[str, int, int]


def with_refunds(report: DailyReport, rows: Iterable[RefundRow]) -> DailyReport:
    """``report`` with the day's refunds per channel and in the total; net falls by them."""
    found = {channel or NO_CHANNEL: Tally(count, Fen(amount)) for channel, count, amount in rows}
    if not found:
        return report
    by_name = {c.channel: c for c in report.channels}
    for name in found.keys() - by_name.keys():
        by_name[name] = ChannelTotals(name)  # refunds of a channel with no sale today
    channels = tuple(replace(by_name[name], refunded=found.get(name, Tally()))
                     for name in sorted(by_name))
    total = Tally(sum(t.count for t in found.values()),
                  Fen(sum(int(t.amount) for t in found.values())))
    return replace(report, channels=channels, total=replace(report.total, refunded=total))


def parse_day(text: str) -> date:
    """'2024-05-01' -> date(2024, 5, 1); anything else is an InputError saying what to send."""
    if _DAY.fullmatch(text) is not None:
        with contextlib.suppress(ValueError):  # 2024-02-30 matches the pattern
            return date.fromisoformat(text)
    raise InputError(f"date must be a calendar day written YYYY-MM-DD, got {text!r}")


def day_bounds(day: date, tz: tzinfo | None, cutoff_hour: int = 0) -> tuple[float, float]:
    """The epoch range [start, end) of business ``day`` in ``tz`` (None: the system's local
    time zone): from ``cutoff_hour`` o'clock on ``day`` to the same hour the day after.

    A day is not always 24 hours (daylight saving), so both ends are computed as wall-clock
    times, not as start + 86400.
    """
    start = datetime.combine(day, time(cutoff_hour), tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time(cutoff_hour), tzinfo=tz)
    return start.timestamp(), end.timestamp()


def business_day(at: float, tz: tzinfo | None, cutoff_hour: int = 0) -> date:
    """The business day that epoch ``at`` belongs to: before the cut-off it is the day before."""
    local = datetime.fromtimestamp(at, tz)
    return local.date() - timedelta(days=1) if local.hour < cutoff_hour else local.date()


def closing_day(at: float, tz: tzinfo | None, cutoff_hour: int = 0) -> date:
    """The business day whose end is nearest to ``at``: the day an end-of-day report printed
    at ``at`` closes (at 23:30 with a midnight cut-off: today; at 04:10 with a 04:00 cut-off:
    the day that has just ended)."""
    today = business_day(at, tz, cutoff_hour)
    start, end = day_bounds(today, tz, cutoff_hour)
    return today - timedelta(days=1) if at - start < end - at else today


# --- paper and CSV -----------------------------------------------------------------------

WORDS: Mapping[Language, Mapping[str, str]] = {
    "en": {
        "Z": "Z-REPORT", "X": "X-REPORT (day so far)", "day": "Business day", "from": "From",
        "to": "To", "till": "Store/Till", "printed": "Printed", "paid": "Paid",
        "reversed": "Reversed", "declined": "Declined", "cancelled": "Cancelled",
        "needs_attention": "Needs attention", "in_progress": "In progress", "net": "Net",
        "all": "ALL CHANNELS", NO_CHANNEL: "No code scanned", "attention": "NEEDS ATTENTION",
        "nothing": "none", "sale": "Sale", "currency": "Currency", "refunded": "Refunded",
    },
    "zh": {
        "Z": "日结报表 Z", "X": "X报表(截至目前)", "day": "营业日", "from": "起", "to": "止",
        "till": "门店/终端", "printed": "打印时间", "paid": "收款", "reversed": "撤销",
        "declined": "失败", "cancelled": "取消", "needs_attention": "待核实",
        "in_progress": "处理中", "net": "净收款", "all": "全部渠道合计", NO_CHANNEL: "未扫码",
        "attention": "需人工核实", "nothing": "无", "sale": "流水号",
        "currency": "币种", "refunded": "退款",
    },
}

#: Buckets always printed; the others only when they hold a sale.
_ALWAYS = ("paid", "reversed", "declined")


def _rjust(text: str, columns: int) -> str:
    return " " * max(0, columns - width(text)) + text


def _figures(tally: Tally, language: Language) -> str:
    """Count and amount, right-aligned: 16 columns in English (amounts in CNY, said once in
    the heading), 17 in Chinese (with ``￥``), leaving 15 or 14 for the label on 58 mm."""
    amount = format_yuan(tally.amount) if language == "en" else receipt.money(tally.amount, "zh")
    return f"{tally.count:>4} {_rjust(amount, 11 if language == 'en' else 12)}"


def _channel_block(totals: ChannelTotals, words: Mapping[str, str], language: Language,
                   columns: int, names: Mapping[str, tuple[str, str]]) -> list[Element]:
    label = words.get(totals.channel) or receipt.channel_label(totals.channel, language, names)
    out: list[Element] = [Line(label, bold=True)]
    for name in BUCKETS:
        tally: Tally = getattr(totals, name)
        if tally.count or (name in _ALWAYS and totals.channel != NO_CHANNEL):
            out += pair(words[name], _figures(tally, language), columns)
    if totals.refunded.count:
        out += pair(words["refunded"], _figures(totals.refunded, language), columns)
    out += pair(words["net"], receipt.money(totals.net, language), columns, bold=True)
    return out


def _attention_block(report: DailyReport, words: Mapping[str, str], language: Language,
                     columns: int, names: Mapping[str, tuple[str, str]]) -> list[Element]:
    count = str(len(report.attention)) if report.attention else words["nothing"]
    out: list[Element] = [*pair(words["attention"], count, columns, bold=True)]
    for sale in report.attention:
        left = f"{words['sale']} {sale.id} {receipt.channel_label(sale.channel, language, names)}"
        out += pair(left, receipt.money(sale.amount, language), columns)
        out.append(Line(sale.out_trade_no, "right"))
    return out


def _stamp(epoch: float, tz: tzinfo | None) -> str:
    return datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M")


def elements(report: DailyReport, header: Header, *, tz: tzinfo | None, columns: int = 32,
             language: Language = "en", printed_at: float | None = None) -> list[Element]:
    """The Z- (or X-) report on paper; times in ``tz``, the zone of the business day."""
    words = WORDS[language]
    title = words[report.kind]
    out = receipt.heading(header, columns)
    out += [rule(columns), *centred(title, columns, bold=True, size=title_size(title, columns))]
    out += pair(words["day"], report.day.isoformat(), columns, bold=True)
    if report.since is not None and report.until is not None:
        out += pair(words["from"], _stamp(report.since, tz), columns)
        out += pair(words["to"], _stamp(report.until, tz), columns)
    out += pair(words["till"], f"{header.store_id}/{header.terminal_id}", columns)
    out += pair(words["currency"], "CNY", columns)
    if printed_at is not None:
        out += pair(words["printed"], _stamp(printed_at, tz), columns)
    for totals in (*report.channels, report.total):
        out += [rule(columns), *_channel_block(totals, words, language, columns, header.channels)]
    out += [rule(columns), *_attention_block(report, words, language, columns, header.channels),
            Line()]
    return out


CSV_FIELDS = ("day", "kind", "channel",
              *(f"{name}_{what}" for name in (*BUCKETS, "refunded")
                for what in ("count", "yuan")), "net_yuan")


def as_csv(report: DailyReport) -> str:
    """One row per channel and one for all channels (``channel = all``); amounts in yuan."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for totals in (*report.channels, report.total):
        cells = [report.day.isoformat(), report.kind, totals.channel]
        for name in (*BUCKETS, "refunded"):
            tally: Tally = getattr(totals, name)
            cells += [str(tally.count), format_yuan(tally.amount)]
        writer.writerow([*cells, format_yuan(totals.net)])
    return out.getvalue()
