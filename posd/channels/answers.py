# SPDX-License-Identifier: MIT
"""What every channel client does with an answer before its own tables: one copy of it.

- :class:`Rejected`: the channel did not take the request (WeChat ``return_code=FAIL``,
  Alipay gateway codes 20001/4000x): nothing was done by it;
- :func:`text`: channel text made safe to show and log (one line, bounded);
- :func:`with_text`: a table entry with the channel's own words appended;
- :func:`hide`: the payment code masked wherever the channel might echo it, before any
  mapping, so that no message or log line can carry it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TypeVar

from posd.core.codes import mask
from posd.core.money import Fen
from posd.core.sale import (
    ChannelResult,
    Closed,
    Declined,
    Failed,
    NotFound,
    Paid,
    Pending,
    Refused,
    Unknown,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Rejected:
    """The channel did not accept the request (its answer is unsigned): no trade was made."""

    message: str


def text(value: str, limit: int = 120) -> str:
    """Channel text made safe to show and log: one line, bounded."""
    return " ".join(value.split())[:limit]


def with_text(result: ChannelResult, words: str, who: str) -> ChannelResult:
    """``result`` with the channel's own description (often Chinese) appended: to the
    message a cashier reads, or to the detail the event history keeps. ``who``: 微信, 支付宝."""
    if not (words := text(words)):
        return result
    if isinstance(result, Declined | Failed | Refused):
        return replace(result, message=f"{result.message} ({who}: {words})")
    if isinstance(result, Unknown | Pending | NotFound | Closed):
        return replace(result, detail=f"{result.detail}: {words}")
    return result


def scrub(fields: Mapping[str, T], auth_code: str) -> dict[str, T]:
    """``fields`` with ``auth_code`` masked in every string value."""
    hidden = mask(auth_code)
    return {k: v.replace(auth_code, hidden) if isinstance(v, str) else v  # type: ignore[misc]
            for k, v in fields.items()}


def hide(reply: T, auth_code: str, scrub_answer: Callable[[T, str], T]) -> T:
    """Mask ``auth_code`` in a reply: an Unknown holds no channel text, a Rejected its
    message, anything else is the channel's own answer, scrubbed by ``scrub_answer``."""
    if not auth_code or isinstance(reply, Unknown):
        return reply
    if isinstance(reply, Rejected):
        return Rejected(reply.message.replace(auth_code, mask(auth_code)))  # type: ignore[return-value]
    return scrub_answer(reply, auth_code)


def logged_query(log: logging.Logger, channel: str, out_trade_no: str, amount: Fen,
                 result: ChannelResult) -> ChannelResult:
    """Log a query's answer (a paid amount other than the sale's as a warning: the state
    machine sends that sale to a person) and return it."""
    if isinstance(result, Paid) and result.amount != amount:
        log.warning("%s %s: paid %s fen, the sale is for %s", channel, out_trade_no,
                    result.amount, amount)
    log.info("%s query %s -> %s", channel, out_trade_no, result)
    return result
