"""The console: HTML pages at /console for the people behind the tokens (operators,
auditors, warehouse staff, distributors), rendered on the server from the same read models
and query functions as the JSON API. The pages here only read: sign-in and sign-out, their
only POSTs, change nothing but the cookie. What acts — the work queues' forms — runs the
API's own commands through api/console_forms.py (api/console_work.py has the queues).

Who sees what: a page is shown to exactly the roles whose token may read its data through
the API (inventory: any role but distributor; orders: integration too, a distributor its
own; earnings ranking, sales: admin, operator, auditor; replenishment: admin, operator;
audit verification: admin, auditor). The timeline reads the log itself: admin, operator
and auditor any aggregate, a distributor only aggregates that are its own from their first
event (its orders, its account, wallet, withdrawals, purchase orders, after-sales cases);
anything else is 404 for it, like a nonexistent id. Personal data in events (phones,
people's names, street addresses) is masked for every role but admin, as GET /audit/events
masks it.

The session is Flask's signed cookie, path /console, HttpOnly, SameSite=Strict, Secure
when served over HTTPS. It holds the SHA-256 of the token (what fenxiao_api_tokens
stores), never the token, and that is looked up again on every request: a revoked,
expired or deleted token (or a changed FENXIAO_ADMIN_TOKEN) signs its sessions out at
once. The signing key is FENXIAO_CONSOLE_SECRET or, unset, a random secret kept in
fenxiao_store_facts, written on first use: a fresh `make run` needs no setting, sessions
survive restarts, and every API process on one database shares it. Whoever reads that
table could forge a cookie, but only for a token whose hash they also read there, for
pages showing what the database holds anyway; set FENXIAO_CONSOLE_SECRET to keep the key
out of the database.

Every page is in Simplified Chinese or English, amounts and times written as that language
and the merchant's time zone write them (api/console_i18n.py); text shown to people is
marked for translation here and in the templates, codes stay the API's identifiers.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
import logging
import secrets
from datetime import date, datetime, timedelta
from typing import Any, Callable
from urllib.parse import urlsplit
from uuid import UUID

from flask import (Blueprint, Flask, Response, current_app, g, make_response, redirect,
                   render_template, request, session, url_for)
from flask.sessions import SecureCookieSessionInterface
from flask_babel import gettext, lazy_gettext
from itsdangerous import BadSignature, URLSafeTimedSerializer
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import Forbidden, HTTPException, MethodNotAllowed, NotFound

from api import console_i18n as i18n
from api import orders as orders_api
from api import stock as stock_api
from api.auth import ENV_ADMIN, Principal, authenticate, principal_of
from api.console_i18n import money, money_plain, when  # noqa: F401 (imported from here)
from api.errors import ApiError
from api.guards import client_address
from api.http import decode_cursor, fenxiao, page, read_position, reading
from api.reports import (DateOrTime, ReplenishmentQuery, replenishment_rows, rows_after,
                         sales_key_after)
from api.schemas import Id, PageQuery, ReadQuery, Str
from commands import audit as audit_log
from commands.app import StoreMismatch
from commands.storage import insert_for, store_facts
from domain.aftersales import Case
from domain.distributors import Distributor
from domain.errors import DomainError
from domain.ledger import Wallet, Withdrawal
from domain.orders import Order
from domain.purchasing import PurchaseOrder
from domain.stock import StockItem
from projections.commissions import CommissionsProjection, commissions_of
from projections.distributors import DistributorsProjection, direct_downline, get_distributor
from projections.distributors import distributors as distributors_table
from projections.inventory import list_inventory
from projections.ledger import LedgerProjection, earnings_of
from projections.ledger import earnings as earnings_table
from projections.orders import get_order
from projections.orders import orders as orders_table
from projections.reports import GROUPS, ReportsProjection, report_range, sales_report, sales_totals
from projections.seal import verify

log = logging.getLogger("fenxiao.console")
PREFIX = "/console"
COOKIE = "fenxiao_console"
SESSION_MAX_AGE_S = 8 * 3600  # a sign-in lasts a working day, then the token is asked again
SECRET_FACT = "console_secret"  # the fenxiao_store_facts row
STAFF = ("admin", "operator", "auditor")

blp = Blueprint("console", __name__, url_prefix=PREFIX, template_folder="templates",
                static_folder="static/console", static_url_path="/static")

# endpoint, label, roles: each page for the roles that may read its data through the API;
# the label is lazy: it is written in each request's language when a page shows it.
PAGES: list[tuple[str, Any, tuple[str, ...]]] = [
    ("inventory", lazy_gettext("Inventory"), stock_api.READERS),
    ("orders", lazy_gettext("Orders"), orders_api.READERS),
    ("earnings", lazy_gettext("Earnings"), (*STAFF, "distributor")),
    ("sales", lazy_gettext("Sales"), STAFF),
    ("replenishment", lazy_gettext("Replenishment"), ("admin", "operator")),
    ("audit", lazy_gettext("Audit"), ("admin", "auditor")),
    ("timeline", lazy_gettext("Timeline"), (*STAFF, "distributor")),
]
# Aggregates that belong to the distributor their first event names, for good.
OWNED_AGGREGATES = {cls.__name__ for cls in (Order, Distributor, Wallet, Withdrawal,
                                             PurchaseOrder, Case)}
CSP = ("default-src 'self'; script-src 'none'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'; img-src 'self' data:")


def register(flask: Flask) -> None:
    """Outside the JSON API and its OpenAPI document: a plain Flask blueprint."""
    flask.session_interface = ConsoleSessions()
    i18n.init(flask)  # `_()` in every template, in the reader's language
    flask.register_blueprint(blp)


# -- the session cookie -----------------------------------------------------------------

def console_secret(app: Any) -> str:
    """FENXIAO_CONSOLE_SECRET, else the store's own (created by whoever asks first)."""
    if app.settings.console_secret:
        return app.settings.console_secret
    with app.engine.begin() as conn:
        conn.execute(insert_for(conn, store_facts)
                     .values(name=SECRET_FACT, value=secrets.token_urlsafe(32))
                     .on_conflict_do_nothing(index_elements=["name"]))
        return conn.execute(select(store_facts.c.value)
                            .where(store_facts.c.name == SECRET_FACT)).scalar_one()


