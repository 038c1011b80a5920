# SPDX-License-Identifier: MIT
"""The payment state machine. [core]

Rule 1: everything that decides a sale's state or its next step lives here.
Rule 2: this module does no I/O and reads no clock: time arrives as ``now`` (epoch seconds,
wall clock, so that deadlines survive a restart), channel answers arrive as values.

Theory of operation
-------------------
A sale is one attempt to take one amount with one payment code. The shell (``engine.py``)
persists the sale, then performs ``sale.next_action`` at ``sale.next_at``, feeds the channel's
answer to :func:`on_result` and persists what comes back, until the state is final.

- Write-ahead: :func:`start_pay` returns a sale whose ``next_action`` is ``PAY``; the shell
  commits it before sending anything. A sale found on disk with ``next_action == PAY`` after a
  crash may or may not have reached the channel: :func:`resume` turns it into a query.
- Unknown is never declined: only :class:`Declined` (an explicit business failure) and
  :class:`Closed` (the channel says the trade is closed with no money taken) end in
  ``DECLINED``. Timeouts, resets, 5xx, bad signatures are :class:`Unknown` -> query.
- ``pay`` is sent again (same ``out_trade_no``) only after ``Unknown(may_have_arrived=False)``
  (a connect error: the channel surely never saw it); otherwise we query.
- Deadline: once ``deadline_at`` passes without a final answer the sale goes to
  ``REVERSING``; the reverse is never sent before ``pay_sent_at + min_reverse_delay_s`` (15 s
  plus a 1 s margin, on both channels: see ``REVERSE_DELAY_S``). Reverse is repeated, with the
  same backoff, while the channel asks for it (``recall=Y`` / ``retry_flag=Y``) or gives no
  usable answer; only a definite refusal ends in ``NEEDS_ATTENTION``.
- "No such trade" is not proof while a pay may still arrive. A reverse answered ``NotFound``
  (WeChat ``ORDERNOTEXIST``, Alipay ``ACQ.TRADE_NOT_EXIST``) is trusted only once
  ``late_trade_s`` have passed since the last pay attempt ended (answered, timed out, or, after
  a crash, was sent). Before that the reverse is sent again at that moment: a pay that reached
  the channel late is then found and reversed (a reverse refunds a paid trade). Why 60 s: a
  payment code is single-use and refreshes every minute, and the last pay attempt ends at the
  latest ``read_timeout_s`` after it was sent, so a request still travelling after that would
  carry a code the channel no longer accepts.
- Windows: WeChat reverses orders up to 7 days old, Alipay cancels within 24 h
  (``reverse_window_s``, a margin short of both). Past the window reversing is useless: the
  sale stays ``REVERSING`` with ``next_action == QUERY`` and asks how the trade ended. Paid ->
  ``NEEDS_ATTENTION`` ("refund it"); closed, reversed or never created -> ``REVERSED``;
  anything else -> ask again later. A refusal that says the window has passed
  (``Refused(too_late=True)``: REVERSE_EXPIRE, ACQ.TRADE_CANCEL_TIME_OUT,
  ACQ.TRADE_HAS_FINISHED) goes the same way at once.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import assert_never

from posd.core.errors import InvariantError
from posd.core.money import Fen


class State(enum.StrEnum):
    """A sale's state; the values are what is stored and shown by the API."""

    AWAITING_CODE = "awaiting_code"
    PAYING = "paying"
    CONFIRMING = "confirming"
    PAID = "paid"
    DECLINED = "declined"
    REVERSING = "reversing"
    REVERSED = "reversed"
    CANCELLED = "cancelled"
    NEEDS_ATTENTION = "needs_attention"


class Action(enum.StrEnum):
    """What the shell must do next for a non-final sale."""

    PAY = "pay"
    QUERY = "query"
    REVERSE = "reverse"


# --- state groups: each defined here once, used by the store, engine, API and printer ----

