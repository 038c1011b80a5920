# SPDX-License-Identifier: MIT
"""The local HTTP API for the register and the cashier page (DESIGN §4). [shell]

FastAPI with plain ``def`` handlers: the engine blocks (SQLite, condition waits), so
Starlette runs each handler in its worker-thread pool. :class:`ApiServer` serves the app with
uvicorn in a daemon thread and leaves SIGINT/SIGTERM to the daemon.

Two pure-ASGI layers sit in front of the routes and answer before a body is read or a route
is matched: the bearer-token check (:class:`TokenAuth`) and the body-size limit
(:class:`BodyLimit`). Every error is ``{"detail": "<a sentence to act on>"}``; a traceback
never leaves the process.

Longer than the house's ~400 lines because the JSON shapes below are the register's contract
and carry their documentation into /openapi.json; splitting them off would scatter it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, date, datetime, tzinfo
from typing import Annotated, Any, Literal

import uvicorn
from fastapi import APIRouter, FastAPI, Header, Query, Request, Response, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posd import __version__
from posd.engine import Engine
from posd.listen import listen_socket
from posd.core.errors import (
    ConfigError,
    ConflictError,
    InputError,
    NotFoundError,
    PosdError,
    StoreError,
    UnavailableError,
)
from posd.core.money import MAX_FEN, check_fen
from posd.core.report import BUCKETS, ChannelTotals, DailyReport, daily_report, day_bounds, parse_day
from posd.core.sale import Sale, State, cancel_refusal

log = logging.getLogger(__name__)

#: Longest long-poll (``GET /v1/sales/{id}?wait=S``); a larger S is capped, not refused.
MAX_WAIT_S = 60.0
#: Request bodies are a few hundred bytes; anything much larger is a mistake or an attack.
MAX_BODY_BYTES = 16 * 1024
#: Paths served without the token (DESIGN §4).
PUBLIC_PATHS = frozenset({"/v1/health", "/openapi.json", "/docs", "/docs/oauth2-redirect"})

_BODY_NOT_JSON = "send the body as JSON, with the header Content-Type: application/json"
_BODY_NOT_OBJECT = 'the request body must be a JSON object such as {"amount": 1250}'
_EXPLAIN = {"missing": "{field} is required", "extra_forbidden": "unknown field '{field}'"}
_AUTH_CODE_AS_STRING = (
    "auth_code must be the scanned payment code as a JSON string of digits, e.g. "
    '"134567890123450001" (as a JSON number an 18-digit code loses digits)'
)


# --- JSON shapes ---------------------------------------------------------------------------


class SaleRequest(BaseModel):
    """``POST /v1/sales``: what the register sends."""

    model_config = ConfigDict(extra="forbid")

    amount: int = Field(
        gt=0, le=MAX_FEN, examples=[1250],
        description="Integer fen (1 yuan = 100 fen): 12.50 yuan is 1250. Not a float or string.",
    )
    order_ref: str | None = Field(
        default=None, examples=["R-20240501-0042"],
        description="The register's order (1-64 characters). An order has at most one paid "
        "sale and at most one unresolved sale at a time.",
        # Documented, checked by the engine (its sentence, not pydantic's, reaches the client).
        json_schema_extra={"minLength": 1, "maxLength": 64},
    )
    auth_code: str | None = Field(
        default=None, examples=["134567890123450001"],
        description="The customer's payment code as a string of digits. Without it the sale "
        "waits (awaiting_code) for the next scan.",
    )
    subject: str = Field(default="", max_length=128, description="Goods description for the "
                         "channel; the store's name when empty.")

    @field_validator("amount", mode="before")
    @classmethod
    def _fen(cls, value: object) -> int:
        # Strict: 12.5, "1250", true and 1e3 are refused (pydantic's lax int would take
        # 1250.0 and "1250"). A ValueError here reaches the client as its sentence.
        if isinstance(value, bool) or not isinstance(value, int):
            shown = json.dumps(value, ensure_ascii=False)[:40]
            raise ValueError(  # noqa: TRY004 - pydantic reports ValueError, not TypeError
                f"amount must be an integer number of fen (1 yuan = 100 fen: "
                f"send 12.50 yuan as 1250), got {shown}")
        return check_fen(value)

    @field_validator("auth_code")
    @classmethod
    def _code(cls, value: str | None) -> str | None:
        # The engine reads "" as "no code" and would wait for a scan; a register sending ""
        # had a scan that read nothing.
        if value == "":
            raise ValueError("auth_code is empty: nothing was scanned. Scan the customer's "
                             "payment code again, or leave auth_code out to wait for the scanner")
        return value


class SaleOut(BaseModel):
    """A sale as the API shows it. Times are ISO 8601 with the store's UTC offset."""

    id: int
    order_ref: str | None
    amount: int = Field(description="fen")
    currency: Literal["CNY"] = "CNY"
    state: State
    final: bool = Field(description="true once the state will not change by itself")
    channel: str | None = Field(description='"wechat", "alipay", or null before a code')
    out_trade_no: str
    channel_trade_no: str | None
    auth_code: str | None = Field(description="the payment code, masked: first 4 + last 4")
    decline_code: str | None
    message: str = Field(description="a sentence a cashier can read")
    refunded: bool | None = Field(
        description="for a reversed sale: true if money taken was returned, false if none was "
        "taken, null if the channel did not say")
    subject: str
    created_at: datetime
    paid_at: datetime | None
    updated_at: datetime
    deadline_at: datetime | None = Field(description="reverse starts if not final by then")


