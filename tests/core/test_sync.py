# SPDX-License-Identifier: MIT
"""HQ sync's pure parts: backoff, the wire format, signatures, record checks, HQ's answer,
day totals."""

from __future__ import annotations

import json
from datetime import UTC, date, timedelta, timezone

import pytest

from posd.core import hq_protocol as protocol
from posd.hq.client import HqProtocolError, encode_batch, settle, wire_record
from posd.core.report import business_day
from posd.hq.server import answer
from posd.hq.storage import StateRow, day_totals, latest_sales, unique_records
from posd.core.money import Fen
from posd.core.report import daily_report
from posd.core.sale import Sale, State
from posd.store import OutboxRow, sale_record
from posd.sync import backoff_s, summary_payload

T0 = 1_714_582_800.0  # 2024-05-01 17:00 UTC = 2024-05-02 01:00 in UTC+8


def _sale(n: int = 1, state: State = State.PAID, amount: int = 1250) -> Sale:
    return Sale(out_trade_no=f"S001T01240501170000{n:06d}", amount=Fen(amount), created_at=T0,
                updated_at=T0 + 3, state=state, id=n, channel="wechat")


def _row(sale: Sale, seq: int = 1) -> OutboxRow:
    return OutboxRow(seq, seq, f"sale:{sale.out_trade_no}:{sale.state.value}", "sale",
                     json.dumps(sale_record(sale)), int(sale.amount), sale.updated_at, None,
                     None, None)


@pytest.mark.parametrize(("failures", "jitter", "expected"), [
    (0, 0.0, 0.0), (1, 0.0, 1.0), (1, 0.999, 1.999), (2, 0.0, 2.0), (3, 0.5, 6.0),
    (9, 0.0, 150.0),  # 2 * 2**8 = 512 -> capped at 300, halved by the jitter floor
    (10_000, 0.0, 150.0),  # no overflow after days of failures
])
def test_backoff_doubles_with_jitter_and_a_cap(failures: int, jitter: float,
                                               expected: float) -> None:
    assert backoff_s(failures, 2.0, 300.0, jitter) == pytest.approx(expected, abs=1e-3)


def test_backoff_never_shrinks_as_failures_grow() -> None:
    delays = [backoff_s(n, 2.0, 300.0, 0.0) for n in range(1, 20)]
    assert delays == sorted(delays) and delays[-1] == 150.0


def test_the_business_day_is_the_stores() -> None:
    assert business_day(T0, UTC).isoformat() == "2024-05-01"
    assert business_day(T0, timezone(timedelta(hours=8))).isoformat() == "2024-05-02"


def test_a_wire_record_is_the_envelope_then_the_stored_payload() -> None:
    record = json.loads(wire_record(_row(_sale(), seq=7), UTC))
    assert list(record)[:5] == ["record_id", "seq", "day", "type", "version"]
    assert (record["seq"], record["day"], record["sale"]["amount"]) == (7, "2024-05-01", 1250)
    assert isinstance(protocol.check_record(record), protocol.Record)


def test_a_batch_round_trips_through_the_receivers_checks() -> None:
    body = encode_batch("S001", "T01", [_row(_sale(1), 1), _row(_sale(2), 2)], UTC)
    batch = protocol.parse_batch(json.loads(body))
    assert (batch.store_id, batch.terminal_id) == ("S001", "T01")
    assert [r.seq for r in batch.records if isinstance(r, protocol.Record)] == [1, 2]


def test_signatures() -> None:
    sig = protocol.sign(b"key", b"body")
    assert sig.startswith("sha256=") and len(sig) == 7 + 64
    assert protocol.signature_ok(b"key", b"body", sig)
    assert not protocol.signature_ok(b"key", b"body!", sig)
    assert not protocol.signature_ok(b"other", b"body", sig)
    assert not protocol.signature_ok(b"key", b"body", None)


def _good() -> dict[str, object]:
    return {"record_id": "sale:A1:paid", "seq": 3, "day": "2024-05-01", "type": "sale",
            "version": 1, "sale": {"out_trade_no": "A1", "state": "paid", "amount": 100,
                                   "channel": "wechat"}}


