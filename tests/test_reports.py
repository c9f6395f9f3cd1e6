"""Reports: the sales report reconciles exactly with the journal over any range (orders,
payments, cancellations, after-sales refunds and compensations, commission accrual and
reversal, all driven through the API, on both databases); replenishment forecasts and
suggestions worked out by hand; the replenishment policy command; validation, pages,
roles; and the read model rebuilt equal to live, in one batch and one event at a time."""
from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from commands import Fenxiao
from commands.settings import Settings
from commands.tick import tick
from domain.accruals import half_up_share
from domain.errors import DomainError, InvalidCommand
from domain.ledger import COMMISSION_EXPENSE, REFUNDS, SALES
from domain.replenishment import (ReplenishmentPolicy, Suggestion, daily_demand, share,
                                  suggest)
from projections.ledger import LedgerProjection, balances, journal
from projections.policies import all_process_managers
from projections.reports import (GROUPS, ReportsProjection, report_range, sales_report,
                                 sales_totals, utc)
from projections.runner import ProjectionRunner
from tests.api_support import Api, assert_rebuild_equals_live, tables_of
from tests.conftest import wipe
from tests.test_aftersales_api import money, open_case, refund, settle, step
from tests.test_api_distributors import network
from tests.test_fulfilment_api import dispatched, seed, set_clock, the_app

UTC = timezone.utc
DAY1 = datetime(2026, 11, 25, 9, tzinfo=UTC)
DAY2 = datetime(2026, 11, 26, 10, tzinfo=UTC)
DAY2_LATE = datetime(2026, 11, 26, 14, tzinfo=UTC)
# 04:00 on the 27th in China: another day at FENXIAO_REPORT_UTC_OFFSET_MINUTES=480
NIGHT = datetime(2026, 11, 26, 20, tzinfo=UTC)
ROW = ("orders", "units", "gross", "discount", "net", "refunded", "commission")
ADDRESS = {"region": "east", "city": "Hangzhou", "line1": "1 Beishan Rd"}


def ok(reply: Any, status: int = 200) -> dict[str, Any]:
    assert reply.status_code == status, reply.get_json()
    return reply.get_json()


def place(api: Api, order_id: str, lines: Sequence[tuple[str, int]],
          distributor_id: str | None, pay: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_id": order_id, "lines": [{"sku": s, "quantity": q} for s, q in lines],
        "customer": {"customer_id": f"C-{order_id}", "name": "Li Lei",
                     "phone": "13900000009"},
        "shipping_address": ADDRESS}
    if distributor_id:
        body["distributor_id"] = distributor_id
    placed = ok(api.post("/orders", body, role="integration"), 201)
    if not pay:
        return placed
    return ok(api.post(f"/orders/{order_id}/payments", {
        "amount": money(placed["total"]), "payment_reference": f"PAY-{order_id}"},
        role="integration"))


def deliver(api: Api, order: dict[str, Any], at: datetime) -> None:
    for shipment in order["shipments"]:
        sent = dispatched(api, shipment["shipment_id"])
        ok(api.post(f"/carriers/{sent['carrier']}/events", {
            "event_id": f"E-{sent['shipment_id']}", "tracking_number": sent["tracking_number"],
            "status": "delivered", "occurred_at": at.isoformat()}, role="integration"))


def report(api: Api, group_by: str, start: str, end: str, role: str = "auditor",
           **params: Any) -> dict[str, Any]:
    head = the_app(api).last_position()
    return ok(api.get("/reports/sales", role=role, group_by=group_by, min_position=head,
                      **{"from": start, "to": end}, **params))


def journal_movement(app: Fenxiao, account: str, start: datetime, end: datetime) -> int:
    """Debits minus credits of `account` in the journal over [start, end)."""
    with app.engine.connect() as conn:
        return conn.execute(select(func.coalesce(func.sum(journal.c.amount_minor), 0)).where(
            journal.c.account == account, journal.c.at >= start, journal.c.at < end)).scalar()


def assert_reconciles(app: Fenxiao, totals: dict[str, int], start: datetime,
                      end: datetime) -> None:
    assert totals["net"] + totals["shipping"] == -journal_movement(app, SALES, start, end)
    assert totals["refunded"] + totals["shipping_refunded"] == \
        journal_movement(app, REFUNDS, start, end)
    assert totals["commission"] == journal_movement(app, COMMISSION_EXPENSE, start, end)


