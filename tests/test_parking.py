"""A projection never stalls on one event: a bad event is parked, the others are applied,
/health says degraded, and `retry` applies the parked event after the fix."""
from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy.exc
from click.testing import CliRunner
from eventsourcing.persistence import OperationalError as PersistenceOperationalError
from sqlalchemy import delete, select, text, update

from api import create_app
from api.cli import main
from commands import Fenxiao
from commands.storage import parked_events
from domain.catalog import Warehouse
from projections import all_projections
from projections.catalog import CatalogProjection, get_product, products, warehouses
from projections.inventory import inventory
from projections.parking import list_parked
from projections.runner import ProjectionRunner, TrackingConflict, positions
from tests.test_projections import activity, snapshot


def position_of(reply: Any) -> int:
    return reply.body["position"]


def a_batch_with_a_bad_event_in_the_middle(app: Fenxiao) -> int:
    """Five catalog events; the read model already holds a stray row with the SKU of the
    third, so applying that one breaks the primary key (a real IntegrityError on either
    database). Returns the bad event's position."""
    with app.engine.begin() as conn:
        conn.execute(products.insert().values(
            sku="DUP", name="stray", spec="", price_minor=1, wholesale_price_minor=None,
            currency="CNY", listed=True, product_uuid="stray"))
    app.execute(lambda: app.open_warehouse("W1", "East", "east"))
    app.execute(lambda: app.add_product("A", "Tea A", "", 100))
    bad = position_of(app.execute(lambda: app.add_product("DUP", "Tea DUP", "", 300)))
    app.execute(lambda: app.add_product("B", "Tea B", "", 200))
    app.execute(lambda: app.open_warehouse("W2", "South", "south"))
    return bad


def garble(app: Fenxiao, position: int) -> None:
    """Overwrite a stored event with bytes that no longer decode (a bad event that a
    rebuild meets again, unlike bad rows in the read model, which it clears)."""
    events = app.recorder.events_record_cls.__table__
    with app.engine.begin() as conn:
        conn.execute(update(events).where(events.c.id == position).values(state=b"\xff{"))


def fix_the_stray_row(app: Fenxiao) -> None:
    with app.engine.begin() as conn:
        conn.execute(delete(products).where(products.c.product_uuid == "stray"))


def catalog_runner(app: Fenxiao, projection: CatalogProjection | None = None,
                   ) -> ProjectionRunner:
    return ProjectionRunner(app, [projection or CatalogProjection()], batch_size=1000)


def read(app: Fenxiao, column: Any) -> list[Any]:
    with app.engine.connect() as conn:
        return sorted(conn.execute(select(column)).scalars())


def parked(app: Fenxiao) -> list[Any]:
    with app.engine.connect() as conn:
        return list_parked(conn)


def health(app: Fenxiao) -> dict[str, Any]:
    response = create_app(app.settings, application=app).test_client().get("/api/v1/health")
    assert response.status_code == 200
    return response.get_json()


def cli(app: Fenxiao, *args: str) -> Any:
    return CliRunner().invoke(main, list(args),
                              env={"FENXIAO_DATABASE_URL": app.settings.database_url})


def test_a_bad_event_is_parked_and_the_others_applied(app: Fenxiao) -> None:
    bad = a_batch_with_a_bad_event_in_the_middle(app)
    runner = catalog_runner(app)
    runner.catch_up()
    assert read(app, products.c.name) == ["Tea A", "Tea B", "stray"]
    assert read(app, warehouses.c.warehouse_id) == ["W1", "W2"]
    assert runner.position("catalog") == app.last_position()
    [row] = parked(app)
    assert (row.projection, row.position) == ("catalog", bad)
    assert row.topic.endswith("Product.ProductAdded")
    assert row.error.startswith("IntegrityError: ") and "[parameters:" not in row.error

    status = health(app)
    assert status["status"] == "degraded"
    assert status["parked"] == [{"name": "catalog", "count": 1}]
    entries = {p["name"]: p for p in status["projections"]}
    assert entries["catalog"]["parked"] == 1 and entries["inventory"]["parked"] == 0

    assert runner.retry_parked("catalog") == (0, 1)  # not fixed yet: stays parked
    fix_the_stray_row(app)
    assert runner.retry_parked("catalog") == (1, 0)
    assert read(app, products.c.name) == ["Tea A", "Tea B", "Tea DUP"]
    assert parked(app) == []
    status = health(app)
    assert status["status"] == "ok" and status["parked"] == []
    live = snapshot(app)
    runner.rebuild("catalog")
    assert snapshot(app) == live


