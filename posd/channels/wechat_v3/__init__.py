# SPDX-License-Identifier: MIT
"""WeChat Pay API v3 codepay (付款码支付, v3): the channel package.

- ``config.py``          ``[channels.wechat_v3]`` (off by default: v2 micropay stays the default)
- ``client.py``          :class:`~posd.channels.wechat_v3.client.WechatPayV3`: codepay, query,
                         reverse, refunds and the trade bill, answers as ``posd.core`` values
- ``doctor.py``          ``posd doctor``'s probe query, set-up and platform certificates
- ``simulator.py``       the simulator's v3 endpoints; ``sandbox_keys.py`` their keys
- the signatures are pure: ``posd.core.wechat_v3_wire``

It takes WeChat's payment codes when enabled (``replaces="wechat"``): WeChat codes go to v3,
and v2 (when still enabled) keeps only the refunds, queries and reconciliation of the sales it
made. Its bill is WeChat's one bill of the merchant (the same CSV as v2's).

:data:`SPEC` is what the registry (posd.channels.registry) knows of it.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from typing import TYPE_CHECKING, Any

from posd.channels.spec import ChannelSpec, Till
from posd.channels.wechat_v3.config import WechatV3Config
from posd.core import bills
from posd.core.codes import CHANNEL_NAMES
from posd.core.refund import WECHAT_REFUND_POLICY
from posd.core.sale import WECHAT_POLICY

if TYPE_CHECKING:
    from posd.channels.wechat_v3.client import WechatPayV3
    from posd.checks import Check
    from posd.channels.simulator.gateway import Gateway, SimulatorContext


def connect(section: WechatV3Config, till: Till) -> WechatPayV3:
    # the client (and cryptography) only for a till that takes v3
    from posd.channels.wechat_v3.client import WechatPayV3

    return WechatPayV3.from_config(section, store_id=till.store_id, body_prefix=till.store_name)


def checks(section: WechatV3Config, till: Till) -> list[Check]:
    from posd.channels.wechat_v3 import doctor

    return doctor.checks(section, till)


def simulate(sandbox: Any, context: SimulatorContext) -> Gateway:
    from posd.channels.wechat_v3.simulator import WechatV3Gateway  # tests and demo

    return WechatV3Gateway(sandbox, context.ledger, clock=context.clock, url=context.url,
                           min_reverse_delay_s=context.min_reverse_delay_s)


def parse_bill(data: bytes, day: date) -> bills.Bill:
    """The v3 trade bill: the same file as v2's (channels.md §1.9), under this channel's name."""
    bill = bills.parse_wechat(data, day)
    rows = tuple(dataclasses.replace(row, channel=SPEC.name) for row in bill.rows)
    return dataclasses.replace(bill, channel=SPEC.name, rows=rows)


SPEC = ChannelSpec(
    name="wechat_v3", label=CHANNEL_NAMES["wechat"][0], label_zh=CHANNEL_NAMES["wechat"][1],
    code_rules=(), config=WechatV3Config, policy=WECHAT_POLICY, connect=connect,
    doctor=checks, simulate=simulate, refund_policy=WECHAT_REFUND_POLICY,
    replaces="wechat", bill=(parse_bill, "csv.gz"),
)