#: The machinery is done with the sale (a person may still resolve needs_attention).
FINAL: frozenset[State] = frozenset(
    {State.PAID, State.DECLINED, State.REVERSED, State.CANCELLED, State.NEEDS_ATTENTION}
)
#: A request to the channel may be outstanding: the scanner refuses another code meanwhile.
PAYING_NOW: frozenset[State] = frozenset({State.PAYING, State.CONFIRMING})
#: Money may be moving: a pay or a reverse is in progress (/v1/health's ``in_flight``).
IN_FLIGHT: frozenset[State] = PAYING_NOW | {State.REVERSING}
#: Work is scheduled for it (start-up recovery and the watchdog look at these).
WORKING: frozenset[State] = IN_FLIGHT | {State.AWAITING_CODE}
#: Not settled, for an order: a new sale for the order is refused while one of its sales is
#: paid or in one of these (DESIGN §2: one paid or unresolved sale per order).
UNRESOLVED: frozenset[State] = WORKING | {State.NEEDS_ATTENTION}
#: What the store indexes as open (few rows however old the store is): work or a person.
OPEN: frozenset[State] = UNRESOLVED
#: Ended without money taken: the order may try again with another code.
NO_MONEY: frozenset[State] = frozenset({State.DECLINED, State.REVERSED, State.CANCELLED})
#: Final states that get a receipt or slip (cancelled: no code was ever sent, no slip).
PRINTABLE: frozenset[State] = FINAL - {State.CANCELLED}

#: Every legal transition (a state may also stay where it is). Checked by tests and drawn
#: in docs/state-machine.md. NEEDS_ATTENTION is final for the machinery; a person resolves
#: it (manual reverse or refund) and posd records what they did.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.AWAITING_CODE: frozenset({State.PAYING, State.CANCELLED}),
    State.PAYING: frozenset(
        {State.CONFIRMING, State.PAID, State.DECLINED, State.REVERSING, State.NEEDS_ATTENTION}
    ),
    State.CONFIRMING: frozenset(
        {State.PAYING, State.PAID, State.DECLINED, State.REVERSING, State.NEEDS_ATTENTION}
    ),
    State.REVERSING: frozenset({State.REVERSED, State.DECLINED, State.NEEDS_ATTENTION}),
    State.PAID: frozenset(),
    State.DECLINED: frozenset(),
    State.REVERSED: frozenset(),
    State.CANCELLED: frozenset(),
    State.NEEDS_ATTENTION: frozenset({State.PAID, State.REVERSED}),
}


# --- channel answers, as values -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Paid:
    """The channel confirms the money was taken."""

    channel_trade_no: str
    amount: Fen


@dataclass(frozen=True, slots=True)
class Declined:
    """An explicit business failure: no money moved (e.g. NOTENOUGH, AUTHCODEEXPIRE)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Pending:
    """The customer is confirming on the phone (USERPAYING / 10003), or reverse said recall=Y."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class Unknown:
    """No usable answer. ``may_have_arrived=False`` only for a connect error."""

    detail: str
    may_have_arrived: bool = True


@dataclass(frozen=True, slots=True)
class NotFound:
    """The channel has no trade under this out_trade_no (yet)."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class Closed:
    """The trade is closed: unpaid and closed, or reversed.

    ``refunded``: True when the channel says money went back (Alipay ``action=refund``), False
    when it says none was taken (``action=close``), None when it does not say (WeChat reverse).
    """

    detail: str = ""
    refunded: bool | None = None


@dataclass(frozen=True, slots=True)
class Failed:
    """The payment failed but the trade must be reversed to close it (WeChat PAYERROR)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Refused:
    """A definite refusal of a reverse (merchant errors): a person must act.

    ``too_late``: the channel no longer reverses this trade (its window has passed): posd
    queries it to learn how it ended instead of asking a person at once.
    """

    code: str
    message: str
    too_late: bool = False


ChannelResult = Paid | Declined | Pending | Unknown | NotFound | Closed | Failed | Refused


# --- policy -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Policy:
    """Timing of one channel. Values, so tests and benchmarks can vary them."""

    deadline_s: float = 30.0
    #: Delays before query 1, 2, ... (from when the previous step was due); the last repeats.
    #: Few queries in the first 2 s (almost nobody types a password that fast), dense from 3 to
    #: 10 s where most customers confirm, sparser after: 19 queries by 28 s, one more at the
    #: deadline. Measured against the Alipay F2F demo's in bench/confirm_delay.py.
    query_intervals_s: tuple[float, ...] = (
        2.0, 1.0, 0.7, 0.7, 0.7, 0.7, 0.8, 0.9, 1.0, 1.2, 1.3, 1.5, 1.6, 1.8, 2.0, 2.2, 2.4,
        2.6, 2.8,
    )
    #: One last query at the deadline itself before reversing (False: reverse as soon as the
    #: next planned query would be past it, as the Alipay F2F demo does).
    final_query_at_deadline: bool = True
    pay_retry_delay_s: float = 1.0
    min_reverse_delay_s: float = 0.0
    #: Delays between reverse attempts (no answer, or the channel asks to repeat); the last
    #: repeats until the window closes.
    reverse_backoff_s: tuple[float, ...] = (2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0, 300.0)
    #: "No such trade" is trusted only this long after the last pay attempt ended.
    late_trade_s: float = 60.0
    #: How long after the pay call the channel still reverses (a margin short of its own).
    reverse_window_s: float = 7 * 24 * 3600.0 - 3600.0
    #: Past the window: how often to ask the channel how the trade ended.
    after_window_query_s: float = 300.0


