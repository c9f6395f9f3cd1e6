"""Projections: batched catch-up, exactly-once tracking, rebuild equals live."""
from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.exc import NoResultFound

from commands import Fenxiao
from commands.app import CommandContext
from commands.storage import parked_events
from domain.accruals import LineCommission
from domain.aftersales import Case
from domain.stock import StockItem
from projections import all_projections
from projections.aftersales import AfterSalesProjection, get_case
from projections.catalog import get_product
from projections.commissions import CommissionsProjection, commissions
from projections.inventory import sku_inventory
from projections.orders import OrdersProjection, list_orders
import projections.runner as runner_module
from projections.runner import (ProjectionRunner, TrackingConflict, advance_tracking,
                                positions, wait_for_position)
from tests.test_orders_commands import deliver


def activity(app: Fenxiao) -> None:
    """A little of everything, through the ordinary commands."""
    run = lambda command: app.execute(command)  # noqa: E731
    for w in ("W1", "W2", "W3"):
        run(lambda: app.open_warehouse(w, f"Warehouse {w}", "east"))
    for n in range(4):
        run(lambda: app.add_product(f"SKU-{n}", f"Product {n}", "", 100 + n))
    for n in range(4):
        for w in ("W1", "W2"):
            run(lambda: app.receive_stock(f"SKU-{n}", w, 10 + n, "PO"))
    run(lambda: app.transfer_stock("SKU-1", "W1", "W3", 5))
    run(lambda: app.reserve_stock("SKU-2", "W2", 7, "O-1"))
    run(lambda: app.issue_stock("SKU-2", "W2", 3, "O-1"))
    run(lambda: app.release_stock("SKU-2", "W2", 2, "O-1"))
    run(lambda: app.restock("SKU-2", "W2", 1, "RMA-1"))
    run(lambda: app.adjust_stock("SKU-3", "W1", -4, "stock count"))
    run(lambda: app.change_price("SKU-0", 150))
    run(lambda: app.delist_product("SKU-3"))
    network(app)


def network(app: Fenxiao) -> None:
    """Distributors, a binding, rules, commissions and withdrawals."""
    run = lambda command: app.execute(command).body  # noqa: E731
    run(lambda: app.apply_distributor("A", "13800000001", None, "A"))
    code = run(lambda: app.approve_distributor("A"))["referral_code"]
    run(lambda: app.apply_distributor("B", "13800000002", code, "B"))
    run(lambda: app.approve_distributor("B"))
    run(lambda: app.apply_distributor("C", "13800000003", None, "C"))
    run(lambda: app.reject_distributor("C", "duplicate person"))
    run(lambda: app.attribute_order("CUST-1", referral_code=code))
    run(lambda: app.set_commission_rule("SKU-1", "rate", 1500, 500))
    run(lambda: app.accrue_commission("O-1", 1, "SKU-1", 2, 9999, "B"))
    run(lambda: app.reverse_commission("O-1", 1, 3333))
    run(lambda: app.mature_commission("O-1", 1))
    run(lambda: app.request_withdrawal("B", 500, "W-1"))
    run(lambda: app.approve_withdrawal("W-1", "BANK-1"))
    run(lambda: app.request_withdrawal("B", 300, "W-2"))
    run(lambda: app.reject_withdrawal("W-2", "checks"))
    run(lambda: app.reverse_commission("O-1", 1, 9999))
    run(lambda: app.change_upline("B", None, "independent now"))


def snapshot(app: Fenxiao) -> dict[str, list]:
    tables = [t for p in all_projections() for t in p.tables]
    with app.engine.connect() as conn:
        return {t.name: sorted(tuple(map(str, r)) for r in conn.execute(select(t)))
                for t in tables}


