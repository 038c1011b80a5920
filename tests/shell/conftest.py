# SPDX-License-Identifier: MIT
"""Loopback fakes for shell tests: a scripted HTTP(S) server, a closed port.

``scripted_server`` is STYLE.md §3.10's server: real HTTP on 127.0.0.1, answering a list of
replies in order. A reply is ``(status, body)``, bare ``body`` (status 200), or

- ``"HANG"``: read the request, then block on an Event until teardown -> a genuine read
  timeout in the client (urllib3's socket-level trick);
- ``"DROP"``: read the request, close the connection without answering (RemoteDisconnected);
- ``"RESET"``: read the request, close with SO_LINGER 0 so the client gets a TCP RST;
- ``(status, body, "close")``: answer with ``Connection: close`` and close the connection,
  so that the client's next request opens a new one.

Every request is recorded (path, body, whether a TLS client certificate was presented, the
client's port: one per connection).
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

Reply = tuple[int, bytes] | tuple[int, bytes, str] | bytes | str
HANG_LIMIT_S = 30.0  # a HANG never outlives a broken test by more than this


@dataclass(frozen=True)
class Received:
    path: str
    body: bytes
    client_cert: bool
    peer_port: int = 0


@dataclass
class ScriptedServer:
    url: str
    replies: deque[Reply]
    received: list[Received] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's pool reuses connections
    script: ScriptedServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        self.script.received.append(Received(self.path, body, bool(peer), self.client_address[1]))
        reply = self.script.replies.popleft() if self.script.replies else (500, b"script exhausted")
        if reply == "HANG":
            self.script.release.wait(HANG_LIMIT_S)
            self.close_connection = True
        elif reply == "DROP":
            self.close_connection = True
        elif reply == "RESET":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            self.close_connection = True
        elif isinstance(reply, str):
            raise ValueError(f"unknown scripted reply {reply!r}")
        else:
            status, payload, *then = reply if isinstance(reply, tuple) else (200, reply)
            self.send_response(status)
            if then == ["close"]:
                self.send_header("Connection", "close")
                self.close_connection = True
            self.send_header("Content-Type", "text/xml; charset=utf-8")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: pytest shows failures, not every request."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Quiet about clients that hang up (that is what the tests do); loud about the rest."""
        if not isinstance(sys.exc_info()[1], ConnectionError | ssl.SSLError | TimeoutError):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@pytest.fixture
def scripted_server() -> Iterator[Callable[..., ScriptedServer]]:
    """Start scripted loopback servers: ``scripted_server([(200, b"..."), "HANG"], tls=ctx)``."""
    running: list[tuple[_Server, ScriptedServer]] = []

    def start(replies: list[Reply], *, tls: ssl.SSLContext | None = None) -> ScriptedServer:
        server = _Server(("127.0.0.1", 0), _Handler)
        if tls is not None:
            server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        script = ScriptedServer(f"{scheme}://127.0.0.1:{server.server_port}", deque(replies))
        server.RequestHandlerClass = type("Handler", (_Handler,), {"script": script})
        threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True).start()
        running.append((server, script))
        return script

    yield start
    for server, script in running:
        script.release.set()
        server.shutdown()
        server.server_close()


@pytest.fixture
def closed_port() -> int:
    """A loopback port with nothing listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
