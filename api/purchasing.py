"""B2B purchase orders."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import owned_by, requires
from api.http import decode_cursor, page, query_response, read_position, reading, run_command
from api.schemas import Id, NoBody, PageQuery, ReadQuery, Str, StrictInt
from commands.messages import ApprovePurchaseOrder, ReceivePurchaseOrder, RequestPurchaseOrder
from domain.errors import NotFound
from domain.pricing import MAX_LINE_QUANTITY
from domain.purchasing import PurchaseOrder
from projections.purchase_orders import (PurchaseOrdersProjection, get_purchase_order,
                                         list_purchase_orders)

owned_by("purchase_order_id", lambda app, purchase_order_id: (
    found.distributor_id
    if (found := app.find(PurchaseOrder.create_id(purchase_order_id))) else None))
blp = Blueprint("purchasing", __name__, url_prefix="/api/v1",
                description="B2B purchase orders")
READS = [PurchaseOrdersProjection.name]
READERS = ("admin", "operator", "auditor", "distributor")
STATUSES = ("requested", "approved", "rejected", "shipped", "received")


class LineIn(Schema):
    sku = Id(required=True)
    quantity = StrictInt(required=True,
                         validate=validate.Range(min=1, max=MAX_LINE_QUANTITY))


class PurchaseOrderIn(Schema):
    purchase_order_id = Id(load_default=None)
    distributor_id = Id(required=True)
    lines = fields.List(fields.Nested(LineIn), required=True,
                        validate=validate.Length(min=1, max=200))


class AllocationOut(Schema):
    warehouse_id = fields.String()
    quantity = fields.Integer()


class LineOut(Schema):
    line_no = fields.Integer()
    sku = fields.String()
    quantity = fields.Integer()
    unit_price = fields.Integer()
    amount = fields.Integer()
    allocations = fields.List(fields.Nested(AllocationOut))


class ShipmentRefOut(Schema):
    shipment_id = fields.String()
    warehouse_id = fields.String(allow_none=True)
    status = fields.String()


class PurchaseOrderOut(Schema):
    purchase_order_id = fields.String()
    distributor_id = fields.String()
    status = fields.String()
    currency = fields.String()
    total = fields.Integer()
    lines = fields.List(fields.Nested(LineOut))
    shipments = fields.List(fields.Nested(ShipmentRefOut))
    requested_at = fields.String()
    updated_at = fields.String()
    position = fields.Integer(allow_none=True)


class PurchaseOrderPage(Schema):
    items = fields.List(fields.Nested(PurchaseOrderOut))
    next_cursor = fields.String(allow_none=True)


class PurchaseOrderQuery(PageQuery):
    status = Str(load_default=None, validate=validate.OneOf(STATUSES))
    distributor_id = Id(load_default=None)


def _own_only(distributor_id: str | None) -> str | None:
    """A distributor's token acts and reads for itself alone: naming another distributor
    is answered as if it did not exist."""
    principal = g.principal
    if principal.role != "distributor":
        return distributor_id
    if distributor_id not in (None, principal.distributor_id):
        raise NotFound(f"distributor {distributor_id} not found",
                       distributor_id=distributor_id)
    return principal.distributor_id


# -- commands -------------------------------------------------------------------------

@blp.route("/purchase-orders", methods=["POST"])
@requires("distributor", "admin")
@blp.arguments(PurchaseOrderIn)
@blp.response(201, PurchaseOrderOut)
def request_purchase_order(body: dict[str, Any]) -> Any:
    distributor_id = _own_only(body["distributor_id"])
    lines = tuple((line["sku"], line["quantity"]) for line in body["lines"])
    return run_command(RequestPurchaseOrder(distributor_id, lines, body["purchase_order_id"]))


@blp.route("/purchase-orders/<purchase_order_id>/approve", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(NoBody, required=False)
@blp.response(200, PurchaseOrderOut)
def approve(_body: dict[str, Any], purchase_order_id: str) -> Any:
    return run_command(ApprovePurchaseOrder(purchase_order_id))


@blp.route("/purchase-orders/<purchase_order_id>/receive", methods=["POST"])
@requires("distributor", "admin")
@blp.arguments(NoBody, required=False)
@blp.response(200, PurchaseOrderOut)
def receive(_body: dict[str, Any], purchase_order_id: str) -> Any:
    return run_command(ReceivePurchaseOrder(purchase_order_id))


# -- queries --------------------------------------------------------------------------

@blp.route("/purchase-orders/<purchase_order_id>", methods=["GET"])
@requires(*READERS)
@blp.arguments(ReadQuery, location="query")
@blp.response(200, PurchaseOrderOut)
def purchase_order(query: dict[str, Any], purchase_order_id: str) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        found = get_purchase_order(conn, purchase_order_id)
    if found is None:
        raise NotFound(f"purchase order {purchase_order_id} not found",
                       purchase_order_id=purchase_order_id)
    return query_response(found, position)


@blp.route("/purchase-orders", methods=["GET"])
@requires(*READERS)
@blp.arguments(PurchaseOrderQuery, location="query")
@blp.response(200, PurchaseOrderPage)
def purchase_orders(query: dict[str, Any]) -> Any:
    distributor_id = _own_only(query["distributor_id"])
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        rows = list_purchase_orders(
            conn, status=query["status"], distributor_id=distributor_id,
            after=decode_cursor(query["cursor"], datetime, str), limit=query["limit"] + 1)
    return query_response(page(rows, query["limit"],
                               lambda p: [p["requested_at"], p["purchase_order_id"]]),
                          position)