def test_catch_up_builds_the_read_models(app: Fenxiao) -> None:
    activity(app)
    ProjectionRunner(app, all_projections(), batch_size=7).catch_up()
    with app.engine.connect() as conn:
        sku2 = sku_inventory(conn, "SKU-2")
        assert sku2["on_hand"] == 12 + 12 - 3 + 1 and sku2["reserved"] == 2
        assert sku_inventory(conn, "SKU-1")["warehouses"][2]["on_hand"] == 5
        assert get_product(conn, "SKU-0")["price"]["amount"] == 150
        assert get_product(conn, "SKU-3")["listed"] is False
        assert set(positions(conn).values()) == {app.last_position()}
        assert len(snapshot(app)["rm_distributors"]) == 3
        assert len(snapshot(app)["rm_withdrawals"]) == 2


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_rebuild_equals_live_whatever_the_batch_size(app: Fenxiao, batch_size: int) -> None:
    runner = ProjectionRunner(app, all_projections(), batch_size=batch_size)
    activity(app)
    runner.catch_up()  # incrementally, as events arrived in two waves
    app.execute(lambda: app.receive_stock("SKU-0", "W3", 2, "PO-late"))
    runner.catch_up()
    live = snapshot(app)
    for projection in runner.projections:
        runner.rebuild(projection)
    assert snapshot(app) == live


def test_a_sparse_projection_reads_further_and_a_dense_one_a_batch_at_a_time(
        app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    """The runner's read window grows while a projection finds fewer events than a batch
    (a sparse one crosses a long log in a few reads) and comes back to one batch's span
    when it finds a full one; either way every event is read once, in order."""
    monkeypatch.setattr(runner_module, "READ_WINDOW", 4)
    app.execute(lambda: app.open_warehouse("W1", "East", "east"))
    app.execute(lambda: app.add_product("TEA", "Tea", "tea", 1999))
    for n in range(60):
        app.execute(lambda: app.receive_stock("TEA", "W1", 1, f"IN-{n}"))
    app.execute(lambda: app.add_product("CUP", "Cup", "cup", 990))
    head = app.last_position()
    reads: dict[str, list[tuple[int, int, int]]] = {"catalog": [], "inventory": []}
    read = ProjectionRunner._read_batch

    def counted(self: ProjectionRunner, conn: Any, projection: Any, start: int,
                limit: int | None = None, until: int | None = None) -> Any:
        rows, end = read(self, conn, projection, start, limit, until)
        reads[projection.name].append((start, len(rows), end))
        return rows, end

    monkeypatch.setattr(ProjectionRunner, "_read_batch", counted)
    projections = [p for p in all_projections() if p.name in reads]
    ProjectionRunner(app, projections, batch_size=10).catch_up()
    catalog = reads["catalog"]
    assert sum(n for _, n, _ in catalog) == 3  # W1, TEA, CUP
    assert len(catalog) <= 6 and catalog[-1][2] == head  # windows of 4, 16, 64, ...
    assert all(b[0] == a[2] for a, b in zip(catalog, catalog[1:]))  # contiguous
    inventory = reads["inventory"]
    counts = [n for _, n, _ in inventory]
    assert sum(counts) == 61 and counts.count(10) >= 5  # its item's creation, 60 receipts
    full = [(start, end) for start, n, end in inventory if n == 10]
    assert all(end - start <= 16 for start, end in full)  # about a batch's span each
    assert all(b[0] == a[2] for a, b in zip(inventory, inventory[1:]))
    with app.engine.connect() as conn:
        assert sku_inventory(conn, "TEA")["on_hand"] == 60


def test_tracking_moves_only_forward_from_the_expected_position(app: Fenxiao) -> None:
    with app.engine.begin() as conn:
        advance_tracking(conn, "p", 0, 5)
        with pytest.raises(TrackingConflict):
            advance_tracking(conn, "p", 0, 9)  # someone else already moved it
        with pytest.raises(TrackingConflict):
            advance_tracking(conn, "p", 5, 5)
        advance_tracking(conn, "p", 5, 9)
        assert positions(conn)["p"] == 9


def test_concurrent_runners_apply_each_event_exactly_once(app: Fenxiao) -> None:
    activity(app)
    expected_runner = ProjectionRunner(app, all_projections())
    errors: list[BaseException] = []

    def run() -> None:
        try:
            ProjectionRunner(app, all_projections(), batch_size=2).catch_up()
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    concurrent = snapshot(app)
    for projection in expected_runner.projections:
        expected_runner.rebuild(projection)
    assert snapshot(app) == concurrent


def test_concurrent_tracking_writes_on_postgres_one_wins(app: Fenxiao) -> None:
    """Two transactions move the same position from the same start: exactly one commits."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite serialises writers (the forward-only rule "
                    "is covered above)")
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def contend(new: int) -> None:
        try:
            with app.engine.begin() as conn:
                barrier.wait()
                advance_tracking(conn, "contended", 0, new)
            outcomes.append("won")
        except TrackingConflict:
            outcomes.append("lost")

    threads = [threading.Thread(target=contend, args=(n,)) for n in (3, 4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["lost", "won"]


def test_background_worker_and_min_position(app: Fenxiao) -> None:
    runner = ProjectionRunner(app, all_projections(), poll_interval_s=0.05)
    runner.start()
    try:
        activity(app)
        head = app.last_position()
        assert wait_for_position(app, ["catalog", "inventory"], head, 10.0) == head
        assert wait_for_position(app, ["inventory"], head + 100, 0.2) is None
    finally:
        runner.stop()


def test_worker_survives_a_failing_batch(app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = ProjectionRunner(app, all_projections(), poll_interval_s=0.05)
    inventory_projection = runner.projections["inventory"]
    real = inventory_projection.apply_batch
    failures = []

    def flaky(conn, events):  # fails once, then works
        if not failures:
            failures.append(1)
            raise RuntimeError("database hiccup")
        return real(conn, events)

    monkeypatch.setattr(inventory_projection, "apply_batch", flaky)
    app.execute(lambda: app.open_warehouse("W1", "W", "east"))
    app.execute(lambda: app.add_product("A", "A", "", 1))
    app.execute(lambda: app.receive_stock("A", "W1", 3, "PO"), context=CommandContext("t"))
    runner.start()
    try:
        assert wait_for_position(app, ["inventory"], app.last_position(), 10.0)
    finally:
        runner.stop()
    with app.engine.connect() as conn:
        assert sku_inventory(conn, "A")["on_hand"] == 3


def test_listener_reconnects_after_its_connection_is_killed(app: Fenxiao) -> None:
    """On PostgreSQL the worker wakes on NOTIFY; kill its LISTEN connection and a write from
    another process-like writer must still wake it well before the slow poll would."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: SQLite has no LISTEN; it polls (covered by the "
                    "worker tests above)")
    import time

    from sqlalchemy import text

    from commands.settings import Settings

    runner = ProjectionRunner(app, all_projections(), poll_interval_s=60)
    runner.start()
    other = Fenxiao(Settings(database_url=app.settings.database_url))  # not our listeners
    try:
        killed, deadline = 0, time.monotonic() + 10
        while not killed and time.monotonic() < deadline:  # once the listener is up
            time.sleep(0.1)
            with app.engine.begin() as conn:
                killed = conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid() "
                    "AND datname = current_database()")).scalar()  # not other tests' own
        assert killed >= 1
        time.sleep(1.5)  # the listener notices, backs off a second, and listens again
        other.execute(lambda: other.open_warehouse("W1", "East", "east"))
        assert wait_for_position(app, ["catalog"], other.last_position(), 10.0)
    finally:
        other.close()
        runner.stop()


