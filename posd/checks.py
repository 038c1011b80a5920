# SPDX-License-Identifier: MIT
"""One row of ``posd doctor``'s table, and the verdict on a channel's probe query.

A leaf module: the doctor (posd.doctor, posd.doctor_checks) and each channel package's own
check (``posd.channels.NAME.doctor``) build the same rows.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass

from posd.core.sale import ChannelResult, NotFound, Unknown


class Result(enum.StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Check:
    """One row of the table: what was checked, how it went, and what to do about it."""

    name: str
    result: Result
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Check:
    return Check(name, Result.OK, detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name, Result.WARN, detail, fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name, Result.FAIL, detail, fix)


def skip(name: str, detail: str) -> Check:
    return Check(name, Result.SKIP, detail)


def probe_trade_no() -> str:
    """An out_trade_no posd never makes ('-' is not in its alphabet of store ids): 32 chars."""
    return f"posd-doctor-{secrets.token_hex(10)}"


def channel_verdict(name: str, result: ChannelResult, fix: str) -> Check:
    """A probe query's answer: "no such order", signed, means TLS and credentials work."""
    if isinstance(result, NotFound):
        return ok(name, "TLS and credentials work: a signed query for an order that does not "
                  f"exist was answered, signed: {result.detail or 'no such order'}")
    if isinstance(result, Unknown) and not result.may_have_arrived:
        return fail(name, f"cannot connect: {result.detail}",
                    "check the URL, DNS, the network/firewall and the CA bundle (ca_file)")
    detail = result.detail if isinstance(result, Unknown) else repr(result)
    return fail(name, f"the query was not answered as expected: {detail}", fix)
