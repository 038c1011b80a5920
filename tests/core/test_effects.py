# SPDX-License-Identifier: MIT
"""posd.core.effects: what a change of a sale brings with it, decided from the change alone."""

from dataclasses import replace

from posd.core import effects as fx
from posd.core import sale as m
from posd.core.money import Fen
from posd.core.sale import State

T0 = 1_700_000_000.0
ALL = fx.Outputs(fx.receipt_states(), hq=True)


def _sale(state: State) -> m.Sale:
    return replace(m.new_sale("S1T1X1", Fen(1250), T0), id=7, state=state, updated_at=T0 + 5)


def test_arriving_in_a_final_state_prints_and_tells_hq() -> None:
    receipt, record = fx.of_change(State.CONFIRMING, _sale(State.PAID), ALL)
    assert isinstance(receipt, fx.PrintReceipt) and receipt.job.key == "receipt:7:paid"
    assert receipt.job.created_at == T0 + 5
    assert isinstance(record, fx.TellHq) and record.record_id == "sale:S1T1X1:paid"
    assert record.payload["sale"]["state"] == "paid" and record.amount_fen == 1250


def test_no_effect_without_arriving() -> None:
    assert fx.of_change(State.PAYING, _sale(State.CONFIRMING), ALL) == ()
    assert fx.of_change(State.PAID, _sale(State.PAID), ALL) == ()  # saved again
    assert fx.of_change(None, _sale(State.AWAITING_CODE), ALL) == ()


def test_outputs_choose_what_a_till_does() -> None:
    cancelled = fx.of_change(State.AWAITING_CODE, _sale(State.CANCELLED), ALL)
    assert [type(e) for e in cancelled] == [fx.TellHq]  # never a slip for a cancel
    quiet = fx.Outputs(fx.receipt_states(declined=False), hq=False)
    assert fx.of_change(State.PAYING, _sale(State.DECLINED), quiet) == ()
    assert len(fx.of_change(State.NEEDS_ATTENTION, _sale(State.PAID), quiet)) == 1
