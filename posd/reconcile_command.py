# SPDX-License-Identifier: MIT
"""``posd reconcile``: a day's bills against the database, with the daemon running or not.

It opens the database (WAL: the daemon may be writing) and the channels itself, runs
:class:`posd.reconcile.Reconciler` for the day, keeps the result (the daemon's
``/v1/health`` and HQ see it) and shows it as text, JSON or CSV; ``--print`` queues it for the
daemon's printer. ``--kept`` shows the kept result without asking the channels again;
``--resolve ID --note TEXT`` records what a person did about a difference.

Exit 0 when every channel's day matched (or its differences were all resolved), 1 when
differences remain, 69 when a bill is not available yet (or could not be downloaded) or
records wait for the next day's bill.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from contextlib import closing
from datetime import date, datetime
from typing import Any

from posd.config import Config, read_manager_token
from posd.core import reconcile_paper
from posd.core.errors import PosdError
from posd.core.layout import as_text
from posd.core.print_jobs import reconciliation_job
from posd.core.receipt import channel_label
from posd.core.report import parse_day
from posd.core.zones import BEIJING
from posd.devices.print_queue import Paper
from posd.print_commands import open_store, wait_printed
from posd.reconcile import (
    EX_DIFFERENCES,
    EX_OK,
    EX_UNAVAILABLE,
    Reconciler,
    kept_result,
    yesterday,
)

#: ``posd reconcile --format json``'s outer format (docs/reconciliation.md).
JSON_VERSION = 1


def reconcile_command(config: Config, *, day: str | None, channel: str | None, fmt: str,
                      to_printer: bool, wait_s: float, kept: bool = False) -> int:
    if to_printer and config.printer.kind == "none":
        raise PosdError("printer.kind is 'none': there is no printer to print on")
    which = parse_day(day) if day else yesterday(time.time())
    with closing(open_store(config)) as store:
        if not kept:
            from posd.daemon import build_channels

            channels = build_channels(config)
            try:
                reconciler = Reconciler.from_config(config, store, channels)
                reconciler.run(which, [channel] if channel else None)
            finally:
                for client in channels.values():
                    client.close()
        rows = store.reconciliations(day=which.isoformat(), channel=channel)
        if not rows:
            print(f"posd: no reconciliation of {which} kept yet (run it without --kept)",
                  file=sys.stderr)
            return EX_UNAVAILABLE
        show(rows, config, fmt, which)
        code = exit_code(rows)
        if to_printer:
            job = store.add_print_job(reconciliation_job(which.isoformat(), time.time()))
            printed = wait_printed(store, job, wait_s)
            code = code if printed == EX_OK else max(code, printed)
        return code


def resolve_command(config: Config, difference_id: int, note: str) -> int:
    """Needs the manager's token file to be readable, as the API's resolve does."""
    if read_manager_token(config) is None:
        raise PosdError("resolving a difference is the manager's: set api.manager_token_file")
    with closing(open_store(config)) as store:
        item = store.resolve_difference(difference_id, note, time.time(),
                                        store_id=config.store.id,
                                        terminal_id=config.store.terminal_id)
    print(f"difference {difference_id} ({item['class']}, {item['out_trade_no']}) resolved: "
          f"{item['resolved_note']}")
    return EX_OK


def exit_code(rows: Sequence[dict[str, Any]]) -> int:
    unresolved = any(d.get("resolved_at") is None for row in rows if row["result"]
                     for d in row["result"]["differences"])
    if unresolved:
        return EX_DIFFERENCES
    if any(row["status"] in ("waiting", "failed", "held") for row in rows):
        return EX_UNAVAILABLE
    return EX_OK


def verdict(rows: Sequence[dict[str, Any]]) -> str:
    """The last line: "all matched", or what remains."""
    if not rows:
        return "not reconciled yet"
    left = sum(1 for row in rows if row["result"] for d in row["result"]["differences"]
               if d.get("resolved_at") is None)
    waiting = [row["channel"] for row in rows if row["status"] in ("waiting", "failed")]
    held = [row["channel"] for row in rows if row["status"] == "held"]
    parts = []
    if left:
        parts.append(f"{left} difference(s) remain")
    if waiting:
        parts.append(f"no bill yet for {', '.join(waiting)}")
    if held:
        parts.append(f"records wait for the next day's bill ({', '.join(held)})")
    return "; ".join(parts) if parts else "all matched"


def as_json(rows: Sequence[dict[str, Any]], day: date) -> dict[str, Any]:
    return {"version": JSON_VERSION, "date": day.isoformat(), "verdict": verdict(rows),
            "reconciliations": [row_json(row) for row in rows]}


def row_json(row: dict[str, Any]) -> dict[str, Any]:
    """A kept run as the API and ``--format json`` show it."""
    return {"id": row["id"], "channel": row["channel"], "date": row["day"],
            "status": row["status"], "detail": row["detail"], "attempts": row["attempts"],
            "run_at": datetime.fromtimestamp(row["run_at"], BEIJING).isoformat(),
            "bill_file": row["bill_file"] or None, "result": row["result"]}


def show(rows: Sequence[dict[str, Any]], config: Config, fmt: str, day: date) -> None:
    if fmt == "json":
        print(json.dumps(as_json(rows, day), ensure_ascii=False, indent=2))
        return
    results = [r for r in (kept_result(row) for row in rows) if r is not None]
    if fmt == "csv":
        sys.stdout.write(reconcile_paper.as_csv(results))
        return
    paper = Paper.from_config(config)
    language = paper.receipt.language
    for row in rows:
        result = kept_result(row)
        label = channel_label(row["channel"], "en", paper.header.channels)
        if result is None:
            print(f"{label} {row['day']}: {row['status']}: {row['detail']}\n")
            continue
        print(as_text(reconcile_paper.elements(result, paper.header, columns=paper.columns,
                                               language=language), paper.columns))
        for item in row["result"]["differences"]:
            state = (f"resolved: {item['resolved_note']}" if item.get("resolved_at")
                     else f"unresolved (posd reconcile --resolve {item['id']} --note ...)")
            print(f"  difference {item['id']}: {item['class']} {item['out_trade_no']}"
                  f"{' ' + item['out_refund_no'] if item.get('out_refund_no') else ''}: {state}")
    print(verdict(rows))
