# SPDX-License-Identifier: MIT
"""The shell that drives sales: store -> channel -> store -> receipt.

Each non-final sale is driven by one worker thread (requests blocks), which performs the
sale's ``next_action`` at ``next_at`` (a query half a measured round trip earlier, so that it
reaches the channel when due: ``machine.departure``), applies the answer with the pure
``posd.core.sale`` functions and commits the result before doing anything else. The full
payment code lives only in that worker's memory; the store sees it masked. A cashier cancel
or a shutdown wakes the worker, which re-reads the sale before acting.

Start-up recovery: :meth:`Engine.start` resumes every non-final sale (query; past the
deadline, reverse) before the caller opens any input. A watchdog job (APScheduler) restarts
the worker of any non-final sale that has none, so no sale is left without work scheduled.

Refunds (``posd.core.refund``) are driven the same way, one worker each: written ahead,
performed at ``next_at``, the answer applied by the core and committed, resumed after a
restart and watched by the same job. A refund's number makes a repeated request the same
refund, so a refund whose request may have been sent is simply sent again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from apscheduler.schedulers.background import BackgroundScheduler

from posd import memory
from posd.core import sale as machine
from posd.channels import Channel, registry
from posd.core.codes import DoubleReadFilter, mask, route
from posd.config import Config
from posd.core import refund as refunds
from posd.core.errors import CodeError, ConflictError, InputError, StoreError, UnavailableError
from posd.core.money import check_fen
from posd.core.refund import Refund, RefundAnswer, RefundPolicy
from posd.core.sale import Action, ChannelResult, Policy, Sale, State
from posd.store import OPEN_STATES, Store

log = logging.getLogger(__name__)

Listener = Callable[[Sale], None]
#: a sale's or a refund's worker thread, and the event that wakes it
_Worker = tuple[threading.Thread, threading.Event]
#: what a long-poll waits on: a sale or a refund
_Changing = TypeVar("_Changing", Sale, Refund)

#: A sale still reversing this long after its pay call makes /v1/health say degraded.
REVERSING_LONG_S = 300.0
#: Query round trips kept per channel for the lead (machine.query_lead: their median), and
#: the longest one believed (a longer one is the clock stepping, or a stalled answer).
ROUND_TRIPS_KEPT = 9
ROUND_TRIP_MAX_S = 10.0


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    """What became of one scanned code."""

    accepted: bool
    reason: str
    sale: Sale | None = None
    code_masked: str = ""


def policies_for(config: Config) -> dict[str, Policy]:
    """Per-channel timing: each registered channel's policy, with config's overrides."""
    found = {}
    for name in registry.names():
        policy = registry.get(name).policy
        policy = replace(policy, deadline_s=config.payment.deadline_s)
        if config.payment.query_intervals_s:
            policy = replace(policy, query_intervals_s=config.payment.query_intervals_s)
        found[name] = policy
    return found


def refund_policies_for(config: Config) -> dict[str, RefundPolicy]:
    """Per-channel refund timing and limits: each registered channel's policy, with the
    merchant's contract window where its section sets one (``refund_window_days``)."""
    found = {}
    for name in registry.names():
        policy = registry.get(name).refund_policy
        section = config.channels.get(name)
        if section is not None and (window := section.refund_window_s()) is not None:
            policy = replace(policy, window_s=window)
        found[name] = policy
    return found


def describe(result: ChannelResult | RefundAnswer) -> str:
    """A short, code-free description of a channel answer for the event history."""
    match result:
        case machine.Paid(channel_trade_no=no):
            return f"paid {no}"
        case machine.Declined(code=code) | machine.Failed(code=code) | machine.Refused(code=code):
            return f"{type(result).__name__.lower()} {code}"
        case machine.Unknown(detail=detail, may_have_arrived=arrived):
            return f"unknown ({detail}){'' if arrived else ' never arrived'}"
        case machine.Pending(detail=d) | machine.NotFound(detail=d) | machine.Closed(detail=d):
            return f"{type(result).__name__.lower()} {d}".strip()
        case refunds.Refunded(channel_refund_no=no) | refunds.Accepted(channel_refund_no=no):
            return f"{type(result).__name__.lower()} {no}".strip()
        case refunds.RefundRefused(code=code) | refunds.Abnormal(code=code):
            return f"{type(result).__name__.lower()} {code}"
        case refunds.Processing(detail=d) | refunds.NoRefund(detail=d):
            return f"{type(result).__name__.lower()} {d}".strip()
        case _:
            return repr(result)


