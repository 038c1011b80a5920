# SPDX-License-Identifier: MIT
"""The idle daemon: ready ≤ 2 s after start, RSS ≤ 80 MB, ~0 % CPU (DESIGN §7).

Starts the real ``posd run`` (both channels against a simulator in this process, SQLite,
console printer, no scanner, no HQ) several times and measures, from outside:

- ready: from the exec to the first 200 from ``GET /v1/health`` (the store is open,
  recovery is done, the API listens);
- RSS (VmRSS from /proc) after the daemon has been idle a few seconds;
- CPU over an idle window (utime + stime from /proc/PID/stat), as % of one core.

Beside it, in the same run, a bare ``python -c`` that imports the same libraries, down to
the modules the daemon loads of them (python-escpos's printers, which bring Pillow, qrcode
and the printer capabilities; cryptography's RSA and X.509; APScheduler's scheduler), and
sleeps: the floor of what any Python daemon with this stack costs.

    .venv/bin/python bench/idle.py            # 3 starts, 10 s idle window each
    .venv/bin/python bench/idle.py --quick    # 1 start, 2 s window (smoke)
"""

from __future__ import annotations

import argparse
import os
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

from posd.channels.simulator import make_test_pki  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--window", type=float, default=10.0, help="idle window, seconds")
    parser.add_argument("--quick", action="store_true", help="1 start, 2 s window")
    args = parser.parse_args()
    starts, window = (1, 2.0) if args.quick else (args.starts, args.window)
    with tempfile.TemporaryDirectory(prefix="posd-idle-") as tmp:
        tmp_path = Path(tmp)
        pki = make_test_pki(tmp_path / "pki")
        sim = start_simulator(pki)
        try:
            port = _free_port()
            data = make_config(tmp_path, sim.url, pki, api_port=port)
            config = tmp_path / "config.toml"
            config.write_text(to_toml(data))
            runs = [_daemon_once(config, port, window) for _ in range(starts)]
        finally:
            sim.stop()
    base_rss, base_cpu = _baseline(window)
    _report(runs, base_rss, base_cpu, window)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _report(runs: list[tuple[float, float, float]], base_rss: float, base_cpu: float,
            window: float) -> None:
    ready = [r[0] for r in runs]
    rss = [r[1] for r in runs]
    cpu = [r[2] for r in runs]
    rows = [
        ["posd run: ready (exec -> /v1/health 200)", f"{statistics.median(ready):.2f} s",
         f"{max(ready):.2f} s", "≤ 2 s"],
        ["posd run: RSS when idle", f"{statistics.median(rss):.1f} MB", f"{max(rss):.1f} MB",
         "≤ 80 MB"],
        [f"posd run: CPU over {window:g} s idle", f"{statistics.median(cpu):.2f} %",
         f"{max(cpu):.2f} %", "~0 %"],
        ["baseline: python importing the stack, RSS", f"{base_rss:.1f} MB", "", ""],
        ["baseline: the same, CPU", f"{base_cpu:.2f} %", "", ""],
    ]
    print("idle: the daemon doing nothing (both channels, SQLite, API, no scanner/HQ)")
    print(f"  {figures.machine()}")
    print(f"  {len(runs)} start(s); CPU as % of one core\n")
    print(figures.table(["figure", "median", "max", "target"], rows))


if __name__ == "__main__":
    main()
