# SPDX-License-Identifier: MIT
"""What /v1/health and a scan read from the store stays cheap on a year-old store: the
open sales by a partial index that ANALYZE cannot talk the planner out of, the HQ backlog by
counters kept in each writer's transaction (issue: a year of sales made health 0.1-0.2 s and
a scan's lookup a 55 ms full scan). The figures are bench/health_scale.py's; these tests
check the plans and the counters, not the time."""

from __future__ import annotations

import random
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from posd.core.effects import Outputs
from posd.core import sale as m
from posd.core.money import Fen
from posd.core.sale import State
from posd.store import OPEN_STATES, Store

T0 = 1_750_000_000.0


def _fill(path: Path, count: int) -> None:
    """``count`` paid sales with an outbox row each, straight into SQLite (fast)."""
    conn = sqlite3.connect(path)
    conn.executemany(
        "insert into sales (out_trade_no, amount_fen, currency, channel, state, created_at, "
        "updated_at) values (?, ?, 'CNY', 'wechat', 'paid', ?, ?)",
        [(f"S001T01{i:012d}", 1000 + i % 500, T0 + i, T0 + i) for i in range(count)])
    conn.executemany(
        "insert into outbox (record_id, kind, payload, amount_fen, created_at) "
        "values (?, 'sale', '{}', ?, ?)",
        [(f"sale:S001T01{i:012d}:paid", 1000 + i % 500, T0 + i) for i in range(count)])
    conn.commit()
    conn.close()


def _plans(store: Store, call: object) -> list[str]:
    """The query plans of every SELECT on sales that ``call()`` runs."""
    seen: list[str] = []
    conn = store._db.conn  # noqa: SLF001 - a test looks at the SQL the store sends
    conn.set_trace_callback(seen.append)
    try:
        call()  # type: ignore[operator]
    finally:
        conn.set_trace_callback(None)
    plans = []
    for sql in seen:
        if sql.lstrip().lower().startswith("select") and " sales " in f" {sql} ":
            rows = conn.execute("explain query plan " + sql).fetchall()
            plans.append(" | ".join(str(r[-1]) for r in rows))
    return plans


@pytest.fixture(name="year")
def _year(tmp_path: Path) -> Store:
    path = tmp_path / "posd.db"
    Store.open(path).close()  # migrated
    _fill(path, 20_000)
    store = Store.open(path)
    with store._db.conn:  # noqa: SLF001
        store._db.conn.execute("analyze")  # noqa: SLF001 - what sqlite3_analyzer / optimize do
    return store


def test_open_sales_are_found_by_their_index_after_analyze(year: Store) -> None:
    for states in ((State.PAYING, State.CONFIRMING), (State.AWAITING_CODE,),
                   (State.NEEDS_ATTENTION,), OPEN_STATES[:4]):
        plans = _plans(year, lambda s=states: year.find(states=s))
        assert plans and all("sales_open" in p for p in plans), plans
        assert not any("SCAN sales" in p and "sales_open" not in p for p in plans)


def test_a_days_open_sales_are_a_range_of_the_state_and_time_index(tmp_path: Path) -> None:
    """The Z-report's needs-attention sales of one day: not every open sale of every day
    through the partial index (that read 10,000 of them for each report, 2.5 ms)."""
    path = tmp_path / "posd.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.executemany(
        "insert into sales (out_trade_no, amount_fen, currency, channel, state, created_at, "
        "updated_at) values (?, 1000, 'CNY', 'wechat', ?, ?, ?)",
        [(f"S001T01{i:012d}", "needs_attention" if i % 10 == 0 else "paid", T0 + 60 * i,
          T0 + 60 * i) for i in range(20_000)])
    conn.execute("analyze")
    conn.commit()
    conn.close()
    store = Store.open(path)
    since, until = T0 + 86_400, T0 + 2 * 86_400
    plans = _plans(store, lambda: store.find(since=since, until=until,
                                             states=(State.NEEDS_ATTENTION,)))
    assert plans and all("idx_sales_state_created_at" in p for p in plans), plans
    found = store.find(since=since, until=until, states=(State.NEEDS_ATTENTION,))
    assert len(found) == 144 and all(since <= s.created_at < until for s in found)
    assert len(store.find(states=(State.NEEDS_ATTENTION,))) == 2_000


