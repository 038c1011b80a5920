#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Serial scanner: the terminator's write into a pty -> pay request at the simulator.

The daemon's real pipeline, in one process (DESIGN.md §7, issue #4):

    os.openpty master --"13…\\r"--> pty slave --> pyserial (SerialScanner, posd.core.framing) -->
    Engine.scan --> Store.save (a SQLite file: WAL, synchronous=FULL) --> the sale's worker
    --> WechatPay.pay (requests, HTTPS, client certificate) --> the channel simulator

The digits are written first (a USB-COM scanner sends a code in one or two USB packets) and,
2 ms later, the terminator. t0 is ``time.perf_counter()`` just before the terminator's
``os.write`` into the pty master; t1 when the channel simulator (``posd simulator``'s own
server, a subclass that only records the time) has read the whole micropay request and is
about to answer it. Every sale is paid (codes ending 7777), one at a time, as at a counter.

Rows, measured in the same run and interleaved:

- ``cr``: terminator CR, the default (``terminators = ["cr", "lf"]``);
- ``idle``: no terminator, the code ends after ``idle_gap_ms`` (50) of silence; t0 is the
  write of the last digit, so the idle gap is inside the figure;
- baseline: a second SerialScanner on its own pty; terminator write -> its on_code callback.

Run from the repository root: ``.venv/bin/python bench/scan_latency_serial.py [-n 300]``.
"""

from __future__ import annotations

import argparse
import logging
import os
import queue
import sys
import tempfile
import time
from pathlib import Path

import figures

sys.path.insert(0, str(figures.ROOT))  # tests/: the sandbox merchant, config and pty scanner

from posd.channels.simulator import Simulator, make_test_pki  # noqa: E402
from posd.channels.simulator.faults import Fault  # noqa: E402
from posd.channels.simulator.gateway import Gateway, Reply, Request  # noqa: E402
from posd.config import ScannerConfig  # noqa: E402
from posd.daemon import build_channels  # noqa: E402
from posd.engine import Engine  # noqa: E402
from posd.core.sale import State  # noqa: E402
from posd.devices.scanners import SerialScanner  # noqa: E402
from posd.store import Store  # noqa: E402
from tests.sandbox import WECHAT, config, make_config  # noqa: E402
from tests.shell.pty_scanner import PtyScanner  # noqa: E402

TARGET_P99_S = 0.015
DIGITS_BEFORE_TERMINATOR_S = 0.002
WAIT_S = 5.0


class ArrivalClock(Simulator):
    """The channel simulator, noting when each micropay request has been read in full."""

    def __init__(self, **options: object) -> None:
        super().__init__(**options)  # type: ignore[arg-type]
        self.arrivals: queue.Queue[float] = queue.Queue()

    def _process(self, gateway: Gateway, request: Request, fault: Fault | None) -> Reply | None:
        if request.path == "/pay/micropay":
            self.arrivals.put(time.perf_counter())
        return super()._process(gateway, request, fault)


class Bench:
    def __init__(self, tmp: Path) -> None:
        pki = make_test_pki(tmp / "pki")
        self.sim = ArrivalClock(wechat=WECHAT, tls=pki.server_tls()).start()
        self.cfg = config(make_config(tmp, self.sim.url, pki, read_timeout_s=10.0))
        self.store = Store.open(self.cfg.database.path)
        self.engine = Engine(self.cfg, self.store, build_channels(self.cfg))
        self.engine.start()
        self.ptys = {name: PtyScanner(tmp / f"usb-Bench_{name}-if00") for name in
                     ("cr", "idle", "bare")}
        self._read: queue.Queue[float] = queue.Queue()
        self.readers = [
            self._reader("cr", ScannerConfig(kind="serial", device=str(self.ptys["cr"].link))),
            self._reader("idle", ScannerConfig(kind="serial", device=str(self.ptys["idle"].link),
                                               terminators=("idle",))),
            SerialScanner(ScannerConfig(kind="serial", device=str(self.ptys["bare"].link)),
                          lambda _c, _t, _s: self._read.put(time.perf_counter()), label="bare"),
        ]
        self.readers[2].start()
        if not all(r.wait_connected(timeout=WAIT_S) for r in self.readers):
            raise SystemExit(f"scan_latency_serial: a pty did not open: "
                             f"{[r.health() for r in self.readers]}")

    def _reader(self, name: str, cfg: ScannerConfig) -> SerialScanner:
        reader = SerialScanner(cfg, self.engine.scan, label=f"scanner.{name}")
        reader.start()
        return reader

    def pipeline(self, name: str, i: int) -> float:
        sale, _ = self.engine.create_sale(1 + i % 5000)
        pty = self.ptys[name]
        digits = f"13{i:012d}7777".encode()
        if name == "idle":
            t0 = pty.send(digits)  # the last byte: the idle gap starts now
        else:
            pty.send(digits)
            time.sleep(DIGITS_BEFORE_TERMINATOR_S)  # the scanner's pace, not a thread wait
            t0 = pty.send(b"\r")
        try:
            t1 = self.sim.arrivals.get(timeout=WAIT_S)
        except queue.Empty:
            raise SystemExit(f"scan_latency_serial: no pay request; last scan "
                             f"{self.engine.health()['last_scan']}") from None
        self._settle(sale.id)
        return t1 - t0

    def baseline(self, i: int) -> float:
        pty = self.ptys["bare"]
        pty.send(f"14{i:012d}7777".encode())
        time.sleep(DIGITS_BEFORE_TERMINATOR_S)
        t0 = pty.send(b"\r")
        try:
            return self._read.get(timeout=WAIT_S) - t0
        except queue.Empty:
            raise SystemExit("scan_latency_serial: the baseline reader read nothing") from None

    def _settle(self, sale_id: int) -> None:
        deadline = time.monotonic() + WAIT_S
        sale = self.engine.get(sale_id)
        while not sale.final and (left := deadline - time.monotonic()) > 0:
            sale = self.engine.wait_for_change(sale_id, sale.updated_at, left)
        if sale.state is not State.PAID:
            raise SystemExit(f"scan_latency_serial: sale {sale_id} is {sale.state}: {sale.message}")

    def close(self) -> None:
        for reader in self.readers:
            reader.stop()
        for pty in self.ptys.values():
            pty.close()
        self.engine.stop(timeout=5)
        self.store.close()
        self.sim.stop()


def run(n: int, warmup: int, directory: Path) -> dict[str, list[float]]:
    bench = Bench(directory)
    samples: dict[str, list[float]] = {"cr": [], "idle": [], "baseline": []}
    try:
        for i in range(warmup + n):
            row = {"cr": bench.pipeline("cr", 3 * i), "idle": bench.pipeline("idle", 3 * i + 1),
                   "baseline": bench.baseline(i)}
            if i >= warmup:
                for key, value in row.items():
                    samples[key].append(value)
    finally:
        bench.close()
    return samples


def report(samples: dict[str, list[float]], warmup: int, directory: Path, *,
           quick: bool = False) -> str:
    p99 = figures.spread(samples["cr"])[2]
    rows = [[label, *map(figures.ms, figures.spread(samples[key]))] for label, key in (
        ("pty write of CR -> pay request at the simulator", "cr"),
        ("idle framing: last byte -> pay request (50 ms gap inside)", "idle"),
        ("baseline: pty write of CR -> SerialScanner on_code", "baseline"))]
    verdict = "(no verdict on a quick run)" if quick else "met" if p99 <= TARGET_P99_S else "MISSED"
    return "\n".join([
        "scan_latency_serial: serial scanner (pty + pyserial) -> pay request at the simulator",
        f"  {figures.machine()}",
        f"  {figures.command_line()}",
        f"  database: {directory} ({figures.filesystem(directory)}), WAL, synchronous=FULL;"
        " channel: WechatPay over HTTPS to the channel simulator, kept-alive connection",
        f"  samples: {len(samples['cr'])} per row after {warmup} warm-up;"
        " percentiles nearest-rank; times in ms",
        "",
        figures.table(["", "median", "p90", "p99", "max"], rows),
        "",
        f"  target p99 <= {TARGET_P99_S * 1000:.0f} ms (terminated codes): {verdict}"
        f" (p99 = {figures.ms(p99)} ms)",
    ])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=300, help="samples per row (default 300)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the database goes (default: a temporary directory)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20 samples, no verdict (the test suite's)")
    args = parser.parse_args()
    if args.quick:
        args.n, args.warmup = 20, 3
    logging.basicConfig(level=logging.ERROR)  # the pipeline's per-sale INFO lines off
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        directory = Path(tmp)
        samples = run(args.n, args.warmup, directory)
        print(report(samples, args.warmup, directory, quick=args.quick))
    return 0 if args.quick or figures.spread(samples["cr"])[2] <= TARGET_P99_S else 1


if __name__ == "__main__":
    os.chdir(figures.ROOT)
    sys.exit(main())
