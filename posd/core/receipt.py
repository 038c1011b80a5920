# SPDX-License-Identifier: MIT
"""Sale -> receipt layout, in English or Chinese. Pure; ``posd.devices.printers`` prints it. [core]

The layout is a list of ``posd.core.layout`` elements (lines with alignment, bold and size, and
a QR code of the ``out_trade_no`` so that a manager can find the sale by scanning the
receipt). Widths are display columns (CJK counts two), for 58 mm (32 columns) and 80 mm
(48 columns) paper. Amounts are shown as ``CNY 12.50`` in English and ``￥12.50`` in
Chinese: the full-width ``￥`` (U+FFE5) is in GBK, the half-width ``¥`` (U+00A5) is not and
prints as junk on GBK printers (reference/hardware.md §2).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from typing import Literal

from posd.core.zones import BEIJING
from posd.core.codes import CHANNEL_NAMES
from posd.core.layout import Element, Line, Qr, as_text, centred, pair, rule, title_size, wrap
from posd.core.layout import width as width
from posd.core.money import Fen, format_yuan
from posd.core.refund import Refund, RefundState
from posd.core.sale import Sale, State

Language = Literal["en", "zh"]

TITLES = {
    State.PAID: "PAID",
    State.DECLINED: "DECLINED - NOT PAID",
    State.REVERSED: "REVERSED - NOT PAID",
    State.CANCELLED: "CANCELLED",
    State.NEEDS_ATTENTION: "NEEDS ATTENTION",
}

_ZH_TITLES = {
    State.PAID: "支付成功",
    State.DECLINED: "支付失败 未收款",
    State.REVERSED: "已撤销 未收款",
    State.CANCELLED: "已取消",
    State.NEEDS_ATTENTION: "需人工核实",
}

WORDS: Mapping[Language, Mapping[str, str]] = {
    "en": {
        "amount": "Amount", "channel": "Channel", "payer": "Payer code",
        "till": "Store/Till", "time": "Time", "order": "Order no.",
        "trade": "Channel trade no.", "register": "Register order", "sale": "Sale",
        "reprint": "*** REPRINT ***", "printed": "Printed", "scan": "Scan to find this sale",
    },
    "zh": {
        "amount": "金额", "channel": "支付方式", "payer": "付款码", "till": "门店/终端",
        "time": "时间", "order": "商户订单号", "trade": "渠道交易号", "register": "收银单号",
        "sale": "流水号", "reprint": "*** 补打小票 ***", "printed": "补打时间",
        "scan": "扫码查询本笔交易",
    },
}

#: A refund slip's words (DESIGN §9 rule 4: store, original sale, amount, masked code,
#: refund number, time).
REFUND_WORDS: Mapping[Language, Mapping[str, str]] = {
    "en": {"refunded": "REFUND", "refund_failed": "REFUND FAILED - NOT REFUNDED",
           "needs_attention": "REFUND NEEDS ATTENTION", "refunding": "REFUND IN PROGRESS",
           "refund_no": "Refund no.", "of_sale": "Of sale", "paid": "Sale amount",
           "reason": "Reason", "channel_no": "Channel refund no."},
    "zh": {"refunded": "退款成功", "refund_failed": "退款失败 未退款",
           "needs_attention": "退款需人工处理", "refunding": "退款处理中",
           "refund_no": "退款单号", "of_sale": "原交易", "paid": "原交易金额",
           "reason": "退款原因", "channel_no": "渠道退款单号"},
}


@dataclass(frozen=True, slots=True)
class Header:
    store_name: str
    store_id: str
    terminal_id: str
    address: str = ""
    #: ``store.timezone``: the zone every printed time is in
    tz: tzinfo = BEIJING
    #: channel name -> (English, Chinese) label (the registry's, posd.channels.registry)
    channels: Mapping[str, tuple[str, str]] = field(default_factory=lambda: CHANNEL_NAMES)


def money(fen: Fen, language: Language) -> str:
    """``CNY 12.50`` or ``￥12.50`` (full-width yuan sign: GBK has it, see the module doc)."""
    return f"CNY {format_yuan(fen)}" if language == "en" else f"￥{format_yuan(fen)}"


def channel_label(channel: str | None, language: Language,
                  names: Mapping[str, tuple[str, str]] = CHANNEL_NAMES) -> str:
    if not channel:
        return "-"
    if (found := names.get(channel)) is None:
        return channel
    return found[0] if language == "en" else found[1]


def state_title(state: State, language: Language) -> str:
    titles = TITLES if language == "en" else _ZH_TITLES
    return titles.get(state, state.value.upper())


def local_time(epoch: float | None, tz: tzinfo = BEIJING) -> str:
    """``YYYY-MM-DD HH:MM:SS`` in ``tz`` (``store.timezone``; whatever the host's zone),
    ``-`` for None."""
    if epoch is None:
        return "-"
    return datetime.fromtimestamp(epoch, tz).strftime("%Y-%m-%d %H:%M:%S")


#: Chinese reasons for declines posd knows; the channel's own words follow when it gave any.
_ZH_DECLINES = {
    "NOTENOUGH": "余额不足，请顾客更换付款方式",
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": "余额不足，请顾客更换付款方式",
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": "银行卡余额不足，请顾客更换付款方式",
    "AUTHCODEEXPIRE": "付款码已过期，请顾客刷新付款码后重新扫码",
    "AUTH_CODE_ERROR": "付款码无效，请顾客刷新付款码后重新扫码",
    "AUTH_CODE_INVALID": "付款码无效，请顾客刷新付款码后重新扫码",
    "ACQ.PAYMENT_AUTH_CODE_INVALID": "付款码无效，请顾客刷新付款码后重新扫码",
    "CHANNEL_UNREACHABLE": "无法连接支付渠道，未扣款，请重试",
    "CLOSED": "交易已关闭，未扣款",
    "RETURN_FAIL": "收银机支付配置有误，未扣款，请联系店长",
    "GATEWAY_REFUSED": "收银机支付配置有误，未扣款，请联系店长",
}
_ZH_CHANNEL_TEXT = re.compile(r"\((?:微信|支付宝): ([^)]*)\)")


def zh_reason(sale: Sale) -> str:
    """The reason line of a Chinese slip: posd's sentence in Chinese, plus the channel's own
    (Chinese) words from the message when it gave any."""
    refunded = {True: "已撤销：款项已原路退回顾客", False: "已撤销：未扣款",
                None: "已撤销：如已扣款，将原路退回顾客"}
    match sale.state:
        case State.DECLINED:
            text = _ZH_DECLINES.get(sale.decline_code or "", "支付未成功，未扣款，请顾客更换付款方式")
        case State.REVERSED:
            text = refunded[sale.refunded]
        case State.CANCELLED:
            text = ("超时未扫付款码，已自动取消，未扣款" if "no payment code" in sale.message
                    else "收银员已取消，未扣款")
        case State.NEEDS_ATTENTION:
            text = "需人工核实：请在商户平台核对此笔交易，并撤销或退款"
        case _:
            return ""
    if (found := _ZH_CHANNEL_TEXT.search(sale.message)) is not None:
        text += f"（{found[1]}）"
    return text


def heading(header: Header, columns: int) -> list[Element]:
    """Store name (bold) and address, centred."""
    out: list[Element] = [*centred(header.store_name, columns, bold=True)]
    if header.address:
        out += centred(header.address, columns)
    return out


def _labelled(label: str, value: str, columns: int) -> list[Element]:
    """A long value (order numbers) under its label, right-aligned."""
    return [Line(label), *(Line(piece, "right") for piece in wrap(value, columns))]


def _details(sale: Sale, header: Header, words: Mapping[str, str], language: Language,
             columns: int) -> list[Element]:
    out: list[Element] = [
        *pair(words["channel"], channel_label(sale.channel, language, header.channels), columns),
        *pair(words["payer"], sale.auth_code_masked or "-", columns),
        *pair(words["till"], f"{header.store_id}/{header.terminal_id}", columns),
        *pair(words["time"], local_time(sale.paid_at or sale.updated_at, header.tz), columns),
        *_labelled(words["order"], sale.out_trade_no, columns),
    ]
    if sale.channel_trade_no:
        out += _labelled(words["trade"], sale.channel_trade_no, columns)
    if sale.order_ref:
        out += pair(words["register"], sale.order_ref, columns)
    return out


def _top(header: Header, title: str, amount: Fen, *, columns: int, language: Language,
         reprint: bool, printed_at: float | None) -> list[Element]:
    """The store, the title, REPRINT when it is one, and the amount: every slip's top."""
    words = WORDS[language]
    out = heading(header, columns)
    out += [rule(columns), *centred(title, columns, bold=True, size=title_size(title, columns))]
    if reprint:
        out += centred(words["reprint"], columns, bold=True)
        if printed_at is not None:
            out += centred(f"{words['printed']} {local_time(printed_at, header.tz)}", columns)
    out.append(rule(columns))
    out += pair(words["amount"], money(amount, language), columns, bold=True, size="tall")
    return out


def elements(sale: Sale, header: Header, *, columns: int = 32, language: Language = "en",
             reprint: bool = False, printed_at: float | None = None, qr: bool = True,
             footer: str = "") -> list[Element]:
    """The receipt (or slip, for a sale not paid) of a final sale.

    ``reprint`` marks it as such, with ``printed_at`` (the caller's clock) when given.
    """
    words = WORDS[language]
    out = _top(header, state_title(sale.state, language), sale.amount, columns=columns,
               language=language, reprint=reprint, printed_at=printed_at)
    out += _details(sale, header, words, language, columns)
    reason = sale.message if language == "en" else zh_reason(sale)
    if sale.state is not State.PAID and reason:
        out += [rule(columns), *(Line(piece) for piece in wrap(reason, columns))]
    out.append(rule(columns))
    if qr:
        out += [Qr(sale.out_trade_no), *centred(words["scan"], columns)]
    out += centred(f"{words['sale']} {sale.id}", columns)
    if footer:
        out += centred(footer, columns)
    out.append(Line())
    return out


def lines(sale: Sale, header: Header, *, columns: int = 32, reprint: bool = False,
          language: Language = "en", qr: bool = True) -> list[str]:
    """The receipt as text lines of at most ``columns`` display columns."""
    layout = elements(sale, header, columns=columns, language=language, reprint=reprint, qr=qr)
    return as_text(layout, columns).split("\n")


def text(sale: Sale, header: Header, *, columns: int = 32, reprint: bool = False,
         language: Language = "en", qr: bool = True) -> str:
    return "\n".join(lines(sale, header, columns=columns, reprint=reprint, language=language,
                           qr=qr))


def refund_elements(refund: Refund, sale: Sale, header: Header, *, columns: int = 32,
                    language: Language = "en", reprint: bool = False,
                    printed_at: float | None = None) -> list[Element]:
    """The slip of a refund: what went back to the customer, of which sale, under which
    number (the customer keeps it; the shop's copy is the store)."""
    words, refund_words = WORDS[language], REFUND_WORDS[language]
    out = _top(header, refund_words[refund.state.value], refund.amount, columns=columns,
               language=language, reprint=reprint, printed_at=printed_at)
    out += [
        *pair(refund_words["paid"], money(sale.amount, language), columns),
        *pair(words["channel"], channel_label(sale.channel, language, header.channels), columns),
        *pair(words["payer"], sale.auth_code_masked or "-", columns),
        *pair(words["till"], f"{header.store_id}/{header.terminal_id}", columns),
        *pair(words["time"], local_time(refund.refunded_at or refund.updated_at, header.tz),
              columns),
        *_labelled(refund_words["refund_no"], refund.out_refund_no, columns),
        *_labelled(refund_words["of_sale"], sale.out_trade_no, columns),
    ]
    if refund.channel_refund_no:
        out += _labelled(refund_words["channel_no"], refund.channel_refund_no, columns)
    if refund.reason:
        out += [Line(refund_words["reason"]), *(Line(p) for p in wrap(refund.reason, columns))]
    if refund.state is not RefundState.REFUNDED:
        out += [rule(columns), *(Line(piece) for piece in wrap(refund.message, columns))]
    out += [rule(columns), *centred(f"{words['sale']} {sale.id}", columns), Line()]
    return out
