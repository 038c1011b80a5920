# SPDX-License-Identifier: MIT
"""The CLI's side of the local API: ``posd charge``, ``cancel`` and ``sales`` talk to the daemon."""

from __future__ import annotations

import ssl
import sys
import uuid
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from posd.config import Config, read_secret
from posd.errors import PosdError
from posd.money import parse_yuan

FINAL = {"paid", "declined", "reversed", "cancelled", "needs_attention"}


class ApiError(PosdError):
    """The daemon refused the request or could not be reached; carries the exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PinnedCertificate(HTTPAdapter):
    """HTTPS that trusts the API's own certificate (``api.tls_cert_file``), self-signed or
    issued by a CA: the certificate itself is the trust anchor (X509_V_FLAG_PARTIAL_CHAIN);
    the host name is still checked against it."""

    def __init__(self, cert_file: str) -> None:
        self._context = ssl.create_default_context(cafile=cert_file)
        self._context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


class ApiClient:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0, *,
                 cert_file: str | None = None) -> None:
        self._base = base_url.rstrip("/")
        self._session = requests.Session()
        self._session.headers["Authorization"] = f"Bearer {token}"
        self._timeout = timeout
        if cert_file is not None:
            self._session.verify = cert_file
            self._session.mount("https://", PinnedCertificate(cert_file))

    @classmethod
    def from_config(cls, config: Config) -> ApiClient:
        token = read_secret(config.api.token_file, "api.token_file").decode().strip()
        host = config.api.host
        if host in ("0.0.0.0", "::", ""):
            host = "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        if config.api.tls:
            return cls(f"https://{host}:{config.api.port}", token,
                       cert_file=str(config.api.tls_cert_file))
        return cls(f"http://{host}:{config.api.port}", token)

    def _call(self, method: str, path: str, *, read_timeout: float | None = None,
              **kwargs: Any) -> Any:
        try:
            response = self._session.request(
                method, self._base + path, timeout=(3.0, read_timeout or self._timeout), **kwargs)
        except requests.ConnectionError as err:
            raise ApiError(f"posd is not running at {self._base} ({type(err).__name__})", 69) from err
        except requests.Timeout as err:
            raise ApiError(f"posd at {self._base} did not answer in time", 69) from err
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            # 409/422: the request itself is wrong; 503: posd is stopping, try again shortly.
            code = {409: 65, 422: 65, 503: 69}.get(response.status_code, 1)
            raise ApiError(f"{response.status_code}: {detail}", code)
        return response.json()

    def create_sale(self, amount: int, *, code: str | None, order: str | None) -> Any:
        body: dict[str, Any] = {"amount": amount}
        if code:
            body["auth_code"] = code
        if order:
            body["order_ref"] = order
        # One key per charge: a retried HTTP call cannot create a second sale.
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        return self._call("POST", "/v1/sales", json=body, headers=headers)

    def wait(self, sale_id: int, seen_state: str, seconds: float = 25.0) -> Any:
        """The sale once it is no longer in ``seen_state`` (or is final), else after ``seconds``.

        Passing the state we last showed means a change that happened between two calls is
        answered at once, not missed until the next one.
        """
        params = {"wait": seconds, "seen_state": seen_state}
        return self._call("GET", f"/v1/sales/{sale_id}", params=params,
                          read_timeout=seconds + 10)

    def cancel(self, sale_id: int) -> Any:
        return self._call("POST", f"/v1/sales/{sale_id}/cancel")

    def list_sales(self, *, date: str | None = None) -> Any:
        params = {"date": date} if date else {}
        return self._call("GET", "/v1/sales", params=params)["sales"]

    def health(self) -> Any:
        """GET /v1/health (no token needed): what the running daemon says about itself."""
        return self._call("GET", "/v1/health", read_timeout=5.0)

    def close(self) -> None:
        self._session.close()


def charge(client: ApiClient, amount_text: str, *, code: str | None, order: str | None,
           as_json: bool) -> int:
    """Create a sale and follow it to a final state. 0 paid, 1 not paid, 3 needs attention."""
    import json

    amount = parse_yuan(amount_text)
    sale = client.create_sale(amount, code=code, order=order)
    _show(sale, as_json)
    while sale["state"] not in FINAL:
        before = (sale["state"], sale["message"])
        sale = client.wait(sale["id"], sale["state"])
        if (sale["state"], sale["message"]) != before:
            _show(sale, as_json)
    if as_json:
        print(json.dumps(sale, ensure_ascii=False, indent=2))
    return {"paid": 0, "needs_attention": 3}.get(sale["state"], 1)


def _show(sale: Any, as_json: bool) -> None:
    stream = sys.stderr if as_json else sys.stdout
    print(f"sale {sale['id']}: {sale['state']} - {sale['message']}", file=stream, flush=True)


def print_sales(sales: list[Any]) -> None:
    if not sales:
        print("no sales")
        return
    print(f"{'id':>5}  {'time':19}  {'amount':>10}  {'channel':7}  {'state':15}  out_trade_no")
    for s in sales:
        amount = f"{s['amount'] // 100}.{s['amount'] % 100:02d}"
        print(f"{s['id']:>5}  {s['created_at'][:19]:19}  {amount:>10}  {s['channel'] or '-':7}  "
              f"{s['state']:15}  {s['out_trade_no']}")
