# SPDX-License-Identifier: MIT
"""`posd hq serve` as a real process: killed in the middle of a batch, restarted; many
records; several receivers over one PostgreSQL."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from posd.core import hq_protocol as protocol
from posd.hq.client import HqUnavailable, encode_batch
from posd.core.sale import State
from posd.store import Store
from tests.hq_fixtures import (
    STORE,
    TERMINAL,
    TOKEN,
    Hq,
    Receiver,
    bulk_outbox,
    final_sale,
    hq,
    hq_counts,
    hq_db,
    make_syncer,
    start_hq,
    store,
    write_secret,
)

__all__ = ["hq", "hq_db", "store"]  # fixtures

ROOT = Path(__file__).parents[2]


def _read_message(stream: socket.SocketIO | object) -> bytes | None:
    """One HTTP/1.1 message (head + Content-Length body) from a buffered socket file."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = stream.readline()  # type: ignore[attr-defined]
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + stream.read(length)  # type: ignore[attr-defined]


class KillingProxy:
    """Relays HTTP to the receiver; SIGKILLs it once request number ``kill_on`` is forwarded
    (whole, or only its first half with ``half=True``), before any answer."""

    def __init__(self, receiver: Receiver, kill_on: int, *, half: bool) -> None:
        self.receiver, self.kill_on, self.half = receiver, kill_on, half
        self.requests = 0
        self.killed = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.receiver.port)) as upstream:
            from_client, from_upstream = client.makefile("rb"), upstream.makefile("rb")
            while (request := _read_message(from_client)) is not None:
                self.requests += 1
                if self.requests == self.kill_on:
                    upstream.sendall(request[: len(request) // 2] if self.half else request)
                    self.receiver.kill()
                    self.killed.set()
                    return  # the client sees the connection close with no answer
                upstream.sendall(request)
                answer = _read_message(from_upstream)
                if answer is None:
                    return
                client.sendall(answer)

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    return write_secret(tmp_path / "hq-token", TOKEN)


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    started: list[Receiver] = []
    yield started
    for receiver in started:
        receiver.stop()


@pytest.mark.parametrize("half", [False, True], ids=["whole-batch-sent", "half-batch-sent"])
def test_receiver_killed_mid_batch_then_restarted_loses_and_doubles_nothing(
        hq_db: str, store: Store, tmp_path: Path, token_file: Path,
        receivers: list[Receiver], half: bool) -> None:
    count = bulk_outbox(tmp_path / "posd.db", (final_sale(n, State.PAID, n) for n in
                                               range(1, 2001)))
    receivers.append(first := Receiver(hq_db, token_file))
    proxy = KillingProxy(first, kill_on=3, half=half)
    with pytest.raises(HqUnavailable):
        make_syncer(store, proxy.url, batch_size=400).push_all()
    proxy.close()
    assert proxy.killed.is_set()
    assert store.outbox_backlog()["count"] == count - 800  # batches 1 and 2 acknowledged

    receivers.append(second := Receiver(hq_db, token_file))
    result = make_syncer(store, second.url, batch_size=400).push_all()
    assert result.sent == count - 800 and not result.rejected
    assert result.duplicate in (0, 400)  # batch 3 was stored whole before the kill, or not at all
    assert store.outbox_backlog()["count"] == 0
    receiver = start_hq(hq_db)
    assert hq_counts(receiver) == {"records": count, "sales": count}
    totals = receiver.day()
    assert (totals["paid_count"], totals["paid_amount"]) == (count, count * (count + 1) // 2)
    receiver.stop()


def test_a_large_backlog_arrives_whole(hq: Hq, store: Store, tmp_path: Path) -> None:
    count = bulk_outbox(tmp_path / "posd.db", (final_sale(n, State.PAID, 100) for n in
                                               range(1, 20_001)))
    started = time.perf_counter()
    result = make_syncer(store, hq.url).push_all()
    elapsed = time.perf_counter() - started
    assert (result.sent, result.accepted) == (count, count)
    assert store.outbox_backlog()["count"] == 0
    assert hq.day()["paid_amount"] == count * 100
    print(f"{count} records in {elapsed:.2f} s over {hq.storage.kind}")  # shown with -s


def test_two_receivers_over_one_postgresql_store_each_record_once(
        postgres_url: str, store: Store, tmp_path: Path) -> None:
    bulk_outbox(tmp_path / "posd.db", (final_sale(n, State.PAID, 10) for n in range(1, 3001)))
    rows = store.outbox_unsent(3000)
    bodies = [encode_batch(STORE, TERMINAL, rows[i:i + 300], None) for i in range(0, 3000, 300)]
    a, b = start_hq(postgres_url), start_hq(postgres_url)
    accepted: list[int] = []

    def push(url: str, order: list[bytes]) -> None:
        client = make_syncer(store, url).client
        for body in order:
            answer = client.post_batch(body)
            assert isinstance(answer, dict)
            accepted.append(answer[protocol.ACCEPTED])

    try:  # the same batches through both, at once, in opposite orders
        threads = [threading.Thread(target=push, args=(a.url, bodies)),
                   threading.Thread(target=push, args=(b.url, bodies[::-1]))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(accepted) == 3000 and len(accepted) == 20
        assert hq_counts(a) == {"records": 3000, "sales": 3000}
        assert a.day()["paid_amount"] == b.day()["paid_amount"] == 30_000
    finally:
        a.stop()
        b.stop()


def test_hq_serve_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    token = tmp_path / "hq-token"
    token.write_text(TOKEN)
    token.chmod(0o644)
    result = subprocess.run([sys.executable, "-m", "posd", "hq", "serve", "--listen",
                             "127.0.0.1:0", "--db", str(tmp_path / "hq.db"), "--token-file",
                             str(token)], capture_output=True, text=True, timeout=60,
                            check=False, cwd=ROOT)
    assert result.returncode == 78
    assert "--token-file" in result.stderr and "chmod 600" in result.stderr


def test_the_bench_script_runs_and_prints_its_table() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "hq_sync.py"), "--quick"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    for text in ("records/request", "sqlite", "no verdict"):
        assert text in done.stdout, done.stdout
