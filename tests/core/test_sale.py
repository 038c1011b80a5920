# SPDX-License-Identifier: MIT
"""The payment state machine, with values only: no clock, no network, no database."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core import sale as m
from posd.core.errors import InvariantError
from posd.core.money import Fen
from posd.core.sale import Action, State

POLICY = m.Policy(deadline_s=30.0, query_intervals_s=(1.0, 2.0))
WX = m.WECHAT_POLICY
T0 = 1_000_000.0


def paying(policy: m.Policy = POLICY) -> m.Sale:
    sale = replace(m.new_sale("S1T1X", Fen(1250), T0), id=1)
    return m.start_pay(sale, "wechat", "1345…0001", T0, policy)


def test_start_pay_is_write_ahead() -> None:
    sale = paying()
    assert sale.state is State.PAYING
    assert sale.next_action is Action.PAY and sale.next_at == T0
    assert sale.deadline_at == T0 + 30
    assert not sale.pay_maybe_arrived


def test_paid_at_once() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Paid("4200", Fen(1250)), T0 + 0.2, POLICY)
    assert sale.state is State.PAID and sale.channel_trade_no == "4200"
    assert sale.next_action is None and sale.paid_at == T0 + 0.2


def test_paid_with_another_amount_needs_attention() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Paid("4200", Fen(1)), T0 + 0.2, POLICY)
    assert sale.state is State.NEEDS_ATTENTION


def test_declined_is_final_with_reason() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Declined("NOTENOUGH", "余额不足"), T0 + 1, POLICY)
    assert sale.state is State.DECLINED
    assert (sale.decline_code, sale.message) == ("NOTENOUGH", "余额不足")


def test_unknown_outcome_is_queried_not_declined() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Unknown("read timeout"), T0 + 10, POLICY)
    assert sale.state is State.PAYING
    assert (sale.next_action, sale.next_at) == (Action.QUERY, T0 + 10)  # late: query at once
    assert sale.pay_maybe_arrived


def test_pay_is_resent_only_after_a_connect_error() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Unknown("refused", may_have_arrived=False),
                       T0 + 0.1, POLICY)
    assert sale.next_action is Action.PAY
    assert not sale.pay_maybe_arrived


def test_never_arrived_at_deadline_is_declined_without_reverse() -> None:
    sale = paying()
    now = T0
    while sale.state is State.PAYING:
        now += 1.0
        sale = m.on_result(sale, Action.PAY, m.Unknown("refused", False), now, POLICY)
    assert sale.state is State.DECLINED
    assert sale.decline_code == "CHANNEL_UNREACHABLE"


def test_pending_goes_to_confirming_and_queries() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Pending("USERPAYING"), T0 + 0.3, POLICY)
    assert sale.state is State.CONFIRMING
    assert (sale.next_action, sale.next_at) == (Action.QUERY, T0 + 1.0)  # planned from the pay
    sale = m.on_result(sale, Action.QUERY, m.Pending(), T0 + 1.4, POLICY)
    assert sale.next_at == T0 + 3.0  # the second interval, from when the query was due
    sale = m.on_result(sale, Action.QUERY, m.Paid("42", Fen(1250)), T0 + 3.5, POLICY)
    assert sale.state is State.PAID


def test_deadline_moves_to_reversing_not_before_wechat_minimum() -> None:
    sale = m.on_result(paying(WX), Action.PAY, m.Pending(), T0 + 0.3, WX)
    sale = m.cancel(sale, T0 + 2, WX)
    assert sale.state is State.REVERSING
    assert sale.next_action is Action.REVERSE
    assert sale.next_at == T0 + 16.3  # 15 s (+1 s margin) after the pay was last answered


def test_deadline_reached_by_query_schedule() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Pending(), T0 + 0.3, POLICY)
    now = T0 + 0.3
    while sale.state is State.CONFIRMING:
        now = sale.next_at or now
        sale = m.on_result(sale, Action.QUERY, m.Pending(), now, POLICY)
    assert sale.state is State.REVERSING
    assert now == T0 + 30  # the last query is at the deadline itself
    assert sale.next_at is not None and sale.next_at >= now


def test_a_query_leaves_half_a_round_trip_early_and_the_plan_keeps_its_due_times() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Pending(), T0 + 0.3, POLICY)
    lead = m.query_lead([0.080, 0.090, 0.085], POLICY)
    assert lead == pytest.approx(0.0425)  # half the median: the way there
    assert m.departure(sale, lead) == pytest.approx(T0 + 1.0 - 0.0425)
    answered = m.on_result(sale, Action.QUERY, m.Pending(), T0 + 1.0 + 0.0425, POLICY)
    assert answered.next_at == T0 + 3.0  # from when the query was due, not when it left


def test_the_lead_is_bounded_and_only_for_queries() -> None:
    assert m.query_lead([], POLICY) == 0.0
    assert m.query_lead([3.0, 4.0], POLICY) == POLICY.query_lead_max_s
    assert m.query_lead([0.2], replace(POLICY, query_lead_max_s=0.0)) == 0.0
    fresh = paying()  # its next step is the pay itself
    assert m.departure(fresh, 0.2) == fresh.next_at
    reversing = m.cancel(m.on_result(paying(WX), Action.PAY, m.Pending(), T0 + 0.3, WX), T0 + 2,
                         WX)
    assert m.departure(reversing, 0.2) == reversing.next_at  # never before WeChat's 15 s
    with pytest.raises(InvariantError):
        m.departure(replace(fresh, next_at=None), 0.0)


def test_the_query_at_the_deadline_is_the_last_even_if_it_came_back_early() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Pending(), T0 + 0.3, POLICY)
    while sale.next_at != T0 + 30:
        sale = m.on_result(sale, Action.QUERY, m.Pending(), sale.next_at or T0, POLICY)
    queries = sale.queries
    early = m.on_result(sale, Action.QUERY, m.Pending(), T0 + 30 - 0.01, POLICY)  # left early
    assert early.state is State.REVERSING
    assert early.queries == queries + 1  # no second query at the deadline

@pytest.mark.parametrize(
    ("refunded", "message"),
    [(True, "returned"), (False, "no money"), (None, "any money")],
)
def test_reverse_closed(refunded: bool | None, message: str) -> None:
    sale = m.cancel(m.on_result(paying(), Action.PAY, m.Pending(), T0, POLICY), T0 + 1, POLICY)
    sale = m.on_result(sale, Action.REVERSE, m.Closed("ok", refunded), T0 + 2, POLICY)
    assert sale.state is State.REVERSED and message in sale.message
    assert sale.refunded is refunded


def test_reverse_recall_repeats_with_backoff_never_gives_up() -> None:
    """recall=Y / retry_flag=Y: "call again" -- backed off as for no answer, for as long as the
    channel says so (it used to end in needs_attention after 10 calls in ~10 s)."""
    sale = m.cancel(m.on_result(paying(), Action.PAY, m.Pending(), T0, POLICY), T0 + 1, POLICY)
    now = T0 + 20
    delays = []
    for i in range(40):
        sale = m.on_result(sale, Action.REVERSE, m.Pending("recall"), now, POLICY)
        assert sale.state is State.REVERSING and sale.recalls == i + 1
        delays.append(sale.next_at - now)
        now = sale.next_at
    assert delays == sorted(delays) and delays[-1] == POLICY.reverse_backoff_s[-1]


def test_reverse_refused_needs_attention() -> None:
    sale = m.cancel(m.on_result(paying(), Action.PAY, m.Pending(), T0, POLICY), T0 + 1, POLICY)
    sale = m.on_result(sale, Action.REVERSE, m.Refused("REVERSE_EXPIRE", "too old"), T0 + 2, POLICY)
    assert sale.state is State.NEEDS_ATTENTION
    assert "REVERSE_EXPIRE" in sale.message


def test_reverse_without_answer_backs_off_and_keeps_trying() -> None:
    sale = m.cancel(m.on_result(paying(), Action.PAY, m.Pending(), T0, POLICY), T0 + 1, POLICY)
    delays = []
    now = T0 + 1
    for _ in range(10):
        sale = m.on_result(sale, Action.REVERSE, m.Unknown("timeout"), now, POLICY)
        assert sale.state is State.REVERSING
        delays.append(sale.next_at - now)
        now = sale.next_at
    assert delays == sorted(delays) and delays[-1] == POLICY.reverse_backoff_s[-1]


def reversing_past_window(policy: m.Policy = POLICY) -> m.Sale:
    """A sale whose reverse got no answer until the channel's window closed: now querying."""
    sale = m.cancel(m.on_result(paying(policy), Action.PAY, m.Pending(), T0, policy), T0 + 1,
                    policy)
    end = m.reverse_window_end(sale, policy)
    sale = m.on_result(sale, Action.REVERSE, m.Unknown("timeout"), end - 1, policy)
    assert sale.state is State.REVERSING and sale.next_action is Action.REVERSE
    assert sale.next_at == end  # one last reverse at the end of the window, not later
    sale = m.on_result(sale, Action.REVERSE, m.Unknown("timeout"), end, policy)
    assert sale.state is State.REVERSING and sale.next_action is Action.QUERY
    return sale


