# SPDX-License-Identifier: MIT
"""Scanner readers: thin threads that turn device input into whole codes for the engine.

Framing is apart from reading (pyserial's ``threaded.Packetizer`` shape): a reader thread
does the I/O and feeds a pure framer (:mod:`posd.core.framing`); each complete code, with the
monotonic time of its last keystroke, goes to one callback -- :meth:`posd.engine.Engine.scan`,
the one pipeline every source shares (classification, double-read debounce, stale codes,
"no sale waiting", "sale in flight").

Theory of operation (hid, serial): the thread opens its device, reads until the device goes
away (unplugged: ENODEV / EIO / EBADF, all an ``OSError``), closes it and opens it again
after a backoff (0.5, 1, 2, 2, ... s), so a re-plugged scanner is read again within 2 s
without a restart. Reads block (``select``); an idle scanner costs no CPU. ``stop()`` wakes a
blocked read (a self-pipe for evdev, pyserial's ``cancel_read``). Each reader's state --
connected, grabbed, last error -- is its :meth:`health`, shown in /v1/health.

(Longer than the house's 400-line guide: DESIGN §1 keeps every reader here, and its four
sections -- console, the shared reconnecting reader, hid, serial -- read independently.)
"""

from __future__ import annotations

import contextlib
import errno
import glob
import logging
import os
import select
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TextIO

from posd.config import ScannerConfig
from posd.core.errors import ConfigError, DeviceError
from posd.core.framing import (
    BYTE_TERMINATORS,
    EV_KEY,
    EV_SYN,
    IDLE,
    KEY_0,
    KEY_1,
    KEY_ENTER,
    KEY_KPENTER,
    KEY_TERMINATORS,
    KEYPAD,
    SYN_DROPPED,
    ByteFramer,
    Code,
    Dropped,
    Framed,
    KeyFramer,
)

if TYPE_CHECKING:
    import serial

log = logging.getLogger(__name__)

OnCode = Callable[[str, float, str], object]

#: Delays between attempts to (re)open a device; the last repeats. Re-plug is noticed within
#: the last one. One failed open() every 2 s costs nothing measurable.
RETRY_DELAYS_S: tuple[float, ...] = (0.5, 1.0, 2.0)


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


# --- hid and serial: the shared reconnecting reader --------------------------------------


class Backoff:
    """Delays between reopen attempts: ``delays`` in turn, then the last one forever."""

    def __init__(self, delays: Sequence[float] = RETRY_DELAYS_S) -> None:
        self._delays = tuple(delays) or (1.0,)
        self._attempts = 0

    def next(self) -> float:
        delay = self._delays[min(self._attempts, len(self._delays) - 1)]
        self._attempts += 1
        return delay

    def reset(self) -> None:
        self._attempts = 0

    @property
    def longest(self) -> float:
        return self._delays[-1]


