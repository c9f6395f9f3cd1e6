"""Order commands through the application (both databases): the write-side index of where
a SKU is stocked, backorders first come first served, expiry and completion (no-ops when
not due), the commission basis recorded at payment, cancelling a fulfilling order, and
the order read model rebuilt from the log equals the live one."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select

from commands import Fenxiao
from domain.catalog import Product
from domain.coupons import Coupon
from domain.errors import InsufficientStock
from domain.fulfilment import Shipment
from domain.orders import BackorderQueue, Order
from domain.promotions import CouponTerms
from domain.stock import StockItem
from projections import all_projections
from projections.orders import OrdersProjection, get_order, list_orders
from projections.runner import ProjectionRunner

T0 = datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
CUSTOMER = ("C-1", "Li Lei", "+86 138 0013 8000")
EAST = {"region": "east", "city": "Shanghai", "line1": "1 Nanjing Rd"}
SOUTH = {"region": "south", "city": "Guangzhou", "line1": "2 Huanshi Rd"}


def run(app: Fenxiao, command: Any) -> dict[str, Any]:
    return app.execute(command).body


def shop(app: Fenxiao) -> None:
    app.clock = lambda: T0
    for warehouse_id, region in (("W-EAST", "east"), ("W-SOUTH", "south")):
        run(app, lambda: app.open_warehouse(warehouse_id, warehouse_id, region))
    run(app, lambda: app.add_product("TEA", "Tea", "", 1000))
    run(app, lambda: app.add_product("CUP", "Cup", "", 500))
    run(app, lambda: app.receive_stock("TEA", "W-EAST", 4, "PO"))
    run(app, lambda: app.receive_stock("CUP", "W-SOUTH", 10, "PO"))


def place(app: Fenxiao, lines: list[tuple[str, int]], order_id: str, address=EAST,
          customer=CUSTOMER, **extra: Any) -> dict[str, Any]:
    return run(app, lambda: app.place_order(*customer, address, lines, order_id=order_id,
                                            **extra))


def held(app: Fenxiao, sku: str, warehouse_id: str) -> dict[str, int]:
    item = app.repository.get(StockItem.create_id(sku, warehouse_id))
    return dict(item.reservations)


def test_where_a_sku_is_stocked_is_known_on_the_write_side(app: Fenxiao) -> None:
    shop(app)
    run(app, lambda: app.open_warehouse("W-NORTH", "W-NORTH", "north"))
    assert app.product("TEA").stocked_at == {"W-EAST": "east"}
    run(app, lambda: app.transfer_stock("TEA", "W-EAST", "W-NORTH", 1))
    assert app.product("TEA").stocked_at == {"W-EAST": "east", "W-NORTH": "north"}
    before = app.repository.get(Product.create_id("TEA")).version
    run(app, lambda: app.receive_stock("TEA", "W-NORTH", 2, "PO"))  # known: no event
    assert app.repository.get(Product.create_id("TEA")).version == before


def test_a_stock_item_opened_before_the_index_is_indexed_at_its_next_receipt(
        app: Fenxiao) -> None:
    shop(app)
    run(app, lambda: app.open_warehouse("W-OLD", "W-OLD", "west"))
    legacy = StockItem(sku="TEA", warehouse_id="W-OLD")  # as older code opened items
    legacy.receive(5, "PO-old")
    run(app, lambda: {"position": app.record(legacy)})
    assert "W-OLD" not in app.product("TEA").stocked_at
    run(app, lambda: app.receive_stock("TEA", "W-OLD", 1, "PO-new"))
    assert app.product("TEA").stocked_at["W-OLD"] == "west"
    placed = place(app, [("TEA", 10)], "O-1")
    assert sorted((a["warehouse_id"], a["quantity"])
                  for a in placed["lines"][0]["allocations"]) == [("W-EAST", 4),
                                                                  ("W-OLD", 6)]


def test_backorders_are_filled_first_come_first_served(app: Fenxiao) -> None:
    shop(app)
    place(app, [("TEA", 4)], "O-0")  # takes every TEA there is
    for n in (1, 2, 3):
        order = place(app, [("TEA", 3), ("CUP", 1)], f"O-{n}", allow_backorder=True)
        assert order["status"] == "backordered" and order["lines"][0]["backordered"] == 3
    queue = app.repository.get(BackorderQueue.create_id("TEA"))
    assert queue.waiting == ["O-1", "O-2", "O-3"]
    assert run(app, lambda: app.fill_backorders("TEA"))["position"] is None  # no stock
    assert run(app, lambda: app.fill_backorders("CUP"))["position"] is None  # no queue
    run(app, lambda: app.receive_stock("TEA", "W-SOUTH", 5, "PO-2"))
    filled = run(app, lambda: app.fill_backorders("TEA"))
    # 5 arrive: O-1 gets its 3, O-2 the other 2 (still waiting for 1), O-3 nothing.
    assert [(f["order_id"], f["backordered"], f["status"]) for f in filled["filled"]] == [
        ("O-1", 0, "placed"), ("O-2", 1, "backordered")]
    assert app.repository.get(BackorderQueue.create_id("TEA")).waiting == ["O-2", "O-3"]
    assert held(app, "TEA", "W-SOUTH") == {"O-1": 3, "O-2": 2}
    assert run(app, lambda: app.fill_backorders("TEA"))["position"] is None
    run(app, lambda: app.cancel_order("O-2", "too slow"))
    assert app.repository.get(BackorderQueue.create_id("TEA")).waiting == ["O-3"]
    assert held(app, "TEA", "W-SOUTH") == {"O-1": 3}
    filled = run(app, lambda: app.fill_backorders("TEA"))  # O-2's 2 go to O-3
    assert [(f["order_id"], f["backordered"]) for f in filled["filled"]] == [("O-3", 1)]


def test_stock_that_arrives_goes_to_the_queue_before_a_new_order_takes_it(
        app: Fenxiao) -> None:
    """The receipt is one save and the backorder policy's fill a later one: an order
    placed in between serves the orders waiting first, in its own save."""
    shop(app)
    place(app, [("TEA", 4)], "O-0")
    run(app, lambda: app.pay_order("O-0", 4000, "PAY-0"))
    place(app, [("TEA", 3)], "O-1", allow_backorder=True)
    run(app, lambda: app.pay_order("O-1", 3000, "PAY-1"))
    place(app, [("TEA", 2), ("CUP", 1)], "O-2", allow_backorder=True)
    run(app, lambda: app.receive_stock("TEA", "W-SOUTH", 4, "PO-2"))  # no policy ran
    before = app.last_position()
    with pytest.raises(InsufficientStock) as refused:
        place(app, [("TEA", 1)], "O-3")
    assert refused.value.details["available"] == 0  # 3 + 1 were promised
    assert app.last_position() == before
    assert held(app, "TEA", "W-SOUTH") == {}  # a refusal records nothing, fills included
    late = place(app, [("TEA", 2)], "O-4", allow_backorder=True)
    assert late["lines"][0]["backordered"] == 2  # it waits behind O-2
    o1 = app.repository.get(Order.create_id("O-1"))
    assert o1.status == "fulfilling"  # paid and now complete: its shipment was created
    assert app.exists(Shipment.create_id(next(iter(o1.shipments))))
    assert held(app, "TEA", "W-SOUTH") == {"O-1": 3, "O-2": 1}
    assert app.repository.get(BackorderQueue.create_id("TEA")).waiting == ["O-2", "O-4"]
    assert run(app, lambda: app.fill_backorders("TEA"))["position"] is None  # nothing left
    run(app, lambda: app.receive_stock("TEA", "W-EAST", 1, "PO-3"))
    cup = place(app, [("CUP", 1), ("TEA", 1)], "O-5", allow_backorder=True)
    assert cup["lines"][1]["backordered"] == 1  # O-2's last unit came first
    assert app.repository.get(Order.create_id("O-2")).status == "placed"
    assert app.repository.get(BackorderQueue.create_id("TEA")).waiting == ["O-4", "O-5"]


def test_unpaid_orders_expire_after_the_timeout_and_not_before(app: Fenxiao) -> None:
    shop(app)
    run(app, lambda: {"position": app.record(Coupon.issue(
        CouponTerms(code="ONCE", amount_off_minor=100, total_limit=1), "CNY", T0))})
    place(app, [("TEA", 3)], "O-1", coupon_code="ONCE")
    place(app, [("TEA", 2)], "O-2", allow_backorder=True)  # 1 of it waits
    timeout = timedelta(seconds=app.settings.reservation_timeout_s)
    early = run(app, lambda: app.expire_order("O-1", T0 + timeout - timedelta(seconds=1)))
    assert (early["expired"], early["position"]) == (False, None)
    for order_id in ("O-1", "O-2"):
        done = run(app, lambda: app.expire_order(order_id, T0 + timeout))
        assert done["expired"] and done["status"] == "cancelled"
    assert held(app, "TEA", "W-EAST") == {}
    assert not app.repository.get(Coupon.create_id("ONCE")).redeemed_by("O-1")
    assert app.repository.get(BackorderQueue.create_id("TEA")).waiting == []
    again = run(app, lambda: app.expire_order("O-1", T0 + 2 * timeout))
    assert again["position"] is None
    place(app, [("CUP", 1)], "O-3")
    run(app, lambda: app.pay_order("O-3", 500, "PAY-3"))
    paid = run(app, lambda: app.expire_order("O-3", T0 + 2 * timeout))
    assert paid["position"] is None and paid["status"] == "fulfilling"


def deliver(app: Fenxiao, order_id: str, at: datetime) -> None:
    """What fulfilment will do, straight on the aggregates: dispatch and deliver."""
    def command() -> dict[str, Any]:
        order = app.order(order_id)
        for shipment_id in sorted(order.shipments):
            order.record_dispatch(shipment_id, "SF", f"T-{shipment_id}", at)
            order.record_delivery(shipment_id, at)
        return {"position": app.record(order)}
    run(app, command)


def test_completion_when_the_return_window_closes(app: Fenxiao) -> None:
    shop(app)
    place(app, [("CUP", 2)], "O-1")
    assert run(app, lambda: app.complete_order("O-1", T0 + timedelta(days=30)))[
        "position"] is None  # not delivered
    run(app, lambda: app.pay_order("O-1", 1000, "PAY-1"))
    delivered_at = T0 + timedelta(days=2)
    deliver(app, "O-1", delivered_at)
    window = timedelta(days=app.settings.return_window_days)
    early = run(app, lambda: app.complete_order("O-1", delivered_at + window
                                                - timedelta(seconds=1)))
    assert (early["completed"], early["status"]) == (False, "delivered")
    done = run(app, lambda: app.complete_order("O-1", delivered_at + window))
    assert (done["completed"], done["status"]) == (True, "completed")
    assert run(app, lambda: app.complete_order("O-1", delivered_at + 2 * window))[
        "position"] is None


def paid_event(app: Fenxiao, order_id: str) -> Any:
    events = [app.mapper.to_domain_event(stored)
              for stored in app.recorder.select_events(Order.create_id(order_id))]
    (paid,) = [e for e in events if type(e) is Order.OrderPaid]
    return paid


def test_payment_records_the_commission_basis_as_it_stands(app: Fenxiao) -> None:
    shop(app)
    run(app, lambda: app.apply_distributor("Up", "13900000001", distributor_id="UP"))
    code = run(app, lambda: app.approve_distributor("UP"))["referral_code"]
    run(app, lambda: app.apply_distributor("Seller", "13900000002", code,
                                           distributor_id="SELLER"))
    run(app, lambda: app.approve_distributor("SELLER"))
    run(app, lambda: app.set_commission_rule("TEA", "rate", 2000, 300))
    place(app, [("TEA", 1), ("CUP", 2)], "O-1", distributor_id="SELLER")
    run(app, lambda: app.suspend_distributor("UP", "audit"))
    run(app, lambda: app.pay_order("O-1", 2000, "PAY-1"))
    run(app, lambda: app.set_commission_rule("TEA", "rate", 100, 100))  # later: no effect
    basis = paid_event(app, "O-1").commission_basis
    assert basis["order_id"] == "O-1" and basis["currency"] == "CNY"
    assert basis["lines"] == [
        {"line_no": 1, "sku": "TEA", "quantity": 1, "net_minor": 1000},
        {"line_no": 2, "sku": "CUP", "quantity": 2, "net_minor": 1000}]
    assert basis["seller"] == {"distributor_id": "SELLER", "status": "active",
                               "upline_id": "UP"}
    assert basis["upline"] == {"distributor_id": "UP", "status": "suspended",
                               "upline_id": None}
    assert (basis["rules"]["TEA"]["level1"], basis["rules"]["TEA"]["level2"]) == (2000, 300)
    assert basis["rules"]["CUP"] == basis["default_rule"]
    assert basis["self_purchase"] is False
    place(app, [("CUP", 1)], "O-2", customer=("C-2", "Me", "13900000002"),
          distributor_id="SELLER")  # the seller's own phone: a self-purchase
    run(app, lambda: app.pay_order("O-2", 500, "PAY-2"))
    assert paid_event(app, "O-2").commission_basis["self_purchase"] is True
    place(app, [("CUP", 1)], "O-3", customer=("C-3", "Anon", "13700000000"))
    run(app, lambda: app.pay_order("O-3", 500, "PAY-3"))
    assert paid_event(app, "O-3").commission_basis is None  # nobody credited


def test_cancelling_a_fulfilling_order_cancels_its_shipments(app: Fenxiao) -> None:
    shop(app)
    placed = place(app, [("CUP", 3)], "O-1", address=SOUTH)
    paid = run(app, lambda: app.pay_order("O-1", 1500, "PAY-1"))
    (shipment_ref,) = paid["shipments"]
    shipment_id = shipment_ref["shipment_id"]

    def pick() -> dict[str, Any]:
        shipment = app.repository.get(Shipment.create_id(shipment_id))
        shipment.pick(T0)
        return {"position": app.record(shipment)}
    run(app, pick)
    cancelled = run(app, lambda: app.cancel_order("O-1", "customer called"))
    assert cancelled["status"] == "cancelled" and cancelled["refunded"] == 1500
    assert app.repository.get(Shipment.create_id(shipment_id)).status == "cancelled"
    assert held(app, "CUP", "W-SOUTH") == {}
    assert placed["lines"][0]["allocations"] == [{"warehouse_id": "W-SOUTH", "quantity": 3}]


def rows(app: Fenxiao) -> dict[str, list]:
    with app.engine.connect() as conn:
        return {t.name: sorted(tuple(map(str, r)) for r in conn.execute(select(t)))
                for t in OrdersProjection.tables}


def test_the_order_read_model_rebuilt_equals_live_and_the_aggregates(app: Fenxiao) -> None:
    runner = ProjectionRunner(app, all_projections(), batch_size=3)
    shop(app)
    place(app, [("TEA", 4)], "O-0")
    place(app, [("TEA", 2), ("CUP", 1)], "O-1", allow_backorder=True)
    place(app, [("CUP", 2)], "O-2", address=SOUTH)
    runner.catch_up(["orders"])
    run(app, lambda: app.pay_order("O-1", 2500, "PAY-1"))
    run(app, lambda: app.pay_order("O-2", 1000, "PAY-2"))
    run(app, lambda: app.receive_stock("TEA", "W-SOUTH", 2, "PO-2"))
    run(app, lambda: app.fill_backorders("TEA"))
    deliver(app, "O-2", T0 + timedelta(days=1))
    run(app, lambda: app.complete_order("O-2", T0 + timedelta(days=30)))
    run(app, lambda: app.cancel_order("O-1", "changed mind"))
    runner.catch_up(["orders"])
    live = rows(app)
    runner.rebuild("orders")
    assert rows(app) == live
    from commands.orders import order_view
    with app.engine.connect() as conn:
        for order_id in ("O-0", "O-1", "O-2"):
            assert get_order(conn, order_id) == order_view(app.order(order_id))
        statuses = [(o["order_id"], o["status"]) for o in list_orders(conn)]
    assert statuses == [("O-2", "completed"), ("O-1", "cancelled"), ("O-0", "placed")]
