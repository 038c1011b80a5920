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
:func:`on_result` is one lookup in :data:`RULES`, the transition table: ``(phase, kind of
answer) -> rule``, the phase being which question the answer replies to; the docs' diagram
is drawn from it. What a change brings with it (a receipt, an HQ record) is
``posd.core.effects``, written by the store in the change's own transaction.

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
import statistics
from collections.abc import Callable, Mapping, Sequence
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
    #: A query leaves half the channel's measured round trip before it is due, at most this
    #: much earlier, so that it reaches the channel when due (:func:`departure`); 0: when due.
    query_lead_max_s: float = 0.25
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
    return make_number("out_trade_no", f"{store_id}{terminal_id}", now, seq, 6)


def is_own_trade_no(number: str, store_id: str, terminal_id: str) -> bool:
    """Whether ``number`` is one :func:`make_out_trade_no` makes for this store and terminal
    (a channel's bill holds every terminal's trades, and other systems' of the merchant).

    >>> is_own_trade_no("S001T01700101000000000007", "S001", "T01")
    True
    >>> is_own_trade_no("S001T02700101000000000007", "S001", "T01")
    False
    """
    prefix = f"{store_id}{terminal_id}"
    rest = number[len(prefix):]
    return number.startswith(prefix) and len(rest) == 18 and rest.isascii() and rest.isdigit()


def make_number(what: str, prefix: str, now: float, seq: int, digits: int) -> str:
    """``prefix`` + UTC second + the last ``digits`` of a persisted sequence: a channel's
    merchant-side number (1-32 of ``[0-9A-Za-z_-]``, InvariantError otherwise)."""
    stamp = datetime.fromtimestamp(now, UTC).strftime("%y%m%d%H%M%S")
    value = f"{prefix}{stamp}{seq % 10**digits:0{digits}d}"
    if _OUT_TRADE_NO.fullmatch(value) is None:
        raise InvariantError(f"{what} {value!r} is not 1-32 of [0-9A-Za-z_-]")
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


def resolve(sale: Sale, as_: State, note: str, now: float) -> Sale:
    """needs_attention -> paid or reversed: what a person found in the merchant portal
    (``posd resolve``). The history keeps what happened before; a paid one can then be
    refunded like any paid sale."""
    if sale.state is not State.NEEDS_ATTENTION or as_ not in (State.PAID, State.REVERSED):
        raise InvariantError(f"cannot resolve sale {sale.id} ({sale.state}) as {as_}")
    what = "paid" if as_ is State.PAID else "reversed: no money kept"
    changes: dict[str, object] = {"paid_at": sale.paid_at or now} if as_ is State.PAID else {}
    return _move(sale, as_, now, next_action=None, next_at=None,
                 message=f"Resolved by a manager as {what} ({note.strip()})", **changes)


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
    # The answer to the query planned at the deadline is the last, even when it came back
    # before it (the query left early: departure()).
    last = sale.next_action is Action.QUERY and (sale.next_at or 0.0) >= deadline
    if at >= deadline:
        if (action is not Action.QUERY or now >= deadline or last
                or not policy.final_query_at_deadline):
            return _to_reversing(sale, now, policy, "No answer in time: reversing the payment")
        at = deadline  # a customer confirming in the last seconds is still found
    return _move(sale, state, now, next_action=action, next_at=at, message=message)


# --- the transition table (h11's anchor: one table is spec, code and diagram) ---------------


class Phase(enum.StrEnum):
    """Which question a channel answer replies to: the first key of :data:`RULES`."""

    #: paying / confirming: the answer to a pay or a query
    PAYING = "paying"
    #: reversing: the answer to a reverse
    REVERSING = "reversing"
    #: reversing: a pay or query answer that arrives after the reverse was planned
    LATE = "late answer"
    #: reversing past the channel's window: the answer to "how did the trade end?"
    AFTER_WINDOW = "after the window"


#: The states each phase is asked in.
PHASE_STATES: Mapping[Phase, frozenset[State]] = {
    Phase.PAYING: frozenset({State.PAYING, State.CONFIRMING}),
    Phase.REVERSING: frozenset({State.REVERSING}),
    Phase.LATE: frozenset({State.REVERSING}),
    Phase.AFTER_WINDOW: frozenset({State.REVERSING}),
}

#: Every kind of answer, in the order the diagram labels them.
ANSWERS: tuple[type[ChannelResult], ...] = (
    Paid, Declined, Pending, Unknown, NotFound, Closed, Failed, Refused,
)

Handler = Callable[[Sale, Action, ChannelResult, float, Policy], Sale]


