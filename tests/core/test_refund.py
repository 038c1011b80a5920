# SPDX-License-Identifier: MIT
"""posd.core.refund: the refund machine with values, and what may be refunded at all."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core import refund as r
from posd.core import sale as m
from posd.core.errors import InvariantError
from posd.core.money import Fen
from posd.core.refund import RefundAction, RefundState
from posd.core.sale import State

T0 = 1_750_000_000.0
POLICY = r.RefundPolicy(first_query_s=10.0, query_backoff_s=(10.0, 30.0), retry_delay_s=2.0)


def paid_sale(amount: int = 5000) -> m.Sale:
    return replace(m.new_sale("S1T1X1", Fen(amount), T0), id=3, state=State.PAID,
                   channel="wechat", paid_at=T0, channel_trade_no="4200")


def refund(amount: int = 1201) -> r.Refund:
    return replace(r.new_refund(paid_sale(), Fen(amount), "returned", "S1T1R1", T0), id=1)


def test_the_write_ahead_record_refunds_now_under_its_one_number() -> None:
    new = refund()
    assert (new.state, new.next_action, new.next_at) == (RefundState.REFUNDING,
                                                         RefundAction.REFUND, T0)
    assert new.channel == "wechat" and new.out_trade_no == "S1T1X1" and not new.final
    assert r.make_out_refund_no("ABCDEFGH", "ABCDEF", T0, 99_999).__len__() == 32
    with pytest.raises(InvariantError):
        r.new_refund(replace(paid_sale(), state=State.DECLINED), Fen(1), "x", "N", T0)


def test_accepted_is_not_refunded_the_query_decides() -> None:
    taken = r.on_result(refund(), RefundAction.REFUND, r.Accepted("5030"), T0 + 1, POLICY)
    assert taken.state is RefundState.REFUNDING and taken.next_action is RefundAction.QUERY
    assert taken.next_at == T0 + 11 and taken.channel_refund_no == "5030"
    later = r.on_result(taken, RefundAction.QUERY, r.Processing(), T0 + 11, POLICY)
    assert later.next_at == T0 + 21
    done = r.on_result(later, RefundAction.QUERY, r.Refunded(), T0 + 21, POLICY)
    assert done.state is RefundState.REFUNDED and done.refunded_at == T0 + 21
    assert done.channel_refund_no == "5030" and done.final


def test_unknown_is_queried_for_ever_and_a_missing_refund_is_sent_again() -> None:
    current = r.on_result(refund(), RefundAction.REFUND, r.Unknown("timeout"), T0, POLICY)
    assert current.next_action is RefundAction.QUERY
    for n in range(50):
        current = r.on_result(current, RefundAction.QUERY, r.Unknown("503"), T0 + n, POLICY)
        assert current.state is RefundState.REFUNDING  # never failed on a timer
    assert current.next_at == T0 + 49 + 30  # the last backoff repeats
    again = r.on_result(current, RefundAction.QUERY, r.NoRefund(), T0 + 100, POLICY)
    assert (again.next_action, again.out_refund_no) == (RefundAction.REFUND, "S1T1R1")
    unreachable = r.on_result(again, RefundAction.REFUND, r.Unknown("refused", False),
                              T0 + 200, POLICY)
    assert unreachable.next_action is RefundAction.REFUND and unreachable.next_at == T0 + 202


def test_refusals_fail_and_change_needs_a_person() -> None:
    failed = r.on_result(refund(), RefundAction.REFUND, r.RefundRefused("NOTENOUGH", "low"),
                         T0, POLICY)
    assert failed.state is RefundState.REFUND_FAILED and failed.fail_code == "NOTENOUGH"
    taken = r.on_result(refund(), RefundAction.REFUND, r.Accepted(), T0, POLICY)
    change = r.on_result(taken, RefundAction.QUERY, r.Abnormal("CHANGE", "card"), T0 + 10,
                         POLICY)
    assert change.state is RefundState.NEEDS_ATTENTION and "merchant portal" in change.message
    assert r.on_result(change, RefundAction.QUERY, r.Refunded(), T0 + 20, POLICY).state \
        is RefundState.NEEDS_ATTENTION  # a late answer does not move a final refund


def test_what_may_be_refunded() -> None:
    sale = paid_sale(5000)
    assert r.check_refund(sale, [], None, "returned", T0, POLICY) == 5000
    assert r.check_refund(sale, [], 1201, "returned", T0, POLICY) == 1201
    done = replace(refund(3000), state=RefundState.REFUNDED)
    failed = replace(refund(4000), state=RefundState.REFUND_FAILED)
    assert r.check_refund(sale, [done, failed], None, "rest", T0, POLICY) == 2000
    assert r.left_to_refund(sale, [done, failed]) == 2000

    def why(*args: object) -> str:
        found = r.check_refund(*args)  # type: ignore[arg-type]
        assert isinstance(found, r.Refusal), found
        return f"{found.kind}: {found.reason}"

    assert why(sale, [done], 2001, "x", T0, POLICY).startswith("conflict: 20.01 is more than")
    assert "in flight" in why(sale, [refund(10)], 1, "x", T0, POLICY)
    assert why(sale, [], 1, " ", T0, POLICY).startswith("input: a refund needs a reason")
    assert why(sale, [], 0, "x", T0, POLICY).startswith("input:")
    assert "refunded in full" in why(sale, [replace(refund(5000), state=RefundState.REFUNDED)],
                                      None, "x", T0, POLICY)
    assert "resolve it first" in why(replace(sale, state=State.NEEDS_ATTENTION), [], 1, "x",
                                     T0, POLICY)
    assert "no longer refunds" in why(sale, [], 1, "x", T0 + POLICY.window_s + 1, POLICY)
    few = replace(POLICY, max_refunds=1)
    assert "most the channel takes" in why(sale, [done], 1, "x", T0, few)


def test_a_person_resolves_a_sale_that_needs_attention() -> None:
    stuck = replace(paid_sale(), state=State.NEEDS_ATTENTION, paid_at=None)
    paid = m.resolve(stuck, State.PAID, "seen paid in the portal", T0 + 5)
    assert paid.state is State.PAID and paid.paid_at == T0 + 5
    assert "Resolved by a manager as paid (seen paid in the portal)" == paid.message
    assert m.resolve(stuck, State.REVERSED, "refunded", T0).state is State.REVERSED
    with pytest.raises(InvariantError):
        m.resolve(paid_sale(), State.REVERSED, "x", T0)
    assert r.resolve_refusal(paid_sale(), "paid", "x") is not None
    assert r.resolve_refusal(stuck, "declined", "x") is not None
    assert r.resolve_refusal(stuck, "paid", "") is not None
    assert r.resolve_refusal(stuck, "paid", "ok") is None


ANSWERS = st.one_of(
    st.builds(r.Refunded, st.sampled_from(["", "5030"])), st.builds(r.Accepted),
    st.builds(r.Processing), st.builds(r.RefundRefused, st.just("NOTENOUGH"), st.just("no")),
    st.builds(r.Abnormal, st.just("CHANGE"), st.just("card")), st.builds(r.NoRefund),
    st.builds(r.Unknown, st.just("x"), st.booleans()),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(ANSWERS, st.floats(0.0, 100.0)), max_size=60))
def test_invariants_hold_for_any_answer_sequence(steps: list) -> None:
    """Whatever the channel says: one number for ever, failed only on an explicit refusal,
    never a refund with nothing scheduled, and a refund ends only by the channel's word."""
    current, now = refund(), T0
    for answer, gap in steps:
        if current.final:
            break
        now += gap
        before = current
        assert current.next_action is not None
        current = r.on_result(current, current.next_action, answer, now, POLICY)
        assert current.out_refund_no == "S1T1R1" and current.amount == 1201
        if current.state is RefundState.REFUND_FAILED and not before.final:
            assert isinstance(answer, r.RefundRefused)
        if current.state is RefundState.REFUNDED and not before.final:
            assert isinstance(answer, r.Refunded)
    assert current.final or (current.next_action is not None and current.next_at is not None)
