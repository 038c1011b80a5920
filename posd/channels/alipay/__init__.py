# SPDX-License-Identifier: MIT
"""Alipay (当面付 trade.pay with a payment code): the channel package.

- ``config.py``          ``[channels.alipay]``
- ``client.py``          :class:`~posd.channels.alipay.client.Alipay`: trade.pay, query and
                         cancel over ``gateway.do``, RSA2, answers as ``posd.core.sale`` values
- ``doctor.py``          ``posd doctor``'s probe query
- ``simulator.py``       the simulator's ``gateway.do``; ``sandbox_keys.py`` its key pairs
- the wire format and code tables are pure: ``posd.core.alipay_wire``,
  ``posd.core.alipay_codes``, ``posd.core.codes``

:data:`SPEC` is what the registry (posd.channels.registry) knows of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posd.channels.alipay.config import AlipayConfig
from posd.channels.spec import ChannelSpec, Till
from posd.core import bills
from posd.core.codes import ALIPAY_RULES, CHANNEL_NAMES
from posd.core.refund import ALIPAY_REFUND_POLICY
from posd.core.sale import ALIPAY_POLICY

if TYPE_CHECKING:
    from posd.channels.alipay.client import Alipay
    from posd.checks import Check
    from posd.channels.simulator.gateway import Gateway, SimulatorContext


def connect(section: AlipayConfig, till: Till) -> Alipay:
    # the client (and cryptography, for RSA2) only for a till that takes Alipay
    from posd.channels.alipay.client import Alipay

    return Alipay.from_config(section, store_id=till.store_id, terminal_id=till.terminal_id)


def checks(section: AlipayConfig, till: Till) -> list[Check]:
    from posd.channels.alipay import doctor

    return doctor.checks(section, till)


def simulate(sandbox: Any, context: SimulatorContext) -> Gateway:
    from posd.channels.alipay.simulator import AlipayGateway  # the simulator: tests and demo

    return AlipayGateway(sandbox, context.ledger, clock=context.clock, url=context.url)


SPEC = ChannelSpec(
    name="alipay", label=CHANNEL_NAMES["alipay"][0], label_zh=CHANNEL_NAMES["alipay"][1],
    code_rules=ALIPAY_RULES, config=AlipayConfig, policy=ALIPAY_POLICY, connect=connect,
    doctor=checks, simulate=simulate, bill=(bills.parse_alipay, "csv.zip"),
    refund_policy=ALIPAY_REFUND_POLICY,
)
