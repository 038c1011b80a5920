# SPDX-License-Identifier: MIT
"""The engine driving real sales through the real WeChat and Alipay clients against the
simulator (HTTPS, merchant client certificate on /secapi/, RSA2 on gateway.do), with a real
SQLite file. The store takes both channels unless a test says otherwise; tests marked with
``CHANNELS`` run once per channel.

Timing is scaled on both sides: the simulator refuses a WeChat reverse earlier than 1 s after
the pay call (WeChat: 15 s) and posd's policy waits at least that long (tests/sandbox.py);
Alipay's cancel has no such rule.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from posd.core import sale as m
from posd.channels import Channel
from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.config import Config
from posd.daemon import build_channels
from posd.engine import Engine
from posd.core.errors import CodeError, ConflictError
from posd.core.money import Fen
from posd.core.sale import Action, Sale, State
from posd.store import Store
from tests.waiting import engine_final
from tests.sandbox import FAST, FAST_ALIPAY, MIN_REVERSE, config, make_config, start_simulator

#: + 5 digits; the last four pick the simulator's behaviour (Alipay: 18 digits too, 25-30)
PREFIX = {"wechat": "1345678901234", "alipay": "2812345678901"}
CHANNELS = pytest.mark.parametrize("channel", ["wechat", "alipay"])
#: the simulator's call counter for a reverse, and fault paths, per channel
REVERSE_CALL = {"wechat": "reverse", "alipay": "cancel"}
PAY_PATH = {"wechat": "/pay/micropay", "alipay": "/gateway.do?method=alipay.trade.pay"}
REVERSE_PATH = {"wechat": "/secapi/pay/reverse", "alipay": "/gateway.do?method=alipay.trade.cancel"}


def code(ending: str, n: int = 0, channel: str = "wechat") -> str:
    return f"{PREFIX[channel]}{n}{ending}"


@pytest.fixture(name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    sim = start_simulator(pki, alipay=alipay_keys, hang_s=2.0)
    yield sim
    sim.stop()


def channel_for(cfg: Config, name: str) -> Channel:
    """One channel client built from config, as the daemon builds it."""
    return build_channels(cfg)[name]


class Harness:
    def __init__(self, tmp: Path, url: str, pki: TestPki, alipay: AlipayKeys | None = None,
                 policies: dict[str, m.Policy] | None = None, **cfg: object) -> None:
        self.cfg = config(make_config(tmp, url, pki, alipay=alipay, **cfg))  # type: ignore[arg-type]
        self.policies = policies or {"wechat": FAST, "alipay": FAST_ALIPAY}
        self.tmp = tmp
        self.store = Store.open(self.cfg.database.path)
        self.finals: list[Sale] = []
        self.engine = self._engine()

    def _engine(self) -> Engine:
        engine = Engine(self.cfg, self.store, build_channels(self.cfg), policies=self.policies)
        engine.add_listener(lambda s: self.finals.append(s) if s.final else None)
        return engine

    def restart(self) -> Engine:
        self.engine.stop()
        self.store.close()
        self.store = Store.open(self.cfg.database.path)
        self.engine = self._engine()
        self.engine.start()
        return self.engine

    def settle(self, sale_id: int, timeout: float = 20.0) -> Sale:
        return engine_final(self.engine, sale_id, timeout)


@pytest.fixture(name="h")
def _harness(tmp_path: Path, sim: Simulator, pki: TestPki,
             alipay_keys: AlipayKeys) -> Iterator[Harness]:
    h = Harness(tmp_path, sim.url, pki, alipay_keys)
    h.engine.start()
    yield h
    h.engine.stop(timeout=5)
    h.store.close()


def pay(h: Harness, auth_code: str, amount: int = 1250, **kw: object) -> Sale:
    sale, created = h.engine.create_sale(amount, auth_code=auth_code, **kw)  # type: ignore[arg-type]
    assert created and sale.state is State.PAYING
    return h.settle(sale.id)


def trade(sim: Simulator, sale: Sale) -> dict:
    t = sim.trade(sale.out_trade_no, sale.channel or "wechat")
    assert t is not None
    return t


#: (channel, ending) -> decline_code; the simulator's scripted failures (DESIGN.md §5)
DECLINES = {
    ("wechat", "0003"): "NOTENOUGH", ("wechat", "0004"): "AUTHCODEEXPIRE",
    ("alipay", "0003"): "ACQ.BUYER_BALANCE_NOT_ENOUGH",
    ("alipay", "0004"): "ACQ.PAYMENT_AUTH_CODE_INVALID",
}  # fmt: skip
#: (channel, ending) -> Sale.refunded of a reversed sale: only Alipay's cancel says (action)
REFUNDED = {("alipay", "0002"): False, ("alipay", "0007"): True, ("alipay", "0008"): False}


@CHANNELS
@pytest.mark.parametrize(
    ("ending", "state"),
    [
        ("0000", State.PAID),
        ("0001", State.PAID),
        ("0002", State.REVERSED),
        ("0003", State.DECLINED),
        ("0004", State.DECLINED),
        ("0005", State.PAID),
        ("0006", State.PAID),
        ("0007", State.REVERSED),
        ("0008", State.REVERSED),
    ],
)
def test_every_sandbox_code(h: Harness, sim: Simulator, channel: str, ending: str,
                            state: State) -> None:
    sale = pay(h, code(ending, channel=channel))
    assert (sale.channel, sale.state) == (channel, state)
    assert sale.decline_code == DECLINES.get((channel, ending))
    assert sale.auth_code_masked == f"{PREFIX[channel][:4]}…{ending}"
    if state is State.PAID:
        assert sale.channel_trade_no == trade(sim, sale)["channel_trade_no"]
    if state is State.REVERSED:
        assert sale.refunded is REFUNDED.get((channel, ending))
    assert not sim.violations()
    assert h.finals[-1].id == sale.id and h.finals[-1].state is state


def test_confirming_is_shown_while_the_customer_confirms(h: Harness) -> None:
    sale, _ = h.engine.create_sale(500, auth_code=code("0001"))
    seen = {h.engine.wait_for_change(sale.id, sale.updated_at, 5).state}
    assert h.settle(sale.id).state is State.PAID
    states = [e["state"] for e in h.store.events(sale.id)]
    assert "confirming" in states and states[-1] == "paid"
    assert seen & {State.PAYING, State.CONFIRMING, State.PAID}


@CHANNELS
def test_late_payment_is_refunded_by_the_reverse(h: Harness, sim: Simulator,
                                                 channel: str) -> None:
    sale = pay(h, code("0007", channel=channel))
    events = [e["kind"] for e in trade(sim, sale)["events"]]
    assert sale.state is State.REVERSED
    assert any("refund" in str(e) for e in events), events
    if channel == "alipay":  # action=refund: the sale says the money went back
        assert sale.refunded is True and "returned to the customer" in sale.message


@CHANNELS
def test_reverse_is_repeated_while_recall(h: Harness, sim: Simulator, channel: str) -> None:
    sale = pay(h, code("0008", channel=channel))
    assert sale.state is State.REVERSED and sale.recalls == 2
    assert trade(sim, sale)["calls"][REVERSE_CALL[channel]] == 3


def test_reverse_never_before_the_minimum_delay(h: Harness, sim: Simulator) -> None:
    sale, _ = h.engine.create_sale(100, auth_code=code("0002"))
    h.engine.cancel(sale.id)
    sale = h.settle(sale.id)
    assert sale.state is State.REVERSED
    assert not sim.violations()
    reversing = [e for e in h.store.events(sale.id) if e["action"] == "reverse"]
    assert reversing and reversing[0]["at"] - (sale.pay_sent_at or 0) >= MIN_REVERSE


@CHANNELS
def test_channel_unreachable_is_declined_without_money(tmp_path: Path, pki: TestPki,
                                                      alipay_keys: AlipayKeys,
                                                      channel: str) -> None:
    sim = start_simulator(pki)
    url = sim.url
    sim.stop()  # a closed port: every connect is refused
    h = Harness(tmp_path, url, pki, alipay_keys)
    h.engine.start()
    try:
        sale = pay(h, code("0000", channel=channel))
        assert sale.state is State.DECLINED and sale.decline_code == "CHANNEL_UNREACHABLE"
        assert sale.pay_attempts > 1  # the pay was sent again, same out_trade_no
    finally:
        h.engine.stop(timeout=5)


@CHANNELS
@pytest.mark.parametrize("fault", ["drop", "http500", "garbage", "badsign", "wrong_trade",
                                   "xml_bomb", "hang"])
def test_fault_on_pay_is_unknown_then_queried(h: Harness, sim: Simulator, fault: str,
                                              channel: str) -> None:
    sim.add_fault(fault, path=PAY_PATH[channel], seconds=2.0)
    sale = pay(h, code("0000", channel=channel))
    assert sale.state is State.PAID  # the trade was processed; the query finds it
    assert sale.pay_attempts == 1 and sale.queries >= 1
    assert sim.faults() == []


@CHANNELS
def test_faults_on_reverse_are_retried(h: Harness, sim: Simulator, channel: str) -> None:
    sim.add_fault("http503", path=REVERSE_PATH[channel], count=2)
    sale = pay(h, code("0002", channel=channel))
    assert sale.state is State.REVERSED and sale.reverse_attempts == 3


def _paying(h: Harness, channel: str) -> Sale:
    """A sale committed as paying (write-ahead done), as a crash before the send leaves it."""
    now = time.time()

    def make(seq: int) -> Sale:
        s = m.new_sale(m.make_out_trade_no("S001", "T01", now, seq), Fen(300), now)
        policy = FAST if channel == "wechat" else FAST_ALIPAY
        return m.start_pay(s, channel, f"{PREFIX[channel][:4]}…0000", now, policy)

    sale, _ = h.store.create_sale(make, order_ref=None, idempotency_key=None)
    return sale


@CHANNELS
def test_crash_after_write_ahead_before_send_is_resolved(h: Harness, sim: Simulator,
                                                         channel: str) -> None:
    """A sale committed as paying whose pay never left: resumed as a query, then reversed."""
    h.engine.stop(timeout=5)
    sale = _paying(h, channel)
    h.restart()
    sale = h.settle(sale.id)
    assert sale.state is State.REVERSED  # no trade at the channel; nothing taken
    assert sim.trade(sale.out_trade_no, channel) is None


@CHANNELS
def test_crash_after_send_finds_the_payment(h: Harness, sim: Simulator, channel: str) -> None:
    """A sale whose pay reached the channel before the crash: recovery finds it paid."""
    h.engine.stop(timeout=5)
    sale = _paying(h, channel)
    other = channel_for(h.cfg, channel)
    paid = other.pay(sale.out_trade_no, Fen(300), code("0000", channel=channel), "x")
    assert isinstance(paid, m.Paid)
    other.close()
    h.restart()
    assert h.settle(sale.id).state is State.PAID


def test_one_paid_sale_per_order(h: Harness) -> None:
    assert pay(h, code("0000", 1), order_ref="R1").state is State.PAID
    with pytest.raises(ConflictError, match="already paid"):
        h.engine.create_sale(1250, order_ref="R1", auth_code=code("0000", 2))


def test_declined_order_can_be_paid_with_another_code(h: Harness) -> None:
    first = pay(h, code("0003", 1), order_ref="R2")
    second = pay(h, code("0000", 2), order_ref="R2")
    assert (first.state, second.state) == (State.DECLINED, State.PAID)
    assert first.out_trade_no != second.out_trade_no


def test_bad_code_is_refused_before_anything_is_recorded(h: Harness, sim: Simulator) -> None:
    with pytest.raises(CodeError):
        h.engine.create_sale(100, auth_code="12345")
    with pytest.raises(CodeError, match="UnionPay is not accepted"):
        h.engine.create_sale(100, auth_code="6212345678901234567")
    assert h.store.find() == [] and sim.ledger() == []


def test_both_channels_side_by_side(h: Harness, sim: Simulator) -> None:
    """The code's prefix picks the channel; one order may be paid by the other channel."""
    declined = pay(h, code("0003", 1, "wechat"), order_ref="R9")
    paid = pay(h, code("0000", 1, "alipay"), order_ref="R9")
    assert (declined.channel, declined.state) == ("wechat", State.DECLINED)
    assert (paid.channel, paid.state) == ("alipay", State.PAID)
    assert trade(sim, paid)["state"] == "paid"
    assert {t["channel"] for t in sim.ledger()} == {"wechat", "alipay"}
    assert h.engine.health()["channels"] == ["wechat", "alipay"]


