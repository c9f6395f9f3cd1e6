"""Notifications: one per order event worth telling the distributor and the customer,
GET /notifications with its filters, pages and access rules, and rebuild equals live."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from commands import Fenxiao
from commands.tick import tick
from projections import all_projections
from projections.notifications import notifications
from projections.runner import ProjectionRunner
from tests.api_support import Api
from tests.test_api_distributors import network
from tests.test_policies import policies

CNY = "CNY"
ADDRESS = {"region": "east", "city": "Hangzhou", "line1": "1 Beishan Rd"}


def ok(reply: Any, status: int = 200) -> dict[str, Any]:
    assert reply.status_code == status, reply.get_json()
    return reply.get_json()


def order(api: Api, order_id: str, customer_id: str, lines: list[tuple[str, int]],
          distributor_id: str | None, allow_backorder: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order_id, "shipping_address": ADDRESS, "allow_backorder": allow_backorder,
        "customer": {"customer_id": customer_id, "name": "Li Lei", "phone": "13900000001"},
        "lines": [{"sku": sku, "quantity": q} for sku, q in lines]}
    if distributor_id:
        body["distributor_id"] = distributor_id
    return ok(api.post("/orders", body, role="integration"), 201)


def pay(api: Api, placed: dict[str, Any]) -> dict[str, Any]:
    return ok(api.post(f"/orders/{placed['order_id']}/payments", {
        "amount": {"amount": placed["total"], "currency": CNY},
        "payment_reference": f"PAY-{placed['order_id']}"}, role="integration"))


def ship_and_deliver(api: Api, paid: dict[str, Any]) -> None:
    for shipment in paid["shipments"]:
        path = f"/shipments/{shipment['shipment_id']}"
        ok(api.post(f"{path}/pick", role="warehouse"))
        ok(api.post(f"{path}/pack", role="warehouse"))
        number = ok(api.post(f"{path}/dispatch", {}, role="warehouse"))["tracking_number"]
        ok(api.post("/carriers/SF/events", {
            "event_id": f"E-{shipment['shipment_id']}", "tracking_number": number,
            "status": "delivered", "occurred_at": datetime.now(timezone.utc).isoformat()},
            role="integration"))


def a_day_of_orders(api: Api) -> Fenxiao:
    """D1 (the distributor token's) and D2 sell; one order belongs to nobody."""
    app = api.client.application.extensions["fenxiao"]
    api.seed()  # TEA 10 in W1 (east), CUP 5 in W2 (south)
    network(api)
    ok(api.post("/carriers", {
        "carrier": "SF", "name": "SF Express", "base_fee": {"amount": 1000, "currency": CNY},
        "per_item_fee": {"amount": 100, "currency": CNY}, "promised_days": {"east": 1},
        "default_days": 2}), 201)
    order(api, "O-1", "C1", [("CUP", 6)], "D1", allow_backorder=True)  # 1 short
    ok(api.post("/stock/receipts", {"sku": "CUP", "warehouse_id": "W2", "quantity": 2,
                                    "reference": "PO-9"}, role="warehouse"), 201)
    paid = pay(api, order(api, "O-2", "C1", [("TEA", 1)], "D1"))
    ship_and_deliver(api, paid)
    pay(api, order(api, "O-3", "C3", [("TEA", 2)], "D2"))
    ok(api.post("/orders/O-3/cancel", {"reason": "changed my mind"}))
    order(api, "O-4", "C4", [("TEA", 1)], None)
    later = datetime.now(timezone.utc) + timedelta(seconds=app.settings.reservation_timeout_s)
    ProjectionRunner(app, all_projections()).catch_up()
    policies(app).catch_up()  # the backorder fill
    assert tick(app, later)["expired"] == 2  # O-1 and O-4 were never paid
    return app


def listed(api: Api, role: str = "admin", **query: Any) -> list[dict[str, Any]]:
    return ok(api.get("/notifications", role=role, **query))["items"]


def test_order_events_notify_the_distributor_and_the_customer(api: Api) -> None:
    app = a_day_of_orders(api)
    head = app.last_position()
    everything = listed(api, min_position=head, limit=500)
    kinds = {(n["order_id"], n["kind"]) for n in everything}
    assert kinds == {("O-1", "shortage"), ("O-1", "backorder_filled"), ("O-1", "expired"),
                     ("O-2", "shipped"), ("O-2", "delivered"), ("O-3", "refund"),
                     ("O-4", "expired")}
    assert [n["at"] for n in everything] == sorted(n["at"] for n in everything)
    by_kind = {(n["order_id"], n["kind"]): n for n in everything}
    shortage = by_kind[("O-1", "shortage")]
    assert (shortage["distributor_id"], shortage["customer_id"]) == ("D1", "C1")
    assert "1 × CUP" in shortage["message"]
    assert "1 × CUP allocated" in by_kind[("O-1", "backorder_filled")]["message"]
    assert "39.98 CNY refunded" in by_kind[("O-3", "refund")]["message"]  # 2 × 19.99
    assert by_kind[("O-4", "expired")]["distributor_id"] is None
    assert not any("Li Lei" in n["message"] or "13900000001" in n["message"]
                   for n in everything)

    mine = listed(api, role="distributor")  # D1's token: D1's orders only
    assert {n["order_id"] for n in mine} == {"O-1", "O-2"}
    assert listed(api, role="distributor", distributor_id="D1") == mine
    other = api.get("/notifications", role="distributor", distributor_id="D2")
    assert other.status_code == 404 and other.get_json()["error"]["code"] == "not_found"
    assert {n["order_id"] for n in listed(api, role="auditor", distributor_id="D2")} == \
        {"O-3"}
    assert {n["order_id"] for n in listed(api, role="operator", customer_id="C1")} == \
        {"O-1", "O-2"}
    assert listed(api, customer_id="C1", distributor_id="D2") == []
    for role in ("warehouse", "integration"):
        assert api.get("/notifications", role=role).status_code == 403


def test_pages_and_after(api: Api) -> None:
    app = a_day_of_orders(api)
    everything = listed(api, limit=500, min_position=app.last_position())
    walked, cursor = [], None
    while True:
        query = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        body = ok(api.get("/notifications", **query))
        walked += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert walked == everything
    third = everything[2]["at"]
    after = listed(api, after=third)
    assert after == [n for n in everything if n["at"] > third]
    assert api.get("/notifications", after="2026-01-01T00:00:00").status_code == 422
    assert api.get("/notifications", cursor="bm9wZQ").status_code == 422


def test_rebuild_equals_live_with_the_same_ids(api: Api) -> None:
    app = a_day_of_orders(api)
    runner = ProjectionRunner(app, all_projections())
    runner.catch_up()

    def rows() -> list[tuple]:
        with app.engine.connect() as conn:
            return sorted(tuple(map(str, r)) for r in conn.execute(select(notifications)))

    live = rows()
    assert len(live) == 7
    runner.rebuild("notifications")
    assert rows() == live


def test_an_order_placed_in_full_notifies_nobody(app: Fenxiao) -> None:
    from tests.test_policies import place, shop

    shop(app)
    place(app, "O-1", [("TEA", 1)])
    ProjectionRunner(app, all_projections()).catch_up()
    with app.engine.connect() as conn:
        assert conn.execute(select(notifications)).all() == []


@pytest.mark.parametrize("minor, text", [(0, "0.00 CNY"), (5, "0.05 CNY"),
                                         (123456, "1234.56 CNY")])
def test_amounts_read_as_yuan_and_fen(minor: int, text: str) -> None:
    from projections.notifications import _money

    assert _money(minor, "CNY") == text
