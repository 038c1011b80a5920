# SPDX-License-Identifier: MIT
"""Transport faults queued for the next requests to a path: what can go wrong on the wire.

A fault replaces how one answer is delivered; the channel's own scripted behaviour (sandbox
codes) is the ledger's business. ``process`` says whether the request still reaches the
ledger first: a dropped connection after the trade was created is the nasty case (money
moved, the client saw nothing), so it is the default.
"""

from __future__ import annotations

import enum
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass


class FaultKind(enum.StrEnum):
    LATENCY = "latency"  # wait ``seconds``, then answer normally
    DROP = "drop"  # read the request, then reset the connection without answering
    HANG = "hang"  # read the request, then block past the client's read timeout
    HTTP500 = "http500"
    HTTP502 = "http502"
    HTTP503 = "http503"
    GARBAGE = "garbage"  # 200 with a body that is not XML
    BADSIGN = "badsign"  # a well-formed, signed answer whose signature is wrong
    WRONG_TRADE = "wrong_trade"  # a validly signed answer about another out_trade_no
    XML_BOMB = "xml_bomb"  # 200 with a billion-laughs / external-entity document
    #: Alipay: the answer names a store with a "/" in it, which Alipay's JSON writes as "\/"
    #: while Alipay signs the unescaped text (WeChat: answered normally)
    SLASH = "slash"
    #: the request reaches the ledger ``seconds`` late: the connection is reset at once (the
    #: client saw nothing) and the trade appears only then -- a reverse or query meanwhile
    #: finds no such trade
    LATE = "late"


#: kinds that need the gateway's real answer (so the request is always processed).
NEEDS_ANSWER = frozenset({FaultKind.LATENCY, FaultKind.BADSIGN, FaultKind.WRONG_TRADE,
                          FaultKind.SLASH})

HTTP_STATUS = {FaultKind.HTTP500: 500, FaultKind.HTTP502: 502, FaultKind.HTTP503: 503}

#: what a proxy in front of an API answers when its upstream is gone (not XML).
GARBAGE_BODY = (
    b"upstream connect error or disconnect/reset before headers. "
    b"reset reason: connection termination"
)

#: billion laughs plus an external entity: defusedxml must refuse it, expat must never see it.
XML_BOMB_BODY = b"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE xml [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
  <!ENTITY xxe SYSTEM "file:///etc/passwd">
]>
<xml><return_code>SUCCESS</return_code><return_msg>&lol9;</return_msg><openid>&xxe;</openid></xml>
"""


@dataclass(frozen=True, slots=True)
class Fault:
    kind: FaultKind
    #: an endpoint path such as "/pay/micropay", one Alipay method such as
    #: "/gateway.do?method=alipay.trade.pay", or "*" for any
    path: str = "*"
    seconds: float | None = None  # latency: required; hang: None = the simulator's hang_s
    process: bool = True  # drop/hang/http5xx/garbage/xml_bomb: let the ledger see it first

    def __post_init__(self) -> None:
        if self.path != "*" and not self.path.startswith("/"):
            raise ValueError(f"fault path must be '*' or start with '/', got {self.path!r}")
        if self.kind in (FaultKind.LATENCY, FaultKind.LATE) and self.seconds is None:
            raise ValueError(f"a {self.kind} fault needs seconds")
        if self.seconds is not None and not 0 <= self.seconds <= 3600:
            raise ValueError(f"seconds must be within 0..3600, got {self.seconds}")

    def matches(self, *paths: str) -> bool:
        return self.path == "*" or self.path in paths

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "path": self.path,
            "seconds": self.seconds,
            "process": self.process,
        }


def parse_fault(payload: Mapping[str, object]) -> tuple[Fault, int]:
    """``{"kind", "path"?, "count"?, "seconds"?, "process"?}`` -> (fault, count)."""
    unknown = set(payload) - {"kind", "path", "count", "seconds", "process"}
    if unknown:
        raise ValueError(f"unknown fault field(s): {', '.join(sorted(unknown))}")
    kind, path, count = payload.get("kind"), payload.get("path", "*"), payload.get("count", 1)
    seconds, process = payload.get("seconds"), payload.get("process", True)
    if kind not in set(FaultKind):
        raise ValueError(f"kind must be one of {', '.join(FaultKind)}, got {kind!r}")
    if not isinstance(path, str) or not isinstance(process, bool):
        raise ValueError("path must be a string and process a boolean")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be a positive integer, got {count!r}")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, int | float)):
        raise ValueError(f"seconds must be a number, got {seconds!r}")
    fault = Fault(FaultKind(str(kind)), path, None if seconds is None else float(seconds), process)
    return fault, count


@dataclass(slots=True)
class _Queued:
    fault: Fault
    left: int


#: what a random fault may be (``FaultQueue.set_chaos``): each transport failure a client
#: must survive, before and after the ledger saw the request; a hang lasts ``hang_s``.
CHAOS_KINDS: tuple[FaultKind, ...] = (
    FaultKind.DROP, FaultKind.HANG, FaultKind.HTTP500, FaultKind.HTTP502, FaultKind.HTTP503,
    FaultKind.GARBAGE, FaultKind.BADSIGN, FaultKind.WRONG_TRADE,
)


class FaultQueue:
    """Faults waiting for requests, first added first used; one fault per request. Besides
    the queue, a chaos rate gives each request without a queued fault a random one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Queued] = []
        self._chaos_rate = 0.0
        self._chaos_kinds: tuple[FaultKind, ...] = CHAOS_KINDS
        self._random = random.Random()

    def set_chaos(self, rate: float, *, kinds: tuple[FaultKind, ...] = CHAOS_KINDS,
                  seed: int | None = None) -> None:
        """From now on each request gets a random fault of ``kinds`` with probability
        ``rate`` (0 stops it); half of them after the ledger has seen the request."""
        if not 0 <= rate <= 1:
            raise ValueError(f"rate must be within 0..1, got {rate}")
        if not kinds:
            raise ValueError("kinds must name at least one fault kind")
        with self._lock:
            self._chaos_rate, self._chaos_kinds = rate, tuple(kinds)
            if seed is not None:
                self._random.seed(seed)

    @property
    def chaos(self) -> dict[str, object]:
        with self._lock:
            return {"rate": self._chaos_rate, "kinds": [k.value for k in self._chaos_kinds]}

    def add(self, fault: Fault, count: int = 1) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        with self._lock:
            self._queue.append(_Queued(fault, count))

    def take(self, *paths: str) -> Fault | None:
        """The first fault queued for one of ``paths`` (or any path), used up by this request."""
        with self._lock:
            for queued in self._queue:
                if queued.fault.matches(*paths):
                    queued.left -= 1
                    if queued.left == 0:
                        self._queue.remove(queued)
                    return queued.fault
            if self._chaos_rate and self._random.random() < self._chaos_rate:
                kind = self._random.choice(self._chaos_kinds)
                return Fault(kind, "*", None, process=self._random.random() < 0.5)
        return None

    def pending(self) -> list[dict[str, object]]:
        with self._lock:
            return [{**q.fault.to_json(), "count": q.left} for q in self._queue]

    def clear(self) -> None:
        with self._lock:
            self._queue.clear()
