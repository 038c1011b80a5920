# SPDX-License-Identifier: MIT
"""A layout -> a PNG picture of the paper (Pillow), for docs and the web.

The picture is a character grid like the printer's: 12 x 24 pixels per column (font A on
a 203 dpi printer), so 32 columns make the 384 dots of 58 mm paper and 48 the 576 of 80 mm.
Characters are drawn one per cell (two for CJK), so alignment is the printer's whatever the
font. Chinese needs a font with CJK glyphs: ``receipt.png_font_file``, else the first of
:data:`CJK_FONTS` that exists; without one, CJK characters are drawn as boxes.
"""

from __future__ import annotations

import logging
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import qrcode
from PIL import Image, ImageDraw, ImageFont

from posd.core.layout import Element, Line, Qr, scale, width

log = logging.getLogger(__name__)

CELL_W, CELL_H = 12, 24
MARGIN = 8
#: Where Debian/Ubuntu/Fedora packages put fonts with Chinese glyphs.
CJK_FONTS = (
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf",
)
MONO_FONTS = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "/usr/share/fonts/dejavu-sans-mono-fonts/DejaVuSansMono.ttf",
)

Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(candidates: Sequence[str | Path]) -> Font | None:
    for path in candidates:
        if Path(path).is_file():
            try:
                return ImageFont.truetype(str(path), CELL_H - 4)
            except OSError as err:
                log.warning("cannot load font %s: %s", path, err)
    return None


class Fonts:
    """The fonts a preview draws with: monospaced for ASCII, CJK for the rest."""

    def __init__(self, cjk_file: Path | None = None) -> None:
        self.mono = _font(MONO_FONTS) or ImageFont.load_default(CELL_H - 4)
        self.cjk = _font([cjk_file] if cjk_file else CJK_FONTS)
        if self.cjk is None:
            log.warning("no font with Chinese glyphs found (set receipt.png_font_file): "
                        "CJK characters are drawn as boxes")


def _draw_line(line: Line, columns: int, fonts: Fonts) -> Image.Image:
    factor = scale(line.size)
    room = columns // factor
    image = Image.new("L", (room * CELL_W, CELL_H), 255)
    draw = ImageDraw.Draw(image)
    gap = max(0, room - width(line.text))
    col = {"left": 0, "center": gap // 2, "right": gap}[line.align]
    for char in line.text:
        cells = width(char)
        x = col * CELL_W
        font = fonts.mono if char.isascii() or fonts.cjk is None else fonts.cjk
        if fonts.cjk is None and unicodedata.east_asian_width(char) in "WF":
            draw.rectangle((x + 2, 3, x + cells * CELL_W - 3, CELL_H - 4), outline=0)
        else:  # the monospaced font has "…", "é", "°" ...: only CJK needs the CJK font
            draw.text((x, 1), char, font=font, fill=0, stroke_width=int(line.bold))
        col += cells
    if line.size == "normal":
        return image
    return image.resize((room * CELL_W * factor, CELL_H * 2))


def _draw_qr(qr: Qr, columns: int) -> Image.Image:
    code = qrcode.QRCode(box_size=6, border=2)
    code.add_data(qr.data)
    code.make(fit=True)
    picture = code.make_image().get_image().convert("L")
    row = Image.new("L", (columns * CELL_W, picture.height), 255)
    row.paste(picture, ((row.width - picture.width) // 2, 0))
    return row


def render_png(layout: Sequence[Element], columns: int, path: Path | BinaryIO,
               cjk_font: Path | None = None) -> None:
    """Draw ``layout`` as ``columns``-wide paper into the PNG file ``path`` (or a binary
    stream: the cashier page's receipt picture)."""
    fonts = Fonts(cjk_font)
    rows: list[Image.Image] = []
    for element in layout:
        rows.append(_draw_line(element, columns, fonts) if isinstance(element, Line)
                    else _draw_qr(element, columns))
    paper = Image.new("L", (columns * CELL_W + 2 * MARGIN,
                            sum(r.height for r in rows) + 2 * MARGIN), 255)
    y = MARGIN
    for row in rows:
        x = MARGIN
        if row.width < columns * CELL_W:  # a large line: align its half-width box
            x += (columns * CELL_W - row.width) // 2
        paper.paste(row, (x, y))
        y += row.height
    paper.save(path, "PNG")
