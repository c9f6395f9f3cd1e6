"""B2B purchase orders over HTTP: request at wholesale prices, approval reserving stock
and creating shipments, dispatch, receipt; who may do what; the read model."""
from __future__ import annotations

from typing import Any

import pytest

from domain.fulfilment import Shipment, shipment_id_for
from domain.stock import StockItem
from projections.purchase_orders import PurchaseOrdersProjection
from tests.api_support import Api, assert_rebuild_equals_live
from tests.test_api_distributors import network


def cny(amount: int) -> dict[str, Any]:
    return {"amount": amount, "currency": "CNY"}


def code_of(response) -> str:
    return response.get_json()["error"]["code"]


def fenxiao(api: Api) -> Any:
    return api.client.application.extensions["fenxiao"]


def setup(api: Api) -> None:
    """W1 (east) and W2 (south); TEA (wholesale 1200) in both, CUP (600) in W1, GIFT
    without a wholesale price; distributors D1 (the token's), D2 and D3, all active."""
    api.post("/warehouses", {"warehouse_id": "W1", "name": "East", "region": "east"})
    api.post("/warehouses", {"warehouse_id": "W2", "name": "South", "region": "south"})
    for sku, price, wholesale in (("TEA", 1999, 1200), ("CUP", 990, 600), ("GIFT", 500, None)):
        body = {"sku": sku, "name": sku.title(), "price": cny(price)}
        if wholesale is not None:
            body["wholesale_price"] = cny(wholesale)
        assert api.post("/products", body).status_code == 201
    for sku, warehouse_id, quantity in (("TEA", "W1", 6), ("TEA", "W2", 20), ("CUP", "W1", 4),
                                        ("GIFT", "W1", 9)):
        api.post("/stock/receipts", {"sku": sku, "warehouse_id": warehouse_id,
                                     "quantity": quantity, "reference": "IN-1"})
    network(api)


LINES = [{"sku": "TEA", "quantity": 24}, {"sku": "CUP", "quantity": 4}]


def test_request_approve_dispatch_receive(api: Api) -> None:
    setup(api)
    asked = api.post("/purchase-orders", {"purchase_order_id": "PO-1", "distributor_id": "D1",
                                          "lines": LINES}, role="distributor")
    assert asked.status_code == 201, asked.get_json()
    po = asked.get_json()
    assert (po["purchase_order_id"], po["distributor_id"], po["status"]) == \
        ("PO-1", "D1", "requested")
    assert [(x["sku"], x["quantity"], x["unit_price"], x["amount"]) for x in po["lines"]] == \
        [("TEA", 24, 1200, 28800), ("CUP", 4, 600, 2400)]
    assert (po["total"], po["currency"], po["shipments"]) == (31200, "CNY", [])
    seen = api.get("/purchase-orders/PO-1", role="distributor", min_position=po["position"])
    assert seen.status_code == 200
    assert seen.get_json() == {k: v for k, v in po.items() if k != "position"}

    assert api.post("/purchase-orders/PO-1/receive", role="distributor").status_code == 409
    approved = api.post("/purchase-orders/PO-1/approve", role="operator")
    assert approved.status_code == 200, approved.get_json()
    po = approved.get_json()
    assert po["status"] == "approved"
    # most available first (a purchase order has no region), split when one is short
    assert [x["allocations"] for x in po["lines"]] == [
        [{"warehouse_id": "W2", "quantity": 20}, {"warehouse_id": "W1", "quantity": 4}],
        [{"warehouse_id": "W1", "quantity": 4}]]
    shipments = {s["warehouse_id"]: s["shipment_id"] for s in po["shipments"]}
    assert shipments == {w: shipment_id_for("PO-1", w) for w in ("W1", "W2")}
    assert {s["status"] for s in po["shipments"]} == {"created"}
    tea = api.get("/inventory/TEA", min_position=po["position"]).get_json()
    assert [(w["warehouse_id"], w["reserved"]) for w in tea["warehouses"]] == \
        [("W1", 4), ("W2", 20)]
    app = fenxiao(api)
    made = app.find(Shipment.create_id(shipments["W1"]))
    assert (made.source, made.source_id, made.lines) == (
        "purchase_order", "PO-1", [{"sku": "CUP", "quantity": 4}, {"sku": "TEA", "quantity": 4}])
    again = api.post("/purchase-orders/PO-1/approve")
    assert again.status_code == 409 and code_of(again) == "invalid_transition"

    dispatch_all(api, list(shipments.values()))
    shipped = api.get("/purchase-orders/PO-1", role="auditor",
                      min_position=app.last_position()).get_json()
    assert shipped["status"] == "shipped"
    assert {s["status"] for s in shipped["shipments"]} == {"dispatched"}
    stock = app.find(StockItem.create_id("TEA", "W2"))
    assert (stock.on_hand, stock.reserved) == (0, 0)
    received = api.post("/purchase-orders/PO-1/receive", role="distributor")
    assert received.status_code == 200 and received.get_json()["status"] == "received"
    assert api.post("/purchase-orders/PO-1/receive").status_code == 409
    final = api.get("/purchase-orders/PO-1", min_position=received.get_json()["position"])
    assert final.get_json() == {k: v for k, v in received.get_json().items()
                                if k != "position"}
    # never commissionable: no accrual, no journal entry, nothing earned
    assert not [t for t in topics(app) if "Commission" in t or "Journal" in t]
    earnings = api.get("/distributors/D1/earnings", role="distributor").get_json()
    assert earnings["pending"] == earnings["lifetime_earned"] == 0
    assert_rebuild_equals_live(app, PurchaseOrdersProjection(), every_table=True)


