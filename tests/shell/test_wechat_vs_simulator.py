# SPDX-License-Identifier: MIT
"""posd's WeChat client against the channel simulator: HTTPS, client certificates, real wire.

Each sandbox code of DESIGN.md §5 is driven through the calls the engine would make, and the
sequence of results is checked. The simulator's clock is injected, so "confirms after 8 s" or
"reverse not before 15 s" cost nothing; only code 0006 (a hang past the read timeout) waits,
for the client's 0.5 s read timeout.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from posd.channels.simulator import FaultKind, Simulator, TestPki, WechatSandbox
from posd.channels.wechat.client import WechatPay
from posd.channels.wechat.config import WechatConfig
from posd.core.money import Fen
from posd.core.sale import Closed, Declined, NotFound, Paid, Pending, Unknown
from tests.sandbox import Clock

SANDBOX = WechatSandbox("wx2421b1c4370ec43b", "10000100", "sandboxkeysandboxkeysandboxkey12")
T0 = 1_750_000_000.0
CONFIRM_S = 2.0
AMOUNT = Fen(1250)



def code(ending: str) -> str:
    return "13456789012345" + ending



@pytest.fixture
def sim(clock: Clock, pki: TestPki) -> Iterator[Simulator]:
    with Simulator(
        wechat=SANDBOX,
        tls=pki.server_tls(),
        clock=clock,
        confirm_delay_s=CONFIRM_S,
        hang_s=1.5,
        min_reverse_delay_s=15.0,
    ) as simulator:
        yield simulator
        assert [v["rule"] for v in simulator.violations()] == []


def make_client(sim: Simulator, pki: TestPki, sign_type: str = "HMAC-SHA256") -> WechatPay:
    config = WechatConfig.model_validate(
        {
            "base_url": sim.url,
            "appid": SANDBOX.appid,
            "mch_id": SANDBOX.mch_id,
            "api_key_file": "/nonexistent",  # the key is passed directly below
            "sign_type": sign_type,
            "cert_file": pki.client_cert_file,
            "key_file": pki.client_key_file,
            "ca_file": pki.ca_cert_file,
            "connect_timeout_s": 1.0,
            "read_timeout_s": 0.5,
        }
    )
    return WechatPay(config, api_key=SANDBOX.api_key, device_info="S001T01", body_prefix="Mart")


@pytest.fixture
def client(sim: Simulator, pki: TestPki) -> Iterator[WechatPay]:
    wechat = make_client(sim, pki)
    yield wechat
    wechat.close()


def _paid(result: object) -> Paid:
    assert isinstance(result, Paid), result
    assert result.amount == AMOUNT
    return result


@pytest.mark.parametrize("sign_type", ["HMAC-SHA256", "MD5"])
def test_paid_at_once(sim: Simulator, pki: TestPki, sign_type: str) -> None:
    wechat = make_client(sim, pki, sign_type)
    try:
        paid = _paid(wechat.pay("N1", AMOUNT, code("6789"), "Coffee"))
        assert wechat.query("N1", AMOUNT) == paid
    finally:
        wechat.close()
    assert sim.trade("N1")["state"] == "paid"  # type: ignore[index]


def test_0001_confirms_later(sim: Simulator, client: WechatPay, clock: Clock) -> None:
    assert isinstance(client.pay("N1", AMOUNT, code("0001"), "Coffee"), Pending)
    assert isinstance(client.query("N1", AMOUNT), Pending)
    clock.now += CONFIRM_S
    _paid(client.query("N1", AMOUNT))


def test_0002_never_confirms_then_reverse(sim: Simulator, client: WechatPay, clock: Clock) -> None:
    assert isinstance(client.pay("N1", AMOUNT, code("0002"), "Coffee"), Pending)
    clock.now += 10
    assert isinstance(client.query("N1", AMOUNT), Pending)
    clock.now += 20  # the deadline; past WeChat's 15 s
    assert client.reverse("N1") == Closed("reversed", refunded=None)
    assert isinstance(client.query("N1", AMOUNT), Closed)  # REVOKED
    assert sim.trade("N1")["state"] == "reversed"  # type: ignore[index]


@pytest.mark.parametrize(
    ("ending", "err_code"), [("0003", "NOTENOUGH"), ("0004", "AUTHCODEEXPIRE")]
)
def test_declines(client: WechatPay, ending: str, err_code: str) -> None:
    result = client.pay("N1", AMOUNT, code(ending), "Coffee")
    assert isinstance(result, Declined), result
    assert result.code == err_code
    assert code(ending) not in result.message


def test_0005_system_error_but_paid(client: WechatPay) -> None:
    result = client.pay("N1", AMOUNT, code("0005"), "Coffee")
    assert isinstance(result, Unknown)
    assert result.may_have_arrived
    assert "SYSTEMERROR" in result.detail
    _paid(client.query("N1", AMOUNT))


def test_0006_hangs_past_the_read_timeout_but_paid(client: WechatPay) -> None:
    result = client.pay("N1", AMOUNT, code("0006"), "Coffee")
    assert isinstance(result, Unknown)
    assert result.may_have_arrived
    assert "read timeout" in result.detail
    _paid(client.query("N1", AMOUNT))


def test_0007_pays_as_the_reverse_arrives(sim: Simulator, client: WechatPay, clock: Clock) -> None:
    assert isinstance(client.pay("N1", AMOUNT, code("0007"), "Coffee"), Pending)
    clock.now += 30
    assert isinstance(client.query("N1", AMOUNT), Pending)
    assert client.reverse("N1") == Closed("reversed", refunded=None)
    assert sim.trade("N1")["state"] == "refunded"  # type: ignore[index]


def test_0008_reverse_asks_for_recall_twice(client: WechatPay, clock: Clock) -> None:
    assert isinstance(client.pay("N1", AMOUNT, code("0008"), "Coffee"), Pending)
    clock.now += 30
    results = [client.reverse("N1") for _ in range(3)]
    assert [type(r) for r in results] == [Pending, Pending, Closed]


def test_reverse_of_an_unknown_trade_is_not_found(client: WechatPay) -> None:
    assert isinstance(client.reverse("NEVER-SENT"), NotFound)
    assert isinstance(client.query("NEVER-SENT", AMOUNT), NotFound)


@pytest.mark.parametrize(
    "kind",
    [
        FaultKind.DROP,
        FaultKind.HTTP500,
        FaultKind.HTTP502,
        FaultKind.HTTP503,
        FaultKind.GARBAGE,
        FaultKind.BADSIGN,
        FaultKind.WRONG_TRADE,
        FaultKind.XML_BOMB,
    ],
)
def test_faults_on_pay_are_unknown_then_the_query_finds_the_payment(
    sim: Simulator, client: WechatPay, kind: FaultKind
) -> None:
    sim.add_fault(kind, path="/pay/micropay")
    result = client.pay("N1", AMOUNT, code("6789"), "Coffee")
    assert isinstance(result, Unknown)
    assert result.may_have_arrived, result
    if sim.trade("N1") is not None:  # the fault let the request through to the ledger
        _paid(client.query("N1", AMOUNT))
    else:
        assert isinstance(client.query("N1", AMOUNT), NotFound)
