"""The console's work queues: what waits for someone, oldest first, with the actions that
move it on (api/console_forms.py runs them: the API's own commands, as the signed-in
token). Each queue has its count in the navigation, one GROUP BY (or one count) on its
read model per page view.

- After-sales cases (/console/aftersales; who reads GET /after-sales: admin, operator,
  auditor), open ones by default, by status: approve, reject (with a reason), receive
  the goods, refund (in yuan; confirmed first), ship an exchange or repair, close — each
  for the roles its API route allows.
- Returns to receive (/console/returns): approved returns, exchanges and repairs waiting
  for their goods, for the roles that receive them (warehouse, admin). A warehouse token
  reads no case through the API, so this queue shows it only what receiving needs: the
  case, its order, its type and its lines (no reason, no money).
- Purchase orders (/console/purchase_orders; staff): requested ones by default: approve.
  A distributor's receipt stays the distributor's.
- Shipments to pick, pack and dispatch, and low stock to receive: api/console_warehouse.py.
- Parked events (/console/parked; admin): what `fenxiao projections parked` lists, and
  `fenxiao projections retry NAME` per projection.

Adding a queue: an entry in PAGES (endpoint, lazy label, the roles that read its data
through the API — reuse the API's tuples), its count in COUNTERS (endpoint -> a function
of a read connection: one GROUP BY or count on its read model), a page view under
`@console_page(endpoint)` that pages with `page`/`next_page`/`decode_cursor` like the
others, and its actions (api/console_forms.py: `@console_action(api_view)` and `act`).
"""
from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Callable

from flask import Response, flash, g, redirect, url_for
from flask_babel import gettext, lazy_gettext
from marshmallow import validate
from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Connection
from werkzeug.exceptions import NotFound

from api import aftersales as aftersales_api
from api import console_i18n as i18n
from api import fulfilment as fulfilment_api
from api import purchasing as purchasing_api
from api import reports as reports_api
from api import stock as stock_api
from api.console import PAGES, blp, console_page, load_query, money, next_page, render
from api.console_forms import (FormError, act, back_url, confirm_then_act, console_action,
                               filled, form_bool, form_text, form_yuan, load_form)
from api.http import decode_cursor, fenxiao, page, read_position, reading
from api.schemas import Id, PageQuery, ReadQuery, Str
from commands.messages import (ApproveCase, ApprovePurchaseOrder, CloseCase, ReceiveCase,
                               RefundCase, RejectCase, ShipCase)
from commands.views import iso
from commands.reads import read_connection
from domain.aftersales import CLOSABLE, RETURNS, STATUSES as CASE_STATUSES
from projections.aftersales import get_case
from projections.aftersales import cases as cases_table
from projections.catalog import CatalogProjection
from projections.catalog import warehouses as warehouses_table
from projections.parking import list_parked, parked_counts
from projections.purchase_orders import list_purchase_orders
from projections.purchase_orders import purchase_orders as purchase_orders_table
from projections.runner import worker
from projections.shipments import shipments_of_cases

log = logging.getLogger("fenxiao.console")
STAFF = tuple(role for role in purchasing_api.READERS if role != "distributor")
OPEN_CASES = tuple(s for s in CASE_STATUSES if s != "closed")
PO_STATUSES = purchasing_api.STATUSES

# endpoint, label, roles: each queue for who reads its data through the API (and, for
# returns and low stock, who acts on it)
PAGES.extend([
    ("aftersales", lazy_gettext("After-sales"), aftersales_api.cases.roles),
    ("returns", lazy_gettext("Returns"), aftersales_api.receive.roles),
    ("purchase_orders", lazy_gettext("Purchase orders"), STAFF),
    ("shipments", lazy_gettext("Shipments"), fulfilment_api.shipment.roles),
    ("low_stock", lazy_gettext("Low stock"), tuple(dict.fromkeys(
        (*reports_api.replenishment.roles, *stock_api.receive.roles)))),
    ("parked", lazy_gettext("Parked events"), ("admin",)),
])


# -- the counts in the navigation ----------------------------------------------------------

def _count_cases(conn: Connection) -> int:
    return sum(n for status, n in case_counts(conn).items() if status in OPEN_CASES)


