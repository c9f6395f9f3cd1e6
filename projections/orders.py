"""Read model: orders with their lines, allocations and shipments, as `GET /orders` shows
them, plus what the tick needs to find due orders (placed_at, paid_at, delivered_at).

Other read models may read `rm_orders` (never write it). Times are stored in UTC. Every
order moves through several events, so a batch is folded into rows and written with a few
statements (projections/batching.py), not a statement or more per event.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import (JSON, Column, DateTime, Index, Integer, String, Table, Text, select,
                        tuple_)
from sqlalchemy.engine import Connection

from commands.views import utc as aware_utc
from commands.orders import iso
from commands.storage import BIGINT as MINOR, metadata
from domain.orders import Order
from projections.batching import FoldingProjection, Rows

orders = Table(
    "rm_orders", metadata,
    Column("order_id", String(64), primary_key=True),
    Column("order_uuid", String(36), nullable=False, unique=True),
    Column("status", String(20), nullable=False),
    Column("distributor_id", String(64), nullable=True, index=True),
    Column("customer_id", String(64), nullable=False, index=True),
    Column("currency", String(3), nullable=False),
    Column("subtotal_minor", MINOR, nullable=False),
    Column("discount_minor", MINOR, nullable=False),
    Column("shipping_fee_minor", MINOR, nullable=False),
    Column("total_minor", MINOR, nullable=False),
    Column("paid_minor", MINOR, nullable=False),
    Column("refunded_minor", MINOR, nullable=False),
    Column("coupon_code", String(64), nullable=True),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("paid_at", DateTime(timezone=True), nullable=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Column("completed_at", DateTime(timezone=True), nullable=True),
    Column("cancelled_at", DateTime(timezone=True), nullable=True),
    Column("cancel_reason", Text, nullable=True),
    # The tick's questions: unpaid and placed before T; delivered before T.
    Index("ix_rm_orders_status_placed_at", "status", "placed_at"),
    Index("ix_rm_orders_status_delivered_at", "status", "delivered_at"),
    Index("ix_rm_orders_placed_at_order_id", "placed_at", "order_id"),
)

order_lines = Table(
    "rm_order_lines", metadata,
    Column("order_uuid", String(36), primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("sku", String(64), nullable=False, index=True),
    Column("name", String(200), nullable=False),
    Column("quantity", Integer, nullable=False),
    Column("unit_price_minor", MINOR, nullable=False),
    Column("gross_minor", MINOR, nullable=False),
    Column("discount_minor", MINOR, nullable=False),
    Column("net_minor", MINOR, nullable=False),
    Column("backordered", Integer, nullable=False),
    Column("paid_minor", MINOR, nullable=False),
    Column("refunded_minor", MINOR, nullable=False),
    Column("allocations", JSON, nullable=False),  # [{warehouse_id, quantity}], in order
)

order_shipments = Table(
    "rm_order_shipments", metadata,
    Column("shipment_id", String(64), primary_key=True),
    Column("order_uuid", String(36), nullable=False, index=True),
    Column("order_id", String(64), nullable=False),
    Column("warehouse_id", String(64), nullable=False),
    Column("status", String(20), nullable=False),  # created, dispatched, delivered, cancelled
)


def utc(at: datetime | None) -> datetime | None:
    return None if at is None else aware_utc(at)


class _Batch:
    """A batch folded into rows (projections/batching.py): the orders, lines and shipments
    its events touch, read in one query per table, changed in memory in log order, written
    once. A cancellation touches every shipment of its order, a release of stock for a case
    every line: for those orders one more query first finds which rows they have."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.orders = Rows(orders, "order_uuid")
        self.lines = Rows(order_lines, ("order_uuid", "line_no"))
        self.shipments = Rows(order_shipments, "shipment_id")
        # order uuid -> its line numbers / shipment ids, as a SELECT by order would find
        # them at each event: the stored ones, then those the batch creates.
        self.line_nos = _stored(conn, order_lines.c.line_no, [
            str(e.originator_id) for e in events if type(e) is Order.AfterSalesStockReleased])
        self.shipment_ids = _stored(conn, order_shipments.c.shipment_id, [
            str(e.originator_id) for e in events if type(e) in _CLOSES])
        # The rows of an order placed earlier in the batch are the batch's own: only the
        # others' are read now (a row not read now is read when asked for: Rows.get).
        placed: set[str] = set()
        older: list[tuple[str, Any]] = []
        for e in events:
            uuid = str(e.originator_id)
            if type(e) is Order.OrderPlaced:
                placed.add(uuid)
            elif uuid not in placed:
                older.append((uuid, e))
        self.orders.load(conn, [uuid for uuid, _ in older])
        self.lines.load(conn, [key for uuid, e in older for key in self._lines_of(uuid, e)])
        self.shipments.load(conn, [sid for uuid, e in older
                                   for sid in self._shipments_of(uuid, e)])

    def _lines_of(self, uuid: str, e: Any) -> list[tuple[str, int]]:
        """The keys of the stored lines the event may change."""
        if type(e) is Order.AfterSalesStockReleased:
            return [(uuid, n) for n in self.line_nos[uuid]]
        if type(e) is Order.OrderPaid:
            return [(uuid, p["line_no"]) for p in e.line_payments]
        if type(e) is Order.OrderCancelled:
            return [(uuid, r["line_no"]) for r in e.line_refunds]
        if type(e) in _LINE_MOVES:
            return [(uuid, e.line_no)]
        return []

    def _shipments_of(self, uuid: str, e: Any) -> list[str]:
        """The ids of the stored shipments the event may change."""
        if type(e) in _CLOSES:
            return self.shipment_ids[uuid]
        if type(e) is Order.AfterSalesStockReleased:
            return e.cancelled_shipment_ids
        if type(e) in _SHIPMENT_MOVES:
            return [e.shipment_id]
        return []

    def order_id(self, e: Any) -> str:
        """The order's id: its row must exist."""
        return self.orders.one(self.conn, str(e.originator_id))["order_id"]

    def this(self, e: Any, **values: Any) -> None:
        """Set columns of the event's order (none if it has no row)."""
        self.orders.update(self.conn, str(e.originator_id), **values)

    def add_lines(self, uuid: str, rows: list[dict[str, Any]]) -> None:
        _no_rows_fail(rows)
        for row in rows:
            self.lines.insert(row)
            self.line_nos.setdefault(uuid, []).append(row["line_no"])

    def add_shipments(self, e: Any, order_id: str) -> None:
        _no_rows_fail(e.shipments)
        uuid = str(e.originator_id)
        for s in e.shipments:
            self.shipments.insert({"shipment_id": s["shipment_id"], "order_uuid": uuid,
                                   "order_id": order_id, "warehouse_id": s["warehouse_id"],
                                   "status": "created"})
            self.shipment_ids.setdefault(uuid, []).append(s["shipment_id"])

    def write(self) -> None:
        for rows in (self.orders, self.lines, self.shipments):
            rows.write(self.conn)


