# SPDX-License-Identifier: MIT
"""The functional core imports no shell module and no I/O library (STYLE.md §3.1).

It walks ``posd/core/``: a module is core because of where it lives, so a new pure module
is held to the rule the moment it is put there, and a shell module cannot hide in it.
"""

import ast
from pathlib import Path

import pytest

CORE = Path(__file__).parents[2] / "posd" / "core"
#: I/O and clocks: what the core never imports.
FORBIDDEN = {"requests", "urllib3", "evdev", "serial", "sqlite_utils", "sqlite3", "escpos",
             "time", "random", "logging", "socket", "os", "subprocess", "threading",
             "apscheduler", "fastapi", "uvicorn", "pathlib", "http", "secrets"}
MODULES = sorted(p.relative_to(CORE).as_posix() for p in CORE.rglob("*.py"))


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_core_folder_holds_the_rules() -> None:
    expected = {"money.py", "codes.py", "framing.py", "sale.py", "receipt.py", "report.py",
                "layout.py", "print_jobs.py", "errors.py", "zones.py", "wechat_wire.py",
                "alipay_wire.py", "alipay_codes.py", "hq_protocol.py"}
    assert expected <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_core_module_does_no_io(module: str) -> None:
    names = _imports(CORE / module)
    bad = {n for n in names if n.split(".")[0] in FORBIDDEN}
    assert not bad, f"posd/core/{module} imports {bad}"
    shell = {n for n in names if n.startswith("posd") and not n.startswith("posd.core")}
    assert not shell, f"posd/core/{module} imports the shell: {shell}"
