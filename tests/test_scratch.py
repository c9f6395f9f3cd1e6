"""Scratch builds (projections/scratch.py): the runner stops at a position and writes into
temporary tables beside the live ones; a read model as of any position; rebuilds that
build aside and swap, so readers never see a half-built table. On SQLite and PostgreSQL."""
from __future__ import annotations

import csv
import gc
import io
import json
import threading
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from api.cli import main
from commands import Fenxiao
from projections.catalog import CatalogProjection, products
from projections.inventory import InventoryProjection, inventory
from projections.ledger import LedgerProjection
from projections.runner import ProjectionRunner
from projections.scratch import ScratchBuild, as_of, fewer_collections
from tests.api_support import tables_of
from tests.test_projections import activity


def cli(app: Fenxiao, *args: str) -> Any:
    return CliRunner().invoke(main, list(args),
                              env={"FENXIAO_DATABASE_URL": app.settings.database_url})


def run(app: Fenxiao, command: Any) -> int:
    return app.execute(command).body["position"]


def stock_story(app: Fenxiao) -> dict[str, int]:
    """TEA in WT: received 10, then 5 more; the positions of both receipts, and of the
    log just before each."""
    run(app, lambda: app.open_warehouse("WT", "East", "east"))
    run(app, lambda: app.add_product("TEA", "Tea", "", 100))
    before_first = app.last_position()
    first = run(app, lambda: app.receive_stock("TEA", "WT", 10, "PO-1"))
    second = run(app, lambda: app.receive_stock("TEA", "WT", 5, "PO-2"))
    run(app, lambda: app.add_product("CUP", "Cup", "", 50))
    return {"before_first": before_first, "first": first, "second": second}


def count(app: Fenxiao, table: Any) -> int:
    with app.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_catch_up_stops_at_a_position(app: Fenxiao) -> None:
    at = stock_story(app)
    runner = ProjectionRunner(app, [InventoryProjection()], batch_size=1)
    runner.catch_up(until=at["first"])
    assert runner.position("inventory") == at["first"]
    with app.engine.connect() as conn:
        assert conn.execute(select(inventory.c.on_hand)).scalar_one() == 10
    runner.catch_up(until=at["before_first"])  # already past it: stays where it is
    assert runner.position("inventory") == at["first"]
    runner.catch_up()
    assert runner.position("inventory") == app.last_position()


def test_as_of_the_head_equals_live_and_earlier_shows_the_earlier_state(app: Fenxiao) -> None:
    at = stock_story(app)
    activity(app)
    runner = ProjectionRunner(app, [InventoryProjection(), LedgerProjection()])
    runner.catch_up()
    live = {**tables_of(app, InventoryProjection()), **tables_of(app, LedgerProjection())}
    head = app.last_position()
    for projection in (InventoryProjection(), LedgerProjection()):
        built = as_of(app, projection, head)
        assert {name: sorted(tuple(map(str, r.values())) for r in rows)
                for name, rows in built.items()} == \
            {t.name: live[t.name] for t in projection.tables}
    tea = lambda rows: [r for r in rows if r["sku"] == "TEA"]  # noqa: E731
    assert tea(as_of(app, InventoryProjection(), at["before_first"])["rm_inventory"]) == []
    [before] = tea(as_of(app, InventoryProjection(), at["first"])["rm_inventory"])
    [after] = tea(as_of(app, InventoryProjection(), at["second"])["rm_inventory"])
    assert (before["on_hand"], after["on_hand"]) == (10, 15)
    # The live read models and their positions are left as they were.
    assert {**tables_of(app, InventoryProjection()),
            **tables_of(app, LedgerProjection())} == live
    assert runner.position("inventory") == runner.position("ledger") == head


def test_a_build_leaves_no_shadow_on_pooled_connections(app: Fenxiao) -> None:
    """The build's temporary tables shadow the live ones on its own connection only, and
    that connection is closed for good: every pooled connection reads the live table."""
    stock_story(app)  # nothing projected live: the live inventory is empty
    with ScratchBuild(app, [InventoryProjection()]) as build:
        build.build()
        assert len(build.rows(inventory)) == 1
        assert count(app, inventory) == 0  # other connections never see the scratch rows
    connections = [app.engine.connect() for _ in range(5)]  # the whole pool at once
    try:
        for conn in connections:
            assert conn.execute(select(func.count()).select_from(inventory)).scalar() == 0
    finally:
        for conn in connections:
            conn.close()