class DeviceReader:
    """One device, one thread: open, pump until it fails, close, back off, open again.

    Subclasses say how to open, pump and interrupt their device; this class keeps the state
    that /v1/health shows and hands framed codes to the pipeline.
    """

    kind: ClassVar[str]

    def __init__(self, label: str, device: str, on_code: OnCode,
                 retry_delays: Sequence[float]) -> None:
        self.label = label
        self._on_code = on_code
        self._backoff = Backoff(retry_delays)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._main, name=label, daemon=True)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._state: dict[str, Any] = {
            "kind": self.kind, "device": device, "connected": False, "grabbed": False,
            "last_error": "not opened yet", "codes": 0, "partial_codes_dropped": 0}

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop reading and release the device (its grab or lock goes with the fd)."""
        self._stopping.set()
        self._interrupt()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def health(self) -> dict[str, Any]:
        with self._lock:
            state = dict(self._state)
        if not state["connected"]:
            state["degraded"] = f"not connected: {state['last_error']}"
        return state

    @property
    def connected(self) -> bool:
        with self._lock:
            return bool(self._state["connected"])

    def wait_connected(self, connected: bool = True, timeout: float | None = None) -> bool:
        """Block until the device is (dis)connected, or ``timeout``; True if it is."""
        return self.wait_until(lambda state: state["connected"] is connected, timeout)

    def wait_until(self, predicate: Callable[[dict[str, Any]], bool],
                   timeout: float | None = None) -> bool:
        """Block until ``predicate(state)`` holds (state: what :meth:`health` shows)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self._state), timeout)

    # --- for subclasses --------------------------------------------------------------------

    def _open(self) -> Any:
        """Open the device, ready to read; raise DeviceError with a sentence to act on."""
        raise NotImplementedError

    def _pump(self, handle: Any) -> None:
        """Read until stopped (return) or the device fails (raise OSError)."""
        raise NotImplementedError

    def _close(self, handle: Any) -> None:
        raise NotImplementedError

    def _interrupt(self) -> None:
        """Wake a blocked read so the thread sees ``_stopping``."""

    def _lost(self, reason: str) -> Dropped | None:
        """The device went away: the framer drops any partial code."""
        raise NotImplementedError

    # --- the loop --------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._loop()
        except Exception as err:  # noqa: BLE001 - the reader's top: hand the error to health
            log.exception("%s: reader stopped", self.label)
            self._set(connected=False, grabbed=False,
                      last_error=f"reader stopped: {type(err).__name__}: {err}")

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                handle = self._open()
            except DeviceError as err:
                self._failed(str(err))
                self._stopping.wait(self._backoff.next())
                continue
            self._backoff.reset()
            lost: OSError | None = None
            try:
                self._pump(handle)
            except OSError as err:  # pyserial's SerialException is an OSError too
                lost = err
            finally:
                self._close(handle)  # before anyone is told: the grab or lock is gone
            if lost is None:
                self._set(connected=False, grabbed=False)
                continue  # stopped
            self._deliver(self._lost("device lost"), time.monotonic())
            self._failed(f"device lost: {describe_os_error(lost)}")
            self._stopping.wait(self._backoff.next())

    def _connected(self, device: str, grabbed: bool, note: str) -> None:
        self._set(connected=True, grabbed=grabbed, device=device, last_error="")
        log.info("%s: reading %s%s", self.label, device, note)

    def _failed(self, error: str) -> None:
        with self._lock:
            repeated = self._state["last_error"] == error
        self._set(connected=False, grabbed=False, last_error=error)
        if not repeated:  # once per new problem, not every retry
            log.warning("%s: %s (retrying every %g s at most)", self.label, error,
                        self._backoff.longest)

    def _set(self, **changes: Any) -> None:
        with self._changed:
            self._state.update(changes)
            self._changed.notify_all()

    def _deliver(self, framed: Framed | None, read_at: float) -> None:
        match framed:
            case None:
                return
            case Code(text=text):
                self._on_code(text, read_at, self.label)
                self._count("codes")
            case Dropped(reason=reason, length=length):
                self._count("partial_codes_dropped")
                log.info("%s: partial code (%d characters) dropped: %s", self.label, length,
                         reason)

    def _count(self, key: str) -> None:
        with self._changed:
            self._state[key] += 1
            self._changed.notify_all()


def describe_os_error(err: OSError) -> str:
    """A device error as a short sentence (no traceback, no repr)."""
    name = errno.errorcode.get(err.errno or 0, "")
    text = err.strerror or str(err) or type(err).__name__
    return f"{text} ({name})" if name and name not in text else text


# --- hid (evdev) --------------------------------------------------------------------------


class KeyEvent(Protocol):
    """The shape of ``evdev.InputEvent`` that the HID reader uses."""

    @property
    def type(self) -> int: ...
    @property
    def code(self) -> int: ...
    @property
    def value(self) -> int: ...
    def timestamp(self) -> float: ...


