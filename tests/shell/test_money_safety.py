# SPDX-License-Identifier: MIT
"""Money safety at the channels (issue: what an audit found), against the real simulator.

Each test failed before its fix: a pay that reaches the channel after a reverse found "no
such trade", Alipay answers whose "/" is escaped, recall / retry_flag that asked for more
than ten calls, and reverse refusals that said nothing definite.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from posd.core import sale as m
from posd.channels.alipay.client import Alipay
from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.core.money import Fen
from posd.core.sale import State
from tests.sandbox import FAST, config, make_config, start_simulator
from tests.shell.test_engine import CHANNELS, PAY_PATH, REVERSE_PATH, Harness, code, trade


@pytest.fixture(name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    sim = start_simulator(pki, alipay=alipay_keys, hang_s=2.0)
    yield sim
    sim.stop()


#: A pay can still reach the channel for 4.5 s after its attempt ended (test scale).
SLOW_NETWORK = replace(FAST, late_trade_s=4.5)


@pytest.fixture(name="slow")
def _slow(tmp_path: Path, sim: Simulator, pki: TestPki,
          alipay_keys: AlipayKeys) -> Iterator[Harness]:
    h = Harness(tmp_path, sim.url, pki, alipay_keys,
                policies={"wechat": SLOW_NETWORK, "alipay": SLOW_NETWORK})
    h.engine.start()
    yield h
    h.engine.stop(timeout=5)
    h.store.close()


@CHANNELS
def test_a_pay_that_reaches_the_channel_after_the_reverse_is_still_reversed(
        slow: Harness, sim: Simulator, channel: str) -> None:
    """The pay's connection is reset at once and the request reaches the ledger 2.8 s later,
    after the deadline's reverse was told "no such trade". Before: reversed, "no money was
    taken", while the customer was charged. Now the reverse is sent again once a late pay
    can no longer arrive, finds the trade and returns the money."""
    sim.add_fault("late", path=PAY_PATH[channel], seconds=2.8)
    sale, _ = slow.engine.create_sale(1250, auth_code=code("0000", channel=channel))
    sale = slow.settle(sale.id, timeout=30)
    events = [e["detail"] for e in slow.store.events(sale.id)]
    assert any("notfound" in d for d in events), events  # the first reverse found nothing
    assert sale.state is State.REVERSED, sale
    assert "no money was taken" not in sale.message
    at_channel = trade(sim, sale)
    assert at_channel["state"] in ("refunded", "reversed", "closed"), at_channel
    assert sim.violations() == []


@CHANNELS
def test_no_such_trade_at_last_means_no_money_was_taken(slow: Harness, sim: Simulator,
                                                        channel: str) -> None:
    """The pay never reaches the channel at all: reversed, nothing taken -- but only after the
    second reverse, once a late pay could no longer arrive."""
    sim.add_fault("drop", path=PAY_PATH[channel], process=False)
    sale, _ = slow.engine.create_sale(1250, auth_code=code("0000", channel=channel))
    sale = slow.settle(sale.id, timeout=30)
    assert sale.state is State.REVERSED and "no money was taken" in sale.message
    assert sale.reverse_attempts >= 2
    assert sale.updated_at >= (sale.last_pay_at or 0) + SLOW_NETWORK.late_trade_s
    assert sim.trade(sale.out_trade_no, channel) is None


@CHANNELS
def test_recall_is_repeated_for_as_long_as_the_channel_asks(tmp_path: Path, sim: Simulator,
                                                            pki: TestPki, alipay_keys: AlipayKeys,
                                                            channel: str) -> None:
    """recall=Y / retry_flag=Y twelve times: the reverse goes on (it used to end in
    needs_attention after ten), backed off as for no answer."""
    h = Harness(tmp_path, sim.url, pki, alipay_keys)
    h.engine.start()
    try:
        auth = code("0008", channel=channel)
        sim.script(auth, "reverse_retry", reverse_retries=12)
        sale, _ = h.engine.create_sale(1250, auth_code=auth)
        sale = h.settle(sale.id, timeout=40)
        assert sale.state is State.REVERSED, sale
        assert sale.recalls == 12
    finally:
        h.engine.stop(timeout=5)
        h.store.close()


@CHANNELS
def test_a_reverse_the_channel_did_not_take_is_sent_again(slow: Harness, sim: Simulator,
                                                          channel: str) -> None:
    """WeChat return_code=FAIL / Alipay 40002 on the reverse: nothing changed at the channel,
    so the reverse is repeated (it used to go to needs_attention at once)."""
    sim.add_fault("http503", path=REVERSE_PATH[channel], count=1)
    sale, _ = slow.engine.create_sale(1250, auth_code=code("0002", channel=channel))
    sale = slow.settle(sale.id, timeout=30)
    assert sale.state is State.REVERSED


def test_an_alipay_answer_with_an_escaped_slash_verifies(sim: Simulator, pki: TestPki,
                                                         alipay_keys: AlipayKeys,
                                                         tmp_path: Path) -> None:
    """Alipay writes "/" as "\\/" and signs the unescaped text: the pay answer is paid, not an
    unverifiable answer that would end in a reverse."""
    cfg = config(make_config(tmp_path, sim.url, pki, alipay=alipay_keys))
    assert cfg.channels.alipay is not None
    client = Alipay.from_config(cfg.channels.alipay)
    try:
        sim.add_fault("slash", path=PAY_PATH["alipay"])
        result = client.pay("SLASH1", Fen(1250), code("0000", channel="alipay"), "Coffee")
        assert isinstance(result, m.Paid), result
        sim.add_fault("slash", path="/gateway.do?method=alipay.trade.query")
        assert isinstance(client.query("SLASH1", Fen(1250)), m.Paid)
    finally:
        client.close()


def test_the_slash_fault_really_escapes_and_signs_unescaped(sim: Simulator) -> None:
    """The fault is what Alipay does: "\\/" on the wire, a signature only over "/"."""
    from posd.core import alipay_wire as wire
    from posd.channels.alipay.simulator import SLASH_STORE_NAME

    fields = {"code": "10000", "msg": "Success", "store_name": SLASH_STORE_NAME}
    assert sim.alipay is not None
    body = wire.render_answer("alipay_trade_pay_response", fields, sim.alipay.private_key,
                              sign_unescaped=True)
    answer = wire.parse_answer(body, "alipay.trade.pay")
    assert "\\/" in answer.raw
    assert not wire.verify_text(answer.raw, answer.sign or "", sim.alipay.private_key.public_key())
    assert answer.verifies(sim.alipay.private_key.public_key())
