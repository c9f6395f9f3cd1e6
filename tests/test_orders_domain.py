"""Orders: allocation, pricing, the status table, payment, cancellation, refunds, money."""
from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.accruals import RefundExceedsPaid
from domain.allocation import StockCandidate, plan_allocation, plan_line, require_covered
from domain.checks import InconsistentInput
from domain.errors import InsufficientStock, InvalidCommand, InvalidTransition, \
    ProductUnavailable
from domain.orders import AmountMismatch, Order, PaymentReference
from domain.pricing import CatalogEntry, ShippingFeeRule, price_order
from domain.promotions import CouponNotApplicable, CouponTerms, ThresholdTerms, Tier
from tests.domain_support import assert_replays, state

AT = datetime(2024, 6, 1, 9, tzinfo=timezone.utc)
DAY = timedelta(days=1)
WINDOW_S = 7 * 86_400
CATALOG = {"TEA": CatalogEntry("TEA", "Longjing tea", 1999),
           "CUP": CatalogEntry("CUP", "Celadon cup", 1000),
           "OLD": CatalogEntry("OLD", "Old stock", 500, listed=False)}
ADDRESS = {"region": "ZJ", "city": "Hangzhou", "line1": "1 Beishan Rd"}
STOCK = {"TEA": [StockCandidate("W-SH", "SH", 50), StockCandidate("W-HZ", "ZJ", 10)],
         "CUP": [StockCandidate("W-SH", "SH", 5)]}
LINES = (("TEA", 2), ("CUP", 1))


def place(lines=LINES, stock=STOCK, allow_backorder: bool = False,
          shipping: ShippingFeeRule = ShippingFeeRule(), coupon: CouponTerms | None = None,
          thresholds=(), order_id: str = "O-1") -> Order:
    priced = price_order(lines, CATALOG, "CNY", AT, coupon, thresholds, shipping)
    plans = plan_allocation(lines, ADDRESS["region"], stock)
    return Order.place(order_id, "C-1", "Li Lei", "138 0013 8000", ADDRESS, priced, plans,
                       allow_backorder, "D-1", AT)


def names(order: Order) -> list[str]:
    return [type(e).__name__ for e in order.collect_events()]


# -- allocation -------------------------------------------------------------------------

def test_region_first_then_most_available_then_split() -> None:
    candidates = [StockCandidate("W-B", "SH", 9), StockCandidate("W-A", "SH", 9),
                  StockCandidate("W-HZ", "ZJ", 3), StockCandidate("W-BJ", "BJ", 20)]
    plan = plan_line("TEA", 30, "ZJ", candidates)
    assert plan.allocations == (("W-HZ", 3), ("W-BJ", 20), ("W-A", 7))
    assert (plan.allocated, plan.uncovered, plan.available) == (30, 0, 41)
    short = plan_line("TEA", 50, "ZJ", candidates)
    assert (short.allocated, short.uncovered) == (41, 9)


def test_insufficient_stock_names_the_line() -> None:
    plans = plan_allocation([("TEA", 5), ("CUP", 9)], "ZJ", {"TEA": [], **STOCK})
    with pytest.raises(InsufficientStock) as refused:
        require_covered(plans)
    assert refused.value.details["sku"] == "CUP"
    assert (refused.value.details["requested"], refused.value.details["available"]) == (9, 5)
    require_covered(plan_allocation([("TEA", 60)], "ZJ", STOCK))


warehouses = st.lists(st.builds(StockCandidate, warehouse_id=st.sampled_from("ABCDE"),
                                region=st.sampled_from(["ZJ", "SH", "BJ"]),
                                available=st.integers(-2, 30)),
                      max_size=5, unique_by=lambda c: c.warehouse_id)


@given(lines=st.lists(st.tuples(st.sampled_from(["TEA", "CUP", "PEN"]), st.integers(1, 60)),
                      min_size=1, max_size=4),
       stock=st.fixed_dictionaries({"TEA": warehouses, "CUP": warehouses}),
       region=st.sampled_from(["ZJ", "SH", "XJ"]))
