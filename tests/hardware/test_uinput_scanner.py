# SPDX-License-Identifier: MIT
"""The HID reader against the kernel: a uinput keyboard plays the scanner.

Opt-in (POSD_HARDWARE=1) and needs write access to /dev/uinput (``modprobe uinput``; root,
or a udev rule giving the test user the node) and read access to /dev/input/event*. Checks
what the stand-in in tests/shell cannot: matching by name through evdev.list_devices, a real
EVIOCGRAB (and its EBUSY when held), ENODEV on removal, and re-plug.
"""

from __future__ import annotations

import os
import queue
import time
from collections.abc import Iterator
from typing import Any

import pytest

from posd.config import ScannerConfig
from posd.devices.scanners import HidScanner

pytestmark = pytest.mark.hardware

evdev = pytest.importorskip("evdev")
ecodes = evdev.ecodes

NAME = f"posd test scanner {os.getpid()}"
WAIT = 10.0
KEYS = [*range(ecodes.KEY_1, ecodes.KEY_0 + 1), ecodes.KEY_ENTER, ecodes.KEY_KPENTER,
        ecodes.KEY_TAB, ecodes.KEY_LEFTSHIFT, ecodes.KEY_A]
CODE = "134567890123450000"


def uinput() -> Any:
    if not os.access("/dev/uinput", os.W_OK):
        pytest.skip("/dev/uinput is missing or not writable (modprobe uinput; run as root)")
    return evdev.UInput({ecodes.EV_KEY: KEYS}, name=NAME, vendor=0x1D6B, product=0x0104)


def type_code(ui: Any, text: str) -> None:
    for char in text:
        key = ecodes.KEY_0 if char == "0" else getattr(ecodes, f"KEY_{char}")
        for value in (1, 0):
            ui.write(ecodes.EV_KEY, key, value)
            ui.syn()
    for value in (1, 0):
        ui.write(ecodes.EV_KEY, ecodes.KEY_ENTER, value)
        ui.syn()


@pytest.fixture(name="got")
def _got() -> queue.Queue[tuple[str, float, str]]:
    return queue.Queue()


@pytest.fixture(name="scanner")
def _scanner(got: queue.Queue[tuple[str, float, str]]) -> Iterator[HidScanner]:
    cfg = ScannerConfig(kind="hid", match_name=NAME, match_vendor_product="1d6b:0104")
    scanner = HidScanner(cfg, lambda c, t, s: got.put((c, t, s)), retry_delays=(0.1, 0.2))
    yield scanner
    scanner.stop()


def test_uinput_scanner_grab_unplug_replug(scanner: HidScanner,
                                           got: queue.Queue[tuple[str, float, str]]) -> None:
    ui = uinput()
    scanner.start()
    assert scanner.wait_connected(timeout=WAIT), scanner.health()
    assert scanner.health()["grabbed"]
    before = time.monotonic()
    type_code(ui, CODE)
    code, read_at, _ = got.get(timeout=WAIT)
    assert code == CODE and read_at >= before
    ui.close()  # unplug: ENODEV
    assert scanner.wait_connected(False, timeout=WAIT)
    assert "device lost" in scanner.health()["last_error"]
    ui = uinput()  # re-plug: a new event node, found again by name
    assert scanner.wait_connected(timeout=WAIT), scanner.health()
    type_code(ui, "2812345678901200")
    assert got.get(timeout=WAIT)[0] == "2812345678901200"
    ui.close()


def test_a_grab_held_elsewhere_is_reported(scanner: HidScanner) -> None:
    ui = uinput()
    try:
        path = next(p for p in evdev.list_devices() if evdev.InputDevice(p).name == NAME)
        holder = evdev.InputDevice(path)
        holder.grab()  # as another process would
        scanner.start()
        assert scanner.wait_until(lambda s: "holds the grab" in s["last_error"], WAIT)
        holder.ungrab()
        holder.close()
        assert scanner.wait_connected(timeout=WAIT)
    finally:
        ui.close()
