# SPDX-License-Identifier: MIT
"""Paper out: layouts -> ESC/POS bytes (python-escpos) -> a printer; or text to a console.

- :func:`render` turns a layout (``posd.core.layout`` elements) into the bytes of one job with
  python-escpos' ``Dummy`` printer: ``ESC @`` first (a known state whatever the last job
  left: python-escpos #272, #373), ``FS &`` (Chinese mode) where configured, then
  ``set(align=, bold=, size)`` and the text of each line, QR codes, ``FS .`` and a cut.
- Text is encoded here, not by python-escpos' "magic" encoder, whose CJK shortcut sends a
  whole string as GB18030 only when it holds a Han character (so ``，：`` alone become
  ``??``) and turns ``¥`` into a four-byte sequence GBK printers print as junk
  (reference/hardware.md §2). :func:`encode_gb18030` sends every character in one or two
  bytes (the GBK part of GB18030 that Chinese printers carry).
- :func:`open_printer` makes the configured printer (network, usb, serial, file) or the
  console. A :class:`Session` is one connection: :meth:`Session.status` asks DLE EOT 1, 2
  and 4 itself with a short timeout (python-escpos' ``paper_status()`` calls silence
  "paper adequate", and its ``Network._read`` waits the whole 60 s socket timeout), then
  :meth:`Session.send` writes the job. Every device error is a :class:`DeviceError`.
- python-escpos (and the Pillow, qrcode, python-barcode and PyYAML it imports, about 9 MB
  of a daemon's memory) is imported when an ESC/POS printer is opened or a job rendered,
  never for a ``console`` printer. :func:`keep_profiles_in` gives it a private directory
  for its parsed printer profiles first (by default it parses them afresh in a new
  ``mkdtemp()`` at every start: 0.3 s, a few MB, and a directory left behind).

Nothing here queues, retries or touches a sale: that is ``posd.devices.print_queue``'s job.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TextIO, assert_never

from posd.config import Config, PrinterConfig
from posd.core.errors import ConfigError, DeviceError
from posd.core.layout import Element, Line, Qr, as_text
from posd.core.print_jobs import STATUS_QUERIES, Status, decode_status

log = logging.getLogger(__name__)

#: FS & / FS . : Chinese (two-byte) character mode on / off.
CHINESE_ON = b"\x1c&"
CHINESE_OFF = b"\x1c."

#: Printed instead of characters a GBK printer lacks: ``¥`` (U+00A5) is four bytes in
#: GB18030; the full-width ``￥`` (U+FFE5) is the yuan sign Chinese printers have.
_SUBSTITUTES = {"¥": "￥"}  # noqa: RUF001 - the two yuan signs, on purpose

Reader = Callable[[Any, float], bytes]  # (python-escpos printer, timeout) -> bytes; b"": silence


def encode_gb18030(text: str) -> bytes:
    """GB18030 in one or two bytes per character; a character outside GBK becomes ``?``."""
    out = bytearray()
    for char in text:
        data = _SUBSTITUTES.get(char, char).encode("gb18030")
        out += data if len(data) <= 2 else b"?"
    return bytes(out)


#: python-escpos reads its printer profiles' pickle from here (escpos/capabilities.py).
PROFILES_DIR_ENV = "ESCPOS_CAPABILITIES_PICKLE_DIR"
#: posd's directory for it, beside the database (/var/lib/posd under systemd).
PROFILES_CACHE = "escpos-profiles"


def keep_profiles_in(directory: Path) -> bool:
    """Let python-escpos keep its parsed printer profiles in ``directory`` (made 0700).

    It loads a pickle from there, so the directory must be this user's and closed to others;
    when it is not (or cannot be made), python-escpos keeps its default and a warning says
    why. Nothing changes once python-escpos is imported or when the environment already
    names a directory. True when ``directory`` is the one used.
    """
    if "escpos.capabilities" in sys.modules or PROFILES_DIR_ENV in os.environ:
        return os.environ.get(PROFILES_DIR_ENV) == str(directory)
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = directory.stat()
    except OSError as err:
        log.warning("printer profiles cache %s: %s (python-escpos parses them at each start)",
                    directory, err.strerror or err)
        return False
    if info.st_uid != os.getuid() or info.st_mode & 0o077:
        log.warning("printer profiles cache %s: not private to this user (owner or mode %o); "
                    "python-escpos parses them at each start", directory, info.st_mode & 0o777)
        return False
    os.environ[PROFILES_DIR_ENV] = str(directory)
    return True


def keep_profiles_beside_database(config: Config) -> bool:
    """:func:`keep_profiles_in` ``escpos-profiles/`` beside the database, for an ESC/POS
    printer (``console`` and ``none`` never load python-escpos)."""
    if config.printer.kind in ("console", "none"):
        return False
    return keep_profiles_in(config.database.path.parent / PROFILES_CACHE)


def check_profile(name: str) -> None:
    """Raise ConfigError unless python-escpos knows printer profile ``name``."""
    from escpos.printer import Dummy  # python-escpos only for an ESC/POS printer (module doc)

    try:
        Dummy(profile=name)
    except KeyError as err:  # escpos.capabilities looks the name up in its profile dict
        raise ConfigError(f"printer.profile: unknown python-escpos profile {name!r} (e.g. "
                          "'default', 'TM-T88V', 'POS-5890')") from err


def _line(printer: Any, line: Line, config: PrinterConfig) -> None:
    printer.set(align=line.align, bold=line.bold, normal_textsize=line.size == "normal",
                double_height=line.size != "normal", double_width=line.size == "large")
    if config.encoding == "gb18030":
        printer._raw(encode_gb18030(line.text) + b"\n")  # noqa: SLF001 - see module doc
    else:
        printer.textln(line.text)


def _qr(printer: Any, qr: Qr, config: PrinterConfig) -> None:
    # Centred with ESC a 1: python-escpos' own centring is not implemented for native QR
    # codes and needs the profile's paper width in pixels for images.
    printer.set(align="center", bold=False, normal_textsize=True)
    printer.qr(qr.data, size=config.qr_size, native=config.qr == "native")


def render(layout: Sequence[Element], config: PrinterConfig) -> bytes:
    """The ESC/POS bytes of one job (made on python-escpos' Dummy printer)."""
    from escpos.printer import Dummy

    printer = Dummy(profile=config.profile)
    printer.hw("INIT")
    chinese = config.encoding == "gb18030" and config.chinese_mode
    if chinese:
        printer._raw(CHINESE_ON)  # noqa: SLF001 - python-escpos has no call for FS &
    for element in layout:
        match element:
            case Line():
                _line(printer, element, config)
            case Qr():
                _qr(printer, element, config)
            case _:
                assert_never(element)
    printer.set(align="left", bold=False, normal_textsize=True)
    if chinese:
        printer._raw(CHINESE_OFF)  # noqa: SLF001
    if config.cut:
        printer.cut()
    return bytes(printer.output)


# --- sessions ------------------------------------------------------------------------------


class Session(Protocol):
    """One connection to a printer, for one job or one status check."""

    def status(self) -> Status: ...
    def send(self, layout: Sequence[Element]) -> None: ...
    def close(self) -> None: ...


class Printer(Protocol):
    #: what it is, for logs and /v1/health ("network 192.168.1.50:9100").
    describe: str
    #: False when its status cannot be asked (file, console, status_query off).
    can_ask: bool

    def open(self) -> Session: ...


class EscposSession:
    """A python-escpos printer, opened; ``read`` is None where it cannot answer."""

    def __init__(self, device: Any, config: PrinterConfig, read: Reader | None,
                 describe: str) -> None:
        self._device = device
        self._config = config
        self._read = read
        self._describe = describe

    def _ask(self, n: int) -> int | None:
        assert self._read is not None  # status() asks only when it can read
        try:
            self._device._raw(STATUS_QUERIES[n])  # noqa: SLF001
            answer = self._read(self._device, self._config.status_timeout_s)
        except OSError as err:
            raise DeviceError(f"{self._describe}: status query failed: {err}") from err
        return answer[-1] if answer else None  # the newest byte answers this query

    def status(self) -> Status:
        """DLE EOT 1, then 2 if off line, then 4. Silence is NO_ANSWER, never "paper OK"."""
        if self._read is None:
            return Status.UNKNOWN
        printer = self._ask(1)
        if printer is None:
            return Status.NO_ANSWER
        cause = self._ask(2) if printer & 0x08 else None
        return decode_status(printer, cause, self._ask(4))

    def send(self, layout: Sequence[Element]) -> None:
        data = render(layout, self._config)
        try:
            self._device._raw(data)  # noqa: SLF001 - the job was rendered on Dummy
        except OSError as err:
            raise DeviceError(f"{self._describe}: write failed: {err}") from err

    def close(self) -> None:
        try:
            self._device.close()
        except OSError as err:
            log.warning("%s: close failed: %s", self._describe, err)


def _read_socket(device: Any, timeout: float) -> bytes:
    sock = device.device
    previous = sock.gettimeout()
    sock.settimeout(timeout)
    try:
        return bytes(sock.recv(16))
    except TimeoutError:
        return b""
    finally:
        sock.settimeout(previous)


def _read_serial(device: Any, timeout: float) -> bytes:
    port = device.device
    port.timeout = timeout
    return bytes(port.read(1))  # read(1) returns at the first byte; read(16) waits it all out


def _read_usb(device: Any, timeout: float) -> bytes:
    import usb.core  # present: open_printer checked Usb.is_usable()

    try:
        return bytes(device.device.read(device.in_ep, 16, int(timeout * 1000)))
    except usb.core.USBTimeoutError:
        return b""


class EscposPrinter:
    """A configured python-escpos printer class, opened afresh for each session (a network
    printer often takes one connection at a time, so none is held between jobs)."""

    def __init__(self, config: PrinterConfig, make: Callable[[], Any], read: Reader | None,
                 describe: str) -> None:
        self._config = config
        self._make = make
        self._read = read if config.status_query else None
        self.describe = describe
        self.can_ask = self._read is not None

    def open(self) -> EscposSession:
        from escpos.exceptions import DeviceNotFoundError
        from escpos.printer import Serial

        device = self._make()
        try:
            device.open()
        except (DeviceNotFoundError, OSError) as err:
            raise DeviceError(f"{self.describe}: {err}".replace("\n", " ")) from err
        if isinstance(device, Serial):  # pyserial's writes block for ever without this
            device.device.write_timeout = self._config.timeout_s
        return EscposSession(device, self._config, self._read, self.describe)


def _escpos(config: PrinterConfig) -> EscposPrinter:
    from escpos.printer import File, Network, Serial, Usb

    kind, profile = config.kind, config.profile
    if kind == "network":
        return EscposPrinter(config, lambda: Network(config.host, config.port,
                                                     timeout=config.timeout_s, profile=profile),
                             _read_socket, f"network {config.host}:{config.port}")
    if kind == "usb":
        if not Usb.is_usable():
            raise ConfigError("printer.kind: 'usb' needs pyusb: pip install 'posd[usb]' (and libusb)")
        return EscposPrinter(config, lambda: Usb(
            config.usb_vendor_id, config.usb_product_id, timeout=int(config.timeout_s * 1000),
            in_ep=config.usb_in_ep, out_ep=config.usb_out_ep, profile=profile),
            _read_usb, f"usb {config.usb_vendor_id:04x}:{config.usb_product_id:04x}")
    if kind == "serial":
        return EscposPrinter(config, lambda: Serial(
            config.device, baudrate=config.baudrate, timeout=config.status_timeout_s,
            profile=profile), _read_serial, f"serial {config.device}")
    if kind == "file":
        # File opens the device write-only: there is no status to read (UNKNOWN, not OK).
        return EscposPrinter(config, lambda: File(config.device, profile=profile), None,
                             f"file {config.device}")
    raise ConfigError(f"printer.kind: {kind!r} is not an ESC/POS printer")


def open_printer(config: PrinterConfig, stream: TextIO | None, columns: int) -> Printer:
    """The configured printer. Raises ConfigError for a profile or kind that cannot work."""
    if config.kind == "console":
        return ConsoleOutput(stream, columns)
    check_profile(config.profile)
    return _escpos(config)


# --- the console ---------------------------------------------------------------------------


class ConsoleOutput:
    """Printer and session in one: each job's text on a stream (the demo's stdout)."""

    describe = "console"
    can_ask = False

    def __init__(self, stream: TextIO | None, columns: int) -> None:
        self._stream = stream
        self._columns = columns

    def open(self) -> ConsoleOutput:
        return self

    def status(self) -> Status:
        return Status.UNKNOWN

    def send(self, layout: Sequence[Element]) -> None:
        write(self._stream, as_text(layout, self._columns))

    def close(self) -> None:
        """Nothing to close."""


_CONSOLE = threading.Lock()  # one receipt at a time on a shared stream


def write(stream: TextIO | None, body: str) -> None:
    if stream is not None:
        with _CONSOLE:
            stream.write("\n" + body + "\n")
            stream.flush()


def archive(directory: Path | None, name: str, body: str) -> None:
    """Keep a text copy of what was printed (``printer.receipt_dir``); never raises."""
    if directory is None:
        return
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"{name}.txt").write_text(body, encoding="utf-8")
    except OSError as err:
        log.error("cannot save %s in %s: %s", name, directory, err)
