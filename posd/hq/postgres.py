# SPDX-License-Identifier: MIT
"""HQ storage in PostgreSQL (psycopg 3): production, any number of receiver processes.

Every receiver process is stateless. A batch is one transaction: COPY into a per-connection
temporary table, then one ``INSERT ... ON CONFLICT DO NOTHING RETURNING`` into ``records``
(which says which records were new).

``records`` is partitioned by business month (``PARTITION BY RANGE (day)``, one partition
``records_YYYY_MM`` a month), so that a chain's years of records stay cheap to query, vacuum
and archive (a month is dropped or detached whole). A unique key on a partitioned table must
include the partition column, so the key is (store_id, terminal_id, record_id, day): a
record's day comes from its own content (a sale's business day of ``created_at``; a
refund's of ``refunded_at``), so the same record sent again has the same day and is stored
once. A month's partitions are made before the first batch that needs them, under the schema
lock, and remembered by the process.

A sale record's state, amount, channel and ``out_trade_no`` are columns of its row, and the
day totals (``day``) take each sale's record with the highest ``seq`` among the day's rows
of one partition, read through the ``(store_id, day, type)`` index: never a scan of all
records. (Until 2026-12-04 a second table, ``sales``, kept that latest state by an upsert per
sale record; it cost PostgreSQL as much as the records themselves. A database made with it,
partitioned or from before partitioning, is used as it is, the old way; docs/hq-sync.md
says how to move it.) Bodies are ``json``: checked by PostgreSQL and kept as the receiver
wrote them, queryable with ``->`` / ``->>`` and expression indexes, at half of ``jsonb``'s
parsing cost; a database whose ``body`` is ``jsonb`` keeps it.

Two processes given the same batch at the same moment store it once and both answer
correctly (the second waits on the first's index entries, then finds the rows there). Rows
are written in key order, so overlapping batches cannot deadlock; if PostgreSQL reports one
anyway, the batch is answered 503 and the terminal sends it again.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import date, timedelta
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from posd.core.hq_protocol import Record
from posd.hq.storage import RecordRefused, StateRow, StorageUnavailable, body, unique_records

log = logging.getLogger(__name__)

#: any fixed number: serialises schema creation between receivers starting together.
_SCHEMA_LOCK = 0x706F7364

#: this layout (2026-12-04 on): one partitioned table; see the module's docstring.
_SCHEMA = """
create table if not exists records (
    store_id text not null, terminal_id text not null, record_id text not null,
    seq bigint not null, type text not null, day date not null, body json not null,
    out_trade_no text, state text, amount_fen bigint, channel text,
    received_at timestamptz not null default now(),
    primary key (store_id, terminal_id, record_id, day)
) partition by range (day);
create index if not exists records_day on records (store_id, day, type);
"""

#: the tables there are, their kinds in pg_class ('p' partitioned, 'r' ordinary) and the
#: type of records.body
_LAYOUT = """
select c.relname, c.relkind, format_type(a.atttypid, a.atttypmod) from pg_class c
left join pg_attribute a on a.attrelid = c.oid and a.attname = 'body'
where c.relname in ('records', 'sales') and c.relnamespace = current_schema()::regnamespace
"""

#: each connection's staging table: a batch is COPYed in (a 500-record batch as text[]
#: parameters took 40 ms to send and parse, COPY takes 6), then moved by one statement (two
#: on a database with ``sales``). ``body`` is text here, parsed once, into records' type.
_STAGING = """
create temp table incoming (
    record_id text, seq bigint, type text, day date, body text, out_trade_no text,
    state text, amount_fen bigint, channel text
) on commit delete rows
"""

_COPY = ("copy incoming (record_id, seq, type, day, body, out_trade_no, state, amount_fen, "
         "channel) from stdin")

_INSERT_RECORDS = """
insert into records (store_id, terminal_id, record_id, seq, type, day, body, out_trade_no,
                     state, amount_fen, channel)
select %s, %s, record_id, seq, type, day, body::{body}, out_trade_no, state, amount_fen,
    channel
from incoming
order by record_id
on conflict do nothing
returning record_id
"""

#: a day's sales per terminal and state: each sale's record with the highest seq (the first
#: stored of equal ones), from one partition through records_day
_DAY_SALES = """
select terminal_id, state, count(*), coalesce(sum(amount_fen), 0) from (
    select distinct on (terminal_id, out_trade_no) terminal_id, state, amount_fen
    from records where store_id = %s and day = %s and type = 'sale'
    order by terminal_id, out_trade_no, seq desc, received_at, record_id
) latest group by terminal_id, state
"""

#: the layout with a ``sales`` table (before 2026-12-04): records without the sale's
#: columns, and one upsert per batch into ``sales``
_INSERT_RECORDS_WITH_SALES = """
insert into records (store_id, terminal_id, record_id, seq, type, day, body)
select %s, %s, record_id, seq, type, day, body::{body} from incoming
order by record_id
on conflict do nothing
returning record_id
"""

#: one row per sale (PostgreSQL refuses to update a row twice in one statement): the
#: record with the highest seq; in key order, like the records, so that receivers storing
#: overlapping batches lock rows in the same order.
_UPSERT_SALES = """
insert into sales (store_id, terminal_id, out_trade_no, day, state, amount_fen, channel, seq,
                   record_id)
