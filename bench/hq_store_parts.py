#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Where a record's CPU goes at HQ: the receiver's Python steps and PostgreSQL's statements.

``bench/hq_chain.py`` gives the CPU per record of the terminals, the receiver and PostgreSQL
as three figures; this script splits the last two. One terminal's outbox of sale records
(as ``hq_chain`` fills it) is encoded into batches of 500 by the terminal's code, then:

- the receiver's Python steps for one batch, each the fastest of 10 repeats, per record:
  decoding (``codec.loads``), checking (``hq_protocol.parse_batch``), the COPY rows, the
  per-record answer and its JSON response, the signature;
- ``PostgresStorage.store`` for every batch on a throw-away PostgreSQL with fsync on, one
  connection, one step timed at a time: the COPY into the staging table (client included),
  the insert into ``records``, the commit; PostgreSQL's CPU from
  /proc over the whole. Beside it, the baseline: ``store()`` called as the receiver calls
  it on a fresh database, timed whole.

Run from the repository root: ``.venv/bin/python bench/hq_store_parts.py`` (``--quick``:
2,000 records). docs/benchmarks.md § A chain's HQ gives its figures.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastapi.responses import Response  # noqa: E402

from bench.figures import command_line, machine, table  # noqa: E402
from bench.hq_chain import STORE, encoded_batches, fill, postgres_cpu  # noqa: E402
from posd.core import hq_protocol as protocol  # noqa: E402
from posd.hq import codec, server  # noqa: E402
from posd.hq import postgres as pg  # noqa: E402
from posd.hq.client import encode_batch  # noqa: E402
from tests.postgres import Cluster, remove_cluster, start_cluster  # noqa: E402

BATCH = 500
TERMINAL = "T01"
KEY = b"k" * 32


def batches(records: int) -> list[bytes]:
    """The terminal's outbox of ``records`` sales, encoded as it sends them."""
    with tempfile.TemporaryDirectory(prefix="posd-hq-parts-") as work:
        fill(Path(work) / "terminal.db", TERMINAL, records)
        return [body_ for _, body_ in encoded_batches(Path(work) / "terminal.db", TERMINAL,
                                                       BATCH)]


def _best(step: Callable[[], object], records: int, repeats: int = 10) -> float:
    """The fastest of ``repeats`` runs of ``step``, in µs a record."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best / records * 1e6


def receiver_steps(raw: bytes) -> list[tuple[str, float]]:
    data = codec.loads(raw)
    batch = protocol.parse_batch(data)
    good = [r for r in batch.records if isinstance(r, protocol.Record)]
    new = {r.record_id for r in good}
    answer = server.answer(batch, set(new))
    n = len(good)
    return [
        ("decode the body (codec.loads)", _best(lambda: codec.loads(raw), n)),
        ("check the records (parse_batch)", _best(lambda: protocol.parse_batch(data), n)),
        ("the COPY text (body encoded)", _best(lambda: pg.copy_text(good), n)),
        ("the per-record answer", _best(lambda: server.answer(batch, set(new)), n)),
        ("its JSON response", _best(lambda: Response(codec.dumps(answer),
                                                     media_type="application/json"), n)),
        ("the signature (HMAC-SHA256)", _best(
            lambda: protocol.signature_ok(KEY, raw, protocol.sign(KEY, raw)), n)),
    ]


def _records(raws: list[bytes]) -> list[list[protocol.Record]]:
    return [[r for r in protocol.parse_batch(codec.loads(raw)).records
             if isinstance(r, protocol.Record)] for raw in raws]


def statements(cluster: Cluster,
               batches_: list[list[protocol.Record]]) -> tuple[dict[str, float], float, float]:
    """({step: µs a record}, PostgreSQL CPU µs a record, wall µs a record), steps apart."""
    storage = pg.PostgresStorage(cluster.create_database(), max_connections=1)
    parts = dict.fromkeys(("COPY into the staging table", "insert into records", "commit"), 0.0)
    names = list(parts)
    n = sum(len(b) for b in batches_)
    cpu, started = postgres_cpu(cluster), time.perf_counter()
    try:
        for records in batches_:
            storage._ensure_months({pg.month_of(r.day) for r in records})
            with storage._pool.connection() as conn:
                marks = [time.perf_counter()]
                with conn.cursor().copy(pg._COPY) as copy:
                    copy.write(pg.copy_text(records).encode(conn.info.encoding))
                marks.append(time.perf_counter())
                conn.execute(storage._insert, [STORE, TERMINAL]).fetchall()
                marks.append(time.perf_counter())
                conn.commit()
                marks.append(time.perf_counter())
            for name, a, b in zip(names, marks, marks[1:]):
                parts[name] += b - a
        wall, cpu = time.perf_counter() - started, postgres_cpu(cluster) - cpu
    finally:
        storage.close()
    return ({k: v / n * 1e6 for k, v in parts.items()}, cpu / n * 1e6, wall / n * 1e6)


def whole(cluster: Cluster, batches_: list[list[protocol.Record]]) -> tuple[float, float]:
    """(wall µs, PostgreSQL CPU µs) a record of ``store()`` as the receiver calls it."""
    storage = pg.PostgresStorage(cluster.create_database(), max_connections=1)
    n = sum(len(b) for b in batches_)
    cpu, started = postgres_cpu(cluster), time.perf_counter()
    try:
        for records in batches_:
            storage.store(STORE, TERMINAL, records)
        wall, cpu = time.perf_counter() - started, postgres_cpu(cluster) - cpu
    finally:
        storage.close()
    return wall / n * 1e6, cpu / n * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.records = 2_000
    raws = batches(args.records)
    steps = receiver_steps(raws[0])
    cluster = start_cluster(durable=True)
    if cluster is None:
        raise SystemExit("hq_store_parts: PostgreSQL server binaries (initdb, pg_ctl) not found")
    try:
        records = _records(raws)
        base_wall, base_cpu = whole(cluster, records)
        parts, pg_cpu, wall = statements(cluster, records)
    finally:
        remove_cluster(cluster)
    print("hq_store_parts: where a record's CPU goes at HQ (receiver's Python, PostgreSQL)")
    print(f"  {machine()}")
    print(f"  {args.records:,} sale records from one terminal, batches of {BATCH}; "
          "µs a record")
    print()
    rows = [[name, f"{us:.2f}"] for name, us in steps]
    rows.append(["the steps above, added", f"{sum(us for _, us in steps):.2f}"])
    print(table(["receiver's Python, one batch (fastest of 10)", "µs"], rows))
    print()
    rows = [[name, f"{us:.1f}"] for name, us in parts.items()]
    rows.append(["the three, wall", f"{wall:.1f}"])
    rows.append(["PostgreSQL's CPU over them", f"{pg_cpu:.1f}"])
    rows.append(["baseline: store() whole, wall", f"{base_wall:.1f}"])
    rows.append(["baseline: store() whole, PostgreSQL's CPU", f"{base_cpu:.1f}"])
    print(table(["PostgresStorage.store, fsync on, one connection", "µs"], rows))
    print()
    print(f"  command: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
