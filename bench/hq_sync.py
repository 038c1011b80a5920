#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""HQ sync: a 100,000-record backlog to a loopback receiver. Target: >= 10,000 records/s.

The terminal's real code (``posd.sync.Syncer.push_all``: read the outbox in ``seq`` order,
sign, POST, settle the per-record answer in one transaction) against the real receiver
(``posd hq serve`` in its own process) over HTTP on 127.0.0.1, for each database the
receiver can use: its SQLite default, and PostgreSQL (a throw-away cluster started here,
``fsync=off``) when the server binaries are installed. The terminal's database is a SQLite
file (WAL, synchronous=FULL) in a temporary directory; the backlog is written into it before
the clock starts, as real sale records (``posd.store.sale_record``).

Baseline, in the same run: the same code with ``batch_size = 1`` (one record per request,
what a naive "send each sale as it happens" relay does), over ``--baseline`` records to a
fresh receiver database (it is ~100 x slower, so not over the full backlog).

Run from the repository root: ``.venv/bin/python bench/hq_sync.py`` (``make bench``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import command_line, filesystem, machine, table  # noqa: E402
from posd.core.sale import State  # noqa: E402
from posd.store import Store  # noqa: E402
from tests.hq_fixtures import (  # noqa: E402
    TOKEN,
    Receiver,
    bulk_outbox,
    final_sale,
    make_syncer,
    write_secret,
)
from tests.postgres import remove_cluster, start_cluster  # noqa: E402


@dataclass(frozen=True)
class Run:
    database: str
    batch: int
    records: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def push(work: Path, db: str, records: int, batch: int, token_file: Path) -> Run:
    """A fresh terminal with ``records`` waiting, pushed whole to a fresh receiver."""
    work.mkdir()
    store = Store.open(work / "posd.db")
    bulk_outbox(work / "posd.db", (final_sale(n, State.PAID, 100 + n % 900) for n in
                                   range(1, records + 1)))
    receiver = Receiver(db, token_file)
    try:
        syncer = make_syncer(store, receiver.url, batch_size=batch)
        started = time.perf_counter()
        result = syncer.push_all()
        seconds = time.perf_counter() - started
        syncer.client.close()
    finally:
        receiver.stop()
        store.close()
    if result.accepted != records or store_left(work) != 0:
        raise SystemExit(f"only {result.accepted} of {records} records accepted")
    return Run("", batch, records, seconds)


def store_left(work: Path) -> int:
    store = Store.open(work / "posd.db")
    try:
        return int(store.outbox_backlog()["count"])
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=500, help="hq.batch_size (default 500)")
    parser.add_argument("--baseline", type=int, default=2_000,
                        help="records sent one per request (default 2,000)")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 2,000 records, 50 one by one (no verdict)")
    args = parser.parse_args()
    if args.quick:
        args.records, args.baseline = 2_000, 50
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="posd-bench-hq-") as tmp:
        work = Path(tmp)
        token = write_secret(work / "hq-token", TOKEN)
        cluster = None if args.no_postgres else start_cluster()
        try:
            databases = [("sqlite", lambda name: str(work / f"{name}.db"))]
            if cluster is not None:
                databases.append(("postgresql", lambda _name: cluster.create_database()))
            for label, make_db in databases:
                for batch, records in ((args.batch, args.records), (1, args.baseline)):
                    name = f"{label}-{batch}"
                    run = push(work / name, make_db(name), records, batch, token)
                    runs.append(Run(label, batch, run.records, run.seconds))
        finally:
            if cluster is not None:
                remove_cluster(cluster)
        fs = filesystem(work)
    print(f"HQ sync to a loopback receiver · {machine()} · terminal database on {fs}")
    print(f"command: {command_line()}")
    if cluster is None and not args.no_postgres:
        print("PostgreSQL not installed: SQLite receiver only")
    report(runs, args.records, args.batch)


def report(runs: list[Run], records: int, batch: int) -> None:
    rows = [[r.database, str(r.batch), f"{r.records:,}", f"{r.seconds:.2f}", f"{r.rate:,.0f}"]
            for r in runs]
    print(table(["receiver database", "records/request", "records", "seconds", "records/s"],
                rows))
    if records < 100_000:
        print("target: >= 10,000 records/s for a 100,000-record backlog "
              "(no verdict on a smaller run)")
        return
    rates = [r.rate for r in runs if r.batch == batch]
    verdict = "met" if min(rates) >= 10_000 else "NOT met"
    print(f"target: >= 10,000 records/s for the 100,000-record backlog: {verdict}")


if __name__ == "__main__":
    main()
