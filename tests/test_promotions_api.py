"""Coupons and threshold (满减) promotions over HTTP: issuing, refusals that record
nothing, roles, and the views with their redemptions counted."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from domain.allocation import plan_allocation
from domain.orders import Order
from domain.pricing import CatalogEntry, price_order
from projections.promotions import PromotionsProjection
from tests.api_support import Api, assert_rebuild_equals_live


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def code_of(response) -> str:
    return response.get_json()["error"]["code"]


def fenxiao(api: Api) -> Any:
    return api.client.application.extensions["fenxiao"]


SAVE = {"code": "SAVE10", "amount_off": cny(1000), "min_spend": cny(5000),
        "valid_from": "2024-06-01T00:00:00+08:00", "valid_to": "2030-01-01T00:00:00Z",
        "total_limit": 100, "per_customer_limit": 2, "skus": ["TEA", "CUP", "TEA"]}


def test_coupons_of_both_kinds_and_their_views(api: Api) -> None:
    api.seed()
    fixed = api.post("/coupons", SAVE)
    assert fixed.status_code == 201, fixed.get_json()
    body = fixed.get_json()
    assert body["code"] == "SAVE10" and body["amount_off"] == cny(1000)
    assert body["percent_off_bp"] is None and body["min_spend"] == cny(5000)
    assert body["valid_from"] == "2024-06-01T00:00:00+08:00"  # kept as given
    assert body["valid_to"] == "2030-01-01T00:00:00+00:00"
    assert body["skus"] == ["CUP", "TEA"]  # each once, sorted
    assert (body["redeemed"], body["released"], body["remaining"]) == (0, 0, 100)
    assert body["discounted"] == cny(0) and body["position"] > 0
    percent = api.post("/coupons", {"code": "summer-15", "percent_off_bp": 1500},
                       role="operator")
    assert percent.status_code == 201 and percent.get_json()["code"] == "SUMMER-15"
    last = percent.get_json()["position"]
    listed = api.get("/coupons", role="auditor", min_position=last)
    assert listed.status_code == 200
    items = listed.get_json()["items"]
    assert [c["code"] for c in items] == ["SAVE10", "SUMMER-15"]
    assert items[0] == {k: v for k, v in body.items() if k != "position"}
    assert items[1]["min_spend"] == cny(0) and items[1]["skus"] is None
    assert items[1]["total_limit"] is None and items[1]["remaining"] is None
    # looked up by the code as typed, in any case
    found = api.get("/coupons/Summer-15", role="operator")
    assert found.status_code == 200 and found.get_json()["percent_off_bp"] == 1500
    assert api.get("/coupons/NOPE-1").status_code == 404
    first = api.get("/coupons", limit=1).get_json()
    assert [c["code"] for c in first["items"]] == ["SAVE10"] and first["next_cursor"]
    second = api.get("/coupons", limit=1, cursor=first["next_cursor"]).get_json()
    assert [c["code"] for c in second["items"]] == ["SUMMER-15"]
    assert second["next_cursor"] is None


@pytest.mark.parametrize("change, field", [
    ({"percent_off_bp": 500}, "_schema"),  # both kinds
    ({"amount_off": "1000"}, "amount_off"),
    ({"amount_off": cny(0)}, "amount_off"),
    ({"amount_off": {"amount": 100, "currency": "USD"}}, "amount_off"),
    ({"code": "ab"}, "code"), ({"code": "has space"}, "code"), ({"code": "x" * 33}, "code"),
    ({"code": "ÄÖÜ"}, "code"),
    ({"valid_from": "2024-06-01T00:00:00"}, "valid_from"),  # no offset: ambiguous
    ({"valid_to": "tomorrow"}, "valid_to"),
    ({"total_limit": 0}, "total_limit"), ({"per_customer_limit": 1.5}, "per_customer_limit"),
    ({"skus": []}, "skus"), ({"skus": ["bad sku"]}, "skus"),
    ({"min_spend": {"amount": -1, "currency": "CNY"}}, "min_spend"),
    ({"colour": "red"}, "colour"),
])
def test_bad_coupons_are_422_and_record_nothing(api: Api, change: dict, field: str) -> None:
    api.seed()
    before = fenxiao(api).last_position()
    body = {k: v for k, v in {**SAVE, **change}.items() if v is not None}
    reply = api.post("/coupons", body)
    assert reply.status_code == 422, reply.get_json()
    assert field in reply.get_json()["error"]["details"], reply.get_json()
    assert fenxiao(api).last_position() == before


def test_neither_kind_is_422(api: Api) -> None:
    reply = api.post("/coupons", {"code": "NOTHING"})
    assert reply.status_code == 422 and "_schema" in reply.get_json()["error"]["details"]
    assert fenxiao(api).last_position() == 0


def test_coupon_conflicts_are_409_and_record_nothing(api: Api) -> None:
    api.seed()
    assert api.post("/coupons", SAVE).status_code == 201
    before = fenxiao(api).last_position()
    again = api.post("/coupons", {**SAVE, "code": "save10", "amount_off": cny(5)})
    assert again.status_code == 409 and code_of(again) == "duplicate"
    # A window that ends before it starts is well-formed but impossible: a business
    # refusal like every rule across fields that a schema cannot state.
    backwards = api.post("/coupons", {**SAVE, "code": "BACK",
                                      "valid_from": "2030-01-01T08:00:00+08:00",
                                      "valid_to": "2030-01-01T00:00:00Z"})
    assert backwards.status_code == 409 and code_of(backwards) == "invalid_window"
    assert backwards.get_json()["error"]["details"] == {"field": "valid_to"}
    unknown = api.post("/coupons", {**SAVE, "code": "PEN", "skus": ["PEN"]})
    assert unknown.status_code == 404 and unknown.get_json()["error"]["details"] == \
        {"sku": "PEN"}
    assert fenxiao(api).last_position() == before


def test_roles(api: Api) -> None:
    threshold = {"tiers": [{"min_spend": cny(100), "discount": cny(10)}]}
    for role in ("warehouse", "integration", "distributor", "auditor"):
        assert api.post("/coupons", {**SAVE, "skus": None}, role=role).status_code == 403
        assert api.post("/promotions/threshold", threshold, role=role).status_code == 403
    for path in ("/coupons", "/coupons/SAVE10", "/promotions"):
        for role in ("warehouse", "integration", "distributor"):
            assert api.get(path, role=role).status_code == 403, (path, role)
        assert api.get(path, role=None).status_code == 401
    assert fenxiao(api).last_position() == 0


TIERS = [{"min_spend": cny(5000), "discount": cny(600)},
         {"min_spend": cny(3000), "discount": cny(300)}]


def test_threshold_promotions(api: Api) -> None:
    made = api.post("/promotions/threshold", {"tiers": TIERS, "valid_to":
                                              "2030-01-01T00:00:00+08:00"}, role="operator")
    assert made.status_code == 201, made.get_json()
    body = made.get_json()
    assert body["promotion_id"].startswith("TP") and body["kind"] == "threshold"
    assert body["tiers"] == [TIERS[1], TIERS[0]]  # by min_spend
    assert (body["valid_from"], body["valid_to"]) == (None, "2030-01-01T00:00:00+08:00")
    assert (body["orders"], body["released"], body["discounted"]) == (0, 0, cny(0))
    own = api.post("/promotions/threshold", {"promotion_id": "P-618", "tiers": TIERS[:1]})
    assert own.status_code == 201 and own.get_json()["promotion_id"] == "P-618"
    listed = api.get("/promotions", role="auditor",
                     min_position=own.get_json()["position"]).get_json()
    assert [p["promotion_id"] for p in listed["items"]] == sorted(
        ["P-618", body["promotion_id"]])
    assert listed["items"][1] == {k: v for k, v in body.items() if k != "position"}


@pytest.mark.parametrize("body, status, code", [
    ({"tiers": []}, 422, "validation_error"),
    ({}, 422, "validation_error"),
    ({"tiers": [{"min_spend": cny(100)}]}, 422, "validation_error"),
    ({"tiers": [{"min_spend": cny(100), "discount": cny(0)}]}, 422, "validation_error"),
    ({"tiers": [{"min_spend": cny(100), "discount": {"amount": 5, "currency": "HKD"}}]},
     422, "validation_error"),
    ({"tiers": TIERS, "valid_from": "soon"}, 422, "validation_error"),
    # the rules across tiers and across the window: well-formed, still impossible
    ({"tiers": [{"min_spend": cny(100), "discount": cny(100)}]}, 409, "invalid_tiers"),
    ({"tiers": [{"min_spend": cny(100), "discount": cny(150)}]}, 409, "invalid_tiers"),
    ({"tiers": [TIERS[0], {"min_spend": cny(5000), "discount": cny(700)}]}, 409,
     "invalid_tiers"),
    ({"tiers": TIERS, "valid_from": "2030-01-01T00:00:00Z",
      "valid_to": "2030-01-01T00:00:00Z"}, 409, "invalid_window"),
])
def test_bad_threshold_promotions_record_nothing(api: Api, body: dict, status: int,
                                                 code: str) -> None:
    reply = api.post("/promotions/threshold", body)
    assert (reply.status_code, code_of(reply)) == (status, code), reply.get_json()
    assert fenxiao(api).last_position() == 0


def test_a_threshold_promotion_id_is_used_once(api: Api) -> None:
    assert api.post("/promotions/threshold", {"promotion_id": "P-1", "tiers": TIERS}) \
        .status_code == 201
    again = api.post("/promotions/threshold", {"promotion_id": "P-1", "tiers": TIERS})
    assert again.status_code == 409 and code_of(again) == "duplicate"


# -- redemptions counted ---------------------------------------------------------------

def place(app: Any, order_id: str, customer_id: str, lines: list[tuple[str, int]],
          coupon: str | None = None) -> int:
    """An order placed through the domain, with the coupon redeemed in the same save,
    as placement does (the order's stock is left backordered: only the promotions'
    view is under test here)."""
    def command() -> dict[str, Any]:
        now = app.clock()
        catalog = {"TEA": CatalogEntry("TEA", "Tea", 1999), "CUP": CatalogEntry("CUP", "Cup", 990)}
        redeemed = app.coupon(coupon) if coupon else None
        priced = price_order(lines, catalog, "CNY", now,
                             redeemed.terms if redeemed else None,
                             app.threshold_promotions().active(now))
        order = Order.place(order_id, customer_id, "Ann", "13800000009",
                            {"region": "east", "city": "Hangzhou", "line1": "1 Lake Rd"},
                            priced, plan_allocation(lines, "east", {}), True, None, now)
        changed = [order]
        if redeemed:
            redeemed.redeem(order_id, customer_id, priced.coupon_discount_minor, now)
            changed.append(redeemed)
        return {"position": app.record(*changed)}
    return app.execute(command).body["position"]


def cancel(app: Any, order_id: str, coupon: str | None = None) -> int:
    def command() -> dict[str, Any]:
        now = app.clock()
        order = app.load(Order.create_id(order_id), "order")
        order.cancel("changed my mind", now)
        changed = [order]
        if coupon:
            redeemed = app.coupon(coupon)
            redeemed.release(order_id, "cancelled", now)
            changed.append(redeemed)
        return {"position": app.record(*changed)}
    return app.execute(command).body["position"]


def test_views_count_redemptions_and_releases(api: Api) -> None:
    api.seed()
    app = fenxiao(api)
    api.post("/coupons", {"code": "TEA5", "percent_off_bp": 500, "skus": ["TEA"],
                          "total_limit": 3})
    api.post("/promotions/threshold", {"promotion_id": "P-618", "tiers": TIERS})
    place(app, "O-1", "C-1", [("TEA", 2), ("CUP", 1)], coupon="tea5")  # 4988: tier 3000
    place(app, "O-2", "C-2", [("TEA", 3)], coupon="TEA5")  # 5997: tier 5000
    place(app, "O-3", "C-3", [("CUP", 1)])  # 990: no tier, no coupon
    last = cancel(app, "O-2", coupon="TEA5")
    coupon = api.get("/coupons/tea5", min_position=last).get_json()
    # O-1: 5 % of TEA's 3998 = 199.9 -> 200; O-2's 5 % of 5997 -> 300 was given back
    assert (coupon["redeemed"], coupon["released"], coupon["remaining"]) == (1, 1, 2)
    assert coupon["discounted"] == cny(200)
    promotion = api.get("/promotions", min_position=last).get_json()["items"][0]
    assert (promotion["orders"], promotion["released"]) == (1, 1)
    assert promotion["discounted"] == cny(300)
    assert_rebuild_equals_live(app, PromotionsProjection())



def test_times_keep_their_offset_even_at_the_ends_of_the_calendar(api: Api) -> None:
    early = {"code": "EARLY", "amount_off": cny(1),
             "valid_from": "0001-01-01T00:00:00+23:59",
             "valid_to": "9999-12-31T23:59:59.5-23:59"}
    made = api.post("/coupons", early)
    assert made.status_code == 201, made.get_json()
    got = api.get("/coupons/EARLY", min_position=made.get_json()["position"]).get_json()
    assert got["valid_from"] == "0001-01-01T00:00:00+23:59"
    assert got["valid_to"] == "9999-12-31T23:59:59.500000-23:59"
    now = datetime.now(timezone.utc)
    assert fenxiao(api).coupon("early").terms.check_valid_at(now + timedelta(days=1)) is None


def order(api: Api, order_id: str, customer_id: str, lines: list[tuple[str, int]],
          coupon_code: str | None = None):
    body = {"order_id": order_id,
            "customer": {"customer_id": customer_id, "name": "Ann", "phone": "13800000009"},
            "shipping_address": {"region": "east", "city": "Hangzhou", "line1": "1 Lake Rd"},
            "lines": [{"sku": sku, "quantity": q} for sku, q in lines],
            "allow_backorder": True}
    if coupon_code:
        body["coupon_code"] = coupon_code
    return api.post("/orders", body, role="integration")


def test_orders_placed_over_http_are_counted(api: Api) -> None:
    api.seed()
    api.post("/coupons", {"code": "ONCE", "amount_off": cny(500), "per_customer_limit": 1})
    api.post("/promotions/threshold", {"promotion_id": "P-618", "tiers": TIERS})
    placed = order(api, "O-1", "C-1", [("TEA", 2)], coupon_code="once")
    assert placed.status_code == 201, placed.get_json()
    refused = order(api, "O-2", "C-1", [("TEA", 1)], coupon_code="ONCE")
    assert refused.status_code == 409 and code_of(refused) == "coupon_limit_reached"
    assert order(api, "O-3", "C-2", [("CUP", 4)], coupon_code="ONCE").status_code == 201
    cancelled = api.post("/orders/O-1/cancel", {"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.get_json()
    last = cancelled.get_json()["position"]
    coupon = api.get("/coupons/ONCE", min_position=last).get_json()
    assert (coupon["redeemed"], coupon["released"], coupon["discounted"]) == (1, 1, cny(500))
    promotion = api.get("/promotions", min_position=last).get_json()["items"][0]
    # O-1 (3998) and O-3 (3960) both reached the 3000 tier (300 off); O-1 gave it back
    assert (promotion["orders"], promotion["released"], promotion["discounted"]) == \
        (1, 1, cny(300))