@pytest.mark.parametrize(("change", "reason"), [
    ({"record_id": "has space"}, "record_id"),
    ({"seq": 0}, "seq"),
    ({"seq": True}, "seq"),
    ({"day": "2024-13-01"}, "day"),
    ({"type": "voucher"}, "unknown record type"),
    ({"type": "refund", "refund": {"out_trade_no": "A1", "out_refund_no": "A1R1",
                                   "state": "refunding", "amount": 1}}, "refund.state"),
    ({"type": "refund", "refund": {"out_trade_no": "A1", "out_refund_no": "A1R1",
                                   "state": "refunded", "amount": 0}}, "more than 0"),
    ({"version": 3}, "unsupported version 3"),
    ({"sale": None}, "'sale' object"),
    ({"sale": {"out_trade_no": "A1", "state": "paying", "amount": 1}}, "final state"),
    ({"sale": {"out_trade_no": "A1", "state": "paid", "amount": 1.5}}, "whole number"),
    ({"sale": {"out_trade_no": "A1", "state": "paid", "amount": -1}}, "not negative"),
    ({"type": "daily_summary", "summary": {"total": {}}}, "summary.total.paid"),
])
def test_a_bad_record_is_rejected_with_a_reason(change: dict[str, object], reason: str) -> None:
    result = protocol.check_record(_good() | change)
    assert isinstance(result, protocol.Rejected)
    assert reason in result.reason


@pytest.mark.parametrize(("batch", "why"), [
    ([], "JSON object"),
    ({"protocol": 2}, "protocol"),
    ({"protocol": 1, "store_id": "S 1", "terminal_id": "T1", "records": [{}]}, "store_id"),
    ({"protocol": 1, "store_id": "S1", "terminal_id": "T1", "records": []}, "records"),
])
def test_a_body_that_is_no_batch_is_refused_whole(batch: object, why: str) -> None:
    with pytest.raises(protocol.BatchError, match=why):
        protocol.parse_batch(batch)


def test_receivers_answer_per_record() -> None:
    good = protocol.check_record(_good())
    other = protocol.check_record(_good() | {"record_id": "sale:B:paid"})
    bad = protocol.Rejected("x", "why")
    assert isinstance(good, protocol.Record) and isinstance(other, protocol.Record)
    batch = protocol.Batch("S1", "T1", (good, bad, other, good))
    reply = answer(batch, {good.record_id})
    assert [r["status"] for r in reply["results"]] == ["accepted", "rejected", "duplicate",
                                                       "duplicate"]
    assert (reply["accepted"], reply["duplicate"], reply["rejected"]) == (1, 2, 1)


def test_settling_hqs_answer() -> None:
    rows = [_row(_sale(n), n) for n in (1, 2, 3, 4)]
    said = {"results": [
        {"record_id": rows[0].record_id, "status": "accepted"},
        {"record_id": rows[1].record_id, "status": "duplicate"},
        {"record_id": rows[2].record_id, "status": "rejected", "reason": "bad"},
    ]}
    settled = settle(rows, said)
    assert settled.acked == [1, 2] and settled.rejected == [(3, "bad")]
    assert settled.missing == 1  # row 4 was not mentioned: it stays unsent
    assert (settled.result.accepted, settled.result.duplicate) == (1, 1)
    with pytest.raises(HqProtocolError):
        settle(rows, ["not", "an", "answer"])


def test_one_row_per_sale_its_latest_and_in_key_order() -> None:
    def rec(out: str, seq: int, state: str) -> protocol.Record:
        record = protocol.check_record(_good() | {
            "record_id": f"sale:{out}:{state}", "seq": seq,
            "sale": {"out_trade_no": out, "state": state, "amount": 5}})
        assert isinstance(record, protocol.Record)
        return record

    later, earlier = rec("B", 9, "paid"), rec("B", 4, "needs_attention")
    other = rec("A", 5, "paid")
    assert latest_sales([later, earlier, other]) == [other, later]
    assert unique_records([later, later, other]) == [other, later]  # by record_id


def test_day_totals_across_terminals_against_their_summaries() -> None:
    rows = [StateRow("T01", "paid", 2, 300), StateRow("T01", "reversed", 1, 50),
            StateRow("T02", "paid", 1, 100)]
    summary = {"summary": {"total": {"paid": {"count": 2, "amount": 300},
                                     "reversed": {"count": 1, "amount": 50}}}}
    totals = day_totals("S1", "2024-05-01", rows, {"T01": json.dumps(summary)})
    assert (totals["paid_count"], totals["paid_amount"], totals["reversed_count"]) == (3, 400, 1)
    t01, t02 = totals["terminals"]
    assert (t01["terminal_id"], t01["matches_summary"], t02["matches_summary"]) == (
        "T01", True, None)


def test_a_daily_summary_carries_the_z_report() -> None:
    report = daily_report(date(2024, 5, 1), [_sale(1), _sale(2, State.REVERSED, 50)])
    payload = summary_payload(report, T0)
    total = payload["summary"]["total"]
    assert (payload["type"], payload["version"]) == ("daily_summary", 1)
    assert total["paid"] == {"count": 1, "amount": 1250} and total["net"] == 1250
    assert total["reversed"] == {"count": 1, "amount": 50}
    assert set(payload["summary"]["channels"]) == {"wechat"}
