# SPDX-License-Identifier: MIT
"""The routes, bound to one engine and one time zone, and :func:`create_app`.

FastAPI with plain ``def`` handlers where the engine blocks (SQLite, condition waits):
Starlette runs each in its worker-thread pool. ``GET /v1/health`` is answered on the event
loop ahead of the router (:class:`~posd.api.middleware.HealthFirst`): it reads a read-only
connection and never waits for a writer."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Response, Security
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.security import HTTPBearer

from posd import __version__
from posd.engine import Engine
from posd.reconcile import Reconciler, yesterday
from posd.reconcile_command import row_json, verdict
from posd.core.errors import (
    ConfigError,
    ConflictError,
    StoreError,
)
from posd.core.report import DailyReport, daily_report, day_bounds, parse_day
from posd.core.refund import Refund
from posd.core.sale import Sale, State, cancel_refusal

from posd.api.middleware import (
    DOCS_ASSETS, BodyLimit, HealthFirst, TokenAuth, install_error_handlers, require_manager,
    role_of,
)
from posd.api.page import ReceiptPng, Reprint, add_page
from posd.api.models import (
    DAY_FORMAT,
    ERROR_RESPONSES,
    MAX_BODY_BYTES,
    DailyReportOut,
    ErrorOut,
    HealthOut,
    DifferenceResolveRequest,
    ReconcileRequest,
    ReconciliationList,
    RefundList,
    RefundOut,
    RefundRequest,
    ResolveRequest,
    SaleList,
    SaleOut,
    SaleId,
    SaleRequest,
    StoppingOut,
    refund_out,
    report_out,
    sale_out,
)

log = logging.getLogger(__name__)

#: Longest long-poll (``GET /v1/sales/{id}?wait=S``); a larger S is capped, not refused.
MAX_WAIT_S = 60.0

# --- the routes ----------------------------------------------------------------------------

# Enforcement is TokenAuth's (it runs before the body is read); this dependency only puts
# the bearer scheme into /openapi.json so that /docs offers an "Authorize" button.
_bearer = HTTPBearer(auto_error=False, description="the token in api.token_file")


class _Routes:
    """The handlers, bound to one engine and one time zone."""

    def __init__(self, engine: Engine, tz: tzinfo | None,
                 daily: Callable[[date | None], DailyReport] | None = None,
                 reconciler: Reconciler | None = None) -> None:
        self.engine = engine
        self.tz = tz
        self.daily = daily or self._calendar_day
        self.reconciler = reconciler

    def _calendar_day(self, day: date | None) -> DailyReport:
        which = day or self._today()
        since, until = day_bounds(which, self.tz)
        return daily_report(which, self.engine.list_sales(since=since, until=until))

    def _today(self) -> date:
        return datetime.now(UTC).astimezone(self.tz).date()

    def _day(self, text: str | None) -> date:
        return parse_day(text) if text is not None else self._today()

    def _out(self, sale: Sale) -> SaleOut:
        refunded = self.engine.refunded_amounts([sale.id]).get(sale.id, 0)
        return sale_out(sale, self.tz, refunded)

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
        # A sale just made has no refund; a replayed one may have had some since.
        return sale_out(sale, self.tz) if created else self._out(sale)

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
            return self._out(self.engine.get(sale_id))
        sale = await_state_change(self.engine, sale_id, seen_state, min(wait, MAX_WAIT_S))
        if self.engine.stopping and not sale.final:
            # DESIGN §2 rule 8: at shutdown a long-poll is answered at once with the sale as
            # it stands -- never a 500, never a "not paid" for an outcome still unknown.
            body = {"detail": f"posd is shutting down; sale {sale.id} is {sale.state} and "
                    "posd goes on resolving it after the restart: ask again shortly",
                    "sale": sale_out(sale, self.tz).model_dump(mode="json")}
            return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
        return self._out(sale)

    def list_sales(
        self,
        order_ref: str | None = None,
        day: Annotated[str | None, Query(
            alias="date", examples=["2024-05-01"], json_schema_extra=DAY_FORMAT,
            description="YYYY-MM-DD, the store's local day of created_at. Default: every day "
            "when order_ref is given, else today.")] = None,
    ) -> SaleList:
        """Sales of one order and/or one day, oldest first."""
        since = until = None
        if day is not None or order_ref is None:
            since, until = day_bounds(self._day(day), self.tz)
        sales = self.engine.list_sales(order_ref=order_ref, since=since, until=until)
        refunded = self.engine.refunded_amounts([s.id for s in sales])
        return SaleList(sales=[sale_out(s, self.tz, refunded.get(s.id, 0)) for s in sales])

    def cancel_sale(self, sale_id: SaleId) -> SaleOut:
        """Cashier cancel: awaiting_code -> cancelled; in flight -> reversing.

        409 when the sale is paid (cancel does not refund) or needs a person's attention.
        """
        sale = self.engine.cancel(sale_id)
        if (why := cancel_refusal(sale)) is not None:
            raise ConflictError(why)
        return self._out(sale)

    def create_refund(
        self,
        sale_id: SaleId,
        body: RefundRequest,
        response: Response,
        idempotency_key: Annotated[str | None, Header(
            alias="Idempotency-Key", min_length=1, max_length=128,
            description="Retry-safe: the same key returns the same refund (200).")] = None,
    ) -> RefundOut:
        """Refund all (no ``amount``) or part of a paid sale. Manager token only.

        409 when the sale is not paid, a refund of it is in flight, or the amount is more than
        what is left; 422 for a bad amount or a missing reason. The refund is written before
        it is sent; follow it with ``GET /v1/refunds/{id}?wait=S``."""
        refund, created = self.engine.refund(sale_id, body.amount, body.reason,
                                             idempotency_key=idempotency_key)
        if not created:
            if (body.amount is not None and refund.amount != body.amount) or \
                    refund.reason != body.reason.strip():
                raise ConflictError(
                    f"Idempotency-Key {idempotency_key!r} was used for refund {refund.id} "
                    f"({refund.amount} fen); send a new key for a different refund")
            response.status_code = 200
        response.headers["Location"] = f"/v1/refunds/{refund.id}"
        return refund_out(refund, self.tz)

    def get_refund(
        self,
        refund_id: SaleId,
        wait: Annotated[float | None, Query(
            ge=0, description=f"long-poll up to this many seconds (at most {MAX_WAIT_S:g}) "
            "for the refund to change")] = None,
    ) -> RefundOut:
        """A refund; with ``wait``, once it changes (or is final, or time is up)."""
        refund = self.engine.get_refund(refund_id)
        if wait is not None and not refund.final:
            refund = await_refund(self.engine, refund, min(wait, MAX_WAIT_S))
        return refund_out(refund, self.tz)

    def list_refunds(
        self,
        sale_id: int | None = None,
        day: Annotated[str | None, Query(
            alias="date", examples=["2024-05-01"], json_schema_extra=DAY_FORMAT,
            description="YYYY-MM-DD, the store's local day the refund was asked for. Default: "
            "every day when sale_id is given, else today.")] = None,
    ) -> RefundList:
        """Refunds of one sale and/or one day, oldest first."""
        since = until = None
        if day is not None or sale_id is None:
            since, until = day_bounds(self._day(day), self.tz)
        refunds = self.engine.list_refunds(sale_id=sale_id, since=since, until=until)
        return RefundList(refunds=[refund_out(r, self.tz) for r in refunds])

    def resolve_sale(self, sale_id: SaleId, body: ResolveRequest) -> SaleOut:
        """A person records how a needs_attention sale ended. Manager token only.

        409 for a sale that does not need attention; its history keeps what happened."""
        return self._out(self.engine.resolve(sale_id, body.as_, body.note))

    def report_daily(
        self,
        day: Annotated[str | None, Query(alias="date", examples=["2024-05-01"],
                                         json_schema_extra=DAY_FORMAT,
                                         description="YYYY-MM-DD; default today")] = None,
    ) -> DailyReportOut:
        """The Z-report of one day: per channel counts and totals (fen), net, open issues."""
        return report_out(self.daily(parse_day(day) if day is not None else None))

    def _reconciler(self) -> Reconciler:
        if self.reconciler is None:
            raise ConflictError("this API was started without reconciliation")
        return self.reconciler

    def list_reconciliations(
        self,
        day: Annotated[str | None, Query(
            alias="date", examples=["2024-05-01"], json_schema_extra=DAY_FORMAT,
            description="the bill day YYYY-MM-DD (Beijing); default: the last 7 days")] = None,
        channel: Annotated[str | None, Query(max_length=32)] = None,
    ) -> ReconciliationList:
        """Kept reconciliation results, newest day first, with every difference and what
        a person recorded about it."""
        store = self._reconciler().store
        if day is not None:
            rows = store.reconciliations(day=parse_day(day).isoformat(), channel=channel)
        else:
            since = (yesterday(time.time()) - timedelta(days=6)).isoformat()
            rows = store.reconciliations(since_day=since, channel=channel)
        return _reconciliation_list(rows)

    def run_reconciliation(self, body: ReconcileRequest) -> ReconciliationList:
        """Run a bill day now (manager token): download the bills, judge, ask the channel
        about each difference, keep the result. Takes as long as the channels take."""
        reconciler = self._reconciler()
        day = parse_day(body.date) if body.date else yesterday(time.time())
        reconciler.run(day, [body.channel] if body.channel else None)
        return _reconciliation_list(reconciler.store.reconciliations(
            day=day.isoformat(), channel=body.channel))

    def resolve_difference(self, difference_id: SaleId,
                           body: DifferenceResolveRequest) -> dict[str, Any]:
        """Record what a person did about a difference (manager token); 409 if resolved."""
        reconciler = self._reconciler()
        return reconciler.store.resolve_difference(
            difference_id, body.note, time.time(), store_id=reconciler.store_id,
            terminal_id=reconciler.terminal_id)

    def health_answer(self) -> tuple[int, bytes]:
        """(status, JSON body) of ``GET /v1/health``: 200 with the engine's figures, 503
        ``down`` when the database is unusable. Called on the event loop (by
        :class:`~posd.api.middleware.HealthFirst`, ahead of the router, and by the route):
        the engine's health reads a read-only connection and a few indexed rows (~0.2 ms),
        never waiting for a writer's lock."""
        try:
            figures = self.engine.health()
        except StoreError as err:
            down = HealthOut(status="down", version=__version__, degraded=[str(err)])
            return 503, down.model_dump_json().encode()
        body = HealthOut.model_validate({**figures, "version": __version__})
        return 200, body.model_dump_json().encode()

    async def health(self) -> Response:
        """Liveness plus what is degraded. No token needed.

        GET and HEAD are answered by HealthFirst before they reach the router: this route
        documents the answer in /openapi.json (and serves an app without that layer)."""
        status, body = self.health_answer()
        return Response(body, status_code=status, media_type="application/json")