def test_reverse_window_then_paid_needs_a_refund() -> None:
    sale = reversing_past_window()
    end = m.reverse_window_end(sale, POLICY)
    sale = m.on_result(sale, Action.QUERY, m.Paid("4200", Fen(1250)), end + 1, POLICY)
    assert sale.state is State.NEEDS_ATTENTION and sale.channel_trade_no == "4200"
    assert "refund it" in sale.message


@pytest.mark.parametrize(("answer", "state"), [
    (m.Closed("CLOSED"), State.REVERSED),
    (m.NotFound("ORDERNOTEXIST"), State.REVERSED),
    (m.Failed("PAYERROR", "bank said no"), State.DECLINED),
])
def test_reverse_window_then_the_channel_says_how_it_ended(answer: m.ChannelResult,
                                                           state: State) -> None:
    sale = reversing_past_window()
    sale = m.on_result(sale, Action.QUERY, answer, sale.next_at or 0, POLICY)
    assert sale.state is state and sale.next_action is None


@pytest.mark.parametrize("answer", [m.Unknown("timeout"), m.Pending("NOTPAY")])
def test_reverse_window_then_no_answer_asks_again_later(answer: m.ChannelResult) -> None:
    sale = reversing_past_window()
    now = sale.next_at or 0
    sale = m.on_result(sale, Action.QUERY, answer, now, POLICY)
    assert sale.state is State.REVERSING and sale.next_action is Action.QUERY
    assert sale.next_at == now + POLICY.after_window_query_s