def _count_returns(conn: Connection) -> int:
    c = cases_table.c
    return conn.execute(select(func.count()).select_from(cases_table).where(
        c.status == "approved", c.type.in_(RETURNS))).scalar_one()


def _count_purchase_orders(conn: Connection) -> int:
    return purchase_order_counts(conn).get("requested", 0)


def _count_parked(conn: Connection) -> int:
    return sum(parked_counts(conn).values())


# endpoint -> its count for the navigation (api/console_warehouse.py adds its own)
COUNTERS: dict[str, Callable[[Connection], int]] = {
    "aftersales": _count_cases, "returns": _count_returns,
    "purchase_orders": _count_purchase_orders, "parked": _count_parked}


@blp.context_processor
def _queue_counts() -> dict[str, Any]:
    principal = g.get("principal")
    if principal is None:
        return {"queue_counts": {}}
    mine = [endpoint for endpoint, _label, roles in PAGES
            if endpoint in COUNTERS and principal.role in roles]
    if not mine:
        return {"queue_counts": {}}
    try:
        with read_connection(fenxiao().engine) as conn:
            return {"queue_counts": {endpoint: COUNTERS[endpoint](conn) for endpoint in mine}}
    except Exception:  # a count is a hint: never the reason a page (or error page) fails
        log.warning("console: the queue counts could not be read", exc_info=True)
        return {"queue_counts": {}}


# -- after-sales cases -------------------------------------------------------------------

class CaseQueueQuery(PageQuery):
    status = Str(load_default=None, validate=validate.OneOf(("open", *CASE_STATUSES)))


def case_counts(conn: Connection) -> dict[str, int]:
    c = cases_table.c
    return dict(conn.execute(select(c.status, func.count()).group_by(c.status)).all())


def case_rows(conn: Connection, statuses: tuple[str, ...], types: tuple[str, ...] | None,
              after: list[Any] | None, limit: int) -> list[dict[str, Any]]:
    """Cases in `statuses` (of `types`), oldest first, each with its sort key."""
    c = cases_table.c
    query = (select(cases_table).where(c.status.in_(statuses))
             .order_by(c.requested_at, c.case_id).limit(limit))
    if types is not None:
        query = query.where(c.type.in_(types))
    if after:
        at, case_id = after
        query = query.where(tuple_(c.requested_at, c.case_id)
                            > tuple_(datetime.fromisoformat(at), case_id))
    return [{"case_id": r.case_id, "order_id": r.order_id, "type": r.type,
             "status": r.status, "lines": [dict(x) for x in r.lines],
             "amount": r.amount_minor, "refunded": r.refunded_minor,
             "requested_at": r.requested_at, "cursor": [iso(r.requested_at), r.case_id]}
            for r in conn.execute(query)]


def warehouse_ids(conn: Connection) -> list[str]:
    return list(conn.execute(select(warehouses_table.c.warehouse_id)
                             .order_by(warehouses_table.c.warehouse_id)).scalars())


@blp.get("/aftersales")
@console_page("aftersales")
def aftersales(principal: Any) -> Response:
    query = load_query(CaseQueueQuery())
    status = query["status"] or "open"
    statuses = OPEN_CASES if status == "open" else (status,)
    with reading() as conn:
        position = read_position(aftersales_api.READS, query["min_position"])
        rows = case_rows(conn, statuses, None, decode_cursor(query["cursor"], str, str),
                         query["limit"] + 1)
        counts = case_counts(conn)
    listing = page(rows, query["limit"], lambda r: r["cursor"])
    return render("aftersales.html", position=position, status=status, counts=counts,
                  open_count=sum(counts.get(s, 0) for s in OPEN_CASES),
                  statuses=CASE_STATUSES, items=listing["items"], closable=CLOSABLE,
                  next_url=next_page(listing["next_cursor"]))


@blp.get("/aftersales/<case_id>")
@console_page("aftersales")
def aftersales_case(principal: Any, case_id: str) -> Response:
    query = load_query(ReadQuery())
    with reading() as conn:
        position = read_position([*aftersales_api.READS, CatalogProjection.name],
                                 query["min_position"])
        found = get_case(conn, case_id)
        if found is None:
            raise NotFound(gettext("case %(case_id)s not found", case_id=case_id))
        found["shipments"] = shipments_of_cases(conn, [case_id])[case_id]
        warehouses = warehouse_ids(conn)
    return render("aftersales_case.html", position=position, case=found,
                  warehouses=warehouses, returns=RETURNS, closable=CLOSABLE)


