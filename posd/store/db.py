# SPDX-License-Identifier: MIT
"""SQLite store (sqlite-utils): sales, their append-only history, and the HQ outbox.

WAL with ``synchronous=FULL``: a committed transaction survives power loss (given storage that
honours flushes). One connection, guarded by a lock, shared by the daemon's threads. The
current row, its history and (for final states) its outbox record change together or not at
all. Payment codes are stored masked only; the full code never reaches this module.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from posd.core.errors import ConflictError, InputError, NotFoundError, StoreError
from posd.core.money import Fen
from posd.core.print_jobs import JobState, PrintJob
from posd.core.refund import Refund, RefundAction, RefundState, Refusal
from posd.core.sale import WORKING, Action, Sale, State

from posd.core.effects import Effect, Outputs, PrintReceipt, TellHq, of_change, of_refund_change
from posd.store.migrations import (
    DIFFERENCES_OPEN_WHERE,
    REFUNDS_OPEN_WHERE,
    OPEN_INDEX,
    OPEN_STATES,
    OPEN_WHERE,
    TAKEN_STATES,
    TOTALS_BUCKET_S,
    migrations,
)


_SALE_FIELDS = (
    "out_trade_no", "order_ref", "channel", "state", "auth_code_masked", "subject",
    "created_at", "updated_at", "pay_sent_at", "last_pay_at", "deadline_at", "paid_at", "next_action",
    "next_at", "pay_attempts", "queries", "reverse_attempts", "recalls", "channel_trade_no",
    "decline_code", "message",
)


def _row(sale: Sale) -> dict[str, Any]:
    row = {name: getattr(sale, name) for name in _SALE_FIELDS}
    row.update(
        amount_fen=int(sale.amount),
        currency="CNY",
        state=sale.state.value,
        next_action=sale.next_action.value if sale.next_action else None,
        pay_maybe_arrived=int(sale.pay_maybe_arrived),
        refunded=None if sale.refunded is None else int(sale.refunded),
    )
    return row


def _dicts(cursor: sqlite3.Cursor) -> list[dict[str, Any]]:
    """A cursor's rows as ``column -> value``: sqlite-utils' ``query`` without its checks of
    the statement and the column names (a third of a small read's time; for queries of one
    table's columns, where names cannot repeat)."""
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor]


def _rows(db: Database, table: str, where: str, args: list[Any],
          order_by: str = "") -> list[dict[str, Any]]:
    """``select *`` from one of the store's tables (plain SQL, like :func:`_insert`)."""
    order = f" order by {order_by}" if order_by else ""
    return _dicts(db.execute(f"select * from {table} where {where}{order}", args))


def _insert(db: Database, table: str, row: dict[str, Any], *, ignore: bool = False) -> int:
    """Insert one row into one of the store's tables; its id (0 when ``ignore`` skipped it).

    Plain SQL, not sqlite-utils' ``Table.insert`` / ``update`` / ``rows_where``, on the paths
    every sale takes: those read sqlite_master and the table's columns at every call (inside
    a transaction, 121 µs an insert against 7, 281 an update against 7, 54 a read by id
    against 12, on the slow Xeon of docs/benchmarks.md). The names come from this module,
    never from a request.
    """
    names = ", ".join(f'"{name}"' for name in row)
    marks = ", ".join("?" for _ in row)
    verb = "insert or ignore" if ignore else "insert"
    cursor = db.execute(f"{verb} into {table} ({names}) values ({marks})", list(row.values()))
    return int(cursor.lastrowid or 0) if cursor.rowcount else 0


def _update(db: Database, table: str, row_id: int, row: dict[str, Any]) -> bool:
    """Update row ``row_id`` of one of the store's tables; False when there is none."""
    sets = ", ".join(f'"{name}" = ?' for name in row)
    cursor = db.execute(f"update {table} set {sets} where id = ?", [*row.values(), row_id])
    return cursor.rowcount > 0


def _sale(row: dict[str, Any]) -> Sale:
    fields = {name: row[name] for name in _SALE_FIELDS}
    fields.update(
        id=row["id"],
        amount=Fen(row["amount_fen"]),
        state=State(row["state"]),
        next_action=Action(row["next_action"]) if row["next_action"] else None,
        pay_maybe_arrived=bool(row["pay_maybe_arrived"]),
        refunded=None if row["refunded"] is None else bool(row["refunded"]),
        subject=row["subject"] or "",
        message=row["message"] or "",
        pay_attempts=row["pay_attempts"] or 0,
        queries=row["queries"] or 0,
        reverse_attempts=row["reverse_attempts"] or 0,
        recalls=row["recalls"] or 0,
    )
    return Sale(**fields)


