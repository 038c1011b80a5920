# SPDX-License-Identifier: MIT
"""The print queue: receipts and reports wait in SQLite until the printer takes them.

Printing never blocks or changes a sale. A sale's receipt job is written by the store in the
same transaction as the final state that calls for it (``posd.core.effects``), so a crash
cannot lose it; the engine listener (:meth:`Printing.on_sale`) only wakes the worker thread.
The worker takes the next due job, lays it out from the store (the sale as it is now, or the day's figures), asks the
printer's status (DLE EOT), prints, and marks the job done, or schedules a retry with
backoff when the printer is unreachable, silent, out of paper or too slow. A receipt still
not printed ``printer.receipt_expiry_s`` after it was queued is given up (the customer has
gone; ``posd receipt ID --print`` reprints it); reports are retried until printed. What the
printer said last, the queue and the receipts given up are in ``/v1/health``.

The worker also looks at the queue every ``printer.poll_s`` for jobs added by another
process (``posd receipt ID --print``, ``posd report daily --print``), and asks the printer's
status every ``printer.status_every_s`` while idle, so that "out of paper" shows before the
next sale. APScheduler prints the Z-report at ``report.auto_print_at``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import date, tzinfo
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger

from posd.channels import registry
from posd.core import receipt, report
from posd.config import Config, ReceiptConfig
from posd.core.errors import DeviceError, InputError, NotFoundError
from posd.core.effects import receipt_states
from posd.core.layout import Element, as_text
from posd.core.print_jobs import (
    DESCRIPTIONS, JobKind, JobState, PrintJob, RetryPolicy, Status, failed_attempt,
    nothing_to_print, printed, receipt_job, report_job,
)
from posd.devices.printers import (
    ConsoleOutput, Printer, archive, keep_profiles_beside_database, open_printer,
)
from posd.core.refund import Refund
from posd.core.sale import Sale, State
from posd.store import Store

if TYPE_CHECKING:
    from posd.engine import Engine

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Paper:
    """What a layout needs besides the store: the heading, the receipt and report options,
    and the time zone of the business day (None: the system's)."""

    header: receipt.Header
    receipt: ReceiptConfig
    cutoff_hour: int = 0
    tz: tzinfo | None = None

    @classmethod
    def from_config(cls, config: Config, tz: tzinfo | None = None) -> Paper:
        store = config.store
        tz = tz or store.tz
        header = receipt.Header(store.name, store.id, store.terminal_id, store.address, tz,
                                registry.labels())
        return cls(header, config.receipt, config.report.business_day_cutoff_hour, tz)

    @property
    def columns(self) -> int:
        return self.receipt.line_columns


def load_report(store: Store, day: date | None, *, cutoff_hour: int, tz: tzinfo | None,
                now: float) -> report.DailyReport:
    """The report of business ``day`` (None: the current one), summed by SQLite."""
    day = day or report.business_day(now, tz, cutoff_hour)
    since, until = report.day_bounds(day, tz, cutoff_hour)
    if since > now:
        raise InputError(f"business day {day} has not begun yet: there is no report for it "
                         "(ask for today's X-report, or a past day's Z-report)")
    attention = store.find(since=since, until=until, states=(State.NEEDS_ATTENTION,))
    daily = report.from_totals(day, store.sale_totals(since, until), attention, since=since,
                               until=until, complete=now >= until)
    return report.with_refunds(daily, store.refund_totals(since, until))


def receipt_layout(sale: Sale, paper: Paper, *, reprint: bool = False,
                   printed_at: float | None = None) -> list[Element]:
    options = paper.receipt
    return receipt.elements(sale, paper.header, columns=paper.columns, language=options.language,
                            reprint=reprint, printed_at=printed_at, qr=options.qr,
                            footer=options.footer)


def report_layout(daily: report.DailyReport, paper: Paper, now: float) -> list[Element]:
    return report.elements(daily, paper.header, tz=paper.tz, columns=paper.columns,
                           language=paper.receipt.language, printed_at=now)


def compose(job: PrintJob, store: Store, paper: Paper, now: float) -> list[Element]:
    """The layout of ``job`` from the store as it is now. NotFoundError / InputError when
    there is nothing to print (no such sale, a malformed day)."""
    if job.kind is JobKind.REFUND:
        if job.refund_id is None:
            raise NotFoundError(f"print job {job.id} names no refund")
        refund = store.get_refund(job.refund_id)
        return receipt.refund_elements(
            refund, store.get(refund.sale_id), paper.header, columns=paper.columns,
            language=paper.receipt.language, reprint=job.reprint,
            printed_at=now if job.reprint else None)
    if job.kind is JobKind.RECEIPT:
        if job.sale_id is None:
            raise NotFoundError(f"print job {job.id} names no sale")
        sale = store.get(job.sale_id)
        return receipt_layout(sale, paper, reprint=job.reprint,
                              printed_at=now if job.reprint else None)
    if job.kind is JobKind.RECONCILIATION:
        return reconciliation_layout(store, job.day or "", paper, now)
    daily = load_report(store, report.parse_day(job.day or ""), cutoff_hour=paper.cutoff_hour,
                        tz=paper.tz, now=now)
    return report_layout(daily, paper, now)


def reconciliation_layout(store: Store, day: str, paper: Paper, now: float) -> list[Element]:
    """Every channel's kept reconciliation of bill ``day``, one after the other."""
    from posd.core import reconcile, reconcile_paper

    rows = [row for row in store.reconciliations(day=report.parse_day(day).isoformat())
            if row["result"] is not None]
    if not rows:
        raise NotFoundError(f"no reconciliation of {day} is kept")
    out: list[Element] = []
    for row in rows:
        out += reconcile_paper.elements(reconcile.from_json(row["result"]), paper.header,
                                        columns=paper.columns,
                                        language=paper.receipt.language, printed_at=now)
    return out


def archive_name(job: PrintJob, store: Store) -> str:
    if job.kind is JobKind.REPORT:
        return f"report-{job.day}"
    if job.kind is JobKind.RECONCILIATION:
        return f"reconciliation-{job.day}"
    if job.kind is JobKind.REFUND and job.refund_id is not None:
        return store.get_refund(job.refund_id).out_refund_no + ("-reprint" if job.reprint else "")
    name = store.get(job.sale_id).out_trade_no if job.sale_id is not None else f"job-{job.id}"
    return name + ("-reprint" if job.reprint else "")


class Printing:
    """The queue's ends: the listener that queues, the worker that prints, /v1/health."""

    def __init__(self, store: Store, printer: Printer, paper: Paper, *,
                 policy: RetryPolicy = RetryPolicy(), poll_s: float = 2.0,  # noqa: B008 - frozen
                 status_every_s: float = 0.0,
                 receipt_dir: Path | None = None, auto_print_at: str = "",
                 stream: TextIO | None = None,
                 clock: Callable[[], float] = time.time,
                 on_attempt: Callable[[PrintJob], None] | None = None) -> None:
        self._store = store
        self.printer = printer
        self._paper = paper
        self._policy = policy
        self._poll_s = poll_s
        self._status_every_s = status_every_s
        self._dir = receipt_dir
        self._auto_print_at = auto_print_at
        self._stream = stream
        self._clock = clock
        self._on_attempt = on_attempt
        self._wake = threading.Event()
        self._step_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._scheduler: BackgroundScheduler | None = None
        self.status = Status.UNKNOWN
        self.status_detail = "not asked yet"
        self.status_at: float | None = None
        self.last_printed_at: float | None = None

    @classmethod
    def from_config(cls, config: Config, store: Store, stream: TextIO | None,
                    tz: tzinfo | None = None) -> Printing | None:
        """The printing service ``config`` asks for (None for ``printer.kind = "none"``)."""
        pc = config.printer
        if pc.kind == "none":
            return None
        paper = Paper.from_config(config, tz)
        keep_profiles_beside_database(config)
        policy = RetryPolicy(pc.retry_base_s, pc.retry_max_s, pc.receipt_expiry_s)
        return cls(store, open_printer(pc, stream, paper.columns), paper, policy=policy,
                   poll_s=pc.poll_s, status_every_s=pc.status_every_s,
                   receipt_dir=pc.receipt_dir,
                   auto_print_at=config.report.auto_print_at, stream=stream)

    # --- queueing --------------------------------------------------------------------------

    def attach(self, engine: Engine) -> None:
        """Hook into the engine: the wake-up listener and the ``printer`` health probe."""
        engine.add_listener(self.on_sale)
        engine.add_refund_listener(self.on_refund)
        engine.add_health_probe("printer", self.health)

    def on_sale(self, sale: Sale) -> None:
        """Engine listener: a final sale may have queued a receipt (the store did, with the
        sale): wake the worker. A console prints it here and now, so that the demo's next
        prompt comes after the receipt (nothing can block on a console)."""
        if not sale.final:
            return
        self._woken()

    def on_refund(self, refund: Refund) -> None:
        """Engine listener: a final refund queued its slip (the store did, with it)."""
        if refund.final:
            self._woken()

    def _woken(self) -> None:
        if isinstance(self.printer, ConsoleOutput):
            self.drain()
        self._wake.set()

    def enqueue(self, job: PrintJob) -> PrintJob | None:
        """Add ``job`` (None if its key was queued before) and wake the worker."""
        added = self._store.add_print_job(job)
        self._wake.set()
        return added

    def reprint(self, sale: Sale) -> bool:
        """Queue the sale's receipt again, marked REPRINT (the cashier page's button).
        False when a reprint of it is already waiting."""
        job = receipt_job(sale.id, sale.state.value, self._clock(), reprint=True)
        return self.enqueue(job) is not None

    def print_closing_report(self) -> PrintJob | None:
        """The APScheduler job: queue the report of the business day ending nearest to now."""
        now = self._clock()
        day = report.closing_day(now, self._paper.tz, self._paper.cutoff_hour).isoformat()
        log.info("printing the report of business day %s (report.auto_print_at)", day)
        return self.enqueue(report_job(day, now, key=f"report:{day}:auto"))

    # --- the worker ------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="printer", daemon=True)
        self._thread.start()
        if self._auto_print_at:
            self._start_scheduler()

    def _start_scheduler(self) -> None:
        hour, minute = (int(part) for part in self._auto_print_at.split(":"))
        self._scheduler = BackgroundScheduler(daemon=True)
        trigger = CronTrigger(hour=hour, minute=minute, timezone=self._paper.tz)
        # A run missed by up to an hour (busy, clock jump) still prints; one report per day.
        self._scheduler.add_job(self.print_closing_report, trigger, id="z-report",
                                misfire_grace_time=3600, coalesce=True, max_instances=1)
        self._scheduler.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the scheduler and the worker; a job being printed finishes (or times out)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
            self._scheduler = None
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()
            try:
                wait = self.step()
            except Exception:  # noqa: BLE001 - the worker thread's top: outlive a locked db or a bug
                log.exception("print worker: unexpected error; trying again in %g s", self._poll_s)
                wait = self._poll_s
            self._wake.wait(wait)

    def step(self) -> float:
        """Print the next due job, or check the status when idle and due. Returns how long
        to wait before the next step (0: at once)."""
        with self._step_lock:  # the worker, and a console's listener (on_sale)
            now = self._clock()
            queued = self._store.print_jobs(JobState.QUEUED, limit=1)
            if queued and queued[0].next_at <= now:
                self._finish(self.attempt(queued[0]))
                return 0.0
            if self._status_due(now):
                self.check_status()
            return max(0.0, min(self._poll_s, queued[0].next_at - now if queued else self._poll_s))

    def drain(self) -> None:
        """Print every job that is due now, in this thread."""
        while self.step() == 0.0:
            pass

    def _status_due(self, now: float) -> bool:
        if not self._status_every_s or not self.printer.can_ask:
            return False
        return self.status_at is None or now - self.status_at >= self._status_every_s

    def _note(self, status: Status, detail: str = "") -> None:
        if status is not self.status:
            level = logging.INFO if status.ready else logging.WARNING
            log.log(level, "printer %s: %s", self.printer.describe, detail or DESCRIPTIONS[status])
        self.status, self.status_detail = status, detail or DESCRIPTIONS[status]
        self.status_at = self._clock()

    def check_status(self) -> Status:
        """Open the printer, ask DLE EOT, close. Never raises."""
        try:
            with closing(self.printer.open()) as session:
                self._note(session.status())
        except DeviceError as err:
            self._note(Status.UNREACHABLE, str(err))
        return self.status

    def _print(self, layout: list[Element]) -> str | None:
        """Print ``layout`` if the printer says it can. The reason it did not, or None."""
        try:
            session = self.printer.open()
        except DeviceError as err:
            self._note(Status.UNREACHABLE, str(err))
            return str(err)
        with closing(session):
            try:
                self._note(session.status())
                if not self.status.ready:
                    return f"printer {DESCRIPTIONS[self.status]}"
                session.send(layout)
            except DeviceError as err:
                self._note(Status.UNREACHABLE, str(err))
                return str(err)
        return None

    def attempt(self, job: PrintJob) -> PrintJob:
        """Try ``job`` once; the job as it should be stored afterwards."""
        now = self._clock()
        try:
            layout = compose(job, self._store, self._paper, now)
        except (NotFoundError, InputError) as err:
            return nothing_to_print(job, now, str(err))
        if (error := self._print(layout)) is not None:
            return failed_attempt(job, self._clock(), error, self._policy)
        archive(self._dir, archive_name(job, self._store), as_text(layout, self._paper.columns))
        self.last_printed_at = self._clock()
        return printed(job, self.last_printed_at)

    def _finish(self, job: PrintJob) -> None:
        self._store.update_print_job(job)
        what = f"print job {job.id} ({job.kind} {job.sale_id or job.day})"
        if job.state is JobState.QUEUED:
            log.warning("%s not printed (attempt %d): %s; next try in %.0f s", what, job.attempts,
                        job.last_error, job.next_at - self._clock())
        elif job.state is not JobState.DONE:
            log.error("%s %s: %s", what, job.state, job.last_error)
        if self._on_attempt is not None:
            self._on_attempt(job)

    # --- health ----------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """The ``printer`` entry of /v1/health; ``degraded`` when a person should look."""
        queued = self._store.print_jobs(JobState.QUEUED, peek=True)
        given_up = self._store.print_jobs(JobState.EXPIRED, since=self._clock() - 86400,
                                          peek=True)
        info: dict[str, Any] = {
            "printer": self.printer.describe, "status": self.status.value,
            "detail": self.status_detail, "checked_at": self.status_at,
            "queued": len(queued), "oldest_queued_at": min((j.created_at for j in queued),
                                                           default=None),
            "last_printed_at": self.last_printed_at,
            "not_printed": [j.sale_id for j in given_up if j.sale_id is not None],
        }
        why = [] if self.status in (Status.OK, Status.UNKNOWN) else [self.status_detail]
        if waiting := [j for j in queued if j.attempts]:
            why.append(f"{len(waiting)} job(s) waiting to print ({waiting[0].last_error})")
        if why:
            info["degraded"] = "; ".join(why)
        return info


def printed_states(options: ReceiptConfig) -> frozenset[State]:
    """The final states that get a receipt (or a slip) under ``[receipt]``."""
    return receipt_states(declined=options.print_declined, reversed_=options.print_reversed,
                          needs_attention=options.print_needs_attention)


def daily_reports(store: Store, cutoff_hour: int, tz: tzinfo | None = None,
                  clock: Callable[[], float] = time.time) -> Callable[[date | None],
                                                                    report.DailyReport]:
    """``day -> report`` for GET /v1/reports/daily: the same figures the CLI prints."""
    def daily(day: date | None) -> report.DailyReport:
        return load_report(store, day, cutoff_hour=cutoff_hour, tz=tz, now=clock())

    return daily