@dataclass(frozen=True, slots=True)
class Rule:
    """One cell of the table: what an answer does in a phase, and where it may lead.

    ``to`` lists every state the handler can return besides staying where the sale is (a
    guard inside the handler picks one: the amount, the time, whether a pay may have
    arrived); :func:`on_result` checks the handler keeps to it.
    """

    to: frozenset[State]
    apply: Handler
    says: str


def phase_of(sale: Sale, action: Action) -> Phase:
    """The phase in which ``action``'s answer is read, for a non-final, sent sale."""
    if sale.state is not State.REVERSING:
        return Phase.PAYING
    if action is Action.REVERSE:
        return Phase.REVERSING
    return Phase.AFTER_WINDOW if sale.next_action is Action.QUERY else Phase.LATE


def on_result(sale: Sale, action: Action, result: ChannelResult, now: float, policy: Policy) -> Sale:
    """Apply the channel's answer to ``action``: one lookup in :data:`RULES`. Pure."""
    sale = _count(sale, action, result, now)
    if sale.final:
        return sale  # a late answer for a sale a person or an earlier answer already ended
    if sale.state is State.AWAITING_CODE:
        raise InvariantError(f"{action} answer for a sale that was never sent: {sale.out_trade_no}")
    rule = RULES[phase_of(sale, action), type(result)]
    new = rule.apply(sale, action, result, now, policy)
    if new.state is not sale.state and new.state not in rule.to:
        raise InvariantError(f"{type(result).__name__} in phase {phase_of(sale, action)} led to "
                             f"{new.state}, not one of {sorted(rule.to)}")
    return new


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


# --- when the next step leaves ----------------------------------------------------------


def query_lead(round_trips: Sequence[float], policy: Policy) -> float:
    """How much earlier than due a query leaves: half the median of the channel's recent
    query round trips (the way there; the channel reads the trade when the query arrives),
    at most ``policy.query_lead_max_s``; 0 with no round trip measured yet."""
    if not round_trips:
        return 0.0
    return max(0.0, min(statistics.median(round_trips) / 2, policy.query_lead_max_s))


def departure(sale: Sale, lead: float) -> float:
    """When the sale's next step is sent: a query ``lead`` seconds before it is due (so that
    it arrives when due), anything else (pay, reverse) when due, never earlier. The plan
    itself stays on the due times: :func:`_query_at` counts from them."""
    if sale.next_at is None:
        raise InvariantError(f"sale {sale.out_trade_no} has no step planned")
    if sale.next_action is Action.QUERY:
        return sale.next_at - lead
    return sale.next_at


# --- phase PAYING: the answer to a pay or a query ----------------------------------------


def _query_at(sale: Sale, now: float, policy: Policy) -> float:
    """The next query, planned from when the last step was due, not from when its answer
    came: round trips must not push the schedule later and later. A late answer: at once."""
    intervals = policy.query_intervals_s
    return max(now, (sale.next_at or now) + intervals[min(sale.queries, len(intervals) - 1)])


def _paying_paid(sale: Sale, _: Action, result: ChannelResult, now: float, __: Policy) -> Sale:
    assert isinstance(result, Paid)
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
    return _move(sale, State.PAID, now, next_action=None, next_at=None, paid_at=now,
                 channel_trade_no=result.channel_trade_no, message="Paid")


def _declined(sale: Sale, _: Action, result: ChannelResult, now: float, __: Policy) -> Sale:
    assert isinstance(result, (Declined, Failed))
    return _move(sale, State.DECLINED, now, next_action=None, next_at=None,
                 decline_code=result.code, message=result.message)


def _paying_closed(sale: Sale, _: Action, result: ChannelResult, now: float, __: Policy) -> Sale:
    assert isinstance(result, Closed)
    return _move(sale, State.DECLINED, now, next_action=None, next_at=None, decline_code="CLOSED",
                 message=f"The payment was closed without payment ({result.detail})")


def _paying_failed(sale: Sale, _: Action, result: ChannelResult, now: float,
                   policy: Policy) -> Sale:
    assert isinstance(result, Failed)
    return replace(_to_reversing(sale, now, policy, result.message), decline_code=result.code)


def _paying_pending(sale: Sale, _: Action, __: ChannelResult, now: float, policy: Policy) -> Sale:
    return _schedule(sale, Action.QUERY, _query_at(sale, now, policy), now, policy,
                     State.CONFIRMING, "Waiting for the customer to confirm on the phone")


def _paying_unknown(sale: Sale, action: Action, result: ChannelResult, now: float,
                    policy: Policy) -> Sale:
    if isinstance(result, Unknown) and not result.may_have_arrived and action is Action.PAY:
        return _schedule(sale, Action.PAY, now + policy.pay_retry_delay_s, now, policy,
                         State.PAYING, "Could not reach the channel: sending again")
    return _paying_no_answer(sale, action, result, now, policy)


