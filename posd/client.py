# SPDX-License-Identifier: MIT
"""The CLI's side of the local API: ``posd charge``, ``cancel``, ``sales``, ``refund``,
``refunds`` and ``resolve`` talk to the daemon."""

from __future__ import annotations

import ssl
import sys
import uuid
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from posd.config import Config
from posd.config_base import read_secret
from posd.core.errors import ConfigError, PosdError
from posd.core import sale as sale_states
from posd.core.money import parse_yuan

FINAL = frozenset(state.value for state in sale_states.FINAL)


class ApiError(PosdError):
    """The daemon refused the request or could not be reached; carries the exit code (and,
    for a long-poll answered 503 at shutdown, the sale as it stood)."""

    def __init__(self, message: str, exit_code: int, sale: Any = None) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.sale = sale


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
    def from_config(cls, config: Config, *, manager: bool = False) -> ApiClient:
        """A client with the cashier's token, or with the manager's (``manager``: refunds and
        resolving; ConfigError when ``api.manager_token_file`` is not set)."""
        if manager:
            if config.api.manager_token_file is None:
                raise ConfigError("refunds and resolving need the manager's token: set "
                                  "api.manager_token_file (docs/refunds.md)")
            token = read_secret(config.api.manager_token_file,
                                "api.manager_token_file").decode().strip()
        else:
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
            sale = None
            try:
                body = response.json()
                detail = body.get("detail", response.text)
                sale = body.get("sale")
            except (ValueError, AttributeError):
                detail = response.text
            # 409/422: the request itself is wrong; 503: posd is stopping, try again shortly.
            code = {409: 65, 422: 65, 503: 69}.get(response.status_code, 1)
            raise ApiError(f"{response.status_code}: {detail}", code, sale)
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

    def refund(self, sale_id: int, amount: int | None, reason: str) -> Any:
        body: dict[str, Any] = {"reason": reason}
        if amount is not None:
            body["amount"] = amount
        # One key per command: a retried HTTP call cannot make a second refund.
        headers = {"Idempotency-Key": str(uuid.uuid4())}
        return self._call("POST", f"/v1/sales/{sale_id}/refunds", json=body, headers=headers)

    def wait_refund(self, refund_id: int, seconds: float = 25.0) -> Any:
        return self._call("GET", f"/v1/refunds/{refund_id}", params={"wait": seconds},
                          read_timeout=seconds + 10)

    def list_refunds(self, *, date: str | None = None) -> Any:
        params = {"date": date} if date else {}
        return self._call("GET", "/v1/refunds", params=params)["refunds"]

    def resolve(self, sale_id: int, as_: str, note: str) -> Any:
        return self._call("POST", f"/v1/sales/{sale_id}/resolve",
                          json={"as": as_, "note": note})

    def health(self) -> Any:
        """GET /v1/health (no token needed): what the running daemon says about itself."""
        return self._call("GET", "/v1/health", read_timeout=5.0)

    def close(self) -> None:
        self._session.close()


#: ``posd charge``'s exit codes (docs/cli.md): paid, not paid, needs attention, and "not
#: known yet" -- posd stopped or could not be reached while the sale was still in flight.
EXIT_PAID, EXIT_NOT_PAID, EXIT_ATTENTION, EXIT_NOT_KNOWN_YET = 0, 1, 3, 75


