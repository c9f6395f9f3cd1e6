"""Promotions: coupons and spend-threshold (满减) tiers.

Issuing them is all this service does; their redemption is part of placing an order
(commands/orders.py), in the order's atomic save.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any, Sequence

from commands.app import CoreApp
from commands.views import money
from domain.catalog import Product
from domain.coupons import Coupon, ThresholdPromotions
from domain.errors import Duplicate, NotFound
from domain.promotions import CouponTerms, ThresholdTerms, Tier, normalize_code


def iso(at: datetime | None) -> str | None:
    return None if at is None else at.isoformat()


def coupon_view(c: Any, *, skus: Sequence[str] | None, valid_from: str | None,
                valid_to: str | None, issued_at: str, redeemed: int = 0, released: int = 0,
                discount_minor: int = 0) -> dict[str, Any]:
    """A coupon's terms and its redemptions counted; `c` is the aggregate or a read-model
    row (their list and time fields differ, so those come as arguments)."""
    return {
        "code": c.code,
        "amount_off": money(c.amount_off_minor, c.currency),
        "percent_off_bp": c.percent_off_bp,
        "min_spend": money(c.min_spend_minor, c.currency),
        "valid_from": valid_from, "valid_to": valid_to,
        "total_limit": c.total_limit, "per_customer_limit": c.per_customer_limit,
        "skus": None if skus is None else list(skus),
        "issued_at": issued_at,
        "redeemed": redeemed,  # live redemptions: what the limits count
        "released": released,  # given back by cancelled or expired orders
        "remaining": None if c.total_limit is None else max(c.total_limit - redeemed, 0),
        "discounted": money(discount_minor, c.currency),  # given by the live redemptions
    }


def tiers_view(tiers: Sequence[dict[str, int]], currency: str) -> list[dict[str, Any]]:
    return [{"min_spend": money(t["min_spend_minor"], currency),
             "discount": money(t["discount_minor"], currency)} for t in tiers]


class PromotionService(CoreApp):
    """Coupons and threshold promotions."""

    def coupon(self, code: str) -> Coupon:
        code = normalize_code(code)
        return self.load(Coupon.create_id(code), f"coupon {code}", code=code)

    def threshold_promotions(self) -> ThresholdPromotions:
        """The one book of every threshold promotion (opened, unsaved, if there is none)."""
        return self.find(ThresholdPromotions.create_id()) or ThresholdPromotions()

    def issue_coupon(self, terms: CouponTerms) -> dict[str, Any]:
        """A new coupon; Duplicate if its (normalised) code exists, NotFound for a SKU
        in its scope that is not in the catalog."""
        code = normalize_code(terms.code)
        if self.exists(Coupon.create_id(code)):
            raise Duplicate(f"coupon {code} already exists", code=code)
        for sku in sorted(set(terms.skus or ())):
            if not self.exists(Product.create_id(sku)):
                raise NotFound(f"product {sku} not found", sku=sku)
        now = self.clock()
        coupon = Coupon.issue(terms, self.settings.currency, now)
        view = coupon_view(coupon, skus=coupon.skus, valid_from=iso(coupon.valid_from),
                           valid_to=iso(coupon.valid_to), issued_at=now.isoformat())
        return {**view, "position": self.record(coupon)}

    def add_threshold_promotion(self, tiers: Sequence[tuple[int, int]],
                                valid_from: datetime | None = None,
                                valid_to: datetime | None = None,
                                promotion_id: str | None = None) -> dict[str, Any]:
        """A new spend-threshold promotion of (min_spend_minor, discount_minor) tiers."""
        promotion_id = promotion_id or self._new_id("TP")
        terms = ThresholdTerms(promotion_id=promotion_id,
                               tiers=tuple(Tier(spend, off) for spend, off in tiers),
                               valid_from=valid_from, valid_to=valid_to)
        book = self.threshold_promotions()
        now = self.clock()
        book.add(terms, self.settings.currency, now)
        added = book.promotions[promotion_id]
        return {"promotion_id": promotion_id, "kind": "threshold",
                "tiers": tiers_view(added["tiers"], self.settings.currency),
                "valid_from": iso(valid_from), "valid_to": iso(valid_to),
                "added_at": iso(now), "ended_at": None, "orders": 0, "released": 0,
                "discounted": money(0, self.settings.currency),
                "position": self.record(book)}