select distinct on (out_trade_no) %s, %s, out_trade_no, day, state, amount_fen, channel, seq,
    record_id
from incoming where out_trade_no is not null
order by out_trade_no, seq desc
on conflict ({key}) do update set
    day = excluded.day, state = excluded.state, amount_fen = excluded.amount_fen,
    channel = excluded.channel, seq = excluded.seq, record_id = excluded.record_id
where excluded.seq > sales.seq
"""

_DAY_SALES_TABLE = """
select terminal_id, state, count(*), coalesce(sum(amount_fen), 0)
from sales where store_id = %s and day = %s group by terminal_id, state
"""

_Unavailable = (psycopg.OperationalError, PoolTimeout)


def _text(value: str) -> str:
    """``value`` as a field of COPY's text format: its backslashes doubled, and the three
    characters that end a field or a row written as escapes."""
    return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r"))


def copy_text(records: Sequence[Record]) -> str:
    """The staging table's rows for a batch in COPY's text format, in ``_COPY``'s column
    order, each record id once (:func:`unique_records`): one buffer for the whole batch
    (psycopg's ``write_row`` per record was a tenth of the receiver's CPU). The protocol's
    checks leave only the body and the channel free text (record ids, days, numbers, types
    and states match patterns or fixed sets); those two are escaped."""
    lines = []
    for r in unique_records(records):
        if r.out_trade_no is None:
            tail = "\\N\t\\N\t\\N\t\\N"
        else:
            channel = "\\N" if r.channel is None else _text(r.channel)
            tail = f"{r.out_trade_no}\t{r.state}\t{r.amount}\t{channel}"
        lines.append(f"{r.record_id}\t{r.seq}\t{r.type}\t{r.day}\t{_text(body(r))}\t{tail}\n")
    return "".join(lines)


def month_of(day: str) -> date:
    """The first day of ``day``'s month (``day`` is checked YYYY-MM-DD by the protocol; a
    day that does not exist, 2024-02-30, still has a month, and PostgreSQL refuses it)."""
    return date(int(day[:4]), int(day[5:7]), 1)


def partition_ddl(table: str, month: date) -> str:
    """``CREATE TABLE IF NOT EXISTS table_YYYY_MM PARTITION OF table`` for one month. Only
    dates go into the text (and the two table names), so nothing from a request does."""
    if table not in ("records", "sales"):
        raise ValueError(f"no partitioned table {table!r}")
    end = (month + timedelta(days=32)).replace(day=1)
    return (f"create table if not exists {table}_{month:%Y_%m} partition of {table} "
            f"for values from ('{month.isoformat()}') to ('{end.isoformat()}')")


def _configure(conn: psycopg.Connection[Any]) -> None:
    conn.execute(_STAGING)
    conn.commit()


class PostgresStorage:
    kind = "postgresql"

    def __init__(self, url: str, *, max_connections: int = 8, timeout: float = 10.0) -> None:
        self._pool = ConnectionPool(url, min_size=1, max_size=max_connections, open=False,
                                    timeout=timeout, check=ConnectionPool.check_connection,
                                    configure=_configure, name="posd-hq")
        try:
            self._pool.open(wait=True, timeout=timeout)
            with self._pool.connection() as conn:
                conn.execute("select pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
                if not conn.execute(_LAYOUT).fetchall():
                    conn.execute(_SCHEMA)
                layout = {name: (kind, body_type)
                          for name, kind, body_type in conn.execute(_LAYOUT).fetchall()}
        except (*_Unavailable, psycopg.Error) as err:
            self._pool.close()
            raise StorageUnavailable(f"cannot use PostgreSQL: {err}") from err
        if "records" not in layout:
            self._pool.close()
            raise StorageUnavailable("cannot use PostgreSQL: the database has a 'sales' table "
                                     "but no 'records'")
        records_kind, body_type = layout["records"]
        if body_type not in ("json", "jsonb"):
            self._pool.close()
            raise StorageUnavailable(f"cannot use PostgreSQL: records.body is {body_type}, "
                                     "not json or jsonb")
        #: whether records (and sales, if there is such a table) are partitioned by month
        self.partitioned = records_kind == "p" and layout.get("sales", ("p",))[0] == "p"
        #: whether the database keeps each sale's state in a ``sales`` table (made before
        #: 2026-12-04): written and read the old way
        self.sales_table = "sales" in layout
        if not self.partitioned:
            log.warning("HQ database: records/sales are not partitioned by month (made "
                        "before partitioning): used as they are; see docs/hq-sync.md")
        elif self.sales_table:
            log.warning("HQ database: made with a 'sales' table (before 2026-12-04): used "
                        "as it is, at about half the records/s; see docs/hq-sync.md")
        self._tables = ("records", "sales") if self.sales_table else ("records",)
        if self.sales_table:
            key = "store_id, terminal_id, out_trade_no" + (", day" if self.partitioned else "")
            self._insert = _INSERT_RECORDS_WITH_SALES.format(body=body_type)
            self._upsert_sales: str | None = _UPSERT_SALES.format(key=key)
            self._day_sales = _DAY_SALES_TABLE
        else:
            self._insert = _INSERT_RECORDS.format(body=body_type)
            self._upsert_sales = None
            self._day_sales = _DAY_SALES
        self._months: set[date] = set()
        if self.partitioned:
            today = date.today()
            self._ensure_months({month_of(today.isoformat()),
                                 month_of((today + timedelta(days=31)).isoformat())})

    def _ensure_months(self, months: set[date]) -> None:
        """Make the partitions of ``months`` that this process has not seen made, in a
        transaction of their own under the schema lock (receivers starting together)."""
        missing = months - self._months
        if not missing:
            return
        try:
            with self._pool.connection() as conn:
                conn.execute("select pg_advisory_xact_lock(%s)", [_SCHEMA_LOCK])
                for month in sorted(missing):
                    for table in self._tables:
                        conn.execute(partition_ddl(table, month))
        except _Unavailable as err:
            raise StorageUnavailable(f"PostgreSQL: {err}") from err
        except psycopg.Error as err:
            raise StorageUnavailable(f"PostgreSQL: cannot make a month's partition: {err}") \
                from err
        self._months |= missing

    def store(self, store_id: str, terminal_id: str, records: Sequence[Record]) -> set[str]:
        if self.partitioned:
            self._ensure_months({month_of(r.day) for r in records})
        try:
            with self._pool.connection() as conn:
                with conn.cursor().copy(_COPY) as copy:
                    copy.write(copy_text(records).encode(conn.info.encoding))
                new = {row[0] for row in conn.execute(
                    self._insert, [store_id, terminal_id]).fetchall()}
                if self._upsert_sales is not None:
                    conn.execute(self._upsert_sales, [store_id, terminal_id])
        except _Unavailable as err:
            raise StorageUnavailable(f"PostgreSQL: {err}") from err
        except (psycopg.DataError, psycopg.IntegrityError) as err:
            raise RecordRefused(f"PostgreSQL: {err}") from err
        except psycopg.Error as err:
            raise StorageUnavailable(f"PostgreSQL: {err}") from err
        return new

    def day(self, store_id: str, day: str) -> tuple[list[StateRow], dict[str, str]]:
        try:
            with self._pool.connection() as conn:
                rows = conn.execute(self._day_sales, [store_id, day]).fetchall()
                summaries = conn.execute(
                    "select terminal_id, body::text from records where store_id = %s "
                    "and day = %s and type = 'daily_summary' order by seq",
                    [store_id, day]).fetchall()
        except _Unavailable as err:
            raise StorageUnavailable(f"PostgreSQL: {err}") from err
        return [StateRow(t, s, int(c), int(a)) for t, s, c, a in rows], dict(summaries)

    def refunds(self, store_id: str, day: str) -> list[tuple[str, str]]:
        return self._bodies(store_id, day, "type = 'refund' and record_id like '%%:refunded'")

    def reconciliations(self, store_id: str, day: str) -> list[tuple[str, str]]:
        return self._bodies(store_id, day, "type = 'reconciliation' order by terminal_id, seq")

    def _bodies(self, store_id: str, day: str, which: str) -> list[tuple[str, str]]:
        """(terminal_id, body) of the day's records ``which`` names (an SQL tail)."""
        try:
            with self._pool.connection() as conn:
                rows = conn.execute(
                    "select terminal_id, body::text from records where store_id = %s and "
                    f"day = %s and {which}", [store_id, day]).fetchall()
        except _Unavailable as err:
            raise StorageUnavailable(f"PostgreSQL: {err}") from err
        return [(str(t), str(b)) for t, b in rows]

    def ping(self) -> None:
        try:
            with self._pool.connection() as conn:
                conn.execute("select 1")
        except _Unavailable as err:
            raise StorageUnavailable(f"PostgreSQL: {err}") from err

    def close(self) -> None:
        self._pool.close()
