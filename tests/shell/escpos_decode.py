# SPDX-License-Identifier: MIT
"""A small ESC/POS decoder for the tests: bytes back into lines, QR codes, cuts.

It knows exactly the commands posd and python-escpos send for receipts (ESC @, ESC ! / GS !,
ESC E, ESC a, ESC t, ESC d, FS & / FS ., GS ( k, GS v 0, GS V, DLE EOT) and fails loudly on
anything else, so an unexpected byte in a job is a test failure, not a silently odd receipt.
Text is decoded as a Chinese printer does: in Chinese mode (after FS &) a byte >= 0x81 starts
a two-byte GB18030 (GBK) character; otherwise bytes are in the code page ESC t chose (CP437
at first).
"""

from __future__ import annotations

from dataclasses import dataclass, field

ESC, GS, FS, DLE = 0x1B, 0x1D, 0x1C, 0x10
#: ESC commands with one parameter byte that only change the look (ignored here).
_ESC_ONE = {0x2D, 0x4D, 0x47, 0x7B, 0x33, 0x20}
#: ESC t n -> codec, for the Epson code page numbers python-escpos picks from (ESC/POS
#: reference, "Select character code table"); anything else fails the test.
CODE_PAGES = {0: "cp437", 2: "cp850", 3: "cp860", 4: "cp863", 5: "cp865", 16: "cp1252",
              17: "cp866", 18: "cp852", 19: "cp858"}
_GS_ONE = {0x42, 0x62, 0x48, 0x66, 0x68, 0x77, 0x4C}


class DecodeError(ValueError):
    """Bytes no receipt of posd's should contain."""


@dataclass(frozen=True)
class Printed:
    """One printed line and how it looked."""

    text: str
    align: str = "left"
    bold: bool = False
    width: int = 1
    height: int = 1


@dataclass
class Decoded:
    lines: list[Printed] = field(default_factory=list)
    qr: list[str] = field(default_factory=list)
    images: int = 0
    cuts: int = 0
    feeds: int = 0
    status_queries: list[int] = field(default_factory=list)
    chinese_mode_used: bool = False
    inits: int = 0

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    def line_with(self, part: str) -> Printed:
        return next(line for line in self.lines if part in line.text)


@dataclass
class _State:
    align: str = "left"
    bold: bool = False
    width: int = 1
    height: int = 1
    chinese: bool = False
    codec: str = "cp437"
    text: list[str] = field(default_factory=list)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int = 1) -> bytes:
        if self.pos + n > len(self.data):
            raise DecodeError(f"truncated command at byte {self.pos}")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def byte(self) -> int:
        return self.take()[0]


def _esc(r: _Reader, s: _State, out: Decoded) -> None:
    cmd = r.byte()
    if cmd == 0x40:  # ESC @
        out.inits += 1
        s.align, s.bold, s.width, s.height, s.chinese = "left", False, 1, 1, False
        s.codec = "cp437"
    elif cmd == 0x21:  # ESC ! n
        n = r.byte()
        s.bold, s.height, s.width = bool(n & 0x08), 2 if n & 0x10 else 1, 2 if n & 0x20 else 1
    elif cmd == 0x45:  # ESC E n
        s.bold = bool(r.byte() & 1)
    elif cmd == 0x61:  # ESC a n
        s.align = {0: "left", 1: "center", 2: "right"}[r.byte() % 48]
    elif cmd == 0x74:  # ESC t n
        n = r.byte()
        if n not in CODE_PAGES:
            raise DecodeError(f"code page {n} is not one the decoder knows")
        s.codec = CODE_PAGES[n]
    elif cmd == 0x64:  # ESC d n
        out.feeds += r.byte()
    elif cmd in _ESC_ONE:
        r.byte()
    else:
        raise DecodeError(f"unknown ESC 0x{cmd:02x} at byte {r.pos - 1}")


def _gs_k(r: _Reader, out: Decoded) -> None:
    size = int.from_bytes(r.take(2), "little")
    body = r.take(size)
    cn, fn = body[0], body[1]
    if cn == 0x31 and fn == 0x50:  # store QR data (after m = '0')
        out.qr.append(body[3:].decode("utf-8"))


def _gs(r: _Reader, s: _State, out: Decoded) -> None:
    cmd = r.byte()
    if cmd == 0x21:  # GS ! n
        n = r.byte()
        s.width, s.height = (n >> 4) + 1, (n & 0x0F) + 1
    elif cmd == 0x28 and r.byte() == 0x6B:  # GS ( k
        _gs_k(r, out)
    elif cmd == 0x56:  # GS V m [n]
        if r.byte() in (65, 66):
            r.byte()
        out.cuts += 1
    elif cmd == 0x76 and r.byte() == 0x30:  # GS v 0 m xL xH yL yH data
        r.byte()
        x, y = int.from_bytes(r.take(2), "little"), int.from_bytes(r.take(2), "little")
        r.take(x * y)
        out.images += 1
    elif cmd in _GS_ONE:
        r.byte()
    else:
        raise DecodeError(f"unknown GS 0x{cmd:02x} at byte {r.pos - 1}")


def _control(byte: int, r: _Reader, s: _State, out: Decoded) -> None:
    if byte == ESC:
        _esc(r, s, out)
    elif byte == GS:
        _gs(r, s, out)
    elif byte == FS:
        mode = r.byte()
        if mode not in (0x26, 0x2E):
            raise DecodeError(f"unknown FS 0x{mode:02x}")
        s.chinese = mode == 0x26
        out.chinese_mode_used |= s.chinese
    elif byte == DLE:
        if r.byte() != 0x04:
            raise DecodeError("DLE without EOT")
        out.status_queries.append(r.byte())
    elif byte == 0x0A:
        out.lines.append(Printed("".join(s.text), s.align, s.bold, s.width, s.height))
        s.text.clear()
    else:
        raise DecodeError(f"unexpected control byte 0x{byte:02x} at {r.pos - 1}")


def decode(data: bytes) -> Decoded:
    """Decode one job (or a whole recorded connection)."""
    r, s, out = _Reader(data), _State(), Decoded()
    while r.pos < len(data):
        byte = r.byte()
        if byte < 0x20:
            _control(byte, r, s, out)
        elif s.chinese and byte >= 0x81:
            s.text.append(bytes([byte, r.byte()]).decode("gb18030"))
        else:
            s.text.append(bytes([byte]).decode(s.codec))
    if s.text:
        out.lines.append(Printed("".join(s.text), s.align, s.bold, s.width, s.height))
    return out
