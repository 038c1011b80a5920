# SPDX-License-Identifier: MIT
"""Reconciliation (对账): a channel's bill of one day against posd's sales and refunds. [core]

Pure: a :class:`posd.core.bills.Bill` and posd's records in, a :class:`Reconciliation` out
(DESIGN §10). The shell (``posd.reconcile``) downloads the bills, asks the channel about each
difference and keeps the result.

Theory of operation
-------------------
A bill covers the whole merchant account; posd takes the rows whose ``out_trade_no`` is its
own (:func:`posd.core.sale.is_own_trade_no`: this store and terminal) and counts the rest
as ``other_terminals``. It then judges *items*: a **trade** (one ``out_trade_no``: posd's
sale, if any, and the bill's payment and revoke rows under that number) and a **refund**
(one ``out_refund_no``: posd's refund and the bill's refund row). Each item ends in one class:

=================== =========================================================================
``matched``         the bill and posd agree (a reversed sale matches a payment plus its revoke,
                    or no row at all)
``channel_only``    the channel took or returned money under one of posd's numbers and posd
                    has no record of it
``posd_only``       posd says paid or refunded, the bill does not show it
``status_mismatch`` both know the number and disagree on what happened
``amount_mismatch`` both say it happened, with other amounts
=================== =========================================================================

An item belongs to the day of its first payment row (a refund: its refund row); with no row
anywhere, to the day posd made it. Rows are looked for in the neighbouring days' bills too
(a sale at 23:59:58 may be paid at 00:00:03), so a trade is judged once, on one day. A posd
record near midnight that is not in this bill, while the next day's bill is not in hand yet,
is *held*: not a difference until that bill has been looked at (the daily job runs the day
again once it has). ``money_taken`` marks the differences where the channel holds a
customer's money that posd does not count as paid: a person must act on those.
"""

from __future__ import annotations

import enum
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any

from posd.core.bills import Bill, BillRow, RowKind
from posd.core.money import Fen, format_yuan
from posd.core.refund import Refund, RefundState
from posd.core.sale import FINAL, Sale, State, is_own_trade_no
from posd.core.zones import BEIJING

#: A posd record this close to midnight may sit in the next day's bill.
HOLD_S = 15 * 60.0

#: Result format of :func:`as_json` (docs/reconciliation.md); bumped on incompatible change.
VERSION = 1

#: WeChat 退款状态 values that mean the money did not go back.
FAILED_REFUND_STATUSES = frozenset({"CHANGE", "REFUNDCLOSE", "FAIL", "ABNORMAL"})


class Verdict(enum.StrEnum):
    MATCHED = "matched"
    CHANNEL_ONLY = "channel_only"
    POSD_ONLY = "posd_only"
    STATUS_MISMATCH = "status_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"


@dataclass(frozen=True, slots=True)
class Difference:
    """One item that did not match, with a sentence saying what a manager does about it."""

    key: str  # "trade:<out_trade_no>" or "refund:<out_refund_no>": the same on a re-run
    verdict: Verdict
    subject: str  # "trade" or "refund"
    channel: str
    out_trade_no: str
    message: str
    out_refund_no: str = ""
    channel_trade_no: str = ""
    channel_refund_no: str = ""
    sale_id: int | None = None
    refund_id: int | None = None
    posd_state: str | None = None
    posd_amount: int | None = None
    #: what the bill shows: "paid", "paid, reversed", "refunded", "nothing", ...
    bill_shows: str = "nothing"
    bill_amount: int | None = None
    bill_at: float | None = None
    #: the channel holds a customer's money that posd does not count as paid
    money_taken: bool = False
    #: what the channel said when asked about it afterwards (the shell fills it in)
    followup: str = ""


@dataclass(frozen=True, slots=True)
class Held:
    """A posd record near midnight, waiting for the next day's bill before it counts."""

    key: str
    subject: str
    out_trade_no: str
    amount: int
    waits_for: str  # the day, YYYY-MM-DD
    out_refund_no: str = ""
    sale_id: int | None = None
    refund_id: int | None = None


