# SPDX-License-Identifier: MIT
"""The channel simulator: one loopback HTTP(S) server, one ledger, one gateway per channel.

Theory of operation
-------------------
:class:`Simulator` runs a ``ThreadingHTTPServer`` (one daemon thread per connection, HTTP/1.1
keep-alive like the real API) on loopback. For each request it reads the whole body, routes
``/_sim/...`` to the control endpoints (``control.py``) and anything else to the channel gateway
that owns the path, takes the next queued fault for that path (``faults.py``), lets the gateway
answer under one lock (the ledger is not thread-safe), then delivers the answer -- or, when a
fault says so, something worse. Every wait (latency, hang) is on ``_stopping``, so :meth:`stop`
returns promptly even with requests hanging, and it shuts every open connection down.

Over HTTPS the WeChat gateway refuses ``/secapi/`` requests that came without a verified client
certificate, with the body WeChat sends ("证书验证失败"), rather than failing the handshake.
The Alipay gateway (``/gateway.do``, when an :class:`AlipaySandbox` is given) shares the server,
the ledger and the faults; a fault may name one of its methods (``/gateway.do?method=...``).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import secrets
import signal
import threading
import time
from datetime import datetime
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Self, assert_never

from posd.channels.simulator.control import handle_control, trade_json, violation_json
from posd.channels.simulator.faults import (
    CHAOS_KINDS,
    GARBAGE_BODY,
    HTTP_STATUS,
    NEEDS_ANSWER,
    XML_BOMB_BODY,
    Fault,
    FaultKind,
    FaultQueue,
)
from posd.channels import registry
from posd.channels.simulator.gateway import Gateway, Reply, Request, SimulatorContext
from posd.channels.simulator.ledger import (
    ENDINGS,
    BillEdit,
    BillEditKind,
    Ledger,
    Outcome,
    RefundOutcome,
    Script,
    Trade,
    TradeState,
)
from posd.core.money import Fen
from posd.core.zones import BEIJING
from posd.channels.simulator.transport import (
    Handler,
    HttpServer,
    ServerTls,
    abort,
    read_request,
    send,
    send_or_abort,
)

if TYPE_CHECKING:
    from posd.channels.alipay.simulator import AlipaySandbox
    from posd.channels.wechat.simulator import WechatSandbox

log = logging.getLogger(__name__)


def _gateway(name: str, sandbox: Any, context: SimulatorContext) -> Gateway:
    spec = registry.get(name)
    if spec.simulate is None:
        raise ValueError(f"channel {name!r} has no simulator gateway")
    return spec.simulate(sandbox, context)


class Simulator:
    """The channel simulator (DESIGN.md §5): start it, point posd at :attr:`url`, stop it.

    ``clock`` gives the ledger's time (tests inject one to move minutes in an instant);
    ``confirm_delay_s`` is when code 0001's customer confirms; ``refund_delay_s`` how long a
    refund ending 01 or 02 is processing; ``hang_s`` how long code 0006
    and the ``hang`` fault block; ``min_reverse_delay_s`` WeChat's "not before 15 s";
    ``close_unpaid_after_s`` closes trades left unpaid that long (WeChat: 45 s; default: never,
    so that 0002 waits until reversed); ``alipay`` adds Alipay's ``/gateway.do``.
    """

    def __init__(
        self,
        *,
        wechat: WechatSandbox,
        alipay: AlipaySandbox | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        tls: ServerTls | None = None,
        clock: Callable[[], float] = time.time,
        confirm_delay_s: float = 8.0,
        refund_delay_s: float = 8.0,
        hang_s: float = 15.0,
        round_trip_s: float = 0.0,
        min_reverse_delay_s: float = 15.0,
        close_unpaid_after_s: float | None = None,
        ledger_file: Path | None = None,
        sandboxes: Mapping[str, Any] | None = None,
    ) -> None:
        self._address = (host, port)
        self._tls = tls
        self._clock = clock
        self._hang_s = hang_s
        #: network distance played on every gateway request: half before the request
        #: reaches the ledger, half before its answer leaves (real channels are 30-100 ms
        #: away; loopback is not). ``/_sim/latency`` sets it.
        self._round_trip_s = round_trip_s
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ledger = Ledger(
            secret=secrets.token_bytes(32),
            confirm_delay_s=confirm_delay_s,
            refund_delay_s=refund_delay_s,
            close_unpaid_after_s=close_unpaid_after_s,
        )
        self._ledger_file = ledger_file
        if ledger_file is not None:
            self._load_ledger(ledger_file)
        self._faults = FaultQueue()
        context = SimulatorContext(
            self._ledger, clock,
            require_client_cert=tls is not None and tls.require_client_cert_on_secapi,
            min_reverse_delay_s=min_reverse_delay_s, url=lambda: self.url)
        # Each channel's gateway, made by its registered channel (posd.channels.registry).
        played = {"wechat": wechat, "alipay": alipay, **(sandboxes or {})}
        self._gateways: tuple[Gateway, ...] = tuple(
            _gateway(name, sandbox, context) for name, sandbox in played.items()
            if sandbox is not None)
        self.wechat = wechat
        self.alipay = alipay
        self._more = dict(sandboxes or {})
        self._server: HttpServer | None = None
        self._thread: threading.Thread | None = None

    # --- the ledger on disk (posd demo) ------------------------------------------------------

    def _load_ledger(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._ledger.load_json(data)
        except FileNotFoundError:
            return
        except (OSError, ValueError) as err:
            log.warning("simulator ledger %s unreadable (%s): starting with no trades", path, err)
            return
        log.info("simulator ledger: %d trade(s) from %s", len(self._ledger.trades(self._clock())),
                 path)

    def _save_ledger(self) -> None:
        """Write the ledger (under ``_lock``) so that a restarted simulator knows its trades:
        to a temporary file, then renamed over the old one."""
        if self._ledger_file is None:
            return
        tmp = self._ledger_file.with_name(self._ledger_file.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self._ledger.to_json(), ensure_ascii=False),
                           encoding="utf-8")
            tmp.replace(self._ledger_file)
        except OSError as err:
            log.warning("simulator ledger %s not saved: %s", self._ledger_file, err)

    # --- life cycle -----------------------------------------------------------------------

    def start(self) -> Self:
        """Bind and serve in daemon threads; returns at once. Starting twice is a no-op."""
        if self._server is not None:
            return self
        if self._stopping.is_set():
            raise RuntimeError("a stopped Simulator cannot be started again: make a new one")
        context = self._tls.context() if self._tls is not None else None
        self._server = HttpServer(self._address, self._serve, context)
        self._thread = threading.Thread(
            target=self._server.serve_until_woken, name=f"posd-simulator-{self.port}", daemon=True
        )
        self._thread.start()
        log.info("channel simulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Stop serving, wake every hanging request, close every connection. Idempotent."""
        self._stopping.set()
        server, self._server = self._server, None
        if server is None:
            return
        server.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        server.close_connections()
        server.server_close()
        log.info("channel simulator stopped")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator is not running")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http(s)://127.0.0.1:PORT``, the base URL for posd's ``base_url``."""
        host = self._address[0]
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self._tls is not None else 'http'}://{host}:{self.port}"

    # --- control (mirrored by /_sim/) -----------------------------------------------------

    def ledger(self) -> list[dict[str, object]]:
        """Every trade, settled at the clock's now, as JSON-able dicts (masked codes only)."""
        with self._lock:
            trades = self._ledger.trades(self._clock())
            return [trade_json(t, self._ledger.calls(t.channel, t.out_trade_no)) for t in trades]

    def trade(self, out_trade_no: str, channel: str = "wechat") -> dict[str, object] | None:
        """One trade from :meth:`ledger`, or None."""
        found = (
            t for t in self.ledger() if (t["channel"], t["out_trade_no"]) == (channel, out_trade_no)
        )
        return next(found, None)

    def calls(self) -> dict[str, dict[str, dict[str, int]]]:
        """``{channel: {out_trade_no: {endpoint: count}}}``, also where no trade was made."""
        with self._lock:
            return self._ledger.all_calls()

    def violations(self) -> list[dict[str, object]]:
        """What a well-behaved client never does (e.g. reverse < 15 s after pay)."""
        with self._lock:
            return [violation_json(v) for v in self._ledger.violations()]

    def faults(self) -> list[dict[str, object]]:
        return self._faults.pending()

    def add_fault(
        self,
        kind: FaultKind | str,
        *,
        path: str = "*",
        count: int = 1,
        seconds: float | None = None,
        process: bool = True,
    ) -> None:
        """Deliver the next ``count`` answers to ``path`` ("*": any) badly; see faults.py."""
        self._faults.add(Fault(FaultKind(kind), path, seconds, process), count)

    def script(
        self,
        auth_code: str,
        outcome: Outcome | str,
        *,
        confirm_delay_s: float | None = None,
        reverse_retries: int = 2,
    ) -> None:
        """Make trades paid with ``auth_code`` behave as ``outcome``, whatever its digits."""
        if confirm_delay_s is not None and confirm_delay_s < 0:
            raise ValueError(f"confirm_delay_s must not be negative, got {confirm_delay_s}")
        if reverse_retries < 0:
            raise ValueError(f"reverse_retries must not be negative, got {reverse_retries}")
        with self._lock:
            self._ledger.script(
                auth_code, Script(Outcome(outcome), confirm_delay_s, reverse_retries)
            )

    def script_refund(self, out_trade_no: str, outcome: RefundOutcome | str, *,
                      channel: str = "wechat") -> None:
        """Make the next new refund of this trade behave as ``outcome``, whatever its amount."""
        with self._lock:
            self._ledger.script_refund(channel, out_trade_no, RefundOutcome(outcome))

    def set_chaos(self, rate: float, *, kinds: tuple[FaultKind | str, ...] | None = None,
                  seed: int | None = None) -> None:
        """Give each gateway request a random transport fault with probability ``rate``
        (``/_sim/chaos``; 0 stops it). ``kinds``: faults.CHAOS_KINDS by default."""
        chosen = CHAOS_KINDS if kinds is None else tuple(FaultKind(k) for k in kinds)
        self._faults.set_chaos(rate, kinds=chosen, seed=seed)

    def set_round_trip(self, seconds: float) -> None:
        """Every gateway request from now on takes ``seconds`` more (half each way)."""
        if not 0 <= seconds <= 10:
            raise ValueError(f"round trip must be 0 to 10 s, got {seconds}")
        self._round_trip_s = seconds

    @property
    def chaos(self) -> dict[str, object]:
        """The random-fault rate and kinds (``GET /_sim/chaos``)."""
        return self._faults.chaos

    @property
    def round_trip_s(self) -> float:
        return self._round_trip_s

    def edit_bill(self, channel: str, kind: str, *, out_trade_no: str = "",
                  amount: int | None = None, at: float | None = None) -> dict[str, object]:
        """Put a difference into the bills from now on (DESIGN §10; ``/_sim/bill``):

        - ``channel_only``: a trade paid at the channel that no client asked for (``at``,
          default now; ``amount`` fen, default 100) under ``out_trade_no``, by default a new
          number with the prefix of the channel's latest trade (the till's own);
        - ``missing``: the bill leaves out ``out_trade_no``'s rows (default: the latest trade
          still paid); the trade itself stays, so queries still find it;
        - ``amount``: the bill shows that trade's payment as ``amount`` fen (default: 1 yuan
          more).

        Returns the edit, with the trade's numbers. ValueError for a bad request."""
        if kind not in {"channel_only", *BillEditKind}:
            raise ValueError(f"kind must be channel_only, missing or amount, got {kind!r}")
        if amount is not None and amount <= 0:
            raise ValueError(f"amount must be a positive number of fen, got {amount}")
        with self._lock:
            now = self._clock()
            trades = [t for t in self._ledger.trades(now) if t.channel == channel]
            if kind == "channel_only":
                number = out_trade_no or _next_number(trades)
                when = now if at is None else at
                trade = self._ledger.add_paid_trade(
                    channel, number, Fen(amount or 100), _channel_trade_no(channel, when), when)
            else:
                paid = [t for t in trades if t.paid_at is not None]
                found = [t for t in paid if t.out_trade_no == out_trade_no] if out_trade_no \
                    else [t for t in paid if t.state is TradeState.PAID][-1:]
                if not found:
                    raise ValueError(f"{channel} has no paid trade {out_trade_no or '(none yet)'}")
                trade = found[0]
                shown = None if kind == BillEditKind.MISSING else Fen(
                    amount if amount is not None else int(trade.amount) + 100)
                self._ledger.edit_bill(BillEdit(channel, trade.out_trade_no,
                                                BillEditKind(kind), shown))
            self._save_ledger()
            return {"channel": channel, "kind": kind, "out_trade_no": trade.out_trade_no,
                    "channel_trade_no": trade.channel_trade_no,
                    "amount": int(trade.amount) if kind != BillEditKind.AMOUNT else shown,
                    "at": trade.paid_at if kind == "channel_only" else None}

    def reset(self) -> None:
        """Forget trades, call counters, violations, scripts and queued faults."""
        with self._lock:
            self._ledger.reset()
            self._save_ledger()
        self._faults.clear()

    def describe(self) -> dict[str, object]:
        channels: dict[str, object] = {
            "wechat": {"appid": self.wechat.appid, "mch_id": self.wechat.mch_id}
        }
        if self.alipay is not None:
            channels["alipay"] = {"app_id": self.alipay.app_id, "gateway": "/gateway.do"}
        v3 = self._more.get("wechat_v3")
        if v3 is not None:
            channels["wechat_v3"] = {"appid": v3.appid, "mchid": v3.mchid, "paths": "/v3/",
                                     "keys": sorted(v3.signers), "ledger": "wechat"}
        alipay = {} if self.alipay is None else {"alipay": "28123456789012"}
        return {
            "url": self.url if self._server is not None else None,
            "channels": channels,
            "sandbox_codes": [
                {"ending": e, "outcome": o.value, "wechat": f"13456789012345{e}"}
                | {name: f"{prefix}{e}" for name, prefix in alipay.items()}
                for e, o in ENDINGS.items()
            ],
            "outcomes": [o.value for o in Outcome],
            "fault_kinds": [k.value for k in FaultKind],
        }

    # --- serving ----------------------------------------------------------------------------

    def _serve(self, handler: Handler) -> None:
        """One request, in its connection's thread."""
        request = read_request(handler)
        if request is None:
            return
        if request.path == "/_sim" or request.path.startswith("/_sim/"):
            self._control(handler, request)
            return
        gateway = next((g for g in self._gateways if g.handles(request.path)), None)
        if gateway is None:
            send(handler, Reply(404, b"no such endpoint\n"))
            return
        fault = self._faults.take(*gateway.fault_paths(request))
        if fault is not None:
            log.info("fault %s on %s", fault.kind.value, request.path)
        if fault is not None and fault.kind is FaultKind.LATE:
            self._arrive_late(gateway, request, fault.seconds or 0.0)
            abort(handler)
            return
        half = self._round_trip_s / 2
        if half and self._stopping.wait(half):  # the request on its way
            abort(handler)
            return
        reply = self._process(gateway, request, fault)
        if half and self._stopping.wait(half):  # the answer on its way back
            abort(handler)
            return
        self._deliver(handler, gateway, reply, fault)

    def _control(self, handler: Handler, request: Request) -> None:
        payload: dict[str, object]
        if not ipaddress.ip_address(handler.client_address[0]).is_loopback:
            status, payload = 403, {"error": "the control endpoint answers loopback only"}
        else:
            status, payload = handle_control(self, request.method, request.path, request.body)
        body = json.dumps(payload, ensure_ascii=False).encode()
        send(handler, Reply(status, body, "application/json"))

    def _process(self, gateway: Gateway, request: Request, fault: Fault | None) -> Reply | None:
        """The gateway's answer, or None when the fault keeps the request from the ledger.

        A latency fault with ``process`` lets the ledger see the request first and delays only
        the answer (the request arrived; its answer is slow); without ``process`` the request
        itself is slow to arrive.
        """
        if fault is not None:
            if fault.kind is FaultKind.LATENCY:
                if fault.process:
                    with self._lock:
                        reply = gateway.handle(request)
                        self._save_ledger()
                    return None if self._stopping.wait(fault.seconds or 0.0) else reply
                if self._stopping.wait(fault.seconds or 0.0):
                    return None  # stop() came first
            elif not fault.process and fault.kind not in NEEDS_ANSWER:
                return None
        with self._lock:
            reply = gateway.handle(request)
            self._save_ledger()
            return reply

    def _arrive_late(self, gateway: Gateway, request: Request, seconds: float) -> None:
        """The ``late`` fault: the ledger sees ``request`` ``seconds`` from now (its answer
        goes nowhere: the client's connection was reset when it was sent)."""

        def arrive() -> None:
            if self._stopping.wait(seconds):
                return
            with self._lock:
                gateway.handle(request)
                self._save_ledger()
            log.info("late request on %s reached the ledger", request.path)

        threading.Thread(target=arrive, name="posd-simulator-late", daemon=True).start()

    def _deliver(
        self, handler: Handler, gateway: Gateway, reply: Reply | None, fault: Fault | None
    ) -> None:
        kind = None if fault is None else fault.kind
        match kind:
            case None | FaultKind.LATENCY:
                if reply is not None and reply.hang:  # sandbox code 0006
                    reply = self._after_hang(reply, self._hang_s)
                send_or_abort(handler, reply)
            case FaultKind.DROP:
                abort(handler)
            case FaultKind.HANG:
                seconds = self._hang_s if fault is None or fault.seconds is None else fault.seconds
                send_or_abort(handler, self._after_hang(reply, seconds))
            case FaultKind.HTTP500 | FaultKind.HTTP502 | FaultKind.HTTP503:
                status = HTTP_STATUS[kind]
                page = f"<html><body><h1>{status}</h1></body></html>\n".encode()
                send(handler, Reply(status, page, "text/html"))
            case FaultKind.GARBAGE:
                send(handler, Reply(200, GARBAGE_BODY, "text/plain"))
            case FaultKind.XML_BOMB:
                send(handler, Reply(200, XML_BOMB_BODY, "text/xml; charset=utf-8"))
            case FaultKind.BADSIGN:
                send_or_abort(handler, reply and gateway.tamper(reply, "badsign"))
            case FaultKind.WRONG_TRADE:
                send_or_abort(handler, reply and gateway.tamper(reply, "wrong_trade"))
            case FaultKind.SLASH:
                send_or_abort(handler, reply and gateway.tamper(reply, "slash"))
            case FaultKind.LATE:
                abort(handler)  # handled in _serve; here for completeness
            case _:
                assert_never(kind)

    def _after_hang(self, reply: Reply | None, seconds: float) -> Reply | None:
        """Block past the client's timeout; None (no answer at all) if stop() came first."""
        return None if self._stopping.wait(seconds) else reply