class ConsoleSessions(SecureCookieSessionInterface):
    """Sessions for the console only: the JSON API gets a null session (it never has a
    cookie), so its requests never read the secret from the store."""

    salt = "fenxiao-console-session"
    digest_method = staticmethod(hashlib.sha256)

    def __init__(self) -> None:
        self._secret: str | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer:
        if self._secret is None:
            self._secret = console_secret(app.extensions["fenxiao"])
        return URLSafeTimedSerializer(self._secret, salt=self.salt, serializer=self.serializer,
                                      signer_kwargs={"key_derivation": "hmac",
                                                     "digest_method": self.digest_method})

    def open_session(self, app: Flask, request: Any) -> Any:
        if not _is_console(request.path):
            return self.make_null_session(app)
        try:
            serializer = self.get_signing_serializer(app)
        except Exception as error:  # the store is unreachable: the error page says so
            g.console_error = error
            return self.session_class()
        value = request.cookies.get(COOKIE)
        try:
            return self.session_class(serializer.loads(value, max_age=SESSION_MAX_AGE_S)
                                      if value else {})
        except BadSignature:  # forged, from another secret, or expired: not signed in
            return self.session_class()

    def get_cookie_name(self, app: Flask) -> str:
        return COOKIE

    def get_cookie_path(self, app: Flask) -> str:
        return PREFIX

    def get_cookie_domain(self, app: Flask) -> None:
        return None

    def get_cookie_httponly(self, app: Flask) -> bool:
        return True

    def get_cookie_samesite(self, app: Flask) -> str:
        return "Strict"

    def get_cookie_secure(self, app: Flask) -> bool:
        return request.is_secure