class Engine:
    """Creates sales, takes scans, and drives every sale to a final state."""

    def __init__(
        self,
        config: Config,
        store: Store,
        channels: Mapping[str, Channel],
        *,
        clock: Callable[[], float] = time.time,
        policies: Mapping[str, Policy] | None = None,
        refund_policies: Mapping[str, RefundPolicy] | None = None,
    ) -> None:
        self._config = config
        self._store = store
        self._channels = dict(channels)
        self._clock = clock
        self._policies = dict(policies or policies_for(config))
        self._refund_policies = dict(refund_policies or refund_policies_for(config))
        self._refund_workers: dict[int, _Worker] = {}
        self._refund_listeners: list[Callable[[Refund], None]] = []
        self._cond = threading.Condition(threading.RLock())
        self._workers: dict[int, _Worker] = {}
        self._stopping = threading.Event()
        self.fatal = threading.Event()
        self.fatal_reason = ""
        self._fatal_listeners: list[Callable[[], None]] = []
        self._listeners: list[Listener] = []
        self._health_probes: dict[str, Callable[[], dict[str, Any]]] = {}
        self._double_reads = DoubleReadFilter(config.payment.debounce_s)
        self._labels = registry.english_labels()
        #: classified channel -> the enabled channel that takes its codes (v3 takes v2's)
        self._takers = registry.takers(self._channels)
        self._last_scan: dict[str, Any] | None = None
        #: per channel, its last few query round trips (the engine's clock): queries leave
        #: half of one early (machine.query_lead)
        self._round_trips: dict[str, deque[float]] = {}
        self._round_trips_lock = threading.Lock()
        self._scheduler: BackgroundScheduler | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def add_listener(self, listener: Listener, *, first: bool = False) -> None:
        """Call ``listener(sale)`` after every committed change (from a worker thread);
        ``first``: before the listeners added so far."""
        if first:
            self._listeners.insert(0, listener)
        else:
            self._listeners.append(listener)

    def add_refund_listener(self, listener: Callable[[Refund], None]) -> None:
        """Call ``listener(refund)`` after every committed change of a refund."""
        self._refund_listeners.append(listener)

    def add_health_probe(self, name: str, probe: Callable[[], dict[str, Any]]) -> None:
        """Add ``name: probe()`` to :meth:`health` (scanner, printer, HQ sync, ...).

        A probe returns a JSON-able dict; ``{"degraded": "why"}`` marks posd degraded.
        """
        self._health_probes[name] = probe

    def start(self) -> int:
        """Resume every non-final sale, then start housekeeping. Returns how many resumed."""
        resumed = 0
        now = self._clock()
        for sale in self._store.unfinished():
            if sale.state is State.AWAITING_CODE:
                continue
            again = machine.resume(sale, now)
            if again != sale:
                again = self._store.save(again, None, "resumed after restart")
            self._spawn(again.id, None)
            resumed += 1
        for refund in self._store.find_refunds(open_only=True):
            if not refund.final:
                self._spawn_refund(refund.id)
                resumed += 1
        if resumed:
            log.info("resumed %d unfinished sale(s) and refund(s)", resumed)
        self._scheduler = BackgroundScheduler(daemon=True)
        self._scheduler.add_job(self._housekeeping, "interval", seconds=30, id="housekeeping",
                                coalesce=True, max_instances=1)
        self._scheduler.start()
        return resumed

    def stop(self, timeout: float = 30.0) -> None:
        """Stop taking sales; let in-flight requests finish and their answers be committed."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()  # long-polls return now
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        with self._cond:
            workers = list(self._workers.values()) + list(self._refund_workers.values())
        for _, wake in workers:
            wake.set()
        deadline = time.monotonic() + timeout
        for thread, _ in workers:
            thread.join(max(0.0, deadline - time.monotonic()))
        for channel in self._channels.values():
            channel.close()

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` began: long-polls answer at once, new sales are refused."""
        return self._stopping.is_set()

    @property
    def enabled_channels(self) -> tuple[str, ...]:
        return tuple(self._channels)

    # --- the register's side -------------------------------------------------------------

    def create_sale(
        self,
        amount: int,
        *,
        order_ref: str | None = None,
        auth_code: str | None = None,
        subject: str = "",
        idempotency_key: str | None = None,
    ) -> tuple[Sale, bool]:
        """Create a sale (and pay at once when ``auth_code`` is given). Returns (sale, created).

        Raises InputError for a bad amount or code (nothing is recorded), ConflictError when
        the order already has a paid or unresolved sale, or when the sale would wait for a
        scan while another one already waits (DESIGN §2 rule 7: a scan pays only the sale the
        cashier means).
        """
        self._refuse_if_stopping()
        fen = check_fen(amount)
        channel = None
        if auth_code is not None:
            channel = route(auth_code, self._takers, self._config.codes.prefix_rules,
                            self._labels)
        subject = subject or self._config.store.name
        if order_ref is not None and not 0 < len(order_ref) <= 64:
            raise InputError("order_ref must be 1 to 64 characters")
        now = self._clock()

        def make(seq: int) -> Sale:
            out_trade_no = machine.make_out_trade_no(
                self._config.store.id, self._config.store.terminal_id, now, seq)
            sale = machine.new_sale(out_trade_no, fen, now, order_ref=order_ref, subject=subject)
            if channel is None:
                return sale
            assert auth_code is not None  # channel is set only when a code was given
            return machine.start_pay(sale, channel, mask(auth_code), now, self._policies[channel])

        with self._cond:
            sale, created = self._store.create_sale(
                make, order_ref=order_ref, idempotency_key=idempotency_key,
                awaiting=channel is None)
            self._cond.notify_all()
        if created:
            log.info("sale %d created: %s fen, order %s, %s", sale.id, sale.amount, order_ref,
                     sale.state)
            if sale.state is State.PAYING:
                self._spawn(sale.id, auth_code)
            self._notify(sale)
        return sale, created

    def cancel(self, sale_id: int) -> Sale:
        """Cashier cancel: awaiting_code -> cancelled; in flight -> reversing; else unchanged."""
        with self._cond:
            sale = self._store.get(sale_id)
            policy = self._policies.get(sale.channel or "", Policy())
            new = machine.cancel(sale, self._clock(), policy)
            if new != sale:
                self._store.save(new, None, "cancelled by cashier")
                self._cond.notify_all()
            worker = self._workers.get(sale_id)
        if worker is not None:
            worker[1].set()
        if new != sale:
            self._notify(new)
        return new

    def expire(self, sale_id: int) -> Sale:
        """A sale nobody scanned a code for within ``payment.awaiting_code_s``: cancelled."""
        with self._cond:
            sale = self._store.get(sale_id)
            if sale.state is not State.AWAITING_CODE:
                return sale
            minutes = self._config.payment.awaiting_code_s / 60
            new = machine.expire(sale, self._clock(), f"{minutes:g} min")
            self._store.save(new, None, "no code scanned in time")
            self._cond.notify_all()
        log.info("sale %d cancelled: no payment code within %g min", sale_id, minutes)
        self._notify(new)
        return new

    def get(self, sale_id: int) -> Sale:
        return self._store.get(sale_id)

    def wait_for_change(self, sale_id: int, since: float, timeout: float) -> Sale:
        """Long-poll: the sale once its ``updated_at`` is later than ``since``, or at timeout."""
        return self._await(lambda: self._store.get(sale_id), since, timeout)

    def _await(self, read: Callable[[], _Changing], since: float, timeout: float) -> _Changing:
        """``read()`` once what it reads was updated after ``since``, at timeout, or at stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                found = read()
                left = deadline - time.monotonic()
                if found.updated_at > since or left <= 0 or self._stopping.is_set():
                    return found
                self._cond.wait(left)

    def list_sales(self, **filters: Any) -> list[Sale]:
        return self._store.find(**filters)

    # --- refunds and resolving (the manager's side) ---------------------------------------

    def refund(self, sale_id: int, amount: int | None, reason: str, *,
               idempotency_key: str | None = None) -> tuple[Refund, bool]:
        """Refund ``amount`` fen of a paid sale (None: all that is left). Returns (refund,
        created). ConflictError / InputError with a sentence when it may not be refunded;
        nothing is written or sent then."""
        self._refuse_if_stopping()
        if amount is not None:
            amount = int(check_fen(amount))
        now = self._clock()

        def make(sale: Sale, done: list[Refund], seq: int) -> Refund | refunds.Refusal:
            if sale.channel not in self._channels:
                return refunds.Refusal("conflict", f"sale {sale.id} was paid with "
                                       f"{sale.channel}, which this till no longer has")
            policy = self._refund_policies.get(sale.channel or "", refunds.RefundPolicy())
            fen = refunds.check_refund(sale, done, amount, reason, now, policy)
            if isinstance(fen, refunds.Refusal):
                return fen
            number = refunds.make_out_refund_no(
                self._config.store.id, self._config.store.terminal_id, now, seq)
            return refunds.new_refund(sale, fen, reason, number, now)

        with self._cond:
            refund, created = self._store.create_refund(sale_id, make,
                                                        idempotency_key=idempotency_key)
            self._cond.notify_all()
        if created:
            log.info("refund %d of sale %d created: %s fen, %s", refund.id, sale_id,
                     refund.amount, refund.out_refund_no)
            self._spawn_refund(refund.id)
            self._notify_refund(refund)
        return refund, created

    def refunded_amounts(self, sale_ids: list[int]) -> dict[int, int]:
        """``sale id -> fen refunded`` for the API's sales (only sales that have any)."""
        return self._store.refunded_amounts(sale_ids)

    def get_refund(self, refund_id: int) -> Refund:
        return self._store.get_refund(refund_id)

    def list_refunds(self, **filters: Any) -> list[Refund]:
        return self._store.find_refunds(**filters)

    def wait_for_refund(self, refund_id: int, since: float, timeout: float) -> Refund:
        """Long-poll: the refund once its ``updated_at`` is later than ``since``, or at timeout."""
        return self._await(lambda: self._store.get_refund(refund_id), since, timeout)

    def resolve(self, sale_id: int, as_: str, note: str) -> Sale:
        """A person records how a needs_attention sale ended (paid or reversed)."""
        with self._cond:
            sale = self._store.get(sale_id)
            if (why := refunds.resolve_refusal(sale, as_, note)) is not None:
                raise (ConflictError if why.kind == "conflict" else InputError)(why.reason)
            new = machine.resolve(sale, State(as_), note, self._clock())
            self._store.save(new, None, f"resolved by a manager as {as_}: {note.strip()}"[:500])
            self._cond.notify_all()
        log.info("sale %d resolved by a manager as %s", sale_id, as_)
        self._notify(new)
        return new

    def _spawn_refund(self, refund_id: int) -> None:
        self._start_worker(self._refund_workers, refund_id, "refund", self._drive_refund)

    def _drive_refund(self, refund_id: int, wake: threading.Event) -> None:
        while not self._stopping.is_set():
            refund = self._store.get_refund(refund_id)
            if refund.final or refund.next_action is None or refund.next_at is None:
                return
            delay = refund.next_at - self._clock()
            if delay > 0:
                wake.wait(delay)
                wake.clear()
                continue
            answer = self._perform_refund(refund)
            with self._cond:
                current = self._store.get_refund(refund_id)
                policy = self._refund_policies.get(current.channel, refunds.RefundPolicy())
                new = refunds.on_result(current, refund.next_action, answer, self._clock(),
                                        policy)
                self._store.save_refund(new, refund.next_action, describe(answer))
                self._cond.notify_all()
            if new.state is not current.state:
                log.info("refund %d %s: %s -> %s (%s)", refund_id, new.out_refund_no,
                         current.state, new.state, describe(answer))
            self._notify_refund(new)

    def _perform_refund(self, refund: Refund) -> RefundAnswer:
        channel = self._channels.get(refund.channel)
        if channel is None:
            return machine.Unknown(f"channel {refund.channel} is not configured")
        try:
            if refund.next_action is refunds.RefundAction.REFUND:
                sale = self._store.get(refund.sale_id)
                return channel.refund(refund.out_trade_no, refund.out_refund_no, sale.amount,
                                      refund.amount, refund.reason)
            return channel.refund_query(refund.out_trade_no, refund.out_refund_no)
        except StoreError:
            raise
        except Exception as err:  # noqa: BLE001 - a worker's top: an adapter bug must not strand a refund
            log.exception("refund %d: %s raised; treating the outcome as unknown", refund.id,
                          refund.next_action)
            return machine.Unknown(f"internal error: {type(err).__name__}")

    def _notify_refund(self, refund: Refund) -> None:
        for listener in self._refund_listeners:
            try:
                listener(refund)
            except Exception:  # noqa: BLE001 - a printer or HQ must never stop a refund
                log.exception("refund listener failed for refund %d", refund.id)

    # --- the scanner's side --------------------------------------------------------------

    def scan(self, code: str, read_at: float, source: str = "scanner") -> ScanOutcome:
        """One code from a scanner (``read_at`` is time.monotonic() of the last keystroke).

        Refused (and logged, never queued): a double read, a stale code, a code that is not a
        payment code or whose channel is not enabled, a scan with no sale awaiting a code, or
        a scan while another sale is in flight.
        """
        masked = mask(code)
        try:
            outcome = self._take_scan(code, read_at)
        except StoreError as err:
            # The database is unusable: refuse the scan and stop the daemon (systemd restarts
            # it and recovery resumes from what was committed), as a sale worker does.
            self._fail(err)
            outcome = ScanOutcome(False, "posd cannot record sales right now; scan again shortly")
        outcome = replace(outcome, code_masked=masked)
        self._last_scan = {"code": masked, "source": source, "accepted": outcome.accepted,
                           "reason": outcome.reason, "at": self._clock()}
        if outcome.accepted:
            log.info("scan %s from %s: %s", masked, source, outcome.reason)
        else:
            log.warning("scan %s from %s refused: %s", masked, source, outcome.reason)
        return outcome

    def _take_scan(self, code: str, read_at: float) -> ScanOutcome:
        if self._double_reads.is_repeat(code, read_at):
            return ScanOutcome(False, "the same code was read twice; the second read is ignored")
        if time.monotonic() - read_at > self._config.payment.max_code_age_s:
            return ScanOutcome(False, "the code was read too long ago; scan it again")
        try:
            channel = route(code, self._takers, self._config.codes.prefix_rules, self._labels)
        except CodeError as err:
            return ScanOutcome(False, str(err))
        if self._stopping.is_set():
            return ScanOutcome(False, "posd is shutting down; no new payments")
        with self._cond:
            target = machine.scan_target(
                self._store.find(states=(State.AWAITING_CODE,)),
                paying_now=bool(self._store.find(states=tuple(machine.PAYING_NOW))))
            if isinstance(target, str):
                return ScanOutcome(False, target)
            now = self._clock()
            sale = machine.start_pay(target, channel, mask(code), now, self._policies[channel])
            sale = self._store.save(sale, None, f"code scanned ({self._labels.get(channel, channel)})")
            self._cond.notify_all()
        self._spawn(sale.id, code)
        self._notify(sale)
        return ScanOutcome(True, f"paying sale {sale.id} with {self._labels.get(channel, channel)}", sale)

    # --- workers -------------------------------------------------------------------------

    def _spawn(self, sale_id: int, auth_code: str | None) -> None:
        self._start_worker(self._workers, sale_id, "sale",
                           lambda key, wake: self._drive(key, auth_code, wake))

    def _start_worker(self, workers: dict[int, _Worker], key: int, what: str,
                      drive: Callable[[int, threading.Event], None]) -> None:
        """One worker thread per sale or refund: wake the one running, or start one."""
        with self._cond:
            existing = workers.get(key)
            if existing is not None and existing[0].is_alive():
                existing[1].set()
                return
            wake = threading.Event()
            thread = threading.Thread(target=self._work, args=(workers, key, what, drive, wake),
                                      name=f"{what}-{key}", daemon=True)
            workers[key] = (thread, wake)
        thread.start()

    def _work(self, workers: dict[int, _Worker], key: int, what: str,
              drive: Callable[[int, threading.Event], None], wake: threading.Event) -> None:
        try:
            drive(key, wake)
        except StoreError as err:
            # Cannot commit: stop. The daemon exits non-zero, systemd restarts it, and
            # start-up recovery resumes the sale or refund from what was committed.
            log.critical("%s %d: %s", what, key, err)
            self._fail(err)
        finally:
            with self._cond:
                if workers.get(key, (None,))[0] is threading.current_thread():
                    del workers[key]

    def _has_worker(self, workers: dict[int, _Worker], key: int) -> bool:
        with self._cond:
            worker = workers.get(key)
        return worker is not None and worker[0].is_alive()

    def _drive(self, sale_id: int, auth_code: str | None, wake: threading.Event) -> None:
        while not self._stopping.is_set():
            sale = self._store.get(sale_id)
            if sale.final or sale.next_action is None or sale.next_at is None:
                return
            delay = machine.departure(sale, self.query_lead(sale.channel or "")) - self._clock()
            if delay > 0:
                wake.wait(delay)
                wake.clear()
                continue  # re-read: a cancel may have changed the plan
            if sale.next_action is Action.PAY and auth_code is None:
                self._commit(machine.resume(sale, self._clock()), None, "code no longer in memory")
                continue
            result = self._perform(sale, auth_code)
            self._apply(sale_id, sale.next_action, result)

    def _perform(self, sale: Sale, auth_code: str | None) -> ChannelResult:
        channel = self._channels.get(sale.channel or "")
        if channel is None:
            return machine.Unknown(f"channel {sale.channel} is not configured")
        action = sale.next_action
        try:
            match action:
                case Action.PAY:
                    assert auth_code is not None  # _drive turns a code-less PAY into a query
                    return channel.pay(sale.out_trade_no, sale.amount, auth_code, sale.subject)
                case Action.QUERY:
                    sent = self._clock()
                    answer = channel.query(sale.out_trade_no, sale.amount)
                    if not isinstance(answer, machine.Unknown):
                        self._round_trip(sale.channel or "", self._clock() - sent)
                    return answer
                case Action.REVERSE:
                    return channel.reverse(sale.out_trade_no)
                case None:
                    return machine.Unknown("nothing to do")
        except Exception as err:  # noqa: BLE001 - a worker's top: an adapter bug must not strand a sale
            log.exception("sale %d: %s raised; treating the outcome as unknown", sale.id, action)
            return machine.Unknown(f"internal error: {type(err).__name__}")

    def query_lead(self, channel: str) -> float:
        """How much earlier than due this engine sends ``channel``'s queries now."""
        with self._round_trips_lock:
            measured = tuple(self._round_trips.get(channel, ()))
        return machine.query_lead(measured, self._policies.get(channel, Policy()))

    def _round_trip(self, channel: str, seconds: float) -> None:
        """Keep a query's round trip; one the clock moved under (a step, NTP) is dropped."""
        if 0.0 <= seconds <= ROUND_TRIP_MAX_S:
            with self._round_trips_lock:
                kept = self._round_trips.setdefault(channel, deque(maxlen=ROUND_TRIPS_KEPT))
                kept.append(seconds)

    def _apply(self, sale_id: int, action: Action, result: ChannelResult) -> None:
        with self._cond:
            current = self._store.get(sale_id)
            policy = self._policies.get(current.channel or "", Policy())
            new = machine.on_result(current, action, result, self._clock(), policy)
            self._store.save(new, action, describe(result))
            self._cond.notify_all()
        if new.state is not current.state or new.final:
            log.info("sale %d %s: %s -> %s (%s)", sale_id, new.out_trade_no, current.state,
                     new.state, describe(result))
        self._notify(new)

    def _commit(self, sale: Sale, action: Action | None, detail: str) -> None:
        with self._cond:
            self._store.save(sale, action, detail)
            self._cond.notify_all()
        self._notify(sale)

    def _notify(self, sale: Sale) -> None:
        for listener in self._listeners:
            try:
                listener(sale)
            except Exception:  # noqa: BLE001 - a display or printer must never stop a sale
                log.exception("listener failed for sale %d", sale.id)

    def add_fatal_listener(self, listener: Callable[[], None]) -> None:
        """Call ``listener()`` (once, from the failing thread) when the engine must stop."""
        self._fatal_listeners.append(listener)

    def _fail(self, err: StoreError) -> None:
        self.fatal_reason = str(err)
        self.fatal.set()
        for listener in self._fatal_listeners:
            listener()

    def _refuse_if_stopping(self) -> None:
        if self._stopping.is_set():
            raise UnavailableError("posd is shutting down; no new payments")

    # --- housekeeping --------------------------------------------------------------------

    def _housekeeping(self) -> None:
        """Restart any missing worker; cancel sales left waiting for a code too long; give
        the allocator's free pages back (posd.memory)."""
        now = self._clock()
        for sale in self._store.unfinished():
            if sale.state is State.AWAITING_CODE:
                if machine.is_forgotten(sale, now, self._config.payment.awaiting_code_s):
                    self.expire(sale.id)
                continue
            if not self._has_worker(self._workers, sale.id):
                log.warning("sale %d had no worker; resuming it", sale.id)
                self._spawn(sale.id, None)
        for refund in self._store.find_refunds(open_only=True):
            if not refund.final and not self._has_worker(self._refund_workers, refund.id):
                log.warning("refund %d had no worker; resuming it", refund.id)
                self._spawn_refund(refund.id)
        memory.trim()

    def health(self) -> dict[str, Any]:
        """What is degraded, for /v1/health. Reads only the open sales (a partial index) and
        the backlog counters: the same cost on an empty store and a year-old one."""
        now = self._clock()
        unresolved = self._store.find(states=OPEN_STATES, peek=True)  # one read: the few open
        attention = [s for s in unresolved if s.state is State.NEEDS_ATTENTION]
        in_flight = [s for s in unresolved if s.state in machine.IN_FLIGHT]
        backlog = self._store.outbox_backlog()
        stuck = [s for s in in_flight if s.state is State.REVERSING
                 and now - (s.pay_sent_at or s.created_at) > REVERSING_LONG_S]
        degraded = []
        if attention:
            ids = ", ".join(str(s.id) for s in attention[:20])
            degraded.append(f"{len(attention)} sale(s) need attention: {ids}")
        if stuck:
            ids = ", ".join(str(s.id) for s in stuck[:20])
            degraded.append(f"{len(stuck)} sale(s) reversing for more than "
                            f"{REVERSING_LONG_S / 60:g} min: {ids}")
        open_refunds = self._store.find_refunds(open_only=True, peek=True)
        stuck_refunds = [r for r in open_refunds if r.state is refunds.RefundState.NEEDS_ATTENTION]
        if stuck_refunds:
            ids = ", ".join(str(r.id) for r in stuck_refunds[:20])
            degraded.append(f"{len(stuck_refunds)} refund(s) need attention: {ids}")
        if self.fatal.is_set():
            degraded.append(f"database: {self.fatal_reason}")
        extra = {}
        for name, probe in self._health_probes.items():
            try:
                extra[name] = probe()
            except Exception as err:  # noqa: BLE001 - a broken probe is itself a finding
                extra[name] = {"degraded": f"health probe failed: {err}"}
            if why := extra[name].get("degraded"):
                degraded.append(f"{name}: {why}")
        return extra | {
            "status": "degraded" if degraded else "ok",
            "degraded": degraded,
            "channels": list(self._channels),
            "in_flight": len(in_flight),
            "needs_attention": [s.id for s in attention],
            "reversing_long": [s.id for s in stuck],
            "refunds_in_flight": len(open_refunds) - len(stuck_refunds),
            "refunds_need_attention": [r.id for r in stuck_refunds],
            "hq_backlog": backlog,
            "last_scan": self._last_scan,
        }

