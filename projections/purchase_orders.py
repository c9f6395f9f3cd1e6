"""Read model: B2B purchase orders, their lines (with the stock allocated to them) and
their shipments. A batch is folded into rows and written with a few statements
(projections/batching.py)."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import Column, DateTime, Integer, String, Table, Text, select, tuple_
from sqlalchemy.engine import Connection

from commands.storage import BIGINT, metadata
from domain.fulfilment import shipment_id_for
from domain.purchasing import PurchaseOrder
from projections.batching import FoldingProjection, Rows

purchase_orders = Table(
    "rm_purchase_orders", metadata,
    Column("purchase_order_id", String(64), primary_key=True),
    Column("po_uuid", String(36), nullable=False, unique=True),
    Column("distributor_id", String(64), nullable=False, index=True),
    Column("status", String(20), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("total_minor", BIGINT, nullable=False),
    Column("requested_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

purchase_order_lines = Table(
    "rm_purchase_order_lines", metadata,
    Column("po_uuid", String(36), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("sku", String(64), nullable=False),
    Column("quantity", BIGINT, nullable=False),
    Column("unit_price_minor", BIGINT, nullable=False),
    Column("amount_minor", BIGINT, nullable=False),
    Column("allocations", Text, nullable=False),  # JSON [{warehouse_id, quantity}]
)

purchase_order_shipments = Table(
    "rm_purchase_order_shipments", metadata,
    Column("po_uuid", String(36), primary_key=True),
    Column("shipment_id", String(64), primary_key=True),
    Column("warehouse_id", String(64), nullable=False),
    Column("status", String(20), nullable=False),
)


class _Batch:
    """A batch folded into rows (projections/batching.py): the purchase orders, lines and
    shipments it touches read in one query per table, changed in memory, written once."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.orders = Rows(purchase_orders, "po_uuid")
        self.lines = Rows(purchase_order_lines, ("po_uuid", "line_no"))
        self.shipments = Rows(purchase_order_shipments, ("po_uuid", "shipment_id"))
        moves = [e for e in events if type(e) is not PurchaseOrder.PurchaseOrderRequested]
        self.orders.load(conn, [str(e.originator_id) for e in moves])
        self.lines.load(conn, [(str(e.originator_id), n) for e in moves
                               if type(e) is PurchaseOrder.PurchaseOrderApproved
                               for n in range(1, len(e.allocations) + 1)])
        self.shipments.load(conn, [(str(e.originator_id), e.shipment_id) for e in moves
                                   if type(e) is PurchaseOrder.PurchaseOrderShipmentDispatched])

    def write(self) -> None:
        for rows in (self.orders, self.lines, self.shipments):
            rows.write(self.conn)


def _requested(batch: _Batch, e: Any) -> None:
    po_uuid = str(e.originator_id)
    batch.orders.insert({
        "purchase_order_id": e.purchase_order_id, "po_uuid": po_uuid,
        "distributor_id": e.distributor_id, "status": "requested", "currency": e.currency,
        "total_minor": e.total_minor, "requested_at": e.at, "updated_at": e.at})
    for x in e.lines:
        batch.lines.insert({
            "po_uuid": po_uuid, "line_no": x["line_no"], "sku": x["sku"],
            "quantity": x["quantity"], "unit_price_minor": x["unit_price_minor"],
            "amount_minor": x["amount_minor"], "allocations": "[]"})


def _approved(batch: _Batch, e: Any) -> None:
    po_uuid = str(e.originator_id)
    purchase_order_id = batch.orders.one(batch.conn, po_uuid)["purchase_order_id"]
    batch.orders.update(batch.conn, po_uuid, status="approved", updated_at=e.at)
    warehouses = set()
    for line_no, allocated in enumerate(e.allocations, start=1):
        batch.lines.update(batch.conn, (po_uuid, line_no),
                           allocations=json.dumps(allocated, sort_keys=True))
        warehouses.update(a["warehouse_id"] for a in allocated)
    by_shipment = {shipment_id_for(purchase_order_id, w): w for w in warehouses}
    for sid in e.shipment_ids:
        batch.shipments.insert({"po_uuid": po_uuid, "shipment_id": sid,
                                "warehouse_id": by_shipment.get(sid, ""),
                                "status": "created"})


