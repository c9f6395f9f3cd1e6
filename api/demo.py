"""Demo data for `fenxiao demo`, all through the ordinary commands: a small catalog with
stock in two warehouses, two distributors (the second referred by the first), a carrier, a
coupon, orders in each state a newcomer should see: placed, paid (fulfilling), shipped,
delivered; and after-sales cases: a return refunded (its commission reversed by the worker)
and an exchange whose replacement is on its way."""
from __future__ import annotations

from commands import Fenxiao
from commands.app import CommandContext

WAREHOUSES = [
    ("WH-EAST", "Shanghai Qingpu", "east"),
    ("WH-SOUTH", "Guangzhou Baiyun", "south"),
]
PRODUCTS = [
    ("TEA-LJ-250", "West Lake Longjing tea", "250 g tin", 12800, 7600),
    ("TEA-PE-357", "Pu'er cake", "357 g", 26800, 15500),
    ("CUP-GW-6", "Celadon tea cups", "set of 6", 9900, 5200),
    ("SET-TRAVEL", "Travel tea set", "1 pot, 2 cups", 15900, 8800),
]
RECEIPTS = [
    ("TEA-LJ-250", "WH-EAST", 120), ("TEA-LJ-250", "WH-SOUTH", 40),
    ("TEA-PE-357", "WH-SOUTH", 60), ("CUP-GW-6", "WH-EAST", 80),
    ("SET-TRAVEL", "WH-EAST", 25), ("SET-TRAVEL", "WH-SOUTH", 10),
]


def load_demo(app: Fenxiao) -> int:
    """Record the demo catalog through the ordinary commands; return the last position."""
    context = CommandContext(actor="demo")
    run = lambda command: app.execute(command, context=context).body["position"]  # noqa: E731
    for warehouse_id, name, region in WAREHOUSES:
        run(lambda: app.open_warehouse(warehouse_id, name, region))
    for sku, name, spec, price, wholesale in PRODUCTS:
        run(lambda: app.add_product(sku, name, spec, price, wholesale))
    for n, (sku, warehouse_id, quantity) in enumerate(RECEIPTS, 1):
        run(lambda: app.receive_stock(sku, warehouse_id, quantity, f"DEMO-PO-{n:03d}"))
    run(lambda: app.adjust_stock("CUP-GW-6", "WH-EAST", -2, "broken in handling"))
    run(lambda: app.transfer_stock("TEA-LJ-250", "WH-EAST", "WH-SOUTH", 20))
    load_network(app, context)
    load_orders(app, context)
    return load_aftersales(app, context)


def load_network(app: Fenxiao, context: CommandContext) -> int:
    app.execute(lambda: app.apply_distributor("Li Na", "13800000001",
                                              distributor_id="DEMO-D1"), context=context)
    code = app.execute(lambda: app.approve_distributor("DEMO-D1"),
                       context=context).body["referral_code"]
    app.execute(lambda: app.apply_distributor("Wang Fang", "13800000002", code,
                                              distributor_id="DEMO-D2"), context=context)
    return app.execute(lambda: app.approve_distributor("DEMO-D2"),
                       context=context).body["position"]


CUSTOMER = {"name": "Zhao Lei", "phone": "13900000001"}
ADDRESS = {"region": "east", "city": "Hangzhou", "line1": "18 Wensan Road"}
# order id -> (lines, distributor, how far it goes)
ORDERS = {
    "DEMO-O1": ([("TEA-LJ-250", 2), ("CUP-GW-6", 1)], "DEMO-D2", "delivered"),
    "DEMO-O2": ([("TEA-PE-357", 1)], "DEMO-D1", "shipped"),
    "DEMO-O3": ([("SET-TRAVEL", 1), ("CUP-GW-6", 2)], "DEMO-D2", "paid"),
    "DEMO-O4": ([("TEA-LJ-250", 1)], None, "placed"),
    "DEMO-O5": ([("CUP-GW-6", 2)], "DEMO-D1", "delivered"),
}
STEPS = ("placed", "paid", "shipped", "delivered")


def load_orders(app: Fenxiao, context: CommandContext) -> int:
    from domain.carriers import RateCard
    from domain.promotions import CouponTerms

    run = lambda command: app.execute(command, context=context).body  # noqa: E731
    run(lambda: app.add_carrier(RateCard("SF", "SF Express", 1200, 100, 3,
                                         {"east": 1, "south": 2})))
    run(lambda: app.add_carrier(RateCard("YTO", "YTO Express", 800, 50, 4, {"east": 2})))
    run(lambda: app.issue_coupon(CouponTerms("WELCOME10", amount_off_minor=1000,
                                             min_spend_minor=10000)))
    position = 0
    for order_id, (lines, distributor_id, goal) in ORDERS.items():
        customer_id = f"DEMO-C-{order_id[-1]}"
        order = run(lambda: app.place_order(
            customer_id, CUSTOMER["name"], CUSTOMER["phone"], ADDRESS, lines,
            order_id=order_id, distributor_id=distributor_id,
            coupon_code="WELCOME10" if order_id == "DEMO-O1" else None))
        position = order["position"]
        if STEPS.index(goal) >= STEPS.index("paid"):
            paid = run(lambda: app.pay_order(order_id, order["total"], f"DEMO-PAY-{order_id}"))
            position = paid["position"]
        if STEPS.index(goal) >= STEPS.index("shipped"):
            position = ship(app, run, order_id, delivered=goal == "delivered")
    return position


def ship(app: Fenxiao, run, order_id: str, delivered: bool) -> int:
    position = 0
    for shipment_id in sorted(app.order(order_id).shipments):
        run(lambda: app.pick_shipment(shipment_id))
        run(lambda: app.pack_shipment(shipment_id))
        dispatched = run(lambda: app.dispatch_shipment(shipment_id))
        position = dispatched["position"]
        if delivered:
            position = run(lambda: app.record_carrier_event(
                dispatched["carrier"], f"DEMO-EV-{shipment_id}", dispatched["tracking_number"],
                "delivered", app.clock()))["position"]
    return position


def load_aftersales(app: Fenxiao, context: CommandContext) -> int:
    """One cup of DEMO-O5 returned and refunded; one of DEMO-O1 exchanged and re-sent."""
    run = lambda command: app.execute(command, context=context).body  # noqa: E731
    run(lambda: app.request_case("DEMO-O5", "return_refund", [("CUP-GW-6", 1)],
                                 "a cup arrived cracked", case_id="DEMO-AS1"))
    run(lambda: app.approve_case("DEMO-AS1"))
    run(lambda: app.receive_case("DEMO-AS1", "WH-EAST", restock=False))
    paid = app.order("DEMO-O5").line_of("CUP-GW-6")["paid_minor"]
    run(lambda: app.refund_case("DEMO-AS1", paid // 2, "DEMO-REFUND-1"))
    run(lambda: app.request_case("DEMO-O1", "exchange", [("CUP-GW-6", 1)],
                                 "wrong glaze colour", case_id="DEMO-AS2"))
    run(lambda: app.approve_case("DEMO-AS2"))
    run(lambda: app.receive_case("DEMO-AS2", "WH-EAST", restock=True))
    return run(lambda: app.ship_case("DEMO-AS2"))["position"]
