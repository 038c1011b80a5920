# SPDX-License-Identifier: MIT
"""The functional core imports no shell module and no I/O library (STYLE.md §3.1)."""

import ast
from pathlib import Path

import pytest

CORE = ["money.py", "codes.py", "framing.py", "sale.py", "receipt.py", "report.py",
        "channels/wechat_wire.py", "channels/alipay_wire.py", "channels/alipay_codes.py"]
FORBIDDEN = {"requests", "evdev", "serial", "sqlite_utils", "sqlite3", "escpos", "time", "random",
             "logging", "socket", "posd.store", "posd.engine", "posd.api", "posd.cli"}


@pytest.mark.parametrize("module", CORE)
def test_core_module_does_no_io(module: str) -> None:
    path = Path(__file__).parents[2] / "posd" / module
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    bad = {n for n in names if n in FORBIDDEN or n.split(".")[0] in FORBIDDEN}
    assert not bad, f"{module} imports {bad}"
