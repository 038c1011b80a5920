# SPDX-License-Identifier: MIT
"""A real USB receipt printer (opt-in: POSD_HARDWARE=1 and POSD_USB_PRINTER=VID:PID).

The same path as tests/shell/test_printer.py's loopback printer, through pyusb and the
kernel: open, DLE EOT status, print a receipt with a QR code, close. Needs the `usb` extra
(`pip install -e '.[usb]'`) and libusb; docs/printing.md says how to find VID:PID.
"""

from __future__ import annotations

import os

import pytest

from posd.core import receipt
from posd.config import PrinterConfig
from posd.core.print_jobs import Status
from posd.devices.printers import open_printer
from tests.core.test_receipt import HEADER, paid

pytestmark = pytest.mark.hardware


def _config() -> PrinterConfig:
    wanted = os.environ.get("POSD_USB_PRINTER", "")
    if ":" not in wanted:
        pytest.skip("set POSD_USB_PRINTER=VID:PID (hex), e.g. 0416:5011")
    vendor, product = (int(part, 16) for part in wanted.split(":", 1))
    return PrinterConfig(kind="usb", usb_vendor_id=vendor, usb_product_id=product,
                         timeout_s=5.0, status_timeout_s=1.0)


def test_status_and_a_receipt_on_a_real_usb_printer() -> None:
    printer = open_printer(_config(), None, 32)
    session = printer.open()
    try:
        status = session.status()
        assert status in (Status.OK, Status.PAPER_LOW, Status.NO_ANSWER), status
        session.send(receipt.elements(paid(), HEADER))
    finally:
        session.close()
