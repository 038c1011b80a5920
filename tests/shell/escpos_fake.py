# SPDX-License-Identifier: MIT
"""A loopback network receipt printer ("port 9100" raw TCP) for the tests.

It records every byte of every connection and answers DLE EOT n (real-time status) the way
an ESC/POS printer does, with the status bytes the test sets: ready, paper low, paper out,
cover open, or silence (no answer at all). ``delay_s`` makes it answer late. Each closed
connection is put on ``connections`` (a queue: tests wait with ``get(timeout=...)``, never
by sleeping); :meth:`FakePrinter.next_job` skips connections that only asked for status.
"""

from __future__ import annotations

import queue
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.shell.escpos_decode import Decoded, decode

READY = {1: 0x12, 2: 0x12, 4: 0x12}
PAPER_LOW = {1: 0x12, 2: 0x12, 4: 0x1E}
PAPER_OUT = {1: 0x1A, 2: 0x32, 4: 0x72}
COVER_OPEN = {1: 0x1A, 2: 0x16, 4: 0x12}
SILENT: dict[int, int] = {}

WAIT_S = 10.0  # what a test waits at most for the printer to see a job


@dataclass
class FakePrinter:
    host: str
    port: int
    answers: dict[int, int] = field(default_factory=lambda: dict(READY))
    delay_s: float = 0.0
    connections: queue.Queue[bytes] = field(default_factory=queue.Queue)
    release: threading.Event = field(default_factory=threading.Event)

    def set(self, answers: dict[int, int], delay_s: float = 0.0) -> None:
        self.answers, self.delay_s = dict(answers), delay_s

    def next_job(self, timeout: float = WAIT_S) -> Decoded:
        """The next connection that sent more than status queries, decoded."""
        while True:
            decoded = decode(self.connections.get(timeout=timeout))
            if decoded.lines or decoded.qr or decoded.cuts:
                return decoded

    def jobs_so_far(self) -> list[Decoded]:
        out = []
        while True:
            try:
                decoded = decode(self.connections.get_nowait())
            except queue.Empty:
                return out
            if decoded.lines:
                out.append(decoded)


class _Handler(socketserver.BaseRequestHandler):
    printer: FakePrinter

    def handle(self) -> None:
        data = bytearray()
        scanned = 0
        while chunk := self._recv():
            data += chunk
            while (at := data.find(b"\x10\x04", scanned)) != -1 and at + 2 < len(data):
                self._answer(data[at + 2])
                scanned = at + 3
        self.printer.connections.put(bytes(data))

    def _recv(self) -> bytes:
        try:
            return bytes(self.request.recv(65536))
        except OSError:  # reset by the client
            return b""

    def _answer(self, n: int) -> None:
        answer = self.printer.answers.get(n)
        if answer is None:
            return  # a silent printer: the client's status read times out
        if self.printer.delay_s:
            self.printer.release.wait(self.printer.delay_s)  # a slow printer, not a sleep
        try:
            self.request.sendall(bytes([answer]))
        except OSError:
            pass  # the client gave up waiting and closed


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@pytest.fixture
def fake_printer() -> Iterator[FakePrinter]:
    server = _Server(("127.0.0.1", 0), _Handler)
    printer = FakePrinter("127.0.0.1", server.server_address[1])
    server.RequestHandlerClass = type("Handler", (_Handler,), {"printer": printer})
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield printer
    printer.release.set()
    server.shutdown()
    server.server_close()
