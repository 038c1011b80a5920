# SPDX-License-Identifier: MIT
"""Paper layout: the elements a receipt or report is made of, and their text form. [core]

A layout is a list of :data:`Element` values: :class:`Line` (text with an alignment, bold
and a size) and :class:`Qr` (a QR code of some text). ``receipt.py`` and ``report.py`` make
them; ``posd.devices.printers`` sends them to an ESC/POS printer, :func:`as_text` to a console or a
file, ``preview.py`` to a PNG. Nothing here knows about bytes or devices.

Widths are display columns, not ``len``: on a Chinese receipt printer every character sent
as two GB18030 bytes (all of Chinese, full-width punctuation such as ``￥``, and also the
"ambiguous" ones such as ``…`` or ``°``) prints two columns wide, as it does in a CJK
terminal. :func:`width` therefore counts East Asian Wide, Full-width and Ambiguous
characters as two: a line may come out a column short in a Western terminal, never a
column too long on paper (which would wrap).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal, assert_never

Align = Literal["left", "center", "right"]
#: ``tall``: double height (the columns stay); ``large``: double width and height (half).
Size = Literal["normal", "tall", "large"]

#: Paper widths and their columns in the printers' standard font A (12 x 24 dots).
COLUMNS = {58: 32, 80: 48}


@dataclass(frozen=True, slots=True)
class Line:
    """One printed line. ``text`` holds no newline; the printer aligns it."""

    text: str = ""
    align: Align = "left"
    bold: bool = False
    size: Size = "normal"


@dataclass(frozen=True, slots=True)
class Qr:
    """A QR code of ``data`` (ASCII), centred."""

    data: str


Element = Line | Qr


def width(text: str) -> int:
    """Display columns: East Asian Wide, Full-width and Ambiguous characters count as two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WFA" else 1 for c in text)


def scale(size: Size) -> int:
    """How many columns one character of ``size`` takes."""
    return 2 if size == "large" else 1


def wrap(text: str, columns: int) -> list[str]:
    """Split ``text`` into pieces of at most ``columns`` columns (at spaces when it can)."""
    pieces: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if width(candidate) <= columns:
                line = candidate
                continue
            if line:
                pieces.append(line)
            line = ""
            for char in word:  # a word wider than the paper: cut it anywhere
                if width(line + char) > columns:
                    pieces.append(line)
                    line = ""
                line += char
        pieces.append(line)
    return pieces


def pair(left: str, right: str, columns: int, *, bold: bool = False,
         size: Size = "normal") -> list[Line]:
    """``left`` and ``right`` on one line, the gap filled with spaces; two lines if too wide."""
    room = columns // scale(size)
    gap = room - width(left) - width(right)
    if gap >= 1:
        return [Line(left + " " * gap + right, bold=bold, size=size)]
    return [Line(left, bold=bold, size=size), Line(right, "right", bold, size)]


def centred(text: str, columns: int, *, bold: bool = False, size: Size = "normal") -> list[Line]:
    """``text`` centred, wrapped to the paper."""
    return [Line(piece, "center", bold, size) for piece in wrap(text, columns // scale(size))]


def rule(columns: int, char: str = "-") -> Line:
    return Line(char * columns)


def title_size(text: str, columns: int) -> Size:
    """``large`` when ``text`` fits at double width, else ``tall``."""
    return "large" if width(text) * 2 <= columns else "tall"


def _padded(line: Line, columns: int) -> str:
    # A console shows every size at normal width, so alignment uses the whole paper width.
    gap = max(0, columns - width(line.text))
    match line.align:
        case "left":
            return line.text
        case "center":
            return " " * (gap // 2) + line.text
        case "right":
            return " " * gap + line.text
        case _:
            assert_never(line.align)


def text_lines(elements: Iterable[Element], columns: int) -> list[str]:
    """Plain text lines (no trailing spaces): what a console shows of the paper."""
    out: list[str] = []
    for element in elements:
        match element:
            case Line():
                out.append(_padded(element, columns).rstrip())
            case Qr(data=data):
                out.append(_padded(Line(f"[QR: {data}]", "center"), columns).rstrip())
            case _:
                assert_never(element)
    return out


def as_text(elements: Sequence[Element], columns: int) -> str:
    return "\n".join(text_lines(elements, columns))
