# SPDX-License-Identifier: MIT
"""The simulator's ledger: trades, their scripted behaviour, and what clients did to them.

Rule 1: everything that decides what happens to a trade lives here. The channel gateways
(``wechat.py``, later an Alipay one) only translate their wire format to and from these values,
so every channel gets the same scripted behaviour (DESIGN.md §5).
Rule 2: no I/O, no clock, no threads: time arrives as ``now`` (epoch seconds) and the caller
holds the lock. That is what lets ``tests/core`` drive a trade through minutes in microseconds.

Theory of operation
-------------------
The first pay request for a ``(channel, out_trade_no)`` creates a :class:`Trade`. What the
customer does is an :class:`Outcome`, picked by the code's last four digits unless a test
scripted that code. A trade waiting for the customer is settled lazily: whenever it is looked
at with ``now`` past its ``confirm_at`` it becomes paid *at* ``confirm_at``, exactly as if a
timer had fired. A reverse closes a waiting trade for good and refunds a paid one.

Full payment codes are never kept: a trade holds the masked code and a keyed digest that
tells two codes apart (``OUT_TRADE_NO_USED``) without being reversible outside the process.
Things a well-behaved client never does are recorded as violations for tests to assert on.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import assert_never

from posd.core.codes import mask
from posd.core.money import Fen

#: The reverse window for micropay orders (reference/channels.md §1.7).
REVERSE_MAX_AGE_S = 7 * 24 * 3600.0

#: The client times "15 s after the pay call" from when it *sent* the pay; the simulator only
#: sees when it *arrived*. A pay that needed a fresh TLS connection arrives later than a
#: reverse on a pooled one, so a client reversing at exactly 15.000 s by its clock can look a
#: few milliseconds early here. Only a reverse earlier than this allowance is a violation.
TRANSIT_ALLOWANCE_S = 0.25


class Outcome(enum.StrEnum):
    """What the customer (and the channel) do with a trade. Values are used in /_sim/ JSON."""

    PAID = "paid"  # any other ending: paid at once
    CONFIRM_LATER = "confirm_later"  # 0001: waiting, the customer confirms after a delay
    NEVER_CONFIRM = "never_confirm"  # 0002: waiting until reversed
    INSUFFICIENT_BALANCE = "insufficient_balance"  # 0003
    CODE_EXPIRED = "code_expired"  # 0004
    ERROR_BUT_PAID = "error_but_paid"  # 0005: pay answers a system error, the trade is paid
    HANG_BUT_PAID = "hang_but_paid"  # 0006: pay hangs past the client's timeout, trade paid
    PAY_AT_REVERSE = "pay_at_reverse"  # 0007: pays the moment the reverse arrives -> refunded
    REVERSE_RETRY = "reverse_retry"  # 0008: reverse asks to be repeated twice, then succeeds


#: The sandbox codes: last four digits -> outcome (DESIGN.md §5); any other ending pays at once.
ENDINGS: Mapping[str, Outcome] = {
    "0001": Outcome.CONFIRM_LATER,
    "0002": Outcome.NEVER_CONFIRM,
    "0003": Outcome.INSUFFICIENT_BALANCE,
    "0004": Outcome.CODE_EXPIRED,
    "0005": Outcome.ERROR_BUT_PAID,
    "0006": Outcome.HANG_BUT_PAID,
    "0007": Outcome.PAY_AT_REVERSE,
    "0008": Outcome.REVERSE_RETRY,
}

_DECLINES = frozenset({Outcome.INSUFFICIENT_BALANCE, Outcome.CODE_EXPIRED})
_NEVER = frozenset({Outcome.NEVER_CONFIRM, Outcome.PAY_AT_REVERSE, Outcome.REVERSE_RETRY})


def outcome_for(code: str) -> Outcome:
    """The sandbox outcome of a well-formed payment code, by its last four digits."""
    return ENDINGS.get(code[-4:], Outcome.PAID)


@dataclass(frozen=True, slots=True)
class Script:
    """A test's instructions for one payment code, overriding the last-four-digits table."""

    outcome: Outcome
    confirm_delay_s: float | None = None  # CONFIRM_LATER; None: the ledger's default
    reverse_retries: int = 2  # REVERSE_RETRY: answers asking for a repeat before success


