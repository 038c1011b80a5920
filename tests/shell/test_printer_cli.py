# SPDX-License-Identifier: MIT
"""``posd report daily`` and ``posd receipt``: text, JSON, CSV, PNG, and --print through the
queue to a print worker (another connection to the same database, as the daemon is)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo
from typing import Any

import pytest
from PIL import Image

from posd.core import report
from posd.api import DailyReportOut
from posd.channels.simulator import TestPki
from posd.cli import main
from posd.config import load
from posd.core.print_jobs import JobState
from posd.devices.print_queue import Printing
from posd.core.sale import State
from posd.store import Store
from tests.core.test_receipt import paid
from tests.sandbox import make_config, to_toml
from tests.shell.escpos_fake import FakePrinter, fake_printer  # noqa: F401 - a fixture
from tests.shell.test_printer_queue import add_sale

DAY = report.business_day(paid().created_at, ZoneInfo("Asia/Shanghai")).isoformat()  # store tz


def write_config(tmp: Path, pki: TestPki, **sections: Any) -> Path:
    path = tmp / "config.toml"
    sections.setdefault("printer", {"kind": "none"})
    path.write_text(to_toml(make_config(tmp, "http://127.0.0.1:9", pki, **sections)))
    return path


@pytest.fixture
def shop(tmp_path: Path, pki: TestPki) -> Iterator[tuple[Path, Store]]:
    """A config (no printer) and its database with three sales of one day."""
    path = write_config(tmp_path, pki)
    store = Store.open(tmp_path / "posd.db")
    add_sale(store, State.PAID, 1250)
    add_sale(store, State.DECLINED, 300)
    add_sale(store, State.NEEDS_ATTENTION, 70)
    yield path, store
    store.close()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = main(list(args))
    out, err = capsys.readouterr()
    return status, out, err


def test_report_daily_as_text(shop: tuple[Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", "daily", "--date", DAY, "-c", str(shop[0]))
    assert status == 0
    assert "Z-REPORT" in out and f"Business day          {DAY}" in out
    assert "Paid               1       12.50" in out and "NEEDS ATTENTION                1" in out


def test_report_daily_as_json_is_the_apis_plus_kind_and_bounds(
        shop: tuple[Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", "daily", "--date", DAY, "--format", "json",
                         "-c", str(shop[0]))
    data = json.loads(out)
    assert status == 0 and DailyReportOut.model_validate(data)  # the API's contract
    assert data["total"]["paid"] == {"count": 1, "amount": 1250} and data["net"] == 1250
    assert data["kind"] == "Z" and data["since"] < data["until"]
    assert [a["amount"] for a in data["attention"]] == [70]
    assert data["needs_attention"] == [a["id"] for a in data["attention"]]


def test_report_daily_as_csv(shop: tuple[Path, Store], capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", "daily", "--date", DAY, "--format", "csv",
                         "-c", str(shop[0]))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0 and [r["channel"] for r in rows] == ["wechat", "all"]
    assert (rows[1]["paid_yuan"], rows[1]["declined_count"], rows[1]["net_yuan"]) == (
        "12.50", "1", "12.50")


def test_the_current_business_day_is_an_x_report(shop: tuple[Path, Store],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "report", "daily", "-c", str(shop[0]))
    assert status == 0 and "X-REPORT (day so far)" in out


def test_receipt_shows_and_draws_a_png(shop: tuple[Path, Store], tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "receipt.png"
    status, out, err = run(capsys, "receipt", "1", "--png", str(png), "-c", str(shop[0]))
    assert status == 0 and "PAID" in out and "REPRINT" not in out
    assert f"PNG preview written to {png}" in err
    with Image.open(png) as image:
        assert image.format == "PNG" and image.width == 32 * 12 + 16 and image.height > 600


def test_reprint_is_queued_and_waits_for_the_daemon(shop: tuple[Path, Store], pki: TestPki,
                                                    tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, pki, printer={"kind": "console"})
    status, out, err = run(capsys, "receipt", "1", "--print", "--wait", "0", "-c", str(config))
    assert status == 69 and "*** REPRINT ***" in out
    assert "queued as print job 1, not printed yet" in err and "is posd running?" in err
    [job] = shop[1].print_jobs(JobState.QUEUED)
    assert (job.sale_id, job.reprint, job.key) == (1, True, None)


def test_report_print_is_printed_by_the_worker(shop: tuple[Path, Store], pki: TestPki,
                                               tmp_path: Path, fake_printer: FakePrinter,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    printer = {"kind": "network", "host": fake_printer.host, "port": fake_printer.port,
               "status_timeout_s": 0.3, "poll_s": 0.2, "status_every_s": 0}
    config = write_config(tmp_path, pki, printer=printer, receipt={"language": "zh"})
    daemon_side = Printing.from_config(load(config), shop[1], None)
    assert daemon_side is not None
    daemon_side.start()
    try:
        status, out, _ = run(capsys, "report", "daily", "--date", DAY, "--print", "-c",
                             str(config))
    finally:
        daemon_side.stop()
    assert status == 0 and "日结报表 Z" in out and "printed (print job 1)" in out
    assert "日结报表 Z" in fake_printer.next_job().texts


@pytest.mark.parametrize(("args", "message"), [
    (["receipt", "99"], "no sale 99"),
    (["receipt", "1", "--print"], "printer.kind is 'none'"),
    (["report", "daily", "--date", "2024-13-01"], "date must be a calendar day"),
])
def test_refusals(shop: tuple[Path, Store], capsys: pytest.CaptureFixture[str],
                  args: list[str], message: str) -> None:
    status, _, err = run(capsys, *args, "-c", str(shop[0]))
    assert status in (1, 65) and message in err


def test_no_database_is_not_created(tmp_path: Path, pki: TestPki,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "receipt", "1", "-c", str(write_config(tmp_path, pki)))
    assert status == 1 and "no database at" in err
    assert not (tmp_path / "posd.db").exists()
