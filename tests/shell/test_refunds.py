# SPDX-License-Identifier: MIT
"""Refunds driven by the real engine, clients and SQLite against the simulator (DESIGN §9):
every sandbox refund outcome on both channels, faults on the refund call, partial refunds
adding up, a refund racing another, and a restart with a refund in flight -- with exactly
one refund at the channel per refund record, and the ledger and the store agreeing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.core.errors import ConflictError, InputError
from posd.core.refund import Refund, RefundPolicy, RefundState
from posd.core.sale import Sale, State
from posd.engine import Engine
from posd.daemon import build_channels
from tests.sandbox import start_simulator
from tests.shell.test_engine import CHANNELS, Harness, code
from tests.waiting import FINAL_S

#: Refund timing scaled for tests (the real first query waits a minute on WeChat).
FAST_REFUND = RefundPolicy(first_query_s=0.2, query_backoff_s=(0.2, 0.4), retry_delay_s=0.1)
REFUND_PATH = {"wechat": "/secapi/pay/refund",
               "alipay": "/gateway.do?method=alipay.trade.refund"}


class RefundHarness(Harness):
    def _engine(self) -> Engine:
        return Engine(self.cfg, self.store, build_channels(self.cfg), policies=self.policies,
                      refund_policies={"wechat": FAST_REFUND, "alipay": FAST_REFUND})

    def paid(self, channel: str, amount: int = 5000, n: int = 0) -> Sale:
        sale, _ = self.engine.create_sale(amount, auth_code=code("0000", n, channel))
        sale = self.settle(sale.id)
        assert sale.state is State.PAID, sale
        return sale

    def refund_final(self, refund_id: int, timeout: float = FINAL_S) -> Refund:
        refund = self.engine.get_refund(refund_id)
        deadline = threading.Event()
        timer = threading.Timer(timeout, deadline.set)
        timer.start()
        try:
            while not refund.final and not deadline.is_set():
                refund = self.engine.wait_for_refund(refund_id, refund.updated_at, 1.0)
        finally:
            timer.cancel()
        assert refund.final, f"refund {refund_id} still {refund.state}: {refund.message}"
        return refund


@pytest.fixture(name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    sim = start_simulator(pki, alipay=alipay_keys, hang_s=2.0, refund_delay_s=0.6)
    yield sim
    sim.stop()


@pytest.fixture(name="h")
def _harness(tmp_path: Path, sim: Simulator, pki: TestPki,
             alipay_keys: AlipayKeys) -> Iterator[RefundHarness]:
    h = RefundHarness(tmp_path, sim.url, pki, alipay_keys)
    h.engine.start()
    yield h
    h.engine.stop(timeout=5)
    h.store.close()


def at_channel(sim: Simulator, sale: Sale) -> list[dict[str, object]]:
    trade = sim.trade(sale.out_trade_no, sale.channel or "wechat")
    assert trade is not None
    return list(trade["refunds"])  # type: ignore[arg-type]


#: last two digits of the refund amount in fen -> how it ends (DESIGN §9)
ENDINGS = {"00": "refunded", "01": "refunded", "02": "needs_attention", "03": "refund_failed",
           "05": "refunded", "06": "refunded"}


@CHANNELS
@pytest.mark.parametrize("ending", sorted(ENDINGS))
def test_every_sandbox_refund_ends_as_the_channel_says(h: RefundHarness, sim: Simulator,
                                                       channel: str, ending: str) -> None:
    sale = h.paid(channel)
    refund, created = h.engine.refund(sale.id, int(f"12{ending}"), "returned a mug")
    assert created and refund.state is RefundState.REFUNDING
    refund = h.refund_final(refund.id)
    assert refund.state.value == ENDINGS[ending], refund
    entries = at_channel(sim, sale)
    if ending == "03":
        assert entries == []  # refused: nothing moved, nothing recorded at the channel
    else:
        assert [e["out_refund_no"] for e in entries] == [refund.out_refund_no]  # exactly one
        assert entries[0]["amount"] == refund.amount
    if refund.state is RefundState.REFUNDED:
        assert entries[0]["status"] == "success" and refund.refunded_at is not None
    health = h.engine.health()
    if refund.state is RefundState.NEEDS_ATTENTION:  # a person must finish it: health says so
        assert health["refunds_need_attention"] == [refund.id]
        assert f"1 refund(s) need attention: {refund.id}" in health["degraded"]
    else:
        assert health["refunds_need_attention"] == [] and health["refunds_in_flight"] == 0
    assert sim.violations() == []
    events = [e["state"] for e in h.store.refund_events(refund.id)]
    assert events[0] == "refunding" and events[-1] == refund.state.value


@CHANNELS
@pytest.mark.parametrize("fault", ["drop", "drop-unprocessed", "http500", "garbage",
                                   "badsign", "hang"])
def test_a_fault_on_the_refund_never_makes_two_refunds_or_loses_one(
        h: RefundHarness, sim: Simulator, channel: str, fault: str) -> None:
    sale = h.paid(channel)
    kind, _, unprocessed = fault.partition("-")
    sim.add_fault(kind, path=REFUND_PATH[channel], process=not unprocessed)
    refund, _ = h.engine.refund(sale.id, 1200, "wrong amount charged")
    refund = h.refund_final(refund.id)
    assert refund.state is RefundState.REFUNDED, refund
    entries = at_channel(sim, sale)
    assert len(entries) == 1 and entries[0]["out_refund_no"] == refund.out_refund_no
    assert entries[0]["amount"] == 1200 and entries[0]["status"] == "success"
    assert sim.violations() == []


@CHANNELS
def test_partial_refunds_add_up_and_never_exceed_the_sale(h: RefundHarness, sim: Simulator,
                                                         channel: str) -> None:
    sale = h.paid(channel, 5000)
    amounts = []
    for amount in (1000, 1500, None):
        refund, _ = h.engine.refund(sale.id, amount, "partial return")
        amounts.append(int(h.refund_final(refund.id).amount))
    assert amounts == [1000, 1500, 2500]
    with pytest.raises(ConflictError, match="refunded in full"):
        h.engine.refund(sale.id, 1, "one more")
    entries = at_channel(sim, sale)
    assert sorted(int(e["amount"]) for e in entries) == [1000, 1500, 2500]  # type: ignore[call-overload]
    assert len({e["out_refund_no"] for e in entries}) == 3
    assert h.store.refunded_amounts([sale.id]) == {sale.id: 5000}


def test_refunds_are_refused_with_a_sentence_before_anything_is_sent(
        h: RefundHarness, sim: Simulator) -> None:
    sale = h.paid("wechat", 1000)
    with pytest.raises(ConflictError, match="more than is left"):
        h.engine.refund(sale.id, 1001, "too much")
    with pytest.raises(InputError, match="needs a reason"):
        h.engine.refund(sale.id, 100, "  ")
    declined, _ = h.engine.create_sale(1000, auth_code=code("0003"))
    declined = h.settle(declined.id)
    with pytest.raises(ConflictError, match="only a paid sale"):
        h.engine.refund(declined.id, None, "x")
    assert at_channel(sim, sale) == [] and h.store.find_refunds() == []


def test_a_refund_racing_another_is_refused(h: RefundHarness, sim: Simulator) -> None:
    """Two managers refund the same sale at the same moment: the store decides inside one
    transaction, so one refund is made and the other is told one is in flight."""
    sale = h.paid("wechat", 5000)
    sim.script_refund(sale.out_trade_no, "processing")  # keeps the first in flight a while
    start = threading.Barrier(2)
    results: list[object] = []

    def refund() -> None:
        start.wait()
        try:
            results.append(h.engine.refund(sale.id, 3000, "returned")[0])
        except ConflictError as err:
            results.append(err)

    threads = [threading.Thread(target=refund) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    made = [r for r in results if isinstance(r, Refund)]
    refused = [r for r in results if isinstance(r, ConflictError)]
    assert len(made) == 1 and len(refused) == 1, results
    assert "in flight" in str(refused[0]) or "more than is left" in str(refused[0])
    assert h.refund_final(made[0].id).state is RefundState.REFUNDED
    assert len(at_channel(sim, sale)) == 1


@CHANNELS
def test_a_refund_in_flight_is_finished_after_a_restart(h: RefundHarness, sim: Simulator,
                                                        channel: str) -> None:
    """The refund's answer hangs (06) and the engine stops before it comes: after the restart
    the same refund is asked again under the same number, and the channel has one."""
    sale = h.paid(channel)
    refund, _ = h.engine.refund(sale.id, 1206, "returned")
    h.restart()
    refund = h.refund_final(refund.id)
    assert refund.state is RefundState.REFUNDED
    entries = at_channel(sim, sale)
    assert [e["out_refund_no"] for e in entries] == [refund.out_refund_no]


def test_a_person_resolves_a_sale_and_may_then_refund_it(h: RefundHarness) -> None:
    sale = h.paid("wechat", 3000)
    stuck = h.store.save(replace(sale, state=State.NEEDS_ATTENTION))  # as a mismatch leaves it
    with pytest.raises(ConflictError, match="resolve it first"):
        h.engine.refund(stuck.id, None, "x")
    with pytest.raises(InputError, match="paid or reversed"):
        h.engine.resolve(stuck.id, "declined", "checked")
    resolved = h.engine.resolve(stuck.id, "paid", "seen paid in the merchant portal")
    assert resolved.state is State.PAID and "Resolved by a manager" in resolved.message
    with pytest.raises(ConflictError, match="only a sale that needs attention"):
        h.engine.resolve(stuck.id, "reversed", "again")
    refund, _ = h.engine.refund(stuck.id, None, "the customer changed their mind")
    assert h.refund_final(refund.id).state is RefundState.REFUNDED
    assert [e["state"] for e in h.store.events(stuck.id)][-2:] == ["needs_attention", "paid"]
