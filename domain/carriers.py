"""Carriers' rate cards, and the choice of a carrier for a shipment (pure).

A carrier's fee for a shipment is base_fee + per_item_fee × items; its delivery time to a
region is the days promised for that region, else its default days. The choice is the
cheapest carrier that meets the promised delivery time, else the fastest one (ties: the
cheaper, then the carrier code); the quotes of the other carriers are kept with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping, Sequence
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, Duplicate, InvalidCommand, NotFound
from domain.ids import natural_id

CHEAPEST_ON_TIME = "cheapest_on_time"
FASTEST = "fastest"
REQUESTED = "requested"


class NoCarrier(DomainError):
    code = "no_carrier"


@dataclass(frozen=True)
class RateCard:
    carrier: str  # the carrier's code, e.g. "SF"
    name: str
    base_fee_minor: int
    per_item_fee_minor: int
    default_days: int
    promised_days: Mapping[str, int] = field(default_factory=dict)  # region -> days

    def validate(self) -> None:
        if not self.carrier.strip() or not self.name.strip():
            raise InvalidCommand("a carrier needs a code and a name", field="carrier")
        if self.base_fee_minor < 0 or self.per_item_fee_minor < 0:
            raise InvalidCommand("fees must not be negative", field="base_fee")
        days = [self.default_days, *self.promised_days.values()]
        if any(d < 0 for d in days) or not all(r.strip() for r in self.promised_days):
            raise InvalidCommand("promised days must be regions with days >= 0",
                                 field="promised_days")

    def days_to(self, region: str | None) -> int:
        if region is None:
            return self.default_days
        return self.promised_days.get(region, self.default_days)

    def fee_for(self, items: int) -> int:
        return self.base_fee_minor + self.per_item_fee_minor * items

    def as_dict(self) -> dict[str, Any]:
        return {"carrier": self.carrier, "name": self.name,
                "base_fee_minor": self.base_fee_minor,
                "per_item_fee_minor": self.per_item_fee_minor,
                "default_days": self.default_days, "promised_days": dict(self.promised_days)}


@dataclass(frozen=True)
class Quote:
    carrier: str
    fee_minor: int
    days: int
    meets_promise: bool

    def as_dict(self) -> dict[str, Any]:
        return {"carrier": self.carrier, "fee_minor": self.fee_minor, "days": self.days,
                "meets_promise": self.meets_promise}


@dataclass(frozen=True)
class CarrierChoice:
    quote: Quote
    chosen_by: str  # cheapest_on_time, fastest, requested
    alternatives: tuple[Quote, ...] = ()

    @property
    def carrier(self) -> str:
        return self.quote.carrier


def quote(card: RateCard, region: str | None, items: int, promised_days: int) -> Quote:
    days = card.days_to(region)
    return Quote(carrier=card.carrier, fee_minor=card.fee_for(items), days=days,
                 meets_promise=days <= promised_days)


def choose_carrier(rate_cards: Sequence[RateCard], region: str | None, items: int,
                   promised_days: int) -> CarrierChoice:
    """The cheapest carrier on time (ties: faster, then code), else the fastest (ties:
    cheaper, then code). NoCarrier when there is no rate card at all."""
    if not rate_cards:
        raise NoCarrier("no carrier has a rate card; add one before dispatching")
    quotes = [quote(card, region, items, promised_days) for card in rate_cards]
    on_time = [q for q in quotes if q.meets_promise]
    if on_time:
        best, chosen_by = min(on_time, key=lambda q: (q.fee_minor, q.days, q.carrier)), \
            CHEAPEST_ON_TIME
    else:
        best, chosen_by = min(quotes, key=lambda q: (q.days, q.fee_minor, q.carrier)), FASTEST
    others = sorted((q for q in quotes if q is not best),
                    key=lambda q: (q.fee_minor, q.days, q.carrier))
    return CarrierChoice(quote=best, chosen_by=chosen_by, alternatives=tuple(others))


def requested_carrier(rate_cards: Sequence[RateCard], carrier: str, region: str | None,
                      items: int, promised_days: int) -> CarrierChoice:
    """The carrier the warehouse named, quoted from its card; no alternatives were
    considered. InvalidCommand (field carrier) if it has no rate card."""
    card = next((c for c in rate_cards if c.carrier == carrier), None)
    if card is None:
        raise InvalidCommand(f"carrier {carrier} has no rate card", field="carrier")
    return CarrierChoice(quote=quote(card, region, items, promised_days), chosen_by=REQUESTED)


class Carriers(Aggregate):
    """Every carrier's rate card, in one aggregate so a dispatch reads them all at once."""

    @staticmethod
    def create_id() -> UUID:
        return natural_id("carriers")

    @event("CarriersOpened")
    def __init__(self) -> None:
        self.cards: dict[str, dict[str, Any]] = {}  # carrier code -> RateCard.as_dict()

    def card(self, carrier: str) -> RateCard | None:
        raw = self.cards.get(carrier)
        return None if raw is None else RateCard(**raw)

    def rate_cards(self) -> list[RateCard]:
        return [RateCard(**self.cards[code]) for code in sorted(self.cards)]

    def add(self, card: RateCard, at: datetime) -> None:
        """A new carrier; Duplicate if its code exists, InvalidCommand on a bad card."""
        if card.carrier in self.cards:
            raise Duplicate(f"carrier {card.carrier} exists", carrier=card.carrier)
        card.validate()
        self._added(**card.as_dict(), at=at)

    @event("CarrierAdded")
    def _added(self, carrier: str, name: str, base_fee_minor: int, per_item_fee_minor: int,
               default_days: int, promised_days: dict[str, int], at: datetime) -> None:
        self._store(carrier, name, base_fee_minor, per_item_fee_minor, default_days,
                    promised_days)

    def change(self, card: RateCard, at: datetime) -> None:
        """Replace a carrier's rate card; NotFound if the carrier is unknown."""
        if card.carrier not in self.cards:
            raise NotFound(f"no carrier {card.carrier}")
        card.validate()
        self._changed(**card.as_dict(), at=at)

    @event("RateCardChanged")
    def _changed(self, carrier: str, name: str, base_fee_minor: int, per_item_fee_minor: int,
                 default_days: int, promised_days: dict[str, int], at: datetime) -> None:
        self._store(carrier, name, base_fee_minor, per_item_fee_minor, default_days,
                    promised_days)

    def _store(self, carrier: str, name: str, base_fee_minor: int, per_item_fee_minor: int,
               default_days: int, promised_days: dict[str, int]) -> None:
        self.cards[carrier] = {"carrier": carrier, "name": name,
                               "base_fee_minor": base_fee_minor,
                               "per_item_fee_minor": per_item_fee_minor,
                               "default_days": default_days,
                               "promised_days": dict(promised_days)}
