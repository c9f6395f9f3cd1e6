"""Promotions (pure): coupon and spend-threshold (满减) terms, and how an order's discount
is computed and spread over its lines. The aggregates that hold them are in
domain.coupons.

An order gets at most one coupon plus the best threshold tier its subtotal reaches. The
threshold discount comes first and is spread over every line; the coupon is worth its
fixed amount, or its percentage of the gross of the lines in its scope (rounded half-up),
capped by what those lines still cost after the threshold share. Each discount is spread
over its lines in proportion to their amounts by the largest-remainder method, so the
parts sum exactly and no line's net ever goes below zero.

Validity windows are half-open: a promotion is valid from `valid_from` (inclusive) until
`valid_to` (exclusive); a missing end is open.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Sequence

from domain.accruals import half_up_share
from domain.errors import DomainError, InvalidCommand

BP_PER_WHOLE = 10_000


class CouponNotApplicable(DomainError):
    code = "coupon_not_applicable"


class CouponNotYetValid(DomainError):
    code = "coupon_not_yet_valid"


class CouponExpired(DomainError):
    code = "coupon_expired"


# Rules across fields that no request schema can state: a request of the right shape can
# still break them, so they are business refusals (409), not validation errors (422).
# Still InvalidCommand subclasses: to the domain they are bad terms like any other.
class InvalidWindow(InvalidCommand):
    code = "invalid_window"


class InvalidTiers(InvalidCommand):
    code = "invalid_tiers"


class SaleLine(NamedTuple):
    """One order line as promotions see it; a plain (sku, quantity, unit_price) tuple works."""

    sku: str
    quantity: int
    unit_price_minor: int

    @property
    def gross_minor(self) -> int:
        return self.quantity * self.unit_price_minor


def normalize_code(code: str) -> str:
    """Coupon codes are case-insensitive: stored and looked up upper-cased."""
    return code.strip().upper()


def _in_window(valid_from: datetime | None, valid_to: datetime | None, at: datetime) -> bool:
    return (valid_from is None or valid_from <= at) and (valid_to is None or at < valid_to)


def _check_window(valid_from: datetime | None, valid_to: datetime | None) -> None:
    if valid_from is not None and valid_to is not None and valid_to <= valid_from:
        raise InvalidWindow("valid_to must be after valid_from", field="valid_to")


@dataclass(frozen=True)
class CouponTerms:
    code: str
    amount_off_minor: int | None = None
    percent_off_bp: int | None = None
    min_spend_minor: int = 0
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    total_limit: int | None = None
    per_customer_limit: int | None = None
    skus: tuple[str, ...] | None = None  # None: every line is in scope

    def validate(self) -> None:
        """Refuse terms no merchant could mean (InvalidCommand, field named)."""
        if not self.code:
            raise InvalidCommand("a coupon needs a code", field="code")
        if (self.amount_off_minor is None) == (self.percent_off_bp is None):
            raise InvalidCommand("give either amount_off or percent_off_bp",
                                 field="amount_off")
        if self.amount_off_minor is not None and self.amount_off_minor <= 0:
            raise InvalidCommand("amount_off must be positive", field="amount_off")
        if self.percent_off_bp is not None and not 0 < self.percent_off_bp <= BP_PER_WHOLE:
            raise InvalidCommand("percent_off_bp must be 1 to 10000", field="percent_off_bp")
        if self.min_spend_minor < 0:
            raise InvalidCommand("min_spend must not be negative", field="min_spend")
        _check_window(self.valid_from, self.valid_to)
        for name in ("total_limit", "per_customer_limit"):
            limit = getattr(self, name)
            if limit is not None and limit < 1:
                raise InvalidCommand(f"{name} must be at least 1", field=name)
        if self.skus is not None and (not self.skus or not all(s.strip() for s in self.skus)):
            raise InvalidCommand("skus, when given, must name at least one product",
                                 field="skus")

    def check_valid_at(self, at: datetime) -> None:
        """CouponNotYetValid before the window, CouponExpired after it."""
        if self.valid_from is not None and at < self.valid_from:
            raise CouponNotYetValid(f"coupon {self.code} is valid from {self.valid_from}",
                                    code=self.code)
        if self.valid_to is not None and at >= self.valid_to:
            raise CouponExpired(f"coupon {self.code} expired at {self.valid_to}",
                                code=self.code)

    def applies_to(self, sku: str) -> bool:
        return self.skus is None or sku in self.skus

    def value_for(self, eligible_gross_minor: int) -> int:
        """The coupon's worth on this much in-scope gross: fixed, or percent half-up;
        never more than the gross itself."""
        if self.amount_off_minor is not None:
            return min(self.amount_off_minor, eligible_gross_minor)
        assert self.percent_off_bp is not None
        return half_up_share(eligible_gross_minor, self.percent_off_bp, BP_PER_WHOLE)


@dataclass(frozen=True)
class Tier:
    min_spend_minor: int
    discount_minor: int


@dataclass(frozen=True)
class ThresholdTerms:
    promotion_id: str
    tiers: tuple[Tier, ...]
    valid_from: datetime | None = None
    valid_to: datetime | None = None

    def validate(self) -> None:
        if not self.tiers:
            raise InvalidCommand("a threshold promotion needs at least one tier", field="tiers")
        spends = [t.min_spend_minor for t in self.tiers]
        if len(set(spends)) != len(spends):
            raise InvalidTiers("two tiers have the same min_spend", field="tiers")
        for tier in self.tiers:
            # A discount of the whole min_spend would give the goods away: strictly less.
            if tier.min_spend_minor <= 0 or not 0 < tier.discount_minor < tier.min_spend_minor:
                raise InvalidTiers("each tier needs min_spend > 0 and a discount from 1 "
                                   "up to less than its min_spend", field="tiers")
        _check_window(self.valid_from, self.valid_to)

    def active_at(self, at: datetime) -> bool:
        return _in_window(self.valid_from, self.valid_to, at)


def best_tier(thresholds: Sequence[ThresholdTerms], subtotal_minor: int,
              at: datetime) -> tuple[str, Tier] | None:
    """(promotion_id, tier) giving the largest discount among the tiers of the promotions
    active at `at` whose min_spend the subtotal reaches; ties go to the lower min_spend,
    then the promotion id. None when nothing is reached."""
    reached = [(t.discount_minor, -t.min_spend_minor, p.promotion_id, t)
               for p in thresholds if p.active_at(at)
               for t in p.tiers if t.min_spend_minor <= subtotal_minor]
    if not reached:
        return None
    best = min(reached, key=lambda r: (-r[0], -r[1], r[2]))
    return best[2], best[3]


def allocate_discount(line_grosses: Sequence[int], discount: int) -> list[int]:
    """Split `discount` over lines in proportion to their gross: each line gets the floor
    of its exact share, and the fen left over go one each to the largest remainders (ties
    to the earlier line). The parts sum to `discount`, each is at most its gross and
    within 1 of its exact share. ValueError if discount is negative or above the total."""
    total = sum(line_grosses)
    if discount < 0 or discount > total or any(g < 0 for g in line_grosses):
        raise ValueError(f"cannot spread {discount} over {list(line_grosses)}")
    if discount == 0:
        return [0] * len(line_grosses)
    shares = [divmod(discount * gross, total) for gross in line_grosses]
    parts = [whole for whole, _ in shares]
    by_remainder = sorted(range(len(parts)), key=lambda i: (-shares[i][1], i))
    for i in by_remainder[:discount - sum(parts)]:
        parts[i] += 1
    return parts


@dataclass(frozen=True)
class Discount:
    line_discounts: tuple[int, ...]  # per line, in line order; threshold + coupon parts
    threshold_minor: int = 0
    threshold_promotion_id: str | None = None
    coupon_minor: int = 0
    coupon_code: str | None = None

    @property
    def total_minor(self) -> int:
        return self.threshold_minor + self.coupon_minor


def compute_discount(lines: Sequence[SaleLine], at: datetime,
                     coupon: CouponTerms | None = None,
                     thresholds: Sequence[ThresholdTerms] = ()) -> Discount:
    """The order's discount and its split over the lines. A coupon outside its window,
    below its min spend (on in-scope gross), with no line in scope, or worth nothing on
    this order is refused (CouponNotYetValid, CouponExpired, CouponNotApplicable)."""
    lines = [SaleLine(*line) for line in lines]
    grosses = [line.gross_minor for line in lines]
    reached = best_tier(thresholds, sum(grosses), at)
    threshold_minor = min(reached[1].discount_minor, sum(grosses)) if reached else 0
    parts = allocate_discount(grosses, threshold_minor)
    coupon_minor = 0
    if coupon is not None:
        coupon_parts = _coupon_parts(coupon, lines, [g - p for g, p in zip(grosses, parts)], at)
        parts = [p + c for p, c in zip(parts, coupon_parts)]
        coupon_minor = sum(coupon_parts)
    return Discount(line_discounts=tuple(parts), threshold_minor=threshold_minor,
                    threshold_promotion_id=reached[0] if reached else None,
                    coupon_minor=coupon_minor,
                    coupon_code=coupon.code if coupon is not None else None)


def _coupon_parts(coupon: CouponTerms, lines: list[SaleLine], remaining: list[int],
                  at: datetime) -> list[int]:
    coupon.check_valid_at(at)
    in_scope = [i for i, line in enumerate(lines) if coupon.applies_to(line.sku)]
    if not in_scope:
        raise CouponNotApplicable(f"coupon {coupon.code} applies to none of these products",
                                  code=coupon.code)
    eligible_gross = sum(lines[i].gross_minor for i in in_scope)
    if eligible_gross < coupon.min_spend_minor:
        raise CouponNotApplicable(
            f"coupon {coupon.code} needs a spend of {coupon.min_spend_minor} on the products "
            f"it covers; this order has {eligible_gross}", code=coupon.code,
            min_spend=coupon.min_spend_minor, eligible=eligible_gross)
    left = [remaining[i] for i in in_scope]
    value = min(coupon.value_for(eligible_gross), sum(left))
    if value <= 0:
        raise CouponNotApplicable(f"coupon {coupon.code} takes nothing off this order",
                                  code=coupon.code)
    parts = [0] * len(lines)
    for i, part in zip(in_scope, allocate_discount(left, value)):
        parts[i] = part
    return parts