def dispatch_all(api: Api, shipment_ids: list[str]) -> None:
    """Through the warehouse's endpoints: pick, pack, dispatch with a carrier."""
    api.post("/carriers", {"carrier": "SF", "name": "SF Express", "base_fee": cny(1200),
                           "per_item_fee": cny(100), "default_days": 2})
    for shipment_id in shipment_ids:
        for step in ("pick", "pack", "dispatch"):
            reply = api.post(f"/shipments/{shipment_id}/{step}", role="warehouse")
            assert reply.status_code == 200, (step, reply.get_json())


def topics(app: Any) -> list[str]:
    return [n.topic for n in app.recorder.select_notifications(start=None, limit=10_000)]


def test_distributors_act_for_themselves_only(api: Api) -> None:
    setup(api)
    for_other = api.post("/purchase-orders", {"distributor_id": "D2", "lines": LINES},
                         role="distributor")
    assert for_other.status_code == 404 and code_of(for_other) == "not_found"
    theirs = api.post("/purchase-orders", {"purchase_order_id": "PO-D2",
                                           "distributor_id": "D2", "lines": LINES[1:]})
    assert theirs.status_code == 201  # an admin may order for any distributor
    mine = api.post("/purchase-orders", {"purchase_order_id": "PO-D1",
                                         "distributor_id": "D1", "lines": LINES[1:]},
                    role="distributor")
    assert mine.status_code == 201
    before = fenxiao(api).last_position()
    assert api.post("/purchase-orders/PO-D1/approve", role="distributor").status_code == 403
    for path in ("/purchase-orders/PO-D2/approve", "/purchase-orders/PO-D2/receive"):
        refused = api.post(path, role="distributor")
        assert refused.status_code == 404 and code_of(refused) == "not_found", path
    assert api.get("/purchase-orders/PO-D2", role="distributor").status_code == 404
    assert api.get("/purchase-orders/PO-NONE", role="distributor").status_code == 404
    assert fenxiao(api).last_position() == before
    listed = api.get("/purchase-orders", role="distributor", min_position=before).get_json()
    assert [p["purchase_order_id"] for p in listed["items"]] == ["PO-D1"]
    assert api.get("/purchase-orders", role="distributor",
                   distributor_id="D2").status_code == 404
    everyone = api.get("/purchase-orders", role="auditor").get_json()["items"]
    assert [p["purchase_order_id"] for p in everyone] == ["PO-D2", "PO-D1"]  # oldest first


