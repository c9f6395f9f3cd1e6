"""Fulfilment: carriers and their rate cards, the warehouse's steps, the carrier's
tracking events."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commands.messages.base import Command, FrozenMap
from domain.carriers import RateCard


@dataclass(frozen=True)
class AddCarrier(Command):
    """A rate card's terms as fields rather than a RateCard: the card holds its promised
    days in a dict, which would make the command unhashable."""

    status = 201
    carrier: str
    carrier_name: str  # not `name`: that is the command's own name
    base_fee_minor: int
    per_item_fee_minor: int
    default_days: int
    promised_days: FrozenMap = FrozenMap()  # region -> days

    def handle(self, app: Any) -> dict[str, Any]:
        return app.add_carrier(RateCard(
            carrier=self.carrier, name=self.carrier_name, base_fee_minor=self.base_fee_minor,
            per_item_fee_minor=self.per_item_fee_minor, default_days=self.default_days,
            promised_days=dict(self.promised_days)))


@dataclass(frozen=True)
class PickShipment(Command):
    shipment_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.pick_shipment(self.shipment_id)


@dataclass(frozen=True)
class PackShipment(Command):
    shipment_id: str

    def handle(self, app: Any) -> dict[str, Any]:
        return app.pack_shipment(self.shipment_id)


@dataclass(frozen=True)
class DispatchShipment(Command):
    shipment_id: str
    carrier: str | None = None  # None: the best by rate card
    tracking_number: str | None = None  # None: a new one

    def handle(self, app: Any) -> dict[str, Any]:
        return app.dispatch_shipment(self.shipment_id, carrier=self.carrier,
                                     tracking_number=self.tracking_number)


@dataclass(frozen=True)
class RecordCarrierEvent(Command):
    carrier: str
    event_id: str
    tracking_number: str
    carrier_status: str  # not `status`: that is the command's HTTP status
    occurred_at: datetime
    location: str | None = None

    def handle(self, app: Any) -> dict[str, Any]:
        return app.record_carrier_event(
            self.carrier, event_id=self.event_id, tracking_number=self.tracking_number,
            status=self.carrier_status, occurred_at=self.occurred_at, location=self.location)
