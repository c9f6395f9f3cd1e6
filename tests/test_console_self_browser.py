"""A distributor's own pages in a real browser (headless chromium and the helpers of
tests/test_console_browser.py, against a `fenxiao serve` of its own): DEMO-D2 signs in
with its token, reads its statement (the API's figures, and how they add up), its downline
(masked) and its notifications, then asks for a withdrawal from its own page through the
confirmation step, and sees it requested. Screenshots go to var/test-artefacts/console/
(40-...).

Its history is recorded before the server starts, on a clock set weeks back (the orders
delivered, completed and their commission matured by the time rules), so that the
server's own clock, now, comes after all of it."""
from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from api.auth import create_token
from api.demo import ADDRESS, CUSTOMER, load_demo, ship
from commands import Fenxiao
from commands.app import CommandContext
from commands.settings import Settings
from commands.tick import tick
from migrations import upgrade
from projections import all_projections
from projections.policies import all_process_managers
from projections.runner import ProjectionRunner, positions
from tests.test_console_browser import (  # noqa: F401 (browser: the fixture)
    SEAL_KEY, Server, amount, browser, click, follow, no_console_errors, rows, serving, shot,
    sign_in, text)

pytestmark = [pytest.mark.server, pytest.mark.skipif(
    os.environ.get("FENXIAO_SKIP_BROWSER") == "1", reason="FENXIAO_SKIP_BROWSER=1")]
DAY = timedelta(days=1)


def catch_up(app: Fenxiao) -> None:
    """Projections and process managers until nothing is left (the server's worker seals
    the log later: settled() waits for it)."""
    runner = ProjectionRunner(app, all_projections(), process_managers=all_process_managers())
    for _ in range(10):
        runner.catch_up()
        with app.engine.connect() as conn:
            if {p for name, p in positions(conn).items() if name != "seal"} == \
                    {app.last_position()}:
                return
    raise AssertionError("the projections do not reach the log head")


def history(app: Fenxiao) -> None:
    """DEMO-D2 sells and is paid commission it may withdraw; D3 joins under it and sells."""
    start = datetime.now(timezone.utc) - 40 * DAY
    now = [start]
    app.clock = lambda: now[0]
    context = CommandContext(actor="setup")
    run = lambda command: app.execute(command, context=context).body  # noqa: E731
    load_demo(app)
    code = app.distributor("DEMO-D2").referral_code
    run(lambda: app.apply_distributor("Zhang Wei", "13812345678", code, distributor_id="D3"))
    run(lambda: app.approve_distributor("D3"))
    for order_id, seller, lines in (("BR-S1", "DEMO-D2", [("TEA-LJ-250", 3)]),
                                    ("BR-S2", "D3", [("TEA-PE-357", 1)])):
        order = run(lambda: app.place_order(f"C-{order_id}", CUSTOMER["name"],
                                            CUSTOMER["phone"], ADDRESS, lines,
                                            order_id=order_id, distributor_id=seller))
        run(lambda: app.pay_order(order_id, order["total"], f"PAY-{order_id}"))
        ship(app, run, order_id, delivered=True)
    catch_up(app)
    for days in (app.settings.return_window_days, app.settings.commission_freeze_days):
        now[0] += (days + 1) * DAY  # completed, then matured
        tick(app, now[0])
        catch_up(app)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    database = tmp_path_factory.mktemp("console-self") / "console.db"
    env = {**os.environ, "FENXIAO_DATABASE_URL": f"sqlite:///{database}",
           "FENXIAO_SEAL_KEY": SEAL_KEY, "FENXIAO_RATE_LIMIT": "off"}
    upgrade(env["FENXIAO_DATABASE_URL"])
    app = Fenxiao(Settings.from_env(database_url=env["FENXIAO_DATABASE_URL"],
                                    seal_key=SEAL_KEY))
    try:
        history(app)
        tokens = {"distributor": create_token(app.engine, "distributor",
                                              name="browser-self-d2",
                                              distributor_id="DEMO-D2")}
    finally:
        app.close()
    with serving(env, database.parent / "server.log") as base:
        yield Server(base, env, tokens)