@dataclass(frozen=True, slots=True)
class Tally:
    count: int = 0
    amount: int = 0  # fen

    def add(self, amount: int) -> Tally:
        return Tally(self.count + 1, self.amount + amount)


@dataclass(frozen=True, slots=True)
class Reconciliation:
    channel: str
    day: date
    counts: Mapping[Verdict, int]
    differences: tuple[Difference, ...]
    held: tuple[Held, ...] = ()
    #: this terminal's rows of the bill: money taken, money returned, the channel's fees
    bill_paid: Tally = Tally()
    bill_returned: Tally = Tally()
    bill_fee: int = 0  # thousandths of a fen
    #: posd's own figures of the (Beijing) day: paid sales, refunded refunds
    posd_paid: Tally = Tally()
    posd_refunded: Tally = Tally()
    #: rows of the bill under other terminals' (or systems') numbers
    other_terminals: Tally = Tally()
    other_returned: Tally = Tally()
    #: posd records of the day found in a neighbouring day's bill (judged there)
    elsewhere: int = 0
    bill_rows: int = 0
    warnings: tuple[str, ...] = ()
    #: the bill was not there and the day is long past: an empty bill was assumed
    no_bill: bool = False

    @property
    def all_matched(self) -> bool:
        return not self.differences

    @property
    def status(self) -> str:
        """``matched``, ``held`` (nothing differs yet, some wait) or ``differences``."""
        if self.differences:
            return "differences"
        return "held" if self.held else "matched"

    @property
    def money_taken(self) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.money_taken)


@dataclass(slots=True)
class _Evidence:
    """The rows under one number, across the bills in hand, each with its bill's day."""

    rows: list[tuple[date, BillRow]] = field(default_factory=list)

    def of(self, *kinds: RowKind) -> list[BillRow]:
        return [r for _, r in self.rows if r.kind in kinds]

    def home(self) -> date | None:
        """The day the item belongs to: its first payment's (refund's) bill, else any row's."""
        for kinds in ((RowKind.PAYMENT, RowKind.REFUND), tuple(RowKind)):
            days = [d for d, r in self.rows if r.kind in kinds]
            if days:
                return min(days)
        return None


def day_bounds(day: date) -> tuple[float, float]:
    """A Beijing calendar day as epoch seconds [start, end): the channels' bill days."""
    start = datetime.combine(day, time(), BEIJING)
    return start.timestamp(), (start + timedelta(days=1)).timestamp()


def beijing_day(at: float) -> date:
    return datetime.fromtimestamp(at, BEIJING).date()