def _paying_no_answer(sale: Sale, _: Action, __: ChannelResult, now: float,
                      policy: Policy) -> Sale:
    return _schedule(sale, Action.QUERY, _query_at(sale, now, policy), now, policy, sale.state,
                     "Waiting for the channel's answer")


# --- phase REVERSING: the answer to a reverse ---------------------------------------------


def _reversing_closed(sale: Sale, _: Action, result: ChannelResult, now: float,
                      __: Policy) -> Sale:
    assert isinstance(result, Closed)
    return _reversed(sale, now, result.refunded)


def _reversing_not_found(sale: Sale, _: Action, __: ChannelResult, now: float,
                         policy: Policy) -> Sale:
    settled = trade_settled_at(sale, policy)
    if now < settled:
        return _move(sale, State.REVERSING, now, next_at=settled,
                     message="Reversing: the channel has no such trade yet; checking "
                     "again before saying no money was taken")
    return _no_trade(sale, now)


def _reversing_refused(sale: Sale, _: Action, result: ChannelResult, now: float,
                       __: Policy) -> Sale:
    assert isinstance(result, (Refused, Declined))
    if isinstance(result, Refused) and result.too_late:
        return _move(sale, State.REVERSING, now, next_action=Action.QUERY, next_at=now,
                     message=f"The channel no longer reverses this payment ({result.code}): "
                     "asking it how the payment ended")
    return _attention(sale, now, f"The channel refused the reverse ({result.code}: "
                      f"{result.message})")


def _reversing_recall(sale: Sale, _: Action, __: ChannelResult, now: float,
                      policy: Policy) -> Sale:
    return _retry_reverse(replace(sale, recalls=sale.recalls + 1), now, policy,
                          "Reversing: the channel asks to repeat the reverse")


def _reversing_no_answer(sale: Sale, _: Action, __: ChannelResult, now: float,
                         policy: Policy) -> Sale:
    # Paid/Failed cannot answer a reverse; they count as no answer: ask again.
    return _retry_reverse(sale, now, policy, "Reversing: no answer from the channel yet, retrying")


# --- phase LATE: a pay or query answer after the reverse was planned ---------------------


def _late_answer(sale: Sale, _: Action, __: ChannelResult, now: float, policy: Policy) -> Sale:
    # The reverse goes on; the pay may have reached the channel later than it was planned for.
    return replace(sale, next_at=max(sale.next_at or now, _reverse_at(sale, now, policy)))


# --- phase AFTER_WINDOW: how the trade ended, once reversing is no longer possible --------


def _after_window_paid(sale: Sale, _: Action, result: ChannelResult, now: float,
                       __: Policy) -> Sale:
    assert isinstance(result, Paid)
    no = result.channel_trade_no
    return _move(sale, State.NEEDS_ATTENTION, now, next_action=None, next_at=None,
                 channel_trade_no=no,
                 message=(f"The customer paid {result.amount} fen (channel trade {no}) but the "
                          "channel no longer reverses this payment: refund it to the customer"))


def _after_window_no_trade(sale: Sale, _: Action, __: ChannelResult, now: float,
                           ___: Policy) -> Sale:
    return _no_trade(sale, now)


def _after_window_ask_again(sale: Sale, _: Action, __: ChannelResult, now: float,
                            policy: Policy) -> Sale:
    return _move(sale, State.REVERSING, now, next_action=Action.QUERY,
                 next_at=now + policy.after_window_query_s,
                 message="The channel's time for reversing has passed and it has not "
                 "said how the payment ended: asking again")


_S = State
_QUERY_ON = frozenset({_S.CONFIRMING, _S.REVERSING, _S.DECLINED})  # _schedule's outcomes

