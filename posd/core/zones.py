# SPDX-License-Identifier: MIT
"""The channels' own time zone."""

from __future__ import annotations

from datetime import timedelta, timezone
from typing import Final

#: The channels' own time (timestamps, bills, trade times), the default of receipts.
#: China has kept UTC+8 without daylight saving since 1991: a fixed offset is exact.
BEIJING: Final = timezone(timedelta(hours=8), "Asia/Shanghai")
