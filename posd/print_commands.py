# SPDX-License-Identifier: MIT
"""``posd report daily`` and ``posd receipt``: read the database, show, queue a print.

These commands open the daemon's SQLite database directly (WAL lets them read while the
daemon writes), so a manager gets the day's figures or a receipt even when the daemon is
stopped. Showing (text, JSON, CSV, PNG) only reads. ``--print`` adds one row to the print
queue (``print_jobs``, never a sale) and waits up to ``--wait`` seconds for the daemon's
print worker, which looks at the queue every ``printer.poll_s``, to print it: one printer,
one owner, however many commands run. Exit 0 when printed; 69 when it is still queued (the
daemon is stopped or the printer is not ready; it prints when both are back), 1 when it was
given up.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import closing
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from posd.core import report
from posd.config import Config
from posd.core.errors import PosdError, StoreError
from posd.core.layout import as_text
from posd.core.print_jobs import JobState, PrintJob, receipt_job, report_job
from posd.devices.print_queue import Paper, load_report, receipt_layout, report_layout
from posd.store import Store

EX_OK, EX_FAILED, EX_UNAVAILABLE = 0, 1, 69


def open_store(config: Config) -> Store:
    """The daemon's database; refuses to create one where there is none."""
    path = config.database.path
    if not Path(path).is_file():
        raise StoreError(f"no database at {path}: check database.path (posd creates it on "
                         "its first run)")
    return Store.open(path)


def _iso(epoch: float | None, tz: tzinfo | None) -> str | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC).astimezone(tz).isoformat()


def report_json(daily: report.DailyReport, tz: tzinfo | None = None) -> dict[str, Any]:
    """GET /v1/reports/daily's JSON, plus the kind (Z or X), the day's bounds and the
    needs_attention sales' order numbers."""
    from posd.api import report_out  # the API's model is the JSON contract

    return report_out(daily).model_dump(mode="json") | {
        "kind": daily.kind, "since": _iso(daily.since, tz), "until": _iso(daily.until, tz),
        "attention": [{"id": a.id, "out_trade_no": a.out_trade_no, "channel": a.channel,
                       "amount": int(a.amount)} for a in daily.attention],
    }


def wait_printed(store: Store, job: PrintJob | None, wait_s: float) -> int:
    """Wait for the daemon to print ``job``; say what became of it; the exit status."""
    if job is None:
        print("already queued")
        return EX_OK
    deadline = time.monotonic() + wait_s
    while True:
        current = store.print_job(job.id)
        if current.state is JobState.DONE:
            print(f"printed (print job {job.id})")
            return EX_OK
        if current.state is not JobState.QUEUED:
            print(f"not printed (print job {job.id} {current.state}): {current.last_error}",
                  file=sys.stderr)
            return EX_FAILED
        if time.monotonic() >= deadline:
            why = current.last_error or "the daemon has not taken it (is posd running?)"
            print(f"queued as print job {job.id}, not printed yet: {why}. It prints when the "
                  "daemon runs and the printer is ready.", file=sys.stderr)
            return EX_UNAVAILABLE
        time.sleep(0.2)  # another process does the work; nothing here to wait on


def report_command(config: Config, *, day: str | None, fmt: str, to_printer: bool,
                   wait_s: float) -> int:
    """``posd report daily``: the business day's report (X until the day is over)."""
    if to_printer and config.printer.kind == "none":
        raise PosdError("printer.kind is 'none': there is no printer to print on")
    paper = Paper.from_config(config)
    now = time.time()
    with closing(open_store(config)) as store:
        daily = load_report(store, report.parse_day(day) if day else None,
                            cutoff_hour=paper.cutoff_hour, tz=paper.tz, now=now)
        if fmt == "json":
            print(json.dumps(report_json(daily, paper.tz), ensure_ascii=False, indent=2))
        elif fmt == "csv":
            sys.stdout.write(report.as_csv(daily))
        else:
            print(as_text(report_layout(daily, paper, now), paper.columns))
        if not to_printer:
            return EX_OK
        job = store.add_print_job(report_job(daily.day.isoformat(), now))
        return wait_printed(store, job, wait_s)


def receipt_command(config: Config, sale_id: int, *, to_printer: bool, png: Path | None,
                    wait_s: float) -> int:
    """``posd receipt SALE_ID``: show it; ``--png`` draws it; ``--print`` reprints it."""
    if to_printer and config.printer.kind == "none":
        raise PosdError("printer.kind is 'none': there is no printer to print on")
    paper = Paper.from_config(config)
    with closing(open_store(config)) as store:
        sale = store.get(sale_id)
        layout = receipt_layout(sale, paper, reprint=to_printer)
        print(as_text(layout, paper.columns))
        if png is not None:
            from posd.devices.preview import render_png

            render_png(layout, paper.columns, png, paper.receipt.png_font_file)
            print(f"PNG preview written to {png}", file=sys.stderr)
        if not to_printer:
            return EX_OK
        job = store.add_print_job(receipt_job(sale.id, sale.state.value, time.time(),
                                              reprint=True))
        return wait_printed(store, job, wait_s)
