# SPDX-License-Identifier: MIT
"""The channel simulator (DESIGN.md §5): a real HTTP(S) server speaking the channels' wire protocols.

Layout -- one responsibility per module; each channel's gateway lives in its own package
(``posd.channels.wechat.simulator``, ``posd.channels.alipay.simulator``) and is made by the
channel's ``ChannelSpec.simulate``, so another channel is one more package:

- ``server.py``      :class:`Simulator` (life cycle, routing, faults, locking), :func:`run_forever`
- ``transport.py``   the threaded HTTP(S) server, TLS, reading and answering on the wire
- ``gateway.py``     the seam a channel implements (:class:`Request` -> :class:`Reply`)
- ``ledger.py``      trades and scripted behaviour; pure, time passed in as values
- ``faults.py``      transport faults; ``control.py`` the ``/_sim/`` JSON endpoints
- ``certs.py``       a throw-away PKI for HTTPS with client certificates

Typical use::

    with Simulator(wechat=WechatSandbox.example(), confirm_delay_s=0.5) as sim:
        ...  # point posd's channels.wechat.base_url at sim.url
        sim.add_fault("drop", path="/pay/micropay")
        assert not sim.violations()
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from posd.channels.simulator.certs import TestPki, make_test_pki
from posd.channels.simulator.faults import FaultKind
from posd.channels.simulator.ledger import ENDINGS, Outcome
from posd.channels.simulator.server import Simulator, run_forever
from posd.channels.simulator.transport import ServerTls

if TYPE_CHECKING:
    from posd.channels.alipay.sandbox_keys import AlipayKeys, make_alipay_keys
    from posd.channels.alipay.simulator import AlipaySandbox
    from posd.channels.wechat.simulator import WechatSandbox

#: Names kept here for convenience that live in the channel packages: loaded on first use,
#: because those gateways import this package's modules (ledger, gateway).
_FROM_CHANNELS = {
    "AlipayKeys": "posd.channels.alipay.sandbox_keys",
    "make_alipay_keys": "posd.channels.alipay.sandbox_keys",
    "AlipaySandbox": "posd.channels.alipay.simulator",
    "WechatSandbox": "posd.channels.wechat.simulator",
}


def __getattr__(name: str) -> Any:
    if (module := _FROM_CHANNELS.get(name)) is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

__all__ = [
    "ENDINGS",
    "AlipayKeys",
    "AlipaySandbox",
    "FaultKind",
    "Outcome",
    "ServerTls",
    "Simulator",
    "TestPki",
    "WechatSandbox",
    "make_alipay_keys",
    "make_test_pki",
    "run_forever",
]