class TradeState(enum.StrEnum):
    WAITING = "waiting"  # the customer is confirming on the phone
    PAID = "paid"
    FAILED = "failed"  # declined: no money moved
    REVERSED = "reversed"  # closed by a reverse before any money moved
    REFUNDED = "refunded"  # paid, then the reverse gave the money back
    CLOSED = "closed"  # left unpaid too long: the channel closed it (optional, see Ledger)


class PayAnswer(enum.StrEnum):
    PAID = "paid"
    WAITING = "waiting"
    DECLINED = "declined"  # see Trade.outcome for why
    ERROR_BUT_PAID = "error_but_paid"
    HANG_BUT_PAID = "hang_but_paid"
    ALREADY_PAID = "already_paid"  # same out_trade_no and data, already paid (ORDERPAID)
    ALREADY_REVERSED = "already_reversed"
    ALREADY_CLOSED = "already_closed"
    MISMATCH = "mismatch"  # same out_trade_no, other code or amount (OUT_TRADE_NO_USED)


class ReverseAnswer(enum.StrEnum):
    NOT_FOUND = "not_found"
    TOO_EARLY = "too_early"  # a protocol violation; answered "system error, call again"
    EXPIRED = "expired"  # past the 7-day window
    RETRY = "retry"  # the channel asks for the reverse to be repeated (recall=Y)
    CLOSED = "closed"  # no money had moved; the trade can no longer be paid
    REFUNDED = "refunded"  # the money went back


class RefundOutcome(enum.StrEnum):
    """What happens to a refund: by the last two digits of its amount in fen (DESIGN §9)."""

    REFUNDED = "refunded"  # any other ending: refunded at once
    PROCESSING = "processing"  # 01: processing for refund_delay_s, then refunded
    CHANGE = "change"  # 02: processing, then the bank refuses it (CHANGE / abnormal)
    BALANCE = "balance"  # 03: the merchant's balance is too low: refused, nothing moves
    ERROR_BUT_DONE = "error_but_done"  # 05: the answer is SYSTEMERROR / 20000, it happens
    HANG_BUT_DONE = "hang_but_done"  # 06: the answer hangs past the read timeout, it happens


#: The sandbox refunds: last two digits of the amount in fen -> outcome.
REFUND_ENDINGS: Mapping[str, RefundOutcome] = {
    "01": RefundOutcome.PROCESSING, "02": RefundOutcome.CHANGE, "03": RefundOutcome.BALANCE,
    "05": RefundOutcome.ERROR_BUT_DONE, "06": RefundOutcome.HANG_BUT_DONE,
}


def refund_outcome_for(amount: Fen) -> RefundOutcome:
    return REFUND_ENDINGS.get(f"{int(amount) % 100:02d}", RefundOutcome.REFUNDED)


class RefundStatus(enum.StrEnum):
    PROCESSING = "processing"
    SUCCESS = "success"
    CHANGE = "change"  # the bank refused the payout: the money is stuck, a person acts


class RefundReply(enum.StrEnum):
    """The ledger's answer to a refund request (each gateway words it its own way)."""

    ACCEPTED = "accepted"  # new, or the same request again: see the refund's status
    NO_TRADE = "no_trade"
    NOT_PAID = "not_paid"  # the trade was never paid, or was reversed
    TOO_MUCH = "too_much"  # more than is left of the payment
    MISMATCH = "mismatch"  # the same number with another amount
    BALANCE = "balance"  # the merchant's balance is too low: nothing moved
    ERROR_BUT_DONE = "error_but_done"
    HANG_BUT_DONE = "hang_but_done"


