"""The console in a real browser: Debian's chromium, headless, driven by selenium through
the system chromedriver, against a real `fenxiao serve` process (worker in-process, the log
sealed) loaded with the demo data. An admin signs in with a token through the form, opens
every page and reads the figures the API gives for the same data; a distributor sees its
own pages and a 404 for another's. Each page is saved as a screenshot under
var/test-artefacts/console/.

SQLite only: the browser adds nothing that differs between databases, and
tests/test_console.py runs the same pages on SQLite and PostgreSQL. `make test` installs
chromium and chromium-driver when they are missing; FENXIAO_SKIP_BROWSER=1 leaves this
file out knowingly (like FENXIAO_SKIP_POSTGRES)."""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.wait import WebDriverWait

from api.auth import create_token
from api.console import COOKIE
from api.demo import load_demo
from commands import Fenxiao
from commands.settings import Settings
from migrations import upgrade
from projections.seal import verify
from tests.test_server import FENXIAO, ROOT, call, free_port, wait_until_up

pytestmark = [pytest.mark.server, pytest.mark.skipif(
    os.environ.get("FENXIAO_SKIP_BROWSER") == "1", reason="FENXIAO_SKIP_BROWSER=1")]
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1280,1400",
         "--lang=en-US")  # Accept-Language: the pages (and the link texts followed) in English
ARTEFACTS = ROOT / "var" / "test-artefacts" / "console"
SEAL_KEY = "browser-test-seal-key-0123456789"


@dataclass
class Server:
    base: str
    env: dict[str, str]
    tokens: dict[str, str]

    def api(self, path: str, role: str = "admin") -> Any:
        status, body, _ = call(f"{self.base}/api/v1", "GET", path, self.tokens[role])
        assert status == 200, body
        return body


def settled(base: str, database_url: str) -> None:
    """Until the worker has projected, run the process managers (three calm looks in a
    row: a manager's commands are new events) and sealed the whole log."""
    calm, deadline = 0, time.monotonic() + 60
    while calm < 3:
        assert time.monotonic() < deadline, "the worker did not catch up"
        status, health, _ = call(f"{base}/api/v1", "GET", "/health")
        calm = calm + 1 if status == 200 and not health["parked"] and all(
            p["lag"] == 0 for p in health["projections"]) else 0
        time.sleep(0.3)
    while not (report := sealed(database_url))["ok"] or report["unsealed"]:
        assert time.monotonic() < deadline, f"the worker did not seal the log: {report}"
        time.sleep(0.3)


def sealed(database_url: str) -> dict[str, Any]:
    """What `audit verify` reports, computed here on the server's database."""
    app = Fenxiao(Settings.from_env(database_url=database_url, seal_key=SEAL_KEY))
    try:
        return verify(app)
    finally:
        app.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = tmp_path_factory.mktemp("console") / "console.db"
    env = {**os.environ, "FENXIAO_DATABASE_URL": f"sqlite:///{database}",
           "FENXIAO_SEAL_KEY": SEAL_KEY, "FENXIAO_RATE_LIMIT": "off",
           "FENXIAO_REPORT_UTC_OFFSET_MINUTES": "0"}  # days of the sales chart: UTC days
    upgrade(env["FENXIAO_DATABASE_URL"])  # what `fenxiao db upgrade` and `demo` do, in-process
    app = Fenxiao(Settings.from_env(database_url=env["FENXIAO_DATABASE_URL"]))
    try:
        load_demo(app)
        tokens = {"admin": create_token(app.engine, "admin", name="browser"),
                  "distributor": create_token(app.engine, "distributor", name="browser-d2",
                                              distributor_id="DEMO-D2")}
    finally:
        app.close()
    with serving(env, database.parent / "server.log") as base:
        yield Server(base, env, tokens)