def test_roles(api: Api) -> None:
    setup(api)
    body = {"distributor_id": "D1", "lines": LINES}
    for role in ("operator", "warehouse", "auditor", "integration"):
        assert api.post("/purchase-orders", body, role=role).status_code == 403, role
    api.post("/purchase-orders", {**body, "purchase_order_id": "PO-1"})
    for role in ("warehouse", "auditor", "integration"):
        assert api.post("/purchase-orders/PO-1/approve", role=role).status_code == 403
    for role in ("operator", "warehouse", "auditor", "integration"):
        assert api.post("/purchase-orders/PO-1/receive", role=role).status_code == 403
    for role in ("warehouse", "integration"):
        assert api.get("/purchase-orders", role=role).status_code == 403
        assert api.get("/purchase-orders/PO-1", role=role).status_code == 403


@pytest.mark.parametrize("body, status, code", [
    ({"distributor_id": "D1", "lines": [{"sku": "GIFT", "quantity": 1}]}, 409,
     "no_wholesale_price"),
    ({"distributor_id": "D3", "lines": LINES}, 409, "distributor_inactive"),
    ({"distributor_id": "D9", "lines": LINES}, 404, "not_found"),
    ({"distributor_id": "D1", "lines": [{"sku": "PEN", "quantity": 1}]}, 404, "not_found"),
    ({"distributor_id": "D1", "lines": LINES + LINES[:1]}, 409, "duplicate_line"),
    ({"distributor_id": "D1", "lines": []}, 422, "validation_error"),
    ({"distributor_id": "D1", "lines": [{"sku": "TEA", "quantity": 0}]}, 422,
     "validation_error"),
    ({"distributor_id": "D1", "lines": [{"sku": "TEA", "quantity": 10_001}]}, 422,
     "validation_error"),
    ({"distributor_id": "D1", "lines": [{"sku": "TEA", "quantity": "2"}]}, 422,
     "validation_error"),
    ({"distributor_id": "D1", "lines": LINES, "price": cny(1)}, 422, "validation_error"),
    ({"lines": LINES}, 422, "validation_error"),
])
def test_refused_requests_record_nothing(api: Api, body: dict, status: int, code: str
                                         ) -> None:
    setup(api)
    api.post("/distributors/D3/suspend", {"reason": "audit"})
    before = fenxiao(api).last_position()
    reply = api.post("/purchase-orders", body)
    assert (reply.status_code, code_of(reply)) == (status, code), reply.get_json()
    assert fenxiao(api).last_position() == before


def test_a_purchase_order_id_is_used_once_and_approval_needs_all_the_stock(api: Api
                                                                           ) -> None:
    setup(api)
    api.post("/purchase-orders", {"purchase_order_id": "PO-1", "distributor_id": "D1",
                                  "lines": [{"sku": "TEA", "quantity": 27}]})
    again = api.post("/purchase-orders", {"purchase_order_id": "PO-1",
                                          "distributor_id": "D2", "lines": LINES})
    assert again.status_code == 409 and code_of(again) == "duplicate"
    before = fenxiao(api).last_position()
    short = api.post("/purchase-orders/PO-1/approve")
    assert short.status_code == 409 and code_of(short) == "insufficient_stock"
    assert short.get_json()["error"]["details"]["available"] == 26
    assert fenxiao(api).last_position() == before  # nothing reserved
    assert api.post("/purchase-orders/NOPE-1/approve").status_code == 404
    api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W1", "quantity": 1,
                                 "reference": "IN-2"})
    assert api.post("/purchase-orders/PO-1/approve").get_json()["status"] == "approved"