def test_good_writes_parked_rows_and_tracking_commit_together_or_not_at_all(
        app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    """The savepoints nest in the batch's transaction: releasing one commits nothing (on
    pysqlite it would, unless the transaction was opened first), so a batch that loses
    its tracking write leaves no trace."""
    runner = catalog_runner(app)
    runner.catch_up()  # its tracking row exists, as it does but on the very first batch
    a_batch_with_a_bad_event_in_the_middle(app)

    def lost_race(*_: Any) -> None:
        raise TrackingConflict("another runner moved it")

    monkeypatch.setattr("projections.runner.advance_tracking", lost_race)
    with pytest.raises(TrackingConflict):
        runner.run_batch(runner.projections["catalog"], one_by_one=True)
    assert read(app, products.c.name) == ["stray"]
    assert read(app, warehouses.c.warehouse_id) == []
    assert parked(app) == []
    assert runner.position("catalog") == 0
    assert runner._run_batch_retrying(runner.projections["catalog"]) == 1  # read again
    assert parked(app) == []


def test_handler_code_and_undecodable_events_are_parked(app: Fenxiao) -> None:
    projection = CatalogProjection()

    def fussy(conn: Any, e: Any) -> None:
        if e.name == "Bad":
            raise ValueError("cannot handle this one")
        CatalogProjection.handlers[Warehouse.WarehouseOpened](conn, e)

    projection.handlers = {**CatalogProjection.handlers, Warehouse.WarehouseOpened: fussy}
    refused = position_of(app.execute(lambda: app.open_warehouse("W1", "Bad", "east")))
    garbled = position_of(app.execute(lambda: app.open_warehouse("W2", "South", "south")))
    app.execute(lambda: app.open_warehouse("W3", "West", "west"))
    garble(app, garbled)
    runner = catalog_runner(app, projection)
    runner.catch_up()
    assert read(app, warehouses.c.warehouse_id) == ["W3"]
    errors = {row.position: row.error for row in parked(app)}
    assert errors[refused] == "ValueError: cannot handle this one"
    assert set(errors) == {refused, garbled}
    assert runner.position("catalog") == app.last_position()


def test_a_database_failure_is_retried_not_parked(app: Fenxiao) -> None:
    projection = CatalogProjection()

    def unreachable(conn: Any, e: Any) -> None:
        raise sqlalchemy.exc.OperationalError("INSERT ...", {}, Exception("server closed"))

    projection.handlers = {**CatalogProjection.handlers, Warehouse.WarehouseOpened: unreachable}
    app.execute(lambda: app.open_warehouse("W1", "East", "east"))
    runner = catalog_runner(app, projection)
    # (the datastore's transaction re-raises it as eventsourcing's own OperationalError)
    with pytest.raises((sqlalchemy.exc.OperationalError, PersistenceOperationalError)):
        runner.catch_up()
    assert parked(app) == [] and runner.position("catalog") == 0
    projection.handlers = CatalogProjection.handlers  # the database is back
    runner.catch_up()
    assert read(app, warehouses.c.warehouse_id) == ["W1"]
    assert parked(app) == []


def test_a_connection_lost_in_the_middle_parks_nothing(app: Fenxiao) -> None:
    """A real connection failure while events are applied one by one (after another event
    failed): the whole batch, parked rows included, is rolled back to be retried later."""
    if app.engine.dialect.name != "postgresql":
        pytest.skip("PostgreSQL only: a server connection to terminate")
    projection = CatalogProjection()

    def handler(conn: Any, e: Any) -> None:
        if e.name == "Bad":
            raise ValueError("this one is the event's fault")
        if e.name == "Cut":
            conn.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        CatalogProjection.handlers[Warehouse.WarehouseOpened](conn, e)

    projection.handlers = {**CatalogProjection.handlers, Warehouse.WarehouseOpened: handler}
    for w, name in (("W1", "Bad"), ("W2", "Cut"), ("W3", "West")):
        app.execute(lambda: app.open_warehouse(w, name, "east"))
    runner = catalog_runner(app, projection)
    with pytest.raises((sqlalchemy.exc.OperationalError, PersistenceOperationalError)):
        runner.catch_up()
    assert parked(app) == [] and runner.position("catalog") == 0
    assert read(app, warehouses.c.warehouse_id) == []


def whole_batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*_: Any) -> None:
        raise AssertionError("a healthy batch was applied one event at a time")

    monkeypatch.setattr(ProjectionRunner, "_apply_one_by_one", never)


