# SPDX-License-Identifier: MIT
"""HTTP for channel clients: one no-retry session, bounded bodies, failures as values. [shell]

Transport failures map by urllib3's rule (``Retry._is_connection_error``: "fairly sure that the
server did not receive the request"; ``_is_read_error``: "assume that the server began
processing it"): only a failed connect or TLS handshake is ``Unknown(may_have_arrived=False)``;
a read timeout, a reset or close after sending, anything else is ``may_have_arrived=True``.
``requests.ConnectionError`` wraps both kinds, so the whole cause chain is read.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, ProtocolError, ReadTimeoutError
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.retry import Retry

from posd.core.sale import Unknown

#: OpenSSL reasons meaning the TLS handshake was refused: the peer's HTTP layer never saw us.
_HANDSHAKE_REASONS: Final = (
    "ALERT", "HANDSHAKE", "CERTIFICATE", "WRONG_VERSION_NUMBER", "UNSUPPORTED_PROTOCOL",
    "NO_PROTOCOLS_AVAILABLE",
)  # fmt: skip
_COULD_NOT_CONNECT: Final = "could not connect"
_HANDSHAKE: Final = "TLS handshake failed"
_TLS_FILES: Final = "cannot use the TLS files"


def session() -> requests.Session:
    """A session that never retries (a retried POST could pay twice) and ignores the environment."""
    http = requests.Session()
    # The config is the only source: no proxies, CA bundles or netrc from the environment.
    http.trust_env = False
    adapter = HTTPAdapter(max_retries=Retry(total=0, read=False, redirect=False))
    http.mount("https://", adapter)
    http.mount("http://", adapter)
    return http


def post(
    session: requests.Session,
    url: str,
    body: bytes,
    *,
    content_type: str,
    timeout: tuple[float, float],
    verify: str | bool,
    limit: int,
    what: str,
    cert: tuple[str, str] | None = None,
) -> bytes | Unknown:
    """POST once (no retries, no redirects) and return the body of a 200, at most ``limit``
    bytes; anything else is Unknown, classified by :func:`failure`'s urllib3 rule."""
    answer = exchange(session, url, body, headers={"Content-Type": content_type},
                      timeout=timeout, verify=verify, limit=limit, what=what, cert=cert)
    if isinstance(answer, Unknown):
        return answer
    status, data = answer
    if status != HTTPStatus.OK:
        return Unknown(f"{what}: HTTP {status}")
    return data


@dataclass(frozen=True, slots=True)
class Received:
    """An HTTP answer as it came: status, headers and a body of at most the limit."""

    status: int
    headers: dict[str, str]
    body: bytes


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: dict[str, str],
    timeout: tuple[float, float],
    verify: str | bool,
    limit: int,
    what: str,
    cert: tuple[str, str] | None = None,
) -> Received | Unknown:
    """One request (no retries, no redirects): whatever answer came, with its headers, or
    Unknown classified by :func:`failure`'s urllib3 rule."""
    try:
        with session.request(
            method,
            url,
            data=body,
            headers=headers,
            timeout=timeout,
            verify=verify,
            cert=cert,
            stream=True,
            allow_redirects=False,
        ) as response:
            data = read_bounded(response, limit, what)
            if isinstance(data, Unknown):
                return data
            return Received(response.status_code, dict(response.headers), data)
    except (OSError, Urllib3Error) as err:  # requests.RequestException is an OSError
        return failure(what, err)


def exchange(
    session: requests.Session,
    url: str,
    body: bytes,
    *,
    headers: dict[str, str],
    timeout: tuple[float, float],
    verify: str | bool,
    limit: int,
    what: str,
    cert: tuple[str, str] | None = None,
) -> tuple[int, bytes] | Unknown:
    """POST once (no retries, no redirects): (status, body of at most ``limit`` bytes) of
    whatever answer came, or Unknown classified by :func:`failure`'s urllib3 rule. The HQ
    client uses it as the channel clients do."""
    got = send(session, "POST", url, body=body, headers=headers, timeout=timeout,
               verify=verify, limit=limit, what=what, cert=cert)
    return got if isinstance(got, Unknown) else (got.status, got.body)


def get(
    session: requests.Session,
    url: str,
    *,
    timeout: tuple[float, float],
    verify: str | bool,
    limit: int,
    what: str,
) -> tuple[int, bytes] | Unknown:
    """GET once (no retries, no redirects): (status, body of at most ``limit`` bytes), or
    Unknown. For downloads a signed answer pointed at (Alipay's bill URL)."""
    got = send(session, "GET", url, body=None, headers={}, timeout=timeout, verify=verify,
               limit=limit, what=what)
    return got if isinstance(got, Unknown) else (got.status, got.body)


def read_bounded(response: requests.Response, limit: int, what: str) -> bytes | Unknown:
    """The body of a ``stream=True`` response, or Unknown if it is larger than ``limit``.

    The read timeout bounds each socket read, not the whole body (urllib3's ``Timeout``
    docstring says the same); the cap bounds how much a trickling peer can send.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return Unknown(f"{what}: answer of {declared} bytes is too large")
    body = bytearray()
    for chunk in response.iter_content(chunk_size=8192):
        body += chunk
        if len(body) > limit:
            return Unknown(f"{what}: answer is larger than {limit} bytes")
    return bytes(body)


def causes(err: BaseException) -> list[BaseException]:
    """``err`` and everything it wraps (``__cause__``, ``__context__``, ``.reason``, args)."""
    chain = [err]
    for current in chain:  # grows while iterating: breadth first, each exception once
        reason = getattr(current, "reason", None)
        linked = (current.__cause__, current.__context__, reason, *current.args)
        chain += [x for x in linked if isinstance(x, BaseException) and x not in chain]
    return chain


def _handshake_failed(err: BaseException) -> bool:
    if isinstance(err, ssl.SSLCertVerificationError):
        return True
    if isinstance(err, ssl.SSLEOFError | ssl.SSLZeroReturnError):  # a close, not a refusal
        return False
    if isinstance(err, ssl.SSLError):
        return any(word in str(err.reason or "") for word in _HANDSHAKE_REASONS)
    return False


def failure(what: str, err: BaseException) -> Unknown:
    """The Unknown for an exception raised by ``requests`` while calling ``what``.

    A read-side error anywhere in the chain (ReadTimeoutError, ProtocolError) wins over a
    connect-side one: when in doubt, the request may have arrived.
    """
    chain = causes(err)
    if any(isinstance(e, ReadTimeoutError | ProtocolError) for e in chain):
        timed_out = any(isinstance(e, ReadTimeoutError) for e in chain)
        kind = "no answer in time (read timeout)" if timed_out else "connection lost after sending"
    elif any(isinstance(e, ConnectTimeoutError) for e in chain):  # incl. NewConnectionError
        kind = _COULD_NOT_CONNECT
    elif any(_handshake_failed(e) for e in chain):
        kind = _HANDSHAKE
    elif type(err) is OSError and err.errno is None:
        kind = _TLS_FILES  # requests checks the CA bundle / cert files exist, before sending
    else:
        kind = "transport error"
    never_sent = kind in (_COULD_NOT_CONNECT, _HANDSHAKE, _TLS_FILES)
    root = chain[-1]
    cause = " ".join(str(root).split())[:160]
    return Unknown(
        f"{what}: {kind} ({type(root).__name__}: {cause})", may_have_arrived=not never_sent
    )