def _reconciliation_list(rows: list[dict[str, Any]]) -> ReconciliationList:
    return ReconciliationList(verdict=verdict(rows),
                              reconciliations=[row_json(r) for r in rows])  # type: ignore[misc]


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


def await_refund(engine: Engine, refund: Refund, wait: float) -> Refund:
    """The refund once its state changes or it is final, else after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    seen = refund.state
    while refund.state == seen and not refund.final and not engine.stopping:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        refund = engine.wait_for_refund(refund.id, since=refund.updated_at, timeout=left)
    return refund


def _add_routes(app: FastAPI, routes: _Routes) -> None:
    v1 = APIRouter(prefix="/v1", dependencies=[Security(_bearer)], responses=ERROR_RESPONSES)
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
    manager = [Depends(require_manager)]
    forbidden: dict[int | str, dict[str, Any]] = {
        403: {"model": ErrorOut, "description": "Not the manager's token"}}
    v1.add_api_route("/sales/{sale_id}/refunds", routes.create_refund, methods=["POST"],
                     status_code=201, response_model=RefundOut, dependencies=manager,
                     responses={**forbidden,
                                200: {"model": RefundOut, "description": "Idempotency-Key replayed"},
                                409: {"model": ErrorOut, "description": "Not paid, a refund in "
                                      "flight, or more than is left"}})
    v1.add_api_route("/refunds/{refund_id}", routes.get_refund, methods=["GET"],
                     response_model=RefundOut)
    v1.add_api_route("/refunds", routes.list_refunds, methods=["GET"], response_model=RefundList)
    v1.add_api_route("/sales/{sale_id}/resolve", routes.resolve_sale, methods=["POST"],
                     response_model=SaleOut, dependencies=manager,
                     responses={**forbidden, 409: {"model": ErrorOut, "description":
                                                   "The sale does not need attention"}})
    v1.add_api_route("/reconciliations", routes.list_reconciliations, methods=["GET"],
                     response_model=ReconciliationList)
    v1.add_api_route("/reconciliations", routes.run_reconciliation, methods=["POST"],
                     response_model=ReconciliationList, dependencies=manager,
                     responses={**forbidden})
    v1.add_api_route("/reconciliations/differences/{difference_id}/resolve",
                     routes.resolve_difference, methods=["POST"], dependencies=manager,
                     responses={**forbidden, 409: {"model": ErrorOut,
                                                   "description": "Resolved already"}})
    app.include_router(v1)
    app.add_api_route("/v1/health", routes.health, methods=["GET"], response_model=HealthOut,
                      responses={503: {"model": HealthOut, "description": "Database unusable"}})


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
               daily: Callable[[date | None], DailyReport] | None = None,
               manager_token: str | None = None,
               reconciler: Reconciler | None = None,
               receipt_png: ReceiptPng | None = None,
               reprint: Reprint | None = None) -> FastAPI:
    """The API app over ``engine``. Dates and times are in ``store_timezone`` (None: local).

    ``daily(day)`` makes the report of a business day (None: the current one); the daemon
    passes posd.devices.print_queue's, which sums in SQL with the business-day cut-off. Default: the
    engine's sales of a calendar day.
    """
    if not token.strip():
        raise ConfigError("api token is empty: put a random token in api.token_file")
    app = FastAPI(title="posd", version=__version__, redoc_url=None, docs_url=None,
                  description="Payment-code payments at the counter: the register's API.")
    install_error_handlers(app)
    routes = _Routes(engine, store_timezone, daily, reconciler)
    _add_routes(app, routes)
    secret, manager = token.encode(), manager_token.encode() if manager_token else None
    add_page(app, roles=lambda given: role_of(given.encode(), secret, manager),
             get_sale=engine.get, receipt_png=receipt_png, reprint=reprint)
    _add_docs(app)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(TokenAuth, token=token, manager_token=manager_token)
    app.add_middleware(HealthFirst, answer=routes.health_answer)  # added last = runs first
    return app