def test_channel_windows() -> None:
    assert m.WECHAT_POLICY.reverse_window_s < 7 * 86400 <= m.WECHAT_POLICY.reverse_window_s + 3600
    assert m.ALIPAY_POLICY.reverse_window_s < 86400
    assert m.WECHAT_POLICY.min_reverse_delay_s == m.ALIPAY_POLICY.min_reverse_delay_s == 16.0


def test_reverse_refused_too_late_queries_at_once() -> None:
    sale = m.cancel(m.on_result(paying(), Action.PAY, m.Pending(), T0, POLICY), T0 + 1, POLICY)
    refused = m.Refused("REVERSE_EXPIRE", "older than 7 days", too_late=True)
    sale = m.on_result(sale, Action.REVERSE, refused, T0 + 2, POLICY)
    assert sale.state is State.REVERSING
    assert (sale.next_action, sale.next_at) == (Action.QUERY, T0 + 2)
    sale = m.on_result(sale, Action.QUERY, m.Paid("4200", Fen(1250)), T0 + 3, POLICY)
    assert sale.state is State.NEEDS_ATTENTION and "refund it" in sale.message


def test_no_such_trade_is_trusted_only_once_a_late_pay_cannot_arrive() -> None:
    """The pay timed out (it may still be on its way): a reverse that finds no trade is sent
    again once ``late_trade_s`` have passed since the pay attempt ended, and only then does
    the sale say no money was taken."""
    sale = m.on_result(paying(), Action.PAY, m.Unknown("read timeout"), T0 + 10, POLICY)
    sale = m.cancel(sale, T0 + 11, POLICY)
    sale = m.on_result(sale, Action.REVERSE, m.NotFound("ORDERNOTEXIST"), T0 + 12, POLICY)
    assert sale.state is State.REVERSING and sale.next_action is Action.REVERSE
    assert sale.next_at == T0 + 10 + POLICY.late_trade_s
    assert "checking again" in sale.message
    late = m.on_result(sale, Action.REVERSE, m.Closed("reversed", refunded=True),
                       sale.next_at, POLICY)
    assert late.state is State.REVERSED and late.refunded is True  # the late pay was found
    none = m.on_result(sale, Action.REVERSE, m.NotFound("ORDERNOTEXIST"), sale.next_at, POLICY)
    assert none.state is State.REVERSED and "no money was taken" in none.message


def test_no_such_trade_after_a_crash_counts_from_the_pay_sent() -> None:
    sale = m.resume(paying(), T0 + 1)  # crashed after write-ahead: the pay may be on its way
    sale = m.cancel(sale, T0 + 2, POLICY)
    sale = m.on_result(sale, Action.REVERSE, m.NotFound(), T0 + 20, POLICY)
    assert sale.state is State.REVERSING and sale.next_at == T0 + POLICY.late_trade_s


def test_late_pay_answer_after_cancel_keeps_reversing() -> None:
    sale = m.cancel(paying(), T0 + 1, POLICY)
    assert sale.state is State.REVERSING
    late = m.on_result(sale, Action.PAY, m.Paid("42", Fen(1250)), T0 + 2, POLICY)
    assert late.state is State.REVERSING and late.next_action is Action.REVERSE


def test_failed_payment_is_reversed() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Pending(), T0, POLICY)
    sale = m.on_result(sale, Action.QUERY, m.Failed("PAYERROR", "bank said no"), T0 + 1, POLICY)
    assert sale.state is State.REVERSING