#: WeChat: "请勿扣款后立即调用撤销，建议至少15秒后再调用" (no reverse within 15 s of the pay call),
#: plus 1 s because the pay reaches the channel a little after posd commits ``pay_sent_at``.
#: Alipay has no such sentence, but the race is the same (a cancel that overtakes a pay still
#: being created answers "no such trade"), so posd waits as long before an Alipay cancel.
REVERSE_DELAY_S = 16.0

#: WeChat reverses orders up to 7 days old (reference/channels.md §1.7).
WECHAT_POLICY = Policy(min_reverse_delay_s=REVERSE_DELAY_S,
                       reverse_window_s=7 * 24 * 3600.0 - 3600.0)
#: Alipay's trade.cancel works within 24 h of the trade (the issue's audit; Alipay's
#: cross-border docs say "the day of the trade, Beijing time").
ALIPAY_POLICY = Policy(min_reverse_delay_s=REVERSE_DELAY_S, reverse_window_s=23 * 3600.0)


# --- the sale ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sale:
    """One payment attempt. Frozen: it is persisted after every step."""

    out_trade_no: str
    amount: Fen
    created_at: float
    state: State = State.AWAITING_CODE
    id: int = 0
    order_ref: str | None = None
    subject: str = ""
    channel: str | None = None
    auth_code_masked: str | None = None
    updated_at: float = 0.0
    pay_sent_at: float | None = None
    #: when the last pay attempt was answered (or gave up): a later bound on its arrival.
    last_pay_at: float | None = None
    deadline_at: float | None = None
    paid_at: float | None = None
    next_action: Action | None = None
    next_at: float | None = None
    pay_attempts: int = 0
    queries: int = 0
    reverse_attempts: int = 0
    recalls: int = 0
    #: False only while every pay attempt so far surely never reached the channel.
    pay_maybe_arrived: bool = False
    refunded: bool | None = None
    channel_trade_no: str | None = None
    decline_code: str | None = None
    message: str = ""
    detail: str = field(default="", compare=False)

    @property
    def final(self) -> bool:
        return self.state in FINAL


_OUT_TRADE_NO = re.compile(r"[0-9A-Za-z_-]{1,32}", re.ASCII)


def make_out_trade_no(store_id: str, terminal_id: str, now: float, seq: int) -> str:
    """Store + terminal + UTC second + persisted sequence: unique across terminals and restarts.

    >>> make_out_trade_no("S001", "T01", 0.0, 7)
    'S001T01700101000000000007'
    """
    stamp = datetime.fromtimestamp(now, UTC).strftime("%y%m%d%H%M%S")
    value = f"{store_id}{terminal_id}{stamp}{seq % 1_000_000:06d}"
    if _OUT_TRADE_NO.fullmatch(value) is None:
        raise InvariantError(f"out_trade_no {value!r} is not 1-32 of [0-9A-Za-z_-]")
    return value


def _move(sale: Sale, state: State, now: float, **changes: object) -> Sale:
    if state is not sale.state and state not in TRANSITIONS[sale.state]:
        raise InvariantError(f"illegal transition {sale.state} -> {state} for {sale.out_trade_no}")
    return replace(sale, state=state, updated_at=now, **changes)  # type: ignore[arg-type]


def new_sale(
    out_trade_no: str, amount: Fen, now: float, *, order_ref: str | None = None, subject: str = ""
) -> Sale:
    """A sale created by the register, waiting for the next scan."""
    return Sale(
        out_trade_no=out_trade_no,
        amount=amount,
        created_at=now,
        updated_at=now,
        order_ref=order_ref,
        subject=subject,
        message="Waiting for the customer's payment code",
    )


def start_pay(sale: Sale, channel: str, masked_code: str, now: float, policy: Policy) -> Sale:
    """awaiting_code -> paying. The result must be committed before the pay request is sent."""
    if sale.state is not State.AWAITING_CODE:
        raise InvariantError(f"cannot start paying a sale in state {sale.state}")
    return _move(
        sale,
        State.PAYING,
        now,
        channel=channel,
        auth_code_masked=masked_code,
        pay_sent_at=now,
        deadline_at=now + policy.deadline_s,
        next_action=Action.PAY,
        next_at=now,
        message="Sending the payment",
    )