def _case_done(case_id: str) -> str:
    return back_url(url_for(".aftersales_case", case_id=case_id))


@blp.post("/aftersales/<case_id>/approve")
@console_action(aftersales_api.approve)
def case_approve(principal: Any, case_id: str) -> Response:
    body = load_form(aftersales_api.CaseReasonIn(), filled(reason=form_text("reason")))
    return act(ApproveCase(case_id, body["reason"]), _case_done(case_id),
               gettext("Case %(case_id)s approved.", case_id=case_id))


@blp.post("/aftersales/<case_id>/reject")
@console_action(aftersales_api.reject)
def case_reject(principal: Any, case_id: str) -> Response:
    reason = form_text("reason")
    if reason is None:
        raise FormError(gettext("a rejection needs a reason"),
                        reason=[gettext("say why the case is rejected")])
    body = load_form(aftersales_api.CaseReasonIn(), {"reason": reason})
    return act(RejectCase(case_id, body["reason"]), _case_done(case_id),
               gettext("Case %(case_id)s rejected.", case_id=case_id))


@blp.post("/aftersales/<case_id>/receive")
@console_action(aftersales_api.receive)
def case_receive(principal: Any, case_id: str) -> Response:
    body = load_form(aftersales_api.CaseReceiveIn(), {
        "restock": form_bool("restock"), "warehouse_id": form_text("warehouse_id")})
    return act(ReceiveCase(case_id, body["warehouse_id"], body["restock"]),
               _case_done(case_id),
               gettext("The goods of case %(case_id)s were received at %(warehouse)s.",
                       case_id=case_id, warehouse=body["warehouse_id"]))


@blp.post("/aftersales/<case_id>/refund")
@console_action(aftersales_api.refund)
def case_refund(principal: Any, case_id: str) -> Response:
    currency = fenxiao().settings.currency
    body = load_form(aftersales_api.CaseRefundIn(), filled(
        amount={"amount": form_yuan("amount"), "currency": currency},
        refund_reference=form_text("refund_reference")))
    amount_minor = body["amount"]["amount"]
    with reading() as conn:
        found = get_case(conn, case_id)
    facts = [(gettext("Case"), case_id), (gettext("Amount"), money(amount_minor)),
             (gettext("Refund reference"), body["refund_reference"])]
    if found is not None:
        facts[1:1] = [(gettext("Order"), found["order_id"]),
                      (gettext("Type"), i18n.word(i18n.CASE_TYPES, found["type"])),
                      (gettext("Status"), i18n.word(i18n.STATUSES, found["status"])),
                      (gettext("Refunded so far"), money(found["refunded"]))]

    def done(reply: Any) -> str:
        if reply.status == 202:
            return gettext("Refund of %(amount)s for case %(case_id)s approved once; a "
                           "second person's approval pays it.",
                           amount=money(amount_minor), case_id=case_id)
        return gettext("Refunded %(amount)s for case %(case_id)s.",
                       amount=money(amount_minor), case_id=case_id)
    return confirm_then_act(
        RefundCase(case_id, amount_minor, body["refund_reference"]), _case_done(case_id),
        done, title=gettext("Refund case %(case_id)s", case_id=case_id), facts=facts,
        consequence=gettext("%(amount)s will be paid back to the customer and recorded "
                            "against the order; this cannot be undone.",
                            amount=money(amount_minor)))


@blp.post("/aftersales/<case_id>/ship")
@console_action(aftersales_api.ship)
def case_ship(principal: Any, case_id: str) -> Response:
    return act(ShipCase(case_id), _case_done(case_id),
               gettext("Case %(case_id)s ships.", case_id=case_id))


@blp.post("/aftersales/<case_id>/close")
@console_action(aftersales_api.close)
def case_close(principal: Any, case_id: str) -> Response:
    return act(CloseCase(case_id), _case_done(case_id),
               gettext("Case %(case_id)s closed.", case_id=case_id))


