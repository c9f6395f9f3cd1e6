"""A distributor's own pages in the console (api/console_self.py) through Flask's test
client, on SQLite and PostgreSQL: its statement (the balances are the API's, they add up
from its commission entries and withdrawals to the fen, and every entry is explained down
to its order line and rule), its downline on two levels and never a third, with people's
names and phones masked, its notifications, its withdrawals. Another distributor's pages
are 404, as a nonexistent one's; staff read any distributor's (an auditor without the
form). A withdrawal is asked for through a confirmation page and runs the API's command as
the token (once, however often the form is sent); refusals (the balance, the minimum, an
amount that is not one, a form without the session's CSRF token) show why and change
nothing."""
from __future__ import annotations

import re
import secrets
from datetime import datetime, timedelta, timezone
from typing import Any, Iterator

import pytest
from flask.testing import FlaskClient

from api import create_app
from api import distributors as distributors_api
from api.auth import create_token
from api.console_forms import ACTIONS
from api.demo import ADDRESS, CUSTOMER, load_demo, ship
from commands import Fenxiao
from commands import audit as audit_log
from commands.app import CommandContext
from commands.settings import Settings
from commands.tick import tick
from domain.ledger import Withdrawal
from tests.conftest import wipe
from tests.test_console import Figures, catch_up, csrf_of, sign_in

ROLES = ("admin", "operator", "auditor", "warehouse", "integration")
SETUP = CommandContext(actor="setup")
DAY = timedelta(days=1)
SELF_PAGES = ("statement", "network", "notifications", "withdrawals")


class Clock:
    """The application's clock, moved by the scenario (time rules run on it)."""

    def __init__(self, app: Fenxiao, now: datetime) -> None:
        self.now = now
        app.clock = lambda: self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


class Shop:
    """The demo store grown into a network and a history worth a statement.

    DEMO-D1 (Li Na) ─┬─ DEMO-D2 (Wang Fang, the token "me") ─┬─ D3 (Zhang Wei) ── D5 (Liu Yang)
                     └─ D4 (Chen Jing)                        └─ D6 (Zhou Min)
    D7 applied with DEMO-D2's code and waits: not in anyone's downline yet.
    DEMO-D2 earns level 1 on its own sales (one refunded in part while pending, one
    compensated after maturity: clawed back), level 2 on D3's and D6's (a fixed rule per
    unit for cups), nothing on D5's (a third level); one of D3's sales was paid while
    DEMO-D2 was suspended: forfeited. Withdrawals: one paid, one refused, one open.
    """

    def __init__(self, app: Fenxiao) -> None:
        self.app = app
        self.flask = create_app(app.settings, application=app)
        self.tokens = {role: create_token(app.engine, role, name=f"self-{role}")
                       for role in ROLES}
        self.tokens["me"] = create_token(app.engine, "distributor", name="self-d2",
                                         distributor_id="DEMO-D2")
        self.tokens["d1"] = create_token(app.engine, "distributor", name="self-d1",
                                         distributor_id="DEMO-D1")
        self.tokens["d3"] = create_token(app.engine, "distributor", name="self-d3",
                                         distributor_id="D3")
        self._clients: dict[str, FlaskClient] = {}

    def client(self, who: str) -> FlaskClient:
        """One signed-in client per token for the module."""
        if who not in self._clients:
            client = self.flask.test_client()
            assert sign_in(client, self.tokens[who]).status_code == 303
            self._clients[who] = client
        return self._clients[who]

    def run(self, command: Any) -> dict[str, Any]:
        return self.app.execute(command, context=SETUP).body

    def api(self, path: str, who: str = "admin", **params: Any) -> Any:
        reply = self.flask.test_client().get(
            f"/api/v1{path}", query_string=params,
            headers={"Authorization": f"Bearer {self.tokens[who]}"})
        assert reply.status_code == 200, reply.get_json()
        return reply.get_json()

    def all_api(self, path: str, who: str = "admin", **params: Any) -> list[dict[str, Any]]:
        items, cursor = [], None
        while True:
            body = self.api(path, who, limit=500, **params,
                            **({"cursor": cursor} if cursor else {}))
            items += body["items"]
            cursor = body["next_cursor"]
            if cursor is None:
                return items

    def head(self) -> int:
        return self.app.last_position()

    def settle(self) -> None:
        catch_up(self.app)

    def money(self, amount_minor: int) -> str:
        from api.console import money
        with self.flask.test_request_context("/console/"):
            return money(amount_minor)


