#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""What storing HQ's record bodies as ``jsonb`` costs PostgreSQL against ``json``.

The receiver (posd/hq/postgres.py) COPYs each batch into a staging table whose ``body`` is
``jsonb``, which PostgreSQL parses into its binary form on the way in; ``json`` is only
checked. This script COPYs the same 483-byte sale record, 5,000 rows a transaction, into a
table of each kind on a throw-away PostgreSQL (fsync on), the two kinds alternating, and
prints the time per row (client and server together; psycopg's COPY writer is the same for
both, so the difference is PostgreSQL's). docs/benchmarks.md § A chain's HQ says what was
decided with it.

Run from the repository root: ``.venv/bin/python bench/pg_body_type.py`` (``--quick``: 2
transactions of each).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import command_line, machine, table  # noqa: E402
from tests.postgres import remove_cluster, start_cluster  # noqa: E402

ROWS = 5_000
BODY = json.dumps({
    "store_id": "S001", "terminal_id": "T01", "type": "sale", "seq": 1,
    "record_id": "sale:S001T01261203084723000001:paid",
    "sale": {"id": 1, "out_trade_no": "S001T01261203084723000001", "amount": 1234,
             "state": "paid", "channel": "wechat",
             "channel_trade_no": "4200c71325936264bcbc53fbca4b",
             "auth_code_masked": "1300…7777", "created_at": "2026-12-03T08:47:23.230+08:00",
             "updated_at": "2026-12-03T08:47:23.304+08:00", "order_ref": None,
             "message": None, "business_day": "2026-12-03"},
}, ensure_ascii=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--transactions", type=int, default=20, help="of each kind, each round")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.transactions = 2
    import psycopg

    cluster = start_cluster(durable=True)
    if cluster is None:
        raise SystemExit("pg_body_type: PostgreSQL server binaries (initdb, pg_ctl) not found")
    samples: dict[str, list[float]] = {"jsonb": [], "json": []}
    try:
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            for kind in ("jsonb", "json", "jsonb", "json"):
                conn.execute(f"drop table if exists t; create unlogged table t "
                             f"(k text primary key, body {kind})")
                for rep in range(args.transactions):
                    rows = [(f"r{rep}-{i}", BODY) for i in range(ROWS)]
                    started = time.perf_counter()
                    with conn.transaction(), conn.cursor().copy(
                            "copy t (k, body) from stdin") as copy:
                        for row in rows:
                            copy.write_row(row)
                    samples[kind].append((time.perf_counter() - started) / ROWS * 1e6)
    finally:
        remove_cluster(cluster)
    print("pg_body_type: COPY of HQ sale records into a json or a jsonb column")
    print(f"  {machine()}")
    print(f"  {len(BODY.encode())}-byte body, {ROWS:,} rows a transaction, "
          f"{2 * args.transactions} transactions of each kind, alternating; µs per row")
    print()
    rows_out = [[kind, f"{statistics.median(s):.1f}", f"{min(s):.1f}", f"{max(s):.1f}"]
                for kind, s in samples.items()]
    print(table(["body column", "median", "min", "max"], rows_out))
    print()
    print(f"  command: {command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
