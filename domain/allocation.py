"""Which warehouses a sale is taken from: the allocation planner (pure).

For each line, warehouses in the customer's region come first, then the ones with most
available, ties by warehouse id; a line is split across warehouses when one cannot cover
it, and whatever no warehouse can cover is left uncovered (to be backordered or refused).
The plan only proposes: the stock items still check availability when reserving.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

from domain.checks import ensure
from domain.errors import InsufficientStock


@dataclass(frozen=True)
class StockCandidate:
    warehouse_id: str
    region: str
    available: int


@dataclass(frozen=True)
class LinePlan:
    sku: str
    requested: int
    available: int  # everything the candidates had for this line when it was planned
    allocations: tuple[tuple[str, int], ...]  # (warehouse_id, quantity), in pick order
    uncovered: int

    @property
    def allocated(self) -> int:
        return sum(quantity for _, quantity in self.allocations)


def plan_line(sku: str, quantity: int, region: str,
              candidates: Sequence[StockCandidate]) -> LinePlan:
    """Allocate `quantity` of `sku` from `candidates`; allocated + uncovered = quantity."""
    ensure(quantity > 0, f"cannot allocate {quantity} of {sku}")
    usable = sorted((c for c in candidates if c.available > 0),
                    key=lambda c: (c.region != region, -c.available, c.warehouse_id))
    allocations: list[tuple[str, int]] = []
    wanted = quantity
    for candidate in usable:
        if wanted == 0:
            break
        take = min(wanted, candidate.available)
        allocations.append((candidate.warehouse_id, take))
        wanted -= take
    return LinePlan(sku=sku, requested=quantity,
                    available=sum(c.available for c in usable),
                    allocations=tuple(allocations), uncovered=wanted)


def plan_allocation(lines: Sequence[tuple[str, int]], region: str,
                    candidates: Mapping[str, Sequence[StockCandidate]]) -> list[LinePlan]:
    """One plan per (sku, quantity) line, in line order. A SKU on two lines draws on the
    same stock: the earlier line is served first."""
    left: dict[tuple[str, str], int] = {}
    plans = []
    for sku, quantity in lines:
        pool = [StockCandidate(c.warehouse_id, c.region,
                               left.get((sku, c.warehouse_id), c.available))
                for c in candidates.get(sku, ())]
        plan = plan_line(sku, quantity, region, pool)
        for candidate in pool:
            left[(sku, candidate.warehouse_id)] = candidate.available
        for warehouse_id, taken in plan.allocations:
            left[(sku, warehouse_id)] -= taken
        plans.append(plan)
    return plans


def shortages(plans: Sequence[LinePlan]) -> list[dict[str, object]]:
    """The lines that cannot be covered: {sku, requested, available} each."""
    return [{"sku": p.sku, "requested": p.requested, "available": p.available}
            for p in plans if p.uncovered]


def require_covered(plans: Sequence[LinePlan]) -> None:
    """InsufficientStock (details: the first short line's sku, requested, available, and
    every short line under `lines`) unless every line is fully allocated."""
    short = shortages(plans)
    if short:
        first = short[0]
        raise InsufficientStock(
            f"{first['sku']}: {first['requested']} wanted, {first['available']} available",
            sku=first["sku"], requested=first["requested"], available=first["available"],
            lines=short)
