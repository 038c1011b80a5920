# SPDX-License-Identifier: MIT
"""The bench scripts run end to end and print their tables (tiny ``--quick`` runs).

Smoke only: speed is measured by the scripts themselves (docs/benchmarks.md), never asserted
here -- a loaded CI machine must not fail the build.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        (["scan_latency.py", "--quick"],
         ["scan -> pay request on the wire", "baseline: write-ahead commit (Store.save)",
          "baseline: bare POST -> at server (HTTPS)", "target p99 <= 15 ms"]),
        (["scan_latency.py", "--quick", "--http"], ["bare POST -> at server (HTTP)"]),
        (["confirm_delay.py", "--quick", "--intervals", "2.5,0.8,1"],
         ["posd default", "Alipay F2F demo (5 s x 5)", "--intervals #1", "queries mean",
          "(no verdict on a scaled run)"]),
        (["idle.py", "--quick"],
         ["WeChat, no printer: ready (exec -> /v1/health 200)", "WeChat, no printer: RSS when idle",
          "WeChat + Alipay, ESC/POS printer: RSS when idle",
          "baseline: python importing the stack, RSS"]),
        (["year_till.py", "--quick"],
         ["scan -> pay request, 20,000-sale store", "empty store (baseline)",
          "GET /v1/health, 20,000-sale store", "GET of a 404 (the HTTP stack)",
          "target health p99 <= 5 ms"]),
        (["rss_sales.py", "--quick"],
         ["after 0 sales (baseline", "after 300 sales", "(no verdict on 300)"]),
        (["hq_chain.py", "--quick"],
         ["terminals at once -> 1 receiver", "baseline: 1 terminal", "(no verdict"]),
        (["z_report.py", "--quick"],
         ["load_report (rollup sums + attention list)", "... + paper layout as text",
          "baseline: daily_report over Sale objects", "20,000 sales over one day"]),
        (["reconcile.py", "--quick"],
         ["posd reconcile, whole run", "parse + match (core)",
          "baseline: csv.DictReader + dict join", "(no verdict on a quick run)"]),
    ],
    ids=["scan_latency", "scan_latency-http", "confirm_delay", "idle", "year_till", "rss_sales",
         "hq_chain", "z_report", "reconcile"],
)
def test_bench_script_runs_and_prints_its_table(command: list[str], expected: list[str]) -> None:
    script, *args = command
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr
    for text in expected:
        assert text in done.stdout, f"{text!r} not in:\n{done.stdout}"
