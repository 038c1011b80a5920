# SPDX-License-Identifier: MIT
"""The refund state machine (DESIGN §9). [core]

Rule 1: everything that decides a refund's state, its next step, and whether a refund may
be asked for at all lives here. Rule 2: no I/O, no clock: time arrives as ``now``, channel
answers as values.

Theory of operation
-------------------
A refund returns all or part of a ``paid`` sale's amount. The shell (``engine.py``) commits
the refund from :func:`new_refund` (``next_action == REFUND``) *before* the request is sent,
performs ``next_action`` at ``next_at``, feeds the answer to :func:`on_result` -- one lookup
in :data:`RULES` -- and commits what comes back, until the state is final.

- One number, for ever: ``out_refund_no`` is made once (:func:`make_out_refund_no`) and sent
  on every retry and query. For both channels the same number is the same refund (WeChat
  "out_refund_no 相同即同一笔退款"; Alipay's ``out_request_no`` "reuse the same value to retry
  the same refund", reference/channels.md §1.8, §2.10), so a retry can never become a second
  refund -- the bug of implementations that draw a fresh random number per try.
- Accepted is not refunded. WeChat's refund answer with ``result_code=SUCCESS`` only means
  the request was taken: the outcome is known from refundquery (:class:`Accepted` -> query).
  Alipay's ``fund_change=Y`` says this very call moved the money (:class:`Refunded`);
  ``fund_change=N`` (a repeat, or nothing moved yet) is only accepted, and the query decides.
- Unknown is never failed: a timeout, reset, 5xx, SYSTEMERROR, an unverifiable answer or a
  refund still processing is queried again with backoff (:class:`RefundPolicy`), however
  long it takes; a refund is never closed locally on a timer (a bank-card refund can take
  days and still succeed).
- "No such refund" from a query is not a failure: the request never got there (WeChat
  REFUNDNOTEXIST, Alipay's empty refund.query), so the same refund -- same number, same
  amount -- is sent again.
- Only an explicit refusal (the merchant's balance is too low, the trade is too old,
  WeChat REFUNDCLOSE) ends in ``refund_failed``; WeChat ``CHANGE`` (the customer's bank card
  refused the money) ends in ``needs_attention``: a person finishes it in the merchant portal.
- After a crash a refund with ``next_action == REFUND`` is simply sent again: the number makes
  it the same refund. Nothing is lost and nothing doubles.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import assert_never

from posd.core.errors import InvariantError
from posd.core.money import Fen, format_yuan
from posd.core.sale import Sale, State, Unknown, make_number


class RefundState(enum.StrEnum):
    """A refund's state; the values are what is stored and shown by the API."""

    REFUNDING = "refunding"
    REFUNDED = "refunded"
    REFUND_FAILED = "refund_failed"
    NEEDS_ATTENTION = "needs_attention"


class RefundAction(enum.StrEnum):
    REFUND = "refund"
    QUERY = "query"


#: The machinery is done with the refund (a person may still act on needs_attention).
FINAL: frozenset[RefundState] = frozenset(
    {RefundState.REFUNDED, RefundState.REFUND_FAILED, RefundState.NEEDS_ATTENTION})
#: Money may still move: counts against what is left of the sale, and blocks another refund.
IN_FLIGHT: frozenset[RefundState] = frozenset({RefundState.REFUNDING})
#: Count against the sale's amount: in flight, done, or with a person (it may yet be paid out).
TAKEN: frozenset[RefundState] = frozenset(RefundState) - {RefundState.REFUND_FAILED}


# --- channel answers to a refund or a refund query, as values ----------------------------


@dataclass(frozen=True, slots=True)
class Refunded:
    """The channel says the money is on its way back to the customer."""

    channel_refund_no: str = ""


@dataclass(frozen=True, slots=True)
class Accepted:
    """The request was taken; its outcome is not known yet (query it)."""

    channel_refund_no: str = ""


@dataclass(frozen=True, slots=True)
class Processing:
    """The refund is being paid out (WeChat PROCESSING)."""

    detail: str = ""


@dataclass(frozen=True, slots=True)
class RefundRefused:
    """An explicit refusal: no money moved (NOTENOUGH, too old, REFUNDCLOSE, ...)."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Abnormal:
    """The refund went wrong after it was accepted (WeChat CHANGE): a person must act."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class NoRefund:
    """The channel has no refund under this number: the request never arrived."""

    detail: str = ""


