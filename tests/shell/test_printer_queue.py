# SPDX-License-Identifier: MIT
"""posd.devices.print_queue: the SQLite print queue and its worker against a loopback network printer
(ready, out of paper, silent, gone), the automatic Z-report, and the whole daemon: a sale
is paid and answered whatever the printer does, and /v1/health says what the printer does."""

from __future__ import annotations

import io
import queue
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
import requests

from posd.core import report
from posd.channels.simulator import TestPki
from posd.config import PrinterConfig, ReceiptConfig
from posd.daemon import Daemon
from posd.core.effects import Outputs
from posd.core.money import Fen
from posd.core.print_jobs import JobState, PrintJob, RetryPolicy, Status, receipt_job, report_job
from posd.devices.printers import open_printer
from posd.devices.print_queue import Paper, Printing, load_report, printed_states
from posd.core.sale import Sale, State
from posd.store import Store
from tests.waiting import wait_until_final
from tests.core.test_receipt import HEADER, paid
from tests.sandbox import config as validate
from tests.sandbox import make_config, start_simulator
from tests.shell.escpos_decode import decode
from tests.shell.escpos_fake import (  # noqa: F401 - fake_printer is a fixture
    PAPER_OUT, READY, SILENT, WAIT_S, FakePrinter, fake_printer,
)

FAST = RetryPolicy(base_s=0.05, max_s=0.2, receipt_expiry_s=600)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = Store.open(tmp_path / "posd.db", outputs=Outputs(printed_states(ReceiptConfig())))
    yield store
    store.close()


def add_sale(store: Store, state: State = State.PAID, amount: int = 1250) -> Sale:
    template = paid()

    def make(seq: int) -> Sale:
        return replace(template, out_trade_no=f"S001T01X{seq:06d}", state=state,
                       amount=Fen(amount), updated_at=time.time())  # final just now
    sale, _ = store.create_sale(make, order_ref=None, idempotency_key=None)
    return sale


class Worker:
    """A Printing service on ``store`` and a printer config, and the jobs it attempted."""

    def __init__(self, store: Store, config: PrinterConfig, *, policy: RetryPolicy = FAST,
                 receipt: ReceiptConfig = ReceiptConfig(), status_every_s: float = 0.0,  # noqa: B008
                 auto_print_at: str = "") -> None:
        self.attempts: queue.Queue[PrintJob] = queue.Queue()
        self.printing = Printing(
            store, open_printer(config, io.StringIO(), 32), Paper(HEADER, receipt),
            policy=policy, poll_s=0.5, status_every_s=status_every_s,
            auto_print_at=auto_print_at,
            on_attempt=self.attempts.put)

    def next(self) -> PrintJob:
        return self.attempts.get(timeout=WAIT_S)


def network(fake: FakePrinter | None = None, port: int = 9, **options: object) -> PrinterConfig:
    return PrinterConfig(kind="network", host="127.0.0.1", port=fake.port if fake else port,
                         timeout_s=2.0, status_timeout_s=0.3, **options)  # type: ignore[arg-type]


@pytest.fixture
def worker(store: Store, fake_printer: FakePrinter) -> Iterator[Worker]:
    worker = Worker(store, network(fake_printer))
    worker.printing.start()
    yield worker
    worker.printing.stop()


def test_a_final_sale_is_queued_then_printed(store: Store, worker: Worker,
                                             fake_printer: FakePrinter) -> None:
    sale = add_sale(store)
    worker.printing.on_sale(sale)
    job = worker.next()
    assert (job.state, job.sale_id, job.attempts) == (JobState.DONE, sale.id, 1)
    printed = fake_printer.next_job()
    assert "PAID" in printed.texts and printed.qr == [sale.out_trade_no]
    assert printed.status_queries == [1, 4]
    health = worker.printing.health()
    assert (health["status"], health["queued"]) == ("ok", 0) and "degraded" not in health
    assert health["last_printed_at"] is not None


def test_the_store_queues_a_receipt_with_the_final_state_once(tmp_path: Path) -> None:
    receipts = printed_states(ReceiptConfig(print_declined=False))
    store = Store.open(tmp_path / "posd.db", outputs=Outputs(receipts))
    try:
        sale = add_sale(store)
        store.save(replace(sale, message="again"))  # a final sale saved again: no new job
        add_sale(store, State.DECLINED)  # not printed under print_declined = false
        add_sale(store, State.CANCELLED)  # never printed
        jobs = store.print_jobs(JobState.QUEUED)
        assert [(j.sale_id, j.key) for j in jobs] == [(sale.id, f"receipt:{sale.id}:paid")]
        waiting = add_sale(store, State.PAYING)
        store.save(replace(waiting, state=State.PAID))  # arriving in paid: queued then
        assert [j.sale_id for j in store.print_jobs(JobState.QUEUED)] == [sale.id, waiting.id]
    finally:
        store.close()


