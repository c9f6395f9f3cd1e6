"""Commission rules and the split of a paid line's commission over at most two levels.

Compliance: three or more paid levels is a pyramid scheme under Chinese law. Level 1 goes
to the distributor the order is attributed to, level 2 to that distributor's upline, and
nobody above ever earns anything; `split_commission` is where that is decided, and it has
no way to name a third beneficiary.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, InvalidCommand
from domain.ids import natural_id

BP_PER_WHOLE = 10_000
KINDS = ("rate", "fixed")


class RuleExceedsNet(DomainError):
    code = "rule_exceeds_net"


# Raised explicitly, unlike `assert`, so `python -O` cannot switch the cap off.
class CompliancePolicyViolation(DomainError):
    """A split that would pay a third level, a level twice, or level 2 to anyone but the
    seller's own upline: a pyramid under Chinese law, refused whoever asks."""

    code = "commission_levels_exceeded"


class CommissionExceedsNet(CompliancePolicyViolation):
    code = "commission_exceeds_net"


def check_compliance(accruals: list[dict[str, Any]], net_minor: int) -> None:
    """At most two paid levels, each at most once, together never above the net."""
    levels = [a["level"] for a in accruals]
    if not set(levels) <= {1, 2} or len(levels) != len(set(levels)):
        raise CompliancePolicyViolation(
            f"commission may be paid on levels 1 and 2, once each, not on {levels}",
            levels=levels)
    total = sum(a["amount_minor"] for a in accruals)
    if total > net_minor:
        raise CommissionExceedsNet(f"commission of {total} exceeds the line's net "
                                   f"{net_minor}", total=total, net=net_minor)


@dataclass(frozen=True)
class RuleTerms:
    kind: str  # "rate": level1/level2 in basis points; "fixed": minor units per unit sold
    level1: int
    level2: int
    version: int
    sku: str | None = None


DEFAULT_TERMS = RuleTerms(kind="rate", level1=1000, level2=500, version=0)


class CommissionRules(Aggregate):
    """Every rule in force; each change is a new version, recorded in later accruals."""

    @staticmethod
    def create_id() -> UUID:
        return natural_id("commission_rules")

    @event("CommissionRulesOpened")
    def __init__(self) -> None:
        self.default = DEFAULT_TERMS
        self.by_sku: dict[str, RuleTerms] = {}
        self.rules_version = 0  # not "version": that name is the aggregate's own

    def rule_for(self, sku: str | None) -> RuleTerms:
        return self.by_sku.get(sku, self.default) if sku else self.default

    def set_rule(self, sku: str | None, kind: str, level1: int, level2: int,
                 unit_price_minor: int | None) -> None:
        if kind not in KINDS:
            raise InvalidCommand(f"kind must be one of {', '.join(KINDS)}", field="kind")
        if level1 < 0 or level2 < 0:
            raise InvalidCommand("commission levels cannot be negative", field="level1")
        if kind == "rate" and level1 + level2 > BP_PER_WHOLE:
            raise RuleExceedsNet(f"{level1} + {level2} bp is more than 100 % of a line",
                                 level1=level1, level2=level2)
        if kind == "fixed" and unit_price_minor is not None and \
                level1 + level2 > unit_price_minor:
            raise RuleExceedsNet(f"{level1} + {level2} per unit is more than the unit "
                                 f"price {unit_price_minor}", level1=level1, level2=level2,
                                 unit_price=unit_price_minor)
        self._rule_set(sku=sku, kind=kind, level1=level1, level2=level2,
                       version=self.rules_version + 1)

    @event("CommissionRuleSet")
    def _rule_set(self, sku: str | None, kind: str, level1: int, level2: int,
                  version: int) -> None:
        terms = RuleTerms(kind=kind, level1=level1, level2=level2, version=version, sku=sku)
        if sku is None:
            self.default = terms
        else:
            self.by_sku[sku] = terms
        self.rules_version = version


@dataclass(frozen=True)
class PaidLine:
    order_id: str
    line_no: int
    sku: str
    quantity: int
    net_minor: int
    currency: str


@dataclass(frozen=True)
class Beneficiary:
    distributor_id: str
    status: str
    upline_id: str | None


@dataclass(frozen=True)
class Accrual:
    level: int
    distributor_id: str
    sku: str
    order_id: str
    line_no: int
    rule_version: int
    rule_kind: str
    rate_bp: int | None
    fixed_per_unit: int | None
    base_minor: int
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Forfeit:
    level: int
    distributor_id: str
    reason: str  # suspended, self_purchase, inactive
    amount_minor: int
    sku: str
    order_id: str
    line_no: int


def level_amounts(line: PaidLine, rules: RuleTerms) -> tuple[int, int]:
    """Per-level amounts, rounded half-up per line and level, capped so that
    level 1 + level 2 never exceeds the line's net."""
    if rules.kind == "rate":
        raw = [(line.net_minor * bp + BP_PER_WHOLE // 2) // BP_PER_WHOLE
               for bp in (rules.level1, rules.level2)]
    else:
        raw = [fixed * line.quantity for fixed in (rules.level1, rules.level2)]
    level1 = min(raw[0], line.net_minor)
    return level1, min(raw[1], line.net_minor - level1)


def split_commission(line: PaidLine, seller: Beneficiary, upline: Beneficiary | None,
                     rules: RuleTerms, self_purchase: bool, self_purchase_enabled: bool
                     ) -> tuple[list[Accrual], list[Forfeit]]:
    """Who earns what on one paid line. A suspended beneficiary's share is forfeited
    (and recorded), as is any other non-active one's. A self-purchase (the buyer is the
    seller) forfeits the seller's level 1 unless enabled; the upline's level 2 stands,
    since the upline did not buy."""
    if upline is not None and upline.distributor_id != seller.upline_id:
        raise CompliancePolicyViolation(
            f"level 2 goes to {seller.distributor_id}'s upline {seller.upline_id}, "
            f"not to {upline.distributor_id}", seller=seller.distributor_id,
            upline=upline.distributor_id)
    accruals: list[Accrual] = []
    forfeits: list[Forfeit] = []
    for level, who, amount in zip((1, 2), (seller, upline), level_amounts(line, rules)):
        if who is None or amount <= 0:
            continue
        reason = _forfeit_reason(who, level == 1 and self_purchase and not self_purchase_enabled)
        if reason:
            forfeits.append(Forfeit(level=level, distributor_id=who.distributor_id,
                                    reason=reason, amount_minor=amount, sku=line.sku,
                                    order_id=line.order_id, line_no=line.line_no))
            continue
        accruals.append(Accrual(
            level=level, distributor_id=who.distributor_id, sku=line.sku,
            order_id=line.order_id, line_no=line.line_no, rule_version=rules.version,
            rule_kind=rules.kind,
            rate_bp=(rules.level1, rules.level2)[level - 1] if rules.kind == "rate" else None,
            fixed_per_unit=(rules.level1, rules.level2)[level - 1]
            if rules.kind == "fixed" else None,
            base_minor=line.net_minor, amount_minor=amount, currency=line.currency))
    return accruals, forfeits


def _forfeit_reason(who: Beneficiary, self_purchase: bool) -> str | None:
    if who.status == "suspended":
        return "suspended"
    if who.status != "active":
        return "inactive"
    return "self_purchase" if self_purchase else None
