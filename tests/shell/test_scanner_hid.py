# SPDX-License-Identifier: MIT
"""The HID (evdev) reader fed real ``evdev.InputEvent`` values through its device seam.

This machine has no scanner and no /dev/uinput: :class:`PipeKeyboard` stands in for the
input device (tests/shell/scanner_fakes.py); tests/hardware/ repeats the essentials on a
uinput keyboard where one exists.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from evdev import InputEvent, ecodes
from hypothesis import given, settings
from hypothesis import strategies as st

from posd.core import framing
from posd.channels.simulator import Simulator, TestPki
from posd.channels.wechat.client import WechatPay
from posd.config import ScannerConfig
from posd.engine import Engine
from posd.core.errors import DeviceError
from posd.core.sale import State
from posd.devices.scanners import HidScanner, find_key_device
from posd.store import Store
from tests.sandbox import FAST, config, make_config, start_simulator
from tests.shell.scanner_fakes import PipeKeyboard, Plug, keystrokes

CODE = "134567890123450000"
WAIT = 5.0
FAST_RETRY = (0.02, 0.05)
HID = ScannerConfig(kind="hid", device="/dev/input/by-id/usb-Test_Scanner-event-kbd")

Got = queue.Queue[tuple[str, float, str]]


@pytest.fixture(name="got")
def _got() -> Got:
    return queue.Queue()


@pytest.fixture(name="keyboard")
def _keyboard() -> Iterator[PipeKeyboard]:
    keyboard = PipeKeyboard()
    yield keyboard
    keyboard.close()


def reader(got: Got, plug: Plug, cfg: ScannerConfig = HID, label: str = "scanner") -> HidScanner:
    scanner = HidScanner(cfg, lambda c, t, s: got.put((c, t, s)), label=label, open_device=plug,
                         retry_delays=FAST_RETRY)
    scanner.start()
    return scanner


def test_keycodes_are_the_kernels() -> None:
    """posd.core.framing's constants are linux/input-event-codes.h's, as evdev knows them."""
    for name in ("KEY_1", "KEY_0", "KEY_TAB", "KEY_Q", "KEY_ENTER", "KEY_A", "KEY_Z", "KEY_SPACE",
                 "KEY_LEFTSHIFT", "KEY_RIGHTSHIFT", "KEY_CAPSLOCK", "KEY_KP7", "KEY_KP0",
                 "KEY_KPDOT", "KEY_KPENTER", "KEY_KPSLASH", "KEY_KPASTERISK", "KEY_LEFTCTRL",
                 "KEY_RIGHTALT", "KEY_LEFTMETA", "KEY_NUMLOCK", "EV_KEY", "EV_SYN", "SYN_DROPPED"):
        assert getattr(framing, name) == getattr(ecodes, name), name
    for key, (plain, _) in framing.US_KEYS.items():
        if plain.isalnum():
            assert ecodes.KEY[key] == f"KEY_{plain.upper()}"


def test_a_scan_reaches_the_pipeline_grabbed(got: Got, keyboard: PipeKeyboard) -> None:
    scanner = reader(got, Plug(keyboard), label="scanner.front")
    assert scanner.wait_connected(timeout=WAIT)
    before = time.monotonic()
    keyboard.send(keystrokes(CODE, start=1_700_000_000.0))
    code, read_at, source = got.get(timeout=WAIT)
    scanner.stop()
    assert (code, source) == (CODE, "scanner.front")
    assert before <= read_at <= time.monotonic()
    assert keyboard.grabbed and keyboard.closed.is_set()
    health = scanner.health()
    assert health["codes"] == 1 and health["kind"] == "hid" and health["device"] == keyboard.path


def test_letters_keypad_and_tab(got: Got, keyboard: PipeKeyboard) -> None:
    scanner = reader(got, Plug(keyboard))
    assert scanner.wait_connected(timeout=WAIT)
    keyboard.send(keystrokes("Pay42x", start=10.0, end=ecodes.KEY_TAB))
    pad = [InputEvent(11, 0, ecodes.EV_KEY, ecodes.KEY_KP0 if d == "0" else
                      getattr(ecodes, f"KEY_KP{d}"), v) for d in "2801" for v in (1, 0)]
    keyboard.send(pad + [InputEvent(11, 1000, ecodes.EV_KEY, ecodes.KEY_KPENTER, 1)])
    assert [got.get(timeout=WAIT)[0] for _ in range(2)] == ["Pay42x", "2801"]
    scanner.stop()


def test_a_partial_code_is_dropped_after_the_key_gap(got: Got, keyboard: PipeKeyboard) -> None:
    scanner = reader(got, Plug(keyboard), ScannerConfig(kind="hid", device="x", key_gap_ms=100))
    assert scanner.wait_connected(timeout=WAIT)
    keyboard.send(keystrokes("1345678", start=20.0)[:-6])  # cut short: no Enter
    keyboard.send(keystrokes(CODE, start=25.0))  # the next scan, seconds later (event time)
    assert got.get(timeout=WAIT)[0] == CODE
    scanner.stop()
    assert scanner.health()["partial_codes_dropped"] == 1


def test_lost_events_drop_the_partial_code(got: Got, keyboard: PipeKeyboard) -> None:
    scanner = reader(got, Plug(keyboard))
    assert scanner.wait_connected(timeout=WAIT)
    events = keystrokes("1234", start=30.0)
    overrun = InputEvent(30, 9000, ecodes.EV_SYN, ecodes.SYN_DROPPED, 0)
    keyboard.send(events[:12] + [overrun] + events[-6:] + keystrokes("5678", start=30.1))
    assert got.get(timeout=WAIT)[0] == "5678"
    scanner.stop()
    assert scanner.health()["partial_codes_dropped"] == 1


def test_unplug_is_reported_and_replug_is_read_without_a_restart(got: Got) -> None:
    first, second = PipeKeyboard(), PipeKeyboard()
    plug = Plug(first)
    scanner = reader(got, plug)
    assert scanner.wait_connected(timeout=WAIT)
    first.send(keystrokes("1234", start=40.0)[:-6])
    first.unplug()
    assert scanner.wait_connected(False, timeout=WAIT)
    health = scanner.health()
    assert "No such device" in health["last_error"] and "ENODEV" in health["last_error"]
    assert health["degraded"].startswith("not connected: device lost")
    assert first.closed.is_set()
    plug.plug(second)
    assert scanner.wait_connected(timeout=WAIT)
    second.send(keystrokes(CODE, start=50.0))
    assert got.get(timeout=WAIT)[0] == CODE  # the partial "1234" went with the first device
    scanner.stop()
    second.close()
    assert scanner.health()["partial_codes_dropped"] == 1


def test_a_grab_held_elsewhere_is_reported_clearly(got: Got) -> None:
    busy, free = PipeKeyboard(busy=True), PipeKeyboard()
    plug = Plug(busy)
    scanner = reader(got, plug)
    assert scanner.wait_until(lambda state: "grab" in state["last_error"], WAIT)
    health = scanner.health()
    assert not health["connected"] and not health["grabbed"] and busy.closed.is_set()
    assert "another process holds the grab" in health["last_error"]
    assert "fuser -v" in health["last_error"] and "degraded" in health
    plug.plug(free)  # the other process let go
    assert scanner.wait_connected(timeout=WAIT)
    assert scanner.health()["grabbed"] and free.grabbed
    scanner.stop()
    free.close()


def test_grab_false_reads_shared(got: Got, keyboard: PipeKeyboard) -> None:
    scanner = reader(got, Plug(keyboard), ScannerConfig(kind="hid", device="x", grab=False))
    assert scanner.wait_connected(timeout=WAIT)
    keyboard.send(keystrokes("99", start=60.0))
    assert got.get(timeout=WAIT)[0] == "99"
    scanner.stop()
    assert not keyboard.grabbed and not scanner.health()["grabbed"]


def test_several_scanners_at_once(got: Got) -> None:
    boards = [PipeKeyboard(f"/dev/input/by-path/pci-0-usb-0:{i}-event-kbd") for i in (1, 2)]
    scanners = [reader(got, Plug(b), label=f"scanner.{i}") for i, b in enumerate(boards, 1)]
    assert all(s.wait_connected(timeout=WAIT) for s in scanners)
    boards[1].send(keystrokes("2222", start=70.0))
    boards[0].send(keystrokes("1111", start=70.0))
    got_codes = {got.get(timeout=WAIT)[::2] for _ in boards}
    assert got_codes == {("1111", "scanner.1"), ("2222", "scanner.2")}
    for scanner, board in zip(scanners, boards, strict=True):
        scanner.stop()
        assert board.closed.is_set()


def test_stop_wakes_a_blocked_read_promptly(got: Got, keyboard: PipeKeyboard) -> None:
    scanner = reader(got, Plug(keyboard))
    assert scanner.wait_connected(timeout=WAIT)
    started = time.monotonic()
    scanner.stop(timeout=WAIT)
    assert time.monotonic() - started < 1.0
    assert keyboard.closed.is_set() and not scanner.connected


def test_a_missing_device_is_retried_with_a_clear_error(got: Got) -> None:
    plug = Plug()
    scanner = reader(got, plug)
    assert scanner.wait_until(lambda state: "not present" in state["last_error"], WAIT)
    keyboard = PipeKeyboard()
    plug.plug(keyboard)  # plugged in after posd started
    assert scanner.wait_connected(timeout=WAIT)
    scanner.stop()
    keyboard.close()


def test_find_key_device_without_hardware_says_why() -> None:
    with pytest.raises(DeviceError, match="not present"):
        find_key_device(ScannerConfig(kind="hid", device="/dev/input/by-id/no-such-scanner"))
    with pytest.raises(DeviceError, match="no keyboard-like input device matches name"):
        find_key_device(ScannerConfig(kind="hid", match_name="Honeywell",
                                      match_vendor_product="0c2e:0b61"))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 0x2FF), st.integers(-1, 3)),
                max_size=60))
def test_any_events_through_the_reader_leave_it_reading(junk: list[tuple[int, int, int]]) -> None:
    """Arbitrary events (any type, code, value) never stop the reader; a scan after a pause
    is read exactly."""
    got: Got = queue.Queue()
    device = PipeKeyboard()
    scanner = reader(got, Plug(device))
    try:
        assert scanner.wait_connected(timeout=WAIT)
        events = [InputEvent(80, i, etype, code, value) for i, (etype, code, value) in
                  enumerate(junk)]
        release = [InputEvent(80, 999_999, ecodes.EV_KEY, k, 0) for k in
                   (42, 54, 29, 97, 56, 100, 125, 126)]
        device.send(events + release + keystrokes(CODE, start=90.0))
        codes = []
        while (item := got.get(timeout=WAIT))[0] != CODE:
            codes.append(item[0])
        assert all(c.isprintable() for c in codes)
    finally:
        scanner.stop()
        device.close()


# --- the one pipeline -------------------------------------------------------------------


@pytest.fixture(name="sim")
def _sim(pki: TestPki) -> Iterator[Simulator]:
    sim = start_simulator(pki)
    yield sim
    sim.stop()


@pytest.fixture(name="engine")
def _engine(tmp_path: Path, sim: Simulator, pki: TestPki) -> Iterator[Engine]:
    cfg = config(make_config(tmp_path, sim.url, pki))
    assert cfg.channels.wechat is not None
    channel = WechatPay.from_config(cfg.channels.wechat, device_info="T01", body_prefix="Test")
    store = Store.open(cfg.database.path)
    engine = Engine(cfg, store, {"wechat": channel}, policies={"wechat": FAST})
    engine.start()
    yield engine
    engine.stop(timeout=5)
    store.close()


def test_a_hid_scan_pays_the_waiting_sale_and_is_refused_without_one(
    engine: Engine, keyboard: PipeKeyboard
) -> None:
    outcomes: queue.Queue[object] = queue.Queue()
    scanner = HidScanner(HID, lambda c, t, s: outcomes.put(engine.scan(c, t, s)),
                         label="scanner", open_device=Plug(keyboard), retry_delays=FAST_RETRY)
    engine.add_health_probe(scanner.label, scanner.health)
    scanner.start()
    assert scanner.wait_connected(timeout=WAIT)
    keyboard.send(keystrokes(CODE, start=100.0))
    refused = outcomes.get(timeout=WAIT)
    assert not refused.accepted and "no sale is waiting" in refused.reason  # type: ignore[attr-defined]
    health = engine.health()
    assert health["last_scan"]["code"] == "1345…0000" and health["last_scan"]["source"] == "scanner"
    assert health["scanner"]["connected"] and health["scanner"]["grabbed"]
    sale, _ = engine.create_sale(100)
    keyboard.send(keystrokes("134567890123450009", start=110.0))
    assert outcomes.get(timeout=WAIT).accepted  # type: ignore[attr-defined]
    deadline = time.monotonic() + 10
    while not (sale := engine.get(sale.id)).final and time.monotonic() < deadline:
        engine.wait_for_change(sale.id, sale.updated_at, deadline - time.monotonic())
    assert sale.state is State.PAID
    scanner.stop()
