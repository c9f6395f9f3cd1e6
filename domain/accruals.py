"""The commission of one paid order line, from accrual to maturity and reversals.

The split (who earns what, at which rule) is decided once, when the line is paid, and kept
here; later refunds reverse each level in proportion to the refunded share of the line's
net, rounded half-up, and the refund that completes the line reverses exactly what is left.

Maturity and reversals may name their cause (the event or rule that asked for them): a
repeat with a cause already applied records nothing and answers None ("already done"), so
a process manager that delivers its event twice never posts twice and never loops on an
error. Without a cause a repeat is refused as before.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.commissions import (DEFAULT_TERMS, Beneficiary, PaidLine, RuleTerms,
                                check_compliance)
from domain.distributors import normalize_phone
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
        check_compliance(accruals, net_minor)  # checked again here: this is what pays
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
        self.matured_cause: str | None = None
        self.refunded_minor = 0
        self.reversed_by_level = {a["level"]: 0 for a in accruals}
        self.reversal_causes: list[str] = []

    def outstanding(self, level: int) -> int:
        accrued = next(a["amount_minor"] for a in self.accruals if a["level"] == level)
        return accrued - self.reversed_by_level[level]

    def mature(self, at: datetime, cause: str | None = None) -> list[dict[str, Any]] | None:
        """Move what is still pending to available; returns the per-level amounts moved,
        or None when `cause` already matured it (nothing recorded)."""
        if self.matured:
            if cause is not None and cause == self.matured_cause:
                return None
            raise InvalidTransition(f"commission of {self.order_id} line {self.line_no} "
                                    "has already matured")
        moved = [{"level": a["level"], "distributor_id": a["distributor_id"],
                  "amount_minor": self.outstanding(a["level"])} for a in self.accruals]
        moved = [m for m in moved if m["amount_minor"]]
        self._matured(moved=moved, at=at, cause=cause)
        return moved

    class CommissionMatured(Aggregate.Event):
        """Version 2 names its cause; version 1 events (no cause) read as cause None."""

        moved: list[dict[str, Any]]
        at: datetime
        cause: str | None
        class_version = 2

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["cause"] = None

    @event(CommissionMatured)
    def _matured(self, moved: list[dict[str, Any]], at: datetime,
                 cause: str | None) -> None:
        self.matured = True
        self.matured_cause = cause

    def reverse(self, refunded_total_minor: int, at: datetime, cause: str | None = None,
                refund_reference: str | None = None) -> list[dict[str, Any]] | None:
        """The line has now been refunded `refunded_total_minor` in all; reverse each
        level's share of that which has not been reversed yet. None when `cause` was
        already applied (nothing recorded). `refund_reference` names the refund that asked
        for it (kept so each commission entry can say which refund reversed how much)."""
        if cause is not None and cause in self.reversal_causes:
            return None
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
        self._reversed(refunded_total_minor=refunded_total_minor, reversals=reversals, at=at,
                       cause=cause, refund_reference=refund_reference)
        return reversals

    def reverse_rest(self, at: datetime, cause: str) -> list[dict[str, Any]] | None:
        """Reverse all that is left, as a refund of the whole line would (a cancellation
        after payment). None when nothing is left or `cause` was already applied."""
        if cause in self.reversal_causes or self.refunded_minor >= self.net_minor:
            return None
        return self.reverse(self.net_minor, at, cause)

    class CommissionReversed(Aggregate.Event):
        """Version 2 names its cause, version 3 the refund reference behind it (None for
        a cancellation); older events read as None."""

        refunded_total_minor: int
        reversals: list[dict[str, Any]]
        at: datetime
        cause: str | None
        refund_reference: str | None
        class_version = 3

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["cause"] = None

        @staticmethod
        def upcast_v2_v3(state: dict[str, Any]) -> None:
            state["refund_reference"] = None

    @event(CommissionReversed)
    def _reversed(self, refunded_total_minor: int, reversals: list[dict[str, Any]],
                  at: datetime, cause: str | None, refund_reference: str | None) -> None:
        self.refunded_minor = refunded_total_minor
        for r in reversals:
            self.reversed_by_level[r["level"]] += r["amount_minor"]
        if cause is not None:
            self.reversal_causes.append(cause)


@dataclass(frozen=True)
class AccrualBasis:
    """What the commission of a paid order is computed from, as it stood at payment:
    the paid lines, the seller and its upline with their status then, and the rule terms
    per SKU then. Recorded by the order at payment, so a later rule change, suspension or
    re-parenting never alters the commission of an order already paid."""

    order_id: str
    lines: tuple[PaidLine, ...]
    seller: Beneficiary
    upline: Beneficiary | None
    rules: Mapping[str, RuleTerms] = field(default_factory=dict)
    default_rule: RuleTerms = DEFAULT_TERMS
    self_purchase: bool = False

    def rule_for(self, sku: str) -> RuleTerms:
        return self.rules.get(sku, self.default_rule)

    @classmethod
    def from_recorded(cls, recorded: Mapping[str, Any]) -> "AccrualBasis":
        """From the plain data an order records at payment (OrderPaid's
        `commission_basis`: order_id, currency, lines [{line_no, sku, quantity,
        net_minor}], seller and upline {distributor_id, status, upline_id}, rules
        {sku: RuleTerms fields}, default_rule, self_purchase)."""
        order_id, currency = recorded["order_id"], recorded["currency"]
        upline = recorded.get("upline")
        default = recorded.get("default_rule")
        return cls(
            order_id=order_id,
            lines=tuple(PaidLine(order_id=order_id, line_no=x["line_no"], sku=x["sku"],
                                 quantity=x["quantity"], net_minor=x["net_minor"],
                                 currency=currency) for x in recorded["lines"]),
            seller=_beneficiary(recorded["seller"]),
            upline=_beneficiary(upline) if upline else None,
            rules={sku: RuleTerms(**terms) for sku, terms in recorded["rules"].items()},
            default_rule=RuleTerms(**default) if default else DEFAULT_TERMS,
            self_purchase=bool(recorded.get("self_purchase")))


def _beneficiary(party: Mapping[str, Any]) -> Beneficiary:
    return Beneficiary(distributor_id=party["distributor_id"], status=party["status"],
                       upline_id=party.get("upline_id"))


def is_self_purchase(customer_id: str, customer_phone: str | None, seller_id: str,
                     seller_phone: str | None) -> bool:
    """A distributor buying through its own attribution: the order's customer id is the
    seller's distributor id (an integration that uses one id for both), or the order's
    phone is the seller's own (both normalised; a number that does not normalise matches
    nothing)."""
    if customer_id == seller_id:
        return True
    customer, seller = _normal_phone(customer_phone), _normal_phone(seller_phone)
    return customer is not None and customer == seller


def _normal_phone(phone: str | None) -> str | None:
    try:
        return normalize_phone(phone) if phone else None
    except DomainError:
        return None