@dataclass(slots=True)
class RefundEntry:
    out_refund_no: str
    channel_refund_no: str
    amount: Fen
    outcome: RefundOutcome
    created_at: float
    status: RefundStatus
    done_at: float | None = None  # when processing ends (PROCESSING, CHANGE)
    succeeded_at: float | None = None
    requests: int = 1


@dataclass(frozen=True, slots=True)
class PayRequest:
    channel: str
    out_trade_no: str
    auth_code: str  # full code: digested and masked here, never stored
    amount: Fen
    channel_trade_no: str  # used only if this request creates the trade
    subject: str = ""
    device_info: str = ""
    attach: str = ""


@dataclass(frozen=True, slots=True)
class Event:
    at: float
    kind: str  # created, paid, declined, reversed, refunded, reverse_retry, ...
    detail: str = ""


@dataclass(slots=True)
class Trade:
    channel: str
    out_trade_no: str
    channel_trade_no: str
    auth_code: str  # masked: first 4 + last 4
    code_digest: str
    amount: Fen
    outcome: Outcome
    created_at: float
    state: TradeState
    subject: str = ""
    device_info: str = ""
    attach: str = ""
    confirm_at: float | None = None
    paid_at: float | None = None
    closed_at: float | None = None  # reversed or refunded
    reverse_retries_left: int = 0
    events: list[Event] = field(default_factory=list)
    refunds: list[RefundEntry] = field(default_factory=list)

    @property
    def refunded_amount(self) -> Fen:
        """What refunds took back (processing ones included: the money is on its way)."""
        return Fen(sum(int(r.amount) for r in self.refunds if r.status is not RefundStatus.CHANGE))

    @property
    def buyer_ref(self) -> str:
        """A stable pseudonym of the payer (the same code gives the same one)."""
        return self.code_digest[:24]


@dataclass(frozen=True, slots=True)
class Violation:
    at: float
    channel: str
    out_trade_no: str
    action: str  # pay, query, reverse, bill
    rule: str  # reverse_too_early, out_trade_no_reused, pay_after_reverse, request_rejected
    detail: str = ""


Key = tuple[str, str]  # (channel, out_trade_no)


class BillEditKind(enum.StrEnum):
    """A difference a test (or a person trying posd) puts into a day's bill (DESIGN §10)."""

    MISSING = "missing"  # the bill leaves out the trade's rows (the ledger keeps the trade)
    AMOUNT = "amount"  # the bill shows the trade's payment with another amount


@dataclass(frozen=True, slots=True)
class BillEdit:
    channel: str
    out_trade_no: str
    kind: BillEditKind
    amount: Fen | None = None  # AMOUNT: what the bill shows


