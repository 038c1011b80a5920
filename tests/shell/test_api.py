# SPDX-License-Identifier: MIT
"""The local HTTP API over real HTTP: ApiServer on 127.0.0.1:0, ``requests`` as the register.

Behind the API: a real Engine on a real Store (SQLite file in tmp_path) and either
:class:`ScriptedChannel` for both channels (posd's own Channel seam, scripted by the code's
last digits, so a test decides when a customer confirms) or, in the last section, the real
WeChat Pay client against the channel simulator over HTTPS. Waits are on the API's
long-poll or on Events, never on the clock.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from posd.api import MAX_BODY_BYTES, ApiServer, create_app
from posd.channels import Channel
from posd.channels.simulator import Simulator, TestPki, WechatSandbox, make_test_pki
from posd.config import Config
from posd.daemon import build_channels
from posd.engine import Engine
from posd.core.sale import Policy, Sale
from posd.store import Store
from tests.waiting import wait_until_final
from tests.shell.scripted_channel import ScriptedChannel

TOKEN = "test-token-5b0c6a3e9f1d2c47"
TZ = ZoneInfo("Asia/Shanghai")
TIMEOUT = 15  # per HTTP request: a broken test fails instead of hanging

PAID_WX = "134567890123451234"
PENDING_WX = "134567890123450001"
DECLINED_WX = "134567890123450003"
WRONG_AMOUNT_WX = "134567890123450009"
PAID_ALI = "281234567890121234"

SALE_KEYS = {
    "id", "order_ref", "amount", "currency", "state", "final", "channel", "out_trade_no",
    "channel_trade_no", "auth_code", "decline_code", "message", "refunded", "subject",
    "created_at", "paid_at", "updated_at", "deadline_at", "refunded_amount",
}

# Fast timing so that sales settle in milliseconds; no 15 s WeChat reverse delay in tests.
FAST = Policy(deadline_s=30.0, query_intervals_s=(0.02,), min_reverse_delay_s=0.0,
              reverse_backoff_s=(0.05,))


class Clock:
    """Wall clock plus an offset the test can move (to make "yesterday's" sales)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


