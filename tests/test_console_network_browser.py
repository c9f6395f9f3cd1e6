"""The distributor and payout queues in a real browser (headless chromium, the server and
helpers of tests/test_console_browser.py: one `fenxiao serve` for this module, demo data):
an operator finds an application in its queue and approves it; a withdrawal above the
four-eyes threshold is approved by one operator, who then cannot pay it alone, and paid
by a second, with the reference the first gave, after which it leaves the queue. The
queues are shot in English and in Chinese (var/test-artefacts/console/50-...)."""
from __future__ import annotations

import os
from typing import Any, Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from api.auth import create_token
from commands import Fenxiao
from commands.app import CommandContext
from commands.settings import Settings
from tests.test_console_browser import (  # noqa: F401 (browser, server: the fixtures)
    Server, amount, browser, click, no_console_errors, rows, server, settled, shot, sign_in,
    text)
from tests.test_server import call

pytestmark = [pytest.mark.server, pytest.mark.skipif(
    os.environ.get("FENXIAO_SKIP_BROWSER") == "1", reason="FENXIAO_SKIP_BROWSER=1")]
FOUR_EYES_MIN = 1_000  # 10.00 yuan: the server of this module asks two people above it
BIG = 80_000  # 800.00 yuan


@pytest.fixture(scope="module")
def four_eyes() -> Iterator[None]:
    """The server started for this module reads FENXIAO_FOUR_EYES_MIN from here."""
    before = os.environ.get("FENXIAO_FOUR_EYES_MIN")
    os.environ["FENXIAO_FOUR_EYES_MIN"] = str(FOUR_EYES_MIN)
    yield
    if before is None:
        del os.environ["FENXIAO_FOUR_EYES_MIN"]
    else:
        os.environ["FENXIAO_FOUR_EYES_MIN"] = before


def api(server: Server, method: str, path: str, body: Any = None, role: str = "admin") -> Any:
    status, reply, _ = call(f"{server.base}/api/v1", method, path, server.tokens[role], body)
    assert status in (200, 201, 202), reply
    return reply


@pytest.fixture(scope="module")
def network(four_eyes: None, server: Server) -> Iterator[Server]:
    """Two operators; an application waiting; DEMO-D2 with a large withdrawal requested;
    an approved refund-only case of DEMO-O1."""
    database_url = server.env["FENXIAO_DATABASE_URL"]
    app = Fenxiao(Settings.from_env(database_url=database_url))
    try:
        for name in ("operator", "operator2"):
            server.tokens[name] = create_token(app.engine, "operator", name=f"browser-{name}")
        context = CommandContext(actor="setup")
        app.execute(lambda: app.accrue_commission("BR-O-9", 1, "TEA", 1, BIG * 10, "DEMO-D2"),
                    context=context)
        app.execute(lambda: app.mature_commission("BR-O-9", 1), context=context)
    finally:
        app.close()
    api(server, "POST", "/distributors/applications",
        {"name": "Zhou Jie", "phone": "13800138123", "distributor_id": "BR-NEW"},
        role="operator")
    api(server, "POST", "/distributors/DEMO-D2/withdrawals",
        {"amount": {"amount": BIG, "currency": "CNY"}, "withdrawal_id": "BR-W1"},
        role="distributor")
    api(server, "POST", "/after-sales", {
        "case_id": "BR-AS9", "order_id": "DEMO-O1", "type": "refund_only",
        "lines": [{"sku": "TEA-LJ-250", "quantity": 1}], "reason": "the lid was loose"})
    api(server, "POST", "/after-sales/BR-AS9/approve")
    settled(server.base, database_url)
    yield server


def flash(browser: WebDriver) -> str:
    return text(browser, '[data-figure="flash"]')


def nav_count(browser: WebDriver, queue: str) -> str:
    return text(browser, f'nav[aria-label="Pages"] [data-queue="{queue}"]')


def test_an_operator_approves_an_application(network: Server, browser: WebDriver) -> None:
    sign_in(browser, network, "operator")
    pending = api(network, "GET", "/distributors?status=pending")["items"]
    assert nav_count(browser, "applications") == str(len(pending))
    click(browser, browser.find_element(By.CSS_SELECTOR, 'a[href="/console/applications"]'))
    assert "BR-NEW" in rows(browser, "distributors", "status")
    shot(browser, "50-applications-queue")
    click(browser, browser.find_element(
        By.CSS_SELECTOR, 'tr[data-key="BR-NEW"] button[data-act="distributor_approve"]'))
    assert flash(browser) == "Distributor BR-NEW approved."
    assert "BR-NEW" not in rows(browser, "distributors", "status")
    assert api(network, "GET", "/distributors/BR-NEW")["status"] == "active"
    shot(browser, "51-application-approved")
    no_console_errors(browser)


def pay(browser: WebDriver, withdrawal_id: str, reference: str | None) -> str:
    """Fill in the row's reference (None: keep what the page filled in), confirm; the
    confirmation's text."""
    row = f'tr[data-key="{withdrawal_id}"]'
    field = browser.find_element(By.CSS_SELECTOR, f'{row} input[name="payment_reference"]')
    if reference is not None:
        field.send_keys(reference)
    click(browser, browser.find_element(
        By.CSS_SELECTOR, f'{row} button[data-act="withdrawal_approve"]'))
    confirmation = text(browser, "[data-confirm]")
    click(browser, browser.find_element(By.CSS_SELECTOR, 'button[data-act="confirm"]'))
    return confirmation


