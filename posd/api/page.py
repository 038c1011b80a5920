# SPDX-License-Identifier: MIT
"""The cashier page's server side (DESIGN §11): its files, the login cookie, the receipt as a
picture, reprints. [shell]

The page itself is three files inside the package (``page_files/``: HTML, CSS, one script
with no dependencies), so it works with no internet and needs no build step. It talks to the
same API as a register: ``POST /v1/session`` with the API token once sets an HttpOnly,
SameSite=Strict cookie that authenticates its later requests (``TokenAuth``); a manager's
action sends the manager's token in the ``Authorization`` header, asked for when needed and
kept in the page's memory only. Every page response forbids other origins (a strict
Content-Security-Policy: the page can only talk to posd).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field

from posd.api.middleware import PAGE_ASSETS, SESSION_COOKIE, _error
from posd.api.models import ERROR_RESPONSES, ErrorOut, SaleId
from posd.core.errors import ConflictError
from posd.core.sale import Sale

#: The page's own files.
FILES = Path(__file__).with_name("page_files")
#: Nothing but posd itself: no CDN, no other host, no inline script, no framing.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store",
                    "X-Frame-Options": "DENY"}


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(min_length=1, max_length=512, description="the API token (or the "
                       "manager's): kept in an HttpOnly cookie, never shown to the page again")


class SessionOut(BaseModel):
    role: str = Field(description="cashier or manager")


#: Draws a sale's receipt as PNG bytes; queues its reprint (None: no printer).
ReceiptPng = Callable[[Sale], bytes]
Reprint = Callable[[Sale], bool]


def add_page(app: FastAPI, *, roles: Callable[[str], str | None],
             get_sale: Callable[[int], Sale], receipt_png: ReceiptPng | None = None,
             reprint: Reprint | None = None) -> None:
    """``/``, ``/page/…``, ``/v1/session`` and the receipt routes. ``roles(token)`` says
    what a token may do (TokenAuth's own comparison)."""
    app.mount(PAGE_ASSETS, StaticFiles(directory=FILES), name="page")

    def index() -> FileResponse:
        return FileResponse(FILES / "index.html", media_type="text/html; charset=utf-8",
                            headers=SECURITY_HEADERS)

    app.add_api_route("/", index, methods=["GET"], include_in_schema=False)
    v1 = APIRouter(prefix="/v1", tags=["cashier page"], responses=ERROR_RESPONSES)

    def login(body: LoginRequest, request: Request, response: Response) -> SessionOut | JSONResponse:
        """Log the page in: the token goes into an HttpOnly, SameSite=Strict cookie."""
        role = roles(body.token.strip())
        if role is None:
            return _error(401, "wrong token: use the one in api.token_file (or the manager's)")
        response.set_cookie(SESSION_COOKIE, body.token.strip(), httponly=True,
                            samesite="strict", path="/",
                            secure=request.url.scheme == "https")
        return SessionOut(role=role)

    def session(request: Request) -> SessionOut:
        """Who the page is logged in as."""
        return SessionOut(role=request.state.role)

    def logout(response: Response) -> Response:
        response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict")
        response.status_code = 204
        return response

    v1.add_api_route("/session", login, methods=["POST"], response_model=SessionOut,
                     responses={401: {"model": ErrorOut, "description": "Wrong token"}})
    v1.add_api_route("/session", session, methods=["GET"], response_model=SessionOut)
    v1.add_api_route("/session", logout, methods=["DELETE"], status_code=204)

    def receipt(sale_id: SaleId) -> Response:
        """The sale's receipt as a PNG picture, as the printer would print it."""
        if receipt_png is None:
            raise ConflictError("receipt pictures are not available here")
        return Response(receipt_png(get_sale(sale_id)), media_type="image/png",
                        headers={"Cache-Control": "no-store"})

    def reprint_receipt(sale_id: SaleId) -> dict[str, Any]:
        """Print the sale's receipt again (marked REPRINT) on the till's printer."""
        if reprint is None:
            raise ConflictError("this till has no printer (printer.kind = 'none')")
        queued = reprint(get_sale(sale_id))
        return {"queued": queued, "detail": "queued for the printer" if queued else
                "a reprint of it is already waiting for the printer"}

    v1.add_api_route("/sales/{sale_id}/receipt.png", receipt, methods=["GET"],
                     response_class=Response,
                     responses={200: {"content": {"image/png": {}}},
                                409: {"model": ErrorOut, "description": "No pictures here"}})
    v1.add_api_route("/sales/{sale_id}/reprint", reprint_receipt, methods=["POST"],
                     responses={409: {"model": ErrorOut, "description": "No printer here"}})
    app.include_router(v1)


def png_bytes(draw: Callable[[io.BytesIO], None]) -> bytes:
    out = io.BytesIO()
    draw(out)
    return out.getvalue()
