"""Read model of the reports: sales facts that reconcile with the ledger, units dispatched
per SKU, warehouse and day (the demand replenishment forecasts from), and each SKU's
replenishment policy.

Every sales figure is dated by the event that moved the money, at the time the journal
dates its entry, so a report over [from, to) equals the journal over the same range:

    sale        an order's payment (OrderPaid), one fact per line: units, gross, discount
                and the net paid; `shipping` one fact for the shipping fee paid.
                Σ net + Σ shipping = what `merchant:sales` was credited (entry order:…:paid).
    refund      money paid back on a line: a cancellation after payment (OrderCancelled,
                each line's refund), an after-sales refund (OrderLineRefunded) or a
                compensation (OrderLineCompensated); `shipping_refund` the shipping a
                cancellation paid back. Σ refunded + Σ shipping_refund = what
                `merchant:refunds` was debited.
    commission  read from the journal itself: each entry on `merchant:commission_expense`
                (accruals debit it, reversals and clawbacks credit it), attributed to the
                order line its cause names. Σ = the account's net movement.

So `refunded` and `commission` count what happened in the range, whichever order it
belongs to (an order paid in October and refunded in November is sold in October and
refunded in November), exactly as the books do. The projection keeps each order's
distributor and lines (from OrderPlaced), because later events name only the order.

Demand: a shipment's lines (ShipmentCreated) become the units of its warehouse on the UTC
day it is dispatched (ShipmentDispatched; the stock is issued in that same save), for
consumer orders, purchase orders and exchanges alike (a repair's shipment carries the
customer's own goods: not demand). Cancelled shipments never count, and neither do
reservations that were released.

A batch is folded in memory and written with a few set-based statements: the orders and
shipments its events need are read in one query each, facts and new rows go in one
executemany INSERT per table, demand in one upsert that adds.
"""
from __future__ import annotations

import re
from collections import defaultdict
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, Iterable, Sequence

from sqlalchemy import (JSON, Column, Date, DateTime, Index, Integer, String, Table, case,
                        distinct, func, select)
from sqlalchemy.engine import Connection

from commands.storage import BIGINT, increment, metadata, upsert
from domain.errors import InvalidCommand
from domain.fulfilment import Shipment
from domain.ledger import COMMISSION_EXPENSE, JournalEntry
from domain.orders import Order
from domain.replenishment import ReplenishmentPolicy, daily_demand, share, suggest
from projections.base import Projection
from projections.inventory import inventory
from projections.orders import order_lines, orders

report_orders = Table(
    "rm_report_orders", metadata,
    Column("order_uuid", String(36), primary_key=True),
    Column("order_id", String(64), nullable=False, unique=True),
    Column("distributor_id", String(64), nullable=True),
    Column("currency", String(3), nullable=False),
    Column("lines", JSON, nullable=False),  # [{line_no, sku, quantity, gross, discount}]
)