class SaleList(BaseModel):
    sales: list[SaleOut]


class TallyOut(BaseModel):
    count: int
    amount: int = Field(description="fen")


class ChannelTotalsOut(BaseModel):
    channel: str
    count: int
    paid: TallyOut
    reversed: TallyOut
    declined: TallyOut
    cancelled: TallyOut
    needs_attention: TallyOut
    in_progress: TallyOut
    net: int = Field(description="fen taken and kept: the paid total")


class DailyReportOut(BaseModel):
    """The Z-report of one local calendar day (by the sales' created_at)."""

    date: date
    channels: list[ChannelTotalsOut]
    total: ChannelTotalsOut
    net: int = Field(description="fen taken and kept, all channels")
    needs_attention: list[int] = Field(description="ids of sales a person must check")


class HealthOut(BaseModel):
    """Liveness plus what is degraded; further engine fields pass through."""

    model_config = ConfigDict(extra="allow")

    status: Literal["ok", "degraded", "down"]
    version: str
    degraded: list[str]


class ErrorOut(BaseModel):
    detail: str = Field(description="what went wrong, as a sentence to act on")


class StoppingOut(BaseModel):
    detail: str = Field(description="posd is shutting down; the sale goes on after the restart")
    sale: SaleOut = Field(description="the sale as it stands")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorOut, "description": "The body could not be read (not UTF-8 JSON)"},
    401: {"model": ErrorOut, "description": "Missing or wrong bearer token"},
    404: {"model": ErrorOut, "description": "No such sale"},
    422: {"model": ErrorOut, "description": "Bad input (amount, payment code, date, ...)"},
    413: {"model": ErrorOut, "description": f"Request body over {MAX_BODY_BYTES} bytes"},
    503: {"model": ErrorOut, "description": "posd is shutting down or its database is unusable"},
}

#: A sale id: SQLite's integer range (a larger number is not an id, and would overflow).
SaleId = Annotated[int, PathParam(ge=0, le=2**63 - 1, description="the sale's id")]
#: ``date`` query parameters; parse_day() checks them with a sentence of its own.
_DAY_FORMAT = {"format": "date"}


# --- conversions -------------------------------------------------------------------------


def _at(epoch: float, tz: tzinfo | None) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).astimezone(tz)  # tz None: the local time zone


def _maybe_at(epoch: float | None, tz: tzinfo | None) -> datetime | None:
    return None if epoch is None else _at(epoch, tz)


