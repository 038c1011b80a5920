# SPDX-License-Identifier: MIT
"""sd_notify(3) without libsystemd: one datagram to ``$NOTIFY_SOCKET`` per message. [shell]

systemd's service manager reads newline-separated ``KEY=value`` fields from an
``AF_UNIX``/``SOCK_DGRAM`` socket whose path it puts in ``$NOTIFY_SOCKET``; a leading ``@``
means Linux's abstract namespace (a NUL byte in the address). That is the whole protocol
(reference/hardware.md §4); the ``sdnotify`` package would hide every error.

posd sends (systemd/posd.service has ``Type=notify``, ``WatchdogSec=``):

- ``STATUS=…`` lines a person reads in ``systemctl status posd`` while it starts and runs;
- ``READY=1`` once the store is open, recovery is done and the API listens (Daemon.start);
- ``WATCHDOG=1`` from the daemon's main loop, every half ``$WATCHDOG_USEC``, and only after a
  health check (the store answered) passed: :class:`Watchdog`. A wedged main loop or a dead
  database stops the keep-alives, and systemd restarts posd (``Restart=on-failure``);
- ``STOPPING=1`` when a stop begins.

Outside systemd (no ``$NOTIFY_SOCKET``) every call does nothing. A send that fails is
logged once and never stops the daemon: the notifications serve the service manager, the
sales do not depend on them.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from posd.core.errors import PosdError

log = logging.getLogger(__name__)

#: How long a notification may wait for room in the service manager's socket queue.
SEND_TIMEOUT_S = 1.0


def socket_address(value: str) -> str | None:
    """The address to send to, from ``$NOTIFY_SOCKET``; None if it is not a Unix socket."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:…" (systemd 254+, for VMs): not for a shop's till


def _one_line(text: str) -> str:
    return " ".join(text.split())  # a newline would start a new field


class Notifier:
    """Sends notifications to the service manager; does nothing without one."""

    def __init__(self, address: str | None = None, *, watchdog_s: float | None = None) -> None:
        self.address = address
        #: $WATCHDOG_USEC in seconds, or None when systemd expects no keep-alives.
        self.watchdog_s = watchdog_s
        self._failed = False

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None,
                     pid: int | None = None) -> Notifier:
        """From ``$NOTIFY_SOCKET``, ``$WATCHDOG_USEC`` and ``$WATCHDOG_PID`` (which, when
        set, must be this process: sd_watchdog_enabled(3))."""
        env = os.environ if environ is None else environ
        raw = env.get("NOTIFY_SOCKET", "")
        address = socket_address(raw) if raw else None
        if raw and address is None:
            log.warning("NOTIFY_SOCKET=%s is not a Unix socket: not notifying systemd", raw)
        usec, for_pid = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        mine = not for_pid or for_pid == str(os.getpid() if pid is None else pid)
        watchdog = int(usec) / 1e6 if usec.isdigit() and int(usec) > 0 and mine else None
        return cls(address, watchdog_s=watchdog if address else None)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram. True if it was sent."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                # A receiver that does not read fills its queue (net.unix.max_dgram_qlen,
                # 10 datagrams by default) and a blocking send would then wait for ever --
                # in the daemon's main loop. systemd reads at once; a second is plenty.
                sock.settimeout(SEND_TIMEOUT_S)
                sock.sendto(payload, self.address)
        except OSError as err:
            if not self._failed:
                log.warning("cannot notify systemd at %r: %s", self.address, err)
                self._failed = True
            return False
        return True

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={_one_line(text)}")

    def ready(self, text: str) -> bool:
        return self.send("READY=1", f"STATUS={_one_line(text)}")

    def stopping(self, text: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={_one_line(text)}")


class Watchdog:
    """``WATCHDOG=1`` every half ``$WATCHDOG_USEC``, each only after ``check()`` returned.

    ``check()`` is the health check (it reads the store) and returns the STATUS text; a
    :class:`PosdError` from it (StoreError: the database is unusable) withholds the
    keep-alive. Driven by the daemon's main loop (:meth:`tick`), never by a thread of its
    own: a free-running thread would keep a wedged daemon alive (reference/hardware.md §4).
    """

    def __init__(self, notifier: Notifier, check: Callable[[], str], *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._notifier = notifier
        self._check = check
        self._clock = clock
        self.interval = notifier.watchdog_s / 2 if notifier.watchdog_s else None
        self._due = clock()
        self.last_problem = ""

    def due_in(self) -> float | None:
        """Seconds until the next keep-alive is due (0 if now); None: no watchdog."""
        if self.interval is None:
            return None
        return max(0.0, self._due - self._clock())

    def tick(self) -> bool:
        """Check and send if due. True if WATCHDOG=1 was sent."""
        if self.interval is None or self._clock() < self._due:
            return False
        self._due = self._clock() + self.interval
        try:
            status = self._check()
        except PosdError as err:
            if str(err) != self.last_problem:
                log.error("health check failed, withholding the watchdog keep-alive: %s", err)
            self.last_problem = str(err)
            self._notifier.status(f"unhealthy: {err}")
            return False
        self.last_problem = ""
        return self._notifier.send("WATCHDOG=1", f"STATUS={_one_line(status)}")
