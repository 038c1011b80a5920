# SPDX-License-Identifier: MIT
"""The cashier page's server side without a browser (DESIGN §11): its files with no token and
a strict Content-Security-Policy, the login cookie (HttpOnly, SameSite=Strict) standing in for
the bearer token, a cookie-made change refused without the page's header (CSRF), logout, the
receipt as a PNG picture, reprints through the print queue."""

from __future__ import annotations

import threading

import requests


from tests.shell.test_refund_api import MANAGER, Shop, _shop  # noqa: F401 - the fixture
from tests.waiting import TOKEN

PAGE = {"X-Posd-Page": "1"}


def test_page_files_are_public_and_talk_only_to_posd(shop: Shop) -> None:
    index = requests.get(shop.url + "/", timeout=10)
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert "/page/app.js" in index.text and "http" not in index.text.split("<body>")[1]
    csp = index.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    for name in ("app.js", "app.css"):
        asset = requests.get(f"{shop.url}/page/{name}", timeout=10)
        assert asset.status_code == 200 and "https://" not in asset.text
    assert requests.get(shop.url + "/docs", timeout=10).status_code == 200  # offline assets


def test_login_cookie_stands_for_the_token(shop: Shop) -> None:
    s = requests.Session()
    wrong = s.post(shop.url + "/v1/session", json={"token": "nope"}, timeout=10)
    assert wrong.status_code == 401 and "wrong token" in wrong.json()["detail"]
    assert s.get(shop.url + "/v1/sales", timeout=10).status_code == 401
    ok = s.post(shop.url + "/v1/session", json={"token": TOKEN}, timeout=10)
    assert ok.status_code == 200 and ok.json() == {"role": "cashier"}
    cookie = ok.headers["set-cookie"]
    assert "posd_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert s.get(shop.url + "/v1/sales", timeout=10).status_code == 200
    assert s.get(shop.url + "/v1/session", timeout=10).json() == {"role": "cashier"}
    # a change made with the cookie needs the page's own header (no other site can add it)
    forged = s.post(shop.url + "/v1/sales", json={"amount": 100}, timeout=10)
    assert forged.status_code == 403 and "X-Posd-Page" in forged.json()["detail"]
    made = s.post(shop.url + "/v1/sales", json={"amount": 100}, headers=PAGE, timeout=10)
    assert made.status_code == 201
    assert s.post(f"{shop.url}/v1/sales/{made.json()['id']}/cancel", headers=PAGE,
                  timeout=10).json()["state"] == "cancelled"
    # the manager's token in the header wins over the cashier's cookie
    assert s.get(shop.url + "/v1/session", headers={"Authorization": f"Bearer {MANAGER}"},
                 timeout=10).json() == {"role": "manager"}
    assert s.delete(shop.url + "/v1/session", headers=PAGE, timeout=10).status_code == 204
    assert s.get(shop.url + "/v1/sales", timeout=10).status_code == 401


def test_receipt_picture_and_reprint(shop: Shop) -> None:
    sale = shop.paid("wechat", 1250, 1)
    png = shop.call("GET", f"/v1/sales/{sale['id']}/receipt.png", token=TOKEN)
    assert png.status_code == 200 and png.headers["content-type"] == "image/png"
    assert png.content[:8] == b"\x89PNG\r\n\x1a\n"
    assert shop.call("GET", "/v1/sales/999/receipt.png", token=TOKEN).status_code == 404
    assert "REPRINT" not in shop.receipts.getvalue()
    first = shop.call("POST", f"/v1/sales/{sale['id']}/reprint", token=TOKEN)
    assert first.status_code == 200 and first.json()["queued"] is True
    # the print worker prints it, in its own thread
    done = threading.Event()
    for _ in range(100):
        if "REPRINT" in shop.receipts.getvalue():
            done.set()
            break
        done.wait(0.1)  # another thread prints it; nothing here to wait on
    assert done.is_set() and "REPRINT" in shop.receipts.getvalue()
