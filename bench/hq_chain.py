#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""HQ for a chain: 20 terminals pushing at once to one receiver on PostgreSQL with fsync on.
Target (DESIGN §7): the worst of 5 runs >= 20,000 records/s.

Each terminal is its own process running the terminal's real code (``posd.sync.Syncer.
push_all`` over its own SQLite outbox, WAL, synchronous=FULL) with its own terminal id; the
receiver is ``posd hq serve`` in its own process; PostgreSQL is a throw-away cluster started
here with ``fsync=on``, ``synchronous_commit=on`` and ``full_page_writes=on`` (a production
server's settings). Every run is a fresh database (its month partitions made by the
receiver) and fresh outboxes, written before the clock starts; the clock runs from the
moment every terminal is told to go until the last has its whole backlog acknowledged.
Afterwards the receiver's tables are counted: every record once.

Baselines, in the same run: one terminal alone pushing the same number of records to the
same kind of receiver and database (the single-terminal figure of ``bench/hq_sync.py``, but
with fsync on); and the 20 terminals against two receivers over the same PostgreSQL (what a
chain that outgrows one receiver does: docs/hq-sync.md).

Run from the repository root: ``.venv/bin/python bench/hq_chain.py`` (``make bench-full``;
``--quick``: 4 terminals, 500 records each, 2 runs, no verdict).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import command_line, filesystem, machine, table  # noqa: E402
from posd.core.money import Fen  # noqa: E402
from posd.core.sale import Sale, State, make_out_trade_no  # noqa: E402
from posd.hq.client import HqClient  # noqa: E402
from posd.store import Store  # noqa: E402
from posd.sync import Syncer  # noqa: E402
from tests.hq_fixtures import T0, TOKEN, Receiver, bulk_outbox, write_secret  # noqa: E402
from tests.postgres import Cluster, remove_cluster, start_cluster  # noqa: E402

TARGET = 20_000.0
STORE = "S001"


def terminal_id(k: int) -> str:
    return f"T{k:02d}"


def fill(path: Path, terminal: str, records: int) -> None:
    """A terminal's database with ``records`` final sales in its outbox, spread over a day."""
    Store.open(path).close()
    bulk_outbox(path, (
        Sale(out_trade_no=make_out_trade_no(STORE, terminal, T0 + n, n), amount=Fen(100 + n % 900),
             created_at=T0 + n, updated_at=T0 + n + 2, state=State.PAID, channel="wechat",
             auth_code_masked="1345...0000", paid_at=T0 + n + 1)
        for n in range(1, records + 1)))


def terminal_main(db: Path, terminal: str, urls: list[str]) -> int:
    """``--terminal``: wait for "go" on stdin, push the whole outbox, print the figures."""
    store = Store.open(db)
    url = urls[int(terminal[1:]) % len(urls)]
    client = HqClient(url, TOKEN, TOKEN.encode(), timeout=(5.0, 60.0))
    syncer = Syncer(store, client, store_id=STORE, terminal_id=terminal, batch_size=500, tz=UTC)
    store.outbox_backlog()  # the database open and read once
    print("ready", flush=True)
    sys.stdin.readline()
    started = time.perf_counter()
    result = syncer.push_all()
    elapsed = time.perf_counter() - started
    left = int(store.outbox_backlog()["count"])
    client.close()
    store.close()
    print(json.dumps({"accepted": result.accepted, "left": left, "seconds": elapsed}))
    return 0


def count(db: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(db) as conn:
        records = conn.execute("select count(*) from records").fetchone()
        sales = conn.execute("select count(*) from sales").fetchone()
    assert records is not None and sales is not None
    return int(records[0]), int(sales[0])


def run(work: Path, cluster: Cluster, token: Path, terminals: int, records: int,
        receivers: int) -> float:
    """One run: fresh database and outboxes; the records/s of the whole push."""
    work.mkdir()
    dbs = []
    for k in range(1, terminals + 1):
        dbs.append(work / f"{terminal_id(k)}.db")
        fill(dbs[-1], terminal_id(k), records)
    db = cluster.create_database()
    servers = [Receiver(db, token) for _ in range(receivers)]
    urls = ",".join(s.url for s in servers)
    children = [subprocess.Popen(
        [sys.executable, __file__, "--terminal", str(path), "--id", terminal_id(k + 1),
         "--urls", urls], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for k, path in enumerate(dbs)]
    try:
        for child in children:  # every child has imported posd and opened its store
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("hq_chain: a terminal did not start")
        started = time.perf_counter()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outs = [child.communicate(timeout=600)[0] for child in children]
        elapsed = time.perf_counter() - started
    finally:
        for server in servers:
            server.stop()
    for child, out in zip(children, outs, strict=True):
        got = json.loads(out.strip().splitlines()[-1])
        if child.returncode != 0 or got["accepted"] != records or got["left"]:
            raise SystemExit(f"hq_chain: a terminal ended with {got}")
    stored = count(db)
    if stored != (terminals * records, terminals * records):
        raise SystemExit(f"hq_chain: the receiver holds {stored}, not {terminals * records}")
    return terminals * records / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--records", type=int, default=5_000, help="per terminal (5,000)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--terminal", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--id", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.terminal:
        return terminal_main(args.terminal, args.id, args.urls.split(","))
    if args.quick:
        args.terminals, args.records, args.runs = 4, 500, 2
    cluster = start_cluster(durable=True)
    if cluster is None:
        print("hq_chain: PostgreSQL is not installed (.ci/run installs it): nothing measured")
        return 0
    total = args.terminals * args.records
    rows = []
    with tempfile.TemporaryDirectory(prefix="posd-bench-chain-") as tmp:
        work = Path(tmp)
        token = write_secret(work / "hq-token", TOKEN)
        try:
            chain = [run(work / f"chain-{i}", cluster, token, args.terminals, args.records, 1)
                     for i in range(args.runs)]
            alone = [run(work / f"alone-{i}", cluster, token, 1, total, 1)
                     for i in range(min(2, args.runs))]
            two = [run(work / f"two-{i}", cluster, token, args.terminals, args.records, 2)
                   for i in range(min(2, args.runs))]
        finally:
            remove_cluster(cluster)
        fs = filesystem(work)
    for label, rates in ((f"{args.terminals} terminals at once -> 1 receiver", chain),
                         (f"baseline: 1 terminal, the same {total:,} records -> 1 receiver",
                          alone),
                         (f"{args.terminals} terminals at once -> 2 receivers, one PostgreSQL",
                          two)):
        rows.append([label, str(len(rates)), f"{min(rates):,.0f}",
                     f"{statistics.median(rates):,.0f}", f"{max(rates):,.0f}"])
    print("hq_chain: a chain's terminals pushing at once to HQ on PostgreSQL, fsync on")
    print(f"  {machine()} · terminals' databases on {fs}")
    print(f"  {args.terminals} terminals x {args.records:,} records (batches of 500), every "
          "run a fresh database; records/s = all records / (go -> the last acknowledged)")
    print()
    print(table(["", "runs", "worst records/s", "median", "best"], rows))
    print()
    if total < 100_000 or args.runs < 5:
        print(f"  target: worst of 5 runs >= {TARGET:,.0f} records/s (no verdict on a smaller "
              "run)")
    else:
        verdict = "met" if min(chain) >= TARGET else "MISSED"
        print(f"  target: worst of 5 runs >= {TARGET:,.0f} records/s: {verdict} "
              f"({min(chain):,.0f})")
    print(f"  command: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