def join(shop: Shop, distributor_id: str, name: str, phone: str, referrer: str,
         approve: bool = True) -> None:
    app = shop.app
    code = app.distributor(referrer).referral_code
    shop.run(lambda: app.apply_distributor(name, phone, code, distributor_id=distributor_id))
    if approve:
        shop.run(lambda: app.approve_distributor(distributor_id))


def sell(shop: Shop, order_id: str, seller: str, lines: list[tuple[str, int]],
         delivered: bool = True) -> None:
    app = shop.app
    order = shop.run(lambda: app.place_order(f"C-{order_id}", CUSTOMER["name"],
                                             CUSTOMER["phone"], ADDRESS, lines,
                                             order_id=order_id, distributor_id=seller))
    shop.run(lambda: app.pay_order(order_id, order["total"], f"PAY-{order_id}"))
    if delivered:
        ship(app, shop.run, order_id, delivered=True)


def refund(shop: Shop, case_id: str, order_id: str, case_type: str, sku: str,
           amount_minor: int) -> None:
    app = shop.app
    shop.run(lambda: app.request_case(
        order_id, case_type, [(sku, 1)], "console self test",
        amount_minor=amount_minor if case_type == "compensation" else None, case_id=case_id))
    shop.run(lambda: app.approve_case(case_id))
    shop.run(lambda: app.refund_case(case_id, amount_minor, f"REF-{case_id}"))
    shop.run(lambda: app.close_case(case_id))


def build(shop: Shop, clock: Clock) -> None:
    app = shop.app
    join(shop, "D3", "Zhang Wei", "13812345678", "DEMO-D2")
    join(shop, "D4", "Chen Jing", "13900001111", "DEMO-D1")
    join(shop, "D5", "Liu Yang", "13700002222", "D3")
    join(shop, "D6", "Zhou Min", "13600003333", "DEMO-D2")
    join(shop, "D7", "Wu Lei", "13500004444", "DEMO-D2", approve=False)
    shop.run(lambda: app.set_commission_rule("CUP-GW-6", "fixed", 500, 200))
    sell(shop, "S-MINE-1", "DEMO-D2", [("TEA-LJ-250", 2)])
    sell(shop, "S-MINE-2", "DEMO-D2", [("TEA-PE-357", 1)])
    sell(shop, "S-D3-1", "D3", [("CUP-GW-6", 2)])
    sell(shop, "S-D6-1", "D6", [("TEA-LJ-250", 1)])
    sell(shop, "S-D5-1", "D5", [("TEA-LJ-250", 1)])
    shop.settle()  # commission accrues (a process manager)
    refund(shop, "AS-PENDING", "S-MINE-2", "refund_only", "TEA-PE-357", 5000)
    shop.run(lambda: app.suspend_distributor("DEMO-D2", "paperwork missing"))
    sell(shop, "S-D3-2", "D3", [("TEA-LJ-250", 1)], delivered=False)
    shop.settle()  # accrued while DEMO-D2 is suspended: its level 2 forfeited
    shop.run(lambda: app.reinstate_distributor("DEMO-D2", "paperwork in"))
    shop.settle()
    tick(app, clock.advance(app.settings.return_window_days * DAY + DAY))  # completed
    shop.settle()
    tick(app, clock.advance(app.settings.commission_freeze_days * DAY + DAY))  # matured
    shop.settle()
    refund(shop, "AS-LATE", "S-MINE-1", "compensation", "TEA-LJ-250", 3000)  # clawback
    for withdrawal_id, amount in (("W-PAID", 1000), ("W-REFUSED", 700), ("W-OPEN", 500)):
        shop.run(lambda: app.request_withdrawal("DEMO-D2", amount, withdrawal_id))
    shop.run(lambda: app.approve_withdrawal("W-PAID", "BANK-0001"))
    shop.run(lambda: app.reject_withdrawal("W-REFUSED", "wrong account"))
    shop.settle()


@pytest.fixture(scope="module")
def shop(database_url: str) -> Iterator[Shop]:
    wipe(database_url)
    app = Fenxiao(Settings(database_url=database_url, rate_limit=None,
                           auth_failure_limit=None, compensation_reverses_commission=True))
    clock = Clock(app, datetime.now(timezone.utc) - 60 * DAY)
    load_demo(app)
    catch_up(app)
    shop = Shop(app)
    build(shop, clock)
    yield shop
    app.close()


