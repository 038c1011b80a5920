# SPDX-License-Identifier: MIT
"""The console scanner through a real pipe, feeding the real engine's scan pipeline."""

from __future__ import annotations

import os
import queue
import time
from pathlib import Path

from posd.devices.scanners import ConsoleScanner


def test_console_scanner_hands_each_line_to_the_pipeline(tmp_path: Path) -> None:
    read_fd, write_fd = os.pipe()
    got: queue.Queue[tuple[str, float, str]] = queue.Queue()
    with os.fdopen(read_fd, "r", encoding="utf-8") as stream:
        scanner = ConsoleScanner(stream, lambda c, t, s: got.put((c, t, s)))
        scanner.start()
        before = time.monotonic()
        os.write(write_fd, b"134567890123450000\n\n  281234567890120001  \n")
        first = got.get(timeout=5)
        second = got.get(timeout=5)
        os.close(write_fd)
        scanner._thread.join(5)  # noqa: SLF001 - end of input ends the reader
    assert (first[0], first[2]) == ("134567890123450000", "console")
    assert second[0] == "281234567890120001"
    assert first[1] >= before
    assert got.empty() and not scanner.connected