def resume(sale: Sale, now: float) -> Sale:
    """A non-final sale read back after a restart: a pay that may have been sent becomes a query.

    The full payment code is never stored, so a pay cannot be re-sent after a restart.
    """
    if sale.final or sale.next_action is not Action.PAY:
        return sale
    return replace(sale, next_action=Action.QUERY, next_at=now, pay_maybe_arrived=True)


def cancel(sale: Sale, now: float, policy: Policy) -> Sale:
    """Cashier cancel: before a code -> cancelled; in flight -> reversing; otherwise unchanged."""
    match sale.state:
        case State.AWAITING_CODE:
            return _move(sale, State.CANCELLED, now, message="Cancelled by the cashier")
        case State.PAYING | State.CONFIRMING:
            # A pay request may be on the wire right now (the cancel comes from another
            # thread), so the trade must be reversed even if every earlier attempt failed.
            in_flight = replace(sale, pay_maybe_arrived=True)
            return _to_reversing(in_flight, now, policy, "Cancelled by the cashier: reversing the payment")
        case (
            State.REVERSING
            | State.PAID
            | State.DECLINED
            | State.REVERSED
            | State.CANCELLED
            | State.NEEDS_ATTENTION
        ):
            return sale
        case _:
            assert_never(sale.state)


def expire(sale: Sale, now: float, after: str) -> Sale:
    """awaiting_code -> cancelled: no code was scanned within ``payment.awaiting_code_s``."""
    if sale.state is not State.AWAITING_CODE:
        return sale
    return _move(sale, State.CANCELLED, now, message=f"Cancelled by posd: no payment code was "
                 f"scanned within {after}")


def scan_target(waiting: Sequence[Sale], paying_now: bool) -> Sale | str:
    """The sale a scanned code pays (DESIGN §2 rule 7), or why none: only the one sale that
    waits for a code, never while another is being paid, never queued for later."""
    if paying_now:
        return "another payment is in progress; wait for it to finish"
    if not waiting:
        return "no sale is waiting for a payment code; enter the amount first"
    if len(waiting) > 1:  # only a store written before rule 7 can hold several
        ids = ", ".join(str(s.id) for s in waiting)
        return f"several sales ({ids}) wait for a code; cancel all but the one the customer is paying"
    return waiting[0]


def is_forgotten(sale: Sale, now: float, awaiting_code_s: float) -> bool:
    """A sale nobody scanned a code for within ``payment.awaiting_code_s``."""
    return sale.state is State.AWAITING_CODE and now - sale.created_at > awaiting_code_s


def cancel_refusal(sale: Sale) -> str | None:
    """Why a cashier cancel does not apply to ``sale``, or None: cancelling never refunds a
    paid sale, and a sale that needs attention is a person's to resolve."""
    if sale.state in (State.PAID, State.NEEDS_ATTENTION):
        return f"sale {sale.id} is {sale.state} and cannot be cancelled: {sale.message}"
    return None


def _reverse_at(sale: Sale, now: float, policy: Policy) -> float:
    """Now, but never within ``min_reverse_delay_s`` of any pay attempt reaching the channel."""
    sent = max(sale.pay_sent_at or now, sale.last_pay_at or 0.0)
    return max(now, sent + policy.min_reverse_delay_s)


def _to_reversing(sale: Sale, now: float, policy: Policy, message: str) -> Sale:
    if not sale.pay_maybe_arrived:
        # Every pay attempt failed to connect: the channel never saw this code. Nothing to reverse.
        return _move(
            sale,
            State.DECLINED,
            now,
            next_action=None,
            next_at=None,
            decline_code="CHANNEL_UNREACHABLE",
            message="Could not reach the payment channel; no money was taken. Try again.",
        )
    return _move(
        sale,
        State.REVERSING,
        now,
        next_action=Action.REVERSE,
        next_at=_reverse_at(sale, now, policy),
        message=message,
    )