def sale_out(sale: Sale, tz: tzinfo | None = None) -> SaleOut:
    """The API's view of ``sale``; times in ``tz`` (None: the system's local time zone)."""
    return SaleOut(
        id=sale.id, order_ref=sale.order_ref, amount=sale.amount, state=sale.state,
        final=sale.final, channel=sale.channel, out_trade_no=sale.out_trade_no,
        channel_trade_no=sale.channel_trade_no, auth_code=sale.auth_code_masked,
        decline_code=sale.decline_code, message=sale.message, refunded=sale.refunded,
        subject=sale.subject, created_at=_at(sale.created_at, tz),
        paid_at=_maybe_at(sale.paid_at, tz), updated_at=_at(sale.updated_at, tz),
        deadline_at=_maybe_at(sale.deadline_at, tz),
    )


def _totals_out(totals: ChannelTotals) -> ChannelTotalsOut:
    tallies = {name: TallyOut(count=getattr(totals, name).count,
                              amount=getattr(totals, name).amount) for name in BUCKETS}
    return ChannelTotalsOut(channel=totals.channel, count=totals.count, net=totals.net, **tallies)


def report_out(report: DailyReport) -> DailyReportOut:
    return DailyReportOut(
        date=report.day, channels=[_totals_out(c) for c in report.channels],
        total=_totals_out(report.total), net=report.net,
        needs_attention=list(report.needs_attention),
    )


# --- errors ------------------------------------------------------------------------------


def _error(status: int, detail: str, headers: Mapping[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=dict(headers or {}))


def _status_of(err: PosdError) -> int:
    for kind, status in ((ConflictError, 409), (NotFoundError, 404), (InputError, 422),
                         (StoreError, 503), (UnavailableError, 503)):
        if isinstance(err, kind):
            return status
    return 500


def _posd_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, PosdError)  # registered for PosdError only
    status = _status_of(err)
    if status == 500:
        log.error("API request failed: %s: %s", type(err).__name__, err)
        return _error(500, "internal error in posd; the details are in its log")
    return _error(status, str(err))


def _unexpected_error(_: Request, __: Exception) -> JSONResponse:
    # Starlette re-raises after this answer and uvicorn logs the traceback: not logged twice.
    return _error(500, "internal error in posd; the details are in its log")


def explain(error: Mapping[str, Any]) -> str:
    """One pydantic/FastAPI validation error as a sentence a register developer can act on."""
    names = [str(p) for p in error["loc"][1:]] if error["loc"] else []
    field = ".".join(names)
    kind = error["type"]
    if kind == "value_error":
        return str(error["ctx"]["error"])  # our own sentence (money.check_fen and friends)
    if kind == "json_invalid":
        return f"the request body is not valid JSON: {error['ctx']['error']}"
    if not field:
        return _BODY_NOT_JSON if isinstance(error.get("input"), bytes) else _BODY_NOT_OBJECT
    if field == "auth_code" and kind == "string_type":
        return _AUTH_CODE_AS_STRING
    return _EXPLAIN.get(kind, "{field}: {msg}").format(field=field, msg=error["msg"])


def _validation_error(_: Request, err: Exception) -> JSONResponse:
    assert isinstance(err, RequestValidationError)  # registered for it only
    return _error(422, "; ".join(explain(e) for e in err.errors()))


# --- ASGI layers in front of the app -------------------------------------------------------


async def _respond(response: Response, scope: Scope, receive: Receive, send: Send) -> None:
    await response(scope, receive, send)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


