# SPDX-License-Identifier: MIT
"""One redaction path (posd.logs): codes masked, keys and tokens never written.

The end-to-end test runs the real `posd run` at DEBUG with a console scanner, text on stderr
and JSON lines in a file, takes sales on both channels (through the API and through the
scanner, paid, declined, outcome unknown), and then searches every byte it wrote -- both
logs and the SQLite files -- for each full payment code and every line of key material."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from posd import logs
from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.core.codes import mask
from posd.logs import HIDDEN, SECRETS, Redactor, SecretRegistry, redact
from tests.waiting import wait_until_final, wait_until_up
from tests.sandbox import WECHAT, make_config, start_simulator, to_toml

TOKEN = "test-token-0123456789abcdef"
KEY_PEM = """-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj
MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dVMvDuictGeurT8jNbvJZHtCSuYEvu
-----END PRIVATE KEY-----
"""


@pytest.fixture(autouse=True)
def _fresh_secrets() -> Iterator[None]:
    """SECRETS is the process's registry: each test starts and ends without its secrets."""
    SECRETS.clear()
    yield
    SECRETS.clear()


def logged(emit: object = None, *, as_json: bool = False) -> str:
    stream = io.StringIO()
    handler = logs.handler(stream, as_json=as_json, level=logging.DEBUG)
    logger = logging.getLogger("posd.test-redaction")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        assert callable(emit)
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_codes_are_masked_wherever_they_appear() -> None:
    def emit(log: logging.Logger) -> None:
        log.info("pay with %s", "134567890123450001")
        log.info("alipay code=281234567890120001 and <auth_code>6212345678901234567</auth_code>")
        try:
            raise ValueError("bad code 134567890123459999")
        except ValueError:
            log.exception("failed")
        log.warning("stack", stack_info=True, extra={"x": 1})

    out = logged(emit)
    for code in ("134567890123450001", "281234567890120001", "6212345678901234567",
                 "134567890123459999"):
        assert code not in out
        assert mask(code) in out
    assert "Traceback" in out and "ValueError: bad code 1345…9999" in out


def test_what_is_not_a_code_stays_readable() -> None:
    def emit(log: logging.Logger) -> None:
        log.info("sale 1 S001T11261123103113000001 paid 4200000001202611233272156891 "
                 "at 1763893873.123456, 880 fen, order R-20240501-0042")

    out = logged(emit)
    assert "S001T11261123103113000001" in out      # out_trade_no: glued to the terminal id
    assert "4200000001202611233272156891" in out   # WeChat transaction_id: 28 digits
    assert "1763893873.123456" in out


def test_registered_secrets_and_each_line_of_a_key_are_hidden() -> None:
    SECRETS.add(TOKEN.encode() + b"\n")
    SECRETS.add(KEY_PEM.encode())
    SECRETS.add(b"short")  # too short to search for without blanking out ordinary words
    lines = KEY_PEM.splitlines()

    def emit(log: logging.Logger) -> None:
        log.info("Authorization: Bearer %s", TOKEN)
        log.info("key %s", KEY_PEM)
        log.info("one line: %s", lines[2])
        log.info("a short word")

    for as_json in (False, True):
        out = logged(emit, as_json=as_json)
        assert TOKEN not in out
        assert all(line not in out for line in lines[1:3])
        assert out.count(HIDDEN) >= 3
        assert "a short word" in out
    json_out = logged(emit, as_json=True)
    assert [json.loads(line)["level"] for line in json_out.splitlines()] == ["info"] * 4


_SEPARATORS = st.text(alphabet=" \t\n=:,;\"'<>()[]{}|/#…", min_size=1, max_size=3)


@given(code=st.one_of(
    st.from_regex(r"1[0-5][0-9]{16}", fullmatch=True),
    st.from_regex(r"(2[5-9]|30)[0-9]{14,22}", fullmatch=True),
    st.from_regex(r"62[0-9]{17}", fullmatch=True)),
    before=_SEPARATORS | st.just(""), after=_SEPARATORS | st.just(""),
    words=st.text(alphabet="abcdefghijklmnopqrstuvwxyz ", max_size=20))
def test_no_payment_code_survives_whatever_surrounds_it(code: str, before: str, after: str,
                                                        words: str) -> None:
    text = f"{words}{' ' if words else ''}{before}{code}{after}{words}"
    assert code not in redact(text, SecretRegistry())


def test_a_filter_on_the_handler_sees_records_of_every_logger() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    handler = logs.handler(stream)
    root.addHandler(handler)
    try:
        logging.getLogger("uvicorn.error").warning("code 134567890123450001")
    finally:
        root.removeHandler(handler)
    assert "1345…0001" in stream.getvalue() and "134567890123450001" not in stream.getvalue()


