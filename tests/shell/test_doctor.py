# SPDX-License-Identifier: MIT
"""`posd doctor` against real things: the channel simulator (WeChat over mutual TLS, Alipay
RSA2), a loopback ESC/POS network printer, a serial scanner on a real pty, a real HQ
receiver, a real SQLite file -- and each of them broken in the way a shop would break it."""

from __future__ import annotations

import json
import logging
import os
import pwd
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from posd.channels.simulator import AlipayKeys, Simulator, TestPki
from posd.cli import main
from posd.daemon import Daemon
from posd.doctor import readable_by
from posd.store import Store
from tests.hq_fixtures import TOKEN as HQ_TOKEN
from tests.hq_fixtures import Hq, start_hq, write_secret
from tests.sandbox import config as validate
from tests.sandbox import make_config, start_simulator, to_toml
from tests.shell.escpos_fake import PAPER_OUT, FakePrinter, fake_printer  # noqa: F401 - fixture
from tests.shell.pty_scanner import PtyScanner


@pytest.fixture(autouse=True)
def _root_logging() -> Iterator[None]:
    """`posd doctor` sets up logging (logs.setup_logging) on this test's captured stderr: put
    the root logger back, or later records would go to a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.fixture(scope="module", name="sim")
def _sim(pki: TestPki, alipay_keys: AlipayKeys) -> Iterator[Simulator]:
    sim = start_simulator(pki, alipay=alipay_keys)
    yield sim
    sim.stop()


@pytest.fixture(name="hq")
def _hq(tmp_path: Path) -> Iterator[Hq]:
    receiver = start_hq(str(tmp_path / "hq.db"))
    yield receiver
    receiver.server.stop()


@pytest.fixture(name="scanner")
def _scanner(tmp_path: Path) -> Iterator[PtyScanner]:
    pty = PtyScanner(tmp_path / "usb-Scanner-if00")
    yield pty
    pty.close()


def shop(tmp_path: Path, sim: Simulator, pki: TestPki, keys: AlipayKeys, printer: FakePrinter,
         scanner: PtyScanner, hq: Hq) -> dict[str, Any]:
    """A config of a shop with everything: both channels, a scanner, a printer, HQ."""
    hq_token = write_secret(tmp_path / "hq-token", HQ_TOKEN)
    data = make_config(tmp_path, sim.url, pki, alipay=keys,
                       scanner={"kind": "serial", "device": str(scanner.link)},
                       printer={"kind": "network", "host": printer.host, "port": printer.port,
                                "status_timeout_s": 0.5},
                       hq={"url": hq.url, "token_file": str(hq_token)})
    Store.open(Path(data["database"]["path"])).close()
    return data


def doctor(tmp_path: Path, data: dict[str, Any],
           capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, dict[str, str]]]:
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    code = main(["doctor", "-c", str(path), "--json"])
    rows = json.loads(capsys.readouterr().out)
    return code, {row["name"]: row for row in rows}


def results(rows: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: row["result"] for name, row in rows.items()}


def test_a_healthy_shop_passes_every_check(
        tmp_path: Path, sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys,
        fake_printer: FakePrinter, scanner: PtyScanner, hq: Hq,  # noqa: F811 - fixture
        capsys: pytest.CaptureFixture[str]) -> None:
    data = shop(tmp_path, sim, pki, alipay_keys, fake_printer, scanner, hq)
    code, rows = doctor(tmp_path, data, capsys)
    assert code == 0, rows
    assert results(rows) == {
        "config": "ok", "key files": "ok", "database": "ok", "disk": rows["disk"]["result"],
        "daemon": "warn", "scanner": "warn", "printer": "ok", "wechat": "ok",
        "wechat certificate": "ok", "alipay": "ok", "clock": "ok", "hq": "ok",
        "wechat set-up": "ok", "alipay set-up": "ok",
        "timezone": rows["timezone"]["result"]}  # the host's zone: UTC here, CST in a shop
    assert rows["wechat set-up"]["detail"].startswith("direct merchant")
    assert rows["alipay set-up"]["detail"].startswith("merchant's own app")
    assert rows["disk"]["result"] in ("ok", "warn")
    assert rows["timezone"]["result"] == "ok" or "timedatectl" in rows["timezone"]["fix"]
    assert "not answering" in rows["daemon"]["detail"]
    # A pty is group tty, not dialout: opened here (root), but not by the service's groups.
    assert "not group dialout" in rows["scanner"]["detail"]
    assert "60-posd.rules" in rows["scanner"]["fix"]
    assert "ORDERNOTEXIST" in rows["wechat"]["detail"]
    assert "TRADE_NOT_EXIST" in rows["alipay"]["detail"]
    assert "ready" in rows["printer"]["detail"]
    # The probes are queries for orders that cannot exist: the channels' ledgers stay empty.
    assert sim.ledger() == []


def test_while_the_daemon_runs_its_scanner_is_read_from_its_health(
        tmp_path: Path, sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys,
        fake_printer: FakePrinter, scanner: PtyScanner, hq: Hq,  # noqa: F811 - fixture
        capsys: pytest.CaptureFixture[str]) -> None:
    data = shop(tmp_path, sim, pki, alipay_keys, fake_printer, scanner, hq)
    data["api"]["listen"] = "127.0.0.1:0"
    daemon = Daemon.build(validate(data))
    daemon.start()
    try:
        assert daemon.readers[0].wait_connected(timeout=10)
        data["api"]["listen"] = f"127.0.0.1:{daemon.api.port}"
        code, rows = doctor(tmp_path, data, capsys)
    finally:
        daemon.stop()
    assert code == 0, rows
    assert rows["daemon"]["result"] == "ok"
    assert rows["scanner"]["result"] == "ok"
    assert "read by the running posd" in rows["scanner"]["detail"]


def test_each_broken_part_fails_with_its_fix(
        tmp_path: Path, sim: Simulator, pki: TestPki, alipay_keys: AlipayKeys,
        fake_printer: FakePrinter, scanner: PtyScanner, hq: Hq,  # noqa: F811 - fixture
        capsys: pytest.CaptureFixture[str]) -> None:
    data = shop(tmp_path, sim, pki, alipay_keys, fake_printer, scanner, hq)
    write_secret(tmp_path / "wechat-api-key", "0" * 32)        # not the merchant's key
    write_secret(tmp_path / "hq-token", "not-the-token-HQ-gave-us")
    fake_printer.set(PAPER_OUT)
    scanner.unplug()
    code, rows = doctor(tmp_path, data, capsys)
    assert code == 1
    failed = {name for name, row in rows.items() if row["result"] == "fail"}
    assert failed == {"wechat", "printer", "scanner", "hq"}, rows
    assert all(rows[name]["fix"] for name in failed)
    assert "签名错误" in rows["wechat"]["detail"] or "sign" in rows["wechat"]["detail"].lower()
    assert "api_key_file" in rows["wechat"]["fix"]
    assert "out of paper" in rows["printer"]["detail"]
    assert "not present" in rows["scanner"]["detail"]
    assert "token" in rows["hq"]["detail"]
    # Nothing secret in what doctor printed, even about a wrong key.
    assert "0" * 32 not in json.dumps(rows)


def test_key_files_database_and_config(tmp_path: Path, sim: Simulator, pki: TestPki,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = make_config(tmp_path, sim.url, pki)
    (tmp_path / "api-token").chmod(0o644)
    db = Path(data["database"]["path"])
    Store.open(db).close()
    with db.open("r+b") as handle:  # a torn write in the middle of the file
        handle.seek(4096)
        handle.write(b"\xff" * 8192)
    code, rows = doctor(tmp_path, data, capsys)
    assert code == 1
    assert rows["key files"]["result"] == "fail"
    assert "api.token_file" in rows["key files"]["detail"]
    assert "chmod 600" in rows["key files"]["fix"]
    assert rows["database"]["result"] == "fail"
    assert "backup" in rows["database"]["fix"]
    assert rows["scanner"]["result"] == rows["printer"]["result"] == rows["hq"]["result"] == "skip"

    data["scanner"] = {"kind": "serial"}  # no device: the config itself is wrong
    code, rows = doctor(tmp_path, data, capsys)
    assert code == 1
    assert list(rows) == ["config"]
    assert "scanner" in rows["config"]["detail"]


def test_the_table_shows_each_fix(tmp_path: Path, sim: Simulator, pki: TestPki,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = make_config(tmp_path, sim.url, pki)
    path = tmp_path / "config.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    assert main(["doctor", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("ok    config")
    assert "WARN  database" in out and "fix: posd run creates it" in out
    assert out.rstrip().endswith("checks")


def test_a_file_printer_is_looked_at_not_opened(tmp_path: Path, sim: Simulator, pki: TestPki,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    receipts = tmp_path / "receipts.bin"
    receipts.write_bytes(b"yesterday's receipts")
    data = make_config(tmp_path, sim.url, pki, printer={"kind": "file",
                                                        "device": str(receipts)})
    _, rows = doctor(tmp_path, data, capsys)
    assert rows["printer"]["result"] == "ok"
    assert receipts.read_bytes() == b"yesterday's receipts"  # not truncated by a probe
    receipts.unlink()
    _, rows = doctor(tmp_path, data, capsys)
    assert rows["printer"]["result"] == "fail" and "not present" in rows["printer"]["detail"]


@pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")
def test_readable_by_the_service_user(tmp_path: Path) -> None:
    service = pwd.struct_passwd(("posd", "x", 64000, 64000, "", "/var/lib/posd", "/bin/false"))
    key = tmp_path / "key"
    key.write_text("secret")
    key.chmod(0o600)  # root's own: what `posd doctor` run as root would not notice by itself
    assert not readable_by(service, key)
    os.chown(key, 64000, 64000)
    assert readable_by(service, key)
    os.chown(key, 0, 64000)
    key.chmod(0o640)  # config.toml: root:posd 0640
    assert readable_by(service, key)