def _schedule(sale: Sale, action: Action, at: float, now: float, policy: Policy, state: State,
              message: str) -> Sale:
    """Schedule the next pay/query; past the deadline, one last query at it, then reverse."""
    deadline = sale.deadline_at if sale.deadline_at is not None else now
    if at >= deadline:
        if action is not Action.QUERY or now >= deadline or not policy.final_query_at_deadline:
            return _to_reversing(sale, now, policy, "No answer in time: reversing the payment")
        at = deadline  # a customer confirming in the last seconds is still found
    return _move(sale, state, now, next_action=action, next_at=at, message=message)


def on_result(sale: Sale, action: Action, result: ChannelResult, now: float, policy: Policy) -> Sale:
    """Apply the channel's answer to ``action``. Pure: no clock, no network, no database."""
    sale = _count(sale, action, result, now)
    if sale.final:
        return sale  # a late answer for a sale a person or an earlier answer already ended
    if sale.state is State.REVERSING:
        return _while_reversing(sale, action, result, now, policy)
    if sale.state is State.AWAITING_CODE:
        raise InvariantError(f"{action} answer for a sale that was never sent: {sale.out_trade_no}")
    return _while_paying(sale, action, result, now, policy)


def _count(sale: Sale, action: Action, result: ChannelResult, now: float) -> Sale:
    match action:
        case Action.PAY:
            arrived = sale.pay_maybe_arrived or not (
                isinstance(result, Unknown) and not result.may_have_arrived
            )
            return replace(sale, pay_attempts=sale.pay_attempts + 1, pay_maybe_arrived=arrived,
                           last_pay_at=now)
        case Action.QUERY:
            return replace(sale, queries=sale.queries + 1)
        case Action.REVERSE:
            return replace(sale, reverse_attempts=sale.reverse_attempts + 1)
        case _:
            assert_never(action)


def _paid(sale: Sale, result: Paid, now: float) -> Sale:
    if result.amount != sale.amount:
        return _move(
            sale,
            State.NEEDS_ATTENTION,
            now,
            next_action=None,
            next_at=None,
            channel_trade_no=result.channel_trade_no,
            message=(
                f"The channel reports {result.amount} fen paid but the sale is for {sale.amount} "
                "fen: check the trade with the channel and refund or collect the difference"
            ),
        )
    return _move(
        sale,
        State.PAID,
        now,
        next_action=None,
        next_at=None,
        paid_at=now,
        channel_trade_no=result.channel_trade_no,
        message="Paid",
    )


def _next_query_delay(sale: Sale, policy: Policy) -> float:
    intervals = policy.query_intervals_s
    return intervals[min(sale.queries, len(intervals) - 1)]


def _while_paying(
    sale: Sale, action: Action, result: ChannelResult, now: float, policy: Policy
) -> Sale:
    # Planned from when the last step was due, not from when its answer came: round trips
    # must not push the schedule later and later. A late answer queries at once.
    query_at = max(now, (sale.next_at or now) + _next_query_delay(sale, policy))
    match result:
        case Paid():
            return _paid(sale, result, now)
        case Declined(code=code, message=message):
            return _move(
                sale, State.DECLINED, now, next_action=None, next_at=None,
                decline_code=code, message=message,
            )
        case Closed(detail=detail):
            return _move(
                sale, State.DECLINED, now, next_action=None, next_at=None,
                decline_code="CLOSED", message=f"The payment was closed without payment ({detail})",
            )
        case Failed(code=code, message=message):
            return replace(_to_reversing(sale, now, policy, message), decline_code=code)
        case Pending():
            return _schedule(
                sale, Action.QUERY, query_at, now, policy, State.CONFIRMING,
                "Waiting for the customer to confirm on the phone",
            )
        case Unknown(may_have_arrived=False) if action is Action.PAY:
            return _schedule(
                sale, Action.PAY, now + policy.pay_retry_delay_s, now, policy, State.PAYING,
                "Could not reach the channel: sending again",
            )
        case Unknown() | NotFound() | Refused():
            return _schedule(
                sale, Action.QUERY, query_at, now, policy, sale.state,
                "Waiting for the channel's answer",
            )
        case _:
            assert_never(result)


