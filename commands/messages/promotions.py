"""Promotions: coupons and spend-threshold tiers."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from commands.messages.base import Command
from domain.promotions import CouponTerms


@dataclass(frozen=True)
class IssueCoupon(Command):
    status = 201
    terms: CouponTerms  # already a frozen, hashable value

    def handle(self, app: Any) -> dict[str, Any]:
        return app.issue_coupon(self.terms)


@dataclass(frozen=True)
class AddThresholdPromotion(Command):
    status = 201
    tiers: tuple[tuple[int, int], ...]  # (min_spend_minor, discount_minor)
    valid_from: datetime | None = None
    valid_to: datetime | None = None
    promotion_id: str | None = None  # None: a new id

    def handle(self, app: Any) -> dict[str, Any]:
        return app.add_threshold_promotion(list(self.tiers), self.valid_from, self.valid_to,
                                           self.promotion_id)