def test_allocation_laws(lines, stock, region) -> None:
    plans = plan_allocation(lines, region, stock)
    taken: dict[tuple[str, str], int] = {}
    for (sku, quantity), plan in zip(lines, plans):
        assert plan.allocated + plan.uncovered == quantity == plan.requested
        assert all(q > 0 for _, q in plan.allocations)
        for warehouse_id, q in plan.allocations:
            taken[(sku, warehouse_id)] = taken.get((sku, warehouse_id), 0) + q
        local = [w for w, _ in plan.allocations if _region(stock, sku, w) == region]
        assert [w for w, _ in plan.allocations][:len(local)] == local  # region first
    for (sku, warehouse_id), q in taken.items():
        available = next(c.available for c in stock[sku] if c.warehouse_id == warehouse_id)
        assert q <= available
    for (sku, _), plan in zip(lines, plans):
        if plan.uncovered:  # nothing left anywhere for that SKU
            assert all(taken.get((sku, c.warehouse_id), 0) >= c.available
                       for c in stock.get(sku, []))


def _region(stock, sku: str, warehouse_id: str) -> str:
    return next(c.region for c in stock[sku] if c.warehouse_id == warehouse_id)


# -- pricing ----------------------------------------------------------------------------

def test_prices_come_from_the_catalog_and_shipping_is_waived_at_the_minimum() -> None:
    priced = price_order(LINES, CATALOG, "CNY", AT, shipping=ShippingFeeRule(800, 5000))
    assert [(x.line_no, x.gross_minor, x.net_minor) for x in priced.lines] == \
        [(1, 3998, 3998), (2, 1000, 1000)]
    assert (priced.subtotal_minor, priced.shipping_fee_minor, priced.total_minor) == \
        (4998, 800, 5798)
    free = price_order((("TEA", 2), ("CUP", 2)), CATALOG, "CNY", AT,
                       shipping=ShippingFeeRule(800, 5000))
    assert free.shipping_fee_minor == 0 and free.total_minor == 5998
    # the waiver looks at the goods' net: a discount can bring it back under the minimum
    discounted = price_order((("TEA", 2), ("CUP", 2)), CATALOG, "CNY", AT,
                             thresholds=[ThresholdTerms("P", (Tier(5000, 1000),))],
                             shipping=ShippingFeeRule(800, 5000))
    assert discounted.shipping_fee_minor == 800 and discounted.total_minor == 4998 + 800


@pytest.mark.parametrize("lines, error", [
    ((), InvalidCommand), ((("TEA", 1), ("TEA", 2)), InvalidCommand),
    ((("TEA", 0),), InvalidCommand), ((("TEA", 10_001),), InvalidCommand),
    ((("PEN", 1),), InvalidCommand), ((("OLD", 1),), ProductUnavailable),
])
def test_bad_lines_are_refused(lines, error: type) -> None:
    with pytest.raises(error):
        price_order(lines, CATALOG, "CNY", AT)


# -- placing ----------------------------------------------------------------------------

def test_place_snapshots_everything() -> None:
    order = place(coupon=CouponTerms("TEA10", percent_off_bp=1000, skus=("TEA",)),
                  shipping=ShippingFeeRule(800, None))
    assert order.id == Order.create_id("O-1") and order.status == "placed"
    assert order.customer == {"customer_id": "C-1", "name": "Li Lei", "phone": "+8613800138000"}
    assert order.shipping_address["postcode"] is None and order.distributor_id == "D-1"
    tea, cup = order.lines
    assert (tea["gross_minor"], tea["discount_minor"], tea["net_minor"]) == (3998, 400, 3598)
    assert tea["allocations"] == [{"warehouse_id": "W-HZ", "quantity": 2}]
    assert cup["allocations"] == [{"warehouse_id": "W-SH", "quantity": 1}]
    assert (order.subtotal_minor, order.discount_minor, order.shipping_fee_minor,
            order.total_minor) == (4998, 400, 800, 5398)
    assert order.coupon_code == "TEA10" and order.promotions["coupon_discount_minor"] == 400
    assert order.allocated_stock() == [("CUP", "W-SH", 1), ("TEA", "W-HZ", 2)]
    assert names(order) == ["OrderPlaced"]


