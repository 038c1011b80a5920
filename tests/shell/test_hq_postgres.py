# SPDX-License-Identifier: MIT
"""The HQ receiver's PostgreSQL layout for a chain (issue 16): records partitioned by
business month, each record still stored once whatever arrives twice, the day totals read
from one month's partition through its index (never a scan of all records), and databases
made before (ordinary tables; partitioned with a ``sales`` table) used as they are."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from posd.core.hq_protocol import Record
from posd.core import hq_protocol
from posd.hq import server
from posd.hq.postgres import _DAY_SALES, PostgresStorage, partition_ddl
from posd.hq.storage import RecordRefused, day_totals

#: the layout before partitioning (posd before issue 16), to show it keeps working
OLD_SCHEMA = """
create table records (
    store_id text not null, terminal_id text not null, record_id text not null,
    seq bigint not null, type text not null, day date not null, body jsonb not null,
    received_at timestamptz not null default now(),
    primary key (store_id, terminal_id, record_id));
create index records_day on records (store_id, day, type);
create table sales (
    store_id text not null, terminal_id text not null, out_trade_no text not null,
    day date not null, state text not null, amount_fen bigint not null, channel text,
    seq bigint not null, record_id text not null,
    primary key (store_id, terminal_id, out_trade_no));
create index sales_day on sales (store_id, day);
"""

#: the partitioned layout with a ``sales`` table (posd from issue 16 until 2026-12-04)
SALES_TABLE_SCHEMA = """
create table records (
    store_id text not null, terminal_id text not null, record_id text not null,
    seq bigint not null, type text not null, day date not null, body jsonb not null,
    received_at timestamptz not null default now(),
    primary key (store_id, terminal_id, record_id, day)
) partition by range (day);
create index records_day on records (store_id, day, type) where type <> 'sale';
create table sales (
    store_id text not null, terminal_id text not null, out_trade_no text not null,
    day date not null, state text not null, amount_fen bigint not null, channel text,
    seq bigint not null, record_id text not null,
    primary key (store_id, terminal_id, out_trade_no, day)
) partition by range (day);
create index sales_day on sales (store_id, day);
"""


def sale(n: int, day: str, state: str = "paid", seq: int | None = None,
         amount: int = 100) -> Record:
    number = f"S001T01{day.replace('-', '')}{n:010d}"
    data: dict[str, Any] = {"record_id": f"sale:{number}:{state}", "seq": seq or n, "day": day,
                            "type": "sale", "sale": {"out_trade_no": number, "state": state,
                                                     "amount": amount, "channel": "wechat"}}
    return Record(data["record_id"], data["seq"], day, "sale", data, number, state, amount,
                  "wechat")


def assert_attention_then_paid_counts_once(storage: PostgresStorage,
                                           also: list[Record] | None = None) -> None:
    """A sale stored as needs_attention (with ``also``), then as paid twice: the day counts
    it once, as paid."""
    first = sale(1, "2024-05-01", state="needs_attention", seq=1)
    assert storage.store("S001", "T01", [first, *(also or [])])
    paid = Record("sale:x:paid", 2, "2024-05-01", "sale", first.data, first.out_trade_no,
                  "paid", 100, "wechat")
    storage.store("S001", "T01", [paid, paid])
    rows, _ = storage.day("S001", "2024-05-01")
    assert [(r.state, r.count) for r in rows] == [("paid", 1)]


@pytest.fixture(name="storage")
def _storage(postgres_url: str) -> Iterator[PostgresStorage]:
    storage = PostgresStorage(postgres_url)
    yield storage
    storage.close()


def partitions(url: str) -> dict[str, list[str]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "select p.relname, c.relname from pg_inherits i join pg_class c on c.oid = "
            "i.inhrelid join pg_class p on p.oid = i.inhparent order by 1, 2").fetchall()
    found: dict[str, list[str]] = {}
    for parent, child in rows:
        found.setdefault(parent, []).append(child)
    return found


def test_records_go_to_their_months_partition_and_replays_are_stored_once(
        storage: PostgresStorage, postgres_url: str) -> None:
    assert storage.partitioned
    batch = [sale(1, "2024-01-31"), sale(2, "2024-02-01"), sale(3, "2024-03-15")]
    assert storage.store("S001", "T01", batch) == {r.record_id for r in batch}
    assert storage.store("S001", "T01", batch[::-1]) == set()  # the same batch again
    found = partitions(postgres_url)
    assert {"records_2024_01", "records_2024_02", "records_2024_03"} <= set(found["records"])
    with psycopg.connect(postgres_url) as conn:
        # no sales table: a sale's state is in its records
        assert conn.execute("select to_regclass('sales')").fetchone() == (None,)
        assert conn.execute("select count(*) from records").fetchone() == (3,)
        assert conn.execute("select count(*) from records_2024_02").fetchone() == (1,)
    # a later state of a sale is what the day counts
    later = sale(2, "2024-02-01", state="reversed", seq=99)
    later = Record(later.record_id, 99, later.day, "sale", later.data,
                   batch[1].out_trade_no, "reversed", 100, "wechat")
    storage.store("S001", "T01", [later])
    rows, _ = storage.day("S001", "2024-02-01")
    assert [(r.state, r.count) for r in rows] == [("reversed", 1)]


def test_a_day_that_does_not_exist_is_refused_not_a_crash(storage: PostgresStorage) -> None:
    with pytest.raises(RecordRefused):
        storage.store("S001", "T01", [sale(1, "2024-02-30")])
    assert storage.store("S001", "T01", [sale(2, "2024-02-29")])  # a leap day is a day


def test_the_latest_record_of_a_sale_counts_whatever_the_arrival_order(
        storage: PostgresStorage) -> None:
    attention = sale(7, "2024-04-02", state="needs_attention", seq=3)
    paid = Record(f"sale:{attention.out_trade_no}:paid", 5, "2024-04-02", "sale",
                  attention.data, attention.out_trade_no, "paid", 100, "wechat")
    storage.store("S001", "T01", [paid])
    storage.store("S001", "T01", [attention])  # older, arriving later
    storage.store("S001", "T01", [sale(8, "2024-04-02", amount=250)])
    rows, _ = storage.day("S001", "2024-04-02")
    assert sorted((r.state, r.count, r.amount) for r in rows) == [("paid", 2, 350)]


def test_day_totals_read_one_partition_through_its_index(
        storage: PostgresStorage, postgres_url: str) -> None:
    # a chain's month: 40 stores x 30 days x 50 sales, their summaries, refunds and
    # reconciliations, and one more month beside it
    storage._ensure_months({date(2024, 5, 1), date(2024, 6, 1)})  # noqa: SLF001
    with psycopg.connect(postgres_url) as conn:
        for month in ("2024-05", "2024-06"):
            conn.execute(
                "insert into records (store_id, terminal_id, record_id, seq, type, day, body,"
                " out_trade_no, state, amount_fen, channel) select 'S' || lpad((g %% 40)::text,"
                " 3, '0'), 'T01', 'sale:' || g, g, 'sale', (%s::date + (g / 2000) %% 30), '{}',"
                " 'N' || g, 'paid', 100, 'wechat' from generate_series(1, 60000) g",
                [f"{month}-01"])
            conn.execute(
                "insert into records (store_id, terminal_id, record_id, seq, type, day, body) "
                "select 'S' || lpad((g %% 40)::text, 3, '0'), 'T01', 'r' || g || case when "
                "g %% 3 = 0 then ':refunded' else '' end, 100000 + g, case when g %% 3 = 0 then "
                "'refund' when g %% 3 = 1 then 'daily_summary' else 'reconciliation' end, "
                "%s::date + (g / 400) %% 30, '{}' from generate_series(1, 12000) g",
                [f"{month}-01"])
        conn.execute("analyze records")
        plans = ["\n".join(row[0] for row in conn.execute("explain " + query, args))
                 for query, args in [
                     (_DAY_SALES, ["S007", "2024-05-03"]),
                     *[("select terminal_id, body::text from records where store_id = 'S007' "
                        f"and day = '2024-05-03' and {which}", None)
                       for which in ("type = 'daily_summary' order by seq",
                                     "type = 'refund' and record_id like '%:refunded'",
                                     "type = 'reconciliation' order by terminal_id, seq")]]]
        expected = dict(conn.execute(
            "select type, count(*) from records where store_id = 'S007' and "
            "day = '2024-05-03' and type <> 'sale' group by type").fetchall())
    for plan in plans:
        assert "records_2024_05" in plan and "records_2024_06" not in plan, plan  # pruned
        assert "Index" in plan and "Seq Scan" not in plan, plan
    rows, _ = storage.day("S007", "2024-05-03")
    totals = day_totals("S007", "2024-05-03", rows, {})
    assert totals["paid_count"] == 50 and totals["paid_amount"] == 5000
    assert len(storage.refunds("S007", "2024-05-03")) == expected.get("refund", 0) > 0
    assert len(storage.reconciliations("S007", "2024-05-03")) == expected["reconciliation"]


def test_bodies_are_kept_as_sent_even_with_a_nul_and_a_refused_record_is_rejected_alone(
        storage: PostgresStorage, postgres_url: str) -> None:
    nul = sale(1, "2024-02-28")
    nul = Record(nul.record_id, 1, nul.day, "sale", nul.data | {"note": "nul \x00 inside"},
                 nul.out_trade_no, "paid", 100, "wechat")
    impossible = sale(2, "2024-02-30")  # passes the protocol's YYYY-MM-DD, no such day
    batch = hq_protocol.Batch("S001", "T01", (nul, impossible, sale(3, "2024-02-29")))
    new, refused = server.store_batch(storage, batch)
    assert new == {nul.record_id, batch.records[2].record_id}  # type: ignore[union-attr]
    assert list(refused) == [impossible.record_id] and "refused" in refused[impossible.record_id]
    with psycopg.connect(postgres_url) as conn:
        (text,) = conn.execute("select body::text from records where record_id = %s",
                               [nul.record_id]).fetchone() or ("",)
    assert '"note":"nul \\u0000 inside"' in text


def test_a_database_with_a_sales_table_is_used_as_it_is(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute(SALES_TABLE_SCHEMA)
    storage = PostgresStorage(postgres_url)
    try:
        assert storage.partitioned and storage.sales_table
        assert_attention_then_paid_counts_once(storage, also=[sale(2, "2024-06-01")])
    finally:
        storage.close()
    found = partitions(postgres_url)
    assert {"records_2024_05", "records_2024_06"} <= set(found["records"])
    assert {"sales_2024_05", "sales_2024_06"} <= set(found["sales"])
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select count(*) from sales").fetchone() == (2,)


def test_a_database_from_before_partitioning_is_used_as_it_is(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute(OLD_SCHEMA)
    storage = PostgresStorage(postgres_url)
    try:
        assert not storage.partitioned
        assert_attention_then_paid_counts_once(storage)
    finally:
        storage.close()
    assert partitions(postgres_url) == {}


def test_receivers_starting_together_make_each_partition_once(postgres_url: str) -> None:
    import threading

    made: list[PostgresStorage] = []
    errors: list[BaseException] = []

    def start() -> None:
        try:
            storage = PostgresStorage(postgres_url)
            storage.store("S001", "T01", [sale(len(made) + 1, "2030-07-04")])
            made.append(storage)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for storage in made:
        storage.close()
    assert not errors and len(made) == 4
    assert partitions(postgres_url)["records"].count("records_2030_07") == 1


def test_partition_ddl_takes_dates_only() -> None:
    from datetime import date

    assert partition_ddl("records", date(2024, 12, 1)) == (
        "create table if not exists records_2024_12 partition of records "
        "for values from ('2024-12-01') to ('2025-01-01')")
    with pytest.raises(ValueError):
        partition_ddl("records; drop table sales", date(2024, 12, 1))


def test_copy_text_keeps_every_character_of_a_body_and_a_channel(
        storage: PostgresStorage, postgres_url: str) -> None:
    from posd.hq import codec

    awkward = 'back\\slash \\N tab\tline\nreturn\r "quoted" 收银 \\t'
    record = sale(1, "2024-03-01")
    data = record.data | {"note": awkward, "sale": record.data["sale"] | {"channel": awkward}}
    record = Record(record.record_id, 1, record.day, "sale", data, record.out_trade_no,
                    "paid", 100, awkward)
    summary = Record("summary:2024-03-01", 2, "2024-03-01", "daily_summary",
                     {"note": awkward, "summary": {"total": {}}})
    assert storage.store("S001", "T01", [record, summary]) == {record.record_id,
                                                                summary.record_id}
    with psycopg.connect(postgres_url) as conn:
        rows = dict((rid, (text, channel, state)) for rid, text, channel, state in conn.execute(
            "select record_id, body::text, channel, state from records").fetchall())
    assert rows[record.record_id] == (codec.dumps(data), awkward, "paid")
    assert rows[summary.record_id] == (codec.dumps(summary.data), None, None)