class TokenAuth:
    """Refuse a request without ``Authorization: Bearer <token>`` before reading or routing it.

    The comparison is constant-time over bytes (:func:`hmac.compare_digest`); the scheme name
    is case-insensitive (RFC 7235).
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("utf-8")

    def _authorized(self, scope: Scope) -> bool:
        scheme, _, credentials = (_header(scope, b"authorization") or b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(credentials.strip(), self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._public(scope) or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        given = _header(scope, b"authorization") is not None
        challenge = 'Bearer realm="posd"' + (', error="invalid_token"' if given else "")
        detail = ("wrong API token" if given else "missing API token") + (
            ": send the header 'Authorization: Bearer <token>' with the token from api.token_file")
        await _respond(_error(401, detail, {"WWW-Authenticate": challenge}), scope, receive, send)

    @staticmethod
    def _public(scope: Scope) -> bool:
        path = scope["path"]
        return scope["method"] in ("GET", "HEAD") and (
            path in PUBLIC_PATHS or path.startswith(DOCS_ASSETS + "/"))


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a body without (or with a false) Content-Length grows too big.

    An HTTPException, so FastAPI passes it through its body parsing to the 413 handler.
    """

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """413 for a request body over ``limit`` bytes: at once by Content-Length, else as read."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _respond(_error(413, BodyTooLarge(self.limit).detail), scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise BodyTooLarge(self.limit)
            return message

        await self.app(scope, limited, send)


# --- the routes ----------------------------------------------------------------------------

# Enforcement is TokenAuth's (it runs before the body is read); this dependency only puts
# the bearer scheme into /openapi.json so that /docs offers an "Authorize" button.
_bearer = HTTPBearer(auto_error=False, description="the token in api.token_file")


class _Routes:
    """The handlers, bound to one engine and one time zone."""

    def __init__(self, engine: Engine, tz: tzinfo | None,
                 daily: Callable[[date | None], DailyReport] | None = None) -> None:
        self.engine = engine
        self.tz = tz
        self.daily = daily or self._calendar_day

    def _calendar_day(self, day: date | None) -> DailyReport:
        which = day or self._today()
        since, until = day_bounds(which, self.tz)
        return daily_report(which, self.engine.list_sales(since=since, until=until))

    def _today(self) -> date:
        return datetime.now(UTC).astimezone(self.tz).date()

    def _day(self, text: str | None) -> date:
        return parse_day(text) if text is not None else self._today()

    def create_sale(
        self,
        body: SaleRequest,
        response: Response,
        idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key", min_length=1, max_length=128,
            description="Retry-safe creation: the same key returns the same sale (200).")] = None,
    ) -> SaleOut:
        """Create a sale; with ``auth_code`` it is paid at once, else it waits for a scan."""
        sale, created = self.engine.create_sale(
            body.amount, order_ref=body.order_ref, auth_code=body.auth_code,
            subject=body.subject, idempotency_key=idempotency_key)
        if not created:
            _check_replay(sale, body, idempotency_key)
            response.status_code = 200
        response.headers["Location"] = f"/v1/sales/{sale.id}"
        return sale_out(sale, self.tz)

    def get_sale(
        self,
        sale_id: SaleId,
        wait: Annotated[float | None, Query(
            ge=0, description=f"long-poll up to this many seconds (at most {MAX_WAIT_S:g}) "
            "for the state to change")] = None,
        seen_state: Annotated[State | None, Query(
            description="with wait: the state the client last saw; the answer comes as soon "
            "as the sale is in another one (default: its state now)")] = None,
    ) -> SaleOut | JSONResponse:
        """The sale; with ``wait``, once its state changes (or it is final, or time is up).

        503 with the sale as it stands when posd stops while the long-poll waits."""
        if wait is None:
            return sale_out(self.engine.get(sale_id), self.tz)
        sale = await_state_change(self.engine, sale_id, seen_state, min(wait, MAX_WAIT_S))
        if self.engine.stopping and not sale.final:
            # DESIGN §2 rule 8: at shutdown a long-poll is answered at once with the sale as
            # it stands -- never a 500, never a "not paid" for an outcome still unknown.
            body = {"detail": f"posd is shutting down; sale {sale.id} is {sale.state} and "
                    "posd goes on resolving it after the restart: ask again shortly",
                    "sale": sale_out(sale, self.tz).model_dump(mode="json")}
            return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
        return sale_out(sale, self.tz)

    def list_sales(
        self,
        order_ref: str | None = None,
        day: Annotated[str | None, Query(
            alias="date", examples=["2024-05-01"], json_schema_extra=_DAY_FORMAT,
            description="YYYY-MM-DD, the store's local day of created_at. Default: every day "
            "when order_ref is given, else today.")] = None,
    ) -> SaleList:
        """Sales of one order and/or one day, oldest first."""
        since = until = None
        if day is not None or order_ref is None:
            since, until = day_bounds(self._day(day), self.tz)
        sales = self.engine.list_sales(order_ref=order_ref, since=since, until=until)
        return SaleList(sales=[sale_out(s, self.tz) for s in sales])

    def cancel_sale(self, sale_id: SaleId) -> SaleOut:
        """Cashier cancel: awaiting_code -> cancelled; in flight -> reversing.

        409 when the sale is paid (cancel does not refund) or needs a person's attention.
        """
        sale = self.engine.cancel(sale_id)
        if (why := cancel_refusal(sale)) is not None:
            raise ConflictError(why)
        return sale_out(sale, self.tz)

    def report_daily(
        self,
        day: Annotated[str | None, Query(alias="date", examples=["2024-05-01"],
                                         json_schema_extra=_DAY_FORMAT,
                                         description="YYYY-MM-DD; default today")] = None,
    ) -> DailyReportOut:
        """The Z-report of one day: per channel counts and totals (fen), net, open issues."""
        return report_out(self.daily(parse_day(day) if day is not None else None))

    async def health(self) -> JSONResponse:
        """Liveness plus what is degraded. No token needed.

        ``async``: answered on the event loop, without the thread pool hop of a plain ``def``
        (about 1 ms here). It may: the engine's health reads a read-only connection and a
        few indexed rows (~0.3 ms), never waiting for a writer's lock."""
        try:
            figures = self.engine.health()
        except StoreError as err:
            body = HealthOut(status="down", version=__version__, degraded=[str(err)])
            return JSONResponse(body.model_dump(mode="json"), status_code=503)
        body = HealthOut.model_validate({**figures, "version": __version__})
        return JSONResponse(body.model_dump(mode="json"))