@contextlib.contextmanager
def serving(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`fenxiao serve` (worker in-process) on a free port until the block ends, its
    output in `log_path` (a pipe nobody reads could fill up); the base URL once the
    worker has caught up and sealed the log."""
    port = free_port()
    with log_path.open("w") as log:
        process = subprocess.Popen([*FENXIAO, "serve", "--port", str(port)], env=env,
                                   cwd=ROOT, stdout=log, stderr=log)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_until_up(f"{base}/api/v1", process)
            settled(base, env["FENXIAO_DATABASE_URL"])
            yield base
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    assert CHROMIUM.exists() and CHROMEDRIVER.exists(), (
        "chromium and chromium-driver are missing: `make test` installs them "
        "(apt-get install chromium chromium-driver)")
    profile = tempfile.mkdtemp(prefix="fenxiao-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    ARTEFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def shot(browser: WebDriver, name: str) -> None:
    assert browser.save_screenshot(str(ARTEFACTS / f"{name}.png")), name


def text(browser: WebDriver, selector: str) -> str:
    return browser.find_element(By.CSS_SELECTOR, selector).text.strip()


def rows(browser: WebDriver, table: str, *fields: str) -> dict[str, dict[str, str]]:
    return {row.get_attribute("data-key"): {
        field: row.find_element(By.CSS_SELECTOR, f'[data-field="{field}"]').text.strip()
        for field in fields}
        for row in browser.find_elements(By.CSS_SELECTOR, f"table#{table} tbody tr")}


def amount(shown: str) -> int:
    """A figure as a page writes it (CN¥1,234.56 in English, ¥1,234.56 in Chinese) in minor
    units, to compare with the API's integers."""
    found = re.fullmatch(r"(-?)(?:CN)?¥(\d{1,3}(?:,\d{3})*)\.(\d\d)", shown)
    assert found, shown
    sign, major, minor = found.groups()
    return int(sign + major.replace(",", "") + minor)


def amounts(shown: dict[str, dict[str, str]]) -> dict[str, dict[str, int]]:
    return {key: {field: amount(value) for field, value in row.items()}
            for key, row in shown.items()}


def click(browser: WebDriver, element: Any) -> None:
    """Click and wait for the next page: a click returns before the navigation it starts.

    The old page is marked with a window property; the next page has none. (Waiting for the
    old <html> element to go stale raced: mid-navigation Chrome answers the staleness probe
    with an "unknown error" rather than a stale reference.)"""
    browser.execute_script("window.fenxiaoOldPage = true")
    element.click()
    WebDriverWait(browser, 20, ignored_exceptions=(WebDriverException,)).until(
        lambda b: b.execute_script(
            "return window.fenxiaoOldPage === undefined && document.readyState === 'complete'"))


def follow(browser: WebDriver, link_text: str) -> None:
    click(browser, browser.find_element(By.LINK_TEXT, link_text))


def sign_in(browser: WebDriver, server: Server, role: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{server.base}/console/")
    assert browser.current_url.startswith(f"{server.base}/console/signin")
    browser.find_element(By.ID, "token").send_keys(server.tokens[role])
    click(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def no_console_errors(browser: WebDriver) -> None:
    """Nothing refused by the CSP, no asset missing, nothing fetched from elsewhere."""
    problems = [entry["message"] for entry in browser.get_log("browser")
                if entry["level"] == "SEVERE" or "Content Security Policy" in entry["message"]]
    assert problems == []


def test_an_admin_signs_in_and_reads_every_page(server: Server, browser: WebDriver) -> None:
    browser.get(f"{server.base}/console/inventory")
    assert browser.current_url.endswith("/console/signin?next=/console/inventory")
    shot(browser, "01-signin")
    browser.find_element(By.ID, "token").send_keys(server.tokens["admin"])
    click(browser, browser.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    assert browser.current_url == f"{server.base}/console/inventory"
    cookie = browser.get_cookie(COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert server.tokens["admin"] not in cookie["value"]
    header = browser.find_element(By.CSS_SELECTOR, "header.top")
    assert header.value_of_css_property("background-color") == "rgba(29, 35, 48, 1)"  # our CSS

    stock = server.api("/inventory")["items"]
    assert rows(browser, "inventory", "on_hand", "reserved", "available") == {
        f"{i['sku']}/{i['warehouse_id']}": {k: str(i[k]) for k in ("on_hand", "reserved",
                                                                    "available")}
        for i in stock}
    shot(browser, "02-inventory")

    follow(browser, "Orders")
    orders = server.api("/orders")["items"]
    assert amounts(rows(browser, "orders", "total", "paid")) == {
        o["order_id"]: {"total": o["total"], "paid": o["paid"]} for o in orders}
    assert text(browser, '[data-status="all"]') == str(len(orders))
    shot(browser, "03-orders")
    click(browser, browser.find_element(By.PARTIAL_LINK_TEXT, "delivered"))
    delivered = server.api("/orders?status=delivered")["items"]
    assert set(rows(browser, "orders", "status")) == {o["order_id"] for o in delivered}
    shot(browser, "04-orders-delivered")
    follow(browser, "DEMO-O1")
    order = server.api("/orders/DEMO-O1")
    assert amount(text(browser, '[data-figure="total"]')) == order["total"]
    assert amount(text(browser, '[data-figure="paid"]')) == order["paid"]
    shot(browser, "05-order")

    follow(browser, "Earnings")
    ranking = rows(browser, "ranking", "rank", "lifetime_earned", "available")
    assert len(ranking) == 2
    for distributor_id, row in ranking.items():
        earned = server.api(f"/distributors/{distributor_id}/earnings")
        assert earned["lifetime_earned"] > 0
        assert amount(row["lifetime_earned"]) == earned["lifetime_earned"]
        assert amount(row["available"]) == earned["available"]
    shot(browser, "06-earnings")
    follow(browser, "DEMO-D2")
    earned = server.api("/distributors/DEMO-D2/earnings")
    assert amount(text(browser, '[data-figure="pending"]')) == earned["pending"]
    shot(browser, "07-distributor")

    follow(browser, "Sales")
    today = datetime.now(timezone.utc).date().isoformat()
    report = server.api(f"/reports/sales?from={today}&to={today}")
    assert report["totals"]["net"] > 0
    assert amount(text(browser, '[data-figure="net"]')) == report["totals"]["net"]
    assert text(browser, '[data-figure="orders"]') == str(report["totals"]["orders"])
    days = browser.find_elements(By.CSS_SELECTOR, "#sales-chart g.day")
    assert len(days) == 30
    assert days[-1].get_attribute("data-net") == str(report["totals"]["net"])
    assert browser.find_elements(By.CSS_SELECTOR, "#sales-chart rect.bar")  # drawn
    shot(browser, "08-sales")

    follow(browser, "Replenishment")
    suggested = server.api("/reports/replenishment")["items"]
    assert rows(browser, "replenishment", "available", "reorder_point",
                "suggested_quantity") == {
        f"{r['sku']}/{r['warehouse_id']}": {
            "available": str(r["available"]), "reorder_point": str(r["reorder_point"]),
            "suggested_quantity": str(r["suggested_quantity"])} for r in suggested}
    shot(browser, "09-replenishment")

    follow(browser, "Audit")
    report = sealed(server.env["FENXIAO_DATABASE_URL"])
    assert report["ok"] and text(browser, '[data-figure="verdict"]') == "Intact"
    assert text(browser, '[data-figure="sealed_through"]') == str(report["sealed_through"])
    assert text(browser, '[data-figure="head_seal"]') == report["head_seal"]
    shot(browser, "10-audit")

    follow(browser, "Timeline")
    browser.find_element(By.NAME, "order_id").send_keys("DEMO-O1")
    click(browser, browser.find_element(
        By.XPATH, "//input[@name='order_id']/ancestor::form//button"))
    history = server.api("/audit/events?order_id=DEMO-O1")["items"]
    shown = browser.find_elements(By.CSS_SELECTOR, "#timeline > li")
    assert [li.get_attribute("data-position") for li in shown] == \
        [str(e["position"]) for e in history]
    assert [li.find_element(By.CSS_SELECTOR, '[data-field="type"]').text for li in shown] == \
        [e["type"] for e in history]
    shot(browser, "11-timeline")
    no_console_errors(browser)

    click(browser, browser.find_element(By.CSS_SELECTOR, "form.who button"))
    assert browser.current_url == f"{server.base}/console/signin"
    browser.get(f"{server.base}/console/orders")
    assert "/console/signin" in browser.current_url


def test_a_distributor_sees_its_own_pages_and_no_one_elses(server: Server,
                                                           browser: WebDriver) -> None:
    sign_in(browser, server, "distributor")
    assert browser.current_url == f"{server.base}/console/orders"
    nav = [a.text for a in browser.find_elements(By.CSS_SELECTOR, 'nav[aria-label="Pages"] a')]
    assert nav == ["Orders", "Earnings", "Timeline", "Statement", "Downline", "Notifications",
                   "Withdrawals"]
    mine = server.api("/orders", role="distributor")["items"]
    assert set(rows(browser, "orders", "total")) == {o["order_id"] for o in mine}
    assert {"DEMO-O1", "DEMO-O3"} <= {o["order_id"] for o in mine}
    shot(browser, "12-distributor-orders")
    follow(browser, "Earnings")
    assert browser.current_url == f"{server.base}/console/distributors/DEMO-D2"
    earned = server.api("/distributors/DEMO-D2/earnings", role="distributor")
    assert amount(text(browser, '[data-figure="lifetime_earned"]')) == earned["lifetime_earned"]
    shot(browser, "13-distributor-earnings")
    follow(browser, "中文")  # the language switch: the same page, in Chinese, remembered
    assert browser.current_url == f"{server.base}/console/distributors/DEMO-D2"
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-CN"
    assert text(browser, '[data-figure="lifetime_earned"]').startswith("¥")
    assert amount(text(browser, '[data-figure="lifetime_earned"]')) == earned["lifetime_earned"]
    shot(browser, "13-distributor-earnings-zh")
    follow(browser, "订单")
    assert text(browser, "h1").startswith("订单")
    follow(browser, "English")
    assert text(browser, "h1").startswith("Orders")
    no_console_errors(browser)  # before the refusals below, which the browser logs as such
    for path, status in (("/console/orders/DEMO-O2", "404"), ("/console/distributors/DEMO-D1",
                         "404"), ("/console/timeline?order_id=DEMO-O2", "404"),
                         ("/console/inventory", "403")):
        browser.get(server.base + path)
        assert text(browser, ".error .code") == status, path
    browser.get(f"{server.base}/console/orders/DEMO-O2")
    shot(browser, "14-distributor-others-order-404")
