# SPDX-License-Identifier: MIT
"""Print jobs and printer status as values: what to print, when to try again. [core]

A print job names what to print (a sale's receipt, or a day's report), not the bytes: the
print worker (``posd.devices.print_queue``) lays it out when the printer is ready, from the store.
Jobs live in the ``print_jobs`` table (``posd.store``), so a receipt waiting for paper
survives a restart; printing never touches a sale.

Status comes from ESC/POS real-time status (DLE EOT n, Epson ESC/POS reference): every
answer byte has bit 1 and bit 4 set and bits 0 and 7 clear (``0x12`` under mask ``0x93``),
which is how a real answer is told from noise.

- n = 1 (printer): bit 3 set = off line.
- n = 2 (off-line cause): bit 2 cover open, bit 5 stopped by paper end, bit 6 error.
- n = 4 (roll paper sensor): bits 2-3 near end, bits 5-6 paper end.

A printer that does not answer is **not** "paper OK" (python-escpos' ``paper_status()``
returns 2, "adequate", on silence; reference/hardware.md §2).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

#: The DLE EOT queries, by n.
STATUS_QUERIES = {n: b"\x10\x04" + bytes([n]) for n in (1, 2, 4)}


class Status(enum.StrEnum):
    """What the printer said (or could not say) the last time it was asked."""

    OK = "ok"
    PAPER_LOW = "paper_low"
    PAPER_OUT = "paper_out"
    COVER_OPEN = "cover_open"
    OFFLINE = "offline"
    ERROR = "error"
    NO_ANSWER = "no_answer"
    UNREACHABLE = "unreachable"
    #: this kind of printer cannot be asked (file, console) or status_query is off.
    UNKNOWN = "unknown"

    @property
    def ready(self) -> bool:
        """Worth sending a job to: it said it can print, or it cannot be asked at all."""
        return self in (Status.OK, Status.PAPER_LOW, Status.UNKNOWN)


DESCRIPTIONS = {
    Status.OK: "ready",
    Status.PAPER_LOW: "paper is running low",
    Status.PAPER_OUT: "out of paper",
    Status.COVER_OPEN: "cover open",
    Status.OFFLINE: "off line",
    Status.ERROR: "printer error (cutter or mechanism)",
    Status.NO_ANSWER: "does not answer status queries (off, busy, or not an ESC/POS printer)",
    Status.UNREACHABLE: "cannot be reached",
    Status.UNKNOWN: "status unknown (this printer cannot be asked)",
}


def _valid(byte: int | None) -> bool:
    return byte is not None and byte & 0x93 == 0x12


def decode_status(printer: int | None, cause: int | None, paper: int | None) -> Status:
    """Status from the first byte of the answers to DLE EOT 1, 2 and 4 (None: no answer;
    ``cause`` is asked only when the printer says it is off line)."""
    if printer is None or not _valid(printer):
        return Status.NO_ANSWER
    if printer & 0x08:
        if cause is not None and _valid(cause):
            if cause & 0x04:
                return Status.COVER_OPEN
            if cause & 0x20:
                return Status.PAPER_OUT
            if cause & 0x40:
                return Status.ERROR
        if paper is not None and _valid(paper) and paper & 0x60:
            return Status.PAPER_OUT
        return Status.OFFLINE
    if paper is None or not _valid(paper):
        return Status.NO_ANSWER
    if paper & 0x60:
        return Status.PAPER_OUT
    if paper & 0x0C:
        return Status.PAPER_LOW
    return Status.OK


class JobKind(enum.StrEnum):
    RECEIPT = "receipt"
    REPORT = "report"
    #: a refund's slip (posd.core.receipt.refund_elements)
    REFUND = "refund"
    #: a bill day's reconciliation, every channel (posd.core.reconcile_paper)
    RECONCILIATION = "reconciliation"


class JobState(enum.StrEnum):
    QUEUED = "queued"
    DONE = "done"
    #: a receipt that could not be printed in time (the customer has gone): reprint it.
    EXPIRED = "expired"
    #: nothing to print (the sale or the day is not there): not retried.
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class PrintJob:
    """One thing to print. ``key`` (unique when set) makes queueing idempotent."""

    kind: JobKind
    created_at: float
    next_at: float
    id: int = 0
    key: str | None = None
    sale_id: int | None = None
    #: a report's business day, YYYY-MM-DD.
    day: str | None = None
    reprint: bool = False
    state: JobState = JobState.QUEUED
    attempts: int = 0
    done_at: float | None = None
    last_error: str = ""
    #: a refund slip's refund
    refund_id: int | None = None

    def row(self) -> dict[str, Any]:
        """The ``print_jobs`` row (without ``id`` when not stored yet)."""
        row: dict[str, Any] = {
            "job_key": self.key, "kind": self.kind.value, "sale_id": self.sale_id,
            "day": self.day, "reprint": int(self.reprint), "state": self.state.value,
            "attempts": self.attempts, "created_at": self.created_at, "next_at": self.next_at,
            "done_at": self.done_at, "last_error": self.last_error, "refund_id": self.refund_id,
        }
        return row | {"id": self.id} if self.id else row

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> PrintJob:
        return cls(
            JobKind(row["kind"]), row["created_at"], row["next_at"], row["id"], row["job_key"],
            row["sale_id"], row["day"], bool(row["reprint"]), JobState(row["state"]),
            row["attempts"] or 0, row["done_at"], row["last_error"] or "", row.get("refund_id"))


def receipt_job(sale_id: int, state: str, now: float, *, reprint: bool = False) -> PrintJob:
    """A sale's receipt. The automatic one is keyed by sale and state: queued once."""
    key = None if reprint else f"receipt:{sale_id}:{state}"
    return PrintJob(JobKind.RECEIPT, now, now, key=key, sale_id=sale_id, reprint=reprint)