def test_short_stock_is_refused_or_backordered() -> None:
    with pytest.raises(InsufficientStock):
        place(lines=(("CUP", 7),))
    order = place(lines=(("CUP", 7), ("TEA", 1)), allow_backorder=True)
    assert order.status == "backordered" and order.backorders() == [(1, "CUP", 2)]
    assert order.lines[0]["allocations"] == [{"warehouse_id": "W-SH", "quantity": 5}]


@pytest.mark.parametrize("field, value", [
    ("phone", "12345"), ("name", "  "), ("customer_id", ""), ("region", ""), ("line1", None),
])
def test_bad_customer_or_address_is_refused(field: str, value) -> None:
    customer = {"customer_id": "C-1", "name": "Li Lei", "phone": "13800138000"}
    address = dict(ADDRESS)
    (customer if field in customer else address)[field] = value
    priced = price_order(LINES, CATALOG, "CNY", AT)
    with pytest.raises(InvalidCommand) as refused:
        Order.place("O-1", customer["customer_id"], customer["name"], customer["phone"],
                    address, priced, plan_allocation(LINES, "ZJ", STOCK), False, None, AT)
    assert refused.value.details["field"] == field


def test_inconsistent_money_or_plans_are_refused_even_under_python_O() -> None:
    priced = price_order(LINES, CATALOG, "CNY", AT)
    plans = plan_allocation(LINES, "ZJ", STOCK)
    tampered = dataclasses.replace(priced, lines=(
        dataclasses.replace(priced.lines[0], net_minor=1), priced.lines[1]))
    for bad_priced, bad_plans in ((tampered, plans), (priced, plans[:1]),
                                  (priced, plan_allocation([("TEA", 3), ("CUP", 1)], "ZJ",
                                                           STOCK))):
        with pytest.raises(InconsistentInput):
            Order.place("O-1", "C-1", "Li Lei", "13800138000", ADDRESS, bad_priced,
                        bad_plans, False, None, AT)


# -- the status table --------------------------------------------------------------------

def order_in(status: str) -> Order:
    """An order brought to `status` through its commands, events collected."""
    return order_with_history(status)[0]


def order_with_history(status: str) -> tuple[Order, list]:
    order = place(lines=(("TEA", 2), ("CUP", 6)) if status == "backordered" else LINES,
                  allow_backorder=True)
    steps = {
        "paid": ["pay"], "fulfilling": ["pay", "start"],
        "shipped": ["pay", "start", "dispatch"],
        "delivered": ["pay", "start", "dispatch", "deliver"],
        "completed": ["pay", "start", "dispatch", "deliver", "complete"],
        "cancelled": ["cancel"],
    }.get(status, [])
    for step in steps:
        if step == "pay":
            order.pay(order.total_minor, "PAY-1", AT)
        elif step == "start":
            order.start_fulfilment(AT)
        elif step == "dispatch":
            for plan in order.shipment_plans():
                order.record_dispatch(plan.shipment_id, "SF", "SF" + plan.warehouse_id, AT)
        elif step == "deliver":
            for plan in order.shipment_plans():
                order.record_delivery(plan.shipment_id, AT + DAY)
        elif step == "complete":
            order.complete(AT + 9 * DAY, WINDOW_S)
        else:
            order.cancel("customer changed their mind", AT)
    assert order.status == status
    return order, order.collect_events()


def some_shipment(order: Order) -> str:
    return order.shipment_plans()[0].shipment_id if order.shipments else "SH-NONE"


COMMANDS = {
    "fill_backorder": (lambda o: o.fill_backorder(2, [("W-HZ", 1)], AT),
                       {"backordered"}),
    "pay": (lambda o: o.pay(o.total_minor, "PAY-2", AT), {"placed", "backordered"}),
    "expire": (lambda o: o.expire(AT + DAY, 1800), {"placed", "backordered"}),
    "cancel": (lambda o: o.cancel("changed", AT),
               {"placed", "backordered", "paid", "fulfilling"}),
    "start_fulfilment": (lambda o: o.start_fulfilment(AT), {"paid"}),
    "record_dispatch": (lambda o: o.record_dispatch(some_shipment(o), "SF", "T", AT),
                        {"fulfilling"}),
    "record_delivery": (lambda o: o.record_delivery(some_shipment(o), AT),
                        {"shipped"}),  # in fulfilling, only a dispatched shipment can
    "complete": (lambda o: o.complete(AT + 30 * DAY, WINDOW_S), {"delivered"}),
}
STATUSES = ["placed", "backordered", "paid", "fulfilling", "shipped", "delivered",
            "completed", "cancelled"]