class KeyDevice(Protocol):
    """The shape of ``evdev.InputDevice`` that the HID reader uses (the tests' seam)."""

    @property
    def path(self) -> str | bytes: ...
    @property
    def name(self) -> str: ...
    def fileno(self) -> int: ...
    def read(self) -> Iterable[KeyEvent]: ...
    def grab(self) -> None: ...
    def close(self) -> None: ...


def key_terminators(config: ScannerConfig) -> tuple[int, ...]:
    names = config.terminators or ("enter", "kpenter", "tab")
    return tuple(KEY_TERMINATORS[n] for n in names)


class HidScanner(DeviceReader):
    """A USB HID (keyboard-wedge) scanner through evdev: grabbed, so codes reach only posd.

    ``open_device`` finds and opens the input device (default: :func:`find_key_device` by
    the config's ``device`` / ``match_name`` / ``match_vendor_product``); tests pass their own.
    """

    kind = "hid"

    def __init__(self, config: ScannerConfig, on_code: OnCode, *, label: str = "scanner",
                 open_device: Callable[[], KeyDevice] | None = None,
                 retry_delays: Sequence[float] = RETRY_DELAYS_S) -> None:
        super().__init__(label, config.device or describe_match(config), on_code, retry_delays)
        self._config = config
        self._open_device = open_device or (lambda: find_key_device(config))
        self._framer = KeyFramer(key_terminators(config), key_gap_s=config.key_gap_ms / 1000)
        self._wake_r, self._wake_w = os.pipe()

    def stop(self, timeout: float = 2.0) -> None:
        super().stop(timeout)
        if not self._thread.is_alive() and self._wake_r >= 0:
            for fd in (self._wake_r, self._wake_w):
                os.close(fd)
            self._wake_r = self._wake_w = -1

    def _interrupt(self) -> None:
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")

    def _open(self) -> KeyDevice:
        device = self._open_device()
        path = os.fsdecode(device.path)
        if self._config.grab:
            try:
                device.grab()  # EVIOCGRAB: only posd gets the events; released with the fd
            except OSError as err:
                device.close()
                raise DeviceError(grab_problem(path, err)) from err
        self._connected(path, self._config.grab, f" ({device.name})")
        return device

    def _pump(self, device: KeyDevice) -> None:
        while True:
            ready, _, _ = select.select([device.fileno(), self._wake_r], [], [])
            if self._wake_r in ready or self._stopping.is_set():
                return
            try:
                events = list(device.read())
            except BlockingIOError:
                continue
            # The read time, not the events' (kernel CLOCK_REALTIME) stamps, is the engine's
            # read_at: the engine compares it with time.monotonic(). The stamps measure the
            # gaps between keys, which a batched read would blur.
            now = time.monotonic()
            for event in events:
                self._deliver(self._event(event), now)

    def _event(self, event: KeyEvent) -> Framed | None:
        if event.type == EV_KEY:
            return self._framer.feed(event.code, event.value, event.timestamp())
        if event.type == EV_SYN and event.code == SYN_DROPPED:
            return self._framer.overrun("the kernel dropped input events (buffer overrun)")
        return None

    def _close(self, device: KeyDevice) -> None:
        with contextlib.suppress(OSError):  # already gone with the device
            device.close()

    def _lost(self, reason: str) -> Dropped | None:
        return self._framer.lost(reason)


def grab_problem(path: str, err: OSError) -> str:
    if err.errno == errno.EBUSY:
        return (f"{path}: another process holds the grab (EVIOCGRAB: device busy), so posd "
                f"would see no key at all; find it with `fuser -v {os.path.realpath(path)}` "
                "(a second posd, a kiosk or key-remapping tool) and stop it, or set grab = false")
    return f"{path}: cannot grab: {describe_os_error(err)}"


