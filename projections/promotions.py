"""Read model: coupons and threshold promotions, with their redemptions counted.

A coupon's redemptions come from its own events (redeemed, released); a threshold
promotion's from the orders placed with its discount, given back when such an order is
cancelled or expires. Times given by merchants (valid_from, valid_to) are kept as the ISO
text they were given in: any offset, any year, never converted. Every order's placing and
closing passes through here, so a batch is folded into rows and written with a few
statements (projections/batching.py).
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any, Sequence

from sqlalchemy import Boolean, Column, Integer, String, Table, Text, select
from sqlalchemy.engine import Connection

from commands.promotions import coupon_view, tiers_view
from commands.storage import BIGINT, metadata
from commands.views import money
from domain.coupons import Coupon, ThresholdPromotions
from domain.orders import Order
from projections.batching import FoldingProjection, Rows

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


class _Batch:
    """A batch folded into rows (projections/batching.py): every row it touches is read
    in one query per table, changed in memory in log order, and written back once."""

    def __init__(self, conn: Connection, events: Sequence[Any]) -> None:
        self.conn = conn
        self.coupons = Rows(coupons, "coupon_uuid")
        self.redemptions = Rows(coupon_redemptions, ("coupon_uuid", "order_id"))
        self.promotions = Rows(threshold_promotions, "promotion_id")
        self.uses = Rows(threshold_uses, "order_uuid")
        coupon_events = [e for e in events if type(e) in _COUPON_MOVES]
        self.coupons.load(conn, [str(e.originator_id) for e in coupon_events])
        self.redemptions.load(conn, [_redemption(e) for e in coupon_events])
        self.uses.load(conn, [str(e.originator_id) for e in events if type(e) in _CLOSING])
        uses = (self.uses.get(conn, str(e.originator_id)) for e in events
                if type(e) in _CLOSING)
        self.promotions.load(conn, [
            *(use["promotion_id"] for use in uses if use is not None),
            *(e.promotion_id for e in events
              if type(e) is ThresholdPromotions.ThresholdPromotionEnded),
            *filter(None, (_threshold_of(e) for e in events
                           if type(e) is Order.OrderPlaced))])

    def write(self) -> None:
        for rows in (self.coupons, self.redemptions, self.promotions, self.uses):
            rows.write(self.conn)


# -- coupons --------------------------------------------------------------------------

def _coupon_issued(batch: _Batch, e: Any) -> None:
    batch.coupons.insert({
        "code": e.code, "coupon_uuid": str(e.originator_id),
        "amount_off_minor": e.amount_off_minor, "percent_off_bp": e.percent_off_bp,
        "min_spend_minor": e.min_spend_minor, "currency": e.currency,
        "valid_from": iso(e.valid_from), "valid_to": iso(e.valid_to),
        "total_limit": e.total_limit, "per_customer_limit": e.per_customer_limit,
        "skus": None if e.skus is None else json.dumps(sorted(e.skus)),
        "issued_at": iso(e.issued_at), "redeemed": 0, "released": 0, "discount_minor": 0})


def _redemption(e: Any) -> tuple[str, str]:
    return str(e.originator_id), e.order_id


def _coupon_redeemed(batch: _Batch, e: Any) -> None:
    # The domain refuses a second live redemption per order, but a released one may be
    # redeemed again: the row is then reused.
    values = {"customer_id": e.customer_id, "discount_minor": e.discount_minor,
              "redeemed_at": iso(e.at), "released_at": None}
    if batch.redemptions.update(batch.conn, _redemption(e), **values) is None:
        batch.redemptions.insert({"coupon_uuid": str(e.originator_id),
                                  "order_id": e.order_id, **values})
    batch.coupons.add(batch.conn, str(e.originator_id), redeemed=1,
                      discount_minor=e.discount_minor)


def _coupon_released(batch: _Batch, e: Any) -> None:
    given = batch.redemptions.one(batch.conn, _redemption(e))["discount_minor"]
    batch.redemptions.update(batch.conn, _redemption(e), released_at=iso(e.at))
    batch.coupons.add(batch.conn, str(e.originator_id), redeemed=-1, released=1,
                      discount_minor=-given)


# -- threshold promotions -------------------------------------------------------------

def _threshold_added(batch: _Batch, e: Any) -> None:
    batch.promotions.insert({
        "promotion_id": e.promotion_id, "tiers": json.dumps(e.tiers, sort_keys=True),
        "currency": e.currency, "valid_from": iso(e.valid_from), "valid_to": iso(e.valid_to),
        "added_at": iso(e.at), "ended_at": None, "orders": 0, "released": 0,
        "discount_minor": 0})


def _threshold_ended(batch: _Batch, e: Any) -> None:
    batch.promotions.update(batch.conn, e.promotion_id, valid_to=iso(e.at),
                            ended_at=iso(e.at))


def _threshold_of(e: Any) -> str | None:
    return (e.promotions or {}).get("threshold_promotion_id")


def _order_placed(batch: _Batch, e: Any) -> None:
    promotion_id = _threshold_of(e)
    if promotion_id is None:
        return
    discount = e.promotions.get("threshold_discount_minor") or 0
    batch.uses.insert({"order_uuid": str(e.originator_id), "order_id": e.order_id,
                       "promotion_id": promotion_id, "discount_minor": discount,
                       "released": False})
    batch.promotions.add(batch.conn, promotion_id, orders=1, discount_minor=discount)


def _order_closed(batch: _Batch, e: Any) -> None:
    """A cancelled or expired order gives its threshold discount back."""
    use = batch.uses.get(batch.conn, str(e.originator_id))
    if use is None or use["released"]:
        return
    batch.uses.update(batch.conn, str(e.originator_id), released=True)
    batch.promotions.add(batch.conn, use["promotion_id"], orders=-1, released=1,
                         discount_minor=-use["discount_minor"])


# event class -> what it does to the batch's rows
_FOLD = {
    Coupon.CouponIssued: _coupon_issued,
    Coupon.CouponRedeemed: _coupon_redeemed,
    Coupon.CouponRedemptionReleased: _coupon_released,
    ThresholdPromotions.ThresholdPromotionAdded: _threshold_added,
    ThresholdPromotions.ThresholdPromotionEnded: _threshold_ended,
    Order.OrderPlaced: _order_placed,
    Order.OrderCancelled: _order_closed,
    Order.OrderExpired: _order_closed,
}
_COUPON_MOVES = (Coupon.CouponRedeemed, Coupon.CouponRedemptionReleased)
_CLOSING = (Order.OrderCancelled, Order.OrderExpired)


class PromotionsProjection(FoldingProjection):
    name = "promotions"
    tables = (coupons, coupon_redemptions, threshold_promotions, threshold_uses)
    fold = _FOLD
    batch_class = _Batch


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
