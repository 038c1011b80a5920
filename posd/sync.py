# SPDX-License-Identifier: MIT
"""HQ sync, the terminal's side: the outbox, in batches, to HQ, until HQ has every record.

The outbox (posd.store) gets a row in the same transaction as every final sale, and one per
closed business day (a daily summary, made here). :class:`Syncer` sends unsent rows in
``seq`` order, ``hq.batch_size`` at a time, signed (posd.core.hq_protocol), and settles HQ's
per-record answer in one transaction: ``accepted`` and ``duplicate`` mark the row
acknowledged; ``rejected`` quarantines it (kept, not sent again, shown in ``posd sync
--status`` and /v1/health until ``posd sync --retry-rejected``), so one bad record never
blocks the others. A row is deleted only ``hq.keep_acked_days`` after its acknowledgement.

Delivery is at least once, made exactly once in effect by HQ, which keeps one copy per
(terminal, record_id). So, unlike a pay request, a batch whose answer was lost is simply
sent again.

:class:`SyncWorker` is the daemon's pusher: one thread, woken at once after each final
sale and every ``hq.interval_s`` by an APScheduler job, never in the sale's own path; while
HQ fails it backs off exponentially, with jitter (:func:`backoff_s`).
"""

from __future__ import annotations

import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, tzinfo
from typing import Any, TextIO
from urllib.parse import urlsplit

from apscheduler.schedulers.background import BackgroundScheduler

from posd.config import Config
from posd.config_base import read_secret
from posd.core.errors import ConfigError, StoreError
from posd.hq.client import (
    HqAuthError,
    HqClient,
    HqProtocolError,
    HqUnavailable,
    PushResult,
    SyncError,
    encode_batch,
    settle,
)
from posd.core.money import Fen, format_yuan
from posd.core.report import (
    BUCKETS,
    ChannelTotals,
    DailyReport,
    business_day,
    daily_report,
    day_bounds,
)
from posd.core.refund import Refund
from posd.core.sale import Sale
from posd.store import OutboxRow, Store

log = logging.getLogger(__name__)

#: closed days looked at for a missing daily summary (a day is closed once it is over and
#: its sales are final, or two days after it ended at the latest).
SUMMARY_LOOKBACK_DAYS = 7


# --- pure parts ------------------------------------------------------------------------------


def backoff_s(failures: int, initial: float, cap: float, jitter: float) -> float:
    """The pause after ``failures`` failed pushes in a row: ``initial * 2**(failures-1)``,
    at most ``cap``, times ``0.5 + jitter/2`` for ``jitter`` in [0, 1) ("equal jitter": at
    least half the step, so terminals that lost HQ together do not come back together)."""
    if failures < 1:
        return 0.0
    step = min(cap, initial * 2.0 ** min(failures - 1, 60))
    return step * (0.5 + jitter / 2)


def _totals(totals: ChannelTotals) -> dict[str, Any]:
    figures: dict[str, Any] = {
        name: {"count": getattr(totals, name).count, "amount": int(getattr(totals, name).amount)}
        for name in BUCKETS}
    return figures | {"net": int(totals.net)}


def summary_payload(report: DailyReport, made_at: float) -> dict[str, Any]:
    """A daily summary record's payload: the Z-report's figures (fen) for HQ to compare."""
    return {"type": "daily_summary", "version": 1, "summary": {
        "day": report.day.isoformat(), "created_at": made_at,
        "total": _totals(report.total),
        "channels": {c.channel: _totals(c) for c in report.channels},
        "needs_attention": list(report.needs_attention),
    }}


# --- the shell -------------------------------------------------------------------------------


