"""After-sales through the HTTP API (both databases): worked examples of refunds with
exact commission reversal, the quantity and return-window rules, refunds never beyond
what was paid (across cases and concurrent requests), roles, ownership, bad input, and
the case read model rebuilt equal to live. Figures are worked out by hand in comments."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import pytest
from sqlalchemy import select

from commands import Fenxiao
from commands.tick import tick
from domain.accruals import LineCommission
from domain.coupons import Coupon
from domain.errors import InvalidCommand
from domain.orders import BackorderQueue
from domain.promotions import CouponTerms
from projections.aftersales import AfterSalesProjection
from projections.commissions import CommissionsProjection
from projections.ledger import balances
from projections.policies import all_process_managers
from projections.runner import ProjectionRunner, wait_for_position
from projections.shipments import ShipmentsProjection
from tests.api_support import Api, assert_rebuild_equals_live
from tests.test_api_distributors import network
from tests.test_fulfilment_api import (LATER, NOW, carrier_event, dispatched, paid_order, seed,
                                       set_clock, stock, the_app)

DELIVERED_AT = "2026-11-26T10:00:00+08:00"  # the return window (7 days) runs to Dec 3


def code_of(reply: Any) -> str:
    return reply.get_json()["error"]["code"]


def money(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def delivered_order(api: Api, order_id: str, lines: Sequence[tuple[str, int]],
                    distributor_id: str | None = "D2") -> None:
    """Placed for `distributor_id` (D2, whose upline is D1), paid, shipped, delivered."""
    set_clock(api, NOW)
    deliver(api, paid_order(api, order_id, lines, distributor_id=distributor_id))


def deliver(api: Api, shipment_ids: Sequence[str]) -> None:
    """Dispatched now, delivered (by the carrier's word) on Nov 26; the clock is LATER."""
    set_clock(api, NOW)
    for n, sent in enumerate([dispatched(api, shipment_id) for shipment_id in shipment_ids]):
        reply = carrier_event(api, sent["carrier"], f"E-{sent['shipment_id']}-{n}",
                              sent["tracking_number"], "delivered", DELIVERED_AT)
        assert reply.status_code == 200, reply.get_json()


def shop(api: Api) -> Fenxiao:
    """W1 (east) 10 TEA at 19.99, W2 (south) 5 CUP at 9.90, carriers, D1 <- D2."""
    seed(api)
    network(api)
    return the_app(api)


def open_case(api: Api, order_id: str, type: str, lines: Sequence[tuple[str, int]],
              role: str = "integration", **extra: Any) -> dict[str, Any]:
    reply = api.post("/after-sales", {"order_id": order_id, "type": type,
                                      "lines": [{"sku": s, "quantity": q} for s, q in lines],
                                      "reason": "broken", **extra}, role=role)
    assert reply.status_code == 201, reply.get_json()
    return reply.get_json()


def step(api: Api, case_id: str, action: str, body: Any = None, role: str = "operator",
         status: int = 200) -> dict[str, Any]:
    reply = api.post(f"/after-sales/{case_id}/{action}", body, role=role)
    assert reply.status_code == status, reply.get_json()
    return reply.get_json()


def returned(api: Api, order_id: str, sku: str, quantity: int, warehouse_id: str,
             case_id: str) -> None:
    """A return_refund case approved and its goods restocked into `warehouse_id`."""
    open_case(api, order_id, "return_refund", [(sku, quantity)], case_id=case_id)
    step(api, case_id, "approve")
    step(api, case_id, "receive", {"restock": True, "warehouse_id": warehouse_id},
         role="warehouse")


def refund(api: Api, case_id: str, amount: int, reference: str) -> Any:
    return api.post(f"/after-sales/{case_id}/refund",
                    {"amount": money(amount), "refund_reference": reference},
                    role="operator")


def settle(app: Fenxiao) -> int:
    """Run the process managers (commission accrual and reversal) over the whole log, then
    wait until the read models have followed it (the test worker runs projections only)."""
    ProjectionRunner(app, [], process_managers=all_process_managers()).catch_up()
    head = app.last_position()
    assert wait_for_position(app, ["ledger", "aftersales", "orders"], head, 20.0) \
        is not None
    return head


def commission(app: Fenxiao, order_id: str, line_no: int) -> dict[int, tuple[int, int]]:
    """Per level: (accrued, reversed)."""
    c = app.repository.get(LineCommission.create_id(order_id, line_no))
    return {a["level"]: (a["amount_minor"], c.reversed_by_level[a["level"]])
            for a in c.accruals}


def books(app: Fenxiao) -> dict[str, int]:
    with app.engine.connect() as conn:
        return {r.account: r.debit_minor - r.credit_minor
                for r in conn.execute(select(balances))}


# -- worked examples ----------------------------------------------------------------------

def test_a_three_unit_line_refunded_one_unit_at_a_time(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-1", [("CUP", 3)])
    settle(app)
    # Net 3 × 990 = 2970. Commission: L1 (D2) 10 % = 297, L2 (D1) 5 % = 148.5 -> 149.
    assert commission(app, "O-1", 1) == {1: (297, 0), 2: (149, 0)}
    reversed_after = []
    for n in (1, 2, 3):
        returned(api, "O-1", "CUP", 1, "W2", f"AS-{n}")
        if n == 3:  # one unit's worth is 990: a fen more is refused, nothing recorded
            before = app.last_position()
            too_much = refund(api, "AS-3", 991, "R-3")
            assert too_much.status_code == 409 and code_of(too_much) == "refund_exceeds_paid"
            assert app.last_position() == before
        done = refund(api, f"AS-{n}", 990, f"R-{n}")
        assert done.status_code == 200, done.get_json()
        assert (done.get_json()["status"], done.get_json()["refunded"]) == ("refunded", 990)
        settle(app)
        reversed_after.append(commission(app, "O-1", 1))
    # L2 reverses half-up shares of 149 cumulatively: 149·990/2970 = 49.67 -> 50,
    # 149·1980/2970 = 99.33 -> 99 (49 more), then exactly the rest, 149 (50 more).
    # L1: 99, 198, 297. Accrued − reversed is exactly 0 at the end.
    assert [r[2][1] for r in reversed_after] == [50, 99, 149]
    assert [r[1][1] for r in reversed_after] == [99, 198, 297]
    assert all(accrued == reversed for accrued, reversed in reversed_after[-1].values())
    # Each commission entry says which refund reversed how much.
    entries = api.get("/distributors/D1/commissions", role="auditor",
                      min_position=app.last_position()).get_json()["items"]
    (entry,) = [e for e in entries if e["order_id"] == "O-1"]
    assert (entry["level"], entry["amount"], entry["reversed"], entry["status"]) == (
        2, 149, 149, "reversed")
    assert [(r["refund_reference"], r["amount"], r["refunded_total"], r["clawback"])
            for r in entry["reversals"]] == [("R-1", 50, 990, False), ("R-2", 49, 1980, False),
                                             ("R-3", 50, 2970, False)]
    assert_rebuild_equals_live(app, CommissionsProjection(), every_table=True)
    order = api.get("/orders/O-1", min_position=app.last_position()).get_json()
    assert (order["paid"], order["refunded"], order["lines"][0]["refunded"]) == (
        2970, 2970, 2970)
    # A fourth unit was never delivered: refused, nothing recorded.
    before = app.last_position()
    fourth = api.post("/after-sales", {"order_id": "O-1", "type": "return_refund",
                                       "lines": [{"sku": "CUP", "quantity": 1}],
                                       "reason": "again"}, role="integration")
    assert fourth.status_code == 409 and code_of(fourth) == "exceeds_delivered"
    assert app.last_position() == before
    # The goods came back: CUP in W2 had 5, 3 were issued, 3 restocked.
    stock = api.get("/inventory/CUP", min_position=app.last_position()).get_json()
    assert stock["on_hand"] == 5 and stock["reserved"] == 0
    ledger = books(app)
    assert ledger["merchant:refunds"] == 2970 and sum(ledger.values()) == 0
    case = api.get("/after-sales/AS-3", role="auditor",
                   min_position=app.last_position()).get_json()
    assert [h["status"] for h in case["history"]] == [
        "requested", "approved", "received", "refunded"]
    assert [h["actor"] for h in case["history"]] == [
        "test-integration", "test-operator", "test-warehouse", "test-operator"]
    closed = step(api, "AS-3", "close")
    assert closed["status"] == "closed"


def test_a_coupon_spread_over_lines_then_one_line_refunded(api: Api) -> None:
    app = shop(api)
    app.execute(lambda: {"position": app.record(Coupon.issue(
        CouponTerms(code="ALL10", amount_off_minor=1000), "CNY", app.clock()))})
    placed = api.post("/orders", {
        "order_id": "O-2", "distributor_id": "D2", "coupon_code": "ALL10",
        "customer": {"customer_id": "C-2", "name": "Han Meimei", "phone": "13800138001"},
        "shipping_address": {"region": "east", "city": "Hangzhou", "line1": "2 Rd"},
        "lines": [{"sku": "TEA", "quantity": 1}, {"sku": "CUP", "quantity": 2}]},
        role="integration").get_json()
    # Gross TEA 1999, CUP 1980 (3979). The coupon's 1000 by gross: TEA 502.39 -> 502,
    # CUP 497.61 -> 497; the last fen to the larger remainder (CUP): 502 and 498.
    # Nets: TEA 1497, CUP 1482.
    assert [(x["discount"], x["net"]) for x in placed["lines"]] == [(502, 1497), (498, 1482)]
    paid = api.post("/orders/O-2/payments", {"amount": money(placed["total"]),
                                             "payment_reference": "PAY-O-2"})
    assert paid.status_code == 200
    deliver(api, [x["shipment_id"] for x in paid.get_json()["shipments"]])
    settle(app)
    # CUP line commission on its net 1482: L1 148.2 -> 148, L2 74.1 -> 74.
    assert commission(app, "O-2", 2) == {1: (148, 0), 2: (74, 0)}
    tea_before = commission(app, "O-2", 1)
    returned(api, "O-2", "CUP", 2, "W2", "AS-CUP")
    # The refund is the net paid for the line (after its share of the coupon), no more.
    over = refund(api, "AS-CUP", 1483, "R-CUP")
    assert over.status_code == 409 and code_of(over) == "refund_exceeds_paid"
    assert refund(api, "AS-CUP", 1482, "R-CUP").status_code == 200
    settle(app)
    assert commission(app, "O-2", 2) == {1: (148, 148), 2: (74, 74)}
    assert commission(app, "O-2", 1) == tea_before  # the other line is untouched
    order = api.get("/orders/O-2", min_position=app.last_position()).get_json()
    assert [x["refunded"] for x in order["lines"]] == [0, 1482]
    assert order["refunded"] == 1482


def test_refunds_never_exceed_paid_across_cases(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-3", [("CUP", 2)])  # line paid 1980
    returned(api, "O-3", "CUP", 1, "W2", "AS-R")
    assert refund(api, "AS-R", 990, "R-1").status_code == 200
    # A compensation (no goods back) for the other unit's worth, 990: paid in full.
    comp = open_case(api, "O-3", "compensation", [("CUP", 1)], amount=money(990),
                     case_id="AS-C1")
    assert comp["amount"] == 990
    step(api, "AS-C1", "approve")
    paid = refund(api, "AS-C1", 990, "R-2")
    assert paid.status_code == 200 and paid.get_json()["status"] == "compensated"
    # Nothing is left of the line: a second compensation is refused by the order.
    open_case(api, "O-3", "compensation", [("CUP", 1)], amount=money(1), case_id="AS-C2")
    step(api, "AS-C2", "approve")
    before = app.last_position()
    refused = refund(api, "AS-C2", 1, "R-3")
    assert refused.status_code == 409 and code_of(refused) == "refund_exceeds_paid"
    assert app.last_position() == before
    settle(app)
    # The compensation does not reverse commission (default setting): only the
    # refunded unit's share is reversed: L1 198·990/1980 = 99, L2 99·½ = 49.5 -> 50.
    assert commission(app, "O-3", 1) == {1: (198, 99), 2: (99, 50)}
    order = api.get("/orders/O-3", min_position=app.last_position()).get_json()
    assert order["refunded"] == 1980 == order["paid"]
    ledger = books(app)
    assert ledger["merchant:refunds"] == 1980 and sum(ledger.values()) == 0


def test_compensation_reverses_commission_when_the_setting_says_so(api: Api) -> None:
    app = shop(api)
    app.settings = replace(app.settings, compensation_reverses_commission=True)
    delivered_order(api, "O-13", [("CUP", 2)])  # 1980: L1 198, L2 99
    open_case(api, "O-13", "compensation", [("CUP", 2)], amount=money(495),
              case_id="AS-1")
    step(api, "AS-1", "approve")
    # A compensation is refused up front beyond what its goods were paid (2 × 990).
    too_much = api.post("/after-sales", {"order_id": "O-13", "type": "compensation",
                                         "lines": [{"sku": "CUP", "quantity": 1}],
                                         "amount": money(991), "reason": "x"},
                        role="operator")
    assert too_much.status_code == 409 and code_of(too_much) == "refund_exceeds_paid"
    wrong = refund(api, "AS-1", 496, "R-0")
    assert wrong.status_code == 409 and code_of(wrong) == "amount_mismatch"
    assert refund(api, "AS-1", 495, "R-1").status_code == 200
    settle(app)
    # A quarter of the line paid back: L1 198/4 = 49.5 -> 50, L2 99/4 = 24.75 -> 25.
    assert commission(app, "O-13", 1) == {1: (198, 50), 2: (99, 25)}
    stock = api.get("/inventory/CUP", min_position=app.last_position()).get_json()
    assert stock["on_hand"] == 3  # 5 less the 2 shipped: a compensation moves no stock


def test_concurrent_refunds_of_one_line_never_exceed_paid(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-4", [("CUP", 1)])  # paid 990
    for n in range(6):  # compensations of the whole line, each approved
        open_case(api, "O-4", "compensation", [("CUP", 1)], amount=money(990),
                  case_id=f"AS-{n}")
        step(api, f"AS-{n}", "approve")
    flask = api.client.application
    headers = api.headers("operator")

    def send(n: int) -> int:
        return flask.test_client().post(
            f"/api/v1/after-sales/AS-{n}/refund", headers=headers,
            json={"amount": money(990), "refund_reference": f"R-{n}"}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = sorted(pool.map(send, range(6)))
    assert statuses == [200] + [409] * 5
    settle(app)
    order = api.get("/orders/O-4", min_position=app.last_position()).get_json()
    assert order["refunded"] == 990
    assert books(app)["merchant:refunds"] == 990


# -- the rules of cases ------------------------------------------------------------------

def test_return_window_and_quantities(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-5", [("TEA", 2)])
    open_case(api, "O-5", "return_refund", [("TEA", 2)], case_id="AS-1")
    # Both units are taken by AS-1; rejected, they are free again.
    taken = api.post("/after-sales", {"order_id": "O-5", "type": "exchange",
                                      "lines": [{"sku": "TEA", "quantity": 1}],
                                      "reason": "size"}, role="operator")
    assert taken.status_code == 409 and code_of(taken) == "exceeds_delivered"
    assert step(api, "AS-1", "reject", {"reason": "worn"})["status"] == "rejected"
    open_case(api, "O-5", "exchange", [("TEA", 1)], case_id="AS-2")
    # After the window (delivered Nov 26 02:00 UTC + 7 days): returns are refused,
    # repairs and compensations are not.
    set_clock(api, LATER + timedelta(days=10))
    before = app.last_position()
    late = api.post("/after-sales", {"order_id": "O-5", "type": "return_refund",
                                     "lines": [{"sku": "TEA", "quantity": 1}],
                                     "reason": "late"}, role="operator")
    assert late.status_code == 409 and code_of(late) == "return_window_closed"
    assert app.last_position() == before
    repair = open_case(api, "O-5", "repair", [("TEA", 1)], case_id="AS-3")
    assert repair["status"] == "requested"
    # A received exchange is not done until its replacement ships (or it is refunded).
    step(api, "AS-2", "approve")
    received = step(api, "AS-2", "receive", {"restock": False, "warehouse_id": "W1"},
                    role="admin")
    assert received["status"] == "received"
    assert code_of(api.post("/after-sales/AS-2/close", role="operator")) == \
        "invalid_transition"


def test_invalid_transitions_are_409_and_record_nothing(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-6", [("TEA", 1)])
    open_case(api, "O-6", "return_refund", [("TEA", 1)], case_id="AS-1")
    before = app.last_position()
    for action, body, role in (("refund", {"amount": money(1), "refund_reference": "R"},
                                "operator"),
                               ("receive", {"restock": True, "warehouse_id": "W1"}, "admin"),
                               ("close", None, "operator")):
        reply = api.post(f"/after-sales/AS-1/{action}", body, role=role)
        assert reply.status_code == 409 and code_of(reply) == "invalid_transition", action
    step(api, "AS-1", "approve")
    again = api.post("/after-sales/AS-1/approve", role="operator")
    assert again.status_code == 409 and code_of(again) == "invalid_transition"
    assert app.last_position() == before + 1
    unknown = api.post("/after-sales", {"order_id": "NOPE", "type": "repair",
                                        "lines": [{"sku": "TEA", "quantity": 1}],
                                        "reason": "x"}, role="operator")
    assert unknown.status_code == 404


def test_refund_only_before_dispatch_releases_the_reservation(api: Api) -> None:
    app = shop(api)
    [old] = paid_order(api, "O-7", [("TEA", 3)], distributor_id="D2")  # W1 reserves 3
    open_case(api, "O-7", "refund_only", [("TEA", 2)], case_id="AS-1")
    step(api, "AS-1", "approve")
    done = refund(api, "AS-1", 3998, "R-1")
    assert done.status_code == 200 and done.get_json()["refunded"] == 3998
    at = settle(app)
    stock = api.get("/inventory/TEA", min_position=at).get_json()
    assert (stock["on_hand"], stock["reserved"]) == (10, 1)
    # The shipment of 3 is cancelled and replaced by one of the 1 still sent.
    order = api.get("/orders/O-7", min_position=at).get_json()
    assert order["lines"][0]["allocations"] == [{"warehouse_id": "W1", "quantity": 1}]
    [new] = [s["shipment_id"] for s in order["shipments"] if s["status"] == "created"]
    assert [s["status"] for s in order["shipments"] if s["shipment_id"] == old] == [
        "cancelled"]
    assert api.get(f"/shipments/{new}", min_position=at).get_json()["lines"] == [
        {"sku": "TEA", "quantity": 1}]
    assert api.post(f"/shipments/{old}/pick", role="warehouse").status_code == 409
    deliver(api, [new])
    assert app.order("O-7").status == "delivered"
    stock = api.get("/inventory/TEA", min_position=app.last_position()).get_json()
    assert (stock["on_hand"], stock["reserved"]) == (9, 0)
    settle(app)
    # Commission on 5997: L1 599.7 -> 600, L2 299.85 -> 300; two thirds reversed:
    # 600·3998/5997 = 400, 300·3998/5997 = 200.
    assert commission(app, "O-7", 1) == {1: (600, 400), 2: (300, 200)}
    # Only the one unit delivered can still come back.
    late = api.post("/after-sales", {"order_id": "O-7", "type": "return_refund",
                                     "lines": [{"sku": "TEA", "quantity": 2}],
                                     "reason": "x"}, role="operator")
    assert late.status_code == 409 and code_of(late) == "exceeds_delivered"
    # ... and it can: the two held back were never delivered, so they take nothing from it.
    open_case(api, "O-7", "return_refund", [("TEA", 1)], case_id="AS-2")


def test_goods_paid_nothing_are_refunded_with_nothing(api: Api) -> None:
    """A cup given free (a coupon for exactly its price): a refund only of it before
    dispatch is refunded with zero, which holds the cup back and moves no money; zero is
    refused for goods that were paid, as a fen is for the free cup."""
    app = shop(api)
    app.execute(lambda: {"position": app.record(Coupon.issue(
        CouponTerms(code="FREECUP", amount_off_minor=990, skus=("CUP",)), "CNY",
        app.clock()))})
    placed = api.post("/orders", {
        "order_id": "O-9", "distributor_id": "D2", "coupon_code": "FREECUP",
        "customer": {"customer_id": "C-9", "name": "Li Lei", "phone": "13800138000"},
        "shipping_address": {"region": "east", "city": "Hangzhou", "line1": "1 Beishan Rd"},
        "lines": [{"sku": "TEA", "quantity": 1}, {"sku": "CUP", "quantity": 1}]},
        role="integration").get_json()
    assert [x["net"] for x in placed["lines"]] == [1999, 0]
    paid = api.post("/orders/O-9/payments",
                    {"amount": money(1999), "payment_reference": "PAY-9"}, role="integration")
    assert paid.status_code == 200, paid.get_json()
    open_case(api, "O-9", "refund_only", [("CUP", 1)], case_id="AS-1")
    open_case(api, "O-9", "refund_only", [("TEA", 1)], case_id="AS-2")
    for case_id in ("AS-1", "AS-2"):
        step(api, case_id, "approve")
    before = app.last_position()
    assert code_of(refund(api, "AS-1", 1, "R-1")) == "refund_exceeds_paid"
    assert code_of(refund(api, "AS-2", 0, "R-2")) == "validation_error"
    assert app.last_position() == before
    done = refund(api, "AS-1", 0, "R-1")
    assert done.status_code == 200, done.get_json()
    assert (done.get_json()["status"], done.get_json()["refunded"]) == ("refunded", 0)
    assert step(api, "AS-1", "close")["status"] == "closed"
    at = settle(app)
    assert books(app).get("merchant:refunds", 0) == 0
    assert api.get("/inventory/CUP", min_position=at).get_json()["reserved"] == 0
    order = api.get("/orders/O-9", min_position=at).get_json()
    assert order["status"] == "fulfilling" and order["refunded"] == 0
    assert [api.get(f"/shipments/{s['shipment_id']}", min_position=at).get_json()["lines"]
            for s in order["shipments"] if s["status"] == "created"] == [
        [{"sku": "TEA", "quantity": 1}]]  # the cup's shipment is cancelled


def test_a_whole_order_refunded_before_dispatch_ships_nothing(api: Api) -> None:
    app = shop(api)
    app.settings = replace(app.settings, shipping_fee_minor=800)
    paid_order(api, "O-8", [("TEA", 2), ("CUP", 1)], distributor_id=None)  # 4988 + 800
    open_case(api, "O-8", "refund_only", [("TEA", 2), ("CUP", 1)], case_id="AS-1")
    step(api, "AS-1", "approve")
    assert refund(api, "AS-1", 2 * 1999 + 990, "R-1").status_code == 200
    at = settle(app)
    order = api.get("/orders/O-8", min_position=at).get_json()
    assert {s["status"] for s in order["shipments"]} == {"cancelled"}
    # Nothing is left to send: the order is cancelled with the last refund, and the
    # shipping fee, which no case can refund, is refunded with it.
    assert order["status"] == "cancelled"
    assert order["refunded"] == order["paid"] == 5788
    assert books(app)["merchant:refunds"] == 5788
    for sku in ("TEA", "CUP"):
        assert api.get(f"/inventory/{sku}", min_position=at).get_json()["reserved"] == 0


def test_refunds_before_the_accrual_ran_are_named_by_the_entries_they_reversed(
        api: Api) -> None:
    """Paid, then refunded in full before dispatch (which cancels the order) before the
    commission policy ran at all: the late accrual is reversed by the refunds that come
    after it in the log, each under its reference, not as a cancellation."""
    app = shop(api)
    paid_order(api, "O-10", [("TEA", 1)], distributor_id="D2")
    open_case(api, "O-10", "refund_only", [("TEA", 1)], case_id="AS-1")
    step(api, "AS-1", "approve")
    assert refund(api, "AS-1", 1999, "R-1").status_code == 200
    assert app.order("O-10").status == "cancelled"
    at = settle(app)  # the policy meets the payment only now
    # L1 (D2) 10 % of 1999 = 199.9 -> 200; L2 (D1) 5 % = 99.95 -> 100; all reversed.
    assert commission(app, "O-10", 1) == {1: (200, 200), 2: (100, 100)}
    for distributor_id in ("D1", "D2"):
        entries = api.get(f"/distributors/{distributor_id}/commissions", role="auditor",
                          min_position=at).get_json()["items"]
        (entry,) = [e for e in entries if e["order_id"] == "O-10"]
        assert [(r["refund_reference"], r["amount"]) for r in entry["reversals"]] == [
            ("R-1", entry["amount"])]


def test_a_parked_payment_retried_after_a_partial_refund_is_reversed_by_it(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commission policy parked O-11's payment (a rule refused it), then handled its
    refund of one unit of three, which found no commission to reverse. Retried, the
    accrual is reversed by that refund in the same save, under its reference: O-11 ends
    where O-12, the same order handled in the ordinary way, does."""
    app = shop(api)
    paid_order(api, "O-12", [("TEA", 3)], distributor_id="D2")
    settle(app)  # O-12's payment: accrued
    accrue = app.accrue_from_basis

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise InvalidCommand("the ledger is closed for the night", field="basis")

    monkeypatch.setattr(app, "accrue_from_basis", refuse)
    paid_order(api, "O-11", [("TEA", 3)], distributor_id="D2")
    settle(app)  # O-11's payment: parked
    for order_id in ("O-11", "O-12"):
        open_case(api, order_id, "refund_only", [("TEA", 1)], case_id=f"AS-{order_id}")
        step(api, f"AS-{order_id}", "approve")
        assert refund(api, f"AS-{order_id}", 1999, f"R-{order_id}").status_code == 200
    settle(app)  # both refunds handled: O-11's finds no commission
    assert not app.exists(LineCommission.create_id("O-11", 1))
    monkeypatch.setattr(app, "accrue_from_basis", accrue)
    runner = ProjectionRunner(app, [], process_managers=all_process_managers())
    assert runner.retry_parked("commission_policy") == (1, 0)
    at = settle(app)
    # 3 x 19.99 = 59.97: L1 (D2) 10 % = 5.997 -> 6.00, L2 (D1) 5 % -> 3.00; a third of
    # the line refunded reverses a third of each: 2.00 and 1.00.
    entries = api.get("/distributors/D2/commissions", role="auditor",
                      min_position=at).get_json()["items"]
    for order_id in ("O-11", "O-12"):
        assert commission(app, order_id, 1) == {1: (600, 200), 2: (300, 100)}
        assert app.line_commission(order_id, 1).reversal_causes == [
            f"refund:{order_id}:1:1999"]
        (entry,) = [e for e in entries if e["order_id"] == order_id]
        assert [(r["refund_reference"], r["amount"]) for r in entry["reversals"]] == [
            (f"R-{order_id}", 200)]
    assert sum(books(app).values()) == 0


def test_an_order_cancelled_after_a_refund_before_dispatch(api: Api) -> None:
    app = shop(api)
    paid_order(api, "O-14", [("TEA", 3)], distributor_id=None)
    open_case(api, "O-14", "refund_only", [("TEA", 1)], case_id="AS-1")
    step(api, "AS-1", "approve")
    assert refund(api, "AS-1", 1999, "R-1").status_code == 200
    cancelled = api.post("/orders/O-14/cancel", {"reason": "changed mind"})
    assert cancelled.status_code == 200, cancelled.get_json()
    # What is left is refunded (2 × 19.99), the rest of the reservation released.
    assert (cancelled.get_json()["refunded"], cancelled.get_json()["paid"]) == (5997, 5997)
    at = settle(app)
    assert api.get("/inventory/TEA", min_position=at).get_json()["reserved"] == 0
    assert {s["status"] for s in cancelled.get_json()["shipments"]} == {"cancelled"}
    assert books(app)["merchant:refunds"] == 5997


def test_an_order_with_an_open_return_does_not_complete_until_it_is_settled(
        api: Api) -> None:
    """Completion waits for the order's open after-sales cases: the commission stays
    pending (nothing to withdraw, nothing to claw back) until the return is refunded;
    then the order completes and a later return is refused, even at a clock behind the
    tick that completed it."""
    app = shop(api)
    delivered_order(api, "O-20", [("TEA", 2)])  # delivered Nov 26 02:00 UTC
    settle(app)
    # Net 3998: L1 (D2) 399.8 -> 400, L2 (D1) 199.9 -> 200.
    assert commission(app, "O-20", 1) == {1: (400, 0), 2: (200, 0)}
    # The customer asks to return both inside the window; the goods take their time.
    set_clock(api, LATER)
    open_case(api, "O-20", "return_refund", [("TEA", 2)], case_id="AS-20")
    step(api, "AS-20", "approve")
    # The window closes Dec 3; ticks after it leave the order delivered while AS-20 is open.
    for day in (4, 11):
        set_clock(api, NOW.replace(day=1, month=12) + timedelta(days=day - 1, hours=3))
        assert api.post("/admin/tick", role="admin").get_json()["completed"] == 0
        settle(app)
    assert app.order("O-20").status == "delivered"
    earned = api.get("/distributors/D2/earnings", role="auditor",
                     min_position=app.last_position()).get_json()
    assert (earned["pending"], earned["available"]) == (400, 0)
    asked = api.post("/distributors/D2/withdrawals", {"amount": money(400)}, role="admin")
    assert asked.status_code == 409 and code_of(asked) == "insufficient_balance"
    # The goods arrive and are refunded in full: the commission is reversed from pending.
    step(api, "AS-20", "receive", {"restock": True, "warehouse_id": "W1"}, role="warehouse")
    assert refund(api, "AS-20", 3998, "R-20").status_code == 200
    settle(app)
    assert commission(app, "O-20", 1) == {1: (400, 400), 2: (200, 200)}
    earned = api.get("/distributors/D2/earnings", role="auditor",
                     min_position=app.last_position()).get_json()
    assert (earned["available"], earned["paid_out"], earned["reversed"]) == (0, 0, 400)
    # Settled, the order completes at the next tick, here one run ahead of the clock
    # (what `fenxiao tick --now` does).
    assert tick(app, datetime(2026, 12, 20, tzinfo=timezone.utc))["completed"] == 1
    settle(app)
    assert app.order("O-20").status == "completed"
    before = app.last_position()
    late = api.post("/after-sales", {"order_id": "O-20", "type": "exchange",
                                     "lines": [{"sku": "TEA", "quantity": 1}],
                                     "reason": "late"}, role="operator")
    assert late.status_code == 409 and code_of(late) == "return_window_closed"
    assert app.last_position() == before
    ledger = books(app)
    assert ledger.get("distributor:D2:available", 0) == 0 and sum(ledger.values()) == 0


def test_an_exchange_ships_its_replacement_through_fulfilment(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-21", [("TEA", 2)])  # W1: 10 TEA, 2 issued
    set_clock(api, LATER)
    open_case(api, "O-21", "exchange", [("TEA", 1)], case_id="AS-21")
    step(api, "AS-21", "approve")
    step(api, "AS-21", "receive", {"restock": True, "warehouse_id": "W1"}, role="warehouse")
    shipped = step(api, "AS-21", "ship", role="warehouse")
    assert shipped["status"] == "exchanged"
    [sent] = shipped["shipments"]
    assert (sent["source"], sent["case_id"], sent["warehouse_id"], sent["lines"]) == (
        "exchange", "AS-21", "W1", [{"sku": "TEA", "quantity": 1}])
    # The replacement is reserved like an order's: 8 + 1 back = 9 on hand, 1 reserved.
    assert stock(api, "TEA", "W1", app.last_position()) == (9, 1)
    out = dispatched(api, sent["shipment_id"])
    assert stock(api, "TEA", "W1", app.last_position()) == (8, 0)
    reply = carrier_event(api, out["carrier"], "E-AS-21", out["tracking_number"],
                          "delivered", "2026-11-28T08:00:00+08:00")
    assert reply.status_code == 200, reply.get_json()
    assert step(api, "AS-21", "close")["status"] == "closed"
    case = api.get("/after-sales/AS-21", role="auditor",
                   min_position=app.last_position()).get_json()
    assert [h["status"] for h in case["history"]] == [
        "requested", "approved", "received", "exchanged", "closed"]
    assert [(s["shipment_id"], s["status"]) for s in case["shipments"]] == [
        (sent["shipment_id"], "delivered")]
    # No money moved: the order and its commission are as they were.
    order = api.get("/orders/O-21", min_position=app.last_position()).get_json()
    assert (order["status"], order["refunded"]) == ("delivered", 0)
    settle(app)
    assert commission(app, "O-21", 1) == {1: (400, 0), 2: (200, 0)}
    for projection in (AfterSalesProjection(), ShipmentsProjection()):
        assert_rebuild_equals_live(app, projection, every_table=True)


def test_an_exchange_whose_replacement_is_out_of_stock_is_refunded_instead(
        api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-22", [("CUP", 5)])  # every CUP there is (W2 had 5)
    set_clock(api, LATER)
    open_case(api, "O-22", "exchange", [("CUP", 2)], case_id="AS-22")
    step(api, "AS-22", "approve")
    # The two returned are broken: scrapped, not restocked.
    step(api, "AS-22", "receive", {"restock": False, "warehouse_id": "W2"}, role="warehouse")
    before = app.last_position()
    short = api.post("/after-sales/AS-22/ship", role="warehouse")
    assert short.status_code == 409 and code_of(short) == "insufficient_stock"
    assert short.get_json()["error"]["details"] | {"lines": None} == {
        "sku": "CUP", "requested": 2, "available": 0, "lines": None}
    assert app.last_position() == before  # nothing reserved, nothing recorded
    assert stock(api, "CUP", "W2", before) == (0, 0)
    # The operator refunds the two instead: 2 × 990, and their commission is reversed.
    done = refund(api, "AS-22", 1980, "R-22")
    assert done.status_code == 200 and done.get_json()["status"] == "refunded"
    settle(app)
    # Net 4950: L1 495, L2 247.5 -> 248; two fifths reversed: 198 and 99.2 -> 99.
    assert commission(app, "O-22", 1) == {1: (495, 198), 2: (248, 99)}
    assert step(api, "AS-22", "close")["status"] == "closed"


def test_an_exchange_waits_behind_the_orders_waiting_for_its_stock(api: Api) -> None:
    """Stock received and not yet given to the backorders (the policy has not run): the
    orders waiting come first, in the exchange's own save (or in none, if it is refused)."""
    app = shop(api)
    delivered_order(api, "O-24", [("CUP", 5)])  # every CUP there is (W2 had 5)
    placed = api.post("/orders", {
        "order_id": "O-25", "allow_backorder": True,
        "customer": {"customer_id": "C-25", "name": "Li Lei", "phone": "13800138000"},
        "shipping_address": {"region": "south", "city": "Guangzhou", "line1": "2 Rd"},
        "lines": [{"sku": "CUP", "quantity": 2}]}, role="integration").get_json()
    assert (placed["status"], placed["lines"][0]["backordered"]) == ("backordered", 2)
    set_clock(api, LATER)
    open_case(api, "O-24", "exchange", [("CUP", 1)], case_id="AS-24")
    step(api, "AS-24", "approve")
    step(api, "AS-24", "receive", {"restock": False, "warehouse_id": "W2"}, role="warehouse")
    api.post("/stock/receipts", {"sku": "CUP", "warehouse_id": "W2", "quantity": 2,
                                 "reference": "PO-24"}, role="warehouse")
    before = app.last_position()
    short = api.post("/after-sales/AS-24/ship", role="warehouse")  # O-25 waits for both
    assert short.status_code == 409 and code_of(short) == "insufficient_stock"
    assert app.last_position() == before  # its fills undone with it
    api.post("/stock/receipts", {"sku": "CUP", "warehouse_id": "W2", "quantity": 1,
                                 "reference": "PO-25"}, role="warehouse")
    assert step(api, "AS-24", "ship", role="warehouse")["status"] == "exchanged"
    assert app.order("O-25").status == "placed"  # filled: its 2, then the exchange's 1
    assert stock(api, "CUP", "W2", app.last_position()) == (3, 3)
    assert app.repository.get(BackorderQueue.create_id("CUP")).waiting == []
    assert api.get("/orders", status="backordered",
                   min_position=app.last_position()).get_json()["items"] == []


def test_a_repair_goes_back_to_the_customer_without_touching_stock(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-23", [("TEA", 1)])
    set_clock(api, LATER + timedelta(days=30))  # long after the window: repairs still go
    open_case(api, "O-23", "repair", [("TEA", 1)], case_id="AS-23")
    step(api, "AS-23", "approve")
    before = app.last_position()
    restocked = api.post("/after-sales/AS-23/receive", {"restock": True, "warehouse_id": "W1"},
                         role="warehouse")
    assert restocked.status_code == 409 and code_of(restocked) == "not_restockable"
    assert app.last_position() == before
    step(api, "AS-23", "receive", {"restock": False, "warehouse_id": "W1"}, role="warehouse")
    at = app.last_position()
    assert stock(api, "TEA", "W1", at) == (9, 0)
    repaired = step(api, "AS-23", "ship", role="operator")
    assert repaired["status"] == "repaired"
    [back] = repaired["shipments"]
    assert (back["source"], back["warehouse_id"]) == ("repair", "W1")
    dispatched(api, back["shipment_id"])
    # The customer's own goods went out: the warehouse's stock is as it was.
    assert stock(api, "TEA", "W1", app.last_position()) == (9, 0)
    again = api.post("/after-sales/AS-23/ship", role="operator")
    assert again.status_code == 409 and code_of(again) == "invalid_transition"
    assert step(api, "AS-23", "close")["status"] == "closed"


# -- who may do what, and bad input -----------------------------------------------------

def test_roles_and_other_distributors_cases(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-8", [("TEA", 1)], distributor_id="D2")
    delivered_order(api, "O-9", [("TEA", 1)], distributor_id="D1")
    open_case(api, "O-8", "repair", [("TEA", 1)], case_id="AS-D2")
    open_case(api, "O-9", "repair", [("TEA", 1)], case_id="AS-D1")
    at = app.last_position()
    # The distributor token is D1's: its own case reads, D2's is 404 everywhere.
    assert api.get("/after-sales/AS-D1", role="distributor", min_position=at).status_code \
        == 200
    assert api.get("/after-sales/AS-D2", role="distributor").status_code == 404
    for action in ("approve", "reject", "close"):
        assert api.post(f"/after-sales/AS-D2/{action}", role="distributor").status_code == 404
        assert api.post(f"/after-sales/AS-D1/{action}", role="distributor").status_code == 403
    assert api.get("/after-sales", role="distributor").status_code == 403
    assert api.get("/after-sales", role="integration").status_code == 403
    assert api.post("/after-sales/AS-D1/approve", role="warehouse").status_code == 403
    assert api.post("/after-sales/AS-D1/receive", {"restock": True, "warehouse_id": "W1"},
                    role="operator").status_code == 403
    assert api.post("/after-sales", {"order_id": "O-8", "type": "repair",
                                     "lines": [{"sku": "TEA", "quantity": 1}],
                                     "reason": "x"}, role="warehouse").status_code == 403
    assert api.get("/after-sales/AS-D1", role="auditor").status_code == 200
    assert api.get("/after-sales/NOPE", role="auditor").status_code == 404
    assert app.last_position() == at


BAD = [
    ({"type": "refund"}, "type"),
    ({"lines": []}, "lines"),
    ({"lines": [{"sku": "TEA", "quantity": 0}]}, "lines"),
    ({"lines": [{"sku": "TEA", "quantity": 1.5}]}, "lines"),
    ({"reason": " "}, "reason"),
    ({"order_id": "no spaces"}, "order_id"),
    ({"amount": {"amount": 0, "currency": "CNY"}}, "amount"),
    ({"amount": {"amount": 10, "currency": "USD"}}, "amount"),
    ({"unexpected": 1}, "unexpected"),
]


@pytest.mark.parametrize("change, field", BAD)
def test_bad_input_is_422_and_records_nothing(api: Api, change: dict[str, Any],
                                              field: str) -> None:
    app = shop(api)
    delivered_order(api, "O-10", [("TEA", 1)], distributor_id=None)
    before = app.last_position()
    reply = api.post("/after-sales", {"order_id": "O-10", "type": "compensation",
                                      "lines": [{"sku": "TEA", "quantity": 1}],
                                      "reason": "r", "amount": money(100), **change},
                     role="operator")
    assert reply.status_code == 422, reply.get_json()
    assert field in reply.get_json()["error"]["details"]
    assert app.last_position() == before


def test_bad_refunds_and_receipts_are_422_and_record_nothing(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-11", [("TEA", 1)], distributor_id=None)
    open_case(api, "O-11", "return_refund", [("TEA", 1)], case_id="AS-1")
    step(api, "AS-1", "approve")
    before = app.last_position()
    for action, body in (("refund", {"amount": money(-1), "refund_reference": "R"}),
                         ("refund", {"amount": {"amount": 5, "currency": "USD"},
                                     "refund_reference": "R"}),
                         ("refund", {"amount": money(5), "refund_reference": ""}),
                         ("receive", {"restock": "yes", "warehouse_id": "W1"}),
                         ("receive", {"restock": True}),
                         ("approve", {"reason": "\x00"}),
                         ("close", {"extra": 1})):
        reply = api.post(f"/after-sales/AS-1/{action}", body, role="admin")
        assert reply.status_code == 422, (action, body, reply.get_json())
    assert app.last_position() == before


# -- the read model -----------------------------------------------------------------------

def test_the_queue_and_rebuild_equals_live(api: Api) -> None:
    app = shop(api)
    delivered_order(api, "O-12", [("TEA", 3)])
    for n in range(3):
        open_case(api, "O-12", "return_refund", [("TEA", 1)], case_id=f"AS-{n}")
    step(api, "AS-0", "approve")
    step(api, "AS-1", "reject")
    at = app.last_position()
    queue = api.get("/after-sales", role="operator", status="requested", min_position=at)
    assert [c["case_id"] for c in queue.get_json()["items"]] == ["AS-2"]
    first = api.get("/after-sales", role="auditor", order_id="O-12", limit=2).get_json()
    rest = api.get("/after-sales", role="auditor", order_id="O-12", limit=2,
                   cursor=first["next_cursor"]).get_json()
    assert [c["case_id"] for c in first["items"] + rest["items"]] == ["AS-0", "AS-1", "AS-2"]
    assert rest["next_cursor"] is None
    live = api.get("/after-sales/AS-0", min_position=at).get_json()
    assert live["status"] == "approved" and live["currency"] == "CNY"
    assert_rebuild_equals_live(app, AfterSalesProjection())
    assert api.get("/after-sales/AS-0").get_json() == live
