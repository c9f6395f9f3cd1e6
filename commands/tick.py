"""The time rules, run on a tick with an explicit `now` (so they are testable and
replayable): `POST /admin/tick`, `fenxiao tick [--now ISO]`, and the worker every minute.

- reservation expiry: unpaid orders placed `reservation_timeout_s` or more before `now`
  release their stock (OrderService.expire_order);
- completion: delivered orders whose return window (`return_window_days` after delivery)
  is over complete (OrderService.complete_order);
- commission maturity: the commission of orders completed `commission_freeze_days` or more
  before `now` moves from pending to available.

Candidates come from the read models (rm_orders, rm_commissions), which may lag: what they
do not show yet is found by a later tick. Each candidate is one command in its own
transaction that re-checks on the aggregates, so a stale candidate, a concurrent tick or a
repeat is a no-op, never a second posting. Time only moves forward: a `now` earlier than
the application clock's is refused.
"""
from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any, Callable
from uuid import uuid4

from sqlalchemy import select
from sqlalchemy.engine import Connection

from commands.app import CommandContext
from domain.errors import DomainError, InvalidCommand
from domain.orders import Order
from projections.commissions import commissions
from projections.orders import orders, utc

log = logging.getLogger("fenxiao.tick")
DAY = timedelta(days=1)
MAX_PER_RULE = 1000  # candidates per rule and tick; the next tick takes the rest


class TimeGoesBackwards(DomainError):
    code = "time_goes_backwards"


def maturity_cause(order_id: str) -> str:
    """An order completes once: the maturity of its commission is keyed by the order."""
    return f"freeze-ended:{order_id}"


def tick(app: Any, now: datetime | None = None, actor: str = "tick") -> dict[str, Any]:
    """Run every time rule as of `now` (default: the clock's now); answer how many orders
    expired and completed, how many order lines' commission matured, and the log position
    of the last event recorded (None: nothing was due)."""
    clock = app.clock()
    now = clock if now is None else now
    if now.tzinfo is None:
        raise InvalidCommand("now needs a UTC offset", field="now")
    if now < clock:
        raise TimeGoesBackwards(f"time only moves forward: {now.isoformat()} is before "
                                f"the clock's now, {clock.isoformat()}",
                                now=now.isoformat(), clock=clock.isoformat())
    settings = app.settings
    with app.engine.connect() as conn:
        expiring = _expiring(conn, now - timedelta(seconds=settings.reservation_timeout_s))
        completing = _completing(conn, now - settings.return_window_days * DAY)
        maturing = _maturing(conn, now - settings.commission_freeze_days * DAY)
    run = _Runner(app, actor, now)
    expired = [run(lambda o=o: app.expire_order(o, now)) for o in expiring]
    completed = [run(lambda o=o: app.complete_order(o, now)) for o in completing]
    matured = [run(lambda o=o, lines=lines: mature_due(app, o, lines, now))
               for o, lines in maturing.items()]
    return {"expired": sum(1 for r in expired if r and r.get("expired")),
            "completed": sum(1 for r in completed if r and r.get("completed")),
            "matured": sum(len(r["matured"]) for r in matured if r),
            "position": max(run.positions, default=None)}


def mature_due(app: Any, order_id: str, line_nos: list[int], now: datetime
               ) -> dict[str, Any]:
    """Mature the commission of the order's lines if its freeze period has ended: the
    order's completion, read from the aggregate, is the judge (not the read model)."""
    order = app.find(Order.create_id(order_id))
    due = order is not None and order.completed_at is not None and \
        now >= order.completed_at + app.settings.commission_freeze_days * DAY
    if not due:
        return {"order_id": order_id, "matured": [], "position": None}
    return app.mature_order_commission(order_id, line_nos, maturity_cause(order_id), now)


class _Runner:
    """Each command in its own transaction, stamped with the tick as its cause; one that
    fails is logged and left for the next tick (the others still run)."""

    def __init__(self, app: Any, actor: str, now: datetime) -> None:
        self.app = app
        self.context = CommandContext(actor=actor, correlation_id=f"tick-{uuid4().hex}",
                                      causation_id=f"tick:{now.isoformat()}")
        self.positions: list[int] = []

    def __call__(self, command: Callable[[], dict[str, Any]]) -> dict[str, Any] | None:
        try:
            body = self.app.execute(command, context=self.context).body
        except DomainError as error:
            log.warning("tick: a command was refused (%s): %s", error.code, error.message)
            return None
        if body.get("position") is not None:
            self.positions.append(body["position"])
        return body


def _expiring(conn: Connection, placed_before: datetime) -> list[str]:
    return list(conn.execute(
        select(orders.c.order_id)
        .where(orders.c.status.in_(("placed", "backordered")), orders.c.paid_at.is_(None),
               orders.c.placed_at <= utc(placed_before))
        .order_by(orders.c.placed_at, orders.c.order_id).limit(MAX_PER_RULE)).scalars())


def _completing(conn: Connection, delivered_before: datetime) -> list[str]:
    return list(conn.execute(
        select(orders.c.order_id)
        .where(orders.c.status == "delivered", orders.c.delivered_at <= utc(delivered_before))
        .order_by(orders.c.delivered_at, orders.c.order_id).limit(MAX_PER_RULE)).scalars())


def _maturing(conn: Connection, completed_before: datetime) -> dict[str, list[int]]:
    rows = conn.execute(
        select(commissions.c.order_id, commissions.c.line_no).distinct()
        .join(orders, orders.c.order_id == commissions.c.order_id)
        .where(commissions.c.status == "pending", orders.c.status == "completed",
               orders.c.completed_at <= utc(completed_before))
        .order_by(commissions.c.order_id, commissions.c.line_no).limit(MAX_PER_RULE))
    due: dict[str, list[int]] = {}
    for order_id, line_no in rows:
        due.setdefault(order_id, []).append(line_no)
    return due