class WatchedEngine(Engine):
    """The real Engine, telling the test when an API long-poll has started waiting."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = threading.Event()

    def wait_for_change(self, sale_id: int, since: float, timeout: float) -> Sale:
        self.waiting.set()
        return super().wait_for_change(sale_id, since, timeout)


@dataclass
class Till:
    url: str
    engine: WatchedEngine
    clock: Clock
    scripted: dict[str, ScriptedChannel]  # empty when the simulator is behind the engine
    http: requests.Session = field(default_factory=requests.Session)
    engine_stopped: bool = False

    def post(self, path: str, body: Any = None, **kwargs: Any) -> requests.Response:
        return self.http.post(self.url + path, json=body, timeout=TIMEOUT, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.http.get(self.url + path, timeout=TIMEOUT, **kwargs)

    def sell(self, amount: int, code: str | None = None, order: str | None = None,
             ) -> dict[str, Any]:
        body: dict[str, Any] = {"amount": amount, "order_ref": order, "auth_code": code}
        response = self.post("/v1/sales", body)
        assert response.status_code == 201, response.text
        return response.json()

    def settle(self, sale: dict[str, Any]) -> dict[str, Any]:
        """Follow the sale with long-polls until it is final."""
        return wait_until_final(self.url, sale, token=TOKEN, verify=self.http.verify)

    def stop_engine(self) -> None:
        self.engine.stop(timeout=5)
        self.engine_stopped = True


def _secret(path: Path, text: str) -> Path:
    path.write_text(text, encoding="ascii")
    path.chmod(0o600)
    return path


def make_config(directory: Path, wechat: dict[str, str] | None = None, *,
                alipay: bool = True) -> Config:
    """A minimal config (both channels by default), its secret files written 0600."""
    wechat = wechat or {
        "appid": "wx2421b1c4370ec43b", "mch_id": "1900000109", "base_url": "http://127.0.0.1:9",
        "api_key_file": str(_secret(directory / "wechat-api-key", "k" * 32)),
        "cert_file": str(_secret(directory / "apiclient_cert.pem", "cert")),
        "key_file": str(_secret(directory / "apiclient_key.pem", "key")),
    }
    channels: dict[str, Any] = {"wechat": wechat}
    if alipay:
        channels["alipay"] = {
            "app_id": "2021000000000000", "gateway_url": "http://127.0.0.1:9/gateway.do",
            "app_private_key_file": str(_secret(directory / "alipay-app-key.pem", "key")),
            "alipay_public_key_file": str(_secret(directory / "alipay-public.pem", "pub")),
        }
    return Config.model_validate({
        "store": {"id": "S001", "name": "Test Mart", "terminal_id": "T01"},
        "database": {"path": str(directory / "posd.db")},
        "api": {"listen": "127.0.0.1:0",
                "token_file": str(_secret(directory / "api-token", TOKEN))},
        "channels": channels,
    })


@contextmanager
def running_till(config: Config, channels: dict[str, Channel]) -> Iterator[Till]:
    store = Store.open(config.database.path)
    clock = Clock()
    engine = WatchedEngine(config, store, channels, clock=clock,
                           policies={"wechat": FAST, "alipay": FAST})
    engine.start()
    server = ApiServer(create_app(engine, TOKEN, store_timezone=TZ), config.api.host,
                       config.api.port)
    server.start()
    scripted = {n: c for n, c in channels.items() if isinstance(c, ScriptedChannel)}
    till = Till(server.url, engine, clock, scripted)
    till.http.headers["Authorization"] = f"Bearer {TOKEN}"
    try:
        yield till
    finally:
        till.http.close()
        server.stop()
        if not till.engine_stopped:
            till.stop_engine()
        store.close()


@pytest.fixture
def till(tmp_path: Path) -> Iterator[Till]:
    channels: dict[str, Channel] = {"wechat": ScriptedChannel("wechat"),
                                    "alipay": ScriptedChannel("alipay")}
    with running_till(make_config(tmp_path), channels) as running:
        yield running


def _local_day(iso: str) -> date:
    return datetime.fromisoformat(iso).astimezone(TZ).date()


# --- auth, health, docs ----------------------------------------------------------------


def test_health_needs_no_token(till: Till) -> None:
    response = requests.get(till.url + "/v1/health", timeout=TIMEOUT)
    assert response.status_code == 200
    health = response.json()
    assert health["status"] == "ok"
    assert health["degraded"] == []
    assert set(health["channels"]) == {"wechat", "alipay"}
    assert health["version"]


def test_health_head_and_other_methods(till: Till) -> None:
    """GET and HEAD are answered ahead of the router (HealthFirst), HEAD with GET's headers
    and no body; any other method is the router's 405 (401 without the token), as before."""
    got = requests.get(till.url + "/v1/health", timeout=TIMEOUT)
    head = requests.head(till.url + "/v1/health", timeout=TIMEOUT)
    assert got.headers["content-type"] == head.headers["content-type"] == "application/json"
    assert head.status_code == 200 and head.content == b""
    assert int(got.headers["content-length"]) == len(got.content)
    assert int(head.headers["content-length"]) == len(got.content)  # the same answer's size
    posted = till.post("/v1/health")  # with the token: only GET and HEAD are public
    assert posted.status_code == 405
    assert posted.json() == {"detail": "Method Not Allowed"}


def test_health_down_when_the_database_is_unusable(till: Till) -> None:
    till.stop_engine()
    till.engine._store.close()
    for answer in (requests.get(till.url + "/v1/health", timeout=TIMEOUT),
                   requests.head(till.url + "/v1/health", timeout=TIMEOUT)):
        assert answer.status_code == 503
    health = requests.get(till.url + "/v1/health", timeout=TIMEOUT).json()
    assert health["status"] == "down"
    assert health["version"]
    assert health["degraded"] == ["database error: Cannot operate on a closed database."]