def test_out_of_paper_keeps_the_job_shows_it_and_prints_when_refilled(
        store: Store, worker: Worker, fake_printer: FakePrinter) -> None:
    fake_printer.set(PAPER_OUT)
    sale = add_sale(store)
    worker.printing.on_sale(sale)
    job = worker.next()
    assert (job.state, job.attempts, job.last_error) == (JobState.QUEUED, 1,
                                                         "printer out of paper")
    health = worker.printing.health()
    assert health["status"] == "paper_out" and health["queued"] == 1
    assert health["degraded"] == "out of paper; 1 job(s) waiting to print (printer out of paper)"
    assert store.get(sale.id).state is State.PAID
    fake_printer.set(READY)
    while (job := worker.next()).state is JobState.QUEUED:
        pass
    assert job.state is JobState.DONE
    assert "PAID" in fake_printer.next_job().texts
    assert "degraded" not in worker.printing.health()


def test_a_silent_printer_gets_no_job(store: Store, worker: Worker,
                                      fake_printer: FakePrinter) -> None:
    fake_printer.set(SILENT)
    worker.printing.on_sale(add_sale(store))
    job = worker.next()
    assert job.state is JobState.QUEUED and "does not answer" in job.last_error
    assert "does not answer status queries" in worker.printing.health()["degraded"]
    worker.printing.stop()
    assert fake_printer.jobs_so_far() == []  # only status queries went out


def test_status_query_off_prints_to_a_printer_that_never_answers(
        store: Store, fake_printer: FakePrinter) -> None:
    fake_printer.set(SILENT)
    worker = Worker(store, network(fake_printer, status_query=False))
    worker.printing.start()
    try:
        worker.printing.on_sale(add_sale(store))
        assert worker.next().state is JobState.DONE
        assert fake_printer.next_job().status_queries == []
        assert worker.printing.health()["status"] == "unknown"
    finally:
        worker.printing.stop()


def test_an_unreachable_printer_is_retried_then_the_receipt_given_up(
        store: Store, closed_port: int) -> None:
    worker = Worker(store, network(port=closed_port),
                    policy=RetryPolicy(base_s=0.05, max_s=0.1, receipt_expiry_s=0.3))
    sale = add_sale(store)
    worker.printing.start()
    try:
        worker.printing.on_sale(sale)
        first = worker.next()
        assert first.state is JobState.QUEUED and "network 127.0.0.1" in first.last_error
        assert worker.printing.health()["status"] == "unreachable"
        while (job := worker.next()).state is JobState.QUEUED:
            pass
        assert job.state is JobState.EXPIRED and job.attempts > 1
        assert worker.printing.health()["not_printed"] == [sale.id]
    finally:
        worker.printing.stop()


def test_a_job_with_nothing_to_print_fails_without_retry(store: Store, closed_port: int) -> None:
    worker = Worker(store, network(port=closed_port))
    worker.printing.enqueue(receipt_job(999, "paid", 1.0))
    worker.printing.enqueue(report_job("2024-02-30", 1.0))
    for _ in range(2):
        worker.printing.step()
    assert [(j.state, j.last_error) for j in store.print_jobs(JobState.FAILED)] == [
        (JobState.FAILED, "no sale 999"),
        (JobState.FAILED, "date must be a calendar day written YYYY-MM-DD, got '2024-02-30'")]


def test_a_report_job_prints_the_business_days_figures(store: Store, worker: Worker,
                                                       fake_printer: FakePrinter) -> None:
    add_sale(store, State.PAID, 1250)
    add_sale(store, State.DECLINED, 300)
    day = report.business_day(paid().created_at, None)
    worker.printing.enqueue(report_job(day.isoformat(), 0.0))
    assert worker.next().state is JobState.DONE
    text = "\n".join(fake_printer.next_job().texts)
    assert "Z-REPORT" in text and f"Business day          {day}" in text
    assert "Paid               1       12.50" in text and "Declined           1        3.00" in text


def test_an_idle_status_check_shows_paper_out_before_the_next_sale(
        store: Store, fake_printer: FakePrinter) -> None:
    fake_printer.set(PAPER_OUT)
    worker = Worker(store, network(fake_printer), status_every_s=30)
    assert worker.printing.step() == 0.5  # nothing queued: wait poll_s
    health = worker.printing.health()
    assert health["status"] == "paper_out" and health["degraded"] == "out of paper"
    assert worker.printing.check_status() is Status.PAPER_OUT


def test_the_z_report_is_scheduled_and_queued_once_a_day(store: Store, closed_port: int) -> None:
    worker = Worker(store, network(port=closed_port), auto_print_at="04:05")
    worker.printing.start()
    try:
        job = worker.printing._scheduler.get_job("z-report")  # type: ignore[union-attr]  # noqa: SLF001
        assert (job.next_run_time.hour, job.next_run_time.minute) == (4, 5)
        first = worker.printing.print_closing_report()
        assert first is not None and first.key == f"report:{first.day}:auto"
        assert worker.printing.print_closing_report() is None
    finally:
        worker.printing.stop()


