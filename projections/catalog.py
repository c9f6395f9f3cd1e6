"""Read model: products and warehouses."""
from __future__ import annotations

from typing import Any

from sqlalchemy import Boolean, Column, String, Table, select, update
from sqlalchemy.engine import Connection

from commands.storage import BIGINT, metadata
from commands.views import product_view
from domain.catalog import Product, Warehouse
from projections.base import Projection

products = Table(
    "rm_products", metadata,
    Column("sku", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("spec", String(500), nullable=False),
    Column("price_minor", BIGINT, nullable=False),
    Column("wholesale_price_minor", BIGINT, nullable=True),
    Column("currency", String(3), nullable=False),
    Column("listed", Boolean, nullable=False),
    Column("product_uuid", String(36), nullable=False, unique=True),
)

warehouses = Table(
    "rm_warehouses", metadata,
    Column("warehouse_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("region", String(100), nullable=False),
)


def _product_added(conn: Connection, e: Any) -> None:
    conn.execute(products.insert().values(
        sku=e.sku, name=e.name, spec=e.spec, price_minor=e.price_minor,
        wholesale_price_minor=e.wholesale_price_minor, currency=e.currency,
        listed=e.listed, product_uuid=str(e.originator_id)))


def _set(**values: Any) -> Any:
    def handler(conn: Connection, e: Any) -> None:
        resolved = {k: (getattr(e, v) if isinstance(v, str) else v) for k, v in values.items()}
        conn.execute(update(products)
                     .where(products.c.product_uuid == str(e.originator_id))
                     .values(**resolved))
    return handler


def _warehouse_opened(conn: Connection, e: Any) -> None:
    conn.execute(warehouses.insert().values(
        warehouse_id=e.warehouse_id, name=e.name, region=e.region))


class CatalogProjection(Projection):
    name = "catalog"
    tables = (products, warehouses)
    handlers = {
        Product.ProductAdded: _product_added,
        Product.PriceChanged: _set(price_minor="price_minor"),
        Product.ProductDelisted: _set(listed=False),
        Product.ProductListed: _set(listed=True),
        Warehouse.WarehouseOpened: _warehouse_opened,
    }


def get_product(conn: Connection, sku: str) -> dict[str, Any] | None:
    row = conn.execute(select(products).where(products.c.sku == sku)).first()
    return product_view(row) if row else None


def list_products(conn: Connection, after: str | None, limit: int,
                  listed: bool | None = None) -> list[dict[str, Any]]:
    query = select(products).order_by(products.c.sku).limit(limit)
    if after is not None:
        query = query.where(products.c.sku > after)
    if listed is not None:
        query = query.where(products.c.listed == listed)
    return [product_view(r) for r in conn.execute(query)]