KINDS = ("sale", "shipping", "refund", "shipping_refund", "commission")
sales_facts = Table(
    "rm_sales_facts", metadata,
    # The event and the order line (0: the order's shipping, or no known line) it is of.
    Column("source_uuid", String(36), primary_key=True),
    Column("source_version", Integer, primary_key=True),
    Column("line_no", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("at", DateTime(timezone=True), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("order_id", String(64), nullable=True),
    Column("distributor_id", String(64), nullable=True),
    Column("sku", String(64), nullable=True),
    Column("units", BIGINT, nullable=False),
    Column("gross_minor", BIGINT, nullable=False),
    Column("discount_minor", BIGINT, nullable=False),
    Column("amount_minor", BIGINT, nullable=False),  # net, shipping, refunded or commission
    Index("ix_rm_sales_facts_at", "at"),
)

# Shipments created and not yet dispatched or cancelled: what a dispatch will issue.
open_shipments = Table(
    "rm_report_open_shipments", metadata,
    Column("shipment_uuid", String(36), primary_key=True),
    Column("warehouse_id", String(64), nullable=False),
    Column("lines", JSON, nullable=False),  # [{sku, quantity}]
)

demand_daily = Table(
    "rm_demand_daily", metadata,
    Column("sku", String(64), primary_key=True),
    Column("warehouse_id", String(64), primary_key=True),
    Column("day", Date, primary_key=True),  # UTC
    Column("units", BIGINT, nullable=False),
)

replenishment_policies = Table(
    "rm_replenishment_policies", metadata,
    Column("sku", String(64), primary_key=True),
    Column("lead_time_days", Integer, nullable=False),
    Column("safety_stock", BIGINT, nullable=False),
)

# commission:{order_id}:{line_no}:L{level}:{what} (commands/ledger.py `_cause`); read from
# the right, so an order id holding ':' still parses.
_COMMISSION_CAUSE = re.compile(
    r"^commission:(?P<order_id>.+):(?P<line_no>\d+):L\d+:(?:accrued|matured|reversed:\d+)$")
_CHUNK = 500  # ids per IN (...) list


def utc(at: datetime) -> datetime:
    """In UTC, as stored (SQLite keeps no offset, so every row must share one)."""
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).astimezone(timezone.utc)


class _Batch:
    """One batch's writes, folded; the orders and shipments its events refer to."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.orders: dict[str, dict[str, Any]] = {}  # order uuid -> row
        self.order_ids: dict[str, str] = {}  # order id -> order uuid
        self.new_orders: list[dict[str, Any]] = []
        self.shipments: dict[str, dict[str, Any]] = {}  # open, by uuid
        self.new_shipments: set[str] = set()
        self.closed_shipments: set[str] = set()  # stored ones dispatched or cancelled
        self.facts: list[dict[str, Any]] = []
        self.demand: dict[tuple[str, str, date], int] = defaultdict(int)
        self.policies: dict[str, dict[str, Any]] = {}
        self._load(events)

    def _load(self, events: Sequence[Any]) -> None:
        placed = {str(e.originator_id) for e in events if type(e) is Order.OrderPlaced}
        created = {str(e.originator_id) for e in events
                   if type(e) is Shipment.ShipmentCreated}
        uuids = {str(e.originator_id) for e in events
                 if type(e) in _ORDER_MONEY} - placed
        order_ids = {found["order_id"] for e in events
                     if type(e) is JournalEntry.EntryPosted
                     and (found := _COMMISSION_CAUSE.match(e.cause))}
        for column, wanted in ((report_orders.c.order_uuid, uuids),
                               (report_orders.c.order_id, order_ids)):
            for row in _rows_in(self.conn, report_orders, column, wanted):
                self._remember(dict(row._mapping))
        shipments = {str(e.originator_id) for e in events
                     if type(e) in _SHIPMENT_CLOSED} - created
        for row in _rows_in(self.conn, open_shipments, open_shipments.c.shipment_uuid,
                            shipments):
            self.shipments[row.shipment_uuid] = dict(row._mapping)

    def _remember(self, order: dict[str, Any]) -> None:
        self.orders[order["order_uuid"]] = order
        self.order_ids[order["order_id"]] = order["order_uuid"]

    def add_order(self, order: dict[str, Any]) -> None:
        self.new_orders.append(order)
        self._remember(order)

    def order_of(self, e: Any) -> dict[str, Any]:
        return self.orders[str(e.originator_id)]  # none: the event is parked

    def fact(self, e: Any, line_no: int, kind: str, order: dict[str, Any] | None,
             amount_minor: int, line: dict[str, Any] | None = None,
             currency: str | None = None, order_id: str | None = None) -> None:
        self.facts.append({
            "source_uuid": str(e.originator_id), "source_version": e.originator_version,
            "line_no": line_no, "kind": kind, "at": utc(e.at),
            "currency": currency or order["currency"],  # type: ignore[index]
            "order_id": order["order_id"] if order else order_id,
            "distributor_id": order["distributor_id"] if order else None,
            "sku": line["sku"] if line else None,
            "units": line["quantity"] if line and kind == "sale" else 0,
            "gross_minor": line["gross"] if line and kind == "sale" else 0,
            "discount_minor": line["discount"] if line and kind == "sale" else 0,
            "amount_minor": amount_minor})

    def add_shipment(self, shipment: dict[str, Any]) -> None:
        self.shipments[shipment["shipment_uuid"]] = shipment
        self.new_shipments.add(shipment["shipment_uuid"])

    def close_shipment(self, e: Any) -> dict[str, Any] | None:
        """The open shipment, now closed; None for one that carries no stock."""
        uuid = str(e.originator_id)
        shipment = self.shipments.pop(uuid, None)
        if shipment is None:
            return None
        if uuid in self.new_shipments:
            self.new_shipments.discard(uuid)
        else:
            self.closed_shipments.add(uuid)
        return shipment

    def write(self) -> None:
        conn = self.conn
        if self.new_orders:
            conn.execute(report_orders.insert(), self.new_orders)
        if self.facts:
            conn.execute(sales_facts.insert(), self.facts)
        if self.new_shipments:
            conn.execute(open_shipments.insert(),
                         [self.shipments[uuid] for uuid in sorted(self.new_shipments)])
        for chunk in _chunks(sorted(self.closed_shipments)):
            conn.execute(open_shipments.delete()
                         .where(open_shipments.c.shipment_uuid.in_(chunk)))
        increment(conn, demand_daily, ["sku", "warehouse_id", "day"],
                  [{"sku": sku, "warehouse_id": w, "day": day, "units": units}
                   for (sku, w, day), units in sorted(self.demand.items())], ["units"])
        upsert(conn, replenishment_policies, list(self.policies.values()), ["sku"],
               ["lead_time_days", "safety_stock"])


def _chunks(values: Sequence[str]) -> Iterable[Sequence[str]]:
    for start in range(0, len(values), _CHUNK):
        yield values[start:start + _CHUNK]


def _rows_in(conn: Connection, table: Table, column: Any, wanted: set[str]) -> list[Any]:
    return [row for chunk in _chunks(sorted(wanted))
            for row in conn.execute(select(table).where(column.in_(chunk)))]


# -- handlers: (batch, event) --------------------------------------------------------------

def _placed(b: _Batch, e: Any) -> None:
    b.add_order({"order_uuid": str(e.originator_id), "order_id": e.order_id,
                 "distributor_id": e.distributor_id, "currency": e.currency,
                 "lines": [{"line_no": x["line_no"], "sku": x["sku"],
                            "quantity": x["quantity"], "gross": x["gross_minor"],
                            "discount": x["discount_minor"]} for x in e.lines]})


def _line(order: dict[str, Any], line_no: int) -> dict[str, Any]:
    return next(x for x in order["lines"] if x["line_no"] == line_no)


def _paid(b: _Batch, e: Any) -> None:
    order = b.order_of(e)
    for p in e.line_payments:
        b.fact(e, p["line_no"], "sale", order, p["amount_minor"], _line(order, p["line_no"]))
    if e.shipping_paid_minor:
        b.fact(e, 0, "shipping", order, e.shipping_paid_minor)


def _cancelled(b: _Batch, e: Any) -> None:
    if not e.refund_due_minor:
        return  # never paid, or nothing left to pay back
    order = b.order_of(e)
    for r in e.line_refunds:
        b.fact(e, r["line_no"], "refund", order, r["amount_minor"],
               _line(order, r["line_no"]))
    if e.shipping_refund_minor:
        b.fact(e, 0, "shipping_refund", order, e.shipping_refund_minor)


def _line_paid_back(b: _Batch, e: Any) -> None:
    """A refund or a compensation of one line: both are money back to the customer."""
    order = b.order_of(e)
    b.fact(e, e.line_no, "refund", order, e.amount_minor, _line(order, e.line_no))


def _entry(b: _Batch, e: Any) -> None:
    amount = sum(line["amount"] for line in e.lines if line["account"] == COMMISSION_EXPENSE)
    if not amount:
        return
    found = _COMMISSION_CAUSE.match(e.cause)
    order_id = found["order_id"] if found else None
    order = b.orders.get(b.order_ids.get(order_id, "")) if order_id else None
    line_no = int(found["line_no"]) if found else 0
    line = next((x for x in order["lines"] if x["line_no"] == line_no), None) \
        if order else None
    # An accrual of a line no order stands behind (the ledger used on its own) still
    # counts, under no SKU and no distributor: the totals must equal the journal's.
    b.fact(e, line_no if line else 0, "commission", order, amount, line,
           currency=e.currency, order_id=order_id)


def _shipment_created(b: _Batch, e: Any) -> None:
    if e.source == "repair":
        return  # the customer's own goods: no stock is issued (Shipment.carries_stock)
    b.add_shipment({"shipment_uuid": str(e.originator_id), "warehouse_id": e.warehouse_id,
                    "lines": [{"sku": x["sku"], "quantity": x["quantity"]}
                              for x in e.lines]})


def _shipment_dispatched(b: _Batch, e: Any) -> None:
    shipment = b.close_shipment(e)
    day = utc(e.at).date()
    for line in shipment["lines"] if shipment else ():
        b.demand[(line["sku"], shipment["warehouse_id"], day)] += line["quantity"]


def _shipment_cancelled(b: _Batch, e: Any) -> None:
    b.close_shipment(e)


def _policy(b: _Batch, e: Any) -> None:
    b.policies[e.sku] = {"sku": e.sku, "lead_time_days": e.lead_time_days,
                         "safety_stock": e.safety_stock}


_ORDER_MONEY = (Order.OrderPaid, Order.OrderCancelled, Order.OrderLineRefunded,
                Order.OrderLineCompensated)
_SHIPMENT_CLOSED = (Shipment.ShipmentDispatched, Shipment.ShipmentCancelled)
_APPLY = {
    Order.OrderPlaced: _placed,
    Order.OrderPaid: _paid,
    Order.OrderCancelled: _cancelled,
    Order.OrderLineRefunded: _line_paid_back,
    Order.OrderLineCompensated: _line_paid_back,
    JournalEntry.EntryPosted: _entry,
    Shipment.ShipmentCreated: _shipment_created,
    Shipment.ShipmentDispatched: _shipment_dispatched,
    Shipment.ShipmentCancelled: _shipment_cancelled,
    ReplenishmentPolicy.ReplenishmentPolicySet: _policy,
    ReplenishmentPolicy.ReplenishmentPolicyChanged: _policy,
}


class ReportsProjection(Projection):
    name = "reports"
    tables = (report_orders, sales_facts, open_shipments, demand_daily,
              replenishment_policies)
    handlers = {}  # apply_batch folds the batch itself

    @classmethod
    def event_types(cls) -> tuple[type, ...]:
        return tuple(_APPLY)

    def apply_batch(self, conn: Connection, events: Sequence[Any]) -> None:
        batch = _Batch(conn, events)
        for e in events:
            _APPLY[type(e)](batch, e)
        batch.write()


# -- the sales report -------------------------------------------------------------------

GROUPS = ("day", "sku", "distributor")
FIGURES = ("orders", "units", "gross", "discount", "net", "refunded", "commission")
TOTALS = (*FIGURES[:5], "shipping", "refunded", "shipping_refunded", "commission")


def _day(conn: Connection, utc_offset_minutes: int) -> Any:
    """The calendar day (YYYY-MM-DD) of a fact at the report's UTC offset."""
    at = sales_facts.c.at
    if conn.dialect.name == "postgresql":
        return func.to_char(func.timezone("UTC", at) + timedelta(minutes=utc_offset_minutes),
                            "YYYY-MM-DD")
    return func.strftime("%Y-%m-%d", at, f"{utc_offset_minutes:+d} minutes")


def _sums(columns: Any) -> dict[str, Any]:
    """The report's figures over `columns` (the facts, or a subquery of them)."""
    def of(kind: str, column: Any = None) -> Any:
        value = columns.amount_minor if column is None else column
        return func.coalesce(func.sum(case((columns.kind == kind, value), else_=0)), 0)

    return {"orders": func.count(distinct(case((columns.kind == "sale", columns.order_id)))),
            "units": of("sale", columns.units), "gross": of("sale", columns.gross_minor),
            "discount": of("sale", columns.discount_minor), "net": of("sale"),
            "shipping": of("shipping"), "refunded": of("refund"),
            "shipping_refunded": of("shipping_refund"), "commission": of("commission")}


def _in_range(from_: datetime, to: datetime, currency: str) -> list[Any]:
    return [sales_facts.c.currency == currency, sales_facts.c.at >= utc(from_),
            sales_facts.c.at < utc(to)]


def sales_report(conn: Connection, from_: datetime, to: datetime, group_by: str,
                 currency: str, *, utc_offset_minutes: int = 0, after: str | None = None,
                 limit: int | None = None) -> list[dict[str, Any]]:
    """Rows {key, orders, units, gross, discount, net, refunded, commission} of the facts
    in [from_, to) (aware datetimes), by day (at `utc_offset_minutes`), SKU or the order's
    distributor, ordered by key; from the key after `after`, at most `limit` rows. A key
    is None for orders of no distributor (and commission of no known order). Shipping is
    no row's: see `sales_totals`."""
    assert group_by in GROUPS, group_by
    key = (_day(conn, utc_offset_minutes) if group_by == "day" else
           func.coalesce(sales_facts.c.sku if group_by == "sku"
                         else sales_facts.c.distributor_id, ""))
    facts = (select(key.label("key"), sales_facts.c.kind, sales_facts.c.order_id,
                    sales_facts.c.units, sales_facts.c.gross_minor,
                    sales_facts.c.discount_minor, sales_facts.c.amount_minor)
             .where(*_in_range(from_, to, currency),
                    sales_facts.c.kind.in_(("sale", "refund", "commission")))
             .subquery())
    sums = _sums(facts.c)
    query = (select(facts.c.key, *(sums[name].label(name) for name in FIGURES))
             .group_by(facts.c.key).order_by(facts.c.key))
    if after is not None:
        query = query.where(facts.c.key > after)
    if limit is not None:
        query = query.limit(limit)
    return [{"key": row.key or None, **{name: int(getattr(row, name)) for name in FIGURES}}
            for row in conn.execute(query)]


def sales_totals(conn: Connection, from_: datetime, to: datetime,
                 currency: str) -> dict[str, int]:
    """The whole range's figures, shipping included: Σ net + shipping is what
    `merchant:sales` was credited in [from_, to), Σ refunded + shipping_refunded what
    `merchant:refunds` was debited, commission the net debit of
    `merchant:commission_expense`."""
    sums = _sums(sales_facts.c)
    row = conn.execute(select(*(sums[name].label(name) for name in TOTALS))
                       .where(*_in_range(from_, to, currency))).one()
    return {name: int(getattr(row, name)) for name in TOTALS}


# -- replenishment ------------------------------------------------------------------------

def replenishment_report(conn: Connection, settings: Any, now: datetime, *,
                         sku: str | None = None, warehouse_id: str | None = None,
                         low_only: bool = False) -> list[dict[str, Any]]:
    """Every stock item (or those of `sku` / `warehouse_id`; with `low_only` those whose
    available stock, less its share of the SKU's backorders, is below the reorder point),
    ordered by SKU and warehouse: rows {sku, warehouse_id, available, backordered,
    daily_demand, lead_time_days, safety_stock, reorder_point, order_up_to,
    suggested_quantity}. Demand is forecast from the units dispatched on the
    `settings.demand_window_days` whole UTC days before `now`'s; `backordered` is the
    item's share of the units the SKU's open orders wait for (domain/replenishment.py has
    the arithmetic); a SKU without a policy takes `settings.lead_time_days` and
    `settings.safety_stock`."""
    today = utc(now).date()
    first = today - timedelta(days=settings.demand_window_days)
    items = select(inventory.c.sku, inventory.c.warehouse_id,
                   (inventory.c.on_hand - inventory.c.reserved).label("available"))
    demand = select(demand_daily).where(demand_daily.c.day >= first,
                                        demand_daily.c.day < today)
    policies = select(replenishment_policies)
    waiting = (select(order_lines.c.sku, func.sum(order_lines.c.backordered))
               .join(orders, orders.c.order_uuid == order_lines.c.order_uuid)
               .where(order_lines.c.backordered > 0, orders.c.status != "cancelled")
               .group_by(order_lines.c.sku))
    if sku is not None:  # every warehouse of it: the backorders are shared among them all
        items = items.where(inventory.c.sku == sku)
        demand = demand.where(demand_daily.c.sku == sku)
        policies = policies.where(replenishment_policies.c.sku == sku)
        waiting = waiting.where(order_lines.c.sku == sku)
    units: dict[tuple[str, str], dict[int, int]] = defaultdict(dict)
    for row in conn.execute(demand):
        units[(row.sku, row.warehouse_id)][(today - row.day).days] = row.units
    terms = {row.sku: (row.lead_time_days, row.safety_stock)
             for row in conn.execute(policies)}
    backordered = dict(conn.execute(waiting).all())
    by_sku: dict[str, list[Any]] = defaultdict(list)
    for item in sorted(conn.execute(items), key=lambda r: (r.sku, r.warehouse_id)):
        by_sku[item.sku].append(item)
    rows = []
    for sku_items in by_sku.values():
        forecasts = [daily_demand(units.get((item.sku, item.warehouse_id), {}),
                                  settings.demand_half_life_days,
                                  settings.demand_window_days) for item in sku_items]
        shares = share(int(backordered.get(sku_items[0].sku, 0)), forecasts)
        for item, forecast, waits in zip(sku_items, forecasts, shares):
            if warehouse_id is not None and item.warehouse_id != warehouse_id:
                continue
            lead_time, safety = terms.get(item.sku, (settings.lead_time_days,
                                                     settings.safety_stock))
            plan = suggest(item.available - waits, forecast, lead_time, safety)
            if low_only and not plan.low:
                continue
            rows.append({"sku": item.sku, "warehouse_id": item.warehouse_id,
                         "available": item.available, "backordered": waits,
                         "daily_demand": float(forecast), "lead_time_days": lead_time,
                         "safety_stock": safety, "reorder_point": plan.reorder_point,
                         "order_up_to": plan.order_up_to,
                         "suggested_quantity": plan.suggested_quantity})
    return rows


def report_range(from_: date | datetime, to: date | datetime,
                 utc_offset_minutes: int = 0) -> tuple[datetime, datetime]:
    """[start, end) in UTC from a report's `from` and `to`: a time is that instant; a
    date is its midnight at the report's UTC offset, and a date `to` includes its whole
    day. InvalidCommand (422) when `from` is later than `to` or out of range."""
    zone = timezone(timedelta(minutes=utc_offset_minutes))

    def instant(value: date | datetime, field: str, days: int) -> datetime:
        try:
            if not isinstance(value, datetime):
                value = datetime.combine(value + timedelta(days=days), time(), zone)
            return utc(value)
        except OverflowError:
            raise InvalidCommand(f"{field} is too close to the end of the calendar",
                                 field=field) from None

    start, end = instant(from_, "from", 0), instant(to, "to", 1)
    if start > end or (type(from_) is date and type(to) is date and from_ > to):
        raise InvalidCommand("from must not be later than to", field="from")
    return start, end
