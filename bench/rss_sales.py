#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The daemon's memory after many sales: RSS after 100,000 sales. Target (DESIGN §7): <= 80 MB.

The real daemon, ``posd run`` in a process of its own (store on a real SQLite file, engine,
API on loopback, the print queue to a ``file`` printer, HQ sync towards a closed port so the
outbox grows as at a till whose HQ is down), its WeChat channel this script's loopback
micropay server (bench/scan_latency.py's ``WireClock``: pays at once, and answers the
orderquery and reverse a pay that timed out is followed by). A register in this
process sells ``--sales`` sales one after the other through the API (``POST /v1/sales`` with
a payment code, then the long-poll until paid, on one kept-alive connection) and reads the
daemon's VmRSS from /proc at checkpoints, asking ``/v1/health`` once at each.

A pay that gets no answer is queried and, when the channel knows no such trade, reversed:
what posd does at a real channel. Such a sale is counted and the run goes on, its log lines
printed at the end; more than 3 (or 1 % of the sales) stops the run, as does a sale that is
not final within 120 s.

Each channel's ``ca_file`` is certifi's public CA bundle with the test CA appended: the TLS
context costs what it costs at a till.

With ``--alipay`` the till takes Alipay too (its section pointed at the channel simulator,
started in this process): the daemon then loads the Alipay client and cryptography for its
RSA2 signatures, about 8 MB more; the sales stay WeChat's.

Baseline, in the same run: the daemon's RSS once started and idle for 3 s, before any sale,
so the table shows what the sales cost.

Run from the repository root: ``.venv/bin/python bench/rss_sales.py`` (``make bench-full``;
``--quick`` sells 300; ``--sales N``; ``--alipay``).
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import figures

sys.path.insert(0, str(figures.ROOT))

from scan_latency import WireClock  # noqa: E402 - the same server

from posd.channels.simulator import make_alipay_keys, make_test_pki  # noqa: E402
from posd.channels.wechat.client import ORDERQUERY, REVERSE  # noqa: E402
from tests.sandbox import (  # noqa: E402
    alipay_section, make_config, secret, start_simulator, to_toml)
from tests.waiting import TOKEN, wait_until_up  # noqa: E402

TARGET_MB = 80.0
SALE_LIMIT_S = 120.0  # a sale not final by then will not be: say so, do not wait forever
#: sales that may end unpaid (posd reversing a pay that had no answer, which WireClock never
#: saw) before the run stops: 3, or 1 % of the sales so far
UNPAID_MAX = 3


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Register:
    """The register's side of the API on one kept-alive connection (reopened if closed)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, body: dict[str, object] | None = None) -> dict:  # type: ignore[type-arg]
        for _ in range(2):
            try:
                self.conn.request(method, path, body=None if body is None else json.dumps(body),
                                  headers={"Authorization": f"Bearer {TOKEN}",
                                           "Content-Type": "application/json"})
                answer = self.conn.getresponse()
                data = json.loads(answer.read() or b"{}")
                if answer.status >= 400:
                    raise SystemExit(f"rss_sales: {method} {path}: {answer.status} {data}")
                return data  # type: ignore[no-any-return]
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        raise SystemExit(f"rss_sales: {method} {path}: the connection keeps closing")


def sell(register: Register, i: int) -> dict:  # type: ignore[type-arg]
    """Sell one sale through the API; the sale as it ended (paid, or reversed if its pay
    had no answer and the channel then knew no such trade)."""
    sale = register.call("POST", "/v1/sales", {"amount": 1 + i % 5000,
                                               "auth_code": f"13{i:012d}7777"})
    deadline = time.monotonic() + SALE_LIMIT_S
    while not sale["final"]:
        if time.monotonic() > deadline:
            raise SystemExit(f"rss_sales: sale {sale['id']} still {sale['state']} after "
                             f"{SALE_LIMIT_S:.0f} s ({sale.get('message')})")
        sale = register.call("GET", f"/v1/sales/{sale['id']}?wait=10")
    return sale


def log_lines(work: Path) -> list[str]:
    """The daemon's log so far, or one line saying why it cannot be read."""
    try:
        return (work / "posd.log").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as err:
        return [f"(cannot read posd.log: {err})"]


def log_of(work: Path, out_trade_no: str) -> list[str]:
    """The daemon's log lines about one trade."""
    return [line for line in log_lines(work) if out_trade_no in line]


def log_tail(work: Path, lines: int = 30) -> str:
    return "\n".join(log_lines(work)[-lines:])


