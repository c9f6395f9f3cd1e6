"""Console actions in a real browser (headless chromium, the server and helpers of
tests/test_console_browser.py: one `fenxiao serve` for this module, demo data): an
operator finds an after-sales case in its queue, approves it, and refunds it through the
confirmation step; a warehouse token picks, packs and dispatches a shipment until it leaves
its queue; a form whose CSRF token was tampered with changes nothing. Screenshots of each
page go to var/test-artefacts/console/ (20-...)."""
from __future__ import annotations

import os
from typing import Any, Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select

from api.auth import create_token
from commands import Fenxiao
from commands.settings import Settings
from tests.test_console_browser import (  # noqa: F401 (browser, server: the fixtures)
    Server, browser, click, no_console_errors, rows, server, settled, shot, sign_in, text)
from tests.test_server import call

pytestmark = [pytest.mark.server, pytest.mark.skipif(
    os.environ.get("FENXIAO_SKIP_BROWSER") == "1", reason="FENXIAO_SKIP_BROWSER=1")]


def api(server: Server, method: str, path: str, body: Any = None, role: str = "admin") -> Any:
    status, reply, _ = call(f"{server.base}/api/v1", method, path, server.tokens[role], body)
    assert status in (200, 201), reply
    return reply


@pytest.fixture(scope="module")
def work(server: Server) -> Iterator[Server]:
    """Tokens for an operator and the warehouse; two cases waiting for a decision."""
    database_url = server.env["FENXIAO_DATABASE_URL"]
    app = Fenxiao(Settings.from_env(database_url=database_url))
    try:
        for role in ("operator", "warehouse"):
            server.tokens[role] = create_token(app.engine, role, name=f"browser-{role}")
    finally:
        app.close()
    for case_id, sku in (("BR-AS1", "TEA-LJ-250"), ("BR-AS2", "TEA-LJ-250")):
        api(server, "POST", "/after-sales", {
            "case_id": case_id, "order_id": "DEMO-O1", "type": "refund_only",
            "lines": [{"sku": sku, "quantity": 1}], "reason": "the tin was dented"})
    settled(server.base, database_url)
    yield server


def flash(browser: WebDriver) -> str:
    return text(browser, '[data-figure="flash"]')


def test_an_operator_approves_and_refunds_a_case(work: Server, browser: WebDriver) -> None:
    sign_in(browser, work, "operator")
    queue_link = browser.find_element(By.CSS_SELECTOR, 'nav[aria-label="Pages"] '
                                                       'a[href="/console/aftersales"]')
    open_cases = sum(1 for c in api(work, "GET", "/after-sales")["items"]
                     if c["status"] != "closed")
    assert queue_link.find_element(By.CSS_SELECTOR, '[data-queue="aftersales"]').text == \
        str(open_cases)
    click(browser, queue_link)
    assert set(rows(browser, "cases", "status")) >= {"BR-AS1", "BR-AS2"}
    shot(browser, "20-aftersales-queue")
    click(browser, browser.find_element(
        By.CSS_SELECTOR, 'tr[data-key="BR-AS1"] button[data-act="case_approve"]'))
    assert flash(browser) == "Case BR-AS1 approved."
    assert rows(browser, "cases", "status")["BR-AS1"]["status"] == "approved"
    shot(browser, "21-aftersales-approved")

    click(browser, browser.find_element(By.LINK_TEXT, "BR-AS1"))
    form = browser.find_element(By.CSS_SELECTOR, "section#refund form")
    form.find_element(By.NAME, "amount").send_keys("12.80")
    form.find_element(By.NAME, "refund_reference").send_keys("BR-REFUND-1")
    shot(browser, "22-case-refund-form")
    click(browser, form.find_element(By.CSS_SELECTOR, 'button[data-act="case_refund"]'))
    confirmation = browser.find_element(By.CSS_SELECTOR, "[data-confirm]").text
    assert "CN¥12.80" in confirmation and "BR-REFUND-1" in confirmation
    assert api(work, "GET", "/after-sales/BR-AS1")["refunded"] == 0  # not yet
    shot(browser, "23-refund-confirmation")
    click(browser, browser.find_element(By.CSS_SELECTOR, 'button[data-act="confirm"]'))
    assert flash(browser) == "Refunded CN¥12.80 for case BR-AS1."
    assert text(browser, '[data-figure="refunded"]') == "CN¥12.80"
    shot(browser, "24-case-refunded")
    case = api(work, "GET", "/after-sales/BR-AS1")
    assert (case["status"], case["refunded"]) == ("refunded", 1280)
    assert [h["actor"] for h in case["history"]][-2:] == ["browser-operator"] * 2
    no_console_errors(browser)


def test_the_warehouse_sends_a_shipment_on_its_way(work: Server, browser: WebDriver) -> None:
    shipment_id = api(work, "GET", "/orders/DEMO-O3")["shipments"][0]["shipment_id"]
    sign_in(browser, work, "warehouse")
    nav = [a.get_attribute("href").rpartition("/")[2] for a in browser.find_elements(
        By.CSS_SELECTOR, 'nav[aria-label="Pages"] a')]
    assert "aftersales" not in nav and "shipments" in nav
    click(browser, browser.find_element(By.CSS_SELECTOR, 'a[href="/console/shipments"]'))
    row = f'tr[data-key="{shipment_id}"]'
    assert rows(browser, "shipments", "status")[shipment_id]["status"] == "created"
    shot(browser, "25-shipments-queue")
    for step, status in (("pick", "picked"), ("pack", "packed")):
        click(browser, browser.find_element(
            By.CSS_SELECTOR, f'{row} button[data-act="shipment_{step}"]'))
        assert flash(browser) == f"Shipment {shipment_id} {status}."
        assert rows(browser, "shipments", "status")[shipment_id]["status"] == status
    Select(browser.find_element(By.CSS_SELECTOR, f'{row} select[name="carrier"]')
           ).select_by_value("SF")
    browser.find_element(By.CSS_SELECTOR, f'{row} input[name="tracking_number"]'
                         ).send_keys("SF-BROWSER-1")
    shot(browser, "26-shipment-packed")
    click(browser, browser.find_element(
        By.CSS_SELECTOR, f'{row} button[data-act="shipment_dispatch"]'))
    assert flash(browser) == (f"Shipment {shipment_id} dispatched with SF, tracking number "
                              "SF-BROWSER-1.")
    assert shipment_id not in rows(browser, "shipments", "status")  # left the queue
    shot(browser, "27-shipment-dispatched")
    shipment = api(work, "GET", f"/shipments/{shipment_id}")
    assert (shipment["status"], shipment["carrier"], shipment["tracking_number"]) == \
        ("dispatched", "SF", "SF-BROWSER-1")
    no_console_errors(browser)


def test_a_forged_csrf_token_changes_nothing(work: Server, browser: WebDriver) -> None:
    sign_in(browser, work, "operator")
    browser.get(f"{work.base}/console/aftersales/BR-AS2")
    button = browser.find_element(By.CSS_SELECTOR, 'button[data-act="case_approve"]')
    browser.execute_script(
        "arguments[0].form.querySelector('input[name=csrf]').value = 'forged'", button)
    click(browser, button)
    assert text(browser, ".error .code") == "403"
    shot(browser, "28-forged-csrf-refused")
    assert api(work, "GET", "/after-sales/BR-AS2")["status"] == "requested"