def run_forever(sim: Simulator, *, on_ready: Callable[[Simulator], None] | None = None) -> None:
    """Serve ``sim`` until SIGINT or SIGTERM, then stop it. Call from the main thread.

    ``on_ready`` runs once the simulator listens (e.g. the CLI prints the URL and codes).
    """
    stop = threading.Event()

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: stopping the channel simulator", signum)
        stop.set()

    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with sim:
            if on_ready is not None:
                on_ready(sim)
            while not stop.wait(1.0):
                pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _next_number(trades: list[Trade]) -> str:
    """A fresh out_trade_no shaped like the latest trade's (its prefix, 18 digits)."""
    if not trades:
        raise ValueError("give out_trade_no: the simulator has no trade to take a prefix from")
    latest = trades[-1].out_trade_no
    prefix, digits = latest[:-18], latest[-18:]
    taken = {t.out_trade_no for t in trades}
    for n in range(999_999, 0, -1):
        number = f"{prefix}{digits[:12]}{n:06d}"
        if number not in taken:
            return number
    raise ValueError("no free out_trade_no left")  # pragma: no cover - a million trades


def _channel_trade_no(channel: str, at: float) -> str:
    day = datetime.fromtimestamp(at, BEIJING).strftime("%Y%m%d")
    tail = secrets.randbelow(10**14)
    return f"4200{day}{tail:014d}"[:28] if channel == "wechat" else f"{day}22{tail:018d}"[:28]

