#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A year-old, busy till: scan -> pay request on the wire and ``GET /v1/health`` on a store of
730,000 sales (a year at 2,000 a day: events and an HQ outbox nobody acknowledged), with HQ
unreachable, the API and a printer working, and /v1/health polled every second.
Targets (DESIGN §7): scan p99 <= 15 ms, health p99 <= 5 ms.

The daemon is the real one (``posd.daemon.Daemon.build``: store, engine, API on loopback,
print queue to a ``file`` printer, HQ sync towards a closed port), its channel this script's
loopback micropay server (bench/scan_latency.py's ``WireClock``: pays at once, records when
each request has fully arrived). The year is written straight into SQLite before the daemon
opens it (paid sales spread over 365 days, 3 events each, one outbox row each, never
acknowledged: HQ has been unreachable all year).

Baseline, in the same run: the same daemon on an empty store, sampled the same way and
interleaved with the year-old one, so the table shows what a year of records costs.

Run from the repository root: ``.venv/bin/python bench/year_till.py`` (``make bench-full``;
``--quick`` uses 20,000 sales and a few samples).
"""

from __future__ import annotations

import argparse
import logging
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import figures
import requests

sys.path.insert(0, str(figures.ROOT))

from scan_latency import Keyboard, WireClock  # noqa: E402 - the same wire clock and keyboard

from posd.channels.simulator import make_test_pki  # noqa: E402
from posd.daemon import Daemon  # noqa: E402
from posd.sale import State  # noqa: E402
from posd.store import Store  # noqa: E402
from tests.sandbox import config, make_config, secret  # noqa: E402

TARGET_SCAN_P99_S = 0.015
TARGET_HEALTH_P99_S = 0.005
DAY_S = 86_400.0
WAIT_S = 5.0


def fill_year(path: Path, sales: int, now: float) -> float:
    """``sales`` paid sales over the last 365 days, with events and an unacknowledged outbox
    row each, written in one transaction. Returns the seconds it took."""
    Store.open(path).close()  # create and migrate
    started = time.monotonic()
    conn = sqlite3.connect(path)
    conn.execute("pragma synchronous=off")  # the year is written once, before the bench
    step = 365 * DAY_S / sales
    first = now - 365 * DAY_S

    def rows() -> Any:
        for i in range(sales):
            at = first + i * step
            yield (f"S001T01Y{i:010d}", 1000 + i % 9000, "wechat" if i % 3 else "alipay",
                   at, at + 2, at + 2, f"1345…{i % 10000:04d}", f"4200{i:016d}")

    conn.executemany(
        "insert into sales (out_trade_no, amount_fen, currency, channel, state, created_at, "
        "updated_at, paid_at, auth_code_masked, channel_trade_no, message, pay_attempts, "
        "queries) values (?, ?, 'CNY', ?, 'paid', ?, ?, ?, ?, ?, 'Paid', 1, 0)", rows())
    conn.execute(
        "insert into sale_events (sale_id, at, state, action, detail, message) "
        "select id, created_at, 'paying', null, 'code scanned', 'Sending the payment' "
        "from sales union all "
        "select id, created_at + 1, 'paying', 'pay', 'unknown (read timeout)', 'Waiting' "
        "from sales where id % 10 = 0 union all "
        "select id, paid_at, 'paid', 'pay', 'paid', 'Paid' from sales")
    conn.execute(
        "insert into outbox (record_id, kind, payload, amount_fen, created_at) "
        "select 'sale:' || out_trade_no || ':paid', 'sale', json_object('type', 'sale', "
        "'version', 1, 'sale', json_object('id', id, 'out_trade_no', out_trade_no, 'amount', "
        "amount_fen, 'currency', 'CNY', 'state', 'paid', 'channel', channel, "
        "'auth_code_masked', auth_code_masked, 'channel_trade_no', channel_trade_no, "
        "'created_at', created_at, 'updated_at', updated_at, 'paid_at', paid_at, "
        "'message', 'Paid')), amount_fen, updated_at from sales")
    conn.commit()
    conn.execute("analyze")  # what a year of `PRAGMA optimize` would have left
    conn.commit()
    conn.close()
    return time.monotonic() - started


class Till:
    """One real daemon on ``directory``'s database, scanned through a pipe."""

    def __init__(self, directory: Path, server: WireClock, pki: Any) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        hq_token = secret(directory / "hq-token", "hq-token-0123456789abcdef")
        self.cfg = config(make_config(
            directory, server.url, pki,
            hq={"url": "http://127.0.0.1:9", "token_file": str(hq_token), "interval_s": 5.0,
                "connect_timeout_s": 1.0},
            printer={"kind": "file", "device": str(directory / "printer.bin"),
                     "status_query": False}))
        self.daemon = Daemon.build(self.cfg, receipts_to=open(  # noqa: SIM115 - closed in stop
            directory / "receipts.txt", "w", encoding="utf-8"))
        self.daemon.start()
        self.engine = self.daemon.engine
        self.keyboard = Keyboard(self.engine.scan)
        self.url = self.daemon.api.url
        self.http = requests.Session()
        self.http.trust_env = False
        self.server = server
        self.health: list[float] = []
        self._stop = threading.Event()
        self._poller = threading.Thread(target=self._poll, daemon=True, name="health-poll")
        self._poller.start()

    def _poll(self) -> None:
        """GET /v1/health once a second, as a register's status light would."""
        while not self._stop.wait(1.0):
            t0 = time.perf_counter()
            answer = self.http.get(self.url + "/v1/health", timeout=5)
            elapsed = time.perf_counter() - t0
            answer.raise_for_status()
            self.health.append(elapsed)

    def health_now(self) -> float:
        t0 = time.perf_counter()
        self.http.get(self.url + "/v1/health", timeout=5).raise_for_status()
        return time.perf_counter() - t0

    def scan(self, i: int) -> float:
        sale, _ = self.engine.create_sale(1 + i % 5000)
        t0 = self.keyboard.scan(f"13{i:012d}7777")
        t1 = self.server.arrival(sale.out_trade_no, "pay request").at
        deadline = time.monotonic() + WAIT_S
        while not sale.final and (left := deadline - time.monotonic()) > 0:
            sale = self.engine.wait_for_change(sale.id, sale.updated_at, left)
        if sale.state is not State.PAID:
            raise SystemExit(f"year_till: sale {sale.id} ended {sale.state}: {sale.message}")
        return t1 - t0

    def backlog(self) -> dict[str, Any]:
        return self.engine.health()["hq_backlog"]  # type: ignore[no-any-return]

    def stop(self) -> None:
        self._stop.set()
        self._poller.join(5)
        self.keyboard.close()
        self.http.close()
        self.daemon.stop()