@pytest.mark.parametrize(("enabled", "refused", "label"),
                         [("wechat", "alipay", "Alipay"), ("alipay", "wechat", "WeChat Pay")])
def test_a_code_for_a_channel_not_enabled_is_refused_before_anything_is_sent(
    tmp_path: Path, sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys, enabled: str,
    refused: str, label: str
) -> None:
    h = Harness(tmp_path, sim.url, pki, alipay_keys if enabled == "alipay" else None,
                wechat=enabled == "wechat")
    h.engine.start()
    try:
        assert h.engine.enabled_channels == (enabled,)
        with pytest.raises(CodeError, match=f"{label} is not accepted at this till"):
            h.engine.create_sale(100, auth_code=code("0000", channel=refused))
        h.engine.create_sale(100)
        scan = h.engine.scan(code("0000", 1, refused), time.monotonic())
        assert not scan.accepted and f"{label} is not accepted" in scan.reason
        assert sim.ledger() == [] and sim.calls() == {}  # nothing reached any channel
        assert pay(h, code("0000", 2, enabled)).state is State.PAID
    finally:
        h.engine.stop(timeout=5)
        h.store.close()


class TestScans:
    def test_scan_without_a_waiting_sale_is_refused_not_queued(self, h: Harness) -> None:
        outcome = h.engine.scan(code("0000"), time.monotonic())
        assert not outcome.accepted and "no sale is waiting" in outcome.reason
        sale, _ = h.engine.create_sale(100)
        assert h.engine.get(sale.id).state is State.AWAITING_CODE  # the refused scan is gone
        assert h.engine.health()["last_scan"]["code"] == "1345…0000"

    def test_scan_pays_the_waiting_sale(self, h: Harness) -> None:
        sale, _ = h.engine.create_sale(100)
        outcome = h.engine.scan(code("0000"), time.monotonic())
        assert outcome.accepted and outcome.sale is not None and outcome.sale.id == sale.id
        assert h.settle(sale.id).state is State.PAID

    def test_double_read_is_ignored(self, h: Harness) -> None:
        h.engine.create_sale(100)
        t = time.monotonic()
        assert h.engine.scan(code("0001"), t).accepted
        second = h.engine.scan(code("0001"), t + 0.1)
        assert not second.accepted and "twice" in second.reason

    def test_scan_during_a_sale_in_flight_is_refused(self, h: Harness) -> None:
        first, _ = h.engine.create_sale(100)
        assert h.engine.scan(code("0001", 1), time.monotonic()).accepted
        second, _ = h.engine.create_sale(200)  # the first no longer waits for a code
        refused = h.engine.scan(code("0000", 2), time.monotonic())
        assert not refused.accepted and "in progress" in refused.reason
        assert h.engine.get(second.id).state is State.AWAITING_CODE

    def test_one_sale_waits_for_a_code_at_a_time(self, h: Harness) -> None:
        """DESIGN §2 rule 7: a second sale without a code while one waits is refused (it used
        to be accepted, and the next scan paid the newest, which the cashier had not keyed)."""
        first, _ = h.engine.create_sale(100)
        with pytest.raises(ConflictError, match=f"sale {first.id} is already waiting"):
            h.engine.create_sale(200)
        sale, _ = h.engine.create_sale(300, auth_code=code("0000", 3))  # with a code: fine
        assert h.settle(sale.id).state is State.PAID
        outcome = h.engine.scan(code("0000", 4), time.monotonic())
        assert outcome.accepted and outcome.sale is not None and outcome.sale.id == first.id

    @pytest.mark.parametrize(("misscan", "says"), [
        ("", "nothing was read"),
        ("6901234567892", "product barcode"),
        ("1345678", "7-digit code is not"),
    ])
    def test_a_misscan_is_refused_and_the_sale_keeps_waiting(self, h: Harness, misscan: str,
                                                             says: str) -> None:
        sale, _ = h.engine.create_sale(100)
        outcome = h.engine.scan(misscan, time.monotonic())
        assert not outcome.accepted and says in outcome.reason
        assert h.engine.get(sale.id).state is State.AWAITING_CODE
        assert h.engine.scan(code("0000"), time.monotonic()).accepted
        assert h.settle(sale.id).state is State.PAID

    def test_a_forgotten_sale_is_cancelled_after_awaiting_code_s(self, h: Harness) -> None:
        sale, _ = h.engine.create_sale(100)
        h.engine._housekeeping()  # noqa: SLF001 - the job APScheduler runs every 30 s
        assert h.engine.get(sale.id).state is State.AWAITING_CODE  # not yet
        later = h.cfg.payment.awaiting_code_s + 1
        h.engine._clock = lambda: time.time() + later  # noqa: SLF001
        h.engine._housekeeping()  # noqa: SLF001
        expired = h.engine.get(sale.id)
        assert expired.state is State.CANCELLED and "no payment code" in expired.message
        assert h.engine.create_sale(200)[1]  # another may wait now

    def test_stale_and_bad_codes(self, h: Harness) -> None:
        h.engine.create_sale(100)
        stale = h.engine.scan(code("0000"), time.monotonic() - 60)
        assert not stale.accepted and "too long ago" in stale.reason
        bad = h.engine.scan("hello", time.monotonic())
        assert not bad.accepted and "not a payment code" in bad.reason


