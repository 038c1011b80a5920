# SPDX-License-Identifier: MIT
"""The matcher (posd.core.reconcile) with values: every class of DESIGN §10, reversed sales
against both channels' ways of showing a reverse, other terminals, records near midnight
held for the next day's bill, and the result's JSON, paper and CSV forms."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from posd.core.bills import Bill, BillRow, RowKind
from posd.core.layout import as_text
from posd.core.money import Fen
from posd.core.receipt import Header
from posd.core.reconcile import (
    Followup,
    Verdict,
    as_json,
    day_bounds,
    from_json,
    reconcile,
    with_followups,
)
from posd.core.reconcile_paper import CSV_FIELDS, as_csv, elements, verdict_line
from posd.core.refund import Refund, RefundState
from posd.core.sale import Sale, State

DAY = date(2026, 11, 30)
START, END = day_bounds(DAY)
NOON = START + 12 * 3600
HEADER = Header("测试店", "S001", "T01")


def number(n: int, terminal: str = "T01") -> str:
    return f"S001{terminal}261130040000{n:06d}"


def sale(n: int, state: State = State.PAID, amount: int = 1250, at: float = NOON,
         channel: str = "wechat", refunded: bool | None = None) -> Sale:
    return Sale(number(n), Fen(amount), at, state, id=n, channel=channel, updated_at=at + 5,
                paid_at=at + 5 if state is State.PAID else None, refunded=refunded,
                channel_trade_no=f"4200{n:024d}")


def refund(n: int, sale_no: int, amount: int = 200, state: RefundState = RefundState.REFUNDED,
           at: float = NOON + 600, channel: str = "wechat") -> Refund:
    return Refund(sale_no, Fen(amount), f"S001T01R2611300500{n:05d}", at, "test", state, id=n,
                  channel=channel, out_trade_no=number(sale_no), refunded_at=at + 1)


def row(kind: RowKind, n: int, amount: int = 1250, at: float = NOON + 5, *,
        terminal: str = "T01", refund_no: str = "", status: str = "", refund_status: str = "",
        channel: str = "wechat") -> BillRow:
    return BillRow(channel, kind, at, number(n, terminal), f"4200{n:024d}", Fen(amount),
                   fee=int(amount * 6), out_refund_no=refund_no,
                   status=status or {RowKind.PAYMENT: "SUCCESS", RowKind.REFUND: "REFUND",
                                     RowKind.REVOKE: "REVOKED"}.get(kind, "?"),
                   refund_status=refund_status)


def bill(*rows: BillRow, day: date = DAY, channel: str = "wechat") -> Bill:
    return Bill(channel, day, tuple(rows))


def run(the_bill: Bill, sales: list[Sale], refunds: list[Refund] = (), **kw: object):  # type: ignore[assignment, no-untyped-def]
    neighbours = kw.pop("neighbours", {DAY - timedelta(days=1): bill(day=DAY - timedelta(1)),
                                       DAY + timedelta(days=1): bill(day=DAY + timedelta(1))})
    return reconcile(the_bill, sales, refunds, store_id="S001", terminal_id="T01",
                     neighbours=neighbours, **kw)  # type: ignore[arg-type]


def test_a_clean_day_matches_every_item() -> None:
    r1 = refund(1, 1)
    result = run(bill(row(RowKind.PAYMENT, 1), row(RowKind.REFUND, 1, 200,
                                                    refund_no=r1.out_refund_no),
                      row(RowKind.PAYMENT, 2, 3000)),
                 [sale(1), sale(2, amount=3000), sale(3, State.DECLINED)], [r1])
    assert result.all_matched and result.status == "matched"
    assert result.counts[Verdict.MATCHED] == 3  # two trades, one refund; the decline: nothing
    assert (result.bill_paid.count, result.bill_paid.amount) == (2, 4250)
    assert (result.bill_returned.count, result.bill_returned.amount) == (1, 200)
    assert (result.posd_paid.amount, result.posd_refunded.amount) == (4250, 200)
    assert result.bill_fee == 6 * (1250 + 200 + 3000)


def test_one_bill_covers_the_channels_of_one_merchant_account() -> None:
    """WeChat Pay v3's bill is the merchant's one bill: the sales v2 made the same day (a
    till switched over at noon) are matched in it, and other channels' records are not."""
    v3_bill = bill(row(RowKind.PAYMENT, 1, channel="wechat_v3"),
                   row(RowKind.PAYMENT, 2, 3000, channel="wechat_v3"), channel="wechat_v3")
    sales = [sale(1, channel="wechat"), sale(2, amount=3000, channel="wechat_v3"),
             sale(3, channel="alipay")]
    covered = run(v3_bill, sales, channels={"wechat_v3", "wechat"})
    assert covered.all_matched and covered.counts[Verdict.MATCHED] == 2
    alone = run(v3_bill, sales)  # by default a bill covers its own channel only
    assert not alone.all_matched and alone.counts[Verdict.CHANNEL_ONLY] == 1