def page(client: FlaskClient, path: str, status: int = 200) -> str:
    reply = client.get(path)
    assert reply.status_code == status, (path, reply.status_code, reply.text[:3000])
    return reply.text


def flashed(html: str) -> dict[str, str]:
    figures = Figures(html).figures
    return {k: figures[k] for k in ("flash", "error-message", "error-code") if k in figures}


def shown(shop: Shop, client: FlaskClient, reply: Any) -> str:
    """The page a post-redirect-get answer leads to (the projections caught up first)."""
    assert reply.status_code == 303, reply.text[:3000]
    shop.settle()
    return page(client, reply.headers["Location"])


def key() -> str:
    return secrets.token_urlsafe(18)


def rows(html: str, table: str) -> dict[str, dict[str, str]]:
    return Figures(html).rows.get(table, {})


# -- the statement --------------------------------------------------------------------------

FIGURES = ("pending", "available", "withdrawing", "paid_out", "reversed", "lifetime_earned")


def test_the_statement_shows_the_api_figures_and_how_they_add_up(shop: Shop) -> None:
    for who, distributor_id, path in (
            ("me", "DEMO-D2", "/console/my_statement"),
            ("me", "DEMO-D2", "/console/distributors/DEMO-D2/statement"),
            ("d1", "DEMO-D1", "/console/my_statement"),
            ("d3", "D3", "/console/my_statement"),
            *((role, d, f"/console/distributors/{d}/statement")
              for role in ("admin", "operator", "auditor")
              for d in ("DEMO-D1", "DEMO-D2", "D3", "D5"))):
        earned = shop.api(f"/distributors/{distributor_id}/earnings", who)
        figures = Figures(page(shop.client(who), path)).figures
        for field in FIGURES:
            assert figures[field] == shop.money(earned[field]), (who, path, field)
        for field in ("reversed", "pending", "available", "withdrawing", "paid_out"):
            assert figures[f"sum-{field}"] == shop.money(earned[field]), (who, path, field)
        assert figures["sum-earned"] == shop.money(earned["lifetime_earned"])
        assert figures["sum-net"] == shop.money(earned["lifetime_earned"] - earned["reversed"])
        assert figures["sum-matured"] == shop.money(
            earned["available"] + earned["withdrawing"] + earned["paid_out"])
        assert figures["reconciled"] == "These sums are the balances above, to the fen."
    mine = shop.api("/distributors/DEMO-D2/earnings", "me")
    assert all(mine[field] > 0 for field in FIGURES)  # the scenario has every kind


def test_every_commission_entry_is_explained_to_its_order_line_and_rule(shop: Shop) -> None:
    entries = shop.all_api("/distributors/DEMO-D2/commissions", "me")
    html = page(shop.client("me"), "/console/my_statement?limit=500")
    shown_rows = rows(html, "commissions")
    assert list(shown_rows) == [f"{e['order_id']}/{e['line_no']}/{e['level']}"
                                for e in entries]
    sellers = {"S-D3-1": "D3", "S-D3-2": "D3", "S-D6-1": "D6"}
    for e in entries:
        row = shown_rows[f"{e['order_id']}/{e['line_no']}/{e['level']}"]
        assert row["order"] == e["order_id"] and row["line"] == str(e["line_no"])
        assert row["sku"] == e["sku"] and row["base"] == shop.money(e["base"])
        assert row["amount"] == shop.money(e["amount"])
        assert row["reversed"] == shop.money(e["reversed"])
        assert row["status"] == e["status"]
        assert row["level"] == ("1 own sale" if e["level"] == 1 else
                                f"2 sale by {sellers[e['order_id']]}")
        if e["rate_bp"] is not None:
            assert row["rate"] == f"{e['rate_bp'] / 100:.2f} % of the base"
        elif e["rule"]:
            assert row["rate"] == f"{shop.money(e['rule']['fixed_per_unit'])} per unit"
        rule = e["rule"]
        assert row["rule"] == ("—" if rule is None else "the default rule"
                               if rule["version"] == 0 else
                               f"{rule['kind']} rule, version "
                               f"{rule['version']}")
        why = row["why"]
        for reversal in e["reversals"]:
            assert f"refund {reversal['refund_reference']}" in why
            assert shop.money(reversal["amount"]) in why
            assert ("clawed back from available" if reversal["clawback"]
                    else "taken back from pending") in why
        if e["reversed"]:
            assert f"{shop.money(e['amount'] - e['reversed'])} of " \
                f"{shop.money(e['amount'])} is still yours." in why
    by_order = {e["order_id"]: e for e in entries}
    assert by_order["S-D3-2"]["status"] == "forfeited"
    assert "Not earned: the distributor was suspended." in shown_rows["S-D3-2/1/2"]["why"]
    assert by_order["S-D3-1"]["rule"]["kind"] == "fixed"
    assert shown_rows["S-D3-1/1/2"]["rule"] == "fixed rule, version 1"
    assert by_order["S-MINE-1"]["reversals"][0]["clawback"] is True
    assert by_order["S-MINE-2"]["reversals"][0]["clawback"] is False
    assert "S-D5-1" not in by_order and "S-D5-1" not in html  # a third level earns nothing
    links = set(re.findall(r'href="/console/orders/([\w-]+)"', html))
    assert links == {e["order_id"] for e in entries if e["level"] == 1}  # its own orders