@blp.get("/returns")
@console_page("returns")
def returns(principal: Any) -> Response:
    query = load_query(PageQuery())
    with reading() as conn:
        position = read_position(aftersales_api.READS, query["min_position"])
        rows = case_rows(conn, ("approved",), RETURNS,
                         decode_cursor(query["cursor"], str, str), query["limit"] + 1)
        warehouses = warehouse_ids(conn)
    listing = page(rows, query["limit"], lambda r: r["cursor"])
    items = [{k: r[k] for k in ("case_id", "order_id", "type", "lines", "requested_at")}
             for r in listing["items"]]  # only what receiving needs
    return render("returns.html", position=position, items=items, warehouses=warehouses,
                  next_url=next_page(listing["next_cursor"]))


# -- purchase orders ---------------------------------------------------------------------

class PurchaseOrderQueueQuery(PageQuery):
    status = Str(load_default="requested", validate=validate.OneOf(PO_STATUSES))
    distributor_id = Id(load_default=None)


def purchase_order_counts(conn: Connection) -> dict[str, int]:
    c = purchase_orders_table.c
    return dict(conn.execute(select(c.status, func.count()).group_by(c.status)).all())


@blp.get("/purchase_orders")
@console_page("purchase_orders")
def purchase_orders(principal: Any) -> Response:
    query = load_query(PurchaseOrderQueueQuery())
    with reading() as conn:
        position = read_position(purchasing_api.READS, query["min_position"])
        rows = list_purchase_orders(conn, status=query["status"],
                                    distributor_id=query["distributor_id"],
                                    after=decode_cursor(query["cursor"], str, str),
                                    limit=query["limit"] + 1)
        counts = purchase_order_counts(conn)
    listing = page(rows, query["limit"],
                   lambda p: [p["requested_at"], p["purchase_order_id"]])
    return render("purchase_orders.html", position=position, query=query, counts=counts,
                  statuses=PO_STATUSES, items=listing["items"],
                  next_url=next_page(listing["next_cursor"]))


@blp.post("/purchase_orders/<purchase_order_id>/approve")
@console_action(purchasing_api.approve)
def purchase_order_approve(principal: Any, purchase_order_id: str) -> Response:
    return act(ApprovePurchaseOrder(purchase_order_id),
               back_url(url_for(".purchase_orders")),
               gettext("Purchase order %(id)s approved.", id=purchase_order_id))


# -- parked events ------------------------------------------------------------------------

class ParkedQuery(PageQuery):
    projection = Str(load_default=None, validate=validate.Length(max=100))


@blp.get("/parked")
@console_page("parked")
def parked(principal: Any) -> Response:
    query = load_query(ParkedQuery())
    after = decode_cursor(query["cursor"], str, int)
    with read_connection(fenxiao().engine) as conn:
        counts = parked_counts(conn)
        rows = [r for r in list_parked(conn)
                if query["projection"] in (None, r.projection)
                and (after is None or (r.projection, r.position) > tuple(after))]
    items = [{"projection": r.projection, "position": r.position, "topic": r.topic,
              "parked_at": r.parked_at, "error": r.error} for r in rows[:query["limit"] + 1]]
    listing = page(items, query["limit"], lambda r: [r["projection"], r["position"]])
    return render("parked.html", counts=counts, query=query, items=listing["items"],
                  next_url=next_page(listing["next_cursor"]))


@blp.post("/parked/<name>/retry")
@console_action(("admin",))
def parked_retry(principal: Any, name: str) -> Response:
    """What `fenxiao projections retry NAME` does (the same runner call, the same check of
    the name). Not a command: re-applying is idempotent by itself (a retried event leaves
    the parked table in the transaction that applies it), so a repeated form finds
    nothing left to apply."""
    runner = worker(fenxiao(), tick_interval_s=None)  # process managers' events too
    try:
        if name not in runner.names():
            raise FormError(gettext("no projection named %(name)s", name=name),
                            projection=[", ".join(runner.names())])
        applied, remaining = runner.retry_parked(name)
    finally:
        fenxiao().commit_listeners.remove(runner._on_commit)  # never started: none to wake
    flash(gettext("%(name)s: %(applied)d applied, %(remaining)d still parked.",
                  name=name, applied=applied, remaining=remaining), "success")
    return redirect(back_url(url_for(".parked")), 303)
