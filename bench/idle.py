# SPDX-License-Identifier: MIT
"""The idle daemon: ready ≤ 2 s after start, RSS ≤ 80 MB, ~0 % CPU (DESIGN §7).

Starts the real ``posd run`` several times in each of two set-ups, the channels against a
simulator in this process, SQLite, no scanner, no HQ:

- a WeChat till with no printer (what this bench measured up to 2026-12-02);
- a WeChat and Alipay till with an ESC/POS printer (python-escpos' ``Network`` to a socket
  on loopback): the daemon then also loads python-escpos with Pillow, and the Alipay client
  with cryptography for its RSA2 signatures.

Each channel's ``ca_file`` is the public CA bundle a till verifies its channels with
(certifi's, as requests uses when ``ca_file`` is unset) with the simulator's test CA
appended, so that the TLS contexts cost what they cost at a till.

It measures, from outside:

- ready: from the exec to the first 200 from ``GET /v1/health`` (the store is open,
  recovery is done, the API listens);
- RSS (VmRSS from /proc) after the daemon has been idle a few seconds;
- CPU over an idle window (utime + stime from /proc/PID/stat), as % of one core.

Beside it, in the same run, a bare ``python -c`` that imports the same libraries, down to
the modules the daemon loads of them (python-escpos's printers, which bring Pillow, qrcode
and the printer capabilities; cryptography's RSA and X.509; APScheduler's scheduler), and
sleeps: the floor of what any Python daemon with this stack costs.

    .venv/bin/python bench/idle.py            # 3 starts of each set-up, 10 s idle window each
    .venv/bin/python bench/idle.py --quick    # 1 start of each, 2 s window (smoke)
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

import figures

sys.path.insert(0, str(figures.ROOT))  # tests/sandbox.py: the sandbox merchant and config

from posd.channels.simulator import make_alipay_keys, make_test_pki  # noqa: E402
from tests.sandbox import make_config, start_simulator, to_toml  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")
STACK = ("import fastapi, uvicorn, requests, sqlite_utils, apscheduler.schedulers.background, "
         "escpos.printer, cryptography.hazmat.primitives.asymmetric.rsa, cryptography.x509, "
         "defusedxml.ElementTree")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def _idle(pid: int, window: float) -> tuple[float, float]:
    """(RSS MB at the end, CPU % of one core over the window)."""
    before, started = _cpu_s(pid), time.monotonic()
    threading.Event().wait(window)  # the thing measured is the daemon doing nothing
    used, elapsed = _cpu_s(pid) - before, time.monotonic() - started
    return _rss_mb(pid), 100 * used / elapsed


def _daemon_once(config: Path, port: int, window: float) -> tuple[float, float, float]:
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "posd", "run", "-c", str(config)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        while True:
            if proc.poll() is not None:
                raise SystemExit(f"posd exited with {proc.returncode}")
            try:
                if requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                threading.Event().wait(0.005)  # polling from outside: nothing to wait on
        ready = time.monotonic() - started
        threading.Event().wait(min(3.0, window))  # let start-up work (imports, jobs) settle
        rss, cpu = _idle(proc.pid, window)
        return ready, rss, cpu
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _baseline(window: float) -> tuple[float, float]:
    proc = subprocess.Popen([sys.executable, "-c", f"{STACK}; import time; time.sleep(3600)"])
    try:
        threading.Event().wait(3.0)
        return _idle(proc.pid, window)
    finally:
        proc.kill()
        proc.wait()


class Sink(threading.Thread):
    """A receipt printer on loopback that takes every job and answers nothing."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.server.getsockname()[1])

    def run(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._drain, args=(conn,), daemon=True).start()

    @staticmethod
    def _drain(conn: socket.socket) -> None:
        with conn:
            while conn.recv(65536):
                pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--window", type=float, default=10.0, help="idle window, seconds")
    parser.add_argument("--quick", action="store_true", help="1 start, 2 s window")
    args = parser.parse_args()
    starts, window = (1, 2.0) if args.quick else (args.starts, args.window)
    results: dict[str, list[tuple[float, float, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="posd-idle-") as tmp:
        tmp_path = Path(tmp)
        pki = make_test_pki(tmp_path / "pki")
        keys = make_alipay_keys(tmp_path / "alipay")
        sim = start_simulator(pki, alipay=keys)
        printer = Sink()
        printer.start()
        bundle = figures.ca_bundle(tmp_path, pki.ca_cert_file)
        try:
            setups = {
                "WeChat, no printer": make_config(tmp_path, sim.url, pki),
                "WeChat + Alipay, ESC/POS printer": make_config(
                    tmp_path, sim.url, pki, alipay=keys,
                    printer={"kind": "network", "host": "127.0.0.1", "port": printer.port,
                             "status_query": False}),
            }
            for name, data in setups.items():
                port = _free_port()
                data["api"]["listen"] = f"127.0.0.1:{port}"
                figures.use_ca_file(data, bundle)
                config = tmp_path / "config.toml"
                config.write_text(to_toml(data))
                results[name] = [_daemon_once(config, port, window) for _ in range(starts)]
        finally:
            sim.stop()
            printer.server.close()
    base_rss, base_cpu = _baseline(window)
    _report(results, base_rss, base_cpu, window)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _report(results: dict[str, list[tuple[float, float, float]]], base_rss: float,
            base_cpu: float, window: float) -> None:
    rows = []
    for name, runs in results.items():
        ready = [r[0] for r in runs]
        rss = [r[1] for r in runs]
        cpu = [r[2] for r in runs]
        rows += [
            [f"{name}: ready (exec -> /v1/health 200)", f"{statistics.median(ready):.2f} s",
             f"{max(ready):.2f} s", "≤ 2 s"],
            [f"{name}: RSS when idle", f"{statistics.median(rss):.1f} MB",
             f"{max(rss):.1f} MB", "≤ 80 MB"],
            [f"{name}: CPU over {window:g} s idle", f"{statistics.median(cpu):.2f} %",
             f"{max(cpu):.2f} %", "~0 %"],
        ]
    rows += [
        ["baseline: python importing the stack, RSS", f"{base_rss:.1f} MB", "", ""],
        ["baseline: the same, CPU", f"{base_cpu:.2f} %", "", ""],
    ]
    starts = len(next(iter(results.values())))
    print("idle: the daemon doing nothing (SQLite, API, no scanner/HQ; channels' ca_file: "
          "certifi + the test CA)")
    print(f"  {figures.machine()}")
    print(f"  {starts} start(s) of each set-up; CPU as % of one core\n")
    print(figures.table(["figure", "median", "max", "target"], rows))


if __name__ == "__main__":
    main()
