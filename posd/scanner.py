# SPDX-License-Identifier: MIT
"""Scanner readers: thin threads that turn device input into whole codes for the engine.

Framing is apart from reading (pyserial's ``threaded.Packetizer`` shape): a reader thread
does the I/O and hands each complete code, with the monotonic time of its last keystroke,
to one callback — :meth:`posd.engine.Engine.scan`, the one pipeline every source shares
(classification, double-read debounce, stale codes, "no sale waiting", "sale in flight").
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TextIO

log = logging.getLogger(__name__)

OnCode = Callable[[str, float, str], object]


class LineFramer:
    """Bytes in, whole lines out (CR, LF or CRLF end a code). No I/O."""

    def __init__(self, max_length: int = 128) -> None:
        self._buf = bytearray()
        self._max = max_length

    def feed(self, data: bytes) -> list[str]:
        codes = []
        for byte in data:
            if byte in (0x0D, 0x0A):
                if self._buf:
                    codes.append(self._buf.decode("ascii", "replace"))
                self._buf.clear()
            elif len(self._buf) < self._max:
                self._buf.append(byte)
            else:
                self._buf.clear()  # runaway input without a terminator: drop it
        return codes


class ConsoleScanner:
    """Codes typed (or scanned by a keyboard-wedge scanner) into a text stream, one a line."""

    source = "console"

    def __init__(self, stream: TextIO, on_code: OnCode) -> None:
        self._stream = stream
        self._on_code = on_code
        self._thread = threading.Thread(target=self._run, name="scanner-console", daemon=True)
        self.connected = False

    def start(self) -> None:
        self.connected = True
        self._thread.start()

    def _run(self) -> None:
        try:
            for line in self._stream:
                code = line.strip()
                if code:
                    self._on_code(code, time.monotonic(), self.source)
        except (OSError, ValueError) as err:  # closed stream
            log.warning("console scanner stopped: %s", err)
        finally:
            self.connected = False

    def stop(self) -> None:
        """Daemon thread: it ends with the process; nothing to release."""
