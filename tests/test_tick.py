"""The time rules: reservation expiry, completion after the return window, commission
maturity after the freeze period; POST /admin/tick, `fenxiao tick`, the worker's own tick."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from click.testing import CliRunner

from api.cli import main
from commands import Fenxiao
from commands.tick import TimeGoesBackwards, tick
from domain.accruals import LineCommission
from domain.errors import InvalidCommand
from projections import all_projections
from projections.runner import ProjectionRunner, worker
from tests.test_policies import balances, pay, place, policies, recorded, run, shop

DAY = timedelta(days=1)
START = datetime(2026, 11, 2, 9, tzinfo=timezone.utc)


class Clock:
    """The application's clock, moved by the test."""

    def __init__(self, app: Fenxiao, now: datetime = START) -> None:
        self.now = now
        app.clock = lambda: self.now

    def advance(self, delta: timedelta) -> datetime:
        self.now += delta
        return self.now


def deliver(app: Fenxiao, order_id: str) -> None:
    for shipment_id in sorted(app.order(order_id).shipments):
        run(app, lambda: app.pick_shipment(shipment_id))
        run(app, lambda: app.pack_shipment(shipment_id))
        number = run(app, lambda: app.dispatch_shipment(shipment_id))["tracking_number"]
        run(app, lambda: app.record_carrier_event("SF", f"E-{shipment_id}", number,
                                                  "delivered", app.clock()))


def read_models(app: Fenxiao) -> None:
    """The worker's work: process managers, then the read models the tick reads."""
    policies(app).catch_up()
    ProjectionRunner(app, all_projections()).catch_up()


def test_expiry_completion_and_maturity_as_of_the_given_now(app: Fenxiao) -> None:
    clock = Clock(app)
    shop(app)
    place(app, "O-UNPAID", [("TEA", 3)], customer_id="C2")
    place(app, "O-1", [("TEA", 2)])
    pay(app, "O-1")
    deliver(app, "O-1")
    read_models(app)
    assert tick(app) == {"expired": 0, "completed": 0, "matured": 0, "position": None}

    timeout_s = app.settings.reservation_timeout_s
    at = clock.advance(timedelta(seconds=timeout_s))
    expired = tick(app, at)
    assert (expired["expired"], expired["completed"]) == (1, 0)
    assert app.order("O-UNPAID").status == "cancelled"
    assert app.stock_item("TEA", "W1").reserved == 0  # O-1's were issued on dispatch
    assert expired["position"] == app.last_position()

    read_models(app)
    almost = START + app.settings.return_window_days * DAY - timedelta(seconds=1)
    assert tick(app, almost)["completed"] == 0  # not yet: the window is still open
    completed = tick(app, START + app.settings.return_window_days * DAY)
    assert completed["completed"] == 1 and app.order("O-1").status == "completed"
    assert app.wallet("B").pending == 2000

    read_models(app)
    frozen_until = app.order("O-1").completed_at + app.settings.commission_freeze_days * DAY
    assert tick(app, frozen_until - timedelta(seconds=1))["matured"] == 0
    matured = tick(app, frozen_until)
    assert matured == {"expired": 0, "completed": 0, "matured": 1,
                       "position": app.last_position()}
    assert (app.wallet("B").pending, app.wallet("B").available) == (0, 2000)
    assert (app.wallet("A").pending, app.wallet("A").available) == (0, 1000)
    assert app.line_commission("O-1", 1).matured_cause == "freeze-ended:O-1"
    assert sum(balances(app).values()) == 0

    head = app.last_position()  # the read models still show the line pending: no matter
    assert tick(app, frozen_until + DAY)["matured"] == 0
    assert app.last_position() == head


def test_each_command_rechecks_on_the_aggregate(app: Fenxiao) -> None:
    """Candidates come from read models that may lag; the aggregates decide."""
    clock = Clock(app)
    shop(app)
    place(app, "O-1", [("TEA", 1)])
    read_models(app)  # the read model: O-1 unpaid
    pay(app, "O-1")  # ... but it has been paid since
    at = clock.advance(timedelta(seconds=app.settings.reservation_timeout_s + 1))
    assert tick(app, at)["expired"] == 0
    assert app.order("O-1").status == "fulfilling"


def test_time_only_moves_forward(app: Fenxiao) -> None:
    clock = Clock(app)
    with pytest.raises(TimeGoesBackwards):
        tick(app, clock.now - timedelta(seconds=1))
    with pytest.raises(InvalidCommand):
        tick(app, datetime(2030, 1, 1))  # no offset: which 1 January?
    assert tick(app, clock.now)["position"] is None


