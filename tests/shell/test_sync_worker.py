# SPDX-License-Identifier: MIT
"""The daemon's pusher: woken by final sales, backing off while HQ is down, catching up after."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from posd.core.sale import State
from posd.store import Store
from posd.sync import SyncWorker
from tests.hq_fixtures import (
    T0,
    Hq,
    add_sales,
    final_sale,
    hq,
    hq_counts,
    hq_db,
    make_syncer,
    start_hq,
    store,
)

__all__ = ["hq", "hq_db", "store"]  # fixtures

DAY_S = 86400.0


@pytest.fixture
def free_port() -> int:
    """A loopback port nobody listens on yet (HQ will, later)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _worker(store: Store, url: str, **kw: float) -> SyncWorker:
    options = {"interval_s": 3600.0, "backoff_initial_s": 0.01, "backoff_max_s": 0.16} | kw
    return SyncWorker(make_syncer(store, url, batch_size=50), jitter=lambda: 0.0, **options)


@pytest.fixture
def running() -> Iterator[list[SyncWorker]]:
    workers: list[SyncWorker] = []
    yield workers
    for worker in workers:
        worker.stop()


def test_hq_down_for_days_then_back_gets_everything_once(
        hq_db: str, store: Store, free_port: int, running: list[SyncWorker]) -> None:
    days = [T0 + d * DAY_S for d in range(3)]  # three days of sales while HQ is away
    add_sales(store, [final_sale(10 * d + n, State.PAID, 100 + n, at=at + n)
                      for d, at in enumerate(days) for n in range(40)])
    worker = _worker(store, f"http://127.0.0.1:{free_port}")
    running.append(worker)
    worker.start()
    state = worker.wait_for(lambda s: s.failures >= 8, timeout=30)
    assert state.failures >= 8 and state.error_kind == "unavailable"
    # exponential, capped at backoff_max_s (x 0.5 with jitter 0)
    assert state.delays[:7] == (0.005, 0.01, 0.02, 0.04, 0.08, 0.08, 0.08)
    assert "unreachable" in worker.health()["degraded"]
    assert store.outbox_backlog()["count"] == 120  # nothing lost, nothing deleted
    assert worker.syncer.prune() == 0

    receiver = start_hq(hq_db, port=free_port)
    try:
        state = worker.wait_for(lambda s: s.failures == 0 and s.pushed == 120, timeout=30)
        assert (state.failures, state.pushed) == (0, 120)
        assert store.outbox_backlog()["count"] == 0
        assert "degraded" not in worker.health()
        for d in range(3):
            day = receiver.day(f"2024-05-0{d + 1}")
            assert (day["paid_count"], day["paid_amount"]) == (40, 40 * 100 + sum(range(40)))
        assert hq_counts(receiver) == {"records": 120, "sales": 120}
    finally:
        receiver.stop()


def test_a_final_sale_wakes_the_pusher(hq: Hq, store: Store, running: list[SyncWorker]) -> None:
    worker = _worker(store, hq.url)  # interval one hour: only the sale can wake it now
    running.append(worker)
    worker.start()
    worker.wait_for(lambda s: s.attempts >= 1, timeout=10)  # the push at start: nothing
    (sale,) = add_sales(store, [final_sale(1, State.PAID, 4200)])
    worker.on_sale(sale)
    state = worker.wait_for(lambda s: s.pushed == 1, timeout=10)
    assert state.pushed == 1
    assert hq.day()["paid_amount"] == 4200


def test_a_wrong_token_degrades_health_at_once(hq: Hq, store: Store,
                                                running: list[SyncWorker]) -> None:
    add_sales(store, [final_sale(1)])
    worker = SyncWorker(make_syncer(store, hq.url, token="wrong-token-0123456789abc"),
                        interval_s=3600, backoff_initial_s=0.01, backoff_max_s=0.02)
    running.append(worker)
    worker.start()
    state = worker.wait_for(lambda s: s.failures >= 1, timeout=10)
    assert state.error_kind == "auth"
    assert "bearer token" in worker.health()["degraded"]
    assert store.outbox_backlog()["count"] == 1