class Syncer:
    """Pushes the outbox, enqueues daily summaries, prunes acknowledged rows."""

    def __init__(self, store: Store, client: HqClient, *, store_id: str, terminal_id: str,
                 batch_size: int = 500, keep_acked_s: float = 30 * 86400.0,
                 tz: tzinfo | None = None, cutoff_hour: int = 0,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.client = client
        self.store_id = store_id
        self.terminal_id = terminal_id
        self.batch_size = batch_size
        self.keep_acked_s = keep_acked_s
        self.tz = tz
        self.cutoff_hour = cutoff_hour  # business days as the Z-report has them
        self.clock = clock

    @classmethod
    def from_config(cls, config: Config, store: Store) -> Syncer:
        hq = config.hq
        if not hq.url:
            raise ConfigError("hq.url is not set: there is no HQ to sync with")
        token = read_secret(hq.token_file, "hq.token_file").decode("utf-8", "replace").strip()
        key = (read_secret(hq.hmac_key_file, "hq.hmac_key_file").strip()
               if hq.hmac_key_file is not None else token.encode())
        client = HqClient(hq.url, token, key, ca_file=str(hq.ca_file) if hq.ca_file else None,
                          timeout=(hq.connect_timeout_s, hq.read_timeout_s))
        return cls(store, client, store_id=config.store.id, terminal_id=config.store.terminal_id,
                   batch_size=hq.batch_size, keep_acked_s=hq.keep_acked_days * 86400.0,
                   cutoff_hour=config.report.business_day_cutoff_hour, tz=config.store.tz)

    def push_once(self) -> PushResult:
        """Send the oldest unsent batch and settle HQ's answer. An empty result: nothing to send."""
        rows = self.store.outbox_unsent(self.batch_size)
        if not rows:
            return PushResult()
        return self._settle(rows, self.client.post_batch(self._encode(rows)))

    def push_all(self, on_batch: Callable[[PushResult], None] | None = None) -> PushResult:
        """Push batch after batch until none is left (or raise SyncError).

        While a batch is on the wire, the next is read and encoded (in this thread; the
        POST waits in another): HQ and the terminal work at the same time. One request is
        in flight at a time, and a batch is settled before the next is sent.
        """
        total = PushResult()
        rows = self.store.outbox_unsent(self.batch_size)
        body = self._encode(rows)
        with ThreadPoolExecutor(1, thread_name_prefix="hq-post") as poster:
            while rows:
                answer = poster.submit(self.client.post_batch, body)
                after = rows[-1].seq
                following = (self.store.outbox_unsent(self.batch_size, after)
                             if len(rows) == self.batch_size else [])
                body = self._encode(following)
                result = self._settle(rows, answer.result())
                total += result
                if on_batch is not None:
                    on_batch(result)
                rows = following
        return total

    def _encode(self, rows: Sequence[OutboxRow]) -> bytes:
        if not rows:
            return b""
        return encode_batch(self.store_id, self.terminal_id, rows, self.tz, self.cutoff_hour)

    def _settle(self, rows: Sequence[OutboxRow], answer: object) -> PushResult:
        settled = settle(rows, answer)
        self.store.outbox_settle(settled.acked, settled.rejected, self.clock())
        for record_id, reason in settled.result.rejected:
            log.error("HQ rejected record %s: %s (quarantined)", record_id, reason)
        if settled.missing:
            raise HqProtocolError(f"HQ's answer did not mention {settled.missing} record(s)")
        return settled.result

    def enqueue_summaries(self) -> int:
        """Add a daily summary for each closed day of the last week that has none."""
        now = self.clock()
        today = business_day(now, self.tz, self.cutoff_hour)
        added = 0
        for back in range(1, SUMMARY_LOOKBACK_DAYS + 1):
            day = today - timedelta(days=back)
            since, until = day_bounds(day, self.tz, self.cutoff_hour)
            sales = self.store.find(since=since, until=until)
            if not sales or (back < 2 and not all(s.final for s in sales)):
                continue
            payload = summary_payload(daily_report(day, sales), now)
            added += self.store.outbox_add(f"daily:{day.isoformat()}", "daily_summary",
                                           payload, 0, now)
        return added

    def prune(self) -> int:
        """Delete rows acknowledged more than ``keep_acked_s`` ago."""
        return self.store.outbox_prune(self.clock() - self.keep_acked_s)

    @staticmethod
    def status_of(store: Store, tz: tzinfo | None = None) -> dict[str, Any]:
        """The backlog (count, amount in fen, oldest) and the quarantined records."""
        rejected = store.outbox_rejected()
        return {"backlog": store.outbox_backlog(), "rejected": [
            {"record_id": r.record_id, "reason": r.reject_reason, "at": _iso(r.rejected_at, tz)}
            for r in rejected]}


@dataclass(frozen=True, slots=True)
class SyncState:
    """The worker's view of HQ, for /v1/health and tests."""

    failures: int = 0
    last_error: str | None = None
    #: "unavailable", "auth" or "protocol" (the SyncError class) while failing.
    error_kind: str | None = None
    last_ok_at: float | None = None
    #: time.monotonic() of the next try while backing off.
    retry_at: float | None = None
    #: records acknowledged by HQ since start.
    pushed: int = 0
    attempts: int = 0
    delays: tuple[float, ...] = field(default=(), repr=False)


_KINDS: dict[type[SyncError], str] = {HqUnavailable: "unavailable", HqAuthError: "auth",
                                      HqProtocolError: "protocol"}


class SyncWorker:
    """One thread that pushes whenever woken, backing off while HQ fails."""

    def __init__(self, syncer: Syncer, *, interval_s: float = 60.0,
                 backoff_initial_s: float = 2.0, backoff_max_s: float = 300.0,
                 housekeeping_s: float = 3600.0,
                 jitter: Callable[[], float] = random.random) -> None:
        self.syncer = syncer
        self._interval_s = interval_s
        self._backoff = (backoff_initial_s, backoff_max_s)
        self._housekeeping_s = housekeeping_s
        self._jitter = jitter
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._cond = threading.Condition()
        self._state = SyncState()
        self._thread: threading.Thread | None = None
        self._scheduler: BackgroundScheduler | None = None

    @classmethod
    def from_config(cls, config: Config, store: Store) -> SyncWorker:
        hq = config.hq
        return cls(Syncer.from_config(config, store), interval_s=hq.interval_s,
                   backoff_initial_s=hq.backoff_initial_s, backoff_max_s=hq.backoff_max_s)

    def start(self) -> None:
        """Start the thread and the periodic jobs; push what is waiting at once."""
        self._thread = threading.Thread(target=self._run, name="hq-sync", daemon=True)
        self._thread.start()
        self._scheduler = BackgroundScheduler(daemon=True)
        self._scheduler.add_job(self.trigger, "interval", seconds=self._interval_s,
                                id="hq-sync", coalesce=True, max_instances=1)
        self._scheduler.add_job(self.housekeeping, "interval", seconds=self._housekeeping_s,
                                id="hq-housekeeping", coalesce=True, max_instances=1,
                                next_run_time=datetime.now().astimezone())
        self._scheduler.start()
        self.trigger()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop after the request on the wire (if any) is answered or times out."""
        self._stopping.set()
        self._wake.set()
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._thread is not None:
            self._thread.join(timeout)
        self.syncer.client.close()

    def trigger(self) -> None:
        """Push as soon as the backoff allows (from any thread; never blocks)."""
        self._wake.set()

    def on_sale(self, sale: Sale) -> None:
        """Engine listener: a final sale means a new outbox row."""
        if sale.final:
            self.trigger()

    def on_refund(self, refund: Refund) -> None:
        """Engine listener: so does a final refund."""
        if refund.final:
            self.trigger()

    @property
    def state(self) -> SyncState:
        with self._cond:
            return self._state

    def wait_for(self, predicate: Callable[[SyncState], bool], timeout: float) -> SyncState:
        """The state once ``predicate(state)`` holds, or at ``timeout`` (tests, CLI)."""
        with self._cond:
            self._cond.wait_for(lambda: predicate(self._state), timeout)
            return self._state

    def housekeeping(self) -> None:
        """Enqueue missing daily summaries (and push them), prune old acknowledged rows."""
        try:
            if self.syncer.enqueue_summaries():
                self.trigger()
            if pruned := self.syncer.prune():
                log.info("pruned %d record(s) HQ acknowledged long ago", pruned)
        except StoreError as err:
            log.error("HQ sync housekeeping: %s", err)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self._pause())
            self._wake.clear()
            if self._stopping.is_set():
                return
            if not self._pause():  # None (no backoff) or 0.0 (backoff over)
                self._drain()

    def _pause(self) -> float | None:
        retry_at = self.state.retry_at
        return None if retry_at is None else max(0.0, retry_at - time.monotonic())

    def _drain(self) -> None:
        self._update(attempts=self.state.attempts + 1)
        try:
            self.syncer.push_all(on_batch=self._batch_done)
        except SyncError as err:
            self._failed(err)
            return
        except StoreError as err:  # the engine stops the daemon on this; we just stop pushing
            log.critical("HQ sync: %s", err)
            self._failed(HqProtocolError(str(err)))
            return
        self._update(failures=0, last_error=None, error_kind=None, retry_at=None)

    def _batch_done(self, result: PushResult) -> None:
        self._update(failures=0, last_error=None, error_kind=None, retry_at=None,
                     last_ok_at=self.syncer.clock(),
                     pushed=self.state.pushed + result.accepted + result.duplicate)

    def _failed(self, err: SyncError) -> None:
        state = self.state
        failures = state.failures + 1
        delay = backoff_s(failures, *self._backoff, self._jitter())
        log_at = logging.WARNING if failures == 1 or failures % 10 == 0 else logging.INFO
        log.log(log_at, "HQ sync failed (%d in a row), next try in %.0f s: %s", failures,
                delay, err)
        self._update(failures=failures, last_error=str(err),
                     error_kind=_KINDS.get(type(err), "protocol"),
                     retry_at=time.monotonic() + delay, delays=(*state.delays[-19:], delay))

    def _update(self, **changes: Any) -> None:
        with self._cond:
            self._state = replace(self._state, **changes)
            self._cond.notify_all()

    def health(self) -> dict[str, Any]:
        """The ``hq_sync`` part of /v1/health (the backlog itself is ``hq_backlog``)."""
        state = self.state
        parts = urlsplit(self.syncer.client.url)
        rejected = self.syncer.store.outbox_rejected_count()
        out: dict[str, Any] = {
            "hq": f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}",
            "last_ok_at": _iso(state.last_ok_at, self.syncer.tz), "failures": state.failures,
            "last_error": state.last_error, "rejected": rejected, "pushed": state.pushed,
            "retry_in_s": None if state.retry_at is None else round(
                max(0.0, state.retry_at - time.monotonic()), 1)}
        if state.error_kind in ("auth", "protocol") or state.failures >= 3:
            out["degraded"] = state.last_error
        elif rejected:
            out["degraded"] = f"HQ rejected {rejected} record(s); see posd sync --status"
        return out


def _iso(at: float | None, tz: tzinfo | None = None) -> str | None:
    return None if at is None else datetime.fromtimestamp(at).astimezone(tz).isoformat()


# --- posd sync -------------------------------------------------------------------------------


def sync_command(config: Config, *, status: bool = False, retry_rejected: bool = False,
                 as_json: bool = False, out: TextIO | None = None) -> int:
    """``posd sync [--status] [--retry-rejected]``, on the database directly (the daemon may
    be running: SQLite takes turns, and HQ keeps one copy of a record sent twice).

    Exit 0 when everything is at HQ; 65 when HQ rejected records; a SyncError's code else.
    """
    out = out or sys.stdout
    store = Store.open(config.database.path)
    try:
        if status:
            figures = Syncer.status_of(store, config.store.tz)
            print(json.dumps(figures, indent=2) if as_json else _status_text(figures, config.store.tz),
                  file=out)
            return 0
        syncer = Syncer.from_config(config, store)
        try:
            if retry_rejected:
                print(f"re-queued {store.outbox_requeue_rejected()} rejected record(s)", file=out)
            syncer.enqueue_summaries()
            result = syncer.push_all()
        finally:
            syncer.client.close()
        left = store.outbox_backlog()
    finally:
        store.close()
    print(f"sent {result.sent} record(s): {result.accepted} accepted, {result.duplicate} "
          f"already at HQ, {len(result.rejected)} rejected; {left['count']} not at HQ", file=out)
    for record_id, reason in result.rejected:
        print(f"  rejected {record_id}: {reason}", file=out)
    return 65 if result.rejected else 0


def _status_text(figures: dict[str, Any], tz: tzinfo | None = None) -> str:
    backlog = figures["backlog"]
    oldest = _iso(backlog["oldest_at"], tz) or "-"
    lines = [f"waiting for HQ: {backlog['count']} record(s), "
             f"{format_yuan(Fen(backlog['amount']))} yuan, oldest {oldest}"]
    if rejected := figures["rejected"]:
        lines.append(f"rejected by HQ (kept; posd sync --retry-rejected sends them again): "
                     f"{len(rejected)}")
        lines += [f"  {r['record_id']}: {r['reason']}" for r in rejected]
    return "\n".join(lines)
