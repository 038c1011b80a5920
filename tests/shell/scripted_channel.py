# SPDX-License-Identifier: MIT
"""A test-only payment channel behind posd's own ``posd.channels.Channel`` seam.

Not a mock of a third-party library: it is a second implementation of our protocol whose
answers are scripted by the payment code's last four digits (as the simulator's, DESIGN §5):

| code ends | answer |
|---|---|
| ``0001`` | Pending until the test calls :meth:`ScriptedChannel.confirm`, then Paid |
| ``0003`` | Declined NOTENOUGH |
| ``0009`` | Paid, but one fen more than asked (the engine must flag it: needs_attention) |
| other | Paid at once |

Reverse always closes the trade with no money taken. Everything is in memory and
thread-safe; a test waits on Events, never on the clock.
"""

from __future__ import annotations

import threading

from posd.core.money import Fen
from posd.core.sale import ChannelResult, Closed, Declined, NotFound, Paid, Pending


class ScriptedChannel:
    def __init__(self, name: str) -> None:
        self.name = name
        self._lock = threading.Lock()
        self._trades: dict[str, str] = {}  # out_trade_no -> the code's last four digits
        self._confirmed = threading.Event()
        self.pending = threading.Event()  # set once a trade has answered Pending

    def confirm(self) -> None:
        """The customers of every ``…0001`` trade confirm on their phones."""
        self._confirmed.set()

    def _answer(self, out_trade_no: str, amount: Fen) -> ChannelResult:
        with self._lock:
            tail = self._trades.get(out_trade_no)
        if tail is None:
            return NotFound("no such trade")
        if tail == "0001" and not self._confirmed.is_set():
            self.pending.set()
            return Pending("USERPAYING")
        if tail == "0003":
            return Declined("NOTENOUGH", "Insufficient balance: ask for another payment method")
        extra = 1 if tail == "0009" else 0
        return Paid(f"{self.name}-{out_trade_no}", Fen(amount + extra))

    def pay(self, out_trade_no: str, amount: Fen, auth_code: str, subject: str) -> ChannelResult:
        with self._lock:
            self._trades[out_trade_no] = auth_code[-4:]
        return self._answer(out_trade_no, amount)

    def query(self, out_trade_no: str, amount: Fen) -> ChannelResult:
        return self._answer(out_trade_no, amount)

    def reverse(self, out_trade_no: str) -> ChannelResult:
        return Closed("reversed", refunded=False)

    def close(self) -> None:
        """Nothing to release."""