class Display:
    """What the cashier sees while a sale is followed: on a terminal one line redrawn in
    place with the seconds left before the reverse; otherwise a plain line per change."""

    def __init__(self, stream: Any, *, live: bool | None = None,
                 clock: Any = None) -> None:
        import time

        self._stream = stream
        self._live = stream.isatty() if live is None else live
        self._clock = clock or time.time
        self._last = ""
        self._width = 0

    @property
    def live(self) -> bool:
        return self._live

    def line(self, sale: Any) -> str:
        text = f"sale {sale['id']}: {sale['state']} - {sale['message']}"
        left = seconds_left(sale, self._clock())
        if left is not None:
            text += f" ({left} s before posd reverses it)"
        return text

    def show(self, sale: Any) -> None:
        text = self.line(sale)
        if text == self._last:
            return
        if self._live:
            pad = " " * max(0, self._width - len(text))
            self._stream.write(f"\r{text}{pad}")
            self._width = len(text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()
        self._last = text

    def done(self) -> None:
        if self._live and self._last:
            self._stream.write("\n")
            self._stream.flush()
        self._last = ""


def seconds_left(sale: Any, now: float) -> int | None:
    """Whole seconds until posd reverses a sale still being paid, or None."""
    from datetime import datetime

    at = sale.get("deadline_at")
    if sale["state"] not in ("paying", "confirming") or not at:
        return None
    deadline = at if isinstance(at, int | float) else datetime.fromisoformat(at).timestamp()
    return max(0, int(deadline - now + 0.999))


def charge(client: ApiClient, amount_text: str, *, code: str | None, order: str | None,
           as_json: bool, display: Display | None = None) -> int:
    """Create a sale and follow it to a final state. Exit codes: ``EXIT_*`` above."""
    import json

    amount = parse_yuan(amount_text)
    sale = client.create_sale(amount, code=code, order=order)
    display = display or Display(sys.stderr if as_json else sys.stdout)
    display.show(sale)
    while sale["state"] not in FINAL:
        try:
            # On a terminal, wake every second to count down; else only on a change.
            sale = client.wait(sale["id"], sale["state"], 1.0 if display.live else 25.0)
        except ApiError as err:
            # Whatever went wrong while following a sale that exists (posd stopping, gone,
            # an error), its outcome is not known here: never say "not paid".
            display.done()
            stuck = getattr(err, "sale", None) or sale
            print(f"not known yet: posd keeps working on sale {sale['id']} (last seen "
                  f"{stuck['state']}: {stuck['message']}); do not take another payment for "
                  f"it -- follow it with `posd sales` or GET /v1/sales/{sale['id']} "
                  f"({err})", file=sys.stderr, flush=True)
            return EXIT_NOT_KNOWN_YET
        display.show(sale)
    display.done()
    if as_json:
        print(json.dumps(sale, ensure_ascii=False, indent=2))
    return {"paid": EXIT_PAID, "needs_attention": EXIT_ATTENTION}.get(sale["state"],
                                                                        EXIT_NOT_PAID)


def print_sales(sales: list[Any]) -> None:
    if not sales:
        print("no sales")
        return
    print(f"{'id':>5}  {'time':19}  {'amount':>10}  {'channel':7}  {'state':15}  out_trade_no")
    for s in sales:
        amount = f"{s['amount'] // 100}.{s['amount'] % 100:02d}"
        print(f"{s['id']:>5}  {s['created_at'][:19]:19}  {amount:>10}  {s['channel'] or '-':7}  "
              f"{s['state']:15}  {s['out_trade_no']}")


#: ``posd refund``'s exit codes: refunded; not refunded (refund_failed); needs attention;
#: not known yet (posd goes on with it).
EXIT_REFUNDED, EXIT_NOT_REFUNDED = 0, 1


def refund(client: ApiClient, sale_id: int, amount_text: str | None, reason: str, *,
           as_json: bool) -> int:
    """Ask for a refund and follow it to a final state (a WeChat refund is first queried a
    minute after it was accepted: the command waits that long)."""
    import json

    amount = parse_yuan(amount_text) if amount_text is not None else None
    made = client.refund(sale_id, amount, reason)
    out = sys.stderr if as_json else sys.stdout
    print(f"refund {made['id']} of sale {sale_id}: {_yuan(made['amount'])} - {made['message']}",
          file=out, flush=True)
    while not made["final"]:
        try:
            made = client.wait_refund(made["id"])
        except ApiError as err:
            print(f"not known yet: posd keeps working on refund {made['id']} (last seen "
                  f"{made['state']}); do not refund this sale another way -- follow it with "
                  f"`posd refunds` ({err})", file=sys.stderr, flush=True)
            return EXIT_NOT_KNOWN_YET
    if as_json:
        print(json.dumps(made, ensure_ascii=False, indent=2))
    else:
        print(f"refund {made['id']}: {made['state']} {_yuan(made['amount'])} - "
              f"{made['message']} (refund no. {made['out_refund_no']})")
    return {"refunded": EXIT_REFUNDED, "needs_attention": EXIT_ATTENTION}.get(
        made["state"], EXIT_NOT_REFUNDED)


def _yuan(fen: int) -> str:
    return f"{fen // 100}.{fen % 100:02d}"


def print_refunds(refunds: list[Any]) -> None:
    if not refunds:
        print("no refunds")
        return
    print(f"{'id':>5}  {'time':19}  {'sale':>5}  {'amount':>10}  {'state':15}  out_refund_no")
    for r in refunds:
        print(f"{r['id']:>5}  {r['created_at'][:19]:19}  {r['sale_id']:>5}  "
              f"{_yuan(r['amount']):>10}  {r['state']:15}  {r['out_refund_no']}")