_CHUNK = 500  # order uuids per SELECT ... IN, as projections/batching.py reads keys


def _stored(conn: Connection, column: Any, uuids: list[str]) -> dict[str, list[Any]]:
    """order uuid -> `column` of the rows the orders `uuids` have in `column`'s table."""
    found: dict[str, list[Any]] = {uuid: [] for uuid in uuids}
    wanted, by_order = list(found), column.table.c.order_uuid
    for start in range(0, len(wanted), _CHUNK):
        for uuid, value in conn.execute(select(by_order, column).where(
                by_order.in_(wanted[start:start + _CHUNK]))):
            found[uuid].append(value)
    return found


def _no_rows_fail(rows: Sequence[Any]) -> None:
    """The handlers' INSERT of no rows inserted one of NULLs, refused by the table: the
    event failed (and was parked), so it still does."""
    if not rows:
        raise ValueError("no rows to insert: the event lists none")


def _placed(batch: _Batch, e: Any) -> None:
    uuid = str(e.originator_id)
    batch.orders.insert({
        "order_id": e.order_id, "order_uuid": uuid, "status": e.status,
        "distributor_id": e.distributor_id, "customer_id": e.customer["customer_id"],
        "currency": e.currency, "subtotal_minor": e.subtotal_minor,
        "discount_minor": e.discount_minor, "shipping_fee_minor": e.shipping_fee_minor,
        "total_minor": e.total_minor, "paid_minor": 0, "refunded_minor": 0,
        "coupon_code": e.promotions.get("coupon_code"), "placed_at": utc(e.placed_at)})
    batch.add_lines(uuid, [
        {"order_uuid": uuid, "line_no": x["line_no"], "order_id": e.order_id,
         "sku": x["sku"], "name": x["name"], "quantity": x["quantity"],
         "unit_price_minor": x["unit_price_minor"], "gross_minor": x["gross_minor"],
         "discount_minor": x["discount_minor"], "net_minor": x["net_minor"],
         "backordered": x["backordered"], "paid_minor": 0, "refunded_minor": 0,
         "allocations": [dict(a) for a in x["allocations"]]} for x in e.lines])


