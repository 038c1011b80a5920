# SPDX-License-Identifier: MIT
"""posd.devices.printers: golden ESC/POS bytes (Dummy), CJK encoding, and real printer sessions
against a loopback network printer, a file, and devices that are not there."""

from __future__ import annotations

import io
import os
import pty
import queue
import re
import threading
import time
import tty
from dataclasses import replace
from pathlib import Path

import pytest
from escpos.printer import Dummy, Usb

from posd.core import receipt, report
from posd.config import PrinterConfig
from posd.core.errors import ConfigError, DeviceError
from posd.core.layout import Line
from posd.core.print_jobs import Status
from posd.devices.printers import ConsoleOutput, encode_gb18030, open_printer, render
from posd.core.sale import State
from tests.core.test_receipt import HEADER, paid
from tests.core.test_report import SALES
from tests.shell.escpos_decode import decode
from tests.shell.escpos_fake import (  # noqa: F401 - fake_printer is a fixture
    COVER_OPEN, PAPER_LOW, PAPER_OUT, READY, SILENT, FakePrinter, fake_printer,
)

GOLDEN = Path(__file__).parent / "golden"
DEFAULT = PrinterConfig(kind="none")


def assert_golden(name: str, data: bytes) -> None:
    """Compare with tests/shell/golden/NAME; POSD_UPDATE_GOLDEN=1 rewrites the file."""
    path = GOLDEN / name
    if os.environ.get("POSD_UPDATE_GOLDEN") == "1":
        path.write_bytes(data)
    assert path.read_bytes() == data, f"{name} changed: inspect, then POSD_UPDATE_GOLDEN=1"


def _daily() -> report.DailyReport:
    return report.daily_report(report.parse_day("2024-05-01"), SALES)


@pytest.mark.parametrize(("name", "layout", "config"), [
    ("receipt-paid-en-58.bin", receipt.elements(paid(), HEADER), DEFAULT),
    ("receipt-paid-zh-80.bin", receipt.elements(paid(), HEADER, columns=48, language="zh",
                                                reprint=True, printed_at=1.7e9), DEFAULT),
    ("slip-reversed-en-58-codepages.bin",
     receipt.elements(replace(paid(), state=State.REVERSED, message="Reversed: not paid"),
                      receipt.Header("Example Mart", "S001", "T01")),
     PrinterConfig(kind="none", encoding="codepages", qr_size=4, cut=False)),
    ("report-zh-58.bin", report.elements(_daily(), HEADER, tz=None, language="zh"), DEFAULT),
])
def test_golden_bytes(name: str, layout: list[receipt.Element], config: PrinterConfig) -> None:
    assert_golden(name, render(layout, config))


def test_a_receipt_decodes_back_to_its_lines() -> None:
    job = decode(render(receipt.elements(paid(), HEADER), DEFAULT))
    assert job.inits == 1 and job.chinese_mode_used and job.cuts == 1
    assert job.texts[0] == "示例便利店 Example Mart"
    title = job.line_with("PAID")
    assert (title.text, title.align, title.bold, title.width, title.height) == (
        "PAID", "center", True, 2, 2)
    amount = job.line_with("CNY 12.50")
    assert (amount.bold, amount.width, amount.height) == (True, 1, 2)
    assert job.line_with("Payer code").text.endswith("1345…0001")
    assert job.line_with("S001T01231114221320000001").align == "right"
    assert job.qr == ["S001T01231114221320000001"]
    assert all(receipt.width(line.text) * line.width <= 32 for line in job.lines)


def test_chinese_is_gb18030_in_two_bytes_with_the_full_width_yuan_sign() -> None:
    assert encode_gb18030("示例") == "示例".encode("gbk")
    assert encode_gb18030("￥12.50") == b"\xa3\xa412.50"  # noqa: RUF001
    assert encode_gb18030("¥") == b"\xa3\xa4"  # half-width: four bytes in GB18030, so swapped
    assert encode_gb18030("，：…") == b"\xa3\xac\xa3\xba\xa1\xad"  # noqa: RUF001
    assert encode_gb18030("𠀀x") == b"?x"  # outside GBK: a GBK printer would print junk
    # What python-escpos itself sends, and why posd encodes its own text:
    magic = Dummy()
    magic.text("合计：¥12.50")  # noqa: RUF001
    assert b"\x81\x30\x84\x36" in magic.output  # the four-byte yen sign
    magic = Dummy()
    magic.text("，：")  # noqa: RUF001
    assert magic.output.endswith(b"??")  # punctuation alone loses its code page


