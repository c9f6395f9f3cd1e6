"""The console at /console through Flask's test client, on SQLite and PostgreSQL: signing in
and out (cookie flags, CSRF, revoked tokens, forged cookies), which role sees which page, a
distributor seeing only its own, figures equal to the JSON API's, HTML error pages, security
headers, and no asset from anywhere but the console itself."""
from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import zlib
from dataclasses import replace
from html.parser import HTMLParser
from typing import Any, Iterator

import pytest
from flask.testing import FlaskClient
from itsdangerous import TimestampSigner, URLSafeTimedSerializer
from sqlalchemy import delete, select
from sqlalchemy.exc import OperationalError

from api import create_app
from api.auth import create_token
from api import console as console_module
from api.console import COOKIE, PAGES, SECRET_FACT, SESSION_MAX_AGE_S, money
from api.demo import load_demo
from commands import Fenxiao
from commands.settings import Settings
from commands.storage import api_tokens, store_facts
from domain.orders import Order
from projections import all_projections
from projections.policies import all_process_managers
from projections.runner import ProjectionRunner, positions
from projections.seal import seal_pending, verify
from tests.conftest import wipe

SEAL_KEY = "console-test-seal-key-0123456789"
ROLES = ("admin", "operator", "warehouse", "auditor", "integration", "distributor")
STAFF_PAGES = [endpoint for endpoint, _label, _roles in PAGES]


class Console:
    """The demo store behind the console, with a token for every role (the distributor's
    is DEMO-D2's: it sold DEMO-O1 and DEMO-O3; DEMO-D1 sold DEMO-O2; DEMO-O4 is nobody's)."""

    def __init__(self, app: Fenxiao) -> None:
        self.app = app
        self.flask = create_app(app.settings, application=app)
        self.tokens = {role: create_token(app.engine, role, name=f"console-{role}")
                       for role in ROLES if role != "distributor"}
        self.tokens["distributor"] = create_token(app.engine, "distributor", name="console-d2",
                                                  distributor_id="DEMO-D2")
        self.tokens["d1"] = create_token(app.engine, "distributor", name="console-d1",
                                         distributor_id="DEMO-D1")

    def browser(self, role: str | None = None) -> FlaskClient:
        """A client with its own cookies; signed in as `role` if given."""
        client = self.flask.test_client()
        if role is not None:
            reply = sign_in(client, self.tokens[role])
            assert reply.status_code == 303, reply.text
        return client

    def money(self, amount_minor: int) -> str:
        """An amount as the pages write it for a browser that states no language."""
        with self.flask.test_request_context("/console/"):
            return money(amount_minor)

    def api(self, path: str, role: str = "admin", **params: Any) -> Any:
        reply = self.flask.test_client().get(
            f"/api/v1{path}", query_string=params,
            headers={"Authorization": f"Bearer {self.tokens[role]}"})
        assert reply.status_code == 200, reply.get_json()
        return reply.get_json()


def catch_up(app: Fenxiao) -> None:
    """Projections and process managers until nothing is left (a manager's commands are
    events for the projections), then seal the log."""
    runner = ProjectionRunner(app, all_projections(), process_managers=all_process_managers())
    for _ in range(10):
        runner.catch_up()
        with app.engine.connect() as conn:
            if set(positions(conn).values()) == {app.last_position()}:
                break
    else:
        raise AssertionError("the projections do not reach the log head")
    seal_pending(app)


@pytest.fixture(scope="module")
def console(database_url: str) -> Iterator[Console]:
    """One demo store for the module (the console only reads: a test that changes
    something restores it or changes what no other test reads)."""
    wipe(database_url)
    app = Fenxiao(Settings(database_url=database_url, rate_limit=None,
                           auth_failure_limit=None, seal_key=SEAL_KEY))
    load_demo(app)
    catch_up(app)
    yield Console(app)
    app.close()


# -- HTML ---------------------------------------------------------------------------------

VOID = {"br", "input", "img", "meta", "link", "hr", "wbr"}