def test_resume_turns_a_possibly_sent_pay_into_a_query() -> None:
    sale = m.resume(paying(), T0 + 100)
    assert (sale.next_action, sale.next_at) == (Action.QUERY, T0 + 100)
    assert sale.pay_maybe_arrived


def test_cancel_before_code() -> None:
    sale = replace(m.new_sale("X", Fen(1), T0), id=1)
    assert m.cancel(sale, T0, POLICY).state is State.CANCELLED


def test_final_sales_ignore_late_answers() -> None:
    sale = m.on_result(paying(), Action.PAY, m.Paid("1", Fen(1250)), T0, POLICY)
    assert m.on_result(sale, Action.QUERY, m.Unknown("late"), T0 + 1, POLICY).state is State.PAID
    assert m.cancel(sale, T0 + 1, POLICY) == sale


def test_illegal_transition_raises_and_leaves_state() -> None:
    sale = replace(m.new_sale("X", Fen(1), T0), id=1)
    with pytest.raises(InvariantError):
        m.on_result(sale, Action.QUERY, m.Pending(), T0, POLICY)
    assert sale.state is State.AWAITING_CODE


def test_transition_table_is_complete_and_finals_have_no_exit() -> None:
    assert set(m.TRANSITIONS) == set(State)
    for state in m.FINAL - {State.NEEDS_ATTENTION}:
        assert m.TRANSITIONS[state] == frozenset()
    for state, targets in m.TRANSITIONS.items():
        assert state not in targets


def test_out_trade_no() -> None:
    a = m.make_out_trade_no("S001", "T01", T0, 1)
    b = m.make_out_trade_no("S001", "T02", T0, 1)
    assert a != b and len(a) <= 32
    assert m.make_out_trade_no("ABCDEFGH", "ABCDEF", T0, 999_999).__len__() == 32
    with pytest.raises(InvariantError):
        m.make_out_trade_no("S 1", "T01", T0, 1)


RESULTS = st.one_of(
    st.builds(m.Paid, st.just("4200"), st.sampled_from([Fen(1250), Fen(1)])),
    st.builds(m.Declined, st.just("NOTENOUGH"), st.just("no")),
    st.builds(m.Pending),
    st.builds(m.Unknown, st.just("x"), st.booleans()),
    st.builds(m.NotFound),
    st.builds(m.Closed, st.just("c"), st.sampled_from([True, False, None])),
    st.builds(m.Failed, st.just("PAYERROR"), st.just("f")),
    st.builds(m.Refused, st.just("REVERSE_EXPIRE"), st.just("r")),
)


@settings(max_examples=300)
@given(st.lists(st.tuples(RESULTS, st.floats(0.0, 5.0), st.booleans()), max_size=60))
def test_invariants_hold_for_any_answer_sequence(steps: list) -> None:
    """Whatever the channel says, in any order: legal moves only, never a non-final sale with
    nothing scheduled, and DECLINED only from an explicit no or a never-sent pay."""
    sale, now = paying(WX), T0
    for result, gap, cancel_now in steps:
        if sale.final:
            break
        now += gap
        if cancel_now:
            sale = m.cancel(sale, now, WX)
            continue
        before = sale
        action = sale.next_action
        assert action is not None
        sale = m.on_result(sale, action, result, max(now, sale.next_at or now), WX)
        assert sale.state is before.state or sale.state in m.TRANSITIONS[before.state]
        if sale.state is State.DECLINED and before.state is not State.DECLINED:
            assert isinstance(result, (m.Declined, m.Closed)) or not sale.pay_maybe_arrived
        if sale.state is State.REVERSING:
            sent = max(sale.pay_sent_at or 0, sale.last_pay_at or 0)
            assert sale.next_at >= sent + WX.min_reverse_delay_s
    assert sale.final or (sale.next_action is not None and sale.next_at is not None)


def test_the_rule_table_has_one_cell_for_every_phase_and_answer() -> None:
    assert set(m.RULES) == {(phase, answer) for phase in m.Phase for answer in m.ANSWERS}
    assert set(m.ChannelResult.__args__) == set(m.ANSWERS)  # type: ignore[attr-defined]
    # A final state is never a phase's state: an answer cannot move a finished sale.
    assert not set().union(*m.PHASE_STATES.values()) & m.FINAL


def test_the_phase_is_the_question_the_answer_replies_to() -> None:
    sale = paying(WX)
    assert m.phase_of(sale, Action.PAY) is m.Phase.PAYING
    reversing = m.cancel(sale, T0 + 1, WX)
    assert m.phase_of(reversing, Action.REVERSE) is m.Phase.REVERSING
    assert m.phase_of(reversing, Action.QUERY) is m.Phase.LATE
    after = replace(reversing, next_action=Action.QUERY)
    assert m.phase_of(after, Action.QUERY) is m.Phase.AFTER_WINDOW