def reconcile(
    bill: Bill,
    sales: Iterable[Sale],
    refunds: Iterable[Refund],
    *,
    store_id: str,
    terminal_id: str,
    neighbours: Mapping[date, Bill | None] | None = None,
    label: str = "",
    hold_s: float = HOLD_S,
    no_bill: bool = False,
    channels: Collection[str] | None = None,
) -> Reconciliation:
    """Judge ``bill``'s day. ``sales`` / ``refunds``: posd's records of this channel around
    the day (the shell passes the three days around it and every record a row names);
    ``neighbours``: the bills of the day before and after, None where not in hand;
    ``channels``: whose records the bill covers (default: the bill's own channel; WeChat
    Pay v3's bill covers v2's sales too: one merchant account, one bill)."""
    members = frozenset(channels) if channels is not None else frozenset({bill.channel})
    label = label or bill.channel
    neighbours = dict(neighbours or {})
    day, (start, end) = bill.day, day_bounds(bill.day)
    before, after = day - timedelta(days=1), day + timedelta(days=1)

    own_numbers: dict[str, bool] = {}

    def ours(row: BillRow) -> bool:
        number = row.out_trade_no
        found = own_numbers.get(number)
        if found is None:
            found = own_numbers[number] = is_own_trade_no(number, store_id, terminal_id)
        return found

    trades: dict[str, _Evidence] = defaultdict(_Evidence)
    refund_rows: dict[str, _Evidence] = defaultdict(_Evidence)
    for each in (bill, *(b for b in neighbours.values() if b is not None)):
        for row in each.rows:
            if not ours(row):
                continue
            if row.kind is RowKind.REFUND:
                refund_rows[row.out_refund_no or f"{row.out_trade_no}?{row.line}"].rows.append(
                    (each.day, row))
            else:
                trades[row.out_trade_no].rows.append((each.day, row))

    sales_by_no = {s.out_trade_no: s for s in sales if s.channel in members}
    refunds_by_no = {r.out_refund_no: r for r in refunds if r.channel in members}

    def in_day(at: float) -> bool:
        return start <= at < end

    def held_until(times: Iterable[float | None]) -> date | None:
        """The day whose bill a record near midnight waits for, if that bill is not in hand."""
        known = [t for t in times if t is not None]
        if neighbours.get(after) is None and any(t >= end - hold_s for t in known):
            return after
        if neighbours.get(before) is None and any(t < start + hold_s for t in known):
            return before
        return None

    counts: dict[Verdict, int] = {v: 0 for v in Verdict}
    differences: list[Difference] = []
    held: list[Held] = []
    elsewhere = 0

    def judged_elsewhere(evidence: _Evidence, record: Sale | Refund | None) -> bool:
        """Whether the item belongs to a neighbouring day's bill (judged there)."""
        nonlocal elsewhere
        home = evidence.home()
        if home is None or home == day:
            return False
        if record is not None and in_day(record.created_at):
            elsewhere += 1
        return True

    def tally(judged: Difference) -> None:
        counts[judged.verdict] += 1
        if judged.verdict is not Verdict.MATCHED:
            differences.append(judged)

    for number in sorted(set(trades) | {n for n, s in sales_by_no.items() if in_day(s.created_at)}):
        evidence = trades.get(number, _Evidence())
        sale = sales_by_no.get(number)
        if sale is not None and _plainly_matched(evidence, sale, day):
            counts[Verdict.MATCHED] += 1  # the common case, without building a Difference
            continue
        if judged_elsewhere(evidence, sale):
            continue
        judged = _judge_trade(number, evidence, sale, label)
        if judged is None:
            continue
        if judged.verdict is Verdict.POSD_ONLY or (
                judged.money_taken and sale is not None and sale.state is State.REVERSED):
            assert sale is not None
            waits = held_until((sale.created_at, sale.paid_at, sale.updated_at))
            if waits is not None:
                held.append(Held(f"trade:{number}", "trade", number, int(sale.amount),
                                 waits.isoformat(), sale_id=sale.id))
                continue
        tally(judged)

    day_refunds = {n for n, r in refunds_by_no.items() if in_day(r.created_at)}
    for number in sorted(set(refund_rows) | day_refunds):
        evidence = refund_rows.get(number, _Evidence())
        refund = refunds_by_no.get(number)
        if judged_elsewhere(evidence, refund):
            continue
        judged = _judge_refund(number, evidence, refund, label)
        if judged is None:
            continue
        if judged.verdict is Verdict.POSD_ONLY and refund is not None:
            waits = held_until((refund.created_at, refund.refunded_at))
            if waits is not None:
                held.append(Held(f"refund:{number}", "refund", refund.out_trade_no,
                                 int(refund.amount), waits.isoformat(),
                                 out_refund_no=number, refund_id=refund.id))
                continue
        tally(judged)

    return Reconciliation(
        channel=bill.channel, day=day, counts=counts,
        differences=tuple(sorted(differences, key=_when)), held=tuple(held),
        **_figures(bill, ours, sales_by_no.values(), refunds_by_no.values(), in_day),
        elsewhere=elsewhere, bill_rows=len(bill.rows), warnings=bill.warnings, no_bill=no_bill,
    )


