# SPDX-License-Identifier: MIT
"""The store: SQLite (sqlite-utils) with sales, their history, the HQ outbox and the print
queue. :mod:`posd.store.migrations` is the schema; :mod:`posd.store.db` the one connection
(and the read-only one for health) and what it reads and writes."""

from posd.core.hq_protocol import sale_record
from posd.store.db import OutboxRow, Store
from posd.store.migrations import OPEN_STATES, TOTALS_BUCKET_S, migrations

__all__ = ["OPEN_STATES", "TOTALS_BUCKET_S", "OutboxRow", "Store", "migrations", "sale_record"]