def test_a_standby_worker_leaves_projections_to_the_lock_holder(app: Fenxiao) -> None:
    """On PostgreSQL each projection is held by one worker (advisory lock); another worker
    applies nothing while it stands by, and takes over when the holder goes away."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: one process per SQLite file, nobody to stand by for")
    holder = ProjectionRunner(app, all_projections())
    standby = ProjectionRunner(app, all_projections())
    held = holder._locks.held(holder.projections)
    assert set(held) == set(holder.projections)
    assert standby._locks.held(standby.projections) == []
    app.execute(lambda: app.open_warehouse("W1", "East", "east"))
    standby.catch_up(standby._locks.held(standby.projections))
    with app.engine.connect() as conn:
        assert positions(conn).get("catalog", 0) == 0
    holder._locks.close()  # the holder dies: its session locks go with its connection
    # ... once its server process has ended, which a busy server may take a moment to do
    # after the client hung up.
    deadline = time.monotonic() + 15.0
    while set(standby._locks.held(standby.projections)) != set(standby.projections):
        assert time.monotonic() < deadline, "the standby never took over"
        time.sleep(0.05)
    standby._locks.close()


def test_replay_equals_live_for_every_aggregate(app: Fenxiao) -> None:
    """Every aggregate, loaded the usual way (from its latest snapshot, if any), equals the
    same aggregate folded from its whole event history."""
    # Stock items are snapshotted every 1,000 events in production; every 20 here, so a
    # short history has snapshots to load from.
    app.snapshotting_intervals = {**app.snapshotting_intervals, StockItem: 20}
    activity(app)
    for n in range(45):  # long enough histories for snapshots to be taken
        app.execute(lambda: app.receive_stock("SKU-0", "W1", 1, f"PO-{n}"))
    events = app.recorder.events_record_cls.__table__
    with app.engine.connect() as conn:
        ids = [row[0] for row in conn.execute(select(events.c.originator_id).distinct())]
    assert len(ids) > 20
    snapshots_taken = 0
    for aggregate_id in ids:
        live = app.repository.get(aggregate_id)
        replayed = None
        for event in app.events.get(aggregate_id):
            replayed = event.mutate(replayed)
        assert vars(replayed) == vars(live), aggregate_id
        snapshots_taken += bool(app.snapshots and list(app.snapshots.get(aggregate_id)))
    assert snapshots_taken >= 1


def folded(app: Fenxiao, projection: Any, events: list[Any], size: int) -> dict[str, list]:
    """The projection's tables after `events`, applied `size` at a time (a transaction
    each) to empty tables."""
    with app.engine.begin() as conn:
        projection.clear(conn)
    for start in range(0, len(events), size):
        with app.engine.begin() as conn:
            projection.apply_batch(conn, events[start:start + size])
    with app.engine.connect() as conn:
        return {t.name: sorted(tuple(map(str, r)) for r in conn.execute(select(t)))
                for t in projection.tables}


def test_commissions_and_cases_fold_alike_in_any_batches(app: Fenxiao) -> None:
    """Entries and cases moved by events of the batch that created them, or of a later
    one (an entry matured or reversed in the table, a case moved there): the rows are
    those of one event at a time, whatever the batches."""
    at = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
    accruals = [{"level": 1, "distributor_id": "D2", "base_minor": 1000, "rate_bp": 1000,
                 "amount_minor": 100, "rule_kind": "rate", "rule_version": 0},
                {"level": 2, "distributor_id": "D1", "base_minor": 1000, "rate_bp": 500,
                 "amount_minor": 50, "rule_kind": "rate", "rule_version": 0}]
    forfeit = [{"level": 2, "distributor_id": "D9", "amount_minor": 50, "reason": "suspended"}]
    a = LineCommission.accrue("O-1", 1, "TEA", 1000, "CNY", accruals, [], at)
    b = LineCommission.accrue("O-2", 1, "CUP", 1000, "CNY", accruals[:1], forfeit, at)
    c = LineCommission.accrue("O-3", 1, "TEA", 1000, "CNY", accruals, [], at)
    refund = Case.request("AS-1", "O-1", "D2", "return_refund", [("TEA", 1)], "broken",
                          None, "CNY", "integration", at)
    exchange = Case.request("AS-2", "O-2", None, "exchange", [("CUP", 1)], "wrong size",
                            None, "CNY", "integration", at)
    rejected = Case.request("AS-3", "O-2", None, "refund_only", [("CUP", 1)], "late",
                            None, "CNY", "integration", at)
    steps = [lambda: None, lambda: a.reverse(400, at, refund_reference="R-1"),
             lambda: refund.approve("operator", at), lambda: b.mature(at),
             lambda: exchange.approve("operator", at), lambda: rejected.reject("operator", at),
             lambda: a.mature(at), lambda: refund.receive("W1", True, "warehouse", at),
             lambda: exchange.receive("W1", True, "warehouse", at),
             lambda: a.reverse(1000, at, refund_reference="R-2"),
             lambda: refund.refund(300, "R-2", [], "operator", at, 300),
             lambda: b.reverse(1000, at, cause="cancelled"),
             lambda: exchange.ship([{"shipment_id": "S-1", "warehouse_id": "W1",
                                     "lines": []}], "warehouse", at),
             lambda: refund.close("operator", at), lambda: c.reverse(100, at),
             lambda: rejected.close("operator", at), lambda: c.mature(at)]
    events: list[Any] = []
    for step in steps:
        step()
        for aggregate in (a, b, c, refund, exchange, rejected):
            events += aggregate.collect_events()
    for projection in (CommissionsProjection(), AfterSalesProjection()):
        mine = [e for e in events if type(e) in projection.event_types()]
        one_by_one = folded(app, projection, mine, 1)
        for size in (2, 3, 5, len(mine)):
            assert folded(app, projection, mine, size) == one_by_one, (projection.name, size)
    with app.engine.connect() as conn:
        assert [(case["status"], case["refunded"], len(case["history"]))
                for case in (get_case(conn, f"AS-{n}") for n in (1, 2, 3))] == [
            ("closed", 300, 5), ("exchanged", 0, 4), ("closed", 0, 3)]
        entries = conn.execute(select(commissions.c.status, commissions.c.reversed_minor))
        assert sorted(tuple(row) for row in entries) == [
            ("available", 5), ("available", 10), ("forfeited", 0), ("reversed", 50),
            ("reversed", 100), ("reversed", 100)]


def test_an_event_naming_no_case_fails_its_batch(app: Fenxiao) -> None:
    """As the handler's SELECT ... scalar_one() did: the runner then parks the event."""
    at = datetime(2026, 1, 5, 9, 30, tzinfo=timezone.utc)
    case = Case.request("AS-9", "O-9", None, "refund_only", [("TEA", 1)], "broken", None,
                        "CNY", "integration", at)
    case.approve("operator", at)
    approved = case.collect_events()[1]
    with pytest.raises(NoResultFound), app.engine.begin() as conn:
        AfterSalesProjection().apply_batch(conn, [approved])


