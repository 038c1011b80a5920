# SPDX-License-Identifier: MIT
"""`posd sync` and `posd sync --status` against a real receiver: output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from posd.cli import main
from posd.core.sale import State
from posd.store import Store
from tests.hq_fixtures import T0, TOKEN, Hq, add_sales, final_sale, start_hq, write_secret


def _config(tmp_path: Path, url: str, token: str = TOKEN) -> Path:
    for name in ("api-token", "wx-key", "client.key"):
        write_secret(tmp_path / name, "x" * 32)
    write_secret(tmp_path / "hq-token", token)
    (tmp_path / "client.pem").write_text("cert")
    path = tmp_path / "config.toml"
    hq = f'[hq]\nurl = "{url}"\ntoken_file = "{tmp_path}/hq-token"\n' if url else ""
    path.write_text(f"""
[store]
id = "S001"
name = "Shop"
terminal_id = "T01"
[database]
path = "{tmp_path}/posd.db"
[api]
token_file = "{tmp_path}/api-token"
[channels.wechat]
base_url = "http://127.0.0.1:9"
appid = "wx1"
mch_id = "10000100"
api_key_file = "{tmp_path}/wx-key"
cert_file = "{tmp_path}/client.pem"
key_file = "{tmp_path}/client.key"
{hq}""")
    return path


@pytest.fixture
def receiver(tmp_path: Path) -> Hq:
    server = start_hq(str(tmp_path / "hq.db"))
    yield server  # type: ignore[misc]
    server.stop()


def _with_sales(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db")
    add_sales(store, [final_sale(1, State.PAID, 1250), final_sale(2, State.REVERSED, 300)])
    store.close()


def test_status_then_sync_then_status(tmp_path: Path, receiver: Hq,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_config(tmp_path, receiver.url))
    _with_sales(tmp_path)
    assert main(["sync", "--status", "-c", config]) == 0
    # 12.50 yuan: the paid sale; the reversed one is a record for HQ but moved no money.
    assert "waiting for HQ: 2 record(s), 12.50 yuan" in capsys.readouterr().out
    assert main(["sync", "-c", config]) == 0
    assert "2 accepted" in capsys.readouterr().out
    assert main(["sync", "--status", "--json", "-c", config]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["backlog"]["count"] == 0 and status["rejected"] == []
    assert receiver.day()["paid_amount"] == 1250


def test_exit_codes_tell_hq_down_from_a_wrong_token(
        tmp_path: Path, receiver: Hq, closed_port: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    _with_sales(tmp_path)
    down = _config(tmp_path, f"http://127.0.0.1:{closed_port}")
    assert main(["sync", "-c", str(down)]) == 69
    assert "unreachable" in capsys.readouterr().err
    wrong = _config(tmp_path, receiver.url, token="not-the-right-token-0123")
    assert main(["sync", "-c", str(wrong)]) == 77
    assert "bearer token" in capsys.readouterr().err
    assert main(["sync", "--status", "-c", str(wrong)]) == 0
    assert "2 record(s)" in capsys.readouterr().out  # nothing lost


def test_rejected_records_exit_65_and_can_be_retried(
        tmp_path: Path, receiver: Hq, capsys: pytest.CaptureFixture[str]) -> None:
    config = str(_config(tmp_path, receiver.url))
    store = Store.open(tmp_path / "posd.db")
    store.outbox_add("sale:X:paid", "sale", {"type": "sale", "version": 9, "sale": {
        "created_at": T0}}, 1, T0)
    store.close()
    assert main(["sync", "-c", config]) == 65
    assert "rejected sale:X:paid: unsupported version 9" in capsys.readouterr().out
    assert main(["sync", "--status", "-c", config]) == 0
    assert "rejected by HQ" in capsys.readouterr().out
    assert main(["sync", "--retry-rejected", "-c", config]) == 65
    assert "re-queued 1" in capsys.readouterr().out


def test_sync_without_hq_url_is_a_config_error(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sync", "-c", str(_config(tmp_path, ""))]) == 78
    assert "hq.url is not set" in capsys.readouterr().err