def _backorder_filled(batch: _Batch, e: Any) -> None:
    key = (str(e.originator_id), e.line_no)
    held = batch.lines.one(batch.conn, key)["allocations"]
    batch.lines.update(batch.conn, key, backordered=e.backordered,
                       allocations=[*held, *(dict(a) for a in e.allocations)])
    batch.this(e, status=e.status)


def _paid(batch: _Batch, e: Any) -> None:
    uuid = str(e.originator_id)
    batch.orders.update(batch.conn, uuid, status=e.status, paid_minor=e.amount_minor,
                        paid_at=utc(e.at))
    for p in e.line_payments:
        batch.lines.update(batch.conn, (uuid, p["line_no"]), paid_minor=p["amount_minor"])


def _cancelled(batch: _Batch, e: Any) -> None:
    uuid = str(e.originator_id)
    batch.this(e, status="cancelled", cancelled_at=utc(e.at), cancel_reason=e.reason)
    batch.orders.add(batch.conn, uuid, refunded_minor=e.refund_due_minor)
    for r in e.line_refunds:
        batch.lines.add(batch.conn, (uuid, r["line_no"]), refunded_minor=r["amount_minor"])
    _cancel_shipments(batch, e)


def _expired(batch: _Batch, e: Any) -> None:
    batch.this(e, status="cancelled", cancelled_at=utc(e.at),
               cancel_reason="reservation_expired")
    _cancel_shipments(batch, e)


def _cancel_shipments(batch: _Batch, e: Any) -> None:
    for sid in batch.shipment_ids[str(e.originator_id)]:
        batch.shipments.update(batch.conn, sid, status="cancelled")


def _fulfilment_started(batch: _Batch, e: Any) -> None:
    batch.add_shipments(e, batch.order_id(e))
    batch.this(e, status="fulfilling")


def _shipment_moved(shipment_status: str) -> Any:
    def fold(batch: _Batch, e: Any) -> None:
        batch.shipments.update(batch.conn, e.shipment_id, status=shipment_status)
        if e.status == "delivered":
            batch.this(e, status=e.status, delivered_at=utc(e.at))
        else:
            batch.this(e, status=e.status)
    return fold


def _completed(batch: _Batch, e: Any) -> None:
    batch.this(e, status="completed", completed_at=utc(e.at))


def _line_refunded(batch: _Batch, e: Any) -> None:
    """A refund or a compensation: the line's `refunded` counts both."""
    uuid = str(e.originator_id)
    batch.lines.add(batch.conn, (uuid, e.line_no), refunded_minor=e.amount_minor)
    batch.orders.add(batch.conn, uuid, refunded_minor=e.amount_minor)


def _case_stock_released(batch: _Batch, e: Any) -> None:
    """A refund only before dispatch: allocations shrink (latest first), the shipments
    that carried the goods are cancelled and replaced."""
    uuid = str(e.originator_id)
    by_sku: dict[str, tuple[int, list[dict[str, Any]]]] = {}
    for line_no in sorted(batch.line_nos[uuid]):
        line = batch.lines.one(batch.conn, (uuid, line_no))
        by_sku[line["sku"]] = (line_no, list(line["allocations"]))
    for r in e.released:
        line_no, held = by_sku[r["sku"]]
        at = max(i for i, a in enumerate(held)
                 if a["warehouse_id"] == r["warehouse_id"] and a["quantity"])
        held[at] = {**held[at], "quantity": held[at]["quantity"] - r["quantity"]}
        by_sku[r["sku"]] = (line_no, [a for a in held if a["quantity"]])
    for line_no, held in by_sku.values():
        batch.lines.update(batch.conn, (uuid, line_no), allocations=held)
    for sid in e.cancelled_shipment_ids:
        batch.shipments.update(batch.conn, sid, status="cancelled")
    if e.shipments:
        batch.add_shipments(e, batch.order_id(e))


