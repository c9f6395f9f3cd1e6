"""Shipments, carriers and tracking."""
from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api.auth import owned_by, requires
from api.http import fenxiao, query_response, read_position, reading, run_command
from api.schemas import (Id, MoneySchema, NoBody, ReadQuery, Str, StrictInt, Text,
                         require_currency, text_pattern)
from commands.messages import (AddCarrier, DispatchShipment, FrozenMap, PackShipment,
                               PickShipment, RecordCarrierEvent)
from domain.aftersales import Case
from domain.errors import NotFound
from domain.fulfilment import CARRIER_STATUSES, Shipment
from domain.orders import Order
from domain.purchasing import PurchaseOrder
from projections.shipments import ShipmentsProjection, get_shipment, shipments_of_order


def _shipment_owner(app: Any, shipment_id: str) -> str | None:
    """The distributor of the order, purchase order or after-sales case the shipment
    serves."""
    shipment = app.find(Shipment.create_id(shipment_id))
    if shipment is None:
        return None
    source_cls = {"order": Order, "purchase_order": PurchaseOrder}.get(shipment.source, Case)
    source = app.find(source_cls.create_id(shipment.source_id))
    return source.distributor_id if source else None


owned_by("shipment_id", _shipment_owner)
blp = Blueprint("fulfilment", __name__, url_prefix="/api/v1",
                description="Shipments, carriers and tracking")
READS = [ShipmentsProjection.name]
MAX_DAYS = 365
MAX_REGIONS = 100


def Days(**kwargs: Any) -> StrictInt:
    return StrictInt(validate=validate.Range(min=0, max=MAX_DAYS), **kwargs)


def _few_regions(days: dict[str, int]) -> None:
    if len(days) > MAX_REGIONS:
        raise ValidationError(f"at most {MAX_REGIONS} regions")


# Region names are one line of text, as a warehouse's region is; JSON Schema says so with
# propertyNames (wrapped in allOf, which the document generator passes through).
REGION_NAMES = {"type": "string", "minLength": 1, "maxLength": 100,
                "pattern": text_pattern()}


class CarrierIn(Schema):
    carrier = Id(required=True)
    name = Text(200, required=True)
    base_fee = fields.Nested(MoneySchema, required=True)
    per_item_fee = fields.Nested(MoneySchema, required=True)
    promised_days = fields.Dict(
        keys=Text(100), values=Days(), load_default=dict, validate=_few_regions,
        metadata={"maxProperties": MAX_REGIONS,
                  "allOf": [{"propertyNames": REGION_NAMES}]})
    default_days = Days(required=True)


class CarrierOut(Schema):
    carrier = fields.String()
    name = fields.String()
    base_fee = fields.Nested(MoneySchema)
    per_item_fee = fields.Nested(MoneySchema)
    promised_days = fields.Dict(keys=fields.String(), values=fields.Integer())
    default_days = fields.Integer()
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


class DispatchIn(Schema):
    carrier = Id(load_default=None)  # absent: the best by rate card
    tracking_number = Id(load_default=None)  # absent: a new one


class Rfc3339(fields.AwareDateTime):
    """A date-time as JSON Schema's `date-time` format has it (RFC 3339: T and Z in
    either case, any number of fraction digits, an offset always), and nothing else."""

    default_error_messages = {"invalid": "must be an RFC 3339 date-time with an offset, "
                                         "e.g. 2026-11-25T08:00:00+08:00"}
    PATTERN = re.compile(r"\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(\.\d+)?([Zz]|[+-]\d\d:\d\d)")

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> datetime:
        if not isinstance(value, str) or not self.PATTERN.fullmatch(value):
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE)
        text = re.sub(r"(\.\d{6})\d+", r"\1", value.upper())  # Python keeps microseconds
        try:
            return datetime.fromisoformat(text)
        except ValueError:  # e.g. a leap second, or February 30th
            raise self.make_error("invalid", input=value, obj_type=self.OBJ_TYPE) from None


class CarrierEventIn(Schema):
    event_id = Id(required=True)
    tracking_number = Id(required=True)
    status = Str(required=True, validate=validate.OneOf(CARRIER_STATUSES))
    occurred_at = Rfc3339(required=True)
    location = Text(200, load_default=None)


class CarrierEventOut(Schema):
    carrier = fields.String()
    tracking_number = fields.String()
    shipment_id = fields.String()
    event_id = fields.String()
    status = fields.String()
    occurred_at = fields.String()
    location = fields.String(allow_none=True)
    result = fields.String()  # applied, or late (kept in the history, status unchanged)
    position = fields.Integer(allow_none=True)


class ShipmentLineOut(Schema):
    sku = fields.String()
    quantity = fields.Integer()


class QuoteOut(Schema):
    carrier = fields.String()
    fee = fields.Integer()
    days = fields.Integer()
    meets_promise = fields.Boolean()