_REFUND_FIELDS = (
    "sale_id", "reason", "out_refund_no", "channel", "out_trade_no", "channel_refund_no",
    "message", "created_at", "refunded_at", "updated_at", "next_at", "attempts", "queries",
    "fail_code",
)


def _refund_row(refund: Refund) -> dict[str, Any]:
    row = {name: getattr(refund, name) for name in _REFUND_FIELDS}
    row.update(amount_fen=int(refund.amount), state=refund.state.value,
               next_action=refund.next_action.value if refund.next_action else None)
    return row


def _refund(row: dict[str, Any]) -> Refund:
    fields = {name: row[name] for name in _REFUND_FIELDS}
    fields.update(
        id=row["id"], amount=Fen(row["amount_fen"]), state=RefundState(row["state"]),
        next_action=RefundAction(row["next_action"]) if row["next_action"] else None,
        reason=row["reason"] or "", message=row["message"] or "", channel=row["channel"] or "",
        out_trade_no=row["out_trade_no"] or "", attempts=row["attempts"] or 0,
        queries=row["queries"] or 0,
    )
    return Refund(**fields)


#: SQLite's page cache per connection, KiB. Its default (2,000 KiB) fills as the database
#: grows and stays full: measured through bench/rss_sales.py, 1.5 MB of the daemon's RSS per
#: 1,000 sales until it does. The main connection's cache holds the hot index pages of the
#: write path; the health connection reads a few rows. The operating system's page cache
#: serves the rest.
CACHE_KIB = 1024
PEEK_CACHE_KIB = 256

#: what a caller of :meth:`Store.create_refund` decides inside its transaction: the refund
#: to write, or why not (from the sale, its refunds so far and the next sequence number).
MakeRefund = Callable[[Sale, list[Refund], int], "Refund | Refusal"]