def figures_free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sales", type=int, default=100_000)
    parser.add_argument("--quick", action="store_true", help="300 sales (no verdict)")
    parser.add_argument("--alipay", action="store_true",
                        help="the till takes Alipay too (the client and cryptography loaded)")
    args = parser.parse_args()
    if args.quick:
        args.sales = 300
    with tempfile.TemporaryDirectory(prefix="posd-bench-rss-") as tmp:
        work = Path(tmp)
        pki = make_test_pki(work / "pki")
        server = WireClock(pki.server_tls().context())
        threading.Thread(target=server.serve_forever, daemon=True).start()
        hq_token = secret(work / "hq-token", "hq-token-0123456789abcdef")
        alipay = make_alipay_keys(work / "alipay") if args.alipay else None
        sim = start_simulator(pki, alipay=alipay) if alipay is not None else None
        port = figures_free_port()
        # read_timeout_s: the tests' 1 s is short for a 100,000-sale run on a shared VM (one
        # pay timed out at sale 79,469 with half the CPU stolen); 30 s is posd's default.
        data = make_config(work, server.url, pki, api_port=port, read_timeout_s=30.0,
                           hq={"url": "http://127.0.0.1:9", "token_file": str(hq_token),
                               "interval_s": 30.0, "connect_timeout_s": 1.0},
                           printer={"kind": "file", "device": str(work / "printer.bin"),
                                    "status_query": False})
        if alipay is not None and sim is not None:
            data["channels"]["alipay"] = alipay_section(sim.url, alipay, pki)
        figures.use_ca_file(data, figures.ca_bundle(work, pki.ca_cert_file))
        (work / "config.toml").write_text(to_toml(data), encoding="utf-8")
        with open(work / "posd.log", "wb") as log:
            proc = subprocess.Popen([sys.executable, "-m", "posd", "run", "-c",
                                     str(work / "config.toml")], stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log)
        points = []
        unpaid: list[tuple[dict, list[str]]] = []  # type: ignore[type-arg]
        after_pay: collections.Counter[str] = collections.Counter()
        try:
            wait_until_up(f"http://127.0.0.1:{port}", proc, timeout=30)
            register = Register(port)
            checkpoints = sorted({100, *(n for n in (1_000, 10_000, 25_000, 50_000, 75_000)
                                         if n < args.sales), args.sales})
            started = time.monotonic()
            time.sleep(3.0)  # start-up work settles (as bench/idle.py waits)
            points.append({"sales": 0, "rss_mb": rss_mb(proc.pid), "seconds": 0.0})
            for i in range(1, args.sales + 1):
                try:
                    sale = sell(register, i)
                except SystemExit:
                    print(f"rss_sales: the daemon's last log lines:\n{log_tail(work)}",
                          file=sys.stderr)
                    raise
                if sale["state"] != "paid":  # posd's answer to a lost pay: kept, counted
                    unpaid.append((sale, log_of(work, sale["out_trade_no"])))
                    if len(unpaid) > max(UNPAID_MAX, i // 100):
                        raise SystemExit(f"rss_sales: {len(unpaid)} of {i} sales not paid "
                                         f"(the last: {sale['id']} {sale['state']})")
                while not server.arrivals.empty():  # only the calls after a pay are counted
                    after_pay[server.arrivals.get_nowait().path] += 1
                if i in checkpoints:
                    register.call("GET", "/v1/health")
                    points.append({"sales": i, "rss_mb": rss_mb(proc.pid),
                                   "seconds": time.monotonic() - started})
        finally:
            proc.terminate()
            proc.wait(30)
            server.shutdown()
            if sim is not None:
                sim.stop()
        fs = figures.filesystem(work)
    base = points[0]["rss_mb"]
    rows = [[f"after {p['sales']:,} sales" + (" (baseline: started, idle 3 s)"
                                                if p is points[0] else ""),
             f"{p['rss_mb']:.1f}", f"{p['rss_mb'] - base:+.1f}", f"{p['seconds']:.0f}"]
            for p in points]
    last = points[-1]
    print("rss_sales: the daemon's RSS as sales accumulate (paid, printed, in the outbox; "
          "HQ down)")
    print("  channels: WeChat" + (" and Alipay (enabled, its client and cryptography loaded; "
                                  "the sales are WeChat's)" if args.alipay else "")
          + "; printer: python-escpos File")
    print(f"  {figures.machine()} · database on {fs}")
    print()
    print(figures.table(["", "RSS MB", "vs baseline", "s"], rows))
    print(f"  after a pay: {after_pay[ORDERQUERY]:,} orderquery, {after_pay[REVERSE]:,} reverse "
          "(a pay whose answer did not come in time is queried, as at a real channel)")
    ended = collections.Counter(sale["state"] for sale, _ in unpaid)
    print(f"  not paid: {len(unpaid)}" + "".join(f", {n} {state}" for state, n in ended.items())
          + " (a pay with no answer, then no such trade at the channel: posd reverses it)")
    for sale, lines in unpaid[:3]:
        print(f"    sale {sale['id']} {sale['out_trade_no']} ended {sale['state']}; its log:")
        print("\n".join(f"      {line}" for line in lines[-12:]))
    print()
    if last["sales"] < 100_000:
        print(f"  target: RSS <= {TARGET_MB:.0f} MB after 100,000 sales (no verdict on "
              f"{last['sales']:,})")
    else:
        verdict = "met" if last["rss_mb"] <= TARGET_MB else "MISSED"
        print(f"  target: RSS <= {TARGET_MB:.0f} MB after 100,000 sales: {verdict} "
              f"({last['rss_mb']:.1f} MB)")
    print(f"  command: {figures.command_line()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