def test_openapi_and_docs_need_no_token(till: Till) -> None:
    spec = requests.get(till.url + "/openapi.json", timeout=TIMEOUT).json()
    assert {"/v1/sales", "/v1/sales/{sale_id}", "/v1/sales/{sale_id}/cancel",
            "/v1/reports/daily", "/v1/health"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert set(spec["components"]["schemas"]["SaleOut"]["properties"]) == SALE_KEYS
    docs = requests.get(till.url + "/docs", timeout=TIMEOUT)
    assert docs.status_code == 200
    assert "text/html" in docs.headers["content-type"]


@pytest.mark.parametrize(
    ("headers", "error"),
    [
        ({}, None),
        ({"Authorization": "Bearer not-the-token"}, "invalid_token"),
        ({"Authorization": f"Basic {TOKEN}"}, "invalid_token"),
        ({"Authorization": f"Bearer {TOKEN}x"}, "invalid_token"),
        ({"Authorization": "Bearer"}, "invalid_token"),
    ],
)
@pytest.mark.parametrize(("method", "path"), [("GET", "/v1/sales"), ("POST", "/v1/sales"),
                                              ("GET", "/v1/no-such-path")])
def test_requests_without_the_right_token_are_refused(
    till: Till, headers: dict[str, str], error: str | None, method: str, path: str
) -> None:
    response = requests.request(method, till.url + path, headers=headers, json={"amount": 100},
                                timeout=TIMEOUT)
    assert response.status_code == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer")
    assert (error in challenge) if error else ("error=" not in challenge)
    assert "Authorization: Bearer" in response.json()["detail"]
    assert till.engine.list_sales() == []


def test_the_scheme_name_is_case_insensitive(till: Till) -> None:
    response = requests.get(till.url + "/v1/sales", headers={"Authorization": f"bearer {TOKEN}"},
                            timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json() == {"sales": []}


# --- creating sales --------------------------------------------------------------------


def test_create_sale_returns_201_and_the_sale(till: Till) -> None:
    response = till.post("/v1/sales", {"amount": 1250, "order_ref": "R-1", "auth_code": PAID_WX,
                                       "subject": "Tea"})
    assert response.status_code == 201
    sale = response.json()
    assert set(sale) == SALE_KEYS
    assert response.headers["Location"] == f"/v1/sales/{sale['id']}"
    assert sale["amount"] == 1250
    assert sale["currency"] == "CNY"
    assert sale["order_ref"] == "R-1"
    assert sale["channel"] == "wechat"
    assert sale["auth_code"] == "1345…1234"  # masked, never the code
    assert sale["subject"] == "Tea"
    assert sale["out_trade_no"].startswith("S001T01")
    assert datetime.fromisoformat(sale["created_at"]).utcoffset() == timedelta(hours=8)
    paid = till.settle(sale)
    assert paid["state"] == "paid"
    assert paid["final"] is True
    assert paid["channel_trade_no"] == f"wechat-{sale['out_trade_no']}"
    assert datetime.fromisoformat(paid["paid_at"]) >= datetime.fromisoformat(sale["created_at"])


def test_a_sale_without_a_code_awaits_the_next_scan(till: Till) -> None:
    sale = till.sell(800, order="R-2")
    assert sale["state"] == "awaiting_code"
    assert sale["final"] is False
    assert sale["channel"] is None
    assert sale["auth_code"] is None
    assert sale["subject"] == "Test Mart"  # the store's name by default


def test_the_same_idempotency_key_returns_the_same_sale(till: Till) -> None:
    body = {"amount": 1250, "order_ref": "R-3", "auth_code": PAID_WX}
    key = {"Idempotency-Key": "register-7-tx-42"}
    first = till.post("/v1/sales", body, headers=key)
    again = till.post("/v1/sales", body, headers=key)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert len(till.engine.list_sales(order_ref="R-3")) == 1
    other = till.post("/v1/sales", {**body, "amount": 1300}, headers=key)
    assert other.status_code == 409
    assert "Idempotency-Key" in other.json()["detail"]


def test_an_order_already_paid_is_409(till: Till) -> None:
    till.settle(till.sell(500, PAID_WX, order="R-4"))
    response = till.post("/v1/sales", {"amount": 500, "order_ref": "R-4", "auth_code": PAID_ALI})
    assert response.status_code == 409
    assert response.json() == {"detail": response.json()["detail"]}
    assert "already paid" in response.json()["detail"]


def test_an_order_with_an_unresolved_sale_is_409(till: Till) -> None:
    waiting = till.sell(500, order="R-5")
    response = till.post("/v1/sales", {"amount": 500, "order_ref": "R-5"})
    assert response.status_code == 409
    assert f"unresolved sale {waiting['id']}" in response.json()["detail"]


def test_an_order_may_try_again_after_a_decline(till: Till) -> None:
    declined = till.settle(till.sell(500, DECLINED_WX, order="R-6"))
    assert declined["state"] == "declined"
    assert declined["decline_code"] == "NOTENOUGH"
    assert till.settle(till.sell(500, PAID_ALI, order="R-6"))["state"] == "paid"


@pytest.mark.parametrize(
    ("amount", "says"),
    [
        (12.5, "integer number of fen"),
        (1250.0, "integer number of fen"),
        ("1250", "integer number of fen"),
        (True, "got true"),
        (None, "integer number of fen"),
        (0, "at least 1 fen"),
        (-1, "at least 1 fen"),
        (10**20, "over the limit"),
    ],
)
def test_a_bad_amount_is_422_with_a_message(till: Till, amount: object, says: str) -> None:
    response = till.post("/v1/sales", {"amount": amount, "auth_code": PAID_WX})
    assert response.status_code == 422
    assert says in response.json()["detail"]
    assert till.engine.list_sales() == []


@pytest.mark.parametrize(
    ("code", "says"),
    [("abc", "not a payment code"), ("134567890123", "12-digit code is not a"),
     ("", "nothing was scanned")],
)
def test_a_code_that_is_not_a_payment_code_is_422(till: Till, code: str, says: str) -> None:
    response = till.post("/v1/sales", {"amount": 100, "auth_code": code})
    assert response.status_code == 422
    assert says in response.json()["detail"]
    assert till.engine.list_sales() == []


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"amount": 100, "auth_code": int(PAID_WX)}, "JSON string"),
        ({"amount": 100, "order_id": "R-1"}, "unknown field 'order_id'"),
        ({"order_ref": "R-1"}, "amount is required"),
        ([100], "JSON object"),
    ],
)
def test_other_bad_bodies_are_422_with_a_message(till: Till, body: object, says: str) -> None:
    response = till.post("/v1/sales", body)
    assert response.status_code == 422
    assert says in response.json()["detail"]


