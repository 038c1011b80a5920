# SPDX-License-Identifier: MIT
"""Reconciliation, the shell: download a day's bills, judge them, ask about each difference,
keep the result; and the daily job (DESIGN §10, docs/reconciliation.md). [shell]

One :class:`Reconciler` serves the daemon's job, the API (``POST /v1/reconciliations``) and
``posd reconcile`` (which runs with the daemon stopped: it opens the database and the
channels itself). The judging is :func:`posd.core.reconcile.reconcile` (pure); here are the
things that can fail:

- the download: ``BillFailed`` (connect error, 5xx, bad signature, an expired URL) is kept as
  the day's ``failed`` state and tried again; nothing is judged from half a bill;
- no bill yet: before about 10:00 the next day, or while posd has money records of the day
  and the day ended less than a day ago, the day is ``waiting`` (tried again); after that,
  "no bill" means the channel had no trade that day (WeChat's "No Bill Exist") and the day is
  judged against an empty bill, so that posd's own records still show as differences;
- a bill posd cannot read (``BillError``) is kept as ``DAY.bad`` beside the good ones and the
  day is ``failed`` with the reason: a person looks at the file;
- every bill is written verbatim to ``bills/CHANNEL/DAY.EXT`` (a temporary file, fsync,
  rename) before it is parsed.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from posd.channels import Channel, registry
from posd.config import Config
from posd.core import bills
from posd.core import refund as refunds
from posd.core import sale as sales
from posd.core.errors import InputError
from posd.core.money import Fen, format_yuan
from posd.core.reconcile import (
    HOLD_S,
    Difference,
    Followup,
    Reconciliation,
    as_json,
    beijing_day,
    day_bounds,
    from_json,
    reconcile,
    with_followups,
)
from posd.core.zones import BEIJING
from posd.store import Store

log = logging.getLogger(__name__)

#: Exit statuses of ``posd reconcile`` (DESIGN §3).
EX_OK, EX_DIFFERENCES, EX_UNAVAILABLE = 0, 1, 69

#: Bills are generated from 09:00 the next day (WeChat: "fetch after 10:00", channels.md
#: §1.9); before this hour of D+1 a missing bill is not news.
READY_HOUR = 10
#: The job looks this many days back for days still waiting, failed or held.
LOOK_BACK_DAYS = 7
#: At most this many differences are asked about in one run (a bill gone wrong wholesale
#: must not become thousands of queries): the rest say so.
MAX_FOLLOWUPS = 200


@dataclass(frozen=True, slots=True)
class Outcome:
    """One channel's run for one day: ``status`` is matched, held, differences (with
    ``result``), waiting (no bill yet) or failed (``detail`` says why)."""

    channel: str
    day: date
    status: str
    detail: str = ""
    result: Reconciliation | None = None
    id: int | None = None

    @property
    def exit_code(self) -> int:
        return {"matched": EX_OK, "differences": EX_DIFFERENCES}.get(self.status,
                                                                     EX_UNAVAILABLE)


def bills_dir(config: Config) -> Path:
    return config.reconcile.bills_dir or Path(config.database.path).parent / "bills"


def yesterday(now: float) -> date:
    """The bill day a morning's run is about: yesterday, Beijing time."""
    return beijing_day(now) - timedelta(days=1)