class Figures(HTMLParser):
    """The text of every element marked data-figure, and of every data-field inside a
    row marked data-key (by table id): what the browser test reads with CSS selectors."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.figures: dict[str, str] = {}
        self.rows: dict[str, dict[str, dict[str, str]]] = {}
        self._table = self._key = None
        self._open: list[tuple[str, str, str, list[str]]] = []  # tag, kind, name, text
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "table":
            self._table = found.get("id")
        if found.get("data-key") is not None:
            self._key = found["data-key"]
        if tag in VOID:
            return
        kind = next((k for k in ("data-figure", "data-field") if found.get(k)), "")
        if kind or self._open:
            self._open.append((tag, kind, found.get(kind) or "", []))

    def handle_endtag(self, tag: str) -> None:
        if not self._open:
            return
        open_tag, kind, name, text = self._open.pop()
        value = " ".join("".join(text).split())
        if self._open:
            self._open[-1][3].append(value)
        if kind == "data-figure":
            self.figures[name] = value
        elif kind == "data-field" and self._key is not None:
            self.rows.setdefault(self._table or "", {}).setdefault(self._key, {})[name] = value

    def handle_data(self, data: str) -> None:
        if self._open:
            self._open[-1][3].append(data)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def sign_in(client: FlaskClient, token: str, **form: str) -> Any:
    csrf = csrf_of(client.get("/console/signin").text)
    return client.post("/console/signin", data={"csrf": csrf, "token": token, **form})


def cookie_header(reply: Any) -> str:
    cookies = [v for k, v in reply.headers.items() if k == "Set-Cookie" and v.startswith(COOKIE)]
    assert len(cookies) == 1, reply.headers
    return cookies[0]


def session_of(client: FlaskClient) -> dict[str, Any]:
    """The cookie's payload as anyone holding it can read it (it is signed, not secret)."""
    cookie = client.get_cookie(COOKIE, path="/console")
    assert cookie is not None
    compressed = cookie.value.startswith(".")
    payload = cookie.value.lstrip(".").split(".")[0]
    data = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    return json.loads(zlib.decompress(data) if compressed else data)


# -- signing in and out -------------------------------------------------------------------