def _plainly_matched(evidence: _Evidence, sale: Sale, day: date) -> bool:
    """A paid sale with its one payment row, or a reversed one with its payment and revoke
    (or WeChat's single REVOKED row), all in this day's bill, amounts equal: what
    :func:`_judge_trade` calls matched, known without its work."""
    rows = evidence.rows
    if any(d != day for d, _ in rows):
        return False
    kinds = [r.kind for _, r in rows]
    if sale.state is State.PAID:
        return kinds == [RowKind.PAYMENT] and rows[0][1].amount == sale.amount
    if sale.state is State.REVERSED:
        return sorted(kinds) in ([RowKind.REVOKE], [RowKind.PAYMENT, RowKind.REVOKE]) and all(
            r.amount == sale.amount for _, r in rows)
    return False


def _when(d: Difference) -> tuple[float, str]:
    return (d.bill_at or 0.0, d.key)


def _figures(bill: Bill, ours: Callable[[BillRow], bool], sales: Iterable[Sale],
             refunds: Iterable[Refund], in_day: Callable[[float], bool]) -> dict[str, Any]:
    paid = returned = others = others_back = Tally()
    fee = 0
    for row in bill.rows:
        if not ours(row):
            if row.kind is RowKind.PAYMENT:
                others = others.add(int(row.amount))
            elif row.kind in (RowKind.REFUND, RowKind.REVOKE):
                others_back = others_back.add(int(row.amount))
            continue
        fee += row.fee
        if row.kind is RowKind.PAYMENT:
            paid = paid.add(int(row.amount))
        elif row.kind in (RowKind.REFUND, RowKind.REVOKE):
            returned = returned.add(int(row.amount))
    posd_paid = posd_refunded = Tally()
    for sale in sales:
        if sale.state is State.PAID and in_day(sale.created_at):
            posd_paid = posd_paid.add(int(sale.amount))
    for refund in refunds:
        if refund.state is RefundState.REFUNDED and in_day(refund.created_at):
            posd_refunded = posd_refunded.add(int(refund.amount))
    return {"bill_paid": paid, "bill_returned": returned, "bill_fee": fee,
            "posd_paid": posd_paid, "posd_refunded": posd_refunded,
            "other_terminals": others, "other_returned": others_back}


def _yuan(fen: int) -> str:
    return format_yuan(Fen(fen))


