#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""HQ for a chain: 20 terminals pushing at once to one receiver on PostgreSQL with fsync on.
Target (DESIGN §7): the worst of 5 runs >= 20,000 records/s.

Each terminal is its own process with its own SQLite outbox (WAL, synchronous=FULL) and
terminal id, running the terminal's real code; the receiver is ``posd hq serve`` in its own
process; PostgreSQL is a throw-away cluster started here with ``fsync=on``,
``synchronous_commit=on`` and ``full_page_writes=on`` (a production server's settings). Every
run is a fresh database (its month partitions made by the receiver) and fresh outboxes,
written before the clock starts; the clock runs from the moment every terminal is told to go
until the last has its whole backlog acknowledged. Afterwards the receiver's tables are
counted: every record once.

What is timed is HQ. A chain's terminals are machines of their own; here all 20 share HQ's 2
cores, so for the target's rows each terminal reads and encodes its whole outbox into
batches before the clock (``encode_batch``, the code ``Syncer.push_all`` runs) and, on go,
POSTs them one after the other with the terminal's ``HqClient`` and reads each answer with
its ``settle`` (every record must be accepted), one batch in flight, as a terminal does; the
last row runs the terminals' whole ``Syncer.push_all`` (reading, encoding and acknowledging
in SQLite, each ack fsynced) on the same cores, to show what that costs HQ here. The CPU
column says where the time went (terminals, receivers, PostgreSQL), from /proc.

Baselines, in the same run: one terminal alone pushing the same number of records to the
same kind of receiver and database (the single-terminal figure of ``bench/hq_sync.py``, but
with fsync on); and the 20 terminals against two receivers over the same PostgreSQL (what a
chain that outgrows one receiver does: docs/hq-sync.md).

Run from the repository root: ``.venv/bin/python bench/hq_chain.py`` (``make bench-full``;
``--quick``: 4 terminals, 500 records each, 1 run of each row, no verdict).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import command_line, filesystem, machine, table  # noqa: E402
from posd.core.money import Fen  # noqa: E402
from posd.core.sale import Sale, State, make_out_trade_no  # noqa: E402
from posd.hq.client import HqClient, encode_batch, settle  # noqa: E402
from posd.store import OutboxRow, Store  # noqa: E402
from posd.sync import Syncer  # noqa: E402
from tests.hq_fixtures import (  # noqa: E402
    T0, TOKEN, Receiver, bulk_outbox, postgres_counts, write_secret)  # noqa: E402
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


def client_for(terminal: str, urls: list[str]) -> HqClient:
    """The terminal's HQ client, to the receiver its number picks."""
    return HqClient(urls[int(terminal[1:]) % len(urls)], TOKEN, TOKEN.encode(),
                    timeout=(5.0, 60.0))


def report(accepted: int, left: int, finished: float, cpu: float) -> int:
    """A terminal's last line: what HQ accepted, what is left, when it ended, its CPU."""
    print(json.dumps({"accepted": accepted, "left": left, "finished": finished, "cpu": cpu}))
    return 0


def terminal_main(db: Path, terminal: str, urls: list[str]) -> int:
    """``--terminal``: wait for "go" on stdin, push the whole outbox, print the figures."""
    store = Store.open(db)
    client = client_for(terminal, urls)
    syncer = Syncer(store, client, store_id=STORE, terminal_id=terminal, batch_size=500, tz=UTC)
    store.outbox_backlog()  # the database open and read once
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    result = syncer.push_all()
    finished, cpu = time.monotonic(), time.process_time() - cpu
    left = int(store.outbox_backlog()["count"])
    client.close()
    store.close()
    return report(result.accepted, left, finished, cpu)


def encoded_batches(db: Path, terminal: str,
                    size: int = 500) -> list[tuple[list[OutboxRow], bytes]]:
    """The terminal's whole outbox as it sends it: (rows, body) for each batch of ``size``,
    encoded by the terminal's ``encode_batch``."""
    store = Store.open(db)
    batches: list[tuple[list[OutboxRow], bytes]] = []
    after = 0
    while rows := store.outbox_unsent(size, after):
        batches.append((rows, encode_batch(STORE, terminal, rows, UTC)))
        after = rows[-1].seq
    store.close()
    return batches


def pusher_main(db: Path, terminal: str, urls: list[str]) -> int:
    """``--pusher``: a terminal whose work is done before the clock, so that only HQ's is
    timed (a chain's terminals are machines of their own, not this one's 2 cores): the
    whole outbox read and encoded into batches by the terminal's own code
    (``posd.hq.client.encode_batch``, 500 records each), then, on "go", each batch POSTed
    by the terminal's client and HQ's answer read by the terminal's ``settle``, one batch
    in flight at a time as ``Syncer.push_all`` does; every record must come back accepted.
    """
    client = client_for(terminal, urls)
    batches = encoded_batches(db, terminal)
    print("ready", flush=True)
    sys.stdin.readline()
    cpu = time.process_time()
    accepted = sum(settle(rows, client.post_batch(body)).result.accepted
                   for rows, body in batches)
    finished, cpu = time.monotonic(), time.process_time() - cpu
    client.close()
    return report(accepted, sum(len(rows) for rows, _ in batches) - accepted, finished, cpu)


TICK = os.sysconf("SC_CLK_TCK")


def _stat(path: Path) -> tuple[int, float] | None:
    """A live process's parent pid and CPU seconds so far (user + system), from its
    /proc/PID/stat; None once it is gone."""
    try:
        fields = path.read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK


def cpu_of(pid: int) -> float:
    """A live process's CPU seconds so far."""
    found = _stat(Path(f"/proc/{pid}/stat"))
    return 0.0 if found is None else found[1]