class Ledger:
    """Every trade the simulator knows, plus call counters and violations. Not thread-safe."""

    def __init__(
        self,
        *,
        secret: bytes,
        confirm_delay_s: float = 8.0,
        close_unpaid_after_s: float | None = None,
        refund_delay_s: float = 8.0,
    ) -> None:
        """``close_unpaid_after_s``: close trades still waiting this long after the pay, as
        WeChat does after 45 s (channels.md §1.7). None (the default): they wait until reversed.
        """
        self._secret = secret
        self._confirm_delay_s = confirm_delay_s
        self._close_after_s = close_unpaid_after_s
        self._refund_delay_s = refund_delay_s
        self._refund_scripts: dict[Key, RefundOutcome] = {}
        self._refund_numbers = 0
        self._trades: dict[Key, Trade] = {}
        self._scripts: dict[str, Script] = {}
        self._calls: Counter[tuple[str, str, str]] = Counter()
        self._violations: list[Violation] = []
        self._bill_edits: dict[Key, BillEdit] = {}

    # --- kept on disk (posd demo: a resumed sale must find its trade after a restart) ------

    def to_json(self) -> dict[str, object]:
        """Trades, call counters and violations (scripts are not kept) as JSON-able data."""
        return {
            "version": 1, "secret": self._secret.hex(),
            "trades": [asdict(t) for t in self._trades.values()],
            "calls": [[*key, n] for key, n in self._calls.items()],
            "violations": [asdict(v) for v in self._violations],
            "bill_edits": [asdict(e) for e in self._bill_edits.values()],
        }

    def load_json(self, data: Mapping[str, object]) -> None:
        """Replace what this ledger holds with what :meth:`to_json` wrote. ValueError if the
        data is not such a document (the caller starts afresh and says so)."""
        try:
            if data.get("version") != 1:
                raise ValueError(f"unknown ledger version {data.get('version')!r}")
            trades = {}
            for raw in data["trades"]:  # type: ignore[attr-defined]
                row = dict(raw)
                row["events"] = [Event(**e) for e in row["events"]]
                row["refunds"] = [
                    RefundEntry(**(r | {"amount": Fen(r["amount"]),
                                        "outcome": RefundOutcome(r["outcome"]),
                                        "status": RefundStatus(r["status"])}))
                    for r in row.get("refunds", [])]
                row["outcome"] = Outcome(row["outcome"])
                row["state"] = TradeState(row["state"])
                row["amount"] = Fen(row["amount"])
                trade = Trade(**row)
                trades[(trade.channel, trade.out_trade_no)] = trade
            calls = Counter({(c, o, e): int(n) for c, o, e, n in data["calls"]})  # type: ignore[attr-defined]
            violations = [Violation(**v) for v in data["violations"]]  # type: ignore[attr-defined]
            edits = [BillEdit(e["channel"], e["out_trade_no"], BillEditKind(e["kind"]),
                              None if e.get("amount") is None else Fen(e["amount"]))
                     for e in data.get("bill_edits", [])]  # type: ignore[attr-defined]
            secret = bytes.fromhex(str(data["secret"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"not a simulator ledger: {err}") from err
        self._secret, self._trades, self._calls = secret, trades, calls
        self._violations = violations
        self._bill_edits = {(e.channel, e.out_trade_no): e for e in edits}

    def digest(self, code: str) -> str:
        return hmac.new(self._secret, code.encode(), hashlib.sha256).hexdigest()

    def script(self, code: str, script: Script) -> None:
        """Make ``code`` behave as ``script`` says in every trade created from now on."""
        self._scripts[self.digest(code)] = script

    def reset(self) -> None:
        """Forget trades, scripts, counters and violations."""
        self._trades.clear()
        self._scripts.clear()
        self._refund_scripts.clear()
        self._calls.clear()
        self._violations.clear()
        self._bill_edits.clear()

    # --- the bills (DESIGN §10): what a test puts into them -----------------------------------

    def edit_bill(self, edit: BillEdit) -> None:
        """From now on, the bills show ``edit`` for its trade (the trade itself is unchanged)."""
        self._bill_edits[(edit.channel, edit.out_trade_no)] = edit

    def bill_edits(self, channel: str) -> dict[str, BillEdit]:
        return {no: e for (ch, no), e in self._bill_edits.items() if ch == channel}

    def add_paid_trade(self, channel: str, out_trade_no: str, amount: Fen,
                       channel_trade_no: str, at: float) -> Trade:
        """A trade paid at ``at`` that no client asked for here: the channel took money under
        ``out_trade_no`` and posd never heard the answer (a bill's ``channel_only`` row). Its
        queries answer "paid", as the real channel's would."""
        key = (channel, out_trade_no)
        if key in self._trades:
            raise ValueError(f"{channel} already has a trade {out_trade_no}")
        trade = Trade(channel, out_trade_no, channel_trade_no, "", self.digest(out_trade_no),
                      amount, Outcome.PAID, at, TradeState.WAITING, subject="sim: channel only")
        trade.events.append(Event(at, "created", "channel_only"))
        _mark_paid(trade, at)
        self._trades[key] = trade
        return trade

    # --- what clients do ------------------------------------------------------------------

    def count_call(self, channel: str, out_trade_no: str, endpoint: str) -> None:
        self._calls[(channel, out_trade_no, endpoint)] += 1

    def violate(self, violation: Violation) -> None:
        self._violations.append(violation)
        trade = self._trades.get((violation.channel, violation.out_trade_no))
        if trade is not None:
            trade.events.append(Event(violation.at, "violation", violation.rule))

    def pay(self, request: PayRequest, now: float) -> tuple[PayAnswer, Trade]:
        """Create the trade (first request) or answer a repeated pay request for it."""
        key = (request.channel, request.out_trade_no)
        if (trade := self._trades.get(key)) is None:
            trade = self._create(request, now)
            self._trades[key] = trade
            return _first_answer(trade), trade
        self._settle(trade, now)
        return self._repeat_answer(trade, request, now), trade

    def find(
        self, channel: str, now: float, *, out_trade_no: str = "", channel_trade_no: str = ""
    ) -> Trade | None:
        """The trade, settled at ``now``; ``channel_trade_no`` wins when both are given."""
        if channel_trade_no:
            found = (t for t in self._trades.values() if t.channel_trade_no == channel_trade_no)
            trade = next((t for t in found if t.channel == channel), None)
        else:
            trade = self._trades.get((channel, out_trade_no))
        if trade is not None:
            self._settle(trade, now)
        return trade

    def reverse(
        self, trade: Trade | None, now: float, *, min_delay_s: float = 0.0
    ) -> ReverseAnswer:
        """Reverse ``trade`` (found with :meth:`find`): close it, or refund it if it was paid."""
        if trade is None:
            return ReverseAnswer.NOT_FOUND
        if now - trade.created_at < min_delay_s - TRANSIT_ALLOWANCE_S:
            detail = f"{now - trade.created_at:.3f} s after pay, minimum {min_delay_s:g} s"
            self._violate(trade, now, "reverse", "reverse_too_early", detail)
            return ReverseAnswer.TOO_EARLY
        if now - trade.created_at > REVERSE_MAX_AGE_S:
            return ReverseAnswer.EXPIRED
        return _reverse(trade, now)

    def script_refund(self, channel: str, out_trade_no: str, outcome: RefundOutcome) -> None:
        """Make the next new refund of this trade behave as ``outcome``, whatever its amount."""
        self._refund_scripts[(channel, out_trade_no)] = outcome

    def refund(self, trade: Trade | None, out_refund_no: str, amount: Fen,
               now: float) -> tuple[RefundReply, RefundEntry | None]:
        """A refund request for ``trade`` (found with :meth:`find`). The same number is the
        same refund: repeated, it is answered as it stands, and never refunds twice."""
        if trade is None:
            return RefundReply.NO_TRADE, None
        if (entry := self._refund_of(trade, out_refund_no)) is not None:
            self._settle_refund(entry, now)
            entry.requests += 1
            trade.events.append(Event(now, "refund_repeated", out_refund_no))
            if entry.amount != amount:
                self._violate(trade, now, "refund", "out_refund_no_reused", "another amount")
                return RefundReply.MISMATCH, entry
            return RefundReply.ACCEPTED, entry
        if trade.state is not TradeState.PAID:
            return RefundReply.NOT_PAID, None
        if int(trade.refunded_amount) + int(amount) > int(trade.amount):
            return RefundReply.TOO_MUCH, None
        outcome = self._refund_scripts.pop((trade.channel, trade.out_trade_no), None) \
            or refund_outcome_for(amount)
        if outcome is RefundOutcome.BALANCE:
            trade.events.append(Event(now, "refund_refused", "merchant balance"))
            return RefundReply.BALANCE, None
        self._refund_numbers += 1
        entry = RefundEntry(out_refund_no, f"{trade.channel_trade_no[:20]}R{self._refund_numbers:05d}",
                            amount, outcome, now, RefundStatus.SUCCESS)
        if outcome in (RefundOutcome.PROCESSING, RefundOutcome.CHANGE):
            entry.status, entry.done_at = RefundStatus.PROCESSING, now + self._refund_delay_s
        else:
            entry.succeeded_at = now
        trade.refunds.append(entry)
        trade.events.append(Event(now, "refund", f"{out_refund_no} {int(amount)} {outcome.value}"))
        reply = {RefundOutcome.ERROR_BUT_DONE: RefundReply.ERROR_BUT_DONE,
                 RefundOutcome.HANG_BUT_DONE: RefundReply.HANG_BUT_DONE}.get(outcome)
        return reply or RefundReply.ACCEPTED, entry

    def find_refund(self, trade: Trade | None, out_refund_no: str,
                    now: float) -> RefundEntry | None:
        """The refund under ``out_refund_no``, settled at ``now``; None when there is none."""
        if trade is None or (entry := self._refund_of(trade, out_refund_no)) is None:
            return None
        self._settle_refund(entry, now)
        return entry

    # --- what tests read ------------------------------------------------------------------

    def trades(self, now: float) -> list[Trade]:
        for trade in self._trades.values():
            self._settle(trade, now)
        return sorted(self._trades.values(), key=lambda t: (t.created_at, t.out_trade_no))

    def calls(self, channel: str, out_trade_no: str) -> dict[str, int]:
        return {
            endpoint: n
            for (ch, otn, endpoint), n in sorted(self._calls.items())
            if (ch, otn) == (channel, out_trade_no)
        }

    def all_calls(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{channel: {out_trade_no: {endpoint: count}}}``, also for trades never created."""
        result: dict[str, dict[str, dict[str, int]]] = {}
        for (channel, otn, endpoint), n in sorted(self._calls.items()):
            result.setdefault(channel, {}).setdefault(otn, {})[endpoint] = n
        return result

    def violations(self) -> list[Violation]:
        return list(self._violations)

    # --- internals ------------------------------------------------------------------------

    def _violate(self, trade: Trade, now: float, action: str, rule: str, detail: str) -> None:
        self.violate(Violation(now, trade.channel, trade.out_trade_no, action, rule, detail))

    def _create(self, request: PayRequest, now: float) -> Trade:
        digest = self.digest(request.auth_code)
        script = self._scripts.get(digest) or Script(outcome_for(request.auth_code))
        trade = Trade(
            channel=request.channel,
            out_trade_no=request.out_trade_no,
            channel_trade_no=request.channel_trade_no,
            auth_code=mask(request.auth_code),
            code_digest=digest,
            amount=request.amount,
            outcome=script.outcome,
            created_at=now,
            state=TradeState.WAITING,
            subject=request.subject,
            device_info=request.device_info,
            attach=request.attach,
        )
        trade.events.append(Event(now, "created", script.outcome.value))
        if script.outcome in _DECLINES:
            trade.state = TradeState.FAILED
            trade.events.append(Event(now, "declined", script.outcome.value))
        elif script.outcome is Outcome.CONFIRM_LATER:
            delay = script.confirm_delay_s
            trade.confirm_at = now + (self._confirm_delay_s if delay is None else delay)
        elif script.outcome is Outcome.REVERSE_RETRY:
            trade.reverse_retries_left = script.reverse_retries
        elif script.outcome not in _NEVER:
            _mark_paid(trade, now)
        return trade

    def _repeat_answer(self, trade: Trade, request: PayRequest, now: float) -> PayAnswer:
        if trade.code_digest != self.digest(request.auth_code) or trade.amount != request.amount:
            self._violate(trade, now, "pay", "out_trade_no_reused", "another code or amount")
            return PayAnswer.MISMATCH
        trade.events.append(Event(now, "pay_repeated"))
        if trade.state in (TradeState.REVERSED, TradeState.REFUNDED):
            self._violate(trade, now, "pay", "pay_after_reverse", "pay sent after the reverse")
            return PayAnswer.ALREADY_REVERSED
        return {
            TradeState.WAITING: PayAnswer.WAITING,
            TradeState.PAID: PayAnswer.ALREADY_PAID,
            TradeState.FAILED: PayAnswer.DECLINED,
            TradeState.CLOSED: PayAnswer.ALREADY_CLOSED,
        }[trade.state]

    @staticmethod
    def _refund_of(trade: Trade, out_refund_no: str) -> RefundEntry | None:
        return next((r for r in trade.refunds if r.out_refund_no == out_refund_no), None)

    @staticmethod
    def _settle_refund(entry: RefundEntry, now: float) -> None:
        """A processing refund ends at ``done_at``: paid out, or refused by the bank."""
        if entry.status is RefundStatus.PROCESSING and entry.done_at is not None \
                and entry.done_at <= now:
            if entry.outcome is RefundOutcome.CHANGE:
                entry.status = RefundStatus.CHANGE
            else:
                entry.status, entry.succeeded_at = RefundStatus.SUCCESS, entry.done_at

    def _settle(self, trade: Trade, now: float) -> None:
        """Let the customer confirm if their moment has come, or the channel close the trade."""
        if trade.state is not TradeState.WAITING:
            return
        close_at = None if self._close_after_s is None else trade.created_at + self._close_after_s
        confirm_at = trade.confirm_at
        if (
            confirm_at is not None
            and confirm_at <= now
            and (close_at is None or confirm_at < close_at)
        ):
            _mark_paid(trade, confirm_at)
        elif close_at is not None and close_at <= now:
            trade.state, trade.closed_at = TradeState.CLOSED, close_at
            trade.events.append(Event(close_at, "closed"))


def _mark_paid(trade: Trade, at: float) -> None:
    trade.state = TradeState.PAID
    trade.paid_at = at
    trade.events.append(Event(at, "paid"))


def _first_answer(trade: Trade) -> PayAnswer:
    match trade.outcome:
        case Outcome.ERROR_BUT_PAID:
            return PayAnswer.ERROR_BUT_PAID
        case Outcome.HANG_BUT_PAID:
            return PayAnswer.HANG_BUT_PAID
        case Outcome.INSUFFICIENT_BALANCE | Outcome.CODE_EXPIRED:
            return PayAnswer.DECLINED
        case Outcome.PAID:
            return PayAnswer.PAID
        case (
            Outcome.CONFIRM_LATER
            | Outcome.NEVER_CONFIRM
            | Outcome.PAY_AT_REVERSE
            | Outcome.REVERSE_RETRY
        ):
            return PayAnswer.WAITING
    assert_never(trade.outcome)


def _reverse(trade: Trade, now: float) -> ReverseAnswer:
    """Apply a reverse that arrived in time to a settled trade."""
    if trade.state in (TradeState.REVERSED, TradeState.CLOSED):
        return ReverseAnswer.CLOSED
    if trade.state is TradeState.REFUNDED:
        return ReverseAnswer.REFUNDED
    if trade.reverse_retries_left > 0:
        trade.reverse_retries_left -= 1
        trade.events.append(Event(now, "reverse_retry"))
        return ReverseAnswer.RETRY
    if trade.state is TradeState.WAITING and trade.outcome is Outcome.PAY_AT_REVERSE:
        _mark_paid(trade, now)  # the customer confirms just as the reverse arrives
    trade.closed_at = now
    if trade.state is TradeState.PAID:
        trade.state = TradeState.REFUNDED
        trade.events.append(Event(now, "refunded"))
        return ReverseAnswer.REFUNDED
    trade.state = TradeState.REVERSED
    trade.events.append(Event(now, "reversed"))
    return ReverseAnswer.CLOSED