# event class -> what it does to the batch's rows
_FOLD = {
    Order.OrderPlaced: _placed,
    Order.BackorderFilled: _backorder_filled,
    Order.OrderPaid: _paid,
    Order.OrderCancelled: _cancelled,
    Order.OrderExpired: _expired,
    Order.FulfilmentStarted: _fulfilment_started,
    Order.OrderShipmentDispatched: _shipment_moved("dispatched"),
    Order.OrderShipmentDelivered: _shipment_moved("delivered"),
    Order.OrderCompleted: _completed,
    Order.OrderLineRefunded: _line_refunded,
    Order.OrderLineCompensated: _line_refunded,
    Order.AfterSalesStockReleased: _case_stock_released,
}
_CLOSES = {Order.OrderCancelled, Order.OrderExpired}
_LINE_MOVES = {Order.BackorderFilled, Order.OrderLineRefunded, Order.OrderLineCompensated}
_SHIPMENT_MOVES = {Order.OrderShipmentDispatched, Order.OrderShipmentDelivered}


class OrdersProjection(FoldingProjection):
    name = "orders"
    tables = (orders, order_lines, order_shipments)
    fold = _FOLD
    batch_class = _Batch


# -- queries ------------------------------------------------------------------------------

def _line_view(row: Any) -> dict[str, Any]:
    return {"line_no": row.line_no, "sku": row.sku, "name": row.name,
            "quantity": row.quantity, "unit_price": row.unit_price_minor,
            "gross": row.gross_minor, "discount": row.discount_minor, "net": row.net_minor,
            "allocations": [{"warehouse_id": a["warehouse_id"], "quantity": a["quantity"]}
                            for a in row.allocations],
            "backordered": row.backordered, "paid": row.paid_minor,
            "refunded": row.refunded_minor}


def _order_view(row: Any, lines: list[Any], shipments: list[Any]) -> dict[str, Any]:
    return {
        "order_id": row.order_id, "status": row.status,
        "distributor_id": row.distributor_id, "customer_id": row.customer_id,
        "currency": row.currency, "lines": [_line_view(x) for x in lines],
        "subtotal": row.subtotal_minor, "discount": row.discount_minor,
        "shipping_fee": row.shipping_fee_minor, "total": row.total_minor,
        "paid": row.paid_minor, "refunded": row.refunded_minor,
        "coupon_code": row.coupon_code,
        "shipments": [{"shipment_id": s.shipment_id, "warehouse_id": s.warehouse_id,
                       "status": s.status} for s in shipments],
        "created_at": iso(row.placed_at), "paid_at": iso(row.paid_at),
        "delivered_at": iso(row.delivered_at), "completed_at": iso(row.completed_at),
        "cancelled_at": iso(row.cancelled_at), "cancel_reason": row.cancel_reason,
    }


def _views(conn: Connection, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """The orders of `rows` with their lines and shipments (two more queries in all)."""
    uuids = [r.order_uuid for r in rows]
    if not uuids:
        return []
    lines: dict[str, list[Any]] = {u: [] for u in uuids}
    for line in conn.execute(select(order_lines).where(order_lines.c.order_uuid.in_(uuids))
                             .order_by(order_lines.c.order_uuid, order_lines.c.line_no)):
        lines[line.order_uuid].append(line)
    shipments: dict[str, list[Any]] = {u: [] for u in uuids}
    for shipment in conn.execute(
            select(order_shipments).where(order_shipments.c.order_uuid.in_(uuids))
            .order_by(order_shipments.c.shipment_id)):
        shipments[shipment.order_uuid].append(shipment)
    return [_order_view(r, lines[r.order_uuid], shipments[r.order_uuid]) for r in rows]


def get_order(conn: Connection, order_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(orders).where(orders.c.order_id == order_id)).first()
    return _views(conn, [row])[0] if row else None


def list_orders(conn: Connection, *, status: str | None = None,
                distributor_id: str | None = None, customer_id: str | None = None,
                only_distributor_id: str | None = None, after: list[Any] | None = None,
                limit: int = 50) -> list[dict[str, Any]]:
    """Newest first (placed_at, then order id, descending). `only_distributor_id`: a
    distributor's own orders, whatever else is asked. Each item carries its sort key
    under "cursor"."""
    query = select(orders).order_by(orders.c.placed_at.desc(), orders.c.order_id.desc())
    for column, value in ((orders.c.status, status),
                          (orders.c.distributor_id, distributor_id),
                          (orders.c.customer_id, customer_id),
                          (orders.c.distributor_id, only_distributor_id)):
        if value is not None:
            query = query.where(column == value)
    if after:
        at, order_id = after
        query = query.where(tuple_(orders.c.placed_at, orders.c.order_id)
                            < tuple_(utc(datetime.fromisoformat(at)), order_id))
    rows = conn.execute(query.limit(limit)).all()
    return [{**view, "cursor": [view["created_at"], view["order_id"]]}
            for view in _views(conn, rows)]
