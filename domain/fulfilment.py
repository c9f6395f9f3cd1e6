"""Shipments: one per warehouse of an order's (or a purchase order's) allocations.

Warehouse steps:   created -> picked -> packed -> dispatched (handed to a carrier)
Carrier steps:     dispatched -> in_transit -> out_for_delivery -> delivered
                   exception: the carrier reports a problem; a later step moves on from it
Before dispatch:   created | picked | packed -> cancelled (the order was cancelled)

Carrier events are idempotent by the carrier's event id: a repeat is a no-op. The status
only moves forward: an event for a step already passed is kept (recorded, `applied`
false) but changes nothing, and an exception after delivery, or older than the current
status, changes nothing either. A carrier event must have happened between a day before
the dispatch and a day after it is received (clocks drift; calendars do not).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.carriers import CarrierChoice
from domain.checks import ensure
from domain.errors import DomainError, InvalidCommand, InvalidTransition
from domain.ids import natural_id

LADDER = ("created", "picked", "packed", "dispatched", "in_transit", "out_for_delivery",
          "delivered")
CARRIER_STATUSES = ("in_transit", "out_for_delivery", "delivered", "exception")
RANK = {status: rank for rank, status in enumerate(LADDER)}
SOURCES = ("order", "purchase_order", "exchange", "repair")  # the last two: after-sales cases

APPLIED, LATE, DUPLICATE = "applied", "late", "duplicate"
CLOCK_SKEW = timedelta(days=1)  # how far a carrier's event time may stray (see above)


class ImplausibleTime(DomainError):
    code = "implausible_time"


class EventIdReused(DomainError):
    """A carrier event id sent again with other content: not a repeat but a mistake (or
    a forgery) that taking the first reply would hide."""

    code = "event_id_reused"


def shipment_id_for(source_id: str, warehouse_id: str) -> str:
    """The shipment of one order's (or purchase order's) goods from one warehouse."""
    return "SH" + natural_id("shipment", source_id, warehouse_id).hex[:20].upper()


@dataclass(frozen=True)
class ShipmentPlan:
    shipment_id: str
    warehouse_id: str
    lines: tuple[tuple[str, int], ...]  # (sku, quantity)

    def as_dict(self) -> dict[str, Any]:
        return {"shipment_id": self.shipment_id, "warehouse_id": self.warehouse_id,
                "lines": [{"sku": sku, "quantity": q} for sku, q in self.lines]}


def plan_shipments(source_id: str,
                   allocations: Iterable[tuple[str, str, int]]) -> list[ShipmentPlan]:
    """One shipment per warehouse from (sku, warehouse_id, quantity) allocations; the
    same SKU allocated twice to a warehouse is one shipment line. Sorted by warehouse."""
    by_warehouse: dict[str, dict[str, int]] = {}
    for sku, warehouse_id, quantity in allocations:
        lines = by_warehouse.setdefault(warehouse_id, {})
        lines[sku] = lines.get(sku, 0) + quantity
    return [ShipmentPlan(shipment_id=shipment_id_for(source_id, warehouse_id),
                         warehouse_id=warehouse_id, lines=tuple(sorted(lines.items())))
            for warehouse_id, lines in sorted(by_warehouse.items())]


class Shipment(Aggregate):
    @staticmethod
    def create_id(shipment_id: str) -> UUID:
        return natural_id("shipment", shipment_id)

    @classmethod
    def create(cls, plan: ShipmentPlan, source: str, source_id: str, region: str | None,
               at: datetime) -> "Shipment":
        """A shipment for `plan`; `source` is one of SOURCES ("exchange" and "repair" are
        an after-sales case's, `source_id` the case id), `region` the destination's (it
        decides the carriers' promised days)."""
        ensure(source in SOURCES, f"unknown shipment source {source!r}")
        if not plan.lines or any(q <= 0 for _, q in plan.lines):
            raise InvalidCommand("a shipment needs positive quantities", field="lines")
        return cls(shipment_id=plan.shipment_id, source=source, source_id=source_id,
                   warehouse_id=plan.warehouse_id, region=region,
                   lines=[{"sku": sku, "quantity": q} for sku, q in plan.lines], at=at)

    @event("ShipmentCreated")
    def __init__(self, shipment_id: str, source: str, source_id: str, warehouse_id: str,
                 region: str | None, lines: list[dict[str, Any]], at: datetime) -> None:
        self.shipment_id = shipment_id
        self.source = source
        self.source_id = source_id
        self.warehouse_id = warehouse_id
        self.region = region
        self.lines = [dict(line) for line in lines]
        self.status = "created"
        self.progress = RANK["created"]  # the furthest step on the ladder reached
        self.status_at = at
        self.carrier: str | None = None
        self.tracking_number: str | None = None
        self.dispatched_at: datetime | None = None
        self.carrier_events: dict[str, str] = {}  # carrier event id -> its status

    @property
    def carries_stock(self) -> bool:
        """Whether its goods were reserved from stock (a repair's are the customer's)."""
        return self.source != "repair"

    @property
    def items(self) -> int:
        return sum(line["quantity"] for line in self.lines)

    def _require(self, status: str, doing: str) -> None:
        if self.status != status:
            raise InvalidTransition(f"shipment {self.shipment_id} is {self.status}; it must "
                                    f"be {status} to be {doing}", status=self.status)

    def pick(self, at: datetime) -> None:
        """created -> picked."""
        self._require("created", "picked")
        self._picked(at=at)

    @event("ShipmentPicked")
    def _picked(self, at: datetime) -> None:
        self._advance("picked", at)

    def pack(self, at: datetime) -> None:
        """picked -> packed."""
        self._require("picked", "packed")
        self._packed(at=at)

    @event("ShipmentPacked")
    def _packed(self, at: datetime) -> None:
        self._advance("packed", at)

    def dispatch(self, choice: CarrierChoice, tracking_number: str, at: datetime) -> None:
        """packed -> dispatched: handed to `choice.carrier` under `tracking_number`; the
        quote, why it was chosen and the alternatives are recorded."""
        self._require("packed", "dispatched")
        if not tracking_number.strip():
            raise InvalidCommand("a tracking number is required", field="tracking_number")
        self._dispatched(carrier=choice.carrier, tracking_number=tracking_number.strip(),
                         fee_minor=choice.quote.fee_minor, days=choice.quote.days,
                         meets_promise=choice.quote.meets_promise, chosen_by=choice.chosen_by,
                         alternatives=[q.as_dict() for q in choice.alternatives], at=at)

    @event("ShipmentDispatched")
    def _dispatched(self, carrier: str, tracking_number: str, fee_minor: int, days: int,
                    meets_promise: bool, chosen_by: str, alternatives: list[dict[str, Any]],
                    at: datetime) -> None:
        self._advance("dispatched", at)
        self.carrier = carrier
        self.tracking_number = tracking_number
        self.dispatched_at = at

    def cancel(self, reason: str, at: datetime) -> None:
        """Before dispatch only (the goods are still in the warehouse)."""
        if self.progress >= RANK["dispatched"] or self.status == "cancelled":
            raise InvalidTransition(f"shipment {self.shipment_id} is {self.status}; only a "
                                    "shipment not yet dispatched can be cancelled",
                                    status=self.status)
        self._cancelled(reason=reason, at=at)

    @event("ShipmentCancelled")
    def _cancelled(self, reason: str, at: datetime) -> None:
        self.status = "cancelled"
        self.status_at = at

    def record_carrier_event(self, event_id: str, status: str, occurred_at: datetime,
                             location: str | None, received_at: datetime) -> str:
        """A tracking update. Returns "duplicate" (event id seen with this status: nothing
        recorded; with another status: EventIdReused),
        "late" (kept in history, status unchanged) or "applied" (status is now `status`).
        InvalidTransition before dispatch; InvalidCommand for an unknown status;
        ImplausibleTime unless `occurred_at` lies within a day of dispatch and receipt."""
        if status not in CARRIER_STATUSES:
            raise InvalidCommand(f"status must be one of {', '.join(CARRIER_STATUSES)}",
                                 field="status")
        if not event_id.strip():
            raise InvalidCommand("event_id must not be blank", field="event_id")
        if event_id in self.carrier_events:
            first = self.carrier_events[event_id]
            if first != status:
                raise EventIdReused(f"carrier event {event_id} was recorded as {first}, "
                                    f"not {status}", event_id=event_id, recorded=first)
            return DUPLICATE
        if self.progress < RANK["dispatched"] or self.status == "cancelled":
            raise InvalidTransition(f"shipment {self.shipment_id} has not been handed to a "
                                    "carrier", status=self.status)
        self._require_plausible(occurred_at, received_at)
        applied = self._moves_forward(status, occurred_at)
        self._carrier_event_recorded(event_id=event_id, status=status,
                                     occurred_at=occurred_at, location=location,
                                     applied=applied, received_at=received_at)
        return APPLIED if applied else LATE

    def _require_plausible(self, occurred_at: datetime, received_at: datetime) -> None:
        # Comparisons of aware datetimes never overflow, whatever the offsets.
        ensure(self.dispatched_at is not None, "a dispatched shipment has a dispatch time")
        earliest, latest = self.dispatched_at - CLOCK_SKEW, received_at + CLOCK_SKEW
        if not earliest <= occurred_at <= latest:
            raise ImplausibleTime(
                f"a carrier event for shipment {self.shipment_id} must have happened "
                f"between {earliest.isoformat()} and {latest.isoformat()}",
                occurred_at=occurred_at.isoformat(), earliest=earliest.isoformat(),
                latest=latest.isoformat())

    def _moves_forward(self, status: str, occurred_at: datetime) -> bool:
        if status == "exception":
            return self.status not in ("delivered", "exception") and \
                occurred_at >= self.status_at
        rank = RANK[status]
        return rank > self.progress or (
            self.status == "exception" and rank == self.progress and
            occurred_at >= self.status_at)

    @event("CarrierEventRecorded")
    def _carrier_event_recorded(self, event_id: str, status: str, occurred_at: datetime,
                                location: str | None, applied: bool,
                                received_at: datetime) -> None:
        self.carrier_events[event_id] = status
        if applied:
            self.status = status
            self.status_at = occurred_at
            if status != "exception":
                self.progress = RANK[status]

    def _advance(self, status: str, at: datetime) -> None:
        self.status = status
        self.progress = RANK[status]
        self.status_at = at


class TrackingNumber(Aggregate):
    """Index: (carrier, tracking number) -> shipment, for carrier events. A number used
    twice by one carrier collides on this stream."""

    @staticmethod
    def create_id(carrier: str, tracking_number: str) -> UUID:
        return natural_id("tracking", carrier, tracking_number.strip())

    @event("TrackingNumberAssigned")
    def __init__(self, carrier: str, tracking_number: str, shipment_id: str) -> None:
        self.carrier = carrier
        self.tracking_number = tracking_number.strip()
        self.shipment_id = shipment_id

