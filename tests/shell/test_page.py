# SPDX-License-Identifier: MIT
"""The cashier page in a real browser (DESIGN §11): Debian's headless Chromium driven by
Selenium against the real daemon and the simulator. Sales taken on the page -- paid, a
customer confirming with the countdown moving, declined, cancelled into reversed (the Cancel
button saying "reversing", never "cancelled"), a partial refund by the manager -- on both
channels; the login cookie (HttpOnly, SameSite=Strict, nothing in storage or the URL); no
request off loopback. Screenshots go to ``$POSD_SCREENSHOTS`` (default: the test's tmp dir).

The browser is Debian's ``chromium`` + ``chromium-driver`` (``.ci/run`` installs them, and sets
``POSD_REQUIRE_BROWSER=1`` so that a missing browser fails rather than skips)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.shell.test_engine import code
from tests.shell.test_refund_api import MANAGER, Shop, _shop  # noqa: F401 - the fixture
from tests.waiting import TOKEN

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT_S = 40.0


@pytest.fixture(name="browser")
def _browser(tmp_path: Path) -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(DRIVER).exists()):
        if os.environ.get("POSD_REQUIRE_BROWSER"):
            pytest.fail("chromium and chromedriver are required (POSD_REQUIRE_BROWSER=1)")
        pytest.skip("no chromium/chromedriver: apt-get install chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1280,1400", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("POSD_SCREENSHOTS") or tmp_path / "screenshots")
    where.mkdir(parents=True, exist_ok=True)
    return where


def wait_for(browser: Any, what: Any, timeout: float = WAIT_S) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout, poll_frequency=0.1).until(what)


def text_of(browser: Any, element_id: str) -> str:
    return str(browser.find_element("id", element_id).text)


def state_is(*words: str) -> Any:
    return lambda b: text_of(b, "result-state") in words


def log_in(browser: Any, shop: Shop, token: str = TOKEN) -> None:
    browser.get(shop.url + "/")
    wait_for(browser, lambda b: b.find_element("id", "login").is_displayed())
    field = browser.find_element("id", "token")
    field.clear()
    field.send_keys(token)
    browser.find_element("css selector", "#login-form button").click()


def english(browser: Any) -> None:
    if browser.find_element("id", "lang").text == "English":
        browser.find_element("id", "lang").click()


def charge(browser: Any, amount: str, payment_code: str) -> None:
    browser.find_element("id", "amount").clear()
    browser.find_element("id", "amount").send_keys(amount)
    browser.find_element("id", "code").send_keys(payment_code)
    browser.find_element("id", "charge").click()


def next_sale(browser: Any) -> None:
    wait_for(browser, lambda b: b.find_element("id", "next").is_displayed())
    browser.find_element("id", "next").click()


def requested_hosts(browser: Any) -> set[str]:
    from urllib.parse import urlsplit

    hosts = set()
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            url = message["params"]["request"]["url"]
            if url.startswith(("http:", "https:", "ws:", "wss:")):  # not chrome://, data:
                hosts.add(urlsplit(url).hostname or "")
    return hosts


def test_login_cookie_and_nothing_sensitive_kept(browser: Any, shop: Shop,
                                                 tmp_path: Path) -> None:
    log_in(browser, shop, "not-the-token")
    wait_for(browser, lambda b: text_of(b, "login-error") != "")
    log_in(browser, shop)
    wait_for(browser, lambda b: b.find_element("id", "app").is_displayed())
    (cookie,) = browser.get_cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == (
        "posd_session", True, "Strict")
    assert browser.execute_script("return document.cookie") == ""  # no script can read it
    kept = browser.execute_script(
        "return JSON.stringify([localStorage, sessionStorage]) + location.href")
    assert TOKEN not in kept and "token" not in browser.current_url
    browser.refresh()  # the cookie keeps the page logged in
    wait_for(browser, lambda b: b.find_element("id", "app").is_displayed())
    browser.save_screenshot(str(shots(tmp_path) / "cashier-empty.png"))
    hosts = requested_hosts(browser)
    assert hosts == {"127.0.0.1"}, hosts


def test_cashier_takes_paid_confirming_declined_and_cancelled_sales(
        browser: Any, shop: Shop, tmp_path: Path) -> None:
    log_in(browser, shop)
    wait_for(browser, lambda b: b.find_element("id", "app").is_displayed())
    english(browser)
    # paid at once, on each channel, with the receipt as a picture and a reprint
    for n, channel in enumerate(("wechat", "alipay")):
        charge(browser, "12.50", code("0000", n, channel))
        wait_for(browser, state_is("PAID"))
        assert "12.50" in text_of(browser, "result-amount")
        assert channel in text_of(browser, "result-amount")
        wait_for(browser, lambda b: b.execute_script(
            "const i = document.getElementById('receipt-img'); "
            "return i.complete && i.naturalWidth > 0"))
        browser.find_element("id", "reprint").click()
        wait_for(browser, lambda b: "queued" in text_of(b, "reprint-note"))
        if channel == "wechat":
            browser.save_screenshot(str(shots(tmp_path) / "cashier-paid.png"))
            browser.find_element("id", "lang").click()  # 中文, and back
            wait_for(browser, state_is("已付款"))
            assert browser.find_element("id", "charge").text == "收款"
            assert browser.execute_script("return document.documentElement.lang") == "zh-CN"
            browser.find_element("id", "lang").click()
            wait_for(browser, state_is("PAID"))
        next_sale(browser)
    # declined, with posd's sentence
    charge(browser, "30.00", code("0003", 3, "alipay"))
    wait_for(browser, state_is("DECLINED"))
    assert text_of(browser, "result-message")
    next_sale(browser)
    # the customer never confirms: the countdown moves; Cancel says reversing, then reversed
    charge(browser, "8.00", code("0002", 4, "alipay"))
    wait_for(browser, state_is("Customer confirming…"))
    wait_for(browser, lambda b: text_of(b, "countdown").split(" ")[0].isdigit())
    first = int(text_of(browser, "countdown").split(" ")[0])
    wait_for(browser, lambda b: text_of(b, "countdown") and
             int(text_of(b, "countdown").split(" ")[0]) < first)
    browser.save_screenshot(str(shots(tmp_path) / "cashier-confirming.png"))
    browser.find_element("id", "cancel").click()
    wait_for(browser, state_is("Reversing…"))
    assert browser.find_element("id", "cancel").text == "Reversing…"
    assert "CANCELLED" not in text_of(browser, "result-state")
    wait_for(browser, state_is("REVERSED"), timeout=60)
    assert "no money taken" in text_of(browser, "result-message")
    # today's list has them all
    next_sale(browser)
    wait_for(browser, lambda b: len(b.find_elements("css selector", "#sales tr")) == 4)
    states = [e.get_attribute("data-state") for e in
              browser.find_elements("css selector", "#sales td[data-state]")]
    assert sorted(states) == ["declined", "paid", "paid", "reversed"]
    hosts = requested_hosts(browser)
    assert hosts == {"127.0.0.1"}, hosts


def test_manager_refunds_part_of_a_sale_and_sees_the_day(browser: Any, shop: Shop,
                                                         tmp_path: Path) -> None:
    sale = shop.paid("alipay", 5000, 1)
    shop.paid("wechat", 2000, 2)
    log_in(browser, shop)
    wait_for(browser, lambda b: b.find_elements("css selector", f"[data-refund='{sale['id']}']"))
    english(browser)
    browser.find_element("css selector", f"[data-refund='{sale['id']}']").click()
    dialog_token = wait_for(browser, lambda b: b.find_element("id", "manager-token")
                            if b.find_element("id", "manager-dialog").is_displayed() else None)
    dialog_token.send_keys(TOKEN)  # the cashier's token is not the manager's
    browser.find_element("css selector", "#manager-form button[value=ok]").click()
    wait_for(browser, lambda b: "not the manager" in text_of(b, "manager-error"))
    dialog_token.clear()
    dialog_token.send_keys(MANAGER)
    browser.find_element("css selector", "#manager-form button[value=ok]").click()
    wait_for(browser, lambda b: b.find_element("id", "refund-box").is_displayed())
    browser.find_element("id", "refund-amount").send_keys("12.00")
    browser.find_element("id", "refund-reason").send_keys("one item returned")
    browser.find_element("id", "refund-send").click()
    wait_for(browser, lambda b: b.find_element("id", "refund-result").get_attribute(
        "data-state") == "refunded")
    refunds = shop.call("GET", "/v1/refunds", params={"sale_id": sale["id"]}).json()["refunds"]
    assert [(r["amount"], r["state"]) for r in refunds] == [(1200, "refunded")]
    wait_for(browser, lambda b: "12.00" in b.find_element(
        "css selector", f"tr[data-sale='{sale['id']}']").text)
    browser.find_element("id", "load-manager").click()  # the manager's token is remembered
    wait_for(browser, lambda b: "net" in text_of(b, "report"))
    bars = [int(e.get_attribute("data-fen") or 0) for e in
            browser.find_elements("css selector", "#chart rect")]
    assert len(bars) == 24 and sum(bars) == 7000  # the day's paid sales, hour by hour
    wait_for(browser, lambda b: "not reconciled yet" in text_of(b, "reconciliation"))
    browser.save_screenshot(str(shots(tmp_path) / "manager.png"))
    hosts = requested_hosts(browser)
    assert hosts == {"127.0.0.1"}, hosts


def test_the_page_survives_a_daemon_restart(browser: Any, tmp_path: Path, pki: Any,
                                            alipay_keys: Any) -> None:
    """posd stops while a customer is confirming: the page says it is reconnecting, and
    once posd is back it follows the same sale to its end."""
    import io
    import socket

    from posd.daemon import Daemon
    from tests.sandbox import config, make_config, start_simulator

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    sim = start_simulator(pki, alipay=alipay_keys)
    data = make_config(tmp_path, sim.url, pki, alipay=alipay_keys, api_port=port)
    daemon = Daemon.build(config(data), receipts_to=io.StringIO())
    daemon.start()
    shop = Shop(f"http://127.0.0.1:{port}", daemon, sim, io.StringIO(), tmp_path)
    try:
        log_in(browser, shop)
        wait_for(browser, lambda b: b.find_element("id", "app").is_displayed())
        english(browser)
        charge(browser, "6.00", code("0002", 7, "alipay"))
        wait_for(browser, state_is("Customer confirming…"))
        daemon.stop()
        wait_for(browser, lambda b: b.find_element("id", "offline").is_displayed())
        daemon = Daemon.build(config(data), receipts_to=io.StringIO())
        daemon.start()
        wait_for(browser, state_is("REVERSED"), timeout=90)
        assert not browser.find_element("id", "offline").is_displayed()
    finally:
        daemon.stop()
        sim.stop()


def test_a_sale_the_register_starts_appears_and_cancels_before_a_code(
        browser: Any, shop: Shop) -> None:
    log_in(browser, shop)
    wait_for(browser, lambda b: b.find_element("id", "app").is_displayed())
    english(browser)
    made = shop.call("POST", "/v1/sales", token=TOKEN, json={"amount": 4200})
    assert made.status_code == 201 and made.json()["state"] == "awaiting_code"
    wait_for(browser, state_is("Scan the code"))  # the page found it by itself
    assert "42.00" in text_of(browser, "result-amount")
    assert "Scan the customer's code" in text_of(browser, "result-message")
    browser.find_element("id", "cancel").click()  # no code sent yet: a real cancel
    wait_for(browser, state_is("CANCELLED"))
    assert shop.call("GET", f"/v1/sales/{made.json()['id']}").json()["state"] == "cancelled"