def refund_job(refund_id: int, sale_id: int, state: str, now: float, *,
               reprint: bool = False) -> PrintJob:
    """A refund's slip, keyed by refund and state: queued once."""
    key = None if reprint else f"refund:{refund_id}:{state}"
    return PrintJob(JobKind.REFUND, now, now, key=key, sale_id=sale_id, reprint=reprint,
                    refund_id=refund_id)


def report_job(day: str, now: float, *, key: str | None = None) -> PrintJob:
    """A business day's report (Z once the day is over, X before)."""
    return PrintJob(JobKind.REPORT, now, now, key=key, day=day)


def reconciliation_job(day: str, now: float) -> PrintJob:
    """A bill day's reconciliation results (as kept when it prints)."""
    return PrintJob(JobKind.RECONCILIATION, now, now, day=day)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Back off ``base_s``, 2 x, 4 x ... up to ``max_s``; a receipt (or reprint) not printed
    within ``receipt_expiry_s`` of being queued is given up, as the customer has gone (it
    stays reprintable); reports are retried until printed."""

    base_s: float = 2.0
    max_s: float = 60.0
    receipt_expiry_s: float = 600.0

    def delay(self, attempts: int) -> float:
        """The pause after the ``attempts``-th failed attempt (1-based)."""
        return min(self.max_s, self.base_s * 2.0 ** min(max(attempts, 1) - 1, 30))


def failed_attempt(job: PrintJob, now: float, error: str, policy: RetryPolicy) -> PrintJob:
    """The job after an attempt that did not print: retried later, or expired."""
    attempts = job.attempts + 1
    expired = job.kind is JobKind.RECEIPT and now - job.created_at >= policy.receipt_expiry_s
    if expired:
        return replace(job, attempts=attempts, state=JobState.EXPIRED, done_at=now,
                       last_error=error[:500])
    return replace(job, attempts=attempts, next_at=now + policy.delay(attempts),
                   last_error=error[:500])


def printed(job: PrintJob, now: float) -> PrintJob:
    return replace(job, attempts=job.attempts + 1, state=JobState.DONE, done_at=now)


def nothing_to_print(job: PrintJob, now: float, why: str) -> PrintJob:
    return replace(job, attempts=job.attempts + 1, state=JobState.FAILED, done_at=now,
                   last_error=why[:500])
