# SPDX-License-Identifier: MIT
"""The pure framers: key events (HID) and bytes (serial) in, whole codes out.

Events are plain ints here (the core imports no evdev); tests/shell/test_scanner_hid.py feeds
real ``evdev.InputEvent`` values through the reader.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from posd.core.framing import (
    KEY_CAPSLOCK,
    KEY_DOWN,
    KEY_ENTER,
    KEY_KPENTER,
    KEY_LEFTCTRL,
    KEY_LEFTSHIFT,
    KEY_REPEAT,
    KEY_RIGHTSHIFT,
    KEY_TAB,
    KEY_UP,
    KEYPAD,
    US_KEYS,
    ByteFramer,
    Code,
    Dropped,
    Framed,
    KeyFramer,
)

KEY_OF = {plain: key for key, (plain, _) in US_KEYS.items()}
SHIFTED_OF = {shifted: key for key, (plain, shifted) in US_KEYS.items() if shifted != plain}
KEYPAD_OF = {char: key for key, char in KEYPAD.items()}
KEY_F1 = 59
GAP = 0.2


def press(framer: KeyFramer, key: int, at: float) -> list[Framed]:
    """Key down then up, as a scanner types."""
    out = [framer.feed(key, KEY_DOWN, at), framer.feed(key, KEY_UP, at + 0.001)]
    return [f for f in out if f is not None]


def type_text(framer: KeyFramer, text: str, at: float = 0.0, step: float = 0.004,
              end: int = KEY_ENTER) -> list[Framed]:
    """Type ``text`` on the US main rows (Shift where needed), then ``end``."""
    out: list[Framed] = []
    for char in text:
        shifted = char not in KEY_OF
        if shifted:
            out += [f for f in [framer.feed(KEY_LEFTSHIFT, KEY_DOWN, at)] if f]
        out += press(framer, SHIFTED_OF[char] if shifted else KEY_OF[char], at)
        if shifted:
            out += [f for f in [framer.feed(KEY_LEFTSHIFT, KEY_UP, at)] if f]
        at += step
    return [_rounded(f) for f in out + press(framer, end, at)]


def _rounded(framed: Framed) -> Framed:
    """Times to the microsecond, as evdev stamps them (sums of float steps drift below it)."""
    return Code(framed.text, round(framed.at, 6)) if isinstance(framed, Code) else framed


# --- KeyFramer ---------------------------------------------------------------------------


def test_main_row_digits_and_enter_make_a_code() -> None:
    framer = KeyFramer()
    out = type_text(framer, "134567890123450001", at=10.0)
    assert out == [Code("134567890123450001", 10.0 + 18 * 0.004)]


def test_keypad_digits_and_keypad_enter() -> None:
    framer = KeyFramer()
    out: list[Framed] = []
    for i, char in enumerate("2812345678901200"):
        out += press(framer, KEYPAD_OF[char], i * 0.003)
    out += press(framer, KEY_KPENTER, 0.1)
    assert out == [Code("2812345678901200", 0.1)]


def test_tab_ends_a_code_only_when_configured() -> None:
    assert type_text(KeyFramer(), "1234", end=KEY_TAB) == [Code("1234", 0.016)]
    enter_only = KeyFramer((KEY_ENTER,))
    assert type_text(enter_only, "1234", end=KEY_TAB) == [Dropped(f"key {KEY_TAB} is not text", 4)]


def test_shift_makes_capitals_and_symbols() -> None:
    framer = KeyFramer()
    assert type_text(framer, "Ab!x@Z?") == [Code("Ab!x@Z?", 0.028)]
    out = [framer.feed(KEY_RIGHTSHIFT, KEY_DOWN, 1.0)] + press(framer, KEY_OF["q"], 1.0)
    out += [framer.feed(KEY_RIGHTSHIFT, KEY_UP, 1.0)] + press(framer, KEY_OF["q"], 1.0)
    assert [f for f in out if f] + press(framer, KEY_ENTER, 1.01) == [Code("Qq", 1.01)]


def test_capslock_toggles_letters_not_digits() -> None:
    framer = KeyFramer()
    press(framer, KEY_CAPSLOCK, 0.0)
    assert type_text(framer, "ab12", at=0.01) == [Code("AB12", 0.026)]
    press(framer, KEY_CAPSLOCK, 1.0)
    assert type_text(framer, "ab", at=1.01) == [Code("ab", 1.018)]


def test_key_up_and_autorepeat_add_nothing() -> None:
    framer = KeyFramer()
    framer.feed(KEY_OF["1"], KEY_DOWN, 0.0)
    framer.feed(KEY_OF["1"], KEY_REPEAT, 0.01)
    framer.feed(KEY_OF["1"], KEY_UP, 0.02)
    assert framer.feed(KEY_ENTER, KEY_DOWN, 0.03) == Code("1", 0.03)


def test_a_partial_code_is_dropped_after_the_key_gap() -> None:
    framer = KeyFramer(key_gap_s=GAP)
    type_text(framer, "1345678", end=KEY_OF["9"])  # no Enter: the scan was cut short
    dropped = press(framer, KEY_OF["2"], 5.0)  # the next scan, seconds later
    assert dropped == [Dropped("more than the key gap since the previous key", 8)]
    assert type_text(framer, "81234567890120000", at=5.004) == [
        Code("281234567890120000", 5.072)]


def test_enter_long_after_a_partial_code_drops_it() -> None:
    framer = KeyFramer(key_gap_s=GAP)
    press(framer, KEY_OF["1"], 0.0)
    gap = Dropped("more than the key gap since the previous key", 1)
    assert press(framer, KEY_ENTER, 0.5) == [gap]


def test_a_non_text_key_or_a_command_drops_the_partial_code() -> None:
    framer = KeyFramer()
    press(framer, KEY_OF["1"], 0.0)
    assert press(framer, KEY_F1, 0.01) == [Dropped(f"key {KEY_F1} is not text", 1)]
    press(framer, KEY_OF["1"], 0.02)
    framer.feed(KEY_LEFTCTRL, KEY_DOWN, 0.03)
    assert press(framer, KEY_OF["c"], 0.03) == [Dropped(f"key {KEY_OF['c']} is not text", 1)]
    framer.feed(KEY_LEFTCTRL, KEY_UP, 0.04)
    assert type_text(framer, "7", at=0.05) == [Code("7", 0.054)]


def test_enter_alone_is_nothing_and_runaway_input_is_dropped() -> None:
    framer = KeyFramer(max_length=4)
    assert press(framer, KEY_ENTER, 0.0) == []
    assert type_text(framer, "123456", at=1.0) == [Dropped("longer than 4 characters", 4)]
    assert type_text(framer, "1234", at=2.0) == [Code("1234", 2.016)]


def test_an_overrun_drops_the_rest_of_the_code_too() -> None:
    framer = KeyFramer(key_gap_s=GAP)
    press(framer, KEY_OF["1"], 0.0)
    assert framer.overrun("events lost") == Dropped("events lost", 1)
    assert type_text(framer, "2345", at=0.01) == []  # the code's tail, then its Enter
    assert type_text(framer, "99", at=0.05) == [Code("99", 0.058)]
    framer.overrun("events lost, nothing pending")
    assert type_text(framer, "77", at=1.0) == [Code("77", 1.008)]  # after a key gap


def test_lost_events_drop_the_partial_code_and_release_shift() -> None:
    framer = KeyFramer()
    framer.feed(KEY_LEFTSHIFT, KEY_DOWN, 0.0)
    press(framer, KEY_OF["a"], 0.0)
    assert framer.lost("events lost") == Dropped("events lost", 1)
    assert framer.lost("again") is None
    assert type_text(framer, "a", at=0.01) == [Code("a", 0.014)]


_EVENTS = st.lists(st.tuples(st.integers(0, 0x2FF), st.integers(-1, 3),
                             st.floats(0, 0.5, allow_nan=False)), max_size=200)


@given(_EVENTS)
def test_any_key_events_give_only_clean_codes(events: list[tuple[int, int, float]]) -> None:
    framer = KeyFramer(max_length=32)
    at = 0.0
    for key, value, step in events:
        at += step
        framed = framer.feed(key, value, at)
        if isinstance(framed, Code):
            assert 0 < len(framed.text) <= 32 and framed.at == at
            assert framed.text.isascii() and framed.text.isprintable()
        elif isinstance(framed, Dropped):
            assert framed.length > 0


@given(_EVENTS, st.text("0123456789", min_size=1, max_size=24))
def test_a_scan_after_a_pause_is_read_exactly_whatever_came_before(
    events: list[tuple[int, int, float]], digits: str
) -> None:
    framer = KeyFramer(key_gap_s=GAP)
    at = 0.0
    for key, value, step in events:
        at += step
        framer.feed(key, value, at)
    for modifier in (KEY_LEFTSHIFT, KEY_RIGHTSHIFT, KEY_LEFTCTRL, 97, 56, 100, 125, 126):
        framer.feed(modifier, KEY_UP, at)  # a keyboard at rest: every key released
    codes = [f for f in type_text(framer, digits, at=at + 1.0) if isinstance(f, Code)]
    assert [c.text for c in codes] == [digits]


# --- ByteFramer --------------------------------------------------------------------------


def texts(framed: list[Framed]) -> list[str]:
    return [f.text for f in framed if isinstance(f, Code)]


def test_cr_lf_crlf_end_codes_across_chunks() -> None:
    framer = ByteFramer(b"\r\n")
    assert texts(framer.feed(b"1234\r5678\n90", 0.0)) == ["1234", "5678"]
    assert framer.feed(b"12\r\n", 0.01) == [Code("9012", 0.01)]
    assert framer.feed(b"\r\n\r\n", 0.02) == []


def test_tab_terminator_and_skipped_control_bytes() -> None:
    framer = ByteFramer(b"\t")
    assert texts(framer.feed(b"\x021234\x03\t\n56\r78\t", 0.0)) == ["1234", "5678"]


def test_bytes_beyond_ascii_become_replacement_characters() -> None:
    assert texts(ByteFramer().feed(b"12\xff3\r", 0.0)) == ["12\ufffd3"]


def test_with_terminators_a_partial_code_is_dropped_after_the_idle_gap() -> None:
    framer = ByteFramer(b"\r", idle_gap_s=0.05)
    assert framer.deadline is None
    framer.feed(b"1345", 1.0)
    assert framer.deadline == 1.05
    assert framer.idle(1.04) is None
    assert framer.idle(1.05) == Dropped("no terminator within the idle gap", 4)
    assert framer.deadline is None
    assert framer.feed(b"99\r", 2.0) == [Code("99", 2.0)]


def test_a_late_chunk_drops_the_stale_partial_first() -> None:
    framer = ByteFramer(b"\r", idle_gap_s=0.05)
    framer.feed(b"13", 1.0)
    assert framer.feed(b"77\r", 2.0) == [Dropped("no terminator within the idle gap", 2),
                                         Code("77", 2.0)]


def test_idle_framing_ends_a_code_at_the_gap_with_the_last_byte_time() -> None:
    framer = ByteFramer(b"", idle_gap_s=0.05)
    framer.feed(b"2812", 1.0)
    framer.feed(b"3456", 1.01)
    assert framer.idle(1.059) is None
    assert framer.idle(1.06) == Code("28123456", 1.01)
    framer.feed(b"11", 2.0)
    assert framer.feed(b"22", 3.0) == [Code("11", 2.0)]  # a late chunk ends the previous code


def test_idle_and_terminators_together() -> None:
    framer = ByteFramer(b"\r", idle_gap_s=0.05, end_on_idle=True)
    assert framer.feed(b"12\r34", 0.0) == [Code("12", 0.0)]
    assert framer.idle(0.05) == Code("34", 0.0)


def test_runaway_bytes_are_dropped_up_to_the_next_terminator() -> None:
    framer = ByteFramer(b"\r", max_length=4)
    assert framer.feed(b"123456\r789\r", 0.0) == [Dropped("longer than 4 characters", 4),
                                                  Code("789", 0.0)]


def test_lost_port_drops_the_partial_code() -> None:
    framer = ByteFramer()
    framer.feed(b"12", 0.0)
    assert framer.lost("unplugged") == Dropped("unplugged", 2)
    assert framer.deadline is None


_CHUNKS = st.lists(st.tuples(st.binary(max_size=40), st.floats(0, 0.2, allow_nan=False)),
                   max_size=60)


@given(_CHUNKS, st.sampled_from([b"\r", b"\r\n", b"\t", b""]))
def test_any_bytes_give_only_clean_codes(chunks: list[tuple[bytes, float]],
                                         terminators: bytes) -> None:
    framer = ByteFramer(terminators, idle_gap_s=0.05, max_length=32)
    at = 0.0
    for data, step in chunks:
        at += step
        for framed in [*framer.feed(data, at), framer.idle(at + 0.01)]:
            if isinstance(framed, Code):
                assert 0 < len(framed.text) <= 32 and framed.at <= at
                assert not any(c in framed.text for c in "\r\n\t\x00\x7f")
            elif isinstance(framed, Dropped):
                assert framed.length > 0


@given(_CHUNKS, st.text("0123456789", min_size=1, max_size=24), st.booleans())
def test_a_frame_after_a_pause_is_read_exactly_whatever_came_before(
    chunks: list[tuple[bytes, float]], digits: str, idle_framing: bool
) -> None:
    framer = ByteFramer(b"" if idle_framing else b"\r\n", idle_gap_s=0.05)
    at = 0.0
    for data, step in chunks:
        at += step
        framer.feed(data, at)
    end = b"" if idle_framing else b"\r\n"
    got = framer.feed(digits.encode() + end, at + 1.0)
    if idle_framing:
        got.append(framer.idle(at + 1.06))  # type: ignore[arg-type]
    # With idle framing, bytes still pending from before the pause come out first as their
    # own code: the pause ended them.
    assert texts(got)[-1:] == [digits] and len(texts(got)) <= 1 + idle_framing
