# SPDX-License-Identifier: MIT
"""HQ storage in one SQLite file: the receiver's embedded default.

WAL, ``synchronous=FULL``. Each batch is one ``BEGIN IMMEDIATE`` transaction, so several
receiver processes may share the file (they take turns to write); PostgreSQL is the choice
when HQ needs more than one machine.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from posd.core.hq_protocol import Record
from posd.hq.storage import (
    RecordRefused,
    StateRow,
    StorageUnavailable,
    body,
    latest_sales,
    unique_records,
)

_SCHEMA = """
create table if not exists records (
    store_id text not null, terminal_id text not null, record_id text not null,
    seq integer not null, type text not null, day text not null, body text not null,
    received_at real not null,
    primary key (store_id, terminal_id, record_id)
);
create index if not exists records_day on records (store_id, day, type);
create table if not exists sales (
    store_id text not null, terminal_id text not null, out_trade_no text not null,
    day text not null, state text not null, amount_fen integer not null, channel text,
    seq integer not null, record_id text not null,
    primary key (store_id, terminal_id, out_trade_no)
);
create index if not exists sales_day on sales (store_id, day);
"""

_UPSERT_SALE = """
insert into sales (store_id, terminal_id, out_trade_no, day, state, amount_fen, channel, seq,
                   record_id)
values (?, ?, ?, ?, ?, ?, ?, ?, ?)
on conflict (store_id, terminal_id, out_trade_no) do update set
    day = excluded.day, state = excluded.state, amount_fen = excluded.amount_fen,
    channel = excluded.channel, seq = excluded.seq, record_id = excluded.record_id
where excluded.seq > sales.seq
"""


class SqliteStorage:
    kind = "sqlite"

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30.0,
                                         isolation_level=None)
            self._conn.execute("pragma journal_mode=wal")
            self._conn.execute("pragma synchronous=full")
            self._conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as err:
            raise StorageUnavailable(f"cannot open {path}: {err}") from err
        self._lock = threading.Lock()
        self.path = path

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._conn.execute("begin immediate")
                try:
                    yield self._conn
                except BaseException:
                    self._conn.execute("rollback")
                    raise
                self._conn.execute("commit")
            except (sqlite3.IntegrityError, sqlite3.DataError) as err:
                raise RecordRefused(f"SQLite: {err}") from err
            except sqlite3.Error as err:
                raise StorageUnavailable(f"database error: {err}") from err

    def store(self, store_id: str, terminal_id: str, records: Sequence[Record]) -> set[str]:
        records = unique_records(records)
        now = time.time()
        with self._write() as conn:
            marks = ",".join("?" * len(records))
            seen = {row[0] for row in conn.execute(
                f"select record_id from records where store_id = ? and terminal_id = ? "
                f"and record_id in ({marks})",
                [store_id, terminal_id, *(r.record_id for r in records)])}
            new = [r for r in records if r.record_id not in seen]
            conn.executemany(
                "insert into records values (?, ?, ?, ?, ?, ?, ?, ?)",
                [(store_id, terminal_id, r.record_id, r.seq, r.type, r.day, body(r), now)
                 for r in new])
            conn.executemany(_UPSERT_SALE, [
                (store_id, terminal_id, r.out_trade_no, r.day, r.state, r.amount, r.channel,
                 r.seq, r.record_id) for r in latest_sales(records)])
        return {r.record_id for r in new}

    def day(self, store_id: str, day: str) -> tuple[list[StateRow], dict[str, str]]:
        with self._lock:
            try:
                rows = self._conn.execute(
                    "select terminal_id, state, count(*), coalesce(sum(amount_fen), 0) "
                    "from sales where store_id = ? and day = ? group by terminal_id, state",
                    [store_id, day]).fetchall()
                summaries = self._conn.execute(
                    "select terminal_id, body from records where store_id = ? and day = ? "
                    "and type = 'daily_summary' order by seq", [store_id, day]).fetchall()
            except sqlite3.Error as err:
                raise StorageUnavailable(f"database error: {err}") from err
        return [StateRow(*row) for row in rows], dict(summaries)

    def refunds(self, store_id: str, day: str) -> list[tuple[str, str]]:
        return self._bodies(store_id, day, "type = 'refund' and record_id like '%:refunded'")

    def reconciliations(self, store_id: str, day: str) -> list[tuple[str, str]]:
        return self._bodies(store_id, day, "type = 'reconciliation' order by terminal_id, seq")

    def _bodies(self, store_id: str, day: str, which: str) -> list[tuple[str, str]]:
        """(terminal_id, body) of the day's records ``which`` names (an SQL tail)."""
        with self._lock:
            try:
                return [(str(t), str(b)) for t, b in self._conn.execute(
                    f"select terminal_id, body from records where store_id = ? and day = ? "
                    f"and {which}", [store_id, day]).fetchall()]
            except sqlite3.Error as err:
                raise StorageUnavailable(f"database error: {err}") from err

    def ping(self) -> None:
        with self._lock:
            try:
                self._conn.execute("select 1").fetchone()
            except sqlite3.Error as err:
                raise StorageUnavailable(f"database error: {err}") from err

    def close(self) -> None:
        with self._lock:
            self._conn.close()