@pytest.mark.parametrize("rows", [
    # WeChat: the payment, reversed after it was taken, is one row with status REVOKED
    [row(RowKind.REVOKE, 1)],
    # Alipay: the payment and a refund row (no request number, or the trade's own)
    [row(RowKind.PAYMENT, 1, channel="alipay"), row(RowKind.REVOKE, 1, channel="alipay")],
])
def test_a_reversed_sale_matches_its_payment_and_revoke(rows: list[BillRow]) -> None:
    channel = rows[0].channel
    result = run(bill(*rows, channel=channel), [sale(1, State.REVERSED, channel=channel,
                                                     refunded=True)])
    assert result.all_matched and result.counts[Verdict.MATCHED] == 1


def test_a_reversed_sale_that_took_nothing_is_not_an_item() -> None:
    result = run(bill(), [sale(1, State.REVERSED, refunded=False)])
    assert result.all_matched and result.counts[Verdict.MATCHED] == 0


def test_channel_only_payment_is_money_taken_with_its_numbers() -> None:
    result = run(bill(row(RowKind.PAYMENT, 9, 777)), [])
    (d,) = result.differences
    assert (d.verdict, d.money_taken, d.bill_amount) == (Verdict.CHANNEL_ONLY, True, 777)
    assert d.out_trade_no == number(9) and d.channel_trade_no == f"4200{9:024d}"
    assert "refund it" in d.message and result.status == "differences"


def test_channel_only_payment_given_back_is_not_money_taken() -> None:
    (d,) = run(bill(row(RowKind.PAYMENT, 9), row(RowKind.REVOKE, 9)), []).differences
    assert d.verdict is Verdict.CHANNEL_ONLY and not d.money_taken


def test_channel_only_refund() -> None:
    (d,) = run(bill(row(RowKind.PAYMENT, 1), row(RowKind.REFUND, 1, 300, refund_no="X1")),
               [sale(1)]).differences
    assert (d.verdict, d.subject, d.out_refund_no) == (Verdict.CHANNEL_ONLY, "refund", "X1")


def test_posd_only_sale_and_refund() -> None:
    r1 = refund(1, 1)
    result = run(bill(row(RowKind.PAYMENT, 1)), [sale(1), sale(2)], [r1])
    kinds = sorted((d.verdict.value, d.subject) for d in result.differences)
    assert kinds == [("posd_only", "refund"), ("posd_only", "trade")]
    assert not any(d.money_taken for d in result.differences)


def test_amount_mismatch_both_ways() -> None:
    r1 = refund(1, 1, 200)
    result = run(bill(row(RowKind.PAYMENT, 1, 1350),
                      row(RowKind.REFUND, 1, 250, refund_no=r1.out_refund_no)), [sale(1)], [r1])
    assert sorted((d.verdict, d.posd_amount, d.bill_amount) for d in result.differences) == [
        (Verdict.AMOUNT_MISMATCH, 200, 250), (Verdict.AMOUNT_MISMATCH, 1250, 1350)]


@pytest.mark.parametrize(("state", "rows", "taken"), [
    (State.DECLINED, [row(RowKind.PAYMENT, 1)], True),  # posd said declined; the money went
    (State.NEEDS_ATTENTION, [row(RowKind.PAYMENT, 1)], True),
    (State.NEEDS_ATTENTION, [], False),
    (State.PAID, [row(RowKind.PAYMENT, 1), row(RowKind.REVOKE, 1)], False),
    (State.REVERSED, [row(RowKind.PAYMENT, 1)], True),  # reversed, but the money is kept
    (State.PAID, [row(RowKind.OTHER, 1, status="NOTPAY")], False),
])
def test_status_mismatch(state: State, rows: list[BillRow], taken: bool) -> None:
    (d,) = run(bill(*rows), [sale(1, state)]).differences
    assert d.verdict is Verdict.STATUS_MISMATCH and d.money_taken is taken
    assert d.sale_id == 1 and d.posd_state == state.value


