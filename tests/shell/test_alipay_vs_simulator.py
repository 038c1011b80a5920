# SPDX-License-Identifier: MIT
"""posd's Alipay client against the channel simulator's gateway.do: HTTPS, RSA2 both ways.

Each sandbox code of DESIGN.md §5 is driven through the calls the engine would make, and the
sequence of results is checked. One injected clock serves the simulator and the client's
timestamps, so "confirms after 8 s" costs nothing; only code 0006 (a hang past the read
timeout) waits, for the client's 0.5 s read timeout. python-alipay-sdk, an independent
implementation, talks to the same simulator to show both sides sign and verify as Alipay's
published rules say.
"""

from __future__ import annotations

import io
import json
import socket
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import requests
from alipay import AliPay

from posd import config as config_mod
from posd import demo
from posd.core import alipay_wire as wire
from posd.channels.alipay.client import BEIJING, Alipay
from posd.channels.simulator import (
    AlipayKeys,
    FaultKind,
    Simulator,
    TestPki,
    WechatSandbox,
    make_alipay_keys,
)
from posd.channels.alipay.config import AlipayConfig
from posd.daemon import Daemon
from posd.core.money import Fen
from posd.core.sale import Closed, Declined, NotFound, Paid, Pending, Refused, State, Unknown
from tests.sandbox import Clock

APP_ID = "2021000000000001"
T0 = 1_750_000_000.0
CONFIRM_S = 2.0
AMOUNT = Fen(1250)
PAY_PATH = "/gateway.do?method=alipay.trade.pay"



def code(ending: str) -> str:
    return "28123456789012" + ending