def test_punctuation_only_and_mixed_lines_survive_the_round_trip() -> None:
    lines = [Line("，：；"), Line("合计：￥12.50"), Line("Café au lait")]  # noqa: RUF001
    job = decode(render(lines, DEFAULT))
    assert job.texts == ["，：；", "合计：￥12.50", "Café au lait"]  # noqa: RUF001


def test_code_pages_for_western_printers() -> None:
    config = PrinterConfig(kind="none", encoding="codepages", chinese_mode=True)
    job = decode(render([Line("Café 1345…0001")], config))
    assert job.texts == ["Café 1345…0001"] and not job.chinese_mode_used


def test_chinese_mode_can_be_left_alone() -> None:
    data = render(receipt.elements(paid(), HEADER, language="zh"),
                  PrinterConfig(kind="none", chinese_mode=False))
    assert b"\x1c&" not in data and b"\x1c." not in data
    assert "支付成功".encode("gbk") in data


def test_qr_as_an_image_and_no_cut() -> None:
    job = decode(render(receipt.elements(paid(), HEADER),
                        PrinterConfig(kind="none", qr="image", cut=False, profile="TM-T88V")))
    assert (job.images, job.qr, job.cuts) == (1, [], 0)


def test_unknown_profile_and_usb_without_pyusb_are_config_errors() -> None:
    with pytest.raises(ConfigError, match=r"printer\.profile"):
        open_printer(PrinterConfig(kind="network", host="h", profile="NoSuchPrinter"), None, 32)
    if Usb.is_usable():
        pytest.skip("pyusb is installed here")
    with pytest.raises(ConfigError, match="pyusb"):
        open_printer(PrinterConfig(kind="usb", usb_vendor_id=0x0416, usb_product_id=0x5011),
                     None, 32)


# --- sessions with a loopback network printer ---------------------------------------------------


def _network(fake: FakePrinter, **options: object) -> PrinterConfig:
    return PrinterConfig(kind="network", host=fake.host, port=fake.port, timeout_s=2.0,
                         status_timeout_s=0.3, **options)  # type: ignore[arg-type]


def test_status_then_print_over_the_network(fake_printer: FakePrinter) -> None:
    printer = open_printer(_network(fake_printer), None, 32)
    assert printer.describe == f"network 127.0.0.1:{fake_printer.port}" and printer.can_ask
    session = printer.open()
    assert session.status() is Status.OK
    session.send(receipt.elements(paid(), HEADER))
    session.close()
    job = fake_printer.next_job()
    assert job.status_queries == [1, 4]
    assert "PAID" in job.texts and job.qr == ["S001T01231114221320000001"]


@pytest.mark.parametrize(("answers", "status", "queries"), [
    (PAPER_LOW, Status.PAPER_LOW, [1, 4]),
    (PAPER_OUT, Status.PAPER_OUT, [1, 2, 4]),
    (COVER_OPEN, Status.COVER_OPEN, [1, 2, 4]),
    (SILENT, Status.NO_ANSWER, [1]),  # silence: asked once, not "paper adequate"
])
def test_what_the_printer_answers(fake_printer: FakePrinter, answers: dict[int, int],
                                  status: Status, queries: list[int]) -> None:
    fake_printer.set(answers)
    session = open_printer(_network(fake_printer), None, 32).open()
    started = time.monotonic()
    assert session.status() is status
    assert time.monotonic() - started < 2.0  # the status timeout, not the socket's 60 s
    session.close()
    assert decode(fake_printer.connections.get(timeout=5)).status_queries == queries


def test_an_answer_later_than_the_status_timeout_is_no_answer(fake_printer: FakePrinter) -> None:
    fake_printer.set({1: 0x12, 4: 0x12}, delay_s=1.0)
    session = open_printer(_network(fake_printer), None, 32).open()
    assert session.status() is Status.NO_ANSWER
    session.close()