def _judge_trade(number: str, evidence: _Evidence, sale: Sale | None,
                 label: str) -> Difference | None:
    """One trade's class, or None when neither side shows money (nothing to judge)."""
    payments = evidence.of(RowKind.PAYMENT)
    revokes = evidence.of(RowKind.REVOKE)
    unread = evidence.of(RowKind.OTHER)
    rows = payments + revokes + unread
    taken, returned = bool(payments or revokes), bool(revokes)
    amount = payments[0].amount if payments else revokes[0].amount if revokes else None
    shows = ", ".join(["paid"] * bool(taken) + ["reversed"] * returned) or "nothing"
    base = {
        "key": f"trade:{number}", "subject": "trade", "channel": sale.channel if sale else (
            rows[0].channel if rows else ""), "out_trade_no": number,
        "channel_trade_no": rows[0].channel_trade_no if rows else (
            (sale.channel_trade_no or "") if sale else ""),
        "sale_id": sale.id if sale else None,
        "posd_state": sale.state.value if sale else None,
        "posd_amount": int(sale.amount) if sale else None,
        "bill_shows": shows, "bill_amount": None if amount is None else int(amount),
        "bill_at": min(r.at for r in rows) if rows else None,
    }
    money = f"{label} took {_yuan(int(amount))}" if amount is not None else ""

    def item(verdict: Verdict, message: str, *, money_taken: bool = False) -> Difference:
        return Difference(verdict=verdict, message=message, money_taken=money_taken,
                          **base)  # type: ignore[arg-type]

    if unread:
        words = ", ".join(sorted({r.status for r in unread}))
        return item(Verdict.STATUS_MISMATCH, f"the bill shows this trade as {words!r}, which "
                    "posd does not read: check it in the merchant platform")
    if len(payments) > 1:
        return item(Verdict.STATUS_MISMATCH, f"the bill shows {len(payments)} payments under "
                    "one number: check them in the merchant platform", money_taken=True)
    if sale is None:
        if returned:
            return item(Verdict.CHANNEL_ONLY, f"{money} under this terminal's number and gave "
                        "it back; posd has no sale of it (nothing is owed)")
        return item(Verdict.CHANNEL_ONLY, f"{money} under this terminal's number and posd has "
                    "no sale of it: find the customer (the trade's numbers are below) and "
                    "refund it in the merchant platform, or record what was sold",
                    money_taken=True)
    state = sale.state
    if state is State.PAID:
        if not taken:
            return item(Verdict.POSD_ONLY, f"posd says paid {_yuan(int(sale.amount))}, the "
                        "bill does not show it: see the channel's answer below")
        if returned:
            return item(Verdict.STATUS_MISMATCH, "posd says paid, the bill shows the payment "
                        "reversed (money back to the customer): check the sale")
        if payments[0].amount != sale.amount:
            return item(Verdict.AMOUNT_MISMATCH, f"posd says paid {_yuan(int(sale.amount))}, "
                        f"the bill {_yuan(int(payments[0].amount))}")
        return item(Verdict.MATCHED, "")
    if state is State.REVERSED:
        if not taken:
            if sale.refunded:
                return item(Verdict.POSD_ONLY, "posd was told the reverse gave the money back, "
                            "the bill shows no payment: see the channel's answer below")
            return None  # nothing moved, as posd says
        if returned:
            back = revokes[0].amount
            if payments and payments[0].amount != sale.amount:
                return item(Verdict.AMOUNT_MISMATCH, f"reversed: posd {_yuan(int(sale.amount))}"
                            f", the bill took {_yuan(int(payments[0].amount))}")
            if back != sale.amount:
                return item(Verdict.AMOUNT_MISMATCH, f"reversed: posd {_yuan(int(sale.amount))}"
                            f", the bill returned {_yuan(int(back))}")
            return item(Verdict.MATCHED, "")
        return item(Verdict.STATUS_MISMATCH, f"posd says reversed, the bill shows {money} and "
                    "not returned: see the channel's answer below; refund the customer if the "
                    "money is still taken", money_taken=True)
    if state is State.NEEDS_ATTENTION:
        if not taken:
            return item(Verdict.STATUS_MISMATCH, f"sale {sale.id} needs attention and the bill "
                        "shows no payment: if the channel's answer agrees, resolve it as "
                        f"reversed (posd resolve {sale.id} --as reversed)")
        if returned:
            return item(Verdict.STATUS_MISMATCH, f"sale {sale.id} needs attention; the bill "
                        "shows it paid and given back: resolve it as reversed "
                        f"(posd resolve {sale.id} --as reversed)")
        return item(Verdict.STATUS_MISMATCH, f"sale {sale.id} needs attention; the bill shows "
                    f"{money}: resolve it as paid (posd resolve {sale.id} --as paid)",
                    money_taken=True)
    if not taken:
        return None  # declined, cancelled, still working: no money either side
    if state not in FINAL:
        return item(Verdict.STATUS_MISMATCH, f"posd is still working on sale {sale.id} "
                    f"({state.value}); the bill shows it {shows}")
    if returned:
        return item(Verdict.STATUS_MISMATCH, f"posd says {state.value}, the bill shows {money} "
                    "and gave it back (nothing is owed)")
    return item(Verdict.STATUS_MISMATCH, f"posd says {state.value}, the bill shows {money}: "
                "the customer paid; refund them in the merchant platform, or keep the sale",
                money_taken=True)