def a_week_of_trade(api: Api) -> Fenxiao:
    """Three days of orders, payments, a cancellation, an expiry, a return with a partial
    refund, a compensation, a refund before dispatch, and the commission that follows."""
    app = the_app(api)
    seed(api)  # W1 (east) 10 TEA at 19.99, W2 (south) 5 CUP at 9.90; rate cards
    app.settings = replace(app.settings, shipping_fee_minor=800, free_shipping_min_minor=5000)
    network(api)  # D1 referred D2; D3 alone
    for sku, warehouse in (("TEA", "W1"), ("CUP", "W2")):
        ok(api.post("/stock/receipts", {"sku": sku, "warehouse_id": warehouse,
                                        "quantity": 20, "reference": "PO-7"}), 201)
    ok(api.post("/promotions/threshold", {"tiers": [
        {"min_spend": money(3000), "discount": money(300)}]}), 201)
    set_clock(api, DAY1)
    o1 = place(api, "O-1", [("TEA", 2), ("CUP", 1)], "D2")  # discounted, pays shipping
    place(api, "O-2", [("TEA", 1)], None)  # nobody's order: no commission
    place(api, "O-3", [("CUP", 2)], "D1", pay=False)  # expires unpaid: no money at all
    settle(app)  # O-1's commission accrues on day 1
    set_clock(api, DAY2)
    place(api, "O-4", [("TEA", 3)], "D1")  # free shipping
    settle(app)
    ok(api.post("/orders/O-4/cancel", {"reason": "changed my mind"}))  # refunded in full
    deliver(api, o1, DAY2)
    settle(app)  # O-4's commission reversed on day 2
    set_clock(api, DAY2_LATE)
    open_case(api, "O-1", "return_refund", [("CUP", 1)], case_id="AS-1")
    step(api, "AS-1", "approve")
    step(api, "AS-1", "receive", {"restock": True, "warehouse_id": "W2"}, role="warehouse")
    ok(refund(api, "AS-1", 500, "R-1"))  # part of the CUP line's net
    settle(app)
    set_clock(api, NIGHT)
    open_case(api, "O-1", "compensation", [("TEA", 1)], case_id="AS-2", amount=money(200))
    step(api, "AS-2", "approve")
    ok(refund(api, "AS-2", 200, "R-2"))  # money back; commission stays (the default)
    open_case(api, "O-2", "refund_only", [("TEA", 1)], case_id="AS-3")
    step(api, "AS-3", "approve")
    # Before dispatch: its shipment is cancelled, and the order, left with nothing to
    # send, is cancelled with its shipping fee refunded.
    ok(refund(api, "AS-3", 1999, "R-3"))
    place(api, "O-5", [("CUP", 1)], "D3")  # its shipment stays open
    ok(api.post("/products/TEA/replenishment", {"lead_time_days": 5, "safety_stock": 4}))
    assert tick(app, NIGHT)["expired"] == 1  # O-3
    settle(app)
    return app


def half_up(amount: int, rate_bp: int) -> int:
    return (2 * amount * rate_bp + 10_000) // 20_000


