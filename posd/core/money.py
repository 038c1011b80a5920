# SPDX-License-Identifier: MIT
"""Money is integer fen (1 CNY = 100 fen). Never float. [core]"""

from __future__ import annotations

import re
from typing import NewType

from posd.core.errors import AmountError

Fen = NewType("Fen", int)

#: The largest single payment posd accepts: 1,000,000.00 yuan (Alipay's own limit is 1e8).
MAX_FEN: Fen = Fen(100_000_000)

# ASCII digits only: str.isdigit() and \d would accept full-width "０.５" and other scripts.
#: Any number of whole yuan (bounded only so that a pasted page is not an int): an amount
#: over the limit is refused by check_fen with the limit, not as "not an amount".
_YUAN = re.compile(r"(0|[1-9][0-9]{0,29})(?:\.([0-9]{1,2}))?", re.ASCII)


def parse_yuan(text: str) -> Fen:
    """Parse a yuan amount typed by a person: '12.5' -> 1250, '12.50' -> 1250.

    Refuses '12.505' (sub-fen), '-1', '1e3', '01.00', '０.５' (full-width) and zero.
    """
    if (m := _YUAN.fullmatch(text.strip())) is None:
        raise AmountError(
            f"not an amount in yuan: {text!r} (write it like 12.50: digits, at most two after the point)"
        )
    fen = int(m[1]) * 100 + int((m[2] or "").ljust(2, "0"))
    return check_fen(fen)


def check_fen(value: object) -> Fen:
    """Validate an amount already in fen (from the API): a positive integer within limits."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise AmountError(f"amount must be a whole number of fen (1 yuan = 100 fen), got {value!r}")
    if value <= 0:
        raise AmountError(f"amount must be at least 1 fen, got {value}")
    if value > MAX_FEN:
        raise AmountError(
            f"amount {format_yuan(Fen(value))} yuan is over the limit of {format_yuan(MAX_FEN)} yuan")
    return Fen(value)


def format_yuan(fen: Fen) -> str:
    """1250 -> '12.50' (no currency sign). Also what Alipay's total_amount wants."""
    sign = "-" if fen < 0 else ""
    whole, part = divmod(abs(fen), 100)
    return f"{sign}{whole}.{part:02d}"
