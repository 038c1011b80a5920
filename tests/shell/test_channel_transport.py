# SPDX-License-Identifier: MIT
"""Transport failures, the same for every channel client: urllib3's rule (posd.channels.
transport). One set of tests, run against both clients over a scripted loopback server:
only a failed connect or TLS handshake means the request never arrived; a hang, a reset or
close after sending, and any non-200 status mean it may have.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from posd.channels import Channel, transport
from posd.channels.alipay.client import Alipay
from posd.channels.simulator import TestPki
from posd.channels.wechat.client import WechatPay
from posd.core.sale import ChannelResult, Paid, Unknown
from tests.shell import test_alipay_client as ali
from tests.shell import test_wechat_client as wx
from tests.shell.conftest import ScriptedServer


@dataclass(frozen=True)
class Spec:
    """What the tests need of one channel client."""

    make: Callable[[str, TestPki, dict[str, object]], Channel]
    out_trade_no: str
    code: str
    paid: Callable[[], bytes]


SPECS = {
    "wechat": Spec(
        lambda url, pki, changes: WechatPay(wx.make_config(url, pki, **changes), api_key=wx.KEY,
                                            device_info="S001T01", body_prefix="Example Mart"),
        wx.OUT_TRADE_NO, wx.CODE, wx.paid),
    "alipay": Spec(
        lambda url, pki, changes: Alipay(ali.make_config(url, pki, **changes),
                                         app_private_key=ali.APP_KEY,
                                         alipay_public_key=ali.ALIPAY_KEY.public_key(),
                                         store_id="S001", terminal_id="T01"),
        ali.OUT, ali.CODE, ali.paid),
}
CALLS = ["pay", "query", "reverse"]


@pytest.fixture(name="spec", params=sorted(SPECS))
def _spec(request: pytest.FixtureRequest) -> Spec:
    return SPECS[request.param]


@pytest.fixture(name="client_for")
def _client_for(spec: Spec, pki: TestPki) -> Iterator[Callable[..., Channel]]:
    clients: list[Channel] = []

    def make(url: str, **changes: object) -> Channel:
        clients.append(spec.make(url, pki, changes))
        return clients[-1]

    yield make
    for client in clients:
        client.close()


def _call(spec: Spec, client: Channel, call: str) -> ChannelResult:
    amount = wx.AMOUNT
    match call:
        case "pay":
            return client.pay(spec.out_trade_no, amount, spec.code, "Coffee")
        case "query":
            return client.query(spec.out_trade_no, amount)
        case _:
            return client.reverse(spec.out_trade_no)


@pytest.mark.parametrize("call", CALLS)
def test_connection_refused_never_arrived(spec: Spec, client_for: Callable[..., Channel],
                                          closed_port: int, call: str) -> None:
    result = _call(spec, client_for(f"http://127.0.0.1:{closed_port}"), call)
    assert isinstance(result, Unknown)
    assert result.may_have_arrived is False
    assert "could not connect" in result.detail


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("reply", ["HANG", "DROP", "RESET"])
def test_after_sending_may_have_arrived(spec: Spec, client_for: Callable[..., Channel],
                                        scripted_server: Callable[..., ScriptedServer],
                                        call: str, reply: str) -> None:
    server = scripted_server([reply, "HANG"])  # Alipay's cancel may ask trade.query after
    started = time.monotonic()
    result = _call(spec, client_for(server.url), call)
    assert isinstance(result, Unknown)
    assert result.may_have_arrived is True
    assert len(server.received) >= 1  # the request did arrive
    assert time.monotonic() - started < 3.0
    if reply == "HANG":
        assert "read timeout" in result.detail


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("status", [500, 502, 503, 404, 302])
def test_http_errors_may_have_arrived(spec: Spec, client_for: Callable[..., Channel],
                                      scripted_server: Callable[..., ScriptedServer],
                                      call: str, status: int) -> None:
    server = scripted_server([(status, spec.paid())])
    result = _call(spec, client_for(server.url), call)
    assert isinstance(result, Unknown)
    assert result.may_have_arrived is True
    assert str(status) in result.detail


def test_untrusted_server_certificate_never_arrived(
        spec: Spec, pki: TestPki, client_for: Callable[..., Channel],
        scripted_server: Callable[..., ScriptedServer]) -> None:
    server = scripted_server([spec.paid()], tls=wx.server_tls(pki))
    assert isinstance(_call(spec, client_for(server.url), "pay"), Paid)  # the test CA: trusted
    other = scripted_server([spec.paid()], tls=wx.server_tls(pki))
    result = _call(spec, client_for(other.url, ca_file=""), "pay")  # system store: unknown CA
    assert isinstance(result, Unknown) and result.may_have_arrived is False
    assert other.received == []


def test_untrusted_hostname_never_arrived(spec: Spec, pki: TestPki,
                                          client_for: Callable[..., Channel],
                                          scripted_server: Callable[..., ScriptedServer]) -> None:
    """A certificate from the trusted CA, but not for 127.0.0.1 (the merchant's client
    certificate as the server's): refused in the handshake, as requests' own context does."""
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(pki.client_cert_file, pki.client_key_file)
    server = scripted_server([spec.paid()], tls=tls)
    result = _call(spec, client_for(server.url), "pay")
    assert isinstance(result, Unknown) and result.may_have_arrived is False, result
    assert "TLS handshake failed" in result.detail and server.received == []


@pytest.mark.parametrize("broken", ["missing", "not-pem"])
def test_a_ca_bundle_that_cannot_be_used_never_arrived(
        spec: Spec, pki: TestPki, client_for: Callable[..., Channel],
        scripted_server: Callable[..., ScriptedServer], tmp_path: Path, broken: str) -> None:
    ca = tmp_path / "ca.pem"
    if broken == "not-pem":
        ca.write_text("not a certificate\n")
    server = scripted_server([spec.paid(), spec.paid()], tls=wx.server_tls(pki))
    client = client_for(server.url, ca_file=str(ca))
    for _ in range(2):  # not remembered: tried again, and refused again, at the next request
        result = _call(spec, client, "pay")
        assert isinstance(result, Unknown) and result.may_have_arrived is False, result
        assert "cannot use the TLS files" in result.detail and str(ca) in result.detail
    assert server.received == []
    ca.write_bytes(Path(pki.ca_cert_file).read_bytes())  # mended: the next request goes
    assert isinstance(_call(spec, client, "pay"), Paid)


def test_the_ca_bundle_is_loaded_once_not_for_every_connection(
        spec: Spec, pki: TestPki, client_for: Callable[..., Channel],
        scripted_server: Callable[..., ScriptedServer], tmp_path: Path) -> None:
    """Each answer closes its connection; the later connections verify the server with the
    context made at the first, not by reading the bundle again (posd.channels.transport)."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(pki.ca_cert_file).read_bytes())
    server = scripted_server([(200, spec.paid(), "close")] * 3, tls=wx.server_tls(pki))
    client = client_for(server.url, ca_file=str(ca))
    assert isinstance(_call(spec, client, "pay"), Paid)
    ca.write_text("not a certificate\n")  # read again, this would refuse every connection
    assert isinstance(_call(spec, client, "pay"), Paid)
    assert isinstance(_call(spec, client, "pay"), Paid)
    assert len({r.peer_port for r in server.received}) == 3  # three connections


def test_channels_with_the_same_ca_bundle_share_one_context(
        pki: TestPki, scripted_server: Callable[..., ScriptedServer], tmp_path: Path) -> None:
    """A WeChat and an Alipay client verifying with one bundle: the second verifies with the
    context the first made (the process reads the bundle once), and the bundle of another
    path is a context of its own."""
    ca = tmp_path / "ca.pem"
    ca.write_bytes(Path(pki.ca_cert_file).read_bytes())
    wechat, alipay = SPECS["wechat"], SPECS["alipay"]
    wechat_server = scripted_server([wechat.paid()], tls=wx.server_tls(pki))
    alipay_server = scripted_server([alipay.paid()], tls=wx.server_tls(pki))
    first = wechat.make(wechat_server.url, pki, {"ca_file": str(ca)})
    second = alipay.make(alipay_server.url, pki, {"ca_file": str(ca)})
    try:
        assert isinstance(_call(wechat, first, "pay"), Paid)
        ca.write_text("not a certificate\n")  # read again, this would refuse the connection
        assert isinstance(_call(alipay, second, "pay"), Paid)
    finally:
        first.close()
        second.close()
    assert transport.tls_context(str(ca), None) is transport.tls_context(str(ca), None)
    other = tmp_path / "other.pem"
    other.write_bytes(Path(pki.ca_cert_file).read_bytes())
    assert transport.tls_context(str(other), None) is not transport.tls_context(str(ca), None)