def test_the_commission_entries_page_by_page(shop: Shop) -> None:
    client = shop.client("me")
    seen, path = [], "/console/my_statement?limit=3"
    while path:
        html = page(client, path)
        seen += list(rows(html, "commissions"))
        found = re.search(r'class="next" href="([^"]+)"', html)
        path = found.group(1).replace("&amp;", "&") if found else None
    entries = shop.all_api("/distributors/DEMO-D2/commissions", "me")
    assert seen == [f"{e['order_id']}/{e['line_no']}/{e['level']}" for e in entries]
    assert len(seen) > 6


# -- the downline ---------------------------------------------------------------------------

def test_the_downline_shows_two_levels_with_names_and_phones_masked(shop: Shop) -> None:
    html = page(shop.client("me"), "/console/my_network")
    direct = rows(html, "downline")
    api = shop.api("/distributors/DEMO-D2/downline", "me")["items"]
    assert list(direct) == [d["distributor_id"] for d in api] == ["D3", "D6"]
    assert direct["D3"]["name"] == "Z**" and direct["D3"]["phone"] == "**********5678"
    assert direct["D6"]["name"] == "Z**" and direct["D6"]["phone"] == "**********3333"
    assert re.findall(r'data-second="([\w-]+)"', html) == ["D5"]  # D3's own
    assert "L**" in direct["D3"]["second"] and "**********2222" in direct["D3"]["second"]
    for personal in ("Zhang Wei", "Zhou Min", "Liu Yang", "13812345678", "3812345678",
                     "13600003333", "13700002222", "Wu Lei"):
        assert personal not in html, personal
    # D7 waits for approval: nobody's yet (a whole word: a referral code may contain "D7")
    assert not re.search(r"\bD7\b", html)
    referral = shop.api("/distributors/DEMO-D2", "me")["referral_code"]
    assert Figures(html).figures["referral_code"] == referral
    assert re.search(rf'<input id="referral-copy"[^>]* readonly value="{referral}"', html)
    assert "<script" not in html

    top = page(shop.client("d1"), "/console/my_network")
    assert list(rows(top, "downline")) == ["D4", "DEMO-D2"]
    assert re.findall(r'data-second="([\w-]+)"', top) == ["D3", "D6"]
    assert not re.search(r"\bD5\b", top)  # no third level: nobody earns on it
    assert rows(top, "downline")["DEMO-D2"]["name"] == "W**"

    under = page(shop.client("d1"), "/console/my_network?under=DEMO-D2")
    assert list(rows(under, "second-level")) == ["D3", "D6"]
    assert rows(under, "second-level")["D3"]["phone"] == "**********5678"
    for other in ("D3", "D5", "NOBODY"):  # not a direct member: its downline is not shown
        page(shop.client("d1"), f"/console/my_network?under={other}", 404)


def test_an_admin_sees_the_downline_unmasked_and_others_masked(shop: Shop) -> None:
    admin = page(shop.client("admin"), "/console/distributors/DEMO-D2/network")
    assert rows(admin, "downline")["D3"]["name"] == "Zhang Wei"
    assert rows(admin, "downline")["D3"]["phone"] == "+8613812345678"
    for role in ("operator", "auditor"):
        html = page(shop.client(role), "/console/distributors/DEMO-D2/network")
        assert rows(html, "downline")["D3"] == {
            "id": "D3", "name": "Z**", "phone": "**********5678",
            "status": "active", "second": rows(html, "downline")["D3"]["second"]}
        assert "Zhang Wei" not in html and "13812345678" not in html