def _is_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _signed_in() -> Principal | None:
    """The principal of the session's token as it stands now, or None."""
    reference = session.get("token")
    if not isinstance(reference, str):
        return None
    app = fenxiao()
    admin_token = app.settings.admin_token
    if admin_token and hmac.compare_digest(reference, _digest(admin_token)):
        return Principal(name=ENV_ADMIN, role="admin")
    return principal_of(app.engine, reference, now=app.clock())  # revoked or expired: None


@blp.before_request
def _before() -> None:
    error = g.pop("console_error", None)
    if error is not None:
        raise error
    if request.endpoint == "console.static":
        return
    g.principal = _signed_in()
    if g.principal is None and "token" in session:
        session.clear()  # the token was revoked: signed out


@blp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    response.headers["Cross-Origin-Resource-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _check_form() -> None:
    """Both POSTs carry the session's CSRF token, and (if the browser says) our origin."""
    origin = request.headers.get("Origin")
    # Compared by host alone: a TLS proxy in front may change the scheme.
    if origin and urlsplit(origin).netloc != request.host:
        raise Forbidden(gettext("This form was sent from another site."))
    expected, sent = session.get("csrf"), request.form.get("csrf", "")
    if not (isinstance(expected, str) and hmac.compare_digest(sent.encode(), expected.encode())):
        raise Forbidden(gettext("The form has expired or did not come from this console; "
                                "reload the page and try again."))


def _safe_next(target: str | None) -> str | None:
    """Only a console path of ours: never an open redirect."""
    if not target or not target.isprintable() or "\\" in target:
        return None
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not _is_console(parts.path):
        return None
    return target


# -- rendering, errors ----------------------------------------------------------------

@blp.context_processor
def _context() -> dict[str, Any]:
    principal = g.get("principal")
    nav = [(endpoint, label) for endpoint, label, roles in PAGES
           if principal and principal.role in roles]
    first_url = None
    if request.args.get("cursor"):
        args = {k: v for k, v in request.args.items() if k != "cursor"}
        first_url = url_for(request.endpoint, **(request.view_args or {}), **args)
    return {"principal": principal, "nav": nav, "csrf": session.get("csrf", ""),
            "currency": fenxiao().settings.currency, "here": _here(),
            "first_url": first_url, "allowed": {endpoint for endpoint, _label in nav},
            **i18n.template_context()}


def _here() -> str | None:
    """Where the language switch comes back to: this page (not the switch itself)."""
    if request.endpoint == "console.language" or request.method != "GET":
        return None
    return request.full_path.rstrip("?")


def render(template: str, http_status: int = 200, **context: Any) -> Response:
    response = make_response(render_template(f"console/{template}", **context), http_status)
    response.headers["Content-Type"] = "text/html; charset=utf-8"
    return response


def error_page(status: int, message: str, details: Any = None,
               headers: Any = (), code: str | None = None) -> Response:
    """`code`: a domain or API error's stable identifier, shown as it is in any language
    (it is what the JSON API answers, and what to search the logs and docs for)."""
    message = str(message)
    message = message[:1].upper() + message[1:]
    if not message.endswith((".", "。", "!", "！", "?", "？")):
        message += "."
    response = render("error.html", status, status=status, title=i18n.http_title(status),
                      message=message, details=details or {}, code=code)
    for name, value in headers:
        if name.lower() != "content-type":
            response.headers[name] = value
    return response


class BadQuery(Exception):
    """A query string its schema refuses: 422, each field with its messages."""

    def __init__(self, messages: Any) -> None:
        super().__init__("the query is not valid")
        self.messages = messages


@blp.errorhandler(HTTPException)
def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    message = error.description or error.name
    if status == 429:  # Flask-Limiter's description is the limit itself
        message = gettext("Too many requests; the limit is %(limit)s.", limit=message)
    elif message == type(error).description:  # Werkzeug's words, not ours
        message = str(i18n.HTTP_EXPLANATIONS.get(status, i18n.http_title(status)))
    return error_page(status, message, headers=error.get_headers())


@blp.errorhandler(DomainError)
def _domain_error(error: DomainError) -> Response:
    return error_page(error.status, str(error), code=error.code)


@blp.errorhandler(ApiError)
def _api_error(error: ApiError) -> Response:
    details = dict(error.details)
    retry_after_s = details.pop("retry_after_s", None)
    headers = [("Retry-After", str(retry_after_s))] if retry_after_s is not None else []
    return error_page(error.status, error.message, details, headers, code=error.code)


@blp.errorhandler(BadQuery)
def _bad_query(error: BadQuery) -> Response:
    return error_page(422, gettext("The query is not valid; see below."), error.messages)


@blp.errorhandler(StoreMismatch)
def _store_mismatch(error: StoreMismatch) -> Response:
    return error_page(503, error.message, code=error.code)


@blp.errorhandler(DBAPIError)
def _database_error(error: DBAPIError) -> Response:
    log.exception("console: database error")
    return error_page(503, gettext("The database cannot be reached; try again shortly."))


@blp.errorhandler(Exception)
def _unexpected(error: Exception) -> Response:
    log.exception("console: unhandled error")
    return error_page(500, gettext("An internal error occurred."))


def console_page(section: str) -> Callable[[Callable[..., Response]], Callable[..., Response]]:
    """Signed in (else to the sign-in form), with a role that may open the pages of
    `section` (else 403); the view gets the principal."""
    roles = {endpoint: roles for endpoint, _label, roles in PAGES}[section]

    def decorate(view: Callable[..., Response]) -> Callable[..., Response]:
        @functools.wraps(view)
        def wrapper(**kwargs: Any) -> Response:
            principal = g.principal
            if principal is None:
                return redirect(url_for(".signin", next=request.full_path.rstrip("?")), 303)
            if principal.role not in roles:
                raise Forbidden(gettext("A token of the role %(role)s cannot open this page.",
                                        role=i18n.word(i18n.ROLES, principal.role)))
            return view(principal, **kwargs)
        return wrapper
    return decorate


def load_query(schema: Schema) -> dict[str, Any]:
    """The query string through the API's own schema; a form's empty fields mean unset."""
    try:
        return schema.load({k: v for k, v in request.args.items() if v != ""})
    except ValidationError as error:
        raise BadQuery(error.messages) from None


def next_page(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    return url_for(request.endpoint, **{**(request.view_args or {}),
                                        **request.args.to_dict(), "cursor": cursor})


# -- signing in and out ----------------------------------------------------------------

@blp.get("/")
def home() -> Response:
    principal = g.principal
    if principal is None:
        return redirect(url_for(".signin"), 303)
    first = next(endpoint for endpoint, _label, roles in PAGES if principal.role in roles)
    return redirect(url_for(f".{first}"), 303)


@blp.get("/signin")
def signin() -> Response:
    if g.principal is not None:
        return redirect(_safe_next(request.args.get("next")) or url_for(".home"), 303)
    return signin_form()


def signin_form(status: int = 200, problem: str | None = None) -> Response:
    session.setdefault("csrf", secrets.token_urlsafe(32))
    return render("signin.html", status, problem=problem,
                  next=_safe_next(request.values.get("next")) or "")


@blp.post("/signin")
def signin_post() -> Response:
    _check_form()
    token = request.form.get("token", "").strip()
    app = fenxiao()
    principal = (authenticate(app.engine, token, app.settings.admin_token, now=app.clock())
                 if 0 < len(token) <= 200 else None)
    if principal is None:
        failures = current_app.extensions.get("fenxiao_auth_failures")
        if failures:  # 429 once this address has failed too often; never a valid token
            failures.failed(client_address())
        return signin_form(401, gettext("That token is not valid."))
    session.clear()  # a new session, new CSRF token: nothing carried over from before
    session["token"] = _digest(token)
    session["csrf"] = secrets.token_urlsafe(32)
    return redirect(_safe_next(request.form.get("next")) or url_for(".home"), 303)


@blp.post("/signout")
def signout() -> Response:
    _check_form()
    session.clear()
    return redirect(url_for(".signin"), 303)


class LanguageQuery(Schema):
    lang = Str(required=True, validate=validate.Length(max=35))
    next = Str(load_default=None, validate=validate.Length(max=2000))


@blp.get("/language")
def language() -> Response:
    """The language switch (signed in or not): remembered in a cookie, then back to the
    page it was clicked on, if that is a console page."""
    query = load_query(LanguageQuery())
    locale = i18n.locale_for(query["lang"])
    if locale is None:
        raise BadQuery({"lang": [gettext("Choose en (English) or zh_CN (简体中文).")]})
    response = redirect(_safe_next(query["next"]) or url_for(".home"), 303)
    return i18n.remember(response, locale)


# -- inventory and orders ----------------------------------------------------------------

@blp.get("/inventory")
@console_page("inventory")
def inventory(principal: Principal) -> Response:
    query = load_query(stock_api.InventoryQuery())
    with reading() as conn:
        position = read_position(stock_api.READS, query["min_position"])
        after = decode_cursor(query["cursor"], str, str)
        rows = list_inventory(conn, query["sku"], query["warehouse_id"],
                              tuple(after) if after else None, query["limit"] + 1)
    listing = page(rows, query["limit"], lambda r: [r["sku"], r["warehouse_id"]])
    return render("inventory.html", position=position, query=query, items=listing["items"],
                  next_url=next_page(listing["next_cursor"]))


@blp.get("/orders")
@console_page("orders")
def orders(principal: Principal) -> Response:
    query = load_query(orders_api.OrderQuery())
    own = principal.distributor_id if principal.role == "distributor" else None
    with reading() as conn:
        position = read_position(orders_api.READS, query["min_position"])
        listing = orders_api.order_page(conn, query, own)
        counts = status_counts(conn, query["distributor_id"], query["customer_id"], own)
    return render("orders.html", position=position, query=query, items=listing["items"],
                  counts=counts, statuses=orders_api.STATUSES,
                  filters={k: query[k] for k in ("distributor_id", "customer_id") if query[k]},
                  next_url=next_page(listing["next_cursor"]))


def status_counts(conn: Any, distributor_id: str | None, customer_id: str | None,
                  own: str | None) -> dict[str, int]:
    """How many orders are in each status, under the page's other filters."""
    query = select(orders_table.c.status, func.count()).group_by(orders_table.c.status)
    for value in (distributor_id, own):
        if value is not None:
            query = query.where(orders_table.c.distributor_id == value)
    if customer_id is not None:
        query = query.where(orders_table.c.customer_id == customer_id)
    return {status: count for status, count in conn.execute(query)}


@blp.get("/orders/<order_id>")
@console_page("orders")
def order(principal: Principal, order_id: str) -> Response:
    query = load_query(ReadQuery())
    with reading() as conn:
        position = read_position(orders_api.READS, query["min_position"])
        found = get_order(conn, order_id)
    if found is None or not _may_see(principal, found["distributor_id"]):
        raise NotFound(gettext("Order %(order_id)s was not found.", order_id=order_id))
    return render("order.html", position=position, order=found)


def _may_see(principal: Principal, distributor_id: str | None) -> bool:
    return principal.role != "distributor" or distributor_id == principal.distributor_id


# -- earnings --------------------------------------------------------------------------

@blp.get("/earnings")
@console_page("earnings")
def earnings(principal: Principal) -> Response:
    """Staff: distributors ranked by lifetime commission earned. A distributor: its own."""
    if principal.role == "distributor":
        return redirect(url_for(".distributor", distributor_id=principal.distributor_id), 303)
    query = load_query(PageQuery())
    app = fenxiao()
    with reading() as conn:
        position = read_position([LedgerProjection.name, DistributorsProjection.name],
                                 query["min_position"])
        after = decode_cursor(query["cursor"], int, str, int)
        rows = ranking(conn, app.settings.currency, after, query["limit"] + 1)
        top = conn.execute(select(func.max(earnings_table.c.lifetime_earned)).where(
            earnings_table.c.currency == app.settings.currency)).scalar() or 0
    listing = page(rows, query["limit"],
                   lambda r: [r["lifetime_earned"], r["distributor_id"], r["rank"]])
    return render("earnings.html", position=position, items=listing["items"], top=top,
                  next_url=next_page(listing["next_cursor"]))


def ranking(conn: Any, currency: str, after: list[Any] | None,
            limit: int) -> list[dict[str, Any]]:
    """Most earned first (ties by id); `after` is the last row's (earned, id, rank)."""
    e, d = earnings_table.c, distributors_table.c
    query = (select(earnings_table, d.name, d.status)
             .select_from(earnings_table.outerjoin(
                 distributors_table, e.distributor_id == d.distributor_id))
             .where(e.currency == currency)
             .order_by(e.lifetime_earned.desc(), e.distributor_id).limit(limit))
    rank = 0
    if after:
        earned, distributor_id, rank = after
        query = query.where((e.lifetime_earned < earned) | (
            (e.lifetime_earned == earned) & (e.distributor_id > distributor_id)))
    return [{**row._asdict(), "rank": rank + n} for n, row in enumerate(conn.execute(query), 1)]


@blp.get("/distributors/<distributor_id>")
@console_page("earnings")
def distributor(principal: Principal, distributor_id: str) -> Response:
    """One distributor: its earnings, its commission entries (paged) and direct downline."""
    query = load_query(PageQuery())
    app = fenxiao()
    with reading() as conn:
        position = read_position([LedgerProjection.name, DistributorsProjection.name,
                                  CommissionsProjection.name], query["min_position"])
        found = get_distributor(conn, distributor_id)
        if found is None or not _may_see(principal, distributor_id):
            raise NotFound(gettext("Distributor %(distributor_id)s was not found.",
                                   distributor_id=distributor_id))
        figures = earnings_of(conn, distributor_id, app.settings.currency)
        rows = commissions_of(conn, distributor_id,
                              decode_cursor(query["cursor"], datetime, str, int),
                              query["limit"] + 1)
        downline = direct_downline(conn, distributor_id, None, 51)
    if principal.role != "admin":  # people's names, masked as everywhere but for admin
        downline = [{**d, "name": audit_log.mask_name(d["name"])} for d in downline]
    listing = page(rows, query["limit"], lambda c: c["cursor"])
    return render("distributor.html", position=position, distributor=found,
                  earnings=figures, commissions=listing["items"], downline=downline[:50],
                  more_downline=len(downline) > 50,
                  next_url=next_page(listing["next_cursor"]))


# -- sales, replenishment, the seal -----------------------------------------------------

class SalesQuery(PageQuery):
    from_ = DateOrTime(data_key="from", load_default=None)
    to = DateOrTime(load_default=None)
    group_by = Str(load_default="day", validate=validate.OneOf(GROUPS))


CHART_DAYS = 366  # a longer range gets its table, not a chart of hairline bars
DEFAULT_DAYS = 30


@blp.get("/sales")
@console_page("sales")
def sales(principal: Principal) -> Response:
    """The sales report (GET /reports/sales) with a chart of each day's net and refunds;
    the range defaults to the last 30 days at the report's UTC offset."""
    query = load_query(SalesQuery())
    app = fenxiao()
    offset = app.settings.report_utc_offset_minutes
    to = query["to"] or (app.clock() + timedelta(minutes=offset)).date()
    to_day = to.date() if isinstance(to, datetime) else to
    from_ = query["from_"] or to_day - timedelta(days=DEFAULT_DAYS - 1)
    start, end = report_range(from_, to, offset)
    with reading() as conn:
        position = read_position([ReportsProjection.name], query["min_position"])
        currency = app.settings.currency
        days = _days(start, end, offset)
        rows = sales_report(conn, start, end, query["group_by"], currency,
                            utc_offset_minutes=offset, after=sales_key_after(query["cursor"]),
                            limit=query["limit"] + 1)
        totals = sales_totals(conn, start, end, currency)
        by_day = {row["key"]: row for row in sales_report(
            conn, start, end, "day", currency, utc_offset_minutes=offset)} if days else {}
    listing = page(rows, query["limit"], lambda row: f"k:{row['key'] or ''}")
    return render("sales.html", position=position, query=query, start=start, end=end,
                  from_=from_, to=to, totals=totals, items=listing["items"],
                  groups=GROUPS, chart=sales_chart(days, by_day) if days else None,
                  next_url=next_page(listing["next_cursor"]))


def _days(start: datetime, end: datetime, offset_minutes: int) -> list[date]:
    """The calendar days (at the report's offset) that [start, end) touches, if few."""
    shift = timedelta(minutes=offset_minutes)
    first, last = (start + shift).date(), (end - timedelta(microseconds=1) + shift).date()
    count = (last - first).days + 1
    return [first + timedelta(days=n) for n in range(count)] if 0 < count <= CHART_DAYS \
        else []


def sales_chart(days: list[date], by_day: dict[str, dict[str, int]]) -> dict[str, Any]:
    """Bar geometry for an inline SVG: each day's net (and refunds beside it), a scale
    rounded up to 1, 2 or 5 × 10ⁿ minor units (at least 100.00, so its quarters are
    whole), and about eight labelled days."""
    width, height, left, top, bottom = 900, 260, 76, 12, 28
    plot_w, plot_h = width - left - 8, height - top - bottom
    peak = max([max(r["net"], r["refunded"]) for r in by_day.values()] + [10_000])
    scale = next(m * 10 ** n for n in range(20) for m in (1, 2, 5) if m * 10 ** n >= peak)
    step = plot_w / len(days)
    label_every = max(1, round(len(days) / 8))
    bars = []
    for n, day in enumerate(days):
        row = by_day.get(day.isoformat(), {"net": 0, "refunded": 0, "orders": 0})
        x = left + n * step
        bars.append({
            "day": day.isoformat(), "net": row["net"], "refunded": row["refunded"],
            "orders": row["orders"], "x": round(x + step * 0.1, 2),
            "w": round(step * 0.4, 2), "rx": round(x + step * 0.5, 2),
            "h": round(plot_h * row["net"] / scale, 2),
            "rh": round(plot_h * row["refunded"] / scale, 2),
            "label": day.strftime("%m-%d") if n % label_every == 0 else None,
            "mid": round(x + step / 2, 2)})
    ticks = [{"y": round(top + plot_h * (1 - k / 4), 2), "value": scale * k // 4}
             for k in range(5)]
    return {"width": width, "height": height, "left": left, "top": top,
            "base": top + plot_h, "right": width - 8, "bars": bars, "ticks": ticks}


@blp.get("/replenishment")
@console_page("replenishment")
def replenishment(principal: Principal) -> Response:
    """The replenishment report (GET /reports/replenishment); `low_only` is the
    low-stock list."""
    query = load_query(ReplenishmentQuery())
    rows, position, now = replenishment_rows(query)
    low = sum(1 for row in rows if row["suggested_quantity"])
    rows = rows_after(rows, query["cursor"])
    listing = page(rows[:query["limit"] + 1], query["limit"],
                   lambda row: [row["sku"], row["warehouse_id"]])
    return render("replenishment.html", position=position, query=query, now=now, low=low,
                  items=listing["items"], next_url=next_page(listing["next_cursor"]))


@blp.get("/audit")
@console_page("audit")
def audit(principal: Principal) -> Response:
    """The seal's verification (what `fenxiao audit verify` and GET /audit/verify
    report), recomputed over the whole log on each visit."""
    load_query(Schema())  # no parameters: anything else is 422
    report = verify(fenxiao())
    return render("audit.html", position=report["head"], report=report)


# -- the timeline of one aggregate ---------------------------------------------------------

class TimelineQuery(Schema):
    order_id = Id(load_default=None)
    distributor_id = Id(load_default=None)
    sku = Id(load_default=None)
    warehouse_id = Id(load_default=None)
    aggregate_id = fields.UUID(load_default=None)
    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=500))
    cursor = PageQuery._declared_fields["cursor"]


def _aggregate(query: dict[str, Any]) -> tuple[UUID, str] | None:
    """The aggregate the query names (one of four ways), with a caption; None if none."""
    named = [key for key in ("order_id", "distributor_id", "aggregate_id") if query[key]]
    if query["sku"] or query["warehouse_id"]:
        named.append("stock item")
    if not named:
        return None
    if len(named) > 1:
        raise BadQuery({"_query": [gettext(
            "Name one aggregate: an order, a distributor, a stock item (SKU and warehouse) "
            "or an aggregate id.")]})
    if query["order_id"]:
        return (Order.create_id(query["order_id"]),
                gettext("Order %(order_id)s", order_id=query["order_id"]))
    if query["distributor_id"]:
        return (Distributor.create_id(query["distributor_id"]),
                gettext("Distributor %(distributor_id)s",
                        distributor_id=query["distributor_id"]))
    if query["aggregate_id"]:
        return query["aggregate_id"], gettext("Aggregate %(aggregate_id)s",
                                              aggregate_id=query["aggregate_id"])
    if not (query["sku"] and query["warehouse_id"]):
        raise BadQuery({"_query": [gettext(
            "A stock item is named by its SKU and its warehouse.")]})
    return (StockItem.create_id(query["sku"], query["warehouse_id"]),
            gettext("Stock item %(sku)s in %(warehouse_id)s", sku=query["sku"],
                    warehouse_id=query["warehouse_id"]))


@blp.get("/timeline")
@console_page("timeline")
def timeline(principal: Principal) -> Response:
    """Every event of one aggregate in log order, read from the log itself (the audit
    history's own query, masked as GET /audit/events masks it: for all but admin)."""
    query = load_query(TimelineQuery())
    target = _aggregate(query)
    if target is None:
        return render("timeline.html", query=query, events=None)
    aggregate_id, caption = target
    after = decode_cursor(query["cursor"], int)
    app = fenxiao()
    app.check_store()  # events we cannot decode are refused here, not half shown
    mask = principal.role != "admin"
    first, _head = audit_log.list_events(
        app, audit_log.EventFilter(aggregate_id=aggregate_id), 1, masked=True)
    if not first or not _may_see_aggregate(principal, first[0]):
        raise NotFound(gettext("There are no events for %(what)s.", what=caption))
    where = audit_log.EventFilter(after=after[0] if after else 0, aggregate_id=aggregate_id)
    items, _head = audit_log.list_events(app, where, query["limit"] + 1, masked=mask)
    listing = page(items, query["limit"], lambda e: [e["position"]])
    for item in listing["items"]:
        item["data"] = json.dumps(item["data"], indent=2, ensure_ascii=False)
    return render("timeline.html", query=query, caption=caption, aggregate_id=aggregate_id,
                  events=listing["items"], masked=mask,
                  next_url=next_page(listing["next_cursor"]))


def _may_see_aggregate(principal: Principal, first: dict[str, Any]) -> bool:
    """A distributor sees an aggregate whose first event makes it its own for good."""
    if principal.role != "distributor":
        return True
    return (first["type"].partition(".")[0] in OWNED_AGGREGATES
            and first["data"].get("distributor_id") == principal.distributor_id)


# -- what matches no page ---------------------------------------------------------------

@blp.route("/", defaults={"rest": ""}, methods=["POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
@blp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
def missing(rest: str) -> Response:
    """A path no page has is 404, a method a page does not take is 405: both as pages."""
    adapter = current_app.url_map.bind("", url_scheme=request.scheme)
    allowed = set()
    for method in ("GET", "POST"):
        try:
            endpoint, _args = adapter.match(request.path, method=method)
        except HTTPException:
            continue
        if endpoint != "console.missing":
            allowed.add(method)
    if allowed:
        raise MethodNotAllowed(valid_methods=sorted(allowed | ({"HEAD"} if "GET" in allowed
                                                               else set())))
    raise NotFound(str(i18n.HTTP_EXPLANATIONS[404]))

