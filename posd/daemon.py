# SPDX-License-Identifier: MIT
"""Wiring: config -> store, channels, engine, API, scanner, printer; start and stop in order.

Start: open the store, resume every unfinished sale (engine.start), serve the API, and only
then open the scanner (DESIGN §2 rule 4). Stop (SIGTERM / Ctrl-C): close inputs first, stop
the API, then let in-flight requests finish and commit (engine.stop).
"""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass, field
from typing import TextIO

from posd import receipt
from posd.api import ApiServer, create_app
from posd.channels import Channel
from posd.config import Config, read_api_token
from posd.engine import Engine
from posd.errors import ConfigError
from posd.printer import ConsolePrinter
from posd.scanner import ConsoleScanner
from posd.store import Store

log = logging.getLogger(__name__)


def build_channels(config: Config) -> dict[str, Channel]:
    channels: dict[str, Channel] = {}
    if (wx := config.channels.wechat) is not None and wx.enabled:
        from posd.channels.wechat import WechatPay

        channels["wechat"] = WechatPay.from_config(
            wx, device_info=config.store.terminal_id, body_prefix=config.store.name)
    if (ali := config.channels.alipay) is not None and ali.enabled:
        raise ConfigError("channels.alipay: Alipay is not supported by this version of posd yet; "
                          "set channels.alipay.enabled = false")
    return channels


def header_for(config: Config) -> receipt.Header:
    return receipt.Header(config.store.name, config.store.id, config.store.terminal_id,
                          config.store.address)


@dataclass
class Daemon:
    config: Config
    store: Store
    engine: Engine
    api: ApiServer
    console: TextIO | None = None
    scanner: ConsoleScanner | None = None
    stopped: threading.Event = field(default_factory=threading.Event)

    @classmethod
    def build(cls, config: Config, *, receipts_to: TextIO | None = None) -> Daemon:
        token = read_api_token(config)
        store = Store.open(config.database.path)
        engine = Engine(config, store, build_channels(config))
        if config.printer.kind == "console":
            engine.add_listener(ConsolePrinter(header_for(config), receipts_to or sys.stdout,
                                               config.printer.receipt_dir))
        elif config.printer.kind != "none":
            raise ConfigError(f"printer.kind: {config.printer.kind!r} printers are not supported "
                              "by this version of posd yet; use 'console' or 'none'")
        api = ApiServer(create_app(engine, token), config.api.host, config.api.port)
        return cls(config, store, engine, api)

    def start(self, *, scanner_stream: TextIO | None = None) -> None:
        resumed = self.engine.start()
        self.api.start()
        log.info("API listening on http://%s:%d (%d sale(s) resumed)", self.config.api.host,
                 self.api.port, resumed)
        kind = self.config.scanner.kind
        if kind == "console" and scanner_stream is not None:
            self.scanner = ConsoleScanner(scanner_stream, self.engine.scan)
            self.scanner.start()
        elif kind in ("hid", "serial"):
            raise ConfigError(f"scanner.kind: {kind!r} scanners are not supported by this "
                              "version of posd yet; use 'console' or 'none'")

    def wait(self) -> int:
        """Block until stop() or a fatal store error. Returns the exit status."""
        while not self.stopped.wait(0.5):
            if self.engine.fatal.is_set():
                log.critical("stopping: %s", self.engine.fatal_reason)
                return 1
        return 0

    def stop(self) -> None:
        if self.scanner is not None:
            self.scanner.stop()
        self.api.stop()
        self.engine.stop()
        self.store.close()
        self.stopped.set()