def test_the_fast_path_stays_when_nothing_fails(app: Fenxiao,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    whole_batches_only(monkeypatch)
    activity(app)
    ProjectionRunner(app, all_projections(), batch_size=5).catch_up()
    with app.engine.connect() as conn:
        assert set(positions(conn).values()) == {app.last_position()}
    assert parked(app) == []


def test_rebuild_parks_instead_of_crashing_and_clears_old_parked_rows(app: Fenxiao) -> None:
    bad = a_batch_with_a_bad_event_in_the_middle(app)
    garble(app, bad)
    with app.engine.begin() as conn:  # left over from an older run of the projection
        conn.execute(parked_events.insert().values(
            projection="catalog", position=1, topic="old", error="old error",
            parked_at=app.clock()))
    rebuilt = cli(app, "projections", "rebuild", "catalog")
    assert rebuilt.exit_code == 0, rebuilt.output
    assert "1 events parked" in rebuilt.output
    [row] = parked(app)
    assert row.position == bad and row.topic.endswith("ProductAdded")
    assert catalog_runner(app).position("catalog") == app.last_position()


def test_the_command_line_lists_and_retries_parked_events(app: Fenxiao) -> None:
    none = cli(app, "projections", "parked")
    assert none.exit_code == 0 and "no parked events" in none.output
    bad = a_batch_with_a_bad_event_in_the_middle(app)
    catalog_runner(app).catch_up()
    listed = cli(app, "projections", "parked")
    assert listed.exit_code == 0
    [line] = listed.stdout.splitlines()
    name, position, topic, parked_at, error = line.split("\t")
    assert (name, int(position)) == ("catalog", bad)
    assert topic.endswith("ProductAdded") and error.startswith("IntegrityError")
    still = cli(app, "projections", "retry", "catalog")
    assert still.exit_code == 0 and "0 applied, 1 still parked" in still.output
    fix_the_stray_row(app)
    retried = cli(app, "projections", "retry", "catalog")
    assert retried.exit_code == 0 and "1 applied, 0 still parked" in retried.output
    assert "no parked events" in cli(app, "projections", "parked").output
    unknown = cli(app, "projections", "retry", "nope")
    assert unknown.exit_code != 0 and "catalog" in unknown.output


def test_text_with_nul_projects_instead_of_being_parked(
        app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL cannot store NUL in text: there it becomes U+FFFD; SQLite keeps it. The
    batches apply whole: the text is made storable, not worked around."""
    whole_batches_only(monkeypatch)
    for w in ("W1", "W2"):
        app.execute(lambda: app.open_warehouse(w, f"Warehouse {w}", "east"))
    app.execute(lambda: app.add_product("NUL-1", "Tea\x00Leaf", "spec\x00", 100))
    app.execute(lambda: app.add_product("N\x00", "Cup", "", 100))
    for w in ("W1", "W2"):  # two stock items opened in one batch: a multi-row INSERT
        app.execute(lambda: app.receive_stock("N\x00", w, 2, "PO"))
    ProjectionRunner(app, all_projections()).catch_up()
    assert parked(app) == []
    nul = "\ufffd" if app.engine.dialect.name == "postgresql" else "\x00"
    with app.engine.connect() as conn:
        assert get_product(conn, "NUL-1")["name"] == f"Tea{nul}Leaf"
        assert get_product(conn, "NUL-1\x00") is None  # a query with NUL finds nothing
    assert read(app, inventory.c.sku) == [f"N{nul}", f"N{nul}"]


def test_a_query_with_nul_answers_not_found(api: Any) -> None:
    assert api.get("/products/%00").status_code == 404


def test_concurrent_runners_park_nothing(app: Fenxiao) -> None:
    """Lost races (TrackingConflict, colliding rows) are retried, never parked."""
    import threading

    activity(app)
    threads = [threading.Thread(
        target=lambda: ProjectionRunner(app, all_projections(), batch_size=2).catch_up())
        for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert parked(app) == []
    with app.engine.connect() as conn:
        assert set(positions(conn).values()) == {app.last_position()}
