"""Fulfilment: shipments picked, packed and dispatched with a carrier chosen by rate card,
carrier tracking events, delivery.

A dispatch issues the stock its source reserved (the reservation reference is the order
id, the purchase order's or the after-sales case's), registers the tracking number and
tells the source order or purchase order, all in one save; a repair's shipment carries
the customer's own goods and issues no stock. A carrier event is idempotent by the carrier's event id: a repeat is answered
with the reply the first one got, and records nothing.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import uuid4

from sqlalchemy import select

from commands.catalog import StockService
from domain.aftersales import case_shipment_source
from domain.carriers import (CarrierChoice, Carriers, NoCarrier, RateCard, choose_carrier,
                             requested_carrier)
from domain.errors import Duplicate, NotFound
from domain.fulfilment import APPLIED, DUPLICATE, Shipment, TrackingNumber
from domain.orders import Order
from domain.purchasing import PurchaseOrder, reservation_reference
from domain.stock import StockItem


class FulfilmentService(StockService):
    """Shipments and carriers."""

    # -- carriers and their rate cards ---------------------------------------------

    def add_carrier(self, card: RateCard) -> dict[str, Any]:
        """A new carrier's rate card; 409 duplicate if the carrier exists (a new card for
        an existing carrier is `change_rate_card`)."""
        carriers = self.find(Carriers.create_id()) or Carriers()
        carriers.add(card, self.clock())
        return {**rate_card_view(card, self.settings.currency),
                "position": self.record(carriers)}

    def change_rate_card(self, card: RateCard) -> dict[str, Any]:
        """Replace an existing carrier's rate card; later dispatches quote from it, past
        dispatches keep the quote they recorded."""
        carriers = self.find(Carriers.create_id())
        if carriers is None or carriers.card(card.carrier) is None:
            raise NotFound(f"carrier {card.carrier} not found", carrier=card.carrier)
        carriers.change(card, self.clock())
        return {**rate_card_view(card, self.settings.currency),
                "position": self.record(carriers)}

    def rate_cards(self) -> list[RateCard]:
        carriers = self.find(Carriers.create_id())
        return carriers.rate_cards() if carriers else []

    # -- the warehouse's steps -------------------------------------------------------

    def shipment(self, shipment_id: str) -> Shipment:
        return self.load(Shipment.create_id(shipment_id), f"shipment {shipment_id}",
                         shipment_id=shipment_id)

    def pick_shipment(self, shipment_id: str) -> dict[str, Any]:
        shipment = self.shipment(shipment_id)
        shipment.pick(self.clock())
        return self._shipment_reply(shipment, None, self.record(shipment))

    def pack_shipment(self, shipment_id: str) -> dict[str, Any]:
        shipment = self.shipment(shipment_id)
        shipment.pack(self.clock())
        return self._shipment_reply(shipment, None, self.record(shipment))

    def dispatch_shipment(self, shipment_id: str, carrier: str | None = None,
                          tracking_number: str | None = None) -> dict[str, Any]:
        """Hand a packed shipment to `carrier` (default: the best by rate card) under
        `tracking_number` (default: a new one). In one save: the dispatch with the carrier
        choice, the stock issued, the tracking number registered, the source told."""
        at = self.clock()
        shipment = self.shipment(shipment_id)
        choice = self._carrier_for(shipment, carrier)
        number = tracking_number or new_tracking_number()
        if self.exists(TrackingNumber.create_id(choice.carrier, number)):
            raise Duplicate(f"carrier {choice.carrier} already has tracking number {number}",
                            carrier=choice.carrier, tracking_number=number)
        shipment.dispatch(choice, number, at)
        # The source first: whatever state it is in that refuses a dispatch is a state
        # conflict (409), said before the stock could find the reservation released.
        source = self._source(shipment)
        if isinstance(source, Order):
            source.record_dispatch(shipment_id, choice.carrier, number, at)
        elif source is not None:
            source.record_dispatch(shipment_id, at)
        items = self._issue_stock(shipment)
        index = TrackingNumber(choice.carrier, number, shipment_id)
        return self._shipment_reply(
            shipment, choice, self.record(shipment, index, *filter(None, [source]), *items))

    def _carrier_for(self, shipment: Shipment, carrier: str | None) -> CarrierChoice:
        cards = self.rate_cards()
        if carrier is None:
            return choose_carrier(cards, shipment.region, shipment.items,
                                  self.settings.promised_days)
        if not any(card.carrier == carrier for card in cards):
            # A well-formed request naming a carrier we have no card for: a conflict with
            # the configuration, not a malformed request.
            raise NoCarrier(f"carrier {carrier} has no rate card", carrier=carrier)
        return requested_carrier(cards, carrier, shipment.region, shipment.items,
                                 self.settings.promised_days)

    def _issue_stock(self, shipment: Shipment) -> list[StockItem]:
        """The shipment's goods leave the warehouse against its source's reservation."""
        if not shipment.carries_stock:
            return []
        reference = {"order": shipment.source_id,
                     "purchase_order": reservation_reference(shipment.source_id),
                     "exchange": case_shipment_source(shipment.source_id)}[shipment.source]
        items = []
        for line in shipment.lines:
            item = self.stock_item(line["sku"], shipment.warehouse_id)
            item.issue(line["quantity"], reference)
            items.append(item)
        return items

    def _source(self, shipment: Shipment) -> Order | PurchaseOrder | None:
        """The order or purchase order a shipment serves (None for an after-sales case's:
        the case moved on when it shipped)."""
        if shipment.source == "order":
            return self.load(Order.create_id(shipment.source_id),
                             f"order {shipment.source_id}", order_id=shipment.source_id)
        if shipment.source == "purchase_order":
            return self.load(PurchaseOrder.create_id(shipment.source_id),
                             f"purchase order {shipment.source_id}",
                             purchase_order_id=shipment.source_id)
        return None

    def _shipment_reply(self, shipment: Shipment, choice: CarrierChoice | None,
                        position: int | None) -> dict[str, Any]:
        return {**shipment_view(shipment), "currency": self.settings.currency,
                "carrier_choice": choice_view(choice) if choice else None,
                "position": position}

    # -- the carrier's tracking events -------------------------------------------------

    def record_carrier_event(self, carrier: str, event_id: str, tracking_number: str,
                             status: str, occurred_at: datetime,
                             location: str | None = None) -> dict[str, Any]:
        """A tracking update from `carrier`. A repeat of an event id gets the first reply
        and records nothing; a late event is kept in the history and changes nothing; a
        delivery tells the order (delivered once every shipment is), in the same save."""
        if not any(card.carrier == carrier for card in self.rate_cards()):
            raise NotFound(f"carrier {carrier} not found", carrier=carrier)
        index = self.find(TrackingNumber.create_id(carrier, tracking_number))
        if index is None:
            raise NotFound(f"carrier {carrier} has no tracking number {tracking_number}",
                           carrier=carrier, tracking_number=tracking_number)
        shipment = self.shipment(index.shipment_id)
        result = shipment.record_carrier_event(event_id, status, occurred_at, location,
                                               self.clock())
        if result == DUPLICATE:
            return self._first_reply(shipment, event_id)
        touched: list[Any] = [shipment]
        if result == APPLIED and shipment.status == "delivered" and \
                shipment.source == "order":
            order = self._source(shipment)
            order.record_delivery(shipment.shipment_id, occurred_at)
            touched.append(order)
        recorded = shipment.pending_events[0]
        return carrier_event_reply(shipment, recorded, self.record(*touched))

    def _first_reply(self, shipment: Shipment, event_id: str) -> dict[str, Any]:
        """The reply the first delivery of carrier event `event_id` got."""
        self.read_committed(shipment.id)
        recorded = next(e for e in self.events.get(shipment.id)
                        if isinstance(e, Shipment.CarrierEventRecorded)
                        and e.event_id == event_id)
        events = self.recorder.events_record_cls.__table__  # type: ignore[attr-defined]
        with self.datastore.transaction(commit=False) as session:
            position = session.connection().execute(
                select(events.c.id).where(events.c.originator_id == shipment.id,
                                          events.c.originator_version ==
                                          recorded.originator_version)).scalar_one()
        return carrier_event_reply(shipment, recorded, position)


def new_tracking_number() -> str:
    return "FX" + uuid4().hex[:16].upper()


def rate_card_view(card: RateCard, currency: str) -> dict[str, Any]:
    return {"carrier": card.carrier, "name": card.name,
            "base_fee": {"amount": card.base_fee_minor, "currency": currency},
            "per_item_fee": {"amount": card.per_item_fee_minor, "currency": currency},
            "promised_days": dict(card.promised_days), "default_days": card.default_days}


def shipment_view(s: Shipment) -> dict[str, Any]:
    return {"shipment_id": s.shipment_id, "source": s.source,
            "order_id": s.source_id if s.source == "order" else None,
            "purchase_order_id": s.source_id if s.source == "purchase_order" else None,
            "case_id": s.source_id if s.source in ("exchange", "repair") else None,
            "warehouse_id": s.warehouse_id, "region": s.region, "status": s.status,
            "carrier": s.carrier, "tracking_number": s.tracking_number,
            "lines": [{"sku": line["sku"], "quantity": line["quantity"]} for line in s.lines]}


def choice_view(choice: CarrierChoice) -> dict[str, Any]:
    return {"carrier": choice.carrier, "fee": choice.quote.fee_minor,
            "days": choice.quote.days, "meets_promise": choice.quote.meets_promise,
            "chosen_by": choice.chosen_by,
            "alternatives": [{"carrier": q.carrier, "fee": q.fee_minor, "days": q.days,
                              "meets_promise": q.meets_promise}
                             for q in choice.alternatives]}


def carrier_event_reply(shipment: Shipment, recorded: Any,
                        position: int | None) -> dict[str, Any]:
    """Built from the recorded event alone, so a repeat is answered byte for byte alike."""
    return {"carrier": shipment.carrier, "tracking_number": shipment.tracking_number,
            "shipment_id": shipment.shipment_id, "event_id": recorded.event_id,
            "status": recorded.status, "occurred_at": recorded.occurred_at.isoformat(),
            "location": recorded.location,
            "result": "applied" if recorded.applied else "late", "position": position}
