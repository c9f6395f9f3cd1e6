"""The promotions' aggregates: a coupon with its redemptions, and the book of
spend-threshold promotions. Their terms and the discount arithmetic are in
domain.promotions.
"""
from __future__ import annotations

from datetime import datetime
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain.errors import DomainError, Duplicate, InvalidCommand, InvalidTransition, NotFound
from domain.ids import natural_id
from domain.promotions import CouponTerms, ThresholdTerms, Tier, normalize_code


class CouponExhausted(DomainError):
    code = "coupon_exhausted"


class CouponLimitReached(DomainError):
    code = "coupon_limit_reached"


class Coupon(Aggregate):
    """A coupon and its redemptions: one per order, within the total and per-customer
    limits. Every redemption changes this aggregate, so concurrent redemptions collide
    on its version and the limits hold."""

    @staticmethod
    def create_id(code: str) -> UUID:
        return natural_id("coupon", normalize_code(code))

    @classmethod
    def issue(cls, terms: CouponTerms, currency: str, at: datetime) -> "Coupon":
        """New coupon; the code is normalised (upper case). InvalidCommand on bad terms."""
        terms.validate()
        return cls(code=normalize_code(terms.code), amount_off_minor=terms.amount_off_minor,
                   percent_off_bp=terms.percent_off_bp, min_spend_minor=terms.min_spend_minor,
                   valid_from=terms.valid_from, valid_to=terms.valid_to,
                   total_limit=terms.total_limit, per_customer_limit=terms.per_customer_limit,
                   skus=sorted(set(terms.skus)) if terms.skus is not None else None,
                   currency=currency, issued_at=at)

    @event("CouponIssued")
    def __init__(self, code: str, amount_off_minor: int | None, percent_off_bp: int | None,
                 min_spend_minor: int, valid_from: datetime | None,
                 valid_to: datetime | None, total_limit: int | None,
                 per_customer_limit: int | None, skus: list[str] | None, currency: str,
                 issued_at: datetime) -> None:
        # Plain values only (no dataclasses), so the state can be snapshotted as JSON.
        self.code = code
        self.amount_off_minor = amount_off_minor
        self.percent_off_bp = percent_off_bp
        self.min_spend_minor = min_spend_minor
        self.valid_from = valid_from
        self.valid_to = valid_to
        self.total_limit = total_limit
        self.per_customer_limit = per_customer_limit
        self.skus = skus
        self.currency = currency
        self.redemptions: dict[str, str] = {}  # order id -> customer id, live ones only
        self.per_customer: dict[str, int] = {}

    @property
    def terms(self) -> CouponTerms:
        return CouponTerms(
            code=self.code, amount_off_minor=self.amount_off_minor,
            percent_off_bp=self.percent_off_bp, min_spend_minor=self.min_spend_minor,
            valid_from=self.valid_from, valid_to=self.valid_to, total_limit=self.total_limit,
            per_customer_limit=self.per_customer_limit,
            skus=tuple(self.skus) if self.skus is not None else None)

    @property
    def redeemed(self) -> int:
        return len(self.redemptions)

    def redeemed_by(self, order_id: str) -> bool:
        return order_id in self.redemptions

    def redeem(self, order_id: str, customer_id: str, discount_minor: int,
               at: datetime) -> None:
        """Record that `order_id` uses this coupon for `discount_minor`. Refused outside the
        window, beyond total_limit (coupon_exhausted) or per_customer_limit
        (coupon_limit_reached), or for an order that already holds a redemption."""
        self.terms.check_valid_at(at)
        if order_id in self.redemptions:
            raise Duplicate(f"order {order_id} already redeemed coupon {self.code}",
                            order_id=order_id)
        limit = self.terms.total_limit
        if limit is not None and self.redeemed >= limit:
            raise CouponExhausted(f"coupon {self.code} has been used {limit} times, its limit",
                                  code=self.code, total_limit=limit)
        limit = self.terms.per_customer_limit
        if limit is not None and self.per_customer.get(customer_id, 0) >= limit:
            raise CouponLimitReached(f"this customer has used coupon {self.code} {limit} "
                                     "times, its limit per customer", code=self.code,
                                     per_customer_limit=limit)
        if discount_minor < 0:
            raise InvalidCommand("a discount cannot be negative", field="discount")
        self._redeemed(order_id=order_id, customer_id=customer_id,
                       discount_minor=discount_minor, at=at)

    @event("CouponRedeemed")
    def _redeemed(self, order_id: str, customer_id: str, discount_minor: int,
                  at: datetime) -> None:
        self.redemptions[order_id] = customer_id
        self.per_customer[customer_id] = self.per_customer.get(customer_id, 0) + 1

    def release(self, order_id: str, reason: str, at: datetime) -> None:
        """Give back the redemption of a cancelled or expired order; InvalidTransition if
        that order holds none (check `redeemed_by` first to make it a no-op)."""
        if order_id not in self.redemptions:
            raise InvalidTransition(f"order {order_id} holds no redemption of coupon "
                                    f"{self.code}", order_id=order_id)
        self._released(order_id=order_id, customer_id=self.redemptions[order_id],
                       reason=reason, at=at)

    @event("CouponRedemptionReleased")
    def _released(self, order_id: str, customer_id: str, reason: str, at: datetime) -> None:
        del self.redemptions[order_id]
        left = self.per_customer[customer_id] - 1
        if left:
            self.per_customer[customer_id] = left
        else:
            del self.per_customer[customer_id]