def test_a_large_payout_takes_two_operators(network: Server, browser: WebDriver) -> None:
    sign_in(browser, network, "operator")
    click(browser, browser.find_element(By.CSS_SELECTOR, 'a[href="/console/withdrawals"]'))
    shown = rows(browser, "withdrawals", "amount", "status")
    assert amount(shown["BR-W1"]["amount"]) == BIG
    shot(browser, "52-withdrawals-queue")
    confirmation = pay(browser, "BR-W1", "BANK-BR-1")
    assert "800.00" in confirmation and "BANK-BR-1" in confirmation
    assert "second person" in flash(browser)
    assert api(network, "GET", "/withdrawals?status=awaiting_second_approval")["items"][0][
        "withdrawal_id"] == "BR-W1"
    row = browser.find_element(By.CSS_SELECTOR, 'tr[data-key="BR-W1"]')
    assert not row.find_elements(By.CSS_SELECTOR, 'button[data-act="withdrawal_approve"]')
    shot(browser, "53-withdrawal-awaiting-second")

    sign_in(browser, network, "operator2")
    click(browser, browser.find_element(By.CSS_SELECTOR, 'a[href="/console/withdrawals"]'))
    field = browser.find_element(By.CSS_SELECTOR,
                                 'tr[data-key="BR-W1"] input[name="payment_reference"]')
    assert field.get_attribute("value") == "BANK-BR-1"  # what the first approver gave
    pay(browser, "BR-W1", None)
    assert flash(browser) == "Withdrawal BR-W1 paid, reference BANK-BR-1."
    assert "BR-W1" not in rows(browser, "withdrawals", "status")  # left the queue
    shot(browser, "54-withdrawal-paid")
    paid = api(network, "GET", "/withdrawals?status=paid")["items"]
    assert [(w["withdrawal_id"], w["approvals"]) for w in paid if w["withdrawal_id"] ==
            "BR-W1"] == [("BR-W1", ["browser-operator", "browser-operator2"])]
    no_console_errors(browser)


def refund(browser: WebDriver, server: Server, amount: str | None) -> str:
    """On the case's page: fill in the refund (None: keep what the page filled in),
    confirm; the confirmation's text."""
    browser.get(f"{server.base}/console/aftersales/BR-AS9")
    form = browser.find_element(By.CSS_SELECTOR, "section#refund form")
    if amount is not None:
        form.find_element(By.NAME, "amount").send_keys(amount)
        form.find_element(By.NAME, "refund_reference").send_keys("BR-RF-9")
    click(browser, form.find_element(By.CSS_SELECTOR, 'button[data-act="case_refund"]'))
    confirmation = text(browser, "[data-confirm]")
    click(browser, browser.find_element(By.CSS_SELECTOR, 'button[data-act="confirm"]'))
    return confirmation


def test_a_refund_above_the_threshold_takes_two_operators(network: Server,
                                                          browser: WebDriver) -> None:
    sign_in(browser, network, "operator")
    assert "12.80" in refund(browser, network, "12.80")
    assert "second person" in flash(browser)
    assert api(network, "GET", "/after-sales/BR-AS9")["refunded"] == 0
    shot(browser, "57-refund-awaiting-second")
    refund(browser, network, None)  # the same operator again: refused, nothing paid
    assert text(browser, '[data-figure="error-code"]') == "second_approver_required"
    assert api(network, "GET", "/after-sales/BR-AS9")["status"] == \
        "awaiting_second_approval"

    sign_in(browser, network, "operator2")
    refund(browser, network, None)  # the page fills in what the first approved
    assert flash(browser) == "Refunded CN¥12.80 for case BR-AS9."
    case = api(network, "GET", "/after-sales/BR-AS9")
    assert (case["status"], case["refunded"]) == ("refunded", 1280)
    assert [(h["status"], h["actor"]) for h in case["history"]][-2:] == [
        ("awaiting_second_approval", "browser-operator"), ("refunded", "browser-operator2")]
    shot(browser, "58-refund-paid-by-the-second")
    no_console_errors(browser)


def test_the_queues_in_chinese(network: Server, browser: WebDriver) -> None:
    sign_in(browser, network, "operator")
    browser.get(f"{network.base}/console/language?lang=zh_CN&next=/console/withdrawals")
    assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang").startswith("zh")
    assert "提现" in browser.find_element(By.TAG_NAME, "h1").text
    shot(browser, "55-withdrawals-zh")
    browser.get(f"{network.base}/console/applications?status=active")
    shot(browser, "56-distributors-zh")
    browser.get(f"{network.base}/console/language?lang=en&next=/console/applications")
    no_console_errors(browser)


@pytest.mark.parametrize("role", ["admin", "distributor"])
def test_every_page_in_both_languages(network: Server, browser: WebDriver, role: str) -> None:
    """Each page of the role's navigation, shot in English and in Chinese; each answers in
    the language asked for, with nothing refused by the page's policy."""
    sign_in(browser, network, role)
    pages = [a.get_attribute("href") for a in browser.find_elements(
        By.CSS_SELECTOR, 'nav[aria-label="Pages"] a')]
    assert len(pages) >= (15 if role == "admin" else 6), pages
    for lang, html_lang in (("en", "en"), ("zh_CN", "zh-CN")):
        browser.get(f"{network.base}/console/language?lang={lang}&next=/console/")
        for href in pages:
            browser.get(href)
            assert browser.find_element(By.TAG_NAME, "html").get_attribute("lang") == \
                html_lang, href
            assert browser.find_elements(By.TAG_NAME, "h1"), href
            shot(browser, f"60-{role}-{lang}-{href.rstrip('/').rpartition('/')[2]}")
    browser.get(f"{network.base}/console/language?lang=en&next=/console/")
    no_console_errors(browser)
