# SPDX-License-Identifier: MIT
"""The HQ receiver's PostgreSQL layout for a chain (issue 16): records and sales partitioned
by business month, each record still stored once whatever arrives twice, the day totals read
from one month's partition through its index (never a scan of all records), and a database
made before partitioning used as it is."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import psycopg
import pytest

from posd.core.hq_protocol import Record
from posd.hq.postgres import PostgresStorage, partition_ddl
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


def sale(n: int, day: str, state: str = "paid", seq: int | None = None,
         amount: int = 100) -> Record:
    number = f"S001T01{day.replace('-', '')}{n:010d}"
    data: dict[str, Any] = {"record_id": f"sale:{number}:{state}", "seq": seq or n, "day": day,
                            "type": "sale", "sale": {"out_trade_no": number, "state": state,
                                                     "amount": amount, "channel": "wechat"}}
    return Record(data["record_id"], data["seq"], day, "sale", data, number, state, amount,
                  "wechat")


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
    for table in ("records", "sales"):
        assert {f"{table}_2024_01", f"{table}_2024_02", f"{table}_2024_03"} <= set(found[table])
    with psycopg.connect(postgres_url) as conn:
        assert conn.execute("select count(*) from records").fetchone() == (3,)
        assert conn.execute("select count(*) from records_2024_02").fetchone() == (1,)
    # a later state of a sale replaces the earlier one in its own partition's row
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


def test_day_totals_read_one_partition_through_its_index(
        storage: PostgresStorage, postgres_url: str) -> None:
    # a chain's month: 40 stores x 30 days x 50 sales, and one more month beside it
    storage._ensure_months({date(2024, 5, 1), date(2024, 6, 1)})  # noqa: SLF001
    with psycopg.connect(postgres_url) as conn:
        for month in ("2024-05", "2024-06"):
            conn.execute(
                "insert into sales (store_id, terminal_id, out_trade_no, day, state, amount_fen,"
                " channel, seq, record_id) select 'S' || lpad((g %% 40)::text, 3, '0'), 'T01', "
                "'N' || g, (%s::date + (g / 2000) %% 30), 'paid', 100, 'wechat', g, 'sale:' || g"
                " from generate_series(1, 60000) g", [f"{month}-01"])
        conn.execute("analyze sales")
        plan = "\n".join(row[0] for row in conn.execute(
            "explain select terminal_id, state, count(*), coalesce(sum(amount_fen), 0) from "
            "sales where store_id = 'S007' and day = '2024-05-03' group by terminal_id, state"))
    assert "sales_2024_05" in plan and "sales_2024_06" not in plan, plan  # pruned
    assert "Index" in plan and "Seq Scan" not in plan, plan
    rows, _ = storage.day("S007", "2024-05-03")
    totals = day_totals("S007", "2024-05-03", rows, {})
    assert totals["paid_count"] == 50 and totals["paid_amount"] == 5000


def test_a_days_summaries_refunds_and_reconciliations_come_from_a_small_index(
        storage: PostgresStorage, postgres_url: str) -> None:
    # records_day holds only the records that are not sales (a few a day against thousands
    # of sales: the sales' own rows are counted from ``sales``), and the three queries of a
    # day's other records still read it
    storage._ensure_months({date(2024, 5, 1)})  # noqa: SLF001
    with psycopg.connect(postgres_url) as conn:
        conn.execute(
            "insert into records (store_id, terminal_id, record_id, seq, type, day, body) "
            "select 'S' || (g % 37), 'T01', 'r' || g || case when g % 100 = 0 then "
            "':refunded' else '' end, g, case when g % 100 = 0 then 'refund' when g % 101 = 0"
            " then 'daily_summary' when g % 103 = 0 then 'reconciliation' else 'sale' end, "
            "date '2024-05-01' + (g / 4000) % 30, '{}' from generate_series(1, 120000) g")
        conn.execute("analyze records")
        sizes = dict(conn.execute(
            "select c.relname, c.reltuples from pg_class c where c.relname in "
            "('records_2024_05_pkey', 'records_2024_05_store_id_day_type_idx')").fetchall())
        plans = ["\n".join(row[0] for row in conn.execute(
            "explain select terminal_id, body::text from records where store_id = 'S7' and "
            f"day = '2024-05-03' and {which}"))
            for which in ("type = 'daily_summary' order by seq",
                          "type = 'refund' and record_id like '%:refunded'",
                          "type = 'reconciliation' order by terminal_id, seq")]
    assert sizes["records_2024_05_store_id_day_type_idx"] < sizes["records_2024_05_pkey"] / 30
    for plan in plans:
        assert "store_id_day_type_idx" in plan and "Seq Scan" not in plan, plan
    # and the storage's own queries find what is there
    with psycopg.connect(postgres_url) as conn:
        expected = dict(conn.execute(
            "select type, count(*) from records where store_id = 'S7' and day = '2024-05-03' "
            "and type <> 'sale' group by type").fetchall())
    assert len(storage.refunds("S7", "2024-05-03")) == expected.get("refund", 0) > 0
    assert len(storage.reconciliations("S7", "2024-05-03")) == expected.get("reconciliation")


def test_a_database_from_before_partitioning_is_used_as_it_is(postgres_url: str) -> None:
    with psycopg.connect(postgres_url) as conn:
        conn.execute(OLD_SCHEMA)
    storage = PostgresStorage(postgres_url)
    try:
        assert not storage.partitioned
        first = sale(1, "2024-05-01", state="needs_attention", seq=1)
        assert storage.store("S001", "T01", [first])
        paid = Record("sale:x:paid", 2, "2024-05-01", "sale", first.data, first.out_trade_no,
                      "paid", 100, "wechat")
        storage.store("S001", "T01", [paid, paid])
        rows, _ = storage.day("S001", "2024-05-01")
        assert [(r.state, r.count) for r in rows] == [("paid", 1)]
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