@pytest.fixture
def sim(clock: Clock, pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    with Simulator(wechat=WechatSandbox.example(), alipay=alipay_keys.sandbox(APP_ID),
                   tls=pki.server_tls(), clock=clock, confirm_delay_s=CONFIRM_S,
                   hang_s=1.5) as simulator:
        yield simulator
        assert [v["rule"] for v in simulator.violations()] == []


def make_client(sim: Simulator, pki: TestPki, keys: AlipayKeys, clock: Clock) -> Alipay:
    config = AlipayConfig.model_validate({
        "gateway_url": f"{sim.url}/gateway.do", "app_id": APP_ID,
        "app_private_key_file": keys.app_private_key_file,
        "alipay_public_key_file": keys.alipay_public_key_file,
        "ca_file": pki.ca_cert_file, "connect_timeout_s": 1.0, "read_timeout_s": 0.5,
    })  # fmt: skip
    # The simulator's time also stamps the requests (its gateway checks the timestamp).
    return Alipay.from_config(config, store_id="S001", terminal_id="T01", clock=clock)


@pytest.fixture
def client(sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys, clock: Clock) -> Iterator[Alipay]:
    alipay = make_client(sim, pki, alipay_keys, clock)
    yield alipay
    alipay.close()


def trade(sim: Simulator, out_trade_no: str) -> dict[str, Any]:
    found = sim.trade(out_trade_no, "alipay")
    assert found is not None
    return found


def _paid(result: object) -> Paid:
    assert isinstance(result, Paid), result
    assert result.amount == AMOUNT
    return result


def test_paid_at_once(sim: Simulator, client: Alipay) -> None:
    paid = _paid(client.pay("N1", AMOUNT, code("6789"), "咖啡 Coffee/latte {L}"))
    assert client.query("N1", AMOUNT) == paid
    found = trade(sim, "N1")
    assert (found["state"], found["amount"], found["channel_trade_no"]) == (
        "paid", 1250, paid.channel_trade_no)
    assert found["auth_code"] == "2812…6789"
    assert found["calls"] == {"pay": 1, "query": 1}


def test_0001_confirms_later(client: Alipay, clock: Clock) -> None:
    assert isinstance(client.pay("N1", AMOUNT, code("0001"), "Coffee"), Pending)
    assert isinstance(client.query("N1", AMOUNT), Pending)  # WAIT_BUYER_PAY
    clock.now += CONFIRM_S
    _paid(client.query("N1", AMOUNT))


def test_0002_never_confirms_then_cancel_closes(sim: Simulator, client: Alipay,
                                                clock: Clock) -> None:
    assert isinstance(client.pay("N1", AMOUNT, code("0002"), "Coffee"), Pending)
    clock.now += 30
    assert isinstance(client.query("N1", AMOUNT), Pending)
    assert client.reverse("N1") == Closed("action=close", refunded=False)
    assert isinstance(client.query("N1", AMOUNT), Closed)  # TRADE_CLOSED
    assert trade(sim, "N1")["state"] == "reversed"


def test_cancel_right_after_pay_is_allowed(sim: Simulator, client: Alipay) -> None:
    """Alipay has no "not before 15 s" rule: no violation, unlike WeChat's reverse."""
    assert isinstance(client.pay("N1", AMOUNT, code("0002"), "Coffee"), Pending)
    assert client.reverse("N1") == Closed("action=close", refunded=False)


@pytest.mark.parametrize(("ending", "sub_code"), [("0003", "ACQ.BUYER_BALANCE_NOT_ENOUGH"),
                                                  ("0004", "ACQ.PAYMENT_AUTH_CODE_INVALID")])
def test_declines(client: Alipay, ending: str, sub_code: str) -> None:
    result = client.pay("N1", AMOUNT, code(ending), "Coffee")
    assert isinstance(result, Declined), result
    assert result.code == sub_code
    assert code(ending) not in result.message
    assert "支付宝:" in result.message


def test_0005_20000_but_paid(client: Alipay) -> None:
    result = client.pay("N1", AMOUNT, code("0005"), "Coffee")
    assert isinstance(result, Unknown) and result.may_have_arrived
    assert "20000" in result.detail
    _paid(client.query("N1", AMOUNT))


def test_0006_hangs_past_the_read_timeout_but_paid(client: Alipay) -> None:
    result = client.pay("N1", AMOUNT, code("0006"), "Coffee")
    assert isinstance(result, Unknown) and result.may_have_arrived
    assert "read timeout" in result.detail
    _paid(client.query("N1", AMOUNT))


def test_0007_pays_as_the_cancel_arrives_and_is_refunded(sim: Simulator, client: Alipay,
                                                         clock: Clock) -> None:
    assert isinstance(client.pay("N1", AMOUNT, code("0007"), "Coffee"), Pending)
    clock.now += 30
    assert isinstance(client.query("N1", AMOUNT), Pending)
    assert client.reverse("N1") == Closed("action=refund", refunded=True)
    events = [e["kind"] for e in trade(sim, "N1")["events"]]
    assert events[-2:] == ["paid", "refunded"]  # the ledger shows paid-then-refunded


def test_0008_cancel_asks_for_a_retry_twice(sim: Simulator, client: Alipay, clock: Clock) -> None:
    assert isinstance(client.pay("N1", AMOUNT, code("0008"), "Coffee"), Pending)
    clock.now += 30
    results = [client.reverse("N1") for _ in range(3)]
    assert [type(r) for r in results] == [Pending, Pending, Closed]
    assert trade(sim, "N1")["calls"]["cancel"] == 3


def test_repeated_pay_of_a_paid_trade_is_confirmed_by_query(client: Alipay) -> None:
    _paid(client.pay("N1", AMOUNT, code("6789"), "Coffee"))
    again = client.pay("N1", AMOUNT, code("6789"), "Coffee")  # ACQ.TRADE_HAS_SUCCESS
    assert isinstance(again, Unknown) and "TRADE_HAS_SUCCESS" in again.detail
    _paid(client.query("N1", AMOUNT))


def test_cancel_of_an_unknown_trade_is_not_found(sim: Simulator, client: Alipay) -> None:
    """10000 without action, confirmed by trade.query: ACQ.TRADE_NOT_EXIST."""
    assert isinstance(client.reverse("NEVERSENT"), NotFound)
    assert isinstance(client.query("NEVERSENT", AMOUNT), NotFound)
    assert sim.calls()["alipay"]["NEVERSENT"] == {"cancel": 1, "query": 2}


@pytest.mark.parametrize("kind", [FaultKind.DROP, FaultKind.HTTP500, FaultKind.HTTP502,
                                  FaultKind.HTTP503, FaultKind.GARBAGE, FaultKind.BADSIGN,
                                  FaultKind.WRONG_TRADE, FaultKind.XML_BOMB])
def test_faults_on_pay_are_unknown_then_the_query_finds_the_payment(
    sim: Simulator, client: Alipay, kind: FaultKind
) -> None:
    sim.add_fault(kind, path=PAY_PATH)
    result = client.pay("N1", AMOUNT, code("6789"), "Coffee")
    assert isinstance(result, Unknown)
    assert result.may_have_arrived, result
    assert sim.faults() == []  # used by the pay, not by the query below
    if sim.trade("N1", "alipay") is not None:  # the fault let the request through
        _paid(client.query("N1", AMOUNT))
    else:
        assert isinstance(client.query("N1", AMOUNT), NotFound)


def test_a_fault_for_one_method_spares_the_others(sim: Simulator, client: Alipay) -> None:
    sim.add_fault(FaultKind.HTTP503, path="/gateway.do?method=alipay.trade.query")
    _paid(client.pay("N1", AMOUNT, code("6789"), "Coffee"))
    assert isinstance(client.query("N1", AMOUNT), Unknown)
    _paid(client.query("N1", AMOUNT))


# --- what the gateway refuses ----------------------------------------------------------------------


def test_a_timestamp_in_local_time_is_refused(sim: Simulator, pki: TestPki,
                                              alipay_keys: AlipayKeys, clock: Clock) -> None:
    """A till that sends UTC wall time (8 h behind Beijing) is refused, nothing is paid."""
    utc_wall = Clock()
    utc_wall.now = clock.now - 8 * 3600
    client = make_client(sim, pki, alipay_keys, utc_wall)
    result = client.pay("N1", AMOUNT, code("6789"), "Coffee")
    client.close()
    assert isinstance(result, Declined) and "misconfigured" in result.message
    assert "isv.invalid-timestamp" in result.message
    assert sim.trade("N1", "alipay") is None
    assert [v["rule"] for v in sim.violations()] == ["request_rejected"]
    sim.reset()  # the fixture asserts no violations


def test_the_wrong_app_key_is_refused(sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys,
                                      clock: Clock, tmp_path: Path) -> None:
    other = make_alipay_keys(tmp_path)
    config = AlipayConfig.model_validate({
        "gateway_url": f"{sim.url}/gateway.do", "app_id": APP_ID,
        "app_private_key_file": other.app_private_key_file,
        "alipay_public_key_file": alipay_keys.alipay_public_key_file,
        "ca_file": pki.ca_cert_file,
    })  # fmt: skip
    wrong = Alipay.from_config(config, clock=clock)
    try:
        result = wrong.pay("N1", AMOUNT, code("6789"), "Coffee")
        assert isinstance(result, Declined) and "isv.invalid-signature" in result.message
        assert isinstance(wrong.reverse("N1"), Unknown)  # cancelled again later, with backoff
        assert isinstance(wrong.query("N1", AMOUNT), Unknown)
    finally:
        wrong.close()
    assert sim.trade("N1", "alipay") is None
    assert {v["rule"] for v in sim.violations()} == {"request_rejected"}
    sim.reset()


# --- python-alipay-sdk, an independent implementation, against the simulator ---------------------


def _sdk(keys: AlipayKeys) -> AliPay:
    return AliPay(appid=APP_ID,
                  app_private_key_string=keys.app_private_key_file.read_text(),
                  alipay_public_key_string=keys.alipay_public_key_file.read_text(),
                  sign_type="RSA2")


def test_python_alipay_sdk_requests_verify_and_its_verifier_accepts_our_answers(
    pki: TestPki, alipay_keys: AlipayKeys
) -> None:
    """The SDK signs a GET with everything in the query string; the simulator (real clock)
    verifies it, and the SDK verifies the simulator's answer with the Alipay public key."""
    with Simulator(wechat=WechatSandbox.example(), alipay=alipay_keys.sandbox(APP_ID),
                   tls=pki.server_tls()) as sim:
        sdk = _sdk(alipay_keys)
        results = {}
        for method, biz in [
            ("alipay.trade.pay", {"out_trade_no": "SDK1", "scene": "bar_code",
                                  "auth_code": code("6789"), "subject": "测试/test",
                                  "total_amount": "0.01"}),
            ("alipay.trade.query", {"out_trade_no": "SDK1"}),
            ("alipay.trade.cancel", {"out_trade_no": "SDK1"}),
        ]:
            data = sdk.build_body(method, biz)
            # The SDK stamps local time (§4); Alipay wants Beijing time.
            data["timestamp"] = datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S")
            url = f"{sim.url}/gateway.do?{sdk.sign_data(data)}"
            raw = requests.get(url, verify=str(pki.ca_cert_file), timeout=5).text
            name = method.replace(".", "_") + "_response"
            results[method] = sdk._verify_and_return_sync_response(raw, name)
        assert results["alipay.trade.pay"]["code"] == "10000"
        assert results["alipay.trade.query"]["trade_status"] == "TRADE_SUCCESS"
        assert results["alipay.trade.cancel"]["action"] == "refund"
        assert not sim.violations()


# --- posd demo's sandbox: both channels side by side -------------------------------------------


def test_the_demo_sandbox_takes_both_channels(tmp_path: Path) -> None:
    """What `make demo` provisions (both key pairs, both channels) pays codes of either."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        api_port = int(s.getsockname()[1])
    box = demo.provision(tmp_path / "demo", api_port)
    keys = box.alipay_keys
    assert all(f.exists() for f in keys.files())
    assert keys.app_private_key_file.stat().st_mode & 0o077 == 0
    again = demo.provision(tmp_path / "demo", api_port)  # reused, not regenerated
    assert again.alipay_keys.app_private_key_file.read_bytes() == (
        keys.app_private_key_file.read_bytes())
    sim = demo.start_simulator(box, confirm_delay_s=0.2)
    daemon = Daemon.build(config_mod.load(box.config_path), receipts_to=io.StringIO())
    daemon.start()
    try:
        assert daemon.engine.enabled_channels == ("wechat", "alipay")
        sales = [daemon.engine.create_sale(1250, auth_code=c)[0]
                 for c in (demo.EXAMPLE_WECHAT, demo.EXAMPLE_ALIPAY)]
        deadline = time.monotonic() + 20
        for sale in sales:
            while not (sale := daemon.engine.get(sale.id)).final and time.monotonic() < deadline:
                daemon.engine.wait_for_change(sale.id, sale.updated_at, 1.0)
            assert sale.state is State.PAID, sale
        assert [s.channel for s in sales] == ["wechat", "alipay"]
        assert not sim.violations()
    finally:
        daemon.stop()
        sim.stop()


# --- the gateway itself, with hand-made requests ---------------------------------------------------


def _send(sim: Simulator, pki: TestPki, keys: AlipayKeys, clock: Clock, method: str,
          biz: dict[str, object], overrides: dict[str, str] | None = None) -> wire.Answer:
    """One request signed as posd signs it, then ``overrides`` applied (after signing)."""
    params = {"app_id": APP_ID, "method": method, "charset": "utf-8", "sign_type": "RSA2",
              "timestamp": datetime.fromtimestamp(clock.now, BEIJING).strftime(
                  "%Y-%m-%d %H:%M:%S"),
              "version": "1.0", "biz_content": json.dumps(biz)}
    params["sign"] = wire.sign(params, wire.load_private_key(
        keys.app_private_key_file.read_bytes()))
    params |= overrides or {}
    reply = requests.post(f"{sim.url}/gateway.do", data=params, verify=str(pki.ca_cert_file),
                          timeout=5)
    assert reply.status_code == 200
    return wire.parse_answer(reply.content, method)


def test_the_gateway_refuses_what_alipay_would(sim: Simulator, pki: TestPki,
                                               alipay_keys: AlipayKeys, clock: Clock) -> None:
    query = {"out_trade_no": "H1"}
    cases = [
        ({"method": "alipay.trade.nothing"}, "error_response", "isv.invalid-method"),
        ({"app_id": "2021000000000999"}, "alipay_trade_query_response", "isv.invalid-app-id"),
        ({"sign": "AAAA"}, "alipay_trade_query_response", "isv.invalid-signature"),
        ({"sign_type": "RSA"}, "alipay_trade_query_response", "isv.invalid-signature-type"),
        ({"charset": "gbk"}, "alipay_trade_query_response", "isv.invalid-charset"),
        ({"timestamp": "2020-01-01 00:00:00"}, "alipay_trade_query_response",
         "isv.invalid-timestamp"),
        ({"version": ""}, "alipay_trade_query_response", "isv.missing-version"),
    ]
    for overrides, member, sub_code in cases:
        answer = _send(sim, pki, alipay_keys, clock, "alipay.trade.query", query, overrides)
        assert (answer.key, answer.sign, answer.text("sub_code")) == (member, None, sub_code)
        assert answer.text("code") in ("40001", "40002")
    assert len(sim.violations()) == len(cases)
    assert {v["rule"] for v in sim.violations()} == {"request_rejected"}
    sim.reset()


@pytest.mark.parametrize("amount", [12.5, "12.5", "0.00", "-1.00", "1e3"])
def test_the_gateway_wants_total_amount_as_a_two_decimal_string(
    sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys, clock: Clock, amount: object
) -> None:
    biz = {"out_trade_no": "H1", "scene": "bar_code", "auth_code": code("6789"),
           "subject": "x", "total_amount": amount}
    answer = _send(sim, pki, alipay_keys, clock, "alipay.trade.pay", biz)
    assert answer.verifies(wire.load_public_key(alipay_keys.alipay_public_key_file.read_bytes()))
    assert (answer.text("code"), answer.text("sub_code")) == ("40004", "ACQ.INVALID_PARAMETER")
    assert sim.trade("H1", "alipay") is None


def test_the_control_endpoint_describes_alipay(sim: Simulator, pki: TestPki) -> None:
    info = requests.get(sim.url + "/_sim/", timeout=5, verify=str(pki.ca_cert_file)).json()
    assert info["channels"]["alipay"] == {"app_id": APP_ID, "gateway": "/gateway.do"}
    assert {"ending": "0008", "outcome": "reverse_retry", "wechat": "134567890123450008",
            "alipay": "281234567890120008"} in info["sandbox_codes"]