def _check_replay(sale: Sale, body: SaleRequest, key: str | None) -> None:
    """A reused Idempotency-Key must come with the same amount and order (as Stripe does)."""
    if sale.amount != body.amount or sale.order_ref != body.order_ref:
        raise ConflictError(
            f"Idempotency-Key {key!r} was used for sale {sale.id} ({sale.amount} fen, order "
            f"{sale.order_ref!r}); send a new key for a different sale")


def await_state_change(engine: Engine, sale_id: int, seen: State | None, wait: float) -> Sale:
    """The sale once its state differs from ``seen`` (default: its state now) or is final,
    else after ``wait`` seconds.

    ``engine.wait_for_change`` wakes on any committed change (a new message, a query count);
    this keeps waiting through those that leave the state as it was.
    """
    deadline = time.monotonic() + wait
    sale = engine.get(sale_id)
    seen = seen or sale.state
    while sale.state == seen and not sale.final and not engine.stopping:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        sale = engine.wait_for_change(sale_id, since=sale.updated_at, timeout=left)
    return sale


def _add_routes(app: FastAPI, routes: _Routes) -> None:
    v1 = APIRouter(prefix="/v1", dependencies=[Security(_bearer)], responses=_ERRORS)
    v1.add_api_route("/sales", routes.create_sale, methods=["POST"], status_code=201,
                     response_model=SaleOut, responses={
                         200: {"model": SaleOut, "description": "Idempotency-Key replayed"},
                         409: {"model": ErrorOut, "description": "The order already has a "
                               "paid or unresolved sale"}})
    v1.add_api_route("/sales", routes.list_sales, methods=["GET"], response_model=SaleList)
    v1.add_api_route("/sales/{sale_id}", routes.get_sale, methods=["GET"], response_model=SaleOut,
                     responses={503: {"model": StoppingOut, "description": "posd is stopping: "
                                      "the sale as it stands (it is resolved after the restart)"}})
    v1.add_api_route("/sales/{sale_id}/cancel", routes.cancel_sale, methods=["POST"],
                     response_model=SaleOut, responses={
                         409: {"model": ErrorOut, "description": "Paid or needs attention"}})
    v1.add_api_route("/reports/daily", routes.report_daily, methods=["GET"],
                     response_model=DailyReportOut)
    app.include_router(v1)
    app.add_api_route("/v1/health", routes.health, methods=["GET"], response_model=HealthOut,
                      responses={503: {"model": HealthOut, "description": "Database unusable"}})


#: Where Swagger UI's own files are served from (the swagger-ui-bundle package): /docs works
#: at a till with no internet, where FastAPI's default page loads them from a CDN.
DOCS_ASSETS = "/docs/assets"


