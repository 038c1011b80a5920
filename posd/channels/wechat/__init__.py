# SPDX-License-Identifier: MIT
"""WeChat Pay (v2, 付款码 micropay): the channel package.

- ``config.py``          ``[channels.wechat]``
- ``client.py``          :class:`~posd.channels.wechat.client.WechatPay`: micropay, orderquery,
                         reverse (mutual TLS), answers as ``posd.core.sale`` values
- ``doctor.py``          ``posd doctor``'s probe query and certificate check
- ``simulator.py``       the simulator's WeChat gateway; ``simulator_bill.py`` its daily bill
- the wire format and code tables are pure: ``posd.core.wechat_wire``, ``posd.core.codes``

:data:`SPEC` is what the registry (posd.channels.registry) knows of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from posd.channels.spec import ChannelSpec, Till
from posd.channels.wechat.config import WechatConfig
from posd.core import bills
from posd.core.codes import CHANNEL_NAMES, WECHAT_RULES
from posd.core.refund import WECHAT_REFUND_POLICY
from posd.core.sale import WECHAT_POLICY

if TYPE_CHECKING:
    from posd.channels.wechat.client import WechatPay
    from posd.checks import Check
    from posd.channels.simulator.gateway import Gateway, SimulatorContext


def connect(section: WechatConfig, till: Till) -> WechatPay:
    # the client only for a till that takes WeChat v2
    from posd.channels.wechat.client import WechatPay

    return WechatPay.from_config(section, device_info=till.terminal_id, body_prefix=till.store_name)


def checks(section: WechatConfig, till: Till) -> list[Check]:
    from posd.channels.wechat import doctor

    return doctor.checks(section, till)


def simulate(sandbox: Any, context: SimulatorContext) -> Gateway:
    from posd.channels.wechat.simulator import WechatGateway  # the simulator: tests and demo

    return WechatGateway(sandbox, context.ledger, clock=context.clock,
                         require_client_cert=context.require_client_cert,
                         min_reverse_delay_s=context.min_reverse_delay_s)


SPEC = ChannelSpec(
    name="wechat", label=CHANNEL_NAMES["wechat"][0], label_zh=CHANNEL_NAMES["wechat"][1],
    code_rules=WECHAT_RULES, config=WechatConfig, policy=WECHAT_POLICY, connect=connect,
    doctor=checks, simulate=simulate, bill=(bills.parse_wechat, "csv.gz"),
    refund_policy=WECHAT_REFUND_POLICY,
)
