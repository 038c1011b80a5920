# SPDX-License-Identifier: MIT
"""Payment codes: classification by prefix, masking, double-read filtering. [core]

Prefix rules as published per channel (reference/channels.md §1.12, §2.13, §3):
WeChat 18 digits starting 10-15; Alipay 16-24 digits starting 25-30; UnionPay 19 digits
starting 62. Prefix tables drift, so they are configurable (``[[codes.rules]]``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from posd.core.errors import CodeError

#: What receipts, reports and the cashier call each known channel: (English, Chinese). A
#: channel package names itself from here (posd.channels.NAME's spec); UnionPay is known so
#: that a cashier hears which app a code is from, though posd does not take it yet.
CHANNEL_NAMES: Mapping[str, tuple[str, str]] = {
    "wechat": ("WeChat Pay", "微信支付"),
    "alipay": ("Alipay", "支付宝"),
    "unionpay": ("UnionPay", "云闪付"),
}
#: English names only (logs and the cashier's messages).
CHANNEL_LABELS: Mapping[str, str] = {name: en for name, (en, _) in CHANNEL_NAMES.items()}


@dataclass(frozen=True, slots=True)
class PrefixRule:
    """Codes of ``min_length``..``max_length`` ASCII digits starting with one of ``prefixes``."""

    channel: str
    prefixes: tuple[str, ...]
    min_length: int
    max_length: int

    def matches(self, code: str) -> bool:
        return self.min_length <= len(code) <= self.max_length and code.startswith(self.prefixes)


WECHAT_RULES: tuple[PrefixRule, ...] = (
    PrefixRule("wechat", ("10", "11", "12", "13", "14", "15"), 18, 18),
)
ALIPAY_RULES: tuple[PrefixRule, ...] = (
    PrefixRule("alipay", ("25", "26", "27", "28", "29", "30"), 16, 24),
)
#: Codes of channels posd recognises but does not take.
OTHER_RULES: tuple[PrefixRule, ...] = (PrefixRule("unionpay", ("62",), 19, 19),)
DEFAULT_RULES: tuple[PrefixRule, ...] = WECHAT_RULES + ALIPAY_RULES + OTHER_RULES


def _ascii_digits(text: str) -> bool:
    return text.isascii() and text.isdigit()


def is_product_barcode(code: str) -> bool:
    """An EAN-8, UPC-A (12) or EAN-13 number with a valid GS1 check digit: what a scanner reads
    off the goods on the counter (a Chinese one starts 690-699).

    >>> is_product_barcode("6901234567892"), is_product_barcode("6901234567891")
    (True, False)
    """
    if len(code) not in (8, 12, 13) or not _ascii_digits(code):
        return False
    digits = [int(d) for d in code]
    body, check = digits[:-1], digits[-1]
    total = sum(d * (3 if i % 2 == 0 else 1) for i, d in enumerate(reversed(body)))
    return (10 - total % 10) % 10 == check


def classify(code: str, rules: Iterable[PrefixRule] = DEFAULT_RULES) -> str:
    """Return the channel a scanned code belongs to, or raise CodeError with a cashier's reason."""
    if not code:
        raise CodeError("nothing was read: scan the customer's payment code again")
    if not _ascii_digits(code):
        raise CodeError(
            "this is not a payment code (payment codes are digits only): ask the customer to "
            "open the payment code (付款码) in WeChat or Alipay"
        )
    for rule in rules:
        if rule.matches(code):
            return rule.channel
    if is_product_barcode(code):
        raise CodeError(
            "this is a product barcode (EAN/UPC), not a payment code: ask the customer to open "
            "the payment code (付款码) in WeChat or Alipay and scan that"
        )
    raise CodeError(
        f"this {len(code)}-digit code is not a WeChat Pay, Alipay or UnionPay payment code: "
        "ask the customer to open the payment code (付款码) and scan again"
    )


def route(code: str, enabled: Iterable[str] | Mapping[str, str],
          rules: Iterable[PrefixRule] = DEFAULT_RULES,
          labels: Mapping[str, str] = CHANNEL_LABELS) -> str:
    """Classify ``code`` and refuse it unless its channel is taken at this store.

    ``enabled``: the enabled channels, or ``classified channel -> the channel that takes
    its codes`` (posd.channels.registry.takers: WeChat's codes go to WeChat Pay v3 when that
    is enabled)."""
    channel = classify(code, rules)
    takers = enabled if isinstance(enabled, Mapping) else {name: name for name in enabled}
    if channel not in takers:
        label = labels.get(channel, channel)
        raise CodeError(f"{label} is not accepted at this till: ask the customer to pay another way")
    return takers[channel]


def mask(code: str) -> str:
    """First 4 + last 4 characters; everything else hidden. '134567890123450001' -> '1345…0001'."""
    if len(code) <= 8:
        return "…" if code else ""
    return f"{code[:4]}…{code[-4:]}"


class DoubleReadFilter:
    """Drop the same code read again within ``window_s`` (scanners in continuous mode do this).

    No I/O: the caller passes a monotonic ``now``.
    """

    def __init__(self, window_s: float = 2.0) -> None:
        self._window_s = window_s
        self._last: tuple[str, float] | None = None

    def is_repeat(self, code: str, now: float) -> bool:
        last, self._last = self._last, (code, now)
        return last is not None and last[0] == code and now - last[1] < self._window_s
