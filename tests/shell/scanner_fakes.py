# SPDX-License-Identifier: MIT
"""Realistic stand-ins for scanners on a machine without one (and without /dev/uinput).

- :class:`PtyScanner` (in tests/shell/pty_scanner.py, which needs no evdev): a serial
  scanner behind a real pseudo-terminal.
- :class:`PipeKeyboard`: an input device with ``evdev.InputDevice``'s shape (posd's
  ``KeyDevice`` seam) whose events are real ``evdev.InputEvent`` values behind a real file
  descriptor (a pipe), so the reader's ``select`` and ``read`` run as on a device. Unplug
  makes ``read`` fail with ENODEV, as evdev does. Not a patched evdev: our own seam.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections import deque
from collections.abc import Iterator

from evdev import InputEvent, ecodes

from posd.core.errors import DeviceError


def keystrokes(text: str, start: float, step: float = 0.004,
               end: int = ecodes.KEY_ENTER) -> list[InputEvent]:
    """The events a US-layout scanner sends for ``text`` and its terminator: per key
    MSC_SCAN, key down, SYN_REPORT, key up, SYN_REPORT; Shift around capitals."""
    codes = {str(d): getattr(ecodes, f"KEY_{d}") for d in range(10)}
    events: list[InputEvent] = []
    at = start
    for char in text:
        key = codes.get(char) or getattr(ecodes, f"KEY_{char.upper()}")
        shift = char.isupper()
        if shift:
            events += _key(ecodes.KEY_LEFTSHIFT, 1, at)
        events += _key(key, 1, at) + _key(key, 0, at + step / 2)
        if shift:
            events += _key(ecodes.KEY_LEFTSHIFT, 0, at + step / 2)
        at += step
    return events + _key(end, 1, at) + _key(end, 0, at + step / 2)


def _key(key: int, value: int, at: float) -> list[InputEvent]:
    sec, usec = int(at), round((at % 1) * 1_000_000)
    return [InputEvent(sec, usec, ecodes.EV_MSC, ecodes.MSC_SCAN, 0x70000 + key),
            InputEvent(sec, usec, ecodes.EV_KEY, key, value),
            InputEvent(sec, usec, ecodes.EV_SYN, ecodes.SYN_REPORT, 0)]


class PipeKeyboard:
    def __init__(self, path: str = "/dev/input/by-id/usb-Test_Scanner-event-kbd",
                 name: str = "Test Barcode Scanner", *, busy: bool = False) -> None:
        self.path = path
        self.name = name
        self._busy = busy
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        self._events: deque[InputEvent] = deque()
        self._lock = threading.Lock()
        self._gone = False
        self.grabbed = False
        self.closed = threading.Event()

    # --- the evdev.InputDevice side posd uses -------------------------------------------

    def fileno(self) -> int:
        return self._r

    def grab(self) -> None:
        if self._busy:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        self.grabbed = True

    def read(self) -> Iterator[InputEvent]:
        """What was sent, then (once drained and unplugged) ENODEV, as evdev does."""
        with contextlib.suppress(BlockingIOError):
            os.read(self._r, 4096)
        with self._lock:
            events, self._events = list(self._events), deque()
        if events:
            if self._gone:
                os.write(self._w, b"x")  # still readable: the next read fails
            return iter(events)
        if self._gone:
            raise OSError(errno.ENODEV, os.strerror(errno.ENODEV))
        raise BlockingIOError(errno.EAGAIN, os.strerror(errno.EAGAIN))

    def close(self) -> None:
        if not self.closed.is_set():
            self.closed.set()
            os.close(self._r)
            os.close(self._w)

    # --- the test's side -------------------------------------------------------------------

    def send(self, events: list[InputEvent]) -> None:
        with self._lock:
            self._events.extend(events)
        os.write(self._w, b"e")

    def unplug(self) -> None:
        self._gone = True
        os.write(self._w, b"x")


class Plug:
    """A device factory for HidScanner: hands out the keyboards plugged in, one per open;
    with none plugged, fails as find_key_device does for a missing device."""

    def __init__(self, *keyboards: PipeKeyboard) -> None:
        self._plugged = deque(keyboards)
        self._lock = threading.Lock()

    def plug(self, keyboard: PipeKeyboard) -> None:
        with self._lock:
            self._plugged.append(keyboard)

    def __call__(self) -> PipeKeyboard:
        with self._lock:
            if not self._plugged:
                raise DeviceError("/dev/input/by-id/usb-Test_Scanner-event-kbd: not present "
                                  "(unplugged?)")
            return self._plugged.popleft()
