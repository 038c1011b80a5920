# SPDX-License-Identifier: MIT
"""Draw posd.core.sale.TRANSITIONS as a Mermaid diagram into docs/state-machine.md.

One table is spec, code and doc (h11's make-state-diagrams.py). Run:
    .venv/bin/python docs/make_state_diagram.py          # rewrite the diagram
tests/core/test_docs.py fails when the committed diagram differs from the table.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from posd.core.sale import FINAL, TRANSITIONS, State  # noqa: E402

DOC = Path(__file__).with_name("state-machine.md")
BEGIN, END = "<!-- diagram:begin -->", "<!-- diagram:end -->"


def diagram() -> str:
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> awaiting_code"]
    for state in State:
        for target in sorted(TRANSITIONS[state], key=list(State).index):
            lines.append(f"    {state.value} --> {target.value}")
    for state in State:
        if state in FINAL and state is not State.NEEDS_ATTENTION:
            lines.append(f"    {state.value} --> [*]")
    lines.append("```")
    return "\n".join(lines)


def render(text: str) -> str:
    block = f"{BEGIN}\n{diagram()}\n{END}"
    return re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