def test_the_sales_report_reconciles_with_the_journal(api: Api) -> None:
    app = a_week_of_trade(api)
    orders = {o["order_id"]: o for o in ok(api.get("/orders", limit=50))["items"]}
    o1, o2, o4 = orders["O-1"], orders["O-2"], orders["O-4"]
    # O-1: 2 × 1999 + 990 = 4988, 300 off spread by gross; 4688 < 5000 pays 800 shipping.
    assert (o1["subtotal"], o1["discount"], o1["shipping_fee"]) == (4988, 300, 800)
    assert (o2["total"], o4["total"], o4["shipping_fee"]) == (2799, 5697, 0)
    o1_commission = sum(half_up(line["net"], bp) for line in o1["lines"] for bp in (1000, 500))
    # AS-1 refunds 500 of the CUP line: each level gives back its half-up share of that.
    cup = next(line for line in o1["lines"] if line["sku"] == "CUP")
    reversed_ = sum(half_up_share(half_up(cup["net"], bp), 500, cup["net"])
                    for bp in (1000, 500))
    o5_commission = half_up(990, 1000)  # D3 has no upline: level 1 only
    assert reversed_ > 0

    days = report(api, "day", "2026-11-01", "2026-11-30")
    assert days["currency"] == "CNY" and days["next_cursor"] is None
    assert [row["key"] for row in days["items"]] == ["2026-11-25", "2026-11-26"]
    first, second = days["items"]
    assert first == {"key": "2026-11-25", "orders": 2, "units": 4, "gross": 6987,
                     "discount": 300, "net": 6687, "refunded": 0,
                     "commission": o1_commission}
    # Day 2 (UTC): O-4 paid and cancelled (5697 back), O-5 paid; refunds of 500, 200
    # and 1999; O-4's commission accrued and reversed, O-5's accrued, part of O-1's
    # reversed (the compensation reverses none).
    assert second == {"key": "2026-11-26", "orders": 2, "units": 4, "gross": 5997 + 990,
                      "discount": 300, "net": 5697 + 990, "refunded": 5697 + 500 + 200 + 1999,
                      "commission": o5_commission - reversed_}
    assert days["totals"] == {
        "orders": 4, "units": 8, "gross": 13974, "discount": 600, "net": 13374,
        "shipping": 800 + 800 + 800, "refunded": 8396, "shipping_refunded": 800,
        "commission": o1_commission + o5_commission - reversed_}

    # The whole history equals the balances; every day and a part of a day, the journal.
    with app.engine.connect() as conn:
        books = {r.account: r.debit_minor - r.credit_minor for r in conn.execute(
            select(balances).where(balances.c.account.in_(
                [SALES, REFUNDS, COMMISSION_EXPENSE])))}
    totals = days["totals"]
    assert totals["net"] + totals["shipping"] == -books[SALES]
    assert totals["refunded"] + totals["shipping_refunded"] == books[REFUNDS]
    assert totals["commission"] == books[COMMISSION_EXPENSE]
    ranges = [("2026-11-01", "2026-11-30"), ("2026-11-25", "2026-11-25"),
              ("2026-11-26", "2026-11-26"), ("2026-11-26T00:00:00Z", "2026-11-26T12:00:00Z"),
              ("2026-11-26T10:00:00Z", "2026-11-26T14:00:00Z"),
              ("2026-11-26T14:00:00+00:00", "2026-11-27T04:00:00+08:00")]
    for start, end in ranges:
        body = report(api, "day", start, end)
        bounds = (datetime.fromisoformat(body["from"]), datetime.fromisoformat(body["to"]))
        assert_reconciles(app, body["totals"], *bounds)
        for group_by in GROUPS:
            rows = report(api, group_by, start, end, limit=500)["items"]
            for name in ROW[1:]:  # orders are distinct per key, not additive over SKUs
                assert sum(row[name] for row in rows) == body["totals"][name], (start, name)
    # Any range cut at, or a microsecond after, any moment something happened.
    moments = (DAY1, DAY2, DAY2_LATE, NIGHT)
    cuts = sorted({DAY1 - timedelta(days=9), DAY1 + timedelta(days=9), *moments,
                   *(at + timedelta(microseconds=1) for at in moments)})
    for n, start in enumerate(cuts):
        for end in cuts[n:]:
            body = report(api, "day", start.isoformat(), end.isoformat())
            assert_reconciles(app, body["totals"], start, end)
    assert report(api, "day", *ranges[4])["totals"]["refunded"] == 5697  # 14:00 excluded
    assert report(api, "day", *ranges[3])["totals"]["commission"] == 0  # accrued, reversed

    by_sku = {row["key"]: row for row in report(api, "sku", *ranges[0])["items"]}
    assert by_sku["CUP"]["orders"] == 2 and by_sku["TEA"]["orders"] == 3
    assert by_sku["CUP"]["refunded"] == 500 and by_sku["TEA"]["refunded"] == 5697 + 200 + 1999
    by_distributor = {row["key"]: row
                      for row in report(api, "distributor", *ranges[0])["items"]}
    assert set(by_distributor) == {None, "D1", "D2", "D3"}
    assert by_distributor[None]["net"] == 1999 and by_distributor[None]["commission"] == 0
    assert by_distributor["D1"]["refunded"] == 5697 and by_distributor["D1"]["commission"] == 0
    assert by_distributor["D2"]["commission"] == o1_commission - reversed_
    assert by_distributor["D3"]["commission"] == o5_commission

    # Days at +08:00: the night's events fall on the 27th there.
    app.settings = replace(app.settings, report_utc_offset_minutes=480)
    china = report(api, "day", "2026-11-25", "2026-11-27")
    assert [row["key"] for row in china["items"]] == ["2026-11-25", "2026-11-26",
                                                      "2026-11-27"]
    assert china["from"] == "2026-11-24T16:00:00+00:00"
    assert china["totals"] == days["totals"]

    # Pages of one row each give the same rows (the distributor of no one included).
    for group_by in GROUPS:
        whole = report(api, group_by, *ranges[0])["items"]
        walked, cursor = [], None
        while True:
            body = report(api, group_by, *ranges[0], limit=1,
                          **({"cursor": cursor} if cursor else {}))
            walked += body["items"]
            if (cursor := body["next_cursor"]) is None:
                break
        assert walked == whole and len(whole) > 1, group_by

    assert_rebuild_equals_live(app, ReportsProjection(), every_table=True)
    live = tables_of(app, ReportsProjection())
    ProjectionRunner(app, [ReportsProjection()], batch_size=1).rebuild("reports")
    assert tables_of(app, ReportsProjection()) == live