def _while_reversing(
    sale: Sale, action: Action, result: ChannelResult, now: float, policy: Policy
) -> Sale:
    if action is not Action.REVERSE:
        if sale.next_action is Action.QUERY:
            return _after_window(sale, result, now, policy)
        # A pay/query answer that arrives after the cashier cancelled: the reverse goes on,
        # unless the channel says plainly that no money moved.
        if isinstance(result, Declined):
            return _move(sale, State.DECLINED, now, next_action=None, next_at=None,
                         decline_code=result.code, message=result.message)
        # The pay may have reached the channel later than the reverse was planned for.
        return replace(sale, next_at=max(sale.next_at or now, _reverse_at(sale, now, policy)))
    match result:
        case Closed(refunded=refunded):
            return _reversed(sale, now, refunded)
        case NotFound():
            settled = trade_settled_at(sale, policy)
            if now < settled:
                return _move(sale, State.REVERSING, now, next_at=settled,
                             message="Reversing: the channel has no such trade yet; checking "
                             "again before saying no money was taken")
            return _no_trade(sale, now)
        case Refused(too_late=True, code=code):
            return _move(sale, State.REVERSING, now, next_action=Action.QUERY, next_at=now,
                         message=f"The channel no longer reverses this payment ({code}): "
                         "asking it how the payment ended")
        case Refused(code=code, message=message) | Declined(code=code, message=message):
            return _attention(sale, now, f"The channel refused the reverse ({code}: {message})")
        case Pending():
            return _retry_reverse(replace(sale, recalls=sale.recalls + 1), now, policy,
                                  "Reversing: the channel asks to repeat the reverse")
        case Unknown() | Paid() | Failed():
            # Paid/Failed cannot answer a reverse; treat them as no answer and ask again.
            return _retry_reverse(sale, now, policy,
                                  "Reversing: no answer from the channel yet, retrying")
        case _:
            assert_never(result)


def trade_settled_at(sale: Sale, policy: Policy) -> float:
    """When a trade for this sale can no longer appear at the channel (see the docstring)."""
    return max(sale.pay_sent_at or 0.0, sale.last_pay_at or 0.0) + policy.late_trade_s


def reverse_window_end(sale: Sale, policy: Policy) -> float:
    """The last moment posd sends a reverse for this sale."""
    return (sale.pay_sent_at or sale.created_at) + policy.reverse_window_s


def _retry_reverse(sale: Sale, now: float, policy: Policy, message: str) -> Sale:
    backoff = policy.reverse_backoff_s
    at = now + backoff[min(max(sale.reverse_attempts - 1, 0), len(backoff) - 1)]
    last = reverse_window_end(sale, policy)
    if at > last:
        if now >= last:
            return _move(sale, State.REVERSING, now, next_action=Action.QUERY, next_at=now,
                         message="The channel's time for reversing has passed: asking it how "
                         "the payment ended")
        at = last  # one last reverse at the end of the window
    return _move(sale, State.REVERSING, now, next_at=at, message=message)


def _reversed(sale: Sale, now: float, refunded: bool | None) -> Sale:
    message = {
        True: "Reversed: the payment was returned to the customer",
        False: "Reversed: no money was taken",
        None: "Reversed: any money taken was returned to the customer",
    }[refunded]
    return _move(sale, State.REVERSED, now, next_action=None, next_at=None,
                 refunded=refunded, message=message)


def _no_trade(sale: Sale, now: float) -> Sale:
    """Reversed: the channel has no trade, and none can appear any more."""
    return _move(sale, State.REVERSED, now, next_action=None, next_at=None,
                 message="Reversed: the channel has no such trade, no money was taken")


def _after_window(sale: Sale, result: ChannelResult, now: float, policy: Policy) -> Sale:
    """A query's answer once reversing is no longer possible: end as the channel says."""
    match result:
        case Paid(channel_trade_no=trade_no, amount=amount):
            return _move(
                sale, State.NEEDS_ATTENTION, now, next_action=None, next_at=None,
                channel_trade_no=trade_no,
                message=(f"The customer paid {amount} fen (channel trade {trade_no}) but the "
                         "channel no longer reverses this payment: refund it to the customer"),
            )
        case Closed(refunded=refunded):
            return _reversed(sale, now, refunded)
        case NotFound():
            return _no_trade(sale, now)
        case Declined(code=code, message=message) | Failed(code=code, message=message):
            return _move(sale, State.DECLINED, now, next_action=None, next_at=None,
                         decline_code=code, message=message)
        case Pending() | Unknown() | Refused():
            return _move(sale, State.REVERSING, now, next_action=Action.QUERY,
                         next_at=now + policy.after_window_query_s,
                         message="The channel's time for reversing has passed and it has not "
                         "said how the payment ended: asking again")
        case _:
            assert_never(result)


def _attention(sale: Sale, now: float, message: str) -> Sale:
    return _move(
        sale,
        State.NEEDS_ATTENTION,
        now,
        next_action=None,
        next_at=None,
        message=f"{message}. A person must check this payment with the channel (reverse or refund).",
    )
