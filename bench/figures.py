# SPDX-License-Identifier: MIT
"""What every bench script prints: percentiles, the machine it ran on, aligned tables.

Medians are ``statistics.median``; other percentiles are nearest-rank (the smallest sample
with at least p % of the samples at or below it), so every percentile printed is a time
that was actually measured, never an interpolation between two.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: The repository root: bench scripts import the sandbox helpers from ``tests/sandbox.py``.
ROOT = Path(__file__).resolve().parents[1]


def percentile(samples: Sequence[float], p: float) -> float:
    """Nearest-rank ``p``-th percentile (0 < p <= 100) of a non-empty sequence."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def spread(samples: Sequence[float]) -> tuple[float, float, float, float]:
    """(median, p90, p99, max)."""
    return (statistics.median(samples), percentile(samples, 90), percentile(samples, 99),
            max(samples))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _cpu_ticks() -> tuple[int, int] | None:
    """(all CPU time, of it stolen by the hypervisor) since boot, in ticks (/proc/stat)."""
    try:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(x) for x in stat.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return (sum(fields[:8]), fields[7]) if len(fields) >= 8 else None


#: /proc/stat when the script started: machine() reports the steal since then.
_STARTED = _cpu_ticks()


def stolen() -> float | None:
    """The share of CPU time the hypervisor took from this VM since the script started
    (the ``st`` of vmstat), or None when unknown or too little time has passed."""
    now = _cpu_ticks()
    if now is None or _STARTED is None or now[0] - _STARTED[0] < 100:
        return None
    return (now[1] - _STARTED[1]) / (now[0] - _STARTED[0])


def loop_us() -> float:
    """The fastest of 5 timings of a fixed pure-Python loop, ``sum(range(1000))``, in µs.

    A yardstick for the CPU a run had, beside the steal: the same VM type has given runs
    whose every figure (PostgreSQL's CPU per record included) was 2-3 times another day's
    with under 10 % stolen. Two runs compare when their loops do."""
    runs = timeit.repeat("sum(range(1000))", number=2_000, repeat=5)
    return min(runs) / 2_000 * 1e6


def machine() -> str:
    """One line: when, on what, with which Python, how fast a fixed Python loop ran at the
    end (``loop_us``) and, when the script has run a while, how much CPU time the hypervisor
    stole meanwhile: on a shared VM a run with 30 % stolen measures the neighbours (every
    figure, baselines included, about twice as slow)."""
    now = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %z")
    line = (f"{now} · {os.cpu_count()} CPU(s), {_cpu_model()} · {platform.system()} "
            f"{platform.release()} · Python {platform.python_version()}"
            f" · sum(range(1000)) in {loop_us():.1f} µs")
    if (share := stolen()) is not None:
        line += f" · CPU stolen by the hypervisor since start: {share:.0%}"
    return line


def filesystem(path: Path) -> str:
    """The file system type holding ``path`` (from /proc/mounts), e.g. ``ext4``; tmpfs matters:
    there fsync costs nothing and a write-ahead figure means little."""
    target, best, kind = str(path.resolve()), "", "unknown"
    try:
        with open("/proc/mounts", encoding="utf-8") as mounts:
            for line in mounts:
                _, mount_point, fstype, *_ = line.split()
                inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
                if inside and len(mount_point) >= len(best):
                    best, kind = mount_point, fstype
    except OSError:
        pass
    return kind


def table(header: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """Columns aligned: the first left, the others right."""
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = (c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))
        return (indent + "  ".join((first, *rest))).rstrip()

    rule = indent + "  ".join("-" * w for w in widths)
    return "\n".join([line(header), rule, *(line(r) for r in rows)])


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def command_line() -> str:
    """How this script was run, to print beside its figures."""
    return " ".join([".venv/bin/python", *sys.argv])


def ca_bundle(directory: Path, test_ca: Path) -> Path:
    """certifi's public CAs with ``test_ca`` appended, as one ``ca_file``: a channel's TLS
    context then loads what a till's loads (requests uses certifi when ca_file is unset)
    and still trusts the benchmark's loopback servers."""
    import certifi

    bundle = directory / "ca-bundle.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() + test_ca.read_bytes())
    return bundle


def use_ca_file(data: dict[str, Any], bundle: Path) -> None:
    """Point every channel of a config dict (tests/sandbox.py make_config) at ``bundle``."""
    for section in data["channels"].values():
        section["ca_file"] = str(bundle)
