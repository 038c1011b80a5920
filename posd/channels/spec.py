# SPDX-License-Identifier: MIT
"""What a payment channel is to the rest of posd: one :class:`ChannelSpec`.

A channel is one package (``posd.channels.wechat``, ``posd.channels.alipay``) whose
``__init__`` builds its spec: the ``[channels.NAME]`` config model, the client, the payment
code prefixes, the timing policy, the ``posd doctor`` check, the receipt labels and the
simulator gateway. The registry (:mod:`posd.channels.registry`) holds the specs; config,
daemon, engine, doctor, receipts and the simulator read it, so a new channel is a new
package and one :func:`posd.channels.registry.register` call, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

from posd.config_base import ChannelConfig
from posd.core.bills import Bill
from posd.core.codes import PrefixRule
from posd.core.refund import RefundPolicy
from posd.core.sale import Policy

if TYPE_CHECKING:
    from posd.channels import Channel
    from posd.channels.simulator.gateway import Gateway, SimulatorContext
    from posd.checks import Check


@dataclass(frozen=True, slots=True)
class Till:
    """What a channel client may need to know about the till it works for."""

    store_id: str
    terminal_id: str
    store_name: str = ""


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One channel, as the rest of posd sees it."""

    #: the key of ``[channels.NAME]``, stored as ``sale.channel``, shown by the API
    name: str
    #: what receipts, reports and the cashier read: English and Chinese
    label: str
    label_zh: str
    #: its payment codes (``[[codes.rules]]`` replaces every channel's when set)
    code_rules: tuple[PrefixRule, ...]
    #: the model of ``[channels.NAME]``
    config: type[ChannelConfig]
    #: timing: deadline, query schedule, reverse delay and window (posd.core.sale.Policy)
    policy: Policy
    #: ``(section, till) -> client``; raises ConfigError for an unusable key file
    connect: Callable[[Any, Till], Channel]
    #: ``(section, till) -> rows for posd doctor``: a signed probe query, certificates, ...
    doctor: Callable[[Any, Till], list[Check]]
    #: ``(sandbox, context) -> gateway`` for the channel simulator (None: it has none)
    simulate: Callable[[Any, SimulatorContext], Gateway] | None = None
    #: refund timing, window and count limit (posd.core.refund.RefundPolicy)
    refund_policy: RefundPolicy = RefundPolicy()
    #: another channel of the same merchant account whose payment codes this one takes
    #: when enabled (WeChat Pay v3 takes v2's): its codes are routed here, and this
    #: channel's bill covers that channel's sales too (one account, one bill)
    replaces: str = ""
    #: the daily bill: ``(bytes, day) -> Bill`` and the kept file's extension (None: posd
    #: does not reconcile this channel)
    bill: tuple[Callable[[bytes, date], Bill], str] | None = None