def _row(name: str, values: list[float], base: float) -> list[str]:
    med, p90, p99, worst = figures.spread(values)
    return [name, *map(figures.ms, (med, p90, p99, worst)), f"{med / base:.2f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sales", type=int, default=730_000, help="sales in the year (730,000)")
    parser.add_argument("-n", type=int, default=300, help="scans per till (300)")
    parser.add_argument("--poll-s", type=float, default=120.0,
                        help="keep polling /v1/health (and scanning) at least this long (120)")
    parser.add_argument("--quick", action="store_true", help="20,000 sales, 20 scans, 10 s")
    parser.add_argument("--dir", type=Path, default=None, help="where the databases go")
    args = parser.parse_args(argv)
    if args.quick:
        args.sales, args.n, args.poll_s = 20_000, 20, 10.0
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="posd-year-", dir=args.dir) as tmp_text:
        tmp = Path(tmp_text)
        pki = make_test_pki(tmp / "pki")
        server = WireClock(pki.server_tls().context())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        (tmp / "year").mkdir()
        fill_s = fill_year(tmp / "year" / "posd.db", args.sales, time.time())
        size = (tmp / "year" / "posd.db").stat().st_size
        year = Till(tmp / "year", server, pki)
        empty = Till(tmp / "empty", server, pki)
        scans: dict[str, list[float]] = {"year": [], "empty": []}
        direct: dict[str, list[float]] = {"year": [], "empty": []}
        started = time.monotonic()
        try:
            i = 0
            # Scans until both -n scans and --poll-s seconds of the once-a-second poller are
            # done, one sale every ~0.2 s: a busy till.
            while i < args.n + 5 or time.monotonic() - started < args.poll_s:
                for name, till in (("year", year), ("empty", empty)):
                    took = till.scan(2 * i + (name == "empty"))
                    health = till.health_now()
                    if i >= 5:  # warm-up
                        scans[name].append(took)
                        direct[name].append(health)
                i += 1
                time.sleep(0.2)
            backlog = year.backlog()
        finally:
            year.stop()
            empty.stop()
            server.shutdown()
            server.server_close()
        base_scan = statistics.median(scans["empty"])
        base_health = statistics.median(empty.health)
        polled = {"year": year.health, "empty": empty.health}
        rows = [
            _row(f"scan -> pay request, {args.sales:,}-sale store", scans["year"], base_scan),
            _row("scan -> pay request, empty store (baseline)", scans["empty"], base_scan),
            _row(f"GET /v1/health polled 1/s, {args.sales:,}-sale store", polled["year"],
                 base_health),
            _row("GET /v1/health polled 1/s, empty store (baseline)", polled["empty"],
                 base_health),
            _row(f"GET /v1/health right after a scan, {args.sales:,}-sale store",
                 direct["year"], base_health),
            _row("GET /v1/health right after a scan, empty store", direct["empty"],
                 base_health),
        ]
        scan_p99 = figures.percentile(scans["year"], 99)
        health_p99 = figures.percentile(polled["year"], 99)
        print("\n".join([
            "year_till: a year-old, busy till (HQ unreachable, API and printer working, "
            "/v1/health polled every second)",
            f"  {figures.machine()}",
            f"  database: {tmp} ({figures.filesystem(tmp)}), {size / 2**20:.0f} MiB after "
            f"{args.sales:,} sales + events + outbox (written in {fill_s:.0f} s), ANALYZEd",
            f"  HQ backlog the year-old till reports: {backlog['count']:,} records, "
            f"{backlog['amount'] / 100:,.2f} yuan",
            f"  samples: {len(scans['year'])} scans per till after 5 warm-up, interleaved, one "
            f"every ~0.2 s; health polled once a second ({len(polled['year'])} per till) and "
            "once right after each scan (the till finishing the sale: receipt, HQ attempt); "
            "client-side round trips with requests; times in ms",
            "",
            figures.table(["", "median", "p90", "p99", "max", "÷ baseline median"], rows),
            "",
            f"  target scan p99 <= {TARGET_SCAN_P99_S * 1000:.0f} ms: "
            f"{'met' if scan_p99 <= TARGET_SCAN_P99_S else 'MISSED'} ({figures.ms(scan_p99)} ms)",
            f"  target health p99 <= {TARGET_HEALTH_P99_S * 1000:.0f} ms: "
            f"{'met' if health_p99 <= TARGET_HEALTH_P99_S else 'MISSED'} "
            f"({figures.ms(health_p99)} ms)",
            f"  command: {figures.command_line()}",
        ]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