@pytest.mark.parametrize("status", STATUSES)
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_status_table(status: str, command: str) -> None:
    order, history = order_with_history(status)
    run, allowed_from = COMMANDS[command]
    if status in allowed_from:
        run(order)
        new = order.collect_events()
        assert len(new) == 1
        assert_replays(order, history + new)
        return
    before = state(order)
    with pytest.raises(InvalidTransition):
        run(order)
    assert order.collect_events() == [] and state(order) == before


def test_the_whole_way_with_two_shipments() -> None:
    order = place(shipping=ShippingFeeRule(600, None))
    events = order.collect_events()
    order.pay(5598, " PAY-1 ", AT)
    assert order.status == "paid" and order.payment_reference == "PAY-1"
    assert [x["paid_minor"] for x in order.lines] == [3998, 1000]
    assert order.shipping_paid_minor == 600 and order.paid_minor == order.total_minor
    plans = order.start_fulfilment(AT)
    assert [(p.warehouse_id, p.lines) for p in plans] == [("W-HZ", (("TEA", 2),)),
                                                           ("W-SH", (("CUP", 1),))]
    first, second = (p.shipment_id for p in plans)
    order.record_dispatch(first, "SF", "SF1", AT)
    assert order.status == "fulfilling"
    order.record_dispatch(second, "ZTO", "ZT2", AT)
    assert order.status == "shipped"
    order.record_delivery(second, AT + DAY)
    assert order.status == "shipped" and order.delivered_at is None
    order.record_delivery(first, AT + 2 * DAY)
    assert order.status == "delivered" and order.delivered_at == AT + 2 * DAY
    assert not order.is_completable(AT + 9 * DAY - timedelta(seconds=1), WINDOW_S)
    with pytest.raises(InvalidTransition):
        order.complete(AT + 9 * DAY - timedelta(seconds=1), WINDOW_S)
    order.complete(AT + 9 * DAY, WINDOW_S)
    assert order.status == "completed"
    events += order.collect_events()
    assert [type(e).__name__ for e in events] == [
        "OrderPlaced", "OrderPaid", "FulfilmentStarted", "OrderShipmentDispatched",
        "OrderShipmentDispatched", "OrderShipmentDelivered", "OrderShipmentDelivered",
        "OrderCompleted"]
    assert_replays(order, events)


def test_dispatch_and_delivery_of_one_shipment_happen_once() -> None:
    order = order_in("fulfilling")
    sid = some_shipment(order)
    with pytest.raises(InvalidTransition):
        order.record_delivery(sid, AT)  # not dispatched yet
    with pytest.raises(InvalidCommand):
        order.record_dispatch("SH-UNKNOWN", "SF", "T", AT)
    order.record_dispatch(sid, "SF", "T", AT)
    with pytest.raises(InvalidTransition):
        order.record_dispatch(sid, "SF", "T", AT)
    order.record_delivery(sid, AT + DAY)  # delivered before the other one left
    assert order.status == "fulfilling" and order.delivered_at is None
    with pytest.raises(InvalidTransition):
        order.record_delivery(sid, AT + DAY)


def test_backorder_fill_then_pay_then_fulfil() -> None:
    order = place(lines=(("CUP", 8),), allow_backorder=True)
    order.pay(order.total_minor, "PAY-1", AT)
    assert order.status == "backordered" and order.is_paid
    with pytest.raises(InvalidCommand):
        order.fill_backorder(1, [("W-HZ", 4)], AT)  # only 3 wait
    order.fill_backorder(1, [("W-HZ", 2)], AT)
    assert order.status == "backordered" and order.backorders() == [(1, "CUP", 1)]
    order.fill_backorder(1, [("W-SH", 1)], AT)
    assert order.status == "paid" and order.backorders() == []
    assert order.allocated_stock() == [("CUP", "W-HZ", 2), ("CUP", "W-SH", 6)]
    events = order.collect_events()
    assert [type(e).__name__ for e in events] == ["OrderPlaced", "OrderPaid",
                                                  "BackorderFilled", "BackorderFilled"]
    assert_replays(order, events)
    unpaid = place(lines=(("CUP", 6),), allow_backorder=True)
    unpaid.fill_backorder(1, [("W-HZ", 1)], AT)
    assert unpaid.status == "placed"


