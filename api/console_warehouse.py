"""The warehouse's work queues in the console (listed with the others in
api/console_work.py): shipments to pick, pack and dispatch, and low stock to receive.

- Shipments (/console/shipments; who reads GET /shipments/{id}): created, picked, packed,
  oldest first: pick, pack, dispatch (carrier and tracking number optional), for the roles
  the API's routes allow (warehouse, admin).
- Low stock (/console/low_stock): the replenishment report's low-only rows, for who reads
  the report and who receives stock (the warehouse too): receive stock, the command of
  POST /stock/receipts. Its count in the navigation is the report itself (every stock
  item), so it is counted at most every LOW_STOCK_TTL_S per process (and afresh after a
  receipt here).
"""
from __future__ import annotations

import json
import threading
import time
from datetime import datetime
from typing import Any

from flask import Response, url_for
from flask_babel import gettext
from marshmallow import validate
from sqlalchemy import func, select, tuple_
from sqlalchemy.engine import Connection

from api import fulfilment as fulfilment_api
from api import reports as reports_api
from api import stock as stock_api
from api.console import blp, console_page, load_query, next_page, render
from api.console_forms import act, back_url, console_action, filled, form_text, load_form
from api.console_work import COUNTERS
from api.http import decode_cursor, fenxiao, page, read_position, reading
from api.reports import replenishment_rows, rows_after
from api.schemas import Id, PageQuery, Str
from commands.messages import DispatchShipment, PackShipment, PickShipment, ReceiveStock
from commands.views import iso
from projections.reports import replenishment_report
from projections.shipments import list_carriers
from projections.shipments import shipments as shipments_table

SHIPMENT_STEPS = ("created", "picked", "packed")  # the warehouse's part


def _count_shipments(conn: Connection) -> int:
    return sum(shipment_counts(conn, None).values())


LOW_STOCK_TTL_S = 30.0  # the report reads every stock item: counted at most this often
_low_stock: dict[int, tuple[float, int]] = {}
_low_stock_lock = threading.Lock()


def _count_low_stock(conn: Connection) -> int:
    key = id(fenxiao())
    with _low_stock_lock:
        expires, count = _low_stock.get(key, (0.0, 0))
    if time.monotonic() < expires:
        return count
    count = len(replenishment_report(
        conn, fenxiao().settings, fenxiao().clock(), low_only=True))
    with _low_stock_lock:
        _low_stock[key] = (time.monotonic() + LOW_STOCK_TTL_S, count)
    return count


def forget_low_stock() -> None:
    with _low_stock_lock:
        _low_stock.pop(id(fenxiao()), None)


COUNTERS.update(shipments=_count_shipments, low_stock=_count_low_stock)


# -- shipments ----------------------------------------------------------------------------

class ShipmentQueueQuery(PageQuery):
    status = Str(load_default=None, validate=validate.OneOf(SHIPMENT_STEPS))
    warehouse_id = Id(load_default=None)


def shipment_counts(conn: Connection, warehouse_id: str | None) -> dict[str, int]:
    c = shipments_table.c
    query = (select(c.status, func.count()).where(c.status.in_(SHIPMENT_STEPS))
             .group_by(c.status))
    if warehouse_id is not None:
        query = query.where(c.warehouse_id == warehouse_id)
    return dict(conn.execute(query).all())


def shipment_rows(conn: Connection, statuses: tuple[str, ...], warehouse_id: str | None,
                  after: list[Any] | None, limit: int) -> list[dict[str, Any]]:
    c = shipments_table.c
    query = (select(shipments_table).where(c.status.in_(statuses))
             .order_by(c.created_at, c.shipment_id).limit(limit))
    if warehouse_id is not None:
        query = query.where(c.warehouse_id == warehouse_id)
    if after:
        at, shipment_id = after
        query = query.where(tuple_(c.created_at, c.shipment_id)
                            > tuple_(datetime.fromisoformat(at), shipment_id))
    return [{"shipment_id": r.shipment_id, "source": r.source, "order_id": r.order_id,
             "purchase_order_id": r.purchase_order_id, "case_id": r.case_id,
             "warehouse_id": r.warehouse_id, "region": r.region, "status": r.status,
             "lines": json.loads(r.lines), "created_at": r.created_at,
             "cursor": [iso(r.created_at), r.shipment_id]} for r in conn.execute(query)]