class CarrierChoiceOut(QuoteOut):
    chosen_by = fields.String()  # cheapest_on_time, fastest, requested
    alternatives = fields.List(fields.Nested(QuoteOut))


class ShipmentBase(Schema):
    shipment_id = fields.String()
    source = fields.String()  # order, purchase_order, exchange, repair
    order_id = fields.String(allow_none=True)
    purchase_order_id = fields.String(allow_none=True)
    case_id = fields.String(allow_none=True)  # an exchange's or a repair's
    warehouse_id = fields.String()
    region = fields.String(allow_none=True)
    status = fields.String()
    carrier = fields.String(allow_none=True)
    tracking_number = fields.String(allow_none=True)
    lines = fields.List(fields.Nested(ShipmentLineOut))
    carrier_choice = fields.Nested(CarrierChoiceOut, allow_none=True)
    currency = fields.String()


class ShipmentReply(ShipmentBase):
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


class ShipmentStepOut(Schema):
    kind = fields.String()  # warehouse, carrier
    status = fields.String()
    event_id = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    applied = fields.Boolean()
    occurred_at = fields.String()
    recorded_at = fields.String()


class ShipmentOut(ShipmentBase):
    created_at = fields.String()
    dispatched_at = fields.String(allow_none=True)
    delivered_at = fields.String(allow_none=True)
    events = fields.List(fields.Nested(ShipmentStepOut))


class TrackingOut(Schema):
    order_id = fields.String()
    shipments = fields.List(fields.Nested(ShipmentOut))


@blp.route("/carriers", methods=["POST"])
@requires("admin")
@blp.arguments(CarrierIn)
@blp.response(201, CarrierOut)
def add_carrier(body: dict[str, Any]) -> Any:
    app = fenxiao()
    currency = app.settings.currency
    return run_command(AddCarrier(
        carrier=body["carrier"], carrier_name=body["name"],
        base_fee_minor=require_currency(body["base_fee"], currency, "base_fee"),
        per_item_fee_minor=require_currency(body["per_item_fee"], currency, "per_item_fee"),
        default_days=body["default_days"], promised_days=FrozenMap(body["promised_days"])))


@blp.route("/shipments/<shipment_id>/pick", methods=["POST"])
@requires("warehouse", "admin")
@blp.arguments(NoBody, required=False)
@blp.response(200, ShipmentReply)
def pick(_body: dict[str, Any], shipment_id: str) -> Any:
    return run_command(PickShipment(shipment_id))


@blp.route("/shipments/<shipment_id>/pack", methods=["POST"])
@requires("warehouse", "admin")
@blp.arguments(NoBody, required=False)
@blp.response(200, ShipmentReply)
def pack(_body: dict[str, Any], shipment_id: str) -> Any:
    return run_command(PackShipment(shipment_id))


@blp.route("/shipments/<shipment_id>/dispatch", methods=["POST"])
@requires("warehouse", "admin")
@blp.arguments(DispatchIn, required=False)  # every field optional: no body is {}
@blp.response(200, ShipmentReply)
def dispatch(body: dict[str, Any], shipment_id: str) -> Any:
    return run_command(DispatchShipment(shipment_id, **body))


@blp.route("/carriers/<carrier>/events", methods=["POST"])
@requires("integration")
@blp.arguments(CarrierEventIn)
@blp.response(200, CarrierEventOut)
def carrier_event(body: dict[str, Any], carrier: str) -> Any:
    return run_command(RecordCarrierEvent(
        carrier, body["event_id"], body["tracking_number"], body["status"],
        body["occurred_at"], body["location"]))


@blp.route("/shipments/<shipment_id>", methods=["GET"])
@requires("warehouse", "admin", "operator", "auditor")
@blp.arguments(ReadQuery, location="query")
@blp.response(200, ShipmentOut)
def shipment(query: dict[str, Any], shipment_id: str) -> Any:
    app = fenxiao()
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        found = get_shipment(conn, shipment_id)
    if found is None:
        raise NotFound(f"shipment {shipment_id} not found", shipment_id=shipment_id)
    return query_response({**found, "currency": app.settings.currency}, position)


@blp.route("/orders/<order_id>/tracking", methods=["GET"])
@requires("admin", "operator", "auditor", "integration", "distributor")
@blp.arguments(ReadQuery, location="query")
@blp.response(200, TrackingOut)
def tracking(query: dict[str, Any], order_id: str) -> Any:
    """The order's shipments with their event history (empty until it is paid)."""
    app = fenxiao()
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        found = shipments_of_order(conn, order_id)
    if not found and not app.exists(Order.create_id(order_id)):
        raise NotFound(f"order {order_id} not found", order_id=order_id)
    currency = app.settings.currency
    return query_response({"order_id": order_id,
                           "shipments": [{**s, "currency": currency} for s in found]},
                          position)
