# SPDX-License-Identifier: MIT
"""The channel simulator (DESIGN.md §5): a real HTTP(S) server speaking the channels' wire protocols.

Layout -- one responsibility per module, so another channel is one more gateway module:

- ``server.py``      :class:`Simulator` (life cycle, routing, faults, locking), :func:`run_forever`
- ``transport.py``   the threaded HTTP(S) server, TLS, reading and answering on the wire
- ``gateway.py``     the seam a channel implements (:class:`Request` -> :class:`Reply`)
- ``wechat.py``      WeChat Pay v2 endpoints; ``wechat_bill.py`` its daily bill
- ``alipay.py``      Alipay's ``gateway.do`` (trade.pay/query/cancel, RSA2); ``alipay_keys.py``
                     the app's and the simulator's key pairs
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

from posd.channels.simulator.alipay import AlipaySandbox
from posd.channels.simulator.alipay_keys import AlipayKeys, make_alipay_keys
from posd.channels.simulator.certs import TestPki, make_test_pki
from posd.channels.simulator.faults import FaultKind
from posd.channels.simulator.ledger import ENDINGS, Outcome
from posd.channels.simulator.server import Simulator, run_forever
from posd.channels.simulator.transport import ServerTls
from posd.channels.simulator.wechat import WechatSandbox

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
