# SPDX-License-Identifier: MIT
"""The database's schema, as numbered migrations (sqlite-utils), and the SQL that reads it
the way the schema was built for: the open sales' partial index, the backlog counters."""


from __future__ import annotations


from collections.abc import Callable

from sqlite_utils import Database
from sqlite_utils.migrations import Migrations

from posd.core.sale import OPEN, UNRESOLVED, State

migrations = Migrations("posd")

#: One paid or unresolved sale per order (posd.core.sale's groups, as stored strings).
TAKEN_STATES = tuple(s.value for s in State if s is State.PAID or s in UNRESOLVED)


@migrations(name="001_sales")
def _001_sales(db: Database) -> None:
    db.table("sales").create(
        {
            "id": int, "out_trade_no": str, "order_ref": str, "amount_fen": int,
            "currency": str, "channel": str, "state": str, "auth_code_masked": str,
            "subject": str, "created_at": float, "updated_at": float, "pay_sent_at": float, "last_pay_at": float,
            "deadline_at": float, "paid_at": float, "next_action": str, "next_at": float,
            "pay_attempts": int, "queries": int, "reverse_attempts": int, "recalls": int,
            "pay_maybe_arrived": int, "refunded": int, "channel_trade_no": str,
            "decline_code": str, "message": str, "idempotency_key": str,
        },
        pk="id",
        not_null={"out_trade_no", "amount_fen", "state", "created_at"},
    )
    db.table("sales").create_index(["out_trade_no"], unique=True)
    db.table("sales").create_index(["idempotency_key"], unique=True)
    db.table("sales").create_index(["order_ref"])
    db.table("sales").create_index(["state"])
    db.table("sales").create_index(["created_at"])
    db.table("sale_events").create(
        {"id": int, "sale_id": int, "at": float, "state": str, "action": str, "detail": str,
         "message": str},
        pk="id",
        foreign_keys=[("sale_id", "sales")],
    )
    db.table("sale_events").create_index(["sale_id"])
    db.table("outbox").create(
        {"id": int, "record_id": str, "kind": str, "payload": str, "amount_fen": int,
         "created_at": float, "acked_at": float},
        pk="id",
    )
    db.table("outbox").create_index(["record_id"], unique=True)
    db.table("counters").create({"name": str, "value": int}, pk="name")


@migrations(name="002_print_jobs")
def _002_print_jobs(db: Database) -> None:
    """posd.devices.print_queue's durable queue: receipts and reports waiting for the printer."""
    db.table("print_jobs").create(
        {"id": int, "job_key": str, "kind": str, "sale_id": int, "day": str, "reprint": int,
         "state": str, "attempts": int, "created_at": float, "next_at": float,
         "done_at": float, "last_error": str},
        pk="id",
        not_null={"kind", "state", "created_at", "next_at"},
    )
    db.table("print_jobs").create_index(["job_key"], unique=True)  # NULL keys never clash
    db.table("print_jobs").create_index(["state", "next_at"])


#: The Z-report's rollup step (migration 002_sale_totals), in seconds.
TOTALS_BUCKET_S = 900

_ADD_TOTALS = (
    "insert into sale_totals (bucket, channel, state, count, amount) values "
    "(cast({row}.created_at / 900 as integer), coalesce({row}.channel, ''), {row}.state, "
    "{n}, {n} * {row}.amount_fen) on conflict (bucket, channel, state) do update set "
    "count = count + excluded.count, amount = amount + excluded.amount;"
)


@migrations(name="002_sale_totals")
def _002_sale_totals(db: Database) -> None:
    """Sales counted and summed per 15 minutes of created_at, channel and state, by triggers
    in each sale's own transaction: a day's Z-report reads ~100 rows however many sales the
    day had (bench/z_report.py: 1,000,000 in one day). 15 minutes divides every UTC offset in
    use and every whole-hour cut-off, so a business day is a whole number of buckets. The
    (state, created_at) index finds a day's needs_attention sales without reading the day.
    """
    db.execute("create table sale_totals (bucket integer not null, channel text not null, "
               "state text not null, count integer not null, amount integer not null, "
               "primary key (bucket, channel, state))")
    db.execute("create trigger sale_totals_insert after insert on sales begin "
               f"{_ADD_TOTALS.format(row='new', n=1)} end")
    db.execute("create trigger sale_totals_update after update of created_at, channel, state, "
               "amount_fen on sales when old.created_at is not new.created_at or old.channel "
               "is not new.channel or old.state is not new.state or old.amount_fen is not "
               f"new.amount_fen begin {_ADD_TOTALS.format(row='old', n=-1)} "
               f"{_ADD_TOTALS.format(row='new', n=1)} end")
    db.execute("create trigger sale_totals_delete after delete on sales begin "
               f"{_ADD_TOTALS.format(row='old', n=-1)} end")
    db.execute("insert into sale_totals select cast(created_at / 900 as integer), "
               "coalesce(channel, ''), state, count(*), sum(amount_fen) from sales "
               "group by 1, 2, 3")
    db.table("sales").create_index(["state", "created_at"])