def test_the_downline_page_by_page(shop: Shop) -> None:
    client = shop.client("d1")
    first = page(client, "/console/my_network?limit=1")
    assert list(rows(first, "downline")) == ["D4"]
    next_url = re.search(r'class="next" href="([^"]+)"', first).group(1)
    second = page(client, next_url.replace("&amp;", "&"))
    assert list(rows(second, "downline")) == ["DEMO-D2"]
    assert 'class="next"' not in second


# -- notifications and orders ---------------------------------------------------------------

def test_notifications_are_the_apis_newest_first(shop: Shop) -> None:
    items = shop.all_api("/notifications", "me")
    assert items and all(n["distributor_id"] == "DEMO-D2" for n in items)
    html = page(shop.client("me"), "/console/my_notifications?limit=500")
    shown_rows = rows(html, "notifications")
    newest = sorted(items, key=lambda n: (n["at"], n["notification_id"]), reverse=True)
    assert list(shown_rows) == [n["notification_id"] for n in newest]
    for n in items:
        assert shown_rows[n["notification_id"]]["message"] == n["message"]
        assert shown_rows[n["notification_id"]]["order"] == n["order_id"]
    staff = page(shop.client("auditor"), "/console/distributors/DEMO-D2/notifications?limit=500")
    assert list(rows(staff, "notifications")) == list(shown_rows)
    seen, path = [], "/console/my_notifications?limit=4"
    while path:
        part = page(shop.client("me"), path)
        seen += list(rows(part, "notifications"))
        found = re.search(r'class="next" href="([^"]+)"', part)
        path = found.group(1).replace("&amp;", "&") if found else None
    assert seen == list(shown_rows)


def test_the_pages_link_to_the_distributors_own_orders(shop: Shop) -> None:
    for who, path, link in (
            ("me", "/console/my_statement", "/console/orders"),
            ("admin", "/console/distributors/DEMO-D2/statement",
             "/console/orders?distributor_id=DEMO-D2")):
        html = page(shop.client(who), path)
        assert f'href="{link}" data-section="orders"' in html
        listed = rows(page(shop.client(who), link), "orders")
        mine = shop.all_api("/orders", "admin", distributor_id="DEMO-D2")
        assert set(listed) == {o["order_id"] for o in mine}


# -- who sees what --------------------------------------------------------------------------

def unkeyed(html: str) -> str:
    """The page without its forms' random keys and tokens (one may contain "D3")."""
    return re.sub(r'(name="(?:csrf|idempotency_key)" value=)"[^"]*"', r'\1""', html)


def test_another_distributors_pages_are_404_like_a_nonexistent_one(shop: Shop) -> None:
    client = shop.client("me")
    for section in SELF_PAGES:
        nobody = page(client, f"/console/distributors/NOBODY/{section}", 404)
        for other in ("DEMO-D1", "D3", "D5"):
            html = page(client, f"/console/distributors/{other}/{section}", 404)
            assert unkeyed(html).replace(other, "X") == unkeyed(nobody).replace("NOBODY", "X")
        page(client, f"/console/distributors/DEMO-D2/{section}")
    page(shop.client("d3"), "/console/distributors/DEMO-D2/statement", 404)
    page(shop.client("d3"), "/console/my_network?under=D5", 200)  # its own direct member


def test_the_own_pages_are_the_distributors_and_by_id_the_readers(shop: Shop) -> None:
    for role in ROLES:
        client = shop.client(role)
        for section in SELF_PAGES:
            page(client, f"/console/my_{section}", 403)
            page(client, f"/console/distributors/DEMO-D2/{section}",
                 200 if role in ("admin", "operator", "auditor") else 403)
    overview = page(shop.client("operator"), "/console/distributors/DEMO-D2")
    assert [f"/console/distributors/DEMO-D2/{section}" for section in SELF_PAGES] == \
        re.findall(r'href="(/console/distributors/DEMO-D2/\w+)" data-section', overview)
    nav = re.search(r'<nav aria-label="Pages">(.*?)</nav>',
                    page(shop.client("me"), "/console/my_statement"), re.S).group(1)
    assert re.findall(r'href="/console/(\w+)"', nav)[-4:] == [
        f"my_{section}" for section in SELF_PAGES]


