# SPDX-License-Identifier: MIT
"""Real HQ receivers on loopback (SQLite or PostgreSQL) and real terminal outboxes, for the
HQ sync tests and bench/hq_sync.py."""

from __future__ import annotations

import json
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from typing import Any

import pytest
import requests

from posd.hq.client import HqClient
from posd.hq.server import HqServer, Secrets, open_storage
from posd.hq.storage import Storage
from posd.core.money import Fen
from posd.core.sale import Sale, State, make_out_trade_no
from posd.store import Store, sale_record
from posd.sync import Syncer

TOKEN = "hq-test-token-0123456789abcdef"
#: 2024-05-01 09:00 UTC; the tests' store keeps UTC days.
T0 = 1_714_554_000.0
DAY = "2024-05-01"
ROOT = Path(__file__).parents[1]
STORE, TERMINAL = "S001", "T01"


def write_secret(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)
    return path


@dataclass
class Hq:
    """A receiver served in this process (uvicorn thread) over ``db``."""

    db: str
    server: HqServer
    token: str = TOKEN

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def storage(self) -> Storage:
        return self.server.storage

    def get(self, path: str) -> Any:
        response = requests.get(self.url + path, timeout=10,
                                headers={"Authorization": f"Bearer {self.token}"})
        response.raise_for_status()
        return response.json()

    def day(self, day: str = DAY, store: str = STORE) -> Any:
        return self.get(f"/v1/stores/{store}/days/{day}")

    def stop(self) -> None:
        self.server.stop()
        self.storage.close()


def start_hq(db: str, *, port: int = 0, token: str = TOKEN, key: bytes | None = None) -> Hq:
    storage = open_storage(db)
    server = HqServer(storage, Secrets(token, key if key is not None else token.encode()),
                      "127.0.0.1", port)
    server.start()
    return Hq(db, server, token)


class Receiver:
    """``posd hq serve`` in a child process, on a port of its choosing."""

    def __init__(self, db: str, token_file: Path) -> None:
        self._log = tempfile.TemporaryFile("w+")  # a pipe nobody reads could fill and block it
        self.process = subprocess.Popen(
            [sys.executable, "-m", "posd", "hq", "serve", "--listen", "127.0.0.1:0", "--db",
             db, "--token-file", str(token_file)],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
            text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "posd hq: listening on http://HOST:PORT (...)"
        if "listening on" not in line:
            self.process.kill()
            self.process.wait()
            self._log.seek(0)
            raise RuntimeError(f"posd hq serve did not start: {line}{self._log.read()}")
        self.url = line.split()[4]
        self.port = int(self.url.rsplit(":", 1)[1])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self._log.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def hq_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where a receiver keeps its records: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return str(tmp_path / "hq.db")
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
def hq(hq_db: str) -> Iterator[Hq]:
    server = start_hq(hq_db)
    yield server
    server.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """The terminal's database."""
    store = Store.open(tmp_path / "posd.db")
    yield store
    store.close()


def final_sale(n: int, state: State = State.PAID, amount: int = 100, at: float = T0) -> Sale:
    """A sale that ended in ``state``, made ``at``; ``n`` makes its out_trade_no."""
    return Sale(out_trade_no=make_out_trade_no(STORE, TERMINAL, at, n), amount=Fen(amount),
                created_at=at, updated_at=at + 2, state=state, channel="wechat",
                auth_code_masked="1345...0000",
                paid_at=at + 1 if state is State.PAID else None)


def add_sales(store: Store, sales: Iterable[Sale]) -> list[Sale]:
    """Record each sale as the engine does (row, event and outbox in one transaction)."""
    return [store.create_sale(lambda _seq, s=s: s, order_ref=None, idempotency_key=None)[0]
            for s in sales]


def bulk_outbox(path: Path, sales: Iterable[Sale]) -> int:
    """Put many sale records into a terminal's outbox in one transaction (the store's own
    per-sale transactions with synchronous=FULL would take minutes for 100,000)."""
    rows = [(f"sale:{s.out_trade_no}:{s.state.value}", "sale",
             json.dumps(sale_record(s), ensure_ascii=False), int(s.amount), s.updated_at)
            for s in sales]
    conn = sqlite3.connect(path)
    with conn:
        conn.executemany("insert into outbox (record_id, kind, payload, amount_fen, created_at) "
                         "values (?, ?, ?, ?, ?)", rows)
    conn.close()
    return len(rows)


def make_syncer(store: Store, url: str, *, token: str = TOKEN, key: bytes | None = None,
                batch_size: int = 500, clock: Any = None) -> Syncer:
    client = HqClient(url, token, key if key is not None else token.encode(),
                      timeout=(2.0, 30.0))
    extra = {"clock": clock} if clock is not None else {}
    return Syncer(store, client, store_id=STORE, terminal_id=TERMINAL, batch_size=batch_size,
                  tz=UTC, **extra)


def postgres_counts(conn: Any) -> dict[str, int]:
    """Records and sales in a receiver's PostgreSQL: a sale is its records' out_trade_no
    (or a row of ``sales``, in a database made with that table)."""
    has_sales = conn.execute("select to_regclass('sales') is not null").fetchone()[0]
    sales = ("select count(*) from sales" if has_sales else
             "select count(*) from (select distinct store_id, terminal_id, out_trade_no "
             "from records where type = 'sale') s")
    return {"records": int(conn.execute("select count(*) from records").fetchone()[0]),
            "sales": int(conn.execute(sales).fetchone()[0])}


def hq_counts(hq: Hq) -> dict[str, int]:
    """How many records and sales the receiver's database holds (duplicates would show)."""
    if hq.db.startswith("postgresql://"):
        import psycopg

        with psycopg.connect(hq.db) as conn:
            return postgres_counts(conn)
    conn = sqlite3.connect(hq.db)
    try:
        return {t: conn.execute(f"select count(*) from {t}").fetchone()[0]
                for t in ("records", "sales")}
    finally:
        conn.close()