def test_payment_must_equal_the_total_and_happens_once() -> None:
    order = place()
    with pytest.raises(AmountMismatch) as refused:
        order.pay(order.total_minor - 1, "PAY-1", AT)
    assert refused.value.details == {"expected": 4998, "received": 4997}
    with pytest.raises(InvalidCommand):
        order.pay(order.total_minor, " ", AT)
    order.collect_events()
    assert not order.is_paid
    order.pay(order.total_minor, "PAY-1", AT)
    with pytest.raises(InvalidTransition):
        order.pay(order.total_minor, "PAY-1", AT)


def test_a_payment_reference_indexes_one_order() -> None:
    used = PaymentReference(" PAY-1 ", "O-1")
    assert used.id == PaymentReference.create_id("PAY-1") != PaymentReference.create_id("PAY-2")
    assert (used.payment_reference, used.order_id) == ("PAY-1", "O-1")


def test_cancel_releases_everything_and_refunds_what_was_paid() -> None:
    unpaid = place()
    unpaid.collect_events()
    unpaid.cancel("out of stock elsewhere", AT)
    (cancelled,) = unpaid.collect_events()
    assert cancelled.refund_due_minor == 0 and cancelled.line_refunds == []
    assert cancelled.released == [{"sku": "CUP", "warehouse_id": "W-SH", "quantity": 1},
                                  {"sku": "TEA", "warehouse_id": "W-HZ", "quantity": 2}]
    paid = place(shipping=ShippingFeeRule(600, None))
    paid.pay(paid.total_minor, "PAY-1", AT)
    paid.start_fulfilment(AT)
    paid.refund(1, 500, "R-1", AT)
    paid.collect_events()
    paid.cancel("warehouse flooded", AT)
    (cancelled,) = paid.collect_events()
    assert cancelled.refund_due_minor == 3498 + 1000 + 600 == paid.refund_due_minor
    assert cancelled.line_refunds == [{"line_no": 1, "amount_minor": 3498},
                                      {"line_no": 2, "amount_minor": 1000}]
    assert len(cancelled.shipment_ids) == 2 and paid.refunded_minor == paid.paid_minor
    with pytest.raises(InvalidTransition):
        paid.refund(1, 1, "R-2", AT)


def test_no_cancellation_after_a_dispatch() -> None:
    order = order_in("fulfilling")
    order.record_dispatch(some_shipment(order), "SF", "T", AT)
    with pytest.raises(InvalidTransition):
        order.cancel("too late", AT)


def test_unpaid_reservations_expire_after_the_timeout() -> None:
    order = place()
    assert not order.is_expirable(AT + timedelta(seconds=1799), 1800)
    with pytest.raises(InvalidTransition) as refused:
        order.expire(AT + timedelta(seconds=1799), 1800)
    assert refused.value.details["due_at"] == (AT + timedelta(seconds=1800)).isoformat()
    assert order.is_expirable(AT + timedelta(seconds=1800), 1800)
    order.expire(AT + timedelta(seconds=1800), 1800)
    assert (order.status, order.cancel_reason) == ("cancelled", "reservation_expired")
    paid = place(lines=(("CUP", 6),), allow_backorder=True)
    paid.pay(paid.total_minor, "P", AT)
    assert not paid.is_expirable(AT + DAY, 1800)
    with pytest.raises(InvalidTransition):
        paid.expire(AT + DAY, 1800)


def test_refunds_per_line_never_exceed_what_was_paid() -> None:
    order = order_in("delivered")
    assert order.refund(2, 400, "R-1", AT) == 400
    with pytest.raises(RefundExceedsPaid) as refused:
        order.refund(2, 601, "R-2", AT)
    assert refused.value.details == {"line_no": 2, "paid": 1000, "refunded": 400,
                                     "requested": 601}
    for bad in ((3, 1), (2, 0), (2, -5)):
        with pytest.raises(InvalidCommand):
            order.refund(*bad, "R-3", AT)
    assert order.refund(2, 600, "R-4", AT) == 1000
    with pytest.raises(InvalidTransition):
        place().refund(1, 1, "R", AT)  # nothing paid yet