@migrations(name="003_outbox_sync")
def _003_outbox_sync(db: Database) -> None:
    """HQ sync (posd.sync): a per-terminal sequence number on every outbox row, quarantine.

    ``seq`` is set by a trigger, so every writer of the outbox (final sales here, daily
    summaries in posd.sync) gets the next number inside its own transaction, and an insert
    ignored as a duplicate leaves no gap. Rows already there are numbered in insertion order.
    """
    outbox = db.table("outbox")
    outbox.add_column("seq", int)
    outbox.add_column("rejected_at", float)
    outbox.add_column("reject_reason", str)
    db.execute("update outbox set seq = id")
    db.execute("insert or replace into counters(name, value) "
               "select 'outbox_seq', coalesce(max(seq), 0) from outbox")
    outbox.create_index(["seq"], unique=True)
    outbox.create_index(["acked_at"])
    db.execute("create index outbox_unsent on outbox(seq) "
               "where acked_at is null and rejected_at is null")
    db.execute(
        "create trigger outbox_seq after insert on outbox when new.seq is null begin "
        "update counters set value = value + 1 where name = 'outbox_seq'; "
        "update outbox set seq = (select value from counters where name = 'outbox_seq') "
        "where id = new.id; end"
    )


#: The states that still need work or a person: few rows however old the store is. One
#: partial index holds them (004_open_sales); queries name it with INDEXED BY and repeat its
#: WHERE literally, because after ANALYZE the planner would rather scan 700,000 rows by
#: ``state`` (most of them "paid") than trust a plain index (55 ms a scan, measured).
OPEN_STATES = tuple(s for s in State if s in OPEN)
OPEN_WHERE = f"state in ({', '.join(repr(s.value) for s in OPEN_STATES)})"
OPEN_INDEX = "indexed by sales_open"


def _backlog_amount(row: str) -> str:
    """Money that moved, for the HQ backlog: a paid sale's amount (a refund's, later)."""
    return f"(case when {row}.kind = 'sale' and {row}.record_id like '%:paid' then " \
           f"{row}.amount_fen else 0 end)"


@migrations(name="004_open_sales_and_backlog")
def _004_open_sales_and_backlog(db: Database) -> None:
    """What /v1/health reads, kept as cheap on a year-old store as on an empty one: the open
    sales by a partial index, the HQ backlog (count, money) by triggers in each outbox
    writer's own transaction, its oldest record by a partial index on what is unsent."""
    db.execute(f"create index sales_open on sales(state, id) where {OPEN_WHERE}")
    db.execute("create index outbox_pending on outbox(seq) where acked_at is null")
    db.execute("create index outbox_quarantine on outbox(seq) "
               "where acked_at is null and rejected_at is not null")
    db.execute("insert or replace into counters(name, value) select 'backlog_count', count(*) "
               "from outbox where acked_at is null")
    db.execute("insert or replace into counters(name, value) select 'backlog_amount', "
               f"coalesce(sum({_backlog_amount('outbox')}), 0) from outbox "
               "where acked_at is null")
    _backlog_triggers(db, _backlog_amount)


def _backlog_triggers(db: Database, amount: Callable[[str], str]) -> None:
    """The HQ backlog's counters, kept by triggers in each outbox writer's transaction."""
    for name, row, sign, when in (
        ("insert", "new", "+", "new.acked_at is null"),
        ("delete", "old", "-", "old.acked_at is null"),
    ):
        db.execute(
            f"create trigger outbox_backlog_{name} after {name} on outbox when {when} begin "
            f"update counters set value = value {sign} 1 where name = 'backlog_count'; "
            f"update counters set value = value {sign} {amount(row)} "
            "where name = 'backlog_amount'; end")
    db.execute(
        "create trigger outbox_backlog_ack after update of acked_at on outbox when "
        "(old.acked_at is null) != (new.acked_at is null) begin "
        "update counters set value = value + (case when new.acked_at is null then 1 else -1 "
        "end) where name = 'backlog_count'; "
        "update counters set value = value + (case when new.acked_at is null then 1 else -1 "
        f"end) * {amount('new')} where name = 'backlog_amount'; end")


