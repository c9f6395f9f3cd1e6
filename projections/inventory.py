"""Read model: stock levels per SKU and warehouse, and totals per SKU.

The busiest projection, so a batch is folded into the stock items it touches (read in one
query) and written with one INSERT for new items and one upsert for the rest
(projections/batching.py): an UPDATE per item would be a round trip each on PostgreSQL.
"""
from __future__ import annotations

from typing import Any, Sequence

from sqlalchemy import Column, String, Table, select
from sqlalchemy.engine import Connection

from commands.storage import BIGINT, metadata
from commands.views import stock_view
from domain.stock import StockItem
from projections.base import Projection
from projections.batching import Rows

inventory = Table(
    "rm_inventory", metadata,
    Column("stock_item_id", String(36), primary_key=True),
    Column("sku", String(64), nullable=False, index=True),
    Column("warehouse_id", String(64), nullable=False),
    Column("on_hand", BIGINT, nullable=False),
    Column("reserved", BIGINT, nullable=False),
)

# event class -> (on_hand delta, reserved delta) as a function of the event
_DELTAS = {
    StockItem.StockReceived: lambda e: (e.quantity, 0),
    StockItem.StockAdjusted: lambda e: (e.delta, 0),
    StockItem.StockTransferredOut: lambda e: (-e.quantity, 0),
    StockItem.StockTransferredIn: lambda e: (e.quantity, 0),
    StockItem.StockReserved: lambda e: (0, e.quantity),
    StockItem.StockReleased: lambda e: (0, -e.quantity),
    StockItem.StockIssued: lambda e: (-e.quantity, -e.quantity),
    StockItem.StockRestocked: lambda e: (e.quantity, 0),
}


class InventoryProjection(Projection):
    name = "inventory"
    tables = (inventory,)
    handlers = {}  # apply_batch folds the batch itself

    @classmethod
    def event_types(cls) -> tuple[type, ...]:
        return (StockItem.StockItemOpened, *_DELTAS)

    def apply_batch(self, conn: Connection, events: Sequence[Any]) -> None:
        items = Rows(inventory, "stock_item_id")
        items.load(conn, [str(e.originator_id) for e in events
                          if type(e) is not StockItem.StockItemOpened])
        for e in events:
            item = str(e.originator_id)
            if type(e) is StockItem.StockItemOpened:
                items.insert({"stock_item_id": item, "sku": e.sku,
                              "warehouse_id": e.warehouse_id, "on_hand": 0, "reserved": 0})
                continue
            d_on_hand, d_reserved = _DELTAS[type(e)](e)
            items.add(conn, item, on_hand=d_on_hand, reserved=d_reserved)
        items.write(conn)


def list_inventory(conn: Connection, sku: str | None, warehouse_id: str | None,
                   after: tuple[str, str] | None, limit: int) -> list[dict[str, Any]]:
    query = select(inventory).order_by(inventory.c.sku, inventory.c.warehouse_id).limit(limit)
    if sku is not None:
        query = query.where(inventory.c.sku == sku)
    if warehouse_id is not None:
        query = query.where(inventory.c.warehouse_id == warehouse_id)
    if after is not None:
        query = query.where((inventory.c.sku > after[0]) | (
            (inventory.c.sku == after[0]) & (inventory.c.warehouse_id > after[1])))
    return [stock_view(r) for r in conn.execute(query)]


def sku_inventory(conn: Connection, sku: str) -> dict[str, Any] | None:
    rows = [stock_view(r) for r in conn.execute(
        select(inventory).where(inventory.c.sku == sku).order_by(inventory.c.warehouse_id))]
    if not rows:
        return None
    totals = {k: sum(r[k] for r in rows) for k in ("on_hand", "reserved", "available")}
    return {"sku": sku, **totals, "warehouses": rows}
