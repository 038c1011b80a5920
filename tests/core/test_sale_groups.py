# SPDX-License-Identifier: MIT
"""The state groups, the scan rule and the cancel rule: defined once, in posd.core.sale."""

from dataclasses import replace

from posd.core import sale as m
from posd.core.money import Fen
from posd.core.sale import State

T0 = 1_000_000.0


def test_the_groups_partition_the_states() -> None:
    assert m.FINAL | m.WORKING == set(State)
    assert not m.FINAL & m.WORKING
    assert m.IN_FLIGHT < m.WORKING and m.PAYING_NOW < m.IN_FLIGHT
    assert m.UNRESOLVED | {State.PAID} | m.NO_MONEY == set(State)
    assert m.PRINTABLE == m.FINAL - {State.CANCELLED}
    # Every state a transition can leave is working (or needs a person).
    assert {s for s, to in m.TRANSITIONS.items() if to} <= m.UNRESOLVED


def _sale(i: int, state: State = State.AWAITING_CODE) -> m.Sale:
    return replace(m.new_sale(f"S1T1X{i}", Fen(100), T0), id=i, state=state)


def test_a_scan_pays_the_one_waiting_sale() -> None:
    assert m.scan_target([_sale(1)], paying_now=False) == _sale(1)
    assert "no sale is waiting" in str(m.scan_target([], paying_now=False))
    assert "in progress" in str(m.scan_target([_sale(1)], paying_now=True))
    assert "several sales (1, 2)" in str(m.scan_target([_sale(1), _sale(2)], paying_now=False))


def test_a_forgotten_sale() -> None:
    sale = _sale(1)
    assert not m.is_forgotten(sale, T0 + 600, 600)
    assert m.is_forgotten(sale, T0 + 601, 600)
    assert not m.is_forgotten(_sale(2, State.PAYING), T0 + 9999, 600)
    expired = m.expire(sale, T0 + 601, "10 min")
    assert expired.state is State.CANCELLED and "no payment code" in expired.message


def test_cancelling_never_refunds() -> None:
    assert m.cancel_refusal(_sale(1)) is None
    assert "cannot be cancelled" in str(m.cancel_refusal(_sale(2, State.PAID)))
    assert "cannot be cancelled" in str(m.cancel_refusal(_sale(3, State.NEEDS_ATTENTION)))
