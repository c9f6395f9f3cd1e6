"""Read model: notifications to an order's distributor and customer, one per order event
worth telling them about:

    shortage          an order placed with lines backordered
    backorder_filled  stock arrived for a backordered line (BackorderFilled)
    shipped           a shipment was dispatched
    delivered         a shipment was delivered
    refund            a paid order was cancelled and refunded, or a line was refunded
    cancelled         an unpaid order was cancelled
    expired           an unpaid order's reservation timed out
    webhook_disabled  (to operators: no order, distributor or customer) a webhook endpoint
                      was disabled after failing for too long

A notification's id derives from its event (aggregate id and version), so a rebuild gives
every notification the id it had. Messages name SKUs, quantities, carriers and amounts, never
the customer's name, phone or address. A batch is written with two INSERTs, after one query
for the orders it names (projections/batching.py).
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from sqlalchemy import Column, DateTime, Index, String, Table, Text, select, tuple_
from sqlalchemy.engine import Connection

from commands.views import utc
from commands.storage import metadata
from domain.ids import natural_id
from domain.orders import Order
from domain.webhooks import WebhookEndpoint
from projections.batching import FoldingProjection, Rows, insert

notifications = Table(
    "rm_notifications", metadata,
    Column("notification_id", String(36), primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("order_id", String(64), nullable=True),  # None: a notice to operators
    Column("distributor_id", String(64), nullable=True, index=True),
    Column("customer_id", String(64), nullable=True, index=True),
    Column("message", Text, nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Index("ix_rm_notifications_at", "at", "notification_id"),
)

# Who an order's later events concern (they carry only the order's aggregate id).
notification_orders = Table(
    "rm_notification_orders", metadata,
    Column("order_uuid", String(36), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("distributor_id", String(64), nullable=True),
    Column("customer_id", String(64), nullable=False),
    Column("currency", String(3), nullable=False),
)


def _money(amount_minor: int, currency: str) -> str:
    return f"{amount_minor // 100}.{amount_minor % 100:02d} {currency}"


class _Batch:
    """A batch folded into two INSERTs (projections/batching.py): the orders it learns
    of and the notifications it makes; the orders it names are read in one query."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.orders = Rows(notification_orders, "order_uuid")
        self.orders.load(conn, [str(e.originator_id) for e in events
                                if type(e) not in (Order.OrderPlaced, WEBHOOK_DISABLED)])
        self.notifications: list[dict[str, Any]] = []

    def write(self) -> None:
        self.orders.write(self.conn)
        insert(self.conn, notifications, self.notifications)


def _notify(batch: _Batch, e: Any, kind: str, message: str, at: datetime | None = None,
            order: dict[str, Any] | None = None) -> None:
    order = order or _order(batch, e)
    batch.notifications.append({
        "notification_id": str(natural_id("notification", str(e.originator_id),
                                          str(e.originator_version))),
        "kind": kind, "order_id": order["order_id"],
        "distributor_id": order["distributor_id"], "customer_id": order["customer_id"],
        "message": f"Order {order['order_id']}: {message}", "at": utc(at or e.at)})


def _order(batch: _Batch, e: Any) -> dict[str, Any]:
    """Who the order's event concerns: its row must exist (the order was placed)."""
    return batch.orders.one(batch.conn, str(e.originator_id))


def _placed(batch: _Batch, e: Any) -> None:
    order = {"order_uuid": str(e.originator_id), "order_id": e.order_id,
             "distributor_id": e.distributor_id,
             "customer_id": e.customer["customer_id"], "currency": e.currency}
    batch.orders.insert(order)
    short = [f"{line['backordered']} × {line['sku']}" for line in e.lines
             if line["backordered"]]
    if short:
        _notify(batch, e, "shortage", f"{', '.join(short)} out of stock and backordered; "
                "it is allocated as soon as stock arrives", e.placed_at, order)