def orders_activity(app: Fenxiao, runner: ProjectionRunner) -> None:
    """Orders through every event the order read model folds, caught up half way: placed,
    backordered then filled, paid, fulfilled, delivered, completed, cancelled with their
    shipments, expired, refunded before dispatch (stock released, shipment replaced),
    refunded after a return, compensated."""
    at = datetime(2026, 3, 1, 8, tzinfo=timezone.utc)
    app.clock = lambda: at
    run = lambda command: app.execute(command).body  # noqa: E731
    east = {"region": "east", "city": "Shanghai", "line1": "1 Nanjing Rd"}

    def place(order_id: str, lines: list[tuple[str, int]], **extra: Any) -> None:
        run(lambda: app.place_order("C-1", "Li Lei", "+86 138 0013 8000", east, lines,
                                    order_id=order_id, **extra))

    def case(case_id: str, order_id: str, kind: str, lines: list[tuple[str, int]],
             refund_minor: int, **extra: Any) -> None:
        run(lambda: app.request_case(order_id, kind, lines, "a reason", case_id=case_id,
                                     **extra))
        run(lambda: app.approve_case(case_id))
        if kind == "return_refund":
            run(lambda: app.receive_case(case_id, "W-EAST", True))
        run(lambda: app.refund_case(case_id, refund_minor, f"R-{case_id}"))

    for warehouse_id, region in (("W-EAST", "east"), ("W-SOUTH", "south")):
        run(lambda: app.open_warehouse(warehouse_id, warehouse_id, region))
    run(lambda: app.add_product("TEA", "Tea", "", 1000))
    run(lambda: app.add_product("CUP", "Cup", "", 500))
    run(lambda: app.receive_stock("TEA", "W-EAST", 5, "PO-1"))
    run(lambda: app.receive_stock("CUP", "W-SOUTH", 10, "PO-1"))
    for order_id, lines, total in (("O-1", [("TEA", 2), ("CUP", 1)], 2500),
                                   ("O-2", [("CUP", 2)], 1000), ("O-3", [("TEA", 3)], 3000),
                                   ("O-4", [("CUP", 1)], 500)):
        place(order_id, lines)
        run(lambda: app.pay_order(order_id, total, f"PAY-{order_id}"))
    place("O-5", [("CUP", 1)])
    place("O-6", [("TEA", 2)], allow_backorder=True)
    run(lambda: app.pay_order("O-6", 2000, "PAY-O-6"))
    runner.catch_up()
    deliver(app, "O-1", at)
    deliver(app, "O-2", at)
    run(lambda: app.complete_order("O-2", at + timedelta(days=8)))
    run(lambda: app.cancel_order("O-4", "changed mind"))
    run(lambda: app.expire_order("O-5", at + timedelta(hours=1)))
    run(lambda: app.receive_stock("TEA", "W-SOUTH", 2, "PO-2"))
    run(lambda: app.fill_backorders("TEA"))
    case("AS-1", "O-3", "refund_only", [("TEA", 2)], 2000)
    case("AS-2", "O-1", "return_refund", [("TEA", 1)], 1000)
    case("AS-3", "O-1", "compensation", [("CUP", 1)], 100, amount_minor=100)
    runner.catch_up()