@blp.get("/shipments")
@console_page("shipments")
def shipments(principal: Any) -> Response:
    query = load_query(ShipmentQueueQuery())
    statuses = (query["status"],) if query["status"] else SHIPMENT_STEPS
    with reading() as conn:
        position = read_position(fulfilment_api.READS, query["min_position"])
        rows = shipment_rows(conn, statuses, query["warehouse_id"],
                             decode_cursor(query["cursor"], str, str), query["limit"] + 1)
        counts = shipment_counts(conn, query["warehouse_id"])
        carriers = [c["carrier"] for c in list_carriers(conn)]
    listing = page(rows, query["limit"], lambda r: r["cursor"])
    return render("shipments.html", position=position, query=query, counts=counts,
                  steps=SHIPMENT_STEPS, items=listing["items"], carriers=carriers,
                  next_url=next_page(listing["next_cursor"]))


def _shipments_done() -> str:
    return back_url(url_for(".shipments"))


@blp.post("/shipments/<shipment_id>/pick")
@console_action(fulfilment_api.pick)
def shipment_pick(principal: Any, shipment_id: str) -> Response:
    return act(PickShipment(shipment_id), _shipments_done(),
               gettext("Shipment %(id)s picked.", id=shipment_id))


@blp.post("/shipments/<shipment_id>/pack")
@console_action(fulfilment_api.pack)
def shipment_pack(principal: Any, shipment_id: str) -> Response:
    return act(PackShipment(shipment_id), _shipments_done(),
               gettext("Shipment %(id)s packed.", id=shipment_id))


@blp.post("/shipments/<shipment_id>/dispatch")
@console_action(fulfilment_api.dispatch)
def shipment_dispatch(principal: Any, shipment_id: str) -> Response:
    body = load_form(fulfilment_api.DispatchIn(), filled(
        carrier=form_text("carrier"), tracking_number=form_text("tracking_number")))
    return act(DispatchShipment(shipment_id, **body), _shipments_done(),
               lambda reply: gettext(
                   "Shipment %(id)s dispatched with %(carrier)s, tracking number "
                   "%(tracking)s.", id=shipment_id, carrier=reply.body.get("carrier"),
                   tracking=reply.body.get("tracking_number")))


# -- low stock ----------------------------------------------------------------------------

@blp.get("/low_stock")
@console_page("low_stock")
def low_stock(principal: Any) -> Response:
    query = load_query(reports_api.ReplenishmentQuery())
    rows, position, now = replenishment_rows({**query, "low_only": True})
    rows = rows_after(rows, query["cursor"])
    listing = page(rows[:query["limit"] + 1], query["limit"],
                   lambda row: [row["sku"], row["warehouse_id"]])
    return render("low_stock.html", position=position, query=query, now=now,
                  items=listing["items"], next_url=next_page(listing["next_cursor"]))


@blp.post("/stock/receipts")
@console_action(stock_api.receive)
def stock_receive(principal: Any) -> Response:
    quantity = form_text("quantity")
    body = load_form(stock_api.ReceiptIn(), filled(
        sku=form_text("sku"), warehouse_id=form_text("warehouse_id"),
        quantity=int(quantity) if quantity and quantity.isdecimal() else quantity,
        reference=form_text("reference")))
    forget_low_stock()
    return act(ReceiveStock(**body), back_url(url_for(".low_stock")),
               gettext("Received %(quantity)s × %(sku)s into %(warehouse)s.",
                       quantity=body["quantity"], sku=body["sku"],
                       warehouse=body["warehouse_id"]))