def test_only_the_distributor_and_an_admin_get_the_withdrawal_form(shop: Shop) -> None:
    for who, path, form in (("me", "/console/my_withdrawals", True),
                            ("admin", "/console/distributors/DEMO-D2/withdrawals", True),
                            ("operator", "/console/distributors/DEMO-D2/withdrawals", False),
                            ("auditor", "/console/distributors/DEMO-D2/withdrawals", False)):
        html = page(shop.client(who), path)
        assert ('data-act="self_withdraw"' in html) == form, who
        assert ("Read-only." in html) == (who == "auditor"), who
        listed = rows(html, "withdrawals")
        mine = shop.all_api("/withdrawals", "admin", distributor_id="DEMO-D2")
        assert {k: (v["amount"], v["status"]) for k, v in listed.items()} == {
            w["withdrawal_id"]: (shop.money(w["amount"]), w["status"]) for w in mine}
        earned = shop.api("/distributors/DEMO-D2/earnings")
        figures = Figures(html).figures
        assert figures["sum-withdrawing"] == figures["withdrawing"] == \
            shop.money(earned["withdrawing"])
        assert figures["sum-paid_out"] == figures["paid_out"] == shop.money(earned["paid_out"])
        assert figures["available"] == shop.money(earned["available"])
    assert rows(page(shop.client("me"), "/console/my_withdrawals"),
                "withdrawals")["W-PAID"]["payment_reference"] == "BANK-0001"


# -- asking for a withdrawal ----------------------------------------------------------------

def form_of(html: str) -> dict[str, str]:
    form = re.search(r'action="/console/distributors/[\w-]+/withdrawals">(.*?)</form>',
                     html, re.S).group(1)
    return dict(re.findall(r'name="(\w+)" value="([^"]*)"', form))


def available(shop: Shop, distributor_id: str = "DEMO-D2") -> int:
    return shop.api(f"/distributors/{distributor_id}/earnings")["available"]


def test_a_withdrawal_is_confirmed_then_requested_once(shop: Shop) -> None:
    client = shop.client("me")
    shop.settle()
    before, head = available(shop), shop.head()
    fields = form_of(page(client, "/console/my_withdrawals"))
    assert set(fields) == {"csrf", "idempotency_key", "back"}
    assert fields["back"] == "/console/my_withdrawals"
    first = client.post("/console/distributors/DEMO-D2/withdrawals",
                        data={**fields, "amount": "12.5", "distributor_id": "DEMO-D1"})
    assert first.status_code == 200 and shop.head() == head  # nothing asked yet
    facts = dict(re.findall(r'<dt>([^<]+)</dt><dd data-fact="\d+">([^<]*)</dd>', first.text))
    assert facts == {"Distributor": "DEMO-D2", "Amount": "CN¥12.50",
                     "Available now": shop.money(before),
                     "Available after": shop.money(before - 1250)}
    carried = dict(re.findall(r'name="(\w+)" value="([^"]*)"',
                              first.text.split('class="actions"')[1]))
    assert carried["idempotency_key"] == fields["idempotency_key"]
    assert carried["confirmed"] == "1" and carried["amount"] == "12.5"
    confirmed = client.post("/console/distributors/DEMO-D2/withdrawals", data=carried)
    assert confirmed.headers["Location"].startswith("/console/my_withdrawals?min_position=")
    html = shown(shop, client, confirmed)
    message = flashed(html)["flash"]
    withdrawal_id = re.fullmatch(r"Withdrawal (\S+) of CN¥12.50 requested; it is paid once "
                                 r"an operator approves it.", message).group(1)
    assert rows(html, "withdrawals")[withdrawal_id]["status"] == "requested"
    assert available(shop) == before - 1250
    assert available(shop, "DEMO-D1") == available(shop, "DEMO-D1")  # nothing of D1's
    assert shop.api("/withdrawals", "me", distributor_id="DEMO-D2", status="requested")
    events, _head = audit_log.list_events(
        shop.app, audit_log.EventFilter(aggregate_id=Withdrawal.create_id(withdrawal_id)),
        10, masked=False)
    assert [(e["type"], e["actor"], e["data"]["distributor_id"], e["data"]["amount_minor"])
            for e in events] == [("Withdrawal.WithdrawalRequested", "self-d2", "DEMO-D2", 1250)]
    head = shop.head()
    for _ in range(2):  # the confirmation sent again, a reload: the first answer, once
        again = shown(shop, client, client.post("/console/distributors/DEMO-D2/withdrawals",
                                                data=carried))
        assert flashed(again) == {"flash": message}
    assert shop.head() == head and available(shop) == before - 1250


