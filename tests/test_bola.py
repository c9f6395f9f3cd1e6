"""Broken object-level authorisation, the check schemathesis does not make: every route
with an id in its path, called with one distributor's token on another distributor's
objects, answers 404 (never 403, 200 or 409, which would say the object exists)."""
from __future__ import annotations

import re

from tests.api_support import Api
from tests.test_api_distributors import network

# Path parameters naming things no distributor owns (the catalog, carriers, coupons, and
# webhook endpoints: those are the admin's, refused to every other role whatever the id).
SHARED = {"sku": "TEA", "carrier": "SF", "code": "WELCOME", "webhook_id": "WH-1"}


def earn_and_withdraw(api: Api, distributor_id: str, withdrawal_id: str) -> None:
    app = api.client.application.extensions["fenxiao"]
    order_id = f"O-{distributor_id}"
    app.execute(lambda: app.accrue_commission(order_id, 1, "TEA", 1, 10_000, distributor_id))
    app.execute(lambda: app.mature_commission(order_id, 1))
    reply = api.post(f"/distributors/{distributor_id}/withdrawals",
                     {"amount": {"amount": 500, "currency": "CNY"},
                      "withdrawal_id": withdrawal_id})
    assert reply.status_code == 201, reply.get_json()


def objects_of(api: Api, distributor_id: str) -> dict[str, str]:
    """One object of every kind a distributor owns, each named by its path parameter."""
    earn_and_withdraw(api, distributor_id, f"W-{distributor_id}")
    order = api.post("/orders", {
        "order_id": f"O-{distributor_id}", "distributor_id": distributor_id,
        "lines": [{"sku": "TEA", "quantity": 1}],
        "customer": {"customer_id": f"C-{distributor_id}", "name": "Buyer",
                     "phone": "13800138000"},
        "shipping_address": {"region": "east", "city": "Suzhou", "line1": "1 Road"}})
    paid = api.post(f"/orders/O-{distributor_id}/payments", {
        "amount": {"amount": order.get_json()["total"], "currency": "CNY"},
        "payment_reference": f"PAY-{distributor_id}"})
    assert paid.status_code == 200, paid.get_json()
    purchase = api.post("/purchase-orders", {
        "purchase_order_id": f"PO-{distributor_id}", "distributor_id": distributor_id,
        "lines": [{"sku": "BULK", "quantity": 1}]})
    assert purchase.status_code == 201, purchase.get_json()
    case = api.post("/after-sales", {
        "case_id": f"AS-{distributor_id}", "order_id": f"O-{distributor_id}",
        "type": "refund_only", "lines": [{"sku": "TEA", "quantity": 1}], "reason": "late"})
    assert case.status_code == 201, case.get_json()
    return {"distributor_id": distributor_id, "withdrawal_id": f"W-{distributor_id}",
            "case_id": f"AS-{distributor_id}",
            "order_id": f"O-{distributor_id}", "purchase_order_id": f"PO-{distributor_id}",
            "shipment_id": paid.get_json()["shipments"][0]["shipment_id"],
            "account": f"distributor:{distributor_id}:pending"}


def test_a_distributor_gets_404_on_every_route_naming_another_distributors_object(
        api: Api) -> None:
    api.seed()
    api.post("/products", {"sku": "BULK", "name": "Bulk tea",
                           "price": {"amount": 5000, "currency": "CNY"},
                           "wholesale_price": {"amount": 3000, "currency": "CNY"}})
    api.post("/stock/receipts", {"sku": "BULK", "warehouse_id": "W1", "quantity": 10,
                                 "reference": "PO-0"})
    network(api)  # D1 is the distributor token's own; D2 is another distributor
    own, others = objects_of(api, "D1"), objects_of(api, "D2")
    spec = api.client.get("/api/v1/openapi.json").get_json()
    walked = 0
    for template, operations in spec["paths"].items():
        names = set(re.findall(r"\{(\w+)\}", template)) - SHARED.keys()
        if not names:
            continue
        assert names <= others.keys(), f"give the walk an object for {names - others.keys()}"
        for method in ("get", "post"):
            if method not in operations:
                continue
            path = template.removeprefix("/api/v1")
            theirs = call(api, method, path.format(**others, **SHARED))
            assert theirs.status_code == 404, (method, path, theirs.get_json())
            assert theirs.get_json()["error"]["code"] == "not_found"
            mine = call(api, method, path.format(**own, **SHARED))
            assert mine.status_code != 404, (method, path, mine.get_json())
            walked += 1
    assert walked >= 23  # every such route of today; new ones join by themselves


def call(api: Api, method: str, path: str):
    if method == "get":  # as of everything recorded so far
        head = api.client.application.extensions["fenxiao"].last_position()
        return api.get(path, role="distributor", min_position=head)
    return api.post(path, {}, role="distributor")