def cli(app: Fenxiao, *args: str) -> Any:
    return CliRunner().invoke(main, list(args),
                              env={"FENXIAO_DATABASE_URL": app.settings.database_url})


def test_the_command_line_ticks_as_of_a_later_now(app: Fenxiao) -> None:
    shop(app)
    place(app, "O-1", [("TEA", 1)])
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    ticked = cli(app, "tick", "--now", later.isoformat())
    assert ticked.exit_code == 0, ticked.output
    result = json.loads(ticked.stdout)
    assert (result["expired"], result["completed"], result["matured"]) == (1, 0, 0)
    assert result["position"] == app.last_position()
    assert cli(app, "tick").exit_code == 0
    naive = cli(app, "tick", "--now", later.replace(tzinfo=None).isoformat())
    assert naive.exit_code == 0, naive.output  # read as UTC
    past = cli(app, "tick", "--now", "2020-01-01T00:00:00+00:00")
    assert past.exit_code != 0 and "time only moves forward" in past.output
    junk = cli(app, "tick", "--now", "next tuesday")
    assert junk.exit_code != 0 and "ISO-8601" in junk.output


def test_admin_tick_over_http(api: Any) -> None:
    app = api.client.application.extensions["fenxiao"]
    api.seed()
    assert api.post("/admin/tick", role=None).status_code == 401
    assert api.post("/admin/tick", role="operator").status_code == 403
    assert api.post("/admin/tick", {"now": "2030-01-01T00:00:00Z"}).status_code == 422
    customer = {"customer_id": "C1", "name": "Li Lei", "phone": "13900000001"}
    placed = api.post("/orders", {
        "order_id": "O-1", "customer": customer, "lines": [{"sku": "TEA", "quantity": 1}],
        "shipping_address": {"region": "east", "city": "Hangzhou", "line1": "1 Rd"}})
    assert placed.status_code == 201, placed.get_json()
    assert api.get("/orders/O-1", min_position=placed.get_json()["position"]).status_code \
        == 200
    clock = Clock(app, datetime.now(timezone.utc))
    clock.advance(timedelta(seconds=app.settings.reservation_timeout_s))
    first = api.post("/admin/tick", **{"Idempotency-Key": "tick-1"})
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body == {"expired": 1, "completed": 0, "matured": 0,
                    "position": app.last_position()}
    head = app.last_position()
    again = api.post("/admin/tick", **{"Idempotency-Key": "tick-1"})
    assert (again.status_code, again.get_json()) == (200, body)
    assert app.last_position() == head  # answered from the store, not ticked again
    plain = api.post("/admin/tick")
    assert plain.get_json() == {"expired": 0, "completed": 0, "matured": 0,
                                "position": None}
    assert api.get("/orders/O-1", min_position=head).get_json()["status"] == "cancelled"


def test_the_worker_ticks_on_its_own_and_stops(app: Fenxiao) -> None:
    clock = Clock(app)
    shop(app)
    place(app, "O-1", [("TEA", 1)])
    ProjectionRunner(app, all_projections()).catch_up()
    clock.advance(timedelta(seconds=app.settings.reservation_timeout_s))
    runner = worker(app, tick_interval_s=0.05, poll_interval_s=0.05)
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while app.order("O-1").status != "cancelled" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert app.order("O-1").status == "cancelled"
        assert any(t["expired"] == 1 for t in runner.ticks)
    finally:
        runner.stop()
    assert not runner._threads  # every thread, the ticking one too, has ended
    ticks = len(runner.ticks)
    time.sleep(0.2)
    assert len(runner.ticks) == ticks


def test_maturity_never_moves_a_line_twice_when_ticks_race(app: Fenxiao) -> None:
    import threading

    clock = Clock(app)
    shop(app)
    for n in range(3):
        place(app, f"O-{n}", [("TEA", 1)], customer_id=f"C{n}")
        pay(app, f"O-{n}")
        deliver(app, f"O-{n}")
    read_models(app)
    tick(app, clock.advance(app.settings.return_window_days * DAY))
    read_models(app)
    at = clock.advance(app.settings.commission_freeze_days * DAY)
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(tick(app, at)))
               for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(r["matured"] for r in results) == 3
    assert len(recorded(app, LineCommission.CommissionMatured)) == 3
    assert app.wallet("B").available == 3 * 1000