def _add_docs(app: FastAPI) -> None:
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

    app.mount(DOCS_ASSETS, StaticFiles(directory=swagger_ui_path), name="docs-assets")

    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="posd API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png")

    app.add_api_route("/docs", docs, methods=["GET"], include_in_schema=False)


def create_app(engine: Engine, token: str, *, store_timezone: tzinfo | None = None,
               daily: Callable[[date | None], DailyReport] | None = None) -> FastAPI:
    """The API app over ``engine``. Dates and times are in ``store_timezone`` (None: local).

    ``daily(day)`` makes the report of a business day (None: the current one); the daemon
    passes posd.printing's, which sums in SQL with the business-day cut-off. Default: the
    engine's sales of a calendar day.
    """
    if not token.strip():
        raise ConfigError("api token is empty: put a random token in api.token_file")
    app = FastAPI(title="posd", version=__version__, redoc_url=None, docs_url=None,
                  description="Payment-code payments at the counter: the register's API.")
    app.add_exception_handler(PosdError, _posd_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    _add_routes(app, _Routes(engine, store_timezone, daily))
    _add_docs(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(TokenAuth, token=token)  # added last = outermost: runs first
    return app


# --- the server ------------------------------------------------------------------------------


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # The daemon owns SIGINT/SIGTERM and stops us with stop(). uvicorn skips signals
        # outside the main thread already; this keeps it so if we are ever run there.
        yield

    async def main_loop(self) -> None:
        """uvicorn wakes every 0.1 s to notice ``should_exit``; once a second is enough for
        an idle till (the Date header has one-second resolution anyway): stop() takes up to
        1 s longer, and the idle daemon wakes 10 times less often."""
        counter = 0
        while not await self.on_tick(counter):
            counter = (counter + 10) % 864000  # on_tick refreshes the Date header at 0 mod 10
            await asyncio.sleep(1.0)


class ApiServer:
    """Serve an ASGI app with uvicorn in a daemon thread.

    The socket is bound in :meth:`start`, in the caller's thread, so an address in use
    raises OSError there; ``port`` is then the real port (useful when 0 was asked).
    """

    def __init__(self, app: ASGIApp, host: str, port: int, *,
                 tls: tuple[str, str] | None = None) -> None:
        """``tls``: (certificate file, private key file) to serve HTTPS."""
        self.host = host
        self._asked_port = port
        self._scheme = "https" if tls else "http"
        config = uvicorn.Config(app, log_config=None, log_level="warning", access_log=False,
                                lifespan="off", timeout_graceful_shutdown=3,
                                server_header=False, ssl_certfile=tls[0] if tls else None,
                                ssl_keyfile=tls[1] if tls else None)
        self._server = _Server(config)
        self._socket: socket.socket | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._socket is None:
            return self._asked_port
        return int(self._socket.getsockname()[1])

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self._scheme}://{host}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Listen, serve in a thread, and return once uvicorn is accepting connections."""
        if self._scheme == "https":
            # Here, not in the server thread, so that a bad certificate or key stops the
            # start with a sentence instead of a thread that quietly died.
            try:
                self._server.config.load()
            except OSError as err:  # ssl.SSLError is one
                raise ConfigError(f"api.tls_cert_file / api.tls_key_file: cannot serve HTTPS "
                                  f"with them: {err}") from err
        # TCP_NODELAY on every answer: listen_socket() says why (a register's long-polls
        # and requests would otherwise wait ~40 ms each for delayed ACKs).
        self._socket = listen_socket(self.host, self._asked_port)
        sockets: Sequence[socket.socket] = [self._socket]
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": sockets},
                                        name="posd-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        # uvicorn exposes only a flag; the socket already queues connections meanwhile.
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop(0)
                raise RuntimeError(f"the API server on {self.url} did not start")
            self._thread.join(0.01)
        log.debug("API listening on %s", self.url)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, let requests in progress finish (up to ~3 s), join the thread."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        if self._socket is not None and not self._server.started:
            self._socket.close()  # uvicorn closes it on a normal shutdown
