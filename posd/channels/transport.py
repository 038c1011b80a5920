# SPDX-License-Identifier: MIT
"""HTTP for channel clients: one no-retry session, bounded bodies, failures as values. [shell]

Transport failures map by urllib3's rule (``Retry._is_connection_error``: "fairly sure that the
server did not receive the request"; ``_is_read_error``: "assume that the server began
processing it"): only a failed connect or TLS handshake is ``Unknown(may_have_arrived=False)``;
a read timeout, a reset or close after sending, anything else is ``may_have_arrived=True``.
``requests.ConnectionError`` wraps both kinds, so the whole cause chain is read.

TLS: one ``ssl.SSLContext`` per (CA bundle, client certificate) in the process, made at the
first request that needs it and kept (:class:`Adapter`, :func:`tls_context`): a WeChat and
an Alipay client verifying with the same bundle share one. Left to themselves, requests and
urllib3 make a context for every new connection and load the CA bundle into it: certifi's
~150 certificates, tens of milliseconds of CPU and ~0.8 MB held as long as that connection
lives, each time a pool opens a connection (after a keep-alive expired, a reset, a second
request at once). Verification is unchanged: urllib3's context (TLS 1.2+, its ciphers),
``CERT_REQUIRED`` and OpenSSL's hostname check, as requests' own would be.
"""

from __future__ import annotations

import os
import ssl
import threading
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import requests
from requests.adapters import HTTPAdapter
from requests.utils import DEFAULT_CA_BUNDLE_PATH
from urllib3.util.ssl_ import create_urllib3_context
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


Verify = str | bool
Cert = str | tuple[str, str] | None  #: a file with both, or (certificate, key)


_contexts: dict[tuple[Verify, Cert], ssl.SSLContext] = {}
_contexts_lock = threading.Lock()


def tls_context(verify: Verify, cert: Cert) -> ssl.SSLContext:
    """The process's context for ``verify`` (True: certifi's bundle; a file or directory of
    CAs) and ``cert`` (client certificate and key files), made at the first call. The files
    are read then, once: a bundle changed on disk is read at the next start (a context that
    could not be made is not kept: the next call tries again)."""
    with _contexts_lock:
        if (context := _contexts.get((verify, cert))) is None:
            context = _contexts[verify, cert] = _make_context(verify, cert)
        return context


class Adapter(HTTPAdapter):
    """requests' adapter that gives each pool the process's TLS context for its (``verify``,
    ``cert``) (:func:`tls_context`).

    Pools are keyed by that context (urllib3's ``PoolKey.key_ssl_context``), and their
    connections are given it with no CA file or certificate of their own to load. A CA
    bundle or client certificate that cannot be used is a :class:`TlsFilesError` before
    anything is sent (:func:`failure`: "cannot use the TLS files", never arrived); it is
    tried again at the next request, not remembered.
    """

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Verify, cert: Cert = None,
    ) -> tuple[Any, Any]:  # requests' TypedDicts exist only for type checkers
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert)
        if host_params["scheme"] == "https" and verify is not False:
            pool_kwargs = {"ssl_context": tls_context(verify, cert),
                           "cert_reqs": "CERT_REQUIRED"}
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Verify, cert: Any) -> None:
        if not (url.lower().startswith("https") and verify is not False):
            super().cert_verify(conn, url, verify, cert)  # type: ignore[no-untyped-call]
            return
        # The pool's context has the CAs and the certificate: nothing for a connection to load.
        conn.cert_reqs = "CERT_REQUIRED"
        conn.ca_certs = conn.ca_cert_dir = conn.cert_file = conn.key_file = None


class TlsFilesError(OSError):
    """A CA bundle or client certificate that cannot be used, found before anything is sent.
    Raised with no cause or context: :func:`failure` names the file, not OpenSSL's wording
    about it."""


def _make_context(verify: Verify, cert: Cert) -> ssl.SSLContext:
    where = DEFAULT_CA_BUNDLE_PATH if verify is True else str(verify)
    context = create_urllib3_context(cert_reqs=ssl.CERT_REQUIRED)
    problem = ""
    try:
        if os.path.isdir(where):
            context.load_verify_locations(capath=where)
        else:
            context.load_verify_locations(cafile=where)
    except OSError as err:  # ssl.SSLError is one: a file with no certificate in it
        problem = f"CA bundle {where}: {err.strerror or err}"
    if cert and not problem:
        certfile, keyfile = (cert, None) if isinstance(cert, str) else cert
        try:
            context.load_cert_chain(certfile, keyfile)
        except OSError as err:
            problem = f"client certificate {certfile} / key {keyfile}: {err.strerror or err}"
    if problem:
        raise TlsFilesError(problem)  # outside the except: no __context__ to read past it
    return context


def session() -> requests.Session:
    """A session that never retries (a retried POST could pay twice), ignores the
    environment and keeps one TLS context per CA bundle and client certificate."""
    http = requests.Session()
    # The config is the only source: no proxies, CA bundles or netrc from the environment.
    http.trust_env = False
    adapter = Adapter(max_retries=Retry(total=0, read=False, redirect=False))
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
    elif isinstance(err, TlsFilesError):
        kind = _TLS_FILES  # Adapter loads the CA bundle and certificate files before sending
    else:
        kind = "transport error"
    never_sent = kind in (_COULD_NOT_CONNECT, _HANDSHAKE, _TLS_FILES)
    root = chain[-1]
    cause = " ".join(str(root).split())[:160]
    return Unknown(
        f"{what}: {kind} ({type(root).__name__}: {cause})", may_have_arrived=not never_sent
    )
