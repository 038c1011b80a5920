# SPDX-License-Identifier: MIT
"""Smaller things a first day at the till showed (issue: money safety, item 10), and one time
zone for everything a person reads (item 8). Each test failed before its fix."""

from __future__ import annotations

import http.server
import os
import stat
import subprocess
import sys
import threading
import tomllib
from collections.abc import Iterator
from dataclasses import replace
from datetime import date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import requests

from posd import logs
from posd.core import receipt
from posd.core import sale as m
from posd.core.codes import PrefixRule
from posd.config import Config
from posd.checks import Result
from posd.doctor_checks import check_timezone
from posd.core.errors import AmountError, InputError
from posd.hq.client import HqClient, HqProtocolError, HqUnavailable
from posd.core.money import Fen, parse_yuan
from posd.core.print_jobs import receipt_job
from posd.devices.print_queue import Paper, load_report
from posd.store import Store
from tests.shell.test_api import make_config

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_750_000_000.0  # 2025-06-15 15:06:40 UTC, 23:06:40 in Shanghai


# --- one time zone ---------------------------------------------------------------------------


def test_receipts_print_the_stores_time_zone(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    berlin = cfg.model_copy(update={"store": cfg.store.model_copy(
        update={"timezone": "Europe/Berlin"})})
    paper = Paper.from_config(berlin)
    assert paper.tz == ZoneInfo("Europe/Berlin") and paper.header.tz == paper.tz
    sale = replace(m.new_sale("S1T1X", Fen(100), T0), state=m.State.PAID, paid_at=T0, id=1)
    text = receipt.text(sale, paper.header)
    assert "2025-06-15 17:06:40" in text  # Berlin (CEST), not Beijing's 23:06:40
    assert "2025-06-15 23:06:40" in receipt.text(sale, Paper.from_config(cfg).header)


def test_a_bad_time_zone_names_the_key(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    data = cfg.model_dump(mode="json")
    data["store"]["timezone"] = "Asia/Peking"
    with pytest.raises(ValueError, match="not an IANA time zone"):
        Config.model_validate(data)


def test_doctor_warns_when_the_hosts_zone_is_not_the_stores(tmp_path: Path) -> None:
    cfg = make_config(tmp_path)
    warned = check_timezone(cfg, T0, host=ZoneInfo("UTC"))
    assert warned.result is Result.WARN and "timedatectl set-timezone Asia/Shanghai" in warned.fix
    assert check_timezone(cfg, T0, host=ZoneInfo("Asia/Chongqing")).result is Result.OK


def test_a_report_for_a_future_day_is_refused(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db")
    tz = ZoneInfo("Asia/Shanghai")
    with pytest.raises(InputError, match="has not begun"):
        load_report(store, date(2025, 6, 17), cutoff_hour=0, tz=tz, now=T0)
    assert load_report(store, date(2025, 6, 15), cutoff_hour=0, tz=tz, now=T0).kind == "X"
    store.close()


# --- receipts and print jobs -------------------------------------------------------------------


def test_a_chinese_slip_gives_its_reason_in_chinese() -> None:
    sale = replace(m.new_sale("S1T1X", Fen(100), T0), id=3, state=m.State.DECLINED,
                   decline_code="NOTENOUGH", message="Not enough balance: ask the customer "
                   "to choose another card in WeChat or pay another way. (微信: 余额不足)")
    header = receipt.Header("测试店", "S1", "T1")
    text = receipt.text(sale, header, language="zh")
    assert "余额不足，请顾客更换付款方式" in text and "Not enough" not in text
    reversed_ = replace(sale, state=m.State.REVERSED, refunded=True, message="Reversed: ...")
    assert "款项已原路退回" in receipt.text(reversed_, header, language="zh")
    assert "Not enough balance" in receipt.text(sale, header, language="en")


def test_two_reprints_while_the_daemon_is_down_print_once(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db")
    first = store.add_print_job(receipt_job(7, "paid", T0, reprint=True))
    second = store.add_print_job(receipt_job(7, "paid", T0 + 5, reprint=True))
    assert first is not None and second is None
    store.close()


# --- amounts, logs, CLI --------------------------------------------------------------------------


def test_an_amount_over_the_limit_says_the_limit() -> None:
    with pytest.raises(AmountError, match="over the limit of 1000000.00 yuan"):
        parse_yuan("99999999999")


def test_the_log_file_is_private_whatever_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        handler = logs.handler(path=tmp_path / "posd.log")
        handler.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "posd.log").stat().st_mode) == 0o600


def test_the_redactor_knows_configured_code_rules() -> None:
    code = "88" + "1234567890123456"  # a prefix posd does not know by default
    assert logs.redact(f"code {code}") == f"code {code}"
    try:
        logs.use_code_rules([PrefixRule("unionpay", ("88",), 18, 18)])
        assert logs.redact(f"code {code}") == "code 8812…3456"
        assert "1345…0001" in logs.redact("134567890123450001")  # built-ins stay
    finally:
        logs.use_code_rules([])


def test_a_closed_pipe_is_no_error() -> None:
    """`posd sales --json | head` printed "Broken pipe" and a traceback."""
    script = ("from posd import cli\n"
              "cli._HANDLERS['sales'] = lambda a: [print('x' * 100) for _ in range(100000)] "
              "and 0\n"
              "raise SystemExit(cli.main(['sales']))\n")
    done = subprocess.run(f"{sys.executable} -c \"{script}\" | head -c 10", shell=True,
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          executable="/bin/bash")
    assert done.stdout == "x" * 10
    assert done.stderr == "", done.stderr


def test_the_demo_banner_names_the_posd_that_runs() -> None:
    from posd.demo import _posd_command

    command = _posd_command()
    assert command.endswith("posd") and (ROOT / command).exists() or command.endswith("-m posd")


def test_the_license_is_an_spdx_string() -> None:
    """setuptools >= 77 warns about `license = {text = ...}` on every install."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "MIT"


# --- the HQ client gets the channels' transport ----------------------------------------------------


class _Hq(http.server.BaseHTTPRequestHandler):
    answer: tuple[int, dict[str, str], bytes] = (200, {}, b'{"results": []}')
    seen: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        type(self).seen.append(self.path)
        status, headers, body = self.answer
        self.send_response(status)
        for name, value in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        """The client hangs up on a too-large answer on purpose: not worth a traceback."""


@pytest.fixture(name="hq")
def _hq() -> Iterator[http.server.ThreadingHTTPServer]:
    server = _QuietServer(("127.0.0.1", 0), _Hq)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hq.seen = []
    yield server
    server.shutdown()
    server.server_close()


def _client(server: http.server.ThreadingHTTPServer) -> HqClient:
    return HqClient(f"http://127.0.0.1:{server.server_address[1]}", "token", b"key",
                    timeout=(1.0, 2.0))


def test_hq_redirects_are_not_followed(hq: http.server.ThreadingHTTPServer) -> None:
    _Hq.answer = (307, {"Location": "http://127.0.0.1:9/v1/records"}, b"")
    with pytest.raises(HqProtocolError, match="does not follow redirects"):
        _client(hq).post_batch(b"{}")
    assert _Hq.seen == ["/v1/records"]


def test_hq_answers_are_bounded(hq: http.server.ThreadingHTTPServer) -> None:
    _Hq.answer = (200, {}, b" " * (4 * 1024 * 1024 + 1))
    with pytest.raises(HqUnavailable, match="too large|larger"):
        _client(hq).post_batch(b"{}")


def test_hq_ignores_proxies_from_the_environment(hq: http.server.ThreadingHTTPServer,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _Hq.answer = (200, {}, b'{"results": []}')
    assert _client(hq).post_batch(b"{}") == {"results": []}


def test_hq_connect_and_read_errors_are_told_apart() -> None:
    with pytest.raises(HqUnavailable, match="nothing was sent"):
        HqClient("http://127.0.0.1:9", "t", b"k", timeout=(1.0, 1.0)).post_batch(b"{}")
    import socket

    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        port = listener.getsockname()[1]
        with pytest.raises(HqUnavailable, match="may have arrived"):
            HqClient(f"http://127.0.0.1:{port}", "t", b"k", timeout=(1.0, 0.3)).post_batch(b"{}")
    finally:
        listener.close()


# --- /docs with no internet --------------------------------------------------------------------


def test_docs_load_swagger_ui_from_the_package(tmp_path: Path) -> None:
    from tests.shell.scripted_channel import ScriptedChannel
    from tests.shell.test_api import running_till

    with running_till(make_config(tmp_path), {"wechat": ScriptedChannel("wechat")}) as till:
        page = requests.get(till.url + "/docs", timeout=10)
        assert page.status_code == 200
        assert "cdn" not in page.text.lower() and "http://" not in page.text.replace(
            till.url, "")
        assert "/docs/assets/swagger-ui-bundle.js" in page.text
        script = requests.get(till.url + "/docs/assets/swagger-ui-bundle.js", timeout=10)
        assert script.status_code == 200 and len(script.content) > 100_000  # no token needed
        assert requests.get(till.url + "/openapi.json", timeout=10).status_code == 200
