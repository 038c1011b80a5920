# SPDX-License-Identifier: MIT
"""Framing: key events or serial bytes in, whole codes out. [core]

Rule 1: no I/O and no clock. Times arrive as arguments -- a key event's own timestamp, the
monotonic time a serial chunk was read -- so a test replays any timing exactly.

Rule 2: a partial code is never handed on. A code is what came before a terminator (or, for
serial scanners framed by silence, before an idle gap); anything else -- a gap between keys
longer than the scanner ever leaves, a key that is not text, events the kernel lost, runaway
input -- drops what was gathered and says so as a :class:`Dropped` value, which carries the
length only: a partial payment code is still a secret.

Keys are Linux input event codes (``linux/input-event-codes.h``), read from a grabbed evdev
device: key positions, not characters. They are turned into characters with the US layout,
which is what barcode scanners emit by default; a scanner set to another layout (AZERTY
digits need Shift) must be switched to US (docs/hardware.md). No X11, no xkb: payment codes
are digits, and digits are the same key positions on every layout that scanners use.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

# --- linux/input-event-codes.h ------------------------------------------------------------

EV_SYN = 0x00
EV_KEY = 0x01
SYN_DROPPED = 3  #: the kernel's buffer overflowed: events were lost

KEY_UP, KEY_DOWN, KEY_REPEAT = 0, 1, 2  #: EV_KEY values

KEY_1, KEY_0, KEY_TAB, KEY_Q, KEY_ENTER, KEY_LEFTCTRL, KEY_A = 2, 11, 15, 16, 28, 29, 30
KEY_LEFTSHIFT, KEY_BACKSLASH, KEY_Z, KEY_RIGHTSHIFT, KEY_KPASTERISK = 42, 43, 44, 54, 55
KEY_LEFTALT, KEY_SPACE, KEY_CAPSLOCK, KEY_NUMLOCK, KEY_SCROLLLOCK = 56, 57, 58, 69, 70
KEY_KP7, KEY_KP0, KEY_KPDOT, KEY_KPENTER, KEY_RIGHTCTRL, KEY_KPSLASH = 71, 82, 83, 96, 97, 98
KEY_RIGHTALT, KEY_KPEQUAL, KEY_KPCOMMA, KEY_LEFTMETA, KEY_RIGHTMETA = 100, 117, 121, 125, 126


def _row(first: int, plain: str, shifted: str) -> dict[int, tuple[str, str]]:
    return {first + i: (p, s) for i, (p, s) in enumerate(zip(plain, shifted, strict=True))}


#: US layout: key -> (character, character with Shift).
US_KEYS: dict[int, tuple[str, str]] = (
    _row(KEY_1, "1234567890-=", "!@#$%^&*()_+")
    | _row(KEY_Q, "qwertyuiop[]", "QWERTYUIOP{}")
    | _row(KEY_A, "asdfghjkl;'`", 'ASDFGHJKL:"~')
    | _row(KEY_BACKSLASH, "\\", "|")
    | _row(KEY_Z, "zxcvbnm,./", "ZXCVBNM<>?")
    | _row(KEY_SPACE, " ", " ")
)
#: The keypad: the same character with or without Shift. Scanners that "type" on the keypad
#: assume NumLock on; the key positions are unambiguous, so posd reads digits either way.
KEYPAD: dict[int, str] = {KEY_KP7 + i: c for i, c in enumerate("789-456+1230.")} | {
    KEY_KPASTERISK: "*", KEY_KPSLASH: "/", KEY_KPEQUAL: "=", KEY_KPCOMMA: ","}

SHIFT_KEYS = frozenset({KEY_LEFTSHIFT, KEY_RIGHTSHIFT})
#: Held with a character key, these make it a command (Ctrl+C), not text.
COMMAND_KEYS = frozenset({KEY_LEFTCTRL, KEY_RIGHTCTRL, KEY_LEFTALT, KEY_RIGHTALT,
                          KEY_LEFTMETA, KEY_RIGHTMETA})
LOCK_KEYS = frozenset({KEY_NUMLOCK, KEY_SCROLLLOCK})

#: Terminator names in config (``scanner.terminators``) for HID scanners.
KEY_TERMINATORS: dict[str, int] = {"enter": KEY_ENTER, "kpenter": KEY_KPENTER, "tab": KEY_TAB}
#: Terminator names for serial scanners; "idle" means an idle gap ends a code.
BYTE_TERMINATORS: dict[str, bytes] = {"cr": b"\r", "lf": b"\n", "crlf": b"\r\n", "tab": b"\t"}
IDLE = "idle"

DEFAULT_MAX_LENGTH = 128  # payment codes are 16-24 digits; anything longer is not one


@dataclass(frozen=True, slots=True)
class Code:
    """A whole code; ``at`` is the time of the input that completed it (the caller's clock)."""

    text: str
    at: float


@dataclass(frozen=True, slots=True)
class Dropped:
    """A partial code thrown away, and why. Only its length: the characters may be secret."""

    reason: str
    length: int


Framed = Code | Dropped


class KeyFramer:
    """Key events from a HID scanner in, whole codes out. No I/O.

    Only key-down of character keys builds a code (key-up and autorepeat do not: a scanner
    never holds a key, and key-down is what loses no characters at speed). Shift is tracked
    from its own down/up events, CapsLock toggles letters; Ctrl, Alt or Meta held make a key
    a command, which drops the partial code.
    """

    def __init__(self, terminators: Iterable[int] = (KEY_ENTER, KEY_KPENTER, KEY_TAB), *,
                 key_gap_s: float = 0.2, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._terminators = frozenset(terminators)
        self._gap = key_gap_s
        self._max = max_length
        self._chars: list[str] = []
        self._last_at = 0.0
        self._held: set[int] = set()
        self._caps = False
        self._overflow = False

    def feed(self, key: int, value: int, at: float) -> Framed | None:
        """One EV_KEY event (``value``: KEY_DOWN, KEY_UP or KEY_REPEAT) at time ``at``."""
        if key in SHIFT_KEYS or key in COMMAND_KEYS:
            if value == KEY_UP:
                self._held.discard(key)
            else:
                self._held.add(key)
            return None
        if value != KEY_DOWN or key in LOCK_KEYS:
            return None
        if key == KEY_CAPSLOCK:
            self._caps = not self._caps
            return None
        dropped = None
        if (self._chars or self._overflow) and at - self._last_at > self._gap:
            self._overflow = False
            dropped = self._drop("more than the key gap since the previous key")
        self._last_at = at
        if key in self._terminators:
            return dropped or self._finish(at)
        char = self._char(key)
        if char is None:
            return dropped or self._drop(f"key {key} is not text")
        if self._overflow or len(self._chars) >= self._max:
            return dropped or self._overflowed()
        self._chars.append(char)
        return dropped

    def lost(self, reason: str) -> Dropped | None:
        """The device went away: drop any partial code; the next device starts afresh."""
        self._held.clear()
        self._overflow = False
        return self._drop(reason)

    def overrun(self, reason: str) -> Dropped | None:
        """The kernel lost events (SYN_DROPPED): drop the partial code and the rest of it, up
        to its terminator (or a key gap) -- what follows the hole is a truncated code."""
        self._held.clear()
        dropped = self._drop(reason)
        self._overflow = True
        return dropped

    def _char(self, key: int) -> str | None:
        if self._held & COMMAND_KEYS:
            return None
        if (pad := KEYPAD.get(key)) is not None:
            return pad
        if (pair := US_KEYS.get(key)) is None:
            return None
        plain, shifted = pair
        shift = bool(self._held & SHIFT_KEYS)
        if plain.isalpha():
            shift ^= self._caps
        return shifted if shift else plain

    def _finish(self, at: float) -> Code | None:
        text, self._chars = "".join(self._chars), []
        overflow, self._overflow = self._overflow, False
        return Code(text, at) if text and not overflow else None

    def _overflowed(self) -> Dropped | None:
        """Runaway input: drop it and everything up to the next terminator (or key gap)."""
        self._overflow = True
        return self._drop(f"longer than {self._max} characters")

    def _drop(self, reason: str) -> Dropped | None:
        length, self._chars = len(self._chars), []
        return Dropped(reason, length) if length else None


class ByteFramer:
    """Bytes from a serial scanner in, whole codes out. No I/O.

    A code ends at a terminator byte, or -- with ``end_on_idle`` -- when no byte came for
    ``idle_gap_s`` (scanners set to send no suffix). Without ``end_on_idle`` a partial code
    that sits that long is dropped. CR and LF both ending a code makes CRLF work (the empty
    code between them is nothing). Other control bytes (STX/ETX framing, a stray LF when only
    CR ends codes) are skipped; bytes beyond ASCII become U+FFFD, which no payment code has.
    """

    def __init__(self, terminators: bytes = b"\r\n", *, idle_gap_s: float = 0.05,
                 end_on_idle: bool = False, max_length: int = DEFAULT_MAX_LENGTH) -> None:
        self._terminators = frozenset(terminators)
        self._gap = idle_gap_s
        self._end_on_idle = end_on_idle or not terminators
        self._max = max_length
        self._buf = bytearray()
        self._last_at = 0.0
        self._overflow = False

    @property
    def deadline(self) -> float | None:
        """When :meth:`idle` must be called if no byte comes first; None: nothing pending."""
        return self._last_at + self._gap if self._buf or self._overflow else None

    def feed(self, data: bytes, at: float) -> list[Framed]:
        """A chunk read at ``at``."""
        out: list[Framed] = []
        if (late := self.idle(at)) is not None:
            out.append(late)
        for byte in data:
            framed = self._byte(byte, at)
            if framed is not None:
                out.append(framed)
        if data:
            self._last_at = at
        return out

    def idle(self, at: float) -> Framed | None:
        """Nothing arrived up to ``at``: past the gap, end (or drop) what is pending."""
        deadline = self.deadline
        if deadline is None or at < deadline:
            return None
        if self._end_on_idle and not self._overflow:
            return self._finish(self._last_at)
        self._overflow = False
        return self._drop("no terminator within the idle gap")

    def lost(self, reason: str) -> Dropped | None:
        """The port went away: drop any partial code."""
        self._overflow = False
        return self._drop(reason)

    def _byte(self, byte: int, at: float) -> Framed | None:
        if byte in self._terminators:
            if self._overflow:
                self._overflow = False
                self._buf.clear()
                return None
            return self._finish(at)
        if byte < 0x20 or byte == 0x7F:
            return None
        if self._overflow:
            return None
        if len(self._buf) >= self._max:
            self._overflow = True
            return self._drop(f"longer than {self._max} characters")
        self._buf.append(byte)
        return None

    def _finish(self, at: float) -> Code | None:
        text = self._buf.decode("ascii", "replace")
        self._buf.clear()
        return Code(text, at) if text else None

    def _drop(self, reason: str) -> Dropped | None:
        length = len(self._buf)
        self._buf.clear()
        return Dropped(reason, length) if length else None
