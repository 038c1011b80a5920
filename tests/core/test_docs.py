# SPDX-License-Identifier: MIT
"""Docs that are generated or promised must match the code (sqlite-utils' test_docs idea)."""

import importlib.util
import re
from pathlib import Path

import pytest

from posd.cli import _parser

ROOT = Path(__file__).parents[2]


def test_state_diagram_matches_the_transition_table() -> None:
    spec = importlib.util.spec_from_file_location("gen", ROOT / "docs" / "make_state_diagram.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = (ROOT / "docs" / "state-machine.md").read_text(encoding="utf-8")
    assert gen.render(text) == text, "run: .venv/bin/python docs/make_state_diagram.py"
    refunds = (ROOT / "docs" / "refunds.md").read_text(encoding="utf-8")
    assert "refund-rules:begin" in refunds
    assert gen.render(refunds, gen.REFUND_BLOCKS) == refunds, \
        "run: .venv/bin/python docs/make_state_diagram.py"


def _commands() -> list[str]:
    sub = next(a for a in _parser()._actions if a.dest == "command")
    return list(sub.choices)  # type: ignore[union-attr]


@pytest.mark.parametrize("command", _commands())
def test_every_command_is_documented_with_help(command: str) -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    assert re.search(rf"`posd {command}\b", text), f"posd {command} is not in docs/cli.md"


def test_readme_opens_with_the_two_commands() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    head = text[:1500]
    assert "make demo" in head and "make test" in head


def test_every_module_opens_with_what_it_is_for() -> None:
    import ast

    missing = [str(path.relative_to(ROOT)) for path in sorted((ROOT / "posd").rglob("*.py"))
               if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))]
    assert not missing, f"modules without a docstring: {missing}"