def test_cancel_awaiting_code(h: Harness) -> None:
    sale, _ = h.engine.create_sale(100)
    assert h.engine.cancel(sale.id).state is State.CANCELLED


def test_full_codes_never_reach_logs_or_the_database(
    h: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    full = [code(e, 7, ch) for ch in ("wechat", "alipay") for e in ("0000", "0003", "0005")]
    for c in full:
        pay(h, c)
    h.engine.stop(timeout=5)
    h.store.close()
    blob = b"".join(p.read_bytes() for p in h.tmp.iterdir() if p.name.startswith("posd.db"))
    for c in full:
        assert c not in caplog.text
        assert c.encode() not in blob
    h.store = Store.open(h.cfg.database.path)


@CHANNELS
def test_stop_lets_the_request_on_the_wire_finish(h: Harness, sim: Simulator,
                                                  channel: str) -> None:
    sim.add_fault("latency", path=PAY_PATH[channel], seconds=0.5)
    sale, _ = h.engine.create_sale(100, auth_code=code("0000", channel=channel))
    h.engine.stop(timeout=5)
    after = h.store.get(sale.id)
    assert after.state is State.PAID or after.next_action in (Action.QUERY, Action.PAY)
    engine = h.restart()
    assert h.settle(sale.id).state is State.PAID
    assert engine is h.engine



def test_a_scan_with_the_database_gone_stops_the_daemon_not_the_reader(h: Harness) -> None:
    h.engine.create_sale(100)
    h.store.close()  # the database becomes unusable under the engine
    outcome = h.engine.scan(code("0000"), time.monotonic())
    assert not outcome.accepted and "cannot record" in outcome.reason
    assert h.engine.fatal.is_set()
    h.store = Store.open(h.cfg.database.path)


@CHANNELS
def test_queries_leave_half_the_measured_round_trip_early(h: Harness, sim: Simulator,
                                                          channel: str) -> None:
    assert h.engine.query_lead(channel) == 0.0  # nothing measured yet: when due
    sim.set_round_trip(0.08)  # real channels are 30-100 ms away
    sale = pay(h, code("0001", channel=channel))  # the customer confirms after a query or two
    assert sale.state is State.PAID and sale.queries >= 1
    # half of a round trip of at least the simulator's 80 ms, within the policy's bound
    assert 0.04 <= h.engine.query_lead(channel) <= h.policies[channel].query_lead_max_s
    assert not sim.violations()
