"""The commission of one paid order line, from accrual to maturity and reversals.

The split (who earns what, at which rule) is decided once, when the line is paid, and kept
here; later refunds reverse each level in proportion to the refunded share of the line's
net, rounded half-up, and the refund that completes the line reverses exactly what is left.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, InvalidCommand, InvalidTransition
from domain.ids import natural_id


class RefundExceedsPaid(DomainError):
    code = "refund_exceeds_paid"


def half_up_share(amount_minor: int, numerator: int, denominator: int) -> int:
    """amount × numerator / denominator, rounded half-up, in integers only."""
    return (2 * amount_minor * numerator + denominator) // (2 * denominator)


class LineCommission(Aggregate):
    @staticmethod
    def create_id(order_id: str, line_no: int) -> UUID:
        return natural_id("line_commission", order_id, str(line_no))

    @classmethod
    def accrue(cls, order_id: str, line_no: int, sku: str, net_minor: int, currency: str,
               accruals: list[dict[str, Any]], forfeits: list[dict[str, Any]],
               at: datetime) -> "LineCommission":
        if net_minor <= 0:
            raise InvalidCommand("a commissionable line needs a positive net", field="net")
        levels = [a["level"] for a in accruals]
        # Compliance: at most two paid levels, each at most once, never above the net.
        assert set(levels) <= {1, 2} and len(levels) == len(set(levels)), levels
        assert sum(a["amount_minor"] for a in accruals) <= net_minor
        return cls(order_id=order_id, line_no=line_no, sku=sku, net_minor=net_minor,
                   currency=currency, accruals=accruals, forfeits=forfeits, at=at)

    @event("CommissionAccrued")
    def __init__(self, order_id: str, line_no: int, sku: str, net_minor: int, currency: str,
                 accruals: list[dict[str, Any]], forfeits: list[dict[str, Any]],
                 at: datetime) -> None:
        self.order_id = order_id
        self.line_no = line_no
        self.sku = sku
        self.net_minor = net_minor
        self.currency = currency
        self.accruals = accruals
        self.forfeits = forfeits
        self.matured = False
        self.refunded_minor = 0
        self.reversed_by_level = {a["level"]: 0 for a in accruals}

    def outstanding(self, level: int) -> int:
        accrued = next(a["amount_minor"] for a in self.accruals if a["level"] == level)
        return accrued - self.reversed_by_level[level]

    def mature(self, at: datetime) -> list[dict[str, Any]]:
        """Move what is still pending to available; returns the per-level amounts moved."""
        if self.matured:
            raise InvalidTransition(f"commission of {self.order_id} line {self.line_no} "
                                    "has already matured")
        moved = [{"level": a["level"], "distributor_id": a["distributor_id"],
                  "amount_minor": self.outstanding(a["level"])} for a in self.accruals]
        self._matured(moved=[m for m in moved if m["amount_minor"]], at=at)
        return [m for m in moved if m["amount_minor"]]

    @event("CommissionMatured")
    def _matured(self, moved: list[dict[str, Any]], at: datetime) -> None:
        self.matured = True

    def reverse(self, refunded_total_minor: int, at: datetime) -> list[dict[str, Any]]:
        """The line has now been refunded `refunded_total_minor` in all; reverse each
        level's share of that which has not been reversed yet."""
        if refunded_total_minor > self.net_minor:
            raise RefundExceedsPaid(
                f"line {self.line_no} of {self.order_id} was paid {self.net_minor}; "
                f"refunds cannot total {refunded_total_minor}",
                paid=self.net_minor, refunded=refunded_total_minor)
        if refunded_total_minor <= self.refunded_minor:
            raise InvalidCommand("the refunded total must grow with each refund",
                                 field="amount")
        source = "available" if self.matured else "pending"
        reversals = []
        for a in self.accruals:
            target = half_up_share(a["amount_minor"], refunded_total_minor, self.net_minor)
            amount = target - self.reversed_by_level[a["level"]]
            if amount:
                reversals.append({"level": a["level"], "distributor_id": a["distributor_id"],
                                  "amount_minor": amount, "source": source})
        self._reversed(refunded_total_minor=refunded_total_minor, reversals=reversals, at=at)
        return reversals

    @event("CommissionReversed")
    def _reversed(self, refunded_total_minor: int, reversals: list[dict[str, Any]],
                  at: datetime) -> None:
        self.refunded_minor = refunded_total_minor
        for r in reversals:
            self.reversed_by_level[r["level"]] += r["amount_minor"]
