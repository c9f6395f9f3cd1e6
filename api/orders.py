"""Orders and payments."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import owned_by, requires
from api.distributors import PHONE_PATTERN
from api.http import (decode_cursor, fenxiao, page, query_response, read_position, reading,
                      run_command)
from api.promotions import CODE_PATTERN as COUPON_CODE_PATTERN
from api.schemas import (FullMatch, Id, MoneySchema, PageQuery, ReadQuery, Str, StrictBool,
                         StrictInt, Text, require_currency)
from commands.messages import CancelOrder, FrozenMap, PayOrder, PlaceOrder
from domain.errors import NotFound
from domain.orders import Order
from domain.pricing import MAX_LINE_QUANTITY
from projections.orders import OrdersProjection, get_order, list_orders

owned_by("order_id", lambda app, order_id: (
    found.distributor_id if (found := app.find(Order.create_id(order_id))) else None))
blp = Blueprint("orders", __name__, url_prefix="/api/v1", description="Orders and payments")
READS = [OrdersProjection.name]
READERS = ("admin", "operator", "auditor", "integration", "distributor")
STATUSES = ("placed", "backordered", "paid", "fulfilling", "shipped", "delivered",
            "completed", "cancelled")
MAX_LINES = 100


class OrderCustomerIn(Schema):
    customer_id = Id(required=True)
    name = Text(100, required=True)
    phone = Str(required=True, validate=FullMatch(PHONE_PATTERN, error=(
        "must be a mainland mobile number (1[3-9] and 9 digits, +86 optional) or an E.164 "
        "number (+ country code and number), without spaces")))


class OrderAddressIn(Schema):
    region = Text(100, required=True)
    city = Text(100, required=True)
    line1 = Text(300, required=True)
    postcode = Text(20, load_default=None)


class OrderLineIn(Schema):
    sku = Id(required=True)
    quantity = StrictInt(required=True, validate=validate.Range(min=1, max=MAX_LINE_QUANTITY))


class OrderIn(Schema):
    order_id = Id(load_default=None)
    customer = fields.Nested(OrderCustomerIn, required=True)
    shipping_address = fields.Nested(OrderAddressIn, required=True)
    lines = fields.List(fields.Nested(OrderLineIn), required=True,
                        validate=validate.Length(min=1, max=MAX_LINES))
    distributor_id = Id(load_default=None)
    referral_code = Str(load_default=None, validate=FullMatch(
        r"^[A-Za-z0-9]{4,20}$", error="not a referral code"))
    coupon_code = Str(load_default=None, validate=FullMatch(
        COUPON_CODE_PATTERN, error="not a coupon code (3-32 of A-Z a-z 0-9 _ -)"))
    allow_backorder = StrictBool(load_default=False)
    # Each sku once: a rule no JSON Schema can state about objects, so it is a 409
    # (duplicate_line) like every other rule a schema-valid request can break.


class OrderPaymentIn(Schema):
    amount = fields.Nested(MoneySchema, required=True)
    payment_reference = Text(200, required=True)


class OrderCancelIn(Schema):
    reason = Text(500, multiline=True, required=True)


class OrderAllocationOut(Schema):
    warehouse_id = fields.String()
    quantity = fields.Integer()


class OrderLineOut(Schema):
    line_no = fields.Integer()
    sku = fields.String()
    name = fields.String()
    quantity = fields.Integer()
    unit_price = fields.Integer()
    gross = fields.Integer()
    discount = fields.Integer()
    net = fields.Integer()
    allocations = fields.List(fields.Nested(OrderAllocationOut))
    backordered = fields.Integer()
    paid = fields.Integer()
    refunded = fields.Integer()


class OrderShipmentRefOut(Schema):
    shipment_id = fields.String()
    warehouse_id = fields.String()
    status = fields.String()


class OrderOut(Schema):
    order_id = fields.String()
    status = fields.String()
    distributor_id = fields.String(allow_none=True)
    customer_id = fields.String()
    currency = fields.String()
    lines = fields.List(fields.Nested(OrderLineOut))
    subtotal = fields.Integer()
    discount = fields.Integer()
    shipping_fee = fields.Integer()
    total = fields.Integer()
    paid = fields.Integer()
    refunded = fields.Integer()
    coupon_code = fields.String(allow_none=True)
    shipments = fields.List(fields.Nested(OrderShipmentRefOut))
    created_at = fields.DateTime()
    paid_at = fields.DateTime(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)
    completed_at = fields.DateTime(allow_none=True)
    cancelled_at = fields.DateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)


class OrderReply(OrderOut):
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


class OrderPage(Schema):
    items = fields.List(fields.Nested(OrderOut))
    next_cursor = fields.String(allow_none=True)


class OrderQuery(PageQuery):
    status = Str(load_default=None, validate=validate.OneOf(STATUSES))
    distributor_id = Id(load_default=None)
    customer_id = Id(load_default=None)


# -- commands -------------------------------------------------------------------------

@blp.route("/orders", methods=["POST"])
@requires("integration", "admin")
@blp.arguments(OrderIn)
@blp.response(201, OrderReply)
def place(body: dict[str, Any]) -> Any:
    customer = body["customer"]
    lines = tuple((x["sku"], x["quantity"]) for x in body["lines"])
    return run_command(PlaceOrder(
        customer["customer_id"], customer["name"], customer["phone"],
        FrozenMap(body["shipping_address"]), lines, order_id=body["order_id"],
        distributor_id=body["distributor_id"], referral_code=body["referral_code"],
        coupon_code=body["coupon_code"], allow_backorder=body["allow_backorder"]))


@blp.route("/orders/<order_id>/payments", methods=["POST"])
@requires("integration", "admin")
@blp.arguments(OrderPaymentIn)
@blp.response(200, OrderReply)
def pay(body: dict[str, Any], order_id: str) -> Any:
    app = fenxiao()
    amount = require_currency(body["amount"], app.settings.currency, "amount")
    return run_command(PayOrder(order_id, amount, body["payment_reference"]))


@blp.route("/orders/<order_id>/cancel", methods=["POST"])
@requires("integration", "admin", "operator")
@blp.arguments(OrderCancelIn)
@blp.response(200, OrderReply)
def cancel(body: dict[str, Any], order_id: str) -> Any:
    return run_command(CancelOrder(order_id, body["reason"]))


# -- queries --------------------------------------------------------------------------

@blp.route("/orders/<order_id>", methods=["GET"])
@requires(*READERS)
@blp.arguments(ReadQuery, location="query")
@blp.response(200, OrderOut)
def order(query: dict[str, Any], order_id: str) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        found = get_order(conn, order_id)
    if found is None:
        raise NotFound(f"order {order_id} not found", order_id=order_id)
    return query_response(found, position)


@blp.route("/orders", methods=["GET"])
@requires(*READERS)
@blp.arguments(OrderQuery, location="query")
@blp.response(200, OrderPage)
def orders(query: dict[str, Any]) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        own = g.principal.distributor_id if g.principal.role == "distributor" else None
        body = order_page(conn, query, own)
    for item in body["items"]:
        del item["cursor"]
    return query_response(body, position)


def order_page(conn: Any, query: dict[str, Any], own: str | None) -> dict[str, Any]:
    """A page of `GET /orders` (as the console shows it too): the query's filters, only
    the distributor `own`'s orders when it is one that asks."""
    rows = list_orders(conn, status=query["status"], distributor_id=query["distributor_id"],
                       customer_id=query["customer_id"], only_distributor_id=own,
                       after=decode_cursor(query["cursor"], datetime, str),
                       limit=query["limit"] + 1)
    return page(rows, query["limit"], lambda o: o["cursor"])
