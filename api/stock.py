"""Stock movements and inventory levels."""
from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.auth import requires
from api.http import decode_cursor, page, query_response, read_position, reading, run_command
from api.schemas import Id, PageQuery, Quantity, ReadQuery, StrictInt, Text
from commands.messages import AdjustStock, ReceiveStock, TransferStock
from domain.errors import NotFound
from projections.inventory import InventoryProjection, list_inventory, sku_inventory

blp = Blueprint("stock", __name__, url_prefix="/api/v1",
                description="Stock movements and inventory levels")
READS = [InventoryProjection.name]
READERS = ("admin", "operator", "warehouse", "auditor", "integration")


class ReceiptIn(Schema):
    sku = Id(required=True)
    warehouse_id = Id(required=True)
    quantity = Quantity(required=True)
    reference = Text(200, required=True)


class AdjustmentIn(Schema):
    sku = Id(required=True)
    warehouse_id = Id(required=True)
    delta = StrictInt(required=True, validate=[
        validate.Range(min=-10_000_000, max=10_000_000),
        validate.NoneOf([0], error="must not be zero")], metadata={"not": {"enum": [0]}})
    reason = Text(500, multiline=True, required=True)


class TransferIn(Schema):
    sku = Id(required=True)
    from_warehouse_id = Id(required=True)
    to_warehouse_id = Id(required=True)
    quantity = Quantity(required=True)


class StockItemOut(Schema):
    sku = fields.String()
    warehouse_id = fields.String()
    on_hand = fields.Integer()
    reserved = fields.Integer()
    available = fields.Integer()


class StockItemReply(StockItemOut):
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


class TransferOut(Schema):
    transfer_id = fields.String()
    sku = fields.String()
    quantity = fields.Integer()
    from_ = fields.Nested(StockItemOut, data_key="from")
    to = fields.Nested(StockItemOut)
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


class InventoryQuery(PageQuery):
    sku = Id(load_default=None)
    warehouse_id = Id(load_default=None)


class InventoryPage(Schema):
    items = fields.List(fields.Nested(StockItemOut))
    next_cursor = fields.String(allow_none=True)


class SkuInventoryOut(Schema):
    sku = fields.String()
    on_hand = fields.Integer()
    reserved = fields.Integer()
    available = fields.Integer()
    warehouses = fields.List(fields.Nested(StockItemOut))


@blp.route("/stock/receipts", methods=["POST"])
@requires("admin", "warehouse")
@blp.arguments(ReceiptIn)
@blp.response(201, StockItemReply)
def receive(body: dict[str, Any]) -> Any:
    return run_command(ReceiveStock(**body))  # the schema's fields are the command's


@blp.route("/stock/adjustments", methods=["POST"])
@requires("admin", "warehouse")
@blp.arguments(AdjustmentIn)
@blp.response(201, StockItemReply)
def adjust(body: dict[str, Any]) -> Any:
    return run_command(AdjustStock(**body))


@blp.route("/stock/transfers", methods=["POST"])
@requires("admin", "warehouse")
@blp.arguments(TransferIn)
@blp.response(201, TransferOut)
def transfer(body: dict[str, Any]) -> Any:
    return run_command(TransferStock(**body))


@blp.route("/inventory", methods=["GET"])
@requires(*READERS)
@blp.arguments(InventoryQuery, location="query")
@blp.response(200, InventoryPage)
def inventory(query: dict[str, Any]) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        after = decode_cursor(query["cursor"], str, str)
        rows = list_inventory(conn, query["sku"], query["warehouse_id"],
                              tuple(after) if after else None, query["limit"] + 1)
    return query_response(
        page(rows, query["limit"], lambda r: [r["sku"], r["warehouse_id"]]), position)


@blp.route("/inventory/<sku>", methods=["GET"])
@requires(*READERS)
@blp.arguments(ReadQuery, location="query")
@blp.response(200, SkuInventoryOut)
def inventory_for_sku(query: dict[str, Any], sku: str) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        found = sku_inventory(conn, sku)
    if found is None:
        raise NotFound(f"no stock recorded for {sku}", sku=sku)
    return query_response(found, position)