@pytest.mark.parametrize("batch_size", [1, 3, 1000])
def test_the_order_read_model_is_the_same_whatever_the_batch_size(
        app: Fenxiao, batch_size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Built live `batch_size` events at a time, then rebuilt one event at a time and
    all in one batch (each event finding the rows the ones before it created, an order's
    shipments cancelled with it, its lines' allocations shrunk): the same rows, and no
    batch failed (the runner would retry it event by event, hiding a fold that misses
    rows of its own batch)."""
    failed: list[Exception] = []
    apply_batch = OrdersProjection.apply_batch

    def noting_failures(self: OrdersProjection, conn: Any, events: Any) -> None:
        try:
            apply_batch(self, conn, events)
        except Exception as error:
            failed.append(error)
            raise
    monkeypatch.setattr(OrdersProjection, "apply_batch", noting_failures)
    orders_activity(app, ProjectionRunner(app, [OrdersProjection()], batch_size=batch_size))
    live = snapshot(app)
    for size in (1, 1000):
        ProjectionRunner(app, [OrdersProjection()], batch_size=size).rebuild("orders")
        assert snapshot(app) == live, size
    assert failed == []
    with app.engine.connect() as conn:
        assert conn.execute(select(parked_events)).all() == []
        views = {o["order_id"]: o for o in list_orders(conn)}
    assert {k: v["status"] for k, v in views.items()} == {
        "O-1": "delivered", "O-2": "completed", "O-3": "fulfilling", "O-4": "cancelled",
        "O-5": "cancelled", "O-6": "fulfilling"}
    assert [(v["paid"], v["refunded"]) for v in views.values()] == [
        (2000, 0), (0, 0), (500, 500), (3000, 2000), (1000, 0), (2500, 1100)]
    assert views["O-3"]["lines"][0]["allocations"] == [{"warehouse_id": "W-EAST",
                                                        "quantity": 1}]
    assert sorted(s["status"] for s in views["O-3"]["shipments"]) == ["cancelled",
                                                                       "created"]
    assert {s["status"] for s in views["O-4"]["shipments"]} == {"cancelled"}
    assert len(views["O-6"]["lines"][0]["allocations"]) == 1


def test_the_live_tail_applies_new_events_to_every_read_model_in_one_pass(
        app: Fenxiao) -> None:
    """The worker's live tail (the log less than a batch ahead) leaves exactly the rows a
    projection at a time leaves, each projection taking the events past its own position;
    a log further ahead than a batch makes it step aside for `catch_up`."""
    from tests.api_support import tables_of

    one_pass = ProjectionRunner(app, all_projections())
    app.execute(lambda: app.open_warehouse("W0", "Warehouse W0", "east"))
    one_pass.catch_up()
    activity(app)
    one_pass.catch_up(["catalog", "inventory"])  # two of them ahead of the others
    assert one_pass.run_tail(one_pass.names()) == []
    with app.engine.connect() as conn:
        assert set(positions(conn).values()) == {app.last_position()}
    tailed = {p.name: tables_of(app, p) for p in all_projections()}
    for projection in all_projections():
        one_pass.rebuild(projection.name)
        assert tables_of(app, projection) == tailed[projection.name], projection.name

    small = ProjectionRunner(app, all_projections(), batch_size=2)
    for n in range(3):
        app.execute(lambda: app.receive_stock("SKU-0", "W1", 1, f"PO-late-{n}"))
    assert small.run_tail(small.names()) == small.names()
    with app.engine.connect() as conn:
        assert positions(conn)["inventory"] < app.last_position()
