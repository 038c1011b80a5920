# SPDX-License-Identifier: MIT
"""The terminal's outbox to a real receiver on loopback, over SQLite and PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from posd.core import hq_protocol as protocol
from posd.hq.client import HqAuthError, HqUnavailable, PushResult, encode_batch
from posd.core.sale import State
from posd.store import Store
from tests.hq_fixtures import (
    DAY,
    STORE,
    T0,
    TERMINAL,
    Hq,
    add_sales,
    final_sale,
    hq,
    hq_counts,
    hq_db,
    make_syncer,
    store,
)

__all__ = ["hq", "hq_db", "store"]  # fixtures


def test_every_final_sale_reaches_hq_once_with_day_totals(hq: Hq, store: Store) -> None:
    add_sales(store, [final_sale(1, State.PAID, 1250), final_sale(2, State.PAID, 800),
                      final_sale(3, State.DECLINED, 500), final_sale(4, State.REVERSED, 300),
                      final_sale(5, State.NEEDS_ATTENTION, 900)])
    result = make_syncer(store, hq.url).push_all()
    assert (result.sent, result.accepted, result.rejected) == (5, 5, ())
    assert store.outbox_backlog()["count"] == 0
    totals = hq.day()
    assert (totals["paid_count"], totals["paid_amount"]) == (2, 2050)
    assert (totals["reversed_count"], totals["declined_count"]) == (1, 1)
    assert totals["needs_attention_count"] == 1
    assert [t["terminal_id"] for t in totals["terminals"]] == [TERMINAL]
    assert hq.day("2024-05-02")["paid_count"] == 0


def test_a_sale_resolved_later_is_counted_once_in_its_last_state(hq: Hq, store: Store) -> None:
    syncer = make_syncer(store, hq.url)
    add_sales(store, [final_sale(1, State.NEEDS_ATTENTION, 700)])
    syncer.push_all()
    saved = store.find()[0]  # a person found the trade paid
    store.save(replace(saved, state=State.PAID, updated_at=saved.updated_at + 60), None,
               "resolved by a person")
    syncer.push_all()
    totals = hq.day()
    assert (totals["paid_count"], totals["paid_amount"], totals["needs_attention_count"]) == (
        1, 700, 0)
    assert hq_counts(hq) == {"records": 2, "sales": 1}


def test_replayed_duplicated_and_reordered_batches_are_stored_once(hq: Hq, store: Store) -> None:
    add_sales(store, [final_sale(n, State.PAID, 100 * n) for n in range(1, 7)])
    rows = store.outbox_unsent(100)
    first, second = encode_batch(STORE, TERMINAL, rows[:3], None), encode_batch(
        STORE, TERMINAL, rows[3:], None)
    client = make_syncer(store, hq.url).client
    assert _statuses(client.post_batch(second)) == {protocol.ACCEPTED}  # out of order
    assert _statuses(client.post_batch(second)) == {protocol.DUPLICATE}  # replayed
    assert _statuses(client.post_batch(first)) == {protocol.ACCEPTED}
    doubled = json.loads(first)
    doubled["records"] *= 2  # every record twice in one batch
    answer = client.post_batch(json.dumps(doubled).encode())
    assert _statuses(answer) == {protocol.DUPLICATE}
    result = make_syncer(store, hq.url).push_all()  # the terminal never heard: all duplicates
    assert (result.accepted, result.duplicate) == (0, 6)
    assert hq.day()["paid_amount"] == 2100
    assert hq_counts(hq) == {"records": 6, "sales": 6}


def _statuses(answer: object) -> set[str]:
    assert isinstance(answer, dict)
    return {r["status"] for r in answer["results"]}


def test_a_wrong_token_is_its_own_error_and_keeps_the_records(hq: Hq, store: Store) -> None:
    add_sales(store, [final_sale(1)])
    with pytest.raises(HqAuthError, match="bearer token .*hq.token_file"):
        make_syncer(store, hq.url, token="not-the-token-0123456789").push_all()
    with pytest.raises(HqAuthError, match="signature .*hq.hmac_key_file"):
        make_syncer(store, hq.url, key=b"another key").push_all()
    assert store.outbox_backlog()["count"] == 1
    assert hq_counts(hq)["records"] == 0


def test_hq_down_is_its_own_error_and_keeps_the_records(store: Store, closed_port: int) -> None:
    add_sales(store, [final_sale(1)])
    with pytest.raises(HqUnavailable, match="unreachable"):
        make_syncer(store, f"http://127.0.0.1:{closed_port}").push_all()
    assert store.outbox_backlog()["count"] == 1


def test_a_rejected_record_is_quarantined_and_the_rest_go_on(hq: Hq, store: Store) -> None:
    add_sales(store, [final_sale(1)])
    future = {"type": "sale", "version": 3, "sale": {"out_trade_no": "X1", "state": "paid",
                                                      "amount": 5, "created_at": T0}}
    assert store.outbox_add("sale:X1:paid", "sale", future, 5, T0)
    add_sales(store, [final_sale(2)])
    syncer = make_syncer(store, hq.url)
    result = syncer.push_all()
    assert (result.accepted, len(result.rejected)) == (2, 1)
    assert result.rejected[0][0] == "sale:X1:paid"
    assert "unsupported version 3" in result.rejected[0][1]
    assert syncer.push_all() == PushResult()  # not sent again...
    status = syncer.status_of(store)
    assert status["backlog"]["count"] == 1  # ...but kept, and shown
    assert status["rejected"][0]["record_id"] == "sale:X1:paid"
    assert store.outbox_requeue_rejected() == 1
    assert len(syncer.push_all().rejected) == 1


def test_daily_summary_goes_to_hq_and_matches(hq: Hq, store: Store) -> None:
    add_sales(store, [final_sale(1, State.PAID, 1000), final_sale(2, State.REVERSED, 50)])
    syncer = make_syncer(store, hq.url, clock=lambda: T0 + 86400)
    assert syncer.enqueue_summaries() == 1
    assert syncer.enqueue_summaries() == 0  # one per day
    syncer.push_all()
    terminal = hq.get(f"/v1/stores/{STORE}/terminals/{TERMINAL}/days/{DAY}")
    assert terminal["summary"]["paid_amount"] == 1000
    assert terminal["matches_summary"] is True


def test_day_totals_need_the_token(hq: Hq) -> None:
    response = requests.get(f"{hq.url}/v1/stores/{STORE}/days/{DAY}", timeout=5)
    assert response.status_code == 401
    assert requests.get(f"{hq.url}/v1/health", timeout=5).json()["status"] == "ok"


def test_pruning_keeps_what_hq_has_not_acknowledged(hq: Hq, store: Store) -> None:
    add_sales(store, [final_sale(1), final_sale(2)])
    later = make_syncer(store, hq.url, clock=lambda: T0 + 400 * 86400)
    assert later.prune() == 0  # a year later, nothing acknowledged: nothing deleted
    make_syncer(store, hq.url, clock=lambda: T0).push_all()
    assert later.prune() == 2
    assert later.prune() == 0


def test_outbox_sequence_numbers_have_no_gaps(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db")
    add_sales(store, [final_sale(1)])
    assert not store.outbox_add("sale:" + final_sale(1).out_trade_no + ":paid", "sale", {}, 0, T0)
    add_sales(store, [final_sale(2)])
    store.close()
    conn = sqlite3.connect(tmp_path / "posd.db")
    assert [r[0] for r in conn.execute("select seq from outbox order by id")] == [1, 2]
    conn.close()


def test_a_record_with_a_nul_character_is_kept(hq: Hq, store: Store) -> None:
    # U+0000 in a string: SQLite keeps any text, and PostgreSQL's json keeps it escaped
    # (jsonb could not: a database whose body is jsonb refuses the record alone, and the
    # receiver's one-at-a-time path is tested in test_hq_postgres.py)
    poisoned = replace(final_sale(2), subject="nul \x00 inside")
    add_sales(store, [final_sale(1), poisoned, final_sale(3)])
    result = make_syncer(store, hq.url).push_all()
    assert (result.accepted, result.rejected) == (3, ())


def test_refunds_reach_hq_and_lower_the_days_net(hq: Hq, store: Store) -> None:
    """A refund's final state is an outbox record of type ``refund`` written with it; HQ
    counts the refunded ones in the day's refund_count, refund_amount and net_amount."""
    from posd.core import refund as r

    (sale,) = add_sales(store, [final_sale(1, State.PAID, 5000)])

    def make(amount: int, n: int) -> object:
        def decide(found: object, done: list[r.Refund], seq: int) -> r.Refund:
            return r.new_refund(sale, r.Fen(amount), "returned", f"S001T01R{n}", T0 + 5)
        return decide

    done, _ = store.create_refund(sale.id, make(1200, 1))  # type: ignore[arg-type]
    store.save_refund(replace(done, state=r.RefundState.REFUNDED, refunded_at=T0 + 6,
                              updated_at=T0 + 6, next_action=None, next_at=None))
    failed, _ = store.create_refund(sale.id, make(300, 2))  # type: ignore[arg-type]
    store.save_refund(replace(failed, state=r.RefundState.REFUND_FAILED, updated_at=T0 + 7,
                              next_action=None, next_at=None))
    result = make_syncer(store, hq.url).push_all()
    assert (result.sent, result.accepted, result.rejected) == (3, 3, ())
    totals = hq.day()
    assert (totals["paid_amount"], totals["refund_count"], totals["refund_amount"],
            totals["net_amount"]) == (5000, 1, 1200, 3800)
    assert totals["terminals"][0]["refund_amount"] == 1200
    assert hq_counts(hq) == {"records": 3, "sales": 1}  # a refund is not a sale


