"""Process managers (policies): projections whose handlers issue commands.

- `commission_policy`: on payment of an attributed order, accrue each line's commission
  from the basis the order recorded at payment; on cancellation after payment, reverse all
  of it (what is pending is reversed, what matured is clawed back); on a line refund,
  reverse the refunded share.
- `backorder_policy`: whenever stock of a SKU becomes available (received, adjusted up,
  transferred in, restocked, released), fill that SKU's backorders first-come-first-served.

Exactly-once: the runner (projections/runner.py) issues an event's commands, each in its
own transaction, and only then advances the manager's tracking position. A crash in between
delivers the event again, so every command is keyed by its cause and answers a repeat with
"already done": an accrual by its line (LineCommission's natural id; lines already accrued
are skipped), a reversal by the cause it names (`cancelled:{order}`, recorded in the
LineCommission), a backorder fill by the state it fills from (nothing left to fill is a
no-op). A command refused by a business rule parks its event (`fenxiao projections parked`)
instead of being retried forever.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from eventsourcing.utils import get_topic
from sqlalchemy import select

from commands.app import CommandContext
from commands.ledger import LineRefund
from commands.storage import tracking
from domain.accruals import AccrualBasis, LineCommission
from domain.orders import Order
from domain.stock import StockItem

Handler = Callable[[Any, Any, "Cause"], None]


@dataclass(frozen=True)
class Cause:
    """The event a process manager is handling, as the cause of the commands it issues."""

    manager: str
    position: int
    event: Any

    def context(self) -> CommandContext:
        meta = getattr(self.event, "meta", None) or {}
        return CommandContext(actor=f"policy:{self.manager}",
                              correlation_id=meta.get("correlation_id"),
                              causation_id=f"event:{self.position}")

    def issue(self, app: Any, command: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run one command (its own transaction), stamped with this cause."""
        return app.execute(command, context=self.context()).body


class ProcessManager:
    name: ClassVar[str]
    # event class -> handler(app, event, cause); subclasses fill it.
    handlers: ClassVar[dict[type, Handler]]

    @classmethod
    def event_types(cls) -> tuple[type, ...]:
        return tuple(cls.handlers)

    @classmethod
    def topics(cls) -> list[str]:
        return sorted(get_topic(event_cls) for event_cls in cls.event_types())

    def handle(self, app: Any, event: Any, position: int) -> None:
        self.handlers[type(event)](app, event, Cause(self.name, position, event))


# -- commissions -------------------------------------------------------------------------

def cancellation_cause(order_id: str) -> str:
    """An order is cancelled once: its commission reversal is keyed by the order."""
    return f"cancelled:{order_id}"


def refund_cause(order_id: str, line_no: int, refunded_total_minor: int) -> str:
    return f"refund:{order_id}:{line_no}:{refunded_total_minor}"


def _order_id(app: Any, e: Any) -> str:
    return app.repository.get(e.originator_id).order_id


def _paid(app: Any, e: Any, cause: Cause) -> None:
    basis = recorded_basis(e)
    if basis is not None:  # an order without a distributor earns nobody anything
        cause.issue(app, lambda: _accrue(app, basis, cause))


def _accrue(app: Any, basis: AccrualBasis, cause: Cause) -> dict[str, Any]:
    """Accrue. A payment merely handled late is accrued alone: the order's later events
    come next in the log, each line refund reversing its share under its own refund
    reference, then the cancellation whatever is left, so an entry names the refunds that
    really reversed it. A parked payment retried after this manager has handled the
    events after it (their reversals found no commission then) is reversed with them in
    the same save: by the line's refunds so far, each under its cause and reference, then
    as the cancellation if the order has been cancelled since."""
    order = app.find(Order.create_id(basis.order_id))
    if order is None or not _handled_beyond(app, cause):
        return app.accrue_from_basis(basis)
    cancelled = order.status == "cancelled"
    return app.accrue_from_basis(
        basis, reversed_by=cancellation_cause(basis.order_id) if cancelled else None,
        refunds=_line_refunds(app, order))


def _line_refunds(app: Any, order: Order) -> dict[int, list[LineRefund]]:
    """line number -> the line's refunds so far, in order, from the order's history."""
    refunds: dict[int, list[LineRefund]] = {}
    for e in app.repository.event_store.get(order.id):
        if isinstance(e, Order.OrderLineRefunded):
            refunds.setdefault(e.line_no, []).append(LineRefund(
                e.refunded_total_minor,
                refund_cause(order.order_id, e.line_no, e.refunded_total_minor),
                e.reference))
    return refunds


def _handled_beyond(app: Any, cause: Cause) -> bool:
    """Whether the manager's tracked position is already past the event being handled:
    a parked event retried (in a batch, the position moves only after the batch)."""
    with app.engine.connect() as conn:
        tracked = conn.execute(select(tracking.c.position)
                               .where(tracking.c.name == cause.manager)).scalar()
    return (tracked or 0) >= cause.position


def _cancelled(app: Any, e: Any, cause: Cause) -> None:
    if not e.line_refunds:
        return  # never paid: nothing was accrued
    order_id = _order_id(app, e)
    line_nos = [r["line_no"] for r in e.line_refunds]
    cause.issue(app, lambda: app.reverse_order_commission(
        order_id, line_nos, cancellation_cause(order_id)))


def _line_refunded(app: Any, e: Any, cause: Cause) -> None:
    order_id = _order_id(app, e)
    cause.issue(app, lambda: _reverse_refund(app, order_id, e.line_no,
                                             e.refunded_total_minor, e.reference))


def _reverse_refund(app: Any, order_id: str, line_no: int, total: int,
                    reference: str) -> dict[str, Any]:
    commission = app.find(LineCommission.create_id(order_id, line_no))
    if commission is None or commission.refunded_minor >= total:
        return {"position": None}  # no commission, or reversed that far already
    return app.reverse_commission(order_id, line_no, total,
                                  refund_cause(order_id, line_no, total), reference)


def recorded_basis(e: Any) -> AccrualBasis | None:
    """The accrual basis OrderPaid carries (commands/orders.py `_commission_basis`);
    None for an order nobody is credited with."""
    recorded = getattr(e, "commission_basis", None)
    return AccrualBasis.from_recorded(recorded) if recorded else None


class CommissionPolicy(ProcessManager):
    name = "commission_policy"
    handlers = {
        Order.OrderPaid: _paid,
        Order.OrderCancelled: _cancelled,
        Order.OrderLineRefunded: _line_refunded,
    }


# -- backorders --------------------------------------------------------------------------

def _stock_arrived(app: Any, e: Any, cause: Cause) -> None:
    if type(e) is StockItem.StockAdjusted and e.delta <= 0:
        return
    sku = app.repository.get(e.originator_id).sku
    cause.issue(app, lambda: app.fill_backorders(sku))


class BackorderPolicy(ProcessManager):
    name = "backorder_policy"
    handlers = {event_cls: _stock_arrived for event_cls in (
        StockItem.StockReceived, StockItem.StockAdjusted, StockItem.StockTransferredIn,
        StockItem.StockRestocked, StockItem.StockReleased)}


def all_process_managers() -> list[ProcessManager]:
    return [CommissionPolicy(), BackorderPolicy()]
