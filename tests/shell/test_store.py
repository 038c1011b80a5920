# SPDX-License-Identifier: MIT
"""The store on real SQLite files."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from posd.core import sale as m
from posd.core.effects import Outputs
from posd.core.errors import ConflictError, NotFoundError, StoreError
from posd.core.print_jobs import JobState
from posd.core.money import Fen
from posd.core.sale import Action, State
from posd.store import Store

T0 = 1_700_000_000.0


@pytest.fixture(name="store")
def _store(tmp_path: Path):
    store = Store.open(tmp_path / "posd.db")
    yield store
    store.close()


def make(order_ref=None, amount=1250):
    def build(seq: int) -> m.Sale:
        return m.new_sale(m.make_out_trade_no("S1", "T1", T0, seq), Fen(amount), T0,
                          order_ref=order_ref)
    return build


def test_wal_and_full_sync(store: Store) -> None:
    assert store.pragma("journal_mode") == "wal"
    assert store.pragma("synchronous") == 2  # FULL


def test_create_get_and_sequence(store: Store) -> None:
    a, created = store.create_sale(make(), order_ref=None, idempotency_key=None)
    b, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
    assert created and a.id != b.id and a.out_trade_no != b.out_trade_no
    assert store.get(a.id) == a


def test_sequence_survives_reopen(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db")
    first, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
    store.close()
    store = Store.open(tmp_path / "posd.db")
    second, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
    assert second.out_trade_no != first.out_trade_no
    assert store.get(first.id).out_trade_no == first.out_trade_no
    store.close()


def test_idempotency_key_returns_the_same_sale(store: Store) -> None:
    a, created_a = store.create_sale(make(), order_ref=None, idempotency_key="k1")
    b, created_b = store.create_sale(make(amount=1), order_ref=None, idempotency_key="k1")
    assert created_a and not created_b and a == b


def test_order_with_unresolved_or_paid_sale_is_refused(store: Store) -> None:
    a, _ = store.create_sale(make("O1"), order_ref="O1", idempotency_key=None)
    with pytest.raises(ConflictError, match="unresolved"):
        store.create_sale(make("O1"), order_ref="O1", idempotency_key=None)
    store.save(m.cancel(a, T0 + 1, m.Policy()))
    b, _ = store.create_sale(make("O1"), order_ref="O1", idempotency_key=None)
    paying = m.start_pay(b, "wechat", "1345…0001", T0, m.Policy())
    store.save(paying)
    store.save(m.on_result(paying, Action.PAY, m.Paid("42", Fen(1250)), T0 + 1, m.Policy()))
    with pytest.raises(ConflictError, match="already paid"):
        store.create_sale(make("O1"), order_ref="O1", idempotency_key=None)


def test_history_and_outbox_change_with_the_row(store: Store) -> None:
    a, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
    paying = store.save(m.start_pay(a, "wechat", "1345…0001", T0, m.Policy()))
    assert store.outbox_backlog()["count"] == 0
    paid = m.on_result(paying, Action.PAY, m.Paid("42", Fen(1250)), T0 + 1, m.Policy())
    store.save(paid, Action.PAY, "paid 42")
    store.save(paid, Action.PAY, "saved twice")  # the same final state is one record
    assert [e["state"] for e in store.events(a.id)] == ["awaiting_code", "paying", "paid", "paid"]
    assert store.outbox_backlog() == {"count": 1, "amount": 1250, "oldest_at": T0 + 1}


def test_a_final_state_its_receipt_and_its_hq_record_commit_together(tmp_path: Path) -> None:
    """The effects are written in the sale's own transaction: when one cannot be written
    (here a trigger refuses the print job, as a full disk would), the state is not either,
    and once it can, all three are there. Nothing is left for a restart to patch."""
    store = Store.open(tmp_path / "posd.db", outputs=Outputs(frozenset({State.PAID})))
    try:
        a, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
        paying = store.save(m.start_pay(a, "wechat", "1345…0001", T0, m.Policy()))
        paid = m.on_result(paying, Action.PAY, m.Paid("42", Fen(1250)), T0 + 1, m.Policy())
        store._db.execute("create trigger no_jobs before insert on print_jobs begin "  # noqa: SLF001
                          "select raise(abort, 'disk full'); end")
        with pytest.raises(StoreError, match="disk full"):
            store.save(paid, Action.PAY, "paid 42")
        assert store.get(a.id).state is State.PAYING
        assert store.outbox_backlog()["count"] == 0
        store._db.execute("drop trigger no_jobs")  # noqa: SLF001
        store.save(paid, Action.PAY, "paid 42")
        assert [j.key for j in store.print_jobs(JobState.QUEUED)] == [f"receipt:{a.id}:paid"]
        assert store.outbox_backlog()["count"] == 1
    finally:
        store.close()


def test_unfinished_lists_only_work_to_do(store: Store) -> None:
    a, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
    b, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
    store.save(m.cancel(b, T0, m.Policy()))
    assert [s.id for s in store.unfinished()] == [a.id]


def test_only_masked_codes_reach_the_file(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "posd.db")
    a, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
    store.save(m.start_pay(a, "wechat", "1345…0001", T0, m.Policy()))
    store.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"134567890123450001" not in raw


def test_missing_sale(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.get(999)


def test_outbox_payload_is_versioned_json(store: Store) -> None:
    a, _ = store.create_sale(make(), order_ref=None, idempotency_key=None)
    store.save(m.cancel(a, T0, m.Policy()))
    row = store._db.execute("select record_id, payload from outbox").fetchone()  # noqa: SLF001
    payload = json.loads(row[1])
    assert row[0] == f"sale:{a.out_trade_no}:cancelled"
    assert payload["version"] == 2 and payload["sale"]["state"] == "cancelled"
    assert "next_at" not in payload["sale"] and "auth_code" in payload["sale"]
