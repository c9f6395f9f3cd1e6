"""`fenxiao audit check`: every projection rebuilt from the log in scratch tables equals
the live one, compared row by row at the live position; a row altered, removed or added in
SQL is named, and the exit status says so. On SQLite and PostgreSQL."""
from __future__ import annotations

import threading
from typing import Any

from click.testing import CliRunner
from sqlalchemy import delete, select, update

from api.cli import main
from commands import Fenxiao
from projections import all_projections
from projections.catalog import products
from projections.inventory import inventory
from projections.ledger import journal
from projections.runner import ProjectionRunner
from projections.scratch import check
from tests.test_projections import activity


def cli(app: Fenxiao, *args: str) -> Any:
    return CliRunner().invoke(main, list(args),
                              env={"FENXIAO_DATABASE_URL": app.settings.database_url})


def test_a_clean_store_passes(app: Fenxiao) -> None:
    activity(app)
    ProjectionRunner(app, all_projections()).catch_up()
    result = cli(app, "audit", "check")
    assert result.exit_code == 0, result.output
    assert "every projection equals its rebuild" in result.stdout


def test_a_lagging_worker_is_no_difference(app: Fenxiao) -> None:
    """Each projection is compared at its own live position: live tables behind the log
    (or some projections never run) are not differences."""
    activity(app)
    middle = app.last_position() // 2
    runner = ProjectionRunner(app, all_projections(), batch_size=3)
    runner.catch_up(until=middle)
    runner.catch_up(["inventory"])
    assert runner.position("inventory") > runner.position("ledger") == middle
    assert check(app, all_projections()) == []
    assert cli(app, "audit", "check").exit_code == 0


def test_tampered_rows_are_named(app: Fenxiao) -> None:
    activity(app)
    ProjectionRunner(app, all_projections()).catch_up()
    with app.engine.begin() as conn:
        item, on_hand = conn.execute(select(inventory.c.stock_item_id, inventory.c.on_hand)
                                     .where(inventory.c.sku == "SKU-2",
                                            inventory.c.warehouse_id == "W2")).one()
        conn.execute(update(inventory).where(inventory.c.stock_item_id == item)
                     .values(on_hand=on_hand + 100))
        entry = conn.execute(select(journal.c.entry_uuid).limit(1)).scalar_one()
        conn.execute(delete(journal).where(journal.c.entry_uuid == entry,
                                           journal.c.line_no == 1))
        conn.execute(products.insert().values(
            sku="FORGED", name="forged", spec="", price_minor=1, wholesale_price_minor=None,
            currency="CNY", listed=True, product_uuid="forged"))
    result = cli(app, "audit", "check")
    assert result.exit_code == 1, result.output
    lines = result.stdout.splitlines()
    assert f"inventory: rm_inventory [stock_item_id='{item}']: on_hand: live " \
           f"{on_hand + 100} vs rebuilt {on_hand}" in lines
    assert any(line.startswith(f"ledger: rm_journal [entry_uuid='{entry}', line_no=1]: "
                               "missing live; rebuilt ") for line in lines)
    assert any(line.startswith("catalog: rm_products [sku='FORGED']: not in the rebuild")
               for line in lines)
    assert len(lines) == 3  # nothing else differs
    assert "3 rows differ" in result.stderr
    differences = check(app, all_projections())
    assert {(d.projection, d.table) for d in differences} == {
        ("inventory", "rm_inventory"), ("ledger", "rm_journal"), ("catalog", "rm_products")}


def test_a_worker_running_meanwhile_is_no_difference(app: Fenxiao) -> None:
    """The live rows are read in one snapshot with their position, so a worker applying
    new events while the check runs never shows up as a difference."""
    activity(app)
    moved_from = app.last_position()
    worker = ProjectionRunner(app, all_projections(), batch_size=2)
    worker.start()
    stop = threading.Event()

    def receive() -> None:
        n = 0
        while not stop.wait(0.005):
            n += 1
            app.execute(lambda: app.receive_stock("SKU-0", "W1", 1, f"PO-{n}"))

    writer = threading.Thread(target=receive)
    writer.start()
    try:
        for _ in range(2):
            assert check(app, all_projections()) == []
    finally:
        stop.set()
        writer.join()
        worker.stop()
    assert app.last_position() > moved_from  # the log did move during the checks
