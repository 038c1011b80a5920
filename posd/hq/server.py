# SPDX-License-Identifier: MIT
"""``posd hq serve``: the reference HQ receiver over HTTP (FastAPI on uvicorn).

- ``POST /v1/records``: a batch from a terminal. The bearer token is checked first (401),
  then the body's HMAC-SHA256 signature (403), then the batch (400 if it is not one); each
  record is then stored or rejected on its own and the answer says which, per record.
- ``GET /v1/stores/{store_id}/days/{day}``: the store's totals for the day, per terminal.
- ``GET /v1/stores/{store_id}/terminals/{terminal_id}/days/{day}``: one terminal's.
- ``GET /v1/health``: 200 while the database answers, else 503 (no token needed).

A database error is a 503 (the terminal keeps its records and tries again later). The
process keeps nothing between requests, so any number of them may serve one PostgreSQL.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from posd.config_base import read_secret
from posd.core.errors import ConfigError
from posd.core import hq_protocol as protocol
from posd.listen import listen_socket
from posd.hq import codec
from posd.hq.storage import (
    RecordRefused,
    Storage,
    StorageUnavailable,
    day_totals,
    terminal_totals,
)

log = logging.getLogger(__name__)

#: a batch of 1000 sale records is about 1 MB.
MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class Secrets:
    token: str
    #: the signature key (the token itself unless a separate key file is given).
    key: bytes


def read_secrets(token_file: Path, hmac_key_file: Path | None) -> Secrets:
    token = read_secret(token_file, "--token-file").decode("utf-8", "replace").strip()
    if len(token) < 16:
        raise ConfigError("--token-file: the token must be at least 16 characters")
    if hmac_key_file is None:
        return Secrets(token, token.encode())
    return Secrets(token, read_secret(hmac_key_file, "--hmac-key-file").strip())


def open_storage(db: str) -> Storage:
    """A ``postgresql://`` URL, else a SQLite file path. Raises StorageUnavailable."""
    if db.startswith(("postgresql://", "postgres://")):
        try:
            from posd.hq.postgres import PostgresStorage
        except ImportError as err:
            raise ConfigError("--db: PostgreSQL needs psycopg: pip install 'posd[hq]'") from err
        return PostgresStorage(db)
    from posd.hq.sqlite import SqliteStorage

    return SqliteStorage(Path(db))


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


def _token_ok(request: Request, secrets: Secrets) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                              secrets.token.encode())


def answer(batch: protocol.Batch, new: set[str],
           refused: dict[str, str] | None = None) -> dict[str, Any]:
    """The per-record answer: accepted (stored now), duplicate (had it), rejected (why)."""
    refused = refused or {}
    results: list[dict[str, str]] = []
    counts = {protocol.ACCEPTED: 0, protocol.DUPLICATE: 0, protocol.REJECTED: 0}
    for item in batch.records:
        if isinstance(item, protocol.Rejected) or item.record_id in refused:
            reason = item.reason if isinstance(item, protocol.Rejected) else refused[
                item.record_id]
            results.append({"record_id": item.record_id, "status": protocol.REJECTED,
                            "reason": reason})
        else:
            status = protocol.ACCEPTED if item.record_id in new else protocol.DUPLICATE
            new.discard(item.record_id)  # the same id twice in one batch: the second is a duplicate
            results.append({"record_id": item.record_id, "status": status})
        counts[results[-1]["status"]] += 1
    return {"results": results, **counts}


def store_batch(storage: Storage, batch: protocol.Batch) -> tuple[set[str], dict[str, str]]:
    """Store the batch's valid records: (ids stored now, {id: why} for those refused).

    Should the database refuse the batch for one record's sake (RecordRefused), the
    records are stored one at a time and only the refused ones are rejected.
    """
    good = [r for r in batch.records if isinstance(r, protocol.Record)]
    if not good:
        return set(), {}
    try:
        return storage.store(batch.store_id, batch.terminal_id, good), {}
    except RecordRefused:
        log.warning("batch from %s/%s refused; storing its records one at a time",
                    batch.store_id, batch.terminal_id)
    new: set[str] = set()
    refused: dict[str, str] = {}
    for record in good:
        try:
            new |= storage.store(batch.store_id, batch.terminal_id, [record])
        except RecordRefused as err:
            refused[record.record_id] = f"HQ's database refused it: {err}"
    return new, refused


