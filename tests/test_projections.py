"""Projections: batched catch-up, exactly-once tracking, rebuild equals live."""
from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from commands import Fenxiao
from commands.app import CommandContext
from projections import all_projections
from projections.catalog import get_product
from projections.inventory import sku_inventory
from projections.runner import (ProjectionRunner, TrackingConflict, advance_tracking,
                                positions, wait_for_position)


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
                    "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()")).scalar()
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
    assert set(standby._locks.held(standby.projections)) == set(standby.projections)
    standby._locks.close()


def test_replay_equals_live_for_every_aggregate(app: Fenxiao) -> None:
    """Every aggregate, loaded the usual way (from its latest snapshot, if any), equals the
    same aggregate folded from its whole event history."""
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