def _judge_refund(number: str, evidence: _Evidence, refund: Refund | None,
                  label: str) -> Difference | None:
    rows = evidence.of(RowKind.REFUND)
    row = rows[0] if rows else None
    failed = row is not None and row.refund_status in FAILED_REFUND_STATUSES
    base = {
        "key": f"refund:{number}", "subject": "refund",
        "channel": refund.channel if refund else row.channel if row else "",
        "out_trade_no": row.out_trade_no if row else refund.out_trade_no if refund else "",
        "out_refund_no": row.out_refund_no if row else number,
        "channel_trade_no": row.channel_trade_no if row else "",
        "channel_refund_no": row.channel_refund_no if row else (
            (refund.channel_refund_no or "") if refund else ""),
        "sale_id": refund.sale_id if refund else None,
        "refund_id": refund.id if refund else None,
        "posd_state": refund.state.value if refund else None,
        "posd_amount": int(refund.amount) if refund else None,
        "bill_shows": ("refund " + (row.refund_status or "done").lower()) if row else "nothing",
        "bill_amount": int(row.amount) if row else None,
        "bill_at": row.at if row else None,
    }

    def item(verdict: Verdict, message: str) -> Difference:
        return Difference(verdict=verdict, message=message, **base)  # type: ignore[arg-type]

    if refund is None:
        assert row is not None
        return item(Verdict.CHANNEL_ONLY, f"{label} returned {_yuan(int(row.amount))} under "
                    "a refund posd did not make (one made in the merchant platform?): check "
                    "that it was meant")
    if len(rows) > 1:
        return item(Verdict.STATUS_MISMATCH, f"the bill shows {len(rows)} refunds under one "
                    "refund number: check them in the merchant platform")
    state = refund.state
    if state is RefundState.REFUNDED:
        if row is None:
            return item(Verdict.POSD_ONLY, f"posd says refunded {_yuan(int(refund.amount))}, "
                        "the bill does not show it: see the channel's answer below")
        if failed:
            return item(Verdict.STATUS_MISMATCH, f"posd says refunded, the bill says "
                        f"{row.refund_status}: the money may not have reached the customer")
        if row.amount != refund.amount:
            return item(Verdict.AMOUNT_MISMATCH, f"posd says refunded "
                        f"{_yuan(int(refund.amount))}, the bill {_yuan(int(row.amount))}")
        return item(Verdict.MATCHED, "")
    if row is None:
        if state is RefundState.NEEDS_ATTENTION:
            return item(Verdict.STATUS_MISMATCH, f"refund {refund.id} needs attention and the "
                        "bill shows no refund: see the channel's answer below")
        return None  # failed or still working, and nothing returned
    if state is RefundState.REFUND_FAILED and failed:
        return item(Verdict.MATCHED, "")
    return item(Verdict.STATUS_MISMATCH, f"posd says {state.value}, the bill shows "
                f"{_yuan(int(row.amount))} returned ({row.refund_status or 'done'}): check the "
                "refund")


def held_days(result: Reconciliation) -> set[str]:
    return {h.waits_for for h in result.held}


def summary_counts(results: Sequence[Reconciliation]) -> dict[str, int]:
    """Verdict -> count over several results (the CLI's and the page's one line)."""
    total: dict[str, int] = {v.value: 0 for v in Verdict}
    for result in results:
        for verdict, n in result.counts.items():
            total[verdict.value] += n
    return total


# --- the result as data (DESIGN §10: "its JSON is documented and versioned") ---------------


def _tally(t: Tally) -> dict[str, int]:
    return {"count": t.count, "amount": t.amount}


def _untally(data: Mapping[str, Any]) -> Tally:
    return Tally(int(data["count"]), int(data["amount"]))


def as_json(result: Reconciliation) -> dict[str, Any]:
    """The result as JSON data (version :data:`VERSION`, docs/reconciliation.md)."""
    return {
        "version": VERSION, "channel": result.channel, "date": result.day.isoformat(),
        "status": result.status, "all_matched": result.all_matched,
        "counts": {v.value: result.counts.get(v, 0) for v in Verdict},
        "bill": {"rows": result.bill_rows, "paid": _tally(result.bill_paid),
                 "returned": _tally(result.bill_returned), "fee_mfen": result.bill_fee,
                 "missing": result.no_bill, "warnings": list(result.warnings)},
        "posd": {"paid": _tally(result.posd_paid), "refunded": _tally(result.posd_refunded)},
        "other_terminals": {"paid": _tally(result.other_terminals),
                            "returned": _tally(result.other_returned)},
        "elsewhere": result.elsewhere,
        "differences": [difference_json(d) for d in result.differences],
        "held": [{"key": h.key, "subject": h.subject, "out_trade_no": h.out_trade_no,
                  "out_refund_no": h.out_refund_no or None, "sale_id": h.sale_id,
                  "refund_id": h.refund_id, "amount": h.amount, "waits_for": h.waits_for}
                 for h in result.held],
    }