def describe_match(config: ScannerConfig) -> str:
    parts = [f"device {config.device}" if config.device else "",
             f"name containing {config.match_name!r}" if config.match_name else "",
             f"vendor:product {config.match_vendor_product}" if config.match_vendor_product
             else ""]
    return ", ".join(p for p in parts if p)


def require_evdev() -> None:
    """Refuse to start a HID scanner without python-evdev (a C extension, Linux only)."""
    try:
        import evdev  # noqa: F401, PLC0415 - optional: only HID scanners need it
    except ImportError as err:
        raise ConfigError("scanner.kind = 'hid' needs python-evdev: pip install 'posd[hid]' "
                          "(builds with gcc and kernel headers) or evdev-binary") from err


def find_key_device(config: ScannerConfig) -> KeyDevice:
    """Open the one keyboard-like input device that ``config`` names; DeviceError if none.

    ``device`` (a stable /dev/input/by-id/... link) is opened directly; without it every
    /dev/input/event* node is tried. ``match_name`` (part of the name, any case) and
    ``match_vendor_product`` must match too. Nodes without Enter and digit keys are skipped:
    a scanner often exposes a second node (consumer control) under the same name.
    """
    import evdev  # noqa: PLC0415 - optional dependency, checked by require_evdev()

    paths = [config.device] if config.device else sorted(evdev.list_devices(), key=_node_order)
    found: list[KeyDevice] = []
    for path in paths:
        device = _open_input(path, explicit=bool(config.device))
        if device is not None and _matches(device, config):
            found.append(device)
        elif device is not None:
            device.close()
    if len(found) == 1:
        return found[0]
    for device in found:
        device.close()
    if found:
        names = ", ".join(f"{os.fsdecode(d.path)} ({d.name})" for d in found)
        raise DeviceError(f"{len(found)} input devices match {describe_match(config)}: {names}; "
                          "set device = a /dev/input/by-id/ or by-path link for each scanner")
    raise DeviceError(f"no keyboard-like input device matches {describe_match(config)}"
                      f"{_unreadable_note()} (unplugged?)")


def _open_input(path: str, *, explicit: bool) -> KeyDevice | None:
    import evdev  # noqa: PLC0415 - optional dependency

    try:
        return evdev.InputDevice(path)
    except OSError as err:
        if not explicit:
            return None  # someone else's device we may not read: not ours
        if err.errno == errno.ENOENT:
            raise DeviceError(f"{path}: not present (unplugged?)") from err
        if err.errno == errno.EACCES:
            raise DeviceError(f"{path}: permission denied: add posd's user to group 'input' "
                              "(docs/hardware.md)") from err
        raise DeviceError(f"{path}: {describe_os_error(err)}") from err


def _matches(device: Any, config: ScannerConfig) -> bool:
    if config.match_name and config.match_name.casefold() not in device.name.casefold():
        return False
    if config.match_vendor_product:
        vendor, product = (int(x, 16) for x in config.match_vendor_product.split(":"))
        if (device.info.vendor, device.info.product) != (vendor, product):
            return False
    keys = set(device.capabilities().get(EV_KEY, ()))
    digits = set(range(KEY_1, KEY_0 + 1)) | set(KEYPAD)
    return bool(keys & {KEY_ENTER, KEY_KPENTER}) and bool(keys & digits)


def _node_order(path: str) -> tuple[int, str]:
    digits = "".join(c for c in os.path.basename(path) if c.isdigit())
    return (int(digits) if digits else 0, path)


def _unreadable_note() -> str:
    nodes = glob.glob("/dev/input/event*")
    unreadable = [n for n in nodes if not os.access(n, os.R_OK)]
    if not unreadable:
        return ""
    return (f" ({len(unreadable)} of {len(nodes)} input devices are not readable: add posd's "
            "user to group 'input')")


# --- serial (pyserial) --------------------------------------------------------------------

PARITY = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}