def test_reconciliations_reach_hq_and_show_in_the_terminals_day(hq: Hq, tmp_path: Path) -> None:
    """Each run of a bill day, and each resolution, is a ``reconciliation`` record (the bill
    day is the envelope's day); HQ shows the latest per terminal and channel."""
    from datetime import date

    from posd.core.bills import Bill, BillRow, RowKind
    from posd.core.effects import Outputs
    from posd.core.money import Fen
    from posd.core.reconcile import as_json, reconcile

    day = date.fromisoformat(DAY)
    row = BillRow("wechat", RowKind.PAYMENT, T0, f"{STORE}{TERMINAL}261130040000000009",
                  "4200" + "0" * 24, Fen(777))
    result = reconcile(Bill("wechat", day, (row,)), [], [], store_id=STORE,
                       terminal_id=TERMINAL, neighbours={})
    till = Store.open(tmp_path / "till.db", outputs=Outputs(hq=True))
    try:
        till.save_reconciliation("wechat", DAY, status=result.status, run_at=T0,
                                 result=as_json(result), store_id=STORE, terminal_id=TERMINAL)
        assert make_syncer(till, hq.url).push_all().accepted == 1
        shown = hq.day()["terminals"][0]["reconciliation"]["wechat"]
        assert (shown["status"], shown["unresolved"], shown["money_taken"]) == (
            "differences", 1, 1)
        (item,) = till.open_differences()
        till.resolve_difference(item["id"], "refunded by hand", T0 + 60, store_id=STORE,
                                terminal_id=TERMINAL)
        pushed = make_syncer(till, hq.url).push_all()
        assert (pushed.accepted, pushed.rejected) == (1, ())
        shown = hq.day()["terminals"][0]["reconciliation"]["wechat"]
        assert (shown["unresolved"], shown["money_taken"]) == (0, 0)
    finally:
        till.close()
