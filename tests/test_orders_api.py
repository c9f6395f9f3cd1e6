"""Orders over HTTP, worked examples (both databases): placement with split allocation,
backorders and shortages, promotions, payment, cancellation, roles, ownership and bad
input. Every figure is worked out by hand in the comments, not by the code under test."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Iterator

import pytest
from sqlalchemy import select

from api import create_app
from commands import Fenxiao
from commands.settings import Settings
from domain.coupons import Coupon, ThresholdPromotions
from domain.promotions import CouponTerms, ThresholdTerms, Tier
from projections.ledger import balances
from projections.runner import wait_for_position
from tests.api_support import Api
from tests.test_api_distributors import network

CUSTOMER = {"customer_id": "C-1", "name": "Li Lei", "phone": "13800138000"}
EAST = {"region": "east", "city": "Shanghai", "line1": "1 Nanjing Rd"}


def code_of(response) -> str:
    return response.get_json()["error"]["code"]


def app_of(api: Api) -> Fenxiao:
    return api.client.application.extensions["fenxiao"]


def stock(api: Api) -> int:
    """TEA (19.99) in three warehouses: east 3, south 10, north 6; CUP (9.90): south 5."""
    for warehouse_id, region in (("W-EAST", "east"), ("W-SOUTH", "south"),
                                 ("W-NORTH", "north")):
        api.post("/warehouses", {"warehouse_id": warehouse_id, "name": warehouse_id,
                                 "region": region})
    for sku, price in (("TEA", 1999), ("CUP", 990)):
        api.post("/products", {"sku": sku, "name": sku.title(),
                               "price": {"amount": price, "currency": "CNY"}})
    for sku, warehouse_id, quantity in (("TEA", "W-EAST", 3), ("TEA", "W-SOUTH", 10),
                                        ("TEA", "W-NORTH", 6), ("CUP", "W-SOUTH", 5)):
        reply = api.post("/stock/receipts", {"sku": sku, "warehouse_id": warehouse_id,
                                             "quantity": quantity, "reference": "PO"})
        assert reply.status_code == 201, reply.get_json()
    return reply.get_json()["position"]


def body(lines: list[tuple[str, int]], **extra: Any) -> dict[str, Any]:
    return {"customer": CUSTOMER, "shipping_address": EAST,
            "lines": [{"sku": sku, "quantity": q} for sku, q in lines], **extra}


def place(api: Api, lines: list[tuple[str, int]], role: str = "integration",
          **extra: Any) -> dict[str, Any]:
    reply = api.post("/orders", body(lines, **extra), role=role)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def inventory(api: Api, sku: str, position: int) -> dict[str, dict[str, int]]:
    found = api.get(f"/inventory/{sku}", min_position=position).get_json()
    return {w["warehouse_id"]: {"on_hand": w["on_hand"], "reserved": w["reserved"]}
            for w in found["warehouses"]}


def allocations(line: dict[str, Any]) -> list[tuple[str, int]]:
    return [(a["warehouse_id"], a["quantity"]) for a in line["allocations"]]


def ledger_balances(app: Fenxiao, position: int) -> dict[str, int]:
    assert wait_for_position(app, ["ledger"], position, 10.0)
    with app.engine.connect() as conn:
        return {r.account: r.debit_minor - r.credit_minor
                for r in conn.execute(select(balances))}


def issue_coupon(app: Fenxiao, terms: CouponTerms) -> None:
    app.execute(lambda: {"position": app.record(Coupon.issue(terms, "CNY", app.clock()))})


def add_thresholds(app: Fenxiao, *tiers: tuple[int, int]) -> None:
    def add() -> dict[str, Any]:
        book = app.find(ThresholdPromotions.create_id()) or ThresholdPromotions()
        book.add(ThresholdTerms("T-1", tuple(Tier(s, d) for s, d in tiers)), "CNY",
                 app.clock())
        return {"position": app.record(book)}
    app.execute(add)


# -- placement ----------------------------------------------------------------------------

def test_placement_splits_a_line_region_first_then_most_available(api: Api) -> None:
    stock(api)
    # 12 TEA to the east: east's own 3 first, then the warehouse with most, south (10):
    # 9 of its 10; north (6) is not needed.
    placed = place(api, [("TEA", 12), ("CUP", 2)], order_id="O-1")
    assert placed["status"] == "placed" and placed["order_id"] == "O-1"
    tea, cup = placed["lines"]
    assert allocations(tea) == [("W-EAST", 3), ("W-SOUTH", 9)]
    assert allocations(cup) == [("W-SOUTH", 2)]
    assert (tea["unit_price"], tea["gross"], tea["net"], tea["backordered"]) == \
        (1999, 23988, 23988, 0)
    assert (placed["subtotal"], placed["discount"], placed["shipping_fee"],
            placed["total"], placed["paid"]) == (23988 + 1980, 0, 0, 25968, 0)
    assert placed["distributor_id"] is None and placed["customer_id"] == "C-1"
    assert inventory(api, "TEA", placed["position"]) == {
        "W-EAST": {"on_hand": 3, "reserved": 3}, "W-NORTH": {"on_hand": 6, "reserved": 0},
        "W-SOUTH": {"on_hand": 10, "reserved": 9}}
    read = api.get("/orders/O-1", role="auditor", min_position=placed["position"])
    assert read.status_code == 200
    assert read.get_json() == {k: v for k, v in placed.items() if k != "position"}
    assert datetime.fromisoformat(read.get_json()["created_at"]).tzinfo is not None


def test_a_price_change_after_placement_leaves_the_order_alone(api: Api) -> None:
    stock(api)
    placed = place(api, [("CUP", 1)])
    api.post("/products/CUP/price", {"price": {"amount": 1500, "currency": "CNY"}})
    later = place(api, [("CUP", 1)])
    assert (placed["total"], later["total"]) == (990, 1500)
    read = api.get(f"/orders/{placed['order_id']}", min_position=later["position"])
    assert read.get_json()["total"] == 990


def test_shortage_is_refused_with_nothing_reserved_or_backordered_if_accepted(
        api: Api) -> None:
    position = stock(api)
    app = app_of(api)
    before = app.last_position()
    short = api.post("/orders", body([("CUP", 1), ("TEA", 25)]), role="integration")
    assert short.status_code == 409 and code_of(short) == "insufficient_stock"
    details = short.get_json()["error"]["details"]
    assert (details["sku"], details["requested"], details["available"]) == ("TEA", 25, 19)
    assert app.last_position() == before  # nothing reserved, nothing recorded
    assert inventory(api, "CUP", position)["W-SOUTH"]["reserved"] == 0

    waiting = place(api, [("TEA", 25)], allow_backorder=True, order_id="O-BO")
    (line,) = waiting["lines"]
    assert waiting["status"] == "backordered"
    assert allocations(line) == [("W-EAST", 3), ("W-SOUTH", 10), ("W-NORTH", 6)]
    assert line["backordered"] == 6
    # Stock arrives; the backorder is filled first come, first served (the process
    # manager may have done it already: then this is a no-op).
    api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W-NORTH", "quantity": 8,
                                 "reference": "PO-2"})
    app.execute(lambda: app.fill_backorders("TEA"))
    filled = api.get("/orders/O-BO", min_position=app.last_position()).get_json()
    assert filled["status"] == "placed"
    assert filled["lines"][0]["backordered"] == 0
    assert allocations(filled["lines"][0])[-1] == ("W-NORTH", 6)
    assert inventory(api, "TEA", app.last_position())["W-NORTH"] == {"on_hand": 14,
                                                                     "reserved": 12}


def test_unknown_and_delisted_products(api: Api) -> None:
    stock(api)
    before = app_of(api).last_position()
    unknown = api.post("/orders", body([("NOPE", 1)]))
    assert unknown.status_code == 404 and unknown.get_json()["error"]["details"] == {
        "sku": "NOPE"}
    api.post("/products/CUP/delist")
    before = app_of(api).last_position()
    delisted = api.post("/orders", body([("TEA", 1), ("CUP", 1)]))
    assert delisted.status_code == 409 and code_of(delisted) == "product_unavailable"
    assert app_of(api).last_position() == before


# -- promotions ----------------------------------------------------------------------------

@pytest.fixture
def shop(db_url: str) -> Iterator[Api]:
    """The API of a shop charging 8.00 shipping below 100.00 of goods."""
    app = Fenxiao(Settings(database_url=db_url, rate_limit=None, auth_failure_limit=None,
                           shipping_fee_minor=800, free_shipping_min_minor=10000))
    flask = create_app(app.settings, application=app, start_worker=True)
    yield Api(flask.test_client(), app.engine)
    flask.extensions["fenxiao_runner"].stop()
    app.close()


def test_coupon_and_threshold_are_spread_exactly_over_the_lines(shop: Api) -> None:
    stock(shop)
    app = app_of(shop)
    add_thresholds(app, (5000, 500), (7000, 800))
    issue_coupon(app, CouponTerms(code="TEA10", amount_off_minor=1000, skus=("TEA",),
                                  total_limit=5))
    placed = place(shop, [("TEA", 3), ("CUP", 2)], coupon_code="tea10")
    # Gross: TEA 3 × 1999 = 5997, CUP 2 × 990 = 1980; subtotal 7977 reaches the 7000 tier:
    # 800 off, spread by gross: TEA 800·5997/7977 = 601.43, CUP 198.57 -> 601 + 198 = 799,
    # the last fen to the larger remainder (CUP, .57): 601 and 199. The coupon (10.00 on
    # TEA only) takes 1000 more off TEA. Nets: 5997 − 1601 = 4396, 1980 − 199 = 1781.
    tea, cup = placed["lines"]
    assert (tea["discount"], tea["net"]) == (1601, 4396)
    assert (cup["discount"], cup["net"]) == (199, 1781)
    assert placed["subtotal"] == 7977 and placed["discount"] == 1800
    assert tea["net"] + cup["net"] == placed["subtotal"] - placed["discount"]
    # Goods after discounts, 61.77, are below 100.00: shipping 8.00 is charged.
    assert placed["shipping_fee"] == 800
    assert placed["total"] == tea["net"] + cup["net"] + 800 == 6977
    assert placed["coupon_code"] == "TEA10"
    coupon = app.repository.get(Coupon.create_id("TEA10"))
    assert coupon.redeemed_by(placed["order_id"]) and coupon.redeemed == 1
    # Goods at 100.00 or more ship free (checked on the discounted goods).
    free = place(shop, [("TEA", 6)])
    assert free["discount"] == 800 and free["shipping_fee"] == 0
    assert free["total"] == 6 * 1999 - 800


def test_coupon_refusals(api: Api) -> None:
    stock(api)
    app = app_of(api)
    issue_coupon(app, CouponTerms(code="BIG", amount_off_minor=500, min_spend_minor=5000))
    before = app.last_position()
    unknown = api.post("/orders", body([("TEA", 1)], coupon_code="NOPE"))
    assert unknown.status_code == 404 and code_of(unknown) == "not_found"
    small = api.post("/orders", body([("TEA", 1)], coupon_code="BIG"))
    assert small.status_code == 409 and code_of(small) == "coupon_not_applicable"
    assert app.last_position() == before


# -- payment -------------------------------------------------------------------------------

def test_payment_must_match_posts_cash_and_starts_fulfilment(api: Api) -> None:
    stock(api)
    app = app_of(api)
    placed = place(api, [("TEA", 12)], order_id="O-1")
    assert placed["total"] == 12 * 1999 == 23988
    before = app.last_position()
    wrong = api.post("/orders/O-1/payments", {"amount": {"amount": 100, "currency": "CNY"},
                                              "payment_reference": "PAY-1"})
    assert wrong.status_code == 409 and code_of(wrong) == "amount_mismatch"
    assert wrong.get_json()["error"]["details"] == {"expected": 23988, "received": 100}
    assert app.last_position() == before
    paid = api.post("/orders/O-1/payments", {"amount": {"amount": 23988, "currency": "CNY"},
                                             "payment_reference": "PAY-1"},
                    role="integration")
    assert paid.status_code == 200, paid.get_json()
    order = paid.get_json()
    # Every line is allocated, so fulfilment starts at once: a shipment per warehouse.
    assert order["status"] == "fulfilling" and order["paid"] == 23988
    assert sorted((s["warehouse_id"], s["status"]) for s in order["shipments"]) == [
        ("W-EAST", "created"), ("W-SOUTH", "created")]
    assert order["lines"][0]["paid"] == 23988
    books = ledger_balances(app, order["position"])
    assert books["merchant:cash"] == 23988 and books["merchant:sales"] == -23988
    read = api.get("/orders/O-1", min_position=order["position"]).get_json()
    assert read == {k: v for k, v in order.items() if k != "position"}
    again = api.post("/orders/O-1/payments", {"amount": {"amount": 23988, "currency": "CNY"},
                                              "payment_reference": "PAY-2"})
    assert again.status_code == 409 and code_of(again) == "invalid_transition"
    other = place(api, [("CUP", 1)])
    reused = api.post(f"/orders/{other['order_id']}/payments",
                      {"amount": {"amount": 990, "currency": "CNY"},
                       "payment_reference": "PAY-1"})
    assert reused.status_code == 409 and code_of(reused) == "duplicate"
    wrong_currency = api.post(f"/orders/{other['order_id']}/payments",
                              {"amount": {"amount": 990, "currency": "USD"},
                               "payment_reference": "PAY-3"})
    assert wrong_currency.status_code == 422
    assert "amount" in wrong_currency.get_json()["error"]["details"]


def test_a_paid_backorder_waits_and_ships_when_filled(api: Api) -> None:
    stock(api)
    app = app_of(api)
    waiting = place(api, [("TEA", 20)], allow_backorder=True, order_id="O-BO")
    paid = api.post("/orders/O-BO/payments", {"amount": {"amount": 20 * 1999,
                                                          "currency": "CNY"},
                                               "payment_reference": "PAY-BO"}).get_json()
    assert (paid["status"], paid["paid"], paid["shipments"]) == ("backordered", 39980, [])
    assert waiting["lines"][0]["backordered"] == 1
    api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W-EAST", "quantity": 1,
                                 "reference": "PO-2"})
    app.execute(lambda: app.fill_backorders("TEA"))
    filled = api.get("/orders/O-BO", min_position=app.last_position()).get_json()
    assert filled["status"] == "fulfilling"
    assert sorted(s["warehouse_id"] for s in filled["shipments"]) == [
        "W-EAST", "W-NORTH", "W-SOUTH"]


# -- cancellation --------------------------------------------------------------------------

def test_cancel_before_payment_releases_stock_and_coupon(api: Api) -> None:
    stock(api)
    app = app_of(api)
    issue_coupon(app, CouponTerms(code="ONCE", amount_off_minor=100, total_limit=1))
    placed = place(api, [("TEA", 12)], coupon_code="ONCE", order_id="O-1")
    used_up = api.post("/orders", body([("CUP", 1)], coupon_code="ONCE"))
    assert used_up.status_code == 409 and code_of(used_up) == "coupon_exhausted"
    cancelled = api.post("/orders/O-1/cancel", {"reason": "changed mind"}, role="operator")
    assert cancelled.status_code == 200, cancelled.get_json()
    order = cancelled.get_json()
    assert (order["status"], order["refunded"], order["cancel_reason"]) == (
        "cancelled", 0, "changed mind")
    assert all(w["reserved"] == 0 for w in inventory(api, "TEA", order["position"]).values())
    assert place(api, [("CUP", 1)], coupon_code="ONCE")["discount"] == 100  # free again
    assert code_of(api.post("/orders/O-1/cancel", {"reason": "again"})) == \
        "invalid_transition"
    assert placed["total"] == 23988 - 100


def test_cancel_after_payment_refunds_in_full_and_balances(api: Api) -> None:
    stock(api)
    app = app_of(api)
    place(api, [("TEA", 12), ("CUP", 1)], order_id="O-1")
    total = 12 * 1999 + 990
    api.post("/orders/O-1/payments", {"amount": {"amount": total, "currency": "CNY"},
                                      "payment_reference": "PAY-1"})
    cancelled = api.post("/orders/O-1/cancel", {"reason": "out of stock locally"},
                         role="integration").get_json()
    assert (cancelled["status"], cancelled["paid"], cancelled["refunded"]) == (
        "cancelled", total, total)
    assert [line["refunded"] for line in cancelled["lines"]] == [23988, 990]
    assert {s["status"] for s in cancelled["shipments"]} == {"cancelled"}
    books = ledger_balances(app, cancelled["position"])
    # cash in 24978, then out again: refunds (a contra account of sales) against cash.
    assert books["merchant:cash"] == 0
    assert books["merchant:sales"] == -total and books["merchant:refunds"] == total
    assert sum(books.values()) == 0
    assert all(w["reserved"] == 0
               for w in inventory(api, "TEA", cancelled["position"]).values())
    read = api.get("/orders/O-1", min_position=cancelled["position"]).get_json()
    assert read == {k: v for k, v in cancelled.items() if k != "position"}


# -- who may do what ------------------------------------------------------------------------

def test_roles(api: Api) -> None:
    stock(api)
    place(api, [("CUP", 1)], order_id="O-1")
    for role in ("auditor", "operator", "warehouse", "distributor"):
        assert api.post("/orders", body([("CUP", 1)]), role=role).status_code == 403, role
    for role in ("auditor", "operator", "warehouse"):
        assert api.post("/orders/O-1/payments", {
            "amount": {"amount": 990, "currency": "CNY"}, "payment_reference": "P"},
            role=role).status_code == 403, role
    for role in ("auditor", "warehouse"):
        assert api.post("/orders/O-1/cancel", {"reason": "x"}, role=role).status_code == 403
    assert api.get("/orders/O-1", role="warehouse").status_code == 403
    assert api.get("/orders", role="warehouse").status_code == 403
    assert api.post("/orders", body([("CUP", 1)]), role=None).status_code == 401


def test_a_distributor_sees_only_its_own_orders(api: Api) -> None:
    stock(api)
    codes = network(api)  # D1 is the distributor token's own; D2 another
    mine = place(api, [("CUP", 1)], order_id="O-D1", referral_code=codes["D1"])
    theirs = place(api, [("CUP", 1)], order_id="O-D2", distributor_id="D2",
                   customer={**CUSTOMER, "customer_id": "C-2"})
    nobody = place(api, [("CUP", 1)], order_id="O-NONE",
                   customer={**CUSTOMER, "customer_id": "C-3"})
    assert (mine["distributor_id"], theirs["distributor_id"], nobody["distributor_id"]) == (
        "D1", "D2", None)
    last = nobody["position"]
    assert api.get("/orders/O-D1", role="distributor", min_position=last).status_code == 200
    for order_id in ("O-D2", "O-NONE", "O-MISSING"):
        hidden = api.get(f"/orders/{order_id}", role="distributor")
        assert hidden.status_code == 404 and code_of(hidden) == "not_found"
        for path, payload in (("payments", {"amount": {"amount": 990, "currency": "CNY"},
                                            "payment_reference": "P"}),
                              ("cancel", {"reason": "x"})):
            assert api.post(f"/orders/{order_id}/{path}", payload,
                            role="distributor").status_code == 404
    assert api.post("/orders/O-D1/cancel", {"reason": "x"},
                    role="distributor").status_code == 403
    listed = api.get("/orders", role="distributor", min_position=last).get_json()
    assert [o["order_id"] for o in listed["items"]] == ["O-D1"]
    asked = api.get("/orders", role="distributor", distributor_id="D2").get_json()
    assert asked["items"] == []
    everyone = api.get("/orders", role="operator", min_position=last).get_json()
    assert [o["order_id"] for o in everyone["items"]] == ["O-NONE", "O-D2", "O-D1"]
    by_distributor = api.get("/orders", role="auditor", distributor_id="D2").get_json()
    assert [o["order_id"] for o in by_distributor["items"]] == ["O-D2"]
    by_customer = api.get("/orders", customer_id="C-1").get_json()
    assert [o["order_id"] for o in by_customer["items"]] == ["O-D1"]


def test_the_bound_distributor_is_credited_and_an_inactive_one_refused(api: Api) -> None:
    stock(api)
    codes = network(api)
    place(api, [("CUP", 1)], referral_code=codes["D1"])  # binds C-1 to D1
    assert place(api, [("CUP", 1)])["distributor_id"] == "D1"
    assert place(api, [("CUP", 1)], distributor_id="D3")["distributor_id"] == "D3"
    api.post("/distributors/D3/suspend", {"reason": "audit"})
    before = app_of(api).last_position()
    refused = api.post("/orders", body([("CUP", 1)], distributor_id="D3"))
    assert refused.status_code == 409 and code_of(refused) == "distributor_inactive"
    conflict = api.post("/orders", body([("CUP", 1)], distributor_id="D2",
                                        referral_code=codes["D1"]))
    assert conflict.status_code == 409 and code_of(conflict) == "attribution_conflict"
    missing = api.post("/orders", body([("CUP", 1)], distributor_id="D9"))
    assert missing.status_code == 404
    assert app_of(api).last_position() == before


# -- bad input ------------------------------------------------------------------------------

BAD = [
    ({"lines": []}, "lines"),
    ({"lines": [{"sku": "TEA", "quantity": 0}]}, "lines"),
    ({"lines": [{"sku": "TEA", "quantity": 10_001}]}, "lines"),
    ({"lines": [{"sku": "TEA", "quantity": 1.5}]}, "lines"),
    ({"customer": {**CUSTOMER, "phone": "12345"}}, "customer"),
    ({"customer": {"customer_id": "C-1", "name": " ", "phone": "13800138000"}}, "customer"),
    ({"shipping_address": {"region": "east", "line1": "1 Rd"}}, "shipping_address"),
    ({"order_id": "no spaces allowed"}, "order_id"),
    ({"allow_backorder": "yes"}, "allow_backorder"),
    ({"unexpected": 1}, "unexpected"),
]


@pytest.mark.parametrize("change, field", BAD)
def test_bad_input_is_422_naming_the_field_and_records_nothing(
        api: Api, change: dict[str, Any], field: str) -> None:
    stock(api)
    before = app_of(api).last_position()
    reply = api.post("/orders", {**body([("TEA", 1)]), **change})
    assert reply.status_code == 422, reply.get_json()
    assert field in reply.get_json()["error"]["details"], reply.get_json()
    assert app_of(api).last_position() == before


def test_each_sku_once_is_a_rule_of_orders_not_of_the_schema(api: Api) -> None:
    stock(api)
    before = app_of(api).last_position()
    twice = api.post("/orders", body([("TEA", 1), ("CUP", 1), ("TEA", 2)]))
    assert twice.status_code == 409 and code_of(twice) == "duplicate_line"
    assert twice.get_json()["error"]["details"] == {"sku": "TEA", "skus": ["TEA"]}
    assert app_of(api).last_position() == before


def test_a_client_order_id_is_used_once(api: Api) -> None:
    stock(api)
    place(api, [("CUP", 1)], order_id="O-1")
    again = api.post("/orders", body([("CUP", 1)], order_id="O-1"))
    assert again.status_code == 409 and code_of(again) == "duplicate"
    generated = place(api, [("CUP", 1)])
    assert generated["order_id"].startswith("O")


def test_orders_list_pages_and_filters_by_status(api: Api) -> None:
    stock(api)
    ids = [place(api, [("CUP", 1)], order_id=f"O-{n}")["order_id"] for n in range(3)]
    cancelled = api.post("/orders/O-1/cancel", {"reason": "x"}).get_json()
    first = api.get("/orders", limit=2, min_position=cancelled["position"]).get_json()
    assert [o["order_id"] for o in first["items"]] == ["O-2", "O-1"]
    second = api.get("/orders", limit=2, cursor=first["next_cursor"]).get_json()
    assert [o["order_id"] for o in second["items"]] == ["O-0"]
    assert second["next_cursor"] is None
    only = api.get("/orders", status="cancelled").get_json()
    assert [o["order_id"] for o in only["items"]] == ["O-1"]
    assert api.get("/orders", status="lost").status_code == 422
    assert api.get("/orders", cursor="bm90LWEtY3Vyc29y").status_code == 422
    assert len(ids) == 3
