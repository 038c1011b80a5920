# SPDX-License-Identifier: MIT
"""A channel is one package plus one registry entry (issue 11): a channel that exists only
in this file -- its config model, client, wire format, code prefix, policy, doctor check,
receipt labels and simulator gateway -- is registered, and takes sales end to end through
the real daemon, API, engine, store, print queue and simulator, with no other module of
posd changed or told about it.

TestPay's wire format: ``{"data": {...}, "sign": HEX}`` POSTed to
``/testpay/{pay,query,reverse}``, ``sign`` being HMAC-SHA256 of ``data`` as sorted JSON under
a shared key; answers are signed the same way. Its codes are 18 digits starting 99; the
simulator's sandbox endings (DESIGN §5) apply to them as to every channel.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests
from pydantic import field_validator, model_validator

from posd.channels import registry, transport
from posd.channels.simulator import Simulator, TestPki
from posd.channels.simulator.gateway import Reply, Request, SimulatorContext, Tamper
from posd.channels.simulator.ledger import PayAnswer, PayRequest, ReverseAnswer, Trade, TradeState
from posd.channels.spec import ChannelSpec, Till
from posd.checks import Check, channel_verdict, probe_trade_no
from posd.config_base import ChannelConfig, check_url, optional_path, read_secret
from posd.core.codes import PrefixRule
from posd.core.money import Fen
from posd.core.sale import (
    ChannelResult, Closed, Declined, NotFound, Paid, Pending, Refused, Unknown,
)
from posd.config import load
from posd.core.errors import ConfigError
from posd.daemon import Daemon
from posd.doctor_checks import check_channels
from tests.sandbox import FAST, MIN_REVERSE, WECHAT, config, make_config, secret, to_toml
from tests.waiting import TOKEN, wait_until_final

KEY = b"testpay-shared-key-0123456789abcdef"


def signed(key: bytes, data: dict[str, Any]) -> bytes:
    text = json.dumps(data, sort_keys=True).encode()
    return json.dumps({"data": data, "sign": hmac.new(key, text, hashlib.sha256).hexdigest()},
                      ensure_ascii=False).encode()


def verified(key: bytes, body: bytes) -> dict[str, Any] | None:
    """``data`` of a signed body, None when it is not JSON or its signature is wrong."""
    try:
        document = json.loads(body)
        data, sign = document["data"], str(document["sign"])
    except (ValueError, KeyError, TypeError):
        return None
    text = json.dumps(data, sort_keys=True).encode()
    good = hmac.compare_digest(sign, hmac.new(key, text, hashlib.sha256).hexdigest())
    return data if good and isinstance(data, dict) else None


# --- the channel package: config, client, doctor, gateway, spec --------------------------


class TpConfig(ChannelConfig):
    url: str = ""
    key_file: Path | None = None
    ca_file: Path | None = None

    _paths = field_validator("key_file", "ca_file", mode="before")(optional_path)
    _url = field_validator("url")(check_url)

    @model_validator(mode="after")
    def _required(self) -> TpConfig:
        self.missing("url", "key_file")
        return self

    def secret_files(self) -> list[tuple[str, Path | None]]:
        return [("key_file", self.key_file)]

    def public_files(self) -> list[tuple[str, Path | None]]:
        return [("ca_file", self.ca_file)]

    def endpoint(self) -> tuple[str, str | bool]:
        return self.url + "/", str(self.ca_file) if self.ca_file else True


class TpClient:
    name = "testpay"

    def __init__(self, section: TpConfig, till: Till) -> None:
        self._section = section
        self._key = read_secret(section.key_file, "channels.testpay.key_file")
        self._till = till
        self._http = transport.session()

    def _call(self, method: str, fields: dict[str, Any]) -> dict[str, Any] | Unknown:
        answer = transport.exchange(
            self._http, f"{self._section.url}/{method}", signed(self._key, fields),
            headers={"Content-Type": "application/json"},
            timeout=(self._section.connect_timeout_s, self._section.read_timeout_s),
            verify=str(self._section.ca_file) if self._section.ca_file else True,
            limit=65536, what=f"testpay {method}")
        if isinstance(answer, Unknown):
            return answer
        status, body = answer
        if status != 200:
            return Unknown(f"testpay {method}: HTTP {status}")
        if (data := verified(self._key, body)) is None:
            return Unknown(f"testpay {method}: the answer is not signed by TestPay")
        return data

    def pay(self, out_trade_no: str, amount: Fen, auth_code: str, subject: str) -> ChannelResult:
        return _result(self._call("pay", {"out_trade_no": out_trade_no, "amount": int(amount),
                                          "code": auth_code, "subject": subject,
                                          "till": self._till.terminal_id}))

    def query(self, out_trade_no: str, amount: Fen) -> ChannelResult:
        return _result(self._call("query", {"out_trade_no": out_trade_no}))

    def reverse(self, out_trade_no: str) -> ChannelResult:
        return _result(self._call("reverse", {"out_trade_no": out_trade_no}))

    def close(self) -> None:
        self._http.close()


def _result(answer: dict[str, Any] | Unknown) -> ChannelResult:
    if isinstance(answer, Unknown):
        return answer
    status, trade_no = answer.get("status"), str(answer.get("trade_no", ""))
    match status:
        case "paid":
            return Paid(trade_no, Fen(int(answer["amount"])))
        case "waiting":
            return Pending("the customer is confirming")
        case "declined":
            return Declined(str(answer.get("code", "DECLINED")), "declined by TestPay")
        case "not_found":
            return NotFound("no such trade")
        case "closed":
            return Closed("closed", refunded=bool(answer.get("refunded")))
        case "retry":
            return Pending("repeat the reverse")
        case "too_late":
            return Refused("TOO_LATE", "too late to reverse", too_late=True)
        case _:
            return Unknown(f"testpay: status {status!r}")


def doctor(section: TpConfig, till: Till) -> list[Check]:
    client = TpClient(section, till)
    try:
        return [channel_verdict("testpay", client.query(probe_trade_no(), Fen(1)),
                                "the key in key_file is not TestPay's")]
    finally:
        client.close()


@dataclass(frozen=True)
class TpSandbox:
    key: bytes = KEY


class TpGateway:
    """TestPay as the simulator plays it: the shared ledger behind a JSON wire format."""

    name = "testpay"

    def __init__(self, sandbox: TpSandbox, context: SimulatorContext) -> None:
        self._key = sandbox.key
        self._ledger = context.ledger
        self._clock = context.clock
        self._min_reverse_s = context.min_reverse_delay_s
        self._numbers = itertools.count(1)

    def handles(self, path: str) -> bool:
        return path.startswith("/testpay/")

    def fault_paths(self, request: Request) -> tuple[str, ...]:
        return (request.path,)

    def tamper(self, reply: Reply, kind: Tamper) -> Reply:
        return replace(reply, body=reply.body.replace(b'"sign": "', b'"sign": "0'))

    def handle(self, request: Request) -> Reply:
        if (fields := verified(self._key, request.body)) is None:
            return Reply(401, b"not signed with the merchant's key")
        now, out_trade_no = self._clock(), str(fields["out_trade_no"])
        match request.path.rsplit("/", 1)[1]:
            case "pay":
                answer, trade = self._ledger.pay(PayRequest(
                    "testpay", out_trade_no, str(fields["code"]), Fen(int(fields["amount"])),
                    f"TP{next(self._numbers):08d}", subject=str(fields.get("subject", ""))), now)
                status = _pay_status(answer, trade)
            case "query":
                status = _trade_status(self._ledger.find("testpay", now, out_trade_no=out_trade_no))
            case "reverse":
                found = self._ledger.find("testpay", now, out_trade_no=out_trade_no)
                status = _reverse_status(self._ledger.reverse(found, now,
                                                              min_delay_s=self._min_reverse_s))
            case _:
                return Reply(404, b"no such method")
        return Reply(200, signed(self._key, status), "application/json")


def _pay_status(answer: PayAnswer, trade: Trade) -> dict[str, Any]:
    if answer in (PayAnswer.PAID, PayAnswer.ALREADY_PAID):
        return {"status": "paid", "trade_no": trade.channel_trade_no, "amount": int(trade.amount)}
    if answer is PayAnswer.WAITING:
        return {"status": "waiting"}
    if answer is PayAnswer.DECLINED:
        return {"status": "declined", "code": trade.outcome.value.upper()}
    return {"status": "error"}  # error_but_paid, hang_but_paid, mismatch, ...: unknown


def _trade_status(trade: Trade | None) -> dict[str, Any]:
    if trade is None:
        return {"status": "not_found"}
    match trade.state:
        case TradeState.PAID:
            return {"status": "paid", "trade_no": trade.channel_trade_no,
                    "amount": int(trade.amount)}
        case TradeState.WAITING:
            return {"status": "waiting"}
        case TradeState.FAILED:
            return {"status": "declined", "code": trade.outcome.value.upper()}
        case _:
            return {"status": "closed", "refunded": trade.state is TradeState.REFUNDED}


def _reverse_status(verdict: ReverseAnswer) -> dict[str, Any]:
    return {
        ReverseAnswer.NOT_FOUND: {"status": "not_found"},
        ReverseAnswer.TOO_EARLY: {"status": "error"},
        ReverseAnswer.EXPIRED: {"status": "too_late"},
        ReverseAnswer.RETRY: {"status": "retry"},
        ReverseAnswer.CLOSED: {"status": "closed", "refunded": False},
        ReverseAnswer.REFUNDED: {"status": "closed", "refunded": True},
    }[verdict]


SPEC = ChannelSpec(
    name="testpay", label="TestPay", label_zh="测试支付",
    code_rules=(PrefixRule("testpay", ("99",), 18, 18),), config=TpConfig, policy=FAST,
    connect=TpClient, doctor=doctor,
    simulate=lambda sandbox, context: TpGateway(sandbox, context),
)


# --- the proof ----------------------------------------------------------------------------


@pytest.fixture(name="testpay")
def _registered() -> Iterator[ChannelSpec]:
    registry.register(SPEC)
    yield SPEC
    registry.unregister(SPEC.name)


def _config(tmp: Path, sim_url: str, pki: TestPki) -> dict[str, Any]:
    data = make_config(tmp, sim_url, pki, wechat=False, printer={"kind": "console"})
    data["channels"]["testpay"] = {
        "url": f"{sim_url}/testpay", "key_file": str(secret(tmp / "testpay.key", KEY.decode())),
        "ca_file": str(pki.ca_cert_file), "connect_timeout_s": 1.0, "read_timeout_s": 1.0}
    return data


def test_a_registered_channel_takes_sales_end_to_end(
        tmp_path: Path, pki: TestPki, testpay: ChannelSpec) -> None:
    sim = Simulator(wechat=WECHAT, sandboxes={"testpay": TpSandbox()}, tls=pki.server_tls(),
                    min_reverse_delay_s=MIN_REVERSE, confirm_delay_s=0.6).start()
    receipts = io.StringIO()
    cfg = config(_config(tmp_path, sim.url, pki))
    assert cfg.channels.enabled == ("testpay",)
    daemon = Daemon.build(cfg, receipts_to=receipts)
    daemon.start()
    try:
        url = f"http://127.0.0.1:{daemon.api.port}"
        headers = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(f"{url}/v1/health", timeout=5).json()["channels"] == ["testpay"]
        outcomes = {}
        for code in ("990000000000001234", "990000000000000001", "990000000000000003",
                     "990000000000000002"):
            created = requests.post(f"{url}/v1/sales", json={"amount": 1250, "auth_code": code},
                                    headers=headers, timeout=10)
            assert created.status_code == 201, created.text
            sale = created.json()
            if code.endswith("0002"):  # never confirms: the cashier cancels, posd reverses
                seen = requests.get(f"{url}/v1/sales/{sale['id']}", headers=headers, timeout=15,
                                    params={"wait": 10, "seen_state": "paying"}).json()
                assert seen["state"] == "confirming", seen
                cancel = requests.post(f"{url}/v1/sales/{sale['id']}/cancel", headers=headers,
                                       timeout=10)
                assert cancel.json()["state"] == "reversing", cancel.text
            outcomes[code[-4:]] = wait_until_final(url, sale)
        assert {k: v["state"] for k, v in outcomes.items()} == {
            "1234": "paid", "0001": "paid", "0003": "declined", "0002": "reversed"}
        paid = outcomes["1234"]
        assert paid["channel"] == "testpay" and paid["channel_trade_no"].startswith("TP")
        assert paid["auth_code"] == "9900…1234"
        trade = sim.trade(paid["out_trade_no"], "testpay")
        assert trade is not None and trade["state"] == "paid"
        assert sim.trade(outcomes["0002"]["out_trade_no"], "testpay")["state"] == "reversed"  # type: ignore[index]
        assert not sim.violations()
        assert "TestPay" in receipts.getvalue()  # the receipt names it, from its spec
        # A WeChat code is refused with the channel's name: this till takes only TestPay.
        refused = requests.post(f"{url}/v1/sales", json={"amount": 100,
                                                         "auth_code": "134567890123451234"},
                                headers=headers, timeout=10)
        assert refused.status_code == 422 and "WeChat Pay is not accepted" in refused.text
        # posd doctor asks the channel's own check.
        (check,) = check_channels(cfg)
        assert (check.name, check.result) == ("testpay", "ok"), check
    finally:
        daemon.stop()
        sim.stop()


def test_a_registered_channels_config_is_checked_by_its_own_model(
        tmp_path: Path, pki: TestPki, testpay: ChannelSpec) -> None:
    data = _config(tmp_path, "https://127.0.0.1:9", pki)
    data["channels"]["testpay"]["colour"] = "blue"
    with pytest.raises(ValueError, match=r"channels\.testpay\.colour"):
        config(data)
    del data["channels"]["testpay"]["colour"], data["channels"]["testpay"]["key_file"]
    with pytest.raises(ValueError, match="enabled but missing: key_file"):
        config(data)


def test_an_unregistered_channel_is_an_unknown_key(tmp_path: Path, pki: TestPki) -> None:
    path = tmp_path / "config.toml"
    path.write_text(to_toml(_config(tmp_path, "https://127.0.0.1:9", pki)), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"channels\.testpay: unknown key"):
        load(path)


def test_a_channel_that_replaces_another_takes_its_codes() -> None:
    """WeChat Pay v3 ``replaces`` v2: WeChat codes go to v3 when it is enabled, whether or
    not v2 still is; v2 alone keeps them; neither: refused with the app's name."""
    from posd.core.codes import CodeError, route

    wechat_code = "134567890123450000"
    rules = registry.code_rules()
    labels = registry.english_labels()
    for enabled, wanted in ((("wechat",), "wechat"), (("wechat", "wechat_v3"), "wechat_v3"),
                            (("wechat_v3",), "wechat_v3")):
        assert route(wechat_code, registry.takers(enabled), rules, labels) == wanted, enabled
    with pytest.raises(CodeError, match="WeChat Pay is not accepted"):
        route(wechat_code, registry.takers(("alipay",)), rules, labels)
    assert registry.bill_members("wechat_v3") == {"wechat_v3", "wechat"}
    assert registry.bill_members("alipay") == {"alipay"}
    assert registry.labels()["wechat_v3"] == registry.labels()["wechat"]  # one app to people