class _Routes:
    def __init__(self, storage: Storage, secrets: Secrets) -> None:
        self.storage = storage
        self.secrets = secrets

    # async only to read the raw body, which the signature covers; the database work runs
    # in the thread pool like a plain ``def`` handler's.
    async def records(self, request: Request) -> Response:
        if not _token_ok(request, self.secrets):
            return _error(401, "bearer token missing or not accepted: check hq.token_file")
        if int(request.headers.get("content-length") or 0) > MAX_BODY_BYTES:
            return _error(413, f"batch over {MAX_BODY_BYTES} bytes: lower hq.batch_size")
        raw = await request.body()
        signature = request.headers.get(protocol.SIGNATURE_HEADER)
        if not protocol.signature_ok(self.secrets.key, raw, signature):
            return _error(403, f"{protocol.SIGNATURE_HEADER} does not match the body: "
                               "check hq.hmac_key_file (or the token, if it is the key)")
        try:
            batch = protocol.parse_batch(codec.loads(bytes(raw)))
        except (ValueError, protocol.BatchError) as err:  # JSONDecodeError is a ValueError
            return _error(400, f"not a batch: {err}")
        try:
            new, refused = await run_in_threadpool(store_batch, self.storage, batch)
        except StorageUnavailable as err:
            log.warning("batch from %s/%s not stored: %s", batch.store_id, batch.terminal_id,
                        err)
            return _error(503, "HQ database unavailable; send the batch again later")
        # orjson (posd/hq/codec.py): the standard library's encoder was 4 % of the receiver
        return Response(codec.dumps(answer(batch, new, refused)), media_type="application/json")

    def _day(self, request: Request, store_id: str, day: str) -> dict[str, Any] | JSONResponse:
        if not _token_ok(request, self.secrets):
            return _error(401, "bearer token missing or not accepted")
        if not protocol.is_day(day):
            return _error(400, "day must be a date written YYYY-MM-DD")
        try:
            rows, summaries = self.storage.day(store_id, day)
            refunds = self.storage.refunds(store_id, day)
            checked = self.storage.reconciliations(store_id, day)
        except StorageUnavailable:
            return _error(503, "HQ database unavailable")
        return day_totals(store_id, day, rows, summaries, refunds, checked)

    def store_day(self, request: Request, store_id: str, day: str) -> JSONResponse:
        totals = self._day(request, store_id, day)
        return totals if isinstance(totals, JSONResponse) else JSONResponse(totals)

    def terminal_day(self, request: Request, store_id: str, terminal_id: str,
                     day: str) -> JSONResponse:
        totals = self._day(request, store_id, day)
        if isinstance(totals, JSONResponse):
            return totals
        mine = [t for t in totals["terminals"] if t["terminal_id"] == terminal_id]
        figures = mine[0] if mine else terminal_totals(terminal_id, [], None)
        return JSONResponse({"store_id": store_id, "day": day, **figures})

    def health(self) -> JSONResponse:
        try:
            self.storage.ping()
        except StorageUnavailable as err:
            return JSONResponse({"status": "down", "detail": str(err)}, status_code=503)
        return JSONResponse({"status": "ok", "storage": self.storage.kind})


def create_app(storage: Storage, secrets: Secrets) -> FastAPI:
    app = FastAPI(title="posd HQ receiver", redoc_url=None, docs_url=None)
    routes = _Routes(storage, secrets)
    app.add_api_route("/v1/records", routes.records, methods=["POST"])
    app.add_api_route("/v1/stores/{store_id}/days/{day}", routes.store_day, methods=["GET"])
    app.add_api_route("/v1/stores/{store_id}/terminals/{terminal_id}/days/{day}",
                      routes.terminal_day, methods=["GET"])
    app.add_api_route("/v1/health", routes.health, methods=["GET"])
    return app


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"--listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]"), int(port)


class HqServer:
    """The receiver app on uvicorn: :meth:`run` in the foreground (``posd hq serve``), or
    :meth:`start` in a thread (tests). The socket is bound at once, so ``url`` is final."""

    def __init__(self, storage: Storage, secrets: Secrets, host: str, port: int, *,
                 tls: tuple[Path, Path] | None = None) -> None:
        self.storage = storage
        self._socket = listen_socket(host, port)
        shown = f"[{host}]" if ":" in host else host
        self.url = f"{'https' if tls else 'http'}://{shown}:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(create_app(storage, secrets), log_config=None,
                                access_log=False, log_level="warning", lifespan="off", ws="none",
                                server_header=False, timeout_graceful_shutdown=5,
                                ssl_certfile=tls[0] if tls else None,
                                ssl_keyfile=tls[1] if tls else None)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT (uvicorn's handlers, main thread only)."""
        self._server.run(sockets=[self._socket])

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self.run, name="posd-hq", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:  # uvicorn exposes only a flag
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the HQ receiver on {self.url} did not start")
            self._thread.join(0.01)

    def stop(self) -> None:
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._socket.close()


def serve(listen: str, db: str, secrets: Secrets, *, tls: tuple[Path, Path] | None = None,
          announce: Callable[..., Any] = print) -> int:
    """Bind, announce the URL (a caller that asked for port 0 learns the port), serve until
    SIGTERM/SIGINT."""
    host, port = parse_listen(listen)
    storage = open_storage(db)
    try:
        server = HqServer(storage, secrets, host, port, tls=tls)
        announce(f"posd hq: listening on {server.url} ({storage.kind})", flush=True)
        server.run()
    finally:
        storage.close()
    return 0
