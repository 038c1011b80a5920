# SPDX-License-Identifier: MIT
"""Sale -> receipt lines. Pure layout; ``printer.py`` sends the lines somewhere. [core]

CJK characters take two columns on a receipt printer and in a terminal, so widths are
counted with :func:`width`, not ``len``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from posd.codes import CHANNEL_LABELS
from posd.money import format_yuan
from posd.sale import Sale, State

#: Receipts show China Standard Time whatever the host's zone (the channels' own time).
CST = timezone(timedelta(hours=8), "CST")

TITLES = {
    State.PAID: "PAID",
    State.DECLINED: "DECLINED - NOT PAID",
    State.REVERSED: "REVERSED - NOT PAID",
    State.CANCELLED: "CANCELLED",
    State.NEEDS_ATTENTION: "NEEDS ATTENTION",
}


@dataclass(frozen=True, slots=True)
class Header:
    store_name: str
    store_id: str
    terminal_id: str
    address: str = ""


def width(text: str) -> int:
    """Display columns: East Asian wide and full-width characters count as two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _pair(left: str, right: str, columns: int) -> str:
    gap = columns - width(left) - width(right)
    if gap >= 1:
        return left + " " * gap + right
    return f"{left}\n{' ' * max(0, columns - width(right))}{right}"


def _center(text: str, columns: int) -> str:
    return " " * max(0, (columns - width(text)) // 2) + text


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, CST).strftime("%Y-%m-%d %H:%M:%S")


def lines(sale: Sale, header: Header, *, columns: int = 32, reprint: bool = False) -> list[str]:
    """The receipt of a final sale as text lines of at most ``columns`` display columns."""
    rule = "-" * columns
    out = [_center(header.store_name, columns)]
    if header.address:
        out.append(_center(header.address, columns))
    out += [rule, _center(TITLES.get(sale.state, sale.state.upper()), columns)]
    if reprint:
        out.append(_center("*** REPRINT ***", columns))
    out += [
        rule,
        _pair("Amount", f"CNY {format_yuan(sale.amount)}", columns),
        _pair("Channel", CHANNEL_LABELS.get(sale.channel or "", sale.channel or "-"), columns),
        _pair("Payer code", sale.auth_code_masked or "-", columns),
        _pair("Store/Till", f"{header.store_id}/{header.terminal_id}", columns),
        _pair("Time", _time(sale.paid_at or sale.updated_at), columns),
        "Order no.",
        _pair("", sale.out_trade_no, columns),
    ]
    if sale.channel_trade_no:
        out += ["Channel trade no.", _pair("", sale.channel_trade_no, columns)]
    if sale.order_ref:
        out.append(_pair("Register order", sale.order_ref, columns))
    if sale.state is not State.PAID:
        out += [rule, sale.message]
    out += [rule, _center(f"Sale {sale.id}", columns), ""]
    return out


def text(sale: Sale, header: Header, *, columns: int = 32, reprint: bool = False) -> str:
    return "\n".join(lines(sale, header, columns=columns, reprint=reprint))