# -- any history, any range ------------------------------------------------------------------

SKUS = {"TEA": 1999, "CUP": 990, "POT": 12_345}
LINES = st.lists(st.tuples(st.sampled_from(sorted(SKUS)), st.integers(1, 3)), min_size=1,
                 max_size=3, unique_by=lambda line: line[0])
ORDER = st.tuples(st.just("order"), st.sampled_from([None, "D1", "D2"]), LINES,
                  st.booleans())
STEPS = st.tuples(st.lists(ORDER, min_size=1, max_size=3), st.lists(st.one_of(
    ORDER,
    st.tuples(st.just("cancel"), st.integers(0, 9)),
    st.tuples(st.just("refund_only"), st.integers(0, 9), st.integers(1, 100)),
    st.tuples(st.just("compensation"), st.integers(0, 9), st.integers(1, 100)),
    st.tuples(st.just("settle")),  # the commission policy catches up (accrual, reversal)
    st.tuples(st.just("wait"), st.integers(1, 36 * 60))), max_size=20)
).map(lambda parts: [*parts[0], *parts[1]])  # some orders first, then anything


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def the_shop(url: str, clock: Clock) -> Fenxiao:
    """Stock of three SKUs, D1 referring D2, a threshold discount, a shipping fee."""
    wipe(url)
    app = Fenxiao(Settings(database_url=url, shipping_fee_minor=700,
                           free_shipping_min_minor=6000))
    app.clock = clock
    app.execute(lambda: app.open_warehouse("W1", "East", "east"))
    for sku, price in SKUS.items():
        app.execute(lambda: app.add_product(sku, sku.title(), "", price))
        app.execute(lambda: app.receive_stock(sku, "W1", 1000, "PO-1"))
    code = None
    for d in ("D1", "D2"):
        app.execute(lambda: app.apply_distributor(d, f"1380000000{d[1]}", code, d))
        code = app.execute(lambda: app.approve_distributor(d)).body["referral_code"]
    app.execute(lambda: app.add_threshold_promotion([(3000, 201), (10_000, 1201)]))
    return app