class Reconciler:
    """Runs a day's reconciliation for each channel; one run at a time in a process."""

    def __init__(self, store: Store, channels: Mapping[str, Channel], *, store_id: str,
                 terminal_id: str, directory: Path, clock: Callable[[], float] = time.time,
                 hold_s: float = HOLD_S) -> None:
        self._store = store
        self._formats = registry.bills()
        # A channel whose bill another enabled one covers (v2 under v3: one merchant
        # account, one bill) is reconciled there, with its sales.
        covered = {m for n in channels for m in registry.bill_members(n) if m != n}
        self._channels = {n: c for n, c in channels.items()
                          if n in self._formats and n not in covered}
        self._store_id, self._terminal_id = store_id, terminal_id
        self._dir = directory
        self._clock = clock
        self._hold_s = hold_s
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config, store: Store, channels: Mapping[str, Channel],
                    clock: Callable[[], float] = time.time) -> Reconciler:
        return cls(store, channels, store_id=config.store.id,
                   terminal_id=config.store.terminal_id, directory=bills_dir(config),
                   clock=clock)

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(self._channels)

    @property
    def store(self) -> Store:
        return self._store

    @property
    def store_id(self) -> str:
        return self._store_id

    @property
    def terminal_id(self) -> str:
        return self._terminal_id

    def run(self, day: date, channels: Iterable[str] | None = None) -> list[Outcome]:
        """Reconcile ``day`` (Beijing) for ``channels`` (default: every enabled one whose
        bills posd reads). InputError for a day not begun or a channel not enabled."""
        names = list(channels) if channels is not None else list(self._channels)
        for name in names:
            if name not in self._channels:
                known = ", ".join(self._channels) or "none"
                raise InputError(f"channel {name!r} is not enabled here, or posd cannot read "
                                 f"its bills (reconciled here: {known})")
        if day_bounds(day)[0] > self._clock():
            raise InputError(f"{day} has not begun yet (Beijing time): there is no bill for it")
        with self._lock:
            return [self._one(name, day) for name in names]

    # --- one channel, one day --------------------------------------------------------------

    def _one(self, name: str, day: date) -> Outcome:
        channel, now = self._channels[name], self._clock()
        answer = self._fetch(name, channel, day)
        path: Path | None = self._path(name, day)
        no_bill = False
        if isinstance(answer, bills.BillFailed):
            return self._unreconciled(name, day, "failed", f"bill download failed: "
                                      f"{answer.detail}")
        if isinstance(answer, bills.NoBill):
            if self._must_wait(name, day, now):
                return self._unreconciled(name, day, "waiting", f"no bill yet ({answer.detail})")
            bill, no_bill, path = bills.empty(name, day), True, None
        else:
            try:
                bill = self._formats[name][0](answer, day)
            except bills.BillError as err:
                bad = self._path(name, day).with_name(f"{day.isoformat()}.bad")
                os.replace(self._path(name, day), bad)
                log.error("ALERT %s bill of %s unreadable, kept as %s: %s", name, day, bad, err)
                return self._unreconciled(name, day, "failed", f"the bill cannot be read "
                                          f"({err}); it is kept as {bad}")
        result = self._judge(name, bill, no_bill, now)
        result = with_followups(result, self._followups(channel, result))
        status = result.status
        record_id = self._store.save_reconciliation(
            name, day.isoformat(), status=status, run_at=now, result=as_json(result),
            bill_file=str(path or ""), detail=_detail(result),
            store_id=self._store_id, terminal_id=self._terminal_id)
        log_at = logging.WARNING if result.differences else logging.INFO
        log.log(log_at, "reconciliation %s %s: %s", name, day, _detail(result))
        return Outcome(name, day, status, _detail(result), result, record_id)

    def _unreconciled(self, name: str, day: date, status: str, detail: str) -> Outcome:
        record_id = self._store.record_unreconciled(name, day.isoformat(), status=status,
                                                    run_at=self._clock(), detail=detail)
        (log.warning if status == "failed" else log.info)("reconciliation %s %s: %s", name,
                                                          day, detail)
        return Outcome(name, day, status, detail, None, record_id)

    def _judge(self, name: str, bill: bills.Bill, no_bill: bool, now: float) -> Reconciliation:
        day = bill.day
        start, end = day_bounds(day)
        # The day's own records; a neighbouring day's only matter where this bill names
        # them (a sale at 23:59:58 paid after midnight), and those are read by number.
        members = registry.bill_members(name)
        window_sales = [s for s in self._store.find(since=start, until=end)
                        if s.channel in members]
        window_refunds = [r for r in self._store.find_refunds(since=start, until=end)
                          if r.channel in members]
        own = [r for r in bill.rows if sales.is_own_trade_no(
            r.out_trade_no, self._store_id, self._terminal_id)]
        # Records the bill names that are not in the window (a refund today of a sale made
        # last month, a trade posd made under another channel): read by number.
        known_sales = {s.out_trade_no for s in window_sales}
        known_refunds = {r.out_refund_no for r in window_refunds}
        named_sales = self._store.sales_by_numbers(
            sorted({r.out_trade_no for r in own} - known_sales))
        named_refunds = self._store.refunds_by_numbers(
            sorted({r.out_refund_no for r in own if r.out_refund_no} - known_refunds))
        found_sales = {s.id: s for s in [*window_sales, *named_sales] if s.channel in members}
        found_refunds = {r.id: r for r in [*window_refunds, *named_refunds]}
        neighbours: dict[date, bills.Bill | None] = {
            d: self._kept(name, d) for d in (day - timedelta(days=1), day + timedelta(days=1))}

        def judged() -> Reconciliation:
            return reconcile(bill, found_sales.values(), found_refunds.values(),
                             store_id=self._store_id, terminal_id=self._terminal_id,
                             neighbours=neighbours, hold_s=self._hold_s, no_bill=no_bill,
                             channels=members)

        result = judged()
        today = beijing_day(now)
        wanted = {date.fromisoformat(h.waits_for) for h in result.held}
        fetched = False
        for other in sorted(wanted):
            if other < today and neighbours.get(other) is None:
                neighbours[other] = self._neighbour(name, other, now)
                fetched = True
        return judged() if fetched else result

    def _must_wait(self, name: str, day: date, now: float) -> bool:
        """Whether "no bill" for ``day`` means "not yet" rather than "no trade that day"."""
        start, end = day_bounds(day)
        if now < end + READY_HOUR * 3600:
            return True
        if now >= end + 86400:
            return False
        moved = self._store.find(since=start, until=end, states=(
            sales.State.PAID, sales.State.REVERSED, sales.State.NEEDS_ATTENTION))
        back = self._store.find_refunds(since=start, until=end)
        members = registry.bill_members(name)
        return any(s.channel in members for s in moved) or any(r.channel in members for r in back)

    # --- the bills on disk ------------------------------------------------------------------

    def _path(self, name: str, day: date) -> Path:
        return self._dir / name / f"{day.isoformat()}.{self._formats[name][1]}"

    def _fetch(self, name: str, channel: Channel, day: date) -> bills.BillAnswer:
        """Download and keep the bill (always afresh: a run again sees what the channel
        says now)."""
        answer = channel.download_bill(day)
        if isinstance(answer, bytes):
            _write_atomic(self._path(name, day), answer)
        return answer

    def _kept(self, name: str, day: date) -> bills.Bill | None:
        """A bill downloaded before, if it is on disk and readable."""
        path = self._path(name, day)
        try:
            return self._formats[name][0](path.read_bytes(), day)
        except FileNotFoundError:
            return None
        except (OSError, bills.BillError) as err:
            log.warning("kept %s bill %s unreadable (%s): not used", name, path, err)
            return None

    def _neighbour(self, name: str, day: date, now: float) -> bills.Bill | None:
        """The bill of a neighbouring day, downloaded for records held near midnight."""
        answer = self._fetch(name, self._channels[name], day)
        if isinstance(answer, bytes):
            return self._kept(name, day)
        if isinstance(answer, bills.NoBill) and not self._must_wait(name, day, now):
            return bills.empty(name, day)
        return None

    # --- asking the channel about each difference -------------------------------------------

    def _followups(self, channel: Channel, result: Reconciliation) -> dict[str, Followup]:
        answers: dict[str, Followup] = {}
        for index, item in enumerate(result.differences):
            if index >= MAX_FOLLOWUPS:
                answers[item.key] = Followup(f"not asked: more than {MAX_FOLLOWUPS} differences "
                                             "in one day")
                continue
            try:
                answers[item.key] = (ask_trade if item.subject == "trade" else ask_refund)(
                    channel, item)
            except Exception as err:  # noqa: BLE001 - one bad answer must not lose the day
                log.exception("follow-up of %s failed", item.key)
                answers[item.key] = Followup(f"could not ask: {err}")
        return answers


