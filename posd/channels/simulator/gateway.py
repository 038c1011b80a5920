# SPDX-License-Identifier: MIT
"""The seam between the HTTP plumbing (``server.py``) and one channel's endpoints.

A gateway owns a set of paths and turns a :class:`Request` into a :class:`Reply`. It never
touches sockets, threads or faults: the server reads the request, takes the lock, calls
:meth:`Gateway.handle`, then delivers the reply (or a fault instead of it). The only
channel-specific faults, a bad signature and an answer about another trade, are asked of the
gateway through :meth:`Gateway.tamper`, because only it knows how its answers are signed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from posd.channels.simulator.ledger import Ledger

Tamper = Literal["badsign", "wrong_trade", "slash"]


@dataclass(frozen=True, slots=True)
class Request:
    method: str  # "GET" or "POST"
    path: str  # without the query string
    query: str
    body: bytes
    #: None over plain HTTP; over HTTPS whether the client presented a certificate that
    #: verified against the configured client CA.
    client_cert: bool | None = None
    #: the request's headers, names in lower case (WeChat v3's Authorization)
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    #: the channel's scripted behaviour: deliver this answer only after hanging past the
    #: client's read timeout (sandbox code 0006).
    hang: bool = False
    #: more headers (WeChat v3's Wechatpay-Signature and friends)
    headers: Mapping[str, str] = field(default_factory=dict)


class Gateway(Protocol):
    """One channel's endpoints. Called with the simulator's lock held."""

    name: str

    def handles(self, path: str) -> bool:
        """Whether ``path`` is one of this gateway's endpoints."""
        ...

    def handle(self, request: Request) -> Reply:
        """Answer ``request`` as the channel would, updating the ledger."""
        ...

    def fault_paths(self, request: Request) -> tuple[str, ...]:
        """The fault paths that ``request`` answers to: its path, and for a gateway that
        serves several calls on one path (Alipay's ``/gateway.do``) ``path?method=...``."""
        ...

    def tamper(self, reply: Reply, kind: Tamper) -> Reply:
        """``reply`` with a wrong signature, or about another trade (still validly signed)."""
        ...


@dataclass(frozen=True, slots=True)
class SimulatorContext:
    """What the simulator gives a channel's gateway factory (``ChannelSpec.simulate``): the
    shared ledger and clock, and the server's settings a gateway may follow."""

    ledger: Ledger
    clock: Callable[[], float]
    #: over HTTPS: refuse calls that need the merchant certificate when none was presented
    require_client_cert: bool = False
    #: WeChat's "no reverse within 15 s of the pay" as the simulated channel enforces it
    min_reverse_delay_s: float = 15.0
    #: the server's own base URL once it listens (Alipay's bill download URL points at it)
    url: Callable[[], str] = lambda: ""
