# SPDX-License-Identifier: MIT
"""What must happen when a sale changes, besides the change itself. [core]

A sale that reaches a final state gets a receipt (when the till prints that state) and a
record for HQ (when the till syncs). Both are decided here, once, from the change alone --
``(state before, sale after)`` -- and written by the store in the same transaction as the
sale (``Store.save``): a crash leaves either the new state with its print job and outbox
record, or neither. Nothing has to be patched after a restart, and the print queue and the
HQ outbox fill the same way.

Why not in the transition table (``posd.core.sale.RULES``): an effect depends on where the
sale arrives, never on which answer brought it there, and a cashier cancel or a person's
resolution arrives in a final state the same way a channel answer does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from posd.core.hq_protocol import refund_record, sale_record
from posd.core.print_jobs import PrintJob, receipt_job, refund_job
from posd.core.refund import Refund, RefundState
from posd.core.sale import PRINTABLE, Sale, State


@dataclass(frozen=True, slots=True)
class PrintReceipt:
    """Queue the sale's receipt (or slip): one job per sale and final state."""

    job: PrintJob


@dataclass(frozen=True, slots=True)
class TellHq:
    """Queue an HQ record (``record_id`` is HQ's idempotency key)."""

    record_id: str
    kind: str
    payload: dict[str, Any] = field(compare=False)
    amount_fen: int
    created_at: float


Effect = PrintReceipt | TellHq


def receipt_states(*, declined: bool = True, reversed_: bool = True,
                   needs_attention: bool = True) -> frozenset[State]:
    """The final states that get a receipt or slip (``[receipt] print_*``): paid always;
    cancelled never (no code was sent, there is nothing to tell the customer)."""
    states = {State.PAID}
    for state, wanted in ((State.DECLINED, declined), (State.REVERSED, reversed_),
                          (State.NEEDS_ATTENTION, needs_attention)):
        if wanted:
            states.add(state)
    return frozenset(states) & PRINTABLE


@dataclass(frozen=True, slots=True)
class Outputs:
    """What this till does with a finished sale: the states it prints (empty: no printer),
    and whether it tells HQ (``hq.url`` set: a till that never syncs grows no outbox)."""

    receipts: frozenset[State] = frozenset()
    hq: bool = True
    #: a slip for every refund that ends (refunded, failed, or with a person)
    refund_slips: bool = False


def of_change(before: State | None, after: Sale, outputs: Outputs) -> tuple[Effect, ...]:
    """The effects of ``after`` replacing a sale that was in ``before`` (None: a new sale).

    Only arriving in a final state has effects; saving a final sale again (a late answer
    counted) has none, and a sale a person moves from needs_attention to paid gets the
    paid receipt and HQ record as well.

    >>> from posd.core.sale import new_sale
    >>> from posd.core.money import Fen
    >>> sale = new_sale("S1T1X1", Fen(100), 0.0)
    >>> of_change(State.AWAITING_CODE, sale, Outputs(frozenset({State.PAID})))
    ()
    """
    if not after.final or before is after.state:
        return ()
    found: list[Effect] = []
    if after.state in outputs.receipts:
        found.append(PrintReceipt(receipt_job(after.id, after.state.value, after.updated_at)))
    if outputs.hq:
        found.append(TellHq(f"sale:{after.out_trade_no}:{after.state.value}", "sale",
                            sale_record(after), int(after.amount), after.updated_at))
    return tuple(found)


def of_refund_change(before: RefundState | None, after: Refund,
                     outputs: Outputs) -> tuple[Effect, ...]:
    """The effects of a refund change: arriving in a final state prints its slip (DESIGN §9
    rule 4: every refund prints one) and tells HQ; nothing else has effects."""
    if not after.final or before is after.state:
        return ()
    found: list[Effect] = []
    if outputs.refund_slips:
        found.append(PrintReceipt(refund_job(after.id, after.sale_id, after.state.value,
                                             after.updated_at)))
    if outputs.hq:
        found.append(TellHq(f"refund:{after.out_refund_no}:{after.state.value}", "refund",
                            refund_record(after), int(after.amount), after.updated_at))
    return tuple(found)