def test_a_journal_stream_gets_priority_prefixes(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    with (tmp_path / "journal").open("w") as stream:
        info = os.fstat(stream.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        handler = logs.handler(stream)  # type: ignore[arg-type]
        record = logging.LogRecord("posd.engine", logging.WARNING, __file__, 1, "scan %s",
                                   ("134567890123450001",), None)
        assert handler.filter(record)
        assert handler.format(record) == "<4>posd.engine: scan 1345…0001"


def test_uncaught_exceptions_and_warnings_take_the_same_path() -> None:
    script = (
        "import threading, warnings\n"
        "from posd.logs import setup_logging\n"
        "from posd.logs import log_uncaught\n"
        "setup_logging(); log_uncaught()\n"
        "def boom(): raise ValueError('code 134567890123450001')\n"
        "t = threading.Thread(target=boom); t.start(); t.join()\n"
        "warnings.warn('code 281234567890120001')\n"
        "raise RuntimeError('code 134567890123459999')\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            check=False, timeout=60)
    assert result.returncode == 1
    for code in ("134567890123450001", "281234567890120001", "134567890123459999"):
        assert code not in result.stderr
        assert mask(code) in result.stderr
    assert "uncaught ValueError in thread" in result.stderr


# --- end to end ------------------------------------------------------------------------------


@pytest.fixture(name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    sim = start_simulator(pki, alipay=alipay_keys, confirm_delay_s=0.3)
    yield sim
    sim.stop()


#: By the API: WeChat and Alipay paid, declined (0003), unknown then paid (0005), confirming.
API_CODES = ["134567890123457777", "281234567890127777", "134567890123450003",
             "281234567890120003", "134567890123450005", "281234567890120005",
             "2812345678901234560001"]
SCANNED = "134567890123456666"    # through the console scanner, for a sale waiting for it
REFUSED = "281234567890125555"    # scanned with no sale waiting: refused, logged


def key_material(*files: Path) -> list[str]:
    found = []
    for path in files:
        text = path.read_text()
        found += [line.strip() for line in text.splitlines()
                  if len(line.strip()) >= 16 and not line.startswith("-----")]
    return found


def test_sales_on_both_channels_leave_no_code_or_key_in_logs_or_database(
        tmp_path: Path, sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys) -> None:
    port = free_port()
    data = make_config(tmp_path, sim.url, pki, alipay=alipay_keys, api_port=port,
                       scanner={"kind": "console"},
                       log={"level": "debug", "json_file": str(tmp_path / "posd.jsonl")})
    (tmp_path / "config.toml").write_text(to_toml(data))
    stderr = (tmp_path / "stderr.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "posd", "run", "-c",
                             str(tmp_path / "config.toml")],
                            stdin=subprocess.PIPE, stdout=stderr, stderr=stderr)
    assert proc.stdin is not None
    try:
        url = f"http://127.0.0.1:{port}"
        wait_until_up(url, proc)
        sales = [post(url, {"amount": 100 + n, "auth_code": code})
                 for n, code in enumerate(API_CODES)]
        finals = {s["id"]: final(url, s["id"]) for s in sales}
        waiting = post(url, {"amount": 999})  # the next scan pays it (none is in flight now)
        proc.stdin.write(f"{SCANNED}\n".encode())
        proc.stdin.flush()
        finals[waiting["id"]] = final(url, waiting["id"])
        proc.stdin.write(f"{REFUSED}\n".encode())  # nothing waits for a code now
        proc.stdin.flush()
        proc.stdin.close()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        stderr.close()
    states = sorted(s["state"] for s in finals.values())
    assert states == ["declined"] * 2 + ["paid"] * 6, finals
    assert {s["channel"] for s in finals.values()} == {"wechat", "alipay"}

    text_log = (tmp_path / "stderr.log").read_bytes()
    json_log = (tmp_path / "posd.jsonl").read_bytes()
    written = {"stderr": text_log, "json lines": json_log}
    written |= {p.name: p.read_bytes() for p in tmp_path.glob("posd.db*")}
    assert "posd.db" in written
    secrets = [WECHAT.api_key, TOKEN, *key_material(alipay_keys.app_private_key_file,
                                                    pki.client_key_file)]
    for code in [*API_CODES, SCANNED, REFUSED]:
        for name, content in written.items():
            assert code.encode() not in content, f"{code} in {name}"
    for secret in secrets:
        for name, content in written.items():
            assert secret.encode() not in content, f"key material in {name}"
    # The codes were logged -- masked -- in both formats, from the API, scanner and refusal.
    for log in (text_log.decode(), json_log.decode()):
        for code in ("134567890123457777", SCANNED, REFUSED):
            assert mask(code) in log
    assert all(json.loads(line) for line in json_log.splitlines())


def free_port() -> int:
    """A free loopback port (closed again before posd binds it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(url: str, body: dict[str, object]) -> dict[str, object]:
    r = requests.post(f"{url}/v1/sales", json=body, timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 201, r.text
    return dict(r.json())


def final(url: str, sale_id: object) -> dict[str, object]:
    return wait_until_final(url, int(str(sale_id)), token=TOKEN)