def ask_trade(channel: Channel, item: Difference) -> Followup:
    """What the channel says of the trade now; whether its customer's money is taken."""
    amount = Fen(item.posd_amount or item.bill_amount or 0)
    answer = channel.query(item.out_trade_no, amount)
    paid_in_posd = item.posd_state == sales.State.PAID.value
    match answer:
        case sales.Paid(channel_trade_no=number, amount=paid):
            return Followup(f"query: paid {format_yuan(paid)} ({number})",
                            None if paid_in_posd else True)
        case sales.Closed(refunded=back):
            words = {True: "closed, money returned", False: "closed, nothing taken"}.get(
                back, "closed or reversed")  # type: ignore[arg-type]
            return Followup(f"query: {words}", False)
        case sales.NotFound():
            return Followup("query: no such trade", False)
        case sales.Declined(code=code, message=message) | sales.Failed(code=code,
                                                                         message=message):
            return Followup(f"query: not paid ({code}: {message})", False)
        case sales.Pending():
            return Followup("query: the customer is still confirming")
        case sales.Unknown(detail=detail):
            return Followup(f"query got no answer: {detail}")
        case sales.Refused(code=code, message=message):
            return Followup(f"query refused: {code}: {message}")
    return Followup(f"query: {answer}")  # pragma: no cover - every answer is matched above


def ask_refund(channel: Channel, item: Difference) -> Followup:
    answer = channel.refund_query(item.out_trade_no, item.out_refund_no)
    match answer:
        case refunds.Refunded(channel_refund_no=number):
            return Followup(f"refund query: refunded ({number or 'no number given'})")
        case refunds.Processing() | refunds.Accepted():
            return Followup("refund query: still being paid out")
        case refunds.RefundRefused(code=code, message=message) | refunds.Abnormal(
                code=code, message=message):
            return Followup(f"refund query: not refunded ({code}: {message})")
        case refunds.NoRefund():
            return Followup("refund query: no such refund")
        case sales.Unknown(detail=detail):
            return Followup(f"refund query got no answer: {detail}")
    return Followup(f"refund query: {answer}")  # pragma: no cover