def test_an_admin_asks_for_a_distributor_and_an_operator_may_not(shop: Shop) -> None:
    assert ACTIONS["self_withdraw"] == distributors_api.request_withdrawal.roles == \
        ("distributor", "admin")
    admin = shop.client("admin")
    fields = form_of(page(admin, "/console/distributors/DEMO-D2/withdrawals"))
    before = available(shop)
    data = {**fields, "amount": "1", "confirmed": "1"}
    html = shown(shop, admin, admin.post("/console/distributors/DEMO-D2/withdrawals", data=data))
    assert flashed(html)["flash"].endswith("of CN¥1.00 requested; it is paid once an operator "
                                           "approves it.")
    assert available(shop) == before - 100
    operator, head = shop.client("operator"), shop.head()
    csrf = csrf_of(page(operator, "/console/inventory"))
    for who in ("operator", "auditor"):
        reply = shop.client(who).post("/console/distributors/DEMO-D2/withdrawals", data={
            "csrf": csrf_of(page(shop.client(who), "/console/inventory")),
            "idempotency_key": key(), "amount": "1", "confirmed": "1"})
        assert reply.status_code == 403, who
    assert csrf and shop.head() == head


def refused_with(shop: Shop, client: FlaskClient, data: dict[str, str],
                 path: str = "/console/distributors/DEMO-D2/withdrawals") -> dict[str, str]:
    head, before = shop.head(), available(shop)
    reply = client.post(path, data=data)
    assert reply.status_code == 303 and reply.headers["Location"] == "/console/my_withdrawals"
    html = shown(shop, client, reply)
    assert "Nothing was changed." in html and "Traceback" not in html
    assert shop.head() == head and available(shop) == before
    return flashed(html)


def test_the_wallets_refusals_show_their_code_and_message(shop: Shop) -> None:
    client = shop.client("me")
    balance = available(shop)
    fields = form_of(page(client, "/console/my_withdrawals"))
    too_much = refused_with(shop, client, {**fields, "amount": "1000"})
    assert too_much == {"error-code": "insufficient_balance",
                        "error-message": f"100000 asked, {balance} available"}
    small = refused_with(shop, client, {**fields, "amount": "0.50"})
    assert small == {"error-code": "below_minimum",
                     "error-message": "the smallest withdrawal is 100"}
    # Sent confirmed (as if the balance fell between the two pages): the command refuses.
    confirmed = refused_with(shop, client, {**form_of(page(client, "/console/my_withdrawals")),
                                            "amount": "1000", "confirmed": "1"})
    assert confirmed == too_much


@pytest.mark.parametrize("amount, problem", [
    ("12.345", "at most two decimals: yuan and fen"),
    ("-5", "an amount to withdraw is more than zero"),
    ("0", "an amount to withdraw is more than zero"),
    ("0.00", "an amount to withdraw is more than zero"),
    ("", "enter an amount in yuan, such as 120.50"),
    ("abc", "an amount in yuan, such as 120.50 (digits, at most two decimals, no sign)"),
    ("1e3", "an amount in yuan, such as 120.50 (digits, at most two decimals, no sign)"),
    ("12,5", "an amount in yuan, such as 120.50 (digits, at most two decimals, no sign)"),
    ("10000000000.01", "at most CN¥10,000,000,000.00"),
    ("9" * 40, "at most CN¥10,000,000,000.00"),
])
def test_an_amount_that_is_not_one_is_refused_with_its_reason(shop: Shop, amount: str,
                                                              problem: str) -> None:
    client = shop.client("me")
    shown_error = refused_with(shop, client, {**form_of(page(client, "/console/my_withdrawals")),
                                              "amount": amount})
    assert shown_error == {"error-code": "validation_error",
                           "error-message": "the amount is not valid"}
    html = page(client, "/console/my_withdrawals")  # the flash was read: gone
    assert "validation_error" not in html
    again = client.post("/console/distributors/DEMO-D2/withdrawals", data={
        **form_of(html), "amount": amount})
    assert problem in shown(shop, client, again)


