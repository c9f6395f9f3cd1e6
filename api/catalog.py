"""Warehouses and products."""
from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.auth import ANY_ROLE, requires
from api.http import (decode_cursor, fenxiao, page, query_response, read_position, reading,
                      run_command)
from api.schemas import (Id, MoneySchema, NoBody, PageQuery, ReadQuery, StrictBool, Text,
                         require_currency)
from commands.messages import (AddProduct, ChangePrice, DelistProduct, ListProduct,
                               OpenWarehouse)
from domain.errors import NotFound
from projections.catalog import CatalogProjection, get_product, list_products

blp = Blueprint("catalog", __name__, url_prefix="/api/v1",
                description="Warehouses and the product catalog")
READS = [CatalogProjection.name]


class WarehouseIn(Schema):
    warehouse_id = Id(required=True)
    name = Text(200, required=True)
    region = Text(100, required=True)


class WarehouseOut(WarehouseIn):
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


class ProductIn(Schema):
    sku = Id(required=True)
    name = Text(200, required=True)
    spec = Text(500, multiline=True, blank=True, load_default="")
    price = fields.Nested(MoneySchema, required=True)
    wholesale_price = fields.Nested(MoneySchema, load_default=None)
    listed = StrictBool(load_default=True)


class ProductOut(Schema):
    sku = fields.String()
    name = fields.String()
    spec = fields.String()
    price = fields.Nested(MoneySchema)
    wholesale_price = fields.Nested(MoneySchema, allow_none=True)
    listed = fields.Boolean()
    position = fields.Integer(allow_none=True)  # null when nothing was recorded


class PriceIn(Schema):
    price = fields.Nested(MoneySchema, required=True)


class ProductPage(Schema):
    items = fields.List(fields.Nested(ProductOut))
    next_cursor = fields.String(allow_none=True)


class ProductQuery(PageQuery):
    listed = fields.Boolean(load_default=None)


@blp.route("/warehouses", methods=["POST"])
@requires("admin")
@blp.arguments(WarehouseIn)
@blp.response(201, WarehouseOut)
def open_warehouse(body: dict[str, Any]) -> Any:
    return run_command(OpenWarehouse(body["warehouse_id"], body["name"], body["region"]))


@blp.route("/products", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(ProductIn)
@blp.response(201, ProductOut)
def add_product(body: dict[str, Any]) -> Any:
    app = fenxiao()
    currency = app.settings.currency
    price = require_currency(body["price"], currency, "price")
    wholesale = (None if body["wholesale_price"] is None
                 else require_currency(body["wholesale_price"], currency, "wholesale_price"))
    return run_command(AddProduct(body["sku"], body["name"], body["spec"], price, wholesale,
                                  body["listed"]))


@blp.route("/products/<sku>/price", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(PriceIn)
@blp.response(200, ProductOut)
def change_price(body: dict[str, Any], sku: str) -> Any:
    app = fenxiao()
    price = require_currency(body["price"], app.settings.currency, "price")
    return run_command(ChangePrice(sku, price))


@blp.route("/products/<sku>/delist", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(NoBody, required=False)
@blp.response(200, ProductOut)
def delist(_body: dict[str, Any], sku: str) -> Any:
    return run_command(DelistProduct(sku))


@blp.route("/products/<sku>/list", methods=["POST"])
@requires("admin", "operator")
@blp.arguments(NoBody, required=False)
@blp.response(200, ProductOut)
def relist(_body: dict[str, Any], sku: str) -> Any:
    return run_command(ListProduct(sku))


@blp.route("/products", methods=["GET"])
@requires(*ANY_ROLE)
@blp.arguments(ProductQuery, location="query")
@blp.response(200, ProductPage)
def products(query: dict[str, Any]) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        after = decode_cursor(query["cursor"], str)
        rows = list_products(conn, after and after[0], query["limit"] + 1,
                             query["listed"])
    return query_response(page(rows, query["limit"], lambda p: p["sku"]), position)


@blp.route("/products/<sku>", methods=["GET"])
@requires(*ANY_ROLE)
@blp.arguments(ReadQuery, location="query")
@blp.response(200, ProductOut)
def product(query: dict[str, Any], sku: str) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        found = get_product(conn, sku)
    if found is None:
        raise NotFound(f"product {sku} not found", sku=sku)
    return query_response(found, position)