class ThresholdPromotions(Aggregate):
    """Every spend-threshold promotion, in one aggregate so that placing an order reads
    them all with one load (they are few and change rarely)."""

    @staticmethod
    def create_id() -> UUID:
        return natural_id("threshold_promotions")

    @event("ThresholdPromotionsOpened")
    def __init__(self) -> None:
        # promotion id -> {"tiers": [{min_spend_minor, discount_minor}], valid_from, valid_to}
        self.promotions: dict[str, dict] = {}

    def terms(self, promotion_id: str) -> ThresholdTerms | None:
        raw = self.promotions.get(promotion_id)
        if raw is None:
            return None
        return ThresholdTerms(promotion_id=promotion_id,
                              tiers=tuple(Tier(**t) for t in raw["tiers"]),
                              valid_from=raw["valid_from"], valid_to=raw["valid_to"])

    def active(self, at: datetime) -> list[ThresholdTerms]:
        """The promotions in force at `at`, for compute_discount / price_order."""
        every = (self.terms(promotion_id) for promotion_id in sorted(self.promotions))
        return [terms for terms in every if terms is not None and terms.active_at(at)]

    def add(self, terms: ThresholdTerms, currency: str, at: datetime) -> None:
        """A new promotion; Duplicate if its id exists, InvalidCommand on bad tiers."""
        if terms.promotion_id in self.promotions:
            raise Duplicate(f"threshold promotion {terms.promotion_id} exists",
                            promotion_id=terms.promotion_id)
        terms.validate()
        self._added(promotion_id=terms.promotion_id,
                    tiers=[{"min_spend_minor": t.min_spend_minor,
                            "discount_minor": t.discount_minor}
                           for t in sorted(terms.tiers, key=lambda t: t.min_spend_minor)],
                    valid_from=terms.valid_from, valid_to=terms.valid_to, currency=currency,
                    at=at)

    @event("ThresholdPromotionAdded")
    def _added(self, promotion_id: str, tiers: list[dict[str, int]],
               valid_from: datetime | None, valid_to: datetime | None, currency: str,
               at: datetime) -> None:
        self.promotions[promotion_id] = {"tiers": [dict(t) for t in tiers],
                                         "valid_from": valid_from, "valid_to": valid_to}

    def end(self, promotion_id: str, at: datetime) -> None:
        """Stop a promotion from `at` on; NotFound if unknown, InvalidTransition if over."""
        terms = self.terms(promotion_id)
        if terms is None:
            raise NotFound(f"no threshold promotion {promotion_id}")
        if terms.valid_to is not None and terms.valid_to <= at:
            raise InvalidTransition(f"threshold promotion {promotion_id} is already over")
        self._ended(promotion_id=promotion_id, at=at)

    @event("ThresholdPromotionEnded")
    def _ended(self, promotion_id: str, at: datetime) -> None:
        self.promotions[promotion_id]["valid_to"] = at
