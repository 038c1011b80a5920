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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TextIO

from posd.core import receipt
from posd.api import ApiServer, create_app
from posd.channels import Channel, registry
from posd.channels.spec import Till
from posd.config import Config, read_api_token, read_manager_token
from posd.engine import Engine
from posd.notify import Notifier, Watchdog
from posd.core.effects import Outputs
from posd.core.refund import RefundPolicy
from posd.core.sale import Sale
from posd.devices.print_queue import Printing, daily_reports, printed_states
from posd.devices.scanners import ConsoleScanner, DeviceReader, open_scanners
from posd.reconcile import DailyReconciliation, Reconciler, health_probe
from posd.store import Store
from posd.sync import SyncWorker

log = logging.getLogger(__name__)


def till_of(config: Config) -> Till:
    return Till(config.store.id, config.store.terminal_id, config.store.name)


def build_channels(config: Config) -> dict[str, Channel]:
    """A client for every enabled ``[channels.NAME]``, made by its registered channel."""
    till = till_of(config)
    return {name: registry.get(name).connect(section, till)
            for name, section in config.channels.sections().items()}


def outputs_for(config: Config) -> Outputs:
    """What a finished sale brings with it, written with it (posd.core.effects): its receipt
    when a printer is configured, its HQ record when ``hq.url`` is set (no HQ, no outbox:
    a till that never syncs must not grow one forever)."""
    printing = config.printer.kind != "none"
    receipts = printed_states(config.receipt) if printing else frozenset()
    return Outputs(receipts=receipts, hq=bool(config.hq.url), refund_slips=printing)


def header_for(config: Config) -> receipt.Header:
    return receipt.Header(config.store.name, config.store.id, config.store.terminal_id,
                          config.store.address, config.store.tz, registry.labels())


def receipt_picture(config: Config) -> Callable[[Sale], bytes]:
    """The receipt of a sale as a PNG picture (the cashier page's), as configured."""
    from posd.api.page import png_bytes
    from posd.devices.print_queue import Paper, receipt_layout

    paper = Paper.from_config(config)

    def draw(sale: Sale) -> bytes:
        from posd.devices.preview import render_png  # Pillow, when a picture is asked for

        layout = receipt_layout(sale, paper)
        return png_bytes(lambda out: render_png(layout, paper.columns, out,
                                                paper.receipt.png_font_file))

    return draw