def test_status_query_off_means_unknown_and_no_query(fake_printer: FakePrinter) -> None:
    fake_printer.set(SILENT)
    printer = open_printer(_network(fake_printer, status_query=False), None, 32)
    assert not printer.can_ask
    session = printer.open()
    assert session.status() is Status.UNKNOWN
    session.send([Line("hello")])
    session.close()
    job = fake_printer.next_job()
    assert job.status_queries == [] and job.texts[0] == "hello"


def test_a_closed_port_is_a_device_error(closed_port: int) -> None:
    printer = open_printer(PrinterConfig(kind="network", host="127.0.0.1", port=closed_port),
                           None, 32)
    with pytest.raises(DeviceError, match=f"network 127.0.0.1:{closed_port}"):
        printer.open()


def test_a_printer_that_hangs_up_fails_the_write(fake_printer: FakePrinter) -> None:
    session = open_printer(_network(fake_printer), None, 32).open()
    session.status()
    session._device.device.close()  # noqa: SLF001 - the connection dies under the session
    with pytest.raises(DeviceError, match="write failed"):
        session.send([Line("x")])


# --- file, serial, console ------------------------------------------------------------------------


class PtyPrinter:
    """A serial receipt printer on a pseudo-terminal: python-escpos opens the slave by its
    path as it would /dev/ttyUSB0; this side records the bytes and answers DLE EOT."""

    def __init__(self, answers: dict[int, int]) -> None:
        self.master, self.slave = pty.openpty()
        self.device = os.ttyname(self.slave)
        tty.setraw(self.master)
        self.answers = answers
        self.received: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        data = bytearray()
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO: the other side closed
                break
            data += chunk
            for n in re.findall(rb"\x10\x04(.)", chunk, re.DOTALL):
                if (answer := self.answers.get(n[0])) is not None:
                    os.write(self.master, bytes([answer]))
        self.received.put(bytes(data))
        os.close(self.master)


@pytest.mark.parametrize(("answers", "status"), [
    (READY, Status.OK), (PAPER_OUT, Status.PAPER_OUT), (SILENT, Status.NO_ANSWER)])
def test_a_serial_printer(answers: dict[int, int], status: Status) -> None:
    fake = PtyPrinter(answers)
    printer = open_printer(PrinterConfig(kind="serial", device=fake.device, baudrate=19200,
                                         status_timeout_s=0.3), None, 32)
    assert printer.describe == f"serial {fake.device}" and printer.can_ask
    session = printer.open()
    os.close(fake.slave)  # now python-escpos holds it: its close() ends the recording (EIO)
    assert session.status() is status
    if status.ready:
        session.send(receipt.elements(paid(), HEADER))
    session.close()
    job = decode(fake.received.get(timeout=5))
    assert ("PAID" in job.texts) is status.ready and job.status_queries[0] == 1


def test_a_file_printer_cannot_be_asked_and_gets_the_bytes(tmp_path: Path) -> None:
    device = tmp_path / "lp0"
    printer = open_printer(PrinterConfig(kind="file", device=str(device)), None, 32)
    session = printer.open()
    assert session.status() is Status.UNKNOWN  # never "paper OK" without an answer
    session.send(receipt.elements(paid(), HEADER))
    session.close()
    assert "PAID" in decode(device.read_bytes()).texts


@pytest.mark.parametrize("config", [
    PrinterConfig(kind="file", device="/nonexistent/dir/lp0"),
    PrinterConfig(kind="serial", device="/nonexistent/ttyUSB9"),
])
def test_a_missing_device_is_a_device_error(config: PrinterConfig) -> None:
    with pytest.raises(DeviceError, match="/nonexistent/"):
        open_printer(config, None, 32).open()


def test_the_console_prints_text() -> None:
    stream = io.StringIO()
    console = open_printer(PrinterConfig(kind="console"), stream, 32)
    assert isinstance(console, ConsoleOutput) and not console.can_ask
    session = console.open()
    assert session.status() is Status.UNKNOWN
    session.send(receipt.elements(paid(), HEADER))
    assert "PAID" in stream.getvalue() and "[QR: S001T01231114221320000001]" in stream.getvalue()
