"""Process managers: commission accrual on payment, reversal on cancellation, backorder
fills when stock arrives; exactly-once under a crash between a command and the tracking
write, and parking instead of endless retries. On both databases."""
from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from eventsourcing.persistence import StoredEvent
from sqlalchemy import select

from commands import Fenxiao
from commands.storage import parked_events, tracking
from domain.accruals import LineCommission
from domain.errors import DomainError, InsufficientStock, InvalidCommand, InvalidTransition
from domain.ledger import JournalEntry
from domain.orders import Order
from projections import all_projections
from projections.parking import list_parked
from projections.policies import (BackorderPolicy, CommissionPolicy, all_process_managers,
                                  cancellation_cause)
from projections.runner import ProjectionRunner
from tests.domain_support import MAPPER

ADDRESS = {"region": "east", "city": "Hangzhou", "line1": "1 Beishan Rd"}
TEA, CUP = 10_000, 2_500  # unit prices; default rule 10 % + 5 %


class Killed(BaseException):
    """The worker dies here (not an Exception: nothing may catch it and carry on)."""


def run(app: Fenxiao, command: Any) -> dict[str, Any]:
    return app.execute(command).body


def shop(app: Fenxiao, tea_stock: int = 10) -> None:
    """Warehouse W1 (east); TEA (stocked) and CUP (none yet); A referred B; carrier SF."""
    from domain.carriers import RateCard

    run(app, lambda: app.open_warehouse("W1", "East", "east"))
    run(app, lambda: app.add_product("TEA", "Longjing tea", "", TEA))
    run(app, lambda: app.add_product("CUP", "Celadon cup", "", CUP))
    run(app, lambda: app.receive_stock("TEA", "W1", tea_stock, "PO-1"))
    run(app, lambda: app.receive_stock("CUP", "W1", 1, "PO-1"))
    run(app, lambda: app.adjust_stock("CUP", "W1", -1, "count"))  # CUP is known in W1
    run(app, lambda: app.apply_distributor("Ann", "13800000001", None, "A"))
    code = run(app, lambda: app.approve_distributor("A"))["referral_code"]
    run(app, lambda: app.apply_distributor("Bo", "13800000002", code, "B"))
    run(app, lambda: app.approve_distributor("B"))
    run(app, lambda: app.add_carrier(RateCard("SF", "SF Express", 1000, 100, 2, {"east": 1})))


def place(app: Fenxiao, order_id: str, lines: list[tuple[str, int]],
          distributor_id: str | None = "B", customer_id: str = "C1",
          allow_backorder: bool = False, phone: str = "13900000001") -> dict[str, Any]:
    return run(app, lambda: app.place_order(
        customer_id, "Li Lei", phone, ADDRESS, lines, order_id=order_id,
        distributor_id=distributor_id, allow_backorder=allow_backorder))


def pay(app: Fenxiao, order_id: str) -> dict[str, Any]:
    total = app.order(order_id).total_minor
    return run(app, lambda: app.pay_order(order_id, total, f"PAY-{order_id}"))


def policies(app: Fenxiao, **options: Any) -> ProjectionRunner:
    return ProjectionRunner(app, [], process_managers=all_process_managers(), **options)


def recorded(app: Fenxiao, *event_classes: type) -> list[Any]:
    """Every event of these classes in the log, decoded, in log order."""
    from eventsourcing.utils import get_topic

    events = app.recorder.events_record_cls.__table__
    with app.engine.connect() as conn:
        rows = conn.execute(select(events).where(events.c.topic.in_(
            [get_topic(c) for c in event_classes])).order_by(events.c.id)).all()
    return [app.mapper.to_domain_event(StoredEvent(
        originator_id=r.originator_id, originator_version=r.originator_version,
        topic=r.topic, state=bytes(r.state))) for r in rows]


def entries(app: Fenxiao) -> list[Any]:
    return recorded(app, JournalEntry.EntryPosted)


def balances(app: Fenxiao) -> dict[str, int]:
    """Every account's balance (debit positive), from the journal in the log."""
    totals: dict[str, int] = {}
    for entry in entries(app):
        for line in entry.lines:
            totals[line["account"]] = totals.get(line["account"], 0) + line["amount"]
    return totals


def commission_kinds(app: Fenxiao) -> list[str]:
    return sorted(e.kind for e in entries(app) if e.kind not in ("payment", "refund"))