def test_paid_lines_are_the_commission_bases() -> None:
    order = place(lines=(("TEA", 1), ("CUP", 1)),
                  coupon=CouponTerms("CUPFREE", amount_off_minor=1000, skus=("CUP",)))
    assert order.paid_lines() == []
    order.pay(order.total_minor, "P", AT)
    assert [(x.line_no, x.sku, x.net_minor) for x in order.paid_lines()] == [(1, "TEA", 1999)]


# -- money laws ----------------------------------------------------------------------------

@st.composite
def shop(draw: st.DrawFn):
    skus = [f"S{i}" for i in range(5)]
    catalog = {s: CatalogEntry(s, s, draw(st.integers(0, 30_000))) for s in skus}
    lines = [(s, draw(st.integers(1, 40))) for s in draw(
        st.lists(st.sampled_from(skus), min_size=1, max_size=5, unique=True))]
    tiers = draw(st.lists(st.integers(1, 300_000), max_size=3, unique=True))
    thresholds = [ThresholdTerms("P", tuple(Tier(m, draw(st.integers(1, m))) for m in tiers))] \
        if tiers else []
    coupon = draw(st.none() | st.builds(
        CouponTerms, code=st.just("C"), amount_off_minor=st.integers(1, 50_000),
        skus=st.none() | st.just((lines[0][0],))) | st.builds(
        CouponTerms, code=st.just("C"), percent_off_bp=st.integers(1, 10_000)))
    shipping = ShippingFeeRule(draw(st.integers(0, 2000)),
                               draw(st.none() | st.integers(0, 200_000)))
    return catalog, lines, thresholds, coupon, shipping


@given(shop())
def test_total_is_the_sum_of_line_nets_plus_shipping(case) -> None:
    catalog, lines, thresholds, coupon, shipping = case
    try:
        priced = price_order(lines, catalog, "CNY", AT, coupon, thresholds, shipping)
    except CouponNotApplicable:  # e.g. free products, or nothing left after the threshold
        assert coupon is not None
        return
    stock = {sku: [StockCandidate("W", "ZJ", 10**6)] for sku in catalog}
    order = Order.place("O", "C", "Name", "13800138000", ADDRESS, priced,
                        plan_allocation(lines, "ZJ", stock), False, None, AT)
    nets = [x["net_minor"] for x in order.lines]
    assert order.total_minor == sum(nets) + order.shipping_fee_minor
    assert order.total_minor == order.subtotal_minor - order.discount_minor + \
        order.shipping_fee_minor
    assert order.discount_minor == priced.coupon_discount_minor + \
        priced.threshold_discount_minor
    assert all(0 <= x["net_minor"] == x["gross_minor"] - x["discount_minor"]
               for x in order.lines)
    order.pay(order.total_minor, "P", AT)
    assert sum(x["paid_minor"] for x in order.lines) + order.shipping_paid_minor == \
        order.total_minor


@given(attempts=st.lists(st.tuples(st.integers(1, 2), st.integers(1, 3000)), max_size=25))
def test_random_partial_refunds_never_exceed_what_each_line_was_paid(attempts) -> None:
    order = order_in("delivered")
    events = []
    refunded = {1: 0, 2: 0}
    paid = {1: 3998, 2: 1000}
    for line_no, amount in attempts:
        if refunded[line_no] + amount > paid[line_no]:
            with pytest.raises(RefundExceedsPaid):
                order.refund(line_no, amount, "R", AT)
            assert order.collect_events() == []
        else:
            refunded[line_no] += amount
            assert order.refund(line_no, amount, "R", AT) == refunded[line_no]
            events += order.collect_events()
        assert [x["refunded_minor"] for x in order.lines] == [refunded[1], refunded[2]]
        assert all(x["refunded_minor"] <= x["paid_minor"] for x in order.lines)
    assert sum(e.amount_minor for e in events) == sum(refunded.values())
