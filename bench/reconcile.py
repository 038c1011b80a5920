#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Reconciliation of a day of 10,000 trades, the bill already downloaded. Target: <= 1 s.

The day: 10,000 trades on one channel (95 % paid, 3 % paid then reversed, 2 % paid and then
part-refunded the same day), in the simulator's renderings of the real bill formats
(WeChat's ALL bill, gzip; Alipay's GBK zip), and the same trades as posd's sales and refunds
in a real SQLite store (WAL, synchronous=FULL, posd's migrations). Every item matches, so no
follow-up query is made (each would be a network round trip, not posd's cost).

Timed, per channel:

- **posd reconcile, whole run**: ``Reconciler.run`` minus the network: the bill comes from a
  local channel object that hands over the downloaded bytes. It writes the file (fsync),
  parses it, reads the day's sales and refunds and every record the bill names from
  SQLite, judges, and saves the result (one transaction). This is the target's case.
- **parse + match** (core only): ``parse_*`` and ``reconcile`` over objects in memory.
- **baseline: csv.DictReader + dict join**: reading the same table with the standard
  library (no amounts or times parsed, no checks) and joining it to the sales by number:
  the floor of any Python reconciliation of this file.

Run from the repository root: ``.venv/bin/python bench/reconcile.py`` (``--quick``: 1,000
trades, for a smoke test; ``-n`` runs per figure, ``--trades N``).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import statistics
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from datetime import date, datetime, time as dtime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.figures import command_line, filesystem, machine, ms, spread, table  # noqa: E402
from posd.channels.alipay.simulator_bill import render_zip  # noqa: E402
from posd.channels.simulator.ledger import (  # noqa: E402
    Outcome, RefundEntry, RefundOutcome, RefundStatus, Trade, TradeState)
from posd.channels.wechat.simulator_bill import render_bill  # noqa: E402
from posd.core import bills  # noqa: E402
from posd.core.money import Fen  # noqa: E402
from posd.core.reconcile import reconcile  # noqa: E402
from posd.core.refund import Refund, RefundState  # noqa: E402
from posd.core.sale import Sale, State, make_out_trade_no  # noqa: E402
from posd.core.zones import BEIJING  # noqa: E402
from posd.reconcile import Reconciler  # noqa: E402
from posd.store import Store  # noqa: E402
from posd.store.db import _refund_row, _row  # noqa: E402

DAY = date(2026, 11, 30)
START = datetime.combine(DAY, dtime(8), BEIJING).timestamp()


def a_day(channel: str, count: int) -> tuple[list[Trade], list[Sale], list[Refund]]:
    """``count`` trades from 08:00, one every 4 s; the same as posd's records."""
    trades, sales, refunds = [], [], []
    for n in range(count):
        at = START + 4 * n
        number = make_out_trade_no("S001", "T01", at, n)
        amount = Fen(100 + (n * 37) % 20_000)
        reversed_ = n % 100 < 3
        refunded = n % 100 in (3, 4)
        trade = Trade(channel, number, f"{DAY:%Y%m%d}{n:020d}", "1345...0000", "x" * 64,
                      amount, Outcome.PAID, at, TradeState.REFUNDED if reversed_ else
                      TradeState.PAID, paid_at=at + 2, closed_at=at + 20 if reversed_ else None)
        state = State.REVERSED if reversed_ else State.PAID
        sales.append(Sale(number, amount, at, state, channel=channel, updated_at=at + 20,
                          paid_at=None if reversed_ else at + 2, refunded=True if reversed_
                          else None, channel_trade_no=trade.channel_trade_no,
                          auth_code_masked="1345...0000"))
        if refunded:
            refund_no = f"S001T01R2611300{n:010d}"
            back = Fen(int(amount) // 2)
            trade.refunds.append(RefundEntry(refund_no, f"50{n:026d}", back,
                                             RefundOutcome.REFUNDED, at + 600,
                                             RefundStatus.SUCCESS, succeeded_at=at + 601))
            refunds.append(Refund(0, back, refund_no, at + 600, "bench", RefundState.REFUNDED,
                                  channel=channel, out_trade_no=number, refunded_at=at + 601,
                                  updated_at=at + 601, next_action=None))
        trades.append(trade)
    return trades, sales, refunds


def the_bill(channel: str, trades: list[Trade]) -> bytes:
    made = datetime.combine(date(2026, 12, 1), dtime(9), BEIJING).timestamp()
    if channel == "wechat":
        text = render_bill(trades, appid="wx2421b1c4370ec43b", mch_id="10000100", day=DAY,
                           now=made)
        assert text is not None
        return gzip.compress(text.encode("utf-8"))
    data = render_zip(trades, pid="2088123456789012", day=DAY, now=made)
    assert data is not None
    return data


class KeptBill:
    """A channel whose bill is already downloaded: ``download_bill`` hands over the bytes."""

    def __init__(self, name: str, data: bytes) -> None:
        self.name, self._data = name, data

    def download_bill(self, day: date) -> bytes:
        return self._data

    def close(self) -> None: ...


def fill(store: Store, sales: list[Sale], refunds: list[Refund]) -> None:
    with store._tx() as db:  # one transaction: the store's own per-sale commits take minutes
        ids = []
        for sale in sales:
            ids.append(int(db.table("sales").insert(_row(sale)).last_pk or 0))
        by_number = dict(zip((s.out_trade_no for s in sales), ids, strict=True))
        for refund in refunds:
            db.table("refunds").insert(_refund_row(refund) | {
                "sale_id": by_number[refund.out_trade_no]})


def csv_rows(channel: str, data: bytes) -> list[dict[str, str]]:
    if channel == "wechat":
        text = gzip.decompress(data).decode("utf-8-sig")
        return list(csv.DictReader(io.StringIO(text.split("\r\n总交易单数")[0])))
    with zipfile.ZipFile(io.BytesIO(data), metadata_encoding="gbk") as archive:
        name = next(n for n in archive.namelist() if n.endswith("业务明细.csv"))
        text = archive.read(name).decode("gbk")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return list(csv.DictReader(lines))


def timed(runs: int, work: Callable[[], object]) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        samples.append(time.perf_counter() - start)
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--quick", action="store_true", help="1,000 trades, 3 runs")
    parser.add_argument("--trades", type=int, default=10_000)
    parser.add_argument("-n", "--runs", type=int, default=7)
    args = parser.parse_args()
    count, runs = (1_000, 3) if args.quick else (args.trades, args.runs)
    print(f"reconciliation of one bill day: {count:,} trades per channel, {runs} runs each")
    print(f"  {machine()}")
    verdicts = []
    with tempfile.TemporaryDirectory() as tmp:
        print(f"  store and bills on {filesystem(Path(tmp))}")
        for channel, parse in (("wechat", bills.parse_wechat), ("alipay", bills.parse_alipay)):
            trades, sales, refunds = a_day(channel, count)
            data = the_bill(channel, trades)
            store = Store.open(Path(tmp) / f"{channel}.db")
            fill(store, sales, refunds)
            stored_sales = store.find()
            stored_refunds = store.find_refunds()
            rec = Reconciler(store, {channel: KeptBill(channel, data)},  # type: ignore[dict-item]
                             store_id="S001", terminal_id="T01",
                             directory=Path(tmp) / "bills")

            def whole() -> None:
                (outcome,) = rec.run(DAY, [channel])
                assert outcome.status == "matched", outcome.detail

            def core() -> None:
                result = reconcile(parse(data, DAY), stored_sales, stored_refunds,
                                   store_id="S001", terminal_id="T01", neighbours={})
                assert result.all_matched, result.differences[:3]

            def baseline() -> None:
                by_number = {s.out_trade_no: s for s in stored_sales}
                key = "商户订单号"
                found = sum(1 for row in csv_rows(channel, data)
                            if row[key].strip(" \t`") in by_number)
                assert found >= count

            figures = [("posd reconcile, whole run", timed(runs, whole)),
                       ("parse + match (core)", timed(runs, core)),
                       ("baseline: csv.DictReader + dict join", timed(runs, baseline))]
            store.close()
            rows = [(what, *(ms(x) for x in spread(s))) for what, s in figures]
            base = statistics.median(figures[2][1])
            rows = [(*r, f"{statistics.median(s) / base:.1f}x")
                    for r, (_, s) in zip(rows, figures, strict=True)]
            print(f"\n  {channel}: {len(data):,} bytes of bill, {count:,} trades, "
                  f"{len(refunds)} refunds (ms)\n")
            print(table(("", "median", "p90", "p99", "max", "vs baseline"), rows))
            verdicts.append((channel, statistics.median(figures[0][1])))
    print()
    for channel, median in verdicts:
        if args.quick:
            print(f"  {channel}: (no verdict on a quick run)")
        else:
            print(f"  {channel}: target whole run <= 1000 ms: median {median * 1000:.0f} ms "
                  f"-> {'met' if median <= 1.0 else 'NOT met'}")
    print(f"\n  command: {command_line()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
