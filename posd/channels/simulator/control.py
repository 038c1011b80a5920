# SPDX-License-Identifier: MIT
"""The ``/_sim/`` control endpoints: JSON in, JSON out, mirrored by :class:`Simulator` methods.

| method and path       | body                                                    |
|-----------------------|---------------------------------------------------------|
| ``GET /_sim/``        | what this simulator is: channels, sandbox codes, faults |
| ``GET /_sim/ledger``  | ``{"trades": [...], "calls": {...}, "violations": [...]}`` |
| ``GET /_sim/faults``  | faults still queued                                     |
| ``POST /_sim/faults`` | ``{"kind", "path"?, "count"?, "seconds"?, "process"?}``  |
| ``POST /_sim/script`` | ``{"auth_code", "outcome", "confirm_delay_s"?, "reverse_retries"?}`` |
| ``POST /_sim/script_refund`` | ``{"out_trade_no", "outcome", "channel"?}``: the trade's next refund |
| ``POST /_sim/reset``  | forget trades, scripts and faults                       |

Answers are 200 with JSON, 400 ``{"error": ...}`` for a bad body, 404 for anything else. The
server answers 403 to any peer that is not on the loopback interface.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Protocol

from posd.channels.simulator.faults import FaultKind, parse_fault
from posd.channels.simulator.ledger import Outcome, RefundOutcome, Trade, Violation

Answer = tuple[int, dict[str, object]]


class Controlled(Protocol):
    """What the control endpoints ask of the simulator (``server.Simulator`` is one): the
    server imports this module, never the other way round."""

    def describe(self) -> dict[str, object]: ...
    def ledger(self) -> list[dict[str, object]]: ...
    def calls(self) -> dict[str, dict[str, dict[str, int]]]: ...
    def violations(self) -> list[dict[str, object]]: ...
    def faults(self) -> list[dict[str, object]]: ...
    def add_fault(self, kind: FaultKind | str, *, path: str = "*", count: int = 1,
                  seconds: float | None = None, process: bool = True) -> None: ...
    def script(self, auth_code: str, outcome: Outcome | str, *,
               confirm_delay_s: float | None = None, reverse_retries: int = 2) -> None: ...
    def script_refund(self, out_trade_no: str, outcome: RefundOutcome | str, *,
                      channel: str = "wechat") -> None: ...
    def set_round_trip(self, seconds: float) -> None: ...
    def set_chaos(self, rate: float, *, kinds: tuple[FaultKind | str, ...] | None = None,
                  seed: int | None = None) -> None: ...
    @property
    def chaos(self) -> dict[str, object]: ...
    @property
    def round_trip_s(self) -> float: ...
    def edit_bill(self, channel: str, kind: str, *, out_trade_no: str = "",
                  amount: int | None = None, at: float | None = None
                  ) -> dict[str, object]: ...
    def reset(self) -> None: ...


def handle_control(sim: Controlled, method: str, path: str, body: bytes) -> Answer:
    """Answer one control request: (HTTP status, JSON-able payload)."""
    route = (method, path.rstrip("/"))
    try:
        match route:
            case ("GET", "/_sim"):
                return 200, sim.describe()
            case ("GET", "/_sim/ledger"):
                return 200, {
                    "trades": sim.ledger(),
                    "calls": sim.calls(),
                    "violations": sim.violations(),
                }
            case ("GET", "/_sim/faults"):
                return 200, {"faults": sim.faults()}
            case ("POST", "/_sim/faults"):
                return 200, _add_fault(sim, _json_object(body))
            case ("POST", "/_sim/script"):
                return 200, _script(sim, _json_object(body))
            case ("POST", "/_sim/script_refund"):
                return 200, _script_refund(sim, _json_object(body))
            case ("GET", "/_sim/latency"):
                return 200, {"round_trip_ms": round(sim.round_trip_s * 1000, 3)}
            case ("POST", "/_sim/latency"):
                return 200, _latency(sim, _json_object(body))
            case ("GET", "/_sim/chaos"):
                return 200, sim.chaos
            case ("POST", "/_sim/chaos"):
                return 200, _chaos(sim, _json_object(body))
            case ("POST", "/_sim/bill"):
                return 200, {"ok": True, "edit": _edit_bill(sim, _json_object(body))}
            case ("POST", "/_sim/reset"):
                sim.reset()
                return 200, {"ok": True}
            case _:
                return 404, {"error": f"no control endpoint {method} {path}"}
    except ValueError as err:
        return 400, {"error": str(err)}


def _json_object(body: bytes) -> Mapping[str, object]:
    try:
        payload = json.loads(body or b"{}")
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"body is not JSON: {err}") from err
    if not isinstance(payload, dict):
        raise ValueError("body must be a JSON object")
    return payload


def _add_fault(sim: Controlled, payload: Mapping[str, object]) -> dict[str, object]:
    fault, count = parse_fault(payload)
    sim.add_fault(
        fault.kind, path=fault.path, count=count, seconds=fault.seconds, process=fault.process
    )
    return {"ok": True, "fault": {**fault.to_json(), "count": count}}


def _script(sim: Controlled, payload: Mapping[str, object]) -> dict[str, object]:
    unknown = set(payload) - {"auth_code", "outcome", "confirm_delay_s", "reverse_retries"}
    if unknown:
        raise ValueError(f"unknown script field(s): {', '.join(sorted(unknown))}")
    code, outcome = payload.get("auth_code"), payload.get("outcome")
    delay, retries = payload.get("confirm_delay_s"), payload.get("reverse_retries", 2)
    if not isinstance(code, str) or not code:
        raise ValueError("auth_code must be a non-empty string")
    if outcome not in set(Outcome):
        raise ValueError(f"outcome must be one of {', '.join(Outcome)}, got {outcome!r}")
    if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)):
        raise ValueError(f"confirm_delay_s must be a number, got {delay!r}")
    if isinstance(retries, bool) or not isinstance(retries, int):
        raise ValueError(f"reverse_retries must be an integer, got {retries!r}")
    sim.script(
        code,
        Outcome(str(outcome)),
        confirm_delay_s=None if delay is None else float(delay),
        reverse_retries=retries,
    )
    return {"ok": True}


def _script_refund(sim: Controlled, payload: Mapping[str, object]) -> dict[str, object]:
    unknown = set(payload) - {"out_trade_no", "outcome", "channel"}
    if unknown:
        raise ValueError(f"unknown script_refund field(s): {', '.join(sorted(unknown))}")
    number, outcome = payload.get("out_trade_no"), payload.get("outcome")
    channel = payload.get("channel", "wechat")
    if not isinstance(number, str) or not number:
        raise ValueError("out_trade_no must be a non-empty string")
    if outcome not in set(RefundOutcome):
        raise ValueError(f"outcome must be one of {', '.join(RefundOutcome)}, got {outcome!r}")
    if not isinstance(channel, str):
        raise ValueError("channel must be a string")
    sim.script_refund(number, str(outcome), channel=channel)
    return {"ok": True}


def _latency(sim: Controlled, payload: Mapping[str, object]) -> dict[str, object]:
    unknown = set(payload) - {"round_trip_ms"}
    if unknown:
        raise ValueError(f"unknown latency field(s): {', '.join(sorted(unknown))}")
    ms = payload.get("round_trip_ms")
    if isinstance(ms, bool) or not isinstance(ms, int | float):
        raise ValueError(f"round_trip_ms must be a number of milliseconds, got {ms!r}")
    sim.set_round_trip(float(ms) / 1000)
    return {"ok": True, "round_trip_ms": float(ms)}


def _chaos(sim: Controlled, payload: Mapping[str, object]) -> dict[str, object]:
    """``{"rate": 0.3, "kinds"?: [...], "seed"?: 1}``: random faults on that share of requests."""
    unknown = set(payload) - {"rate", "kinds", "seed"}
    if unknown:
        raise ValueError(f"unknown chaos field(s): {', '.join(sorted(unknown))}")
    rate, kinds, seed = payload.get("rate"), payload.get("kinds"), payload.get("seed")
    if isinstance(rate, bool) or not isinstance(rate, int | float):
        raise ValueError(f"rate must be a number within 0..1, got {rate!r}")
    if kinds is not None and (not isinstance(kinds, list) or not all(
            k in set(FaultKind) for k in kinds)):
        raise ValueError(f"kinds must be a list of {', '.join(FaultKind)}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    sim.set_chaos(float(rate), kinds=None if kinds is None else tuple(str(k) for k in kinds),
                  seed=seed)
    return {"ok": True, **sim.chaos}


def _edit_bill(sim: Controlled, payload: Mapping[str, object]) -> dict[str, object]:
    unknown = set(payload) - {"channel", "kind", "out_trade_no", "amount", "at"}
    if unknown:
        raise ValueError(f"unknown bill field(s): {', '.join(sorted(unknown))}")
    channel, kind = payload.get("channel", "wechat"), payload.get("kind")
    number, amount, at = payload.get("out_trade_no", ""), payload.get("amount"), payload.get("at")
    if not isinstance(channel, str) or not isinstance(kind, str):
        raise ValueError("channel and kind must be strings")
    if not isinstance(number, str):
        raise ValueError("out_trade_no must be a string")
    if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int)):
        raise ValueError(f"amount must be a whole number of fen, got {amount!r}")
    if at is not None and (isinstance(at, bool) or not isinstance(at, int | float)):
        raise ValueError(f"at must be epoch seconds, got {at!r}")
    return sim.edit_bill(channel, kind, out_trade_no=number, amount=amount,
                         at=None if at is None else float(at))


def trade_json(trade: Trade, calls: dict[str, int]) -> dict[str, object]:
    """A trade as JSON-able data (the masked code only; the digest stays inside)."""
    return {
        "channel": trade.channel,
        "out_trade_no": trade.out_trade_no,
        "channel_trade_no": trade.channel_trade_no,
        "auth_code": trade.auth_code,
        "amount": trade.amount,
        "outcome": trade.outcome.value,
        "state": trade.state.value,
        "created_at": trade.created_at,
        "confirm_at": trade.confirm_at,
        "paid_at": trade.paid_at,
        "closed_at": trade.closed_at,
        "events": [{"at": e.at, "kind": e.kind, "detail": e.detail} for e in trade.events],
        "calls": calls,
        "refunds": [{"out_refund_no": r.out_refund_no, "channel_refund_no": r.channel_refund_no,
                     "amount": r.amount, "outcome": r.outcome.value, "status": r.status.value,
                     "created_at": r.created_at, "succeeded_at": r.succeeded_at,
                     "requests": r.requests} for r in trade.refunds],
    }


def violation_json(violation: Violation) -> dict[str, object]:
    return {
        "at": violation.at,
        "channel": violation.channel,
        "out_trade_no": violation.out_trade_no,
        "action": violation.action,
        "rule": violation.rule,
        "detail": violation.detail,
    }