def _status(status: str) -> Any:
    def fold(batch: _Batch, e: Any) -> None:
        batch.orders.update(batch.conn, str(e.originator_id), status=status,
                            updated_at=e.at)
    return fold


def _shipment_dispatched(batch: _Batch, e: Any) -> None:
    _status(e.status)(batch, e)
    batch.shipments.update(batch.conn, (str(e.originator_id), e.shipment_id),
                           status="dispatched")


# event class -> what it does to the batch's rows
_FOLD = {
    PurchaseOrder.PurchaseOrderRequested: _requested,
    PurchaseOrder.PurchaseOrderApproved: _approved,
    PurchaseOrder.PurchaseOrderRejected: _status("rejected"),
    PurchaseOrder.PurchaseOrderShipmentDispatched: _shipment_dispatched,
    PurchaseOrder.PurchaseOrderReceived: _status("received"),
}


class PurchaseOrdersProjection(FoldingProjection):
    name = "purchase_orders"
    tables = (purchase_orders, purchase_order_lines, purchase_order_shipments)
    fold = _FOLD
    batch_class = _Batch


# -- queries --------------------------------------------------------------------------

def utc_iso(at: datetime) -> str:
    """A recorded time as ISO text in UTC, whatever the database hands back (SQLite
    keeps no offset; PostgreSQL answers in the session's time zone)."""
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)) \
        .astimezone(timezone.utc).isoformat()


def _views(conn: Connection, rows: list[Any]) -> list[dict[str, Any]]:
    uuids = [r.po_uuid for r in rows]
    lines: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    for x in conn.execute(select(purchase_order_lines)
                          .where(purchase_order_lines.c.po_uuid.in_(uuids))
                          .order_by(purchase_order_lines.c.po_uuid,
                                    purchase_order_lines.c.line_no)):
        lines[x.po_uuid].append({
            "line_no": x.line_no, "sku": x.sku, "quantity": x.quantity,
            "unit_price": x.unit_price_minor, "amount": x.amount_minor,
            "allocations": json.loads(x.allocations)})
    shipments: dict[str, list[dict[str, Any]]] = {u: [] for u in uuids}
    for s in conn.execute(select(purchase_order_shipments)
                          .where(purchase_order_shipments.c.po_uuid.in_(uuids))
                          .order_by(purchase_order_shipments.c.po_uuid,
                                    purchase_order_shipments.c.shipment_id)):
        shipments[s.po_uuid].append({"shipment_id": s.shipment_id,
                                     "warehouse_id": s.warehouse_id, "status": s.status})
    return [{"purchase_order_id": r.purchase_order_id, "distributor_id": r.distributor_id,
             "status": r.status, "currency": r.currency, "total": r.total_minor,
             "lines": lines[r.po_uuid], "shipments": shipments[r.po_uuid],
             "requested_at": utc_iso(r.requested_at), "updated_at": utc_iso(r.updated_at)}
            for r in rows]


def get_purchase_order(conn: Connection, purchase_order_id: str) -> dict[str, Any] | None:
    rows = conn.execute(select(purchase_orders).where(
        purchase_orders.c.purchase_order_id == purchase_order_id)).all()
    return _views(conn, rows)[0] if rows else None


def list_purchase_orders(conn: Connection, *, status: str | None,
                         distributor_id: str | None, after: list[Any] | None,
                         limit: int) -> list[dict[str, Any]]:
    """Oldest first (the approval queue's order), by (requested_at, purchase_order_id)."""
    query = (select(purchase_orders)
             .order_by(purchase_orders.c.requested_at, purchase_orders.c.purchase_order_id)
             .limit(limit))
    if status is not None:
        query = query.where(purchase_orders.c.status == status)
    if distributor_id is not None:
        query = query.where(purchase_orders.c.distributor_id == distributor_id)
    if after:
        at, purchase_order_id = after
        query = query.where(tuple_(purchase_orders.c.requested_at,
                                   purchase_orders.c.purchase_order_id)
                            > tuple_(datetime.fromisoformat(at), purchase_order_id))
    return _views(conn, conn.execute(query).all())