def test_sign_in_keeps_a_reference_to_the_token_in_a_strict_http_only_cookie(
        console: Console) -> None:
    client = console.flask.test_client()
    first = client.get("/console/inventory")
    assert first.status_code == 303
    assert first.headers["Location"] == "/console/signin?next=/console/inventory"
    token = console.tokens["operator"]
    reply = sign_in(client, token, next="/console/orders?status=paid")
    assert reply.status_code == 303 and reply.headers["Location"] == "/console/orders?status=paid"
    flags = [part.strip().lower() for part in cookie_header(reply).split(";")]
    assert {"httponly", "samesite=strict", "path=/console"} <= set(flags)
    assert "secure" not in flags  # plain HTTP (make run on 127.0.0.1): Secure would drop it
    held = session_of(client)
    assert held["token"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(held)
    page = client.get("/console/orders?status=paid")
    assert page.status_code == 200 and "console-operator" in page.text
    over_tls, https = console.flask.test_client(), "https://localhost"
    csrf = csrf_of(over_tls.get("/console/signin", base_url=https).text)
    secure = over_tls.post("/console/signin", base_url=https, data={"csrf": csrf, "token": token})
    assert secure.status_code == 303 and "; secure" in cookie_header(secure).lower()


def test_a_wrong_token_is_refused_and_counted_as_a_failed_sign_in(console: Console) -> None:
    app = Fenxiao(replace(console.app.settings, auth_failure_limit="3 per minute"))
    try:
        client = create_app(app.settings, application=app).test_client()
        for _ in range(3):
            reply = sign_in(client, "fx_not-a-token")
            assert reply.status_code == 401 and "That token is not valid." in reply.text
            assert reply.mimetype == "text/html"
        refused = sign_in(client, "fx_another-guess")
        assert refused.status_code == 429 and refused.mimetype == "text/html"
        assert "Retry-After" in refused.headers
        assert client.get("/console/inventory").status_code == 303  # not signed in
        # The right token is never refused: another person at the same address signs in.
        assert sign_in(client, console.tokens["admin"]).status_code == 303
        assert client.get("/console/inventory").status_code == 200
    finally:
        app.close()


def test_sign_in_and_out_need_the_session_csrf_token(console: Console) -> None:
    token = console.tokens["admin"]
    client = console.flask.test_client()
    client.get("/console/signin")
    for form in ({"token": token}, {"token": token, "csrf": "guessed"}):
        refused = client.post("/console/signin", data=form)
        assert refused.status_code == 403 and refused.mimetype == "text/html"
    other = console.flask.test_client()
    stolen = csrf_of(other.get("/console/signin").text)  # another session's token
    assert client.post("/console/signin", data={"csrf": stolen, "token": token}
                       ).status_code == 403
    foreign = client.post("/console/signin", headers={"Origin": "https://evil.example"},
                          data={"csrf": csrf_of(client.get("/console/signin").text),
                                "token": token})
    assert foreign.status_code == 403
    assert sign_in(client, token).status_code == 303
    assert client.post("/console/signout").status_code == 403
    assert client.get("/console/inventory").status_code == 200  # still signed in
    csrf = csrf_of(client.get("/console/inventory").text)
    out = client.post("/console/signout", data={"csrf": csrf})
    assert out.status_code == 303 and out.headers["Location"] == "/console/signin"
    assert client.get("/console/inventory").status_code == 303


def test_a_new_session_gets_a_new_csrf_token(console: Console) -> None:
    client = console.flask.test_client()
    before = csrf_of(client.get("/console/signin").text)
    sign_in(client, console.tokens["admin"])
    assert session_of(client)["csrf"] != before


def test_a_revoked_token_signs_its_sessions_out(console: Console) -> None:
    client = console.flask.test_client()
    sign_in(client, create_token(console.app.engine, "auditor", name="console-revoked"))
    assert client.get("/console/audit").status_code == 200
    with console.app.engine.begin() as conn:
        conn.execute(delete(api_tokens).where(api_tokens.c.name == "console-revoked"))
    reply = client.get("/console/audit")
    assert reply.status_code == 303 and reply.headers["Location"].startswith("/console/signin")
    assert client.get_cookie(COOKIE, path="/console") is None  # the cookie is gone


def signer(secret: str) -> URLSafeTimedSerializer:
    """How the console signs its cookie (api.console.ConsoleSessions), with `secret`."""
    return URLSafeTimedSerializer(secret, salt="fenxiao-console-session", signer_kwargs={
        "key_derivation": "hmac", "digest_method": hashlib.sha256})


def test_only_a_cookie_signed_with_the_store_secret_is_a_session(console: Console) -> None:
    reference = hashlib.sha256(console.tokens["admin"].encode()).hexdigest()
    forged = signer("another secret")
    client = console.flask.test_client()
    client.set_cookie(COOKIE, forged.dumps({"token": reference}), path="/console")
    assert client.get("/console/inventory").status_code == 303
    signed = signer(store_secret(console))
    client.set_cookie(COOKIE, signed.dumps({"token": reference}), path="/console")
    assert client.get("/console/inventory").status_code == 200
    restarted = Fenxiao(console.app.settings)  # another process on the store: same secret
    try:
        other = create_app(restarted.settings, application=restarted).test_client()
        other.set_cookie(COOKIE, signed.dumps({"token": reference}), path="/console")
        assert other.get("/console/inventory").status_code == 200
    finally:
        restarted.close()


def test_a_sign_in_expires_after_its_hours(console: Console) -> None:
    class Earlier(TimestampSigner):
        def get_timestamp(self) -> int:
            return int(time.time()) - SESSION_MAX_AGE_S - 60

    old = URLSafeTimedSerializer(store_secret(console), salt="fenxiao-console-session",
                                 signer=Earlier, signer_kwargs={
                                     "key_derivation": "hmac", "digest_method": hashlib.sha256})
    reference = hashlib.sha256(console.tokens["admin"].encode()).hexdigest()
    client = console.flask.test_client()
    client.set_cookie(COOKIE, old.dumps({"token": reference}), path="/console")
    assert client.get("/console/inventory").status_code == 303


def test_a_store_out_of_reach_is_a_503_page(console: Console, monkeypatch) -> None:
    def unreachable(_app: Any) -> str:
        raise OperationalError("SELECT value FROM fenxiao_store_facts", {},
                               ConnectionError("connection refused"))

    monkeypatch.setattr(console_module, "console_secret", unreachable)
    client = create_app(console.app.settings, application=console.app).test_client()
    reply = client.get("/console/signin")
    assert reply.status_code == 503 and reply.mimetype == "text/html"
    assert "database cannot be reached" in reply.text


def test_fenxiao_console_secret_signs_instead_of_the_store(console: Console) -> None:
    app = Fenxiao(replace(console.app.settings, console_secret="from-the-environment",
                          admin_token="fx_env_admin"))
    try:
        flask = create_app(app.settings, application=app)
        client = flask.test_client()
        assert sign_in(client, "fx_env_admin").status_code == 303
        page = client.get("/console/inventory")
        assert page.status_code == 200 and "env-admin" in page.text
        reference = hashlib.sha256(console.tokens["admin"].encode()).hexdigest()
        for secret, status in (("from-the-environment", 200), (store_secret(console), 303)):
            other = flask.test_client()
            other.set_cookie(COOKIE, signer(secret).dumps({"token": reference}), path="/console")
            assert other.get("/console/inventory").status_code == status
    finally:
        app.close()


def store_secret(console: Console) -> str:
    console.flask.test_client().get("/console/signin")  # a first use makes it if need be
    with console.app.engine.connect() as conn:  # kept by the store
        return conn.execute(select(store_facts.c.value)
                            .where(store_facts.c.name == SECRET_FACT)).scalar_one()


def test_next_is_only_ever_a_console_path(console: Console) -> None:
    for target in ("https://evil.example/console/", "//evil.example/console", "/api/v1/orders",
                   "/console\\@evil.example", "javascript:alert(1)"):
        reply = sign_in(console.flask.test_client(), console.tokens["admin"], next=target)
        assert reply.headers["Location"] == "/console/", target


def test_the_json_api_never_gets_a_session_cookie(console: Console) -> None:
    reply = console.flask.test_client().get(
        "/api/v1/inventory", headers={"Authorization": f"Bearer {console.tokens['admin']}"})
    assert reply.status_code == 200 and "Set-Cookie" not in reply.headers


# -- who sees what --------------------------------------------------------------------------

@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_the_pages_its_api_reads_allow(console: Console, role: str) -> None:
    client = console.browser(role)
    allowed = [endpoint for endpoint, _label, roles in PAGES if role in roles]
    home = client.get("/console/")
    assert home.status_code == 303 and home.headers["Location"] == f"/console/{allowed[0]}"
    for endpoint in STAFF_PAGES:
        reply = client.get(f"/console/{endpoint}")
        if endpoint not in allowed:
            assert reply.status_code == 403 and reply.mimetype == "text/html", endpoint
        elif role == "distributor" and endpoint == "earnings":
            assert reply.headers["Location"] == "/console/distributors/DEMO-D2"
        else:
            assert reply.status_code == 200, (endpoint, reply.text[:2000])
            nav = re.findall(r'<nav aria-label="Pages">(.*?)</nav>', reply.text, re.S)[0]
            assert re.findall(r'href="/console/(\w+)"', nav) == allowed


def test_a_distributor_sees_only_its_own(console: Console) -> None:
    client = console.browser("distributor")
    listed = Figures(client.get("/console/orders").text).rows["orders"]
    mine = console.api("/orders", role="distributor")["items"]
    assert sorted(listed) == sorted(o["order_id"] for o in mine) == ["DEMO-O1", "DEMO-O3"]
    for order_id in ("DEMO-O2", "DEMO-O4"):
        assert client.get(f"/console/orders/{order_id}").status_code == 404
    others = client.get("/console/orders?distributor_id=DEMO-D1")
    assert others.status_code == 200 and "orders" not in Figures(others.text).rows
    assert client.get("/console/orders/DEMO-O1").status_code == 200
    assert client.get("/console/distributors/DEMO-D1").status_code == 404
    assert client.get("/console/distributors/DEMO-D2").status_code == 200
    nobody = client.get("/console/timeline?order_id=DEMO-O9")
    assert nobody.status_code == 404
    for query in ("order_id=DEMO-O2", "order_id=DEMO-O4", "distributor_id=DEMO-D1",
                  f"aggregate_id={Order.create_id('DEMO-O2')}",
                  "sku=TEA-LJ-250&warehouse_id=WH-EAST"):
        other = client.get(f"/console/timeline?{query}")
        assert other.status_code == 404, query
        if query.startswith("order_id"):  # says no more than for an order that never was
            assert other.text.replace("DEMO-O2", "X").replace("DEMO-O4", "X") == \
                nobody.text.replace("DEMO-O9", "X")
    for query in ("order_id=DEMO-O1", "distributor_id=DEMO-D2",
                  f"aggregate_id={Order.create_id('DEMO-O3')}"):
        assert client.get(f"/console/timeline?{query}").status_code == 200, query


# -- the figures are the API's --------------------------------------------------------------

def test_inventory_and_orders_show_the_api_figures(console: Console) -> None:
    client = console.browser("auditor")
    shown = Figures(client.get("/console/inventory").text).rows["inventory"]
    items = console.api("/inventory", role="auditor")["items"]
    assert shown == {f"{i['sku']}/{i['warehouse_id']}": {
        k: str(i[k]) for k in ("on_hand", "reserved", "available")} for i in items}
    page = client.get("/console/orders").text
    by_status = dict(re.findall(r'data-status="(\w+)">(\d+)<', page))
    every = console.api("/orders")["items"]
    assert by_status["all"] == str(len(every)) and len(every) >= 4
    for status in ("placed", "paid", "fulfilling", "shipped", "delivered", "cancelled"):
        assert by_status[status] == str(sum(o["status"] == status for o in every)), status
    paid = Figures(client.get("/console/orders?status=delivered").text).rows["orders"]
    assert set(paid) == {o["order_id"] for o in every if o["status"] == "delivered"}
    assert Figures(page).figures["position"] == str(console.app.last_position())
    one = console.api("/orders/DEMO-O1")
    detail = Figures(client.get("/console/orders/DEMO-O1").text)
    assert detail.figures["total"] == console.money(one["total"]) == "CN¥345.00"
    assert detail.figures["paid"] == console.money(one["paid"])
    assert [row["net"] for row in detail.rows["lines"].values()] == \
        [console.money(line["net"]) for line in one["lines"]]


def test_orders_page_by_page(console: Console) -> None:
    client = console.browser("admin")
    first = client.get("/console/orders?limit=3")
    seen = list(Figures(first.text).rows["orders"])
    assert len(seen) == 3
    next_url = re.search(r'class="next" href="([^"]+)"', first.text).group(1)
    second = client.get(next_url.replace("&amp;", "&"))
    seen += list(Figures(second.text).rows["orders"])
    assert seen == [o["order_id"] for o in console.api("/orders")["items"]]
    assert 'class="next"' not in second.text and "First page" in second.text


def test_earnings_rank_distributors_with_the_api_figures(console: Console) -> None:
    client = console.browser("operator")
    ranking = Figures(client.get("/console/earnings").text).rows["ranking"]
    earned = {d: console.api(f"/distributors/{d}/earnings") for d in ("DEMO-D1", "DEMO-D2")}
    assert list(ranking) == sorted(earned, key=lambda d: -earned[d]["lifetime_earned"])
    for distributor_id, row in ranking.items():
        figures = earned[distributor_id]
        assert figures["lifetime_earned"] > 0
        for field in ("lifetime_earned", "pending", "available", "paid_out", "reversed"):
            assert row[field] == console.money(figures[field]), field
    assert [row["rank"] for row in ranking.values()] == ["1", "2"]
    own = Figures(console.browser("distributor").get("/console/distributors/DEMO-D2").text)
    assert own.figures["lifetime_earned"] == console.money(earned["DEMO-D2"]["lifetime_earned"])


def test_sales_chart_and_table_are_the_sales_report(console: Console) -> None:
    client = console.browser("admin")
    today = console.app.clock().date().isoformat()
    reply = client.get(f"/console/sales?from={today}&to={today}")
    assert reply.status_code == 200, reply.text
    report = console.api("/reports/sales", **{"from": today, "to": today})
    shown = Figures(reply.text)
    for field in ("net", "refunded", "commission", "discount"):
        assert shown.figures[field] == console.money(report["totals"][field]), field
    assert shown.figures["orders"] == str(report["totals"]["orders"])
    assert report["totals"]["net"] > 0
    bars = dict(re.findall(r'data-day="([\d-]+)" data-net="(\d+)"', reply.text))
    assert bars == {row["key"]: str(row["net"]) for row in report["items"]}
    month = client.get("/console/sales")  # the last 30 days, today's sales among them
    days = re.findall(r'data-day="([\d-]+)" data-net="(\d+)"', month.text)
    assert len(days) == 30 and days[-1] == (today, str(report["totals"]["net"]))
    by_sku = Figures(client.get(f"/console/sales?from={today}&to={today}&group_by=sku").text)
    api_by_sku = console.api("/reports/sales", group_by="sku", **{"from": today, "to": today})
    assert {k: v["net"] for k, v in by_sku.rows["sales"].items()} == \
        {row["key"]: console.money(row["net"]) for row in api_by_sku["items"]}


def test_replenishment_is_the_report(console: Console) -> None:
    client = console.browser("operator")
    shown = Figures(client.get("/console/replenishment").text).rows["replenishment"]
    report = console.api("/reports/replenishment", role="operator")["items"]
    assert shown == {f"{r['sku']}/{r['warehouse_id']}": {
        "available": str(r["available"]), "backordered": str(r["backordered"]),
        "daily_demand": f"{r['daily_demand']:.2f}",
        "reorder_point": str(r["reorder_point"]),
        "suggested_quantity": str(r["suggested_quantity"])} for r in report}
    low = client.get("/console/replenishment?low_only=true")
    assert Figures(low.text).figures["low"] == str(sum(
        r["suggested_quantity"] > 0 for r in report))


def test_audit_page_reports_the_seal_verification(console: Console) -> None:
    client = console.browser("auditor")
    shown = Figures(client.get("/console/audit").text).figures
    report = verify(console.app)
    assert report["ok"] and shown["verdict"] == "Intact"
    for field in ("events", "head", "sealed_through", "seals", "gaps"):
        assert shown[field] == str(report[field]), field
    assert shown["head_seal"] == report["head_seal"]
    events = console.app.recorder.events_record_cls.__table__
    with console.app.engine.connect() as conn:
        state = conn.execute(select(events.c.state).where(events.c.id == 5)).scalar_one()
    try:
        with console.app.engine.begin() as conn:  # someone edits an event in the database
            conn.execute(events.update().where(events.c.id == 5).values(state=state + b" "))
        tampered = Figures(client.get("/console/audit").text).figures
        assert tampered["verdict"] == "Tampering found"
        assert tampered["first_bad_position"] == "5" == \
            str(verify(console.app)["first_bad_position"])
    finally:
        with console.app.engine.begin() as conn:
            conn.execute(events.update().where(events.c.id == 5).values(state=state))
    assert Figures(client.get("/console/audit").text).figures["verdict"] == "Intact"


def test_timeline_is_the_audit_history_of_one_aggregate(console: Console) -> None:
    client = console.browser("auditor")
    reply = client.get("/console/timeline?order_id=DEMO-O1")
    history = console.api("/audit/events", role="auditor", order_id="DEMO-O1")["items"]
    positions_shown = re.findall(r'data-position="(\d+)"', reply.text)
    assert positions_shown == [str(e["position"]) for e in history]
    assert re.findall(r'data-field="type">([\w.]+)<', reply.text) == [e["type"] for e in history]
    assert history[0]["type"] == "Order.OrderPlaced"
    assert "13900000001" not in reply.text and "Zhao Lei" not in reply.text  # masked
    admin = console.browser("admin").get("/console/timeline?order_id=DEMO-O1")
    assert "+8613900000001" in admin.text and "Zhao Lei" in admin.text
    two = client.get("/console/timeline?order_id=DEMO-O1&limit=2")
    assert re.findall(r'data-position="(\d+)"', two.text) == positions_shown[:2]
    stock = client.get("/console/timeline?sku=TEA-LJ-250&warehouse_id=WH-EAST")
    assert stock.status_code == 200 and "StockItem.StockReceived" in stock.text


@pytest.mark.parametrize("query", ["order_id=DEMO-O1&distributor_id=DEMO-D1",
                                   "sku=TEA-LJ-250", "aggregate_id=not-a-uuid",
                                   "order_id=bad%20id", "cursor=%%%", "colour=red"])
def test_timeline_refuses_what_names_no_one_aggregate(console: Console, query: str) -> None:
    reply = console.browser("admin").get(f"/console/timeline?{query}")
    assert reply.status_code == 422 and reply.mimetype == "text/html", reply.text


# -- errors, headers, assets ------------------------------------------------------------------

def test_errors_are_html_pages_with_their_status(console: Console) -> None:
    client = console.browser("admin")
    cases = [("GET", "/console/no-such-page", 404), ("GET", "/console/orders/NOPE", 404),
             ("GET", "/console/distributors/NOPE", 404), ("POST", "/console/inventory", 405),
             ("DELETE", "/console/", 405), ("GET", "/console/inventory?cursor=abc", 422),
             ("GET", "/console/orders?status=lost", 422), ("GET", "/console/orders?limit=501", 422),
             ("GET", "/console/static/missing.css", 404),
             ("GET", "/console/sales?from=2026-02-30&to=2026-03-01", 422),
             ("GET", "/console/sales?from=2026-03-02&to=2026-03-01", 422)]
    for method, path, status in cases:
        reply = client.open(path, method=method)
        assert reply.status_code == status, (path, reply.text[:500])
        assert reply.mimetype == "text/html" and "<!doctype html>" in reply.text, path
        assert '"error"' not in reply.text
    assert client.post("/console/inventory").headers["Allow"] == "GET, HEAD"


ASSET = re.compile(r'(?:src|href|action)="([^"]*)"')


def test_pages_carry_security_headers_and_only_local_urls(console: Console) -> None:
    client = console.browser("admin")
    paths = ["/console/signin", "/console/no-such-page",
             *(f"/console/{endpoint}" for endpoint in STAFF_PAGES),
             "/console/orders/DEMO-O1", "/console/distributors/DEMO-D1",
             "/console/timeline?order_id=DEMO-O1"]
    for path in paths:
        reply = client.get(path)
        headers = reply.headers
        assert headers["Content-Security-Policy"].startswith("default-src 'self'"), path
        assert "script-src 'none'" in headers["Content-Security-Policy"]
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Cache-Control"] == "no-store"
        assert reply.mimetype == "text/html" and "<script" not in reply.text
        for url in ASSET.findall(reply.text):
            assert url.startswith("/console/") or url == "", (path, url)
        assert "style=" not in reply.text  # CSP refuses inline styles: none are used
    css = client.get("/console/static/console.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    assert not re.search(r"url\(|@import|https?:", css.text)
