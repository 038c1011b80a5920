# SPDX-License-Identifier: MIT
"""What answers before a route does: errors as ``{"detail": sentence}``, ``GET /v1/health``
(:class:`HealthFirst`), the bearer-token check (:class:`TokenAuth`) and the body-size limit
(:class:`BodyLimit`), pure ASGI layers that run before a body is read or a route is matched.
A traceback never leaves the process."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posd.core.errors import (
    ConflictError,
    InputError,
    NotFoundError,
    PosdError,
    StoreError,
    UnavailableError,
)

from posd.api.models import MAX_BODY_BYTES

log = logging.getLogger(__name__)

#: The status light a register polls (DESIGN §4), answered by :class:`HealthFirst`.
HEALTH_PATH = "/v1/health"
#: Paths served without the token (DESIGN §4), and Swagger UI's own files under DOCS_ASSETS.
PUBLIC_PATHS = frozenset({HEALTH_PATH, "/openapi.json", "/docs", "/docs/oauth2-redirect", "/"})
#: The cashier page's own files (DESIGN §11): served without the token, like ``/``.
PAGE_ASSETS = "/page"
#: Where the page keeps the token it logged in with: HttpOnly (no script reads it), SameSite=
#: Strict (no other site's page sends it), Path=/ (DESIGN §11).
SESSION_COOKIE = "posd_session"
#: A request authenticated by the cookie that changes something must carry this header, which
#: only a script of the page's own origin can add (no form of another page can): a second
#: guard beside SameSite against cross-site request forgery.
PAGE_HEADER = b"x-posd-page"
#: Logging in (``POST /v1/session``) checks the token itself.
LOGIN_PATH = "/v1/session"
#: Where Swagger UI's files are served from (the swagger-ui-bundle package): /docs works at
#: a till with no internet, where FastAPI's default page loads them from a CDN.
DOCS_ASSETS = "/docs/assets"

_BODY_NOT_JSON = "send the body as JSON, with the header Content-Type: application/json"
_BODY_NOT_OBJECT = 'the request body must be a JSON object such as {"amount": 1250}'
_EXPLAIN = {"missing": "{field} is required", "extra_forbidden": "unknown field '{field}'"}
_AUTH_CODE_AS_STRING = (
    "auth_code must be the scanned payment code as a JSON string of digits, e.g. "
    '"134567890123450001" (as a JSON number an 18-digit code loses digits)'
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


def _cookie(scope: Scope, name: str) -> bytes | None:
    """One cookie's value from the Cookie header(s), or None."""
    for key, value in scope["headers"]:
        if key.lower() != b"cookie":
            continue
        for part in bytes(value).split(b";"):
            found, _, text = part.strip().partition(b"=")
            if found == name.encode():
                return text.strip()
    return None


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key.lower() == name:
            return bytes(value)
    return None


#: The role a request's token gives it, in ``request.state.role`` (routes check "manager").
CASHIER, MANAGER = "cashier", "manager"


def role_of(given: bytes, token: bytes, manager_token: bytes | None) -> str | None:
    """The role ``given`` (a token) has: manager, cashier, or None; both comparisons always
    made, in constant time."""
    cashier = hmac.compare_digest(given, token)
    manager = manager_token is not None and hmac.compare_digest(given, manager_token)
    return MANAGER if manager else CASHIER if cashier else None


class HealthFirst:
    """``GET``/``HEAD /v1/health`` answered before anything else runs: no token (it is
    public), no body, no routing, no request object, no dependency solving. A register polls
    it every second while the till sells; through the framework's stack a health answer cost
    ~0.3 ms more than its own reads (bench/year_till.py). Other methods and paths go on to
    the app, whose route of the same answer documents it in /openapi.json. An exception from
    ``answer`` reaches the app's error handler like a route's."""

    def __init__(self, app: ASGIApp, answer: Callable[[], tuple[int, bytes]]) -> None:
        self.app = app
        self.answer = answer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != HEALTH_PATH \
                or scope["method"] not in ("GET", "HEAD"):
            await self.app(scope, receive, send)
            return
        status, body = self.answer()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body",
                    "body": b"" if scope["method"] == "HEAD" else body})


class TokenAuth:
    """Refuse a request without ``Authorization: Bearer <token>`` before reading or routing it.

    Two tokens: the cashier's (``api.token_file``) and, when set, the manager's
    (``api.manager_token_file``), which can do everything the cashier's can and also refund and
    resolve; the role is put in ``scope["state"]["role"]`` for :func:`require_manager`. The
    comparisons are constant-time over bytes (:func:`hmac.compare_digest`), both always made;
    the scheme name is case-insensitive (RFC 7235).
    """

    def __init__(self, app: ASGIApp, token: str, manager_token: str | None = None) -> None:
        self.app = app
        self._token = token.encode("utf-8")
        self._manager = manager_token.encode("utf-8") if manager_token else None

    def role_of(self, given: bytes) -> str | None:
        return role_of(given, self._token, self._manager)

    def _role(self, scope: Scope) -> tuple[str | None, bool]:
        """(role, by the cookie). The header wins over the cookie (the page sends the
        manager's token in the header for a manager's action)."""
        header = _header(scope, b"authorization")
        if header is None:
            cookie = _cookie(scope, SESSION_COOKIE)
            return (None, False) if cookie is None else (self.role_of(cookie), True)
        scheme, _, credentials = header.partition(b" ")
        role = self.role_of(credentials.strip())
        return (role if scheme.lower() == b"bearer" else None), False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        role, by_cookie = self._role(scope) if scope["type"] == "http" else (None, False)
        if scope["type"] == "http":
            scope.setdefault("state", {})["role"] = role
        if role is not None and by_cookie and scope["method"] not in ("GET", "HEAD") \
                and _header(scope, PAGE_HEADER) is None:
            await _respond(_error(403, "a request made with the page's cookie must come from "
                                  "the page (X-Posd-Page header)"), scope, receive, send)
            return
        if scope["type"] != "http" or self._public(scope) or role is not None:
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
        if path == LOGIN_PATH and scope["method"] == "POST":
            return True
        return scope["method"] in ("GET", "HEAD") and (
            path in PUBLIC_PATHS or path.startswith((DOCS_ASSETS + "/", PAGE_ASSETS + "/")))


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


def install_error_handlers(app: FastAPI) -> None:
    """Every error as ``{"detail": sentence}``: posd's own, validation, and the unexpected."""
    app.add_exception_handler(PosdError, _posd_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


def require_manager(request: Request) -> None:
    """A route dependency: 403 with a sentence unless the manager's token came with it."""
    if getattr(request.state, "role", None) != MANAGER:
        raise HTTPException(403, "refunds and resolving need the manager's token (the one in "
                            "api.manager_token_file); the cashier's token cannot do this: ask "
                            "the store manager")