def _backorder_filled(batch: _Batch, e: Any) -> None:
    filled = sum(a["quantity"] for a in e.allocations)
    waiting = f"{e.backordered} still waiting" if e.backordered else "nothing left waiting"
    _notify(batch, e, "backorder_filled",
            f"{filled} × {e.sku} allocated from new stock ({waiting})")


def _dispatched(batch: _Batch, e: Any) -> None:
    _notify(batch, e, "shipped", f"shipment {e.shipment_id} dispatched with {e.carrier}, "
            f"tracking number {e.tracking_number}")


def _delivered(batch: _Batch, e: Any) -> None:
    whole = "; the whole order is delivered" if e.status == "delivered" else ""
    _notify(batch, e, "delivered", f"shipment {e.shipment_id} delivered{whole}")


def _cancelled(batch: _Batch, e: Any) -> None:
    order = _order(batch, e)
    if e.refund_due_minor:
        _notify(batch, e, "refund", f"cancelled ({e.reason}); "
                f"{_money(e.refund_due_minor, order['currency'])} refunded", order=order)
    else:
        _notify(batch, e, "cancelled", f"cancelled ({e.reason})", order=order)


def _expired(batch: _Batch, e: Any) -> None:
    _notify(batch, e, "expired", "not paid in time: its reservation expired and the order "
            "is cancelled")


def _line_refunded(batch: _Batch, e: Any) -> None:
    order = _order(batch, e)
    _notify(batch, e, "refund", f"{_money(e.amount_minor, order['currency'])} refunded for "
            f"{e.sku} (line {e.line_no})", order=order)


def _webhook_disabled(batch: _Batch, e: Any) -> None:
    """Only the sender's own disabling is news to operators (they did the others)."""
    if not e.automatic:
        return
    batch.notifications.append({
        "notification_id": str(natural_id("notification", str(e.originator_id),
                                          str(e.originator_version))),
        "kind": "webhook_disabled", "order_id": None, "distributor_id": None,
        "customer_id": None, "message": f"Webhook endpoint disabled: {e.reason}",
        "at": utc(e.at)})


WEBHOOK_DISABLED = WebhookEndpoint.WebhookDisabled

# event class -> what it does to the batch
_FOLD = {
    Order.OrderPlaced: _placed,
    Order.BackorderFilled: _backorder_filled,
    Order.OrderShipmentDispatched: _dispatched,
    Order.OrderShipmentDelivered: _delivered,
    Order.OrderCancelled: _cancelled,
    Order.OrderExpired: _expired,
    Order.OrderLineRefunded: _line_refunded,
    WEBHOOK_DISABLED: _webhook_disabled,
}


class NotificationsProjection(FoldingProjection):
    name = "notifications"
    tables = (notifications, notification_orders)
    fold = _FOLD
    batch_class = _Batch


def notification_view(row: Any) -> dict[str, Any]:
    return {"notification_id": row.notification_id, "kind": row.kind,
            "order_id": row.order_id, "distributor_id": row.distributor_id,
            "customer_id": row.customer_id, "message": row.message,
            "at": utc(row.at).isoformat()}


def list_notifications(conn: Connection, distributor_id: str | None,
                       customer_id: str | None, after_at: datetime | None,
                       cursor: list[Any] | None, limit: int) -> list[dict[str, Any]]:
    """Oldest first, from `after_at` (exclusive), paged by (at, notification_id)."""
    query = select(notifications).order_by(notifications.c.at,
                                           notifications.c.notification_id).limit(limit)
    if distributor_id is not None:
        query = query.where(notifications.c.distributor_id == distributor_id)
    if customer_id is not None:
        query = query.where(notifications.c.customer_id == customer_id)
    if after_at is not None:
        query = query.where(notifications.c.at > utc(after_at))
    if cursor is not None:
        at, notification_id = cursor
        query = query.where(tuple_(notifications.c.at, notifications.c.notification_id)
                            > tuple_(utc(datetime.fromisoformat(at)), notification_id))
    return [notification_view(r) for r in conn.execute(query)]