#: Refunds with work to do or a person to act: few however old the store is (005_refunds).
REFUNDS_OPEN_WHERE = "state in ('refunding', 'needs_attention')"


@migrations(name="005_refunds")
def _005_refunds(db: Database) -> None:
    """Refunds (posd.core.refund): one row each plus an append-only history, written ahead of
    every request like sales; the open ones by a partial index; a refund slip is a print job
    of its own (``refund_id``); a refund reported to HQ counts in the backlog's money."""
    db.table("refunds").create(
        {"id": int, "sale_id": int, "amount_fen": int, "reason": str, "state": str,
         "out_refund_no": str, "channel": str, "out_trade_no": str, "channel_refund_no": str,
         "message": str, "created_at": float, "refunded_at": float, "updated_at": float,
         "next_action": str, "next_at": float, "attempts": int, "queries": int,
         "fail_code": str, "idempotency_key": str},
        pk="id",
        not_null={"sale_id", "amount_fen", "state", "out_refund_no", "created_at"},
        foreign_keys=[("sale_id", "sales")],
    )
    refunds = db.table("refunds")
    refunds.create_index(["out_refund_no"], unique=True)
    refunds.create_index(["idempotency_key"], unique=True)
    refunds.create_index(["sale_id"])
    refunds.create_index(["created_at"])
    refunds.create_index(["refunded_at"])
    db.execute(f"create index refunds_open on refunds(id) where {REFUNDS_OPEN_WHERE}")
    db.table("refund_events").create(
        {"id": int, "refund_id": int, "at": float, "state": str, "action": str, "detail": str,
         "message": str},
        pk="id",
        foreign_keys=[("refund_id", "refunds")],
    )
    db.table("refund_events").create_index(["refund_id"])
    db.table("print_jobs").add_column("refund_id", int)
    for name in ("insert", "delete", "ack"):
        db.execute(f"drop trigger outbox_backlog_{name}")
    _backlog_triggers(db, _money_moved)


def _money_moved(row: str) -> str:
    """The backlog's money: a paid sale's amount, a refunded refund's."""
    return (f"(case when ({row}.kind = 'sale' and {row}.record_id like '%:paid') or "
            f"({row}.kind = 'refund' and {row}.record_id like '%:refunded') then "
            f"{row}.amount_fen else 0 end)")


#: Differences of a reconciliation no person has resolved yet (006_reconciliations).
DIFFERENCES_OPEN_WHERE = "resolved_at is null"


@migrations(name="006_reconciliations")
def _006_reconciliations(db: Database) -> None:
    """Reconciliations (posd.core.reconcile): one row per channel and bill day with the
    result as JSON, and one row per difference so that a manager can resolve it; the
    unresolved ones by a partial index (what /v1/health reads)."""
    db.table("reconciliations").create(
        {"id": int, "channel": str, "day": str, "status": str, "run_at": float,
         "bill_file": str, "detail": str, "result": str, "attempts": int},
        pk="id", not_null={"channel", "day", "status", "run_at"},
    )
    db.table("reconciliations").create_index(["channel", "day"], unique=True)
    db.table("reconciliations").create_index(["day"])
    db.execute("create index reconciliations_pending on reconciliations(day) "
               "where status in ('waiting', 'held')")
    db.table("reconciliation_differences").create(
        {"id": int, "reconciliation_id": int, "key": str, "class": str, "money_taken": int,
         "payload": str, "found_at": float, "resolved_at": float, "resolved_note": str},
        pk="id", not_null={"reconciliation_id", "key", "class", "payload"},
        foreign_keys=[("reconciliation_id", "reconciliations")],
    )
    db.table("reconciliation_differences").create_index(["reconciliation_id", "key"],
                                                        unique=True)
    db.execute("create index differences_open on reconciliation_differences(id) "
               f"where {DIFFERENCES_OPEN_WHERE}")
