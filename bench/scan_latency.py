#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Scan (last keystroke) -> pay request on the wire, write-ahead included. Target: p99 <= 15 ms.

The daemon's real pipeline, in one process (DESIGN.md §7, issue #2):

    os.pipe --"13…\\n"--> ConsoleScanner --> Engine.scan --> Store.save (a SQLite file: WAL,
    synchronous=FULL) --> the sale's worker thread --> WechatPay.pay (requests) --> server

t0 is taken just before the terminator -- the last keystroke -- is written into the pipe (the
18 digits go in 2 ms earlier, as a scanner types them); t1 when the server has read the whole
pay request, headers and body. Both are ``time.perf_counter()`` (CLOCK_MONOTONIC) in this
process. The server is this script's own loopback server, not the channel simulator: it
speaks just enough of WeChat's micropay to pay every sale at once (a signed SUCCESS answer,
``posd.core.wechat_wire``) and records when each request arrived; whatever a server does
after reading the request happens after t1. HTTPS by default (the server presents the test
PKI's certificate, posd verifies it with a ``ca_file`` of certifi's CAs with the test CA
appended: what a till loads, requests' certifi, when ``ca_file`` is unset), over the
kept-alive connection of posd's requests session, as at a counter; ``--http`` measures plain
HTTP. ``--channel alipay``
measures the same pipeline through the Alipay client (an 18-digit ``28…`` code, RSA2-signed
``alipay.trade.pay`` to the server's ``/gateway.do``, which verifies it with the app public key
and answers a signed 10000).

Baselines, measured in the same run and interleaved with the samples, so a reader sees where
the time goes:

- scanner: a second ConsoleScanner on its own pipe; keystroke -> its on_code callback;
- commit: ``Store.save`` of a paying sale (the write-ahead transaction: row + event, fsync)
  on its own database file in the same directory;
- HTTP: a bare ``requests`` POST of a micropay-sized body (posd's no-retry session, same TLS
  settings, kept-alive connection) -> the server has read it;
- new connection: the same bare POST on a new connection each time, through posd's session
  (one TLS context per CA bundle, posd.channels.transport) and through a stock requests
  session, which builds a context and loads the CA bundle for every new connection.

Run from the repository root: ``.venv/bin/python bench/scan_latency.py`` (``make bench``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import queue
import secrets
import socket
import ssl
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TextIO
from urllib.parse import parse_qsl, urlsplit

import figures
import requests

sys.path.insert(0, str(figures.ROOT))  # tests/sandbox.py: the sandbox merchant and config

from posd.core import sale as machine
from posd.channels import transport
from posd.core import alipay_wire
from posd.core import wechat_wire as wire
from posd.channels.simulator import AlipaySandbox, make_alipay_keys, make_test_pki
from posd.channels.wechat.client import MICROPAY, ORDERQUERY, REVERSE
from posd.daemon import build_channels
from posd.engine import Engine
from posd.core.money import Fen
from posd.core.sale import State
from posd.devices.scanners import ConsoleScanner
from posd.store import Store
from tests.sandbox import ALIPAY_APP_ID, WECHAT, config, make_config

TARGET_P99_S = 0.015
GATEWAY = "/gateway.do"
BARE = "/bare"
KEYSTROKE_GAP_S = 0.002  # a HID scanner types a character every 1-5 ms
WAIT_S = 5.0  # for one arrival or one sale to settle; a stuck pipeline fails loudly


# --- the loopback server ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Arrival:
    path: str
    key: str  # the micropay's out_trade_no, or the bare POST's X-Bench-Seq
    at: float  # time.perf_counter() once the whole request was read


def _signed(fields: dict[str, str], answer: dict[str, str]) -> bytes:
    """``answer`` with the envelope and signature WeChat puts on it, signed as the request
    was; FAIL (unsigned) if the request does not verify."""
    sign_type = fields.get("sign_type") or "MD5"
    if not wire.verify(fields, WECHAT.api_key, sign_type):
        return wire.to_xml({"return_code": "FAIL", "return_msg": "签名错误"})
    answer = {"return_code": "SUCCESS", "return_msg": "OK", "appid": fields["appid"],
              "mch_id": fields["mch_id"], "nonce_str": secrets.token_hex(16), **answer}
    answer["sign"] = wire.sign(answer, WECHAT.api_key, sign_type)
    return wire.to_xml(answer)


def _paid_answer(fields: dict[str, str], paid: dict[str, dict[str, str]]) -> bytes:
    """micropay SUCCESS (remembered in ``paid`` for a later query)."""
    trade = {
        "trade_type": "MICROPAY", "out_trade_no": fields.get("out_trade_no", ""),
        "transaction_id": "4200" + secrets.token_hex(12), "total_fee": fields.get("total_fee", ""),
        "fee_type": "CNY", "cash_fee": fields.get("total_fee", ""),
    }  # fmt: skip
    paid[trade["out_trade_no"]] = trade
    return _signed(fields, {"result_code": "SUCCESS", **trade})


def _query_answer(fields: dict[str, str], paid: dict[str, dict[str, str]]) -> bytes:
    """orderquery: SUCCESS for a trade this server paid, ORDERNOTEXIST for any other."""
    trade = paid.get(fields.get("out_trade_no", ""))
    if trade is None:
        return _signed(fields, {"result_code": "FAIL", "err_code": "ORDERNOTEXIST",
                                "err_code_des": "此交易订单号不存在"})
    return _signed(fields, {"result_code": "SUCCESS", "trade_state": "SUCCESS", **trade})


def _alipay_paid_answer(path: str, body: bytes, sandbox: AlipaySandbox) -> tuple[str, bytes]:
    """(out_trade_no, answer): trade.pay 10000 signed by "Alipay"; unsigned 40002 if the
    request does not verify with the app public key."""
    params = dict(parse_qsl(urlsplit(path).query)) | dict(parse_qsl(body.decode()))
    biz = json.loads(params.get("biz_content", "{}"))
    key = alipay_wire.response_key(params.get("method", ""))
    if not alipay_wire.verify(params, sandbox.app_public_key):
        return biz.get("out_trade_no", ""), alipay_wire.render_answer(
            key, {"code": "40002", "sub_code": "isv.invalid-signature"}, None)
    answer = {"code": "10000", "msg": "Success", "trade_no": "2026" + secrets.token_hex(12),
              "out_trade_no": biz["out_trade_no"], "total_amount": biz["total_amount"]}
    return biz["out_trade_no"], alipay_wire.render_answer(key, answer, sandbox.private_key)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as WeChat's API
    server: WireClock

    def setup(self) -> None:
        # Not in the accept loop: a client that connects and stalls its handshake would hold
        # up every connection after it.
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(30.0)
            self.request.do_handshake()
            self.request.settimeout(None)
        super().setup()

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        at = time.perf_counter()  # t1: the whole request has been read
        if self.path in (MICROPAY, ORDERQUERY, REVERSE):
            fields = wire.from_xml(body)
            arrival = Arrival(self.path, fields.get("out_trade_no", ""), at)
            if self.path == MICROPAY:
                answer = _paid_answer(fields, self.server.paid)
            elif self.path == ORDERQUERY:
                answer = _query_answer(fields, self.server.paid)
            else:
                answer = _signed(fields, {"result_code": "SUCCESS", "recall": "N"})
        elif self.path.startswith(GATEWAY) and self.server.alipay is not None:
            out_trade_no, answer = _alipay_paid_answer(self.path, body, self.server.alipay)
            arrival = Arrival(GATEWAY, out_trade_no, at)
        else:
            arrival = Arrival(self.path, self.headers.get("X-Bench-Seq", ""), at)
            answer = b"<xml><return_code>SUCCESS</return_code></xml>"
        self.server.arrivals.put(arrival)
        self.send_response(200)
        self.send_header("Content-Type", "text/xml; charset=utf-8")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class WireClock(ThreadingHTTPServer):
    """A loopback micropay endpoint that records when each request has fully arrived.

    It pays every WeChat micropay at once and answers the WeChat calls that can follow one
    (rss_sales' 100,000 sales on a shared VM have seen a pay time out): an orderquery says
    SUCCESS for a trade it paid and ORDERNOTEXIST for any other, a reverse succeeds."""

    daemon_threads = True

    def __init__(self, tls: ssl.SSLContext | None, alipay: AlipaySandbox | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.tls = tls
        self.alipay = alipay
        self.arrivals: queue.Queue[Arrival] = queue.Queue()
        #: out_trade_no -> the paid trade's fields, for orderquery (dict operations are
        #: atomic under the GIL; one handler thread per connection)
        self.paid: dict[str, dict[str, str]] = {}

    def get_request(self) -> tuple[object, object]:  # type: ignore[override]
        sock, address = super().get_request()
        # One segment per answer: without this, Nagle holds the body (written after the
        # headers) until the client's delayed ACK, ~40 ms later. After t1, but it would make
        # every iteration 40 ms longer.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:  # the handshake: in the connection's thread (_Handler.setup)
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: object, client_address: object) -> None:
        """A connection that ends in its handshake or mid-request (a client giving up) is
        its client's business: quiet, as when the handshake ran in the accept loop."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.server_port}"

    def arrival(self, key: str, what: str) -> Arrival:
        try:
            got = self.arrivals.get(timeout=WAIT_S)
        except queue.Empty:
            raise SystemExit(f"scan_latency: no {what} reached the server in {WAIT_S} s") from None
        if got.key != key:
            raise SystemExit(f"scan_latency: expected {what} {key}, the server got {got.key}")
        return got


# --- the samples --------------------------------------------------------------------------


class Keyboard:
    """The writing end of a pipe read by a ConsoleScanner: types a code, then Enter."""

    def __init__(self, on_code: Callable[[str, float, str], object]) -> None:
        read_fd, self._fd = os.pipe()
        self._stream: TextIO = os.fdopen(read_fd, "r", encoding="ascii")
        self.scanner = ConsoleScanner(self._stream, on_code)
        self.scanner.start()

    def scan(self, code: str) -> float:
        """Type ``code`` and its terminator; returns t0, taken just before the terminator."""
        os.write(self._fd, code.encode("ascii"))
        time.sleep(KEYSTROKE_GAP_S)  # the reader has taken the digits and waits again
        t0 = time.perf_counter()
        os.write(self._fd, b"\n")
        return t0

    def close(self) -> None:
        os.close(self._fd)  # the scanner thread sees end of file and ends


@dataclass
class Samples:
    pipeline: list[float]
    cold: list[float]
    scanner: list[float]
    commit: list[float]
    http: list[float]
    cold_http: list[float]
    cold_stock: list[float]


class Bench:
    def __init__(self, tmp: Path, *, https: bool, channel: str = "wechat") -> None:
        pki = make_test_pki(tmp / "pki")
        keys = make_alipay_keys(tmp / "alipay") if channel == "alipay" else None
        self.server = WireClock(pki.server_tls().context() if https else None,
                                keys.sandbox(ALIPAY_APP_ID) if keys else None)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        data = make_config(tmp, self.server.url, pki, alipay=keys, wechat=channel == "wechat")
        bundle = figures.ca_bundle(tmp, pki.ca_cert_file)
        figures.use_ca_file(data, bundle)
        self.cfg = config(data)
        self.store = Store.open(self.cfg.database.path)
        channels = build_channels(self.cfg)  # the daemon's wiring
        self.channel = channels[channel]
        self.code_prefix = "28" if channel == "alipay" else "13"  # 18 digits either way
        self.engine = Engine(self.cfg, self.store, channels)
        self.engine.start()
        self.keyboard = Keyboard(self.engine.scan)
        self._read: queue.Queue[float] = queue.Queue()
        self.bare_keyboard = Keyboard(lambda _code, _at, _src: self._read.put(time.perf_counter()))
        self.bare_store = Store.open(tmp / "baseline.db")
        self.bare_sale = self._paying_sale()
        self.session = transport.session()
        self.cold_session = transport.session()
        self.stock_session = requests.Session()
        self.stock_session.trust_env = False
        self.session_verify = str(bundle)
        self.bare_body = self._micropay_sized_body()
        self._seq = 0

    def _paying_sale(self) -> machine.Sale:
        now = time.time()
        sale, _ = self.bare_store.create_sale(
            lambda seq: machine.new_sale(f"S001T01BENCH{seq:06d}", Fen(1), now),
            order_ref=None, idempotency_key=None)
        return machine.start_pay(sale, "wechat", "1300…7777", now, machine.WECHAT_POLICY)

    def _micropay_sized_body(self) -> bytes:
        params = {"appid": WECHAT.appid, "mch_id": WECHAT.mch_id, "out_trade_no": "S" * 25,
                  "nonce_str": secrets.token_hex(16), "sign_type": "HMAC-SHA256",
                  "body": "测试店 Test Shop", "total_fee": "1", "fee_type": "CNY",
                  "spbill_create_ip": "127.0.0.1", "auth_code": "1" * 18, "device_info": "T01"}
        params["sign"] = wire.sign(params, WECHAT.api_key, "HMAC-SHA256")
        return wire.to_xml(params)

    def sample(self, i: int) -> tuple[float, ...]:
        """One of each, in seconds: pipeline, cold pipeline, scanner, commit, http, http on
        a new connection through posd's session, the same through a stock session."""
        return (self._pipeline(2 * i), self._pipeline(2 * i + 1, cold=True), self._scanner(i),
                self._commit(), self._http(self.session),
                self._http(self.cold_session, cold=True), self._http(self.stock_session,
                                                                     cold=True))

    def _pipeline(self, i: int, *, cold: bool = False) -> float:
        sale, _ = self.engine.create_sale(1 + i % 5000)
        if cold:  # the pool forgets its connection: this pay opens a new one (TCP + TLS)
            self.channel.close()
        t0 = self.keyboard.scan(f"{self.code_prefix}{i:012d}7777")  # WeChat 10-15, Alipay 25-30
        t1 = self.server.arrival(sale.out_trade_no, "pay request").at
        sale = self._settle(sale.id)
        if sale.state is not State.PAID:
            raise SystemExit(f"scan_latency: sale {sale.id} ended {sale.state}: {sale.message}")
        return t1 - t0

    def _settle(self, sale_id: int) -> machine.Sale:
        deadline = time.monotonic() + WAIT_S
        sale = self.engine.get(sale_id)
        while not sale.final and (left := deadline - time.monotonic()) > 0:
            sale = self.engine.wait_for_change(sale_id, sale.updated_at, left)
        if not sale.final:
            raise SystemExit(f"scan_latency: sale {sale_id} still {sale.state}; "
                             f"last scan: {self.engine.health()['last_scan']}")
        return sale

    def _scanner(self, i: int) -> float:
        t0 = self.bare_keyboard.scan(f"14{i:012d}7777")
        try:
            return self._read.get(timeout=WAIT_S) - t0
        except queue.Empty:
            raise SystemExit("scan_latency: the baseline scanner read nothing") from None

    def _commit(self) -> float:
        t0 = time.perf_counter()
        self.bare_store.save(self.bare_sale, None, "code scanned (WeChat Pay)")
        return time.perf_counter() - t0

    def _http(self, session: requests.Session, *, cold: bool = False) -> float:
        if cold:
            session.close()  # its pools forget their connections; posd's keeps its contexts
        self._seq += 1
        key = str(self._seq)
        t0 = time.perf_counter()
        with session.post(self.server.url + BARE, data=self.bare_body, timeout=(3.0, 10.0),
                               headers={"Content-Type": "text/xml; charset=utf-8",
                                        "X-Bench-Seq": key},
                               verify=self.session_verify, stream=True) as response:
            response.content  # noqa: B018 - read the answer: the connection goes back to the pool
        return self.server.arrival(key, "bare POST").at - t0

    def close(self) -> None:
        self.keyboard.close()
        self.bare_keyboard.close()
        self.engine.stop(timeout=5)
        for session in (self.session, self.cold_session, self.stock_session):
            session.close()
        self.store.close()
        self.bare_store.close()
        self.server.shutdown()
        self.server.server_close()


# --- the report ---------------------------------------------------------------------------


def report(samples: Samples, *, n_wanted: int, warmup: int, https: bool, directory: Path,
           elapsed: float, channel: str = "wechat") -> str:
    pipeline = samples.pipeline
    med, p90, p99, worst = figures.spread(pipeline)
    baseline_sum = sum(statistics.median(s) for s in (samples.scanner, samples.commit, samples.http))
    rows = [
        ["scan -> pay request on the wire", *map(figures.ms, (med, p90, p99, worst)),
         "1.00"],
        ["same, new connection each time (TCP + TLS)" if https else
         "same, new connection each time (TCP)", *_cells(samples.cold, med)],
        ["baseline: scanner (pipe -> on_code)", *_cells(samples.scanner, med)],
        ["baseline: write-ahead commit (Store.save)", *_cells(samples.commit, med)],
        [f"baseline: bare POST -> at server ({'HTTPS' if https else 'HTTP'})",
         *_cells(samples.http, med)],
        ["bare POST, new connection, posd's session", *_cells(samples.cold_http, med)],
        ["bare POST, new connection, stock requests", *_cells(samples.cold_stock, med)],
        ["sum of the three baseline medians", figures.ms(baseline_sum), "", "", "",
         f"{baseline_sum / med:.2f}"],
    ]
    verdict = "met" if p99 <= TARGET_P99_S else "MISSED"
    short = "" if len(pipeline) >= n_wanted else f" (cut short: {len(pipeline)} of {n_wanted})"
    transport_note = ("HTTPS, the test PKI's server certificate verified with ca_file "
                      "(certifi's CAs + the test CA)"
                      if https else "plain HTTP (allowed for loopback)")
    return "\n".join([
        "scan_latency: scan (last keystroke) -> pay request on the wire, write-ahead included",
        f"  {figures.machine()}",
        f"  database: {directory} ({figures.filesystem(directory)}), WAL, synchronous=FULL",
        (f"  channel: WechatPay -> this script's loopback micropay server over {transport_note};"
        " kept-alive connection") if channel == "wechat" else
        (f"  channel: Alipay (RSA2 signing) -> this script's loopback /gateway.do over "
         f"{transport_note}; kept-alive connection; the bare POST baseline stays micropay-sized"),
        (f"  samples: {len(pipeline)} after {warmup} warm-up{short}, {elapsed:.1f} s;"
        " percentiles nearest-rank; times in ms"),
        "",
        figures.table(["", "median", "p90", "p99", "max", "÷ pipeline median"], rows),
        "",
        (f"  target p99 <= {TARGET_P99_S * 1000:.0f} ms: {verdict} (p99 = {figures.ms(p99)} ms,"
        f" {p99 / TARGET_P99_S:.0%} of the target)"),
        (f"  posd's own work beyond the three baselines (median): "
        f"{figures.ms(med - baseline_sum)} ms"),
    ])


def _cells(values: list[float], pipeline_median: float) -> list[str]:
    med, p90, p99, worst = figures.spread(values)
    return [*map(figures.ms, (med, p90, p99, worst)), f"{med / pipeline_median:.2f}"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("-n", type=int, default=300, help="samples kept (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="samples dropped first (20)")
    parser.add_argument("--http", action="store_true", help="plain HTTP instead of HTTPS")
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the database files go (default: a new temporary directory)")
    parser.add_argument("--budget-s", type=float, default=50.0,
                        help="stop sampling after this long and say so (default 50)")
    parser.add_argument("--quick", action="store_true", help="20 samples: a smoke run")
    parser.add_argument("--channel", choices=("wechat", "alipay"), default="wechat",
                        help="the client measured (default wechat)")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.warmup = 20, 3
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="posd-bench-", dir=args.dir) as tmp:
        bench = Bench(Path(tmp), https=not args.http, channel=args.channel)
        samples = Samples([], [], [], [], [], [], [])
        start = time.monotonic()
        try:
            for i in range(args.warmup + args.n):
                if time.monotonic() - start > args.budget_s:
                    break
                figures_i = bench.sample(i)
                if i >= args.warmup:
                    columns = [getattr(samples, f.name) for f in dataclasses.fields(samples)]
                    for kept, value in zip(columns, figures_i, strict=True):
                        kept.append(value)
        finally:
            bench.close()
        if not samples.pipeline:
            raise SystemExit("scan_latency: no samples within the budget")
        print(report(samples, n_wanted=args.n, warmup=args.warmup, https=not args.http,
                     directory=Path(tmp), elapsed=time.monotonic() - start,
                     channel=args.channel))
    return 0


if __name__ == "__main__":
    sys.exit(main())