def postgres_cpu(cluster: Cluster) -> float:
    """CPU seconds of the cluster's server processes alive now (postmaster and children)."""
    master = int((cluster.root / "data" / "postmaster.pid").read_text().split()[0])
    children = (_stat(stat) for stat in Path("/proc").glob("[0-9]*/stat"))
    return cpu_of(master) + sum(cpu for parent, cpu in filter(None, children)
                                if parent == master)


@dataclass(frozen=True)
class Run:
    rate: float
    #: CPU microseconds per record: the terminals, the receivers, PostgreSQL
    cpu: tuple[float, float, float]


def count(db: str) -> tuple[int, int]:
    import psycopg

    with psycopg.connect(db) as conn:
        counts = postgres_counts(conn)
    return counts["records"], counts["sales"]


def run(work: Path, cluster: Cluster, token: Path, terminals: int, records: int,
        receivers: int, mode: str = "--pusher") -> Run:
    """One run: fresh database and outboxes; the records/s of the whole push and where
    its CPU went."""
    work.mkdir()
    dbs = []
    for k in range(1, terminals + 1):
        dbs.append(work / f"{terminal_id(k)}.db")
        fill(dbs[-1], terminal_id(k), records)
    db = cluster.create_database()
    servers = [Receiver(db, token) for _ in range(receivers)]
    urls = ",".join(s.url for s in servers)
    children = [subprocess.Popen(
        [sys.executable, __file__, mode, str(path), "--id", terminal_id(k + 1),
         "--urls", urls], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for k, path in enumerate(dbs)]
    try:
        for child in children:  # every child has imported posd and opened its store
            assert child.stdout is not None
            if child.stdout.readline().strip() != "ready":
                raise SystemExit("hq_chain: a terminal did not start")
        base = ([cpu_of(s.process.pid) for s in servers], postgres_cpu(cluster))
        started = time.monotonic()  # CLOCK_MONOTONIC: one clock for every process here
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        outs = [child.communicate(timeout=600)[0] for child in children]
        # read while the receivers (and so their database sessions) are still alive
        used = (sum(cpu_of(s.process.pid) for s in servers) - sum(base[0]),
                postgres_cpu(cluster) - base[1])
    finally:
        for server in servers:
            server.stop()
    terminal_cpu, finished = 0.0, started
    for child, out in zip(children, outs, strict=True):
        got = json.loads(out.strip().splitlines()[-1])
        if child.returncode != 0 or got["accepted"] != records or got["left"]:
            raise SystemExit(f"hq_chain: a terminal ended with {got}")
        terminal_cpu += got["cpu"]
        finished = max(finished, got["finished"])
    elapsed = finished - started  # go -> the last batch acknowledged (not the exits)
    total = terminals * records
    stored = count(db)
    if stored != (total, total):
        raise SystemExit(f"hq_chain: the receiver holds {stored}, not {total}")
    return Run(total / elapsed, (terminal_cpu * 1e6 / total, used[0] * 1e6 / total,
                                 used[1] * 1e6 / total))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--terminals", type=int, default=20)
    parser.add_argument("--records", type=int, default=5_000, help="per terminal (5,000)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--terminal", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pusher", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--id", help=argparse.SUPPRESS)
    parser.add_argument("--urls", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.terminal:
        return terminal_main(args.terminal, args.id, args.urls.split(","))
    if args.pusher:
        return pusher_main(args.pusher, args.id, args.urls.split(","))
    if args.quick:
        args.terminals, args.records, args.runs = 4, 500, 1
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
            whole = [run(work / f"whole-{i}", cluster, token, args.terminals, args.records, 1,
                         "--terminal") for i in range(min(2, args.runs))]
        finally:
            remove_cluster(cluster)
        fs = filesystem(work)
    for label, runs in ((f"{args.terminals} terminals at once -> 1 receiver", chain),
                        (f"baseline: 1 terminal, the same {total:,} records -> 1 receiver",
                         alone),
                        (f"{args.terminals} terminals at once -> 2 receivers, one PostgreSQL",
                         two),
                        (f"{args.terminals} terminals running their whole push here -> 1 "
                         "receiver", whole)):
        rates = [r.rate for r in runs]
        cpu = [statistics.median(r.cpu[k] for r in runs) for k in range(3)]
        rows.append([label, str(len(rates)), f"{min(rates):,.0f}",
                     f"{statistics.median(rates):,.0f}", f"{max(rates):,.0f}",
                     " / ".join(f"{c:.0f}" for c in cpu)])
    print("hq_chain: a chain's terminals pushing at once to HQ on PostgreSQL, fsync on")
    print(f"  {machine()} · terminals' databases on {fs}")
    print(f"  {args.terminals} terminals x {args.records:,} records (batches of 500), every "
          "run a fresh database; records/s = all records / (go -> the last acknowledged)")
    print()
    print(table(["", "runs", "worst records/s", "median", "best",
                 "CPU µs/record: terminals / receiver / PostgreSQL"], rows))
    print()
    print("  CPU: the median of the runs, per record; everything shares this machine's "
          f"{os.cpu_count()} CPU(s),")
    print("  so 1e6 x CPUs / (the three added) is the most records/s the mix can reach here")
    print()
    if total < 100_000 or args.runs < 5:
        print(f"  target: worst of 5 runs >= {TARGET:,.0f} records/s (no verdict on a smaller "
              "run)")
    else:
        worst = min(r.rate for r in chain)
        verdict = "met" if worst >= TARGET else "MISSED"
        print(f"  target: worst of 5 runs >= {TARGET:,.0f} records/s: {verdict} "
              f"({worst:,.0f})")
    print(f"  command: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
