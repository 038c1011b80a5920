# SPDX-License-Identifier: MIT
"""The simulator's ledger, values in and values out: time is a number we pass."""

from __future__ import annotations

import json

import pytest

from posd.channels.simulator.control import trade_json
from posd.channels.simulator.ledger import (
    ENDINGS,
    Ledger,
    Outcome,
    PayAnswer,
    PayRequest,
    ReverseAnswer,
    Script,
    TradeState,
    outcome_for,
)
from posd.core.money import Fen

T0 = 1_750_000_000.0


def code(ending: str) -> str:
    return "13456789012345" + ending


def request(auth_code: str, out_trade_no: str = "T1", amount: int = 100) -> PayRequest:
    return PayRequest("wechat", out_trade_no, auth_code, Fen(amount), "4200TEST")


@pytest.fixture
def ledger() -> Ledger:
    return Ledger(secret=b"k" * 32, confirm_delay_s=8.0)


def kinds(ledger: Ledger, out_trade_no: str = "T1") -> list[str]:
    trade = ledger.find("wechat", T0, out_trade_no=out_trade_no)
    assert trade is not None
    return [event.kind for event in trade.events]


@pytest.mark.parametrize(
    ("ending", "outcome"),
    [*ENDINGS.items(), ("0000", Outcome.PAID), ("0009", Outcome.PAID), ("1001", Outcome.PAID)],
)
def test_outcome_by_last_four_digits(ending: str, outcome: Outcome) -> None:
    assert outcome_for(code(ending)) is outcome


def test_confirm_later_settles_exactly_at_confirm_time(ledger: Ledger) -> None:
    answer, trade = ledger.pay(request(code("0001")), T0)
    assert answer is PayAnswer.WAITING
    early = ledger.find("wechat", T0 + 7.999, out_trade_no="T1")
    assert early is trade
    assert early.state is TradeState.WAITING
    late = ledger.find("wechat", T0 + 30, out_trade_no="T1")
    assert late is not None
    assert late.state is TradeState.PAID
    assert trade.paid_at == T0 + 8.0  # when the customer confirmed, not when someone looked


def test_scripted_code_overrides_its_digits(ledger: Ledger) -> None:
    ledger.script(code("4321"), Script(Outcome.CONFIRM_LATER, confirm_delay_s=2.0))
    _, trade = ledger.pay(request(code("4321")), T0)
    assert trade.confirm_at == T0 + 2.0


def test_pay_at_reverse_is_paid_then_refunded(ledger: Ledger) -> None:
    _, trade = ledger.pay(request(code("0007")), T0)
    answer = ledger.reverse(trade, T0 + 30, min_delay_s=15)
    assert answer is ReverseAnswer.REFUNDED
    assert trade.state is TradeState.REFUNDED
    assert kinds(ledger) == ["created", "paid", "refunded"]
    assert trade.paid_at == trade.closed_at == T0 + 30


def test_reverse_retry_asks_twice_then_closes(ledger: Ledger) -> None:
    _, trade = ledger.pay(request(code("0008")), T0)
    answers = [ledger.reverse(trade, T0 + 20 + i, min_delay_s=15) for i in range(4)]
    assert answers == [
        ReverseAnswer.RETRY,
        ReverseAnswer.RETRY,
        ReverseAnswer.CLOSED,
        ReverseAnswer.CLOSED,
    ]
    assert trade.state is TradeState.REVERSED


def test_reverse_before_confirmation_closes_for_good(ledger: Ledger) -> None:
    _, trade = ledger.pay(request(code("0001")), T0)
    assert ledger.reverse(trade, T0 + 7, min_delay_s=0) is ReverseAnswer.CLOSED
    ledger.find("wechat", T0 + 60, out_trade_no="T1")
    assert trade.state is TradeState.REVERSED
    assert trade.paid_at is None


def test_reverse_too_early_is_refused_and_recorded(ledger: Ledger) -> None:
    _, trade = ledger.pay(request(code("0002")), T0)
    assert ledger.reverse(trade, T0 + 14.7, min_delay_s=15) is ReverseAnswer.TOO_EARLY
    assert trade.state is TradeState.WAITING
    [violation] = ledger.violations()
    assert (violation.rule, violation.out_trade_no) == ("reverse_too_early", "T1")
    # a reverse sent at 15 s by the client may arrive a little "early" by the pay's arrival
    assert ledger.reverse(trade, T0 + 14.8, min_delay_s=15) is ReverseAnswer.CLOSED


def test_reverse_of_a_paid_trade_refunds_and_old_trades_expire(ledger: Ledger) -> None:
    _, paid = ledger.pay(request(code("1234")), T0)
    assert ledger.reverse(paid, T0 + 20) is ReverseAnswer.REFUNDED
    _, old = ledger.pay(request(code("0002"), "T2"), T0)
    assert ledger.reverse(old, T0 + 8 * 86400) is ReverseAnswer.EXPIRED
    assert ledger.reverse(None, T0) is ReverseAnswer.NOT_FOUND


