# SPDX-License-Identifier: MIT
"""Payment channels: one small class per channel behind the :class:`Channel` protocol.

Adapters never raise for business outcomes and never return dicts: every call returns a
``posd.core.sale.ChannelResult`` value. Transport errors map by urllib3's rule: a connect error
(the request surely never arrived) is ``Unknown(may_have_arrived=False)``; a read timeout,
reset, 5xx, garbage or a bad signature is ``Unknown(may_have_arrived=True)``.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Protocol

from posd.core.bills import BillAnswer
from posd.core.money import Fen
from posd.core.refund import RefundAnswer
from posd.core.sale import ChannelResult


class Channel(Protocol):
    name: ClassVar[str]

    def pay(self, out_trade_no: str, amount: Fen, auth_code: str, subject: str) -> ChannelResult:
        """Send the synchronous pay request (micropay / alipay.trade.pay)."""
        ...

    def query(self, out_trade_no: str, amount: Fen) -> ChannelResult:
        """Ask for the trade's state."""
        ...

    def reverse(self, out_trade_no: str) -> ChannelResult:
        """Reverse / cancel the trade (refunds it if it was paid)."""
        ...

    def refund(self, out_trade_no: str, out_refund_no: str, total: Fen, amount: Fen,
               reason: str) -> RefundAnswer:
        """Ask for ``amount`` of the trade back, under ``out_refund_no`` (the same number is
        the same refund: posd.core.refund)."""
        ...

    def refund_query(self, out_trade_no: str, out_refund_no: str) -> RefundAnswer:
        """Ask how refund ``out_refund_no`` stands."""
        ...

    def download_bill(self, day: date) -> BillAnswer:
        """The day's bill as the channel serves it (bytes, kept verbatim), ``NoBill``, or
        ``BillFailed`` (reconciliation, DESIGN §10)."""
        ...

    def close(self) -> None:
        """Release connections."""
        ...