#: (phase, kind of answer) -> rule. Every cell is filled (a test checks); docs/state-machine.md
#: is drawn from it by docs/make_state_diagram.py.
RULES: Mapping[tuple[Phase, type[ChannelResult]], Rule] = {
    (Phase.PAYING, Paid): Rule(frozenset({_S.PAID, _S.NEEDS_ATTENTION}), _paying_paid,
                               "paid; another amount than the sale's needs a person"),
    (Phase.PAYING, Declined): Rule(frozenset({_S.DECLINED}), _declined, "an explicit no"),
    (Phase.PAYING, Closed): Rule(frozenset({_S.DECLINED}), _paying_closed,
                                 "closed without payment"),
    (Phase.PAYING, Failed): Rule(frozenset({_S.REVERSING, _S.DECLINED}), _paying_failed,
                                 "PAYERROR: reverse to close it"),
    (Phase.PAYING, Pending): Rule(_QUERY_ON, _paying_pending,
                                  "the customer is confirming: query; past the deadline, reverse"),
    (Phase.PAYING, Unknown): Rule(_QUERY_ON | {_S.PAYING}, _paying_unknown,
                                  "no answer: query (a connect error: pay again); past the "
                                  "deadline, reverse"),
    (Phase.PAYING, NotFound): Rule(_QUERY_ON, _paying_no_answer, "not there yet: query"),
    (Phase.PAYING, Refused): Rule(_QUERY_ON, _paying_no_answer, "no answer to a pay: query"),

    (Phase.REVERSING, Closed): Rule(frozenset({_S.REVERSED}), _reversing_closed, "reversed"),
    (Phase.REVERSING, NotFound): Rule(frozenset({_S.REVERSED}), _reversing_not_found,
                                      "no such trade: reversed once none can appear any more"),
    (Phase.REVERSING, Refused): Rule(frozenset({_S.NEEDS_ATTENTION}), _reversing_refused,
                                     "refused: a person; too late: ask how it ended"),
    (Phase.REVERSING, Declined): Rule(frozenset({_S.NEEDS_ATTENTION}), _reversing_refused,
                                      "refused: a person"),
    (Phase.REVERSING, Pending): Rule(frozenset(), _reversing_recall, "recall: reverse again"),
    (Phase.REVERSING, Unknown): Rule(frozenset(), _reversing_no_answer, "no answer: again"),
    (Phase.REVERSING, Paid): Rule(frozenset(), _reversing_no_answer, "no answer: again"),
    (Phase.REVERSING, Failed): Rule(frozenset(), _reversing_no_answer, "no answer: again"),

    (Phase.LATE, Declined): Rule(frozenset({_S.DECLINED}), _declined,
                                 "an explicit no: no money moved"),
    **{(Phase.LATE, kind): Rule(frozenset(), _late_answer, "the reverse goes on")
       for kind in (Paid, Pending, Unknown, NotFound, Closed, Failed, Refused)},

    (Phase.AFTER_WINDOW, Paid): Rule(frozenset({_S.NEEDS_ATTENTION}), _after_window_paid,
                                     "paid: a person refunds it"),
    (Phase.AFTER_WINDOW, Closed): Rule(frozenset({_S.REVERSED}), _reversing_closed, "closed"),
    (Phase.AFTER_WINDOW, NotFound): Rule(frozenset({_S.REVERSED}), _after_window_no_trade,
                                         "no such trade"),
    (Phase.AFTER_WINDOW, Declined): Rule(frozenset({_S.DECLINED}), _declined, "failed"),
    (Phase.AFTER_WINDOW, Failed): Rule(frozenset({_S.DECLINED}), _declined, "failed"),
    **{(Phase.AFTER_WINDOW, kind): Rule(frozenset(), _after_window_ask_again, "ask again later")
       for kind in (Pending, Unknown, Refused)},
}

#: The moves that are not answers: the register, the cashier, the clock and a person.
COMMANDS: Mapping[str, tuple[frozenset[State], frozenset[State]]] = {
    "code scanned": (frozenset({_S.AWAITING_CODE}), frozenset({_S.PAYING})),
    "cancel": (frozenset({_S.AWAITING_CODE}), frozenset({_S.CANCELLED})),
    "cancel while paying": (frozenset({_S.PAYING, _S.CONFIRMING}),
                            frozenset({_S.REVERSING, _S.DECLINED})),
    "no code in time": (frozenset({_S.AWAITING_CODE}), frozenset({_S.CANCELLED})),
    "a person resolves it": (frozenset({_S.NEEDS_ATTENTION}), frozenset({_S.PAID, _S.REVERSED})),
}


def _transitions() -> dict[State, frozenset[State]]:
    found: dict[State, set[State]] = {state: set() for state in State}
    for (phase, _), rule in RULES.items():
        for state in PHASE_STATES[phase]:
            found[state] |= rule.to - {state}
    for sources, targets in COMMANDS.values():
        for state in sources:
            found[state] |= targets - {state}
    return {state: frozenset(to) for state, to in found.items()}


#: Every legal move, from :data:`RULES` and :data:`COMMANDS` (a state may also stay where it
#: is). NEEDS_ATTENTION is final for the machinery; a person resolves it and posd records it.
TRANSITIONS: Mapping[State, frozenset[State]] = _transitions()


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


def _attention(sale: Sale, now: float, message: str) -> Sale:
    return _move(
        sale,
        State.NEEDS_ATTENTION,
        now,
        next_action=None,
        next_at=None,
        message=f"{message}. A person must check this payment with the channel (reverse or refund).",
    )
