# SPDX-License-Identifier: MIT
"""The daily Z-report: one day's sales -> counts and totals per channel. [core]

Pure: the caller picks the day's sales (``created_at`` in :func:`day_bounds`) and passes
them in; nothing here reads a clock or a database, so the API, the CLI (text, CSV, print)
and the tests share one set of figures.

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
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, tzinfo
from typing import assert_never

from posd.errors import InputError
from posd.money import Fen
from posd.sale import Sale, State

#: Sales that never reached a channel (cancelled while awaiting a code) are counted here.
NO_CHANNEL = "none"

_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)


@dataclass(frozen=True, slots=True)
class Tally:
    """How many sales, and their amount in fen."""

    count: int = 0
    amount: Fen = Fen(0)  # noqa: RUF009 - Fen is a NewType: Fen(0) is the immutable int 0

    def add(self, amount: Fen) -> Tally:
        return Tally(self.count + 1, Fen(self.amount + amount))


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

    @property
    def net(self) -> Fen:
        """Money taken and kept (fen)."""
        return self.paid.amount

    @property
    def count(self) -> int:
        return sum(getattr(self, bucket).count for bucket in BUCKETS)


#: The buckets, in report order; each is a ChannelTotals field.
BUCKETS = ("paid", "reversed", "declined", "cancelled", "needs_attention", "in_progress")


@dataclass(frozen=True, slots=True)
class DailyReport:
    """The Z-report of one calendar day."""

    day: date
    channels: tuple[ChannelTotals, ...]
    total: ChannelTotals
    #: ids of the day's sales a person must look at, oldest first.
    needs_attention: tuple[int, ...] = field(default=())

    @property
    def net(self) -> Fen:
        return self.total.net


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


def _count(tallies: _Tallies, sale: Sale) -> None:
    name = bucket(sale.state)
    tallies[name] = tallies.get(name, Tally()).add(sale.amount)


def _totals(channel: str, tallies: _Tallies) -> ChannelTotals:
    def get(name: str) -> Tally:
        return tallies.get(name, Tally())

    return ChannelTotals(
        channel, paid=get("paid"), reversed=get("reversed"), declined=get("declined"),
        cancelled=get("cancelled"), needs_attention=get("needs_attention"),
        in_progress=get("in_progress"),
    )


def daily_report(day: date, sales: Iterable[Sale]) -> DailyReport:
    """Summarise ``sales`` (the day's, as chosen by the caller) per channel and overall."""
    per_channel: dict[str, _Tallies] = {}
    total: _Tallies = {}
    attention: list[int] = []
    for sale in sales:
        _count(per_channel.setdefault(sale.channel or NO_CHANNEL, {}), sale)
        _count(total, sale)
        if sale.state is State.NEEDS_ATTENTION:
            attention.append(sale.id)
    channels = tuple(_totals(name, per_channel[name]) for name in sorted(per_channel))
    return DailyReport(day, channels, _totals("all", total), tuple(sorted(attention)))


def parse_day(text: str) -> date:
    """'2024-05-01' -> date(2024, 5, 1); anything else is an InputError saying what to send."""
    if _DAY.fullmatch(text) is not None:
        with contextlib.suppress(ValueError):  # 2024-02-30 matches the pattern
            return date.fromisoformat(text)
    raise InputError(f"date must be a calendar day written YYYY-MM-DD, got {text!r}")


def day_bounds(day: date, tz: tzinfo | None) -> tuple[float, float]:
    """The epoch range [start, end) of ``day`` in ``tz`` (None: the system's local time zone).

    A day is not always 24 hours (daylight saving), so both ends are computed as midnights.
    """
    start = datetime.combine(day, time.min, tzinfo=tz)
    end = datetime.combine(day + timedelta(days=1), time.min, tzinfo=tz)
    return start.timestamp(), end.timestamp()