def test_audit_as_of_on_the_command_line(app: Fenxiao, tmp_path: Any) -> None:
    at = stock_story(app)
    done = cli(app, "audit", "as-of", str(at["first"]), "--view", "inventory",
               "--format", "csv")
    assert done.exit_code == 0, done.output
    [row] = list(csv.DictReader(io.StringIO(done.stdout)))
    assert (row["sku"], row["on_hand"], row["reserved"]) == ("TEA", "10", "0")
    as_json = cli(app, "audit", "as-of", str(at["second"]), "--view", "catalog",
                  "--format", "json")
    assert as_json.exit_code == 0, as_json.output
    body = json.loads(as_json.stdout)
    assert body["position"] == at["second"] and body["view"] == "catalog"
    assert [p["sku"] for p in body["tables"]["rm_products"]] == ["TEA"]  # not CUP yet
    output = tmp_path / "ledger.txt"
    as_table = cli(app, "audit", "as-of", str(app.last_position()), "--view", "catalog",
                   "--output", str(output))
    assert as_table.exit_code == 0, as_table.output
    text = output.read_text()
    assert "rm_products: 2 rows" in text and "rm_warehouses: 1 rows" in text
    assert count(app, products) == 0  # nothing live was built

    refused = {
        "unknown view": cli(app, "audit", "as-of", "1", "--view", "nope"),
        "beyond the head": cli(app, "audit", "as-of", str(app.last_position() + 1),
                               "--view", "inventory"),
        "several tables": cli(app, "audit", "as-of", "1", "--view", "catalog",
                              "--format", "csv"),
        "no such table": cli(app, "audit", "as-of", "1", "--view", "catalog",
                             "--table", "rm_inventory"),
    }
    for why, result in refused.items():
        assert result.exit_code != 0, why
    assert "inventory" in refused["unknown view"].output  # the views are listed
    assert "--table" in refused["several tables"].output
    picked = cli(app, "audit", "as-of", "1", "--view", "catalog", "--format", "csv",
                 "--table", "rm_warehouses")
    assert picked.exit_code == 0 and picked.stdout.startswith("warehouse_id,")


@pytest.mark.parametrize("projection", [InventoryProjection(), CatalogProjection()],
                         ids=lambda p: p.name)
def test_readers_never_see_a_half_built_table_during_a_rebuild(app: Fenxiao,
                                                               projection: Any) -> None:
    """Each batch of the build commits on its own (batch size 1), yet readers see the
    old contents (with a stray row the log knows nothing of) until the swap, then the
    new: never anything in between. Checked after every batch of the build and by a
    thread reading all along."""
    run(app, lambda: app.open_warehouse("W1", "East", "east"))
    for n in range(12):
        run(app, lambda: app.add_product(f"SKU-{n}", f"Product {n}", "", 100))
        run(app, lambda: app.receive_stock(f"SKU-{n}", "W1", 1 + n, "PO"))
    runner = ProjectionRunner(app, [projection], batch_size=1)
    runner.catch_up()
    table = projection.tables[0]
    new = count(app, table)
    with app.engine.begin() as conn:  # the old contents: one row more than the log says
        stray = {"stock_item_id": "stray", "sku": "X", "warehouse_id": "W9", "on_hand": 1,
                 "reserved": 0} if table is inventory else {
            "sku": "STRAY", "name": "stray", "spec": "", "price_minor": 1,
            "wholesale_price_minor": None, "currency": "CNY", "listed": True,
            "product_uuid": "stray"}
        conn.execute(table.insert().values(**stray))
    old = new + 1
    during: list[int] = []
    seen: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            seen.append(count(app, table))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        runner.rebuild(projection.name, progress=lambda _n: during.append(count(app, table)))
    finally:
        done.set()
        thread.join()
    assert len(during) >= 12 and set(during) == {old}
    assert set(seen) <= {old, new}, sorted(set(seen))
    assert count(app, table) == new
    assert runner.position(projection.name) == app.last_position()


def test_events_logged_during_a_rebuild_are_applied_after_the_swap(
        app: Fenxiao, monkeypatch: pytest.MonkeyPatch) -> None:
    stock_story(app)
    runner = ProjectionRunner(app, [InventoryProjection()])
    runner.catch_up()
    swap = ScratchBuild.swap
    built_to: list[int] = []

    def late_receipt_then_swap(build: ScratchBuild, name: str) -> int:
        built_to.append(app.last_position())
        run(app, lambda: app.receive_stock("TEA", "WT", 7, "PO-late"))  # after the build
        built_to.append(swap(build, name))
        return built_to[-1]

    monkeypatch.setattr(ScratchBuild, "swap", late_receipt_then_swap)
    runner.rebuild("inventory")
    head_then, swapped = built_to
    assert swapped == head_then < app.last_position()  # the swap set the build's position
    assert runner.position("inventory") == app.last_position()  # then caught up
    with app.engine.connect() as conn:
        assert conn.execute(select(inventory.c.on_hand)
                            .where(inventory.c.sku == "TEA")).scalar_one() == 10 + 5 + 7


def test_the_collector_is_put_back_when_the_last_of_overlapping_builds_ends():
    before, frozen = gc.get_threshold(), gc.get_freeze_count()
    first, second = fewer_collections(), fewer_collections()
    first.__enter__()
    assert gc.get_threshold()[0] == 10_000
    second.__enter__()
    first.__exit__(None, None, None)  # the first ends while the second still runs
    assert gc.get_threshold()[0] == 10_000
    second.__exit__(None, None, None)
    assert gc.get_threshold() == before and gc.get_freeze_count() == frozen