def test_refund_the_bank_bounced_is_a_status_mismatch() -> None:
    r1 = refund(1, 1)
    rows = [row(RowKind.PAYMENT, 1), row(RowKind.REFUND, 1, 200, refund_no=r1.out_refund_no,
                                         refund_status="CHANGE")]
    (d,) = run(bill(*rows), [sale(1)], [r1]).differences
    assert d.verdict is Verdict.STATUS_MISMATCH and "CHANGE" in d.message
    failed = refund(1, 1, state=RefundState.REFUND_FAILED)
    assert run(bill(*rows), [sale(1)], [failed]).all_matched


def test_other_terminals_are_counted_apart() -> None:
    result = run(bill(row(RowKind.PAYMENT, 1), row(RowKind.PAYMENT, 2, 500, terminal="T02"),
                      row(RowKind.REVOKE, 3, 800, terminal="T02")), [sale(1)])
    assert result.all_matched
    assert (result.other_terminals.count, result.other_terminals.amount) == (1, 500)
    assert (result.other_returned.count, result.other_returned.amount) == (1, 800)
    assert result.bill_paid.count == 1


def test_a_sale_near_midnight_waits_for_the_next_bill() -> None:
    late = sale(1, at=END - 60)
    held = run(bill(), [late], neighbours={DAY + timedelta(days=1): None})
    assert held.status == "held" and not held.differences
    assert [(h.key, h.waits_for) for h in held.held] == [
        (f"trade:{number(1)}", "2026-12-01")]
    # the next day's bill has it, paid after midnight: not a difference of either day
    next_bill = bill(row(RowKind.PAYMENT, 1, at=END + 3), day=DAY + timedelta(days=1))
    today = run(bill(), [late], neighbours={DAY + timedelta(days=1): next_bill})
    assert today.all_matched and not today.held and today.elsewhere == 1
    tomorrow = run(next_bill, [late], neighbours={DAY: bill()})
    assert tomorrow.all_matched and tomorrow.counts[Verdict.MATCHED] == 1
    # ... and not in the next bill either: then it is a difference
    gone = run(bill(), [late], neighbours={DAY + timedelta(days=1): bill(
        day=DAY + timedelta(days=1))})
    assert [d.verdict for d in gone.differences] == [Verdict.POSD_ONLY]


def test_followups_are_written_in_and_can_clear_money_taken() -> None:
    result = run(bill(row(RowKind.PAYMENT, 9)), [])
    key = result.differences[0].key
    told = with_followups(result, {key: Followup("query: closed, money returned", False)})
    assert told.differences[0].followup == "query: closed, money returned"
    assert not told.differences[0].money_taken and result.differences[0].money_taken


def test_json_round_trip_and_version() -> None:
    r1 = refund(1, 1)
    result = run(bill(row(RowKind.PAYMENT, 1, 1300), row(RowKind.PAYMENT, 9),
                      row(RowKind.PAYMENT, 5, terminal="T02")), [sale(1), sale(2)], [r1])
    data = as_json(result)
    assert data["version"] == 1 and data["status"] == "differences"
    assert from_json(data) == result
    with pytest.raises(ValueError, match="version"):
        from_json(data | {"version": 99})


def test_paper_and_csv() -> None:
    clean = run(bill(row(RowKind.PAYMENT, 1)), [sale(1)])
    text = as_text(elements(clean, HEADER, columns=32), 32)
    assert "ALL MATCHED" in text and verdict_line(clean) == "ALL MATCHED"
    assert max(len(line) for line in text.splitlines()) <= 32
    bad = run(bill(row(RowKind.PAYMENT, 9, 777)), [])
    text = as_text(elements(bad, HEADER, columns=32, language="zh"), 32)
    assert number(9) in text and "7.77" in text
    csv_text = as_csv([clean, bad])
    assert csv_text.splitlines()[0] == ",".join(CSV_FIELDS)
    assert number(9) in csv_text and len(csv_text.splitlines()) == 2