def difference_json(d: Difference) -> dict[str, Any]:
    return {
        "key": d.key, "class": d.verdict.value, "subject": d.subject, "channel": d.channel,
        "out_trade_no": d.out_trade_no, "out_refund_no": d.out_refund_no or None,
        "channel_trade_no": d.channel_trade_no or None,
        "channel_refund_no": d.channel_refund_no or None, "sale_id": d.sale_id,
        "refund_id": d.refund_id, "posd_state": d.posd_state, "posd_amount": d.posd_amount,
        "bill_shows": d.bill_shows, "bill_amount": d.bill_amount,
        "bill_at": None if d.bill_at is None else datetime.fromtimestamp(
            d.bill_at, BEIJING).isoformat(),
        "money_taken": d.money_taken, "message": d.message, "followup": d.followup,
    }


def from_json(data: Mapping[str, Any]) -> Reconciliation:
    """What :func:`as_json` wrote (ValueError / KeyError for anything else)."""
    if data.get("version") != VERSION:
        raise ValueError(f"unknown reconciliation version {data.get('version')!r}")
    bill, posd, others = data["bill"], data["posd"], data["other_terminals"]
    return Reconciliation(
        channel=data["channel"], day=date.fromisoformat(data["date"]),
        counts={Verdict(k): int(n) for k, n in data["counts"].items()},
        differences=tuple(difference_from_json(d) for d in data["differences"]),
        held=tuple(Held(h["key"], h["subject"], h["out_trade_no"], int(h["amount"]),
                        h["waits_for"], h.get("out_refund_no") or "", h.get("sale_id"),
                        h.get("refund_id")) for h in data["held"]),
        bill_paid=_untally(bill["paid"]), bill_returned=_untally(bill["returned"]),
        bill_fee=int(bill["fee_mfen"]), posd_paid=_untally(posd["paid"]),
        posd_refunded=_untally(posd["refunded"]), other_terminals=_untally(others["paid"]),
        other_returned=_untally(others["returned"]), elsewhere=int(data["elsewhere"]),
        bill_rows=int(bill["rows"]), warnings=tuple(bill["warnings"]),
        no_bill=bool(bill["missing"]),
    )


def difference_from_json(d: Mapping[str, Any]) -> Difference:
    at = d.get("bill_at")
    return Difference(
        key=d["key"], verdict=Verdict(d["class"]), subject=d["subject"], channel=d["channel"],
        out_trade_no=d["out_trade_no"], message=d["message"],
        out_refund_no=d.get("out_refund_no") or "",
        channel_trade_no=d.get("channel_trade_no") or "",
        channel_refund_no=d.get("channel_refund_no") or "", sale_id=d.get("sale_id"),
        refund_id=d.get("refund_id"), posd_state=d.get("posd_state"),
        posd_amount=d.get("posd_amount"), bill_shows=d.get("bill_shows", "nothing"),
        bill_amount=d.get("bill_amount"),
        bill_at=None if at is None else datetime.fromisoformat(at).timestamp(),
        money_taken=bool(d.get("money_taken")), followup=d.get("followup") or "",
    )


@dataclass(frozen=True, slots=True)
class Followup:
    """What the channel said when asked about a difference: the words kept with it, and
    whether its customer's money is still taken (None: the answer does not tell)."""

    text: str
    money_taken: bool | None = None


def with_followups(result: Reconciliation, answers: Mapping[str, Followup]) -> Reconciliation:
    """``result`` with the channel's answers (by difference key) written in."""
    def one(d: Difference) -> Difference:
        answer = answers.get(d.key)
        if answer is None:
            return d
        taken = d.money_taken if answer.money_taken is None else answer.money_taken
        return replace(d, followup=answer.text, money_taken=taken)

    return replace(result, differences=tuple(one(d) for d in result.differences))