def test_lists_filter_and_page(api: Api) -> None:
    setup(api)
    for n, distributor_id in enumerate(("D1", "D2", "D1", "D2", "D1")):
        last = api.post("/purchase-orders", {"purchase_order_id": f"PO-{n}",
                                             "distributor_id": distributor_id,
                                             "lines": LINES[1:]}).get_json()["position"]
    last = api.post("/purchase-orders/PO-2/approve").get_json()["position"]
    ids = lambda reply: [p["purchase_order_id"] for p in reply.get_json()["items"]]  # noqa: E731
    assert ids(api.get("/purchase-orders", min_position=last, distributor_id="D1")) == \
        ["PO-0", "PO-2", "PO-4"]
    assert ids(api.get("/purchase-orders", status="approved")) == ["PO-2"]
    assert ids(api.get("/purchase-orders", status="requested", distributor_id="D2")) == \
        ["PO-1", "PO-3"]
    assert api.get("/purchase-orders", status="lost").status_code == 422
    seen, cursor = [], None
    while True:
        reply = api.get("/purchase-orders", limit=2, **({"cursor": cursor} if cursor else {}))
        seen += ids(reply)
        cursor = reply.get_json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"PO-{n}" for n in range(5)]
    assert_rebuild_equals_live(fenxiao(api), PurchaseOrdersProjection(), every_table=True)



def test_an_order_and_a_purchase_order_with_the_same_id_never_share_a_reservation(
        api: Api) -> None:
    setup(api)
    api.post("/orders", {"order_id": "SAME", "lines": [{"sku": "TEA", "quantity": 2}],
                         "customer": {"customer_id": "C1", "name": "B", "phone": "13800138000"},
                         "shipping_address": {"region": "south", "city": "S", "line1": "1"}})
    # the purchase order takes from W2 too (most stock), under the same id
    asked = api.post("/purchase-orders", {"purchase_order_id": "SAME", "distributor_id": "D1",
                                          "lines": [{"sku": "TEA", "quantity": 3}]})
    assert asked.status_code == 201, asked.get_json()
    assert api.post("/purchase-orders/SAME/approve").status_code == 200
    assert api.post("/orders/SAME/cancel", {"reason": "changed mind"}).status_code == 200
    items = [fenxiao(api).stock_item("TEA", w) for w in ("W1", "W2")]
    held = {ref: n for item in items for ref, n in item.reservations.items()}
    assert held == {"PO/SAME": 3}  # the order's 2 released, the purchase order's 3 held


def test_an_approval_serves_the_orders_waiting_for_the_stock_first(api: Api) -> None:
    """Stock arrives in one save and the backorder policy fills the queue in a later one:
    an approval in between serves the consumer orders waiting first (first come, first
    served), in its own save, and takes only what they leave."""
    setup(api)  # 26 TEA: 6 in W1, 20 in W2
    placed = api.post("/orders", {
        "order_id": "O-1", "lines": [{"sku": "TEA", "quantity": 30}], "allow_backorder": True,
        "customer": {"customer_id": "C-1", "name": "Li Lei", "phone": "13800138000"},
        "shipping_address": {"region": "east", "city": "Hangzhou", "line1": "1 Beishan Rd"}},
        role="integration")
    assert placed.get_json()["lines"][0]["backordered"] == 4
    api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W1", "quantity": 5,
                                 "reference": "IN-2"})  # no policy has run
    for purchase_order_id, quantity in (("PO-1", 2), ("PO-2", 1)):
        asked = api.post("/purchase-orders", {"purchase_order_id": purchase_order_id,
                                              "distributor_id": "D1",
                                              "lines": [{"sku": "TEA", "quantity": quantity}]})
        assert asked.status_code == 201, asked.get_json()
    before = fenxiao(api).last_position()
    short = api.post("/purchase-orders/PO-1/approve")
    assert short.status_code == 409 and code_of(short) == "insufficient_stock"
    assert short.get_json()["error"]["details"]["available"] == 1  # 4 of the 5 promised
    assert fenxiao(api).last_position() == before  # the refusal saved no fill either
    approved = api.post("/purchase-orders/PO-2/approve")
    assert approved.status_code == 200, approved.get_json()
    waited = api.get("/orders/O-1", min_position=approved.get_json()["position"]).get_json()
    assert waited["lines"][0]["backordered"] == 0 and waited["status"] == "placed"
    item = fenxiao(api).repository.get(StockItem.create_id("TEA", "W1"))
    assert (item.on_hand, item.available) == (11, 0)  # 6 + 4 for O-1, 1 for PO-2
