"""Read model: coupons and threshold promotions, with their redemptions counted.

A coupon's redemptions come from its own events (redeemed, released); a threshold
promotion's from the orders placed with its discount, given back when such an order is
cancelled or expires. Times given by merchants (valid_from, valid_to) are kept as the ISO
text they were given in: any offset, any year, never converted.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (Boolean, Column, Integer, String, Table, Text, and_, select,
                        update)
from sqlalchemy.engine import Connection

from commands.promotions import coupon_view, tiers_view
from commands.storage import BIGINT, metadata
from commands.views import money
from domain.coupons import Coupon, ThresholdPromotions
from domain.orders import Order
from projections.base import Projection

coupons = Table(
    "rm_coupons", metadata,
    Column("code", String(64), primary_key=True),
    Column("coupon_uuid", String(36), nullable=False, unique=True),
    Column("amount_off_minor", BIGINT, nullable=True),
    Column("percent_off_bp", Integer, nullable=True),
    Column("min_spend_minor", BIGINT, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("valid_from", String(40), nullable=True),
    Column("valid_to", String(40), nullable=True),
    Column("total_limit", BIGINT, nullable=True),
    Column("per_customer_limit", BIGINT, nullable=True),
    Column("skus", Text, nullable=True),  # a JSON list, or NULL: every product
    Column("issued_at", String(40), nullable=False),
    Column("redeemed", Integer, nullable=False),
    Column("released", Integer, nullable=False),
    Column("discount_minor", BIGINT, nullable=False),
)

# One row per order that redeemed a coupon: what it was given, and whether it gave it back.
coupon_redemptions = Table(
    "rm_coupon_redemptions", metadata,
    Column("coupon_uuid", String(36), primary_key=True),
    Column("order_id", String(64), primary_key=True),
    Column("customer_id", String(64), nullable=False),
    Column("discount_minor", BIGINT, nullable=False),
    Column("redeemed_at", String(40), nullable=False),
    Column("released_at", String(40), nullable=True),
)

threshold_promotions = Table(
    "rm_threshold_promotions", metadata,
    Column("promotion_id", String(64), primary_key=True),
    Column("tiers", Text, nullable=False),  # JSON [{min_spend_minor, discount_minor}]
    Column("currency", String(3), nullable=False),
    Column("valid_from", String(40), nullable=True),
    Column("valid_to", String(40), nullable=True),
    Column("added_at", String(40), nullable=False),
    Column("ended_at", String(40), nullable=True),
    Column("orders", Integer, nullable=False),
    Column("released", Integer, nullable=False),
    Column("discount_minor", BIGINT, nullable=False),
)

# One row per order placed with a threshold discount.
threshold_uses = Table(
    "rm_threshold_uses", metadata,
    Column("order_uuid", String(36), primary_key=True),
    Column("order_id", String(64), nullable=False),
    Column("promotion_id", String(64), nullable=False, index=True),
    Column("discount_minor", BIGINT, nullable=False),
    Column("released", Boolean, nullable=False),
)


def iso(at: datetime | None) -> str | None:
    """Times recorded by the application (always UTC) as ISO text."""
    if at is None:
        return None
    return (at if at.tzinfo else at.replace(tzinfo=timezone.utc)).isoformat()


# -- coupons --------------------------------------------------------------------------

def _coupon_issued(conn: Connection, e: Any) -> None:
    conn.execute(coupons.insert().values(
        code=e.code, coupon_uuid=str(e.originator_id), amount_off_minor=e.amount_off_minor,
        percent_off_bp=e.percent_off_bp, min_spend_minor=e.min_spend_minor,
        currency=e.currency, valid_from=iso(e.valid_from), valid_to=iso(e.valid_to),
        total_limit=e.total_limit, per_customer_limit=e.per_customer_limit,
        skus=None if e.skus is None else json.dumps(sorted(e.skus)),
        issued_at=iso(e.issued_at), redeemed=0, released=0, discount_minor=0))


def _this_coupon(e: Any) -> Any:
    return coupons.c.coupon_uuid == str(e.originator_id)


def _redemption(e: Any) -> Any:
    return and_(coupon_redemptions.c.coupon_uuid == str(e.originator_id),
                coupon_redemptions.c.order_id == e.order_id)


def _coupon_redeemed(conn: Connection, e: Any) -> None:
    # The domain refuses a second live redemption per order, but a released one may be
    # redeemed again: the row is then reused.
    conn.execute(coupon_redemptions.delete().where(_redemption(e)))
    conn.execute(coupon_redemptions.insert().values(
        coupon_uuid=str(e.originator_id), order_id=e.order_id, customer_id=e.customer_id,
        discount_minor=e.discount_minor, redeemed_at=iso(e.at), released_at=None))
    conn.execute(update(coupons).where(_this_coupon(e)).values(
        redeemed=coupons.c.redeemed + 1,
        discount_minor=coupons.c.discount_minor + e.discount_minor))


def _coupon_released(conn: Connection, e: Any) -> None:
    given = conn.execute(select(coupon_redemptions.c.discount_minor)
                         .where(_redemption(e))).scalar_one()
    conn.execute(update(coupon_redemptions).where(_redemption(e))
                 .values(released_at=iso(e.at)))
    conn.execute(update(coupons).where(_this_coupon(e)).values(
        redeemed=coupons.c.redeemed - 1, released=coupons.c.released + 1,
        discount_minor=coupons.c.discount_minor - given))


# -- threshold promotions -------------------------------------------------------------

def _threshold_added(conn: Connection, e: Any) -> None:
    conn.execute(threshold_promotions.insert().values(
        promotion_id=e.promotion_id, tiers=json.dumps(e.tiers, sort_keys=True),
        currency=e.currency, valid_from=iso(e.valid_from), valid_to=iso(e.valid_to),
        added_at=iso(e.at), ended_at=None, orders=0, released=0, discount_minor=0))


def _threshold_ended(conn: Connection, e: Any) -> None:
    conn.execute(update(threshold_promotions)
                 .where(threshold_promotions.c.promotion_id == e.promotion_id)
                 .values(valid_to=iso(e.at), ended_at=iso(e.at)))


def _promotion(promotion_id: str) -> Any:
    return threshold_promotions.c.promotion_id == promotion_id


def _order_placed(conn: Connection, e: Any) -> None:
    promotion_id = (e.promotions or {}).get("threshold_promotion_id")
    if promotion_id is None:
        return
    discount = e.promotions.get("threshold_discount_minor") or 0
    conn.execute(threshold_uses.insert().values(
        order_uuid=str(e.originator_id), order_id=e.order_id, promotion_id=promotion_id,
        discount_minor=discount, released=False))
    conn.execute(update(threshold_promotions).where(_promotion(promotion_id)).values(
        orders=threshold_promotions.c.orders + 1,
        discount_minor=threshold_promotions.c.discount_minor + discount))


def _order_closed(conn: Connection, e: Any) -> None:
    """A cancelled or expired order gives its threshold discount back."""
    this = and_(threshold_uses.c.order_uuid == str(e.originator_id),
                threshold_uses.c.released.is_(False))
    use = conn.execute(select(threshold_uses).where(this)).first()
    if use is None:
        return
    conn.execute(update(threshold_uses).where(this).values(released=True))
    conn.execute(update(threshold_promotions).where(_promotion(use.promotion_id)).values(
        orders=threshold_promotions.c.orders - 1,
        released=threshold_promotions.c.released + 1,
        discount_minor=threshold_promotions.c.discount_minor - use.discount_minor))


class PromotionsProjection(Projection):
    name = "promotions"
    tables = (coupons, coupon_redemptions, threshold_promotions, threshold_uses)
    handlers = {
        Coupon.CouponIssued: _coupon_issued,
        Coupon.CouponRedeemed: _coupon_redeemed,
        Coupon.CouponRedemptionReleased: _coupon_released,
        ThresholdPromotions.ThresholdPromotionAdded: _threshold_added,
        ThresholdPromotions.ThresholdPromotionEnded: _threshold_ended,
        Order.OrderPlaced: _order_placed,
        Order.OrderCancelled: _order_closed,
        Order.OrderExpired: _order_closed,
    }


# -- queries --------------------------------------------------------------------------

def _coupon_row_view(row: Any) -> dict[str, Any]:
    return coupon_view(row, skus=None if row.skus is None else json.loads(row.skus),
                       valid_from=row.valid_from, valid_to=row.valid_to,
                       issued_at=row.issued_at, redeemed=row.redeemed,
                       released=row.released, discount_minor=row.discount_minor)


def get_coupon(conn: Connection, code: str) -> dict[str, Any] | None:
    row = conn.execute(select(coupons).where(coupons.c.code == code)).first()
    return _coupon_row_view(row) if row else None


def list_coupons(conn: Connection, after: str | None, limit: int) -> list[dict[str, Any]]:
    query = select(coupons).order_by(coupons.c.code).limit(limit)
    if after is not None:
        query = query.where(coupons.c.code > after)
    return [_coupon_row_view(r) for r in conn.execute(query)]


def _promotion_view(row: Any) -> dict[str, Any]:
    return {"promotion_id": row.promotion_id, "kind": "threshold",
            "tiers": tiers_view(json.loads(row.tiers), row.currency),
            "valid_from": row.valid_from, "valid_to": row.valid_to,
            "added_at": row.added_at, "ended_at": row.ended_at,
            "orders": row.orders, "released": row.released,
            "discounted": money(row.discount_minor, row.currency)}


def list_promotions(conn: Connection, after: str | None, limit: int
                    ) -> list[dict[str, Any]]:
    query = (select(threshold_promotions).order_by(threshold_promotions.c.promotion_id)
             .limit(limit))
    if after is not None:
        query = query.where(threshold_promotions.c.promotion_id > after)
    return [_promotion_view(r) for r in conn.execute(query)]
