# SPDX-License-Identifier: MIT
"""The simulator's random faults (``set_chaos``, ``/_sim/chaos``): a share of requests gets a
random transport fault, reproducibly with a seed, and 0 stops it (issue 16's chaos test)."""

from __future__ import annotations

import pytest
import requests

from posd.channels.simulator import Simulator
from posd.channels.simulator.faults import CHAOS_KINDS, Fault, FaultKind, FaultQueue
from tests.sandbox import WECHAT


def test_a_share_of_requests_gets_a_random_fault_reproducibly() -> None:
    def draws(seed: int) -> list[str | None]:
        queue = FaultQueue()
        queue.set_chaos(0.3, seed=seed)
        return [None if (f := queue.take("/pay/micropay")) is None else f.kind.value
                for _ in range(2000)]

    first = draws(7)
    assert first == draws(7)
    share = sum(k is not None for k in first) / len(first)
    assert 0.25 < share < 0.35, share
    assert {k for k in first if k} == {k.value for k in CHAOS_KINDS}
    queue = FaultQueue()
    queue.set_chaos(1.0, kinds=(FaultKind.DROP,))
    queue.add(Fault(FaultKind.GARBAGE))
    queued, chaos = queue.take("/x"), queue.take("/x")
    assert queued is not None and queued.kind is FaultKind.GARBAGE  # a queued one first
    assert chaos is not None and chaos.kind is FaultKind.DROP
    queue.set_chaos(0.0)
    assert queue.take("/x") is None
    with pytest.raises(ValueError):
        queue.set_chaos(1.5)


def test_the_control_endpoint_sets_and_shows_it() -> None:
    with Simulator(wechat=WECHAT) as sim:
        got = requests.post(f"{sim.url}/_sim/chaos", json={"rate": 0.3, "seed": 1}, timeout=5)
        assert got.status_code == 200 and got.json()["rate"] == 0.3, got.text
        assert requests.get(f"{sim.url}/_sim/chaos", timeout=5).json()["rate"] == 0.3
        bad = requests.post(f"{sim.url}/_sim/chaos", json={"rate": "x"}, timeout=5)
        assert bad.status_code == 400
        assert requests.post(f"{sim.url}/_sim/chaos", json={"rate": 0}, timeout=5).json()[
            "rate"] == 0.0