def test_load_report_sums_in_sql_what_daily_report_sums_in_python(store: Store) -> None:
    sales = [add_sale(store, state, amount) for state, amount in [
        (State.PAID, 100), (State.PAID, 250), (State.REVERSED, 300),
        (State.NEEDS_ATTENTION, 70), (State.DECLINED, 5)]]
    day = report.business_day(paid().created_at, None)
    summed = load_report(store, day, cutoff_hour=0, tz=None, now=2e9)
    direct = report.daily_report(day, sales)
    assert (summed.channels, summed.total, summed.attention) == (
        direct.channels, direct.total, direct.attention)
    assert summed.kind == "Z" and load_report(store, day, cutoff_hour=0, tz=None,
                                              now=paid().created_at).kind == "X"
    assert load_report(store, date(2000, 1, 1), cutoff_hour=0, tz=None, now=2e9).total.count == 0


# --- the whole daemon ---------------------------------------------------------------------------

TOKEN = {"Authorization": "Bearer test-token-0123456789abcdef"}
PAID_CODE = "134567890123456789"


def _pay(url: str) -> dict[str, object]:
    created = requests.post(f"{url}/v1/sales", json={"amount": 1250, "auth_code": PAID_CODE},
                            headers=TOKEN, timeout=10).json()
    sale = wait_until_final(url, created)
    assert sale["state"] == "paid", sale
    return sale  # type: ignore[no-any-return]


def test_the_daemon_prints_receipts_and_a_printer_out_of_paper_changes_no_sale(
        tmp_path: Path, pki: TestPki, fake_printer: FakePrinter) -> None:
    printer = {"kind": "network", "host": fake_printer.host, "port": fake_printer.port,
               "status_timeout_s": 0.3, "retry_base_s": 0.05, "retry_max_s": 0.2,
               "status_every_s": 0}
    sim = start_simulator(pki)
    daemon = Daemon.build(validate(make_config(tmp_path, sim.url, pki, printer=printer)))
    daemon.start()
    try:
        url = f"http://127.0.0.1:{daemon.api.port}"
        sale = _pay(url)
        assert fake_printer.next_job().qr == [sale["out_trade_no"]]
        fake_printer.set(PAPER_OUT)
        _pay(url)  # paid and answered at once, printer or not
        while decode(fake_printer.connections.get(timeout=WAIT_S)).status_queries != [1, 2, 4]:
            pass  # the worker asked and heard "paper out" (noted before it hung up)
        health = requests.get(f"{url}/v1/health", timeout=5).json()
        assert health["status"] == "degraded" and health["printer"]["status"] == "paper_out"
        assert any(d.startswith("printer: out of paper") for d in health["degraded"])
        fake_printer.set(READY)
        assert "PAID" in fake_printer.next_job().texts
        report_json = requests.get(f"{url}/v1/reports/daily", headers=TOKEN, timeout=5).json()
        assert report_json["total"]["paid"] == {"count": 2, "amount": 2500}
    finally:
        daemon.stop()
        sim.stop()


def test_the_rollup_follows_every_change_of_the_sales(store: Store) -> None:
    """sale_totals (kept by triggers) == the sums over the sales themselves, for business
    days on 15-minute boundaries (the rollup) and for any other range (the sales)."""
    sales = [add_sale(store, state, amount) for state, amount in [
        (State.PAID, 100), (State.CONFIRMING, 250), (State.CONFIRMING, 300),
        (State.AWAITING_CODE, 70), (State.DECLINED, 5)]]
    store.save(replace(sales[1], state=State.PAID))                 # confirming -> paid
    store.save(replace(sales[2], state=State.REVERSED))             # -> reversed
    store.save(replace(sales[3], state=State.CANCELLED, channel=None))
    store.save(replace(sales[4], created_at=sales[4].created_at + 86400))  # another day
    store.save(replace(sales[0], queries=3))                        # no figure changes

    def python_sums(since: float, until: float) -> set[tuple[object, ...]]:
        day = report.daily_report(date(2000, 1, 1), store.find(since=since, until=until))
        return {(t.channel, b, getattr(t, b).count, getattr(t, b).amount)
                for t in day.channels for b in report.BUCKETS if getattr(t, b).count}

    def sql_sums(since: float, until: float) -> set[tuple[object, ...]]:
        day = report.from_totals(date(2000, 1, 1), store.sale_totals(since, until), [],
                                 since=since, until=until, complete=True)
        return {(t.channel, b, getattr(t, b).count, getattr(t, b).amount)
                for t in day.channels for b in report.BUCKETS if getattr(t, b).count}

    first = report.business_day(paid().created_at, None)
    for day in (first, first + (date(2000, 1, 2) - date(2000, 1, 1))):
        since, until = report.day_bounds(day, None, 4)
        assert sql_sums(since, until) == python_sums(since, until)
        assert sql_sums(since + 0.5, until) == python_sums(since + 0.5, until)  # no rollup
    since, until = report.day_bounds(first, None)
    assert python_sums(since, until) == {
        ("wechat", "paid", 2, 350), ("wechat", "reversed", 1, 300), ("none", "cancelled", 1, 70)}