def byte_framer(config: ScannerConfig) -> ByteFramer:
    names = config.terminators or ("cr", "lf")
    terminators = b"".join(BYTE_TERMINATORS[n] for n in names if n != IDLE)
    return ByteFramer(terminators, idle_gap_s=config.idle_gap_ms / 1000,
                      end_on_idle=IDLE in names)


class SerialScanner(DeviceReader):
    """A serial (RS-232 or USB-CDC "virtual COM") scanner through pyserial.

    ``device`` is a path (prefer /dev/serial/by-id/...) or any pyserial URL
    (``socket://``, ``rfc2217://``). The port is opened exclusively (flock), so a second
    reader is refused rather than splitting the bytes. Reads block; while a partial code is
    pending the read times out at the framer's idle deadline, so the gap rule needs no timer.
    """

    kind = "serial"

    def __init__(self, config: ScannerConfig, on_code: OnCode, *, label: str = "scanner",
                 retry_delays: Sequence[float] = RETRY_DELAYS_S) -> None:
        super().__init__(label, config.device or "", on_code, retry_delays)
        self._config = config
        self._framer = byte_framer(config)
        self._port: serial.SerialBase | None = None

    def _open(self) -> serial.SerialBase:
        import serial  # noqa: PLC0415 - keeps pyserial out of console-only processes

        c = self._config
        try:
            port = serial.serial_for_url(
                c.device, baudrate=c.baudrate, bytesize=c.bytesize, parity=PARITY[c.parity],
                stopbits=c.stopbits, timeout=None, exclusive=True)
        except (OSError, ValueError) as err:  # SerialException is an OSError
            raise DeviceError(serial_problem(c.device or "", err)) from err
        with self._lock:
            self._port = port
        self._connected(c.device or "", True, f" at {c.baudrate} {c.bytesize}"
                        f"{PARITY[c.parity]}{c.stopbits:g}")
        if self._stopping.is_set():
            self._interrupt()
        return port

    def _pump(self, port: serial.SerialBase) -> None:
        while not self._stopping.is_set():
            deadline = self._framer.deadline
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if port.timeout != timeout:
                port.timeout = timeout
            data = port.read(port.in_waiting or 1)
            now = time.monotonic()
            if self._stopping.is_set():
                return
            for framed in self._framer.feed(data, now) if data else [self._framer.idle(now)]:
                self._deliver(framed, framed.at if isinstance(framed, Code) else now)

    def _interrupt(self) -> None:
        with self._lock:
            port = self._port
        if port is not None and hasattr(port, "cancel_read"):
            port.cancel_read()  # wakes the blocked read(); pyserial's ReaderThread.stop does this

    def _close(self, port: serial.SerialBase) -> None:
        with self._lock:
            self._port = None
        with contextlib.suppress(OSError):  # already gone with the device
            port.close()

    def _lost(self, reason: str) -> Dropped | None:
        return self._framer.lost(reason)


def serial_problem(device: str, err: BaseException) -> str:
    code = getattr(err, "errno", None)
    if code == errno.ENOENT:
        return f"{device}: not present (unplugged?)"
    if code == errno.EACCES:
        return f"{device}: permission denied: add posd's user to group 'dialout' (docs/hardware.md)"
    if code in (errno.EAGAIN, errno.EWOULDBLOCK):
        return (f"{device}: another process has the port open exclusively (a second posd? "
                f"ModemManager?): find it with `fuser -v {os.path.realpath(device)}`")
    return f"{device}: {err}"


# --- wiring -------------------------------------------------------------------------------


def open_scanners(labelled: Iterable[tuple[str, ScannerConfig]],
                  on_code: OnCode) -> list[DeviceReader]:
    """A reader for every hid and serial scanner (not started); console is the daemon's."""
    readers: list[DeviceReader] = []
    for label, config in labelled:
        if config.kind == "hid":
            require_evdev()
            readers.append(HidScanner(config, on_code, label=label))
        elif config.kind == "serial":
            readers.append(SerialScanner(config, on_code, label=label))
    return readers
