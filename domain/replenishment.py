"""Replenishment: how long a SKU takes to restock and how much buffer it keeps, and the
arithmetic that turns recent demand into a reorder point and a suggested quantity.

A SKU's policy is its own small aggregate (id derived from the SKU) rather than a part of
Product: the catalog decides what is sold and at what price, the policy only how it is
restocked, so neither command ever contends with the other. A SKU without a policy uses
the store's defaults (settings `FENXIAO_LEAD_TIME_DAYS`, `FENXIAO_SAFETY_STOCK`).

The forecast (units per day, per SKU and warehouse) is an exponentially weighted mean of
the units dispatched on each of the last `window_days` whole days before today: the day
`k` days ago weighs 2^-((k-1)/half_life_days), so yesterday weighs 1 and a day
`half_life_days` older weighs half as much. Days without dispatches count as zero. Then

    reorder_point = ceil(daily_demand × lead_time_days) + safety_stock
    order_up_to   = reorder_point + ceil(daily_demand × lead_time_days)
    suggested     = order_up_to − (available − backordered)
                    when available − backordered < reorder_point, else 0

that is, reorder when what is available would not cover the demand until new stock
arrives plus the buffer, and order enough to last one more lead time after that.
Units that customers wait for on backorder are promised already: they count against what
is available. A SKU's backorders are not tied to a warehouse (stock arriving in any of
them fills them), so they are shared among the SKU's warehouses in proportion to their
forecast demand (evenly when there is none), by the largest remainder. The
reorder point and the suggestion are computed from the forecast as reported (rounded
half-up to 0.01 unit), so anyone can check them from the report's own figures.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal
from typing import Mapping, Sequence
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import InvalidCommand
from domain.ids import natural_id

MAX_LEAD_TIME_DAYS = 365
MAX_SAFETY_STOCK = 10_000_000
DEMAND_PLACES = Decimal("0.01")


def check_policy(lead_time_days: int, safety_stock: int) -> None:
    if type(lead_time_days) is not int or not 0 <= lead_time_days <= MAX_LEAD_TIME_DAYS:
        raise InvalidCommand(f"lead_time_days must be 0-{MAX_LEAD_TIME_DAYS}",
                             field="lead_time_days")
    if type(safety_stock) is not int or not 0 <= safety_stock <= MAX_SAFETY_STOCK:
        raise InvalidCommand(f"safety_stock must be 0-{MAX_SAFETY_STOCK}",
                             field="safety_stock")


class ReplenishmentPolicy(Aggregate):
    """One SKU's lead time (days from ordering stock to having it) and safety stock
    (units kept beyond the expected demand), the same for every warehouse."""

    @staticmethod
    def create_id(sku: str) -> UUID:
        return natural_id("replenishment_policy", sku)

    @classmethod
    def set_up(cls, sku: str, lead_time_days: int, safety_stock: int,
               at: datetime) -> "ReplenishmentPolicy":
        check_policy(lead_time_days, safety_stock)
        return cls(sku=sku, lead_time_days=lead_time_days, safety_stock=safety_stock, at=at)

    @event("ReplenishmentPolicySet")
    def __init__(self, sku: str, lead_time_days: int, safety_stock: int,
                 at: datetime) -> None:
        self.sku = sku
        self.lead_time_days = lead_time_days
        self.safety_stock = safety_stock

    def change(self, lead_time_days: int, safety_stock: int, at: datetime) -> bool:
        """Record new terms; False (nothing recorded) when they are the ones in force."""
        check_policy(lead_time_days, safety_stock)
        if (lead_time_days, safety_stock) == (self.lead_time_days, self.safety_stock):
            return False
        self._changed(sku=self.sku, lead_time_days=lead_time_days, safety_stock=safety_stock,
                      at=at)
        return True

    @event("ReplenishmentPolicyChanged")
    def _changed(self, sku: str, lead_time_days: int, safety_stock: int,
                 at: datetime) -> None:
        self.lead_time_days = lead_time_days
        self.safety_stock = safety_stock


def daily_demand(units_by_days_ago: Mapping[int, int], half_life_days: int,
                 window_days: int) -> Decimal:
    """The weighted mean of units per day over days 1..window_days ago (see above),
    rounded half-up to 0.01. Days outside the window are ignored."""
    assert half_life_days > 0 and window_days > 0, (half_life_days, window_days)
    weights = [2 ** (-(k - 1) / half_life_days) for k in range(1, window_days + 1)]
    weighted = sum(w * units_by_days_ago.get(k, 0) for k, w in enumerate(weights, 1))
    mean = Decimal(weighted / sum(weights))
    return mean.quantize(DEMAND_PLACES, rounding=ROUND_HALF_UP)


def share(units: int, weights: Sequence[Decimal]) -> list[int]:
    """`units` shared in proportion to `weights` (evenly when they are all zero), each
    share rounded down, then the units left over one each to the largest remainders
    (the first of equal ones): the shares add up to `units` exactly."""
    if not weights:
        return []
    total = sum(weights)
    if total <= 0:
        weights, total = [Decimal(1)] * len(weights), Decimal(len(weights))
    exact = [units * w / total for w in weights]
    shares = [int(x) for x in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: (shares[i] - exact[i], i))
    for i in by_remainder[:units - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(frozen=True)
class Suggestion:
    reorder_point: int
    order_up_to: int
    suggested_quantity: int

    @property
    def low(self) -> bool:
        """Available below the reorder point: what the low-stock list shows."""
        return self.suggested_quantity > 0


def suggest(available: int, demand: Decimal, lead_time_days: int,
            safety_stock: int) -> Suggestion:
    lead_time_demand = int((demand * lead_time_days).to_integral_value(ROUND_CEILING))
    reorder_point = lead_time_demand + safety_stock
    order_up_to = reorder_point + lead_time_demand
    suggested = order_up_to - available if available < reorder_point else 0
    return Suggestion(reorder_point, order_up_to, suggested)
