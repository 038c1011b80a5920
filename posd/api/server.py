# SPDX-License-Identifier: MIT
"""Serving the app with uvicorn in a daemon thread (SIGINT/SIGTERM stay the daemon's)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.types import ASGIApp

from posd.listen import listen_socket
from posd.core.errors import (
    ConfigError,
)


log = logging.getLogger(__name__)

# --- the server ------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon owns SIGINT/SIGTERM and stops us with stop(). uvicorn skips signals
        # outside the main thread already; this keeps it so if we are ever run there.
        yield

    async def main_loop(self) -> None:
        """uvicorn wakes every 0.1 s to notice ``should_exit``; once a second is enough for
        an idle till (the Date header has one-second resolution anyway): stop() takes up to
        1 s longer, and the idle daemon wakes 10 times less often."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header at 0 mod 10
            await asyncio.sleep(1.0)


class ApiServer:
    """Serve an ASGI app with uvicorn in a daemon thread.

    The socket is bound in :meth:`start`, in the caller's thread, so an address in use
    raises OSError there; ``port`` is then the real port (useful when 0 was asked).
    """

    def __init__(self, app: ASGIApp, host: str, port: int, *,
                 tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate file, private key file) to serve HTTPS."""
        self.host = host
        self._asked_port = port
        self._scheme = "https" if tls else "http"
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off", ws="none", timeout_graceful_shutdown=3,
                                server_header=False, ssl_certfile=tls[0] if tls else None,
                                ssl_keyfile=tls[1] if tls else None)
        self._server = _Server(config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            return self._asked_port
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self._scheme}://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Listen, serve in a thread, and return once uvicorn is accepting connections."""
        if self._scheme == "https":
            # Here, not in the server thread, so that a bad certificate or key stops the
            # start with a sentence instead of a thread that quietly died.
            try:
                self._server.config.load()
            except OSError as err:  # ssl.SSLError is one
                raise ConfigError(f"api.tls_cert_file / api.tls_key_file: cannot serve HTTPS "
                                  f"with them: {err}") from err
        # TCP_NODELAY on every answer: listen_socket() says why (a register's long-polls
        # and requests would otherwise wait ~40 ms each for delayed ACKs).
        self._socket = listen_socket(self.host, self._asked_port)
        sockets: Sequence[socket.socket] = [self._socket]
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": sockets},
                                        name="posd-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn exposes only a flag; the socket already queues connections meanwhile.
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop(0)
                raise RuntimeError(f"the API server on {self.url} did not start")
            self._thread.join(0.01)
        log.debug("API listening on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let requests in progress finish (up to ~3 s), join the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None and not self._server.started:
            self._socket.close()  # uvicorn closes it on a normal shutdown