@pytest.mark.parametrize(
    ("first", "again", "answer"),
    [
        (code("1234"), code("1234"), PayAnswer.ALREADY_PAID),
        (code("0005"), code("0005"), PayAnswer.ALREADY_PAID),
        (code("0001"), code("0001"), PayAnswer.WAITING),
        (code("0003"), code("0003"), PayAnswer.DECLINED),
        (code("1234"), code("4321"), PayAnswer.MISMATCH),
    ],
)
def test_repeated_pay(ledger: Ledger, first: str, again: str, answer: PayAnswer) -> None:
    ledger.pay(request(first), T0)
    assert ledger.pay(request(again), T0 + 1)[0] is answer


def test_other_amount_for_the_same_out_trade_no_is_a_violation(ledger: Ledger) -> None:
    ledger.pay(request(code("1234"), amount=100), T0)
    answer, trade = ledger.pay(request(code("1234"), amount=200), T0 + 1)
    assert answer is PayAnswer.MISMATCH
    assert trade.amount == 100
    assert [v.rule for v in ledger.violations()] == ["out_trade_no_reused"]


def test_pay_after_reverse_is_refused_and_recorded(ledger: Ledger) -> None:
    _, trade = ledger.pay(request(code("0002")), T0)
    ledger.reverse(trade, T0 + 20)
    assert ledger.pay(request(code("0002")), T0 + 21)[0] is PayAnswer.ALREADY_REVERSED
    assert [v.rule for v in ledger.violations()] == ["pay_after_reverse"]


def test_json_keeps_the_masked_code_only(ledger: Ledger) -> None:
    _, trade = ledger.pay(request(code("1234")), T0)
    ledger.count_call("wechat", "T1", "micropay")
    data = trade_json(trade, ledger.calls("wechat", "T1"))
    text = json.dumps(data)
    assert code("1234") not in text
    assert trade.code_digest not in text
    assert data["auth_code"] == "1345…1234"
    assert data["calls"] == {"micropay": 1}


def test_reset_forgets_everything(ledger: Ledger) -> None:
    ledger.script(code("4321"), Script(Outcome.NEVER_CONFIRM))
    ledger.pay(request(code("4321")), T0)
    ledger.count_call("wechat", "T1", "micropay")
    ledger.reset()
    assert ledger.trades(T0) == [] and ledger.all_calls() == {} and ledger.violations() == []
    assert ledger.pay(request(code("4321")), T0)[0] is PayAnswer.PAID


def test_unpaid_trades_close_when_configured() -> None:
    ledger = Ledger(secret=b"k" * 32, confirm_delay_s=50.0, close_unpaid_after_s=45.0)
    _, waiting = ledger.pay(request(code("0002"), "T1"), T0)
    _, late = ledger.pay(request(code("0001"), "T2"), T0)  # would confirm at 50 s: too late
    ledger.trades(T0 + 44.9)
    assert waiting.state is TradeState.WAITING
    ledger.trades(T0 + 60)
    assert (waiting.state, waiting.closed_at) == (TradeState.CLOSED, T0 + 45)
    assert late.state is TradeState.CLOSED
    assert ledger.pay(request(code("0002"), "T1"), T0 + 61)[0] is PayAnswer.ALREADY_CLOSED
    assert ledger.reverse(waiting, T0 + 61) is ReverseAnswer.CLOSED


def test_refunds_follow_their_amount_never_double_and_survive_the_ledger_file() -> None:
    from posd.channels.simulator.ledger import RefundReply, RefundStatus

    book = Ledger(secret=b"k" * 32, refund_delay_s=8.0)
    _, trade = book.pay(request(code("1234"), "T1", 5000), T0)
    assert book.refund(trade, "R1", Fen(1201), T0 + 1)[1].status is RefundStatus.PROCESSING  # type: ignore[union-attr]
    assert book.find_refund(trade, "R1", T0 + 10).status is RefundStatus.SUCCESS  # type: ignore[union-attr]
    reply, entry = book.refund(trade, "R1", Fen(1201), T0 + 11)  # the same number again
    assert reply is RefundReply.ACCEPTED and entry is not None and entry.requests == 2
    assert book.refund(trade, "R1", Fen(1), T0 + 12)[0] is RefundReply.MISMATCH
    assert book.refund(trade, "R2", Fen(1203), T0 + 13) == (RefundReply.BALANCE, None)
    assert book.refund(trade, "R3", Fen(3800), T0 + 14)[0] is RefundReply.TOO_MUCH
    assert book.refund(None, "R4", Fen(1), T0) == (RefundReply.NO_TRADE, None)
    again = Ledger(secret=b"k" * 32)
    again.load_json(json.loads(json.dumps(book.to_json())))
    (kept,) = again.trades(T0 + 20)
    assert [(r.out_refund_no, r.amount, r.status) for r in kept.refunds] == [
        ("R1", 1201, RefundStatus.SUCCESS)]
