# SPDX-License-Identifier: MIT
"""Draw posd.core.sale.RULES as a Mermaid diagram and a table into docs/state-machine.md.

One table is spec, code and doc (h11's make-state-diagrams.py): every arrow is a cell of
``RULES`` (a channel answer in a phase) or of ``COMMANDS`` (the register, the cashier, the
clock, a person), labelled with what moves it. Run:
    .venv/bin/python docs/make_state_diagram.py          # rewrite both blocks
tests/core/test_docs.py fails when the committed doc differs from the table.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))

from posd.core.sale import (  # noqa: E402
    ANSWERS, COMMANDS, FINAL, PHASE_STATES, RULES, TRANSITIONS, Phase, State,
)

from posd.core import refund  # noqa: E402

DOC = Path(__file__).with_name("state-machine.md")
REFUNDS_DOC = Path(__file__).with_name("refunds.md")
BLOCKS = ("diagram", "rules")


def _edges() -> dict[tuple[State, State], list[str]]:
    edges: dict[tuple[State, State], list[str]] = {}
    for (phase, answer), rule in RULES.items():
        for source in PHASE_STATES[phase]:
            for target in rule.to - {source}:
                labels = edges.setdefault((source, target), [])
                if answer.__name__ not in labels:
                    labels.append(answer.__name__)
    for name, (sources, targets) in COMMANDS.items():
        for source in sources:
            for target in targets - {source}:
                edges.setdefault((source, target), []).append(name)
    return edges


def diagram() -> str:
    order = list(State).index
    edges = _edges()
    assert {s: {t for (f, t) in edges if f is s} for s in State} == TRANSITIONS
    lines = ["```mermaid", "stateDiagram-v2", "    [*] --> awaiting_code"]
    for (source, target) in sorted(edges, key=lambda e: (order(e[0]), order(e[1]))):
        lines.append(f"    {source.value} --> {target.value}: {', '.join(edges[source, target])}")
    for state in State:
        if state in FINAL and state is not State.NEEDS_ATTENTION:
            lines.append(f"    {state.value} --> [*]")
    lines.append("```")
    return "\n".join(lines)


def rules() -> str:
    lines = ["| phase (states) | answer | leads to (or stays) | what it means |", "|---|---|---|---|"]
    for phase in Phase:
        states = ", ".join(sorted(s.value for s in PHASE_STATES[phase]))
        for answer in ANSWERS:
            rule = RULES[phase, answer]
            to = ", ".join(sorted(s.value for s in rule.to)) or "stays"
            lines.append(f"| {phase.value} ({states}) | `{answer.__name__}` | {to} | {rule.says} |")
    return "\n".join(lines)


def refund_rules() -> str:
    """posd.core.refund.RULES: what each answer to a refund or a refund query does."""
    lines = ["| answer to | answer | leads to (or stays refunding) | what it means |",
             "|---|---|---|---|"]
    for action in refund.RefundAction:
        for answer in refund.ANSWERS:
            rule = refund.RULES[action, answer]
            to = ", ".join(sorted(s.value for s in rule.to)) or "stays"
            lines.append(f"| {action.value} | `{answer.__name__}` | {to} | {rule.says} |")
    return "\n".join(lines)


def render(text: str, blocks: tuple[tuple[str, Callable[[], str]], ...] | None = None) -> str:
    for name, make in blocks or tuple(zip(BLOCKS, (diagram, rules), strict=True)):
        begin, end = f"<!-- {name}:begin -->", f"<!-- {name}:end -->"
        block = f"{begin}\n{make()}\n{end}"
        text = re.sub(re.escape(begin) + r".*?" + re.escape(end), lambda _, b=block: b, text,
                      flags=re.S)
    return text


REFUND_BLOCKS = (("refund-rules", refund_rules),)


if __name__ == "__main__":
    DOC.write_text(render(DOC.read_text(encoding="utf-8")), encoding="utf-8")
    REFUNDS_DOC.write_text(render(REFUNDS_DOC.read_text(encoding="utf-8"), REFUND_BLOCKS),
                           encoding="utf-8")
