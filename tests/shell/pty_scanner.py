# SPDX-License-Identifier: MIT
"""A serial scanner behind a real pseudo-terminal, for machines without one (no evdev needed).

posd's pyserial opens the pty's slave through a stable symlink (as udev's
/dev/serial/by-id/... links); the test writes what the scanner would send into the master.
Unplug closes the master -- pyserial's blocked read fails with EIO, as with a USB-serial
adapter pulled out -- and removes the link; plug opens a new pty behind the same link.
"""

from __future__ import annotations

import os
import time
from pathlib import Path


class PtyScanner:
    def __init__(self, link: Path, *, plugged: bool = True) -> None:
        self.link = link
        self.master = -1
        if plugged:
            self.plug()

    def plug(self) -> None:
        self.master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)  # the slave lives on while the master is open; posd opens it by name
        self.link.symlink_to(name)

    def send(self, data: bytes) -> float:
        """Write ``data`` as the scanner would; returns time.perf_counter() just before."""
        at = time.perf_counter()
        os.write(self.master, data)
        return at

    def unplug(self) -> None:
        self.link.unlink()
        os.close(self.master)
        self.master = -1

    def close(self) -> None:
        if self.master >= 0:
            self.unplug()