def test_a_form_without_the_sessions_csrf_token_changes_nothing(shop: Shop) -> None:
    client = shop.client("me")
    head, before = shop.head(), available(shop)
    fields = form_of(page(client, "/console/my_withdrawals"))
    stolen = csrf_of(shop.flask.test_client().get("/console/signin").text)
    for csrf in ("", "forged", stolen):
        reply = client.post("/console/distributors/DEMO-D2/withdrawals",
                            data={**fields, "csrf": csrf, "amount": "1", "confirmed": "1"})
        assert reply.status_code == 403
    no_field = {k: v for k, v in fields.items() if k != "csrf"}
    assert client.post("/console/distributors/DEMO-D2/withdrawals",
                       data={**no_field, "amount": "1", "confirmed": "1"}).status_code == 403
    foreign = client.post("/console/distributors/DEMO-D2/withdrawals",
                          headers={"Origin": "https://evil.example"},
                          data={**fields, "amount": "1", "confirmed": "1"})
    assert foreign.status_code == 403
    anonymous = shop.flask.test_client().post("/console/distributors/DEMO-D2/withdrawals",
                                              data={**fields, "amount": "1", "confirmed": "1"})
    assert anonymous.status_code == 303 and anonymous.headers["Location"] == "/console/signin"
    shop.settle()
    assert shop.head() == head and available(shop) == before


def test_a_distributor_cannot_ask_for_anothers_withdrawal(shop: Shop) -> None:
    client = shop.client("me")
    head = shop.head()
    d1 = available(shop, "DEMO-D1")
    for other in ("DEMO-D1", "D3", "NOBODY"):
        reply = client.post(f"/console/distributors/{other}/withdrawals", data={
            **form_of(page(client, "/console/my_withdrawals")), "amount": "1",
            "confirmed": "1"})
        assert reply.status_code == 404 and reply.mimetype == "text/html", other
    shop.settle()
    assert shop.head() == head and available(shop, "DEMO-D1") == d1


def test_a_suspended_distributor_gets_no_form_and_its_withdrawal_is_refused(shop: Shop) -> None:
    app, admin = shop.app, shop.client("admin")
    shop.run(lambda: app.suspend_distributor("D6", "console self test"))
    shop.settle()
    try:
        html = page(admin, "/console/distributors/D6/withdrawals")
        assert 'data-act="self_withdraw"' not in html
        assert "Only an active distributor can withdraw." in html
        head, before = shop.head(), available(shop, "D6")
        assert before >= 100
        reply = admin.post("/console/distributors/D6/withdrawals", data={
            "csrf": csrf_of(html), "idempotency_key": key(), "amount": "1",
            "back": "/console/distributors/D6/withdrawals", "confirmed": "1"})
        assert reply.headers["Location"] == "/console/distributors/D6/withdrawals"
        shown_error = flashed(shown(shop, admin, reply))
        assert shown_error == {"error-code": "invalid_transition", "error-message":
                               "distributor D6 is suspended; only an active distributor "
                               "can withdraw"}
        assert shop.head() == head and available(shop, "D6") == before
    finally:
        shop.run(lambda: app.reinstate_distributor("D6", "console self test"))
        shop.settle()


def test_the_distributor_page_masks_downline_names_but_for_admin(database_url: str) -> None:
    """The older distributor page lists the direct downline too: names masked there as on
    the self-service pages, for every role but admin."""
    import re as _re
    from api import create_app
    from api.auth import create_token
    from commands import Fenxiao
    from commands.settings import Settings
    from tests.conftest import wipe
    from tests.test_console import catch_up, sign_in

    wipe(database_url)
    app = Fenxiao(Settings(database_url=database_url, rate_limit=None,
                           auth_failure_limit=None))
    try:
        app.execute(lambda: app.apply_distributor("Zhang Wei", "13800000201",
                                                  distributor_id="M1"))
        app.execute(lambda: app.approve_distributor("M1"))
        code = app.distributor("M1").referral_code
        app.execute(lambda: app.apply_distributor("Li Na", "13800000202", code,
                                                  distributor_id="M2"))
        app.execute(lambda: app.approve_distributor("M2"))
        catch_up(app)
        flask = create_app(app.settings, application=app)
        shown = {}
        for role, owner in (("admin", None), ("operator", None), ("distributor", "M1")):
            client = flask.test_client()
            token = create_token(app.engine, role, name=f"mask-{role}", distributor_id=owner)
            assert sign_in(client, token).status_code == 303
            page = client.get("/console/distributors/M1").text
            shown[role] = bool(_re.search(r"Li Na", page)), "L**" in page
        assert shown == {"admin": (True, False), "operator": (False, True),
                         "distributor": (False, True)}
    finally:
        app.close()
