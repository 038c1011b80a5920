# SPDX-License-Identifier: MIT
"""The channel simulator over real HTTP(S) on loopback: WeChat Pay v2 wire, scripts, faults.

Requests are built and answers checked with ``posd.core.wechat_wire`` (vector-tested
against wechatpy elsewhere). Where timing matters the simulator gets an injected clock, so a
customer confirming after 8 s or a reverse after 15 s costs nothing.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import secrets
import signal
import stat
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import requests

from posd.channels.simulator import (
    Simulator,
    TestPki,
    WechatSandbox,
    make_test_pki,
    run_forever,
)
from posd.core.wechat_wire import WireError, from_xml, sign, to_xml, verify
from tests.sandbox import Clock

SANDBOX = WechatSandbox("wx2421b1c4370ec43b", "10000100", "a" * 32)
T0 = 1_750_000_000.0  # 2025-06-15 23:06:40 Beijing time
BEIJING = timezone(timedelta(hours=8))
MICROPAY, ORDERQUERY, REVERSE = "/pay/micropay", "/pay/orderquery", "/secapi/pay/reverse"



def code(ending: str) -> str:
    return "13456789012345" + ending



@pytest.fixture
def sim(clock: Clock) -> Iterator[Simulator]:
    with Simulator(wechat=SANDBOX, clock=clock, hang_s=5.0) as simulator:
        yield simulator


@pytest.fixture(scope="module")
def sim_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("sim-pki"))


def signed(
    fields: dict[str, str],
    *,
    sign_type: str = "MD5",
    key: str = SANDBOX.api_key,
) -> bytes:
    params = {
        "appid": SANDBOX.appid,
        "mch_id": SANDBOX.mch_id,
        "nonce_str": secrets.token_hex(8),
        **fields,
    }
    if sign_type != "MD5":
        params["sign_type"] = sign_type
    params["sign"] = sign(params, key, sign_type)
    return to_xml(params)


def post(
    url: str,
    path: str,
    fields: dict[str, str],
    *,
    timeout: float = 5.0,
    sign_type: str = "MD5",
    **kwargs: Any,
) -> requests.Response:
    body = signed(fields, sign_type=sign_type)
    return requests.post(url + path, data=body, timeout=timeout, **kwargs)


def call(
    sim: Simulator, path: str, fields: dict[str, str], *, sign_type: str = "MD5", **kwargs: Any
) -> dict[str, str]:
    """POST a signed request; the answer parsed, its signature checked when it has one."""
    response = post(sim.url, path, fields, sign_type=sign_type, **kwargs)
    assert response.status_code == 200
    answer = from_xml(response.content)
    if answer["return_code"] == "SUCCESS":
        assert verify(answer, SANDBOX.api_key, sign_type), answer
    else:
        assert "sign" not in answer
    return answer


def pay_fields(auth_code: str, out_trade_no: str = "T1", amount: int = 100) -> dict[str, str]:
    return {
        "body": "posd test",
        "out_trade_no": out_trade_no,
        "total_fee": str(amount),
        "spbill_create_ip": "127.0.0.1",
        "auth_code": auth_code,
    }


def pay(
    sim: Simulator, auth_code: str, out_trade_no: str = "T1", amount: int = 100, **kwargs: Any
) -> dict[str, str]:
    return call(sim, MICROPAY, pay_fields(auth_code, out_trade_no, amount), **kwargs)


def query(sim: Simulator, out_trade_no: str = "T1", **kwargs: Any) -> dict[str, str]:
    return call(sim, ORDERQUERY, {"out_trade_no": out_trade_no}, **kwargs)


def reverse(sim: Simulator, out_trade_no: str = "T1", **kwargs: Any) -> dict[str, str]:
    return call(sim, REVERSE, {"out_trade_no": out_trade_no}, **kwargs)


def state(answer: dict[str, str]) -> str:
    assert answer["result_code"] == "SUCCESS", answer
    return answer["trade_state"]


def err(answer: dict[str, str]) -> str:
    assert (answer["return_code"], answer["result_code"]) == ("SUCCESS", "FAIL"), answer
    return answer["err_code"]


def events(sim: Simulator, out_trade_no: str = "T1") -> list[str]:
    trade = sim.trade(out_trade_no)
    assert trade is not None
    return [e["kind"] for e in trade["events"]]  # type: ignore[attr-defined]


# --- the wire --------------------------------------------------------------------------------


@pytest.mark.parametrize("sign_type", ["MD5", "HMAC-SHA256"])
def test_paid_at_once_answer_is_signed_with_the_request_sign_type(
    sim: Simulator, sign_type: str
) -> None:
    answer = pay(sim, code("1234"), sign_type=sign_type)
    assert len(answer["sign"]) == (32 if sign_type == "MD5" else 64)
    assert answer["result_code"] == "SUCCESS"
    assert {
        k: answer[k]
        for k in (
            "appid",
            "mch_id",
            "trade_type",
            "fee_type",
            "total_fee",
            "cash_fee",
            "out_trade_no",
        )
    } == {
        "appid": SANDBOX.appid,
        "mch_id": SANDBOX.mch_id,
        "trade_type": "MICROPAY",
        "fee_type": "CNY",
        "total_fee": "100",
        "cash_fee": "100",
        "out_trade_no": "T1",
    }
    assert answer["time_end"] == datetime.fromtimestamp(T0, BEIJING).strftime("%Y%m%d%H%M%S")
    assert len(answer["transaction_id"]) == 28 and answer["openid"] and answer["bank_type"]
    assert answer["nonce_str"]
    assert state(query(sim)) == "SUCCESS"


def test_orderquery_by_transaction_id_and_unknown_trades(sim: Simulator) -> None:
    transaction_id = pay(sim, code("1234"))["transaction_id"]
    answer = call(sim, ORDERQUERY, {"transaction_id": transaction_id})
    assert (state(answer), answer["out_trade_no"]) == ("SUCCESS", "T1")
    assert err(query(sim, "NOPE")) == "ORDERNOTEXIST"
    assert sim.calls()["wechat"]["NOPE"] == {"orderquery": 1}


@pytest.mark.parametrize(
    ("path", "fields", "message"),
    [
        (MICROPAY, {**pay_fields(code("1234")), "auth_code": ""}, "缺少参数auth_code"),
        (REVERSE, {"out_trade_no": "T1", "notify_url": "http://x"}, "不识别的参数notify_url"),
        (ORDERQUERY, {}, "缺少参数out_trade_no"),
        (ORDERQUERY, {"out_trade_no": "T1", "sign_type": "SHA1"}, "sign_type参数错误"),
    ],
)
def test_malformed_requests_are_refused_unsigned(
    sim: Simulator, path: str, fields: dict[str, str], message: str
) -> None:
    answer = call(sim, path, fields)
    assert (answer["return_code"], answer["return_msg"]) == ("FAIL", message)
    assert [v["rule"] for v in sim.violations()] == ["request_rejected"]


def test_bad_signature_appid_xml_and_method_are_refused(sim: Simulator) -> None:
    def refused(body: bytes, method: str = "POST") -> str:
        response = requests.request(method, sim.url + MICROPAY, data=body, timeout=5)
        answer = from_xml(response.content)
        assert answer["return_code"] == "FAIL" and "sign" not in answer
        return answer["return_msg"]

    fields = pay_fields(code("1234"))
    assert refused(signed(fields, key="b" * 32)) == "签名错误"
    assert refused(signed(fields, sign_type="HMAC-SHA256", key="b" * 32)) == "签名错误"
    wrong_appid = from_xml(signed(fields)) | {"appid": "wx0000000000000000"}
    assert refused(to_xml(wrong_appid)) == "appid和mch_id不匹配"
    assert refused(b"<xml><unclosed></xml>") == "XML格式错误"
    assert refused(b"", method="GET") == "请使用post方法"
    assert sim.ledger() == []


@pytest.mark.parametrize(
    "auth_code",
    [
        "281234567890120001",
        "1345678901234500",
        "163456789012340001",
        "１３４５６７８９０１２３４５０００１",
    ],
)
def test_not_a_wechat_code_is_auth_code_invalid(sim: Simulator, auth_code: str) -> None:
    assert err(pay(sim, auth_code)) == "AUTH_CODE_INVALID"
    assert err(query(sim)) == "ORDERNOTEXIST"


def test_out_trade_no_reused_with_other_code_or_amount(sim: Simulator) -> None:
    pay(sim, code("1234"))
    assert err(pay(sim, code("4321"))) == "OUT_TRADE_NO_USED"
    assert err(pay(sim, code("1234"), amount=200)) == "OUT_TRADE_NO_USED"
    assert err(pay(sim, code("1234"))) == "ORDERPAID"
    assert [v["rule"] for v in sim.violations()] == ["out_trade_no_reused"] * 2
    assert sim.trade("T1")["amount"] == 100  # type: ignore[index]
    assert sim.calls()["wechat"]["T1"] == {"micropay": 4}


# --- scripted behaviour by the last four digits (DESIGN.md §5) --------------------------------


def test_0001_confirms_eight_seconds_after_the_pay(sim: Simulator, clock: Clock) -> None:
    assert err(pay(sim, code("0001"))) == "USERPAYING"
    clock.now = T0 + 7.9
    assert state(query(sim)) == "USERPAYING"
    assert err(pay(sim, code("0001"))) == "USERPAYING"  # a repeated pay is still waiting
    clock.now = T0 + 8.0
    answer = query(sim)
    assert state(answer) == "SUCCESS"
    assert answer["time_end"] == datetime.fromtimestamp(T0 + 8, BEIJING).strftime("%Y%m%d%H%M%S")


def test_confirm_delay_is_configurable_on_the_real_clock() -> None:
    with Simulator(wechat=SANDBOX, confirm_delay_s=0.2) as sim:
        started = time.monotonic()
        assert err(pay(sim, code("0001"))) == "USERPAYING"
        while state(query(sim)) != "SUCCESS":
            assert time.monotonic() - started < 5, "the customer never confirmed"
        assert time.monotonic() - started >= 0.2


def test_0002_waits_until_reversed(sim: Simulator, clock: Clock) -> None:
    assert err(pay(sim, code("0002"))) == "USERPAYING"
    clock.now = T0 + 600
    assert state(query(sim)) == "USERPAYING"
    answer = reverse(sim)
    assert (answer["result_code"], answer["recall"]) == ("SUCCESS", "N")
    assert state(query(sim)) == "REVOKED"
    assert events(sim) == ["created", "reversed"]
    assert sim.violations() == []


@pytest.mark.parametrize(
    ("ending", "err_code"), [("0003", "NOTENOUGH"), ("0004", "AUTHCODEEXPIRE")]
)
def test_declined_codes(sim: Simulator, ending: str, err_code: str) -> None:
    answer = pay(sim, code(ending))
    assert err(answer) == err_code and answer["err_code_des"]
    assert state(query(sim)) == "PAYERROR"
    assert sim.trade("T1")["state"] == "failed"  # type: ignore[index]


def test_0005_system_error_but_paid(sim: Simulator) -> None:
    assert err(pay(sim, code("0005"))) == "SYSTEMERROR"
    assert state(query(sim)) == "SUCCESS"
    assert err(pay(sim, code("0005"))) == "ORDERPAID"


def test_0006_hangs_past_the_read_timeout_but_pays(sim: Simulator) -> None:
    with pytest.raises(requests.ReadTimeout):
        pay(sim, code("0006"), timeout=0.3)
    assert state(query(sim)) == "SUCCESS"
    assert err(pay(sim, code("0006"))) == "ORDERPAID"


def test_0007_pays_as_the_reverse_arrives_and_is_refunded(sim: Simulator, clock: Clock) -> None:
    assert err(pay(sim, code("0007"))) == "USERPAYING"
    clock.now = T0 + 30
    assert state(query(sim)) == "USERPAYING"
    answer = reverse(sim)
    assert (answer["result_code"], answer["recall"]) == ("SUCCESS", "N")
    assert state(query(sim)) == "REVOKED"
    trade = sim.trade("T1")
    assert trade is not None
    assert (trade["state"], trade["paid_at"], trade["closed_at"]) == ("refunded", T0 + 30, T0 + 30)
    assert events(sim) == ["created", "paid", "refunded"]


def test_0008_reverse_asks_for_a_recall_twice(sim: Simulator, clock: Clock) -> None:
    pay(sim, code("0008"))
    clock.now = T0 + 30
    answers = [reverse(sim) for _ in range(3)]
    assert [(a["result_code"], a.get("err_code"), a["recall"]) for a in answers] == [
        ("FAIL", "SYSTEMERROR", "Y"),
        ("FAIL", "SYSTEMERROR", "Y"),
        ("SUCCESS", None, "N"),
    ]
    assert state(query(sim)) == "REVOKED"
    assert sim.trade("T1")["calls"] == {"micropay": 1, "orderquery": 1, "reverse": 3}  # type: ignore[index]


def test_reverse_earlier_than_15_s_is_a_recorded_violation(sim: Simulator, clock: Clock) -> None:
    pay(sim, code("0002"))
    clock.now = T0 + 14
    answer = reverse(sim)
    assert (err(answer), answer["recall"]) == ("SYSTEMERROR", "Y")
    assert state(query(sim)) == "USERPAYING"
    [violation] = sim.violations()
    assert (violation["rule"], violation["out_trade_no"]) == ("reverse_too_early", "T1")
    clock.now = T0 + 15
    assert reverse(sim)["result_code"] == "SUCCESS"


def test_reverse_closes_a_waiting_trade_for_good(clock: Clock) -> None:
    with Simulator(wechat=SANDBOX, clock=clock, min_reverse_delay_s=0) as sim:
        pay(sim, code("0001"))
        clock.now = T0 + 7.5  # before the customer's confirmation at 8 s
        assert reverse(sim)["result_code"] == "SUCCESS"
        clock.now = T0 + 60
        assert state(query(sim)) == "REVOKED"
        assert sim.trade("T1")["paid_at"] is None  # type: ignore[index]


def test_reverse_refunds_a_paid_trade(sim: Simulator, clock: Clock) -> None:
    pay(sim, code("1234"))
    clock.now = T0 + 20
    assert reverse(sim)["result_code"] == "SUCCESS"
    assert sim.trade("T1")["state"] == "refunded"  # type: ignore[index]
    assert err(pay(sim, code("1234"))) == "ORDERREVERSED"
    assert [v["rule"] for v in sim.violations()] == ["pay_after_reverse"]


def test_unpaid_trades_close_after_45_s_when_asked(clock: Clock) -> None:
    with Simulator(wechat=SANDBOX, clock=clock, close_unpaid_after_s=45) as sim:
        pay(sim, code("0002"))
        clock.now = T0 + 45
        answer = query(sim)
        assert (state(answer), answer["trade_state_desc"]) == ("CLOSED", "已关闭")
        assert err(pay(sim, code("0002"))) == "ORDERCLOSED"
        assert reverse(sim)["result_code"] == "SUCCESS"


def test_reverse_of_an_unknown_or_expired_trade(sim: Simulator, clock: Clock) -> None:
    answer = reverse(sim, "NOPE")
    assert (err(answer), answer["recall"]) == ("ORDERNOTEXIST", "N")
    pay(sim, code("0002"))
    clock.now = T0 + 8 * 86400
    answer = reverse(sim)
    assert (err(answer), answer["recall"]) == ("REVERSE_EXPIRE", "N")


def test_ledger_never_holds_a_full_code(sim: Simulator, clock: Clock) -> None:
    codes = [code(e) for e in ("0001", "0003", "0007", "1234")]
    for n, auth_code in enumerate(codes):
        pay(sim, auth_code, f"T{n}")
    pay(sim, codes[0], "T3")
    clock.now = T0 + 20
    reverse(sim, "T2")
    text = requests.get(sim.url + "/_sim/ledger", timeout=5).text
    assert all(c not in text for c in codes)
    assert "1345…0007" in text


# --- faults ----------------------------------------------------------------------------------


def test_latency_delays_the_answer(sim: Simulator) -> None:
    sim.add_fault("latency", path=MICROPAY, seconds=0.25)
    started = time.monotonic()
    assert pay(sim, code("1234"))["result_code"] == "SUCCESS"
    assert time.monotonic() - started >= 0.25


@pytest.mark.parametrize(("process", "after"), [(True, "SUCCESS"), (False, "ORDERNOTEXIST")])
def test_drop_resets_the_connection(sim: Simulator, process: bool, after: str) -> None:
    sim.add_fault("drop", path=MICROPAY, process=process)
    with pytest.raises(requests.ConnectionError):
        pay(sim, code("1234"))
    answer = query(sim)
    assert (state(answer) if process else err(answer)) == after


def test_hang_blocks_past_the_read_timeout(sim: Simulator) -> None:
    sim.add_fault("hang", path=ORDERQUERY)
    pay(sim, code("1234"))
    with pytest.raises(requests.ReadTimeout):
        query(sim, timeout=0.3)
    assert state(query(sim)) == "SUCCESS"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_http_5xx(sim: Simulator, status: int) -> None:
    sim.add_fault(f"http{status}", process=False)
    assert post(sim.url, MICROPAY, pay_fields(code("1234"))).status_code == status
    assert sim.ledger() == []
    sim.add_fault(f"http{status}")  # processed by default: the money moved all the same
    assert post(sim.url, MICROPAY, pay_fields(code("1234"), "T2")).status_code == status
    assert state(query(sim, "T2")) == "SUCCESS"


@pytest.mark.parametrize("kind", ["garbage", "xml_bomb"])
def test_unparseable_answers(sim: Simulator, kind: str) -> None:
    sim.add_fault(kind)
    response = post(sim.url, MICROPAY, pay_fields(code("1234")))
    assert response.status_code == 200
    with pytest.raises(WireError):
        from_xml(response.content)
    assert state(query(sim)) == "SUCCESS"


def test_badsign_is_well_formed_but_does_not_verify(sim: Simulator) -> None:
    sim.add_fault("badsign", path=MICROPAY)
    answer = from_xml(post(sim.url, MICROPAY, pay_fields(code("1234"))).content)
    assert answer["result_code"] == "SUCCESS" and len(answer["sign"]) == 32
    assert not verify(answer, SANDBOX.api_key, "MD5")
    assert query(sim)["trade_state"] == "SUCCESS"  # call() verifies: the fault is used up


def test_wrong_trade_answers_about_another_out_trade_no(sim: Simulator) -> None:
    sim.add_fault("wrong_trade", path=MICROPAY)
    answer = pay(sim, code("1234"), sign_type="HMAC-SHA256")  # validly signed
    assert answer["out_trade_no"] != "T1"
    assert sim.trade("T1")["channel_trade_no"] != answer["transaction_id"]  # type: ignore[index]


def test_faults_apply_to_their_path_and_count(sim: Simulator) -> None:
    sim.add_fault("http503", path=ORDERQUERY, count=2)
    pay(sim, code("1234"))
    statuses = [post(sim.url, ORDERQUERY, {"out_trade_no": "T1"}).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert sim.faults() == []


# --- /_sim/ control endpoint ------------------------------------------------------------------


def test_control_endpoint_scripts_faults_ledger_and_reset(sim: Simulator, clock: Clock) -> None:
    control = sim.url + "/_sim/"
    assert requests.post(
        control + "script",
        timeout=5,
        json={"auth_code": code("4321"), "outcome": "confirm_later", "confirm_delay_s": 3},
    ).ok
    assert requests.post(
        control + "faults", timeout=5, json={"kind": "drop", "path": ORDERQUERY, "process": False}
    ).ok
    assert requests.get(control + "faults", timeout=5).json()["faults"][0]["kind"] == "drop"
    assert err(pay(sim, code("4321"))) == "USERPAYING"
    with pytest.raises(requests.ConnectionError):
        query(sim)
    clock.now = T0 + 3
    assert state(query(sim)) == "SUCCESS"
    ledger = requests.get(control + "ledger", timeout=5).json()
    assert ledger["trades"][0]["outcome"] == "confirm_later"
    # the dropped query never reached the channel (process=False): not counted
    assert ledger["calls"] == {"wechat": {"T1": {"micropay": 1, "orderquery": 1}}}
    assert ledger["violations"] == []
    assert requests.post(control + "reset", timeout=5).json() == {"ok": True}
    assert sim.ledger() == [] and sim.calls() == {}
    assert pay(sim, code("4321"))["result_code"] == "SUCCESS"  # the script is gone too


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("faults", {"kind": "meteor"}, 400),
        ("faults", {"kind": "latency"}, 400),
        ("faults", {"kind": "drop", "count": 0}, 400),
        ("script", {"auth_code": code("1234"), "outcome": "maybe"}, 400),
        ("script", {"auth_code": code("1234"), "outcome": "paid", "colour": "red"}, 400),
        ("nothing", {}, 404),
    ],
)
def test_control_endpoint_refuses_bad_requests(
    sim: Simulator, path: str, body: dict[str, Any], status: int
) -> None:
    response = requests.post(sim.url + "/_sim/" + path, json=body, timeout=5)
    assert response.status_code == status
    assert response.json()["error"]


def test_control_endpoint_describes_the_sandbox(sim: Simulator) -> None:
    info = requests.get(sim.url + "/_sim/", timeout=5).json()
    assert info["channels"]["wechat"] == {"appid": SANDBOX.appid, "mch_id": SANDBOX.mch_id}
    assert {"ending": "0001", "outcome": "confirm_later", "wechat": code("0001")} in (
        info["sandbox_codes"]
    )
    assert "xml_bomb" in info["fault_kinds"]
    assert requests.post(sim.url + "/_sim/faults", data=b"{", timeout=5).status_code == 400
    assert requests.post(sim.url + "/pay/nothing", timeout=5).status_code == 404


# --- HTTPS with the merchant's client certificate ---------------------------------------------


def test_https_secapi_needs_the_client_certificate(sim_pki: TestPki, clock: Clock) -> None:
    with Simulator(wechat=SANDBOX, tls=sim_pki.server_tls(), clock=clock) as sim:
        assert sim.url.startswith("https://127.0.0.1:")
        verify_ca = str(sim_pki.ca_cert_file)
        client = (str(sim_pki.client_cert_file), str(sim_pki.client_key_file))
        assert pay(sim, code("0002"), verify=verify_ca)["result_code"] == "FAIL"  # USERPAYING
        clock.now = T0 + 20
        refused = reverse(sim, verify=verify_ca)
        assert (refused["return_code"], refused["return_msg"]) == ("FAIL", "证书验证失败")
        assert reverse(sim, verify=verify_ca, cert=client)["result_code"] == "SUCCESS"
        with pytest.raises(requests.exceptions.SSLError):  # our CA, not the system's
            requests.get(sim.url + "/_sim/", timeout=5)


def test_https_without_client_certificate_requirement(sim_pki: TestPki, clock: Clock) -> None:
    tls = sim_pki.server_tls(require_client_cert_on_secapi=False)
    with Simulator(wechat=SANDBOX, tls=tls, clock=clock) as sim:
        pay(sim, code("0002"), verify=str(sim_pki.ca_cert_file))
        clock.now = T0 + 20
        assert reverse(sim, verify=str(sim_pki.ca_cert_file))["result_code"] == "SUCCESS"


def test_test_pki_files(tmp_path: Path) -> None:
    pki = make_test_pki(tmp_path / "pki")
    for key in (pki.server_key_file, pki.client_key_file):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert key.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    before = pki.client_cert_file.read_bytes()
    assert make_test_pki(tmp_path / "pki", reuse=True).client_cert_file.read_bytes() == before
    assert make_test_pki(tmp_path / "pki").client_cert_file.read_bytes() != before


# --- life cycle --------------------------------------------------------------------------------


def test_stop_does_not_wait_for_a_hanging_request() -> None:
    sim = Simulator(wechat=SANDBOX, hang_s=60).start()
    outcome: list[BaseException] = []
    sim.add_fault("hang")

    def client() -> None:
        try:
            pay(sim, code("1234"), timeout=30)
        except requests.RequestException as error:
            outcome.append(error)

    thread = threading.Thread(target=client)
    thread.start()
    deadline = time.monotonic() + 5
    while sim.trade("T1") is None:  # the request is in, processed, and now hanging
        assert time.monotonic() < deadline
    started = time.monotonic()
    sim.stop()
    thread.join(timeout=5)
    assert time.monotonic() - started < 2
    assert not thread.is_alive()
    assert isinstance(outcome[0], requests.ConnectionError)
    sim.stop()  # idempotent
    with pytest.raises(RuntimeError):
        sim.start()


def test_run_forever_stops_on_sigterm() -> None:
    seen: list[str] = []

    def ready(sim: Simulator) -> None:
        seen.append(requests.get(sim.url + "/_sim/", timeout=5).json()["url"])
        signal.raise_signal(signal.SIGTERM)

    previous = signal.getsignal(signal.SIGTERM)
    sim = Simulator(wechat=SANDBOX)
    run_forever(sim, on_ready=ready)
    assert seen and seen[0].startswith("http://127.0.0.1:")
    assert signal.getsignal(signal.SIGTERM) == previous
    with pytest.raises(RuntimeError):
        _ = sim.port  # stopped


# --- the daily bill ------------------------------------------------------------------------------


def bill(sim: Simulator, day: str, **fields: str) -> requests.Response:
    return post(sim.url, "/pay/downloadbill", {"bill_date": day, **fields})


def test_downloadbill(sim: Simulator, clock: Clock) -> None:
    pay(sim, code("1234"), "PAID", amount=1250)
    pay(sim, code("0007"), "LATE", amount=300)
    pay(sim, code("0003"), "POOR", amount=999)  # declined: no money, not in the bill
    clock.now = T0 + 30
    reverse(sim, "LATE")
    day = datetime.fromtimestamp(T0, BEIJING).strftime("%Y%m%d")
    response = bill(sim, day)
    assert response.status_code == 200
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0][:3] == ["交易时间", "公众账号ID", "商户号"] and rows[-2][0] == "总交易单数"
    details, summary = rows[1:-2], rows[-1]
    assert all(cell.startswith("`") for row in [*details, summary] for cell in row)
    status = {(r[6].lstrip("`"), r[9].lstrip("`")) for r in details}
    assert status == {("PAID", "SUCCESS"), ("LATE", "SUCCESS"), ("LATE", "REVOKED")}
    assert {r[8] for r in details} == {"`MICROPAY"}
    assert summary[:3] == ["`3", "`15.50", "`3.00"]
    assert summary[4] == "`0.07500"  # 0.6 % of 12.50 yuan
    assert len(bill(sim, day, bill_type="SUCCESS").text.splitlines()) == 2 + 3
    gzipped = bill(sim, day, bill_type="REFUND", tar_type="GZIP").content
    refunds = list(csv.reader(io.StringIO(gzip.decompress(gzipped).decode())))[1:-2]
    assert [(r[6], r[9], r[16]) for r in refunds] == [("`LATE", "`REVOKED", "`3.00")]


def test_downloadbill_without_trades_or_with_a_bad_date(sim: Simulator) -> None:
    answer = from_xml(bill(sim, "20250101").content)
    assert answer == {"return_code": "FAIL", "return_msg": "No Bill Exist", "error_code": "20002"}
    assert from_xml(bill(sim, "20251341").content)["error_code"] == "20001"
    assert json.loads(json.dumps(sim.ledger())) == []


def test_a_refund_is_a_row_of_its_own_in_the_bill(sim: Simulator, clock: Clock) -> None:
    pay(sim, code("1234"), "PAID", amount=1250)
    clock.now = T0 + 30
    answer = call(sim, "/secapi/pay/refund", {"out_trade_no": "PAID", "out_refund_no": "PAIDR1",
                                             "total_fee": "1250", "refund_fee": "200"})
    assert answer["result_code"] == "SUCCESS" and answer["out_refund_no"] == "PAIDR1"
    again = call(sim, "/secapi/pay/refund", {"out_trade_no": "PAID", "out_refund_no": "PAIDR1",
                                            "total_fee": "1250", "refund_fee": "200"})
    assert again["refund_id"] == answer["refund_id"]  # the same number: the same refund
    found = call(sim, "/pay/refundquery", {"out_refund_no": "PAIDR1"})
    assert (found["refund_count"], found["refund_status_0"]) == ("1", "SUCCESS")
    day = datetime.fromtimestamp(T0, BEIJING).strftime("%Y%m%d")
    rows = list(csv.reader(io.StringIO(bill(sim, day).text)))
    details, summary = rows[1:-2], rows[-1]
    refund = [r for r in details if r[9] == "`REFUND"]
    assert [(r[6], r[15], r[16], r[14]) for r in refund] == [
        ("`PAID", "`PAIDR1", "`2.00", "`" + answer["refund_id"])]
    assert summary[:3] == ["`2", "`12.50", "`2.00"]
    trade = sim.trade("PAID")
    assert trade is not None and len(trade["refunds"]) == 1  # type: ignore[arg-type]
    assert trade["refunds"][0]["requests"] == 2  # type: ignore[index]


def test_latency_knob_plays_a_round_trip() -> None:
    """``/_sim/latency`` sets the round trip every gateway request takes (DESIGN §7's 80 ms);
    answers stay the same. (How long a request then takes is measured by
    bench/confirm_delay.py --rtt-ms, not asserted here.)"""
    from posd.channels.simulator import Simulator as _Simulator
    from posd.channels.simulator import WechatSandbox as _Sandbox

    with _Simulator(wechat=_Sandbox.example()) as simulator:
        url = simulator.url
        assert requests.get(url + "/_sim/latency", timeout=5).json() == {"round_trip_ms": 0.0}
        set_it = requests.post(url + "/_sim/latency", json={"round_trip_ms": 80}, timeout=5)
        assert set_it.json() == {"ok": True, "round_trip_ms": 80.0}
        assert simulator.round_trip_s == 0.08
        assert requests.get(url + "/_sim/latency", timeout=5).json() == {"round_trip_ms": 80.0}
        answer = requests.post(url + "/pay/orderquery", data=b"<xml></xml>", timeout=5)
        assert answer.status_code == 200 and b"return_code" in answer.content
        for bad in ({"round_trip_ms": "80"}, {"round_trip_ms": -1}, {"ms": 80}):
            refused = requests.post(url + "/_sim/latency", json=bad, timeout=5)
            assert refused.status_code == 400, bad