def test_the_backlog_is_read_from_counters(year: Store) -> None:
    plans = _plans(year, year.outbox_backlog)
    assert plans == []  # no SELECT on sales at all
    backlog = year.outbox_backlog()
    assert backlog["count"] == 20_000
    assert backlog["amount"] == sum(1000 + i % 500 for i in range(20_000))
    assert backlog["oldest_at"] == T0
    conn = year._db.conn  # noqa: SLF001
    plan = conn.execute("explain query plan select created_at from outbox where acked_at is "
                        "null order by seq limit 1").fetchall()
    assert "outbox_pending" in str(plan)


def _truth(store: Store) -> tuple[int, int]:
    row = store._db.execute(  # noqa: SLF001
        "select count(*), coalesce(sum(case when record_id like '%:paid' then amount_fen "
        "else 0 end), 0) from outbox where acked_at is null").fetchone()
    return int(row[0]), int(row[1])


def _final(store: Store, state: State, amount: int) -> m.Sale:
    def make(seq: int) -> m.Sale:
        sale = m.new_sale(m.make_out_trade_no("S001", "T01", T0, seq), Fen(amount), T0)
        return replace(sale, state=state, channel="wechat")

    sale, _ = store.create_sale(make, order_ref=None, idempotency_key=None)
    return sale


def test_backlog_counters_agree_with_the_rows(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db")
    rng = random.Random(7)
    for step in range(300):
        choice = rng.random()
        if choice < 0.6:
            state = rng.choice([State.PAID, State.DECLINED, State.CANCELLED, State.REVERSED])
            _final(store, state, rng.randint(1, 10_000))
        elif choice < 0.8:
            rows = store.outbox_unsent(rng.randint(1, 5))
            store.outbox_settle([r.id for r in rows[: len(rows) // 2]],
                                [(r.id, "bad") for r in rows[len(rows) // 2:]], T0 + step)
        elif choice < 0.9:
            store.outbox_requeue_rejected()
        else:
            store.outbox_prune(T0 + step + 1)
        backlog = store.outbox_backlog()
        assert (backlog["count"], backlog["amount"]) == _truth(store), step
    store.close()


def test_the_backlog_amount_is_money_that_moved(tmp_path: Path) -> None:
    """Declined and cancelled sales are records for HQ but moved no money."""
    store = Store.open(tmp_path / "posd.db")
    _final(store, State.PAID, 1250)
    _final(store, State.DECLINED, 9900)
    _final(store, State.CANCELLED, 7700)
    backlog = store.outbox_backlog()
    assert (backlog["count"], backlog["amount"]) == (3, 1250)
    store.close()


def test_a_till_without_hq_writes_no_outbox(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db", outputs=Outputs(hq=False))
    sale = _final(store, State.PAID, 1250)
    assert store.get(sale.id).state is State.PAID
    assert store.outbox_backlog() == {"count": 0, "amount": 0, "oldest_at": None}
    assert store.outbox_unsent(10) == []
    store.close()


def test_an_old_store_is_migrated_with_its_backlog(tmp_path: Path) -> None:
    """Migration 004 counts what an older posd left in the outbox."""
    path = tmp_path / "posd.db"
    store = Store.open(path)
    _final(store, State.PAID, 500)
    _final(store, State.DECLINED, 700)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("delete from _sqlite_migrations where name = '004_open_sales_and_backlog'")
    for trigger in ("outbox_backlog_insert", "outbox_backlog_delete", "outbox_backlog_ack"):
        conn.execute(f"drop trigger {trigger}")
    conn.execute("drop index sales_open")
    conn.execute("drop index outbox_pending")
    conn.execute("drop index outbox_quarantine")
    conn.execute("delete from counters where name like 'backlog_%'")
    conn.commit()
    conn.close()
    store = Store.open(path)
    assert store.outbox_backlog()["count"] == 2
    assert store.outbox_backlog()["amount"] == 500
    store.close()
