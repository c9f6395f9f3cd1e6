"""Read model: orders with their lines, allocations and shipments, as `GET /orders` shows
them, plus what the tick needs to find due orders (placed_at, paid_at, delivered_at).

Other read models may read `rm_orders` (never write it). Times are stored in UTC.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import (JSON, Column, DateTime, Index, Integer, String, Table, Text,
                        bindparam, select, tuple_, update)
from sqlalchemy.engine import Connection

from commands.orders import iso
from commands.storage import BIGINT as MINOR, metadata
from domain.orders import Order
from projections.base import Projection

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
    if at is None:
        return None
    return at.replace(tzinfo=timezone.utc) if at.tzinfo is None else \
        at.astimezone(timezone.utc)


def _this(e: Any) -> Any:
    return orders.c.order_uuid == str(e.originator_id)


def _line(e: Any, line_no: int) -> Any:
    return (order_lines.c.order_uuid == str(e.originator_id)) & \
        (order_lines.c.line_no == line_no)


def _placed(conn: Connection, e: Any) -> None:
    uuid = str(e.originator_id)
    conn.execute(orders.insert().values(
        order_id=e.order_id, order_uuid=uuid, status=e.status,
        distributor_id=e.distributor_id, customer_id=e.customer["customer_id"],
        currency=e.currency, subtotal_minor=e.subtotal_minor,
        discount_minor=e.discount_minor, shipping_fee_minor=e.shipping_fee_minor,
        total_minor=e.total_minor, paid_minor=0, refunded_minor=0,
        coupon_code=e.promotions.get("coupon_code"), placed_at=utc(e.placed_at)))
    conn.execute(order_lines.insert(), [
        {"order_uuid": uuid, "line_no": x["line_no"], "order_id": e.order_id,
         "sku": x["sku"], "name": x["name"], "quantity": x["quantity"],
         "unit_price_minor": x["unit_price_minor"], "gross_minor": x["gross_minor"],
         "discount_minor": x["discount_minor"], "net_minor": x["net_minor"],
         "backordered": x["backordered"], "paid_minor": 0, "refunded_minor": 0,
         "allocations": [dict(a) for a in x["allocations"]]} for x in e.lines])


def _backorder_filled(conn: Connection, e: Any) -> None:
    held = conn.execute(select(order_lines.c.allocations)
                        .where(_line(e, e.line_no))).scalar_one()
    conn.execute(update(order_lines).where(_line(e, e.line_no)).values(
        allocations=[*held, *(dict(a) for a in e.allocations)], backordered=e.backordered))
    conn.execute(update(orders).where(_this(e)).values(status=e.status))


_set_line = (update(order_lines)
             .where(order_lines.c.order_uuid == bindparam("uuid"),
                    order_lines.c.line_no == bindparam("no")))


def _paid(conn: Connection, e: Any) -> None:
    conn.execute(update(orders).where(_this(e)).values(
        status=e.status, paid_minor=e.amount_minor, paid_at=utc(e.at)))
    if e.line_payments:
        conn.execute(_set_line.values(paid_minor=bindparam("amount")), [
            {"uuid": str(e.originator_id), "no": p["line_no"], "amount": p["amount_minor"]}
            for p in e.line_payments])


def _cancelled(conn: Connection, e: Any) -> None:
    conn.execute(update(orders).where(_this(e)).values(
        status="cancelled", cancelled_at=utc(e.at), cancel_reason=e.reason,
        refunded_minor=orders.c.refunded_minor + e.refund_due_minor))
    if e.line_refunds:
        conn.execute(_set_line.values(
            refunded_minor=order_lines.c.refunded_minor + bindparam("amount")), [
            {"uuid": str(e.originator_id), "no": r["line_no"], "amount": r["amount_minor"]}
            for r in e.line_refunds])
    _cancel_shipments(conn, e)


def _expired(conn: Connection, e: Any) -> None:
    conn.execute(update(orders).where(_this(e)).values(
        status="cancelled", cancelled_at=utc(e.at), cancel_reason="reservation_expired"))
    _cancel_shipments(conn, e)


def _cancel_shipments(conn: Connection, e: Any) -> None:
    conn.execute(update(order_shipments)
                 .where(order_shipments.c.order_uuid == str(e.originator_id))
                 .values(status="cancelled"))


def _fulfilment_started(conn: Connection, e: Any) -> None:
    order_id = conn.execute(select(orders.c.order_id).where(_this(e))).scalar_one()
    conn.execute(order_shipments.insert(), [
        {"shipment_id": s["shipment_id"], "order_uuid": str(e.originator_id),
         "order_id": order_id, "warehouse_id": s["warehouse_id"], "status": "created"}
        for s in e.shipments])
    conn.execute(update(orders).where(_this(e)).values(status="fulfilling"))


def _shipment_moved(shipment_status: str) -> Any:
    def handler(conn: Connection, e: Any) -> None:
        conn.execute(update(order_shipments)
                     .where(order_shipments.c.shipment_id == e.shipment_id)
                     .values(status=shipment_status))
        values: dict[str, Any] = {"status": e.status}
        if e.status == "delivered":
            values["delivered_at"] = utc(e.at)
        conn.execute(update(orders).where(_this(e)).values(**values))
    return handler


def _completed(conn: Connection, e: Any) -> None:
    conn.execute(update(orders).where(_this(e)).values(status="completed",
                                                        completed_at=utc(e.at)))


def _line_refunded(conn: Connection, e: Any) -> None:
    """A refund or a compensation: the line's `refunded` counts both."""
    conn.execute(update(order_lines).where(_line(e, e.line_no))
                 .values(refunded_minor=order_lines.c.refunded_minor + e.amount_minor))
    conn.execute(update(orders).where(_this(e)).values(
        refunded_minor=orders.c.refunded_minor + e.amount_minor))


def _case_stock_released(conn: Connection, e: Any) -> None:
    """A refund only before dispatch: allocations shrink (latest first), the shipments
    that carried the goods are cancelled and replaced."""
    uuid = str(e.originator_id)
    by_sku = {r.sku: (r.line_no, list(r.allocations)) for r in conn.execute(
        select(order_lines.c.sku, order_lines.c.line_no, order_lines.c.allocations)
        .where(order_lines.c.order_uuid == uuid))}
    for r in e.released:
        line_no, held = by_sku[r["sku"]]
        at = max(i for i, a in enumerate(held)
                 if a["warehouse_id"] == r["warehouse_id"] and a["quantity"])
        held[at] = {**held[at], "quantity": held[at]["quantity"] - r["quantity"]}
        by_sku[r["sku"]] = (line_no, [a for a in held if a["quantity"]])
    for line_no, held in by_sku.values():
        conn.execute(update(order_lines).where(_line(e, line_no)).values(allocations=held))
    if e.cancelled_shipment_ids:
        conn.execute(update(order_shipments)
                     .where(order_shipments.c.shipment_id.in_(e.cancelled_shipment_ids))
                     .values(status="cancelled"))
    if e.shipments:
        order_id = conn.execute(select(orders.c.order_id).where(_this(e))).scalar_one()
        conn.execute(order_shipments.insert(), [
            {"shipment_id": s["shipment_id"], "order_uuid": uuid, "order_id": order_id,
             "warehouse_id": s["warehouse_id"], "status": "created"} for s in e.shipments])


class OrdersProjection(Projection):
    name = "orders"
    tables = (orders, order_lines, order_shipments)
    handlers = {
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
