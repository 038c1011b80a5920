# SPDX-License-Identifier: MIT
"""Scanner config: [scanner] and [[scanners]], per-kind keys, labels for /v1/health."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from posd.config import Config, ScannerConfig

ROOT = Path(__file__).parents[2]


def with_scanners(scanner: dict[str, Any], *more: dict[str, Any]) -> Config:
    data = tomllib.loads((ROOT / "config.example.toml").read_text(encoding="utf-8"))
    data["scanner"] = scanner
    if more:
        data["scanners"] = list(more)
    return Config.model_validate(data)


def test_design_keys_still_work() -> None:
    cfg = ScannerConfig(kind="serial", device="/dev/serial/by-id/x", baudrate=115200)
    assert (cfg.bytesize, cfg.parity, cfg.stopbits, cfg.terminators) == (8, "none", 1, ())


@pytest.mark.parametrize(("keys", "match"), [
    ({"kind": "hid"}, "needs device"),
    ({"kind": "serial", "match_name": "x"}, "needs device"),
    ({"kind": "hid", "device": "d", "terminators": ["cr"]}, r"terminators \['cr'\] not allowed"),
    ({"kind": "serial", "device": "d", "terminators": ["kpenter"]}, "not allowed"),
    ({"kind": "console", "terminators": ["enter"]}, "not allowed"),
    ({"kind": "serial", "device": "d", "stopbits": 3}, "must be 1, 1.5 or 2"),
    ({"kind": "serial", "device": "d", "parity": "odd-ish"}, "parity"),
    ({"kind": "hid", "match_vendor_product": "05e0-1200"}, "match_vendor_product"),
    ({"kind": "hid", "device": "d", "key_gap_ms": 0}, "key_gap_ms"),
])
def test_bad_scanner_keys(keys: dict[str, Any], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        ScannerConfig.model_validate(keys)


def test_hid_by_match_alone_and_serial_terminators() -> None:
    assert ScannerConfig(kind="hid", match_vendor_product="05E0:1200").device is None
    cfg = ScannerConfig(kind="serial", device="d", terminators=("crlf", "idle"), stopbits=1.5)
    assert cfg.terminators == ("crlf", "idle") and cfg.stopbits == 1.5


def test_labels_of_several_scanners() -> None:
    cfg = with_scanners({"kind": "hid", "device": "/dev/input/by-id/a"},
                        {"kind": "serial", "device": "/dev/ttyACM0"},
                        {"kind": "hid", "name": "fixed", "match_name": "Newland"})
    assert [label for label, _ in cfg.all_scanners] == ["scanner", "scanner.2", "scanner.fixed"]
    none_first = with_scanners({"kind": "none"}, {"kind": "serial", "device": "d"})
    assert [label for label, _ in none_first.all_scanners] == ["scanner"]


def test_console_only_in_scanner_and_names_unique() -> None:
    with pytest.raises(ValidationError, match="console' only in"):
        with_scanners({"kind": "none"}, {"kind": "console"})
    with pytest.raises(ValidationError, match="name used twice: scanner.a"):
        with_scanners({"kind": "hid", "device": "x", "name": "a"},
                      {"kind": "serial", "device": "y", "name": "a"})


def test_the_commented_scanners_example_is_valid() -> None:
    text = (ROOT / "config.example.toml").read_text(encoding="utf-8")
    block = re.search(r"^# \[\[scanners\]\]\n(?:# .*\n)+", text, re.MULTILINE)
    assert block is not None
    entry = tomllib.loads("\n".join(line[2:] for line in block[0].splitlines()[1:]))
    assert with_scanners({"kind": "none"}, entry).all_scanners[0][0] == "scanner.fixed"