RefundAnswer = Refunded | Accepted | Processing | RefundRefused | Abnormal | NoRefund | Unknown


@dataclass(frozen=True, slots=True)
class RefundPolicy:
    """Timing of one channel's refunds. Values, so tests can shrink them."""

    #: the first query after a refund was sent or accepted: WeChat "about a minute"; Alipay
    #: "no sooner than 10 s after the call" (reference/channels.md §1.8, §2.10)
    first_query_s: float = 60.0
    #: later queries, from the previous one; the last repeats, never giving up
    query_backoff_s: tuple[float, ...] = (60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
    #: a refund that surely never arrived (connect error) is sent again after this
    retry_delay_s: float = 5.0
    #: how old a paid sale may be and still be refunded (WeChat: one year)
    window_s: float = 365 * 86400.0 - 86400.0
    #: refunds per sale the channel takes (WeChat: 50)
    max_refunds: int = 50


WECHAT_REFUND_POLICY = RefundPolicy()
#: Alipay: the window is the merchant's contract (``channels.alipay.refund_window_days``).
ALIPAY_REFUND_POLICY = RefundPolicy(first_query_s=10.0,
                                    query_backoff_s=(10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
                                                     1800.0, 3600.0),
                                    window_s=90 * 86400.0, max_refunds=1000)


@dataclass(frozen=True, slots=True)
class Refund:
    """One refund of one sale. Frozen: it is persisted after every step."""

    sale_id: int
    amount: Fen
    out_refund_no: str
    created_at: float
    reason: str = ""
    state: RefundState = RefundState.REFUNDING
    id: int = 0
    channel: str = ""
    out_trade_no: str = ""
    channel_refund_no: str | None = None
    message: str = ""
    refunded_at: float | None = None
    updated_at: float = 0.0
    next_action: RefundAction | None = RefundAction.REFUND
    next_at: float | None = None
    attempts: int = 0
    queries: int = 0
    fail_code: str | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL


def make_out_refund_no(store_id: str, terminal_id: str, now: float, seq: int) -> str:
    """Store + terminal + ``R`` + UTC second + persisted sequence: made once per refund.

    >>> make_out_refund_no("S001", "T01", 0.0, 7)
    'S001T01R70010100000000007'
    """
    return make_number("out_refund_no", f"{store_id}{terminal_id}R", now, seq, 5)


# --- may this refund be asked for? (before anything is written or sent) -----------------


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a refund is not taken: ``conflict`` (HTTP 409: the sale's state) or ``input``
    (422: the amount or reason), with a sentence a manager or a register developer can act on."""

    kind: str
    reason: str


def left_to_refund(sale: Sale, refunds: Sequence[Refund]) -> Fen:
    """What may still be refunded: the amount less every refund not failed."""
    return Fen(int(sale.amount) - sum(int(r.amount) for r in refunds if r.state in TAKEN))


def check_refund(sale: Sale, refunds: Sequence[Refund], amount: int | None, reason: str,
                 now: float, policy: RefundPolicy) -> Fen | Refusal:
    """The amount to refund (all that is left when ``amount`` is None), or why not."""
    if not reason.strip():
        return Refusal("input", "a refund needs a reason (what the customer returned, or why)")
    if len(reason) > 80:
        return Refusal("input", "the reason is at most 80 characters (WeChat's refund_desc)")
    if sale.state is not State.PAID:
        return Refusal("conflict", f"sale {sale.id} is {sale.state}: only a paid sale can be "
                       "refunded" + (" (resolve it first: posd resolve)"
                                     if sale.state is State.NEEDS_ATTENTION else ""))
    if busy := [r for r in refunds if r.state in IN_FLIGHT]:
        return Refusal("conflict", f"refund {busy[0].id} of sale {sale.id} is still in flight: "
                       "wait until it is final, then refund again")
    left = left_to_refund(sale, refunds)
    if left <= 0:
        return Refusal("conflict", f"sale {sale.id} is refunded in full already")
    if amount is None:
        amount = int(left)
    if amount <= 0:
        return Refusal("input", "the refund amount must be at least 1 fen")
    if amount > left:
        return Refusal("conflict", f"{format_yuan(Fen(amount))} is more than is left to refund "
                       f"of sale {sale.id} ({format_yuan(left)} of {format_yuan(sale.amount)})")
    if len([r for r in refunds if r.state in TAKEN]) >= policy.max_refunds:
        return Refusal("conflict", f"sale {sale.id} has had {policy.max_refunds} refunds, the "
                       "most the channel takes for one payment")
    paid_at = sale.paid_at if sale.paid_at is not None else sale.created_at
    if now - paid_at > policy.window_s:
        return Refusal("conflict", f"sale {sale.id} was paid more than "
                       f"{policy.window_s / 86400:g} days ago: the channel no longer refunds "
                       "it; refund the customer another way")
    return Fen(amount)


def new_refund(sale: Sale, amount: Fen, reason: str, out_refund_no: str, now: float) -> Refund:
    """The write-ahead record: committed before the refund request is sent."""
    if sale.state is not State.PAID or sale.channel is None:
        raise InvariantError(f"cannot refund sale {sale.id} in state {sale.state}")
    return Refund(sale_id=sale.id, amount=amount, out_refund_no=out_refund_no, created_at=now,
                  reason=reason.strip(), channel=sale.channel, out_trade_no=sale.out_trade_no,
                  updated_at=now, next_at=now, message="Sending the refund")


# --- the transition table -----------------------------------------------------------------


ANSWERS: tuple[type[RefundAnswer], ...] = (
    Refunded, Accepted, Processing, RefundRefused, Abnormal, NoRefund, Unknown)

Handler = Callable[[Refund, RefundAnswer, float, RefundPolicy], Refund]


@dataclass(frozen=True, slots=True)
class Rule:
    to: frozenset[RefundState]
    apply: Handler
    says: str


def on_result(refund: Refund, action: RefundAction, answer: RefundAnswer, now: float,
              policy: RefundPolicy) -> Refund:
    """Apply the channel's answer to ``action``: one lookup in :data:`RULES`. Pure."""
    match action:
        case RefundAction.REFUND:
            refund = replace(refund, attempts=refund.attempts + 1)
        case RefundAction.QUERY:
            refund = replace(refund, queries=refund.queries + 1)
        case _:
            assert_never(action)
    if refund.final:
        return refund  # a late answer for a refund that already ended
    rule = RULES[action, type(answer)]
    new = rule.apply(refund, answer, now, policy)
    if new.state is not refund.state and new.state not in rule.to:
        raise InvariantError(f"{type(answer).__name__} to {action} led to {new.state}")
    return new


def _query_later(refund: Refund, now: float, policy: RefundPolicy, message: str) -> Refund:
    backoff = policy.query_backoff_s
    delay = (policy.first_query_s if refund.queries == 0
             else backoff[min(refund.queries - 1, len(backoff) - 1)])
    return replace(refund, state=RefundState.REFUNDING, next_action=RefundAction.QUERY,
                   next_at=now + delay, updated_at=now, message=message)


def _end(refund: Refund, state: RefundState, now: float, message: str, *,
         refunded_at: float | None = None, channel_refund_no: str | None = None,
         fail_code: str | None = None) -> Refund:
    return replace(refund, state=state, next_action=None, next_at=None, updated_at=now,
                   message=message, refunded_at=refunded_at,
                   channel_refund_no=channel_refund_no or refund.channel_refund_no,
                   fail_code=fail_code)


def _refunded(refund: Refund, answer: RefundAnswer, now: float, _: RefundPolicy) -> Refund:
    assert isinstance(answer, Refunded)
    return _end(refund, RefundState.REFUNDED, now,
                "Refunded: the money is on its way back to the customer",
                refunded_at=now, channel_refund_no=answer.channel_refund_no or refund.channel_refund_no)


def _accepted(refund: Refund, answer: RefundAnswer, now: float, policy: RefundPolicy) -> Refund:
    assert isinstance(answer, Accepted)
    later = _query_later(refund, now, policy, "The channel took the refund: checking that it "
                         "was paid out")
    return replace(later, channel_refund_no=answer.channel_refund_no or refund.channel_refund_no)


def _processing(refund: Refund, _: RefundAnswer, now: float, policy: RefundPolicy) -> Refund:
    return _query_later(refund, now, policy, "The channel is paying the refund out: checking "
                        "again later")


def _refused(refund: Refund, answer: RefundAnswer, now: float, _: RefundPolicy) -> Refund:
    assert isinstance(answer, RefundRefused)
    return _end(refund, RefundState.REFUND_FAILED, now,
                f"The channel refused the refund; no money moved ({answer.code}: "
                f"{answer.message})", fail_code=answer.code)


def _abnormal(refund: Refund, answer: RefundAnswer, now: float, _: RefundPolicy) -> Refund:
    assert isinstance(answer, Abnormal)
    return _end(refund, RefundState.NEEDS_ATTENTION, now,
                f"The refund could not be paid out ({answer.code}: {answer.message}). A person "
                "must finish it in the channel's merchant portal (e.g. refund to the "
                "customer's balance) and tell the customer", fail_code=answer.code)


def _send_again(refund: Refund, _: RefundAnswer, now: float, policy: RefundPolicy) -> Refund:
    return replace(refund, state=RefundState.REFUNDING, next_action=RefundAction.REFUND,
                   next_at=now + policy.retry_delay_s, updated_at=now,
                   message="The channel has not got the refund: sending it again (same number)")


def _unknown_after_refund(refund: Refund, answer: RefundAnswer, now: float,
                          policy: RefundPolicy) -> Refund:
    assert isinstance(answer, Unknown)
    if not answer.may_have_arrived:
        return replace(refund, next_action=RefundAction.REFUND,
                       next_at=now + policy.retry_delay_s, updated_at=now,
                       message="Could not reach the channel: sending the refund again")
    return _query_later(refund, now, policy, "No answer to the refund yet: asking the channel")


def _unknown_after_query(refund: Refund, _: RefundAnswer, now: float,
                         policy: RefundPolicy) -> Refund:
    return _query_later(refund, now, policy, "No answer from the channel yet: asking again")


_R = RefundState
RULES: Mapping[tuple[RefundAction, type[RefundAnswer]], Rule] = {
    (RefundAction.REFUND, Refunded): Rule(frozenset({_R.REFUNDED}), _refunded,
                                          "this call moved the money (Alipay fund_change=Y)"),
    (RefundAction.REFUND, Accepted): Rule(frozenset(), _accepted, "taken: query it"),
    (RefundAction.REFUND, Processing): Rule(frozenset(), _processing, "processing: query"),
    (RefundAction.REFUND, RefundRefused): Rule(frozenset({_R.REFUND_FAILED}), _refused,
                                               "an explicit no: no money moved"),
    (RefundAction.REFUND, Abnormal): Rule(frozenset({_R.NEEDS_ATTENTION}), _abnormal,
                                          "went wrong after acceptance: a person"),
    (RefundAction.REFUND, NoRefund): Rule(frozenset(), _unknown_after_query, "query"),
    (RefundAction.REFUND, Unknown): Rule(frozenset(), _unknown_after_refund,
                                         "no answer: query (a connect error: send again)"),
    (RefundAction.QUERY, Refunded): Rule(frozenset({_R.REFUNDED}), _refunded, "refunded"),
    (RefundAction.QUERY, Accepted): Rule(frozenset(), _processing, "not yet: query later"),
    (RefundAction.QUERY, Processing): Rule(frozenset(), _processing, "not yet: query later"),
    (RefundAction.QUERY, RefundRefused): Rule(frozenset({_R.REFUND_FAILED}), _refused,
                                              "closed without payout (REFUNDCLOSE)"),
    (RefundAction.QUERY, Abnormal): Rule(frozenset({_R.NEEDS_ATTENTION}), _abnormal,
                                         "CHANGE: the bank refused it: a person"),
    (RefundAction.QUERY, NoRefund): Rule(frozenset(), _send_again,
                                         "never arrived: send the same refund again"),
    (RefundAction.QUERY, Unknown): Rule(frozenset(), _unknown_after_query, "query later"),
}


# --- a person resolves a sale ---------------------------------------------------------------


def resolve_refusal(sale: Sale, as_: str, note: str) -> Refusal | None:
    """Why ``posd resolve`` does not apply, or None (then ``posd.core.sale.resolve``)."""
    if as_ not in ("paid", "reversed"):
        return Refusal("input", f"resolve a sale as paid or reversed, not {as_!r}")
    if not note.strip():
        return Refusal("input", "say what you found (the note): it stays in the sale's history")
    if len(note) > 200:
        return Refusal("input", "the note is at most 200 characters")
    if sale.state is not State.NEEDS_ATTENTION:
        return Refusal("conflict", f"sale {sale.id} is {sale.state}: only a sale that needs "
                       "attention is resolved by a person")
    return None