def figure(browser: WebDriver, name: str) -> int:
    return amount(text(browser, f'[data-figure="{name}"]'))


def earnings(server: Server) -> dict[str, Any]:
    return server.api("/distributors/DEMO-D2/earnings", role="distributor")


def test_a_distributor_reads_its_statement_and_asks_for_a_withdrawal(
        server: Server, browser: WebDriver) -> None:
    sign_in(browser, server, "distributor")
    follow(browser, "Statement")
    assert browser.current_url == f"{server.base}/console/my_statement"
    earned = earnings(server)
    assert earned["available"] > 1234 and earned["pending"] > 0
    for field in ("pending", "available", "withdrawing", "paid_out", "reversed",
                  "lifetime_earned"):
        assert figure(browser, field) == earned[field], field
    assert figure(browser, "sum-earned") == earned["lifetime_earned"]
    assert figure(browser, "sum-pending") == earned["pending"]
    assert figure(browser, "sum-available") == earned["available"]
    assert text(browser, '[data-figure="reconciled"]') == \
        "These sums are the balances above, to the fen."
    entries = server.api("/distributors/DEMO-D2/commissions", role="distributor")["items"]
    assert amounts_of(rows(browser, "commissions", "amount")) == {
        f"{e['order_id']}/{e['line_no']}/{e['level']}": e["amount"] for e in entries}
    shot(browser, "40-self-statement")

    follow(browser, "Downline")
    downline = rows(browser, "downline", "name", "phone")
    assert downline == {"D3": {"name": "Z**", "phone": "**********5678"}}
    copy = browser.find_element(By.ID, "referral-copy")
    assert copy.get_attribute("readonly") is not None
    assert copy.get_attribute("value") == server.api(
        "/distributors/DEMO-D2", role="distributor")["referral_code"]
    shot(browser, "41-self-downline")

    follow(browser, "Notifications")
    mine = server.api("/notifications?limit=500", role="distributor")["items"]
    assert set(rows(browser, "notifications", "kind")) == {n["notification_id"] for n in mine}
    shot(browser, "42-self-notifications")

    follow(browser, "Withdrawals")
    form = browser.find_element(By.CSS_SELECTOR, "section#withdraw form")
    form.find_element(By.NAME, "amount").send_keys("12.34")
    shot(browser, "43-self-withdrawal-form")
    click(browser, form.find_element(By.CSS_SELECTOR, 'button[data-act="self_withdraw"]'))
    confirmation = browser.find_element(By.CSS_SELECTOR, "[data-confirm]").text
    assert "CN¥12.34" in confirmation
    assert "Available after" in confirmation
    after = earned["available"] - 1234
    assert f"CN¥{after // 100:,}.{after % 100:02d}" in confirmation
    assert earnings(server) == earned  # nothing asked before confirming
    shot(browser, "44-self-withdrawal-confirm")
    click(browser, browser.find_element(By.CSS_SELECTOR, 'button[data-act="confirm"]'))
    message = text(browser, '[data-figure="flash"]')
    assert message.startswith("Withdrawal ") and "of CN¥12.34 requested" in message
    withdrawal_id = message.split()[1]
    assert rows(browser, "withdrawals", "status")[withdrawal_id]["status"] == "requested"
    now = earnings(server)
    assert (now["available"], now["withdrawing"]) == (after, earned["withdrawing"] + 1234)
    assert figure(browser, "available") == after
    shot(browser, "45-self-withdrawal-requested")

    follow(browser, "Statement")
    follow(browser, "中文")
    assert figure(browser, "available") == after
    assert text(browser, '[data-figure="available"]').startswith("¥")
    shot(browser, "46-self-statement-zh")
    follow(browser, "English")
    no_console_errors(browser)


def amounts_of(shown: dict[str, dict[str, str]]) -> dict[str, int]:
    return {key: amount(row["amount"]) for key, row in shown.items()}