class Store:
    """The daemon's database. Thread-safe: every method takes the store's lock."""

    def __init__(self, db: Database, *, outputs: Outputs = Outputs(),  # noqa: B008 - frozen
                 path: str | None = None) -> None:
        self._db = db
        self._lock = threading.RLock()
        self._outputs = outputs
        self._path = path
        #: a second, read-only connection for /v1/health (``peek``): WAL lets it read while a
        #: sale's write-ahead commit (and its fsync) holds the main one, so health never waits
        #: behind a scan and a scan never waits behind health.
        self._peek_db: Database | None = None
        self._peek_lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(cls, path: Path | str, *, outputs: Outputs = Outputs()) -> Store:  # noqa: B008
        """Open (creating if needed) and migrate. Raises StoreError when unusable.

        ``outputs``: what a sale arriving in a final state brings with it, in the same
        transaction (posd.core.effects): the receipts it prints, and whether it is queued
        for HQ. ``Outputs(hq=False)`` (a till with no ``hq.url``): final sales are not queued,
        so a till that never syncs does not grow an outbox forever. Its sales stay in the
        store; a till that starts syncing later sends what happens from then on.
        """
        try:
            if isinstance(path, Path):
                path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(str(path), check_same_thread=False, timeout=10.0,
                                   isolation_level=None)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            db = Database(conn)
            migrations.apply(db)
        except (sqlite3.Error, OSError) as err:
            raise StoreError(f"cannot open database {path}: {err}") from err
        return cls(db, outputs=outputs, path=None if str(path) == ":memory:" else str(path))

    def close(self) -> None:
        with self._lock:
            self._db.close()
        with self._peek_lock:
            self._closed = True  # the read-only connection is not opened again
            if self._peek_db is not None:
                self._peek_db.close()
                self._peek_db = None

    @contextmanager
    def _tx(self) -> Iterator[Database]:
        with self._lock:
            try:
                with self._db.atomic() as db:
                    yield db
            except sqlite3.Error as err:
                raise StoreError(f"database error: {err}") from err

    @contextmanager
    def _read(self) -> Iterator[Database]:
        with self._lock:
            try:
                yield self._db
            except sqlite3.Error as err:
                raise StoreError(f"database error: {err}") from err

    @contextmanager
    def _peek(self) -> Iterator[Database]:
        """The read-only connection (the main one for an in-memory database)."""
        if self._path is None:
            with self._read() as db:
                yield db
            return
        with self._peek_lock:
            if self._closed:
                raise StoreError("database error: Cannot operate on a closed database.")
            try:
                if self._peek_db is None:
                    conn = sqlite3.connect(f"file:{self._path}?mode=ro", uri=True,
                                           check_same_thread=False, timeout=10.0,
                                           isolation_level=None)
                    conn.execute(f"PRAGMA cache_size=-{PEEK_CACHE_KIB}")
                    # one wrapper for the connection's life: sqlite-utils' constructor runs a
                    # PRAGMA and its plugin hook each time (a tenth of health's cost)
                    self._peek_db = Database(conn)
                yield self._peek_db
            except sqlite3.Error as err:
                raise StoreError(f"database error: {err}") from err

    def pragma(self, name: str) -> Any:
        with self._read() as db:
            return db.execute(f"PRAGMA {name}").fetchone()[0]

    # --- sales ---------------------------------------------------------------------------

    def create_sale(
        self,
        make: Callable[[int], Sale],
        *,
        order_ref: str | None,
        idempotency_key: str | None,
        detail: str = "created",
        awaiting: bool = False,
    ) -> tuple[Sale, bool]:
        """Insert the sale ``make(seq)`` builds. Returns (sale, created).

        The same ``idempotency_key`` returns the sale it created before (created=False). An
        order that already has a paid or unresolved sale is refused with ConflictError, and so
        is a sale ``awaiting`` a code while another one waits (DESIGN §2 rule 7).
        """
        with self._tx() as db:
            if idempotency_key is not None:
                rows = _rows(db, "sales", "idempotency_key = ?", [idempotency_key])
                if rows:
                    return _sale(rows[0]), False
            if order_ref is not None:
                self._check_order_free(db, order_ref)
            if awaiting:
                self._check_none_awaiting(db)
            seq = self._next(db, "sale_seq")
            sale = make(seq)
            row = _row(sale) | {"idempotency_key": idempotency_key}
            row.pop("id", None)
            sale_id = _insert(db, "sales", row)
            sale = _sale({**row, "id": sale_id})
            self._event(db, sale, None, detail)
            self._write(db, of_change(None, sale, self._outputs))
            return sale, True

    def _check_order_free(self, db: Database, order_ref: str) -> None:
        marks = ", ".join("?" for _ in TAKEN_STATES)
        rows = list(db.query(
            f"select id, state from sales where order_ref = ? and state in ({marks}) limit 1",
            [order_ref, *TAKEN_STATES],
        ))
        if rows:
            sale_id, state = rows[0]["id"], rows[0]["state"]
            if state == State.PAID:
                why = f"order {order_ref!r} is already paid (sale {sale_id})"
            else:
                why = f"order {order_ref!r} has an unresolved sale {sale_id} in state {state}"
            raise ConflictError(why)

    def _check_none_awaiting(self, db: Database) -> None:
        row = db.execute(f"select id from sales {OPEN_INDEX} where {OPEN_WHERE} and "
                         "state = 'awaiting_code' limit 1").fetchone()
        if row is not None:
            raise ConflictError(
                f"sale {row[0]} is already waiting for the customer's payment code: cancel it "
                "first (POST /v1/sales/{id}/cancel), or send the code with the new sale")

    def _next(self, db: Database, name: str) -> int:
        db.execute(
            "insert into counters(name, value) values (?, 1) "
            "on conflict(name) do update set value = value + 1",
            [name],
        )
        return int(db.execute("select value from counters where name = ?", [name]).fetchone()[0])

    def save(self, sale: Sale, action: Action | None = None, detail: str = "") -> Sale:
        """Write the sale's new state with an event and the change's effects (a receipt to
        print, a record for HQ: posd.core.effects), all in one transaction."""
        with self._tx() as db:
            before = State(self._replace(db, "sales", sale.id, _row(sale)))
            self._event(db, sale, action, detail)
            self._write(db, of_change(before, sale, self._outputs))
        return sale

    @staticmethod
    def _replace(db: Database, table: str, row_id: int, row: dict[str, Any]) -> str:
        """Update a sale or refund row; the state it was in (NotFoundError: no such row)."""
        found = db.execute(f"select state from {table} where id = ?", [row_id]).fetchone()
        if found is None:
            raise NotFoundError(f"no {table[:-1]} {row_id}")
        _update(db, table, row_id, row)
        return str(found[0])

    @staticmethod
    def _history(db: Database, table: str, owner: str, record: Sale | Refund,
                 action: Action | RefundAction | None, detail: str) -> None:
        """One line of a sale's or refund's append-only history."""
        _insert(db, table, {
            owner: record.id, "at": record.updated_at, "state": record.state.value,
            "action": action.value if action else None, "detail": detail[:500],
            "message": record.message,
        })

    def _event(self, db: Database, sale: Sale, action: Action | None, detail: str) -> None:
        self._history(db, "sale_events", "sale_id", sale, action, detail)

    def _write(self, db: Database, effects: tuple[Effect, ...]) -> None:
        for effect in effects:
            match effect:
                case PrintReceipt(job=job):
                    self._insert_job(db, job)
                case TellHq():
                    _insert(db, "outbox", {
                        "record_id": effect.record_id, "kind": effect.kind,
                        "payload": json.dumps(effect.payload, ensure_ascii=False),
                        "amount_fen": effect.amount_fen, "created_at": effect.created_at,
                    }, ignore=True)  # the same final state recorded twice is one record

    def get(self, sale_id: int) -> Sale:
        with self._read() as db:
            rows = _rows(db, "sales", "id = ?", [sale_id])
        if not rows:
            raise NotFoundError(f"no sale {sale_id}")
        return _sale(rows[0])

    def find(
        self, *, order_ref: str | None = None, since: float | None = None,
        until: float | None = None, states: tuple[State, ...] | None = None,
        peek: bool = False,
    ) -> list[Sale]:
        """Sales by order, creation time and state, oldest first. ``peek``: on the read-only
        connection (health: what is committed, without waiting for a writer)."""
        where: list[str] = ["1 = 1"]
        args: list[object] = []
        hint = ""
        if states and set(states) <= set(OPEN_STATES) and since is None and until is None:
            # Every open sale (health, recovery): the partial index, named (after ANALYZE the
            # planner would scan). Not with a time range: the Z-report's day of needs-attention
            # sales is a range of the (state, created_at) index, where the partial one would
            # read every open sale of every day (2.5 ms on 10,000, bench/z_report.py).
            where.append(OPEN_WHERE)  # the partial index's own WHERE, word for word
            hint = OPEN_INDEX
        if order_ref is not None:
            where.append("order_ref = ?")
            args.append(order_ref)
        if since is not None:
            where.append("created_at >= ?")
            args.append(since)
        if until is not None:
            where.append("created_at < ?")
            args.append(until)
        if states:
            where.append(f"state in ({', '.join('?' for _ in states)})")
            args.extend(s.value for s in states)
        with self._peek() if peek else self._read() as db:
            rows = _dicts(db.conn.execute(
                f"select * from sales {hint} where {' and '.join(where)} order by id", args))
        return [_sale(r) for r in rows]

    def unfinished(self) -> list[Sale]:
        """Every sale that still has work to do (for start-up recovery)."""
        return self.find(states=tuple(s for s in State if s in WORKING))

    def events(self, sale_id: int) -> list[dict[str, Any]]:
        with self._read() as db:
            return _rows(db, "sale_events", "sale_id = ?", [sale_id], order_by="id")

    # --- refunds (posd.core.refund) ----------------------------------------------------------

    def create_refund(self, sale_id: int, make: MakeRefund, *,
                      idempotency_key: str | None = None) -> tuple[Refund, bool]:
        """Write the refund ``make`` decides on, in one transaction with the reads it decides
        from (the sale and its refunds): two managers refunding at once cannot both take
        what is left. Returns (refund, created); the same ``idempotency_key`` returns the
        refund it created before. ConflictError / InputError with ``make``'s sentence."""
        with self._tx() as db:
            if idempotency_key is not None:
                rows = _rows(db, "refunds", "idempotency_key = ?", [idempotency_key])
                if rows:
                    found = _refund(rows[0])
                    if found.sale_id != sale_id:
                        raise ConflictError("this Idempotency-Key was used for a refund of "
                                            f"sale {found.sale_id}")
                    return found, False
            rows = _rows(db, "sales", "id = ?", [sale_id])
            if not rows:
                raise NotFoundError(f"no sale {sale_id}")
            sale = _sale(rows[0])
            refunds = [_refund(r) for r in _rows(db, "refunds", "sale_id = ?", [sale_id],
                                                         order_by="id")]
            decided = make(sale, refunds, self._next(db, "refund_seq"))
            if isinstance(decided, Refusal):
                raise (ConflictError if decided.kind == "conflict" else InputError)(
                    decided.reason)
            row = _refund_row(decided) | {"idempotency_key": idempotency_key}
            refund = replace(decided, id=_insert(db, "refunds", row))
            self._refund_event(db, refund, None, "created")
            self._write(db, of_refund_change(None, refund, self._outputs))
            return refund, True

    def save_refund(self, refund: Refund, action: RefundAction | None = None,
                    detail: str = "") -> Refund:
        """Write the refund's new state with an event and its effects (slip, HQ record)."""
        with self._tx() as db:
            before = RefundState(self._replace(db, "refunds", refund.id, _refund_row(refund)))
            self._refund_event(db, refund, action, detail)
            self._write(db, of_refund_change(before, refund, self._outputs))
        return refund

    def _refund_event(self, db: Database, refund: Refund, action: RefundAction | None,
                      detail: str) -> None:
        self._history(db, "refund_events", "refund_id", refund, action, detail)

    def get_refund(self, refund_id: int) -> Refund:
        with self._read() as db:
            rows = _rows(db, "refunds", "id = ?", [refund_id])
        if not rows:
            raise NotFoundError(f"no refund {refund_id}")
        return _refund(rows[0])

    def find_refunds(self, *, sale_id: int | None = None, since: float | None = None,
                     until: float | None = None, open_only: bool = False,
                     peek: bool = False) -> list[Refund]:
        """Refunds by sale and creation time, oldest first; ``open_only``: those in flight or
        needing a person (a partial index: few rows however old the store is)."""
        where, args = ["1 = 1"], []  # type: tuple[list[str], list[object]]
        hint = ""
        if open_only:
            where.append(REFUNDS_OPEN_WHERE)  # the partial index's own WHERE, word for word
            hint = "indexed by refunds_open"
        for clause, value in (("sale_id = ?", sale_id), ("created_at >= ?", since),
                              ("created_at < ?", until)):
            if value is not None:
                where.append(clause)
                args.append(value)
        with self._peek() if peek else self._read() as db:
            rows = _dicts(db.conn.execute(f"select * from refunds {hint} where "
                                          f"{' and '.join(where)} order by id", args))
        return [_refund(r) for r in rows]

    def refund_events(self, refund_id: int) -> list[dict[str, Any]]:
        with self._read() as db:
            return _rows(db, "refund_events", "refund_id = ?", [refund_id], order_by="id")

    def refunded_amounts(self, sale_ids: list[int]) -> dict[int, int]:
        """``sale id -> fen refunded`` (refunds in state refunded) for the API's sales."""
        if not sale_ids:
            return {}
        marks = ", ".join("?" for _ in sale_ids)
        with self._read() as db:
            rows = db.execute(f"select sale_id, sum(amount_fen) from refunds where sale_id in "
                              f"({marks}) and state = 'refunded' group by sale_id",
                              sale_ids).fetchall()
        return {int(a): int(b) for a, b in rows}

    def refund_totals(self, since: float, until: float) -> list[tuple[str, int, int]]:
        """(channel, count, fen) of the refunds refunded in [since, until), for the Z-report."""
        with self._read() as db:
            rows = db.execute("select coalesce(channel, ''), count(*), sum(amount_fen) from "
                              "refunds where state = 'refunded' and refunded_at >= ? and "
                              "refunded_at < ? group by 1 order by 1", [since, until]).fetchall()
        return [(str(c), int(n), int(a)) for c, n, a in rows]

    # --- print jobs and the Z-report (posd.devices.print_queue) ---------------------------------------

    def add_print_job(self, job: PrintJob) -> PrintJob | None:
        """Queue ``job``; None when a job with the same key was queued before."""
        with self._tx() as db:
            if job.reprint and job.sale_id is not None and db.execute(
                    "select 1 from print_jobs where sale_id = ? and reprint = 1 and "
                    "state = 'queued' limit 1", [job.sale_id]).fetchone():
                return None  # a reprint of it is already waiting for the printer
            return self._insert_job(db, job)

    def _insert_job(self, db: Database, job: PrintJob) -> PrintJob | None:
        job_id = _insert(db, "print_jobs", job.row(), ignore=True)
        return replace(job, id=job_id) if job_id else None

    def update_print_job(self, job: PrintJob) -> None:
        with self._tx() as db:
            if not _update(db, "print_jobs", job.id, job.row()):
                raise NotFoundError(f"no print job {job.id}")

    def print_jobs(self, state: JobState, *, since: float | None = None,
                   limit: int = 100, peek: bool = False) -> list[PrintJob]:
        """Jobs in ``state`` (created at or after ``since``), the next one due first."""
        with self._peek() if peek else self._read() as db:
            # Plain SQL: sqlite-utils' table() and rows_where() read sqlite_master first
            # (a third of /v1/health's time, where the print worker's health calls this).
            cursor = db.conn.execute(
                "select * from print_jobs where state = ? and created_at >= ? "
                "order by next_at, id limit ?", [state.value, since or 0.0, limit])
            return [PrintJob.from_row(row) for row in _dicts(cursor)]

    def print_job(self, job_id: int) -> PrintJob:
        with self._read() as db:
            rows = _rows(db, "print_jobs", "id = ?", [job_id])
        if not rows:
            raise NotFoundError(f"no print job {job_id}")
        return PrintJob.from_row(rows[0])

    def sale_totals(self, since: float, until: float) -> list[tuple[str | None, str, int, int]]:
        """(channel, state, count, amount in fen) of the sales created in [since, until):
        the Z-report's figures, from the 15-minute rollup (002_sale_totals), or summed over
        the sales themselves when a bound is not on a 15-minute boundary."""
        if since % TOTALS_BUCKET_S or until % TOTALS_BUCKET_S:
            sql = ("select channel, state, count(*), coalesce(sum(amount_fen), 0) from sales "
                   "where created_at >= ? and created_at < ? group by channel, state")
        else:
            since, until = since // TOTALS_BUCKET_S, until // TOTALS_BUCKET_S
            sql = ("select nullif(channel, ''), state, sum(count), sum(amount) from sale_totals "
                   "where bucket >= ? and bucket < ? group by channel, state "
                   "having sum(count) != 0")
        with self._read() as db:
            return [tuple(row) for row in db.execute(sql, [since, until]).fetchall()]

    # --- reconciliations (posd.reconcile, DESIGN §10) ---------------------------------------

    def sales_by_numbers(self, numbers: list[str]) -> list[Sale]:
        """The sales with these ``out_trade_no`` (the ones a bill names)."""
        return self._by_numbers("sales", "out_trade_no", numbers, _sale)

    def refunds_by_numbers(self, numbers: list[str]) -> list[Refund]:
        """The refunds with these ``out_refund_no``."""
        return self._by_numbers("refunds", "out_refund_no", numbers, _refund)

    def _by_numbers(self, table: str, column: str, numbers: list[str],
                    make: Callable[[dict[str, Any]], Any]) -> list[Any]:
        found: list[Any] = []
        with self._read() as db:
            for start in range(0, len(numbers), 500):  # SQLite's limit on ? is 32766
                chunk = numbers[start:start + 500]
                found.extend(make(row) for row in db.query(
                    f"select * from {table} where {column} in "
                    f"({', '.join('?' for _ in chunk)})", chunk))
        return found

    def save_reconciliation(self, channel: str, day: str, *, status: str, run_at: float,
                            result: dict[str, Any], bill_file: str = "", detail: str = "",
                            store_id: str = "", terminal_id: str = "") -> int:
        """Keep a channel's result for ``day`` (replacing an earlier run's), its differences
        one row each so that a manager can resolve them (a difference found again keeps its
        resolution; one that matches now is resolved as such), and its HQ record, in one
        transaction. Returns the reconciliation's id."""
        keys = {d["key"]: d for d in result["differences"]}
        with self._tx() as db:
            rec_id = self._upsert_reconciliation(db, channel, day, {
                "status": status, "run_at": run_at, "bill_file": bill_file, "detail": detail,
                "result": json.dumps(result, ensure_ascii=False)})
            table = db.table("reconciliation_differences")
            known = {row["key"]: row for row in table.rows_where(
                "reconciliation_id = ?", [rec_id])}
            for key, row in known.items():
                if key not in keys and row["resolved_at"] is None:
                    table.update(row["id"], {"resolved_at": run_at,
                                             "resolved_note": "matched when the day was run again"})
            for key, item in keys.items():
                fields = {"class": item["class"], "money_taken": int(bool(item["money_taken"])),
                          "payload": json.dumps(item, ensure_ascii=False)}
                if key in known:
                    table.update(known[key]["id"], fields)
                else:
                    table.insert({"reconciliation_id": rec_id, "key": key, "found_at": run_at}
                                 | fields)
            self._tell_hq_reconciliation(db, rec_id, store_id, terminal_id)
        return rec_id

    def _upsert_reconciliation(self, db: Database, channel: str, day: str,
                               fields: dict[str, Any]) -> int:
        row = db.execute("select id, attempts from reconciliations where channel = ? and "
                         "day = ?", [channel, day]).fetchone()
        if row is None:
            return int(db.table("reconciliations").insert(
                {"channel": channel, "day": day, "attempts": 1} | fields).last_pk or 0)
        db.table("reconciliations").update(row[0], fields | {"attempts": (row[1] or 0) + 1})
        return int(row[0])

    def record_unreconciled(self, channel: str, day: str, *, status: str, run_at: float,
                            detail: str) -> int:
        """A run that found no bill (``waiting``) or could not read it (``failed``). A day
        reconciled before keeps its result and status; only the detail says what failed."""
        with self._tx() as db:
            row = db.execute("select id, result from reconciliations where channel = ? and "
                             "day = ?", [channel, day]).fetchone()
            if row is not None and row[1]:
                db.execute("update reconciliations set detail = ?, attempts = attempts + 1 "
                           "where id = ?", [detail, row[0]])
                return int(row[0])
            return self._upsert_reconciliation(db, channel, day, {
                "status": status, "run_at": run_at, "detail": detail, "result": None,
                "bill_file": None})

    def _tell_hq_reconciliation(self, db: Database, rec_id: int, store_id: str,
                                terminal_id: str) -> None:
        if not self._outputs.hq:
            return
        record = self._reconciliation(db, rec_id)
        if record is None or record["result"] is None:
            return
        payload = {"type": "reconciliation", "version": 1, "reconciliation": record["result"]
                   | {"store_id": store_id, "terminal_id": terminal_id,
                      "run_at": record["run_at"]}}
        seq = self._next(db, "reconciliation_seq")
        _insert(db, "outbox", {
            "record_id": f"reconciliation:{record['channel']}:{record['day']}:{seq}",
            "kind": "reconciliation", "amount_fen": 0,
            "payload": json.dumps(payload, ensure_ascii=False), "created_at": record["run_at"]})

    def _reconciliation(self, db: Database, rec_id: int) -> dict[str, Any] | None:
        rows = list(db.table("reconciliations").rows_where("id = ?", [rec_id]))
        if not rows:
            return None
        row = rows[0]
        result = json.loads(row["result"]) if row["result"] else None
        if result is not None:
            marks = {r["key"]: r for r in db.table("reconciliation_differences").rows_where(
                "reconciliation_id = ?", [rec_id])}
            for item in result["differences"]:
                mark = marks.get(item["key"])
                item["id"] = mark["id"] if mark else None
                item["resolved_at"] = mark["resolved_at"] if mark else None
                item["resolved_note"] = mark["resolved_note"] if mark else None
        return {"id": row["id"], "channel": row["channel"], "day": row["day"],
                "status": row["status"], "run_at": row["run_at"], "detail": row["detail"] or "",
                "bill_file": row["bill_file"] or "", "attempts": row["attempts"] or 0,
                "result": result}

    def reconciliations(self, *, day: str | None = None, channel: str | None = None,
                        since_day: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        """Kept results, newest day first, each difference with its ``id`` and resolution."""
        where, args = ["1 = 1"], []  # type: tuple[list[str], list[object]]
        for clause, value in (("day = ?", day), ("channel = ?", channel),
                              ("day >= ?", since_day)):
            if value is not None:
                where.append(clause)
                args.append(value)
        with self._read() as db:
            ids = [r[0] for r in db.execute(
                f"select id from reconciliations where {' and '.join(where)} "
                "order by day desc, channel limit ?", [*args, limit]).fetchall()]
            return [r for r in (self._reconciliation(db, i) for i in ids) if r is not None]

    def open_differences(self, *, peek: bool = False) -> list[dict[str, Any]]:
        """Differences no person has resolved (a partial index: few rows, whatever the age
        of the store), oldest first: id, channel, day, money_taken and the difference."""
        with self._peek() if peek else self._read() as db:
            rows = db.execute(
                "select d.id, r.channel, r.day, d.money_taken, d.payload from "
                "reconciliation_differences d indexed by differences_open join reconciliations "
                f"r on r.id = d.reconciliation_id where d.{DIFFERENCES_OPEN_WHERE} "
                "order by d.id").fetchall()
        return [{"id": i, "channel": c, "day": d, "money_taken": bool(m)} | json.loads(p)
                for i, c, d, m, p in rows]

    def resolve_difference(self, difference_id: int, note: str, at: float, *,
                           store_id: str = "", terminal_id: str = "") -> dict[str, Any]:
        """A person says what became of a difference; HQ gets the day's result again."""
        if not note.strip():
            raise InputError("say what was done about it (--note / note): it is kept")
        with self._tx() as db:
            rows = list(db.table("reconciliation_differences").rows_where(
                "id = ?", [difference_id]))
            if not rows:
                raise NotFoundError(f"no reconciliation difference {difference_id}")
            if rows[0]["resolved_at"] is not None:
                raise ConflictError(f"difference {difference_id} was resolved already: "
                                    f"{rows[0]['resolved_note']}")
            db.table("reconciliation_differences").update(
                difference_id, {"resolved_at": at, "resolved_note": note.strip()[:500]})
            self._tell_hq_reconciliation(db, rows[0]["reconciliation_id"], store_id,
                                         terminal_id)
            payload: dict[str, Any] = json.loads(rows[0]["payload"])
        return payload | {"id": difference_id, "resolved_at": at,
                          "resolved_note": note.strip()[:500]}

    def first_sale_at(self) -> float | None:
        """When the first sale was made (None: none yet): nothing before it is reconciled."""
        with self._read() as db:
            row = db.execute("select created_at from sales order by id limit 1").fetchone()
        return None if row is None else float(row[0])

    def pending_reconciliations(self, since_day: str) -> list[tuple[str, str, str]]:
        """(channel, day, status) of the days since ``since_day`` still waiting for a bill,
        failed, or holding records for the next day's bill."""
        with self._read() as db:
            return [tuple(r) for r in db.execute(
                "select channel, day, status from reconciliations where day >= ? and status "
                "in ('waiting', 'failed', 'held') order by day", [since_day]).fetchall()]

    # --- outbox --------------------------------------------------------------------------

    def outbox_backlog(self) -> dict[str, Any]:
        """Records not yet acknowledged by HQ: count, the money that moved in them (fen: paid
        sales; a cancelled or declined sale moved none), and the oldest's time. Constant time:
        counters kept by triggers (004), the oldest by the ``outbox_pending`` index."""
        with self._peek() as db:
            counts = dict(db.execute("select name, value from counters where name in "
                                     "('backlog_count', 'backlog_amount')").fetchall())
            oldest = db.execute("select created_at from outbox indexed by outbox_pending "
                                "where acked_at is null order by seq limit 1").fetchone()
        return {"count": counts.get("backlog_count", 0),
                "amount": counts.get("backlog_amount", 0),
                "oldest_at": oldest[0] if oldest else None}

    # --- outbox: HQ sync (posd.sync) -------------------------------------------------------

    def outbox_add(self, record_id: str, kind: str, payload: dict[str, Any], amount: int,
                   created_at: float) -> bool:
        """Enqueue a record for HQ unless one with ``record_id`` is there. True if added."""
        with self._tx() as db:
            if db.execute("select 1 from outbox where record_id = ?", [record_id]).fetchone():
                return False
            _insert(db, "outbox", {
                "record_id": record_id, "kind": kind, "amount_fen": amount,
                "payload": json.dumps(payload, ensure_ascii=False), "created_at": created_at,
            })
            return True

    def outbox_unsent(self, limit: int, after_seq: int = 0) -> list[OutboxRow]:
        """The oldest records after ``after_seq`` HQ has neither acknowledged nor rejected."""
        with self._read() as db:
            rows = db.execute(
                f"select {_OUTBOX_COLUMNS} from outbox indexed by outbox_unsent where "
                "acked_at is null and rejected_at is null and seq > ? order by seq limit ?",
                [after_seq, limit]).fetchall()
        return [OutboxRow(*row) for row in rows]

    def outbox_rejected_count(self) -> int:
        """How many records HQ rejected (``outbox_quarantine``: not a scan of the backlog)."""
        with self._peek() as db:
            # INDEXED BY: after ANALYZE the planner prefers the acked_at index, i.e. reading
            # the whole backlog (6 ms on 20,000 unsent records, measured) to count a few.
            return int(db.execute("select count(*) from outbox indexed by outbox_quarantine "
                                  "where acked_at is null and rejected_at is not null"
                                  ).fetchone()[0])

    def outbox_rejected(self) -> list[OutboxRow]:
        """Records HQ rejected (quarantined: kept, not sent again until re-queued)."""
        with self._read() as db:
            rows = db.execute(
                f"select {_OUTBOX_COLUMNS} from outbox indexed by outbox_quarantine where "
                "acked_at is null and rejected_at is not null order by seq").fetchall()
        return [OutboxRow(*row) for row in rows]

    def outbox_settle(self, acked: list[int], rejected: list[tuple[int, str]],
                      at: float) -> None:
        """Mark what HQ acknowledged and quarantine what it rejected, in one transaction."""
        with self._tx() as db:
            db.conn.executemany(
                "update outbox set acked_at = ? where id = ? and acked_at is null",
                [(at, row_id) for row_id in acked])
            db.conn.executemany(
                "update outbox set rejected_at = ?, reject_reason = ? where id = ?",
                [(at, reason[:500], row_id) for row_id, reason in rejected])

    def outbox_requeue_rejected(self) -> int:
        """Send the quarantined records again (e.g. once HQ is upgraded). Returns how many."""
        with self._tx() as db:
            return db.execute("update outbox set rejected_at = null, reject_reason = null "
                              "where acked_at is null and rejected_at is not null").rowcount

    def outbox_prune(self, acked_before: float) -> int:
        """Delete records HQ acknowledged before ``acked_before``. Returns how many."""
        with self._tx() as db:
            return db.execute("delete from outbox where acked_at is not null and acked_at < ?",
                              [acked_before]).rowcount


_OUTBOX_COLUMNS = ("id, seq, record_id, kind, payload, amount_fen, created_at, acked_at, "
                   "rejected_at, reject_reason")


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One outbox record as stored (``payload`` is its JSON text)."""

    id: int
    seq: int
    record_id: str
    kind: str
    payload: str
    amount_fen: int
    created_at: float
    acked_at: float | None
    rejected_at: float | None
    reject_reason: str | None