def parked(app: Fenxiao) -> list[Any]:
    with app.engine.connect() as conn:
        return list_parked(conn)


def position_of(app: Fenxiao, name: str) -> int:
    with app.engine.connect() as conn:
        return conn.execute(select(tracking.c.position)
                            .where(tracking.c.name == name)).scalar() or 0


# -- accrual on payment --------------------------------------------------------------------

def test_payment_accrues_from_the_basis_recorded_at_payment(app: Fenxiao) -> None:
    shop(app)
    place(app, "O-1", [("TEA", 2)])
    pay(app, "O-1")
    # After payment, before the process manager gets to it: the upline is suspended and
    # the rule changes. The commission is what the network and rules were at payment.
    run(app, lambda: app.suspend_distributor("A", "investigation"))
    run(app, lambda: app.set_commission_rule(None, "rate", 2000, 1000))
    policies(app).catch_up()
    commission = app.line_commission("O-1", 1)
    assert [(a["level"], a["distributor_id"], a["amount_minor"], a["rate_bp"])
            for a in commission.accruals] == [(1, "B", 2000, 1000), (2, "A", 1000, 500)]
    assert (app.wallet("B").pending, app.wallet("A").pending) == (2000, 1000)
    assert sum(balances(app).values()) == 0

    place(app, "O-2", [("TEA", 1)])
    pay(app, "O-2")  # A is suspended now: recorded at payment, so forfeited
    policies(app).catch_up()
    later = app.line_commission("O-2", 1)
    assert [(a["level"], a["amount_minor"]) for a in later.accruals] == [(1, 2000)]
    assert [(f["level"], f["reason"]) for f in later.forfeits] == [(2, "suspended")]


def test_only_attributed_orders_earn_and_self_purchases_earn_no_level_one(
        app: Fenxiao) -> None:
    shop(app)
    place(app, "O-NONE", [("TEA", 1)], distributor_id=None, customer_id="C9")
    pay(app, "O-NONE")
    place(app, "O-SELF", [("TEA", 1)], customer_id="B")  # B buys through itself
    pay(app, "O-SELF")
    place(app, "O-PHONE", [("TEA", 1)], customer_id="C7", phone="+86 138 0000 0002")
    pay(app, "O-PHONE")  # B's own phone number: a self-purchase too
    policies(app).catch_up()
    assert not app.exists(LineCommission.create_id("O-NONE", 1))
    for order_id in ("O-SELF", "O-PHONE"):
        commission = app.line_commission(order_id, 1)
        assert [(f["level"], f["reason"]) for f in commission.forfeits] == \
            [(1, "self_purchase")]
        assert [(a["level"], a["distributor_id"]) for a in commission.accruals] == \
            [(2, "A")]
    assert (app.wallet("B").pending, app.wallet("A").pending) == (0, 1000)


def test_cancellation_after_payment_reverses_all_of_the_commission(app: Fenxiao) -> None:
    shop(app)
    place(app, "O-1", [("TEA", 1), ("CUP", 1)], allow_backorder=True)  # CUP backordered
    pay(app, "O-1")
    place(app, "O-2", [("TEA", 1)])  # cancelled unpaid: never earned anything
    runner = policies(app)
    runner.catch_up()
    assert app.wallet("B").pending == 1000 + 250
    run(app, lambda: app.cancel_order("O-1", "customer changed their mind"))
    run(app, lambda: app.cancel_order("O-2", "duplicate"))
    runner.catch_up()
    assert (app.wallet("B").pending, app.wallet("A").pending) == (0, 0)
    assert commission_kinds(app) == ["accrual"] * 4 + ["reversal"] * 4
    for line_no in (1, 2):
        assert app.line_commission("O-1", line_no).reversal_causes == ["cancelled:O-1"]
    assert sum(balances(app).values()) == 0
    assert parked(app) == []


def test_a_payment_handled_after_the_cancellation_is_reversed_by_the_cancellation(
        app: Fenxiao) -> None:
    shop(app)
    place(app, "O-1", [("TEA", 1)])
    pay(app, "O-1")
    run(app, lambda: app.cancel_order("O-1", "fraud check"))
    policies(app).catch_up()  # meets OrderPaid when the order is already cancelled
    assert commission_kinds(app) == ["accrual", "accrual", "reversal", "reversal"]
    assert len(recorded(app, LineCommission.CommissionReversed)) == 1
    assert app.line_commission("O-1", 1).reversal_causes == ["cancelled:O-1"]
    assert (app.wallet("B").pending, app.wallet("A").pending) == (0, 0)


