# SPDX-License-Identifier: MIT
"""The local HTTP API for the register and the cashier page (DESIGN §4). [shell]

- :mod:`posd.api.models`: the JSON shapes (the register's contract) and conversions;
- :mod:`posd.api.middleware`: errors, the bearer token, the body limit;
- :mod:`posd.api.routes`: the handlers and :func:`create_app`;
- :mod:`posd.api.server`: :class:`ApiServer`, uvicorn in a daemon thread.
"""

from posd.api.models import MAX_BODY_BYTES, DailyReportOut, HealthOut, SaleOut, report_out, sale_out
from posd.api.routes import MAX_WAIT_S, await_state_change, create_app
from posd.api.server import ApiServer

__all__ = ["MAX_BODY_BYTES", "MAX_WAIT_S", "ApiServer", "DailyReportOut", "HealthOut",
           "SaleOut", "await_state_change", "create_app", "report_out", "sale_out"]
