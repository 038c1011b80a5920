# SPDX-License-Identifier: MIT
"""Tests here need real devices (/dev/uinput, a scanner, a printer): opt-in with POSD_HARDWARE=1.

Like pyserial's ``PORT`` for its threaded tests: the same assertions as tests/shell, against
the kernel instead of a stand-in. See docs/hardware.md.
"""

from __future__ import annotations

import os

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if os.environ.get("POSD_HARDWARE") == "1":
        return
    skip = pytest.mark.skip(reason="hardware test: set POSD_HARDWARE=1 (docs/hardware.md)")
    for item in items:
        if item.get_closest_marker("hardware") is not None:
            item.add_marker(skip)
