# SPDX-License-Identifier: MIT
"""HTTP(S) plumbing for the simulator: the threaded server, TLS, reading and answering.

Nothing here knows about channels, the ledger or faults: ``server.Simulator`` decides what to
answer, these functions put it on the wire -- or, for a fault, reset the connection.

TLS: the server presents its certificate and *asks* for a client certificate
(``CERT_OPTIONAL``); the handshake runs in the connection's own thread, so a slow client cannot
stall the accept loop.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import socketserver
import ssl
import struct
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

from posd.channels.simulator.gateway import Reply, Request

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class ServerTls:
    """HTTPS for the simulator: its certificate, and the CA that signs merchant certificates."""

    cert_file: Path | str
    key_file: Path | str
    client_ca_file: Path | str
    require_client_cert_on_secapi: bool = True

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_file, self.key_file)
        context.load_verify_locations(cafile=self.client_ca_file)
        context.verify_mode = ssl.CERT_OPTIONAL  # ask; /secapi/ refuses without one
        return context


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "posd-simulator"
    sys_version = ""
    timeout = 60.0  # an idle keep-alive connection ends after this
    server: HttpServer

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in two writes; without TCP_NODELAY the body waits ~40 ms
        # for the client's delayed ACK (Nagle), which would distort every timing figure.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()  # here, in this connection's thread
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def handle_one_request(self) -> None:
        """The base class flushes ``wfile`` after the method returns; after :func:`abort`
        (a ``drop`` fault) it is closed on purpose, which is not an error to log."""
        try:
            super().handle_one_request()
        except ValueError:
            if not self.wfile.closed:
                raise
            self.close_connection = True

    def do_GET(self) -> None:
        self.server.on_request(self)

    def do_POST(self) -> None:
        self.server.on_request(self)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base signature
        log.debug("%s %s", self.address_string(), format % args)


class HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() must not wait for a hanging request
    request_queue_size = 128  # benchmarks open many connections at once
    timeout = 0.0  # handle_request() is only called when a connection is waiting

    def __init__(
        self,
        address: tuple[str, int],
        on_request: Callable[[Handler], None],
        tls: ssl.SSLContext | None,
    ) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self.on_request = on_request
        self.tls = tls
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(address, Handler)

    def serve_until_woken(self) -> None:
        """Accept connections until :meth:`wake`; blocked in select meanwhile, no polling.

        (``serve_forever`` wakes every ``poll_interval`` to check for ``shutdown()``.)
        """
        with selectors.DefaultSelector() as selector:
            selector.register(self, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                ready = {key.fileobj for key, _ in selector.select()}
                if self._wake_reader in ready:
                    return
                self.handle_request()  # readable, so this accepts at once (timeout = 0)

    def wake(self) -> None:
        """Make :meth:`serve_until_woken` return."""
        with contextlib.suppress(OSError):
            self._wake_writer.send(b"x")

    def server_close(self) -> None:
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup we do not need.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def get_request(self) -> tuple[socket.socket, object]:
        sock, address = super().get_request()
        if self.tls is not None:  # handshake later, in the connection's own thread
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: object, client_address: object) -> None:  # noqa: ARG002
        """Called by socketserver inside its ``except`` (the connection thread's catch-all).

        A client that hung up or failed the TLS handshake is routine; anything else is a bug
        in the simulator and is logged as one (the client sees its connection closed).
        """
        if isinstance(sys.exc_info()[1], OSError):
            log.debug("connection from %s ended: %s", client_address, sys.exc_info()[1])
        else:
            log.error("simulator bug serving %s", client_address, exc_info=True)  # noqa: LOG014

    def track(self, sock: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(sock)

    def untrack(self, sock: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(sock)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections, self._connections = list(self._connections), set()
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def read_request(handler: Handler) -> Request | None:
    """The whole request, or None after answering why it cannot be read."""
    if handler.headers.get("Transfer-Encoding"):
        send(handler, Reply(411, b"Content-Length required\n"))
        handler.close_connection = True
        return None
    try:
        length = int(handler.headers.get("Content-Length", "0"))
    except ValueError:
        length = -1
    if not 0 <= length <= MAX_REQUEST_BYTES:
        send(handler, Reply(413 if length > 0 else 400, b"bad Content-Length\n"))
        handler.close_connection = True
        return None
    body = handler.rfile.read(length)
    parts = urlsplit(handler.path)
    connection = handler.connection
    client_cert = bool(connection.getpeercert()) if isinstance(connection, ssl.SSLSocket) else None
    return Request(handler.command, parts.path, parts.query, body, client_cert,
                   headers={k.lower(): v for k, v in handler.headers.items()})


def send(handler: Handler, reply: Reply) -> None:
    try:
        handler.send_response(reply.status)
        handler.send_header("Content-Type", reply.content_type)
        handler.send_header("Content-Length", str(len(reply.body)))
        for name, value in reply.headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(reply.body)
    except OSError:  # the client gave up (after a hang, typically): nothing to tell it
        handler.close_connection = True


def send_or_abort(handler: Handler, reply: Reply | None) -> None:
    if reply is None:
        abort(handler)
    else:
        send(handler, reply)


def abort(handler: Handler) -> None:
    """Close the connection without an answer: SO_LINGER 0 makes it a TCP reset."""
    handler.close_connection = True
    sock = handler.connection
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    handler.wfile.close()
    handler.rfile.close()  # drops makefile()'s reference: now the descriptor really closes
