# SPDX-License-Identifier: MIT
"""What the HQ receiver needs from a database, and the day totals it computes from it.

Two implementations: :class:`posd.hq.sqlite.SqliteStorage` (the embedded default) and
:class:`posd.hq.postgres.PostgresStorage` (production: any number of receiver
processes over one PostgreSQL). SQLite keeps two tables:

- ``records``: every record as received, keyed by (store_id, terminal_id, record_id).
  Inserting an existing key does nothing, so replays, duplicates and batches that arrive
  out of order or twice leave one copy: the first one.
- refunds are records too (``type = 'refund'``); a refund reaches one final state, so the
  day's refunded ones are its records whose id ends ``:refunded``.
- ``sales``: the current state of each sale, keyed by (store_id, terminal_id,
  out_trade_no), from the record with the highest ``seq`` (a sale recorded as
  needs_attention and later as paid is counted once, as paid, whatever the arrival order).

PostgreSQL keeps ``records`` only, partitioned by month, a sale's state, amount and channel
in its records' rows; its day totals take each sale's record with the highest ``seq``, the
same answer (posd/hq/postgres.py).

Nothing lives in a receiver's memory between requests: the totals are SQL.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from posd.core.errors import PosdError
from posd.core.hq_protocol import Record
from posd.hq import codec

#: the figures of a day, per state; ``*_amount`` are fen.
FIGURES = ("paid", "reversed", "declined", "cancelled", "needs_attention")


class StorageUnavailable(PosdError):
    """The database cannot be used right now: the receiver answers 503 and the terminal retries."""

    exit_code = 69  # EX_UNAVAILABLE, for ``posd hq serve`` at start


class RecordRefused(PosdError):
    """The database refused a record the checks let through (e.g. a NUL character in a
    string, which PostgreSQL's jsonb cannot hold): the receiver stores the batch one record
    at a time and rejects the ones refused, so that one record never blocks a terminal."""


@dataclass(frozen=True, slots=True)
class StateRow:
    """How many of a terminal's sales of a day ended in ``state``, and their amount."""

    terminal_id: str
    state: str
    count: int
    amount: int


class Storage(Protocol):
    kind: str

    def store(self, store_id: str, terminal_id: str, records: Sequence[Record]) -> set[str]:
        """Store the records not stored yet, in one transaction; return their ids.

        The others (already stored) are duplicates. Raises StorageUnavailable.
        """

    def day(self, store_id: str, day: str) -> tuple[list[StateRow], dict[str, str]]:
        """A day's sales per terminal and state, and each terminal's daily summary (JSON)."""

    def refunds(self, store_id: str, day: str) -> list[tuple[str, str]]:
        """(terminal_id, body JSON) of each refund record of the day that says refunded."""

    def reconciliations(self, store_id: str, day: str) -> list[tuple[str, str]]:
        """(terminal_id, body JSON) of the day's reconciliation records, oldest first."""

    def ping(self) -> None:
        """Raise StorageUnavailable unless the database answers."""

    def close(self) -> None: ...


def latest_sales(records: Iterable[Record]) -> list[Record]:
    """The sale records of a batch, one per sale (the highest ``seq``), ordered by key.

    One row per key, because PostgreSQL refuses to update a row twice in one statement;
    ordered, so that two receivers storing overlapping batches lock rows in the same order
    and cannot deadlock.
    """
    best: dict[str, Record] = {}
    for record in records:
        if record.out_trade_no is not None:
            seen = best.get(record.out_trade_no)
            if seen is None or record.seq > seen.seq:
                best[record.out_trade_no] = record
    return [best[key] for key in sorted(best)]


def unique_records(records: Iterable[Record]) -> list[Record]:
    """The batch's records, the first of each ``record_id``, ordered by id (see above)."""
    first: dict[str, Record] = {}
    for record in records:
        first.setdefault(record.record_id, record)
    return [first[key] for key in sorted(first)]


def body(record: Record) -> str:
    """The record as stored (JSON text)."""
    return codec.dumps(record.data)


def _figures(rows: Iterable[StateRow]) -> dict[str, int]:
    out = {f"{name}_{what}": 0 for name in FIGURES for what in ("count", "amount")}
    for row in rows:
        if row.state in FIGURES:
            out[f"{row.state}_count"] += row.count
            out[f"{row.state}_amount"] += row.amount
    return out


def _summary_figures(text: str) -> dict[str, int]:
    total = json.loads(text)["summary"]["total"]
    return {f"{name}_{what}": int(total.get(name, {}).get(what, 0))
            for name in FIGURES for what in ("count", "amount")}


def _refund_figures(bodies: Iterable[str], paid: int) -> dict[str, int]:
    amounts = [int(json.loads(text)["refund"]["amount"]) for text in bodies]
    return {"refund_count": len(amounts), "refund_amount": sum(amounts),
            "net_amount": paid - sum(amounts)}


def terminal_totals(terminal_id: str, rows: Sequence[StateRow],
                    summary: str | None, refunds: Sequence[str] = ()) -> dict[str, Any]:
    """One terminal's day: HQ's figures, the terminal's own Z-report figures, and whether
    HQ has every final sale the terminal counted (``matches_summary``; None: no summary yet)."""
    figures = _figures(rows)
    figures |= _refund_figures(refunds, figures["paid_amount"])
    reported = _summary_figures(summary) if summary is not None else None
    matches = None if reported is None else all(
        figures[key] == reported[key] for key in reported)
    return {"terminal_id": terminal_id, **figures, "summary": reported,
            "matches_summary": matches}


def latest_reconciliations(bodies: Sequence[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    """terminal -> channel -> the latest reconciliation of the day (status, counts, the
    differences a person has not resolved): what HQ shows for a terminal's bill day."""
    out: dict[str, dict[str, Any]] = {}
    for terminal, text in bodies:  # oldest first: a later run replaces an earlier one
        body = json.loads(text)["reconciliation"]
        open_items = [d for d in body["differences"] if d.get("resolved_at") is None]
        out.setdefault(terminal, {})[body["channel"]] = {
            "status": body["status"], "counts": body["counts"],
            "unresolved": len(open_items),
            "money_taken": sum(1 for d in open_items if d.get("money_taken")),
            "run_at": body.get("run_at")}
    return out


def day_totals(store_id: str, day: str, rows: Sequence[StateRow],
               summaries: dict[str, str],
               refunds: Sequence[tuple[str, str]] = (),
               reconciliations: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The store's day across its terminals (DESIGN §6 and §9: refund_count, refund_amount
    and net_amount = paid less refunded), with each terminal's figures."""
    terminals = sorted({row.terminal_id for row in rows} | set(summaries)
                       | {t for t, _ in refunds} | {t for t, _ in reconciliations})
    checked = latest_reconciliations(reconciliations)
    figures = _figures(rows)
    figures |= _refund_figures((b for _, b in refunds), figures["paid_amount"])
    return {
        "store_id": store_id, "day": day, **figures,
        "terminals": [
            terminal_totals(t, [r for r in rows if r.terminal_id == t], summaries.get(t),
                            [b for u, b in refunds if u == t])
            | {"reconciliation": checked.get(t, {})}
            for t in terminals
        ],
    }
