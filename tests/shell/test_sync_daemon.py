# SPDX-License-Identifier: MIT
"""`posd run`'s wiring: a paid sale reaches a real receiver at once; /v1/health shows HQ sync."""

from __future__ import annotations

from pathlib import Path

import requests

from posd.channels.simulator import TestPki
from posd.daemon import Daemon
from tests.waiting import wait_until_final
from tests.hq_fixtures import TOKEN as HQ_TOKEN
from tests.hq_fixtures import start_hq, write_secret
from tests.sandbox import config as validate
from tests.sandbox import make_config, start_simulator

API = {"Authorization": "Bearer test-token-0123456789abcdef"}
PAID_CODE = "134567890123459999"  # any ending other than 0001-0008: paid at once


def test_a_paid_sale_reaches_hq_at_once_and_health_shows_sync(tmp_path: Path,
                                                              pki: TestPki) -> None:
    receiver = start_hq(str(tmp_path / "hq.db"))
    sim = start_simulator(pki)
    hq = {"url": receiver.url, "token_file": str(write_secret(tmp_path / "hq-token", HQ_TOKEN)),
          "interval_s": 3600}  # only the sale itself can wake the pusher in time
    daemon = Daemon.build(validate(make_config(tmp_path, sim.url, pki, hq=hq)))
    daemon.start()
    try:
        url = f"http://127.0.0.1:{daemon.api.port}"
        created = requests.post(f"{url}/v1/sales", json={"amount": 1250, "auth_code": PAID_CODE},
                                headers=API, timeout=10).json()
        sale = wait_until_final(url, created)
        assert sale["state"] == "paid", sale
        assert daemon.sync is not None
        assert daemon.sync.wait_for(lambda s: s.pushed >= 1, timeout=10).pushed == 1
        day = sale["created_at"][:10]
        assert receiver.day(day)["paid_amount"] == 1250
        health = requests.get(f"{url}/v1/health", timeout=5).json()
        assert health["hq_backlog"]["count"] == 0
        assert health["hq_sync"]["failures"] == 0 and health["hq_sync"]["rejected"] == 0
    finally:
        daemon.stop()
        sim.stop()
        receiver.stop()
