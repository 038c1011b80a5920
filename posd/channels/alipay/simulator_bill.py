# SPDX-License-Identifier: MIT
"""Alipay's daily ``trade`` bill (``alipay.data.dataservice.bill.downloadurl.query``) from the
ledger's trades, as the zip Alipay serves behind the short-lived URL. No I/O.

Format (reference/channels.md §2.11; the issue's description of real files): a zip named
``{pid}_{yyyyMMdd}.csv.zip`` holding ``{pid}_{yyyyMMdd}_业务明细.csv`` and
``..._业务明细(汇总).csv``, GBK-encoded, entry names GBK too (no UTF-8 flag, as Alipay's own);
``#`` lines before and after the table; values padded with a tab (so spreadsheets keep long
numbers); headers with full-width brackets; amounts in yuan. A payment is a 业务类型 ``交易``
row on the day it was paid, a refund a ``退款`` row with negative amounts and its
退款批次号/请求号 on the day it succeeded; the 服务费 (0.6 %) is negative on a payment (kept)
and positive on a refund (given back).

**An assumption** (not documented by Alipay; docs/reconciliation.md says so): a cancel that
returned a paid trade's money (``action=refund``) is a ``退款`` row numbered like the trade
itself (Alipay's refund API defaults ``out_request_no`` to ``out_trade_no``). posd reads a
refund row with that number, or with none, as such a cancel.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime

from posd.channels.simulator.ledger import BillEdit, BillEditKind, Trade, TradeState
from posd.core.money import Fen, format_yuan
from posd.core.zones import BEIJING

DETAIL_HEADER = (
    "支付宝交易号", "商户订单号", "业务类型", "商品名称", "创建时间", "完成时间", "门店编号",
    "门店名称", "操作员", "终端号", "对方账户", "订单金额（元）", "商家实收（元）",
    "支付宝红包（元）", "集分宝（元）", "支付宝优惠（元）", "商家优惠（元）",
    "券核销金额（元）", "券名称", "商家红包消费金额（元）", "卡消费金额（元）",
    "退款批次号/请求号", "服务费（元）", "分润（元）", "备注",
)
_RULE = "-" * 40


@dataclass(frozen=True, slots=True)
class _Row:
    at: float
    trade: Trade
    kind: str  # 交易 or 退款
    amount: Fen  # positive
    request_no: str = ""


class _GbkName(zipfile.ZipInfo):
    """An entry whose name is written in GBK without the UTF-8 flag, as Alipay writes them."""

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:  # noqa: N802 - zipfile's name
        return self.filename.encode("gbk"), self.flag_bits


def pid_of(app_id: str) -> str:
    """A stable 16-digit partner id (2088...) for the sandbox app."""
    digits = "".join(c for c in app_id if c.isdigit())
    return "2088" + digits[-12:].rjust(12, "0")


def render_zip(trades: Iterable[Trade], *, pid: str, day: date, now: float,
               edits: Mapping[str, BillEdit] | None = None) -> bytes | None:
    """The bill zip for ``day``, or None when there is nothing to bill (isp.bill_not_exist)."""
    rows = sorted(_edited(_rows(trades, day), edits or {}),
                  key=lambda r: (r.at, r.trade.out_trade_no))
    if not rows:
        return None
    stamp = day.strftime("%Y%m%d")
    detail = _detail(rows, pid, day, now)
    summary = _summary(rows, pid, day, now)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in ((f"{pid}_{stamp}_业务明细.csv", detail),
                           (f"{pid}_{stamp}_业务明细(汇总).csv", summary)):
            info = _GbkName(name, date_time=datetime.fromtimestamp(now, BEIJING).timetuple()[:6])
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, text.encode("gbk"))
    return out.getvalue()


def archive_name(pid: str, day: date) -> str:
    return f"{pid}_{day.strftime('%Y%m%d')}.csv.zip"


def _day(at: float) -> date:
    return datetime.fromtimestamp(at, BEIJING).date()


def _rows(trades: Iterable[Trade], day: date) -> Iterator[_Row]:
    for trade in trades:
        if trade.paid_at is not None and _day(trade.paid_at) == day:
            yield _Row(trade.paid_at, trade, "交易", trade.amount)
        if trade.state is TradeState.REFUNDED and trade.closed_at is not None \
                and _day(trade.closed_at) == day:
            yield _Row(trade.closed_at, trade, "退款", trade.amount, trade.out_trade_no)
        for entry in trade.refunds:
            if entry.succeeded_at is not None and _day(entry.succeeded_at) == day:
                yield _Row(entry.succeeded_at, trade, "退款", entry.amount, entry.out_refund_no)


def _edited(rows: Iterable[_Row], edits: Mapping[str, BillEdit]) -> Iterator[_Row]:
    for row in rows:
        edit = edits.get(row.trade.out_trade_no)
        if edit is None or (edit.kind is BillEditKind.AMOUNT and row.kind != "交易"):
            yield row
        elif edit.kind is BillEditKind.AMOUNT and edit.amount is not None:
            yield _Row(row.at, row.trade, row.kind, edit.amount, row.request_no)


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _fee(amount: Fen) -> int:
    """0.6 % in fen, half up."""
    return (int(amount) * 6 + 500) // 1000


def _signed(fen: int) -> str:
    return ("-" if fen < 0 else "") + format_yuan(Fen(abs(fen)))


def _detail_line(row: _Row) -> str:
    t = row.trade
    sign = -1 if row.kind == "退款" else 1
    amount = sign * int(row.amount)
    fee = -sign * _fee(row.amount)
    cells = [
        t.channel_trade_no + "\t", t.out_trade_no + "\t", row.kind, t.subject or "POS",
        _when(t.created_at), _when(row.at), "", "", "", t.device_info, f"1{t.buyer_ref[:2]}***@sim",
        _signed(amount), _signed(amount), "0.00", "0.00", "0.00", "0.00", "0.00", "", "0.00",
        "0.00", (row.request_no + "\t") if row.request_no else "", _signed(fee), "0.00", "",
    ]
    return ",".join(c.replace(",", " ") for c in cells)


def _head(title: str, pid: str, day: date) -> list[str]:
    start = day.strftime("%Y年%m月%d日")
    return [f"#支付宝{title}查询", f"#账号：[{pid}0156]",
            f"#起始日期：[{start} 00:00:00]   终止日期：[{start} 23:59:59]",
            f"#{_RULE}{title}列表{_RULE}"]


def _detail(rows: list[_Row], pid: str, day: date, now: float) -> str:
    paid = [r for r in rows if r.kind == "交易"]
    back = [r for r in rows if r.kind == "退款"]
    lines = _head("业务明细", pid, day) + [",".join(DETAIL_HEADER)]
    lines += [_detail_line(r) for r in rows]
    lines += [
        f"#{_RULE}业务明细列表结束{_RULE}",
        f"#交易合计：{len(paid)}笔，商家实收共{format_yuan(Fen(sum(r.amount for r in paid)))}元，"
        "商家优惠共0.00元",
        f"#退款合计：{len(back)}笔，商家实收退款共"
        f"{_signed(-sum(int(r.amount) for r in back))}元，商家优惠退款共0.00元",
        f"#导出时间：[{datetime.fromtimestamp(now, BEIJING).strftime('%Y年%m月%d日 %H:%M:%S')}]",
    ]
    return "\r\n".join(lines) + "\r\n"


def _summary(rows: list[_Row], pid: str, day: date, now: float) -> str:
    paid = [r for r in rows if r.kind == "交易"]
    back = [r for r in rows if r.kind == "退款"]
    taken = sum(int(r.amount) for r in paid)
    returned = sum(int(r.amount) for r in back)
    fees = sum(_fee(r.amount) for r in paid) - sum(_fee(r.amount) for r in back)
    lines = _head("业务汇总", pid, day) + [
        "门店编号,门店名称,交易订单总笔数,退款订单总笔数,订单金额（元）,商家实收（元）,服务费（元）,实收净额（元）",
        f"合计,,{len(paid)},{len(back)},{_signed(taken - returned)},{_signed(taken - returned)},"
        f"{_signed(-fees)},{_signed(taken - returned - fees)}",
        f"#{_RULE}业务汇总列表结束{_RULE}",
        f"#导出时间：[{datetime.fromtimestamp(now, BEIJING).strftime('%Y年%m月%d日 %H:%M:%S')}]",
    ]
    return "\r\n".join(lines) + "\r\n"