def test_a_parked_payment_retried_after_the_cancellation_accrues_and_reverses_together(
        app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    """The manager went past the cancellation while the payment was parked (the
    cancellation then had nothing to reverse): the retried accrual reverses with it."""
    shop(app)
    place(app, "O-1", [("TEA", 1)])
    pay(app, "O-1")
    run(app, lambda: app.cancel_order("O-1", "fraud check"))
    accrue = app.accrue_from_basis

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise InvalidCommand("the ledger is closed for the night", field="basis")

    monkeypatch.setattr(app, "accrue_from_basis", refuse)
    runner = policies(app)
    runner.catch_up()
    assert [row.projection for row in parked(app)] == ["commission_policy"]
    assert not app.exists(LineCommission.create_id("O-1", 1))
    monkeypatch.setattr(app, "accrue_from_basis", accrue)
    assert runner.retry_parked("commission_policy") == (1, 0)
    assert commission_kinds(app) == ["accrual", "accrual", "reversal", "reversal"]
    assert app.line_commission("O-1", 1).reversal_causes == ["cancelled:O-1"]
    assert (app.wallet("B").pending, app.wallet("A").pending) == (0, 0)


def test_a_reversal_after_maturity_is_a_clawback(app: Fenxiao) -> None:
    shop(app)
    place(app, "O-1", [("TEA", 1)])
    pay(app, "O-1")
    policies(app).catch_up()
    run(app, lambda: app.mature_commission("O-1", 1))
    reversed_ = run(app, lambda: app.reverse_order_commission("O-1", [1, 2],
                                                             cancellation_cause("O-1")))
    assert reversed_["reversed"] == [1]
    assert (app.wallet("B").available, app.wallet("A").available) == (0, 0)
    assert commission_kinds(app).count("clawback") == 2
    again = run(app, lambda: app.reverse_order_commission("O-1", [1],
                                                          cancellation_cause("O-1")))
    assert again == {"order_id": "O-1", "reversed": [], "position": None}


# -- maturity and reversal: a repeat with the same cause is "already done" ------------------

def test_mature_and_reverse_repeated_with_their_cause_change_nothing(app: Fenxiao) -> None:
    shop(app)
    run(app, lambda: app.accrue_commission("O-1", 1, "TEA", 1, 10_000, "B"))
    first = run(app, lambda: app.reverse_commission("O-1", 1, 2500, "refund:O-1:1:2500"))
    assert [r["amount_minor"] for r in first["reversals"]] == [250, 125]
    head = app.last_position()
    again = run(app, lambda: app.reverse_commission("O-1", 1, 2500, "refund:O-1:1:2500"))
    assert (again["reversals"], again["position"], app.last_position()) == ([], None, head)
    with pytest.raises(InvalidCommand):  # no cause, or another: refused as before
        app.execute(lambda: app.reverse_commission("O-1", 1, 2500))
    matured = run(app, lambda: app.mature_commission("O-1", 1, "freeze-ended:O-1"))
    assert matured["position"] is not None
    head = app.last_position()
    repeat = run(app, lambda: app.mature_commission("O-1", 1, "freeze-ended:O-1"))
    assert (repeat["position"], app.last_position()) == (None, head)
    for cause in (None, "another"):
        with pytest.raises(InvalidTransition):
            app.execute(lambda: app.mature_commission("O-1", 1, cause))
    assert (app.wallet("B").pending, app.wallet("B").available) == (0, 750)
    assert sum(balances(app).values()) == 0


def test_maturity_and_reversal_events_of_version_one_read_as_having_no_cause() -> None:
    """Events stored before they named a cause are upcast, never rewritten."""
    from datetime import datetime, timezone

    at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    commission = LineCommission.accrue("O-1", 1, "TEA", 1000, "CNY", [
        {"level": 1, "distributor_id": "B", "amount_minor": 100}], [], at)
    commission.reverse(500, at)
    commission.mature(at)
    stored = []
    for event in commission.collect_events():
        item = MAPPER.to_stored_event(event)
        state = json.loads(item.state)
        state.pop("cause", None)
        state.pop("class_version", None)  # as version 1 wrote them
        stored.append(StoredEvent(item.originator_id, item.originator_version, item.topic,
                                  json.dumps(state).encode()))
    replayed = None
    for item in stored:
        replayed = MAPPER.to_domain_event(item).mutate(replayed)
    assert (replayed.matured, replayed.matured_cause, replayed.reversal_causes) == \
        (True, None, [])
    assert replayed.refunded_minor == 500


# -- backorders ----------------------------------------------------------------------------

@pytest.mark.parametrize("arrival", ["receipt", "adjustment", "release"])
def test_stock_arriving_fills_backorders_first_come_first_served(
        app: Fenxiao, arrival: str) -> None:
    shop(app, tea_stock=2)
    run(app, lambda: app.open_warehouse("W2", "South", "south"))
    run(app, lambda: app.receive_stock("CUP", "W2", 3, "PO-2"))
    place(app, "O-HOLD", [("CUP", 3)], customer_id="C0")  # holds all of W2's cups
    place(app, "O-1", [("CUP", 2)], allow_backorder=True)
    place(app, "O-2", [("CUP", 2)], allow_backorder=True, customer_id="C2")
    runner = policies(app)
    runner.catch_up()
    run(app, lambda: app.adjust_stock("TEA", "W1", -1, "broken"))  # down: nothing to fill
    runner.catch_up()
    assert app.order("O-1").status == "backordered"
    if arrival == "receipt":
        run(app, lambda: app.receive_stock("CUP", "W1", 3, "PO-3"))
    elif arrival == "adjustment":
        run(app, lambda: app.adjust_stock("CUP", "W1", 3, "found in the back"))
    else:
        run(app, lambda: app.cancel_order("O-HOLD", "not needed"))  # releases W2's 3
    runner.catch_up()
    first, second = app.order("O-1"), app.order("O-2")
    assert (first.status, first.lines[0]["backordered"]) == ("placed", 0)
    assert (second.status, second.lines[0]["backordered"]) == ("backordered", 1)
    assert parked(app) == []


def test_every_movement_that_raises_availability_is_followed() -> None:
    from domain.stock import StockItem

    assert set(BackorderPolicy.handlers) == {
        StockItem.StockReceived, StockItem.StockAdjusted, StockItem.StockTransferredIn,
        StockItem.StockRestocked, StockItem.StockReleased}


# -- exactly once ---------------------------------------------------------------------------

def busy_day(app: Fenxiao) -> None:
    """Payments to accrue, a cancellation to reverse, backorders to fill."""
    shop(app, tea_stock=3)
    place(app, "O-1", [("TEA", 2)])
    pay(app, "O-1")
    place(app, "O-2", [("TEA", 3)], allow_backorder=True, customer_id="C2")
    place(app, "O-3", [("TEA", 1), ("CUP", 1)], allow_backorder=True, customer_id="C3")
    pay(app, "O-3")
    run(app, lambda: app.receive_stock("TEA", "W1", 2, "PO-2"))
    run(app, lambda: app.receive_stock("CUP", "W1", 1, "PO-2"))
    run(app, lambda: app.cancel_order("O-3", "out of patience"))
    run(app, lambda: app.receive_stock("TEA", "W1", 5, "PO-3"))


def assert_exactly_once(app: Fenxiao) -> None:
    """What `busy_day` must come to, however often its events were delivered."""
    assert len(recorded(app, LineCommission.CommissionAccrued)) == 3  # O-1:1, O-3:1, O-3:2
    assert len(recorded(app, LineCommission.CommissionReversed)) == 2  # O-3's two lines
    assert commission_kinds(app) == ["accrual"] * 6 + ["reversal"] * 4
    assert (app.wallet("B").pending, app.wallet("A").pending) == (2000, 1000)
    assert sum(balances(app).values()) == 0
    fills = recorded(app, Order.BackorderFilled)
    # O-2's two teas; O-3 was cancelled before the managers met the stock it waited for.
    assert [(f.line_no, sum(a["quantity"] for a in f.allocations)) for f in fills] == [(1, 2)]
    assert app.order("O-2").status == "placed" and app.order("O-2").backorders() == []
    assert parked(app) == []
    head = app.last_position()
    assert {position_of(app, m.name) for m in all_process_managers()} == {head}


def test_a_crash_after_the_commands_before_the_tracking_write_posts_nothing_twice(
        app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    busy_day(app)

    def crash(*_: Any) -> None:
        raise Killed("the worker is killed before it records how far it got")

    monkeypatch.setattr("projections.runner.advance_tracking", crash)
    with pytest.raises(Killed):
        policies(app).catch_up()
    assert position_of(app, CommissionPolicy.name) == 0
    assert len(recorded(app, LineCommission.CommissionAccrued)) >= 1  # it did act
    monkeypatch.undo()
    restarted = Fenxiao(app.settings)  # a new process: no cached aggregates
    try:
        policies(restarted).catch_up()  # every event again: each answered "already done"
        policies(restarted).catch_up()
    finally:
        restarted.close()
    assert_exactly_once(app)


def test_a_crash_in_the_middle_of_a_batch_loses_nothing(
        app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    busy_day(app)
    for manager_cls in (CommissionPolicy, BackorderPolicy):
        real = manager_cls.handle
        calls: list[int] = []

        def dies_after_the_second_command(self: Any, app_: Any, event: Any,
                                          position: int, real: Any = real,
                                          calls: list[int] = calls) -> None:
            real(self, app_, event, position)
            calls.append(position)
            if len(calls) == 2:
                raise Killed("killed between two commands of one batch")

        monkeypatch.setattr(manager_cls, "handle", dies_after_the_second_command)
        with pytest.raises(Killed):
            policies(app, batch_size=3).catch_up([manager_cls.name])
        monkeypatch.undo()
    restarted = Fenxiao(app.settings)
    try:
        policies(restarted, batch_size=3).catch_up()
    finally:
        restarted.close()
    assert_exactly_once(app)


def test_concurrent_runners_issue_each_command_once(app: Fenxiao) -> None:
    busy_day(app)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            policies(app, batch_size=2).catch_up()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    # A manager that finished first has not seen the events the other's commands added
    # since (none of them its own): one more pass moves it to the head, doing nothing.
    policies(app).catch_up()
    assert_exactly_once(app)


# -- parking -------------------------------------------------------------------------------

def test_a_refused_command_parks_its_event_and_the_manager_carries_on(
        app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    shop(app)
    runner = policies(app)
    runner.catch_up()
    place(app, "O-1", [("CUP", 1)], allow_backorder=True)
    place(app, "O-2", [("TEA", 1)])
    order = app.order("O-2")  # paid through the domain, with a basis no rule can pay
    order.pay(order.total_minor, "PAY-X", app.clock(), {
        "order_id": "O-2", "currency": "CNY",
        "lines": [{"line_no": 1, "sku": "TEA", "quantity": 1, "net_minor": TEA}],
        "seller": {"distributor_id": "B", "status": "active", "upline_id": "A"},
        "upline": {"distributor_id": "Z", "status": "active", "upline_id": None},
        "rules": {}, "self_purchase": False})
    bad_payment = app.record(order)
    refusals: list[str] = []

    def refuse(sku: str) -> dict[str, Any]:
        refusals.append(sku)
        raise InsufficientStock("the warehouse says no", sku=sku)

    monkeypatch.setattr(app, "fill_backorders", refuse)
    arrival = run(app, lambda: app.receive_stock("CUP", "W1", 1, "PO-2"))["position"]
    place(app, "O-3", [("TEA", 1)])
    pay(app, "O-3")
    runner.catch_up()
    assert {(row.projection, row.position) for row in parked(app)} == {
        ("commission_policy", bad_payment), ("backorder_policy", arrival)}
    assert all(position_of(app, m.name) == app.last_position()
               for m in all_process_managers())
    assert app.line_commission("O-3", 1).accruals  # later events were handled
    assert not app.exists(LineCommission.create_id("O-2", 1))
    errors = {row.projection: row.error for row in parked(app)}
    assert errors["commission_policy"].startswith("CompliancePolicyViolation")
    assert errors["backorder_policy"] == "InsufficientStock: the warehouse says no"

    from tests.test_parking import health
    status = health(app)
    assert status["status"] == "degraded"
    assert {"name": "backorder_policy", "count": 1} in status["parked"]

    assert runner.retry_parked("backorder_policy") == (0, 1)  # not fixed: stays parked
    monkeypatch.undo()  # the fix
    assert runner.retry_parked("backorder_policy") == (1, 0)
    assert app.order("O-1").status == "placed"
    assert runner.retry_parked("backorder_policy") == (0, 0)
    assert runner.retry_parked("commission_policy") == (0, 1)  # a rule, not a glitch
    runner.catch_up()  # nothing is retried by itself
    assert len(refusals) == 2 and len(parked(app)) == 1


def test_process_managers_are_not_rebuilt(app: Fenxiao) -> None:
    runner = ProjectionRunner(app, all_projections(), process_managers=all_process_managers())
    with pytest.raises(ValueError):
        runner.rebuild(CommissionPolicy.name)


def test_contention_is_retried_never_parked(app: Fenxiao,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from commands.app import ConcurrencyConflict

    shop(app)
    place(app, "O-1", [("CUP", 1)], allow_backorder=True)
    run(app, lambda: app.receive_stock("CUP", "W1", 1, "PO-2"))

    def busy(sku: str) -> dict[str, Any]:
        raise ConcurrencyConflict("too many concurrent changes")

    monkeypatch.setattr(app, "fill_backorders", busy)
    with pytest.raises(ConcurrencyConflict):
        policies(app).catch_up()
    assert parked(app) == [] and position_of(app, BackorderPolicy.name) == 0
    monkeypatch.undo()
    policies(app).catch_up()
    assert app.order("O-1").status == "placed"


def test_commands_carry_their_cause_in_the_metadata(app: Fenxiao) -> None:
    shop(app)
    place(app, "O-1", [("TEA", 1)])
    pay(app, "O-1")
    policies(app).catch_up()
    events = app.recorder.events_record_cls.__table__
    with app.engine.connect() as conn:
        paid_at = conn.execute(select(events.c.id).where(
            events.c.topic.endswith("Order.OrderPaid"))).scalar_one()
    [accrued] = recorded(app, LineCommission.CommissionAccrued)
    assert accrued.meta["actor"] == "policy:commission_policy"
    assert accrued.meta["causation_id"] == f"event:{paid_at}"


def test_parked_rows_name_the_process_manager(app: Fenxiao) -> None:
    """The parked table is shared with projections: a manager's rows carry its name."""
    with app.engine.connect() as conn:
        assert conn.execute(select(parked_events)).all() == []
    assert {m.name for m in all_process_managers()}.isdisjoint(
        p.name for p in all_projections())


def test_an_http_flow_accrues_and_reverses(api: Any) -> None:
    """Orders over HTTP; the process managers run as the worker runs them."""
    from tests.test_api_distributors import network

    api.seed()  # TEA 1999 (10 in W1), CUP 990 (5 in W2)
    network(api)  # D1 referred D2
    app = api.client.application.extensions["fenxiao"]
    customer = {"customer_id": "C1", "name": "Li Lei", "phone": "13900000001"}
    placed = api.post("/orders", {
        "order_id": "O-1", "customer": customer, "distributor_id": "D2",
        "shipping_address": ADDRESS, "lines": [{"sku": "TEA", "quantity": 2}]},
        role="integration")
    assert placed.status_code == 201, placed.get_json()
    paid = api.post("/orders/O-1/payments", {
        "amount": {"amount": placed.get_json()["total"], "currency": "CNY"},
        "payment_reference": "PAY-1"}, role="integration")
    assert paid.status_code == 200, paid.get_json()
    policies(app).catch_up()
    earned = api.get("/distributors/D2/earnings", min_position=app.last_position())
    assert (earned.get_json()["pending"], earned.get_json()["lifetime_earned"]) == (400, 400)
    upline = api.get("/distributors/D1/earnings", role="distributor").get_json()
    assert upline["pending"] == 200
    cancelled = api.post("/orders/O-1/cancel", {"reason": "changed my mind"})
    assert cancelled.status_code == 200, cancelled.get_json()
    policies(app).catch_up()
    earned = api.get("/distributors/D2/earnings", min_position=app.last_position()).get_json()
    assert (earned["pending"], earned["reversed"]) == (0, 400)
    entries_ = api.get("/distributors/D1/commissions", role="distributor").get_json()
    assert [(e["order_id"], e["level"], e["status"]) for e in entries_["items"]] == [
        ("O-1", 2, "reversed")]


def test_domain_errors_of_commands_are_refusals_to_park() -> None:
    from commands.app import ConcurrencyConflict, StoreMismatch
    from projections.runner import is_a_refusal

    assert is_a_refusal(InvalidTransition("no")) and is_a_refusal(KeyError("basis"))
    assert not is_a_refusal(ConcurrencyConflict("busy"))
    assert not is_a_refusal(StoreMismatch("wrong key"))
    assert isinstance(InsufficientStock("x"), DomainError)
