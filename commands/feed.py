"""The public event feed: the log's events that integrations may rely on, under public
names and with payloads built here, type by type.

The vocabulary (version 1) is the table `PUBLIC_TYPES`: each public type names the one
internal event it is made from and a function that builds its `data` explicitly, field by
field, so renaming or extending an internal event never changes a public payload (a
field an internal event loses is a failing test here, not a silent change for
integrators). Events that are not in the table are not public.

A public event: `{id, type, position, aggregate_id, aggregate_version, occurred_at,
data}`. Its `id` derives from the stored event's aggregate id and version, so it is the
same on every read, every delivery and every replay, forever.

Later events of an aggregate carry only its id; what they concern (the order and its
distributor, the case, the withdrawal) is read from the aggregate's first event, which
never changes, so it is kept in a small cache.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence
from uuid import UUID, uuid5

from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic
from sqlalchemy import and_, func, or_, select, tuple_
from sqlalchemy.engine import Connection

from commands.audit import mask_personal
from commands.views import iso
from domain.accruals import LineCommission
from domain.aftersales import Case
from domain.ledger import Withdrawal
from domain.orders import Order
from domain.webhooks import WebhookEndpoint
from projections.audit_checkpoints import event_log, event_time

VOCABULARY_VERSION = 1
EVENT_ID_NAMESPACE = UUID("1b0e8f52-8f8e-4c55-9d51-3f8ad1c2a7e4")
PING_TYPE = "webhook.ping"
PING_TOPIC = get_topic(WebhookEndpoint.WebhookPinged)
READ_CHUNK = 500  # rows decoded at a time
MAX_SCAN = 5_000  # log rows one page looks through before answering what it found


@dataclass(frozen=True)
class Viewer:
    """Who reads: an admin sees personal data as recorded, everyone else masked (as GET
    /audit/events shows it); a distributor sees only events about its own orders and
    earnings, and of commission events only its own lines."""

    masked: bool = True
    distributor_id: str | None = None


INTEGRATION = Viewer()  # what webhook deliveries carry: personal data masked


@dataclass(frozen=True)
class PublicType:
    name: str
    build: Callable[[Any, Any], dict[str, Any]]  # (event, the aggregate's first event)
    parties: Callable[[dict[str, Any]], set[str]]  # distributors it concerns, from data


def _order_parties(data: dict[str, Any]) -> set[str]:
    return {data["distributor_id"]} if data.get("distributor_id") else set()


def _line_parties(data: dict[str, Any]) -> set[str]:
    return {entry["distributor_id"] for entry in data["amounts"]}


def _order_ref(origin: Any) -> dict[str, Any]:
    return {"order_id": origin.order_id, "distributor_id": origin.distributor_id}


def _placed(e: Any, _origin: Any) -> dict[str, Any]:
    return {
        "order_id": e.order_id, "status": e.status, "distributor_id": e.distributor_id,
        "customer": {"customer_id": e.customer["customer_id"], "name": e.customer["name"],
                     "phone": e.customer["phone"]},
        "shipping_address": {key: e.shipping_address.get(key)
                             for key in ("region", "city", "line1", "postcode")},
        "currency": e.currency,
        "lines": [{"line_no": line["line_no"], "sku": line["sku"],
                   "quantity": line["quantity"], "unit_price": line["unit_price_minor"],
                   "gross": line["gross_minor"], "discount": line["discount_minor"],
                   "net": line["net_minor"], "backordered": line["backordered"]}
                  for line in e.lines],
        "subtotal": e.subtotal_minor, "discount": e.discount_minor,
        "shipping_fee": e.shipping_fee_minor, "total": e.total_minor,
    }


def _paid(e: Any, origin: Any) -> dict[str, Any]:
    return {**_order_ref(origin), "currency": origin.currency, "amount": e.amount_minor,
            "payment_reference": e.payment_reference, "status": e.status}


def _cancelled(e: Any, origin: Any) -> dict[str, Any]:
    return {**_order_ref(origin), "currency": origin.currency, "reason": e.reason,
            "refund_due": e.refund_due_minor}


def _expired(_e: Any, origin: Any) -> dict[str, Any]:
    return {**_order_ref(origin), "reason": "reservation_expired"}


def _completed(_e: Any, origin: Any) -> dict[str, Any]:
    return _order_ref(origin)


def _backorder_filled(e: Any, origin: Any) -> dict[str, Any]:
    return {**_order_ref(origin), "line_no": e.line_no, "sku": e.sku,
            "quantity": sum(a["quantity"] for a in e.allocations),
            "still_backordered": e.backordered, "status": e.status}


def _dispatched(e: Any, origin: Any) -> dict[str, Any]:
    return {**_order_ref(origin), "shipment_id": e.shipment_id, "carrier": e.carrier,
            "tracking_number": e.tracking_number, "order_status": e.status}


def _delivered(e: Any, origin: Any) -> dict[str, Any]:
    return {**_order_ref(origin), "shipment_id": e.shipment_id, "order_status": e.status}


def _case_requested(e: Any, _origin: Any) -> dict[str, Any]:
    return {"case_id": e.case_id, "order_id": e.order_id, "distributor_id": e.distributor_id,
            "type": e.case_type, "reason": e.reason, "currency": e.currency,
            "amount": e.amount_minor,
            "lines": [{"sku": line["sku"], "quantity": line["quantity"]} for line in e.lines]}


def _case_refunded(e: Any, origin: Any) -> dict[str, Any]:
    return {"case_id": origin.case_id, "order_id": origin.order_id,
            "distributor_id": origin.distributor_id, "currency": origin.currency,
            "amount": e.amount_minor, "refund_reference": e.reference,
            "lines": [{"line_no": x["line_no"], "sku": x["sku"], "amount": x["amount_minor"]}
                      for x in e.line_refunds]}


def _line(origin: Any) -> dict[str, Any]:
    return {"order_id": origin.order_id, "line_no": origin.line_no, "sku": origin.sku,
            "currency": origin.currency}


def _accrued(e: Any, _origin: Any) -> dict[str, Any]:
    return {**_line(e), "base": e.net_minor,
            "amounts": [{"level": a["level"], "distributor_id": a["distributor_id"],
                         "amount": a["amount_minor"], "rate_bp": a["rate_bp"],
                         "fixed_per_unit": a["fixed_per_unit"]} for a in e.accruals]}


def _matured(e: Any, origin: Any) -> dict[str, Any]:
    return {**_line(origin),
            "amounts": [{"level": m["level"], "distributor_id": m["distributor_id"],
                         "amount": m["amount_minor"]} for m in e.moved]}


def _reversed(e: Any, origin: Any) -> dict[str, Any]:
    return {**_line(origin), "refunded_total": e.refunded_total_minor,
            "refund_reference": e.refund_reference,
            "amounts": [{"level": r["level"], "distributor_id": r["distributor_id"],
                         "amount": r["amount_minor"], "from": r["source"]}
                        for r in e.reversals]}


def _withdrawal(origin: Any) -> dict[str, Any]:
    return {"withdrawal_id": origin.withdrawal_id, "distributor_id": origin.distributor_id,
            "amount": origin.amount_minor, "currency": origin.currency}


def _withdrawal_requested(e: Any, _origin: Any) -> dict[str, Any]:
    return _withdrawal(e)


def _withdrawal_approved(e: Any, origin: Any) -> dict[str, Any]:
    return {**_withdrawal(origin), "payment_reference": e.payment_reference,
            "approved_by": [e.actor]}


def _withdrawal_paid(e: Any, origin: Any) -> dict[str, Any]:
    return {**_withdrawal(origin), "payment_reference": e.payment_reference,
            "approved_by": list(e.approved_by)}


def _case_refund_approved(e: Any, origin: Any) -> dict[str, Any]:
    return {"case_id": origin.case_id, "order_id": origin.order_id,
            "distributor_id": origin.distributor_id, "currency": origin.currency,
            "amount": e.amount_minor, "refund_reference": e.reference,
            "approved_by": [e.actor]}


def _withdrawal_rejected(e: Any, origin: Any) -> dict[str, Any]:
    return {**_withdrawal(origin), "reason": e.reason}


# internal event class -> its public type (version 1 of the vocabulary; add, never change)
PUBLIC_TYPES: dict[type, PublicType] = {
    Order.OrderPlaced: PublicType("order.placed", _placed, _order_parties),
    Order.OrderPaid: PublicType("order.paid", _paid, _order_parties),
    Order.BackorderFilled: PublicType("order.backorder_filled", _backorder_filled,
                                      _order_parties),
    Order.OrderCancelled: PublicType("order.cancelled", _cancelled, _order_parties),
    Order.OrderExpired: PublicType("order.expired", _expired, _order_parties),
    Order.OrderCompleted: PublicType("order.completed", _completed, _order_parties),
    Order.OrderShipmentDispatched: PublicType("shipment.dispatched", _dispatched,
                                              _order_parties),
    Order.OrderShipmentDelivered: PublicType("shipment.delivered", _delivered,
                                             _order_parties),
    Case.CaseRequested: PublicType("aftersales.requested", _case_requested, _order_parties),
    Case.CaseRefunded: PublicType("aftersales.refunded", _case_refunded, _order_parties),
    Case.CaseRefundApproved: PublicType("aftersales.refund_approved", _case_refund_approved,
                                        _order_parties),
    LineCommission.CommissionAccrued: PublicType("commission.accrued", _accrued,
                                                 _line_parties),
    LineCommission.CommissionMatured: PublicType("commission.matured", _matured,
                                                 _line_parties),
    LineCommission.CommissionReversed: PublicType("commission.reversed", _reversed,
                                                  _line_parties),
    Withdrawal.WithdrawalRequested: PublicType("withdrawal.requested",
                                               _withdrawal_requested, _order_parties),
    Withdrawal.WithdrawalApproved: PublicType("withdrawal.approved", _withdrawal_approved,
                                              _order_parties),
    Withdrawal.WithdrawalPaid: PublicType("withdrawal.paid", _withdrawal_paid,
                                          _order_parties),
    Withdrawal.WithdrawalRejected: PublicType("withdrawal.rejected", _withdrawal_rejected,
                                              _order_parties),
}
# The events whose aggregates' later events need them (what the later ones concern).
FIRST_EVENTS = (Order.OrderPlaced, Case.CaseRequested, LineCommission.CommissionAccrued,
                Withdrawal.WithdrawalRequested)
TOPIC_TYPES = {get_topic(cls): public for cls, public in PUBLIC_TYPES.items()}
TYPE_TOPICS = {public.name: topic for topic, public in TOPIC_TYPES.items()}
PUBLIC_TYPE_NAMES = tuple(public.name for public in PUBLIC_TYPES.values())


def topics_for(types: Iterable[str] | None) -> list[str]:
    """The stored topics of the public `types` (all when None)."""
    return [TYPE_TOPICS[name] for name in (PUBLIC_TYPE_NAMES if types is None else types)]


def event_id(originator_id: UUID, version: int) -> str:
    return str(uuid5(EVENT_ID_NAMESPACE, f"{originator_id}/{version}"))


class FirstEvents:
    """The first event of aggregates, decoded, kept (it never changes) up to `size`."""

    def __init__(self, size: int = 5_000) -> None:  # an order's is a few KiB
        self.size = size
        self._kept: OrderedDict[UUID, Any] = OrderedDict()
        self._lock = threading.Lock()

    def load(self, app: Any, conn: Connection, aggregate_ids: Iterable[UUID]) -> dict[UUID, Any]:
        wanted = set(aggregate_ids)
        with self._lock:
            found = {i: self._kept[i] for i in wanted if i in self._kept}
        missing = wanted - found.keys()
        if missing:
            e = event_log.c
            rows = conn.execute(select(event_log).where(
                tuple_(e.originator_id, e.originator_version).in_(
                    [(i, 1) for i in missing]))).all()
            decoded = {row.originator_id: decode(app, row) for row in rows}
            found.update(decoded)
            with self._lock:
                self._kept.update(decoded)
                while len(self._kept) > self.size:
                    self._kept.popitem(last=False)
        return found


first_events = FirstEvents()


def decode(app: Any, row: Any) -> Any:
    state = row.state
    return app.mapper.to_domain_event(StoredEvent(
        originator_id=row.originator_id, originator_version=row.originator_version,
        topic=row.topic, state=bytes(state) if isinstance(state, memoryview) else state))


def public_event(position: int, event: Any, origin: Any, viewer: Viewer
                 ) -> dict[str, Any] | None:
    """The public form of a stored event for `viewer`, or None if it may not see it."""
    if type(event) is WebhookEndpoint.WebhookPinged:
        data: dict[str, Any] = {"webhook_id": origin.webhook_id}
        kind = PING_TYPE
    else:
        public = PUBLIC_TYPES[type(event)]
        data, kind = public.build(event, origin if origin is not None else event), public.name
        if viewer.distributor_id is not None:
            if viewer.distributor_id not in public.parties(data):
                return None
            if "amounts" in data:  # commission lines: its own share, not its upline's
                data["amounts"] = [a for a in data["amounts"]
                                   if a["distributor_id"] == viewer.distributor_id]
    if viewer.masked:
        data = mask_personal(kind, data)
    return {"id": event_id(event.originator_id, event.originator_version), "type": kind,
            "position": position, "aggregate_id": str(event.originator_id),
            "aggregate_version": event.originator_version,
            "occurred_at": iso(event_time(event)), "data": data}


@dataclass
class Page:
    items: list[dict[str, Any]]
    next_after: int  # the position to ask after next: past everything looked through
    head: int  # the log head the page was read up to


def log_head(conn: Connection) -> int:
    return conn.execute(select(func.max(event_log.c.id))).scalar() or 0


def read_page(app: Any, conn: Connection, after: int, topics: Sequence[str], limit: int,
              viewer: Viewer, pings_of: UUID | None = None,
              max_scan: int = MAX_SCAN) -> Page:
    """Up to `limit` public events after `after`, in log order, of `topics` (and the
    pings of endpoint `pings_of`). Positions commit in log order (the writers lock the
    event table), so nothing can later appear at or before the head read here: a page
    that found nothing more moves `next_after` to that head."""
    head = log_head(conn)
    e = event_log.c
    wanted = e.topic.in_(list(topics)) if topics else None
    if pings_of is not None:
        ping = and_(e.topic == PING_TOPIC, e.originator_id == pings_of)
        wanted = ping if wanted is None else or_(wanted, ping)
    items: list[dict[str, Any]] = []
    cursor, scanned = after, 0
    while wanted is not None and cursor < head and len(items) < limit and scanned < max_scan:
        chunk = min(READ_CHUNK, max(limit - len(items), 1) if viewer.distributor_id is None
                    else READ_CHUNK)
        rows = conn.execute(select(event_log).where(e.id > cursor, e.id <= head, wanted)
                            .order_by(e.id).limit(chunk)).all()
        if not rows:
            cursor = head
            break
        scanned += len(rows)
        events = [decode(app, row) for row in rows]
        origins = first_events.load(app, conn, {
            ev.originator_id for ev in events
            if ev.originator_version > 1 or type(ev) is WebhookEndpoint.WebhookPinged})
        for row, ev in zip(rows, events):
            item = public_event(row.id, ev, origins.get(ev.originator_id), viewer)
            cursor = row.id
            if item is not None:
                items.append(item)
                if len(items) == limit:
                    break
        else:
            if len(rows) < chunk:
                cursor = head  # nothing more of these topics up to the head
    if wanted is None:  # no topic asked for: nothing to find up to the head
        cursor = head
    return Page(items, max(cursor, after), head)
