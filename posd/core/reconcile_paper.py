# SPDX-License-Identifier: MIT
"""A reconciliation on paper (58 or 80 mm), as text for a terminal, and as CSV. [core]

The paper form is what a manager reads at the counter the next morning: the day, the
channel, one line per class, the money, and every difference with its numbers and what to
do. Bilingual words come from the receipt's language (``receipt.language``).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from datetime import datetime

from posd.core.layout import Element, Line, centred, pair, rule, title_size, wrap
from posd.core.money import Fen, format_yuan
from posd.core.receipt import Header, Language, channel_label
from posd.core.reconcile import Reconciliation, Tally, Verdict, difference_json
from posd.core.zones import BEIJING

WORDS: Mapping[Language, Mapping[str, str]] = {
    "en": {
        "title": "RECONCILIATION", "day": "Bill day (Beijing)", "till": "Terminal",
        "bill": "Bill (this terminal)", "paid": "Taken", "returned": "Returned",
        "fee": "Channel fee", "posd": "posd", "refunded": "Refunded",
        "others": "Other terminals", "elsewhere": "In the next/previous bill",
        "matched": "Matched", "channel_only": "Only at the channel",
        "posd_only": "Only in posd", "status_mismatch": "Status differs",
        "amount_mismatch": "Amount differs", "held": "Held for the next bill",
        "all": "ALL MATCHED", "differ": "DIFFERENCES", "wait": "NOTHING DIFFERS YET",
        "missing": "No bill at the channel for this day",
        "attention": "MONEY TAKEN, NO SALE", "followup": "Channel now says",
        "printed": "Printed",
    },
    "zh": {
        "title": "对账单 核对", "day": "账单日(北京)", "till": "终端",
        "bill": "账单(本终端)", "paid": "收款", "returned": "退回",
        "fee": "手续费", "posd": "本机记录", "refunded": "退款",
        "others": "其他终端", "elsewhere": "在相邻日账单",
        "matched": "一致", "channel_only": "仅渠道有",
        "posd_only": "仅本机有", "status_mismatch": "状态不符",
        "amount_mismatch": "金额不符", "held": "待次日账单",
        "all": "全部一致", "differ": "有差异", "wait": "暂无差异",
        "missing": "渠道当日无账单",
        "attention": "已扣款但无交易", "followup": "渠道查询",
        "printed": "打印时间",
    },
}


def _figures(tally: Tally) -> str:
    return f"{tally.count:>4} {format_yuan(Fen(tally.amount)):>11}"


def _fee(mfen: int) -> str:
    """Thousandths of a fen as yuan to five places (WeChat's 手续费 precision)."""
    sign = "-" if mfen < 0 else ""
    units = abs(mfen)
    return f"{sign}{units // 100_000}.{units % 100_000:05d}"


def verdict_line(result: Reconciliation, language: Language = "en") -> str:
    words = WORDS[language]
    if result.differences:
        return f"{words['differ']}: {len(result.differences)}"
    return words["wait"] if result.held else words["all"]


def elements(result: Reconciliation, header: Header, *, columns: int = 32,
             language: Language = "en", printed_at: float | None = None) -> list[Element]:
    words = WORDS[language]
    label = channel_label(result.channel, language, header.channels)
    title = words["title"]
    out: list[Element] = [*centred(header.store_name or header.store_id, columns, bold=True),
                          rule(columns)]
    out += centred(title, columns, bold=True, size=title_size(title, columns))
    out += pair(label, result.day.isoformat(), columns, bold=True)
    out += pair(words["till"], f"{header.store_id}/{header.terminal_id}", columns)
    if printed_at is not None:
        out += pair(words["printed"], datetime.fromtimestamp(printed_at, BEIJING).strftime(
            "%Y-%m-%d %H:%M"), columns)
    out.append(rule(columns))
    if result.no_bill:
        out += [Line(t) for t in wrap(words["missing"], columns)]
    out.append(Line(words["bill"], bold=True))
    out += pair(words["paid"], _figures(result.bill_paid), columns)
    out += pair(words["returned"], _figures(result.bill_returned), columns)
    out += pair(words["fee"], _fee(result.bill_fee), columns)
    out.append(Line(words["posd"], bold=True))
    out += pair(words["paid"], _figures(result.posd_paid), columns)
    out += pair(words["refunded"], _figures(result.posd_refunded), columns)
    if result.other_terminals.count or result.other_returned.count:
        out += pair(words["others"], _figures(result.other_terminals), columns)
    out.append(rule(columns))
    for verdict in Verdict:
        count = result.counts.get(verdict, 0)
        if count or verdict is Verdict.MATCHED:
            out += pair(words[verdict.value], str(count), columns)
    if result.held:
        out += pair(words["held"], str(len(result.held)), columns)
    if result.elsewhere:
        out += pair(words["elsewhere"], str(result.elsewhere), columns)
    out += [rule(columns), *centred(verdict_line(result, language), columns, bold=True)]
    for d in result.differences:
        out.append(rule(columns, "."))
        head = words["attention"] if d.money_taken else words[d.verdict.value]
        out.append(Line(head, bold=True))
        amount = d.bill_amount if d.bill_amount is not None else d.posd_amount
        out += pair(d.subject, format_yuan(Fen(amount or 0)), columns)
        out += [Line(n, "right") for n in (d.out_trade_no, d.out_refund_no,
                                            d.channel_trade_no) if n]
        out += [Line(t) for t in wrap(d.message, columns)]
        if d.followup:
            out += [Line(t) for t in wrap(f"{words['followup']}: {d.followup}", columns)]
    for h in result.held:
        out.append(Line(f"{words['held']}: {h.out_refund_no or h.out_trade_no}"))
    for warning in result.warnings:
        out += [Line(t) for t in wrap(f"! {warning}", columns)]
    out.append(Line())
    return out


CSV_FIELDS = ("date", "channel", "class", "subject", "out_trade_no", "out_refund_no",
              "channel_trade_no", "channel_refund_no", "sale_id", "refund_id", "posd_state",
              "posd_yuan", "bill_shows", "bill_yuan", "bill_at", "money_taken", "message",
              "followup")


def as_csv(results: Iterable[Reconciliation]) -> str:
    """One row per difference and per held record (class ``held``); amounts in yuan."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for result in results:
        for d in result.differences:
            data = difference_json(d)
            writer.writerow([
                result.day.isoformat(), result.channel, data["class"], d.subject,
                d.out_trade_no, d.out_refund_no, d.channel_trade_no, d.channel_refund_no,
                d.sale_id or "", d.refund_id or "", d.posd_state or "",
                "" if d.posd_amount is None else format_yuan(Fen(d.posd_amount)), d.bill_shows,
                "" if d.bill_amount is None else format_yuan(Fen(d.bill_amount)),
                data["bill_at"] or "", "yes" if d.money_taken else "no", d.message, d.followup,
            ])
        for h in result.held:
            writer.writerow([result.day.isoformat(), result.channel, "held", h.subject,
                             h.out_trade_no, h.out_refund_no, "", "", h.sale_id or "",
                             h.refund_id or "", "", format_yuan(Fen(h.amount)), "", "", "",
                             "no", f"waits for the bill of {h.waits_for}", ""])
    return out.getvalue()
