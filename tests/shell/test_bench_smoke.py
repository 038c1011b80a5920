# SPDX-License-Identifier: MIT
"""The bench scripts run end to end and print their tables (tiny ``--quick`` runs).

Smoke only: speed is measured by the scripts themselves (docs/benchmarks.md), never asserted
here -- a loaded CI machine must not fail the build.
"""

from __future__ import annotations

import subprocess
import sys
import threading
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
        (["pg_body_type.py", "--quick"], ["jsonb", "json", "µs per row"]),
        (["hq_store_parts.py", "--quick"],
         ["check the records (parse_batch)", "insert into records",
          "PostgreSQL's CPU over them", "baseline: store() whole, wall"]),
        (["reconcile.py", "--quick"],
         ["posd reconcile, whole run", "parse + match (core)",
          "baseline: csv.DictReader + dict join", "(no verdict on a quick run)"]),
    ],
    ids=["scan_latency", "scan_latency-http", "confirm_delay", "idle", "year_till", "rss_sales",
         "hq_chain", "z_report", "pg_body_type", "hq_store_parts", "reconcile"],
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


def test_the_benches_loopback_server_answers_a_query_and_a_reverse(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """rss_sales' server pays at once; a pay whose answer came too late is queried and then,
    if unknown, reversed, as at a real channel, so that the sale ends instead of retrying
    for ever. Through posd's own WeChat client, as the daemon calls it."""
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    from scan_latency import WireClock  # type: ignore[import-not-found]

    from posd.channels.simulator import make_test_pki
    from posd.core.money import Fen
    from posd.core.sale import Closed, NotFound, Paid
    from posd.daemon import build_channels
    from tests.sandbox import config, make_config

    pki = make_test_pki(tmp_path / "pki")
    server = WireClock(pki.server_tls().context())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        wechat = build_channels(config(make_config(tmp_path, server.url, pki,
                                                   read_timeout_s=10.0)))["wechat"]
        paid = wechat.pay("S001T01BENCH0001", Fen(1234), "130000000000017777", "bench")
        assert isinstance(paid, Paid)
        again = wechat.query("S001T01BENCH0001", Fen(1234))
        assert isinstance(again, Paid)
        assert again.channel_trade_no == paid.channel_trade_no
        assert isinstance(wechat.query("S001T01BENCH0002", Fen(1)), NotFound)
        assert isinstance(wechat.reverse("S001T01BENCH0002"), Closed)
    finally:
        server.shutdown()
        server.server_close()
