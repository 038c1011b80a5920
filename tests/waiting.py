# SPDX-License-Identifier: MIT
"""Waiting in tests, written once: until a posd answers, until a sale is final.

Each waits on something that happens (a child exiting, a long-poll answering, the engine's
condition) rather than sleeping, and fails with what it saw when the time is up.
"""

from __future__ import annotations

import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

import requests

from posd.core.sale import Sale

#: How long a posd may take to start (a cold interpreter, migrations, TLS set-up).
READY_S = 30.0
#: How long a sale may take to become final in tests (FAST policies: a few seconds).
FINAL_S = 40.0
TOKEN = "test-token-0123456789abcdef"


def wait_until_up(url: str, proc: subprocess.Popen[Any] | None = None, *,
                  timeout: float = READY_S, verify: str | bool = True,
                  output: Callable[[], str] = lambda: "") -> dict[str, Any]:
    """Poll ``url``/v1/health until it answers 200 and return its JSON. Between tries, wait
    on the child process itself (``proc``), so that a posd that exits fails the test at
    once with ``output()``; without one, pause on an event nothing sets."""
    deadline = time.monotonic() + timeout
    pause = threading.Event()  # never set
    while time.monotonic() < deadline:
        try:
            answer = requests.get(f"{url}/v1/health", timeout=2, verify=verify)
            if answer.status_code == 200:
                return dict(answer.json())
        except requests.ConnectionError:
            pass  # not listening yet
        if proc is None:
            pause.wait(0.05)
            continue
        try:
            code = proc.wait(timeout=0.05)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"posd exited with {code}:\n{output()}")
    raise AssertionError(f"posd did not answer {url}/v1/health in {timeout:g} s:\n{output()}")


def wait_until_final(url: str, sale: dict[str, Any] | int, *, token: str = TOKEN,
                     timeout: float = FINAL_S, verify: str | bool = True) -> dict[str, Any]:
    """Follow a sale with the API's long-polls (``wait`` + ``seen_state``) until it is final."""
    headers = {"Authorization": f"Bearer {token}"}
    current = sale if isinstance(sale, dict) else {"id": sale, "final": False, "state": ""}
    deadline = time.monotonic() + timeout
    while not current["final"]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"sale {current['id']} not final after {timeout:g} s: {current}")
        params: dict[str, Any] = {"wait": min(10.0, max(0.1, left))}
        if current["state"]:
            params["seen_state"] = current["state"]
        answer = requests.get(f"{url}/v1/sales/{current['id']}", params=params, headers=headers,
                              timeout=params["wait"] + 5, verify=verify)
        answer.raise_for_status()
        current = dict(answer.json())
    return current


class Follows(Protocol):
    """What :func:`engine_final` needs of an engine: ``get`` and ``wait_for_change``."""

    def get(self, sale_id: int) -> Sale: ...
    def wait_for_change(self, sale_id: int, since: float, timeout: float) -> Sale: ...


def engine_final(engine: Follows, sale_id: int, timeout: float = FINAL_S) -> Sale:
    """The same, in process: wait on the engine's own condition until the sale is final."""
    deadline = time.monotonic() + timeout
    sale = engine.get(sale_id)
    while not sale.final and time.monotonic() < deadline:
        sale = engine.wait_for_change(sale_id, sale.updated_at, deadline - time.monotonic())
    assert sale.final, f"sale {sale_id} still {sale.state} after {timeout:g} s"
    return sale
