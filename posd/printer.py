# SPDX-License-Identifier: MIT
"""Receipts out: the console printer (the demo default) and receipt files.

Printing never changes a sale: a failure is logged and the receipt stays reprintable from
the store. (ESC/POS printers through python-escpos are the next step; see docs.)
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TextIO

from posd import receipt
from posd.sale import Sale, State

log = logging.getLogger(__name__)

#: Receipts are printed for these final states.
PRINTED = frozenset({State.PAID, State.REVERSED, State.DECLINED, State.NEEDS_ATTENTION})


class ConsolePrinter:
    """Writes each final sale's receipt to a text stream and, optionally, to a directory."""

    def __init__(self, header: receipt.Header, stream: TextIO | None,
                 receipt_dir: Path | None = None, columns: int = 32) -> None:
        self._header = header
        self._stream = stream
        self._dir = receipt_dir
        self._columns = columns
        self._lock = threading.Lock()
        self._printed: set[int] = set()

    def __call__(self, sale: Sale) -> None:
        """Engine listener: print once when a sale reaches a printed final state."""
        if sale.state not in PRINTED:
            return
        with self._lock:
            if sale.id in self._printed:
                return
            self._printed.add(sale.id)
        self.print(sale)

    def print(self, sale: Sale, *, reprint: bool = False) -> None:
        body = receipt.text(sale, self._header, columns=self._columns, reprint=reprint)
        if self._stream is not None:
            with self._lock:
                self._stream.write("\n" + body + "\n")
                self._stream.flush()
        if self._dir is not None:
            try:
                self._dir.mkdir(parents=True, exist_ok=True)
                suffix = "-reprint" if reprint else ""
                (self._dir / f"{sale.out_trade_no}{suffix}.txt").write_text(body, encoding="utf-8")
            except OSError as err:
                log.error("cannot save receipt of sale %d: %s", sale.id, err)
