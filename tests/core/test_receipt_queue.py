# SPDX-License-Identifier: MIT
"""posd.core.print_jobs: DLE EOT status bytes, retries with backoff, receipts given up."""

import pytest

from posd.core.print_jobs import (
    JobKind, JobState, PrintJob, RetryPolicy, Status, decode_status, failed_attempt,
    nothing_to_print, printed, receipt_job, report_job,
)

ONLINE, OFFLINE = 0x12, 0x1A


@pytest.mark.parametrize(("printer", "cause", "paper", "status"), [
    (ONLINE, None, 0x12, Status.OK),
    (ONLINE, None, 0x1E, Status.PAPER_LOW),       # bits 2-3: near end
    (ONLINE, None, 0x72, Status.PAPER_OUT),       # bits 5-6: end
    (OFFLINE, 0x32, 0x72, Status.PAPER_OUT),      # off line, stopped by paper end
    (OFFLINE, 0x16, 0x12, Status.COVER_OPEN),
    (OFFLINE, 0x52, 0x12, Status.ERROR),
    (OFFLINE, 0x12, 0x12, Status.OFFLINE),
    (OFFLINE, None, 0x72, Status.PAPER_OUT),      # no cause, but the sensor says it
    (None, None, None, Status.NO_ANSWER),         # silence is not "paper OK"
    (ONLINE, None, None, Status.NO_ANSWER),       # answered 1 but not 4: paper unknown
    (0x00, None, 0x12, Status.NO_ANSWER),         # not a status byte (fixed bits wrong)
    (0xFF, None, 0x12, Status.NO_ANSWER),
])
def test_decode_status(printer: int | None, cause: int | None, paper: int | None,
                       status: Status) -> None:
    assert decode_status(printer, cause, paper) is status


def test_only_ok_low_and_unknown_are_ready() -> None:
    assert {s for s in Status if s.ready} == {Status.OK, Status.PAPER_LOW, Status.UNKNOWN}


def test_backoff_doubles_up_to_the_cap() -> None:
    policy = RetryPolicy(base_s=2, max_s=60)
    assert [policy.delay(n) for n in (1, 2, 3, 4, 5, 6, 7, 100)] == [2, 4, 8, 16, 32, 60, 60, 60]


def test_a_failed_attempt_is_retried_later() -> None:
    job = receipt_job(7, "paid", 100.0)
    again = failed_attempt(job, 101.0, "printer out of paper", RetryPolicy(2, 60, 600))
    assert (again.state, again.attempts, again.next_at) == (JobState.QUEUED, 1, 103.0)
    assert again.last_error == "printer out of paper"
    again = failed_attempt(again, 103.0, "x", RetryPolicy(2, 60, 600))
    assert again.next_at == 107.0


def test_a_receipt_is_given_up_after_the_expiry_a_report_never_is() -> None:
    policy = RetryPolicy(2, 60, 600)
    expired = failed_attempt(receipt_job(7, "paid", 100.0), 700.0, "offline", policy)
    assert (expired.state, expired.done_at) == (JobState.EXPIRED, 700.0)
    report = failed_attempt(report_job("2024-05-01", 100.0), 1e6, "x", policy)
    assert report.state is JobState.QUEUED


def test_done_and_nothing_to_print() -> None:
    job = report_job("2024-05-01", 1.0)
    assert (printed(job, 2.0).state, printed(job, 2.0).done_at) == (JobState.DONE, 2.0)
    assert nothing_to_print(job, 2.0, "no such sale").state is JobState.FAILED


def test_automatic_receipts_have_a_key_reprints_do_not() -> None:
    assert receipt_job(7, "paid", 1.0).key == "receipt:7:paid"
    assert receipt_job(7, "paid", 1.0, reprint=True).key is None
    assert report_job("2024-05-01", 1.0, key="k").key == "k"


def test_row_round_trip() -> None:
    job = PrintJob(JobKind.RECEIPT, 1.0, 2.0, 5, "k", 7, None, True, JobState.DONE, 3, 4.0, "e")
    assert PrintJob.from_row(job.row()) == job
    assert "id" not in receipt_job(1, "paid", 1.0).row()