def live_the_steps(app: Fenxiao, clock: Clock, steps: list[tuple[Any, ...]]) -> None:
    policies = ProjectionRunner(app, [], process_managers=all_process_managers())
    orders: list[str] = []
    for n, step_ in enumerate(steps):
        kind, *args = step_
        try:
            if kind == "order":
                distributor, lines, pay = args
                order_id = f"O-{n}"
                placed = app.execute(lambda: app.place_order(
                    f"C-{n}", "Li Lei", "13900000009", ADDRESS, lines, order_id=order_id,
                    distributor_id=distributor)).body
                orders.append(order_id)
                if pay:
                    app.execute(lambda: app.pay_order(order_id, placed["total"], f"P-{n}"))
            elif kind == "cancel" and orders:
                order_id = orders[args[0] % len(orders)]
                app.execute(lambda: app.cancel_order(order_id, "changed my mind"))
            elif kind in ("refund_only", "compensation") and orders:
                order_id, percent = orders[args[0] % len(orders)], args[1]
                line = app.order(order_id).lines[0]  # one unit of it, paid this much:
                unit = -(-line["paid_minor"] // line["quantity"])
                amount = max(1, unit * percent // 100)
                case_id = f"AS-{n}"
                app.execute(lambda: app.request_case(
                    order_id, kind, [(line["sku"], 1)], "broken",
                    amount if kind == "compensation" else None, case_id))
                app.execute(lambda: app.approve_case(case_id))
                app.execute(lambda: app.refund_case(case_id, amount, f"R-{n}"))
            elif kind == "settle":
                policies.catch_up()
            elif kind == "wait":
                clock.now += timedelta(minutes=args[0])
        except DomainError:
            pass  # refused (nothing to cancel or refund, too much): nothing recorded
    policies.catch_up()


# Few, long histories: each example starts from an empty database, which costs ~1 s.
@settings(max_examples=max(6, settings.default.max_examples // 15), deadline=None)
@given(steps=STEPS, batch_size=st.sampled_from([1, 4, 2000]))
def test_any_history_reconciles_over_any_range(database_url: str, steps: list[Any],
                                               batch_size: int) -> None:
    clock = Clock(DAY1)
    app = the_shop(database_url, clock)
    try:
        live_the_steps(app, clock, steps)
        runner = ProjectionRunner(app, [ReportsProjection(), LedgerProjection()],
                                  batch_size=batch_size)
        runner.catch_up()
        with app.engine.connect() as conn:
            moments = sorted({utc(at) for at in conn.execute(select(journal.c.at)).scalars()})
            cuts = [DAY1 - timedelta(days=1), *moments,
                    *(at + timedelta(microseconds=1) for at in moments),
                    DAY1 + timedelta(days=30)]
            whole = (cuts[0], cuts[-1])
            for start, end in [whole, *((cuts[0], c) for c in cuts),
                               *((c, cuts[-1]) for c in cuts)]:
                assert_reconciles(app, sales_totals(conn, start, end, "CNY"), start, end)
            totals = sales_totals(conn, *whole, "CNY")
            for group_by in GROUPS:
                rows = sales_report(conn, *whole, group_by, "CNY")
                for name in ROW[1:]:
                    assert sum(row[name] for row in rows) == totals[name], (group_by, name)
        live = tables_of(app, ReportsProjection())
        runner.rebuild("reports")
        assert tables_of(app, ReportsProjection()) == live
    finally:
        app.close()


# -- the sales report: what it refuses -------------------------------------------------------

def test_bad_report_queries_are_422_and_roles_are_enforced(api: Api) -> None:
    good = {"from": "2026-11-01", "to": "2026-11-30"}
    for role in ("admin", "operator", "auditor"):
        assert api.get("/reports/sales", role=role, **good).status_code == 200, role
    for role in ("distributor", "warehouse", "integration"):
        assert api.get("/reports/sales", role=role, **good).status_code == 403, role
    assert api.get("/reports/sales", role=None, **good).status_code == 401
    bad = [({"to": "2026-11-30"}, "from"), ({"from": "2026-11-01"}, "to"),
           ({**good, "from": "2026-13-01"}, "from"), ({**good, "to": "2026-02-30"}, "to"),
           ({**good, "from": "2026-11-01T00:00:00"}, "from"),  # a time needs its offset
           ({**good, "from": "2026-11-01T25:00:00Z"}, "from"),
           ({**good, "from": "2026-11-01T00:00:00+24:00"}, "from"),
           ({**good, "from": "yesterday"}, "from"), ({**good, "group_by": "week"}, "group_by"),
           ({"from": "2026-11-02", "to": "2026-11-01"}, "from"),
           ({"from": "2026-11-01T12:00:00Z", "to": "2026-11-01T11:59:59Z"}, "from"),
           ({"from": "2026-11-02T00:00:00+08:00", "to": "2026-11-01T15:59:59Z"}, "from"),
           ({"from": "0001-01-01", "to": "2026-11-01"}, None),  # fine at UTC ...
           ({"from": "2026-11-01", "to": "9999-12-31"}, "to"),  # ... the day after is not
           ({"from": "0001-01-01T00:00:00+01:00", "to": "2026-11-01"}, "from"),
           ({**good, "cursor": "eyJ4IjogMX0="}, "cursor"),  # {"x": 1}
           ({**good, "cursor": "WyJ4Il0="}, "cursor"),  # ["x"]: not a sales cursor
           ({**good, "limit": 501}, "limit")]
    for params, field in bad:
        reply = api.get("/reports/sales", role="auditor", **params)
        if field is None:
            assert reply.status_code == 200, (params, reply.get_json())
            continue
        assert reply.status_code == 422, (params, reply.get_json())
        assert field in reply.get_json()["error"]["details"], (params, reply.get_json())
    assert the_app(api).last_position() == 0


def test_report_range() -> None:
    east8 = timezone(timedelta(hours=8))
    assert report_range(date(2026, 11, 1), date(2026, 11, 1)) == (
        datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    assert report_range(date(2026, 11, 1), date(2026, 11, 30), 480) == (
        datetime(2026, 10, 31, 16, tzinfo=UTC), datetime(2026, 11, 30, 16, tzinfo=UTC))
    noon = datetime(2026, 11, 1, 12, tzinfo=east8)
    assert report_range(noon, date(2026, 11, 1)) == (
        datetime(2026, 11, 1, 4, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC))
    assert report_range(noon, noon) == (noon, noon)  # an empty range, not an error
    for start, end in ((date(2026, 11, 2), date(2026, 11, 1)),
                       (noon, noon - timedelta(microseconds=1)),
                       (date(1, 1, 1), date(2026, 1, 1))):
        with pytest.raises(InvalidCommand):
            report_range(start, end, 480)


# -- replenishment ---------------------------------------------------------------------------

def test_daily_demand_and_suggestions_by_hand() -> None:
    # Half-life 1 day, 3 days: weights 1, 1/2, 1/4 (sum 7/4) for 1, 2, 3 days ago.
    assert daily_demand({1: 7}, 1, 3) == Decimal("4.00")  # 7 / (7/4)
    assert daily_demand({2: 7, 3: 7}, 1, 3) == Decimal("3.00")  # 7 × 3/4 / (7/4)
    assert daily_demand({0: 100, 4: 100}, 1, 3) == Decimal("0.00")  # today, and too old
    assert daily_demand({1: 1}, 1, 2) == Decimal("0.67")  # 1 / 1.5, half-up
    assert daily_demand({1: 1}, 7, 56) == Decimal("0.09")  # 1 / 10.566 (the defaults)
    assert daily_demand({}, 7, 56) == Decimal("0.00")
    # Lead-time demand ceil(1.25 × 3) = 4: reorder below 4 + 2 = 6, up to 6 + 4 = 10.
    assert suggest(5, Decimal("1.25"), 3, 2) == Suggestion(6, 10, 5)
    assert suggest(6, Decimal("1.25"), 3, 2) == Suggestion(6, 10, 0)  # at it, not below
    assert suggest(0, Decimal("0"), 7, 0) == Suggestion(0, 0, 0)  # nothing sold or kept
    assert suggest(0, Decimal("0"), 7, 3).suggested_quantity == 3  # the buffer alone
    assert suggest(1, Decimal("0.07"), 100, 0) == Suggestion(7, 14, 13)  # 7, not 7.000…1


@given(st.integers(0, 10_000), st.lists(st.decimals(0, 1000, places=2), max_size=6))
def test_backorders_are_shared_exactly_and_in_proportion(
        units: int, weights: list[Decimal]) -> None:
    shares = share(units, weights)
    if not weights:
        assert shares == []
        return
    assert sum(shares) == units and min(shares) >= 0
    total = sum(weights) or len(weights)
    for n, weight in enumerate(weights):
        exact = units * (weight if sum(weights) else 1) / total
        assert exact - 1 < shares[n] < exact + 1  # a rounding of its exact share
    assert share(6, [Decimal(2), Decimal(1)]) == [4, 2]
    assert share(5, [Decimal(0), Decimal(0)]) == [3, 2]  # evenly, the first gets the odd one


def test_a_policy_is_set_changed_and_checked() -> None:
    policy = ReplenishmentPolicy.set_up("TEA", 5, 10, DAY1)
    assert (policy.lead_time_days, policy.safety_stock) == (5, 10)
    assert policy.change(5, 10, DAY2) is False  # the same terms record nothing
    assert len(policy.collect_events()) == 1
    assert policy.change(6, 0, DAY2) is True
    assert (policy.lead_time_days, policy.safety_stock) == (6, 0)
    for lead, safety in ((-1, 0), (366, 0), (1, -1), (1, 10_000_001), (True, 1), (1, 2.0)):
        with pytest.raises(InvalidCommand):
            ReplenishmentPolicy.set_up("TEA", lead, safety, DAY1)  # type: ignore[arg-type]
        with pytest.raises(InvalidCommand):
            policy.change(lead, safety, DAY2)  # type: ignore[arg-type]
    assert (policy.lead_time_days, policy.safety_stock) == (6, 0)


def test_the_replenishment_policy_command(api: Api) -> None:
    app = the_app(api)
    api.seed()
    before = app.last_position()
    path = "/products/TEA/replenishment"
    for body, field in (({}, "lead_time_days"), ({"lead_time_days": 3}, "safety_stock"),
                        ({"lead_time_days": -1, "safety_stock": 0}, "lead_time_days"),
                        ({"lead_time_days": 366, "safety_stock": 0}, "lead_time_days"),
                        ({"lead_time_days": "3", "safety_stock": 0}, "lead_time_days"),
                        ({"lead_time_days": 3, "safety_stock": 1.5}, "safety_stock"),
                        ({"lead_time_days": 3, "safety_stock": 0, "sku": "X"}, "sku")):
        reply = api.post(path, body, role="operator")
        assert reply.status_code == 422 and field in reply.get_json()["error"]["details"]
    terms = {"lead_time_days": 3, "safety_stock": 12}
    assert api.post("/products/NOPE/replenishment", terms).status_code == 404
    for role in ("auditor", "warehouse", "integration", "distributor"):
        assert api.post(path, terms, role=role).status_code == 403, role
    assert app.last_position() == before
    first = ok(api.post(path, terms, role="operator"))
    assert first == {"sku": "TEA", **terms, "position": before + 1}
    assert ok(api.post(path, terms))["position"] is None  # the same terms again
    changed = ok(api.post(path, {"lead_time_days": 0, "safety_stock": 12}))
    assert changed["position"] == before + 2
    rows = ok(api.get("/reports/replenishment", sku="TEA", min_position=before + 2))["items"]
    assert [(r["lead_time_days"], r["safety_stock"]) for r in rows] == [(0, 12)]


def dispatch_order(api: Api, order_id: str, lines: Sequence[tuple[str, int]],
                   at: datetime) -> None:
    set_clock(api, at)
    for shipment in place(api, order_id, lines, None)["shipments"]:
        dispatched(api, shipment["shipment_id"])


def replenishment_shop(api: Api) -> Fenxiao:
    """W1 (east) 10 TEA, W2 (south) 5 CUP; demand over 4 days at a half-life of 2, and by
    default a lead time of 3 days and a safety stock of 2."""
    app = the_app(api)
    seed(api)
    app.settings = replace(app.settings, demand_half_life_days=2, demand_window_days=4,
                           lead_time_days=3, safety_stock=2)
    return app


def order_body(order_id: str, tea: int, address: dict[str, str]) -> dict[str, Any]:
    return {"order_id": order_id, "lines": [{"sku": "TEA", "quantity": tea}],
            "allow_backorder": True, "shipping_address": address,
            "customer": {"customer_id": f"C-{order_id}", "name": "Li Lei",
                         "phone": "13900000009"}}


def test_backorders_count_against_what_is_available(api: Api) -> None:
    """Units customers wait for are promised already: a SKU's backorders are shared among
    its warehouses by their demand and raise what each should reorder."""
    app = replenishment_shop(api)
    ok(api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W2", "quantity": 2,
                                    "reference": "PO-9"}), 201)
    dispatch_order(api, "O-1", [("TEA", 4)], datetime(2026, 11, 24, 9, tzinfo=UTC))  # W1
    south = {**ADDRESS, "region": "south"}
    placed = ok(api.post("/orders", order_body("O-2", 2, south), role="integration"), 201)
    paid = ok(api.post("/orders/O-2/payments", {"amount": money(placed["total"]),
                                                "payment_reference": "PAY-O-2"}))
    for shipment in paid["shipments"]:  # W2, the south's
        dispatched(api, shipment["shipment_id"])
    set_clock(api, datetime(2026, 11, 25, 12, tzinfo=UTC))
    waiting = ok(api.post("/orders", order_body("O-3", 12, ADDRESS), role="integration"), 201)
    assert waiting["lines"][0]["backordered"] == 6  # W1's 6 reserved, 6 more to come
    given_up = ok(api.post("/orders", order_body("O-4", 5, ADDRESS), role="integration"), 201)
    assert given_up["lines"][0]["backordered"] == 5
    ok(api.post("/orders/O-4/cancel", {"reason": "too long a wait"}))  # waits no more
    head = app.last_position()

    rows = ok(api.get("/reports/replenishment", sku="TEA", min_position=head))["items"]
    # Weights for 1-4 days ago at a half-life of 2 days sum to 2.5607. A day ago W1
    # dispatched 4 (1.56 a day), W2 2 (0.78 a day): the 6 units waiting are shared 2:1,
    # 4 and 2. W1: 3 days need ceil(4.68) = 5, reorder below 5 + 2 = 7, up to 12, holds
    # 0 − 4: order 16. W2: ceil(2.34) = 3, below 5, up to 8, holds 0 − 2: order 10.
    assert [(r["warehouse_id"], r["available"], r["backordered"], r["daily_demand"],
             r["reorder_point"], r["order_up_to"], r["suggested_quantity"])
            for r in rows] == [("W1", 0, 4, 1.56, 7, 12, 16), ("W2", 0, 2, 0.78, 5, 8, 10)]
    only_w2 = ok(api.get("/reports/replenishment", warehouse_id="W2", sku="TEA"))["items"]
    assert only_w2 == rows[1:]  # its share whatever the filter


def test_replenishment_worked_by_hand(api: Api) -> None:
    app = replenishment_shop(api)
    ok(api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W1", "quantity": 30,
                                    "reference": "PO-8"}), 201)
    ok(api.post("/stock/receipts", {"sku": "TEA", "warehouse_id": "W2", "quantity": 1,
                                    "reference": "PO-9"}), 201)
    ok(api.post("/products/TEA/replenishment", {"lead_time_days": 4, "safety_stock": 3}))
    dispatch_order(api, "O-0", [("TEA", 8)], datetime(2026, 11, 20, 9, tzinfo=UTC))  # old
    dispatch_order(api, "O-1", [("TEA", 4)], datetime(2026, 11, 22, 9, tzinfo=UTC))
    dispatch_order(api, "O-2", [("TEA", 2)], datetime(2026, 11, 24, 23, tzinfo=UTC))
    dispatch_order(api, "O-3", [("CUP", 1)], datetime(2026, 11, 24, 1, tzinfo=UTC))
    dispatch_order(api, "O-4", [("TEA", 5)], datetime(2026, 11, 25, 8, tzinfo=UTC))  # today
    set_clock(api, datetime(2026, 11, 25, 12, tzinfo=UTC))
    place(api, "O-5", [("CUP", 1)], None, pay=False)  # reserved, not dispatched: no demand
    head = app.last_position()

    rows = ok(api.get("/reports/replenishment", min_position=head, limit=500))
    assert rows["as_of"] == "2026-11-25T12:00:00+00:00" and rows["next_cursor"] is None
    # Weights for 1-4 days ago at a half-life of 2 days: 1, 0.7071, 0.5, 0.3536 (2.5607).
    # TEA in W1: 2 a day ago, 4 three days ago: 4 / 2.5607 = 1.56 a day; its lead time of
    # 4 days needs ceil(6.24) = 7, reorder below 7 + 3 = 10, available 40 − 19 = 21.
    # CUP in W2: 1 a day ago: 0.39 a day; 3 days (the default) need ceil(1.17) = 2,
    # reorder below 2 + 2 = 4; available 5 − 1 − 1 (O-5 holds one) = 3: order 6 − 3 = 3.
    # TEA in W2 sells nothing: reorder below its safety stock of 3, holds 1: order 2.
    assert rows["items"] == [
        {"sku": "CUP", "warehouse_id": "W2", "available": 3, "backordered": 0, "daily_demand": 0.39,
         "lead_time_days": 3, "safety_stock": 2, "reorder_point": 4, "order_up_to": 6,
         "suggested_quantity": 3},
        {"sku": "TEA", "warehouse_id": "W1", "available": 21, "backordered": 0, "daily_demand": 1.56,
         "lead_time_days": 4, "safety_stock": 3, "reorder_point": 10, "order_up_to": 17,
         "suggested_quantity": 0},
        {"sku": "TEA", "warehouse_id": "W2", "available": 1, "backordered": 0, "daily_demand": 0.0,
         "lead_time_days": 4, "safety_stock": 3, "reorder_point": 3, "order_up_to": 3,
         "suggested_quantity": 2}]
    every = rows["items"]
    low = ok(api.get("/reports/replenishment", low_only="true", role="operator"))["items"]
    assert low == [every[0], every[2]]
    assert ok(api.get("/reports/replenishment", sku="TEA"))["items"] == every[1:]
    assert ok(api.get("/reports/replenishment", warehouse_id="W2", low_only="true")
              )["items"] == [every[0], every[2]]
    walked, cursor = [], None
    while True:
        body = ok(api.get("/reports/replenishment", limit=1,
                          **({"cursor": cursor} if cursor else {})))
        walked += body["items"]
        if (cursor := body["next_cursor"]) is None:
            break
    assert walked == every
    for role in ("auditor", "distributor", "warehouse", "integration"):
        assert api.get("/reports/replenishment", role=role).status_code == 403, role
    for params in ({"cursor": "WyJ4Il0="}, {"low_only": "maybe"}, {"sku": "a b"}):
        reply = api.get("/reports/replenishment", **params)
        assert reply.status_code == 422, params
