# SPDX-License-Identifier: MIT
"""docs/hq-sync.schema.json describes the records the terminal really sends, and refuses
what the receiver refuses."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from posd.core import hq_protocol as protocol
from posd.hq.client import encode_batch
from posd.core.money import Fen
from posd.core.report import daily_report
from posd.core.hq_protocol import refund_record
from posd.core.refund import RefundState, new_refund
from posd.core.sale import Sale, State
from posd.store import OutboxRow, sale_record
from posd.sync import summary_payload

ROOT = Path(__file__).parents[2]
T0 = 1_714_554_000.0


@pytest.fixture(scope="module")
def schema() -> Draft202012Validator:
    text = (ROOT / "docs" / "hq-sync.schema.json").read_text(encoding="utf-8")
    Draft202012Validator.check_schema(json.loads(text))
    return Draft202012Validator(json.loads(text))


def _sales() -> list[Sale]:
    states = [State.PAID, State.DECLINED, State.REVERSED, State.NEEDS_ATTENTION,
              State.CANCELLED]
    return [Sale(out_trade_no=f"S001T01240501090000{n:06d}", amount=Fen(100 * n),
                 created_at=T0 + n, updated_at=T0 + n + 2, state=state, id=n,
                 channel=None if state is State.CANCELLED else "wechat",
                 auth_code_masked="1345...0001", paid_at=T0 + n if state is State.PAID else None,
                 decline_code="NOTENOUGH" if state is State.DECLINED else None)
            for n, state in enumerate(states, 1)]


def _batch() -> dict[str, object]:
    sales = _sales()
    rows = [OutboxRow(n, n, f"sale:{s.out_trade_no}:{s.state.value}", "sale",
                      json.dumps(sale_record(s)), int(s.amount), s.updated_at, None, None, None)
            for n, s in enumerate(sales, 1)]
    refund = replace(new_refund(sales[0], Fen(50), "returned", "S001T01R2405010900001", T0 + 9),
                     id=1, state=RefundState.REFUNDED, refunded_at=T0 + 10, updated_at=T0 + 10)
    rows.append(OutboxRow(8, 8, f"refund:{refund.out_refund_no}:refunded", "refund",
                          json.dumps(refund_record(refund)), 50, T0 + 10, None, None, None))
    summary = summary_payload(daily_report(date(2024, 5, 1), sales), T0 + 86400)
    rows.append(OutboxRow(9, 9, "daily:2024-05-01", "daily_summary", json.dumps(summary), 0,
                          T0 + 86400, None, None, None))
    return json.loads(encode_batch("S001", "T01", rows, UTC))


def test_what_the_terminal_sends_is_valid(schema: Draft202012Validator) -> None:
    batch = _batch()
    errors = [e.message for e in schema.iter_errors(batch)]
    assert errors == []
    records = batch["records"]
    assert isinstance(records, list)
    assert {r["type"] for r in records} == {"sale", "refund", "daily_summary"}
    assert all(not isinstance(protocol.check_record(r), protocol.Rejected) for r in records)


@pytest.mark.parametrize(("path", "value"), [
    (("seq",), 0), (("day",), "1 May"), (("type",), "voucher"), (("version",), 3),
    (("sale", "amount"), 1.5), (("sale", "amount"), -5), (("sale", "state"), "paying"),
    (("sale", "out_trade_no"), "has space"),
])
def test_schema_and_receiver_refuse_the_same_records(schema: Draft202012Validator,
                                                     path: tuple[str, ...], value: object) -> None:
    batch = _batch()
    record = batch["records"][0]  # type: ignore[index]
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    assert not schema.is_valid(batch)
    assert isinstance(protocol.check_record(record), protocol.Rejected)


def test_records_carry_the_z_reports_business_day() -> None:
    """With a 04:00 cut-off, a sale made at 02:00 belongs to the day before, at HQ too."""
    sale = _sales()[0]
    at_two = replace(sale, created_at=1_714_528_800.0)  # 2024-05-01 02:00 UTC
    row = OutboxRow(1, 1, "sale:x:paid", "sale", json.dumps(sale_record(at_two)), 100,
                    at_two.updated_at, None, None, None)
    calendar = json.loads(encode_batch("S001", "T01", [row], UTC))
    business = json.loads(encode_batch("S001", "T01", [row], UTC, cutoff_hour=4))
    assert calendar["records"][0]["day"] == "2024-05-01"
    assert business["records"][0]["day"] == "2024-04-30"


def test_sale_records_are_version_2_with_explicit_fields(schema: Draft202012Validator) -> None:
    """HQ's contract is a list of fields, not posd's internal row: no scheduling fields
    (next_at, queries, recalls, pay_maybe_arrived), the masked code under the API's name."""
    record = _batch()["records"][0]  # type: ignore[index]
    assert record["version"] == 2
    assert tuple(record["sale"]) == protocol.SALE_FIELDS
    assert record["sale"]["auth_code"] == "1345...0001"
    record["sale"]["next_at"] = 1.0  # a field version 2 does not have
    assert not schema.iter_errors(record) or not schema.is_valid({**_batch(), "records": [record]})


def test_a_version_1_record_is_still_accepted(schema: Draft202012Validator) -> None:
    """A terminal not yet upgraded sends its whole row, as version 1 did."""
    batch = _batch()
    record = batch["records"][0]  # type: ignore[index]
    record["version"] = 1
    sale = record["sale"]
    sale["auth_code_masked"] = sale.pop("auth_code")
    sale.update(next_action=None, next_at=None, queries=3, recalls=0, pay_attempts=1,
                reverse_attempts=0, pay_maybe_arrived=True, pay_sent_at=T0, last_pay_at=T0,
                deadline_at=T0 + 30)
    assert schema.is_valid(batch), [e.message for e in schema.iter_errors(batch)]
    accepted = protocol.check_record(record)
    assert isinstance(accepted, protocol.Record) and accepted.out_trade_no == sale["out_trade_no"]