def _detail(result: Reconciliation) -> str:
    if result.differences:
        taken = len(result.money_taken)
        return (f"{len(result.differences)} difference(s)"
                + (f", {taken} with a customer's money taken" if taken else ""))
    if result.held:
        return f"nothing differs; {len(result.held)} record(s) wait for the next day's bill"
    return "all matched" + (" (no bill: the channel had no trade that day)"
                            if result.no_bill else "")


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def kept_result(row: Mapping[str, Any]) -> Reconciliation | None:
    """A stored run's result (``Store.reconciliations``) as a value, or None."""
    return None if row.get("result") is None else from_json(row["result"])


# --- the daily job ----------------------------------------------------------------------------


class DailyReconciliation:
    """``[reconcile] at`` every day (Beijing): yesterday's bills; and every
    ``retry_every_min``: the days of the last week still waiting, failed or held, and
    yesterday if it was not run yet (posd was off at ``at``). Also once at start."""

    def __init__(self, reconciler: Reconciler, *, at: str, retry_every_min: float,
                 clock: Callable[[], float] = time.time) -> None:
        self._reconciler = reconciler
        self._at = at
        self._retry_s = retry_every_min * 60.0
        self._clock = clock
        self._scheduler: Any = None
        self.last_error: str = ""

    def start(self) -> None:
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        hour, minute = (int(part) for part in self._at.split(":"))
        self._scheduler = BackgroundScheduler(daemon=True)
        self._scheduler.add_job(self.tick, CronTrigger(hour=hour, minute=minute,
                                                       timezone=BEIJING),
                                id="reconcile-daily", misfire_grace_time=3600, coalesce=True,
                                max_instances=1)
        self._scheduler.add_job(self.tick, IntervalTrigger(seconds=self._retry_s),
                                id="reconcile-retry", next_run_time=datetime.now(BEIJING),
                                coalesce=True, max_instances=1)
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None

    def due(self) -> list[tuple[str, date]]:
        """(channel, day) to run now."""
        now = self._clock()
        store = self._reconciler.store
        hour, minute = (int(part) for part in self._at.split(":"))
        today = beijing_day(now)
        since = today - timedelta(days=LOOK_BACK_DAYS)
        due = {(c, date.fromisoformat(d)) for c, d, _ in
               store.pending_reconciliations(since.isoformat())}
        at_today = day_bounds(today)[0] + hour * 3600 + minute * 60
        first = store.first_sale_at()
        # A till reconciles from its first day of sales: before that it has nothing to check.
        if now >= at_today and first is not None and beijing_day(first) < today:
            done = {r["channel"] for r in store.reconciliations(
                day=(today - timedelta(days=1)).isoformat())}
            due |= {(c, today - timedelta(days=1)) for c in self._reconciler.channels
                    if c not in done}
        return sorted((c, d) for c, d in due if c in self._reconciler.channels)

    def tick(self) -> list[Outcome]:
        """Run what is due; never raises (a scheduler job)."""
        outcomes: list[Outcome] = []
        try:
            for name, day in self.due():
                outcomes += self._reconciler.run(day, [name])
            self.last_error = ""
        except Exception as err:  # noqa: BLE001 - the job's top: tried again next tick
            log.exception("reconciliation job failed; trying again in %g min",
                          self._retry_s / 60)
            self.last_error = str(err)
        return outcomes


def health_probe(store: Store, job: DailyReconciliation | None = None,
                 clock: Callable[[], float] = time.time) -> Callable[[], dict[str, Any]]:
    """``reconciliation`` in /v1/health: unresolved differences (degraded while any), the
    money-taken ones with their numbers (a person refunds or records them), days waiting."""

    def probe() -> dict[str, Any]:
        open_items = store.open_differences(peek=True)
        taken = [{"id": d["id"], "channel": d["channel"], "date": d["day"],
                  "out_trade_no": d["out_trade_no"], "channel_trade_no": d["channel_trade_no"],
                  "amount": d["bill_amount"], "message": d["message"]}
                 for d in open_items if d["money_taken"]]
        out: dict[str, Any] = {"unresolved": len(open_items),
                               "unresolved_ids": [d["id"] for d in open_items[:50]],
                               "money_taken": taken[:50]}
        problems = []
        if open_items:
            problems.append(f"{len(open_items)} reconciliation difference(s) unresolved"
                            + (f", {len(taken)} with a customer's money taken (ids "
                               f"{', '.join(str(t['id']) for t in taken[:20])})" if taken
                               else ""))
        if job is not None and job.last_error:
            problems.append(f"the reconciliation job failed: {job.last_error}")
        if problems:
            out["degraded"] = "; ".join(problems)
        return out

    return probe
