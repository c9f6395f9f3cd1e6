"""Orders under concurrency, through the HTTP layer from many threads: stock is never
reserved twice and a coupon's total limit holds (both databases; PostgreSQL is the one
that really runs them in parallel)."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from domain.coupons import Coupon
from domain.orders import Order
from domain.promotions import CouponTerms
from domain.stock import StockItem
from tests.api_support import Api

ADDRESS = {"region": "east", "city": "Shanghai", "line1": "1 Nanjing Rd"}


def shop(api: Api) -> Any:
    app = api.client.application.extensions["fenxiao"]
    for warehouse_id, region in (("W1", "east"), ("W2", "south")):
        api.post("/warehouses", {"warehouse_id": warehouse_id, "name": warehouse_id,
                                 "region": region})
    api.post("/products", {"sku": "TEA", "name": "Tea",
                           "price": {"amount": 1000, "currency": "CNY"}})
    for warehouse_id, quantity in (("W1", 12), ("W2", 8)):
        api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": warehouse_id,
                                     "quantity": quantity, "reference": "PO"})
    return app


def send_orders(api: Api, bodies: list[dict[str, Any]]) -> list[tuple[int, dict]]:
    flask = api.client.application

    def send(order: dict[str, Any]) -> tuple[int, dict]:
        reply = flask.test_client().post("/api/v1/orders", json=order,
                                         headers=api.headers("integration"))
        return reply.status_code, reply.get_json()

    with ThreadPoolExecutor(max_workers=16) as pool:
        return list(pool.map(send, bodies))


def order(n: int, quantity: int = 1, **extra: Any) -> dict[str, Any]:
    return {"order_id": f"O-{n}", "shipping_address": ADDRESS,
            "customer": {"customer_id": f"C-{n}", "name": "Buyer", "phone": "13800138000"},
            "lines": [{"sku": "TEA", "quantity": quantity}], **extra}


def test_fifty_parallel_orders_for_twenty_units_reserve_exactly_twenty(api: Api) -> None:
    app = shop(api)
    replies = send_orders(api, [order(n, allow_backorder=n % 2 == 0) for n in range(50)])
    refused = [body for status, body in replies if status == 409]
    placed = [body for status, body in replies if status == 201]
    assert len(refused) + len(placed) == 50, [b for s, b in replies if s not in (201, 409)]
    assert {b["error"]["code"] for b in refused} <= {"insufficient_stock"}
    allocated = sum(a["quantity"] for o in placed for a in o["lines"][0]["allocations"])
    waiting = sum(o["lines"][0]["backordered"] for o in placed)
    assert allocated == 20 and allocated + waiting == len(placed)
    assert all(o["status"] == "backordered" for o in placed if o["lines"][0]["backordered"])
    items = [app.repository.get(StockItem.create_id("TEA", w)) for w in ("W1", "W2")]
    assert sum(item.reserved for item in items) == 20
    assert all(item.reserved == item.on_hand for item in items)
    held = {ref for item in items for ref in item.reservations}
    assert held == {o["order_id"] for o in placed if o["lines"][0]["allocations"]}
    for body in placed:  # every acknowledged order is in the store as acknowledged
        stored = app.repository.get(Order.create_id(body["order_id"]))
        assert stored.lines[0]["backordered"] == body["lines"][0]["backordered"]


def test_a_coupon_limited_to_five_is_redeemed_five_times_under_twenty_orders(
        api: Api) -> None:
    app = shop(api)
    terms = CouponTerms(code="FIVE", amount_off_minor=100, total_limit=5)
    app.execute(lambda: {"position": app.record(Coupon.issue(terms, "CNY", app.clock()))})
    replies = send_orders(api, [order(n, coupon_code="FIVE") for n in range(20)])
    statuses = sorted(status for status, _ in replies)
    assert statuses == [201] * 5 + [409] * 15, replies
    assert {body["error"]["code"] for status, body in replies if status == 409} == {
        "coupon_exhausted"}
    coupon = app.repository.get(Coupon.create_id("FIVE"))
    assert coupon.redeemed == 5
    assert set(coupon.redemptions) == {body["order_id"] for s, body in replies if s == 201}
    reserved = sum(app.repository.get(StockItem.create_id("TEA", w)).reserved
                   for w in ("W1", "W2"))
    assert reserved == 5  # the refused orders reserved nothing


def test_the_same_races_through_a_real_server_process(db_url: str, processes) -> None:
    """50 clients against `fenxiao serve` (8 threads): 20 units, each reserved once; a
    coupon limited to 5 is redeemed 5 times."""
    import os

    from tests.test_server import call, cli, free_port, start, wait_until_up

    env = {**os.environ, "FENXIAO_DATABASE_URL": db_url, "FENXIAO_RATE_LIMIT": "off"}
    token = cli(env, "token", "create", "--role", "admin", "--name", "race")
    port = free_port()
    processes.append(start(env, "serve", "--port", str(port), "--no-worker"))
    base = f"http://127.0.0.1:{port}/api/v1"
    wait_until_up(base, processes[0])
    for warehouse_id, region in (("W1", "east"), ("W2", "south")):
        call(base, "POST", "/warehouses", token, {"warehouse_id": warehouse_id,
                                                  "name": warehouse_id, "region": region})
    call(base, "POST", "/products", token, {"sku": "TEA", "name": "Tea",
                                            "price": {"amount": 1000, "currency": "CNY"}})
    for warehouse_id, quantity in (("W1", 12), ("W2", 8)):
        call(base, "POST", "/stock/receipts", token, {"sku": "TEA", "quantity": quantity,
                                                      "warehouse_id": warehouse_id,
                                                      "reference": "PO"})
    call(base, "POST", "/coupons", token, {"code": "FIVE", "total_limit": 5,
                                           "amount_off": {"amount": 100, "currency": "CNY"}})
    bodies = [order(n, coupon_code="FIVE") if n < 20 else order(n) for n in range(50)]
    with ThreadPoolExecutor(max_workers=50) as pool:
        replies = list(pool.map(lambda body: call(base, "POST", "/orders", token, body),
                                bodies))
    placed = [body for status, body, _ in replies if status == 201]
    codes = sorted(body["error"]["code"] for status, body, _ in replies if status != 201)
    assert len(placed) == 20 and set(codes) <= {"insufficient_stock", "coupon_exhausted"}
    with_coupon = sum(body["discount"] > 0 for body in placed)
    from commands import Fenxiao
    from commands.settings import Settings

    app = Fenxiao(Settings(database_url=db_url))
    try:
        items = [app.repository.get(StockItem.create_id("TEA", w)) for w in ("W1", "W2")]
        assert sum(item.reserved for item in items) == 20
        assert app.repository.get(Coupon.create_id("FIVE")).redeemed == with_coupon <= 5
        assert {ref for item in items for ref in item.reservations} == \
            {body["order_id"] for body in placed}
    finally:
        app.close()