@dataclass
class Daemon:
    config: Config
    store: Store
    engine: Engine
    api: ApiServer
    console: TextIO | None = None
    scanner: ConsoleScanner | None = None
    #: hid and serial scanners, opened after recovery (start), each in /v1/health
    readers: list[DeviceReader] = field(default_factory=list)
    #: pushes the outbox to HQ (None: hq.url not set)
    sync: SyncWorker | None = None
    #: the print queue's worker (None: printer.kind = "none")
    printing: Printing | None = None
    stopped: threading.Event = field(default_factory=threading.Event)
    #: systemd's notification socket (posd run under systemd); does nothing otherwise.
    notifier: Notifier = field(default_factory=Notifier)
    #: the daily reconciliation job (None: [reconcile] enabled = false)
    reconciling: DailyReconciliation | None = None

    @classmethod
    def build(cls, config: Config, *, receipts_to: TextIO | None = None,
              notifier: Notifier | None = None,
              refund_policies: Mapping[str, RefundPolicy] | None = None) -> Daemon:
        """``refund_policies``: the channels' own by default (tests pass faster ones)."""
        token = read_api_token(config)
        manager_token = read_manager_token(config)
        store = Store.open(config.database.path, outputs=outputs_for(config))
        channels = build_channels(config)
        engine = Engine(config, store, channels, refund_policies=refund_policies)
        # The API and `posd reconcile` can always run a day; [reconcile] enabled is the job.
        reconciler = Reconciler.from_config(config, store, channels)
        reconciling = DailyReconciliation(
            reconciler, at=config.reconcile.at, retry_every_min=config.reconcile.retry_every_min
        ) if config.reconcile.enabled else None
        engine.add_health_probe("reconciliation", health_probe(store, reconciling))
        printing = Printing.from_config(config, store, receipts_to or sys.stdout)
        if printing is not None:
            printing.attach(engine)  # wakes the print worker (a console prints at once); health
        tz = config.store.tz  # DESIGN §2 rule 9: one zone for every time a person reads
        reports = daily_reports(store, config.report.business_day_cutoff_hour, tz)
        tls = ((str(config.api.tls_cert_file), str(config.api.tls_key_file))
               if config.api.tls else None)
        api = ApiServer(create_app(engine, token, store_timezone=tz, daily=reports,
                                   manager_token=manager_token, reconciler=reconciler,
                                   receipt_png=receipt_picture(config),
                                   reprint=None if printing is None else printing.reprint),
                        config.api.host,
                        config.api.port, tls=tls)
        readers = open_scanners(config.all_scanners, engine.scan)
        for reader in readers:
            engine.add_health_probe(reader.label, reader.health)
        sync = SyncWorker.from_config(config, store) if config.hq.url else None
        if sync is not None:
            engine.add_listener(sync.on_sale)  # wakes the pusher; never pushes inline
            engine.add_refund_listener(sync.on_refund)
            engine.add_health_probe("hq_sync", sync.health)
        return cls(config, store, engine, api, readers=readers, sync=sync, printing=printing,
                   notifier=notifier or Notifier(), reconciling=reconciling)

    def start(self, *, scanner_stream: TextIO | None = None) -> None:
        self.notifier.status("resuming unfinished sales")
        resumed = self.engine.start()
        if self.sync is not None:
            self.sync.start()
        if self.printing is not None:
            self.printing.start()
        if self.reconciling is not None:
            self.reconciling.start()
        self.api.start()
        log.info("API listening on %s (%d sale(s) resumed)", self.api.url, resumed)
        kind = self.config.scanner.kind
        if kind == "console" and scanner_stream is not None:
            self.scanner = ConsoleScanner(scanner_stream, self.engine.scan)
            self.scanner.start()
        for reader in self.readers:
            reader.start()
        channels = ", ".join(self.engine.enabled_channels)
        self.notifier.ready(f"ready: API on {self.api.url}, {channels}; "
                            f"{resumed} sale(s) resumed")

    def health_status(self) -> str:
        """One line for systemd's STATUS=: what /v1/health says. StoreError if the store
        does not answer (the watchdog keep-alive is then withheld)."""
        health = self.engine.health()
        degraded = "; ".join(health["degraded"])
        return (f"{health['status']}: {health['in_flight']} sale(s) in flight, HQ backlog "
                f"{health['hq_backlog']['count']}" + (f"; {degraded}" if degraded else ""))

    def wait(self) -> int:
        """Block until stop() or a fatal store error; keep systemd's watchdog fed meanwhile.
        Returns the exit status."""
        watchdog = Watchdog(self.notifier, self.health_status)
        # A fatal store error wakes this loop at once, so it sleeps until the next keep-alive
        # is due (without systemd's watchdog: until stop) instead of polling.
        self.engine.add_fatal_listener(self.stopped.set)
        while not self.engine.fatal.is_set():
            watchdog.tick()
            if self.stopped.wait(watchdog.due_in()):
                break
        if self.engine.fatal.is_set():
            log.critical("stopping: %s", self.engine.fatal_reason)
            return 1
        return 0

    def stop(self) -> None:
        self.notifier.stopping("stopping: no new sales; finishing the requests in flight")
        if self.scanner is not None:
            self.scanner.stop()
        for reader in self.readers:
            reader.stop()
        # The engine first: it refuses new sales (503) and wakes long-polls at once, then
        # lets requests on the wire finish; the API answers meanwhile, then closes.
        if self.reconciling is not None:
            self.reconciling.stop()
        self.engine.stop()
        self.api.stop()
        if self.sync is not None:
            self.sync.stop()
        if self.printing is not None:
            self.printing.stop()
        self.store.close()
        self.stopped.set()
