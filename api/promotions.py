"""Coupons and threshold promotions."""
from __future__ import annotations

from typing import Any

from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api.auth import requires
from api.http import (decode_cursor, fenxiao, page, query_response, read_position, reading,
                      run_command)
from api.openapi import exclusive_groups
from api.schemas import (FullMatch, Id, MoneySchema, PageQuery, PositiveMoneySchema,
                         ReadQuery, Str, StrictInt, require_currency)
from commands.messages import AddThresholdPromotion, IssueCoupon
from domain.errors import NotFound
from domain.promotions import CouponTerms, normalize_code
from projections.promotions import (PromotionsProjection, get_coupon, list_coupons,
                                    list_promotions)

blp = Blueprint("promotions", __name__, url_prefix="/api/v1",
                description="Coupons and threshold promotions")
READS = [PromotionsProjection.name]
STAFF = ("admin", "operator")
READERS = ("admin", "operator", "auditor")
# Codes are typed by customers: letters (case-insensitive: stored upper-cased), digits,
# "_" and "-", nothing that needs escaping in a URL.
CODE_PATTERN = r"^[A-Za-z0-9_-]{3,32}$"
MAX_LIMIT = 10**9


def Limit() -> StrictInt:
    return StrictInt(load_default=None, validate=validate.Range(min=1, max=MAX_LIMIT))


def When() -> fields.AwareDateTime:
    """ISO-8601 with an offset (RFC 3339); a time without one is ambiguous, so refused."""
    return fields.AwareDateTime(load_default=None)


class CouponIn(Schema):
    code = Str(required=True, validate=FullMatch(CODE_PATTERN, error=(
        "must be 3-32 characters of A-Z a-z 0-9 _ -")))
    amount_off = fields.Nested(PositiveMoneySchema)
    percent_off_bp = StrictInt(validate=validate.Range(min=1, max=10_000))
    min_spend = fields.Nested(MoneySchema, load_default=None)
    valid_from = When()
    valid_to = When()
    total_limit = Limit()
    per_customer_limit = Limit()
    skus = fields.List(Id(), load_default=None, validate=validate.Length(min=1, max=500))

    @validates_schema
    def one_kind(self, data: dict[str, Any], **_: Any) -> None:
        if ("amount_off" in data) == ("percent_off_bp" in data):
            raise ValidationError("give amount_off or percent_off_bp, exactly one of them",
                                  "_schema")


exclusive_groups("CouponIn", ("amount_off",), ("percent_off_bp",))


class TierIn(Schema):
    min_spend = fields.Nested(PositiveMoneySchema, required=True)
    discount = fields.Nested(PositiveMoneySchema, required=True)


class ThresholdIn(Schema):
    promotion_id = Id(load_default=None)
    tiers = fields.List(fields.Nested(TierIn), required=True,
                        validate=validate.Length(min=1, max=20))
    valid_from = When()
    valid_to = When()


class CouponOut(Schema):
    code = fields.String()
    amount_off = fields.Nested(MoneySchema, allow_none=True)
    percent_off_bp = fields.Integer(allow_none=True)
    min_spend = fields.Nested(MoneySchema)
    valid_from = fields.String(allow_none=True)
    valid_to = fields.String(allow_none=True)
    total_limit = fields.Integer(allow_none=True)
    per_customer_limit = fields.Integer(allow_none=True)
    skus = fields.List(fields.String(), allow_none=True)
    issued_at = fields.String()
    redeemed = fields.Integer()
    released = fields.Integer()
    remaining = fields.Integer(allow_none=True)
    discounted = fields.Nested(MoneySchema)
    position = fields.Integer(allow_none=True)


class CouponPage(Schema):
    items = fields.List(fields.Nested(CouponOut))
    next_cursor = fields.String(allow_none=True)


class TierOut(Schema):
    min_spend = fields.Nested(MoneySchema)
    discount = fields.Nested(MoneySchema)


class PromotionOut(Schema):
    promotion_id = fields.String()
    kind = fields.String()
    tiers = fields.List(fields.Nested(TierOut))
    valid_from = fields.String(allow_none=True)
    valid_to = fields.String(allow_none=True)
    added_at = fields.String()
    ended_at = fields.String(allow_none=True)
    orders = fields.Integer()
    released = fields.Integer()
    discounted = fields.Nested(MoneySchema)
    position = fields.Integer(allow_none=True)


class PromotionPage(Schema):
    items = fields.List(fields.Nested(PromotionOut))
    next_cursor = fields.String(allow_none=True)


def _amount(money: dict[str, Any] | None, currency: str, field: str) -> int | None:
    return None if money is None else require_currency(money, currency, field)


# -- commands -------------------------------------------------------------------------

@blp.route("/coupons", methods=["POST"])
@requires(*STAFF)
@blp.arguments(CouponIn)
@blp.response(201, CouponOut)
def issue_coupon(body: dict[str, Any]) -> Any:
    app = fenxiao()
    currency = app.settings.currency
    terms = CouponTerms(
        code=body["code"], amount_off_minor=_amount(body.get("amount_off"), currency,
                                                    "amount_off"),
        percent_off_bp=body.get("percent_off_bp"),
        min_spend_minor=_amount(body["min_spend"], currency, "min_spend") or 0,
        valid_from=body["valid_from"], valid_to=body["valid_to"],
        total_limit=body["total_limit"], per_customer_limit=body["per_customer_limit"],
        skus=None if body["skus"] is None else tuple(body["skus"]))
    return run_command(IssueCoupon(terms))


@blp.route("/promotions/threshold", methods=["POST"])
@requires(*STAFF)
@blp.arguments(ThresholdIn)
@blp.response(201, PromotionOut)
def add_threshold_promotion(body: dict[str, Any]) -> Any:
    app = fenxiao()
    currency = app.settings.currency
    tiers = tuple((require_currency(t["min_spend"], currency, "tiers"),
                   require_currency(t["discount"], currency, "tiers")) for t in body["tiers"])
    return run_command(AddThresholdPromotion(
        tiers, body["valid_from"], body["valid_to"], body["promotion_id"]))


# -- queries --------------------------------------------------------------------------

@blp.route("/coupons", methods=["GET"])
@requires(*READERS)
@blp.arguments(PageQuery, location="query")
@blp.response(200, CouponPage)
def coupons(query: dict[str, Any]) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        after = decode_cursor(query["cursor"], str)
        rows = list_coupons(conn, after and after[0], query["limit"] + 1)
    return query_response(page(rows, query["limit"], lambda c: c["code"]), position)


@blp.route("/coupons/<code>", methods=["GET"])
@requires(*READERS)
@blp.arguments(ReadQuery, location="query")
@blp.response(200, CouponOut)
def coupon(query: dict[str, Any], code: str) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        normal = normalize_code(code)
        found = get_coupon(conn, normal)
    if found is None:
        raise NotFound(f"coupon {normal} not found", code=normal)
    return query_response(found, position)


@blp.route("/promotions", methods=["GET"])
@requires(*READERS)
@blp.arguments(PageQuery, location="query")
@blp.response(200, PromotionPage)
def promotions(query: dict[str, Any]) -> Any:
    with reading() as conn:
        position = read_position(READS, query["min_position"])
        after = decode_cursor(query["cursor"], str)
        rows = list_promotions(conn, after and after[0], query["limit"] + 1)
    return query_response(page(rows, query["limit"], lambda p: p["promotion_id"]),
                          position)
