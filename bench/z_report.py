#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The Z-report over a store with 1,000,000 sales. Target: <= 100 ms.

What is timed is what ``GET /v1/reports/daily``, ``posd report daily`` and the print worker
run: ``posd.devices.print_queue.load_report`` (SQLite sums the 15-minute rollup ``sale_totals`` that
triggers keep per channel and state, then reads the day's needs_attention sales over the
``(state, created_at)`` index) and, for the printed/text form, ``posd.core.report.elements`` +
``as_text``. The database is a real SQLite file
(WAL, synchronous=FULL, posd's own migrations) in a temporary directory, filled before the
clock starts with 1,000,000 sales in a realistic mix (92 % paid, 4 % declined, 2 % reversed,
1 % cancelled, 0.1 % needs attention, the rest still in progress; 60 % WeChat, 40 % Alipay).

Two shapes of the same million:

- **a year**: spread evenly over 365 days (~2,740 sales a day, a busy till); the report is
  of one day in the middle. This is the target's case.
- **one day**: all 1,000,000 in the reported day (no till does this; it bounds the cost).

Baselines, in the same run: SQLite summing the day's sales rows over the ``created_at``
index (what the store does for a range off the 15-minute grid), and the report made in
Python over the day's ``Sale`` objects (``report.daily_report(day, store.find(...))``, what
the API did before; 2 runs, no warm-up: it is slow).

Run from the repository root: ``.venv/bin/python bench/z_report.py`` (``--quick``: 20,000
sales, for a smoke test; ``-n`` runs per figure).
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import command_line, filesystem, machine, ms, spread, table  # noqa: E402
from posd.core import report  # noqa: E402
from posd.core.layout import as_text  # noqa: E402
from posd.devices.print_queue import load_report  # noqa: E402
from posd.core.receipt import Header  # noqa: E402
from posd.store import Store  # noqa: E402

DAY = date(2026, 6, 15)
MIX = [("paid", 920), ("declined", 40), ("reversed", 20), ("cancelled", 10),
       ("needs_attention", 1), ("confirming", 9)]
COLUMNS = ("out_trade_no, amount_fen, currency, channel, state, auth_code_masked, subject, "
           "created_at, updated_at, message, pay_attempts, queries, reverse_attempts, recalls, "
           "pay_maybe_arrived")


def _rows(count: int, first_day: date, days: int, seed: int) -> Iterator[tuple[object, ...]]:
    rng = random.Random(seed)
    states = [state for state, weight in MIX for _ in range(weight)]
    start, _ = report.day_bounds(first_day, None)
    span = report.day_bounds(first_day + timedelta(days=days - 1), None)[1] - start
    for i in range(count):
        at = start + span * (i + rng.random()) / count
        state = rng.choice(states)
        channel = None if state == "cancelled" else rng.choice(("wechat",) * 3 + ("alipay",) * 2)
        yield (f"S001T01B{seed}{i:011d}", rng.randint(100, 50_000), "CNY", channel, state,
               "1345…0000", "bench", at, at + 2.0, "", 1, 1, 0, 0, 1)


def build(path: Path, count: int, days: int) -> float:
    """A posd database with ``count`` sales over ``days`` days ending after DAY; seconds."""
    Store.open(path).close()  # posd's schema and indexes, as the daemon makes them
    started = time.perf_counter()
    first = DAY - timedelta(days=days // 2)
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA synchronous=OFF")  # filling only; the store runs with FULL
        marks = ", ".join("?" for _ in COLUMNS.split(","))
        conn.executemany(f"insert into sales ({COLUMNS}) values ({marks})",
                         _rows(count, first, days, days))
        conn.execute("ANALYZE")
    return time.perf_counter() - started


def timed(runs: int, work: Callable[[], object], *, warm: bool = True) -> list[float]:
    if warm:
        work()  # warm the page cache and the statement cache
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        samples.append(time.perf_counter() - started)
    return samples


def measure(path: Path, runs: int) -> list[tuple[str, list[float]]]:
    store = Store.open(path)
    now = time.time()
    header = Header("示例便利店 Example Mart", "S001", "T01")
    since, until = report.day_bounds(DAY, None)

    def z_report() -> report.DailyReport:
        return load_report(store, DAY, cutoff_hour=0, tz=None, now=now)

    def z_text() -> str:
        return as_text(report.elements(z_report(), header, tz=None), 32)

    def sql_over_sales() -> object:
        # A bound off the 15-minute grid makes the store sum the sales rows themselves.
        return store.sale_totals(since + 0.001, until)

    def python_baseline() -> report.DailyReport:
        return report.daily_report(DAY, store.find(since=since, until=until))

    try:
        return [("load_report (rollup sums + attention list)", timed(runs, z_report)),
                ("... + paper layout as text", timed(runs, z_text)),
                ("baseline: SQL sums over the sales rows", timed(max(3, runs // 5),
                                                                 sql_over_sales)),
                ("baseline: daily_report over Sale objects", timed(2, python_baseline,
                                                                   warm=False))]
    finally:
        store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sales", type=int, default=1_000_000)
    parser.add_argument("-n", "--runs", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="20,000 sales, 5 runs")
    args = parser.parse_args()
    count, runs = (20_000, 5) if args.quick else (args.sales, args.runs)
    print("z_report: the Z-report of one business day over a store with "
          f"{count:,} sales (target <= 100 ms at 1,000,000)")
    print(f"  {machine()}")
    with tempfile.TemporaryDirectory(prefix="posd-bench-") as tmp:
        print(f"  database: {tmp} ({filesystem(Path(tmp))}), WAL, posd's migrations; "
              f"times in ms, {runs} runs after one warm-up; percentiles nearest-rank")
        for shape, days in (("a year (365 days)", 365), ("one day", 1)):
            path = Path(tmp) / f"{days}.db"
            filled = build(path, count, days)
            rows = [(what, *(ms(x) for x in spread(samples)))
                    for what, samples in measure(path, runs)]
            print(f"\n  {count:,} sales over {shape}; report of {DAY} "
                  f"(database filled in {filled:.1f} s)\n")
            print(table(("", "median", "p90", "p99", "max"), rows))
    print(f"\n  command: {command_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