def test_a_body_that_is_not_json_is_422(till: Till) -> None:
    broken = till.http.post(till.url + "/v1/sales", data=b'{"amount": ',
                            headers={"Content-Type": "application/json"}, timeout=TIMEOUT)
    assert broken.status_code == 422
    assert "not valid JSON" in broken.json()["detail"]
    untyped = till.http.post(till.url + "/v1/sales", data=b'{"amount": 100}', timeout=TIMEOUT)
    assert untyped.status_code == 422
    assert "Content-Type: application/json" in untyped.json()["detail"]


@pytest.mark.parametrize("chunked", [False, True])
def test_an_oversized_body_is_413(till: Till, chunked: bool) -> None:
    body = b'{"amount": 100, "subject": "' + b"x" * MAX_BODY_BYTES + b'"}'
    data: Any = iter([body[i:i + 1024] for i in range(0, len(body), 1024)]) if chunked else body
    response = till.http.post(till.url + "/v1/sales", data=data, timeout=TIMEOUT,
                              headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert str(MAX_BODY_BYTES) in response.json()["detail"]
    assert till.engine.list_sales() == []


# --- reading and long-polling ------------------------------------------------------------


def test_an_unknown_sale_is_404(till: Till) -> None:
    response = till.get("/v1/sales/999")
    assert response.status_code == 404
    assert response.json() == {"detail": "no sale 999"}


def test_long_poll_returns_on_a_state_change_before_its_timeout(till: Till) -> None:
    sale = till.sell(1250, PENDING_WX)
    sale = till.get(f"/v1/sales/{sale['id']}", params={"wait": 10, "seen_state": "paying"}).json()
    assert sale["state"] == "confirming"
    till.engine.waiting.clear()
    with ThreadPoolExecutor(1) as pool:
        started = time.monotonic()
        poll = pool.submit(till.get, f"/v1/sales/{sale['id']}",
                           params={"wait": 30, "seen_state": "confirming"})
        assert till.engine.waiting.wait(5)  # the API is inside the long-poll now
        till.scripted["wechat"].confirm()
        response = poll.result(timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.json()["state"] == "paid"
    assert time.monotonic() - started < 10


def test_long_poll_without_a_change_answers_at_its_timeout(till: Till) -> None:
    sale = till.sell(300)
    started = time.monotonic()
    response = till.get(f"/v1/sales/{sale['id']}", params={"wait": 0.3})
    assert response.json()["state"] == "awaiting_code"
    assert time.monotonic() - started >= 0.3


def test_long_poll_answers_at_once_for_a_final_sale_or_a_state_not_seen(till: Till) -> None:
    paid = till.settle(till.sell(300, PAID_WX))
    started = time.monotonic()
    assert till.get(f"/v1/sales/{paid['id']}", params={"wait": 30}).json()["state"] == "paid"
    waiting = till.sell(300)
    response = till.get(f"/v1/sales/{waiting['id']}", params={"wait": 30, "seen_state": "paying"})
    assert response.json()["state"] == "awaiting_code"
    assert time.monotonic() - started < 10


def test_list_by_order_ref_and_date(till: Till) -> None:
    till.clock.offset = -86400.0
    yesterday = till.settle(till.sell(5000, PAID_WX, order="Y"))
    till.clock.offset = 0.0
    a1 = till.settle(till.sell(100, DECLINED_WX, order="A"))
    a2 = till.settle(till.sell(100, PAID_ALI, order="A"))
    b = till.sell(200, order="B")
    today = _local_day(b["created_at"])
    assert _local_day(yesterday["created_at"]) == today - timedelta(days=1)

    def ids(**params: str) -> list[int]:
        response = till.get("/v1/sales", params=params)
        assert response.status_code == 200, response.text
        return [s["id"] for s in response.json()["sales"]]

    assert ids(order_ref="A") == [a1["id"], a2["id"]]
    assert ids(date=today.isoformat()) == [a1["id"], a2["id"], b["id"]]
    assert ids() == [a1["id"], a2["id"], b["id"]]  # today by default
    assert ids(date=(today - timedelta(days=1)).isoformat()) == [yesterday["id"]]
    assert ids(order_ref="Y") == [yesterday["id"]]  # an order is found on any day
    assert ids(order_ref="Y", date=today.isoformat()) == []
    for bad in ("2024-13-01", "yesterday", "20240501"):
        response = till.get("/v1/sales", params={"date": bad})
        assert response.status_code == 422
        assert "YYYY-MM-DD" in response.json()["detail"]


# --- cancel --------------------------------------------------------------------------------


def test_cancel_a_sale_awaiting_its_code(till: Till) -> None:
    sale = till.sell(700, order="C-1")
    response = till.post(f"/v1/sales/{sale['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["state"] == "cancelled"
    assert response.json()["final"] is True
    assert till.post(f"/v1/sales/{sale['id']}/cancel").json()["state"] == "cancelled"
    assert till.sell(700, order="C-1")["state"] == "awaiting_code"  # the order is free again


def test_cancel_a_sale_in_flight_reverses_it(till: Till) -> None:
    sale = till.sell(400, PENDING_WX)
    assert till.scripted["wechat"].pending.wait(5)
    response = till.post(f"/v1/sales/{sale['id']}/cancel")
    assert response.status_code == 200
    assert response.json()["state"] in ("reversing", "reversed")
    reversed_ = till.settle(response.json())
    assert reversed_["state"] == "reversed"
    assert reversed_["refunded"] is False


def test_cancel_a_paid_sale_is_409_and_an_unknown_one_404(till: Till) -> None:
    paid = till.settle(till.sell(300, PAID_WX))
    response = till.post(f"/v1/sales/{paid['id']}/cancel")
    assert response.status_code == 409
    assert "paid" in response.json()["detail"]
    assert till.post("/v1/sales/999/cancel").status_code == 404


# --- the daily report ------------------------------------------------------------------------


def test_daily_report_figures(till: Till) -> None:
    till.clock.offset = -86400.0
    till.settle(till.sell(5000, PAID_WX))
    till.clock.offset = 0.0
    till.settle(till.sell(1250, PAID_WX))
    till.settle(till.sell(300, PAID_WX))
    till.settle(till.sell(500, DECLINED_WX))
    till.settle(till.sell(999, PAID_ALI))
    till.post(f"/v1/sales/{till.sell(700)['id']}/cancel")
    pending = till.sell(400, PENDING_WX)
    assert till.scripted["wechat"].pending.wait(5)
    till.settle(till.post(f"/v1/sales/{pending['id']}/cancel").json())
    odd = till.settle(till.sell(200, WRONG_AMOUNT_WX))
    assert odd["state"] == "needs_attention"
    today = _local_day(odd["created_at"])

    report = till.get("/v1/reports/daily", params={"date": today.isoformat()}).json()
    assert report["date"] == today.isoformat()
    wechat, none, alipay = (
        next(c for c in report["channels"] if c["channel"] == name)
        for name in ("wechat", "none", "alipay")
    )
    assert wechat["paid"] == {"count": 2, "amount": 1550}
    assert wechat["declined"] == {"count": 1, "amount": 500}
    assert wechat["reversed"] == {"count": 1, "amount": 400}
    assert wechat["needs_attention"] == {"count": 1, "amount": 200}
    assert wechat["net"] == 1550
    assert alipay["paid"] == {"count": 1, "amount": 999}
    assert none["cancelled"] == {"count": 1, "amount": 700}
    assert report["total"]["count"] == 7
    assert report["total"]["paid"] == {"count": 3, "amount": 2549}
    assert report["total"]["in_progress"] == {"count": 0, "amount": 0}
    assert report["net"] == 2549
    assert report["needs_attention"] == [odd["id"]]
    assert till.get("/v1/reports/daily").json() == report  # today by default
    before = till.get("/v1/reports/daily", params={"date": str(today - timedelta(days=1))}).json()
    assert before["net"] == 5000
    assert before["needs_attention"] == []


# --- lifecycle ---------------------------------------------------------------------------------


def test_a_stopping_engine_answers_503(till: Till) -> None:
    till.stop_engine()
    response = till.post("/v1/sales", {"amount": 100})
    assert response.status_code == 503
    assert "shutting down" in response.json()["detail"]


class BrokenEngine(Engine):
    """An engine whose store access fails with a bug (not a PosdError)."""

    def __init__(self) -> None:  # no config, store or channels: get() is all that is called
        pass

    def get(self, sale_id: int) -> Sale:
        raise RuntimeError(f"bug with a secret detail {sale_id}")


def test_an_unexpected_error_is_500_without_a_traceback() -> None:
    server = ApiServer(create_app(BrokenEngine(), TOKEN), "127.0.0.1", 0)
    server.start()
    try:
        response = requests.get(server.url + "/v1/sales/7", timeout=TIMEOUT,
                                headers={"Authorization": f"Bearer {TOKEN}"})
    finally:
        server.stop()
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error in posd; the details are in its log"}
    assert "secret" not in response.text


def test_api_server_binds_in_start_and_reports_a_port_in_use(till: Till) -> None:
    port = int(till.url.rsplit(":", 1)[1])
    assert port != 0
    busy = ApiServer(create_app(till.engine, TOKEN), "127.0.0.1", port)
    with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
        busy.start()
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass  # the first server is unharmed


# --- end to end: the real WeChat Pay client against the channel simulator over HTTPS ------


@pytest.fixture
def sandbox() -> WechatSandbox:
    return WechatSandbox.example()


@pytest.fixture(scope="module")
def wire_pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def simulator(sandbox: WechatSandbox, wire_pki: TestPki) -> Iterator[Simulator]:
    with Simulator(wechat=sandbox, tls=wire_pki.server_tls(), confirm_delay_s=0.5,
                   min_reverse_delay_s=0.0) as sim:
        yield sim


@pytest.fixture
def wire_till(tmp_path: Path, sandbox: WechatSandbox, simulator: Simulator,
              wire_pki: TestPki) -> Iterator[Till]:
    pki = wire_pki
    wechat = {
        "appid": sandbox.appid, "mch_id": sandbox.mch_id, "base_url": simulator.url,
        "api_key_file": str(_secret(tmp_path / "wechat-api-key", sandbox.api_key)),
        "cert_file": str(pki.client_cert_file), "key_file": str(pki.client_key_file),
        "ca_file": str(pki.ca_cert_file),
    }
    config = make_config(tmp_path, wechat, alipay=False)
    with running_till(config, build_channels(config)) as running:
        yield running


def test_wire_sales_are_paid_and_declined_through_the_simulator(
    wire_till: Till, simulator: Simulator
) -> None:
    paid = wire_till.settle(wire_till.sell(1250, PAID_WX, order="W-1"))
    assert paid["state"] == "paid"
    trade = simulator.trade(paid["out_trade_no"])
    assert trade is not None
    assert trade["state"] == "paid"
    assert paid["channel_trade_no"]
    declined = wire_till.settle(wire_till.sell(500, DECLINED_WX, order="W-2"))
    assert declined["state"] == "declined"
    assert declined["decline_code"] == "NOTENOUGH"
    assert declined["message"]
    refused = wire_till.post("/v1/sales", {"amount": 100, "auth_code": PAID_ALI})
    assert refused.status_code == 422  # Alipay is not enabled at this till
    assert "Alipay" in refused.json()["detail"]
    report = wire_till.get("/v1/reports/daily").json()
    assert report["total"]["paid"] == {"count": 1, "amount": 1250}
    assert report["total"]["declined"] == {"count": 1, "amount": 500}
    assert report["net"] == 1250


def test_wire_long_poll_follows_the_customer_confirming(wire_till: Till) -> None:
    sale = wire_till.sell(1250, PENDING_WX)  # the simulator's customer confirms after 0.5 s
    seen = wire_till.get(f"/v1/sales/{sale['id']}",
                         params={"wait": 10, "seen_state": "paying"}).json()
    started = time.monotonic()
    while not seen["final"]:
        seen = wire_till.get(f"/v1/sales/{sale['id']}",
                             params={"wait": 30, "seen_state": seen["state"]}).json()
        assert time.monotonic() - started < 10
    assert seen["state"] == "paid"


def test_wire_cancel_in_flight_reverses_the_trade(wire_till: Till, simulator: Simulator) -> None:
    never = "134567890123450002"  # the customer never confirms
    sale = wire_till.sell(900, never)
    sale = wire_till.get(f"/v1/sales/{sale['id']}",
                         params={"wait": 10, "seen_state": "paying"}).json()
    assert sale["state"] == "confirming"
    cancelled = wire_till.post(f"/v1/sales/{sale['id']}/cancel")
    assert cancelled.status_code == 200
    assert wire_till.settle(cancelled.json())["state"] == "reversed"
    trade = simulator.trade(sale["out_trade_no"])
    assert trade is not None
    assert trade["state"] == "reversed"
    assert simulator.violations() == []


# --- shutdown while a register follows a sale (DESIGN §2 rule 8) --------------------------------


def test_a_long_poll_at_shutdown_is_answered_at_once_with_503_and_the_sale(till: Till) -> None:
    """It used to spin until uvicorn's graceful timeout and answer 500; a register then told
    the cashier "not paid" for a sale that was paid after the restart."""
    sale = till.sell(100, PENDING_WX)
    while sale["state"] != "confirming":
        sale = till.get(f"/v1/sales/{sale['id']}",
                        params={"wait": 10, "seen_state": sale["state"]}).json()
    till.engine.waiting.clear()
    with ThreadPoolExecutor(1) as pool:
        poll = pool.submit(till.get, f"/v1/sales/{sale['id']}",
                           params={"wait": 25, "seen_state": "confirming"})
        assert till.engine.waiting.wait(TIMEOUT)
        till.stop_engine()
        response = poll.result(timeout=TIMEOUT)
    assert response.status_code == 503, response.text
    body = response.json()
    assert "shutting down" in body["detail"] and "after the restart" in body["detail"]
    assert body["sale"]["id"] == sale["id"] and not body["sale"]["final"]
    assert response.headers["Retry-After"] == "5"


def test_posd_charge_says_not_known_yet_when_posd_stops_meanwhile(till: Till) -> None:
    import io

    from posd.client import EXIT_NOT_KNOWN_YET, ApiClient, Display, charge

    client = ApiClient(till.url, TOKEN)
    out = io.StringIO()
    with ThreadPoolExecutor(1) as pool:
        done = pool.submit(charge, client, "1.00", code=PENDING_WX, order=None, as_json=False,
                           display=Display(out, live=False))
        assert till.engine.waiting.wait(TIMEOUT)
        till.stop_engine()
        assert done.result(timeout=TIMEOUT) == EXIT_NOT_KNOWN_YET
    client.close()
    assert "not paid" not in out.getvalue()


def test_the_live_line_counts_down_to_the_reverse() -> None:
    import io

    from posd.client import Display

    out = io.StringIO()
    display = Display(out, live=True, clock=lambda: 1_700_000_000.0)
    sale = {"id": 7, "state": "confirming", "message": "Waiting for the customer",
            "deadline_at": datetime.fromtimestamp(1_700_000_023.0, TZ).isoformat()}
    display.show(sale)
    display.show({**sale, "state": "paid", "message": "Paid"})
    display.done()
    text = out.getvalue()
    assert text.startswith("\rsale 7: confirming - Waiting for the customer (23 s before posd "
                           "reverses it)")
    assert "\rsale 7: paid - Paid" in text and text.endswith("\n")
    assert text.count("\n") == 1  # one line, redrawn in place
